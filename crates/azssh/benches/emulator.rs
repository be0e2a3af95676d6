//! Emulator start-up and memory: a 5000-VM world must start in under 2 s and stay under 300 MB
//! resident. Prints the start-up time, a few request latencies and the peak RSS (`VmHWM`).
//!
//! Run: `cargo bench --bench emulator` (optionally `-- 10000` for another VM count).
// A benchmark's report is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use azssh::emulator::{Emulator, EmulatorConfig};

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn timed_get(http: &reqwest::Client, url: &str, token: &str) -> (u16, f64) {
    let t = Instant::now();
    let status = match http.get(url).bearer_auth(token).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            s
        }
        Err(_) => 0,
    };
    (status, t.elapsed().as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let vms: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let before = status_kb("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let emu = match Emulator::start(EmulatorConfig {
        vms,
        throttling: false,
        ..Default::default()
    })
    .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("emulator failed to start: {e}");
            std::process::exit(1);
        }
    };
    let startup = t.elapsed();
    let after_start = status_kb("VmRSS:").unwrap_or(0);

    let http = reqwest::Client::new();
    let token = emu.token().expose().clone();
    let sub = emu.subscription_id().to_string();
    let base = emu.endpoint().to_string();
    let first = emu.vms().into_iter().next();
    let mut lines = Vec::new();
    if let Some(vm) = first {
        let url = format!(
            "{base}/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}?api-version=2025-04-01&$expand=instanceView",
            vm.resource_group, vm.name
        );
        let (s, ms) = timed_get(&http, &url, &token).await;
        lines.push(format!("vm get (instanceView): {s} in {ms:.1} ms"));
    }
    let url = format!(
        "{base}/subscriptions/{sub}/providers/Microsoft.Compute/virtualMachines?api-version=2025-04-01"
    );
    let (s, ms) = timed_get(&http, &url, &token).await;
    lines.push(format!("vm list (first page): {s} in {ms:.1} ms"));
    let t = Instant::now();
    let graph = http
        .post(format!("{base}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"subscriptions": [sub], "query": "Resources | where type =~ 'microsoft.compute/virtualmachines' and tags.env == 'prod' | project id, name", "options": {"$top": 1000}}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    lines.push(format!(
        "graph query over all VMs: {graph} in {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    ));

    let peak = status_kb("VmHWM:").unwrap_or(0);
    println!("emulator with {vms} VMs");
    println!(
        "start-up: {:.1} ms (target < 2000 ms)",
        startup.as_secs_f64() * 1000.0
    );
    println!(
        "RSS before start: {:.1} MB, after start: {:.1} MB",
        before as f64 / 1024.0,
        after_start as f64 / 1024.0
    );
    println!(
        "peak RSS (VmHWM) after requests: {:.1} MB (target < 300 MB)",
        peak as f64 / 1024.0
    );
    for l in lines {
        println!("{l}");
    }
    emu.shutdown();
}
