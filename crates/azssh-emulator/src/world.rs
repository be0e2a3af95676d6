//! The simulated subscription: resource groups, VMs, NICs, subnets, public IPs and NSGs, built
//! from a seed so the same seed always yields the same world, plus the seam to the guest model.
//!
//! Per-VM state is kept small (indices and enums, no JSON) because a 5000-VM world must start in
//! under 2 s and stay under 300 MB; JSON is rendered on demand by `compute.rs` and `network.rs`,
//! and guests are created lazily on first use.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::nsg::{Nsg, Rule};

/// What RunCommand and the extension handler need from a guest; implemented by `guest.rs`.
pub trait GuestRuntime: Send + Sync {
    /// Runs a RunCommand script (the `script` lines joined by newlines) as SYSTEM, with its
    /// `parameters` (name, value), which Azure passes as `-name value`.
    fn run_powershell(&self, script: &str, params: &[(String, String)]) -> GuestOutput;
    /// The `Microsoft.Azure.OpenSSH/WindowsOpenSSH` 3.0 extension: installs and starts sshd.
    fn install_openssh_extension(&self) -> Result<(), String>;
    /// Whether sshd is installed and running (the SSH listener asks before answering).
    fn sshd_listening(&self) -> bool;
}

/// The outcome of one script, as the guest saw it. RunCommand exposes only stdout and stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// Creates the guest of one VM on first use (guests are lazy: most VMs of a big world never run
/// a script).
pub trait GuestFactory: Send + Sync {
    fn create(&self, spec: &GuestSpec) -> Arc<dyn GuestRuntime>;
    /// The port every guest's sshd listens on (`AZSSH_SSH_PORT`), if guests run one.
    fn ssh_port(&self) -> Option<u16> {
        None
    }
}

/// The facts about a VM that its guest needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSpec {
    pub resource_group: String,
    pub name: String,
    pub computer_name: String,
    pub admin_username: String,
    pub release: WindowsRelease,
    pub public_ip: Option<Ipv4Addr>,
    pub private_ip: Ipv4Addr,
}

/// Windows Server releases the world draws from, with the values real instance views report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowsRelease {
    Ws2016,
    Ws2019,
    Ws2022,
    Ws2025,
}

impl WindowsRelease {
    pub const ALL: [WindowsRelease; 4] = [Self::Ws2016, Self::Ws2019, Self::Ws2022, Self::Ws2025];

    /// `storageProfile.imageReference.sku` of the Marketplace image.
    pub fn image_sku(self) -> &'static str {
        match self {
            Self::Ws2016 => "2016-Datacenter",
            Self::Ws2019 => "2019-Datacenter",
            Self::Ws2022 => "2022-datacenter-azure-edition",
            Self::Ws2025 => "2025-datacenter-azure-edition",
        }
    }

    /// `instanceView.osName` as the guest agent reports it.
    pub fn os_name(self) -> &'static str {
        match self {
            Self::Ws2016 => "Windows Server 2016 Datacenter",
            Self::Ws2019 => "Windows Server 2019 Datacenter",
            Self::Ws2022 => "Windows Server 2022 Datacenter Azure Edition",
            Self::Ws2025 => "Windows Server 2025 Datacenter Azure Edition",
        }
    }

    /// The NT build number (the third part of `osVersion`).
    pub fn build(self) -> u32 {
        match self {
            Self::Ws2016 => 14393,
            Self::Ws2019 => 17763,
            Self::Ws2022 => 20348,
            Self::Ws2025 => 26100,
        }
    }

    /// OpenSSH ships as a Windows capability from 2019 on; 2016 needs the VM extension.
    pub fn has_openssh_capability(self) -> bool {
        self != Self::Ws2016
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    Running,
    Starting,
    Stopped,
    Deallocated,
}

impl PowerState {
    pub fn code(self) -> &'static str {
        match self {
            Self::Running => "PowerState/running",
            Self::Starting => "PowerState/starting",
            Self::Stopped => "PowerState/stopped",
            Self::Deallocated => "PowerState/deallocated",
        }
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::Running => "VM running",
            Self::Starting => "VM starting",
            Self::Stopped => "VM stopped",
            Self::Deallocated => "VM deallocated",
        }
    }
}

pub const ENVS: [&str; 4] = ["prod", "staging", "dev", "test"];
pub const TEAMS: [&str; 4] = ["platform", "payments", "data", "identity"];
pub const ROLES: [&str; 5] = ["web", "sql", "jump", "app", "dc"];
pub const SIZES: [&str; 4] = [
    "Standard_B2s",
    "Standard_D2s_v5",
    "Standard_D4s_v5",
    "Standard_E4s_v5",
];

/// A resource group: each holds one virtual network with a `default` subnet (NSG attached) and
/// an `apps` subnet (no NSG).
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub location: &'static str,
}

