//! Virtual machines: the `Vm` record scripts see, and the calls that fill it. `get_vm` resolves
//! with direct GETs (VM with instance view → primary NIC → its public IP and subnet) because
//! Resource Graph lags behind recent writes; `list_vms` is the cheap paged listing for fleets
//! (filters: `vm_filter.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::client::{ArmClient, Retry};
use super::config::Provider;
use super::error::{AzureError, Result};
use super::network::{self, NetworkInterface};
use super::resource_id::ResourceId;

/// One entry of an instance view's `statuses` (also RunCommand's result entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceViewStatus {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub display_status: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

/// The parts of `VirtualMachine` (ARM.md §2) we read. Everything optional: gallery images have
/// no sku, list answers have no instance view, generated examples omit nearly everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VirtualMachineJson {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub properties: VmPropertiesJson,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmPropertiesJson {
    #[serde(default)]
    pub vm_id: Option<String>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(default)]
    pub hardware_profile: Option<HardwareProfile>,
    #[serde(default)]
    pub storage_profile: Option<StorageProfile>,
    #[serde(default)]
    pub os_profile: Option<OsProfile>,
    #[serde(default)]
    pub network_profile: Option<NetworkProfile>,
    #[serde(default)]
    pub instance_view: Option<InstanceView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HardwareProfile {
    #[serde(default)]
    pub vm_size: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfile {
    #[serde(default)]
    pub image_reference: Option<ImageReference>,
    #[serde(default)]
    pub os_disk: Option<OsDisk>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    #[serde(default)]
    pub publisher: Option<String>,
    #[serde(default)]
    pub offer: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub exact_version: Option<String>,
    /// Gallery and custom images carry an id instead of publisher/offer/sku.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    #[serde(default)]
    pub os_type: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsProfile {
    #[serde(default)]
    pub computer_name: Option<String>,
    #[serde(default)]
    pub admin_username: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    #[serde(default)]
    pub network_interfaces: Vec<NicReference>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NicReference {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub properties: Option<NicReferenceProperties>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NicReferenceProperties {
    #[serde(default)]
    pub primary: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    #[serde(default)]
    pub computer_name: Option<String>,
    #[serde(default)]
    pub os_name: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
    #[serde(default)]
    pub vm_agent: Option<VmAgent>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmAgent {
    #[serde(default)]
    pub vm_agent_version: Option<String>,
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
}

/// What scripts see as a `Vm`. Plain data; `None` where Azure had nothing (or, after
/// `list_vms`, where the network was not resolved yet: see `network_resolved`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Vm {
    pub id: String,
    pub name: String,
    pub resource_group: String,
    pub subscription: String,
    pub location: String,
    pub size: Option<String>,
    /// `Windows` or `Linux`, from the OS disk: the reliable discriminator (az ssh uses it).
    pub os_type: Option<String>,
    /// As the instance view gives them, e.g. `Windows Server 2016 Datacenter`.
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    pub image_sku: Option<String>,
    /// Lower-case suffix of `PowerState/...` (`running`, `deallocated`, ...); `unknown` when absent.
    pub power_state: String,
    pub provisioning_state: Option<String>,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    /// The NIC's NSG, then the subnet's.
    pub nsg_ids: Vec<String>,
    /// The primary NIC's own NSG, when `network_resolved` (`None`: the NIC has none), so
    /// `open_port` can tell the NIC's NSG from the subnet's without reading the NIC again.
    pub nic_nsg_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub nic_id: Option<String>,
    pub subnet_id: Option<String>,
    pub public_ip_id: Option<String>,
    pub admin_username: Option<String>,
    pub computer_name: Option<String>,
    /// `Ready` from the VM agent's status; RunCommand needs a ready agent.
    pub vm_agent_status: Option<String>,
    /// Whether the NIC, public IP and subnet were read (false after the cheap `list_vms`).
    pub network_resolved: bool,
    /// When Azure told us these facts (a direct read or the inventory query); `None` for a
    /// `Vm` built from a list answer. `ensure_running` trusts a recent power state.
    #[serde(skip)]
    pub observed_at: Option<std::time::Instant>,
}

/// How long a power state read from Azure is trusted by `ensure_running` before it reads the
/// VM again. A fleet run reads its whole inventory once, at the start; a VM stopped behind our
/// back after that makes its RunCommand fail with Azure's own "VM not running" error, which
/// names the cause.
pub const POWER_STATE_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(300);

impl Vm {
    /// The power state, if it was read from Azure within `POWER_STATE_FRESH_FOR`.
    pub fn fresh_power_state(&self) -> Option<&str> {
        self.observed_at
            .filter(|t| t.elapsed() < POWER_STATE_FRESH_FOR)
            .map(|_| self.power_state.as_str())
            .filter(|p| *p != "unknown")
    }
}

/// `PowerState/running` → `running`; `unknown` when no such status.
pub fn power_state(statuses: &[InstanceViewStatus]) -> String {
    statuses
        .iter()
        .find_map(|s| {
            let (kind, value) = s.code.split_once('/')?;
            kind.eq_ignore_ascii_case("PowerState")
                .then(|| value.to_ascii_lowercase())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

impl Vm {
    /// Builds a `Vm` from a VM body alone (network fields left empty).
    pub fn from_json(json: &VirtualMachineJson) -> Result<Vm> {
        let id = ResourceId::parse(&json.id)?;
        let p = &json.properties;
        let storage = p.storage_profile.as_ref();
        let view = p.instance_view.as_ref();
        Ok(Vm {
            id: json.id.clone(),
            name: if json.name.is_empty() {
                id.name().to_string()
            } else {
                json.name.clone()
            },
            resource_group: id.resource_group().unwrap_or_default().to_string(),
            subscription: id.subscription().to_string(),
            location: json.location.clone(),
            size: p.hardware_profile.as_ref().and_then(|h| h.vm_size.clone()),
            os_type: storage
                .and_then(|s| s.os_disk.as_ref())
                .and_then(|d| d.os_type.clone()),
            os_name: view.and_then(|v| v.os_name.clone()),
            os_version: view.and_then(|v| v.os_version.clone()),
            image_sku: storage
                .and_then(|s| s.image_reference.as_ref())
                .and_then(|i| i.sku.clone()),
            power_state: view
                .map(|v| power_state(&v.statuses))
                .unwrap_or_else(|| "unknown".into()),
            provisioning_state: p.provisioning_state.clone(),
            public_ip: None,
            private_ip: None,
            nsg_ids: Vec::new(),
            nic_nsg_id: None,
            tags: json.tags.clone().unwrap_or_default(),
            nic_id: primary_nic_id(p),
            subnet_id: None,
            public_ip_id: None,
            admin_username: p.os_profile.as_ref().and_then(|o| o.admin_username.clone()),
            computer_name: view
                .and_then(|v| v.computer_name.clone())
                .or_else(|| p.os_profile.as_ref().and_then(|o| o.computer_name.clone())),
            vm_agent_status: view
                .and_then(|v| v.vm_agent.as_ref())
                .and_then(|a| a.statuses.first())
                .and_then(|s| s.display_status.clone()),
            network_resolved: false,
            observed_at: None,
        })
    }

    /// Fills the network fields from the primary NIC and what it points to.
    pub fn apply_network(
        &mut self,
        nic: &NetworkInterface,
        public_ip: Option<&network::PublicIpAddress>,
        subnet: Option<&network::Subnet>,
    ) {
        let config = nic.primary_ip_configuration();
        self.nic_id = Some(nic.id.clone())
            .filter(|s| !s.is_empty())
            .or(self.nic_id.take());
        self.private_ip = config.and_then(|c| c.properties.private_ip_address.clone());
        self.public_ip_id = config
            .and_then(|c| c.properties.public_ip_address.as_ref())
            .map(|r| r.id.clone());
        self.subnet_id = config
            .and_then(|c| c.properties.subnet.as_ref())
            .map(|r| r.id.clone());
        self.public_ip = public_ip.and_then(|p| p.properties.ip_address.clone());
        let mut nsgs = Vec::new();
        self.nic_nsg_id = nic
            .properties
            .network_security_group
            .as_ref()
            .map(|n| n.id.clone());
        if let Some(n) = &nic.properties.network_security_group {
            nsgs.push(n.id.clone());
        }
        if let Some(n) = subnet.and_then(|s| s.properties.network_security_group.as_ref())
            && !nsgs.iter().any(|x| super::resource_id::same_id(x, &n.id))
        {
            nsgs.push(n.id.clone());
        }
        self.nsg_ids = nsgs;
        self.network_resolved = true;
    }

    pub fn resource_id(&self) -> Result<ResourceId> {
        ResourceId::parse(&self.id)
    }

    pub fn is_windows(&self) -> bool {
        self.os_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("windows"))
    }
}

/// The NIC marked primary, else the first (a single-NIC VM has no `primary` flag).
fn primary_nic_id(p: &VmPropertiesJson) -> Option<String> {
    let nics = &p.network_profile.as_ref()?.network_interfaces;
    nics.iter()
        .find(|n| n.properties.as_ref().and_then(|p| p.primary) == Some(true))
        .or_else(|| nics.first())
        .map(|n| n.id.clone())
}

fn vm_path(client: &ArmClient, resource_group: &str, name: &str) -> Result<String> {
    super::names::resource_group(resource_group)?;
    super::names::vm_name(name)?;
    Ok(ResourceId::virtual_machine(client.subscription(), resource_group, name).to_string())
}

/// The VM with its instance view, primary NIC, public IP and subnet.
/// A VM that is not there gets the nearest names as its hint (one more list call, on 404 only).
pub async fn get_vm(client: &ArmClient, resource_group: &str, name: &str) -> Result<Vm> {
    match get_vm_at(client, &vm_path(client, resource_group, name)?).await {
        Err(e) => Err(super::vm_suggest::explain_missing(client, resource_group, name, e).await),
        ok => ok,
    }
}

/// `get_vm` for a resource id (any subscription the token can read).
pub async fn get_vm_by_id(client: &ArmClient, id: &str) -> Result<Vm> {
    let id = ResourceId::parse_typed(id, "Microsoft.Compute/virtualMachines")?;
    get_vm_at(client, &id.to_string()).await
}

async fn get_vm_at(client: &ArmClient, path: &str) -> Result<Vm> {
    let mut vm = get_vm_view(client, path).await?;
    resolve_network(client, &mut vm).await?;
    Ok(vm)
}

/// The VM with its instance view only (one read; network fields empty).
async fn get_vm_view(client: &ArmClient, path: &str) -> Result<Vm> {
    let observed_at = std::time::Instant::now();
    let json: VirtualMachineJson = client
        .get_json(path, Provider::Compute, &[("$expand", "instanceView")])
        .await?;
    let mut vm = Vm::from_json(&json)?;
    vm.observed_at = Some(observed_at);
    Ok(vm)
}

/// Reads the VM's primary NIC, then its public IP and subnet concurrently.
pub async fn resolve_network(client: &ArmClient, vm: &mut Vm) -> Result<()> {
    let Some(nic_id) = vm.nic_id.clone() else {
        vm.network_resolved = true;
        return Ok(());
    };
    let nic = network::get_network_interface(client, &nic_id).await?;
    let config = nic.primary_ip_configuration();
    let pip_id = config
        .and_then(|c| c.properties.public_ip_address.as_ref())
        .map(|r| r.id.clone());
    let subnet_id = config
        .and_then(|c| c.properties.subnet.as_ref())
        .map(|r| r.id.clone());
    let pip = async {
        match &pip_id {
            Some(id) => missing_is_none(network::get_public_ip(client, id).await),
            None => Ok(None),
        }
    };
    let subnet = async {
        match &subnet_id {
            Some(id) => missing_is_none(network::get_subnet(client, id).await),
            None => Ok(None),
        }
    };
    let (pip, subnet) = futures::try_join!(pip, subnet)?;
    vm.apply_network(&nic, pip.as_ref(), subnet.as_ref());
    Ok(())
}

/// A dangling reference (resource deleted since) reads as "none", not as a failed lookup.
fn missing_is_none<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every VM in a resource group, or in the subscription, from the paged list: no instance
/// view (`power_state` is `unknown`) and no network (one GET per page instead of four per VM).
pub async fn list_vms(client: &ArmClient, resource_group: Option<&str>) -> Result<Vec<Vm>> {
    let path = match resource_group {
        Some(rg) => {
            super::names::resource_group(rg)?;
            client.subscription_path(&format!(
                "/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines"
            ))
        }
        None => client.subscription_path("/providers/Microsoft.Compute/virtualMachines"),
    };
    let raw: Vec<VirtualMachineJson> = client.list(&path, Provider::Compute, &[]).await?;
    raw.iter().map(Vm::from_json).collect()
}

/// Starts the VM (an LRO with no result body, ARM.md §3) and then confirms with an instance-view
/// GET that it reports `running`, since the operation's success alone does not say so.
pub async fn start_vm(client: &ArmClient, vm_id: &str) -> Result<Vm> {
    start_known(client, vm_id, None).await
}

/// `start_vm` for a VM whose network we already know: after the start only the instance view
/// is read again (one GET), and the network only if the VM had no public address (a dynamic
/// public IP is released on deallocation and assigned again by the start).
async fn start_known(client: &ArmClient, vm_id: &str, known: Option<&Vm>) -> Result<Vm> {
    let id = ResourceId::parse_typed(vm_id, "Microsoft.Compute/virtualMachines")?;
    let reread = |client: &ArmClient| {
        let path = id.to_string();
        let client = client.clone();
        async move {
            let mut vm = get_vm_view(&client, &path).await?;
            match known.filter(|k| k.network_resolved) {
                Some(k) if k.public_ip.is_some() || k.public_ip_id.is_none() => {
                    vm.nic_id = k.nic_id.clone().or(vm.nic_id);
                    vm.private_ip = k.private_ip.clone();
                    vm.public_ip = k.public_ip.clone();
                    vm.public_ip_id = k.public_ip_id.clone();
                    vm.subnet_id = k.subnet_id.clone();
                    vm.nsg_ids = k.nsg_ids.clone();
                    vm.nic_nsg_id = k.nic_nsg_id.clone();
                    vm.network_resolved = true;
                }
                _ => resolve_network(&client, &mut vm).await?,
            }
            Ok::<Vm, AzureError>(vm)
        }
    };
    let what = format!("`start` of VM `{}`", id.name());
    client
        .post_lro(
            &format!("{id}/start"),
            Provider::Compute,
            None,
            Retry::Idempotent,
            &what,
        )
        .await?;
    let mut vm = reread(client).await?;
    let policy = client.retry_policy().clone();
    let mut waited = std::time::Duration::ZERO;
    while vm.power_state != "running" && waited < policy.max_poll_delay * 4 {
        client.status(&format!(
            "waiting for VM `{}` to report running (now {})",
            vm.name, vm.power_state
        ));
        tokio::time::sleep(policy.poll_delay).await;
        waited += policy.poll_delay;
        vm = reread(client).await?;
    }
    if vm.power_state != "running" {
        return Err(AzureError::OperationFailed {
            what,
            status: "Succeeded".into(),
            code: "NotRunning".into(),
            message: format!("the VM reports `{}` after starting", vm.power_state),
            details: vec![],
        });
    }
    Ok(vm)
}

/// Starts the VM unless it already runs. Returns the fresh VM and whether we started it.
/// A power state read within `POWER_STATE_FRESH_FOR` (the fleet's inventory, a `refresh()`) is
/// not read again: a fleet run would otherwise spend four reads per VM on a fact it has.
pub async fn ensure_running(client: &ArmClient, vm: &Vm) -> Result<(Vm, bool)> {
    let current = match vm.fresh_power_state() {
        Some(_) if vm.network_resolved => vm.clone(),
        _ => get_vm_by_id(client, &vm.id).await?,
    };
    if current.power_state == "running" {
        return Ok((current, false));
    }
    Ok((start_known(client, &vm.id, Some(&current)).await?, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_state_is_the_lower_case_suffix() {
        let s = |c: &str| InstanceViewStatus {
            code: c.into(),
            ..Default::default()
        };
        assert_eq!(
            power_state(&[s("ProvisioningState/succeeded"), s("PowerState/running")]),
            "running"
        );
        assert_eq!(power_state(&[s("PowerState/Deallocated")]), "deallocated");
        assert_eq!(power_state(&[s("ProvisioningState/succeeded")]), "unknown");
        assert_eq!(power_state(&[]), "unknown");
    }
}
