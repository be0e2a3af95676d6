//! Wire shapes against `reference/arm-examples/` and LRO header sequences against
//! `reference/recordings/`.

use std::net::Ipv4Addr;

use azssh::emulator::PowerState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

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
    let emu = Emu::start(arm().vms(120).page_size(50)).await;
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
    // Azure's 20 s divided by 11: the command still runs for 1.8 s, so the Location read and
    // the first poll below certainly see it running (at speed 200 it ran 100 ms, which a loaded
    // machine could spend before the test looked), while the `Retry-After` hint (10 s / speed)
    // stays under a second and is left out, as in the recording.
    let emu = Emu::start(arm().speed(11.0)).await;
    let (rg, name) = emu.running_vm();
    let script = format!("Write-Output hi\n# {}", "x".repeat(6000));
    let body = json!({"commandId": "RunPowerShellScript", "script": [script]});
    let start = emu.run_command(&rg, &name, body).await;
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
    let emu = Emu::start(arm().speed(1.0)).await;
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
        .run_command(&stopped.resource_group, &stopped.name, body)
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
    // The NSG stays locked until the update's operation ends (per-NSG writes are serial).
    emu.poll(update.header("azure-asyncoperation").unwrap())
        .await;

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

/// The first group's subnet NSG (holds `allow-https` at 1000).
fn subnet_nsg(emu: &Emu) -> String {
    let rg = emu.handle.vms()[0].resource_group.clone();
    format!(
        "{}/resourceGroups/{rg}/providers/Microsoft.Network/networkSecurityGroups/{rg}-vnet-default-nsg",
        emu.sub()
    )
}

