//! The guest model as the PowerShell interpreter's machine (`pwsh::Host`): files, environment,
//! and the commands whose effects are machine state — services, Windows capabilities, firewall
//! rules, local users and groups, ACLs (`Get-Acl`, `Set-Acl`, `icacls.exe`), the registry key
//! `HKLM:\SOFTWARE\OpenSSH`, `Get-CimInstance`, and the native `hostname`, `whoami`, `sc.exe`,
//! `cmd`, `powershell`. Anything else is unknown, and the interpreter answers as Windows does
//! ("... is not recognized as the name of a cmdlet ...").
//!
//! Messages, HRESULTs and error ids are Windows PowerShell 5.1's own (see
//! `../shared/reference/WINDOWS-REALITIES.md`): scripts match on them.

// Errors are pwsh ErrorRecords (the interpreter's currency), on the rare path: not boxed.
#![allow(clippy::result_large_err)]

mod realistic;

use std::collections::BTreeMap;

use pwsh::{BoundArgs, CommandOutput, ErrorRecord, FsError, HostResult, ItemKind, PsObject, Value};

use super::{
    ADMINISTRATORS_SID, CapabilityError, FIRST_CAPABILITY_BUILD, Guest, SYSTEM_SID, ServiceStatus,
    StartupType, path_key,
};

/// The capability name of Windows' OpenSSH server (`Get-WindowsCapability -Online`).
const CAPABILITY: &str = "OpenSSH.Server~~~~0.0.1.0";
/// The OpenSSH client capability, installed on every image that has capabilities.
const CLIENT_CAPABILITY: &str = "OpenSSH.Client~~~~0.0.1.0";
/// The registry key sshd reads its settings from.
const OPENSSH_KEY: &str = r"HKLM:\SOFTWARE\OpenSSH";
/// Where RunCommand runs (the agent's working directory is its download folder, but scripts
/// see the usual system directory through `$PWD` only when they `cd`; System32 is what
/// `[Environment]::CurrentDirectory` reports for a SYSTEM service).
const SYSTEM_CWD: &str = r"C:\Windows\system32";

/// One script run on a guest: the model plus who runs it (`None`: SYSTEM, as RunCommand) and
/// that process's environment block (changes to `$env:` last only as long as the process).
pub(crate) struct GuestHost<'g> {
    guest: &'g mut Guest,
    user: Option<String>,
    env: BTreeMap<String, (String, String)>,
}

impl<'g> GuestHost<'g> {
    pub(crate) fn new(guest: &'g mut Guest, user: Option<&str>) -> Self {
        let account = user.map(|u| {
            guest
                .user(u)
                .map(|a| a.name.clone())
                .unwrap_or_else(|| u.to_string())
        });
        let profile = match &account {
            Some(name) => guest
                .user(name)
                .and_then(|a| a.profile.clone())
                .unwrap_or_else(|| format!(r"C:\Users\{name}")),
            None => r"C:\Windows\system32\config\systemprofile".into(),
        };
        let mut env = BTreeMap::new();
        let computer = guest.computer_name().to_string();
        let username = account.clone().unwrap_or_else(|| format!("{computer}$"));
        for (k, v) in [
            ("ProgramData", r"C:\ProgramData".to_string()),
            ("SystemRoot", r"C:\Windows".into()),
            ("windir", r"C:\Windows".into()),
            ("SystemDrive", "C:".into()),
            ("ProgramFiles", r"C:\Program Files".into()),
            ("COMPUTERNAME", computer),
            ("USERNAME", username),
            ("USERPROFILE", profile),
            ("TEMP", r"C:\Windows\Temp".into()),
            ("TMP", r"C:\Windows\Temp".into()),
            ("ComSpec", r"C:\Windows\system32\cmd.exe".into()),
            (
                "Path",
                r"C:\Windows\system32;C:\Windows;C:\Windows\System32\Wbem;C:\Windows\System32\WindowsPowerShell\v1.0\;C:\Windows\System32\OpenSSH\".into(),
            ),
            ("PSModulePath", r"C:\Windows\system32\WindowsPowerShell\v1.0\Modules".into()),
        ] {
            env.insert(k.to_ascii_uppercase(), (k.to_string(), v));
        }
        GuestHost {
            guest,
            user: account,
            env,
        }
    }

    fn whoami(&self) -> String {
        match &self.user {
            Some(u) => format!(r"{}\{}", self.guest.computer_name(), u).to_lowercase(),
            None => r"nt authority\system".into(),
        }
    }
}

fn out(values: Vec<Value>) -> HostResult {
    HostResult::Output(CommandOutput::values(values))
}

fn none() -> HostResult {
    HostResult::Output(CommandOutput::none())
}

fn non_terminating(e: ErrorRecord) -> HostResult {
    HostResult::Output(CommandOutput::error(e))
}

fn obj(type_name: &str) -> PsObject {
    PsObject::typed(type_name)
}

fn display(names: &[&str]) -> Value {
    Value::array(names.iter().map(|n| Value::from(*n)).collect())
}

/// `*`/`?` wildcards, case-insensitive, as `-Name` patterns of Get-Service and friends.
fn wildcard(pattern: &str, text: &str) -> bool {
    fn m(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| m(rest, &t[i..])),
            Some((b'?', rest)) => !t.is_empty() && m(rest, &t[1..]),
            Some((c, rest)) => {
                t.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && m(rest, &t[1..])
            }
        }
    }
    m(pattern.as_bytes(), text.as_bytes())
}

fn names_of(args: &BoundArgs, param: &str) -> Vec<String> {
    args.get_or_pos(param, 0)
        .map(|v| v.enumerate().iter().map(Value::to_str).collect())
        .unwrap_or_default()
}

fn status_name(s: ServiceStatus) -> &'static str {
    match s {
        ServiceStatus::Stopped => "Stopped",
        ServiceStatus::Running => "Running",
    }
}

fn startup_name(s: StartupType) -> &'static str {
    match s {
        StartupType::Manual => "Manual",
        StartupType::Automatic => "Automatic",
        StartupType::Disabled => "Disabled",
    }
}

/// Windows PowerShell's error when `Get-Service`/`Start-Service` find no such service.
fn no_service(command: &str, name: &str) -> ErrorRecord {
    let class = match command {
        "get-service" => "GetServiceCommand",
        "start-service" => "StartServiceCommand",
        "stop-service" => "StopServiceCommand",
        "restart-service" => "RestartServiceCommand",
        _ => "SetServiceCommand",
    };
    ErrorRecord::new(
        format!("Cannot find any service with service name '{name}'."),
        "Microsoft.PowerShell.Commands.ServiceCommandException",
        &format!("NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.{class}"),
        "ObjectNotFound",
    )
    .with_target(name, "String")
}

fn service_failed(message: &str, class: &str, name: &str) -> ErrorRecord {
    ErrorRecord::new(
        message,
        "Microsoft.PowerShell.Commands.ServiceCommandException",
        &format!("CouldNotStartService,Microsoft.PowerShell.Commands.{class}"),
        "OpenError",
    )
    .with_target(name, "ServiceController")
}

/// The HRESULT as .NET reports it (`Exception.HResult` is a signed 32-bit integer).
fn hresult(code: u32) -> i32 {
    i32::from_ne_bytes(code.to_ne_bytes())
}

fn capability_error(e: &CapabilityError) -> ErrorRecord {
    ErrorRecord::new(
        e.message.clone(),
        "System.Runtime.InteropServices.COMException",
        "Microsoft.Dism.Commands.AddWindowsCapabilityCommand",
        "NotSpecified",
    )
    .with_hresult(hresult(e.code))
}

fn parameter_missing(command: &str, param: &str) -> ErrorRecord {
    ErrorRecord::new(
        format!(
            "Cannot process command because of one or more missing mandatory parameters: {param}."
        ),
        "System.Management.Automation.ParameterBindingException",
        &format!("MissingMandatoryParameter,Microsoft.PowerShell.Commands.{command}"),
        "InvalidArgument",
    )
}

fn path_missing(path: &str) -> ErrorRecord {
    ErrorRecord::new(
        format!("Cannot find path '{path}' because it does not exist."),
        "System.Management.Automation.ItemNotFoundException",
        "PathNotFound,Microsoft.PowerShell.Commands.GetItemPropertyCommand",
        "ObjectNotFound",
    )
    .with_target(path, "String")
}

/// The value of an enum-like parameter, or the binding error PowerShell gives.
fn one_of(value: &str, allowed: &[&str], param: &str) -> Result<String, ErrorRecord> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value))
        .map(|a| a.to_string())
        .ok_or_else(|| {
            ErrorRecord::new(
                format!(
                    "Cannot bind parameter '{param}'. Cannot convert value \"{value}\" to type. Specify one of the following enumerator names and try again: {}",
                    allowed.join(", ")
                ),
                "System.Management.Automation.ParameterBindingException",
                "CannotConvertArgumentNoMessage",
                "InvalidArgument",
            )
        })
}

