#!/bin/bash
# timeout: 1800
# Hidden's persist for the port's copies (stop 28) on brd: base.ko (1c042f8:
# the worker flushes, writes the record block and flushes again, waiting
# for each) against hidden.ko, the module under test.  Stop 28 tried four:
# a persist started without waiting, whose end sends the port writes, for
# every persist, or only with no copy in flight, or only for the lone bio in
# flight (e877563); then (kept) the worker's own commit in one
# REQ_PREFLUSH | REQ_FUA write of the record block, for the lone bio only.
# Straight on the devices, no NBD: port 4 KiB first touch QD1 (8 MiB) and
# QD32 (32 MiB), 4 KiB chunks; six rounds in rotated order; RESULT lines.
# Run with DMR_NO_BUILD=1 (the guest loads its own modules).
set -u
# shellcheck source=bench/experiments/brd.sh
. "$REPO/bench/experiments/brd.sh"
rounds port_first base hidden
