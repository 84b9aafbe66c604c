"""Seed 003: every Server attribute and action through the SDK's own methods."""

import base64
import time

import pytest
from openstack import exceptions

from conftest import IMAGE, boot, settle

PUBKEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvM3Qh1cOWz9gYq7o6kXJ2Yh0kYqFQ1q7o9q4y8bT1o "
          "compat@lifeboat")


def test_create_and_every_attribute(lb, admin, alice):
    alice.compute.create_keypair(name="k1", public_key=PUBKEY)
    user_data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
    image = alice.image.find_image(IMAGE)
    created = alice.compute.create_server(
        name="attrs", image_id=image.id, flavor_id="1", networks="auto",
        metadata={"role": "web"}, key_name="k1", description="first server",
        user_data=user_data, admin_password="s3cret-Pass", config_drive=True,
        availability_zone="nova", tags=["blue"],
    )
    assert created.admin_password == "s3cret-Pass"
    s = settle(alice, created, "ACTIVE")
    assert s.name == "attrs"
    assert s.description == "first server"
    assert s.metadata == {"role": "web"}
    assert s.key_name == "k1"
    assert s.tags == ["blue"]
    assert s.status == "ACTIVE" and s.vm_state == "active" and s.task_state is None
    assert s.power_state == 1
    assert s.progress in (0, 100)
    assert s.availability_zone == "nova"
    assert s.pinned_availability_zone == "nova"
    assert s.has_config_drive in (True, "True")
    assert s.disk_config == "MANUAL"
    assert s.image.id == image.id
    assert s.flavor.original_name == "m1.nano" and s.flavor.vcpus == 1 and s.flavor.ram == 128
    assert s.addresses["private"][0]["addr"].startswith("10.")
    assert s.addresses["private"][0]["OS-EXT-IPS:type"] == "fixed"
    assert s.attached_volumes == []
    assert s.security_groups == [{"name": "default"}]
    assert s.server_groups == []
    assert s.scheduler_hints == {}
    assert s.trusted_image_certificates is None
    assert s.is_locked is False and s.locked_reason is None
    assert s.launched_at and s.created_at and s.updated_at
    assert s.terminated_at is None
    assert s.project_id == alice.current_project_id
    assert s.user_id == alice.current_user_id
    assert len(s.host_id) == 56
    assert s.hostname == "attrs"  # 2.90: visible to the owner
    assert s.fault is None
    # Admin-only attributes.
    a = admin.compute.get_server(s.id)
    assert a.compute_host == "host1"
    assert a.hypervisor_hostname
    assert a.instance_name.startswith("instance-")
    assert a.reservation_id.startswith("r-")
    assert a.launch_index == 0
    assert a.root_device_name == "/dev/vda"
    assert a.kernel_id is None and a.ramdisk_id is None
    assert a.user_data == user_data
    assert a.host_status == "UP"
    # ... hidden from the owner.
    assert s.compute_host is None and s.instance_name is None
    # Update.
    u = alice.compute.update_server(s, name="attrs2", description="renamed")
    assert u.name == "attrs2" and u.description == "renamed"
    # Metadata.
    alice.compute.set_server_metadata(s, env="prod")
    assert alice.compute.get_server_metadata(s).metadata == {"role": "web", "env": "prod"}
    alice.compute.delete_server_metadata(s, ["role"])
    assert alice.compute.get_server_metadata(s).metadata == {"env": "prod"}
    # Tags.
    alice.compute.get_server(s).add_tag(alice.compute, "green")
    assert sorted(alice.compute.get_server(s).tags) == ["blue", "green"]
    # Topology, security groups, instance actions.
    # fetch_topology sends no microversion of its own (Nova needs 2.78): pin it.
    pinned = lb.connect("alice", compute_api_version="2.78")
    topo = pinned.compute.get_server(s).fetch_topology(pinned.compute)
    assert topo == {"nodes": [], "pagesize_kb": None}
    sg = alice.compute.fetch_server_security_groups(s)
    assert [g["name"] for g in sg.security_groups] == ["default"]
    actions = list(alice.compute.server_actions(s))
    assert actions[-1].action == "create"
    detail = alice.compute.get_server_action(actions[-1].request_id, s)
    assert detail.events
    alice.compute.delete_server(s)
    alice.compute.wait_for_delete(s, interval=0.2, wait=60)


