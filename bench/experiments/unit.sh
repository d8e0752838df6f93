#!/bin/bash
# timeout: 2400
# The copy unit of a port first touch, QEMU against ours: see unit.py.
exec python3 "$REPO/bench/experiments/unit.py"
