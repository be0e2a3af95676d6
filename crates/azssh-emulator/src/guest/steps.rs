//! The effects of azssh's script blocks (see azssh's `windows` module), applied to the guest step by
//! step as the PowerShell does them and reported in the same JSON shape.

use super::{ADMIN_KEYS_FILE, Guest, StartupType, parent_key, path_key};
use super::{ADMINISTRATORS_SID, FIREWALL_RULE, SYSTEM_SID};

/// What azssh's `key` block reports (its documented result text) for a user without a profile.
const NO_PROFILE: &str = " has no profile on this VM yet; sign in once (for example over RDP) or install the key for an administrator";

const GENERIC_HRESULT: u32 = 0x8013_1500;

fn limit(message: &str) -> String {
    message.chars().take(200).collect()
}

impl Guest {
    /// The `setup` block (`install_capability`) or the `service` block.
    pub(crate) fn setup_step(&mut self, install_capability: bool) -> serde_json::Value {
        let mut s = serde_json::Map::new();
        let mut changed = false;
        s.insert("os_build".into(), self.config.os_build.into());
        let state = if self.capability_installed {
            "Installed"
        } else {
            "NotPresent"
        };
        if install_capability {
            s.insert("capability".into(), state.into());
        }
        let outcome = (|| -> Result<(), (String, u32)> {
            if install_capability && !self.capability_installed {
                self.add_capability().map_err(|e| (e.message, e.code))?;
                changed = true;
            }
            changed |= self
                .set_startup(StartupType::Automatic)
                .map_err(|m| (m, GENERIC_HRESULT))?;
            changed |= self.start_sshd().map_err(|m| (m, GENERIC_HRESULT))?;
            let rule = FIREWALL_RULE;
            match self.firewall_rule(rule) {
                None => changed |= self.add_firewall_rule(rule, "OpenSSH SSH Server (sshd)", 22),
                Some(_) => changed |= self.set_firewall_enabled(rule, true).unwrap_or(false),
            }
            Ok(())
        })();
        s.insert("changed".into(), changed.into());
        match outcome {
            Ok(()) => {
                let sshd = self.sshd.clone();
                let status = sshd.as_ref().map(|s| format!("{:?}", s.status));
                let startup = sshd.as_ref().map(|s| format!("{:?}", s.startup));
                s.insert("sshd".into(), status.into());
                s.insert("startup".into(), startup.into());
                let enabled = self.firewall_rule(FIREWALL_RULE).is_some_and(|r| r.enabled);
                s.insert("firewall".into(), enabled.into());
                s.insert("version".into(), self.openssh_version().into());
            }
            Err((message, code)) => {
                s.insert("error".into(), limit(&message).into());
                s.insert("code".into(), format!("0x{code:08x}").into());
            }
        }
        serde_json::Value::Object(s)
    }

    /// The `key` block for `user` ('' = the admin file) and a sanitised key line.
    pub(crate) fn key_step(&mut self, user: &str, key_line: &str) -> serde_json::Value {
        let mut k = serde_json::Map::new();
        k.insert("added".into(), false.into());
        k.insert("repaired".into(), false.into());
        if let Err(message) = self.key_step_inner(user, key_line, &mut k) {
            k.insert("error".into(), limit(&message).into());
        }
        serde_json::Value::Object(k)
    }

    fn key_step_inner(
        &mut self,
        user: &str,
        key_line: &str,
        k: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), String> {
        let account = if user.is_empty() {
            None
        } else {
            Some(
                self.user(user)
                    .cloned()
                    .ok_or_else(|| format!("User {user} was not found."))?,
            )
        };
        let admin = account.as_ref().is_none_or(|a| a.admin);
        let (path, owner_sid) = match &account {
            Some(a) if !a.admin => {
                let path = a
                    .authorized_keys_path()
                    .ok_or_else(|| format!("user {user}{NO_PROFILE}"))?;
                (path, a.sid.clone())
            }
            _ => (ADMIN_KEYS_FILE.to_string(), ADMINISTRATORS_SID.to_string()),
        };
        self.create_dir(&parent_key(&path));
        let mut text = String::new();
        if let Some(file) = self.file(&path) {
            let bytes = file.bytes.clone();
            text = decode_text(&bytes);
            if bytes.first().is_some_and(|b| *b >= 0xEF) {
                self.write_file(&path, text.as_bytes(), false)?;
                k.insert("repaired".into(), true.into());
            }
        }
        let body = key_line.split(' ').nth(1).unwrap_or_default().to_string();
        let has_body = |t: &str| t.lines().any(|l| l.split_whitespace().any(|w| w == body));
        if !has_body(&text) {
            let sep = if !text.is_empty() && !text.ends_with('\n') {
                "\r\n"
            } else {
                ""
            };
            self.write_file(&path, format!("{sep}{key_line}\r\n").as_bytes(), true)?;
            k.insert("added".into(), true.into());
        }
        let file = self.file_mut(&path).ok_or("the key file vanished")?;
        file.acl.inherited = false;
        file.acl.grants.insert(owner_sid, "F".into());
        file.acl.grants.insert(SYSTEM_SID.into(), "F".into());
        let file = self.file(&path).ok_or("the key file vanished")?;
        let check = file.bytes.clone();
        let sids: Vec<String> = self.effective_sids(file).into_iter().collect();
        let inherited = file.acl.inherited;
        k.insert("path".into(), path.into());
        k.insert("admin".into(), admin.into());
        k.insert(
            "bom".into(),
            check.first().is_some_and(|b| *b >= 0xEF).into(),
        );
        k.insert(
            "verified".into(),
            has_body(&String::from_utf8_lossy(&check)).into(),
        );
        k.insert("inherited".into(), inherited.into());
        k.insert("sids".into(), sids.into());
        Ok(())
    }

    /// The `host-keys` block: the `ssh_host_*_key.pub` files, sorted by name.
    pub(crate) fn host_keys_step(&self) -> Result<Vec<String>, String> {
        let dir = r"C:\ProgramData\ssh";
        if !self.dir_exists(dir) {
            return Err(format!(
                "Cannot find path '{dir}' because it does not exist."
            ));
        }
        let prefix = format!("{}\\ssh_host_", path_key(dir));
        let mut keys: Vec<(&String, String)> = self
            .files
            .iter()
            .filter(|(k, _)| {
                k.starts_with(&prefix)
                    && k.ends_with("_key.pub")
                    && !k[prefix.len()..].contains('\\')
            })
            .map(|(k, f)| (k, decode_text(&f.bytes).trim().to_string()))
            .collect();
        keys.sort();
        Ok(keys.into_iter().map(|(_, v)| v).collect())
    }
}

/// Decodes a file as .NET's `File.ReadAllText` and `Get-Content` do: by BOM, else UTF-8.
pub(crate) fn decode_text(bytes: &[u8]) -> String {
    let utf16 = |b: &[u8], le: bool| {
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|p| {
                if le {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}
