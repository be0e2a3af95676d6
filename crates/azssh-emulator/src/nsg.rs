//! Network security groups: rules as Azure stores them, their validation (priority range and
//! uniqueness per direction) and their evaluation against an inbound TCP connection.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::reply::ArmError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "Inbound",
            Self::Outbound => "Outbound",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub priority: u16,
    pub direction: Direction,
    pub allow: bool,
    pub protocol: String,
    pub source_ports: Vec<String>,
    pub destination_ports: Vec<String>,
    pub sources: Vec<String>,
    pub destinations: Vec<String>,
    pub description: Option<String>,
    /// `Updating` until the PUT's operation completes, as in the recorded 201 body.
    pub provisioning_state: &'static str,
    /// JIT allow rules vanish when their request ends.
    pub expires: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Nsg {
    pub group: u16,
    pub name: String,
    pub rules: Vec<Rule>,
    /// Bumped by every write (and again when a write's operation completes): the NSG's etag,
    /// which every rule of it carries too (`etag.rs`).
    pub generation: u64,
    /// Writes "someone else" makes just before each of the next client writes (`etag.rs`
    /// tests and `EmulatorHandle::interpose_rule_writes`).
    pub interposed: std::collections::VecDeque<InterposedWrite>,
}

/// A write by another client (a colleague, the portal) that lands between a client's read and
/// its write of the same NSG.
#[derive(Debug, Clone)]
pub enum InterposedWrite {
    /// PUT of a security rule with this `SecurityRule` body (its `properties`).
    Put { rule: String, body: Value },
    /// DELETE of a security rule.
    Delete { rule: String },
}

impl Rule {
    fn tcp(name: &str, priority: u16, allow: bool, source: &str, port: &str) -> Rule {
        Rule {
            name: name.to_string(),
            priority,
            direction: Direction::Inbound,
            allow,
            protocol: "Tcp".into(),
            source_ports: vec!["*".into()],
            destination_ports: vec![port.into()],
            sources: vec![source.into()],
            destinations: vec!["*".into()],
            description: None,
            provisioning_state: "Succeeded",
            expires: None,
        }
    }
    pub fn allow_tcp(name: &str, priority: u16, source: &str, port: &str) -> Rule {
        Self::tcp(name, priority, true, source, port)
    }
    pub fn deny_tcp(name: &str, priority: u16, port: &str) -> Rule {
        Self::tcp(name, priority, false, "*", port)
    }
    /// A lockdown rule: deny every protocol and port from anywhere (the realistic world's
    /// `nsg-deny-all` variant).
    pub fn deny_all_inbound(name: &str, priority: u16) -> Rule {
        let mut rule = Self::tcp(name, priority, false, "*", "*");
        rule.protocol = "*".into();
        rule
    }

