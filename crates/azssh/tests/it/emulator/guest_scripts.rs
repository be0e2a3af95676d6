//! The emulated guest driven by azssh's own scripts and by the doc's commands: end states,
//! idempotency, the encoding and ACL pitfalls, and Windows' own failures, all from the guest
//! executing the PowerShell it is sent.
//! (Here, not in the emulator: the judge never links the scripts it judges.)

use azssh::error::UserError;
use azssh::ssh::keys::SshPublicKey;
use azssh::windows::authorized_keys::{ADMINISTRATORS_SID, KeyTarget, SYSTEM_SID, UserName};
use azssh::windows::{
    GuestScript, ScriptResult, encoded_command, install_key_script, setup_script,
};
use azssh_emulator::guest::{
    ADMIN_KEYS_FILE, DefaultShell, E_NO_UPDATE_SOURCE, Guest, GuestConfig, ServiceStatus,
    StartupType,
};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me@laptop";

fn guest(build: u32) -> Guest {
    let mut config = GuestConfig::new(7, build, "VM-7", "azureuser");
    config.users = vec!["bob".into()];
    Guest::new(config)
}

fn key() -> SshPublicKey {
    SshPublicKey::parse(KEY).unwrap()
}

fn run(guest: &mut Guest, script: &str) -> ScriptResult {
    let out = guest.run_powershell(script);
    assert_eq!(out.exit_code, 0, "{out:?}");
    ScriptResult::parse(&out.stdout, &out.stderr).unwrap()
}

#[test]
fn setup_script_leaves_sshd_running_automatic_with_the_firewall_rule_on() {
    let mut g = guest(17763);
    let state = run(&mut g, &setup_script()).setup_state().unwrap();
    assert!(state.changed);
    assert_eq!(
        (state.sshd.as_str(), state.startup.as_str(), state.firewall),
        ("Running", "Automatic", true)
    );
    assert!(g.sshd_running() && g.firewall_allows(22));
    assert_eq!(g.sshd().unwrap().startup, StartupType::Automatic);
    let again = run(&mut g, &setup_script()).setup_state().unwrap();
    assert!(!again.changed, "a second run must change nothing");
}

#[test]
fn setup_recreates_a_missing_firewall_rule_and_enables_a_disabled_one() {
    let mut config = GuestConfig::new(1, 20348, "VM-1", "azureuser");
    config.firewall_rule_on_install = false;
    let mut g = Guest::new(config);
    assert!(run(&mut g, &setup_script()).setup_state().unwrap().firewall);
    let out = g.run_powershell("Disable-NetFirewallRule -Name 'OpenSSH-Server-In-TCP'");
    assert_eq!(out.exit_code, 0);
    assert!(!g.firewall_allows(22));
    assert!(run(&mut g, &setup_script()).setup_state().unwrap().changed);
    assert!(g.firewall_allows(22));
}

#[test]
fn key_install_writes_utf8_without_bom_with_the_admin_acl_and_is_idempotent() {
    let mut g = guest(20348);
    let installed = run(
        &mut g,
        &install_key_script(&key(), &KeyTarget::Administrators),
    )
    .key_installed()
    .unwrap();
    assert!(installed.added && installed.admin);
    let file = g.file(ADMIN_KEYS_FILE).unwrap();
    assert_eq!(file.bytes, format!("{KEY}\r\n").into_bytes());
    assert!(!file.acl.inherited);
    let sids: Vec<&str> = file.acl.grants.keys().map(String::as_str).collect();
    assert_eq!(sids, [SYSTEM_SID, ADMINISTRATORS_SID]);
    assert!(g.is_authorized("azureuser", key().key()));
    let again = run(
        &mut g,
        &install_key_script(&key(), &KeyTarget::Administrators),
    )
    .key_installed()
    .unwrap();
    assert!(!again.added);
    assert_eq!(g.file(ADMIN_KEYS_FILE).unwrap().bytes.len(), KEY.len() + 2);
}

