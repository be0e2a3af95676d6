//! The emulated guest sshd driven by the real OpenSSH `ssh` and `sftp` clients and by russh:
//! exec, SFTP with Windows paths, `ssh -L` to the emulated RDP port, and every refusal.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azssh::emulator::guest_ssh::{
    Admission, ExecOutcome, GuestAccess, GuestSshHandle, GuestSshServer, GuestSshSwitch,
};
use azssh::emulator::rdp::{PROTOCOL_SSL, RdpNegotiation, probe_rdp};
use russh::ChannelMsg;
use russh::keys::{
    Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate,
};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const USER: &str = "azureuser";
const COMPUTER_NAME: &str = "VM-EMU-05";

/// A test double for the guest model: one authorised key for `azureuser`, a handful of cmd.exe
/// answers, and a sandbox directory.
struct TestGuest {
    host_key: PrivateKey,
    running: AtomicBool,
    authorized: PublicKey,
    root: PathBuf,
    commands: Mutex<Vec<String>>,
}

impl GuestAccess for TestGuest {
    fn host_key(&self) -> PrivateKey {
        self.host_key.clone()
    }

    fn sshd_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn is_authorized(&self, user: &str, key: &PublicKey) -> bool {
        // Compare the key material only: the comment is not part of the key.
        user.eq_ignore_ascii_case(USER) && key.key_data() == self.authorized.key_data()
    }

    fn exec(&self, _user: &str, command_line: &str) -> ExecOutcome {
        self.commands
            .lock()
            .expect("lock")
            .push(command_line.to_string());
        let mut words = command_line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("hostname"), None) => ExecOutcome {
                stdout: format!("{COMPUTER_NAME}\r\n").into_bytes(),
                ..Default::default()
            },
            (Some("exit"), Some(code)) => ExecOutcome {
                exit_code: code.parse().unwrap_or(1),
                ..Default::default()
            },
            (Some(other), _) => ExecOutcome {
                stdout: Vec::new(),
                stderr: format!(
                    "'{other}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
                )
                .into_bytes(),
                exit_code: 1,
            },
            (None, _) => ExecOutcome::default(),
        }
    }

    fn sftp_root(&self) -> PathBuf {
        self.root.clone()
    }
}

/// One guest at `127.77.0.5` on an ephemeral port, with its key files written for OpenSSH.
struct Fixture {
    dir: tempfile::TempDir,
    guest: Arc<TestGuest>,
    handle: GuestSshHandle,
    client_key: PrivateKey,
    admitted: Arc<Mutex<Vec<(IpAddr, u16)>>>,
}

const GUEST_IP: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 5);

fn new_key() -> PrivateKey {
    PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519).expect("key")
}

fn write_private_key(path: &Path, key: &PrivateKey) {
    let pem = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .expect("encode key");
    // OpenSSH refuses a private key file that others can read.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("key file");
    std::io::Write::write_all(&mut file, pem.as_bytes()).expect("write key");
}

impl Fixture {
    fn start(admit_all: bool) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("guest");
        std::fs::create_dir_all(root.join("C/Users")).expect("sandbox");
        let client_key = new_key();
        let guest = Arc::new(TestGuest {
            host_key: new_key(),
            running: AtomicBool::new(true),
            authorized: client_key.public_key().clone(),
            root,
            commands: Mutex::new(Vec::new()),
        });
        let admitted = Arc::new(Mutex::new(Vec::new()));
        let seen = admitted.clone();
        let admit: Admission = Arc::new(move |ip, port| {
            seen.lock().expect("lock").push((ip, port));
            admit_all
        });
        let handle = GuestSshServer::start(
            SocketAddr::from((GUEST_IP, 0)),
            guest.clone() as Arc<dyn GuestAccess>,
            admit,
        )
        .expect("start guest sshd");
        write_private_key(&dir.path().join("id_ed25519"), &client_key);
        let host_public = guest.host_key.public_key().to_openssh().expect("host key");
        std::fs::write(
            dir.path().join("known_hosts"),
            format!(
                "[{GUEST_IP}]:{} {host_public}\n",
                handle.local_addr().port()
            ),
        )
        .expect("known_hosts");
        Fixture {
            dir,
            guest,
            handle,
            client_key,
            admitted,
        }
    }

    fn port(&self) -> u16 {
        self.handle.local_addr().port()
    }

    fn sandbox(&self) -> PathBuf {
        self.guest.root.clone()
    }

    /// OpenSSH options shared by `ssh` and `sftp`: no user config, this key only, strict
    /// host-key checking against the fixture's known_hosts.
    fn openssh_options(&self, key: &Path) -> Vec<String> {
        let known_hosts = self.dir.path().join("known_hosts");
        [
            "-F".to_string(),
            "/dev/null".to_string(),
            "-i".to_string(),
            key.display().to_string(),
            "-o".to_string(),
            "IdentitiesOnly=yes".to_string(),
            "-o".to_string(),
            "BatchMode=yes".to_string(),
            "-o".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            "-o".to_string(),
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "-o".to_string(),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            "-o".to_string(),
            "ConnectTimeout=20".to_string(),
        ]
        .into()
    }

    fn ssh(&self, key: &Path) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.openssh_options(key))
            .arg("-p")
            .arg(self.port().to_string())
            .arg(format!("{USER}@{GUEST_IP}"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }
}

