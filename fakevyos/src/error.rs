//! Errors of the double itself (I/O, corrupt state, bad usage) and the output of a command.
//!
//! VyOS's own failures ("Configuration path: [...] is not valid", "Commit failed") are not
//! errors here: they are an [`Output`] with exit code 1 and VyOS's text on stdout, where VyOS's
//! tools print them too.

use std::io;
use std::path::{Path, PathBuf};

/// A failure of the double: the command could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The fake root is missing a file or holds something unreadable.
    #[error("{0}")]
    Corrupt(String),
}

/// Result with the double's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a path to an I/O error: `file.read().map_err(io_at(&path))`.
pub fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// What a command prints and its exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code.
    pub code: i32,
    /// Text for stdout.
    pub stdout: String,
    /// Text for stderr.
    pub stderr: String,
}

impl Output {
    /// Success with text on stdout.
    pub fn ok(stdout: impl Into<String>) -> Self {
        Output { code: 0, stdout: stdout.into(), stderr: String::new() }
    }

    /// Exit code 1 with text on stdout (where VyOS's tools print their errors).
    pub fn fail(stdout: impl Into<String>) -> Self {
        Output { code: 1, stdout: stdout.into(), stderr: String::new() }
    }

    /// An exit code without output (the boolean `cli-shell-api` queries).
    pub fn status(ok: bool) -> Self {
        Output { code: if ok { 0 } else { 1 }, ..Output::default() }
    }
}

/// Adds a newline to non-empty text that lacks one.
pub fn line(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') { text.to_owned() } else { format!("{text}\n") }
}
