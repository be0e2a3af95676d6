//! Microsoft Defender for Cloud just-in-time VM access (`Microsoft.Security`, 2020-01-01,
//! ARM.md §11): find the policy that names a VM, and initiate an access request.

use serde::{Deserialize, Serialize};

use super::client::{ArmClient, Retry};
use super::config::Provider;
use super::error::{AzureError, Result};
use super::resource_id::{ResourceId, same_id};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JitPolicy {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub properties: JitPolicyProperties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitPolicyProperties {
    #[serde(default)]
    pub virtual_machines: Vec<JitPolicyVm>,
    #[serde(default)]
    pub requests: Vec<JitRequest>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitPolicyVm {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub ports: Vec<JitPortRule>,
    #[serde(default)]
    pub public_ip_address: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitPortRule {
    pub number: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_source_address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_source_address_prefixes: Vec<String>,
    /// ISO 8601 duration, e.g. `PT3H`.
    #[serde(default)]
    pub max_request_access_duration: Option<String>,
}

/// `JitNetworkAccessRequest` (the initiate answer, and `properties.requests[]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitRequest {
    #[serde(default)]
    pub virtual_machines: Vec<JitRequestVm>,
    #[serde(default)]
    pub start_time_utc: Option<String>,
    #[serde(default)]
    pub requestor: Option<String>,
    #[serde(default)]
    pub justification: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JitRequestVm {
    pub id: String,
    #[serde(default)]
    pub ports: Vec<JitRequestPort>,
}

/// A port in an initiate request (`number`, `endTimeUtc` required) or its answer (`status`...).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitRequestPort {
    pub number: u16,
    #[serde(rename = "endTimeUtc")]
    pub end_time_utc: String,
    /// Omitted: the caller's own address, as the service sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_source_address_prefix: Option<String>,
    /// The example answers `Initiating`, outside the spec's enum: kept as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped_port: Option<u16>,
}

/// `JitNetworkAccessPolicyInitiateRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JitInitiateRequest {
    #[serde(rename = "virtualMachines")]
    pub virtual_machines: Vec<JitRequestVm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

impl JitInitiateRequest {
    /// Access to one port of one VM until `end_time_utc` (RFC 3339).
    pub fn single(
        vm_id: &str,
        port: u16,
        source: Option<&str>,
        end_time_utc: &str,
        justification: Option<&str>,
    ) -> Self {
        JitInitiateRequest {
            virtual_machines: vec![JitRequestVm {
                id: vm_id.to_string(),
                ports: vec![JitRequestPort {
                    number: port,
                    end_time_utc: end_time_utc.to_string(),
                    allowed_source_address_prefix: source.map(str::to_string),
                    ..Default::default()
                }],
            }],
            justification: justification.map(str::to_string),
        }
    }
}

/// The JIT policy in the VM's resource group that lists the VM; `None` when there is none.
pub async fn get_vm_jit_policy(client: &ArmClient, vm_id: &str) -> Result<Option<JitPolicy>> {
    let vm = ResourceId::parse_typed(vm_id, "Microsoft.Compute/virtualMachines")?;
    let rg = vm.resource_group().unwrap_or_default();
    let path = format!(
        "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Security/jitNetworkAccessPolicies",
        vm.subscription()
    );
    let policies: Vec<JitPolicy> = client.list(&path, Provider::Security, &[]).await?;
    Ok(policies.into_iter().find(|p| {
        p.properties
            .virtual_machines
            .iter()
            .any(|v| same_id(&v.id, vm_id))
    }))
}

/// Initiates a request on the policy (answered `202` with a body; not an LRO: re-read the
/// policy's `requests` to confirm).
pub async fn initiate_jit(
    client: &ArmClient,
    policy_id: &str,
    request: &JitInitiateRequest,
) -> Result<JitRequest> {
    let policy = ResourceId::parse_typed(
        policy_id,
        "Microsoft.Security/locations/jitNetworkAccessPolicies",
    )?;
    let body =
        serde_json::to_value(request).map_err(|e| AzureError::InvalidInput(e.to_string()))?;
    // Initiating twice only refreshes the same window, so a retry is harmless.
    client
        .post_json(
            &format!("{policy}/initiate"),
            Provider::Security,
            &body,
            Retry::Idempotent,
        )
        .await
}

/// Finds the VM's policy and requests `port` for `duration` from `source` (`None`: our address).
pub async fn request_vm_access(
    client: &ArmClient,
    vm_id: &str,
    port: u16,
    source: Option<&str>,
    duration: std::time::Duration,
) -> Result<JitRequest> {
    let policy = get_vm_jit_policy(client, vm_id).await?.ok_or_else(|| {
        AzureError::NotFound(format!("no just-in-time policy covers VM `{vm_id}`"))
    })?;
    let end = time::OffsetDateTime::now_utc() + duration;
    let end = end
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| AzureError::InvalidInput(e.to_string()))?;
    let request = JitInitiateRequest::single(vm_id, port, source, &end, Some("requested by azssh"));
    initiate_jit(client, &policy.id, &request).await
}
