//! Runbooks as an operator meets them: bundled runbooks under `fleet`, your own runbooks from
//! `AZSSH_RUNBOOK_PATH`, `azssh runbooks [NAME]`, `azssh run -e`/`-`, `azssh vms`, and the
//! script-side comforts (`generate_key`'s readable keys, `Vm` properties, `check: true`).

// Test helpers, not tests, so the clippy.toml test allowance does not reach them.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::Stdio;

use azssh::emulator::EmulatorConfig;
use azssh::emulator::windows_guests::WindowsEmulator;
use serde_json::Value;

use crate::harness::{Test, stdout_of};

struct Emu {
    // The Windows guest model: RunCommand and extensions behave as on Windows.
    emu: WindowsEmulator,
    // Serves the emulator while the binary runs; dropped last.
    _rt: tokio::runtime::Runtime,
}

impl Emu {
    fn start(vms: usize) -> Emu {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let emu = rt
            .block_on(WindowsEmulator::start(EmulatorConfig {
                vms,
                speed: 1000.0,
                ..EmulatorConfig::default()
            }))
            .unwrap();
        Emu { emu, _rt: rt }
    }

    fn test(&self) -> Test {
        let mut t = Test::new();
        for (k, v) in self.emu.env() {
            t = t.env(&k, &v);
        }
        t
    }
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout_of(out)).unwrap()
}

const HELLO: &str = "//! Greets someone.\n//! arg who: string — who to greet (default \"world\")\n//! arg times: int — how often (1)\nlet who = ARGS.who ?? \"world\";\n`hello ${who}`\n";

#[test]
fn bundled_runbooks_take_their_vm_from_fleet() {
    let emu = Emu::start(3);
    let key = Test::new();
    // check-prereqs changes nothing; enable-ssh and open-ssh-port change the VM and its NSG.
    for (runbook, extra) in [
        ("check-prereqs", vec![]),
        ("enable-ssh", vec!["--arg", "start=true"]),
        ("open-ssh-port", vec!["--arg", "source=203.0.113.7/32"]),
    ] {
        let mut t = emu
            .test()
            .args(&["-o", "json", "fleet", runbook, "--all"])
            .args(&extra);
        t = t.status(0);
        let out = t.run();
        let rows = json(&out);
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 3, "{runbook}: {rows:?}");
        for r in rows {
            assert_eq!(r["status"], "ok", "{runbook}: {r}");
        }
    }
    drop(key);
}

#[test]
fn every_bundled_vm_runbook_finds_its_vm_under_fleet() {
    let emu = Emu::start(2);
    let list = Test::new().args(&["-o", "json", "runbooks"]).run();
    let names: Vec<String> = json(&list)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    for name in names {
        let shown = Test::new().args(&["-o", "json", "runbooks", &name]).run();
        let takes_vm = json(&shown)["arguments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "resource_group");
        if !takes_vm {
            continue;
        }
        // Whatever else a runbook needs (a source, a shell), it must not stop at "which VM?".
        let out = emu
            .test()
            .args(&[
                "-o",
                "json",
                "fleet",
                &name,
                "--all",
                "--arg",
                "command=hostname",
            ])
            .command()
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("panicked at"), "{name}: {text}");
        assert!(
            !text.contains("needs the VM") && !text.contains("give the VM"),
            "{name} did not take `vm` under fleet: {text}"
        );
        // `command` is declared only by some: the others refuse it as a usage error, so run
        // those again without it.
        if out.status.code() == Some(2) {
            let out = emu
                .test()
                .args(&["-o", "json", "fleet", &name, "--all"])
                .command()
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &*String::from_utf8_lossy(&out.stderr);
            assert!(
                !text.contains("needs the VM") && !text.contains("give the VM"),
                "{name} did not take `vm` under fleet: {text}"
            );
        }
    }
}

