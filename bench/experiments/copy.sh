#!/bin/bash
# timeout: 2700
# The data path's copies (copy-before-write and copy-up): module variants from
# build/exp/variants (names of build/exp/NAME.ko; the guest does not inherit
# the environment), six rounds in rotated order.  Rows, 4 KiB random writes,
# write IOPS:
#   port QD1 / QD32 first touch on virtio and on brd (4 KiB chunks: each one
#   a copy-before-write into hidden);
#   top QD1 / QD32 first touch on brd with 64 KiB chunks: one 4 KiB write at
#   the start of each chunk (fio rw=write:60k), each a copy-up.
set -u
EXP=$REPO/build/exp
cd /
rmmod dm_replication 2>/dev/null
read -r SEC HID ACT _ <<<"$DISKS"
S=$(blockdev --getsz "$SEC")
half=$((S * 512 / 2))
modprobe brd rd_nr=3 rd_size=$((192 * 1024)) || exit 1
BS=$(blockdev --getsz /dev/ram0)
for d in /dev/ram0 /dev/ram1 /dev/ram2; do
	dd if=/dev/zero of=$d bs=4M oflag=direct status=none
done
read -r -a VARIANTS <"$EXP/variants"
R=${ROUNDS:-6}

fj() { # dev qd size offset [rw io_size]
	fio --output-format=terse --terse-version=3 --name=r --filename="$1" \
	  --direct=1 --ioengine=libaio --rw="${5:-randwrite}" --bs=4k --iodepth="$2" \
	  --size="$3" --offset="$4" --randrepeat=0 ${6:+--io_size=$6} | cut -d';' -f49
}
mk() { # ko sec hid act sectors chunk
	insmod "$EXP/$1.ko" || { echo "not ok - insmod $1"; exit 1; }
	dd if=/dev/zero of="$3" bs=4k count=1 oflag=direct status=none
	dd if=/dev/zero of="$4" bs=4k count=1 oflag=direct status=none
	dmsetup create top --table "0 $5 replication secondary $2 $3 $4 $6" || exit 1
	dmsetup create port --table "0 $5 replication port $2" || exit 1
}
rm_() { dmsetup remove port; dmsetup remove top; rmmod dm_replication; }
rot() { local n=$1; shift; local l=("$@"); local k=$((n % ${#l[@]})); echo "${l[@]:k}" "${l[@]:0:k}"; }

for round in $(seq 1 "$R"); do
	for v in $(rot "$round" "${VARIANTS[@]}"); do
		mk "$v" "$SEC" "$HID" "$ACT" "$S" 8
		a=$(fj /dev/mapper/port 1 4M $half)
		dmsetup message top 0 checkpoint
		b=$(fj /dev/mapper/port 32 16M $((half + 16 * 1048576)))
		rm_
		mk "$v" /dev/ram0 /dev/ram1 /dev/ram2 "$BS" 8
		c=$(fj /dev/mapper/port 1 8M 0)
		dmsetup message top 0 checkpoint
		d=$(fj /dev/mapper/port 32 32M $((32 * 1048576)))
		rm_
		mk "$v" /dev/ram0 /dev/ram1 /dev/ram2 "$BS" 128
		e=$(fj /dev/mapper/top 1 16M 0 write:60k 1M)
		dmsetup message top 0 checkpoint
		f=$(fj /dev/mapper/top 32 64M $((32 * 1048576)) write:60k 4M)
		rm_
		echo "RESULT round=$round variant=$v port_qd1_virtio=$a port_qd32_virtio=$b" \
		     "port_qd1_brd=$c port_qd32_brd=$d top64k_qd1_brd=$e top64k_qd32_brd=$f"
	done
done
echo "ok - done"
