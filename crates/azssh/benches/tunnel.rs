//! Tunnel throughput and connect latency: azssh (russh) against the OpenSSH client, both to the
//! same local OpenSSH `sshd` and the same sink server. Run by hand:
//! `cargo bench --bench tunnel` (`AZSSH_BENCH_MIB=512` to move more data,
//! `AZSSH_BENCH_DIRECTION=pull` or `push` to measure one direction, e.g. under `perf record`,
//! `AZSSH_BENCH_ROUNDS=5` for more rounds than 3, `AZSSH_BENCH_RTT_MS=20` to reach sshd through a
//! link with that round-trip time, as a VM in another region is).
//! azssh is timed twice: its library in this process, and the `azssh tunnel` process as a user
//! runs it beside `ssh -L` (its own runtime, apart from the sink's). Each transfer's CPU is
//! read from `/proc`: the client process's and sshd's, whose single session process bounds any
//! client (the ceiling printed last).
//!
//! Push: the client writes N bytes, the sink reads them all and answers one byte.
//! Pull: the sink writes N bytes and closes. Each is timed from connect to the last byte.
// A benchmark's report is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "support/proc_cpu.rs"]
mod proc_cpu;
#[path = "../tests/it/sshd.rs"]
mod sshd;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azssh::ssh::{ConnectOptions, ExecOptions, KnownHosts, LocalForward, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 1024 * 1024;

/// The sink: `P<len>` = read len bytes then answer one byte; `G<len>` = send len bytes.
async fn sink_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut head = [0u8; 9];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                let len = u64::from_le_bytes(head[1..].try_into().unwrap_or([0; 8]));
                let mut buf = vec![0u8; CHUNK];
                if head[0] == b'P' {
                    let mut left = len;
                    while left > 0 {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => left = left.saturating_sub(n as u64),
                        }
                    }
                    let _ = s.write_all(b"k").await;
                } else {
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(CHUNK as u64) as usize;
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    port
}

/// MB/s (10^6 bytes) of one push or pull of `len` bytes through `port`.
async fn transfer(port: u16, push: bool, len: u64) -> f64 {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let _ = s.set_nodelay(true);
    let mut head = [0u8; 9];
    head[0] = if push { b'P' } else { b'G' };
    head[1..].copy_from_slice(&len.to_le_bytes());
    s.write_all(&head).await.expect("head");
    let mut buf = vec![0x5au8; CHUNK];
    if push {
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            s.write_all(&buf[..n]).await.expect("write");
            left -= n as u64;
        }
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack).await.expect("ack");
    } else {
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        assert_eq!(got, len, "pull lost bytes");
    }
    len as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Where the clients reach sshd: directly, or through [`delay_link`] on another port (with a
/// `known_hosts` file naming that port).
struct SshPath {
    port: u16,
    known_hosts: PathBuf,
}

impl SshPath {
    async fn new(sshd: &sshd::Sshd, rtt: Duration) -> SshPath {
        if rtt.is_zero() {
            return SshPath {
                port: sshd.port,
                known_hosts: sshd.trusted_known_hosts(),
            };
        }
        let port = delay_link(sshd.port, rtt / 2).await;
        let known_hosts = sshd.dir.path().join("delayed_known_hosts");
        std::fs::write(&known_hosts, sshd.known_hosts_line_at(port)).expect("known_hosts");
        SshPath { port, known_hosts }
    }
}

/// OpenSSH's arguments for `path`: strict host keys, only the bench's key, no user config.
fn ssh_args(sshd: &sshd::Sshd, path: &SshPath) -> Vec<String> {
    sshd.openssh_client_args_to("-p", path.port, &path.known_hosts)
}

/// A link to `target` with `one_way` delay in each direction and no bandwidth limit: each
/// chunk read is written out `one_way` later, queued without bound meanwhile (SSH's channel
/// windows bound what is in flight). On loopback TCP's own windows are never the limit, so
/// what such a path measures is each client's SSH window: a window's worth per round trip.
async fn delay_link(target: u16, one_way: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(delay_line(client_read, server_write, one_way));
            tokio::spawn(delay_line(server_read, client_write, one_way));
        }
    });
    port
}

