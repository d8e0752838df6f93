#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# timeout: 120
#
# The test VM is usable: device-mapper, brd, the scratch disks, fio, python3,
# and the module under test when the harness passes one.
set -eu

step() {
	echo "--- $*"
}

step "environment"
echo "REPO=$REPO KVER=$KVER DMR_KO=${DMR_KO:-} TMPDIR=$TMPDIR OUT=$OUT"
echo "DISKS=$DISKS"
[ "$(uname -r)" = "$KVER" ]
[ "$PWD" = "$REPO" ]
touch "$TMPDIR/x" "$OUT/.smoke" && rm "$TMPDIR/x" "$OUT/.smoke"

step "device-mapper"
dmsetup targets | tee "$TMPDIR/targets"
grep -q '^linear ' "$TMPDIR/targets"
if [ -n "${DMR_KO:-}" ]; then
	grep -q '^replication ' "$TMPDIR/targets"
fi

step "brd"
modprobe brd rd_nr=2 rd_size=65536
[ -b /dev/ram0 ] && [ -b /dev/ram1 ]
[ "$(blockdev --getsize64 /dev/ram0)" -eq $((64 << 20)) ]

step "scratch disks"
read -r -a scratch <<<"$DISKS"
set -- "${scratch[@]}"
[ $# -eq 4 ]
# In order: virtio disks in QEMU, ubd ones on User-Mode Linux (-k uml).
case "$KVER" in
*-dmr-uml) [ "$1" = /dev/ubda ] ;;
*) [ "$1" = /dev/vda ] ;;
esac
for d in "$@"; do
	[ "$(blockdev --getsize64 "$d")" -eq $((1 << 30)) ]
done
[ -z "$(dd if="$1" bs=1M count=1 iflag=direct 2>/dev/null | tr -d '\0')" ]
echo hello | dd of="$1" bs=512 conv=sync oflag=direct status=none
[ "$(dd if="$1" bs=512 count=1 iflag=direct status=none | tr -d '\0')" = hello ]

step "fio"
fio --name=smoke --filename="$2" --rw=randwrite --bs=4k --size=4M \
	--direct=1 --ioengine=psync --verify=crc32c --output-format=terse >/dev/null
fio --name=smoke-aio --filename="$2" --rw=randrw --bs=4k --size=4M \
	--direct=1 --ioengine=libaio --iodepth=8 --verify=crc32c \
	--output-format=terse >/dev/null
echo "fio ok"

step "python3"
python3 -c 'import sys; print("python", sys.version.split()[0])'

step "dm linear"
dmsetup create smoke-linear --table "0 131072 linear /dev/ram0 0"
[ -b /dev/mapper/smoke-linear ]
dd if=/dev/zero of=/dev/mapper/smoke-linear bs=1M count=8 oflag=direct status=none
dmsetup remove smoke-linear
[ ! -e /dev/mapper/smoke-linear ]
echo "smoke ok"
