#!/bin/bash
# timeout: 2400
# The chunk map's lookup, old against new: top rewrites at QD32 on brd (every
# chunk mapped, so each bio costs a lookup and a remap), 4 KiB and 64 KiB
# chunks, for the rhashtable map (build/exp/rhash.ko, 9b7de6a), the dense map
# (build/exp/dense.ko, 6c7858c) and dm-linear; rounds in rotated order.
set -u
EXP=$REPO/build/exp
cd /
rmmod dm_replication 2>/dev/null
modprobe brd rd_nr=3 rd_size=$((192 * 1024)) || exit 1
BS=$(blockdev --getsz /dev/ram0)
for d in /dev/ram0 /dev/ram1 /dev/ram2; do
	dd if=/dev/zero of=$d bs=4M oflag=direct status=none
done
R=${ROUNDS:-6}
rewrite() { # dev: 4 KiB random writes at QD32 over the first 64 MiB, 5 s; IOPS
	fio --output-format=terse --terse-version=3 --name=r --filename=$1 \
		--direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=32 \
		--size=64M --randrepeat=0 --runtime=5 --time_based | cut -d';' -f49
}
rot() { local n=$1; shift; local a=("$@"); local k=$((n % ${#a[@]})); echo "${a[@]:k}" "${a[@]:0:k}"; }
for round in $(seq 1 "$R"); do
	for v in $(rot "$round" linear rhash:8 dense:8 rhash:128 dense:128); do
		if [ "$v" = linear ]; then
			dmsetup create lin --table "0 $BS linear /dev/ram0 0" || exit 1
			t=$(rewrite /dev/mapper/lin)
			dmsetup remove lin
		else
			ko=${v%:*} cs=${v#*:}
			insmod "$EXP/$ko.ko" || { echo "not ok - insmod $ko"; exit 1; }
			dd if=/dev/zero of=/dev/ram1 bs=4k count=1 oflag=direct status=none
			dd if=/dev/zero of=/dev/ram2 bs=4k count=1 oflag=direct status=none
			dmsetup create top --table \
				"0 $BS replication secondary /dev/ram0 /dev/ram1 /dev/ram2 $cs" || exit 1
			# Map every chunk of the 64 MiB first: the rewrites then only look up.
			fio --name=f --filename=/dev/mapper/top --direct=1 --ioengine=libaio \
				--rw=write --bs=1M --iodepth=8 --size=64M >/dev/null
			t=$(rewrite /dev/mapper/top)
			dmsetup remove top
			rmmod dm_replication
		fi
		echo "RESULT round=$round variant=$v top_qd32_rewrite=$t"
	done
done
echo "ok - done"