def test_power_actions(alice):
    s = boot(alice, "power")
    c = alice.compute
    c.reboot_server(s, "SOFT")
    settle(alice, s, "ACTIVE")
    c.reboot_server(s, "HARD")
    settle(alice, s, "ACTIVE")
    c.stop_server(s)
    assert settle(alice, s, "SHUTOFF").power_state == 4
    c.start_server(s)
    settle(alice, s, "ACTIVE")
    c.pause_server(s)
    assert settle(alice, s, "PAUSED").power_state == 3
    c.unpause_server(s)
    settle(alice, s, "ACTIVE")
    c.suspend_server(s)
    settle(alice, s, "SUSPENDED")
    c.resume_server(s)
    settle(alice, s, "ACTIVE")
    c.rescue_server(s, admin_pass="rescue-pass")
    settle(alice, s, "RESCUE")
    c.unrescue_server(s)
    settle(alice, s, "ACTIVE")
    c.trigger_server_crash_dump(s)
    out = c.get_server_console_output(s, length=5)
    assert "output" in out
    c.change_server_password(s, "n3w-Passw0rd")
    settle(alice, s, "ACTIVE")
    c.delete_server(s)
    c.wait_for_delete(s, interval=0.2, wait=60)


def test_resize_rebuild(alice):
    s = boot(alice, "sizes")
    c = alice.compute
    c.resize_server(s, "2")
    settle(alice, s, "VERIFY_RESIZE")
    c.revert_server_resize(s)
    assert settle(alice, s, "ACTIVE").flavor.original_name == "m1.nano"
    c.resize_server(s, "2")
    settle(alice, s, "VERIFY_RESIZE")
    c.confirm_server_resize(s)
    assert settle(alice, s, "ACTIVE").flavor.original_name == "m1.micro"
    image = alice.image.find_image(IMAGE)
    r = c.rebuild_server(s, image=image.id, name="rebuilt", admin_password="r3build-Pass",
                         metadata={"rebuilt": "yes"})
    assert r.name == "rebuilt"
    s2 = settle(alice, s, "ACTIVE")
    assert s2.metadata == {"rebuilt": "yes"}
    c.delete_server(s)


def test_images_and_backups(alice):
    s = boot(alice, "snap")
    c = alice.compute
    img = c.create_server_image(s, "snap-1", metadata={"purpose": "test"}, wait=True, timeout=60)
    assert img.name == "snap-1" and img.status == "active"
    got = alice.image.get_image(img.id)
    assert got.properties.get("image_type") == "snapshot" or got["image_type"] == "snapshot"
    settle(alice, s, "ACTIVE")
    for i in range(3):
        c.backup_server(s, f"bk-{i}", "daily", 2)
        settle(alice, s, "ACTIVE")
        time.sleep(0.05)
    names = sorted(i.name for i in alice.image.images() if i.name.startswith("bk-"))
    assert names == ["bk-1", "bk-2"], names  # rotation keeps the newest 2
    alice.image.delete_image(img.id)
    with pytest.raises(exceptions.NotFoundException):
        alice.image.get_image(img.id)
    c.delete_server(s)


def test_shelve(admin, alice):
    s = boot(alice, "shelf")
    c = alice.compute
    c.shelve_server(s)
    settle(alice, s, "SHELVED_OFFLOADED")  # shelved_offload_time = 0
    c.unshelve_server(s)
    settle(alice, s, "ACTIVE")
    c.delete_server(s)


def test_shelve_offload_wrong_state(lb, admin):
    # shelveOffload needs a SHELVED (not offloaded) server; with the default
    # shelved_offload_time 0 shelve offloads at once, so this checks the
    # wrong-state conflict instead.
    s = boot(admin, "shelf2")
    admin.compute.shelve_server(s)
    settle(admin, s, "SHELVED_OFFLOADED")
    with pytest.raises(exceptions.ConflictException) as e:
        admin.compute.shelve_offload_server(s)
    assert "Cannot 'shelveOffload' instance" in str(e.value)
    admin.compute.delete_server(s)


def test_security_groups_and_reset_state(admin, alice):
    s = boot(alice, "sg")
    c = alice.compute
    c.add_security_group_to_server(s, {"name": "web"})
    names = [g["name"] for g in c.fetch_server_security_groups(s).security_groups]
    assert names == ["default", "web"]
    c.remove_security_group_from_server(s, {"name": "web"})
    assert [g["name"] for g in c.get_server(s).security_groups] == ["default"]
    with pytest.raises(exceptions.ForbiddenException):
        c.reset_server_state(s, "error")
    admin.compute.reset_server_state(s, "error")
    assert c.get_server(s).status == "ERROR"
    admin.compute.reset_server_state(s, "active")
    assert c.get_server(s).status == "ACTIVE"
    c.delete_server(s)


