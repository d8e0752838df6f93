#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# timeout: 600
# kernels: 6.12
# soak: failover power cuts, each mode with both chunk sizes
# soak-timeout: 1200
#
# Power cuts during a failover's merge (tests/vm/failover_crash.py).
#
# As in 40-crash, the secondary device, hidden and active are slices of one
# device, "crashdisk"; the cut swaps crashdisk's table for dm-flakey with
# drop_writes (preloaded; one resume ioctl): from that instant no write
# reaches the disk, on any of the three, though every write succeeds.
#
# Each round is a new session: a history of top and port writes (E0, the
# expected image, is what the top shows at the failover: checked against a
# model first), commit_depth (seeded), "failover", then top writes during
# the merge (near the merge cursor, in and out of the stores, some flushed)
# and a cut at a point the round's mode picks: right after the failover
# message returns, at a random share of the merge, near its end, or after
# done.  Then the "reboot": the top and port are removed, crashdisk is
# linear again, the same top table is loaded.  It must come back in state
# failover (or done; done when done was seen before the cut), a port table
# must be refused, the top must read E0 overlaid with the merge phase's
# writes while the merge resumes by itself, and after done the secondary
# device (and the top) must hold, per sector, E0 or a merge-phase write
# that may have reached the disk, and every write flushed before the cut
# (pitfall 6: a merged chunk written in place must survive a resumed merge).
# Some rounds cut twice: once more during the resumed merge (the secondary's
# writes delayed by dm-delay meanwhile, so that it lasts).
#
# FOCRASH_ROUNDS="MODE:CHUNK[:double] ..." runs those rounds instead.
# A failing round copies its log to $OUT/57-failover-crash.round<N>.json.
# FOCRASH_SEED=N reruns the seeds of a run; FOCRASH_SELFTEST=1 (from a
# wrapper test) also loses one flushed write on purpose after each round,
# which verify must catch.
. "$REPO/tests/vm/lib.sh"

PY="python3 $REPO/tests/vm/failover_crash.py"
SEC_LEN=$((32 * 2048))		# 32 MiB secondary
STORE_LEN=$((40 * 2048))	# 40 MiB hidden and active
DISK_LEN=$((SEC_LEN + 2 * STORE_LEN))
SEED=${FOCRASH_SEED:-$((RANDOM * 100))}
CD=/dev/mapper/crashdisk
SEC=/dev/mapper/rsec HID=/dev/mapper/rhid ACT=/dev/mapper/ract
TOP=/dev/mapper/top PORT=/dev/mapper/port
FAILED_OVER="Session failed over: zero the first 4 KiB of both stores to start anew"
trap 'dm_remove_all' EXIT

modprobe dm-flakey 2>/dev/null
modprobe dm-delay 2>/dev/null
dmsetup targets | grep -q '^flakey' || { echo "# no dm-flakey"; exit 77; }
dmsetup targets | grep -q '^delay' || { echo "# no dm-delay"; exit 77; }
echo "# seed base $SEED (rerun: FOCRASH_SEED=$SEED)"

top_table() { echo "0 $SEC_LEN replication secondary $SEC $HID $ACT $CHUNK"; }

reboot() {
	if dmsetup info port >/dev/null 2>&1; then dmsetup remove port || return 1; fi
	dmsetup remove top || return 1
	revive_disk
}

new_session() {
	CHUNK=$1
	dmsetup info port >/dev/null 2>&1 && dmsetup remove port
	dmsetup info top >/dev/null 2>&1 && dmsetup remove top
	dd if=/dev/zero of=$HID bs=4096 count=1 oflag=direct status=none &&
		dd if=/dev/zero of=$ACT bs=4096 count=1 oflag=direct status=none ||
		die "cannot blank the stores"
	dmsetup create top --table "$(top_table)" &&
		dmsetup create port --table "0 $SEC_LEN replication port $SEC" ||
		die "cannot load a new session (chunk $CHUNK)"
}

# after_cut N WHAT MUST_BE_DONE: reboot, reload, check the state and the
# split-brain guard.  Returns 1 when the round cannot go on.
after_cut() {
	local n=$1 what=$2 must_done=$3 st
	reboot || die "round $n: cannot tear down after the cut"
	kmsg_mark
	if ! dmsetup create top --table "$(top_table)"; then
		not_ok "round $n: the top does not load after the cut $what"
		kmsg_since | tail -5
		return 1
	fi
	st=$(field top 1)
	if [ "$must_done" = 1 ]; then
		check_eq "$st" "done" "round $n: done was seen before the cut $what: loads as done"
	else
		case $st in
		failover | done) ok "round $n: state $st after the cut $what" ;;
		*) not_ok "round $n: state '$st' after the cut $what (status $(dmsetup status top))"; return 1 ;;
		esac
	fi
	echo "# $(kmsg_since | grep -o 'failover.*' | head -2 | tr '\n' ';')"
	kmsg_mark
	if dmsetup create port --table "0 $SEC_LEN replication port $SEC" >/dev/null 2>&1; then
		not_ok "round $n: a port table was accepted after the cut $what"
		dmsetup remove port
	elif kmsg_since | grep -qF "replication: $FAILED_OVER"; then
		ok "round $n: a port table is refused after the cut $what"
	else
		not_ok "round $n: port refused without the log line: $(kmsg_since | tail -3)"
	fi
	return 0
}

# done_seen LOG: 1 when the last phase saw done before its cut.
done_seen() {
	python3 -c 'import json, sys; print(int("done_seen" in json.load(open(sys.argv[1]))["phases"][-1]))' "$1"
}

