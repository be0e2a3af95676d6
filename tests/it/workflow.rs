//! The workflow verbs and runbooks (`enable-ssh`, `open-port`, `copy-key`, `check-prereqs`,
//! `jit`, `setup`) run by the real binary against the in-process emulator, whose Windows guest
//! model shows the end state: sshd running and Automatic, firewall rule on, key file UTF-8
//! without BOM with the SID-based ACL, host keys pinned.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use azssh::emulator::guest::{Guest, GuestConfig, ServiceStatus, SharedGuest, StartupType};
use azssh::emulator::guest_ssh::{
    ExecOutcome, GuestAccess, GuestPort, GuestSshHandle, GuestSshServer, reserve_guest_port,
};
use azssh::emulator::{
    Emulator, EmulatorConfig, EmulatorHandle, GuestFactory, GuestOutput, GuestRuntime, GuestSpec,
    PowerState, WindowsRelease,
};
use serde_json::Value;

use crate::harness::{Test, stdout_of};

/// `SharedGuest` behind the emulator's guest seam.
struct Runtime(Arc<SharedGuest>);

impl GuestRuntime for Runtime {
    fn run_powershell(&self, script: &str) -> GuestOutput {
        let out = self.0.run_powershell(script);
        GuestOutput {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }
    }
    fn install_openssh_extension(&self) -> Result<(), String> {
        self.0.install_openssh_extension()
    }
    fn sshd_listening(&self) -> bool {
        self.0.sshd_listening()
    }
}

impl GuestAccess for Runtime {
    fn host_key(&self) -> russh::keys::PrivateKey {
        self.0.host_key()
    }
    fn sshd_running(&self) -> bool {
        self.0.sshd_running()
    }
    fn is_authorized(&self, user: &str, key: &russh::keys::PublicKey) -> bool {
        self.0.is_authorized(user, key)
    }
    fn exec(&self, user: &str, command_line: &str) -> ExecOutcome {
        let out = self.0.exec(user, command_line);
        ExecOutcome {
            stdout: out.stdout.into_bytes(),
            stderr: out.stderr.into_bytes(),
            exit_code: out.exit_code as u32,
        }
    }
    fn sftp_root(&self) -> PathBuf {
        self.0.sftp_root()
    }
}

/// Makes the model guests and keeps them for the tests to inspect; `fail_capability` names VMs
/// whose `Add-WindowsCapability` fails with 0x800f0954 (no Windows Update access).
#[derive(Default)]
struct Guests {
    made: Mutex<HashMap<String, Arc<SharedGuest>>>,
    fail_capability: Mutex<Vec<String>>,
    root: PathBuf,
}

impl GuestFactory for Guests {
    fn create(&self, spec: &GuestSpec) -> Arc<dyn GuestRuntime> {
        let mut config = GuestConfig::new(
            7,
            spec.release.build(),
            &spec.computer_name,
            &spec.admin_username,
        );
        if self.fail_capability.lock().unwrap().contains(&spec.name) {
            config.capability_failure = Some(azssh::emulator::guest::E_NO_UPDATE_SOURCE);
        }
        let shared = Arc::new(SharedGuest::new(
            Guest::new(config),
            self.root.join(&spec.name),
        ));
        self.made
            .lock()
            .unwrap()
            .insert(spec.name.clone(), shared.clone());
        Arc::new(Runtime(shared))
    }
}

