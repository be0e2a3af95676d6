//! Contract tests against `../shared/reference/arm-examples/`: every official example is parsed
//! by our types, and our request bodies have the examples' shape. Recorded traffic: `azure_replay.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use azssh::azure::extension::VmExtension;
use azssh::azure::graph::{self, QueryResponse};
use azssh::azure::jit::{JitInitiateRequest, JitPolicy, JitRequest};
use azssh::azure::network::{
    NetworkInterface, NetworkSecurityGroup, PublicIpAddress, SecurityRule, SecurityRuleProperties,
    Subnet,
};
use azssh::azure::run_command::{self, RunCommandResult};
use azssh::azure::vm::{self, InstanceView, VirtualMachineJson, Vm};
use serde::Deserialize;
use serde_json::Value;

pub(crate) fn reference() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference"
    ))
    .to_path_buf()
}

fn example(rel: &str) -> Value {
    let path = reference().join("arm-examples").join(rel);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Every key path (`a.b.c`) of a JSON object, arrays looked into at index 0.
fn key_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(p.clone());
                key_paths(x, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(x) = a.first() {
                key_paths(x, prefix, out);
            }
        }
        _ => {}
    }
}

pub(crate) fn assert_shape_within(ours: &Value, theirs: &Value, what: &str) {
    let (mut a, mut b) = (vec![], vec![]);
    key_paths(ours, "", &mut a);
    key_paths(theirs, "", &mut b);
    for k in a {
        assert!(
            b.contains(&k),
            "{what}: our body has `{k}`, which the reference request lacks"
        );
    }
}

fn check_vm_get(v: &Value) {
    let body = &v["responses"]["200"]["body"];
    let vm = Vm::from_json(&parse::<VirtualMachineJson>(body, "VirtualMachine")).expect("vm");
    assert_eq!(vm.name, "myVM");
    assert_eq!(vm.resource_group, "myResourceGroup");
    assert_eq!(vm.size.as_deref(), Some("Standard_DS3_v2"));
    assert_eq!(vm.os_type.as_deref(), Some("Windows"));
    assert_eq!(vm.image_sku.as_deref(), Some("2016-Datacenter"));
    assert_eq!(vm.admin_username.as_deref(), Some("admin"));
    assert_eq!(vm.power_state, "unknown", "no instance view was asked for");
    assert!(
        vm.nic_id
            .as_deref()
            .is_some_and(|n| n.ends_with("/networkInterfaces/{myNIC}"))
    );
    assert_eq!(vm.tags.get("myTag1").map(String::as_str), Some("tagValue1"));
}

fn check_instance_view(v: &Value) {
    let view: InstanceView = parse(&v["responses"]["200"]["body"], "InstanceView");
    assert_eq!(vm::power_state(&view.statuses), "running");
    assert_eq!(
        view.os_name.as_deref(),
        Some("Windows Server 2016 Datacenter")
    );
    assert_eq!(
        view.os_version.as_deref(),
        Some("Microsoft Windows NT 10.0.14393.0")
    );
}

fn check_vm_list(v: &Value) {
    #[derive(Deserialize)]
    struct List {
        value: Vec<VirtualMachineJson>,
    }
    let list: List = parse(&v["responses"]["200"]["body"], "VirtualMachineListResult");
    assert!(!list.value.is_empty());
    for item in &list.value {
        Vm::from_json(item).expect("listed vm");
    }
}

fn check_run_command(v: &Value) {
    assert_eq!(
        v["parameters"]["parameters"]["commandId"],
        "RunPowerShellScript"
    );
    let result: RunCommandResult = parse(&v["responses"]["200"]["body"], "RunCommandResult");
    let out = run_command::parse_output(&result, None, 0);
    assert_eq!(
        out.stdout,
        "This is a sample script with parameters value1 value2"
    );
    assert_eq!(out.stderr, "");
    assert_eq!(out.exit_code, None);
    let ours = serde_json::to_value(run_command::build_input(&[], &Default::default(), None))
        .expect("body");
    assert_eq!(ours, v["parameters"]["parameters"]);
}

