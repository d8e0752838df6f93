#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# timeout: 600
# kernels: 6.12
# soak: faults at random moments, five times the rounds
# soak-timeout: 3600
#
# Faults at random moments (issue 14, item 2).  46-fault-matrix puts each
# fault under each device before a fixed sequence of steps; here the fault
# comes at a random moment of crash.py's workload (a top writer and a port
# writer, fdatasync and O_DSYNC writes, checkpoints, a checkpoint racing the
# fault), under one of the secondary device, hidden and active, and the
# workload goes on under it.  The faults that a device reports: dm-flakey
# error_writes, dm-error, and dm-delay (50 ms a bio).  Dropped writes and
# corrupted reads are not reported by any device, so no rule can hold for
# them after the fact (Documentation/replication.rst, "Faults on every
# device"); 46-fault-matrix covers them.
#
# The rules checked after each round (a round's fault is one device, one
# moment; the rounds of a session go on from what the previous one left):
#  - nothing fails before the fault; under dm-delay nothing fails at all;
#  - the top's state is running or failed (running under dm-delay), and
#    failed if a flush or a checkpoint failed (a failed durable step puts the
#    session in the failed mode);
#  - with the device healthy again, a reload of the same tables (the
#    documented retry) runs, and what the top and the secondary device show
#    is crash.py's rules (a)-(d) for a crash after the last operation: every
#    write acknowledged durable (before or after the fault) is there, every
#    sector is a whole stamp of a write made to it or what it held before
#    (a failed write may have left any of its sectors), the top is explained
#    by the last checkpoint that returned, the secondary device holds every
#    flushed port write and the top no port write made after that
#    checkpoint.  "A FLUSH never succeeds before what it covers is durable,
#    even when a device fails."
# Each session ends with a failover whose merge meets the fault at a random
# moment (tests/vm/fault_random.py): the merge ends done, failover_failed or
# failed (done under dm-delay), the documented retries end done, and the top
# and the secondary device hold what the top held before the failover.
#
# Each round prints its device, fault and seed; the seed replays it.
. "$REPO/tests/vm/lib.sh"

PY="python3 $REPO/tests/vm/crash.py"
FR="python3 $REPO/tests/vm/fault_random.py"
SEC_LEN=8192		# 4 MiB secondary
STORE_LEN=12288		# 6 MiB hidden and active
META_LEN=2048		# 1 MiB: the primary's out-of-sync log
DISK_LEN=$((SEC_LEN + 2 * STORE_LEN))
SEED=${DMR_SEED:-47}
CD=/dev/mapper/crashdisk
SEC=/dev/mapper/rsec HID=/dev/mapper/rhid ACT=/dev/mapper/ract
TOP=/dev/mapper/top PORT=/dev/mapper/port
trap 'dm_remove_all' EXIT

for t in flakey delay; do
	modprobe "dm-$t" 2>/dev/null
	dmsetup targets | grep -q "^$t " || { echo "# no dm-$t"; exit 77; }
done

top_table() { echo "0 $SEC_LEN replication secondary $SEC $HID $ACT $CHUNK"; }
load_top() {
	dmsetup create top --table "$(top_table)" || return 1
	dmsetup create port --table "0 $SEC_LEN replication port $SEC"
}

# slice_table DEV FAULT: the table of a slice over crashdisk (the
# secondary's rsec, rhid, ract; the primary's plocal, premote, pmeta),
# healthy (linear) or with the fault.
declare -A OFF=([rsec]=0 [rhid]=$SEC_LEN [ract]=$((SEC_LEN + STORE_LEN))
	[plocal]=0 [premote]=$SEC_LEN [pmeta]=$((2 * SEC_LEN)))
declare -A LEN=([rsec]=$SEC_LEN [rhid]=$STORE_LEN [ract]=$STORE_LEN
	[plocal]=$SEC_LEN [premote]=$SEC_LEN [pmeta]=$META_LEN)
slice_table() {
	local off=${OFF[$1]} len=${LEN[$1]}
	case $2 in
	linear) echo "0 $len linear $CD $off" ;;
	error_writes) echo "0 $len flakey $CD $off 0 3600 1 error_writes" ;;
	error) echo "0 $len error" ;;
	delay) echo "0 $len delay $CD $off 50" ;;
	esac
}

heal() { dmsetup load "$1" --table "$(slice_table "$1" linear)" && dmsetup resume "$1"; }

# Every device with every fault, in a seeded order: round N takes the Nth,
# so each nine rounds cover all nine.
mapfile -t COMBOS < <(for d in rsec rhid ract; do
	for f in error_writes error delay; do echo "$d $f"; done
done | shuf --random-source=<(yes "$SEED"))
MODES=(random ckpt-cut random)

# round N I: the Ith device and fault, a mode from the round's number.
round() {
	local n=$1 seed=$((SEED * 1000 + $1)) t0=$SECONDS dev fault mode kind st
	read -r dev fault <<<"${COMBOS[($2 - 1) % 9]}"
	mode=${MODES[n % 3]}
	kind=error
	[ "$fault" = delay ] && kind=slow
	echo "# round $n: $fault under $dev, mode $mode, seed $seed, chunk $CHUNK"
	dmsetup load $dev --table "$(slice_table $dev "$fault")" ||
		{ not_ok "round $n: cannot load the fault"; return; }
	# The workload's failures are the verifier's to judge.
	$PY work --top $TOP --port $PORT --chunk "$CHUNK" --seed $seed --mode "$mode" \
		--log "$TMPDIR/log.$n" --cut-dm $dev --id-base $((n * 1000000)) \
		--after 0.8 | grep '^# '
	st=$(field top 1)
	dmsetup remove port && dmsetup remove top || die "round $n: cannot remove the top"
	heal $dev || die "round $n: cannot heal $dev"
	if ! load_top; then
		not_ok "round $n: the tables do not load after the fault"
		dmesg | tail -5
		die "cannot go on"
	fi
	check_eq "$(field top 1) $(field top 2)" "running 0" "round $n: state after the reload"
	if $PY verify --fault $kind --end-state "$st" --top $TOP --sec $SEC \
		--log "$TMPDIR/log.$n" --state "$TMPDIR/state"; then
		ok "round $n ($fault under $dev, $mode, seed $seed): $st, consistent after the reload ($((SECONDS - t0))s)"
	else
		not_ok "round $n ($fault under $dev, $mode, seed $seed): state $st"
		cp "$TMPDIR/log.$n" "$OUT/47-fault-random.round$n.json" 2>/dev/null
	fi
}

