#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# timeout: 600
#
# fio during a failover's merge.  A 512 MiB secondary on a virtio disk, the
# stores on two others (write-back caches: flushes reach the target).
#  1. Fill: fio writes 128 MiB to the top (random, 4 KiB..1 MiB blocks, in
#     the first 384 MiB) and 128 MiB to the port (in the last 384 MiB): a
#     dirty set of some 200 MiB in active and hidden.
#  2. The top's image at that moment: a crc32 per 4 KiB block.
#  3. failover; at once, on the top: fio random 4 KiB writes with crc32c
#     verification (verify_backlog: the written blocks are read back and
#     checked during the run, and all again at its end) over a 64 MiB region
#     that spans active, hidden-only and clean chunks, and a Python reader
#     doing random 4 KiB preads outside that region until done, each checked
#     against the image and timed (the longest read during the merge is
#     printed; there is no threshold).
#  4. After done: fio verify-only passes over the region, on the top and on
#     the raw secondary device; outside the region both equal the image;
#     the top and the secondary device are identical; status is done.
. "$REPO/tests/vm/lib.sh"

FILL=${FOFIO_FILL:-128}			# MiB written to the top and to the port
FILL_SMALL=${FOFIO_FILL_SMALL:-64}	# of which in 4 KiB blocks
SEC_MIB=512
FIO_OFF=$((160 << 20)) FIO_SIZE=$((64 << 20))
IO="python3 $REPO/tests/vm/failover_io.py"
trap 'dm_remove_all' EXIT

read -r -a VD <<<"$DISKS"
[ ${#VD[@]} -ge 3 ] || die "need three scratch disks, have: $DISKS"
dmsetup create fsec --table "0 $((SEC_MIB * 2048)) linear ${VD[0]} 0" || die "fsec"
SEC=/dev/mapper/fsec HID=${VD[1]} ACT=${VD[2]}
S=$(dev_sectors $SEC)
dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT 8" || die "top"
dmsetup create port --table "0 $S replication port $SEC" || die "port"
TOP=/dev/mapper/top PORT=/dev/mapper/port

# fill DEV OFFSET SEED: random writes into 384 MiB from OFFSET: FILL_SMALL
# MiB of 4 KiB blocks (one chunk each: one extent each for the merge), the
# rest of FILL MiB in 1 MiB blocks (extents of 256 chunks).
fill() {
	fio --filename="$1" --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --offset="$2" --size=384M --randseed="$3" \
		--name=small --bs=4k --io_size="${FILL_SMALL}M" \
		--name=big --bs=1m --io_size="$((FILL - FILL_SMALL))M" \
		--output="$TMPDIR/fill.out" ||
		die "fill of $1: $(tail -5 "$TMPDIR/fill.out")"
}
t=$SECONDS
fill $TOP 0 5601
fill $PORT 128M 5602
st=$(dmsetup status top)
echo "# fill: ${FILL} MiB to the top, ${FILL} MiB to the port ($((SECONDS - t))s): $st"
read -r _ _ _ _ state err ua uh nck ncommit <<<"$st"
check_eq "$state $err" "running 0" "state after the fill"
[ "${ncommit:-0}" -ge $((FILL * 256 * 3 / 4)) ] && ok "dirty set: $ncommit chunks to commit (active $ua, hidden $uh)" ||
	not_ok "dirty set too small: $ncommit chunks"

$IO image $TOP "$TMPDIR/image" || die "cannot read the top"

# The reader starts first (it checks reads against the image from then on,
# in running too), then failover, then fio at once.
$IO reader $TOP "$TMPDIR/image" --skip $FIO_OFF:$FIO_SIZE --max 400 \
	--ready "$TMPDIR/ready" >"$TMPDIR/reader.out" 2>&1 &
reader_pid=$!
for _ in $(seq 100); do [ -e "$TMPDIR/ready" ] && break; sleep 0.1; done
kmsg_mark
t0=$(date +%s.%N)
dmsetup message top 0 failover || not_ok "failover message"
t1=$(date +%s.%N)
FIO_VERIFY=(--filename=$TOP --direct=1 --ioengine=libaio --iodepth=8
	--rw=randwrite --bs=4k --offset=$FIO_OFF --size=$FIO_SIZE
	--verify=crc32c --verify_fatal=1 --randseed=5603)
fio --name=fovw "${FIO_VERIFY[@]}" --do_verify=1 --verify_backlog=256 \
	--output-format=json --output="$TMPDIR/fovw.json" &
fio_pid=$!
st=$(dmsetup status top)
echo "# failover returned in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms: $st"
[[ $(echo "$st" | awk '{print $5}') == failover ]] &&
	ok "the merge runs after the failover message returns and fio started" ||
	not_ok "state after the failover message and fio's start: $st (expected failover: the merge is too fast for this test)"
wait $reader_pid
reader_rc=$?
echo "# reader: $(head -1 "$TMPDIR/reader.out")"
t_done=$(date +%s.%N)
wait $fio_pid
fio_rc=$?
t_fio=$(date +%s.%N)
[ $reader_rc -eq 0 ] && ok "top reads outside the fio region show the image during the merge" ||
	not_ok "top reads during the merge: $(cat "$TMPDIR/reader.out")"
[ $fio_rc -eq 0 ] && ok "fio random writes on the top verify (crc32c, verify_backlog) during the merge" ||
	not_ok "fio during the merge failed: $(grep -iE 'verify|err' "$TMPDIR/fovw.json" | head -5)"
reads_fo=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[1])["reads_failover"])' "$TMPDIR/reader.out" 2>/dev/null)
[ "${reads_fo:-0}" -gt 0 ] && ok "$reads_fo reads of the top ran during the merge" ||
	not_ok "no read of the top ran during the merge"

