//! On a real pseudo-terminal (rexpect), as a person meets it: a verb names the step it waits on
//! and for how long, then clears that line before its result; off a terminal the same steps are
//! timestamped lines on stderr. The REPL keeps every pasted line (bracketed paste or not) and
//! every line typed while something runs, and evaluates the complete inputs in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;

use rexpect::reader::Options;
use rexpect::session::{PtySession, spawn_with_options};

use crate::Test;
use crate::harness::stderr_of;

const PROMPT: &str = "azssh> ";

fn on_pty(t: &Test, args: &[&str], strip: bool) -> PtySession {
    let mut cmd = t.command();
    if args.first() == Some(&"repl") {
        // The prompt shows a subscription when one is set: tests expect the plain one.
        cmd.env_remove("AZURE_SUBSCRIPTION_ID")
            .env_remove("AZURE_CLOUD");
    }
    cmd.args(args)
        .env("TERM", "xterm")
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let options = Options::new()
        .timeout_ms(Some(20_000))
        .strip_ansi_escape_codes(strip);
    spawn_with_options(cmd, options).expect("spawn azssh on a pty")
}

fn repl(t: &Test) -> PtySession {
    let mut p = on_pty(t, &["repl"], true);
    p.exp_string(PROMPT).expect("first prompt");
    p
}

#[test]
fn a_verb_shows_its_step_and_time_then_clears_it_before_the_result() {
    let t = Test::new();
    let mut p = on_pty(&t, &["run", "-e", "sleep(2.5); \"done-42\""], false);
    // Within a second of starting to wait: the step and its elapsed time.
    let (_, shown) = p.exp_regex(r"sleeping 2\.5 s \(\d+s\)").expect("the step");
    assert!(shown.contains("sleeping 2.5 s ("), "{shown:?}");
    p.exp_string("(1s)").expect("the time goes on");
    let rest = p.exp_eof().expect("ends");
    // The line is erased (`\r` + erase line) before the result is printed.
    let result = rest.find("done-42").expect("the result");
    let erased = rest[..result]
        .rfind("\x1b[2K")
        .expect("the step line was cleared");
    assert!(
        !rest[erased..result].contains("sleeping"),
        "the step was drawn again before the result: {rest:?}"
    );
}

#[test]
fn off_a_terminal_steps_are_timestamped_lines_on_stderr() {
    let out = Test::new()
        // The line comes once the step has been waited on for a second (as seen by a thread
        // that looks every 100 ms): a 1.5 s step left it half a second, which a loaded machine
        // could take; 2.5 s leaves it one and a half.
        .args(&["run", "-e", "sleep(2.5); 5", "-o", "json"])
        .stdout("5\n")
        .run();
    let err = stderr_of(&out);
    let line = err
        .lines()
        .find(|l| l.ends_with(" sleeping 2.5 s"))
        .unwrap_or_else(|| panic!("no step line: {err:?}"));
    let stamp = line.split(' ').next().unwrap();
    // 2026-01-02T03:04:05Z
    assert_eq!(stamp.len(), 20, "{line}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{line}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no drawing off a terminal: {err:?}"
    );
}

#[test]
fn a_bracketed_paste_of_several_inputs_runs_each_in_order() {
    let t = Test::new();
    let mut p = repl(&t);
    p.send("\x1b[200~let x = 5;\nfn twice(n) {\n  n * 2\n}\n\nprint(`first ${x}`);\ntwice(x)\n\x1b[201~")
        .unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("first 5").expect("the print ran");
    p.exp_string("10").expect("the last input's value");
    p.exp_string(PROMPT).expect("prompt");
    p.send_line("twice(21)").unwrap();
    p.exp_string("42")
        .expect("the pasted function stays defined");
    p.send_line(":quit").unwrap();
    p.exp_eof().expect("leaves");
}

#[test]
fn pasted_lines_without_bracketed_paste_are_all_kept() {
    let t = Test::new();
    let mut p = repl(&t);
    // A terminal without bracketed paste sends the lines as if typed, all at once.
    p.send("let a = 20;\rfn f(n) {\r  n + 2\r}\rf(a * 2)\r")
        .unwrap();
    p.flush().unwrap();
    p.exp_string("42").expect("every line arrived");
    p.send_line(":quit").unwrap();
    p.exp_eof().expect("leaves");
}

