//! End-to-end: the scripts azssh sends, built by the product's own builders
//! (`windows::GuestScript`), parse, pass the Windows PowerShell 5.1 guard rail and run in the
//! `pwsh` interpreter against a stub guest. (This test lived in `azssh-pwsh` with copies of the
//! templates; `azssh-core` already has `azssh-pwsh` as a dev-dependency, so a dev-dependency the
//! other way would be a cycle: the test lives here and builds the real scripts instead.)
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::rc::Rc;

use azssh_core::ssh::keys::SshPublicKey;
use azssh_core::windows::authorized_keys::{ADMINISTRATORS_SID, NO_PROFILE, SYSTEM_SID};
use azssh_core::windows::{GuestScript, KeyTarget, UserName};
use pwsh::{
    CommandOutput, ErrorRecord, HostResult, PsObject, TestHost, Value, check_ps51, parse, run,
};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me@laptop";

/// The product's script: setup (`Some(true)`: capability, `Some(false)`: service only), the key
/// for `key_user` (`""`: an administrator), the host keys.
fn script(setup: Option<bool>, key_user: Option<&str>, host_keys: bool) -> String {
    let mut g = GuestScript::new();
    g = match setup {
        Some(true) => g.setup(),
        Some(false) => g.ensure_service(),
        None => g,
    };
    if let Some(user) = key_user {
        let target = if user.is_empty() {
            KeyTarget::Administrators
        } else {
            KeyTarget::User(UserName::parse(user).unwrap())
        };
        g = g.install_key(SshPublicKey::parse(KEY).unwrap(), target);
    }
    if host_keys {
        g = g.read_host_keys();
    }
    g.build()
}

/// The guest's state the stub commands read and change.
#[derive(Debug)]
struct Guest {
    capability: String,
    status: String,
    start_type: String,
    firewall: Option<bool>,
    icacls: Vec<Vec<String>>,
}

