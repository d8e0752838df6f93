#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# timeout: 600
#
# The failed mode (issue 10): a durable write (a record commit, a store
# header, a flush) that fails puts the whole session in state "failed": no
# FLUSH or FUA write of the top or the port succeeds again, top writes that
# need a new record and port writes that need a copy fail with EIO, reads
# and writes that need no metadata go on, every message fails; only a reload
# of the top's table (which reads the stores anew) leaves it.  A power cut
# then shows every write whose fsync succeeded, each other chunk wholly old or
# new, and never the port's data where hidden held the old chunk.
#
# Devices: lib.sh's crashdisk over the first scratch disk (a virtio disk: a
# write-back cache, so flushes reach dm-flakey and can fail), with its three
# linear slices rsec, rhid and ract.  Above each slice a wrapper of its own,
# sdev, hdev and adev, which the top and the port use: a wrapper is linear,
# or (set_dev) "flakey 0 0 1 1 error_writes" (always down: every write and
# flush fails, reads pass), or that flakey over a store's headers and records
# only with its data slots linear ("meta": chunk data is written, record
# commits and flushes fail), or dm-delay (writes slowed).  A power cut
# (power_cut) swaps crashdisk for dm-flakey drop_writes, one resume: from
# then on no write of any of the three devices reaches the disk; the port and
# the top are removed, the wrappers and crashdisk made linear again, and the
# same tables loaded.
#
# Chunks are 4 KiB (tests/vm/failed_mode.py stamps each with a tag and its
# number).  tests/vm/failed_mode.py keeps a model of the top (what each chunk
# may read now, and after a cut) through every top write and fsync.  Each
# scenario is a new session (both stores' first 4 KiB zeroed) over a
# secondary device stamped "s<scenario>":
#  1. adev fails under a top fsync after top writes: EIO, failed; still EIO
#     after adev is back and after a plain suspend/resume; reads, writes to
#     mapped chunks, EIO for new chunks, O_DSYNC, port flush and copy,
#     messages; a reload leaves it (running 0, fsync and new chunks work).
#     1b: adev's metadata fails before top writes, so their record commit
#     (the 1 s timer's or the fsync's) certainly fails: the issue's bug.
#  2. hdev fails under a port write that needs a copy: EIO, the secondary
#     device is not written; port writes that need no copy pass, port
#     flushes and O_DSYNC writes fail; stop and failover are refused.
#     2a: hdev's metadata only: the copy is written, its commit fails:
#     failed at once.  2b: all of hdev: the copy's own write fails, which
#     is no durable write (state running, error 5); the next one, hidden's
#     header at a checkpoint, fails: failed.
#  3. sdev, hdev, adev failing at a checkpoint (after port writes): the top
#     shows the pre-checkpoint content if the message failed, the
#     post-checkpoint one if it succeeded, never a mix, before and after a cut.
#  4. the same at stop.
#  5. adev, hdev failing at the failover message: it fails, failed; after a
#     cut every fsync'd write is there and a failover runs to done, the
#     secondary device then holding what the top showed.
#  6. hdev failing during the merge (commit_depth 1, the secondary slowed):
#     the cursor write fails, failed (not failover_failed); after a cut the
#     merge resumes to done and the top and the secondary hold the model.
#
# FM_ONLY="1 3" runs only those scenarios (from a wrapper test).
. "$REPO/tests/vm/lib.sh"

SEC_LEN=8192		# 4 MiB: 1024 chunks
STORE_LEN=8192		# 4 MiB hidden and active
DISK_LEN=$((SEC_LEN + 2 * STORE_LEN))
CHUNK=8
SLOW_MS=20		# each write of the secondary device in scenario 6
CD=/dev/mapper/crashdisk
S=/dev/mapper/sdev H=/dev/mapper/hdev A=/dev/mapper/adev
TOP=/dev/mapper/top PORT=/dev/mapper/port
MODEL=$TMPDIR/model.json
trap 'dm_remove_all' EXIT

