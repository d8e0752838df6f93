#!/bin/bash
# timeout: 1500
# Figure 8: the primary against dm-raid1, its barrier, its resync; see bench/bench.py.
exec python3 "$REPO/bench/bench.py" primary
