"""The OpenStack Networking API v2.0 through openstacksdk's network proxy and
the `openstack network|subnet|port|floating ip|security group|router` CLI.

Error bodies are checked against Neutron's api-ref samples:
{"NeutronError": {"type": ..., "message": ..., "detail": ""}}.
"""

import json
import os
import subprocess
import sys

import pytest
from openstack import exceptions

from conftest import boot, settle

OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")


def neutron_error(resp):
    body = resp.json()
    assert set(body) == {"NeutronError"}, body
    err = body["NeutronError"]
    assert set(err) == {"type", "message", "detail"}, err
    return err


def test_network_catalog_and_extensions(admin):
    ep = admin.network.get_endpoint()
    assert "/network" in ep
    aliases = {e.alias for e in admin.network.extensions()}
    for a in ["external-net", "router", "security-group", "port-security",
              "allowed-address-pairs", "standard-attr-tag", "pagination", "net-mtu"]:
        assert a in aliases
    assert admin.network.find_extension("router").alias == "router"


def test_network_subnet_port_lifecycle(alice, bob):
    net = alice.network.create_network(name="net-a", mtu=1400)
    assert net.status == "ACTIVE" and net.is_admin_state_up and net.mtu == 1400
    assert net.is_shared is False and net.is_router_external is False
    sub = alice.network.create_subnet(
        network_id=net.id, ip_version=4, cidr="192.168.50.0/24", name="sub-a",
        allocation_pools=[{"start": "192.168.50.10", "end": "192.168.50.20"}],
        dns_nameservers=["192.168.50.1"])
    assert sub.gateway_ip == "192.168.50.1" and sub.is_dhcp_enabled
    assert sub.allocation_pools == [{"start": "192.168.50.10", "end": "192.168.50.20"}]
    sub6 = alice.network.create_subnet(network_id=net.id, ip_version=6, cidr="fd00:50::/64")
    assert sub6.gateway_ip == "fd00:50::1"
    assert sorted(alice.network.get_network(net).subnet_ids) == sorted([sub.id, sub6.id])

    port = alice.network.create_port(network_id=net.id, name="p1", device_id="dev-1",
                                     device_owner="compute:nova")
    assert port.mac_address.startswith("fa:16:3e:")
    ips = {f["subnet_id"]: f["ip_address"] for f in port.fixed_ips}
    # The pool's first address is the DHCP port's (Neutron's DHCP agent takes it).
    assert ips[sub.id] == "192.168.50.11"
    assert ips[sub6.id].startswith("fd00:50::")
    assert len(port.security_group_ids) == 1 and port.is_port_security_enabled
    fixed = alice.network.create_port(
        network_id=net.id, fixed_ips=[{"subnet_id": sub.id, "ip_address": "192.168.50.15"}],
        allowed_address_pairs=[{"ip_address": "192.168.50.200"}])
    assert fixed.fixed_ips == [{"subnet_id": sub.id, "ip_address": "192.168.50.15"}]
    assert fixed.allowed_address_pairs[0]["mac_address"] == fixed.mac_address

    # Neutron's 409 texts.
    r = alice.network.post("/ports", json={"port": {"network_id": net.id, "fixed_ips": [
        {"ip_address": "192.168.50.15"}]}}, raise_exc=False)
    assert r.status_code == 409
    assert neutron_error(r) == {
        "type": "IpAddressAlreadyAllocated",
        "message": f"IP address 192.168.50.15 already allocated in subnet {sub.id}",
        "detail": ""}
    r = alice.network.post("/ports", json={"port": {"network_id": net.id,
                                                     "mac_address": port.mac_address}},
                           raise_exc=False)
    assert r.status_code == 409
    assert neutron_error(r)["message"] == (
        f"Unable to complete operation for network {net.id}. "
        f"The mac address {port.mac_address} is in use.")
    assert neutron_error(r)["type"] == "MacAddressInUse"

    # Filters.
    assert [p.id for p in alice.network.ports(device_id="dev-1")] == [port.id]
    on_net = list(alice.network.ports(network_id=net.id))
    dhcp = [p for p in on_net if p.device_owner == "network:dhcp"]
    assert sorted(p.fixed_ips[0]["subnet_id"] for p in dhcp) == sorted([sub.id, sub6.id])
    v4 = [p for p in dhcp if p.fixed_ips[0]["subnet_id"] == sub.id][0]
    assert v4.fixed_ips[0]["ip_address"] == "192.168.50.10"
    assert v4.device_id.endswith(net.id) and v4.security_group_ids == []
    assert [p.id for p in alice.network.ports(device_owner="network:dhcp",
                                              network_id=net.id)] != []
    assert {p.id for p in on_net} - {p.id for p in dhcp} == {port.id, fixed.id}
    assert [n.id for n in alice.network.networks(name="net-a")] == [net.id]

    # Tenant isolation: bob sees neither the network nor its ports.
    assert net.id not in [n.id for n in bob.network.networks()]
    r = bob.network.get(f"/networks/{net.id}", raise_exc=False)
    assert r.status_code == 404
    assert neutron_error(r) == {"type": "NetworkNotFound",
                                "message": f"Network {net.id} could not be found.",
                                "detail": ""}
    with pytest.raises(exceptions.NotFoundException):
        bob.network.get_port(port.id)
    # Shared and external networks are visible to everyone.
    names = {n.name for n in bob.network.networks()}
    assert {"private", "public"} <= names

    # In use: the subnet and the network cannot go while ports hold addresses.
    r = alice.network.delete(f"/subnets/{sub.id}", raise_exc=False)
    assert r.status_code == 409 and neutron_error(r)["type"] == "SubnetInUse"
    r = alice.network.delete(f"/networks/{net.id}", raise_exc=False)
    assert r.status_code == 409 and neutron_error(r)["type"] == "NetworkInUse"

    alice.network.update_port(port, name="p1-renamed")
    assert alice.network.get_port(port).name == "p1-renamed"
    alice.network.delete_port(port)
    alice.network.delete_port(fixed)
    alice.network.delete_subnet(sub)
    alice.network.delete_subnet(sub6)
    alice.network.delete_network(net)
    with pytest.raises(exceptions.NotFoundException):
        alice.network.get_network(net.id)


