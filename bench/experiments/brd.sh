# shellcheck shell=bash
# Sourced by hop.sh and copyhop.sh, in the guest: three RAM disks of 192 MiB
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
