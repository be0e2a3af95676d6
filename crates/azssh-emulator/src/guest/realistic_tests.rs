//! The realistic world's variants, seen through PowerShell exactly as a script on the VM sees
//! them (`Get-NetFirewallRule`, `Get-NetConnectionProfile`, `Get-LocalGroupMember`, the
//! registry, `sshd -T`, `icacls`), and what sshd then admits.
#![allow(clippy::unwrap_used)]

use super::realistic::{NESTED_ADMIN, SSHD_LOGS};
use super::*;
use crate::variants::Variant;

fn guest(variant: Variant, build: u32) -> Guest {
    let mut config = GuestConfig::new(7, build, "VM-1", "azureadmin");
    config.variant = variant;
    Guest::new(config)
}

fn ps(g: &mut Guest, script: &str) -> GuestOutput {
    g.run_powershell(script)
}

#[test]
fn ws2025_rule_covers_domain_and_private_while_the_nic_is_public() {
    let mut g = guest(Variant::Ws2025PublicProfile, 26100);
    let out = ps(
        &mut g,
        "(Get-NetFirewallRule -Name OpenSSH-Server-In-TCP).Profile; (Get-NetConnectionProfile).NetworkCategory; (Get-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0').State; (Get-Service sshd).Status",
    );
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["Domain, Private", "Public", "Installed", "Stopped"],
        "{}",
        out.stderr
    );
    ps(&mut g, "Start-Service sshd");
    assert!(g.sshd_running());
    assert!(!g.firewall_admits(22), "the Public NIC is not covered");
    ps(
        &mut g,
        "Set-NetFirewallRule -Name OpenSSH-Server-In-TCP -Profile Any",
    );
    assert!(g.firewall_admits(22));
}

#[test]
fn unresolvable_sid_makes_get_localgroupmember_throw_as_in_5_1() {
    let mut g = guest(Variant::AdminsUnresolvableSid, 20348);
    let out = ps(&mut g, "Get-LocalGroupMember -SID S-1-5-32-544");
    assert!(
        out.stderr
            .contains("Failed to compare two elements in the array."),
        "{}",
        out.stderr
    );
    // Other groups still list.
    let out = ps(&mut g, "@(Get-LocalGroupMember -Group Users).Count");
    assert_eq!(out.stdout.trim(), "1", "{}", out.stderr);
}

#[test]
fn nested_admin_is_listed_as_a_group_member_but_sshd_treats_them_as_admin() {
    let mut g = guest(Variant::AdminNestedGroup, 20348);
    let out = ps(
        &mut g,
        "Get-LocalGroupMember -SID S-1-5-32-544 | ForEach-Object { $_.ObjectClass + ' ' + $_.Name }",
    );
    assert!(
        out.stdout.contains(r"Group VM-1\SSH Admins"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(NESTED_ADMIN), "{}", out.stdout);
    assert!(g.is_admin(NESTED_ADMIN));
    g.install_openssh_extension();
    let out = ps(
        &mut g,
        "& 'C:\\Program Files\\OpenSSH\\sshd.exe' -T -C 'user=opsadmin,host=x,addr=127.0.0.1' | Where-Object { $_ -like 'authorizedkeysfile *' }",
    );
    assert_eq!(
        out.stdout.trim(),
        "authorizedkeysfile __PROGRAMDATA__/ssh/administrators_authorized_keys",
        "{}",
        out.stderr
    );
}

#[test]
fn wsus_blocks_the_capability_until_the_repair_policy_is_set() {
    let mut g = guest(Variant::WsusManaged, 17763);
    let out = ps(
        &mut g,
        "(Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU').UseWUServer\ntry { $null = Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0' -ErrorAction Stop } catch { '0x{0:x8}' -f $_.Exception.HResult }",
    );
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["1", "0x800f0954"],
        "{}",
        out.stderr
    );
    let out = ps(
        &mut g,
        "$k = 'HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\Servicing'\nif (-not (Test-Path $k)) { $null = New-Item -Path $k -Force }\n$null = New-ItemProperty -Path $k -Name RepairContentServerSource -Value 2 -PropertyType DWord -Force\n$null = Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0'\n(Get-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0').State",
    );
    assert_eq!(out.stdout.trim(), "Installed", "{}", out.stderr);
}

#[test]
fn broken_logs_acl_fails_sshd_with_1067_until_icacls_repairs_it() {
    let mut g = guest(Variant::SshdBrokenLogsAcl, 17763);
    let out = ps(&mut g, "Start-Service sshd");
    assert!(
        out.stderr
            .contains("Failed to start service 'OpenSSH SSH Server (sshd)'."),
        "{}",
        out.stderr
    );
    let out = ps(&mut g, "sc.exe query sshd");
    assert!(
        out.stdout.contains("WIN32_EXIT_CODE    : 1067"),
        "{}",
        out.stdout
    );
    let out = ps(
        &mut g,
        &format!(
            "icacls.exe '{SSHD_LOGS}' /inheritance:r /grant '*S-1-5-18:(OI)(CI)F' /grant '*S-1-5-32-544:(OI)(CI)F' /remove '*S-1-5-11'; $LASTEXITCODE; Start-Service sshd; (Get-Service sshd).Status"
        ),
    );
    assert!(
        out.stdout.trim_end().ends_with("Running"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn hardened_config_reads_admins_keys_from_their_profile_and_locks_out_others() {
    let mut g = guest(Variant::SshdConfigHardened, 20348);
    g.add_user("bob", false, true);
    let key = PublicKey::from_openssh(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me@laptop",
    )
    .unwrap();
    let line = format!("{}\r\n", key.to_openssh().unwrap());
    g.create_dir(r"C:\Users\azureadmin\.ssh");
    g.write_file(
        r"C:\Users\azureadmin\.ssh\authorized_keys",
        line.as_bytes(),
        false,
    )
    .unwrap();
    assert!(g.is_authorized("azureadmin", &key));
    g.create_dir(r"C:\Users\bob\.ssh");
    g.write_file(r"C:\Users\bob\.ssh\authorized_keys", line.as_bytes(), false)
        .unwrap();
    assert!(!g.is_authorized("bob", &key), "AllowGroups locks bob out");
    ps(
        &mut g,
        "Add-LocalGroupMember -Group 'openssh users' -Member bob",
    );
    assert!(g.is_authorized("bob", &key));
}

#[test]
fn a_full_disk_fails_every_write_with_the_net_message() {
    let mut g = guest(Variant::DiskFull, 20348);
    let out = ps(
        &mut g,
        "try { [IO.File]::WriteAllText('C:\\Windows\\Temp\\x.txt', 'x') } catch { $_.Exception.Message }",
    );
    assert!(
        out.stdout
            .contains("There is not enough space on the disk."),
        "{}{}",
        out.stdout,
        out.stderr
    );
}