# failover_round N K: fill the top (more to merge), drop the port, a
# failover with the Kth device and fault (a different order) at a random
# moment of the merge.
failover_round() {
	local n=$1 seed=$((SEED * 1000 + $1)) dev fault kind=""
	read -r dev fault <<<"${COMBOS[(2 * $2 + 4) % 9]}"
	[ "$fault" = delay ] && kind=--slow
	echo "# round $n: failover, $fault under $dev, seed $seed"
	dd if=/dev/urandom of=$TOP bs=64k count=32 seek=$((seed % 32)) oflag=direct status=none ||
		die "round $n: cannot write the top"
	dmsetup remove port || die "round $n: cannot remove the port"
	dmsetup message top 0 commit_depth 1 || die "round $n: commit_depth"
	if $FR failover --top top --table "$(top_table)" --sec $SEC --dev $dev \
		--fault-table "$(slice_table $dev "$fault")" \
		--linear-table "$(slice_table $dev linear)" --seed $seed $kind \
		>"$TMPDIR/fo.$n"; then
		ok "round $n (failover, $fault under $dev, seed $seed): done, content right"
	else
		not_ok "round $n (failover, $fault under $dev, seed $seed)"
	fi
	sed 's/^/#   /' "$TMPDIR/fo.$n"
	dmsetup remove top || die "round $n: cannot remove the top"
	# The next session's checks read stamps only.
	dd if=/dev/zero of=$SEC bs=1M count=$((SEC_LEN / 2048)) oflag=direct status=none ||
		die "round $n: cannot blank the secondary device"
}

# primary_round N I: the Ith of the primary's devices and faults.
primary_round() {
	local n=$1 seed=$((SEED * 1000 + $1)) t0=$SECONDS dev fault kind=""
	read -r dev fault <<<"${PCOMBOS[($2 - 1) % 9]}"
	[ "$fault" = delay ] && kind=--slow
	echo "# round $n: primary, $fault under $dev, seed $seed"
	if $FR primary --top pri --table "$PTABLE" --dev $dev --role "${dev#p}" \
		--fault-table "$(slice_table $dev "$fault")" \
		--linear-table "$(slice_table $dev linear)" --seed $seed $kind \
		--local /dev/mapper/plocal --remote /dev/mapper/premote \
		--state "$TMPDIR/pstate" --id-base $((n * 1000000)) >"$TMPDIR/pri.$n"; then
		ok "round $n (primary, $fault under $dev, seed $seed): consistent ($((SECONDS - t0))s)"
	else
		not_ok "round $n (primary, $fault under $dev, seed $seed)"
	fi
	sed 's/^/#   /' "$TMPDIR/pri.$n"
}

# make check: three sessions of three rounds and a failover, so every
# device and fault once, then the primary's nine (~4 min); make soak: nine
# sessions of ten, and the primary's 45.
if [ -n "${DMR_SOAK:-}" ]; then
	ROUNDS=10 SESSIONS="8 32 8 32 8 32 8 32 8" PROUNDS=45
else
	ROUNDS=3 SESSIONS="8 32 8" PROUNDS=9
fi
crash_disk ${DISKS%% *}
n=0 k=0 i=0
for chunk in $SESSIONS; do
	new_session "$chunk"
	for ((j = 0; j < ROUNDS; j++)); do
		n=$((n + 1)) i=$((i + 1))
		round $n $i
	done
	n=$((n + 1)) k=$((k + 1))
	failover_round $n $k
done

# The primary: local, remote and its log are slices of crashdisk too.
dmsetup remove rsec rhid ract || die "cannot remove the secondary's slices"
for d in plocal premote pmeta; do
	dmsetup create $d --table "$(slice_table $d linear)" || die "cannot create $d"
done
dd if=/dev/zero of=/dev/mapper/plocal bs=1M count=$((SEC_LEN / 2048)) oflag=direct status=none &&
	dd if=/dev/zero of=/dev/mapper/premote bs=1M count=$((SEC_LEN / 2048)) oflag=direct status=none &&
	dd if=/dev/zero of=/dev/mapper/pmeta bs=1M count=1 oflag=direct status=none ||
	die "cannot blank the primary's devices"
PTABLE="0 $SEC_LEN replication primary /dev/mapper/plocal /dev/mapper/premote 4 metadata /dev/mapper/pmeta region_size 8"
dmsetup create pri --table "$PTABLE" || die "cannot load the primary"
mapfile -t PCOMBOS < <(for d in plocal premote pmeta; do
	for f in error_writes error delay; do echo "$d $f"; done
done | shuf --random-source=<(yes "$SEED"))
for ((j = 1; j <= PROUNDS; j++)); do
	n=$((n + 1))
	primary_round $n $j
done
echo "# $n rounds: $((n - k - PROUNDS)) of the secondary with checkpoints, $k failovers, $PROUNDS of the primary"
finish
