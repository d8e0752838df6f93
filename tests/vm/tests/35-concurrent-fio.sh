#!/bin/bash
# timeout: 600
# kernels: 6.12
# soak: concurrency soak, 10 minutes of the storm
# soak-timeout: 1800
#
# The concurrency soak (issue 14), short in make check, long in make soak:
#  1. the storm: fio on the top (random writes of mixed sizes, random
#     reads) and on the port (random writes with crc32c verification) at
#     the same time, a checkpoint every 10 ms, and the top's table reloaded
#     and resumed over and over (the same table, as an orchestrator's
#     "replctl" or a live migration of the stack would);
#  2. data checks: the port's writes verify, every checkpoint and every
#     reload succeeded, status shows no error, and after a last checkpoint
#     the top reads exactly the secondary device;
#  3. a failover in the middle of fio with verification on the top: its
#     writes verify during and after the merge, the top then equals the
#     secondary device, which verifies too.
. "$REPO/tests/vm/lib.sh"

ram_disks 3 128
SEC=/dev/ram0 HID=/dev/ram1 ACT=/dev/ram2
S=$(dev_sectors $SEC)
if [ -n "${DMR_SOAK:-}" ]; then RUNTIME=600; else RUNTIME=${DMR_FIO_RUNTIME:-20}; fi
trap 'dm_remove_all' EXIT

TABLE="0 $S replication secondary $SEC $HID $ACT 8"
dmsetup create top --table "$TABLE" || die "top"
dmsetup create port --table "0 $S replication port $SEC" || die "port"
TOP=/dev/mapper/top PORT=/dev/mapper/port
MSG="python3 $REPO/tests/vm/dmmsg.py"

# The port writes the first half with verification, for as long as the
# storm lasts; the top writes and reads everywhere.
fio --name=port --filename=$PORT --direct=1 --ioengine=libaio --iodepth=8 \
	--rw=randwrite --bs=4k --size=32M --verify=crc32c --do_verify=1 \
	--verify_fatal=1 --verify_backlog=512 --time_based --runtime="$RUNTIME" \
	--output="$TMPDIR/port.out" &
port_pid=$!
fio --name=topw --filename=$TOP --direct=1 --ioengine=libaio --iodepth=8 \
	--rw=randwrite --bssplit=4k/50:16k/25:512/15:64k/10 --time_based \
	--runtime="$RUNTIME" --output="$TMPDIR/topw.out" &
topw_pid=$!
fio --name=topr --filename=$TOP --direct=1 --ioengine=libaio --iodepth=4 \
	--rw=randread --bs=4k --time_based --runtime="$RUNTIME" \
	--output="$TMPDIR/topr.out" &
topr_pid=$!
$MSG --every 0.01 --for "$RUNTIME" top checkpoint >"$TMPDIR/msg.out" 2>&1 &
msg_pid=$!

# Reload and resume the top while all that runs, until the storm ends.
reloads=0 reload_fail=0
while kill -0 $msg_pid 2>/dev/null; do
	if dmsetup reload top --table "$TABLE" && dmsetup resume top; then
		reloads=$((reloads + 1))
	else
		reload_fail=$((reload_fail + 1))
	fi
done
wait $msg_pid
msg_rc=$?

wait $topw_pid && ok "fio writes on the top complete" || not_ok "fio top writes failed: $(tail -5 "$TMPDIR/topw.out")"
wait $topr_pid && ok "fio reads on the top complete" || not_ok "fio top reads failed: $(tail -5 "$TMPDIR/topr.out")"
wait $port_pid && ok "fio on the port verifies (crc32c)" ||
	not_ok "fio on the port failed: $(grep -iE 'verify|err' "$TMPDIR/port.out" | head -5)"
[ $msg_rc -eq 0 ] && ok "checkpoints every 10 ms: $(cat "$TMPDIR/msg.out")" ||
	not_ok "checkpoints failed: $(cat "$TMPDIR/msg.out")"
n=$(awk '{print $2}' "$TMPDIR/msg.out" | tr -d ,)
[ "${n:-0}" -ge $((RUNTIME * 2)) ] && ok "at least $((RUNTIME * 2)) checkpoints ran ($n)" ||
	not_ok "too few checkpoints ran: ${n:-0}"
[ "$reload_fail" = 0 ] && [ "$reloads" -ge 3 ] &&
	ok "$reloads reloads and resumes of the top during the storm, none failed" ||
	not_ok "reloads of the top: $reloads done, $reload_fail failed"
echo "# storm of ${RUNTIME}s: $n checkpoints, $reloads reloads; port: $(grep -o 'IOPS=[^,]*' "$TMPDIR/port.out" | head -1)"

status=$(dmsetup status top)
check_eq "$(echo "$status" | awk '{print $5, $6}')" "running 0" "state running, no replication error: $status"
dmsetup message top 0 checkpoint || not_ok "last checkpoint"
if cmp -s <(dd if=$TOP bs=1M iflag=direct status=none) \
	<(dd if=$SEC bs=1M iflag=direct status=none); then
	ok "after the last checkpoint the top reads the secondary device"
else
	not_ok "top differs from the secondary device after a checkpoint"
fi

# A failover in the middle of a verifying writer on the top: unverified
# writes make a dirty set, then fio with verification starts, and the
# failover with it; fio goes on through the merge.
fio --name=topw2 --filename=$TOP --direct=1 --ioengine=libaio --iodepth=8 \
	--rw=randwrite --bs=4k --size=32M --output="$TMPDIR/topw2.out" ||
	not_ok "fio writes before the failover: $(tail -5 "$TMPDIR/topw2.out")"
FIO_VERIFY=(--filename=$TOP --direct=1 --ioengine=libaio --iodepth=8
	--rw=randwrite --bs=4k --offset=64M --size=32M --verify=crc32c
	--verify_fatal=1 --randseed=3501)
fio --name=topv "${FIO_VERIFY[@]}" --do_verify=1 --verify_backlog=256 \
	--output="$TMPDIR/topv.out" &
topv_pid=$!
dmsetup remove port || not_ok "remove the port"
dmsetup message top 0 failover || not_ok "failover message"
st=$(dmsetup status top)
echo "# after the failover message, with fio running: $st"
wait $topv_pid && ok "fio on the top verifies (crc32c) through the failover" ||
	not_ok "fio on the top through the failover: $(grep -iE 'verify|err' "$TMPDIR/topv.out" | head -5)"
wait_field top 1 done 300 || not_ok "no done within 300 s: $(dmsetup status top)"
check_eq "$(field top 1) $(field top 2)" "done 0" "state done, no error"
if cmp -s <(dd if=$TOP bs=1M iflag=direct status=none) \
	<(dd if=$SEC bs=1M iflag=direct status=none); then
	ok "after done the top and the secondary device are identical"
else
	not_ok "after done the top differs from the secondary device"
fi
FIO_VERIFY[0]=--filename=$SEC
fio --name=topv "${FIO_VERIFY[@]}" --verify_only --output="$TMPDIR/vsec.out" &&
	ok "the secondary device verifies fio's writes" ||
	not_ok "fio verify-only on the secondary device: $(grep -iE 'verify|err' "$TMPDIR/vsec.out" | head -5)"
finish
