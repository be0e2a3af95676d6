//! `C:\ProgramData\ssh\sshd_config` as Windows OpenSSH reads it: global keywords, then `Match`
//! blocks that override them for the users they match. Only what decides a login is evaluated:
//! `Port`, `AllowUsers`, `AllowGroups`, `DenyUsers`, `DenyGroups`, `AuthorizedKeysFile`,
//! `PasswordAuthentication`; the rest is kept as text (`sshd -T` prints it).
//!
//! sshd takes the first value it meets for a keyword, and a matching `Match` block's values win
//! over the global ones (sshd_config(5)). Windows OpenSSH compares user and group names without
//! regard to case, and `Match Group administrators` matches members of BUILTIN\Administrators
//! directly or through nested groups (it checks the logon token's groups).

/// The file sshd writes at its first start from `sshd_config_default` (Win32-OpenSSH's
/// `contrib/win32/openssh/sshd_config`, comments abridged).
pub const STOCK: &str = "# This is the sshd server system-wide configuration file.  See\r\n# sshd_config(5) for more information.\r\n\r\n#Port 22\r\n#AddressFamily any\r\n#ListenAddress 0.0.0.0\r\n\r\n#HostKey __PROGRAMDATA__/ssh/ssh_host_ed25519_key\r\n\r\n# Authentication:\r\n#StrictModes yes\r\n#PubkeyAuthentication yes\r\n\r\n# The default is to check both .ssh/authorized_keys and .ssh/authorized_keys2\r\n# but this is overridden so installations will only check .ssh/authorized_keys\r\nAuthorizedKeysFile\t.ssh/authorized_keys\r\n\r\n#PasswordAuthentication yes\r\n#PermitEmptyPasswords no\r\n\r\n# override default of no subsystems\r\nSubsystem\tsftp\tsftp-server.exe\r\n\r\n# Example of overriding settings on a per-user basis\r\n#Match User anoncvs\r\n#\tAllowTcpForwarding no\r\n#\tForceCommand cvs server\r\n\r\nMatch Group administrators\r\n       AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys\r\n";

/// What sshd decides for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub port: u16,
    pub allow_users: Vec<String>,
    pub allow_groups: Vec<String>,
    pub deny_users: Vec<String>,
    pub deny_groups: Vec<String>,
    /// As written (`__PROGRAMDATA__/...`, relative to the profile, `%u`, `%h`).
    pub authorized_keys_files: Vec<String>,
    pub password_authentication: bool,
}

#[derive(Debug, Clone, Default)]
struct Block {
    /// `(criterion, patterns)`: `user`/`group` with their comma-separated patterns.
    criteria: Vec<(String, String)>,
    lines: Vec<(String, Vec<String>)>,
}

/// A parsed sshd_config.
#[derive(Debug, Clone, Default)]
pub struct SshdConfig {
    global: Vec<(String, Vec<String>)>,
    matches: Vec<Block>,
}

