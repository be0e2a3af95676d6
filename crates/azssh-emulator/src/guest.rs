//! The emulated Windows guest inside each VM: what RunCommand and SSH find there.
//!
//! It models only what the SSH workflow touches: the OpenSSH server capability, the sshd
//! service (status and start-up type), Windows Firewall rules, files as bytes with a small ACL
//! model, local users, host keys and the registry's DefaultShell. PowerShell arrives through
//! [`Guest::run_powershell`] (RunCommand) or [`Guest::exec`] (SSH) and runs through the
//! `azssh-pwsh` interpreter; `guest/host.rs` implements its `Host` trait on this model
//! (services, capabilities, firewall, users, ACLs, registry, files, native exes).
//!
//! Behaviours copied from real Windows because automation trips over them:
//! - the capability install leaves sshd Stopped and Manual;
//! - sshd generates its host keys on first start (`ssh_host_*_key.pub` appear then);
//! - Windows OpenSSH reads key files as UTF-8: a BOM or UTF-16 file authorizes nobody;
//! - for administrators only `administrators_authorized_keys` counts, and StrictModes ignores it
//!   unless inheritance is off and only Administrators and SYSTEM hold access.

use std::collections::{BTreeMap, BTreeSet};

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256};

pub use super::powershell::GuestOutput;
pub use shared::SharedGuest;

pub(crate) mod host;
pub mod realistic;
#[cfg(test)]
mod realistic_tests;
mod shared;
pub mod sshd_config;
#[cfg(test)]
mod tests;

/// Well-known SID of BUILTIN\Administrators.
pub const ADMINISTRATORS_SID: &str = "S-1-5-32-544";
/// Well-known SID of NT AUTHORITY\SYSTEM.
pub const SYSTEM_SID: &str = "S-1-5-18";
/// The inbound rule the OpenSSH.Server capability (and the MSI) creates for TCP 22.
pub const FIREWALL_RULE: &str = "OpenSSH-Server-In-TCP";
/// SID of "Authenticated Users", which ProgramData\ssh grants read access (inherited).
pub(crate) const AUTHENTICATED_USERS_SID: &str = "S-1-5-11";
/// First build with the OpenSSH capability (Windows Server 2019).
pub const FIRST_CAPABILITY_BUILD: u32 = 17763;
/// HRESULT Windows reports when the capability name is unknown (Server 2016 and older).
pub const E_UNKNOWN_CAPABILITY: u32 = 0x800f_080c;
/// HRESULT for "no Windows Update access" (WSUS or offline), the usual Azure failure.
pub const E_NO_UPDATE_SOURCE: u32 = 0x800f_0954;
/// The admin key file, as Windows OpenSSH's default `sshd_config` names it.
pub const ADMIN_KEYS_FILE: &str = r"C:\ProgramData\ssh\administrators_authorized_keys";

/// How a guest is made.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    pub seed: u64,
    /// 14393 (2016), 17763 (2019), 20348 (2022), 26100 (2025).
    pub os_build: u32,
    pub computer_name: String,
    pub admin_user: String,
    /// Non-admin local users.
    pub users: Vec<String>,
    /// When set, `Add-WindowsCapability` fails with this HRESULT (e.g. [`E_NO_UPDATE_SOURCE`]).
    pub capability_failure: Option<u32>,
    /// Hardened images lack the firewall rule after the install; false models them.
    pub firewall_rule_on_install: bool,
    /// The Administrators group's localized name ("Administratoren" on a German image).
    pub admin_group_name: String,
    /// The realistic world's variant this guest shows (`variants.rs`); `Tidy` by default.
    pub variant: crate::variants::Variant,
    /// The NIC's network category (`Get-NetConnectionProfile`): `Public`, as Windows files an
    /// Azure VM's network that is not a domain network.
    pub network_category: String,
}

