//! `open_port`/`close_port` as a policy over `azure::network` (ARM calls and DTOs) and
//! `azure::jit`: every source gets its own rule, named from the source, so opening a port never
//! rewrites or narrows access someone else holds, and `close_port` removes only the caller's
//! rule; a subnet NSG's rule names the VM's private address, not `*` (which would open the port
//! on every VM of the subnet); a port under a Defender just-in-time policy is requested through
//! the policy instead of being opened for good; Internet-wide sources, in any spelling, need an
//! explicit opt-in. Also the shapes scripts and reports see.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Value, json};

use crate::azure::client::ArmClient;
use crate::azure::error::AzureError;
use crate::azure::jit::{self, JitAccess, JitPolicy};
use crate::azure::network::{
    self, SecurityRule, SecurityRuleProperties, free_priority, validate_source,
};
use crate::azure::resource_id::{ResourceId, same_id};
use crate::azure::vm::Vm;
use crate::error::UserError;
use crate::error::kind;
use crate::workflow::jit_policies;
use crate::workflow::nsg_cover;
use crate::workflow::nsg_writes;

/// The priority `az vm open-port` uses; the first free one at or after it is taken.
pub const DEFAULT_PRIORITY: i32 = 1000;

/// How many times a rule write is decided and sent when the NSG keeps changing under it (412
/// `PreconditionFailed`) or a priority is taken meanwhile; then the write gives up.
pub(super) const WRITE_ATTEMPTS: u32 = 4;

/// How long a JIT request asks for when the policy names no maximum (the portal's default).
const DEFAULT_JIT_ACCESS: std::time::Duration = std::time::Duration::from_secs(3 * 3600);

/// Refusals of the port policy, in words both interfaces understand (flag, then script option).
#[derive(Debug, thiserror::Error)]
pub enum NsgError {
    #[error("the source `{sources}` admits the whole Internet")]
    InternetWide { sources: String },
    #[error(
        "rule `{name}` already exists on `{nsg}` with source `{sources}`; it is not overwritten"
    )]
    NameTaken {
        name: String,
        nsg: String,
        sources: String,
    },
    #[error("a rule name or priority applies to one source, not to the {count} given")]
    OneSourceOnly { count: usize },
    #[error(
        "just-in-time access through policy `{policy}` is for one source, not the {count} given"
    )]
    JitOneSource { policy: String, count: usize },
    #[error("VM `{vm}` has no private address to name in the subnet NSG `{nsg}`")]
    NoPrivateIp { vm: String, nsg: String },
    #[error("VM `{vm}` has no network security group on its NIC or subnet")]
    NoNsg { vm: String },
    #[error(
        "network security group `{nsg}` kept changing while azssh was writing rule `{rule}`: all {attempts} conditional writes were refused (412 PreconditionFailed), so nothing was written over the other changes"
    )]
    ChangedMeanwhile {
        nsg: String,
        rule: String,
        attempts: u32,
    },
}

impl UserError for NsgError {
    fn kind(&self) -> &'static str {
        match self {
            NsgError::InternetWide { .. } => kind::workflow::INTERNET_WIDE_SOURCE,
            NsgError::NameTaken { .. } => kind::workflow::RULE_NAME_TAKEN,
            NsgError::OneSourceOnly { .. } => kind::workflow::ONE_SOURCE_ONLY,
            NsgError::JitOneSource { .. } => kind::workflow::JIT_ONE_SOURCE,
            NsgError::NoPrivateIp { .. } => kind::workflow::NO_PRIVATE_IP,
            NsgError::NoNsg { .. } => kind::workflow::NO_NSG,
            NsgError::ChangedMeanwhile { .. } => kind::workflow::NSG_CHANGED_MEANWHILE,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            NsgError::InternetWide { .. } => "give your own address or CIDR; to open the port to everyone on purpose pass `--allow-internet` (`allow_internet: true` in a script)".into(),
            NsgError::NameTaken { .. } => "leave the rule name out (each source gets its own `azssh-...` rule), or pick a name no rule uses (`--rule-name`, `name:`)".into(),
            NsgError::OneSourceOnly { .. } => "leave the name and priority out to get one rule per source, or open one source at a time".into(),
            NsgError::JitOneSource { .. } => "request one source at a time, or pass `--permanent-rule` (`permanent: true`) to add standing rules despite the policy".into(),
            NsgError::NoPrivateIp { .. } => "read the VM again (`vm(...)`) once its NIC has an address".into(),
            NsgError::NoNsg { .. } => "without an NSG Azure admits all traffic; attach one (`az network nic update --network-security-group`) to control access".into(),
            NsgError::ChangedMeanwhile { .. } => "another azssh run, a colleague or the portal is editing this NSG right now; run the same command again once they are done (it re-reads the rules and keeps their changes)".into(),
        })
    }
}

type Result<T> = std::result::Result<T, super::error::WorkflowError>;

