//! End-to-end: the scripts azssh sends (rendered here with the product's own templates from
//! `src/windows/{combined,setup,authorized_keys,host_keys}.rs`) parse, pass the 5.1 guard rail
//! and run against a stub guest.

use std::cell::RefCell;
use std::rc::Rc;

use pwsh::{
    check_ps51, parse, run, CommandOutput, ErrorRecord, HostResult, PsObject, TestHost, Value,
};

const CAPABILITY: &str = "OpenSSH.Server~~~~0.0.1.0";
const FIREWALL_RULE: &str = "OpenSSH-Server-In-TCP";
const ADMINISTRATORS_SID: &str = "S-1-5-32-544";
const SYSTEM_SID: &str = "S-1-5-18";
const NO_PROFILE: &str = " has no profile on this VM yet; sign in once (for example over RDP) or install the key for an administrator";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA me@laptop";

fn ps_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn prologue() -> String {
    r#"$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Limit([string]$m) { if ($m.Length -gt 200) { $m.Substring(0, 200) } else { $m } }
$r = [ordered]@{ v = 1 }"#
        .to_string()
}

fn epilogue() -> String {
    "Write-Output ('AZSSH-RESULT:' + ($r | ConvertTo-Json -Compress -Depth 4))".to_string()
}

fn frame(name: &str, body: &str) -> String {
    format!("# azssh:begin {name}\n{body}\n# azssh:end {name}\n")
}

fn setup_block(capability: bool) -> String {
    let capability = if capability {
        format!(
            r#"
    $cap = Get-WindowsCapability -Online -Name '{CAPABILITY}'
    $s.capability = [string]$cap.State
    if ($cap.State -ne 'Installed') {{
        $null = Add-WindowsCapability -Online -Name '{CAPABILITY}'
        $s.changed = $true
    }}"#
        )
    } else {
        String::new()
    };
    format!(
        r#"$s = [ordered]@{{ changed = $false; os_build = [Environment]::OSVersion.Version.Build }}
try {{{capability}
    if ((Get-Service -Name sshd).StartType -ne 'Automatic') {{
        Set-Service -Name sshd -StartupType Automatic
        $s.changed = $true
    }}
    if ((Get-Service -Name sshd).Status -ne 'Running') {{
        Start-Service -Name sshd
        $s.changed = $true
    }}
    $fw = Get-NetFirewallRule -Name '{FIREWALL_RULE}' -ErrorAction SilentlyContinue
    if (-not $fw) {{
        $null = New-NetFirewallRule -Name '{FIREWALL_RULE}' -DisplayName 'OpenSSH SSH Server (sshd)' -Enabled True -Direction Inbound -Protocol TCP -Action Allow -LocalPort 22
        $s.changed = $true
    }} elseif ([string]$fw.Enabled -ne 'True') {{
        Enable-NetFirewallRule -Name '{FIREWALL_RULE}'
        $s.changed = $true
    }}
    $svc = Get-Service -Name sshd
    $s.sshd = [string]$svc.Status
    $s.startup = [string]$svc.StartType
    $s.firewall = [string](Get-NetFirewallRule -Name '{FIREWALL_RULE}').Enabled -eq 'True'
    $exe = (Get-CimInstance -ClassName Win32_Service -Filter "Name='sshd'").PathName.Trim('"')
    $s.version = (Get-Item -LiteralPath $exe).VersionInfo.ProductVersion
}} catch {{
    $s.error = Limit $_.Exception.Message
    $s.code = '0x{{0:x8}}' -f $_.Exception.HResult
}}
$r.setup = $s"#
    )
}

