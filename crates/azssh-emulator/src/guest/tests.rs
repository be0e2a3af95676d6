//! The guest model's own rules: host keys, the extension, and how sshd reads key files.
#![allow(clippy::unwrap_used)]

use super::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me@laptop";

fn key() -> PublicKey {
    PublicKey::from_openssh(KEY).unwrap()
}

fn admin_file(g: &mut Guest, bytes: &[u8], inherited: bool, sids: &[&str]) {
    g.create_dir(r"C:\ProgramData\ssh");
    g.write_file(ADMIN_KEYS_FILE, bytes, false).unwrap();
    let file = g.file_mut(ADMIN_KEYS_FILE).unwrap();
    file.acl.inherited = inherited;
    file.acl.grants = sids
        .iter()
        .map(|s| (s.to_string(), "F".to_string()))
        .collect();
}

#[test]
fn host_keys_are_reproducible_per_seed_and_change_after_a_rebuild() {
    let make = |seed| {
        let mut g = Guest::new(GuestConfig::new(seed, 20348, "VM-1", "azureuser"));
        g.install_openssh_extension();
        g
    };
    let (a, b, other) = (make(1), make(1), make(2));
    let fp = |g: &Guest| {
        g.host_keys()[0]
            .public_key()
            .fingerprint(russh::keys::HashAlg::Sha256)
    };
    assert_eq!(fp(&a), fp(&b));
    assert_ne!(fp(&a), fp(&other));
    let mut rebuilt = make(1);
    rebuilt.rebuild_host_keys();
    assert_ne!(fp(&rebuilt), fp(&a));
    let file = rebuilt
        .file(r"C:\ProgramData\ssh\ssh_host_ed25519_key.pub")
        .unwrap();
    assert!(String::from_utf8_lossy(&file.bytes).starts_with("ssh-ed25519 "));
}

#[test]
fn extension_installs_and_starts_sshd_even_on_2016() {
    let mut g = Guest::new(GuestConfig::new(5, 14393, "OLD", "azureuser"));
    assert!(g.install_openssh_extension());
    assert!(g.sshd_running() && g.firewall_allows(22));
    assert_eq!(g.sshd().unwrap().startup, StartupType::Automatic);
    assert!(!g.capability_installed());
    assert!(
        !g.install_openssh_extension(),
        "a second install changes nothing"
    );
}

#[test]
fn admin_key_file_needs_strict_acl_and_plain_utf8() {
    let mut g = Guest::new(GuestConfig::new(5, 17763, "VM", "azureuser"));
    let good = format!("# azssh\r\nno-pty {KEY}\r\n");
    let strict = [ADMINISTRATORS_SID, SYSTEM_SID];
    admin_file(&mut g, good.as_bytes(), false, &strict);
    assert!(g.is_authorized("azureuser", &key()));
    assert!(
        g.is_authorized("AZUREUSER", &key()),
        "Windows user names ignore case"
    );
    assert!(!g.is_authorized("someone", &key()));
    admin_file(&mut g, good.as_bytes(), true, &[]);
    assert!(
        !g.is_authorized("azureuser", &key()),
        "inherited ACL: Authenticated Users"
    );
    admin_file(
        &mut g,
        good.as_bytes(),
        false,
        &[ADMINISTRATORS_SID, SYSTEM_SID, "S-1-5-11"],
    );
    assert!(!g.is_authorized("azureuser", &key()));
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(good.as_bytes());
    admin_file(&mut g, &bom, false, &strict);
    assert!(!g.is_authorized("azureuser", &key()));
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(good.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    admin_file(&mut g, &utf16, false, &strict);
    assert!(!g.is_authorized("azureuser", &key()));
    assert_eq!(decode_text(&utf16), good);
}

#[test]
fn writing_into_a_missing_folder_fails_like_dotnet() {
    let mut g = Guest::new(GuestConfig::new(5, 17763, "VM", "azureuser"));
    let err = g.write_file(ADMIN_KEYS_FILE, b"x", false).unwrap_err();
    assert!(err.contains("Could not find a part of the path"));
}

#[test]
fn guest_can_be_shared_between_the_arm_and_ssh_sides() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Guest>();
    shareable::<GuestOutput>();
}

