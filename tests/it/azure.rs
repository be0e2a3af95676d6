//! The ARM client against a scripted ARM server: VM lookup, retries and throttling on tokio's
//! paused clock, long-running operations, paging, RunCommand, and the token staying out of logs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azssh::azure::{self, AzureError, network, run_command, vm};
use azssh::error::UserError;
use serde_json::json;
use tokio::time::Instant;

use crate::azure_fake::{ArmFake, Canned, SUBSCRIPTION, TOKEN};

const RG: &str = "rg1";

fn vm_path(fake: &ArmFake, name: &str) -> String {
    fake.sub_path(&format!(
        "/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}"
    ))
}

fn net_id(fake: &ArmFake, rest: &str) -> String {
    fake.sub_path(&format!(
        "/resourceGroups/{RG}/providers/Microsoft.Network/{rest}"
    ))
}

fn vm_body(fake: &ArmFake, name: &str, power: &str) -> serde_json::Value {
    json!({
        "name": name, "id": vm_path(fake, name), "type": "Microsoft.Compute/virtualMachines",
        "location": "westus", "tags": {"env": "prod"},
        "properties": {
            "provisioningState": "Succeeded",
            "hardwareProfile": {"vmSize": "Standard_B2s"},
            "storageProfile": {
                "imageReference": {"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-Datacenter", "version": "latest"},
                "osDisk": {"osType": "Windows", "name": "osdisk"}},
            "osProfile": {"computerName": name, "adminUsername": "azureuser"},
            "networkProfile": {"networkInterfaces": [{"id": net_id(fake, &format!("networkInterfaces/{name}-nic"))}]},
            "instanceView": {
                "computerName": name, "osName": "Windows Server 2022 Datacenter", "osVersion": "10.0.20348.2340",
                "vmAgent": {"statuses": [{"code": "ProvisioningState/succeeded", "displayStatus": "Ready"}]},
                "statuses": [{"code": "ProvisioningState/succeeded"}, {"code": format!("PowerState/{power}")}]}
        }
    })
}

/// Routes for a VM named `name` with a NIC (NSG `nic-nsg`), a public IP and a subnet (NSG `subnet-nsg`).
fn serve_vm(fake: &ArmFake, name: &str, power: &str) {
    let nic = net_id(fake, &format!("networkInterfaces/{name}-nic"));
    let pip = net_id(fake, &format!("publicIPAddresses/{name}-ip"));
    let subnet = net_id(fake, "virtualNetworks/vnet/subnets/default");
    fake.on(
        "GET",
        &vm_path(fake, name),
        vec![Canned::json(200, vm_body(fake, name, power))],
    );
    fake.on("GET", &nic, vec![Canned::json(200, json!({"id": nic, "name": format!("{name}-nic"), "properties": {
        "ipConfigurations": [{"name": "ipconfig1", "properties": {"privateIPAddress": "10.0.0.4", "primary": true,
            "publicIPAddress": {"id": pip}, "subnet": {"id": subnet}}}],
        "networkSecurityGroup": {"id": net_id(fake, "networkSecurityGroups/nic-nsg")}}}))]);
    fake.on(
        "GET",
        &pip,
        vec![Canned::json(
            200,
            json!({"id": pip, "properties": {"ipAddress": "20.1.2.3"}}),
        )],
    );
    fake.on("GET", &subnet, vec![Canned::json(200, json!({"id": subnet, "properties": {
        "addressPrefix": "10.0.0.0/24", "networkSecurityGroup": {"id": net_id(fake, "networkSecurityGroups/subnet-nsg")}}}))]);
}

#[tokio::test(start_paused = true)]
async fn get_vm_resolves_nic_public_ip_and_subnet_nsgs() {
    let fake = ArmFake::start();
    serve_vm(&fake, "web1", "running");
    let v = vm::get_vm(&fake.client(), RG, "web1").await.expect("vm");
    assert_eq!(v.name, "web1");
    assert_eq!(v.resource_group, RG);
    assert_eq!(v.subscription, SUBSCRIPTION);
    assert_eq!(v.power_state, "running");
    assert_eq!(v.public_ip.as_deref(), Some("20.1.2.3"));
    assert_eq!(v.private_ip.as_deref(), Some("10.0.0.4"));
    assert_eq!(v.os_type.as_deref(), Some("Windows"));
    assert_eq!(v.os_name.as_deref(), Some("Windows Server 2022 Datacenter"));
    assert_eq!(v.image_sku.as_deref(), Some("2022-Datacenter"));
    assert_eq!(v.size.as_deref(), Some("Standard_B2s"));
    assert_eq!(v.admin_username.as_deref(), Some("azureuser"));
    assert_eq!(v.tags.get("env").map(String::as_str), Some("prod"));
    assert_eq!(
        v.nsg_ids,
        vec![
            net_id(&fake, "networkSecurityGroups/nic-nsg"),
            net_id(&fake, "networkSecurityGroups/subnet-nsg")
        ]
    );
    let first = &fake.requests()[0];
    assert_eq!(
        first.query_param("$expand").as_deref(),
        Some("instanceView")
    );
}

