#!/bin/bash
# timeout: 600
# kernels: 6.12
#
# Failover (issue 4), one rule at a time, on a brd disk.  The top's secondary
# device is a dm device "sec", so that the merge can be slowed (dm-delay on
# writes), or made to fail (dm-flakey error_writes), mid-way; it and both
# stores are slices of one dm device "disk", whose table swap to dm-flakey
# drop_writes cuts the power of all three at once.
# Every top write is also applied to a model image, the content the top must
# show; port writes are not (hidden keeps their old chunk for the top).
#  1. messages: failover -> state failover -> done (with its events);
#     checkpoint/stop/failover in failover and done change nothing;
#     commit_depth 1..64 accepted, anything else EINVAL with a log line;
#  2. result: after done the secondary device equals, byte for byte, what the
#     top showed before (copy-ups, both stores with active winning, extents
#     longer than 1 MiB, scattered chunks); status done 0 0/ 0/ 0; the top
#     then writes straight to the secondary device;
#  3. I/O during the commit: the count of chunks to commit goes down; reads are
#     right; writes to a merged chunk, to a chunk not reached yet in active or
#     in hidden only, and to a chunk in no store all end up in the secondary;
#     a top writer runs across the failover message and the first copies;
#  4. the port: EIO on writes from the moment failover is sent (also for a
#     port writer running across the message), reads pass,
#     its table refused (mid-commit, done, after a reload, after a reboot
#     with the top loaded but not yet resumed, and resumed); zeroing both
#     stores starts a new session where the port works again;
#  5. the secondary device failing mid-commit: failover_failed, error 5, an
#     event, reads right, checkpoint/stop refused, QEMU's write rule; a retry
#     after the device is back ends done with every write in place;
#  6. suspend pauses the merge and resume finishes it; removing the top
#     mid-commit and creating it again resumes the merge to done;
#  7. a power cut mid-commit (all writes dropped at once, right after top
#     writes and a flush) and the same table again: the merge resumes from
#     the durable cursor and ends with every flushed write in place.
. "$REPO/tests/vm/lib.sh"

modprobe dm-delay 2>/dev/null
modprobe dm-flakey 2>/dev/null
for t in linear delay flakey; do
	dmsetup targets | grep -q "^$t " || { echo "# no dm-$t target: skip"; exit 77; }
done

# One ram disk under everything, so that one table swap of "disk" can cut
# the power of the secondary device and both stores at the same instant.
ram_disks 1 24
RAW=/dev/ram0
S=16384		# 8 MiB: the secondary device, hidden and active, each
DISK=/dev/mapper/disk HID=/dev/mapper/hid ACT=/dev/mapper/act
CHUNK=8	# 4 KiB
CB=$((CHUNK * 512))
SEC=/dev/mapper/sec TOP=/dev/mapper/top PORT=/dev/mapper/port
MODEL=$TMPDIR/model Q=$TMPDIR/queue BUF=$TMPDIR/buf ERRF=$TMPDIR/err
# The port constructor's ti->error once failed over, as /work/failover-spec.md gives it.
FAILED_OVER="Session failed over: zero the first 4 KiB of both stores to start anew"
SLOW_MS=500	# each write (and flush) of the secondary device, while slowed
Z=300		# a chunk no history touches
trap 'dm_remove_all' EXIT

# ---- helpers -----------------------------------------------------------------

# Many writes in one process: lines "DEV OFFSET_SECTORS NR_SECTORS" on stdin,
# random data, O_DIRECT; those to the top are applied to the model too.
cat >$TMPDIR/io.py <<'EOF'
import mmap, os, sys
top, model = sys.argv[1], sys.argv[2]
mfd = os.open(model, os.O_WRONLY)
fds = {}
for n, line in enumerate(sys.stdin, 1):
    dev, off, cnt = line.split()
    off, cnt = int(off) * 512, int(cnt) * 512
    if dev not in fds:
        fds[dev] = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    data = os.urandom(cnt)
    buf = mmap.mmap(-1, (cnt + 4095) & ~4095)
    buf[:cnt] = data
    try:
        done = os.pwrite(fds[dev], memoryview(buf)[:cnt], off)
    except OSError as e:
        sys.exit("write %d: %s at byte %d: %s" % (n, dev, off, e))
    if done != cnt:
        sys.exit("write %d: short write" % n)
    if dev == top:
        os.pwrite(mfd, data, off)
EOF

# sec (the top's secondary device): linear, or slow (dm-delay), over secraw:
# linear, or fail (dm-flakey), over the first slice of disk.  The failure is
# switched below the delay: a dm-delay being suspended lets bios through
# undelayed, and the merge would run to its end in that window.
SECRAW=/dev/mapper/secraw
# A writer running beside the test: random partial or whole chunks of
# CHUNKS ("a-b,c-d") of DEV, one at a time, until STOP exists; top writes go
# into the model once they completed.  STOP.started appears after 50
# completed writes, STOP.eio after the first EIO.  Prints "ok=N eio=N
# ok_after_eio=N"; fails on any other error.
cat >$TMPDIR/writer.py <<'EOF2'
import errno, mmap, os, random, sys
dev, model, stop, spec, seed = sys.argv[1:6]
chunks = []
for part in spec.split(","):
    a, _, b = part.partition("-")
    chunks += range(int(a), int(b or a) + 1)
