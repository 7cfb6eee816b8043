//! [`ProxmoxTransport`]: QGA commands through the Proxmox VE API's agent endpoints
//! (`/nodes/{node}/qemu/{vmid}/agent/*`).
//!
//! PVE exposes only some agent commands, each as its own endpoint. `guest-ping`, `guest-info`,
//! `guest-get-osinfo` (and a few other argument-less queries), `guest-exec` and
//! `guest-exec-status` map directly. The file API is emulated here, behind handles of this
//! transport's own:
//!
//! - open for reading (`r`) reads the whole file at once with `file-read` (at most 16 MiB; a
//!   longer file fails with [`QgaError::TooLarge`] when a read reaches the cut) and reads are
//!   served from it;
//! - open for writing (`w`, `a`) sends nothing; the first chunk of a `w` file goes with
//!   `file-write` (which creates or truncates), and every further chunk (and every chunk of an
//!   `a` file) is appended by running `/bin/dd of=PATH oflag=append conv=notrunc status=none` with
//!   the chunk as standard input — an argv, no shell; a file closed without any write is created
//!   (or emptied, for `w`) the same way. A write takes what fits one request and reports that
//!   count, so [`QgaClient::write_file`](crate::qga::QgaClient::write_file) works for any size.
//!
//! The VM's node comes from `/cluster/resources` and is cached; when a call says the VM is not
//! on that node (it migrated), the node is looked up again and the call repeated once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::api::{ApiError, ProxmoxApi};
use super::codec::{self, PveFailure};
use crate::qga::exec::{self, ExecOutput};
use crate::qga::{QgaError, QgaTransport};

/// Argument-less agent commands PVE serves with `GET …/agent/<name>`.
const GET_COMMANDS: [(&str, &str); 9] = [
    ("guest-info", "info"),
    ("guest-get-osinfo", "get-osinfo"),
    ("guest-get-host-name", "get-host-name"),
    ("guest-get-time", "get-time"),
    ("guest-get-timezone", "get-timezone"),
    ("guest-get-users", "get-users"),
    ("guest-network-get-interfaces", "network-get-interfaces"),
    ("guest-get-vcpus", "get-vcpus"),
    ("guest-get-fsinfo", "get-fsinfo"),
];

/// The most files open at once through one transport.
pub const MAX_OPEN_FILES: usize = 64;

/// The first handle given out (like qemu-ga's).
const FIRST_HANDLE: i64 = 1000;

/// A file opened through the emulated file API.
#[derive(Debug)]
enum OpenFile {
    Read { path: String, data: Vec<u8>, pos: usize, truncated: bool },
    Write { path: String, append: bool, written: bool },
}

#[derive(Debug, Default)]
struct Files {
    next: i64,
    open: HashMap<i64, OpenFile>,
}

/// A QGA transport to one Proxmox VE VM through the cluster's API.
pub struct ProxmoxTransport {
    api: Arc<ProxmoxApi>,
    vmid: u32,
    node: Mutex<Option<String>>,
    files: Mutex<Files>,
}

impl std::fmt::Debug for ProxmoxTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxmoxTransport").field("vmid", &self.vmid).field("node", &self.node()).finish_non_exhaustive()
    }
}

fn handle_arg(command: &str, arguments: Option<&Value>) -> Result<i64, QgaError> {
    arguments
        .and_then(|a| a.get("handle"))
        .and_then(Value::as_i64)
        .ok_or_else(|| QgaError::protocol(command, "no integer \"handle\" argument"))
}

fn unknown_handle(command: &str, handle: i64) -> QgaError {
    QgaError::Agent {
        command: command.to_owned(),
        class: "GenericError".to_owned(),
        desc: format!("handle '{handle}' has not been found"),
    }
}

impl ProxmoxTransport {
    /// A transport to VM `vmid` through `api`. The node is looked up on the first command.
    pub fn new(api: Arc<ProxmoxApi>, vmid: u32) -> Self {
        Self { api, vmid, node: Mutex::new(None), files: Mutex::new(Files { next: FIRST_HANDLE, ..Files::default() }) }
    }

