//! Wire-level tests of `If-Match` on security-rule writes, spoken to as a client does (raw
//! HTTP/1.1): the etag a read returns lets exactly one write through, any write to the NSG in
//! between (a colleague's) turns it into the recorded 412 `PreconditionFailed`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::nsg::InterposedWrite;
use crate::server::lock;
use crate::testing::Emu;
use crate::wire_client_tests;

const API: &str = "api-version=2024-05-01";

/// An ARM request at this file's `api-version`, with `If-Match` when given.
async fn arm(
    emu: &Emu,
    method: &str,
    path: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let headers: Vec<(&str, &str)> = if_match.map(|e| ("If-Match", e)).into_iter().collect();
    wire_client_tests::arm(emu, method, &format!("{path}{sep}{API}"), &headers, body).await
}

/// The first NSG of the world: `(resource group, nsg name, nsg path)`.
fn first_nsg(emu: &Emu) -> (String, String, String) {
    let world = lock(&emu.handle.app.world);
    let n = &world.nsgs[0];
    let rg = world.groups[n.group as usize].name.clone();
    let path = format!(
        "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Network/networkSecurityGroups/{}",
        world.subscription, n.name
    );
    (rg, n.name.clone(), path)
}

fn rule_body(port: u16, priority: u16, destinations: &[&str]) -> Value {
    json!({"properties": {"protocol": "Tcp", "sourcePortRange": "*",
        "destinationPortRange": port.to_string(), "sourceAddressPrefix": "203.0.113.7/32",
        "destinationAddressPrefixes": destinations, "access": "Allow",
        "priority": priority, "direction": "Inbound", "description": "etag test"}})
}