#[test]
fn key_for_a_non_admin_goes_to_the_profile_and_for_an_admin_to_the_admin_file() {
    let mut g = guest(20348);
    let bob = KeyTarget::User(UserName::parse("bob").unwrap());
    let installed = run(&mut g, &install_key_script(&key(), &bob))
        .key_installed()
        .unwrap();
    assert_eq!(installed.path, r"C:\Users\bob\.ssh\authorized_keys");
    assert!(g.is_authorized("bob", key().key()));
    assert!(!g.is_authorized("azureuser", key().key()));
    let admin = KeyTarget::User(UserName::parse("AzureUser").unwrap());
    let installed = run(&mut g, &install_key_script(&key(), &admin))
        .key_installed()
        .unwrap();
    assert_eq!(installed.path, ADMIN_KEYS_FILE);
    assert!(g.is_authorized("azureuser", key().key()));
    let nobody = KeyTarget::User(UserName::parse("nobody").unwrap());
    let result = run(&mut g, &install_key_script(&key(), &nobody));
    assert_eq!(
        result.key_installed().unwrap_err().kind(),
        "windows.step_failed"
    );
}

#[test]
fn doc_one_liner_with_utf8_encoding_writes_a_bom_that_azssh_repairs() {
    let mut g = guest(17763);
    run(&mut g, &setup_script());
    let doc = format!(
        "'{KEY}' | Add-Content 'C:\\ProgramData\\ssh\\administrators_authorized_keys' -Encoding UTF8;icacls.exe 'C:\\ProgramData\\ssh\\administrators_authorized_keys' /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'"
    );
    let out = g.run_powershell(&doc);
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(out.stdout.contains("Successfully processed 1 files"));
    assert_eq!(
        &g.file(ADMIN_KEYS_FILE).unwrap().bytes[..3],
        &[0xEF, 0xBB, 0xBF]
    );
    assert!(
        !g.is_authorized("azureuser", key().key()),
        "sshd does not read a BOM file"
    );
    let fixed = run(
        &mut g,
        &install_key_script(&key(), &KeyTarget::Administrators),
    )
    .key_installed()
    .unwrap();
    assert!(fixed.repaired && !fixed.added);
    assert!(g.is_authorized("azureuser", key().key()));
}

#[test]
fn redirect_append_writes_utf16_which_authorizes_nobody() {
    let mut g = guest(17763);
    run(&mut g, &setup_script());
    let out = g.run_powershell(&format!(
        "'{KEY}' >> C:\\ProgramData\\ssh\\administrators_authorized_keys"
    ));
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(&g.file(ADMIN_KEYS_FILE).unwrap().bytes[..2], &[0xFF, 0xFE]);
    g.run_powershell("icacls C:\\ProgramData\\ssh\\administrators_authorized_keys /inheritance:r /grant *S-1-5-32-544:F /grant *S-1-5-18:F");
    assert!(!g.is_authorized("azureuser", key().key()));
    assert!(
        run(
            &mut g,
            &install_key_script(&key(), &KeyTarget::Administrators)
        )
        .key_installed()
        .unwrap()
        .repaired
    );
    assert!(g.is_authorized("azureuser", key().key()));
}

#[test]
fn localized_guest_refuses_english_group_names_but_not_sids() {
    let mut config = GuestConfig::new(3, 20348, "VM-DE", "azureuser");
    config.admin_group_name = "Administratoren".into();
    let mut g = Guest::new(config);
    run(&mut g, &setup_script());
    g.run_powershell(&format!(
        "'{KEY}' | Add-Content 'C:\\ProgramData\\ssh\\administrators_authorized_keys'"
    ));
    let out = g.run_powershell("icacls.exe 'C:\\ProgramData\\ssh\\administrators_authorized_keys' /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'");
    assert!(
        out.stderr.contains("No mapping between account names"),
        "{out:?}"
    );
    assert!(
        !g.is_authorized("azureuser", key().key()),
        "the ACL still inherits"
    );
    run(
        &mut g,
        &install_key_script(&key(), &KeyTarget::Administrators),
    )
    .key_installed()
    .unwrap();
    assert!(g.is_authorized("azureuser", key().key()));
}

#[test]
fn combined_script_does_setup_key_and_host_keys_in_one_run() {
    let mut g = guest(26100);
    let script = GuestScript::new()
        .setup()
        .install_key(key(), KeyTarget::Administrators)
        .read_host_keys()
        .build();
    let result = run(&mut g, &script);
    assert!(result.setup_state().unwrap().changed);
    assert!(result.key_installed().unwrap().added);
    let host_keys = result.host_keys().unwrap();
    assert_eq!(host_keys.len(), 1);
    assert_eq!(
        host_keys[0].key().key_data(),
        g.host_keys()[0].public_key().key_data()
    );
    assert!(g.is_authorized("azureuser", key().key()));
}

