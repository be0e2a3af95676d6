//! Microsoft.Network: NIC, subnet, public IP, VNet (one renderer for ARM and Resource Graph)
//! and NSG reads, and security rule
//! list/get/put/delete with the recorded LRO headers (PUT: 201/200 + `Azure-AsyncOperation`
//! only; DELETE: 202 + `Azure-AsyncOperation` and `Location`).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::compute::{group_prefix, vm_id};
use super::lro::{OpState, Provider};
use super::nsg::{InterposedWrite, Nsg, Rule, default_rules};
use super::reply::{ArmError, Reply};
use super::server::{App, Req, lock};
use super::world::World;

/// How long Azure takes to program a rule, before `--speed` scaling.
const RULE_TIME: Duration = Duration::from_secs(3);

fn not_found(world: &World, group: u16, kind: &str, name: &str) -> ArmError {
    ArmError::not_found(kind, name, &world.groups[group as usize].name)
}

fn etag(n: u64) -> String {
    format!("W/\"{:08x}-1d2c-4c3b-9a5e-{:012x}\"", n, n)
}

pub fn nsg_id(world: &World, nsg: u32) -> String {
    let n = &world.nsgs[nsg as usize];
    format!(
        "{}/providers/Microsoft.Network/networkSecurityGroups/{}",
        group_prefix(world, n.group),
        n.name
    )
}

fn nic_id(world: &World, vm: usize) -> String {
    let v = &world.vms[vm];
    format!(
        "{}/providers/Microsoft.Network/networkInterfaces/{}",
        group_prefix(world, v.group),
        v.nic_name()
    )
}

fn pip_id(world: &World, vm: usize) -> String {
    let v = &world.vms[vm];
    format!(
        "{}/providers/Microsoft.Network/publicIPAddresses/{}",
        group_prefix(world, v.group),
        v.pip_name()
    )
}

fn subnet_id(world: &World, subnet: u32) -> String {
    let s = &world.subnets[subnet as usize];
    format!(
        "{}/providers/Microsoft.Network/virtualNetworks/{}/subnets/{}",
        group_prefix(world, s.group),
        s.vnet,
        s.name
    )
}

pub fn render_nic(world: &World, vm: usize) -> Value {
    let v = &world.vms[vm];
    let id = nic_id(world, vm);
    let mut ipconfig = json!({
        "provisioningState": "Succeeded",
        "privateIPAddress": v.private_ip.to_string(),
        "privateIPAllocationMethod": "Dynamic",
        "subnet": {"id": subnet_id(world, v.subnet)},
        "primary": true,
        "privateIPAddressVersion": "IPv4",
    });
    if v.public_ip.is_some() {
        ipconfig["publicIPAddress"] = json!({"id": pip_id(world, vm)});
    }
    let mac = v.vm_id.as_bytes();
    let mut props = json!({
        "provisioningState": "Succeeded",
        "resourceGuid": v.vm_id.to_string(),
        "ipConfigurations": [{
            "name": "ipconfig1",
            "id": format!("{id}/ipConfigurations/ipconfig1"),
            "etag": etag(1),
            "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
            "properties": ipconfig,
        }],
        "dnsSettings": {"dnsServers": [], "appliedDnsServers": []},
        "macAddress": format!("00-0D-3A-{:02X}-{:02X}-{:02X}", mac[0], mac[1], mac[2]),
        "enableAcceleratedNetworking": false,
        "enableIPForwarding": false,
        "primary": true,
        "virtualMachine": {"id": vm_id(world, vm)},
        "nicType": "Standard",
    });
    if let Some(n) = v.nic_nsg {
        props["networkSecurityGroup"] = json!({"id": nsg_id(world, n)});
    }
    json!({
        "name": v.nic_name(), "id": id, "etag": etag(1),
        "type": "Microsoft.Network/networkInterfaces",
        "location": world.location_of(vm),
        "properties": props,
    })
}

