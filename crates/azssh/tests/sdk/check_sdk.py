"""SDK acceptance check: Microsoft's own Python SDKs (azure-mgmt-compute, azure-mgmt-network)
against a running azssh emulator, without any special-casing on the emulator side.

Reads AZSSH_ARM_ENDPOINT, AZSSH_ACCESS_TOKEN and AZURE_SUBSCRIPTION_ID (the lines
`azssh emulator` prints). Exits non-zero on the first failure.

The emulator speaks plain http on loopback. azure-core's BearerTokenCredentialPolicy refuses to
send a token over http unless the request carries the documented `enforce_https=False` option,
so every call passes it (the supported switch, rather than a patched policy or a TLS shim).
"""

import os
import sys
import time

from azure.core.credentials import AccessToken
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    RunCommandInput,
    VirtualMachineExtension,
    VirtualMachineExtensionProperties,
)
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import SecurityRule

ENDPOINT = os.environ["AZSSH_ARM_ENDPOINT"]
TOKEN = os.environ["AZSSH_ACCESS_TOKEN"]
SUBSCRIPTION = os.environ["AZURE_SUBSCRIPTION_ID"]
# Per-call options: http on loopback, and a short poll interval (the emulator, like Azure's
# Compute RP in the recordings, sends no Retry-After, so the SDK would wait 30 s by default).
OPTS = {"enforce_https": False}
LRO = {"enforce_https": False, "polling_interval": 0.05}


class StaticToken:
    """A TokenCredential handing out the emulator's token."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken(TOKEN, int(time.time()) + 3600)


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def rg_of(resource_id):
    return resource_id.split("/")[4]


def main():
    cred = StaticToken()
    compute = ComputeManagementClient(cred, SUBSCRIPTION, base_url=ENDPOINT)
    network = NetworkManagementClient(cred, SUBSCRIPTION, base_url=ENDPOINT)

    vms = list(compute.virtual_machines.list_all(**OPTS))
    check(len(vms) >= 4, f"list_all pages through {len(vms)} VMs")
    rg = rg_of(vms[0].id)
    in_rg = list(compute.virtual_machines.list(rg, **OPTS))
    check(0 < len(in_rg) < len(vms), f"list({rg}) returns {len(in_rg)} VMs")

    def power(vm):
        v = compute.virtual_machines.get(rg_of(vm.id), vm.name, expand="instanceView", **OPTS)
        codes = [s.code for s in v.instance_view.statuses if s.code.startswith("PowerState/")]
        return v, codes[0] if codes else None

    running = [vm for vm in vms if power(vm)[1] == "PowerState/running" and vm.storage_profile.os_disk.os_type == "Windows"]
    check(len(running) > 0, f"{len(running)} running Windows VMs")
    vm, _ = power(running[0])
    check(vm.instance_view.os_name.startswith("Windows Server"), f"instance view osName {vm.instance_view.os_name!r}")
    check(vm.storage_profile.image_reference.sku is not None, f"image sku {vm.storage_profile.image_reference.sku}")

    result = compute.virtual_machines.begin_run_command(
        rg_of(vm.id), vm.name,
        RunCommandInput(command_id="RunPowerShellScript", script=["Write-Output hello"]),
        **LRO,
    ).result()
    codes = [s.code for s in result.value]
    check("ComponentStatus/StdOut/succeeded" in codes, f"begin_run_command result codes {codes}")

    stopped = next((v for v in vms if power(v)[1] != "PowerState/running"), None)
    check(stopped is not None, "a VM that is not running")
    compute.virtual_machines.begin_start(rg_of(stopped.id), stopped.name, **LRO).result()
    check(power(stopped)[1] == "PowerState/running", f"begin_start brought {stopped.name} to running")

    ext = compute.virtual_machine_extensions.begin_create_or_update(
        rg_of(vm.id), vm.name, "WindowsOpenSSH",
        VirtualMachineExtension(
            location=vm.location,
            properties=VirtualMachineExtensionProperties(
                publisher="Microsoft.Azure.OpenSSH",
                type="WindowsOpenSSH",
                type_handler_version="3.0",
                auto_upgrade_minor_version=True,
            ),
        ),
        **LRO,
    ).result()
    state = ext.properties.provisioning_state
    check(state == "Succeeded", f"WindowsOpenSSH extension {state}")

    nic_id = vm.network_profile.network_interfaces[0].id
    nic = network.network_interfaces.get(rg_of(nic_id), nic_id.split("/")[-1], **OPTS)
    ipc = nic.ip_configurations[0]
    check(ipc.private_ip_address.startswith("10."), f"NIC private IP {ipc.private_ip_address}")
    if ipc.public_ip_address is not None:
        pip_id = ipc.public_ip_address.id
        pip = network.public_ip_addresses.get(rg_of(pip_id), pip_id.split("/")[-1], **OPTS)
        check(pip.ip_address.startswith("127."), f"public IP {pip.ip_address}")
    nsg_id = nic.network_security_group.id if nic.network_security_group else None
    if nsg_id is None:
        subnet_parts = ipc.subnet.id.split("/")
        subnet = network.subnets.get(subnet_parts[4], subnet_parts[8], subnet_parts[10], **OPTS)
        nsg_id = subnet.network_security_group.id
    nsg_name = nsg_id.split("/")[-1]
    nsg = network.network_security_groups.get(rg_of(nsg_id), nsg_name, **OPTS)
    taken = {r.priority for r in nsg.security_rules if r.direction == "Inbound"}
    priority = next(p for p in range(1000, 4096) if p not in taken)
    rule = network.security_rules.begin_create_or_update(
        rg_of(nsg_id), nsg_name, "allow-SSH",
        SecurityRule(
            protocol="Tcp", source_port_range="*", destination_port_range="22",
            source_address_prefix="127.0.0.1/32", destination_address_prefix="*",
            access="Allow", priority=priority, direction="Inbound",
        ),
        **LRO,
    ).result()
    check(rule.provisioning_state == "Succeeded" and rule.priority == priority, f"security rule allow-SSH at {priority}")
    rules = [r.name for r in network.security_rules.list(rg_of(nsg_id), nsg_name, **OPTS)]
    check("allow-SSH" in rules, f"rule list {rules}")
    print("SDK acceptance check passed")


if __name__ == "__main__":
    main()