#[tokio::test(start_paused = true)]
async fn every_request_carries_api_version_token_and_request_id() {
    let fake = ArmFake::start();
    serve_vm(&fake, "web1", "running");
    vm::get_vm(&fake.client(), RG, "web1").await.expect("vm");
    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    for r in &requests {
        let expected = if r.path.contains("Microsoft.Compute") {
            "2025-04-01"
        } else {
            "2024-07-01"
        };
        assert_eq!(
            r.query_param("api-version").as_deref(),
            Some(expected),
            "{}",
            r.path
        );
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(r.headers.get("x-ms-client-request-id").is_some());
    }
}

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

/// Serves RunCommand like Azure: 202 with both headers, InProgress, Succeeded, then the result at
/// `Location`. The guest "prints" `stdout` and echoes our trailer with `exit`.
fn serve_run_command(
    fake: &ArmFake,
    name: &str,
    stdout: &'static str,
    exit: i64,
    busy_first: bool,
) {
    let marker = Arc::new(Mutex::new(String::new()));
    let op = fake.sub_path("/providers/Microsoft.Compute/locations/westus/operations/rc1");
    let seen = marker.clone();
    let async_url = format!("{{base}}{op}?p=abc&api-version=2025-04-01");
    let location = format!("{{base}}{op}?p=abc&monitor=true&api-version=2025-04-01");
    let busy = Arc::new(Mutex::new(busy_first));
    fake.on_fn("POST", &format!("{}/runCommand", vm_path(fake, name)), move |r| {
        if std::mem::take(&mut *busy.lock().unwrap_or_else(|e| e.into_inner())) {
            return Canned::error(409, "Conflict", "Run command extension execution is in progress. Please wait for completion before invoking a run command.");
        }
        let body = r.json();
        let last = body["script"].as_array().and_then(|s| s.last()).and_then(|l| l.as_str()).unwrap_or("").to_string();
        let m = last.split("('").nth(1).and_then(|s| s.split(':').next()).unwrap_or("").to_string();
        *seen.lock().unwrap_or_else(|e| e.into_inner()) = m;
        Canned::empty(202).header("Azure-AsyncOperation", &async_url).header("Location", &location)
    });
    fake.on_fn("GET", &op, move |r| {
        if r.query_param("monitor").is_some() {
            let m = marker.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Canned::json(200, json!({"value": [
                {"code": "ComponentStatus/StdOut/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded",
                 "message": format!("{stdout}{m}:{exit}\n")},
                {"code": "ComponentStatus/StdErr/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": ""}]}))
        } else {
            Canned::json(200, json!({"status": "Succeeded", "name": "rc1"}))
        }
    });
}

#[tokio::test(start_paused = true)]
async fn run_powershell_reads_output_and_exit_code_after_a_busy_vm() {
    let fake = ArmFake::start();
    serve_run_command(&fake, "web1", "web1\n", 3, true);
    let statuses = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = statuses.clone();
    let mut config =
        azure::ArmConfig::with_static_token(&fake.base, SUBSCRIPTION, TOKEN).expect("config");
    config.timeouts = azure::Timeouts {
        connect: None,
        request: None,
    };
    config.status_hook = Some(Arc::new(move |s: &str| {
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s.to_string())
    }));
    let client = azure::ArmClient::new(config).expect("client");
    let start = Instant::now();
    let out = run_command::run_powershell(
        &client,
        &vm_path(&fake, "web1"),
        &["hostname".into(), "cmd /c exit 3".into()],
        &Default::default(),
    )
    .await
    .expect("ran");
    assert_eq!(out.stdout, "web1\n");
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(out.stderr, "");
    assert!(!out.truncated);
    assert!(
        start.elapsed() >= Duration::from_secs(10),
        "the busy 409 must back off"
    );
    assert!(out.duration_ms >= 10_000);
    let statuses = statuses.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        statuses
            .iter()
            .any(|s| s.contains("RunCommand on VM `web1`")),
        "{statuses:?}"
    );
    let post = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("post");
    assert_eq!(post.json()["commandId"], "RunPowerShellScript");
    assert_eq!(post.json()["script"][0], "hostname");
}

