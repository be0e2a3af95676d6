//! `azssh fleet` against the in-process ARM emulator: target selection, dry runs, the journal
//! and `--resume`, `--retry-failed`, shards, `--max-fail`, JUnit output, fault injection, a hard
//! kill mid-run, and Ctrl-C.

// Test helpers, not tests, so the clippy.toml test allowance does not reach them.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use azssh::emulator::FaultSpec;
use azssh_emulator::testing::Emu as Fixture;
use serde_json::Value;

use crate::harness::{Test, stdout_of};

/// A setup-like script: start the VM if needed, one RunCommand, a map as result.
const SETUP: &str = r#"
vm.ensure_running();
let r = run_powershell(vm, "Get-Service sshd");
if ARGS.fail_on != () && vm.name.contains(ARGS.fail_on) { throw `refusing ${vm.name}` }
#{ name: vm.name, exit_code: r.exit_code, token: "must-not-be-journaled" }
"#;

/// Runs without an expected exit code (the caller checks), but never lets a panic through.
trait RunAny {
    fn run_any(&self) -> std::process::Output;
}

impl RunAny for Test {
    fn run_any(&self) -> std::process::Output {
        let out = self.command().output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked at"), "{stderr}");
        out
    }
}

/// The one fixture (`azssh_emulator::testing::Emu`), with the fleet tests' helpers.
struct Emu(Fixture);

impl std::ops::Deref for Emu {
    type Target = Fixture;
    fn deref(&self) -> &Fixture {
        &self.0
    }
}

impl Emu {
    /// The ARM side alone (no guests), on a runtime of its own while the binary runs.
    fn start(vms: usize, faults: FaultSpec, throttling: bool) -> Emu {
        Emu(Fixture::builder()
            .vms(vms)
            .faults(faults)
            .throttling(throttling)
            .guests(false)
            .start_blocking())
    }

    fn test(&self) -> Test {
        Test::new().envs(self.0.env()).file("setup.rhai", SETUP)
    }

    fn ids(&self) -> Vec<String> {
        self.0.vm_ids()
    }

    fn run_commands(&self) -> BTreeMap<String, u64> {
        self.handle.stats().run_commands
    }
}

