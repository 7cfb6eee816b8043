//! The guest agent client against the real `qemu-ga` (Debian's qemu-guest-agent, started per test
//! on a unix socket, as `nobody` when the tests run as root): ping, info, osinfo, exec, file
//! transfers, deadlines, resynchronisation on a disturbed channel, the agent's errors, and the
//! `vrouter-operator qga` command.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use vrouter_operator::qga::file::open_args;
use vrouter_operator::qga::info::parse_os_release;
use vrouter_operator::qga::{ExecRequest, OsInfoSource, QgaClient, QgaClientConfig, QgaError, WriteMode};
use vrouter_tests::qga::{AGENT_ID, QemuGa, QgaProxy};
use vrouter_tests::workspace_bin;

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    rand::rng().fill_bytes(&mut data);
    data
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

fn no_args() -> [&'static str; 0] {
    []
}

#[tokio::test]
async fn ping_and_info_list_the_enabled_commands() {
    let ga = QemuGa::start();
    let client = ga.client();
    client.ping().await.unwrap();
    let info = client.info().await.unwrap();
    assert!(!info.version.is_empty());
    for command in [
        "guest-ping",
        "guest-sync-delimited",
        "guest-info",
        "guest-get-osinfo",
        "guest-exec",
        "guest-exec-status",
        "guest-file-open",
        "guest-file-read",
        "guest-file-write",
        "guest-file-close",
    ] {
        assert!(info.is_enabled(command), "{command} not enabled: {info:?}");
    }
    assert!(info.command("guest-shutdown").is_some_and(|c| !c.success_response));
    assert!(info.command("guest-no-such-command").is_none());
}

