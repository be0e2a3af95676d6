//! What real Windows estates do beyond the tidy case (`../shared/reference/WINDOWS-REALITIES.md`),
//! as guest state: the NIC's network category and firewall profiles, group membership by SID
//! (nested groups, unresolvable Entra SIDs), Group Policy values under
//! `HKLM:\SOFTWARE\Policies`, the ACL of `C:\ProgramData\ssh\logs`, a full OS disk, and
//! `sshd_config`. `Guest::apply_variant` builds each realistic-world variant from them; the
//! PowerShell host (`host.rs`) shows them only the way Windows does.

use std::collections::BTreeMap;

use super::sshd_config::{self, SshdConfig};
use super::{
    ADMINISTRATORS_SID, AUTHENTICATED_USERS_SID, Acl, Guest, SYSTEM_SID, ServiceStatus,
    StartupType, path_key,
};
use crate::variants::Variant;

/// Where sshd's config lives.
pub const SSHD_CONFIG: &str = r"C:\ProgramData\ssh\sshd_config";
/// The folder sshd ≥ 9.4 checks at start-up (PowerShell/Win32-OpenSSH#2282).
pub const SSHD_LOGS: &str = r"C:\ProgramData\ssh\logs";
/// The Group Policy key of Windows Update (WSUS): `UseWUServer` lives under `\AU`.
pub const WU_POLICY: &str = r"HKLM:\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate";
/// "Specify settings for optional component installation and component repair".
pub const SERVICING_POLICY: &str = r"HKLM:\SOFTWARE\Policies\Microsoft\Windows\Servicing";
/// An Entra ID role SID as Entra-joined VMs put into Administrators; nothing resolves it.
pub const ENTRA_SID: &str = "S-1-12-1-2933642503-1244378434-3893879680-2419580357";
/// The nested group of the `admin-nested-group` variant and its member.
pub const NESTED_GROUP: &str = "SSH Admins";
pub const NESTED_ADMIN: &str = "opsadmin";
/// The group the hardened config's `AllowGroups` names beside administrators.
pub const OPENSSH_USERS: &str = "openssh users";

/// A local group other than Administrators and Users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalGroup {
    pub name: String,
    pub sid: String,
    /// This group is itself a member of Administrators.
    pub in_administrators: bool,
}

/// The hardened sshd_config: the administrators block commented out
/// (PowerShell/Win32-OpenSSH#1706) and AllowGroups as reported on some 2025 images.
pub fn hardened_sshd_config() -> String {
    sshd_config::STOCK
        .replace("Match Group administrators", "#Match Group administrators")
        .replace(
            "       AuthorizedKeysFile __PROGRAMDATA__",
            "#       AuthorizedKeysFile __PROGRAMDATA__",
        )
        .replace(
            "#PasswordAuthentication yes",
            "PasswordAuthentication no\r\nAllowGroups administrators \"openssh users\"",
        )
}

impl Guest {
    /// Builds `variant` into a fresh guest.
    pub(crate) fn apply_variant(&mut self, variant: Variant) {
        match variant {
            Variant::Ws2025PublicProfile => {
                // Preinstalled, not running, Manual; the rule only on Domain and Private.
                self.capability_installed = true;
                self.install_openssh_files(true);
                self.set_firewall_profile(super::FIREWALL_RULE, "Domain, Private");
            }
            Variant::AdminsUnresolvableSid => {
                self.admin_foreign_sids.push(ENTRA_SID.into());
            }
            Variant::AdminNestedGroup => {
                let sid = self.new_group(NESTED_GROUP, true);
                self.add_user(NESTED_ADMIN, false, true);
                if let Some(u) = self.users.last_mut() {
                    u.groups.push(sid);
                }
            }
            Variant::SshdConfigHardened => {
                self.new_group(OPENSSH_USERS, false);
                self.preinstall_running();
                let _ = self.write_file(SSHD_CONFIG, hardened_sshd_config().as_bytes(), false);
            }
            Variant::SshdPort2222 => {
                self.preinstall_running();
                let text = sshd_config::STOCK.replace("#Port 22", "Port 2222");
                let _ = self.write_file(SSHD_CONFIG, text.as_bytes(), false);
            }
            Variant::WsusManaged => {
                self.set_policy(WU_POLICY, "WUServer", "http://wsus.corp.contoso.com:8530");
                self.set_policy(&format!(r"{WU_POLICY}\AU"), "UseWUServer", "1");
            }
            Variant::SshdBrokenLogsAcl => {
                self.preinstall_running();
                let _ = self.stop_sshd();
                // The update left the folder inheriting ProgramData's ACL plus a write grant.
                self.create_dir(SSHD_LOGS);
                let acl = self.dir_acls.entry(path_key(SSHD_LOGS)).or_default();
                acl.inherited = true;
                acl.grants
                    .insert(AUTHENTICATED_USERS_SID.into(), "M".into());
            }
            Variant::DefaultShellPowerShell => {
                self.preinstall_running();
                self.set_default_shell(super::DefaultShell::PowerShell);
            }
            Variant::DiskFull => self.disk_full = true,
            Variant::Tidy
            | Variant::ExtensionOtherName
            | Variant::AgentNotReady
            | Variant::NsgDenyAll => {}
        }
    }

