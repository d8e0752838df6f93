#!/bin/bash
# timeout: 1500
# Figure 4: checkpoint latency against the data in the stores.
exec python3 "$REPO/bench/bench.py" checkpoint