pub fn render_public_ip(world: &World, vm: usize) -> Value {
    let v = &world.vms[vm];
    let mut props = json!({
        "provisioningState": "Succeeded",
        "resourceGuid": v.vm_id.to_string(),
        "publicIPAddressVersion": "IPv4",
        "publicIPAllocationMethod": "Static",
        "idleTimeoutInMinutes": 4,
        "ipTags": [],
        "ipConfiguration": {"id": format!("{}/ipConfigurations/ipconfig1", nic_id(world, vm))},
    });
    if let Some(ip) = v.public_ip {
        props["ipAddress"] = json!(ip.to_string());
    }
    json!({
        "name": v.pip_name(), "id": pip_id(world, vm), "etag": etag(1),
        "type": "Microsoft.Network/publicIPAddresses",
        "location": world.location_of(vm),
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": props,
    })
}

pub fn render_nsg(world: &World, nsg: u32) -> Value {
    let n = &world.nsgs[nsg as usize];
    let id = nsg_id(world, nsg);
    let nics: Vec<Value> = world
        .vms
        .iter()
        .enumerate()
        .filter(|(_, v)| v.nic_nsg == Some(nsg))
        .map(|(i, _)| json!({"id": nic_id(world, i)}))
        .collect();
    let subnets: Vec<Value> = (0..world.subnets.len() as u32)
        .filter(|s| world.subnets[*s as usize].nsg == Some(nsg))
        .map(|s| json!({"id": subnet_id(world, s)}))
        .collect();
    let etag = n.etag();
    let mut props = json!({
        "provisioningState": "Succeeded",
        "resourceGuid": uuid::Uuid::from_u128(nsg as u128 + 0x5eed).to_string(),
        "securityRules": n.rules.iter().map(|r| r.render(&id, "securityRules", &etag)).collect::<Vec<_>>(),
        "defaultSecurityRules": default_rules().iter().map(|r| r.render(&id, "defaultSecurityRules", &etag)).collect::<Vec<_>>(),
    });
    if !nics.is_empty() {
        props["networkInterfaces"] = json!(nics);
    }
    if !subnets.is_empty() {
        props["subnets"] = json!(subnets);
    }
    json!({
        "name": n.name, "id": id, "etag": etag,
        "type": "Microsoft.Network/networkSecurityGroups",
        "location": world.groups[n.group as usize].location,
        "properties": props,
    })
}

pub fn get_nic(app: &Arc<App>, group: u16, name: &str) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let vm = world
        .vm_by_nic(group, name)
        .ok_or_else(|| not_found(&world, group, "Microsoft.Network/networkInterfaces", name))?;
    Ok(Reply::ok(render_nic(&world, vm)))
}

pub fn get_public_ip(app: &Arc<App>, group: u16, name: &str) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let vm = world
        .vm_by_pip(group, name)
        .ok_or_else(|| not_found(&world, group, "Microsoft.Network/publicIPAddresses", name))?;
    Ok(Reply::ok(render_public_ip(&world, vm)))
}

pub fn get_subnet(app: &Arc<App>, group: u16, vnet: &str, name: &str) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let s = world.subnet(group, vnet, name).ok_or_else(|| {
        not_found(
            &world,
            group,
            "Microsoft.Network/virtualNetworks/subnets",
            &format!("{vnet}/{name}"),
        )
    })?;
    let subnet = &world.subnets[s as usize];
    let mut props = json!({"addressPrefix": subnet.prefix, "provisioningState": "Succeeded", "privateEndpointNetworkPolicies": "Disabled", "privateLinkServiceNetworkPolicies": "Enabled"});
    if let Some(n) = subnet.nsg {
        props["networkSecurityGroup"] = json!({"id": nsg_id(&world, n)});
    }
    Ok(Reply::ok(json!({
        "id": subnet_id(&world, s), "name": subnet.name, "etag": etag(1),
        "type": "Microsoft.Network/virtualNetworks/subnets",
        "properties": props,
    })))
}

