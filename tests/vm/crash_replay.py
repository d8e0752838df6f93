#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Crash replay with dm-log-writes (41-crash-replay.sh).

  crash_replay.py work  --top NAME --port NAME --lw NAME --chunk N --seed S
                        --duration SECS --log FILE
  crash_replay.py check --log FILE --lwlog DEV --base DEV --cow DEV
                        --sec-len N --store-len N --chunk N --seed S
                        --flush-points N --random-points N

`work` runs crash.py's stamped workload (a top writer and a port writer,
fdatasync and O_DSYNC writes, checkpoints by message) on /dev/mapper/TOP and
/dev/mapper/PORT, which sit on slices of the dm-log-writes device LW.  After
every acknowledged durability point (an fdatasync or O_DSYNC write returned,
a checkpoint returned) it sends LW the message "mark m<N>" and logs the mark
with its start and end time, so that the log's marks place every log
position in the workload's timeline.

`check` reads the log (logwrites.py) and picks the points: prefixes [0, P)
that end just after a FLUSH or FUA entry (up to --flush-points of them, all
when 0) plus --random-points random prefixes.  Walking them in order it
replays the log onto BASE incrementally, puts a non-persistent dm-snapshot
(COW on one of the comma-separated COW devices, in turn) over BASE, the slices rsec/rhid/ract over the snapshot, loads
the top and the port there, and checks them (the port at every 4th point) with crash.check() as a crash
in [cut0, cut1]: cut0 the latest start of a mark inside the prefix, cut1
the earliest end of a mark after it (a prefix holds every write that was
acknowledged durable before a mark it contains, and none that started after
a mark it does not).  Each failing point prints "not ok - entry P: ...".
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
import logwrites  # noqa: E402

now = time.monotonic


class Marker:
    """mark(log): send the dm-log-writes device LW the message "mark m<N>"
    (N counts from 1) and add the mark to LOG (a crash.Log) with its start
    and end time.  Safe from several threads."""

    def __init__(self, dm, lw):
        self.dm, self.lw = dm, lw
        self.lock = threading.Lock()
        self.count = 0

    def __call__(self, lg):
        with self.lock:
            self.count += 1
            n = self.count
        t0 = now()
        self.dm.message(self.lw, "mark m%d" % n)
        lg.add({"op": "mark", "m": n, "t0": t0, "t1": now()})


def run(threads, stop, duration, pause, step):
    """Start THREADS, call STEP after each PAUSE() seconds for DURATION
    seconds, then set STOP and join them.  Return: the start time."""
    start = now()
    for t in threads:
        t.start()
    try:
        while now() - start < duration:
            time.sleep(pause())
            step()
    finally:
        stop.set()
        for t in threads:
            t.join()
    return start


def checkpoint(dm, name, dev, log, errors, mark):
    """The checkpoint message to NAME, logged as DEV's; a mark after it
    when it returned."""
    t0 = now()
    try:
        dm.message(name, "checkpoint")
        ok = True
    except OSError as e:
        ok = False
        errors.append("checkpoint: %s" % e)
    log.add({"dev": dev, "op": "checkpoint", "t0": t0, "t1": now(), "ok": ok})
    if ok:
        mark(log)


def work(a):
    rnd = random.Random(a.seed)
    log = crash.Log(a.id_base)
    stop = threading.Event()
    errors = []
    dm = dmioctl.DM()
    mark = Marker(dm, a.lw)

    def ckpt():
        checkpoint(dm, a.top, "top", log, errors, mark)

    wargs = argparse.Namespace(top_flush=a.top_flush, chunk=a.chunk, hot=a.hot,
                               durable_hook=mark)
    threads = [threading.Thread(target=crash.writer, args=(
        "top", 1, "/dev/mapper/" + a.top, wargs, log, random.Random(rnd.random()), stop, errors)),
        threading.Thread(target=crash.writer, args=(
            "port", 2, "/dev/mapper/" + a.port, wargs, log, random.Random(rnd.random()),
            stop, errors))]
    mark(log)
    start = run(threads, stop, a.duration, lambda: rnd.uniform(0.05, 0.6), ckpt)
    mark(log)
    dm.close()
    with open(a.log, "w") as f:
        json.dump({"ops": log.ops, "errors": errors, "chunk": a.chunk}, f)
    kinds = {}
    for o in log.ops:
        k = o.get("dev", "") + " " + o["op"]
        kinds[k] = kinds.get(k, 0) + 1
    print("# workload %.1fs: %s" % (now() - start, ", ".join(
        "%s %d" % (k.strip(), v) for k, v in sorted(kinds.items()))))
    for e in errors:
        print("not ok - workload error: %s" % e)
    return 1 if errors else 0


