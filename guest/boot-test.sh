#!/usr/bin/env bash
# Boots the guest image under QEMU/TCG and checks it end to end:
# serial ready marker, agent `ready` event, `ping`, `health` (plus
# `exec-info` and `disk-usage`), then ends the VM through QMP and prints the
# boot times. Exit status 0 on success.
#
# Environment:
#   OUT_DIR     image directory (default guest/out; built first if needed)
#   QEMU        qemu binary (default qemu-system-x86_64)
#   FAST=1      add "-bios qboot.rom -vga none" (skips SeaBIOS and VGA init:
#               about 0.3-0.5 s faster under TCG)
#   MACHINE     pc (default) or q35
#   MEM         MiB of guest RAM (default 128)
#   APPEND      extra kernel command line (e.g. "lifeboat.hostname=t1")
#   RUNS        boot this many times and print the median (default 1)
#   DATA_DISK=1 attach a blank 64 MiB virtio disk (tests format + mount,
#               fsfreeze/fsthaw, run-maintenance, set-password)
#   POWERDOWN=1 end with QMP system_powerdown (ACPI → acpid → poweroff) and
#               wait for the guest to power off, instead of QMP quit
#   AGENT_SHUTDOWN=1  end with the agent's `shutdown` command instead
#   TIMEOUT     seconds allowed per boot (default 120)
#   QEMU_EXTRA  extra qemu arguments (split on spaces), e.g.
#               "-nic user,model=virtio-net-pci" with APPEND="lifeboat.ip=10.0.2.15/24"
#   SHOW_CONSOLE=1  print the serial console of the (first) boot
#   MAINT       run this maintenance script through the agent and print its output
set -euo pipefail

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OUT_DIR=${OUT_DIR:-$GUEST_DIR/out}
"$GUEST_DIR/build-image.sh"
command -v python3 >/dev/null || { echo "boot-test: python3 is needed" >&2; exit 1; }
export QEMU=${QEMU:-qemu-system-x86_64}
command -v "$QEMU" >/dev/null || { echo "boot-test: $QEMU not found (apt-get install qemu-system-x86)" >&2; exit 1; }

exec python3 - <<'PY'
import json, os, shlex, shutil, socket, statistics, subprocess, sys, tempfile, time

out = os.environ["OUT_DIR"]
qemu = os.environ["QEMU"]
machine = os.environ.get("MACHINE", "pc")
mem = os.environ.get("MEM", "128")
append = ("console=ttyS0 quiet " + os.environ.get("APPEND", "")).strip()
runs = int(os.environ.get("RUNS", "1"))
data_disk = os.environ.get("DATA_DISK") == "1"
powerdown = os.environ.get("POWERDOWN") == "1"
agent_shutdown = os.environ.get("AGENT_SHUTDOWN") == "1"
timeout = float(os.environ.get("TIMEOUT", "120"))
qemu_extra = os.environ.get("QEMU_EXTRA", "").split()
if os.environ.get("FAST") == "1":
    qemu_extra = ["-bios", "qboot.rom", "-vga", "none"] + qemu_extra
maint = os.environ.get("MAINT", "")
show_console = os.environ.get("SHOW_CONSOLE") == "1"


class Fail(Exception):
    pass


def unix_connect(path, deadline):
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise Fail(f"cannot connect to {path}")
            time.sleep(0.01)