/// Every VNet of the world once, as `(group, name)`: the VNets the subnets name, then the
/// bastion world's (a hub or sandbox VNet).
pub fn vnets(world: &World) -> Vec<(u16, String)> {
    let mut out: Vec<(u16, String)> = Vec::new();
    let named = world
        .subnets
        .iter()
        .map(|s| (s.group, s.vnet.clone()))
        .chain(
            world
                .bastion
                .vnets
                .iter()
                .map(|v| (v.group, v.name.clone())),
        );
    for (group, name) in named {
        if !out
            .iter()
            .any(|(g, n)| *g == group && n.eq_ignore_ascii_case(&name))
        {
            out.push((group, name));
        }
    }
    out
}

/// The VNet `name` of `group` as the world spells it, if there is one.
pub fn find_vnet(world: &World, group: u16, name: &str) -> Option<String> {
    vnets(world)
        .into_iter()
        .find(|(g, n)| *g == group && n.eq_ignore_ascii_case(name))
        .map(|(_, n)| n)
}

pub fn vnet_id(world: &World, group: u16, vnet: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/virtualNetworks/{vnet}",
        group_prefix(world, group)
    )
}

/// A virtual network as ARM's `VirtualNetworks_Get` returns it: address space, subnets (with
/// their NSGs) and peerings. Resource Graph holds the same resource
/// (`microsoft.network/virtualnetworks`), so its rows come from here too: one renderer, so the
/// two views of a VNet cannot drift apart.
pub fn render_vnet(world: &World, group: u16, vnet: &str) -> Value {
    let id = vnet_id(world, group, vnet);
    let modelled = world.bastion.vnet(group, vnet);
    let subnets: Vec<Value> = (0..world.subnets.len() as u32)
        .filter(|s| {
            let sub = &world.subnets[*s as usize];
            sub.group == group && sub.vnet.eq_ignore_ascii_case(vnet)
        })
        .map(|s| {
            let subnet = &world.subnets[s as usize];
            let mut props = json!({"provisioningState": "Succeeded", "addressPrefix": subnet.prefix, "privateEndpointNetworkPolicies": "Disabled", "privateLinkServiceNetworkPolicies": "Enabled"});
            if let Some(n) = subnet.nsg {
                props["networkSecurityGroup"] = json!({"id": nsg_id(world, n)});
            }
            json!({"name": subnet.name, "id": subnet_id(world, s), "etag": etag(1),
                   "type": "Microsoft.Network/virtualNetworks/subnets", "properties": props})
        })
        .collect();
    // The bastion world knows each VNet's `/16`; a group's VNet is the `/16` of its subnets.
    let address = match modelled {
        Some(v) => world.bastion.vnets[v].prefix(),
        None => world
            .subnets
            .iter()
            .find(|s| s.group == group && s.vnet.eq_ignore_ascii_case(vnet))
            .and_then(|s| s.prefix.split('/').next())
            .map(|ip| {
                let o: Vec<&str> = ip.split('.').collect();
                format!("{}.{}.0.0/16", o[0], o.get(1).unwrap_or(&"0"))
            })
            .unwrap_or_default(),
    };
    let peerings: Vec<Value> = modelled
        .map(|v| render_peerings(world, v, &id))
        .unwrap_or_default();
    let guid = super::bastion::seeded_guid(world, vnet);
    json!({
        "name": vnet, "id": id, "etag": format!("W/\"{guid}\""),
        "type": "Microsoft.Network/virtualNetworks",
        "location": world.groups[group as usize].location,
        "properties": {
            "provisioningState": "Succeeded",
            "resourceGuid": guid.to_string(),
            "addressSpace": {"addressPrefixes": [address]},
            "subnets": subnets,
            "virtualNetworkPeerings": peerings,
            "enableDdosProtection": false,
        },
    })
}

