//! The Azure functions from a script run by the real binary, against the emulator: issue 3's
//! "done when" — look a VM up, read its getters, run PowerShell through RunCommand.

use crate::Test;
use crate::emulator_ssh::{emulator, pick_vm};
use crate::harness::stdout_of;

fn with_env(mut t: Test, env: &[(String, String)]) -> Test {
    for (k, v) in env {
        t = t.env(k, v);
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_reads_a_vm_and_runs_powershell_through_runcommand() {
    let emu = emulator(12).await;
    let (rg, name) = pick_vm(&emu);
    let script = format!(
        "let v = vm(\"{rg}\", \"{name}\");\nlet r = run_powershell(v, \"hostname\");\nlet host = r.stdout; host.trim();\n#{{state: v.power_state, ip: v.public_ip, os: v.os_type, host: host, code: r.exit_code, nsgs: v.nsg_ids.len()}}"
    );
    let t = with_env(Test::new().file("s.rhai", &script), &emu.env())
        .args(&["run", "s.rhai", "-o", "json"]);
    let out = tokio::task::spawn_blocking(move || t.run())
        .await
        .expect("join");
    let v: serde_json::Value = serde_json::from_str(&stdout_of(&out)).expect("json");
    assert_eq!(v["state"], "running");
    assert!(v["ip"].as_str().expect("ip").starts_with("127.77."));
    assert_eq!(v["os"], "Windows");
    assert_eq!(v["code"], 0);
    assert!(!v["host"].as_str().expect("host").is_empty());
    assert!(v["nsgs"].as_i64().expect("n") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_filters_by_tag_and_power_state() {
    let emu = emulator(12).await;
    let t = with_env(
        Test::new().file("s.rhai", "let all = vms();\nlet running = vms(#{power_state: \"running\"});\n#{all: all.len(), running: running.len(), ok: running.all(|v| v.power_state == \"running\")}"),
        &emu.env(),
    )
    .args(&["run", "s.rhai", "-o", "json"]);
    let out = tokio::task::spawn_blocking(move || t.run())
        .await
        .expect("join");
    let v: serde_json::Value = serde_json::from_str(&stdout_of(&out)).expect("json");
    assert_eq!(v["all"], 12);
    assert!(
        v["running"].as_i64().expect("n") < 12 && v["ok"] == true,
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_vm_is_catchable_with_a_hint() {
    let emu = emulator(3).await;
    let t = with_env(
        Test::new().file(
            "s.rhai",
            "try { vm(\"nope-rg\", \"nope\") } catch (e) { return [e.kind, e.hint != ()]; }",
        ),
        &emu.env(),
    )
    .args(&["run", "s.rhai", "-o", "jsonl"]);
    let out = tokio::task::spawn_blocking(move || t.run())
        .await
        .expect("join");
    let text = stdout_of(&out);
    assert!(text.starts_with("\"azure."), "{text}");
    assert!(text.contains("true"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_subscription_is_a_clear_error() {
    let t = Test::new()
        .file("s.rhai", "vm(\"rg\", \"x\")")
        .env("AZSSH_ARM_ENDPOINT", "http://127.0.0.1:9")
        .env("AZSSH_ACCESS_TOKEN", "t")
        .env("AZURE_SUBSCRIPTION_ID", "")
        .args(&["run", "s.rhai"])
        .status(1)
        .stderr_contains("no subscription is configured")
        .stderr_contains("hint:");
    tokio::task::spawn_blocking(move || t.run())
        .await
        .expect("join");
}
