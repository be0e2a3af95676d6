//! Fleet setup against ARM's throttling bound: the emulator with N VMs (default 1000), its
//! token buckets on (reads 250 + 25/s, writes 200 + 10/s, as ARM's per-subscription limits),
//! RunCommand taking ~3 s, and a setup-like script per VM (start it if stopped, one
//! RunCommand) run by the real `azssh fleet` binary.
//!
//! Prints the wall time; the lower bound the buckets and RunCommand impose, computed from the
//! reads and writes the run actually needed; their ratio (goal ≤ 1.15); the 429s received
//! (goal: no VM failed by throttling); and the binary's peak RSS (`ru_maxrss`, goal ≤ 150 MB).
//!
//! Run: `cargo bench --bench fleet` (optionally `-- 300` for another VM count,
//! `AZSSH_BENCH_CONCURRENCY` for the fleet's concurrency, default 64).
// A benchmark's report is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use azssh::emulator::{Emulator, EmulatorConfig};

/// What the emulator's buckets hold and refill (emulator/throttle.rs, after ARM's documented
/// per-subscription limits).
const READ_CAPACITY: f64 = 250.0;
const READ_REFILL: f64 = 25.0;
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

fn is_write(kind: &str) -> bool {
    ["runCommand", "start", "put", "initiate"]
        .iter()
        .any(|w| kind.ends_with(w))
}

/// Peak resident set of the largest waited-for child, in MB.
fn children_peak_rss_mb() -> f64 {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_CHILDREN is always valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    if rc != 0 {
        return f64::NAN;
    }
    usage.ru_maxrss as f64 / 1024.0
}

#[tokio::main]
async fn main() {
    let vms: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let concurrency = std::env::var("AZSSH_BENCH_CONCURRENCY").unwrap_or_else(|_| "64".into());
    let emu = match Emulator::start(EmulatorConfig {
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
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no temp dir: {e}");
            std::process::exit(1);
        }
    };
    let script = dir.path().join("setup.rhai");
    let journal = dir.path().join("journal.jsonl");
    if let Err(e) = std::fs::write(&script, SETUP) {
        eprintln!("cannot write the script: {e}");
        std::process::exit(1);
    }
    println!(
        "fleet bench: {vms} VMs, concurrency {concurrency}, RunCommand {RUN_COMMAND_SECS} s, throttling on"
    );
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_azssh"));
    cmd.arg("fleet")
        .arg(&script)
        .args([
            "--all",
            "--concurrency",
            &concurrency,
            "-o",
            "json",
            "--journal",
        ])
        .arg(&journal)
        .env("AZSSH_ARM_ENDPOINT", emu.endpoint())
        .env("AZSSH_ACCESS_TOKEN", emu.token().expose())
        .env("AZURE_SUBSCRIPTION_ID", emu.subscription_id())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = match tokio::task::spawn_blocking(move || cmd.output()).await {
        Ok(Ok(o)) => o,
        other => {
            eprintln!("azssh did not run: {other:?}");
            std::process::exit(1);
        }
    };
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: Vec<&str> = stderr.lines().filter(|l| l.starts_with("fleet:")).collect();

    let stats = emu.stats();
    let (mut reads, mut writes) = (0u64, 0u64);
    for (kind, n) in &stats.requests {
        if is_write(kind) {
            writes += n;
        } else if !kind.ends_with("delete") {
            reads += n;
        }
    }
    // 429 answers took no token; count them out of the reads (most throttling hits reads), which
    // can only lower the bound and so raise the ratio.
    let needed_reads = reads.saturating_sub(stats.throttled) as f64;
    let needed_writes = writes as f64;
    let read_secs = ((needed_reads - READ_CAPACITY) / READ_REFILL).max(0.0);
    let write_secs = ((needed_writes - WRITE_CAPACITY) / WRITE_REFILL).max(0.0);
    let bound = Duration::from_secs_f64(read_secs.max(write_secs) + RUN_COMMAND_SECS);

    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let failed: Vec<&serde_json::Value> = rows.iter().filter(|r| r["status"] != "ok").collect();
    let throttled_failures = failed
        .iter()
        .filter(|r| r["error"]["kind"] == "azure.throttled")
        .count();

    for line in summary {
        println!("  {line}");
    }
    println!("  exit code            {:?}", output.status.code());
    println!("  wall time            {:.1} s", wall.as_secs_f64());
    println!(
        "  requests needed      {needed_reads} reads, {needed_writes} writes ({} RunCommands)",
        stats.run_commands.values().sum::<u64>()
    );
    println!(
        "  lower bound          {:.1} s (reads {read_secs:.1} s, writes {write_secs:.1} s, + RunCommand {RUN_COMMAND_SECS} s)",
        bound.as_secs_f64()
    );
    println!(
        "  ratio                {:.2} (goal <= 1.15)",
        wall.as_secs_f64() / bound.as_secs_f64()
    );
    println!("  429s received        {}", stats.throttled);
    println!(
        "  VMs failed           {} ({} by throttling; goal 0)",
        failed.len(),
        throttled_failures
    );
    println!(
        "  peak RSS (azssh)     {:.1} MB (goal <= 150)",
        children_peak_rss_mb()
    );
}