fn guest_host(g: Rc<RefCell<Guest>>) -> TestHost {
    let mut h = TestHost::new();
    h.add_file(
        "C:\\ProgramData\\ssh\\ssh_host_ed25519_key.pub",
        b"ssh-ed25519 AAAAhost root@vm\r\n",
    );
    h.add_file(
        "C:\\ProgramData\\ssh\\ssh_host_ecdsa_key.pub",
        b"ecdsa-sha2-nistp256 AAAAecdsa root@vm\r\n",
    );
    h.add_file("C:\\Windows\\System32\\OpenSSH\\sshd.exe", b"MZ");
    h.versions.insert(
        pwsh::path_key("C:\\Windows\\System32\\OpenSSH\\sshd.exe"),
        "8.1.0.1".into(),
    );
    h.dirs
        .insert(pwsh::path_key("C:\\Users\\bob"), "C:\\Users\\bob".into());
    let s = g.clone();
    h.on("Get-WindowsCapability", move |args, _| {
        if !args.switch("Online") {
            return HostResult::Error(ErrorRecord::new(
                "-Online is required",
                "System.ArgumentException",
                "Online",
                "InvalidArgument",
            ));
        }
        let st = s.borrow().capability.clone();
        HostResult::Output(CommandOutput::one(
            PsObject::typed("Microsoft.Dism.Commands.ImageObject")
                .with("Name", args.string("Name").unwrap_or_default())
                .with("State", st),
        ))
    });
    let s = g.clone();
    h.on("Add-WindowsCapability", move |_, _| {
        let mut st = s.borrow_mut();
        st.capability = "Installed".into();
        st.firewall = Some(true);
        HostResult::Output(CommandOutput::one(
            PsObject::typed("Microsoft.Dism.Commands.ImageObject").with("RestartNeeded", false),
        ))
    });
    let s = g.clone();
    h.on("Get-Service", move |args, _| {
        let name = args.string_or_pos("Name", 0).unwrap_or_default();
        let st = s.borrow();
        if name != "sshd" || st.capability != "Installed" {
            return HostResult::Output(CommandOutput::error(ErrorRecord::new(
                format!("Cannot find any service with service name '{name}'."),
                "Microsoft.PowerShell.Commands.ServiceCommandException",
                "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand",
                "ObjectNotFound",
            )));
        }
        HostResult::Output(CommandOutput::one(
            PsObject::typed("System.ServiceProcess.ServiceController")
                .with("Status", st.status.clone())
                .with("Name", "sshd")
                .with("DisplayName", "OpenSSH SSH Server")
                .with("StartType", st.start_type.clone()),
        ))
    });
    let s = g.clone();
    h.on("Set-Service", move |args, _| {
        s.borrow_mut().start_type = args.string("StartupType").unwrap_or_default();
        HostResult::Output(CommandOutput::none())
    });
    let s = g.clone();
    h.on("Start-Service", move |_, _| {
        s.borrow_mut().status = "Running".into();
        HostResult::Output(CommandOutput::none())
    });
    // No WSUS policy on this guest: setup's `Get-ItemProperty` of the Windows Update policy
    // key (read with `-ErrorAction SilentlyContinue`) finds nothing.
    h.on("Get-ItemProperty", |_, _| {
        HostResult::Output(CommandOutput::none())
    });
    let s = g.clone();
    h.on("Get-NetFirewallRule", move |args, _| {
        let name = args.string("Name").unwrap_or_default();
        match s.borrow().firewall {
            Some(on) => HostResult::Output(CommandOutput::one(
                PsObject::typed("Microsoft.Management.Infrastructure.CimInstance")
                    .with("Name", name)
                    .with("Enabled", if on { "True" } else { "False" })
                    // The capability's rule covers every profile.
                    .with("Profile", "Any"),
            )),
            None => HostResult::Output(CommandOutput::error(ErrorRecord::new(
                format!("No MSFT_NetFirewallRule objects found with property 'InstanceID' equal to '{name}'.  Verify the value of the property and retry."),
                "Microsoft.Management.Infrastructure.CimException",
                "CmdletizationQuery_NotFound_InstanceID,Get-NetFirewallRule",
                "ObjectNotFound",
            ))),
        }
    });
    h.on("Get-NetConnectionProfile", |_, _| {
        HostResult::Output(CommandOutput::one(
            PsObject::typed("CimInstance").with("NetworkCategory", "Private"),
        ))
    });
    let s = g.clone();
    h.on("New-NetFirewallRule", move |args, _| {
        if args.string("LocalPort").as_deref() != Some("22") {
            return HostResult::Error(ErrorRecord::new(
                "port",
                "System.ArgumentException",
                "Port",
                "InvalidArgument",
            ));
        }
        s.borrow_mut().firewall = Some(true);
        HostResult::Output(CommandOutput::one(PsObject::typed("Rule")))
    });
    let s = g.clone();
    h.on("Enable-NetFirewallRule", move |_, _| {
        s.borrow_mut().firewall = Some(true);
        HostResult::Output(CommandOutput::none())
    });
    h.on("Get-CimInstance", move |args, _| {
        let class = args.string("ClassName").unwrap_or_default();
        match class.as_str() {
            "Win32_Service" => HostResult::Output(CommandOutput::one(
                PsObject::typed("CimInstance")
                    .with("Name", "sshd")
                    .with("PathName", "\"C:\\Windows\\System32\\OpenSSH\\sshd.exe\""),
            )),
            "Win32_UserProfile" => HostResult::Output(CommandOutput::values(vec![
                PsObject::typed("CimInstance")
                    .with("SID", "S-1-5-18")
                    .with("LocalPath", "C:\\Windows\\system32\\config\\systemprofile")
                    .into(),
                PsObject::typed("CimInstance")
                    .with("SID", "S-1-5-21-1-2-3-1001")
                    .with("LocalPath", "C:\\Users\\bob")
                    .into(),
            ])),
            _ => HostResult::NotFound,
        }
    });
    h.on("Get-LocalGroupMember", |_, _| {
        HostResult::Output(CommandOutput::one(
            PsObject::typed("LocalPrincipal").with("Name", "WIN-VM\\azureuser"),
        ))
    });
    h.on("Get-LocalUser", |args, _| {
        let name = args.string("Name").unwrap_or_default();
        HostResult::Output(CommandOutput::one(
            PsObject::typed("LocalUser").with("Name", name).with(
                "SID",
                PsObject::typed("SecurityIdentifier").with("Value", "S-1-5-21-1-2-3-1001"),
            ),
        ))
    });
    let s = g.clone();
    h.on("icacls", move |args, _| {
        s.borrow_mut().icacls.push(args.native_args());
        HostResult::Output(CommandOutput::native(
            "processed file: x\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n",
            "",
            0,
        ))
    });
    h.on("Get-Acl", |_, _| {
        let rule = |sid: &str| -> Value {
            PsObject::typed("FileSystemAccessRule")
                .with(
                    "IdentityReference",
                    PsObject::typed("System.Security.Principal.NTAccount").with("Value", sid),
                )
                .into()
        };
        HostResult::Output(CommandOutput::one(
            PsObject::typed("System.Security.AccessControl.FileSecurity")
                .with("AreAccessRulesProtected", true)
                .with(
                    "Access",
                    Value::array(vec![
                        rule(SYSTEM_SID),
                        rule(ADMINISTRATORS_SID),
                        rule(SYSTEM_SID),
                    ]),
                ),
        ))
    });
    h.on_method("Translate", |target, _| {
        let v = match target {
            Value::Object(o) => o.borrow().get("Value").unwrap_or_default(),
            _ => return None,
        };
        Some(Ok(PsObject::typed(
            "System.Security.Principal.SecurityIdentifier",
        )
        .with("Value", v)
        .into()))
    });
    h
}

