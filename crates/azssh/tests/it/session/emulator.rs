//! The session verbs and `ssh()` against the emulator's Windows guests, found by resource group
//! and name through ARM: `connect -g -n -- hostname`, PowerShell quoting through the guest's
//! `-EncodedCommand` decoder, `rdp` with the X.224 probe through the tunnel, `cp` both ways, and
//! the refusals users meet (no public IP).
//!
//! SSH is prepared here with azssh's own ARM client and PowerShell builders (the documented
//! steps); the `setup_ssh` workflow has its own tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use azssh::azure::run_command::{RunCommandOptions, run_powershell};
use azssh::azure::vm::get_vm;
use azssh::ssh::keys::{KeyKind, SshPublicKey, generate_key};
use azssh::windows::authorized_keys::KeyTarget;
use azssh::windows::combined::GuestScript;
use azssh::windows::result::ScriptResult;
use azssh::workflow::nsg::{OpenPort, open_port};
use azssh_emulator::testing::Emu;

use super::{interrupt_and_wait, json, probe};
use crate::Test;
use crate::emulator_ssh::{client, emulator, pick_vm};

/// A guest with sshd running, the NSG open to 127.0.0.1, our key installed and its host keys
/// pinned in a known_hosts file of our own.
struct Ready {
    emu: Emu,
    rg: String,
    name: String,
    admin: String,
    computer_name: String,
    dir: tempfile::TempDir,
}

impl Ready {
    fn key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }
    fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// `azssh VERB -g RG -n VM -i KEY --known-hosts FILE` with the emulator's environment.
    fn verb(&self, verb: &str) -> Test {
        self.login(verb).args(&["-g", &self.rg, "-n", &self.name])
    }

    /// `azssh VERB -i KEY --known-hosts FILE` with the emulator's environment.
    fn login(&self, verb: &str) -> Test {
        let mut t = Test::new()
            .arg(verb)
            .arg("-i")
            .arg(&self.key().display().to_string())
            .arg("--known-hosts")
            .arg(&self.known_hosts().display().to_string())
            .env("SSH_AUTH_SOCK", "/nonexistent/agent.sock");
        for (k, v) in self.emu.env() {
            t = t.env(&k, &v);
        }
        t
    }

    fn run_script(&self, body: &str) -> Test {
        let mut t = Test::new()
            .file("s.rhai", body)
            .args(&["run", "s.rhai", "-o", "json", "--arg"])
            .arg(&format!("rg={}", self.rg))
            .arg("--arg")
            .arg(&format!("name={}", self.name))
            .arg("--arg")
            .arg(&format!("key={}", self.key().display()))
            .arg("--arg")
            .arg(&format!("known_hosts={}", self.known_hosts().display()))
            .env("SSH_AUTH_SOCK", "/nonexistent/agent.sock");
        for (k, v) in self.emu.env() {
            t = t.env(&k, &v);
        }
        t
    }
}

async fn ready() -> Ready {
    let emu = emulator(12).await;
    let arm = client(&emu);
    let (rg, name) = pick_vm(&emu);
    let vm = get_vm(&arm, &rg, &name).await.expect("vm");
    let ip = vm.public_ip.clone().expect("public ip");
    let dir = tempfile::tempdir().expect("tmp");
    let key =
        generate_key(&dir.path().join("id_ed25519"), KeyKind::Ed25519, "session").expect("key");
    let public = SshPublicKey::parse(&key.public_line).expect("pub");
    let script = GuestScript::new()
        .setup()
        .install_key(public, KeyTarget::Administrators)
        .read_host_keys()
        .build();
    let lines: Vec<String> = script.lines().map(str::to_string).collect();
    let out = run_powershell(&arm, &vm.id, &lines, &RunCommandOptions::default())
        .await
        .expect("runcommand");
    let result = ScriptResult::parse(&out.stdout, &out.stderr).expect("result line");
    let port = emu.guests().ssh_port();
    let pinned: Vec<String> = result
        .host_keys()
        .expect("host keys")
        .iter()
        .map(|k| format!("[{ip}]:{port} {}", k.to_line()))
        .collect();
    std::fs::write(dir.path().join("known_hosts"), pinned.join("\n") + "\n").expect("pin");
    open_port(
        &arm,
        &vm,
        &OpenPort {
            port: 22,
            sources: vec!["127.0.0.1/32".into()],
            permanent: true,
            ..Default::default()
        },
    )
    .await
    .expect("open port");
    Ready {
        admin: vm.admin_username.clone().expect("admin"),
        computer_name: vm.computer_name.clone().expect("computer name"),
        emu,
        rg,
        name,
        dir,
    }
}