#[test]
fn own_runbook_from_runbook_path_runs_and_is_documented() {
    let t = Test::new().file("books/hello.rhai", HELLO);
    let books = t.path("books").display().to_string();
    let t = t.env("AZSSH_RUNBOOK_PATH", &books);
    let out = t
        .command()
        .args(["-o", "json", "run", "hello", "--arg", "who=ops"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json(&out), "hello ops");

    let out = t
        .command()
        .args(["-o", "json", "runbooks"])
        .output()
        .unwrap();
    let rows = json(&out);
    let hello = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "hello")
        .unwrap()
        .clone();
    assert_eq!(hello["description"], "Greets someone.");
    assert!(hello["source"].as_str().unwrap().ends_with("hello.rhai"));
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "setup-ssh" && r["source"] == "bundled")
    );

    let out = t
        .command()
        .args(["-o", "json", "runbooks", "hello"])
        .output()
        .unwrap();
    let doc = json(&out);
    assert_eq!(doc["arguments"][0]["name"], "who");
    assert_eq!(doc["arguments"][0]["default"], "\"world\"");
    assert_eq!(doc["arguments"][1]["type"], "int");

    let out = t
        .command()
        .args(["runbooks", "hello", "-o", "table"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(
        text.contains("who: string") && text.contains("who to greet"),
        "{text}"
    );
}

#[test]
fn undeclared_arg_is_refused_with_the_runbooks_arguments() {
    let t = Test::new()
        .file("hello.rhai", HELLO)
        .args(&["run", "hello", "--arg", "whom=ops"])
        .status(2)
        .stderr_contains("`hello` takes no `--arg whom`")
        .stderr_contains("who, times");
    t.run();
    // Bundled runbooks declare theirs too: a misspelt `--arg soruce` is not silently ignored.
    Test::new()
        .args(&["run", "open-ssh-port", "--arg", "soruce=1.2.3.4"])
        .status(2)
        .stderr_contains("--arg soruce")
        .run();
}

#[test]
fn config_dir_runbook_and_local_file_order() {
    // `./NAME.rhai` wins over ~/.config/azssh/runbooks/NAME.rhai, which wins over bundled.
    let t = Test::new().file(
        ".config/azssh/runbooks/tour.rhai",
        "//! mine\n\"from config\"\n",
    );
    let out = t
        .command()
        .args(["-o", "json", "run", "tour"])
        .output()
        .unwrap();
    assert_eq!(json(&out), "from config", "{out:?}");
    let t = t.file("tour.rhai", "//! here\n\"from cwd\"\n");
    let out = t
        .command()
        .args(["-o", "json", "run", "tour"])
        .output()
        .unwrap();
    assert_eq!(json(&out), "from cwd");
}

#[test]
fn run_eval_and_stdin() {
    Test::new()
        .args(&["-o", "json", "run", "-e", "40 + 2"])
        .stdout("42\n")
        .run();
    let t = Test::new();
    let mut child = t
        .command()
        .args(["-o", "json", "run", "-", "--arg", "n=5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"ARGS.n * 2")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "10\n");
}

#[test]
fn vms_lists_compact_rows_names_first_and_full_objects_in_json() {
    let emu = Emu::start(3);
    let out = emu.test().args(&["-o", "table", "vms"]).run();
    let text = stdout_of(&out);
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("NAME")
            && header.contains("RESOURCE_GROUP")
            && header.contains("PUBLIC_IP"),
        "{text}"
    );
    assert!(header.find("NAME") < header.find("POWER_STATE"));
    assert!(
        !text.contains("/subscriptions/"),
        "ids belong in -o json: {text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");

    let out = emu.test().args(&["-o", "json", "vms", "--ssh"]).run();
    let rows = json(&out);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert!(r["id"].as_str().unwrap().starts_with("/subscriptions/"));
        assert!(r["ssh"]["nsg_22"].is_string(), "{r}");
        assert!(r["ssh"]["openssh_extension"].is_boolean(), "{r}");
    }
    let first_group = rows[0]["resource_group"].as_str().unwrap().to_string();
    let out = emu
        .test()
        .args(&["-o", "json", "vms", "-g", &first_group])
        .run();
    assert!(
        json(&out)
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["resource_group"] == first_group.as_str())
    );
}

