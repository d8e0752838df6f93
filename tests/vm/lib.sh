# shellcheck shell=bash
# Helpers for the VM tests.  Source it from a test:  . "$REPO/tests/vm/lib.sh"
#
# A test prints one line per check ("ok - ..." or "not ok - ...") and exits
# non-zero when any check failed.  The harness runs it inside the VM with the
# module inserted; see tests/vm/README.md for the contract.

set -u

DMR_CHECKS=0
DMR_FAILED=0

# ok DESCRIPTION: record a passing check.
ok() {
	DMR_CHECKS=$((DMR_CHECKS + 1))
	echo "ok - $*"
}

# not_ok DESCRIPTION: record a failing check (the test goes on, and fails).
not_ok() {
	DMR_CHECKS=$((DMR_CHECKS + 1))
	DMR_FAILED=$((DMR_FAILED + 1))
	echo "not ok - $*"
}

# die MESSAGE: a failure the test cannot go on from.
die() {
	echo "not ok - FATAL: $*"
	exit 1
}

# check_eq ACTUAL EXPECTED DESCRIPTION
check_eq() {
	if [ "$1" = "$2" ]; then
		ok "$3"
	else
		not_ok "$3: got '$1', expected '$2'"
	fi
}

# refused DESCRIPTION CMD...: CMD must fail (its output is discarded).
refused() {
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then
		not_ok "$what: it succeeded"
	else
		ok "$what"
	fi
}

# finish: the test's last call; its exit code is the test's result.
finish() {
	echo "# $DMR_CHECKS checks, $DMR_FAILED failed"
	[ "$DMR_CHECKS" -gt 0 ] || { echo "not ok - no check ran"; exit 1; }
	[ "$DMR_FAILED" -eq 0 ]
}

# ---- devices ---------------------------------------------------------------

# ram_disks COUNT SIZE_MIB: make /dev/ram0.. of SIZE_MIB each (brd).
ram_disks() {
	rmmod brd 2>/dev/null || true
	modprobe brd rd_nr="$1" rd_size=$(($2 * 1024)) ||
		die "cannot load brd"
	[ -b /dev/ram$(($1 - 1)) ] || die "brd made no /dev/ram$(($1 - 1))"
}

# dev_sectors DEV: size in 512-byte sectors.
dev_sectors() {
	blockdev --getsz "$1"
}

# devno DEV: "major:minor" of a block device, as dm prints it.
devno() {
	local hex
	hex=$(stat -L -c '%t:%T' "$1") || return 1
	printf '%d:%d\n' "0x${hex%%:*}" "0x${hex##*:}"
}

# dm_remove_all: remove every dm device a test made.
dm_remove_all() {
	dmsetup remove_all >/dev/null 2>&1 || true
}

# ---- the kernel log ----------------------------------------------------------

# kmsg_mark: put a unique marker in the kernel log; kmsg_since prints what the
# kernel logged after the newest marker.
DMR_MARK=0
kmsg_mark() {
	DMR_MARK=$((DMR_MARK + 1))
	echo "dmr-test-mark-$$-$DMR_MARK" >/dev/kmsg
}

kmsg_since() {
	dmesg | sed -n "/dmr-test-mark-$$-$DMR_MARK\$/,\$p" | sed 1d
}

# ---- tables and messages -----------------------------------------------------

# expect_ctr_error NAME "TABLE" "EXPECTED ti->error": loading the table must
# fail, log exactly that error for the replication target, and leave no device.
expect_ctr_error() {
	local name=$1 table=$2 want=$3 log
	kmsg_mark
	if dmsetup create "$name" --table "$table" >/dev/null 2>&1; then
		not_ok "table '$table' was accepted; expected: $want"
		dmsetup remove "$name" >/dev/null 2>&1
		return
	fi
	log=$(kmsg_since)
	if grep -qF "replication: $want" <<<"$log"; then
		ok "rejects '$table': $want"
	else
		not_ok "table '$table': expected '$want' in the log, got: $log"
	fi
	if dmsetup info "$name" >/dev/null 2>&1; then
		not_ok "failed table '$table' left device $name behind"
		dmsetup remove "$name" >/dev/null 2>&1
	fi
}

