#!/bin/bash
# timeout: 360
# kernels: 6.12
# soak: primary crash replay, thousands of points
# soak-timeout: 3600
#
# Crash replay of a primary: every write of a stamped workload is logged with
# dm-log-writes, then the log is replayed to many points and each is checked
# as a crash of the primary there.
#
# local, the metadata device (the out-of-sync log) and the remote are linear
# slices of one loop device (direct I/O) over one dm-log-writes device, as
# 41-crash-replay's stack is (its header says why a loop device: the log then
# keeps the completion order), so the log holds one total order of all the
# writes to the three.  tests/vm/primary_replay.py work runs crash.py's
# stamped writer twice on the primary (writes inside a region, and inside a
# pair of regions, so many are split), with fdatasync, O_DSYNC writes and the
# "checkpoint" barrier; after each acknowledged durability point a "mark"
# goes into the log.  The two writers never write the same sector at once
# (below).  Then primary_replay.py check replays the log onto a
# fresh base incrementally and at every chosen point (just after a FLUSH or
# FUA entry, or a random entry) puts a throw-away dm-snapshot over the base,
# reads local and remote as the crash left them, loads the primary table on
# slices of it with the same metadata, waits (bounded) until it is running
# with no region out of sync, and checks the rules of a crash between the
# last mark in the prefix and the next one: the remote held every write
# acknowledged durable (a checkpoint's promise included); every region in
# which local and remote differed is out of sync in the log on the metadata
# device, and the reload found as many out of sync as the log has; every
# write acknowledged durable reads back from the primary (unless a later
# write of the sector may be there); every sector is a whole stamp of a write
# to it that may be there, or zero; and after the resync the remote equals
# local byte for byte, the promise of a write-intent log: a region was marked
# out of sync on disk before any write to it was issued.  A failing point is
# a "not ok - entry P: ..." line; P is the prefix length (entries [0, P)).
#
# Two writes of the same sector at once are left out because the primary
# may apply them in one order on local and in the other on the remote: both
# complete, the region goes back in sync, and local and remote differ with no
# crash at all (nothing orders overlapping writes in flight; dm-raid1 does
# not either).  The first version of this test, without the guard, failed that
# way: entry 1584 of seed 43, region 13, sectors 866-881 held write 269
# ([832+64]) on local and write 270 ([866+16], O_DSYNC, issued 2.7 ms after
# 269 and completed before it) on the remote, the log had every region in
# sync.  A test of that rule alone belongs with 60-primary.
#
# Part two, volatile write caches: local, the metadata and the remote each
# on its own log-writes device (and its own loop device), so each log knows
# its own flushes.  The same workload; at each durability point, and at
# random moments between (--crash-every), the primary is suspended (nothing
# in flight to the three), each log gets the same mark, the primary is
# resumed.  check --cache replays each log up to its last FLUSH or FUA
# before each mark: a power cut that empties every device's cache.  Local
# and the remote are flushed at different times (a checkpoint flushes the
# remote alone), so they lose different writes.  The same rules, and the
# one this part is for: a region in which local and the remote then differ
# is out of sync in the log, because the log writes a region in sync only
# after both are flushed (dmr_flush_devices(), dm-raid1's mirror_flush()).
# Without that flush (the code before 8af918f) 13 of 134 points failed,
# e.g. m12: region 12 held write 10 on local and write 23 on the remote, in
# sync in the log.
#
# Not tested: a remote that fails (degraded), whose regions 62-primary-crash
# covers with dm-flakey cuts; FUA alone, as in 41; and a crash in the middle
# of a flush of both devices (part two's instants have nothing in flight).
# 6.12 only: 41-crash-replay and
# 62-primary-crash cover the kernel interfaces (log-writes' FLUSH and FUA
# ordering, the dirty log's flush) on 6.1.
. "$REPO/tests/vm/lib.sh"

