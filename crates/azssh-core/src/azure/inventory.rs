//! The fleet inventory: every VM of the subscription with its power state, primary NIC,
//! addresses, public IP, subnet and both NSGs, from one paged Resource Graph query (ARM.md §7)
//! instead of four GETs per VM (VM with instance view, NIC, public IP, subnet). A fleet run and
//! `vms()` build their `Vm`s from it; per-VM GETs remain only for what the graph cannot say
//! (a VM created after the graph was read, a dynamic public IP assigned by a start).
//!
//! Resource Graph lags behind recent writes by seconds to minutes, so the `Vm`s carry the time
//! they were read (`Vm::observed_at`), and callers that act on a possibly changed fact (is it
//! still running?) decide by that age (`vm::ensure_running`).
//!
//! No user text is pasted into the query: filters apply to the rows (`VmFilter::matches`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::client::ArmClient;
use super::error::{AzureError, Result};
use super::graph::{GraphOptions, graph_query};
use super::resource_id::{ResourceId, same_id};
use super::vm::Vm;

/// VM → primary NIC's primary IP configuration → public IP → subnet, all `leftouter` so a VM
/// without a NIC, address or subnet NSG is still listed. Three joins and two `mv-expand`s: within
/// Resource Graph's limits of three each. Join keys are lower-cased ids (ids compare
/// case-insensitively; Kusto's join is case-sensitive). `id` is projected so pages come in a
/// stable order ("id field is required ... to return the pages in stable sorted fashion").
pub const INVENTORY_QUERY: &str = "Resources
| where type =~ 'microsoft.compute/virtualmachines'
| project id, name, resourceGroup, location, tags,
    size = tostring(properties.hardwareProfile.vmSize),
    osType = tostring(properties.storageProfile.osDisk.osType),
    sku = tostring(properties.storageProfile.imageReference.sku),
    osName = tostring(properties.extended.instanceView.osName),
    osVersion = tostring(properties.extended.instanceView.osVersion),
    power = tostring(properties.extended.instanceView.powerState.code),
    provisioningState = tostring(properties.provisioningState),
    adminUsername = tostring(properties.osProfile.adminUsername),
    computerName = tostring(properties.osProfile.computerName),
    nicKey = tolower(tostring(properties.networkProfile.networkInterfaces[0].id))
| join kind=leftouter (Resources | where type =~ 'microsoft.network/networkinterfaces'
    | mv-expand ipc = properties.ipConfigurations
    | where isnull(ipc.properties.primary) or tobool(ipc.properties.primary)
    | project nicKey = tolower(id), nicId = id,
        privateIp = tostring(ipc.properties.privateIPAddress),
        pipKey = tolower(tostring(ipc.properties.publicIPAddress.id)),
        subnetKey = tolower(tostring(ipc.properties.subnet.id)),
        subnetId = tostring(ipc.properties.subnet.id),
        nicNsg = tostring(properties.networkSecurityGroup.id)) on nicKey
| join kind=leftouter (Resources | where type =~ 'microsoft.network/publicipaddresses'
    | project pipKey = tolower(id), pipId = id, publicIp = tostring(properties.ipAddress)) on pipKey
| join kind=leftouter (Resources | where type =~ 'microsoft.network/virtualnetworks'
    | mv-expand subnet = properties.subnets limit 2000
    | project subnetKey = tolower(tostring(subnet.id)),
        subnetNsg = tostring(subnet.properties.networkSecurityGroup.id)) on subnetKey
| project id, name, resourceGroup, location, tags, size, osType, sku, osName, osVersion, power,
    provisioningState, adminUsername, computerName, nicId, privateIp, pipId, publicIp, subnetId,
    nicNsg, subnetNsg";

/// One row of `INVENTORY_QUERY`. Resource Graph turns missing values into empty strings.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct InventoryRow {
    id: String,
    name: String,
    location: String,
    tags: Option<BTreeMap<String, Value>>,
    size: Option<String>,
    os_type: Option<String>,
    sku: Option<String>,
    os_name: Option<String>,
    os_version: Option<String>,
    power: Option<String>,
    provisioning_state: Option<String>,
    admin_username: Option<String>,
    computer_name: Option<String>,
    nic_id: Option<String>,
    private_ip: Option<String>,
    pip_id: Option<String>,
    public_ip: Option<String>,
    subnet_id: Option<String>,
    nic_nsg: Option<String>,
    subnet_nsg: Option<String>,
}