fn json_rows(out: &std::process::Output) -> Vec<Value> {
    serde_json::from_str::<Value>(&stdout_of(out))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn names(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn journal_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The last word per VM id from a journal.
fn final_status(lines: &[Value]) -> BTreeMap<String, String> {
    lines
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_ascii_lowercase(),
                l["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn dry_run_selects_by_resource_group_and_tag() {
    let emu = Emu::start(24, FaultSpec::default(), false);
    let vms = emu.handle.vms();
    let rg = vms[0].resource_group.clone();
    let out = emu
        .test()
        .args(&["fleet", "setup.rhai", "-g", &rg, "--dry-run", "-o", "json"])
        .run();
    let rows = json_rows(&out);
    let expected: BTreeSet<String> = vms
        .iter()
        .filter(|v| v.resource_group == rg)
        .map(|v| v.name.clone())
        .collect();
    assert_eq!(names(&rows), expected);
    assert!(rows.iter().all(|r| r["action"] == "run"));
    assert!(emu.run_commands().is_empty(), "a dry run runs nothing");

    // Emulated VM names are `<role>-<env>-NNN`, and the `env` tag matches the name.
    let out = emu
        .test()
        .args(&[
            "fleet",
            "setup.rhai",
            "--tag",
            "env=prod",
            "--dry-run",
            "-o",
            "json",
        ])
        .run();
    let rows = json_rows(&out);
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r["name"].as_str().unwrap().contains("-prod-")),
        "{rows:?}"
    );
}

/// A `--targets` file naming each VM id on its own line.
fn targets(ids: &[String]) -> String {
    ids.iter().map(|id| format!("{id}\n")).collect()
}

#[test]
fn targets_file_then_journal_then_resume_runs_nothing_twice() {
    let emu = Emu::start(12, FaultSpec::default(), true);
    let ids = emu.ids();
    let t = emu.test().file(
        "targets.txt",
        &format!("# three VMs\n{}", targets(&ids[..3])),
    );
    let journal = t.path("fleet.jsonl");
    let t = t.args(&[
        "fleet",
        "setup.rhai",
        "--targets",
        "targets.txt",
        "--journal",
        "fleet.jsonl",
        "-o",
        "json",
    ]);
    let out = t.run();
    let rows = json_rows(&out);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    assert_eq!(
        rows[0]["result"]["token"], "<redacted>",
        "secret-looking keys are redacted"
    );
    let lines = journal_lines(&journal);
    assert_eq!(lines.iter().filter(|l| l["status"] == "ok").count(), 3);
    assert!(
        !std::fs::read_to_string(&journal)
            .unwrap()
            .contains("must-not-be-journaled")
    );
    assert_eq!(emu.run_commands().values().sum::<u64>(), 3);

    // A fresh run refuses to mix its lines into a used journal.
    let t2 = emu.test();
    std::fs::copy(&journal, t2.path("fleet.jsonl")).unwrap();
    std::fs::write(t2.path("targets.txt"), targets(&ids[..3])).unwrap();
    t2.args(&[
        "fleet",
        "setup.rhai",
        "--targets",
        "targets.txt",
        "--journal",
        "fleet.jsonl",
    ])
    .status(2)
    .stderr_contains("already holds entries")
    .run();

    let t3 = emu.test();
    std::fs::copy(&journal, t3.path("fleet.jsonl")).unwrap();
    std::fs::write(t3.path("targets.txt"), targets(&ids[..3])).unwrap();
    t3.args(&[
        "fleet",
        "setup.rhai",
        "--targets",
        "targets.txt",
        "--journal",
        "fleet.jsonl",
        "--resume",
        "-o",
        "json",
    ])
    .stderr_contains("3 taken from the journal")
    .run();
    assert_eq!(
        emu.run_commands().values().sum::<u64>(),
        3,
        "resume reran a finished VM"
    );
}

#[test]
fn retry_failed_reruns_only_the_failures() {
    let emu = Emu::start(12, FaultSpec::default(), false);
    let t = emu.test();
    let journal = t.path("j.jsonl");
    let t = t
        .args(&[
            "fleet",
            "setup.rhai",
            "--all",
            "--journal",
            "j.jsonl",
            "--arg",
            "fail_on=-prod-",
            "-o",
            "json",
        ])
        .status(1)
        .stderr_contains("refusing");
    let out = t.run();
    let rows = json_rows(&out);
    let failed: BTreeSet<String> = rows
        .iter()
        .filter(|r| r["status"] == "failed")
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert!(failed.iter().all(|n| n.contains("-prod-")));
    let before = emu.run_commands();

    let t2 = emu.test();
    std::fs::copy(&journal, t2.path("j.jsonl")).unwrap();
    t2.args(&[
        "fleet",
        "setup.rhai",
        "--all",
        "--journal",
        "j.jsonl",
        "--resume",
        "--retry-failed",
        "-o",
        "json",
    ])
    .run();
    let after = emu.run_commands();
    for (vm, n) in &after {
        let extra = n - before.get(vm).copied().unwrap_or(0);
        assert_eq!(
            extra,
            u64::from(failed.contains(vm)),
            "{vm}: ran {extra} more times"
        );
    }
}

#[test]
fn shards_partition_the_fleet_disjointly_and_completely() {
    let emu = Emu::start(40, FaultSpec::default(), false);
    let mut seen: Vec<String> = Vec::new();
    for i in 0..3 {
        let out = emu
            .test()
            .args(&[
                "fleet",
                "setup.rhai",
                "--all",
                "--shard",
                "/3",
                "--dry-run",
                "-o",
                "json",
            ])
            .env("JOB_COMPLETION_INDEX", &i.to_string())
            .run();
        seen.extend(names(&json_rows(&out)));
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), 40, "every VM in exactly one shard");
    assert_eq!(unique.len(), 40);
    emu.test()
        .args(&[
            "fleet",
            "setup.rhai",
            "--all",
            "--shard",
            "3/3",
            "--dry-run",
        ])
        .status(2)
        .stderr_contains("index must be below the count")
        .run();
}