def test_subnet_validation(alice):
    net = alice.network.create_network(name="net-val")
    cases = [
        ({"cidr": "10.9.0.0/33", "ip_version": 4},
         "Invalid input for cidr. Reason: '10.9.0.0/33' is not a valid IP subnet."),
        ({"cidr": "10.9.0.1/24", "ip_version": 4},
         "Invalid input for cidr. Reason: '10.9.0.1/24' isn't a recognized IP subnet cidr,"
         " '10.9.0.0/24' is recommended."),
        ({"cidr": "10.9.0.0/24", "ip_version": 5},
         "Invalid input for ip_version. Reason: '5' is not in [4, 6]."),
        ({"cidr": "10.9.0.0/24"},
         "Failed to parse request. Required attribute 'ip_version' not specified"),
    ]
    for body, msg in cases:
        r = alice.network.post("/subnets", json={"subnet": {"network_id": net.id, **body}},
                               raise_exc=False)
        assert r.status_code == 400, r.text
        assert neutron_error(r) == {"type": "HTTPBadRequest", "message": msg, "detail": ""}
    alice.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.9.0.0/24")
    r = alice.network.post("/subnets", json={"subnet": {
        "network_id": net.id, "ip_version": 4, "cidr": "10.9.0.128/25"}}, raise_exc=False)
    assert r.status_code == 400
    assert neutron_error(r)["type"] == "InvalidInput"
    r = alice.network.post("/networks", json={"network": {"bogus": 1}}, raise_exc=False)
    assert r.status_code == 400
    assert neutron_error(r)["message"] == "Unrecognized attribute(s) 'bogus'"
    # Leave alice one usable network: servers booted with "auto" must not be ambiguous.
    for sub in alice.network.subnets(network_id=net.id):
        alice.network.delete_subnet(sub)
    alice.network.delete_network(net)


