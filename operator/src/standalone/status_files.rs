//! Standalone mode's status files: `status.yaml` (every object) and
//! `status/<namespace>/<kind>/<name>.yaml` (one per object; files of objects that are gone are
//! removed). Written from memory: an object's file is written only when its text changed since
//! the last write, and while changes keep coming the files are written at most once per interval —
//! a fan-out to thousands of routers changes status thousands of times, and writing every object
//! on every change made the fan-out quadratic. The interval grows with the cost of a write (at
//! least [`BUSY_FACTOR`] times as long as the last write took), so that status reports trickling
//! in from a large fleet keep status writing to a small share of a core. Files are written on a
//! blocking thread: the standalone loop is never held up by the disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::world::World;

/// How often status files are written at most while changes keep coming.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The pause after a write is at least this many times as long as the write took (at most 1/20
/// of a core goes to status files however large the fleet).
pub const BUSY_FACTOR: u32 = 20;

/// How often the loop looks back while a write runs.
const RUNNING_CHECK: Duration = Duration::from_millis(50);

/// The status files and what was last written to them.
///
/// The loop only takes a snapshot of the status documents; serialising and writing them (a
/// thousand files take about a second on this machine's disk) runs on a blocking thread, one
/// write at a time, so the loop keeps delivering meanwhile.
pub struct StatusFiles {
    every: Duration,
    /// The writer, while no write runs.
    writer: Option<Writer>,
    /// The write under way: when it started, and where the writer comes back.
    running: Option<(Instant, oneshot::Receiver<Written>)>,
    path: PathBuf,
    last: Option<Instant>,
    /// The pause due after the last write: `every`, or longer when that write was slow.
    gap: Duration,
    pending: bool,
}

/// A finished write: the writer back, and how it went.
type Written = (Writer, std::io::Result<()>);

/// Writes the files; owns what was last written.
struct Writer {
    path: PathBuf,
    dir: PathBuf,
    /// Per-object file → text last written (`None` before the first write, which also removes
    /// files left by an earlier run for objects that are gone).
    written: Option<BTreeMap<PathBuf, String>>,
}

impl StatusFiles {
    /// Status files at `path` (`status.yaml`) and beside it (`status/`).
    pub fn new(path: &Path, every: Duration) -> StatusFiles {
        StatusFiles {
            every,
            writer: Some(Writer::new(path)),
            running: None,
            path: path.to_owned(),
            last: None,
            gap: every,
            pending: false,
        }
    }

    /// Status changed: write it when due.
    pub fn changed(&mut self) {
        self.pending = true;
    }

    /// How long until a pending write is due (`None` when nothing is pending); while a write
    /// runs, a short while (to look back).
    pub fn due_in(&self, now: Instant) -> Option<Duration> {
        if !self.pending {
            return None;
        }
        if self.running.is_some() {
            return Some(RUNNING_CHECK);
        }
        Some(self.last.map_or(Duration::ZERO, |l| (l + self.gap).saturating_duration_since(now)))
    }

    /// Starts writing pending changes if due and no write runs: whether it started one.
    pub fn flush(&mut self, world: &World) -> bool {
        self.collect();
        let now = Instant::now();
        if self.running.is_some() || self.due_in(now).is_none_or(|d| !d.is_zero()) {
            return false;
        }
        self.start(world)
    }

    /// Waits for the write under way, then writes what is pending (at exit).
    pub async fn finish(&mut self, world: &World) {
        self.wait().await;
        if self.pending && self.start(world) {
            self.wait().await;
        }
    }

    /// Waits for the write under way, if any.
    pub async fn wait(&mut self) {
        if let Some((started, rx)) = self.running.take() {
            let done = rx.await.ok();
            self.done(started, done);
        }
    }

    fn start(&mut self, world: &World) -> bool {
        let Some(mut writer) = self.writer.take() else { return false };
        self.pending = false;
        let began = Instant::now();
        let documents = world.status_documents();
        tracing::debug!(took = ?began.elapsed(), objects = documents.len(), "status snapshot");
        let (tx, rx) = oneshot::channel();
        self.running = Some((Instant::now(), rx));
        tokio::task::spawn_blocking(move || {
            let result = writer.write(&documents);
            let _ = tx.send((writer, result));
        });
        true
    }

    /// Takes back the writer of a finished write.
    fn collect(&mut self) {
        let Some((started, rx)) = self.running.as_mut() else { return };
        let done = match rx.try_recv() {
            Ok(done) => Some(done),
            Err(oneshot::error::TryRecvError::Empty) => return,
            Err(oneshot::error::TryRecvError::Closed) => None,
        };
        let started = *started;
        self.running = None;
        self.done(started, done);
    }

    fn done(&mut self, started: Instant, done: Option<Written>) {
        let took = started.elapsed();
        tracing::debug!(?took, "status written");
        match done {
            Some((writer, result)) => {
                if let Err(e) = result {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot write status");
                }
                self.writer = Some(writer);
            }
            None => {
                // The write panicked: start afresh (rewrites every file).
                tracing::error!(path = %self.path.display(), "status writer stopped; starting afresh");
                self.writer = Some(Writer::new(&self.path));
                self.pending = true;
            }
        }
        self.gap = self.every.max(took * BUSY_FACTOR);
        self.last = Some(Instant::now());
    }
}

