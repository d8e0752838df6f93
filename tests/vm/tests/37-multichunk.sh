#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# timeout: 480
# kernels: 6.12
# (6.12 only: it checks our own parsing and cell logic, the same source on
# every kernel; 6.1 keeps the tests where the kernels can differ.)
#
# Bios that span many chunks (tests/vm/multichunk.py): large and unaligned top
# runs over fresh, mapped, partly mapped and hidden-only chunks and up to the
# device's last (partial) chunk; top and port runs racing top reads; 1 MiB top
# writes racing checkpoints; runs into full stores.  Each step compares the
# top and the secondary device with a byte model and checks the status (slots
# used, chunks to commit, error); the mappings must survive a remove+create.
# Today dm splits every bio at chunk boundaries: this pins the behaviour down
# for a data path that takes a run of chunks as one bio.
#
# Full stores (what main does, kept as the rule): a top run needing more new
# slots than are free fails with ENOSPC, its first chunks take the free slots
# and hold the new data, the others keep their old data, chunks of the run
# already mapped are written (also after a failed one), and status error stays
# 0; a port run short of hidden slots fails with ENOSPC, its first chunks are
# copied and written, and status records error 28.
#
# The secondary is a dm-linear 3 sectors short of 16 MiB, so its last chunk is
# partial.  brd with 4 KiB and 32 KiB chunks, then the virtio disks with 4 KiB.
#
# Wrapper knobs (the harness passes no environment): MC_PHASES="seq race" runs
# fewer phases, MC_CONFIGS="brd8" fewer setups, MC_MODEL_BUG=run-tail breaks
# the model (the test must fail).
. "$REPO/tests/vm/lib.sh"

PHASES=${MC_PHASES:-seq race checkpoint full}
CONFIGS=${MC_CONFIGS:-brd8 brd64 virtio8}
MC=$REPO/tests/vm/multichunk.py
S=$((16 * 2048 - 3))
ram_disks 3 24
read -r VDA VDB VDC _ <<<"$DISKS"
trap 'dm_remove_all' EXIT

blank() { dd if=/dev/zero of="$1" bs=4096 count=1 oflag=direct status=none; }

# phase LABEL PHASE CHUNK: one phase of multichunk.py, one check.
phase() {
	local out t=$SECONDS
	out=$(python3 "$MC" "$2" "$3" --seed "$SEED" --model-bug "${MC_MODEL_BUG:-none}" 2>&1)
	local rc=$?
	sed 's/^/# /' <<<"$out"
	if [ $rc = 0 ]; then ok "$1 $2 ($((SECONDS - t)) s)"; else not_ok "$1 $2"; fi
}

# setup CHUNK SECONDARY HIDDEN ACTIVE: top and port over a fresh session.
setup() {
	blank "$3"; blank "$4"
	dmsetup create top --table "0 $S replication secondary $2 $3 $4 $1" || die "top"
	dmsetup create port --table "0 $S replication port $2" || die "port"
}

SEED=0
for cfg in $CONFIGS; do
	SEED=$((SEED + 1))
	case $cfg in
	brd8) chunk=8 base=/dev/ram0 hid=/dev/ram1 act=/dev/ram2 ;;
	brd64) chunk=64 base=/dev/ram0 hid=/dev/ram1 act=/dev/ram2 ;;
	virtio8) chunk=8 base=$VDA hid=$VDB act=$VDC ;;
	*) die "unknown config $cfg" ;;
	esac
	dmsetup create msec --table "0 $S linear $base 0" || die "msec"
	python3 "$MC" fill $chunk || die "fill"
	setup $chunk /dev/mapper/msec $hid $act
	for p in $PHASES; do
		[ "$p" = full ] || phase "$cfg" "$p" $chunk
	done
	dmsetup remove port top

	# Stores of 48 chunks each, on the stores' first sectors.
	if [[ " $PHASES " = *" full "* && $cfg = brd* ]]; then
		small=$(((chunk > 16 ? chunk : 16) + 48 * chunk))
		dmsetup create sh --table "0 $small linear $hid 0" || die "sh"
		dmsetup create sa --table "0 $small linear $act 0" || die "sa"
		setup $chunk /dev/mapper/msec /dev/mapper/sh /dev/mapper/sa
		phase "$cfg" full $chunk
		dmsetup remove port top sh sa
	fi
	dmsetup remove msec
done
finish
