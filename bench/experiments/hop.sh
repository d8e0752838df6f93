#!/bin/bash
# timeout: 1800
# The done_work hop of a whole-chunk first touch on brd: base.ko against
# hop.ko (stop 26: hop.patch, measuring only, unsafe; stop 27: the commit
# that maps in the bio's end safely), six rounds in rotated
# order; top 4 KiB first touch QD1 (32 MiB) and with fsync=1 (8 MiB).
# Run with DMR_NO_BUILD=1 (the guest loads its own modules).
set -u
EXP=$REPO/build/exp
cd /
rmmod dm_replication 2>/dev/null
# shellcheck disable=SC2046 # one word per module
modprobe -a $(modinfo -F depends "$EXP/base.ko" | tr "," " ")
modprobe brd rd_nr=3 rd_size=$((192 * 1024)) || exit 1
BS=$(blockdev --getsz /dev/ram0)
for d in /dev/ram0 /dev/ram1 /dev/ram2; do
	dd if=/dev/zero of=$d bs=4M oflag=direct status=none
done
VARIANTS=(base hop)
fj() { # dev qd size offset [fsync]
	local eng=libaio
	[ -z "${5:-}" ] || eng=psync
	fio --output-format=terse --terse-version=3 --name=r --filename="$1" \
	  --direct=1 --ioengine=$eng ${5:+--fsync=$5} --rw=randwrite --bs=4k --iodepth="$2" \
	  --size="$3" --offset="$4" --randrepeat=0 | cut -d';' -f49
}
mk() {
	insmod "$EXP/$1.ko" || { echo "not ok - insmod $1"; exit 1; }
	dd if=/dev/zero of=/dev/ram1 bs=4k count=1 oflag=direct status=none
	dd if=/dev/zero of=/dev/ram2 bs=4k count=1 oflag=direct status=none
	dmsetup create top --table "0 $BS replication secondary /dev/ram0 /dev/ram1 /dev/ram2 8" || exit 1
}
rm_() { dmsetup remove top; rmmod dm_replication; }
rot() { local n=$1; shift; local l=("$@"); local k=$((n % ${#l[@]})); echo "${l[@]:k}" "${l[@]:0:k}"; }
for round in 1 2 3 4 5 6; do
	for v in $(rot "$round" "${VARIANTS[@]}"); do
		mk "$v"
		a=$(fj /dev/mapper/top 1 32M 0)
		dmsetup message top 0 checkpoint
		b=$(fj /dev/mapper/top 1 8M $((64 * 1048576)) 1)
		rm_
		echo "RESULT round=$round variant=$v top_qd1_first=$a top_fsync1_first=$b"
	done
done
echo "ok - done"