# round N MODE CHUNK [double]
round() {
	local n=$1 mode=$2 seed=$((SEED + $1)) t0=$SECONDS st i log=$TMPDIR/log.$1
	CHUNK=$3
	echo "# round $n: mode $mode${4:+ then a cut during the resumed merge}, chunk $CHUNK, seed $seed"
	new_session "$CHUNK"
	arm_cut || { not_ok "round $n: cannot load the flakey table"; return; }
	if ! $PY work --top $TOP --port $PORT --sec $SEC --chunk "$CHUNK" --seed $seed \
		--mode "$mode" --log "$log" --cut-dm crashdisk --id-base $((n * 1000000)); then
		not_ok "round $n: the workload failed"
		[ -f "$log" ] || { reboot; return; }
	fi
	# Done seen before the cut: it must load as done.
	local must_done
	must_done=$(done_seen "$log")
	case $mode in done | at-done) check_eq "$must_done" 1 "round $n: done was seen before the cut" ;; esac
	if [ -n "${4:-}" ]; then
		# Reload with the table loaded but not live; failover_crash.py
		# resumes it, slows the merge down and cuts during it.
		reboot || die "round $n: cannot tear down after the cut"
		# The secondary's writes delayed (dm-delay over its slice), so
		# that the resumed merge lasts.
		dmsetup reload rsec --table "0 $SEC_LEN delay $CD 0 0 $CD 0 3" &&
			dmsetup resume rsec || die "round $n: cannot slow rsec down"
		dmsetup create top --notable && dmsetup load top --table "$(top_table)" || {
			not_ok "round $n: the top does not load after the cut ($mode)"
			return
		}
		arm_cut || { not_ok "round $n: cannot load the flakey table"; return; }
		if $PY resume --top $TOP --chunk "$CHUNK" --seed $((seed + 50)) --mode random \
			--log "$log" --cut-dm crashdisk; then
			ok "round $n: reloaded after the cut ($mode), a second cut during the resumed merge"
		else
			not_ok "round $n: the reload after the cut or the second workload failed"
		fi
		dmsetup reload rsec --table "0 $SEC_LEN linear $CD 0" &&
			dmsetup resume rsec || die "round $n: cannot restore rsec"
		after_cut "$n" "(during the resumed merge)" "$(done_seen "$log")" ||
			{ cp "$log" "$OUT/57-failover-crash.round$n.json"; return; }
	else
		after_cut "$n" "($mode)" "$must_done" ||
			{ cp "$log" "$OUT/57-failover-crash.round$n.json"; return; }
	fi
	# The top, while the merge resumes by itself.
	$PY verify --top $TOP --sec $SEC --log "$log" | sed "s/^/# (top during the resumed merge) /" >"$TMPDIR/v1"
	if grep -q "^# (top during the resumed merge) not ok" "$TMPDIR/v1"; then
		not_ok "round $n: the top during the resumed merge: $(grep 'not ok' "$TMPDIR/v1" | head -1)"
		cat "$TMPDIR/v1"
	else
		ok "round $n: the top reads E0 and the flushed writes during the resumed merge"
	fi
	for i in $(seq 600); do
		st=$(field top 1)
		[ "$st" = failover ] || break
		sleep 0.2
	done
	st=$(dmsetup status top | cut -d' ' -f5-)
	if [[ $st == "done 0 0/"*" 0/"*" 0" ]]; then
		ok "round $n: the merge finished by itself: $st"
	else
		not_ok "round $n: after the reload the merge did not finish: $st"
	fi
	if $PY verify --final --top $TOP --sec $SEC --log "$log"; then
		ok "round $n ($mode${4:+, double}, chunk $CHUNK, seed $seed): secondary device is E0 + flushed writes ($((SECONDS - t0))s)"
	else
		not_ok "round $n ($mode${4:+, double}, chunk $CHUNK, seed $seed): secondary device wrong after the crash"
		cp "$log" "$OUT/57-failover-crash.round$n.json" 2>/dev/null
	fi
	if [ -n "${FOCRASH_SELFTEST:-}" ]; then
		# Test the test: lose one flushed write on purpose.
		$PY inject-loss --sec $SEC --log "$log"
		case $? in
		0)	if $PY verify --final --top $TOP --sec $SEC --log "$log"; then
				not_ok "round $n: selftest: a lost flushed write is not caught"
			else
				ok "round $n: selftest: a lost flushed write is caught"
			fi ;;
		2)	echo "# round $n: selftest: no flushed write to lose" ;;
		*)	not_ok "round $n: selftest: cannot inject" ;;
		esac
	fi
}

# rounds "MODE:CHUNK[:double]"...: the next rounds, numbered on from $n.
n=0
rounds() {
	local r m c d
	for r in "$@"; do
		n=$((n + 1))
		IFS=: read -r m c d <<<"$r"
		round $n "$m" "$c" $d
	done
}

crash_disk ${DISKS%% *}
if [ -n "${FOCRASH_ROUNDS:-}" ]; then
	# From a wrapper test, on the virtio disk.
	# shellcheck disable=SC2086 # the rounds, space-separated
	rounds $FOCRASH_ROUNDS
	dm_remove_all
	finish
	exit
fi
# make check: every mode once, both chunk sizes, ~22 s a round; make soak:
# each mode with both chunk sizes.
if [ -n "${DMR_SOAK:-}" ]; then
	rounds immediate:8 random:8 random:8:double end:8 random:64 at-done:64 \
		random:64:double end:64 immediate:64 at-done:8
else
	rounds immediate:8 random:8:double end:64 at-done:64
fi

# Stores without a volatile write cache (brd).  (Too fast there for a
# second cut during a resumed merge.)
ram_disks 1 $((DISK_LEN / 2048))
crash_disk /dev/ram0
if [ -n "${DMR_SOAK:-}" ]; then
	rounds random:8 done:64 random:64 done:8
else
	rounds random:8 done:64
fi

dm_remove_all
finish
