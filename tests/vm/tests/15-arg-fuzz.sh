#!/bin/bash
# timeout: 480
# kernels: 6.12
# soak: argument fuzz
# soak-timeout: 3600
#
# Hostile arguments (tests/vm/argfuzz.py): thousands of mutated table lines of
# every mode and messages to live devices in every state.  Each table is
# refused with a reason in the kernel log or works; each message succeeds or
# fails with a reason; status stays parseable; no splat, no leak.
# DMR_FUZZ_SEED=N repeats a run.
. "$REPO/tests/vm/lib.sh"

cases=2000 msgs=1500
[ -n "${DMR_SOAK:-}" ] && cases=20000 msgs=15000
cases=${DMR_FUZZ_CASES:-$cases} msgs=${DMR_FUZZ_MSGS:-$msgs}
# shellcheck disable=SC2086
set -- $DISKS
slab() { awk -v c="$1" '$1 == c {print $2}' /proc/slabinfo; }
before=$(slab kmalloc-512)
if python3 "$REPO/tests/vm/argfuzz.py" $cases $msgs "$@"; then
	ok "argument fuzz: every case refused with a reason or working"
else
	not_ok "argument fuzz"
fi
grep -E '^(dmr|dm_replication)' /proc/slabinfo | awk '{print "# slab " $1 ": " $2 " objects"}'
echo "# kmalloc-512 objects: before $before, after $(slab kmalloc-512)"
left=$(dmsetup ls 2>/dev/null | grep -c '^fz-' || true)
check_eq "$left" 0 "no fuzz device left behind"
finish
