//! Azure Bastion in the simulated subscription: virtual networks and their peerings,
//! `Microsoft.Network/bastionHosts` resources (ARM GET/list, Resource Graph rows), the private-only
//! VMs that only a bastion reaches, and where private addresses live on this machine.
//!
//! The bastion world (`EmulatorConfig::bastions`) adds, to the four resource groups' VNets
//! `10.g.0.0/16`:
//! - a Standard bastion with native-client tunneling in the first group's VNet;
//! - a hub VNet `10.100.0.0/16` in the fourth group, peered with that group's VNet, holding a
//!   Premium bastion with tunneling (the "bastion in a peered VNet" path);
//! - a Basic bastion (second group) and a Premium one without tunneling (third group), which
//!   Bastion refuses to tunnel through;
//! - a Developer bastion for a sandbox VNet `10.101.0.0/16` (third group), which cannot reach the
//!   Windows VM in it (Developer connects to Linux VMs over SSH only, `includes/bastion-sku.md`);
//! - one private-only VM (no public IP) behind each, tagged `emulator-variant`.
//!
//! Each bastion's `AzureBastionSubnet` is `10.a.32.0/26` of its VNet; Azure requires the name
//! and a /26 or larger ("Working with NSG access and Azure Bastion"). Bastion's data plane
//! (`bastion_plane`) connects to VMs from `10.a.32.4`, so NSGs see that prefix.
//!
//! # Private addresses on loopback
//! ARM keeps real-looking private IPs (`10.a.b.c`). This machine cannot route those without root,
//! so the VNet space `10.0.0.0/9` is served on loopback `127.128.0.0/9`: `10.a.b.c` ↔
//! `127.(128+a).b.c` ([`private_image`], exported as `AZSSH_PRIVATE_NET`). Guests' sshd listen on
//! their private image too; a connection arriving there is evaluated by the NSG with the source
//! mapped back into the VNet ([`vnet_source`]).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::compute::group_prefix;
use super::nsg::{Nsg, Rule};
use super::reply::{ArmError, Reply};
use super::server::{App, lock};
use super::world::{PowerState, Subnet, WindowsRelease, World};

/// `AZSSH_PRIVATE_NET`: the VNet space and the loopback range standing for it.
pub const PRIVATE_NET: &str = "10.0.0.0/9=127.128.0.0/9";

/// The loopback address standing for private address `ip` (`10.a.b.c` → `127.(128+a).b.c`), if
/// `ip` lies in `10.0.0.0/9`.
pub fn private_image(ip: Ipv4Addr) -> Option<Ipv4Addr> {
    let [a, b, c, d] = ip.octets();
    (a == 10 && b < 128).then(|| Ipv4Addr::new(127, 128 + b, c, d))
}

/// The private address a loopback image stands for (the inverse of [`private_image`]).
pub fn private_of_image(ip: Ipv4Addr) -> Option<Ipv4Addr> {
    let [a, b, c, d] = ip.octets();
    (a == 127 && b >= 128).then(|| Ipv4Addr::new(10, b - 128, c, d))
}

/// The source address the NSG of a VM sees for a TCP connection that reached the VM's private
/// image from `peer`. A peer inside the image range is that VNet address (the bastion binds its
/// source to its `AzureBastionSubnet` image). Any other loopback peer (`127.0.0.1`: a process on
/// this machine, such as a real OpenSSH sshd acting as a jump host) can only have reached a
/// private address from inside the VNet, so it stands for a host of the VM's VNet: the last host
/// of the VNet's `default` subnet, `10.a.15.254`.
pub fn vnet_source(peer: Ipv4Addr, vm_private: Ipv4Addr) -> Ipv4Addr {
    private_of_image(peer).unwrap_or_else(|| {
        let [_, a, _, _] = vm_private.octets();
        Ipv4Addr::new(10, a, 15, 254)
    })
}

/// Bastion SKUs (`sku.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sku {
    Basic,
    Standard,
    Premium,
    Developer,
}

impl Sku {
    pub fn name(self) -> &'static str {
        match self {
            Sku::Basic => "Basic",
            Sku::Standard => "Standard",
            Sku::Premium => "Premium",
            Sku::Developer => "Developer",
        }
    }
}

/// A virtual network: `10.a.0.0/16`.
#[derive(Debug, Clone)]
pub struct Vnet {
    pub group: u16,
    pub name: String,
    /// The second octet of its address space.
    pub a: u8,
}

impl Vnet {
    pub fn prefix(&self) -> String {
        format!("10.{}.0.0/16", self.a)
    }
}

