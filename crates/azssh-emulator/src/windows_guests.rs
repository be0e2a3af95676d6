//! Wires the emulator's parts together: the `GuestFactory` that gives each VM its Windows guest
//! model (`guest.rs`), keeps the VM's embedded sshd listener (`guest_ssh`) in step with the
//! guest's sshd service, and lets that listener ask the ARM side's NSGs who may connect.
//!
//! How clients reach the guests without root: every guest listens on the same unprivileged port
//! P on its own loopback "public IP" (127.77.x.y — Linux routes all of 127/8 to `lo`). P is chosen
//! once per emulator and exported as `AZSSH_SSH_PORT`, which azssh's `ssh()` uses instead of 22.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use russh::keys::{PrivateKey, PublicKey};

use super::guest::{Guest, GuestConfig, SharedGuest};
use super::guest_ssh::{
    Admission, ExecOutcome, GUEST_SSHD_PORT, GuestAccess, GuestPort, GuestSshSwitch,
    reserve_guest_port,
};
use super::world::{GuestFactory, GuestOutput, GuestRuntime, GuestSpec};
use super::{Emulator, EmulatorConfig, EmulatorError, EmulatorHandle};

/// Evaluates the VM's NSGs for a connection: `(resource_group, vm, source, port)`.
pub type NsgCheck = Arc<dyn Fn(&str, &str, Ipv4Addr, u16) -> bool + Send + Sync>;

/// The guests of one emulator: created on first use, kept for inspection by tests and the demo.
pub struct WindowsGuests {
    seed: u64,
    port: GuestPort,
    sandbox: tempfile::TempDir,
    nsg: OnceLock<NsgCheck>,
    /// VM names (lower case) whose capability install fails with this HRESULT.
    capability_failures: Mutex<HashMap<String, u32>>,
    guests: Mutex<HashMap<(String, String), Arc<WiredGuest>>>,
    me: Weak<WindowsGuests>,
}

impl WindowsGuests {
    pub fn new(seed: u64) -> std::io::Result<Arc<Self>> {
        let port = reserve_guest_port(0)?;
        let sandbox = tempfile::Builder::new()
            .prefix("azssh-emulator-")
            .tempdir()?;
        Ok(Arc::new_cyclic(|me| WindowsGuests {
            seed,
            port,
            sandbox,
            nsg: OnceLock::new(),
            capability_failures: Mutex::new(HashMap::new()),
            guests: Mutex::new(HashMap::new()),
            me: me.clone(),
        }))
    }

    /// The port every guest's sshd listens on (`AZSSH_SSH_PORT`).
    pub fn ssh_port(&self) -> u16 {
        self.port.port()
    }

    /// Makes `Add-WindowsCapability` fail on this VM (e.g. `0x800f0954`, no Windows Update
    /// access), for failure-path tests. Takes effect for guests not created yet.
    pub fn fail_capability(&self, vm: &str, hresult: u32) {
        lock(&self.capability_failures).insert(vm.to_lowercase(), hresult);
    }

    /// A VM's guest, if it was created (by a RunCommand, an extension, or `EmulatorHandle::guest`).
    pub fn shared(&self, resource_group: &str, vm: &str) -> Option<Arc<SharedGuest>> {
        lock(&self.guests)
            .get(&(resource_group.to_lowercase(), vm.to_lowercase()))
            .map(|g| g.shared.clone())
    }

    /// Re-reads every guest's sshd state: after a test changed a guest behind the ARM side's back.
    pub fn sync_listeners(&self) {
        for g in lock(&self.guests).values() {
            g.sync();
        }
    }
}

impl GuestFactory for WindowsGuests {
    fn ssh_port(&self) -> Option<u16> {
        Some(self.port.port())
    }

    fn create(&self, spec: &GuestSpec) -> Arc<dyn GuestRuntime> {
        let mut config = GuestConfig::new(
            self.seed ^ hash(&spec.name),
            spec.release.build(),
            &spec.computer_name,
            &spec.admin_username,
        );
        config.capability_failure = lock(&self.capability_failures)
            .get(&spec.name.to_lowercase())
            .copied();
        let root: PathBuf = self
            .sandbox
            .path()
            .join(spec.resource_group.to_lowercase())
            .join(spec.name.to_lowercase());
        let _ = std::fs::create_dir_all(root.join("C"));
        let shared = Arc::new(SharedGuest::new(Guest::new(config), root));
        let bind = spec
            .public_ip
            .map(|ip| SocketAddr::from((ip, self.port.port())));
        // The private address's loopback image (`bastion.rs`): what a bastion or a jump host
        // inside the VNet connects to.
        let private = crate::bastion::private_image(spec.private_ip)
            .map(|ip| GuestSshSwitch::new(SocketAddr::from((ip, self.port.port()))));
        let guest = Arc::new(WiredGuest {
            shared,
            switch: bind.map(GuestSshSwitch::new),
            admit: self.admission(&spec.resource_group, &spec.name),
            private,
            private_admit: self.private_admission(
                &spec.resource_group,
                &spec.name,
                spec.private_ip,
            ),
        });
        lock(&self.guests).insert(
            (spec.resource_group.to_lowercase(), spec.name.to_lowercase()),
            guest.clone(),
        );
        guest
    }
}