#[tokio::test]
async fn blocked_commands_are_reported_as_not_supported_before_anything_is_done() {
    let ga = QemuGa::start_with(&["-b", "guest-exec-status,guest-file-write"]);
    let client = ga.client();
    let info = client.info().await.unwrap();
    assert!(info.command("guest-file-write").is_some_and(|c| !c.enabled));
    assert!(!info.is_enabled("guest-exec-status"));
    assert!(info.is_enabled("guest-exec") && info.is_enabled("guest-file-open"));

    // Opening with "w" would truncate the file before the first (refused) write.
    let path = ga.scratch_path("precious");
    std::fs::write(&path, "keep me").unwrap();
    let err = client.write_file(&path, b"new", WriteMode::Truncate).await.unwrap_err();
    assert!(matches!(err, QgaError::NotSupported { .. }), "{err:?}");
    assert_eq!(err.command(), Some("guest-file-write"));
    assert!(err.to_string().contains(&path), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");

    // A program that could not be waited for is not started.
    let marker = ga.scratch_path("started");
    let err = client.exec(&ExecRequest::new("/bin/touch", [marker.as_str()])).await.unwrap_err();
    assert!(matches!(err, QgaError::NotSupported { .. }), "{err:?}");
    assert!(err.to_string().contains("guest-exec-status /bin/touch"), "{err}");
    assert!(!Path::new(&marker).exists());

    // The agent's own refusal (no guest-info check on raw commands) is the same error. (A second
    // client shares the transport: qemu-ga serves one connection at a time.)
    let fresh = QgaClient::with_config(client.transport().clone(), QgaClientConfig::default());
    let err = fresh.execute("guest-file-write", Some(json!({"handle": 1, "buf-b64": ""}))).await.unwrap_err();
    match &err {
        QgaError::NotSupported { command, desc } => {
            assert_eq!(command, "guest-file-write");
            assert!(desc.contains("disabled"), "{desc}");
        }
        other => panic!("{other:?}"),
    }
    // Reading still works.
    assert_eq!(client.read_file(&path).await.unwrap(), b"keep me");
}

#[tokio::test]
async fn osinfo_from_the_agent_and_from_os_release_when_it_is_blocked() {
    let local = parse_os_release(&std::fs::read("/etc/os-release").unwrap());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();

    let ga = QemuGa::start();
    let info = ga.client().os_info().await.unwrap();
    assert_eq!(info.source, OsInfoSource::Agent);
    assert_eq!(info.id.as_deref(), local.get("ID").map(String::as_str));
    assert_eq!(info.pretty_name.as_deref(), local.get("PRETTY_NAME").map(String::as_str));
    assert_eq!(info.kernel_release.as_deref(), Some(kernel.trim()));

    let blocked = QemuGa::start_with(&["-b", "guest-get-osinfo"]);
    let info = blocked.client().os_info().await.unwrap();
    assert_eq!(info.source, OsInfoSource::OsRelease);
    assert_eq!(info.id.as_deref(), local.get("ID").map(String::as_str));
    assert_eq!(info.version_id.as_deref(), local.get("VERSION_ID").map(String::as_str));
    assert_eq!(info.kernel_release, None);
}

#[tokio::test]
async fn exec_returns_output_exit_codes_and_takes_input() {
    let ga = QemuGa::start();
    let client = ga.client();

    let out = client.exec(&ExecRequest::new("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"])).await.unwrap();
    assert_eq!((out.exit_code, out.signal), (Some(3), None));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert!(!out.success() && !out.stdout_truncated && !out.stderr_truncated);
    assert_eq!(out.exit_status(), 3);

    let input = b"binary \x00\xff\xfe input\n".repeat(1000);
    let out = client.exec(&ExecRequest::new("/bin/cat", no_args()).stdin(input.clone())).await.unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, input);

    // An argv, never a shell command line.
    let out = client.exec(&ExecRequest::new("/bin/echo", ["$(id)", "a  b", ";", "*"])).await.unwrap();
    assert_eq!(out.stdout_lossy(), "$(id) a  b ; *\n");

    let out = client.exec(&ExecRequest::new("/usr/bin/env", no_args()).env(["ONLY=this"])).await.unwrap();
    assert_eq!(out.stdout_lossy(), "ONLY=this\n");

    let out = client.exec(&ExecRequest::new("/bin/sh", ["-c", "kill -9 $$"])).await.unwrap();
    assert_eq!((out.exit_code, out.signal), (None, Some(9)));
    assert_eq!(out.exit_status(), 137);

    // A megabyte of output, base64 in the status reply.
    let out = client.exec(&ExecRequest::new("/bin/sh", ["-c", "head -c 1048576 /dev/urandom"])).await.unwrap();
    assert_eq!(out.stdout.len(), 1 << 20);
    assert!(!out.stdout_truncated);

    // More than qemu-ga keeps (16 MiB per stream): cut, and flagged.
    let out =
        client.exec(&ExecRequest::new("/bin/sh", ["-c", "head -c 17000000 /dev/zero; echo e >&2"])).await.unwrap();
    assert!(out.success());
    assert_eq!(out.stdout.len(), 16 << 20);
    assert!(out.stdout_truncated && !out.stderr_truncated);
    assert_eq!(out.stderr, b"e\n");

    if running_as_root() {
        let out = client.exec(&ExecRequest::new("/bin/sh", ["-c", "id -u; id -G"])).await.unwrap();
        assert_eq!(out.stdout_lossy(), format!("{AGENT_ID}\n{AGENT_ID}\n"), "the agent must not run as root");
    }

    let err = client.exec(&ExecRequest::new("/nonexistent/program", no_args())).await.unwrap_err();
    assert!(matches!(err, QgaError::Agent { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("guest-exec /nonexistent/program: ") && text.contains("No such file"), "{text}");

    let err = client.exec(&ExecRequest::new("/bin/cat", no_args()).stdin(vec![0; 2 << 20])).await.unwrap_err();
    assert!(matches!(err, QgaError::TooLarge { .. }), "{err:?}");
    client.ping().await.unwrap();
}

#[tokio::test]
async fn a_program_still_running_at_the_deadline_gives_exec_deadline() {
    let ga = QemuGa::start();
    let client = ga.client();
    let err = client.exec(&ExecRequest::new("/bin/sleep", ["600"]).deadline(Duration::from_secs(1))).await.unwrap_err();
    let QgaError::ExecDeadline { ref program, pid, after } = err else { panic!("{err:?}") };
    assert_eq!((program.as_str(), after), ("/bin/sleep", Duration::from_secs(1)));
    assert!(err.to_string().contains("may still be running"), "{err}");
    assert_eq!(err.label(), "exec_deadline");

    // It does still run; the client is still usable to end it.
    let status = client.execute("guest-exec-status", Some(json!({"pid": pid}))).await.unwrap();
    assert_eq!(status["exited"], false);
    let kill = client.exec(&ExecRequest::new("/bin/kill", ["-9", &pid.to_string()])).await.unwrap();
    assert!(kill.success(), "{}", kill.stderr_lossy());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.execute("guest-exec-status", Some(json!({"pid": pid}))).await.unwrap();
        if status["exited"] == true {
            assert_eq!(status["signal"], 9);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "sleep survived kill -9");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn multi_megabyte_push_and_pull_keep_every_byte() {
    let ga = QemuGa::start();
    let client = ga.client();
    let path = ga.scratch_path("big.bin");
    // Not a multiple of either chunk size.
    let data = random_bytes(5 * 1024 * 1024 + 12_345);

    client.write_file(&path, &data, WriteMode::Truncate).await.unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(sha256(&on_disk), sha256(&data), "the guest file differs");

    let back = client.read_file(&path).await.unwrap();
    assert_eq!(back.len(), data.len());
    assert_eq!(sha256(&back), sha256(&data), "the pulled file differs");

    client.write_file(&path, b"tail", WriteMode::Append).await.unwrap();
    let back = client.read_file(&path).await.unwrap();
    assert_eq!(back.len(), data.len() + 4);
    assert!(back.ends_with(b"tail"));

    // The size limit: exactly at it is fine, one byte over is refused.
    let len = u64::try_from(back.len()).unwrap();
    assert_eq!(client.read_file_limited(&path, len).await.unwrap().len(), back.len());
    let err = client.read_file_limited(&path, len - 1).await.unwrap_err();
    assert!(matches!(err, QgaError::TooLarge { limit, .. } if limit == len - 1), "{err:?}");
    assert!(err.to_string().contains(&path), "{err}");

    // Truncate replaces; empty files work both ways.
    client.write_file(&path, b"", WriteMode::Truncate).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(client.read_file(&path).await.unwrap(), b"");

    // Tiny chunks: many reads and writes, the read loop ends at the agent's eof.
    let config = QgaClientConfig { write_chunk: 5, read_chunk: 7, ..QgaClientConfig::default() };
    let small = QgaClient::with_config(client.transport().clone(), config);
    let text = random_bytes(1000);
    small.write_file(&path, &text, WriteMode::Truncate).await.unwrap();
    assert_eq!(small.read_file(&path).await.unwrap(), text);
}

#[tokio::test]
async fn agent_errors_name_the_command_the_path_and_the_agents_reason() {
    let ga = QemuGa::start();
    let client = ga.client();

    let missing = ga.scratch_path("missing.txt");
    let err = client.read_file(&missing).await.unwrap_err();
    let QgaError::Agent { ref command, ref desc, .. } = err else { panic!("{err:?}") };
    assert_eq!(command, &format!("guest-file-open {missing}"));
    assert!(desc.contains("No such file or directory"), "{desc}");
    let text = err.to_string();
    assert!(text.contains(&missing) && text.contains("No such file or directory"), "{text}");

    let nowhere = ga.scratch_path("no/such/dir/file");
    let err = client.write_file(&nowhere, b"x", WriteMode::Truncate).await.unwrap_err();
    assert!(matches!(err, QgaError::Agent { .. }) && err.to_string().contains(&nowhere), "{err:?}");

    let err = client.execute("guest-no-such-command", None).await.unwrap_err();
    assert!(matches!(err, QgaError::NotSupported { .. }), "{err:?}");

    let err = client.execute("guest-ping", Some(json!({"unexpected": 1}))).await.unwrap_err();
    assert!(matches!(&err, QgaError::Agent { desc, .. } if desc.contains("unexpected")), "{err:?}");

    let err = client.execute("guest-file-read", Some(json!({"handle": 999_999}))).await.unwrap_err();
    assert!(matches!(err, QgaError::Agent { .. }), "{err:?}");

    // None of that upset the channel.
    client.ping().await.unwrap();
}

/// Two files whose contents tell which one a handle belongs to.
fn two_files(ga: &QemuGa) -> (String, String) {
    let (stale, fresh) = (ga.scratch_path("stale.txt"), ga.scratch_path("fresh.txt"));
    std::fs::write(&stale, "stale").unwrap();
    std::fs::write(&fresh, "fresh").unwrap();
    (stale, fresh)
}

#[tokio::test]
async fn garbage_and_stale_replies_on_the_channel_are_dropped_by_the_resync() {
    let ga = QemuGa::start();
    let (_, fresh) = two_files(&ga);
    // What a previous client could have left on the channel: noise, undelimited and delimited
    // stale replies (one looking like a file handle, one like a sync reply), a partial object.
    let leftovers =
        b"\x00noise {\"return\": 1000}\n\xff{\"return\": 4242}\n{\"return\": {\"pid\": 7}}\n{\"return\": {\"pa";
    let proxy = QgaProxy::start(ga.socket(), &ga.dir().join("proxy.sock"), leftovers).await;
    let client = QgaClient::unix_socket(proxy.socket());
    assert_eq!(client.read_file(&fresh).await.unwrap(), b"fresh");

    // Unsolicited data between commands.
    proxy
        .inject(b"{\"return\": 1000}\nnoise\xff{\"return\": 1}{\"return\": {\"count\": 5, \"buf-b64\": \"c3RhbGU=\"")
        .await;
    assert_eq!(client.read_file(&fresh).await.unwrap(), b"fresh");

    // Noise ahead of the awaited reply: the reply is still the answer, and the next command
    // resynchronises first.
    proxy.hold().await;
    let sent = proxy.requests();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.execute("guest-get-host-name", None).await }
    });
    proxy.wait_requests(sent + 1).await;
    proxy.inject(b"\x00\x01 ]] noise \"\r\n").await;
    proxy.release().await;
    let host = waiting.await.unwrap().unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(host["host-name"], hostname.trim());
    let before = proxy.requests();
    assert_eq!(client.read_file(&fresh).await.unwrap(), b"fresh");
    // A sync, then open, read and close.
    assert_eq!(proxy.requests(), before + 4);

    // Noise that opens an object swallows the awaited reply: that command gets no answer, and
    // the next one still gets its own.
    proxy.hold().await;
    let sent = proxy.requests();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.execute_with_timeout("guest-get-host-name", None, Duration::from_secs(1)).await }
    });
    proxy.wait_requests(sent + 1).await;
    proxy.inject(b"{\"noise\": [").await;
    proxy.release().await;
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, QgaError::Timeout { .. }), "{err:?}");
    assert_eq!(client.read_file(&fresh).await.unwrap(), b"fresh");
}

