#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Crash replay of a primary with dm-log-writes (43-primary-replay.sh).

  primary_replay.py work  --pri NAME --lw NAME --region-size N --seed S
                          --duration SECS --log FILE
  primary_replay.py check --log FILE --lwlog DEV --base DEV --cow DEV
                          --len N --meta-len N --region-size N --seed S
                          --flush-points N --random-points N
  primary_replay.py regions --local DEV --remote DEV --meta DEV
                          --region-size N

`work` runs crash.py's stamped writer, twice, on /dev/mapper/PRI (a primary
whose local, metadata and remote are slices of the dm-log-writes device
LW): one writer with full and partial writes inside one region, one with
writes inside an aligned pair of regions (so many cross a region boundary,
and the primary splits them), never two writes of the same sector at once
(Guard); fdatasync and O_DSYNC writes; on the main
thread the "checkpoint" message now and then.  After every acknowledged
durability point (an fdatasync or an O_DSYNC write returned, a checkpoint
returned) it sends LW "mark m<N>" (crash_replay.Marker), and it logs every
operation with its start and end time.

`check` picks the points as crash_replay.py does (every prefix that ends
just after a FLUSH or FUA entry, up to --flush-points of them, all when 0,
and --random-points others), replays the log onto BASE incrementally with a
throw-away snapshot over it at each point (crash_replay.Layers, slices
rloc, rmeta and rrem), and checks each as a crash in [cut0, cut1], the
window its marks give (crash_replay.Points.windows):

  before the load, on the slices as the crash left them:
  (r) the remote holds every write acknowledged durable before cut0, by an
      fdatasync, an O_DSYNC write or a checkpoint (the barrier's promise:
      every write acknowledged before it is on the remote), and nothing
      but whole stamps of writes to that sector that may be there (started
      before cut1), or zero;
  (o) every region in which local and remote differ is out of sync in the
      log on the metadata device (dm-log's "disk" format: a header, then a
      bitmap of clean regions at 1 KiB), and the reload finds as many out
      of sync (the kernel log's "N of M regions out of sync: syncing");
  then the primary table is loaded on the slices with the same metadata
  and its state polled until it is "running" with no region out of sync
  (bounded; a state other than syncing or running fails), and:
  (a) every write acknowledged durable before cut0 by an fdatasync or an
      O_DSYNC write reads back from the primary device, unless a write to
      the same sector that did not end before it began is there instead;
  (b) every sector of the primary device holds a whole stamp of a write to
      that very sector that may be there, or zero;
  (c) after the resync the remote slice equals the local slice byte for
      byte: the out-of-sync log is write-intent, so every region in which
      the two may differ was marked on disk before its write was issued.

`regions` checks rule (o) on devices left by a real crash
(62-primary-crash.sh), before the primary is loaded again: every region in
which LOCAL and REMOTE differ is out of sync in the log on META.

A failing point prints "not ok - entry P: ...", and the last line is
"# checked N replay points (F flush points, R random), X failures".
"""
import argparse
import bisect
import contextlib
import json
import os
import random
import re
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crash  # noqa: E402
import crash_replay  # noqa: E402
import dmioctl  # noqa: E402
import logwrites  # noqa: E402

now = time.monotonic
SECTOR = crash.SECTOR


class Guard:
    """guard(s, n): a context in which no other thread writes a sector of
    [s, s+n) (the writers' writes to the same sectors never overlap in
    time: see 43-primary-replay.sh's header for why)."""

    def __init__(self):
        self.cv = threading.Condition()
        self.busy = []

    @contextlib.contextmanager
    def __call__(self, s, n):
        r = (s, s + n)
        with self.cv:
            self.cv.wait_for(lambda: all(b[1] <= r[0] or r[1] <= b[0] for b in self.busy))
            self.busy.append(r)
        try:
            yield
        finally:
            with self.cv:
                self.busy.remove(r)
                self.cv.notify_all()


class Quiescer:
    """mark(log), for --cache: a crash instant that each of the log-writes
    devices LWS (local's, the metadata's, the remote's) places in its log.
    The primary PRI is suspended (its postsuspend ends its worker's batch
    and flushes the out-of-sync log, as any suspend does), so no I/O is in
    flight to the three devices; each log-writes device gets "mark m<N>";
    the primary is resumed.  With nothing in flight the three marks are one
    instant.  (Suspending the three log-writes devices instead hung: the
    loop device over one blocked in a flush while another's suspend
    waited.)"""

    def __init__(self, dm, pri, lws):
        self.dm, self.pri, self.lws = dm, pri, lws
        self.lock = threading.Lock()
        self.count = 0

    def __call__(self, lg, why="durable"):
        with self.lock:
            self.count += 1
            n = self.count
            t0 = now()
            self.dm.suspend(self.pri, lockfs=False)
            try:
                for lw in self.lws:
                    self.dm.message(lw, "mark m%d" % n)
            finally:
                self.dm.resume(self.pri)
            lg.add({"op": "mark", "m": n, "why": why, "t0": t0, "t1": now()})


def work(a):
    rnd = random.Random(a.seed)
    log = crash.Log(0)
    stop = threading.Event()
    errors = []
    dm = dmioctl.DM()
    lws = a.lw.split(",")
    if len(lws) == 3:
        mark = Quiescer(dm, a.pri, lws)
    else:
        mark = crash_replay.Marker(dm, a.lw)
    path = "/dev/mapper/" + a.pri

    guard = Guard()

    def wargs(chunk):
        return argparse.Namespace(top_flush=a.flush, chunk=chunk, hot=a.hot,
                                  durable_hook=mark, guard=guard)

    # kind 1 for both: crash.decode() knows kinds 1 and 2 only, and the
    # stamps' op ids tell the writers apart
    threads = [threading.Thread(target=crash.writer, args=(
        name, 1, path, wargs(chunk), log, random.Random(rnd.random()), stop, errors))
        for name, chunk in (("one", a.region_size), ("two", 2 * a.region_size))]

    def crasher(r):
        # crash instants between the durability points (--cache)
        while not stop.wait(r.uniform(0, 2 * a.crash_every)):
            mark(log, "crash")

    if len(lws) == 3 and a.crash_every:
        threads.append(threading.Thread(target=crasher, args=(random.Random(rnd.random()),)))
    mark(log)
    start = crash_replay.run(
        threads, stop, a.duration, lambda: rnd.uniform(0.05, 0.5),
        lambda: crash_replay.checkpoint(dm, a.pri, "pri", log, errors, mark))
    mark(log)
    st = dm.params(a.pri)
    dm.close()
    with open(a.log, "w") as f:
        json.dump({"ops": log.ops, "errors": errors}, f)
    kinds = {}
    for o in log.ops:
        k = o["op"] + ("" if o.get("ok", True) else " (failed)")
        kinds[k] = kinds.get(k, 0) + 1
    print("# workload %.1fs: %s; status: %s" % (now() - start, ", ".join(
        "%s %d" % kv for kv in sorted(kinds.items())), st))
    if st.split()[1:3] != ["running", "0"]:
        errors.append("status after the workload: %s" % st)
    for e in errors:
        print("not ok - workload error: %s" % e)
    return 1 if errors else 0


class Rules:
    """The workload's writes, flushes and checkpoints, indexed for checking
    many crash windows: per sector, its writes by start time."""

    def __init__(self, ops, nsect):
        self.nsect = nsect
        self.by_id = {}
        per = [[] for _ in range(nsect)]
        for o in ops:
            if "write" in o["op"] and o["ok"]:
                self.by_id[o["id"]] = o
                for s in range(o["s"], o["s"] + o["n"]):
                    per[s].append(o)
        for ws in per:
            ws.sort(key=lambda o: o["t0"])
        self.per = per
        self.t0s = [[o["t0"] for o in ws] for ws in per]
        self.flushes = [o for o in ops if o["op"] == "flush" and o["ok"]]
        self.ckpts = [o for o in ops if o["op"] == "checkpoint" and o["ok"]]

    def window(self, cut0, cut1):
        """The window's barriers: the latest start of an fdatasync, and of a
        checkpoint, that returned before cut0."""
        self.cut0, self.cut1 = cut0, cut1
        self.lf = max([f["t0"] for f in self.flushes if f["t1"] < cut0], default=None)
        self.lc = max([c["t0"] for c in self.ckpts if c["t1"] < cut0], default=None)

    def durable(self, o, ckpt):
        """O was acknowledged durable before cut0: by an O_DSYNC write or an
        fdatasync (on both legs), or by a checkpoint (on the remote) if CKPT."""
        if o["t1"] >= self.cut0:
            return False
        if o["op"] == "syncwrite":
            return True
        if self.lf is not None and o["t1"] < self.lf:
            return True
        return ckpt and self.lc is not None and o["t1"] < self.lc

    def describe(self, v):
        if v == 0:
            return "zero"
        if isinstance(v, str):
            return v
        o = self.by_id.get(v)
        if not o:
            return "op %d (not a write of the workload)" % v
        return "%s %s %d [%d+%d] t=%+.4f..%+.4f" % (
            o["dev"], o["op"], v, o["s"], o["n"], o["t0"] - self.cut0, o["t1"] - self.cut0)

    def check(self, what, dev, ckpt):
        """Rules (b) and (a) (or (r) with CKPT) on DEV (crash.decode()'s list):
        the messages of the broken ones, [] when all hold."""
        bad = {"not a write that may be there": [], "durable write lost": []}
        for s in range(self.nsect):
            v = dev[s]
            ws = self.per[s]
            may = ws[:bisect.bisect_left(self.t0s[s], self.cut1)]
            if v != 0 and (isinstance(v, str) or v not in {o["id"] for o in may}):
                bad["not a write that may be there"].append(
                    "sector %d holds %s" % (s, self.describe(v)))
                continue
            need = [o for o in may if self.durable(o, ckpt)]
            if not need:
                continue
            w = max(need, key=lambda o: o["t0"])
            if v == 0 or self.by_id[v]["t1"] < w["t0"]:
                bad["durable write lost"].append("sector %d holds %s, not %s" % (
                    s, self.describe(v), self.describe(w["id"])))
        return ["%s: %d sectors %s (e.g. %s)" % (what, len(m), k, "; ".join(m[:2]))
                for k, m in bad.items() if m]


def regions_differ(x, y, rs):
    """The regions (of RS sectors) in which the byte strings X and Y differ."""
    step = rs * SECTOR
    return [r for r in range((len(x) + step - 1) // step)
            if x[r * step:(r + 1) * step] != y[r * step:(r + 1) * step]]


MIRROR_MAGIC = 0x4D695272	# dm-log's "disk" log: header, then clean bits at 1 KiB


def log_nosync(meta, nregions):
    """The regions the out-of-sync log on the metadata device (bytes META)
    has out of sync: those whose clean bit is clear; none on a blank device
    (a new log); None when neither (the load would refuse it)."""
    magic, version, n = struct.unpack_from("<IIQ", meta)
    if magic != MIRROR_MAGIC:
        return [] if not any(meta[:1024 + (nregions + 7) // 8]) else None
    return [r for r in range(min(n, nregions)) if not meta[1024 + r // 8] >> (r % 8) & 1]


def sector_diff(rules, loc, rem, reg, rs):
    """What local and remote hold where they differ in region REG."""
    out = []
    for s in range(reg * rs, (reg + 1) * rs):
        if loc[s] != rem[s]:
            out.append("%d: local %s, remote %s" % (s, rules.describe(loc[s]),
                                                     rules.describe(rem[s])))
    return "%d sectors, e.g. %s" % (len(out), "; ".join(out[:2]))


SYNCING = re.compile(r": (\d+) of (\d+) regions out of sync: syncing")


class Stats:
    """What the points saw, over a check: the regions in which local and
    remote differed, those the reloads found out of sync, and the time."""

    def __init__(self):
        self.diverged = []	# per point where local and remote differed: how many regions
        self.found = []	# per point whose reload found regions out of sync: how many
        self.tm = {"replay": 0.0, "layer": 0.0, "read": 0.0, "load+resync": 0.0,
                   "check": 0.0, "remove": 0.0}

    def report(self):
        print("# local and remote differed at %d points (up to %d regions); the reload "
              "found regions out of sync at %d (up to %d)" % (
                  len(self.diverged), max(self.diverged, default=0), len(self.found),
                  max(self.found, default=0)))
        print("# seconds spent: " + ", ".join("%s %.1f" % kv for kv in self.tm.items()))


def verify(a, dm, kmsg, rules, table, st):
    """The rules at one point, with the replayed slices rloc, rmeta and rrem
    in place: RuntimeError (or OSError) names the broken ones.  The primary
    it loads, rpri, is left for unload() (st.loaded: it was loaded)."""
    tm, diverged, found = st.tm, st.diverged, st.found
    msgs = []
    t2 = now()
    loc0 = crash.read_raw("/dev/mapper/rloc")
    rem0 = crash.read_raw("/dev/mapper/rrem")
    nosync = log_nosync(crash.read_raw("/dev/mapper/rmeta"), len(loc0) // SECTOR //
                        a.region_size)
    t3 = now()
    tm["read"] += t3 - t2
    msgs += rules.check("remote before the reload (r)", crash.decode(rem0, 0), True)
    diff0 = regions_differ(loc0, rem0, a.region_size)
    if diff0:
        diverged.append(len(diff0))
    if nosync is None:
        msgs.append("(o) the metadata device holds neither a log nor zeroes")
    elif set(diff0) - set(nosync):
        msgs.append("(o) local and remote differ in regions %s, which the log "
                    "on disk has in sync (out of sync: %s); %s" % (
                        sorted(set(diff0) - set(nosync)), nosync,
                        sector_diff(rules, crash.decode(loc0, 0), crash.decode(rem0, 0),
                                    min(set(diff0) - set(nosync)), a.region_size)))
    t4 = now()
    tm["check"] += t4 - t3
    kmsg.drain()
    try:
        dm.make("rpri", table)
        st.loaded = True
    except OSError as e:
        raise RuntimeError("the primary does not load: %s" % e)
    nfound = 0
    deadline = now() + a.settle
    while True:
        ps = dm.params("rpri").split()
        if ps[1] == "running" and ps[4].startswith("0/"):
            break
        if ps[1] != "syncing" or now() > deadline:
            raise RuntimeError("the primary does not settle to running: %s" %
                               " ".join(ps))
        time.sleep(0.01)
    for line in kmsg.drain():
        m = SYNCING.search(line)
        if m:
            nfound = int(m.group(1))
    if nfound:
        found.append(nfound)
    t5 = now()
    tm["load+resync"] += t5 - t4
    if nosync is not None and nfound != len(nosync):
        msgs.append("the reload found %d regions out of sync, the log on disk "
                    "has %d: %s" % (nfound, len(nosync), nosync))
    pri = crash.read_dev("/dev/mapper/rpri")
    loc = crash.read_raw("/dev/mapper/rloc")
    rem = crash.read_raw("/dev/mapper/rrem")
    t6 = now()
    tm["read"] += t6 - t5
    msgs += rules.check("primary device (a, b)", pri, False)
    diff = regions_differ(loc, rem, a.region_size)
    if diff:
        msgs.append("(c) after the resync remote and local differ in regions %s "
                    "(they differed in %s before the reload, the log had %s out "
                    "of sync); %s" % (diff[:8], diff0[:8], nosync, sector_diff(
                        rules, crash.decode(loc, 0), crash.decode(rem, 0), diff[0],
                        a.region_size)))
    tm["check"] += now() - t6
    if msgs:
        raise RuntimeError("; ".join(msgs))


def unload(dm, st, what):
    """Remove rpri if the point loaded it: the failures (0 or 1)."""
    t = now()
    try:
        if st.loaded:
            dm.unmake("rpri")
        return 0
    except OSError as e:
        print("not ok - %s: cannot remove the primary: %s" % (what, e))
        return 1
    finally:
        st.tm["remove"] += now() - t


def check(a):
    run = crash_replay.open_run(a)
    if not run:
        return 1
    ops, log, pts = run
    dm = dmioctl.DM()
    lay = crash_replay.Layers(dm, log, a.base, a.cow.split(","), slices=slices_of(a))
    steps = ((k, p, cut0, cut1, pts.what(p), "flush" if p in pts.fset else "random")
             for k, p, cut0, cut1 in pts.windows())
    return walk(a, dm, lay, Rules(ops, a.len), steps, ("flush", "random"),
                "replay points (%d flush points, %d random)")


def slices_of(a):
    """The replayed slices: local, the metadata, the remote."""
    return [("rloc", a.len), ("rmeta", a.meta_len), ("rrem", a.len)]


def walk(a, dm, lay, rules, steps, kinds, counted):
    """Each step (K, CUT, cut0, cut1, WHAT, KIND): LAY to point K at CUT,
    the primary loaded and checked against RULES for a crash in [cut0,
    cut1]; a failing step prints "not ok - WHAT: ...".  Prints "# checked N
    " + COUNTED % (the steps of each of KINDS) + failures.  Return 1 on a
    failure."""
    kmsg = dmioctl.Kmsg()
    table = ("0 %d replication primary /dev/mapper/rloc /dev/mapper/rrem 4 "
             "metadata /dev/mapper/rmeta region_size %d" % (a.len, a.region_size))
    fails = 0
    checked = dict.fromkeys(kinds, 0)
    t_start = now()
    st = Stats()
    for k, cut, cut0, cut1, what, kind in steps:
        t_rep, t_lay = lay.goto(k, cut)
        st.tm["replay"] += t_rep
        st.tm["layer"] += t_lay
        rules.window(cut0, cut1)
        st.loaded = False
        try:
            verify(a, dm, kmsg, rules, table, st)
            checked[kind] += 1
        except (RuntimeError, OSError) as e:
            fails += 1
            print("not ok - %s: %s" % (what, e))
            if fails >= a.max_fails:
                print("# stopping after %d failures" % fails)
                break
        finally:
            fails += unload(dm, st, what)
    lay.close()
    dm.close()
    st.report()
    print(("# checked %d " + counted + ", %d failures (%.0fs)") % (
        (sum(checked.values()) + fails,) + tuple(checked[x] for x in kinds) +
        (fails, now() - t_start)))
    return 1 if fails else 0


def cache_check(a):
    """check --cache: the points are the marks (Quiescer's crash instants),
    for devices with volatile write caches that a power cut empties: each
    device's log is replayed up to its last FLUSH or FUA entry before the
    mark, so every write the device had not flushed then is lost.  (A plain
    write enters a log-writes log only with the next flush anyway, so the
    cut drops no logged write: "entries after the last flush" stays 0.)
    Local and the remote are flushed at different times (a checkpoint
    flushes the remote alone), so they lose different writes; a region in
    which they then differ must not be in sync in the log, which writes a
    region in sync only after the primary flushed both devices
    (dmr_flush_devices())."""
    with open(a.log) as f:
        L = json.load(f)
    ops = L["ops"]
    marks = {o["m"]: o for o in ops if o["op"] == "mark"}
    names = ("local", "metadata", "remote")
    logs = [logwrites.Log(p) for p in a.lwlog.split(",")]
    cut = []	# per log: {mark number: prefix up to its last FLUSH/FUA before it}
    dropped = [0, 0, 0]	# per log: entries between those and the marks, all marks
    for i, log in enumerate(logs):
        if log.sectorsize != SECTOR:
            print("not ok - %s log sector size %d (expected %d)" % (
                names[i], log.sectorsize, SECTOR))
            return 1
        c, last = {}, 0
        for e in log.entries:
            if e.flags & (logwrites.FLUSH | logwrites.FUA):
                last = e.index + 1
            elif e.mark and e.mark.startswith("m"):
                c[int(e.mark[1:])] = last
                dropped[i] += sum(1 for x in log.entries[last:e.index] if not x.mark)
        cut.append(c)
        missing = set(marks) - set(c)
        if missing:
            print("not ok - %d marks the workload sent are not in the %s log (e.g. m%d)" % (
                len(missing), names[i], min(missing)))
            return 1
    pts = sorted(marks)
    rnd = random.Random(a.seed)
    if a.mark_points and len(pts) > a.mark_points:
        pts = sorted(rnd.sample(pts, a.mark_points))
    print("# logs: %s; %d marks (%d crash instants), checking %d; entries after the "
          "last flush before a mark, all marks: %s" % (
              ", ".join("%s %d entries, %d FLUSH/FUA" % (
                  names[i], len(lg.entries),
                  sum(1 for e in lg.entries if e.flags & (logwrites.FLUSH | logwrites.FUA)))
                  for i, lg in enumerate(logs)),
              len(marks), sum(1 for o in marks.values() if o.get("why") == "crash"),
              len(pts), "/".join(str(d) for d in dropped)))

    dm = dmioctl.DM()
    lay = crash_replay.Layers(dm, logs, a.base, a.cow.split(","), slices=slices_of(a))

    def steps():
        for k, m in enumerate(pts):
            cuts = [c[m] for c in cut]
            yield (k, cuts, marks[m]["t0"], marks[m]["t1"],
                   "m%d (%s; local, metadata, remote up to entries %s)" % (
                       m, marks[m].get("why", "durable"), "/".join(str(x) for x in cuts)),
                   marks[m].get("why", "durable"))
    return walk(a, dm, lay, Rules(ops, a.len), steps(), ("durable", "crash"),
                "cache points (%d durable, %d crash)")


def regions(a):
    """62-primary-crash: after a crash, before the reload, every region in
    which local and remote differ is out of sync in the log on the
    metadata device (rule (o) of `check`, on the devices themselves)."""
    loc, rem, meta = (crash.read_raw(d) for d in (a.local, a.remote, a.meta))
    diff = regions_differ(loc, rem, a.region_size)
    nosync = log_nosync(meta, (len(loc) // SECTOR + a.region_size - 1) // a.region_size)
    print("# local and remote differ in %d regions; the log has %s out of sync" % (
        len(diff), "no valid bitmap" if nosync is None else "%d" % len(nosync)))
    if nosync is None:
        print("# the metadata holds neither a log nor zeroes")
        return 1
    missed = sorted(set(diff) - set(nosync))
    if missed:
        print("# in sync in the log, yet local and remote differ: regions %s" % missed[:8])
        return 1
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["work", "check", "regions"])
    p.add_argument("--local", help="regions: the local device")
    p.add_argument("--remote", help="regions: the remote device")
    p.add_argument("--meta", help="regions: the metadata device")
    p.add_argument("--pri", default="pri")
    p.add_argument("--lw", default="lw")
    p.add_argument("--region-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--flush", type=float, default=0.12,
                   help="share of a writer's operations that are fdatasync")
    p.add_argument("--hot", type=int, default=48)
    p.add_argument("--log")
    crash_replay.add_check_args(p, random_points=40)
    p.add_argument("--len", type=int, help="local and remote, sectors")
    p.add_argument("--meta-len", type=int, help="metadata, sectors")
    p.add_argument("--settle", type=float, default=30.0,
                   help="seconds for a reloaded primary to reach running")
    p.add_argument("--max-fails", type=int, default=20)
    p.add_argument("--cache", action="store_true",
                   help="check: three logs (--lwlog L,M,R), each cut at its last flush")
    p.add_argument("--crash-every", type=float, default=0.1,
                   help="work, three log-writes devices: mean seconds between crash "
                   "instants besides the durability points (0: none)")
    p.add_argument("--mark-points", type=int, default=0,
                   help="check --cache: marks to check, at random (0: all)")
    a = p.parse_args()
    if a.cmd == "check" and a.cache:
        return cache_check(a)
    return {"work": work, "check": check, "regions": regions}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
