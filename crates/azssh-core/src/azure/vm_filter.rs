//! Selecting VMs the way `vms(#{resource_group, tags, name, power_state})` does: a cheap pass
//! over the paged list, then only as much per-VM detail as the caller needs, with bounded
//! concurrency because ARM's read budget is shared by the whole subscription.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};

use super::client::ArmClient;
use super::config::Provider;
use super::error::Result;
use super::vm::{VirtualMachineJson, Vm, get_vm_by_id, list_vms};

/// How much to read about each listed VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// The list answer only.
    Listed,
    /// Plus the instance view (power state, OS name): one GET per VM.
    PowerState,
    /// Everything `get_vm` reads.
    #[default]
    Full,
}

/// Selects VMs like `vms(#{resource_group, tags, name, power_state})`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmFilter {
    pub resource_group: Option<String>,
    /// Every pair must be present; tag names compare case-insensitively (as in Azure), values exactly.
    pub tags: BTreeMap<String, String>,
    /// An exact name or a glob with `*` and `?`, case-insensitive.
    pub name: Option<String>,
    /// e.g. `running`; needs the instance view.
    pub power_state: Option<String>,
}

impl VmFilter {
    /// Everything but the power state, which a listed VM does not know.
    pub fn matches_listed(&self, vm: &Vm) -> bool {
        let rg_ok = self
            .resource_group
            .as_ref()
            .is_none_or(|rg| rg.eq_ignore_ascii_case(&vm.resource_group));
        let name_ok = self
            .name
            .as_ref()
            .is_none_or(|pat| glob_match(pat, &vm.name));
        let tags_ok = self.tags.iter().all(|(k, v)| {
            vm.tags
                .iter()
                .any(|(vk, vv)| vk.eq_ignore_ascii_case(k) && vv == v)
        });
        rg_ok && name_ok && tags_ok
    }

    pub fn matches(&self, vm: &Vm) -> bool {
        self.matches_listed(vm)
            && self
                .power_state
                .as_ref()
                .is_none_or(|p| p.eq_ignore_ascii_case(&vm.power_state))
    }
}

/// Lists, filters cheaply, then reads `detail` for the survivors with at most `concurrency`
/// requests in flight (ARM's read budget is shared by the whole subscription).
pub async fn find_vms(
    client: &ArmClient,
    filter: &VmFilter,
    detail: Detail,
    concurrency: usize,
) -> Result<Vec<Vm>> {
    let listed: Vec<Vm> = list_vms(client, filter.resource_group.as_deref())
        .await?
        .into_iter()
        .filter(|vm| filter.matches_listed(vm))
        .collect();
    let detail = if filter.power_state.is_some() && detail == Detail::Listed {
        Detail::PowerState
    } else {
        detail
    };
    let vms: Vec<Vm> = match detail {
        Detail::Listed => listed,
        _ => {
            futures::stream::iter(listed)
                .map(|vm| async move {
                    match detail {
                        Detail::Full => get_vm_by_id(client, &vm.id).await,
                        _ => {
                            let json: VirtualMachineJson = client
                                .get_json(&vm.id, Provider::Compute, &[("$expand", "instanceView")])
                                .await?;
                            Vm::from_json(&json)
                        }
                    }
                })
                .buffered(concurrency.max(1))
                .try_collect()
                .await?
        }
    };
    Ok(vms.into_iter().filter(|vm| filter.matches(vm)).collect())
}

/// One row of `VM_GRAPH_QUERY`. Resource Graph turns missing values into empty strings.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GraphVmRow {
    id: String,
    name: String,
    location: String,
    tags: Option<BTreeMap<String, serde_json::Value>>,
    size: String,
    os_type: String,
    sku: String,
    os_name: String,
    os_version: String,
    power: String,
    admin_username: String,
    computer_name: String,
    nic_id: String,
    private_ip: String,
    pip_id: String,
    public_ip: String,
    nic_nsg: String,
}

