//! Microsoft.Resources `Resources_ListByResourceGroup`
//! (`GET /subscriptions/{sub}/resourceGroups/{rg}/resources?$filter=name eq 'vm'`), which
//! `az ssh vm` calls to learn a target's resource type. Supports `$filter` clauses
//! `name eq '...'` and `resourceType eq '...'` joined by `and`; other filters get 400.

use std::sync::Arc;

use serde_json::{Value, json};

use super::compute::{tags, vm_id};
use super::network::nsg_id;
use super::reply::{ArmError, Reply};
use super::server::{App, Req, lock};

fn invalid_filter(filter: &str) -> ArmError {
    ArmError::bad_request(
        "InvalidFilterInQueryString",
        format!(
            "Invalid $filter '{filter}' specified in the query string (the emulator supports `name eq '...'` and `resourceType eq '...'` joined by `and`)."
        ),
    )
}

/// `(field, value)` pairs of a `$filter` made of `eq` clauses.
fn parse_filter(filter: &str) -> Result<Vec<(String, String)>, ArmError> {
    let mut out = Vec::new();
    for clause in filter.split(" and ") {
        let mut parts = clause.trim().splitn(3, ' ');
        let (Some(field), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid_filter(filter));
        };
        let value = value.trim();
        let quoted = value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'');
        if !op.eq_ignore_ascii_case("eq") || !quoted {
            return Err(invalid_filter(filter));
        }
        let field = field.to_ascii_lowercase();
        if field != "name" && field != "resourcetype" {
            return Err(invalid_filter(filter));
        }
        out.push((field, value[1..value.len() - 1].to_string()));
    }
    Ok(out)
}

pub fn list_by_group(app: &Arc<App>, req: &Req, group: u16) -> Result<Reply, ArmError> {
    let filter = match req.query("$filter") {
        Some(f) => parse_filter(f)?,
        None => Vec::new(),
    };
    let world = lock(&app.world);
    let location = world.groups[group as usize].location;
    let prefix = super::compute::group_prefix(&world, group);
    let mut all = Vec::new();
    for (i, v) in world
        .vms
        .iter()
        .enumerate()
        .filter(|(_, v)| v.group == group)
    {
        all.push(json!({"id": vm_id(&world, i), "name": v.name, "type": "Microsoft.Compute/virtualMachines", "location": location, "tags": tags(&world, i)}));
        all.push(json!({"id": format!("{prefix}/providers/Microsoft.Network/networkInterfaces/{}", v.nic_name()), "name": v.nic_name(), "type": "Microsoft.Network/networkInterfaces", "location": location}));
        if v.public_ip.is_some() {
            all.push(json!({"id": format!("{prefix}/providers/Microsoft.Network/publicIPAddresses/{}", v.pip_name()), "name": v.pip_name(), "type": "Microsoft.Network/publicIPAddresses", "location": location}));
        }
    }
    for (n, nsg) in world
        .nsgs
        .iter()
        .enumerate()
        .filter(|(_, n)| n.group == group)
    {
        all.push(json!({"id": nsg_id(&world, n as u32), "name": nsg.name, "type": "Microsoft.Network/networkSecurityGroups", "location": location}));
    }
    let value: Vec<Value> = all
        .into_iter()
        .filter(|r| {
            filter.iter().all(|(field, want)| {
                let key = if field == "name" { "name" } else { "type" };
                r[key]
                    .as_str()
                    .is_some_and(|have| have.eq_ignore_ascii_case(want))
            })
        })
        .collect();
    Ok(Reply::ok(json!({ "value": value })))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filters_az_ssh_sends_parse() {
        assert_eq!(
            parse_filter("name eq 'web-prod-001'").unwrap(),
            vec![("name".into(), "web-prod-001".into())]
        );
        assert_eq!(
            parse_filter("resourceType eq 'Microsoft.Compute/virtualMachines' and name eq 'x'")
                .unwrap()
                .len(),
            2
        );
        assert!(parse_filter("startswith(name, 'x')").is_err());
        assert!(parse_filter("location eq 'eastus'").is_err());
    }
}
