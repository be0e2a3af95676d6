//! Azure Resource Graph `POST /providers/Microsoft.ResourceGraph/resources`: a small KQL subset
//! over the world's VMs, NICs, public IPs and NSGs — the shapes a client sends to find VMs by
//! type, tag, name, resource group or power state:
//!
//! `Resources | where type =~ 'microsoft.compute/virtualmachines' and tags['env'] == 'prod'
//!  | where resourceGroup in~ ('a', 'b') | project id, name, power = tostring(properties.extended.instanceView.powerState.code)
//!  | order by name asc | limit 50`
//!
//! Anything else (joins, summarize, extend, ...) gets Resource Graph's own 400 body, never a
//! made-up answer.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::compute::{render_vm, tags};
use super::kql::{Expr, QueryError, Stage, eval, parse, text, truthy};
use super::network::{render_nic, render_nsg, render_public_ip};
use super::reply::{ArmError, Reply, now};
use super::server::{App, Req, lock};
use super::world::World;

/// The `type =~ '...'` the first `where` pins, so a query over VMs does not render every NIC.
fn pinned_type(stages: &[Stage]) -> Option<String> {
    fn find(e: &Expr) -> Option<String> {
        match e {
            Expr::And(a, b) => find(a).or_else(|| find(b)),
            Expr::Cmp(l, op, r) if op == "==" || op == "=~" => match (&**l, &**r) {
                (Expr::Path(p), Expr::Lit(Value::String(t)))
                    if p.len() == 1 && p[0].eq_ignore_ascii_case("type") =>
                {
                    Some(t.to_lowercase())
                }
                _ => None,
            },
            _ => None,
        }
    }
    match stages.first() {
        Some(Stage::Where(e)) => find(e),
        _ => None,
    }
}

/// A Resource Graph row: the resource as ARM renders it plus ARG's own columns.
fn row(world: &World, group: u16, kind: &str, mut resource: Value, tags: Value) -> Value {
    let props = resource
        .get_mut("properties")
        .map(Value::take)
        .unwrap_or(Value::Null);
    json!({
        "id": resource["id"], "name": resource["name"], "type": kind,
        "tenantId": world.tenant, "kind": "", "location": resource["location"],
        "resourceGroup": world.groups[group as usize].name.to_lowercase(),
        "subscriptionId": world.subscription, "managedBy": "", "sku": resource.get("sku").cloned().unwrap_or(Value::Null),
        "plan": null, "properties": props, "tags": tags, "identity": null, "zones": null, "extendedLocation": null,
    })
}

/// The rows of the given type (or all) that pass `keep`, filtered as they are rendered so a
/// query over a big world never holds every row at once.
fn rows(world: &World, only: Option<&str>, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    let want = |t: &str| only.is_none_or(|o| o == t);
    let mut out = Vec::new();
    let mut push = |r: Value| {
        if keep(&r) {
            out.push(r);
        }
    };
    for vm in 0..world.vms.len() {
        let v = &world.vms[vm];
        if want("microsoft.compute/virtualmachines") {
            let mut r = row(
                world,
                v.group,
                "microsoft.compute/virtualmachines",
                render_vm(world, vm, false),
                tags(world, vm),
            );
            r["properties"]["extended"] = json!({"instanceView": {"powerState": {"code": v.power.code(), "level": "Info", "displayStatus": v.power.display()}, "osName": v.release.os_name(), "osVersion": v.os_version(), "computerName": v.computer_name()}});
            push(r);
        }
        if want("microsoft.network/networkinterfaces") {
            push(row(
                world,
                v.group,
                "microsoft.network/networkinterfaces",
                render_nic(world, vm),
                json!({}),
            ));
        }
        if v.public_ip.is_some() && want("microsoft.network/publicipaddresses") {
            push(row(
                world,
                v.group,
                "microsoft.network/publicipaddresses",
                render_public_ip(world, vm),
                json!({}),
            ));
        }
    }
    for (group, kind, resource, tags) in super::bastion::graph_resources(world, only) {
        push(row(world, group, kind, resource, tags));
    }
    if want("microsoft.network/networksecuritygroups") {
        for n in 0..world.nsgs.len() {
            push(row(
                world,
                world.nsgs[n].group,
                "microsoft.network/networksecuritygroups",
                render_nsg(world, n as u32),
                json!({}),
            ));
        }
    }
    out
}

