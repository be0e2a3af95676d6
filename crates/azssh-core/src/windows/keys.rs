//! Reading and editing the authorized_keys files of a Windows guest in one RunCommand: list
//! every key (type, SHA256 fingerprint, comment, line) with the file's encoding and ACL, remove
//! keys by fingerprint, add keys (with an expiry date, or exclusively), drop expired keys.
//!
//! Fingerprints are computed on the guest as `ssh-keygen -lf` prints them: SHA-256 over the
//! base64-decoded key blob, base64 without padding. Reading the keys back to compute them here
//! would not fit: RunCommand keeps only the last 4096 bytes of output and an RSA-4096 line alone
//! is 750 bytes.
//!
//! An expiry is a word of the key's comment, `azssh-expires=YYYY-MM-DD`: sshd ignores comments,
//! so the key keeps working until `expire_keys` removes it (the day after that date, UTC).
//!
//! A removal keeps the file's bytes as they were otherwise: its encoding (a UTF-16 or BOM file
//! stays one; sshd ignores such files anyway and `repair_ssh` re-encodes them), its line endings
//! and its ACL (overwriting an existing file's content does not change its DACL). Adding a key
//! writes the file as `copy_key` does: UTF-8 without BOM, the ACL set by SID.

use serde::{Deserialize, Serialize};

use super::authorized_keys::{ADMINISTRATORS_SID, KeyTarget, NO_PROFILE, SYSTEM_SID};
use super::combined::{PROLOGUE, frame, prologue};
use super::error::WindowsError;
use super::quote::ps_quote;

/// The comment word that carries a key's expiry date.
pub const EXPIRES_TAG: &str = "azssh-expires=";

/// Block name of the key-file step.
pub const KEY_FILES: &str = "key-files";

/// A fingerprint as `ssh-keygen -l` prints it: `SHA256:` and 43 base64 characters.
pub fn parse_fingerprint(text: &str) -> Option<String> {
    let body = text.trim().strip_prefix("SHA256:")?;
    let ok = body.len() == 43
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    ok.then(|| format!("SHA256:{body}"))
}

/// A calendar date `YYYY-MM-DD` (the only form an expiry takes), checked for a real day.
pub fn parse_date(text: &str) -> Option<String> {
    let t = text.trim();
    let date =
        time::Date::parse(t, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    (t.len() == 10).then(|| date.to_string())
}

/// Which files a key-file script reads or edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    /// `administrators_authorized_keys` and every profile's `.ssh\authorized_keys`.
    All,
    /// The file sshd reads for this target (decided on the guest).
    Target(KeyTarget),
}

/// What to do to the key files (an empty edit only lists them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyEdit {
    /// Key lines to add (already re-serialised, expiry word included).
    pub add: Vec<String>,
    /// Fingerprints to remove.
    pub remove: Vec<String>,
    /// Remove keys whose expiry date is before this date (`YYYY-MM-DD`).
    pub expired_before: Option<String>,
    /// Leave exactly the added keys in the target file.
    pub exclusive: bool,
    /// The caller's own keys: an edit that leaves a file which held one of them without any is
    /// refused (without them: one that leaves a file that had keys empty).
    pub protect: Vec<String>,
    /// Do it anyway.
    pub force: bool,
    /// Report what would change, write nothing.
    pub dry_run: bool,
}

impl KeyEdit {
    fn writes(&self) -> bool {
        !self.add.is_empty()
            || !self.remove.is_empty()
            || self.expired_before.is_some()
            || self.exclusive
    }
}

fn ps_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| ps_quote(s)).collect();
    format!("@({})", quoted.join(", "))
}

fn ps_bool(b: bool) -> &'static str {
    if b { "$true" } else { "$false" }
}