impl GuestHost<'_> {
    // ----- services -----

    fn service_object(&self, name: &str) -> Option<Value> {
        let (display_name, status, startup) = if name.eq_ignore_ascii_case("sshd") {
            let sshd = self.guest.sshd()?;
            ("OpenSSH SSH Server", sshd.status, sshd.startup)
        } else if name.eq_ignore_ascii_case("ssh-agent") {
            // OpenSSH's agent ships disabled next to the server.
            self.guest.sshd()?;
            (
                "OpenSSH Authentication Agent",
                ServiceStatus::Stopped,
                StartupType::Disabled,
            )
        } else if name.eq_ignore_ascii_case("WinRM") {
            (
                "Windows Remote Management (WS-Management)",
                ServiceStatus::Running,
                StartupType::Automatic,
            )
        } else if name.eq_ignore_ascii_case("TermService") {
            (
                "Remote Desktop Services",
                ServiceStatus::Running,
                StartupType::Manual,
            )
        } else {
            return None;
        };
        let canonical = match name.to_ascii_lowercase().as_str() {
            "winrm" => "WinRM",
            "termservice" => "TermService",
            other => other,
        }
        .to_string();
        Some(
            obj("System.ServiceProcess.ServiceController")
                .with("Name", canonical.clone())
                .with("ServiceName", canonical)
                .with("DisplayName", display_name)
                .with("Status", status_name(status))
                .with("StartType", startup_name(startup))
                .with("__display", display(&["Status", "Name", "DisplayName"]))
                .with(
                    "__widths",
                    Value::array(vec![Value::Int(8), Value::Int(18)]),
                )
                .into(),
        )
    }

    fn all_services(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.guest.sshd().is_some() {
            names.push("ssh-agent".to_string());
            names.push("sshd".to_string());
        }
        names.push("TermService".into());
        names.push("WinRM".into());
        names.sort_by_key(|n| n.to_ascii_lowercase());
        names
    }

    fn get_service(&self, args: &BoundArgs, input: &[Value]) -> HostResult {
        let mut wanted = names_of(args, "Name");
        if wanted.is_empty() {
            wanted = input.iter().map(service_name_of).collect();
        }
        if wanted.is_empty() {
            wanted.push("*".into());
        }
        let mut result = CommandOutput::none();
        for name in wanted {
            let matches: Vec<String> = self
                .all_services()
                .into_iter()
                .filter(|s| wildcard(&name, s))
                .collect();
            if matches.is_empty() && !name.contains(['*', '?']) {
                result.errors.push(no_service("get-service", &name));
            }
            result
                .values
                .extend(matches.iter().filter_map(|m| self.service_object(m)));
        }
        HostResult::Output(result)
    }

    fn change_service(&mut self, command: &str, args: &BoundArgs, input: &[Value]) -> HostResult {
        let mut names = names_of(args, "Name");
        if names.is_empty() {
            names = input.iter().map(service_name_of).collect();
        }
        if names.is_empty() {
            return HostResult::Error(parameter_missing("ServiceCommand", "Name"));
        }
        let class = match command {
            "start-service" => "StartServiceCommand",
            "stop-service" => "StopServiceCommand",
            "restart-service" => "RestartServiceCommand",
            _ => "SetServiceCommand",
        };
        let mut result = CommandOutput::none();
        for name in names {
            if self.service_object(&name).is_none() {
                result.errors.push(no_service(command, &name));
                continue;
            }
            if !name.eq_ignore_ascii_case("sshd") {
                // Services other than sshd are read-only in the model: refuse honestly rather
                // than pretend a change happened.
                let current = self.service_object(&name);
                let status = current
                    .as_ref()
                    .and_then(|v| match v {
                        Value::Object(o) => o.borrow().get("Status"),
                        _ => None,
                    })
                    .map(|v| v.to_str())
                    .unwrap_or_default();
                let already = match command {
                    "start-service" => status == "Running",
                    "stop-service" => status == "Stopped",
                    _ => false,
                };
                let disabled = self
                    .service_object(&name)
                    .and_then(|v| match v {
                        Value::Object(o) => o.borrow().get("StartType"),
                        _ => None,
                    })
                    .is_some_and(|t| t.to_str() == "Disabled");
                if command == "start-service" && disabled {
                    let display_name = self
                        .service_object(&name)
                        .and_then(|v| match v {
                            Value::Object(o) => o.borrow().get("DisplayName"),
                            _ => None,
                        })
                        .map(|v| v.to_str())
                        .unwrap_or_default();
                    result.errors.push(service_failed(
                        &format!("Service '{display_name} ({name})' cannot be started due to the following error: Cannot start service {name} on computer '.'."),
                        class,
                        &name,
                    ));
                } else if !already {
                    result.errors.push(service_failed(
                        &format!("Service '{name}' cannot be changed in the emulated guest: only sshd is modelled."),
                        class,
                        &name,
                    ));
                }
                continue;
            }
            let outcome = match command {
                "start-service" => self.guest.start_sshd().map(|_| ()),
                "stop-service" => self.guest.stop_sshd().map(|_| ()),
                "restart-service" => self
                    .guest
                    .stop_sshd()
                    .and_then(|_| self.guest.start_sshd())
                    .map(|_| ()),
                _ => {
                    let mut r = Ok(());
                    if let Some(t) = args.string("StartupType") {
                        match one_of(&t, &["Automatic", "Manual", "Disabled"], "StartupType") {
                            Ok(t) => {
                                let t = match t.as_str() {
                                    "Automatic" => StartupType::Automatic,
                                    "Manual" => StartupType::Manual,
                                    _ => StartupType::Disabled,
                                };
                                r = self.guest.set_startup(t).map(|_| ());
                            }
                            Err(e) => return HostResult::Error(e),
                        }
                    }
                    if let Some(s) = args.string("Status") {
                        r = match s.to_ascii_lowercase().as_str() {
                            "running" => self.guest.start_sshd().map(|_| ()),
                            "stopped" => self.guest.stop_sshd().map(|_| ()),
                            _ => Err(format!("Cannot bind parameter 'Status' to '{s}'.")),
                        };
                    }
                    r
                }
            };
            if let Err(message) = outcome {
                result.errors.push(service_failed(&message, class, &name));
            } else if args.switch("PassThru") {
                result.values.extend(self.service_object(&name));
            }
        }
        HostResult::Output(result)
    }

    /// `sc.exe query NAME` (and `sc.exe qc NAME` for the start type), as the real tool prints.
    fn sc(&self, args: &BoundArgs) -> HostResult {
        let a = args.native_args();
        let verb = a
            .first()
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        let Some(name) = a.get(1) else {
            return HostResult::Output(CommandOutput::native(
                "DESCRIPTION:\r\n        SC is a command line program used for communicating with the\r\n        Service Control Manager and services.\r\n",
                "",
                0,
            ));
        };
        let sshd = match (name.eq_ignore_ascii_case("sshd"), self.guest.sshd()) {
            (true, Some(s)) => s.clone(),
            _ => {
                return HostResult::Output(CommandOutput::native(
                    &format!(
                        "[SC] {} FAILED 1060:\r\n\r\nThe specified service does not exist as an installed service.\r\n\r\n",
                        if verb == "qc" {
                            "OpenService"
                        } else {
                            "EnumQueryServicesStatus:OpenService"
                        }
                    ),
                    "",
                    1060,
                ));
            }
        };
        let text = match verb.as_str() {
            "query" | "queryex" => {
                let (n, state, accepts) = match sshd.status {
                    ServiceStatus::Running => {
                        (4, "RUNNING", "(STOPPABLE, NOT_PAUSABLE, ACCEPT_SHUTDOWN)")
                    }
                    ServiceStatus::Stopped => (1, "STOPPED", ""),
                };
                format!(
                    "\r\nSERVICE_NAME: sshd \r\n        TYPE               : 10  WIN32_OWN_PROCESS  \r\n        STATE              : {n}  {state} \r\n                                {accepts}\r\n        WIN32_EXIT_CODE    : {code}  (0x{code:x})\r\n        SERVICE_EXIT_CODE  : 0  (0x0)\r\n        CHECKPOINT         : 0x0\r\n        WAIT_HINT          : 0x0\r\n",
                    code = self.guest.sshd_exit_code()
                )
            }
            "qc" => {
                let start = match sshd.startup {
                    StartupType::Automatic => "2   AUTO_START",
                    StartupType::Manual => "3   DEMAND_START",
                    StartupType::Disabled => "4   DISABLED",
                };
                format!(
                    "[SC] QueryServiceConfig SUCCESS\r\n\r\nSERVICE_NAME: sshd\r\n        TYPE               : 10  WIN32_OWN_PROCESS \r\n        START_TYPE         : {start}\r\n        ERROR_CONTROL      : 1   NORMAL\r\n        BINARY_PATH_NAME   : {}\r\n        DISPLAY_NAME       : OpenSSH SSH Server\r\n        SERVICE_START_NAME : LocalSystem\r\n",
                    self.guest.sshd_exe()
                )
            }
            _ => {
                return HostResult::Output(CommandOutput::native(
                    "",
                    &format!(
                        "[SC] the emulated guest models `sc.exe query` and `sc.exe qc`, not `{verb}`\r\n"
                    ),
                    87,
                ));
            }
        };
        HostResult::Output(CommandOutput::native(&text, "", 0))
    }

    // ----- capabilities -----

    fn capabilities(&self) -> Vec<(&'static str, bool)> {
        if self.guest.os_build() < FIRST_CAPABILITY_BUILD {
            return Vec::new();
        }
        vec![
            (CLIENT_CAPABILITY, true),
            (CAPABILITY, self.guest.capability_installed()),
        ]
    }

    fn get_capability(&self, args: &BoundArgs) -> HostResult {
        if !args.switch("Online") {
            return HostResult::Error(ErrorRecord::new(
                "The emulated guest models Get-WindowsCapability -Online only (no offline image).",
                "System.Management.Automation.ParameterBindingException",
                "AmbiguousParameterSet",
                "InvalidArgument",
            ));
        }
        let pattern = args.string("Name").unwrap_or_else(|| "*".into());
        let values = self
            .capabilities()
            .into_iter()
            .filter(|(n, _)| wildcard(&pattern, n))
            .map(|(n, installed)| {
                obj("Microsoft.Dism.Commands.BasicCapabilityObject")
                    .with("Name", n)
                    .with("State", if installed { "Installed" } else { "NotPresent" })
                    .with("__list", true)
                    .into()
            })
            .collect();
        out(values)
    }

    fn add_capability(&mut self, args: &BoundArgs) -> HostResult {
        let name = args.string("Name").unwrap_or_default();
        if !args.switch("Online") || name.is_empty() {
            return HostResult::Error(parameter_missing("AddWindowsCapabilityCommand", "Name"));
        }
        let known = self.guest.os_build() >= FIRST_CAPABILITY_BUILD
            && (name.eq_ignore_ascii_case(CAPABILITY)
                || name.eq_ignore_ascii_case("OpenSSH.Server~~~~")
                || name.eq_ignore_ascii_case(CLIENT_CAPABILITY));
        let result = if name.to_ascii_lowercase().starts_with("openssh.server")
            || self.guest.os_build() < FIRST_CAPABILITY_BUILD
        {
            self.guest.add_capability()
        } else if known {
            Ok(false)
        } else {
            Err(CapabilityError {
                code: super::E_UNKNOWN_CAPABILITY,
                message: format!(
                    "Add-WindowsCapability failed. Error code = 0x{:08x}",
                    super::E_UNKNOWN_CAPABILITY
                ),
            })
        };
        match result {
            Ok(_) => out(vec![
                obj("Microsoft.Dism.Commands.ImageObject")
                    .with("Path", "")
                    .with("Online", true)
                    .with("RestartNeeded", false)
                    .with("__list", true)
                    .into(),
            ]),
            Err(e) => non_terminating(capability_error(&e)),
        }
    }

    // ----- firewall -----

    fn rule_object(rule: &super::FirewallRule) -> Value {
        obj("Microsoft.Management.Infrastructure.CimInstance#root/StandardCimv2/MSFT_NetFirewallRule")
            .with("Name", rule.name.clone())
            .with("DisplayName", rule.display_name.clone())
            .with("Enabled", if rule.enabled { "True" } else { "False" })
            .with("Profile", rule.profile.clone())
            .with("Direction", "Inbound")
            .with("Action", "Allow")
            .with("__display", display(&["Name", "DisplayName", "Enabled", "Profile", "Direction", "Action"]))
            .into()
    }

    fn no_rule(name: &str) -> ErrorRecord {
        ErrorRecord::new(
            format!("No MSFT_NetFirewallRule objects found with property 'Name' equal to '{name}'.  Verify the value of the property and retry."),
            "Microsoft.Management.Infrastructure.CimException",
            "CmdletizationQuery_NotFound_Name,Get-NetFirewallRule",
            "ObjectNotFound",
        )
        .with_target(name, "String")
    }

    fn firewall(&mut self, command: &str, args: &BoundArgs, input: &[Value]) -> HostResult {
        let mut names = names_of(args, "Name");
        if names.is_empty() {
            if let Some(d) = args
                .string("DisplayName")
                .filter(|_| command != "new-netfirewallrule")
            {
                names = self
                    .guest
                    .firewall_rules()
                    .filter(|r| wildcard(&d, &r.display_name))
                    .map(|r| r.name.clone())
                    .collect();
            } else {
                names = input
                    .iter()
                    .filter_map(|v| match v {
                        Value::Object(o) => o.borrow().get("Name").map(|n| n.to_str()),
                        _ => None,
                    })
                    .collect();
            }
        }
        if command == "new-netfirewallrule" {
            return self.new_rule(args);
        }
        if names.is_empty() && command == "get-netfirewallrule" {
            let all = self.guest.firewall_rules().map(Self::rule_object).collect();
            return out(all);
        }
        let mut result = CommandOutput::none();
        for name in names {
            let Some(rule) = self.guest.firewall_rule(&name).cloned() else {
                if !name.contains('*') {
                    result.errors.push(Self::no_rule(&name));
                }
                continue;
            };
            match command {
                "get-netfirewallrule" => result.values.push(Self::rule_object(&rule)),
                "enable-netfirewallrule" | "disable-netfirewallrule" => {
                    self.guest
                        .set_firewall_enabled(&rule.name, command == "enable-netfirewallrule");
                }
                _ => {
                    if let Some(e) = args.string("Enabled") {
                        match one_of(&e, &["True", "False"], "Enabled") {
                            Ok(e) => {
                                self.guest.set_firewall_enabled(&rule.name, e == "True");
                            }
                            Err(e) => return HostResult::Error(e),
                        }
                    }
                    if let Some(p) = args.get("Profile") {
                        match profile_of(p) {
                            Ok(p) => self.guest.set_firewall_profile(&rule.name, &p),
                            Err(e) => return HostResult::Error(e),
                        }
                    }
                    if let Some(port) = args.string("LocalPort") {
                        match port.parse::<u16>() {
                            Ok(port) => self.guest.set_firewall_port(&rule.name, port),
                            Err(_) => return HostResult::Error(bad_port(&port)),
                        }
                    }
                }
            }
        }
        HostResult::Output(result)
    }

    fn new_rule(&mut self, args: &BoundArgs) -> HostResult {
        let Some(display_name) = args.string("DisplayName") else {
            return HostResult::Error(parameter_missing("NewNetFirewallRule", "DisplayName"));
        };
        let name = args
            .string("Name")
            .unwrap_or_else(|| format!("{{{}}}", uuid::Uuid::new_v4()));
        for (param, allowed) in [
            ("Direction", &["Inbound", "Outbound"][..]),
            ("Action", &["Allow", "Block", "NotConfigured"][..]),
            ("Enabled", &["True", "False"][..]),
            ("Protocol", &["TCP", "UDP", "Any", "ICMPv4", "ICMPv6"][..]),
        ] {
            if let Some(v) = args.string(param)
                && let Err(e) = one_of(&v, allowed, param)
            {
                return HostResult::Error(e);
            }
        }
        let direction = args.string("Direction").unwrap_or_else(|| "Inbound".into());
        let action = args.string("Action").unwrap_or_else(|| "Allow".into());
        let protocol = args.string("Protocol").unwrap_or_else(|| "Any".into());
        let port = match args.string("LocalPort") {
            Some(p) => match p.parse::<u16>() {
                Ok(p) => Some(p),
                Err(_) => return HostResult::Error(bad_port(&p)),
            },
            None => None,
        };
        let profile = match args.get("Profile") {
            Some(p) => match profile_of(p) {
                Ok(p) => p,
                Err(e) => return HostResult::Error(e),
            },
            None => "Any".into(),
        };
        if self.guest.firewall_rule(&name).is_some() {
            return non_terminating(
                ErrorRecord::new(
                    "Cannot create a file when that file already exists.",
                    "Microsoft.Management.Infrastructure.CimException",
                    "Windows System Error 183,New-NetFirewallRule",
                    "ResourceExists",
                )
                .with_target(
                    "MSFT_NetFirewallRule",
                    "root/standardcimv2/MSFT_NetFirewallRule",
                ),
            );
        }
        // The model opens a port only for what azssh and admins create for sshd: an inbound
        // TCP allow rule with a local port. Other rules are kept (for Get-NetFirewallRule) but
        // admit nothing.
        let admits = direction.eq_ignore_ascii_case("Inbound")
            && action.eq_ignore_ascii_case("Allow")
            && protocol.eq_ignore_ascii_case("TCP");
        let local_port = port.filter(|_| admits).unwrap_or(0);
        self.guest
            .add_firewall_rule(&name, &display_name, local_port);
        self.guest.set_firewall_profile(&name, &profile);
        if args
            .string("Enabled")
            .is_some_and(|e| e.eq_ignore_ascii_case("False"))
        {
            self.guest.set_firewall_enabled(&name, false);
        }
        match self.guest.firewall_rule(&name) {
            Some(rule) => out(vec![Self::rule_object(rule)]),
            None => none(),
        }
    }

    // ----- users and groups -----

    fn sid_object(sid: &str) -> Value {
        obj("System.Security.Principal.SecurityIdentifier")
            .with("Value", sid)
            .with("ToString", sid)
            .into()
    }

    fn get_local_user(&self, args: &BoundArgs) -> HostResult {
        let names = names_of(args, "Name");
        let sid = args.string("SID");
        let mut result = CommandOutput::none();
        let users = self.guest.users().to_vec();
        let user_obj = |u: &super::LocalUser| -> Value {
            obj("Microsoft.PowerShell.Commands.LocalUser")
                .with("Name", u.name.clone())
                .with("Enabled", true)
                .with(
                    "Description",
                    if u.sid.ends_with("-500") {
                        "Built-in account for administering the computer/domain"
                    } else {
                        ""
                    },
                )
                .with("SID", Self::sid_object(&u.sid))
                .with("__display", display(&["Name", "Enabled", "Description"]))
                .into()
        };
        if let Some(sid) = sid {
            match users.iter().find(|u| u.sid.eq_ignore_ascii_case(&sid)) {
                Some(u) => result.values.push(user_obj(u)),
                None => result.errors.push(user_not_found(&sid)),
            }
            return HostResult::Output(result);
        }
        if names.is_empty() {
            result.values.extend(users.iter().map(user_obj));
        }
        for n in names {
            let found: Vec<&super::LocalUser> =
                users.iter().filter(|u| wildcard(&n, &u.name)).collect();
            if found.is_empty() && !n.contains('*') {
                result.errors.push(user_not_found(&n));
            }
            result.values.extend(found.into_iter().map(user_obj));
        }
        HostResult::Output(result)
    }

    fn get_local_group_member(&self, args: &BoundArgs) -> HostResult {
        let group = args
            .string("SID")
            .or_else(|| args.string_or_pos("Group", 0))
            .or_else(|| args.string("Name"));
        let Some(group) = group else {
            return HostResult::Error(parameter_missing("GetLocalGroupMemberCommand", "Group"));
        };
        let admins = group.eq_ignore_ascii_case(ADMINISTRATORS_SID)
            || group.eq_ignore_ascii_case(&self.guest.config().admin_group_name);
        let users_group =
            group.eq_ignore_ascii_case("S-1-5-32-545") || group.eq_ignore_ascii_case("Users");
        let other = self
            .guest
            .local_groups()
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(&group) || g.sid.eq_ignore_ascii_case(&group))
            .cloned();
        if !admins && !users_group && other.is_none() {
            return HostResult::Error(
                ErrorRecord::new(
                    format!("Group {group} was not found."),
                    "Microsoft.PowerShell.Commands.GroupNotFoundException",
                    "GroupNotFound,Microsoft.PowerShell.Commands.GetLocalGroupMemberCommand",
                    "ObjectNotFound",
                )
                .with_target(&group, "String"),
            );
        }
        if admins && !self.guest.admin_foreign_sids().is_empty() {
            // Windows PowerShell 5.1 sorts the members by name and cannot compare a SID that
            // resolves to nothing (PowerShell/PowerShell#2996, #21617).
            return HostResult::Error(ErrorRecord::new(
                "Failed to compare two elements in the array.",
                "System.InvalidOperationException",
                "System.InvalidOperationException,Microsoft.PowerShell.Commands.GetLocalGroupMemberCommand",
                "NotSpecified",
            ));
        }
        let computer = self.guest.computer_name().to_string();
        let principal = |class: &str, name: String, sid: &str| -> Value {
            obj("Microsoft.PowerShell.Commands.LocalPrincipal")
                .with("ObjectClass", class)
                .with("Name", name)
                .with("PrincipalSource", "Local")
                .with("SID", Self::sid_object(sid))
                .with(
                    "__display",
                    display(&["ObjectClass", "Name", "PrincipalSource"]),
                )
                .into()
        };
        let mut members: Vec<Value> = self
            .guest
            .users()
            .iter()
            .filter(|u| match &other {
                Some(g) => u.groups.contains(&g.sid),
                None => u.admin == admins || users_group,
            })
            .map(|u| principal("User", format!(r"{computer}\{}", u.name), &u.sid))
            .collect();
        if admins {
            members.extend(
                self.guest
                    .local_groups()
                    .iter()
                    .filter(|g| g.in_administrators)
                    .map(|g| principal("Group", format!(r"{computer}\{}", g.name), &g.sid)),
            );
        }
        out(members)
    }

    // ----- CIM -----

    fn cim(&self, args: &BoundArgs) -> HostResult {
        let class = args.string_or_pos("ClassName", 0).unwrap_or_default();
        let filter = args.string("Filter").unwrap_or_default();
        let wanted = filter_equals(&filter);
        let keep = |o: &PsObject| match &wanted {
            Some((prop, value)) => o
                .get(prop)
                .is_some_and(|v| v.to_str().eq_ignore_ascii_case(value)),
            None => true,
        };
        let items: Vec<PsObject> = match class.to_ascii_lowercase().as_str() {
            "win32_service" => self
                .all_services()
                .into_iter()
                .filter_map(|n| {
                    let Value::Object(s) = self.service_object(&n)? else {
                        return None;
                    };
                    let s = s.borrow();
                    let status = s.get("Status").map(|v| v.to_str()).unwrap_or_default();
                    let start = match s.get("StartType").map(|v| v.to_str()).as_deref() {
                        Some("Automatic") => "Auto",
                        Some("Disabled") => "Disabled",
                        _ => "Manual",
                    };
                    let path = if n.eq_ignore_ascii_case("sshd") {
                        format!("\"{}\"", self.guest.sshd_exe())
                    } else if n.eq_ignore_ascii_case("ssh-agent") {
                        format!("\"{}\"", self.guest.sshd_exe().replace("sshd.exe", "ssh-agent.exe"))
                    } else {
                        r"C:\Windows\System32\svchost.exe -k NetworkService".to_string()
                    };
                    Some(
                        obj("Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_Service")
                            .with("Name", n.clone())
                            .with("DisplayName", s.get("DisplayName").unwrap_or_default())
                            .with("State", status)
                            .with("StartMode", start)
                            .with("PathName", path)
                            .with("StartName", "LocalSystem")
                            .with("__display", display(&["ProcessId", "Name", "StartMode", "State"])),
                    )
                })
                .collect(),
            "win32_userprofile" => {
                let mut v = vec![obj("Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_UserProfile")
                    .with("SID", SYSTEM_SID)
                    .with("LocalPath", r"C:\Windows\system32\config\systemprofile")
                    .with("Special", true)];
                v.extend(self.guest.users().iter().filter_map(|u| {
                    Some(
                        obj("Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_UserProfile")
                            .with("SID", u.sid.clone())
                            .with("LocalPath", u.profile.clone()?)
                            .with("Special", false),
                    )
                }));
                v
            }
            "win32_operatingsystem" => {
                let build = self.guest.os_build();
                let caption = match build {
                    b if b < 17763 => "Microsoft Windows Server 2016 Datacenter",
                    b if b < 20348 => "Microsoft Windows Server 2019 Datacenter",
                    b if b < 26100 => "Microsoft Windows Server 2022 Datacenter",
                    _ => "Microsoft Windows Server 2025 Datacenter",
                };
                vec![obj("Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_OperatingSystem")
                    .with("Caption", caption)
                    .with("Version", format!("10.0.{build}"))
                    .with("BuildNumber", build.to_string())
                    .with("CSName", self.guest.computer_name().to_string())
                    .with("OSArchitecture", "64-bit")
                    .with("__display", display(&["SystemDirectory", "Organization", "BuildNumber", "RegisteredUser", "SerialNumber", "Version"]))]
            }
            "win32_logicaldisk" => vec![obj("Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_LogicalDisk")
                .with("DeviceID", "C:")
                .with("DriveType", Value::Int(3))
                .with("FileSystem", "NTFS")
                .with("Size", Value::Int(136_363_114_496))
                .with("FreeSpace", Value::Int(if self.guest.disk_full() { 0 } else { 98_304_000_000 }))
                .with("__display", display(&["DeviceID", "DriveType", "ProviderName", "FreeSpace", "Size", "VolumeName"]))],
            "win32_computersystem" => vec![obj("Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_ComputerSystem")
                .with("Name", self.guest.computer_name().to_string())
                .with("Domain", "WORKGROUP")
                .with("PartOfDomain", false)],
            _ => {
                return HostResult::Error(ErrorRecord::new(
                    "Invalid class ",
                    "Microsoft.Management.Infrastructure.CimException",
                    "HRESULT 0x80041010,Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand",
                    "MetadataError",
                ).with_target(&format!("root\\cimv2:{class}"), "String"));
            }
        };
        out(items
            .into_iter()
            .filter(|o| keep(o))
            .map(Value::from)
            .collect())
    }

    // ----- ACLs -----

    fn acl_object(&self, path: &str) -> Option<Value> {
        let file = self.guest.file(path)?;
        let inherited = file.acl.inherited;
        let mut sids: Vec<(String, String, bool)> = file
            .acl
            .grants
            .iter()
            .map(|(s, r)| (s.clone(), r.clone(), false))
            .collect();
        if inherited {
            for sid in self.guest.effective_sids(file) {
                if !file.acl.grants.contains_key(&sid) {
                    sids.push((sid, "RX".into(), true));
                }
            }
        }
        let access: Vec<Value> = sids
            .iter()
            .map(|(sid, rights, inh)| {
                obj("System.Security.AccessControl.FileSystemAccessRule")
                    .with("FileSystemRights", rights_name(rights))
                    .with("AccessControlType", "Allow")
                    .with("IdentityReference", self.account_object(sid))
                    .with("IsInherited", *inh)
                    .with("__sid", sid.clone())
                    .into()
            })
            .collect();
        Some(
            obj("System.Security.AccessControl.FileSecurity")
                .with(
                    "Path",
                    format!(r"Microsoft.PowerShell.Core\FileSystem::{}", file.path),
                )
                .with("Owner", r"BUILTIN\Administrators")
                .with("AreAccessRulesProtected", !inherited)
                .with("Access", Value::array(access))
                .with("__path", file.path.clone())
                .with("__display", display(&["Path", "Owner", "Access"]))
                .into(),
        )
    }

    /// `Get-Acl` of a folder whose ACL something changed (`icacls`, a variant): its explicit
    /// grants, plus, while it inherits, what its parent passes down (ProgramData: SYSTEM,
    /// Administrators, Authenticated Users), as Windows lists them.
    fn dir_acl_object(&self, path: &str) -> Option<Value> {
        let acl = self.guest.dir_acl(path)?;
        let mut rules: Vec<(String, String, bool)> = acl
            .grants
            .iter()
            .map(|(s, r)| (s.clone(), r.clone(), false))
            .collect();
        if acl.inherited {
            let parent: &[&str] =
                if super::path_key(path).starts_with(&super::path_key(r"C:\ProgramData")) {
                    &[
                        super::SYSTEM_SID,
                        ADMINISTRATORS_SID,
                        super::AUTHENTICATED_USERS_SID,
                    ]
                } else {
                    &[super::SYSTEM_SID, ADMINISTRATORS_SID]
                };
            for sid in parent {
                if !acl.grants.contains_key(*sid) {
                    rules.push((sid.to_string(), "RX".into(), true));
                }
            }
        }
        let access: Vec<Value> = rules
            .iter()
            .map(|(sid, rights, inh)| {
                obj("System.Security.AccessControl.FileSystemAccessRule")
                    .with("FileSystemRights", rights_name(rights))
                    .with("AccessControlType", "Allow")
                    .with("IdentityReference", self.account_object(sid))
                    .with("IsInherited", *inh)
                    .with("__sid", sid.clone())
                    .into()
            })
            .collect();
        Some(
            obj("System.Security.AccessControl.DirectorySecurity")
                .with(
                    "Path",
                    format!(r"Microsoft.PowerShell.Core\FileSystem::{path}"),
                )
                .with("Owner", r"BUILTIN\Administrators")
                .with("AreAccessRulesProtected", !acl.inherited)
                .with("Access", Value::array(access))
                .with("__display", display(&["Path", "Owner", "Access"]))
                .into(),
        )
    }

    fn account_object(&self, sid: &str) -> Value {
        let name = self.guest.account_name(sid);
        obj("System.Security.Principal.NTAccount")
            .with("Value", name.clone())
            .with("ToString", name)
            .with("__sid", sid)
            .into()
    }

    fn get_acl(&self, args: &BoundArgs, input: &[Value]) -> HostResult {
        let path = args
            .string("LiteralPath")
            .or_else(|| args.string_or_pos("Path", 0))
            .or_else(|| input.first().map(path_of));
        let Some(path) = path else {
            return HostResult::Error(parameter_missing("GetAclCommand", "Path"));
        };
        if self.guest.dir_exists(&path)
            && let Some(acl) = self.dir_acl_object(&path)
        {
            return out(vec![acl]);
        }
        if self.guest.dir_exists(&path) {
            // Folders: what the model knows of them is what they pass down.
            return out(vec![
                obj("System.Security.AccessControl.DirectorySecurity")
                    .with(
                        "Path",
                        format!(r"Microsoft.PowerShell.Core\FileSystem::{path}"),
                    )
                    .with("Owner", r"NT AUTHORITY\SYSTEM")
                    .with("AreAccessRulesProtected", false)
                    .with("Access", Value::array(Vec::new()))
                    .into(),
            ]);
        }
        match self.acl_object(&path) {
            Some(acl) => out(vec![acl]),
            None => non_terminating(
                ErrorRecord::new(
                    format!("Cannot find path '{path}' because it does not exist."),
                    "System.Management.Automation.ItemNotFoundException",
                    "GetAcl_PathNotFound_Exception,Microsoft.PowerShell.Commands.GetAclCommand",
                    "ObjectNotFound",
                )
                .with_target(&path, "String"),
            ),
        }
    }

    fn set_acl(&mut self, args: &BoundArgs, input: &[Value]) -> HostResult {
        let acl = args
            .get("AclObject")
            .cloned()
            .or_else(|| input.first().cloned());
        let path = args
            .string("LiteralPath")
            .or_else(|| args.string_or_pos("Path", 0));
        let (Some(Value::Object(acl)), Some(path)) = (acl, path) else {
            return HostResult::Error(parameter_missing("SetAclCommand", "AclObject"));
        };
        let acl = acl.borrow();
        let protected = acl
            .get("AreAccessRulesProtected")
            .is_some_and(|v| v.truthy());
        let mut grants = BTreeMap::new();
        for rule in acl.get("Access").map(|a| a.enumerate()).unwrap_or_default() {
            let Value::Object(r) = rule else { continue };
            let r = r.borrow();
            if r.get("IsInherited").is_some_and(|v| v.truthy()) {
                continue;
            }
            let sid = r.get("__sid").map(|v| v.to_str()).or_else(|| {
                let name = r.get("IdentityReference")?.to_str();
                self.guest.resolve_account(&name)
            });
            if let Some(sid) = sid {
                let rights = r
                    .get("FileSystemRights")
                    .map(|v| v.to_str())
                    .unwrap_or_default();
                grants.insert(sid, rights_code(&rights));
            }
        }
        match self.guest.file_mut(&path) {
            Some(file) => {
                file.acl.inherited = !protected;
                file.acl.grants = grants;
                none()
            }
            None => non_terminating(ErrorRecord::new(
                format!("Cannot find path '{path}' because it does not exist."),
                "System.Management.Automation.ItemNotFoundException",
                "SetAcl_PathNotFound_Exception,Microsoft.PowerShell.Commands.SetAclCommand",
                "ObjectNotFound",
            )),
        }
    }

    /// `icacls PATH [/inheritance:r|d|e] [/grant[:r] ACCOUNT:PERM]... [/remove ACCOUNT]`. Like
    /// the real tool it resolves every account before changing anything and reports failures
    /// in its exit code and stderr, not as a PowerShell error.
    fn icacls(&mut self, args: &BoundArgs) -> HostResult {
        let raw = args.native_args();
        let native = |stdout: &str, stderr: &str, code: i32| {
            HostResult::Output(CommandOutput::native(stdout, stderr, code))
        };
        let Some((path, options)) = raw.split_first() else {
            return native("", "", 0);
        };
        let invalid = |opt: &str| native("", &format!("Invalid parameter \"{opt}\"\r\n"), 87);
        let mut inheritance = None;
        let mut grants = Vec::new();
        let mut removes = Vec::new();
        let mut i = 0;
        while i < options.len() {
            let opt = options[i].to_ascii_lowercase();
            match opt.as_str() {
                "/inheritance:r" | "/inheritance:d" | "/inheritance:e" => {
                    inheritance = opt.chars().last()
                }
                "/grant" | "/grant:r" if i + 1 < options.len() => {
                    let Some((account, perm)) = options[i + 1].rsplit_once(':') else {
                        return invalid(&options[i + 1]);
                    };
                    grants.push((account.to_string(), perm.to_string(), opt == "/grant:r"));
                    i += 1;
                }
                "/remove" | "/remove:g" if i + 1 < options.len() => {
                    removes.push(options[i + 1].clone());
                    i += 1;
                }
                "/q" | "/c" => {}
                _ => return invalid(&options[i]),
            }
            i += 1;
        }
        let failed = "Successfully processed 0 files; Failed processing 1 files\r\n";
        let is_dir = self.guest.file(path).is_none() && self.guest.dir_exists(path);
        if self.guest.file(path).is_none() && !is_dir {
            return native(
                failed,
                &format!("{path}: The system cannot find the file specified.\r\n"),
                2,
            );
        }
        let mut resolved = Vec::new();
        for (account, perm, replace) in grants {
            match self.guest.resolve_account(&account) {
                Some(sid) => resolved.push((sid, perm, replace)),
                None => {
                    // ERROR_NONE_MAPPED
                    return native(
                        failed,
                        &format!(
                            "{account}: No mapping between account names and security IDs was done.\r\n"
                        ),
                        1332,
                    );
                }
            }
        }
        let mut removed = Vec::new();
        for account in removes {
            match self.guest.resolve_account(&account) {
                Some(sid) => removed.push(sid),
                None => {
                    return native(
                        failed,
                        &format!(
                            "{account}: No mapping between account names and security IDs was done.\r\n"
                        ),
                        1332,
                    );
                }
            }
        }
        let inherited_sids = self
            .guest
            .file(path)
            .map(|f| self.guest.effective_sids(f))
            .unwrap_or_else(|| {
                [
                    super::SYSTEM_SID,
                    ADMINISTRATORS_SID,
                    super::AUTHENTICATED_USERS_SID,
                ]
                .map(String::from)
                .into()
            });
        // A folder's grants carry inheritance flags (`(OI)(CI)F`); the model keeps the rights.
        let rights = |perm: &str| perm.rsplit(')').next().unwrap_or(perm).to_string();
        let acl = if is_dir {
            self.guest.dir_acl_mut(path)
        } else {
            match self.guest.file_mut(path) {
                Some(file) => &mut file.acl,
                None => return native(failed, "", 2),
            }
        };
        let file = FileAcl { acl };
        match inheritance {
            Some('r') => file.acl.inherited = false,
            Some('d') => {
                for sid in inherited_sids {
                    file.acl.grants.entry(sid).or_insert_with(|| "RX".into());
                }
                file.acl.inherited = false;
            }
            Some('e') => file.acl.inherited = true,
            _ => {}
        }
        for sid in removed {
            file.acl.grants.remove(&sid);
        }
        for (sid, perm, _) in resolved {
            file.acl.grants.insert(sid, rights(&perm));
        }
        native(
            &format!(
                "processed file: {path}\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n"
            ),
            "",
            0,
        )
    }

    // ----- registry -----

    fn is_openssh_key(path: &str) -> bool {
        let p = path
            .trim_end_matches('\\')
            .to_ascii_lowercase()
            .replace("registry::hkey_local_machine", "hklm:")
            .replace("hklm:software", r"hklm:\software");
        p == OPENSSH_KEY.to_ascii_lowercase()
    }

    fn registry(&mut self, command: &str, args: &BoundArgs) -> HostResult {
        let path = args
            .string("LiteralPath")
            .or_else(|| args.string_or_pos("Path", 0))
            .unwrap_or_default();
        let known = Self::is_openssh_key(&path);
        let exists = known && self.guest.registry.is_some();
        let software = path
            .trim_end_matches('\\')
            .eq_ignore_ascii_case(r"HKLM:\SOFTWARE");
        match command {
            "test-path" => out(vec![Value::Bool(exists || software)]),
            "new-item" => {
                if !known {
                    return unmodelled_key(&path);
                }
                if exists && !args.switch("Force") {
                    return non_terminating(ErrorRecord::new(
                        "A key at this path already exists.",
                        "System.IO.IOException",
                        "System.IO.IOException,Microsoft.PowerShell.Commands.NewItemCommand",
                        "ResourceExists",
                    ));
                }
                self.guest.registry.get_or_insert_with(BTreeMap::new);
                out(vec![self.key_object()])
            }
            "get-item" => match exists {
                true => out(vec![self.key_object()]),
                false => non_terminating(path_missing(&path)),
            },
            "get-itemproperty" | "get-itempropertyvalue" => {
                if !exists {
                    return non_terminating(path_missing(&path));
                }
                let name = args.string_or_pos("Name", 1);
                let values = self.guest.registry.clone().unwrap_or_default();
                if let Some(name) = name {
                    let Some((k, v)) = values.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name))
                    else {
                        return non_terminating(ErrorRecord::new(
                            format!("Property {name} does not exist at path HKEY_LOCAL_MACHINE\\SOFTWARE\\OpenSSH."),
                            "System.Management.Automation.PSArgumentException",
                            "System.Management.Automation.PSArgumentException,Microsoft.PowerShell.Commands.GetItemPropertyCommand",
                            "InvalidArgument",
                        ).with_target(&name, "String"));
                    };
                    if command == "get-itempropertyvalue" {
                        return out(vec![Value::from(v.clone())]);
                    }
                    return out(vec![self.properties_object(&[(k.clone(), v.clone())])]);
                }
                let all: Vec<(String, String)> = values.into_iter().collect();
                out(vec![self.properties_object(&all)])
            }
            "new-itemproperty" | "set-itemproperty" => {
                if !known {
                    return unmodelled_key(&path);
                }
                if !exists {
                    return non_terminating(path_missing(&path));
                }
                let (Some(name), Some(value)) =
                    (args.string("Name"), args.get("Value").map(Value::to_str))
                else {
                    return HostResult::Error(parameter_missing("SetItemPropertyCommand", "Name"));
                };
                let values = self.guest.registry.get_or_insert_with(BTreeMap::new);
                let existing = values
                    .keys()
                    .find(|k| k.eq_ignore_ascii_case(&name))
                    .cloned();
                if command == "new-itemproperty" && existing.is_some() && !args.switch("Force") {
                    return non_terminating(ErrorRecord::new(
                        "The property already exists.",
                        "System.IO.IOException",
                        "System.IO.IOException,Microsoft.PowerShell.Commands.NewItemPropertyCommand",
                        "ResourceExists",
                    ));
                }
                let key = existing.unwrap_or(name.clone());
                values.insert(key.clone(), value.clone());
                if command == "new-itemproperty" || args.switch("PassThru") {
                    return out(vec![self.properties_object(&[(key, value)])]);
                }
                none()
            }
            "remove-itemproperty" => {
                let name = args.string("Name").unwrap_or_default();
                match self.guest.registry.as_mut() {
                    Some(values) if known => {
                        values.retain(|k, _| !k.eq_ignore_ascii_case(&name));
                        none()
                    }
                    _ => non_terminating(path_missing(&path)),
                }
            }
            _ => unmodelled_key(&path),
        }
    }

    fn key_object(&self) -> Value {
        obj("Microsoft.Win32.RegistryKey")
            .with("Name", r"HKEY_LOCAL_MACHINE\SOFTWARE\OpenSSH")
            .with(
                "PSPath",
                r"Microsoft.PowerShell.Core\Registry::HKEY_LOCAL_MACHINE\SOFTWARE\OpenSSH",
            )
            .into()
    }

    fn properties_object(&self, values: &[(String, String)]) -> Value {
        let mut o = PsObject::custom();
        for (k, v) in values {
            o.set(k, Value::from(v.clone()));
        }
        o.set(
            "PSPath",
            r"Microsoft.PowerShell.Core\Registry::HKEY_LOCAL_MACHINE\SOFTWARE\OpenSSH".into(),
        );
        o.set(
            "PSParentPath",
            r"Microsoft.PowerShell.Core\Registry::HKEY_LOCAL_MACHINE\SOFTWARE".into(),
        );
        o.set("PSChildName", "OpenSSH".into());
        o.set("PSDrive", "HKLM".into());
        o.set("PSProvider", r"Microsoft.PowerShell.Core\Registry".into());
        o.into()
    }

    /// Runs a command line as cmd.exe would (for `cmd /c` and `powershell ...` typed in a
    /// script): the same shells SSH exec uses.
    fn nested(&mut self, line: &str) -> HostResult {
        let o = pwsh::run_cmd(self, line);
        HostResult::Output(CommandOutput::native(&o.stdout, &o.stderr, o.exit_code))
    }
}

