#!/bin/bash
# timeout: 1500
# Figures 1, 2, 3, 7 on virtio disks; see bench/bench.py.
exec python3 "$REPO/bench/bench.py" io virtio
