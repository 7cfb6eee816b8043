//! A real router VM (QEMU/TCG, qemu-ga on virtio-serial, see docs/qga-vm.md) driven through the
//! operator's QGA client: agent and OS info, programs, file transfer, the guest's path to the
//! host through `guestfwd`, and a workspace binary pushed into the guest and run there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use vrouter_operator::qga::{ExecRequest, OsInfoSource, QgaClient, WriteMode};
use vrouter_tests::vm::{FAKE_VYOS_ROOT, FORWARD_ADDR, Vm, VmOptions};

/// Hang guards only: the machine is shared and TCG is slow.
const BOOT_DEADLINE: Duration = Duration::from_secs(300);
const NET_DEADLINE: Duration = Duration::from_secs(120);

async fn run(qga: &QgaClient, program: &str, args: &[&str]) -> String {
    let out = qga.exec(&ExecRequest::new(program, args.iter().copied())).await.unwrap();
    assert!(
        out.success(),
        "{program} {args:?} in the guest: exit {:?}, signal {:?}\n{}{}",
        out.exit_code,
        out.signal,
        out.stdout_lossy(),
        out.stderr_lossy()
    );
    out.stdout_lossy().into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_vm_over_qga() {
    // The host side of the guest's forwarded address.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();

    let vm = Vm::boot(VmOptions { forward: Some(port), ..VmOptions::default() }).await;
    let qga = vm.wait_for_agent(BOOT_DEADLINE).await;
    let image = vm.image();
    eprintln!(
        "image: {} ({}, {}) checked/built in {:?}; boot to first QGA reply: {:?}",
        image.kernel_package,
        image.kernel_format,
        image.initrd.display(),
        image.build_time,
        vm.boot_time().unwrap()
    );

    // The agent and the OS it reports: the fake VyOS release on the Debian kernel.
    qga.ping().await.unwrap();
    let info = qga.info().await.unwrap();
    for command in ["guest-exec", "guest-file-open", "guest-get-osinfo"] {
        assert!(info.is_enabled(command), "{command} disabled in qemu-ga {}", info.version);
    }
    let os = qga.os_info().await.unwrap();
    assert_eq!(os.source, OsInfoSource::Agent);
    assert_eq!(os.id.as_deref(), Some("vyos"), "{os:?}");
    assert_eq!(os.kernel_release.as_deref(), Some(image.kernel_version.as_str()), "{os:?}");

    // Programs: output, and a failure reported as an exit code.
    assert_eq!(run(&qga, "uname", &["-r"]).await.trim(), image.kernel_version);
    let release = run(&qga, "cat", &[&format!("{FAKE_VYOS_ROOT}/etc/os-release")]).await;
    assert!(release.contains("ID=vyos") && release.contains("NAME=\"VyOS\""), "{release}");
    run(&qga, "test", &["-f", &format!("{FAKE_VYOS_ROOT}/tmp/vyos-config-status")]).await;
    run(&qga, "test", &["-d", "/config", "-a", "-w", "/config"]).await;
    let missing = qga.exec(&ExecRequest::new("cat", ["/no/such/file"])).await.unwrap();
    assert_eq!(missing.exit_code, Some(1));
    assert!(missing.stderr_lossy().contains("/no/such/file"), "{}", missing.stderr_lossy());

    // PID 1 reaps orphans: a background child of an exited shell does not stay a zombie.
    run(&qga, "sh", &["-c", "sleep 0.1 & exit 0"]).await;
    let deadline = Instant::now() + NET_DEADLINE;
    loop {
        let stat = run(&qga, "sh", &["-c", "cat /proc/[0-9]*/stat 2>/dev/null"]).await;
        let zombies: Vec<&str> = stat
            .lines()
            .filter(|l| l.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
            .collect();
        if zombies.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "zombies in the guest: {zombies:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Files: 1 MiB there and back, and the guest sees the same bytes.
    let blob: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let started = Instant::now();
    qga.write_file("/tmp/blob", &blob, WriteMode::Truncate).await.unwrap();
    let pushed = started.elapsed();
    let back = qga.read_file("/tmp/blob").await.unwrap();
    eprintln!("1 MiB: pushed in {pushed:?}, read back in {:?}", started.elapsed() - pushed);
    assert!(back == blob, "read back {} bytes that differ from the 1 MiB pushed", back.len());
    let sum = run(&qga, "sha256sum", &["/tmp/blob"]).await;
    assert_eq!(sum.split_whitespace().next(), Some(hex(&Sha256::digest(&blob)).as_str()));

    // The guest reaches a host listener on loopback at FORWARD_ADDR through guestfwd.
    let host = tokio::spawn(async move {
        let (conn, _) = listener.accept().await.unwrap();
        let mut conn = BufReader::new(conn);
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        conn.get_mut().write_all(b"hello from the host\n").await.unwrap();
        conn.get_mut().shutdown().await.unwrap();
        line
    });
    let nc = ExecRequest::new("nc", [FORWARD_ADDR.to_owned(), port.to_string()])
        .stdin(b"hello from the guest\n".to_vec())
        .deadline(NET_DEADLINE);
    let out = qga.exec(&nc).await.unwrap();
    let received = tokio::time::timeout(NET_DEADLINE, host).await.expect("the host saw no connection").unwrap();
    assert_eq!(received, "hello from the guest\n");
    assert!(out.success(), "nc: {:?} {}", out.exit_code, out.stderr_lossy());
    assert_eq!(out.stdout_lossy(), "hello from the host\n");

    // A dynamically linked workspace binary pushed over QGA runs with the image's libraries.
    let agent = std::fs::read(vrouter_tests::workspace_bin("vrouter-agent", "vrouter-agent")).unwrap();
    let started = Instant::now();
    qga.write_file("/tmp/vrouter-agent", &agent, WriteMode::Truncate).await.unwrap();
    eprintln!("vrouter-agent ({} MiB) pushed in {:?}", agent.len() >> 20, started.elapsed());
    run(&qga, "chmod", &["0755", "/tmp/vrouter-agent"]).await;
    let version = run(&qga, "/tmp/vrouter-agent", &["--version"]).await;
    assert_eq!(version.trim(), format!("vrouter-agent {}", env!("CARGO_PKG_VERSION")));
    let help = run(&qga, "/tmp/vrouter-agent", &["show", "--help"]).await;
    assert!(help.contains("Usage: vrouter-agent show"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_never_answers_fails_with_its_console() {
    // No /init to run: the kernel panics, and QEMU (-no-reboot, panic=-1) exits.
    let vm = Vm::boot(VmOptions { append: vec!["rdinit=/no-such-init".into()], ..VmOptions::default() }).await;
    let error = vm.try_wait_for_agent(BOOT_DEADLINE).await.unwrap_err().to_string();
    assert!(error.contains("QEMU exited"), "{error}");
    assert!(error.contains("Kernel panic"), "{error}");
    assert!(vm.serial_log().contains("Kernel panic"), "{}", vm.serial_log());
}