#[tokio::test(start_paused = true)]
async fn start_vm_waits_for_the_operation_and_confirms_running() {
    let fake = ArmFake::start();
    serve_vm(&fake, "web1", "deallocated");
    let op = fake.sub_path("/providers/Microsoft.Compute/locations/westus/operations/start1");
    fake.on(
        "POST",
        &format!("{}/start", vm_path(&fake, "web1")),
        vec![Canned::empty(202).header(
            "Azure-AsyncOperation",
            &format!("{{base}}{op}?api-version=2025-04-01"),
        )],
    );
    fake.on(
        "GET",
        &op,
        vec![
            Canned::json(200, json!({"status": "InProgress"})),
            Canned::json(200, json!({"status": "Succeeded"})),
        ],
    );
    // Read by `get_vm`, then by `ensure_running`'s fresh look, then after the start.
    fake.on(
        "GET",
        &vm_path(&fake, "web1"),
        vec![
            Canned::json(200, vm_body(&fake, "web1", "deallocated")),
            Canned::json(200, vm_body(&fake, "web1", "deallocated")),
            Canned::json(200, vm_body(&fake, "web1", "running")),
        ],
    );
    let client = fake.client();
    let before = vm::get_vm(&client, RG, "web1").await.expect("vm");
    assert_eq!(before.power_state, "deallocated");
    let (after, started) = vm::ensure_running(&client, &before).await.expect("started");
    assert!(started);
    assert_eq!(after.power_state, "running");
    let post = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("start");
    assert_eq!(
        post.headers
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("0")
    );
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

#[tokio::test(start_paused = true)]
async fn find_vms_filters_by_tag_name_and_power_state() {
    let fake = ArmFake::start();
    let list = fake.sub_path(&format!(
        "/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines"
    ));
    let mut other = vm_body(&fake, "db1", "running");
    other["tags"] = json!({"env": "dev"});
    fake.on("GET", &list, vec![Canned::json(200, json!({"value": [vm_body(&fake, "web1", "running"), vm_body(&fake, "web2", "deallocated"), other]}))]);
    serve_vm(&fake, "web1", "running");
    serve_vm(&fake, "web2", "deallocated");
    let filter = vm::VmFilter {
        resource_group: Some(RG.into()),
        tags: [("ENV".to_string(), "prod".to_string())].into(),
        name: Some("web*".into()),
        power_state: Some("running".into()),
    };
    let found = vm::find_vms(&fake.client(), &filter, vm::Detail::Full, 4)
        .await
        .expect("find");
    let names: Vec<&str> = found.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["web1"]);
    assert_eq!(found[0].public_ip.as_deref(), Some("20.1.2.3"));
}

#[tokio::test(start_paused = true)]
async fn graph_query_pages_with_skip_token() {
    let fake = ArmFake::start();
    fake.on_fn("POST", "/providers/Microsoft.ResourceGraph/resources", |r| {
        let body = r.json();
        match body["options"]["$skipToken"].as_str() {
            None => Canned::json(200, json!({"totalRecords": 3, "count": 2, "resultTruncated": "false", "$skipToken": "t2",
                "data": [{"id": "/a"}, {"id": "/b"}]})),
            Some(_) => Canned::json(200, json!({"totalRecords": 3, "count": 1, "resultTruncated": "false", "data": [{"id": "/c"}]})),
        }
    });
    let rows = azure::graph::graph_query(
        &fake.client(),
        "Resources | project id",
        &Default::default(),
    )
    .await
    .expect("query");
    assert_eq!(rows.len(), 3);
    let requests = fake.requests();
    assert_eq!(requests[0].json()["subscriptions"][0], SUBSCRIPTION);
    assert_eq!(requests[1].json()["options"]["$skipToken"], "t2");
    assert_eq!(
        requests[0].query_param("api-version").as_deref(),
        Some("2024-04-01")
    );
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

/// Issue 3's "done when": a VM lookup and a RunCommand against an ARM-speaking server survive a
/// 429, and every request carried the api-version and the token.
#[tokio::test(start_paused = true)]
async fn vm_lookup_and_run_powershell_survive_a_429() {
    let fake = ArmFake::start();
    serve_vm(&fake, "web1", "running");
    fake.on(
        "GET",
        &vm_path(&fake, "web1"),
        vec![
            Canned::error(429, "TooManyRequests", "throttled").header("Retry-After", "2"),
            Canned::json(200, vm_body(&fake, "web1", "running")),
        ],
    );
    serve_run_command(&fake, "web1", "WEB1\r\n", 0, false);
    let client = fake.client();
    let v = vm::get_vm(&client, RG, "web1").await.expect("vm");
    assert_eq!(v.power_state, "running");
    assert_eq!(v.public_ip.as_deref(), Some("20.1.2.3"));
    let out = run_command::run_powershell(
        &client,
        &v.id,
        &run_command::script_lines("hostname"),
        &Default::default(),
    )
    .await
    .expect("ran");
    assert_eq!(out.stdout, "WEB1\r\n");
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(client.budget().throttled(), 1);
    for r in fake.requests() {
        assert!(
            r.query_param("api-version").is_some(),
            "{} {} lacks api-version",
            r.method,
            r.path
        );
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
}
