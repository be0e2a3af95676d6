//! `ssh()` and its `Session`/`Tunnel` from Rhai scripts run by the real binary against the real
//! OpenSSH sshd, and the session verbs (`connect`, `tunnel`, `cp`) and runbooks (`rdp-tunnel`,
//! `copy-files`) against it through `--ip`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Test;
use crate::harness::{stderr_of, stdout_of};
use crate::sshd::{self, Sshd};

/// The first lines of every script: a session to this sshd that touches nothing of the user's
/// own setup (no agent, a known_hosts file of the test's choosing).
const CONNECT: &str = r#"
let opts = #{port: ARGS.port, user: ARGS.user, key: ARGS.key, known_hosts: ARGS.known_hosts, agent: false};
"#;

/// `azssh run script.rhai` with the sshd's coordinates in `ARGS`, trusting its host key.
fn script(sshd: &Sshd, body: &str) -> Test {
    script_with(sshd, body, &sshd.trusted_known_hosts())
}

fn script_with(sshd: &Sshd, body: &str, known_hosts: &Path) -> Test {
    Test::new()
        .file("s.rhai", &format!("{CONNECT}{body}"))
        .args(&["run", "s.rhai", "-o", "json"])
        .arg("--arg")
        .arg(&format!("port={}", sshd.port))
        .arg("--arg")
        .arg(&format!("user={}", sshd.user))
        .arg("--arg")
        .arg(&format!("key={}", sshd.ed25519_key.display()))
        .arg("--arg")
        .arg(&format!("known_hosts={}", known_hosts.display()))
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout_of(out)).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\n{}",
            stdout_of(out),
            stderr_of(out)
        )
    })
}

/// A stand-in Remote Desktop listener (the emulator's X.224 answer) on 127.0.0.1, for tunnels
/// to point at. Runs until the test process ends.
fn rdp_listener() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(azssh::emulator::rdp_server::serve_rdp_connection(s));
            }
        });
    });
    port
}

#[test]
fn script_exec_keeps_exit_code_and_stderr_apart() {
    let Some(sshd) = sshd::start("script_exec") else {
        return;
    };
    let out = script(
        &sshd,
        r#"
let s = ssh("127.0.0.1", opts);
let r = s.exec("echo out; echo err >&2; exit 3");
let ok = s.exec("true");
let text = `${s}`;
s.close();
#{code: r.exit_code, out: r.stdout, err: r.stderr, ok: ok.exit_code, text: text, closed: s.is_closed}
"#,
    )
    .run();
    let v = json(&out);
    assert_eq!(v["code"], 3);
    assert_eq!(v["out"], "out\n");
    assert_eq!(v["err"], "err\n");
    assert_eq!(v["ok"], 0);
    assert_eq!(v["closed"], true);
    assert_eq!(
        v["text"],
        format!("Session({}@127.0.0.1:{})", sshd.user, sshd.port)
    );
}

#[test]
fn script_powershell_sends_powershell_exe_with_encoded_command() {
    let Some(sshd) = sshd::start("script_powershell") else {
        return;
    };
    // A Linux sshd has no powershell.exe: its shell's complaint shows what command line arrived.
    let out = script(
        &sshd,
        r#"
let s = ssh("127.0.0.1", opts);
s.powershell("Write-Output 'a \"b\" & | > %PATH%'")
"#,
    )
    .run();
    let v = json(&out);
    assert_eq!(v["exit_code"], 127, "{v}");
    assert!(
        v["stderr"]
            .as_str()
            .unwrap_or("")
            .contains("powershell.exe"),
        "{v}"
    );
}

