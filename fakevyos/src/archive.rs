//! The commit archive: `/config/archive/config.boot.N.gz` (0 is the newest) and the log
//! `/config/archive/commits`, one `|<time>|<user>|<via>|<comment>|` line per revision, newest
//! first. As in VyOS, nothing is archived unless `system config-management commit-revisions N`
//! is set in the running configuration, and at most N revisions are kept.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use vyos_config::{Config, Tree};

use crate::error::{Error, Result, io_at};
use crate::files;
use crate::layout::Root;
use crate::profile::Profile;

/// The number of revisions to keep, from `system config-management commit-revisions`.
pub fn revisions_limit(active: &Tree) -> Option<usize> {
    active
        .values(&["system", "config-management", "commit-revisions"])
        .first()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
}

/// A commit log line.
pub fn log_entry(time: u64, user: &str, via: &str, comment: &str) -> String {
    format!("|{time}|{user}|{via}|{comment}|")
}

fn revision_path(root: &Root, n: usize) -> PathBuf {
    root.archive_dir().join(format!("config.boot.{n}.gz"))
}

/// The configuration as `vyos-save-config.py` writes it: the render, a blank line, the footer.
pub fn saved_text(profile: &Profile, tree: &Tree) -> String {
    Config { tree: tree.clone(), footer: Some(profile.footer()) }.render()
}

/// Archives a configuration as revision 0 (older revisions move up, the oldest beyond the
/// limit are dropped) and prepends its log entry.
pub fn archive(root: &Root, profile: &Profile, tree: &Tree, entry: &str, limit: usize) -> Result<()> {
    let dir = root.archive_dir();
    files::create_dir(&dir)?;
    let existing = count(root);
    for n in (0..existing).rev() {
        let from = revision_path(root, n);
        if n + 1 >= limit {
            files::remove_file(&from)?;
        } else {
            let to = revision_path(root, n + 1);
            fs::rename(&from, &to).map_err(io_at(&from))?;
        }
    }
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    let path = revision_path(root, 0);
    encoder.write_all(saved_text(profile, tree).as_bytes()).map_err(io_at(&path))?;
    let data = encoder.finish().map_err(io_at(&path))?;
    files::write_atomic(&path, &data)?;
    let log = dir.join("commits");
    let old = files::read_optional(&log)?.unwrap_or_default();
    let kept: Vec<&str> = old.lines().take(limit.saturating_sub(1)).collect();
    let mut text = format!("{entry}\n");
    for line in kept {
        text.push_str(line);
        text.push('\n');
    }
    files::write_atomic(&log, text.as_bytes())
}

/// How many consecutive revisions (0, 1, …) exist.
pub fn count(root: &Root) -> usize {
    (0..).take_while(|n| revision_path(root, *n).exists()).count()
}

/// Reads revision `n`, if it exists.
pub fn read_revision(root: &Root, n: usize) -> Result<Option<Tree>> {
    let path = revision_path(root, n);
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(&path)(e)),
    };
    let mut text = String::new();
    GzDecoder::new(data.as_slice()).read_to_string(&mut text).map_err(io_at(&path))?;
    let config = Config::parse_hierarchical(&text)
        .map_err(|e| Error::Corrupt(format!("{}: {}", path.display(), e.vyos_message())))?;
    Ok(Some(config.tree))
}

/// The commit log lines, newest first.
pub fn log(root: &Root) -> Result<Vec<String>> {
    let text = files::read_optional(&root.archive_dir().join("commits"))?.unwrap_or_default();
    Ok(text.lines().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Family;
    use vyos_config::parse_tree;

    #[test]
    fn rotates_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let profile = Profile::new(Family::Sagitta, None);
        for i in 0..4 {
            let tree = parse_tree(&format!("system {{\n    host-name \"r{i}\"\n}}\n")).unwrap();
            archive(&root, &profile, &tree, &log_entry(i, "root", "test", &format!("c{i}")), 3).unwrap();
        }
        assert_eq!(count(&root), 3);
        let newest = read_revision(&root, 0).unwrap().unwrap();
        assert_eq!(newest.values(&["system", "host-name"]), ["r3"]);
        let oldest = read_revision(&root, 2).unwrap().unwrap();
        assert_eq!(oldest.values(&["system", "host-name"]), ["r1"]);
        assert!(read_revision(&root, 3).unwrap().is_none());
        assert_eq!(log(&root).unwrap(), ["|3|root|test|c3|", "|2|root|test|c2|", "|1|root|test|c1|"]);
    }

    #[test]
    fn limit_from_config() {
        let tree =
            parse_tree("system {\n    config-management {\n        commit-revisions \"20\"\n    }\n}\n").unwrap();
        assert_eq!(revisions_limit(&tree), Some(20));
        assert_eq!(revisions_limit(&Tree::new()), None);
    }
}
