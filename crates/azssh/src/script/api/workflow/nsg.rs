//! Rhai bindings for NSG rules: `open_port`, `close_port`, `nsg_rules`.

use rhai::{Array, Dynamic, Engine, FuncRegistration, Map};

use super::{RhaiResult, block};
use crate::azure::network;
use crate::azure::vm::Vm;
use crate::script::api::options::Options;
use crate::script::context::Ctx;
use crate::script::error::{ScriptError, to_rhai};
use crate::script::value;
use crate::workflow::nsg::{self, CloseWhat, OpenPort, outcome_json, rule_json};

pub fn register(engine: &mut Engine, ctx: &Ctx) {
    let c = ctx.clone();
    FuncRegistration::new("open_port")
        .with_comments(["\
/// Allows inbound traffic to a port of the VM from each `source`, each in its own rule named
/// from the source (`azssh-ssh-203-0-113-7-32`), so access others hold is never rewritten or
/// narrowed. The rule goes to the NIC's NSG (destination `*`), or the subnet's when the NIC has
/// none (destination: the VM's private address, not the whole subnet); when both exist the
/// subnet's gets one too (`also`), since Azure needs every NSG on the path to allow the traffic.
/// A source already admitted is left alone (`changed: false`, nothing written). When a Defender
/// just-in-time policy covers the port, JIT access is requested instead (`jit: true`,
/// `jit_policy`, `end_time_utc`); `permanent: true` adds the standing rule anyway, with a
/// warning naming the policy. Options: `source` (required: an IP, CIDR or service tag, or an
/// array / comma list of them; Internet-wide sources such as `\"*\"`, `Any`, any `/0` need
/// `allow_internet: true`), `port` (22), `name` (one source only; an existing rule of that name
/// with another source is never overwritten), `protocol` (`Tcp`), `priority` (must be free;
/// without it 1000, or the next free one, reported as `priority_moved_from`). Returns the rule
/// map plus `rules`, `scope`, `changed`, `open_to_internet`, `jit`, `jit_policy`, `warnings`
/// and `admitted_by: [#{rule, nsg, priority, sources}]` (every allow rule now admitting the
/// port).
///
/// # Example
/// ```rhai
/// let r = open_port(v, #{source: \"203.0.113.7/32\"});
/// info(`${r.name} at priority ${r.priority} on the ${r.scope} NSG`);
/// ```"])
        .with_params_info(["vm: Vm", "options: map", "map"])
        .register_into_engine(engine, move |v: Vm, o: Map| open_port(&c, &v, o));

    let doc = "\
/// Takes back what `open_port` gave this VM: the rule `name`, or with a map
/// `#{source, port, protocol}` the rule `open_port` made for that source (port 22 by default),
/// leaving every other source's rule alone. On a subnet rule aimed at several VMs only this
/// VM's destination is removed (the rule is deleted with its last one). A rule azssh did not
/// create, or one whose destination also admits other VMs, is left in place with a warning.
/// Returns `true` when a rule was deleted or narrowed, `false` otherwise.
///
/// # Example
/// ```rhai
/// close_port(v, #{source: \"203.0.113.7/32\"});
/// close_port(v, \"azssh-ssh-203-0-113-7-32\");
/// ```";
    let c = ctx.clone();
    FuncRegistration::new("close_port")
        .with_comments([doc])
        .with_params_info(["vm: Vm", "name: string", "bool"])
        .register_into_engine(engine, move |v: Vm, name: &str| -> RhaiResult<bool> {
            close_port(&c, v, CloseWhat::Name(name.to_string()))
        });
    let c = ctx.clone();
    FuncRegistration::new("close_port")
        .with_comments([doc])
        .with_params_info(["vm: Vm", "options: map", "bool"])
        .register_into_engine(engine, move |v: Vm, o: Map| -> RhaiResult<bool> {
            let o = Options::new("close_port", o, &["source", "port", "protocol"])?;
            let source = o
                .string("source")?
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| {
                    to_rhai(&ScriptError::bad_argument(
                        "`close_port` needs `source` (or a rule name)",
                        Some("`close_port(v, #{source: \"203.0.113.7/32\"})`"),
                    ))
                })?;
            let what = CloseWhat::Source {
                port: o.int_in("port", 1..=65535)?.unwrap_or(22) as u16,
                source: source.trim().to_string(),
                protocol: o.string("protocol")?,
            };
            close_port(&c, v, what)
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

/// `source` as a string (commas separate several) or an array of strings.
pub(crate) fn sources_option(o: &Options, function: &str) -> RhaiResult<Vec<String>> {
    let missing = || {
        to_rhai(&ScriptError::bad_argument(
            format!("`{function}` needs `source`"),
            Some(
                "give your address or CIDR (`#{source: \"203.0.113.7/32\"}`), several as an array, or `\"*\"` with `allow_internet: true` to open the port to the Internet",
            ),
        ))
    };
    let sources = match o.raw("source") {
        Some(v) if v.is_array() => {
            let mut out = Vec::new();
            for item in v.clone().into_array().unwrap_or_default() {
                match item.into_string() {
                    Ok(s) => out.extend(nsg::split_sources(&s)),
                    Err(t) => {
                        return Err(to_rhai(&ScriptError::bad_argument(
                            format!("`{function}`: `source` items must be strings, not {t}"),
                            None,
                        )));
                    }
                }
            }
            out
        }
        _ => o
            .string("source")?
            .map(|s| nsg::split_sources(&s))
            .unwrap_or_default(),
    };
    if sources.is_empty() {
        return Err(missing());
    }
    Ok(sources)
}

fn open_port(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new(
        "open_port",
        options,
        &[
            "port",
            "source",
            "priority",
            "name",
            "protocol",
            "allow_internet",
            "permanent",
        ],
    )?;
    let sources = sources_option(&o, "open_port")?;
    let req = OpenPort {
        port: o.int_in("port", 1..=65535)?.unwrap_or(22) as u16,
        sources,
        priority: o.int_in("priority", 100..=4096)?.map(|p| p as i32),
        name: o.string("name")?,
        protocol: o.string("protocol")?,
        allow_internet: o.bool("allow_internet")?.unwrap_or(false),
        permanent: o.bool("permanent")?.unwrap_or(false),
    };
    let arm = ctx.arm()?;
    let vm = v.clone();
    let outcome = block(
        ctx,
        &format!("opening port {} on `{}`", req.port, v.name),
        async move { nsg::open_port(&arm, &vm, &req).await },
    )?;
    Ok(value::from_json(&outcome_json(&outcome)))
}

fn close_port(ctx: &Ctx, v: Vm, what: CloseWhat) -> RhaiResult<bool> {
    let arm = ctx.arm()?;
    block(
        ctx,
        &format!("closing a port on `{}`", v.name),
        async move { nsg::close_port(&arm, &v, &what).await },
    )
}