/// The peerings of bastion-world VNet `vnet` (peered both ways, `Connected`).
fn render_peerings(world: &World, vnet: usize, id: &str) -> Vec<Value> {
    let v = &world.bastion.vnets[vnet];
    world
        .bastion
        .peerings
        .iter()
        .filter_map(|&(x, y)| match (x == vnet, y == vnet) {
            (true, _) => Some(y),
            (_, true) => Some(x),
            _ => None,
        })
        .map(|remote| {
            let r = &world.bastion.vnets[remote];
            let name = format!("{}-to-{}", v.name, r.name);
            json!({
                "name": name, "id": format!("{id}/virtualNetworkPeerings/{name}"),
                "type": "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
                "properties": {
                    "provisioningState": "Succeeded",
                    "peeringState": "Connected",
                    "peeringSyncLevel": "FullyInSync",
                    "remoteVirtualNetwork": {"id": vnet_id(world, r.group, &r.name)},
                    "remoteAddressSpace": {"addressPrefixes": [r.prefix()]},
                    "allowVirtualNetworkAccess": true,
                    "allowForwardedTraffic": false,
                    "allowGatewayTransit": false,
                    "useRemoteGateways": false,
                },
            })
        })
        .collect()
}

/// `VirtualNetworks_Get`.
pub fn get_vnet(app: &Arc<App>, group: u16, name: &str) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let vnet = find_vnet(&world, group, name)
        .ok_or_else(|| not_found(&world, group, "Microsoft.Network/virtualNetworks", name))?;
    Ok(Reply::ok(render_vnet(&world, group, &vnet)))
}

/// `VirtualNetworks_ListAll` (subscription) and `VirtualNetworks_List` (resource group).
pub fn list_vnets(app: &Arc<App>, group: Option<u16>) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let value: Vec<Value> = vnets(&world)
        .into_iter()
        .filter(|(g, _)| group.is_none_or(|want| *g == want))
        .map(|(g, n)| render_vnet(&world, g, &n))
        .collect();
    Ok(Reply::ok(json!({ "value": value })))
}

fn nsg_or_404(app: &Arc<App>, world: &mut World, group: u16, name: &str) -> Result<u32, ArmError> {
    let n = world.nsg(group, name).ok_or_else(|| {
        not_found(
            world,
            group,
            "Microsoft.Network/networkSecurityGroups",
            name,
        )
    })?;
    let _ = app;
    world.nsgs[n as usize].purge_expired(tokio::time::Instant::now());
    Ok(n)
}

/// The Network RP locks an NSG while one of its writes runs: another write meanwhile answers
/// 429 `RetryableErrorDueToAnotherOperation` with `Retry-After` (ARM.md §8, §9: "returns 429
/// with the RetryableErrorDueToAnotherOperation error code when the target resource is locked
/// by another operation"), so clients serialise writes per NSG.
fn nsg_busy(app: &Arc<App>, world: &World, n: u32) -> Result<(), ArmError> {
    let nsg = &world.nsgs[n as usize];
    let Some(running) = nsg
        .rules
        .iter()
        .find(|r| matches!(r.provisioning_state, "Updating" | "Deleting"))
    else {
        return Ok(());
    };
    let wait = app.scaled(RULE_TIME).as_secs_f64().ceil().max(1.0) as u64;
    let op = if running.provisioning_state == "Deleting" {
        "DeleteSecurityRuleOperation"
    } else {
        "PutSecurityRuleOperation"
    };
    Err(ArmError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RetryableErrorDueToAnotherOperation",
        format!(
            "Operation {op} is updating resource {}. The call can be retried in {wait} seconds.",
            nsg_id(world, n)
        ),
    )
    .header("retry-after", wait.to_string()))
}

/// `If-Match` on a rule write is checked against the rule's etag, which is the NSG's
/// (`etag.rs`): any write to the NSG since the client's read fails it with 412.
fn check_rule_if_match(req: &Req, nsg: &Nsg, nsg_id: &str, rule: &str) -> Result<(), ArmError> {
    let current = nsg.rule(rule).map(|_| nsg.etag());
    let rule_id = match nsg.rule(rule) {
        Some(i) => format!("{nsg_id}/securityRules/{}", nsg.rules[i].name),
        None => format!("{nsg_id}/securityRules/{rule}"),
    };
    super::etag::check_if_match(req.if_match.as_deref(), current.as_deref(), &rule_id)
}

