//! `close_port`: takes back only what `open_port` gave this VM. A subnet NSG's rule made by
//! azssh may be aimed at several VMs (one `/32` per VM in `destinationAddressPrefixes`, because
//! `open_port` adds each VM's address to the same per-source rule), so closing for one VM removes
//! only that VM's destination and deletes the rule only when none is left. A rule azssh did not
//! write (no `azssh:` description, or another source than the one asked for) is never touched,
//! and neither is a rule whose destination (`*`, a tag, a wide CIDR) also admits other network
//! interfaces or a subnet: both are reported as warnings instead.

use std::net::IpAddr;

use crate::azure::client::ArmClient;
use crate::azure::network::{self, SecurityRule, SecurityRuleProperties, validate_source};
use crate::azure::resource_id::same_id;
use crate::azure::vm::Vm;
use crate::workflow::nsg::{
    CloseWhat, NsgError, WRITE_ATTEMPTS, canonical, nsg_name, reaches_vm, rule_name_for,
    set_destinations,
};
use crate::workflow::nsg_writes;

type Result<T> = std::result::Result<T, super::error::WorkflowError>;

/// The mark `open_port` writes in the description of every rule it creates.
pub const AZSSH_MARK: &str = "azssh:";

/// What closing does to one rule for one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosePlan {
    /// azssh's rule held only this VM: delete it.
    Delete,
    /// azssh's rule also holds other VMs' destinations: write it back with these only.
    Narrow(Vec<String>),
    /// The rule's destination is wide (`*`, a tag, a CIDR holding the VM): it may be deleted
    /// only when the NSG guards nothing but this VM's network interface.
    WideDestination,
    /// The rule does not name this VM: nothing to do here.
    NotThisVm,
    /// Someone else's rule: left alone, with the reason.
    Foreign(String),
}

/// A host's destination prefix as `open_port` writes it on a subnet NSG.
fn host_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => format!("{ip}/32"),
        IpAddr::V6(ip) => format!("{ip}/128"),
    }
}

fn destinations(p: &SecurityRuleProperties) -> Vec<String> {
    p.destinations().cloned().collect()
}

/// Decides what closing `rule` for the VM at `private_ip` may do. `source` is the source the
/// caller asked to close (`None`: closing by rule name).
pub fn plan(rule: &SecurityRule, source: Option<&str>, private_ip: Option<IpAddr>) -> ClosePlan {
    let p = &rule.properties;
    let ours = p
        .description
        .as_deref()
        .is_some_and(|d| d.starts_with(AZSSH_MARK));
    if !ours {
        return ClosePlan::Foreign("it was not created by azssh".into());
    }
    if let Some(source) = source {
        let sources: Vec<String> = p.sources().cloned().collect();
        if !(sources.len() == 1 && canonical(&sources[0]) == canonical(source)) {
            return ClosePlan::Foreign(format!("it admits `{}`", sources.join(",")));
        }
    }
    let all = destinations(p);
    if let Some(ip) = private_ip {
        let mine = canonical(&host_prefix(ip));
        let (this_vm, rest): (Vec<String>, Vec<String>) =
            all.iter().cloned().partition(|d| canonical(d) == mine);
        if !this_vm.is_empty() {
            return if rest.is_empty() {
                ClosePlan::Delete
            } else {
                ClosePlan::Narrow(rest)
            };
        }
    }
    if reaches_vm(p, private_ip) || (private_ip.is_none() && !all.is_empty()) {
        ClosePlan::WideDestination
    } else {
        ClosePlan::NotThisVm
    }
}

/// Removes what `open_port` gave the VM (see the module doc) from every NSG of the VM that
/// holds the rule. `true` when a rule was deleted or narrowed; rules left alone are reported.
pub async fn close_port(client: &ArmClient, vm: &Vm, what: &CloseWhat) -> Result<bool> {
    let (name, source) = match what {
        CloseWhat::Name(n) => (n.clone(), None),
        CloseWhat::Source {
            port,
            source,
            protocol,
        } => {
            validate_source(source)?;
            (
                rule_name_for(*port, protocol.as_deref().unwrap_or("Tcp"), source),
                Some(source.as_str()),
            )
        }
    };
    let private_ip: Option<IpAddr> = vm.private_ip.as_deref().and_then(|s| s.parse().ok());
    let mut any = false;
    for nsg in &vm.nsg_ids {
        // Same queue as `open_port`'s writes to this NSG, so a close never races an open of
        // this process (the key is one no open uses: nothing is queued for it).
        let key = format!("close|{name}");
        let turn = nsg_writes::turn(client, nsg, &key, "").await;
        turn.withdraw(&key, "");
        let outcome = close_on(client, vm, nsg, &name, source, private_ip).await;
        // Whatever was written, no later `open_port` may take a remembered rule for access.
        nsg_writes::forget(client, nsg);
        any |= outcome?;
    }
    Ok(any)
}

