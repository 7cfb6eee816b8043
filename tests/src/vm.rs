//! A real (tiny) router VM: a Debian kernel and a busybox initramfs running qemu-ga on the
//! virtio-serial channel `org.qemu.guest_agent.0`, booted by QEMU under TCG, with user-mode
//! networking that forwards one guest address to a port on the host's loopback.
//!
//! The image is built by `tests/vm/build-initramfs.sh` into `<target dir>/vm/`, at most once per
//! test process (a lock file keeps parallel test processes apart). See `docs/qga-vm.md`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use vrouter_operator::qga::QgaClient;

/// The address at which the guest reaches the host's forwarded port ([`VmOptions::forward`]).
pub const FORWARD_ADDR: &str = "10.0.2.100";

/// The guest's own address on QEMU's user network (its gateway is 10.0.2.2).
pub const GUEST_ADDR: &str = "10.0.2.15";

/// Where the guest installs its fake VyOS root (`fakevyos install /vyos`).
pub const FAKE_VYOS_ROOT: &str = "/vyos";

/// The name of the guest agent's virtio-serial port.
pub const QGA_PORT: &str = "org.qemu.guest_agent.0";

const QEMU: &str = "qemu-system-x86_64";

/// How long one `guest-ping` may take while waiting for the guest agent.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a VM could not be built, started or reached.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A host program is missing.
    #[error(
        "{program} not found: install the Debian package {package} (apt-get install --no-install-recommends {package})"
    )]
    MissingTool {
        /// The program.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The image build script failed.
    #[error("building the VM image with {script} failed: {message}")]
    Build {
        /// The script.
        script: PathBuf,
        /// What it said.
        message: String,
    },
    /// A local file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited before the guest agent answered.
    #[error("QEMU exited ({status}) before the guest agent answered\n{diagnostics}")]
    QemuExited {
        /// Its exit status.
        status: String,
        /// QEMU's stderr and the guest's console.
        diagnostics: String,
    },
    /// The guest agent did not answer in time.
    #[error("no answer from the guest agent within {after:?} (last error: {last})\n{diagnostics}")]
    AgentTimeout {
        /// The timeout.
        after: Duration,
        /// The last ping error.
        last: String,
        /// QEMU's stderr and the guest's console.
        diagnostics: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

/// The kernel and initramfs the VM boots, as built by `tests/vm/build-initramfs.sh`.
#[derive(Debug, Clone)]
pub struct VmImage {
    /// The kernel: an uncompressed ELF `vmlinux` (booted through its PVH entry) or a bzImage.
    pub kernel: PathBuf,
    /// The initramfs (a cpio archive).
    pub initrd: PathBuf,
    /// The guest's `uname -r`.
    pub kernel_version: String,
    /// `vmlinux` or `bzimage`.
    pub kernel_format: String,
    /// The Debian package the kernel comes from (`name=version`).
    pub kernel_package: String,
    /// How long this process spent building or checking the image.
    pub build_time: Duration,
}

static IMAGE: Mutex<Option<Arc<VmImage>>> = Mutex::new(None);

impl VmImage {
    /// The image, built (or found up to date) once per process.
    pub fn get() -> Result<Arc<VmImage>, VmError> {
        let mut slot = IMAGE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(image) = slot.as_ref() {
            return Ok(image.clone());
        }
        let image = Arc::new(Self::build()?);
        *slot = Some(image.clone());
        Ok(image)
    }

    /// Runs the build script (under a lock file, so parallel test processes take turns).
    fn build() -> Result<VmImage, VmError> {
        let started = Instant::now();
        let out = target_dir().join("vm");
        std::fs::create_dir_all(&out).map_err(io(format!("creating {}", out.display())))?;
        let lock_path = out.join(".harness.lock");
        let lock = File::create(&lock_path).map_err(io(format!("creating {}", lock_path.display())))?;
        lock.lock().map_err(io(format!("locking {}", lock_path.display())))?;

        // The guest runs fakevyos at boot and, later, binaries of this workspace pushed over QGA.
        let fakevyos = crate::fakevyos_bin();
        let agent = crate::workspace_bin("vrouter-agent", "vrouter-agent");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/build-initramfs.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .arg("--bin")
            .arg(&fakevyos)
            .arg("--libs-of")
            .arg(&agent)
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("running {}", script.display())))?;
        if !output.status.success() {
            return Err(VmError::Build {
                script,
                message: format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()),
            });
        }
        let env = String::from_utf8_lossy(&output.stdout);
        let field = |key: &str| {
            env.lines()
                .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
                .map(str::to_owned)
                .ok_or_else(|| VmError::Build {
                    script: script.clone(),
                    message: format!("no {key}= in its output: {env}"),
                })
        };
        Ok(VmImage {
            kernel: field("KERNEL")?.into(),
            initrd: field("INITRD")?.into(),
            kernel_version: field("KERNEL_VERSION")?,
            kernel_format: field("KERNEL_FORMAT")?,
            kernel_package: field("KERNEL_PACKAGE")?,
            build_time: started.elapsed(),
        })
    }
}

