//! Fan-out of one command over SSH: azssh against parallel-ssh (Debian `pssh`) running
//! `hostname` on up to 500 emulated Windows VMs at the same concurrency (issue 17: azssh at
//! least 5× faster, through the library and through `azssh fleet` with a script).
//!
//! Setup is not timed: the Windows emulator (throttling off, speed 1000), each VM set up with
//! azssh's own ARM client (one RunCommand installing sshd and our key and reading the host
//! keys, then `open_port` from `127.0.0.1/32`), a `known_hosts` pinning the returned host keys
//! and a pssh hosts file. Timed, with strict host key checking against that file:
//! (a) azssh's library fan-out, `Session::connect` + `exec` under a tokio semaphore;
//! (b) the product path: the real `azssh fleet` binary running a Rhai script
//!     (`ssh(vm, ...).exec("hostname")`) over the same VMs by `--targets`, `--concurrency N`
//!     and `-o json`: process start, inventory (Resource Graph), the scheduler, the script
//!     threads and the progress lines included; timed twice per round, without a journal (as
//!     parallel-ssh keeps none) and with `--journal` (its fsyncs included);
//! (c) `parallel-ssh -p N` with OpenSSH.
//! Each must succeed on every host with that host's own name (the fleet's JSON rows and its
//! journal are both checked).
//!
//! Run: `cargo bench --bench fanout` (optionally `-- 200` for another host count,
//! `AZSSH_BENCH_CONCURRENCY` for the concurrency, default 32; `AZSSH_BENCH_WRAP` to run the
//! fleet under a profiler, e.g. `perf record -g -o fleet.data --`; `AZSSH_BENCH_BIN` to time
//! another build's `azssh` binary, for before/after figures; `AZSSH_BENCH_BEFORE` to time
//! another build beside this one in the same run, alternating, over `AZSSH_BENCH_ROUNDS`
//! rounds (default 1), best of each kept: on a shared machine only figures taken together
//! compare). Needs `parallel-ssh`
//! (`apt-get install pssh`); without it only (a) and (b) are timed.
// A benchmark's report is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azssh::azure::run_command::{RunCommandOptions, run_powershell};
use azssh::azure::vm::{Vm, get_vm, start_vm};
use azssh::azure::{ArmClient, ArmConfig};
use azssh::emulator::windows_guests::WindowsEmulator;
use azssh::emulator::{EmulatorConfig, PowerState, WindowsRelease};
use azssh::ssh::keys::{KeyKind, SshPublicKey, generate_key};
use azssh::ssh::{
    ConnectOptions, ExecOptions, HostKeyPolicy, KnownHosts, Session, StrictHostKeyChecking,
};
use azssh::windows::authorized_keys::KeyTarget;
use azssh::windows::combined::GuestScript;
use azssh::windows::result::ScriptResult;
use azssh::workflow::nsg::{OpenPort, open_port};
use futures::StreamExt;
use tokio::sync::Semaphore;

/// Emulated VMs: the seeded world leaves some stopped, some without a public IP, some on
/// Windows Server 2016 (whose OpenSSH comes from an MSI, not the capability); 760 gave 494
/// eligible (700 gave 488), so the bench prints the count it reached.
const WORLD_VMS: usize = 760;
const SETUP_CONCURRENCY: usize = 64;

/// One set-up host: where to reach it and the name `hostname` must print.
struct Host {
    /// The VM's resource id, for `azssh fleet --targets`.
    id: String,
    ip: String,
    user: String,
    computer_name: String,
}

fn fail(what: &str) -> ! {
    eprintln!("fanout bench: {what}");
    std::process::exit(1);
}

fn client(emu: &WindowsEmulator) -> ArmClient {
    let cfg = ArmConfig::with_static_token(
        emu.handle.endpoint(),
        emu.handle.subscription_id(),
        emu.handle.token().expose(),
    )
    .unwrap_or_else(|e| fail(&format!("arm config: {e}")));
    ArmClient::new(cfg).unwrap_or_else(|e| fail(&format!("arm client: {e}")))
}