/// Empty strings (and the nulls of an unmatched `leftouter` row) are absent values.
fn some(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

impl InventoryRow {
    fn into_vm(self, observed_at: std::time::Instant) -> Result<Vm> {
        let id = ResourceId::parse(&self.id)?;
        let power = some(self.power)
            .and_then(|p| p.rsplit_once('/').map(|(_, p)| p.to_ascii_lowercase()))
            .unwrap_or_else(|| "unknown".into());
        let tags = self
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                (k, v)
            })
            .collect();
        let nic_nsg_id = some(self.nic_nsg);
        let mut nsg_ids: Vec<String> = nic_nsg_id.iter().cloned().collect();
        if let Some(n) = some(self.subnet_nsg)
            && !nsg_ids.iter().any(|x| same_id(x, &n))
        {
            nsg_ids.push(n);
        }
        let nic_id = some(self.nic_id);
        Ok(Vm {
            name: if self.name.is_empty() {
                id.name().to_string()
            } else {
                self.name
            },
            resource_group: id.resource_group().unwrap_or_default().to_string(),
            subscription: id.subscription().to_string(),
            id: self.id,
            location: self.location,
            size: some(self.size),
            os_type: some(self.os_type),
            os_name: some(self.os_name),
            os_version: some(self.os_version),
            image_sku: some(self.sku),
            power_state: power,
            provisioning_state: some(self.provisioning_state),
            public_ip: some(self.public_ip),
            private_ip: some(self.private_ip),
            nsg_ids,
            nic_nsg_id,
            tags,
            // A VM whose NIC the graph did not return (deleted, or not indexed yet) is not
            // resolved: a later `refresh()` reads it directly.
            network_resolved: nic_id.is_some(),
            nic_id,
            subnet_id: some(self.subnet_id),
            public_ip_id: some(self.pip_id),
            admin_username: some(self.admin_username),
            computer_name: some(self.computer_name),
            vm_agent_status: None,
            observed_at: Some(observed_at),
        })
    }
}

/// Turns inventory rows into `Vm`s, one per VM id (a VM is listed once even if the graph
/// returned it twice, e.g. two primary IP configurations).
pub fn vms_from_rows(rows: Vec<Value>, observed_at: std::time::Instant) -> Result<Vec<Vm>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let row: InventoryRow = serde_json::from_value(row).map_err(|e| AzureError::Decode {
            method: "POST".into(),
            path: "/providers/Microsoft.ResourceGraph/resources".into(),
            reason: e.to_string(),
        })?;
        if !seen.insert(row.id.to_ascii_lowercase()) {
            continue;
        }
        out.push(row.into_vm(observed_at)?);
    }
    Ok(out)
}

/// Every VM of the client's subscription, in pages of 1000 (Resource Graph's largest `$top`).
pub async fn inventory(client: &ArmClient) -> Result<Vec<Vm>> {
    let observed_at = std::time::Instant::now();
    let rows = graph_query(
        client,
        INVENTORY_QUERY,
        &GraphOptions {
            page_size: Some(1000),
            ..GraphOptions::default()
        },
    )
    .await?;
    vms_from_rows(rows, observed_at)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn row_with_both_nsgs_lists_each_once_nic_first() {
        let row = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web1",
            "name": "web1", "location": "westus", "tags": {"env": "prod"},
            "power": "PowerState/deallocated", "osType": "Windows",
            "nicId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n",
            "privateIp": "10.0.0.4", "publicIp": "", "pipId": "",
            "nicNsg": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/a",
            "subnetNsg": "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Network/networkSecurityGroups/b",
        });
        let vms = vms_from_rows(vec![row.clone(), row], std::time::Instant::now()).unwrap();
        assert_eq!(vms.len(), 1, "one Vm per id");
        let vm = &vms[0];
        assert_eq!(vm.power_state, "deallocated");
        assert_eq!(vm.public_ip, None, "empty strings are absent values");
        assert_eq!(vm.private_ip.as_deref(), Some("10.0.0.4"));
        assert_eq!(vm.nsg_ids.len(), 2);
        assert!(vm.nsg_ids[0].ends_with("/a"));
        assert!(vm.nic_nsg_id.as_deref().is_some_and(|n| n.ends_with("/a")));
        assert!(vm.network_resolved);
        assert_eq!(vm.tags["env"], "prod");
    }

    #[test]
    fn vm_without_nic_is_not_resolved() {
        let row = json!({"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/x", "nicId": null, "power": null});
        let vm = &vms_from_rows(vec![row], std::time::Instant::now()).unwrap()[0];
        assert!(!vm.network_resolved);
        assert_eq!(vm.power_state, "unknown");
    }
}