#[test]
fn max_fail_stops_starting_new_vms() {
    let emu = Emu::start(20, FaultSpec::default(), false);
    let out = emu
        .test()
        .file("fail.rhai", "throw `no ${vm.name}`")
        .args(&[
            "fleet",
            "fail.rhai",
            "--all",
            "--concurrency",
            "1",
            "--max-fail",
            "10",
            "-o",
            "json",
        ])
        .status(1)
        .stderr_contains("stopped starting new VMs")
        .run();
    let rows = json_rows(&out);
    let failed = rows.iter().filter(|r| r["status"] == "failed").count();
    let not_started = rows.iter().filter(|r| r["status"] == "not_started").count();
    assert_eq!(failed, 3, "10% of 20 is passed at the third failure");
    assert_eq!(failed + not_started, 20);
}

#[test]
fn junit_output_has_a_test_case_per_vm() {
    let emu = Emu::start(6, FaultSpec::default(), false);
    let out = emu
        .test()
        .args(&[
            "fleet",
            "setup.rhai",
            "--all",
            "--arg",
            "fail_on=-dev-",
            "-o",
            "junit",
        ])
        .run_any();
    let xml = stdout_of(&out);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 6, "{xml}");
    let failures = xml.matches("<failure ").count();
    assert_eq!(out.status.code(), Some(if failures > 0 { 1 } else { 0 }));
}

