//! `close-port` takes back only what `open-port` gave the VM it names: on a subnet NSG rule that
//! azssh aimed at several VMs only that VM's destination goes, and a rule azssh did not create
//! is never touched, only reported.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_port_on_a_shared_subnet_rule_removes_only_that_vms_destination() {
    let env = Env::start().await;
    let (rg, a, b, ip_a, ip_b) = subnet_pair(&env).await;
    let me = std::net::Ipv4Addr::LOCALHOST;
    run(port_verb(&env, "open-port", &rg, &a)).await;
    run(port_verb(&env, "open-port", &rg, &b)).await;
    let both = destinations(&env, &rg, &a).await.unwrap();
    assert!(
        both.contains(&format!("{ip_a}/32")) && both.contains(&format!("{ip_b}/32")),
        "one rule aimed at both VMs: {both:?}"
    );
    assert_eq!(env.handle.admits(&rg, &a, me, 5986), Some(true));
    assert_eq!(env.handle.admits(&rg, &b, me, 5986), Some(true));

    let r = run(port_verb(&env, "close-port", &rg, &a)).await;
    assert_eq!(r["closed"], true, "{r}");
    assert_eq!(env.handle.admits(&rg, &a, me, 5986), Some(false));
    assert_eq!(
        env.handle.admits(&rg, &b, me, 5986),
        Some(true),
        "the other VM keeps its access"
    );
    assert_eq!(
        destinations(&env, &rg, &b).await,
        Some(vec![format!("{ip_b}/32")])
    );
    // Closing again for the same VM finds nothing of its own.
    let again = run(port_verb(&env, "close-port", &rg, &a)).await;
    assert_eq!(again["closed"], false, "{again}");

    // The last VM's close deletes the rule.
    let r = run(port_verb(&env, "close-port", &rg, &b)).await;
    assert_eq!(r["closed"], true, "{r}");
    assert_eq!(env.handle.admits(&rg, &b, me, 5986), Some(false));
    assert_eq!(destinations(&env, &rg, &b).await, None, "rule deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_port_never_touches_a_rule_azssh_did_not_create() {
    let env = Env::start().await;
    // A VM whose NSGs hold an allow rule someone else made (the world's `allow-https`, ...).
    let found = script(
        &env,
        r#"let found = ();
           for v in vms().filter(|v| v.power_state == "running") {
               let theirs = nsg_rules(v).filter(|r| r.access == "Allow" && !r.name.starts_with("azssh-"));
               if found == () && theirs.len() > 0 { found = [v.resource_group, v.name, theirs[0].name]; }
           }
           found"#,
    )
    .await;
    let s = |i: usize| found[i].as_str().unwrap().to_string();
    let (rg, name, rule) = (s(0), s(1), s(2));
    let names = format!(r#"nsg_rules(vm("{rg}", "{name}")).map(|r| r.name)"#);
    let before = script(&env, &names).await;
    let t = env
        .azssh(&["close-port", "-g", &rg, "-n", &name, "--rule-name", &rule])
        .stderr_contains(&format!("rule `{rule}`"))
        .stderr_contains("not created by azssh");
    let r = run(t).await;
    assert_eq!(r["closed"], false, "{r}");
    assert_eq!(
        script(&env, &names).await,
        before,
        "no rule removed or changed"
    );
}
