//! Rhai bindings for Azure Resource Manager: the `Vm` type and its getters, `vm`, `vms`,
//! `graph_query`, `run_powershell`, and the VM actions `refresh`, `start`, `ensure_running`.

use std::collections::BTreeMap;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FuncRegistration, Map};

use crate::azure::graph::{self, GraphOptions};
use crate::azure::run_command::{self, RunCommandOptions};
use crate::azure::vm::{self, Vm};
use crate::azure::vm_filter::{self, Detail, VmFilter};
use crate::script::api::options::Options;
use crate::script::context::Ctx;
use crate::script::value;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// How many VMs `vms()` reads at once: ARM's read budget is per subscription, shared with
/// everything else the caller does.
const LIST_CONCURRENCY: usize = 16;

/// A name given as a string or an integer (`--arg name=1234`).
fn name_arg(what: &str, v: Dynamic) -> RhaiResult<String> {
    if v.is_string() || v.is_int() {
        Ok(v.to_string())
    } else {
        Err(crate::script::error::to_rhai(
            &crate::script::error::ScriptError::bad_argument(
                format!("vm(): `{what}` must be a string, not {}", v.type_name()),
                None,
            ),
        ))
    }
}

fn opt(v: &Option<String>) -> Dynamic {
    v.clone().map_or(Dynamic::UNIT, Dynamic::from)
}

