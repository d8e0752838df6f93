#!/bin/bash
# timeout: 600
# kernels: 6.12
# (6.12 only: it checks our own parsing and cell logic, the same source on
# every kernel; 6.1 keeps the tests where the kernels can differ.)
#
# Concurrency on the same chunks (tests/vm/race.py): the port's
# copy-before-write racing top reads of the same chunks and top copy-ups of
# partial chunks.  The top must never see the primary's data before a
# checkpoint, and must always see its own.  Runs on 4 KiB and 64 KiB chunks.
. "$REPO/tests/vm/lib.sh"

ram_disks 3 64
SEC=/dev/ram0 HID=/dev/ram1 ACT=/dev/ram2
S=$(dev_sectors $SEC)
trap 'dm_remove_all' EXIT

for chunk in 8 128; do
	for d in $HID $ACT; do dd if=/dev/zero of=$d bs=4096 count=1 status=none; done
	dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT $chunk" || die "top"
	dmsetup create port --table "0 $S replication port $SEC" || die "port"
	if out=$(python3 "$REPO/tests/vm/race.py" /dev/mapper/top /dev/mapper/port \
		$SEC "${DMR_RACE_CHUNKS:-1024}" "${DMR_RACE_ROUNDS:-3}" $chunk 2>&1); then
		ok "chunk $chunk sectors: $(echo "$out" | tail -n 1)"
	else
		not_ok "chunk $chunk sectors: $out"
	fi
	check_eq "$(dmsetup status top | awk '{print $6}')" 0 "chunk $chunk: no replication error"
	dmsetup remove port; dmsetup remove top
done

# Lifetimes under load (pitfall 9): the top is removed while fio keeps 16
# writes in flight on the port, and while a failover's copies are in flight.
# The bios that end after their core's count reached zero, and the copies
# that end as the merge is paused, must not touch the freed core or commit
# (ee7a6b0).  The windows are a few instructions wide: these rounds hit them
# only by chance; KASAN, slab poisoning and the kernel-log scan catch a hit.
blank_stores() { for d in $HID $ACT; do dd if=/dev/zero of="$d" bs=4096 count=1 status=none; done; }
for round in 1 2 3; do
	blank_stores
	dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT 8" || die "top"
	dmsetup create port --table "0 $S replication port $SEC" || die "port"
	fio --name=port --filename=/dev/mapper/port --rw=randwrite --bs=4k \
		--direct=1 --ioengine=libaio --iodepth=16 --time_based --runtime=30 \
		--output=/dev/null >/dev/null 2>&1 &
	fio_pid=$!
	for ((i = 0; i < 300; i++)); do
		[ "$(dmsetup status port | awk '{print $6}')" -gt 64 ] && break
		sleep 0.1
	done
	[ "$i" -lt 300 ] || not_ok "round $round: the port copied no 64 chunks in 30 s"
	dmsetup remove top || not_ok "round $round: remove the top under port writes"
	wait "$fio_pid"
	check_eq "$(dmsetup status port | awk '{print $5}')" unloaded \
		"round $round: top removed under 16 port writes in flight; the port says unloaded"
	dmsetup remove port

	blank_stores
	dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT 8" || die "top"
	dd if=/dev/urandom of=/dev/mapper/top bs=1M count=16 oflag=direct status=none
	dmsetup message top 0 failover
	dmsetup remove top || not_ok "round $round: remove the top during the merge"
	ok "round $round: top removed with the failover's copies in flight"
done
finish