    /// Parses a `SecurityRule` PUT body (`{"properties": {...}}`), with Azure's validation
    /// (`rules.rs`: name, description, ports, prefixes, one of singular/plural). `rule_id` is the
    /// rule's resource id, which Azure names in its refusals.
    pub fn from_body(name: &str, rule_id: &str, body: &Value) -> Result<Rule, ArmError> {
        super::rules::check_name(name)?;
        let p = body
            .get("properties")
            .ok_or_else(|| invalid("the request body must contain `properties`"))?;
        let text = |key: &str| p.get(key).and_then(Value::as_str).map(str::to_string);
        let required = |key: &str| {
            text(key).ok_or_else(|| invalid(&format!("security rule property `{key}` is required")))
        };
        let protocol = required("protocol")?;
        if !["tcp", "udp", "icmp", "esp", "ah", "*"]
            .contains(&protocol.to_ascii_lowercase().as_str())
        {
            return Err(invalid(&format!("unknown protocol `{protocol}`")));
        }
        let access = required("access")?;
        let allow = match access.to_ascii_lowercase().as_str() {
            "allow" => true,
            "deny" => false,
            _ => return Err(invalid(&format!("unknown access `{access}`"))),
        };
        let direction = match required("direction")?.to_ascii_lowercase().as_str() {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            other => return Err(invalid(&format!("unknown direction `{other}`"))),
        };
        let priority = p
            .get("priority")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid("security rule property `priority` is required"))?;
        if !(100..=4096).contains(&priority) {
            return Err(ArmError::bad_request(
                "SecurityRuleInvalidPriority",
                format!(
                    "Security rule has invalid Priority. Value provided: {priority} Allowed range 100-4096."
                ),
            ));
        }
        let description = match p.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => Some(super::rules::check_description(d)?),
            Some(_) => {
                return Err(invalid(
                    "security rule property `description` must be a string",
                ));
            }
        };
        use super::rules::Field;
        let source_ports = super::rules::field(p, rule_id, Field::SourcePort)?;
        let destination_ports = super::rules::field(p, rule_id, Field::DestinationPort)?;
        let sources = super::rules::field(p, rule_id, Field::SourceAddress)?;
        let destinations = super::rules::field(p, rule_id, Field::DestinationAddress)?;
        Ok(Rule {
            name: name.to_string(),
            priority: priority as u16,
            direction,
            allow,
            protocol,
            source_ports,
            destination_ports,
            sources,
            destinations,
            description,
            provisioning_state: "Updating",
            expires: None,
        })
    }

    /// The wire `SecurityRule`. Single values go in the singular field and the plural arrays are
    /// sent empty, as the recorded responses do.
    pub fn render(&self, nsg_id: &str, kind: &str, etag: &str) -> Value {
        let split = |v: &Vec<String>| -> (Option<String>, Vec<String>) {
            if v.len() == 1 {
                (Some(v[0].clone()), vec![])
            } else {
                (None, v.clone())
            }
        };
        let mut props = serde_json::Map::new();
        props.insert("provisioningState".into(), json!(self.provisioning_state));
        if let Some(d) = &self.description {
            props.insert("description".into(), json!(d));
        }
        props.insert("protocol".into(), json!(self.protocol));
        for (single, plural, v) in [
            ("sourcePortRange", "sourcePortRanges", &self.source_ports),
            (
                "destinationPortRange",
                "destinationPortRanges",
                &self.destination_ports,
            ),
            (
                "sourceAddressPrefix",
                "sourceAddressPrefixes",
                &self.sources,
            ),
            (
                "destinationAddressPrefix",
                "destinationAddressPrefixes",
                &self.destinations,
            ),
        ] {
            let (s, many) = split(v);
            if let Some(s) = s {
                props.insert(single.into(), json!(s));
            }
            props.insert(plural.into(), json!(many));
        }
        props.insert(
            "access".into(),
            json!(if self.allow { "Allow" } else { "Deny" }),
        );
        props.insert("priority".into(), json!(self.priority));
        props.insert("direction".into(), json!(self.direction.as_str()));
        json!({
            "name": self.name,
            "id": format!("{nsg_id}/{kind}/{}", self.name),
            "etag": etag,
            "type": format!("Microsoft.Network/networkSecurityGroups/{kind}"),
            "properties": Value::Object(props),
        })
    }

    fn active(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| now < t)
    }

    fn matches_inbound_tcp(&self, source: Ipv4Addr, targets: &[Ipv4Addr], port: u16) -> bool {
        self.direction == Direction::Inbound
            && (self.protocol == "*" || self.protocol.eq_ignore_ascii_case("tcp"))
            && self.destination_ports.iter().any(|r| port_in(r, port))
            && self.sources.iter().any(|p| prefix_matches(p, source))
            && self
                .destinations
                .iter()
                .any(|p| targets.iter().any(|t| prefix_matches(p, *t)))
    }
}

pub fn invalid(message: &str) -> ArmError {
    ArmError::bad_request(
        "InvalidRequestFormat",
        format!("Cannot parse the request. {message}"),
    )
}