def test_fixed_and_floating_ips(lb, alice):
    # add/removeFixedIp and add/removeFloatingIp exist up to 2.43 only.
    old = lb.connect("alice", compute_api_version="2.43")
    s = boot(alice, "ips")
    c = old.compute
    nets = lb.native("GET", "/api/v1/networks")
    private = next(n for n in nets if n["name"] == "private")
    c.add_fixed_ip_to_server(s, private["id"])
    addrs = [a["addr"] for a in alice.compute.get_server(s).addresses["private"]]
    assert len(addrs) == 2
    c.remove_fixed_ip_from_server(s, addrs[1])
    assert len(alice.compute.get_server(s).addresses["private"]) == 1
    # An address the server does not have: Nova's FixedIpNotFoundForSpecificInstance.
    r = c.post(f"/servers/{s.id}/action", json={"removeFixedIp": {"address": addrs[1]}},
               microversion="2.43")
    assert r.status_code == 400, r.text
    assert r.json()["badRequest"]["message"] == (
        f"Instance {s.id} doesn't have fixed IP '{addrs[1]}'.")
    # A floating IP allocated to the project (Neutron's job: native API).
    tok = lb.native("POST", "/api/v1/auth/tokens", {
        "username": "alice", "password": lb.clouds["alice"]["auth"]["password"],
        "project": "proj-a"}, token="")["token"]
    fip = lb.native("POST", "/api/v1/floating-ips", {}, token=tok)
    c.add_floating_ip_to_server(s, fip["address"])
    types = [a["OS-EXT-IPS:type"] for a in alice.compute.get_server(s).addresses["private"]]
    assert types == ["fixed", "floating"]
    c.remove_floating_ip_from_server(s, fip["address"])
    assert len(alice.compute.get_server(s).addresses["private"]) == 1
    # At the latest microversion the action is gone (404), as in Nova.
    with pytest.raises(exceptions.NotFoundException):
        alice.compute.add_floating_ip_to_server(s, fip["address"])
    alice.compute.delete_server(s)


def test_remote_console(lb, alice):
    s = boot(alice, "console")
    # Lifeboat serves serial consoles (a websocket proxy); graphical console
    # types get Nova's 400 for an unavailable console type.
    con = alice.compute.create_console(s, "serial")
    assert con["type"] == "serial" and con["protocol"] == "serial"
    assert con["url"].startswith(lb.url.replace("http://", "ws://") + "/console/serial?token=")
    # Server.get_console_url is the legacy action, which Nova serves up to 2.5.
    old = lb.connect("alice", compute_api_version="2.5")
    got = old.compute.get_server(s).get_console_url(old.compute, "serial")
    assert got["type"] == "serial" and got["url"].startswith("ws://")
    with pytest.raises(exceptions.BadRequestException):
        alice.compute.create_console(s, "novnc")
    alice.compute.delete_server(s)


def test_conflicts_and_locks(admin, alice):
    s = boot(alice, "locky")
    c = alice.compute
    with pytest.raises(exceptions.ConflictException) as e:
        c.unpause_server(s)
    assert f"Cannot 'unpause' instance {s.id} while it is in vm_state active" in str(e.value)
    with pytest.raises(exceptions.ConflictException):
        c.confirm_server_resize(s)
    c.lock_server(s, locked_reason="maintenance")
    got = c.get_server(s)
    assert got.is_locked is True and got.locked_reason == "maintenance"
    with pytest.raises(exceptions.ConflictException) as e:
        c.reboot_server(s, "HARD")
    assert f"Instance {s.id} is locked" in str(e.value)
    with pytest.raises(exceptions.ConflictException):
        c.delete_server(s)
    # Admins bypass the lock.
    admin.compute.stop_server(s)
    settle(admin, s, "SHUTOFF")
    admin.compute.start_server(s)
    settle(admin, s, "ACTIVE")
    # An admin's lock cannot be removed by the owner.
    c.unlock_server(s)
    admin.compute.lock_server(s)
    with pytest.raises(exceptions.ForbiddenException):
        c.unlock_server(s)
    admin.compute.unlock_server(s)
    assert c.get_server(s).is_locked is False
    c.delete_server(s)