#[test]
fn capability_fails_on_2016_and_without_windows_update_with_the_right_errors() {
    let mut old = guest(14393);
    let err = run(&mut old, &setup_script()).setup_state().unwrap_err();
    assert_eq!(err.kind(), "windows.capability_unavailable");
    assert!(err.hint().unwrap().contains("WindowsOpenSSH"));
    assert!(!old.openssh_installed());

    let mut config = GuestConfig::new(4, 17763, "VM-4", "azureuser");
    config.capability_failure = Some(E_NO_UPDATE_SOURCE);
    let mut offline = Guest::new(config);
    let err = run(&mut offline, &setup_script())
        .setup_state()
        .unwrap_err();
    assert_eq!(err.kind(), "windows.capability_install");
    assert!(err.to_string().contains("0x800f0954"));
    assert!(!offline.openssh_installed());
    let out =
        offline.run_powershell("Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0");
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.contains("0x800f0954"));
}

#[test]
fn docs_capability_command_installs_but_leaves_sshd_stopped_and_manual() {
    let mut g = guest(17763);
    let out = g.run_powershell("Add-WindowsCapability -Online -Name OpenSSH.Server~~~~");
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(out.stdout.contains("Online        : True"));
    let sshd = g.sshd().unwrap();
    assert_eq!(
        (sshd.status, sshd.startup),
        (ServiceStatus::Stopped, StartupType::Manual)
    );
    assert!(g.host_keys().is_empty(), "host keys appear on first start");
    let out = g.run_powershell(
        "Start-Service sshd; Set-Service -Name sshd -StartupType 'Automatic'\nGet-Service sshd",
    );
    assert!(out.stdout.contains("Running  sshd"), "{out:?}");
    assert_eq!(g.host_keys().len(), 1);
    let out = g.run_powershell("Get-WindowsCapability -Online -Name OpenSSH.Server*");
    assert!(out.stdout.contains("State : Installed"), "{out:?}");
}

#[test]
fn unknown_commands_fail_as_windows_says_and_the_script_goes_on() {
    let mut g = guest(17763);
    g.run_powershell("Add-WindowsCapability -Online -Name OpenSSH.Server~~~~");
    let out = g.run_powershell("Get-Frobnicator sshd; Start-Service sshd");
    assert!(
        out.stderr.contains(
            "The term 'Get-Frobnicator' is not recognized as the name of a cmdlet, function, script file, or operable program."
        ),
        "{out:?}"
    );
    assert!(
        g.sshd_running(),
        "an unknown command ends only its statement"
    );
    let out =
        g.run_powershell("$ErrorActionPreference = 'Stop'; Get-Frobnicator; Stop-Service sshd");
    assert_eq!(out.exit_code, 1);
    assert!(g.sshd_running(), "under Stop nothing after the error runs");
    for (script, expected) in [
        (
            "Invoke-Expression 'Get-Service sshd | % Status'",
            "Running\r\n",
        ),
        ("Write-Output \"$(hostname)\"", "VM-7\r\n"),
        (
            "Get-Service | Where-Object Name -eq sshd | Select-Object -ExpandProperty StartType",
            "Manual\r\n",
        ),
    ] {
        let out = g.run_powershell(script);
        assert_eq!(
            (out.stdout.as_str(), out.exit_code),
            (expected, 0),
            "{script}: {out:?}"
        );
    }
    let out = g.run_powershell("Start-Service ssh-agent");
    assert!(out.stderr.contains("cannot be started"), "{out:?}");
}

#[test]
fn a_tampered_script_runs_as_written_and_is_caught_by_its_own_checks() {
    let mut g = guest(17763);
    let script = install_key_script(&key(), &KeyTarget::Administrators);
    let tampered = script.replace("$AzsshUser = ''", "$AzsshUser = ''; calc.exe");
    let out = g.run_powershell(&tampered);
    assert_eq!(out.exit_code, 1, "{out:?}");
    assert!(
        out.stderr.contains("'calc.exe' is not recognized"),
        "{out:?}"
    );
    assert!(g.file(ADMIN_KEYS_FILE).is_none());
    // Inheritance left on: the key is written, but the script's read-back refuses it, and so
    // does sshd.
    let result = run(&mut g, &script.replace("/inheritance:r", "/inheritance:e"));
    assert_eq!(
        result.key_installed().unwrap_err().kind(),
        "windows.key_not_verified"
    );
    assert!(!g.is_authorized("azureuser", key().key()));
}

