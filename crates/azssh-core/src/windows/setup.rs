//! OpenSSH server setup: the built-in capability on Windows Server 2019+, then the service and
//! the firewall rule (also after the `WindowsOpenSSH` extension, which installs it on 2016).
//!
//! The doc's one-liner (`Add-WindowsCapability ...`) only installs the server: sshd stays
//! Stopped with start-up type Manual, and the firewall rule the capability normally creates can
//! be missing on hardened images. This block does all of it, each part only when needed, so a
//! second run reports `changed: false`.

use serde::{Deserialize, Serialize};

use super::error::WindowsError;

/// The capability name Windows Server 2019+ knows OpenSSH by.
pub const CAPABILITY: &str = "OpenSSH.Server~~~~0.0.1.0";
/// The firewall rule the capability install creates (and we create when it is missing).
pub const FIREWALL_RULE: &str = "OpenSSH-Server-In-TCP";

/// How OpenSSH gets onto the VM before the service and the firewall rule are ensured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupMode {
    /// Windows Server 2019+: install the `OpenSSH.Server` capability when it is missing.
    Capability,
    /// OpenSSH came another way (the `WindowsOpenSSH` extension on 2016 and older): only check
    /// and repair the service and the firewall rule.
    ServiceOnly,
}

/// The setup step's PowerShell, framed as the block `setup` (capability) or `service`. The
/// version comes from the service's own binary, wherever the capability or extension put it.
pub(crate) fn block(mode: SetupMode) -> String {
    let capability = match mode {
        SetupMode::Capability => format!(
            r#"
    $cap = Get-WindowsCapability -Online -Name '{CAPABILITY}'
    $s.capability = [string]$cap.State
    if ($cap.State -ne 'Installed') {{
        $null = Add-WindowsCapability -Online -Name '{CAPABILITY}'
        $s.changed = $true
    }}"#
        ),
        SetupMode::ServiceOnly => String::new(),
    };
    format!(
        r#"$s = [ordered]@{{ changed = $false; os_build = [Environment]::OSVersion.Version.Build }}
try {{{capability}
    if ((Get-Service -Name sshd).StartType -ne 'Automatic') {{
        Set-Service -Name sshd -StartupType Automatic
        $s.changed = $true
    }}
    if ((Get-Service -Name sshd).Status -ne 'Running') {{
        Start-Service -Name sshd
        $s.changed = $true
    }}
    $fw = Get-NetFirewallRule -Name '{FIREWALL_RULE}' -ErrorAction SilentlyContinue
    if (-not $fw) {{
        $null = New-NetFirewallRule -Name '{FIREWALL_RULE}' -DisplayName 'OpenSSH SSH Server (sshd)' -Enabled True -Direction Inbound -Protocol TCP -Action Allow -LocalPort 22
        $s.changed = $true
    }} elseif ([string]$fw.Enabled -ne 'True') {{
        Enable-NetFirewallRule -Name '{FIREWALL_RULE}'
        $s.changed = $true
    }}
    $svc = Get-Service -Name sshd
    $s.sshd = [string]$svc.Status
    $s.startup = [string]$svc.StartType
    $s.firewall = [string](Get-NetFirewallRule -Name '{FIREWALL_RULE}').Enabled -eq 'True'
    $exe = (Get-CimInstance -ClassName Win32_Service -Filter "Name='sshd'").PathName.Trim('"')
    $s.version = (Get-Item -LiteralPath $exe).VersionInfo.ProductVersion
}} catch {{
    $s.error = Limit $_.Exception.Message
    $s.code = '0x{{0:x8}}' -f $_.Exception.HResult
}}
$r.setup = $s"#
    )
}

/// The setup step's part of the result line, as the guest reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetupResult {
    #[serde(default)]
    pub changed: bool,
    pub os_build: Option<u32>,
    /// Capability state before this run (`Installed`, `NotPresent`, ...).
    pub capability: Option<String>,
    pub sshd: Option<String>,
    pub startup: Option<String>,
    pub firewall: Option<bool>,
    pub version: Option<String>,
    pub error: Option<String>,
    pub code: Option<String>,
}

/// sshd's state after a successful setup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SshdState {
    pub changed: bool,
    pub sshd: String,
    pub startup: String,
    pub firewall: bool,
    pub version: Option<String>,
    pub os_build: Option<u32>,
}

impl SetupResult {
    /// Turns the guest's report into the final state, or the error it describes. Capability
    /// errors keep their HRESULT so the hint can name the documented fix.
    pub fn into_state(self) -> Result<SshdState, WindowsError> {
        if let Some(message) = self.error {
            let code = self.code.unwrap_or_default().to_ascii_lowercase();
            let capability_failed = message.contains("Add-WindowsCapability")
                || message.contains(CAPABILITY)
                || code.starts_with("0x800f");
            return Err(if capability_failed {
                WindowsError::CapabilityInstall { code, message }
            } else {
                WindowsError::StepFailed {
                    step: "ssh setup",
                    message,
                }
            });
        }
        let state = SshdState {
            changed: self.changed,
            sshd: self.sshd.unwrap_or_default(),
            startup: self.startup.unwrap_or_default(),
            firewall: self.firewall.unwrap_or(false),
            version: self.version,
            os_build: self.os_build,
        };
        if state.sshd != "Running" || state.startup != "Automatic" || !state.firewall {
            return Err(WindowsError::StepFailed {
                step: "ssh setup",
                message: format!(
                    "sshd is {} ({}), firewall rule `{FIREWALL_RULE}` {}",
                    state.sshd,
                    state.startup,
                    if state.firewall {
                        "enabled"
                    } else {
                        "not enabled"
                    }
                ),
            });
        }
        Ok(state)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::UserError;

    #[test]
    fn capability_without_windows_update_names_the_documented_fix() {
        let failed = SetupResult {
            error: Some("Add-WindowsCapability failed. Error code = 0x800f0954".into()),
            code: Some("0x800F0954".into()),
            ..Default::default()
        };
        let err = failed.into_state().unwrap_err();
        assert_eq!(err.kind(), "windows.capability_install");
        let hint = err.hint().unwrap();
        assert!(hint.contains("Specify settings for optional component installation"));
        assert!(hint.contains("-Source"));
    }

    #[test]
    fn stopped_sshd_after_setup_is_an_error_not_a_success() {
        let half = SetupResult {
            sshd: Some("Stopped".into()),
            startup: Some("Manual".into()),
            firewall: Some(true),
            ..Default::default()
        };
        assert!(half.into_state().is_err());
    }

    #[test]
    fn setup_block_output_is_quiet() {
        // Every cmdlet that writes objects is assigned to $null; nothing else prints.
        let block = block(SetupMode::Capability);
        for line in block.lines() {
            let l = line.trim();
            if l.starts_with("Add-WindowsCapability") || l.starts_with("New-NetFirewallRule") {
                panic!("unassigned output: {l}");
            }
        }
    }
}