fn graph_error(q: &str, e: QueryError) -> ArmError {
    let line = q[..e.position.min(q.len())].matches('\n').count() + 1;
    let second = if e.unsupported {
        json!({"code": "UnsupportedQuery", "message": format!("The azssh emulator does not model the query operator at position {} (`{}`); it supports `Resources | where ... | project ... | order by ... | limit N`.", e.position, e.token)})
    } else {
        json!({"code": "ParserFailure", "message": "ParserFailure", "line": line, "characterPositionInLine": e.position, "token": e.token})
    };
    let mut err = ArmError::bad_request("BadRequest", "");
    err.raw_body = Some(Box::new(json!({"error": {
        "code": "BadRequest",
        "message": format!("Please provide below info when asking for support: timestamp = {}, correlationId = {}.", now(), uuid::Uuid::new_v4()),
        "details": [{"code": "InvalidQuery", "message": "Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix the error before retrying."}, second],
    }})));
    err
}

/// ARG's refusal of request options outside `QueryRequestOptions` (resourcegraph.json 2024-04-01,
/// ARM.md §7): the same `BadRequest` envelope as a query error, the reason in `details`.
fn bad_options(message: String) -> ArmError {
    let mut err = ArmError::bad_request("BadRequest", "");
    err.raw_body = Some(Box::new(json!({"error": {
        "code": "BadRequest",
        "message": format!("Please provide below info when asking for support: timestamp = {}, correlationId = {}.", now(), uuid::Uuid::new_v4()),
        "details": [{"code": "InvalidQueryRequestOptions", "message": message}],
    }})));
    err
}

/// `$top` 1-1000, `$skip` >= 0, `$skipToken` a string, and the enums of `resultFormat` and
/// `authorizationScopeFilter`.
fn check_options(options: &Value) -> Result<(), ArmError> {
    if options.is_null() {
        return Ok(());
    }
    if let Some(top) = options.get("$top") {
        match top.as_i64() {
            Some(n) if (1..=1000).contains(&n) => {}
            _ => {
                return Err(bad_options(format!(
                    "The value of the '$top' option is {top}; it must be an integer between 1 and 1000."
                )));
            }
        }
    }
    if let Some(skip) = options.get("$skip")
        && skip.as_i64().is_none_or(|n| n < 0)
    {
        return Err(bad_options(format!(
            "The value of the '$skip' option is {skip}; it must be a non-negative integer."
        )));
    }
    if let Some(t) = options.get("$skipToken")
        && !t.is_string()
        && !t.is_null()
    {
        return Err(bad_options(
            "The '$skipToken' option must be a string.".into(),
        ));
    }
    let enum_check = |key: &str, allowed: &[&str]| -> Result<(), ArmError> {
        match options.get(key) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(v)) if allowed.iter().any(|a| a.eq_ignore_ascii_case(v)) => Ok(()),
            Some(v) => Err(bad_options(format!(
                "The value {v} of the '{key}' option is not one of '{}'.",
                allowed.join("', '")
            ))),
        }
    };
    enum_check("resultFormat", &["table", "objectArray"])?;
    enum_check(
        "authorizationScopeFilter",
        &[
            "AtScopeAndBelow",
            "AtScopeAndAbove",
            "AtScopeExact",
            "AtScopeAboveAndBelow",
        ],
    )?;
    Ok(())
}

