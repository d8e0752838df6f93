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
# The peer in place of a module variant.
mk_or_snapshot() {
	[ "$1" = snapshot ] || { mk "$1" 8; return; }
	blank_stores
	dmsetup create top --table "0 $BS snapshot /dev/ram0 /dev/ram1 P 8" || exit 1
}
rm_or_snapshot() { if [ "$1" = snapshot ]; then dmsetup remove top; else rm_; fi; }
one() {
	local a b
	mk_or_snapshot "$1"
	a=$(fj /dev/mapper/top 1 8M 0 1)
	b=$(fj /dev/mapper/top 1 32M $((64 * 1048576)))
	rm_or_snapshot "$1"
	echo "top_fsync1_first=$a top_qd1_first=$b"
}
rounds one base async snapshot
