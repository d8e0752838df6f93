#!/bin/bash
# timeout: 420
# soak: crash replay, thousands of points
# soak-timeout: 5400
#
# Crash replay: every write of a stamped workload is logged with dm-log-writes,
# then the log is replayed to many points and each is checked as a crash there.
#
# The secondary device, hidden and active are linear slices of one log-writes
# device (over a scratch disk, its log on another), so the log holds one total
# order of all the writes to the three.  The top and the port run crash.py's
# workload (tests/vm/crash_replay.py work): writes, fdatasync, O_DSYNC writes,
# checkpoints; after each acknowledged durability point a "mark" goes into the
# log.  Then crash_replay.py check replays the log onto a fresh base
# incrementally and at every chosen point (just after a FLUSH or FUA entry, or
# a random entry) puts a throw-away dm-snapshot over the base, loads the top
# and the port on slices of it, and checks crash.py's rules (a)-(d) as for a
# crash between the last mark in the prefix and the next one: the table loads
# and is running, every write acknowledged durable before that mark reads
# back (unless a checkpoint dropped it or a later write replaced it), every
# sector is a whole stamp of a write that may be there, the epoch is one that
# was committed, the port reads the secondary device.  A failing point is a
# "not ok - entry P: ..." line; P is the prefix length (entries [0, P)).
#
# The slices sit on one loop device (direct I/O) over the log-writes device,
# because dm-log-writes logs a plain write only with the next flush, when that
# flush completes, but a FUA write at its own completion.  So a FUA write was
# logged before plain writes that completed before it (a replay put a chunk's
# copy-up over the O_DSYNC top write that followed it), and of two flushes in
# flight the later one's writes could be logged first (a replay put an older
# port write over a newer, flushed one): states no disk can hold.  A loop
# device has a write cache and no FUA, so the block layer turns a FUA write
# into a write and a flush, and it keeps one flush in flight at a time: the
# log keeps the completion order.  The price: FUA alone is not tested (a FUA
# write here also flushes what completed before it).
#
# Points during a failover: 42-failover-replay; of a primary: 43-primary-replay.
. "$REPO/tests/vm/lib.sh"

SEC_LEN=2048		# 1 MiB secondary
STORE_LEN=3072		# 1.5 MiB hidden and active
PY="python3 $REPO/tests/vm/crash_replay.py"
replay_prepare

# A point costs ~0.8 s under TCG (the loads and removals of the top and the
# port, reading and checking it).  make check: one session, ~260 points;
# make soak: two sessions, longer workloads, every flush point.
if [ -n "${DMR_SOAK:-}" ]; then
	DURATION=10 FLUSH_POINTS=0 RANDOM_POINTS=400 SESSIONS="8:41 32:42"
else
	DURATION=3 FLUSH_POINTS=200 RANDOM_POINTS=60 SESSIONS="8:41"
fi

# session CHUNK SEED: a workload over a fresh log, then the replay check.
session() {
	local chunk=$1 seed=$2 t0=$SECONDS out
	dm_remove_all
	replay_stack_up $chunk
	echo "# session: chunk $chunk, seed $seed, workload ${DURATION}s"
	$PY work --top top --port port --lw lw --chunk $chunk --seed $seed \
		--duration $DURATION --log "$TMPDIR/ops.$seed" ||
		not_ok "chunk $chunk: the workload saw errors"
	replay_stack_down
	out=$($PY check --log "$TMPDIR/ops.$seed" --lwlog $LOGDEV --base /dev/mapper/rbase \
		--cow /dev/mapper/cowa,/dev/mapper/cowb --sec-len $SEC_LEN --store-len $STORE_LEN --chunk $chunk \
		--seed $seed --flush-points $FLUSH_POINTS --random-points $RANDOM_POINTS --diagnose)
	local rc=$?
	echo "$out"
	POINTS=$((POINTS + $(sed -n 's/^# checked \([0-9]*\) .*/\1/p' <<<"$out")))
	FPOINTS=$((FPOINTS + $(sed -n 's/^# checked [0-9]* replay points (\([0-9]*\) flush.*/\1/p' <<<"$out")))
	RPOINTS=$((RPOINTS + $(sed -n 's/^# checked .* flush points, \([0-9]*\) random.*/\1/p' <<<"$out")))
	FAILS=$((FAILS + $(sed -n 's/^# checked .* random), \([0-9]*\) failures.*/\1/p' <<<"$out")))
	if [ $rc -eq 0 ]; then
		ok "chunk $chunk, seed $seed: every replay point consistent ($((SECONDS - t0))s)"
	else
		not_ok "chunk $chunk, seed $seed: replay points inconsistent"
		cp "$TMPDIR/ops.$seed" "$OUT/41-crash-replay.ops.$seed.json" 2>/dev/null
	fi
	dmsetup remove rbase cowa cowb
}

POINTS=0 FPOINTS=0 RPOINTS=0 FAILS=0
for s in $SESSIONS; do
	session ${s%:*} ${s#*:}
done
echo "# checked $POINTS replay points ($FPOINTS flush points, $RPOINTS random), $FAILS failures"
finish