#[derive(Debug, Clone)]
pub struct Subnet {
    pub group: u16,
    pub vnet: String,
    pub name: &'static str,
    pub prefix: String,
    pub nsg: Option<u32>,
}

/// A VM extension as stored: the body fields the client sent plus our provisioning state.
#[derive(Debug, Clone)]
pub struct Extension {
    pub name: String,
    pub publisher: String,
    pub kind: String,
    pub type_handler_version: String,
    pub auto_upgrade_minor_version: bool,
    pub settings: serde_json::Value,
    pub provisioning_state: &'static str,
    pub message: String,
}

#[derive(Clone)]
pub struct Vm {
    pub name: String,
    pub group: u16,
    pub release: WindowsRelease,
    pub ubr: u16,
    pub size: u8,
    pub power: PowerState,
    pub nic_nsg: Option<u32>,
    pub subnet: u32,
    pub public_ip: Option<Ipv4Addr>,
    pub private_ip: Ipv4Addr,
    pub env: u8,
    pub team: u8,
    pub role: u8,
    pub vm_id: uuid::Uuid,
    pub jit: bool,
    pub extensions: Vec<Extension>,
    /// RunCommand runs one script at a time per VM (Azure answers 409 Conflict otherwise).
    pub run_command_busy: bool,
    pub guest: Option<Arc<dyn GuestRuntime>>,
}

impl Vm {
    pub fn nic_name(&self) -> String {
        format!("{}-nic", self.name)
    }
    pub fn pip_name(&self) -> String {
        format!("{}-ip", self.name)
    }
    pub fn os_version(&self) -> String {
        format!("10.0.{}.{}", self.release.build(), self.ubr)
    }
    pub fn admin_username(&self) -> &'static str {
        "azureadmin"
    }
    /// Windows caps NetBIOS computer names at 15 characters.
    pub fn computer_name(&self) -> String {
        self.name.chars().take(15).collect()
    }
}

/// The whole subscription. Lives behind one mutex in `server.rs`; every handler is short.
pub struct World {
    pub subscription: String,
    pub tenant: String,
    pub groups: Vec<Group>,
    pub subnets: Vec<Subnet>,
    pub nsgs: Vec<Nsg>,
    pub vms: Vec<Vm>,
    /// JIT access requests made so far, by resource group (rendered into the policy's `requests`).
    pub jit_requests: Vec<(u16, serde_json::Value)>,
    /// VNets, peerings and bastion hosts (`bastion.rs`); empty unless bastions are on.
    pub bastion: crate::bastion::BastionWorld,
    vm_index: HashMap<(u16, String), usize>,
    nsg_index: HashMap<(u16, String), u32>,
    group_index: HashMap<String, u16>,
}

const REGIONS: [&str; 4] = ["eastus", "westeurope", "westus2", "northeurope"];
const GROUP_NAMES: [&str; 4] = [
    "rg-prod-eastus",
    "rg-apps-westeurope",
    "rg-dev-westus2",
    "rg-ops-northeurope",
];

fn seeded_uuid(rng: &mut StdRng) -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

/// `127.77.0.1`, `127.77.0.2`, ...: a distinct loopback "public IP" per VM, skipping `.0` and
/// `.255` so every address is a plausible host address.
fn loopback_ip(i: usize) -> Ipv4Addr {
    let per_octet = 254usize;
    let d = (i % per_octet) as u8 + 1;
    let c = ((i / per_octet) % 256) as u8;
    let b = 77u8.wrapping_add((i / (per_octet * 256)) as u8);
    Ipv4Addr::new(127, b, c, d)
}

impl World {
    /// Builds the world for `vm_count` VMs from `seed`.
    pub fn generate(vm_count: usize, seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let subscription = seeded_uuid(&mut rng).to_string();
        let tenant = seeded_uuid(&mut rng).to_string();
        let mut world = World {
            subscription,
            tenant,
            groups: Vec::new(),
            subnets: Vec::new(),
            nsgs: Vec::new(),
            vms: Vec::with_capacity(vm_count),
            jit_requests: Vec::new(),
            bastion: Default::default(),
            vm_index: HashMap::with_capacity(vm_count),
            nsg_index: HashMap::new(),
            group_index: HashMap::new(),
        };
        for (g, (name, location)) in GROUP_NAMES.iter().zip(REGIONS).enumerate() {
            let g16 = g as u16;
            world.groups.push(Group {
                name: (*name).to_string(),
                location,
            });
            world.group_index.insert(name.to_ascii_lowercase(), g16);
            let vnet = format!("{name}-vnet");
            let mut nsg = Nsg::new(g16, format!("{vnet}-default-nsg"));
            // Some subnet NSGs already hold a rule at priority 1000, the priority the documented
            // `allow-SSH` rule asks for, so clients must cope with `SecurityRuleConflict`.
            if g % 2 == 0 {
                nsg.rules
                    .push(Rule::allow_tcp("allow-https", 1000, "*", "443"));
            }
            let nsg_id = world.add_nsg(nsg);
            world.subnets.push(Subnet {
                group: g16,
                vnet: vnet.clone(),
                name: "default",
                prefix: format!("10.{g}.0.0/20"),
                nsg: Some(nsg_id),
            });
            world.subnets.push(Subnet {
                group: g16,
                vnet,
                name: "apps",
                prefix: format!("10.{g}.16.0/20"),
                nsg: None,
            });
        }
        let mut per_subnet = vec![0u32; world.subnets.len()];
        for i in 0..vm_count {
            world.add_vm(i, &mut rng, &mut per_subnet);
        }
        world
    }