/// Setup + key install + host keys in one RunCommand, then the NSG rule; returns the host and
/// its `known_hosts` lines.
async fn set_up(
    arm: &ArmClient,
    rg: &str,
    name: &str,
    start: bool,
    public: &SshPublicKey,
    port: u16,
) -> Result<(Host, Vec<String>), String> {
    let vm: Vm = if start {
        let id = get_vm(arm, rg, name).await.map_err(|e| e.to_string())?.id;
        start_vm(arm, &id).await.map_err(|e| e.to_string())?
    } else {
        get_vm(arm, rg, name).await.map_err(|e| e.to_string())?
    };
    let ip = vm.public_ip.clone().ok_or("no public ip")?;
    let script = GuestScript::new()
        .setup()
        .install_key(public.clone(), KeyTarget::Administrators)
        .read_host_keys()
        .build();
    let lines: Vec<String> = script.lines().map(str::to_string).collect();
    let out = run_powershell(arm, &vm.id, &lines, &RunCommandOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let result = ScriptResult::parse(&out.stdout, &out.stderr).map_err(|e| e.to_string())?;
    let keys = result.host_keys().map_err(|e| e.to_string())?;
    open_port(
        arm,
        &vm,
        &OpenPort {
            port: 22,
            sources: vec!["127.0.0.1/32".into()],
            // A standing rule on every VM, JIT policy or not, as before.
            permanent: true,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let known = keys
        .iter()
        .map(|k| format!("[{ip}]:{port} {}", k.to_line()))
        .collect();
    let host = Host {
        id: vm.id.clone(),
        ip,
        user: vm.admin_username.clone().ok_or("no admin user")?,
        computer_name: vm.computer_name.clone().ok_or("no computer name")?,
    };
    Ok((host, known))
}

/// (a) azssh: connect + exec per host, at most `concurrency` at once. Returns the hosts that
/// answered with their own name, and the first failure seen.
async fn run_azssh(
    hosts: &[Host],
    port: u16,
    key: &Path,
    known_hosts: &Path,
    ssh_config: &Path,
    concurrency: usize,
) -> (usize, Option<String>) {
    let gate = Arc::new(Semaphore::new(concurrency));
    let jobs = hosts.iter().map(|h| {
        let gate = gate.clone();
        let mut opts = ConnectOptions::new(h.ip.clone());
        opts.port = Some(port);
        opts.user = Some(h.user.clone());
        opts.identity_files = vec![key.to_path_buf()];
        opts.use_agent = false;
        // An empty file, as pssh's `-F /dev/null` (azssh reads only regular files).
        opts.ssh_config = Some(ssh_config.to_path_buf());
        opts.host_keys = HostKeyPolicy {
            mode: StrictHostKeyChecking::Yes,
            known_hosts: KnownHosts::single(known_hosts),
            ask: None,
        };
        let expected = h.computer_name.to_lowercase();
        tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let session = Session::connect(opts).await.map_err(|e| e.to_string())?;
            let r = session
                .exec("hostname", ExecOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            let _ = session.close().await;
            let got = String::from_utf8_lossy(&r.stdout).trim().to_lowercase();
            if r.success() && got == expected {
                Ok(())
            } else {
                Err(format!("exit {:?}, `{got}` for `{expected}`", r.exit_code))
            }
        })
    });
    let results: Vec<_> = futures::stream::iter(jobs)
        .buffer_unordered(hosts.len().max(1))
        .collect()
        .await;
    let mut ok = 0;
    let mut first_err = None;
    for r in results {
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    (ok, first_err)
}

/// The fleet's script: one session per VM, strict host key checking against the pinned file,
/// our key only (no agent), and the answer as the VM's result.
const FLEET_SCRIPT: &str = r#"
let s = ssh(vm, #{key: ARGS.key, known_hosts: ARGS.known_hosts, strict: "yes", agent: false});
let r = s.exec("hostname");
s.close();
let name = r.stdout;
name.trim();
#{exit_code: r.exit_code, hostname: name}
"#;

/// What one `azssh fleet` run showed: hosts whose JSON row and journal line both say `ok` with
/// their own name, the wall time, and the first problem seen.
struct FleetRun {
    ok: usize,
    wall: Duration,
    problem: Option<String>,
    summary: Vec<String>,
}

/// What every `azssh fleet` run of this bench shares.
struct FleetBench<'a> {
    hosts: &'a [Host],
    dir: &'a Path,
    emu: &'a WindowsEmulator,
    key: &'a Path,
    known_hosts: &'a Path,
    concurrency: usize,
}

/// (b) `azssh fleet` over `hosts` by resource id, `concurrency` at once, with `--journal` when
/// `journaled`. `HOME` is the bench's temp dir, so no `~/.ssh/config` or `known_hosts` of the
/// machine's user takes part.
async fn run_fleet(bench: &FleetBench<'_>, azssh: &std::ffi::OsStr, journaled: bool) -> FleetRun {
    let FleetBench {
        hosts,
        dir,
        emu,
        key,
        known_hosts,
        concurrency,
    } = *bench;
    let script = dir.join("hostname.rhai");
    let targets = dir.join("targets.txt");
    let journal = dir.join("fanout.jsonl");
    let ids: Vec<&str> = hosts.iter().map(|h| h.id.as_str()).collect();
    if let Err(e) = std::fs::write(&script, FLEET_SCRIPT)
        .and_then(|()| std::fs::write(&targets, ids.join("\n") + "\n"))
    {
        fail(&format!("cannot write the fleet script/targets: {e}"));
    }
    let _ = std::fs::remove_file(&journal);
    // `AZSSH_BENCH_WRAP="perf record -g -o /tmp/fleet.data --"` profiles the fleet process.
    let wrap: Vec<String> = std::env::var("AZSSH_BENCH_WRAP")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut cmd = match wrap.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(azssh);
            c
        }
        None => Command::new(azssh),
    };
    cmd.arg("fleet").arg(&script).arg("--targets").arg(&targets);
    if journaled {
        cmd.arg("--journal").arg(&journal);
    }
    cmd.args(["--concurrency", &concurrency.to_string(), "-o", "json"])
        .arg("--arg")
        .arg(format!("key={}", key.display()))
        .arg("--arg")
        .arg(format!("known_hosts={}", known_hosts.display()))
        .env("AZSSH_ARM_ENDPOINT", emu.handle.endpoint())
        .env("AZSSH_ACCESS_TOKEN", emu.handle.token().expose())
        .env("AZURE_SUBSCRIPTION_ID", emu.handle.subscription_id())
        .env("AZSSH_SSH_PORT", emu.guests.ssh_port().to_string())
        .env("HOME", dir)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("AZSSH_STRICT_HOST_KEYS");
    let t = Instant::now();
    let out = match tokio::task::spawn_blocking(move || cmd.output()).await {
        Ok(Ok(o)) => o,
        other => fail(&format!("azssh fleet did not run: {other:?}")),
    };
    let wall = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stderr
        .lines()
        .filter(|l| l.starts_with("fleet:"))
        .map(str::to_string)
        .collect();
    let names: HashMap<String, String> = hosts
        .iter()
        .map(|h| (h.id.to_lowercase(), h.computer_name.to_lowercase()))
        .collect();
    let rows: Vec<serde_json::Value> = match serde_json::from_slice(&out.stdout) {
        Ok(r) => r,
        Err(e) => {
            let first = stderr.lines().last().unwrap_or_default().to_string();
            return FleetRun {
                ok: 0,
                wall,
                problem: Some(format!(
                    "no JSON on stdout ({e}; exit {:?}; stderr: {first})",
                    out.status.code()
                )),
                summary,
            };
        }
    };
    let answered = |row: &serde_json::Value| -> Result<String, String> {
        let id = row["id"].as_str().unwrap_or_default().to_lowercase();
        let want = names
            .get(&id)
            .ok_or(format!("a row for an unknown VM `{id}`"))?;
        let got = row["result"]["hostname"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        if row["status"] == "ok" && row["result"]["exit_code"] == 0 && got == *want {
            Ok(id)
        } else {
            Err(format!(
                "{}: status {}, `{got}` for `{want}`, error {}",
                row["name"], row["status"], row["error"]
            ))
        }
    };
    let mut problem = None;
    let mut ok_rows = std::collections::HashSet::new();
    for row in &rows {
        match answered(row) {
            Ok(id) => {
                ok_rows.insert(id);
            }
            Err(e) => {
                problem.get_or_insert(e);
            }
        }
    }
    if !journaled {
        if !out.status.success() {
            problem.get_or_insert(format!("exit {:?}", out.status.code()));
        }
        return FleetRun {
            ok: ok_rows.len(),
            wall,
            problem,
            summary,
        };
    }
    // The journal must hold the same answers: its last line per VM is what `--resume` trusts.
    let mut last: HashMap<String, serde_json::Value> = HashMap::new();
    match std::fs::read_to_string(&journal) {
        Ok(text) => {
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    let id = v["id"].as_str().unwrap_or_default().to_lowercase();
                    last.insert(id, v);
                }
            }
        }
        Err(e) => {
            problem.get_or_insert(format!("no journal: {e}"));
        }
    }
    let ok = ok_rows
        .iter()
        .filter(|id| match last.get(*id).map(answered) {
            Some(Ok(_)) => true,
            Some(Err(e)) => {
                problem.get_or_insert(format!("journal: {e}"));
                false
            }
            None => {
                problem.get_or_insert(format!("journal: no line for `{id}`"));
                false
            }
        })
        .count();
    if !out.status.success() {
        problem.get_or_insert(format!("exit {:?}", out.status.code()));
    }
    FleetRun {
        ok,
        wall,
        problem,
        summary,
    }
}