LEN=2048		# 1 MiB local and remote
META=2048		# 1 MiB metadata
RS=64			# 32 KiB regions: 32 of them
DISK_LEN=$((2 * LEN + META))
PY="python3 $REPO/tests/vm/primary_replay.py"
replay_prepare

# A point costs ~0.3 s under TCG (two reads, the load and resync, two
# reads, the checks, the removal).  make check: one session, ~190 points;
# make soak: three sessions, longer workloads, ~1300 points each.
if [ -n "${DMR_SOAK:-}" ]; then
	DURATION=10 FLUSH_POINTS=1000 RANDOM_POINTS=300 SEEDS="43 44 45"
	CRASH_EVERY=0.05 MARK_POINTS=0 CSEEDS="143 144 145"
else
	DURATION=3 FLUSH_POINTS=150 RANDOM_POINTS=40 SEEDS="43"
	CRASH_EVERY=0.1 MARK_POINTS=150 CSEEDS="143"
fi

# num SED: the number the sed script SED prints from $out, or 0.
num() {
	local n
	n=$(sed -n "$1" <<<"$out" | head -n 1)
	echo "${n:-0}"
}

# session SEED: a workload over a fresh log, then the replay check.
session() {
	local seed=$1 t0=$SECONDS out rc
	dm_remove_all
	replay_disk_up $DISK_LEN
	dmsetup create rloc0 --table "0 $LEN linear $LOOP 0" &&
		dmsetup create rmeta0 --table "0 $META linear $LOOP $LEN" &&
		dmsetup create rrem0 --table "0 $LEN linear $LOOP $((LEN + META))" ||
		die "cannot create the slices"
	dmsetup create pri --table "0 $LEN replication primary /dev/mapper/rloc0 /dev/mapper/rrem0 4 metadata /dev/mapper/rmeta0 region_size $RS" ||
		die "cannot load the primary"
	echo "# session: seed $seed, workload ${DURATION}s"
	$PY work --pri pri --lw lw --region-size $RS --seed $seed --duration $DURATION \
		--log "$TMPDIR/ops.$seed" ||
		not_ok "seed $seed: the workload saw errors"
	dmsetup remove pri && dmsetup remove rloc0 rmeta0 rrem0 ||
		die "cannot tear down the logged stack"
	replay_disk_down $DISK_LEN
	out=$($PY check --log "$TMPDIR/ops.$seed" --lwlog $LOGDEV --base /dev/mapper/rbase \
		--cow /dev/mapper/cowa,/dev/mapper/cowb --len $LEN --meta-len $META \
		--region-size $RS --seed $seed --flush-points $FLUSH_POINTS \
		--random-points $RANDOM_POINTS)
	rc=$?
	echo "$out"
	POINTS=$((POINTS + $(num 's/^# checked \([0-9]*\) .*/\1/p')))
	FPOINTS=$((FPOINTS + $(num 's/^# checked [0-9]* replay points (\([0-9]*\) flush.*/\1/p')))
	RPOINTS=$((RPOINTS + $(num 's/^# checked .* flush points, \([0-9]*\) random.*/\1/p')))
	FAILS=$((FAILS + $(num 's/^# checked .* random), \([0-9]*\) failures.*/\1/p')))
	if [ $rc -eq 0 ]; then
		ok "seed $seed: every replay point of the primary consistent ($((SECONDS - t0))s)"
	else
		not_ok "seed $seed: replay points of the primary inconsistent"
		cp "$TMPDIR/ops.$seed" "$OUT/43-primary-replay.ops.$seed.json" 2>/dev/null
	fi
	dmsetup remove rbase cowa cowb
}

# Part two, volatile caches: three log-writes devices, one per device.
LOGLEN=655360		# 320 MiB of LOGDEV for each log
DEVS="loc meta rem"
declare -A CLOOP	# the loop device over each log-writes device

