//! VM extensions (`Microsoft.Compute/virtualMachines/extensions`): put/get/list/delete with the
//! recorded LRO headers. `Microsoft.Azure.OpenSSH/WindowsOpenSSH` reaches the guest, which
//! installs and starts sshd; other extensions are not modelled and end `Failed`, saying so.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::compute::{accepted, vm_id, vm_or_404};
use super::lro::{OpState, Provider};
use super::reply::{ArmError, Reply};
use super::server::{App, Req, lock};
use super::world::{Extension, PowerState, World};

/// How long the extension takes to install, before `--speed` scaling.
const EXTENSION_TIME: Duration = Duration::from_secs(45);

pub fn render_extension(world: &World, vm: usize, e: &Extension, instance_view: bool) -> Value {
    let mut body = json!({
        "name": e.name,
        "id": format!("{}/extensions/{}", vm_id(world, vm), e.name),
        "type": "Microsoft.Compute/virtualMachines/extensions",
        "location": world.location_of(vm),
        "properties": {
            "autoUpgradeMinorVersion": e.auto_upgrade_minor_version,
            "provisioningState": e.provisioning_state,
            "publisher": e.publisher,
            "type": e.kind,
            "typeHandlerVersion": e.type_handler_version,
            "settings": e.settings,
        }
    });
    if instance_view {
        body["properties"]["instanceView"] = extension_instance_view(e);
    }
    body
}

pub fn extension_instance_view(e: &Extension) -> Value {
    json!({
        "name": e.name,
        "type": format!("{}.{}", e.publisher, e.kind),
        "typeHandlerVersion": e.type_handler_version,
        "statuses": [{
            "code": format!("ProvisioningState/{}", e.provisioning_state.to_ascii_lowercase()),
            "level": if e.provisioning_state == "Failed" { "Error" } else { "Info" },
            "displayStatus": format!("Provisioning {}", e.provisioning_state.to_ascii_lowercase()),
            "message": e.message,
        }]
    })
}

pub fn list_extensions(app: &Arc<App>, group: u16, name: &str) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let vm = vm_or_404(&world, group, name)?;
    let value: Vec<Value> = world.vms[vm]
        .extensions
        .iter()
        .map(|e| render_extension(&world, vm, e, false))
        .collect();
    Ok(Reply::ok(json!({ "value": value })))
}

fn extension_or_404(world: &World, vm: usize, ext: &str) -> Result<usize, ArmError> {
    world.vms[vm]
        .extensions
        .iter()
        .position(|e| e.name.eq_ignore_ascii_case(ext))
        .ok_or_else(|| {
            ArmError::not_found(
                "Microsoft.Compute/virtualMachines/extensions",
                &format!("{}/{ext}", world.vms[vm].name),
                &world.groups[world.vms[vm].group as usize].name,
            )
        })
}

pub fn get_extension(app: &Arc<App>, group: u16, name: &str, ext: &str) -> Result<Reply, ArmError> {
    let world = lock(&app.world);
    let vm = vm_or_404(&world, group, name)?;
    let e = extension_or_404(&world, vm, ext)?;
    Ok(Reply::ok(render_extension(
        &world,
        vm,
        &world.vms[vm].extensions[e],
        true,
    )))
}

fn is_openssh(e: &Extension) -> bool {
    e.publisher.eq_ignore_ascii_case("Microsoft.Azure.OpenSSH")
        && e.kind.eq_ignore_ascii_case("WindowsOpenSSH")
}