#[test]
fn script_forward_carries_rdp_while_script_continues_and_close_stops_it() {
    let Some(sshd) = sshd::start("script_forward") else {
        return;
    };
    let rdp = rdp_listener();
    let out = script(
        &sshd,
        r#"
let s = ssh("127.0.0.1", opts);
let t = s.forward(0, "127.0.0.1", ARGS.rdp);
let busy = s.exec("echo still here").stdout;   // the tunnel runs while the script goes on
let p = rdp_probe(t.local_port);
let port = t.local_port;
let text = `${t}`;
t.close();
t.close();                                      // twice is harmless
let after = "still open";
try { rdp_probe(port); } catch (e) { after = e.kind; }
let spec = s.forward("0:127.0.0.1:" + ARGS.rdp); // an `ssh -L` spec works too
let again = rdp_probe(spec.local_port).security;
s.close();                                      // closes its tunnels
let after_session = "still open";
try { rdp_probe(spec.local_port); } catch (e) { after_session = e.kind; }
#{security: p.security, busy: busy, after: after, text: text, port: port, again: again,
  after_session: after_session, open: t.is_open}
"#,
    )
    .arg("--arg")
    .arg(&format!("rdp={rdp}"))
    .run();
    let v = json(&out);
    assert_eq!(v["security"], "tls", "{v}");
    assert_eq!(v["busy"], "still here\n");
    assert_eq!(v["after"], "rdp.unreachable", "{v}");
    assert_eq!(v["again"], "tls");
    assert_eq!(v["after_session"], "rdp.unreachable", "{v}");
    assert_eq!(v["open"], false);
    assert_eq!(
        v["text"],
        format!("Tunnel(127.0.0.1:{} -> 127.0.0.1:{rdp})", v["port"])
    );
}

#[test]
fn script_upload_then_download_round_trips_bytes() {
    let Some(sshd) = sshd::start("script_sftp") else {
        return;
    };
    let remote_dir = tempfile::tempdir().expect("temp dir");
    let remote = remote_dir.path().join("copied.bin");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let test = script(
        &sshd,
        r#"
let s = ssh("127.0.0.1", opts);
let up = s.upload("payload.bin", ARGS.remote);
let down = s.download(ARGS.remote, "back.bin");
#{up: up, down: down}
"#,
    )
    .arg("--arg")
    .arg(&format!("remote={}", remote.display()));
    std::fs::write(test.path("payload.bin"), &payload).expect("payload");
    let v = json(&test.run());
    assert_eq!(v["up"]["bytes"], 200_000);
    assert_eq!(v["down"]["files"], 1);
    assert_eq!(std::fs::read(&remote).expect("remote copy"), payload);
    assert_eq!(std::fs::read(test.path("back.bin")).expect("back"), payload);
}