/// What `open_port(vm, #{port, source, priority, name, protocol, allow_internet, permanent})`
/// asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenPort {
    pub port: u16,
    /// One or more sources (addresses, CIDRs, service tags); each gets its own rule.
    pub sources: Vec<String>,
    /// Asked-for priority: must be free. `None`: 1000, or the next free one after it.
    pub priority: Option<i32>,
    /// Asked-for rule name (one source only). Default: derived from port and source.
    pub name: Option<String>,
    /// Default `Tcp`.
    pub protocol: Option<String>,
    /// The caller means an Internet-wide source (DESIGN.md: asked for explicitly).
    pub allow_internet: bool,
    /// Add a standing rule even when a JIT policy covers the port (with a warning).
    pub permanent: bool,
}

impl OpenPort {
    fn protocol(&self) -> String {
        self.protocol.clone().unwrap_or_else(|| "Tcp".into())
    }
}

/// Splits a `--source` value: one source, or several separated by commas.
pub fn split_sources(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Validates every source and says whether together they admit the whole Internet; refuses
/// that without `allow_internet`.
pub fn check_sources(sources: &[String], allow_internet: bool) -> Result<bool> {
    if sources.is_empty() {
        return Err(AzureError::InvalidSource {
            source_prefix: String::new(),
            reason: "it is empty".into(),
        }
        .into());
    }
    for s in sources {
        validate_source(s)?;
    }
    let wide = internet_wide(sources);
    if wide && !allow_internet {
        return Err(NsgError::InternetWide {
            sources: sources.join(","),
        }
        .into());
    }
    Ok(wide)
}

/// Whether the sources admit everyone: `*`, `Internet`, `Any` (NSGs read them case-
/// insensitively), any prefix of length 0 (`0::/0`, `1.2.3.4/0`), or CIDRs whose union is the
/// whole IPv4 or IPv6 space (`0.0.0.0/1` + `128.0.0.0/1`).
pub fn internet_wide(sources: &[String]) -> bool {
    let spelled = sources.iter().any(|s| {
        let l = s.trim().to_ascii_lowercase();
        matches!(l.as_str(), "*" | "internet" | "any")
            || l.split_once('/')
                .is_some_and(|(_, len)| len.trim().parse::<u8>() == Ok(0))
    });
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for s in sources {
        match cidr(s) {
            Some((IpAddr::V4(a), len)) => {
                let size = 1u128 << (32 - u32::from(len.min(32)));
                let start = u128::from(u32::from(a)) & !(size - 1);
                v4.push((start, start + size - 1));
            }
            Some((IpAddr::V6(a), len)) => {
                let host_bits = 128 - u32::from(len.min(128));
                let mask = if host_bits == 128 {
                    0
                } else {
                    u128::MAX << host_bits
                };
                let start = u128::from(a) & mask;
                v6.push((start, start | !mask));
            }
            None => {}
        }
    }
    spelled || covers_all(v4, u128::from(u32::MAX)) || covers_all(v6, u128::MAX)
}

/// Whether the inclusive ranges cover `0..=max`.
fn covers_all(mut ranges: Vec<(u128, u128)>, max: u128) -> bool {
    ranges.sort_unstable();
    let mut next = 0u128;
    for (start, end) in ranges {
        if start > next {
            return false;
        }
        if end >= max {
            return true;
        }
        next = next.max(end + 1);
    }
    false
}

/// An address or CIDR as (address, prefix length); `None` for service tags and `*`.
pub(super) fn cidr(source: &str) -> Option<(IpAddr, u8)> {
    let s = source.trim();
    match s.split_once('/') {
        Some((a, l)) => Some((a.trim().parse().ok()?, l.trim().parse().ok()?)),
        None => {
            let ip: IpAddr = s.parse().ok()?;
            Some((ip, if ip.is_ipv4() { 32 } else { 128 }))
        }
    }
}

/// The source in one spelling, so `203.0.113.7` and `203.0.113.7/32` are the same source.
pub(super) fn canonical(source: &str) -> String {
    match cidr(source) {
        Some((ip, len)) => format!("{ip}/{len}"),
        None if source.trim() == "*" => "any".into(),
        None => source.trim().to_ascii_lowercase(),
    }
}

/// The rule name for `source` on `port`: `azssh-ssh-203-0-113-7-32`, `azssh-rdp-...`,
/// `azssh-tcp-5986-...`. Azure's rule names are 1-80 characters of `[A-Za-z0-9_.-]`, starting
/// alphanumeric and ending alphanumeric or `_`.
pub fn rule_name_for(port: u16, protocol: &str, source: &str) -> String {
    let proto = protocol.to_ascii_lowercase();
    let service = match (port, proto.as_str()) {
        (22, "tcp") => "ssh".to_string(),
        (3389, "tcp") => "rdp".to_string(),
        (_, "*") => format!("any-{port}"),
        (_, p) => format!("{p}-{port}"),
    };
    let src: String = canonical(source)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut name = format!("azssh-{service}-{src}");
    name.truncate(80);
    name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .to_string()
}

/// Which NSG a rule went to: the NIC's, or the subnet's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NsgScope {
    Nic,
    Subnet,
}

/// A rule that now admits the port to the VM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Admitter {
    pub rule: String,
    pub nsg: String,
    pub priority: i32,
    pub sources: Vec<String>,
}

