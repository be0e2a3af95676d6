//! Test helper: a real OpenSSH `sshd` on 127.0.0.1 with its own config, host key and client
//! keys in a temp dir, stopped on drop; and a spawned `ssh-agent`. Shared by the integration
//! tests and `benches/tunnel.rs`, `benches/sftp.rs`.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const SSHD: &str = "/usr/sbin/sshd";
/// The passphrase of `Sshd::encrypted_key`.
pub(crate) const PASSPHRASE: &str = "correct horse battery staple";

/// A running sshd. Client keys (`ed25519_key`, `rsa_key`, `encrypted_key`) are all authorized
/// for `user`, the user running the tests.
pub(crate) struct Sshd {
    pub port: u16,
    pub user: String,
    pub dir: tempfile::TempDir,
    pub ed25519_key: PathBuf,
    pub rsa_key: PathBuf,
    pub encrypted_key: PathBuf,
    /// A key that is *not* authorized.
    pub stranger_key: PathBuf,
    pub host_key_pub: PathBuf,
    child: Child,
}

/// Starts sshd, or returns `None` after printing a visible skip notice when it is not
/// installed. With `AZSSH_REQUIRE_SSHD=1` (set by `.ci/run`) a missing sshd fails instead.
pub(crate) fn start(test: &str) -> Option<Sshd> {
    start_with(test, "")
}

