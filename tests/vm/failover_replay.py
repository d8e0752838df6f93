#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Crash replay of a failover with dm-log-writes (42-failover-replay.sh).

  failover_replay.py work  --top NAME --port NAME --sec DEV --lw NAME
                           --chunk N --seed S --log FILE
  failover_replay.py check --log FILE --lwlog DEV --base DEV --cow DEV,DEV
                           --sec-len N --store-len N --chunk N --seed S
                           --flush-points N --random-points N

`work` builds failover_crash.py's history (top and port writes, a
checkpoint, big and small writes, fsync: an exact model) on /dev/mapper/TOP
and /dev/mapper/PORT, which sit on slices of the dm-log-writes device LW,
takes what the top shows as E0 and sends LW the mark "h" (everything of E0
is durable before it).  Then commit_depth (seeded) and "failover", with a
top writer during the merge (failover_crash.py's choice of chunks: around
the cursor, other store chunks, clean chunks; O_DSYNC writes and
fdatasync), until the status says done and a little after.  After every
acknowledged durability point (an O_DSYNC write or an fdatasync returned,
the failover message returned) it sends the mark "m<N>" and logs it with
its start and end time.

`check` replays the log (logwrites.py) onto BASE up to points after the
mark "h": every FLUSH or FUA entry (or --flush-points of them) and
--random-points random entries.  At each it puts a throw-away dm-snapshot
over BASE, the slices over it, loads the top (its table only: after a
failover the port has nothing to check) and checks, as for a crash between
the last mark inside the prefix and the first one after it:
  - the top loads, in state running, failover or done;
  - every sector of the top holds E0 or a merge-phase top write that started
    before the crash could have happened, and every write made durable
    before the crash (O_DSYNC, or flushed by an fdatasync that returned) is
    there or overwritten by a later one;
  - the merge, which resumes by itself, reaches done, and then the secondary
    device holds the same (the top shows it: they are one device then).
Each failing point prints "not ok - entry P: ...".
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
import crash_replay  # noqa: E402
import dmioctl  # noqa: E402
import failover_crash  # noqa: E402
import logwrites  # noqa: E402

now = time.monotonic


class Marker:
    """Sends numbered marks into the log and keeps their times."""

    def __init__(self, dm, lw):
        self.dm, self.lw = dm, lw
        self.lock = threading.Lock()
        self.n = 0
        self.marks = []

    def __call__(self, name=None):
        with self.lock:
            self.n += 1
            n = self.n
        t0 = now()
        self.dm.message(self.lw, "mark " + (name or "m%d" % n))
        if not name:
            self.marks.append({"m": n, "t0": t0, "t1": now()})


def work(a):
    rnd = random.Random(a.seed)
    nid = [0]

    def ids():
        nid[0] += 1
        return nid[0]
    dm = failover_crash.Dm()
    mark = Marker(dm, a.lw)
    hargs = argparse.Namespace(top="/dev/mapper/" + a.top,
                               port="/dev/mapper/" + a.port, sec=a.sec,
                               chunk=a.chunk, big=a.big, small=a.small)
    e0, fo_chunks = failover_crash.history(hargs, rnd, ids, dm)
    mark("h")
    ops = []
    w = failover_crash.Writer(hargs, random.Random(rnd.random()), ids, dm,
                              fo_chunks, len(e0), ops, durable_hook=mark)
    depth = rnd.choice([1, 2])
    dm.message(a.top, "commit_depth %d" % depth)
    w.start()
    errors = []
    try:
        time.sleep(rnd.uniform(0.0, 0.2))
        dm.message(a.top, "failover")
        mark()
        deadline = now() + a.timeout
        while True:
            st = dm.status(a.top)
            if st[1] == "done":
                break
            if st[1] != "failover":
                errors.append("state %s during the merge" % st[1])
                break
            if now() > deadline:
                errors.append("the merge is stuck: %s" % " ".join(st))
                break
            time.sleep(0.01)
        time.sleep(a.after)
    finally:
        w.stop.set()
        w.join()
    mark()
    errors += w.errors
    with open(a.log, "w") as f:
        json.dump({"chunk": a.chunk, "e0": e0, "fo_chunks": fo_chunks,
                   "ops": ops, "marks": mark.marks, "depth": depth,
                   "errors": errors}, f)
    nw = sum(1 for o in ops if "write" in o["op"])
    print("# workload: %d store chunks, commit_depth %d, %d top writes during "
          "the merge (%d O_DSYNC), %d fdatasync, %d marks" % (
              len(fo_chunks), depth, nw,
              sum(1 for o in ops if o["op"] == "syncwrite"),
              sum(1 for o in ops if o["op"] == "flush"), len(mark.marks)))
    for e in errors:
        print("not ok - workload error: %s" % e)
    return 1 if errors else 0


