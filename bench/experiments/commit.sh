#!/bin/bash
# timeout: 2400
# The failover commit's knobs: see commit.py.
exec python3 "$REPO/bench/experiments/commit.py"