    pub(crate) fn add_nsg(&mut self, nsg: Nsg) -> u32 {
        let id = self.nsgs.len() as u32;
        self.nsg_index
            .insert((nsg.group, nsg.name.to_ascii_lowercase()), id);
        self.nsgs.push(nsg);
        id
    }

    fn add_vm(&mut self, i: usize, rng: &mut StdRng, per_subnet: &mut [u32]) {
        let group = (i % self.groups.len()) as u16;
        let env = rng.random_range(0..ENVS.len()) as u8;
        let role = rng.random_range(0..ROLES.len()) as u8;
        let name = format!(
            "{}-{}-{:03}",
            ROLES[role as usize],
            ENVS[env as usize],
            i + 1
        );
        let release = WindowsRelease::ALL[rng.random_range(0..4)];
        let power = match rng.random_range(0..20) {
            0..=13 => PowerState::Running,
            14..=16 => PowerState::Deallocated,
            _ => PowerState::Stopped,
        };
        // Where the NSG sits: 0 = NIC only, 1 = subnet only, 2 = both.
        let placement = rng.random_range(0..3);
        let subnet_local = if placement == 0 { 1 } else { 0 };
        let subnet = group as u32 * 2 + subnet_local;
        let nic_nsg = if placement != 1 {
            let mut nsg = Nsg::new(group, format!("{name}-nsg"));
            if rng.random_bool(0.25) {
                nsg.rules.push(Rule::allow_tcp(
                    "allow-RDP-corp",
                    1000,
                    "10.0.0.0/8",
                    "3389",
                ));
            }
            Some(self.add_nsg(nsg))
        } else {
            None
        };
        let k = per_subnet[subnet as usize];
        per_subnet[subnet as usize] += 1;
        let private_ip = Ipv4Addr::new(
            10,
            group as u8,
            (subnet_local * 16 + k / 250) as u8,
            (k % 250 + 4) as u8,
        );
        let public_ip = (!rng.random_bool(1.0 / 6.0)).then(|| loopback_ip(i));
        let jit = power == PowerState::Running && rng.random_bool(0.2);
        let vm = Vm {
            name,
            group,
            release,
            ubr: rng.random_range(1000..7000),
            size: rng.random_range(0..SIZES.len()) as u8,
            power,
            nic_nsg,
            subnet,
            public_ip,
            private_ip,
            env,
            team: rng.random_range(0..TEAMS.len()) as u8,
            role,
            vm_id: seeded_uuid(rng),
            jit,
            extensions: Vec::new(),
            run_command_busy: false,
            guest: None,
        };
        if jit {
            // Defender for Cloud locks JIT ports with deny rules in the NSG closest to the VM.
            if let Some(nsg) = vm.nic_nsg.or(self.subnets[subnet as usize].nsg) {
                let rules = &mut self.nsgs[nsg as usize].rules;
                for (n, port) in [(4000u16, "22"), (4001, "3389")] {
                    if !rules.iter().any(|r| r.priority == n) {
                        let name = format!("SecurityCenter-JITRule_{}_{port}", vm.name);
                        rules.push(Rule::deny_tcp(&name, n, port));
                    }
                }
            }
        }
        self.vm_index
            .insert((group, vm.name.to_ascii_lowercase()), self.vms.len());
        self.vms.push(vm);
    }

    /// Appends a VM built elsewhere (`bastion.rs`), returning its index.
    pub(crate) fn push_vm(&mut self, vm: Vm) -> usize {
        let index = self.vms.len();
        self.vm_index
            .insert((vm.group, vm.name.to_ascii_lowercase()), index);
        self.vms.push(vm);
        index
    }

    pub fn group(&self, name: &str) -> Option<u16> {
        self.group_index.get(&name.to_ascii_lowercase()).copied()
    }

    pub fn vm(&self, group: u16, name: &str) -> Option<usize> {
        self.vm_index
            .get(&(group, name.to_ascii_lowercase()))
            .copied()
    }