class Lines:
    """Line reader over a socket with a deadline."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def next(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("timed out waiting for a line")
            self.sock.settimeout(min(left, 0.05))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise Fail("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def boot_once(n):
    d = tempfile.mkdtemp(prefix="lifeboat-boot-")
    serial, ga, qmp = (os.path.join(d, f) for f in ("serial.log", "ga.sock", "qmp.sock"))
    cmd = [
        qemu, "-machine", machine, "-accel", "tcg", "-m", mem, "-nographic", "-nic", "none",
        "-kernel", os.path.join(out, "vmlinux"),
        "-initrd", os.path.join(out, "initramfs.cpio.gz"),
        "-append", append,
        "-device", "virtio-serial",
        "-chardev", f"socket,id=ga,path={ga},server=on,wait=off",
        "-device", "virtserialport,chardev=ga,name=org.lifeboat.agent.0",
        "-qmp", f"unix:{qmp},server=on,wait=off",
    ]
    cmd += qemu_extra
    if data_disk:
        disk = os.path.join(d, "data.raw")
        with open(disk, "wb") as f:
            f.truncate(64 << 20)
        cmd += ["-drive", f"file={disk},format=raw,if=virtio"]
    if n == 0:
        print("qemu command:", shlex.join(cmd))
    log = open(serial, "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = t0 + timeout
    res = {}
    try:
        agent = Lines(unix_connect(ga, deadline))
        t_marker = None
        while t_marker is None:
            with open(serial, "rb") as f:
                if b"LIFEBOAT-READY" in f.read():
                    t_marker = time.monotonic() - t0
                    break
            if proc.poll() is not None:
                raise Fail(f"qemu exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise Fail("no LIFEBOAT-READY on the serial console")
            time.sleep(0.01)
        res["marker_s"] = t_marker
        while True:
            ev = agent.next(deadline)
            if ev.get("event") == "ready":
                res["agent_s"] = time.monotonic() - t0
                res["guest_boot_ms"] = ev.get("boot_ms")
                break

        next_id = [0]

        def call(cmd, **args):
            next_id[0] += 1
            rid = next_id[0]
            t = time.monotonic()
            agent.sock.sendall((json.dumps({"id": rid, "cmd": cmd, "args": args}) + "\n").encode())
            while True:
                r = agent.next(time.monotonic() + 60)
                if r.get("id") == rid:
                    break
            if not r.get("ok"):
                raise Fail(f"{cmd}: {r.get('error')}")
            return r["result"], (time.monotonic() - t) * 1000

        _, res["ping_ms"] = call("ping")
        agent.sock.sendall(b'{"cmd":"hello"}\n')
        while agent.next(time.monotonic() + 30).get("event") != "ready":
            pass
        health, _ = call("health")
        info, _ = call("exec-info")
        du, _ = call("disk-usage")
        if n == 0:
            print("health:", json.dumps(health))
            print("exec-info:", json.dumps(info))
            print("disk-usage:", json.dumps(du))
        if maint:
            r, _ = call("run-maintenance", name=maint)
            print(f"run-maintenance {maint}: exit {r['exit_code']}\n{r['output']}", end="")
        if data_disk:
            mps = [f["mountpoint"] for f in du["filesystems"]]
            if "/mnt/data" not in mps:
                raise Fail("data disk not mounted at /mnt/data")
            fr, _ = call("fsfreeze")
            th, _ = call("fsthaw")
            if fr["frozen"] != ["/mnt/data"] or th["thawed"] != ["/mnt/data"]:
                raise Fail(f"fsfreeze/fsthaw: {fr} {th}")
            mt, _ = call("run-maintenance", name="self-test")
            pw, _ = call("set-password", user="root", password="boot-test-pw")
            if n == 0:
                print("fsfreeze:", json.dumps(fr))
                print("fsthaw:", json.dumps(th))
                print("run-maintenance:", json.dumps(mt))
                print("set-password:", json.dumps(pw))

        q = Lines(unix_connect(qmp, deadline))
        q.next(deadline)  # greeting
        q.sock.sendall(b'{"execute":"qmp_capabilities"}\n')
        q.next(deadline)
        if powerdown or agent_shutdown:
            t = time.monotonic()
            if powerdown:
                q.sock.sendall(b'{"execute":"system_powerdown"}\n')
            else:
                r, _ = call("shutdown")
                if n == 0:
                    print("shutdown:", json.dumps(r))
            while True:
                m = q.next(time.monotonic() + 60)
                if m.get("event") == "SHUTDOWN":
                    res["powerdown_s"] = time.monotonic() - t
                    if n == 0:
                        print("SHUTDOWN event:", json.dumps(m.get("data")))
                    break
        else:
            q.sock.sendall(b'{"execute":"quit"}\n')
        proc.wait(timeout=30)
        res["qemu_rc"] = proc.returncode
        if show_console and n == 0:
            with open(serial, "rb") as f:
                print("---- serial console ----")
                print(f.read().decode(errors="replace").rstrip())
                print("------------------------")
        shutil.rmtree(d, ignore_errors=True)
        return res
    except Exception:
        proc.kill()
        proc.wait()
        with open(serial, "rb") as f:
            sys.stderr.write(f.read()[-4000:].decode(errors="replace"))
        sys.stderr.write(f"\nboot-test: files kept in {d}\n")
        raise
    finally:
        log.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


results = []
for n in range(runs):
    try:
        r = boot_once(n)
    except Fail as e:
        print(f"boot-test: FAILED (run {n + 1}): {e}", file=sys.stderr)
        sys.exit(1)
    results.append(r)
    extra = f", powerdown {r['powerdown_s']:.2f}s" if "powerdown_s" in r else ""
    print(
        f"run {n + 1}: LIFEBOAT-READY at {r['marker_s']:.2f}s, agent ready at {r['agent_s']:.2f}s "
        f"(guest clock {r['guest_boot_ms']} ms), ping {r['ping_ms']:.1f} ms{extra}, qemu exit {r['qemu_rc']}"
    )
if runs > 1:
    med = lambda k: statistics.median(r[k] for r in results)
    print(
        f"median of {runs}: LIFEBOAT-READY {med('marker_s'):.2f}s, agent ready {med('agent_s'):.2f}s, "
        f"min/max agent {min(r['agent_s'] for r in results):.2f}/{max(r['agent_s'] for r in results):.2f}s"
    )
print("boot-test: OK")
PY