/// Applies the next write someone else makes to this NSG just before a client's write, as a
/// completed operation (`EmulatorHandle::interpose_rule_writes`).
fn interposed_write(world: &mut World, n: u32) {
    let id = nsg_id(world, n);
    let nsg = &mut world.nsgs[n as usize];
    let Some(write) = nsg.interposed.pop_front() else {
        return;
    };
    match write {
        InterposedWrite::Put { rule, body } => {
            let rule_id = format!("{id}/securityRules/{rule}");
            match Rule::from_body(&rule, &rule_id, &body) {
                Ok(mut new) => {
                    new.provisioning_state = "Succeeded";
                    match nsg.rule(&rule) {
                        Some(i) => nsg.rules[i] = new,
                        None => nsg.rules.push(new),
                    }
                }
                Err(e) => tracing::warn!(rule, error = %e.message, "interposed rule write refused"),
            }
        }
        InterposedWrite::Delete { rule } => {
            nsg.rules.retain(|r| !r.name.eq_ignore_ascii_case(&rule));
        }
    }
    // Accepted, then completed: two etags, as for any write.
    nsg.touch();
    nsg.touch();
}

pub fn get_nsg(app: &Arc<App>, group: u16, name: &str) -> Result<Reply, ArmError> {
    let mut world = lock(&app.world);
    let n = nsg_or_404(app, &mut world, group, name)?;
    Ok(Reply::ok(render_nsg(&world, n)))
}

pub fn list_rules(app: &Arc<App>, group: u16, name: &str) -> Result<Reply, ArmError> {
    let mut world = lock(&app.world);
    let n = nsg_or_404(app, &mut world, group, name)?;
    let id = nsg_id(&world, n);
    let nsg = &world.nsgs[n as usize];
    let etag = nsg.etag();
    let value: Vec<Value> = nsg
        .rules
        .iter()
        .map(|r| r.render(&id, "securityRules", &etag))
        .collect();
    Ok(Reply::ok(json!({ "value": value })))
}

pub fn list_default_rules(app: &Arc<App>, group: u16, name: &str) -> Result<Reply, ArmError> {
    let mut world = lock(&app.world);
    let n = nsg_or_404(app, &mut world, group, name)?;
    let id = nsg_id(&world, n);
    let etag = world.nsgs[n as usize].etag();
    let value: Vec<Value> = default_rules()
        .iter()
        .map(|r| r.render(&id, "defaultSecurityRules", &etag))
        .collect();
    Ok(Reply::ok(json!({ "value": value })))
}

pub fn get_rule(app: &Arc<App>, group: u16, name: &str, rule: &str) -> Result<Reply, ArmError> {
    let mut world = lock(&app.world);
    let n = nsg_or_404(app, &mut world, group, name)?;
    let nsg = &world.nsgs[n as usize];
    let r = nsg.rule(rule).ok_or_else(|| {
        not_found(
            &world,
            group,
            "Microsoft.Network/networkSecurityGroups/securityRules",
            &format!("{name}/{rule}"),
        )
    })?;
    Ok(Reply::ok(nsg.rules[r].render(
        &nsg_id(&world, n),
        "securityRules",
        &nsg.etag(),
    )))
}