    /// The VM id.
    pub fn vmid(&self) -> u32 {
        self.vmid
    }

    /// The node the VM was last seen on.
    pub fn node(&self) -> Option<String> {
        self.node.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records where the VM is (the provider does when it polls), or forgets it.
    pub fn set_node(&self, node: Option<String>) {
        *self.node.lock().unwrap_or_else(PoisonError::into_inner) = node;
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn transport_error(&self, command: &str, message: impl std::fmt::Display) -> QgaError {
        QgaError::Transport { target: self.target(), message: format!("{command}: {message}") }
    }

    /// Looks the VM's node up in `/cluster/resources` and caches it.
    async fn resolve(&self, command: &str, deadline: Instant, timeout: Duration) -> Result<String, QgaError> {
        let vm =
            self.api.cluster_vm(self.vmid, deadline).await.map_err(|e| self.api_error(command, timeout, None, e))?;
        let Some(vm) = vm else {
            self.set_node(None);
            return Err(self.transport_error(
                command,
                format!(
                    "VM {} is not in /cluster/resources (it does not exist, or the token lacks VM.Audit on /vms/{})",
                    self.vmid, self.vmid
                ),
            ));
        };
        self.set_node(Some(vm.node.clone()));
        Ok(vm.node)
    }

    /// Calls `…/nodes/{node}/qemu/{vmid}/agent/{sub}` and returns the answer's `data`, following
    /// the VM once if it moved.
    #[allow(clippy::too_many_arguments)]
    async fn agent(
        &self,
        command: &str,
        method: Method,
        sub: &str,
        body: Option<&Value>,
        idempotent: bool,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Value, QgaError> {
        let node = match self.node() {
            Some(node) => node,
            None => self.resolve(command, deadline, timeout).await?,
        };
        let path = |node: &str| format!("/nodes/{node}/qemu/{}/agent/{sub}", self.vmid);
        match self.api.call(method.clone(), &path(&node), body, idempotent, deadline).await {
            Ok(data) => Ok(data),
            Err(e) if moved(&e) => {
                let fresh = self.resolve(command, deadline, timeout).await?;
                if fresh == node {
                    return Err(self.api_error(command, timeout, Some(&node), e));
                }
                tracing::info!(vmid = self.vmid, from = %node, to = %fresh, "Proxmox VM moved; following it");
                // Safe to repeat: the VM was not on the old node, so nothing ran there.
                self.api
                    .call(method, &path(&fresh), body, idempotent, deadline)
                    .await
                    .map_err(|e| self.api_error(command, timeout, Some(&fresh), e))
            }
            Err(e) => Err(self.api_error(command, timeout, Some(&node), e)),
        }
    }

    fn api_error(&self, command: &str, timeout: Duration, node: Option<&str>, error: ApiError) -> QgaError {
        let vmid = self.vmid;
        match error {
            ApiError::Timeout { .. } => QgaError::Timeout { command: command.to_owned(), after: timeout },
            ApiError::Unreachable { .. } | ApiError::Invalid { .. } => self.transport_error(command, error),
            ApiError::Status { status: 401, ref message, .. } => self.transport_error(
                command,
                format!(
                    "authentication failed (HTTP 401: {message}): check api-token-id and api-token-secret in the \
                     ProxmoxCluster's Secret"
                ),
            ),
            ApiError::Status { status: 403, ref message, .. } => self.transport_error(
                command,
                format!(
                    "permission denied (HTTP 403: {message}): the token needs VM.Audit and VM.Monitor (PVE 8) or \
                     VM.GuestAgent.* (PVE 9) on /vms/{vmid}"
                ),
            ),
            ApiError::Status { status: 501, ref message, .. } if message.contains("too large") => QgaError::TooLarge {
                command: command.to_owned(),
                what: "request body (pveproxy refused it)".to_owned(),
                limit: 64 * 1024,
            },
            ApiError::Status { status: 501, message, .. } => QgaError::NotSupported {
                command: command.to_owned(),
                desc: format!("not available through this Proxmox VE API: {message}"),
            },
            ApiError::Status { status, ref message, .. } => match codec::classify_message(message) {
                PveFailure::Agent(desc) => {
                    QgaError::Agent { command: command.to_owned(), class: "GenericError".to_owned(), desc }
                }
                PveFailure::Unsupported(desc) => QgaError::NotSupported { command: command.to_owned(), desc },
                PveFailure::AgentTimeout => QgaError::Timeout { command: command.to_owned(), after: timeout },
                PveFailure::Unavailable => {
                    self.transport_error(command, format!("the guest agent cannot answer: {message}"))
                }
                PveFailure::NotOnNode => self
                    .transport_error(command, format!("VM {vmid} is not on node {}: {message}", node.unwrap_or("?"))),
                PveFailure::Other => self.transport_error(command, format!("HTTP {status}: {message}")),
            },
        }
    }

    /// A command PVE serves as its own endpoint: its `result`.
    async fn simple(
        &self,
        command: &str,
        method: Method,
        sub: &str,
        arguments: Option<&Value>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Value, QgaError> {
        if arguments.is_some_and(|a| a.as_object().is_none_or(|fields| !fields.is_empty())) {
            return Err(QgaError::NotSupported {
                command: command.to_owned(),
                desc: "the Proxmox API takes no arguments for this command".to_owned(),
            });
        }
        let data = self.agent(command, method, sub, None, true, deadline, timeout).await?;
        match data {
            Value::Object(mut fields) if fields.contains_key("result") => {
                Ok(fields.remove("result").unwrap_or_default())
            }
            other => Err(QgaError::protocol(command, format!("answer without \"result\": {other}"))),
        }
    }

    async fn start(
        &self,
        command: &str,
        argv: &[String],
        input: Option<&[u8]>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<i64, QgaError> {
        let body = codec::exec_body(argv, input);
        let data = self.agent(command, Method::POST, "exec", Some(&body), false, deadline, timeout).await?;
        exec::parse_pid(&data)
    }

    async fn status(&self, command: &str, pid: i64, deadline: Instant, timeout: Duration) -> Result<Value, QgaError> {
        let data =
            self.agent(command, Method::GET, &format!("exec-status?pid={pid}"), None, true, deadline, timeout).await?;
        codec::exec_status_reply(&data)
    }

    /// Runs `argv` with `input` and waits for it to exit (within the command's deadline).
    async fn run(
        &self,
        command: &str,
        argv: &[String],
        input: Option<&[u8]>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<ExecOutput, QgaError> {
        let pid = self.start(command, argv, input, deadline, timeout).await?;
        let mut delay = None;
        loop {
            let status = self.status(command, pid, deadline, timeout).await?;
            if let Some(output) = exec::parse_status(pid, status)? {
                return Ok(output);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(QgaError::Timeout { command: command.to_owned(), after: timeout });
            }
            let pause = exec::next_poll_delay(delay);
            delay = Some(pause);
            tokio::time::sleep(pause.min(deadline - now)).await;
        }
    }

    /// Runs a file helper (`dd`) and turns a failure into an agent error about `path`.
    async fn run_helper(
        &self,
        command: &str,
        path: &str,
        argv: &[String],
        input: Option<&[u8]>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), QgaError> {
        let output = self.run(command, argv, input, deadline, timeout).await?;
        if output.success() {
            return Ok(());
        }
        Err(QgaError::Agent {
            command: command.to_owned(),
            class: "GenericError".to_owned(),
            desc: format!(
                "{} on {path} failed (exit {:?}, signal {:?}): {}",
                argv[0],
                output.exit_code,
                output.signal,
                output.stderr_lossy().trim()
            ),
        })
    }

    async fn file_open(
        &self,
        arguments: Option<&Value>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Value, QgaError> {
        const COMMAND: &str = "guest-file-open";
        let path = arguments
            .and_then(|a| a.get("path"))
            .and_then(Value::as_str)
            .ok_or_else(|| QgaError::protocol(COMMAND, "no \"path\" argument"))?
            .to_owned();
        let mode = arguments.and_then(|a| a.get("mode")).and_then(Value::as_str).unwrap_or("r");
        let file = match mode {
            "r" | "rb" => {
                let sub = format!("file-read?file={}", codec::query_escape(&path));
                let data = self.agent(COMMAND, Method::GET, &sub, None, true, deadline, timeout).await?;
                let (data, truncated) = codec::file_read_content(&data)?;
                OpenFile::Read { path, data, pos: 0, truncated }
            }
            "w" | "wb" => OpenFile::Write { path, append: false, written: false },
            "a" | "ab" => OpenFile::Write { path, append: true, written: false },
            other => {
                return Err(QgaError::NotSupported {
                    command: COMMAND.to_owned(),
                    desc: format!("mode {other:?} cannot be emulated through the Proxmox API (r, w and a can)"),
                });
            }
        };
        let mut files = self.files();
        if files.open.len() >= MAX_OPEN_FILES {
            return Err(QgaError::Agent {
                command: COMMAND.to_owned(),
                class: "GenericError".to_owned(),
                desc: format!("too many open files ({MAX_OPEN_FILES})"),
            });
        }
        let handle = files.next;
        files.next += 1;
        files.open.insert(handle, file);
        Ok(json!(handle))
    }

    fn file_read(&self, arguments: Option<&Value>) -> Result<Value, QgaError> {
        const COMMAND: &str = "guest-file-read";
        let handle = handle_arg(COMMAND, arguments)?;
        let count = arguments.and_then(|a| a.get("count")).and_then(Value::as_u64).unwrap_or(4096);
        let mut files = self.files();
        let Some(OpenFile::Read { path, data, pos, truncated }) = files.open.get_mut(&handle) else {
            return Err(unknown_handle(COMMAND, handle));
        };
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let end = pos.saturating_add(count).min(data.len());
        let piece = data.get(*pos..end).unwrap_or_default();
        if piece.is_empty() && *truncated && count > 0 {
            return Err(QgaError::TooLarge {
                command: COMMAND.to_owned(),
                what: format!("file {path} (the Proxmox API reads at most 16 MiB)"),
                limit: codec::FILE_READ_MAX,
            });
        }
        let reply = json!({
            "count": piece.len(),
            "buf-b64": STANDARD.encode(piece),
            "eof": end == data.len() && !*truncated,
        });
        *pos = end;
        Ok(reply)
    }

    async fn file_write(
        &self,
        arguments: Option<&Value>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Value, QgaError> {
        const COMMAND: &str = "guest-file-write";
        let handle = handle_arg(COMMAND, arguments)?;
        let b64 = arguments
            .and_then(|a| a.get("buf-b64"))
            .and_then(Value::as_str)
            .ok_or_else(|| QgaError::protocol(COMMAND, "no \"buf-b64\" argument"))?;
        let mut data = STANDARD.decode(b64).map_err(|e| QgaError::protocol(COMMAND, format!("bad base64: {e}")))?;
        if let Some(count) = arguments.and_then(|a| a.get("count")).and_then(Value::as_u64) {
            data.truncate(usize::try_from(count).unwrap_or(usize::MAX));
        }
        let (path, append, written) = match self.files().open.get(&handle) {
            Some(OpenFile::Write { path, append, written }) => (path.clone(), *append, *written),
            _ => return Err(unknown_handle(COMMAND, handle)),
        };
        if data.is_empty() {
            return Ok(json!({"count": 0, "eof": false}));
        }
        let too_long = || QgaError::TooLarge {
            command: COMMAND.to_owned(),
            what: format!("path {path} (no room left for data in one request)"),
            limit: codec::BODY_BUDGET as u64,
        };
        let taken = if !append && !written {
            let n = codec::file_write_take(&path, &data);
            if n == 0 {
                return Err(too_long());
            }
            let body = json!({"file": path, "content": STANDARD.encode(&data[..n]), "encode": 0});
            self.agent(COMMAND, Method::POST, "file-write", Some(&body), true, deadline, timeout).await?;
            n
        } else {
            let argv = codec::append_argv(&path);
            let n = codec::input_take(&argv, &data);
            if n == 0 {
                return Err(too_long());
            }
            self.run_helper(COMMAND, &path, &argv, Some(&data[..n]), deadline, timeout).await?;
            n
        };
        if let Some(OpenFile::Write { written, .. }) = self.files().open.get_mut(&handle) {
            *written = true;
        }
        Ok(json!({"count": taken, "eof": false}))
    }

    async fn file_close(
        &self,
        arguments: Option<&Value>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Value, QgaError> {
        const COMMAND: &str = "guest-file-close";
        let handle = handle_arg(COMMAND, arguments)?;
        let Some(file) = self.files().open.remove(&handle) else {
            return Err(unknown_handle(COMMAND, handle));
        };
        if let OpenFile::Write { path, append, written: false } = file {
            // Nothing was written: still create the file (and empty it, for "w").
            let argv = if append { codec::append_argv(&path) } else { codec::truncate_argv(&path) };
            self.run_helper(COMMAND, &path, &argv, None, deadline, timeout).await?;
        }
        Ok(json!({}))
    }
}

/// Whether a failed call suggests the VM is no longer on the node asked.
fn moved(error: &ApiError) -> bool {
    match error {
        ApiError::Status { status: 500, message, .. } => codec::classify_message(message) == PveFailure::NotOnNode,
        ApiError::Unreachable { node_unreachable, .. } => *node_unreachable,
        _ => false,
    }
}

#[async_trait]
impl QgaTransport for ProxmoxTransport {
    async fn execute(&self, command: &str, arguments: Option<Value>, timeout: Duration) -> Result<Value, QgaError> {
        let deadline = Instant::now() + timeout;
        let args = arguments.as_ref();
        if let Some((_, sub)) = GET_COMMANDS.iter().find(|(name, _)| *name == command) {
            return self.simple(command, Method::GET, sub, args, deadline, timeout).await;
        }
        match command {
            // Replies arrive whole: there is no stream to resynchronise.
            "guest-sync" | "guest-sync-delimited" => Ok(args.and_then(|a| a.get("id")).cloned().unwrap_or_default()),
            "guest-ping" => self.simple(command, Method::POST, "ping", args, deadline, timeout).await,
            "guest-exec" => {
                let (argv, input) = codec::exec_request(args)?;
                let pid = self.start(command, &argv, input.as_deref(), deadline, timeout).await?;
                Ok(json!({"pid": pid}))
            }
            "guest-exec-status" => {
                let pid = args
                    .and_then(|a| a.get("pid"))
                    .and_then(Value::as_i64)
                    .ok_or_else(|| QgaError::protocol(command, "no integer \"pid\" argument"))?;
                self.status(command, pid, deadline, timeout).await
            }
            "guest-file-open" => self.file_open(args, deadline, timeout).await,
            "guest-file-read" => self.file_read(args),
            "guest-file-write" => self.file_write(args, deadline, timeout).await,
            "guest-file-close" => self.file_close(args, deadline, timeout).await,
            "guest-file-flush" => {
                let handle = handle_arg(command, args)?;
                if self.files().open.contains_key(&handle) {
                    Ok(json!({}))
                } else {
                    Err(unknown_handle(command, handle))
                }
            }
            _ => Err(QgaError::NotSupported {
                command: command.to_owned(),
                desc: "not available through the Proxmox API (it offers ping, info, get-osinfo and other queries, \
                       exec, exec-status, and files through file-read/file-write)"
                    .to_owned(),
            }),
        }
    }

    fn target(&self) -> String {
        match self.node() {
            Some(node) => format!("proxmox vmid {} (node {node})", self.vmid),
            None => format!("proxmox vmid {}", self.vmid),
        }
    }
}
