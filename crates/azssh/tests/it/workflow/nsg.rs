//! NSG rules that belong to their source, subnet rules aimed at the VM, JIT policies respected,
//! Internet-wide sources opted into: `open-port`, `setup`, `open_port()` and `close_port()`
//! against the emulator's NSGs and Defender JIT policies.

use super::*;

/// The rules of the VM's NSGs as scripts see them.
async fn rules(env: &Env, rg: &str, name: &str) -> Vec<Value> {
    let r = script(env, &format!("nsg_rules(vm(\"{rg}\", \"{name}\"))")).await;
    r.as_array().cloned().unwrap_or_default()
}

fn sources_of_rule(rules: &[Value], name: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r["name"] == name)
        .map(|r| r["source"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_port_keeps_a_colleagues_source() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, true);
    let open = |src: &str| env.azssh(&["open-port", "-g", &rg, "-n", &name, "--source", src]);
    let mine = run(open("203.0.113.7/32")).await;
    let theirs = run(open("198.51.100.9")).await;
    assert_eq!(mine["name"], "azssh-ssh-203-0-113-7-32");
    assert_eq!(theirs["name"], "azssh-ssh-198-51-100-9-32");
    assert_eq!(theirs["changed"], true);
    let all = rules(&env, &rg, &name).await;
    assert_eq!(
        sources_of_rule(&all, "azssh-ssh-203-0-113-7-32"),
        ["203.0.113.7/32"]
    );
    assert_eq!(
        sources_of_rule(&all, "azssh-ssh-198-51-100-9-32"),
        ["198.51.100.9"]
    );
    let admitted: Vec<String> = theirs["admitted_by"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["sources"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    assert!(
        admitted.contains(&"203.0.113.7/32".to_string())
            && admitted.contains(&"198.51.100.9".to_string()),
        "{admitted:?}"
    );

    // An explicit name held by another source is not taken over.
    let named = |src: &str| {
        env.azssh(&[
            "open-port",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            src,
            "--rule-name",
            "team-ssh",
        ])
    };
    run(named("192.0.2.1")).await;
    let t = named("192.0.2.2")
        .status(1)
        .stderr_contains("rule `team-ssh` already exists")
        .stderr_contains("192.0.2.1");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let all = rules(&env, &rg, &name).await;
    assert_eq!(sources_of_rule(&all, "team-ssh"), ["192.0.2.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_with_same_source_writes_nothing() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, true);
    let first = run(env.azssh(&[
        "open-port",
        "-g",
        &rg,
        "-n",
        &name,
        "--source",
        "203.0.113.7",
    ]))
    .await;
    assert_eq!(first["changed"], true);
    let before = rules(&env, &rg, &name).await;
    // The same source spelled as a CIDR is the same source.
    let again = run(env.azssh(&[
        "open-port",
        "-g",
        &rg,
        "-n",
        &name,
        "--source",
        "203.0.113.7/32",
    ]))
    .await;
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["name"], first["name"]);
    assert_eq!(rules(&env, &rg, &name).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_port_removes_only_the_callers_source() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, true);
    let r = script(
        &env,
        &format!(
            r#"let v = vm("{rg}", "{name}");
               open_port(v, #{{source: "203.0.113.7"}});
               open_port(v, #{{source: "198.51.100.9/32"}});
               let closed = close_port(v, #{{source: "203.0.113.7/32"}});
               let again = close_port(v, #{{source: "203.0.113.7"}});
               let left = nsg_rules(v).filter(|r| r.port == "22" && r.access == "Allow").map(|r| r.source);
               #{{closed: closed, again: again, left: left}}"#
        ),
    )
    .await;
    assert_eq!(r["closed"], true);
    assert_eq!(r["again"], false);
    let left: Vec<&str> = r["left"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(left.contains(&"198.51.100.9/32"), "{left:?}");
    assert!(
        !left.iter().any(|s| s.starts_with("203.0.113.7")),
        "{left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_nsg_rule_targets_only_the_vm() {
    let env = Env::start().await;
    // Two VMs whose only NSG is the same one: their subnet's.
    let (rg, a, b, ip, _) = subnet_pair(&env).await;
    let (rg, a, b, ip) = (rg.as_str(), a.as_str(), b.as_str(), ip.as_str());
    let me = std::net::Ipv4Addr::LOCALHOST;
    assert_eq!(env.handle.admits(rg, b, me, 5986), Some(false));
    let r = run(env.azssh(&[
        "open-port",
        "-g",
        rg,
        "-n",
        a,
        "--source",
        "127.0.0.1",
        "--port",
        "5986",
    ]))
    .await;
    assert_eq!(r["scope"], "subnet", "{r}");
    assert_eq!(r["destination"], format!("{ip}/32"));
    assert_eq!(env.handle.admits(rg, a, me, 5986), Some(true));
    assert_eq!(
        env.handle.admits(rg, b, me, 5986),
        Some(false),
        "the neighbour stays closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internet_wide_sources_need_opt_in_in_every_spelling() {
    let env = Env::start().await;
    let (rg, name) = env.pick(None, PowerState::Running, true);
    for spelling in ["Any", "any", "0::/0", "1.2.3.4/0", "0.0.0.0/1,128.0.0.0/1"] {
        let t = env
            .azssh(&["open-port", "-g", &rg, "-n", &name, "--source", spelling])
            .status(2)
            .stderr_contains("admits the whole Internet")
            .stderr_contains("--allow-internet");
        tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    }
    let r = script(
        &env,
        &format!(
            r#"let v = vm("{rg}", "{name}");
               let halves = ["0.0.0.0/1", "128.0.0.0/1"];
               let kind = "";
               try {{ open_port(v, #{{source: halves}}); }} catch (e) {{ kind = e.kind; }}
               let opened = open_port(v, #{{source: halves, allow_internet: true}});
               #{{kind: kind, wide: opened.open_to_internet, rules: opened.rules.map(|r| r.name)}}"#
        ),
    )
    .await;
    assert_eq!(r["kind"], "workflow.internet_wide_source");
    assert_eq!(r["wide"], true);
    assert_eq!(
        r["rules"],
        serde_json::json!(["azssh-ssh-0-0-0-0-1", "azssh-ssh-128-0-0-0-1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_under_jit_policy_requests_access_instead_of_a_standing_rule() {
    let env = Env::start().await;
    let (rg, name) = env
        .handle
        .vms()
        .into_iter()
        .find(|v| v.jit && v.public_ip.is_some() && v.release != WindowsRelease::Ws2016)
        .map(|v| (v.resource_group, v.name))
        .expect("a JIT VM with a public IP");
    let (public, _) = env.key();
    let port = reserve_guest_port(0).unwrap();
    let sshd = env.serve_ssh(&rg, &name, &port).await;
    let report = run(env
        .azssh(&[
            "setup",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            "127.0.0.1",
            "--key",
            &public.display().to_string(),
        ])
        .env("AZSSH_SSH_PORT", &port.port().to_string()))
    .await;
    assert_eq!(report["ok"], true, "{report}");
    let open = &report["steps"][3]["detail"];
    assert_eq!(open["jit"], true, "{open}");
    assert_eq!(open["jit_policy"], "default");
    assert_eq!(open["status"], "Initiated");
    let standing = |rules: &[Value]| {
        rules
            .iter()
            .filter(|r| {
                r["access"] == "Allow"
                    && r["port"] == "22"
                    && !r["name"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("SecurityCenter-JITRule")
            })
            .count()
    };
    assert_eq!(standing(&rules(&env, &rg, &name).await), 0);

    // The verb too; `--permanent-rule` adds the rule, with a warning naming the policy.
    let r = run(env.azssh(&["open-port", "-g", &rg, "-n", &name, "--source", "127.0.0.1"])).await;
    assert_eq!(
        (r["jit"].clone(), r["changed"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    let t = env
        .azssh(&[
            "open-port",
            "-g",
            &rg,
            "-n",
            &name,
            "--source",
            "127.0.0.1",
            "--permanent-rule",
        ])
        .stderr_contains("just-in-time policy `default`");
    let r = run(t).await;
    assert_eq!(r["jit"], false);
    assert_eq!(r["jit_policy"], "default");
    assert_eq!(r["name"], "azssh-ssh-127-0-0-1-32");
    assert_eq!(standing(&rules(&env, &rg, &name).await), 1);
    drop(sshd);
}