# expect_msg_error DEV "MESSAGE" "EXPECTED LOG TEXT": the message must fail
# and the kernel log must say why.
expect_msg_error() {
	local dev=$1 msg=$2 want=$3 log
	kmsg_mark
	# shellcheck disable=SC2086
	if dmsetup message "$dev" 0 $msg >/dev/null 2>&1; then
		not_ok "message '$msg' to $dev succeeded; expected: $want"
		return
	fi
	log=$(kmsg_since)
	if grep -qF "$want" <<<"$log"; then
		ok "message '$msg' to $dev fails: $want"
	else
		not_ok "message '$msg' to $dev: expected '$want' in the log, got: $log"
	fi
}

# ---- power cuts: one disk under all three devices --------------------------
#
# crash_disk DEV: "crashdisk", a dm-linear over DEV, and the slices rsec, rhid
# and ract over it (lengths from SEC_LEN and STORE_LEN; DISK_LEN is their
# sum; CD is /dev/mapper/crashdisk).  arm_cut loads dm-flakey drop_writes
# into crashdisk, for a resume to cut the power; revive_disk makes it linear
# again (the "reboot").
crash_disk() {
	local b=$1
	linear_table="0 $DISK_LEN linear $b 0"
	flakey_table="0 $DISK_LEN flakey $b 0 0 3600 1 drop_writes"
	dm_remove_all
	dmsetup create crashdisk --table "$linear_table" || die "cannot create crashdisk"
	dmsetup create rsec --table "0 $SEC_LEN linear $CD 0" &&
		dmsetup create rhid --table "0 $STORE_LEN linear $CD $SEC_LEN" &&
		dmsetup create ract --table "0 $STORE_LEN linear $CD $((SEC_LEN + STORE_LEN))" ||
		die "cannot create the slices"
	echo "# disk: $b (write cache: $(cat /sys/block/${b#/dev/}/queue/write_cache))"
}

arm_cut() { dmsetup load crashdisk --table "$flakey_table"; }

# new_session CHUNK: a new session on the crash disk's slices: the top and
# the port removed, both stores blanked, crash.py's state of the secondary
# device taken ($PY: crash.py; $TMPDIR/state), and the test's load_top.
new_session() {
	CHUNK=$1
	dmsetup remove port 2>/dev/null
	dmsetup remove top 2>/dev/null
	dd if=/dev/zero of=$HID bs=4096 count=1 oflag=direct status=none &&
		dd if=/dev/zero of=$ACT bs=4096 count=1 oflag=direct status=none ||
		die "cannot blank the stores"
	$PY init --sec $SEC --state "$TMPDIR/state" || die "secondary unreadable"
	load_top || die "cannot load a new session (chunk $CHUNK)"
	echo "# session: chunk $CHUNK sectors"
}
revive_disk() { dmsetup load crashdisk --table "$linear_table" && dmsetup resume crashdisk; }

# field DEV N: the Nth field of a replication target's status (1: the state).
field() { dmsetup status "$1" | awk -v n="$2" '{print $(n + 4)}'; }

# wait_field DEV N VALUE SECS: poll status field N of DEV until it is VALUE;
# false after SECS.
wait_field() {
	local i
	for ((i = 0; i < $4 * 10; i++)); do
		[ "$(field "$1" "$2")" = "$3" ] && return 0
		sleep 0.1
	done
	return 1
}

# sum DEV: the sha1 of a whole device, read O_DIRECT (a device's page cache
# does not see writes made under it); same A B: their content is equal.
sum() { dd if="$1" bs=1M iflag=direct status=none | sha1sum; }
same() { [ "$(sum "$1")" = "$(sum "$2")" ]; }

# ---- differential runs (tests/vm/differential.py) --------------------------

# blank_session B: remove top and port, and blank the stores /dev/mapper/Bhid
# and /dev/mapper/Bact, for a new session.
blank_session() {
	local b=$1 d
	for d in port top; do
		dmsetup info "$d" >/dev/null 2>&1 && dmsetup remove "$d"
	done
	for d in hid act; do
		dd if=/dev/zero of=/dev/mapper/$b$d bs=4096 count=1 oflag=direct \
			status=none || die "cannot zero /dev/mapper/$b$d"
	done
}

# diff_verdict SEED RC WHAT START: differential.py's result (its output is in
# $TMPDIR/seed$SEED, its exit status RC, it began at $SECONDS = START) as one
# ok or not_ok line about WHAT.
diff_verdict() {
	local seed=$1 rc=$2 what=$3 start=$4 line
	cat "$TMPDIR/seed$seed"
	line=$(grep "^seed $seed: " "$TMPDIR/seed$seed" | head -n 1)
	if [ "$rc" -eq 0 ] && [[ $line == *": 0 mismatches" ]]; then
		ok "$what: agree with the model ($((SECONDS - start))s)"
	else
		not_ok "$what: exit $rc: ${line:-no result line}"
	fi
}

