"""Responses compared with Nova api-samples-style fixtures (fixtures/)."""

import json
import pathlib
import re

import pytest

from conftest import IMAGE, settle

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

PATTERNS = {
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "isotime": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z",
    "strtime": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}",
    "keystone_time": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z",
    "hostid": r"[0-9a-f]{56}",
    "hex32": r"[0-9a-f]{32}",
    "ip": r"\d+\.\d+\.\d+\.\d+",
    "mac": r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}",
    "instance_name": r"instance-[0-9a-f]{8}",
    "reservation_id": r"r-[0-9a-z]{8}",
    "request_id": r"req-[0-9a-f-]{36}",
    "password": r"[A-Za-z0-9]{8,}",
    "fingerprint": r"(?:[0-9a-f]{2}:){15}[0-9a-f]{2}",
    "text": r".+",
}


def matches(tpl, got, subs, path="$"):
    """Asserts `got` matches the template `tpl` exactly (keys, types, values)."""
    if isinstance(tpl, dict):
        assert isinstance(got, dict), f"{path}: expected object, got {got!r}"
        assert set(tpl) == set(got), (
            f"{path}: keys differ: missing {sorted(set(tpl) - set(got))}, "
            f"unexpected {sorted(set(got) - set(tpl))}")
        for k in tpl:
            matches(tpl[k], got[k], subs, f"{path}.{k}")
    elif isinstance(tpl, list):
        assert isinstance(got, list) and len(tpl) == len(got), f"{path}: {got!r}"
        for i, (t, g) in enumerate(zip(tpl, got)):
            matches(t, g, subs, f"{path}[{i}]")
    elif isinstance(tpl, str) and "%(" in tpl:
        if tpl == "%(int)s":
            assert isinstance(got, int) and not isinstance(got, bool), f"{path}: {got!r}"
            return
        assert isinstance(got, str), f"{path}: expected string, got {got!r}"
        rx = re.escape(tpl)
        for name, pat in {**PATTERNS, **subs}.items():
            rx = rx.replace(re.escape(f"%({name})s"), pat if name in PATTERNS else re.escape(pat))
        assert re.fullmatch(rx, got), f"{path}: {got!r} does not match {tpl!r}"
    else:
        assert type(tpl) is type(got) and tpl == got, f"{path}: expected {tpl!r}, got {got!r}"


def load(name):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def env(lb):
    lb.cli("project", "create", "proj-fix")
    lb.add_user("fiona", "proj-fix", "member")
    fiona = lb.connect("fiona")
    admin = lb.connect("admin")
    image = fiona.image.find_image(IMAGE)
    body = {"server": {
        "name": "new-server-test", "imageRef": image.id, "flavorRef": "1",
        "networks": "auto", "metadata": {"My Server Name": "Apache1"},
        "accessIPv4": "1.2.3.4", "accessIPv6": "80fe::", "OS-DCF:diskConfig": "AUTO",
        "availability_zone": "nova"},
        "os:scheduler_hints": {"same_host": ["48e6a9f6-30af-47e0-bc04-acaed113bb4e"]}}
    r = fiona.compute.post("/servers", json=body, microversion="2.37")
    assert r.status_code == 202
    created = r.json()
    sid = created["server"]["id"]
    settle(fiona, sid, "ACTIVE")
    subs = {
        "compute": f"{lb.url}/compute/v2.1",
        "bookmark": f"{lb.url}/compute",
        "identity": f"{lb.url}/identity/v3",
        "image": f"{lb.url}/image",
        "network": f"{lb.url}/network",
    }
    return {"fiona": fiona, "admin": admin, "sid": sid, "subs": subs, "created": created,
            "lb": lb}


def get(conn, url, mv, status=200):
    r = conn.compute.get(url, microversion=mv)
    assert r.status_code == status, r.text
    assert r.headers["OpenStack-API-Version"] == f"compute {mv}"
    assert r.headers["X-OpenStack-Nova-API-Version"] == mv
    assert "OpenStack-API-Version" in r.headers["Vary"]
    return r.json()


def test_create_response(env):
    matches(load("server-create-resp.json"), env["created"], env["subs"])


@pytest.mark.parametrize("fixture,mv,who", [
    ("server-get-resp-v2.1.json", "2.1", "admin"),
    ("server-get-resp-v2.47.json", "2.47", "admin"),
    ("server-get-resp-v2.100.json", "2.100", "fiona"),
    ("server-get-resp-v2.100-admin.json", "2.100", "admin"),
])
def test_server_show(env, fixture, mv, who):
    got = get(env[who], f"/servers/{env['sid']}", mv)
    matches(load(fixture), got, env["subs"])


