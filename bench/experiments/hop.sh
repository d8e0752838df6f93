#!/bin/bash
# timeout: 1800
# The done_work hop of a whole-chunk first touch on brd: base.ko against
# hop.ko (stop 26: hop.patch, measuring only, unsafe; stop 27: the commit
# that maps in the bio's end safely), six rounds in rotated
# order; top 4 KiB first touch QD1 (32 MiB) and with fsync=1 (8 MiB).
# Run with DMR_NO_BUILD=1 (the guest loads its own modules).
set -u
# shellcheck source=bench/experiments/brd.sh
. "$REPO/bench/experiments/brd.sh"
VARIANTS=(base hop)
mk() {
	insmod "$EXP/$1.ko" || { echo "not ok - insmod $1"; exit 1; }
	blank_stores
	dmsetup create top --table "0 $BS replication secondary /dev/ram0 /dev/ram1 /dev/ram2 8" || exit 1
}
rm_() { dmsetup remove top; rmmod dm_replication; }
for round in 1 2 3 4 5 6; do
	for v in $(rot "$round" "${VARIANTS[@]}"); do
		mk "$v"
		a=$(fj /dev/mapper/top 1 32M 0)
		dmsetup message top 0 checkpoint
		b=$(fj /dev/mapper/top 1 8M $((64 * 1048576)) 1)
		rm_
		echo "RESULT round=$round variant=$v top_qd1_first=$a top_fsync1_first=$b"
	done
done
echo "ok - done"
