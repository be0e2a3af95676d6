//! A VM lookup that found nothing says what does exist: ARM's 404 (`ResourceNotFound`, or
//! `ResourceGroupNotFound` when the group is wrong) becomes the nearest VM or group names, or the
//! group the VM really is in, read from the subscription's VM list.

use super::client::ArmClient;
use super::error::AzureError;
use super::vm::list_vms;
use crate::suggest::{nearest, one_of};

/// `err` with a hint naming what exists, when it is ARM's 404 for this very VM; any other error
/// (a NIC's 404, a 403, a timeout) and a failed list leave it as it was.
pub async fn explain_missing(
    client: &ArmClient,
    resource_group: &str,
    name: &str,
    err: AzureError,
) -> AzureError {
    let AzureError::Api(api) = &err else {
        return err;
    };
    let wanted = format!("/virtualmachines/{}", name.to_ascii_lowercase());
    if api.status != 404 || !api.path.to_ascii_lowercase().ends_with(&wanted) {
        return err;
    }
    let Ok(all) = list_vms(client, None).await else {
        return err;
    };
    let vms: Vec<(&str, &str)> = all
        .iter()
        .map(|v| (v.resource_group.as_str(), v.name.as_str()))
        .collect();
    match hint(
        &vms,
        resource_group,
        name,
        api.code == "ResourceGroupNotFound",
    ) {
        Some(hint) => AzureError::VmNotFound {
            message: err.to_string(),
            hint,
        },
        None => err,
    }
}

/// The hint from the subscription's `(group, name)` pairs.
fn hint(vms: &[(&str, &str)], group: &str, name: &str, group_missing: bool) -> Option<String> {
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    // The name is right, the group is not: say where the VM is.
    let elsewhere: Vec<&str> = vms
        .iter()
        .filter(|(g, n)| same(n, name) && !same(g, group))
        .map(|(g, _)| *g)
        .collect();
    if !elsewhere.is_empty() {
        return Some(format!(
            "VM `{name}` is in resource group {}",
            one_of(&elsewhere)
        ));
    }
    if group_missing {
        let mut groups: Vec<&str> = vms.iter().map(|(g, _)| *g).collect();
        groups.sort_unstable();
        groups.dedup();
        let near = nearest(group, groups);
        return (!near.is_empty()).then(|| {
            format!(
                "there is no resource group `{group}`; did you mean {}?",
                one_of(&near)
            )
        });
    }
    let in_group: Vec<&str> = vms
        .iter()
        .filter(|(g, _)| same(g, group))
        .map(|(_, n)| *n)
        .collect();
    let near = nearest(name, in_group.iter().copied());
    if !near.is_empty() {
        return Some(format!("did you mean {}?", one_of(&near)));
    }
    match in_group.len() {
        0 => Some(format!("resource group `{group}` has no VMs")),
        1..=8 => Some(format!(
            "resource group `{group}` has {}",
            one_of(&in_group)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMS: &[(&str, &str)] = &[
        ("rg-prod-eastus", "dc-prod-001"),
        ("rg-prod-eastus", "sql-test-005"),
        ("rg-dev-westus2", "app-dev-004"),
    ];

    #[test]
    fn a_mistyped_vm_name_gets_the_nearest_in_its_group() {
        assert_eq!(
            hint(VMS, "rg-prod-eastus", "dc-prod-01", false).as_deref(),
            Some("did you mean `dc-prod-001`?")
        );
    }

    #[test]
    fn a_mistyped_group_gets_the_nearest_group() {
        assert_eq!(
            hint(VMS, "rg-prod-eastu", "web01", true).as_deref(),
            Some("there is no resource group `rg-prod-eastu`; did you mean `rg-prod-eastus`?")
        );
    }

    #[test]
    fn the_right_name_in_the_wrong_group_names_its_group() {
        assert_eq!(
            hint(VMS, "rg-prod-eastus", "app-dev-004", false).as_deref(),
            Some("VM `app-dev-004` is in resource group `rg-dev-westus2`")
        );
    }

    #[test]
    fn nothing_near_lists_a_small_group() {
        assert_eq!(
            hint(VMS, "rg-dev-westus2", "zzz", false).as_deref(),
            Some("resource group `rg-dev-westus2` has `app-dev-004`")
        );
    }
}
