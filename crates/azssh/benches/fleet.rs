//! Fleet setup against Azure's floor: the emulator with N VMs (default 1000), its token buckets
//! on (ARM reads 250 + 25/s, writes 200 + 10/s; the Compute RP's per-VM and per-subscription
//! policies; Resource Graph's 15 queries per 5 s), RunCommand taking 3 s, and a setup-like
//! script per VM (start it if stopped, one RunCommand) run by the real `azssh fleet` binary:
//! once as one process, then as 4 `--shard I/4` processes against one fresh emulator.
//!
//! The floor is what no client can beat: every write that must happen (one RunCommand per VM,
//! one start per VM that is not running) through ARM's write bucket, plus one RunCommand's
//! duration. Time is compressed: the emulator's `speed` (20/3) divides Azure's ~20 s
//! RunCommand down to 3 s, while ARM's buckets refill in real seconds, so the floor is computed
//! in the same compressed units: `max(0, writes − 200) / 10 + 3 s`. Reads are not in the floor:
//! a client that reads through Resource Graph and polls on schedule needs few.
//!
//! Prints wall, floor, their ratio (goal ≤ 1.2; shards ≤ 1.3 × the single-process floor), ARM
//! reads and writes per VM (goal ≤ 3 reads) with the most frequent kinds of read, Resource
//! Graph queries, 429s, VMs failed by throttling (goal 0) and the peak RSS of the largest azssh
//! process (goal ≤ 150 MB at 1000 VMs, ≤ 500 MB at 5000). The RSS is each azssh child's own
//! (`wait4`'s rusage of that pid): the emulator runs inside this bench process and is never
//! counted.
//!
//! Run: `cargo bench --bench fleet` (optionally `-- 5000` for another VM count, `-- 1000 4`
//! for VMs and shards, `-- 5000 1` to skip the shard run; `AZSSH_BENCH_CONCURRENCY` for the
//! fleet's concurrency, default 64; `AZSSH_BENCH_OPEN_PORT=1` to also open a port per VM with
//! `open_port`, as a setup runbook does; `AZSSH_BENCH_BIN` to run another azssh binary, e.g.
//! a build of the main branch for a before/after).
// A benchmark's report is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use azssh::emulator::{Emulator, EmulatorConfig, EmulatorHandle};

/// ARM's write bucket as the emulator holds it (emulator/throttle.rs, ARM.md §9).
const WRITE_CAPACITY: f64 = 200.0;
const WRITE_REFILL: f64 = 10.0;
/// Azure's RunCommand ≈ 20 s; the emulator divides by `speed`.
const AZURE_RUN_COMMAND_SECS: f64 = 20.0;
const RUN_COMMAND_SECS: f64 = 3.0;

const SETUP: &str = r#"
vm.ensure_running();
let r = run_powershell(vm, "Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0");
#{ exit_code: r.exit_code }
"#;