# ---- crash replay (41, 42: tests/vm/logwrites.py) --------------------------
#
# The test sets SEC_LEN and STORE_LEN (sectors) and calls replay_prepare.

# replay_prepare: REAL, LOGDEV, BASE_DISK and COW are the scratch disks; the
# test's devices are removed when it exits; skip (77) without dm-log-writes
# or dm-snapshot.
replay_prepare() {
	# shellcheck disable=SC2086 # $DISKS is a list
	set -- $DISKS
	losetup -D 2>/dev/null
	REAL=$1 LOGDEV=$2 BASE_DISK=$3 COW=$4
	trap 'dm_remove_all; losetup -D' EXIT
	modprobe dm-log-writes 2>/dev/null
	modprobe dm-snapshot 2>/dev/null
	dmsetup targets | grep -q '^log-writes' || { echo "# no dm-log-writes"; exit 77; }
	dmsetup targets | grep -q '^snapshot' || { echo "# no dm-snapshot"; exit 77; }
}

# replay_disk_up LEN: zero the disks; put a dm-log-writes device "lw" of LEN
# sectors over REAL (its log on LOGDEV) and one loop device over it (direct
# I/O; set in LOOP: see 41-crash-replay.sh for why), for the test's slices.
replay_disk_up() {
	local len=$1
	blkdiscard -z $REAL 2>/dev/null || dd if=/dev/zero of=$REAL bs=1M count=$((len / 2048)) oflag=direct status=none
	blkdiscard -z -l 1M $LOGDEV 2>/dev/null || dd if=/dev/zero of=$LOGDEV bs=1M count=1 oflag=direct status=none
	blkdiscard -z $BASE_DISK 2>/dev/null || dd if=/dev/zero of=$BASE_DISK bs=1M count=$((len / 2048)) oflag=direct status=none
	dmsetup create lw --table "0 $len log-writes $REAL $LOGDEV" || die "cannot create log-writes"
	LOOP=$(losetup --direct-io=on -f --show /dev/mapper/lw) ||
		die "cannot set up the loop device"
}

# replay_disk_down LEN: with the slices on LOOP removed, remove the loop
# device and the log-writes device, and print the log's summary; then make
# the replay's devices: rbase (LEN sectors) over BASE_DISK and two COW
# devices, cowa and cowb, on COW.
replay_disk_down() {
	local len=$1
	losetup -d $LOOP && dmsetup remove lw || die "cannot tear down the logged disk"
	python3 "$REPO/tests/vm/logwrites.py" --summary $LOGDEV | sed 's/^/# log: /'
	dmsetup create rbase --table "0 $len linear $BASE_DISK 0" &&
		dmsetup create cowa --table "0 262144 linear $COW 0" &&
		dmsetup create cowb --table "0 262144 linear $COW 262144" ||
		die "cannot create the base and the COW devices"
}

# replay_stack_up CHUNK: replay_disk_up, over LOOP the slices rsec0, rhid0
# and ract0, and on them the top and the port (chunks of CHUNK sectors).
replay_stack_up() {
	replay_disk_up $((SEC_LEN + 2 * STORE_LEN))
	dmsetup create rsec0 --table "0 $SEC_LEN linear $LOOP 0" &&
		dmsetup create rhid0 --table "0 $STORE_LEN linear $LOOP $SEC_LEN" &&
		dmsetup create ract0 --table "0 $STORE_LEN linear $LOOP $((SEC_LEN + STORE_LEN))" ||
		die "cannot create the slices"
	dmsetup create top --table "0 $SEC_LEN replication secondary /dev/mapper/rsec0 /dev/mapper/rhid0 /dev/mapper/ract0 $1" &&
		dmsetup create port --table "0 $SEC_LEN replication port /dev/mapper/rsec0" ||
		die "cannot load the top and the port"
}

# replay_stack_down: remove the top and the port and the slices, then
# replay_disk_down.
replay_stack_down() {
	dmsetup remove port && dmsetup remove top &&
		dmsetup remove rsec0 rhid0 ract0 ||
		die "cannot tear down the logged stack"
	replay_disk_down $((SEC_LEN + 2 * STORE_LEN))
}