fn check_extension(v: &Value) {
    if let Some(req) = v["parameters"].get("extensionParameters") {
        let parsed: VmExtension = parse(req, "extension request");
        assert!(parsed.location.is_some());
        if req.get("properties").is_some() {
            assert_shape_within(
                &VmExtension::windows_openssh("westus").to_request_body(),
                req,
                "WindowsOpenSSH body",
            );
        }
    }
    for (status, resp) in v["responses"].as_object().expect("responses") {
        let ext: VmExtension = parse(&resp["body"], &format!("extension {status}"));
        assert!(ext.id.is_some());
    }
}

fn check_nsg(v: &Value) {
    let nsg: NetworkSecurityGroup = parse(&v["responses"]["200"]["body"], "NetworkSecurityGroup");
    assert!(!nsg.properties.default_security_rules.is_empty());
    assert!(
        nsg.properties
            .default_security_rules
            .iter()
            .all(|r| r.properties.priority >= 65000)
    );
}

fn check_nic(v: &Value) {
    let nic: NetworkInterface = parse(&v["responses"]["200"]["body"], "NetworkInterface");
    let primary = nic.primary_ip_configuration().expect("ip configuration");
    assert_eq!(
        primary.properties.private_ip_address.as_deref(),
        Some("172.20.2.4")
    );
    assert!(
        primary
            .properties
            .public_ip_address
            .as_ref()
            .is_some_and(|p| p.id.ends_with("/test-ip"))
    );
    assert!(nic.properties.network_security_group.is_some());
}

fn check_rule_create(v: &Value) {
    let request = &v["parameters"]["securityRuleParameters"];
    let parsed: SecurityRule = parse(request, "security rule request");
    assert_eq!(
        &parsed.properties.to_request_body(),
        request,
        "our PUT body round-trips the example"
    );
    let ssh =
        SecurityRuleProperties::allow_inbound("Tcp", 22, "203.0.113.7/32", 1000).to_request_body();
    assert_shape_within(&ssh, request, "open_port rule body");
    for status in ["200", "201"] {
        let rule: SecurityRule = parse(&v["responses"][status]["body"], "SecurityRule");
        assert_eq!(
            rule.properties.provisioning_state.as_deref(),
            Some("Succeeded")
        );
    }
}

fn check_rule_get(v: &Value) {
    let rule: SecurityRule = parse(&v["responses"]["200"]["body"], "SecurityRule");
    assert_eq!(rule.properties.priority, 130);
    assert!(rule.properties.covers_port(80));
}

fn check_rule_list(v: &Value) {
    #[derive(Deserialize)]
    struct List {
        value: Vec<SecurityRule>,
    }
    let list: List = parse(&v["responses"]["200"]["body"], "SecurityRuleListResult");
    assert_eq!(list.value.len(), 1);
}

fn check_subnet(v: &Value) {
    let s: Subnet = parse(&v["responses"]["200"]["body"], "Subnet");
    assert_eq!(s.properties.address_prefix.as_deref(), Some("10.0.0.0/16"));
    assert!(s.properties.network_security_group.is_none());
}

fn check_public_ip(v: &Value) {
    let p: PublicIpAddress = parse(&v["responses"]["200"]["body"], "PublicIPAddress");
    assert_eq!(
        p.properties.ip_address, None,
        "the example omits ipAddress (not allocated)"
    );
    assert_eq!(p.properties.allocation_method.as_deref(), Some("Dynamic"));
}

fn check_graph(v: &Value) {
    let req = &v["parameters"]["query"];
    let subs: Vec<String> = parse(&req["subscriptions"], "subscriptions");
    let token = req["options"]["$skipToken"].as_str();
    let ours = graph::query_body(
        &subs,
        req["query"].as_str().unwrap_or_default(),
        None,
        token,
    );
    assert_eq!(ours["query"], req["query"]);
    assert_eq!(ours["subscriptions"], req["subscriptions"]);
    if let Some(t) = token {
        assert_eq!(ours["options"]["$skipToken"], t);
    }
    let resp: QueryResponse = parse(&v["responses"]["200"]["body"], "QueryResponse");
    assert_eq!(resp.count, 3);
    assert!(resp.skip_token.is_some());
}

fn check_jit_get(v: &Value) {
    let p: JitPolicy = parse(&v["responses"]["200"]["body"], "JitNetworkAccessPolicy");
    assert_eq!(p.properties.virtual_machines[0].ports[0].number, 22);
    assert_eq!(p.properties.requests.len(), 1);
}

