//! `GuestScript`: one RunCommand script made of the steps azssh wants (setup, key install,
//! host-key read), so the whole workflow costs one RunCommand: each takes at least ~20 s on
//! Azure and only one runs at a time per VM.
//!
//! Every step is a block framed by `# azssh:begin NAME` / `# azssh:end NAME` comment lines.
//! PowerShell ignores the frames; they let the emulator's guest model recognise exactly the
//! blocks azssh emits (and refuse anything else). Output is one line, `AZSSH-RESULT:{json}`,
//! last, so it survives RunCommand keeping only the last 4096 bytes.

use crate::ssh::keys::SshPublicKey;

use super::authorized_keys::{self, KeyOptions, KeyTarget};
use super::host_keys;
use super::setup::{self, SetupMode, SetupOptions};

/// Marks the one line of a script's output that holds its JSON result.
pub const RESULT_MARKER: &str = "AZSSH-RESULT:";

/// Version of the result line's shape; bump it when fields change meaning.
pub const RESULT_VERSION: u32 = 1;

/// Block names, in the order a script runs them.
pub const PROLOGUE: &str = "prologue";
pub const SETUP: &str = "setup";
pub const SERVICE: &str = "service";
pub const KEY: &str = "key";
pub const HOST_KEYS: &str = "host-keys";
pub const INSPECT: &str = "inspect";
pub const EPILOGUE: &str = "epilogue";

/// Errors stop the step they happen in (each step catches its own), progress bars stay off
/// (they would fill RunCommand's 4 KiB), and `Limit` keeps error messages short.
pub(crate) fn prologue() -> String {
    format!(
        r#"$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Limit([string]$m) {{ if ($m.Length -gt 200) {{ $m.Substring(0, 200) }} else {{ $m }} }}
$r = [ordered]@{{ v = {RESULT_VERSION} }}"#
    )
}

pub(crate) fn epilogue() -> String {
    format!("Write-Output ('{RESULT_MARKER}' + ($r | ConvertTo-Json -Compress -Depth 4))")
}

/// Frames a block so the emulator can find it.
pub(crate) fn frame(name: &str, body: &str) -> String {
    format!("# azssh:begin {name}\n{body}\n# azssh:end {name}\n")
}

/// Builds a guest script from steps; `build()` always yields prologue, steps, epilogue.
#[derive(Debug, Clone, Default)]
pub struct GuestScript {
    setup: Option<SetupMode>,
    setup_options: SetupOptions,
    key: Option<(SshPublicKey, KeyTarget)>,
    key_options: KeyOptions,
    host_keys: bool,
    /// `Some(user)`: the read-only inspection (`user` may be empty).
    inspect: Option<String>,
}

impl GuestScript {
    pub fn new() -> Self {
        Self::default()
    }

    /// Install OpenSSH (capability) if missing, start sshd, make it Automatic, ensure the
    /// firewall rule.
    pub fn setup(mut self) -> Self {
        self.setup = Some(SetupMode::Capability);
        self
    }

    /// Check and repair an existing sshd (from the `WindowsOpenSSH` extension): Automatic,
    /// Running, firewall rule on. Reports in the same `setup` result.
    pub fn ensure_service(mut self) -> Self {
        self.setup = Some(SetupMode::ServiceOnly);
        self
    }

    /// What setup may change beyond the documented install (WSUS policy, sshd's port).
    pub fn setup_options(mut self, opts: SetupOptions) -> Self {
        self.setup_options = opts;
        self
    }

    /// What the key step may change (`fix_sshd_config`).
    pub fn key_options(mut self, opts: KeyOptions) -> Self {
        self.key_options = opts;
        self
    }

    /// Append `key` to the file sshd reads for `target`, repair encoding, set the ACL.
    pub fn install_key(mut self, key: SshPublicKey, target: KeyTarget) -> Self {
        self.key = Some((key, target));
        self
    }

    /// Look, changing nothing, at everything SSH depends on (for `check-prereqs`).
    pub fn inspect(mut self, user: &str) -> Self {
        self.inspect = Some(user.to_string());
        self
    }

    /// Read `ssh_host_*_key.pub`.
    pub fn read_host_keys(mut self) -> Self {
        self.host_keys = true;
        self
    }

    /// The script text, ready for RunCommand's `RunPowerShellScript`.
    pub fn build(&self) -> String {
        let mut script = frame(PROLOGUE, &prologue());
        match self.setup {
            Some(SetupMode::Capability) => script.push_str(&frame(
                SETUP,
                &setup::block(SetupMode::Capability, self.setup_options),
            )),
            Some(SetupMode::ServiceOnly) => script.push_str(&frame(
                SERVICE,
                &setup::block(SetupMode::ServiceOnly, self.setup_options),
            )),
            None => {}
        }
        if let Some((key, target)) = &self.key {
            script.push_str(&frame(
                KEY,
                &authorized_keys::block(key, target, self.key_options),
            ));
        }
        if self.host_keys {
            script.push_str(&frame(HOST_KEYS, &host_keys::block()));
        }
        if let Some(user) = &self.inspect {
            script.push_str(&frame(INSPECT, &super::inspect::block(user)));
        }
        script.push_str(&frame(EPILOGUE, &epilogue()));
        script
    }
}

/// The setup step alone.
pub fn setup_script() -> String {
    GuestScript::new().setup().build()
}

/// The service check alone (after the extension).
pub fn service_script() -> String {
    GuestScript::new().ensure_service().build()
}

/// The key step alone.
pub fn install_key_script(key: &SshPublicKey, target: &KeyTarget) -> String {
    GuestScript::new()
        .install_key(key.clone(), target.clone())
        .build()
}

