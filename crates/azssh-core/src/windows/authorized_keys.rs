//! Installing a public key where Windows OpenSSH looks for it.
//!
//! Windows OpenSSH's default `sshd_config` sends members of Administrators to
//! `C:\ProgramData\ssh\administrators_authorized_keys` (their own `~\.ssh\authorized_keys` is
//! ignored) and everyone else to `<profile>\.ssh\authorized_keys` (normally
//! `C:\Users\<user>`). sshd reads the file as
//! UTF-8/ASCII, so Windows PowerShell 5.1's `>>` (UTF-16LE) or `Add-Content -Encoding UTF8`
//! (adds a BOM) produce a file that silently authorizes nobody; and StrictModes rejects the
//! admin file unless only Administrators and SYSTEM hold access. Hence: append through .NET with
//! a BOM-less UTF-8 encoding, repair a file that already has a BOM or UTF-16, and set the ACL by
//! SID (`*S-1-5-32-544`, `*S-1-5-18`) because group names are localized ("Administratoren").

use serde::{Deserialize, Serialize};

use crate::ssh::keys::SshPublicKey;

use super::error::WindowsError;
use super::quote::{ps_quote, ps_text};

/// SID of the built-in Administrators group.
pub const ADMINISTRATORS_SID: &str = "S-1-5-32-544";
/// SID of the local SYSTEM account.
pub const SYSTEM_SID: &str = "S-1-5-18";
/// The end of the key step's error for a user who never signed in. Creating `C:\Users\<user>`
/// ourselves would be wrong: Windows would then make the real profile `C:\Users\<user>.<VM>`
/// at first sign-in and sshd would look there.
pub const NO_PROFILE: &str = " has no profile on this VM yet; sign in once (for example over RDP) or install the key for an administrator";

/// Where sshd looks for administrators' keys.
pub const ADMIN_KEYS_PATH: &str = r"C:\ProgramData\ssh\administrators_authorized_keys";