/// As [`start`], with `extra` sshd_config lines ahead of the defaults (sshd takes the first
/// value it reads for a keyword, so these win: `MaxAuthTries 1`, `LogLevel VERBOSE`, ...; a
/// `Subsystem sftp ...` line replaces the default `internal-sftp`).
pub(crate) fn start_with(test: &str, extra: &str) -> Option<Sshd> {
    if !Path::new(SSHD).exists() {
        if std::env::var("AZSSH_REQUIRE_SSHD").as_deref() == Ok("1") {
            panic!("{test}: sshd not found at {SSHD} and AZSSH_REQUIRE_SSHD=1");
        }
        // Straight to the stderr handle: libtest captures `eprintln!` of passing tests, and
        // a skip nobody sees is a silent pass.
        let _ = writeln!(std::io::stderr(), "SKIPPED: sshd not found ({test})");
        return None;
    }
    Some(Sshd::start(extra))
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ssh-keygen -t TYPE -N PASSPHRASE -f PATH` (`-m PEM` when asked: the older RSA format).
pub(crate) fn keygen(path: &Path, kind: &str, passphrase: &str, pem: bool) {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", "azssh-test", "-f"])
        .arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    if !passphrase.is_empty() {
        // Few bcrypt rounds: the default 16 take seconds to decrypt in a debug build.
        cmd.args(["-a", "2"]);
    }
    if pem {
        cmd.args(["-m", "PEM"]);
    }
    run(&mut cmd);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Sshd {
    fn start(extra: &str) -> Sshd {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let host_key = d.join("ssh_host_ed25519_key");
        keygen(&host_key, "ed25519", "", false);
        let ed25519_key = d.join("id_ed25519");
        let rsa_key = d.join("id_rsa_pem");
        let encrypted_key = d.join("id_encrypted");
        let stranger_key = d.join("id_stranger");
        keygen(&ed25519_key, "ed25519", "", false);
        // PEM (PKCS#1) to cover the second key format azssh must read.
        keygen(&rsa_key, "rsa", "", true);
        keygen(&encrypted_key, "ed25519", PASSPHRASE, false);
        keygen(&stranger_key, "ed25519", "", false);
        let mut authorized = String::new();
        for k in [&ed25519_key, &rsa_key, &encrypted_key] {
            let pubkey = std::fs::read_to_string(k.with_extension(pub_ext(k))).expect("pub key");
            authorized.push_str(&pubkey);
        }
        std::fs::write(d.join("authorized_keys"), authorized).expect("authorized_keys");
        // sshd running as root needs its privilege-separation directory.
        if !Path::new("/run/sshd").exists() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let user = std::env::var("USER").unwrap_or_else(|_| whoami());

        let mut last_log = String::new();
        for _ in 0..10 {
            let port = free_port();
            let config = d.join("sshd_config");
            let mut base = sshd_config(d, &host_key, port);
            // sshd refuses a second `Subsystem sftp` line: one in `extra` replaces the default.
            if extra.contains("Subsystem sftp ") {
                base = base.replace("Subsystem sftp internal-sftp\n", "");
            }
            std::fs::write(&config, format!("{extra}{base}")).expect("sshd_config");
            let log = d.join("sshd.log");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("spawn sshd");
            if wait_listening(&mut child, port) {
                return Sshd {
                    port,
                    user,
                    host_key_pub: host_key.with_extension("pub"),
                    ed25519_key,
                    rsa_key,
                    encrypted_key,
                    stranger_key,
                    dir,
                    child,
                };
            }
            // Another test took the port between our probe and sshd's bind: try another.
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("sshd did not start: {last_log}");
    }

    /// The server's host key as a `known_hosts` line for `[127.0.0.1]:port`.
    pub(crate) fn known_hosts_line(&self) -> String {
        self.known_hosts_line_at(self.port)
    }

    /// The server's host key as a `known_hosts` line for `[127.0.0.1]:port`, another port that
    /// reaches this server (a relay in front of it).
    pub(crate) fn known_hosts_line_at(&self, port: u16) -> String {
        let pubkey = std::fs::read_to_string(&self.host_key_pub).expect("host key");
        let mut fields = pubkey.split_whitespace();
        let (algo, body) = (fields.next().expect("algo"), fields.next().expect("body"));
        format!("[127.0.0.1]:{port} {algo} {body}\n")
    }

    /// A `known_hosts` file trusting this server.
    pub(crate) fn trusted_known_hosts(&self) -> PathBuf {
        let path = self.dir.path().join("trusted_known_hosts");
        std::fs::write(&path, self.known_hosts_line()).expect("known_hosts");
        path
    }

    /// Arguments for OpenSSH's `ssh`/`sftp`/`scp` (`port_flag` is `-p` for ssh, `-P` for the
    /// other two) to reach this server non-interactively with `ed25519_key`, trusting only its
    /// host key and reading no user config.
    pub(crate) fn openssh_client_args(&self, port_flag: &str) -> Vec<String> {
        self.openssh_client_args_to(port_flag, self.port, &self.trusted_known_hosts())
    }

    /// As [`Sshd::openssh_client_args`], through `port` (a relay in front of this server),
    /// trusting the host keys in `known_hosts`.
    pub(crate) fn openssh_client_args_to(
        &self,
        port_flag: &str,
        port: u16,
        known_hosts: &Path,
    ) -> Vec<String> {
        vec![
            port_flag.into(),
            port.to_string(),
            "-i".into(),
            self.ed25519_key.display().to_string(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-F".into(),
            "/dev/null".into(),
        ]
    }

    /// azssh's options for this server that touch nothing of the user's own setup: no agent,
    /// no `~/.ssh/config`, only `key`, and strict checking against this server's host key.
    pub(crate) fn azssh_options(&self, key: Option<&Path>) -> azssh::ssh::ConnectOptions {
        use azssh::ssh::known_hosts::HostKeyPolicy;
        use azssh::ssh::{ConnectOptions, KnownHosts, StrictHostKeyChecking};
        let mut o = ConnectOptions::new("127.0.0.1");
        o.port = Some(self.port);
        o.user = Some(self.user.clone());
        o.identity_files = key.map(|k| vec![k.to_path_buf()]).unwrap_or_default();
        o.use_agent = false;
        o.ssh_config = Some(self.dir.path().join("no_ssh_config"));
        o.host_keys = HostKeyPolicy {
            mode: StrictHostKeyChecking::Yes,
            known_hosts: KnownHosts::single(self.trusted_known_hosts()),
            ask: None,
        };
        o
    }

    /// The listening sshd's process id: its children's CPU time (`/proc/PID/stat`) is what the
    /// server spent on connections that have ended (benches).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

fn pub_ext(k: &Path) -> String {
    match k.extension() {
        Some(e) => format!("{}.pub", e.to_string_lossy()),
        None => "pub".to_string(),
    }
}

/// Polls until sshd accepts connections; `false` if it exited (e.g. port taken).
fn wait_listening(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn whoami() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "root".to_string())
}

fn sshd_config(dir: &Path, host_key: &Path, port: u16) -> String {
    format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile none
UsePAM no
StrictModes no
AuthorizedKeysFile {dir}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin yes
AllowTcpForwarding yes
AllowAgentForwarding no
X11Forwarding no
MaxStartups 200
MaxSessions 200
MaxAuthTries 10
Subsystem sftp internal-sftp
LogLevel ERROR
",
        host_key = host_key.display(),
        dir = dir.display(),
    )
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A spawned `ssh-agent` on a socket in its own temp dir, killed on drop.
pub(crate) struct Agent {
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Agent {
    pub(crate) fn start() -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssh-agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent {
            socket,
            _dir: dir,
            child,
        }
    }

    /// `ssh-add KEY` against this agent.
    pub(crate) fn add(&self, key: &Path) {
        run(Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
