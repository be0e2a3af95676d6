//! The ARM client's transport against a scripted ARM server on tokio's paused clock: 429 with and
//! without `Retry-After`, 5xx and connection failures, which calls are never repeated, failed and
//! successful long-running operations, paging, error hints, the throttle budget, and the token
//! staying out of trace logs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azssh::azure::{self, AzureError, network, run_command, vm};
use azssh::error::UserError;
use serde_json::json;
use tokio::time::Instant;

use crate::azure::fake::{ArmFake, Canned, TOKEN};
use crate::azure::{RG, net_id, serve_run_command, serve_vm, vm_body, vm_path};
#[tokio::test(start_paused = true)]
async fn retry_after_on_429_is_honoured() {
    let fake = ArmFake::start();
    let path = vm_path(&fake, "web1");
    fake.on(
        "GET",
        &path,
        vec![
            Canned::error(429, "TooManyRequests", "slow down").header("Retry-After", "7"),
            Canned::json(200, vm_body(&fake, "web1", "running")),
        ],
    );
    let client = fake.client();
    let start = Instant::now();
    let v: vm::VirtualMachineJson = client
        .get_json(&path, azure::Provider::Compute, &[])
        .await
        .expect("after retry");
    assert_eq!(v.name, "web1");
    assert!(
        start.elapsed() >= Duration::from_secs(7),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(client.budget().throttled(), 1);
    assert_eq!(client.budget().requests_sent(), 2);
}

#[tokio::test(start_paused = true)]
async fn throttled_without_retry_after_backs_off_until_success() {
    let fake = ArmFake::start();
    let path = vm_path(&fake, "web1");
    fake.on(
        "GET",
        &path,
        vec![
            Canned::error(429, "TooManyRequests", "slow down"),
            Canned::error(429, "TooManyRequests", "slow down"),
            Canned::json(200, vm_body(&fake, "web1", "running")),
        ],
    );
    let client = fake.client();
    let start = Instant::now();
    let _: serde_json::Value = client
        .get_json(&path, azure::Provider::Compute, &[])
        .await
        .expect("after back-off");
    // Jittered exponential back-off from 1 s: at least 0.5 s + 1 s.
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(client.budget().throttled(), 2);
    assert_eq!(client.budget().retries(), 2);
}

#[tokio::test(start_paused = true)]
async fn throttling_that_outlasts_the_deadline_fails_with_a_hint() {
    let fake = ArmFake::start();
    let path = vm_path(&fake, "web1");
    fake.on(
        "GET",
        &path,
        vec![Canned::error(429, "TooManyRequests", "slow down").header("Retry-After", "1200")],
    );
    let err = fake
        .client()
        .get_json::<serde_json::Value>(&path, azure::Provider::Compute, &[])
        .await
        .expect_err("429");
    assert_eq!(err.kind(), "azure.throttled");
    assert!(err.hint().unwrap_or_default().contains("retry in 1200s"));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_for_gets() {
    let fake = ArmFake::start();
    let path = vm_path(&fake, "web1");
    fake.on(
        "GET",
        &path,
        vec![
            Canned::empty(503),
            Canned {
                status: 500,
                headers: vec![],
                body: "<html>oops</html>".into(),
            },
            Canned::json(200, vm_body(&fake, "web1", "running")),
        ],
    );
    let _: serde_json::Value = fake
        .client()
        .get_json(&path, azure::Provider::Compute, &[])
        .await
        .expect("third time");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn run_command_is_not_repeated_after_a_server_error() {
    let fake = ArmFake::start();
    let path = format!("{}/runCommand", vm_path(&fake, "web1"));
    fake.on(
        "POST",
        &path,
        vec![Canned::error(500, "InternalServerError", "boom")],
    );
    let err = run_command::run_powershell(
        &fake.client(),
        &vm_path(&fake, "web1"),
        &["hostname".into()],
        &Default::default(),
    )
    .await
    .expect_err("500");
    assert_eq!(err.kind(), "azure.server_error");
    assert_eq!(
        fake.requests().len(),
        1,
        "a POST with effects must not be sent twice"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_lro_surfaces_the_operation_error() {
    let fake = ArmFake::start();
    let nsg = net_id(&fake, "networkSecurityGroups/nsg1");
    let rule = format!("{nsg}/securityRules/allow-SSH");
    let op = fake.sub_path("/providers/Microsoft.Network/locations/westus/operations/op1");
    fake.on(
        "PUT",
        &rule,
        vec![
            Canned::json(
                201,
                json!({"name": "allow-SSH", "properties": {"provisioningState": "Updating"}}),
            )
            .header(
                "Azure-AsyncOperation",
                &format!("{{base}}{op}?api-version=2024-07-01"),
            ),
        ],
    );
    fake.on("GET", &op, vec![
        Canned::json(200, json!({"status": "InProgress"})),
        Canned::json(200, json!({"status": "Failed", "error": {"code": "SecurityRuleConflict",
            "message": "Security rule allow-SSH conflicts with rule other. Rules cannot have the same Priority and Direction."}})),
    ]);
    let props = network::SecurityRuleProperties::allow_inbound("Tcp", 22, "203.0.113.7/32", 1000);
    let err = network::create_or_update_security_rule(&fake.client(), &nsg, "allow-SSH", &props)
        .await
        .expect_err("failed");
    match &err {
        AzureError::OperationFailed {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(status, "Failed");
            assert_eq!(code, "SecurityRuleConflict");
            assert!(message.contains("conflicts with rule other"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.kind(), "azure.operation_failed");
    let put = &fake.requests()[0];
    assert_eq!(put.json(), props.to_request_body());
}

#[tokio::test(start_paused = true)]
async fn security_rule_create_polls_then_reads_the_rule_and_delete_waits() {
    let fake = ArmFake::start();
    let nsg = net_id(&fake, "networkSecurityGroups/nsg1");
    let rule = format!("{nsg}/securityRules/allow-SSH");
    let op = fake.sub_path("/providers/Microsoft.Network/locations/westus/operations/op2");
    let del_op = fake.sub_path("/providers/Microsoft.Network/locations/westus/operations/del");
    let final_rule = json!({"name": "allow-SSH", "id": rule, "etag": "W/\"2\"", "properties": {
        "provisioningState": "Succeeded", "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22",
        "sourceAddressPrefix": "203.0.113.7/32", "destinationAddressPrefix": "*", "access": "Allow", "priority": 1000,
        "direction": "Inbound"}});
    fake.on(
        "PUT",
        &rule,
        vec![
            Canned::json(
                201,
                json!({"properties": {"provisioningState": "Updating"}}),
            )
            .header(
                "Azure-AsyncOperation",
                &format!("{{base}}{op}?api-version=2024-07-01"),
            )
            .header("Retry-After", "3"),
        ],
    );
    fake.on(
        "GET",
        &op,
        vec![Canned::json(200, json!({"status": "Succeeded"}))],
    );
    fake.on("GET", &rule, vec![Canned::json(200, final_rule)]);
    fake.on(
        "DELETE",
        &rule,
        vec![Canned::empty(202).header(
            "Location",
            &format!("{{base}}{del_op}?api-version=2024-07-01"),
        )],
    );
    fake.on("GET", &del_op, vec![Canned::empty(202), Canned::empty(204)]);
    let client = fake.client();
    let start = Instant::now();
    let props = network::SecurityRuleProperties::allow_inbound("Tcp", 22, "203.0.113.7/32", 1000);
    let created = network::create_or_update_security_rule(&client, &nsg, "allow-SSH", &props)
        .await
        .expect("created");
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "Retry-After of the PUT was not honoured"
    );
    assert_eq!(
        created.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(created.etag.as_deref(), Some("W/\"2\""));
    network::delete_security_rule(&client, &nsg, "allow-SSH")
        .await
        .expect("deleted");
    let methods: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path.rsplit('/').next().unwrap_or("")))
        .collect();
    assert_eq!(
        methods,
        [
            "PUT allow-SSH",
            "GET op2",
            "GET allow-SSH",
            "DELETE allow-SSH",
            "GET del",
            "GET del"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn paging_follows_next_link_over_three_pages() {
    let fake = ArmFake::start();
    let list = fake.sub_path("/providers/Microsoft.Compute/virtualMachines");
    let page = |names: &[&str], next: Option<&str>| {
        let value: Vec<_> = names.iter().map(|n| vm_body(&fake, n, "running")).collect();
        match next {
            Some(n) => {
                json!({"value": value, "nextLink": format!("{{base}}{list}?api-version=2025-04-01&$skiptoken={n}")})
            }
            None => json!({"value": value}),
        }
    };
    let pages = [
        page(&["a", "b"], Some("p2")),
        page(&["c"], Some("p3")),
        page(&["d", "e"], None),
    ];
    fake.on_fn("GET", &list, move |r| {
        let i = match r.query_param("$skiptoken").as_deref() {
            None => 0,
            Some("p2") => 1,
            _ => 2,
        };
        Canned::json(200, pages[i].clone())
    });
    let vms = vm::list_vms(&fake.client(), None).await.expect("list");
    let names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    assert!(vms.iter().all(|v| !v.network_resolved));
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn unauthorized_gives_the_az_login_hint() {
    let fake = ArmFake::start();
    fake.on(
        "GET",
        &vm_path(&fake, "web1"),
        vec![Canned::error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        )],
    );
    let err = vm::get_vm(&fake.client(), RG, "web1")
        .await
        .expect_err("401");
    assert_eq!(err.kind(), "azure.unauthorized");
    assert!(err.hint().unwrap_or_default().contains("az login"));
    assert!(!err.to_string().contains(TOKEN) && !format!("{err:?}").contains(TOKEN));
}

#[tokio::test(start_paused = true)]
async fn missing_vm_is_not_found_with_a_hint() {
    let fake = ArmFake::start();
    let err = vm::get_vm(&fake.client(), RG, "nope")
        .await
        .expect_err("404");
    assert_eq!(err.kind(), "azure.not_found");
    assert!(err.hint().unwrap_or_default().contains("resource group"));
}

#[tokio::test(start_paused = true)]
async fn throttle_budget_tracks_remaining_headers() {
    let fake = ArmFake::start();
    let path = vm_path(&fake, "web1");
    fake.on(
        "GET",
        &path,
        vec![
            Canned::json(200, vm_body(&fake, "web1", "running"))
                .header("x-ms-ratelimit-remaining-subscription-reads", "249")
                .header("x-ms-ratelimit-remaining-subscription-global-reads", "3749"),
        ],
    );
    let client = fake.client();
    let _: serde_json::Value = client
        .get_json(&path, azure::Provider::Compute, &[])
        .await
        .expect("get");
    let b = client.clone().budget().snapshot();
    assert_eq!(b.remaining_reads, Some(249));
    assert_eq!(b.remaining_writes, None);
    assert_eq!(b.requests_sent, 1);
}

/// A `MakeWriter` that keeps everything logged in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn token_never_appears_in_trace_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let fake = ArmFake::start();
    serve_vm(&fake, "web1", "running");
    serve_run_command(&fake, "web1", "web1\n", 0, false);
    fake.on(
        "GET",
        &vm_path(&fake, "gone"),
        vec![Canned::error(401, "InvalidAuthenticationToken", "expired")],
    );
    let client = fake.client();
    let workload = || async {
        let v = vm::get_vm(&client, RG, "web1").await.expect("vm");
        run_command::run_powershell(&client, &v.id, &["hostname".into()], &Default::default())
            .await
            .expect("ran");
        let err = vm::get_vm(&client, RG, "gone").await.expect_err("401");
        tracing::error!(error = %err, debug = ?err, client = ?client, "logged like the CLI would");
    };
    // Other tests' threads register the client's callsites concurrently, possibly deciding "no
    // subscriber wants this" just before ours existed. Once every callsite is registered, ask
    // tracing to decide again, then measure a second run.
    workload().await;
    tracing::callsite::rebuild_interest_cache();
    captured.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    workload().await;
    let logs =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner())).to_string();
    assert!(
        logs.contains("ARM request"),
        "the capture must see the client's logs: {logs}"
    );
    assert!(!logs.contains(TOKEN), "token leaked into logs");
    assert!(!logs.contains("fake-arm-token"), "token leaked into logs");
}

#[tokio::test(start_paused = true)]
async fn connection_refused_is_retried_then_reported() {
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut config =
        azure::ArmConfig::with_static_token(&format!("http://127.0.0.1:{port}"), "sub", TOKEN)
            .expect("config");
    config.timeouts = azure::Timeouts {
        connect: None,
        request: None,
    };
    let client = azure::ArmClient::new(config).expect("client");
    let err = vm::get_vm(&client, RG, "web1").await.expect_err("refused");
    assert_eq!(err.kind(), "azure.transport");
    assert!(err.hint().is_some_and(|h| h.contains("AZSSH_ARM_ENDPOINT")));
    assert_eq!(
        client.budget().requests_sent(),
        6,
        "the default policy makes 6 attempts"
    );
    assert!(
        !err.to_string().contains("api-version"),
        "no query strings in messages: {err}"
    );
}

#[tokio::test(start_paused = true)]
async fn connection_dropped_mid_request_is_retried_for_gets() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().take(2).enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            if i == 1 {
                let body = r#"{"name":"ok"}"#;
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            // The first connection is closed without an answer, like a reset by a proxy.
        }
    });
    let mut config = azure::ArmConfig::with_static_token(&format!("http://{addr}"), "sub", TOKEN)
        .expect("config");
    config.timeouts = azure::Timeouts {
        connect: None,
        request: None,
    };
    let client = azure::ArmClient::new(config).expect("client");
    let v: serde_json::Value = client
        .get_json("/subscriptions/sub/x", azure::Provider::Compute, &[])
        .await
        .expect("second try");
    assert_eq!(v["name"], "ok");
    assert_eq!(client.budget().retries(), 1);
}

/// A credential that hands out `token-0`, `token-1`, ... and counts its calls.
struct Rotating(std::sync::atomic::AtomicUsize);

impl azure::FetchToken for Rotating {
    fn name(&self) -> &str {
        "rotating"
    }
    fn fetch<'a>(
        &'a self,
        _scope: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<azure::AccessToken, String>> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            Ok(azure::AccessToken {
                token: azssh::secret::Secret::new(format!("token-{n}")),
                expires_on: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            })
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_is_replaced_once() {
    let fake = ArmFake::start();
    let path = vm_path(&fake, "web1");
    fake.on_fn("GET", &path, |r| {
        match r.headers.get("authorization").and_then(|v| v.to_str().ok()) {
            Some("Bearer token-1") => Canned::json(200, json!({"name": "web1"})),
            _ => Canned::error(
                401,
                "InvalidAuthenticationToken",
                "The access token has been revoked.",
            ),
        }
    });
    let link = Arc::new(Rotating(std::sync::atomic::AtomicUsize::new(0)));
    let mut config =
        azure::ArmConfig::with_static_token(&fake.base, "sub", "unused").expect("config");
    config.token = azure::TokenSource::Chain(vec![link.clone()]);
    config.timeouts = azure::Timeouts {
        connect: None,
        request: None,
    };
    let client = azure::ArmClient::new(config).expect("client");
    let v: serde_json::Value = client
        .get_json(&path, azure::Provider::Compute, &[])
        .await
        .expect("after refresh");
    assert_eq!(v["name"], "web1");
    assert_eq!(link.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    // A token that is refused again is reported, not retried in a loop.
    let denied = fake.sub_path("/denied");
    fake.on(
        "GET",
        &denied,
        vec![Canned::error(401, "InvalidAuthenticationToken", "nope")],
    );
    let err = client
        .get_json::<serde_json::Value>(&denied, azure::Provider::Compute, &[])
        .await
        .expect_err("401");
    assert_eq!(err.kind(), "azure.unauthorized");
    assert_eq!(
        fake.requests().iter().filter(|r| r.path == denied).count(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn open_port_picks_a_free_priority_and_retries_a_conflict_once() {
    let fake = ArmFake::start();
    serve_vm(&fake, "web1", "running");
    let nsg = net_id(&fake, "networkSecurityGroups/nic-nsg");
    let rule = format!("{nsg}/securityRules/azssh-ssh-203-0-113-7-32");
    let taken = |p: i32| json!({"name": format!("r{p}"), "properties": {"protocol": "*", "access": "Allow", "priority": p, "direction": "Inbound"}});
    fake.on(
        "GET",
        &format!("{nsg}/securityRules"),
        vec![
            Canned::json(200, json!({"value": [taken(1000)]})),
            Canned::json(200, json!({"value": [taken(1000), taken(1001)]})),
        ],
    );
    fake.on_fn("PUT", &rule, |r| {
        if r.json()["properties"]["priority"] == 1001 {
            Canned::error(400, "SecurityRuleConflict", "Security rule allow-SSH conflicts with rule r1001. Rules cannot have the same Priority and Direction.")
        } else {
            Canned::json(200, json!({"name": "allow-SSH", "properties": r.json()["properties"]}))
        }
    });
    let client = fake.client();
    let v = vm::get_vm(&client, RG, "web1").await.expect("vm");
    let missing = azssh::workflow::nsg::open_port(
        &client,
        &v,
        &azssh::workflow::nsg::OpenPort {
            port: 22,
            ..Default::default()
        },
    )
    .await;
    assert!(
        matches!(
            missing,
            Err(azssh::workflow::error::WorkflowError::Azure(
                AzureError::InvalidSource { .. }
            ))
        ),
        "a source is required"
    );
    let req = azssh::workflow::nsg::OpenPort {
        port: 22,
        sources: vec!["203.0.113.7/32".into()],
        ..Default::default()
    };
    // The subnet's NSG already allows it: Azure needs both to, and that one stays unchanged.
    let subnet_nsg = net_id(&fake, "networkSecurityGroups/subnet-nsg");
    fake.on(
        "GET",
        &format!("{subnet_nsg}/securityRules"),
        vec![Canned::json(
            200,
            json!({"value": [{"name": "ssh-from-office", "properties": {"protocol": "Tcp", "sourceAddressPrefix": "203.0.113.7/32",
                "destinationPortRange": "22", "destinationAddressPrefix": "*", "access": "Allow", "priority": 300, "direction": "Inbound"}}]}),
        )],
    );
    let opened = azssh::workflow::nsg::open_port(&client, &v, &req)
        .await
        .expect("opened");
    let opened = opened.nsg.expect("a rule, no JIT policy");
    assert_eq!(opened.also.len(), 1);
    assert!(!opened.also[0].changed);
    assert_eq!(opened.rule.properties.priority, 1002);
    assert_eq!(
        opened.rule.properties.destination_port_range.as_deref(),
        Some("22")
    );
    assert_eq!(
        opened.rule.properties.source_address_prefix.as_deref(),
        Some("203.0.113.7/32")
    );
}

#[tokio::test(start_paused = true)]
async fn put_without_async_headers_polls_the_resource_until_terminal() {
    let fake = ArmFake::start();
    let ext = format!("{}/extensions/WindowsOpenSSH", vm_path(&fake, "web1"));
    let body = |state: &str| json!({"id": ext, "properties": {"publisher": "Microsoft.Azure.OpenSSH", "type": "WindowsOpenSSH", "provisioningState": state}});
    fake.on("PUT", &ext, vec![Canned::json(201, body("Creating"))]);
    fake.on(
        "GET",
        &ext,
        vec![
            Canned::json(200, body("Creating")),
            Canned::json(200, body("Succeeded")),
        ],
    );
    let client = fake.client();
    let wanted = azure::extension::VmExtension::windows_openssh("westus");
    let done = azure::extension::create_or_update_extension(
        &client,
        &vm_path(&fake, "web1"),
        "WindowsOpenSSH",
        &wanted,
    )
    .await
    .expect("provisioned");
    assert_eq!(
        done.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(fake.requests().len(), 3);

    fake.on("PUT", &ext, vec![Canned::json(201, body("Creating"))]);
    fake.on("GET", &ext, vec![Canned::json(200, body("Failed"))]);
    let err = azure::extension::create_or_update_extension(
        &client,
        &vm_path(&fake, "web1"),
        "WindowsOpenSSH",
        &wanted,
    )
    .await
    .expect_err("failed");
    assert!(
        matches!(&err, AzureError::OperationFailed { status, .. } if status == "Failed"),
        "{err:?}"
    );
}
