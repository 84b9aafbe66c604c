"""`openstack server list/show/reboot --hard` from the clouds.yaml that
`lifeboat openstack-config` prints."""

import json
import os
import subprocess
import sys
import time

from conftest import boot

OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")


def test_openstack_cli(lb, admin, tmp_path):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(lb.cli("openstack-config").stdout)
    assert "auth_url" in clouds.read_text()
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CLOUD": "lifeboat"}

    def osc(*args):
        r = subprocess.run([OPENSTACK, *args], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    s = boot(admin, "cli-server")
    rows = json.loads(osc("server", "list", "-f", "json"))
    row = next(r for r in rows if r["ID"] == s.id)
    assert row["Name"] == "cli-server" and row["Status"] == "ACTIVE"
    assert row["Image"] == "lifeboat-guest" and row["Flavor"] == "m1.nano"
    assert row["Networks"]["private"]
    shown = json.loads(osc("server", "show", "cli-server", "-f", "json"))
    assert shown["id"] == s.id and shown["status"] == "ACTIVE"
    osc("server", "reboot", "--hard", s.id)
    # The reboot is accepted with the HARD_REBOOT task, then settles.
    deadline = time.time() + 60
    while time.time() < deadline:
        got = json.loads(osc("server", "show", s.id, "-f", "json"))
        if got["status"] == "ACTIVE" and got["OS-EXT-STS:task_state"] is None:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("server did not settle after reboot --hard")
    actions = json.loads(osc("server", "event", "list", s.id, "-f", "json"))
    assert [a["Action"] for a in actions][:2] == ["reboot", "create"]
    admin.compute.delete_server(s)
