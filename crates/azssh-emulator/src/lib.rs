//! A local ARM emulator with emulated Windows guests: a simulated subscription of Windows VMs
//! served over HTTP on loopback, speaking Azure's wire format so the real client path (and
//! Microsoft's SDKs) run against it unchanged. It is a simulator and says so (`x-ms-emulator:
//! azssh` on every answer).
//!
//! # Layout
//! - `world` — the seeded subscription (VMs, NICs, subnets, public IPs, NSGs) and the guest seam
//!   (`GuestRuntime`, `GuestFactory`); `nsg` — rules, their validation and evaluation.
//! - `server` — HTTP front end: faults, bearer token, api-version, throttling; `routes` — the
//!   routing table.
//! - `compute`, `extension`, `network`, `graph` (+ `kql`, its query language), `security`,
//!   `resources` — one file per resource provider or resource kind.
//! - `guest` (+ `powershell`) — the Windows guest model; `guest_ssh` (+ `guest_sftp`, `rdp`) — the
//!   per-VM embedded sshd, SFTP sandbox and RDP listener.
//! - `bastion` — VNets, peerings, bastion hosts and private-only VMs; `bastion_plane` — Bastion's
//!   TLS/WebSocket data plane with the CA it generates.
//! - `lro` — long-running operations; `throttle` — ARM's token buckets; `faults` — seeded faults.

pub mod api_versions;
pub mod bastion;
pub mod bastion_plane;
pub mod compute;
pub mod error;
pub mod etag;
pub mod extension;
pub mod faults;
pub mod graph;
pub mod guest;
pub mod guest_sftp;
pub mod guest_ssh;
pub mod kql;
pub mod lro;
pub mod network;
pub mod nsg;
pub mod powershell;
pub mod rdp_server;
pub mod reply;
pub mod resources;
pub mod routes;
pub mod rules;
pub mod run_command_input;
pub mod secret;
pub mod security;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
pub mod throttle;
pub mod variants;
pub mod windows_guests;
pub mod world;

#[cfg(all(test, feature = "testing"))]
mod wire_client_tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

pub use error::EmulatorError;
pub use faults::FaultSpec;
pub use server::StatsSnapshot;
pub use variants::{VARIANT_TAG, Variant, WorldKind};
pub use world::{GuestFactory, GuestOutput, GuestRuntime, GuestSpec, PowerState, WindowsRelease};

use crate::secret::Secret;
use server::{App, lock};

/// How to build and serve the simulated subscription.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Number of VMs (default 12).
    pub vms: usize,
    /// Port on 127.0.0.1; 0 picks any free port.
    pub port: u16,
    /// Seeds the world and the faults: the same seed gives the same VMs and the same faults.
    pub seed: u64,
    pub faults: FaultSpec,
    /// Divides Azure's durations (RunCommand ≈ 20 s, start ≈ 30 s); tests use a large value.
    pub speed: f64,
    /// ARM's per-subscription token buckets (429 when empty); off for load generation.
    pub throttling: bool,
    /// VMs per page of a VM list (`nextLink` beyond).
    pub page_size: usize,
    /// Creates each VM's guest on first use (the Windows guest model, `guest.rs`). Without one,
    /// RunCommand answers with a stderr saying no guest is wired in, and extensions fail.
    pub guests: Option<Arc<dyn GuestFactory>>,
    /// Azure Bastion (`bastion.rs`): bastion hosts, peered VNets, five private-only VMs appended
    /// after the `vms` seeded ones, and the TLS data plane. `azssh emulator` turns it on; off by
    /// default so a `vms: n` world keeps n VMs (the test fixture: `.bastions(true)`).
    pub bastions: bool,
    /// `Tidy` (every VM the uniform case; the default here and in the test fixture) or
    /// `Realistic` (the variants of `variants.rs`; what `azssh emulator` serves by default).
    pub world: WorldKind,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            vms: 12,
            port: 0,
            seed: 1,
            faults: FaultSpec::default(),
            speed: 1.0,
            throttling: true,
            page_size: 50,
            guests: None,
            bastions: false,
            world: WorldKind::Tidy,
        }
    }
}

/// A VM as the other parts of the emulator (the SSH listener) need to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSummary {
    pub resource_group: String,
    pub name: String,
    pub release: WindowsRelease,
    pub power_state: PowerState,
    pub public_ip: Option<Ipv4Addr>,
    pub private_ip: Ipv4Addr,
    /// Listed in its resource group's Defender just-in-time policy.
    pub jit: bool,
    /// The realistic world's variant (`Tidy` in a tidy world); also its `emulator-variant` tag.
    pub variant: Variant,
}

