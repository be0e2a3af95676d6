//! The single-step verbs and runbooks: `enable-ssh`, `open-port`, `copy-key`, `jit`,
//! `check-prereqs`, with their failure paths.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_ssh_uses_the_capability_on_2022_and_is_idempotent() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2022), PowerState::Running, true);
    let first = run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    assert_eq!(first["method"], "capability");
    assert_eq!(first["changed"], true);
    assert_eq!(first["sshd"], "Running");
    assert_eq!(first["startup"], "Automatic");
    assert!(!first["host_keys"].as_array().unwrap().is_empty());
    assert_sshd_ready(&env.guest(&name));
    let again = run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    assert_eq!(again["changed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_ssh_uses_the_extension_on_2016_then_repairs_the_service() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2016), PowerState::Running, true);
    let r = run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    assert_eq!(r["method"], "extension");
    assert_eq!(r["changed"], true);
    assert_sshd_ready(&env.guest(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_without_windows_update_fails_with_the_documented_fix() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2019), PowerState::Running, true);
    env.guests
        .fail_capability
        .lock()
        .unwrap()
        .push(name.clone());
    let t = env
        .azssh(&["enable-ssh", "-g", &rg, "-n", &name])
        .status(1)
        .stderr_contains("0x800f0954")
        .stderr_contains("Features on Demand");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    // The documented way out: the extension.
    let r = run(env.azssh(&[
        "enable-ssh",
        "-g",
        &rg,
        "-n",
        &name,
        "--method",
        "extension",
    ]))
    .await;
    assert_eq!(r["method"], "extension");
    assert_sshd_ready(&env.guest(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_vm_is_refused_or_started() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Deallocated, true);
    let t = env
        .azssh(&["enable-ssh", "-g", &rg, "-n", &name])
        .status(1)
        .stderr_contains("is deallocated")
        .stderr_contains("--start");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let (public, _) = env.key();
    let t = env
        .azssh(&[
            "setup",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            "10.0.0.0/8",
            "--no-start",
        ])
        .args(&["--key", &public.display().to_string()])
        .status(1)
        .stderr_contains("step `running` failed")
        .stderr_contains("is deallocated");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let r = run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name, "--start"])).await;
    assert_eq!(r["started"], true);
    assert_eq!(r["sshd"], "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_key_writes_utf8_without_bom_with_the_sid_acl_once() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2025), PowerState::Running, true);
    let (public, fingerprint) = env.key();
    let public = public.display().to_string();
    run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    let first = run(env.azssh(&["copy-key", "-g", &rg, "-n", &name, "--key", &public])).await;
    assert_eq!(first["added"], true);
    assert_eq!(first["fingerprint"], fingerprint.as_str());
    let path = first["path"].as_str().unwrap().to_string();
    assert!(path.ends_with("administrators_authorized_keys"), "{path}");
    {
        let guest = env.guest(&name);
        let g = guest.lock();
        let file = g.file(&path).expect("key file");
        assert!(!file.bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");
        let text = String::from_utf8(file.bytes.clone()).expect("utf-8");
        assert_eq!(text.matches("ssh-ed25519 ").count(), 1);
        assert!(!file.acl.inherited);
        let sids: Vec<&str> = file.acl.grants.keys().map(String::as_str).collect();
        assert_eq!(sids, ["S-1-5-18", "S-1-5-32-544"]);
    }
    let again = run(env.azssh(&["copy-key", "-g", &rg, "-n", &name, "--key", &public])).await;
    assert_eq!(again["added"], false, "key already present");
    let text =
        String::from_utf8(env.guest(&name).lock().file(&path).unwrap().bytes.clone()).unwrap();
    assert_eq!(text.matches("ssh-ed25519 ").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_port_reports_priority_moves_refuses_taken_ones_and_is_idempotent() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, true);
    let src = "203.0.113.7/32";
    let first = run(env.azssh(&["open-port", "-g", &rg, "-n", &name, "--source", src])).await;
    assert_eq!(first["name"], "azssh-ssh-203-0-113-7-32");
    assert_eq!(first["changed"], true);
    let priority = first["priority"].as_i64().unwrap();
    let again = run(env.azssh(&["open-port", "-g", &rg, "-n", &name, "--source", src])).await;
    assert_eq!(
        (again["changed"].clone(), again["priority"].as_i64()),
        (Value::Bool(false), Some(priority))
    );

    // Another rule asking for the taken priority is refused, naming the holder.
    let p = priority.to_string();
    let t = env
        .azssh(&[
            "open-port",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            src,
            "--port",
            "3389",
            "--priority",
            &p,
        ])
        .status(1)
        .stderr_contains(&format!(
            "priority {priority} is taken by rule `azssh-ssh-203-0-113-7-32`"
        ));
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    // Without a priority it moves on and says so.
    let rdp = run(env.azssh(&[
        "open-port",
        "-g",
        &rg,
        "-n",
        &name,
        "--source",
        src,
        "--port",
        "3389",
    ]))
    .await;
    assert_eq!(rdp["name"], "azssh-rdp-203-0-113-7-32");
    let closed = script(
        &env,
        &format!(
            r#"let v = vm("{rg}", "{name}");
               let first = close_port(v, "azssh-rdp-203-0-113-7-32");
               let second = close_port(v, "azssh-rdp-203-0-113-7-32");
               [first, second, nsg_rules(v).filter(|r| r.name == "azssh-rdp-203-0-113-7-32").len()]"#
        ),
    )
    .await;
    assert_eq!(closed, serde_json::json!([true, false, 0]));
    assert!(rdp["priority"].as_i64().unwrap() > 1000);
    assert_eq!(rdp["priority_moved_from"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_port_needs_a_valid_source_and_warns_for_the_internet() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, true);
    let t = env.azssh(&["open-port", "-g", &rg, "-n", &name]).status(2);
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let t = env
        .azssh(&[
            "open-port",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            "1.2.3.4;rm",
        ])
        .status(2)
        .stderr_contains("not a valid rule source");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let t = env
        .azssh(&["open-port", "-g", &rg, "-n", &name, "--source", "*"])
        .status(2)
        .stderr_contains("--allow-internet");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let t = env
        .azssh(&[
            "open-port",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            "*",
            "--allow-internet",
        ])
        .stderr_contains("open to the whole Internet");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    // Scripts catch the same refusals as values.
    let kinds = script(
        &env,
        &format!(
            r#"let v = vm("{rg}", "{name}");
               let kinds = [];
               for o in [#{{}}, #{{source: "$(whoami)"}}, #{{source: "10.0.0.0/8", priority: 50}}] {{
                   try {{ open_port(v, o); kinds.push("opened"); }} catch (e) {{ kinds.push(e.kind); }}
               }}
               kinds"#
        ),
    )
    .await;
    assert_eq!(
        kinds,
        serde_json::json!([
            "script.bad_argument",
            "azure.invalid_source",
            "script.bad_argument"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prereqs_lists_what_is_missing() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, false);
    let r = run(env.azssh(&[
        "run",
        "check-prereqs",
        "--arg",
        &format!("resource_group={rg}"),
        "--arg",
        &format!("name={name}"),
    ]))
    .await;
    assert_eq!(r["ready"], false);
    let problems: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(problems.contains(&"public_ip"), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_key_for_a_standard_user_goes_to_their_profile() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2019), PowerState::Running, true);
    let (public, _) = env.key();
    run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    env.guest(&name).lock().add_user("nina", false, true);
    let k = run(env.azssh(&[
        "copy-key",
        "-g",
        &rg,
        "-n",
        &name,
        "--key",
        &public.display().to_string(),
        "--local-user",
        "nina",
    ]))
    .await;
    assert_eq!(k["admin"], false);
    let path = k["path"].as_str().unwrap();
    assert!(
        path.to_lowercase().ends_with(r"nina\.ssh\authorized_keys"),
        "{path}"
    );
    let t = env
        .azssh(&[
            "copy-key",
            "-g",
            &rg,
            "-n",
            &name,
            "--key",
            &public.display().to_string(),
            "--local-user",
            "bad'user",
        ])
        .status(2)
        .stderr_contains("not a valid windows user name");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jit_requests_access_and_waits_until_it_is_active() {
    let env = Env::start().await;
    let found = script(
        &env,
        r#"let jit = vms().filter(|v| v.power_state == "running" && nsg_rules(v).some(|r| r.name.starts_with("SecurityCenter-JITRule") && r.name.contains(v.name)));
           let plain = vms().filter(|v| v.power_state == "running" && !nsg_rules(v).some(|r| r.name.starts_with("SecurityCenter-JITRule")));
           #{jit: [jit[0].resource_group, jit[0].name], plain: [plain[0].resource_group, plain[0].name]}"#,
    )
    .await;
    let (rg, name) = (
        found["jit"][0].as_str().unwrap(),
        found["jit"][1].as_str().unwrap(),
    );
    let r = run(env.azssh(&[
        "jit",
        "-g",
        rg,
        "-n",
        name,
        "--source",
        "203.0.113.7",
        "--duration",
        "PT1H",
    ]))
    .await;
    assert_eq!(r["access"]["status"], "Initiated");
    assert_eq!(r["access"]["source"], "203.0.113.7");
    assert_eq!(r["access"]["port"], 22);

    let (rg, name) = (
        found["plain"][0].as_str().unwrap(),
        found["plain"][1].as_str().unwrap(),
    );
    let t = env
        .azssh(&["jit", "-g", rg, "-n", name])
        .status(1)
        .stderr_contains("no just-in-time policy covers")
        .stderr_contains("Defender for Cloud");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let t = env
        .azssh(&["jit", "-g", rg, "-n", name, "--duration", "soon"])
        .status(2)
        .stderr_contains("ISO 8601");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_port_uses_the_subnet_nsg_when_the_nic_has_none() {
    let env = Env::start().await;
    let r = script(
        &env,
        r#"let scopes = [];
           for v in vms().filter(|v| v.power_state == "running").extract(0, 8) {
               let rule = open_port(v, #{source: "VirtualNetwork", port: 5986});
               scopes.push(rule.scope);
               if !v.nsg_ids.contains(rule.nsg_id) { throw `rule went to ${rule.nsg_id}, not one of ${v.nsg_ids}`; }
               if rule.also.len() != v.nsg_ids.len() - 1 { throw `${v.name}: ${v.nsg_ids.len()} NSGs but the rule is on ${1 + rule.also.len()}`; }
           }
           scopes"#,
    )
    .await;
    let scopes: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        scopes.contains(&"nic") && scopes.contains(&"subnet"),
        "{scopes:?}"
    );
}
