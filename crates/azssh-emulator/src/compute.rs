//! Microsoft.Compute: VM get/list/instance view, start and the RunCommand action (extensions are
//! in `extension.rs`),
//! answering with the bodies and LRO headers recorded from real Azure.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::extension::{extension_instance_view, render_extension};
use super::lro::{OpState, Provider};
use super::reply::{ArmError, Reply};
use super::server::{App, Req, lock};
use super::world::{ENVS, GuestOutput, PowerState, ROLES, SIZES, TEAMS, World};

/// RunCommand keeps only the last 4096 bytes of each stream (Azure's documented limit).
pub const OUTPUT_LIMIT: usize = 4096;
/// Azure's minimum RunCommand time ("about 20 seconds"), before `--speed` scaling.
const RUN_COMMAND_TIME: Duration = Duration::from_secs(20);
const START_TIME: Duration = Duration::from_secs(30);
pub const CREATED: &str = "2025-06-02T08:14:31.4478453+00:00";

pub fn vm_or_404(world: &World, group: u16, name: &str) -> Result<usize, ArmError> {
    world.vm(group, name).ok_or_else(|| {
        ArmError::not_found(
            "Microsoft.Compute/virtualMachines",
            name,
            &world.groups[group as usize].name,
        )
    })
}

pub fn vm_id(world: &World, vm: usize) -> String {
    let v = &world.vms[vm];
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
        world.subscription, world.groups[v.group as usize].name, v.name
    )
}

pub fn group_prefix(world: &World, group: u16) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}",
        world.subscription, world.groups[group as usize].name
    )
}

pub fn tags(world: &World, vm: usize) -> Value {
    let v = &world.vms[vm];
    let mut t = json!({"env": ENVS[v.env as usize], "team": TEAMS[v.team as usize], "role": ROLES[v.role as usize]});
    if let Some(variant) = world.bastion.vm_variants.get(&vm) {
        t["emulator-variant"] = json!(variant);
    }
    t
}

pub fn status(code: &str, display: &str) -> Value {
    json!({"code": code, "level": "Info", "displayStatus": display, "time": CREATED})
}

/// `VirtualMachineInstanceView`. The guest agent only reports `osName`/`osVersion` and its own
/// status while the VM runs, so a stopped or deallocated VM has neither (as on Azure).
pub fn render_instance_view(world: &World, vm: usize) -> Value {
    let v = &world.vms[vm];
    let mut iv = json!({
        "computerName": v.computer_name(),
        "hyperVGeneration": "V2",
        "disks": [{"name": format!("{}_OsDisk_1", v.name), "statuses": [status("ProvisioningState/succeeded", "Provisioning succeeded")]}],
        "statuses": [status("ProvisioningState/succeeded", "Provisioning succeeded"), {"code": v.power.code(), "level": "Info", "displayStatus": v.power.display()}],
    });
    if v.power == PowerState::Running {
        iv["platformUpdateDomain"] = json!(0);
        iv["platformFaultDomain"] = json!(0);
        iv["osName"] = json!(v.release.os_name());
        iv["osVersion"] = json!(v.os_version());
        iv["vmAgent"] = json!({
            "vmAgentVersion": "2.7.41491.1176",
            "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready", "message": "GuestAgent is running and accepting new configurations.", "time": CREATED}],
            "extensionHandlers": v.extensions.iter().map(|e| json!({
                "type": format!("{}.{}", e.publisher, e.kind),
                "typeHandlerVersion": e.type_handler_version,
                "status": {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready"},
            })).collect::<Vec<_>>(),
        });
        iv["extensions"] = json!(
            v.extensions
                .iter()
                .map(extension_instance_view)
                .collect::<Vec<_>>()
        );
    }
    iv
}