/// The binary blocks; the emulator must keep serving on the runtime meanwhile.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_verb_finds_the_vm_and_runs_hostname() {
    let r = ready().await;
    let test = r.verb("connect").args(&["--", "hostname"]);
    let out = blocking(move || test.run()).await;
    assert_eq!(
        crate::harness::stdout_of(&out).trim().to_lowercase(),
        r.computer_name.to_lowercase()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powershell_survives_quotes_and_shell_metacharacters_on_a_guest() {
    let r = ready().await;
    let test = r.run_script(
        r#"
let s = ssh(vm(ARGS.rg, ARGS.name), #{key: ARGS.key, known_hosts: ARGS.known_hosts, agent: false});
let r = s.powershell("Write-Output 'a \"b\" & | > %PATH% $(x)'");
let out = r.stdout;
out.trim();
#{out: out, code: r.exit_code, user: s.user}
"#,
    );
    let out = blocking(move || test.run()).await;
    let v = json(&out);
    assert_eq!(v["out"], "a \"b\" & | > %PATH% $(x)", "{v}");
    assert_eq!(v["code"], 0);
    assert_eq!(v["user"], r.admin, "a VM's admin user is the default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdp_verb_tunnels_to_the_guests_remote_desktop_until_ctrl_c() {
    let r = ready().await;
    let test = r.verb("rdp").arg("--no-launch");
    let (code, security) = blocking(move || {
        let mut child = test
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn azssh rdp");
        // Without a client to start, the address is printed as data.
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read address");
        let port: u16 = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let security = probe(port);
        (interrupt_and_wait(&mut child), security)
    })
    .await;
    assert_eq!(code, 0);
    assert!(
        ["tls", "credssp"].contains(&security.as_str()),
        "{security}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_verb_copies_to_and_from_a_windows_path() {
    let r = ready().await;
    let remote = format!("{}/{}:C:/Users/{}/notes.txt", r.rg, r.name, r.admin);
    let up = r
        .login("cp")
        .file("notes.txt", "line one\r\nline two\r\n")
        .args(&["notes.txt", &remote, "-o", "json"]);
    let v = json(&blocking(move || up.run()).await);
    assert_eq!(v["direction"], "upload", "{v}");
    assert_eq!(v["bytes"], 20);
    let down = r.login("cp").args(&[&remote, "back.txt", "-o", "json"]);
    // The test's temp dir goes with `down`: read the copy before it does.
    let (out, back) = blocking(move || {
        let out = down.run();
        (out, std::fs::read_to_string(down.path("back.txt")))
    })
    .await;
    let v = json(&out);
    assert_eq!(v["direction"], "download", "{v}");
    assert_eq!(back.expect("downloaded"), "line one\r\nline two\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_to_a_vm_without_public_ip_says_how_to_reach_it() {
    // One VM in six has no public IP (`World::generate`): 60 make one certain for this seed.
    let emu = emulator(60).await;
    let Some(v) = emu.handle.vms().into_iter().find(|v| v.public_ip.is_none()) else {
        panic!("the seeded world has a VM without a public IP");
    };
    let mut test = Test::new()
        .file("s.rhai", "ssh(vm(ARGS.rg, ARGS.name))")
        .args(&["run", "s.rhai", "--arg"])
        .arg(&format!("rg={}", v.resource_group))
        .arg("--arg")
        .arg(&format!("name={}", v.name))
        .status(1)
        .stderr_contains(&format!(
            "VM `{}/{}` has no public IP address",
            v.resource_group, v.name
        ))
        .stderr_contains("prefer_private_ip");
    for (k, val) in emu.env() {
        test = test.env(&k, &val);
    }
    blocking(move || test.run()).await;
}