# cache_session SEED: a workload over three fresh logs, then the replay check.
cache_session() {
	local seed=$1 t0=$SECONDS out rc d off=0 i=0 len loop
	dm_remove_all
	losetup -D
	blkdiscard -z -l $((DISK_LEN * 512)) $BASE_DISK 2>/dev/null ||
		dd if=/dev/zero of=$BASE_DISK bs=1M count=$((DISK_LEN / 2048)) oflag=direct status=none
	for d in $DEVS; do
		len=$LEN
		[ $d = meta ] && len=$META
		dmsetup create c$d --table "0 $len linear $REAL $off" &&
			dmsetup create l$d --table "0 $LOGLEN linear $LOGDEV $((i * LOGLEN))" ||
			die "cannot create the $d slices"
		dd if=/dev/zero of=/dev/mapper/c$d bs=512 count=$len oflag=direct status=none &&
			dd if=/dev/zero of=/dev/mapper/l$d bs=1M count=1 oflag=direct status=none &&
			dmsetup create lw$d --table "0 $len log-writes /dev/mapper/c$d /dev/mapper/l$d" ||
			die "cannot create log-writes for $d"
		loop=$(losetup --direct-io=on -f --show /dev/mapper/lw$d) ||
			die "cannot set up the loop device for $d"
		CLOOP[$d]=$loop
		off=$((off + len)) i=$((i + 1))
	done
	dmsetup create pri --table "0 $LEN replication primary ${CLOOP[loc]} ${CLOOP[rem]} 4 metadata ${CLOOP[meta]} region_size $RS" ||
		die "cannot load the primary"
	echo "# cache session: seed $seed, workload ${DURATION}s"
	$PY work --pri pri --lw lwloc,lwmeta,lwrem --region-size $RS --seed $seed \
		--duration $DURATION --crash-every $CRASH_EVERY --log "$TMPDIR/cops.$seed" ||
		not_ok "cache seed $seed: the workload saw errors"
	dmsetup remove pri || die "cannot remove the primary"
	for d in $DEVS; do
		losetup -d ${CLOOP[$d]} && dmsetup remove lw$d c$d ||
			die "cannot tear down the logged $d"
	done
	dmsetup create rbase --table "0 $DISK_LEN linear $BASE_DISK 0" &&
		dmsetup create cowa --table "0 262144 linear $COW 0" &&
		dmsetup create cowb --table "0 262144 linear $COW 262144" ||
		die "cannot create the base and the COW devices"
	out=$($PY check --cache --log "$TMPDIR/cops.$seed" \
		--lwlog /dev/mapper/lloc,/dev/mapper/lmeta,/dev/mapper/lrem \
		--base /dev/mapper/rbase --cow /dev/mapper/cowa,/dev/mapper/cowb --len $LEN \
		--meta-len $META --region-size $RS --seed $seed --mark-points $MARK_POINTS)
	rc=$?
	echo "$out"
	CPOINTS=$((CPOINTS + $(num 's/^# checked \([0-9]*\) cache points.*/\1/p')))
	CFAILS=$((CFAILS + $(num 's/^# checked .* crash), \([0-9]*\) failures.*/\1/p')))
	if [ $rc -eq 0 ]; then
		ok "cache seed $seed: every crash instant of the primary consistent ($((SECONDS - t0))s)"
	else
		not_ok "cache seed $seed: crash instants of the primary inconsistent"
		cp "$TMPDIR/cops.$seed" "$OUT/43-primary-replay.cops.$seed.json" 2>/dev/null
	fi
	dmsetup remove rbase cowa cowb
}

POINTS=0 FPOINTS=0 RPOINTS=0 FAILS=0 CPOINTS=0 CFAILS=0
for s in $SEEDS; do
	session $s
done
echo "# checked $POINTS replay points ($FPOINTS flush points, $RPOINTS random), $FAILS failures"
for s in $CSEEDS; do
	cache_session $s
done
echo "# checked $CPOINTS cache points, $CFAILS failures"
finish
