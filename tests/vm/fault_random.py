#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""A fault at a random moment of a failover's merge (47-fault-random.sh).

  fault_random.py failover --top NAME --table TABLE --sec DEV --dev NAME
                           --fault-table T --linear-table T --seed S
  fault_random.py primary  --top NAME --table TABLE --dev NAME --role R
                           --fault-table T --linear-table T --seed S
                           --local DEV --remote DEV --state FILE

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

`primary` runs crash.py's writer (writes, fdatasync, O_DSYNC) on the primary
NAME with checkpoints beside it, puts the fault under its device NAME (role
R: local, remote or meta) at a random moment, goes on 0.8 s, and checks:
only what PRI_MAY_FAIL says failed, and only after the fault; the state
(degraded only under the remote, and then a checkpoint fails); after the
device is healed and TABLE reloaded, the primary runs again (its resync
done); every write acknowledged durable reads back and every sector is a
whole stamp of a write that may be there (crash.check, FILE: what the
previous round left); the remote equals local.
"""
import argparse
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crash  # noqa: E402
import dmioctl  # noqa: E402
import fault_matrix as fm  # noqa: E402

ENDS = ("done", "failover_failed", "failed")


def read_raw(path, size):
    return crash.read_raw(path)[:size]


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


# What may fail under a fault of the primary's device: its writes and
# flushes, not its checkpoints (local: the remote is flushed), and only
# after the fault; under the remote only the checkpoint (a remote failure is
# never the VM's).  Under a slow device nothing.
PRI_MAY_FAIL = {"local": ("write", "syncwrite", "flush"),
                "meta": ("write", "syncwrite", "flush"),
                "remote": ("checkpoint",)}


def primary(a):
    """A round of the primary: a fault at a random moment of crash.py's
    writer on the primary, checkpoints beside it; then the rules."""
    rnd = random.Random(a.seed)
    pri = "/dev/mapper/" + a.top
    fails = 0

    def check(cond, what):
        nonlocal fails
        print("%s - %s" % ("ok" if cond else "not ok", what))
        fails += 0 if cond else 1

    if os.path.exists(a.state):
        with open(a.state) as f:
            before = json.load(f)
    else:
        before = crash.read_dev(pri)
    log = crash.Log(a.id_base)
    stop = threading.Event()
    errors = []
    wargs = argparse.Namespace(top_flush=0.12, chunk=a.chunk, hot=48)
    fm.dm("load", a.dev, "--table", a.fault_table)
    w = threading.Thread(target=crash.writer, args=(
        "top", 1, pri, wargs, log, random.Random(rnd.random()), stop, errors))
    start = time.monotonic()
    w.start()
    cut_at = start + rnd.uniform(0.4, 2.5)
    try:
        while time.monotonic() < cut_at:
            time.sleep(rnd.uniform(0.05, 0.4))
            t0 = time.monotonic()
            ok = fm.message(a.top, "checkpoint") == "ok"
            log.add({"dev": "top", "op": "checkpoint", "t0": t0,
                     "t1": time.monotonic(), "ok": ok})
        t0 = time.monotonic()
        crash.dm_resume(a.dev)
        log.add({"op": "cut", "t0": t0, "t1": time.monotonic()})
        time.sleep(0.8)
        t0 = time.monotonic()
        ok = fm.message(a.top, "checkpoint") == "ok"
        log.add({"dev": "top", "op": "checkpoint", "t0": t0,
                 "t1": time.monotonic(), "ok": ok})
    finally:
        stop.set()
        w.join()
    ops = log.ops
    cut = [o for o in ops if o["op"] == "cut"][0]["t0"]
    st = fm.state(a.top)
    n = {k: sum(1 for o in ops if o["op"] == k) for k in
         ("write", "syncwrite", "flush", "checkpoint")}
    print("# workload: %(write)d writes, %(syncwrite)d O_DSYNC writes, %(flush)d "
          "flushes, %(checkpoint)d checkpoints" % n +
          "; fault at %.2fs; state %s" % (cut - start, st))

    may = () if a.slow else PRI_MAY_FAIL[a.role]
    bad = [o for o in ops if o.get("ok") is False and
           (o["op"] not in may or o["t1"] < cut)]
    for o in bad[:5]:
        print("#   %s failed %.3fs %s the fault" % (
            o["op"], abs(o["t1"] - cut), "before" if o["t1"] < cut else "after"))
    check(not bad, "only %s failed, after the fault (%d failures)" % (
        "/".join(may) or "nothing", sum(1 for o in ops if o.get("ok") is False)))
    want = ("running", "degraded") if a.role == "remote" and not a.slow else ("running",)
    check(st in want, "state %s at the end of the workload (want %s)" % (st, " or ".join(want)))
    if st == "degraded":
        ck = [o for o in ops if o["op"] == "checkpoint"][-1]
        check(not ck["ok"], "a checkpoint while degraded fails")

    # The retry: the device healthy, the same table again; the resync.
    fm.dm("remove", a.top)
    fm.dm("load", a.dev, "--table", a.linear_table)
    fm.dm("resume", a.dev)
    fm.dm("create", a.top, "--table", a.table)
    st = fm.wait_state(a.top, ("running",), 60)
    check(st == "running", "after a reload the primary runs (%s)" % st)

    # Rules (a) and (b) of crash.py on the primary device, as a top of no
    # checkpoint (a primary keeps no epochs); the secondary is unused.
    now = crash.read_dev(pri)
    end = max(o["t1"] for o in ops) + 1.0
    wops = [o for o in ops if o["op"] != "checkpoint"]
    rc = crash.check(wops, now, before, before, before, end, end, fault=True,
                     say=lambda m: print("#   " + m))
    check(rc == 0, "every write acknowledged durable reads back, nothing else is there")
    size = len(now) * crash.SECTOR
    same = read_raw(a.local, size) == read_raw(a.remote, size)
    check(same, "after the resync the remote equals local")
    with open(a.state, "w") as f:
        json.dump(now, f)
    return 1 if fails else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["failover", "primary"])
    p.add_argument("--top", required=True, help="the top, or the primary")
    p.add_argument("--table", required=True)
    p.add_argument("--sec")
    p.add_argument("--local")
    p.add_argument("--remote")
    p.add_argument("--role", choices=sorted(PRI_MAY_FAIL),
                   help="primary: the device under the fault")
    p.add_argument("--state", help="primary: what the device held (JSON)")
    p.add_argument("--chunk", type=int, default=8, help="primary: write unit")
    p.add_argument("--id-base", type=int, default=0)
    p.add_argument("--dev", required=True)
    p.add_argument("--fault-table", required=True)
    p.add_argument("--linear-table", required=True)
    p.add_argument("--slow", action="store_true", help="the fault only delays")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    return {"failover": failover, "primary": primary}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