#[tokio::test]
async fn a_rule_aimed_at_several_vms_keeps_its_destination_list_as_arm_does() {
    let emu = Emu::fast().await;
    let rule = format!("{}/securityRules/azssh-two-vms", subnet_nsg(&emu));
    let put = |destinations: Value| {
        let mut body = ssh_rule(3001, "203.0.113.7/32");
        let props = body["properties"].as_object_mut().unwrap();
        props.remove("destinationAddressPrefix");
        for (k, v) in destinations.as_object().unwrap() {
            props.insert(k.clone(), v.clone());
        }
        let emu = &emu;
        let rule = rule.clone();
        async move { emu.call(Method::PUT, &rule, NETWORK, Some(body)).await }
    };
    let two = json!(["10.0.0.4/32", "10.0.0.5/32"]);
    let created = put(json!({"destinationAddressPrefixes": two})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    // The NSG is locked until the rule is programmed (a write meanwhile meets 429).
    emu.poll(created.header("azure-asyncoperation").unwrap())
        .await;
    let read = emu.get(&rule, NETWORK).await;
    assert_eq!(read.body["properties"]["destinationAddressPrefixes"], two);
    assert!(read.body["properties"]["destinationAddressPrefix"].is_null());
    // Narrowed to one VM (what `close-port` writes back): the singular field.
    let narrowed = put(json!({"destinationAddressPrefix": "10.0.0.5/32"})).await;
    assert_eq!(narrowed.status, StatusCode::OK, "{:?}", narrowed.body);
    emu.poll(narrowed.header("azure-asyncoperation").unwrap())
        .await;
    let read = emu.get(&rule, NETWORK).await;
    assert_eq!(
        read.body["properties"]["destinationAddressPrefix"],
        "10.0.0.5/32"
    );
    assert_eq!(
        read.body["properties"]["destinationAddressPrefixes"],
        json!([])
    );
    // The list refuses `*` and tags, and the two forms together.
    for bad in [
        json!({"destinationAddressPrefixes": ["10.0.0.4/32", "*"]}),
        json!({"destinationAddressPrefixes": ["VirtualNetwork"]}),
        json!({"destinationAddressPrefix": "10.0.0.4/32", "destinationAddressPrefixes": ["10.0.0.5/32"]}),
    ] {
        let refused = put(bad.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            refused.body["error"]["code"], "SecurityRuleParameterContainsUnsupportedValue",
            "{bad}"
        );
    }
}

#[tokio::test]
async fn unknown_api_version_is_refused_as_arm_does() {
    let emu = Emu::fast().await;
    let (rg, name) = emu.running_vm();
    let vm = emu.get(&emu.vm_path(&rg, &name), "2099-01-01").await;
    assert_eq!(vm.status, StatusCode::BAD_REQUEST);
    assert_eq!(vm.body["error"]["code"], "NoRegisteredProviderFound");
    let message = vm.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("and API version '2099-01-01' for type 'virtualMachines'. The supported api-versions are '2026-04-01, 2025-11-01, 2025-04-01,"),
        "{message}"
    );
    // A Network version is not a Compute version, and the other way round.
    let vm = emu.get(&emu.vm_path(&rg, &name), "2024-10-01").await;
    assert_eq!(vm.status, StatusCode::BAD_REQUEST);
    let nsg = emu.get(&subnet_nsg(&emu), COMPUTE).await;
    assert_eq!(nsg.body["error"]["code"], "NoRegisteredProviderFound");
    // ARM's own `resources` list words it `InvalidApiVersionParameter`.
    let listed = emu
        .get(
            &format!("{}/resourceGroups/{rg}/resources", emu.sub()),
            "2099-01-01",
        )
        .await;
    assert_eq!(listed.status, StatusCode::BAD_REQUEST);
    assert_eq!(listed.body["error"]["code"], "InvalidApiVersionParameter");
    assert!(
        listed.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("The api-version '2099-01-01' is invalid. The supported versions are '")
    );
    // The versions the product and Microsoft's SDKs send pass.
    for v in [COMPUTE, "2026-04-01", "2022-03-01"] {
        assert_eq!(
            emu.get(&emu.vm_path(&rg, &name), v).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        emu.get(&subnet_nsg(&emu), NETWORK).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn out_of_range_nsg_rule_is_refused() {
    let emu = Emu::fast().await;
    let nsg = subnet_nsg(&emu);
    let with = |patch: Value| {
        let mut body = ssh_rule(3000, "203.0.113.7/32");
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body["properties"].as_object_mut().unwrap().remove(k);
            } else {
                body["properties"][k] = v.clone();
            }
        }
        body
    };
    let cases = [
        (
            "r1",
            with(json!({"destinationPortRange": "70000"})),
            "SecurityRuleInvalidPortRange",
        ),
        (
            "r2",
            with(json!({"sourceAddressPrefix": "1.2.3.400/32"})),
            "SecurityRuleInvalidAddressPrefix",
        ),
        (
            "r3",
            with(json!({"sourceAddressPrefixes": ["198.51.100.0/24"]})),
            "SecurityRuleParameterContainsUnsupportedValue",
        ),
        (
            "r4",
            with(json!({"sourceAddressPrefix": null, "sourceAddressPrefixes": ["Internet"]})),
            "SecurityRuleParameterContainsUnsupportedValue",
        ),
        (
            "r5",
            with(json!({"description": "d".repeat(200)})),
            "SecurityRuleDescriptionTooLong",
        ),
        ("bad name!", with(json!({})), "InvalidResourceName"),
        (
            "r7",
            with(json!({"priority": 5000})),
            "SecurityRuleInvalidPriority",
        ),
    ];
    for (name, body, code) in cases {
        let put = emu
            .call(
                Method::PUT,
                &format!("{nsg}/securityRules/{name}"),
                NETWORK,
                Some(body),
            )
            .await;
        assert_eq!(
            put.status,
            StatusCode::BAD_REQUEST,
            "{name}: {:?}",
            put.body
        );
        assert_eq!(put.body["error"]["code"], code, "{name}: {:?}", put.body);
    }
    let message = emu
        .call(
            Method::PUT,
            &format!("{nsg}/securityRules/r1"),
            NETWORK,
            Some(with(json!({"destinationPortRange": "70000"}))),
        )
        .await
        .body["error"]["message"]
        .clone();
    assert_eq!(
        message,
        "Security rule has invalid Port range. Value provided: 70000. Value should be an integer OR integer range with '-' delimiter. Valid range 0-65535."
    );
    // None of the refused rules was stored; a valid one with plural prefixes is.
    let ok = emu
        .call(
            Method::PUT,
            &format!("{nsg}/securityRules/ok-rule"),
            NETWORK,
            Some(with(json!({"sourceAddressPrefix": null, "sourceAddressPrefixes": ["198.51.100.0/24", "203.0.113.7"]}))),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
    let rules = emu.get(&format!("{nsg}/securityRules"), NETWORK).await;
    let names: Vec<&str> = rules.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"ok-rule") && !names.iter().any(|n| n.starts_with('r')));
}

