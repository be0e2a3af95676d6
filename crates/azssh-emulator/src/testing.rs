//! The one fixture every test and bench starts the emulator with (feature `testing`):
//! `Emu::builder().vms(40).seed(3).faults(spec).speed(x).start().await`, then `.env()` for the
//! client's environment and `.ready_vm()` for a VM the SSH workflow can run on. It knows nothing
//! of the product: running `azssh` with `.env()` is the product's test harness's job.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::windows_guests::{WindowsEmulator, WindowsGuests};
use crate::{
    BastionSummary, Emulator, EmulatorConfig, EmulatorError, EmulatorHandle, FaultSpec, PowerState,
    VmSummary, WindowsRelease,
};

/// How to start an `Emu`. Defaults suit tests: 12 VMs, seed 1, no faults, durations divided by
/// 1000, no ARM throttling, Windows guests wired in.
#[derive(Clone)]
pub struct EmuBuilder {
    config: EmulatorConfig,
    guests: bool,
}

impl EmuBuilder {
    pub fn vms(mut self, vms: usize) -> Self {
        self.config.vms = vms;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }
    pub fn faults(mut self, faults: FaultSpec) -> Self {
        self.config.faults = faults;
        self
    }
    /// Divides Azure's durations (RunCommand ≈ 20 s, start ≈ 30 s).
    pub fn speed(mut self, speed: f64) -> Self {
        self.config.speed = speed;
        self
    }
    /// ARM's per-subscription token buckets (429 when empty); off by default.
    pub fn throttling(mut self, on: bool) -> Self {
        self.config.throttling = on;
        self
    }
    /// The world to build. The fixture keeps `WorldKind::Tidy` as its default (unlike `azssh
    /// emulator`, whose default is realistic) so that tests written for the uniform VM stay
    /// valid; tests of the variants ask for `WorldKind::Realistic`.
    pub fn world(mut self, world: crate::WorldKind) -> Self {
        self.config.world = world;
        self
    }
    pub fn page_size(mut self, page_size: usize) -> Self {
        self.config.page_size = page_size;
        self
    }
    /// Azure Bastion: bastion hosts (one of each SKU verdict), a peered hub VNet, five private-only
    /// VMs appended after the seeded ones, the TLS data plane and its CA (`AZSSH_CA_BUNDLE`).
    /// Off by default here (so VM counts stay `vms(n)`); see /work/wt/bastion-contract.md.
    pub fn bastions(mut self, on: bool) -> Self {
        self.config.bastions = on;
        self
    }
    /// Without guests RunCommand answers that no guest is wired in and no sshd listens: the ARM
    /// side alone, as the fleet tests and benches measure it.
    pub fn guests(mut self, on: bool) -> Self {
        self.guests = on;
        self
    }

    /// Guests of the test's own making (a double that echoes scripts, or model guests the test
    /// keeps handles to and faults per VM) instead of the wired Windows guests: RunCommand and
    /// the OpenSSH extension reach `factory`, and no guest sshd is served (a test that needs
    /// one serves it itself), so `.guests()` and `AZSSH_SSH_PORT` are absent.
    pub fn guest_factory(mut self, factory: Arc<dyn crate::GuestFactory>) -> Self {
        self.config.guests = Some(factory);
        self.guests = false;
        self
    }

    /// Starts on the current Tokio runtime.
    pub async fn try_start(self) -> Result<Emu, EmulatorError> {
        if self.guests {
            let w = WindowsEmulator::start(self.config).await?;
            Ok(Emu {
                handle: w.handle,
                guests: Some(w.guests),
                _rt: None,
            })
        } else {
            Ok(Emu {
                handle: Arc::new(Emulator::start(self.config).await?),
                guests: None,
                _rt: None,
            })
        }
    }

    /// Starts on the current Tokio runtime; a fixture that cannot start fails the test.
    pub async fn start(self) -> Emu {
        match self.try_start().await {
            Ok(emu) => emu,
            Err(e) => panic!("the emulator did not start: {e}"),
        }
    }

    /// Starts on a runtime of its own that serves until the `Emu` is dropped: for synchronous
    /// tests that run the `azssh` binary meanwhile.
    pub fn start_blocking(self) -> Emu {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("no runtime for the emulator: {e}"),
        };
        let mut emu = rt.block_on(self.start());
        emu._rt = Some(rt);
        emu
    }
}

/// A running emulator. Dropping it stops the servers (then its own runtime, if it has one).
pub struct Emu {
    pub handle: Arc<EmulatorHandle>,
    guests: Option<Arc<WindowsGuests>>,
    // Declared last: dropped after the handle, so the servers shut down on a live runtime.
    _rt: Option<tokio::runtime::Runtime>,
}

impl Emu {
    pub fn builder() -> EmuBuilder {
        EmuBuilder {
            config: EmulatorConfig {
                speed: 1000.0,
                throttling: false,
                ..EmulatorConfig::default()
            },
            guests: true,
        }
    }

    /// The Windows guests (the builder's `guests(true)`, the default).
    pub fn guests(&self) -> &Arc<WindowsGuests> {
        match &self.guests {
            Some(g) => g,
            None => panic!("this Emu was built with `guests(false)`"),
        }
    }