modprobe dm-flakey 2>/dev/null
modprobe dm-delay 2>/dev/null
for t in flakey delay; do
	dmsetup targets | grep -q "^$t " || die "no dm-$t target"
done

# failed_mode.py answers from a coprocess (Python takes a second or more to
# start under TCG): fm ARGS... prints its answer.
coproc FMD { exec python3 -S "$REPO/tests/vm/failed_mode.py" serve; }
fm() {
	local line out=
	echo "$*" >&"${FMD[1]}" || die "failed_mode.py is gone"
	while IFS= read -r line <&"${FMD[0]}"; do
		if [ "$line" = "#end" ]; then
			printf '%s' "$out"
			return 0
		fi
		out+=$line$'\n'
	done
	die "failed_mode.py is gone"
}

declare -A UNDER=([sdev]=/dev/mapper/rsec [hdev]=/dev/mapper/rhid [adev]=/dev/mapper/ract)
declare -A LEN=([sdev]=$SEC_LEN [hdev]=$STORE_LEN [adev]=$STORE_LEN)
declare -A MODE=()
META=	# sectors of a store before its first data slot

# wrap_table NAME linear|fail|meta|slow
wrap_table() {
	local u=${UNDER[$1]} l=${LEN[$1]}
	case $2 in
	linear) echo "0 $l linear $u 0" ;;
	fail) echo "0 $l flakey $u 0 0 1 1 error_writes" ;;
	meta) printf '0 %s flakey %s 0 0 1 1 error_writes\n%s %s linear %s %s\n' \
		"$META" "$u" "$META" "$((l - META))" "$u" "$META" ;;
	slow) echo "0 $l delay $u 0 0 $u 0 $SLOW_MS" ;;
	esac
}

# set_dev NAME linear|fail|meta|slow: swap a wrapper's table, live.
set_dev() {
	[ "${MODE[$1]:-}" = "$2" ] && return
	{ dmsetup load "$1" --table "$(wrap_table "$1" "$2")" && dmsetup resume "$1"; } ||
		die "cannot make $1 $2"
	MODE[$1]=$2
}

top_table() { echo "0 $SEC_LEN replication secondary $S $H $A $CHUNK"; }

# Every process costs a fraction of a second under TCG: the helpers below
# parse with bash, and remember which of top and port exist (HAVE).
declare -A HAVE=()

# dm_status: one "dmsetup status" of every device; sets TS (the top's
# status words after "secondary": state, error, ...) and PORT_STATE.
dm_status() {
	local name w
	TS=() PORT_STATE=
	while read -r name _ _ _ w; do
		case $name in
		top:) read -r -a TS <<<"${w#secondary }" ;;
		port:) read -r _ PORT_STATE _ <<<"$w" ;;
		esac
	done < <(dmsetup status)
}
# status_top: the top's state and error field.
status_top() { dm_status; echo "${TS[0]:-} ${TS[1]:-}"; }
top_state() { dm_status; echo "${TS[0]:-}"; }
events() {
	local e
	e=$(dmsetup info -c --noheadings -o events top)
	echo "${e// /}"
}

# The kernel's err-level lines since the last kmsg_mark.
kmsg_err_since() {
	local line seen=0
	while IFS= read -r line; do
		if [ $seen = 0 ]; then
			[[ $line == *" dmr-test-mark-$$-$DMR_MARK" ]] && seen=1
		elif [[ $line == "<3>"* ]]; then
			echo "${line#*] }"
		fi
	done < <(dmesg -r)
}

# watch_failure: before the step that is to fail: a log mark, the event number.
watch_failure() {
	kmsg_mark
	EV0=$(events)
}

# poll_state WANT SECS: poll the top's state until it is WANT; false after SECS.
poll_state() {
	local i
	for ((i = 0; i < $2 * 5; i++)); do
		[ "$(top_state)" = "$1" ] && return 0
		sleep 0.2
	done
	return 1
}

