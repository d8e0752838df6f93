#!/bin/bash
# timeout: 480
# kernels: 6.12
# soak: failover crash replay, every flush point
# soak-timeout: 3600
#
# Crash replay of a failover: the stack of 41-crash-replay (the secondary
# device, hidden and active on slices of one loop device over one
# dm-log-writes device), with failover_crash.py's history (an exact model,
# then the mark "h"), then commit_depth, "failover" and a top writer during
# the merge, with a mark after every acknowledged durability point.
# tests/vm/failover_replay.py check replays the log to points after "h" (at
# FLUSH and FUA entries and at random ones) and checks each as a crash
# between its marks: the top loads (running, failover or done), every top
# sector holds E0 or a merge-phase write that may have reached the disk and
# no durable write is lost, and the merge resumes by itself and ends with
# the secondary device holding the same.  A failing point is a
# "not ok - entry P: ..." line.  6.12 only: 41-crash-replay covers the
# kernel interfaces on 6.1.
. "$REPO/tests/vm/lib.sh"

SEC_LEN=4096		# 2 MiB secondary
STORE_LEN=6144		# 3 MiB hidden and active
PY="python3 $REPO/tests/vm/failover_replay.py"
replay_prepare

# A point costs ~1 s under TCG (load, read, the resumed merge, read).
if [ -n "${DMR_SOAK:-}" ]; then
	FLUSH_POINTS=0 RANDOM_POINTS=200 SESSIONS="8:51 32:52 8:53"
else
	FLUSH_POINTS=0 RANDOM_POINTS=30 SESSIONS="8:51"
fi

# session CHUNK SEED: a workload over a fresh log, then the replay check.
session() {
	local chunk=$1 seed=$2 t0=$SECONDS out rc
	dm_remove_all
	replay_stack_up $chunk
	echo "# session: chunk $chunk, seed $seed"
	$PY work --top top --port port --sec /dev/mapper/rsec0 --lw lw --chunk $chunk \
		--seed $seed --log "$TMPDIR/ops.$seed" ||
		not_ok "chunk $chunk: the workload saw errors"
	replay_stack_down
	out=$($PY check --log "$TMPDIR/ops.$seed" --lwlog $LOGDEV --base /dev/mapper/rbase \
		--cow /dev/mapper/cowa,/dev/mapper/cowb --sec-len $SEC_LEN --store-len $STORE_LEN \
		--chunk $chunk --seed $seed --flush-points $FLUSH_POINTS --random-points $RANDOM_POINTS)
	rc=$?
	echo "$out"
	POINTS=$((POINTS + $(sed -n 's/^# checked \([0-9]*\) .*/\1/p' <<<"$out")))
	FAILS=$((FAILS + $(sed -n 's/^# checked .* random), \([0-9]*\) failures.*/\1/p' <<<"$out")))
	if [ $rc -eq 0 ]; then
		ok "chunk $chunk, seed $seed: every replay point of the failover consistent ($((SECONDS - t0))s)"
	else
		not_ok "chunk $chunk, seed $seed: replay points of the failover inconsistent"
		cp "$TMPDIR/ops.$seed" "$OUT/42-failover-replay.ops.$seed.json" 2>/dev/null
	fi
	dmsetup remove rbase cowa cowb
}

POINTS=0 FAILS=0
for s in $SESSIONS; do
	session ${s%:*} ${s#*:}
done
echo "# checked $POINTS replay points of a failover, $FAILS failures"
finish