async fn output(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.output().await.expect("run OpenSSH client");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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

    // ssh needs a moment to authenticate and open the forward; poll until it accepts.
    let mut stream = None;
    for _ in 0..200 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_when_sshd_is_not_running() {
    let fx = Fixture::start(true);
    fx.guest.running.store(false, Ordering::SeqCst);
    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("hostname");
    let (code, stdout, stderr) = output(cmd).await;
    assert_eq!(code, 255, "{stderr}");
    assert_eq!(stdout, "");
    assert!(fx.guest.commands.lock().expect("lock").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_with_connection_refused_once_the_listener_is_shut_down() {
    let fx = Fixture::start(true);
    fx.handle.shutdown();
    // The accept loop stops asynchronously; a refusal shows up once it has.
    let mut refused = false;
    for _ in 0..100 {
        match tokio::net::TcpStream::connect(fx.handle.local_addr()).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(refused, "a stopped sshd refuses connections");
    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("hostname");
    let (code, _, stderr) = output(cmd).await;
    assert_eq!(code, 255);
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_when_the_nsg_does_not_admit_the_caller() {
    let fx = Fixture::start(false);
    let mut cmd = fx.ssh(&fx.key_path());
    cmd.arg("hostname");
    let (code, stdout, stderr) = output(cmd).await;
    assert_eq!(code, 255, "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("reset") || stderr.contains("closed"),
        "{stderr}"
    );
    assert_eq!(fx.admitted.lock().expect("lock").len(), 1);
    assert!(fx.guest.commands.lock().expect("lock").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_when_the_key_is_not_authorized() {
    let fx = Fixture::start(true);
    let stranger = fx.dir.path().join("stranger");
    write_private_key(&stranger, &new_key());
    let mut cmd = fx.ssh(&stranger);
    cmd.arg("hostname");
    let (code, _, stderr) = output(cmd).await;
    assert_eq!(code, 255);
    assert!(stderr.contains("Permission denied (publickey)"), "{stderr}");
    assert!(fx.guest.commands.lock().expect("lock").is_empty());
}

/// A russh client that pins the guest's host key.
struct PinnedHost(PublicKey);

impl russh::client::Handler for PinnedHost {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(matches!(server_public_key,
            PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.0.key_data()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russh_client_round_trip_exec_forward_and_sftp() {
    let fx = Fixture::start(true);
    let config = Arc::new(russh::client::Config::default());
    let handler = PinnedHost(fx.guest.host_key.public_key().clone());
    let mut session = russh::client::connect(config, fx.handle.local_addr(), handler)
        .await
        .expect("connect");
    let auth = session
        .authenticate_publickey(
            USER,
            PrivateKeyWithHashAlg::new(Arc::new(fx.client_key.clone()), None),
        )
        .await
        .expect("auth");
    assert!(auth.success());

    // Exec: stdout, stderr and exit status arrive on the channel.
    let mut channel = session.channel_open_session().await.expect("session");
    channel.exec(true, "nslookup").await.expect("exec");
    let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            _ => {}
        }
    }
    assert_eq!(status, Some(1));
    assert!(stdout.is_empty());
    assert!(String::from_utf8_lossy(&stderr).contains("'nslookup' is not recognized"));

    // Forward to 3389 reaches the RDP listener; anything else is refused.
    let channel = session
        .channel_open_direct_tcpip("127.0.0.1", 3389, "127.0.0.1", 50000)
        .await
        .expect("forward to rdp");
    let mut stream = channel.into_stream();
    let probe = probe_rdp(&mut stream).await.expect("rdp probe");
    assert_eq!(probe.security(), "tls");
    drop(stream);
    let refused = session
        .channel_open_direct_tcpip("10.0.0.4", 445, "127.0.0.1", 50001)
        .await;
    assert!(refused.is_err(), "forwards other than RDP are refused");

    // SFTP through russh-sftp's client: write with a Windows path, read it back.
    let channel = session.channel_open_session().await.expect("sftp session");
    channel
        .request_subsystem(true, "sftp")
        .await
        .expect("subsystem");
    let sftp = russh_sftp::client::SftpSession::new(channel.into_stream())
        .await
        .expect("sftp");
    assert_eq!(
        sftp.canonicalize(".").await.expect("realpath"),
        format!("/C:/Users/{USER}")
    );
    sftp.write("C:\\Users\\azureuser\\hello.txt", b"hi from russh")
        .await
        .expect_err("write needs an existing file");
    sftp.create("C:/Users/azureuser/hello.txt")
        .await
        .expect("create");
    sftp.write("/C:/Users/azureuser/hello.txt", b"hi from russh")
        .await
        .expect("write");
    assert_eq!(
        sftp.read("C:/Users/azureuser/hello.txt")
            .await
            .expect("read"),
        b"hi from russh"
    );
    assert_eq!(
        std::fs::read(fx.sandbox().join("C/Users/azureuser/hello.txt")).expect("on disk"),
        b"hi from russh"
    );
    session
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await
        .expect("disconnect");
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
async fn switch_listens_only_while_sshd_runs() {
    let fx = Fixture::start(true);
    let guest: Arc<dyn GuestAccess> = fx.guest.clone();
    let admit: Admission = Arc::new(|_, _| true);
    let switch = GuestSshSwitch::new(SocketAddr::from((Ipv4Addr::new(127, 77, 0, 6), 0)));

    fx.guest.running.store(false, Ordering::SeqCst);
    assert!(!switch.sync(&guest, &admit).expect("sync"));
    assert_eq!(switch.local_addr(), None);

    fx.guest.running.store(true, Ordering::SeqCst);
    assert!(switch.sync(&guest, &admit).expect("sync"));
    let addr = switch.local_addr().expect("listening");
    assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::new(127, 77, 0, 6)));
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("sshd answers while running");

    fx.guest.running.store(false, Ordering::SeqCst);
    assert!(!switch.sync(&guest, &admit).expect("sync"));
    let mut refused = false;
    for _ in 0..100 {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(refused, "a stopped sshd refuses connections");
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
