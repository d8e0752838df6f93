#!/bin/bash
# timeout: 1800
# Figure 6: kernel memory per mapped chunk.
exec python3 "$REPO/bench/bench.py" memory