#[test]
fn faults_leave_every_vm_done_or_failed_once_with_a_reason() {
    let faults: FaultSpec = "5xx=0.05,reset=0.03,429=0.05,lro_fail=0.05"
        .parse()
        .unwrap();
    let emu = Emu::start(300, faults, false);
    let t = emu.test();
    let journal = t.path("j.jsonl");
    let t = t.args(&[
        "fleet",
        "setup.rhai",
        "--all",
        "--concurrency",
        "64",
        "--retries",
        "2",
        "--journal",
        "j.jsonl",
        "-o",
        "json",
    ]);
    let out = t.run_any();
    let rows = json_rows(&out);
    assert_eq!(rows.len(), 300);
    let lines = journal_lines(&journal);
    let finished: Vec<&Value> = lines.iter().filter(|l| l["status"] != "running").collect();
    let ids: BTreeSet<String> = finished
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(finished.len(), 300, "one final line per VM");
    assert_eq!(ids.len(), 300, "none twice");
    for l in &finished {
        if l["status"] == "failed" {
            assert!(
                l["error"]["kind"].as_str().is_some_and(|k| !k.is_empty()),
                "{l}"
            );
            assert!(
                l["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{l}"
            );
        }
    }
    assert!(
        emu.handle.stats().faults.values().sum::<u64>() > 0,
        "faults were injected"
    );
}

fn spawn(t: &Test) -> Child {
    t.command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the journal holds `n` finished lines.
fn wait_for_finished(path: &std::path::Path, n: usize) {
    let start = Instant::now();
    while journal_lines(path)
        .iter()
        .filter(|l| l["status"] != "running")
        .count()
        < n
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the run made no progress"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_then_resume_never_repeats_a_run_command() {
    let emu = Emu::start(60, FaultSpec::default(), false);
    let t = emu.test().args(&[
        "fleet",
        "setup.rhai",
        "--all",
        "--concurrency",
        "8",
        "--journal",
        "j.jsonl",
    ]);
    let journal = t.path("j.jsonl");
    let mut child = spawn(&t);
    wait_for_finished(&journal, 10);
    child.kill().unwrap();
    child.wait().unwrap();

    let t2 = emu.test();
    std::fs::copy(&journal, t2.path("j.jsonl")).unwrap();
    let t2 = t2.args(&[
        "fleet",
        "setup.rhai",
        "--all",
        "--concurrency",
        "8",
        "--journal",
        "j.jsonl",
        "--resume",
        "-o",
        "json",
    ]);
    let out = t2.run_any();
    for (vm, n) in emu.run_commands() {
        assert_eq!(n, 1, "{vm} got its setup RunCommand {n} times");
    }
    let last = final_status(&journal_lines(&t2.path("j.jsonl")));
    assert_eq!(last.len(), 60, "the journal ends complete");
    assert!(
        last.values().all(|s| s == "ok" || s == "failed"),
        "{last:?}"
    );
    let rows = json_rows(&out);
    assert!(rows.iter().all(|r| r["status"] != "running"));
}

#[test]
fn ctrl_c_writes_journal_and_summary_and_exits_nonzero() {
    let emu = Emu::start(40, FaultSpec::default(), false);
    let t = emu.test().args(&[
        "fleet",
        "setup.rhai",
        "--all",
        "--concurrency",
        "2",
        "--journal",
        "j.jsonl",
        "--grace",
        "60s",
        "-o",
        "json",
    ]);
    let journal = t.path("j.jsonl");
    let child = spawn(&t);
    wait_for_finished(&journal, 2);
    // SAFETY: signalling our own child by pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stderr.contains("fleet: 40 VMs"), "{stderr}");
    let rows = json_rows(&out);
    assert!(rows.iter().any(|r| r["status"] == "not_started"));
    let last = final_status(&journal_lines(&journal));
    assert!(
        last.values().all(|s| s == "ok"),
        "running VMs finished within the grace: {last:?}"
    );
}

#[test]
fn vm_print_goes_to_stderr_with_the_vm_name_and_stdout_stays_json() {
    let emu = Emu::start(3, FaultSpec::default(), false);
    let first = emu.handle.vms()[0].name.clone();
    let t = emu
        .test()
        .file(
            "hello.rhai",
            "print(`hello from ${vm.name}`); vm.power_state",
        )
        .args(&["fleet", "hello.rhai", "--all", "-o", "json"])
        .stderr_contains(&format!("{first}: hello from {first}"));
    let out = t.run();
    assert_eq!(json_rows(&out).len(), 3);
}

/// With `--concurrency 1` one script thread (one engine) evaluates every VM in turn: the first
/// VM runs past its `--timeout`, the second throws, the third must see neither (no deadline,
/// no variable, no print prefix, no error carried over), and each failure names its own VM.
#[test]
fn one_script_thread_keeps_no_vm_state_for_the_next() {
    let emu = Emu::start(3, FaultSpec::default(), false);
    let ids = emu.ids();
    let name = |id: &str| id.rsplit('/').next().unwrap().to_string();
    let (slow, bad, good) = (name(&ids[0]), name(&ids[1]), name(&ids[2]));
    let t = emu.test().file("targets.txt", &targets(&ids[..3])).file(
        "state.rhai",
        r#"
let leaked = if is_def_var("mine") { mine } else { "none" };
let mine = vm.name;
print(`print from ${vm.name}`);
if vm.name == ARGS.slow { sleep(30); }
if vm.name == ARGS.bad { throw `boom in ${vm.name}`; }
#{ name: vm.name, leaked: leaked }
"#,
    );
    let journal = t.path("j.jsonl");
    let (slow_arg, bad_arg) = (format!("slow={slow}"), format!("bad={bad}"));
    let t = t
        .args(&[
            "fleet",
            "state.rhai",
            "--targets",
            "targets.txt",
            "--concurrency",
            "1",
            "--timeout",
            "2s",
            "--journal",
            "j.jsonl",
            "--arg",
            &slow_arg,
            "--arg",
            &bad_arg,
            "-o",
            "json",
        ])
        .status(1);
    let started = Instant::now();
    let out = t.run();
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the sleep was not stopped"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for vm in [&slow, &bad, &good] {
        assert!(
            stderr.contains(&format!("{vm}: print from {vm}\n")),
            "{stderr}"
        );
    }
    for (a, b) in [(&slow, &bad), (&slow, &good), (&bad, &good)] {
        assert!(
            !stderr.contains(&format!("{a}: print from {b}")),
            "{stderr}"
        );
    }
    let lines = journal_lines(&journal);
    let done: BTreeMap<String, &Value> = lines
        .iter()
        .filter(|l| l["status"] != "running")
        .map(|l| (l["name"].as_str().unwrap().to_string(), l))
        .collect();
    assert_eq!(done.len(), 3, "{lines:?} {stderr}");
    assert_eq!(done[&slow]["status"], "failed", "{lines:?}");
    assert_eq!(done[&slow]["error"]["kind"], "deadline", "{lines:?}");
    assert_eq!(done[&bad]["status"], "failed", "{lines:?}");
    let message = done[&bad]["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("boom in {bad}")), "{message}");
    assert_eq!(done[&good]["status"], "ok", "{lines:?}");
    assert_eq!(done[&good]["error"], Value::Null, "{lines:?}");
    assert_eq!(done[&good]["result"]["leaked"], "none", "{lines:?}");
    assert_eq!(done[&good]["result"]["name"], good.as_str(), "{lines:?}");
}

/// One VM's script builds 100 000 closures, each calling the one before: evaluated on tokio's
/// 2 MiB blocking stack this aborted the whole process and left every VM `running`.
#[test]
fn nested_closure_overflow_fails_one_vm_not_the_fleet() {
    let emu = Emu::start(3, FaultSpec::default(), false);
    let ids = emu.ids();
    let bad = ids[1].rsplit('/').next().unwrap().to_string();
    let t = emu.test().file("targets.txt", &targets(&ids[..3])).file(
        "nest.rhai",
        r#"
if vm.name == ARGS.bad {
    let f = |x| x;
    for i in 0..100000 { let g = f; f = |x| g.call(x); }
    f.call(1)
} else {
    #{ name: vm.name }
}
"#,
    );
    let journal = t.path("j.jsonl");
    let bad_arg = format!("bad={bad}");
    let t = t
        .args(&[
            "fleet",
            "nest.rhai",
            "--targets",
            "targets.txt",
            "--journal",
            "j.jsonl",
            "--arg",
            &bad_arg,
            "-o",
            "json",
        ])
        .status(1);
    let out = t.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("overflow"), "{stderr}");
    let lines = journal_lines(&journal);
    let last = final_status(&lines);
    assert_eq!(last.len(), 3, "{lines:?}");
    for id in &ids {
        let want = if id.ends_with(&format!("/{bad}")) {
            "failed"
        } else {
            "ok"
        };
        assert_eq!(last[&id.to_ascii_lowercase()], want, "{lines:?}");
    }
    let failed = lines
        .iter()
        .rev()
        .find(|l| l["status"] == "failed")
        .unwrap();
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("depth") || message.contains("stopped"),
        "{message}"
    );
}