/// Splits a line into words, keeping `"openssh users"` as one.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            '=' if !quoted && out.is_empty() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// sshd's `match_pattern`: `*` and `?` wildcards, case-insensitive as on Windows.
fn pattern_matches(pattern: &str, text: &str) -> bool {
    fn m(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| m(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && m(rest, &t[1..]),
            Some((c, rest)) => t.first().is_some_and(|x| x == c) && m(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    m(&p, &t)
}

/// A comma-separated pattern list (`!` negates), as `Match` criteria take them.
fn list_matches(list: &str, text: &str) -> bool {
    let mut hit = false;
    for p in list.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if pattern_matches(neg, text) {
                return false;
            }
        } else if pattern_matches(p, text) {
            hit = true;
        }
    }
    hit
}

impl SshdConfig {
    pub fn parse(text: &str) -> SshdConfig {
        let mut config = SshdConfig::default();
        let mut block: Option<Block> = None;
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut w = words(line);
            if w.is_empty() {
                continue;
            }
            let keyword = w.remove(0).to_ascii_lowercase();
            if keyword == "match" {
                if let Some(b) = block.take() {
                    config.matches.push(b);
                }
                let mut b = Block::default();
                let mut it = w.into_iter();
                while let Some(k) = it.next() {
                    let k = k.to_ascii_lowercase();
                    if k == "all" {
                        b.criteria.push((k, String::new()));
                    } else if let Some(v) = it.next() {
                        b.criteria.push((k, v));
                    }
                }
                block = Some(b);
                continue;
            }
            match &mut block {
                Some(b) => b.lines.push((keyword, w)),
                None => config.global.push((keyword, w)),
            }
        }
        if let Some(b) = block {
            config.matches.push(b);
        }
        config
    }

    /// The values of `keyword` that apply to `user` (member of `groups`, lower case): the
    /// first matching block's first occurrence, else the first global one.
    fn value(&self, keyword: &str, user: &str, groups: &[String]) -> Option<&Vec<String>> {
        for b in &self.matches {
            let applies = b.criteria.iter().all(|(k, v)| match k.as_str() {
                "all" => true,
                "user" => list_matches(v, user),
                "group" => groups.iter().any(|g| list_matches(v, g)),
                // Host/Address criteria: the emulator's clients all come from loopback; a
                // block on them is taken not to apply.
                _ => false,
            });
            if applies && let Some((_, v)) = b.lines.iter().find(|(k, _)| k == keyword) {
                return Some(v);
            }
        }
        self.global
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v)
    }

    /// sshd's `Port` (global only: a `Match` block cannot set it).
    pub fn port(&self) -> u16 {
        self.global
            .iter()
            .find(|(k, _)| k == "port")
            .and_then(|(_, v)| v.first()?.parse().ok())
            .unwrap_or(22)
    }

    /// What applies to `user`, a member of `groups` (names, any case).
    pub fn effective(&self, user: &str, groups: &[String]) -> Effective {
        let groups: Vec<String> = groups.iter().map(|g| g.to_lowercase()).collect();
        let list = |k: &str| {
            // AllowUsers & co. accumulate over lines in sshd; global lines only.
            self.global
                .iter()
                .filter(|(key, _)| key == k)
                .flat_map(|(_, v)| v.iter().cloned())
                .collect::<Vec<String>>()
        };
        Effective {
            port: self.port(),
            allow_users: list("allowusers"),
            allow_groups: list("allowgroups"),
            deny_users: list("denyusers"),
            deny_groups: list("denygroups"),
            authorized_keys_files: self
                .value("authorizedkeysfile", user, &groups)
                .cloned()
                // sshd's compiled-in default.
                .unwrap_or_else(|| {
                    vec![
                        ".ssh/authorized_keys".into(),
                        ".ssh/authorized_keys2".into(),
                    ]
                }),
            password_authentication: self
                .value("passwordauthentication", user, &groups)
                .and_then(|v| v.first())
                .is_none_or(|v| !v.eq_ignore_ascii_case("no")),
        }
    }
}

impl Effective {
    /// Whether AllowUsers/AllowGroups/DenyUsers/DenyGroups let `user` (in `groups`) in, as
    /// sshd's `allowed_user` decides; `Err` says which line refused, in sshd's log words.
    pub fn admits(&self, user: &str, groups: &[String]) -> Result<(), String> {
        let in_group = |list: &[String]| {
            list.iter()
                .any(|p| groups.iter().any(|g| pattern_matches(p, g)))
        };
        if self.deny_users.iter().any(|p| pattern_matches(p, user)) {
            return Err(format!(
                "User {user} not allowed because listed in DenyUsers"
            ));
        }
        if !self.allow_users.is_empty()
            && !self.allow_users.iter().any(|p| pattern_matches(p, user))
        {
            return Err(format!(
                "User {user} not allowed because not listed in AllowUsers"
            ));
        }
        if in_group(&self.deny_groups) {
            return Err(format!(
                "User {user} not allowed because a group is listed in DenyGroups"
            ));
        }
        if !self.allow_groups.is_empty() && !in_group(&self.allow_groups) {
            return Err(format!(
                "User {user} not allowed because none of user's groups are listed in AllowGroups"
            ));
        }
        Ok(())
    }

