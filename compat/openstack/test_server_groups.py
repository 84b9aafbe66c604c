"""Server groups through openstacksdk on a two-host Lifeboat (a second fake
host behind `lifeboat agent`): the four policies, membership, the group hint
on create, Nova's quota 403s and project isolation."""

import pytest
from openstack import exceptions

from conftest import Lifeboat, boot


@pytest.fixture(scope="module")
def lbg():
    inst = Lifeboat(hosts=["host2"])
    inst.cli("project", "create", "sg-a")
    inst.cli("project", "create", "sg-b")
    inst.add_user("sga", "sg-a", "member")
    inst.add_user("sgb", "sg-b", "member")
    inst.add_user("sgr", "sg-a", "reader")
    yield inst
    inst.stop()


def test_policies_place_and_members_are_listed(lbg):
    adm = lbg.connect("admin")
    anti = adm.compute.create_server_group(name="anti", policy="anti-affinity")
    assert anti.policy == "anti-affinity" and anti.rules == {}
    a = [boot(adm, f"anti-{i}", scheduler_hints={"group": anti.id}) for i in range(2)]
    assert a[0].compute_host != a[1].compute_host
    got = adm.compute.get_server_group(anti.id)
    assert sorted(got.member_ids) == sorted(s.id for s in a)
    assert anti.id in [g.id for g in adm.compute.server_groups()]

    aff = adm.compute.create_server_group(name="aff", policy="affinity")
    f = [boot(adm, f"aff-{i}", scheduler_hints={"group": aff.id}) for i in range(3)]
    assert len({s.compute_host for s in f}) == 1

    two = adm.compute.create_server_group(
        name="two", policy="anti-affinity", rules={"max_server_per_host": 2})
    assert two.rules == {"max_server_per_host": 2}

    for s in a + f:
        adm.compute.delete_server(s, force=True)
    for s in a + f:
        adm.compute.wait_for_delete(s, interval=0.2, wait=60)
    assert adm.compute.get_server_group(anti.id).member_ids == []
    for g in (anti, aff, two):
        adm.compute.delete_server_group(g)
    with pytest.raises(exceptions.NotFoundException):
        adm.compute.get_server_group(anti.id)


def test_rules_need_anti_affinity(lbg):
    adm = lbg.connect("admin")
    with pytest.raises(exceptions.BadRequestException) as e:
        adm.compute.create_server_group(
            name="x", policy="affinity", rules={"max_server_per_host": 2})
    assert "Only anti-affinity policy supports rules." in str(e.value)


def test_quotas_and_isolation(lbg):
    adm = lbg.connect("admin")
    sga = lbg.connect("sga")
    sgb = lbg.connect("sgb")
    sgr = lbg.connect("sgr")
    adm.compute.update_quota_set(sga.current_project_id, server_groups=1,
                                 server_group_members=1)
    g = sga.compute.create_server_group(name="mine", policy="soft-anti-affinity")
    with pytest.raises(exceptions.ForbiddenException) as e:
        sga.compute.create_server_group(name="more", policy="affinity")
    assert "Quota exceeded, too many server groups." in str(e.value)
    boot(sga, "m1", scheduler_hints={"group": g.id})
    image = sga.image.find_image("lifeboat-guest")
    flavor = sga.compute.find_flavor("m1.nano")
    with pytest.raises(exceptions.ForbiddenException) as e:
        sga.compute.create_server(name="m2", image_id=image.id, flavor_id=flavor.id,
                                  networks="auto", scheduler_hints={"group": g.id})
    assert "Quota exceeded, too many servers in group" in str(e.value)
    # a reader sees it but cannot delete it
    assert [x.id for x in sgr.compute.server_groups()] == [g.id]
    with pytest.raises(exceptions.ForbiddenException):
        sgr.compute.delete_server_group(g)
    # another project neither sees nor uses it
    assert list(sgb.compute.server_groups(all_projects=True)) == []
    # as Nova: another project's group is not found (InstanceGroup.get_by_uuid
    # is limited to the caller's project unless admin)
    with pytest.raises(exceptions.NotFoundException):
        sgb.compute.get_server_group(g.id)
    image_b = sgb.image.find_image("lifeboat-guest")
    with pytest.raises(exceptions.BadRequestException) as e:
        sgb.compute.create_server(name="sneak", image_id=image_b.id, flavor_id=flavor.id,
                                  networks="auto", scheduler_hints={"group": g.id})
    assert f"Instance group {g.id} could not be found." in str(e.value)