pub fn query(app: &Arc<App>, req: &Req) -> Result<Reply, ArmError> {
    let body = req.json()?;
    let Some(q) = body.get("query").and_then(Value::as_str) else {
        return Err(graph_error(
            "",
            QueryError {
                position: 0,
                token: "<EOF>".into(),
                unsupported: false,
            },
        ));
    };
    let stages = parse(q).map_err(|e| graph_error(q, e))?;
    let options = body.get("options").cloned().unwrap_or(Value::Null);
    check_options(&options)?;
    let world = lock(&app.world);
    let subs: Vec<String> = body
        .get("subscriptions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_lowercase))
                .collect()
        })
        .unwrap_or_default();
    // Leading `where` stages run while rows are rendered; the rest on what survives.
    let leading = stages
        .iter()
        .take_while(|s| matches!(s, Stage::Where(_)))
        .count();
    let keep = |r: &Value| {
        stages[..leading]
            .iter()
            .all(|s| matches!(s, Stage::Where(e) if truthy(&eval(e, r))))
    };
    let mut data = if subs.is_empty() || subs.contains(&world.subscription.to_lowercase()) {
        rows(&world, pinned_type(&stages).as_deref(), keep)
    } else {
        Vec::new()
    };
    drop(world);
    let mut columns: Option<Vec<String>> = None;
    for stage in &stages[leading..] {
        match stage {
            Stage::Where(e) => data.retain(|r| truthy(&eval(e, r))),
            Stage::Limit(n) => data.truncate(*n),
            Stage::Order(key, desc) => {
                data.sort_by_cached_key(|r| text(&eval(key, r)));
                if *desc {
                    data.reverse();
                }
            }
            Stage::Project(cols) => {
                data = data
                    .iter()
                    .map(|r| {
                        Value::Object(
                            cols.iter()
                                .map(|(n, e)| (n.clone(), eval(e, r)))
                                .collect::<Map<_, _>>(),
                        )
                    })
                    .collect();
                columns = Some(cols.iter().map(|(n, _)| n.clone()).collect());
            }
        }
    }
    let total = data.len();
    let pageable = columns
        .as_ref()
        .is_none_or(|c| c.iter().any(|n| n.eq_ignore_ascii_case("id")));
    let top = options.get("$top").and_then(Value::as_u64).unwrap_or(100) as usize;
    let b64 = base64::engine::general_purpose::STANDARD;
    let skip = options
        .get("$skipToken")
        .and_then(Value::as_str)
        .and_then(|t| b64.decode(t).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| options.get("$skip").and_then(Value::as_u64).unwrap_or(0) as usize);
    let page: Vec<Value> = data.into_iter().skip(skip).take(top).collect();
    let count = page.len();
    let data = if options.get("resultFormat").and_then(Value::as_str) == Some("table") {
        let cols = columns.unwrap_or_else(|| {
            page.first()
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        });
        json!({
            "columns": cols.iter().map(|c| json!({"name": c, "type": page.first().and_then(|r| r.get(c)).map(kql_type).unwrap_or("string")})).collect::<Vec<_>>(),
            "rows": page.iter().map(|r| cols.iter().map(|c| r.get(c).cloned().unwrap_or(Value::Null)).collect::<Vec<_>>()).collect::<Vec<_>>(),
        })
    } else {
        Value::Array(page)
    };
    let mut out = json!({"totalRecords": total, "count": count, "data": data, "facets": [], "resultTruncated": "false"});
    if skip + count < total {
        // Paging needs `id` in the rows ("id field is required in the response to return the
        // pages in stable sorted fashion", ResourcesFirstPageQuery.json): a projection without
        // it gets no `$skipToken`, only `resultTruncated: "true"`.
        if pageable {
            out["$skipToken"] = json!(b64.encode(format!("offset:{}", skip + count)));
        } else {
            out["resultTruncated"] = json!("true");
        }
    }
    Ok(Reply::ok(out)
        .header("x-ms-user-quota-remaining", "14")
        .header("x-ms-user-quota-resets-after", "00:00:05"))
}

fn kql_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "real",
        Value::Bool(_) => "boolean",
        _ => "object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn where_filters_vms_by_tag() {
        let w = World::generate(30, 4);
        let stages = parse(
            "Resources | where type =~ 'Microsoft.Compute/virtualMachines' and tags.env == 'prod'",
        )
        .ok()
        .unwrap();
        let Stage::Where(e) = &stages[0] else {
            panic!()
        };
        let all = rows(&w, pinned_type(&stages).as_deref(), |_| true);
        let hits = all.iter().filter(|r| truthy(&eval(e, r))).count();
        assert_eq!(hits, w.vms.iter().filter(|v| v.env == 0).count());
        assert!(hits > 0);
    }
}
