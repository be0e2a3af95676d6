//! The JIT policies `open_port` checks, read once per resource group for all the VMs of a
//! fleet run instead of once per VM: the Security provider lists policies per resource group
//! (ARM.md §9, `JitNetworkAccessPolicies_ListByResourceGroup`), so every VM of a group asked
//! the very same question. Concurrent callers for one group share one list (the first asks,
//! the others wait for its answer), and an answer is reused for `FRESH_FOR`.
//!
//! Why not Resource Graph, as for the inventory: JIT policies live in its `SecurityResources`
//! table, which our reference does not document and the emulator does not serve, so such an
//! answer could not be checked. Why a short window and not the whole run: a policy put on a VM
//! while a long run goes must still stop a standing rule, so the list is read again after
//! `FRESH_FOR` (counted from when it was asked, not answered). Requesting access through a
//! policy (`jit::request_and_wait`) always reads the policy afresh.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::azure::client::ArmClient;
use crate::azure::config::Provider;
use crate::azure::error::{AzureError, Result};
use crate::azure::jit::JitPolicy;
use crate::azure::resource_id::ResourceId;

/// How long a resource group's list of JIT policies answers "does a policy cover this VM".
// Five seconds, not the run: the check-then-write race a JIT policy could slip through is ARM's
// own (a policy put between our read and our rule write is never seen either); a window much
// wider than one write round would let a standing rule dodge a freshly enabled policy. At
// ARM's 10 writes/s a group's VMs still share a list across ~50 writes.
const FRESH_FOR: Duration = Duration::from_secs(5);

type Answer = Option<(Instant, Vec<JitPolicy>)>;
type Slots = Mutex<HashMap<String, Arc<tokio::sync::Mutex<Answer>>>>;
static SLOTS: LazyLock<Slots> = LazyLock::new(Slots::default);

/// The JIT policies of the VM's resource group (empty when the group has none, or the
/// Security provider answers 404 for it).
pub async fn policies_for(client: &ArmClient, vm_id: &str) -> Result<Vec<JitPolicy>> {
    let vm = ResourceId::parse_typed(vm_id, "Microsoft.Compute/virtualMachines")?;
    let rg = vm.resource_group().unwrap_or_default();
    let path = format!(
        "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Security/jitNetworkAccessPolicies",
        vm.subscription()
    );
    // Keyed by endpoint too: two clouds (or two emulators) may hold the same names.
    let key = format!("{}|{}", client.endpoint(), path.to_ascii_lowercase());
    let slot = {
        let mut map = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().clone()
    };
    let mut answer = slot.lock().await;
    if let Some((asked, policies)) = &*answer
        && asked.elapsed() < FRESH_FOR
    {
        return Ok(policies.clone());
    }
    let asked = Instant::now();
    let policies: Vec<JitPolicy> = match client.list(&path, Provider::Security, &[]).await {
        Ok(p) => p,
        Err(e) if e.status() == Some(404) || matches!(e, AzureError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    *answer = Some((asked, policies.clone()));
    Ok(policies)
}
