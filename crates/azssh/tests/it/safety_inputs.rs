//! Issue 11, items 7, 10, 11, 13 and 14 (BOM): names and ids that would walk to another ARM path
//! are refused before any request, secrets never reach output, lost output fails the run,
//! writable scripts warn, and a script saved with a BOM runs.

use std::process::Stdio;

use azssh::azure::Provider;
use azssh_emulator::testing::Emu;
use serde_json::Value;

use crate::Test;
use crate::azure::fake::{ArmFake, Canned};
use crate::emulator_ssh::{emulator, pick_vm};
use crate::harness::{stderr_of, stdout_of};

fn on_emulator(mut t: Test, emu: &Emu) -> Test {
    for (k, v) in emu.env() {
        t = t.env(&k, &v);
    }
    t
}

async fn run_blocking(t: Test) -> std::process::Output {
    tokio::task::spawn_blocking(move || t.run())
        .await
        .expect("join")
}

/// Every ARM request the emulator answered, by kind.
fn requests(emu: &Emu) -> u64 {
    emu.handle.stats().requests.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backslash_dotdot_vm_name_is_refused_before_any_request() {
    let emu = emulator(3).await;
    let (rg, _) = pick_vm(&emu);
    let before = requests(&emu);
    // `Url::join` reads `\` as `/` and resolves `..`: the old code GET the resource group.
    let t = on_emulator(Test::new(), &emu)
        .args(&["enable-ssh", "-g", &rg, "-n", "x\\..\\..", "-o", "json"])
        .status(1)
        .stderr_contains("is not a valid VM name");
    run_blocking(t).await;
    let t = on_emulator(
        Test::new().file("s.rhai", &format!("vm(\"{rg}\", \"x\\\\..\\\\..\")")),
        &emu,
    )
    .args(&["run", "s.rhai"])
    .status(1)
    .stderr_contains("is not a valid VM name");
    run_blocking(t).await;
    assert_eq!(requests(&emu), before, "{:?}", emu.handle.stats().requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_resource_id_is_refused_before_any_request() {
    let emu = emulator(3).await;
    let (rg, name) = pick_vm(&emu);
    let sub = emu.handle.subscription_id().to_string();
    let before = requests(&emu);
    // A well-typed id naming VM `other\..\{name}`, which the old code read as VM `name` (the
    // URL parser turns `\` into `/` and walks `..`), while a fleet journal recorded the first.
    let id = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/other\\\\..\\\\{name}"
    );
    let t = on_emulator(Test::new().file("s.rhai", &format!("vm(\"{id}\")")), &emu)
        .args(&["run", "s.rhai"])
        .status(1)
        .stderr_contains("malformed resource id")
        .stderr_contains("contains `\\`");
    run_blocking(t).await;
    assert_eq!(requests(&emu), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_name_dotdot_is_refused() {
    let emu = emulator(3).await;
    let (rg, name) = pick_vm(&emu);
    // The old code PUT the rule body to the NSG itself (`securityRules/..`).
    let t = on_emulator(Test::new(), &emu)
        .args(&[
            "open-port",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            "203.0.113.7/32",
            "--rule-name",
            "..",
            "-o",
            "json",
        ])
        .status(1)
        .stderr_contains("is not a valid security rule name");
    run_blocking(t).await;
    let puts: Vec<String> = emu
        .handle
        .stats()
        .requests
        .keys()
        .filter(|k| k.contains("put"))
        .cloned()
        .collect();
    assert!(puts.is_empty(), "nothing written: {puts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_arg_name_still_works() {
    let emu = emulator(3).await;
    let (rg, _) = pick_vm(&emu);
    // `--arg name=1234` is parsed as JSON (a number); it is still a VM name to look up: the
    // emulator answers 404 for VM `1234`, rather than the script failing on `vm(string, int)`.
    let t = on_emulator(
        Test::new().file(
            "s.rhai",
            "let r = \"found\";\ntry { vm(ARGS.rg, ARGS.name); } catch (e) { r = e.kind + \" \" + e.message; }\nr",
        ),
        &emu,
    )
    .args(&["run", "s.rhai", "--arg", &format!("rg={rg}"), "--arg", "name=1234", "-o", "json"]);
    let out = run_blocking(t).await;
    let v: Value = serde_json::from_str(&stdout_of(&out)).expect("json");
    let text = v.as_str().unwrap_or_default();
    assert!(text.starts_with("azure.not_found"), "{text}");
    assert!(text.contains("1234"), "{text}");
}

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOi.safety-inputs-token.Zm9vYmFy";

#[test]
fn token_never_reaches_output_under_any_key() {
    let script = r#"
let t = env("AZSSH_ACCESS_TOKEN");
print(`printed ${t}`);
info(`logged ${t}`);
#{hidden_under: t, nested: [#{innocent: "Bearer " + t}], again: t.to_upper().to_lower()}
"#;
    for format in ["json", "jsonl", "table"] {
        let out = Test::new()
            .file("s.rhai", script)
            .env("AZSSH_ACCESS_TOKEN", TOKEN)
            .args(&["run", "s.rhai", "-o", format, "-vv"])
            .run();
        let (stdout, stderr) = (stdout_of(&out), stderr_of(&out));
        assert!(
            !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
            "{stdout}\n{stderr}"
        );
        assert!(stdout.contains("printed <redacted>"), "{stdout}");
        // The table view summarises nested values (`[1 items]`); the JSON views show them whole.
        if format != "table" {
            assert!(stdout.contains("Bearer <redacted>"), "{stdout}");
        }
        assert!(stderr.contains("logged <redacted>"), "{stderr}");
    }
}

#[test]
fn thrown_token_is_redacted() {
    for script in [
        "throw env(\"AZSSH_ACCESS_TOKEN\")",
        "throw #{kind: \"x\", message: `bad ${env(\"AZSSH_ACCESS_TOKEN\")}`, hint: env(\"AZSSH_ACCESS_TOKEN\")}",
        "let t = env(\"AZSSH_ACCESS_TOKEN\"); t.no_such_method()",
    ] {
        let out = Test::new()
            .file("s.rhai", script)
            .env("AZSSH_ACCESS_TOKEN", TOKEN)
            .args(&["run", "s.rhai"])
            .status(1)
            .run();
        let stderr = stderr_of(&out);
        assert!(!stderr.contains(TOKEN), "{script}: {stderr}");
        assert!(!stdout_of(&out).contains(TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_client_refuses_cross_origin_redirect() {
    let arm = ArmFake::start();
    let elsewhere = ArmFake::start();
    let path = arm.sub_path("/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1");
    let target = format!(
        "{}/steal",
        elsewhere.client().endpoint().as_str().trim_end_matches('/')
    );
    arm.on(
        "GET",
        &path,
        vec![Canned::empty(302).header("Location", &target)],
    );
    let err = arm
        .client()
        .get_json::<Value>(&path, Provider::Compute, &[])
        .await
        .expect_err("a redirect to another origin is refused");
    assert_eq!(
        azssh::error::UserError::kind(&err),
        "azure.foreign_host",
        "{err}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "the other origin got a request"
    );
    assert_eq!(arm.requests().len(), 1, "refused without retrying");
}

#[test]
fn token_sent_over_plain_http_only_to_loopback() {
    Test::new()
        .file("s.rhai", "vms()")
        .env("AZSSH_ACCESS_TOKEN", TOKEN)
        .env("AZSSH_ARM_ENDPOINT", "http://management.example.invalid")
        .env(
            "AZURE_SUBSCRIPTION_ID",
            "00000000-0000-0000-0000-000000000000",
        )
        .args(&["run", "s.rhai"])
        .status(1)
        .stderr_contains("refusing to send the access token over plain http")
        .run();
}

#[test]
fn stdout_full_exits_1() {
    let t = Test::new()
        .args(&["run", "s.rhai", "-o", "json"])
        .file("s.rhai", "1");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = t.command().stdout(full).output().expect("run");
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write output: no space left on device"),
        "{stderr}"
    );
}

#[test]
fn closed_stdout_pipe_ends_quietly() {
    let t = Test::new()
        .args(&["run", "s.rhai", "-o", "jsonl"])
        .file("s.rhai", "for i in 0..20000 { print(`line ${i}`); } 1");
    let mut child = t
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("cannot write output"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn world_writable_script_warns() {
    use std::os::unix::fs::PermissionsExt;
    let t = Test::new()
        .file("s.rhai", "40 + 2")
        .args(&["run", "s.rhai"]);
    let path = t.path("s.rhai");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    t.stdout("42\n")
        .stderr_contains("warning: `s.rhai` can be changed by anyone")
        .run();
    let quiet = Test::new()
        .file("s.rhai", "40 + 2")
        .args(&["run", "s.rhai"]);
    let path = quiet.path("s.rhai");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = quiet.stdout("42\n").run();
    assert!(!stderr_of(&out).contains("warning"), "{}", stderr_of(&out));
}

#[test]
fn script_with_bom_runs() {
    Test::new()
        .file("s.rhai", "\u{feff}import \"m\" as m;\nm::f() + 2")
        .file("m.rhai", "\u{feff}fn f() { 40 }")
        .args(&["run", "s.rhai"])
        .stdout("42\n")
        .run();
}
