#!/bin/bash
# timeout: 2700
# Rotated-order comparison: port first touch QD1/QD32 and top fsync=1 first touch (virtio),
# and top rewrite QD32 (brd).
set -u
EXP=$REPO/build/exp
cd /
rmmod dm_replication 2>/dev/null
read -r SEC HID ACT _ <<<"$DISKS"
S=$(blockdev --getsz $SEC)
half=$(( S * 512 / 2 ))
dd if=/dev/zero of=$SEC bs=1M count=64 seek=$((half/1048576)) oflag=direct status=none
dd if=/dev/zero of=$SEC bs=1M count=8 oflag=direct status=none
for d in $HID $ACT; do dd if=/dev/zero of=$d bs=1M count=64 oflag=direct status=none; done
modprobe brd rd_nr=3 rd_size=$((192*1024)) || exit 1
BS=$(blockdev --getsz /dev/ram0)
for d in /dev/ram0 /dev/ram1 /dev/ram2; do dd if=/dev/zero of=$d bs=4M oflag=direct status=none; done
R=${ROUNDS:-6}
fj() { # dev rw qd size offset [timebased] [fsync]
	local eng=libaio; [ -n "${7:-}" ] && eng=psync
	fio --output-format=terse --terse-version=3 --name=r --filename=$1 --direct=1 --ioengine=$eng \
	  --rw=$2 --bs=4k --iodepth=$3 --size=$4 --offset=$5 --randrepeat=0 ${6:+--runtime=$6 --time_based} ${7:+--fsync=$7} | cut -d';' -f49
}
mk() { # ko param sec hid act sectors
	insmod $EXP/$1.ko $2 || { echo "not ok insmod $1"; exit 1; }
	dd if=/dev/zero of=$4 bs=4k count=1 oflag=direct status=none
	dd if=/dev/zero of=$5 bs=4k count=1 oflag=direct status=none
	dmsetup create top --table "0 $6 replication secondary $3 $4 $5 8" || exit 1
	dmsetup create port --table "0 $6 replication port $3" || exit 1
}
rm_() { dmsetup remove port; dmsetup remove top; rmmod dm_replication; }
rot() { local n=$1; shift; local a=("$@"); local k=$((n % ${#a[@]})); echo "${a[@]:k}" "${a[@]:0:k}"; }
for round in $(seq 1 $R); do
  for v in $(rot $round base fua nf pcpu); do
    case $v in base) ko=base p= ;; fua) ko=fua p= ;; nf) ko=exp p=dmr_exp=1 ;; pcpu) ko=pcpu p= ;; esac
    mk $ko "$p" $SEC $HID $ACT $S
    a=$(fj /dev/mapper/port randwrite 1 4M $half)
    dmsetup message top 0 checkpoint
    b=$(fj /dev/mapper/port randwrite 32 16M $((half + 16*1048576)))
    c=$(fj /dev/mapper/top randwrite 1 1M 0 "" 1)
    rm_
    echo "RESULT round=$round variant=$v port_qd1_first=$a port_qd32_first=$b top_fsync_first=$c"
  done
  for v in $(rot $round linear base nogate pcpu); do
    if [ $v = linear ]; then
      dmsetup create lin --table "0 $BS linear /dev/ram0 0"
      t=$(fj /dev/mapper/lin randwrite 32 64M 0 5); dmsetup remove lin
    else
      mk $v "" /dev/ram0 /dev/ram1 /dev/ram2 $BS
      fio --name=f --filename=/dev/mapper/top --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=8 --size=64M >/dev/null
      t=$(fj /dev/mapper/top randwrite 32 64M 0 5)
      rm_
    fi
    echo "RESULT round=$round variant=$v top_qd32_rewrite=$t"
  done
done
insmod $EXP/base.ko
echo "ok - done"
