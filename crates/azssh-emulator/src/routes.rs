//! The routing table: ARM paths (matched case-insensitively, as ARM does; clients and ARM's own
//! answers mix `resourceGroups` and `resourcegroups`) to the handlers of each provider. Each
//! route also names the request's kind for the emulator's counters.

use std::sync::Arc;

use axum::http::StatusCode;

use super::reply::{ArmError, Reply};
use super::server::{App, Req, lock};
use super::{bastion, compute, extension, graph, lro, network, resources, security};

fn with_kind(
    kind: &'static str,
    r: Result<Reply, ArmError>,
) -> (&'static str, Result<Reply, ArmError>) {
    (kind, r)
}

/// The routing table.
pub fn route(app: &Arc<App>, req: &Req) -> (&'static str, Result<Reply, ArmError>) {
    let lower: Vec<String> = req.segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    let s = &req.segs;
    match (m, l.as_slice()) {
        ("POST", ["providers", "microsoft.resourcegraph", "resources"]) => {
            return with_kind("graph.resources", graph::query(app, req));
        }
        (_, ["subscriptions", sub, ..]) => {
            let known = lock(&app.world).subscription.eq_ignore_ascii_case(sub);
            if !known {
                return (
                    "rejected",
                    Err(ArmError::new(
                        StatusCode::NOT_FOUND,
                        "SubscriptionNotFound",
                        format!("The subscription '{}' could not be found.", s[1]),
                    )),
                );
            }
        }
        _ => return ("unknown", Err(ArmError::no_route(&req.path))),
    }
    let rest = &l[2..];
    let orig = &s[2..];
    match (m, rest) {
        ("GET", ["providers", "microsoft.compute", "virtualmachines"]) => {
            with_kind("vm.list", compute::list(app, req, None))
        }
        ("GET", ["providers", "microsoft.network", "bastionhosts"]) => {
            with_kind("bastion.list", bastion::list_bastions(app, None))
        }
        ("GET", ["providers", "microsoft.network", "virtualnetworks"]) => {
            with_kind("network.vnet.list", network::list_vnets(app, None))
        }
        (
            "GET",
            [
                "providers",
                "microsoft.compute",
                "locations",
                _,
                "operations",
                id,
            ],
        ) => {
            let ops = lock(&app.ops);
            if req
                .query("monitor")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            {
                with_kind("operation.location", lro::location_reply(&ops, id))
            } else {
                with_kind("operation.status", lro::status_reply(&ops, id))
            }
        }
        (
            "GET",
            [
                "providers",
                "microsoft.network",
                "locations",
                _,
                "operations",
                id,
            ],
        ) => with_kind("operation.status", lro::status_reply(&lock(&app.ops), id)),
        (
            "GET",
            [
                "providers",
                "microsoft.network",
                "locations",
                _,
                "operationresults",
                id,
            ],
        ) => with_kind(
            "operation.location",
            lro::location_reply(&lock(&app.ops), id),
        ),
        (
            "GET",
            [
                "providers",
                "microsoft.security",
                "jitnetworkaccesspolicies",
            ],
        ) => with_kind("jit.list", security::list(app, None, None)),
        (
            "GET",
            [
                "providers",
                "microsoft.security",
                "locations",
                loc,
                "jitnetworkaccesspolicies",
            ],
        ) => with_kind("jit.list", security::list(app, None, Some(loc))),
        (_, ["resourcegroups", _, tail @ ..]) => {
            let group_name = &orig[1];
            let Some(group) = lock(&app.world).group(group_name) else {
                return ("rejected", Err(ArmError::group_not_found(group_name)));
            };
            let o = &orig[2..];
            route_group(app, req, group, tail, o)
        }
        _ => ("unknown", Err(ArmError::no_route(&req.path))),
    }
}