    /// The variables `azssh emulator` exports: `AZSSH_ARM_ENDPOINT`, `AZSSH_ACCESS_TOKEN`,
    /// `AZURE_SUBSCRIPTION_ID`, `AZSSH_SSH_PORT` when guests are wired in, and with bastions
    /// `AZSSH_CA_BUNDLE` and `AZSSH_PRIVATE_NET`.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "AZSSH_ARM_ENDPOINT".to_string(),
                self.handle.endpoint().to_string(),
            ),
            (
                "AZSSH_ACCESS_TOKEN".to_string(),
                self.handle.token().expose().clone(),
            ),
            (
                "AZURE_SUBSCRIPTION_ID".to_string(),
                self.handle.subscription_id().to_string(),
            ),
        ];
        if let Some(g) = &self.guests {
            env.push(("AZSSH_SSH_PORT".to_string(), g.ssh_port().to_string()));
        }
        env.extend(self.handle.bastion_env());
        env
    }

    /// The private-only VM whose `emulator-variant` tag is `tag` (`.bastions(true)`):
    /// `private-bastion`, `private-peered-bastion`, `private-basic-bastion`,
    /// `private-no-tunneling`, `private-developer-bastion`.
    pub fn private_vm_tagged(&self, tag: &str) -> VmSummary {
        match self.handle.vms().into_iter().find(|v| {
            self.handle
                .vm_variant(&v.resource_group, &v.name)
                .is_some_and(|t| t == tag)
        }) {
            Some(v) => v,
            None => panic!("no private VM tagged `{tag}`: build the Emu with `.bastions(true)`"),
        }
    }

    /// A running private-only VM behind a Standard bastion with tunneling in its own VNet.
    pub fn private_vm(&self) -> VmSummary {
        self.private_vm_tagged("private-bastion")
    }

    /// A running private-only VM reachable through a Premium bastion in a peered hub VNet.
    pub fn peered_private_vm(&self) -> VmSummary {
        self.private_vm_tagged("private-peered-bastion")
    }

    /// Every bastion host.
    pub fn bastions(&self) -> Vec<BastionSummary> {
        self.handle.bastions()
    }

    /// The bastion `name` of `resource_group`.
    pub fn bastion(&self, resource_group: &str, name: &str) -> BastionSummary {
        match self.handle.bastions().into_iter().find(|b| {
            b.resource_group.eq_ignore_ascii_case(resource_group)
                && b.name.eq_ignore_ascii_case(name)
        }) {
            Some(b) => b,
            None => panic!("no bastion `{resource_group}/{name}`"),
        }
    }

    /// The bastion tagged `emulator-variant = variant` (`bastion-ok`, `bastion-peered`,
    /// `bastion-basic`, `bastion-no-tunneling`, `bastion-developer`).
    pub fn bastion_tagged(&self, variant: &str) -> BastionSummary {
        match self
            .handle
            .bastions()
            .into_iter()
            .find(|b| b.variant == variant)
        {
            Some(b) => b,
            None => panic!("no bastion tagged `{variant}`: build the Emu with `.bastions(true)`"),
        }
    }

    /// Where a private address (`10.a.b.c`) is served on this machine (`127.(128+a).b.c`).
    pub fn private_address(&self, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        crate::bastion::private_image(ip)
    }

    /// A running VM with a public IP on Windows Server 2019 or newer (the capability path): one
    /// the whole SSH workflow can run on. The seeded worlds all have one.
    pub fn ready_vm(&self) -> VmSummary {
        match self.handle.vms().into_iter().find(|v| {
            v.power_state == PowerState::Running
                && v.public_ip.is_some()
                && v.release != WindowsRelease::Ws2016
        }) {
            Some(v) => v,
            None => panic!("the seeded world has no running 2019+ VM with a public IP"),
        }
    }

    /// The first VM of the realistic world showing `variant` (tag `emulator-variant`).
    pub fn variant_vm(&self, variant: crate::Variant) -> VmSummary {
        match self.handle.vms().into_iter().find(|v| v.variant == variant) {
            Some(v) => v,
            None => panic!(
                "no VM shows `{}`: build the Emu with `.world(WorldKind::Realistic)` and 13 VMs or more",
                variant.name()
            ),
        }
    }

    /// Every VM's full ARM id, in world order.
    pub fn vm_ids(&self) -> Vec<String> {
        let sub = self.handle.subscription_id();
        self.handle
            .vms()
            .iter()
            .map(|v| {
                format!(
                    "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
                    v.resource_group, v.name
                )
            })
            .collect()
    }

    /// The public IP of `ready_vm`-style VMs is a loopback address the guests answer on.
    pub fn public_ip(&self, resource_group: &str, vm: &str) -> Option<Ipv4Addr> {
        self.handle
            .vms()
            .into_iter()
            .find(|v| v.resource_group == resource_group && v.name == vm)
            .and_then(|v| v.public_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn env_names_the_emulator_and_ready_vm_is_running_with_a_public_ip() {
        let emu = Emu::builder().vms(12).seed(3).start().await;
        let env = emu.env();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("AZSSH_ARM_ENDPOINT").as_deref(),
            Some(emu.handle.endpoint())
        );
        assert_eq!(
            get("AZSSH_SSH_PORT"),
            Some(emu.guests().ssh_port().to_string())
        );
        let vm = emu.ready_vm();
        assert_eq!(vm.power_state, PowerState::Running);
        assert!(vm.public_ip.is_some());
        assert_ne!(vm.release, WindowsRelease::Ws2016);
        assert_eq!(emu.vm_ids().len(), 12);
    }

    #[tokio::test]
    async fn without_guests_there_is_no_ssh_port() {
        let emu = Emu::builder().vms(2).guests(false).start().await;
        assert!(emu.env().iter().all(|(k, _)| k != "AZSSH_SSH_PORT"));
    }
}