rnd = random.Random(int(seed))
fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
mfd = os.open(model, os.O_WRONLY) if model != "-" else None
buf = mmap.mmap(-1, 4096)
n_ok = n_eio = late = 0
while not os.path.exists(stop):
    c = rnd.choice(chunks)
    off = rnd.randrange(8)
    n = rnd.randrange(1, 9 - off)
    data = os.urandom(n * 512)
    buf[:n * 512] = data
    pos = c * 4096 + off * 512
    try:
        os.pwrite(fd, memoryview(buf)[:n * 512], pos)
    except OSError as e:
        if e.errno != errno.EIO:
            sys.exit("chunk %d: %s" % (c, e))
        if not n_eio:
            open(stop + ".eio", "w").close()
        n_eio += 1
        continue
    if mfd is not None:
        os.pwrite(mfd, data, pos)
    if n_eio:
        late += 1
    n_ok += 1
    if n_ok == 50:
        open(stop + ".started", "w").close()
print("ok=%d eio=%d ok_after_eio=%d" % (n_ok, n_eio, late))
EOF2
# writer_start DEV CHUNKS: start a writer (model: for the top only) and wait
# for its first 50 writes.  writer_stop: stop it; its summary is in $WOUT.
writer_start() {
	rm -f $TMPDIR/stop $TMPDIR/stop.*
	python3 $TMPDIR/writer.py "$1" "$([ "$1" = "$TOP" ] && echo $MODEL || echo -)" \
		$TMPDIR/stop "$2" $RANDOM >$TMPDIR/writer.out 2>&1 &
	WPID=$!
	local end=$((SECONDS + 30))
	until [ -e $TMPDIR/stop.started ]; do
		[ $SECONDS -lt $end ] && kill -0 $WPID 2>/dev/null || break
		sleep 0.1
	done
}
writer_stop() {
	touch $TMPDIR/stop
	wait $WPID
	WRC=$?
	WOUT=$(cat $TMPDIR/writer.out)
}

sec_table() {
	case $1 in
	linear) echo "0 $S linear $SECRAW 0" ;;
	slow) echo "0 $S delay $SECRAW 0 50 $SECRAW 0 $SLOW_MS" ;;	# reads 50 ms, writes and flushes slow
	esac
}
raw_table() {
	case $1 in
	linear) echo "0 $S linear $DISK 0" ;;
	fail) echo "0 $S flakey $DISK 0 0 3600 1 error_writes" ;;	# writes fail (EIO), reads pass
	esac
}
DISK_LINEAR="0 $((3 * S)) linear $RAW 0"
DISK_CUT="0 $((3 * S)) flakey $RAW 0 0 3600 1 drop_writes"	# no write reaches the disk
# make_devices: disk, its slices hid and act, and sec (linear), where missing.
make_devices() {
	dmsetup info disk >/dev/null 2>&1 ||
		dmsetup create disk --table "$DISK_LINEAR" || die "cannot create disk"
	dmsetup info hid >/dev/null 2>&1 ||
		dmsetup create hid --table "0 $S linear $DISK $S" || die "cannot create hid"
	dmsetup info act >/dev/null 2>&1 ||
		dmsetup create act --table "0 $S linear $DISK $((2 * S))" || die "cannot create act"
	dmsetup info secraw >/dev/null 2>&1 ||
		dmsetup create secraw --table "$(raw_table linear)" || die "cannot create secraw"
	dmsetup info sec >/dev/null 2>&1 ||
		dmsetup create sec --table "$(sec_table linear)" || die "cannot create sec"
}
sec_mode() {
	dmsetup reload sec --table "$(sec_table "$1")" && dmsetup resume sec ||
		die "cannot switch the secondary device to $1"
}
raw_mode() {
	dmsetup reload secraw --table "$(raw_table "$1")" && dmsetup resume secraw ||
		die "cannot switch secraw to $1"
}
top_table() { echo "0 $S replication secondary $SEC $HID $ACT $CHUNK"; }
port_table() { echo "0 $S replication port $SEC"; }
blank() { dd if=/dev/zero of="$1" bs=4096 count=1 oflag=direct status=none; }
msg() { dmsetup message top 0 "$@"; }
events() { dmsetup info -c --noheadings -o events top | tr -d ' '; }

