#!/usr/bin/env bash
# Builds the Lifeboat guest image from Debian packages only:
#   $OUT_DIR/vmlinux              uncompressed kernel (PVH ELF) from linux-image-amd64
#   $OUT_DIR/initramfs.cpio.gz    busybox-static + virtio/ACPI/ext4 modules + /init
#                                 + the statically linked lifeboat-guest-agent
#   $OUT_DIR/lifeboat-guest-agent the agent binary that went into the initramfs
#   $OUT_DIR/manifest.txt         what went in (versions, sizes, sha256)
#
# Needs: linux-image-amd64, busybox-static, cpio, xz-utils, gzip, cargo.
# Environment:
#   OUT_DIR           output directory (default: guest/out)
#   KERNEL_VERSION    e.g. 6.1.0-56-amd64 (default: newest /boot/vmlinuz-*)
#   CARGO_TARGET_DIR  for the agent build (default: the tree's own target/, as cargo's, so
#                     two worktrees never build into, and copy the agent from, one directory)
#   SOURCE_DATE_EPOCH timestamp stored in the initramfs (default: fixed)
#   FORCE=1           rebuild even if the cache key matches
#
# Idempotent: the inputs (kernel + busybox package versions and file hashes,
# agent sources, rustc version, this script, guest/rootfs) are hashed into a
# cache key; if $OUT_DIR holds outputs built from the same key, nothing is done.
set -euo pipefail

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$GUEST_DIR")
OUT_DIR=${OUT_DIR:-$GUEST_DIR/out}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
TARGET=x86_64-unknown-linux-gnu
AGENT_CRATE=$REPO_DIR/crates/guest-agent
BUSYBOX=/bin/busybox

# Modules to include (dependencies are added automatically): MODULES are
# always loaded, DISK_MODULES only when the guest has a virtio disk.
# crc32c_generic is ext4's/jbd2's crypto soft dependency; crc32c-intel needs
# SSE4.2, which the default TCG CPU lacks. pvpanic_mmio drives the ISA pvpanic
# device, so a guest panic reaches QMP (GUEST_PANICKED).
MODULES=(virtio_pci virtio_blk virtio_net virtio_console button evdev pvpanic_mmio)
DISK_MODULES=(crc32c_generic ext4 isofs)

log() { echo "build-image: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

for tool in xz cpio gzip sha256sum modinfo cargo; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install cpio xz-utils kmod; rustup)"
done
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (apt-get install busybox-static)"