/// The ACL `icacls` changes, a file's or a folder's.
struct FileAcl<'a> {
    acl: &'a mut super::Acl,
}

fn unmodelled_key(path: &str) -> HostResult {
    // Keys outside HKLM:\SOFTWARE\OpenSSH are not in the model; answer as a missing path so a
    // script never believes a write happened.
    non_terminating(path_missing(path))
}

fn user_not_found(name: &str) -> ErrorRecord {
    ErrorRecord::new(
        format!("User {name} was not found."),
        "Microsoft.PowerShell.Commands.UserNotFoundException",
        "UserNotFound,Microsoft.PowerShell.Commands.GetLocalUserCommand",
        "ObjectNotFound",
    )
    .with_target(name, "String")
}

fn bad_port(port: &str) -> ErrorRecord {
    ErrorRecord::new(
        format!("The port number {port} is invalid."),
        "Microsoft.Management.Infrastructure.CimException",
        "HRESULT 0x80070057,New-NetFirewallRule",
        "InvalidArgument",
    )
}

fn profile_of(v: &Value) -> Result<String, ErrorRecord> {
    let mut out = Vec::new();
    for p in v.enumerate() {
        for part in p.to_str().split(',') {
            out.push(one_of(
                part.trim(),
                &["Any", "Domain", "Private", "Public"],
                "Profile",
            )?);
        }
    }
    if out.iter().any(|p| p == "Any") || out.is_empty() {
        return Ok("Any".into());
    }
    Ok(out.join(", "))
}

