//! Two writers on one NSG: `open-port` and `close-port` write a rule only if the NSG is still as
//! they read it (`If-Match` with the etag read; the network RP answers 412 otherwise), so a
//! colleague's change that lands between azssh's read and its write is kept, azssh's own change
//! is still made, and a NSG that never stops changing ends in a clear error. The colleague's
//! write is landed by the emulator just before azssh's write (`interpose_rule_writes`).
//! Also: a wide rule someone else wrote that already admits the source is reported by
//! `open-port`, and no narrower duplicate is written beside it.

use azssh_emulator::nsg::InterposedWrite;
use serde_json::json;

use super::*;

/// The colleague's VM: an address of no VM azssh acts on.
const THEIRS: &str = "10.250.0.9/32";

/// The name of the VM's only NSG.
async fn only_nsg(env: &Env, rg: &str, name: &str) -> String {
    let r = script(env, &format!(r#"vm("{rg}", "{name}").nsg_ids[0]"#)).await;
    r.as_str()
        .and_then(|id| id.rsplit('/').next())
        .unwrap()
        .to_string()
}

/// What a colleague's azssh writes when it adds its VM to the same per-source rule.
fn colleague_put(priority: i64, destinations: &[&str]) -> InterposedWrite {
    InterposedWrite::Put {
        rule: RULE.into(),
        body: json!({"properties": {"protocol": "Tcp", "sourcePortRange": "*",
            "destinationPortRange": "5986", "sourceAddressPrefix": "127.0.0.1",
            "destinationAddressPrefixes": destinations, "access": "Allow",
            "priority": priority, "direction": "Inbound",
            "description": "azssh: port 5986 from 127.0.0.1"}}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_port_keeps_a_colleagues_change_made_between_its_read_and_its_write() {
    let env = Env::start().await;
    let (rg, a, b, ip_a, ip_b) = subnet_pair(&env).await;
    let nsg = only_nsg(&env, &rg, &a).await;
    let first = run(port_verb(&env, "open-port", &rg, &a)).await;
    let priority = first["priority"].as_i64().unwrap();
    let mine_a = format!("{ip_a}/32");
    let mine_b = format!("{ip_b}/32");

    // Between azssh's read of the rules and its write for VM b, a colleague adds their VM.
    assert!(env.handle.interpose_rule_writes(
        &rg,
        &nsg,
        vec![colleague_put(priority, &[&mine_a, THEIRS])]
    ));
    let r = run(port_verb(&env, "open-port", &rg, &b)).await;
    assert_eq!(r["changed"], true, "{r}");
    let now = destinations(&env, &rg, &b).await.unwrap();
    for d in [&mine_a, THEIRS, &mine_b] {
        assert!(now.iter().any(|x| x == d), "{d} missing from {now:?}");
    }
    let me = std::net::Ipv4Addr::LOCALHOST;
    assert_eq!(env.handle.admits(&rg, &b, me, 5986), Some(true));
    assert_eq!(env.handle.admits(&rg, &a, me, 5986), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_port_never_removes_a_destination_added_after_its_read() {
    let env = Env::start().await;
    let (rg, a, b, ip_a, ip_b) = subnet_pair(&env).await;
    let nsg = only_nsg(&env, &rg, &a).await;
    let first = run(port_verb(&env, "open-port", &rg, &a)).await;
    let priority = first["priority"].as_i64().unwrap();
    run(port_verb(&env, "open-port", &rg, &b)).await;
    let (mine_a, mine_b) = (format!("{ip_a}/32"), format!("{ip_b}/32"));

    // Narrowing: azssh read [a, b] and writes [b]; a colleague added theirs meanwhile.
    env.handle.interpose_rule_writes(
        &rg,
        &nsg,
        vec![colleague_put(priority, &[&mine_a, &mine_b, THEIRS])],
    );
    let r = run(port_verb(&env, "close-port", &rg, &a)).await;
    assert_eq!(r["closed"], true, "{r}");
    assert_eq!(
        destinations(&env, &rg, &b).await.unwrap(),
        [mine_b.clone(), THEIRS.to_string()]
    );

    // Deleting: azssh read [b] and deletes the rule; a colleague added theirs meanwhile, so
    // the rule stays with theirs only.
    run(port_verb(&env, "open-port", &rg, &b)).await;
    env.handle
        .interpose_rule_writes(&rg, &nsg, vec![colleague_put(priority, &[&mine_b])]);
    run(port_verb(&env, "close-port", &rg, &b)).await;
    assert_eq!(
        destinations(&env, &rg, &b).await,
        None,
        "b was alone: deleted"
    );
    run(port_verb(&env, "open-port", &rg, &b)).await;
    env.handle
        .interpose_rule_writes(&rg, &nsg, vec![colleague_put(priority, &[&mine_b, THEIRS])]);
    let r = run(port_verb(&env, "close-port", &rg, &b)).await;
    assert_eq!(r["closed"], true, "{r}");
    assert_eq!(
        destinations(&env, &rg, &b).await.unwrap(),
        [THEIRS.to_string()],
        "the colleague's destination survives the close"
    );
    let me = std::net::Ipv4Addr::LOCALHOST;
    assert_eq!(env.handle.admits(&rg, &b, me, 5986), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_port_gives_up_with_a_hint_when_the_nsg_keeps_changing() {
    let env = Env::start().await;
    let (rg, a, b, ip_a, _) = subnet_pair(&env).await;
    let nsg = only_nsg(&env, &rg, &a).await;
    let first = run(port_verb(&env, "open-port", &rg, &a)).await;
    let priority = first["priority"].as_i64().unwrap();
    let mine_a = format!("{ip_a}/32");
    // A colleague writes before every one of azssh's attempts (4, `WRITE_ATTEMPTS`).
    let writes = (0..4)
        .map(|_| colleague_put(priority, &[&mine_a, THEIRS]))
        .collect();
    env.handle.interpose_rule_writes(&rg, &nsg, writes);
    let t = port_verb(&env, "open-port", &rg, &b)
        .status(1)
        .stderr_contains(&format!(
            "network security group `{nsg}` kept changing while azssh was writing rule `{RULE}`"
        ))
        .stderr_contains("412 PreconditionFailed")
        .stderr_contains("hint: another azssh run, a colleague or the portal is editing this NSG");
    tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    assert_eq!(
        destinations(&env, &rg, &b).await.unwrap(),
        [mine_a, THEIRS.to_string()],
        "nothing of the colleague's was overwritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_port_reports_a_wide_rule_that_already_admits_the_source() {
    let env = Env::start().await;
    // A running VM outside JIT whose only NSG is its NIC's.
    let all = script(
        &env,
        r#"vms().filter(|v| v.nsg_ids.len() == 1 && v.nsg_ids[0].ends_with(`/${v.name}-nsg`)
               && v.power_state == "running").map(|v| [v.resource_group, v.name])"#,
    )
    .await;
    let not_jit: Vec<String> = env
        .handle
        .vms()
        .into_iter()
        .filter(|v| !v.jit)
        .map(|v| v.name)
        .collect();
    let pick = all
        .as_array()
        .unwrap()
        .iter()
        .find(|p| not_jit.iter().any(|n| p[1] == n.as_str()))
        .unwrap_or_else(|| panic!("no running VM with only a NIC NSG: {all}"));
    let (rg, name) = (pick[0].as_str().unwrap(), pick[1].as_str().unwrap());
    // Someone opened SSH to the whole Internet on purpose.
    let wide = env.azssh(&[
        "open-port",
        "-g",
        rg,
        "-n",
        name,
        "--source",
        "*",
        "--allow-internet",
        "--rule-name",
        "allow-ssh-any",
    ]);
    run(wide).await;

    let t = env
        .azssh(&["open-port", "-g", rg, "-n", name, "--source", "203.0.113.7"])
        .stderr_contains(
            "port 22 is already open to the whole Internet (`*`) through rule `allow-ssh-any`",
        )
        .stderr_contains("azssh wrote no narrower rule beside it");
    let r = run(t).await;
    assert_eq!(r["changed"], false, "{r}");
    assert_eq!(r["name"], "allow-ssh-any", "{r}");
    assert!(
        r["warnings"].to_string().contains("allow-ssh-any"),
        "the warning is in the result too: {r}"
    );
    let names = script(
        &env,
        &format!(r#"nsg_rules(vm("{rg}", "{name}")).map(|r| r.name)"#),
    )
    .await;
    assert!(
        !names.to_string().contains("azssh-ssh-203-0-113-7-32"),
        "no narrower duplicate: {names}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_open_port_processes_at_once_both_keep_their_vm_in_the_shared_rule() {
    let env = Env::start().await;
    // Three running VMs behind one subnet NSG (and no NIC NSG).
    let found = script(
        &env,
        r#"let by_nsg = #{};
           for v in vms().filter(|v| v.nsg_ids.len() == 1 && v.power_state == "running" && v.public_ip != ()
                                     && !v.nsg_ids[0].ends_with(`/${v.name}-nsg`)) {
               let k = v.nsg_ids[0];
               if by_nsg[k] == () { by_nsg[k] = []; }
               by_nsg[k].push([v.resource_group, v.name, v.private_ip]);
           }
           let found = ();
           for k in by_nsg.keys() { if found == () && by_nsg[k].len() >= 3 { found = by_nsg[k]; } }
           found"#,
    )
    .await;
    let vm = |i: usize, f: usize| {
        found[i][f]
            .as_str()
            .unwrap_or_else(|| panic!("no three VMs behind one subnet NSG: {found}"))
            .to_string()
    };
    let rg = vm(0, 0);
    run(port_verb(&env, "open-port", &rg, &vm(0, 1))).await;
    // Two processes update the same rule at once: each reads it, then writes it whole.
    let (b, c) = (
        port_verb(&env, "open-port", &rg, &vm(1, 1)),
        port_verb(&env, "open-port", &rg, &vm(2, 1)),
    );
    let (rb, rc) = tokio::join!(run(b), run(c));
    assert_eq!(
        (rb["changed"].clone(), rc["changed"].clone()),
        (json!(true), json!(true))
    );
    let now = destinations(&env, &rg, &vm(0, 1)).await.unwrap();
    for i in 0..3 {
        let d = format!("{}/32", vm(i, 2));
        assert!(now.contains(&d), "{d} lost from {now:?}");
    }
}