#[test]
fn shared_guest_serves_both_sides_and_its_host_key_is_known_before_sshd_starts() {
    let shared = SharedGuest::new(
        Guest::new(GuestConfig::new(9, 17763, "VM-9", "azureuser")),
        std::path::PathBuf::from("/tmp/vm-9"),
    );
    let before = shared.host_key();
    assert!(!shared.sshd_listening());
    shared.install_openssh_extension().unwrap();
    assert!(shared.sshd_running());
    assert_eq!(
        shared.lock().host_keys()[0].public_key(),
        before.public_key()
    );
    assert_eq!(shared.exec("azureuser", "hostname").stdout, "VM-9\r\n");
    assert_eq!(shared.run_powershell("hostname").stdout, "VM-9\r\n");
    assert!(!shared.is_authorized("azureuser", &key()));
}

// ----- the guest executes what it is sent (azssh-pwsh on the guest model) -----

fn installed() -> Guest {
    let mut g = Guest::new(GuestConfig::new(11, 20348, "VM-11", "azureuser"));
    g.install_openssh_extension();
    g
}

#[test]
fn run_command_evaluates_powershell_instead_of_matching_text() {
    let mut g = installed();
    let out = g.run_powershell("$x = 2 + 3; \"sum=$x\"");
    assert_eq!(
        (out.stdout.as_str(), out.exit_code),
        ("sum=5\r\n", 0),
        "{out:?}"
    );
}

#[test]
fn a_parse_error_is_stderr_and_nothing_runs() {
    let mut g = installed();
    let out = g.run_powershell("Stop-Service sshd\nif ($true) {");
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.contains("ParserError"), "{out:?}");
    assert!(
        g.sshd_running(),
        "a script that does not parse runs nothing"
    );
}

#[test]
fn an_unknown_command_is_not_recognized_as_windows_says() {
    let mut g = installed();
    let out = g.run_powershell("Get-Frobnicator -Name x");
    assert_eq!(out.exit_code, 1);
    assert!(
        out.stderr.contains("The term 'Get-Frobnicator' is not recognized as the name of a cmdlet, function, script file, or operable program."),
        "{out:?}"
    );
}

#[test]
fn run_command_parameters_arrive_as_dash_name_value() {
    let mut g = installed();
    let params = [("name".to_string(), "bob".to_string())];
    let out = g.run_powershell_with("param([string]$name)\n\"hi $name\"", &params);
    assert_eq!(out.stdout, "hi bob\r\n", "{out:?}");
    let out = g.run_powershell_with("$args -join ','", &params);
    assert_eq!(out.stdout, "-name,bob\r\n", "{out:?}");
    let out = g.run_powershell_with("\"[$name]\"", &params);
    assert_eq!(out.stdout, "[]\r\n", "no variable without param(): {out:?}");
}

#[test]
fn readme_service_examples_answer_running() {
    let mut g = installed();
    assert_eq!(
        g.run_powershell("(Get-Service sshd).Status").stdout,
        "Running\r\n"
    );
    let out = g.run_powershell("Get-Service sshd | Select-Object -ExpandProperty Status");
    assert_eq!(out.stdout, "Running\r\n", "{out:?}");
    let out = g.run_powershell(
        "Stop-Service sshd; (Get-CimInstance Win32_Service -Filter \"Name='sshd'\").State",
    );
    assert_eq!(out.stdout, "Stopped\r\n", "{out:?}");
    assert!(!g.sshd_running());
}

#[test]
fn default_shell_in_the_registry_picks_the_ssh_exec_shell() {
    let mut g = installed();
    let out = g.exec("azureuser", "echo %COMPUTERNAME% & whoami");
    assert_eq!(out.stdout, "VM-11 \r\nvm-11\\azureuser\r\n", "{out:?}");
    let out = g.exec("azureuser", &format!("echo {}", "x".repeat(8200)));
    assert_eq!(out.stderr, "The command line is too long.\r\n");
    let out = g.run_powershell(
        "New-ItemProperty -Path 'HKLM:\\SOFTWARE\\OpenSSH' -Name DefaultShell -Value 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe' -PropertyType String -Force | Out-Null",
    );
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(g.default_shell(), DefaultShell::PowerShell);
    let out = g.exec(
        "azureuser",
        "$PSVersionTable.PSVersion.Major; (Get-Service sshd).Status",
    );
    assert_eq!(out.stdout, "5\r\nRunning\r\n", "{out:?}");
}

