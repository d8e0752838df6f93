#!/bin/bash
# timeout: 300
#
# The dm-replication demo, run inside the test VM by tools/demo.
# It builds the secondary's stack on ram disks with plain dmsetup:
#
#   /dev/mapper/top   (replication secondary: what the secondary VM uses)
#        |  active  COW: the secondary VM's own writes since the checkpoint
#        |  hidden  COW: what the primary's writes overwrote since then
#   secondary disk    <--  /dev/mapper/port (replication port: primary's writes)
set -eu

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { echo "# $*"; "$@"; }

say "1. Devices: a 256 MiB secondary disk and two 64 MiB COW stores (brd)"
modprobe brd rd_nr=3 rd_size=$((256 * 1024))
SEC=/dev/ram0 HID=/dev/ram1 ACT=/dev/ram2
SIZE=$(blockdev --getsz $SEC)

say "2. The secondary's top device, 4 KiB chunks"
run dmsetup create top --table "0 $SIZE replication secondary $SEC $HID $ACT 8"
say "3. The port, where the primary's writes arrive (export it with nbd-server)"
run dmsetup create port --table "0 $SIZE replication port $SEC"

say "4. What the kernel holds"
run dmsetup table top
run dmsetup status top
run dmsetup table port
run dmsetup status port
run dmsetup ls --tree

say "5. A port is refused when no secondary is loaded over the disk"
run dmsetup remove port
run dmsetup remove top
if dmsetup create port --table "0 $SIZE replication port $SEC" 2>/dev/null; then
	echo "unexpected: port accepted"; exit 1
fi
dmesg | grep 'replication:' | tail -n 1

say "Done (the data path arrives with the secondary-mode work)."
