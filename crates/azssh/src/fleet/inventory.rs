//! The run's inventory: one paged Resource Graph query (`azure::inventory`) read before the
//! targets are chosen, so selecting by group/tag/`--all` and giving each VM's script its `vm`
//! costs no per-VM reads. When Resource Graph cannot be read (no access, an endpoint without
//! it) the run falls back to ARM's lists and a direct read per VM, and says so at debug level.

use std::collections::HashMap;

use super::targets::Target;
use crate::azure::client::ArmClient;
use crate::azure::vm::Vm;

/// Every VM of the subscription, or `None` when the graph could not be read.
pub async fn load(arm: &ArmClient) -> Option<Vec<Vm>> {
    match crate::azure::inventory::inventory(arm).await {
        Ok(vms) => Some(vms),
        Err(e) => {
            tracing::debug!(error = %e, "no Resource Graph inventory; reading VMs one by one");
            None
        }
    }
}

/// The inventory's VMs that this run will visit, by lower-cased id (the rest are dropped, so a
/// shard of a big subscription holds only its own).
pub fn index(inventory: Option<Vec<Vm>>, targets: &[Target]) -> HashMap<String, Vm> {
    let wanted: std::collections::HashSet<String> = targets.iter().map(Target::key).collect();
    inventory
        .unwrap_or_default()
        .into_iter()
        .filter_map(|vm| {
            let key = vm.id.to_ascii_lowercase();
            wanted.contains(&key).then_some((key, vm))
        })
        .collect()
}