def test_roles(lb, rita, admin, alice):
    r = rita.network.post("/networks", json={"network": {"name": "nope"}}, raise_exc=False)
    assert r.status_code == 403
    assert neutron_error(r)["type"] == "PolicyNotAuthorized"
    net = alice.network.create_network(name="net-roles")
    # the reader of the same project sees it; admin sees every project's
    assert net.id in [n.id for n in rita.network.networks()]
    assert net.id in [n.id for n in admin.network.networks()]
    # only admins make shared or external networks
    r = alice.network.post("/networks", json={"network": {"name": "s", "shared": True}},
                           raise_exc=False)
    assert r.status_code == 403
    ext = admin.network.create_network(name="ext-roles", is_router_external=True)
    assert ext.is_router_external
    admin.network.delete_network(ext)
    alice.network.delete_network(net)


def test_pagination_and_tags(alice):
    made = [alice.network.create_network(name=f"page-{i}") for i in range(5)]
    ids = {n.id for n in made}
    seen = [n.id for n in alice.network.networks(limit=2, name=[n.name for n in made][0])]
    assert seen == [made[0].id]
    r = alice.network.get("/networks?limit=2&sort_key=name&sort_dir=asc&tags=nothing",
                          raise_exc=False)
    assert r.json()["networks"] == []
    # limit/marker with links, as the SDK follows them
    listed = [n.id for n in alice.network.networks(limit=2) if n.id in ids]
    assert sorted(listed) == sorted(ids)
    first = alice.network.get("/networks?limit=2").json()
    assert len(first["networks"]) == 2
    assert first["networks_links"][0]["rel"] == "next"
    n0 = made[0]
    alice.network.set_tags(n0, ["red", "blue"])
    alice.network.add_tag(n0, "green")
    assert sorted(alice.network.get_network(n0).tags) == ["blue", "green", "red"]
    alice.network.remove_tag(n0, "red")
    assert [n.id for n in alice.network.networks(tags="green")] == [n0.id]
    assert n0.id not in [n.id for n in alice.network.networks(not_tags="green")]
    for n in made:
        alice.network.delete_network(n)


def test_security_groups(alice, bob):
    groups = list(alice.network.security_groups())
    default = next(g for g in groups if g.name == "default")
    dirs = sorted((r["direction"], r["ethertype"]) for r in default.security_group_rules)
    assert dirs == [("egress", "IPv4"), ("egress", "IPv6"), ("ingress", "IPv4"),
                    ("ingress", "IPv6")]
    sg = alice.network.create_security_group(name="web", description="web servers")
    rule = alice.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol="tcp",
        port_range_min=80, port_range_max=80, remote_ip_prefix="0.0.0.0/0")
    assert rule.protocol == "tcp" and rule.port_range_min == 80
    r = alice.network.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg.id, "direction": "ingress", "ethertype": "IPv4",
        "protocol": "tcp", "port_range_min": 80, "port_range_max": 80,
        "remote_ip_prefix": "0.0.0.0/0"}}, raise_exc=False)
    assert r.status_code == 409
    assert neutron_error(r) == {
        "type": "SecurityGroupRuleExists",
        "message": f"Security group rule already exists. Rule id is {rule.id}.",
        "detail": ""}
    assert sg.id not in [g.id for g in bob.network.security_groups()]
    alice.network.delete_security_group_rule(rule)
    alice.network.delete_security_group(sg)
    r = alice.network.get(f"/security-groups/{sg.id}", raise_exc=False)
    assert r.status_code == 404
    assert neutron_error(r)["message"] == f"Security group {sg.id} does not exist"