fn key_block(user: &str) -> String {
    format!(
        r#"$AzsshUser = {user}
$AzsshKey = {key}
$k = [ordered]@{{ added = $false; repaired = $false }}
try {{
    $admin = $AzsshUser -eq ''
    if (-not $admin) {{
        $admin = [bool](Get-LocalGroupMember -SID '{ADMINISTRATORS_SID}' | Where-Object {{ ($_.Name -split '\\')[-1] -eq $AzsshUser }})
    }}
    if ($admin) {{
        $path = Join-Path $env:ProgramData 'ssh\administrators_authorized_keys'
        $owner = '*{ADMINISTRATORS_SID}:F'
    }} else {{
        $sid = (Get-LocalUser -Name $AzsshUser).SID.Value
        $profileDir = @(Get-CimInstance -ClassName Win32_UserProfile | Where-Object {{ $_.SID -eq $sid }})[0].LocalPath
        if (-not $profileDir) {{ throw ('user ' + $AzsshUser + {no_profile}) }}
        $path = Join-Path $profileDir '.ssh\authorized_keys'
        $owner = $AzsshUser + ':F'
    }}
    $dir = Split-Path -Parent $path
    if (-not (Test-Path -LiteralPath $dir)) {{ $null = New-Item -ItemType Directory -Path $dir -Force }}
    $enc = New-Object Text.UTF8Encoding $false
    $text = ''
    if (Test-Path -LiteralPath $path) {{
        $bytes = [IO.File]::ReadAllBytes($path)
        $text = [IO.File]::ReadAllText($path)
        if ($bytes.Length -gt 0 -and $bytes[0] -ge 0xEF) {{
            [IO.File]::WriteAllText($path, $text, $enc)
            $k.repaired = $true
        }}
    }}
    $body = ($AzsshKey -split ' ')[1]
    if (@($text -split "`r?`n" | Where-Object {{ @($_ -split '\s+') -ccontains $body }}).Count -eq 0) {{
        $sep = ''
        if ($text.Length -gt 0 -and -not $text.EndsWith("`n")) {{ $sep = "`r`n" }}
        [IO.File]::AppendAllText($path, $sep + $AzsshKey + "`r`n", $enc)
        $k.added = $true
    }}
    $null = icacls.exe $path /inheritance:r /grant $owner /grant '*{SYSTEM_SID}:F'
    if ($LASTEXITCODE -ne 0) {{ throw "icacls failed with exit code $LASTEXITCODE" }}
    $check = [IO.File]::ReadAllBytes($path)
    $acl = Get-Acl -LiteralPath $path
    $k.path = $path
    $k.admin = $admin
    $k.bom = $check.Length -gt 0 -and $check[0] -ge 0xEF
    $k.verified = @($enc.GetString($check) -split "`r?`n" | Where-Object {{ @($_ -split '\s+') -ccontains $body }}).Count -ge 1
    $k.inherited = -not $acl.AreAccessRulesProtected
    $k.sids = @($acl.Access | ForEach-Object {{ $_.IdentityReference.Translate([Security.Principal.SecurityIdentifier]).Value }} | Sort-Object -Unique)
}} catch {{
    $k.error = Limit $_.Exception.Message
}}
$r.key = $k"#,
        user = ps_quote(user),
        key = ps_quote(KEY),
        no_profile = ps_quote(NO_PROFILE),
    )
}

fn host_keys_block() -> String {
    r#"try {
    $r.host_keys = @(Get-ChildItem -LiteralPath (Join-Path $env:ProgramData 'ssh') -Filter 'ssh_host_*_key.pub' | Sort-Object Name | ForEach-Object { ([IO.File]::ReadAllText($_.FullName)).Trim() })
} catch {
    $r.host_keys_error = Limit $_.Exception.Message
}"#
    .to_string()
}

fn script(setup: Option<bool>, key_user: Option<&str>, host_keys: bool) -> String {
    let mut s = frame("prologue", &prologue());
    if let Some(cap) = setup {
        s.push_str(&frame(
            if cap { "setup" } else { "service" },
            &setup_block(cap),
        ));
    }
    if let Some(u) = key_user {
        s.push_str(&frame("key", &key_block(u)));
    }
    if host_keys {
        s.push_str(&frame("host-keys", &host_keys_block()));
    }
    s.push_str(&frame("epilogue", &epilogue()));
    s
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
    let s = g.clone();
    h.on("Get-NetFirewallRule", move |args, _| {
        let name = args.string("Name").unwrap_or_default();
        match s.borrow().firewall {
            Some(on) => HostResult::Output(CommandOutput::one(
                PsObject::typed("Microsoft.Management.Infrastructure.CimInstance")
                    .with("Name", name)
                    .with("Enabled", if on { "True" } else { "False" }),
            )),
            None => HostResult::Output(CommandOutput::error(ErrorRecord::new(
                format!("No MSFT_NetFirewallRule objects found with property 'InstanceID' equal to '{name}'.  Verify the value of the property and retry."),
                "Microsoft.Management.Infrastructure.CimException",
                "CmdletizationQuery_NotFound_InstanceID,Get-NetFirewallRule",
                "ObjectNotFound",
            ))),
        }
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
        serde_json::json!([SYSTEM_SID, ADMINISTRATORS_SID]
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>())
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
        include_str!("admin_sample.ps1").to_string(),
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
