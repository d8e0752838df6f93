#!/bin/bash
# timeout: 480
# kernels: 6.12
#
# The primary's resync:
#  - the remote fails in the middle of a fio job; a table reload with a
#    healthy remote starts syncing, while a fio verify job runs; afterwards
#    local == remote, and only the out-of-sync regions were copied: their
#    count is the one the degraded table reported, and an in-sync region
#    whose remote copy was altered behind the primary's back is left alone;
#  - checkpoint is refused (EBUSY) while syncing and succeeds after;
#  - sync_all copies every region to a zeroed remote;
#  - sync_rate (carried across a reload) measurably slows the copy: over a
#    bounded window it copies no more regions than the rate allows, then 0
#    (unlimited) lets it finish.
. "$REPO/tests/vm/lib.sh"

ram_disks 3 64
S=$(dev_sectors /dev/ram0)
NREG=$((S / 1024))
L=/dev/mapper/plocal R=/dev/mapper/premote P=/dev/mapper/pri
MSG="python3 $REPO/tests/vm/dmmsg.py"
trap 'dm_remove_all' EXIT

dmsetup create plocal --table "0 $S linear /dev/ram0 0" &&
	dmsetup create premote --table "0 $S linear /dev/ram1 0" ||
	die "cannot create the wrappers"

set_remote() {
	local t="0 $S linear /dev/ram1 0"
	[ "$1" = error ] && t="0 $S error"
	dmsetup load premote --table "$t" && dmsetup resume premote
}

oos() { local f; f=$(field "$1" 4); echo "${f%/*}"; }
# region DEV N: the first 4 KiB of region N (512 KiB regions).
region() { dd if="$1" bs=4k count=1 skip=$(($2 * 128)) iflag=direct status=none | sha1sum; }

# ---- degraded in the middle of a job -------------------------------------------------
dmsetup create pri --table "0 $S replication primary $L $R" || die "cannot create pri"
fio --name=pa --filename=$P --direct=1 --ioengine=libaio --iodepth=16 \
	--rw=randwrite --bs=4k --size=32M --time_based --runtime=6 \
	--output="$TMPDIR/fa.out" &
pid=$!
for ((i = 0; i < 200; i++)); do
	[ "$(field pri 3)" -gt 500 ] && break
	sleep 0.05
done
set_remote error || not_ok "cannot fail the remote"
wait $pid || not_ok "fio failed while the remote failed"
check_eq "$(field pri 1)" degraded "degraded after the remote failed"
# Two regions of the second half, which fio does not touch.
dd if=/dev/urandom of=$P bs=4k count=2 seek=$((100 * 128)) oflag=direct status=none
dd if=/dev/urandom of=$P bs=4k count=2 seek=$((101 * 128 + 7)) oflag=direct status=none
before=$(oos pri)
[ "$before" -gt 2 ] && ok "$before regions out of sync" || not_ok "out of sync: $before"

# Region 120 is in sync and nobody writes it: alter its remote copy.  A
# resync of only the out-of-sync regions leaves it so.
head -c 4096 /dev/urandom >"$TMPDIR/poison"
dd if="$TMPDIR/poison" of=/dev/ram1 bs=4k seek=$((120 * 128)) oflag=direct status=none
poison=$(sha1sum <"$TMPDIR/poison")

# ---- reattach: reload with a healthy remote, resync while fio runs ----------------------
$MSG pri sync_rate 8192 || not_ok "sync_rate 8192"
set_remote linear || not_ok "cannot heal the remote"
kmsg_mark
dmsetup reload pri --table "0 $S replication primary $L $R" || die "reload"
dmsetup resume pri || die "resume after reload"
log=$(kmsg_since)
PN=$(devno $P)
check_eq "$(field pri 1)" syncing "syncing after the reload"
expect_msg_error pri checkpoint "checkpoint refused: syncing"
fio --name=pb --filename=$P --direct=1 --ioengine=libaio --iodepth=16 \
	--rw=randwrite --bssplit=4k/60:64k/30:512/10 --size=32M \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --output="$TMPDIR/fb.out" &
pid=$!
$MSG pri sync_rate 16384 || not_ok "sync_rate while syncing"
wait $pid && ok "fio verify during the resync" ||
	not_ok "fio during the resync: $(grep -iE 'verify|err' "$TMPDIR/fb.out" | head -5)"
$MSG pri sync_rate 0 || not_ok "sync_rate 0"
wait_field pri 1 running 120 && ok "the resync ends: running" ||
	not_ok "the resync does not end: $(dmsetup status pri)"
log=$log$(kmsg_since)
grep -q "$PN: $before of $NREG regions out of sync: syncing" <<<"$log" &&
	ok "the reload adopted the $before out-of-sync regions" ||
	not_ok "adopted: $(grep 'out of sync' <<<"$log")"
grep -q "$PN: resync done: $before regions copied" <<<"$log" &&
	ok "$before regions copied, no more" ||
	not_ok "copied: $(grep 'resync done' <<<"$log")"
check_eq "$(region /dev/ram1 120)" "$poison" "an in-sync region was not copied"
dd if=$L of=$R bs=4k count=1 skip=$((120 * 128)) seek=$((120 * 128)) iflag=direct oflag=direct status=none
same $L $R && ok "local == remote after the resync" || not_ok "local and remote differ after the resync"
$MSG pri checkpoint && ok "checkpoint after the resync" || not_ok "checkpoint after the resync"
dmsetup remove pri

# ---- sync_all from a zeroed remote, unlimited then throttled --------------------------------
kmsg_mark
dmsetup create pri2 --table "0 $S replication primary $L /dev/ram2 1 sync_all" || die "pri2"
wait_field pri2 1 running 120 && ok "sync_all: running" || not_ok "sync_all: $(dmsetup status pri2)"
grep -q "$(devno /dev/mapper/pri2): resync done: $NREG regions copied" <<<"$(kmsg_since)" &&
	ok "sync_all copied all $NREG regions" || not_ok "sync_all: $(kmsg_since | grep resync)"
same $L /dev/ram2 && ok "sync_all: local == remote" || not_ok "sync_all: local and remote differ"

# 1024 KiB/s is two 512 KiB regions a second: over a 3 s window the copy
# may take 3 * 2, plus the regions started at once (4) and the edges.
$MSG pri2 sync_rate 1024 || not_ok "sync_rate 1024"
dd if=/dev/zero of=/dev/ram2 bs=1M count=64 oflag=direct status=none
dmsetup reload pri2 --table "0 $S replication primary $L /dev/ram2 1 sync_all" &&
	dmsetup resume pri2 || die "reload pri2"
o0=$(oos pri2)
sleep 3		# the measurement window, not a synchronisation
o1=$(oos pri2)
copied=$((o0 - o1))
echo "# throttled: $copied regions copied in 3 s at 1024 KiB/s"
[ "$copied" -ge 1 ] && [ "$copied" -le 12 ] &&
	ok "sync_rate 1024 KiB/s: $copied regions in 3 s (at most 12)" ||
	not_ok "sync_rate 1024 KiB/s: $copied regions in 3 s"
check_eq "$(field pri2 1)" syncing "throttled: still syncing"
$MSG pri2 sync_rate 0 || not_ok "sync_rate 0"
wait_field pri2 1 running 120 && ok "unthrottled, the resync ends" || not_ok "throttled resync: $(dmsetup status pri2)"
same $L /dev/ram2 && ok "after the throttled sync: local == remote" || not_ok "after the throttled sync: differ"
dmsetup remove pri2

dmsetup remove premote
dmsetup remove plocal
finish
