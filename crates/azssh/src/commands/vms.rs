//! `azssh vms [-g RG]... [--tag k=v]... [--graph-query KQL] [--ssh]`: the VMs, as a compact table
//! (name, group, power, OS, addresses) or full objects with `-o json`; `--ssh` adds what an
//! ARM-only look says about SSH readiness (no connection is made, nothing is changed).

use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::azure::client::ArmClient;
use crate::azure::error::AzureError;
use crate::azure::extension;
use crate::azure::network;
use crate::azure::vm::{self, Vm};
use crate::cli::{GlobalArgs, VmsArgs};
use crate::error::AppError;
use crate::fleet::targets::{self, SelectError, Selection};
use crate::output::{self, OutputFormat};

/// Reads in flight at once: ARM's read budget is per subscription (as `vms()` in scripts).
const CONCURRENCY: usize = 16;

pub async fn vms(global: &GlobalArgs, args: VmsArgs) -> Result<(), AppError> {
    let usage = |e: crate::fleet::FleetError| AppError::usage_from(&e);
    let selection = Selection {
        resource_groups: args.resource_groups.clone(),
        tags: targets::parse_tags(&args.tags).map_err(usage)?,
        query: args.query.clone(),
        ids: Vec::new(),
        all: args.resource_groups.is_empty() && args.tags.is_empty() && args.query.is_none(),
    };
    let settings = super::settings(global);
    let arm =
        crate::script::context::arm_client(&settings).map_err(|e| AppError::usage_from(&e))?;
    let progress = output::Progress::start("listing VMs");
    // One Resource Graph read gives every VM with its network; per-VM GETs only for VMs the
    // graph did not return.
    let inventory = crate::fleet::inventory::load(&arm).await;
    let found = targets::select(&arm, &selection, inventory.as_deref())
        .await
        .map_err(|e| match e {
            SelectError::Usage(u) => usage(u),
            SelectError::Azure(a) => AppError::failed(&a),
        })?;
    progress.step(&format!("reading {} VMs", found.len()));
    let arm_ref = &arm;
    let ssh = args.ssh;
    let known = std::sync::Arc::new(crate::fleet::inventory::index(inventory, &found));
    let rows: Vec<(Vm, Option<Value>)> = futures::stream::iter(found)
        .map(|t| {
            let known = known.clone();
            async move {
                let v = match known.get(&t.key()) {
                    Some(v) => v.clone(),
                    None => vm::get_vm_by_id(arm_ref, &t.id).await?,
                };
                let readiness = if ssh {
                    Some(ssh_readiness(arm_ref, &v).await?)
                } else {
                    None
                };
                Ok::<_, AzureError>((v, readiness))
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
        .map_err(|e| AppError::failed(&e))?;
    progress.finish();
    let format = OutputFormat::resolve(global.output);
    let value = match format {
        // `--query` sees the full objects whatever the format, as `az --query` does.
        OutputFormat::Table if !output::query_active() => {
            Value::Array(rows.iter().map(|(v, r)| compact(v, r)).collect())
        }
        _ => Value::Array(
            rows.iter()
                .map(|(v, r)| {
                    let mut full = serde_json::to_value(v).unwrap_or(Value::Null);
                    if let (Some(r), Value::Object(m)) = (r, &mut full) {
                        m.insert("ssh".into(), r.clone());
                    }
                    full
                })
                .collect(),
        ),
    };
    output::print_value(&value, format);
    Ok(())
}

/// The table row: names first, then state and addresses; the ids stay in `-o json`.
fn compact(v: &Vm, readiness: &Option<Value>) -> Value {
    let os = v
        .os_name
        .clone()
        .or_else(|| v.image_sku.clone())
        .or_else(|| v.os_type.clone())
        .unwrap_or_default();
    let mut row = serde_json::Map::new();
    row.insert("name".into(), json!(v.name));
    row.insert("resource_group".into(), json!(v.resource_group));
    row.insert("power_state".into(), json!(v.power_state));
    row.insert("os".into(), json!(os));
    row.insert("public_ip".into(), json!(v.public_ip));
    row.insert("private_ip".into(), json!(v.private_ip));
    if let Some(Value::Object(r)) = readiness {
        for (k, val) in r {
            row.insert(format!("ssh_{k}"), val.clone());
        }
    }
    Value::Object(row)
}

/// What ARM alone says about SSH to `v`: running, an address, the NSG verdict for inbound TCP
/// 22, the WindowsOpenSSH extension, and host keys pinned in azssh's known_hosts.
async fn ssh_readiness(arm: &ArmClient, v: &Vm) -> Result<Value, AzureError> {
    let mut verdicts = Vec::new();
    // Azure evaluates the subnet's NSG and then the NIC's for inbound traffic: both must allow.
    for nsg in &v.nsg_ids {
        let rules = network::list_security_rules(arm, nsg).await?;
        verdicts.push(crate::workflow::nsg::inbound_verdict(&rules, 22));
    }
    let nsg = if v.nsg_ids.is_empty() {
        "no NSG (open)".to_string()
    } else if let Some(deny) = verdicts.iter().find(|d| !d.starts_with("allow")) {
        deny.clone()
    } else {
        verdicts.join("; ")
    };
    let extension = match extension::list_extensions(arm, &v.id).await {
        Ok(list) => list.iter().any(|e| e.is_windows_openssh()),
        Err(e) if e.status() == Some(404) => false,
        Err(e) => return Err(e),
    };
    let address = v.public_ip.clone().or_else(|| v.private_ip.clone());
    let pinned = address.as_deref().is_some_and(is_pinned);
    Ok(json!({
        "running": v.power_state == "running",
        "address": address,
        "nsg_22": nsg,
        "openssh_extension": extension,
        "pinned": pinned,
    }))
}

/// Whether azssh's own known_hosts (where `azssh setup` pins) has keys for `host` on port 22.
fn is_pinned(host: &str) -> bool {
    // Read like every known_hosts azssh reads: bounded, hashed entries and wildcards honoured.
    crate::ssh::known_hosts::KnownHosts::single(crate::ssh::known_hosts::azssh_known_hosts_path())
        .has_host(
            host,
            crate::ssh::connect::ssh_port_from_env()
                .ok()
                .flatten()
                .unwrap_or(22),
        )
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_row_puts_names_first_and_leaves_ids_out() {
        let v = Vm {
            id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web01".into(),
            name: "web01".into(),
            resource_group: "rg".into(),
            power_state: "running".into(),
            nic_id: Some("/subscriptions/s/nic".into()),
            ..Default::default()
        };
        let row = compact(&v, &None);
        let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "name");
        assert_eq!(keys[1], "resource_group");
        assert!(!row.to_string().contains("/subscriptions/"));
    }
}