# expect_failed WHAT [poll]: the session is in the failed mode (with poll:
# wait up to 10 s for the state, set by a worker).
expect_failed() {
	local what=$1 line ev i
	[ "${2:-}" = poll ] && poll_state failed 10
	dm_status
	check_eq "${TS[0]:-} ${TS[1]:-}" "failed 5" "$what: top status failed, error 5"
	if [ -n "${HAVE[port]:-}" ]; then
		check_eq "$PORT_STATE" failed "$what: port status failed"
	fi
	for ((i = 0; i < 50; i++)); do
		ev=$(events)
		[ "$ev" -gt "$EV0" ] && break
		sleep 0.2
	done
	if [ "$ev" -gt "$EV0" ]; then
		ok "$what: a dm event ($EV0 -> $ev)"
	else
		not_ok "$what: no dm event (event number still $EV0)"
	fi
	line=$(kmsg_err_since)
	if [[ $line == *"session failed: "* ]]; then
		line=${line#*session failed: }
		ok "$what: kernel log (err): session failed: ${line%%$'\n'*}"
	else
		not_ok "$what: no err-level 'session failed: ' line in the log; err lines: ${line//$'\n'/;}"
	fi
}

create_top() { dmsetup create top --table "$(top_table)" && HAVE[top]=1; }
create_port() { dmsetup create port --table "0 $SEC_LEN replication port $S" && HAVE[port]=1; }
# remove_all_top WHAT: remove the port and the top.
remove_all_top() {
	local w
	for w in port top; do
		if [ -n "${HAVE[$w]:-}" ]; then
			dmsetup remove $w || die "cannot remove $w $1"
			HAVE[$w]=
		fi
	done
}

# new_session N: a new session over a secondary device stamped sN, with a
# port; the model says the top reads sN everywhere.
new_session() {
	local w
	remove_all_top "for a new session"
	for w in sdev hdev adev; do
		set_dev $w linear
	done
	[ "$(fm zero $H $A)" = ok ] || die "cannot blank the stores"
	[ "$(fm init $S "s$1" --state "$MODEL")" = ok ] || die "cannot stamp the secondary device"
	{ create_top && create_port; } || die "cannot create a new session"
	dm_status
	echo "# scenario $1: ${TS[*]}"
	if [ -z "$META" ]; then
		META=$((STORE_LEN - ${TS[2]#*/} * CHUNK))
		if [ "$META" -lt 8 ] || [ "$META" -ge "$STORE_LEN" ]; then
			die "store layout: $META sectors before the data"
		fi
		echo "# stores: $META sectors of headers and records, then the data slots"
	fi
}

# power_cut: every write of the three devices dropped from now on; the port
# and the top removed; the wrappers and the disk linear again.
power_cut() {
	local w
	{ arm_cut && dmsetup resume crashdisk; } || die "cannot cut the power"
	remove_all_top "after the cut"
	for w in sdev hdev adev; do
		set_dev $w linear
	done
	revive_disk || die "cannot revive the disk"
}

# reload_session WHAT: the same top table again (and the port, when the
# state on disk lets it load).  False when the top does not load.
reload_session() {
	kmsg_mark
	if ! create_top; then
		not_ok "$1: the top does not load after the cut: $(kmsg_since | tail -n 3 | tr '\n' ';')"
		dmsetup remove top 2>/dev/null
		return 1
	fi
	if [ "$(top_state)" = running ]; then
		create_port || not_ok "$1: the port does not load after the cut"
	fi
	return 0
}

# model_is DEV WHAT current|durable: DEV reads what the model says.
model_is() {
	check_eq "$(fm check "$1" --state "$MODEL" --"$3")" ok "$2"
}

# ---- 1. active fails under a top fsync ---------------------------------------

scenario_1() {
	local st
	new_session 1
	check_eq "$(fm write $TOP n1 10-19 --state "$MODEL")" ok "1: ten top writes to new chunks"
	check_eq "$(fm fsync $TOP --state "$MODEL")" ok "1: their fsync succeeds"
	check_eq "$(fm write $TOP n1 20-29 --state "$MODEL")" ok "1: ten more top writes to new chunks"
	watch_failure
	set_dev adev fail
	check_eq "$(fm fsync $TOP --state "$MODEL")" EIO "1: fsync of the top with adev failing: EIO"
	expect_failed "1: adev failing at a top fsync"
	set_dev adev linear
	check_eq "$(fm fsync $TOP --state "$MODEL")" EIO "1: fsync after adev is healthy again: still EIO"
	check_eq "$(top_state)" failed "1: still failed after adev is healthy again"
	model_is $TOP "1: reads while failed show what the VM wrote" current
	check_eq "$(fm write $TOP x1 40-41 --state "$MODEL")" EIO \
		"1: while failed a top write to a chunk active does not map: EIO"
	check_eq "$(fm write $TOP r1 10 --state "$MODEL")" ok \
		"1: while failed a top write to a chunk active maps goes through"
	check_eq "$(fm write $TOP d1 11 --dsync --may-land --state "$MODEL")" EIO \
		"1: while failed an O_DSYNC top write: EIO"
	model_is $TOP "1: reads while failed, after those writes" current
	check_eq "$(fm fsync $PORT)" EIO "1: while failed a fsync of the port: EIO"
	check_eq "$(fm write $PORT p1 50)" EIO "1: while failed a port write that needs a copy: EIO"
	check_eq "$(fm expect $S 50=s1)" ok "1: that port write did not reach the secondary device"
	expect_msg_error top checkpoint "the session failed"
	expect_msg_error top "commit_depth 2" "the session failed"
	check_eq "$(top_state)" failed "1: still failed after the refused messages"
	{ dmsetup suspend top && dmsetup resume top; } || not_ok "1: suspend/resume of the top"
	check_eq "$(status_top)" "failed 5" "1: a plain suspend/resume stays failed"
	check_eq "$(fm fsync $TOP --state "$MODEL")" EIO "1: fsync after suspend/resume: EIO"

	# A reload of the same table reads the stores anew.
	{ dmsetup reload top --table "$(top_table)" && dmsetup resume top; } ||
		not_ok "1: reload of the top's table"
	check_eq "$(status_top)" "running 0" "1: a reload leaves the failed mode"
	dm_status
	check_eq "$PORT_STATE" running "1: the port is running again"
	check_eq "$(fm observe $TOP --state "$MODEL")" ok \
		"1: after the reload the top shows what was durable (the first ten, the rest old or new)"
	check_eq "$(fm fsync $TOP --state "$MODEL")" ok "1: fsync works again after the reload"
	check_eq "$(fm write $TOP n1b 60-61 --state "$MODEL")" ok "1: after the reload new chunks are written"
	check_eq "$(fm write $PORT p1 50)" ok "1: after the reload a port write with a copy works"
	check_eq "$(fm fsync $TOP --state "$MODEL")" ok "1: and their fsync"

	power_cut
	reload_session "1" || return
	check_eq "$(status_top)" "running 0" "1: running after the cut"
	model_is $TOP "1: after the cut every fsync'd write is there, the rest old or new" durable
	st=$(fm expect $TOP 10-19=n1\|r1\|d1 20-29=n1\|s1 40-41=s1 50=s1)
	check_eq "$st" ok "1: after the cut: the first ten new, the second ten whole, the refused ones old"
}

# ---- 1b. active's record commit fails with records to commit -------------

scenario_1b() {
	local w
	new_session 1b
	check_eq "$(fm write $TOP n1b 10-19 --state "$MODEL")" ok "1b: ten top writes to new chunks"
	check_eq "$(fm fsync $TOP --state "$MODEL")" ok "1b: their fsync succeeds"
	watch_failure
	set_dev adev meta
	# The data goes to active's slots; the records wait for a commit,
	# which fails: this fsync's, or the 1 s timer's (which may fail the
	# last writes already: they need new records).
	w=$(fm write $TOP n1b 20-29 --state "$MODEL")
	if [ "$w" = ok ] || [[ $w =~ ^mixed:\ 20:ok(\ [0-9]+:ok)*(\ [0-9]+:EIO)+$ ]]; then
		ok "1b: ten more top writes, adev's metadata failing: $w"
	else
		not_ok "1b: ten more top writes, adev's metadata failing: $w"
	fi
	check_eq "$(fm fsync $TOP --state "$MODEL")" EIO "1b: their fsync: EIO"
	expect_failed "1b: active's record commit failing"
	set_dev adev linear
	check_eq "$(fm fsync $TOP --state "$MODEL")" EIO "1b: fsync after adev is healthy again: still EIO"
	check_eq "$(fm write $TOP x1b 40 --state "$MODEL")" EIO "1b: a top write to a new chunk: EIO"
	model_is $TOP "1b: reads while failed show what the VM wrote" current
	check_eq "$(status_top)" "failed 5" "1b: still failed"

	# Removing the top and creating it again (the cut) reads the disk.
	power_cut
	reload_session "1b" || return
	check_eq "$(status_top)" "running 0" "1b: running after the cut"
	model_is $TOP "1b: after the cut the first ten are there, the second ten old or new" durable
}

# ---- 2. hidden fails under a port write that needs a copy ------------------

# scenario_2 meta|fail: hdev's metadata fails (the copy is written, its
# commit fails) or all of hdev (the copy fails).
scenario_2() {
	local sub=2a
	[ "$1" = fail ] && sub=2b
	new_session $sub
	check_eq "$(fm write $TOP n$sub 200-204 --state "$MODEL")" ok "$sub: top writes"
	check_eq "$(fm fsync $TOP --state "$MODEL")" ok "$sub: their fsync"
	check_eq "$(fm write $PORT p$sub 210-214)" ok "$sub: port writes (copied into hidden)"
	check_eq "$(fm fsync $PORT)" ok "$sub: port fsync"
	model_is $TOP "$sub: the top shows the old chunks the port overwrote" current
	watch_failure
	set_dev hdev "$1"
	check_eq "$(fm write $PORT q$sub 220)" EIO "$sub: a port write whose copy goes to a failing hidden: EIO"
	check_eq "$(fm expect $S 220=s$sub)" ok "$sub: the failed port write did not reach the secondary device"
	if [ "$1" = meta ]; then
		expect_failed "$sub: hidden's commit failing under a port write"
	else
		# The copy's own write failed, before any durable write: that
		# port write fails, the session goes on (the failed mode is
		# for record commits, headers and flushes); the next durable
		# write, hidden's header at a checkpoint, fails.
		check_eq "$(status_top)" "running 5" "$sub: a failed copy into hidden: running, error 5"
		watch_failure
		refused "$sub: a checkpoint with hdev failing fails" dmsetup message top 0 checkpoint
		expect_failed "$sub: hdev failing at the checkpoint"
	fi
	check_eq "$(fm write $PORT q$sub 210)" ok "$sub: while failed a port write that needs no copy goes through"
	check_eq "$(fm expect $PORT 210=q$sub)" ok "$sub: and the port reads it"
	check_eq "$(fm fsync $PORT)" EIO "$sub: while failed a port fsync: EIO"
	check_eq "$(fm write $PORT e$sub 211 --dsync)" EIO "$sub: while failed an O_DSYNC port write: EIO"
	check_eq "$(fm fsync $TOP --state "$MODEL")" EIO "$sub: while failed a top fsync: EIO"
	check_eq "$(fm write $TOP x$sub 230 --state "$MODEL")" EIO "$sub: while failed a top write to a new chunk: EIO"
	check_eq "$(fm write $TOP r$sub 200 --state "$MODEL")" ok "$sub: while failed a top write to a mapped chunk goes through"
	model_is $TOP "$sub: reads while failed" current
	expect_msg_error top stop "the session failed"
	expect_msg_error top failover "the session failed"
	check_eq "$(top_state)" failed "$sub: still failed after the refused messages"
	set_dev hdev linear

	power_cut
	reload_session "$sub" || return
	check_eq "$(status_top)" "running 0" "$sub: running after the cut"
	model_is $TOP "$sub: after the cut every fsync'd write is there, the rest old or new" durable
	check_eq "$(fm expect $TOP 210-214=s$sub 220=s$sub 230=s$sub)" ok \
		"$sub: after the cut the top shows hidden's old chunks, chunks 220 and 230 old"
	check_eq "$(fm expect $S 220=s$sub)" ok "$sub: after the cut the secondary device holds chunk 220's old content"
}

# ---- 3, 4. a device fails at a checkpoint or a stop ------------------------

# epoch_scenario N checkpoint|stop DEV
epoch_scenario() {
	local n=$1 msg=$2 dev=$3 tag res pre post want which after
	tag=$n${dev:0:1}
	new_session "$tag"
	# Top writes 300-309, durable; port writes to 300-304 (no copy: active
	# holds them durably) and 310-319 (copied into hidden).
	check_eq "$(fm write $TOP "t$tag" 300-309 --state "$MODEL")" ok "$tag: top writes"
	check_eq "$(fm fsync $TOP --state "$MODEL")" ok "$tag: their fsync"
	check_eq "$(fm write $PORT "p$tag" 300-304,310-319)" ok "$tag: port writes"
	pre=("*=s$tag" "300-309=t$tag")
	post=("*=s$tag" "300-304=p$tag" "310-319=p$tag")
	check_eq "$(fm expect $TOP "${pre[@]}")" ok "$tag: the top shows its writes and hidden's old chunks"
	watch_failure
	set_dev "$dev" fail
	if dmsetup message top 0 "$msg" 2>/dev/null; then
		res=succeeded
	else
		res=failed
	fi
	echo "# $tag: $msg with $dev failing $res"
	if [ "$dev" = adev ]; then
		ok "$tag: $msg with adev failing $res (either may be)"
	else
		check_eq "$res" failed "$tag: $msg with $dev failing fails"
	fi
	expect_failed "$tag: $dev failing at $msg" poll
	if [ "$res" = succeeded ]; then
		want=("${post[@]}") which=post after=running
		[ "$msg" = stop ] && after="done"
	else
		want=("${pre[@]}") which=pre after=running
	fi
	check_eq "$(fm expect $TOP "${want[@]}")" ok \
		"$tag: while failed the top shows the $which-$msg content"
	check_eq "$(fm fsync $TOP)" EIO "$tag: while failed a top fsync: EIO"
	set_dev "$dev" linear

	power_cut
	reload_session "$tag" || return
	check_eq "$(status_top)" "$after 0" "$tag: state after the cut"
	check_eq "$(fm expect $TOP "${want[@]}")" ok \
		"$tag: after the cut the top shows the $which-$msg content everywhere (the $msg $res)"
}

# ---- 5. a device fails at the failover message -----------------------------

scenario_5() {
	local dev=$1 tag st
	tag=5${dev:0:1}
	new_session "$tag"
	check_eq "$(fm write $TOP "t$tag" 500-509 --state "$MODEL")" ok "$tag: top writes"
	check_eq "$(fm fsync $TOP --state "$MODEL")" ok "$tag: their fsync"
	check_eq "$(fm write $PORT "p$tag" 505-519)" ok "$tag: port writes"
	check_eq "$(fm write $TOP "u$tag" 520-524,510-511 --state "$MODEL")" ok "$tag: top writes, not flushed"
	watch_failure
	set_dev "$dev" fail
	refused "$tag: failover with $dev failing fails" dmsetup message top 0 failover
	expect_failed "$tag: $dev failing at failover"
	model_is $TOP "$tag: reads while failed" current
	set_dev "$dev" linear

	power_cut
	reload_session "$tag" || return
	dm_status
	st=${TS[0]}
	case "$st ${TS[1]}" in
	"running 0" | "failover 0") ok "$tag: after the cut: $st, error 0" ;;
	*) not_ok "$tag: after the cut: $(dmsetup status top)" ;;
	esac
	check_eq "$(fm observe $TOP --state "$MODEL")" ok \
		"$tag: after the cut every fsync'd top write is there, the rest old or new"
	if [ "$st" = running ]; then
		dmsetup message top 0 failover || not_ok "$tag: failover after the cut"
	fi
	if poll_state "done" 60; then
		ok "$tag: the failover runs to done"
	else
		not_ok "$tag: no done within 60 s: $(dmsetup status top)"
	fi
	model_is $S "$tag: the secondary device holds what the top showed" current
	model_is $TOP "$tag: the top shows it too" current
}

# ---- 6. hidden fails during the merge ----------------------------------------

scenario_6() {
	local left st
	new_session 6
	check_eq "$(fm write $TOP t6 600-899 --shuffle 6 --state "$MODEL")" ok "6: 300 top writes, scattered slots"
	check_eq "$(fm fsync $TOP --state "$MODEL")" ok "6: their fsync"
	check_eq "$(fm write $PORT p6 100-199 --shuffle 7)" ok "6: 100 port writes"
	check_eq "$(fm fsync $PORT)" ok "6: port fsync"
	dmsetup message top 0 commit_depth 1 || not_ok "6: commit_depth 1"
	set_dev sdev slow
	dmsetup message top 0 failover || not_ok "6: failover"
	dm_status
	st=${TS[0]} left=${TS[5]}
	echo "# 6: merging: ${TS[*]}"
	if [ "$st" = failover ] && [ "$left" -gt 0 ]; then
		ok "6: the merge is under way ($left chunks left)"
	else
		not_ok "6: the merge is not under way: $(dmsetup status top)"
	fi
	watch_failure
	set_dev hdev fail
	expect_failed "6: hdev failing during the merge" poll
	echo "# 6: $(dmsetup status top)"
	model_is $TOP "6: reads while failed during the merge" current
	check_eq "$(fm fsync $TOP)" EIO "6: while failed a top fsync: EIO"

	power_cut
	reload_session 6 || return
	dm_status
	st=${TS[0]}
	case "$st ${TS[1]}" in
	"failover 0" | "done 0") ok "6: after the cut: $st, error 0 (the merge resumes)" ;;
	*) not_ok "6: after the cut: $(dmsetup status top)" ;;
	esac
	model_is $TOP "6: the top during the resumed merge" durable
	if poll_state "done" 60; then
		ok "6: the resumed merge runs to done"
	else
		not_ok "6: no done within 60 s: $(dmsetup status top)"
	fi
	model_is $TOP "6: after done the top holds every fsync'd write" durable
	model_is $S "6: after done the secondary device holds them" durable
}

crash_disk "${DISKS%% *}"
for w in sdev hdev adev; do
	dmsetup create $w --table "$(wrap_table $w linear)" || die "cannot create $w"
	MODE[$w]=linear
done

T0=$SECONDS
for sc in ${FM_ONLY:-1 2 3 4 5 6}; do
	t=$SECONDS
	case $sc in
	1) scenario_1; scenario_1b ;;
	2) scenario_2 meta; scenario_2 fail ;;
	3) for d in sdev hdev adev; do epoch_scenario 3 checkpoint $d; done ;;
	4) for d in sdev hdev adev; do epoch_scenario 4 stop $d; done ;;
	5) scenario_5 adev; scenario_5 hdev ;;
	6) scenario_6 ;;
	esac
	echo "# scenario $sc: $((SECONDS - t))s"
done
echo "# all: $((SECONDS - T0))s"

# failed_mode.py ends at the end of its input.
eval "exec ${FMD[1]}>&-"
wait "$FMD_PID"
dm_remove_all
finish
