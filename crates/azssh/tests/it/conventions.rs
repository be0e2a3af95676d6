//! The conventions of the ecosystem: `--query` (JMESPath, as `az --query`) on every JSON
//! output, shell completions and a man page from the clap definitions, colours only on a
//! terminal and never with `NO_COLOR`, and an emulator that returns to the shell (`--detach`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use azssh_emulator::testing::Emu;
use rexpect::reader::Options;
use rexpect::session::spawn_with_options;
use serde_json::Value;

use crate::Test;
use crate::harness::{stderr_of, stdout_of};

#[test]
fn query_filters_and_projects_vms_as_az_does() {
    let emu = Emu::builder().vms(4).guests(false).start_blocking();
    let all = Test::azssh(&emu, &["vms", "-o", "json"]).run();
    let all: Value = serde_json::from_str(&stdout_of(&all)).unwrap();
    let running: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["power_state"] == "running")
        .map(|v| v["name"].clone())
        .collect();
    let out = Test::azssh(
        &emu,
        &[
            "vms",
            "--query",
            "[?power_state=='running'].name",
            "-o",
            "json",
        ],
    )
    .run();
    assert_eq!(
        serde_json::from_str::<Value>(&stdout_of(&out)).unwrap(),
        Value::Array(running)
    );
    // The projection's keys become the table's columns.
    let out = Test::azssh(
        &emu,
        &[
            "vms",
            "--query",
            "[].{vm: name, group: resource_group}",
            "-o",
            "table",
        ],
    )
    .run();
    let text = stdout_of(&out);
    assert!(text.starts_with("VM "), "{text}");
    assert!(text.lines().next().unwrap().contains("GROUP"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
}

#[test]
fn query_applies_to_script_results_too() {
    Test::new()
        .args(&[
            "run",
            "-e",
            "#{vms: [#{name: \"a\", n: 1}, #{name: \"b\", n: 2}]}",
            "--query",
            "vms[?n > `1`].name | [0]",
            "-o",
            "json",
        ])
        .stdout("\"b\"\n")
        .run();
}

#[test]
fn a_bad_query_is_a_usage_error_before_anything_runs() {
    Test::new()
        .args(&["run", "-e", "throw \"must not run\"", "--query", "[?name=="])
        .status(2)
        .stderr_contains("`--query [?name==` is not a JMESPath expression")
        .stderr_contains("hint: JMESPath as in `az --query`")
        .run();
}

#[test]
fn a_query_failing_on_the_output_exits_1() {
    Test::new()
        .args(&["run", "-e", "1", "--query", "length(@)"])
        .status(1)
        .stderr_contains("`--query length(@)` failed on the output")
        .run();
}

#[test]
fn kql_in_query_still_selects_vms_with_a_warning() {
    let emu = Emu::builder().vms(3).guests(false).start_blocking();
    let kql = "Resources | where type =~ 'microsoft.compute/virtualmachines' | project id";
    let out = Test::azssh(&emu, &["vms", "--query", kql, "-o", "json"])
        .stderr_contains("pass a Resource Graph query with `--graph-query`")
        .run();
    let rows: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(3));
    let out = Test::azssh(
        &emu,
        &[
            "vms",
            "--graph-query",
            kql,
            "--query",
            "length(@)",
            "-o",
            "json",
        ],
    )
    .run();
    assert_eq!(stdout_of(&out), "3\n");
    assert!(!stderr_of(&out).contains("warning"), "{}", stderr_of(&out));
}

#[test]
fn completions_for_every_shell_name_the_commands() {
    for (shell, marker) in [
        ("bash", "_azssh()"),
        ("zsh", "#compdef azssh"),
        ("fish", "complete -c azssh"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = Test::new().args(&["completions", shell]).run();
        let text = stdout_of(&out);
        assert!(text.contains(marker), "{shell}: {text}");
        for verb in ["setup", "enable-ssh", "fleet", "vms", "completions"] {
            assert!(text.contains(verb), "{shell} completion lacks `{verb}`");
        }
    }
    Test::new()
        .args(&["completions", "tcsh"])
        .status(2)
        .stderr_contains("invalid value 'tcsh'")
        .run();
}

#[test]
fn bash_completion_completes_a_verb_in_bash() {
    let t = Test::new().args(&["completions", "bash"]);
    let script = stdout_of(&t.run());
    std::fs::write(t.path("azssh.bash"), script).unwrap();
    // What bash does on `azssh se<Tab>`: call the function with the words so far.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(
            ". ./azssh.bash; COMP_WORDS=(azssh se); COMP_CWORD=1; COMP_LINE='azssh se'; \
             COMP_POINT=8; _azssh azssh se azssh; printf '%s\\n' \"${COMPREPLY[@]}\"",
        )
        .current_dir(t.dir.path())
        .output()
        .unwrap();
    let words = stdout_of(&out);
    assert!(
        words.lines().any(|w| w == "setup"),
        "{words}{}",
        stderr_of(&out)
    );
}

