#!/bin/bash
# timeout: 600
#
# fio on the top and on the port at the same time while a checkpoint runs
# every 50 ms, then data checks: the port's writes verify (fio crc32c), every
# checkpoint succeeded, and after a last checkpoint the top reads exactly the
# secondary device.  A short verify run on the top afterwards checks that the
# top still reads what it writes.
. "$REPO/tests/vm/lib.sh"

ram_disks 3 128
SEC=/dev/ram0 HID=/dev/ram1 ACT=/dev/ram2
S=$(dev_sectors $SEC)
RUNTIME=${DMR_FIO_RUNTIME:-20}
trap 'dm_remove_all' EXIT

dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT 8" || die "top"
dmsetup create port --table "0 $S replication port $SEC" || die "port"
TOP=/dev/mapper/top PORT=/dev/mapper/port
MSG="python3 $REPO/tests/vm/dmmsg.py"

# The port writes the first half with verification; the top writes and
# reads everywhere; checkpoints run every 50 ms meanwhile.
fio --name=port --filename=$PORT --direct=1 --ioengine=libaio --iodepth=8 \
	--rw=randwrite --bs=4k --size=32M --verify=crc32c --do_verify=1 \
	--verify_fatal=1 --loops=2 --output="$TMPDIR/port.out" &
port_pid=$!
fio --name=topw --filename=$TOP --direct=1 --ioengine=libaio --iodepth=8 \
	--rw=randwrite --bssplit=4k/50:16k/25:512/15:64k/10 --time_based \
	--runtime="$RUNTIME" --output="$TMPDIR/topw.out" &
topw_pid=$!
fio --name=topr --filename=$TOP --direct=1 --ioengine=libaio --iodepth=4 \
	--rw=randread --bs=4k --time_based --runtime="$RUNTIME" \
	--output="$TMPDIR/topr.out" &
topr_pid=$!
$MSG --every 0.05 --for "$RUNTIME" top checkpoint >"$TMPDIR/msg.out" 2>&1
msg_rc=$?

wait $topw_pid && ok "fio writes on the top complete" || not_ok "fio top writes failed: $(tail -5 "$TMPDIR/topw.out")"
wait $topr_pid && ok "fio reads on the top complete" || not_ok "fio top reads failed: $(tail -5 "$TMPDIR/topr.out")"
wait $port_pid && ok "fio on the port verifies (crc32c)" ||
	not_ok "fio on the port failed: $(grep -iE 'verify|err' "$TMPDIR/port.out" | head -5)"
[ $msg_rc -eq 0 ] && ok "checkpoints every 50 ms: $(cat "$TMPDIR/msg.out")" ||
	not_ok "checkpoints failed: $(cat "$TMPDIR/msg.out")"
n=$(awk '{print $2}' "$TMPDIR/msg.out" | tr -d ,)
[ "${n:-0}" -ge $((RUNTIME * 2)) ] && ok "at least $((RUNTIME * 2)) checkpoints ran ($n)" ||
	not_ok "too few checkpoints ran: ${n:-0}"

status=$(dmsetup status top)
check_eq "$(echo "$status" | awk '{print $6}')" 0 "no replication error: $status"
dmsetup message top 0 checkpoint || not_ok "last checkpoint"
if cmp -s <(dd if=$TOP bs=1M iflag=direct status=none) \
	<(dd if=$SEC bs=1M iflag=direct status=none); then
	ok "after the last checkpoint the top reads the secondary device"
else
	not_ok "top differs from the secondary device after a checkpoint"
fi

fio --name=topv --filename=$TOP --direct=1 --ioengine=libaio --iodepth=8 \
	--rw=randwrite --bs=4k --size=16M --offset=64M --verify=crc32c \
	--do_verify=1 --verify_fatal=1 --output="$TMPDIR/topv.out" &&
	ok "the top verifies its own writes after the stress" ||
	not_ok "top verify failed: $(grep -iE 'verify|err' "$TMPDIR/topv.out" | head -5)"
finish
