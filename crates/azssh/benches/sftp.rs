//! SFTP throughput: azssh (`Session::upload`, framed by azssh; `download`, russh-sftp) against
//! OpenSSH's `sftp` (batch mode, `-b`) and `scp`, all to the same local OpenSSH `sshd`, with the
//! same cipher (aes256-gcm@openssh.com, azssh's first choice) and, for reference, OpenSSH's
//! default cipher.
//! azssh asks the server to fsync each uploaded file (`fsync@openssh.com`) before reporting it
//! done; `sftp -f` does the same, so that row is the like-for-like upload comparison.
//! Run by hand: `cargo bench --bench sftp` (`AZSSH_BENCH_MIB=64` to move less data,
//! `AZSSH_BENCH_ROUNDS=1` for fewer rounds).
//!
//! Each transfer is timed as a user runs it: connect, authenticate, copy, close (for OpenSSH, the
//! whole process). Every result is checked byte for byte (SHA-256) after its timing.
// A benchmark's report is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/it/sshd.rs"]
mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use azssh::ssh::{ConnectOptions, Session};
use sha2::{Digest, Sha256};

const GCM: &str = "aes256-gcm@openssh.com";

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Azssh,
    Sftp(Option<&'static str>),
    /// `sftp -f`: fsync@openssh.com after each upload, as azssh does (on download it also syncs
    /// the local file, which azssh does not: compare its upload column).
    SftpFsync(&'static str),
    Scp(Option<&'static str>),
}

impl Tool {
    fn label(self) -> String {
        let cipher = |c: Option<&str>| match c {
            Some(_) => "-c aes256-gcm".to_string(),
            None => "(default cipher)".to_string(),
        };
        match self {
            Tool::Azssh => "azssh (aes256-gcm)".to_string(),
            Tool::Sftp(c) => format!("sftp -b {}", cipher(c)),
            Tool::SftpFsync(c) => format!("sftp -b -f {}", cipher(Some(c))),
            Tool::Scp(c) => format!("scp {}", cipher(c)),
        }
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

/// Copies `from` to `to` (one of them `user@127.0.0.1:path` when `remote` says which) with
/// `tool`; returns MB/s (10^6 bytes).
async fn transfer(
    tool: Tool,
    sshd: &sshd::Sshd,
    upload: bool,
    local: &Path,
    remote: &Path,
    len: u64,
    batch_dir: &Path,
) -> f64 {
    let start = Instant::now();
    let host = format!("{}@127.0.0.1", sshd.user);
    match tool {
        Tool::Azssh => {
            let s = Session::connect(options(sshd)).await.expect("connect");
            let moved = if upload {
                s.upload(local, &remote.to_string_lossy()).await
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
    len as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn sha256(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("hash");
    format!("{:x}", h.finalize())
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

    let tools = [
        Tool::Azssh,
        Tool::Sftp(Some(GCM)),
        Tool::Scp(Some(GCM)),
        Tool::SftpFsync(GCM),
        Tool::Sftp(None),
        Tool::Scp(None),
    ];
    // Rounds interleave the tools so that load from other processes on a shared machine hits
    // them alike; each keeps its best round.
    let mut best = vec![(0.0f64, 0.0f64); tools.len()];
    for _ in 0..rounds {
        for (i, tool) in tools.iter().enumerate() {
            let up_to = remote.path().join(format!("up-{i}.bin"));
            let up = transfer(*tool, &sshd, true, &payload, &up_to, len, local.path()).await;
            assert_eq!(
                sha256(&up_to),
                want,
                "{}: upload not byte-exact",
                tool.label()
            );
            let _ = std::fs::remove_file(&up_to);
            let down_to = local.path().join(format!("down-{i}.bin"));
            let down = transfer(*tool, &sshd, false, &down_to, &source, len, local.path()).await;
            assert_eq!(
                sha256(&down_to),
                want,
                "{}: download not byte-exact",
                tool.label()
            );
            let _ = std::fs::remove_file(&down_to);
            best[i].0 = best[i].0.max(up);
            best[i].1 = best[i].1.max(down);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "sftp throughput, {mib} MiB each way, best of {rounds} interleaved rounds (MB/s), \
         connect to close, SHA-256 checked; load {}:",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (az_up, az_down) = best[0];
    for (i, tool) in tools.iter().enumerate() {
        let (up, down) = best[i];
        print!(
            "  {:<26} upload {up:8.1}   download {down:8.1}",
            tool.label()
        );
        if i > 0 {
            print!(
                "   azssh/it: upload {:.2}x download {:.2}x",
                az_up / up,
                az_down / down
            );
        }
        println!();
    }
}