def diagnose(log, ops, msgs, p):
    """Where in the log are the stamps of the first lost write, and its marks?"""
    import re
    m = re.search(r"flushed top write top \w+ (\d+)", " ".join(msgs))
    if not m:
        return
    oid = int(m.group(1))
    o = [x for x in ops if x.get("id") == oid][0]
    pat = crash.STAMP.pack(crash.MAGIC, o["s"], oid, 1)
    fd = os.open(log.path, os.O_RDONLY)
    hits = []
    for e in log.entries:
        if e.nr and not e.flags & (logwrites.MARK | logwrites.DISCARD):
            if pat in os.pread(fd, e.nr * log.sectorsize, e.off):
                hits.append(e)
    os.close(fd)
    after = [x for x in ops if x["op"] == "mark" and x["t0"] > o["t1"]]
    mk = min(after, key=lambda x: x["t0"])["m"] if after else None
    mi = [e.index for e in log.entries if e.mark == "m%d" % mk]
    print("# diagnose: lost write %d [%d+%d] t %.4f..%.4f; first mark sent after it: m%s "
          "at entry %s; its data in entries %s" % (
              oid, o["s"], o["n"], o["t0"], o["t1"], mk, mi,
              ["%d(%s sector %d+%d)" % (e.index, logwrites.flag_str(e.flags), e.sector, e.nr)
               for e in hits]))
    lo = min([h.index for h in hits] + mi) - 12
    hi = max([h.index for h in hits] + mi) + 6
    for e in log.entries[max(0, lo):hi]:
        print("#   %d %d+%d %s%s" % (e.index, e.sector, e.nr, logwrites.flag_str(e.flags),
                                   " " + e.mark if e.mark else ""))


class Points:
    """The points to check in LOG: prefix lengths from START on, every one
    that ends just after a FLUSH or FUA entry (FLUSH_POINTS of them at
    random, all when 0) and RANDOM_POINTS others; and for each, the crash
    window its marks give.  MARKS: the workload's marks by number, each
    with its start t0 and end t1 (the log holds them as "m<N>")."""

    def __init__(self, log, marks, rnd, flush_points, random_points, start=0):
        ents = log.entries
        n = len(ents)
        flush = [e.index + 1 for e in ents[max(start - 1, 0):]
                 if e.flags & (logwrites.FLUSH | logwrites.FUA)]
        self.nflush = len(flush)
        if flush_points and len(flush) > flush_points:
            flush = rnd.sample(flush, flush_points)
        self.fset = set(flush)
        others = [p for p in range(start, n + 1) if p not in self.fset]
        self.points = sorted(self.fset | set(rnd.sample(
            others, min(random_points, len(others)))))
        self.marks = marks
        self.mark_at = [(e.index, int(e.mark[1:])) for e in ents
                        if e.mark and e.mark.startswith("m")]
        self.missing = set(marks) - {m for _, m in self.mark_at}
        self.ents = ents

    def windows(self):
        """(k, P, cut0, cut1) for each point P in order: a prefix holds every
        write acknowledged durable before a mark it contains (cut0, the
        latest start of those marks) and none that started after a mark it
        does not contain (cut1, the earliest end of those)."""
        inf = float("inf")
        ends = [self.marks[m]["t1"] for _, m in self.mark_at]
        suffix_min = [inf] * (len(ends) + 1)
        for i in range(len(ends) - 1, -1, -1):
            suffix_min[i] = min(ends[i], suffix_min[i + 1])
        mi, cut0 = 0, -inf
        for k, p in enumerate(self.points):
            while mi < len(self.mark_at) and self.mark_at[mi][0] < p:
                cut0 = max(cut0, self.marks[self.mark_at[mi][1]]["t0"])
                mi += 1
            yield k, p, cut0, suffix_min[mi]

    def what(self, p):
        return "entry %d (%s%s)" % (
            p, "after " + logwrites.flag_str(self.ents[p - 1].flags)
            if p else "empty log", "" if p in self.fset else ", random")