#[test]
fn lines_typed_while_a_call_runs_are_kept_and_run_after_it() {
    let t = Test::new();
    let mut p = repl(&t);
    p.send("sleep(1); \"slept\"\r").unwrap();
    p.flush().unwrap();
    // Typed ahead while `sleep` runs: an unfinished statement over two lines, then a use.
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.send("let q = 6 *\r7;\rq + 0\r").unwrap();
    p.flush().unwrap();
    p.exp_string("slept").expect("the first call's value");
    p.exp_string("42")
        .expect("the typed-ahead input ran after it");
    p.send_line(":quit").unwrap();
    p.exp_eof().expect("leaves");
}

#[test]
fn continuation_waits_for_an_unfinished_string_call_or_operator() {
    let t = Test::new();
    let mut p = repl(&t);
    for (first, second, shown) in [
        ("let s = `two", "lines`; s.len()", "9"),
        ("[1, 2,", "3].len()", "3"),
        ("let m = #{a:", "1}; m.a + 40 +", "41"),
    ] {
        p.send_line(first).unwrap();
        p.exp_string("...> ").expect("continuation");
        p.send_line(second).unwrap();
        if second.ends_with('+') {
            p.exp_string("...> ")
                .expect("continuation after an operator");
            p.send_line("1").unwrap();
            p.exp_string("42").expect("value");
        } else {
            p.exp_string(shown).expect("value");
        }
        p.exp_string(PROMPT).expect("prompt");
    }
    p.send_line(":quit").unwrap();
    p.exp_eof().expect("leaves");
}

#[test]
fn help_covers_stdlib_modules_globals_and_suggests_near_names() {
    let t = Test::new();
    let mut p = repl(&t);
    p.send_line(":help retry::retry").unwrap();
    p.exp_string("retry::retry(f, attempts, delay_seconds)")
        .expect("stdlib function");
    p.send_line(":help target").unwrap();
    p.exp_string("import \"azssh/target\" as target;")
        .expect("stdlib module");
    p.send_line(":help ARGS").unwrap();
    p.exp_string("ARGS: map").expect("global");
    p.send_line(":help pars_json").unwrap();
    p.exp_string("did you mean `parse_json`?")
        .expect("suggestion");
    p.send_line("pars_json(\"1\")").unwrap();
    p.exp_string("did you mean `parse_json`?")
        .expect("suggestion for a call");
    p.send_line(":quit").unwrap();
    p.exp_eof().expect("leaves");
}

#[test]
fn repl_args_are_visible_to_loaded_scripts() {
    let t = Test::new().file("uses-args.rhai", "`port ${ARGS.port}`");
    let mut p = on_pty(&t, &["repl", "--arg", "port=2222"], true);
    p.exp_string(PROMPT).expect("prompt");
    p.send_line(":load uses-args.rhai").unwrap();
    p.exp_string("port 2222").expect("ARGS from --arg");
    p.send_line(":quit").unwrap();
    p.exp_eof().expect("leaves");
}

#[test]
fn a_vm_name_typed_as_the_first_argument_completes_both_arguments() {
    let t = Test::new();
    let mut p = repl(&t);
    p.send_line("[#{resource_group: \"rg-web\", name: \"web-staging\"}]")
        .unwrap();
    p.exp_string("web-staging").expect("listed");
    p.exp_string(PROMPT).expect("prompt");
    p.send("vm(\"web-st\t").unwrap();
    p.flush().unwrap();
    p.exp_string("vm(\"rg-web\", \"web-staging\"")
        .expect("group and name completed");
    p.send_control('u').unwrap();
    p.send_line(":quit").unwrap();
    p.exp_eof().expect("leaves");
}

#[test]
fn the_fleet_bar_shows_a_steady_rate_and_names_running_vms() {
    let emu = azssh_emulator::testing::Emu::builder()
        .vms(3)
        .guests(false)
        .start_blocking();
    let t = Test::new()
        .file("slow.rhai", "sleep(1.5); vm.name")
        .envs(emu.env());
    let mut p = on_pty(&t, &["fleet", "slow.rhai", "--all", "-o", "json"], true);
    let (_, line) = p
        .exp_regex(r"\d+\.\d VMs/s  running \d+: [a-z]")
        .expect("rate with one decimal, and the running VMs by name");
    assert!(line.contains("VMs/s"), "{line}");
    p.exp_eof().expect("ends");
}