#[test]
fn script_strict_yes_refuses_an_unknown_host() {
    let Some(sshd) = sshd::start("script_strict_yes") else {
        return;
    };
    let empty = sshd.dir.path().join("empty_known_hosts");
    // No `strict` and no terminal: the default is "yes".
    let out = script_with(
        &sshd,
        r#"let result = "connected";
try { ssh("127.0.0.1", opts); } catch (e) { result = e; }
result"#,
        &empty,
    )
    .run();
    let v = json(&out);
    assert_eq!(v["kind"], "ssh.unknown_host", "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("SHA256:"));
    assert!(v["hint"].as_str().unwrap_or("").contains("pin_host_keys"));
    assert!(!empty.exists(), "a refused key must not be written down");
}

#[test]
fn script_accept_new_records_the_key_then_yes_accepts_it() {
    let Some(sshd) = sshd::start("script_accept_new") else {
        return;
    };
    let file = sshd.dir.path().join("learned_known_hosts");
    let out = script_with(
        &sshd,
        r#"
let first = ssh("127.0.0.1", opts + #{strict: "accept-new"});
first.close();
let second = ssh("127.0.0.1", opts + #{strict: "yes"});
second.exec("echo again").stdout
"#,
        &file,
    )
    .run();
    assert_eq!(json(&out), "again\n");
    let written = std::fs::read_to_string(&file).expect("known_hosts written");
    assert!(
        written.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port)),
        "{written}"
    );
}

#[test]
fn script_password_never_reaches_errors_or_logs() {
    let Some(sshd) = sshd::start("script_password") else {
        return;
    };
    let out = script(
        &sshd,
        r#"ssh("127.0.0.1", opts + #{key: ARGS.stranger, password: ARGS.password})"#,
    )
    .args(&["--arg", "password=hunter2-do-not-print"])
    .arg("--arg")
    .arg(&format!("stranger={}", sshd.stranger_key.display()))
    .arg("-vv")
    .status(1)
    .stderr_contains("authentication as")
    .run();
    let all = format!("{}{}", stdout_of(&out), stderr_of(&out));
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn script_shell_without_a_terminal_is_a_clear_error() {
    let Some(sshd) = sshd::start("script_shell") else {
        return;
    };
    script(&sshd, r#"ssh("127.0.0.1", opts).shell()"#)
        .status(1)
        .stderr_contains("`shell()` needs a terminal")
        .stderr_contains("hint: run it from an interactive terminal")
        .run();
}

#[test]
fn script_bad_option_names_the_known_ones() {
    Test::new()
        .file("s.rhai", r#"ssh("127.0.0.1", #{usr: "x"})"#)
        .args(&["run", "s.rhai"])
        .status(1)
        .stderr_contains("`ssh` has no option `usr`")
        .stderr_contains("`prefer_private_ip`")
        .run();
}

fn verb(sshd: &Sshd, verb: &str) -> Test {
    Test::new()
        .arg(verb)
        .args(&["--ip", "127.0.0.1", "--port"])
        .arg(&sshd.port.to_string())
        .arg("--local-user")
        .arg(&sshd.user)
        .arg("-i")
        .arg(&sshd.ed25519_key.display().to_string())
        .arg("--known-hosts")
        .arg(&sshd.trusted_known_hosts().display().to_string())
        // Whatever agent the developer runs must not take part.
        .env("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
}

#[test]
fn connect_verb_runs_the_command_and_passes_on_its_exit_code() {
    let Some(sshd) = sshd::start("connect_verb") else {
        return;
    };
    verb(&sshd, "connect")
        .args(&["--", "echo", "hello;", "echo", "oops", ">&2;", "exit", "7"])
        .status(7)
        .stdout("hello\n")
        .stderr_contains("oops")
        .run();
    verb(&sshd, "connect")
        .args(&["--", "true"])
        .stdout("")
        .run();
}

#[test]
fn connect_verb_without_command_or_terminal_says_why_no_shell() {
    let Some(sshd) = sshd::start("connect_verb_no_tty") else {
        return;
    };
    verb(&sshd, "connect")
        .status(1)
        .stderr_contains("`shell()` needs a terminal")
        .stderr_contains("azssh connect ... -- hostname")
        .run();
}

#[test]
fn connect_verb_without_vm_or_ip_is_a_usage_error() {
    Test::new()
        .args(&["connect", "-n", "web01"])
        .status(2)
        .run();
}

/// Reads the child's stderr until a line contains `marker`; returns that line.
fn wait_for_line(
    child: &mut Child,
    marker: &str,
) -> (String, BufReader<std::process::ChildStderr>) {
    let mut reader = BufReader::new(child.stderr.take().expect("stderr piped"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read stderr") == 0 {
            panic!("azssh ended before printing {marker:?}:\n{seen}");
        }
        if line.contains(marker) {
            return (line, reader);
        }
        seen.push_str(&line);
    }
}

fn interrupt_and_wait(child: &mut Child) -> i32 {
    // SAFETY: kill(2) on our own child's pid; no memory is shared.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("azssh did not stop on Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn probe(port: u16) -> String {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the tunnel");
        azssh::rdp::probe_rdp(&mut s)
            .await
            .expect("RDP answers through the tunnel")
            .security()
            .to_string()
    })
}

#[test]
fn tunnel_verb_forwards_until_ctrl_c_then_exits_zero() {
    let Some(sshd) = sshd::start("tunnel_verb") else {
        return;
    };
    let rdp = rdp_listener();
    let test = verb(&sshd, "tunnel")
        .arg("-L")
        .arg(&format!("0:127.0.0.1:{rdp}"));
    let mut child = test
        .command()
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn azssh tunnel");
    let (line, mut rest) = wait_for_line(&mut child, "forwarding 127.0.0.1:");
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    assert_eq!(probe(port), "tls");
    assert_eq!(
        probe(port),
        "tls",
        "a tunnel carries more than one connection"
    );
    assert_eq!(interrupt_and_wait(&mut child), 0);
    let mut tail = String::new();
    let _ = std::io::Read::read_to_string(&mut rest, &mut tail);
    assert!(tail.contains("tunnel closed"), "{tail}");
}

/// `azssh tunnel` used to keep its tunnels open with `while !s.is_closed { sleep(1); }`, which
/// wrote a "sleeping 1 s" status line to a non-terminal stderr; it now waits on the session.
#[test]
fn tunnel_verb_waiting_for_ctrl_c_prints_no_sleep_loop_status() {
    let Some(sshd) = sshd::start("tunnel_verb_wait") else {
        return;
    };
    let rdp = rdp_listener();
    let mut child = verb(&sshd, "tunnel")
        .arg("-L")
        .arg(&format!("0:127.0.0.1:{rdp}"))
        .command()
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn azssh tunnel");
    let (_, mut rest) = wait_for_line(&mut child, "tunnels open");
    // Past the old loop's first `sleep(1)` and the status line's delay.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(interrupt_and_wait(&mut child), 0);
    let mut tail = String::new();
    let _ = std::io::Read::read_to_string(&mut rest, &mut tail);
    assert!(!tail.contains("sleeping"), "{tail}");
    assert!(tail.contains("tunnel closed"), "{tail}");
}

#[test]
fn rdp_tunnel_runbook_checks_the_x224_answer_and_closes() {
    let Some(sshd) = sshd::start("rdp_tunnel_runbook") else {
        return;
    };
    let rdp = rdp_listener();
    // The runbook by name, as `azssh rdp` runs it (without `keep_open`: check, then close).
    let out = Test::new()
        .args(&["run", "rdp-tunnel", "-o", "json", "--arg", "ip=127.0.0.1"])
        .arg("--arg")
        .arg(&format!("port={}", sshd.port))
        .arg("--arg")
        .arg(&format!("user={}", sshd.user))
        .arg("--arg")
        .arg(&format!("key={}", sshd.ed25519_key.display()))
        .arg("--arg")
        .arg(&format!(
            "known_hosts={}",
            sshd.trusted_known_hosts().display()
        ))
        .arg("--arg")
        .arg(&format!("remote_port={rdp}"))
        .env("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
        .stderr_contains("Remote Desktop answers through 127.0.0.1:")
        .run();
    let v = json(&out);
    assert_eq!(v["security"], "tls", "{v}");
    assert!(
        v["address"]
            .as_str()
            .unwrap_or("")
            .starts_with("127.0.0.1:")
    );
    assert_eq!(v["client"], Value::Null);
}

#[test]
fn cp_verb_copies_both_ways_with_rg_vm_paths() {
    let Some(sshd) = sshd::start("cp_verb") else {
        return;
    };
    let remote_dir = tempfile::tempdir().expect("temp dir");
    // `--ip` stands in for the VM lookup; the `RG/VM:` prefix still says which side is remote.
    let up = verb(&sshd, "cp").file("notes.txt", "hello from the client\n");
    let remote = format!("rg-demo/web01:{}/", remote_dir.path().display());
    let out = up.args(&["notes.txt", &remote, "-o", "json"]).run();
    let v = json(&out);
    assert_eq!(v["direction"], "upload");
    assert_eq!(v["vm"], "rg-demo/web01");
    let copied = remote_dir.path().join("notes.txt");
    assert_eq!(
        std::fs::read_to_string(&copied).expect("uploaded"),
        "hello from the client\n"
    );
    let source = format!("rg-demo/web01:{}", copied.display());
    let down = verb(&sshd, "cp").args(&[&source, "back.txt", "-o", "json"]);
    down.run();
    assert_eq!(
        std::fs::read_to_string(down.path("back.txt")).expect("downloaded"),
        "hello from the client\n"
    );
}

#[test]
fn cp_verb_refuses_two_local_paths() {
    Test::new()
        .args(&["cp", "a.txt", "C:/b.txt", "--ip", "127.0.0.1"])
        .status(1)
        .stderr_contains("must name a VM as `RG/VM:path`")
        .run();
}

#[test]
fn docs_describe_sessions_and_tunnels_with_examples() {
    let out = Test::new().arg("docs").run();
    let text = stdout_of(&out);
    for needle in [
        "ssh(vm: Vm, options: map) -> Session",
        "forward(session: Session, local_port: int",
        "rdp_probe(port: int)",
        "let t = s.forward(0, \"localhost\", 3389);",
    ] {
        assert!(text.contains(needle), "docs lack {needle:?}");
    }
}

#[test]
fn tunnels_outlive_their_value_and_stop_when_the_script_ends() {
    use azssh::script::bridge::{Bridge, Cancel};
    use azssh::script::context::{ScriptContext, Settings};
    use azssh::script::engine::Limits;
    use azssh::script::run::{self, Script};

    let Some(sshd) = sshd::start("tunnels_stop_with_script") else {
        return;
    };
    let rdp = rdp_listener();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bridge = Bridge::new(rt.handle().clone(), Cancel::new(None));
    let ctx = std::sync::Arc::new(ScriptContext::new(
        bridge,
        Settings::default(),
        Limits::default(),
    ));
    // The script drops the tunnel value at once; the tunnel must keep working while the script
    // runs, and stop with it.
    let script = Script {
        name: "t.rhai".into(),
        text: format!(
            "{CONNECT}
let s = ssh(\"127.0.0.1\", opts);
let port = s.forward(0, \"127.0.0.1\", ARGS.rdp).local_port;
#{{port: port, security: rdp_probe(port).security}}"
        ),
    };
    let mut args = rhai::Map::new();
    args.insert("port".into(), rhai::Dynamic::from(i64::from(sshd.port)));
    args.insert("user".into(), sshd.user.clone().into());
    args.insert("key".into(), sshd.ed25519_key.display().to_string().into());
    args.insert(
        "known_hosts".into(),
        sshd.trusted_known_hosts().display().to_string().into(),
    );
    args.insert("rdp".into(), rhai::Dynamic::from(i64::from(rdp)));
    let result = std::thread::spawn(move || run::run(&ctx, &script, args, |_| {}))
        .join()
        .expect("script thread")
        .unwrap_or_else(|d| panic!("{}", d.render()));
    let map = result.cast::<rhai::Map>();
    assert_eq!(map["security"].clone().into_string().unwrap(), "tls");
    let port = map["port"].as_int().unwrap() as u16;
    // Stopping is asynchronous (the listener task sees the cancel); poll, without timing it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the tunnel outlived the script that opened it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

mod emulator;
mod terminal;
mod upload_sync;

#[test]
fn demo_runs_the_whole_workflow_and_exits_zero() {
    // The demo drives `setup_ssh` (the workflow bindings); a build without them cannot run it.
    let docs = stdout_of(&Test::new().arg("docs").run());
    if !docs.contains("## `setup_ssh`") {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: setup_ssh is not in this build (demo_runs_the_whole_workflow)\n",
        );
        return;
    }
    let out = Test::new()
        .args(&["demo", "--speed", "1000", "-o", "json"])
        .stderr_contains("via the extension path")
        .stderr_contains("via the capability path")
        .stderr_contains("Remote Desktop answered")
        .stderr_contains("demo finished in")
        .run();
    let v = json(&out);
    let methods: Vec<&str> = v["vms"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["method"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        methods.contains(&"extension") && methods.contains(&"capability"),
        "{v}"
    );
    assert_eq!(v["rdp_security"], "tls", "{v}");
    assert!(v["copied_bytes"].as_i64().unwrap_or(0) > 0, "{v}");
    assert!(!v["hostname"].as_str().unwrap_or("").is_empty(), "{v}");
}
