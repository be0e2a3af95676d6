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

/// What the setup step may change beyond the documented install, each only when asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetupOptions {
    /// On a WSUS-managed VM, set the documented policy "Download repair content and optional
    /// features directly from Windows Update" (`RepairContentServerSource = 2`) before the
    /// capability install (`--allow-windows-update`). Never done silently: it is a policy
    /// change (MicrosoftDocs/windowsserverdocs#7843).
    pub allow_windows_update: bool,
    /// Make sshd listen on this port (sshd_config `Port`, then a restart) and open it in
    /// Windows Firewall (`--set-sshd-port` with `--port N`).
    pub sshd_port: Option<u16>,
}

/// The Group Policy key whose `UseWUServer = 1` means WSUS.
pub const WSUS_POLICY: &str = r"HKLM:\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU";
/// The key of "Specify settings for optional component installation and component repair".
pub const SERVICING_POLICY: &str = r"HKLM:\SOFTWARE\Policies\Microsoft\Windows\Servicing";

/// The setup step's PowerShell, framed as the block `setup` (capability) or `service`. The
/// version comes from the service's own binary, wherever the capability or extension put it.
///
/// Beyond the doc's one-liner it handles what real estates do (reference
/// WINDOWS-REALITIES.md): a WSUS policy that blocks Features on Demand (reported, fixed only
/// with `allow_windows_update`); sshd failing to start because a Windows Update left
/// `ProgramData\ssh\logs` writable (repaired: SYSTEM and Administrators only, inheritance off);
/// a firewall rule that exists but not on the active network category (Windows Server 2025's
/// rule covers Domain and Private, an Azure NIC is Public): azssh then adds its own rule for
/// that category instead of changing the admin's; and sshd listening on another `Port`.
pub(crate) fn block(mode: SetupMode, opts: SetupOptions) -> String {
    let allow_wu = if opts.allow_windows_update {
        format!(
            r#"
        if ($s.wsus) {{
            if (-not (Test-Path -LiteralPath '{SERVICING_POLICY}')) {{ $null = New-Item -Path '{SERVICING_POLICY}' -Force }}
            $null = New-ItemProperty -Path '{SERVICING_POLICY}' -Name RepairContentServerSource -Value 2 -PropertyType DWord -Force
            $s.windows_update_policy_set = $true
        }}"#
        )
    } else {
        String::new()
    };
    let capability = match mode {
        SetupMode::Capability => format!(
            r#"
    $cap = Get-WindowsCapability -Online -Name '{CAPABILITY}'
    $s.capability = [string]$cap.State
    if ($cap.State -ne 'Installed') {{
        $wu = Get-ItemProperty -Path '{WSUS_POLICY}' -ErrorAction SilentlyContinue
        if ($wu -and [string]$wu.UseWUServer -eq '1') {{ $s.wsus = $true }}{allow_wu}
        $null = Add-WindowsCapability -Online -Name '{CAPABILITY}'
        $s.changed = $true
    }}"#
        ),
        SetupMode::ServiceOnly => String::new(),
    };
    let set_port = match opts.sshd_port {
        Some(want) => format!(
            r#"
    if ($port -ne {want}) {{
        $lines = @()
        $done = $false
        if (Test-Path -LiteralPath $cfg) {{ $lines = @([IO.File]::ReadAllLines($cfg)) }}
        $out = @()
        foreach ($line in $lines) {{
            if (-not $done -and $line -match '^\s*#?\s*Port\s+\d+\s*$') {{ $out += 'Port {want}'; $done = $true }} else {{ $out += $line }}
        }}
        if (-not $done) {{ $out = @('Port {want}') + $out }}
        [IO.File]::WriteAllText($cfg, (($out -join "`r`n") + "`r`n"), (New-Object Text.UTF8Encoding $false))
        Restart-Service -Name sshd
        $port = {want}
        $s.port_set = $true
        $s.changed = $true
    }}"#
        ),
        None => String::new(),
    };
    format!(
        r#"$s = [ordered]@{{ changed = $false; os_build = [Environment]::OSVersion.Version.Build }}
try {{{capability}
    if ((Get-Service -Name sshd).StartType -ne 'Automatic') {{
        Set-Service -Name sshd -StartupType Automatic
        $s.changed = $true
    }}
    if ((Get-Service -Name sshd).Status -ne 'Running') {{
        try {{
            Start-Service -Name sshd
        }} catch {{
            $logs = Join-Path $env:ProgramData 'ssh\logs'
            if (-not (Test-Path -LiteralPath $logs)) {{ throw }}
            $null = icacls.exe $logs /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' /grant:r '*S-1-5-32-544:(OI)(CI)F'
            foreach ($other in @('*S-1-5-11', '*S-1-5-32-545', '*S-1-1-0')) {{ $null = icacls.exe $logs /remove:g $other }}
            Start-Service -Name sshd
            $s.repaired = 'logs folder ACL'
        }}
        $s.changed = $true
    }}
    $cfg = Join-Path $env:ProgramData 'ssh\sshd_config'
    $port = 22
    if (Test-Path -LiteralPath $cfg) {{
        foreach ($line in [IO.File]::ReadAllLines($cfg)) {{
            if ($line -match '^\s*Match\s') {{ break }}
            if ($line -match '^\s*Port\s+(\d+)') {{ $port = [int]$Matches[1]; break }}
        }}
    }}{set_port}
    $s.port = $port
    $fw = Get-NetFirewallRule -Name '{FIREWALL_RULE}' -ErrorAction SilentlyContinue
    if (-not $fw) {{
        $null = New-NetFirewallRule -Name '{FIREWALL_RULE}' -DisplayName 'OpenSSH SSH Server (sshd)' -Enabled True -Direction Inbound -Protocol TCP -Action Allow -LocalPort 22
        $s.changed = $true
    }} elseif ([string]$fw.Enabled -ne 'True') {{
        Enable-NetFirewallRule -Name '{FIREWALL_RULE}'
        $s.changed = $true
    }}
    $category = [string]@(Get-NetConnectionProfile)[0].NetworkCategory
    if ($category -eq 'DomainAuthenticated') {{ $category = 'Domain' }}
    $s.network_category = $category
    $fw = Get-NetFirewallRule -Name '{FIREWALL_RULE}'
    $s.firewall_profile = [string]$fw.Profile
    $covered = ([string]$fw.Profile -eq 'Any') -or (@(([string]$fw.Profile) -split ',\s*') -contains $category)
    if ($port -ne 22 -or -not $covered) {{
        $own = 'azssh-sshd-' + $port
        $mine = Get-NetFirewallRule -Name $own -ErrorAction SilentlyContinue
        if (-not $mine) {{
            $null = New-NetFirewallRule -Name $own -DisplayName ('azssh: OpenSSH Server (sshd) on ' + $port) -Enabled True -Direction Inbound -Protocol TCP -Action Allow -LocalPort $port -Profile $category
            $s.changed = $true
        }} elseif ([string]$mine.Enabled -ne 'True') {{
            Enable-NetFirewallRule -Name $own
            $s.changed = $true
        }}
        $s.firewall_rule = $own
    }} else {{
        $s.firewall_rule = '{FIREWALL_RULE}'
    }}
    $svc = Get-Service -Name sshd
    $s.sshd = [string]$svc.Status
    $s.startup = [string]$svc.StartType
    $s.firewall = [string](Get-NetFirewallRule -Name $s.firewall_rule).Enabled -eq 'True'
}} catch {{
    $s.error = Limit $_.Exception.Message
    $s.code = '0x{{0:x8}}' -f $_.Exception.HResult
}}
try {{
    $exe = (Get-CimInstance -ClassName Win32_Service -Filter "Name='sshd'").PathName.Trim('"')
    $s.version = (Get-Item -LiteralPath $exe).VersionInfo.ProductVersion
}} catch {{
    $s.version_error = Limit $_.Exception.Message
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
    /// `UseWUServer = 1`: the VM takes updates from WSUS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsus: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_update_policy_set: Option<bool>,
    /// What was repaired (`logs folder ACL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired: Option<String>,
    /// The port sshd listens on (sshd_config `Port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_set: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_category: Option<String>,
    /// `OpenSSH-Server-In-TCP`'s Profile (`Any`, `Domain, Private`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_profile: Option<String>,
    /// The rule that admits sshd's port on the active category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_rule: Option<String>,
    /// The version lookup failed (harmless: reported, not fatal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_error: Option<String>,
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
    /// The port sshd listens on.
    pub port: u16,
    pub network_category: Option<String>,
    pub firewall_profile: Option<String>,
    pub firewall_rule: Option<String>,
    /// What setup repaired (`logs folder ACL`), if anything.
    pub repaired: Option<String>,
    pub windows_update_policy_set: bool,
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
            if capability_failed && self.wsus == Some(true) {
                return Err(WindowsError::WsusBlocksCapability { code, message });
            }
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
            port: self.port.unwrap_or(22),
            network_category: self.network_category,
            firewall_profile: self.firewall_profile,
            firewall_rule: self.firewall_rule,
            repaired: self.repaired,
            windows_update_policy_set: self.windows_update_policy_set.unwrap_or(false),
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
        let block = block(
            SetupMode::Capability,
            SetupOptions {
                allow_windows_update: true,
                sshd_port: Some(2222),
            },
        );
        for line in block.lines() {
            let l = line.trim();
            if l.starts_with("Add-WindowsCapability")
                || l.starts_with("New-NetFirewallRule")
                || l.starts_with("New-ItemProperty")
                || l.starts_with("icacls")
            {
                panic!("unassigned output: {l}");
            }
        }
    }
}