fn service_name_of(v: &Value) -> String {
    match v {
        Value::Object(o) => o
            .borrow()
            .get("Name")
            .map(|n| n.to_str())
            .unwrap_or_default(),
        other => other.to_str(),
    }
}

fn path_of(v: &Value) -> String {
    match v {
        Value::Object(o) => o
            .borrow()
            .get("FullName")
            .map(|n| n.to_str())
            .unwrap_or_default(),
        other => other.to_str(),
    }
}

/// `Name='sshd'` / `Name = "sshd"` (the WQL filters scripts use), as (property, value).
fn filter_equals(filter: &str) -> Option<(String, String)> {
    let (prop, value) = filter.split_once('=')?;
    let value = value.trim().trim_matches(['\'', '"']);
    Some((prop.trim().to_string(), value.to_string()))
}

fn rights_name(code: &str) -> String {
    match code {
        "F" => "FullControl",
        "M" => "Modify, Synchronize",
        "RX" => "ReadAndExecute, Synchronize",
        "R" => "Read, Synchronize",
        "W" => "Write, Synchronize",
        other => other,
    }
    .to_string()
}

fn rights_code(name: &str) -> String {
    match name {
        "FullControl" => "F",
        "Modify, Synchronize" | "Modify" => "M",
        "ReadAndExecute, Synchronize" | "ReadAndExecute" => "RX",
        "Read, Synchronize" | "Read" => "R",
        "Write, Synchronize" | "Write" => "W",
        other => other,
    }
    .to_string()
}