#[test]
fn ssh_exec_runs_cmd_builtins_and_encoded_powershell() {
    let mut g = guest(17763);
    assert_eq!(g.exec("azureuser", "hostname").stdout, "VM-7\r\n");
    assert_eq!(g.exec("azureuser", "whoami").stdout, "vm-7\\azureuser\r\n");
    assert_eq!(g.exec("azureuser", "echo hi there").stdout, "hi there\r\n");
    let line = format!(
        "powershell -NoProfile -NonInteractive -EncodedCommand {}",
        encoded_command("Write-Output 'it''s'; whoami")
    );
    let out = g.exec("azureuser", &line);
    assert_eq!(out.stdout, "it's\r\nvm-7\\azureuser\r\n", "{out:?}");
    let out = g.exec("azureuser", "notepad");
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.contains("is not recognized"));
    let out = g.exec(
        "azureuser",
        "powershell -Command \"(Get-Service sshd).Status\"",
    );
    assert!(out.stderr.contains("Cannot find any service"), "{out:?}");
    g.set_default_shell(DefaultShell::PowerShell);
    assert_eq!(g.exec("azureuser", "Write-Output 'ps'").stdout, "ps\r\n");
}

#[test]
fn error_action_stop_ends_the_script_at_the_first_error() {
    let mut g = guest(17763);
    let out = g.run_powershell("Start-Service sshd\nWrite-Output 'after'");
    assert_eq!(out.stdout, "after\r\n", "continue by default: {out:?}");
    assert!(out.stderr.contains("Cannot find any service"));
    let out = g.run_powershell(
        "$ErrorActionPreference = 'Stop'\nStart-Service sshd\nWrite-Output 'after'",
    );
    assert_eq!((out.exit_code, out.stdout.as_str()), (1, ""));
    assert!(out.stderr.contains("Cannot find any service"));
    assert_eq!(g.exec("azureuser", "exit /b 4").exit_code, 4);
    assert_eq!(g.run_powershell("exit 3").exit_code, 3);
}

#[test]
fn odd_input_never_panics_the_guest() {
    let mut g = guest(17763);
    let mut inputs: Vec<String> = azssh::windows::quote::INJECTION_CORPUS
        .iter()
        .map(|s| s.to_string())
        .collect();
    inputs.extend(
        [
            "'unterminated",
            "\"unterminated",
            "# azssh:begin key",
            "# azssh:begin nope\n# azssh:end nope",
            "$null =",
            "$x",
            "icacls",
            "icacls x /grant",
            "Set-Service sshd -StartupType",
            "| |",
            ";;;",
            "Write-Output \u{2019}x\u{2019}\u{2019}",
            "\u{feff}hostname",
            "Add-Content",
            "'a' | Out-File",
        ]
        .map(String::from),
    );
    for input in inputs {
        // Whatever it is, it runs (or fails to parse) without panicking the emulator.
        let _ = g.run_powershell(&input);
        let _ = g.exec("azureuser", &input);
    }
    let out = g.run_powershell("$null =");
    assert!(out.stderr.contains("ParserError"), "{out:?}");
    assert!(!g.openssh_installed());
}

#[test]
fn doc_and_arm_example_filters_are_modelled() {
    let mut g = guest(17763);
    let out =
        g.run_powershell("Get-WindowsCapability -Online | Where-Object Name -like 'OpenSSH*'");
    assert!(
        out.stdout.contains("OpenSSH.Client~~~~0.0.1.0")
            && out.stdout.contains("State : NotPresent"),
        "{out:?}"
    );
    let out = g.run_powershell("Get-Service sshd | Select-Object Status");
    assert!(out.stderr.contains("Cannot find any service"), "{out:?}");
    g.run_powershell("Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0");
    let out =
        g.run_powershell("$ErrorActionPreference='Stop'\nGet-Service sshd | Select-Object Status");
    assert_eq!(
        out.stdout, "\r\nStatus\r\n------\r\nStopped\r\n\r\n",
        "{out:?}"
    );
}