# Wait for done (the reader stops at done, or after 400 s).
for _ in $(seq 600); do
	[[ $(dmsetup status top | awk '{print $5}') == failover ]] || break
	sleep 0.5
done
st=$(dmsetup status top)
read -r _ _ _ _ state err ua uh nck ncommit <<<"$st"
check_eq "$state $err ${ua%%/*} ${uh%%/*} $ncommit" "done 0 0 0 0" "status after the merge: $st"
log=$(kmsg_since)
echo "# $(grep -o 'failover.*' <<<"$log" | tr '\n' ';')"
grep -q "failover done:" <<<"$log" && ok "log: failover done" || not_ok "no 'failover done' log line: $log"

python3 - "$TMPDIR/fovw.json" "$TMPDIR/reader.out" "$t0" "$t1" "$t_done" "$t_fio" <<'EOF'
import json, sys
txt = open(sys.argv[1]).read()
j = json.loads(txt[txt.index("{"):])["jobs"][0]
r = json.loads(open(sys.argv[2]).read().splitlines()[1])
t0, t1, td, tf = (float(x) for x in sys.argv[3:7])
clat = j["read"]["clat_ns"]
print("# fio during the merge: %d writes, %d verify reads; write clat max "
      "%.1f ms; read clat max %.1f ms, mean %.2f ms" % (
          j["write"]["total_ios"], j["read"]["total_ios"],
          j["write"]["clat_ns"]["max"] / 1e6, clat["max"] / 1e6,
          clat["mean"] / 1e6))
print("# python reader during the merge: %d reads, max %.1f ms, p99 %.1f ms"
      % (r["reads_failover"], r["max_ms"], r["p99_ms"]))
print("# LONGEST TOP READ LATENCY DURING THE MERGE: %.1f ms (python 4 KiB "
      "pread) / %.1f ms (fio verify reads, clat max over its whole run)" % (
          r["max_ms"], clat["max"] / 1e6))
print("# timeline: failover message %.0f ms; done seen at +%.1fs; fio ended "
      "at +%.1fs" % ((t1 - t0) * 1000, td - t1, tf - t1))
EOF

fio --name=fovw "${FIO_VERIFY[@]}" --verify_only --output="$TMPDIR/vtop.out" &&
	ok "after done, fio verify-only pass on the top" ||
	not_ok "fio verify-only on the top: $(grep -iE 'verify|err' "$TMPDIR/vtop.out" | head -5)"
FIO_VERIFY[0]=--filename=$SEC
fio --name=fovw "${FIO_VERIFY[@]}" --verify_only --output="$TMPDIR/vsec.out" &&
	ok "after done, fio verify-only pass on the secondary device" ||
	not_ok "fio verify-only on the secondary device: $(grep -iE 'verify|err' "$TMPDIR/vsec.out" | head -5)"
$IO compare $SEC "$TMPDIR/image" --skip $FIO_OFF:$FIO_SIZE && ok "secondary device outside the fio region" ||
	not_ok "secondary device outside the fio region"
if cmp -s <(dd if=$TOP bs=1M iflag=direct status=none) <(dd if=$SEC bs=1M iflag=direct status=none); then
	ok "after done the top and the secondary device are identical"
else
	not_ok "after done the top differs from the secondary device"
fi
if dd if=/dev/zero of=$PORT bs=4k count=1 oflag=direct status=none 2>/dev/null; then
	not_ok "a port write succeeded after the failover"
else
	ok "a port write fails after the failover"
fi

dmsetup remove port
dmsetup remove top
finish
