//! A real QEMU guest agent for tests: [`QemuGa`] runs Debian's `qemu-ga` on a unix socket in a
//! fresh temporary directory, and [`QgaProxy`] sits between a client and it to disturb the
//! channel (inject bytes, hold replies back, cut the connection).
//!
//! `qemu-ga` runs every `guest-exec` program and every `guest-file-*` call with its own rights,
//! on this machine: the "guest" is the host. When the tests run as root (CI does), the agent is
//! therefore started as `nobody` (uid/gid 65534, no supplementary groups), so a test, or a bug in
//! the client, cannot write or run anything as root; the temporary directory is handed to that
//! user so the agent can create its socket and state there, and [`QemuGa::scratch`] is the
//! directory the agent can write to. Run as another user, the agent simply runs as that user.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use vrouter_operator::qga::{QgaClient, QgaClientConfig, UnixSocketTransport};

/// Where Debian's qemu-guest-agent package installs the agent.
pub const QEMU_GA: &str = "/usr/sbin/qemu-ga";

/// The user and group the agent runs as when the tests run as root (`nobody`/`nogroup`).
pub const AGENT_ID: u32 = 65534;

/// The `qemu-ga` binary: `$QEMU_GA` if set, else [`QEMU_GA`]. Panics with an install hint when
/// it is missing; the tests that need it never skip.
pub fn qemu_ga_bin() -> PathBuf {
    let path = std::env::var_os("QEMU_GA").map_or_else(|| PathBuf::from(QEMU_GA), PathBuf::from);
    assert!(
        path.is_file(),
        "qemu-ga not found at {} (install Debian's qemu-guest-agent package, or set QEMU_GA to the binary)",
        path.display()
    );
    path
}

/// A running `qemu-ga -m unix-listen`, killed on drop.
pub struct QemuGa {
    dir: tempfile::TempDir,
    socket: PathBuf,
    scratch: PathBuf,
    log: PathBuf,
    child: Child,
}

impl QemuGa {
    /// Starts an agent with the default options.
    pub fn start() -> QemuGa {
        Self::start_with(&[])
    }

