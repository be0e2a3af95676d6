//! `azssh run`, `runbooks` and `docs`: arguments, output formats, diagnostics, limits, Ctrl-C,
//! stdlib imports, and every bundled runbook that needs no Azure.

use std::time::{Duration, Instant};

use crate::Test;
use crate::harness::stdout_of;

#[test]
fn args_are_json_when_they_parse_else_strings() {
    Test::new()
        .file("a.rhai", "#{n: ARGS.n + 1, s: ARGS.s, t: type_of(ARGS.m), list: ARGS.l}")
        .args(&["run", "a.rhai", "--arg", "n=41", "--arg", "s=web01", "--arg", "m={\"a\":1}", "--arg", "l=[1,2]", "-o", "json"])
        .stdout("{\n  \"list\": [\n    1,\n    2\n  ],\n  \"n\": 42,\n  \"s\": \"web01\",\n  \"t\": \"map\"\n}\n")
        .run();
}

#[test]
fn args_map_is_constant() {
    Test::new()
        .file("a.rhai", "ARGS = #{};")
        .args(&["run", "a.rhai"])
        .status(1)
        .stderr_contains("a.rhai:1:")
        .run();
}

#[test]
fn arg_without_equals_is_a_usage_error() {
    Test::new()
        .file("a.rhai", "1")
        .args(&["run", "a.rhai", "--arg", "port"])
        .status(2)
        .stderr_contains("error: `--arg port` has no `=`")
        .stderr_contains("hint: write `--arg key=value`")
        .run();
}

#[test]
fn output_formats_json_jsonl_table() {
    let script = "[#{name: \"web01\", state: \"running\"}, #{name: \"db01\", state: \"stopped\"}]";
    Test::new()
        .file("a.rhai", script)
        .args(&["run", "a.rhai", "-o", "jsonl"])
        .stdout("{\"name\":\"web01\",\"state\":\"running\"}\n{\"name\":\"db01\",\"state\":\"stopped\"}\n")
        .run();
    Test::new()
        .file("a.rhai", script)
        .args(&["run", "a.rhai", "-o", "table"])
        .stdout("NAME   STATE\nweb01  running\ndb01   stopped\n")
        .run();
    Test::new()
        .file("a.rhai", "\"plain text\"")
        .args(&["run", "a.rhai", "-o", "table"])
        .stdout("plain text\n")
        .run();
}

#[test]
fn output_defaults_to_json_when_not_a_terminal() {
    Test::new()
        .file("a.rhai", "#{a: 1}")
        .args(&["run", "a.rhai"])
        .stdout("{\n  \"a\": 1\n}\n")
        .run();
}

#[test]
fn output_format_from_environment() {
    Test::new()
        .file("a.rhai", "[1, 2]")
        .env("AZSSH_OUTPUT", "jsonl")
        .args(&["run", "a.rhai"])
        .stdout("1\n2\n")
        .run();
}

#[test]
fn unit_result_prints_nothing_and_print_goes_to_stdout() {
    Test::new()
        .file("a.rhai", "print(\"hello\");")
        .args(&["run", "a.rhai"])
        .stdout("hello\n")
        .run();
}

#[test]
fn logging_goes_to_stderr() {
    Test::new()
        .file("a.rhai", "info(\"i\"); warn(\"w\"); error(\"e\"); 1")
        .args(&["run", "a.rhai"])
        .stdout("1\n")
        .stderr_contains("info: i\nwarning: w\nerror: e\n")
        .run();
}

#[test]
fn syntax_error_shows_position_and_caret() {
    Test::new()
        .file("bad.rhai", "let x = 1;\nlet y = x +;\n")
        .args(&["run", "bad.rhai"])
        .status(1)
        .stderr_contains(
            "bad.rhai:2:12: error: unexpected ';'\n2 | let y = x +;\n  |            ^\n",
        )
        .run();
}

#[test]
fn runtime_error_carries_its_hint() {
    Test::new()
        .file(
            "t.rhai",
            "\nthrow #{kind: \"demo\", message: \"the vm is stopped\", hint: \"call `start()`\"};",
        )
        .args(&["run", "t.rhai"])
        .status(1)
        .stderr_contains("t.rhai:2:1: error: the vm is stopped")
        .stderr_contains("hint: call `start()`")
        .run();
}

#[test]
fn domain_errors_are_catchable_with_kind_message_hint() {
    Test::new()
        .file("t.rhai", "let r = ();\ntry { sleep(-1) } catch (e) { r = [e.kind, e.message, e.hint] }\nto_json(r)")
        .args(&["run", "t.rhai", "-o", "table"])
        .stdout("[\"script.bad_argument\",\"`sleep` needs a non-negative number of seconds, got -1\",null]\n")
        .run();
}