/// A bastion host.
#[derive(Debug, Clone)]
pub struct Bastion {
    pub group: u16,
    pub name: String,
    pub sku: Sku,
    pub tunneling: bool,
    /// Index into [`BastionWorld::vnets`].
    pub vnet: usize,
    /// Its `AzureBastionSubnet` (index into `World::subnets`); `None` for Developer, which lives
    /// outside the customer's VNet.
    pub subnet: Option<u32>,
    /// The `emulator-variant` tag.
    pub variant: &'static str,
    pub guid: uuid::Uuid,
    /// `properties.dnsName`: set when the data plane listens (`127.0.0.1:PORT`).
    pub dns_name: String,
}

impl Bastion {
    /// The address its instances connect to VMs from: `10.a.32.4`, in `AzureBastionSubnet`.
    pub fn source(&self, world: &World) -> Option<Ipv4Addr> {
        self.subnet.map(|_| {
            let a = world.bastion.vnets[self.vnet].a;
            Ipv4Addr::new(10, a, 32, 4)
        })
    }
}

/// The bastion part of the world; empty unless `EmulatorConfig::bastions`.
#[derive(Debug, Clone, Default)]
pub struct BastionWorld {
    pub vnets: Vec<Vnet>,
    /// Peered VNet pairs (peered both ways, `Connected`).
    pub peerings: Vec<(usize, usize)>,
    pub bastions: Vec<Bastion>,
    /// `emulator-variant` tags of the VMs this module added, by VM index.
    pub vm_variants: HashMap<usize, &'static str>,
}

impl BastionWorld {
    pub fn vnet(&self, group: u16, name: &str) -> Option<usize> {
        self.vnets
            .iter()
            .position(|v| v.group == group && v.name.eq_ignore_ascii_case(name))
    }

    pub fn bastion(&self, group: u16, name: &str) -> Option<usize> {
        self.bastions
            .iter()
            .position(|b| b.group == group && b.name.eq_ignore_ascii_case(name))
    }

    pub fn peered(&self, a: usize, b: usize) -> bool {
        self.peerings
            .iter()
            .any(|&(x, y)| (x, y) == (a, b) || (x, y) == (b, a))
    }
}

/// The VNet (index into `world.bastion.vnets`) a VM's NIC sits in.
pub fn vnet_of_vm(world: &World, vm: usize) -> Option<usize> {
    let s = &world.subnets[world.vms[vm].subnet as usize];
    world.bastion.vnet(s.group, &s.vnet)
}

/// Whether the bastion can reach the VM: same VNet, or a VNet peered with the bastion's.
pub fn reaches(world: &World, bastion: usize, vm: usize) -> bool {
    let b = &world.bastion.bastions[bastion];
    vnet_of_vm(world, vm).is_some_and(|v| v == b.vnet || world.bastion.peered(b.vnet, v))
}