fn fs_error(e: String, path: &str) -> FsError {
    if e.contains("Could not find a part of the path") {
        FsError::DirectoryNotFound(path.to_string())
    } else {
        FsError::Other(e)
    }
}

/// The parameters of the cmdlets the host implements (common parameters aside). A cmdlet
/// refuses any other name, as PowerShell's binder does, so a typo never "works" here.
fn parameters(command: &str) -> Option<&'static [&'static str]> {
    Some(match command {
        "get-service" | "gsv" => &[
            "Name",
            "DisplayName",
            "Include",
            "Exclude",
            "InputObject",
            "ComputerName",
            "DependentServices",
            "RequiredServices",
        ],
        "start-service" | "sasv" | "stop-service" | "spsv" | "restart-service" => &[
            "Name",
            "DisplayName",
            "InputObject",
            "PassThru",
            "Force",
            "NoWait",
            "Include",
            "Exclude",
        ],
        "set-service" => &[
            "Name",
            "DisplayName",
            "Description",
            "StartupType",
            "Status",
            "InputObject",
            "PassThru",
            "ComputerName",
        ],
        "get-windowscapability" => &[
            "Online",
            "Name",
            "LimitAccess",
            "Source",
            "LogPath",
            "LogLevel",
            "ScratchDirectory",
            "SystemDrive",
            "WindowsDirectory",
            "Path",
        ],
        "add-windowscapability" => &[
            "Online",
            "Name",
            "LimitAccess",
            "Source",
            "LogPath",
            "LogLevel",
            "ScratchDirectory",
            "NoRestart",
        ],
        "get-netfirewallrule" => &[
            "Name",
            "DisplayName",
            "All",
            "Enabled",
            "Direction",
            "Action",
            "PolicyStore",
        ],
        "enable-netfirewallrule" | "disable-netfirewallrule" => &[
            "Name",
            "DisplayName",
            "InputObject",
            "PassThru",
            "PolicyStore",
        ],
        "new-netfirewallrule" => &[
            "Name",
            "DisplayName",
            "Description",
            "Enabled",
            "Profile",
            "Direction",
            "Action",
            "Protocol",
            "LocalPort",
            "RemotePort",
            "RemoteAddress",
            "LocalAddress",
            "Program",
            "Group",
            "PolicyStore",
        ],
        "set-netfirewallrule" => &[
            "Name",
            "DisplayName",
            "NewDisplayName",
            "Description",
            "Enabled",
            "Profile",
            "Direction",
            "Action",
            "Protocol",
            "LocalPort",
            "RemotePort",
            "RemoteAddress",
            "InputObject",
            "PassThru",
            "PolicyStore",
        ],
        "get-localuser" => &["Name", "SID"],
        "get-localgroupmember" => &["Group", "Name", "SID", "Member"],
        "add-localgroupmember" => &["Group", "Name", "SID", "Member"],
        "get-netconnectionprofile" => &[
            "Name",
            "InterfaceAlias",
            "InterfaceIndex",
            "NetworkCategory",
        ],
        "get-ciminstance" | "get-wmiobject" | "gwmi" => &[
            "ClassName",
            "Class",
            "Filter",
            "Namespace",
            "Property",
            "Query",
            "ComputerName",
        ],
        "get-acl" => &[
            "Path",
            "LiteralPath",
            "InputObject",
            "Audit",
            "Filter",
            "Include",
            "Exclude",
        ],
        "set-acl" => &[
            "Path",
            "LiteralPath",
            "AclObject",
            "InputObject",
            "Passthru",
            "Filter",
            "Include",
            "Exclude",
            "ClearCentralAccessPolicy",
        ],
        _ => return None,
    })
}