    /// OpenSSH installed by an earlier admin, running and Automatic.
    fn preinstall_running(&mut self) {
        if self.config.os_build >= super::FIRST_CAPABILITY_BUILD {
            self.capability_installed = true;
        }
        self.install_openssh_files(true);
        let _ = self.set_startup(StartupType::Automatic);
        let _ = self.start_sshd();
    }

    fn new_group(&mut self, name: &str, in_administrators: bool) -> String {
        let machine = self.users[0]
            .sid
            .rsplit_once('-')
            .map_or("", |(m, _)| m)
            .to_string();
        let sid = format!("{machine}-{}", 1100 + self.local_groups.len());
        self.local_groups.push(LocalGroup {
            name: name.into(),
            sid: sid.clone(),
            in_administrators,
        });
        sid
    }

    pub fn local_groups(&self) -> &[LocalGroup] {
        &self.local_groups
    }

    /// SIDs in Administrators that resolve to no account.
    pub fn admin_foreign_sids(&self) -> &[String] {
        &self.admin_foreign_sids
    }

    /// Whether `user` is an administrator: directly, or through a group that is a member of
    /// Administrators (what its logon token says, and what sshd's `Match Group` checks).
    pub fn is_admin(&self, user: &str) -> bool {
        let Some(u) = self.user(user) else {
            return false;
        };
        u.admin
            || u.groups.iter().any(|g| {
                self.local_groups
                    .iter()
                    .any(|lg| &lg.sid == g && lg.in_administrators)
            })
    }

    /// The names of the groups `user`'s token holds, as sshd compares them (lower case).
    pub fn group_names(&self, user: &str) -> Vec<String> {
        let mut out = vec!["users".to_string()];
        if self.is_admin(user) {
            out.push("administrators".into());
            out.push(self.config.admin_group_name.to_lowercase());
        }
        if let Some(u) = self.user(user) {
            for g in &u.groups {
                if let Some(lg) = self.local_groups.iter().find(|lg| &lg.sid == g) {
                    out.push(lg.name.to_lowercase());
                }
            }
        }
        out
    }

