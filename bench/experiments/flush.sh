#!/bin/bash
# timeout: 1800
# A top flush that commits active's records itself (stop 28), on brd:
# base.ko (19b7c7c: every top flush with records pending hops to the
# worker, which flushes, writes the record block and flushes again) against
# async.ko (the flush's map() starts one REQ_PREFLUSH | REQ_FUA write of the
# record block, and the flush ends in that write's end), with dm-snapshot
# (persistent, 4 KiB chunks) as the peer in the same run.  Top 4 KiB first
# touch with fsync=1 over 8 MiB, and QD1 over 32 MiB; six rounds in rotated
# order; RESULT lines.  Run with DMR_NO_BUILD=1 (the guest loads its own
# modules).
set -u
# shellcheck source=bench/experiments/brd.sh
. "$REPO/bench/experiments/brd.sh"
modprobe dm-snapshot || exit 1
VARIANTS=(base async snapshot)
mk() {
	blank_stores
	if [ "$1" = snapshot ]; then
		dmsetup create top --table "0 $BS snapshot /dev/ram0 /dev/ram1 P 8" || exit 1
		return
	fi
	insmod "$EXP/$1.ko" || { echo "not ok - insmod $1"; exit 1; }
	dmsetup create top --table "0 $BS replication secondary /dev/ram0 /dev/ram1 /dev/ram2 8" || exit 1
}
rm_() { dmsetup remove top; [ "$1" = snapshot ] || rmmod dm_replication; }
for round in 1 2 3 4 5 6; do
	for v in $(rot "$round" "${VARIANTS[@]}"); do
		mk "$v"
		a=$(fj /dev/mapper/top 1 8M 0 1)
		b=$(fj /dev/mapper/top 1 32M $((64 * 1048576)))
		rm_ "$v"
		echo "RESULT round=$round variant=$v top_fsync1_first=$a top_qd1_first=$b"
	done
done
echo "ok - done"
