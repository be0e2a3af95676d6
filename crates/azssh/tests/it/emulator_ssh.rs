//! End to end through the emulator's guests: the documented steps done with azssh's own ARM
//! client and PowerShell builders, then the REAL OpenSSH `ssh` client logs into the guest.

use std::process::Command;

use azssh::azure::run_command::{RunCommandOptions, run_powershell};
use azssh::azure::vm::get_vm;
use azssh::azure::{ArmClient, ArmConfig};
use azssh::ssh::keys::{KeyKind, generate_key};
use azssh::windows::authorized_keys::KeyTarget;
use azssh::windows::combined::GuestScript;
use azssh::windows::result::ScriptResult;
use azssh::workflow::nsg::{OpenPort, open_port};
use azssh_emulator::testing::Emu;

/// The emulator with Windows guests (the one fixture, `azssh_emulator::testing::Emu`).
pub(crate) async fn emulator(vms: usize) -> Emu {
    Emu::builder().vms(vms).start().await
}

pub(crate) fn client(emu: &Emu) -> ArmClient {
    let cfg = ArmConfig::with_static_token(
        emu.handle.endpoint(),
        emu.handle.subscription_id(),
        emu.handle.token().expose(),
    )
    .expect("config");
    ArmClient::new(cfg).expect("client")
}

/// A running VM with a public IP on Windows Server 2019 or newer (capability path).
pub(crate) fn pick_vm(emu: &Emu) -> (String, String) {
    let v = emu.ready_vm();
    (v.resource_group, v.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_openssh_client_logs_into_a_guest_after_setup() {
    if Command::new("ssh").arg("-V").output().is_err() {
        eprintln!("SKIPPED: OpenSSH client `ssh` not found");
        return;
    }
    let emu = emulator(12).await;
    let arm = client(&emu);
    let (rg, name) = pick_vm(&emu);
    let vm = get_vm(&arm, &rg, &name).await.expect("vm");
    let ip = vm.public_ip.clone().expect("public ip");

    let dir = tempfile::tempdir().expect("tmp");
    let key_path = dir.path().join("id_ed25519");
    let key = generate_key(&key_path, KeyKind::Ed25519, "e2e").expect("key");
    let public = azssh::ssh::keys::SshPublicKey::parse(&key.public_line).expect("pub");

    // Before setup nothing listens: the port is closed.
    let port = emu.guests().ssh_port();
    assert!(
        std::net::TcpStream::connect((ip.as_str(), port)).is_err(),
        "sshd answered before setup"
    );

    let script = GuestScript::new()
        .setup()
        .install_key(public, KeyTarget::Administrators)
        .read_host_keys()
        .build();
    let lines: Vec<String> = script.lines().map(str::to_string).collect();
    let out = run_powershell(&arm, &vm.id, &lines, &RunCommandOptions::default())
        .await
        .expect("runcommand");
    let result = ScriptResult::parse(&out.stdout, &out.stderr).expect("result line");
    let state = result.setup_state().expect("setup");
    assert!(
        state.sshd.eq_ignore_ascii_case("running")
            && state.startup.eq_ignore_ascii_case("automatic")
            && state.firewall,
        "{state:?}"
    );
    let host_keys = result.host_keys().expect("host keys");
    assert!(!host_keys.is_empty());

    // sshd runs, but the NSG does not admit us yet.
    let known = dir.path().join("known_hosts");
    let lines: Vec<String> = host_keys
        .iter()
        .map(|k| format!("[{ip}]:{port} {}", k.to_line()))
        .collect();
    std::fs::write(&known, lines.join("\n") + "\n").expect("known_hosts");
    let user = vm.admin_username.clone().expect("admin");
    let target = format!("{user}@{ip}");
    let ssh = move |dir: &std::path::Path| {
        Command::new("ssh")
            .args(["-F", "/dev/null", "-p", &port.to_string(), "-i"])
            .arg(dir.join("id_ed25519"))
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=30",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                dir.join("known_hosts").display()
            ))
            .arg(&target)
            .arg("hostname")
            .output()
            .expect("run ssh")
    };
    let ssh2 = ssh.clone();
    let denied = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || ssh2(&d)
    })
    .await
    .expect("join");
    assert!(
        !denied.status.success(),
        "NSG should not admit before the rule"
    );

    open_port(
        &arm,
        &vm,
        &OpenPort {
            port: 22,
            sources: vec!["127.0.0.1/32".into()],
            permanent: true,
            ..Default::default()
        },
    )
    .await
    .expect("open port");

    let d = dir.path().to_path_buf();
    let ok = tokio::task::spawn_blocking(move || ssh(&d))
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        stdout.trim().to_lowercase(),
        vm.computer_name
            .clone()
            .expect("computer name")
            .to_lowercase()
    );

    // The guest model shows the documented end state.
    let guest = emu.guests().shared(&rg, &name).expect("guest exists");
    let g = guest.lock();
    let file = g
        .file(r"C:\ProgramData\ssh\administrators_authorized_keys")
        .expect("key file");
    assert!(!file.bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");
    assert!(
        std::str::from_utf8(&file.bytes)
            .expect("utf-8")
            .contains(key.public_line.split(' ').nth(1).expect("b64"))
    );
}
