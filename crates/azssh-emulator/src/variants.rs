//! The realistic world's variants: what real Azure Windows estates do instead of the tidy case
//! (`../shared/reference/WINDOWS-REALITIES.md`), one per VM, tagged `emulator-variant=<name>`.
//!
//! # Rates
//! VMs are dealt variants in a fixed rotation of 20 slots, so any world of 13 VMs or more shows
//! every variant and the same seed always deals the same hands:
//! - slot 0 and slots 13–19: `tidy` (8 in 20, 40 %): today's uniform VM;
//! - slots 1–12: one variant each (1 in 20, 5 % each, 60 % in all).
//!
//! The rates are not measurements of real estates (no public census exists); they are chosen so
//! a fleet run of a few dozen VMs meets each failure the reference documents several times, the
//! way a real subscription of mixed ages does. The `tidy` world (`azssh emulator --world tidy`,
//! and the test fixture's default) deals no variants at all.

use std::fmt;
use std::str::FromStr;

/// Which world to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorldKind {
    /// Every VM is the tidy case (the documented one-liners work as written).
    #[default]
    Tidy,
    /// VMs show the variants below at the rates of this module's docs.
    Realistic,
}

impl FromStr for WorldKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tidy" => Ok(WorldKind::Tidy),
            "realistic" => Ok(WorldKind::Realistic),
            other => Err(format!(
                "unknown world `{other}`: use `realistic` or `tidy`"
            )),
        }
    }
}

impl fmt::Display for WorldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorldKind::Tidy => "tidy",
            WorldKind::Realistic => "realistic",
        })
    }
}

/// One way a real VM differs from the tidy case. Each lives in the guest model (or, for the
/// agent, the extension and the NSG, in the ARM model) and is observable only the way Windows
/// and Azure show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The uniform VM: nothing installed, stock everything.
    Tidy,
    /// Windows Server 2025: OpenSSH preinstalled (sshd Stopped, Manual), its firewall rule on
    /// the Domain and Private profiles only, and the NIC's network category Public
    /// (OpenNebula/one-apps#345, PowerShell/openssh-portable#669).
    Ws2025PublicProfile,
    /// Administrators holds an Entra ID SID (`S-1-12-1-...`) that cannot be resolved:
    /// `Get-LocalGroupMember` throws in 5.1 (PowerShell/PowerShell#2996, #21617).
    AdminsUnresolvableSid,
    /// The user `opsadmin` is an administrator only through the group `SSH Admins`, which is a
    /// member of Administrators: a direct-members check misses them.
    AdminNestedGroup,
    /// sshd_config hardened: the `Match Group administrators` block commented out
    /// (PowerShell/Win32-OpenSSH#1706) and `AllowGroups administrators "openssh users"`.
    SshdConfigHardened,
    /// sshd_config says `Port 2222`.
    SshdPort2222,
    /// WSUS-managed: `UseWUServer = 1`, so the capability install fails with 0x800f0954 until
    /// the repair-content policy is set (MicrosoftDocs/windowsserverdocs#7843).
    WsusManaged,
    /// OpenSSH installed, but a Windows Update left `C:\ProgramData\ssh\logs` writable by
    /// Authenticated Users: sshd fails to start with error 1067 (PowerShell/Win32-OpenSSH#2282).
    SshdBrokenLogsAcl,
    /// Windows Server 2016 with the WindowsOpenSSH extension already present under the name
    /// `OpenSSH` (Azure PowerShell's docs' name), provisioning state Failed.
    ExtensionOtherName,
    /// OpenSSH installed and running with `DefaultShell` set to PowerShell.
    DefaultShellPowerShell,
    /// Deallocated; just after a start the VM agent has not reported yet, so the first
    /// RunCommand fails with `VMAgentStatusCommunicationError`.
    AgentNotReady,
    /// The NIC's NSG holds a deny-everything rule at priority 100 (someone's lockdown).
    NsgDenyAll,
    /// The OS disk is full: every file write fails with "There is not enough space on the disk."
    DiskFull,
}

impl Variant {
    /// Every variant, `Tidy` first, in rotation order.
    pub const ALL: [Variant; 13] = [
        Variant::Tidy,
        Variant::Ws2025PublicProfile,
        Variant::AdminsUnresolvableSid,
        Variant::AdminNestedGroup,
        Variant::SshdConfigHardened,
        Variant::SshdPort2222,
        Variant::WsusManaged,
        Variant::SshdBrokenLogsAcl,
        Variant::ExtensionOtherName,
        Variant::DefaultShellPowerShell,
        Variant::AgentNotReady,
        Variant::NsgDenyAll,
        Variant::DiskFull,
    ];

    /// The slots of the rotation (see the module docs).
    pub const ROTATION: usize = 20;

    /// The variant the `index`th VM of a realistic world gets.
    pub fn for_index(index: usize) -> Variant {
        let slot = index % Self::ROTATION;
        Self::ALL.get(slot).copied().unwrap_or(Variant::Tidy)
    }

    /// The tag value (`emulator-variant`).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Tidy => "tidy",
            Variant::Ws2025PublicProfile => "ws2025-public-profile",
            Variant::AdminsUnresolvableSid => "admins-unresolvable-sid",
            Variant::AdminNestedGroup => "admin-nested-group",
            Variant::SshdConfigHardened => "sshd-config-hardened",
            Variant::SshdPort2222 => "sshd-port-2222",
            Variant::WsusManaged => "wsus-managed",
            Variant::SshdBrokenLogsAcl => "sshd-broken-logs-acl",
            Variant::ExtensionOtherName => "extension-other-name",
            Variant::DefaultShellPowerShell => "default-shell-powershell",
            Variant::AgentNotReady => "agent-not-ready",
            Variant::NsgDenyAll => "nsg-deny-all",
            Variant::DiskFull => "disk-full",
        }
    }

    pub fn parse(name: &str) -> Option<Variant> {
        Self::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(name))
    }
}

/// The tag name every VM of a realistic world carries.
pub const VARIANT_TAG: &str = "emulator-variant";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirteen_vms_show_every_variant_and_names_round_trip() {
        let dealt: std::collections::HashSet<Variant> = (0..13).map(Variant::for_index).collect();
        assert_eq!(dealt.len(), Variant::ALL.len());
        for v in Variant::ALL {
            assert_eq!(Variant::parse(v.name()), Some(v));
        }
        let tidy = (0..Variant::ROTATION)
            .filter(|i| Variant::for_index(*i) == Variant::Tidy)
            .count();
        assert_eq!(tidy, 8, "the documented 40 % tidy");
    }

    #[test]
    fn world_kinds_parse() {
        assert_eq!("Realistic".parse::<WorldKind>(), Ok(WorldKind::Realistic));
        assert_eq!("tidy".parse::<WorldKind>(), Ok(WorldKind::Tidy));
        assert!("messy".parse::<WorldKind>().is_err());
    }
}