    /// The key files as Windows paths for a user whose profile is `profile`.
    pub fn key_paths(&self, user: &str, profile: Option<&str>) -> Vec<String> {
        self.authorized_keys_files
            .iter()
            .filter_map(|f| {
                let f = f
                    .replace("__PROGRAMDATA__", r"C:\ProgramData")
                    .replace("%u", user);
                let f = if f.contains("%h") {
                    f.replace("%h", profile?)
                } else {
                    f
                };
                let f = f.replace('/', "\\");
                let absolute = f.len() > 2 && f.as_bytes()[1] == b':';
                Some(if absolute {
                    f
                } else {
                    format!(r"{}\{f}", profile?)
                })
            })
            .collect()
    }
}

/// The `sshd -T` lines for a user (lower-case keywords, as OpenSSH prints them).
pub fn dump(config: &SshdConfig, user: &str, groups: &[String]) -> String {
    let e = config.effective(user, groups);
    let mut out = format!("port {}\r\n", e.port);
    out.push_str(&format!(
        "authorizedkeysfile {}\r\n",
        e.authorized_keys_files.join(" ")
    ));
    out.push_str(&format!(
        "passwordauthentication {}\r\n",
        if e.password_authentication {
            "yes"
        } else {
            "no"
        }
    ));
    for (k, v) in [
        ("allowusers", &e.allow_users),
        ("allowgroups", &e.allow_groups),
        ("denyusers", &e.deny_users),
        ("denygroups", &e.deny_groups),
    ] {
        for item in v.iter() {
            out.push_str(&format!("{k} {item}\r\n"));
        }
    }
    out.push_str("subsystem sftp sftp-server.exe\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_file_sends_administrators_to_the_programdata_file() {
        let c = SshdConfig::parse(STOCK);
        let admin = c.effective("azureadmin", &["Administrators".into(), "Users".into()]);
        assert_eq!(
            admin.key_paths("azureadmin", Some(r"C:\Users\azureadmin")),
            [r"C:\ProgramData\ssh\administrators_authorized_keys"]
        );
        let user = c.effective("bob", &["users".into()]);
        assert_eq!(
            user.key_paths("bob", Some(r"C:\Users\bob")),
            [r"C:\Users\bob\.ssh\authorized_keys"]
        );
        assert_eq!(c.port(), 22);
    }

    #[test]
    fn commented_match_block_and_allow_groups_change_the_outcome() {
        let hardened = STOCK.replace("Match Group", "#Match Group").replace(
            "       AuthorizedKeysFile __PROGRAMDATA__",
            "#       AuthorizedKeysFile __PROGRAMDATA__",
        ) + "AllowGroups administrators \"openssh users\"\r\nPort 2222\r\n";
        let c = SshdConfig::parse(&hardened);
        let admin = c.effective("azureadmin", &["administrators".into()]);
        assert_eq!(
            admin.key_paths("azureadmin", Some(r"C:\Users\azureadmin")),
            [r"C:\Users\azureadmin\.ssh\authorized_keys"]
        );
        assert_eq!(admin.allow_groups, ["administrators", "openssh users"]);
        assert!(
            admin
                .admits("azureadmin", &["administrators".into()])
                .is_ok()
        );
        let bob = c.effective("bob", &["users".into()]);
        assert!(
            bob.admits("bob", &["users".into()])
                .unwrap_err()
                .contains("AllowGroups")
        );
        assert!(bob.admits("bob", &["openssh users".into()]).is_ok());
        assert_eq!(c.port(), 2222);
    }
}
