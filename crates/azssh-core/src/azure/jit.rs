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
/// Parses the ISO 8601 durations JIT uses (`PT3H`, `PT30M`, `PT1H30M`, `P1D`); plain seconds
/// (`3600`) are accepted too.
pub fn parse_duration(text: &str) -> Result<std::time::Duration> {
    let bad = || {
        AzureError::InvalidInput(format!(
            "`{text}` is not an ISO 8601 duration such as `PT3H` or `PT30M`"
        ))
    };
    let t = text.trim().to_ascii_uppercase();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let rest = t.strip_prefix('P').ok_or_else(bad)?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut secs: u64 = 0;
    let mut any = false;
    for (part, units) in [
        (days, &[('D', 86_400u64)][..]),
        (time, &[('H', 3600), ('M', 60), ('S', 1)][..]),
    ] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = units.iter().find(|(u, _)| *u == c).ok_or_else(bad)?;
            let n: u64 = number.parse().map_err(|_| bad())?;
            secs = secs.saturating_add(n.saturating_mul(unit.1));
            number.clear();
            any = true;
        }
        if !number.is_empty() {
            return Err(bad());
        }
    }
    if !any {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// The policy's longest allowed access for `port` on the VM, when it names one.
pub fn max_access(policy: &JitPolicy, vm_id: &str, port: u16) -> Option<std::time::Duration> {
    policy
        .properties
        .virtual_machines
        .iter()
        .filter(|v| same_id(&v.id, vm_id))
        .flat_map(|v| v.ports.iter())
        .find(|p| p.number == port)
        .and_then(|p| p.max_request_access_duration.as_deref())
        .and_then(|d| parse_duration(d).ok())
}

/// How far below the policy's maximum azssh asks: the end time is computed from our clock, and
/// Defender compares it with its own; asking for exactly the maximum fails whenever our clock
/// runs a little fast (reference WINDOWS-REALITIES.md).
pub const JIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(120);

/// The longest duration worth asking for under `max`: `max` minus [`JIT_MARGIN`], or 90 % of a
/// short `max`.
pub fn below_max(max: std::time::Duration) -> std::time::Duration {
    if max > JIT_MARGIN * 4 {
        max - JIT_MARGIN
    } else {
        max.mul_f64(0.9)
    }
}

/// The port of an active (`Initiated`) request for the VM, from the policy's `requests`.
pub fn active_request(policy: &JitPolicy, vm_id: &str, port: u16) -> Option<JitRequestPort> {
    policy
        .properties
        .requests
        .iter()
        .rev()
        .flat_map(|r| r.virtual_machines.iter())
        .filter(|v| same_id(&v.id, vm_id))
        .flat_map(|v| v.ports.iter())
        .find(|p| {
            p.number == port
                && p.status
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("Initiated"))
        })
        .cloned()
}

/// What `jit_request` reports.
#[derive(Debug, Clone, Serialize)]
pub struct JitAccess {
    pub policy: String,
    pub port: u16,
    pub source: Option<String>,
    pub end_time_utc: String,
    pub status: String,
}

/// Finds the VM's policy, checks the port and duration against it, initiates, then re-reads the
/// policy until the request shows `Initiated` (the initiate call answers `202` and is not an
/// LRO, ARM.md §11). Gives up after the client's LRO deadline.
pub async fn request_and_wait(
    client: &ArmClient,
    vm_id: &str,
    port: u16,
    source: Option<&str>,
    duration: std::time::Duration,
) -> Result<JitAccess> {
    let policy =
        get_vm_jit_policy(client, vm_id)
            .await?
            .ok_or_else(|| AzureError::NoJitPolicy {
                vm: ResourceId::parse(vm_id)
                    .map(|id| id.name().to_string())
                    .unwrap_or_else(|_| vm_id.to_string()),
            })?;
    let covered = policy
        .properties
        .virtual_machines
        .iter()
        .filter(|v| same_id(&v.id, vm_id))
        .any(|v| v.ports.iter().any(|p| p.number == port));
    if !covered {
        return Err(AzureError::InvalidInput(format!(
            "the just-in-time policy `{}` does not configure port {port} for this VM",
            policy.name
        )));
    }
    if let Some(max) = max_access(&policy, vm_id, port)
        && duration > max
    {
        return Err(AzureError::InvalidInput(format!(
            "the policy allows at most {} minutes on port {port}; ask for less",
            max.as_secs() / 60
        )));
    }
    let end = time::OffsetDateTime::now_utc() + duration;
    let end = end
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| AzureError::InvalidInput(e.to_string()))?;
    let request = JitInitiateRequest::single(vm_id, port, source, &end, Some("requested by azssh"));
    initiate_jit(client, &policy.id, &request).await?;
    let poll = client.retry_policy().poll_delay;
    let deadline = tokio::time::Instant::now() + client.retry_policy().max_poll_delay * 30;
    loop {
        let fresh = get_vm_jit_policy(client, vm_id).await?;
        if let Some(p) = fresh.as_ref().and_then(|p| active_request(p, vm_id, port)) {
            return Ok(JitAccess {
                policy: policy.id.clone(),
                port,
                source: p.allowed_source_address_prefix.clone(),
                end_time_utc: p.end_time_utc.clone(),
                status: p.status.unwrap_or_default(),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AzureError::OperationTimeout {
                what: format!("just-in-time access to port {port}"),
                seconds: client.retry_policy().max_poll_delay.as_secs() * 30,
            });
        }
        client.status(&format!("waiting for just-in-time access to port {port}"));
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_stay_a_margin_below_the_policy_maximum() {
        let three_hours = std::time::Duration::from_secs(3 * 3600);
        assert_eq!(below_max(three_hours), three_hours - JIT_MARGIN);
        let five_minutes = std::time::Duration::from_secs(300);
        assert_eq!(below_max(five_minutes).as_secs(), 270);
    }

    #[test]
    fn iso_durations_parse() {
        let d = |s: &str| parse_duration(s).map(|d| d.as_secs()).ok();
        assert_eq!(d("PT3H"), Some(3 * 3600));
        assert_eq!(d("pt30m"), Some(1800));
        assert_eq!(d("PT1H30M"), Some(5400));
        assert_eq!(d("P1D"), Some(86_400));
        assert_eq!(d("900"), Some(900));
        for bad in ["", "3H", "PT", "PTH", "PT3X", "PT3"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn active_request_needs_initiated_status_for_the_port() {
        let vm = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v";
        let mut policy = JitPolicy::default();
        policy.properties.requests.push(JitRequest {
            virtual_machines: vec![JitRequestVm {
                id: vm.to_uppercase(),
                ports: vec![JitRequestPort {
                    number: 22,
                    end_time_utc: "2030-01-01T00:00:00Z".into(),
                    status: Some("Initiating".into()),
                    ..Default::default()
                }],
            }],
            ..Default::default()
        });
        assert!(active_request(&policy, vm, 22).is_none());
        policy.properties.requests[0].virtual_machines[0].ports[0].status =
            Some("Initiated".into());
        assert!(active_request(&policy, vm, 22).is_some());
        assert!(active_request(&policy, vm, 3389).is_none());
    }
}
