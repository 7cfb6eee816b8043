//! Running a program in a pod's container: the [`PodExec`] trait and [`KubePodExec`], which goes
//! through the Kubernetes exec API (`pods/exec`, WebSocket). Everything else in the KubeVirt
//! transport is tested against a fake [`PodExec`].

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::virsh::{ExecExit, VirshOutput};
use crate::qga::QgaError;

/// The most stdout one exec may produce (a guest-file-read of 1 MiB is about 1.4 MiB of JSON).
pub const MAX_STDOUT: usize = crate::qga::protocol::DEFAULT_MAX_MESSAGE;

/// The most stderr kept (the rest is read and dropped).
pub const MAX_STDERR: usize = 64 * 1024;

/// Runs an argv in a container of a pod and collects its output.
#[async_trait]
pub trait PodExec: Send + Sync {
    /// Runs `argv` (no shell) in `container` of pod `namespace/pod` and returns stdout, stderr
    /// and how it ended. Failing to start the exec is a [`QgaError::Transport`]; stdout above
    /// [`MAX_STDOUT`] is a [`QgaError::TooLarge`]. Callers bound the time it takes.
    async fn exec(&self, namespace: &str, pod: &str, container: &str, argv: &[String])
    -> Result<VirshOutput, QgaError>;
}

/// [`PodExec`] through the Kubernetes API (needs `create` on `pods/exec`).
#[derive(Clone)]
pub struct KubePodExec {
    client: kube::Client,
}

impl std::fmt::Debug for KubePodExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePodExec").finish_non_exhaustive()
    }
}

impl KubePodExec {
    /// Execs through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl PodExec for KubePodExec {
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[String],
    ) -> Result<VirshOutput, QgaError> {
        let target = format!("pod {namespace}/{pod} (container {container})");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = AttachParams::default()
            .container(container)
            .stdin(false)
            .stdout(true)
            .stderr(true)
            .max_stdout_buf_size(64 * 1024);
        let mut process = api.exec(pod, argv.to_vec(), &params).await.map_err(|e| QgaError::Transport {
            target: target.clone(),
            message: format!("exec through the Kubernetes API failed: {e}"),
        })?;
        let stdout = process.stdout();
        let stderr = process.stderr();
        let status = process.take_status();
        // Both streams are drained to the end, or the exec's message loop would stall on the
        // one not read.
        let (stdout, stderr) = tokio::join!(drain(stdout, MAX_STDOUT), drain(stderr, MAX_STDERR));
        let status = match status {
            Some(status) => status.await,
            None => None,
        };
        if let Err(e) = process.join().await {
            tracing::debug!(%target, error = %e, "exec stream ended with an error");
        }
        let (stdout, stdout_overflow) = stdout.map_err(|e| io_error(&target, "stdout", e))?;
        let (stderr, _) = stderr.map_err(|e| io_error(&target, "stderr", e))?;
        if stdout_overflow {
            return Err(QgaError::TooLarge {
                command: argv.first().cloned().unwrap_or_default(),
                what: format!("output of the exec in {target}"),
                limit: MAX_STDOUT as u64,
            });
        }
        Ok(VirshOutput { stdout, stderr, exit: ExecExit::from_status(status.as_ref()) })
    }
}

fn io_error(target: &str, stream: &str, e: std::io::Error) -> QgaError {
    QgaError::Transport { target: target.to_owned(), message: format!("reading the exec's {stream}: {e}") }
}

/// Reads `reader` to the end, keeping at most `limit` bytes; says whether more came.
async fn drain(reader: Option<impl AsyncRead + Unpin>, limit: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(mut reader) = reader else { return Ok((Vec::new(), false)) };
    let mut kept = Vec::new();
    let mut overflow = false;
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, overflow));
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        overflow |= n > room;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_keeps_up_to_the_limit_and_reads_on() {
        let data = vec![7u8; 200_000];
        let (kept, overflow) = drain(Some(&data[..]), 1000).await.unwrap();
        assert_eq!((kept.len(), overflow), (1000, true));
        let (kept, overflow) = drain(Some(&data[..]), 200_000).await.unwrap();
        assert_eq!((kept, overflow), (data.clone(), false));
        let (kept, overflow) = drain(None::<&[u8]>, 10).await.unwrap();
        assert!(kept.is_empty() && !overflow);
    }
}