fn fresh_guest() -> Rc<RefCell<Guest>> {
    Rc::new(RefCell::new(Guest {
        capability: "NotPresent".into(),
        status: "Stopped".into(),
        start_type: "Manual".into(),
        firewall: None,
        icacls: Vec::new(),
    }))
}

fn result_json(stdout: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("AZSSH-RESULT:"))
        .unwrap_or_else(|| panic!("no result line in {stdout:?}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn every_product_script_parses_and_is_ps51() {
    for s in [
        script(Some(true), None, false),
        script(Some(false), None, false),
        script(None, Some(""), false),
        script(None, Some("bob"), false),
        script(None, None, true),
        script(Some(true), Some("bob"), true),
    ] {
        assert!(parse(&s).is_ok(), "{:?}\n{s}", parse(&s).err());
        assert_eq!(check_ps51(&s), vec![], "{s}");
    }
}

#[test]
fn setup_script_installs_and_reports() {
    let g = fresh_guest();
    let mut h = guest_host(g.clone());
    let o = run(&mut h, &script(Some(true), None, false), &[]);
    assert_eq!(o.stderr, "");
    assert_eq!(o.exit_code, 0);
    let r = result_json(&o.stdout);
    assert_eq!(r["v"], 1);
    let s = &r["setup"];
    assert_eq!(s["changed"], true, "{r}");
    assert_eq!(s["os_build"], 20348);
    assert_eq!(s["capability"], "NotPresent");
    assert_eq!(s["sshd"], "Running");
    assert_eq!(s["startup"], "Automatic");
    assert_eq!(s["firewall"], true);
    assert_eq!(s["version"], "8.1.0.1");
    assert!(s.get("error").is_none(), "{r}");
    // Second run: nothing to do.
    let o = run(&mut h, &script(Some(true), None, false), &[]);
    let r = result_json(&o.stdout);
    assert_eq!(r["setup"]["changed"], false, "{r}");
    assert_eq!(r["setup"]["capability"], "Installed");
}

#[test]
fn setup_failure_reports_message_and_hresult() {
    let g = fresh_guest();
    let mut h = guest_host(g.clone());
    h.on("Add-WindowsCapability", |_, _| {
        HostResult::Error(
            ErrorRecord::new(
                "Add-WindowsCapability failed. Error code = 0x800f0954",
                "System.Runtime.InteropServices.COMException",
                "Microsoft.Dism.Commands.AddWindowsCapabilityCommand",
                "NotSpecified",
            )
            .with_hresult(0x800f0954u32 as i32),
        )
    });
    let o = run(&mut h, &script(Some(true), None, false), &[]);
    assert_eq!(o.exit_code, 0, "{}", o.stderr);
    let r = result_json(&o.stdout);
    assert_eq!(
        r["setup"]["error"],
        "Add-WindowsCapability failed. Error code = 0x800f0954"
    );
    assert_eq!(r["setup"]["code"], "0x800f0954");
}

#[test]
fn key_script_for_an_administrator() {
    let g = fresh_guest();
    let mut h = guest_host(g.clone());
    let o = run(&mut h, &script(None, Some(""), false), &[]);
    assert_eq!(o.stderr, "");
    let r = result_json(&o.stdout);
    let k = &r["key"];
    assert!(k.get("error").is_none(), "{r}");
    assert_eq!(k["added"], true);
    assert_eq!(k["admin"], true);
    assert_eq!(k["bom"], false);
    assert_eq!(k["verified"], true);
    assert_eq!(k["inherited"], false);
    assert_eq!(
        k["path"],
        "C:\\ProgramData\\ssh\\administrators_authorized_keys"
    );
    assert_eq!(
        k["sids"],
        serde_json::json!(
            [SYSTEM_SID, ADMINISTRATORS_SID]
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        )
    );
    let file = h
        .file("C:\\ProgramData\\ssh\\administrators_authorized_keys")
        .unwrap();
    assert_eq!(file, format!("{KEY}\r\n").as_bytes());
    assert_eq!(
        g.borrow().icacls[0],
        vec![
            "C:\\ProgramData\\ssh\\administrators_authorized_keys",
            "/inheritance:r",
            "/grant",
            "*S-1-5-32-544:F",
            "/grant",
            "*S-1-5-18:F"
        ]
    );
    // Again: already there, not added twice.
    let o = run(&mut h, &script(None, Some(""), false), &[]);
    let r = result_json(&o.stdout);
    assert_eq!(r["key"]["added"], false, "{r}");
}

#[test]
fn key_script_repairs_a_bom_file_for_a_user() {
    let g = fresh_guest();
    let mut h = guest_host(g.clone());
    h.add_file(
        "C:\\Users\\bob\\.ssh\\authorized_keys",
        b"\xEF\xBB\xBFssh-rsa OLD old@x",
    );
    let o = run(&mut h, &script(None, Some("bob"), false), &[]);
    assert_eq!(o.stderr, "");
    let r = result_json(&o.stdout);
    let k = &r["key"];
    assert!(k.get("error").is_none(), "{r}");
    assert_eq!(k["repaired"], true);
    assert_eq!(k["added"], true);
    assert_eq!(k["admin"], false);
    let file = h.file("C:\\Users\\bob\\.ssh\\authorized_keys").unwrap();
    assert_eq!(file, format!("ssh-rsa OLD old@x\r\n{KEY}\r\n").as_bytes());
}

#[test]
fn key_script_for_a_user_without_profile_reports_the_error() {
    let g = fresh_guest();
    let mut h = guest_host(g.clone());
    h.on("Get-LocalUser", |args, _| {
        let name = args.string("Name").unwrap_or_default();
        HostResult::Output(CommandOutput::one(
            PsObject::typed("LocalUser").with("Name", name).with(
                "SID",
                PsObject::typed("SecurityIdentifier").with("Value", "S-1-5-21-9"),
            ),
        ))
    });
    let o = run(&mut h, &script(None, Some("nina"), false), &[]);
    let r = result_json(&o.stdout);
    assert_eq!(r["key"]["error"], format!("user nina{NO_PROFILE}"));
}

#[test]
fn host_keys_script_reads_sorted_keys() {
    let g = fresh_guest();
    let mut h = guest_host(g);
    let o = run(&mut h, &script(None, None, true), &[]);
    assert_eq!(o.stderr, "");
    let r = result_json(&o.stdout);
    assert_eq!(
        r["host_keys"],
        serde_json::json!([
            "ecdsa-sha2-nistp256 AAAAecdsa root@vm",
            "ssh-ed25519 AAAAhost root@vm"
        ])
    );
}

#[test]
fn readme_examples() {
    let g = fresh_guest();
    g.borrow_mut().capability = "Installed".into();
    let mut h = guest_host(g);
    let o = run(&mut h, "(Get-Service sshd).Status", &[]);
    assert_eq!(o.stdout, "Stopped\r\n");
    let o = run(
        &mut h,
        "Get-Service sshd | Select-Object -ExpandProperty Status",
        &[],
    );
    assert_eq!(o.stdout, "Stopped\r\n");
    let o = run(&mut h, "Get-Service sshd", &[]);
    assert!(o.stdout.contains("Status"), "{}", o.stdout);
}

/// Mutates realistic scripts (drops, duplicates, swaps characters) and runs them: nothing
/// may panic or overflow a 2 MiB stack.
#[test]
fn mutated_scripts_never_panic() {
    let base = [
        script(Some(true), Some("bob"), true),
        include_str!("../../azssh-pwsh/tests/admin_sample.ps1").to_string(),
    ];
    let n: u64 = std::env::var("PWSH_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            const CHARS: &[u8] = b"(){}[]$'\"|;,.-+@#`\n 0";
            for i in 0..n {
                let mut bytes = base[(i % 2) as usize].clone().into_bytes();
                for _ in 0..(1 + next() % 4) {
                    if bytes.is_empty() {
                        break;
                    }
                    let at = (next() as usize) % bytes.len();
                    match next() % 3 {
                        0 => {
                            bytes.remove(at);
                        }
                        1 => bytes.insert(at, CHARS[(next() as usize) % CHARS.len()]),
                        _ => {
                            let c = bytes[at];
                            bytes.insert(at, c);
                        }
                    }
                }
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let g = fresh_guest();
                let mut h = guest_host(g);
                let limits = pwsh::Limits {
                    max_steps: 20_000,
                    ..pwsh::Limits::default()
                };
                let _ = pwsh::Interpreter::new(&mut h)
                    .with_limits(limits)
                    .run_text(&text, &[]);
                let _ = check_ps51(&text);
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
