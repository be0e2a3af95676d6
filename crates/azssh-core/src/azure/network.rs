//! Network resources a VM's reachability depends on: network interface, subnet, public IP and
//! network security group, and the NSG's security rules (list, get, create-or-update, delete).
//! Field names follow the `Microsoft.Network` examples (ARM.md §6, §8).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::ArmClient;
use super::config::Provider;
use super::error::{AzureError, Result};
use super::resource_id::ResourceId;

/// `{"id": "..."}`: how ARM references another resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubResource {
    #[serde(default)]
    pub id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub properties: NicProperties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NicProperties {
    #[serde(default)]
    pub ip_configurations: Vec<IpConfiguration>,
    #[serde(default)]
    pub network_security_group: Option<SubResource>,
    #[serde(default)]
    pub virtual_machine: Option<SubResource>,
    #[serde(default)]
    pub primary: Option<bool>,
    #[serde(default)]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IpConfiguration {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub properties: IpConfigurationProperties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IpConfigurationProperties {
    #[serde(default, rename = "privateIPAddress")]
    pub private_ip_address: Option<String>,
    #[serde(default, rename = "publicIPAddress")]
    pub public_ip_address: Option<SubResource>,
    #[serde(default)]
    pub subnet: Option<SubResource>,
    #[serde(default)]
    pub primary: Option<bool>,
}