#[tokio::test]
async fn a_reply_after_the_timeout_is_never_taken_for_the_next_answer() {
    let ga = QemuGa::start();
    let (stale, fresh) = two_files(&ga);
    let proxy = QgaProxy::start(ga.socket(), &ga.dir().join("proxy.sock"), b"").await;
    let client = QgaClient::unix_socket(proxy.socket());
    client.info().await.unwrap();

    for late_during_next_command in [true, false] {
        // The agent opens `stale` and answers with its handle, but the answer is held back
        // until after the client gave up.
        proxy.hold().await;
        let err = client
            .execute_with_timeout("guest-file-open", Some(open_args(&stale, "r")), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, QgaError::Timeout { .. }), "{err:?}");

        let sent = proxy.requests();
        let next = tokio::spawn({
            let client = client.clone();
            let fresh = fresh.clone();
            async move { client.read_file(&fresh).await }
        });
        if late_during_next_command {
            // The stale handle arrives while the next command is under way (its resync request
            // has reached the agent).
            proxy.wait_requests(sent + 1).await;
        }
        proxy.release().await;
        // Had the stale handle been taken for the new open's answer, this would read "stale".
        assert_eq!(next.await.unwrap().unwrap(), b"fresh");
    }
}

#[tokio::test]
async fn a_cut_connection_is_reestablished() {
    let ga = QemuGa::start();
    let proxy = QgaProxy::start(ga.socket(), &ga.dir().join("proxy.sock"), b"").await;
    let client = QgaClient::unix_socket(proxy.socket());
    client.ping().await.unwrap();
    proxy.disconnect().await;
    client.ping().await.unwrap();
    let out = client.exec(&ExecRequest::new("/bin/echo", ["again"])).await.unwrap();
    assert_eq!(out.stdout, b"again\n");
}