/// What `open_port` did on one NSG.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NsgOutcome {
    /// The first source's rule (the one written, or the one that already admitted it).
    pub rule: SecurityRule,
    /// Every source's rule on this NSG, in the order of the sources.
    pub rules: Vec<SecurityRule>,
    pub nsg_id: String,
    pub scope: NsgScope,
    /// False when every source was already admitted: nothing was written.
    pub changed: bool,
    /// Set when the default priority was taken and the next free one was used.
    pub priority_moved_from: Option<i32>,
    /// The same port on the subnet's NSG, when the NIC has one too: Azure admits inbound
    /// traffic only when every NSG on the path (subnet, then NIC) allows it.
    pub also: Vec<NsgOutcome>,
    /// Warnings about this NSG: a wide rule already admitting a source, so none was written.
    pub notes: Vec<String>,
}

/// What `open_port` did: a rule per source, or a JIT request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenPortOutcome {
    pub port: u16,
    pub sources: Vec<String>,
    pub open_to_internet: bool,
    /// The NSG rules; `None` when access was requested through JIT instead.
    pub nsg: Option<NsgOutcome>,
    /// The JIT policy covering the port, when one does.
    pub jit_policy: Option<String>,
    /// The JIT request made instead of a standing rule.
    pub jit: Option<JitAccessOutcome>,
    /// Every allow rule on the VM's NSGs that now admits the port, with its sources.
    pub admitted_by: Vec<Admitter>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JitAccessOutcome {
    pub source: Option<String>,
    pub end_time_utc: String,
    pub status: String,
    /// False when an active request for the same source was already there.
    pub changed: bool,
}

/// The NSG to change for a VM: the NIC's, else the subnet's; then the others on the path.
async fn nsgs_on_path(client: &ArmClient, vm: &Vm) -> Result<Vec<(String, NsgScope)>> {
    let none = || NsgError::NoNsg {
        vm: vm.name.clone(),
    };
    let mut out = Vec::new();
    if let Some(nic_id) = &vm.nic_id {
        // The inventory (or this VM's own read) already says which NSG is the NIC's: reading
        // the NIC again would ask Azure the same fact twice (a read per VM in a fleet run).
        let nic_nsg = match known_nic_nsg(vm) {
            Some(known) => known,
            None => network::get_network_interface(client, nic_id)
                .await?
                .properties
                .network_security_group
                .map(|n| n.id),
        };
        if let Some(nsg) = nic_nsg {
            out.push((nsg, NsgScope::Nic));
        }
    } else if let Some(first) = vm.nsg_ids.first() {
        // Without the NIC resolved the first NSG is taken as the NIC's, as before.
        out.push((first.clone(), NsgScope::Nic));
    }
    for id in &vm.nsg_ids {
        if !out.iter().any(|(o, _)| same_id(o, id)) {
            out.push((id.clone(), NsgScope::Subnet));
        }
    }
    if out.is_empty() {
        return Err(none().into());
    }
    Ok(out)
}

/// The NIC's NSG as the VM's resolved network facts give it (`Some(None)`: the NIC has none),
/// when they were read recently enough to act on; `None` when the NIC must be read.
fn known_nic_nsg(vm: &Vm) -> Option<Option<String>> {
    let fresh = vm
        .observed_at
        .is_some_and(|t| t.elapsed() < crate::azure::vm::POWER_STATE_FRESH_FOR);
    (vm.network_resolved && fresh).then(|| vm.nic_nsg_id.clone())
}

/// Whether the rule's destination reaches the VM: `*`, `VirtualNetwork`, or a prefix holding its
/// private address.
pub(super) fn reaches_vm(p: &SecurityRuleProperties, private_ip: Option<IpAddr>) -> bool {
    p.destinations().any(|d| {
        let l = d.trim().to_ascii_lowercase();
        matches!(l.as_str(), "*" | "any" | "virtualnetwork")
            || match (cidr(d), private_ip) {
                (Some((net, len)), Some(ip)) => prefix_contains(net, len, ip),
                _ => false,
            }
    })
}

pub(super) fn prefix_contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

fn sources_of(p: &SecurityRuleProperties) -> Vec<String> {
    p.sources().cloned().collect()
}

/// Whether `rule` is an inbound allow rule for `port`/`protocol` that reaches the VM.
fn admits_port(rule: &SecurityRule, port: u16, protocol: &str, private_ip: Option<IpAddr>) -> bool {
    let p = &rule.properties;
    p.access.eq_ignore_ascii_case("Allow")
        && p.direction.eq_ignore_ascii_case("Inbound")
        && (p.protocol.eq_ignore_ascii_case(protocol) || p.protocol == "*")
        && p.covers_port(port)
        && reaches_vm(p, private_ip)
}

fn same_name(rule: &SecurityRule, name: &str) -> bool {
    rule.name
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
}

