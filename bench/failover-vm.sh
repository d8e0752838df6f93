#!/bin/bash
# timeout: 2400
#
# The failover's merge-down commit, inside the test VM (bench/failover runs
# it).  Fill the stores with MIB MiB of dirty data (half top writes into
# active, half port writes copied into hidden), send failover with the
# DM_TARGET_MSG ioctl, and take the commit's time from the target's own log
# line ("failover done: N chunks in T ms").  Once without and once with a
# reader on the top (4 KiB O_DIRECT random reads, one at a time), whose
# latencies give p50/p99/max.  The peer: dd of the same size from the hidden
# disk to the secondary disk, direct I/O, fsync at the end, median of 3.
set -eu
. "$REPO/tests/vm/lib.sh"

MIB=${DMR_BENCH_MIB:-512}
read -r SEC HID ACT _ <<<"$DISKS"
S=$(dev_sectors "$SEC")
trap 'dm_remove_all' EXIT
out=${OUT:-/tmp}/failover.md

message() {
	python3 - "$@" <<'PY'
import sys, os
sys.path.insert(0, os.path.join(os.environ["REPO"], "tests", "vm"))
import dmmsg
fd = os.open("/dev/mapper/control", os.O_RDWR)
dmmsg.message(fd, sys.argv[1], " ".join(sys.argv[2:]))
PY
}

# Reads 4 KiB at random offsets of the first SIZE bytes until STOP exists;
# prints "count p50 p99 max" in milliseconds.
reader() {
	python3 - "$@" <<'PY'
import mmap, os, random, sys, time
dev, size, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
lat = []
rnd = random.Random(1)
while not os.path.exists(stop):
    off = rnd.randrange(size // 4096) * 4096
    t0 = time.perf_counter()
    os.preadv(fd, [buf], off)
    lat.append((time.perf_counter() - t0) * 1000)
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print("%d %.2f %.2f %.2f" % (len(lat), pick(0.5), pick(0.99), lat[-1]))
PY
}

fill() {
	for d in $HID $ACT; do
		dd if=/dev/zero of=$d bs=4096 count=1 oflag=direct status=none
	done
	dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT 8"
	dmsetup create port --table "0 $S replication port $SEC"
	fio --name=a --filename=/dev/mapper/top --direct=1 --ioengine=libaio \
		--iodepth=16 --rw=write --bs=1M --size=$((MIB / 2))M \
		--output=/dev/null
	fio --name=h --filename=/dev/mapper/port --direct=1 --ioengine=libaio \
		--iodepth=16 --rw=write --bs=1M --offset=$((S / 2 * 512)) \
		--size=$((MIB / 2))M --output=/dev/null
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# Sends failover and waits for done; prints the target's commit time in ms.
commit() {
	kmsg_mark
	message top failover
	until dmsetup status top | grep -q ' done '; do
		dmsetup status top | grep -q failover_failed && die "failover failed"
		sleep 0.2
	done
	kmsg_since | sed -n 's/.*failover done: \([0-9]*\) chunks in \([0-9]*\) ms.*/\1 \2/p' | tail -n 1
}

teardown() {
	dmsetup remove port
	dmsetup remove top
}

# The disks are sparse files on the host: write them once, so that no run
# pays for the host's first allocation and the peers write alike.
for d in $SEC $HID $ACT; do
	dd if=/dev/zero of=$d bs=1M oflag=direct status=none || true
done

# 1. The commit alone, at the default depth and at the deepest.
fill
read -r chunks ms <<<"$(commit)"
teardown
[ "$chunks" -eq $((MIB * 256)) ] || die "committed $chunks chunks, expected $((MIB * 256))"
fill
message top commit_depth 64
read -r _ ms64 <<<"$(commit)"
teardown

# 2. The commit with a reader on the top.
fill
rm -f /tmp/stop
reader /dev/mapper/top $((MIB / 2 * 1048576)) /tmp/stop >/tmp/reader.out &
rpid=$!
read -r chunks2 ms2 <<<"$(commit)"
touch /tmp/stop
wait $rpid
read -r nreads p50 p99 max </tmp/reader.out
teardown

# 3. dd of the same size on the same devices.
dd_ms() {
	local t0 t1
	t0=$(date +%s%N)
	dd if=$HID of=$SEC bs=1M count=$MIB iflag=direct oflag=direct conv=fsync status=none
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}
d1=$(dd_ms)
d2=$(dd_ms)
d3=$(dd_ms)
dd=$(printf '%s\n' "$d1" "$d2" "$d3" | sort -n | sed -n 2p)

mbs() { awk -v m="$MIB" -v t="$1" 'BEGIN { printf "%.0f", m * 1000 / t }'; }
{
	echo "| run | MiB | time ms | MiB/s | vs dd |"
	echo "|---|---|---|---|---|"
	echo "| failover commit | $MIB | $ms | $(mbs "$ms") | $(awk -v a="$dd" -v b="$ms" 'BEGIN { printf "%.2f", a / b }') |"
	echo "| failover commit, commit_depth 64 | $MIB | $ms64 | $(mbs "$ms64") | $(awk -v a="$dd" -v b="$ms64" 'BEGIN { printf "%.2f", a / b }') |"
	echo "| failover commit, reader on top | $MIB | $ms2 | $(mbs "$ms2") | $(awk -v a="$dd" -v b="$ms2" 'BEGIN { printf "%.2f", a / b }') |"
	echo "| dd hidden -> secondary, 1 MiB direct (median of $d1, $d2, $d3 ms) | $MIB | $dd | $(mbs "$dd") | 1.00 |"
	echo
	echo "Top reader during the commit: $nreads reads of 4 KiB, latency p50 $p50 ms, p99 $p99 ms, max $max ms."
	echo
	echo "kernel $(uname -r), chunk 4 KiB, commit_depth 8 (default), virtio disks backed by sparse files, TCG"
} | tee "$out"
ok "failover benchmark written to $out"
finish
