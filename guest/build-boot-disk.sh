#!/usr/bin/env bash
# Builds a small BIOS-bootable disk image from Debian packages, for the tests of
# uploaded images (Image v2 `PUT /v2/images/{id}/file`, disk_format qcow2 or raw):
#   $OUT_DIR/boot-disk.qcow2   64 MiB, MBR (syslinux mbr.bin) + one bootable ext2
#                              partition at 1 MiB holding extlinux (ldlinux.sys),
#                              /boot/vmlinuz (linux-image-amd64's bzImage) and
#                              /boot/initramfs.cpio.gz (the project's guest initramfs
#                              from build-image.sh: /init prints the ready marker and
#                              runs the guest agent; it mounts the partition at
#                              /mnt/data, so the guest's data lives on its boot disk)
#   $OUT_DIR/boot-disk.txt     what went in (cache key, versions, sha256)
#
# The kernel command line is the disk's (extlinux.conf), not the host's: console on
# ttyS0 (the ready marker), lifeboat.data=auto, lifeboat.bootdisk=1.
#
# Needs: extlinux + syslinux-common (mbr.bin), e2fsprogs (mke2fs -d), qemu-utils,
# mount/losetup (root: extlinux installs only into a mounted filesystem) and what
# build-image.sh needs. Environment: OUT_DIR (default guest/out), KERNEL_VERSION,
# FORCE=1 (rebuild even if the cache key matches), SOURCE_DATE_EPOCH.
#
# Idempotent: the inputs (kernel, initramfs, extlinux package, this script) are hashed
# into a cache key; when $OUT_DIR/boot-disk.qcow2 was built from the same key, nothing
# is done.
set -euo pipefail

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT_DIR=${OUT_DIR:-$GUEST_DIR/out}
export OUT_DIR
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
DISK_MIB=64
PART_START=2048 # sectors (1 MiB)

log() { echo "build-boot-disk: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

for tool in extlinux mke2fs qemu-img sha256sum; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install extlinux syslinux-common e2fsprogs qemu-utils)"
done
MBR=
for m in /usr/lib/syslinux/mbr/mbr.bin /usr/lib/EXTLINUX/mbr.bin; do
	[ -r "$m" ] && MBR=$m && break
done
[ -n "$MBR" ] || die "syslinux mbr.bin missing (apt-get install syslinux-common)"

# The guest initramfs (instant when up to date).
bash "$GUEST_DIR/build-image.sh"
INITRD=$OUT_DIR/initramfs.cpio.gz
[ -s "$INITRD" ] || die "$INITRD missing after build-image.sh"