impl NetworkInterface {
    /// The ip configuration marked `primary`, else the first.
    pub fn primary_ip_configuration(&self) -> Option<&IpConfiguration> {
        let configs = &self.properties.ip_configurations;
        configs
            .iter()
            .find(|c| c.properties.primary == Some(true))
            .or_else(|| configs.first())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub properties: SubnetProperties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetProperties {
    #[serde(default)]
    pub address_prefix: Option<String>,
    /// ARM.md §6 marks this path NOT VERIFIED; absent is treated as "no subnet NSG".
    #[serde(default)]
    pub network_security_group: Option<SubResource>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PublicIpAddress {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub properties: PublicIpProperties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PublicIpProperties {
    /// Absent while a dynamic address is not allocated (VM deallocated).
    #[serde(default, rename = "ipAddress")]
    pub ip_address: Option<String>,
    #[serde(default, rename = "publicIPAllocationMethod")]
    pub allocation_method: Option<String>,
    #[serde(default, rename = "publicIPAddressVersion")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkSecurityGroup {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub properties: NsgProperties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NsgProperties {
    #[serde(default)]
    pub security_rules: Vec<SecurityRule>,
    #[serde(default)]
    pub default_security_rules: Vec<SecurityRule>,
    #[serde(default)]
    pub network_interfaces: Vec<SubResource>,
    #[serde(default)]
    pub subnets: Vec<SubResource>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

/// A security rule as ARM returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecurityRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub properties: SecurityRuleProperties,
}

/// `SecurityRulePropertiesFormat` (ARM.md §8). Empty lists and absent values are not sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityRuleProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `Tcp`, `Udp`, `Icmp`, `Esp`, `Ah` or `*`.
    #[serde(default)]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_port_ranges: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_port_ranges: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_address_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_address_prefixes: Vec<String>,
    /// `Allow` or `Deny`.
    #[serde(default)]
    pub access: String,
    /// 100..=4096, unique per direction.
    #[serde(default)]
    pub priority: i32,
    /// `Inbound` or `Outbound`.
    #[serde(default)]
    pub direction: String,
    /// Read-only: never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
}

impl SecurityRuleProperties {
    /// Every source prefix, from the single field and the list alike (ARM accepts either).
    pub fn sources(&self) -> impl Iterator<Item = &String> {
        self.source_address_prefix
            .iter()
            .chain(self.source_address_prefixes.iter())
    }

    /// Every destination prefix, from the single field and the list alike.
    pub fn destinations(&self) -> impl Iterator<Item = &String> {
        self.destination_address_prefix
            .iter()
            .chain(self.destination_address_prefixes.iter())
    }

    /// An inbound allow rule for one TCP/UDP port from one source, as `open_port` needs.
    pub fn allow_inbound(protocol: &str, port: u16, source: &str, priority: i32) -> Self {
        SecurityRuleProperties {
            protocol: protocol.to_string(),
            source_port_range: Some("*".into()),
            destination_port_range: Some(port.to_string()),
            source_address_prefix: Some(source.to_string()),
            destination_address_prefix: Some("*".into()),
            access: "Allow".into(),
            priority,
            direction: "Inbound".into(),
            ..Default::default()
        }
    }

    /// The PUT body: `{"properties": {...}}` without read-only fields (example
    /// `NetworkSecurityGroupRuleCreate.json`).
    pub fn to_request_body(&self) -> Value {
        let mut props = self.clone();
        props.provisioning_state = None;
        serde_json::json!({ "properties": props })
    }

    /// Whether the rule's destination covers `port` (single ports, ranges `a-b`, `*`).
    pub fn covers_port(&self, port: u16) -> bool {
        self.destination_port_range
            .iter()
            .chain(self.destination_port_ranges.iter())
            .any(|r| port_range_contains(r, port))
    }
}

fn port_range_contains(range: &str, port: u16) -> bool {
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

/// The lowest priority at or after `preferred` that no rule of `direction` uses (ARM rejects
/// duplicates with `SecurityRuleConflict`, ARM.md §8). `None` when 100..=4096 is full.
pub fn free_priority(rules: &[SecurityRule], direction: &str, preferred: i32) -> Option<i32> {
    let used: std::collections::HashSet<i32> = rules
        .iter()
        .filter(|r| r.properties.direction.eq_ignore_ascii_case(direction))
        .map(|r| r.properties.priority)
        .collect();
    (preferred.max(100)..=4096)
        .chain(100..preferred.clamp(100, 4097))
        .find(|p| !used.contains(p))
}

async fn get_typed<T: serde::de::DeserializeOwned>(
    client: &ArmClient,
    id: &str,
    type_: &str,
) -> Result<T> {
    let id = ResourceId::parse_typed(id, type_)?;
    client
        .get_json(&id.to_string(), Provider::Network, &[])
        .await
}

pub async fn get_network_interface(client: &ArmClient, id: &str) -> Result<NetworkInterface> {
    get_typed(client, id, "Microsoft.Network/networkInterfaces").await
}

/// The NSG with its rules and what it is attached to (`networkInterfaces`, `subnets`).
pub async fn get_network_security_group(
    client: &ArmClient,
    id: &str,
) -> Result<NetworkSecurityGroup> {
    get_typed(client, id, "Microsoft.Network/networkSecurityGroups").await
}

pub async fn get_subnet(client: &ArmClient, id: &str) -> Result<Subnet> {
    get_typed(client, id, "Microsoft.Network/virtualNetworks/subnets").await
}

pub async fn get_public_ip(client: &ArmClient, id: &str) -> Result<PublicIpAddress> {
    get_typed(client, id, "Microsoft.Network/publicIPAddresses").await
}

fn rule_path(nsg_id: &str, name: &str) -> Result<String> {
    let nsg = ResourceId::parse_typed(nsg_id, "Microsoft.Network/networkSecurityGroups")?;
    super::names::rule_name(name)?;
    Ok(nsg.child("securityRules", name).to_string())
}

/// The NSG's own rules (not the default ones), all pages.
pub async fn list_security_rules(client: &ArmClient, nsg_id: &str) -> Result<Vec<SecurityRule>> {
    let nsg = ResourceId::parse_typed(nsg_id, "Microsoft.Network/networkSecurityGroups")?;
    client
        .list(&format!("{nsg}/securityRules"), Provider::Network, &[])
        .await
}

/// One rule, `None` when it does not exist.
pub async fn get_security_rule(
    client: &ArmClient,
    nsg_id: &str,
    name: &str,
) -> Result<Option<SecurityRule>> {
    client
        .get_optional(&rule_path(nsg_id, name)?, Provider::Network, &[])
        .await
}

/// PUT the rule and wait (the network RP answers 201 `Updating` + `Azure-AsyncOperation`, then
/// the final GET returns `Succeeded` and a new etag: `recordings/excerpts/test_network_nsg.yaml`).
pub async fn create_or_update_security_rule(
    client: &ArmClient,
    nsg_id: &str,
    name: &str,
    properties: &SecurityRuleProperties,
) -> Result<SecurityRule> {
    put_security_rule_if_match(client, nsg_id, name, properties, None).await
}

/// `create_or_update_security_rule` with `If-Match: etag` when `etag` is given: the etag a read
/// of the rule returned. The network RP keeps one etag per NSG, carried by every rule of it, and
/// changes it on every write to the NSG (azure-cli `test_network_nsg.yaml`), so any change to
/// the NSG since the read answers 412 `PreconditionFailed` (`AzureError::is_precondition_failed`)
/// and nothing is written: re-read and decide again.
pub async fn put_security_rule_if_match(
    client: &ArmClient,
    nsg_id: &str,
    name: &str,
    properties: &SecurityRuleProperties,
    etag: Option<&str>,
) -> Result<SecurityRule> {
    let path = rule_path(nsg_id, name)?;
    let what = format!("security rule `{name}`");
    client
        .put_lro_if_match(
            &path,
            Provider::Network,
            &properties.to_request_body(),
            &what,
            etag,
        )
        .await
}

/// DELETE the rule and wait; deleting a missing rule succeeds.
pub async fn delete_security_rule(client: &ArmClient, nsg_id: &str, name: &str) -> Result<()> {
    delete_security_rule_if_match(client, nsg_id, name, None).await
}

/// `delete_security_rule` with `If-Match: etag` when given (412 when the NSG changed since the
/// rule was read; see `put_security_rule_if_match`).
pub async fn delete_security_rule_if_match(
    client: &ArmClient,
    nsg_id: &str,
    name: &str,
    etag: Option<&str>,
) -> Result<()> {
    let path = rule_path(nsg_id, name)?;
    client
        .delete_lro_if_match(
            &path,
            Provider::Network,
            &format!("deletion of security rule `{name}`"),
            etag,
        )
        .await
}

/// Checks a rule source: `*`/`Internet`/`Any` or any prefix of length 0 (returns true: open to
/// everyone), an IPv4/IPv6 address, a CIDR, or a service tag (`VirtualNetwork`,
/// `AzureCloud.westeurope`). Lists whose union is everything: `workflow::nsg::internet_wide`.
pub fn validate_source(source: &str) -> Result<bool> {
    let bad = |reason: &str| AzureError::InvalidSource {
        source_prefix: source.to_string(),
        reason: reason.to_string(),
    };
    let s = source.trim();
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s == "*" || s.eq_ignore_ascii_case("internet") || s.eq_ignore_ascii_case("any") {
        return Ok(true);
    }
    if let Some((addr, len)) = s.split_once('/') {
        let ip: std::net::IpAddr = addr
            .parse()
            .map_err(|_| bad("the part before `/` is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        return match len.parse::<u8>() {
            Ok(0) => Ok(true),
            Ok(n) if n <= max => Ok(false),
            _ => Err(bad(&format!("the prefix length must be 0-{max}"))),
        };
    }
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(false);
    }
    let tag_like = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    if tag_like && !s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        Ok(false)
    } else {
        Err(bad("it is neither an address, a CIDR nor a service tag"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(direction: &str, priority: i32) -> SecurityRule {
        SecurityRule {
            properties: SecurityRuleProperties {
                direction: direction.into(),
                priority,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn free_priority_skips_used_ones_in_the_same_direction() {
        let rules = [
            rule("Inbound", 1000),
            rule("Inbound", 1001),
            rule("Outbound", 1002),
        ];
        assert_eq!(free_priority(&rules, "inbound", 1000), Some(1002));
        assert_eq!(free_priority(&rules, "Outbound", 1000), Some(1000));
    }

    #[test]
    fn ssh_rule_body_has_the_documented_shape() {
        let body = SecurityRuleProperties::allow_inbound("Tcp", 22, "203.0.113.7/32", 1000)
            .to_request_body();
        assert_eq!(
            body,
            serde_json::json!({"properties": {"protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22",
                "sourceAddressPrefix": "203.0.113.7/32", "destinationAddressPrefix": "*", "access": "Allow",
                "priority": 1000, "direction": "Inbound"}})
        );
    }

    #[test]
    fn port_coverage() {
        let mut p = SecurityRuleProperties::allow_inbound("Tcp", 22, "*", 100);
        assert!(p.covers_port(22) && !p.covers_port(23));
        p.destination_port_range = Some("20-30".into());
        assert!(p.covers_port(23));
        p.destination_port_range = Some("*".into());
        assert!(p.covers_port(3389));
    }

    #[test]
    fn sources_are_validated() {
        for ok in [
            "203.0.113.7",
            "203.0.113.0/24",
            "2001:db8::/32",
            "VirtualNetwork",
            "AzureCloud.westeurope",
        ] {
            assert_eq!(validate_source(ok).ok(), Some(false), "{ok}");
        }
        for world in [
            "*",
            "Internet",
            "internet",
            "0.0.0.0/0",
            "Any",
            "0::/0",
            "1.2.3.4/0",
        ] {
            assert_eq!(validate_source(world).ok(), Some(true), "{world}");
        }
        for bad in [
            "",
            " ",
            "1.2.3.4/33",
            "300.1.1.1",
            "1.2.3",
            "a b",
            "10.0.0.0/x",
            "$(x)",
            "1.2.3.4;",
        ] {
            let err = validate_source(bad).unwrap_err();
            assert_eq!(
                crate::error::UserError::kind(&err),
                "azure.invalid_source",
                "{bad}"
            );
        }
    }

    #[test]
    fn rule_names_cannot_escape_the_path() {
        let nsg = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n";
        assert!(rule_path(nsg, "../x").is_err());
        assert!(rule_path(nsg, "allow-SSH").is_ok());
    }
}
