//! `azssh repl` driven through a real pseudo-terminal (rexpect), as a person would: results as
//! tables, Tab completion, continuation lines, Ctrl-C during a long call, history across
//! restarts, `:help`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rexpect::reader::Options;
use rexpect::session::{PtySession, spawn_with_options};

use crate::Test;

const PROMPT: &str = "azssh> ";

/// Starts `azssh repl` in `t`'s directory on a fresh pseudo-terminal and waits for the prompt.
fn start(t: &Test) -> PtySession {
    let mut cmd = t.command();
    cmd.arg("repl")
        .env("TERM", "xterm")
        .env_remove("AZURE_SUBSCRIPTION_ID")
        .env_remove("AZURE_CLOUD")
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let options = Options::new()
        .timeout_ms(Some(20_000))
        .strip_ansi_escape_codes(true);
    let mut repl = spawn_with_options(cmd, options).expect("spawn azssh repl on a pty");
    repl.exp_string(PROMPT).expect("first prompt");
    repl
}

fn type_line(repl: &mut PtySession, line: &str) {
    repl.send(line).expect("type");
    repl.send("\r").expect("enter");
    repl.flush().expect("flush");
}

fn quit(mut repl: PtySession) {
    type_line(&mut repl, ":quit");
    repl.exp_eof().expect("azssh repl leaves on :quit");
}

#[test]
fn an_array_of_maps_prints_as_a_table() {
    let t = Test::new();
    let mut repl = start(&t);
    type_line(
        &mut repl,
        "[#{name: \"web01\", power_state: \"running\"}, #{name: \"db01\", power_state: \"deallocated\"}]",
    );
    repl.exp_string("NAME   POWER_STATE").expect("header");
    repl.exp_string("web01  running").expect("first row");
    repl.exp_string("db01   deallocated").expect("second row");
    repl.exp_string(PROMPT).expect("prompt again");
    type_line(&mut repl, "#{name: \"web01\", size: \"Standard_B2s\"}");
    repl.exp_string("name  web01").expect("key/value block");
    quit(repl);
}

/// Prefix typed, then what Tab must turn it into. Add rows as functions land
/// (`("enable_", "enable_ssh(")` once the workflow is registered).
const FUNCTION_COMPLETIONS: &[(&str, &str)] = &[
    ("parse_j", "parse_json("),
    ("to_js", "to_json("),
    ("enable_", "enable_ssh("),
    ("pin_host", "pin_host_keys("),
];

#[test]
fn tab_completes_function_names() {
    let t = Test::new();
    let mut repl = start(&t);
    for (typed, completed) in FUNCTION_COMPLETIONS {
        repl.send(typed).expect("type");
        repl.send("\t").expect("tab");
        repl.flush().expect("flush");
        repl.exp_string(completed)
            .unwrap_or_else(|e| panic!("`{typed}` + Tab did not give `{completed}`: {e}"));
        // Ctrl-U empties the line for the next row.
        repl.send_control('u').expect("ctrl-u");
    }
    // The completed call runs: `parse_j` + Tab + the argument.
    repl.send("parse_j\t").expect("type");
    type_line(&mut repl, "\"[7, 8]\")");
    repl.exp_string("7\r\n8").expect("parse_json result");
    quit(repl);
}

#[test]
fn tab_completes_map_keys_and_methods_after_a_dot() {
    let t = Test::new();
    let mut repl = start(&t);
    type_line(
        &mut repl,
        "let v = #{name: \"web01\", power_state: \"running\"};",
    );
    repl.exp_string(PROMPT).expect("prompt");
    repl.send("v.pow\t").expect("type");
    repl.flush().expect("flush");
    repl.exp_string("v.power_state").expect("key completed");
    type_line(&mut repl, "");
    repl.exp_string("running").expect("value");
    repl.exp_string(PROMPT).expect("prompt");
    repl.send("v.ke\t").expect("type");
    repl.flush().expect("flush");
    repl.exp_string("v.keys(").expect("method completed");
    type_line(&mut repl, ")");
    repl.exp_string("power_state").expect("keys listed");
    quit(repl);
}

#[test]
fn a_multi_line_function_then_a_call() {
    let t = Test::new();
    let mut repl = start(&t);
    type_line(&mut repl, "fn add(a, b) {");
    repl.exp_string("...> ").expect("continuation prompt");
    type_line(&mut repl, "  a + b");
    repl.exp_string("...> ").expect("continuation prompt");
    type_line(&mut repl, "}");
    repl.exp_string(PROMPT).expect("back to the main prompt");
    type_line(&mut repl, "add(40, 2)");
    repl.exp_string("42").expect("the function persisted");
    quit(repl);
}

#[test]
fn ctrl_c_cancels_a_long_sleep_and_returns_to_the_prompt() {
    let t = Test::new();
    let mut repl = start(&t);
    type_line(&mut repl, "sleep(30)");
    // The spinner names the wait: the evaluation is running, the terminal in cooked mode.
    repl.exp_string("sleeping 30 s").expect("spinner");
    let sent = Instant::now();
    repl.send_control('c').expect("ctrl-c");
    repl.exp_string("cancelled").expect("cancelled");
    repl.exp_string(PROMPT).expect("prompt after cancel");
    // Well under a second on an idle machine; the bound leaves a loaded one room while still
    // telling a cancelled wait from one waited out (30 s).
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "Ctrl-C took {:?} to return to the prompt",
        sent.elapsed()
    );
    // The session survives: a new token, and evaluation works again.
    type_line(&mut repl, "40 + 2");
    repl.exp_string("42").expect("evaluation after cancel");
    quit(repl);
}

