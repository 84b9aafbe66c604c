"""Image v2 upload and download through the real openstacksdk
(`create_image(filename=...)`: POST /v2/images, PUT /v2/images/{id}/file)
and `openstack image create --file`, into the snapshot store."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import openstack
import pytest

OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")


def make_qcow2(tmp_path, mib=3):
    assert shutil.which("qemu-img"), "qemu-img is missing: run scripts/setup.sh (qemu-utils)"
    raw = tmp_path / "disk.raw"
    raw.write_bytes(os.urandom(mib << 20) + bytes(1 << 20))
    out = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
                   check=True)
    return out


def test_sdk_upload_then_download(alice, tmp_path):
    path = make_qcow2(tmp_path)
    data = path.read_bytes()
    img = alice.image.create_image("sdk-upload", filename=str(path), disk_format="qcow2",
                                   container_format="bare", wait=True, timeout=120,
                                   validate_checksum=True)
    # The SDK returns the record it created; the upload (synchronous) made it active.
    got = alice.image.get_image(img.id)
    assert got.status == "active" and got.disk_format == "qcow2"
    assert got.size == len(data)
    assert got.checksum == hashlib.md5(data).hexdigest()
    assert got.hash_algo == "sha512"
    assert got.hash_value == hashlib.sha512(data).hexdigest()
    # The SDK's own checksum properties came along.
    assert got.properties.get("owner_specified.openstack.md5") == got.checksum
    out = tmp_path / "back.qcow2"
    alice.image.download_image(got, output=str(out))
    assert out.read_bytes() == data
    # A second upload to an active image is a conflict, as in Glance.
    got.data = b"x"
    resp = got.upload(alice.image)
    assert resp.status_code == 409, resp.text
    assert "Image status transition from active to saving is not allowed" in resp.text
    alice.image.delete_image(got.id)
    with pytest.raises(openstack.exceptions.NotFoundException):
        alice.image.get_image(got.id)


def test_sdk_upload_refuses_bad_data(alice, tmp_path):
    bad = tmp_path / "not.qcow2"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(openstack.exceptions.BadRequestException):
        alice.image.create_image("bad-upload", filename=str(bad), disk_format="qcow2",
                                 container_format="bare", wait=True, timeout=60,
                                 validate_checksum=False)
    left = [i for i in alice.image.images() if i.name == "bad-upload"]
    assert all(i.status == "queued" for i in left), left


def test_cli_image_create_file(lb, tmp_path):
    path = make_qcow2(tmp_path, mib=2)
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(lb.cli("openstack-config").stdout)
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CLOUD": "lifeboat"}

    def osc(*args):
        r = subprocess.run([OPENSTACK, *args], capture_output=True, text=True, env=env,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    made = json.loads(osc("image", "create", "--file", str(path), "--disk-format", "qcow2",
                          "--container-format", "bare", "cli-upload", "-f", "json"))
    shown = json.loads(osc("image", "show", made["id"], "-f", "json"))
    assert shown["status"] == "active"
    assert shown["checksum"] == hashlib.md5(path.read_bytes()).hexdigest()
    osc("image", "save", "--file", str(tmp_path / "saved"), made["id"])
    assert (tmp_path / "saved").read_bytes() == path.read_bytes()
    osc("image", "delete", made["id"])