#[test]
fn vm_fields_shown_in_output_are_readable_properties() {
    let emu = Emu::start(1);
    // `vms()` reads Resource Graph, which has no VM agent status (the instance view's `vmAgent`
    // is not among its extended properties): `refresh()` reads the VM itself.
    let script = "let v = vms()[0]; let listed = v.vm_agent_status; v.refresh(); #{listed_agent: listed, agent: v.vm_agent_status, nic: v.nic_id, subnet: v.subnet_id, state: v.provisioning_state, pip: v.public_ip_id}";
    let out = emu.test().args(&["-o", "json", "run", "-e", script]).run();
    let m = json(&out);
    assert!(
        m["nic"].as_str().unwrap().contains("networkInterfaces"),
        "{m}"
    );
    assert!(m["subnet"].as_str().unwrap().contains("subnets"), "{m}");
    assert_eq!(m["state"], "Succeeded", "{m}");
    assert!(m["agent"].is_string(), "{m}");
    assert!(m["listed_agent"].is_null(), "{m}");
}

#[test]
fn generate_key_paths_are_readable_in_rhai() {
    let t = Test::new();
    let key = t.path("k").display().to_string();
    let script = format!("let k = generate_key(\"{key}\"); [k.public_key, k.private_key]");
    let out = t
        .command()
        .args(["-o", "json", "run", "-e", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = json(&out);
    assert_eq!(v[0], format!("{key}.pub"));
    assert_eq!(v[1], key);
}

#[test]
fn run_powershell_check_throws_on_nonzero_exit() {
    let emu = Emu::start(1);
    // A script the guest cannot run exits non-zero; `check: true` makes that a thrown error.
    let script = "let v = vms()[0]; v.ensure_running(); \
        let r = run_powershell(v, \"exit 7\"); \
        let thrown = (); \
        try { run_powershell(v, \"exit 7\", #{check: true}); } catch (e) { thrown = e.kind; } \
        #{code: r.exit_code, thrown: thrown}";
    let out = emu.test().args(&["-o", "json", "run", "-e", script]).run();
    let m = json(&out);
    // The emulated guest may not report the code (`()`): anything but 0 must throw.
    assert_ne!(m["code"], 0, "{m}");
    assert_eq!(m["thrown"], "script.command_failed", "{m}");
}

#[test]
fn verb_failure_names_no_runbook_source_line() {
    let emu = Emu::start(1);
    let out = emu
        .test()
        .args(&["enable-ssh", "-g", "rg-nowhere", "-n", "nosuch"])
        .command()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
    assert!(!stderr.contains("runbook:enable-ssh"), "{stderr}");
    // With -v the location is there for whoever debugs the runbook.
    let out = emu
        .test()
        .args(&["-v", "enable-ssh", "-g", "rg-nowhere", "-n", "nosuch"])
        .command()
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("runbook:enable-ssh"));
}

#[test]
fn close_port_removes_the_rule_open_port_made() {
    let emu = Emu::start(1);
    let vms = json(&emu.test().args(&["-o", "json", "vms"]).run());
    let (rg, name) = (
        vms[0]["resource_group"].as_str().unwrap().to_string(),
        vms[0]["name"].as_str().unwrap().to_string(),
    );
    let source = "203.0.113.9/32";
    let open = &[
        "-o",
        "json",
        "open-port",
        "-g",
        &rg,
        "-n",
        &name,
        "--source",
        source,
        "--permanent-rule",
    ];
    emu.test().args(open).run();
    let close = &[
        "-o",
        "json",
        "close-port",
        "-g",
        &rg,
        "-n",
        &name,
        "--source",
        source,
    ];
    let out = emu.test().args(close).run();
    assert_eq!(json(&out)["closed"], true);
    let out = emu.test().args(close).run();
    assert_eq!(json(&out)["closed"], false, "a second close finds no rule");
}