def test_server_lists(env):
    got = get(env["fiona"], "/servers/detail?limit=1", "2.100")
    matches(load("servers-details-resp-v2.100.json"), got, env["subs"])
    got = get(env["fiona"], "/servers?limit=1", "2.1")
    matches(load("servers-list-resp.json"), got, env["subs"])


def test_update_response(env):
    r = env["fiona"].compute.put(f"/servers/{env['sid']}", microversion="2.19", json={
        "server": {"name": "updated-server-test", "description": "updated-server-description"}})
    assert r.status_code == 200
    matches(load("server-update-resp-v2.19.json"), r.json(), env["subs"])
    env["fiona"].compute.put(f"/servers/{env['sid']}", microversion="2.19", json={
        "server": {"name": "new-server-test", "description": None}})


def test_flavor_versions_limits_az(env):
    f = env["fiona"]
    matches(load("flavor-get-resp-v2.1.json"), get(f, "/flavors/1", "2.1"), env["subs"])
    matches(load("flavor-get-resp-v2.75.json"), get(f, "/flavors/1", "2.75"), env["subs"])
    matches(load("versions-v21-resp.json"), get(f, "/", "2.1"), env["subs"])
    matches(load("limits-get-resp-v2.57.json"), get(f, "/limits", "2.57"), env["subs"])
    matches(load("availability-zone-list-resp.json"), get(f, "/os-availability-zone", "2.1"),
            env["subs"])


def test_keypair(env):
    f = env["fiona"]
    f.compute.create_keypair(name="keypair-fixture", public_key=(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvM3Qh1cOWz9gYq7o6kXJ2Yh0kYqFQ1q7o9q4y8bT1o x"))
    got = get(f, "/os-keypairs/keypair-fixture", "2.2")
    tpl = load("keypairs-get-resp-v2.2.json")
    tpl["keypair"]["id"] = got["keypair"]["id"] if isinstance(got["keypair"]["id"], int) else 0
    matches(tpl, got, env["subs"])


def test_faults_and_instance_actions(env):
    f, sid = env["fiona"], env["sid"]
    f.compute.stop_server(sid)
    settle(f, sid, "SHUTOFF")
    r = f.compute.post(f"/servers/{sid}/action", json={"unpause": None}, microversion="2.1")
    assert r.status_code == 409
    matches(load("fault-conflict.json"), r.json(), env["subs"])
    got = get(f, f"/servers/{sid}/os-instance-actions", "2.58")
    matches(load("instance-actions-list-resp-v2.58.json"), got, env["subs"])
    f.compute.start_server(sid)
    settle(f, sid, "ACTIVE")
    f.compute.post(f"/servers/{sid}/action", json={"lock": None}, microversion="2.1")
    r = f.compute.post(f"/servers/{sid}/action", json={"os-stop": None}, microversion="2.1")
    assert r.status_code == 409
    matches(load("fault-locked.json"), r.json(), env["subs"])
    f.compute.post(f"/servers/{sid}/action", json={"unlock": None}, microversion="2.1")
    r = f.compute.get("/servers/6f1c1f1e-0000-4000-8000-000000000000", microversion="2.1")
    assert r.status_code == 404
    matches(load("fault-not-found.json"), r.json(), env["subs"])
    r = f.compute.get("/servers", microversion="2.101")
    assert r.status_code == 406
    matches(load("fault-version.json"), r.json(), env["subs"])


def test_keystone_token(env):
    import urllib.request
    lb = env["lb"]
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": lb.creds["username"], "domain": {"name": "Default"},
        "password": lb.creds["password"]}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
    req = urllib.request.Request(f"{lb.url}/identity/v3/auth/tokens", method="POST",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 201
        assert r.headers["X-Subject-Token"]
        matches(load("keystone-token-resp.json"), json.loads(r.read()), env["subs"])


def test_matcher_is_strict():
    matches({"a": "%(uuid)s", "b": None}, {"a": "6f1c1f1e-0000-4000-8000-000000000000", "b": None}, {})
    for bad in ({"a": "x", "b": None}, {"a": "6f1c1f1e-0000-4000-8000-000000000000"},
                {"a": "6f1c1f1e-0000-4000-8000-000000000000", "b": None, "c": 1},
                {"a": "6f1c1f1e-0000-4000-8000-000000000000", "b": ""}):
        with pytest.raises(AssertionError):
            matches({"a": "%(uuid)s", "b": None}, bad, {})
