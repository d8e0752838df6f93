#!/bin/bash
# timeout: 900
# Figure 6: kernel memory per mapped chunk.
exec python3 "$REPO/bench/bench.py" memory