#[test]
fn function_not_found_lists_existing_overloads() {
    Test::new()
        .file("t.rhai", "sleep(\"x\")")
        .args(&["run", "t.rhai"])
        .status(1)
        .stderr_contains("error: function not found: `sleep (string)`")
        .stderr_contains("`sleep(seconds: int)`")
        .stderr_contains("`sleep(seconds: float)`")
        .run();
}

#[test]
fn runaway_loop_is_stopped_by_the_operations_limit() {
    Test::new()
        .file("l.rhai", "let i = 0;\nloop { i += 1; }")
        .args(&["run", "l.rhai", "--max-operations", "10000"])
        .status(1)
        .stderr_contains("error: the script exceeded its operations limit")
        .stderr_contains("hint: an endless loop?")
        .run();
}

#[test]
fn recursion_is_stopped_by_the_call_depth_limit() {
    Test::new()
        .file("r.rhai", "fn down(n) { down(n + 1) }\ndown(0)")
        .args(&["run", "r.rhai", "--max-call-depth", "16"])
        .status(1)
        .stderr_contains("error: the script exceeded its call-depth limit")
        .run();
}

#[test]
fn string_limit_is_enforced() {
    Test::new()
        .file("s.rhai", "let s = \"x\"; loop { s += s; }")
        .args(&["run", "s.rhai", "--max-string-size", "1000"])
        .status(1)
        .stderr_contains("larger than the configured limit")
        .run();
}

#[test]
fn deadline_stops_a_sleeping_script() {
    Test::new()
        .file("s.rhai", "sleep(30)")
        .args(&["run", "s.rhai", "--timeout", "300ms"])
        .status(1)
        .stderr_contains("error: deadline exceeded")
        .run();
}

/// Starts `azssh run` on `t` and returns once its stderr shows the step line ending in `step`
/// (off a terminal a step waited on for a second gets a timestamped line): the script is then
/// running, and azssh listens for Ctrl-C. A fixed sleep before the signal was not enough on a
/// loaded machine: a SIGINT that comes before azssh listens kills it (no exit code, no message).
/// The rest of stderr is read on a thread; join it for the text.
fn running_until_step(
    t: &Test,
    step: &str,
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, Read};
    let mut child = t
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).expect("stderr") == 0 {
            let _ = child.kill();
            panic!("azssh ended before its step line {step:?}: {seen}");
        }
        seen.push_str(&line);
        if line.trim_end().ends_with(step) {
            break;
        }
    }
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        rest
    });
    (child, seen, rest)
}

fn sigint(child: &std::process::Child) {
    // SAFETY-free: `kill` is the portable way to deliver SIGINT to the child.
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn sigint_stops_sleep_within_a_second() {
    let t = Test::new()
        .file("s.rhai", "sleep(30)")
        .args(&["run", "s.rhai"]);
    let (mut child, _, rest) = running_until_step(&t, " sleeping 30 s");
    let sent = Instant::now();
    sigint(&child);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "azssh did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(1));
    let stderr = rest.join().expect("stderr");
    assert!(stderr.contains("error: cancelled"), "{stderr}");
    // Within a second on an idle machine; the bound leaves a loaded one room while still
    // telling a cancelled sleep from one waited out (30 s).
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn pure_loop_is_cancelled_by_sigint() {
    let t = Test::new()
        .file("l.rhai", "let i = 0; loop { i += 1; }")
        .args(&["run", "l.rhai"]);
    let (mut child, _, rest) = running_until_step(&t, " running");
    sigint(&child);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1));
    assert!(rest.join().expect("stderr").contains("cancelled"));
}

#[test]
fn stdlib_retry_retries_then_succeeds() {
    Test::new()
        .file(
            "r.rhai",
            "import \"azssh/retry\" as r;\nlet n = 0;\nlet v = r::retry(|| { n += 1; if n < 3 { throw \"flaky\" } n }, 5, 0.01);\nv",
        )
        .args(&["run", "r.rhai"])
        .stdout("3\n")
        .stderr_contains("attempt 1/5 failed: flaky")
        .run();
}

#[test]
fn stdlib_retry_gives_up_with_last_error() {
    Test::new()
        .file(
            "r.rhai",
            "import \"azssh/retry\" as r;\nr::retry(|| throw \"always\", 2, 0.01)",
        )
        .args(&["run", "r.rhai"])
        .status(1)
        .stderr_contains("always")
        .run();
}

