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
finish