/// The JIT policy of the VM when it configures `port`; a resource group without the Security
/// provider's answer (404) has none. The group's policies are listed once for all its VMs
/// (`jit_policies`): per VM it was the same question asked again. Not from Resource Graph
/// (see `jit_policies` for why), so a fleet run still spends one read per resource group.
async fn covering_policy(client: &ArmClient, vm: &Vm, port: u16) -> Result<Option<JitPolicy>> {
    let policy = jit_policies::policies_for(client, &vm.id)
        .await?
        .into_iter()
        .find(|p| {
            p.properties
                .virtual_machines
                .iter()
                .any(|v| same_id(&v.id, &vm.id))
        });
    Ok(policy.filter(|p| {
        p.properties
            .virtual_machines
            .iter()
            .filter(|v| same_id(&v.id, &vm.id))
            .any(|v| v.ports.iter().any(|r| r.number == port))
    }))
}

/// Opens `req.port` to each source on the VM's NSGs (see the module doc), or requests JIT
/// access when a policy covers the port and `permanent` is not set. Warnings are logged and
/// returned.
pub async fn open_port(client: &ArmClient, vm: &Vm, req: &OpenPort) -> Result<OpenPortOutcome> {
    if req.port == 0 {
        return Err(AzureError::InvalidInput("port 0 cannot be opened".into()).into());
    }
    let sources: Vec<String> = req.sources.iter().map(|s| s.trim().to_string()).collect();
    let open_to_internet = check_sources(&sources, req.allow_internet)?;
    if sources.len() > 1 && (req.name.is_some() || req.priority.is_some()) {
        return Err(NsgError::OneSourceOnly {
            count: sources.len(),
        }
        .into());
    }
    let protocol = req.protocol();
    let private_ip: Option<IpAddr> = vm.private_ip.as_deref().and_then(|s| s.parse().ok());
    let mut warnings = Vec::new();
    if open_to_internet {
        warnings.push(format!(
            "port {} of `{}` is open to the whole Internet (asked for); prefer your own address",
            req.port, vm.name
        ));
    }
    let policy = covering_policy(client, vm, req.port).await?;
    let mut outcome = OpenPortOutcome {
        port: req.port,
        sources: sources.clone(),
        open_to_internet,
        nsg: None,
        jit_policy: policy.as_ref().map(|p| p.name.clone()),
        jit: None,
        admitted_by: Vec::new(),
        warnings: Vec::new(),
    };
    match &policy {
        Some(p) if !req.permanent => {
            if sources.len() != 1 {
                return Err(NsgError::JitOneSource {
                    policy: p.name.clone(),
                    count: sources.len(),
                }
                .into());
            }
            outcome.jit = Some(request_jit(client, vm, p, req.port, &sources[0]).await?);
        }
        _ => {
            if let Some(p) = &policy {
                warnings.push(format!(
                    "VM `{}` is under the just-in-time policy `{}`, which covers port {}; a standing rule bypasses it (asked for with --permanent-rule / permanent: true)",
                    vm.name, p.name, req.port
                ));
            }
            let path = nsgs_on_path(client, vm).await?;
            let mut first: Option<NsgOutcome> = None;
            for (nsg, scope) in path {
                let destination = match scope {
                    NsgScope::Nic => "*".to_string(),
                    NsgScope::Subnet => match private_ip {
                        Some(IpAddr::V4(ip)) => format!("{ip}/32"),
                        Some(IpAddr::V6(ip)) => format!("{ip}/128"),
                        None => {
                            return Err(NsgError::NoPrivateIp {
                                vm: vm.name.clone(),
                                nsg: nsg_name(&nsg).to_string(),
                            }
                            .into());
                        }
                    },
                };
                let o = open_on(
                    client,
                    nsg,
                    scope,
                    &destination,
                    req,
                    &sources,
                    &protocol,
                    private_ip,
                )
                .await?;
                match &mut first {
                    None => first = Some(o),
                    Some(f) => f.also.push(o),
                }
            }
            if let Some(f) = &first {
                warnings.extend(
                    f.notes
                        .iter()
                        .chain(f.also.iter().flat_map(|a| &a.notes))
                        .cloned(),
                );
            }
            if let Some(f) = &first
                && let Some(from) = f.priority_moved_from
            {
                crate::notice::info(&format!(
                    "priority {from} is taken; `{}` got priority {}",
                    f.rule.name.clone().unwrap_or_default(),
                    f.rule.properties.priority
                ));
            }
            outcome.nsg = first;
        }
    }
    for nsg in &vm.nsg_ids {
        for rule in nsg_writes::rules_for_report(client, nsg).await? {
            if admits_port(&rule, req.port, &protocol, private_ip) {
                outcome.admitted_by.push(Admitter {
                    rule: rule.name.clone().unwrap_or_default(),
                    nsg: nsg_name(nsg).to_string(),
                    priority: rule.properties.priority,
                    sources: sources_of(&rule.properties),
                });
            }
        }
    }
    for w in &warnings {
        crate::notice::warn(w);
    }
    outcome.warnings = warnings;
    Ok(outcome)
}

