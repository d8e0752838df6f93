#!/bin/bash
# timeout: 1200
# Phase timing of the port's first touch (virtio and brd), QD1 and QD32.
set -u
EXP=$REPO/build/exp
cd /
rmmod dm_replication 2>/dev/null
read -r SEC HID ACT _ <<<"$DISKS"
S=$(blockdev --getsz $SEC)
half=$(( S * 512 / 2 ))
dd if=/dev/zero of=$SEC bs=1M count=64 seek=$((half/1048576)) oflag=direct status=none
for d in $HID $ACT; do dd if=/dev/zero of=$d bs=1M count=64 oflag=direct status=none; done
modprobe brd rd_nr=3 rd_size=$((192*1024)) || exit 1
BS=$(blockdev --getsz /dev/ram0)
for d in /dev/ram0 /dev/ram1 /dev/ram2; do dd if=/dev/zero of=$d bs=4M oflag=direct status=none; done
fj() { fio --output-format=terse --terse-version=3 --name=r --filename=$1 --direct=1 --ioengine=libaio \
	  --rw=randwrite --bs=4k --iodepth=$2 --size=$3 --offset=$4 --randrepeat=0 | cut -d';' -f49; }
raw() { fio --output-format=terse --terse-version=3 --name=r --filename=$1 --direct=1 --ioengine=libaio \
	  --rw=$2 --bs=4k --iodepth=1 --size=4M --offset=$3 --randrepeat=0 | cut -d';' -f$4; }
insmod $EXP/tim.ko
for kind in virtio brd; do
  if [ $kind = virtio ]; then s=$SEC h=$HID a=$ACT n=$S off=$half; else s=/dev/ram0 h=/dev/ram1 a=/dev/ram2 n=$BS off=$((BS*512/2)); fi
  echo "RAW $kind read_qd1=$(raw $s randread $off 8) write_qd1=$(raw $s randwrite $off 49)"
  for qd in 1 32; do
    for i in 1 2 3; do
      dd if=/dev/zero of=$h bs=4k count=1 oflag=direct status=none
      dd if=/dev/zero of=$a bs=4k count=1 oflag=direct status=none
      dmsetup create top --table "0 $n replication secondary $s $h $a 8" || exit 1
      dmsetup create port --table "0 $n replication port $s" || exit 1
      iops=$(fj /dev/mapper/port $qd $((qd == 1 ? 4 : 16))M $off)
      dmsetup remove port; dmsetup remove top
      echo "RESULT $kind qd=$qd iops=$iops $(dmesg | grep dmrT | tail -1 | sed 's/.*dmrT//')"
    done
  done
done
echo "ok - done"