/// (c) parallel-ssh with `-i`: each host prints `[n] time [SUCCESS] user@ip:port` then its
/// output. Counts successes whose output is that host's own name.
fn count_pssh_ok(stdout: &str, names: &HashMap<String, String>) -> usize {
    let lines: Vec<&str> = stdout.lines().collect();
    let mut ok = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(target) = line
            .split_once("[SUCCESS] ")
            .map(|(_, t)| t.trim().to_string())
        else {
            continue;
        };
        let got = lines
            .get(i + 1)
            .map(|l| l.trim().to_lowercase())
            .unwrap_or_default();
        if names.get(&target).is_some_and(|n| *n == got) {
            ok += 1;
        }
    }
    ok
}

fn pssh_binary() -> Option<&'static str> {
    ["parallel-ssh", "pssh"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[tokio::main]
async fn main() {
    let want: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let concurrency: usize = std::env::var("AZSSH_BENCH_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(32);
    let emu = WindowsEmulator::start(EmulatorConfig {
        vms: WORLD_VMS.max(want + want / 2),
        speed: 1000.0,
        throttling: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap_or_else(|e| fail(&format!("cannot start the emulator: {e}")));
    let arm = client(&emu);
    let port = emu.guests.ssh_port();
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("no temp dir: {e}")));
    let key_path = dir.path().join("id_ed25519");
    let key = generate_key(&key_path, KeyKind::Ed25519, "fanout-bench")
        .unwrap_or_else(|e| fail(&format!("key: {e}")));
    let public =
        SshPublicKey::parse(&key.public_line).unwrap_or_else(|e| fail(&format!("pub key: {e}")));

    // Running VMs first, then stopped ones (started) to reach `want`.
    let mut candidates: Vec<(String, String, bool)> = Vec::new();
    let eligible: Vec<_> = emu
        .handle
        .vms()
        .into_iter()
        .filter(|v| v.public_ip.is_some() && v.release != WindowsRelease::Ws2016)
        .collect();
    for running in [true, false] {
        for v in &eligible {
            if candidates.len() < want && (v.power_state == PowerState::Running) == running {
                candidates.push((v.resource_group.clone(), v.name.clone(), !running));
            }
        }
    }
    let started_count = candidates.iter().filter(|c| c.2).count();

    let setup_started = Instant::now();
    let setups: Vec<_> = futures::stream::iter(candidates.iter().map(|(rg, name, start)| {
        let (arm, public) = (&arm, &public);
        async move { set_up(arm, rg, name, *start, public, port).await }
    }))
    .buffer_unordered(SETUP_CONCURRENCY)
    .collect()
    .await;
    let mut hosts = Vec::new();
    let mut known = Vec::new();
    let mut setup_failures = 0;
    for s in setups {
        match s {
            Ok((h, lines)) => {
                hosts.push(h);
                known.extend(lines);
            }
            Err(e) => {
                setup_failures += 1;
                eprintln!("  setup failed: {e}");
            }
        }
    }
    let known_path = dir.path().join("known_hosts");
    let hosts_path = dir.path().join("hosts");
    let hosts_file: Vec<String> = hosts
        .iter()
        .map(|h| format!("{}@{}:{port}", h.user, h.ip))
        .collect();
    if let Err(e) = std::fs::write(&known_path, known.join("\n") + "\n")
        .and_then(|()| std::fs::write(&hosts_path, hosts_file.join("\n") + "\n"))
    {
        fail(&format!("cannot write known_hosts/hosts: {e}"));
    }
    println!(
        "fanout bench: {} hosts set up ({started_count} started first, {setup_failures} failed) in {:.1} s; \
         `hostname` at concurrency {concurrency}",
        hosts.len(),
        setup_started.elapsed().as_secs_f64()
    );
    if hosts.is_empty() {
        fail("no host was set up");
    }

    println!("  load average {}", load_average());

    let t = Instant::now();
    let ssh_config = dir.path().join("ssh_config");
    if let Err(e) = std::fs::write(&ssh_config, "") {
        fail(&format!("cannot write an empty ssh config: {e}"));
    }
    let (azssh_ok, azssh_err) = run_azssh(
        &hosts,
        port,
        &key_path,
        &known_path,
        &ssh_config,
        concurrency,
    )
    .await;
    let azssh_wall = t.elapsed();
    report("azssh (library fan-out)", azssh_ok, hosts.len(), azssh_wall);
    if let Some(e) = azssh_err {
        println!("    first failure: {e}");
    }

    // `AZSSH_BENCH_BIN`: another build of azssh (another branch's, for before/after figures);
    // `AZSSH_BENCH_BEFORE`: one more, timed in turn with it in this run.
    let azssh: std::ffi::OsString =
        std::env::var_os("AZSSH_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_azssh").into());
    let before = std::env::var_os("AZSSH_BENCH_BEFORE");
    let rounds: usize = std::env::var("AZSSH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    // Each round times (b) twice: with `--journal` (every VM's `running` line synced before its
    // script starts, so `--resume` never reruns a VM it cannot vouch for) and without, which is
    // what parallel-ssh does (it keeps no record). Best of each is kept.
    let bench = FleetBench {
        hosts: &hosts,
        dir: dir.path(),
        emu: &emu,
        key: &key_path,
        known_hosts: &known_path,
        concurrency,
    };
    let mut best: Option<FleetRun> = None;
    let mut best_plain: Option<FleetRun> = None;
    let mut best_before: Option<Duration> = None;
    let keep = |slot: &mut Option<FleetRun>, run: FleetRun| {
        if slot
            .as_ref()
            .is_none_or(|b| run.ok > b.ok || run.ok == b.ok && run.wall < b.wall)
        {
            *slot = Some(run);
        }
    };
    for round in 1..=rounds {
        if let Some(b) = &before {
            let run = run_fleet(&bench, b, true).await;
            report(
                &format!("fleet BEFORE, round {round}"),
                run.ok,
                hosts.len(),
                run.wall,
            );
            if run.ok == hosts.len() {
                best_before = Some(best_before.map_or(run.wall, |w| w.min(run.wall)));
            }
        }
        for journaled in [true, false] {
            let run = run_fleet(&bench, &azssh, journaled).await;
            if rounds > 1 {
                let what = if journaled { "--journal" } else { "no journal" };
                report(
                    &format!("fleet ({what}), round {round}"),
                    run.ok,
                    hosts.len(),
                    run.wall,
                );
            }
            keep(
                if journaled {
                    &mut best
                } else {
                    &mut best_plain
                },
                run,
            );
        }
    }
    let (Some(fleet), Some(plain)) = (best, best_plain) else {
        fail("no fleet run");
    };
    report(
        "azssh fleet (script, --journal)",
        fleet.ok,
        hosts.len(),
        fleet.wall,
    );
    for line in &fleet.summary {
        println!("    {line}");
    }
    if let Some(e) = &fleet.problem {
        println!("    first failure: {e}");
    }
    report("azssh fleet (script)", plain.ok, hosts.len(), plain.wall);
    if let Some(e) = &plain.problem {
        println!("    first failure: {e}");
    }
    if let Some(b) = best_before {
        println!(
            "  fleet before / after (best of {rounds})  {:.2} s / {:.2} s = {:.2}x",
            b.as_secs_f64(),
            fleet.wall.as_secs_f64(),
            b.as_secs_f64() / fleet.wall.as_secs_f64()
        );
    }

    let Some(pssh) = pssh_binary() else {
        println!(
            "  parallel-ssh: SKIPPED (neither `parallel-ssh` nor `pssh` found; apt-get install pssh)"
        );
        println!(
            "  azssh fleet / library  {:.2}x the library's wall",
            fleet.wall.as_secs_f64() / azssh_wall.as_secs_f64()
        );
        return;
    };
    let names: HashMap<String, String> = hosts
        .iter()
        .map(|h| {
            (
                format!("{}@{}:{port}", h.user, h.ip),
                h.computer_name.to_lowercase(),
            )
        })
        .collect();
    let extra = format!(
        "-F /dev/null -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
        key_path.display(),
        known_path.display()
    );
    // parallel-ssh gets as many rounds as the fleet, best kept, so neither side is favoured.
    let mut pssh_best: Option<(usize, Duration, String)> = None;
    for _ in 0..rounds {
        let mut cmd = Command::new(pssh);
        cmd.arg("-p")
            .arg(concurrency.to_string())
            .arg("-h")
            .arg(&hosts_path)
            .arg("-x")
            .arg(&extra)
            .args(["-t", "120", "-i", "hostname"]);
        let t = Instant::now();
        let out = match tokio::task::spawn_blocking(move || cmd.output()).await {
            Ok(Ok(o)) => o,
            other => fail(&format!("{pssh} did not run: {other:?}")),
        };
        let wall = t.elapsed();
        let ok = count_pssh_ok(&String::from_utf8_lossy(&out.stdout), &names);
        let first_err = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        if pssh_best
            .as_ref()
            .is_none_or(|(o, w, _)| ok > *o || ok == *o && wall < *w)
        {
            pssh_best = Some((ok, wall, first_err));
        }
    }
    let Some((pssh_ok, pssh_wall, first_err)) = pssh_best else {
        fail("no parallel-ssh run");
    };
    report(
        &format!("{pssh} -p {concurrency}"),
        pssh_ok,
        hosts.len(),
        pssh_wall,
    );
    if pssh_ok < hosts.len() && !first_err.is_empty() {
        println!("    first stderr line: {first_err}");
    }
    let ratio = |wall: Duration| pssh_wall.as_secs_f64() / wall.as_secs_f64();
    println!(
        "  ratio (pssh / azssh library)             {:.2}x (goal >= 5)",
        ratio(azssh_wall)
    );
    println!(
        "  ratio (pssh / azssh fleet)               {:.2}x (goal >= 5)",
        ratio(plain.wall)
    );
    println!(
        "  ratio (pssh / azssh fleet --journal)     {:.2}x",
        ratio(fleet.wall)
    );
    println!("  load average {}", load_average());
    if azssh_ok < hosts.len()
        || fleet.ok < hosts.len()
        || plain.ok < hosts.len()
        || pssh_ok < hosts.len()
    {
        println!("  NOT every host succeeded: the ratios are not comparable");
        std::process::exit(1);
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn report(what: &str, ok: usize, total: usize, wall: Duration) {
    println!(
        "  {what:<24} {ok}/{total} ok, wall {:.2} s, {:.0} hosts/s",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64()
    );
}