/// `VirtualMachine`, with the instance view when asked for.
pub fn render_vm(world: &World, vm: usize, instance_view: bool) -> Value {
    let v = &world.vms[vm];
    let prefix = group_prefix(world, v.group);
    let mut body = json!({
        "name": v.name,
        "id": vm_id(world, vm),
        "type": "Microsoft.Compute/virtualMachines",
        "location": world.location_of(vm),
        "tags": tags(world, vm),
        "etag": "\"1\"",
        "properties": {
            "vmId": v.vm_id.to_string(),
            "hardwareProfile": {"vmSize": SIZES[v.size as usize]},
            "storageProfile": {
                "imageReference": {
                    "publisher": "MicrosoftWindowsServer",
                    "offer": "WindowsServer",
                    "sku": v.release.image_sku(),
                    "version": "latest",
                    "exactVersion": format!("{}.{}.250605", v.release.build(), v.ubr),
                },
                "osDisk": {
                    "osType": "Windows",
                    "name": format!("{}_OsDisk_1", v.name),
                    "createOption": "FromImage",
                    "caching": "ReadWrite",
                    "managedDisk": {"storageAccountType": "Premium_LRS", "id": format!("{prefix}/providers/Microsoft.Compute/disks/{}_OsDisk_1", v.name)},
                    "deleteOption": "Delete",
                    "diskSizeGB": 127,
                },
                "dataDisks": [],
            },
            "osProfile": {
                "computerName": v.computer_name(),
                "adminUsername": v.admin_username(),
                "windowsConfiguration": {"provisionVMAgent": true, "enableAutomaticUpdates": true},
                "secrets": [],
                "allowExtensionOperations": true,
            },
            "networkProfile": {"networkInterfaces": [{"id": format!("{prefix}/providers/Microsoft.Network/networkInterfaces/{}", v.nic_name())}]},
            "diagnosticsProfile": {"bootDiagnostics": {"enabled": true}},
            "provisioningState": "Succeeded",
            "timeCreated": CREATED,
        }
    });
    if instance_view {
        body["properties"]["instanceView"] = render_instance_view(world, vm);
    }
    if !v.extensions.is_empty() {
        body["resources"] = json!(
            v.extensions
                .iter()
                .map(|e| render_extension(world, vm, e, false))
                .collect::<Vec<_>>()
        );
    }
    body
}

pub fn get(app: &Arc<App>, req: &Req, group: u16, name: &str) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let vm = vm_or_404(&world, group, name)?;
    let expand = req
        .query("$expand")
        .is_some_and(|e| e.eq_ignore_ascii_case("instanceView"));
    Ok(Reply::ok(render_vm(&world, vm, expand)))
}

pub fn instance_view(app: &Arc<App>, group: u16, name: &str) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let vm = vm_or_404(&world, group, name)?;
    Ok(Reply::ok(render_instance_view(&world, vm)))
}

/// `VirtualMachineListResult`, paged with `nextLink` (`$skiptoken` is the offset).
pub fn list(app: &Arc<App>, req: &Req, group: Option<u16>) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let skip: usize = req
        .query("$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let matching: Vec<usize> = (0..world.vms.len())
        .filter(|i| group.is_none_or(|g| world.vms[*i].group == g))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(app.page_size)
        .map(|i| render_vm(&world, *i, false))
        .collect();
    let mut body = json!({ "value": page });
    let next = skip + app.page_size;
    if next < matching.len() {
        body["nextLink"] = json!(format!(
            "{}{}?api-version={}&$skiptoken={next}",
            app.endpoint, req.path, req.api_version
        ));
    }
    Ok(Reply::ok(body))
}

/// 202 with both poll URLs, as the recorded RunCommand and the documented start do.
pub fn accepted(urls: &super::lro::OpUrls) -> Reply {
    Reply::status(StatusCode::ACCEPTED, None)
        .header("azure-asyncoperation", urls.async_operation.clone())
        .header("location", urls.location.clone())
}

pub fn start(app: &Arc<App>, req: &Req, group: u16, name: &str) -> Result<Reply, ArmError> {
    let (vm, region, sub) = {
        let mut world = lock(&app.world);
        let vm = vm_or_404(&world, group, name)?;
        if world.vms[vm].power != PowerState::Running {
            world.vms[vm].power = PowerState::Starting;
        }
        (vm, world.location_of(vm), world.subscription.clone())
    };
    let urls = lock(&app.ops).begin(
        Provider::Compute,
        &app.endpoint,
        &sub,
        region,
        &req.api_version,
    );
    let app = app.clone();
    let id = urls.id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(app.scaled(START_TIME)).await;
        let fail = app.lro_fails();
        {
            let mut world = lock(&app.world);
            let v = &mut world.vms[vm];
            v.power = if fail && v.power == PowerState::Starting {
                PowerState::Stopped
            } else {
                PowerState::Running
            };
        }
        lock(&app.ops).finish(
            &id,
            if fail {
                internal_failure()
            } else {
                OpState::Succeeded(None)
            },
        );
    });
    Ok(accepted(&urls))
}

pub fn internal_failure() -> OpState {
    OpState::Failed {
        code: "InternalExecutionError".into(),
        message: "An internal execution error occurred. Please retry later.".into(),
    }
}

