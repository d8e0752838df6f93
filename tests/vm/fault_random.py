#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""A fault at a random moment of a failover's merge (47-fault-random.sh).

  fault_random.py failover --top NAME --table TABLE --sec DEV --dev NAME
                           --fault-table T --linear-table T --seed S

The top NAME (its port already removed) holds what crash.py's workload left.
Its content is read first: after the failover it is what both the top and
the secondary device DEV must hold.  Then the `failover` message, and when
the merge has copied a random share of its chunks (status polled with one
ioctl at a time) the fault: the table of the device NAME under
one of the secondary device, hidden or active becomes --fault-table (loaded
inactive before the message, swapped in by one resume ioctl).  The merge
ends in one of "done", "failover_failed" or "failed" (Documentation/
replication.rst, "Failover" and "Faults on every device"); then the device
gets its --linear-table back and the documented retries are made:
`failover` from failover_failed, a reload of TABLE from failed (which may
load failover_failed).  Printed: "ok"/"not ok" lines for the end state, the
top's content and the secondary device's content, and whether the merge was
still running when the fault came.
"""
import argparse
import mmap
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crash  # noqa: E402
import dmioctl  # noqa: E402
import fault_matrix as fm  # noqa: E402

ENDS = ("done", "failover_failed", "failed")


def read_raw(path, size):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, size)
        done = 0
        while done < size:
            n = os.preadv(fd, [memoryview(buf)[done:]], done)
            if n <= 0:
                raise OSError("short read of %s at %d" % (path, done))
            done += n
        return bytes(buf)
    finally:
        os.close(fd)


def failover(a):
    rnd = random.Random(a.seed)
    size = int(fm.dm("table", a.top).stdout.split()[1]) * crash.SECTOR
    want = read_raw("/dev/mapper/" + a.top, size)
    fails = 0

    def check(cond, what):
        nonlocal fails
        print("%s - %s" % ("ok" if cond else "not ok", what))
        fails += 0 if cond else 1

    dm = dmioctl.DM()

    def status():
        w = dm.status(a.top)[0][3].split()
        return w[1], int(w[-1])	# the state, the chunks to commit

    fm.dm("load", a.dev, "--table", a.fault_table)
    n0 = status()[1]
    # The moment: when the merge has copied a random share of what it has to.
    at = int(n0 * (1 - rnd.random()))
    if fm.message(a.top, "failover") != "ok":
        fm.dm("clear", a.dev)
        check(False, "the failover message")
        return 1
    while True:
        st, left = status()
        if st != "failover" or left <= at:
            break
        time.sleep(0.001)
    crash.dm_resume(a.dev)
    end = fm.wait_state(a.top, ENDS, 60)
    print("# %d chunks to commit; the fault came with %d left (state %s); the merge ended %s"
          % (n0, left, st, end))
    if a.slow:
        check(end == "done", "under a slow device the merge ends done (%s)" % end)
    fm.dm("load", a.dev, "--table", a.linear_table)
    fm.dm("resume", a.dev)
    for _ in range(2):
        if end == "failover_failed":
            fm.message(a.top, "failover")
        elif end == "failed":
            r = fm.dm("reload", a.top, "--table", a.table, check=False)
            if r.returncode == 0:
                fm.dm("resume", a.top, check=False)
        end = fm.wait_state(a.top, ENDS, 60)
    check(end == "done", "after the documented retries the failover is done (%s)" % end)
    if end == "done":
        for name, path in (("top", "/dev/mapper/" + a.top), ("secondary device", a.sec)):
            got = read_raw(path, size)
            bad = [i for i in range(0, size, crash.SECTOR)
                   if got[i:i + crash.SECTOR] != want[i:i + crash.SECTOR]]
            check(not bad, "the %s holds the top's content of before the failover%s" % (
                name, " (%d sectors differ, first %d)" % (len(bad), bad[0] // crash.SECTOR)
                if bad else ""))
    return 1 if fails else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["failover"])
    p.add_argument("--top", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--sec", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--fault-table", required=True)
    p.add_argument("--linear-table", required=True)
    p.add_argument("--slow", action="store_true", help="the fault only delays")
    p.add_argument("--seed", type=int, default=1)
    return failover(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
