//! The guest sshd through the real OpenSSH `ssh`, `sftp` and `scp` clients.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_exec_returns_stdout_stderr_and_exit_code() {
    let fx = Fixture::start(true);

    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("hostname");
    let (code, stdout, stderr) = output(cmd).await;
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(stdout, format!("{COMPUTER_NAME}\r\n"));

    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("Get-Nothing");
    let (code, stdout, stderr) = output(cmd).await;
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("'Get-Nothing' is not recognized"),
        "{stderr}"
    );

    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("exit 42");
    assert_eq!(output(cmd).await.0, 42);

    // The NSG was asked about the caller and the guest-side port 22, not the loopback port.
    let admitted = fx.admitted.lock().expect("lock").clone();
    assert!(admitted.iter().all(|&(_, port)| port == 22), "{admitted:?}");
    assert!(admitted.iter().all(|(ip, _)| ip.is_loopback()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_sftp_puts_and_gets_with_windows_paths() {
    let fx = Fixture::start(true);
    let local = fx.dir.path().join("report.txt");
    std::fs::write(&local, b"quarterly numbers\r\n").expect("local file");
    let back = fx.dir.path().join("back.txt");
    let batch = fx.dir.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "mkdir C:/Temp\nput {} C:/Temp/report.txt\ncd /C:/Users/{USER}\nput {} notes.txt\nget c:/temp/REPORT.TXT {}\nls /\npwd\n",
            local.display(),
            local.display(),
            back.display()
        ),
    )
    .expect("batch");

    let mut cmd = Command::new("sftp");
    cmd.args(fx.openssh_options(&fx.key_path()))
        .arg("-P")
        .arg(fx.port().to_string())
        .arg("-b")
        .arg(&batch)
        .arg(format!("{USER}@{GUEST_IP}"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let (code, stdout, stderr) = output(cmd).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");

    let sandbox = fx.sandbox();
    assert_eq!(
        std::fs::read(sandbox.join("C/Temp/report.txt")).expect("uploaded"),
        b"quarterly numbers\r\n"
    );
    assert_eq!(
        std::fs::read(sandbox.join(format!("C/Users/{USER}/notes.txt"))).expect("relative put"),
        b"quarterly numbers\r\n"
    );
    // Fetched through a differently-cased path: NTFS names match case-insensitively. (OpenSSH's
    // sftp treats `\` as a glob escape, so backslashed paths are tested with russh below.)
    assert_eq!(
        std::fs::read(&back).expect("downloaded"),
        b"quarterly numbers\r\n"
    );
    assert!(stdout.contains("C:"), "`ls /` lists drives: {stdout}");
    assert!(
        stdout.contains(&format!("/C:/Users/{USER}")),
        "pwd is Windows-style: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_sftp_cannot_climb_out_of_the_sandbox() {
    let fx = Fixture::start(true);
    let stolen = fx.dir.path().join("stolen");
    let batch = fx.dir.path().join("batch");
    std::fs::write(
        &batch,
        format!("get C:/../../known_hosts {}\n", stolen.display()),
    )
    .expect("batch");
    let mut cmd = Command::new("sftp");
    cmd.args(fx.openssh_options(&fx.key_path()))
        .arg("-P")
        .arg(fx.port().to_string())
        .arg("-b")
        .arg(&batch)
        .arg(format!("{USER}@{GUEST_IP}"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let (code, _, stderr) = output(cmd).await;
    assert_ne!(code, 0, "escape must fail: {stderr}");
    assert!(!stolen.exists());
}

/// A local port that was free a moment ago, for `ssh -L`.
fn free_local_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_local_forward_reaches_the_emulated_rdp_listener() {
    let fx = Fixture::start(true);
    let local_port = free_local_port();
    let mut cmd = fx.ssh(&fx.key_path());
    cmd.args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("{local_port}:localhost:3389"));
    let mut tunnel = cmd.spawn().expect("ssh -L");

    // ssh needs a moment to authenticate and open the forward; poll until it accepts (by time:
    // 200 tries 50 ms apart, 10 s, are short for a key exchange with the debug-built guest
    // sshd on a loaded machine).
    let mut stream = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", local_port)).await {
            stream = Some(s);
            break;
        }
        assert!(
            tunnel.try_wait().expect("poll ssh").is_none(),
            "ssh -L exited early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stream = stream.expect("tunnel accepts connections");
    let probe = tokio::time::timeout(Duration::from_secs(30), probe_rdp(&mut stream))
        .await
        .expect("rdp answer")
        .expect("valid connection confirm");
    assert!(matches!(
        probe.negotiation,
        RdpNegotiation::Selected {
            protocol: PROTOCOL_SSL,
            ..
        }
    ));
    assert_eq!(probe.security(), "tls");
    let _ = stream.shutdown().await;
    tunnel.kill().await.expect("stop ssh -L");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_shell_runs_a_cmd_style_loop() {
    let fx = Fixture::start(true);
    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("-T")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("ssh shell");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"hostname\r\nexit 7\r\n")
        .await
        .expect("type");
    drop(stdin);
    let out = child.wait_with_output().await.expect("shell ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}");
    assert!(stdout.starts_with("Microsoft Windows"), "{stdout}");
    assert!(stdout.contains(&format!("C:\\Users\\{USER}>")), "{stdout}");
    assert!(stdout.contains(COMPUTER_NAME), "{stdout}");
}

/// Also guards the sftp subsystem's exit-status 0: OpenSSH 9's scp runs over SFTP and exits 1,
/// silently, when the server closes the channel without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_scp_copies_both_ways_with_a_drive_path() {
    let fx = Fixture::start(true);
    std::fs::create_dir_all(fx.sandbox().join("C/Temp")).expect("C:/Temp");
    let local = fx.dir.path().join("payload.bin");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &payload).expect("payload");
    let scp = |from: String, to: String| {
        let mut cmd = Command::new("scp");
        cmd.args(fx.openssh_options(&fx.key_path()))
            .arg("-P")
            .arg(fx.port().to_string())
            .arg(from)
            .arg(to)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    };
    let remote = format!("{USER}@{GUEST_IP}:C:/Temp/payload.bin");
    let (code, _, stderr) = output(scp(local.display().to_string(), remote.clone())).await;
    assert_eq!(code, 0, "upload: {stderr}");
    assert_eq!(
        std::fs::read(fx.sandbox().join("C/Temp/payload.bin")).expect("uploaded"),
        payload
    );
    let back = fx.dir.path().join("back.bin");
    let (code, _, stderr) = output(scp(remote, back.display().to_string())).await;
    assert_eq!(code, 0, "download: {stderr}");
    assert_eq!(std::fs::read(&back).expect("downloaded"), payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_shell_with_a_pty_echoes_and_edits_the_line() {
    let fx = Fixture::start(true);
    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("-tt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("ssh -tt");
    let mut stdin = child.stdin.take().expect("stdin");
    // A typo fixed with backspace, as a terminal sends it (CR ends a line).
    stdin
        .write_all(b"hostnamx\x7fe\rexit 5\r")
        .await
        .expect("type");
    let out = child.wait_with_output().await.expect("shell ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{stdout}");
    assert!(
        stdout.contains("hostnamx\x08 \x08e\r\n"),
        "echo: {stdout:?}"
    );
    assert!(
        stdout.contains(&format!("{COMPUTER_NAME}\r\n")),
        "{stdout:?}"
    );
    assert_eq!(
        fx.guest.commands.lock().expect("lock").as_slice(),
        ["hostname"]
    );
}
