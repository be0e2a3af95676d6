//! VM extensions: create-or-update (LRO, then a GET of the resource) and get, with the
//! `WindowsOpenSSH` extension that enables SSH on Windows Server 2016 and older (ARM.md §5).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::ArmClient;
use super::config::Provider;
use super::error::Result;
use super::resource_id::ResourceId;
use super::vm::InstanceViewStatus;

/// `VirtualMachineExtension`, for requests and answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmExtension {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<String>,
    /// Optional in the schema, but the CLI always sends the VM's location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub properties: ExtensionProperties,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_handler_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_upgrade_minor_version: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_automatic_upgrade: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_update_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
    /// Write-only in practice (ARM never returns it); kept out of Debug-printed logs by callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_settings: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress_failures: Option<bool>,
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Read-only; present with `$expand=instanceView`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_view: Option<ExtensionInstanceView>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionInstanceView {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub type_handler_version: Option<String>,
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
    #[serde(default)]
    pub substatuses: Vec<InstanceViewStatus>,
}

pub const OPENSSH_PUBLISHER: &str = "Microsoft.Azure.OpenSSH";
pub const OPENSSH_TYPE: &str = "WindowsOpenSSH";
pub const OPENSSH_VERSION: &str = "3.0";

impl VmExtension {
    /// The request body that installs OpenSSH on older Windows (connect-ssh doc, ARM.md §5).
    pub fn windows_openssh(location: &str) -> Self {
        VmExtension {
            location: Some(location.to_string()),
            properties: ExtensionProperties {
                publisher: Some(OPENSSH_PUBLISHER.into()),
                type_: Some(OPENSSH_TYPE.into()),
                type_handler_version: Some(OPENSSH_VERSION.into()),
                auto_upgrade_minor_version: Some(true),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Detects an install by publisher and type, not by name: the doc names it `WindowsOpenSSH`
    /// (CLI/ARM) or `OpenSSH` (PowerShell).
    pub fn is_windows_openssh(&self) -> bool {
        let p = &self.properties;
        p.publisher
            .as_deref()
            .is_some_and(|x| x.eq_ignore_ascii_case(OPENSSH_PUBLISHER))
            && p.type_
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(OPENSSH_TYPE))
    }

    /// The body to PUT: read-only fields dropped.
    pub fn to_request_body(&self) -> Value {
        let mut req = self.clone();
        req.id = None;
        req.type_ = None;
        req.properties.provisioning_state = None;
        req.properties.instance_view = None;
        serde_json::to_value(req).unwrap_or(Value::Null)
    }
}

fn extension_path(vm_id: &str, name: &str) -> Result<String> {
    let vm = ResourceId::parse_typed(vm_id, "Microsoft.Compute/virtualMachines")?;
    super::names::child_name("extension name", name)?;
    Ok(vm.child("extensions", name).to_string())
}

/// PUT the extension and wait until it is provisioned (recorded: 201 `Creating` with
/// `Azure-AsyncOperation` and no `Location`), then return the final resource.
pub async fn create_or_update_extension(
    client: &ArmClient,
    vm_id: &str,
    name: &str,
    extension: &VmExtension,
) -> Result<VmExtension> {
    let path = extension_path(vm_id, name)?;
    client
        .put_lro(
            &path,
            Provider::Compute,
            &extension.to_request_body(),
            &format!("extension `{name}`"),
        )
        .await
}

/// The extension with its instance view; `None` when it is not installed.
pub async fn get_extension(
    client: &ArmClient,
    vm_id: &str,
    name: &str,
) -> Result<Option<VmExtension>> {
    let path = extension_path(vm_id, name)?;
    client
        .get_optional(&path, Provider::Compute, &[("$expand", "instanceView")])
        .await
}

/// DELETE the extension and wait (recorded: 202 with both `Azure-AsyncOperation` and `Location`).
pub async fn delete_extension(client: &ArmClient, vm_id: &str, name: &str) -> Result<()> {
    let path = extension_path(vm_id, name)?;
    client
        .delete_lro(
            &path,
            Provider::Compute,
            &format!("deletion of extension `{name}`"),
        )
        .await
}

/// All extensions of a VM (`{"value": [...]}`, not paged).
pub async fn list_extensions(client: &ArmClient, vm_id: &str) -> Result<Vec<VmExtension>> {
    let vm = ResourceId::parse_typed(vm_id, "Microsoft.Compute/virtualMachines")?;
    client
        .list(&format!("{vm}/extensions"), Provider::Compute, &[])
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssh_body_matches_the_doc() {
        assert_eq!(
            VmExtension::windows_openssh("westus").to_request_body(),
            serde_json::json!({"location": "westus", "properties": {"publisher": "Microsoft.Azure.OpenSSH",
                "type": "WindowsOpenSSH", "typeHandlerVersion": "3.0", "autoUpgradeMinorVersion": true}})
        );
        assert!(VmExtension::windows_openssh("x").is_windows_openssh());
    }
}