class Layers:
    """BASE with the log replayed onto it up to a point, incrementally, under
    a throw-away dm-snapshot (on the COW devices in turn: one COW cannot serve
    two tables at the swap) and the slices rsec, rhid and ract over that; or
    SLICES, [(name, sectors)], one after the other from sector 0.  LOG may
    be a list of logs, one a slice: each is replayed onto its part of BASE
    (b<name without its r>), and a point is a list of prefixes."""

    def __init__(self, dm, log, base, cows, sec_len=0, store_len=0, slices=None):
        self.dm, self.cows = dm, cows
        if slices is None:
            slices = [("rsec", sec_len), ("rhid", store_len), ("ract", store_len)]
        self.names = [nm for nm, _ in slices]
        self.parts = []
        if isinstance(log, list):
            off = 0
            for (nm, n), lg in zip(slices, log):
                self.parts.append("b" + nm[1:])
                dm.make(self.parts[-1], "0 %d linear %s %d" % (n, base, off))
                off += n
            self.reps = [logwrites.Replayer(lg, "/dev/mapper/" + b)
                         for lg, b in zip(log, self.parts)]
        else:
            self.reps = [logwrites.Replayer(log, base)]
        self.snap = "0 %d snapshot %s %%s N 8" % (sum(n for _, n in slices), base)
        dm.make("rsnap", self.snap % cows[0])
        off = 0
        for nm, n in slices:
            dm.make(nm, "0 %d linear /dev/mapper/rsnap %d" % (n, off))
            off += n

    def goto(self, k, p):
        """Point K of the walk, prefix P (a list: one a log).  Return: the
        seconds the replay and the fresh layer took."""
        t = now()
        for r, c in zip(self.reps, p if isinstance(p, list) else [p]):
            r.advance(c)
        t1 = now()
        self.dm.load_line("rsnap", self.snap % self.cows[(k + 1) % len(self.cows)])
        self.dm.resume("rsnap")
        return t1 - t, now() - t1

    def close(self):
        for nm in self.names[::-1] + ["rsnap"]:
            self.dm.unmake(nm)
        for r in self.reps:
            r.close()
        for b in self.parts:
            self.dm.unmake(b)


def add_check_args(p, random_points):
    """The options of a replay check."""
    p.add_argument("--lwlog")
    p.add_argument("--base")
    p.add_argument("--cow")
    p.add_argument("--sec-len", type=int)
    p.add_argument("--store-len", type=int)
    p.add_argument("--flush-points", type=int, default=0)
    p.add_argument("--random-points", type=int, default=random_points)


def open_run(a):
    """The workload's ops (--log), the log-writes log (--lwlog) and the
    points to check in it (--seed, --flush-points, --random-points).
    Return: (ops, log, points), or None after a "not ok" line."""
    with open(a.log) as f:
        ops = json.load(f)["ops"]
    marks = {o["m"]: o for o in ops if o["op"] == "mark"}
    log = logwrites.Log(a.lwlog)
    if log.sectorsize != 512:
        print("not ok - log sector size %d (expected 512)" % log.sectorsize)
        return None
    pts = Points(log, marks, random.Random(a.seed), a.flush_points,
                 a.random_points)
    if pts.missing:
        print("not ok - %d marks the workload sent are not in the log" % len(pts.missing))
        return None
    print("# log: %d entries, %d FLUSH/FUA, %d marks; checking %d points" % (
        len(log.entries), pts.nflush, len(pts.mark_at), len(pts.points)))
    return ops, log, pts


