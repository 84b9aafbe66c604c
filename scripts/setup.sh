#!/usr/bin/env bash
# Sets up everything the tests need on a Debian 12 machine, idempotently:
# Debian packages (QEMU, PostgreSQL, guest-image inputs, network tools, the
# backup peers), PostgreSQL started with the test role, the Python venvs, the
# S3-compatible test server's venv and the guest image. Safe to run again.
#
# QEMU: machines of this kind may ship qemu-utils 1:10 (a Debian 13 backport)
# that Breaks Debian 12's qemu-system-x86 7.2; installing qemu-utils from
# bookworm with --allow-downgrades works whether the backport is there or not.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

log() { echo "setup: $*" >&2; }
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pkgs=(qemu-system-x86 qemu-utils postgresql busybox-static linux-image-amd64 cpio xz-utils
  iproute2 python3-venv dnsmasq-base nftables genisoimage restic borgbackup extlinux syslinux-common
  e2fsprogs iputils-ping)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
# A qemu-system-x86 next to a qemu-utils of another upstream version is the
# broken state this machine kind ships with: treat it as missing.
qsys=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
qutl=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
if [ -n "$qutl" ] && [ "${qsys%%+*}" != "${qutl%%+*}" ]; then
  missing+=(qemu-system-x86 qemu-utils)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  sudo_ apt-get update -q
  args=()
  for p in "${missing[@]}"; do
    case "$p" in
      qemu-utils | qemu-system-x86) ;;
      *) args+=("$p") ;;
    esac
  done
  # qemu-utils from bookworm so that it matches bookworm's qemu-system-x86.
  sudo_ apt-get install -y -q --no-install-recommends --allow-downgrades \
    qemu-system-x86 qemu-utils/bookworm "${args[@]}"
fi
command -v qemu-system-x86_64 >/dev/null || { log "error: qemu-system-x86_64 missing after install"; exit 1; }

# PostgreSQL for the store tests.
scripts/start-postgres.sh

# Python venvs: the compat suites and the S3-compatible test server (moto).
venv_dir="${XDG_CACHE_HOME:-$HOME/.cache}"
ensure_venv() { # name packages...
  local v="$venv_dir/$1"; shift
  local stamp="$v/.lifeboat-req"
  local want="$*"
  if [ ! -x "$v/bin/python" ]; then python3 -m venv "$v"; fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$v/bin/pip" install -q --upgrade pip
    # shellcheck disable=SC2086
    "$v/bin/pip" install -q $want
    echo "$want" >"$stamp"
  fi
}
ensure_venv lifeboat-compat-openstack openstacksdk python-openstackclient pytest
ensure_venv lifeboat-tools "moto[server]" schemathesis pytest

# The guest image (kernel + initramfs + guest agent) and the BIOS-bootable test disk
# made from it (extlinux, for the uploaded-image tests).
bash guest/build-image.sh
bash guest/build-boot-disk.sh
log "ready"