/// PUT an extension: 201 (or 200 on update) with `provisioningState: Creating` and only
/// `Azure-AsyncOperation` (+ `Azure-AsyncNotification`), as recorded.
pub fn put_extension(
    app: &Arc<App>,
    req: &Req,
    group: u16,
    name: &str,
    ext: &str,
) -> Result<Reply, ArmError> {
    let body = req.json()?;
    let p = body.get("properties").cloned().unwrap_or(Value::Null);
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(publisher), Some(kind), Some(version)) =
        (text("publisher"), text("type"), text("typeHandlerVersion"))
    else {
        return Err(ArmError::bad_request(
            "InvalidParameter",
            "The value of parameter 'publisher', 'type' and 'typeHandlerVersion' are required.",
        ));
    };
    let (vm, guest, region, sub, status, rendered) = {
        let mut world = lock(&app.world);
        let vm = vm_or_404(&world, group, name)?;
        if world.vms[vm].power != PowerState::Running {
            return Err(ArmError::conflict(
                "OperationNotAllowed",
                "Cannot modify extensions in the VM when the VM is not running.",
            ));
        }
        let existing = world.vms[vm]
            .extensions
            .iter()
            .position(|e| e.name.eq_ignore_ascii_case(ext));
        // Windows takes one extension per handler (publisher.type): the same handler under a
        // second name is refused (reference/WINDOWS-REALITIES.md, Azure/azure-powershell#8173).
        if let Some(other) = world.vms[vm].extensions.iter().find(|e| {
            !e.name.eq_ignore_ascii_case(ext)
                && e.publisher.eq_ignore_ascii_case(&publisher)
                && e.kind.eq_ignore_ascii_case(&kind)
        }) {
            return Err(ArmError::bad_request(
                "OperationNotAllowed",
                format!(
                    "Multiple VMExtensions per handler not supported for OS type 'Windows'. VMExtension '{}' with handler '{}.{}' already added or specified in input.",
                    other.name, other.publisher, other.kind
                ),
            ));
        }
        let e = Extension {
            name: ext.to_string(),
            publisher,
            kind,
            type_handler_version: version,
            auto_upgrade_minor_version: p
                .get("autoUpgradeMinorVersion")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            settings: p.get("settings").cloned().unwrap_or_else(|| json!({})),
            provisioning_state: if existing.is_some() {
                "Updating"
            } else {
                "Creating"
            },
            message: String::new(),
        };
        let status = if existing.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        match existing {
            Some(i) => world.vms[vm].extensions[i] = e,
            None => world.vms[vm].extensions.push(e),
        }
        let i = existing.unwrap_or(world.vms[vm].extensions.len() - 1);
        let rendered = render_extension(&world, vm, &world.vms[vm].extensions[i], false);
        let guest = app.guest(&mut world, vm);
        (
            vm,
            guest,
            world.location_of(vm),
            world.subscription.clone(),
            status,
            rendered,
        )
    };
    let urls = lock(&app.ops).begin(
        Provider::Compute,
        &app.endpoint,
        &sub,
        region,
        &req.api_version,
    );
    let app2 = app.clone();
    let id = urls.id.clone();
    let ext_name = ext.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(app2.scaled(EXTENSION_TIME)).await;
        let openssh = {
            let world = lock(&app2.world);
            world.vms[vm]
                .extensions
                .iter()
                .find(|e| e.name == ext_name)
                .is_some_and(is_openssh)
        };
        let outcome: Result<(), String> = if !openssh {
            Err(
                "the emulator models only the Microsoft.Azure.OpenSSH/WindowsOpenSSH extension"
                    .into(),
            )
        } else if app2.lro_fails() {
            Err("An internal execution error occurred. Please retry later.".into())
        } else {
            match guest {
                Some(g) => tokio::task::spawn_blocking(move || g.install_openssh_extension())
                    .await
                    .unwrap_or_else(|e| Err(e.to_string())),
                None => Err("this emulator has no guest model wired in".into()),
            }
        };
        let mut world = lock(&app2.world);
        if let Some(e) = world.vms[vm]
            .extensions
            .iter_mut()
            .find(|e| e.name == ext_name)
        {
            match &outcome {
                Ok(()) => {
                    e.provisioning_state = "Succeeded";
                    e.message = "Enable succeeded.".into();
                }
                Err(m) => {
                    e.provisioning_state = "Failed";
                    e.message = m.clone();
                }
            }
        }
        drop(world);
        let state = match outcome {
            Ok(()) => OpState::Succeeded(None),
            Err(m) => OpState::Failed {
                code: "VMExtensionProvisioningError".into(),
                message: format!(
                    "VM has reported a failure when processing extension '{ext_name}'. Error message: \"{m}\"."
                ),
            },
        };
        lock(&app2.ops).finish(&id, state);
    });
    Ok(Reply::status(status, Some(rendered))
        .header("azure-asyncoperation", urls.async_operation)
        .header("azure-asyncnotification", "Enabled"))
}

/// DELETE an extension: 202 with both poll URLs (recorded), 204 when there is none.
pub fn delete_extension(
    app: &Arc<App>,
    req: &Req,
    group: u16,
    name: &str,
    ext: &str,
) -> Result<Reply, ArmError> {
    let (vm, region, sub) = {
        let mut world = lock(&app.world);
        let vm = vm_or_404(&world, group, name)?;
        let Some(i) = world.vms[vm]
            .extensions
            .iter()
            .position(|e| e.name.eq_ignore_ascii_case(ext))
        else {
            return Ok(Reply::status(StatusCode::NO_CONTENT, None));
        };
        world.vms[vm].extensions[i].provisioning_state = "Deleting";
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
    let ext = ext.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(app.scaled(Duration::from_secs(20))).await;
        lock(&app.world).vms[vm]
            .extensions
            .retain(|e| !e.name.eq_ignore_ascii_case(&ext));
        lock(&app.ops).finish(&id, OpState::Succeeded(None));
    });
    Ok(accepted(&urls))
}