impl GuestConfig {
    pub fn new(seed: u64, os_build: u32, computer_name: &str, admin_user: &str) -> Self {
        GuestConfig {
            seed,
            os_build,
            computer_name: computer_name.to_string(),
            admin_user: admin_user.to_string(),
            users: Vec::new(),
            capability_failure: None,
            firewall_rule_on_install: true,
            admin_group_name: "Administrators".into(),
            variant: crate::variants::Variant::Tidy,
            network_category: "Public".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceStatus {
    Stopped,
    Running,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupType {
    Manual,
    Automatic,
    Disabled,
}

/// The sshd service, present once OpenSSH is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sshd {
    pub status: ServiceStatus,
    pub startup: StartupType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallRule {
    pub name: String,
    pub display_name: String,
    pub enabled: bool,
    pub local_port: u16,
    /// `Any`, or a comma-separated list of `Domain`, `Private`, `Public` (`-Profile`).
    pub profile: String,
}

/// A file's ACL: whether it inherits from its folder, and its explicit grants (SID → rights).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub inherited: bool,
    pub grants: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFile {
    /// The path as first written (Windows paths are case-insensitive; lookups ignore case).
    pub path: String,
    pub bytes: Vec<u8>,
    pub acl: Acl,
    /// Last write time (UTC), set by every write as NTFS does; `LastWriteTimeUtc`.
    pub modified: pwsh::DateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUser {
    pub name: String,
    pub sid: String,
    pub admin: bool,
    /// The profile folder; `None` until the user has signed in once.
    pub profile: Option<String>,
    /// SIDs of the local groups (other than Administrators and Users) it is a member of.
    pub groups: Vec<String>,
}

impl LocalUser {
    /// Where sshd reads this (non-admin) user's keys.
    pub fn authorized_keys_path(&self) -> Option<String> {
        Some(format!(r"{}\.ssh\authorized_keys", self.profile.as_ref()?))
    }
}

/// What sshd starts for a session (registry `HKLM\SOFTWARE\OpenSSH\DefaultShell`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultShell {
    Cmd,
    PowerShell,
}

/// A capability install failure: the HRESULT and Windows' message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityError {
    pub code: u32,
    pub message: String,
}

/// One emulated Windows VM's inside.
#[derive(Debug, Clone)]
pub struct Guest {
    config: GuestConfig,
    capability_installed: bool,
    sshd: Option<Sshd>,
    firewall: BTreeMap<String, FirewallRule>,
    files: BTreeMap<String, GuestFile>,
    dirs: BTreeSet<String>,
    users: Vec<LocalUser>,
    host_keys: Vec<PrivateKey>,
    host_key_generation: u64,
    /// Values of `HKLM\SOFTWARE\OpenSSH`; `None` while the key does not exist (OpenSSH's
    /// installer creates it).
    registry: Option<BTreeMap<String, String>>,
    /// Local groups besides Administrators and Users (`realistic.rs`).
    local_groups: Vec<realistic::LocalGroup>,
    /// Members of Administrators that resolve to no account (Entra ID, orphaned domain SIDs).
    admin_foreign_sids: Vec<String>,
    /// Keys under `HKLM:\SOFTWARE\Policies` (lower-case path → (path, values)).
    policies: BTreeMap<String, (String, BTreeMap<String, String>)>,
    /// ACLs of folders whose ACL something set (others inherit their parent's).
    dir_acls: BTreeMap<String, Acl>,
    /// Every file write fails: the OS disk is full.
    disk_full: bool,
    network_category: String,
}

/// What `DefaultShell` holds for PowerShell (Microsoft's documented value).
pub const POWERSHELL_EXE: &str = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe";

/// Case-insensitive key for a Windows path.
pub(crate) fn path_key(path: &str) -> String {
    path.replace('/', "\\")
        .trim_end_matches('\\')
        .to_ascii_lowercase()
}

fn parent_key(path: &str) -> String {
    let key = path_key(path);
    match key.rfind('\\') {
        Some(i) => key[..i].to_string(),
        None => key,
    }
}

impl Guest {
    pub fn new(config: GuestConfig) -> Self {
        let domain = Sha256::digest(format!(
            "azssh-sid:{}:{}",
            config.seed, config.computer_name
        ));
        let sub =
            |i: usize| u32::from_le_bytes([domain[i], domain[i + 1], domain[i + 2], domain[i + 3]]);
        let machine = format!("S-1-5-21-{}-{}-{}", sub(0), sub(4), sub(8));
        let mut users = vec![LocalUser {
            name: config.admin_user.clone(),
            sid: format!("{machine}-500"),
            admin: true,
            profile: Some(format!(r"C:\Users\{}", config.admin_user)),
            groups: Vec::new(),
        }];
        for (i, name) in config.users.iter().enumerate() {
            users.push(LocalUser {
                name: name.clone(),
                sid: format!("{machine}-{}", 1001 + i),
                admin: false,
                profile: Some(format!(r"C:\Users\{name}")),
                groups: Vec::new(),
            });
        }
        let mut dirs = BTreeSet::new();
        for d in [
            r"C:\",
            r"C:\ProgramData",
            r"C:\Users",
            r"C:\Windows",
            r"C:\Windows\System32",
            r"C:\Windows\Temp",
            r"C:\Program Files",
        ] {
            dirs.insert(path_key(d));
        }
        for profile in users.iter().filter_map(|u| u.profile.as_deref()) {
            dirs.insert(path_key(profile));
        }
        let variant = config.variant;
        let network_category = config.network_category.clone();
        let mut guest = Guest {
            config,
            capability_installed: false,
            sshd: None,
            firewall: BTreeMap::new(),
            files: BTreeMap::new(),
            dirs,
            users,
            host_keys: Vec::new(),
            host_key_generation: 0,
            registry: None,
            local_groups: Vec::new(),
            admin_foreign_sids: Vec::new(),
            policies: BTreeMap::new(),
            dir_acls: BTreeMap::new(),
            disk_full: false,
            network_category,
        };
        guest.apply_variant(variant);
        guest
    }

    pub fn config(&self) -> &GuestConfig {
        &self.config
    }
    pub fn computer_name(&self) -> &str {
        &self.config.computer_name
    }
    pub fn os_build(&self) -> u32 {
        self.config.os_build
    }
    pub fn admin_user(&self) -> &str {
        &self.config.admin_user
    }
    pub fn users(&self) -> &[LocalUser] {
        &self.users
    }
    /// What sshd starts, read from `HKLM:\SOFTWARE\OpenSSH\DefaultShell` as sshd does: a
    /// path ending in `powershell.exe` means PowerShell, anything else (or nothing) cmd.exe.
    pub fn default_shell(&self) -> DefaultShell {
        let value = self
            .registry_value("DefaultShell")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if value.ends_with("powershell.exe") {
            DefaultShell::PowerShell
        } else {
            DefaultShell::Cmd
        }
    }
    /// Sets `DefaultShell` as `New-ItemProperty` would (creating the key if needed).
    pub fn set_default_shell(&mut self, shell: DefaultShell) {
        let value = match shell {
            DefaultShell::PowerShell => POWERSHELL_EXE,
            DefaultShell::Cmd => r"C:\Windows\System32\cmd.exe",
        };
        self.registry
            .get_or_insert_with(BTreeMap::new)
            .insert("DefaultShell".into(), value.into());
    }
    /// A value under `HKLM\SOFTWARE\OpenSSH`.
    pub fn registry_value(&self, name: &str) -> Option<&str> {
        self.registry
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// OpenSSH server present (capability or extension).
    pub fn openssh_installed(&self) -> bool {
        self.sshd.is_some()
    }
    pub fn capability_installed(&self) -> bool {
        self.capability_installed
    }
    pub fn sshd(&self) -> Option<&Sshd> {
        self.sshd.as_ref()
    }
    /// sshd is accepting connections (the SSH side of the emulator asks this).
    pub fn sshd_running(&self) -> bool {
        self.sshd
            .as_ref()
            .is_some_and(|s| s.status == ServiceStatus::Running)
    }
    pub fn firewall_rule(&self, name: &str) -> Option<&FirewallRule> {
        self.firewall.get(&name.to_ascii_lowercase())
    }
    /// The firewall lets TCP `port` in (some enabled rule allows it).
    pub fn firewall_allows(&self, port: u16) -> bool {
        self.firewall
            .values()
            .any(|r| r.enabled && r.local_port == port)
    }
    pub fn file(&self, path: &str) -> Option<&GuestFile> {
        self.files.get(&path_key(path))
    }
    /// The ed25519 host key sshd has (or will generate at its first start, in this rebuild
    /// generation): derived from the seed, the computer name and the rebuild count, so a world is
    /// reproducible and the SSH side can ask before sshd ever ran.
    pub fn host_key(&self) -> PrivateKey {
        let seed = Sha256::digest(format!(
            "azssh-host-key:{}:{}:{}",
            self.config.seed, self.config.computer_name, self.host_key_generation
        ));
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&seed);
        PrivateKey::from(Ed25519Keypair::from_seed(&bytes))
    }

    /// sshd's host keys; empty until sshd has started once.
    pub fn host_keys(&self) -> &[PrivateKey] {
        &self.host_keys
    }

    /// Like reimaging the VM's OpenSSH: new host keys are made at the next sshd start, as when
    /// a VM is rebuilt from its image (clients must then see a changed host key).
    pub fn rebuild_host_keys(&mut self) {
        self.host_key_generation += 1;
        self.host_keys.clear();
        let dir = path_key(r"C:\ProgramData\ssh");
        self.files
            .retain(|k, _| !(k.starts_with(&dir) && k.contains("ssh_host_")));
        if self.sshd_running() {
            self.generate_host_keys();
        }
    }

    /// Adds a local user; `signed_in` gives it a profile folder (a user who never signed in
    /// has none, which is where per-user key files go wrong).
    pub fn add_user(&mut self, name: &str, admin: bool, signed_in: bool) {
        let machine = self.users[0]
            .sid
            .rsplit_once('-')
            .map_or("", |(m, _)| m)
            .to_string();
        let profile = signed_in.then(|| format!(r"C:\Users\{name}"));
        if let Some(p) = &profile {
            self.dirs.insert(path_key(p));
        }
        self.users.push(LocalUser {
            name: name.to_string(),
            sid: format!("{machine}-{}", 1000 + self.users.len()),
            admin,
            profile,
            groups: Vec::new(),
        });
    }

    pub(crate) fn user(&self, name: &str) -> Option<&LocalUser> {
        let short = name.rsplit('\\').next().unwrap_or(name);
        self.users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(short))
    }

    pub fn dir_exists(&self, path: &str) -> bool {
        self.dirs.contains(&path_key(path))
    }

    pub(crate) fn create_dir(&mut self, path: &str) {
        let mut key = String::new();
        for part in path_key(path).split('\\') {
            if !key.is_empty() {
                key.push('\\');
            }
            key.push_str(part);
            self.dirs.insert(key.clone());
        }
    }

    /// Writes (or appends to) a file, creating it with an inheriting ACL like a new NTFS file.
    /// Fails like .NET when the folder does not exist.
    pub(crate) fn write_file(
        &mut self,
        path: &str,
        bytes: &[u8],
        append: bool,
    ) -> Result<(), String> {
        if !self.dir_exists(&parent_key(path)) {
            return Err(format!("Could not find a part of the path '{path}'."));
        }
        if self.disk_full {
            // ERROR_DISK_FULL as .NET's IOException words it.
            return Err("There is not enough space on the disk.".into());
        }
        let entry = self
            .files
            .entry(path_key(path))
            .or_insert_with(|| GuestFile {
                path: path.to_string(),
                bytes: Vec::new(),
                acl: Acl {
                    inherited: true,
                    grants: BTreeMap::new(),
                },
                modified: pwsh::DateTime::now_utc(),
            });
        if !append {
            entry.bytes.clear();
        }
        entry.bytes.extend_from_slice(bytes);
        entry.modified = pwsh::DateTime::now_utc();
        Ok(())
    }

    pub(crate) fn file_mut(&mut self, path: &str) -> Option<&mut GuestFile> {
        self.files.get_mut(&path_key(path))
    }

    /// Removes a file, or a directory (with `recurse` when it has entries), like
    /// `Remove-Item`.
    pub(crate) fn remove_path(&mut self, path: &str, recurse: bool) -> Result<(), pwsh::FsError> {
        let key = path_key(path);
        if self.files.remove(&key).is_some() {
            return Ok(());
        }
        if !self.dirs.contains(&key) {
            return Err(pwsh::FsError::FileNotFound(path.to_string()));
        }
        let prefix = format!("{key}\\");
        let busy = self.files.keys().any(|k| k.starts_with(&prefix))
            || self.dirs.iter().any(|k| k.starts_with(&prefix));
        if busy && !recurse {
            return Err(pwsh::FsError::Other(format!(
                "The item at {path} has children and the Recurse parameter was not specified."
            )));
        }
        self.files.retain(|k, _| !k.starts_with(&prefix));
        self.dirs.retain(|k| !k.starts_with(&prefix) && *k != key);
        Ok(())
    }

    /// Direct entries of a directory, as full paths (files keep the case they were written
    /// with; directories are known by their lower-case key).
    pub(crate) fn list_dir(&self, path: &str) -> Option<Vec<String>> {
        let key = path_key(path);
        if !self.dirs.contains(&key) {
            return None;
        }
        let prefix = format!("{key}\\");
        let direct = |k: &str| {
            k.len() > prefix.len() && k.starts_with(&prefix) && !k[prefix.len()..].contains('\\')
        };
        let mut out: Vec<String> = self.dirs.iter().filter(|k| direct(k)).cloned().collect();
        out.extend(
            self.files
                .iter()
                .filter(|(k, _)| direct(k))
                .map(|(_, f)| f.path.clone()),
        );
        Some(out)
    }

    /// The firewall rules, for `Get-NetFirewallRule`.
    pub fn firewall_rules(&self) -> impl Iterator<Item = &FirewallRule> {
        self.firewall.values()
    }

    /// The display name of an account SID as Windows shows it (`BUILTIN\Administrators`).
    pub(crate) fn account_name(&self, sid: &str) -> String {
        match sid {
            ADMINISTRATORS_SID => format!(r"BUILTIN\{}", self.config.admin_group_name),
            SYSTEM_SID => r"NT AUTHORITY\SYSTEM".into(),
            AUTHENTICATED_USERS_SID => r"NT AUTHORITY\Authenticated Users".into(),
            _ => match self.users.iter().find(|u| u.sid == sid) {
                Some(u) => format!(r"{}\{}", self.config.computer_name, u.name),
                None => sid.to_string(),
            },
        }
    }

    /// The SIDs holding access to a file: explicit grants plus, while it inherits, what its
    /// folder passes down (ProgramData\ssh: SYSTEM, Administrators, Authenticated Users read;
    /// a profile: SYSTEM, Administrators, the user).
    pub(crate) fn effective_sids(&self, file: &GuestFile) -> BTreeSet<String> {
        let mut sids: BTreeSet<String> = file.acl.grants.keys().cloned().collect();
        if file.acl.inherited {
            sids.insert(SYSTEM_SID.into());
            sids.insert(ADMINISTRATORS_SID.into());
            let key = path_key(&file.path);
            if key.starts_with(&path_key(r"C:\ProgramData")) {
                sids.insert(AUTHENTICATED_USERS_SID.into());
            } else if let Some(u) = self.users.iter().find(|u| {
                u.profile
                    .as_ref()
                    .is_some_and(|p| key.starts_with(&format!("{}\\", path_key(p))))
            }) {
                sids.insert(u.sid.clone());
            }
        }
        sids
    }

    /// Resolves an account as `icacls` does: `*SID`, `BUILTIN\Administrators`, the localized
    /// group name, `SYSTEM`, or a local user. English names fail on a localized guest.
    pub(crate) fn resolve_account(&self, account: &str) -> Option<String> {
        if let Some(sid) = account.strip_prefix('*') {
            return Some(sid.to_string());
        }
        let short = account.rsplit('\\').next().unwrap_or(account);
        if short.eq_ignore_ascii_case(&self.config.admin_group_name) {
            return Some(ADMINISTRATORS_SID.into());
        }
        if short.eq_ignore_ascii_case("SYSTEM") {
            return Some(SYSTEM_SID.into());
        }
        self.user(short).map(|u| u.sid.clone())
    }

    // ----- OpenSSH server state changes, shared by RunCommand statements and blocks -----

    /// `Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0`.
    pub(crate) fn add_capability(&mut self) -> Result<bool, CapabilityError> {
        if self.config.os_build < FIRST_CAPABILITY_BUILD {
            return Err(CapabilityError {
                code: E_UNKNOWN_CAPABILITY,
                message: format!(
                    "Add-WindowsCapability failed. Error code = 0x{E_UNKNOWN_CAPABILITY:08x}"
                ),
            });
        }
        let wsus = self.wsus_blocks_features().then_some(E_NO_UPDATE_SOURCE);
        if let Some(code) = self.config.capability_failure.or(wsus) {
            return Err(CapabilityError {
                code,
                message: format!("Add-WindowsCapability failed. Error code = 0x{code:08x}"),
            });
        }
        if self.capability_installed {
            return Ok(false);
        }
        self.capability_installed = true;
        self.install_openssh_files(self.config.firewall_rule_on_install);
        Ok(true)
    }

    fn install_openssh_files(&mut self, firewall_rule: bool) {
        if self.sshd.is_none() {
            self.sshd = Some(Sshd {
                status: ServiceStatus::Stopped,
                startup: StartupType::Manual,
            });
        }
        self.create_dir(r"C:\ProgramData\ssh");
        let exe = self.sshd_exe();
        if let Some(dir) = pwsh::parent_dir(&exe) {
            self.create_dir(&dir);
        }
        if self.file(&exe).is_none() {
            // A stand-in binary: `(Get-Item sshd.exe).VersionInfo` asks `Host::file_version`.
            let _ = self.write_file(&exe, b"MZ", false);
        }
        self.registry.get_or_insert_with(BTreeMap::new);
        if firewall_rule && self.firewall_rule(FIREWALL_RULE).is_none() {
            self.add_firewall_rule(FIREWALL_RULE, "OpenSSH SSH Server (sshd)", 22);
        }
    }

    /// Where sshd.exe lives: the capability puts it in System32, the `WindowsOpenSSH`
    /// extension (Win32-OpenSSH's MSI) under Program Files.
    pub fn sshd_exe(&self) -> String {
        if self.capability_installed {
            r"C:\Windows\System32\OpenSSH\sshd.exe".into()
        } else {
            r"C:\Program Files\OpenSSH\sshd.exe".into()
        }
    }

    /// The OpenSSH version a build ships (what `sshd.exe`'s ProductVersion says).
    pub fn openssh_version(&self) -> Option<&'static str> {
        self.sshd.as_ref()?;
        Some(match self.config.os_build {
            b if b < FIRST_CAPABILITY_BUILD => "9.5.0.0",
            b if b < 26100 => "8.1.0.1",
            _ => "9.5.4.1",
        })
    }

    /// The `WindowsOpenSSH` 3.0 extension: installs OpenSSH on any build and, unlike the
    /// capability, also starts sshd, sets it Automatic and opens port 22. Returns whether
    /// anything changed.
    pub fn install_openssh_extension(&mut self) -> bool {
        let before = (self.sshd.clone(), self.firewall.clone());
        self.install_openssh_files(true);
        if let Some(rule) = self.firewall.get_mut(&FIREWALL_RULE.to_ascii_lowercase()) {
            rule.enabled = true;
        }
        let _ = self.set_startup(StartupType::Automatic);
        let _ = self.start_sshd();
        before != (self.sshd.clone(), self.firewall.clone())
    }

    pub(crate) fn start_sshd(&mut self) -> Result<bool, String> {
        let sshd = self.sshd.as_mut().ok_or_else(no_sshd)?;
        if sshd.startup == StartupType::Disabled {
            return Err("Service 'OpenSSH SSH Server (sshd)' cannot be started due to the following error: Cannot start service sshd on computer '.'.".into());
        }
        if sshd.status == ServiceStatus::Running {
            return Ok(false);
        }
        if !self.logs_acl_ok() {
            // The service process exits at once (error 1067); PowerShell 5.1 says only this
            // (PowerShell/Win32-OpenSSH#2335).
            return Err("Failed to start service 'OpenSSH SSH Server (sshd)'.".into());
        }
        let Some(sshd) = self.sshd.as_mut() else {
            return Err(no_sshd());
        };
        sshd.status = ServiceStatus::Running;
        self.write_default_sshd_config();
        if self.host_keys.is_empty() {
            self.generate_host_keys();
        }
        Ok(true)
    }

    pub(crate) fn stop_sshd(&mut self) -> Result<bool, String> {
        let sshd = self.sshd.as_mut().ok_or_else(no_sshd)?;
        let changed = sshd.status == ServiceStatus::Running;
        sshd.status = ServiceStatus::Stopped;
        Ok(changed)
    }

    pub(crate) fn set_startup(&mut self, startup: StartupType) -> Result<bool, String> {
        let sshd = self.sshd.as_mut().ok_or_else(no_sshd)?;
        let changed = sshd.startup != startup;
        sshd.startup = startup;
        Ok(changed)
    }

    pub(crate) fn add_firewall_rule(&mut self, name: &str, display_name: &str, port: u16) -> bool {
        let key = name.to_ascii_lowercase();
        if self.firewall.contains_key(&key) {
            return false;
        }
        self.firewall.insert(
            key,
            FirewallRule {
                name: name.to_string(),
                display_name: display_name.to_string(),
                enabled: true,
                local_port: port,
                profile: "Any".into(),
            },
        );
        true
    }

    pub(crate) fn set_firewall_enabled(&mut self, name: &str, enabled: bool) -> Option<bool> {
        let rule = self.firewall.get_mut(&name.to_ascii_lowercase())?;
        let changed = rule.enabled != enabled;
        rule.enabled = enabled;
        Some(changed)
    }

    pub(crate) fn set_firewall_profile(&mut self, name: &str, profile: &str) {
        if let Some(rule) = self.firewall.get_mut(&name.to_ascii_lowercase()) {
            rule.profile = profile.to_string();
        }
    }

    pub(crate) fn set_firewall_port(&mut self, name: &str, port: u16) {
        if let Some(rule) = self.firewall.get_mut(&name.to_ascii_lowercase()) {
            rule.local_port = port;
        }
    }

    /// sshd's first start writes `ssh_host_ed25519_key(.pub)`. Keys derive from the seed, the
    /// computer name and the rebuild count, so a world is reproducible.
    fn generate_host_keys(&mut self) {
        let key = self.host_key();
        if let Ok(line) = key.public_key().to_openssh() {
            let path = r"C:\ProgramData\ssh\ssh_host_ed25519_key.pub";
            self.create_dir(r"C:\ProgramData\ssh");
            let _ = self.write_file(path, format!("{line}\r\n").as_bytes(), false);
        }
        self.host_keys = vec![key];
    }

    // ----- what Windows OpenSSH does at login -----

    /// Whether sshd would accept `key` for `user`, as Windows OpenSSH decides it from its
    /// `sshd_config`: AllowUsers/AllowGroups/Deny* first, then the `AuthorizedKeysFile`s that
    /// apply to the user (the stock `Match Group administrators` block sends administrators,
    /// nested ones included, to `administrators_authorized_keys`), each read only when its ACL
    /// passes StrictModes (only Administrators, SYSTEM and the user hold access) and only as
    /// UTF-8 text without BOM.
    pub fn is_authorized(&self, user: &str, key: &PublicKey) -> bool {
        let Some(account) = self.user(user) else {
            return false;
        };
        let groups = self.group_names(&account.name);
        let effective = self.sshd_config().effective(&account.name, &groups);
        if let Err(why) = effective.admits(&account.name, &groups) {
            tracing::debug!(user, why, "sshd refused the user");
            return false;
        }
        let allowed: BTreeSet<String> = [ADMINISTRATORS_SID, SYSTEM_SID, account.sid.as_str()]
            .map(String::from)
            .into();
        effective
            .key_paths(&account.name, account.profile.as_deref())
            .iter()
            .any(|path| {
                let Some(file) = self.file(path) else {
                    return false;
                };
                if !self.effective_sids(file).is_subset(&allowed) {
                    tracing::debug!(user, path, "key file ACL refused (StrictModes)");
                    return false;
                }
                authorized_keys_contain(&file.bytes, key)
            })
    }
}

fn no_sshd() -> String {
    "Cannot find any service with service name 'sshd'.".into()
}

/// Reads an authorized_keys file's bytes as sshd does: a BOM, a NUL or invalid UTF-8 makes the
/// lines unreadable. Options before the key type are allowed, as in OpenSSH.
pub(crate) fn authorized_keys_contain(bytes: &[u8], key: &PublicKey) -> bool {
    if matches!(bytes.first(), Some(0xEF | 0xFE | 0xFF)) || bytes.contains(&0) {
        return false;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    text.lines().any(|line| {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        tokens.windows(2).any(|pair| {
            PublicKey::from_openssh(&format!("{} {}", pair[0], pair[1]))
                .is_ok_and(|k| k.key_data() == key.key_data())
        })
    })
}

/// Decodes a file as .NET's `File.ReadAllText` and `Get-Content` do: by BOM, else UTF-8.
#[cfg(test)]
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
