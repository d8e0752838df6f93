#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# timeout: 600
# kernels: 6.12
#
# Randomized differential test of a failover (tests/vm/differential.py
# --failover): a random history of top and port writes, reads, checkpoints,
# suspends and reloads (as 30-differential), then a fill (top and port
# writes anywhere, no checkpoint) so the merge has work, then "failover"
# while random top writes and reads go on, every read checked against the
# model: the top shows what it showed at the failover overlaid with every
# top write since.  During the merge port writes must fail with EIO, port
# reads show each sector old or merged, status counts down, messages
# (checkpoint, stop, failover, commit_depth) change nothing, suspend pauses
# the merge, reloads and recreates resume it and a new port is refused.
# After "done" the top and the secondary device both equal the model, more
# top I/O goes straight to the secondary, and done survives a recreate.
#
# Seeds: 4 KiB chunks and 32 KiB chunks with a top 72 sectors short of the
# secondary (the merge must not write past the top's end), each on brd (no
# write cache) and on the virtio scratch disks (write-back cache: flushes
# reach the target).  Each seed starts a new session.  During the merge the
# secondary device's writes are delayed (dm-delay swapped in under it,
# FO_SLOW_MS, default 3 ms), so that the merge lasts seconds.
#
# Environment (for a wrapper test): FO_OPS, FO_FILL, FO_SEEDS_BRD,
# FO_SEEDS_VD (each "SEED:CHUNK:COMMIT_DEPTH[:short]"), FO_MODEL_BUG (none,
# drop-write, port-wins: a broken model, the test must then fail),
# FO_SLOW_MS.
. "$REPO/tests/vm/lib.sh"

OPS=${FO_OPS:-600}
FILL=${FO_FILL:-1500}
SEEDS_BRD=${FO_SEEDS_BRD-551:8:1 552:64:1:short 555:8:8}
SEEDS_VD=${FO_SEEDS_VD-553:8:1 554:64:2:short 556:8:64}
MODEL_BUG=${FO_MODEL_BUG:-none}
SLOW_MS=${FO_SLOW_MS:-3}
SEC_SECTORS=$((16 * 2048))
STORE_SECTORS=$((32 * 2048))
DIFF=$REPO/tests/vm/differential.py

trap 'dm_remove_all' EXIT
modprobe dm-delay 2>/dev/null
dmsetup targets | grep -q '^delay' || die "no dm-delay"
ram_disks 3 32
declare -A LINEAR
read -r -a VD <<<"$DISKS"
[ ${#VD[@]} -ge 3 ] || die "need three scratch disks, have: $DISKS"
for b in ram vd; do
	if [ $b = ram ]; then
		set -- /dev/ram0 /dev/ram1 /dev/ram2
	else
		set -- "${VD[@]:0:3}"
	fi
	LINEAR[$b]="0 $SEC_SECTORS linear $1 0"
	dmsetup create ${b}sec --table "${LINEAR[$b]}" &&
		dmsetup create ${b}hid --table "0 $STORE_SECTORS linear $2 0" &&
		dmsetup create ${b}act --table "0 $STORE_SECTORS linear $3 0" ||
		die "cannot create the $b devices"
done
echo "# write cache: brd $(cat /sys/block/ram0/queue/write_cache)," \
	"virtio $(cat "/sys/block/${VD[0]#/dev/}/queue/write_cache")"

# run_seed BACKEND SEED:CHUNK:COMMIT_DEPTH[:short]
run_seed() {
	local b=$1 seed chunk depth short rc start
	IFS=: read -r seed chunk depth short <<<"$2"
	local opt=()
	[ -n "$short" ] && opt=(--top-len "$((SEC_SECTORS - 72))" --port-len "$SEC_SECTORS")
	# A seed that failed may have left dm-delay under the secondary.
	dmsetup reload ${b}sec --table "${LINEAR[$b]}" && dmsetup resume ${b}sec ||
		die "cannot restore ${b}sec"
	blank_session $b
	start=$SECONDS
	python3 "$DIFF" "$seed" "$OPS" "$chunk" --secondary /dev/mapper/${b}sec \
		--hidden /dev/mapper/${b}hid --active /dev/mapper/${b}act \
		--failover --fill "$FILL" --commit-depth "$depth" \
		--slow-dm ${b}sec --slow-ms "$SLOW_MS" \
		--model-bug "$MODEL_BUG" "${opt[@]}" \
		>"$TMPDIR/seed$seed" 2>&1
	rc=$?
	diff_verdict "$seed" $rc "seed $seed, chunk $chunk${short:+ (short top)}, commit_depth $depth, $b: $OPS ops, failover" $start
}

for s in $SEEDS_BRD; do
	run_seed ram "$s"
done
for s in $SEEDS_VD; do
	run_seed vd "$s"
done

dm_remove_all
finish