#[test]
fn man_page_is_roff_with_every_command() {
    let out = Test::new().arg("man").run();
    let page = stdout_of(&out);
    assert!(page.contains(".TH azssh 1"), "{page}");
    assert!(page.contains("enable\\-ssh") || page.contains("enable-ssh"));
    let t = Test::new().args(&["man", "--dir", "."]);
    t.run();
    for page in ["azssh.1", "azssh-setup.1", "azssh-fleet.1", "azssh-vms.1"] {
        let text = std::fs::read_to_string(t.path(page)).unwrap();
        assert!(text.contains(".SH"), "{page}");
    }
}

#[test]
fn no_colour_off_a_terminal_even_without_no_color() {
    let t = Test::new().args(&["run", "-e", "throw \"boom\""]);
    let out = t.command().env_remove("NO_COLOR").output().unwrap();
    let err = stderr_of(&out);
    assert!(err.contains("boom"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes off a terminal: {err:?}"
    );
}

/// `azssh ARGS` on a pseudo-terminal; everything it wrote, escape codes kept.
fn on_terminal(args: &[&str], no_color: bool) -> String {
    let t = Test::new();
    let mut cmd = t.command();
    cmd.args(args)
        .env("TERM", "xterm")
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    if !no_color {
        cmd.env_remove("NO_COLOR");
    }
    let options = Options::new()
        .timeout_ms(Some(20_000))
        .strip_ansi_escape_codes(false);
    let mut p = spawn_with_options(cmd, options).expect("spawn on a pty");
    p.exp_eof().expect("azssh ends")
}

#[test]
fn colours_on_a_terminal_and_none_with_no_color() {
    let coloured = on_terminal(&["run", "-e", "throw \"boom\""], false);
    assert!(coloured.contains("\u{1b}["), "{coloured:?}");
    let plain = on_terminal(&["run", "-e", "throw \"boom\""], true);
    assert!(plain.contains("boom"), "{plain:?}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR ignored: {plain:?}");
}

#[test]
fn detached_emulator_returns_to_the_shell_and_stops_on_kill() {
    let t = Test::new();
    let started = Instant::now();
    let mut cmd = t.command();
    cmd.args([
        "emulator",
        "--vms",
        "2",
        "--detach",
        "--env-file",
        "emu.env",
    ]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    let exports = stdout_of(&out);
    let var = |name: &str| {
        exports
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("no {name} in {exports}"))
            .to_string()
    };
    let pid = var("AZSSH_EMULATOR_PID");
    let file = std::fs::read_to_string(t.path("emu.env")).unwrap();
    assert_eq!(file, exports);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.path("emu.env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the env file holds a token");
    }
    let lister = Test::new().args(&["vms", "-o", "json"]);
    let mut vms = lister.command();
    for name in [
        "AZSSH_ARM_ENDPOINT",
        "AZSSH_ACCESS_TOKEN",
        "AZURE_SUBSCRIPTION_ID",
    ] {
        vms.env(name, var(name));
    }
    let listed = vms.output().unwrap();
    let rows: Value = serde_json::from_str(&stdout_of(&listed)).unwrap();
    // `--vms 2` plus whatever fixed VMs the world adds (a Bastion-only VM, jump hosts).
    assert!(
        rows.as_array().map_or(0, Vec::len) >= 2,
        "{}",
        stderr_of(&listed)
    );
    let killed = std::process::Command::new("sh")
        .args(["-c", &format!("kill {pid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    // It stops asynchronously (servers and guests shut down first): 10 s was short on a
    // loaded machine; the loop ends as soon as the file is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.path("emu.env").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !t.path("emu.env").exists(),
        "a stopped emulator leaves no env file"
    );
}

#[test]
fn a_vm_that_is_not_there_suggests_the_nearest_names() {
    let emu = Emu::builder().vms(4).guests(false).start_blocking();
    let listed = Test::azssh(&emu, &["vms", "-o", "json"]).run();
    let vms: Value = serde_json::from_str(&stdout_of(&listed)).unwrap();
    let first = &vms[0];
    let (group, name) = (
        first["resource_group"].as_str().unwrap(),
        first["name"].as_str().unwrap(),
    );
    // One letter dropped from the name: the verb's error names the VM it meant.
    let typo = format!("{}{}", &name[..name.len() - 2], &name[name.len() - 1..]);
    Test::azssh(&emu, &["enable-ssh", "-g", group, "-n", &typo])
        .status(1)
        .stderr_contains(&format!("hint: did you mean `{name}`?"))
        .run();
    // The right name in a group that does not exist: where the VM really is.
    let wrong_group = format!("{}x", &group[..group.len() - 1]);
    Test::azssh(
        &emu,
        &["run", "-e", &format!("vm(\"{wrong_group}\", \"{name}\")")],
    )
    .status(1)
    .stderr_contains(&format!("hint: VM `{name}` is in resource group `{group}`"))
    .run();
    // A mistyped property of a `Vm` names the one it meant.
    Test::azssh(&emu, &["run", "-e", "let v = vms()[0]; v.power_stat"])
        .status(1)
        .stderr_contains("hint: did you mean `power_state`?")
        .run();
}

#[test]
fn fleet_table_has_the_resource_group_and_whole_outcomes() {
    let emu = Emu::builder().vms(3).guests(false).start_blocking();
    let long = "x".repeat(120);
    let t = Test::azssh(&emu, &["fleet", "r.rhai", "--all", "-o", "table"])
        .file("r.rhai", &format!("#{{vm: vm.name, note: \"{long}\"}}"));
    let out = t.run();
    let text = stdout_of(&out);
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("RESOURCE_GROUP"),
        "{text}"
    );
    assert!(text.contains(&long), "the outcome was cut: {text}");
}

/// One home for several commands (the key made once, the host keys `setup` pins): `args` are
/// added to the fixture's command for `t`'s directory.
fn in_home(t: &Test, emu: &Emu, args: &[&str]) -> std::process::Output {
    let mut cmd = t.command();
    cmd.envs(emu.env()).args(args);
    cmd.output().unwrap()
}

#[test]
fn jit_runs_a_command_once_access_is_active_and_passes_its_exit_code() {
    let emu = Emu::builder().vms(40).seed(3).speed(100.0).start_blocking();
    let t = Test::new();
    let found = in_home(
        &t,
        &emu,
        &[
            "run",
            "-o",
            "json",
            "-e",
            r#"vms().filter(|v| v.power_state == "running" && v.public_ip != () && v.os_name != () && !v.os_name.contains("2016")
                 && nsg_rules(v).some(|r| r.name.starts_with("SecurityCenter-JITRule") && r.name.contains(v.name)))
                 .map(|v| [v.resource_group, v.name])"#,
        ],
    );
    let found: Value = serde_json::from_str(&stdout_of(&found)).unwrap();
    let (rg, name) = (
        found[0][0].as_str().expect("a JIT-covered VM"),
        found[0][1].as_str().unwrap(),
    );
    std::fs::create_dir_all(t.path(".ssh")).unwrap();
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(t.path(".ssh/id_ed25519"))
        .status()
        .unwrap();
    assert!(made.success(), "ssh-keygen (OpenSSH) is needed");
    let setup = in_home(
        &t,
        &emu,
        &[
            "setup",
            "-g",
            rg,
            "-n",
            name,
            "--source",
            "127.0.0.1",
            "--local-user",
            "azureadmin",
        ],
    );
    assert_eq!(setup.status.code(), Some(0), "{}", stderr_of(&setup));
    let jit = |command: &[&str]| {
        let mut args = vec!["jit", "-g", rg, "-n", name, "--source", "127.0.0.1", "--"];
        args.extend_from_slice(command);
        in_home(&t, &emu, &args)
    };
    let out = jit(&["hostname"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), name, "the command's output streams");
    assert!(stderr_of(&out).contains("open to 127.0.0.1 until"));
    let out = jit(&["cmd", "/c", "exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
}