class Model:
    """What each sector may and must hold for a crash in [cut0, cut1]."""

    def __init__(self, doc):
        self.e0 = doc["e0"]
        self.ops = doc["ops"]
        self.writes = sorted((o for o in self.ops if "write" in o["op"]),
                             key=lambda o: o["t0"])
        # durable time of each write: when it became durable (inf if never)
        flushes = sorted((f for f in self.ops if f["op"] == "flush" and f["ok"]),
                         key=lambda f: f["t1"])
        inf = float("inf")
        for o in self.writes:
            if not o["ok"]:
                o["dur"] = inf
            elif o["op"] == "syncwrite":
                o["dur"] = o["t1"]
            else:
                o["dur"] = min((f["t1"] for f in flushes if f["t0"] > o["t1"]),
                               default=inf)

    def check(self, got, cut0, cut1, what, say):
        nsect = len(self.e0)
        may = [set() for _ in range(nsect)]
        must = [0] * nsect
        for o in self.writes:
            if not o["ok"] or o["t0"] >= cut1:
                continue
            d = o["dur"] < cut0
            for s in range(o["s"], o["s"] + o["n"]):
                may[s].add(o["id"])
                if d:
                    must[s] = max(must[s], o["id"])
        bad = 0
        for s in range(nsect):
            v = got[s]
            if isinstance(v, str) or (v != self.e0[s] and v not in may[s]):
                bad += 1
                if bad <= 3:
                    say("# %s sector %d holds %s; expected E0 %s or a "
                        "merge-phase write started before the crash" % (
                            what, s, v, self.e0[s]))
            elif must[s] and (v == self.e0[s] or v < must[s]):
                bad += 1
                if bad <= 3:
                    say("# %s sector %d holds %s: durable write %d lost" % (
                        what, s, v, must[s]))
        return bad


def check(a):
    with open(a.log) as f:
        doc = json.load(f)
    marks = {m["m"]: m for m in doc["marks"]}
    model = Model(doc)
    log = logwrites.Log(a.lwlog)
    try:
        h = log.mark_index("h")
    except KeyError:
        print("not ok - the history's mark is not in the log")
        return 1
    pts = crash_replay.Points(log, marks, random.Random(a.seed),
                              a.flush_points, a.random_points, start=h + 1)
    if pts.missing:
        print("not ok - %d marks the workload sent are not in the log"
              % len(pts.missing))
        return 1
    n = len(log.entries)
    print("# log: %d entries, %d after the history, %d FLUSH/FUA after it, "
          "%d marks; checking %d points" % (n, n - h, pts.nflush,
                                             len(pts.mark_at), len(pts.points)))
    dm = dmioctl.DM()
    lay = crash_replay.Layers(dm, log, a.base, a.cow.split(","), a.sec_len,
                              a.store_len)
    fails = 0
    states = {}
    checked = {"flush": 0, "random": 0}
    t_start = now()
    for k, p, cut0, cut1 in pts.windows():
        lay.goto(k, p)
        msgs = []
        try:
            check_point(a, dm, model, cut0, cut1, states, msgs)
            checked["flush" if p in pts.fset else "random"] += 1
        except (RuntimeError, OSError) as e:
            fails += 1
            print("not ok - %s: %s" % (pts.what(p), e))
            for m in msgs:
                print(m)
            if fails >= a.max_fails:
                print("# stopping after %d failures" % fails)
                break
        finally:
            try:
                dm.unmake("rtop")
            except OSError:
                pass
    lay.close()
    dm.close()
    print("# states at load: %s" % ", ".join(
        "%s %d" % kv for kv in sorted(states.items())))
    print("# checked %d replay points (%d flush points, %d random), "
          "%d failures (%.0fs)" % (
              checked["flush"] + checked["random"] + fails, checked["flush"],
              checked["random"], fails, now() - t_start))
    return 1 if fails else 0


def check_point(a, dm, model, cut0, cut1, states, msgs):
    """Loads the top on the layers and checks it; raises RuntimeError."""
    try:
        dm.make("rtop", "0 %d replication secondary /dev/mapper/rsec "
                "/dev/mapper/rhid /dev/mapper/ract %d" % (a.sec_len, a.chunk))
    except OSError as e:
        raise RuntimeError("the top table does not load: %s" % e)
    st = dm.params("rtop").split()
    if st[1] not in ("running", "failover", "done") or st[2] != "0":
        raise RuntimeError("top status after load: %s" % " ".join(st))
    states[st[1]] = states.get(st[1], 0) + 1
    bad = model.check(crash.read_dev("/dev/mapper/rtop"), cut0, cut1,
                      "top (%s)" % st[1], msgs.append)
    if bad:
        raise RuntimeError("%d top sectors wrong at load" % bad)
    if st[1] == "running":
        return
    deadline = now() + a.merge_timeout
    while st[1] == "failover" and now() < deadline:
        time.sleep(0.02)
        st = dm.params("rtop").split()
    if st[1:3] != ["done", "0"]:
        raise RuntimeError("the resumed merge did not end: %s" % " ".join(st))
    bad = model.check(crash.read_dev("/dev/mapper/rsec"), cut0, cut1,
                      "secondary device after done", msgs.append)
    if bad:
        raise RuntimeError("%d sectors of the secondary device wrong after "
                           "the resumed merge" % bad)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["work", "check"])
    p.add_argument("--top", default="top")
    p.add_argument("--port", default="port")
    p.add_argument("--sec")
    p.add_argument("--lw", default="lw")
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--big", type=int, default=6)
    p.add_argument("--small", type=int, default=200)
    p.add_argument("--after", type=float, default=0.05)
    p.add_argument("--timeout", type=float, default=60,
                   help="seconds the workload's merge may take")
    p.add_argument("--merge-timeout", type=float, default=20,
                   help="seconds a replay point's resumed merge may take")
    p.add_argument("--log")
    crash_replay.add_check_args(p, random_points=40)
    p.add_argument("--max-fails", type=int, default=10)
    a = p.parse_args()
    return {"work": work, "check": check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