/// Keeps the last `OUTPUT_LIMIT` bytes, cut on a character boundary.
pub fn last_bytes(s: &str) -> &str {
    if s.len() <= OUTPUT_LIMIT {
        return s;
    }
    let mut start = s.len() - OUTPUT_LIMIT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `RunCommandResult`: stdout and stderr as `ComponentStatus/*/succeeded` entries. Exit codes
/// are not exposed by the action API, so a failing script still "succeeds" with its stderr.
pub fn run_command_result(out: &GuestOutput) -> Value {
    json!({"value": [
        {"code": "ComponentStatus/StdOut/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": last_bytes(&out.stdout)},
        {"code": "ComponentStatus/StdErr/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": last_bytes(&out.stderr)},
    ]})
}

/// RunCommand parameters reach a Windows script as `-name value` on its command line (the
/// guest binds them: `param()`, else `$args`).
fn params_of(body: &Value) -> Vec<(String, String)> {
    body.get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let n = p.get("name").and_then(Value::as_str)?;
            let v = p.get("value").and_then(Value::as_str)?;
            Some((n.to_string(), v.to_string()))
        })
        .collect()
}

/// The `script` lines joined by newlines, as the agent writes them to its `.ps1`.
fn script_of(body: &Value) -> String {
    let mut lines = Vec::new();
    for l in body
        .get("script")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(l) = l.as_str() {
            lines.push(l.to_string());
        }
    }
    lines.join("\n")
}

pub fn run_command(app: &Arc<App>, req: &Req, group: u16, name: &str) -> Result<Reply, ArmError> {
    let body = req.json()?;
    let command = body
        .get("commandId")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'commandId' is missing (null).",
            )
        })?;
    if !command.eq_ignore_ascii_case("RunPowerShellScript") {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "The entity was not found in this Azure location. (the emulator models only `RunPowerShellScript`, not `{command}`)"
            ),
        ));
    }
    super::run_command_input::check(&body)?;
    let script = script_of(&body);
    let params = params_of(&body);
    let (vm, guest, region, sub, vm_name) = {
        let mut world = lock(&app.world);
        let vm = vm_or_404(&world, group, name)?;
        let v = &world.vms[vm];
        if v.power != PowerState::Running {
            return Err(ArmError::conflict(
                "OperationNotAllowed",
                format!(
                    "Operation 'RunCommand' is not allowed on VM '{}' since the VM is not running. Please start the VM and retry.",
                    v.name
                ),
            ));
        }
        if v.run_command_busy {
            return Err(ArmError::conflict(
                "Conflict",
                "Run command extension execution is in progress. Please wait for completion before invoking a run command.",
            ));
        }
        world.vms[vm].run_command_busy = true;
        let guest = app.guest(&mut world, vm);
        (
            vm,
            guest,
            world.location_of(vm),
            world.subscription.clone(),
            world.vms[vm].name.clone(),
        )
    };
    app.stats.run_command_started(&vm_name);
    let urls = lock(&app.ops).begin(
        Provider::Compute,
        &app.endpoint,
        &sub,
        region,
        &req.api_version,
    );
    let app = app.clone();
    let id = urls.id.clone();
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let output = match guest {
            Some(g) => tokio::task::spawn_blocking(move || g.run_powershell(&script, &params))
                .await
                .unwrap_or_else(|e| GuestOutput {
                    stderr: format!("the guest crashed running the script: {e}"),
                    exit_code: 1,
                    ..Default::default()
                }),
            None => GuestOutput {
                stderr: "this emulator has no guest model wired in, so the script was not run"
                    .into(),
                exit_code: 1,
                ..Default::default()
            },
        };
        tokio::time::sleep_until(started + app.scaled(RUN_COMMAND_TIME)).await;
        let state = if app.lro_fails() {
            internal_failure()
        } else {
            OpState::Succeeded(Some(run_command_result(&output)))
        };
        lock(&app.world).vms[vm].run_command_busy = false;
        lock(&app.ops).finish(&id, state);
    });
    Ok(accepted(&urls))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_the_last_4096_bytes() {
        let long = format!("{}é{}", "a".repeat(5000), "b".repeat(4094));
        let cut = last_bytes(&long);
        assert!(cut.len() <= OUTPUT_LIMIT);
        assert!(cut.ends_with('b'));
        assert_eq!(last_bytes("short"), "short");
    }

    #[test]
    fn parameters_are_passed_apart_from_the_script() {
        let body = json!({"script": ["param($p)", "Write-Output $p"], "parameters": [{"name": "p", "value": "it's"}]});
        assert_eq!(script_of(&body), "param($p)\nWrite-Output $p");
        assert_eq!(params_of(&body), [("p".to_string(), "it's".to_string())]);
    }

    #[test]
    fn stopped_vm_has_no_guest_agent_data() {
        let w = World::generate(40, 2);
        let stopped = w
            .vms
            .iter()
            .position(|v| v.power != PowerState::Running)
            .unwrap();
        let running = w
            .vms
            .iter()
            .position(|v| v.power == PowerState::Running)
            .unwrap();
        assert!(render_instance_view(&w, stopped).get("osName").is_none());
        let iv = render_instance_view(&w, running);
        assert!(iv["osVersion"].as_str().unwrap().starts_with("10.0."));
    }
}