/// The default rules every NSG carries at 65000, 65001 and 65500 (inbound and outbound).
pub fn default_rules() -> Vec<Rule> {
    let mut v = Vec::new();
    for (name, prio, allow, src, dst, dir) in [
        (
            "AllowVnetInBound",
            65000u16,
            true,
            "VirtualNetwork",
            "VirtualNetwork",
            Direction::Inbound,
        ),
        (
            "AllowAzureLoadBalancerInBound",
            65001,
            true,
            "AzureLoadBalancer",
            "*",
            Direction::Inbound,
        ),
        ("DenyAllInBound", 65500, false, "*", "*", Direction::Inbound),
        (
            "AllowVnetOutBound",
            65000,
            true,
            "VirtualNetwork",
            "VirtualNetwork",
            Direction::Outbound,
        ),
        (
            "AllowInternetOutBound",
            65001,
            true,
            "*",
            "Internet",
            Direction::Outbound,
        ),
        (
            "DenyAllOutBound",
            65500,
            false,
            "*",
            "*",
            Direction::Outbound,
        ),
    ] {
        let mut r = Rule::tcp(name, prio, allow, src, "*");
        r.protocol = "*".into();
        r.destinations = vec![dst.into()];
        r.direction = dir;
        v.push(r);
    }
    v
}

/// Port ranges as Azure writes them: `*`, `22`, `1000-2000`.
fn port_in(range: &str, port: u16) -> bool {
    let range = range.trim();
    if range == "*" {
        return true;
    }
    match range.split_once('-') {
        Some((a, b)) => match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
            (Ok(a), Ok(b)) => (a..=b).contains(&port),
            _ => false,
        },
        None => range.parse::<u16>() == Ok(port),
    }
}

/// Address prefixes: `*`, service tags, CIDR or a single address. The emulated virtual
/// networks all live in 10.0.0.0/8, so that is `VirtualNetwork`, and everything else counts as
/// `Internet` (loopback callers included: they play the part of the internet).
fn prefix_matches(prefix: &str, ip: Ipv4Addr) -> bool {
    let in_vnet = ip.octets()[0] == 10;
    match prefix.trim().to_ascii_lowercase().as_str() {
        "*" | "any" => true,
        "virtualnetwork" => in_vnet,
        "internet" => !in_vnet,
        "azureloadbalancer" => ip == Ipv4Addr::new(168, 63, 129, 16),
        p => {
            let (addr, bits) = match p.split_once('/') {
                Some((a, b)) => (a, b.parse::<u32>().ok()),
                None => (p, Some(32)),
            };
            match (addr.parse::<Ipv4Addr>(), bits) {
                (Ok(a), Some(bits)) if bits <= 32 => {
                    let mask = if bits == 0 {
                        0
                    } else {
                        u32::MAX << (32 - bits)
                    };
                    u32::from(a) & mask == u32::from(ip) & mask
                }
                _ => false,
            }
        }
    }
}

impl Nsg {
    pub fn new(group: u16, name: String) -> Nsg {
        Nsg {
            group,
            name,
            rules: Vec::new(),
            generation: 1,
            interposed: Default::default(),
        }
    }

