#!/bin/bash
# timeout: 1800
# Hidden's persist for the port's copies (stop 28) on brd: base.ko (1c042f8:
# the worker flushes, writes the record block and flushes again, waiting
# for each) against hidden.ko, the module under test.  Stop 28 tried four:
# a persist started without waiting, whose end sends the port writes, for
# every persist, or only with no copy in flight, or only for the lone bio in
# flight (e877563); then (kept) the worker's own commit in one
# REQ_PREFLUSH | REQ_FUA write of the record block, for the lone bio only.
# Straight on the devices, no NBD: port 4 KiB first touch QD1 (8 MiB) and
# QD32 (32 MiB), 4 KiB chunks; six rounds in rotated order; RESULT lines.
# Run with DMR_NO_BUILD=1 (the guest loads its own modules).
set -u
# shellcheck source=bench/experiments/brd.sh
. "$REPO/bench/experiments/brd.sh"
VARIANTS=(base hidden)
mk() {
	insmod "$EXP/$1.ko" || { echo "not ok - insmod $1"; exit 1; }
	blank_stores
	dmsetup create top --table "0 $BS replication secondary /dev/ram0 /dev/ram1 /dev/ram2 8" || exit 1
	dmsetup create port --table "0 $BS replication port /dev/ram0" || exit 1
}
rm_() { dmsetup remove port; dmsetup remove top; rmmod dm_replication; }
for round in 1 2 3 4 5 6; do
	for v in $(rot "$round" "${VARIANTS[@]}"); do
		mk "$v"
		a=$(fj /dev/mapper/port 1 8M 0)
		b=$(fj /dev/mapper/port 32 32M $((64 * 1048576)))
		rm_
		echo "RESULT round=$round variant=$v port_qd1_first=$a port_qd32_first=$b"
	done
done
echo "ok - done"