#[test]
fn key_for_a_user_who_never_signed_in_is_refused_not_misplaced() {
    let mut g = guest(20348);
    g.add_user("carol", false, false);
    let carol = KeyTarget::User(UserName::parse("carol").unwrap());
    let err = run(&mut g, &install_key_script(&key(), &carol))
        .key_installed()
        .unwrap_err();
    assert!(err.to_string().contains("has no profile"), "{err}");
    assert!(!g.dir_exists(r"C:\Users\carol"), "no stray profile folder");
    g.add_user("dave", true, false);
    let dave = KeyTarget::User(UserName::parse("dave").unwrap());
    assert!(
        run(&mut g, &install_key_script(&key(), &dave))
            .key_installed()
            .unwrap()
            .admin
    );
    assert!(g.is_authorized("dave", key().key()));
}

#[test]
fn service_check_after_the_extension_repairs_a_stopped_sshd_without_the_capability() {
    let mut g = guest(14393);
    g.install_openssh_extension();
    g.run_powershell("Stop-Service sshd; Set-Service sshd -StartupType Manual");
    assert!(!g.sshd_running());
    let state = run(&mut g, &azssh::windows::service_script())
        .setup_state()
        .unwrap();
    assert!(state.changed && g.sshd_running());
    assert_eq!(state.startup, "Automatic");
    assert!(
        !run(&mut g, &azssh::windows::service_script())
            .setup_state()
            .unwrap()
            .changed
    );
    assert!(!g.capability_installed());
    let bare = run(&mut guest(14393), &azssh::windows::service_script());
    assert_eq!(
        bare.setup_state().unwrap_err().kind(),
        "windows.step_failed"
    );
}

/// What `azure::run_command` appends to every script (its exit-code trailer).
fn with_trailer(script: &str) -> String {
    format!(
        "{script}\n$azsshOk = $?; $azsshCode = $LASTEXITCODE\nif ($azsshOk) {{ $azsshCode = 0 }} elseif (-not $azsshCode) {{ $azsshCode = 1 }}; Write-Output ('AZSSH-EXIT-0123abcd:' + $azsshCode)"
    )
}

#[test]
fn run_command_exit_code_trailer_reports_the_last_statement() {
    let mut g = guest(17763);
    let out = g.run_powershell(&with_trailer(&setup_script()));
    assert!(out.stdout.ends_with("AZSSH-EXIT-0123abcd:0\r\n"), "{out:?}");
    assert!(
        ScriptResult::parse(&out.stdout, "")
            .unwrap()
            .setup_state()
            .is_ok()
    );
    let out = g.run_powershell(&with_trailer("Stop-Service sshd; Start-Service nosuch"));
    assert!(out.stdout.ends_with("AZSSH-EXIT-0123abcd:1\r\n"), "{out:?}");
    let out = g.run_powershell(&with_trailer(
        "Start-Service sshd\nStart-Service -Name sshd -Foo",
    ));
    assert!(
        out.stderr
            .contains("A parameter cannot be found that matches parameter name 'Foo'."),
        "{out:?}"
    );
    assert!(out.stdout.ends_with("AZSSH-EXIT-0123abcd:1\r\n"), "{out:?}");
    let out = g.run_powershell(&with_trailer(
        "Get-Service sshd | Select-Object Status; Stop-Service sshd; Stop-Service sshd2",
    ));
    assert!(out.stdout.ends_with("AZSSH-EXIT-0123abcd:1\r\n"), "{out:?}");
    let mut de = Guest::new({
        let mut c = GuestConfig::new(3, 20348, "VM-DE", "azureuser");
        c.admin_group_name = "Administratoren".into();
        c
    });
    de.run_powershell(&setup_script());
    de.run_powershell(&format!(
        "'{KEY}' | Add-Content 'C:\\ProgramData\\ssh\\administrators_authorized_keys'"
    ));
    let out = de.run_powershell(&with_trailer(
        "icacls.exe 'C:\\ProgramData\\ssh\\administrators_authorized_keys' /inheritance:r /grant 'Administrators:F'",
    ));
    assert!(
        out.stdout.ends_with("AZSSH-EXIT-0123abcd:1332\r\n"),
        "{out:?}"
    );
    let out = g.run_powershell(&with_trailer("Start-Service sshd; hostname"));
    assert!(
        out.stdout.ends_with("VM-7\r\nAZSSH-EXIT-0123abcd:0\r\n"),
        "{out:?}"
    );
}