def check(a):
    run_ = open_run(a)
    if not run_:
        return 1
    ops, log, pts = run_

    T0 = [0] * a.sec_len
    S0 = [0] * a.sec_len
    dm = dmioctl.DM()
    fails = 0
    checked = {"flush": 0, "random": 0}
    t_start = now()
    tm = {"replay": 0.0, "layer": 0.0, "load": 0.0, "read": 0.0, "check": 0.0, "remove": 0.0}
    lay = Layers(dm, log, a.base, a.cow.split(","), a.sec_len, a.store_len)
    for k, p, cut0, cut1 in pts.windows():
        t_rep, t_lay = lay.goto(k, p)
        tm["replay"] += t_rep
        tm["layer"] += t_lay
        t2 = now()
        what = pts.what(p)
        msgs = []
        try:
            try:
                dm.make("rtop", "0 %d replication secondary /dev/mapper/rsec "
                          "/dev/mapper/rhid /dev/mapper/ract %d" % (a.sec_len, a.chunk))
            except OSError as e:
                raise RuntimeError("the top table does not load: %s" % e)
            try:
                dm.make("rport", "0 %d replication port /dev/mapper/rsec" % a.sec_len)
            except OSError as e:
                raise RuntimeError("the port table does not load: %s" % e)
            st = dm.params("rtop").split()
            t3 = now()
            tm["load"] += t3 - t2
            if st[1:3] != ["running", "0"]:
                raise RuntimeError("top status after load: %s" % " ".join(st))
            top = crash.read_dev("/dev/mapper/rtop")
            sec = crash.read_dev("/dev/mapper/rsec")
            # the port reads the secondary device: checked at every 4th point
            if k % 4 == 0 and crash.read_dev("/dev/mapper/rport") != sec:
                msgs.append("not ok - the port does not read the secondary device")
            t4 = now()
            tm["read"] += t4 - t3
            bad = crash.check(ops, top, sec, T0, S0, cut0, cut1, say=msgs.append)
            tm["check"] += now() - t4
            if bad or any(m.startswith("not ok") for m in msgs):
                raise RuntimeError("; ".join(m.replace("not ok - ", "") for m in msgs
                                             if not m.startswith("ok")))
            checked["flush" if p in pts.fset else "random"] += 1
        except (RuntimeError, OSError) as e:
            fails += 1
            print("not ok - %s: %s" % (what, e))
            for m in msgs:
                if m.startswith("#"):
                    print(m)
            if fails == 1 and a.diagnose:
                diagnose(log, ops, msgs, p)
            if fails >= a.max_fails:
                print("# stopping after %d failures" % fails)
                break
        finally:
            t5 = now()
            for nm in ("rport", "rtop"):
                try:
                    dm.unmake(nm)
                except OSError:
                    pass
            tm["remove"] += now() - t5
    lay.close()
    print("# seconds spent: " + ", ".join("%s %.1f" % kv for kv in tm.items()))
    dm.close()
    print("# checked %d replay points (%d flush points, %d random), %d failures (%.0fs)" % (
        checked["flush"] + checked["random"] + fails, checked["flush"], checked["random"],
        fails, now() - t_start))
    return 1 if fails else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["work", "check"])
    p.add_argument("--top", default="top")
    p.add_argument("--port", default="port")
    p.add_argument("--lw", default="lw")
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--top-flush", type=float, default=0.12)
    p.add_argument("--hot", type=int, default=48)
    p.add_argument("--id-base", type=int, default=0)
    p.add_argument("--log")
    add_check_args(p, random_points=100)
    p.add_argument("--max-fails", type=int, default=20)
    p.add_argument("--diagnose", action="store_true",
                   help="at the first failure, find the lost write's stamps in the log")
    a = p.parse_args()
    return {"work": work, "check": check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
