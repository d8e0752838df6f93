#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# timeout: 1200
# kernels: 6.12
#
# Faults on every device (issue 14): dm-flakey error_writes, drop_writes and
# corrupt_bio_byte, dm-error and dm-delay, each under each of the secondary
# device, hidden and active, and under a primary's local, remote and metadata
# device, with one fixed workload (tests/vm/fault_matrix.py says which steps).
# Every step's outcome must be the one Documentation/replication.rst gives in
# "Faults on every device".  Then every device is removed and the module
# unloaded: no object may be left in the module's slab caches (counted, and
# a leak also prints a BUG at rmmod, which the harness's scan fails).
. "$REPO/tests/vm/lib.sh"

trap 'dm_remove_all' EXIT
for t in flakey delay; do
	modprobe "dm-$t" 2>/dev/null
	dmsetup targets | grep -q "^$t " || die "no dm-$t target"
done
set -- $DISKS

# slabs: "cache objects" for each of the module's slab caches (its own,
# never merged: the harness boots with slab_nomerge), per-CPU slabs flushed.
slabs() {
	local c
	for c in /sys/kernel/slab/dmr_*; do
		[ -e "$c/objects" ] || continue
		echo 1 >"$c/shrink"
		echo "${c##*/} $(cut -d' ' -f1 "$c/objects")"
	done
}

for mode in secondary primary; do
	python3 "$REPO/tests/vm/fault_matrix.py" "$mode" "$1" >"$TMPDIR/$mode" 2>&1
	rc=$?
	cat "$TMPDIR/$mode"
	grep -q '^not ok' "$TMPDIR/$mode" && DMR_FAILED=$((DMR_FAILED + 1))
	DMR_CHECKS=$((DMR_CHECKS + $(grep -c '^ok' "$TMPDIR/$mode")))
	[ "$rc" = 0 ] || not_ok "fault_matrix.py $mode exited $rc"
	dm_remove_all
done

echo "# slab caches of the module with every device gone:"
caches=$(slabs)
echo "$caches"
[ -n "$caches" ] || not_ok "no slab cache of the module in /sys/kernel/slab"
leaks=$(awk '$2 != 0' <<<"$caches")
check_eq "$leaks" "" "no object left in the module's slab caches"
if rmmod dm_replication; then
	ok "rmmod dm_replication"
else
	not_ok "rmmod dm_replication failed"
fi
finish