/// Parameters every cmdlet takes (the interpreter consumes `-ErrorAction` and friends).
const COMMON_PARAMETERS: &[&str] = &[
    "Verbose",
    "Debug",
    "WarningAction",
    "WarningVariable",
    "ErrorVariable",
    "OutVariable",
    "OutBuffer",
    "PipelineVariable",
    "InformationAction",
    "InformationVariable",
    "WhatIf",
    "Confirm",
    "ErrorAction",
];

fn unknown_parameter(command: &str, args: &BoundArgs) -> Option<ErrorRecord> {
    let allowed = parameters(command)?;
    let matches = |typed: &str, full: &str| {
        full.len() >= typed.len() && full[..typed.len()].eq_ignore_ascii_case(typed)
    };
    let (bad, _) = args.named().iter().find(|(n, _)| {
        !allowed
            .iter()
            .chain(COMMON_PARAMETERS)
            .any(|a| matches(n, a))
    })?;
    Some(
        ErrorRecord::new(
            format!("A parameter cannot be found that matches parameter name '{bad}'."),
            "System.Management.Automation.ParameterBindingException",
            "NamedParameterNotFound",
            "InvalidArgument",
        )
        .with_target(bad, "String"),
    )
}

impl pwsh::Host for GuestHost<'_> {
    fn command(&mut self, name: &str, args: &BoundArgs, input: &[Value]) -> HostResult {
        let lower = name.to_ascii_lowercase();
        let lower = lower.rsplit('\\').next().unwrap_or(&lower).to_string();
        if let Some(e) = unknown_parameter(&lower, args) {
            return HostResult::Error(e);
        }
        let first_path = args
            .string("LiteralPath")
            .or_else(|| args.string_or_pos("Path", 0))
            .unwrap_or_default()
            .to_ascii_lowercase();
        let is_registry = first_path.starts_with("hklm:") || first_path.starts_with("registry::");
        match lower.as_str() {
            "get-service" | "gsv" => self.get_service(args, input),
            "start-service" | "sasv" | "stop-service" | "spsv" | "restart-service"
            | "set-service" => {
                let canonical = match lower.as_str() {
                    "sasv" => "start-service",
                    "spsv" => "stop-service",
                    other => other,
                };
                self.change_service(canonical, args, input)
            }
            "sc.exe" => self.sc(args),
            "get-windowscapability" => self.get_capability(args),
            "add-windowscapability" => self.add_capability(args),
            "get-netfirewallrule"
            | "new-netfirewallrule"
            | "set-netfirewallrule"
            | "enable-netfirewallrule"
            | "disable-netfirewallrule" => self.firewall(&lower, args, input),
            "get-localuser" => self.get_local_user(args),
            "get-localgroupmember" => self.get_local_group_member(args),
            "add-localgroupmember" => self.add_local_group_member(args),
            "get-netconnectionprofile" => self.connection_profile(),
            "sshd" | "sshd.exe" => self.sshd_exe(args),
            "get-ciminstance" | "get-wmiobject" | "gwmi" => self.cim(args),
            "get-acl" => self.get_acl(args, input),
            "set-acl" => self.set_acl(args, input),
            "icacls" | "icacls.exe" => self.icacls(args),
            "hostname" | "hostname.exe" => HostResult::Output(CommandOutput::native(
                &format!("{}\r\n", self.guest.computer_name()),
                "",
                0,
            )),
            "whoami" | "whoami.exe" => HostResult::Output(CommandOutput::native(
                &format!("{}\r\n", self.whoami()),
                "",
                0,
            )),
            "cmd" | "cmd.exe" => {
                let a = args.native_args();
                let at = a
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case("/c") || x.eq_ignore_ascii_case("/k"));
                match at {
                    Some(i) => self.nested(&a[i + 1..].join(" ")),
                    None => HostResult::Output(CommandOutput::native("", "", 0)),
                }
            }
            "powershell" | "powershell.exe" => {
                let line = format!("powershell {}", args.native_args().join(" "));
                self.nested(&line)
            }
            "test-path"
            | "get-item"
            | "gi"
            | "new-item"
            | "ni"
            | "get-itemproperty"
            | "gp"
            | "get-itempropertyvalue"
            | "gpv"
            | "new-itemproperty"
            | "set-itemproperty"
            | "sp"
            | "remove-itemproperty"
            | "rp"
            | "remove-item"
            | "get-childitem"
                if is_registry =>
            {
                let canonical = match lower.as_str() {
                    "gi" => "get-item",
                    "ni" => "new-item",
                    "gp" => "get-itemproperty",
                    "gpv" => "get-itempropertyvalue",
                    "sp" => "set-itemproperty",
                    "rp" => "remove-itemproperty",
                    other => other,
                };
                let path = args
                    .string("LiteralPath")
                    .or_else(|| args.string_or_pos("Path", 0))
                    .unwrap_or_default();
                if realistic::is_policy_key(&realistic::normalize_key(&path)) {
                    return self.policy_registry(canonical, &path, args);
                }
                self.registry(canonical, args)
            }
            _ => HostResult::NotFound,
        }
    }

    fn switches(&self, command: &str) -> &[&'static str] {
        match command.to_ascii_lowercase().as_str() {
            "get-windowscapability" | "add-windowscapability" => &["Online", "LimitAccess"],
            "start-service" | "stop-service" | "restart-service" | "set-service" => {
                &["PassThru", "Force", "NoWait"]
            }
            "set-acl" | "get-acl" => &["Audit", "ClearCentralAccessPolicy"],
            _ => &[],
        }
    }

    fn call_method(
        &mut self,
        target: &Value,
        method: &str,
        args: &[Value],
    ) -> Option<Result<Value, ErrorRecord>> {
        let Value::Object(o) = target else {
            return None;
        };
        let type_name = o.borrow().type_name.clone();
        match (type_name.as_str(), method.to_ascii_lowercase().as_str()) {
            (
                "System.Security.Principal.NTAccount"
                | "System.Security.Principal.SecurityIdentifier",
                "translate",
            ) => {
                let sid = o
                    .borrow()
                    .get("__sid")
                    .or_else(|| o.borrow().get("Value"))?
                    .to_str();
                let to = args
                    .first()
                    .map(Value::to_str)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                Some(Ok(if to.contains("securityidentifier") {
                    Self::sid_object(&sid)
                } else {
                    self.account_object(&sid)
                }))
            }
            ("System.Security.AccessControl.FileSecurity", "setaccessruleprotection") => {
                let protect = args.first().is_some_and(Value::truthy);
                let preserve = args.get(1).is_some_and(Value::truthy);
                let mut acl = o.borrow_mut();
                acl.set("AreAccessRulesProtected", Value::Bool(protect));
                if protect {
                    let rules: Vec<Value> = acl
                        .get("Access")
                        .map(|a| a.enumerate())
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|r| {
                            let Value::Object(rule) = &r else {
                                return Some(r);
                            };
                            let inherited =
                                rule.borrow().get("IsInherited").is_some_and(|v| v.truthy());
                            if !inherited {
                                return Some(r);
                            }
                            preserve.then(|| {
                                rule.borrow_mut().set("IsInherited", Value::Bool(false));
                                r.clone()
                            })
                        })
                        .collect();
                    acl.set("Access", Value::array(rules));
                }
                Some(Ok(Value::Null))
            }
            _ => None,
        }
    }

    fn file_version(&self, path: &str) -> Option<String> {
        if path_key(path) == path_key(&self.guest.sshd_exe()) {
            return self.guest.openssh_version().map(str::to_string);
        }
        None
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, FsError> {
        match self.guest.file(path) {
            Some(f) => Ok(f.bytes.clone()),
            None if pwsh::parent_dir(path).is_some_and(|p| !self.guest.dir_exists(&p)) => {
                Err(FsError::DirectoryNotFound(path.to_string()))
            }
            None => Err(FsError::FileNotFound(path.to_string())),
        }
    }

    fn write_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        if self.guest.dir_exists(path) {
            return Err(FsError::AccessDenied(path.to_string()));
        }
        self.guest
            .write_file(path, bytes, false)
            .map_err(|e| fs_error(e, path))
    }

    fn create_dir(&mut self, path: &str) -> Result<(), FsError> {
        if self.guest.file(path).is_some() {
            return Err(FsError::Other(format!(
                "An item with the specified name {path} already exists."
            )));
        }
        self.guest.create_dir(path);
        Ok(())
    }

    fn remove(&mut self, path: &str, recurse: bool) -> Result<(), FsError> {
        self.guest.remove_path(path, recurse)
    }

    fn item(&self, path: &str) -> Option<ItemKind> {
        if let Some(f) = self.guest.file(path) {
            return Some(ItemKind::File(f.bytes.len() as u64));
        }
        self.guest.dir_exists(path).then_some(ItemKind::Directory)
    }

    fn modified(&self, path: &str) -> Option<pwsh::DateTime> {
        self.guest.file(path).map(|f| f.modified)
    }

    fn set_modified(&mut self, path: &str, when: pwsh::DateTime) -> Result<(), FsError> {
        match self.guest.file_mut(path) {
            Some(f) => {
                f.modified = when;
                Ok(())
            }
            None => Err(FsError::FileNotFound(path.to_string())),
        }
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        self.guest
            .list_dir(path)
            .ok_or_else(|| FsError::DirectoryNotFound(path.to_string()))
    }

    fn env_var(&self, name: &str) -> Option<String> {
        self.env
            .get(&name.to_ascii_uppercase())
            .map(|(_, v)| v.clone())
    }

    fn set_env_var(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(v) => {
                self.env
                    .insert(name.to_ascii_uppercase(), (name.to_string(), v.to_string()));
            }
            None => {
                self.env.remove(&name.to_ascii_uppercase());
            }
        }
    }

    fn env_vars(&self) -> Vec<(String, String)> {
        self.env.values().cloned().collect()
    }

    fn computer_name(&self) -> String {
        self.guest.computer_name().to_string()
    }

    fn os_version(&self) -> (i64, i64, i64, i64) {
        (10, 0, i64::from(self.guest.os_build()), 0)
    }

    fn cwd(&self) -> String {
        match &self.user {
            Some(_) => self
                .env_var("USERPROFILE")
                .unwrap_or_else(|| SYSTEM_CWD.into()),
            None => SYSTEM_CWD.into(),
        }
    }
}