def test_routers_and_floating_ips(alice, admin):
    public = alice.network.find_network("public")
    net = alice.network.create_network(name="net-r")
    sub = alice.network.create_subnet(network_id=net.id, ip_version=4, cidr="192.168.60.0/24")
    router = alice.network.create_router(name="r1",
                                         external_gateway_info={"network_id": public.id})
    assert router.external_gateway_info["network_id"] == public.id
    assert router.external_gateway_info["external_fixed_ips"]
    iface = alice.network.add_interface_to_router(router, subnet_id=sub.id)
    assert iface["subnet_id"] == sub.id
    gw_port = alice.network.get_port(iface["port_id"])
    assert gw_port.device_owner == "network:router_interface"
    assert gw_port.fixed_ips[0]["ip_address"] == "192.168.60.1"
    port = alice.network.create_port(network_id=net.id)
    fip = alice.network.create_ip(floating_network_id=public.id)
    assert fip.status == "DOWN" and fip.port_id is None
    fip = alice.network.update_ip(fip, port_id=port.id)
    assert fip.status == "ACTIVE" and fip.port_id == port.id
    assert fip.fixed_ip_address == port.fixed_ips[0]["ip_address"]
    assert fip.router_id == router.id
    fip = alice.network.update_ip(fip, port_id=None)
    assert fip.status == "DOWN" and fip.fixed_ip_address is None
    r = alice.network.delete(f"/routers/{router.id}", raise_exc=False)
    assert r.status_code == 409 and neutron_error(r)["type"] == "RouterInUse"
    alice.network.remove_interface_from_router(router, subnet_id=sub.id)
    alice.network.delete_router(router)
    alice.network.delete_ip(fip)
    alice.network.delete_port(port)
    alice.network.delete_subnet(sub)
    alice.network.delete_network(net)


def test_nova_ports_on_neutron_networks(alice):
    """A server booted on a Neutron-made network gets a port that the
    networking API lists with the server as its device."""
    net = alice.network.create_network(name="net-nova")
    alice.network.create_subnet(network_id=net.id, ip_version=4, cidr="192.168.70.0/24")
    s = boot(alice, "on-neutron", networks=[{"uuid": net.id}])
    ports = list(alice.network.ports(device_id=s.id))
    assert len(ports) == 1 and ports[0].network_id == net.id
    assert ports[0].device_owner == "compute:nova"
    addr = alice.compute.get_server(s).addresses["net-nova"][0]["addr"]
    assert ports[0].fixed_ips[0]["ip_address"] == addr
    # Nova's validate_networks: a fixed IP some port has is refused before the server is made
    image = alice.image.find_image("lifeboat-guest")
    flavor = alice.compute.find_flavor("m1.nano")
    r = alice.compute.post("/servers", json={"server": {
        "name": "same-ip", "imageRef": image.id, "flavorRef": flavor.id,
        "networks": [{"uuid": net.id, "fixed_ip": addr}]}})
    assert r.status_code == 400, r.text
    assert r.json() == {"badRequest": {"code": 400, "message": (
        f"Fixed IP address {addr} is already in use on instance {s.id}.")}}
    # a port made with the networking API is taken by a server create
    p = alice.network.create_port(network_id=net.id)
    s2 = boot(alice, "with-port", networks=[{"port": p.id}])
    assert alice.network.get_port(p).device_id == s2.id
    alice.compute.delete_server(s)
    alice.compute.delete_server(s2)
    alice.compute.wait_for_delete(s)
    alice.compute.wait_for_delete(s2)
    # the brought port outlives the server
    assert alice.network.get_port(p).device_id == ""
    alice.network.delete_port(p)
    for sub in alice.network.subnets(network_id=net.id):
        alice.network.delete_subnet(sub)
    alice.network.delete_network(net)


