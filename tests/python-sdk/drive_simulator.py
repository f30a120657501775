"""Drives the ARM simulator with Microsoft's Python management SDKs, a client that neither
ferry nor the simulator wrote, as a second opinion on the protocol.

Usage: drive_simulator.py ENDPOINT CA_FILE SUBSCRIPTION_ID

Prints one JSON line per operation: {"operation": ..., "ok": true, "result": ...} or
{"operation": ..., "ok": false, "error": "<the SDK's exception text>"}. Every long-running
operation goes through the SDK's own poller (`begin_...().result()`), so a status code, header
or body the SDK does not expect fails the operation that met it. Exits 0 when every operation
passed, 1 otherwise; `tests/tests/python_sdk.rs` runs it.
"""

import json
import sys
import time
import traceback

from azure.core.credentials import AccessToken
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

LOCATION = "westeurope"
GROUP = "python-sdk"
TARGET_GROUP = "python-sdk-target"


class FixedTokenCredential:
    """The simulator accepts any bearer token; this one never asks Entra ID for one."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("ferry-python-sdk-token", int(time.time()) + 3600)


def as_plain(value):
    """A model or a paged list as JSON-friendly data, for the printed result."""
    if value is None:
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return [as_plain(item) for item in value]
    if hasattr(value, "as_dict"):
        return value.as_dict()
    try:
        return dict(value)
    except (TypeError, ValueError):
        return str(value)


class Run:
    def __init__(self):
        self.failures = 0
        self.count = 0

    def step(self, name, action):
        """Runs one operation, prints its line, and returns its result (None on failure)."""
        self.count += 1
        try:
            result = action()
        except Exception as error:  # the SDK's own exception text is the point
            self.failures += 1
            text = f"{type(error).__name__}: {error}"
            if not hasattr(error, "status_code"):
                text += "\n" + traceback.format_exc(limit=4)
            print(json.dumps({"operation": name, "ok": False, "error": text}), flush=True)
            return None
        print(
            json.dumps({"operation": name, "ok": True, "result": as_plain(result)}, default=str),
            flush=True,
        )
        return result


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


# Request bodies are written as ARM's JSON (`properties`, camelCase), which every one of these
# SDKs sends as it is given.


def main():
    endpoint, ca_file, subscription = sys.argv[1], sys.argv[2], sys.argv[3]
    credential = FixedTokenCredential()
    common = {"base_url": endpoint, "connection_verify": ca_file, "polling_interval": 0}
    resources = ResourceManagementClient(credential, subscription, **common)
    network = NetworkManagementClient(credential, subscription, **common)
    compute = ComputeManagementClient(credential, subscription, **common)
    containers = ContainerServiceClient(credential, subscription, **common)
    dns = DnsManagementClient(credential, subscription, **common)
    prefix = f"/subscriptions/{subscription}/resourceGroups/{GROUP}/providers"
    run = Run()

    # Resource groups.
    run.step(
        "resource_groups.create_or_update",
        lambda: resources.resource_groups.create_or_update(GROUP, {"location": LOCATION}),
    )
    run.step(
        "resource_groups.create_or_update target",
        lambda: resources.resource_groups.create_or_update(TARGET_GROUP, {"location": LOCATION}),
    )
    run.step("resource_groups.get", lambda: resources.resource_groups.get(GROUP))

    def list_groups():
        names = [group.name for group in resources.resource_groups.list()]
        expect(GROUP in names and TARGET_GROUP in names, f"groups listed: {names}")
        return names

    run.step("resource_groups.list", list_groups)

    # A network with a subnet inside its PUT, and one more subnet created on its own.
    vnet_body = {
        "location": LOCATION,
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "inline", "properties": {"addressPrefix": "10.0.0.0/24"}}],
        },
    }
    run.step(
        "virtual_networks.begin_create_or_update",
        lambda: network.virtual_networks.begin_create_or_update(GROUP, "vnet", vnet_body).result(),
    )
    run.step("virtual_networks.get", lambda: network.virtual_networks.get(GROUP, "vnet"))

    # A subscription's lists filtered by a tag, as a drill's clean-up proves itself: the
    # network and the target group carry it, the group holding the network does not.
    drill_filter = "tagName eq 'ferry-drill' and tagValue eq 'sdk'"
    run.step(
        "resource_groups.create_or_update tagged",
        lambda: resources.resource_groups.create_or_update(
            TARGET_GROUP, {"location": LOCATION, "tags": {"ferry-drill": "sdk"}}
        ),
    )
    run.step(
        "virtual_networks.begin_create_or_update tagged",
        lambda: network.virtual_networks.begin_create_or_update(
            GROUP, "vnet", dict(vnet_body, tags={"ferry-drill": "sdk"})
        ).result(),
    )

    def list_tagged():
        found = [resource.name for resource in resources.resources.list(filter=drill_filter)]
        expect(found == ["vnet"], f"resources tagged: {found}")
        return found

    def list_tagged_groups():
        found = [group.name for group in resources.resource_groups.list(filter=drill_filter)]
        expect(found == [TARGET_GROUP], f"groups tagged: {found}")
        return found

    run.step("resources.list by tag", list_tagged)
    run.step("resource_groups.list by tag", list_tagged_groups)
    run.step("subnets.get inline", lambda: network.subnets.get(GROUP, "vnet", "inline"))
    run.step(
        "subnets.begin_create_or_update",
        lambda: network.subnets.begin_create_or_update(
            GROUP, "vnet", "own", {"properties": {"addressPrefix": "10.0.1.0/24"}}
        ).result(),
    )

    def list_subnets():
        names = sorted(subnet.name for subnet in network.subnets.list(GROUP, "vnet"))
        expect(names == ["inline", "own"], f"subnets listed: {names}")
        in_network = sorted(
            subnet.name for subnet in network.virtual_networks.get(GROUP, "vnet").subnets or []
        )
        expect(in_network == ["inline", "own"], f"subnets in the network: {in_network}")
        return names

    run.step("subnets.list", list_subnets)

    # A public IP and a network interface.
    run.step(
        "public_ip_addresses.begin_create_or_update",
        lambda: network.public_ip_addresses.begin_create_or_update(
            GROUP,
            "pip",
            {
                "location": LOCATION,
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
            },
        ).result(),
    )
    run.step("public_ip_addresses.get", lambda: network.public_ip_addresses.get(GROUP, "pip"))
    nic_body = {
        "location": LOCATION,
        "properties": {
            "ipConfigurations": [
                {
                    "name": "ipconfig1",
                    "properties": {
                        "subnet": {"id": f"{prefix}/Microsoft.Network/virtualNetworks/vnet/subnets/inline"},
                        "publicIPAddress": {"id": f"{prefix}/Microsoft.Network/publicIPAddresses/pip"},
                    },
                }
            ]
        },
    }
    run.step(
        "network_interfaces.begin_create_or_update",
        lambda: network.network_interfaces.begin_create_or_update(GROUP, "nic", nic_body).result(),
    )
    run.step("network_interfaces.get", lambda: network.network_interfaces.get(GROUP, "nic"))

    # A load balancer holding a public IP of its own: its sub-resources, the IP's holder, and
    # Network's refusals of a second holder and of the held IP's deletion.
    run.step(
        "public_ip_addresses.begin_create_or_update for the load balancer",
        lambda: network.public_ip_addresses.begin_create_or_update(
            GROUP,
            "lb-pip",
            {
                "location": LOCATION,
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
            },
        ).result(),
    )
    lb_id = f"{prefix}/Microsoft.Network/loadBalancers/lb"
    lb_body = {
        "location": LOCATION,
        "sku": {"name": "Standard"},
        "properties": {
            "frontendIPConfigurations": [
                {
                    "name": "fe",
                    "properties": {"publicIPAddress": {"id": f"{prefix}/Microsoft.Network/publicIPAddresses/lb-pip"}},
                }
            ],
            "backendAddressPools": [{"name": "pool"}],
            "probes": [{"name": "https", "properties": {"protocol": "Tcp", "port": 443}}],
            "loadBalancingRules": [
                {
                    "name": "https",
                    "properties": {
                        "frontendIPConfiguration": {"id": f"{lb_id}/frontendIPConfigurations/fe"},
                        "backendAddressPool": {"id": f"{lb_id}/backendAddressPools/pool"},
                        "probe": {"id": f"{lb_id}/probes/https"},
                        "protocol": "Tcp",
                        "frontendPort": 443,
                        "backendPort": 443,
                    },
                }
            ],
        },
    }
    run.step(
        "load_balancers.begin_create_or_update",
        lambda: network.load_balancers.begin_create_or_update(GROUP, "lb", lb_body).result(),
    )

    def read_load_balancer():
        balancer = network.load_balancers.get(GROUP, "lb")
        frontend = balancer.frontend_ip_configurations[0]
        expect(frontend.id == f"{lb_id}/frontendIPConfigurations/fe", f"frontend id {frontend.id}")
        rules = [rule.id for rule in frontend.load_balancing_rules or []]
        expect(rules == [f"{lb_id}/loadBalancingRules/https"], f"the frontend's rules: {rules}")
        return balancer

    run.step("load_balancers.get", read_load_balancer)

    def holder_shown():
        holder = network.public_ip_addresses.get(GROUP, "lb-pip").ip_configuration
        expect(holder is not None and holder.id == f"{lb_id}/frontendIPConfigurations/fe", f"holder {holder}")
        return holder.id

    run.step("public_ip_addresses.get shows its holder", holder_shown)
    run.step("load_balancers.list", lambda: [lb.name for lb in network.load_balancers.list(GROUP)])
    run.step("load_balancers.list_all", lambda: [lb.name for lb in network.load_balancers.list_all()])

    def refused(action, code):
        def attempt():
            try:
                action()
            except Exception as error:
                expect(getattr(getattr(error, "error", None), "code", None) == code, f"refused with {error}")
                return f"{type(error).__name__}: {error}"
            raise AssertionError(f"accepted, not refused with {code}")

        return attempt

    run.step(
        "resources.list refused: a tag filter combined with a type",
        refused(
            lambda: list(
                resources.resources.list(
                    filter=drill_filter + " and resourceType eq 'Microsoft.Network/virtualNetworks'"
                )
            ),
            "InvalidFilterInQueryString",
        ),
    )

    run.step(
        "load_balancers.begin_create_or_update refused: the IP is in use",
        refused(
            lambda: network.load_balancers.begin_create_or_update(GROUP, "lb-other", lb_body).result(),
            "PublicIPAddressInUse",
        ),
    )
    run.step(
        "public_ip_addresses.begin_delete refused: the IP is held",
        refused(
            lambda: network.public_ip_addresses.begin_delete(GROUP, "lb-pip").result(),
            "PublicIPAddressCannotBeDeleted",
        ),
    )
    run.step("load_balancers.begin_delete", lambda: network.load_balancers.begin_delete(GROUP, "lb").result())
    run.step(
        "public_ip_addresses.begin_delete once free",
        lambda: network.public_ip_addresses.begin_delete(GROUP, "lb-pip").result(),
    )

    # A VM: create, read, power, update, data disks.
    vm_body = {
        "location": LOCATION,
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
            "storageProfile": {
                "imageReference": {
                    "publisher": "Canonical",
                    "offer": "ubuntu-24_04-lts",
                    "sku": "server",
                    "version": "latest",
                },
                "osDisk": {"createOption": "FromImage", "managedDisk": {"storageAccountType": "Premium_LRS"}},
            },
            "osProfile": {
                "computerName": "vm",
                "adminUsername": "azureuser",
                "adminPassword": "Never-Returned-1!",
                "customData": "I2Nsb3VkLWNvbmZpZw==",
            },
            "networkProfile": {
                "networkInterfaces": [{"id": f"{prefix}/Microsoft.Network/networkInterfaces/nic"}]
            },
        },
    }

    def create_vm():
        vm = compute.virtual_machines.begin_create_or_update(GROUP, "vm", vm_body).result()
        expect(vm.os_profile.admin_password is None, "the VM's create echoed adminPassword")
        return vm.id

    run.step("virtual_machines.begin_create_or_update", create_vm)

    def get_vm():
        vm = compute.virtual_machines.get(GROUP, "vm")
        expect(vm.os_profile.admin_password is None, "a VM GET echoed adminPassword")
        expect(vm.os_profile.custom_data is None, "a VM GET echoed customData")
        return vm.provisioning_state

    run.step("virtual_machines.get", get_vm)
    run.step(
        "virtual_machines.instance_view",
        lambda: [status.code for status in compute.virtual_machines.instance_view(GROUP, "vm").statuses],
    )
    run.step(
        "virtual_machines.begin_deallocate",
        lambda: compute.virtual_machines.begin_deallocate(GROUP, "vm").result(),
    )
    run.step(
        "virtual_machines.begin_start",
        lambda: compute.virtual_machines.begin_start(GROUP, "vm").result(),
    )
    run.step(
        "virtual_machines.begin_update",
        lambda: compute.virtual_machines.begin_update(GROUP, "vm", {"tags": {"role": "nfs"}}).result().tags,
    )

    # A managed disk: create, read, update, list, attach and detach.
    run.step(
        "disks.begin_create_or_update",
        lambda: compute.disks.begin_create_or_update(
            GROUP,
            "data",
            {
                "location": LOCATION,
                "sku": {"name": "Premium_LRS"},
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 64},
            },
        ).result().disk_state,
    )
    run.step("disks.get", lambda: compute.disks.get(GROUP, "data").disk_size_gb)
    run.step(
        "disks.begin_update",
        lambda: compute.disks.begin_update(GROUP, "data", {"tags": {"pool": "home"}}).result().tags,
    )
    run.step(
        "disks.list_by_resource_group",
        lambda: [disk.name for disk in compute.disks.list_by_resource_group(GROUP)],
    )
    disk_id = f"{prefix}/Microsoft.Compute/disks/data"

    def attach():
        profile = compute.virtual_machines.begin_attach_detach_data_disks(
            GROUP, "vm", {"dataDisksToAttach": [{"diskId": disk_id, "lun": 0}]}
        ).result()
        luns = [disk.lun for disk in profile.data_disks]
        expect(luns == [0], f"the storage profile after the attach lists LUNs {luns}")
        return luns

    run.step("virtual_machines.begin_attach_detach_data_disks attach", attach)

    def detach():
        profile = compute.virtual_machines.begin_attach_detach_data_disks(
            GROUP, "vm", {"dataDisksToDetach": [{"diskId": disk_id}]}
        ).result()
        expect(not profile.data_disks, f"data disks left after the detach: {profile.data_disks}")
        return compute.disks.get(GROUP, "data").disk_state

    run.step("virtual_machines.begin_attach_detach_data_disks detach", detach)

    # An AKS cluster.
    cluster_body = {
        "location": LOCATION,
        "properties": {
            "dnsPrefix": "aks",
            "agentPoolProfiles": [
                {"name": "system", "count": 1, "vmSize": "Standard_D2s_v5", "mode": "System"}
            ],
            "servicePrincipalProfile": {"clientId": "msi", "secret": "never-returned"},
        },
    }

    def create_cluster():
        cluster = containers.managed_clusters.begin_create_or_update(GROUP, "aks", cluster_body).result()
        expect(cluster.fqdn, "the create's result has no fqdn")
        pool = cluster.agent_pool_profiles[0]
        expect(pool.os_disk_size_gb and pool.max_pods and pool.os_type, "agent pool defaults are missing")
        profile = cluster.service_principal_profile
        expect(profile is None or profile.secret is None, "the create echoed the service principal's secret")
        return cluster.fqdn

    run.step("managed_clusters.begin_create_or_update", create_cluster)
    run.step("managed_clusters.get", lambda: containers.managed_clusters.get(GROUP, "aks").fqdn)
    run.step(
        "managed_clusters.list_cluster_user_credentials",
        lambda: [kubeconfig.name for kubeconfig in containers.managed_clusters.list_cluster_user_credentials(GROUP, "aks").kubeconfigs],
    )

    # DNS.
    run.step(
        "zones.create_or_update",
        lambda: dns.zones.create_or_update(GROUP, "example.test", {"location": "global"}).name_servers,
    )
    run.step("zones.get", lambda: dns.zones.get(GROUP, "example.test").name)
    run.step(
        "record_sets.create_or_update",
        lambda: dns.record_sets.create_or_update(
            GROUP, "example.test", "www", "A", {"properties": {"TTL": 60, "ARecords": [{"ipv4Address": "127.0.1.9"}]}}
        ).fqdn,
    )
    run.step("record_sets.get", lambda: dns.record_sets.get(GROUP, "example.test", "www", "A").ttl)
    run.step("record_sets.delete", lambda: dns.record_sets.delete(GROUP, "example.test", "www", "A"))
    run.step("zones.begin_delete", lambda: dns.zones.begin_delete(GROUP, "example.test").result())

    # Moves: a disk to the target group, validated first.
    move = {"resources": [disk_id], "targetResourceGroup": f"/subscriptions/{subscription}/resourceGroups/{TARGET_GROUP}"}
    run.step(
        "resources.begin_validate_move_resources",
        lambda: resources.resources.begin_validate_move_resources(GROUP, move).result(),
    )

    def refused_validation():
        cluster_id = f"{prefix}/Microsoft.ContainerService/managedClusters/aks"
        refused = {"resources": [cluster_id], "targetResourceGroup": move["targetResourceGroup"]}
        try:
            resources.resources.begin_validate_move_resources(GROUP, refused).result()
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        raise AssertionError("moving a managed cluster validated")

    run.step("resources.begin_validate_move_resources refused", refused_validation)
    run.step(
        "resources.begin_move_resources",
        lambda: resources.resources.begin_move_resources(GROUP, move).result(),
    )
    run.step("disks.get moved", lambda: compute.disks.get(TARGET_GROUP, "data").id)

    # Subscription-wide lists.
    run.step("virtual_machines.list_all", lambda: [vm.name for vm in compute.virtual_machines.list_all()])
    run.step("disks.list", lambda: [disk.name for disk in compute.disks.list()])
    run.step(
        "public_ip_addresses.list_all",
        lambda: [address.name for address in network.public_ip_addresses.list_all()],
    )
    run.step(
        "network_interfaces.list_all",
        lambda: [interface.name for interface in network.network_interfaces.list_all()],
    )
    run.step(
        "virtual_networks.list_all",
        lambda: [vnet.name for vnet in network.virtual_networks.list_all()],
    )
    run.step(
        "managed_clusters.list",
        lambda: [cluster.name for cluster in containers.managed_clusters.list()],
    )

    # Deletes, each through its poller.
    run.step("managed_clusters.begin_delete", lambda: containers.managed_clusters.begin_delete(GROUP, "aks").result())
    run.step("virtual_machines.begin_delete", lambda: compute.virtual_machines.begin_delete(GROUP, "vm").result())
    run.step("disks.begin_delete", lambda: compute.disks.begin_delete(TARGET_GROUP, "data").result())
    run.step(
        "network_interfaces.begin_delete",
        lambda: network.network_interfaces.begin_delete(GROUP, "nic").result(),
    )
    run.step(
        "public_ip_addresses.begin_delete",
        lambda: network.public_ip_addresses.begin_delete(GROUP, "pip").result(),
    )
    run.step("subnets.begin_delete", lambda: network.subnets.begin_delete(GROUP, "vnet", "own").result())

    def subnet_gone():
        names = [subnet.name for subnet in network.virtual_networks.get(GROUP, "vnet").subnets or []]
        expect(names == ["inline"], f"the network still lists {names}")
        return names

    run.step("virtual_networks.get after the subnet's delete", subnet_gone)
    run.step("virtual_networks.begin_delete", lambda: network.virtual_networks.begin_delete(GROUP, "vnet").result())
    run.step("resource_groups.begin_delete", lambda: resources.resource_groups.begin_delete(GROUP).result())
    run.step(
        "resource_groups.begin_delete target",
        lambda: resources.resource_groups.begin_delete(TARGET_GROUP).result(),
    )

    print(json.dumps({"operations": run.count, "failed": run.failures}), flush=True)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
