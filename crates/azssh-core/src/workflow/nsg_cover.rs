//! Whether a standing rule someone else wrote already admits a source to a VM, so `open_port`
//! writes no narrower duplicate beside it and says so instead. Azure evaluates an NSG's inbound
//! rules by priority and the first rule matching the packet decides (allow or deny), so the
//! answer is the first rule, by priority, that matches this port, protocol, destination and
//! every address of the source; JIT rules are skipped, since they vanish when their request
//! ends and are not standing access.

use std::net::IpAddr;

use crate::azure::network::SecurityRule;
use crate::workflow::nsg::{canonical, cidr, internet_wide, prefix_contains, reaches_vm};

/// Whether the rule's source `prefix` holds every address of `source`: `*`/`Any`/a `/0` hold
/// everything, `Internet` every public address, a CIDR the addresses and CIDRs inside it, and a
/// service tag itself only.
fn prefix_holds(prefix: &str, source: &str) -> bool {
    let p = prefix.trim();
    if internet_wide(&[p.to_string()]) && !p.eq_ignore_ascii_case("internet") {
        return true;
    }
    match (cidr(p), cidr(source)) {
        (Some((net, len)), Some((ip, src_len))) => src_len >= len && prefix_contains(net, len, ip),
        (None, Some((ip, _))) if p.eq_ignore_ascii_case("internet") => is_public(ip),
        _ => canonical(p) == canonical(source),
    }
}

/// Azure's `Internet` tag is the address space outside the virtual network: not the private,
/// loopback or link-local ranges.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_private() || v4.is_loopback() || v4.is_link_local()),
        IpAddr::V6(v6) => !(v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00),
    }
}

/// The standing allow rule that already admits `source` to the VM on `port`/`protocol`, when
/// the first matching rule by priority is one; `None` when nothing matches or a deny decides.
pub fn standing_admitter<'a>(
    rules: &'a [SecurityRule],
    port: u16,
    protocol: &str,
    source: &str,
    private_ip: Option<IpAddr>,
) -> Option<&'a SecurityRule> {
    let mut matching: Vec<&SecurityRule> = rules
        .iter()
        .filter(|r| {
            !r.name
                .as_deref()
                .is_some_and(|n| n.starts_with("SecurityCenter-JITRule"))
        })
        .filter(|r| {
            let p = &r.properties;
            p.direction.eq_ignore_ascii_case("Inbound")
                && (p.protocol.eq_ignore_ascii_case(protocol) || p.protocol == "*")
                && p.covers_port(port)
                && reaches_vm(p, private_ip)
                && p.sources().any(|prefix| prefix_holds(prefix, source))
        })
        .collect();
    matching.sort_by_key(|r| r.properties.priority);
    matching
        .first()
        .copied()
        .filter(|r| r.properties.access.eq_ignore_ascii_case("Allow"))
}

/// What `open_port` says when such a rule makes its own rule unnecessary: a warning when the
/// rule is open to the whole Internet (someone's wide rule the caller may not know about),
/// otherwise `None` (the runbook's "already allows" line says it).
pub fn wide_rule_warning(
    rule: &SecurityRule,
    nsg: &str,
    port: u16,
    source: &str,
) -> Option<String> {
    let p = &rule.properties;
    let sources: Vec<String> = p.sources().cloned().collect();
    internet_wide(&sources).then(|| {
        format!(
            "port {port} is already open to the whole Internet (`{}`) through rule `{}` on `{nsg}` (priority {}), which admits `{source}` too; azssh wrote no narrower rule beside it: narrow or remove that rule if the Internet is not meant",
            sources.join(","),
            rule.name.as_deref().unwrap_or_default(),
            p.priority
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::network::SecurityRuleProperties;

    fn rule(name: &str, priority: i32, allow: bool, source: &str, dest: &str) -> SecurityRule {
        let mut p = SecurityRuleProperties::allow_inbound("Tcp", 22, source, priority);
        p.destination_address_prefix = Some(dest.into());
        if !allow {
            p.access = "Deny".into();
        }
        SecurityRule {
            name: Some(name.into()),
            properties: p,
            ..Default::default()
        }
    }

    const VM: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 4)));

    #[test]
    fn a_wide_rule_on_the_nic_nsg_already_admits_any_source() {
        let rules = [rule("allow-ssh-any", 300, true, "*", "*")];
        let found = standing_admitter(&rules, 22, "Tcp", "203.0.113.7/32", VM);
        assert_eq!(found.and_then(|r| r.name.as_deref()), Some("allow-ssh-any"));
        let w = wide_rule_warning(&rules[0], "vm-nsg", 22, "203.0.113.7/32").unwrap_or_default();
        assert!(
            w.contains("whole Internet")
                && w.contains("`allow-ssh-any`")
                && w.contains("priority 300"),
            "{w}"
        );
        assert!(
            standing_admitter(&rules, 3389, "Tcp", "203.0.113.7", VM).is_none(),
            "other port"
        );
    }

    #[test]
    fn a_cidr_admits_what_it_holds_and_a_deny_first_decides() {
        let corp = rule("corp", 500, true, "203.0.113.0/24", "*");
        assert!(
            standing_admitter(std::slice::from_ref(&corp), 22, "Tcp", "203.0.113.7", VM).is_some()
        );
        assert!(
            standing_admitter(std::slice::from_ref(&corp), 22, "Tcp", "198.51.100.1", VM).is_none()
        );
        assert!(
            standing_admitter(std::slice::from_ref(&corp), 22, "Tcp", "203.0.112.0/23", VM)
                .is_none(),
            "wider than the rule"
        );
        assert!(
            wide_rule_warning(&corp, "n", 22, "203.0.113.7").is_none(),
            "not wide: no warning"
        );
        let deny = rule("deny-ssh", 400, false, "*", "*");
        assert!(standing_admitter(&[corp, deny], 22, "Tcp", "203.0.113.7", VM).is_none());
    }

    #[test]
    fn internet_tag_holds_public_sources_only_and_other_vms_do_not_count() {
        let internet = [rule("web", 300, true, "Internet", "*")];
        assert!(standing_admitter(&internet, 22, "Tcp", "203.0.113.7", VM).is_some());
        assert!(standing_admitter(&internet, 22, "Tcp", "10.1.2.3", VM).is_none());
        let elsewhere = [rule("other-vm", 300, true, "*", "10.0.0.5/32")];
        assert!(standing_admitter(&elsewhere, 22, "Tcp", "203.0.113.7", VM).is_none());
        let mut jit = rule("SecurityCenter-JITRule_1_allow", 100, true, "*", "*");
        jit.properties.priority = 100;
        assert!(standing_admitter(&[jit], 22, "Tcp", "203.0.113.7", VM).is_none());
    }
}