/// `--journal /dev/full`: no `running` line can be written, so no VM may start.
#[cfg(target_os = "linux")]
#[test]
fn unwritable_journal_starts_nothing() {
    let emu = Emu::start(3, FaultSpec::default(), false);
    let ids = emu.ids();
    emu.test()
        .file("targets.txt", &targets(&ids[..3]))
        .args(&[
            "fleet",
            "setup.rhai",
            "--targets",
            "targets.txt",
            "--journal",
            "/dev/full",
        ])
        .status(1)
        .stderr_contains("the journal cannot be written")
        .run();
    assert!(emu.run_commands().is_empty(), "{:?}", emu.run_commands());
}

/// Two runs on one journal would both run every VM not yet done.
#[test]
fn second_run_on_a_journal_refuses_naming_pid() {
    let emu = Emu::start(2, FaultSpec::default(), false);
    let ids = emu.ids();
    let t = emu
        .test()
        .file("targets.txt", &format!("{}\n{}\n", ids[0], ids[1]))
        .file("slow.rhai", "sleep(30); 1");
    let journal = t.path("j.jsonl");
    let run = |extra: &[&str]| {
        let mut c = t.command();
        c.args([
            "fleet",
            "slow.rhai",
            "--targets",
            "targets.txt",
            "--journal",
            "j.jsonl",
        ])
        .args(extra);
        c
    };
    let mut first = run(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while journal_lines(&journal).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = run(&["--resume"]).output().unwrap();
    let _ = first.kill();
    let _ = first.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("is in use by pid {}", first.id())),
        "{stderr}"
    );
    assert!(emu.run_commands().is_empty());
}

