//! The emulated Windows guest seen from outside, as the emulator's RunCommand and SSH sides use
//! it: azssh's own scripts enable SSH and install a key, and the result is what Windows OpenSSH
//! would accept.

use azssh::emulator::guest::{Guest, GuestConfig};
use azssh::ssh::keys::SshPublicKey;
use azssh::windows::{GuestScript, KeyTarget, ScriptResult, UserName, powershell_command_line};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me@laptop";

#[test]
fn documented_workflow_on_an_emulated_2022_guest() -> Result<(), Box<dyn std::error::Error>> {
    let mut guest = Guest::new(GuestConfig::new(42, 20348, "web-01", "azureuser"));
    let key = SshPublicKey::parse(KEY)?;
    assert!(!guest.is_authorized("azureuser", key.key()));

    // One RunCommand: enable SSH, install the key, read the host keys.
    let script = GuestScript::new()
        .setup()
        .install_key(key.clone(), KeyTarget::User(UserName::parse("azureuser")?))
        .read_host_keys()
        .build();
    let out = guest.run_powershell(&script);
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    let result = ScriptResult::parse(&out.stdout, &out.stderr)?;
    let sshd = result.setup_state()?;
    assert_eq!(
        (sshd.sshd.as_str(), sshd.startup.as_str()),
        ("Running", "Automatic")
    );
    assert!(result.key_installed()?.admin);
    let pinned = result.host_keys()?;

    // What the SSH side then finds: sshd up, port 22 open, the key accepted, the host key the
    // one RunCommand reported, and PowerShell reachable through -EncodedCommand.
    assert!(guest.sshd_running() && guest.firewall_allows(22));
    assert!(guest.is_authorized("azureuser", key.key()));
    assert_eq!(
        pinned[0].key().key_data(),
        guest.host_keys()[0].public_key().key_data()
    );
    let out = guest.exec("azureuser", &powershell_command_line("hostname; whoami"));
    assert_eq!(out.stdout, "web-01\r\nweb-01\\azureuser\r\n");
    Ok(())
}