/// The key-file step's PowerShell. Every parameter is a single-quoted literal on the first
/// lines; fingerprints, dates and key lines were validated to hold only inert characters.
pub(crate) fn block(scope: &KeyScope, edit: &KeyEdit) -> String {
    let (all, user) = match scope {
        KeyScope::All => (true, String::new()),
        KeyScope::Target(KeyTarget::Administrators) => (false, String::new()),
        KeyScope::Target(KeyTarget::User(u)) => (false, u.as_str().to_string()),
    };
    format!(
        r#"$AzsshAll = {all}
$AzsshUser = {user}
$AzsshAdd = {add}
$AzsshRemove = {remove}
$AzsshExpireBefore = {expire}
$AzsshExclusive = {exclusive}
$AzsshProtect = {protect}
$AzsshForce = {force}
$AzsshDryRun = {dry_run}
$k = [ordered]@{{ files = @(); removed = @(); added = @(); written = @() }}
$KeyRegex = '^(?:(.*?)\s+)?((?:sk-)?(?:ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521)(?:@openssh\.com)?)\s+([A-Za-z0-9+/]+={{0,3}})(?:\s+(.*))?$'
function KeyFp([string]$b64) {{
    $sha = [Security.Cryptography.SHA256]::Create()
    'SHA256:' + [Convert]::ToBase64String($sha.ComputeHash([Convert]::FromBase64String($b64))).TrimEnd('=')
}}
function ParseKey([string]$text) {{
    $t = $text.Trim()
    if ($t -eq '' -or $t.StartsWith('#')) {{ return $null }}
    if (-not ($t -match $KeyRegex)) {{ return [ordered]@{{ invalid = $true }} }}
    $e = [ordered]@{{ type = $Matches[2]; fingerprint = ''; comment = ''; options = [bool]$Matches[1] }}
    $b64 = $Matches[3]
    if ($Matches[4]) {{ $e.comment = $Matches[4].Trim() }}
    if ($e.comment.Length -gt 64) {{ $e.comment = $e.comment.Substring(0, 64) }}
    try {{ $e.fingerprint = KeyFp $b64 }} catch {{ return [ordered]@{{ invalid = $true }} }}
    if ($e.comment -match 'azssh-expires=(\d{{4}}-\d{{2}}-\d{{2}})') {{ $e.expires = $Matches[1] }}
    $e
}}
function ReadKeyFile([string]$path) {{
    $bytes = [IO.File]::ReadAllBytes($path)
    $enc = 'utf-8'
    if ($bytes.Length -ge 3 -and $bytes[0] -eq 0xEF -and $bytes[1] -eq 0xBB -and $bytes[2] -eq 0xBF) {{ $enc = 'utf-8-bom' }}
    elseif ($bytes.Length -ge 2 -and $bytes[0] -eq 0xFF -and $bytes[1] -eq 0xFE) {{ $enc = 'utf-16le' }}
    elseif ($bytes.Length -ge 2 -and $bytes[0] -eq 0xFE -and $bytes[1] -eq 0xFF) {{ $enc = 'utf-16be' }}
    $text = [IO.File]::ReadAllText($path)
    $nl = "`n"
    if ($text.Contains("`r`n")) {{ $nl = "`r`n" }}
    [ordered]@{{ enc = $enc; text = $text; nl = $nl }}
}}
function AclOf([string]$path) {{
    $acl = Get-Acl -LiteralPath $path
    [ordered]@{{
        inherited = -not $acl.AreAccessRulesProtected
        sids = @($acl.Access | ForEach-Object {{ $_.IdentityReference.Translate([Security.Principal.SecurityIdentifier]).Value }} | Sort-Object -Unique)
    }}
}}
try {{
    $targets = @()
    $adminPath = Join-Path $env:ProgramData 'ssh\administrators_authorized_keys'
    if ($AzsshAll) {{
        $targets += [ordered]@{{ path = $adminPath; owner = 'administrators'; sid = '{ADMINISTRATORS_SID}' }}
        foreach ($p in @(Get-CimInstance -ClassName Win32_UserProfile | Where-Object {{ -not $_.Special }})) {{
            $targets += [ordered]@{{ path = (Join-Path $p.LocalPath '.ssh\authorized_keys'); owner = (Split-Path -Leaf $p.LocalPath); sid = $p.SID }}
        }}
    }} else {{
        $admin = $AzsshUser -eq ''
        if (-not $admin) {{
            $admin = [bool](Get-LocalGroupMember -SID '{ADMINISTRATORS_SID}' | Where-Object {{ ($_.Name -split '\\')[-1] -eq $AzsshUser }})
        }}
        if ($admin) {{
            $targets += [ordered]@{{ path = $adminPath; owner = 'administrators'; sid = '{ADMINISTRATORS_SID}' }}
        }} else {{
            $sid = (Get-LocalUser -Name $AzsshUser).SID.Value
            $profileDir = @(Get-CimInstance -ClassName Win32_UserProfile | Where-Object {{ $_.SID -eq $sid }})[0].LocalPath
            if (-not $profileDir) {{ throw ('user ' + $AzsshUser + {no_profile}) }}
            $targets += [ordered]@{{ path = (Join-Path $profileDir '.ssh\authorized_keys'); owner = $AzsshUser; sid = $sid }}
        }}
    }}
    $addFps = @()
    $addLines = @{{}}
    foreach ($line in $AzsshAdd) {{
        $pk = ParseKey $line
        $addFps += $pk.fingerprint
        $addLines[$pk.fingerprint] = $line
    }}
    $plans = @()
    foreach ($t in $targets) {{
        $exists = Test-Path -LiteralPath $t.path
        $isTarget = -not $AzsshAll
        if (-not $exists -and -not ($isTarget -and $addFps.Count -gt 0)) {{ continue }}
        $f = [ordered]@{{ enc = 'utf-8'; text = ''; nl = "`r`n" }}
        if ($exists) {{ $f = ReadKeyFile $t.path }}
        $lines = @($f.text -split "`r?`n")
        if ($lines.Count -gt 0 -and $lines[-1] -eq '') {{ $lines = @($lines | Select-Object -First ($lines.Count - 1)) }}
        $keep = @()
        $before = @()
        $after = @()
        $present = @()
        $n = 0
        foreach ($line in $lines) {{
            $n++
            $pk = ParseKey $line
            if ($pk -eq $null -or $pk.invalid) {{ $keep += $line; continue }}
            $before += $pk.fingerprint
            $drop = $AzsshRemove -ccontains $pk.fingerprint
            if ($AzsshExpireBefore -ne '' -and $pk.expires -and $pk.expires -lt $AzsshExpireBefore) {{ $drop = $true }}
            if ($isTarget -and $AzsshExclusive -and -not ($addFps -ccontains $pk.fingerprint)) {{ $drop = $true }}
            if ($drop) {{
                $k.removed += [ordered]@{{ path = $t.path; line = $n; fingerprint = $pk.fingerprint; comment = $pk.comment }}
                continue
            }}
            if ($isTarget -and $addFps -ccontains $pk.fingerprint) {{
                $present += $pk.fingerprint
                $want = ParseKey $addLines[$pk.fingerprint]
                if ([string]$want.expires -ne [string]$pk.expires) {{
                    $line = $addLines[$pk.fingerprint]
                    $k.added += [ordered]@{{ path = $t.path; fingerprint = $pk.fingerprint; replaced = $true }}
                }}
            }}
            $after += $pk.fingerprint
            $keep += $line
        }}
        if ($isTarget) {{
            foreach ($fp in $addFps) {{
                if (-not ($present -ccontains $fp)) {{
                    $keep += $addLines[$fp]
                    $after += $fp
                    $k.added += [ordered]@{{ path = $t.path; fingerprint = $fp; replaced = $false }}
                }}
            }}
        }}
        if (-not $AzsshForce -and $before.Count -gt 0) {{
            if ($AzsshProtect.Count -gt 0) {{
                $had = @($before | Where-Object {{ $AzsshProtect -ccontains $_ }}).Count -gt 0
                $has = @($after | Where-Object {{ $AzsshProtect -ccontains $_ }}).Count -gt 0
                if ($had -and -not $has) {{ throw ('refused: ' + $t.path + ' would keep none of your keys') }}
            }} elseif ($after.Count -eq 0) {{
                throw ('refused: ' + $t.path + ' would be left without any key')
            }}
        }}
        $changed = ($k.removed | Where-Object {{ $_.path -eq $t.path }}) -or ($k.added | Where-Object {{ $_.path -eq $t.path }})
        $plans += [ordered]@{{ t = $t; f = $f; keep = $keep; changed = [bool]$changed; isTarget = $isTarget }}
    }}
    foreach ($p in $plans) {{
        if ($p.changed -and -not $AzsshDryRun) {{
            $text = ''
            if ($p.keep.Count -gt 0) {{ $text = ($p.keep -join $p.f.nl) + $p.f.nl }}
            $added = @($k.added | Where-Object {{ $_.path -eq $p.t.path }}).Count -gt 0
            if ($added) {{
                $dir = Split-Path -Parent $p.t.path
                if (-not (Test-Path -LiteralPath $dir)) {{ $null = New-Item -ItemType Directory -Path $dir -Force }}
                [IO.File]::WriteAllText($p.t.path, $text, (New-Object Text.UTF8Encoding $false))
                $owner = '*' + $p.t.sid + ':F'
                $null = icacls.exe $p.t.path /inheritance:r /grant $owner /grant '*{SYSTEM_SID}:F'
                if ($LASTEXITCODE -ne 0) {{ throw "icacls failed with exit code $LASTEXITCODE" }}
            }} else {{
                $enc = New-Object Text.UTF8Encoding $false
                if ($p.f.enc -eq 'utf-8-bom') {{ $enc = New-Object Text.UTF8Encoding $true }}
                elseif ($p.f.enc -eq 'utf-16le') {{ $enc = [Text.Encoding]::Unicode }}
                elseif ($p.f.enc -eq 'utf-16be') {{ $enc = [Text.Encoding]::BigEndianUnicode }}
                [IO.File]::WriteAllText($p.t.path, $text, $enc)
            }}
            $k.written += $p.t.path
        }}
    }}
    foreach ($p in $plans) {{
        $t = $p.t
        $out = [ordered]@{{ path = $t.path; owner = $t.owner; sid = $t.sid; keys = @(); invalid = @() }}
        if (Test-Path -LiteralPath $t.path) {{
            $f = ReadKeyFile $t.path
            $out.encoding = $f.enc
            $acl = AclOf $t.path
            $out.inherited = $acl.inherited
            $out.sids = $acl.sids
            $n = 0
            foreach ($line in @($f.text -split "`r?`n")) {{
                $n++
                $pk = ParseKey $line
                if ($pk -eq $null) {{ continue }}
                if ($pk.invalid) {{ $out.invalid += $n; continue }}
                $pk.line = $n
                $out.keys += $pk
            }}
        }}
        $k.files += $out
    }}
}} catch {{
    $m = Limit $_.Exception.Message
    if ($m.StartsWith('refused: ')) {{ $k.refused = $m.Substring(9) }} else {{ $k.error = $m }}
}}
$r.keys = $k"#,
        all = ps_bool(all),
        user = ps_quote(&user),
        add = ps_array(&edit.add),
        remove = ps_array(&edit.remove),
        expire = ps_quote(edit.expired_before.as_deref().unwrap_or("")),
        exclusive = ps_bool(edit.exclusive),
        protect = ps_array(&edit.protect),
        force = ps_bool(edit.force),
        dry_run = ps_bool(edit.dry_run || !edit.writes()),
        no_profile = ps_quote(NO_PROFILE),
    )
}