/// One direction of [`delay_link`].
async fn delay_line(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 256 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if tx
            .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Waits (10 s at most) until a forward's local end accepts connections.
fn wait_listening(local: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", local)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ssh -N -L local:127.0.0.1:sink`, waiting until the forward listens.
fn openssh_tunnel(
    sshd: &sshd::Sshd,
    path: &SshPath,
    sink: u16,
    cipher: Option<&str>,
) -> (Child, u16) {
    let local = free_port();
    let mut cmd = Command::new("ssh");
    cmd.args(ssh_args(sshd, path))
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("{local}:127.0.0.1:{sink}"));
    if let Some(c) = cipher {
        cmd.args(["-c", c]);
    }
    cmd.arg(format!("{}@127.0.0.1", sshd.user));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn ssh");
    wait_listening(local, "ssh -L");
    (child, local)
}

/// The product path, as a user runs it beside `ssh -L`: the `azssh tunnel` process (its own
/// runtime, not the bench's) with strict host keys against the same sshd, waiting until the
/// forward listens.
fn azssh_tunnel(sshd: &sshd::Sshd, path: &SshPath, sink: u16) -> (Child, u16) {
    let local = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_azssh"))
        .args(["tunnel", "--ip", "127.0.0.1", "--port"])
        .arg(path.port.to_string())
        .args(["--local-user", &sshd.user, "-i"])
        .arg(&sshd.ed25519_key)
        .arg("--known-hosts")
        .arg(&path.known_hosts)
        .args(["--strict-host-keys", "yes", "-L"])
        .arg(format!("{local}:127.0.0.1:{sink}"))
        .env("HOME", sshd.dir.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn azssh tunnel");
    wait_listening(local, "azssh tunnel");
    (child, local)
}

/// User + system CPU ticks a process (all its threads) has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    proc_cpu::ticks(&pid.to_string()).0
}

/// CPU ticks used so far by every live process under `root` (sshd's per-connection session
/// processes): only one transfer runs at a time, so the growth over a transfer is the server's
/// cost of it, whichever client asked.
fn server_ticks(root: u32) -> u64 {
    let mut total = 0;
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if pid != root {
            total += cpu_ticks(pid);
        }
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        stack.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    total
}

/// TCP segments this machine has retransmitted so far (`/proc/net/snmp`, `Tcp: RetransSegs`).
/// Over loopback nothing is lost, so a retransmission is a sender's timer or reordering guess,
/// and each costs the sender: only one transfer runs at a time, so the growth is that one's.
fn tcp_retransmits() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RetransSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// What transfers cost, summed: the client process's CPU ticks and minor page faults (0 for
/// the library, which shares this process), sshd's CPU ticks, and the machine's TCP
/// retransmissions.
#[derive(Clone, Copy, Default)]
struct Cost {
    client: u64,
    client_faults: u64,
    server: u64,
    retransmits: u64,
}

impl Cost {
    /// The counters now, for `client` and the sshd listening as `server`.
    fn now(client: Option<u32>, server: u32) -> Cost {
        Cost {
            client: client.map(cpu_ticks).unwrap_or(0),
            client_faults: client
                .map(|pid| proc_cpu::minor_faults(&pid.to_string()))
                .unwrap_or(0),
            server: server_ticks(server),
            retransmits: tcp_retransmits(),
        }
    }

    /// Adds what was spent between two readings.
    fn add_since(&mut self, before: Cost, after: Cost) {
        self.client += after.client.saturating_sub(before.client);
        self.client_faults += after.client_faults.saturating_sub(before.client_faults);
        self.server += after.server.saturating_sub(before.server);
        self.retransmits += after.retransmits.saturating_sub(before.retransmits);
    }
}

fn options(sshd: &sshd::Sshd, path: &SshPath) -> ConnectOptions {
    let mut o = sshd.azssh_options(Some(&sshd.ed25519_key));
    o.port = Some(path.port);
    o.host_keys.known_hosts = KnownHosts::single(path.known_hosts.clone());
    o
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let Some(sshd) = sshd::start("bench tunnel") else {
        return;
    };
    let mib: u64 = std::env::var("AZSSH_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let len = mib * 1024 * 1024;
    let sink = sink_server().await;
    let rtt = Duration::from_millis(
        std::env::var("AZSSH_BENCH_RTT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let path = SshPath::new(&sshd, rtt).await;

    let session = Session::connect(options(&sshd, &path))
        .await
        .expect("connect");
    let tunnel = session
        .forward(LocalForward::new(0, "127.0.0.1", sink))
        .await
        .expect("forward");
    let (mut ssh_default, default_port) = openssh_tunnel(&sshd, &path, sink, None);
    let (mut ssh_gcm, gcm_port) =
        openssh_tunnel(&sshd, &path, sink, Some("aes256-gcm@openssh.com"));
    let (mut azssh_process, azssh_port) = azssh_tunnel(&sshd, &path, sink);
    let contenders = [
        ("azssh (aes256-gcm)", tunnel.local_port()),
        ("ssh -L (default cipher)", default_port),
        ("ssh -L -c aes256-gcm", gcm_port),
        ("azssh tunnel (process)", azssh_port),
    ];
    // Rounds interleave the contenders so that load from other processes on a shared machine
    // hits all of them alike; each keeps its best round.
    let direction = std::env::var("AZSSH_BENCH_DIRECTION").unwrap_or_default();
    let (push, pull) = (direction != "pull", direction != "push");
    // Each contender's best MB/s, push then pull.
    let mut results = [[f64::NAN; 2]; 4];
    // The client processes' CPU time (user + system) per direction, summed over the rounds:
    // on a shared machine this shows the client's own cost, which wall time blurs; and the
    // same for sshd's side of each transfer, and the TCP retransmissions during it.
    let clients = [
        None,
        Some(ssh_default.id()),
        Some(ssh_gcm.id()),
        Some(azssh_process.id()),
    ];
    let mut costs = [[Cost::default(); 2]; 4];
    let server = sshd.pid();
    let rounds: usize = std::env::var("AZSSH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for _ in 0..rounds {
        for (i, (_, port)) in contenders.iter().enumerate() {
            for (d, on) in [push, pull].into_iter().enumerate() {
                if !on {
                    continue;
                }
                let before = Cost::now(clients[i], server);
                let mbps = transfer(*port, d == 0, len).await;
                costs[i][d].add_since(before, Cost::now(clients[i], server));
                results[i][d] = mbps.max(results[i][d]);
            }
        }
    }
    tunnel.close().await;
    for child in [&mut ssh_default, &mut ssh_gcm, &mut azssh_process] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // The congestion control shapes sshd's cost on loopback: under BBR sshd spent 1.6–2.1 times
    // its CPU per GiB pulled under CUBIC, and the runs retransmitted segments never lost.
    let congestion =
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap_or_default();
    println!(
        "tunnel throughput, {mib} MiB each way, best of {rounds} interleaved rounds (MB/s), {}; load {}; TCP congestion control {}:",
        if rtt.is_zero() {
            "sshd on loopback".to_string()
        } else {
            format!("sshd {} ms round trip away", rtt.as_millis())
        },
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        congestion.trim()
    );
    let gib = rounds as f64 * len as f64 / (1u64 << 30) as f64;
    let per_gib = |t: u64| t as f64 * 1000.0 / proc_cpu::TICKS_PER_SECOND / gib;
    for (i, (label, _)) in contenders.iter().enumerate() {
        let [push, pull] = results[i];
        let [push_cost, pull_cost] = costs[i];
        let client_cpu = match clients[i] {
            Some(_) => format!(
                "   client CPU ms/GiB push {:6.0} pull {:6.0}   client page faults/GiB push {:7.0} pull {:7.0}",
                per_gib(push_cost.client),
                per_gib(pull_cost.client),
                push_cost.client_faults as f64 / gib,
                pull_cost.client_faults as f64 / gib
            ),
            None => String::new(),
        };
        println!(
            "  {label:<25} push {push:8.1}   pull {pull:8.1}   sshd CPU ms/GiB push {:6.0} pull {:6.0}{client_cpu}",
            per_gib(push_cost.server),
            per_gib(pull_cost.server)
        );
    }
    println!("  TCP segments retransmitted per GiB (loopback loses none):");
    for (i, (label, _)) in contenders.iter().enumerate() {
        println!(
            "    {label:<25} push {:6.0}   pull {:6.0}",
            costs[i][0].retransmits as f64 / gib,
            costs[i][1].retransmits as f64 / gib
        );
    }
    // The floor sshd sets: a forward's data crosses one sshd session process, which runs on
    // one core. Each contender's best round as a share of the rate sshd's own CPU per byte
    // allows it. Over loopback the kernel does some of one side's TCP work in the other's
    // time (a receiver's ACK sends the sender's queued data), so how much of it sshd is
    // charged depends on the client, and a share above 1 is possible.
    println!("  share of the sshd-bound ceiling (1 core / sshd CPU per byte):");
    for (i, (label, _)) in contenders.iter().enumerate() {
        let ceiling = |mbps: f64, ticks: u64| {
            let ms = per_gib(ticks);
            let bound = (1u64 << 30) as f64 / (ms / 1000.0) / 1e6;
            format!("{:.2} of {bound:.0} MB/s", mbps / bound)
        };
        println!(
            "    {label:<25} push {}   pull {}",
            ceiling(results[i][0], costs[i][0].server),
            ceiling(results[i][1], costs[i][1].server)
        );
    }
    // 0 and 3 are azssh (library in this process, and the `azssh tunnel` process); 1 and 2 are
    // OpenSSH's `ssh -L` with its default cipher and with azssh's. Issue 17's goal compares
    // like with like: the `azssh tunnel` process against the `ssh -L` process with the same
    // cipher. The library shares this process with the sink and the source; the default
    // cipher is another cipher: both are for reference.
    let both_ways = push && pull;
    for (az, az_label) in [(0, "azssh (library)"), (3, "azssh tunnel (process)")] {
        for (ssh, ssh_label) in [(2, "ssh -L -c aes256-gcm"), (1, "ssh -L (default)")] {
            let (push, pull) = (
                results[az][0] / results[ssh][0],
                results[az][1] / results[ssh][1],
            );
            let verdict = if (az, ssh) != (3, 2) {
                "reference"
            } else if !both_ways {
                "goal 1.1x both ways: one direction measured"
            } else if push >= 1.1 && pull >= 1.1 {
                "goal 1.1x both ways: met"
            } else {
                "goal 1.1x both ways: not met"
            };
            // A direction left out (`AZSSH_BENCH_DIRECTION`) has no ratio, not a NaN.
            let ratio = |r: f64| {
                if r.is_nan() {
                    "-".to_string()
                } else {
                    format!("{r:.2}x")
                }
            };
            println!(
                "  {az_label} / {ssh_label}: push {} pull {}   {verdict}",
                ratio(push),
                ratio(pull)
            );
        }
    }

    const RUNS: usize = 10;
    let mut az = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let s = Session::connect(options(&sshd, &path))
            .await
            .expect("connect");
        let r = s.exec("true", ExecOptions::default()).await.expect("exec");
        assert!(r.success());
        az.push(start.elapsed());
        let _ = s.close().await;
    }
    let mut ossh = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let status = Command::new("ssh")
            .args(ssh_args(&sshd, &path))
            .arg(format!("{}@127.0.0.1", sshd.user))
            .arg("true")
            .stdin(Stdio::null())
            .status()
            .expect("ssh");
        assert!(status.success());
        ossh.push(start.elapsed());
    }
    let (a, o) = (median_ms(az), median_ms(ossh));
    println!(
        "connect + auth + exec `true`, median of {RUNS}: azssh {a:.1} ms, `ssh host true` {o:.1} ms ({:.2}x)",
        o / a
    );
}