/// A bastion host as tests need to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BastionSummary {
    pub resource_group: String,
    pub name: String,
    pub id: String,
    /// `sku.name`: `Basic`, `Standard`, `Premium` or `Developer`.
    pub sku: String,
    pub tunneling: bool,
    /// `properties.dnsName`: `127.0.0.1:PORT`, the data plane's address.
    pub dns_name: String,
    /// Its `AzureBastionSubnet` prefix (`None` for Developer).
    pub subnet_prefix: Option<String>,
    /// The `emulator-variant` tag.
    pub variant: String,
}

pub struct Emulator;

impl Emulator {
    /// Builds the world and serves it on 127.0.0.1 until the handle is shut down or dropped.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        if !(config.speed.is_finite() && config.speed > 0.0) {
            return Err(EmulatorError::InvalidConfig(format!(
                "`speed` must be a positive number, not {}",
                config.speed
            )));
        }
        if config.page_size == 0 {
            return Err(EmulatorError::InvalidConfig(
                "`page_size` must be at least 1".into(),
            ));
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let mut world = world::World::generate_kind(config.vms, config.seed, config.world);
        if config.bastions {
            bastion::furnish(&mut world);
        }
        let subscription = world.subscription.clone();
        let token = format!("azssh-emulator.{}", uuid::Uuid::new_v4().simple());
        let app = Arc::new(App {
            world: Mutex::new(world),
            ops: Mutex::new(lro::Operations::default()),
            throttle: Mutex::new(throttle::Throttle::new(tokio::time::Instant::now())),
            faults: Mutex::new(faults::FaultInjector::new(config.faults, config.seed)),
            stats: server::Stats::default(),
            endpoint: format!("http://{local}"),
            token: Secret::new(token),
            speed: config.speed,
            throttling: config.throttling,
            page_size: config.page_size,
            guests: config.guests.clone(),
        });
        let cancel = CancellationToken::new();
        let plane = if config.bastions {
            let guest_port = config.guests.as_ref().and_then(|g| g.ssh_port());
            Some(
                bastion_plane::Plane::start(
                    &app,
                    guest_port,
                    config.seed,
                    config.faults.ws_reset,
                    cancel.child_token(),
                )
                .await?,
            )
        } else {
            None
        };
        tokio::spawn(server::serve(app.clone(), listener, cancel.clone()));
        tracing::debug!(endpoint = %app.endpoint, vms = config.vms, "emulator started");
        Ok(EmulatorHandle {
            app,
            cancel,
            subscription,
            addr: local,
            plane,
        })
    }
}

/// A running emulator. Dropping it stops the server.
pub struct EmulatorHandle {
    app: Arc<App>,
    cancel: CancellationToken,
    subscription: String,
    addr: SocketAddr,
    plane: Option<Arc<bastion_plane::Plane>>,
}