#[test]
fn ctrl_c_stops_a_busy_loop_too() {
    let t = Test::new();
    let mut repl = start(&t);
    type_line(&mut repl, "let n = 0; loop { n += 1; }");
    // No bridge wait here: `on_progress` sees the renewed token between operations.
    repl.exp_string("running").expect("spinner");
    repl.send_control('c').expect("ctrl-c");
    repl.exp_string("cancelled").expect("cancelled");
    repl.exp_string(PROMPT).expect("prompt after cancel");
    type_line(&mut repl, "n > 0");
    repl.exp_string("true")
        .expect("the scope kept what the loop did");
    quit(repl);
}

#[test]
fn history_survives_a_restart() {
    let t = Test::new();
    let mut first = start(&t);
    type_line(&mut first, "let marker = 6 * 7;");
    first.exp_string(PROMPT).expect("prompt");
    quit(first);
    assert!(
        t.path(".state/azssh/history").is_file(),
        "history file under XDG_STATE_HOME"
    );

    let mut second = start(&t);
    second.send("\x1b[A").expect("up arrow");
    second.send("\r").expect("enter");
    second.flush().expect("flush");
    second.exp_string(PROMPT).expect("prompt");
    type_line(&mut second, "marker");
    second.exp_string("42").expect("the recalled line ran");
    quit(second);
}

#[test]
fn help_shows_a_functions_doc_and_signature() {
    let t = Test::new();
    let mut repl = start(&t);
    type_line(&mut repl, ":help sleep");
    repl.exp_string("sleep(seconds: int)").expect("signature");
    repl.exp_string("Waits `seconds`").expect("doc comment");
    type_line(&mut repl, ":help");
    repl.exp_string(":load FILE").expect("overview");
    quit(repl);
}

#[test]
fn errors_show_a_caret_under_the_input_and_the_session_goes_on() {
    let t = Test::new();
    let mut repl = start(&t);
    type_line(&mut repl, "let x = 1 +;");
    repl.exp_string("1 | let x = 1 +;").expect("source line");
    repl.exp_string("^").expect("caret");
    type_line(&mut repl, "parse_json(1, 2)");
    repl.exp_string("function not found")
        .expect("runtime error");
    repl.exp_string("hint:").expect("hint");
    quit(repl);
}

#[test]
fn load_vars_and_save_round_trip() {
    let t = Test::new().file(
        "lib.rhai",
        "fn double(n) { n * 2 }\nlet loaded = double(21);",
    );
    let mut repl = start(&t);
    type_line(&mut repl, ":load lib.rhai");
    repl.exp_string(PROMPT).expect("prompt");
    type_line(&mut repl, ":vars");
    repl.exp_string("loaded").expect("variable from :load");
    type_line(&mut repl, "let y = double(loaded); y + 1");
    repl.exp_string("85").expect("result");
    repl.exp_string(PROMPT).expect("prompt");
    type_line(&mut repl, ":save out.rhai");
    repl.exp_string("saved").expect("saved");
    quit(repl);
    let saved = std::fs::read_to_string(t.path("out.rhai")).expect("saved script");
    assert!(saved.contains("fn double(n)"), "{saved}");
    assert!(saved.contains("let y = double(loaded); y + 1;"), "{saved}");
}

#[test]
fn prompt_shows_subscription_and_cloud() {
    let t = Test::new();
    let mut cmd = t.command();
    cmd.args(["repl"])
        .env("TERM", "xterm")
        .env("AZURE_SUBSCRIPTION_ID", "0123456789abcdef")
        .env("AZURE_CLOUD", "AzureChinaCloud")
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut repl = spawn_with_options(
        cmd,
        Options::new()
            .timeout_ms(Some(20_000))
            .strip_ansi_escape_codes(true),
    )
    .expect("spawn");
    repl.exp_string("azssh:01234567@AzureChinaCloud> ")
        .expect("prompt with subscription and cloud");
    repl.send_control('d').expect("ctrl-d");
    repl.exp_eof().expect("Ctrl-D leaves");
}

#[test]
fn vm_arguments_complete_from_names_seen_in_earlier_results() {
    let t = Test::new();
    let mut repl = start(&t);
    // Any result shaped like a VM (`resource_group` + `name`) fills the cache; no network on Tab.
    type_line(
        &mut repl,
        "[#{resource_group: \"rg-web\", name: \"web01\"}, #{resource_group: \"rg-web\", name: \"web02\"}, #{resource_group: \"rg-db\", name: \"db01\"}]",
    );
    repl.exp_string("db01").expect("table");
    repl.exp_string(PROMPT).expect("prompt");
    repl.send("vm(\"rg-w\t").expect("type");
    repl.flush().expect("flush");
    repl.exp_string("vm(\"rg-web")
        .expect("resource group completed");
    repl.send("\", \"w\t").expect("type");
    repl.flush().expect("flush");
    // Two VMs share the prefix: Tab completes up to where they differ.
    repl.exp_string("vm(\"rg-web\", \"web0")
        .expect("common prefix of rg-web's VMs");
    repl.send("\x15").expect("ctrl-u");
    repl.send("vm(\"rg-db\", \"d\t").expect("type");
    repl.flush().expect("flush");
    repl.exp_string("vm(\"rg-db\", \"db01")
        .expect("vm name completed");
    repl.send("\x15").expect("ctrl-u");
    quit(repl);
}
