#!/bin/bash
# timeout: 300
#
# The dm-replication demo, run inside the test VM by tools/demo (make demo).
# It builds the secondary's stack with plain dmsetup and tells the COLO story:
#
#   /dev/mapper/top   (replication secondary: what the secondary VM uses)
#        |  active  COW: the secondary VM's own writes since the checkpoint
#        |  hidden  COW: what the primary's writes overwrote since then
#   secondary disk    <--  /dev/mapper/port <-- NBD <-- the primary's writes
set -eu

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { echo "# $*"; "$@"; }
# show DEV CHUNK: the first 24 bytes of a 4 KiB chunk
show() {
	printf '%-16s chunk %s: ' "$1" "$2"
	dd if="$1" bs=4096 skip="$2" count=1 iflag=direct status=none | head -c 24
	echo
}
# write DEV CHUNK TEXT: a 4 KiB chunk starting with TEXT
write() {
	{ printf '%s' "$3"; head -c $((4096 - ${#3})) /dev/zero; } |
		dd of="$1" bs=4096 seek="$2" oflag=direct conv=notrunc status=none
}
cleanup() {
	qemu-nbd --disconnect /dev/nbd0 >/dev/null 2>&1 || true
	dmsetup remove_all >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "1. Devices: a 256 MiB secondary disk and two 64 MiB COW stores (brd)"
modprobe brd rd_nr=3 rd_size=$((256 * 1024))
SEC=/dev/ram0 HID=/dev/ram1 ACT=/dev/ram2
SIZE=$(blockdev --getsz $SEC)
for c in 0 1 2; do write $SEC $c "checkpoint-0 data #$c"; done
show $SEC 0

say "2. The secondary's stack: top device over active over hidden over the disk"
run dmsetup create top --table "0 $SIZE replication secondary $SEC $HID $ACT 8 2 low_water_mark 64"
run dmsetup create port --table "0 $SIZE replication port $SEC"
run dmsetup table top
run dmsetup table port
run dmsetup status top

say "3. The port is exported over NBD; the primary's writes arrive through it"
modprobe nbd
mkdir -p /run/lock   # qemu-nbd keeps its socket there
run qemu-nbd --connect=/dev/nbd0 --format=raw --cache=none /dev/mapper/port
blockdev --getsz /dev/nbd0 >/dev/null
write /dev/nbd0 0 "primary wrote this"
run sync
show $SEC 0
show /dev/mapper/top 0
echo "The secondary disk holds the primary's write; the top still reads the old"
echo "chunk, which the port copied into hidden first:"
run dmsetup status top
run dmsetup status port

say "4. The secondary VM writes to its own disk (the top)"
write /dev/mapper/top 1 "secondary VM wrote this"
show /dev/mapper/top 1
show $SEC 1
run dmsetup status top

say "5. Checkpoint: active and hidden become empty; the top reads the disk"
run dmsetup message top 0 checkpoint
run dmsetup status top
show /dev/mapper/top 0
show /dev/mapper/top 1
echo "The VMs were synchronised: the secondary VM's state (and disk) is the primary's."

say "6. Suspend, reload and resume lose nothing"
write /dev/mapper/top 2 "written before reload"
run dmsetup reload top --table "0 $SIZE replication secondary $SEC $HID $ACT 8"
run dmsetup resume top
show /dev/mapper/top 2

say "7. The primary dies: failover merges the stores into the disk while the VM runs"
write /dev/nbd0 0 "primary's last write"
run sync
show /dev/mapper/top 0
show /dev/mapper/top 2
ev=$(dmsetup info -c --noheadings -o events top | tr -d ' ')
run dmsetup message top 0 failover
run dmsetup status top
until dmsetup status top | grep -q ' done '; do
	dmsetup wait top "$ev" >/dev/null; ev=$((ev + 1))
done
run dmsetup status top
echo "The disk now holds the last checkpoint plus the secondary VM's own writes,"
echo "and not the primary's write since the checkpoint:"
show $SEC 0
show $SEC 2
dmesg | grep 'failover' | tail -n 2
if write /dev/nbd0 3 "late primary write" 2>/dev/null && sync 2>/dev/null &&
	[ "$(dd if=$SEC bs=4096 skip=3 count=1 status=none | head -c 18)" = "late primary write" ]; then
	echo "unexpected: the port accepted a write after failover"; exit 1
fi
echo "The port refuses the old primary's writes (EIO), and a new port is refused:"
qemu-nbd --disconnect /dev/nbd0 >/dev/null
run dmsetup remove port
dmsetup create port --table "0 $SIZE replication port $SEC" 2>/dev/null || true
dmesg | grep 'replication:' | tail -n 1

say "8. A bad table says why"
dmsetup create bad --table "0 $SIZE replication secondary $SEC $HID $HID 8" 2>/dev/null || true
dmesg | grep 'replication:' | tail -n 1

say "Done: replication, checkpoints, reloads and a failover, all with plain dmsetup."