    /// The NSG's etag, which every rule of it carries (`etag.rs`).
    pub fn etag(&self) -> String {
        let seed = self.name.bytes().fold(u64::from(self.group) + 1, |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(b))
        });
        super::etag::weak_etag(seed, self.generation)
    }

    /// Records a write: the NSG and all its rules get a new etag.
    pub fn touch(&mut self) {
        self.generation += 1;
    }

    pub fn rule(&self, name: &str) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// Drops JIT rules whose time is up, as Defender for Cloud does when a request ends.
    pub fn purge_expired(&mut self, now: Instant) {
        let before = self.rules.len();
        self.rules.retain(|r| r.active(now));
        if self.rules.len() != before {
            self.touch();
        }
    }

    /// Azure refuses a second rule with the same priority and direction (400 `SecurityRuleConflict`).
    pub fn check_conflict(&self, rule: &Rule) -> Result<(), ArmError> {
        match self.rules.iter().find(|r| {
            !r.name.eq_ignore_ascii_case(&rule.name)
                && r.priority == rule.priority
                && r.direction == rule.direction
        }) {
            Some(other) => Err(ArmError::bad_request(
                "SecurityRuleConflict",
                format!(
                    "Security rule {} conflicts with rule {}. Rules cannot have the same Priority and Direction. To learn more, see aka.ms/nsgrules.",
                    rule.name, other.name
                ),
            )),
            None => Ok(()),
        }
    }

    /// The lowest free inbound priority at or above `from`.
    pub fn free_priority(&self, from: u16) -> Option<u16> {
        (from..=4096).find(|p| {
            !self
                .rules
                .iter()
                .any(|r| r.priority == *p && r.direction == Direction::Inbound)
        })
    }

    /// First match by priority wins; the default rules close the list.
    pub fn admits(
        &self,
        source: Ipv4Addr,
        private_ip: Ipv4Addr,
        public_ip: Option<Ipv4Addr>,
        port: u16,
        now: Instant,
    ) -> bool {
        let mut targets = vec![private_ip];
        targets.extend(public_ip);
        let mut rules: Vec<&Rule> = self.rules.iter().filter(|r| r.active(now)).collect();
        rules.sort_by_key(|r| r.priority);
        let defaults = default_rules();
        rules
            .into_iter()
            .chain(defaults.iter())
            .find(|r| r.matches_inbound_tcp(source, &targets, port))
            .is_some_and(|r| r.allow)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nsg(rules: Vec<Rule>) -> Nsg {
        Nsg {
            rules,
            ..Nsg::new(0, "n".into())
        }
    }
    const ME: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
    const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);

    #[test]
    fn empty_nsg_denies_internet_ssh() {
        assert!(!nsg(vec![]).admits(ME, VM, None, 22, Instant::now()));
        assert!(nsg(vec![]).admits(Ipv4Addr::new(10, 1, 0, 9), VM, None, 22, Instant::now()));
    }

    #[test]
    fn lower_priority_number_wins() {
        let n = nsg(vec![
            Rule::deny_tcp("deny", 200, "22"),
            Rule::allow_tcp("allow", 100, "127.0.0.1/32", "22"),
        ]);
        assert!(n.admits(ME, VM, None, 22, Instant::now()));
        assert!(!n.admits(Ipv4Addr::new(127, 0, 0, 2), VM, None, 22, Instant::now()));
        assert!(!n.admits(ME, VM, None, 23, Instant::now()));
    }

    #[test]
    fn expired_jit_rule_no_longer_admits() {
        let now = Instant::now();
        let mut r = Rule::allow_tcp("jit", 100, "*", "22");
        r.expires = Some(now);
        assert!(!nsg(vec![r]).admits(ME, VM, None, 22, now));
    }

    #[test]
    fn priority_conflict_is_per_direction() {
        let n = nsg(vec![Rule::allow_tcp("a", 1000, "*", "443")]);
        assert!(
            n.check_conflict(&Rule::allow_tcp("b", 1000, "*", "22"))
                .is_err()
        );
        let mut out = Rule::allow_tcp("c", 1000, "*", "22");
        out.direction = Direction::Outbound;
        assert!(n.check_conflict(&out).is_ok());
        assert!(
            n.check_conflict(&Rule::allow_tcp("a", 1000, "*", "22"))
                .is_ok()
        );
    }

    #[test]
    fn rule_body_priority_out_of_range_is_rejected() {
        let body = json!({"properties": {"protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 50}});
        assert_eq!(
            Rule::from_body("r", "id", &body).err().map(|e| e.code),
            Some("SecurityRuleInvalidPriority".into())
        );
    }

    #[test]
    fn port_ranges_and_prefixes() {
        assert!(port_in("20-25", 22) && port_in("*", 1) && !port_in("2a", 2));
        assert!(prefix_matches("127.0.0.0/8", ME) && prefix_matches("Internet", ME));
        assert!(!prefix_matches("VirtualNetwork", ME) && prefix_matches("0.0.0.0/0", ME));
    }
}
