#!/bin/bash
# timeout: 400
# kernels: 6.12
#
# Hostile metadata in real stores (tests/vm/hostile.py): a real session's
# store images, corrupted one way per case (header fields with and without a
# valid checksum, torn copies, zeroed and swapped headers, a short device,
# records of chunks past the device, slots past the store, other epochs,
# duplicate chunks).  A refused load logs its documented reason and writes
# nothing; an accepted one reads what Documentation/replication.rst
# ("Hostile metadata") promises.
. "$REPO/tests/vm/lib.sh"

# shellcheck disable=SC2086
set -- $DISKS
if python3 "$REPO/tests/vm/hostile.py" "$@"; then
	ok "hostile metadata: every case as documented"
else
	not_ok "hostile metadata"
fi
finish
