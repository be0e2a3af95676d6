//! The ARM emulator over real HTTP: its answers have the shape of Microsoft's REST examples,
//! its LRO header sequences match the recorded traffic, and it throttles, conflicts and fails
//! the way Azure does (reproducibly, from a seed).
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azssh::emulator::{
    Emulator, EmulatorConfig, EmulatorHandle, GuestFactory, GuestOutput, GuestRuntime, GuestSpec,
    PowerState,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const COMPUTE: &str = "2025-04-01";
const NETWORK: &str = "2024-07-01";

/// A test double for the Windows guest: echoes each script back on stdout and records it.
#[derive(Default)]
struct EchoGuest {
    scripts: Mutex<Vec<String>>,
    sshd: Mutex<bool>,
}

impl GuestRuntime for EchoGuest {
    fn run_powershell(&self, script: &str) -> GuestOutput {
        self.scripts.lock().unwrap().push(script.to_string());
        GuestOutput {
            stdout: script.to_string(),
            stderr: "warning: echo guest".into(),
            exit_code: 0,
        }
    }
    fn install_openssh_extension(&self) -> Result<(), String> {
        *self.sshd.lock().unwrap() = true;
        Ok(())
    }
    fn sshd_listening(&self) -> bool {
        *self.sshd.lock().unwrap()
    }
}

struct EchoFactory;
impl GuestFactory for EchoFactory {
    fn create(&self, _spec: &GuestSpec) -> Arc<dyn GuestRuntime> {
        Arc::new(EchoGuest::default())
    }
}

struct Emu {
    handle: EmulatorHandle,
    http: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Emu {
    async fn start(config: EmulatorConfig) -> Emu {
        let handle = Emulator::start(EmulatorConfig {
            guests: Some(Arc::new(EchoFactory)),
            ..config
        })
        .await
        .unwrap();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Emu { handle, http }
    }
    async fn fast() -> Emu {
        Self::start(EmulatorConfig {
            speed: 1000.0,
            vms: 24,
            ..Default::default()
        })
        .await
    }
    fn sub(&self) -> String {
        format!("/subscriptions/{}", self.handle.subscription_id())
    }
    fn url(&self, path: &str, api: &str) -> String {
        let base = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.handle.endpoint())
        };
        if api.is_empty() || base.contains("api-version=") {
            base
        } else if base.contains('?') {
            format!("{base}&api-version={api}")
        } else {
            format!("{base}?api-version={api}")
        }
    }
    async fn call(&self, method: Method, path: &str, api: &str, body: Option<Value>) -> Answer {
        let mut req = self
            .http
            .request(method, self.url(path, api))
            .bearer_auth(self.handle.token().expose());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        Answer {
            status,
            headers,
            body,
        }
    }
    async fn get(&self, path: &str, api: &str) -> Answer {
        self.call(Method::GET, path, api, None).await
    }
    /// A running VM with a public IP, and its resource path.
    fn running_vm(&self) -> (String, String) {
        let vm = self
            .handle
            .vms()
            .into_iter()
            .find(|v| v.power_state == PowerState::Running && v.public_ip.is_some())
            .unwrap();
        (vm.resource_group.clone(), vm.name.clone())
    }
    fn vm_path(&self, rg: &str, name: &str) -> String {
        format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}",
            self.sub()
        )
    }
    /// Polls an `Azure-AsyncOperation` URL until it is terminal; returns every body seen.
    async fn poll(&self, url: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        for _ in 0..2000 {
            let a = self.get(url, "").await;
            assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
            let status = a.body["status"].as_str().unwrap().to_string();
            seen.push(a.body);
            if status != "InProgress" {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("operation never finished");
    }
}

fn example(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/arm-examples")
        .join(rel);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field both documents have must have the same JSON type (recursively), and every
/// `required` pointer must be present in both.
fn assert_shape(actual: &Value, reference: &Value, required: &[&str]) {
    fn walk(a: &Value, r: &Value, at: &str) {
        assert_eq!(
            kind(a),
            kind(r),
            "type of `{at}` differs: emulator {a} vs reference {r}"
        );
        match (a, r) {
            (Value::Object(a), Value::Object(r)) => {
                for (k, rv) in r {
                    if let Some(av) = a.get(k) {
                        walk(av, rv, &format!("{at}/{k}"));
                    }
                }
            }
            (Value::Array(a), Value::Array(r)) => {
                if let (Some(a0), Some(r0)) = (a.first(), r.first()) {
                    walk(a0, r0, &format!("{at}/0"));
                }
            }
            _ => {}
        }
    }
    walk(actual, reference, "");
    for p in required {
        assert!(reference.pointer(p).is_some(), "reference lacks `{p}`");
        assert!(
            actual.pointer(p).is_some(),
            "emulator answer lacks `{p}`: {actual:#}"
        );
    }
}

#[tokio::test]
async fn vm_get_and_instance_view_match_the_reference_examples() {
    let emu = Emu::fast().await;
    let (rg, name) = emu.running_vm();
    let vm = emu.get(&emu.vm_path(&rg, &name), COMPUTE).await;
    assert_eq!(vm.status, StatusCode::OK);
    let reference =
        &example("compute-2025-04-01/VirtualMachine_Get.json")["responses"]["200"]["body"];
    assert_shape(
        &vm.body,
        reference,
        &[
            "/name",
            "/id",
            "/type",
            "/location",
            "/tags",
            "/properties/vmId",
            "/properties/hardwareProfile/vmSize",
            "/properties/storageProfile/imageReference/sku",
            "/properties/storageProfile/osDisk/osType",
            "/properties/osProfile/computerName",
            "/properties/networkProfile/networkInterfaces/0/id",
            "/properties/provisioningState",
        ],
    );
    assert!(vm.body.pointer("/properties/instanceView").is_none());

    let expanded = emu
        .get(
            &format!("{}?$expand=instanceView", emu.vm_path(&rg, &name)),
            COMPUTE,
        )
        .await;
    let iv = &expanded.body["properties"]["instanceView"];
    let reference = &example("compute-2025-04-01/VirtualMachine_Get_InstanceView.json")["responses"]
        ["200"]["body"];
    assert_shape(
        iv,
        reference,
        &[
            "/computerName",
            "/osName",
            "/osVersion",
            "/vmAgent/vmAgentVersion",
            "/statuses/0/code",
            "/disks/0/name",
        ],
    );
    assert!(
        iv["osName"]
            .as_str()
            .unwrap()
            .starts_with("Windows Server 20")
    );
    assert!(
        iv["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["code"] == "PowerState/running")
    );
    let direct = emu
        .get(
            &format!("{}/instanceView", emu.vm_path(&rg, &name)),
            COMPUTE,
        )
        .await;
    assert_eq!(direct.body["osVersion"], iv["osVersion"]);
}

#[tokio::test]
async fn vm_list_pages_with_next_link() {
    let emu = Emu::start(EmulatorConfig {
        vms: 120,
        page_size: 50,
        ..Default::default()
    })
    .await;
    let mut url = format!("{}/providers/Microsoft.Compute/virtualMachines", emu.sub());
    let mut names = std::collections::HashSet::new();
    let mut pages = 0;
    loop {
        let page = emu.get(&url, COMPUTE).await;
        pages += 1;
        if pages == 1 {
            let reference = &example(
                "compute-2025-04-01/VirtualMachine_ListBySubscription_ByLocation.json",
            )["responses"]["200"]["body"];
            assert_shape(
                &page.body,
                reference,
                &["/value/0/properties/storageProfile/imageReference/sku"],
            );
        }
        for vm in page.body["value"].as_array().unwrap() {
            assert!(names.insert(vm["id"].as_str().unwrap().to_string()));
        }
        match page.body["nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!((pages, names.len()), (3, 120));
    let rg = &emu.handle.vms()[0].resource_group;
    let in_group = emu
        .get(
            &format!(
                "{}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines",
                emu.sub()
            ),
            COMPUTE,
        )
        .await;
    assert_eq!(in_group.body["value"].as_array().unwrap().len(), 30);
}

#[tokio::test]
async fn network_reads_match_the_reference_examples() {
    let emu = Emu::fast().await;
    let (rg, name) = emu.running_vm();
    let vm = emu.get(&emu.vm_path(&rg, &name), COMPUTE).await.body;
    let nic_id = vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let nic = emu.get(&nic_id, NETWORK).await.body;
    assert_shape(
        &nic,
        &example("network-2025-07-01/NetworkInterfaceGet.json")["responses"]["200"]["body"],
        &[
            "/properties/ipConfigurations/0/properties/privateIPAddress",
            "/properties/ipConfigurations/0/properties/publicIPAddress/id",
            "/properties/ipConfigurations/0/properties/subnet/id",
            "/properties/virtualMachine/id",
        ],
    );
    let ipc = &nic["properties"]["ipConfigurations"][0]["properties"];
    let pip = emu
        .get(ipc["publicIPAddress"]["id"].as_str().unwrap(), NETWORK)
        .await
        .body;
    assert_shape(
        &pip,
        &example("network-2024-07-01/PublicIpAddressGet.json")["responses"]["200"]["body"],
        &["/properties/publicIPAllocationMethod"],
    );
    let ip: Ipv4Addr = pip["properties"]["ipAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ip.is_loopback());
    assert_eq!(
        emu.handle.vm_by_public_ip(ip),
        Some((rg.clone(), name.clone()))
    );
    let subnet = emu
        .get(ipc["subnet"]["id"].as_str().unwrap(), NETWORK)
        .await
        .body;
    assert_shape(
        &subnet,
        &example("network-2024-07-01/SubnetGet.json")["responses"]["200"]["body"],
        &["/properties/addressPrefix"],
    );
    let nsg_id = nic["properties"]["networkSecurityGroup"]["id"]
        .as_str()
        .or(subnet["properties"]["networkSecurityGroup"]["id"].as_str())
        .unwrap()
        .to_string();
    let nsg = emu.get(&nsg_id, NETWORK).await.body;
    assert_shape(
        &nsg,
        &example("network-2025-07-01/NetworkSecurityGroupGet.json")["responses"]["200"]["body"],
        &["/properties/defaultSecurityRules/0/properties/priority"],
    );
    let rules = emu
        .get(&format!("{nsg_id}/securityRules"), NETWORK)
        .await
        .body;
    assert_shape(
        &rules,
        &example("network-2024-07-01/NetworkSecurityGroupRuleList.json")["responses"]["200"]["body"],
        &["/value"],
    );
}

#[tokio::test]
async fn run_command_follows_the_recorded_lro_sequence() {
    let emu = Emu::start(EmulatorConfig {
        speed: 200.0,
        ..Default::default()
    })
    .await;
    let (rg, name) = emu.running_vm();
    let script = format!("Write-Output hi\n# {}", "x".repeat(6000));
    let body = json!({"commandId": "RunPowerShellScript", "script": [script]});
    let start = emu
        .call(
            Method::POST,
            &format!("{}/runCommand", emu.vm_path(&rg, &name)),
            COMPUTE,
            Some(body),
        )
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    assert_eq!(
        start.body,
        Value::Null,
        "the recorded 202 has an empty body"
    );
    let async_url = start.header("azure-asyncoperation").unwrap().to_string();
    let location = start.header("location").unwrap().to_string();
    assert!(location.contains("monitor=true") && !async_url.contains("monitor=true"));
    assert!(start.header("retry-after").is_none());
    assert!(
        start
            .header("x-ms-ratelimit-remaining-subscription-writes")
            .is_some()
    );

    let mid = emu.get(&location, "").await;
    assert_eq!(
        mid.status,
        StatusCode::ACCEPTED,
        "Location answers 202 while the command runs"
    );
    let seen = emu.poll(&async_url).await;
    let first = seen.first().unwrap();
    assert_eq!(first["status"], "InProgress");
    let mut keys: Vec<_> = first.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["name", "startTime", "status"]);
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "Succeeded");
    assert!(last["endTime"].is_string() && last["properties"]["output"]["value"].is_array());

    let result = emu.get(&location, "").await;
    assert_eq!(result.status, StatusCode::OK);
    let reference =
        &example("compute-2025-04-01/VirtualMachineRunCommand.json")["responses"]["200"]["body"];
    assert_shape(
        &result.body,
        reference,
        &["/value/0/code", "/value/0/message", "/value/1/code"],
    );
    assert_eq!(
        result.body["value"][0]["code"],
        "ComponentStatus/StdOut/succeeded"
    );
    assert_eq!(
        result.body["value"][1]["code"],
        "ComponentStatus/StdErr/succeeded"
    );
    let stdout = result.body["value"][0]["message"].as_str().unwrap();
    assert_eq!(stdout.len(), 4096, "RunCommand keeps the last 4096 bytes");
    assert!(stdout.ends_with("xxx"));
    assert_eq!(emu.handle.stats().run_commands.get(&name), Some(&1));
}

#[tokio::test]
async fn second_run_command_while_one_runs_gets_409_conflict() {
    // At speed 1 a RunCommand lasts Azure's 20 s, so the second call certainly overlaps.
    let emu = Emu::start(EmulatorConfig {
        speed: 1.0,
        ..Default::default()
    })
    .await;
    let (rg, name) = emu.running_vm();
    let path = format!("{}/runCommand", emu.vm_path(&rg, &name));
    let body = json!({"commandId": "RunPowerShellScript", "script": ["hostname"]});
    let first = emu
        .call(Method::POST, &path, COMPUTE, Some(body.clone()))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = emu
        .call(Method::POST, &path, COMPUTE, Some(body.clone()))
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.body["error"]["code"], "Conflict");
    assert!(
        second.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Run command extension execution is in progress")
    );

    let stopped = emu
        .handle
        .vms()
        .into_iter()
        .find(|v| v.power_state != PowerState::Running)
        .unwrap();
    let refused = emu
        .call(
            Method::POST,
            &format!(
                "{}/runCommand",
                emu.vm_path(&stopped.resource_group, &stopped.name)
            ),
            COMPUTE,
            Some(body),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.body["error"]["code"], "OperationNotAllowed");
}

#[tokio::test]
async fn start_brings_a_stopped_vm_to_running() {
    let emu = Emu::fast().await;
    let vm = emu
        .handle
        .vms()
        .into_iter()
        .find(|v| v.power_state != PowerState::Running)
        .unwrap();
    let path = emu.vm_path(&vm.resource_group, &vm.name);
    let start = emu
        .call(Method::POST, &format!("{path}/start"), COMPUTE, None)
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    let seen = emu
        .poll(start.header("azure-asyncoperation").unwrap())
        .await;
    assert_eq!(seen.last().unwrap()["status"], "Succeeded");
    let iv = emu.get(&format!("{path}/instanceView"), COMPUTE).await.body;
    assert!(
        iv["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["code"] == "PowerState/running")
    );
}

#[tokio::test]
async fn openssh_extension_put_follows_the_recording_and_reaches_the_guest() {
    let emu = Emu::fast().await;
    let (rg, name) = emu.running_vm();
    let path = format!("{}/extensions/WindowsOpenSSH", emu.vm_path(&rg, &name));
    let body = json!({"location": "eastus", "properties": {"publisher": "Microsoft.Azure.OpenSSH", "type": "WindowsOpenSSH", "typeHandlerVersion": "3.0", "autoUpgradeMinorVersion": true}});
    let put = emu.call(Method::PUT, &path, COMPUTE, Some(body)).await;
    assert_eq!(put.status, StatusCode::CREATED);
    assert_eq!(put.body["properties"]["provisioningState"], "Creating");
    assert!(put.header("azure-asyncoperation").is_some() && put.header("location").is_none());
    assert_eq!(put.header("azure-asyncnotification"), Some("Enabled"));
    let reference = &example(
        "compute-2025-04-01/VirtualMachineExtension_CreateOrUpdate_MaximumSet_Gen.json",
    )["responses"]["201"]["body"];
    assert_shape(
        &put.body,
        reference,
        &[
            "/properties/publisher",
            "/properties/typeHandlerVersion",
            "/properties/provisioningState",
        ],
    );
    let seen = emu.poll(put.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(seen.last().unwrap()["status"], "Succeeded");
    let got = emu.get(&path, COMPUTE).await;
    assert_eq!(got.body["properties"]["provisioningState"], "Succeeded");
    assert_shape(
        &got.body,
        &example("compute-2025-04-01/VirtualMachineExtension_Get_MinimumSet_Gen.json")["responses"]
            ["200"]["body"],
        &["/id", "/location"],
    );
    assert!(emu.handle.guest(&rg, &name).unwrap().sshd_listening());

    let delete = emu.call(Method::DELETE, &path, COMPUTE, None).await;
    assert_eq!(delete.status, StatusCode::ACCEPTED);
    assert!(delete.header("azure-asyncoperation").is_some() && delete.header("location").is_some());
}

fn ssh_rule(priority: u16, source: &str) -> Value {
    json!({"properties": {"protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22", "sourceAddressPrefix": source, "destinationAddressPrefix": "*", "access": "Allow", "priority": priority, "direction": "Inbound"}})
}

#[tokio::test]
async fn security_rule_put_follows_the_recording_and_priorities_conflict() {
    let emu = Emu::fast().await;
    let rg = &emu.handle.vms()[0].resource_group.clone();
    // The first group's subnet NSG holds `allow-https` at priority 1000.
    let nsg = format!(
        "{}/resourceGroups/{rg}/providers/Microsoft.Network/networkSecurityGroups/{rg}-vnet-default-nsg",
        emu.sub()
    );
    let conflict = emu
        .call(
            Method::PUT,
            &format!("{nsg}/securityRules/allow-SSH"),
            NETWORK,
            Some(ssh_rule(1000, "203.0.113.7/32")),
        )
        .await;
    assert_eq!(conflict.status, StatusCode::BAD_REQUEST);
    assert_eq!(conflict.body["error"]["code"], "SecurityRuleConflict");
    let out_of_range = emu
        .call(
            Method::PUT,
            &format!("{nsg}/securityRules/allow-SSH"),
            NETWORK,
            Some(ssh_rule(99, "*")),
        )
        .await;
    assert_eq!(out_of_range.status, StatusCode::BAD_REQUEST);

    let put = emu
        .call(
            Method::PUT,
            &format!("{nsg}/securityRules/allow-SSH"),
            NETWORK,
            Some(ssh_rule(1001, "203.0.113.7/32")),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    assert_eq!(put.body["properties"]["provisioningState"], "Updating");
    assert!(put.header("location").is_none());
    let reference = &example("network-2024-07-01/NetworkSecurityGroupRuleCreate.json")["responses"]
        ["201"]["body"];
    assert_shape(
        &put.body,
        reference,
        &[
            "/name",
            "/id",
            "/properties/priority",
            "/properties/sourceAddressPrefix",
        ],
    );
    let seen = emu.poll(put.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(
        seen.last().unwrap(),
        &json!({"status": "Succeeded"}),
        "network status bodies are bare"
    );
    let got = emu
        .get(&format!("{nsg}/securityRules/allow-SSH"), NETWORK)
        .await;
    assert_eq!(got.body["properties"]["provisioningState"], "Succeeded");
    assert_shape(
        &got.body,
        &example("network-2024-07-01/NetworkSecurityGroupRuleGet.json")["responses"]["200"]["body"],
        &["/properties/access"],
    );
    let update = emu
        .call(
            Method::PUT,
            &format!("{nsg}/securityRules/allow-SSH"),
            NETWORK,
            Some(ssh_rule(1001, "*")),
        )
        .await;
    assert_eq!(update.status, StatusCode::OK);

    let delete = emu
        .call(
            Method::DELETE,
            &format!("{nsg}/securityRules/allow-SSH"),
            NETWORK,
            None,
        )
        .await;
    assert_eq!(delete.status, StatusCode::ACCEPTED);
    assert!(delete.header("location").is_some());
    emu.poll(delete.header("azure-asyncoperation").unwrap())
        .await;
    assert_eq!(
        emu.get(&format!("{nsg}/securityRules/allow-SSH"), NETWORK)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn nsg_rules_gate_the_ssh_port_by_source() {
    let emu = Emu::fast().await;
    let (rg, name) = emu.running_vm();
    let me = Ipv4Addr::LOCALHOST;
    assert_eq!(
        emu.handle.admits(&rg, &name, me, 22),
        Some(false),
        "default rules deny the internet"
    );
    let vm = emu.get(&emu.vm_path(&rg, &name), COMPUTE).await.body;
    let nic = emu
        .get(
            vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
                .as_str()
                .unwrap(),
            NETWORK,
        )
        .await
        .body;
    let subnet = emu
        .get(
            nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
                .as_str()
                .unwrap(),
            NETWORK,
        )
        .await
        .body;
    let nsgs: Vec<String> = [
        &nic["properties"]["networkSecurityGroup"]["id"],
        &subnet["properties"]["networkSecurityGroup"]["id"],
    ]
    .into_iter()
    .filter_map(|v| v.as_str().map(str::to_string))
    .collect();
    for (i, nsg) in nsgs.iter().enumerate() {
        let put = emu
            .call(
                Method::PUT,
                &format!("{nsg}/securityRules/allow-SSH"),
                NETWORK,
                Some(ssh_rule(1010, "127.0.0.1/32")),
            )
            .await;
        assert!(put.status.is_success(), "{:?}", put.body);
        if i + 1 < nsgs.len() {
            assert_eq!(
                emu.handle.admits(&rg, &name, me, 22),
                Some(false),
                "both NSGs must allow"
            );
        }
    }
    assert_eq!(emu.handle.admits(&rg, &name, me, 22), Some(true));
    assert_eq!(
        emu.handle
            .admits(&rg, &name, Ipv4Addr::new(127, 0, 0, 2), 22),
        Some(false)
    );
    assert_eq!(emu.handle.admits(&rg, &name, me, 3390), Some(false));
}

#[tokio::test]
async fn jit_initiate_opens_a_time_boxed_rule() {
    let emu = Emu::start(EmulatorConfig {
        vms: 60,
        speed: 1000.0,
        ..Default::default()
    })
    .await;
    let policies = emu
        .get(
            &format!(
                "{}/providers/Microsoft.Security/jitNetworkAccessPolicies",
                emu.sub()
            ),
            "2020-01-01",
        )
        .await
        .body;
    let policy = &policies["value"][0];
    assert_shape(
        policy,
        &example("security-2020-01-01/GetJitNetworkAccessPolicy_example.json")["responses"]["200"]
            ["body"],
        &[
            "/properties/virtualMachines/0/ports/0/maxRequestAccessDuration",
            "/kind",
            "/location",
        ],
    );
    let vm_id = policy["properties"]["virtualMachines"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (rg, name) = (
        vm_id.split('/').nth(4).unwrap().to_string(),
        vm_id.rsplit('/').next().unwrap().to_string(),
    );
    assert_eq!(
        emu.handle.admits(&rg, &name, Ipv4Addr::LOCALHOST, 22),
        Some(false)
    );
    let end = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let end = end
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = json!({"virtualMachines": [{"id": vm_id, "ports": [{"number": 22, "endTimeUtc": end, "allowedSourceAddressPrefix": "127.0.0.1"}]}], "justification": "test"});
    let initiate = emu
        .call(
            Method::POST,
            &format!("{}/initiate", policy["id"].as_str().unwrap()),
            "2020-01-01",
            Some(body),
        )
        .await;
    assert_eq!(initiate.status, StatusCode::ACCEPTED, "{:?}", initiate.body);
    assert_shape(
        &initiate.body,
        &example("security-2020-01-01/InitiateJitNetworkAccessPolicy_example.json")["responses"]["202"]
            ["body"],
        &["/virtualMachines/0/ports/0/endTimeUtc", "/startTimeUtc"],
    );
    assert_eq!(
        emu.handle.admits(&rg, &name, Ipv4Addr::LOCALHOST, 22),
        Some(true)
    );
    let again = emu
        .get(policy["id"].as_str().unwrap(), "2020-01-01")
        .await
        .body;
    assert_eq!(
        again["properties"]["requests"][0]["virtualMachines"][0]["ports"][0]["status"],
        "Initiated"
    );
}

#[tokio::test]
async fn resource_graph_finds_vms_by_tag_and_refuses_unmodelled_queries() {
    let emu = Emu::start(EmulatorConfig {
        vms: 40,
        ..Default::default()
    })
    .await;
    let graph = "/providers/Microsoft.ResourceGraph/resources";
    let q = json!({"subscriptions": [emu.handle.subscription_id()], "query": "Resources | where type =~ 'microsoft.compute/virtualmachines' and tags['env'] == 'prod' | project id, name, power = tostring(properties.extended.instanceView.powerState.code)", "options": {"$top": 3}});
    let first = emu
        .call(Method::POST, graph, "2024-04-01", Some(q.clone()))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_shape(
        &first.body,
        &example("resourcegraph-2024-04-01/ResourcesFirstPageQuery.json")["responses"]["200"]["body"],
        &[
            "/totalRecords",
            "/count",
            "/data/0/id",
            "/$skipToken",
            "/resultTruncated",
        ],
    );
    let total = first.body["totalRecords"].as_u64().unwrap() as usize;
    let mut all = first.body["data"].as_array().unwrap().clone();
    let mut token = first.body["$skipToken"].as_str().map(str::to_string);
    while let Some(t) = token {
        let mut next = q.clone();
        next["options"]["$skipToken"] = json!(t);
        let page = emu
            .call(Method::POST, graph, "2024-04-01", Some(next))
            .await
            .body;
        all.extend(page["data"].as_array().unwrap().iter().cloned());
        token = page["$skipToken"].as_str().map(str::to_string);
    }
    assert_eq!(all.len(), total);
    assert!(
        total > 0
            && all
                .iter()
                .all(|r| r["name"].as_str().unwrap().contains("-prod-"))
    );
    assert!(all[0]["power"].as_str().unwrap().starts_with("PowerState/"));

    let bad = emu
        .call(
            Method::POST,
            graph,
            "2024-04-01",
            Some(json!({"query": "Resources | summarize count() by type"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["code"], "BadRequest");
    assert_eq!(bad.body["error"]["details"][0]["code"], "InvalidQuery");
}

#[tokio::test]
async fn burst_past_the_read_bucket_gets_429_with_retry_after() {
    let emu = Emu::start(EmulatorConfig {
        vms: 4,
        ..Default::default()
    })
    .await;
    let (rg, name) = emu.running_vm();
    let path = emu.vm_path(&rg, &name);
    let first = emu.get(&path, COMPUTE).await;
    assert_eq!(
        first.header("x-ms-ratelimit-remaining-subscription-reads"),
        Some("249")
    );
    let mut throttled = None;
    for _ in 0..400 {
        let a = emu.get(&path, COMPUTE).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(a);
            break;
        }
    }
    let t = throttled.expect("the bucket of 250 reads never ran dry");
    assert!(t.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(t.body["error"]["code"], "TooManyRequests");
    assert!(emu.handle.stats().throttled >= 1);
    // Writes have their own bucket.
    let w = emu
        .call(Method::POST, &format!("{path}/start"), COMPUTE, None)
        .await;
    assert_eq!(
        w.header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("199")
    );
}

#[tokio::test]
async fn missing_api_version_and_token_get_arm_errors() {
    let emu = Emu::fast().await;
    let (rg, name) = emu.running_vm();
    let url = format!("{}{}", emu.handle.endpoint(), emu.vm_path(&rg, &name));
    let no_version = emu
        .http
        .get(&url)
        .bearer_auth(emu.handle.token().expose())
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), StatusCode::BAD_REQUEST);
    let body: Value = no_version.json().await.unwrap();
    assert_eq!(body["error"]["code"], "MissingApiVersionParameter");

    let no_token = emu
        .http
        .get(format!("{url}?api-version={COMPUTE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    assert!(
        no_token.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    assert_eq!(no_token.headers()["x-ms-emulator"], "azssh");
    let body: Value = no_token.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AuthenticationFailed");

    let wrong = emu
        .http
        .get(format!("{url}?api-version={COMPUTE}"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // Any well-formed version is accepted: the SDKs already send newer ones.
    let newer = emu
        .get(
            &emu.vm_path(&rg, &name)
                .to_uppercase()
                .replace("/SUBSCRIPTIONS/", "/subscriptions/"),
            "2026-04-01",
        )
        .await;
    assert_eq!(
        newer.status,
        StatusCode::OK,
        "paths match case-insensitively: {:?}",
        newer.body
    );
    assert!(
        newer.header("x-ms-request-id").is_some()
            && newer.header("x-ms-correlation-request-id").is_some()
    );
    let missing = emu.get(&emu.vm_path(&rg, "no-such-vm"), COMPUTE).await;
    assert_eq!(
        (missing.status, missing.body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("ResourceNotFound"))
    );
}

async fn fault_sequence(seed: u64) -> Vec<String> {
    let faults = "5xx=0.2,429=0.1,reset=0.1".parse().unwrap();
    let emu = Emu::start(EmulatorConfig {
        seed,
        faults,
        throttling: false,
        vms: 4,
        ..Default::default()
    })
    .await;
    let url = emu.url(
        &format!("{}/providers/Microsoft.Compute/virtualMachines", emu.sub()),
        COMPUTE,
    );
    let mut out = Vec::new();
    for _ in 0..60 {
        let r = emu
            .http
            .get(&url)
            .bearer_auth(emu.handle.token().expose())
            .send()
            .await;
        out.push(match r {
            Ok(resp) => resp.status().as_u16().to_string(),
            Err(_) => "reset".to_string(),
        });
    }
    out
}

#[tokio::test]
async fn fault_injection_is_reproducible_from_the_seed() {
    let a = fault_sequence(42).await;
    assert_eq!(a, fault_sequence(42).await);
    assert_ne!(a, fault_sequence(43).await);
    for expected in ["200", "429", "reset"] {
        assert!(
            a.iter().any(|s| s == expected),
            "{expected} never happened: {a:?}"
        );
    }
    assert!(a.iter().any(|s| s.starts_with('5')));
}

/// Microsoft's Python SDKs against the emulator (`tests/sdk/check_sdk.py`). Needs a virtualenv
/// with `azure-mgmt-compute` and `azure-mgmt-network`: `tests/sdk/run.sh` makes one and sets
/// `AZSSH_SDK_PYTHON`; without it the test says so and skips, unless `AZSSH_REQUIRE_SDK=1`.
#[tokio::test]
async fn microsoft_python_sdk_accepts_the_emulator() {
    let Ok(python) = std::env::var("AZSSH_SDK_PYTHON") else {
        assert!(
            std::env::var("AZSSH_REQUIRE_SDK").as_deref() != Ok("1"),
            "AZSSH_REQUIRE_SDK=1 but AZSSH_SDK_PYTHON is not set"
        );
        eprintln!(
            "notice: skipping the SDK acceptance check (set AZSSH_SDK_PYTHON, see tests/sdk/run.sh)"
        );
        return;
    };
    // Small pages so the SDK follows `nextLink`.
    let emu = Emu::start(EmulatorConfig {
        vms: 24,
        speed: 1000.0,
        page_size: 10,
        ..Default::default()
    })
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/check_sdk.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .env("AZSSH_ARM_ENDPOINT", emu.handle.endpoint())
        .env("AZSSH_ACCESS_TOKEN", emu.handle.token().expose())
        .env("AZURE_SUBSCRIPTION_ID", emu.handle.subscription_id())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "the SDK check failed:\n{text}");
    assert!(text.contains("SDK acceptance check passed"));
}

#[tokio::test]
async fn lro_fail_fault_ends_the_operation_failed() {
    let faults = "lro_fail=1".parse().unwrap();
    let emu = Emu::start(EmulatorConfig {
        faults,
        speed: 1000.0,
        ..Default::default()
    })
    .await;
    let (rg, name) = emu.running_vm();
    let body = json!({"commandId": "RunPowerShellScript", "script": ["hostname"]});
    let start = emu
        .call(
            Method::POST,
            &format!("{}/runCommand", emu.vm_path(&rg, &name)),
            COMPUTE,
            Some(body.clone()),
        )
        .await;
    let seen = emu
        .poll(start.header("azure-asyncoperation").unwrap())
        .await;
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "Failed");
    assert!(last["error"]["code"].is_string() && last["error"]["message"].is_string());
    // The VM is free again for the next command.
    let again = emu
        .call(
            Method::POST,
            &format!("{}/runCommand", emu.vm_path(&rg, &name)),
            COMPUTE,
            Some(body),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(emu.handle.stats().faults.get("lro_fail"), Some(&1));
}
