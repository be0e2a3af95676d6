//! Microsoft.Security just-in-time VM access: one policy named `default` per resource group and
//! region holding the group's JIT VMs (ports 22 and 3389, up to PT3H), and `initiate`, which adds
//! a time-boxed allow rule to the VM's NSGs and answers 202 with the request (not an LRO).

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::compute::{group_prefix, vm_id};
use super::nsg::Rule;
use super::reply::{ArmError, Reply};
use super::server::{App, Req, lock};
use super::world::World;

/// The longest access a request may ask for (`maxRequestAccessDuration` of every port, an
/// ISO 8601 duration: "Minimum 5 minutes, maximum 1 day", ARM.md §11).
const MAX_ACCESS_ISO: &str = "PT3H";
/// Each policy port's allowed sources: any.
const POLICY_SOURCE: &str = "*";

/// Whether a policy port's allowed source admits the requested one (`*` admits any).
fn source_allowed(policy: &str, requested: &str) -> bool {
    policy == "*" || policy.eq_ignore_ascii_case(requested)
}

/// An ISO 8601 duration of days, hours, minutes and seconds (`P1D`, `PT3H`, `PT5M30S`).
pub fn parse_iso_duration(s: &str) -> Option<time::Duration> {
    let rest = s.strip_prefix('P')?;
    let (date, clock) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total = time::Duration::ZERO;
    let mut read = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                num.push(c);
            } else {
                let secs = units.iter().find(|(u, _)| *u == c)?.1;
                let n: i64 = num.parse().ok()?;
                total += time::Duration::seconds(n.checked_mul(secs)?);
                num.clear();
            }
        }
        num.is_empty().then_some(())
    };
    read(date, &[('D', 86_400)])?;
    read(clock, &[('H', 3600), ('M', 60), ('S', 1)])?;
    (!rest.is_empty() && rest != "T").then_some(total)
}
const JIT_PORTS: [u16; 2] = [22, 3389];

fn policy_vms(world: &World, group: u16) -> Vec<usize> {
    (0..world.vms.len())
        .filter(|i| world.vms[*i].group == group && world.vms[*i].jit)
        .collect()
}

fn render_policy(world: &World, group: u16) -> Value {
    let location = world.groups[group as usize].location;
    let vms: Vec<Value> = policy_vms(world, group)
        .into_iter()
        .map(|vm| {
            let mut entry = json!({
                "id": vm_id(world, vm),
                "ports": JIT_PORTS.iter().map(|p| json!({"number": p, "protocol": "*", "allowedSourceAddressPrefix": POLICY_SOURCE, "maxRequestAccessDuration": MAX_ACCESS_ISO})).collect::<Vec<_>>(),
            });
            if let Some(ip) = world.vms[vm].public_ip {
                entry["publicIpAddress"] = json!(ip.to_string());
            }
            entry
        })
        .collect();
    let requests: Vec<Value> = world
        .jit_requests
        .iter()
        .filter(|(g, _)| *g == group)
        .map(|(_, r)| r.clone())
        .collect();
    json!({
        "id": format!("{}/providers/Microsoft.Security/locations/{location}/jitNetworkAccessPolicies/default", group_prefix(world, group)),
        "name": "default",
        "type": "Microsoft.Security/locations/jitNetworkAccessPolicies",
        "kind": "Basic",
        "location": location,
        "properties": {"virtualMachines": vms, "requests": requests, "provisioningState": "Succeeded"},
    })
}

fn has_policy(world: &World, group: u16) -> bool {
    world.vms.iter().any(|v| v.group == group && v.jit)
}

pub fn list(app: &Arc<App>, group: Option<u16>, location: Option<&str>) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let value: Vec<Value> = (0..world.groups.len() as u16)
        .filter(|g| group.is_none_or(|x| x == *g))
        .filter(|g| {
            location.is_none_or(|l| world.groups[*g as usize].location.eq_ignore_ascii_case(l))
        })
        .filter(|g| has_policy(&world, *g))
        .map(|g| render_policy(&world, g))
        .collect();
    Ok(Reply::ok(json!({ "value": value })))
}

fn policy_or_404(world: &World, group: u16, location: &str, name: &str) -> Result<(), ArmError> {
    if name.eq_ignore_ascii_case("default")
        && world.groups[group as usize]
            .location
            .eq_ignore_ascii_case(location)
        && has_policy(world, group)
    {
        Ok(())
    } else {
        Err(ArmError::not_found(
            "Microsoft.Security/locations/jitNetworkAccessPolicies",
            &format!("{location}/{name}"),
            &world.groups[group as usize].name,
        ))
    }
}

pub fn get(app: &Arc<App>, group: u16, location: &str, name: &str) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    policy_or_404(&world, group, location, name)?;
    Ok(Reply::ok(render_policy(&world, group)))
}

fn bad(message: impl Into<String>) -> ArmError {
    ArmError::bad_request("BadRequest", message)
}

/// One validated port of an initiate request.
struct Grant {
    vm: usize,
    port: u16,
    source: String,
    end: OffsetDateTime,
}