pub(super) fn nsg_name(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

/// Requests JIT access for `source`, unless an active request for the same source and port
/// still runs (then nothing is asked: re-running is a no-op).
async fn request_jit(
    client: &ArmClient,
    vm: &Vm,
    policy: &JitPolicy,
    port: u16,
    source: &str,
) -> Result<JitAccessOutcome> {
    let now = time::OffsetDateTime::now_utc();
    if let Some(active) = jit::active_request(policy, &vm.id, port).filter(|a| {
        a.allowed_source_address_prefix
            .as_deref()
            .is_some_and(|s| canonical(s) == canonical(source))
            && time::OffsetDateTime::parse(
                &a.end_time_utc,
                &time::format_description::well_known::Rfc3339,
            )
            .is_ok_and(|end| end > now + time::Duration::minutes(5))
    }) {
        return Ok(JitAccessOutcome {
            source: active.allowed_source_address_prefix,
            end_time_utc: active.end_time_utc,
            status: active.status.unwrap_or_default(),
            changed: false,
        });
    }
    let duration = jit::max_access(policy, &vm.id, port).map_or(DEFAULT_JIT_ACCESS, |max| {
        jit::below_max(max).min(DEFAULT_JIT_ACCESS)
    });
    let access: JitAccess =
        jit::request_and_wait(client, &vm.id, port, Some(source), duration).await?;
    Ok(JitAccessOutcome {
        source: access.source,
        end_time_utc: access.end_time_utc,
        status: access.status,
        changed: true,
    })
}

/// What `open_source` did for one source on one NSG.
struct SourceOutcome {
    /// The rule written, or the one that already admits the source.
    rule: SecurityRule,
    wrote: bool,
    /// The default priority was taken and the next free one used.
    moved: Option<i32>,
    /// A warning for the caller (a wide rule already admits the source).
    note: Option<String>,
}

impl SourceOutcome {
    fn kept(rule: SecurityRule) -> Self {
        SourceOutcome {
            rule,
            wrote: false,
            moved: None,
            note: None,
        }
    }
}

/// One source on one NSG: left alone when a rule already admits it to the VM, else its own rule
/// is written (a rule of that name with another source is never overwritten).
async fn open_source(
    client: &ArmClient,
    nsg: &str,
    destination: &str,
    req: &OpenPort,
    source: &str,
    protocol: &str,
    private_ip: Option<IpAddr>,
) -> Result<SourceOutcome> {
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| rule_name_for(req.port, protocol, source));
    let canon = canonical(source);
    // Writes to one NSG are serialised and grouped across the process (`nsg_writes`): the
    // queue key names the rule, the source, port and protocol, so a grouped write only ever
    // adds destinations for the very same source.
    let key = format!("{name}|{canon}|{}|{protocol}", req.port);
    let turn = nsg_writes::turn(client, nsg, &key, destination).await;
    let holds_source = |r: &SecurityRule| {
        sources_of(&r.properties)
            .iter()
            .any(|s| canonical(s) == canon)
    };
    // A JIT allow rule admits the source only until its request ends: not standing access.
    let admitting = |rules: &[SecurityRule]| {
        rules
            .iter()
            .find(|r| {
                !r.name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("SecurityCenter-JITRule"))
                    && admits_port(r, req.port, protocol, private_ip)
                    && holds_source(r)
                    && req.priority.is_none_or(|p| p == r.properties.priority)
                    && req.name.as_deref().is_none_or(|n| same_name(r, n))
            })
            .cloned()
    };
    // A standing rule someone else wrote that already admits the source (a wide `*` rule on
    // the NIC's NSG, a colleague's CIDR): no narrower duplicate beside it, and the caller is
    // told. Only when the caller left the rule's name and priority to us: asking for them is
    // asking for that very rule.
    let covering = |rules: &[SecurityRule]| {
        if req.name.is_some() || req.priority.is_some() {
            return None;
        }
        nsg_cover::standing_admitter(rules, req.port, protocol, source, private_ip).cloned()
    };
    let covered = |rule: SecurityRule| {
        let note = nsg_cover::wide_rule_warning(&rule, nsg_name(nsg), req.port, source);
        SourceOutcome {
            rule,
            wrote: false,
            moved: None,
            note,
        }
    };
    // Another VM of this run may have written our destination already: no write, no list.
    let (seen, fresh) = turn.rules(client, nsg, true).await?;
    if let Some(rule) = admitting(&seen) {
        turn.withdraw(&key, destination);
        return Ok(SourceOutcome::kept(rule));
    }
    if let Some(rule) = covering(&seen) {
        turn.withdraw(&key, destination);
        return Ok(covered(rule));
    }
    let mut just_read = fresh.then_some(seen);
    let mut conflict_retried = false;
    for _ in 0..WRITE_ATTEMPTS {
        let rules = match just_read.take() {
            Some(r) => r,
            None => turn.rules(client, nsg, false).await?.0,
        };
        if let Some(rule) = admitting(&rules) {
            turn.withdraw(&key, destination);
            return Ok(SourceOutcome::kept(rule));
        }
        if let Some(rule) = covering(&rules) {
            turn.withdraw(&key, destination);
            return Ok(covered(rule));
        }
        let existing = rules.iter().find(|r| same_name(r, &name));
        if let Some(r) = existing {
            let theirs = sources_of(&r.properties);
            // Ours only when it holds exactly this source: then updating it takes nothing from
            // anyone; otherwise it is someone else's access.
            if !(theirs.len() == 1 && canonical(&theirs[0]) == canon) {
                return Err(NsgError::NameTaken {
                    name,
                    nsg: nsg_name(nsg).to_string(),
                    sources: theirs.join(","),
                }
                .into());
            }
        }
        let others: Vec<SecurityRule> = rules
            .iter()
            .filter(|r| !same_name(r, &name))
            .cloned()
            .collect();
        let (priority, moved) = match (existing, req.priority) {
            (Some(r), None) => (r.properties.priority, None),
            (_, Some(want)) => {
                if let Some(holder) = others.iter().find(|r| {
                    r.properties.priority == want
                        && r.properties.direction.eq_ignore_ascii_case("Inbound")
                }) {
                    return Err(AzureError::PriorityTaken {
                        priority: want,
                        holder: holder.name.clone().unwrap_or_default(),
                        nsg: nsg.to_string(),
                    }
                    .into());
                }
                (want, None)
            }
            (None, None) => {
                let p = free_priority(&others, "Inbound", DEFAULT_PRIORITY).ok_or_else(|| {
                    AzureError::InvalidInput(format!("no free inbound priority left in `{nsg}`"))
                })?;
                (p, (p != DEFAULT_PRIORITY).then_some(DEFAULT_PRIORITY))
            }
        };
        let mut props = SecurityRuleProperties::allow_inbound(protocol, req.port, source, priority);
        // Our own rule keeps every destination it already admits (never narrowed), plus ours
        // and those of the VMs queued behind this NSG for the same source.
        let queued = turn.take_pending(&key);
        let mut destinations: Vec<String> = existing
            .map(|r| r.properties.destinations().cloned().collect())
            .unwrap_or_default();
        for d in queued.iter().map(String::as_str).chain([destination]) {
            if !destinations.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                destinations.push(d.to_string());
            }
        }
        set_destinations(&mut props, destinations);
        props.description = Some(format!("azssh: port {} from {source}", req.port));
        // Updating our rule is conditional on the etag the list gave it (the NSG's, which every
        // write to the NSG changes): a colleague's process that added its VM to the same rule
        // since our read makes the write fail with 412 instead of being overwritten, and we
        // read again. A new rule is written without a condition: what the network RP answers to
        // `If-Match` on a rule that does not exist yet is not recorded anywhere we could find.
        let etag = existing.and_then(|r| r.etag.clone());
        match network::put_security_rule_if_match(client, nsg, &name, &props, etag.as_deref()).await
        {
            Err(e) if e.is_precondition_failed() => {
                turn.requeue(&key, &queued);
                tracing::debug!(rule = %name, "the NSG changed since it was read (412); reading it again");
            }
            Err(e)
                if !conflict_retried
                    && req.priority.is_none()
                    && e.code()
                        .is_some_and(|c| c.eq_ignore_ascii_case("SecurityRuleConflict")) =>
            {
                conflict_retried = true;
                turn.requeue(&key, &queued);
                tracing::debug!(rule = %name, priority, "priority taken meanwhile; choosing again");
            }
            Err(e) => {
                // The VMs queued behind us try again on their own turn.
                turn.requeue(&key, &queued);
                turn.withdraw(&key, destination);
                return Err(e.into());
            }
            Ok(rule) => {
                turn.wrote(&rule);
                return Ok(SourceOutcome {
                    rule,
                    wrote: true,
                    moved,
                    note: None,
                });
            }
        }
    }
    turn.withdraw(&key, destination);
    Err(NsgError::ChangedMeanwhile {
        nsg: nsg_name(nsg).to_string(),
        rule: name,
        attempts: WRITE_ATTEMPTS,
    }
    .into())
}