impl EmulatorHandle {
    /// The Resource Manager endpoint, e.g. `http://127.0.0.1:41234` (`AZSSH_ARM_ENDPOINT`).
    pub fn endpoint(&self) -> &str {
        &self.app.endpoint
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// The bearer token the emulator accepts (`AZSSH_ACCESS_TOKEN`).
    pub fn token(&self) -> &Secret<String> {
        &self.app.token
    }
    pub fn subscription_id(&self) -> &str {
        &self.subscription
    }
    pub fn stats(&self) -> StatsSnapshot {
        self.app.stats.snapshot()
    }
    /// Long-running operations started so far.
    pub fn operations_started(&self) -> usize {
        lock(&self.app.ops).len()
    }

    /// Every VM, in world order.
    pub fn vms(&self) -> Vec<VmSummary> {
        let world = lock(&self.app.world);
        world
            .vms
            .iter()
            .map(|v| VmSummary {
                resource_group: world.groups[v.group as usize].name.clone(),
                name: v.name.clone(),
                release: v.release,
                power_state: v.power,
                public_ip: v.public_ip,
                private_ip: v.private_ip,
                jit: v.jit,
                variant: v.variant,
            })
            .collect()
    }

    /// The VM answering on a loopback "public IP", as `(resource_group, name)`.
    pub fn vm_by_public_ip(&self, ip: Ipv4Addr) -> Option<(String, String)> {
        let world = lock(&self.app.world);
        let vm = world.vm_by_public_ip(ip)?;
        Some((
            world.groups[world.vms[vm].group as usize].name.clone(),
            world.vms[vm].name.clone(),
        ))
    }

    /// Whether the VM's NSGs (subnet, then NIC, as Azure evaluates inbound traffic) let a TCP
    /// connection from `source` reach `port`. `None` when there is no such VM. The guest SSH
    /// listener calls this before answering.
    pub fn admits(
        &self,
        resource_group: &str,
        vm: &str,
        source: Ipv4Addr,
        port: u16,
    ) -> Option<bool> {
        let world = lock(&self.app.world);
        let g = world.group(resource_group)?;
        let i = world.vm(g, vm)?;
        Some(world.admits(i, source, port, tokio::time::Instant::now()))
    }

    /// Makes someone else (a colleague's azssh, the portal) write to an NSG just before each of
    /// the next client writes to it, in order: a test's way to land a concurrent change between
    /// a client's read and its write. `false` when there is no such NSG.
    pub fn interpose_rule_writes(
        &self,
        resource_group: &str,
        nsg: &str,
        writes: Vec<nsg::InterposedWrite>,
    ) -> bool {
        let mut world = lock(&self.app.world);
        let Some(n) = world.group(resource_group).and_then(|g| world.nsg(g, nsg)) else {
            return false;
        };
        world.nsgs[n as usize].interposed.extend(writes);
        true
    }

    /// The VM's guest (created on first use), if a guest factory is configured.
    pub fn guest(&self, resource_group: &str, vm: &str) -> Option<Arc<dyn GuestRuntime>> {
        let mut world = lock(&self.app.world);
        let g = world.group(resource_group)?;
        let i = world.vm(g, vm)?;
        self.app.guest(&mut world, i)
    }

    /// The bastion world's variables: `AZSSH_CA_BUNDLE` (the CA of the data plane) and
    /// `AZSSH_PRIVATE_NET` (where private addresses live on loopback); empty without bastions.
    pub fn bastion_env(&self) -> Vec<(String, String)> {
        match &self.plane {
            Some(p) => vec![
                (
                    "AZSSH_CA_BUNDLE".to_string(),
                    p.ca_bundle().display().to_string(),
                ),
                (
                    "AZSSH_PRIVATE_NET".to_string(),
                    bastion::PRIVATE_NET.to_string(),
                ),
            ],
            None => Vec::new(),
        }
    }

    /// Arms faults on the bastion data plane's WebSockets; `None` without bastions.
    pub fn bastion_faults(&self) -> Option<bastion_plane::BastionFaults> {
        self.plane.as_ref().map(|p| p.faults())
    }

    /// The bastion data plane (its CA, a client TLS configuration trusting it).
    pub fn bastion_plane(&self) -> Option<&Arc<bastion_plane::Plane>> {
        self.plane.as_ref()
    }

    /// Every bastion host, in world order.
    pub fn bastions(&self) -> Vec<BastionSummary> {
        let world = lock(&self.app.world);
        (0..world.bastion.bastions.len())
            .map(|i| {
                let b = &world.bastion.bastions[i];
                BastionSummary {
                    resource_group: world.groups[b.group as usize].name.clone(),
                    name: b.name.clone(),
                    id: bastion::bastion_id(&world, i),
                    sku: b.sku.name().to_string(),
                    tunneling: b.tunneling,
                    dns_name: b.dns_name.clone(),
                    subnet_prefix: b.subnet.map(|s| world.subnets[s as usize].prefix.clone()),
                    variant: b.variant.to_string(),
                }
            })
            .collect()
    }

    /// The `emulator-variant` tag of a VM the bastion world added, if any.
    pub fn vm_variant(&self, resource_group: &str, vm: &str) -> Option<String> {
        let world = lock(&self.app.world);
        let g = world.group(resource_group)?;
        let i = world.vm(g, vm)?;
        world.bastion.vm_variants.get(&i).map(|v| v.to_string())
    }

    /// The lines `azssh emulator` prints, ready for `eval`.
    pub fn export_lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "# azssh emulator (a local simulator, not Azure): {} VMs at {}",
                lock(&self.app.world).vms.len(),
                self.endpoint()
            ),
            format!("export AZSSH_ARM_ENDPOINT={}", self.endpoint()),
            format!("export AZSSH_ACCESS_TOKEN={}", self.token().expose()),
            format!("export AZURE_SUBSCRIPTION_ID={}", self.subscription_id()),
        ];
        for (k, v) in self.bastion_env() {
            lines.push(format!("export {k}={v}"));
        }
        lines
    }

    /// Stops accepting and closes open connections.
    pub fn shutdown(self) {
        self.cancel.cancel();
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