/// Creates rule `etag-probe` (port 5986 to two addresses) in `nsg` and waits until it settles:
/// its id and the etag read then.
async fn probe_rule(emu: &Emu, nsg: &str) -> (String, String) {
    let rule = format!("{nsg}/securityRules/etag-probe");
    arm(
        emu,
        "PUT",
        &rule,
        None,
        Some(rule_body(5986, 3001, &["10.0.0.4/32", "10.0.0.5/32"])),
    )
    .await;
    let seen = settled(emu, &rule).await["etag"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (rule, seen)
}

/// Waits until the rule's write has completed (its operation runs at `--speed`). Bounded by
/// time, not by a count of polls: on a loaded machine the operation's timer fires late, and
/// 200 polls 10 ms apart (2 s) are no safe bound.
async fn settled(emu: &Emu, path: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let (status, rule) = arm(emu, "GET", path, None, None).await;
        if status == 200 && rule["properties"]["provisioningState"] == "Succeeded" {
            return rule;
        }
        if status == 404 {
            return Value::Null;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("rule {path} never settled within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_carries_the_nsgs_etag_and_every_write_changes_it() {
    let emu = Emu::builder().vms(4).start().await;
    let (_, _, nsg) = first_nsg(&emu);
    let rule = format!("{nsg}/securityRules/etag-probe");
    let (_, before) = arm(&emu, "GET", &nsg, None, None).await;
    let (status, created) = arm(
        &emu,
        "PUT",
        &rule,
        None,
        Some(rule_body(5986, 3001, &["10.0.0.4/32", "10.0.0.5/32"])),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let etag = |v: &Value| v["etag"].as_str().unwrap_or_default().to_string();
    assert!(etag(&created).starts_with("W/\""), "{created}");
    assert_ne!(
        etag(&created),
        etag(&before),
        "the accepted write changed it"
    );
    let done = settled(&emu, &rule).await;
    assert_ne!(
        etag(&done),
        etag(&created),
        "the completed write changed it again"
    );
    let (_, group) = arm(&emu, "GET", &nsg, None, None).await;
    assert_eq!(
        etag(&group),
        etag(&done),
        "one etag for the NSG and its rules"
    );
    for r in group["properties"]["securityRules"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            group["properties"]["defaultSecurityRules"]
                .as_array()
                .into_iter()
                .flatten(),
        )
    {
        assert_eq!(etag(r), etag(&group), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_lets_the_current_etag_through_and_refuses_a_stale_one() {
    let emu = Emu::builder().vms(4).start().await;
    let (_, _, nsg) = first_nsg(&emu);
    let (rule, seen) = probe_rule(&emu, &nsg).await;

    // Someone else writes another rule of the NSG: the etag we read is stale now.
    let other = format!("{nsg}/securityRules/colleague");
    arm(
        &emu,
        "PUT",
        &other,
        None,
        Some(rule_body(3389, 3002, &["10.0.0.6/32", "10.0.0.7/32"])),
    )
    .await;
    settled(&emu, &other).await;

    let (status, refused) = arm(
        &emu,
        "PUT",
        &rule,
        Some(&seen),
        Some(rule_body(5986, 3001, &["10.0.0.5/32", "10.0.0.9/32"])),
    )
    .await;
    assert_eq!(status, 412, "{refused}");
    assert_eq!(refused["error"]["code"], "PreconditionFailed");
    assert_eq!(refused["error"]["message"], "Precondition failed.");
    let detail = &refused["error"]["details"][0];
    assert_eq!(detail["code"], "PreconditionFailedEtagMismatch");
    let (_, now) = arm(&emu, "GET", &rule, None, None).await;
    let id = now["id"].as_str().unwrap_or_default();
    assert_eq!(
        detail["message"],
        format!(
            "Etag provided in if-match header {seen} does not match etag {} of resource {id} in NRP data store.",
            now["etag"].as_str().unwrap_or_default()
        )
    );
    assert_eq!(
        now["properties"]["destinationAddressPrefixes"],
        json!(["10.0.0.4/32", "10.0.0.5/32"]),
        "the refused write changed nothing"
    );
    // DELETE is conditional too.
    let (status, _) = arm(&emu, "DELETE", &rule, Some(&seen), None).await;
    assert_eq!(status, 412);
    assert_eq!(
        arm(&emu, "GET", &rule, None, None).await.0,
        200,
        "still there"
    );

    // With the etag read now, the write goes through.
    let current = now["etag"].as_str().unwrap_or_default().to_string();
    let (status, body) = arm(
        &emu,
        "PUT",
        &rule,
        Some(&current),
        Some(rule_body(5986, 3001, &["10.0.0.5/32", "10.0.0.9/32"])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let fresh = settled(&emu, &rule).await["etag"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, _) = arm(&emu, "DELETE", &rule, Some(&fresh), None).await;
    assert_eq!(status, 202);
    assert_eq!(settled(&emu, &rule).await, Value::Null, "deleted");

    // If-Match names an existing resource: on a rule that is not there it fails (RFC 9110).
    let (status, _) = arm(
        &emu,
        "PUT",
        &rule,
        Some(&fresh),
        Some(rule_body(5986, 3001, &["10.0.0.4/32", "10.0.0.5/32"])),
    )
    .await;
    assert_eq!(status, 412);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interposed_write_lands_between_a_read_and_the_next_write() {
    let emu = Emu::builder().vms(4).start().await;
    let (rg, name, nsg) = first_nsg(&emu);
    let (rule, seen) = probe_rule(&emu, &nsg).await;
    assert!(emu.handle.interpose_rule_writes(
        &rg,
        &name,
        vec![InterposedWrite::Put {
            rule: "etag-probe".into(),
            body: rule_body(5986, 3001, &["10.0.0.4/32", "10.0.0.5/32", "10.0.0.8/32"]),
        }],
    ));
    let (status, _) = arm(
        &emu,
        "PUT",
        &rule,
        Some(&seen),
        Some(rule_body(
            5986,
            3001,
            &["10.0.0.4/32", "10.0.0.5/32", "10.0.0.6/32"],
        )),
    )
    .await;
    assert_eq!(status, 412, "the colleague's write came first");
    let (_, now) = arm(&emu, "GET", &rule, None, None).await;
    assert_eq!(
        now["properties"]["destinationAddressPrefixes"],
        json!(["10.0.0.4/32", "10.0.0.5/32", "10.0.0.8/32"])
    );
    assert!(
        !emu.handle
            .interpose_rule_writes(&rg, "no-such-nsg", Vec::new())
    );
}
