//! REPL completion latency with 1000 cached VM names: p50/p99 per kind of completion, through the
//! same entry point the rustyline helper calls (`Shared::complete`). Goal: p99 under 5 ms.
//!
//! Run: `cargo bench --bench completion` (or `--profile dev` for a quick, pessimistic number).
// A benchmark's report is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use azssh::repl::catalog::Catalog;
use azssh::repl::session::Shared;
use azssh::script::bridge::{Bridge, Cancel};
use azssh::script::context::{ScriptContext, Settings};
use azssh::script::engine::{self, Limits};
use rhai::{Dynamic, Map};

const ITERATIONS: usize = 2_000;

fn vm(rg: &str, name: &str) -> Dynamic {
    let mut m = Map::new();
    m.insert("resource_group".into(), rg.into());
    m.insert("name".into(), name.into());
    m.insert("power_state".into(), "running".into());
    m.insert("public_ip".into(), "20.0.0.1".into());
    m.into()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let bridge = Bridge::new(runtime.handle().clone(), Cancel::new(None));
    let ctx = Arc::new(ScriptContext::new(
        bridge,
        Settings::default(),
        Limits::default(),
    ));
    let engine = engine::build(&ctx);

    let mut shared = Shared {
        catalog: Catalog::from_engine(&engine, None),
        ..Shared::default()
    };
    // 1000 names: 900 spread over 9 groups, 100 in one group checked on its own.
    let fleet: rhai::Array = (0..1000)
        .map(|i| vm(&format!("rg-app-{:02}", i / 100), &format!("vm-{i:04}")))
        .collect();
    shared.names.observe(&fleet.clone().into());
    shared.scope.push("fleet", fleet);
    shared.scope.push("v", vm("rg-app-03", "vm-0300"));
    assert_eq!(shared.names.len(), 1000);

    let cases = [
        ("resource groups   vm(\"rg-", "let x = vm(\"rg-"),
        (
            "vm names          vm(\"rg\", \"vm-03",
            "let x = vm(\"rg-app-03\", \"vm-03",
        ),
        (
            "all vms of a group vm(\"rg\", \"",
            "let x = vm(\"rg-app-05\", \"",
        ),
        ("function names    parse_j", "let x = parse_j"),
        ("members           v.po", "v.po"),
        ("array methods     fleet. (1000 items)", "fleet."),
        ("all functions     p", "p"),
    ];
    println!("completion latency, {ITERATIONS} runs each, 1000 cached VM names");
    println!(
        "{:<36} {:>10} {:>10} {:>10}",
        "case", "p50", "p99", "results"
    );
    let mut worst = Duration::ZERO;
    for (label, line) in cases {
        let mut samples = Vec::with_capacity(ITERATIONS);
        let mut found = 0;
        for _ in 0..ITERATIONS {
            let started = Instant::now();
            let (_, candidates) = shared.complete(line, line.len());
            samples.push(started.elapsed());
            found = candidates.len();
        }
        samples.sort();
        let p99 = percentile(&samples, 0.99);
        worst = worst.max(p99);
        println!(
            "{label:<36} {:>10.3?} {:>10.3?} {found:>10}",
            percentile(&samples, 0.50),
            p99
        );
    }
    let verdict = if worst < Duration::from_millis(5) {
        "meets"
    } else {
        "MISSES"
    };
    println!("worst p99 {worst:.3?}: {verdict} the 5 ms goal");
}