/// The whole RunCommand script for a key-file step. The result is nested deeper than the
/// workflow's other results (files → keys), hence its own epilogue's `-Depth`; a result longer
/// than RunCommand's output tail comes back in pages (`keys_paging`).
pub fn key_files_script(scope: &KeyScope, edit: &KeyEdit) -> String {
    let mut script = frame(PROLOGUE, &prologue());
    script.push_str(&frame(KEY_FILES, &block(scope, edit)));
    script.push_str(&frame(
        super::combined::EPILOGUE,
        &super::keys_paging::paged_epilogue(&super::keys_paging::new_page_id(), 8),
    ));
    script
}

/// One key of a file, as the guest read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub line: u32,
    #[serde(rename = "type")]
    pub key_type: String,
    pub fingerprint: String,
    #[serde(default)]
    pub comment: String,
    /// The `azssh-expires=` date, if the comment has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The line starts with options (`from=`, `command=`...).
    #[serde(default)]
    pub options: bool,
}

/// One authorized_keys file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyFile {
    pub path: String,
    /// `administrators`, or the profile's user.
    pub owner: String,
    #[serde(default)]
    pub sid: Option<String>,
    /// `utf-8`, `utf-8-bom`, `utf-16le`, `utf-16be`.
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub inherited: Option<bool>,
    #[serde(default)]
    pub sids: Vec<String>,
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    /// Lines that are neither blank, comments nor keys.
    #[serde(default)]
    pub invalid: Vec<u32>,
}

