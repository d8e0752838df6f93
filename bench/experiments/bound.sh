#!/bin/bash
# timeout: 2400
# The port's first touch through NBD under unsafe bounds: see bound.py.
exec python3 "$REPO/bench/experiments/bound.py"
