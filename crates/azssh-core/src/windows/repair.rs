//! Repairing what is safe to repair in an SSH setup, in one RunCommand block that runs after
//! the facts (`windows::audit`) and key-file (`windows::keys`) blocks and reads their `$a` and
//! `$k`: the logs folder's ACL (SYSTEM and Administrators full control, not inherited: the
//! documented fix for sshd failing with error 1067 after a Windows Update,
//! PowerShell/Win32-OpenSSH#2282), start-up type Manual → Automatic, the service started, the
//! firewall rule created, enabled or given the profiles of the active networks, and key files
//! re-encoded as UTF-8 without BOM and their ACL reset by SID. Each change is reported; with
//! `dry_run` nothing is written.
//!
//! Left alone because they are someone's decision: a Disabled service, `sshd_config`,
//! `DefaultShell`, unknown or expired keys.

use serde::{Deserialize, Serialize};

use super::authorized_keys::{ADMINISTRATORS_SID, SYSTEM_SID};
use super::setup::FIREWALL_RULE;

/// Block name of the repair step.
pub const REPAIR: &str = "repair";

pub(crate) fn block(dry_run: bool) -> String {
    let dry = if dry_run { "$true" } else { "$false" };
    format!(
        r#"$AzsshDryRun = {dry}
$fix = [ordered]@{{ changes = @(); failed = @() }}
try {{
    if ($a.sshd -ne 'missing') {{
        $logs = Join-Path $env:ProgramData 'ssh\logs'
        $foreign = @()
        if ($a.logs) {{ $foreign = @($a.logs.sids | Where-Object {{ $_ -ne '{ADMINISTRATORS_SID}' -and $_ -ne '{SYSTEM_SID}' }}) }}
        if ($a.logs -and ($a.logs.inherited -or $foreign.Count -gt 0)) {{
            $from = 'inherited: ' + $a.logs.inherited + '; ' + ($a.logs.sids -join ', ')
            $fix.changes += [ordered]@{{ what = 'logs.acl'; path = $logs; from = $from; to = 'SYSTEM, Administrators: full control, not inherited' }}
            if (-not $AzsshDryRun) {{
                try {{
                    $null = icacls.exe $logs /inheritance:r /grant '*{ADMINISTRATORS_SID}:(OI)(CI)F' /grant '*{SYSTEM_SID}:(OI)(CI)F'
                    if ($LASTEXITCODE -ne 0) {{ throw "icacls failed with exit code $LASTEXITCODE" }}
                    foreach ($sid in $foreign) {{
                        $null = icacls.exe $logs /remove ('*' + $sid)
                        if ($LASTEXITCODE -ne 0) {{ throw "icacls failed with exit code $LASTEXITCODE" }}
                    }}
                }} catch {{ $fix.failed += [ordered]@{{ what = 'logs.acl'; error = (Limit $_.Exception.Message) }} }}
            }}
        }}
        if ($a.startup -eq 'Manual') {{
            $fix.changes += [ordered]@{{ what = 'sshd.startup'; from = 'Manual'; to = 'Automatic' }}
            if (-not $AzsshDryRun) {{
                try {{ Set-Service -Name sshd -StartupType Automatic }} catch {{ $fix.failed += [ordered]@{{ what = 'sshd.startup'; error = (Limit $_.Exception.Message) }} }}
            }}
        }}
        if ($a.sshd -ne 'Running' -and $a.startup -ne 'Disabled') {{
            $fix.changes += [ordered]@{{ what = 'sshd.status'; from = $a.sshd; to = 'Running' }}
            if (-not $AzsshDryRun) {{
                try {{ Start-Service -Name sshd }} catch {{ $fix.failed += [ordered]@{{ what = 'sshd.status'; error = (Limit $_.Exception.Message) }} }}
            }}
        }}
        if (-not $a.rule) {{
            $fix.changes += [ordered]@{{ what = 'firewall.rule'; from = 'missing'; to = 'created for TCP 22, all profiles' }}
            if (-not $AzsshDryRun) {{
                try {{ $null = New-NetFirewallRule -Name '{FIREWALL_RULE}' -DisplayName 'OpenSSH SSH Server (sshd)' -Enabled True -Direction Inbound -Protocol TCP -Action Allow -LocalPort 22 }} catch {{ $fix.failed += [ordered]@{{ what = 'firewall.rule'; error = (Limit $_.Exception.Message) }} }}
            }}
        }} else {{
            if (-not $a.rule.enabled) {{
                $fix.changes += [ordered]@{{ what = 'firewall.enabled'; from = 'False'; to = 'True' }}
                if (-not $AzsshDryRun) {{
                    try {{ Enable-NetFirewallRule -Name '{FIREWALL_RULE}' }} catch {{ $fix.failed += [ordered]@{{ what = 'firewall.enabled'; error = (Limit $_.Exception.Message) }} }}
                }}
            }}
            $have = @($a.rule.profile -split ',\s*')
            if (-not ($have -contains 'Any') -and $a.categories) {{
                $want = @($have)
                foreach ($c in $a.categories) {{
                    $p = 'Public'
                    if ($c -eq 'DomainAuthenticated' -or $c -eq 'Domain') {{ $p = 'Domain' }}
                    elseif ($c -eq 'Private') {{ $p = 'Private' }}
                    $own = @($a.own_rules | Where-Object {{ $_.enabled -and ($_.profile -eq 'Any' -or @($_.profile -split ',\s*') -contains $p) }}).Count -gt 0
                    if (-not $own -and -not ($want -contains $p)) {{ $want += $p }}
                }}
                if ($want.Count -gt $have.Count) {{
                    $fix.changes += [ordered]@{{ what = 'firewall.profile'; from = $a.rule.profile; to = ($want -join ', ') }}
                    if (-not $AzsshDryRun) {{
                        try {{ Set-NetFirewallRule -Name '{FIREWALL_RULE}' -Profile $want }} catch {{ $fix.failed += [ordered]@{{ what = 'firewall.profile'; error = (Limit $_.Exception.Message) }} }}
                    }}
                }}
            }}
        }}
    }}
    foreach ($f in @($k.files)) {{
        if (-not $f.encoding) {{ continue }}
        if ($f.encoding -ne 'utf-8') {{
            $fix.changes += [ordered]@{{ what = 'keys.encoding'; path = $f.path; from = $f.encoding; to = 'utf-8' }}
            if (-not $AzsshDryRun) {{
                try {{
                    $text = [IO.File]::ReadAllText($f.path)
                    [IO.File]::WriteAllText($f.path, $text, (New-Object Text.UTF8Encoding $false))
                }} catch {{ $fix.failed += [ordered]@{{ what = 'keys.encoding'; path = $f.path; error = (Limit $_.Exception.Message) }} }}
            }}
        }}
        $admin = $f.owner -eq 'administrators'
        $foreign = @($f.sids | Where-Object {{ $_ -ne '{ADMINISTRATORS_SID}' -and $_ -ne '{SYSTEM_SID}' -and ($admin -or $_ -ne $f.sid) }})
        if (($admin -and $f.inherited) -or $foreign.Count -gt 0) {{
            $fix.changes += [ordered]@{{ what = 'keys.acl'; path = $f.path; from = ('inherited: ' + $f.inherited + '; ' + ($f.sids -join ', ')); to = ('inherited: False; ' + $f.sid + ', {SYSTEM_SID}') }}
            if (-not $AzsshDryRun) {{
                try {{
                    $null = icacls.exe $f.path /inheritance:r /grant ('*' + $f.sid + ':F') /grant '*{SYSTEM_SID}:F'
                    if ($LASTEXITCODE -ne 0) {{ throw "icacls failed with exit code $LASTEXITCODE" }}
                    foreach ($sid in $foreign) {{
                        $null = icacls.exe $f.path /remove ('*' + $sid)
                        if ($LASTEXITCODE -ne 0) {{ throw "icacls failed with exit code $LASTEXITCODE" }}
                    }}
                }} catch {{ $fix.failed += [ordered]@{{ what = 'keys.acl'; path = $f.path; error = (Limit $_.Exception.Message) }} }}
            }}
        }}
    }}
}} catch {{
    $fix.error = Limit $_.Exception.Message
}}
$r.repair = $fix"#
    )
}

/// One change a repair made (or would make).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
}

/// A change the guest could not make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedChange {
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub error: String,
}

/// The repair block's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepairResult {
    #[serde(default)]
    pub changes: Vec<Change>,
    #[serde(default)]
    pub failed: Vec<FailedChange>,
    pub error: Option<String>,
}