/// A crash mid-write leaves a line without its newline; the resumed run's first record (here the
/// `interrupted` verdict on the VM that was running) used to be glued to it and lost with it.
#[test]
fn resume_after_torn_last_line_keeps_every_record() {
    let emu = Emu::start(3, FaultSpec::default(), false);
    let ids = emu.ids();
    let line = |id: &str, status: &str| serde_json::json!({"id": id, "name": "x", "status": status, "attempts": 1, "duration_ms": 1, "finished_at": "2026-01-01T00:00:00Z"});
    let t = emu.test().file("targets.txt", &targets(&ids[..3])).file(
        "j.jsonl",
        &format!(
            "{}\n{}\n{{\"id\": \"{}\", \"sta",
            line(&ids[0], "ok"),
            line(&ids[1], "running"),
            ids[2]
        ),
    );
    let journal = t.path("j.jsonl");
    let t = t.args(&[
        "fleet",
        "setup.rhai",
        "--targets",
        "targets.txt",
        "--journal",
        "j.jsonl",
        "--resume",
    ]);
    let out = t.command().output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the interrupted VM counts as failed"
    );
    let last = final_status(&journal_lines(&journal));
    let status = |id: &String| last[&id.to_ascii_lowercase()].as_str();
    assert_eq!(status(&ids[0]), "ok", "{last:?}");
    assert_eq!(
        status(&ids[1]),
        "failed",
        "the interrupted verdict was lost: {last:?}"
    );
    assert_eq!(status(&ids[2]), "ok", "{last:?}");
    assert_eq!(
        emu.run_commands().values().sum::<u64>(),
        1,
        "only the torn VM ran"
    );
}

/// `…/web01/` in a targets file is the VM `…/web01`, not a second target run twice.
#[test]
fn trailing_slash_id_is_not_a_second_target_in_a_fleet() {
    let emu = Emu::start(2, FaultSpec::default(), false);
    let ids = emu.ids();
    let out = emu
        .test()
        .file(
            "targets.txt",
            &format!(
                "{}\n{}/\n{}\n",
                ids[0],
                ids[0],
                ids[0]
                    .to_uppercase()
                    .replace("/SUBSCRIPTIONS/", "/subscriptions/")
            ),
        )
        .args(&[
            "fleet",
            "setup.rhai",
            "--targets",
            "targets.txt",
            "-o",
            "json",
        ])
        .run();
    assert_eq!(json_rows(&out).len(), 1);
}

