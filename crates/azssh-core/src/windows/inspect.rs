//! The read-only look inside a guest that `check-prereqs` reports from: everything the SSH
//! workflow depends on, read the way Windows shows it and changed nowhere. Each part has its
//! own `try`, so one unreadable fact (an unresolvable SID in Administrators, a missing
//! service) does not hide the others.

use super::quote::ps_text;
use super::setup::{CAPABILITY, FIREWALL_RULE, SERVICING_POLICY, WSUS_POLICY};

/// The `inspect` block; `user` (may be empty) is the account whose access to check.
pub(crate) fn block(user: &str) -> String {
    format!(
        r#"$AzsshUser = {user}
$i = [ordered]@{{ os_build = [Environment]::OSVersion.Version.Build }}
try {{
    if ($i.os_build -ge 17763) {{ $i.capability = [string](Get-WindowsCapability -Online -Name '{CAPABILITY}').State }}
}} catch {{ $i.capability_error = Limit $_.Exception.Message }}
try {{
    $wu = Get-ItemProperty -Path '{WSUS_POLICY}' -ErrorAction SilentlyContinue
    $i.wsus = [bool]($wu -and [string]$wu.UseWUServer -eq '1')
    $sv = Get-ItemProperty -Path '{SERVICING_POLICY}' -ErrorAction SilentlyContinue
    $i.repair_from_windows_update = [bool]($sv -and [string]$sv.RepairContentServerSource -eq '2')
}} catch {{ }}
try {{
    $svc = Get-Service -Name sshd -ErrorAction Stop
    $i.sshd = [string]$svc.Status
    $i.startup = [string]$svc.StartType
    $q = @(sc.exe query sshd) -join ' '
    if ($q -match 'WIN32_EXIT_CODE\s+:\s+(\d+)') {{ $i.sshd_exit_code = [int]$Matches[1] }}
}} catch {{ $i.sshd = 'NotInstalled' }}
try {{
    $cfg = Join-Path $env:ProgramData 'ssh\sshd_config'
    $port = 22
    $i.admin_match_block = $true
    $i.allow_groups = @()
    $i.allow_users = @()
    if (Test-Path -LiteralPath $cfg) {{
        $i.admin_match_block = $false
        $global = $true
        foreach ($line in [IO.File]::ReadAllLines($cfg)) {{
            if ($line -match '^\s*Match\s+Group\s+administrators') {{ $i.admin_match_block = $true }}
            if ($line -match '^\s*Match\s') {{ $global = $false }}
            if ($global -and $line -match '^\s*Port\s+(\d+)') {{ $port = [int]$Matches[1] }}
            if ($global -and $line -match '^\s*AllowGroups\s+(.+)$') {{ $i.allow_groups += @([regex]::Matches($Matches[1], '"[^"]+"|\S+') | ForEach-Object {{ $_.Value.Trim('"') }}) }}
            if ($global -and $line -match '^\s*AllowUsers\s+(.+)$') {{ $i.allow_users += @($Matches[1] -split '\s+') }}
        }}
    }}
    $i.port = $port
}} catch {{ $i.sshd_config_error = Limit $_.Exception.Message }}
try {{
    $category = [string]@(Get-NetConnectionProfile)[0].NetworkCategory
    if ($category -eq 'DomainAuthenticated') {{ $category = 'Domain' }}
    $i.network_category = $category
    $fw = Get-NetFirewallRule -Name '{FIREWALL_RULE}' -ErrorAction SilentlyContinue
    $i.firewall_rule = [bool]$fw
    if ($fw) {{
        $i.firewall_enabled = [string]$fw.Enabled -eq 'True'
        $i.firewall_profile = [string]$fw.Profile
    }}
    $covered = $i.firewall_enabled -and $port -eq 22 -and (([string]$fw.Profile -eq 'Any') -or (@(([string]$fw.Profile) -split ',\s*') -contains $category))
    $own = Get-NetFirewallRule -Name ('azssh-sshd-' + $port) -ErrorAction SilentlyContinue
    $i.firewall_admits = [bool]($covered -or ($own -and [string]$own.Enabled -eq 'True'))
}} catch {{ $i.firewall_error = Limit $_.Exception.Message }}
try {{
    $null = Get-LocalGroupMember -SID 'S-1-5-32-544' -ErrorAction Stop
    $i.administrators_listable = $true
}} catch {{ $i.administrators_listable = $false }}
if ($AzsshUser -ne '' -and ($i.allow_groups.Count -gt 0 -or $i.allow_users.Count -gt 0)) {{
    try {{
        $sid = (Get-LocalUser -Name $AzsshUser -ErrorAction Stop).SID.Value
        $ok = $i.allow_users.Count -eq 0 -or @($i.allow_users | Where-Object {{ $AzsshUser -like $_ }}).Count -gt 0
        if ($ok -and $i.allow_groups.Count -gt 0) {{
            $ok = $false
            foreach ($g in $i.allow_groups) {{
                try {{ if (@(Get-LocalGroupMember -Group $g -ErrorAction Stop | Where-Object {{ $_.SID.Value -eq $sid }}).Count -gt 0) {{ $ok = $true }} }} catch {{ }}
            }}
        }}
        $i.user_allowed = $ok
    }} catch {{ $i.user_error = Limit $_.Exception.Message }}
}}
try {{
    $i.default_shell = [string](Get-ItemProperty -Path 'HKLM:\SOFTWARE\OpenSSH' -ErrorAction SilentlyContinue).DefaultShell
}} catch {{ }}
try {{
    $disk = Get-CimInstance -ClassName Win32_LogicalDisk -Filter "DeviceID='C:'"
    $i.disk_free_mb = [int64]([int64]$disk.FreeSpace / 1048576)
}} catch {{ }}
$r.inspect = $i"#,
        user = ps_text(user),
    )
}
