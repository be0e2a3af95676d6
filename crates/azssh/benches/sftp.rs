//! SFTP throughput: azssh (`Session::upload_with`, framed by azssh; `download`, russh-sftp)
//! against OpenSSH's `sftp` (batch mode, `-b`) and `scp`, all to the same local OpenSSH `sshd`,
//! with the same cipher (aes256-gcm@openssh.com, azssh's first choice) and, for reference,
//! OpenSSH's default cipher.
//!
//! Uploads are compared like for like: azssh's default upload asks the server to fsync each file
//! (`fsync@openssh.com`) before reporting it done, as `sftp -f` does; `--no-fsync` (`fsync: false`)
//! leaves it in the server's page cache, as plain `sftp` and `scp` do. `scp` is also set against
//! the synced upload, labelled: it never syncs.
//!
//! Run by hand: `cargo bench --bench sftp`. `AZSSH_BENCH_MIB` (256) sets the size,
//! `AZSSH_BENCH_ROUNDS` (3) the rounds, `AZSSH_BENCH_SAME_CIPHER=1` skips the default-cipher
//! peers, `AZSSH_BENCH_TOOLS=azssh,azssh-no-fsync,sftp,sftp-f,scp,sftp-default,scp-default` picks
//! rows and `AZSSH_BENCH_DIRECTION=up|down` one direction (for profiling one transfer).
//!
//! Each transfer is timed as a user runs it: connect, authenticate, copy, close (for OpenSSH, the
//! whole process). Every result is checked byte for byte (SHA-256) after its timing. Beside the
//! throughput, each transfer's CPU time is measured, client (this process, or the OpenSSH
//! processes it ran) and server (sshd and sftp-server, through the listening sshd's reaped
//! children), as it is far less disturbed by other load on a shared machine than wall time.
// A benchmark's report is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "support/proc_cpu.rs"]
mod proc_cpu;
#[path = "../tests/it/sshd.rs"]
mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use azssh::ssh::{ConnectOptions, Session, UploadOptions};
use sha2::{Digest, Sha256};