fn route_group(
    app: &Arc<App>,
    req: &Req,
    group: u16,
    l: &[&str],
    o: &[String],
) -> (&'static str, Result<Reply, ArmError>) {
    let m = req.method.as_str();
    match (m, l) {
        ("GET", ["providers", "microsoft.compute", "virtualmachines"]) => {
            with_kind("vm.list", compute::list(app, req, Some(group)))
        }
        ("GET", ["resources"]) => {
            with_kind("resources.list", resources::list_by_group(app, req, group))
        }
        ("GET", ["providers", "microsoft.network", "bastionhosts"]) => {
            with_kind("bastion.list", bastion::list_bastions(app, Some(group)))
        }
        ("GET", ["providers", "microsoft.network", "bastionhosts", _]) => {
            with_kind("bastion.get", bastion::get_bastion(app, group, &o[3]))
        }
        ("GET", ["providers", "microsoft.network", "virtualnetworks"]) => {
            with_kind("network.vnet.list", network::list_vnets(app, Some(group)))
        }
        ("GET", ["providers", "microsoft.network", "virtualnetworks", _]) => {
            with_kind("network.vnet.get", network::get_vnet(app, group, &o[3]))
        }
        (
            _,
            [
                "providers",
                "microsoft.compute",
                "virtualmachines",
                _,
                rest @ ..,
            ],
        ) => {
            let vm = &o[3];
            match (m, rest) {
                ("GET", []) => with_kind("vm.get", compute::get(app, req, group, vm)),
                ("GET", ["instanceview"]) => {
                    with_kind("vm.instanceView", compute::instance_view(app, group, vm))
                }
                ("POST", ["start"]) => with_kind("vm.start", compute::start(app, req, group, vm)),
                ("POST", ["runcommand"]) => {
                    with_kind("vm.runCommand", compute::run_command(app, req, group, vm))
                }
                ("GET", ["extensions"]) => with_kind(
                    "vm.extension.list",
                    extension::list_extensions(app, group, vm),
                ),
                ("GET", ["extensions", _]) => with_kind(
                    "vm.extension.get",
                    extension::get_extension(app, group, vm, &o[5]),
                ),
                ("PUT", ["extensions", _]) => with_kind(
                    "vm.extension.put",
                    extension::put_extension(app, req, group, vm, &o[5]),
                ),
                ("DELETE", ["extensions", _]) => with_kind(
                    "vm.extension.delete",
                    extension::delete_extension(app, req, group, vm, &o[5]),
                ),
                (
                    _,
                    []
                    | ["start"]
                    | ["runcommand"]
                    | ["extensions"]
                    | ["extensions", _]
                    | ["instanceview"],
                ) => ("rejected", Err(ArmError::method_not_allowed(m))),
                _ => ("unknown", Err(ArmError::no_route(&req.path))),
            }
        }
        ("GET", ["providers", "microsoft.network", "networkinterfaces", _]) => {
            with_kind("network.nic.get", network::get_nic(app, group, &o[3]))
        }
        ("GET", ["providers", "microsoft.network", "publicipaddresses", _]) => with_kind(
            "network.publicIp.get",
            network::get_public_ip(app, group, &o[3]),
        ),
        (
            "GET",
            [
                "providers",
                "microsoft.network",
                "virtualnetworks",
                _,
                "subnets",
                _,
            ],
        ) => with_kind(
            "network.subnet.get",
            network::get_subnet(app, group, &o[3], &o[5]),
        ),
        (
            _,
            [
                "providers",
                "microsoft.network",
                "networksecuritygroups",
                _,
                rest @ ..,
            ],
        ) => {
            let nsg = &o[3];
            match (m, rest) {
                ("GET", []) => with_kind("nsg.get", network::get_nsg(app, group, nsg)),
                ("GET", ["securityrules"]) => {
                    with_kind("nsg.rule.list", network::list_rules(app, group, nsg))
                }
                ("GET", ["defaultsecurityrules"]) => with_kind(
                    "nsg.defaultRule.list",
                    network::list_default_rules(app, group, nsg),
                ),
                ("GET", ["securityrules", _]) => {
                    with_kind("nsg.rule.get", network::get_rule(app, group, nsg, &o[5]))
                }
                ("PUT", ["securityrules", _]) => with_kind(
                    "nsg.rule.put",
                    network::put_rule(app, req, group, nsg, &o[5]),
                ),
                ("DELETE", ["securityrules", _]) => with_kind(
                    "nsg.rule.delete",
                    network::delete_rule(app, req, group, nsg, &o[5]),
                ),
                _ => ("unknown", Err(ArmError::no_route(&req.path))),
            }
        }
        (
            "GET",
            [
                "providers",
                "microsoft.security",
                "jitnetworkaccesspolicies",
            ],
        ) => with_kind("jit.list", security::list(app, Some(group), None)),
        (
            "GET",
            [
                "providers",
                "microsoft.security",
                "locations",
                loc,
                "jitnetworkaccesspolicies",
            ],
        ) => with_kind("jit.list", security::list(app, Some(group), Some(loc))),
        (
            "GET",
            [
                "providers",
                "microsoft.security",
                "locations",
                loc,
                "jitnetworkaccesspolicies",
                name,
            ],
        ) => with_kind("jit.get", security::get(app, group, loc, name)),
        (
            "POST",
            [
                "providers",
                "microsoft.security",
                "locations",
                loc,
                "jitnetworkaccesspolicies",
                name,
                "initiate",
            ],
        ) => with_kind(
            "jit.initiate",
            security::initiate(app, req, group, loc, name),
        ),
        _ => ("unknown", Err(ArmError::no_route(&req.path))),
    }
}