/// One destination in `destinationAddressPrefix`, several in `destinationAddressPrefixes`;
/// `*` (a NIC's NSG) already covers every other.
pub(super) fn set_destinations(props: &mut SecurityRuleProperties, mut destinations: Vec<String>) {
    if destinations.iter().any(|d| d.trim() == "*") {
        destinations = vec!["*".to_string()];
    }
    if destinations.len() == 1 {
        props.destination_address_prefix = destinations.pop();
        props.destination_address_prefixes = Vec::new();
    } else {
        props.destination_address_prefix = None;
        props.destination_address_prefixes = destinations;
    }
}

#[allow(clippy::too_many_arguments)]
async fn open_on(
    client: &ArmClient,
    nsg: String,
    scope: NsgScope,
    destination: &str,
    req: &OpenPort,
    sources: &[String],
    protocol: &str,
    private_ip: Option<IpAddr>,
) -> Result<NsgOutcome> {
    let mut rules = Vec::new();
    let mut changed = false;
    let mut moved = None;
    let mut notes = Vec::new();
    for source in sources {
        let o = open_source(client, &nsg, destination, req, source, protocol, private_ip).await?;
        changed |= o.wrote;
        moved = moved.or(o.moved);
        notes.extend(o.note);
        rules.push(o.rule);
    }
    let rule = rules.first().cloned().unwrap_or_default();
    Ok(NsgOutcome {
        rule,
        rules,
        nsg_id: nsg,
        scope,
        changed,
        priority_moved_from: moved,
        also: Vec::new(),
        notes,
    })
}

