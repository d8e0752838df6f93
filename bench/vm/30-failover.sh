#!/bin/bash
# timeout: 1200
# Figure 5: the failover commit against dd, and top reads during it.
exec python3 "$REPO/bench/bench.py" failover