impl Writer {
    /// A writer that has written nothing yet: its first write rewrites every file.
    fn new(path: &Path) -> Writer {
        Writer { path: path.to_owned(), dir: path.with_file_name("status"), written: None }
    }

    fn write(&mut self, documents: &[serde_json::Value]) -> std::io::Result<()> {
        let files = render(documents, &self.dir);
        let mut text = String::from("# Status of every object, written by `vrouter-operator standalone`.\n");
        for yaml in files.values() {
            text.push_str("---\n");
            text.push_str(yaml);
        }
        write_atomic(&self.path, &text)?;
        let first = self.written.is_none();
        let written = self.written.get_or_insert_with(BTreeMap::new);
        for (file, yaml) in &files {
            if written.get(file) != Some(yaml) {
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                write_atomic(file, yaml)?;
            }
        }
        if first {
            remove_stale(&self.dir, &files)?;
        } else {
            for gone in written.keys().filter(|f| !files.contains_key(*f)) {
                let _ = std::fs::remove_file(gone);
            }
        }
        *written = files;
        Ok(())
    }
}

/// Each object's status document as YAML, by its file.
fn render(documents: &[serde_json::Value], dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    for d in documents {
        let yaml = serde_saphyr::to_string(d).unwrap_or_default();
        let field = |f: &str| d.pointer(f).and_then(serde_json::Value::as_str).unwrap_or("_").to_owned();
        let file = dir
            .join(field("/metadata/namespace"))
            .join(field("/kind").to_lowercase())
            .join(format!("{}.yaml", field("/metadata/name")));
        files.insert(file, yaml);
    }
    files
}

/// Replaces a status file in one step. No fsync (unlike `pki::store::write_atomic`): status is
/// rewritten from memory after a restart (and the generated configs are saved again on change).
pub(super) fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn remove_stale(dir: &Path, keep: &BTreeMap<PathBuf, String>) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type()?.is_dir() {
            remove_stale(&p, keep)?;
        } else if !keep.contains_key(&p) {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::standalone::manifests::{Manifests, add_text};

    fn world(targets: &[&str]) -> World {
        let mut m = Manifests::default();
        let mut text = String::from(
            "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTemplate\nmetadata: {name: t}\n\
             spec: {config: \"system {\\n    host-name x\\n}\\n\"}\n",
        );
        for t in targets {
            text.push_str(&format!(
                "---\napiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {{name: {t}}}\nspec: {{}}\n"
            ));
        }
        add_text(&mut m, Path::new("x.yaml"), &text).unwrap();
        let mut w = World::new(vec![1; 32]);
        w.step(&m, SystemTime::now());
        w
    }

    #[tokio::test]
    async fn writes_each_object_once_removes_the_gone_and_waits_between_writes() {
        let dir = tempfile::tempdir().unwrap();
        // A file left by an earlier run for an object that no longer exists.
        std::fs::create_dir_all(dir.path().join("status/default/vroutertarget")).unwrap();
        std::fs::write(dir.path().join("status/default/vroutertarget/old.yaml"), "x").unwrap();
        let mut files = StatusFiles::new(&dir.path().join("status.yaml"), Duration::from_secs(3600));
        assert_eq!(files.due_in(Instant::now()), None, "nothing pending");
        files.changed();
        assert_eq!(files.due_in(Instant::now()), Some(Duration::ZERO), "the first write is due at once");
        assert!(files.flush(&world(&["a", "b"])));
        assert_eq!(files.due_in(Instant::now()), None, "nothing pending while the write runs");
        files.changed();
        assert_eq!(files.due_in(Instant::now()), Some(RUNNING_CHECK), "looks back while the write runs");
        assert!(!files.flush(&world(&["a", "b"])), "a second write while one runs");
        files.wait().await;
        let target = |n: &str| dir.path().join(format!("status/default/vroutertarget/{n}.yaml"));
        assert!(target("a").exists() && target("b").exists());
        assert!(!target("old").exists(), "stale file kept");
        let all = std::fs::read_to_string(dir.path().join("status.yaml")).unwrap();
        assert!(all.contains("name: a") && all.contains("name: b"), "{all}");

        // The next change waits for the interval; `finish` (at exit) writes at once.
        assert!(files.due_in(Instant::now()).is_some_and(|d| d > Duration::from_secs(3000)));
        let w = world(&["a"]);
        assert!(!files.flush(&w));
        files.wait().await;
        assert!(target("b").exists(), "written before the interval passed");
        std::fs::write(target("a"), "tampered").unwrap();
        files.finish(&w).await;
        assert!(!target("b").exists(), "the file of a removed target stays");
        // Unchanged objects are not rewritten (their text is known from the last write).
        assert_eq!(std::fs::read_to_string(target("a")).unwrap(), "tampered");
        assert!(!std::fs::read_to_string(dir.path().join("status.yaml")).unwrap().contains("name: b"));
    }
}