fn check_jit_initiate(v: &Value) {
    let body = &v["parameters"]["body"];
    let parsed: JitInitiateRequest = parse(body, "initiate request");
    assert_eq!(
        &serde_json::to_value(&parsed).expect("ser"),
        body,
        "our initiate body round-trips the example"
    );
    let vm_id = body["virtualMachines"][0]["id"]
        .as_str()
        .unwrap_or_default();
    let ours = JitInitiateRequest::single(
        vm_id,
        3389,
        Some("192.127.0.2"),
        "2018-07-12T09:53:03.3658798Z",
        Some("x"),
    );
    assert_shape_within(
        &serde_json::to_value(&ours).expect("ser"),
        body,
        "initiate body",
    );
    let resp: JitRequest = parse(&v["responses"]["202"]["body"], "JitNetworkAccessRequest");
    assert_eq!(
        resp.virtual_machines[0].ports[0].status.as_deref(),
        Some("Initiating")
    );
}

/// Managed run commands are not implemented yet; their examples must at least be JSON.
fn check_json_only(v: &Value) {
    assert!(v["responses"].is_object());
}

#[test]
fn every_arm_example_parses_into_our_types() {
    let checks: BTreeMap<&str, fn(&Value)> = BTreeMap::from([
        (
            "compute-2025-04-01/VirtualMachine_Get.json",
            check_vm_get as fn(&Value),
        ),
        (
            "compute-2025-04-01/VirtualMachine_Get_InstanceView.json",
            check_instance_view,
        ),
        (
            "compute-2025-04-01/VirtualMachine_ListAll_MinimumSet_Gen.json",
            check_vm_list,
        ),
        (
            "compute-2025-04-01/VirtualMachine_ListBySubscription_ByLocation.json",
            check_vm_list,
        ),
        (
            "compute-2025-04-01/VirtualMachine_Start_MinimumSet_Gen.json",
            check_json_only,
        ),
        (
            "compute-2025-04-01/VirtualMachineRunCommand.json",
            check_run_command,
        ),
        (
            "compute-2025-04-01/VirtualMachineRunCommand_CreateOrUpdate.json",
            check_json_only,
        ),
        (
            "compute-2025-04-01/VirtualMachineRunCommand_Get.json",
            check_json_only,
        ),
        (
            "compute-2025-04-01/VirtualMachineExtension_CreateOrUpdate_MinimumSet_Gen.json",
            check_extension,
        ),
        (
            "compute-2025-04-01/VirtualMachineExtension_CreateOrUpdate_MaximumSet_Gen.json",
            check_extension,
        ),
        (
            "compute-2025-04-01/VirtualMachineExtension_Get_MinimumSet_Gen.json",
            check_extension,
        ),
        ("network-2025-07-01/NetworkSecurityGroupGet.json", check_nsg),
        ("network-2025-07-01/NetworkInterfaceGet.json", check_nic),
        (
            "network-2024-07-01/NetworkSecurityGroupRuleCreate.json",
            check_rule_create,
        ),
        (
            "network-2024-07-01/NetworkSecurityGroupRuleGet.json",
            check_rule_get,
        ),
        (
            "network-2024-07-01/NetworkSecurityGroupRuleList.json",
            check_rule_list,
        ),
        ("network-2024-07-01/SubnetGet.json", check_subnet),
        (
            "network-2024-07-01/PublicIpAddressGet.json",
            check_public_ip,
        ),
        (
            "resourcegraph-2024-04-01/ResourcesFirstPageQuery.json",
            check_graph,
        ),
        (
            "resourcegraph-2024-04-01/ResourcesNextPageQuery.json",
            check_graph,
        ),
        (
            "security-2020-01-01/GetJitNetworkAccessPolicy_example.json",
            check_jit_get,
        ),
        (
            "security-2020-01-01/InitiateJitNetworkAccessPolicy_example.json",
            check_jit_initiate,
        ),
    ]);
    let root = reference().join("arm-examples");
    let mut seen = 0;
    for dir in std::fs::read_dir(&root)
        .expect("arm-examples")
        .flatten()
        .filter(|d| d.path().is_dir())
    {
        for file in std::fs::read_dir(dir.path()).expect("dir").flatten() {
            let rel = format!(
                "{}/{}",
                dir.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            let check = checks
                .get(rel.as_str())
                .unwrap_or_else(|| panic!("no contract check for new example `{rel}`"));
            check(&example(&rel));
            seen += 1;
        }
    }
    assert_eq!(seen, checks.len(), "every listed example exists");
}
