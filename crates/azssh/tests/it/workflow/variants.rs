//! `azssh setup` over a realistic world (`--world realistic`): every variant of
//! `reference/WINDOWS-REALITIES.md` ends in a working login with the REAL OpenSSH client, or in
//! the documented refusal whose flag then makes it work (README, "Real Windows estates").
//! `check-prereqs` names what is in the way on each, with the verb that fixes it.

use std::path::PathBuf;
use std::process::{Command, Output};

use azssh_emulator::testing::Emu;
use azssh_emulator::{Variant, VmSummary, WorldKind};
use serde_json::Value;

use crate::harness::{Test, stderr_of, stdout_of};

async fn realistic() -> Emu {
    Emu::builder()
        .world(WorldKind::Realistic)
        .vms(13)
        .seed(5)
        .start()
        .await
}

/// One person's machine: a HOME with a key, for one VM.
struct Desk {
    home: tempfile::TempDir,
    key: PathBuf,
}

impl Desk {
    fn new() -> Desk {
        let home = tempfile::tempdir().unwrap();
        let key = home.path().join("id_ed25519");
        azssh::ssh::keys::generate_key(&key, azssh::ssh::keys::KeyKind::Ed25519, "me@laptop")
            .unwrap();
        Desk { home, key }
    }

    fn azssh(&self, emu: &Emu, args: &[&str]) -> Command {
        let mut cmd = Command::new(Test::bin());
        cmd.args(args)
            .envs(emu.env())
            .current_dir(self.home.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE")
            .stdin(std::process::Stdio::null())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("XDG_STATE_HOME", self.home.path().join(".state"))
            .env("AZSSH_OUTPUT", "json");
        cmd
    }

    /// `azssh setup` for the VM as `user`, with extra flags; off the async runtime.
    async fn setup(&self, emu: &Emu, vm: &VmSummary, user: &str, extra: &[&str]) -> Output {
        let public = format!("{}.pub", self.key.display());
        let mut args = vec![
            "setup",
            "-g",
            &vm.resource_group,
            "-n",
            &vm.name,
            "--local-user",
            user,
            "--source",
            "127.0.0.1",
            "--key",
            &public,
        ];
        args.extend_from_slice(extra);
        let mut cmd = self.azssh(emu, &args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    /// The real OpenSSH client, host key checked against what `setup` pinned.
    async fn ssh(&self, emu: &Emu, vm: &VmSummary, user: &str) -> Output {
        let ip = vm.public_ip.unwrap().to_string();
        let known = self.home.path().join(".config/azssh/known_hosts");
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-F",
            "/dev/null",
            "-p",
            &emu.guests().ssh_port().to_string(),
        ])
        .arg("-i")
        .arg(&self.key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=30",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .arg(format!("{user}@{ip}"))
        .arg("hostname");
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

fn have_ssh() -> bool {
    let present = Command::new("ssh").arg("-V").output().is_ok();
    if !present && std::env::var("AZSSH_REQUIRE_SSHD").as_deref() == Ok("1") {
        panic!("AZSSH_REQUIRE_SSHD=1 but the OpenSSH client `ssh` is missing");
    }
    if !present {
        eprintln!("SKIPPED: OpenSSH client `ssh` not found");
    }
    present
}

fn ok(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed\n--- stdout\n{}\n--- stderr\n{}",
        stdout_of(out),
        stderr_of(out)
    );
    serde_json::from_str(&stdout_of(out)).unwrap_or(Value::Null)
}

fn refused(out: &Output, needles: &[&str]) {
    let stderr = stderr_of(out);
    assert_eq!(out.status.code(), Some(1), "expected a refusal\n{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}\n{stderr}");
    }
}

async fn logs_in(desk: &Desk, emu: &Emu, vm: &VmSummary, user: &str) {
    let out = desk.ssh(emu, vm, user).await;
    assert!(
        out.status.success(),
        "{} ({}): ssh failed: {}",
        vm.name,
        vm.variant.name(),
        stderr_of(&out)
    );
    let host = stdout_of(&out).trim().to_ascii_lowercase();
    assert!(
        vm.name.to_ascii_lowercase().starts_with(&host),
        "{host} vs {}",
        vm.name
    );
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["step"] == name))
        .map(|s| &s["detail"])
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws2025_public_nic_is_closed_by_its_own_firewall_until_setup_adds_a_rule() {
    if !have_ssh() {
        return;
    }
    let emu = realistic().await;
    let vm = emu.variant_vm(Variant::Ws2025PublicProfile);
    let desk = Desk::new();
    // Someone started sshd, opened the NSG and installed the key: only Windows Firewall stands
    // in the way, and the real client cannot get in.
    let rg = vm.resource_group.clone();
    let name = vm.name.clone();
    let public = format!("{}.pub", desk.key.display());
    let prep = format!(
        "let v = vm(\"{rg}\", \"{name}\");\nrun_powershell(v, \"Start-Service sshd\");\nopen_port(v, #{{port: 22, source: \"127.0.0.1\", permanent: true}});\ncopy_key(v, \"{public}\", #{{user: \"azureadmin\"}});\npin_host_keys(v);\n(run_powershell(v, \"(Get-NetFirewallRule -Name OpenSSH-Server-In-TCP).Profile; (Get-NetConnectionProfile).NetworkCategory\")).stdout"
    );
    let mut cmd = desk.azssh(&emu, &["run", "-e", &prep]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let shown = ok(&out, "preparing the VM");
    let shown = shown.as_str().unwrap_or_default().to_string();
    assert!(
        shown.contains("Domain, Private") && shown.contains("Public"),
        "{shown}"
    );
    let before = desk.ssh(&emu, &vm, "azureadmin").await;
    assert!(
        !before.status.success(),
        "reachable before setup: {}",
        stdout_of(&before)
    );

    let report = ok(
        &desk.setup(&emu, &vm, "azureadmin", &[]).await,
        "setup on WS2025",
    );
    let enable = step(&report, "enable");
    assert_eq!(enable["network_category"], "Public");
    assert_eq!(enable["firewall_profile"], "Domain, Private");
    assert_eq!(enable["firewall_rule"], "azssh-sshd-22");
    logs_in(&desk, &emu, &vm, "azureadmin").await;
    // The admin's own rule is left as it was.
    let g = emu.guests().shared(&rg, &name).unwrap();
    assert_eq!(
        g.lock()
            .firewall_rule("OpenSSH-Server-In-TCP")
            .unwrap()
            .profile,
        "Domain, Private"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_across_every_variant_logs_in_or_refuses_with_its_fix() {
    if !have_ssh() {
        return;
    }
    let emu = realistic().await;
    for variant in Variant::ALL {
        let vm = emu.variant_vm(variant);
        let desk = Desk::new();
        let v = variant.name();
        match variant {
            // The tidy VM is whatever the seed made it (maybe without a public IP or under
            // JIT); the tidy tests cover it.
            Variant::Tidy => continue,
            Variant::AdminNestedGroup => {
                let report = ok(&desk.setup(&emu, &vm, "opsadmin", &[]).await, v);
                let enable = step(&report, "enable");
                assert_eq!(
                    enable["key_path"], r"C:\ProgramData\ssh\administrators_authorized_keys",
                    "a nested admin's key goes where sshd reads admins' keys"
                );
                logs_in(&desk, &emu, &vm, "opsadmin").await;
            }
            Variant::SshdPort2222 => {
                refused(
                    &desk.setup(&emu, &vm, "azureadmin", &[]).await,
                    &["listens on port 2222", "--set-sshd-port"],
                );
                ok(
                    &desk
                        .setup(&emu, &vm, "azureadmin", &["--set-sshd-port"])
                        .await,
                    v,
                );
                logs_in(&desk, &emu, &vm, "azureadmin").await;
            }
            Variant::WsusManaged => {
                refused(
                    &desk.setup(&emu, &vm, "azureadmin", &[]).await,
                    &["WSUS", "UseWUServer", "--allow-windows-update"],
                );
                let report = ok(
                    &desk
                        .setup(&emu, &vm, "azureadmin", &["--allow-windows-update"])
                        .await,
                    v,
                );
                assert_eq!(step(&report, "enable")["windows_update_policy_set"], true);
                logs_in(&desk, &emu, &vm, "azureadmin").await;
            }
            Variant::SshdBrokenLogsAcl => {
                let report = ok(&desk.setup(&emu, &vm, "azureadmin", &[]).await, v);
                assert_eq!(step(&report, "enable")["repaired"], "logs folder ACL");
                logs_in(&desk, &emu, &vm, "azureadmin").await;
            }
            Variant::NsgDenyAll => refused(
                &desk.setup(&emu, &vm, "azureadmin", &[]).await,
                &["deny-all-inbound-lockdown", "priority 100", "--priority"],
            ),
            Variant::DiskFull => refused(
                &desk.setup(&emu, &vm, "azureadmin", &[]).await,
                &["disk is full", "free space"],
            ),
            Variant::SshdConfigHardened => {
                let report = ok(&desk.setup(&emu, &vm, "azureadmin", &[]).await, v);
                let enable = step(&report, "enable");
                assert_eq!(
                    enable["key_path"], r"C:\Users\azureadmin\.ssh\authorized_keys",
                    "with the Match block commented out sshd reads admins' own file"
                );
                assert_eq!(
                    enable["allow_groups"],
                    serde_json::json!(["administrators", "openssh users"])
                );
                logs_in(&desk, &emu, &vm, "azureadmin").await;
            }
            Variant::Ws2025PublicProfile
            | Variant::AdminsUnresolvableSid
            | Variant::ExtensionOtherName
            | Variant::DefaultShellPowerShell
            | Variant::AgentNotReady => {
                ok(&desk.setup(&emu, &vm, "azureadmin", &[]).await, v);
                logs_in(&desk, &emu, &vm, "azureadmin").await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prereqs_names_what_is_in_the_way_with_the_verb_that_fixes_it() {
    let emu = realistic().await;
    let expect: &[(Variant, &str, &str)] = &[
        (Variant::Ws2025PublicProfile, "firewall", "azssh enable-ssh"),
        (Variant::WsusManaged, "openssh", "--allow-windows-update"),
        (
            Variant::SshdBrokenLogsAcl,
            "sshd_starts",
            "azssh enable-ssh",
        ),
        (Variant::SshdPort2222, "sshd_port", "--set-sshd-port"),
        (Variant::NsgDenyAll, "nsg_deny", "never overrides"),
        (Variant::DiskFull, "disk_space", "free space"),
        (Variant::AgentNotReady, "running", "azssh setup"),
        (Variant::ExtensionOtherName, "openssh", "azssh enable-ssh"),
    ];
    for (variant, check, fix) in expect {
        let vm = emu.variant_vm(*variant);
        let desk = Desk::new();
        let rg = format!("resource_group={}", vm.resource_group);
        let name = format!("name={}", vm.name);
        let mut cmd = desk.azssh(
            &emu,
            &["run", "check-prereqs", "--arg", &rg, "--arg", &name],
        );
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let report = ok(&out, variant.name());
        let problems: Vec<&str> = report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(problems.contains(check), "{}: {problems:?}", variant.name());
        let fixes = report["fixes"].to_string();
        assert!(fixes.contains(fix), "{}: {fixes}", variant.name());
    }
    // A tidy, ready VM after setup has nothing in the way.
    let vm = emu.variant_vm(Variant::DefaultShellPowerShell);
    let desk = Desk::new();
    ok(&desk.setup(&emu, &vm, "azureadmin", &[]).await, "setup");
    let rg = format!("resource_group={}", vm.resource_group);
    let name = format!("name={}", vm.name);
    let mut cmd = desk.azssh(
        &emu,
        &["run", "check-prereqs", "--arg", &rg, "--arg", &name],
    );
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let report = ok(&out, "check-prereqs after setup");
    assert_eq!(report["ready"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_groups_refuses_a_standard_user_until_fix_sshd_config_adds_them() {
    if !have_ssh() {
        return;
    }
    let emu = realistic().await;
    let vm = emu.variant_vm(Variant::SshdConfigHardened);
    // Creating the guest (a RunCommand) before adding a user who has signed in once.
    let desk = Desk::new();
    let probe = format!(
        "run_powershell(vm(\"{}\", \"{}\"), \"hostname\").stdout",
        vm.resource_group, vm.name
    );
    let mut cmd = desk.azssh(&emu, &["run", "-e", &probe]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    ok(&out, "probe");
    emu.guests()
        .shared(&vm.resource_group, &vm.name)
        .unwrap()
        .lock()
        .add_user("nina", false, true);

    refused(
        &desk.setup(&emu, &vm, "nina", &[]).await,
        &[
            "AllowGroups `administrators, openssh users`",
            "--fix-sshd-config",
        ],
    );
    let report = ok(
        &desk.setup(&emu, &vm, "nina", &["--fix-sshd-config"]).await,
        "setup --fix-sshd-config",
    );
    let enable = step(&report, "enable");
    assert_eq!(enable["sshd_config_fixed"], "added to group openssh users");
    assert_eq!(enable["key_path"], r"C:\Users\nina\.ssh\authorized_keys");
    logs_in(&desk, &emu, &vm, "nina").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_setup_over_the_realistic_world_ends_each_vm_in_a_login_or_its_documented_refusal() {
    if !have_ssh() {
        return;
    }
    let emu = realistic().await;
    let desk = Desk::new();
    let sub = emu.handle.subscription_id().to_string();
    let wanted: Vec<VmSummary> = Variant::ALL
        .iter()
        .filter(|v| **v != Variant::Tidy)
        .map(|v| emu.variant_vm(*v))
        .collect();
    let ids: Vec<String> = wanted
        .iter()
        .map(|v| {
            format!(
                "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
                v.resource_group, v.name
            )
        })
        .collect();
    let targets = desk.home.path().join("targets.txt");
    std::fs::write(&targets, ids.join("\n") + "\n").unwrap();
    let key = format!("key={}.pub", desk.key.display());
    let mut cmd = desk.azssh(
        &emu,
        &[
            "fleet",
            "setup-ssh",
            "--targets",
            &targets.display().to_string(),
            "--arg",
            "source=127.0.0.1",
            "--arg",
            &key,
            "--arg",
            "user=azureadmin",
            "--concurrency",
            "4",
        ],
    );
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let rows: Vec<Value> = serde_json::from_str::<Value>(&stdout_of(&out))
        .unwrap_or(Value::Null)
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rows.len(), wanted.len(), "{}", stderr_of(&out));
    // The documented refusals, by kind; every other variant logs in.
    let refusals = [
        (Variant::SshdPort2222, "workflow.sshd_port"),
        (Variant::WsusManaged, "windows.wsus_blocks_capability"),
        (Variant::NsgDenyAll, "workflow.blocked_by_deny"),
        (Variant::DiskFull, "windows.disk_full"),
    ];
    for vm in &wanted {
        let row = rows
            .iter()
            .find(|r| r["name"].as_str() == Some(vm.name.as_str()))
            .unwrap_or_else(|| panic!("no row for {}", vm.name));
        match refusals.iter().find(|(v, _)| *v == vm.variant) {
            Some((_, kind)) => {
                assert_eq!(row["status"], "failed", "{}: {row}", vm.variant.name());
                assert_eq!(row["error"]["kind"], *kind, "{}: {row}", vm.variant.name());
                assert!(
                    row["error"]["hint"].as_str().is_some_and(|h| !h.is_empty()),
                    "{}: a refusal says what to do: {row}",
                    vm.variant.name()
                );
            }
            None => {
                assert_eq!(row["status"], "ok", "{}: {row}", vm.variant.name());
                logs_in(&desk, &emu, vm, "azureadmin").await;
            }
        }
    }
    assert_eq!(out.status.code(), Some(1), "some VMs refused: exit 1");
}
