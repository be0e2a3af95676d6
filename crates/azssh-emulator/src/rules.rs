//! The Network RP's validation of a `SecurityRule` body, field by field, with the codes and
//! wordings Azure answers (reference/ARM.md §8 for the spec's constraints):
//! - names: `InvalidResourceName` (1-80 characters, start with a word character, end with a word
//!   character or `_`, only word characters, `.`, `-`, `_`);
//! - `description`: "Restricted to 140 chars.";
//! - ports: "Integer or range between 0 and 65535. Asterisk '*' can also be used"
//!   (`SecurityRuleInvalidPortRange`);
//! - prefixes: CIDR, IP, IP range or a service tag (`SecurityRuleInvalidAddressPrefix`, worded
//!   as in hashicorp/terraform-provider-azurerm#5617 and ernestio/ernest#473); the plural lists
//!   refuse `*` and tags (`SecurityRuleParameterContainsUnsupportedValue`, same issue);
//! - exactly one of the singular and the plural form of each field.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use super::nsg::invalid;
use super::reply::ArmError;

/// Service tags an NSG rule may name (the default tags of the spec and the service tags the
/// docs list most often); a regional form `Tag.Region` is accepted for each.
const SERVICE_TAGS: &[&str] = &[
    "virtualnetwork",
    "internet",
    "azureloadbalancer",
    "azurecloud",
    "azuretrafficmanager",
    "storage",
    "sql",
    "sqlmanagement",
    "azureactivedirectory",
    "azuremonitor",
    "azurekeyvault",
    "appservice",
    "appservicemanagement",
    "apimanagement",
    "gatewaymanager",
    "azurebackup",
    "eventhub",
    "servicebus",
    "azurecosmosdb",
    "azurecontainerregistry",
    "azurefrontdoor",
    "azurebastion",
    "azuremachinelearning",
    "azureresourcemanager",
    "azurearcinfrastructure",
    "guestandhybridmanagement",
    "batchnodemanagement",
    "datafactory",
    "hdinsight",
    "microsoftcontainerregistry",
    "powerplatformplex",
    "windowsvirtualdesktop",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    SourcePort,
    DestinationPort,
    SourceAddress,
    DestinationAddress,
}

impl Field {
    /// The singular and plural JSON keys, and the names Azure's messages use.
    fn keys(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::SourcePort => (
                "sourcePortRange",
                "sourcePortRanges",
                "SourcePortRange",
                "SourcePortRanges",
            ),
            Self::DestinationPort => (
                "destinationPortRange",
                "destinationPortRanges",
                "DestinationPortRange",
                "DestinationPortRanges",
            ),
            Self::SourceAddress => (
                "sourceAddressPrefix",
                "sourceAddressPrefixes",
                "SourceAddressPrefix",
                "SourceAddressPrefixes",
            ),
            Self::DestinationAddress => (
                "destinationAddressPrefix",
                "destinationAddressPrefixes",
                "DestinationAddressPrefix",
                "DestinationAddressPrefixes",
            ),
        }
    }
    fn is_port(self) -> bool {
        matches!(self, Self::SourcePort | Self::DestinationPort)
    }
}

/// Azure's resource-name rule for Network resources.
pub fn check_name(name: &str) -> Result<(), ArmError> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let ok = !name.is_empty()
        && name.chars().count() <= 80
        && name.chars().next().is_some_and(word)
        && name.chars().last().is_some_and(word)
        && name.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        return Ok(());
    }
    Err(ArmError::bad_request(
        "InvalidResourceName",
        format!(
            "Resource name {name} is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'."
        ),
    ))
}

/// "Restricted to 140 chars." The code is the Network RP's length refusal for a rule
/// property (the wording of this case is not in reference/).
pub fn check_description(d: &str) -> Result<String, ArmError> {
    let n = d.chars().count();
    if n > 140 {
        return Err(ArmError::bad_request(
            "SecurityRuleDescriptionTooLong",
            format!(
                "Security rule description is too long. Length provided: {n}. Maximum length: 140."
            ),
        ));
    }
    Ok(d.to_string())
}

/// One field's values: exactly one of the singular and the plural form, each value valid.
pub fn field(p: &Value, rule_id: &str, f: Field) -> Result<Vec<String>, ArmError> {
    let (single_key, plural_key, single_name, plural_name) = f.keys();
    let single = match p.get(single_key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid(&format!("`{single_key}` must be a string"))),
    };
    let plural: Vec<String> = match p.get(plural_key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(&format!("`{plural_key}` must hold strings")))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(&format!("`{plural_key}` must be an array"))),
    };
    let values = match (single, plural.is_empty()) {
        (Some(_), false) => {
            return Err(ArmError::bad_request(
                "SecurityRuleParameterContainsUnsupportedValue",
                format!(
                    "Security rule parameters {single_name} and {plural_name} for rule with Id {rule_id} cannot be specified together. Use only one of them."
                ),
            ));
        }
        (Some(s), true) => vec![s],
        (None, false) => {
            for v in &plural {
                let tag_like = v == "*" || v.chars().next().is_some_and(char::is_alphabetic);
                if tag_like {
                    return Err(ArmError::bad_request(
                        "SecurityRuleParameterContainsUnsupportedValue",
                        format!(
                            "Security rule parameter {plural_name} for rule with Id {rule_id} cannot specify existing VIRTUALNETWORK, INTERNET, AZURELOADBALANCER, '*' or system tags. Unsupported value used: {v}."
                        ),
                    ));
                }
            }
            plural
        }
        (None, true) => {
            return Err(invalid(&format!(
                "security rule property `{single_key}` or `{plural_key}` is required"
            )));
        }
    };
    for v in &values {
        if f.is_port() {
            if !valid_port_range(v) {
                return Err(ArmError::bad_request(
                    "SecurityRuleInvalidPortRange",
                    format!(
                        "Security rule has invalid Port range. Value provided: {v}. Value should be an integer OR integer range with '-' delimiter. Valid range 0-65535."
                    ),
                ));
            }
        } else if !valid_prefix(v) {
            return Err(ArmError::bad_request(
                "SecurityRuleInvalidAddressPrefix",
                format!("Security rule {rule_id} has invalid Address prefix. Value provided: {v}"),
            ));
        }
    }
    Ok(values)
}