pub fn put_rule(
    app: &Arc<App>,
    req: &Req,
    group: u16,
    name: &str,
    rule: &str,
) -> Result<Reply, ArmError> {
    let body = req.json()?;
    let rule_id = {
        let world = lock(&app.world);
        world
            .nsg(group, name)
            .map(|n| format!("{}/securityRules/{rule}", nsg_id(&world, n)))
            .unwrap_or_else(|| rule.to_string())
    };
    let mut new = Rule::from_body(rule, &rule_id, &body)?;
    let (status, rendered, region, sub) = {
        let mut world = lock(&app.world);
        let n = nsg_or_404(app, &mut world, group, name)?;
        interposed_write(&mut world, n);
        nsg_busy(app, &world, n)?;
        let id = nsg_id(&world, n);
        let nsg = &mut world.nsgs[n as usize];
        check_rule_if_match(req, nsg, &id, rule)?;
        nsg.check_conflict(&new)?;
        let status = match nsg.rule(rule) {
            Some(i) => {
                new.name = nsg.rules[i].name.clone();
                nsg.rules[i] = new;
                StatusCode::OK
            }
            None => {
                nsg.rules.push(new);
                StatusCode::CREATED
            }
        };
        nsg.touch();
        let i = nsg.rule(rule).unwrap_or(0);
        let rendered = nsg.rules[i].render(&id, "securityRules", &nsg.etag());
        let region = world.groups[group as usize].location;
        (status, rendered, region, world.subscription.clone())
    };
    let urls = lock(&app.ops).begin(
        Provider::Network,
        &app.endpoint,
        &sub,
        region,
        &req.api_version,
    );
    let app = app.clone();
    let (id, nsg_name, rule_name) = (urls.id.clone(), name.to_string(), rule.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(app.scaled(RULE_TIME)).await;
        let fail = app.lro_fails();
        {
            let mut world = lock(&app.world);
            if let Some(n) = world.nsg(group, &nsg_name) {
                let nsg = &mut world.nsgs[n as usize];
                if let Some(i) = nsg.rule(&rule_name) {
                    nsg.rules[i].provisioning_state = if fail { "Failed" } else { "Succeeded" };
                    // The completed write gets its own etag (recorded: 201 body vs final GET).
                    nsg.touch();
                }
            }
        }
        let state = if fail {
            OpState::Failed {
                code: "InternalServerError".into(),
                message: "An error occurred.".into(),
            }
        } else {
            OpState::Succeeded(None)
        };
        lock(&app.ops).finish(&id, state);
    });
    Ok(Reply::status(status, Some(rendered)).header("azure-asyncoperation", urls.async_operation))
}

pub fn delete_rule(
    app: &Arc<App>,
    req: &Req,
    group: u16,
    name: &str,
    rule: &str,
) -> Result<Reply, ArmError> {
    let (region, sub) = {
        let mut world = lock(&app.world);
        let n = nsg_or_404(app, &mut world, group, name)?;
        interposed_write(&mut world, n);
        if world.nsgs[n as usize].rule(rule).is_some() {
            nsg_busy(app, &world, n)?;
        }
        let id = nsg_id(&world, n);
        let nsg = &mut world.nsgs[n as usize];
        check_rule_if_match(req, nsg, &id, rule)?;
        let Some(i) = nsg.rule(rule) else {
            return Ok(Reply::status(StatusCode::NO_CONTENT, None));
        };
        nsg.rules[i].provisioning_state = "Deleting";
        nsg.touch();
        (
            world.groups[group as usize].location,
            world.subscription.clone(),
        )
    };
    let urls = lock(&app.ops).begin(
        Provider::Network,
        &app.endpoint,
        &sub,
        region,
        &req.api_version,
    );
    let app = app.clone();
    let (id, nsg_name, rule_name) = (urls.id.clone(), name.to_string(), rule.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(app.scaled(RULE_TIME)).await;
        {
            let mut world = lock(&app.world);
            if let Some(n) = world.nsg(group, &nsg_name) {
                let nsg = &mut world.nsgs[n as usize];
                nsg.rules
                    .retain(|r| !r.name.eq_ignore_ascii_case(&rule_name));
                nsg.touch();
            }
        }
        lock(&app.ops).finish(&id, OpState::Succeeded(None));
    });
    Ok(Reply::status(StatusCode::ACCEPTED, None)
        .header("azure-asyncoperation", urls.async_operation)
        .header("location", urls.location))
}

#[cfg(all(test, feature = "testing"))]
#[path = "network_etag_tests.rs"]
mod etag_tests;