/// The host-key step alone.
pub fn host_keys_script() -> String {
    GuestScript::new().read_host_keys().build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::windows::authorized_keys::UserName;

    const TEST_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me@laptop";

    #[test]
    fn combined_script_frames_every_step_once_in_order() {
        let key = SshPublicKey::parse(TEST_KEY).unwrap();
        let script = GuestScript::new()
            .read_host_keys()
            .install_key(key, KeyTarget::User(UserName::parse("bob").unwrap()))
            .setup()
            .build();
        let begins: Vec<&str> = script
            .lines()
            .filter_map(|l| l.strip_prefix("# azssh:begin "))
            .collect();
        assert_eq!(begins, [PROLOGUE, SETUP, KEY, HOST_KEYS, EPILOGUE]);
        // Only the epilogue writes to the output stream.
        assert_eq!(script.matches("Write-Output").count(), 1);
        // RunCommand passes the script through; keep it modest.
        assert!(script.len() < 16384, "{}", script.len());
    }

    #[test]
    fn scripts_hold_no_backslash_escape_look_alikes() {
        // RunCommand's documented known issue: `\n` inside a path (C:\Windows\notepad.exe) is
        // taken for a newline somewhere on the way to the guest. Keep `\n`, `\r`, `\t` out.
        let key = SshPublicKey::parse(TEST_KEY).unwrap();
        let nina = KeyTarget::User(UserName::parse("nina").unwrap());
        let script = GuestScript::new()
            .setup()
            .install_key(key, nina)
            .read_host_keys()
            .build();
        for bad in ["\\n", "\\r", "\\t"] {
            assert!(!script.contains(bad), "{bad}");
        }
    }

    /// Brackets balance outside strings and comments, as PowerShell's parser requires; catches
    /// a `{{`/`}}` slip in the `format!` templates. Strings: '…' with doubled quotes, "…" with
    /// backtick escapes; `#` starts a comment outside strings.
    fn assert_balanced(script: &str) {
        let mut stack = Vec::new();
        let mut chars = script.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                        }
                        Some('\'') => break,
                        Some(_) => {}
                        None => panic!("unterminated single-quoted string"),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('`') => {
                            chars.next();
                        }
                        Some('"') => break,
                        Some(_) => {}
                        None => panic!("unterminated double-quoted string"),
                    }
                },
                '#' => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                '(' | '{' | '[' => stack.push(c),
                ')' | '}' | ']' => {
                    let open = stack.pop().unwrap_or_else(|| panic!("unbalanced `{c}`"));
                    let expected = match c {
                        ')' => '(',
                        '}' => '{',
                        _ => '[',
                    };
                    assert_eq!(open, expected, "mismatched `{c}`");
                }
                _ => {}
            }
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
    }

    #[test]
    fn every_script_has_balanced_brackets_and_quotes() {
        let key = SshPublicKey::parse(TEST_KEY).unwrap();
        let bob = KeyTarget::User(UserName::parse("bob").unwrap());
        for script in [
            setup_script(),
            service_script(),
            host_keys_script(),
            install_key_script(&key, &KeyTarget::Administrators),
            GuestScript::new().inspect("bob").build(),
            GuestScript::new()
                .setup()
                .install_key(key.clone(), bob)
                .read_host_keys()
                .build(),
        ] {
            assert_balanced(&script);
        }
    }

    /// Every script azssh can send, each setup mode, each key target, alone and combined.
    fn every_script() -> Vec<(String, String)> {
        let key = SshPublicKey::parse(TEST_KEY).unwrap();
        let bob = KeyTarget::User(UserName::parse("bob").unwrap());
        let mut scripts = vec![
            ("setup".to_string(), setup_script()),
            ("service".to_string(), service_script()),
            ("host keys".to_string(), host_keys_script()),
            (
                "admin key".to_string(),
                install_key_script(&key, &KeyTarget::Administrators),
            ),
            ("user key".to_string(), install_key_script(&key, &bob)),
            (
                "inspect".to_string(),
                GuestScript::new().inspect("bob").build(),
            ),
        ];
        for (mode, base) in [
            ("setup", GuestScript::new().setup()),
            ("service", GuestScript::new().ensure_service()),
        ] {
            for (who, target) in [("admin", KeyTarget::Administrators), ("bob", bob.clone())] {
                scripts.push((
                    format!("{mode} + {who} key + host keys"),
                    base.clone()
                        .install_key(key.clone(), target)
                        .read_host_keys()
                        .build(),
                ));
            }
        }
        scripts
    }

    #[test]
    fn every_script_parses_as_windows_powershell_5_1_and_is_ascii() {
        // RunCommand runs Windows PowerShell 5.1: no ERROR/MISSING node in the real grammar,
        // none of PowerShell 7's `&&`, `||`, `??`, `?.`, ternary, and ASCII only (a BOM-less
        // .ps1 is read as Windows-1252 there).
        for (name, script) in every_script() {
            let problems = pwsh::check_ps51(&script);
            assert!(problems.is_empty(), "{name}: {problems:?}");
            assert!(script.is_ascii(), "{name}");
            assert!(pwsh::parse(&script).is_ok(), "{name}");
        }
    }

    #[test]
    fn check_ps51_catches_the_mistakes_it_guards_against() {
        // The guard rail must fail on a typo and on PowerShell 7 syntax, or it guards nothing.
        let setup = setup_script();
        let broken = setup.replacen("try {", "try {{", 1);
        assert!(!pwsh::check_ps51(&broken).is_empty());
        let ps7 = setup.replacen("$s.changed = $true", "$s.changed = $x ?? $true", 1);
        assert!(!pwsh::check_ps51(&ps7).is_empty());
        let chain = format!("{setup}\nhostname && whoami");
        assert!(!pwsh::check_ps51(&chain).is_empty());
    }
}
