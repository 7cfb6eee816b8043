//! A small file kept in two slots, written in place: crash-safe without creating files.
//!
//! The usual atomic write (temporary file, fsync, rename, fsync of the directory) allocates a
//! new inode on every write. Here the content goes to whichever of `<name>.a` / `<name>.b` holds
//! the older generation, overwritten in place, followed by a trailer line
//!
//! ```text
//! // vrouter-slot <generation> <sha256 of the content>
//! ```
//!
//! (a comment in both VyOS configuration and our own readers). Loading picks the valid slot with
//! the highest generation, so a write torn by a crash or power loss costs only that write: the
//! other slot still holds the previous content. With `durable`, each write is followed by
//! `fdatasync`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

const TRAILER: &str = "\n// vrouter-slot ";

/// A two-slot file.
#[derive(Debug)]
pub struct SlotFile {
    paths: [PathBuf; 2],
    durable: bool,
    mode: u32,
    /// (slot to write next, generation of the newest valid content)
    next: Mutex<Option<(usize, u64)>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a slot's bytes into (content, generation) if the trailer and checksum are valid.
fn parse(bytes: &[u8]) -> Option<(Vec<u8>, u64)> {
    let text_end = bytes.len();
    let start = bytes.windows(TRAILER.len()).rposition(|w| w == TRAILER.as_bytes())?;
    let trailer = std::str::from_utf8(&bytes[start + TRAILER.len()..text_end]).ok()?;
    let mut words = trailer.split_whitespace();
    let generation: u64 = words.next()?.parse().ok()?;
    let sum = words.next()?;
    if words.next().is_some() {
        return None;
    }
    let content = &bytes[..start];
    (hex(&Sha256::digest(content)) == sum).then(|| (content.to_vec(), generation))
}

impl SlotFile {
    /// The two-slot file `dir/<name>.a`, `dir/<name>.b`.
    pub fn new(dir: &Path, name: &str, durable: bool, mode: u32) -> Self {
        SlotFile {
            paths: [dir.join(format!("{name}.a")), dir.join(format!("{name}.b"))],
            durable,
            mode,
            next: Mutex::new(None),
        }
    }

    fn read_slot(path: &Path) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        match File::open(path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                Ok(parse(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The newest valid content, or `None` if neither slot exists. Slots that exist but are
    /// both invalid are an error (never silently "empty").
    pub fn load(&self) -> std::io::Result<Option<Vec<u8>>> {
        let a = Self::read_slot(&self.paths[0])?;
        let b = Self::read_slot(&self.paths[1])?;
        if a.is_none() && b.is_none() && self.paths.iter().any(|p| p.exists()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} and {}: no valid content", self.paths[0].display(), self.paths[1].display()),
            ));
        }
        let newest = match (a, b) {
            (Some(a), Some(b)) => Some(if a.1 >= b.1 { (0, a) } else { (1, b) }),
            (Some(a), None) => Some((0, a)),
            (None, Some(b)) => Some((1, b)),
            (None, None) => None,
        };
        let mut next = self.next.lock().map_err(|_| std::io::Error::other("slot lock"))?;
        match newest {
            Some((slot, (content, generation))) => {
                *next = Some((1 - slot, generation));
                Ok(Some(content))
            }
            None => {
                *next = Some((0, 0));
                Ok(None)
            }
        }
    }

    /// Stores new content in the older slot.
    pub fn store(&self, content: &[u8]) -> std::io::Result<()> {
        if self.next.lock().map_err(|_| std::io::Error::other("slot lock"))?.is_none() {
            self.load()?;
        }
        let mut next = self.next.lock().map_err(|_| std::io::Error::other("slot lock"))?;
        let (slot, generation) = next.unwrap_or((0, 0));
        let path = &self.paths[slot];
        let created = !path.exists();
        let mut data = Vec::with_capacity(content.len() + 96);
        data.extend_from_slice(content);
        data.extend_from_slice(TRAILER.as_bytes());
        data.extend_from_slice(format!("{} {}\n", generation + 1, hex(&Sha256::digest(content))).as_bytes());
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = OpenOptions::new().write(true).create(true).truncate(false).mode(self.mode).open(path)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&data)?;
        f.set_len(data.len() as u64)?;
        if self.durable {
            f.sync_data()?;
            if created && let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        *next = Some((1 - slot, generation + 1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternates_and_survives_a_torn_write() {
        let tmp = tempfile::tempdir().unwrap();
        let f = SlotFile::new(tmp.path(), "state", true, 0o600);
        assert_eq!(f.load().unwrap(), None);
        f.store(b"one").unwrap();
        f.store(b"two").unwrap();
        f.store(b"three").unwrap();
        assert_eq!(SlotFile::new(tmp.path(), "state", true, 0o600).load().unwrap().as_deref(), Some(&b"three"[..]));
        // Tear the newest slot (three went to slot a: one→a, two→b, three→a).
        let a = tmp.path().join("state.a");
        let bytes = std::fs::read(&a).unwrap();
        std::fs::write(&a, &bytes[..bytes.len() / 2]).unwrap();
        let g = SlotFile::new(tmp.path(), "state", true, 0o600);
        assert_eq!(g.load().unwrap().as_deref(), Some(&b"two"[..]));
        // The next write goes over the torn slot; the previous good one is kept.
        g.store(b"four").unwrap();
        assert_eq!(SlotFile::new(tmp.path(), "state", true, 0o600).load().unwrap().as_deref(), Some(&b"four"[..]));
        assert!(parse(&std::fs::read(tmp.path().join("state.b")).unwrap()).is_some());
    }

    #[test]
    fn content_may_contain_the_trailer_marker() {
        let tmp = tempfile::tempdir().unwrap();
        let f = SlotFile::new(tmp.path(), "x", false, 0o600);
        let tricky = b"a\n// vrouter-slot 99 deadbeef\nb";
        f.store(tricky).unwrap();
        assert_eq!(SlotFile::new(tmp.path(), "x", false, 0o600).load().unwrap().as_deref(), Some(&tricky[..]));
    }
}
