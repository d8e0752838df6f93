#!/bin/bash
# timeout: 1800
# The copy's work-item hops on brd: base.ko against hop.ko (stop 27: the
# commit that lets a copy take its next step in its bio's end in process
# context), six rounds in rotated order.  Straight on the devices, no NBD:
# port 4 KiB first touch QD1 (8 MiB) and QD32 (32 MiB), 4 KiB chunks; top
# 4 KiB first touch with 64 KiB chunks (a copy-up each) QD1 (8 MiB) and
# QD32 (32 MiB).  top.ko: the same for top copy-ups only (not the port's).
# Run with DMR_NO_BUILD=1 (the guest loads its own modules).
set -u
# shellcheck source=bench/experiments/brd.sh
. "$REPO/bench/experiments/brd.sh"
one() {
	local p c d
	p=$(port_first "$1") || exit 1
	mk "$1" 128 port
	c=$(fj /dev/mapper/top 1 8M 0)
	d=$(fj /dev/mapper/top 32 32M $((64 * 1048576)))
	rm_
	echo "$p top_copyup_qd1=$c top_copyup_qd32=$d"
}
rounds one base hop top