/// The setup script with an `open_port` per VM (`AZSSH_BENCH_OPEN_PORT=1`): WinRM over HTTPS
/// from a private range, so NSG rule writes and the JIT check are in the run.
const SETUP_WITH_OPEN_PORT: &str = r#"
vm.ensure_running();
open_port(vm, #{source: "10.20.0.0/16", port: 5986});
let r = run_powershell(vm, "Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0");
#{ exit_code: r.exit_code }
"#;

fn is_write(kind: &str) -> bool {
    ["runCommand", "start", "put", "initiate"]
        .iter()
        .any(|w| kind.ends_with(w))
}

/// Not ARM reads: Resource Graph (its own quota), refusals and injected faults.
fn not_a_read(kind: &str) -> bool {
    kind.starts_with("graph.")
        || kind.ends_with("delete")
        || kind == "rejected"
        || kind.starts_with("throttled")
        || kind.starts_with("fault.")
}

/// One azssh process as it ended: its exit code, output, own peak RSS and wall time.
#[derive(Debug)]
struct Finished {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    peak_rss_mb: f64,
    wall_secs: f64,
}

/// Runs `cmd` to its end and reads its own peak resident set from `wait4` (the child's
/// rusage, not `RUSAGE_CHILDREN`'s running maximum over every child this bench waited for).
fn run_measured(mut cmd: Command) -> std::io::Result<Finished> {
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut status: libc::c_int = 0;
    // SAFETY: wait4 fills the status and rusage we pass for our own child `pid`; the `Child`
    // is not waited on again (dropping it neither waits nor kills).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc != pid {
        return Err(std::io::Error::last_os_error());
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok(Finished {
        code,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        // Linux reports ru_maxrss in KiB.
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        wall_secs: started.elapsed().as_secs_f64(),
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn emulator(vms: usize) -> EmulatorHandle {
    match Emulator::start(EmulatorConfig {
        vms,
        throttling: true,
        speed: AZURE_RUN_COMMAND_SECS / RUN_COMMAND_SECS,
        ..Default::default()
    })
    .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start the emulator: {e}");
            std::process::exit(1);
        }
    }
}

/// One `azssh fleet` process (a shard when `shard` is set).
fn fleet_command(
    emu: &EmulatorHandle,
    dir: &std::path::Path,
    concurrency: &str,
    shard: Option<(usize, usize)>,
) -> Command {
    let script = dir.join("setup.rhai");
    // Another build of azssh (e.g. the main branch's, for a before/after) when asked.
    let bin = std::env::var_os("AZSSH_BENCH_BIN")
        .filter(|b| !b.is_empty())
        .map_or_else(
            || env!("CARGO_BIN_EXE_azssh").into(),
            std::path::PathBuf::from,
        );
    let mut cmd = Command::new(bin);
    cmd.arg("fleet")
        .arg(&script)
        .args(["--all", "--concurrency", concurrency, "-o", "json"])
        .env("AZSSH_ARM_ENDPOINT", emu.endpoint())
        .env("AZSSH_ACCESS_TOKEN", emu.token().expose())
        .env("AZURE_SUBSCRIPTION_ID", emu.subscription_id())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((i, n)) = shard {
        cmd.args(["--shard", &format!("{i}/{n}")]);
    }
    cmd
}

/// Runs `shards` processes (1 = no sharding) against a fresh emulator and prints the figures.
async fn run(vms: usize, shards: usize, concurrency: &str, open_port: bool) {
    let emu = emulator(vms).await;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no temp dir: {e}");
            std::process::exit(1);
        }
    };
    let script = if open_port {
        SETUP_WITH_OPEN_PORT
    } else {
        SETUP
    };
    if let Err(e) = std::fs::write(dir.path().join("setup.rhai"), script) {
        eprintln!("cannot write the script: {e}");
        std::process::exit(1);
    }
    let stopped = emu
        .vms()
        .iter()
        .filter(|v| v.power_state.code() != "PowerState/running")
        .count();
    let needed_writes = (vms + stopped) as f64;
    let floor = ((needed_writes - WRITE_CAPACITY) / WRITE_REFILL).max(0.0) + RUN_COMMAND_SECS;
    println!(
        "fleet bench: {vms} VMs ({stopped} not running), {} process(es), concurrency {concurrency}, RunCommand {RUN_COMMAND_SECS} s (speed {:.2}), throttling on{}, load {}",
        shards,
        AZURE_RUN_COMMAND_SECS / RUN_COMMAND_SECS,
        if open_port { ", open_port per VM" } else { "" },
        load_average()
    );
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..shards {
        let cmd = fleet_command(
            &emu,
            dir.path(),
            concurrency,
            (shards > 1).then_some((i, shards)),
        );
        handles.push(tokio::task::spawn_blocking(move || run_measured(cmd)));
    }
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut codes = Vec::new();
    let mut peak_rss_mb = 0.0_f64;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(Ok(o)) => {
                codes.push(o.code);
                let stderr = String::from_utf8_lossy(&o.stderr);
                for line in stderr.lines().filter(|l| l.starts_with("fleet:")) {
                    println!("  {line}");
                }
                let part: Vec<serde_json::Value> =
                    serde_json::from_slice(&o.stdout).unwrap_or_default();
                println!(
                    "  process {i}: {} VMs, {:.1} s, peak RSS {:.1} MB",
                    part.len(),
                    o.wall_secs,
                    o.peak_rss_mb
                );
                peak_rss_mb = peak_rss_mb.max(o.peak_rss_mb);
                rows.extend(part);
            }
            other => {
                eprintln!("azssh did not run: {other:?}");
                std::process::exit(1);
            }
        }
    }
    let wall = started.elapsed();
    let stats = emu.stats();
    let (mut reads, mut writes, mut graph) = (0u64, 0u64, 0u64);
    let mut read_kinds: Vec<(String, u64)> = Vec::new();
    for (kind, n) in &stats.requests {
        if kind.starts_with("graph.") {
            graph += n;
        } else if is_write(kind) {
            writes += n;
        } else if !not_a_read(kind) {
            reads += n;
            read_kinds.push((kind.to_string(), *n));
        }
    }
    read_kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let failed: Vec<&serde_json::Value> = rows.iter().filter(|r| r["status"] != "ok").collect();
    let throttled_failures = failed
        .iter()
        .filter(|r| r["error"]["kind"] == "azure.throttled")
        .count();
    let per_vm = |n: u64| n as f64 / vms.max(1) as f64;
    println!("  exit codes           {codes:?}");
    println!("  VMs reported         {} of {vms}", rows.len());
    println!("  wall time            {:.1} s", wall.as_secs_f64());
    println!(
        "  floor                {floor:.1} s ({needed_writes} writes needed: max(0, w - {WRITE_CAPACITY}) / {WRITE_REFILL}/s + RunCommand {RUN_COMMAND_SECS} s)"
    );
    println!(
        "  ratio                {:.2} (goal <= {})",
        wall.as_secs_f64() / floor,
        if shards > 1 { "1.3" } else { "1.2" }
    );
    println!(
        "  ARM reads            {reads} ({:.2}/VM, goal <= 3)",
        per_vm(reads)
    );
    let top: Vec<String> = read_kinds
        .iter()
        .take(6)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("  reads by kind        {}", top.join(", "));
    println!(
        "  ARM writes           {writes} ({:.2}/VM; {} RunCommands)",
        per_vm(writes),
        stats.run_commands.values().sum::<u64>()
    );
    println!("  Resource Graph       {graph} queries");
    println!("  429s received        {}", stats.throttled);
    println!(
        "  VMs failed           {} ({} by throttling; goal 0)",
        failed.len(),
        throttled_failures
    );
    println!(
        "  peak RSS (azssh)     {peak_rss_mb:.1} MB (largest azssh process, emulator not counted; goal <= {} MB)",
        if vms > 1000 { 500 } else { 150 }
    );
}

#[tokio::main]
async fn main() {
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let vms = nums.first().copied().unwrap_or(1000);
    let shards = nums.get(1).copied().unwrap_or(4);
    let concurrency = std::env::var("AZSSH_BENCH_CONCURRENCY").unwrap_or_else(|_| "64".into());
    let open_port = std::env::var("AZSSH_BENCH_OPEN_PORT").is_ok_and(|v| v == "1");
    run(vms, 1, &concurrency, open_port).await;
    if shards > 1 {
        run(vms, shards, &concurrency, open_port).await;
    }
}
