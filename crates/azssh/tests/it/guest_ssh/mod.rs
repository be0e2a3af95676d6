//! The emulated guest sshd driven by the real OpenSSH `ssh` and `sftp` clients and by russh:
//! exec, SFTP with Windows paths, `ssh -L` to the emulated RDP port, and every refusal.
//!
//! `openssh` — the real clients; `refusals` — every way a connection is turned away and the
//! listener lifecycle; `russh_client` — the same server through russh.

mod openssh;
mod refusals;
mod russh_client;

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
use azssh::rdp::{PROTOCOL_SSL, RdpNegotiation, probe_rdp};
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
