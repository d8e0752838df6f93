#!/bin/bash
# timeout: 720
# kernels: 6.12
#
# Crash consistency: power cuts at random moments while the top and the port
# are written, flushed and checkpointed, then a reload of the same tables over
# the same devices.
#
# Everything sits on one device, "crashdisk", over a scratch disk: the
# secondary device, hidden and active are linear slices of it.  The cut swaps
# crashdisk's table for dm-flakey with drop_writes, always down: from that
# instant no write reaches the disk, on any of the three devices, though every
# write still succeeds.  The workload (tests/vm/crash.py) goes on a little,
# the top and the port are removed (their last commits are dropped too),
# crashdisk becomes linear again (the "reboot"), the top and the port are
# loaded again, and crash.py checks what they show against its log of every
# write, flush and checkpoint, with its start and end time:
#  (a) every top write that completed before a completed flush (fdatasync, or
#      an O_DSYNC write itself) is there, unless a checkpoint may have dropped
#      it or a later top write overwrote it;
#  (b) every sector holds a whole stamp of a write made to that very sector,
#      or what it held before;
#  (c) the top is explained by one epoch: a checkpoint that returned before
#      the cut is never undone; one racing the cut gives the old or the new
#      epoch, for the whole device;
#  (d) the secondary device holds every flushed port write and nothing else,
#      and the top never shows a port write made after the durable checkpoint.
# The rounds of a session go on from the state the previous reload left; two
# sessions (chunk sizes 4 KiB and 16 KiB, the second with port_copy_chunks
# 4), then a cut right after "stop".
#
# A round that fails copies its log to $OUT/40-crash.round<N>.json.
. "$REPO/tests/vm/lib.sh"

PY="python3 $REPO/tests/vm/crash.py"
SEC_LEN=8192		# 4 MiB secondary
STORE_LEN=12288		# 6 MiB hidden and active
DISK_LEN=$((SEC_LEN + 2 * STORE_LEN))
SEED=40
CD=/dev/mapper/crashdisk
SEC=/dev/mapper/rsec HID=/dev/mapper/rhid ACT=/dev/mapper/ract
TOP=/dev/mapper/top PORT=/dev/mapper/port
trap 'dm_remove_all' EXIT

modprobe dm-flakey 2>/dev/null
dmsetup targets | grep -q '^flakey' || { echo "# no dm-flakey"; exit 77; }

FEATURES=0
load_top() {
	dmsetup create top --table "0 $SEC_LEN replication secondary $SEC $HID $ACT $CHUNK $FEATURES" ||
		return 1
	dmsetup create port --table "0 $SEC_LEN replication port $SEC"
}

# crash: tear down what runs on the dead disk, and "reboot" it.
reboot() {
	dmsetup remove port && dmsetup remove top || return 1
	revive_disk
}

# round N MODE [TOP_FLUSH]: a workload, a cut, a reload, a check.  TOP_FLUSH
# is the share of the top's operations that are fdatasync: low, the top
# leaves its records to the periodic commit.
round() {
	local n=$1 mode=$2 flush=${3:-0.12} seed=$((SEED * 100 + $1)) t0=$SECONDS
	echo "# round $n: mode $mode, top flushes $flush, seed $seed, chunk $CHUNK"
	arm_cut || { not_ok "round $n: cannot load the flakey table"; return; }
	$PY work --top $TOP --port $PORT --chunk "$CHUNK" --seed $seed --mode "$mode" \
		--log "$TMPDIR/log.$n" --cut-dm crashdisk --id-base $((n * 1000000)) \
		--top-flush "$flush" ||
		not_ok "round $n: the workload saw errors"
	reboot || die "round $n: cannot tear down after the cut"
	if ! load_top; then
		not_ok "round $n: the tables do not load after the crash"
		dmesg | tail -5
		die "cannot go on"
	fi
	check_eq "$(field top 1) $(field top 2)" "running 0" "round $n: state after reload"
	if $PY verify --top $TOP --sec $SEC --log "$TMPDIR/log.$n" --state "$TMPDIR/state"; then
		ok "round $n ($mode, seed $seed): consistent after the crash ($((SECONDS - t0))s)"
	else
		not_ok "round $n ($mode, seed $seed): inconsistent after the crash"
		cp "$TMPDIR/log.$n" "$OUT/40-crash.round$n.json" 2>/dev/null
	fi
}

crash_disk ${DISKS%% *}
new_session 8
round 1 random
round 2 random 0.003
round 3 ckpt-cut
round 4 nockpt 0.003
round 5 ckpt-cut

# 16 KiB chunks, and a port copy unit of four: a port first touch copies
# up to 64 KiB into hidden, persisted before the port's write goes on.
FEATURES="2 port_copy_chunks 4"
new_session 32
check_eq "$(dmsetup table top | cut -d' ' -f9-)" "2 port_copy_chunks 4" \
	"the second session's table has the copy unit"
round 6 random
round 7 ckpt-cut
round 8 nockpt 0.003
round 9 random 0.003
round 10 ckpt-cut

# Stores without a volatile write cache (brd): a flush of the top must still
# commit the stores' metadata.
FEATURES=0
ram_disks 1 $((DISK_LEN / 2048))
crash_disk /dev/ram0
new_session 8
round 11 random
round 12 nockpt

# Stop, then the cut as soon as the message returned: done is durable, and
# the top is the secondary device.
head -c $((CHUNK * 512)) /dev/urandom >"$TMPDIR/junk"
dd if="$TMPDIR/junk" of=$TOP bs=$((CHUNK * 512)) seek=3 oflag=direct status=none
dmsetup message top 0 stop || not_ok "stop"
arm_cut && dmsetup resume --noflush crashdisk || not_ok "cut after stop"
dd if="$TMPDIR/junk" of=$TOP bs=$((CHUNK * 512)) seek=5 oflag=direct status=none
reboot || die "cannot tear down after the cut"
dmsetup create top --table "0 $SEC_LEN replication secondary $SEC $HID $ACT $CHUNK" ||
	die "the top does not load after a crash after stop"
if dmsetup create port --table "0 $SEC_LEN replication port $SEC" 2>/dev/null; then
	not_ok "a port table was accepted after stop and a crash"
	dmsetup remove port
else
	ok "after stop and a crash a port table is refused"
fi
check_eq "$(field top 1)" "done" "a stop that returned before the cut is durable"
check_eq "$(dd if=$TOP bs=1M iflag=direct status=none | sha1sum)" \
	"$(dd if=$SEC bs=1M iflag=direct status=none | sha1sum)" \
	"after stop and a crash the top is the secondary device"

dmsetup remove top
finish
