//! Reading what an SSH setup depends on, in one RunCommand block: the sshd service (state,
//! start-up type, version), the `OpenSSH-Server-In-TCP` rule and its profiles against the active
//! network categories, `sshd_config`'s lines that differ from the stock file, `DefaultShell`,
//! and the ACL of `C:\ProgramData\ssh\logs`. The key files come from the key-file block
//! (`windows::keys`) in the same script. Judging the facts is `workflow::audit`'s job.
//!
//! Why these: after a Windows Update sshd may be Manual or fail to start with error 1067
//! because the logs folder's ACL changed (PowerShell/Win32-OpenSSH#2282, #2299); Windows Server
//! 2025 and the MSI create the firewall rule for the Domain and Private profiles only
//! (PowerShell/openssh-portable#669), which drops port 22 on a Public network; hardened images
//! comment out the `Match Group administrators` block (PowerShell/Win32-OpenSSH#1706).

use serde::{Deserialize, Serialize};

use super::setup::FIREWALL_RULE;

/// Block name of the facts step.
pub const SSH_FACTS: &str = "ssh-facts";

/// The facts block. It changes nothing and takes no parameter.
pub(crate) fn block() -> String {
    format!(
        r#"$a = [ordered]@{{ sshd = 'missing' }}
try {{
    $svc = Get-Service -Name sshd -ErrorAction SilentlyContinue
    if ($svc) {{
        $a.sshd = [string]$svc.Status
        $a.startup = [string]$svc.StartType
        try {{
            $exe = (Get-CimInstance -ClassName Win32_Service -Filter "Name='sshd'").PathName.Trim('"')
            $a.version = [string](Get-Item -LiteralPath $exe).VersionInfo.ProductVersion
        }} catch {{ }}
    }}
    $fw = Get-NetFirewallRule -Name '{FIREWALL_RULE}' -ErrorAction SilentlyContinue
    if ($fw) {{
        $a.rule = [ordered]@{{ enabled = ([string]$fw.Enabled -eq 'True'); profile = [string]$fw.Profile }}
    }}
    $a.own_rules = @(Get-NetFirewallRule | Where-Object {{ $_.Name -like 'azssh-sshd-*' }} | ForEach-Object {{ [ordered]@{{ name = [string]$_.Name; enabled = ([string]$_.Enabled -eq 'True'); profile = [string]$_.Profile }} }})
    try {{
        $a.categories = @(Get-NetConnectionProfile -ErrorAction Stop | ForEach-Object {{ [string]$_.NetworkCategory }})
    }} catch {{ $a.categories_error = Limit $_.Exception.Message }}
    $cfgPath = Join-Path $env:ProgramData 'ssh\sshd_config'
    if (Test-Path -LiteralPath $cfgPath) {{
        $c = [ordered]@{{ ports = @(); password = @(); access = @(); match_admins = $false; match_keys = '' }}
        $inMatch = $false
        foreach ($line in [IO.File]::ReadAllLines($cfgPath)) {{
            $t = $line.Trim()
            if ($t -eq '' -or $t.StartsWith('#')) {{ continue }}
            if ($t -match '^Match\s+Group\s+"?administrators"?\s*$') {{ $c.match_admins = $true; $inMatch = $true; continue }}
            if ($t -match '^Match\s') {{ $inMatch = $false; continue }}
            if ($t -match '^Port\s+(\S+)') {{ $c.ports += $Matches[1] }}
            elseif ($t -match '^PasswordAuthentication\s+(\S+)') {{ $c.password += $Matches[1] }}
            elseif ($t -match '^((?:Allow|Deny)(?:Groups|Users))\s+(.*)$') {{ $c.access += (Limit ($Matches[1] + ' ' + $Matches[2])) }}
            elseif ($inMatch -and $t -match '^AuthorizedKeysFile\s+(.*)$') {{ $c.match_keys = Limit $Matches[1] }}
        }}
        $a.config = $c
    }}
    $shell = Get-ItemProperty -Path 'HKLM:\SOFTWARE\OpenSSH' -Name DefaultShell -ErrorAction SilentlyContinue
    if ($shell) {{ $a.default_shell = [string]$shell.DefaultShell }}
    $logs = Join-Path $env:ProgramData 'ssh\logs'
    if (Test-Path -LiteralPath $logs) {{
        $acl = Get-Acl -LiteralPath $logs
        $a.logs = [ordered]@{{
            inherited = -not $acl.AreAccessRulesProtected
            sids = @($acl.Access | ForEach-Object {{ $_.IdentityReference.Translate([Security.Principal.SecurityIdentifier]).Value }} | Sort-Object -Unique)
        }}
    }}
}} catch {{
    $a.error = Limit $_.Exception.Message
}}
$r.facts = $a"#
    )
}

/// The firewall rule as the guest reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleFacts {
    pub enabled: bool,
    /// `Any`, or a comma-separated list of `Domain`, `Private`, `Public`.
    pub profile: String,
}

/// A firewall rule azssh made for sshd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnRule {
    pub name: String,
    pub enabled: bool,
    pub profile: String,
}

/// The active lines of `sshd_config` that the audit compares with the stock file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigFacts {
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub password: Vec<String>,
    /// `AllowGroups ...`, `AllowUsers ...`, `DenyGroups ...`, `DenyUsers ...` lines.
    #[serde(default)]
    pub access: Vec<String>,
    /// An active `Match Group administrators` line.
    #[serde(default)]
    pub match_admins: bool,
    /// Its `AuthorizedKeysFile`.
    #[serde(default)]
    pub match_keys: String,
}

/// A folder's ACL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderAcl {
    pub inherited: bool,
    #[serde(default)]
    pub sids: Vec<String>,
}

/// What the facts block reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SshFacts {
    /// `Running`, `Stopped`..., or `missing` when OpenSSH is not installed.
    pub sshd: String,
    pub startup: Option<String>,
    pub version: Option<String>,
    pub rule: Option<RuleFacts>,
    /// The rules `setup` adds for sshd when the stock one does not cover the network
    /// (`azssh-sshd-<port>`).
    #[serde(default)]
    pub own_rules: Vec<OwnRule>,
    /// The active network connections' categories (`Public`, `Private`, `DomainAuthenticated`).
    pub categories: Option<Vec<String>>,
    pub categories_error: Option<String>,
    /// `None` when the file does not exist (sshd writes it at its first start).
    pub config: Option<ConfigFacts>,
    pub default_shell: Option<String>,
    /// `None` when `C:\ProgramData\ssh\logs` does not exist.
    pub logs: Option<FolderAcl>,
    pub error: Option<String>,
}

/// The firewall profiles a network category falls under (`DomainAuthenticated` → `Domain`).
pub fn profile_of_category(category: &str) -> &'static str {
    match category.to_ascii_lowercase().as_str() {
        "domainauthenticated" | "domain" => "Domain",
        "private" => "Private",
        _ => "Public",
    }
}

/// Whether a rule's `Profile` covers a category's profile (`Any` covers all).
pub fn rule_covers(rule_profile: &str, category: &str) -> bool {
    let wanted = profile_of_category(category);
    rule_profile
        .split(',')
        .map(str::trim)
        .any(|p| p.eq_ignore_ascii_case("Any") || p.eq_ignore_ascii_case(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_and_private_rule_does_not_cover_a_public_network() {
        assert!(!rule_covers("Domain, Private", "Public"));
        assert!(rule_covers("Domain, Private", "DomainAuthenticated"));
        assert!(rule_covers("Any", "Public"));
        assert!(rule_covers("Public", "public"));
    }
}