    /// Adds `user` to a local group (by name), as `Add-LocalGroupMember` does.
    pub fn add_to_group(&mut self, group: &str, user: &str) -> Result<(), String> {
        let Some(sid) = self
            .local_groups
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(group))
            .map(|g| g.sid.clone())
        else {
            return Err(format!("Group {group} was not found."));
        };
        let short = user.rsplit('\\').next().unwrap_or(user).to_string();
        let Some(u) = self
            .users
            .iter_mut()
            .find(|u| u.name.eq_ignore_ascii_case(&short))
        else {
            return Err(format!("Principal {user} was not found."));
        };
        if !u.groups.contains(&sid) {
            u.groups.push(sid);
        }
        Ok(())
    }

    /// The network category of the VM's one NIC (`Get-NetConnectionProfile`).
    pub fn network_category(&self) -> &str {
        &self.network_category
    }

    /// sshd_config as sshd reads it: the file, or the default it writes at first start.
    pub fn sshd_config(&self) -> SshdConfig {
        match self.file(SSHD_CONFIG) {
            Some(f) => SshdConfig::parse(&String::from_utf8_lossy(&f.bytes)),
            None => SshdConfig::parse(sshd_config::STOCK),
        }
    }

    /// The port sshd listens on.
    pub fn sshd_port(&self) -> u16 {
        self.sshd_config().port()
    }

    /// Whether Windows Firewall lets TCP `port` in on the active network: some enabled inbound
    /// allow rule for the port whose Profile is `Any` or names the NIC's category.
    pub fn firewall_admits(&self, port: u16) -> bool {
        let category = match self.network_category.as_str() {
            "DomainAuthenticated" => "domain".to_string(),
            other => other.to_ascii_lowercase(),
        };
        self.firewall_rules().any(|r| {
            r.enabled
                && r.local_port == port
                && (r.profile.eq_ignore_ascii_case("any")
                    || r.profile
                        .split(',')
                        .any(|p| p.trim().eq_ignore_ascii_case(&category)))
        })
    }

    /// A Group Policy value (`HKLM:\SOFTWARE\Policies\...`).
    pub fn policy(&self, key: &str, name: &str) -> Option<&str> {
        self.policies
            .get(&key.to_ascii_lowercase())?
            .1
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn policy_key(&self, key: &str) -> Option<&(String, BTreeMap<String, String>)> {
        self.policies.get(&key.to_ascii_lowercase())
    }

    pub(crate) fn create_policy_key(&mut self, key: &str) {
        self.policies
            .entry(key.to_ascii_lowercase())
            .or_insert_with(|| (key.to_string(), BTreeMap::new()));
    }

    pub(crate) fn set_policy(&mut self, key: &str, name: &str, value: &str) {
        // Creating a key creates its parents, as `New-Item -Force` does.
        let mut parent = String::new();
        for part in key.split('\\') {
            if !parent.is_empty() {
                parent.push('\\');
            }
            parent.push_str(part);
            if parent
                .to_ascii_lowercase()
                .starts_with(r"hklm:\software\policies\")
            {
                self.create_policy_key(&parent);
            }
        }
        if let Some((_, values)) = self.policies.get_mut(&key.to_ascii_lowercase()) {
            values.retain(|k, _| !k.eq_ignore_ascii_case(name));
            values.insert(name.to_string(), value.to_string());
        }
    }

    pub(crate) fn remove_policy_value(&mut self, key: &str, name: &str) -> bool {
        match self.policies.get_mut(&key.to_ascii_lowercase()) {
            Some((_, values)) => {
                values.retain(|k, _| !k.eq_ignore_ascii_case(name));
                true
            }
            None => false,
        }
    }

    /// WSUS without the repair-content policy: Features on Demand cannot be downloaded
    /// (0x800f0954, MicrosoftDocs/windowsserverdocs#7843). `RepairContentServerSource = 2`
    /// ("Download repair content and optional features directly from Windows Update") lifts it.
    pub(crate) fn wsus_blocks_features(&self) -> bool {
        self.policy(&format!(r"{WU_POLICY}\AU"), "UseWUServer") == Some("1")
            && self.policy(SERVICING_POLICY, "RepairContentServerSource") != Some("2")
    }

    /// A folder's ACL (explicit model only for folders something changed).
    pub fn dir_acl(&self, path: &str) -> Option<&Acl> {
        self.dir_acls.get(&path_key(path))
    }

    pub(crate) fn dir_acl_mut(&mut self, path: &str) -> &mut Acl {
        let key = path_key(path);
        self.dir_acls.entry(key).or_insert_with(|| Acl {
            inherited: true,
            grants: BTreeMap::new(),
        })
    }

    /// sshd ≥ 9.4 refuses to start unless only SYSTEM and Administrators may write to
    /// `ProgramData\ssh\logs` (PowerShell/Win32-OpenSSH#2282): the service process exits and the
    /// SCM reports error 1067.
    pub(crate) fn logs_acl_ok(&self) -> bool {
        match self.dir_acl(SSHD_LOGS) {
            None => true,
            Some(acl) => {
                !acl.inherited
                    && acl
                        .grants
                        .keys()
                        .all(|s| s == SYSTEM_SID || s == ADMINISTRATORS_SID)
            }
        }
    }

    pub fn disk_full(&self) -> bool {
        self.disk_full
    }

    /// sshd_config's first-start copy: sshd writes it from `sshd_config_default` when missing.
    pub(crate) fn write_default_sshd_config(&mut self) {
        if self.file(SSHD_CONFIG).is_none() {
            let full = std::mem::replace(&mut self.disk_full, false);
            let _ = self.write_file(SSHD_CONFIG, sshd_config::STOCK.as_bytes(), false);
            self.disk_full = full;
        }
    }

    /// Whether sshd, once running, is stopped by a failed start (for `sc.exe query`'s exit code).
    pub fn sshd_exit_code(&self) -> u32 {
        match &self.sshd {
            Some(s) if s.status == ServiceStatus::Stopped && !self.logs_acl_ok() => 1067,
            _ => 0,
        }
    }
}
