//! Running work only while leading.

use std::future::Future;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Runs `work` whenever `leader` says this replica leads, until `shutdown`. Each run gets a
/// token (a child of `shutdown`) that is cancelled when leadership is lost; the run is awaited
/// before contending again, so two runs never overlap. `changed(true)` is called when a run
/// starts and `changed(false)` when it has stopped (readiness, closing agent sessions). Work
/// that ends by itself while still leading is started again.
pub async fn lead<W, Fut>(
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
    mut work: W,
    mut changed: impl FnMut(bool),
) where
    W: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ok = async { leader.wait_for(|l| *l).await.is_ok() } => if !ok { return },
        }
        let token = shutdown.child_token();
        let mut run = tokio::spawn(work(token.clone()));
        changed(true);
        tokio::select! {
            lost = async { leader.wait_for(|l| !*l).await.is_ok() } => {
                if lost {
                    tracing::warn!("leadership lost: stopping the controllers");
                }
                token.cancel();
                let _ = (&mut run).await;
            }
            _ = &mut run => {
                changed(false);
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!("the controllers stopped while leading: starting them again");
                // Not in a tight loop if they fail at once.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
                continue;
            }
        }
        changed(false);
        if shutdown.is_cancelled() {
            return;
        }
    }
}
