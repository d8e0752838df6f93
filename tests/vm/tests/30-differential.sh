#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# timeout: 900
#
# Randomized differential test of the secondary and its port against a model
# (tests/vm/differential.py): random top and port writes and reads,
# checkpoints, suspend/resume, reloads and remove+recreate, whole-device
# comparisons, status counts, and a final stop.  Each seed starts a new
# session (both stores' first 4 KiB zeroed).
#
# Defaults (the contract): seeds 1..5, 2000 ops each, 4 KiB chunks over an
# 8 MiB secondary; then seed 6 with 32 KiB chunks and a top 72 sectors short
# of the secondary: its last chunk is partial (56 sectors) and the port, at
# full length, also writes past it (the sectors beyond the top's length, and
# a whole chunk beyond its last); then seed 7, 2000 ops, 4 KiB chunks with
# "port_copy_chunks 4" (a port first touch copies the chunks around it too).
#
# Two backends: brd (no write cache: the block layer drops flushes and FUA
# before they reach dm) and the virtio scratch disks (write-back cache, so
# top fsyncs and O_DSYNC writes reach the target as FLUSH and FUA).  Seeds
# 1..3 run on brd, 4, 5 and 6 on virtio.  Each device is a dm-linear: an
# 8 MiB secondary, 16 MiB stores that hold more chunks than the secondary
# has, so they never fill up.
#
# Quick runs (the harness passes no environment: use a wrapper test that
# exports these and runs this script):
#   DIFF_SEEDS="1 4" DIFF_OPS=300 DIFF_TAIL_SEED=6 DIFF_TAIL_OPS=300
#   DIFF_TAIL_SEED= (no tail-chunk seed)  DIFF_VIRTIO_SEEDS="4 5 6"
#   DIFF_UNIT_SEED= (no copy-unit seed)  DIFF_UNIT_OPS=300
. "$REPO/tests/vm/lib.sh"

SEEDS=${DIFF_SEEDS-1 2 3 4 5}
OPS=${DIFF_OPS:-2000}
CHUNK=${DIFF_CHUNK:-8}
TAIL_SEED=${DIFF_TAIL_SEED-6}
TAIL_OPS=${DIFF_TAIL_OPS:-$OPS}
TAIL_CHUNK=${DIFF_TAIL_CHUNK:-64}
UNIT_SEED=${DIFF_UNIT_SEED-7}
UNIT_OPS=${DIFF_UNIT_OPS:-$OPS}
VIRTIO_SEEDS=" ${DIFF_VIRTIO_SEEDS-4 5 6} "
SEC_SECTORS=$((${DIFF_SEC_MIB:-8} * 2048))
STORE_SECTORS=$((16 * 2048))
DIFF=$REPO/tests/vm/differential.py

trap 'dm_remove_all' EXIT
ram_disks 3 16
read -r -a VD <<<"$DISKS"
[ ${#VD[@]} -ge 3 ] || die "need three scratch disks, have: $DISKS"
for b in ram vd; do
	if [ $b = ram ]; then
		set -- /dev/ram0 /dev/ram1 /dev/ram2
	else
		set -- "${VD[@]:0:3}"
	fi
	dmsetup create ${b}sec --table "0 $SEC_SECTORS linear $1 0" &&
		dmsetup create ${b}hid --table "0 $STORE_SECTORS linear $2 0" &&
		dmsetup create ${b}act --table "0 $STORE_SECTORS linear $3 0" ||
		die "cannot create the $b devices"
done
echo "# write cache: brd $(cat /sys/block/ram0/queue/write_cache)," \
	"virtio $(cat "/sys/block/${VD[0]#/dev/}/queue/write_cache")"

# run_seed SEED OPS CHUNK [differential.py options...]
run_seed() {
	local seed=$1 ops=$2 chunk=$3 b=ram rc start
	shift 3
	[[ $VIRTIO_SEEDS == *" $seed "* ]] && b=vd
	blank_session $b
	start=$SECONDS
	python3 "$DIFF" "$seed" "$ops" "$chunk" --secondary /dev/mapper/${b}sec \
		--hidden /dev/mapper/${b}hid --active /dev/mapper/${b}act "$@" \
		>"$TMPDIR/seed$seed" 2>&1
	rc=$?
	diff_verdict "$seed" $rc "seed $seed, chunk $chunk, $b: $ops ops" $start
}

for seed in $SEEDS; do
	run_seed "$seed" "$OPS" "$CHUNK"
done
if [ -n "$TAIL_SEED" ]; then
	run_seed "$TAIL_SEED" "$TAIL_OPS" "$TAIL_CHUNK" \
		--top-len $((SEC_SECTORS - 72)) --port-len $SEC_SECTORS
fi
if [ -n "$UNIT_SEED" ]; then
	run_seed "$UNIT_SEED" "$UNIT_OPS" "$CHUNK" --port-copy-chunks 4
fi

dm_remove_all
finish
