#!/bin/bash
# timeout: 1200
# Where a checkpoint's time goes: see ckpt.py.
exec python3 "$REPO/bench/experiments/ckpt.py"