fn parse_grants(
    world: &World,
    group: u16,
    body: &Value,
    caller: IpAddr,
) -> Result<Vec<Grant>, ArmError> {
    let vms = body
        .get("virtualMachines")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`virtualMachines` is required."))?;
    let in_policy = policy_vms(world, group);
    let now = OffsetDateTime::now_utc();
    let mut grants = Vec::new();
    for entry in vms {
        let id = entry.get("id").and_then(Value::as_str).unwrap_or_default();
        let vm = in_policy
            .iter()
            .copied()
            .find(|vm| vm_id(world, *vm).eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                bad(format!(
                    "Virtual machine '{id}' is not part of the just-in-time network access policy."
                ))
            })?;
        for port in entry
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let number = port
                .get("number")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("Each port needs a `number`."))?;
            let number = u16::try_from(number)
                .map_err(|_| bad(format!("Port {number} is out of range.")))?;
            if !JIT_PORTS.contains(&number) {
                return Err(bad(format!(
                    "Port {number} is not configured in the just-in-time network access policy."
                )));
            }
            let end = port
                .get("endTimeUtc")
                .and_then(Value::as_str)
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                .ok_or_else(|| bad("Each port needs an `endTimeUtc` (ISO 8601)."))?;
            let max = parse_iso_duration(MAX_ACCESS_ISO).unwrap_or(time::Duration::hours(3));
            if end <= now || end - now > max + time::Duration::minutes(1) {
                return Err(bad(format!(
                    "The requested end time must be in the future and within the policy's maximum request access duration of {MAX_ACCESS_ISO} for port {number}."
                )));
            }
            // "If omitted, the request will be for the source IP address of the initiate request."
            let source = match port.get("allowedSourceAddressPrefix") {
                None | Some(Value::Null) => caller.to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    return Err(bad(format!(
                        "The allowed source address prefix {other} of port {number} is not a string."
                    )));
                }
            };
            if !super::rules::valid_prefix(&source) {
                return Err(bad(format!(
                    "The allowed source address prefix '{source}' of port {number} is not a valid IP address, CIDR or service tag."
                )));
            }
            // The request may only narrow the policy port's allowed sources.
            if !source_allowed(POLICY_SOURCE, &source) {
                return Err(bad(format!(
                    "The allowed source address prefix '{source}' of port {number} is not allowed by the just-in-time network access policy."
                )));
            }
            grants.push(Grant {
                vm,
                port: number,
                source,
                end,
            });
        }
    }
    Ok(grants)
}

pub fn initiate(
    app: &Arc<App>,
    req: &Req,
    group: u16,
    location: &str,
    name: &str,
) -> Result<Reply, ArmError> {
    let body = req.json()?;
    let mut world = lock(&app.world);
    policy_or_404(&world, group, location, name)?;
    let grants = parse_grants(&world, group, &body, req.peer.ip())?;
    let wall_now = OffsetDateTime::now_utc();
    let now = tokio::time::Instant::now();
    let mut per_vm: Vec<(usize, Vec<Value>)> = Vec::new();
    for g in &grants {
        let remaining = (g.end - wall_now).try_into().unwrap_or_default();
        let vm_name = world.vms[g.vm].name.clone();
        for nsg in world.inbound_nsgs(g.vm) {
            let nsg = &mut world.nsgs[nsg as usize];
            nsg.purge_expired(now);
            let Some(priority) = nsg.free_priority(100) else {
                return Err(ArmError::conflict(
                    "Conflict",
                    "No free priority is left in the network security group for a just-in-time rule.",
                ));
            };
            let mut rule = Rule::allow_tcp(
                &format!("SecurityCenter-JITRule_{}_{}_allow", vm_name, g.port),
                priority,
                &g.source,
                &g.port.to_string(),
            );
            rule.expires = Some(now + remaining);
            if let Some(i) = nsg.rule(&rule.name) {
                nsg.rules[i] = rule;
            } else {
                nsg.rules.push(rule);
            }
            nsg.touch();
        }
        let port = json!({
            "number": g.port,
            "allowedSourceAddressPrefix": g.source,
            "endTimeUtc": g.end.format(&Rfc3339).unwrap_or_default(),
            "status": "Initiating",
            "statusReason": "UserRequested",
        });
        match per_vm.iter_mut().find(|(vm, _)| *vm == g.vm) {
            Some((_, ports)) => ports.push(port),
            None => per_vm.push((g.vm, vec![port])),
        }
    }
    let response = json!({
        "virtualMachines": per_vm.iter().map(|(vm, ports)| json!({"id": vm_id(&world, *vm), "ports": ports})).collect::<Vec<_>>(),
        "startTimeUtc": super::reply::now(),
        "requestor": "azssh-emulator-user",
        "justification": body.get("justification").cloned().unwrap_or(Value::Null),
    });
    let mut stored = response.clone();
    for vm in stored["virtualMachines"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        for port in vm["ports"].as_array_mut().into_iter().flatten() {
            port["status"] = json!("Initiated");
        }
    }
    world.jit_requests.push((group, stored));
    Ok(Reply::status(StatusCode::ACCEPTED, Some(response)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_parse() {
        assert_eq!(parse_iso_duration("PT3H"), Some(time::Duration::hours(3)));
        assert_eq!(parse_iso_duration("P1D"), Some(time::Duration::days(1)));
        assert_eq!(
            parse_iso_duration("PT5M30S"),
            Some(time::Duration::seconds(330))
        );
        for bad in ["", "P", "PT", "3H", "PT3X", "PT3"] {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn policy_sources_narrow_only() {
        assert!(source_allowed("*", "203.0.113.7"));
        assert!(source_allowed("203.0.113.7", "203.0.113.7"));
        assert!(!source_allowed("203.0.113.7", "198.51.100.1"));
    }
}
