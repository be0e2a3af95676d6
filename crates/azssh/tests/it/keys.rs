//! Key management and drift, end to end: the real binary against the emulator's Windows guests,
//! logins checked with the real OpenSSH client. Drift is made the way an administrator (or a
//! Windows Update) makes it: PowerShell run on the guest (`Set-Service`, `icacls`, re-encoding a
//! key file), through the guest model's own interpreter.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use azssh_emulator::testing::Emu;
use serde_json::Value;

use crate::harness::{Test, stderr_of, stdout_of};

mod paged;

/// One emulator, one VM set up with `me`'s key, a HOME of its own (known_hosts, ~/.ssh).
struct World {
    emu: Emu,
    home: tempfile::TempDir,
    rg: String,
    name: String,
    ip: String,
    /// The VM's admin, who logs in.
    user: String,
}

fn have_openssh() -> bool {
    let ok = Command::new("ssh").arg("-V").output().is_ok()
        && Command::new("ssh-keygen").arg("-?").output().is_ok();
    if !ok {
        assert!(
            std::env::var("AZSSH_REQUIRE_SSHD").ok().as_deref() != Some("1"),
            "OpenSSH client required (AZSSH_REQUIRE_SSHD=1)"
        );
        eprintln!("SKIPPED: OpenSSH client `ssh`/`ssh-keygen` not found");
    }
    ok
}

impl World {
    /// Generates `name` (ed25519) under the world's home with the real `ssh-keygen`.
    fn key(&self, name: &str) -> PathBuf {
        let path = self.home.path().join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(name.rsplit('/').next().unwrap())
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    fn azssh(&self, args: &[&str]) -> Test {
        let home = self.home.path().display().to_string();
        Test::azssh(&self.emu, args)
            .env("AZSSH_OUTPUT", "json")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &format!("{home}/.config"))
    }