    /// Starts an agent with extra command-line arguments (e.g. `["-b", "guest-exec"]` to block
    /// commands). Returns once the socket accepts connections; panics with the agent's log if
    /// it does not start.
    pub fn start_with(extra_args: &[&str]) -> QemuGa {
        let bin = qemu_ga_bin();
        let dir = tempfile::Builder::new().prefix("qemu-ga-").tempdir().unwrap();
        let root = dir.path().metadata().unwrap().uid() == 0;
        let socket = dir.path().join("qga.sock");
        let state = dir.path().join("state");
        let scratch = dir.path().join("scratch");
        let log = dir.path().join("qemu-ga.log");
        std::fs::create_dir(&state).unwrap();
        std::fs::create_dir(&scratch).unwrap();
        let log_file = std::fs::File::create(&log).unwrap();

        let mut command = Command::new(&bin);
        command
            .args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(&state)
            .args(extra_args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        if root {
            for path in [dir.path(), &state, &scratch] {
                std::os::unix::fs::chown(path, Some(AGENT_ID), Some(AGENT_ID)).unwrap();
            }
            // std drops the supplementary groups too when it changes the user as root.
            command.uid(AGENT_ID).gid(AGENT_ID);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut agent = QemuGa { dir, socket, scratch, log, child };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("qemu-ga exited at start ({status}): {}", self.log());
            }
            // A probe connection: qemu-ga takes it, sees it close, and listens again.
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "qemu-ga socket {} never accepted: {}",
                self.socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory (socket, state, scratch, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A directory the agent can write to, for files pushed and programs' output.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// A path in [`scratch`](Self::scratch), as the guest path string the client takes.
    pub fn scratch_path(&self, name: &str) -> String {
        self.scratch.join(name).to_str().unwrap().to_owned()
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client with default settings on the agent's socket.
    pub fn client(&self) -> QgaClient {
        QgaClient::unix_socket(&self.socket)
    }

    /// A client with these settings on the agent's socket.
    pub fn client_with(&self, config: QgaClientConfig) -> QgaClient {
        QgaClient::with_config(Arc::new(UnixSocketTransport::new(&self.socket)), config)
    }
}

impl Drop for QemuGa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Control {
    Inject(Vec<u8>),
    Hold,
    Release,
    Disconnect,
}

/// A unix-socket proxy between a client and an agent, to disturb the channel the way a real one
/// can be disturbed: bytes written towards the client that the agent never sent (garbage, stale
/// replies), replies held back until after the client gave up, a connection cut. Each accepted
/// client gets its own connection to the agent. Stops on drop.
pub struct QgaProxy {
    socket: PathBuf,
    control: mpsc::UnboundedSender<(Control, oneshot::Sender<()>)>,
    requests: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl QgaProxy {
    /// Listens on `socket` and forwards to the agent at `upstream`. `greeting` is written to
    /// every client as soon as it connects, before anything from the agent (leftovers of an
    /// earlier client on a real channel).
    pub async fn start(upstream: &Path, socket: &Path, greeting: &[u8]) -> QgaProxy {
        let listener = UnixListener::bind(socket).unwrap();
        let (control, commands) = mpsc::unbounded_channel();
        let (count, requests) = watch::channel(0);
        let task = tokio::spawn(run_proxy(listener, upstream.to_owned(), greeting.to_vec(), commands, count));
        QgaProxy { socket: socket.to_owned(), control, requests, task }
    }

    /// The socket clients connect to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn send(&self, control: Control) {
        let (done, wait) = oneshot::channel();
        self.control.send((control, done)).unwrap_or_else(|_| panic!("proxy stopped"));
        wait.await.expect("proxy stopped");
    }

    /// Writes `bytes` to the connected client (ahead of any reply held back); returns once they
    /// are in the client's socket buffer. Without a client, they are dropped.
    pub async fn inject(&self, bytes: &[u8]) {
        self.send(Control::Inject(bytes.to_vec())).await;
    }

    /// From now on, keeps what the agent sends instead of forwarding it.
    pub async fn hold(&self) {
        self.send(Control::Hold).await;
    }

    /// Forwards everything held back, and everything after it.
    pub async fn release(&self) {
        self.send(Control::Release).await;
    }

    /// Closes the client's connection (and the proxy's connection to the agent).
    pub async fn disconnect(&self) {
        self.send(Control::Disconnect).await;
    }

    /// How many requests (lines) clients sent to the agent so far.
    pub fn requests(&self) -> u64 {
        *self.requests.borrow()
    }

    /// Waits until clients sent at least `n` requests (at most 30 s).
    pub async fn wait_requests(&self, n: u64) {
        let mut requests = self.requests.clone();
        tokio::time::timeout(Duration::from_secs(30), requests.wait_for(|&sent| sent >= n))
            .await
            .unwrap_or_else(|_| panic!("the client never sent request {n}"))
            .unwrap();
    }
}

impl Drop for QgaProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Session {
    client: UnixStream,
    agent: UnixStream,
}

async fn run_proxy(
    listener: UnixListener,
    upstream: PathBuf,
    greeting: Vec<u8>,
    mut commands: mpsc::UnboundedReceiver<(Control, oneshot::Sender<()>)>,
    count: watch::Sender<u64>,
) {
    let mut session: Option<Session> = None;
    let mut held: Option<Vec<u8>> = None;
    let mut from_client = vec![0u8; 64 * 1024];
    let mut from_agent = vec![0u8; 64 * 1024];
    loop {
        let Some(s) = session.as_mut() else {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut client, _)) = accepted else { return };
                    let agent = UnixStream::connect(&upstream).await.unwrap();
                    client.write_all(&greeting).await.unwrap();
                    session = Some(Session { client, agent });
                }
                command = commands.recv() => {
                    let Some((command, done)) = command else { return };
                    match command {
                        Control::Hold => held = Some(held.take().unwrap_or_default()),
                        Control::Release => held = None,
                        Control::Inject(_) | Control::Disconnect => {}
                    }
                    let _ = done.send(());
                }
            }
            continue;
        };
        let mut end = false;
        tokio::select! {
            read = s.client.read(&mut from_client) => match read {
                Ok(0) | Err(_) => end = true,
                Ok(n) => {
                    let lines = from_client[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                    end = s.agent.write_all(&from_client[..n]).await.is_err();
                    count.send_modify(|sent| *sent += lines);
                }
            },
            read = s.agent.read(&mut from_agent) => match read {
                Ok(0) | Err(_) => end = true,
                Ok(n) => match held.as_mut() {
                    Some(buffer) => buffer.extend_from_slice(&from_agent[..n]),
                    None => end = s.client.write_all(&from_agent[..n]).await.is_err(),
                },
            },
            command = commands.recv() => {
                let Some((command, done)) = command else { return };
                match command {
                    Control::Inject(bytes) => end = s.client.write_all(&bytes).await.is_err(),
                    Control::Hold => held = Some(held.take().unwrap_or_default()),
                    Control::Release => {
                        if let Some(buffer) = held.take() {
                            end = s.client.write_all(&buffer).await.is_err();
                        }
                    }
                    Control::Disconnect => end = true,
                }
                let _ = done.send(());
            }
        }
        if end {
            session = None;
            if let Some(buffer) = held.as_mut() {
                buffer.clear();
            }
        }
    }
}