# stat_top: parse the top's status into ST ERR UA (used active) UH (used
# hidden) CK (#checkpoints) TC (#chunks to commit).
stat_top() {
	local l
	l=$(dmsetup status top 2>/dev/null) || { ST=none; return 1; }
	# shellcheck disable=SC2086
	set -- $l
	ST=$5 ERR=$6 UA=${7%/*} UH=${8%/*} CK=$9 TC=${10}
}
st() { stat_top; echo "$ST"; }

# poll_state WANT SECS: poll the state until it is WANT; false after SECS.
poll_state() {
	local end=$((SECONDS + $2))
	while stat_top; [ "$ST" != "$1" ]; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}
# wait_state WANT SECS: the same, sleeping in dmsetup wait on the event number
# (so it also fails when the state changes without an event).
wait_state() {
	local end=$((SECONDS + $2)) ev left
	while :; do
		ev=$(events)
		stat_top
		[ "$ST" = "$1" ] && return 0
		left=$((end - SECONDS))
		[ $left -gt 0 ] || return 1
		timeout $left dmsetup wait top "$ev" >/dev/null 2>&1
	done
}
# wait_below N SECS: poll until fewer than N chunks are left to commit, in
# state failover; false if the state changes or after SECS.  TC is left set.
wait_below() {
	local end=$((SECONDS + $2))
	while stat_top; [ "$TC" -ge "$1" ]; do
		[ "$ST" = failover ] && [ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
	[ "$ST" = failover ]
}
# event_after EV SECS: poll until the event number is above EV.
event_after() {
	local end=$((SECONDS + $2))
	while [ "$(events)" -le "$1" ]; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}
# mid WHAT: the checks of WHAT ran while the commit was still going on.
mid() {
	stat_top
	if [ "$ST" = failover ] && [ "$TC" -gt 0 ]; then
		ok "still mid-commit after $1 ($TC chunks left)"
	else
		not_ok "the commit was not in progress any more after $1: $ST, $TC left"
	fi
}

# wr DEV CHUNK [OFF NR]: write random data into NR sectors at sector OFF of
# CHUNK (default: the whole chunk); a top write goes into the model too.
# The data is left in $BUF, dd's errors in $ERRF.
wr() {
	local off=$(($2 * CHUNK + ${3:-0})) nr=${4:-$CHUNK}
	head -c $((nr * 512)) /dev/urandom >$BUF
	dd if=$BUF of="$1" bs=$((nr * 512)) seek=$((off * 512)) oflag=direct,seek_bytes \
		conv=notrunc status=none 2>$ERRF || return 1
	[ "$1" != "$TOP" ] ||
		dd if=$BUF of=$MODEL bs=$((nr * 512)) seek=$((off * 512)) oflag=seek_bytes \
			conv=notrunc status=none
}
# get DEV CHUNK [OFF NR]: sha1 of those sectors of DEV (O_DIRECT); mget: of the model.
get() {
	dd if="$1" bs=$((${4:-$CHUNK} * 512)) skip=$((($2 * CHUNK + ${3:-0}) * 512)) count=1 \
		iflag=direct,skip_bytes status=none | sha1sum | cut -c1-40
}
mget() {
	dd if=$MODEL bs=$((${3:-$CHUNK} * 512)) skip=$((($1 * CHUNK + ${2:-0}) * 512)) count=1 \
		iflag=skip_bytes status=none | sha1sum | cut -c1-40
}
bufsha() { sha1sum <$BUF | cut -c1-40; }
# same DEV WHAT: DEV holds the model, byte for byte (else: the chunks that differ).
same() {
	dd if="$1" of=$TMPDIR/img bs=1M iflag=direct status=none
	if cmp -s $TMPDIR/img $MODEL; then
		ok "$2"
	else
		not_ok "$2: differs in chunks $(cmp -l $TMPDIR/img $MODEL 2>/dev/null |
			awk -v cb=$CB '{print int(($1 - 1) / cb)}' | uniq | head -n 12 | tr '\n' ' ')"
	fi
}
# eio WHAT: the last wr failed, with EIO.
eio() {
	if grep -q "Input/output error" $ERRF; then ok "$1"; else not_ok "$1: failed, but not with EIO: $(cat $ERRF)"; fi
}
# msg_refused "MESSAGE" ERE: the message fails with EINVAL, and the kernel
# log has a line of the target matching ERE (and not "Unrecognised message":
# the message must be known, its argument or the state refused).
msg_refused() {
	local m=$1 re=$2 log
	kmsg_mark
	# shellcheck disable=SC2086
	if dmsetup message top 0 $m >/dev/null 2>$ERRF; then
		not_ok "message '$m' in $(st) accepted; expected EINVAL"
		return
	fi
	log=$(kmsg_since | grep -E "replication: .*$re" | grep -v "Unrecognised message")
	if ! grep -q "Invalid argument" $ERRF; then
		not_ok "message '$m' failed, but not with EINVAL: $(cat $ERRF)"
	elif [ -z "$log" ]; then
		not_ok "message '$m': no log line matching '$re': $(kmsg_since)"
	else
		ok "message '$m' in $(st) fails with EINVAL: ${log#*replication: }"
	fi
}
msg_ok() {
	local in
	in=$(st)
	if msg "$@" 2>$ERRF; then ok "message '$*' accepted in $in"; else not_ok "message '$*' in $in failed: $(cat $ERRF)"; fi
}
# kmsg_from MARK: the kernel log after the kmsg_mark whose number was MARK.
kmsg_from() { dmesg | sed -n "/dmr-test-mark-$$-$1\$/,\$p" | sed 1d; }
# port_refused WHEN: a port table is refused because the session failed over.
port_refused() {
	echo "# port table $1:"
	dmsetup remove port >/dev/null 2>&1
	expect_ctr_error port "$(port_table)" "$FAILED_OVER"
}

# The history: queued writes, run by io.py.  INA: chunks the top wrote (in
# active); INH: chunks the port wrote (in hidden unless active had them
# durably).  The chunks to commit are their union.
declare -A INA INH
tw() {	# tw CHUNK [N]: the top writes N whole chunks from CHUNK, one I/O
	local i
	echo "$TOP $(($1 * CHUNK)) $((${2:-1} * CHUNK))" >>$Q
	for ((i = $1; i < $1 + ${2:-1}; i++)); do INA[$i]=1; done
}
tp() {	# tp CHUNK OFF NR: the top writes NR sectors at sector OFF of CHUNK
	echo "$TOP $(($1 * CHUNK + $2)) $3" >>$Q
	INA[$1]=1
}
pw() {	# pw CHUNK [N]: the port writes N whole chunks from CHUNK, one I/O
	local i
	echo "$PORT $(($1 * CHUNK)) $((${2:-1} * CHUNK))" >>$Q
	for ((i = $1; i < $1 + ${2:-1}; i++)); do INH[$i]=1; done
}
run_queue() { python3 $TMPDIR/io.py $TOP $MODEL <$Q || die "the history's writes failed"; : >$Q; }
dirty() { printf '%s\n' "${!INA[@]}" "${!INH[@]}" | grep . | sort -n | uniq; }
hidden_only() {
	local c
	for c in "${!INH[@]}"; do [ -n "${INA[$c]:-}" ] || echo "$c"; done | sort -n
}

# slow_history BASE N: N dirty chunks from BASE, each its own merge extent
# (stores alternate, and slots are given out from the top chunk down).
# By i % 4: 0 a whole top chunk; 1 the port only (hidden only); 2 the port,
# then a partial top write (both stores, copy-up from hidden); 3 a partial top
# write (copy-up from the secondary device).  So the top 4 chunks are, from
# the top: active, active (both), hidden only, active.
slow_history() {
	local i c
	for ((i = $2 - 1; i >= 0; i--)); do
		c=$(($1 + i))
		case $((i % 4)) in
		0) tw $c ;;
		1) pw $c ;;
		2) pw $c; tp $c 2 3 ;;
		3) tp $c 5 2 ;;
		esac
	done
	run_queue
	mapfile -t DL < <(dirty)
	mapfile -t HO < <(hidden_only)
	N=${#DL[@]}
}

# new_session: a fresh session over random content; top and port loaded,
# the secondary device linear (fast), the model = the secondary device.
new_session() {
	dmsetup remove port >/dev/null 2>&1
	if dmsetup info top >/dev/null 2>&1; then
		timeout 120 dmsetup remove top || die "cannot remove the top: $(dmsetup status top)"
	fi
	make_devices
	raw_mode linear
	sec_mode linear
	blank $HID
	blank $ACT
	dd if=/dev/urandom of=$SEC bs=1M count=$((S / 2048)) oflag=direct status=none
	dd if=$SEC of=$MODEL bs=1M iflag=direct status=none
	dmsetup create top --table "$(top_table)" || die "cannot create the top"
	dmsetup create port --table "$(port_table)" || die "cannot create the port"
	INA=() INH=()
	: >$Q
}

# ---- 1. the state machine and the messages ---------------------------------
section1() {
	local m n ev0 ev1 ck log mark
	echo "# --- 1. state machine and messages"
	new_session
	for n in 1 8 64; do msg_ok commit_depth $n; done
	for m in "commit_depth 0" "commit_depth 65" "commit_depth x" "commit_depth" \
		"commit_depth 4 5" "commit_depth 4294967297"; do
		msg_refused "$m" "commit_depth"
	done

	slow_history 1000 40
	stat_top
	check_eq "$ST $ERR $TC" "running 0 $N" "running, $N chunks to commit"
	ck=$CK
	sec_mode slow
	msg commit_depth 1
	ev0=$(events)
	kmsg_mark
	mark=$DMR_MARK
	if ! msg failover; then
		not_ok "failover in running failed: $(kmsg_since)"
		return
	fi
	ok "failover accepted in running"
	stat_top
	check_eq "$ST" failover "right after the message the state is failover"
	if [ "$TC" -ge 1 ] && [ "$TC" -le "$N" ]; then ok "chunks to commit: $TC of $N"; else not_ok "chunks to commit: $TC (of $N)"; fi
	if event_after "$ev0" 10; then ok "an event at the start of the failover"; else not_ok "no event at the start of the failover"; fi
	for m in checkpoint stop failover; do
		n=$TC
		msg_ok $m
		stat_top
		check_eq "$ST $CK" "failover $ck" "$m in failover changes nothing (state, #checkpoints)"
		if [ "$TC" -le "$n" ] && [ "$TC" -gt 0 ]; then ok "$m in failover: chunks to commit not reset ($n -> $TC)"; else not_ok "$m in failover: chunks to commit $n -> $TC"; fi
	done
	# Accepted in failover; a larger depth would end the merge before the
	# checks below on a busy host.
	msg_ok commit_depth 1
	msg_refused "commit_depth 65" "commit_depth"
	mid "the messages in state failover"

	ev1=$(events)
	sec_mode linear
	if wait_state done 120; then
		ok "the failover ends done (seen through dmsetup wait)"
	else
		not_ok "no done with an event within 120 s: $(dmsetup status top)"
		poll_state done 60 || return
	fi
	log=$(kmsg_from $mark)
	if [ "$(events)" -gt "$ev1" ]; then ok "an event at done"; else not_ok "no event at done"; fi
	grep -q "failover: committing [0-9]* chunks from chunk" <<<"$log" &&
		ok "logged: $(grep -o 'failover: committing.*' <<<"$log" | head -n 1)" ||
		not_ok "no 'failover: committing' log line"
	grep -q "failover done: [0-9]* chunks in" <<<"$log" &&
		ok "logged: $(grep -o 'failover done:.*' <<<"$log" | head -n 1)" ||
		not_ok "no 'failover done' log line"
	stat_top
	check_eq "$ERR $UA $UH $TC" "0 0 0 0" "done: error 0, stores empty, nothing to commit"
	# The spec does not say whether the end of a failover counts as a
	# checkpoint in status; only note it.
	echo "# #checkpoints: $ck before the failover, $CK once done"
	ck=$CK
	for m in checkpoint stop failover; do
		msg_ok $m
		stat_top
		check_eq "$ST $ERR $UA $UH $CK $TC" "done 0 0 0 $ck 0" "$m in done changes nothing"
	done
	msg_ok commit_depth 2
	msg_refused "commit_depth 0" "commit_depth"
	same $SEC "done: the secondary device holds what the top showed"
}

# ---- 2. the result ------------------------------------------------------------
section2() {
	local i ev0 log na
	echo "# --- 2. the result of a failover"
	new_session
	tp 10 1 3				# copy-up from the secondary device
	tw 20 10				# 20..29 in active, consecutive slots
	pw 25 10				# 25..29 active and hidden, 30..34 hidden only
	tp 33 5 2				# copy-up from hidden
	tp 30 0 1
	tw 512 384				# 1.5 MiB run in active: more than one extent
	run_queue
	sync $TOP				# commit active's mappings
	pw 600					# in active, committed: no copy
	pw 0					# the first chunk
	pw 1024 384				# 1.5 MiB run in hidden
	tw 1350 100				# 1350..1407 in both, 1408..1449 active only
	for ((i = 1900; i >= 1600; i -= 10)); do tw $i; pw $((i - 5)); done
	tp 1700 7 1				# a partial rewrite of a chunk in active
	pw 1700					# both, active had it first
	tp $((S / CHUNK - 1)) 7 1		# the last sector
	run_queue
	mapfile -t DL < <(dirty)
	N=${#DL[@]}
	na=${#INA[@]}
	same $TOP "before failover the top shows the history"
	stat_top
	check_eq "$ST $ERR $UA $TC" "running 0 $na $N" "running: $na chunks in active, $N to commit"

	ev0=$(events)
	kmsg_mark
	msg failover || { not_ok "failover failed: $(kmsg_since)"; return; }
	if poll_state done 120; then ok "failover of $N chunks ends done"; else not_ok "no done within 120 s: $(dmsetup status top)"; return; fi
	log=$(kmsg_since)
	if [ "$(events)" -ge $((ev0 + 2)) ]; then ok "events at start and done"; else not_ok "events: $ev0 -> $(events), expected 2 more"; fi
	grep -q "failover: committing $N chunks from chunk 0\$" <<<"$log" &&
		ok "logged: committing $N chunks from chunk 0" ||
		not_ok "no log line 'failover: committing $N chunks from chunk 0': $log"
	grep -q "failover done: $N chunks in" <<<"$log" &&
		ok "logged: failover done: $N chunks" ||
		not_ok "no log line 'failover done: $N chunks': $log"
	stat_top
	check_eq "$ST $ERR $UA $UH $TC" "done 0 0 0 0" "status: done, error 0, stores empty, nothing to commit"
	same $SEC "the secondary device equals what the top showed before failover"
	same $TOP "the top reads the same after done"

	wr $TOP 20 || not_ok "top write after done"
	check_eq "$(get $SEC 20)" "$(bufsha)" "after done a top write goes to the secondary device"
	wr $TOP 700 3 2 || not_ok "partial top write after done"
	check_eq "$(get $SEC 700)" "$(mget 700)" "after done a partial top write goes to the secondary device"
	stat_top
	check_eq "$UA $UH $TC" "0 0 0" "after done writes use no store"
	same $TOP "after done the top reads its writes"
	same $SEC "after done the secondary device holds the top's writes"
}

# ---- 3. reads and writes during the commit ------------------------------------
section3() {
	local r0 r1 r2 CM CA CH ua uh ev c
	echo "# --- 3. reads and writes during the commit"
	new_session
	slow_history 1000 64
	stat_top
	check_eq "$TC" "$N" "$N chunks to commit"
	sec_mode slow
	msg commit_depth 1
	# A top writer on chunks of both stores (not the top ones, checked
	# below) across the start of the failover and the first copies.
	writer_start $TOP 1000-1055
	msg failover || { not_ok "failover failed"; writer_stop; return; }
	stat_top
	r0=$TC r1=- r2=-
	if wait_below "$r0" 60; then r1=$TC; wait_below "$r1" 60 && r2=$TC; fi
	if [ "$r2" != - ] && [ "$r2" -lt "$r1" ] && [ "$r1" -lt "$r0" ]; then
		ok "state failover, chunks to commit count down: $r0 -> $r1 -> $r2"
	else
		not_ok "chunks to commit do not count down in failover: $r0 -> $r1 -> $r2 ($(dmsetup status top))"
	fi
	writer_stop
	if [ $WRC -eq 0 ] && [[ $WOUT == ok=* ]] && [[ $WOUT == *" eio=0 "* ]] && [[ $WOUT != ok=0* ]]; then
		ok "a top writer across the start of the failover: $WOUT"
	else
		not_ok "the top writer across the start of the failover: rc $WRC: $WOUT"
	fi
	same $TOP "mid-commit the top reads what it showed before failover"
	mid "the mid-commit read"

	wait_below $((N - 6)) 60 || not_ok "the merge does not reach 6 chunks: $(dmsetup status top)"
	CM=${DL[0]} CA=${DL[N - 1]} CH=${HO[${#HO[@]} - 1]}
	echo "# merged chunk $CM, not reached: $CA (active), $CH (hidden only), no store: $Z"
	stat_top
	ua=$UA uh=$UH
	wr $TOP "$CM" || not_ok "mid-commit write to merged chunk $CM: $(cat $ERRF)"
	check_eq "$(get $SEC "$CM")" "$(bufsha)" "mid-commit write to a merged chunk goes to the secondary device"
	wr $TOP "$CA" 1 1 || not_ok "mid-commit write to chunk $CA: $(cat $ERRF)"
	wr $TOP "$CH" 6 2 || not_ok "mid-commit write to chunk $CH: $(cat $ERRF)"
	wr $TOP $Z || not_ok "mid-commit write to chunk $Z: $(cat $ERRF)"
	check_eq "$(get $SEC $Z)" "$(bufsha)" "mid-commit write to a chunk in no store goes to the secondary device"
	stat_top
	check_eq "$UA $UH" "$ua $uh" "mid-commit writes to chunks not reached take no new slot"
	mid "the mid-commit writes"
	for c in "$CM" "$CA" "$CH" $Z; do
		check_eq "$(get $TOP "$c")" "$(mget "$c")" "mid-commit the top reads back chunk $c"
	done
	mid "the mid-commit reads"

	ev=$(events)
	sec_mode linear
	msg commit_depth 64
	if wait_state done 120; then ok "the commit ends done"; else not_ok "no done within 120 s: $(dmsetup status top)"; poll_state done 60 || return; fi
	stat_top
	check_eq "$ERR $UA $UH $TC" "0 0 0 0" "done: error 0, stores empty, nothing to commit"
	same $SEC "the secondary device holds the history and the mid-commit writes"
	same $TOP "the top reads the same"
}

# ---- 4. the port -------------------------------------------------------------
section4() {
	local old
	echo "# --- 4. the port"
	new_session
	slow_history 1000 40
	wr $PORT 301 && ok "before failover the port takes writes" || not_ok "port write before failover: $(cat $ERRF)"
	old=$(get $SEC $Z)
	# A port writer on chunks of the stores and on chunks of none, across
	# the failover message: its writes succeed, then fail with EIO only.
	# (Started before the secondary device is slowed: it waits for 50 writes.)
	writer_start $PORT 1000-1039,1500-1520
	sec_mode slow
	msg commit_depth 1
	msg failover || { not_ok "failover failed"; writer_stop; return; }
	local end=$((SECONDS + 30))
	until [ -e $TMPDIR/stop.eio ] || [ $SECONDS -ge $end ]; do sleep 0.1; done
	writer_stop
	if [ $WRC -eq 0 ] && [[ $WOUT == *" ok_after_eio=0" ]] && [[ $WOUT != ok=0* ]] && [[ $WOUT != *" eio=0 "* ]]; then
		ok "a port writer across the failover message: EIO from then on: $WOUT"
	else
		not_ok "the port writer across the failover message: rc $WRC: $WOUT"
	fi
	if wr $PORT $Z; then not_ok "a port write right after failover succeeded"; else eio "a port write right after failover fails with EIO"; fi
	if wr $PORT "${HO[0]}"; then not_ok "a port write to a hidden chunk after failover succeeded"; else eio "a port write to a hidden chunk after failover fails with EIO"; fi
	check_eq "$(get $SEC $Z)" "$old" "the refused port write left the secondary device alone"
	check_eq "$(get $PORT $Z)" "$old" "port reads pass during the commit"
	check_eq "$(dmsetup status port | awk '{print $5}')" failover "port status shows failover"
	port_refused "mid-commit"
	mid "the port checks"

	sec_mode linear
	poll_state done 120 || { not_ok "no done within 120 s: $(dmsetup status top)"; return; }
	same $SEC "done: the secondary device holds what the top showed, none of the port's writes"
	port_refused "in state done"
	dmsetup reload top --table "$(top_table)" || not_ok "reload of the top"
	port_refused "with a reloaded top table not yet resumed"
	dmsetup resume top || not_ok "resume of the top"
	check_eq "$(st)" done "after reload the top is done"
	port_refused "after a reload of the top"

	if [ -n "${DMR_KO:-}" ]; then
		echo "# reboot: remove all, rmmod, insmod, recreate from the same disks"
		dm_remove_all
		if rmmod dm_replication; then ok "the module unloads"; else not_ok "rmmod dm_replication"; fi
		insmod "$DMR_KO" || die "cannot insmod $DMR_KO"
		make_devices
		dmsetup create top --notable && dmsetup load top --table "$(top_table)" ||
			not_ok "load of the top after reboot"
		port_refused "after reboot, the top loaded but not resumed"
		dmsetup resume top || not_ok "resume of the top after reboot"
		stat_top
		check_eq "$ST $ERR $UA $UH $TC" "done 0 0 0 0" "after reboot the top comes back done"
		same $TOP "after reboot the top reads the failed-over content"
		port_refused "after reboot"
	else
		echo "# no DMR_KO: no reboot"
	fi

	echo "# a new session: zero the first 4 KiB of both stores"
	dmsetup remove port >/dev/null 2>&1
	dmsetup remove top || not_ok "remove the top"
	dd if=/dev/zero of=$HID bs=4096 count=1 oflag=direct status=none
	dd if=/dev/zero of=$ACT bs=4096 count=1 oflag=direct status=none
	dmsetup create top --table "$(top_table)" || { not_ok "create the top of a new session"; return; }
	stat_top
	check_eq "$ST $ERR $UA $UH $TC" "running 0 0 0 0" "a new session is running and empty"
	if dmsetup create port --table "$(port_table)"; then ok "a port table loads in the new session"; else not_ok "port table refused in a new session"; return; fi
	if wr $PORT $Z; then ok "the port takes writes again"; else not_ok "port write in the new session: $(cat $ERRF)"; fi
	check_eq "$(get $SEC $Z)" "$(bufsha)" "the port write reaches the secondary device"
	check_eq "$(get $TOP $Z)" "$(mget $Z)" "the top still reads the chunk's old content"
	check_eq "$(stat_top; echo "$UH")" 1 "the port write copied the chunk into hidden"
}

# ---- 5. failure and retry ----------------------------------------------------
section5() {
	local ev R CF CH CA ua log
	echo "# --- 5. the secondary device fails during the commit; retry"
	new_session
	slow_history 1000 48
	sec_mode slow
	msg commit_depth 1
	kmsg_mark
	msg failover || { not_ok "failover failed"; return; }
	wait_below $((N - 10)) 90 || not_ok "the merge does not reach 10 chunks: $(dmsetup status top)"
	ev=$(events)
	raw_mode fail
	if poll_state failover_failed 60; then
		ok "writes to the secondary device fail: state failover_failed"
	else
		not_ok "no failover_failed within 60 s: $(dmsetup status top)"
		return
	fi
	stat_top
	check_eq "$ERR" 5 "the error field is EIO (5)"
	R=$TC
	if [ "$R" -ge 4 ] && [ "$R" -le "$N" ]; then
		ok "chunks not durably merged: $R of $N"
	else
		not_ok "chunks to commit in failover_failed: $R of $N (expected 4..$N)"
		[ "$R" -ge 1 ] && [ "$R" -le "$N" ] || return
	fi
	if [ "$(events)" -gt "$ev" ]; then ok "an event at failover_failed"; else not_ok "no event at failover_failed"; fi
	log=$(kmsg_since)
	grep -q "failover failed: error" <<<"$log" && ok "logged: $(grep -o 'failover failed:.*' <<<"$log" | head -n 1)" ||
		not_ok "no 'failover failed' log line: $log"
	same $TOP "in failover_failed the top reads right"
	msg_refused checkpoint "checkpoint is not allowed in state failover_failed"
	msg_refused stop "stop is not allowed in state failover_failed"
	msg_ok commit_depth 2
	if wr $PORT $Z; then not_ok "a port write in failover_failed succeeded"; else eio "a port write in failover_failed fails with EIO"; fi

	# While the secondary device still fails writes: writes to chunks above
	# the durable cursor must go into the stores.
	CF=${DL[N - R]} CH=${HO[${#HO[@]} - 1]} CA=${DL[N - 1]}
	echo "# first chunk not durably merged: $CF; hidden only: $CH; active: $CA"
	stat_top
	ua=$UA
	if wr $TOP "$CH" 3 2; then ok "write to hidden-only chunk $CH succeeds while the device fails"; else not_ok "write to hidden-only chunk $CH: $(cat $ERRF)"; fi
	stat_top
	check_eq "$UA" $((ua + 1)) "a write to a chunk in hidden only copies it up into active"
	ua=$UA
	if wr $TOP "$CA" 4 1 && stat_top && [ "$UA" = "$ua" ]; then
		ok "a write to a chunk in active stays in active"
	else
		not_ok "write to active chunk $CA: $(cat $ERRF), used active $ua -> $UA"
	fi
	if wr $TOP "$CF" 0 3; then ok "write to chunk $CF (not durably merged) goes to a store while the device fails"; else not_ok "write to chunk $CF, not durably merged: $(cat $ERRF)"; fi
	same $TOP "in failover_failed the top reads its writes"

	raw_mode linear
	sec_mode linear
	check_eq "$(st)" failover_failed "the device back, the state stays failover_failed"
	wr $TOP $Z || not_ok "write to chunk $Z: $(cat $ERRF)"
	check_eq "$(get $SEC $Z)" "$(bufsha)" "in failover_failed a write to a chunk in no store goes to the secondary device"
	if [ "$R" -lt "$N" ]; then
		stat_top
		ua=$UA
		wr $TOP "${DL[0]}" || not_ok "write to chunk ${DL[0]}: $(cat $ERRF)"
		check_eq "$(get $SEC "${DL[0]}")" "$(bufsha)" "in failover_failed a write below the durable cursor goes to the secondary device"
		check_eq "$(stat_top; echo "$UA")" "$ua" "that write takes no slot"
	else
		echo "# no chunk below the durable cursor"
	fi

	ev=$(events)
	msg_ok failover
	if poll_state done 120; then ok "the retry ends done"; else not_ok "the retry: no done within 120 s: $(dmsetup status top)"; return; fi
	if [ "$(events)" -gt "$ev" ]; then ok "events during the retry"; else not_ok "no event during the retry"; fi
	stat_top
	check_eq "$ERR $UA $UH $TC" "0 0 0 0" "done: error 0, stores empty, nothing to commit"
	same $SEC "after the retry the secondary device holds everything, writes made while failed too"
	same $TOP "the top reads the same"
}

# ---- 6. suspend, and remove, mid-commit -------------------------------------------
section6() {
	local r1
	echo "# --- 6. suspend and resume mid-commit, then remove and create again mid-commit"
	new_session
	slow_history 1000 40
	sec_mode slow
	msg commit_depth 1
	dmsetup remove port
	msg failover || { not_ok "failover failed"; return; }
	wait_below $((N - 2)) 60 || not_ok "the merge does not reach 2 chunks: $(dmsetup status top)"
	wr $TOP "${DL[0]}" || not_ok "write to merged chunk ${DL[0]}"
	if timeout 60 dmsetup suspend top; then ok "suspend mid-commit"; else not_ok "suspend mid-commit failed"; fi
	stat_top
	r1=$TC
	check_eq "$ST" failover "suspended mid-commit: state failover"
	sleep 2	# not a synchronisation: a window in which a running merge would copy ~3 chunks
	stat_top
	check_eq "$ST $TC" "failover $r1" "the merge is paused while the top is suspended"
	if timeout 20 dmsetup message top 0 failover; then ok "failover while suspended returns"; else not_ok "failover while suspended"; fi
	if timeout 20 dmsetup message top 0 commit_depth 1; then ok "commit_depth while suspended returns"; else not_ok "commit_depth while suspended"; fi
	if timeout 60 dmsetup resume top; then ok "resume"; else not_ok "resume failed"; fi
	if wait_below "$r1" 60; then ok "after resume the merge goes on ($r1 -> $TC)"; else not_ok "after resume the merge does not go on: $(dmsetup status top)"; fi

	wr $TOP "${DL[N - TC - 1]}" 3 4 || not_ok "write to chunk ${DL[N - TC - 1]}, copied last"
	wr $TOP "${DL[N - 1]}" 1 2 || not_ok "write to chunk ${DL[N - 1]}"
	wr $TOP "${HO[${#HO[@]} - 1]}" 1 2 || not_ok "write to chunk ${HO[${#HO[@]} - 1]}"
	wr $TOP $Z || not_ok "write to chunk $Z"
	mid "the writes before the remove"
	if timeout 60 dmsetup remove top; then ok "remove the top mid-commit"; else not_ok "remove mid-commit failed"; return; fi
	dmsetup create top --table "$(top_table)" || { not_ok "create the top again"; return; }
	stat_top
	check_eq "$ST $ERR" "failover 0" "created again, the top resumes in state failover"
	if [ "$TC" -ge 1 ] && [ "$TC" -le "$N" ]; then ok "chunks to commit: $TC of $N"; else not_ok "chunks to commit after re-create: $TC of $N"; fi
	same $TOP "created again, the top reads what it showed"
	sec_mode linear
	poll_state done 120 && ok "the resumed commit ends done" || { not_ok "no done within 120 s: $(dmsetup status top)"; return; }
	stat_top
	check_eq "$ERR $UA $UH $TC" "0 0 0 0" "done: error 0, stores empty, nothing to commit"
	same $SEC "the secondary device holds the history and every write made mid-commit"
	same $TOP "the top reads the same"
}

# ---- 7. a power cut mid-commit ------------------------------------------------------
section7() {
	local cl
	echo "# --- 7. a power cut mid-commit, then the same table again"
	new_session
	slow_history 1000 40
	sec_mode slow
	msg commit_depth 1
	dmsetup remove port
	dmsetup load disk --table "$DISK_CUT" || die "cannot load the cut"
	msg failover || { not_ok "failover failed"; dmsetup clear disk; return; }
	wait_below $((N - 6)) 60 || not_ok "the merge does not reach 6 chunks: $(dmsetup status top)"
	stat_top
	cl=${DL[N - TC - 1]}
	echo "# writes to: the chunk copied last $cl, merged ${DL[0]}, ahead ${DL[N - 1]}, no store $Z"
	# The chunk copied last is the one whose cursor is likely not durable
	# yet: its write must not reach the secondary device before the cursor.
	wr $TOP "$cl" || not_ok "write to chunk $cl"
	wr $TOP "${DL[0]}" 2 3 || not_ok "write to chunk ${DL[0]}"
	wr $TOP "${DL[N - 1]}" 1 2 || not_ok "write to chunk ${DL[N - 1]}"
	wr $TOP $Z || not_ok "write to chunk $Z"
	sync $TOP	# a FLUSH: every write above must survive the cut
	dmsetup resume disk || die "cannot cut the power"
	mid "the writes before the cut"
	wr $SEC $((Z + 1)) || not_ok "write to the secondary device after the cut"	# must be lost
	if timeout 60 dmsetup remove top; then ok "remove the top after the cut"; else not_ok "remove after the cut failed"; return; fi
	echo "# reboot: the disk takes writes again"
	dmsetup load disk --table "$DISK_LINEAR" && dmsetup resume disk || die "cannot restore the disk"
	check_eq "$(get $SEC $((Z + 1)))" "$(mget $((Z + 1)))" "the cut dropped a write made after it (the rig works)"
	dmsetup create top --table "$(top_table)" || { not_ok "create the top after the cut"; return; }
	stat_top
	check_eq "$ST $ERR" "failover 0" "after the cut the top resumes in state failover"
	same $TOP "after the cut the top reads every flushed write"
	sec_mode linear
	poll_state done 120 && ok "the resumed commit ends done" || { not_ok "no done within 120 s: $(dmsetup status top)"; return; }
	stat_top
	check_eq "$ERR $UA $UH $TC" "0 0 0 0" "done: error 0, stores empty, nothing to commit"
	same $SEC "after the cut and the resumed commit the secondary device holds every flushed write"
}

T0=$SECONDS
for s in section1 section2 section3 section4 section5 section6 section7; do
	$s
	echo "# $s: $((SECONDS - T0)) s so far"
done
dm_remove_all
finish
