//! The one place names and path segments are validated before they become part of an ARM URL.
//!
//! Why this matters: `Url::join` treats `\` as `/` and resolves `.`/`..` segments (the WHATWG
//! URL rules for http), and ARM decodes `%2F`, so a VM named `x\..\..` or a rule named `..`
//! would address another resource (the resource group, the NSG itself) with the operator's
//! rights. The rules follow Azure's naming rules for each type, so a name Azure accepts is
//! never refused here.

use super::error::AzureError;

/// Why `c` may never appear in a path segment: it changes which resource the URL names.
fn forbidden(c: char) -> bool {
    matches!(c, '/' | '\\' | '?' | '#' | '%') || c.is_whitespace() || c.is_control()
}

/// Any segment of an ARM path or resource id: not empty, not `.` or `..`, and none of `/`, `\`,
/// `?`, `#`, `%`, whitespace or control characters.
pub fn check_segment(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("it is empty".into());
    }
    if value == "." || value == ".." {
        return Err(format!("`{value}` would address the parent resource"));
    }
    if let Some(c) = value.chars().find(|&c| forbidden(c)) {
        return Err(format!("it contains {}", describe(c)));
    }
    Ok(())
}

fn describe(c: char) -> String {
    if c.is_whitespace() {
        "whitespace".into()
    } else if c.is_control() {
        format!("a control character (U+{:04X})", c as u32)
    } else {
        format!("`{c}`")
    }
}

/// Printable form of a refused name for messages: control characters escaped.
fn shown(value: &str) -> String {
    value.escape_debug().to_string()
}

fn invalid(what: &str, value: &str, rule: &str) -> AzureError {
    AzureError::InvalidInput(format!("`{}` is not a valid {what}: {rule}", shown(value)))
}

/// A resource group name: 1-90 letters (Unicode letters too), digits, `_`, `-`, `.`, `(`, `)`,
/// not ending in `.` (Azure's rule for `Microsoft.Resources/resourceGroups`).
pub fn resource_group(name: &str) -> Result<(), AzureError> {
    const RULE: &str = "use 1-90 letters, digits, `_`, `-`, `.`, `(` and `)`, not ending in `.`";
    let len = name.chars().count();
    let ok = (1..=90).contains(&len)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')'))
        && !name.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(invalid("resource group", name, RULE))
    }
}

/// A VM name: 1-64 ASCII letters, digits, `_`, `-`, `.`, starting with a letter, digit or `_`,
/// not ending in `.` (Azure's rule for `Microsoft.Compute/virtualMachines`; Windows computer
/// names are stricter, but the resource name is what goes into the URL).
pub fn vm_name(name: &str) -> Result<(), AzureError> {
    const RULE: &str = "use 1-64 letters, digits, `_`, `-` and `.`, starting with a letter, digit or `_`, not ending in `.`";
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(invalid("VM name", name, RULE))
    }
}

/// A security rule name: `[A-Za-z0-9_.-]{1,80}`, starting with a letter or digit and ending with
/// a letter, digit or `_` (Azure's rule for `networkSecurityGroups/securityRules`).
pub fn rule_name(name: &str) -> Result<(), AzureError> {
    const RULE: &str = "use 1-80 letters, digits, `_`, `.` and `-`, starting with a letter or digit and ending with a letter, digit or `_`";
    let ok = (1..=80).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid("security rule name", name, RULE))
    }
}

/// Any other child name (an extension's): a safe path segment.
pub fn child_name(what: &str, name: &str) -> Result<(), AzureError> {
    check_segment(name).map_err(|why| invalid(what, name, &why))
}

/// The ARM path about to be requested: every segment safe. The last line of defence, in
/// `ArmClient::url`, for a path some caller built without checking its names.
pub fn check_path(path: &str) -> Result<(), AzureError> {
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if let Err(why) = check_segment(seg) {
            return Err(AzureError::InvalidInput(format!(
                "refusing to request `{}`: segment `{}`: {why}",
                shown(path),
                shown(seg)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_valid_names_pass() {
        for rg in ["rg", "rg-web_01", "(prod).rg", "Ressourcengrüppe", "a"] {
            assert!(resource_group(rg).is_ok(), "{rg}");
        }
        for vm in ["web01", "1234", "_build", "vm.eu-1", "a"] {
            assert!(vm_name(vm).is_ok(), "{vm}");
        }
        for rule in ["allow-SSH", "azssh-ssh-203-0-113-7-32", "r_", "1"] {
            assert!(rule_name(rule).is_ok(), "{rule}");
        }
    }

    #[test]
    fn path_walking_names_are_refused() {
        for bad in [
            "x\\..\\..",
            "..",
            ".",
            "a/b",
            "a%2Fb",
            "a b",
            "a\u{7}",
            "",
            "rg.",
        ] {
            assert!(resource_group(bad).is_err(), "{bad:?}");
            assert!(vm_name(bad).is_err(), "{bad:?}");
            assert!(rule_name(bad).is_err(), "{bad:?}");
        }
        assert!(resource_group(&"r".repeat(91)).is_err());
        assert!(vm_name(&"v".repeat(65)).is_err());
        assert!(rule_name(&"r".repeat(81)).is_err());
        assert!(rule_name("-x").is_err());
        assert!(rule_name("x-").is_err());
    }

    #[test]
    fn check_path_refuses_dot_segments_and_backslashes() {
        assert!(
            check_path(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
            )
            .is_ok()
        );
        for bad in [
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/x\\..\\..",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n/securityRules/..",
            "/subscriptions/s/resourceGroups/r%2e%2e/x",
            "/subscriptions/s/resourceGroups/r g/x",
        ] {
            let err = check_path(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("refusing to request"), "{bad}: {err}");
        }
    }
}