#[tokio::test]
async fn second_openssh_extension_is_refused() {
    let emu = Emu::fast().await;
    let (rg, name) = emu.running_vm();
    let body = json!({"location": "eastus", "properties": {"publisher": "Microsoft.Azure.OpenSSH", "type": "WindowsOpenSSH", "typeHandlerVersion": "3.0", "autoUpgradeMinorVersion": true}});
    let first = format!("{}/extensions/WindowsOpenSSH", emu.vm_path(&rg, &name));
    let put = emu
        .call(Method::PUT, &first, COMPUTE, Some(body.clone()))
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    let second = format!("{}/extensions/OpenSSH", emu.vm_path(&rg, &name));
    let put = emu
        .call(Method::PUT, &second, COMPUTE, Some(body.clone()))
        .await;
    assert_eq!(put.status, StatusCode::BAD_REQUEST);
    assert_eq!(put.body["error"]["code"], "OperationNotAllowed");
    assert!(
        put.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Multiple VMExtensions per handler not supported for OS type 'Windows'.")
    );
    // Updating the existing one under its own name is fine.
    let again = emu.call(Method::PUT, &first, COMPUTE, Some(body)).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    let list = emu
        .get(&format!("{}/extensions", emu.vm_path(&rg, &name)), COMPUTE)
        .await;
    assert_eq!(list.body["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn runcommand_script_as_string_is_refused() {
    let emu = Emu::fast().await;
    let (rg, name) = emu.running_vm();
    let path = format!("{}/runCommand", emu.vm_path(&rg, &name));
    let sent = emu
        .call(
            Method::POST,
            &path,
            COMPUTE,
            Some(json!({"commandId": "RunPowerShellScript", "script": "hostname"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::BAD_REQUEST);
    assert_eq!(sent.body["error"]["code"], "InvalidRequestContent");
    let params = emu
        .call(
            Method::POST,
            &path,
            COMPUTE,
            Some(json!({"commandId": "RunPowerShellScript", "script": ["$a"], "parameters": {"a": "1"}})),
        )
        .await;
    assert_eq!(params.body["error"]["code"], "InvalidRequestContent");
    // Nothing ran: the guest saw no script.
    assert_eq!(emu.handle.stats().run_commands.get(&name), None);
}

#[tokio::test]
async fn graph_top_over_1000_is_refused() {
    let emu = Emu::fast().await;
    let graph = "/providers/Microsoft.ResourceGraph/resources";
    let q = |options: Value| json!({"subscriptions": [emu.handle.subscription_id()], "query": "Resources | project id, name", "options": options});
    let big = emu
        .call(
            Method::POST,
            graph,
            "2024-04-01",
            Some(q(json!({"$top": 5000}))),
        )
        .await;
    assert_eq!(big.status, StatusCode::BAD_REQUEST);
    assert_eq!(big.body["error"]["code"], "BadRequest");
    assert!(
        big.body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 1000")
    );
    let bad_format = emu
        .call(
            Method::POST,
            graph,
            "2024-04-01",
            Some(q(json!({"resultFormat": "csv"}))),
        )
        .await;
    assert_eq!(bad_format.status, StatusCode::BAD_REQUEST);
    // Without `id` in the projection there is no `$skipToken`, only `resultTruncated`.
    let no_id = json!({"query": "Resources | project name", "options": {"$top": 2}});
    let page = emu
        .call(Method::POST, graph, "2024-04-01", Some(no_id))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["resultTruncated"], "true");
    assert!(page.body.get("$skipToken").is_none());
    let with_id = emu
        .call(
            Method::POST,
            graph,
            "2024-04-01",
            Some(q(json!({"$top": 2}))),
        )
        .await;
    assert_eq!(with_id.body["resultTruncated"], "false");
    assert!(with_id.body["$skipToken"].is_string());
}

#[tokio::test]
async fn jit_request_beyond_policy_ports_is_refused() {
    let emu = Emu::with_jit_policies().await;
    let policies = emu.jit_policies().await;
    let policy = &policies["value"][0];
    let vm_id = policy["properties"]["virtualMachines"][0]["id"].clone();
    let url = format!("{}/initiate", policy["id"].as_str().unwrap());
    let at = |d: time::Duration| {
        (time::OffsetDateTime::now_utc() + d)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let ask = |port: u16, end: String, source: &str| json!({"virtualMachines": [{"id": vm_id, "ports": [{"number": port, "endTimeUtc": end, "allowedSourceAddressPrefix": source}]}]});
    for body in [
        ask(5985, at(time::Duration::hours(1)), "127.0.0.1"),
        ask(22, at(time::Duration::hours(5)), "127.0.0.1"),
        ask(22, at(time::Duration::hours(1)), "1.2.3.400"),
    ] {
        let answer = emu.call(Method::POST, &url, "2020-01-01", Some(body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{:?}", answer.body);
    }
    let ok = emu
        .call(
            Method::POST,
            &url,
            "2020-01-01",
            Some(ask(22, at(time::Duration::hours(1)), "127.0.0.1")),
        )
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{:?}", ok.body);
}

#[tokio::test]
async fn compute_rp_throttles_per_vm() {
    let emu = Emu::start(arm().speed(1.0).vms(12)).await;
    let (rg, name) = emu.running_vm();
    let path = format!("{}/runCommand", emu.vm_path(&rg, &name));
    let body = json!({"commandId": "RunPowerShellScript", "script": ["hostname"]});
    // The bucket refills continuously (4 a minute), so what it says depends on how long the
    // burst took: timed from before its first call.
    let burst = std::time::Instant::now();
    // Update VM: 12 per VM in a burst (the first runs, the rest meet the one-at-a-time 409).
    for i in 0..12 {
        let sent = emu
            .call(Method::POST, &path, COMPUTE, Some(body.clone()))
            .await;
        assert_ne!(sent.status, StatusCode::TOO_MANY_REQUESTS, "call {i}");
        let left = sent
            .header("x-ms-ratelimit-remaining-resource")
            .unwrap_or_default()
            .to_string();
        let all: Vec<&str> = sent
            .headers
            .get_all("x-ms-ratelimit-remaining-resource")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            all.contains(&format!("Microsoft.Compute/UpdateVMResource;{}", 11 - i).as_str()),
            "{all:?} {left}"
        );
    }
    let throttled = emu
        .call(Method::POST, &path, COMPUTE, Some(body.clone()))
        .await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.body["error"]["code"], "OperationNotAllowed");
    assert_eq!(
        throttled.body["error"]["details"][0]["code"],
        "TooManyRequests"
    );
    assert_eq!(
        throttled.body["error"]["details"][0]["target"],
        "UpdateVMResource"
    );
    // 4 tokens a minute: the next one 15 s after the bucket ran dry, less the part of a token
    // the bucket earned since (`ceil(15 - elapsed)`: 15 when the burst took under a second,
    // as it does on an idle machine, 14 if a loaded one spent a second and more on it).
    let retry_after: u64 = throttled
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .unwrap();
    let took = burst.elapsed().as_secs_f64();
    assert!(
        retry_after <= 15 && retry_after as f64 >= (15.0 - took).ceil(),
        "Retry-After {retry_after} after a {took:.2} s burst"
    );
    // Another VM has its own bucket; reads have theirs.
    let other = emu
        .handle
        .vms()
        .into_iter()
        .find(|v| v.name != name && v.power_state == PowerState::Running)
        .unwrap();
    let elsewhere = emu
        .run_command(&other.resource_group, &other.name, body)
        .await;
    assert_eq!(elsewhere.status, StatusCode::ACCEPTED);
    let read = emu.get(&emu.vm_path(&rg, &name), COMPUTE).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(
        read.headers
            .get_all("x-ms-ratelimit-remaining-resource")
            .iter()
            .any(|v| v.to_str().unwrap() == "Microsoft.Compute/LowCostGetResource;35")
    );
}

#[tokio::test]
async fn lro_answers_carry_retry_after() {
    let emu = Emu::start(arm().speed(1.0).vms(12)).await;
    let (rg, name) = emu.running_vm();
    let sent = emu
        .run_command(
            &rg,
            &name,
            json!({"commandId": "RunPowerShellScript", "script": ["hostname"]}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED);
    assert_eq!(sent.header("retry-after"), Some("10"));
    let status = emu
        .get(sent.header("azure-asyncoperation").unwrap(), "")
        .await;
    assert_eq!(status.body["status"], "InProgress");
    assert_eq!(status.header("retry-after"), Some("10"));
    let location = emu.get(sent.header("location").unwrap(), "").await;
    assert_eq!(location.status, StatusCode::ACCEPTED);
    assert_eq!(location.header("retry-after"), Some("10"));
    // The Network RP: a rule PUT, and a second write to the NSG while the first runs.
    let nsg = subnet_nsg(&emu);
    let put = emu
        .call(
            Method::PUT,
            &format!("{nsg}/securityRules/first"),
            NETWORK,
            Some(ssh_rule(3000, "203.0.113.7/32")),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    assert_eq!(put.header("retry-after"), Some("10"));
    let busy = emu
        .call(
            Method::PUT,
            &format!("{nsg}/securityRules/second"),
            NETWORK,
            Some(ssh_rule(3001, "203.0.113.7/32")),
        )
        .await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        busy.body["error"]["code"],
        "RetryableErrorDueToAnotherOperation"
    );
    assert!(busy.header("retry-after").is_some());
}
