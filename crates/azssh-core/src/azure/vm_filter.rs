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

/// The query behind `find_vms_graph`: the fleet inventory (`inventory.rs`).
pub const VM_GRAPH_QUERY: &str = super::inventory::INVENTORY_QUERY;

/// `find_vms` through Resource Graph: one paged query for the whole subscription (VMs with
/// power state, addresses and NSGs), filtered here (no user text is pasted into the query).
/// Resource Graph lags behind recent writes; each `Vm` carries when it was read.
pub async fn find_vms_graph(client: &ArmClient, filter: &VmFilter) -> Result<Vec<Vm>> {
    Ok(super::inventory::inventory(client)
        .await?
        .into_iter()
        .filter(|vm| filter.matches(vm))
        .collect())
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
