//! The api-versions ARM accepts for each resource type the emulator serves, and ARM's refusal
//! of any other (`NoRegisteredProviderFound` for a provider's types, `InvalidApiVersionParameter`
//! for ARM's own `resources` list), so a client that sends a version Azure does not know fails
//! here as it would there.
//!
//! Each list is the set of `stable/{version}` folders of the spec in `Azure/azure-rest-api-specs`
//! (reference/ARM.md §0 names the newest ones read), plus the versions Microsoft's Python SDKs
//! send today (azure-mgmt-compute 39.0.0 sends compute `2026-04-01`, azure-mgmt-network 33.1.0
//! sends network `2026-03-01`; the SDK check in crates/azssh/tests/sdk/ runs them).

use axum::http::StatusCode;

use super::reply::ArmError;

/// A resource type and the api-versions its provider registers for it, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// The type as ARM names it in its refusal (`virtualMachines`, `networkSecurityGroups`).
    pub name: &'static str,
    pub versions: &'static [&'static str],
    /// ARM's own types (`resources`) answer `InvalidApiVersionParameter`; providers' types
    /// answer `NoRegisteredProviderFound`.
    pub arm_core: bool,
}

/// `specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/*`
/// (virtualMachines, extensions, runCommand, locations/operations), newest first.
const COMPUTE: &[&str] = &[
    "2026-04-01",
    "2025-11-01",
    "2025-04-01",
    "2024-11-01",
    "2024-07-01",
    "2024-03-01",
    "2023-09-01",
    "2023-07-01",
    "2023-03-01",
    "2022-11-01",
    "2022-08-01",
    "2022-03-01",
    "2021-11-01",
    "2021-07-01",
    "2021-04-01",
    "2021-03-01",
    "2020-12-01",
    "2020-06-01",
    "2019-12-01",
    "2019-07-01",
    "2019-03-01",
    "2018-10-01",
    "2018-06-01",
    "2018-04-01",
    "2017-12-01",
    "2017-03-30",
    "2016-04-30-preview",
    "2016-03-30",
    "2015-06-15",
];

/// `specification/network/resource-manager/Microsoft.Network/stable/*` (networkSecurityGroups,
/// securityRules, networkInterfaces, publicIPAddresses, virtualNetworks/subnets, operations).
const NETWORK: &[&str] = &[
    "2026-03-01",
    "2025-07-01",
    "2025-05-01",
    "2025-03-01",
    "2025-01-01",
    "2024-10-01",
    "2024-07-01",
    "2024-05-01",
    "2024-03-01",
    "2024-01-01",
    "2023-11-01",
    "2023-09-01",
    "2023-06-01",
    "2023-05-01",
    "2023-04-01",
    "2023-02-01",
    "2022-11-01",
    "2022-09-01",
    "2022-07-01",
    "2022-05-01",
    "2022-01-01",
    "2021-08-01",
    "2021-05-01",
    "2021-03-01",
    "2021-02-01",
    "2020-11-01",
    "2020-08-01",
    "2020-07-01",
    "2020-06-01",
    "2020-05-01",
    "2020-04-01",
    "2020-03-01",
    "2019-12-01",
    "2019-11-01",
    "2019-09-01",
    "2019-08-01",
    "2019-07-01",
    "2019-06-01",
    "2019-04-01",
    "2019-02-01",
    "2018-12-01",
    "2018-11-01",
    "2018-10-01",
    "2018-08-01",
    "2018-07-01",
    "2018-06-01",
    "2018-04-01",
    "2018-02-01",
    "2018-01-01",
    "2017-11-01",
    "2017-10-01",
    "2017-09-01",
    "2017-08-01",
    "2017-06-01",
    "2017-03-01",
    "2016-12-01",
    "2016-09-01",
    "2016-06-01",
    "2016-03-30",
    "2015-06-15",
];

/// `specification/resourcegraph/resource-manager/Microsoft.ResourceGraph/stable/*` (ARM.md §0:
/// 2019-04-01, 2021-03-01, 2022-10-01, 2024-04-01; the azure-cli recording sends 2021-03-01).
const RESOURCE_GRAPH: &[&str] = &["2024-04-01", "2022-10-01", "2021-03-01", "2019-04-01"];

/// `specification/security/resource-manager/Microsoft.Security/stable/2020-01-01/
/// jitNetworkAccessPolicies.json`, and the preview it replaced.
const SECURITY_JIT: &[&str] = &["2020-01-01", "2015-06-01-preview"];

/// `specification/resources/resource-manager/Microsoft.Resources/stable/*` (`resources` list;
/// `az ssh vm` sends 2021-04-01 through azure-mgmt-resource).
const RESOURCES: &[&str] = &[
    "2025-04-01",
    "2024-11-01",
    "2024-07-01",
    "2024-03-01",
    "2023-07-01",
    "2022-09-01",
    "2021-04-01",
    "2021-01-01",
    "2020-10-01",
    "2020-06-01",
    "2019-10-01",
    "2019-08-01",
    "2019-07-01",
    "2019-05-10",
    "2019-05-01",
    "2019-03-01",
    "2018-05-01",
    "2018-02-01",
    "2017-05-10",
    "2016-09-01",
    "2016-07-01",
    "2016-02-01",
    "2015-11-01",
];

