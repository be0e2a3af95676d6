//! The workflow verbs and runbooks (`enable-ssh`, `open-port`, `copy-key`, `check-prereqs`,
//! `jit`, `setup`) run by the real binary against the in-process emulator, whose Windows guest
//! model shows the end state: sshd running and Automatic, firewall rule on, key file UTF-8
//! without BOM with the SID-based ACL, host keys pinned.
//!
//! The emulator starts through the shared fixture (`Emu::builder()`), with the guest model
//! (`SharedGuest`) plugged into its guest seam by the tests (`guest_factory`); they serve a
//! guest's sshd on its loopback "public IP" with `GuestSshServer`, admitting only what the VM's
//! NSGs admit, so they control per-VM faults (a failing capability install) and the moment a
//! rebuilt host key is served.
#![allow(clippy::unwrap_used)]

mod close_port;
mod nsg;
mod nsg_etag;
mod setup;
mod variants;
mod verbs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use azssh::emulator::guest::{Guest, GuestConfig, ServiceStatus, SharedGuest, StartupType};
use azssh::emulator::guest_ssh::{
    ExecOutcome, GuestAccess, GuestPort, GuestSshHandle, GuestSshServer, reserve_guest_port,
};
use azssh::emulator::{
    EmulatorHandle, GuestFactory, GuestOutput, GuestRuntime, GuestSpec, PowerState, WindowsRelease,
};
use azssh_emulator::testing::Emu;
use serde_json::Value;

use crate::harness::{Test, stdout_of};

/// `SharedGuest` behind the emulator's guest seam.
struct Runtime(Arc<SharedGuest>);

impl GuestRuntime for Runtime {
    fn run_powershell(&self, script: &str, params: &[(String, String)]) -> GuestOutput {
        let out = self.0.run_powershell_with(script, params);
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
    // Declared last: the servers stop when the fixture drops.
    emu: Emu,
}

impl Env {
    async fn start() -> Env {
        let home = tempfile::tempdir().unwrap();
        let guests = Arc::new(Guests {
            root: home.path().join("guests"),
            ..Default::default()
        });
        let emu = Emu::builder()
            .vms(40)
            .seed(3)
            .guest_factory(guests.clone())
            .start()
            .await;
        Env {
            handle: emu.handle.clone(),
            guests,
            home,
            emu,
        }
    }

    /// The binary, pointed at the emulator, with its own home and config dir.
    fn azssh(&self, args: &[&str]) -> Test {
        Test::azssh(&self.emu, args)
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

    /// A VM of `release` in `power` state, with (or without) a public IP, outside any
    /// just-in-time policy (under one, `open_port` requests access instead of adding a rule).
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
                    && !v.jit
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

/// The per-source rule `open-port` writes for port 5986 from 127.0.0.1 (`port_verb`).
const RULE: &str = "azssh-tcp-5986-127-0-0-1-32";

/// `azssh open-port` or `close-port` of port 5986 from 127.0.0.1 for one VM.
fn port_verb(env: &Env, verb: &str, rg: &str, name: &str) -> Test {
    env.azssh(&[
        verb,
        "-g",
        rg,
        "-n",
        name,
        "--source",
        "127.0.0.1",
        "--port",
        "5986",
    ])
}

/// The destinations of `RULE` on the VM's NSGs, `None` when no NSG holds it.
async fn destinations(env: &Env, rg: &str, name: &str) -> Option<Vec<String>> {
    let r = script(
        env,
        &format!(
            r#"let found = nsg_rules(vm("{rg}", "{name}")).filter(|r| r.name == "{RULE}");
               if found.len() == 0 {{ () }} else {{ found[0].destination }}"#
        ),
    )
    .await;
    r.as_str()
        .map(|d| d.split(',').map(str::to_string).collect())
}

/// Two running VMs with public IPs whose only NSG is their subnet's (shared):
/// `(resource group, a, b, a's private IP, b's private IP)`.
async fn subnet_pair(env: &Env) -> (String, String, String, String, String) {
    let pair = script(
        env,
        r#"let found = ();
           let all = vms().filter(|v| v.nsg_ids.len() == 1 && v.public_ip != ());
           for a in all {
               for b in all {
                   if found == () && a.name != b.name && a.nsg_ids[0] == b.nsg_ids[0]
                       && !a.nsg_ids[0].ends_with(`${a.name}-nsg`) && a.power_state == "running" {
                       found = [a.resource_group, a.name, b.name, a.private_ip, b.private_ip];
                   }
               }
           }
           found"#,
    )
    .await;
    let s = |i: usize| {
        pair[i]
            .as_str()
            .unwrap_or_else(|| panic!("no two VMs behind one subnet NSG: {pair}"))
            .to_string()
    };
    (s(0), s(1), s(2), s(3), s(4))
}

/// Runs an inline script against the emulator and returns its JSON result.
async fn script(env: &Env, text: &str) -> Value {
    let t = env.azssh(&["run", "inline.rhai"]).file("inline.rhai", text);
    run(t).await
}