impl KeyFile {
    /// Whether Windows OpenSSH reads this file at all: UTF-8 (or ASCII) without BOM.
    pub fn encoding_ok(&self) -> bool {
        self.encoding.as_deref().is_none_or(|e| e == "utf-8")
    }

    /// The ACL as sshd's StrictModes judges it: `ok`, or why sshd would ignore the file. The
    /// admin file must not inherit and only Administrators and SYSTEM may hold access; a user's
    /// file may also grant the user.
    pub fn acl_verdict(&self) -> String {
        let admin = self.owner == "administrators";
        if admin && self.inherited != Some(false) {
            return "inherits permissions".into();
        }
        let allowed = |sid: &String| {
            sid == ADMINISTRATORS_SID
                || sid == SYSTEM_SID
                || (!admin && self.sid.as_ref() == Some(sid))
        };
        let others: Vec<&String> = self.sids.iter().filter(|s| !allowed(s)).collect();
        if others.is_empty() {
            "ok".into()
        } else {
            format!(
                "grants {}",
                others
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// A key a script removed (or would remove, in a dry run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemovedKey {
    pub path: String,
    pub line: u32,
    pub fingerprint: String,
    #[serde(default)]
    pub comment: String,
}

/// A key a script added, or whose line it replaced (a new expiry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddedKey {
    pub path: String,
    pub fingerprint: String,
    #[serde(default)]
    pub replaced: bool,
}

/// The key-file step's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyFilesResult {
    #[serde(default)]
    pub files: Vec<KeyFile>,
    #[serde(default)]
    pub removed: Vec<RemovedKey>,
    #[serde(default)]
    pub added: Vec<AddedKey>,
    #[serde(default)]
    pub written: Vec<String>,
    pub refused: Option<String>,
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    keys: Option<KeyFilesResult>,
}

impl KeyFilesResult {
    /// Reads the result line of a [`key_files_script`] run.
    pub fn parse(stdout: &str, stderr: &str) -> Result<Self, WindowsError> {
        let envelope: Envelope = super::result::parse_line(stdout, stderr)?;
        let result = envelope
            .keys
            .ok_or(WindowsError::MissingStep { step: KEY_FILES })?;
        if let Some(message) = result.error.clone() {
            return Err(WindowsError::StepFailed {
                step: "key files",
                message,
            });
        }
        if let Some(reason) = result.refused.clone() {
            return Err(WindowsError::LastKey { reason });
        }
        Ok(result)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::windows::UserName;

    const FP: &str = "SHA256:BwIGwGuV2ZpX38Yf8LB1oKChK/dP9nSVmJB1J+jdQ2c";

    fn every_script() -> Vec<String> {
        let bob = KeyTarget::User(UserName::parse("bob").unwrap());
        let edit = KeyEdit {
            add: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me azssh-expires=2027-03-01".into()],
            remove: vec![FP.into()],
            expired_before: Some("2026-11-29".into()),
            exclusive: true,
            protect: vec![FP.into()],
            force: false,
            dry_run: false,
        };
        vec![
            key_files_script(&KeyScope::All, &KeyEdit::default()),
            key_files_script(&KeyScope::Target(bob), &edit),
            key_files_script(&KeyScope::Target(KeyTarget::Administrators), &edit),
        ]
    }

    #[test]
    fn key_file_scripts_parse_as_windows_powershell_5_1_and_are_ascii() {
        for script in every_script() {
            assert!(
                pwsh::check_ps51(&script).is_empty(),
                "{:?}",
                pwsh::check_ps51(&script)
            );
            assert!(script.is_ascii());
            for bad in ["\\n", "\\r", "\\t"] {
                assert!(!script.contains(bad), "{bad}");
            }
        }
    }

    #[test]
    fn fingerprints_and_dates_are_checked_before_they_reach_a_script() {
        assert_eq!(parse_fingerprint(&format!(" {FP} ")).as_deref(), Some(FP));
        for bad in [
            "SHA256:abc",
            "MD5:aa",
            "SHA256:'; calc; '",
            &format!("{FP}x"),
        ] {
            assert!(parse_fingerprint(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_date("2027-03-01").as_deref(), Some("2027-03-01"));
        for bad in [
            "2027-02-30",
            "27-03-01",
            "2027-3-1",
            "2027-03-01'",
            "tomorrow",
        ] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn acl_verdict_follows_strict_modes() {
        let mut f = KeyFile {
            path: "x".into(),
            owner: "administrators".into(),
            sid: Some(ADMINISTRATORS_SID.into()),
            encoding: Some("utf-8".into()),
            inherited: Some(false),
            sids: vec![ADMINISTRATORS_SID.into(), SYSTEM_SID.into()],
            keys: vec![],
            invalid: vec![],
        };
        assert_eq!(f.acl_verdict(), "ok");
        f.sids.push("S-1-5-11".into());
        assert_eq!(f.acl_verdict(), "grants S-1-5-11");
        f.inherited = Some(true);
        assert_eq!(f.acl_verdict(), "inherits permissions");
        f.owner = "bob".into();
        f.sid = Some("S-1-5-21-1-2-3-1001".into());
        f.sids = vec![SYSTEM_SID.into(), "S-1-5-21-1-2-3-1001".into()];
        assert_eq!(f.acl_verdict(), "ok");
    }
}
