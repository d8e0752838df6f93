#!/bin/bash
# timeout: 1800
# The copy's work-item hops on brd: base.ko against hop.ko (stop 27: the
# commit that lets a copy take its next step in its bio's end in process
# context), six rounds in rotated order.  Straight on the devices, no NBD:
# port 4 KiB first touch QD1 (8 MiB) and QD32 (32 MiB), 4 KiB chunks; top
# 4 KiB first touch with 64 KiB chunks (a copy-up each) QD1 (8 MiB) and
# QD32 (32 MiB).  top.ko: the same for top copy-ups only (not the port's).
# Run with DMR_NO_BUILD=1 (the guest loads its own modules).
set -u
# shellcheck source=bench/experiments/brd.sh
. "$REPO/bench/experiments/brd.sh"
VARIANTS=(base hop top)
mk() { # variant chunk-sectors
	insmod "$EXP/$1.ko" || { echo "not ok - insmod $1"; exit 1; }
	blank_stores
	dmsetup create top --table "0 $BS replication secondary /dev/ram0 /dev/ram1 /dev/ram2 $2" || exit 1
	dmsetup create port --table "0 $BS replication port /dev/ram0" || exit 1
}
rm_() { dmsetup remove port; dmsetup remove top; rmmod dm_replication; }
for round in 1 2 3 4 5 6; do
	for v in $(rot "$round" "${VARIANTS[@]}"); do
		mk "$v" 8
		a=$(fj /dev/mapper/port 1 8M 0)
		b=$(fj /dev/mapper/port 32 32M $((64 * 1048576)))
		rm_
		mk "$v" 128
		c=$(fj /dev/mapper/top 1 8M 0)
		d=$(fj /dev/mapper/top 32 32M $((64 * 1048576)))
		rm_
		echo "RESULT round=$round variant=$v port_qd1_first=$a port_qd32_first=$b top_copyup_qd1=$c top_copyup_qd32=$d"
	done
done
echo "ok - done"
