//! The commands that show the realistic world's variants, as Windows shows them:
//! `Get-NetConnectionProfile`, `Add-LocalGroupMember`, `sshd.exe -T`, Group Policy keys under
//! `HKLM:\SOFTWARE\Policies`, and `icacls` on folders (the sshd logs folder).

use pwsh::{BoundArgs, CommandOutput, ErrorRecord, HostResult, PsObject, Value};

use super::{GuestHost, display, non_terminating, none, obj, out, path_missing};
use crate::guest::sshd_config;

impl GuestHost<'_> {
    /// `Get-NetConnectionProfile`: the VM's one NIC, `Ethernet`, on the network Windows
    /// identified (an Azure VM's is `Network`, category Public unless domain-joined).
    pub(super) fn connection_profile(&self) -> HostResult {
        let category = self.guest.network_category().to_string();
        out(vec![
            obj("Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetConnectionProfile")
                .with("Name", "Network")
                .with("InterfaceAlias", "Ethernet")
                .with("InterfaceIndex", Value::Int(6))
                .with("NetworkCategory", category)
                .with("IPv4Connectivity", "Internet")
                .with("IPv6Connectivity", "NoTraffic")
                .with("__display", display(&["Name", "InterfaceAlias", "InterfaceIndex", "NetworkCategory", "IPv4Connectivity", "IPv6Connectivity"]))
                .into(),
        ])
    }

    /// `Add-LocalGroupMember -Group NAME -Member USER`.
    pub(super) fn add_local_group_member(&mut self, args: &BoundArgs) -> HostResult {
        let group = args
            .string_or_pos("Group", 0)
            .or_else(|| args.string("Name"));
        let members: Vec<String> = args
            .get("Member")
            .or_else(|| args.positional(1))
            .map(|v| v.enumerate().iter().map(Value::to_str).collect())
            .unwrap_or_default();
        let Some(group) = group else {
            return HostResult::Error(super::parameter_missing(
                "AddLocalGroupMemberCommand",
                "Group",
            ));
        };
        let mut result = CommandOutput::none();
        for m in members {
            if let Err(message) = self.guest.add_to_group(&group, &m) {
                let id = if message.starts_with("Group") {
                    "GroupNotFound"
                } else {
                    "PrincipalNotFound"
                };
                result.errors.push(ErrorRecord::new(
                    message,
                    &format!("Microsoft.PowerShell.Commands.{id}Exception"),
                    &format!("{id},Microsoft.PowerShell.Commands.AddLocalGroupMemberCommand"),
                    "ObjectNotFound",
                ));
            }
        }
        HostResult::Output(result)
    }

    /// `sshd.exe -T [-C user=U,host=H,addr=A]`: the effective configuration, as sshd prints it
    /// (lower-case keywords, one value per line), with `Match` blocks evaluated for the user
    /// (groups from the user's token, nested membership included).
    pub(super) fn sshd_exe(&self, args: &BoundArgs) -> HostResult {
        let a = args.native_args();
        if !self.guest.openssh_installed() {
            return HostResult::NotFound;
        }
        if !a.iter().any(|x| x == "-T") {
            return HostResult::Output(CommandOutput::native(
                "",
                "the emulated guest runs sshd.exe only as `sshd -T` (the service runs the server)\r\n",
                1,
            ));
        }
        if self.guest.host_keys().is_empty() {
            return HostResult::Output(CommandOutput::native(
                "",
                "sshd: no hostkeys available -- exiting.\r\n",
                1,
            ));
        }
        let spec = a
            .iter()
            .position(|x| x == "-C")
            .and_then(|i| a.get(i + 1))
            .cloned()
            .unwrap_or_default();
        let user = spec
            .split(',')
            .find_map(|kv| kv.strip_prefix("user="))
            .unwrap_or("")
            .to_string();
        let groups = self.guest.group_names(&user);
        let text = sshd_config::dump(&self.guest.sshd_config(), &user, &groups);
        HostResult::Output(CommandOutput::native(&text, "", 0))
    }

    /// Keys under `HKLM:\SOFTWARE\Policies` (Group Policy): read, created and written as the
    /// registry provider does.
    pub(super) fn policy_registry(
        &mut self,
        command: &str,
        path: &str,
        args: &BoundArgs,
    ) -> HostResult {
        let key = normalize_key(path);
        let exists = self.guest.policy_key(&key).is_some();
        match command {
            "test-path" => out(vec![Value::Bool(exists)]),
            "new-item" => {
                if exists && !args.switch("Force") {
                    return non_terminating(ErrorRecord::new(
                        "A key at this path already exists.",
                        "System.IO.IOException",
                        "System.IO.IOException,Microsoft.PowerShell.Commands.NewItemCommand",
                        "ResourceExists",
                    ));
                }
                let parent_ok = key.rsplit_once('\\').is_some_and(|(p, _)| {
                    self.guest.policy_key(p).is_some()
                        || p.eq_ignore_ascii_case(r"HKLM:\SOFTWARE\Policies\Microsoft\Windows")
                        || p.eq_ignore_ascii_case(r"HKLM:\SOFTWARE\Policies\Microsoft")
                });
                if !parent_ok && !args.switch("Force") {
                    return non_terminating(path_missing(path));
                }
                self.guest.create_policy_key(&key);
                none()
            }
            "get-item" | "get-itemproperty" | "get-itempropertyvalue" => {
                let Some((display_path, values)) = self.guest.policy_key(&key).cloned() else {
                    return non_terminating(path_missing(path));
                };
                let name = args.string_or_pos("Name", 1);
                if let Some(name) = name.filter(|_| command != "get-item") {
                    let Some((_, v)) = values.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name))
                    else {
                        return non_terminating(ErrorRecord::new(
                            format!(
                                "Property {name} does not exist at path {}.",
                                hive_path(&display_path)
                            ),
                            "System.Management.Automation.PSArgumentException",
                            "System.Management.Automation.PSArgumentException,Microsoft.PowerShell.Commands.GetItemPropertyCommand",
                            "InvalidArgument",
                        ));
                    };
                    let value = v
                        .parse::<i64>()
                        .map(Value::Int)
                        .unwrap_or_else(|_| Value::from(v.clone()));
                    if command == "get-itempropertyvalue" {
                        return out(vec![value]);
                    }
                    let mut o = PsObject::custom();
                    o.set(&name, value);
                    return out(vec![o.into()]);
                }
                let mut o = PsObject::custom();
                for (k, v) in &values {
                    o.set(
                        k,
                        v.parse::<i64>()
                            .map(Value::Int)
                            .unwrap_or_else(|_| Value::from(v.clone())),
                    );
                }
                o.set(
                    "PSChildName",
                    display_path.rsplit('\\').next().unwrap_or("").into(),
                );
                out(vec![o.into()])
            }
            "new-itemproperty" | "set-itemproperty" => {
                if !exists {
                    return non_terminating(path_missing(path));
                }
                let (Some(name), Some(value)) =
                    (args.string("Name"), args.get("Value").map(Value::to_str))
                else {
                    return HostResult::Error(super::parameter_missing(
                        "SetItemPropertyCommand",
                        "Name",
                    ));
                };
                self.guest.set_policy(&key, &name, &value);
                none()
            }
            "remove-itemproperty" => {
                let name = args.string("Name").unwrap_or_default();
                if self.guest.remove_policy_value(&key, &name) {
                    none()
                } else {
                    non_terminating(path_missing(path))
                }
            }
            _ => non_terminating(path_missing(path)),
        }
    }
}

/// `HKLM:\SOFTWARE\...`, whatever spelling the script used (`Registry::HKEY_LOCAL_MACHINE\...`).
pub(super) fn normalize_key(path: &str) -> String {
    let p = path.trim_end_matches('\\');
    let lower = p.to_ascii_lowercase();
    for prefix in [
        "registry::hkey_local_machine\\",
        "registry::hklm\\",
        "hklm:\\",
        "hklm:",
    ] {
        if lower.starts_with(prefix) {
            return format!(r"HKLM:\{}", &p[prefix.len()..]);
        }
    }
    p.to_string()
}

fn hive_path(key: &str) -> String {
    key.replacen("HKLM:", "HKEY_LOCAL_MACHINE", 1)
}

/// Whether a normalized key is under Group Policy's branch.
pub(super) fn is_policy_key(key: &str) -> bool {
    key.to_ascii_lowercase()
        .starts_with(r"hklm:\software\policies\")
}
