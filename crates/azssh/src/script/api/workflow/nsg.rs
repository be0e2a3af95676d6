//! Rhai bindings for NSG rules: `open_port`, `close_port`, `nsg_rules`.

use rhai::{Array, Dynamic, Engine, FuncRegistration, Map};

use super::{RhaiResult, block, required_string};
use crate::azure::network::{self, OpenPort};
use crate::azure::vm::Vm;
use crate::output::{self, Level};
use crate::script::api::options::Options;
use crate::script::context::Ctx;
use crate::script::value;
use crate::workflow::nsg::{outcome_json, rule_json};

pub fn register(engine: &mut Engine, ctx: &Ctx) {
    let c = ctx.clone();
    FuncRegistration::new("open_port")
        .with_comments(["\
/// Allows inbound traffic to a port in the VM's network security group: the NIC's NSG, or the
/// subnet's when the NIC has none (`scope` says which); when both exist the subnet's gets the
/// rule too (`also`), since Azure needs every NSG on the path to allow the traffic. Options: `source` (required: an IP,
/// CIDR or service tag; `\"*\"`/`\"Internet\"` only when you mean it, with a warning), `port`
/// (22), `name` (`allow-SSH` for 22), `protocol` (`Tcp`), `priority` (must be free; without it
/// 1000, or the next free one, reported as `priority_moved_from`). An equivalent rule already
/// there is left alone (`changed: false`). Returns the rule map.
///
/// # Example
/// ```rhai
/// let r = open_port(v, #{source: \"203.0.113.7/32\"});
/// info(`${r.name} at priority ${r.priority} on the ${r.scope} NSG`);
/// ```"])
        .with_params_info(["vm: Vm", "options: map", "map"])
        .register_into_engine(engine, move |v: Vm, o: Map| open_port(&c, &v, o));

    let c = ctx.clone();
    FuncRegistration::new("close_port")
        .with_comments(["\
/// Deletes the rule `name` from whichever of the VM's NSGs holds it; returns `true` when one
/// did, `false` when no NSG had it.
///
/// # Example
/// ```rhai
/// close_port(v, \"allow-SSH\");
/// ```"])
        .with_params_info(["vm: Vm", "name: string", "bool"])
        .register_into_engine(engine, move |v: Vm, name: &str| -> RhaiResult<bool> {
            let arm = c.arm()?;
            let name = name.to_string();
            block(
                &c,
                &format!("closing `{name}` on `{}`", v.name),
                async move { Ok(network::close_port(&arm, &v, &name).await?) },
            )
        });

    let c = ctx.clone();
    FuncRegistration::new("nsg_rules")
        .with_comments(["\
/// The security rules of every NSG that applies to the VM (NIC's first, then subnet's), as maps
/// `#{name, priority, direction, access, protocol, port, source, nsg, nsg_id}`. Default rules
/// are left out.
///
/// # Example
/// ```rhai
/// nsg_rules(v).filter(|r| r.port == \"22\" && r.access == \"Allow\")
/// ```"])
        .with_params_info(["vm: Vm", "array"])
        .register_into_engine(engine, move |v: Vm| -> RhaiResult<Array> {
            let arm = c.arm()?;
            let rules = block(
                &c,
                &format!("reading NSG rules of `{}`", v.name),
                async move {
                    let mut all = Vec::new();
                    for nsg in &v.nsg_ids {
                        for rule in network::list_security_rules(&arm, nsg).await? {
                            all.push(rule_json(&rule, nsg));
                        }
                    }
                    Ok(all)
                },
            )?;
            Ok(rules.iter().map(value::from_json).collect())
        });
}

fn open_port(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new(
        "open_port",
        options,
        &["port", "source", "priority", "name", "protocol"],
    )?;
    let source = required_string(
        &o,
        "open_port",
        "source",
        "give your address or CIDR (`#{source: \"203.0.113.7/32\"}`), or `\"*\"` to open the port to the Internet",
    )?;
    let req = OpenPort {
        port: o.int_in("port", 1..=65535)?.unwrap_or(22) as u16,
        source,
        priority: o.int_in("priority", 100..=4096)?.map(|p| p as i32),
        name: o.string("name")?,
        protocol: o.string("protocol")?,
    };
    let arm = ctx.arm()?;
    let vm = v.clone();
    let outcome = block(
        ctx,
        &format!("opening port {} on `{}`", req.port, v.name),
        async move { Ok(network::open_port(&arm, &vm, &req).await?) },
    )?;
    if outcome.open_to_internet {
        output::log(
            Level::Warn,
            &format!(
                "port {} of `{}` is open to the whole Internet; prefer your own address",
                outcome
                    .rule
                    .properties
                    .destination_port_range
                    .clone()
                    .unwrap_or_default(),
                v.name
            ),
        );
    }
    if let Some(from) = outcome.priority_moved_from {
        output::log(
            Level::Info,
            &format!(
                "priority {from} is taken; `{}` got priority {}",
                outcome.rule.name.clone().unwrap_or_default(),
                outcome.rule.properties.priority
            ),
        );
    }
    Ok(value::from_json(&outcome_json(&outcome)))
}