/// `target/<profile>/deps/<test>` → `target`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).expect("the test binary lives in target/<profile>/deps").to_owned()
}

/// How to start a [`Vm`].
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// A port on the host's loopback that the guest reaches at [`FORWARD_ADDR`]`:PORT` (each
    /// guest connection becomes one host connection, through `socat`).
    pub forward: Option<u16>,
    /// Guest memory.
    pub memory_mib: u32,
    /// Extra kernel command line arguments.
    pub append: Vec<String>,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self { forward: None, memory_mib: 512, append: Vec::new() }
    }
}

/// A running router VM. QEMU is killed when it is dropped; when the test is panicking, its
/// directory (with the serial log) is kept and its path printed.
pub struct Vm {
    image: Arc<VmImage>,
    options: VmOptions,
    dir: Option<tempfile::TempDir>,
    qga_socket: PathBuf,
    serial_log: PathBuf,
    qemu_log: PathBuf,
    qemu: Mutex<Child>,
    started: Instant,
    boot_time: Mutex<Option<Duration>>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("qga_socket", &self.qga_socket).field("options", &self.options).finish()
    }
}

impl Vm {
    /// Builds the image if needed and starts QEMU (panics with a clear message on failure).
    pub async fn boot(options: VmOptions) -> Vm {
        Self::try_boot(options).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the image if needed and starts QEMU. The guest is not up yet: see
    /// [`wait_for_agent`](Self::wait_for_agent).
    pub async fn try_boot(options: VmOptions) -> Result<Vm, VmError> {
        require(QEMU, "qemu-system-x86")?;
        if options.forward.is_some() {
            require("socat", "socat")?;
        }
        let image = tokio::task::spawn_blocking(VmImage::get).await.expect("the image build task")?;

        // Short, so the socket path stays within the 108-byte limit.
        let dir = tempfile::Builder::new().prefix("vrouter-vm.").tempdir().map_err(io("creating the VM directory"))?;
        let qga_socket = dir.path().join("qga.sock");
        let serial_log = dir.path().join("serial.log");
        let qemu_log = dir.path().join("qemu.log");
        let stderr = File::create(&qemu_log).map_err(io(format!("creating {}", qemu_log.display())))?;
        let args = qemu_args(&image, &options, &qga_socket, &serial_log);
        let started = Instant::now();
        let qemu = Command::new(QEMU)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("starting {QEMU}")))?;
        Ok(Vm {
            image,
            options,
            dir: Some(dir),
            qga_socket,
            serial_log,
            qemu_log,
            qemu: Mutex::new(qemu),
            started,
            boot_time: Mutex::new(None),
        })
    }

    /// Waits until the guest agent answers a ping (resynchronising through the QGA client, so
    /// replies to earlier attempts are dropped) and returns a client for it. Panics with QEMU's
    /// stderr and the guest's console if QEMU exits or `timeout` passes.
    pub async fn wait_for_agent(&self, timeout: Duration) -> QgaClient {
        self.try_wait_for_agent(timeout).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`wait_for_agent`](Self::wait_for_agent) returning the failure.
    pub async fn try_wait_for_agent(&self, timeout: Duration) -> Result<QgaClient, VmError> {
        let client = QgaClient::unix_socket(&self.qga_socket);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                return Err(VmError::QemuExited { status: status.to_string(), diagnostics: self.diagnostics() });
            }
            let attempt = Instant::now();
            let error = match client.execute_with_timeout("guest-ping", None, PING_TIMEOUT).await {
                Ok(_) => {
                    let mut boot_time = self.boot_time.lock().unwrap_or_else(PoisonError::into_inner);
                    boot_time.get_or_insert_with(|| self.started.elapsed());
                    return Ok(client);
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                let last = error.to_string();
                return Err(VmError::AgentTimeout { after: timeout, last, diagnostics: self.diagnostics() });
            }
            // A refused connection fails at once; don't spin on it.
            if attempt.elapsed() < Duration::from_millis(100) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// The unix socket of the guest agent's channel (QEMU's `-chardev socket`).
    pub fn qga_socket(&self) -> &Path {
        &self.qga_socket
    }

    /// The guest's console output so far.
    pub fn serial_log(&self) -> String {
        std::fs::read(&self.serial_log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The file the guest's console is written to.
    pub fn serial_log_path(&self) -> &Path {
        &self.serial_log
    }

    /// The image this VM booted.
    pub fn image(&self) -> &VmImage {
        &self.image
    }

    /// `FORWARD_ADDR:PORT` when a port is forwarded.
    pub fn forward_addr(&self) -> Option<String> {
        self.options.forward.map(|port| format!("{FORWARD_ADDR}:{port}"))
    }

    /// From starting QEMU to the guest agent's first answer, once
    /// [`wait_for_agent`](Self::wait_for_agent) succeeded.
    pub fn boot_time(&self) -> Option<Duration> {
        *self.boot_time.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn exit_status(&self) -> Result<Option<ExitStatus>, VmError> {
        self.qemu.lock().unwrap_or_else(PoisonError::into_inner).try_wait().map_err(io("checking on QEMU"))
    }

    /// QEMU's stderr and the tail of the guest's console, for failure messages.
    pub fn diagnostics(&self) -> String {
        let stderr = std::fs::read_to_string(&self.qemu_log).unwrap_or_default();
        let serial = self.serial_log();
        let lines: Vec<&str> = serial.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!(
            "--- QEMU stderr ({}):\n{}\n--- guest console, last 60 lines ({}):\n{}",
            self.qemu_log.display(),
            stderr.trim_end(),
            self.serial_log.display(),
            tail
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let qemu = self.qemu.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _ = qemu.kill();
        let _ = qemu.wait();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("VM files kept in {}", dir.keep().display());
        }
    }
}

/// QEMU's command line. `pc` boots a little faster than `q35` here; `microvm` lacks a usable
/// virtio-pci without more setup.
fn qemu_args(image: &VmImage, options: &VmOptions, qga_socket: &Path, serial_log: &Path) -> Vec<String> {
    let mut append = vec!["console=ttyS0".to_owned(), "quiet".to_owned(), "panic=-1".to_owned()];
    append.extend(options.append.iter().cloned());
    let mut nic = "user,model=virtio-net-pci,restrict=on".to_owned();
    if let Some(port) = options.forward {
        // cmd: runs once per guest connection; a tcp: target would connect once, at start.
        nic.push_str(&format!(",guestfwd=tcp:{FORWARD_ADDR}:{port}-cmd:socat STDIO TCP:127.0.0.1:{port}"));
    }
    [
        "-machine",
        "pc",
        "-accel",
        "tcg",
        "-m",
        &options.memory_mib.to_string(),
        "-smp",
        "1",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        &image.kernel.display().to_string(),
        "-initrd",
        &image.initrd.display().to_string(),
        "-append",
        &append.join(" "),
        "-chardev",
        &format!("file,id=console0,path={}", qemu_escape(serial_log)),
        "-serial",
        "chardev:console0",
        "-chardev",
        &format!("socket,id=qga0,path={},server=on,wait=off", qemu_escape(qga_socket)),
        "-device",
        "virtio-serial-pci",
        "-device",
        &format!("virtserialport,chardev=qga0,name={QGA_PORT}"),
        "-nic",
        &nic,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// QEMU option values escape a comma by doubling it.
fn qemu_escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

fn require(program: &'static str, package: &'static str) -> Result<(), VmError> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    if found { Ok(()) } else { Err(VmError::MissingTool { program, package }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_command_line() {
        let image = VmImage {
            kernel: "/k/vmlinux".into(),
            initrd: "/k/initramfs.cpio".into(),
            kernel_version: "6.1.0-56-amd64".into(),
            kernel_format: "vmlinux".into(),
            kernel_package: "linux-image-6.1.0-56-amd64=6.1.192-2".into(),
            build_time: Duration::ZERO,
        };
        let options = VmOptions { forward: Some(4242), memory_mib: 256, append: vec!["loglevel=7".into()] };
        let args = qemu_args(&image, &options, Path::new("/d,x/qga.sock"), Path::new("/d/serial.log")).join(" ");
        assert!(args.contains("-kernel /k/vmlinux -initrd /k/initramfs.cpio"), "{args}");
        assert!(args.contains("socket,id=qga0,path=/d,,x/qga.sock,server=on,wait=off"), "{args}");
        assert!(args.contains("virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"), "{args}");
        assert!(args.contains("guestfwd=tcp:10.0.2.100:4242-cmd:socat STDIO TCP:127.0.0.1:4242"), "{args}");
        assert!(args.contains("quiet panic=-1 loglevel=7"), "{args}");
        assert!(args.contains("-m 256"), "{args}");
    }

    #[test]
    fn missing_tools_name_their_package() {
        let e = require("surely-not-a-program-xyz", "some-package").unwrap_err();
        assert!(e.to_string().contains("install the Debian package some-package"), "{e}");
    }
}
