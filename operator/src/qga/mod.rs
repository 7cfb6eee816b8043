//! QEMU guest agent (QGA) client: how the operator reaches a router VM that has no agent
//! connection yet (or lost it) — to check it, read and write files, and run programs.
//!
//! - [`protocol`]: the wire protocol without I/O (request encoding, splitting the agent's byte
//!   stream, the `0xFF` + `guest-sync-delimited` resynchronisation, reply interpretation).
//! - [`transport`]: the [`QgaTransport`] trait and [`UnixSocketTransport`].
//! - [`client`]: [`QgaClient`], typed calls on any transport.
//! - [`info`], [`file`], [`exec`]: the types and reply parsing of those calls.
//! - [`cli`]: the `vrouter-operator qga` debugging command.
//! - [`provider`]: [`VmProvider`], a VM as its hypervisor shows it; [`kubevirt`], [`proxmox`]
//!   and the libvirt socket implement it; [`kube`] resolves targets' VMs in a cluster.
//! - [`guest`]: guest paths, probing, and the agent bootstrap; [`fallback`]: delivering a
//!   revision through the guest agent; [`route`]: when to do which.
//! - [`error`]: the error type, [`QgaError`].
//!
//! See `docs/qga.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vrouter_operator::qga::QgaError> {
//! use vrouter_operator::qga::{ExecRequest, QgaClient, WriteMode};
//!
//! let client = QgaClient::unix_socket("/run/vm-agent.sock");
//! client.ping().await?;
//! client.write_file("/tmp/hello", b"hello\n", WriteMode::Truncate).await?;
//! let output = client.exec(&ExecRequest::new("/bin/cat", ["/tmp/hello"])).await?;
//! assert_eq!(output.stdout, b"hello\n");
//! # Ok(())
//! # }
//! ```

pub mod cli;
pub mod client;
pub mod error;
pub mod exec;
pub mod fallback;
pub mod file;
pub mod guest;
pub mod info;
pub mod kube;
pub mod kubevirt;
pub mod protocol;
pub mod provider;
pub mod proxmox;
pub mod route;
pub mod transport;

pub use client::{QgaClient, QgaClientConfig};
pub use error::QgaError;
pub use exec::{ExecOutput, ExecRequest};
pub use file::WriteMode;
pub use info::{GuestCommand, GuestInfo, OsInfo, OsInfoSource};
pub use kubevirt::{KubePodExec, KubevirtProvider, KubevirtTransport, PodExec};
pub use provider::{LibvirtProvider, VmProvider, VmState};
pub use proxmox::{ApiToken, ProxmoxApi, ProxmoxProvider, ProxmoxTransport};
pub use transport::{QgaTransport, UnixSocketConfig, UnixSocketTransport};
