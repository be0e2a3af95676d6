//! Replays of real Azure traffic (`../shared/reference/recordings/`, azure-cli cassettes): a local
//! server answers with the recorded responses, Azure's host rewritten to its own, and our client
//! must send the same sequence of requests and reach the recorded final result.

use std::collections::BTreeMap;

use azssh::azure::graph::{self, GraphOptions};
use azssh::azure::network::{self, SecurityRuleProperties};
use azssh::azure::{AzureError, Provider, extension, run_command, vm};
use azssh::error::UserError;
use serde::Deserialize;
use serde_json::Value;

use crate::azure::contract::{assert_shape_within, parse, reference};
use crate::azure::fake::{ArmFake, Canned};

#[derive(Deserialize)]
struct Cassette {
    interactions: Vec<Interaction>,
}

#[derive(Deserialize, Clone)]
struct Interaction {
    request: RecordedRequest,
    response: RecordedResponse,
}

#[derive(Deserialize, Clone)]
struct RecordedRequest {
    #[serde(default)]
    body: Option<String>,
    method: String,
    uri: String,
}

#[derive(Deserialize, Clone)]
struct RecordedResponse {
    body: RecordedBody,
    #[serde(default)]
    headers: BTreeMap<String, Vec<String>>,
    status: RecordedStatus,
}

#[derive(Deserialize, Clone)]
struct RecordedBody {
    #[serde(default)]
    string: String,
}

#[derive(Deserialize, Clone)]
struct RecordedStatus {
    code: u16,
}

fn cassette(rel: &str) -> Vec<Interaction> {
    let path = reference().join("recordings").join(rel);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let c: Cassette =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    c.interactions
}

const AZURE: &str = "https://management.azure.com";

fn path_of(uri: &str) -> String {
    reqwest::Url::parse(uri)
        .map(|u| u.path().to_string())
        .unwrap_or_default()
}

/// Serves the chosen interactions from the fake, answering each `(method, path)` in recorded
/// order, with Azure's host rewritten to the fake's. Returns the recorded `(method, path)` list.
fn replay(fake: &ArmFake, interactions: &[Interaction]) -> Vec<(String, String)> {
    const HOP_BY_HOP: [&str; 4] = [
        "content-length",
        "transfer-encoding",
        "content-encoding",
        "connection",
    ];
    let mut queues: BTreeMap<(String, String), Vec<Canned>> = BTreeMap::new();
    let mut order = vec![];
    for i in interactions {
        let key = (i.request.method.clone(), path_of(&i.request.uri));
        let headers = i
            .response
            .headers
            .iter()
            .filter(|(k, _)| !HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()))
            .flat_map(|(k, vs)| {
                vs.iter()
                    .map(move |v| (k.clone(), v.replace(AZURE, "{base}")))
            })
            .collect();
        let canned = Canned {
            status: i.response.status.code,
            headers,
            body: i.response.body.string.replace(AZURE, "{base}"),
        };
        queues.entry(key.clone()).or_default().push(canned);
        order.push(key);
    }
    for ((method, path), q) in queues {
        fake.on(&method, &path, q);
    }
    order
}