/// A local Windows account name, checked against the SAM rules: 1–20 characters, none of
/// `" / \ [ ] : ; | = , + * ? < > @`, not only dots and spaces. We are stricter still (letters,
/// digits, space, `.`, `_`, `-`) because the name travels into a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub fn parse(name: &str) -> Result<Self, WindowsError> {
        let invalid = |reason: &str| WindowsError::InvalidUserName {
            name: name.chars().take(40).collect(),
            reason: reason.into(),
        };
        let count = name.chars().count();
        if count == 0 || count > 20 {
            return Err(invalid("it must be 1 to 20 characters long"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_alphanumeric() || " ._-".contains(*c)))
        {
            return Err(invalid(&format!("`{}` is not allowed", c.escape_default())));
        }
        if name.chars().all(|c| c == '.' || c == ' ') {
            return Err(invalid("it cannot be only dots and spaces"));
        }
        if name.starts_with(' ') || name.ends_with(' ') || name.ends_with('.') {
            return Err(invalid(
                "it cannot start or end with a space or end with a dot",
            ));
        }
        Ok(UserName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose key file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTarget {
    /// `administrators_authorized_keys`, whatever user will log in.
    Administrators,
    /// The file sshd reads for this user: the admin file when the user is in Administrators
    /// (decided on the guest), else the user's own `authorized_keys`.
    User(UserName),
}

/// Options of the key step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyOptions {
    /// When sshd_config's `AllowGroups` keeps the user out, add them to the first group it
    /// names other than administrators (`--fix-sshd-config`); without it the step refuses
    /// and says so.
    pub fix_sshd_config: bool,
}

/// The key step's PowerShell, framed as the block `key`. The two parameters are the only
/// user-derived text and appear once each, single-quoted (a non-ASCII user name base64-encoded,
/// [`ps_text`]); the key has been re-serialised so it holds only `[A-Za-z0-9+/=@._ -]` anyway.
///
/// Where the key goes is sshd's decision, so the step asks sshd: `sshd -T -C user=...` prints
/// the effective `AuthorizedKeysFile` for that user after evaluating `Match Group
/// administrators` the way the login will (by the user's token groups: nested admins count,
/// and no member name is resolved, so an unresolvable SID in Administrators does not matter —
/// `Get-LocalGroupMember` throws on those in 5.1, PowerShell/PowerShell#2996). Only when sshd
/// cannot answer (not started yet) does it fall back to Administrators' direct members,
/// compared by SID. `AllowGroups`/`AllowUsers` from the same output are checked and reported.
pub(crate) fn block(key: &SshPublicKey, target: &KeyTarget, opts: KeyOptions) -> String {
    let user = match target {
        KeyTarget::Administrators => String::new(),
        KeyTarget::User(name) => name.as_str().to_string(),
    };
    let fix = if opts.fix_sshd_config {
        "$true"
    } else {
        "$false"
    };
    format!(
        r#"$AzsshUser = {user}
$AzsshKey = {key}
$k = [ordered]@{{ added = $false; repaired = $false; allow_groups = @(); allow_users = @() }}
try {{
    $admin = $AzsshUser -eq ''
    $path = $null
    $sid = $null
    if (-not $admin) {{
        $sid = (Get-LocalUser -Name $AzsshUser).SID.Value
        $profileDir = @(Get-CimInstance -ClassName Win32_UserProfile | Where-Object {{ $_.SID -eq $sid }})[0].LocalPath
        $t = $null
        try {{
            $exe = (Get-CimInstance -ClassName Win32_Service -Filter "Name='sshd'").PathName.Trim('"')
            $t = @(& $exe -T -C ('user=' + $AzsshUser + ',host=azssh,addr=127.0.0.1') 2>$null)
            if ($LASTEXITCODE -ne 0) {{ $t = $null }}
        }} catch {{ $t = $null }}
        if ($t) {{
            $k.sshd_t = $true
            $akf = [string]@($t | Where-Object {{ $_ -like 'authorizedkeysfile *' }})[0]
            $first = @(($akf -replace '^authorizedkeysfile\s+', '') -split '\s+')[0]
            $k.allow_groups = @($t | Where-Object {{ $_ -like 'allowgroups *' }} | ForEach-Object {{ $_.Substring(12) }})
            $k.allow_users = @($t | Where-Object {{ $_ -like 'allowusers *' }} | ForEach-Object {{ $_.Substring(11) }})
            $file = $first.Replace('__PROGRAMDATA__', $env:ProgramData).Replace('%u', $AzsshUser).Replace('/', '\')
            if ($file -like '*%h*') {{ $file = $file.Replace('%h', [string]$profileDir) }}
            if ($file -notmatch '^[A-Za-z]:') {{
                if (-not $profileDir) {{ throw ('user ' + $AzsshUser + {no_profile}) }}
                $file = Join-Path $profileDir $file
            }}
            $path = $file
            $admin = $path -like ($env:ProgramData + '\*')
        }} else {{
            $admin = @(Get-LocalGroupMember -SID '{ADMINISTRATORS_SID}' | Where-Object {{ $_.SID.Value -eq $sid }}).Count -gt 0
        }}
        if ($k.allow_users.Count -gt 0) {{
            $k.allowed = @($k.allow_users | Where-Object {{ $AzsshUser -like $_ }}).Count -gt 0
        }}
        if ($k.allow_groups.Count -gt 0 -and $k.allowed -ne $false) {{
            $in = @()
            foreach ($g in $k.allow_groups) {{
                try {{
                    $m = @(Get-LocalGroupMember -Group $g -ErrorAction Stop | Where-Object {{ $_.SID.Value -eq $sid }})
                    if ($m.Count -gt 0) {{ $in += $g }}
                }} catch {{ $k.groups_unreadable = $true }}
            }}
            if ($in.Count -gt 0) {{ $k.allowed = $true }} elseif (-not $k.groups_unreadable) {{ $k.allowed = $false }}
            if ($k.allowed -eq $false -and {fix}) {{
                $to = @($k.allow_groups | Where-Object {{ $_ -ne 'administrators' }})[0]
                if ($to) {{
                    Add-LocalGroupMember -Group $to -Member $AzsshUser
                    $k.fixed = 'added to group ' + $to
                    $k.allowed = $true
                }}
            }}
        }}
    }}
    if ($admin -and -not $path) {{
        $path = Join-Path $env:ProgramData 'ssh\administrators_authorized_keys'
    }}
    if (-not $path) {{
        if (-not $profileDir) {{ throw ('user ' + $AzsshUser + {no_profile}) }}
        $path = Join-Path $profileDir '.ssh\authorized_keys'
    }}
    if ($admin) {{ $owner = '*{ADMINISTRATORS_SID}:F' }} else {{ $owner = '*' + $sid + ':F' }}
    $dir = Split-Path -Parent $path
    if (-not (Test-Path -LiteralPath $dir)) {{ $null = New-Item -ItemType Directory -Path $dir -Force }}
    $enc = New-Object Text.UTF8Encoding $false
    $text = ''
    if (Test-Path -LiteralPath $path) {{
        $bytes = [IO.File]::ReadAllBytes($path)
        $text = [IO.File]::ReadAllText($path)
        if ($bytes.Length -gt 0 -and $bytes[0] -ge 0xEF) {{
            [IO.File]::WriteAllText($path, $text, $enc)
            $k.repaired = $true
        }}
    }}
    $body = ($AzsshKey -split ' ')[1]
    if (@($text -split "`r?`n" | Where-Object {{ @($_ -split '\s+') -ccontains $body }}).Count -eq 0) {{
        $sep = ''
        if ($text.Length -gt 0 -and -not $text.EndsWith("`n")) {{ $sep = "`r`n" }}
        [IO.File]::AppendAllText($path, $sep + $AzsshKey + "`r`n", $enc)
        $k.added = $true
    }}
    $null = icacls.exe $path /inheritance:r /grant $owner /grant '*{SYSTEM_SID}:F'
    if ($LASTEXITCODE -ne 0) {{ throw "icacls failed with exit code $LASTEXITCODE" }}
    $check = [IO.File]::ReadAllBytes($path)
    $acl = Get-Acl -LiteralPath $path
    $k.path = $path
    $k.admin = $admin
    $k.bom = $check.Length -gt 0 -and $check[0] -ge 0xEF
    $k.verified = @($enc.GetString($check) -split "`r?`n" | Where-Object {{ @($_ -split '\s+') -ccontains $body }}).Count -ge 1
    $k.inherited = -not $acl.AreAccessRulesProtected
    $k.sids = @($acl.Access | ForEach-Object {{ $_.IdentityReference.Translate([Security.Principal.SecurityIdentifier]).Value }} | Sort-Object -Unique)
}} catch {{
    $k.error = Limit $_.Exception.Message
}}
$r.key = $k"#,
        user = ps_text(&user),
        key = ps_quote(&key.to_line()),
        no_profile = ps_quote(NO_PROFILE),
    )
}

/// The key step's part of the result line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyInstallResult {
    #[serde(default)]
    pub added: bool,
    #[serde(default)]
    pub repaired: bool,
    pub path: Option<String>,
    pub admin: Option<bool>,
    pub bom: Option<bool>,
    pub verified: Option<bool>,
    pub inherited: Option<bool>,
    #[serde(default)]
    pub sids: Vec<String>,
    pub error: Option<String>,
    /// sshd answered `sshd -T` (the key file is sshd's own choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sshd_t: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_users: Vec<String>,
    /// AllowGroups/AllowUsers let the user in (`None`: no such lines, or unreadable groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_unreadable: Option<bool>,
    /// What `fix_sshd_config` changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

/// A verified key install.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInstalled {
    pub path: String,
    /// The key was appended (false: it was already there).
    pub added: bool,
    /// A BOM or UTF-16 file was rewritten as UTF-8 without BOM.
    pub repaired: bool,
    pub admin: bool,
    /// sshd_config's `AllowGroups` and `AllowUsers`, as sshd reported them.
    pub allow_groups: Vec<String>,
    pub allow_users: Vec<String>,
    /// What `fix_sshd_config` changed.
    pub fixed: Option<String>,
}

impl KeyInstallResult {
    /// Checks what the guest read back: the key present, no BOM, inheritance off and only the
    /// expected SIDs on the ACL (sshd's StrictModes would ignore the file otherwise).
    pub fn into_installed(self) -> Result<KeyInstalled, WindowsError> {
        if let Some(message) = self.error {
            if message.contains("There is not enough space on the disk") {
                return Err(WindowsError::DiskFull { message });
            }
            return Err(WindowsError::StepFailed {
                step: "key install",
                message,
            });
        }
        let path = self.path.unwrap_or_default();
        let admin = self.admin.unwrap_or(false);
        let fail = |reason: String| WindowsError::KeyNotVerified {
            path: path.clone(),
            reason,
        };
        if self.verified != Some(true) {
            return Err(fail("the key is not in the file read back".into()));
        }
        if self.bom != Some(false) {
            return Err(fail("the file starts with a byte-order mark".into()));
        }
        if self.inherited != Some(false) {
            return Err(fail("the file still inherits permissions".into()));
        }
        let allowed = |sid: &String| {
            sid == ADMINISTRATORS_SID
                || sid == SYSTEM_SID
                || (!admin && sid.starts_with("S-1-5-21-"))
        };
        if let Some(other) = self.sids.iter().find(|s| !allowed(s)) {
            return Err(fail(format!("`{other}` has access to the file")));
        }
        if self.allowed == Some(false) {
            return Err(WindowsError::UserNotAllowed {
                allow_groups: self.allow_groups.join(", "),
                allow_users: self.allow_users.join(", "),
            });
        }
        Ok(KeyInstalled {
            path,
            added: self.added,
            repaired: self.repaired,
            admin,
            allow_groups: self.allow_groups,
            allow_users: self.allow_users,
            fixed: self.fixed,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me@laptop";

    #[test]
    fn user_names_follow_windows_rules() {
        for ok in [
            "azureuser",
            "Jean-Luc",
            "first.last",
            "adm_1",
            "Ünïcødé",
            "a b",
        ] {
            assert!(UserName::parse(ok).is_ok(), "{ok}");
        }
        let bad = [
            "",
            "x".repeat(21).as_str(),
            "a'b",
            "a\u{2019}b",
            "a`b",
            "$(calc)",
            "a;b",
            "dom\\user",
            "user@dom",
            "a\"b",
            "..",
            "a\nb",
            "a\0b",
            " lead",
            "trail.",
            "a|b",
            "a*b",
        ]
        .map(str::to_string);
        for name in bad {
            assert!(UserName::parse(&name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn key_block_holds_parameters_only_inside_single_quoted_literals() {
        let key = SshPublicKey::parse(KEY).unwrap();
        let target = KeyTarget::User(UserName::parse("Jean-Luc").unwrap());
        let block = block(&key, &target, KeyOptions::default());
        let mut lines = block.lines();
        assert_eq!(lines.next(), Some("$AzsshUser = 'Jean-Luc'"));
        assert_eq!(lines.next(), Some(format!("$AzsshKey = '{KEY}'").as_str()));
        assert_eq!(block.matches("Jean-Luc").count(), 1);
        assert_eq!(block.matches("AAAAC3Nza").count(), 1);
        assert!(!block.contains(">>") && !block.contains("Add-Content"));
    }

    #[test]
    fn non_ascii_user_names_cross_base64_encoded_and_the_script_stays_ascii() {
        let key = SshPublicKey::parse(KEY).unwrap();
        let target = KeyTarget::User(UserName::parse("J\u{f6}rg").unwrap());
        let block = block(&key, &target, KeyOptions::default());
        assert!(block.is_ascii());
        assert_eq!(
            block.lines().next(),
            Some(
                "$AzsshUser = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('SsO2cmc='))"
            )
        );
    }

    #[test]
    fn a_file_with_a_foreign_sid_does_not_verify() {
        let result = KeyInstallResult {
            path: Some(ADMIN_KEYS_PATH.into()),
            admin: Some(true),
            bom: Some(false),
            verified: Some(true),
            inherited: Some(false),
            sids: vec![ADMINISTRATORS_SID.into(), "S-1-5-11".into()],
            ..Default::default()
        };
        assert!(result.clone().into_installed().is_err());
        let good = KeyInstallResult {
            sids: vec![ADMINISTRATORS_SID.into(), SYSTEM_SID.into()],
            ..result
        };
        assert!(good.into_installed().unwrap().admin);
    }

    #[test]
    fn injection_corpus_is_refused_or_inert() {
        use crate::windows::quote::{INJECTION_CORPUS, ps_unquote_prefix};
        let benign = block(
            &SshPublicKey::parse(KEY).unwrap(),
            &KeyTarget::User(UserName::parse("bob").unwrap()),
            KeyOptions::default(),
        );
        for payload in INJECTION_CORPUS {
            // As a user name: refused.
            assert!(
                UserName::parse(payload).is_err() || payload.is_empty(),
                "{payload:?}"
            );
            // As a key comment: sanitised away, the script is the benign one.
            let key = SshPublicKey::parse(&format!("{KEY}{payload}"));
            if let Ok(key) = key {
                let script = block(
                    &key,
                    &KeyTarget::User(UserName::parse("bob").unwrap()),
                    KeyOptions::default(),
                );
                let key_line = script.lines().nth(1).unwrap();
                let (value, rest) =
                    ps_unquote_prefix(key_line.strip_prefix("$AzsshKey = ").unwrap()).unwrap();
                assert_eq!(rest, "");
                assert!(
                    value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+/=@._ -".contains(c))
                );
                let tail = |s: &str| s.lines().skip(2).collect::<Vec<_>>().join("\n");
                assert_eq!(tail(&script), tail(&benign));
            }
            // With an options prefix or on a line of its own before the key: refused.
            assert!(
                SshPublicKey::parse(&format!("{payload} {KEY}")).is_err()
                    || payload.trim().is_empty()
            );
        }
        let long_comment = format!("{KEY}{}", "x".repeat(10_000));
        assert!(SshPublicKey::parse(&long_comment).unwrap().to_line().len() < 200);
    }
}
