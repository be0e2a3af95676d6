//! Host-key pinning and the whole workflow (`setup`), end to end over the guest's sshd.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_host_keys_pins_every_address_and_never_overwrites_a_changed_key() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2022), PowerState::Running, true);
    run(env.azssh(&["enable-ssh", "-g", &rg, "-n", &name])).await;
    let pin = format!("let v = vm(\"{rg}\", \"{name}\"); pin_host_keys(v)");
    let first = script(&env, &pin).await;
    let hosts: Vec<&str> = first["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(hosts.len(), 2, "public and private address: {hosts:?}");
    assert!(first["added"].as_i64().unwrap() >= 2);
    let pinned = std::fs::read_to_string(env.known_hosts()).unwrap();
    for h in &hosts {
        assert!(
            pinned.lines().any(|l| l.starts_with(&format!("{h} "))),
            "{h} in\n{pinned}"
        );
    }
    let again = script(&env, &pin).await;
    assert_eq!(again["added"], 0);

    // A rebuilt VM: Azure reports new keys, which must not silently replace the pinned ones.
    env.guest(&name).lock().rebuild_host_keys();
    let t = env
        .azssh(&["run", "inline.rhai"])
        .file("inline.rhai", &pin)
        .stderr_contains("changed");
    let changed = run(t).await;
    assert_eq!(changed["added"], 0);
    assert_eq!(changed["conflicts"].as_array().unwrap().len(), hosts.len());
    assert_eq!(std::fs::read_to_string(env.known_hosts()).unwrap(), pinned);

    let replace = format!("let v = vm(\"{rg}\", \"{name}\"); pin_host_keys(v, #{{replace: true}})");
    let replaced = script(&env, &replace).await;
    assert!(replaced["conflicts"].as_array().unwrap().is_empty());
    assert_ne!(std::fs::read_to_string(env.known_hosts()).unwrap(), pinned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_without_a_public_ip_says_how_to_reach_the_private_one() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, false);
    let (public, _) = env.key();
    let t = env
        .azssh(&[
            "setup",
            "-g",
            &rg,
            "-n",
            &name,
            "--local-user",
            "azureuser",
            "--source",
            "203.0.113.7",
            "--key",
            &public.display().to_string(),
        ])
        .status(1)
        .stderr_contains("step `address` failed")
        .stderr_contains("has no public IP address")
        .stderr_contains("prefer_private_ip");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_does_the_whole_workflow_then_refuses_a_rebuilt_host() {
    let env = Env::start().await;
    let (rg, name) = env.pick(Some(WindowsRelease::Ws2019), PowerState::Running, true);
    let (public, fingerprint) = env.key();
    let port = reserve_guest_port(0).unwrap();
    let mut sshd = env.serve_ssh(&rg, &name, &port).await;
    let ssh_port = port.port().to_string();
    let setup = |env: &Env| {
        env.azssh(&[
            "setup",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            "127.0.0.0/8",
            "--key",
            &public.display().to_string(),
        ])
        .env("AZSSH_SSH_PORT", &ssh_port)
    };
    let report = run(setup(&env)).await;
    assert_eq!(report["ok"], true);
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "running",
            "address",
            "enable",
            "open-port",
            "pin-host-keys",
            "ssh"
        ]
    );
    let enable = &report["steps"][2]["detail"];
    assert_eq!(enable["method"], "capability");
    assert_eq!(enable["key_added"], true);
    assert_eq!(enable["key_fingerprint"], fingerprint.as_str());
    let ssh = &report["steps"][5]["detail"];
    let user = report["user"].as_str().unwrap().to_lowercase();
    let whoami = ssh["whoami"].as_str().unwrap().to_lowercase();
    assert!(whoami.ends_with(&format!("\\{user}")), "{ssh}");
    assert!(!ssh["hostname"].as_str().unwrap().is_empty());
    assert_sshd_ready(&env.guest(&name));

    // Again: nothing to change, and the key is not added twice.
    let again = run(setup(&env)).await;
    assert_eq!(again["steps"][2]["detail"]["changed"], false);
    assert_eq!(again["steps"][2]["detail"]["key_added"], false);
    assert_eq!(again["steps"][3]["detail"]["changed"], false);

    // The VM is rebuilt: new host keys. Pinning reports it and the SSH step refuses the host.
    env.guest(&name).lock().rebuild_host_keys();
    sshd.shutdown();
    drop(sshd);
    sshd = env.serve_ssh(&rg, &name, &port).await;
    let t = setup(&env)
        .status(1)
        .stderr_contains("step `ssh` failed")
        .stderr_contains("host key of");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    drop(sshd);
}