fn port(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|p| *p <= 65535)
}

/// `*`, `N` or `N-M` with `N <= M`, all within 0-65535.
pub fn valid_port_range(v: &str) -> bool {
    if v == "*" {
        return true;
    }
    match v.split_once('-') {
        Some((a, b)) => matches!((port(a), port(b)), (Some(a), Some(b)) if a <= b),
        None => port(v).is_some(),
    }
}

fn ip(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok() || s.parse::<Ipv6Addr>().is_ok()
}

/// `*`, an IPv4/IPv6 address, a CIDR, an `a-b` address range or a (regional) service tag.
pub fn valid_prefix(v: &str) -> bool {
    if v == "*" {
        return true;
    }
    if let Some((addr, len)) = v.split_once('/') {
        let Ok(len) = len.parse::<u8>() else {
            return false;
        };
        return (addr.parse::<Ipv4Addr>().is_ok() && len <= 32)
            || (addr.parse::<Ipv6Addr>().is_ok() && len <= 128);
    }
    if ip(v) {
        return true;
    }
    if let Some((a, b)) = v.split_once('-')
        && ip(a)
        && ip(b)
    {
        return true;
    }
    let base = v.split_once('.').map_or(v, |(b, _)| b);
    SERVICE_TAGS.contains(&base.to_ascii_lowercase().as_str())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(p: Value, f: Field) -> String {
        field(&p, "id", f).unwrap_err().code
    }

    #[test]
    fn ports_follow_the_spec() {
        for ok in ["*", "0", "22", "65535", "1000-2000", "22-22"] {
            assert!(valid_port_range(ok), "{ok}");
        }
        for bad in [
            "70000",
            "65536",
            "-1",
            "2000-1000",
            "22,23",
            "",
            "ssh",
            "1-",
        ] {
            assert!(!valid_port_range(bad), "{bad}");
        }
        assert_eq!(
            err(
                json!({"destinationPortRange": "70000"}),
                Field::DestinationPort
            ),
            "SecurityRuleInvalidPortRange"
        );
    }

    #[test]
    fn prefixes_follow_the_spec() {
        for ok in [
            "*",
            "203.0.113.7",
            "203.0.113.7/32",
            "10.0.0.0/8",
            "2001:db8::/32",
            "Internet",
            "VirtualNetwork",
            "Storage.EastUS",
            "10.0.0.1-10.0.0.9",
        ] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in [
            "1.2.3.400/32",
            "1.2.3.4/33",
            "any",
            "1.2.3",
            "10.0.0.0/x",
            "",
        ] {
            assert!(!valid_prefix(bad), "{bad}");
        }
        assert_eq!(
            err(
                json!({"sourceAddressPrefix": "1.2.3.400/32"}),
                Field::SourceAddress
            ),
            "SecurityRuleInvalidAddressPrefix"
        );
    }

    #[test]
    fn singular_and_plural_are_exclusive_and_plural_refuses_tags() {
        let both = json!({"sourceAddressPrefix": "1.2.3.4", "sourceAddressPrefixes": ["5.6.7.8"]});
        assert_eq!(
            err(both, Field::SourceAddress),
            "SecurityRuleParameterContainsUnsupportedValue"
        );
        let tag = json!({"sourceAddressPrefixes": ["Internet"]});
        assert_eq!(
            err(tag, Field::SourceAddress),
            "SecurityRuleParameterContainsUnsupportedValue"
        );
        let many = json!({"sourceAddressPrefixes": ["1.2.3.4", "5.6.7.0/24"]});
        assert_eq!(field(&many, "id", Field::SourceAddress).unwrap().len(), 2);
    }

    #[test]
    fn names_and_descriptions() {
        assert!(check_name("azssh-ssh-203.0.113.7_x").is_ok());
        assert_eq!(
            check_name("bad name!").unwrap_err().code,
            "InvalidResourceName"
        );
        assert!(check_name("-x").is_err() && check_name("x.").is_err());
        assert!(check_name(&"a".repeat(81)).is_err());
        assert!(check_description(&"d".repeat(140)).is_ok());
        assert!(check_description(&"d".repeat(141)).is_err());
    }
}