/// The resource type a request path addresses (segments lower-cased), if the emulator knows it.
pub fn resource_type(segs: &[&str]) -> Option<ResourceType> {
    let rp = |name, versions| {
        Some(ResourceType {
            name,
            versions,
            arm_core: false,
        })
    };
    let provider = segs
        .iter()
        .position(|s| *s == "providers")
        .and_then(|i| segs.get(i + 1..));
    match provider {
        Some(["microsoft.compute", "locations", _, "operations", ..]) => {
            rp("locations/operations", COMPUTE)
        }
        Some(["microsoft.compute", "virtualmachines", _, "extensions", ..]) => {
            rp("virtualMachines/extensions", COMPUTE)
        }
        Some(["microsoft.compute", ..]) => rp("virtualMachines", COMPUTE),
        Some(["microsoft.network", "locations", ..]) => rp("locations/operations", NETWORK),
        Some(["microsoft.network", "networksecuritygroups", ..]) => {
            rp("networkSecurityGroups", NETWORK)
        }
        Some(["microsoft.network", "networkinterfaces", ..]) => rp("networkInterfaces", NETWORK),
        Some(["microsoft.network", "publicipaddresses", ..]) => rp("publicIPAddresses", NETWORK),
        Some(["microsoft.network", "bastionhosts", ..]) => rp("bastionHosts", NETWORK),
        Some(["microsoft.network", ..]) => rp("virtualNetworks", NETWORK),
        Some(["microsoft.resourcegraph", ..]) => rp("resources", RESOURCE_GRAPH),
        Some(["microsoft.security", ..]) => rp("locations/jitNetworkAccessPolicies", SECURITY_JIT),
        Some(_) => None,
        None if segs.last() == Some(&"resources") => Some(ResourceType {
            name: "resources",
            versions: RESOURCES,
            arm_core: true,
        }),
        None => None,
    }
}

/// ARM's check: a version the type does not register is refused with 400 before the provider
/// sees the request. Unknown paths pass (routing answers them).
pub fn check(segs: &[&str], version: &str, location: &str) -> Result<(), ArmError> {
    let Some(t) = resource_type(segs) else {
        return Ok(());
    };
    if t.versions.iter().any(|v| v.eq_ignore_ascii_case(version)) {
        return Ok(());
    }
    Err(refusal(&t, version, location))
}

/// ARM's two wordings: `InvalidApiVersionParameter` ("The api-version '…' is invalid. The
/// supported versions are '…'.", versions comma-joined without spaces) for its own types, and
/// `NoRegisteredProviderFound` for a provider's types, naming the location and listing the
/// versions comma-and-space joined.
pub fn refusal(t: &ResourceType, version: &str, location: &str) -> ArmError {
    if t.arm_core {
        return ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{version}' is invalid. The supported versions are '{}'.",
                t.versions.join(",")
            ),
        );
    }
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for location '{location}' and API version '{version}' for type '{}'. The supported api-versions are '{}'. The supported locations are '{location}'.",
            t.name,
            t.versions.join(", ")
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    }

    fn check_path(path: &str, v: &str) -> Result<(), ArmError> {
        let s = segs(path);
        let l: Vec<&str> = s.iter().map(String::as_str).collect();
        check(&l, v, "westus")
    }

    #[test]
    fn product_and_sdk_versions_are_registered() {
        let vm = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v";
        for v in ["2025-04-01", "2026-04-01", "2022-03-01", "2019-03-01"] {
            assert!(check_path(vm, v).is_ok(), "{v}");
        }
        let rule = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkSecurityGroups/n/securityRules/r";
        for v in ["2024-07-01", "2026-03-01", "2021-08-01"] {
            assert!(check_path(rule, v).is_ok(), "{v}");
        }
        assert!(check_path("/providers/Microsoft.ResourceGraph/resources", "2024-04-01").is_ok());
        assert!(check_path("/subscriptions/s/resourceGroups/g/resources", "2021-04-01").is_ok());
    }

    #[test]
    fn unknown_versions_get_arms_two_refusals() {
        let vm = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v";
        let e = check_path(vm, "2099-01-01").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "NoRegisteredProviderFound");
        assert!(e.message.starts_with("No registered resource provider found for location 'westus' and API version '2099-01-01' for type 'virtualMachines'. The supported api-versions are '2026-04-01, 2025-11-01,"), "{}", e.message);
        // A network version is not a compute version.
        assert!(check_path(vm, "2024-10-01").is_err());
        let e =
            check_path("/subscriptions/s/resourceGroups/g/resources", "2099-01-01").unwrap_err();
        assert_eq!(e.code, "InvalidApiVersionParameter");
        assert!(e.message.starts_with("The api-version '2099-01-01' is invalid. The supported versions are '2025-04-01,2024-11-01,"));
    }
}