/// A stable GUID for a resource named `name` in this subscription.
pub(crate) fn seeded_guid(world: &World, name: &str) -> uuid::Uuid {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in world.subscription.bytes().chain(name.bytes()) {
        h = (h ^ u128::from(b)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    uuid::Builder::from_random_bytes(h.to_be_bytes()).into_uuid()
}

/// One private-only VM to add: group, VNet, subnet, host address and tag.
struct PrivateVm {
    name: &'static str,
    group: u16,
    subnet: u32,
    ip: Ipv4Addr,
    variant: &'static str,
}

/// Adds the bastion world to `world` (see the module docs). Needs the four seeded groups; a
/// world with fewer gets the part that fits.
pub fn furnish(world: &mut World) {
    let groups = world.groups.len() as u16;
    // The groups' own VNets, as the seeded subnets name them.
    for g in 0..groups {
        if let Some(s) = world.subnets.iter().find(|s| s.group == g) {
            let name = s.vnet.clone();
            world.bastion.vnets.push(Vnet {
                group: g,
                name,
                a: g as u8,
            });
        }
    }
    let region = |w: &World, g: u16| w.groups[g as usize].location;
    let mut private = Vec::new();
    // (group, sku, tunneling, variant, vm name, vm tag)
    let own: [(u16, Sku, bool, &'static str, &'static str, &'static str); 3] = [
        (
            0,
            Sku::Standard,
            true,
            "bastion-ok",
            "app-private-901",
            "private-bastion",
        ),
        (
            1,
            Sku::Basic,
            false,
            "bastion-basic",
            "app-private-903",
            "private-basic-bastion",
        ),
        (
            2,
            Sku::Premium,
            false,
            "bastion-no-tunneling",
            "app-private-904",
            "private-no-tunneling",
        ),
    ];
    for (g, sku, tunneling, variant, vm, vm_variant) in own {
        let Some(vnet) = world.bastion.vnets.iter().position(|v| v.group == g) else {
            continue;
        };
        let subnet = add_bastion_subnet(world, vnet);
        let name = format!("{}-bastion", world.groups[g as usize].name);
        add_bastion(world, g, name, sku, tunneling, vnet, Some(subnet), variant);
        if let Some(apps) = world
            .subnets
            .iter()
            .position(|s| s.group == g && s.name == "apps")
        {
            private.push(PrivateVm {
                name: vm,
                group: g,
                subnet: apps as u32,
                ip: Ipv4Addr::new(10, g as u8, 31, 200),
                variant: vm_variant,
            });
        }
    }
    // The hub: a Premium bastion with tunneling in a VNet peered with the fourth group's.
    if groups >= 4
        && let Some(spoke) = world.bastion.vnets.iter().position(|v| v.group == 3)
    {
        let hub = world.bastion.vnets.len();
        world.bastion.vnets.push(Vnet {
            group: 3,
            name: format!("hub-{}-vnet", region(world, 3)),
            a: 100,
        });
        world.bastion.peerings.push((hub, spoke));
        let subnet = add_bastion_subnet(world, hub);
        let name = format!("hub-{}-bastion", region(world, 3));
        add_bastion(
            world,
            3,
            name,
            Sku::Premium,
            true,
            hub,
            Some(subnet),
            "bastion-peered",
        );
        if let Some(apps) = world
            .subnets
            .iter()
            .position(|s| s.group == 3 && s.name == "apps")
        {
            private.push(PrivateVm {
                name: "app-private-902",
                group: 3,
                subnet: apps as u32,
                ip: Ipv4Addr::new(10, 3, 31, 201),
                variant: "private-peered-bastion",
            });
        }
    }
    // The sandbox: a Developer bastion for a VNet holding one Windows VM.
    if groups >= 3 {
        let sandbox = world.bastion.vnets.len();
        let vnet_name = format!("sandbox-{}-vnet", region(world, 2));
        world.bastion.vnets.push(Vnet {
            group: 2,
            name: vnet_name.clone(),
            a: 101,
        });
        world.subnets.push(Subnet {
            group: 2,
            vnet: vnet_name,
            name: "default",
            prefix: "10.101.0.0/24".into(),
            nsg: None,
        });
        let subnet = (world.subnets.len() - 1) as u32;
        let name = format!("sandbox-{}-bastion", region(world, 2));
        add_bastion(
            world,
            2,
            name,
            Sku::Developer,
            false,
            sandbox,
            None,
            "bastion-developer",
        );
        private.push(PrivateVm {
            name: "win-sandbox-905",
            group: 2,
            subnet,
            ip: Ipv4Addr::new(10, 101, 0, 4),
            variant: "private-developer-bastion",
        });
    }
    private.sort_by_key(|p| p.name);
    for p in private {
        add_private_vm(world, p);
    }
}

fn add_bastion_subnet(world: &mut World, vnet: usize) -> u32 {
    let v = &world.bastion.vnets[vnet];
    world.subnets.push(Subnet {
        group: v.group,
        vnet: v.name.clone(),
        name: "AzureBastionSubnet",
        prefix: format!("10.{}.32.0/26", v.a),
        nsg: None,
    });
    (world.subnets.len() - 1) as u32
}

#[allow(clippy::too_many_arguments)]
fn add_bastion(
    world: &mut World,
    group: u16,
    name: String,
    sku: Sku,
    tunneling: bool,
    vnet: usize,
    subnet: Option<u32>,
    variant: &'static str,
) {
    let guid = seeded_guid(world, &name);
    world.bastion.bastions.push(Bastion {
        group,
        name,
        sku,
        tunneling,
        vnet,
        subnet,
        variant,
        guid,
        dns_name: String::new(),
    });
}

/// A running Windows Server 2022 VM without public IP or JIT, whose NIC NSG ends in a deny-all
/// rule (priority 4096): nothing reaches it until an allow rule admits the bastion's subnet.
fn add_private_vm(world: &mut World, p: PrivateVm) {
    let mut nsg = Nsg::new(p.group, format!("{}-nsg", p.name));
    let mut deny = Rule::deny_tcp("DenyAllInBound-custom", 4096, "*");
    deny.protocol = "*".into();
    nsg.rules.push(deny);
    let nsg = world.add_nsg(nsg);
    let vm_id = seeded_guid(world, p.name);
    // Start from a freshly seeded VM so fields other parts of the emulator add to `Vm` keep
    // their seeded defaults; then set every field this VM's story depends on.
    let Some(mut vm) = World::generate(1, 0).vms.pop() else {
        return;
    };
    vm.name = p.name.to_string();
    vm.group = p.group;
    vm.release = WindowsRelease::Ws2022;
    vm.ubr = 2966;
    vm.size = 1;
    vm.power = PowerState::Running;
    vm.nic_nsg = Some(nsg);
    vm.subnet = p.subnet;
    vm.public_ip = None;
    vm.private_ip = p.ip;
    vm.env = 0;
    vm.team = 0;
    vm.role = 3;
    vm.vm_id = vm_id;
    vm.jit = false;
    vm.extensions = Vec::new();
    vm.run_command_busy = false;
    vm.guest = None;
    let index = world.push_vm(vm);
    world.bastion.vm_variants.insert(index, p.variant);
}

fn vnet_id(world: &World, vnet: usize) -> String {
    let v = &world.bastion.vnets[vnet];
    super::network::vnet_id(world, v.group, &v.name)
}

pub fn bastion_id(world: &World, bastion: usize) -> String {
    let b = &world.bastion.bastions[bastion];
    format!(
        "{}/providers/Microsoft.Network/bastionHosts/{}",
        group_prefix(world, b.group),
        b.name
    )
}

fn etag(guid: &uuid::Uuid) -> String {
    format!("W/\"{guid}\"")
}

/// `BastionHost` as the 2024-07-01 spec examples show it (BastionHostGet.json,
/// BastionHostDeveloperGet.json).
pub fn render_bastion(world: &World, bastion: usize) -> Value {
    let b = &world.bastion.bastions[bastion];
    let id = bastion_id(world, bastion);
    let mut props = json!({
        "provisioningState": "Succeeded",
        "dnsName": b.dns_name,
        "scaleUnits": 2,
        "disableCopyPaste": false,
        "enableTunneling": b.tunneling,
        "enableIpConnect": false,
        "enableShareableLink": false,
        "enableKerberos": false,
        "enableSessionRecording": false,
        "enablePrivateOnlyBastion": false,
        "ipConfigurations": [],
    });
    match b.subnet {
        Some(s) => {
            let subnet = &world.subnets[s as usize];
            props["ipConfigurations"] = json!([{
                "name": "bastionHostIpConfiguration",
                "id": format!("{id}/bastionHostIpConfigurations/bastionHostIpConfiguration"),
                "etag": etag(&b.guid),
                "type": "Microsoft.Network/bastionHosts/bastionHostIpConfigurations",
                "properties": {
                    "provisioningState": "Succeeded",
                    "privateIPAllocationMethod": "Dynamic",
                    "subnet": {"id": format!("{}/providers/Microsoft.Network/virtualNetworks/{}/subnets/{}", group_prefix(world, subnet.group), subnet.vnet, subnet.name)},
                    "publicIPAddress": {"id": format!("{}/providers/Microsoft.Network/publicIPAddresses/{}-pip", group_prefix(world, b.group), b.name)},
                },
            }]);
        }
        None => {
            // Developer bastions are shared infrastructure: no scale units, no IP configuration,
            // only the VNet they serve.
            let m = props.as_object_mut();
            if let Some(m) = m {
                m.remove("scaleUnits");
                m.remove("disableCopyPaste");
                m.remove("enableIpConnect");
                m.remove("enableShareableLink");
                m.remove("enableKerberos");
                m.remove("enableSessionRecording");
                m.remove("enablePrivateOnlyBastion");
            }
            props["virtualNetwork"] = json!({"id": vnet_id(world, b.vnet)});
            props["enableTunneling"] = json!(false);
        }
    }
    json!({
        "name": b.name, "id": id, "etag": etag(&b.guid),
        "type": "Microsoft.Network/bastionHosts",
        "location": world.groups[b.group as usize].location,
        "tags": {"emulator-variant": b.variant},
        "sku": {"name": b.sku.name()},
        "properties": props,
    })
}

/// The Resource Graph resources of the bastion world of the given type (lower case), or all
/// (its VNets are rendered with every other VNet, by `network::render_vnet`):
/// `(group, type, resource, tags)`.
pub fn graph_resources(
    world: &World,
    only: Option<&str>,
) -> Vec<(u16, &'static str, Value, Value)> {
    let want = |t: &str| only.is_none_or(|o| o == t);
    let mut out = Vec::new();
    if want("microsoft.network/bastionhosts") {
        for b in 0..world.bastion.bastions.len() {
            let mut r = render_bastion(world, b);
            let tags = r.get_mut("tags").map(Value::take).unwrap_or(json!({}));
            out.push((
                world.bastion.bastions[b].group,
                "microsoft.network/bastionhosts",
                r,
                tags,
            ));
        }
    }
    out
}

pub fn get_bastion(app: &Arc<App>, group: u16, name: &str) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let b = world.bastion.bastion(group, name).ok_or_else(|| {
        ArmError::not_found(
            "Microsoft.Network/bastionHosts",
            name,
            &world.groups[group as usize].name,
        )
    })?;
    Ok(Reply::ok(render_bastion(&world, b)))
}

/// `BastionHosts_List` (subscription) and `BastionHosts_ListByResourceGroup`.
pub fn list_bastions(app: &Arc<App>, group: Option<u16>) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let value: Vec<Value> = (0..world.bastion.bastions.len())
        .filter(|b| group.is_none_or(|g| world.bastion.bastions[*b].group == g))
        .map(|b| render_bastion(&world, b))
        .collect();
    Ok(Reply::ok(json!({ "value": value })))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn world() -> World {
        let mut w = World::generate(12, 1);
        furnish(&mut w);
        w
    }

    #[test]
    fn private_images_round_trip_and_stay_off_public_loopback_ips() {
        let ip = Ipv4Addr::new(10, 3, 31, 201);
        let img = private_image(ip).unwrap();
        assert_eq!(img, Ipv4Addr::new(127, 131, 31, 201));
        assert_eq!(private_of_image(img), Some(ip));
        assert_eq!(private_image(Ipv4Addr::new(10, 200, 0, 1)), None);
        assert_eq!(private_of_image(Ipv4Addr::new(127, 77, 0, 1)), None);
        assert_eq!(
            vnet_source(Ipv4Addr::LOCALHOST, ip),
            Ipv4Addr::new(10, 3, 15, 254)
        );
        assert_eq!(
            vnet_source(Ipv4Addr::new(127, 128, 32, 4), ip),
            Ipv4Addr::new(10, 0, 32, 4)
        );
    }

    #[test]
    fn every_private_vm_has_the_bastion_its_tag_promises() {
        let w = world();
        assert_eq!(w.vms.len(), 17);
        let by_tag = |tag: &str| {
            let vm = w
                .bastion
                .vm_variants
                .iter()
                .find(|(_, t)| **t == tag)
                .map(|(i, _)| *i)
                .unwrap();
            let reach: Vec<&Bastion> = (0..w.bastion.bastions.len())
                .filter(|b| reaches(&w, *b, vm))
                .map(|b| &w.bastion.bastions[b])
                .collect();
            assert!(w.vms[vm].public_ip.is_none());
            assert_eq!(reach.len(), 1, "{tag}: {reach:?}");
            reach[0].clone()
        };
        let ok = by_tag("private-bastion");
        assert_eq!((ok.sku, ok.tunneling), (Sku::Standard, true));
        let peered = by_tag("private-peered-bastion");
        assert_eq!((peered.sku, peered.tunneling), (Sku::Premium, true));
        assert_eq!(by_tag("private-basic-bastion").sku, Sku::Basic);
        let nt = by_tag("private-no-tunneling");
        assert_eq!((nt.sku, nt.tunneling), (Sku::Premium, false));
        assert_eq!(by_tag("private-developer-bastion").sku, Sku::Developer);
    }

    #[test]
    fn bastion_json_names_its_azure_bastion_subnet() {
        let w = world();
        let b = render_bastion(&w, 0);
        let subnet = b["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
            .as_str()
            .unwrap();
        assert!(subnet.ends_with("/subnets/AzureBastionSubnet"), "{subnet}");
        assert_eq!(b["sku"]["name"], "Standard");
        let dev = (0..w.bastion.bastions.len())
            .find(|i| w.bastion.bastions[*i].sku == Sku::Developer)
            .unwrap();
        let d = render_bastion(&w, dev);
        assert!(
            d["properties"]["virtualNetwork"]["id"]
                .as_str()
                .unwrap()
                .ends_with("sandbox-westus2-vnet")
        );
        let hub = super::super::network::render_vnet(
            &w,
            w.bastion.vnets[4].group,
            &w.bastion.vnets[4].name,
        );
        assert_eq!(
            hub["properties"]["virtualNetworkPeerings"][0]["properties"]["remoteVirtualNetwork"]
                ["id"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next(),
            Some("rg-ops-northeurope-vnet")
        );
    }
}