#[test]
fn relative_import_resolves_next_to_the_script() {
    Test::new()
        .file("lib/helpers.rhai", "fn double(x) { x * 2 }")
        .file(
            "jobs/main.rhai",
            "import \"../lib/helpers\" as h;\nh::double(21)",
        )
        .args(&["run", "jobs/main.rhai"])
        .stdout("42\n")
        .run();
}

#[test]
fn missing_module_names_the_bundled_ones() {
    Test::new()
        .file("i.rhai", "import \"azssh/nope\" as n;")
        .args(&["run", "i.rhai"])
        .status(1)
        .stderr_contains("error: module not found: `azssh/nope`")
        .stderr_contains("`azssh/retry`")
        .run();
}

#[test]
fn missing_script_is_a_usage_error() {
    Test::new()
        .args(&["run", "nothere.rhai"])
        .status(2)
        .stderr_contains("error: no script or runbook named `nothere.rhai`")
        .stderr_contains("hint:")
        .run();
}

#[test]
fn directory_is_not_a_script() {
    Test::new()
        .file("d/x", "")
        .args(&["run", "d"])
        .status(2)
        .stderr_contains("cannot read `d`: it is not a regular file")
        .run();
}

#[test]
fn bad_utf8_script_is_a_usage_error() {
    let t = Test::new().args(&["run", "b.rhai"]);
    std::fs::write(t.path("b.rhai"), [0x66, 0xff, 0xfe, 0x0a]).expect("write");
    t.status(2)
        .stderr_contains("`b.rhai` is not valid UTF-8")
        .run();
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    Test::new().arg("frobnicate").status(2).run();
}

#[test]
fn runbooks_lists_bundled_runbooks_with_descriptions() {
    let out = Test::new().args(&["runbooks", "-o", "json"]).run();
    let list: serde_json::Value = serde_json::from_str(&stdout_of(&out)).expect("json");
    let tour = list
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["name"] == "tour")
        .expect("tour listed");
    assert!(
        tour["description"]
            .as_str()
            .expect("text")
            .starts_with("A first script")
    );
}

#[test]
fn tour_runbook_runs_by_name() {
    Test::new()
        .args(&["run", "tour", "--arg", "name=Ana", "-o", "jsonl"])
        .stdout_contains("\"greeting\":\"hello, Ana\"")
        .run();
}

#[test]
fn docs_lists_functions_with_signatures_and_examples() {
    Test::new()
        .arg("docs")
        .stdout_contains("## `sleep`")
        .stdout_contains("sleep(seconds: int)")
        .stdout_contains("**Example**")
        .stdout_contains("## `parse_json`")
        .run();
}

#[test]
fn docs_writes_definition_files() {
    let t = Test::new().args(&["docs", "--definitions", "defs"]);
    t.run();
    let dir = t.path("defs");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(!names.is_empty());
    let all: String = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(all.contains("fn sleep("), "definitions lack sleep");
}

#[test]
fn generate_key_then_key_info_agree() {
    Test::new()
        .file(
            "k.rhai",
            "let k = generate_key(\"id_test\", #{comment: \"ops@contoso\"});\nlet i = key_info(\"id_test.pub\");\n[k.fingerprint == i.fingerprint, i.algorithm, i.comment, key_info(\"id_test\")[\"private\"]]",
        )
        .args(&["run", "k.rhai", "-o", "jsonl"])
        .stdout("true\n\"ssh-ed25519\"\n\"ops@contoso\"\ntrue\n")
        .run();
}

#[test]
fn generate_key_refuses_an_unknown_option() {
    Test::new()
        .file("k.rhai", "generate_key(\"x\", #{bitz: 4096})")
        .args(&["run", "k.rhai"])
        .status(1)
        .stderr_contains("error: `generate_key` has no option `bitz`")
        .stderr_contains("hint: its options are `bits`, `comment`")
        .run();
}

#[test]
fn docs_give_every_function_an_example_and_list_properties_by_type() {
    let out = Test::new().arg("docs").run();
    let text = stdout_of(&out);
    assert!(
        text.contains("- `Vm`: `admin_username`"),
        "properties section missing"
    );
    let sections: Vec<&str> = text.split("\n## `").skip(1).collect();
    assert!(sections.len() > 20, "too few functions documented");
    let missing: Vec<&str> = sections
        .iter()
        .filter(|s| !s.contains("**Example**"))
        .map(|s| s.split('`').next().unwrap_or(""))
        .collect();
    assert!(
        missing.is_empty(),
        "functions without an example: {missing:?}"
    );
}
