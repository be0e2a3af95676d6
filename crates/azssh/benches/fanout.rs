//! Fan-out of one command over SSH: azssh against parallel-ssh (Debian `pssh`) running
//! `hostname` on up to 500 emulated Windows VMs at the same concurrency (issue 8; goal: azssh
//! at least 2× faster).
//!
//! Setup is not timed: the Windows emulator (throttling off, speed 1000), each VM set up with
//! azssh's own ARM client (one RunCommand installing sshd and our key and reading the host
//! keys, then `open_port` from `127.0.0.1/32`), a `known_hosts` pinning the returned host keys
//! and a pssh hosts file. Timed: (a) azssh's library fan-out, `Session::connect` + `exec` under
//! a tokio semaphore, and (b) `parallel-ssh -p N` with OpenSSH and strict host key checking.
//! Both must succeed on every host with the right hostname.
//!
//! Run: `cargo bench --profile dev --bench fanout` (optionally `-- 200` for another host count,
//! `AZSSH_BENCH_CONCURRENCY` for the concurrency, default 32).
// A benchmark's report is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
        opts.ssh_config = Some(PathBuf::from("/dev/null"));
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

/// (b) parallel-ssh with `-i`: each host prints `[n] time [SUCCESS] user@ip:port` then its
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

    let t = Instant::now();
    let (azssh_ok, azssh_err) = run_azssh(&hosts, port, &key_path, &known_path, concurrency).await;
    let azssh_wall = t.elapsed();
    report("azssh (library fan-out)", azssh_ok, hosts.len(), azssh_wall);
    if let Some(e) = azssh_err {
        println!("    first failure: {e}");
    }

    let Some(pssh) = pssh_binary() else {
        println!("  parallel-ssh: SKIPPED (neither `parallel-ssh` nor `pssh` found)");
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
    let pssh_wall = t.elapsed();
    let pssh_ok = count_pssh_ok(&String::from_utf8_lossy(&out.stdout), &names);
    report(
        &format!("{pssh} -p {concurrency}"),
        pssh_ok,
        hosts.len(),
        pssh_wall,
    );
    if pssh_ok < hosts.len() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some(line) = stderr.lines().next() {
            println!("    first stderr line: {line}");
        }
    }
    println!(
        "  ratio (pssh / azssh)  {:.2}x (goal >= 2)",
        pssh_wall.as_secs_f64() / azssh_wall.as_secs_f64()
    );
    if azssh_ok < hosts.len() || pssh_ok < hosts.len() {
        println!("  NOT every host succeeded: the ratio is not comparable");
        std::process::exit(1);
    }
}

fn report(what: &str, ok: usize, total: usize, wall: Duration) {
    println!(
        "  {what:<24} {ok}/{total} ok, wall {:.2} s, {:.0} hosts/s",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64()
    );
}
