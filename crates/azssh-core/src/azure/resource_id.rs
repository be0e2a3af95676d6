//! `ResourceId`: parse, build and compare ARM resource ids. ARM answers `resourceGroups` and
//! `resourcegroups` alike and Resource Graph lower-cases types (ARM.md §1.1), so equality and
//! hashing ignore ASCII case while `Display` keeps the spelling we were given.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use super::error::AzureError;

#[derive(Debug, Clone, Eq, serde::Serialize)]
#[serde(into = "String")]
pub struct ResourceId {
    subscription: String,
    resource_group: Option<String>,
    /// e.g. `Microsoft.Compute`; `None` for a subscription or resource group id.
    namespace: Option<String>,
    /// `(type, name)` pairs: `[("virtualMachines","vm1"),("extensions","ext")]`.
    segments: Vec<(String, String)>,
}

impl ResourceId {
    pub fn parse(id: &str) -> Result<Self, AzureError> {
        let bad = |reason: &str| AzureError::BadResourceId {
            id: id.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = id.trim();
        let Some(rest) = trimmed.strip_prefix('/') else {
            return Err(bad("it must start with `/subscriptions/`"));
        };
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("it has an empty segment"));
        }
        // An id is turned into a URL path as is: a `..` or `\` segment would name another
        // resource than the id seems to (a targets file naming one VM, the lookup reading another).
        for p in &parts {
            if let Err(why) = super::names::check_segment(p) {
                return Err(bad(&format!("segment `{}`: {why}", p.escape_debug())));
            }
        }
        let mut it = parts.into_iter().peekable();
        if !it
            .next()
            .is_some_and(|p| p.eq_ignore_ascii_case("subscriptions"))
        {
            return Err(bad("it must start with `/subscriptions/`"));
        }
        let subscription = it
            .next()
            .ok_or_else(|| bad("the subscription is missing"))?
            .to_string();
        let mut resource_group = None;
        if it
            .peek()
            .is_some_and(|p| p.eq_ignore_ascii_case("resourceGroups"))
        {
            it.next();
            resource_group = Some(
                it.next()
                    .ok_or_else(|| bad("the resource group name is missing"))?
                    .to_string(),
            );
        }
        let mut namespace = None;
        let mut segments = Vec::new();
        if let Some(p) = it.next() {
            if !p.eq_ignore_ascii_case("providers") {
                return Err(bad(&format!("expected `providers`, found `{p}`")));
            }
            namespace = Some(
                it.next()
                    .ok_or_else(|| bad("the provider namespace is missing"))?
                    .to_string(),
            );
            let rest: Vec<&str> = it.collect();
            if rest.is_empty() || !rest.len().is_multiple_of(2) {
                return Err(bad(
                    "types and names must come in pairs after the provider namespace",
                ));
            }
            segments = rest
                .chunks(2)
                .map(|c| (c[0].to_string(), c[1].to_string()))
                .collect();
        }
        Ok(ResourceId {
            subscription,
            resource_group,
            namespace,
            segments,
        })
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}`.
    pub fn new(
        subscription: &str,
        resource_group: &str,
        namespace: &str,
        type_: &str,
        name: &str,
    ) -> Self {
        ResourceId {
            subscription: subscription.to_string(),
            resource_group: Some(resource_group.to_string()),
            namespace: Some(namespace.to_string()),
            segments: vec![(type_.to_string(), name.to_string())],
        }
    }

    pub fn virtual_machine(subscription: &str, resource_group: &str, name: &str) -> Self {
        Self::new(
            subscription,
            resource_group,
            "Microsoft.Compute",
            "virtualMachines",
            name,
        )
    }

    pub fn network_security_group(subscription: &str, resource_group: &str, name: &str) -> Self {
        Self::new(
            subscription,
            resource_group,
            "Microsoft.Network",
            "networkSecurityGroups",
            name,
        )
    }

    /// This id with one more `/{type}/{name}` pair.
    pub fn child(&self, type_: &str, name: &str) -> Self {
        let mut c = self.clone();
        c.segments.push((type_.to_string(), name.to_string()));
        c
    }

    /// The parent resource (one pair fewer); `None` for a top-level resource.
    pub fn parent(&self) -> Option<Self> {
        if self.segments.len() < 2 {
            return None;
        }
        let mut p = self.clone();
        p.segments.pop();
        Some(p)
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }
    pub fn resource_group(&self) -> Option<&str> {
        self.resource_group.as_deref()
    }
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
    /// The last name, e.g. the VM's name.
    pub fn name(&self) -> &str {
        self.segments
            .last()
            .map(|(_, n)| n.as_str())
            .or(self.resource_group.as_deref())
            .unwrap_or(&self.subscription)
    }
    /// The full type, e.g. `Microsoft.Compute/virtualMachines/extensions`.
    pub fn resource_type(&self) -> String {
        let mut t = self.namespace.clone().unwrap_or_default();
        for (ty, _) in &self.segments {
            t.push('/');
            t.push_str(ty);
        }
        t
    }
    /// Whether this is a resource of `type_` (case-insensitive), e.g. `Microsoft.Compute/virtualMachines`.
    pub fn is_type(&self, type_: &str) -> bool {
        self.resource_type().eq_ignore_ascii_case(type_)
    }
    /// The name of the pair whose type is `type_`, e.g. the VNet name of a subnet id.
    pub fn name_of(&self, type_: &str) -> Option<&str> {
        self.segments
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(type_))
            .map(|(_, n)| n.as_str())
    }

    /// Like `parse`, but also checks the type.
    pub fn parse_typed(id: &str, type_: &str) -> Result<Self, AzureError> {
        let parsed = Self::parse(id)?;
        if !parsed.is_type(type_) {
            return Err(AzureError::BadResourceId {
                id: id.to_string(),
                reason: format!("expected a `{type_}` id, got `{}`", parsed.resource_type()),
            });
        }
        Ok(parsed)
    }

    fn canonical_lower(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/subscriptions/{}", self.subscription)?;
        if let Some(rg) = &self.resource_group {
            write!(f, "/resourceGroups/{rg}")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "/providers/{ns}")?;
        }
        for (t, n) in &self.segments {
            write!(f, "/{t}/{n}")?;
        }
        Ok(())
    }
}

impl From<ResourceId> for String {
    fn from(id: ResourceId) -> String {
        id.to_string()
    }
}

impl FromStr for ResourceId {
    type Err = AzureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.canonical_lower() == other.canonical_lower()
    }
}

impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical_lower().hash(state);
    }
}

/// Compares two id strings the way ARM does (case-insensitively, ignoring a trailing slash).
pub fn same_id(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str =
        "/subscriptions/0000/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1";

    #[test]
    fn parses_a_vm_id() {
        let id = ResourceId::parse(VM).ok();
        let id = id.as_ref();
        assert_eq!(id.map(|i| i.subscription()), Some("0000"));
        assert_eq!(id.and_then(|i| i.resource_group()), Some("rg1"));
        assert_eq!(id.map(|i| i.name()), Some("vm1"));
        assert_eq!(
            id.map(|i| i.resource_type()).as_deref(),
            Some("Microsoft.Compute/virtualMachines")
        );
        assert_eq!(id.map(|i| i.to_string()).as_deref(), Some(VM));
    }

    #[test]
    fn ids_compare_case_insensitively() {
        let a = ResourceId::parse(VM).ok();
        let b = ResourceId::parse(&VM.to_lowercase()).ok();
        assert!(a.is_some() && a == b);
        assert!(same_id(VM, &VM.to_uppercase()));
    }

    #[test]
    fn child_and_parent_ids() {
        let nsg = ResourceId::network_security_group("s", "rg", "nsg");
        let rule = nsg.child("securityRules", "allow-SSH");
        assert_eq!(
            rule.resource_type(),
            "Microsoft.Network/networkSecurityGroups/securityRules"
        );
        assert_eq!(rule.parent(), Some(nsg));
        let subnet = ResourceId::parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/default").ok();
        assert_eq!(
            subnet.as_ref().and_then(|s| s.name_of("virtualNetworks")),
            Some("v")
        );
    }

    #[test]
    fn malformed_ids_are_clear_errors() {
        for (bad, why) in [
            ("subscriptions/x", "start with"),
            ("/subscriptions", "subscription is missing"),
            (
                "/subscriptions/s/resourceGroups",
                "resource group name is missing",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines",
                "pairs",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/things/x",
                "expected `providers`",
            ),
            ("/subscriptions//resourceGroups/rg", "empty segment"),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1/../vm2",
                "parent resource",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/a\\..\\b",
                "contains `\\`",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/a%2F..",
                "contains `%`",
            ),
        ] {
            let msg = ResourceId::parse(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(why), "{bad}: {msg}");
            assert!(msg.contains(bad), "{bad}: {msg}");
        }
    }

    #[test]
    fn parse_typed_rejects_other_types() {
        let nic =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n";
        assert!(ResourceId::parse_typed(nic, "microsoft.network/networkinterfaces").is_ok());
        assert!(ResourceId::parse_typed(nic, "Microsoft.Compute/virtualMachines").is_err());
    }
}