def test_network_cli(lb, tmp_path):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(lb.cli("openstack-config").stdout)
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CLOUD": "lifeboat"}

    def osc(*args):
        r = subprocess.run([OPENSTACK, *args], capture_output=True, text=True, env=env,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else None

    def osc_fails(*args):
        r = subprocess.run([OPENSTACK, *args], capture_output=True, text=True, env=env,
                           timeout=120)
        assert r.returncode != 0, r.stdout
        return r.stderr

    n = osc("network", "create", "cli-net", "-f", "json")
    assert n["name"] == "cli-net" and n["status"] == "ACTIVE"
    s = osc("subnet", "create", "cli-sub", "--network", "cli-net", "--subnet-range",
            "192.168.80.0/24", "--dns-nameserver", "192.168.80.2", "-f", "json")
    assert s["cidr"] == "192.168.80.0/24"
    p = osc("port", "create", "cli-port", "--network", "cli-net", "--fixed-ip",
            "ip-address=192.168.80.33", "-f", "json")
    assert "192.168.80.33" in json.dumps(p["fixed_ips"])
    # Neutron's errors as the CLI shows them: the SDK's exception, the status and the
    # NeutronError message (neutron-lib's IpAddressAlreadyAllocated, NetworkInUse,
    # SubnetInUse, NetworkNotFound).
    err = osc_fails("port", "create", "dup", "--network", "cli-net", "--fixed-ip",
                    "ip-address=192.168.80.33")
    assert ("ConflictException: 409: Client Error for url: " in err
            and f"IP address 192.168.80.33 already allocated in subnet {s['id']}" in err), err
    err = osc_fails("network", "delete", "cli-net")
    assert (f"Unable to complete operation on network {n['id']}. There are one or more ports "
            "still in use on the network." in err and "ConflictException: 409" in err), err
    assert "1 of 1 networks failed to delete." in err, err
    err = osc_fails("subnet", "delete", "cli-sub")
    assert (f"Unable to complete operation on subnet {s['id']}: One or more ports have an IP "
            "allocation from this subnet." in err), err
    missing = "5a0b5d4b-3a41-4c3e-9c5e-1b2b3c4d5e6f"
    err = osc_fails("port", "create", "nowhere", "--network", missing)
    assert "No Network found for 5a0b5d4b-3a41-4c3e-9c5e-1b2b3c4d5e6f" in err, err
    err = osc_fails("port", "show", missing)
    assert f"No Port found for {missing}" in err, err
    assert any(r["Name"] == "cli-port" for r in osc("port", "list", "-f", "json"))
    assert any(r["Name"] == "cli-net" for r in osc("network", "list", "-f", "json"))
    assert any(r["Name"] == "cli-sub" for r in osc("subnet", "list", "-f", "json"))
    sg = osc("security", "group", "create", "cli-sg", "-f", "json")
    osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
        "cli-sg", "-f", "json")
    rules = osc("security", "group", "rule", "list", "cli-sg", "-f", "json")
    assert any(r["Port Range"] == "22:22" for r in rules)
    osc("router", "create", "cli-router", "-f", "json")
    osc("router", "set", "cli-router", "--external-gateway", "public")
    osc("router", "add", "subnet", "cli-router", "cli-sub")
    fip = osc("floating", "ip", "create", "public", "-f", "json")
    osc("floating", "ip", "set", "--port", "cli-port", fip["floating_ip_address"])
    shown = osc("floating", "ip", "show", fip["id"], "-f", "json")
    assert shown["port_id"] == p["id"] and shown["status"] == "ACTIVE"
    osc("floating", "ip", "delete", fip["id"])
    osc("router", "remove", "subnet", "cli-router", "cli-sub")
    osc("router", "delete", "cli-router")
    osc("security", "group", "delete", sg["id"])
    osc("port", "delete", "cli-port")
    osc("subnet", "delete", "cli-sub")
    osc("network", "delete", "cli-net")


