#!/bin/bash
# timeout: 600
# Figure 6: kernel memory per mapped chunk.
exec python3 "$REPO/bench/bench.py" memory
