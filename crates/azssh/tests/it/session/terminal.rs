//! The session on a real pseudo-terminal (rexpect), as a person meets it: the OpenSSH-style
//! host-key question of `strict: "ask"` (the default on a terminal), and `azssh connect`'s
//! interactive shell with its exit code passed on.

use std::process::Stdio;

use rexpect::process::WaitStatus;
use rexpect::reader::Options;
use rexpect::session::{PtySession, spawn_with_options};

use super::{script_with, verb};
use crate::sshd;

fn on_pty(mut cmd: std::process::Command) -> PtySession {
    cmd.env("TERM", "xterm")
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let options = Options::new()
        .timeout_ms(Some(20_000))
        .strip_ansi_escape_codes(true);
    spawn_with_options(cmd, options).expect("spawn azssh on a pty")
}

fn exit_code(p: &mut PtySession) -> i32 {
    match p.process().wait().expect("wait") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("azssh did not exit normally: {other:?}"),
    }
}

#[test]
fn ask_mode_shows_the_fingerprint_and_records_a_key_the_user_accepts() {
    let Some(sshd) = sshd::start("ask_on_a_terminal") else {
        return;
    };
    let file = sshd.dir.path().join("asked_known_hosts");
    let test = script_with(
        &sshd,
        r#"print("answer: " + ssh("127.0.0.1", opts).exec("echo trusted").stdout);"#,
        &file,
    );
    let mut p = on_pty(test.command());
    p.exp_string(&format!(
        "The authenticity of host '[127.0.0.1]:{}' can't be established.",
        sshd.port
    ))
    .expect("question");
    p.exp_string("ED25519 key fingerprint is SHA256:")
        .expect("fingerprint");
    p.exp_string("(yes/no/[fingerprint])?").expect("prompt");
    p.send_line("maybe").expect("type");
    p.exp_string("Please type 'yes', 'no' or the fingerprint")
        .expect("asked again");
    p.send_line("yes").expect("type");
    p.exp_string("answer: trusted")
        .expect("connected after yes");
    assert_eq!(exit_code(&mut p), 0);
    let written = std::fs::read_to_string(&file).expect("key recorded");
    assert!(written.starts_with(&format!("[127.0.0.1]:{} ", sshd.port)));
}

#[test]
fn ask_mode_refuses_when_the_user_says_no() {
    let Some(sshd) = sshd::start("ask_says_no") else {
        return;
    };
    let file = sshd.dir.path().join("refused_known_hosts");
    let test = script_with(&sshd, r#"ssh("127.0.0.1", opts)"#, &file);
    let mut p = on_pty(test.command());
    p.exp_string("(yes/no/[fingerprint])?").expect("prompt");
    p.send_line("no").expect("type");
    p.exp_string("was not accepted").expect("refusal");
    assert_eq!(exit_code(&mut p), 1);
    assert!(!file.exists(), "a refused key must not be written down");
}

/// `azssh connect`'s shell under util-linux `script`, which gives it a real terminal. (Under
/// rexpect's pty the process aborted with "IO Safety violation: owned file descriptor already
/// closed" at the first keystroke, while under `script` and Python's `pty.fork` it works; the
/// test stays on `script` until that is understood.)
#[test]
fn connect_shell_runs_on_a_terminal_and_passes_on_its_exit_code() {
    let Some(sshd) = sshd::start("connect_shell") else {
        return;
    };
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: util-linux `script` not found (connect_shell)\n",
        );
        return;
    }
    let test = verb(&sshd, "connect");
    let inner = test.command();
    let mut line = format!("{:?}", inner.get_program());
    for a in inner.get_args() {
        line.push_str(&format!(" {a:?}"));
    }
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .current_dir(test.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let mut child = script.spawn().expect("run script");
    // Keystrokes go in at once (the remote pty buffers them); stdin stays open until azssh
    // ends, as a person's terminal does.
    let mut keys = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut keys, b"echo shell-$((40+2))\rexit 5\r").expect("type");
    let out = child
        .wait_with_output()
        .expect("script ends with the shell");
    drop(keys);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shell-42"), "{text}");
    // `script -e` returns the child's exit code: the remote shell's.
    assert_eq!(out.status.code(), Some(5), "{text}");
}

/// Whether `text` holds a frame of the spinner (indicatif's braille frames).
fn has_spinner(text: &str) -> bool {
    text.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
}

#[test]
fn the_spinner_never_draws_over_the_host_key_question() {
    let Some(sshd) = sshd::start("spinner_and_question") else {
        return;
    };
    let file = sshd.dir.path().join("spinner_known_hosts");
    // A wait first, so the spinner is up when the question comes (no `-o json`: a person
    // reading tables gets the spinner). Two seconds: the spinner is drawn 0.3 s into the wait by
    // a thread that looks every 100 ms, and a one-second wait left a loaded machine little room.
    let test = crate::Test::new()
        .file(
            "s.rhai",
            &format!("{}sleep(2); ssh(\"127.0.0.1\", opts)", super::CONNECT),
        )
        .args(&["run", "s.rhai"])
        .arg("--arg")
        .arg(&format!("port={}", sshd.port))
        .arg("--arg")
        .arg(&format!("user={}", sshd.user))
        .arg("--arg")
        .arg(&format!("key={}", sshd.ed25519_key.display()))
        .arg("--arg")
        .arg(&format!("known_hosts={}", file.display()));
    let mut p = on_pty(test.command());
    p.exp_string("sleeping 2 s")
        .expect("the spinner runs first");
    let (asked, _) = p
        .exp_regex(r"\(yes/no/\[fingerprint\]\)\? ")
        .expect("prompt");
    assert!(asked.contains("The authenticity of host"), "{asked:?}");
    // A person reads the question: nothing may be drawn over it meanwhile.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut after = String::new();
    while let Some(c) = p.try_read() {
        after.push(c);
    }
    assert!(
        !has_spinner(&after) && !after.contains("(1s)"),
        "drawn over the question: {after:?}"
    );
    p.send_line("no").expect("type");
    p.exp_string("was not accepted").expect("refusal");
    assert_eq!(exit_code(&mut p), 1);
}

#[test]
fn no_spinner_inside_the_interactive_shell() {
    let Some(sshd) = sshd::start("spinner_and_shell") else {
        return;
    };
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    let test = verb(&sshd, "connect");
    let inner = test.command();
    let mut line = format!("{:?}", inner.get_program());
    for a in inner.get_args() {
        line.push_str(&format!(" {a:?}"));
    }
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .current_dir(test.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let mut child = script.spawn().expect("run script");
    let mut keys = child.stdin.take().expect("stdin");
    // The shell sits idle well past the spinner's delay before anything is typed.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::io::Write::write_all(&mut keys, b"sleep 1; echo idle-$((40+2))\rexit 0\r").expect("type");
    let out = child.wait_with_output().expect("script ends");
    drop(keys);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("idle-42"), "{text}");
    assert!(!has_spinner(&text), "a spinner inside the shell: {text:?}");
}
