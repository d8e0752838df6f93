#!/bin/bash
# timeout: 1800
# The done_work hop of a whole-chunk first touch on brd: base.ko against
# hop.ko (stop 26: hop.patch, measuring only, unsafe; stop 27: the commit
# that maps in the bio's end safely), six rounds in rotated
# order; top 4 KiB first touch QD1 (32 MiB) and with fsync=1 (8 MiB).
# Run with DMR_NO_BUILD=1 (the guest loads its own modules).
set -u
# shellcheck source=bench/experiments/brd.sh
. "$REPO/bench/experiments/brd.sh"
one() {
	local a b
	mk "$1" 8
	a=$(fj /dev/mapper/top 1 32M 0)
	dmsetup message top 0 checkpoint
	b=$(fj /dev/mapper/top 1 8M $((64 * 1048576)) 1)
	rm_
	echo "top_qd1_first=$a top_fsync1_first=$b"
}
rounds one base hop