/// What `close_port` removes: a rule by name, or the caller's own rule for a source and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseWhat {
    Name(String),
    Source {
        port: u16,
        source: String,
        protocol: Option<String>,
    },
}

/// Takes back what `open_port` gave the VM: the named rule, or the rule `open_port` made for
/// that source; on a rule shared by several VMs only this VM's destination goes, and a rule
/// azssh did not write is never touched (`nsg_close`). `false` when nothing was removed.
pub async fn close_port(client: &ArmClient, vm: &Vm, what: &CloseWhat) -> Result<bool> {
    super::nsg_close::close_port(client, vm, what).await
}

/// A rule as scripts see it.
pub fn rule_json(rule: &SecurityRule, nsg_id: &str) -> Value {
    let p = &rule.properties;
    let ports: Vec<&str> = p
        .destination_port_range
        .iter()
        .chain(p.destination_port_ranges.iter())
        .map(String::as_str)
        .collect();
    let sources = sources_of(p);
    let destinations: Vec<&str> = p.destinations().map(String::as_str).collect();
    json!({
        "name": rule.name, "priority": p.priority, "direction": p.direction, "access": p.access,
        "protocol": p.protocol, "port": ports.join(","), "source": sources.join(","),
        "destination": destinations.join(","),
        "nsg": nsg_name(nsg_id), "nsg_id": nsg_id,
    })
}

fn nsg_outcome_json(o: &NsgOutcome) -> Value {
    let mut v = rule_json(&o.rule, &o.nsg_id);
    if let Value::Object(m) = &mut v {
        m.insert("scope".into(), json!(o.scope));
        m.insert("changed".into(), json!(o.changed));
        m.insert("priority_moved_from".into(), json!(o.priority_moved_from));
        m.insert(
            "rules".into(),
            Value::Array(o.rules.iter().map(|r| rule_json(r, &o.nsg_id)).collect()),
        );
        m.insert(
            "also".into(),
            Value::Array(o.also.iter().map(nsg_outcome_json).collect()),
        );
        if o.also.iter().any(|a| a.changed) {
            m.insert("changed".into(), json!(true));
        }
    }
    v
}

/// `open_port`'s answer: the (first) rule's fields, where it went, what changed, whether JIT
/// was used, and which rules and sources now admit the port.
pub fn outcome_json(o: &OpenPortOutcome) -> Value {
    let mut v = match (&o.nsg, &o.jit) {
        (Some(n), _) => nsg_outcome_json(n),
        (None, Some(j)) => json!({
            "name": (), "port": o.port.to_string(), "source": j.source, "changed": j.changed,
            "end_time_utc": j.end_time_utc, "status": j.status, "also": [], "rules": [],
        }),
        (None, None) => json!({"changed": false}),
    };
    if let Value::Object(m) = &mut v {
        m.insert("sources".into(), json!(o.sources));
        m.insert("open_to_internet".into(), json!(o.open_to_internet));
        m.insert("jit".into(), json!(o.jit.is_some()));
        m.insert("jit_policy".into(), json!(o.jit_policy));
        m.insert("admitted_by".into(), json!(o.admitted_by));
        m.insert("warnings".into(), json!(o.warnings));
    }
    v
}

/// The first inbound TCP rule (by priority) covering `port`: `allow from SRC (rule)`, `deny
/// (rule)`, or the default rules' verdict (`DenyAllInBound` at 65500: only the virtual network
/// and the load balancer get in).
pub fn inbound_verdict(rules: &[SecurityRule], port: u16) -> String {
    let mut inbound: Vec<&SecurityRule> = rules
        .iter()
        .filter(|r| r.properties.direction.eq_ignore_ascii_case("Inbound"))
        .filter(|r| matches!(r.properties.protocol.as_str(), "Tcp" | "tcp" | "*"))
        .filter(|r| r.properties.covers_port(port))
        .collect();
    inbound.sort_by_key(|r| r.properties.priority);
    match inbound.first() {
        Some(r) => {
            let name = r.name.clone().unwrap_or_default();
            if r.properties.access.eq_ignore_ascii_case("Allow") {
                let sources: Vec<String> = r.properties.sources().cloned().collect();
                format!("allow from {} ({name})", sources.join(","))
            } else {
                format!("deny ({name})")
            }
        }
        None => "deny (no rule: DenyAllInBound)".into(),
    }
}

