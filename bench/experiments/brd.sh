# shellcheck shell=bash
# Sourced by hop.sh, copyhop.sh, flush.sh and portpersist.sh, in the guest: three RAM disks of 192 MiB
# written whole (/dev/ram0..2, BS sectors each), the module's dependencies
# loaded for build/exp/*.ko, and the helpers below.
EXP=$REPO/build/exp
cd / || exit 1
rmmod dm_replication 2>/dev/null
# shellcheck disable=SC2046 # one word per module
modprobe -a $(modinfo -F depends "$EXP/base.ko" | tr "," " ")
modprobe brd rd_nr=3 rd_size=$((192 * 1024)) || exit 1
BS=$(blockdev --getsz /dev/ram0)
export BS
for d in /dev/ram0 /dev/ram1 /dev/ram2; do
	dd if=/dev/zero of=$d bs=4M oflag=direct status=none
done

# fj DEV QD SIZE OFFSET [FSYNC]: 4 KiB random writes once over the region;
# prints the write IOPS.  With FSYNC, psync and an fsync every FSYNC writes.
fj() {
	local eng=libaio
	[ -z "${5:-}" ] || eng=psync
	fio --output-format=terse --terse-version=3 --name=r --filename="$1" \
	  --direct=1 --ioengine=$eng ${5:+--fsync=$5} --rw=randwrite --bs=4k --iodepth="$2" \
	  --size="$3" --offset="$4" --randrepeat=0 | cut -d';' -f49
}

# blank_stores: zero the headers of the stores (/dev/ram1, /dev/ram2).
blank_stores() {
	dd if=/dev/zero of=/dev/ram1 bs=4k count=1 oflag=direct status=none
	dd if=/dev/zero of=/dev/ram2 bs=4k count=1 oflag=direct status=none
}

# rot N WORD...: the words rotated left by N modulo their count.
rot() { local n=$1; shift; local l=("$@"); local k=$((n % ${#l[@]})); echo "${l[@]:k}" "${l[@]:0:k}"; }

# mk VARIANT CHUNK [port]: load build/exp/VARIANT.ko, blank the stores and
# create the top over /dev/ram0..2 with CHUNK sectors (and a port over
# /dev/ram0 with "port").
mk() {
	insmod "$EXP/$1.ko" || { echo "not ok - insmod $1"; exit 1; }
	blank_stores
	dmsetup create top --table "0 $BS replication secondary /dev/ram0 /dev/ram1 /dev/ram2 $2" || exit 1
	[ -z "${3:-}" ] || dmsetup create port --table "0 $BS replication port /dev/ram0" || exit 1
}

# rm_: remove what mk made and unload the module.
rm_() {
	! dmsetup info port >/dev/null 2>&1 || dmsetup remove port
	dmsetup remove top
	rmmod dm_replication
}

# rounds FN VARIANT...: six rounds, the variants in rotated order; a line
# "RESULT round=N variant=V ..." with what "FN V" prints (its figures).
rounds() {
	local fn=$1 round v r
	shift
	for round in 1 2 3 4 5 6; do
		for v in $(rot "$round" "$@"); do
			r=$("$fn" "$v") || { echo "not ok - round $round, $v: $r"; exit 1; }
			echo "RESULT round=$round variant=$v $r"
		done
	done
	echo "ok - done"
}

# port_first VARIANT: the port's 4 KiB first touch (4 KiB chunks), QD1 over
# 8 MiB and QD32 over 32 MiB.
port_first() {
	local a b
	mk "$1" 8 port
	a=$(fj /dev/mapper/port 1 8M 0)
	b=$(fj /dev/mapper/port 32 32M $((64 * 1048576)))
	rm_
	echo "port_qd1_first=$a port_qd32_first=$b"
}
