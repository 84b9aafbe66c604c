"""Soft delete (restore, forceDelete), migrate, live migrate and evacuate on a
two-host Lifeboat (a second fake host behind `lifeboat agent`)."""

import time

import pytest
from openstack import exceptions

from conftest import Lifeboat, boot, settle


@pytest.fixture(scope="module")
def lb2():
    inst = Lifeboat(extra_args=["--reclaim-instance-interval", "3600",
                                "--shelved-offload-time", "-1"], hosts=["host2"])
    yield inst
    inst.stop()


@pytest.fixture(scope="module")
def adm(lb2):
    return lb2.connect("admin")


def test_soft_delete_restore_force_delete(adm):
    s = boot(adm, "soft")
    adm.compute.delete_server(s)
    settle(adm, s, "SOFT_DELETED")
    adm.compute.restore_server(s)
    settle(adm, s, "ACTIVE")
    adm.compute.delete_server(s)
    settle(adm, s, "SOFT_DELETED")
    with pytest.raises(exceptions.ConflictException):
        adm.compute.reboot_server(s, "HARD")
    adm.compute.delete_server(s, force=True)
    adm.compute.wait_for_delete(s, interval=0.2, wait=60)


def test_shelve_then_offload(adm):
    s = boot(adm, "shelf")
    adm.compute.shelve_server(s)
    settle(adm, s, "SHELVED")
    adm.compute.shelve_offload_server(s)
    settle(adm, s, "SHELVED_OFFLOADED")
    adm.compute.unshelve_server(s)
    settle(adm, s, "ACTIVE")
    adm.compute.delete_server(s, force=True)


def test_migrate_and_live_migrate(adm):
    s = boot(adm, "mover")
    src = adm.compute.get_server(s).compute_host
    adm.compute.migrate_server(s)
    got = settle(adm, s, "VERIFY_RESIZE")
    assert got.compute_host != src
    adm.compute.confirm_server_resize(s)
    got = settle(adm, s, "ACTIVE")
    src = got.compute_host
    adm.compute.live_migrate_server(s, host=None, block_migration="auto")
    deadline = time.time() + 60
    while time.time() < deadline:
        got = adm.compute.get_server(s)
        if got.task_state is None:
            break
        time.sleep(0.1)
    assert got.status == "ACTIVE" and got.compute_host != src
    adm.compute.delete_server(s, force=True)


def test_evacuate(lb2, adm):
    s = boot(adm, "evac", availability_zone="nova:host2")
    assert adm.compute.get_server(s).compute_host == "host2"
    # The source host is up: Nova refuses.
    with pytest.raises(exceptions.BadRequestException) as e:
        adm.compute.evacuate_server(s)
    assert "Compute service of host2 is still in use." in str(e.value)
    lb2.agents["host2"].terminate()
    lb2.agents["host2"].wait(10)
    deadline = time.time() + 30
    while time.time() < deadline:
        if adm.compute.get_server(s).host_status == "DOWN":
            break
        time.sleep(0.2)
    else:
        raise AssertionError("host2 never reported DOWN")
    adm.compute.evacuate_server(s)
    got = settle(adm, s, "ACTIVE")
    assert got.compute_host == "host1"