/// A deny rule that admits nobody to `port` before any allow rule could: the first inbound rule
/// covering the port, by priority, in one of the VM's NSGs, when it denies every source
/// (`*`, `Internet`, `Any`, a `/0`). Such a rule is someone's lockdown; azssh reports it
/// rather than outranking it. Returns `(rule, priority, nsg)`.
pub async fn blocking_deny(
    client: &ArmClient,
    vm: &Vm,
    port: u16,
) -> Result<Option<(String, i32, String)>> {
    for nsg in &vm.nsg_ids {
        let rules = network::list_security_rules(client, nsg).await?;
        let mut inbound: Vec<&SecurityRule> = rules
            .iter()
            .filter(|r| r.properties.direction.eq_ignore_ascii_case("Inbound"))
            .filter(|r| matches!(r.properties.protocol.as_str(), "Tcp" | "tcp" | "*"))
            .filter(|r| r.properties.covers_port(port))
            .collect();
        inbound.sort_by_key(|r| r.properties.priority);
        if let Some(first) = inbound.first()
            && first.properties.access.eq_ignore_ascii_case("Deny")
        {
            let sources: Vec<String> = first.properties.sources().cloned().collect();
            if internet_wide(&sources) {
                let nsg_name = ResourceId::parse(nsg)
                    .map(|id| id.name().to_string())
                    .unwrap_or_else(|_| nsg.clone());
                return Ok(Some((
                    first.name.clone().unwrap_or_default(),
                    first.properties.priority,
                    nsg_name,
                )));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict_rule(
        name: &str,
        priority: i32,
        access: &str,
        port: &str,
        source: &str,
    ) -> SecurityRule {
        SecurityRule {
            name: Some(name.into()),
            properties: SecurityRuleProperties {
                protocol: "Tcp".into(),
                destination_port_range: Some(port.into()),
                source_address_prefix: Some(source.into()),
                access: access.into(),
                priority,
                direction: "Inbound".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn inbound_verdict_takes_the_lowest_priority_rule_covering_the_port() {
        let rules = vec![
            verdict_rule("allow-ssh", 1000, "Allow", "22", "203.0.113.7/32"),
            verdict_rule("deny-ssh", 900, "Deny", "22", "*"),
            verdict_rule("rdp", 100, "Allow", "3389", "*"),
        ];
        assert_eq!(inbound_verdict(&rules, 22), "deny (deny-ssh)");
        assert_eq!(
            inbound_verdict(&rules[..1], 22),
            "allow from 203.0.113.7/32 (allow-ssh)"
        );
        assert_eq!(
            inbound_verdict(&rules[2..], 22),
            "deny (no rule: DenyAllInBound)"
        );
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn internet_wide_sources_in_every_spelling() {
        for wide in [
            &["*"][..],
            &["Internet"],
            &["ANY"],
            &["any"],
            &["0.0.0.0/0"],
            &["::/0"],
            &["0::/0"],
            &["1.2.3.4/0"],
            &["0.0.0.0/1", "128.0.0.0/1"],
            &["128.0.0.0/2", "0.0.0.0/1", "192.0.0.0/2"],
            &["::/1", "8000::/1"],
        ] {
            assert!(internet_wide(&s(wide)), "{wide:?}");
        }
        for narrow in [
            &["203.0.113.7"][..],
            &["0.0.0.0/1"],
            &["0.0.0.0/1", "192.0.0.0/2"],
            &["VirtualNetwork"],
            &["10.0.0.0/8", "2001:db8::/32"],
        ] {
            assert!(!internet_wide(&s(narrow)), "{narrow:?}");
        }
    }

    #[test]
    fn internet_wide_needs_the_opt_in() {
        let err = check_sources(&s(&["0.0.0.0/1", "128.0.0.0/1"]), false).unwrap_err();
        assert_eq!(err.kind(), "workflow.internet_wide_source");
        assert!(err.hint().unwrap().contains("--allow-internet"));
        assert_eq!(check_sources(&s(&["Any"]), true).ok(), Some(true));
        assert_eq!(check_sources(&s(&["203.0.113.7"]), false).ok(), Some(false));
        assert_eq!(
            check_sources(&s(&["1.2.3.4;x"]), true).unwrap_err().kind(),
            "azure.invalid_source"
        );
    }

    #[test]
    fn rule_names_follow_azure_rules_and_the_source() {
        assert_eq!(
            rule_name_for(22, "Tcp", "203.0.113.7/32"),
            "azssh-ssh-203-0-113-7-32"
        );
        assert_eq!(
            rule_name_for(22, "Tcp", "203.0.113.7"),
            rule_name_for(22, "tcp", "203.0.113.7/32")
        );
        assert_eq!(rule_name_for(3389, "Tcp", "*"), "azssh-rdp-any");
        assert_eq!(
            rule_name_for(5986, "Tcp", "VirtualNetwork"),
            "azssh-tcp-5986-virtualnetwork"
        );
        let v6 = rule_name_for(22, "Udp", "2001:db8:1:2:3:4:5:6");
        assert!(v6.len() <= 80);
        for name in [v6, rule_name_for(22, "Tcp", "2001:db8::")] {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                    && name.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn destination_must_reach_the_vm() {
        let ip: Option<IpAddr> = "10.1.0.4".parse().ok();
        let mut p = SecurityRuleProperties::allow_inbound("Tcp", 22, "1.2.3.4", 100);
        assert!(reaches_vm(&p, ip));
        p.destination_address_prefix = Some("10.1.0.5/32".into());
        assert!(!reaches_vm(&p, ip));
        p.destination_address_prefix = Some("10.1.0.0/24".into());
        assert!(reaches_vm(&p, ip));
    }
}
