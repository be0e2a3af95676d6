//! `Microsoft.Network/bastionHosts` and the virtual networks a bastion serves: get a bastion by
//! name or id, and find the bastions that reach a VM the way `az ssh vm --bastion` does
//! (`azext_ssh/bastion_utils.py`, BASTION.md §1): VM → NIC → subnet → VNet, then bastions whose
//! `AzureBastionSubnet` lies in that VNet (or, Developer SKU, whose `virtualNetwork.id` is it),
//! then the same for every VNet peered with it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::ArmClient;
use super::config::Provider;
use super::error::{AzureError, Result};
use super::graph::{GraphOptions, graph_query};
use super::network::SubResource;
use super::resource_id::{ResourceId, same_id};
use super::vm::Vm;

pub const BASTION_TYPE: &str = "Microsoft.Network/bastionHosts";
const VNET_TYPE: &str = "Microsoft.Network/virtualNetworks";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BastionHost {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub sku: Option<Sku>,
    #[serde(default)]
    pub properties: BastionProperties,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sku {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BastionProperties {
    /// The data-plane host, e.g. `bst-1a2b.bastion.azure.com`.
    #[serde(default)]
    pub dns_name: Option<String>,
    /// The portal's "Native client support".
    #[serde(default)]
    pub enable_tunneling: Option<bool>,
    #[serde(default)]
    pub enable_ip_connect: Option<bool>,
    #[serde(default)]
    pub ip_configurations: Vec<BastionIpConfiguration>,
    /// Developer SKU: the VNet it serves (it has no `AzureBastionSubnet`).
    #[serde(default)]
    pub virtual_network: Option<SubResource>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BastionIpConfiguration {
    #[serde(default)]
    pub properties: BastionIpConfigurationProperties,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BastionIpConfigurationProperties {
    #[serde(default)]
    pub subnet: Option<SubResource>,
}

impl BastionHost {
    /// `Basic`, `Standard`, `Premium`, `Developer`, `QuickConnect`; empty when absent.
    pub fn sku_name(&self) -> &str {
        self.sku.as_ref().map(|s| s.name.as_str()).unwrap_or("")
    }

    pub fn tunneling(&self) -> bool {
        self.properties.enable_tunneling == Some(true)
    }

    /// The `AzureBastionSubnet` id, when the bastion sits in one.
    pub fn subnet_id(&self) -> Option<&str> {
        self.properties
            .ip_configurations
            .first()
            .and_then(|c| c.properties.subnet.as_ref())
            .map(|s| s.id.as_str())
            .filter(|s| !s.is_empty())
    }

    /// The VNet it serves: its subnet's parent, or `virtualNetwork.id` (Developer).
    pub fn vnet_id(&self) -> Option<String> {
        if let Some(subnet) = self.subnet_id() {
            return ResourceId::parse(subnet)
                .ok()
                .and_then(|id| id.parent())
                .map(|p| p.to_string());
        }
        self.properties
            .virtual_network
            .as_ref()
            .map(|v| v.id.clone())
            .filter(|v| !v.is_empty())
    }

    pub fn resource_group(&self) -> String {
        ResourceId::parse(&self.id)
            .ok()
            .and_then(|id| id.resource_group().map(str::to_string))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VirtualNetwork {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub properties: VnetProperties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VnetProperties {
    #[serde(default)]
    pub virtual_network_peerings: Vec<Peering>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Peering {
    #[serde(default)]
    pub properties: PeeringProperties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeeringProperties {
    #[serde(default)]
    pub remote_virtual_network: Option<SubResource>,
    /// `Connected` when traffic flows; `Initiated`/`Disconnected` otherwise.
    #[serde(default)]
    pub peering_state: Option<String>,
}

/// A bastion by resource group and name.
pub async fn get_bastion(
    client: &ArmClient,
    resource_group: &str,
    name: &str,
) -> Result<BastionHost> {
    super::names::resource_group(resource_group)?;
    super::names::child_name("bastion", name)?;
    let id = ResourceId::new(
        client.subscription(),
        resource_group,
        "Microsoft.Network",
        "bastionHosts",
        name,
    );
    client
        .get_json(&id.to_string(), Provider::Network, &[])
        .await
}

/// A bastion by resource id (any subscription the token can read).
pub async fn get_bastion_by_id(client: &ArmClient, id: &str) -> Result<BastionHost> {
    let id = ResourceId::parse_typed(id, BASTION_TYPE)?;
    client
        .get_json(&id.to_string(), Provider::Network, &[])
        .await
}

pub async fn get_virtual_network(client: &ArmClient, id: &str) -> Result<VirtualNetwork> {
    let id = ResourceId::parse_typed(id, VNET_TYPE)?;
    client
        .get_json(&id.to_string(), Provider::Network, &[])
        .await
}

/// The VNet of a VM's primary NIC (the parent of its subnet).
pub fn vm_vnet_id(vm: &Vm) -> Option<String> {
    let subnet = ResourceId::parse(vm.subnet_id.as_deref()?).ok()?;
    subnet.parent().map(|p| p.to_string())
}

/// Bastions serving `vnet_id` itself, from Resource Graph.
pub async fn bastions_in_vnet(client: &ArmClient, vnet_id: &str) -> Result<Vec<BastionHost>> {
    let vnet = ResourceId::parse_typed(vnet_id, VNET_TYPE)?.to_string();
    let quoted = kql_string(&vnet)?;
    let prefix = kql_string(&format!("{vnet}/"))?;
    let query = format!(
        "resources | where type =~ 'microsoft.network/bastionhosts' and \
         (properties.ipConfigurations[0].properties.subnet.id startswith {prefix} \
         or properties.virtualNetwork.id =~ {quoted})"
    );
    let subscription = ResourceId::parse(&vnet)?.subscription().to_string();
    let rows = graph_query(
        client,
        &query,
        &GraphOptions {
            subscriptions: vec![subscription],
            ..GraphOptions::default()
        },
    )
    .await?;
    rows.into_iter().map(bastion_from_row).collect()
}

/// Every bastion that reaches `vm`: those in its VNet first, then those in peered VNets (a
/// peering that is not `Connected` carries no traffic and is skipped).
pub async fn bastions_for_vm(client: &ArmClient, vm: &Vm) -> Result<Vec<BastionHost>> {
    let Some(vnet_id) = vm_vnet_id(vm) else {
        return Ok(Vec::new());
    };
    let mut found = bastions_in_vnet(client, &vnet_id).await?;
    let vnet = match get_virtual_network(client, &vnet_id).await {
        Ok(v) => v,
        // Without read access to the VNet (or a VNet since deleted) there are no peerings to
        // follow; the bastions found so far still count.
        Err(e) if matches!(e.status(), Some(403 | 404)) => return Ok(found),
        Err(e) => return Err(e),
    };
    for peering in &vnet.properties.virtual_network_peerings {
        let p = &peering.properties;
        let connected = p
            .peering_state
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("connected"));
        let Some(remote) = p.remote_virtual_network.as_ref().filter(|_| connected) else {
            continue;
        };
        for b in bastions_in_vnet(client, &remote.id).await? {
            if !found.iter().any(|f| same_id(&f.id, &b.id)) {
                found.push(b);
            }
        }
    }
    Ok(found)
}

/// A Resource Graph row (`sku` and `properties` as the ARM GET gives them).
fn bastion_from_row(row: Value) -> Result<BastionHost> {
    serde_json::from_value(row).map_err(|e| AzureError::Decode {
        method: "POST".into(),
        path: "/providers/Microsoft.ResourceGraph/resources (bastion rows)".into(),
        reason: e.to_string(),
    })
}

/// A KQL string literal; resource ids never hold quotes or backslashes, so refuse them rather
/// than escape.
fn kql_string(s: &str) -> Result<String> {
    if s.contains(['\'', '\\', '"', '\n']) {
        return Err(AzureError::InvalidInput(format!(
            "`{s}` cannot be used in a Resource Graph query"
        )));
    }
    Ok(format!("'{s}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(json: Value) -> BastionHost {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn standard_bastion_from_the_spec_example_shape() {
        let b = host(serde_json::json!({
            "id": "/subscriptions/s/resourceGroups/rg1/providers/Microsoft.Network/bastionHosts/bastionhosttenant",
            "name": "bastionhosttenant",
            "sku": {"name": "Standard"},
            "properties": {
                "dnsName": "bst-1.bastion.azure.com",
                "enableTunneling": true,
                "ipConfigurations": [{"name": "c", "properties": {
                    "subnet": {"id": "/subscriptions/s/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet2/subnets/AzureBastionSubnet"}
                }}]
            }
        }));
        assert_eq!(b.sku_name(), "Standard");
        assert!(b.tunneling());
        assert_eq!(
            b.vnet_id().unwrap(),
            "/subscriptions/s/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet2"
        );
        assert_eq!(b.resource_group(), "rg1");
    }

    #[test]
    fn developer_bastion_serves_its_virtual_network() {
        let b = host(serde_json::json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/bastionHosts/dev",
            "sku": {"name": "Developer"},
            "properties": {"virtualNetwork": {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"}, "ipConfigurations": []}
        }));
        assert!(!b.tunneling());
        assert!(b.vnet_id().unwrap().ends_with("/virtualNetworks/v"));
    }

    #[test]
    fn quotes_never_reach_a_query() {
        assert!(kql_string("a'b").is_err());
        assert_eq!(kql_string("/x").unwrap(), "'/x'");
    }
}
