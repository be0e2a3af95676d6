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

/// The inventory a fleet run hands its VMs from, read again from Resource Graph when it gets
/// old. A VM's power state is trusted for `vm::POWER_STATE_FRESH_FOR` (5 min); a run longer
/// than that (5000 VMs take about 11 min through ARM's write bucket alone) would otherwise read
/// every later VM directly: its VM, NIC, subnet and public IP, four reads where one more paged
/// query per 1000 VMs answers them all.
#[derive(Debug)]
pub struct RunInventory {
    vms: std::sync::Mutex<HashMap<String, Vm>>,
    /// One refresh at a time; the VMs that wait take its answer.
    refresh: tokio::sync::Mutex<()>,
}

/// A VM read this long ago is refreshed before its run starts, leaving the script a minute of
/// `POWER_STATE_FRESH_FOR` to act on the facts.
const REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(240);

impl RunInventory {
    pub fn new(vms: HashMap<String, Vm>) -> RunInventory {
        RunInventory {
            vms: std::sync::Mutex::new(vms),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn get(&self, key: &str) -> Option<Vm> {
        let vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        vms.get(key).cloned()
    }

    fn stale(vm: &Vm) -> bool {
        vm.observed_at.is_none_or(|t| t.elapsed() >= REFRESH_AFTER)
    }

    /// The VM by lower-cased id (`None`: not in the inventory), its facts read again with the
    /// whole inventory first when they are older than `REFRESH_AFTER`. If the graph cannot be
    /// read now, the old facts are returned and `ensure_running` reads the VM itself.
    pub async fn vm(&self, arm: &ArmClient, key: &str) -> Option<Vm> {
        let current = self.get(key)?;
        if !Self::stale(&current) {
            return Some(current);
        }
        let _turn = self.refresh.lock().await;
        let current = self.get(key)?;
        if !Self::stale(&current) {
            return Some(current);
        }
        match crate::azure::inventory::inventory(arm).await {
            Ok(fresh) => {
                let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
                for vm in fresh {
                    if let Some(slot) = vms.get_mut(&vm.id.to_ascii_lowercase()) {
                        *slot = vm;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "inventory not refreshed; VMs are read one by one");
                return Some(current);
            }
        }
        self.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_older_than_the_refresh_age_are_stale_and_fresh_ones_are_not() {
        let mut vm = Vm {
            observed_at: Some(std::time::Instant::now()),
            ..Vm::default()
        };
        assert!(!RunInventory::stale(&vm));
        if let Some(old) = std::time::Instant::now().checked_sub(REFRESH_AFTER) {
            vm.observed_at = Some(old);
            assert!(RunInventory::stale(&vm));
        }
        vm.observed_at = None;
        assert!(RunInventory::stale(&vm), "a VM never read from Azure");
        assert!(REFRESH_AFTER < crate::azure::vm::POWER_STATE_FRESH_FOR);
    }
}