    pub fn nsg(&self, group: u16, name: &str) -> Option<u32> {
        self.nsg_index
            .get(&(group, name.to_ascii_lowercase()))
            .copied()
    }

    /// The VM whose NIC is `name` (NICs are named `{vm}-nic`).
    pub fn vm_by_nic(&self, group: u16, nic: &str) -> Option<usize> {
        let lower = nic.to_ascii_lowercase();
        let vm = lower.strip_suffix("-nic")?;
        self.vm(group, vm)
    }

    /// The VM whose public IP resource is `name` (named `{vm}-ip`) and that has one.
    pub fn vm_by_pip(&self, group: u16, pip: &str) -> Option<usize> {
        let lower = pip.to_ascii_lowercase();
        let vm = self.vm(group, lower.strip_suffix("-ip")?)?;
        self.vms[vm].public_ip.map(|_| vm)
    }

    pub fn vm_by_public_ip(&self, ip: Ipv4Addr) -> Option<usize> {
        self.vms.iter().position(|v| v.public_ip == Some(ip))
    }

    pub fn subnet(&self, group: u16, vnet: &str, name: &str) -> Option<u32> {
        self.subnets
            .iter()
            .position(|s| {
                s.group == group
                    && s.vnet.eq_ignore_ascii_case(vnet)
                    && s.name.eq_ignore_ascii_case(name)
            })
            .map(|i| i as u32)
    }

    pub fn location_of(&self, vm: usize) -> &'static str {
        self.groups[self.vms[vm].group as usize].location
    }

    pub fn guest_spec(&self, vm: usize) -> GuestSpec {
        let v = &self.vms[vm];
        GuestSpec {
            resource_group: self.groups[v.group as usize].name.clone(),
            name: v.name.clone(),
            computer_name: v.computer_name(),
            admin_username: v.admin_username().to_string(),
            release: v.release,
            public_ip: v.public_ip,
            private_ip: v.private_ip,
        }
    }

    /// The NSGs that gate inbound traffic to the VM, in the order Azure evaluates them for
    /// inbound traffic: the subnet's NSG first, then the NIC's.
    pub fn inbound_nsgs(&self, vm: usize) -> Vec<u32> {
        let v = &self.vms[vm];
        let mut out = Vec::with_capacity(2);
        if let Some(n) = self.subnets[v.subnet as usize].nsg {
            out.push(n);
        }
        if let Some(n) = v.nic_nsg {
            out.push(n);
        }
        out
    }

    /// Whether a TCP connection from `source` to `port` on the VM passes its NSGs: each NSG
    /// present must allow it (Azure: traffic must be allowed by both the subnet and the NIC NSG;
    /// with no NSG at all everything is allowed).
    pub fn admits(
        &self,
        vm: usize,
        source: Ipv4Addr,
        port: u16,
        now: tokio::time::Instant,
    ) -> bool {
        let v = &self.vms[vm];
        self.inbound_nsgs(vm)
            .into_iter()
            .all(|n| self.nsgs[n as usize].admits(source, v.private_ip, v.public_ip, port, now))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_world() {
        let a = World::generate(40, 7);
        let b = World::generate(40, 7);
        assert_eq!(a.subscription, b.subscription);
        let names = |w: &World| w.vms.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b));
        assert_ne!(a.subscription, World::generate(40, 8).subscription);
    }

    #[test]
    fn world_has_the_documented_mix() {
        let w = World::generate(60, 1);
        assert!(w.vms.iter().any(|v| v.public_ip.is_none()));
        assert!(w.vms.iter().any(|v| v.power == PowerState::Deallocated));
        assert!(w.vms.iter().any(|v| v.jit));
        for r in WindowsRelease::ALL {
            assert!(w.vms.iter().any(|v| v.release == r), "{r:?} missing");
        }
        let nic_only = w
            .vms
            .iter()
            .any(|v| v.nic_nsg.is_some() && w.subnets[v.subnet as usize].nsg.is_none());
        let subnet_only = w
            .vms
            .iter()
            .any(|v| v.nic_nsg.is_none() && w.subnets[v.subnet as usize].nsg.is_some());
        let both = w
            .vms
            .iter()
            .any(|v| v.nic_nsg.is_some() && w.subnets[v.subnet as usize].nsg.is_some());
        assert!(nic_only && subnet_only && both);
        assert!(
            w.nsgs
                .iter()
                .any(|n| n.rules.iter().any(|r| r.priority == 1000))
        );
    }

    #[test]
    fn public_ips_are_distinct_loopback_addresses() {
        let w = World::generate(3000, 3);
        let mut seen = std::collections::HashSet::new();
        for ip in w.vms.iter().filter_map(|v| v.public_ip) {
            assert!(ip.is_loopback());
            assert!(seen.insert(ip));
        }
    }
}