    async fn json(&self, t: Test) -> Value {
        let out = tokio::task::spawn_blocking(move || t.run()).await.unwrap();
        serde_json::from_str(&stdout_of(&out))
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout_of(&out), stderr_of(&out)))
    }

    async fn run(&self, args: &[&str]) -> Value {
        self.json(self.azssh(args)).await
    }

    /// `azssh keys VERB -g RG -n NAME ARGS...` on this world's VM.
    fn keys(&self, verb: &str, args: &[&str]) -> Test {
        let mut all = vec!["keys", verb, "-g", &self.rg, "-n", &self.name];
        all.extend_from_slice(args);
        self.azssh(&all)
    }

    async fn script(&self, code: &str) -> Value {
        let t = self
            .azssh(&[
                "run",
                "s.rhai",
                "--arg",
                &format!("rg={}", self.rg),
                "--arg",
                &format!("name={}", self.name),
            ])
            .file("s.rhai", code);
        self.json(t).await
    }

    /// PowerShell on the guest, as SYSTEM (what an admin or an update does behind our back).
    fn on_guest(&self, script: &str) {
        let g = self.emu.guests().shared(&self.rg, &self.name).unwrap();
        let out = g.run_powershell(script);
        assert!(out.stderr.is_empty(), "{script}: {}", out.stderr);
        self.emu.guests().sync_listeners();
    }

    /// Logs in with the real OpenSSH client and `key`, host key checked against azssh's pins.
    async fn openssh_login(&self, key: &Path) -> std::process::Output {
        let port = self.emu.guests().ssh_port().to_string();
        let known = self.home.path().join(".config/azssh/known_hosts");
        let target = format!("{}@{}", self.user, self.ip);
        let key = key.to_path_buf();
        tokio::task::spawn_blocking(move || {
            Command::new("ssh")
                .args(["-F", "/dev/null", "-p", &port, "-i"])
                .arg(&key)
                .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
                .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=30"])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known.display()))
                .arg(&target)
                .arg("hostname")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// [`World::start`], or `None` (the test skips, visibly) without the OpenSSH client.
    async fn start_if_openssh() -> Option<World> {
        if have_openssh() {
            Some(World::start().await)
        } else {
            None
        }
    }

    /// A VM set up end to end (`azssh setup`) with `~/.ssh/id_ed25519` of this home.
    async fn start() -> World {
        let emu = Emu::builder().vms(12).start().await;
        let v = emu.ready_vm();
        let mut w = World::on(emu, v);
        let report = w.setup(0).await;
        assert_eq!(report["ok"], true, "{report}");
        w.user = report["user"].as_str().unwrap().to_string();
        w
    }

    /// `vm` of `emu`, with a home holding `~/.ssh/id_ed25519`, not set up.
    fn on(emu: Emu, v: azssh_emulator::VmSummary) -> World {
        let w = World {
            user: String::new(),
            ip: v.public_ip.unwrap().to_string(),
            rg: v.resource_group,
            name: v.name,
            emu,
            home: tempfile::tempdir().unwrap(),
        };
        w.key(".ssh/id_ed25519");
        w
    }

    /// Without `setup`: the key installed, the NSG opened to loopback, the admin's name known.
    async fn reachable(mut self) -> World {
        let me = self.home.path().join(".ssh/id_ed25519.pub");
        self.run(&[
            "copy-key",
            "-g",
            &self.rg,
            "-n",
            &self.name,
            "--key",
            &me.display().to_string(),
        ])
        .await;
        self.run(&[
            "open-port",
            "-g",
            &self.rg,
            "-n",
            &self.name,
            "--source",
            "127.0.0.0/8",
        ])
        .await;
        let vms = self.run(&["vms", "-g", &self.rg]).await;
        self.user = vms
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == self.name.as_str())
            .and_then(|v| v["admin_username"].as_str())
            .unwrap_or_else(|| panic!("no admin in {vms}"))
            .to_string();
        self
    }

    /// The host keys read through Azure and pinned (sshd must have run once).
    async fn pin(&self) {
        self.run(&["pin", "-g", &self.rg, "-n", &self.name]).await;
    }

    /// `azssh setup` with `~/.ssh/id_ed25519`, expecting exit `code`; its JSON report, or the
    /// error's stderr as a JSON string.
    async fn setup(&self, code: i32) -> Value {
        let me = self.home.path().join(".ssh/id_ed25519.pub");
        let t = self
            .azssh(&[
                "setup",
                "-g",
                &self.rg,
                "-n",
                &self.name,
                "--source",
                "127.0.0.0/8",
                "--key",
                &me.display().to_string(),
            ])
            .status(code);
        let out = tokio::task::spawn_blocking(move || t.run()).await.unwrap();
        serde_json::from_str(&stdout_of(&out)).unwrap_or(Value::String(stderr_of(&out)))
    }
}

/// `ssh-keygen -lf` of a key file: the fingerprint as OpenSSH prints it.
fn openssh_fingerprint(public: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

fn pubfile(p: &Path) -> String {
    format!("{}.pub", p.display())
}

fn fingerprints(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["fingerprint"].as_str().unwrap().to_string())
        .collect()
}

/// A VM (not set up) whose `administrators_authorized_keys` holds `n` fresh keys, written on the
/// guest as an administrator would; the keys in file order.
async fn world_with_keys(n: usize) -> (World, Vec<PathBuf>) {
    let emu = Emu::builder().vms(12).start().await;
    let v = emu.ready_vm();
    let w = World::on(emu, v);
    let keys: Vec<PathBuf> = (0..n).map(|i| w.key(&format!("many/key-{i:02}"))).collect();
    let lines: Vec<String> = keys
        .iter()
        .map(|k| format!("'{}'", std::fs::read_to_string(pubfile(k)).unwrap().trim()))
        .collect();
    // The guest exists from its first use; its key file is written before any.
    w.emu.handle.guest(&w.rg, &w.name).unwrap();
    w.on_guest(&format!(
        r#"$d = Join-Path $env:ProgramData 'ssh'
if (-not (Test-Path -LiteralPath $d)) {{ $null = New-Item -ItemType Directory -Path $d -Force }}
$lines = @({})
[IO.File]::WriteAllText((Join-Path $d 'administrators_authorized_keys'), (($lines -join "`r`n") + "`r`n"))"#,
        lines.join(", ")
    ));
    (w, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_longer_than_the_runcommand_output_tail_lists_every_key() {
    if !have_openssh() {
        return;
    }
    // 60 keys: their listing is ~9 KB, more than twice RunCommand's 4096-byte output tail.
    let (w, keys) = world_with_keys(60).await;
    let rows = w.json(w.keys("list", &[])).await;
    let expected: Vec<String> = keys
        .iter()
        .map(|k| openssh_fingerprint(Path::new(&pubfile(k))))
        .collect();
    assert_eq!(fingerprints(&rows), expected, "every key, in file order");
    assert_eq!(rows[59]["comment"], "key-59");
    assert_eq!(rows[59]["line"], 60);
    // More than one RunCommand: the listing came back in pages.
    let runs = w.emu.handle.stats().run_commands.get(&w.name).copied();
    assert!(runs.unwrap_or(0) >= 3, "{runs:?} RunCommands");
    // The script function reads the same complete listing.
    let listed = w.script("authorized_keys(vm(ARGS.rg, ARGS.name))").await;
    assert_eq!(fingerprints(&listed), expected);
    // The snapshot the pages were read from is gone from the guest.
    let g = w.emu.guests().shared(&w.rg, &w.name).unwrap();
    let left = g.run_powershell(
        "@(Get-ChildItem -Path (Join-Path $env:ProgramData 'ssh') -Filter 'azssh-keys-*').Count",
    );
    assert_eq!(left.stdout.trim(), "0", "{}", left.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_among_three_others_is_listed_rotated_with_a_proven_login_then_removed() {
    let Some(w) = World::start_if_openssh().await else {
        return;
    };
    let me = w.home.path().join(".ssh/id_ed25519");
    let (alice, bob, carol) = (w.key("alice"), w.key("bob"), w.key("carol"));
    for k in [&alice, &bob, &carol] {
        w.run(&["copy-key", "-g", &w.rg, "-n", &w.name, "--key", &pubfile(k)])
            .await;
    }

    // Listed, with fingerprints exactly as `ssh-keygen -lf` prints them.
    let rows = w.json(w.keys("list", &[])).await;
    let listed = fingerprints(&rows);
    let expected: Vec<String> = [&me, &alice, &bob, &carol]
        .iter()
        .map(|k| openssh_fingerprint(Path::new(&pubfile(k))))
        .collect();
    assert_eq!(listed, expected, "{rows}");
    for r in rows.as_array().unwrap() {
        assert_eq!(r["type"], "ssh-ed25519");
        assert_eq!(r["encoding"], "utf-8");
        assert_eq!(r["acl"], "ok");
        assert!(
            r["file"]
                .as_str()
                .unwrap()
                .ends_with("administrators_authorized_keys")
        );
    }
    assert_eq!(rows[1]["comment"], "alice");
    assert_eq!(rows[3]["line"], 4);

    // Rotate alice's key: the new one is added, a login with it is proven, then the old goes.
    let alice2 = w.key("alice2");
    let r = w
        .json(w.keys(
            "rotate",
            &["--old", &pubfile(&alice), "--new", &pubfile(&alice2)],
        ))
        .await;
    assert!(r["stopped_at"].is_null(), "{r}");
    assert_eq!(r["added"], true);
    assert_eq!(r["removed"].as_array().unwrap().len(), 1);
    let whoami = r["login"]["whoami"].as_str().unwrap().to_lowercase();
    assert!(
        whoami.ends_with(&format!("\\{}", w.user.to_lowercase())),
        "{r}"
    );
    let new_login = w.openssh_login(&alice2).await;
    assert!(
        new_login.status.success(),
        "{}",
        String::from_utf8_lossy(&new_login.stderr)
    );
    let old_login = w.openssh_login(&alice).await;
    assert!(!old_login.status.success(), "the old key still logs in");

    // A rotation whose login fails (nothing listens on port 1) stops there: the old key stays.
    let dave = w.key("dave");
    let t = w
        .keys(
            "rotate",
            &[
                "--old",
                &pubfile(&bob),
                "--new",
                &pubfile(&dave),
                "--port",
                "1",
            ],
        )
        .status(1)
        .stderr_contains("stopped at `login`")
        .stderr_contains("the old key stays");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    assert!(
        w.openssh_login(&bob).await.status.success(),
        "bob's key was removed"
    );

    // Removed: exactly that key, the file's encoding and ACL kept; again: a no-op.
    let bob_fp = openssh_fingerprint(Path::new(&pubfile(&bob)));
    let r = w.json(w.keys("remove", &["--fingerprint", &bob_fp])).await;
    assert_eq!(r["changed"], true);
    assert_eq!(r["removed"][0]["fingerprint"], bob_fp.as_str());
    let again = w.json(w.keys("remove", &["--fingerprint", &bob_fp])).await;
    assert_eq!(again["changed"], false);
    let rows = w.json(w.keys("list", &[])).await;
    assert!(!fingerprints(&rows).contains(&bob_fp));
    assert_eq!(rows.as_array().unwrap().len(), 4, "{rows}");
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["acl"] == "ok" && r["encoding"] == "utf-8")
    );
    assert!(!w.openssh_login(&bob).await.status.success());

    // The caller's own key is not removed while it is their last way in.
    let mine = openssh_fingerprint(Path::new(&pubfile(&me)));
    let t = w
        .keys("remove", &["--key", &pubfile(&me)])
        .status(1)
        .stderr_contains("would keep none of your keys")
        .stderr_contains("--force");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let rows = w.json(w.keys("list", &[])).await;
    assert!(fingerprints(&rows).contains(&mine));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_removed_and_an_unexpired_one_kept_and_exclusive_leaves_exactly_those() {
    let Some(w) = World::start_if_openssh().await else {
        return;
    };
    let (old, fresh, extra) = (w.key("old"), w.key("fresh"), w.key("extra"));
    let r = w
        .script(&format!(
            r#"let v = vm(ARGS.rg, ARGS.name);
let a = copy_key(v, "{}", #{{expires: "2020-01-31"}});
let b = copy_key(v, "{}", #{{expires: "2099-12-31"}});
let c = copy_key(v, "{}");
#{{ a: a, b: b, rows: authorized_keys(v) }}"#,
            pubfile(&old),
            pubfile(&fresh),
            pubfile(&extra)
        ))
        .await;
    assert_eq!(r["a"]["expires"], "2020-01-31");
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1]["expires"], "2020-01-31");
    assert!(
        rows[1]["comment"]
            .as_str()
            .unwrap()
            .ends_with("azssh-expires=2020-01-31")
    );
    // sshd ignores the comment: an expiring key logs in until it is removed.
    assert!(w.openssh_login(&old).await.status.success());

    let r = w.json(w.keys("expire", &[])).await;
    let removed = r["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{r}");
    assert_eq!(
        removed[0]["fingerprint"],
        openssh_fingerprint(Path::new(&pubfile(&old))).as_str()
    );
    assert!(!w.openssh_login(&old).await.status.success());
    assert!(w.openssh_login(&fresh).await.status.success());

    // Exclusive: exactly these keys remain (the caller's own among them).
    let me = w.home.path().join(".ssh/id_ed25519");
    let r = w
        .script(&format!(
            r#"let v = vm(ARGS.rg, ARGS.name);
copy_key(v, ["{}", "{}"], #{{exclusive: true}});
authorized_keys(v)"#,
            pubfile(&me),
            pubfile(&extra)
        ))
        .await;
    let want: Vec<String> = [&me, &extra]
        .iter()
        .map(|k| openssh_fingerprint(Path::new(&pubfile(k))))
        .collect();
    assert_eq!(fingerprints(&r), want, "{r}");
    assert!(!w.openssh_login(&fresh).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_each_drift_and_only_those_and_repair_brings_ssh_back() {
    let Some(w) = World::start_if_openssh().await else {
        return;
    };
    let me = w.home.path().join(".ssh/id_ed25519");
    let audit = |w: &World| {
        w.azssh(&[
            "audit",
            "-g",
            &w.rg,
            "-n",
            &w.name,
            "--known-key",
            &pubfile(&me),
        ])
    };
    let clean = w.json(audit(&w)).await;
    assert_eq!(clean["drift"], serde_json::json!([]), "{clean}");
    assert_eq!(clean["facts"]["sshd"], "Running");

    // Drift: a Windows Update leaves sshd Manual and stopped, someone adds a stray key, widens
    // the key file's ACL, and sets PowerShell as the default shell.
    let stray = w.key("stray");
    w.run(&[
        "copy-key",
        "-g",
        &w.rg,
        "-n",
        &w.name,
        "--key",
        &pubfile(&stray),
    ])
    .await;
    w.on_guest(
        "Set-Service -Name sshd -StartupType Manual
Stop-Service -Name sshd
$null = icacls.exe 'C:\\ProgramData\\ssh\\administrators_authorized_keys' /grant '*S-1-5-11:R'
$null = New-ItemProperty -Path 'HKLM:\\SOFTWARE\\OpenSSH' -Name DefaultShell -Value 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe' -PropertyType String -Force",
    );
    let drifted = w.json(audit(&w)).await;
    assert_eq!(
        drifted["drift"],
        serde_json::json!([
            "default_shell",
            "keys.acl",
            "keys.unknown",
            "sshd.startup",
            "sshd.status"
        ]),
        "{drifted}"
    );
    assert!(
        !w.openssh_login(&me).await.status.success(),
        "sshd is stopped"
    );

    // Dry run: says what it would change, changes nothing.
    let dry = w
        .run(&["repair", "-g", &w.rg, "-n", &w.name, "--dry-run"])
        .await;
    let whats: Vec<&str> = dry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    assert_eq!(whats, ["sshd.startup", "sshd.status", "keys.acl"], "{dry}");
    assert!(!w.openssh_login(&me).await.status.success());

    // Repair: sshd back, the ACL reset; the shell and the stray key are decisions, left alone.
    let fixed = w.run(&["repair", "-g", &w.rg, "-n", &w.name]).await;
    assert!(fixed["failed"].as_array().unwrap().is_empty(), "{fixed}");
    assert_eq!(
        fixed["drift"],
        serde_json::json!(["default_shell"]),
        "{fixed}"
    );
    w.emu.guests().sync_listeners();
    let login = w.openssh_login(&me).await;
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let after = w.json(audit(&w)).await;
    assert_eq!(
        after["drift"],
        serde_json::json!(["default_shell", "keys.unknown"]),
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_keeps_working_whichever_default_shell_is_set() {
    let Some(w) = World::start_if_openssh().await else {
        return;
    };
    for shell in ["powershell", "cmd"] {
        let r = w
            .script(&format!(
                r#"let v = vm(ARGS.rg, ARGS.name);
let d = set_default_shell(v, "{shell}");
let s = ssh(v);
let h = s.exec("hostname", #{{check: true}});
let p = s.powershell("[Environment]::MachineName", #{{check: true}});
s.close();
#{{ shell: d.shell, hostname: h.stdout, ps: p.stdout }}"#
            ))
            .await;
        let hostname = r["hostname"].as_str().unwrap().trim();
        assert!(!hostname.is_empty(), "{r}");
        assert_eq!(hostname, r["ps"].as_str().unwrap().trim(), "{r}");
        let expected = if shell == "cmd" {
            "cmd"
        } else {
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
        };
        assert_eq!(r["shell"], expected);
    }
    let t = w
        .azssh(&[
            "enable-ssh",
            "-g",
            &w.rg,
            "-n",
            &w.name,
            "--default-shell",
            "pwsh",
        ])
        .status(1)
        .stderr_contains("pwsh.exe does not exist");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let r = w
        .run(&[
            "enable-ssh",
            "-g",
            &w.rg,
            "-n",
            &w.name,
            "--default-shell",
            "powershell",
        ])
        .await;
    assert!(
        r["default_shell"]
            .as_str()
            .is_some_and(|s| s.ends_with("powershell.exe")),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_removed_across_the_fleet_and_the_audit_groups_vms_by_drift() {
    let Some(w) = World::start_if_openssh().await else {
        return;
    };
    let gone = w.key("departed");
    w.run(&[
        "copy-key",
        "-g",
        &w.rg,
        "-n",
        &w.name,
        "--key",
        &pubfile(&gone),
    ])
    .await;
    let fp = openssh_fingerprint(Path::new(&pubfile(&gone)));
    let journal = w.home.path().join("remove.jsonl");
    // VMs of the group that are not running fail (RunCommand needs a running VM).
    let all_running = w
        .emu
        .handle
        .vms()
        .iter()
        .filter(|v| v.resource_group == w.rg)
        .all(|v| v.power_state == azssh_emulator::PowerState::Running);
    let code = if all_running { 0 } else { 1 };
    let t = w.azssh(&[
        "keys",
        "remove",
        "-g",
        &w.rg,
        "--fingerprint",
        &fp,
        "--journal",
        &journal.display().to_string(),
    ]);
    let out = tokio::task::spawn_blocking(move || t.status(code).run())
        .await
        .unwrap();
    let stderr = stderr_of(&out);
    // Stopped or deallocated VMs of the group fail; the running ones are searched.
    assert!(
        stderr.contains(&format!("removed from 1 VM(s) [{}]", w.name)),
        "{stderr}"
    );
    let lines = std::fs::read_to_string(&journal).unwrap();
    assert!(lines.lines().count() >= 2, "{lines}");
    assert!(lines.contains("\"status\":\"ok\""), "{lines}");
    let rows = w.json(w.keys("list", &[])).await;
    assert!(!fingerprints(&rows).contains(&fp));

    w.on_guest("Set-Service -Name sshd -StartupType Manual");
    let t = w.azssh(&["audit", "-g", &w.rg]);
    let out = tokio::task::spawn_blocking(move || t.status(code).run())
        .await
        .unwrap();
    let stderr = stderr_of(&out);
    assert!(stderr.contains("drift by VM:"), "{stderr}");
    assert!(
        stderr.contains(&format!("[{}]: sshd.startup", w.name)),
        "{stderr}"
    );
    let results: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert!(results.is_array(), "{results}");
}

/// What the audit must find on each variant of the realistic world, before anyone set it up.
fn expected_drift(variant: azssh_emulator::Variant) -> Option<&'static [&'static str]> {
    use azssh_emulator::Variant as V;
    Some(match variant {
        // Nothing installed yet: the only finding is that.
        V::Tidy
        | V::AdminsUnresolvableSid
        | V::AdminNestedGroup
        | V::WsusManaged
        | V::NsgDenyAll
        | V::DiskFull
        | V::ExtensionOtherName => &["sshd.missing"],
        V::Ws2025PublicProfile => &["firewall.profile", "sshd.startup", "sshd.status"],
        V::SshdConfigHardened => &[
            "config.allow_groups",
            "config.match_block",
            "config.password_authentication",
        ],
        V::SshdPort2222 => &["config.port"],
        V::SshdBrokenLogsAcl => &["logs.acl", "sshd.status"],
        V::DefaultShellPowerShell => &["default_shell"],
        // Deallocated: RunCommand cannot run, the fleet run reports it failed.
        V::AgentNotReady => return None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_every_variant_of_the_realistic_world_and_only_those() {
    if !have_openssh() {
        return;
    }
    let emu = Emu::builder()
        .vms(13)
        .world(azssh_emulator::WorldKind::Realistic)
        .start()
        .await;
    let vms = emu.handle.vms();
    let w = World::on(emu, vms[0].clone());
    let t = w.azssh(&["audit", "--all"]).status(1);
    let out = tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let rows: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    let stderr = stderr_of(&out);
    assert!(stderr.contains("drift by VM:"), "{stderr}");
    for v in &vms {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == v.name.as_str())
            .unwrap_or_else(|| panic!("{} missing from {rows}", v.name));
        match expected_drift(v.variant) {
            Some(want) => assert_eq!(
                row["result"]["drift"],
                serde_json::json!(want),
                "{} ({}): {row}",
                v.name,
                v.variant.name()
            ),
            None => assert_eq!(row["status"], "failed", "{row}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_brings_the_broken_sshd_and_narrowed_firewall_vms_back_to_an_ssh_login() {
    if !have_openssh() {
        return;
    }
    use azssh_emulator::Variant;
    let emu = Emu::builder()
        .vms(13)
        .world(azssh_emulator::WorldKind::Realistic)
        .start()
        .await;
    let broken = emu.variant_vm(Variant::SshdBrokenLogsAcl);
    let narrowed = emu.variant_vm(Variant::Ws2025PublicProfile);
    let w = World::on(emu, broken).reachable().await;
    let me = w.home.path().join(".ssh/id_ed25519");

    // sshd cannot start (error 1067): no login. Repair resets the logs folder's ACL and starts
    // sshd; the login works.
    w.pin().await;
    assert!(!w.openssh_login(&me).await.status.success(), "sshd is down");
    let r = w.run(&["repair", "-g", &w.rg, "-n", &w.name]).await;
    let whats: Vec<&str> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    assert_eq!(whats, ["logs.acl", "sshd.status"], "{r}");
    assert!(r["failed"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(r["drift"], serde_json::json!([]), "{r}");
    w.emu.guests().sync_listeners();
    let login = w.openssh_login(&me).await;
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );

    // Windows Server 2025: an administrator started the preinstalled sshd, but its rule covers
    // Domain and Private and the NIC is Public: the guest firewall drops the login. Repair adds
    // the Public profile (and makes sshd Automatic).
    let w = World::on(w.emu, narrowed).reachable().await;
    w.on_guest("Start-Service -Name sshd");
    w.pin().await;
    assert!(
        !w.openssh_login(&me).await.status.success(),
        "the firewall admitted"
    );
    let dry = w
        .run(&["repair", "-g", &w.rg, "-n", &w.name, "--dry-run"])
        .await;
    let profile = dry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"] == "firewall.profile")
        .unwrap_or_else(|| panic!("{dry}"));
    assert_eq!(profile["to"], "Domain, Private, Public", "{dry}");
    assert!(
        !w.openssh_login(&me).await.status.success(),
        "a dry run changed it"
    );
    let r = w.run(&["repair", "-g", &w.rg, "-n", &w.name]).await;
    assert_eq!(r["drift"], serde_json::json!([]), "{r}");
    let me = w.home.path().join(".ssh/id_ed25519");
    let login = w.openssh_login(&me).await;
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
}