if [ -z "${KERNEL_VERSION:-}" ]; then
	KERNEL_VERSION=$(find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
fi
VMLINUZ=/boot/vmlinuz-$KERNEL_VERSION
[ -r "$VMLINUZ" ] || die "$VMLINUZ not readable (apt-get install linux-image-amd64)"

pkg_version() { dpkg-query -W -f '${Package}=${Version}' "$1" 2>/dev/null || echo "$1=unknown"; }
KEY=$({
	echo "lifeboat-boot-disk v1 $DISK_MIB $PART_START $SOURCE_DATE_EPOCH"
	pkg_version extlinux
	pkg_version syslinux-common
	sha256sum "$VMLINUZ" "$INITRD" "$MBR" "${BASH_SOURCE[0]}" | cut -d' ' -f1
} | sha256sum | cut -d' ' -f1)
OUT=$OUT_DIR/boot-disk.qcow2
if [ "${FORCE:-0}" != 1 ] && [ -s "$OUT" ] && [ -f "$OUT_DIR/.boot-disk-key" ] &&
	[ "$(cat "$OUT_DIR/.boot-disk-key")" = "$KEY" ]; then
	log "up to date ($OUT, key ${KEY:0:12})"
	exit 0
fi

WORK=$(mktemp -d "$OUT_DIR/.bootdisk.XXXXXX")
MNT=$WORK/mnt
cleanup() {
	if mountpoint -q "$MNT" 2>/dev/null; then sudo_ umount "$MNT" || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
rm -f "$OUT_DIR/.boot-disk-key"

# The partition's filesystem, populated without mounting (mke2fs -d), then mounted once
# for extlinux, which installs only into a mounted filesystem.
STAGE=$WORK/stage
mkdir -p "$STAGE/boot/extlinux" "$MNT"
cp "$VMLINUZ" "$STAGE/boot/vmlinuz"
cp "$INITRD" "$STAGE/boot/initramfs.cpio.gz"
cat >"$STAGE/boot/extlinux/extlinux.conf" <<'EOF'
SERIAL 0 115200
DEFAULT lifeboat
PROMPT 0
TIMEOUT 1
LABEL lifeboat
  LINUX /boot/vmlinuz
  INITRD /boot/initramfs.cpio.gz
  APPEND console=ttyS0 quiet lifeboat.data=auto lifeboat.bootdisk=1
EOF
find "$STAGE" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
PART_SECTORS=$((DISK_MIB * 2048 - PART_START))
FS=$WORK/part.img
truncate -s $((PART_SECTORS * 512)) "$FS"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -F -t ext2 -L lifeboat-boot \
	-U 5a1f0b0a-7e57-4b00-8d15-000000000001 -E root_owner=0:0 -d "$STAGE" "$FS"
sudo_ mount -o loop "$FS" "$MNT"
out=$(sudo_ extlinux --install "$MNT/boot/extlinux" 2>&1) || die "extlinux --install failed: $out"
sudo_ umount "$MNT"

# The disk: syslinux's MBR boot code, one bootable Linux partition, the filesystem.
RAW=$WORK/disk.raw
truncate -s $((DISK_MIB << 20)) "$RAW"
dd if="$MBR" of="$RAW" bs=440 count=1 conv=notrunc status=none
le32() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))\\x$(printf %02x $((($1 >> 16) & 255)))\\x$(printf %02x $((($1 >> 24) & 255)))"; }
{
	# status (bootable), CHS start (LBA-only marker), type 0x83, CHS end, LBA start, sectors
	printf '\x80\xfe\xff\xff\x83\xfe\xff\xff'
	le32 "$PART_START"
	le32 "$PART_SECTORS"
} | dd of="$RAW" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$RAW" bs=1 seek=510 conv=notrunc status=none
# The boot sector finds ldlinux.sys by absolute sector numbers: extlinux stored the
# partition offset it saw (0, a loop file) as its "hidden sectors" (FAT-BPB offset
# 0x1c); the partition starts at PART_START.
le32 "$PART_START" | dd of="$FS" bs=1 seek=28 conv=notrunc status=none
dd if="$FS" of="$RAW" bs=1M seek=1 conv=notrunc,sparse status=none

qemu-img convert -q -f raw -O qcow2 "$RAW" "$WORK/boot-disk.qcow2"
{
	echo "cache-key $KEY"
	echo "kernel $KERNEL_VERSION ($(pkg_version "$(dpkg-query -S "$VMLINUZ" 2>/dev/null | cut -d: -f1 | head -n 1)"))"
	echo "$(pkg_version extlinux) $(pkg_version syslinux-common)"
	echo "initramfs $(sha256sum "$INITRD" | cut -d' ' -f1)"
	echo "raw-sha256 $(sha256sum "$RAW" | cut -d' ' -f1) $((DISK_MIB << 20))"
} >"$WORK/boot-disk.txt"
mv -f "$WORK/boot-disk.qcow2" "$OUT"
mv -f "$WORK/boot-disk.txt" "$OUT_DIR/boot-disk.txt"
echo "$KEY" >"$OUT_DIR/.boot-disk-key"
log "done: $OUT ($(stat -c %s "$OUT") B, ${DISK_MIB} MiB virtual)"