pub fn register(engine: &mut Engine, ctx: &Ctx) {
    engine.register_type_with_name::<Vm>("Vm");
    register_getters(engine);
    engine.register_fn("to_string", |v: &mut Vm| {
        format!("Vm({}/{}, {})", v.resource_group, v.name, v.power_state)
    });
    engine.register_fn("to_debug", |v: &mut Vm| format!("Vm({})", v.id));

    let c = ctx.clone();
    FuncRegistration::new("vm")
        .with_comments(["\
/// Looks a VM up by resource group and name: the VM with its instance view, then its primary
/// NIC, public IP and subnet, by direct reads (Resource Graph lags behind recent changes).
///
/// # Example
/// ```rhai
/// let v = vm(\"rg-web\", \"web01\");
/// print(`${v.name}: ${v.power_state}, ${v.public_ip ?? \"no public ip\"}`);
/// ```"])
        .with_params_info(["resource_group: string", "name: string", "Vm"])
        .register_into_engine(engine, move |rg: &str, name: &str| -> RhaiResult<Vm> {
            let arm = c.arm()?;
            c.bridge
                .block_on(&format!("reading VM `{name}`"), async move {
                    vm::get_vm(&arm, rg, name).await
                })
        });
    // `--arg name=1234` arrives as a number (ARGS values are parsed as JSON): still a name.
    let c = ctx.clone();
    FuncRegistration::new("vm")
        .with_comments(["\
/// `vm(resource_group, name)` when an argument arrives as a number (`--arg name=1234`): the
/// number is taken as the name's text."])
        .with_params_info(["resource_group: string | int", "name: string | int", "Vm"])
        .register_into_engine(
            engine,
            move |rg: Dynamic, name: Dynamic| -> RhaiResult<Vm> {
                let (rg, name) = (name_arg("resource_group", rg)?, name_arg("name", name)?);
                let arm = c.arm()?;
                c.bridge
                    .block_on(&format!("reading VM `{name}`"), async move {
                        vm::get_vm(&arm, &rg, &name).await
                    })
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("vm")
        .with_comments(["\
/// Looks a VM up by its resource id.
///
/// # Example
/// ```rhai
/// let v = vm(\"/subscriptions/.../resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web01\");
/// ```"])
        .with_params_info(["resource_id: string", "Vm"])
        .register_into_engine(engine, move |id: &str| -> RhaiResult<Vm> {
            let arm = c.arm()?;
            c.bridge.block_on("reading VM", async move { vm::get_vm_by_id(&arm, id).await })
        });

    let vms_doc = "\
/// Lists VMs: all in the subscription, those of a resource group, or those matching a filter
/// `#{resource_group, tags, name, power_state}` (`tags` must all match; `name` may use `*` and
/// `?`). Each VM is read in full (power state, IPs, NSGs).
///
/// # Example
/// ```rhai
/// let web = vms(#{tags: #{role: \"web\"}, power_state: \"running\"});
/// web.map(|v| v.name)
/// ```";
    for arity in 0..=1 {
        let c = ctx.clone();
        if arity == 0 {
            FuncRegistration::new("vms")
                .with_comments([vms_doc])
                .with_params_info(["array"])
                .register_into_engine(engine, move || find(&c, VmFilter::default()));
        } else {
            let c2 = ctx.clone();
            FuncRegistration::new("vms")
                .with_comments([vms_doc])
                .with_params_info(["resource_group: string", "array"])
                .register_into_engine(engine, move |rg: &str| {
                    find(
                        &c,
                        VmFilter {
                            resource_group: Some(rg.to_string()),
                            ..Default::default()
                        },
                    )
                });
            FuncRegistration::new("vms")
                .with_comments([vms_doc])
                .with_params_info(["filter: map", "array"])
                .register_into_engine(engine, move |m: Map| find(&c2, filter_from(m)?));
        }
    }

    let c = ctx.clone();
    FuncRegistration::new("graph_query")
        .with_comments(["\
/// Runs an Azure Resource Graph query over the subscription and returns every row as a map
/// (following `$skipToken`). Project `id` for stable paging.
///
/// # Example
/// ```rhai
/// graph_query(\"Resources | where type =~ 'microsoft.compute/virtualmachines' | project id, name, location\")
/// ```"])
        .with_params_info(["kql: string", "array"])
        .register_into_engine(engine, move |kql: &str| -> RhaiResult<Array> {
            let arm = c.arm()?;
            let rows = c.bridge.block_on("querying Resource Graph", async move {
                graph::graph_query(&arm, kql, &GraphOptions::default()).await
            })?;
            Ok(rows.iter().map(value::from_json).collect())
        });

    register_actions(engine, ctx);
    register_run_powershell(engine, ctx);
}

fn register_getters(engine: &mut Engine) {
    engine
        .register_get("id", |v: &mut Vm| v.id.clone())
        .register_get("name", |v: &mut Vm| v.name.clone())
        .register_get("resource_group", |v: &mut Vm| v.resource_group.clone())
        .register_get("subscription", |v: &mut Vm| v.subscription.clone())
        .register_get("location", |v: &mut Vm| v.location.clone())
        .register_get("size", |v: &mut Vm| opt(&v.size))
        .register_get("os_type", |v: &mut Vm| opt(&v.os_type))
        .register_get("os_name", |v: &mut Vm| opt(&v.os_name))
        .register_get("os_version", |v: &mut Vm| opt(&v.os_version))
        .register_get("image_sku", |v: &mut Vm| opt(&v.image_sku))
        .register_get("power_state", |v: &mut Vm| v.power_state.clone())
        .register_get("public_ip", |v: &mut Vm| opt(&v.public_ip))
        .register_get("private_ip", |v: &mut Vm| opt(&v.private_ip))
        .register_get("admin_username", |v: &mut Vm| opt(&v.admin_username))
        .register_get("computer_name", |v: &mut Vm| opt(&v.computer_name))
        // Every field a `Vm` prints (JSON, tables) is readable as a property too.
        .register_get(
            "provisioning_state",
            |v: &mut Vm| opt(&v.provisioning_state),
        )
        .register_get("vm_agent_status", |v: &mut Vm| opt(&v.vm_agent_status))
        .register_get("nic_id", |v: &mut Vm| opt(&v.nic_id))
        .register_get("subnet_id", |v: &mut Vm| opt(&v.subnet_id))
        .register_get("public_ip_id", |v: &mut Vm| opt(&v.public_ip_id))
        .register_get("network_resolved", |v: &mut Vm| v.network_resolved)
        .register_get("nsg_ids", |v: &mut Vm| -> Array {
            v.nsg_ids.iter().cloned().map(Dynamic::from).collect()
        })
        .register_get("tags", |v: &mut Vm| -> Map {
            v.tags
                .iter()
                .map(|(k, val)| (k.as_str().into(), Dynamic::from(val.clone())))
                .collect()
        });
}

fn register_actions(engine: &mut Engine, ctx: &Ctx) {
    let c = ctx.clone();
    FuncRegistration::new("refresh")
        .with_comments(["\
/// Reads the VM again (power state, IPs, NSGs), in place.
///
/// # Example
/// ```rhai
/// v.refresh();
/// v.power_state
/// ```"])
        .with_params_info(["vm: Vm", "()"])
        .register_into_engine(engine, move |v: &mut Vm| {
            replace_vm(&c, v, "reading", |arm, id| async move {
                vm::get_vm_by_id(&arm, &id).await
            })
        });
    let c = ctx.clone();
    FuncRegistration::new("start")
        .with_comments(["\
/// Starts the VM and waits until Azure reports it running; the VM is re-read in place.
///
/// # Example
/// ```rhai
/// if v.power_state != \"running\" { v.start(); }
/// ```"])
        .with_params_info(["vm: Vm", "()"])
        .register_into_engine(engine, move |v: &mut Vm| {
            replace_vm(&c, v, "starting", |arm, id| async move {
                vm::start_vm(&arm, &id).await
            })
        });
    let c = ctx.clone();
    FuncRegistration::new("ensure_running")
        .with_comments(["\
/// Starts the VM if it is not running and waits for it; returns `true` when it had to start it.
///
/// # Example
/// ```rhai
/// if v.ensure_running() { info(`started ${v.name}`); }
/// ```"])
        .with_params_info(["vm: Vm", "bool"])
        .register_into_engine(engine, move |v: &mut Vm| -> RhaiResult<bool> {
            let arm = c.arm()?;
            let current = v.clone();
            let (fresh, started) = c
                .bridge
                .block_on(&format!("making sure `{}` runs", v.name), async move {
                    vm::ensure_running(&arm, &current).await
                })?;
            *v = fresh;
            Ok(started)
        });
}

/// Replaces `v` with what `call(arm, id)` answers (a fresh read, a started VM).
fn replace_vm<F, Fut>(ctx: &Ctx, v: &mut Vm, doing: &str, call: F) -> RhaiResult<()>
where
    F: FnOnce(crate::azure::ArmClient, String) -> Fut,
    Fut: std::future::Future<Output = crate::azure::error::Result<Vm>>,
{
    let fut = call(ctx.arm()?, v.id.clone());
    *v = ctx
        .bridge
        .block_on(&format!("{doing} VM `{}`", v.name), fut)?;
    Ok(())
}

fn register_run_powershell(engine: &mut Engine, ctx: &Ctx) {
    let doc = "\
/// Runs a PowerShell script on the VM through Azure RunCommand (`RunPowerShellScript`) and
/// returns `#{exit_code, stdout, stderr, truncated, duration_ms}`. Azure keeps only the last
/// 4096 bytes of each stream (`truncated` says so) and runs one command per VM at a time (a
/// busy VM is retried). `exit_code` is `()` when it could not be read, never a guess.
/// Options: `#{parameters: #{name: value}}` passed as `-name value`; `check: true` throws
/// `script.command_failed` when the exit code is not 0.
///
/// # Example
/// ```rhai
/// let r = run_powershell(v, \"Get-Service sshd | Select-Object -ExpandProperty Status\");
/// if r.exit_code == 0 { print(r.stdout) }
/// ```";
    for with_opts in [false, true] {
        let c = ctx.clone();
        let reg = FuncRegistration::new("run_powershell").with_comments([doc]);
        if with_opts {
            reg.with_params_info(["vm: Vm", "script: string", "options: map", "map"])
                .register_into_engine(engine, move |v: Vm, script: &str, o: Map| {
                    run_ps(&c, &v, script, o)
                });
        } else {
            reg.with_params_info(["vm: Vm", "script: string", "map"])
                .register_into_engine(engine, move |v: Vm, script: &str| {
                    run_ps(&c, &v, script, Map::new())
                });
        }
    }
}

fn run_ps(ctx: &Ctx, v: &Vm, script: &str, options: Map) -> RhaiResult<Dynamic> {
    let opts = Options::new("run_powershell", options, &["parameters", "check"])?;
    let check = opts.bool("check")?.unwrap_or(false);
    let mut rc = RunCommandOptions::default();
    if let Some(params) = opts.map("parameters")? {
        rc.parameters = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
    let arm = ctx.arm()?;
    let lines: Vec<String> = script.lines().map(str::to_string).collect();
    let id = v.id.clone();
    let out = ctx.bridge.block_on(
        &format!("waiting for RunCommand on `{}`", v.name),
        async move { run_command::run_powershell(&arm, &id, &lines, &rc).await },
    )?;
    let result = value::to_dynamic(&out);
    if check {
        let map = result
            .read_lock::<Map>()
            .map(|m| m.clone())
            .unwrap_or_default();
        let code = map.get("exit_code").and_then(|c| c.as_int().ok());
        if code != Some(0) {
            let stderr = map.get("stderr").map(|e| e.to_string()).unwrap_or_default();
            return Err(crate::script::error::to_rhai(
                &crate::script::error::ScriptError::command_failed(
                    &format!("run_powershell() on `{}`", v.name),
                    code,
                    &stderr,
                ),
            ));
        }
    }
    Ok(result)
}

fn filter_from(m: Map) -> RhaiResult<VmFilter> {
    let o = Options::new("vms", m, &["resource_group", "tags", "name", "power_state"])?;
    let tags: BTreeMap<String, String> = o
        .map("tags")?
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(VmFilter {
        resource_group: o.string("resource_group")?,
        tags,
        name: o.string("name")?,
        power_state: o.string("power_state")?,
    })
}

fn find(ctx: &Ctx, filter: VmFilter) -> RhaiResult<Array> {
    let arm = ctx.arm()?;
    // One paged Resource Graph query (VMs with power state, addresses and NSGs); ARM's lists
    // and per-VM reads only when the graph cannot be read.
    let found = ctx.bridge.block_on("listing VMs", async move {
        match vm_filter::find_vms_graph(&arm, &filter).await {
            Ok(vms) => Ok(vms),
            Err(e) => {
                tracing::debug!(error = %e, "no Resource Graph; listing VMs through ARM");
                vm_filter::find_vms(&arm, &filter, Detail::Full, LIST_CONCURRENCY).await
            }
        }
    })?;
    Ok(found.into_iter().map(Dynamic::from).collect())
}

/// A `Vm`'s map form for output (JSON, tables).
pub fn vm_map(value: &Dynamic) -> Option<Map> {
    value
        .read_lock::<Vm>()
        .and_then(|v| value::to_dynamic(&*v).try_cast::<Map>())
}