impl WindowsGuests {
    fn admission(&self, resource_group: &str, vm: &str) -> Admission {
        let me = self.me.clone();
        let (rg, vm) = (resource_group.to_string(), vm.to_string());
        Arc::new(move |source: IpAddr, port: u16| {
            let IpAddr::V4(v4) = source else { return false };
            me.upgrade()
                .and_then(|g| g.nsg.get().cloned())
                .is_some_and(|check| check(&rg, &vm, v4, port))
        })
    }

    /// Admission at the private image: the NSG sees the peer mapped into the VNet
    /// (`bastion::vnet_source`), never a loopback "Internet" address.
    fn private_admission(&self, resource_group: &str, vm: &str, private_ip: Ipv4Addr) -> Admission {
        let me = self.me.clone();
        let (rg, vm) = (resource_group.to_string(), vm.to_string());
        Arc::new(move |source: IpAddr, port: u16| {
            let IpAddr::V4(v4) = source else { return false };
            let source = crate::bastion::vnet_source(v4, private_ip);
            me.upgrade()
                .and_then(|g| g.nsg.get().cloned())
                .is_some_and(|check| check(&rg, &vm, source, port))
        })
    }
}

/// One VM's guest plus its SSH listeners.
struct WiredGuest {
    shared: Arc<SharedGuest>,
    /// `None` for VMs without a public IP: nothing answers SSH from outside.
    switch: Option<GuestSshSwitch>,
    admit: Admission,
    /// The listener on the private address's loopback image (bastions, jump hosts).
    private: Option<GuestSshSwitch>,
    private_admit: Admission,
}

impl WiredGuest {
    fn sync(&self) {
        let access: Arc<dyn GuestAccess> = Arc::new(Access(self.shared.clone()));
        for (switch, admit) in [
            (&self.switch, &self.admit),
            (&self.private, &self.private_admit),
        ] {
            if let Some(switch) = switch
                && let Err(e) = switch.sync(&access, admit)
            {
                tracing::warn!("emulated sshd could not listen: {e}");
            }
        }
    }
}

impl GuestRuntime for WiredGuest {
    fn run_powershell(&self, script: &str, params: &[(String, String)]) -> GuestOutput {
        let out = self.shared.run_powershell_with(script, params);
        self.sync();
        out
    }

    fn install_openssh_extension(&self) -> Result<(), String> {
        let result = self.shared.install_openssh_extension();
        self.sync();
        result
    }

    fn sshd_listening(&self) -> bool {
        self.shared.sshd_listening()
    }
}

/// The SSH side's view of a guest.
struct Access(Arc<SharedGuest>);

impl GuestAccess for Access {
    fn host_key(&self) -> PrivateKey {
        self.0.host_key()
    }
    fn sshd_running(&self) -> bool {
        self.0.sshd_running()
    }
    fn is_authorized(&self, user: &str, key: &PublicKey) -> bool {
        self.0.is_authorized(user, key)
    }
    fn exec(&self, user: &str, command_line: &str) -> ExecOutcome {
        let out = self.0.exec(user, command_line);
        ExecOutcome {
            stdout: out.stdout.into_bytes(),
            stderr: out.stderr.into_bytes(),
            exit_code: u32::try_from(out.exit_code).unwrap_or(1),
        }
    }
    fn sftp_root(&self) -> PathBuf {
        self.0.sftp_root()
    }
}

/// A running emulator with Windows guests: what `azssh emulator`, `azssh demo` and the
/// end-to-end tests use.
pub struct WindowsEmulator {
    pub handle: Arc<EmulatorHandle>,
    pub guests: Arc<WindowsGuests>,
}

impl WindowsEmulator {
    pub async fn start(mut config: EmulatorConfig) -> Result<WindowsEmulator, EmulatorError> {
        let guests = WindowsGuests::new(config.seed).map_err(|source| EmulatorError::Bind {
            addr: "127.77.255.254:0 (the guests' SSH port)".into(),
            source,
        })?;
        config.guests = Some(guests.clone());
        let handle = Arc::new(Emulator::start(config).await?);
        let weak = Arc::downgrade(&handle);
        let check: NsgCheck = Arc::new(move |rg: &str, vm: &str, source: Ipv4Addr, _port: u16| {
            weak.upgrade()
                .and_then(|h| h.admits(rg, vm, source, GUEST_SSHD_PORT))
                .unwrap_or(false)
        });
        let _ = guests.nsg.set(check);
        Ok(WindowsEmulator { handle, guests })
    }

    /// The environment a client needs: the three ARM variables plus `AZSSH_SSH_PORT`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AZSSH_ARM_ENDPOINT".into(),
                self.handle.endpoint().to_string(),
            ),
            (
                "AZSSH_ACCESS_TOKEN".into(),
                self.handle.token().expose().clone(),
            ),
            (
                "AZURE_SUBSCRIPTION_ID".into(),
                self.handle.subscription_id().to_string(),
            ),
            ("AZSSH_SSH_PORT".into(), self.guests.ssh_port().to_string()),
        ]
        .into_iter()
        .chain(self.handle.bastion_env())
        .collect()
    }

    /// The lines `azssh emulator` prints, ready for `eval`.
    pub fn export_lines(&self) -> Vec<String> {
        let mut lines = self.handle.export_lines();
        lines.push(format!("export AZSSH_SSH_PORT={}", self.guests.ssh_port()));
        lines
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A stable per-VM seed (host keys differ between VMs, and stay the same between runs).
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
