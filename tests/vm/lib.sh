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