/// Every VM of the subscription with its primary NIC's addresses, in one query (plus pages) instead
/// of four GETs per VM. Written from the documented property names (ARM.md §7); the fields it
/// cannot see (the subnet's NSG) stay empty and `network_resolved` stays false.
pub const VM_GRAPH_QUERY: &str = "Resources
| where type =~ 'microsoft.compute/virtualmachines'
| project id, name, resourceGroup, location, tags,
    size = tostring(properties.hardwareProfile.vmSize),
    osType = tostring(properties.storageProfile.osDisk.osType),
    sku = tostring(properties.storageProfile.imageReference.sku),
    osName = tostring(properties.extended.instanceView.osName),
    osVersion = tostring(properties.extended.instanceView.osVersion),
    power = tostring(properties.extended.instanceView.powerState.code),
    adminUsername = tostring(properties.osProfile.adminUsername),
    computerName = tostring(properties.osProfile.computerName),
    nicId = tolower(tostring(properties.networkProfile.networkInterfaces[0].id))
| join kind=leftouter (Resources | where type =~ 'microsoft.network/networkinterfaces'
    | mv-expand ipc = properties.ipConfigurations
    | where isnull(ipc.properties.primary) or tobool(ipc.properties.primary)
    | project nicId = tolower(id), privateIp = tostring(ipc.properties.privateIPAddress),
        pipId = tolower(tostring(ipc.properties.publicIPAddress.id)),
        nicNsg = tostring(properties.networkSecurityGroup.id)) on nicId
| join kind=leftouter (Resources | where type =~ 'microsoft.network/publicipaddresses'
    | project pipId = tolower(id), publicIp = tostring(properties.ipAddress)) on pipId
| project id, name, resourceGroup, location, tags, size, osType, sku, osName, osVersion, power,
    adminUsername, computerName, nicId, privateIp, pipId, publicIp, nicNsg";

fn some(s: String) -> Option<String> {
    Some(s).filter(|s| !s.trim().is_empty())
}

impl GraphVmRow {
    fn into_vm(self) -> Result<Vm> {
        let id = super::resource_id::ResourceId::parse(&self.id)?;
        let power = self
            .power
            .rsplit_once('/')
            .map(|(_, p)| p.to_ascii_lowercase())
            .unwrap_or_default();
        let tags = self
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect();
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
            power_state: if power.is_empty() {
                "unknown".into()
            } else {
                power
            },
            public_ip: some(self.public_ip),
            private_ip: some(self.private_ip),
            nsg_ids: some(self.nic_nsg).into_iter().collect(),
            tags,
            nic_id: some(self.nic_id),
            public_ip_id: some(self.pip_id),
            admin_username: some(self.admin_username),
            computer_name: some(self.computer_name),
            ..Vm::default()
        })
    }
}

/// `find_vms` through Resource Graph: one query for the whole subscription, filtered here (no
/// user text is pasted into the query). Resource Graph lags behind recent writes, so confirm a
/// VM with `get_vm` before acting on what this says.
pub async fn find_vms_graph(client: &ArmClient, filter: &VmFilter) -> Result<Vec<Vm>> {
    let rows = super::graph::graph_query(client, VM_GRAPH_QUERY, &Default::default()).await?;
    let mut vms = Vec::with_capacity(rows.len());
    for row in rows {
        let row: GraphVmRow =
            serde_json::from_value(row).map_err(|e| super::error::AzureError::Decode {
                method: "POST".into(),
                path: "/providers/Microsoft.ResourceGraph/resources".into(),
                reason: e.to_string(),
            })?;
        let vm = row.into_vm()?;
        if filter.matches(&vm) {
            vms.push(vm);
        }
    }
    Ok(vms)
}

/// `*` any run, `?` one character; ASCII case-insensitive like Azure names.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_and_exact_names() {
        assert!(glob_match("web-*", "WEB-01"));
        assert!(glob_match("web-0?", "web-07"));
        assert!(!glob_match("web-0?", "web-100"));
        assert!(glob_match("db1", "DB1"));
        assert!(!glob_match("db1", "db10"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn filter_matches_tags_case_insensitively_by_name() {
        let vm = Vm {
            name: "web-1".into(),
            resource_group: "RG".into(),
            power_state: "running".into(),
            tags: [("Env".to_string(), "prod".to_string())].into(),
            ..Default::default()
        };
        let mut f = VmFilter {
            resource_group: Some("rg".into()),
            name: Some("web-*".into()),
            ..Default::default()
        };
        f.tags.insert("env".into(), "prod".into());
        assert!(f.matches(&vm));
        f.tags.insert("env".into(), "Prod".into());
        assert!(!f.matches(&vm));
        let f = VmFilter {
            power_state: Some("deallocated".into()),
            ..Default::default()
        };
        assert!(f.matches_listed(&vm) && !f.matches(&vm));
    }
}
