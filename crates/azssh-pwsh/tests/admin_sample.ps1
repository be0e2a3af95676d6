$ErrorActionPreference = 'Stop'
New-Item -ItemType Directory -Path "$env:ProgramData\ssh" -Force | Out-Null
Set-Content -Path "$env:ProgramData\ssh\sshd_config" -Value @('# comment', 'Port 2222', '', 'PasswordAuthentication no')
$cfg = Get-Content "$env:ProgramData\ssh\sshd_config" -Raw
if ($cfg -match '(?m)^Port\s+(\d+)') { "port $($Matches[1])" }
$lines = Get-Content "$env:ProgramData\ssh\sshd_config" | Where-Object { $_ -notmatch '^\s*#' -and $_.Trim() }
$obj = [pscustomobject]@{
    Name  = 'x'
    Count = $lines.Count
    Items = $lines
}
$obj | ConvertTo-Json
$h = @{}
foreach ($l in $lines) {
    $k, $v = $l -split '\s+', 2
    $h[$k] = $v
}
$h.GetEnumerator() | Sort-Object Name | ForEach-Object { '{0}={1}' -f $_.Key, $_.Value }
$n = 0
while ($true) { $n++; if ($n -ge 3) { break } }
"n=$n"
$list = @()
1..3 | ForEach-Object { $list += $_ * 10 }
$list -join ','
function Get-Thing {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)][string]$Name,
        [int]$Times = 2
    )
    process {
        1..$Times | ForEach-Object { "$Name$_" }
    }
}
Get-Thing -Name a
(Get-Thing b -Times 3).Count
$s = 'OpenSSH_for_Windows_8.1p1'
$ver = [version]($s -replace '^OpenSSH_for_Windows_(\d+\.\d+).*$', '$1')
$ver.Major
[string]::Join(',', @('a','b'))
$d = Get-Date
$d.GetType().Name
"{0:N0}" -f 1234567
[int]$typed = '12'; $typed + 1
$arr = @(
  'one'
  'two'
)
$arr.Count
