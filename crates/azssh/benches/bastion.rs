//! The Azure Bastion path against the direct path to the same private emulated VM: SSH connect
//! latency (TCP or token + TLS WebSocket, then key exchange and authentication) and SFTP
//! throughput both ways (64 MiB each way). Run by hand: `cargo bench --bench bastion`
//! (`AZSSH_BENCH_MIB=16` to move less data). Prints one table and the bastion/direct ratios.
// A benchmark's report is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use azssh::azure::run_command::{RunCommandOptions, run_powershell};
use azssh::azure::vm::get_vm;
use azssh::azure::{ArmClient, ArmConfig};
use azssh::ssh::keys::{KeyKind, SshPublicKey, generate_key};
use azssh::ssh::{ConnectOptions, HostKeyPolicy, KnownHosts, Session, StrictHostKeyChecking};
use azssh::windows::authorized_keys::KeyTarget;
use azssh::windows::combined::GuestScript;
use azssh::windows::result::ScriptResult;
use azssh::workflow::nsg::{OpenPort, open_port};
use azssh::workflow::route::{Chosen, RouteRequest, Via, choose_route};
use azssh_emulator::testing::Emu;

const CONNECTS: usize = 10;

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return;
        }
    };
    rt.block_on(run());
}

struct Path2 {
    name: &'static str,
    chosen: Chosen,
    port: u16,
}

async fn run() {
    let mib: usize = std::env::var("AZSSH_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let emu = Emu::builder().vms(4).bastions(true).start().await;
    // The bastion client reads its CA from the environment, as the product does.
    for (k, v) in emu.env() {
        // SAFETY: set before any other thread of ours reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let arm = ArmClient::new(
        ArmConfig::with_static_token(
            emu.handle.endpoint(),
            emu.handle.subscription_id(),
            emu.handle.token().expose(),
        )
        .expect("config"),
    )
    .expect("client");
    let summary = emu.private_vm();
    let vm = get_vm(&arm, &summary.resource_group, &summary.name)
        .await
        .expect("vm");
    let dir = tempfile::tempdir().expect("tmp");
    let key_path = dir.path().join("id_ed25519");
    let key = generate_key(&key_path, KeyKind::Ed25519, "bench").expect("key");
    let public = SshPublicKey::parse(&key.public_line).expect("pub");
    let script = GuestScript::new()
        .setup()
        .install_key(public, KeyTarget::Administrators)
        .read_host_keys()
        .build();
    let lines: Vec<String> = script.lines().map(str::to_string).collect();
    let out = run_powershell(&arm, &vm.id, &lines, &RunCommandOptions::default())
        .await
        .expect("runcommand");
    let result = ScriptResult::parse(&out.stdout, &out.stderr).expect("result");
    let private = vm.private_ip.clone().expect("private ip");
    let guest_port = emu.guests().ssh_port();
    let mut pinned = String::new();
    for k in result.host_keys().expect("host keys") {
        pinned.push_str(&format!("{private} {}\n", k.to_line()));
        pinned.push_str(&format!("[{private}]:{guest_port} {}\n", k.to_line()));
    }
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, pinned).expect("pin");
    let prefix = emu
        .bastion_tagged("bastion-ok")
        .subnet_prefix
        .expect("prefix");
    let vnet = format!(
        "{}.0.0/16",
        private.rsplitn(3, '.').nth(2).unwrap_or("10.0")
    );
    open_port(
        &arm,
        &vm,
        &OpenPort {
            port: 22,
            sources: vec![prefix, vnet],
            permanent: true,
            ..Default::default()
        },
    )
    .await
    .expect("open port");

    // Direct: the private address as this machine reaches it (`AZSSH_PRIVATE_NET`), port of
    // the guests; bastion: the same VM's port 22 through the emulator's bastion.
    let direct = RouteRequest {
        via: Via::Direct,
        prefer_private_ip: true,
        port: guest_port,
        ..RouteRequest::default()
    };
    let bastion = RouteRequest {
        via: Via::Bastion,
        port: 22,
        ..RouteRequest::default()
    };
    let paths = [
        Path2 {
            name: "direct",
            chosen: choose_route(&arm, &vm, &direct).await.expect("direct"),
            port: guest_port,
        },
        Path2 {
            name: "bastion",
            chosen: choose_route(&arm, &vm, &bastion).await.expect("bastion"),
            port: 22,
        },
    ];
    let payload = dir.path().join("payload.bin");
    let data: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect();
    std::fs::write(&payload, &data).expect("payload");
    let admin = vm.admin_username.clone().expect("admin");

    println!("| path | connect p50 | upload {mib} MiB | download {mib} MiB |");
    println!("|---|---|---|---|");
    let mut results = Vec::new();
    for p in &paths {
        let opts = options(p, &key_path, &known_hosts, &admin);
        let mut times = Vec::new();
        for _ in 0..CONNECTS {
            let t = Instant::now();
            let s = Session::connect(opts.clone()).await.expect("connect");
            times.push(t.elapsed());
            let _ = s.close().await;
        }
        times.sort();
        let p50 = times[times.len() / 2];
        let s = Session::connect(opts.clone()).await.expect("connect");
        let remote = format!("C:/Users/{admin}/bench-{}.bin", p.name);
        let t = Instant::now();
        s.upload(&payload, &remote).await.expect("upload");
        let up = t.elapsed();
        let back = dir.path().join(format!("back-{}.bin", p.name));
        let t = Instant::now();
        s.download(&remote, &back).await.expect("download");
        let down = t.elapsed();
        assert_eq!(std::fs::read(&back).expect("back"), data, "byte-exact");
        let _ = s.close().await;
        println!(
            "| {} | {:.1} ms | {:.1} MB/s | {:.1} MB/s |",
            p.name,
            ms(p50),
            mbps(mib, up),
            mbps(mib, down)
        );
        results.push((p50, up, down));
    }
    let (d, b) = (results[0], results[1]);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nload average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "\nbastion / direct: connect latency {:.2}×, upload throughput {:.2}×, download throughput {:.2}×",
        ms(b.0) / ms(d.0),
        mbps(mib, b.1) / mbps(mib, d.1),
        mbps(mib, b.2) / mbps(mib, d.2)
    );
}

fn options(p: &Path2, key: &Path, known_hosts: &Path, admin: &str) -> ConnectOptions {
    let mut o = ConnectOptions::new(p.chosen.host.clone());
    o.route = p.chosen.route.clone();
    o.port = Some(p.port);
    o.user = Some(admin.to_string());
    o.identity_files = vec![PathBuf::from(key)];
    o.use_agent = false;
    o.host_keys = HostKeyPolicy {
        mode: StrictHostKeyChecking::Yes,
        known_hosts: KnownHosts::single(known_hosts),
        ask: None,
    };
    o
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mbps(mib: usize, d: Duration) -> f64 {
    (mib as f64 * 1.048_576) / d.as_secs_f64()
}