def test_reader_cannot_mutate(alice, rita):
    s = boot(alice, "readonly")
    r = rita.compute
    assert r.get_server(s).name == "readonly"
    assert s.id in [x.id for x in r.servers()]
    for call in (lambda: r.reboot_server(s, "SOFT"), lambda: r.stop_server(s),
                 lambda: r.set_server_metadata(s, k="v"), lambda: r.delete_server(s),
                 lambda: r.update_server(s, name="x"), lambda: r.lock_server(s)):
        with pytest.raises(exceptions.ForbiddenException):
            call()
    with pytest.raises(exceptions.ForbiddenException):
        image = rita.image.find_image(IMAGE)
        r.create_server(name="nope", image_id=image.id, flavor_id="1", networks="auto")
    alice.compute.delete_server(s)


def test_project_isolation(alice, bob):
    s = boot(alice, "private-a")
    assert s.id not in [x.id for x in bob.compute.servers()]
    with pytest.raises(exceptions.NotFoundException):
        bob.compute.get_server(s.id)
    with pytest.raises(exceptions.NotFoundException):
        bob.compute.reboot_server(s.id, "SOFT")
    assert bob.compute.find_server("private-a") is None
    with pytest.raises(exceptions.ForbiddenException):
        list(bob.compute.servers(all_projects=True))
    alice.compute.delete_server(s)


def test_pagination_250(lb):
    # Nova's default quota is 10 instances: an admin raises it first.
    lb.connect("admin").set_compute_quotas("proj-pages", instances=250, cores=250, ram=-1)
    paula = lb.connect("paula")
    image = paula.image.find_image(IMAGE)
    paula.compute.create_server(name="page", image_id=image.id, flavor_id="1",
                                networks="none", min_count=250, max_count=250)
    seen = [s.id for s in paula.compute.servers(details=True, limit=40)]
    assert len(seen) == 250 and len(set(seen)) == 250
    brief = [s.id for s in paula.compute.servers(details=False, limit=100)]
    assert brief == seen
    names = {s.name for s in paula.compute.servers(details=False)}
    assert "page-1" in names and "page-250" in names


def test_keypair_generation_below_2_92(lb, alice):
    old = lb.connect("alice", compute_api_version="2.91")
    kp = old.compute.create_keypair(name="generated")
    assert kp.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert kp.public_key.startswith("ssh-ed25519 ")
    assert len(kp.fingerprint.split(":")) == 16
    listed = [k.name for k in alice.compute.keypairs()]
    assert "generated" in listed
    assert alice.compute.get_keypair("generated").private_key is None
    # The SDK's Keypair resource caps itself at 2.10, so generation works there too;
    # from 2.92 on Nova (and Lifeboat) require a public key.
    r = alice.compute.post("/os-keypairs", json={"keypair": {"name": "generated-2"}},
                           microversion="2.92")
    assert r.status_code == 400, r.text
    assert "'public_key' is a required property" in r.json()["badRequest"]["message"]
    alice.compute.delete_keypair("generated")


def test_quotas_through_the_sdk(lb, admin, alice):
    q = alice.get_compute_quotas("proj-a")
    assert (q.instances, q.cores, q.ram, q.key_pairs) == (10, 20, 51200, 100)
    admin.set_compute_quotas("proj-a", instances=3)
    assert admin.get_compute_quotas("proj-a").instances == 3
    limits = alice.compute.get_limits().absolute
    assert limits.instances == 3
    with pytest.raises(exceptions.ForbiddenException) as e:
        alice.compute.create_server(name="too-many", image_id=alice.image.find_image(IMAGE).id,
                                    flavor_id="1", networks="none", min_count=4)
    assert "Quota exceeded for instances: Requested 4, but already used" in str(e.value)
    admin.delete_compute_quotas("proj-a")
    assert alice.get_compute_quotas("proj-a").instances == 10


def test_reader_cannot_read_console_or_delete_images(alice, rita):
    s = boot(alice, "console-ro")
    with pytest.raises(exceptions.ForbiddenException):
        rita.compute.get_server_console_output(s, length=5)
    assert "output" in alice.compute.get_server_console_output(s, length=5)
    image_id = alice.compute.create_server_image(s, name="ro-snap", wait=True, timeout=60)
    image_id = getattr(image_id, "id", image_id)
    with pytest.raises(exceptions.ForbiddenException):
        rita.image.delete_image(image_id)
    alice.image.delete_image(image_id)
    alice.compute.delete_server(s)