fn sent(fake: &ArmFake) -> Vec<(String, String)> {
    fake.requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

fn recorded_json(i: &Interaction) -> Value {
    i.request
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

#[tokio::test(start_paused = true)]
async fn replay_run_command_lro_reaches_the_recorded_output() {
    let interactions = cassette("excerpts/test_vm_run_command_e2e.yaml");
    let fake = ArmFake::start();
    let expected = replay(&fake, &interactions);
    let vm_id = path_of(&interactions[0].request.uri)
        .trim_end_matches("/runCommand")
        .to_string();
    let out = run_command::run_powershell(
        &fake.client(),
        &vm_id,
        &["sudo apt-get update".into()],
        &Default::default(),
    )
    .await
    .expect("run command");
    // The recording's client then GETs `Location` for the result; the same payload is already
    // in the succeeded status body's `properties.output` (ARM.md §1.3), so we read it once.
    assert_eq!(
        sent(&fake),
        expected[..expected.len() - 1].to_vec(),
        "POST, two async polls, the output taken from the last one"
    );
    assert!(out.stdout.starts_with("4 (2.12.6-0ubuntu2) ..."));
    assert!(
        out.stdout
            .ends_with("Processing triggers for libc-bin (2.27-3ubuntu1) ...\r\n")
    );
    assert!(
        out.stderr
            .contains("dpkg-preconfigure: unable to re-open stdin")
    );
    assert_eq!(
        out.exit_code, None,
        "the recorded script carried no trailer, so no exit code is guessed"
    );
    // The recorded stdout is exactly Azure's 4096-byte tail (it starts mid-line), so it is
    // flagged as truncated.
    assert_eq!(out.stdout.len(), run_command::OUTPUT_TAIL_BYTES);
    assert!(out.truncated);
    let ours = fake.requests()[0].json();
    let theirs = recorded_json(&interactions[0]);
    for key in ["commandId", "script"] {
        assert!(
            ours.get(key).is_some() && theirs.get(key).is_some(),
            "{key}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn replay_nsg_rule_create_reaches_the_recorded_rule() {
    let interactions = cassette("excerpts/test_network_nsg.yaml");
    let fake = ArmFake::start();
    let expected = replay(&fake, &interactions);
    let rule_path = path_of(&interactions[0].request.uri);
    let nsg_id = rule_path
        .rsplit_once("/securityRules/")
        .map(|(a, _)| a.to_string())
        .unwrap_or_default();
    let recorded = recorded_json(&interactions[0]);
    let props: SecurityRuleProperties = parse(&recorded["properties"], "recorded rule");
    let rule = network::create_or_update_security_rule(&fake.client(), &nsg_id, "web", &props)
        .await
        .expect("rule");
    assert_eq!(sent(&fake), expected);
    assert_eq!(
        rule.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(
        rule.etag.as_deref(),
        Some("W/\"8f6a3390-aa4b-41fe-bf36-17716f37d74d\"")
    );
    assert_eq!(
        fake.requests()[0].json()["properties"],
        recorded["properties"],
        "same PUT properties as the CLI"
    );
    assert_eq!(
        fake.requests()[0].query_param("api-version").as_deref(),
        Some("2024-07-01")
    );
}

#[tokio::test(start_paused = true)]
async fn replay_vm_lookup_and_extension_delete() {
    let interactions = cassette("excerpts/test_vm_extension.yaml");
    assert_eq!(interactions.len(), 9);
    let fake = ArmFake::start();
    // NIC, public IP, the VM with its instance view; then the extension DELETE and its poll.
    replay(
        &fake,
        &[
            interactions[0].clone(),
            interactions[1].clone(),
            interactions[5].clone(),
        ],
    );
    let vm_id = path_of(&interactions[5].request.uri);
    let vm = vm::get_vm_by_id(&fake.client(), &vm_id).await.expect("vm");
    assert_eq!(vm.power_state, "running");
    assert_eq!(vm.public_ip.as_deref(), Some("20.245.233.150"));
    assert_eq!(vm.private_ip.as_deref(), Some("10.0.0.4"));
    assert_eq!(vm.os_type.as_deref(), Some("Linux"));
    assert_eq!(
        (vm.os_name.as_deref(), vm.os_version.as_deref()),
        (Some("ubuntu"), Some("18.04"))
    );
    assert_eq!(vm.image_sku.as_deref(), Some("18.04-LTS"));
    assert_eq!(vm.vm_agent_status.as_deref(), Some("Ready"));
    assert!(vm.nsg_ids.len() == 1 && vm.nsg_ids[0].ends_with("/networkSecurityGroups/myvmNSG"));

    let fake = ArmFake::start();
    let expected = replay(&fake, &interactions[7..9]);
    extension::delete_extension(&fake.client(), &vm_id, "VMAccessForLinux")
        .await
        .expect("deleted");
    assert_eq!(
        sent(&fake),
        expected,
        "DELETE, then one poll of Azure-AsyncOperation"
    );
}

#[tokio::test(start_paused = true)]
async fn replay_managed_run_command_put_ends_with_a_get_of_the_resource() {
    let interactions = cassette("excerpts/test_run_command_v2.yaml");
    let fake = ArmFake::start();
    let expected = replay(&fake, &interactions[0..3]);
    let path = path_of(&interactions[0].request.uri);
    let body = recorded_json(&interactions[0]);
    let result: Value = fake
        .client()
        .put_lro(&path, Provider::Compute, &body, "run command")
        .await
        .expect("put");
    assert_eq!(
        sent(&fake),
        expected,
        "PUT 201, poll Azure-AsyncOperation, GET the original URI"
    );
    assert_eq!(result["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test(start_paused = true)]
async fn replay_resource_graph_page() {
    let interactions = cassette("test_skip_token_query.yaml");
    let fake = ArmFake::start();
    replay(&fake, &interactions);
    let recorded = recorded_json(&interactions[0]);
    let opts = GraphOptions {
        subscriptions: parse(&recorded["subscriptions"], "subs"),
        page_size: None,
        max_rows: Some(3),
    };
    let rows = graph::graph_query(
        &fake.client(),
        recorded["query"].as_str().unwrap_or_default(),
        &opts,
    )
    .await
    .expect("rows");
    let response: Value =
        serde_json::from_str(&interactions[0].response.body.string).expect("json");
    assert_eq!(Value::Array(rows), response["data"]);
    let ours = fake.requests()[0].json();
    assert_shape_within(&ours, &recorded, "graph request");
    assert_eq!(ours["options"]["resultFormat"], "objectArray");
}

#[tokio::test(start_paused = true)]
async fn replay_resource_graph_error_keeps_code_and_details() {
    let interactions = cassette("test_query_error.yaml");
    let fake = ArmFake::start();
    replay(&fake, &interactions);
    let err = graph::graph_query(
        &fake.client(),
        "Resources | where where",
        &Default::default(),
    )
    .await
    .expect_err("400");
    match &err {
        AzureError::Api(a) => {
            assert_eq!(a.status, 400);
            assert_eq!(a.code, "BadRequest");
            let codes: Vec<&str> = a.details.iter().map(|d| d.code.as_str()).collect();
            assert_eq!(codes, ["InvalidQuery", "ParserFailure"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.kind(), "azure.bad_request");
    assert_eq!(fake.requests().len(), 1, "a 400 is not retried");
}