if [ -z "${KERNEL_VERSION:-}" ]; then
	KERNEL_VERSION=$(find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
fi
[ -n "$KERNEL_VERSION" ] || die "no /boot/vmlinuz-* (apt-get install linux-image-amd64)"
VMLINUZ=/boot/vmlinuz-$KERNEL_VERSION
MODDIR=/lib/modules/$KERNEL_VERSION
[ -r "$VMLINUZ" ] || die "$VMLINUZ not readable"
[ -d "$MODDIR" ] || die "$MODDIR missing"

pkg_version() { dpkg-query -W -f '${Package}=${Version}' "$1" 2>/dev/null || echo "$1=unknown"; }
KPKG=$(dpkg-query -S "$VMLINUZ" 2>/dev/null | cut -d: -f1 | head -n 1 || true)
KPKG_VERSION=$(pkg_version "${KPKG:-linux-image-$KERNEL_VERSION}")
BB_VERSION=$(pkg_version busybox-static)

# ---------------------------------------------------------------- cache key
cache_key() {
	{
		echo "lifeboat-guest-image v1"
		echo "kernel $KERNEL_VERSION $KPKG_VERSION"
		echo "busybox $BB_VERSION"
		echo "modules ${MODULES[*]} / ${DISK_MODULES[*]}"
		echo "epoch $SOURCE_DATE_EPOCH"
		rustc -V 2>/dev/null || echo "rustc unknown"
		sha256sum "$VMLINUZ" "$BUSYBOX" "${BASH_SOURCE[0]}" | cut -d' ' -f1
		(cd "$AGENT_CRATE" && find Cargo.toml src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		(cd "$GUEST_DIR/rootfs" && find . -print0 | LC_ALL=C sort -z |
			xargs -0 stat -c '%n %A' && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
	} | sha256sum | cut -d' ' -f1
}
KEY=$(cache_key)
if [ "${FORCE:-0}" != 1 ] && [ -f "$OUT_DIR/.cache-key" ] && [ "$(cat "$OUT_DIR/.cache-key")" = "$KEY" ] &&
	[ -s "$OUT_DIR/vmlinux" ] && [ -s "$OUT_DIR/initramfs.cpio.gz" ]; then
	log "up to date ($OUT_DIR, key ${KEY:0:12})"
	exit 0
fi

mkdir -p "$OUT_DIR"
WORK=$(mktemp -d "$OUT_DIR/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
rm -f "$OUT_DIR/.cache-key"

# ---------------------------------------------------------------- vmlinux
# Like the kernel's scripts/extract-vmlinux: find the compressed payload in
# the bzImage and decompress it; the first candidate that yields an ELF wins.
extract_vmlinux() {
	local out=$1 off magic tool
	for spec in 'xz:\xFD7zXZ\x00' 'gzip:\x1F\x8B\x08' 'zstd:\x28\xB5\x2F\xFD'; do
		tool=${spec%%:*}
		magic=${spec#*:}
		command -v "$tool" >/dev/null || continue
		for off in $(LC_ALL=C grep -obUaP "$magic" "$VMLINUZ" | cut -d: -f1); do
			tail -c +"$((off + 1))" "$VMLINUZ" | "$tool" -dc >"$out" 2>/dev/null || true
			if [ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
				log "vmlinux: $tool payload at offset $off of $VMLINUZ"
				return 0
			fi
		done
	done
	return 1
}
log "extracting vmlinux from $VMLINUZ"
extract_vmlinux "$WORK/vmlinux" || die "no ELF payload found in $VMLINUZ"

# ---------------------------------------------------------------- agent
log "building lifeboat-guest-agent (static, $TARGET)"
(cd "$REPO_DIR" && RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --release -q -p lifeboat-guest-agent --target "$TARGET") ||
	die "cargo build of lifeboat-guest-agent failed"
AGENT_BIN=$CARGO_TARGET_DIR/$TARGET/release/lifeboat-guest-agent
[ -x "$AGENT_BIN" ] || die "$AGENT_BIN missing"
# ldd says "statically linked" (static-pie) or "not a dynamic executable".
ldd "$AGENT_BIN" 2>&1 | grep -qE 'statically linked|not a dynamic executable' ||
	die "$AGENT_BIN is dynamically linked"
cp "$AGENT_BIN" "$WORK/lifeboat-guest-agent"
if command -v strip >/dev/null; then strip --strip-all "$WORK/lifeboat-guest-agent"; fi

# ---------------------------------------------------------------- rootfs
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,mnt/data,var/log,lib/modules/"$KERNEL_VERSION"}
cp "$BUSYBOX" "$ROOT/bin/busybox"
# Applet links (relative, as listed by busybox itself).
"$BUSYBOX" --list-full | while read -r applet; do
	[ -e "$ROOT/$applet" ] || [ -L "$ROOT/$applet" ] && continue
	dir=$(dirname "$applet")
	up=$(echo "$dir" | sed 's|[^/]\+|..|g')
	ln -s "$up/bin/busybox" "$ROOT/$applet"
done
cp -a "$GUEST_DIR/rootfs/." "$ROOT/"
install -m 0755 "$WORK/lifeboat-guest-agent" "$ROOT/sbin/lifeboat-guest-agent"

# Modules with their dependencies, in load order (depth-first).
declare -A SEEN=()
ORDER=()
add_module() {
	local m=$1 dep
	[ -n "${SEEN[$m]:-}" ] && return 0
	SEEN[$m]=1
	for dep in $(modinfo -k "$KERNEL_VERSION" -F depends "$m" | tr ',' ' '); do
		add_module "$dep"
	done
	ORDER+=("$m")
}
for m in "${MODULES[@]}"; do add_module "$m"; done
BASE_COUNT=${#ORDER[@]}
for m in "${DISK_MODULES[@]}"; do add_module "$m"; done
: >"$ROOT/etc/lifeboat/modules"
: >"$ROOT/etc/lifeboat/modules.disk"
i=0
for m in "${ORDER[@]}"; do
	src=$(modinfo -k "$KERNEL_VERSION" -n "$m") || die "module $m not found"
	case "$src" in
	*.ko) cp "$src" "$ROOT/lib/modules/$KERNEL_VERSION/$m.ko" ;;
	*.ko.xz) xz -dc "$src" >"$ROOT/lib/modules/$KERNEL_VERSION/$m.ko" ;;
	*.ko.zst) zstd -qdc "$src" >"$ROOT/lib/modules/$KERNEL_VERSION/$m.ko" ;;
	*.ko.gz) gzip -dc "$src" >"$ROOT/lib/modules/$KERNEL_VERSION/$m.ko" ;;
	*) die "unknown module file $src" ;;
	esac
	if [ "$i" -lt "$BASE_COUNT" ]; then
		echo "$m" >>"$ROOT/etc/lifeboat/modules"
	else
		echo "$m" >>"$ROOT/etc/lifeboat/modules.disk"
	fi
	i=$((i + 1))
done
log "modules: $(tr '\n' ' ' <"$ROOT/etc/lifeboat/modules")+ disk: $(tr '\n' ' ' <"$ROOT/etc/lifeboat/modules.disk")"

# Normalise ownership-independent metadata for a reproducible archive.
find "$ROOT" -type d -exec chmod 0755 {} +
chmod 1777 "$ROOT/tmp"
chmod 0700 "$ROOT/root"
find "$ROOT" -type f ! -perm -u+x -exec chmod 0644 {} +
find "$ROOT" -type f -perm -u+x -exec chmod 0755 {} +
chmod 0600 "$ROOT/etc/shadow"
# /dev/console for the kernel's initial stdio (needs root; /init copes without).
mknod -m 0600 "$ROOT/dev/console" c 5 1 2>/dev/null || log "no mknod (not root): /dev/console comes from devtmpfs"
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

(cd "$ROOT" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --quiet --null --create --format=newc --owner=0:0 --reproducible) |
	gzip -9 -n >"$WORK/initramfs.cpio.gz"

# ---------------------------------------------------------------- publish
{
	echo "cache-key $KEY"
	echo "kernel $KERNEL_VERSION ($KPKG_VERSION)"
	echo "busybox $BB_VERSION"
	echo "modules $(tr '\n' ' ' <"$ROOT/etc/lifeboat/modules")"
	echo "disk-modules $(tr '\n' ' ' <"$ROOT/etc/lifeboat/modules.disk")"
	(cd "$WORK" && for f in vmlinux initramfs.cpio.gz lifeboat-guest-agent; do
		echo "$(sha256sum "$f" | cut -d' ' -f1) $(stat -c %s "$f") $f"
	done)
} >"$WORK/manifest.txt"
for f in vmlinux initramfs.cpio.gz lifeboat-guest-agent manifest.txt; do
	mv -f "$WORK/$f" "$OUT_DIR/$f"
done
echo "$KEY" >"$OUT_DIR/.cache-key"
log "done: $OUT_DIR (vmlinux $(stat -c %s "$OUT_DIR/vmlinux") B, initramfs $(stat -c %s "$OUT_DIR/initramfs.cpio.gz") B)"
