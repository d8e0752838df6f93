#!/bin/bash
# timeout: 1800
#
# Checkpoint latency against the amount of data in the stores, inside the
# test VM (bench/checkpoint runs it).  For each size, fill active with top
# writes and hidden with port writes (SIZE MiB each, 4 KiB chunks), then
# time one checkpoint message: the DM_TARGET_MSG ioctl itself, so dmsetup's
# own cost is not counted.  Repeated REPS times per size.
set -eu
. "$REPO/tests/vm/lib.sh"

SIZES=${DMR_BENCH_SIZES:-"1 64 512"}
REPS=${DMR_BENCH_REPS:-5}
read -r SEC HID ACT _ <<<"$DISKS"
S=$(dev_sectors "$SEC")
for d in $HID $ACT; do dd if=/dev/zero of=$d bs=4096 count=1 oflag=direct status=none; done
trap 'dm_remove_all' EXIT

dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT 8"
dmsetup create port --table "0 $S replication port $SEC"

# One checkpoint, timed around the ioctl only.
timed_checkpoint() {
	python3 - "$@" <<'PY'
import sys, time, os
sys.path.insert(0, os.path.join(os.environ["REPO"], "tests", "vm"))
import dmmsg
fd = os.open("/dev/mapper/control", os.O_RDWR)
t0 = time.perf_counter()
dmmsg.message(fd, "top", "checkpoint")
print("%.3f" % ((time.perf_counter() - t0) * 1000))
PY
}

out=${OUT:-/tmp}/checkpoint.md
{
	echo "| data in each store | chunks (active + hidden) | checkpoint ms (each run) | median ms |"
	echo "|---|---|---|---|"
} >"$out"
for mib in $SIZES; do
	times=()
	for _ in $(seq "$REPS"); do
		# Top writes fill active from offset 0; port writes fill hidden
		# from the middle of the disk (their chunks are not in active).
		fio --name=a --filename=/dev/mapper/top --direct=1 --ioengine=libaio \
			--iodepth=16 --rw=write --bs=1M --size=${mib}M \
			--output=/dev/null
		fio --name=h --filename=/dev/mapper/port --direct=1 --ioengine=libaio \
			--iodepth=16 --rw=write --bs=1M --offset=$((S / 2 * 512)) \
			--size=${mib}M --output=/dev/null
		st=$(dmsetup status top)
		used=$(awk '{print $7, $8}' <<<"$st" | sed 's#/[0-9]*##g')
		times+=("$(timed_checkpoint)")
	done
	median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
	echo "| $mib MiB | $used | ${times[*]} | $median |" | tee -a "$out"
done
echo "kernel $(uname -r), chunk 4 KiB, virtio disks backed by sparse files, TCG" | tee -a "$out"
ok "checkpoint benchmark written to $out"
finish