#[test]
fn the_qga_subcommand_pings_pushes_pulls_and_execs() {
    let ga = QemuGa::start();
    let local = tempfile::tempdir().unwrap();
    let bin = workspace_bin("vrouter-operator", "vrouter-operator");
    let qga = |args: &[&str]| {
        let out = Command::new(&bin).arg("qga").arg("--socket").arg(ga.socket()).args(args).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };

    let (code, stdout, stderr) = qga(&["ping"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("answered"), "{stdout}");

    let (code, stdout, stderr) = qga(&["info"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("guest-exec\n"), "{stdout}");

    let data = random_bytes(3 * 1024 * 1024 + 7);
    let source = local.path().join("upload.bin");
    std::fs::write(&source, &data).unwrap();
    let remote = ga.scratch_path("upload.bin");
    let (code, stdout, stderr) = qga(&["push", source.to_str().unwrap(), &remote]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&remote), "{stdout}");
    assert_eq!(sha256(&std::fs::read(&remote).unwrap()), sha256(&data));

    let target = local.path().join("download.bin");
    let (code, _, stderr) = qga(&["pull", &remote, target.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(sha256(&std::fs::read(&target).unwrap()), sha256(&data));

    let (code, stdout, stderr) = qga(&["exec", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(code, Some(7), "{stderr}");
    assert_eq!(stdout, "out\n");
    assert!(stderr.contains("err\n"), "{stderr}");

    let input = local.path().join("input.txt");
    std::fs::write(&input, "fed through stdin\n").unwrap();
    let (code, stdout, stderr) = qga(&["exec", "--stdin", input.to_str().unwrap(), "--", "/bin/cat"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "fed through stdin\n");

    let (code, stdout, stderr) = qga(&["osinfo"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("source: guest-get-osinfo"), "{stdout}");

    // Failures to use the agent: the error, and ssh's exit code for its own failures.
    let missing = ga.scratch_path("missing");
    let (code, _, stderr) = qga(&["pull", &missing, target.to_str().unwrap()]);
    assert_eq!(code, Some(255));
    assert!(stderr.contains(&format!("guest-file-open {missing}: ")) && stderr.contains("No such file"), "{stderr}");
    let nowhere = local.path().join("no-agent.sock");
    let out = Command::new(&bin).arg("qga").arg("--socket").arg(&nowhere).arg("ping").output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains(nowhere.to_str().unwrap()));
}