const GCM: &str = "aes256-gcm@openssh.com";
/// The goal for every same-cipher pair.
const GOAL: f64 = 1.1;

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Azssh {
        fsync: bool,
    },
    Sftp(Option<&'static str>),
    /// `sftp -f`: fsync@openssh.com after each upload, as azssh does by default (on download it
    /// also syncs the local file, which azssh does not: only its upload is measured).
    SftpFsync(&'static str),
    Scp(Option<&'static str>),
}

const TOOLS: [(&str, Tool); 7] = [
    ("azssh", Tool::Azssh { fsync: true }),
    ("azssh-no-fsync", Tool::Azssh { fsync: false }),
    ("sftp", Tool::Sftp(Some(GCM))),
    ("sftp-f", Tool::SftpFsync(GCM)),
    ("scp", Tool::Scp(Some(GCM))),
    ("sftp-default", Tool::Sftp(None)),
    ("scp-default", Tool::Scp(None)),
];

impl Tool {
    fn label(self) -> String {
        let cipher = |c: Option<&str>| match c {
            Some(_) => "-c aes256-gcm".to_string(),
            None => "(default cipher)".to_string(),
        };
        match self {
            Tool::Azssh { fsync: true } => "azssh (synced)".to_string(),
            Tool::Azssh { fsync: false } => "azssh --no-fsync".to_string(),
            Tool::Sftp(c) => format!("sftp -b {}", cipher(c)),
            Tool::SftpFsync(c) => format!("sftp -b -f {}", cipher(Some(c))),
            Tool::Scp(c) => format!("scp {}", cipher(c)),
        }
    }

    /// Downloads are never synced by azssh: one azssh row measures them.
    fn downloads(self) -> bool {
        !matches!(self, Tool::Azssh { fsync: false } | Tool::SftpFsync(_))
    }
}

fn options(sshd: &sshd::Sshd) -> ConnectOptions {
    sshd.azssh_options(Some(&sshd.ed25519_key))
}

fn openssh_args(sshd: &sshd::Sshd, port_flag: &str, cipher: Option<&str>) -> Vec<String> {
    let mut args = sshd.openssh_client_args(port_flag);
    args.push("-q".into());
    if let Some(c) = cipher {
        args.extend(["-c".into(), c.into()]);
    }
    args
}

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CPU seconds: (the process's own, its reaped children's).
fn cpu_times(pid: &str) -> (f64, f64) {
    let (own, children) = proc_cpu::ticks(pid);
    (
        own as f64 / proc_cpu::TICKS_PER_SECOND,
        children as f64 / proc_cpu::TICKS_PER_SECOND,
    )
}

/// Waits until sshd has reaped every connection, so its children's CPU time is complete.
fn wait_server_idle(sshd: &sshd::Sshd) {
    let children = format!("/proc/{0}/task/{0}/children", sshd.pid());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match std::fs::read_to_string(&children) {
            Ok(c) if c.trim().is_empty() => return,
            Err(_) => return,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// One transfer: MB/s (10^6 bytes), client and server CPU seconds.
#[derive(Clone, Copy)]
struct Measured {
    mbps: f64,
    client_cpu: f64,
    server_cpu: f64,
}

/// Copies `from` to `to` (one of them `user@127.0.0.1:path` when `remote` says which) with
/// `tool`, and checks the copy's SHA-256 against `want`.
#[allow(clippy::too_many_arguments)]
async fn transfer(
    tool: Tool,
    sshd: &sshd::Sshd,
    upload: bool,
    local: &Path,
    remote: &Path,
    len: u64,
    batch_dir: &Path,
    want: &str,
) -> Measured {
    let server = sshd.pid().to_string();
    wait_server_idle(sshd);
    let (_, server_before) = cpu_times(&server);
    let (self_before, children_before) = cpu_times("self");
    let start = Instant::now();
    let host = format!("{}@127.0.0.1", sshd.user);
    match tool {
        Tool::Azssh { fsync } => {
            let s = Session::connect(options(sshd)).await.expect("connect");
            let moved = if upload {
                s.upload_with(local, &remote.to_string_lossy(), UploadOptions { fsync })
                    .await
            } else {
                s.download(&remote.to_string_lossy(), local).await
            }
            .expect("azssh transfer");
            assert_eq!(moved.bytes, len);
            let _ = s.close().await;
        }
        Tool::Sftp(_) | Tool::SftpFsync(_) => {
            let (cipher, fsync) = match tool {
                Tool::SftpFsync(c) => (Some(c), true),
                Tool::Sftp(c) => (c, false),
                _ => (None, false),
            };
            let batch = batch_dir.join("batch");
            let line = if upload {
                format!("put {} {}\n", local.display(), remote.display())
            } else {
                format!("get {} {}\n", remote.display(), local.display())
            };
            std::fs::write(&batch, line).expect("batch file");
            let mut cmd = Command::new("sftp");
            cmd.args(openssh_args(sshd, "-P", cipher));
            if fsync {
                cmd.arg("-f");
            }
            run(cmd.arg("-b").arg(&batch).arg(&host));
        }
        Tool::Scp(cipher) => {
            let remote = format!("{host}:{}", remote.display());
            let local = local.display().to_string();
            let (from, to) = if upload {
                (local, remote)
            } else {
                (remote, local)
            };
            run(Command::new("scp")
                .args(openssh_args(sshd, "-P", cipher))
                .arg(from)
                .arg(to));
        }
    }
    let mbps = len as f64 / start.elapsed().as_secs_f64() / 1e6;
    let (self_after, children_after) = cpu_times("self");
    wait_server_idle(sshd);
    let (_, server_after) = cpu_times(&server);
    let client_cpu = match tool {
        Tool::Azssh { .. } => self_after - self_before,
        _ => children_after - children_before,
    };
    // The copy that landed (remote for an upload, local for a download) must hash to `want`;
    // it is removed so the next round writes a fresh file.
    let (landed, what) = if upload {
        (remote, "upload")
    } else {
        (local, "download")
    };
    assert_eq!(
        sha256(landed),
        want,
        "{}: {what} not byte-exact",
        tool.label()
    );
    let _ = std::fs::remove_file(landed);
    Measured {
        mbps,
        client_cpu,
        server_cpu: server_after - server_before,
    }
}

fn sha256(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("hash");
    format!("{:x}", h.finalize())
}

/// Best of the rounds: the highest throughput, and the least CPU (each on its own).
#[derive(Clone, Copy, Default)]
struct Best {
    mbps: f64,
    client_cpu: f64,
    server_cpu: f64,
}

impl Best {
    fn add(&mut self, m: Measured) {
        if self.mbps == 0.0 {
            *self = Best {
                mbps: m.mbps,
                client_cpu: m.client_cpu,
                server_cpu: m.server_cpu,
            };
            return;
        }
        self.mbps = self.mbps.max(m.mbps);
        self.client_cpu = self.client_cpu.min(m.client_cpu);
        self.server_cpu = self.server_cpu.min(m.server_cpu);
    }

    fn cpu(&self) -> f64 {
        self.client_cpu + self.server_cpu
    }

    fn cell(&self) -> String {
        if self.mbps == 0.0 {
            return format!("{:>8} {:>15}", "-", "");
        }
        format!(
            "{:8.1} {:>6.2}+{:<6.2}s ",
            self.mbps, self.client_cpu, self.server_cpu
        )
    }
}

fn loadavg() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main]
async fn main() {
    let Some(sshd) = sshd::start("bench sftp") else {
        return;
    };
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mib = env("AZSSH_BENCH_MIB", 256);
    let rounds = env("AZSSH_BENCH_ROUNDS", 3).max(1);
    let len = mib * 1024 * 1024;
    let same_cipher_only = std::env::var("AZSSH_BENCH_SAME_CIPHER").as_deref() == Ok("1");
    let picked = std::env::var("AZSSH_BENCH_TOOLS").ok();
    let direction = std::env::var("AZSSH_BENCH_DIRECTION").unwrap_or_default();
    let (do_up, do_down) = (direction != "down", direction != "up");
    let tools: Vec<(&str, Tool)> = TOOLS
        .into_iter()
        .filter(|(name, _)| match &picked {
            Some(p) => p.split(',').any(|x| x.trim() == *name),
            None => !(same_cipher_only && name.ends_with("-default")),
        })
        .collect();

    // sshd runs here, so "remote" is another directory on this machine.
    let local = tempfile::tempdir().expect("tmp");
    let remote = tempfile::tempdir().expect("tmp");
    let payload = local.path().join("payload.bin");
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect();
    std::fs::write(&payload, &data).expect("payload");
    drop(data);
    let want = sha256(&payload);
    // The download source, put in place once so every tool reads the same file.
    let source: PathBuf = remote.path().join("source.bin");
    std::fs::copy(&payload, &source).expect("source");

    let load_before = loadavg();
    // Rounds interleave the tools so that load from other processes on a shared machine hits
    // them alike; each keeps its best round.
    let mut up = vec![Best::default(); tools.len()];
    let mut down = vec![Best::default(); tools.len()];
    for _ in 0..rounds {
        for (i, (_, tool)) in tools.iter().enumerate() {
            if do_up {
                let up_to = remote.path().join(format!("up-{i}.bin"));
                up[i].add(
                    transfer(
                        *tool,
                        &sshd,
                        true,
                        &payload,
                        &up_to,
                        len,
                        local.path(),
                        &want,
                    )
                    .await,
                );
            }
            if do_down && tool.downloads() {
                let down_to = local.path().join(format!("down-{i}.bin"));
                down[i].add(
                    transfer(
                        *tool,
                        &sshd,
                        false,
                        &down_to,
                        &source,
                        len,
                        local.path(),
                        &want,
                    )
                    .await,
                );
            }
        }
    }
    println!(
        "sftp, {mib} MiB each way, best of {rounds} interleaved rounds, connect to close, SHA-256 \
         checked; load {load_before} at the start, {} at the end",
        loadavg()
    );
    println!(
        "  {:<30} {:>8} {:>15} {:>8} {:>15}",
        "", "upload", "CPU cli+srv", "download", "CPU cli+srv"
    );
    for (i, (_, tool)) in tools.iter().enumerate() {
        println!("  {:<30} {} {}", tool.label(), up[i].cell(), down[i].cell());
    }

    let find = |name: &str| tools.iter().position(|(n, _)| *n == name);
    let pairs = [
        ("upload, synced", &up, "azssh", "sftp-f", ""),
        (
            "upload, synced",
            &up,
            "azssh",
            "scp",
            " (scp does not sync)",
        ),
        ("upload, no fsync", &up, "azssh-no-fsync", "sftp", ""),
        ("upload, no fsync", &up, "azssh-no-fsync", "scp", ""),
        ("download", &down, "azssh", "sftp", ""),
        ("download", &down, "azssh", "scp", ""),
        (
            "upload, no fsync",
            &up,
            "azssh-no-fsync",
            "sftp-default",
            "",
        ),
        ("upload, no fsync", &up, "azssh-no-fsync", "scp-default", ""),
        ("download", &down, "azssh", "sftp-default", ""),
        ("download", &down, "azssh", "scp-default", ""),
    ];
    println!(
        "  azssh/peer: throughput ratio, and CPU ratio (peer's client+server CPU / azssh's); \
         goal {GOAL}x with the same cipher:"
    );
    for (what, table, ours, theirs, note) in pairs {
        let (Some(a), Some(b)) = (find(ours), find(theirs)) else {
            continue;
        };
        let (a, b) = (table[a], table[b]);
        if a.mbps == 0.0 || b.mbps == 0.0 {
            continue;
        }
        let ratio = a.mbps / b.mbps;
        let verdict = if theirs.ends_with("-default") {
            "reference: other cipher"
        } else if ratio >= GOAL {
            "met"
        } else {
            "BELOW GOAL"
        };
        println!(
            "    {what:<16} {:<16} vs {:<40} {ratio:5.2}x   CPU {:5.2}x   {verdict}",
            tools[find(ours).unwrap_or(0)].1.label(),
            format!("{}{note}", tools[find(theirs).unwrap_or(0)].1.label()),
            b.cpu() / a.cpu().max(0.001),
        );
    }
}