#[test]
fn firewall_rules_and_acls_change_the_model() {
    let mut g = installed();
    let out = g.run_powershell(
        "Disable-NetFirewallRule -Name OpenSSH-Server-In-TCP; (Get-NetFirewallRule -Name OpenSSH-Server-In-TCP).Enabled",
    );
    assert_eq!(out.stdout, "False\r\n", "{out:?}");
    assert!(!g.firewall_allows(22));
    let out = g.run_powershell(
        "New-NetFirewallRule -Name ssh2 -DisplayName 'SSH 2222' -Direction Inbound -Protocol TCP -Action Allow -LocalPort 2222 -Profile Private,Public | Select-Object -ExpandProperty Profile",
    );
    assert_eq!(out.stdout, "Private, Public\r\n", "{out:?}");
    assert!(g.firewall_allows(2222));
    let out = g.run_powershell(
        "$p = 'C:\\ProgramData\\ssh\\x.txt'; Set-Content -Path $p -Value 'k'; icacls.exe $p /inheritance:r /grant '*S-1-5-18:F' | Out-Null; $LASTEXITCODE; (Get-Acl $p).Access | ForEach-Object { $_.IdentityReference.Value }",
    );
    assert_eq!(out.stdout, "0\r\nNT AUTHORITY\\SYSTEM\r\n", "{out:?}");
}

#[test]
fn get_acl_of_a_folder_with_a_modelled_acl_shows_its_grants_and_inheritance() {
    // As `Get-Acl C:\ProgramData\ssh\logs` does on Windows: the explicit grant, plus what
    // ProgramData passes down while the folder inherits; after icacls, only what it granted.
    let mut g = Guest::new(GuestConfig::new(1, 20348, "VM-1", "azureuser"));
    let logs = r"C:\ProgramData\ssh\logs";
    g.create_dir(logs);
    g.dir_acl_mut(logs)
        .grants
        .insert("S-1-5-11".into(), "M".into());
    let sids = |g: &mut Guest| {
        g.run_powershell(&format!(
            "$a = Get-Acl -LiteralPath '{logs}'; [string]$a.AreAccessRulesProtected; @($a.Access | ForEach-Object {{ $_.IdentityReference.Translate([Security.Principal.SecurityIdentifier]).Value }} | Sort-Object -Unique) -join ','"
        ))
        .stdout
    };
    let before = sids(&mut g);
    assert_eq!(
        before.trim(),
        "False\r\nS-1-5-11,S-1-5-18,S-1-5-32-544",
        "{before}"
    );
    let out = g.run_powershell(&format!(
        "icacls.exe '{logs}' /inheritance:r /grant '*S-1-5-32-544:(OI)(CI)F' /grant '*S-1-5-18:(OI)(CI)F' /remove '*S-1-5-11'"
    ));
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let after = sids(&mut g);
    assert_eq!(after.trim(), "True\r\nS-1-5-18,S-1-5-32-544", "{after}");
}

#[test]
fn a_file_carries_its_last_write_time_as_ntfs_does_and_it_can_be_set() {
    let mut g = installed();
    let out = g.run_powershell(
        r#"$p = 'C:\ProgramData\ssh\note.txt'
$before = [DateTime]::UtcNow.AddSeconds(-5)
[IO.File]::WriteAllText($p, 'x')
$f = Get-Item -LiteralPath $p
"fresh=$($f.LastWriteTimeUtc -gt $before)"
[IO.File]::SetLastWriteTimeUtc($p, [DateTime]::UtcNow.AddMinutes(-31))
$old = @(Get-ChildItem -LiteralPath 'C:\ProgramData\ssh' -Filter 'note.*' | Where-Object { $_.LastWriteTimeUtc -lt [DateTime]::UtcNow.AddMinutes(-30) })
"old=$($old.Count)"
[IO.File]::WriteAllText($p, 'y')
"rewritten=$([IO.File]::GetLastWriteTimeUtc($p) -gt $before)""#,
    );
    assert_eq!(out.stderr, "");
    assert_eq!(out.stdout, "fresh=True\r\nold=1\r\nrewritten=True\r\n");
    let missing = g.run_powershell(
        r"[IO.File]::SetLastWriteTimeUtc('C:\ProgramData\ssh\none.txt', [DateTime]::UtcNow)",
    );
    assert!(missing.stderr.contains("none.txt"), "{}", missing.stderr);
}
