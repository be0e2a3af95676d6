//! Azure Resource Graph `POST /providers/Microsoft.ResourceGraph/resources`: a small KQL subset
//! over the world's VMs, NICs, public IPs and NSGs — the shapes a client sends to find VMs by
//! type, tag, name, resource group or power state:
//!
//! `Resources | where type =~ 'microsoft.compute/virtualmachines' and tags['env'] == 'prod'
//!  | where resourceGroup in~ ('a', 'b') | project id, name, power = tostring(properties.extended.instanceView.powerState.code)
//!  | order by name asc | limit 50`
//!
//! and the inventory join (VM → NIC → public IP → subnet, `extend`, `mv-expand`, `join
//! kind=leftouter`) over VMs, NICs, public IPs, virtual networks and NSGs. Anything else
//! (summarize, union, other tables, ...) gets Resource Graph's own 400 body, never a made-up
//! answer; so do the join flavors and counts Resource Graph refuses (`kql.rs`).
//!
//! Resource Graph throttles per user, not per subscription (learn.microsoft.com
//! `guidance-for-throttled-requests`: "a user can send at most 15 queries within every 5-second
//! window"), and its path names no subscription, so ARM's subscription buckets do not count it:
//! every answer carries `x-ms-user-quota-remaining` and `x-ms-user-quota-resets-after`
//! (`hh:mm:ss`), and an exhausted quota answers 429 `RateLimiting` with the body
//! Azure/azure-cli-extensions#3325 recorded.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::compute::{render_vm, tags};
use super::kql::{Expr, JoinKind, QueryError, Stage, eval, parse, text, truthy};
use super::network::{render_nic, render_nsg, render_public_ip, render_vnet};
use super::reply::{ArmError, Reply, now};
use super::server::{App, Req, lock};
use super::throttle::{GraphQuota, hh_mm_ss};
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
    if want("microsoft.network/virtualnetworks") {
        for (group, vnet) in super::network::vnets(world) {
            push(row(
                world,
                group,
                "microsoft.network/virtualnetworks",
                render_vnet(world, group, &vnet),
                json!({}),
            ));
        }
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
    let second = if let Some(reason) = &e.limit {
        json!({"code": "DisallowedOperatorUsage", "message": format!("The query at position {} (`{}`) exceeds a Resource Graph limit: {reason}.", e.position, e.token)})
    } else if e.unsupported {
        json!({"code": "UnsupportedQuery", "message": format!("The azssh emulator does not model the query operator at position {} (`{}`); it supports `Resources | where ... | extend ... | mv-expand ... | join kind=... (...) on ... | project ... | order by ... | limit N`.", e.position, e.token)})
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

/// Resource Graph's 429 (Azure/azure-cli-extensions#3325): no `Retry-After`, the wait is in
/// `x-ms-user-quota-resets-after`.
fn rate_limited(resets_after: std::time::Duration) -> ArmError {
    let mut err = ArmError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "RateLimiting",
        "",
    );
    err.raw_body = Some(Box::new(json!({"error": {
        "code": "RateLimiting",
        "message": format!("Please provide below info when asking for support: timestamp = {}, correlationId = {}.", now(), uuid::Uuid::new_v4()),
        "details": [{"code": "RateLimiting", "message": "Client application has been throttled and should not attempt to repeat the request until an amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling for help."}],
    }})));
    err.header("x-ms-user-quota-remaining", "0")
        .header("x-ms-user-quota-resets-after", hh_mm_ss(resets_after))
}

/// The user's quota, when the emulator throttles: `(remaining, resets_after)`.
fn take_quota(app: &Arc<App>) -> Result<Option<(u32, std::time::Duration)>, ArmError> {
    if !app.throttling {
        return Ok(None);
    }
    lock(&app.throttle)
        .graph
        .take(tokio::time::Instant::now())
        .map(Some)
        .map_err(rate_limited)
}

pub fn query(app: &Arc<App>, req: &Req) -> Result<Reply, ArmError> {
    let quota = take_quota(app)?;
    let body = req.json()?;
    let Some(q) = body.get("query").and_then(Value::as_str) else {
        return Err(graph_error(
            "",
            QueryError {
                position: 0,
                token: "<EOF>".into(),
                unsupported: false,
                limit: None,
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
    let (data, columns) = if subs.is_empty() || subs.contains(&world.subscription.to_lowercase()) {
        run(&world, &stages)
    } else {
        (Vec::new(), None)
    };
    drop(world);
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
    // Without throttling the quota is never spent: the first query's headers, as recorded.
    let (remaining, resets_after) = quota.unwrap_or((GraphQuota::QUERIES - 1, GraphQuota::WINDOW));
    Ok(Reply::ok(out)
        .header("x-ms-user-quota-remaining", remaining.to_string())
        .header("x-ms-user-quota-resets-after", hh_mm_ss(resets_after)))
}

/// Evaluates a pipeline over the world: leading `where` stages run while rows are rendered,
/// the rest on what survives. Returns the rows and the projected column names, if any.
fn run(world: &World, stages: &[Stage]) -> (Vec<Value>, Option<Vec<String>>) {
    let leading = stages
        .iter()
        .take_while(|s| matches!(s, Stage::Where(_)))
        .count();
    let keep = |r: &Value| {
        stages[..leading]
            .iter()
            .all(|s| matches!(s, Stage::Where(e) if truthy(&eval(e, r))))
    };
    let mut data = rows(world, pinned_type(stages).as_deref(), keep);
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
            Stage::Extend(cols) => {
                for r in &mut data {
                    let added: Vec<(String, Value)> =
                        cols.iter().map(|(n, e)| (n.clone(), eval(e, r))).collect();
                    if let Value::Object(m) = r {
                        m.extend(added);
                    }
                }
                if let Some(c) = &mut columns {
                    c.extend(cols.iter().map(|(n, _)| n.clone()));
                }
            }
            Stage::MvExpand { name, expr, limit } => {
                data = data
                    .into_iter()
                    .flat_map(|r| mv_expand(r, name, expr, *limit))
                    .collect();
                if let Some(c) = &mut columns
                    && !c.contains(name)
                {
                    c.push(name.clone());
                }
            }
            Stage::Join { kind, right, on } => {
                let (right_rows, right_columns) = run(world, right);
                let (joined, names) =
                    join(data, columns.take(), right_rows, right_columns, *kind, on);
                data = joined;
                columns = names;
            }
        }
    }
    (data, columns)
}

/// One row per item of the array `expr` (at most `limit`); a scalar stays one row, and an
/// empty array or a missing value keeps the row with the column empty, as Kusto's does.
fn mv_expand(row: Value, name: &str, expr: &Expr, limit: usize) -> Vec<Value> {
    let items = match eval(expr, &row) {
        Value::Array(a) if !a.is_empty() => a.into_iter().take(limit).collect(),
        Value::Array(_) => vec![Value::Null],
        other => vec![other],
    };
    items
        .into_iter()
        .map(|item| {
            let mut r = row.clone();
            if let Value::Object(m) = &mut r {
                m.insert(name.to_string(), item);
            }
            r
        })
        .collect()
}

/// The columns of a side: its projection, else the first row's keys.
fn column_names(rows: &[Value], projected: Option<Vec<String>>) -> Vec<String> {
    projected.unwrap_or_else(|| {
        rows.first()
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    })
}

/// Kusto's join: a hash join on the `on` keys (string equality, case-sensitive). The right
/// side's columns follow the left's; a right column whose name the left already has is renamed
/// with a numeric suffix (`nicId` → `nicId1`), as Kusto does. `innerunique` keeps the first
/// left row of each key; `leftouter` and `fullouter` keep unmatched rows with the other side's
/// columns null.
fn join(
    left: Vec<Value>,
    left_columns: Option<Vec<String>>,
    right: Vec<Value>,
    right_columns: Option<Vec<String>>,
    kind: JoinKind,
    on: &[(String, String)],
) -> (Vec<Value>, Option<Vec<String>>) {
    let lcols = column_names(&left, left_columns);
    let rcols = column_names(&right, right_columns);
    let renamed: Vec<(String, String)> = rcols
        .iter()
        .map(|c| {
            let mut name = c.clone();
            let mut n = 1;
            while lcols.contains(&name) {
                name = format!("{c}{n}");
                n += 1;
            }
            (c.clone(), name)
        })
        .collect();
    let key = |row: &Value, side: fn(&(String, String)) -> &String| -> String {
        on.iter()
            .map(|k| text(row.get(side(k)).unwrap_or(&Value::Null)))
            .collect::<Vec<_>>()
            .join("\u{1f}")
    };
    let mut index: std::collections::HashMap<String, Vec<usize>> = Default::default();
    for (i, r) in right.iter().enumerate() {
        index.entry(key(r, |k| &k.1)).or_default().push(i);
    }
    let merge = |l: Option<&Value>, r: Option<&Value>| -> Value {
        let mut out = Map::new();
        for c in &lcols {
            out.insert(
                c.clone(),
                l.and_then(|l| l.get(c)).cloned().unwrap_or(Value::Null),
            );
        }
        for (orig, name) in &renamed {
            out.insert(
                name.clone(),
                r.and_then(|r| r.get(orig)).cloned().unwrap_or(Value::Null),
            );
        }
        Value::Object(out)
    };
    let mut out = Vec::new();
    let mut matched = vec![false; right.len()];
    let mut seen_keys = std::collections::HashSet::new();
    for l in &left {
        let k = key(l, |k| &k.0);
        if kind == JoinKind::InnerUnique && !seen_keys.insert(k.clone()) {
            continue;
        }
        match index.get(&k) {
            Some(hits) => {
                for &i in hits {
                    matched[i] = true;
                    out.push(merge(Some(l), Some(&right[i])));
                }
            }
            None if matches!(kind, JoinKind::LeftOuter | JoinKind::FullOuter) => {
                out.push(merge(Some(l), None));
            }
            None => {}
        }
    }
    if kind == JoinKind::FullOuter {
        for (i, r) in right.iter().enumerate() {
            if !matched[i] {
                out.push(merge(None, Some(r)));
            }
        }
    }
    let mut names = lcols;
    names.extend(renamed.into_iter().map(|(_, n)| n));
    (out, Some(names))
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
    fn vnet_rows_and_arm_get_come_from_one_renderer() {
        let mut w = World::generate(12, 1);
        super::super::bastion::furnish(&mut w);
        let kind = "microsoft.network/virtualnetworks";
        let all = super::super::network::vnets(&w);
        let found = rows(&w, Some(kind), |_| true);
        assert_eq!(found.len(), all.len());
        assert!(
            all.iter().any(|(_, n)| n.starts_with("hub-")),
            "the bastion world's hub VNet too: {all:?}"
        );
        for ((g, name), row) in all.iter().zip(&found) {
            let arm = super::super::network::render_vnet(&w, *g, name);
            assert_eq!(row["id"], arm["id"]);
            assert_eq!(row["properties"], arm["properties"], "{name}");
        }
        // Without the bastion world every VNet still has its address space and subnets.
        let plain = World::generate(12, 1);
        for row in rows(&plain, Some(kind), |_| true) {
            let space = &row["properties"]["addressSpace"]["addressPrefixes"][0];
            assert!(
                space.as_str().is_some_and(|s| s.ends_with(".0.0/16")),
                "{row}"
            );
            assert!(!row["properties"]["subnets"].as_array().unwrap().is_empty());
        }
    }

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

    const JOINED: &str = "Resources
| where type =~ 'microsoft.compute/virtualmachines'
| project id, name, power = tostring(properties.extended.instanceView.powerState.code),
    nicKey = tolower(tostring(properties.networkProfile.networkInterfaces[0].id))
| join kind=leftouter (Resources | where type =~ 'microsoft.network/networkinterfaces'
    | mv-expand ipc = properties.ipConfigurations
    | where isnull(ipc.properties.primary) or tobool(ipc.properties.primary)
    | project nicKey = tolower(id), privateIp = tostring(ipc.properties.privateIPAddress),
        pipKey = tolower(tostring(ipc.properties.publicIPAddress.id)),
        subnetKey = tolower(tostring(ipc.properties.subnet.id))) on nicKey
| join kind=leftouter (Resources | where type =~ 'microsoft.network/publicipaddresses'
    | project pipKey = tolower(id), publicIp = tostring(properties.ipAddress)) on pipKey
| join kind=leftouter (Resources | where type =~ 'microsoft.network/virtualnetworks'
    | mv-expand subnet = properties.subnets limit 2000
    | project subnetKey = tolower(tostring(subnet.id)),
        subnetNsg = tostring(subnet.properties.networkSecurityGroup.id)) on subnetKey
| project id, name, power, privateIp, publicIp, subnetNsg, nicKey1";

    #[test]
    fn inventory_join_gives_each_vm_its_addresses_and_subnet_nsg() {
        let w = World::generate(40, 7);
        let stages = parse(JOINED).ok().unwrap();
        let (data, columns) = run(&w, &stages);
        assert_eq!(data.len(), w.vms.len(), "one row per VM");
        assert!(
            columns.unwrap().contains(&"nicKey1".to_string()),
            "the right side's key is renamed"
        );
        for (i, v) in w.vms.iter().enumerate() {
            let r = data.iter().find(|r| r["name"] == json!(v.name)).unwrap();
            assert_eq!(r["privateIp"], json!(v.private_ip.to_string()), "{i}");
            assert_eq!(r["power"], json!(v.power.code()));
            match v.public_ip {
                Some(ip) => assert_eq!(r["publicIp"], json!(ip.to_string())),
                None => assert!(r["publicIp"].is_null(), "unmatched leftouter rows are null"),
            }
            let subnet_nsg = w.subnets[v.subnet as usize].nsg.is_some();
            assert_eq!(!text(&r["subnetNsg"]).is_empty(), subnet_nsg, "{r}");
        }
    }

    #[test]
    fn inner_joins_drop_unmatched_rows_and_innerunique_dedupes_the_left() {
        let w = World::generate(30, 2);
        let q = |kind: &str| {
            format!(
                "Resources | where type =~ 'microsoft.compute/virtualmachines' | project id, k = 'x' | join kind={kind} (Resources | where type =~ 'microsoft.network/publicipaddresses' | project pid = id, k = 'x') on k"
            )
        };
        let pips = w.vms.iter().filter(|v| v.public_ip.is_some()).count();
        let (inner, _) = run(&w, &parse(&q("inner")).ok().unwrap());
        assert_eq!(inner.len(), w.vms.len() * pips);
        let (unique, _) = run(&w, &parse(&q("innerunique")).ok().unwrap());
        assert_eq!(unique.len(), pips, "one left row per key");
    }

    #[test]
    fn resource_graph_refuses_other_join_flavors_and_a_fourth_join() {
        let e = parse("Resources | join kind=rightouter (Resources) on id")
            .err()
            .unwrap();
        assert!(e.limit.is_some_and(|m| m.contains("rightouter")));
        let four = "Resources | join kind=leftouter (Resources) on id | join kind=leftouter (Resources) on id | join kind=leftouter (Resources) on id | join kind=leftouter (Resources) on id";
        assert!(parse(four).err().unwrap().limit.is_some());
        let mv = "Resources | mv-expand a = properties.x | mv-expand b = properties.x | mv-expand c = properties.x | mv-expand d = properties.x";
        assert!(parse(mv).err().unwrap().limit.is_some());
        assert!(
            parse("Resources | mv-expand a = properties.x limit 2001")
                .err()
                .unwrap()
                .limit
                .is_some()
        );
    }

    #[test]
    fn graph_quota_allows_fifteen_queries_per_five_seconds() {
        let t = tokio::time::Instant::now();
        let mut q = GraphQuota::new(t);
        for n in (0..15).rev() {
            assert_eq!(q.take(t).map(|r| r.0), Ok(n));
        }
        assert!(q.take(t).is_err());
        assert!(q.take(t + GraphQuota::WINDOW).is_ok(), "a new window");
        assert_eq!(hh_mm_ss(std::time::Duration::from_millis(4200)), "00:00:05");
    }
}