def test_server_interfaces(alice, bob):
    """Nova's os-interface through the SDK's compute proxy: attach on a network (a port Nova
    makes) and by a port made first, list/show with Nova's attachment view, Nova's errors
    (port in use, both a network and a port, a port not attached, another project's server),
    detach deleting Nova's port and only unbinding the brought one, and the instance
    actions."""
    net = alice.network.create_network(name="net-if")
    sub = alice.network.create_subnet(network_id=net.id, ip_version=4, cidr="192.168.81.0/24")
    # Nova 2.37: with two usable networks (the shared `private` and net-if) "auto" is
    # ambiguous; "none" boots without a network.
    image = alice.image.find_image("lifeboat-guest")
    flavor = alice.compute.find_flavor("m1.nano")
    body = {"server": {"name": "auto", "imageRef": image.id, "flavorRef": flavor.id,
                       "networks": "auto"}}
    r = alice.compute.post("/servers", json=body, microversion="2.37")
    assert r.status_code == 409, r.text
    assert r.json()["conflictingRequest"]["message"] == (
        "Multiple possible networks found, use a Network ID to be more specific.")
    none = boot(alice, "no-net", networks="none")
    assert alice.compute.get_server(none).addresses == {}
    assert list(alice.compute.server_interfaces(none)) == []
    alice.compute.delete_server(none)
    private = alice.network.find_network("private")
    s = boot(alice, "with-ifaces", networks=[{"uuid": private.id}])
    made = alice.compute.create_server_interface(s, net_id=net.id)
    assert made.net_id == net.id and made.port_state == "ACTIVE"
    assert made.fixed_ips[0]["subnet_id"] == sub.id
    assert made.fixed_ips[0]["ip_address"].startswith("192.168.81.")
    port = alice.network.get_port(made.port_id)
    assert port.device_id == s.id and port.device_owner == "compute:nova"
    assert port.mac_address == made.mac_addr
    p = alice.network.create_port(network_id=net.id, fixed_ips=[{"ip_address": "192.168.81.77"}])
    brought = alice.compute.create_server_interface(s, port_id=p.id)
    assert brought.port_id == p.id and brought.fixed_ips[0]["ip_address"] == "192.168.81.77"
    ifaces = {i.port_id: i for i in alice.compute.server_interfaces(s)}
    assert len(ifaces) == 3 and {made.port_id, p.id} <= set(ifaces)
    shown = alice.compute.get_server_interface(p.id, server=s)
    assert shown.mac_addr == p.mac_address and shown.net_id == net.id
    addrs = [a["addr"] for a in alice.compute.get_server(s).addresses["net-if"]]
    assert sorted(addrs) == sorted([made.fixed_ips[0]["ip_address"], "192.168.81.77"])

    url = f"/servers/{s.id}/os-interface"
    r = alice.compute.post(url, json={"interfaceAttachment": {"port_id": p.id}})
    assert r.status_code == 409, r.text
    assert r.json() == {"conflictingRequest": {"code": 409,
                                               "message": f"Port {p.id} is still in use."}}
    r = alice.compute.post(url, json={"interfaceAttachment": {"port_id": p.id, "net_id": net.id}})
    assert r.status_code == 400, r.text
    assert r.json()["badRequest"]["message"] == "Must not input both network_id and port_id"
    r = alice.compute.post(url, json={"interfaceAttachment": {
        "net_id": net.id, "fixed_ips": [{"ip_address": "10.99.99.9"}]}})
    assert r.status_code == 400, r.text
    assert r.json() == {"badRequest": {"code": 400, "message": (
        f"Invalid input received: Fixed IP 10.99.99.9 is not a valid ip address for network "
        f"{net.id}.")}}
    r = alice.compute.post(url, json={"interfaceAttachment": {"net_id": "not-a-uuid"}})
    assert r.status_code == 400, r.text
    r = bob.compute.post(url, json={"interfaceAttachment": {"net_id": net.id}})
    assert r.status_code == 404, r.text
    with pytest.raises(exceptions.NotFoundException):
        bob.compute.get_server_interface(p.id, server=s.id)

    alice.compute.delete_server_interface(made.port_id, server=s)
    alice.compute.delete_server_interface(p.id, server=s)
    with pytest.raises(exceptions.NotFoundException):
        alice.network.get_port(made.port_id)
    assert alice.network.get_port(p.id).device_id == ""
    assert len(list(alice.compute.server_interfaces(s))) == 1
    r = alice.compute.delete(f"{url}/{p.id}")
    assert r.status_code == 404, r.text
    actions = [a.action for a in alice.compute.server_actions(s)]
    assert actions.count("attach_interface") == 2 and actions.count("detach_interface") == 2
    alice.compute.delete_server(s)
    alice.compute.wait_for_delete(s)
    alice.network.delete_port(p)
    alice.network.delete_subnet(sub)
    alice.network.delete_network(net)