/// Closes on one NSG. Every write is conditional on the etag the rule was read with (`If-Match`;
/// the network RP changes it on any write to the NSG): another process that added its VM to
/// the same rule meanwhile turns our narrowing or deletion into a 412, and the rule is read and
/// planned again, so its destination is never removed with ours.
async fn close_on(
    client: &ArmClient,
    vm: &Vm,
    nsg: &str,
    name: &str,
    source: Option<&str>,
    private_ip: Option<IpAddr>,
) -> Result<bool> {
    let shown = nsg_name(nsg);
    let left_alone = |why: &str| {
        crate::notice::warn(&format!(
            "rule `{name}` on `{shown}` is left in place: {why}; remove it yourself (`az network nsg rule delete`) if that is meant"
        ));
    };
    for _ in 0..WRITE_ATTEMPTS {
        let Some(rule) = network::get_security_rule(client, nsg, name).await? else {
            return Ok(false);
        };
        let etag = rule.etag.as_deref();
        let written = match plan(&rule, source, private_ip) {
            ClosePlan::NotThisVm => return Ok(false),
            ClosePlan::Foreign(why) => {
                left_alone(&why);
                return Ok(false);
            }
            ClosePlan::Delete => {
                network::delete_security_rule_if_match(client, nsg, name, etag).await
            }
            ClosePlan::Narrow(rest) => {
                let mut props = rule.properties.clone();
                set_destinations(&mut props, rest);
                network::put_security_rule_if_match(client, nsg, name, &props, etag)
                    .await
                    .map(|_| ())
            }
            ClosePlan::WideDestination => {
                let guarded = network::get_network_security_group(client, nsg).await?;
                let nics = &guarded.properties.network_interfaces;
                let only_ours = guarded.properties.subnets.is_empty()
                    && nics.len() == 1
                    && vm
                        .nic_id
                        .as_deref()
                        .is_some_and(|id| same_id(&nics[0].id, id));
                if !only_ours {
                    left_alone(&format!(
                        "its destination `{}` also admits the other VMs behind this NSG ({} network interfaces, {} subnets)",
                        destinations(&rule.properties).join(","),
                        nics.len(),
                        guarded.properties.subnets.len()
                    ));
                    return Ok(false);
                }
                network::delete_security_rule_if_match(client, nsg, name, etag).await
            }
        };
        match written {
            Ok(()) => return Ok(true),
            Err(e) if e.is_precondition_failed() => {
                tracing::debug!(rule = %name, "the NSG changed since the rule was read (412); reading it again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(NsgError::ChangedMeanwhile {
        nsg: shown.to_string(),
        rule: name.to_string(),
        attempts: WRITE_ATTEMPTS,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(description: Option<&str>, source: &str, dests: &[&str]) -> SecurityRule {
        let mut p = SecurityRuleProperties::allow_inbound("Tcp", 5986, source, 1000);
        p.description = description.map(str::to_string);
        set_destinations(&mut p, dests.iter().map(|d| d.to_string()).collect());
        SecurityRule {
            name: Some("azssh-tcp-5986-127-0-0-1-32".into()),
            properties: p,
            ..Default::default()
        }
    }

    const MARK: Option<&str> = Some("azssh: port 5986 from 127.0.0.1");

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn close_on_a_shared_subnet_rule_removes_only_this_vms_destination() {
        let r = rule(MARK, "127.0.0.1", &["10.0.0.4/32", "10.0.0.5/32"]);
        assert_eq!(
            plan(&r, Some("127.0.0.1/32"), ip("10.0.0.4")),
            ClosePlan::Narrow(vec!["10.0.0.5/32".into()])
        );
        let last = rule(MARK, "127.0.0.1", &["10.0.0.5/32"]);
        assert_eq!(plan(&last, None, ip("10.0.0.5")), ClosePlan::Delete);
        assert_eq!(plan(&last, None, ip("10.0.0.4")), ClosePlan::NotThisVm);
    }

    #[test]
    fn close_never_touches_a_rule_azssh_did_not_create() {
        let theirs = rule(Some("ops: winrm"), "127.0.0.1", &["10.0.0.4/32"]);
        assert!(matches!(
            plan(&theirs, None, ip("10.0.0.4")),
            ClosePlan::Foreign(_)
        ));
        let unmarked = rule(None, "127.0.0.1", &["10.0.0.4/32"]);
        assert!(matches!(
            plan(&unmarked, None, ip("10.0.0.4")),
            ClosePlan::Foreign(_)
        ));
        // Ours by mark, but for another source than the one asked to close.
        let other = rule(MARK, "198.51.100.9/32", &["10.0.0.4/32"]);
        assert!(matches!(
            plan(&other, Some("127.0.0.1"), ip("10.0.0.4")),
            ClosePlan::Foreign(_)
        ));
    }

    #[test]
    fn close_of_a_wide_destination_needs_the_nsg_to_guard_only_this_vm() {
        for dest in ["*", "VirtualNetwork", "10.0.0.0/24"] {
            let r = rule(MARK, "127.0.0.1", &[dest]);
            assert_eq!(
                plan(&r, None, ip("10.0.0.4")),
                ClosePlan::WideDestination,
                "{dest}"
            );
        }
        let elsewhere = rule(MARK, "127.0.0.1", &["10.9.0.0/24"]);
        assert_eq!(plan(&elsewhere, None, ip("10.0.0.4")), ClosePlan::NotThisVm);
    }
}
