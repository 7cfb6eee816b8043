//! [`QgaError`]: every way a guest agent call can fail.

use std::path::PathBuf;
use std::time::Duration;

/// Why a QEMU guest agent call failed. Each failure is counted by its [`label`](Self::label).
#[derive(Debug, thiserror::Error)]
pub enum QgaError {
    /// Connecting to, reading from or writing to the agent's channel failed (or it closed).
    #[error("guest agent channel {target}: {context}: {source}")]
    Io {
        /// The channel (socket path, VM name).
        target: String,
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A transport other than a plain stream failed (Kubernetes exec, HTTP API, ...).
    #[error("guest agent transport {target}: {message}")]
    Transport {
        /// The channel (VM name, API endpoint).
        target: String,
        /// What went wrong.
        message: String,
    },
    /// No answer in time. The command may still have run (or may still be running) in the guest.
    #[error("{command}: no answer from the guest agent within {after:?}")]
    Timeout {
        /// The command that was sent (or `guest-sync-delimited` when resynchronising), and what
        /// it was about (see [`QgaError::about`]).
        command: String,
        /// The timeout.
        after: Duration,
    },
    /// The agent sent something that is not a valid QGA message: garbage, bad JSON, a reply of
    /// the wrong shape, undecodable base64.
    #[error("{command}: guest agent protocol error: {message}")]
    Protocol {
        /// The command being answered, and what it was about.
        command: String,
        /// What was wrong.
        message: String,
    },
    /// A reply, file or output was larger than the configured limit.
    #[error("{command}: {what} exceeds the {limit}-byte limit")]
    TooLarge {
        /// The command being answered, and what it was about.
        command: String,
        /// What was too large.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The agent answered with an error object.
    #[error("{command}: guest agent error ({class}): {desc}")]
    Agent {
        /// The command that failed, and what it was about.
        command: String,
        /// The agent's error class (usually `GenericError`).
        class: String,
        /// The agent's description.
        desc: String,
    },
    /// The agent does not know the command or it was disabled (`qemu-ga -b`, `--block-rpcs`).
    #[error("{command}: not supported by this guest agent: {desc}")]
    NotSupported {
        /// The command, and what it was about.
        command: String,
        /// The agent's description.
        desc: String,
    },
    /// A program started with `guest-exec` did not exit before the deadline.
    #[error("{program} (guest pid {pid}) did not exit within {after:?}; it may still be running in the guest")]
    ExecDeadline {
        /// The program.
        program: String,
        /// Its process id in the guest.
        pid: i64,
        /// The deadline.
        after: Duration,
    },
    /// A local file (CLI `push`/`pull`, or stdout) could not be read or written.
    #[error("{path}: {source}")]
    LocalIo {
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl QgaError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            QgaError::Io { .. } => "io",
            QgaError::Transport { .. } => "transport",
            QgaError::Timeout { .. } => "timeout",
            QgaError::Protocol { .. } => "protocol",
            QgaError::TooLarge { .. } => "too_large",
            QgaError::Agent { .. } => "agent",
            QgaError::NotSupported { .. } => "not_supported",
            QgaError::ExecDeadline { .. } => "exec_deadline",
            QgaError::LocalIo { .. } => "local_io",
        }
    }

    /// Builds a protocol error.
    pub fn protocol(command: &str, message: impl Into<String>) -> Self {
        QgaError::Protocol { command: command.to_owned(), message: message.into() }
    }

    /// Names what the failed command was about (a guest path, a program) after the command, so
    /// that `guest-file-read: failed to read file` becomes `guest-file-read /etc/x: ...`.
    pub fn about(mut self, subject: &str) -> Self {
        match &mut self {
            QgaError::Timeout { command, .. }
            | QgaError::Protocol { command, .. }
            | QgaError::TooLarge { command, .. }
            | QgaError::Agent { command, .. }
            | QgaError::NotSupported { command, .. } => {
                command.push(' ');
                command.push_str(subject);
            }
            QgaError::Io { context, .. } => {
                context.push(' ');
                context.push_str(subject);
            }
            QgaError::Transport { message, .. } => *message = format!("{subject}: {message}"),
            QgaError::ExecDeadline { .. } | QgaError::LocalIo { .. } => {}
        }
        self
    }

    /// The command an error names, without what it was about (`None` for errors that are not
    /// about one command).
    pub fn command(&self) -> Option<&str> {
        match self {
            QgaError::Timeout { command, .. }
            | QgaError::Protocol { command, .. }
            | QgaError::TooLarge { command, .. }
            | QgaError::Agent { command, .. }
            | QgaError::NotSupported { command, .. } => command.split(' ').next(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_command_and_the_agent_desc() {
        let e = QgaError::Agent {
            command: "guest-file-open".into(),
            class: "GenericError".into(),
            desc: "failed to open file '/x'".into(),
        };
        let text = e.to_string();
        assert!(text.contains("guest-file-open") && text.contains("failed to open file '/x'"), "{text}");
        assert_eq!(e.label(), "agent");

        let e = QgaError::ExecDeadline { program: "/bin/sleep".into(), pid: 7, after: Duration::from_secs(2) };
        assert!(e.to_string().contains("may still be running"));
        assert_eq!(e.label(), "exec_deadline");
    }

    #[test]
    fn about_adds_the_subject_after_the_command() {
        let e =
            QgaError::Agent { command: "guest-file-read".into(), class: "GenericError".into(), desc: "bad fd".into() }
                .about("/etc/x y");
        assert_eq!(e.to_string(), "guest-file-read /etc/x y: guest agent error (GenericError): bad fd");
        assert_eq!(e.command(), Some("guest-file-read"));
        let e = QgaError::Timeout { command: "guest-exec".into(), after: Duration::from_secs(1) }.about("/bin/true");
        assert!(e.to_string().starts_with("guest-exec /bin/true: no answer"), "{e}");
        let e = QgaError::Transport { target: "vm".into(), message: "exec failed".into() }.about("/x");
        assert_eq!(e.to_string(), "guest agent transport vm: /x: exec failed");
        let e = QgaError::Io {
            target: "s".into(),
            context: "read (guest-file-read)".into(),
            source: std::io::Error::other("x"),
        }
        .about("/x");
        assert_eq!(e.to_string(), "guest agent channel s: read (guest-file-read) /x: x");
        assert_eq!(e.command(), None);
    }

    #[test]
    fn labels_are_distinct() {
        let io = || std::io::Error::other("x");
        let all = [
            QgaError::Io { target: "t".into(), context: "c".into(), source: io() },
            QgaError::Transport { target: "t".into(), message: "m".into() },
            QgaError::Timeout { command: "c".into(), after: Duration::ZERO },
            QgaError::protocol("c", "m"),
            QgaError::TooLarge { command: "c".into(), what: "w".into(), limit: 1 },
            QgaError::Agent { command: "c".into(), class: "k".into(), desc: "d".into() },
            QgaError::NotSupported { command: "c".into(), desc: "d".into() },
            QgaError::ExecDeadline { program: "p".into(), pid: 1, after: Duration::ZERO },
            QgaError::LocalIo { path: "p".into(), source: io() },
        ];
        let mut labels: Vec<_> = all.iter().map(QgaError::label).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
    }
}