/// Regression guard for issue 17: a fleet run takes its VMs from one Resource Graph read, so a
/// VM costs no VM/public IP/subnet GET (a VM GET only confirms a start); `open_port` from the
/// VMs behind one NSG is grouped (fewer rule writes than VMs), and once the rule admits the
/// source a second run writes nothing.
#[test]
fn fleet_reads_vms_from_the_graph_and_groups_nsg_rule_writes() {
    let emu = Emu::start(30, FaultSpec::default(), true);
    let script = r#"
vm.ensure_running();
let r = run_powershell(vm, "Get-Service sshd");
open_port(vm, #{port: 22, source: "203.0.113.7"});
#{ exit_code: r.exit_code, nsgs: vm.nsg_ids }
"#;
    let mut nsgs = Vec::new();
    let run = |nsgs: &mut Vec<String>| {
        let out = emu
            .test()
            .file("open.rhai", script)
            .args(&[
                "fleet",
                "open.rhai",
                "--all",
                "-o",
                "json",
                "--concurrency",
                "8",
            ])
            .run_any();
        let rows = json_rows(&out);
        assert_eq!(rows.len(), 30, "{}", String::from_utf8_lossy(&out.stderr));
        assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
        for r in &rows {
            for n in r["result"]["nsgs"].as_array().into_iter().flatten() {
                nsgs.push(n.as_str().unwrap_or_default().to_ascii_lowercase());
            }
        }
        emu.handle.stats().requests
    };
    let (first, jit_lists) = arrivals(&emu, "jit.list", || run(&mut nsgs));
    let count = |m: &BTreeMap<String, u64>, kind: &str| m.get(kind).copied().unwrap_or(0);
    assert!(count(&first, "graph.resources") >= 1, "{first:?}");
    assert_eq!(
        count(&first, "network.publicIp.get") + count(&first, "network.subnet.get"),
        0,
        "addresses and subnets come from the graph: {first:?}"
    );
    assert!(
        count(&first, "vm.get") <= count(&first, "vm.start"),
        "a VM GET only confirms a start: {first:?}"
    );
    assert!(
        count(&first, "network.nic.get") <= count(&first, "vm.start"),
        "open_port takes the NIC's NSG from the graph, not from a NIC GET per VM: {first:?}"
    );
    let groups: BTreeSet<String> = emu
        .ids()
        .iter()
        .filter_map(|id| {
            id.to_ascii_lowercase()
                .split('/')
                .nth(4)
                .map(str::to_string)
        })
        .collect();
    // A JIT request reads its policy afresh (twice: before initiating and to confirm it). A
    // group's list is reused for 5 s (`jit_policies::FRESH_FOR`), and this run can last longer
    // than that on a loaded machine (13 s on an idle one, most of it in rule writes queued per
    // NSG), so a group may be listed again: counted per window shorter than the reuse.
    let per_window = groups.len() as u64 + 2 * count(&first, "jit.initiate");
    let busiest = busiest_window(&jit_lists, Duration::from_secs(4));
    assert!(
        busiest <= per_window,
        "one JIT policy list per resource group, not per VM ({} groups): {busiest} lists within \
         4 s, {} in all: {first:?}",
        groups.len(),
        jit_lists.len()
    );
    // Every (VM, NSG on its path) pair asked for the source; a NIC NSG's rule (destination
    // `*`) is written once, a subnet NSG's once per group of VMs queued behind its write.
    let puts = count(&first, "nsg.rule.put");
    let pairs = nsgs.len() as u64;
    let distinct: BTreeSet<&String> = nsgs.iter().collect();
    assert!(
        puts >= 1 && puts <= pairs,
        "{puts} rule writes for {pairs} VM/NSG pairs on {} NSGs: {first:?}",
        distinct.len()
    );
    let second = run(&mut nsgs);
    assert_eq!(
        count(&second, "nsg.rule.put"),
        puts,
        "the rules already admit the source: no write on a second run"
    );
}

/// Runs `f` while a thread samples the emulator's request counts every 10 ms; returns `f`'s
/// value and when each request of `kind` was counted (to within a sample).
fn arrivals<R>(emu: &Emu, kind: &str, f: impl FnOnce() -> R) -> (R, Vec<Instant>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (handle, stop, kind) = (emu.handle.clone(), stop.clone(), kind.to_string());
        std::thread::spawn(move || {
            let count = || handle.stats().requests.get(&kind).copied().unwrap_or(0);
            let (mut seen, mut times) = (count(), Vec::new());
            loop {
                let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                let now = count();
                times.extend((seen..now).map(|_| Instant::now()));
                seen = now;
                if done {
                    return times;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let value = f();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    (value, sampler.join().unwrap())
}

/// The most arrivals within any `window` (from one arrival on).
fn busiest_window(times: &[Instant], window: Duration) -> u64 {
    times
        .iter()
        .map(|t| {
            times
                .iter()
                .filter(|u| **u >= *t && u.duration_since(*t) < window)
                .count() as u64
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn shards_on_one_subscription_share_its_budget_without_failing_a_vm() {
    // More writes than ARM's write bucket holds (200, then 10/s), so the shards must pace on
    // what the subscription has left, which all three spend at once.
    let emu = Emu::start(260, FaultSpec::default(), true);
    // Each `Test` keeps its directory (with the script) until its process is done.
    let tests: Vec<Test> = (0..3)
        .map(|i| {
            emu.test().args(&[
                "fleet",
                "setup.rhai",
                "--all",
                "--shard",
                &format!("{i}/3"),
                "--concurrency",
                "16",
                "-o",
                "json",
            ])
        })
        .collect();
    let children: Vec<Child> = tests.iter().map(spawn).collect();
    let mut rows = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked at"), "{stderr}");
        assert!(!out.stdout.is_empty(), "{stderr}");
        rows.extend(json_rows(&out));
    }
    let stats = emu.handle.stats();
    assert_eq!(rows.len(), 260, "every VM reported by exactly one shard");
    let failed: Vec<&Value> = rows.iter().filter(|r| r["status"] != "ok").collect();
    assert!(
        failed.is_empty(),
        "no VM fails ({} 429s answered): {failed:?}",
        stats.throttled
    );
    assert_eq!(names(&rows).len(), 260);
    assert!(
        stats.throttled <= 5,
        "the shards pace on the remaining counts instead of racing into 429s: {} 429s",
        stats.throttled
    );
}
