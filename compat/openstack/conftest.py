"""Fixtures: a live `lifeboat serve` (fake driver) and SDK connections.

The binary comes from LIFEBOAT_BIN (default target/debug/lifeboat, built by
run.sh). Every test talks to it through the real openstacksdk / openstack CLI
using the clouds.yaml that `lifeboat openstack-config` prints.
"""

import json
import os
import pathlib
import secrets
import socket
import subprocess
import tempfile
import time

import openstack
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("LIFEBOAT_BIN", str(ROOT / "target" / "debug" / "lifeboat"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Lifeboat:
    """One running `lifeboat serve` and the clouds it knows."""

    def __init__(self, extra_args=(), env=None, hosts=()):
        self.tmp = tempfile.TemporaryDirectory(prefix="lifeboat-compat-")
        self.data = pathlib.Path(self.tmp.name) / "data"
        self.data.mkdir()
        self.agents = {}
        agents = []
        if hosts:
            token = self.data / "agent-token"
            token.write_text(secrets.token_hex(32))
            token.chmod(0o600)
            # The manager's CA (agents admit only clients it signed).
            ca = subprocess.run([BIN, "ca", "--data-dir", str(self.data)], check=True,
                                capture_output=True, text=True).stdout.strip()
            started = []
            for h in hosts:
                port = free_port()
                log = open(pathlib.Path(self.tmp.name) / f"agent-{h}.log", "w")
                agent_dir = pathlib.Path(self.tmp.name) / h
                self.agents[h] = subprocess.Popen(
                    [BIN, "agent", "--listen", f"127.0.0.1:{port}", "--name", h, "--driver", "fake",
                     "--data-dir", str(agent_dir), "--token-file", str(token), "--manager-ca", ca],
                    stdout=log, stderr=subprocess.STDOUT)
                started.append((h, port, agent_dir / "tls" / "agent.sha256"))
            for h, port, pin_file in started:
                # The agent writes its certificate's fingerprint before it
                # listens; the manager pins it.
                deadline = time.time() + 30
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        if time.time() > deadline:
                            raise RuntimeError(f"agent {h} did not start")
                        time.sleep(0.1)
                agents.append(f"{h}=https://127.0.0.1:{port},pin={pin_file.read_text().strip()}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(pathlib.Path(self.tmp.name) / "serve.log", "w+")
        args = [BIN, "serve", "--driver", "fake", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", str(self.data), "--sync-interval", "1", *extra_args]
        for a in agents:
            args += ["--agent", a]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("lifeboat serve exited:\n" + self.logtext())
            if "serving on" in self.logtext():
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("lifeboat serve did not start:\n" + self.logtext())
        self.creds_file = self.data / "admin-credentials.json"
        self.creds = json.loads(self.creds_file.read_text())
        self.clouds = {}
        self.clouds_file = pathlib.Path(self.tmp.name) / "clouds.yaml"
        self.add_cloud("admin")

    def logtext(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def cli(self, *args, env=None, check=True):
        cmd = [BIN, *args, "--url", self.url, "--credentials", str(self.creds_file)]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
        if check and r.returncode != 0:
            raise RuntimeError(f"{cmd}: {r.stdout}\n{r.stderr}")
        return r

    def add_cloud(self, name, user=None, password=None, project=None):
        args = ["openstack-config", "--cloud", name, "-o", "json"]
        env = {}
        if user:
            args += ["--user", user, "--project", project]
            env["LIFEBOAT_PASSWORD"] = password
        out = self.cli(*args, env=env).stdout
        self.clouds.update(json.loads(out)["clouds"])
        # JSON is valid YAML.
        self.clouds_file.write_text(json.dumps({"clouds": self.clouds}, indent=2))

    def add_user(self, name, project, role):
        password = secrets.token_hex(12)
        self.cli("user", "create", name, "--in-project", project, "--role", role,
                 env={"LIFEBOAT_NEW_PASSWORD": password})
        self.add_cloud(name, name, password, project)
        return password

    def connect(self, cloud, **kw):
        import openstack.config
        cfg = openstack.config.OpenStackConfig(config_files=[str(self.clouds_file)])
        region = cfg.get_one(cloud=cloud, **kw)
        return openstack.connection.Connection(config=region)

    def native(self, method, path, body=None, token=None):
        """A call to Lifeboat's native API (for what OpenStack does in Neutron)."""
        import urllib.request
        if token is None:
            token = self.native(
                "POST", "/api/v1/auth/tokens",
                {"username": self.creds["username"], "password": self.creds["password"]},
                token="",
            )["token"]
        req = urllib.request.Request(self.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"X-Auth-Token": token} if token else {})})
        with urllib.request.urlopen(req) as r:
            data = r.read()
            return json.loads(data) if data else None

    def stop(self):
        for a in self.agents.values():
            if a.poll() is None:
                a.terminate()
                a.wait(10)
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        self.tmp.cleanup()


@pytest.fixture(scope="session")
def lb():
    inst = Lifeboat()
    inst.cli("project", "create", "proj-a")
    inst.cli("project", "create", "proj-b")
    inst.cli("project", "create", "proj-pages")
    inst.add_user("alice", "proj-a", "member")
    inst.add_user("rita", "proj-a", "reader")
    inst.add_user("bob", "proj-b", "member")
    inst.add_user("paula", "proj-pages", "member")
    yield inst
    inst.stop()


@pytest.fixture(scope="session")
def admin(lb):
    return lb.connect("admin")


@pytest.fixture(scope="session")
def alice(lb):
    return lb.connect("alice")


@pytest.fixture(scope="session")
def rita(lb):
    return lb.connect("rita")


@pytest.fixture(scope="session")
def bob(lb):
    return lb.connect("bob")


IMAGE = "lifeboat-guest"


def settle(conn, server, status, timeout=60):
    """Waits until the server has `status` and no task (what tempest waits for)."""
    deadline = time.time() + timeout
    s = None
    while time.time() < deadline:
        s = conn.compute.get_server(server)
        if s.status == status and s.task_state is None:
            return s
        if s.status == "ERROR" and status != "ERROR":
            raise AssertionError(f"server went to ERROR: {s.fault}")
        time.sleep(0.1)
    raise AssertionError(f"server {server} stuck at {s.status}/{s.task_state}, wanted {status}")


def boot(conn, name, **kw):
    image = conn.image.find_image(IMAGE)
    flavor = conn.compute.find_flavor("m1.nano")
    kw.setdefault("networks", "auto")
    s = conn.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id, **kw)
    return settle(conn, s, "ACTIVE")
