//! Wire shapes against `reference/arm-examples/` and LRO header sequences against
//! `reference/recordings/`.

use std::net::Ipv4Addr;

use azssh::emulator::{EmulatorConfig, PowerState};
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
