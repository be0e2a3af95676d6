//! The ARM client against a scripted ARM server: VM lookup and start, RunCommand, VM filters,
//! Resource Graph, and issue 3's "done when" scenario. Retries and errors: `retry.rs`.

// The ARM client's tests, grouped: contract (the reference examples), fake (the scripted ARM
// server), replay (recorded traffic), retry (retries and errors), script (Rhai's `azure` API).
pub(crate) mod contract;
pub(crate) mod fake;
mod replay;
mod retry;
mod script;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azssh::azure::{self, run_command, vm, vm_filter};
use serde_json::json;
use tokio::time::Instant;

use crate::azure::fake::{ArmFake, Canned, SUBSCRIPTION, TOKEN};

pub(crate) const RG: &str = "rg1";

pub(crate) fn vm_path(fake: &ArmFake, name: &str) -> String {
    fake.sub_path(&format!(
        "/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}"
    ))
}

pub(crate) fn net_id(fake: &ArmFake, rest: &str) -> String {
    fake.sub_path(&format!(
        "/resourceGroups/{RG}/providers/Microsoft.Network/{rest}"
    ))
}

pub(crate) fn vm_body(fake: &ArmFake, name: &str, power: &str) -> serde_json::Value {
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
pub(crate) fn serve_vm(fake: &ArmFake, name: &str, power: &str) {
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

/// Serves RunCommand like Azure: 202 with both headers, InProgress, Succeeded, then the result at
/// `Location`. The guest "prints" `stdout` and echoes our trailer with `exit`.
pub(crate) fn serve_run_command(
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
    let filter = vm_filter::VmFilter {
        resource_group: Some(RG.into()),
        tags: [("ENV".to_string(), "prod".to_string())].into(),
        name: Some("web*".into()),
        power_state: Some("running".into()),
    };
    let found = vm_filter::find_vms(&fake.client(), &filter, vm_filter::Detail::Full, 4)
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

#[tokio::test(start_paused = true)]
async fn graph_result_truncated_without_a_skip_token_fails_with_the_fix() {
    // Resource Graph cannot page a query without `id` (or with `take`): it answers
    // `resultTruncated: "true"` and no `$skipToken`. Acting on that first page would skip VMs.
    let fake = ArmFake::start();
    fake.on_fn(
        "POST",
        "/providers/Microsoft.ResourceGraph/resources",
        |_| {
            Canned::json(
                200,
                json!({"totalRecords": 1500, "count": 1000, "resultTruncated": "true",
            "data": [{"name": "web1"}]}),
            )
        },
    );
    let err = azure::graph::graph_query(
        &fake.client(),
        "Resources | project name",
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(azssh::error::UserError::kind(&err), "azure.graph_truncated");
    let hint = azssh::error::UserError::hint(&err).unwrap();
    assert!(
        hint.contains("project `id`") && hint.contains("take"),
        "{hint}"
    );
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

#[tokio::test(start_paused = true)]
async fn openssh_extension_is_created_and_read_back() {
    let fake = ArmFake::start();
    let vm_id = vm_path(&fake, "old2016");
    let ext = format!("{vm_id}/extensions/WindowsOpenSSH");
    let op = fake.sub_path("/providers/Microsoft.Compute/locations/westus/operations/ext1");
    let body = |state: &str| {
        json!({"id": ext, "name": "WindowsOpenSSH", "type": "Microsoft.Compute/virtualMachines/extensions",
            "location": "westus", "properties": {"publisher": "Microsoft.Azure.OpenSSH", "type": "WindowsOpenSSH",
            "typeHandlerVersion": "3.0", "autoUpgradeMinorVersion": true, "provisioningState": state}})
    };
    fake.on(
        "PUT",
        &ext,
        vec![
            Canned::json(201, body("Creating"))
                .header(
                    "Azure-AsyncOperation",
                    &format!("{{base}}{op}?api-version=2025-04-01"),
                )
                .header("Azure-AsyncNotification", "Enabled"),
        ],
    );
    fake.on(
        "GET",
        &op,
        vec![
            Canned::json(200, json!({"status": "InProgress"})),
            Canned::json(200, json!({"status": "Succeeded"})),
        ],
    );
    fake.on("GET", &ext, vec![Canned::json(200, body("Succeeded"))]);
    let client = fake.client();
    let wanted = azure::extension::VmExtension::windows_openssh("westus");
    let done =
        azure::extension::create_or_update_extension(&client, &vm_id, "WindowsOpenSSH", &wanted)
            .await
            .expect("created");
    assert_eq!(
        done.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert!(done.is_windows_openssh());
    assert_eq!(fake.requests()[0].json(), wanted.to_request_body());
    let read = azure::extension::get_extension(&client, &vm_id, "WindowsOpenSSH")
        .await
        .expect("get");
    assert!(read.is_some_and(|e| e.is_windows_openssh()));
    let missing = azure::extension::get_extension(&client, &vm_id, "Other")
        .await
        .expect("get");
    assert!(missing.is_none());
}

#[tokio::test(start_paused = true)]
async fn jit_access_is_requested_on_the_policy_naming_the_vm() {
    let fake = ArmFake::start();
    let vm_id = vm_path(&fake, "web1");
    let list = fake.sub_path(&format!(
        "/resourceGroups/{RG}/providers/Microsoft.Security/jitNetworkAccessPolicies"
    ));
    let policy = fake.sub_path(&format!("/resourceGroups/{RG}/providers/Microsoft.Security/locations/westus/jitNetworkAccessPolicies/default"));
    fake.on("GET", &list, vec![Canned::json(200, json!({"value": [
        {"id": policy.replace("/default", "/other"), "name": "other", "properties": {"virtualMachines": [{"id": vm_path(&fake, "db1"), "ports": []}]}},
        {"id": policy, "name": "default", "kind": "Basic", "properties": {"virtualMachines": [{"id": vm_id.to_lowercase(),
            "ports": [{"number": 22, "protocol": "*", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}]}]}}]}))]);
    fake.on_fn("POST", &format!("{policy}/initiate"), |r| {
        let port = r.json()["virtualMachines"][0]["ports"][0].clone();
        Canned::json(202, json!({"virtualMachines": [{"id": r.json()["virtualMachines"][0]["id"],
            "ports": [{"number": port["number"], "endTimeUtc": port["endTimeUtc"], "allowedSourceAddressPrefix": "198.51.100.4",
                "status": "Initiating", "statusReason": "UserRequested"}]}], "requestor": "me"}))
    });
    let req = azure::jit::request_vm_access(
        &fake.client(),
        &vm_id,
        22,
        Some("198.51.100.4"),
        Duration::from_secs(3 * 3600),
    )
    .await
    .expect("requested");
    assert_eq!(
        req.virtual_machines[0].ports[0].status.as_deref(),
        Some("Initiating")
    );
    let post = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("initiate");
    assert_eq!(
        post.query_param("api-version").as_deref(),
        Some("2020-01-01")
    );
    let port = &post.json()["virtualMachines"][0]["ports"][0];
    assert_eq!(port["number"], 22);
    assert_eq!(port["allowedSourceAddressPrefix"], "198.51.100.4");
    assert!(
        port["endTimeUtc"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

#[tokio::test(start_paused = true)]
async fn start_with_only_a_location_header_polls_it_until_done() {
    let fake = ArmFake::start();
    serve_vm(&fake, "web1", "running");
    let op = fake.sub_path("/providers/Microsoft.Compute/locations/westus/operations/st2");
    fake.on(
        "POST",
        &format!("{}/start", vm_path(&fake, "web1")),
        vec![
            Canned::empty(202)
                .header(
                    "Location",
                    &format!("{{base}}{op}?monitor=true&api-version=2025-04-01"),
                )
                .header("Retry-After", "5"),
        ],
    );
    fake.on(
        "GET",
        &op,
        vec![
            Canned::empty(202).header("Retry-After", "5"),
            Canned::empty(200),
        ],
    );
    let start = Instant::now();
    let v = vm::start_vm(&fake.client(), &vm_path(&fake, "web1"))
        .await
        .expect("started");
    assert_eq!(v.power_state, "running");
    assert!(
        start.elapsed() >= Duration::from_secs(10),
        "both Retry-After values are honoured"
    );
    let polls = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/st2"))
        .count();
    assert_eq!(polls, 2);
}

#[tokio::test(start_paused = true)]
async fn graph_listing_builds_vms_and_filters_them_locally() {
    let fake = ArmFake::start();
    let row = |name: &str, power: &str, env: &str| {
        json!({"id": vm_path(&fake, name).to_lowercase(), "name": name, "resourceGroup": RG, "location": "westus",
            "tags": {"env": env}, "size": "Standard_B2s", "osType": "Windows", "sku": "2019-Datacenter", "osName": "",
            "osVersion": "", "power": format!("PowerState/{power}"), "adminUsername": "azureuser", "computerName": name,
            "nicId": "", "privateIp": "10.0.0.9", "pipId": "", "publicIp": "", "nicNsg": ""})
    };
    let rows = json!([
        row("web1", "running", "prod"),
        row("web2", "deallocated", "prod"),
        row("db1", "running", "dev")
    ]);
    fake.on(
        "POST",
        "/providers/Microsoft.ResourceGraph/resources",
        vec![Canned::json(
            200,
            json!({"totalRecords": 3, "count": 3, "resultTruncated": "false", "data": rows}),
        )],
    );
    let filter = vm_filter::VmFilter {
        tags: [("env".to_string(), "prod".to_string())].into(),
        power_state: Some("running".into()),
        ..Default::default()
    };
    let vms = vm_filter::find_vms_graph(&fake.client(), &filter)
        .await
        .expect("graph");
    assert_eq!(vms.len(), 1);
    let v = &vms[0];
    assert_eq!(
        (
            v.name.as_str(),
            v.power_state.as_str(),
            v.resource_group.as_str()
        ),
        ("web1", "running", RG)
    );
    assert_eq!(v.private_ip.as_deref(), Some("10.0.0.9"));
    assert_eq!(
        v.public_ip, None,
        "empty strings from Resource Graph are absent values"
    );
    assert!(!v.network_resolved);
    let sent = fake.requests()[0].json();
    assert_eq!(sent["query"], vm_filter::VM_GRAPH_QUERY);
}