struct Env {
    handle: Arc<EmulatorHandle>,
    guests: Arc<Guests>,
    home: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        let home = tempfile::tempdir().unwrap();
        let guests = Arc::new(Guests {
            root: home.path().join("guests"),
            ..Default::default()
        });
        let handle = Emulator::start(EmulatorConfig {
            vms: 40,
            seed: 3,
            speed: 1000.0,
            throttling: false,
            guests: Some(guests.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
        Env {
            handle: Arc::new(handle),
            guests,
            home,
        }
    }

    /// The binary, pointed at the emulator, with its own home and config dir.
    fn azssh(&self, args: &[&str]) -> Test {
        Test::new()
            .args(args)
            .env("AZSSH_ARM_ENDPOINT", self.handle.endpoint())
            .env("AZSSH_ACCESS_TOKEN", self.handle.token().expose())
            .env("AZURE_SUBSCRIPTION_ID", self.handle.subscription_id())
            .env("AZSSH_OUTPUT", "json")
            .env("HOME", &self.home.path().display().to_string())
            .env(
                "XDG_CONFIG_HOME",
                &self.home.path().join("config").display().to_string(),
            )
    }

    /// Serves the VM's guest sshd on its loopback "public IP" (admitting only what its NSGs
    /// admit), as the emulator does once wired; the host key is the guest's at this moment.
    async fn serve_ssh(&self, rg: &str, name: &str, port: &GuestPort) -> GuestSshHandle {
        let ip = self
            .handle
            .vms()
            .into_iter()
            .find(|v| v.name == name)
            .and_then(|v| v.public_ip)
            .unwrap();
        self.handle.guest(rg, name).unwrap();
        let access: Arc<dyn GuestAccess> = Arc::new(Runtime(self.guest(name)));
        let (h, rg, name) = (self.handle.clone(), rg.to_string(), name.to_string());
        let admit: azssh::emulator::guest_ssh::Admission =
            Arc::new(move |source: std::net::IpAddr, port: u16| match source {
                std::net::IpAddr::V4(v4) => h.admits(&rg, &name, v4, port).unwrap_or(false),
                std::net::IpAddr::V6(_) => false,
            });
        // A listener just shut down closes asynchronously: retry the bind until it is free.
        let mut tries = 0;
        loop {
            match GuestSshServer::start((ip, port.port()).into(), access.clone(), admit.clone()) {
                Ok(handle) => return handle,
                Err(e) if tries < 200 => {
                    tries += 1;
                    tracing::debug!("guest sshd bind: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("guest sshd bind: {e}"),
            }
        }
    }

    fn known_hosts(&self) -> PathBuf {
        self.home.path().join("config/azssh/known_hosts")
    }

    /// A VM of `release` in `power` state, with (or without) a public IP.
    fn pick(
        &self,
        release: Option<WindowsRelease>,
        power: PowerState,
        public: bool,
    ) -> (String, String) {
        self.handle
            .vms()
            .into_iter()
            .find(|v| {
                release.is_none_or(|r| v.release == r)
                    && v.power_state == power
                    && v.public_ip.is_some() == public
                    && !self.guests.made.lock().unwrap().contains_key(&v.name)
            })
            .map(|v| (v.resource_group, v.name))
            .unwrap_or_else(|| panic!("no {release:?} VM {power:?} public={public} in the world"))
    }

    fn guest(&self, name: &str) -> Arc<SharedGuest> {
        self.guests.made.lock().unwrap()[name].clone()
    }

    fn key(&self) -> (PathBuf, String) {
        let path = self.home.path().join("id_ed25519");
        let k =
            azssh::ssh::keys::generate_key(&path, azssh::ssh::keys::KeyKind::Ed25519, "me@laptop")
                .unwrap();
        (k.public, k.fingerprint)
    }
}

/// Runs the binary off the async runtime (the emulator serves on it meanwhile).
async fn run(t: Test) -> Value {
    let out = tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let text = stdout_of(&out);
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn assert_sshd_ready(g: &SharedGuest) {
    let guest = g.lock();
    let sshd = guest.sshd().expect("sshd installed");
    assert_eq!(sshd.status, ServiceStatus::Running);
    assert_eq!(sshd.startup, StartupType::Automatic);
    assert!(guest.firewall_allows(22), "firewall rule on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_ssh_uses_the_capability_on_2022_and_is_idempotent() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2022), PowerState::Running, true);
    let first = run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    assert_eq!(first["method"], "capability");
    assert_eq!(first["changed"], true);
    assert_eq!(first["sshd"], "Running");
    assert_eq!(first["startup"], "Automatic");
    assert!(!first["host_keys"].as_array().unwrap().is_empty());
    assert_sshd_ready(&env.guest(&name));
    let again = run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    assert_eq!(again["changed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_ssh_uses_the_extension_on_2016_then_repairs_the_service() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2016), PowerState::Running, true);
    let r = run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    assert_eq!(r["method"], "extension");
    assert_eq!(r["changed"], true);
    assert_sshd_ready(&env.guest(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_without_windows_update_fails_with_the_documented_fix() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2019), PowerState::Running, true);
    env.guests
        .fail_capability
        .lock()
        .unwrap()
        .push(name.clone());
    let t = env
        .azssh(&["enable-ssh", "-g", &rg, "-n", &name])
        .status(1)
        .stderr_contains("0x800f0954")
        .stderr_contains("Features on Demand");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    // The documented way out: the extension.
    let r = run(env.azssh(&[
        "enable-ssh",
        "-g",
        &rg,
        "-n",
        &name,
        "--method",
        "extension",
    ]))
    .await;
    assert_eq!(r["method"], "extension");
    assert_sshd_ready(&env.guest(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_vm_is_refused_or_started() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Deallocated, true);
    let t = env
        .azssh(&["enable-ssh", "-g", &rg, "-n", &name])
        .status(1)
        .stderr_contains("is deallocated")
        .stderr_contains("--start");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let (public, _) = env.key();
    let t = env
        .azssh(&[
            "setup",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            "10.0.0.0/8",
            "--no-start",
        ])
        .args(&["--key", &public.display().to_string()])
        .status(1)
        .stderr_contains("step `running` failed")
        .stderr_contains("is deallocated");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let r = run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name, "--start"])).await;
    assert_eq!(r["started"], true);
    assert_eq!(r["sshd"], "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_key_writes_utf8_without_bom_with_the_sid_acl_once() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2025), PowerState::Running, true);
    let (public, fingerprint) = env.key();
    let public = public.display().to_string();
    run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    let first = run(env.azssh(&["copy-key", "-g", &rg, "-n", &name, "--key", &public])).await;
    assert_eq!(first["added"], true);
    assert_eq!(first["fingerprint"], fingerprint.as_str());
    let path = first["path"].as_str().unwrap().to_string();
    assert!(path.ends_with("administrators_authorized_keys"), "{path}");
    {
        let guest = env.guest(&name);
        let g = guest.lock();
        let file = g.file(&path).expect("key file");
        assert!(!file.bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");
        let text = String::from_utf8(file.bytes.clone()).expect("utf-8");
        assert_eq!(text.matches("ssh-ed25519 ").count(), 1);
        assert!(!file.acl.inherited);
        let sids: Vec<&str> = file.acl.grants.keys().map(String::as_str).collect();
        assert_eq!(sids, ["S-1-5-18", "S-1-5-32-544"]);
    }
    let again = run(env.azssh(&["copy-key", "-g", &rg, "-n", &name, "--key", &public])).await;
    assert_eq!(again["added"], false, "key already present");
    let text =
        String::from_utf8(env.guest(&name).lock().file(&path).unwrap().bytes.clone()).unwrap();
    assert_eq!(text.matches("ssh-ed25519 ").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_port_reports_priority_moves_refuses_taken_ones_and_is_idempotent() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, true);
    let src = "203.0.113.7/32";
    let first = run(env.azssh(&["open-port", "-g", &rg, "-n", &name, "--source", src])).await;
    assert_eq!(first["name"], "allow-SSH");
    assert_eq!(first["changed"], true);
    let priority = first["priority"].as_i64().unwrap();
    let again = run(env.azssh(&["open-port", "-g", &rg, "-n", &name, "--source", src])).await;
    assert_eq!(
        (again["changed"].clone(), again["priority"].as_i64()),
        (Value::Bool(false), Some(priority))
    );

    // Another rule asking for the taken priority is refused, naming the holder.
    let p = priority.to_string();
    let t = env
        .azssh(&[
            "open-port",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            src,
            "--port",
            "3389",
            "--priority",
            &p,
        ])
        .status(1)
        .stderr_contains(&format!("priority {priority} is taken by rule `allow-SSH`"));
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    // Without a priority it moves on and says so.
    let rdp = run(env.azssh(&[
        "open-port",
        "-g",
        &rg,
        "-n",
        &name,
        "--source",
        src,
        "--port",
        "3389",
    ]))
    .await;
    assert_eq!(rdp["name"], "allow-3389");
    let closed = script(
        &env,
        &format!(
            r#"let v = vm("{rg}", "{name}");
               let first = close_port(v, "allow-3389");
               let second = close_port(v, "allow-3389");
               [first, second, nsg_rules(v).filter(|r| r.name == "allow-3389").len()]"#
        ),
    )
    .await;
    assert_eq!(closed, serde_json::json!([true, false, 0]));
    assert!(rdp["priority"].as_i64().unwrap() > 1000);
    assert_eq!(rdp["priority_moved_from"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_port_needs_a_valid_source_and_warns_for_the_internet() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, true);
    let t = env.azssh(&["open-port", "-g", &rg, "-n", &name]).status(2);
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let t = env
        .azssh(&[
            "open-port",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            "1.2.3.4;rm",
        ])
        .status(2)
        .stderr_contains("not a valid rule source");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let t = env
        .azssh(&["open-port", "-g", &rg, "-n", &name, "--source", "*"])
        .stderr_contains("open to the whole Internet");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    // Scripts catch the same refusals as values.
    let kinds = script(
        &env,
        &format!(
            r#"let v = vm("{rg}", "{name}");
               let kinds = [];
               for o in [#{{}}, #{{source: "$(whoami)"}}, #{{source: "10.0.0.0/8", priority: 50}}] {{
                   try {{ open_port(v, o); kinds.push("opened"); }} catch (e) {{ kinds.push(e.kind); }}
               }}
               kinds"#
        ),
    )
    .await;
    assert_eq!(
        kinds,
        serde_json::json!([
            "script.bad_argument",
            "azure.invalid_source",
            "script.bad_argument"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prereqs_lists_what_is_missing() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, false);
    let r = run(env.azssh(&[
        "run",
        "check-prereqs",
        "--arg",
        &format!("resource_group={rg}"),
        "--arg",
        &format!("name={name}"),
    ]))
    .await;
    assert_eq!(r["ready"], false);
    let problems: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(problems.contains(&"public_ip"), "{problems:?}");
}

/// Runs an inline script against the emulator and returns its JSON result.
async fn script(env: &Env, text: &str) -> Value {
    let t = env.azssh(&["run", "inline.rhai"]).file("inline.rhai", text);
    run(t).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_host_keys_pins_every_address_and_never_overwrites_a_changed_key() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2022), PowerState::Running, true);
    run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    let pin = format!("let v = vm(\"{rg}\", \"{name}\"); pin_host_keys(v)");
    let first = script(&env, &pin).await;
    let hosts: Vec<&str> = first["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(hosts.len(), 2, "public and private address: {hosts:?}");
    assert!(first["added"].as_i64().unwrap() >= 2);
    let pinned = std::fs::read_to_string(env.known_hosts()).unwrap();
    for h in &hosts {
        assert!(
            pinned.lines().any(|l| l.starts_with(&format!("{h} "))),
            "{h} in\n{pinned}"
        );
    }
    let again = script(&env, &pin).await;
    assert_eq!(again["added"], 0);

    // A rebuilt VM: Azure reports new keys, which must not silently replace the pinned ones.
    env.guest(&name).lock().rebuild_host_keys();
    let t = env
        .azssh(&["run", "inline.rhai"])
        .file("inline.rhai", &pin)
        .stderr_contains("changed");
    let changed = run(t).await;
    assert_eq!(changed["added"], 0);
    assert_eq!(changed["conflicts"].as_array().unwrap().len(), hosts.len());
    assert_eq!(std::fs::read_to_string(env.known_hosts()).unwrap(), pinned);

    let replace = format!("let v = vm(\"{rg}\", \"{name}\"); pin_host_keys(v, #{{replace: true}})");
    let replaced = script(&env, &replace).await;
    assert!(replaced["conflicts"].as_array().unwrap().is_empty());
    assert_ne!(std::fs::read_to_string(env.known_hosts()).unwrap(), pinned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_key_for_a_standard_user_goes_to_their_profile() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2019), PowerState::Running, true);
    let (public, _) = env.key();
    run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    env.guest(&name).lock().add_user("nina", false, true);
    let k = run(env.azssh(&[
        "copy-key",
        "-g",
        &rg,
        "-n",
        &name,
        "--key",
        &public.display().to_string(),
        "--local-user",
        "nina",
    ]))
    .await;
    assert_eq!(k["admin"], false);
    let path = k["path"].as_str().unwrap();
    assert!(
        path.to_lowercase().ends_with(r"nina\.ssh\authorized_keys"),
        "{path}"
    );
    let t = env
        .azssh(&[
            "copy-key",
            "-g",
            &rg,
            "-n",
            &name,
            "--key",
            &public.display().to_string(),
            "--local-user",
            "bad'user",
        ])
        .status(2)
        .stderr_contains("not a valid windows user name");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jit_requests_access_and_waits_until_it_is_active() {
    let env = Env::start().await;
    let found = script(
        &env,
        r#"let jit = vms().filter(|v| v.power_state == "running" && nsg_rules(v).some(|r| r.name.starts_with("SecurityCenter-JITRule") && r.name.contains(v.name)));
           let plain = vms().filter(|v| v.power_state == "running" && !nsg_rules(v).some(|r| r.name.starts_with("SecurityCenter-JITRule")));
           #{jit: [jit[0].resource_group, jit[0].name], plain: [plain[0].resource_group, plain[0].name]}"#,
    )
    .await;
    let (rg, name) = (
        found["jit"][0].as_str().unwrap(),
        found["jit"][1].as_str().unwrap(),
    );
    let r = run(env.azssh(&[
        "jit",
        "-g",
        rg,
        "-n",
        name,
        "--source",
        "203.0.113.7",
        "--duration",
        "PT1H",
    ]))
    .await;
    assert_eq!(r["access"]["status"], "Initiated");
    assert_eq!(r["access"]["source"], "203.0.113.7");
    assert_eq!(r["access"]["port"], 22);

    let (rg, name) = (
        found["plain"][0].as_str().unwrap(),
        found["plain"][1].as_str().unwrap(),
    );
    let t = env
        .azssh(&["jit", "-g", rg, "-n", name])
        .status(1)
        .stderr_contains("no just-in-time policy covers")
        .stderr_contains("Defender for Cloud");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let t = env
        .azssh(&["jit", "-g", rg, "-n", name, "--duration", "soon"])
        .status(2)
        .stderr_contains("ISO 8601");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_without_a_public_ip_says_how_to_reach_the_private_one() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, false);
    let (public, _) = env.key();
    let t = env
        .azssh(&[
            "setup",
            "-g",
            &rg,
            "-n",
            &name,
            "--local-user",
            "azureuser",
            "--source",
            "203.0.113.7",
            "--key",
            &public.display().to_string(),
        ])
        .status(1)
        .stderr_contains("step `address` failed")
        .stderr_contains("has no public IP address")
        .stderr_contains("prefer_private_ip");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_port_uses_the_subnet_nsg_when_the_nic_has_none() {
    let env = Env::start().await;
    let r = script(
        &env,
        r#"let scopes = [];
           for v in vms().filter(|v| v.power_state == "running").extract(0, 8) {
               let rule = open_port(v, #{source: "VirtualNetwork", port: 5986});
               scopes.push(rule.scope);
               if !v.nsg_ids.contains(rule.nsg_id) { throw `rule went to ${rule.nsg_id}, not one of ${v.nsg_ids}`; }
           }
           scopes"#,
    )
    .await;
    let scopes: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        scopes.contains(&"nic") && scopes.contains(&"subnet"),
        "{scopes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_does_the_whole_workflow_then_refuses_a_rebuilt_host() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2019), PowerState::Running, true);
    let (public, fingerprint) = env.key();
    let port = reserve_guest_port(0).unwrap();
    let mut sshd = env.serve_ssh(&rg, &name, &port).await;
    let ssh_port = port.port().to_string();
    let setup = |env: &Env| {
        env.azssh(&[
            "setup",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            "127.0.0.0/8",
            "--key",
            &public.display().to_string(),
        ])
        .env("AZSSH_SSH_PORT", &ssh_port)
    };
    let report = run(setup(&env)).await;
    assert_eq!(report["ok"], true);
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "running",
            "address",
            "enable",
            "open-port",
            "pin-host-keys",
            "ssh"
        ]
    );
    let enable = &report["steps"][2]["detail"];
    assert_eq!(enable["method"], "capability");
    assert_eq!(enable["key_added"], true);
    assert_eq!(enable["key_fingerprint"], fingerprint.as_str());
    let ssh = &report["steps"][5]["detail"];
    let user = report["user"].as_str().unwrap().to_lowercase();
    let whoami = ssh["whoami"].as_str().unwrap().to_lowercase();
    assert!(whoami.ends_with(&format!("\\{user}")), "{ssh}");
    assert!(!ssh["hostname"].as_str().unwrap().is_empty());
    assert_sshd_ready(&env.guest(&name));

    // Again: nothing to change, and the key is not added twice.
    let again = run(setup(&env)).await;
    assert_eq!(again["steps"][2]["detail"]["changed"], false);
    assert_eq!(again["steps"][2]["detail"]["key_added"], false);
    assert_eq!(again["steps"][3]["detail"]["changed"], false);

    // The VM is rebuilt: new host keys. Pinning reports it and the SSH step refuses the host.
    env.guest(&name).lock().rebuild_host_keys();
    sshd.shutdown();
    drop(sshd);
    sshd = env.serve_ssh(&rg, &name, &port).await;
    let t = setup(&env)
        .status(1)
        .stderr_contains("step `ssh` failed")
        .stderr_contains("host key of");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    drop(sshd);
}
