#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Power cuts during a failover's merge (57-failover-crash.sh).

  failover_crash.py work   --top DEV --port DEV --sec DEV --chunk N --seed S
                           --mode M --log FILE --cut-dm NAME [--id-base N]
  failover_crash.py resume --top DEV --chunk N --seed S --mode M --log FILE
                           --cut-dm NAME [--id-base N]
  failover_crash.py verify --top DEV --sec DEV --log FILE [--final]
  failover_crash.py inject-loss --sec DEV --log FILE   (tests the test)

Sectors are stamped as in crash.py (every 512-byte sector names the write
that left it).

`work` builds a history on a fresh session (top and port writes, big
sequential ones so the merge copies extents of many chunks, small ones, a
checkpoint), checks that the top shows its model, and takes that as the
expected image E0: what the top shows at the failover.  It sends
commit_depth (seeded) and "failover", then a writer thread writes the top
during the merge: chunks just below the merge cursor (merged, cursor maybe
not durable: pitfall 6), just above it (in flight, or not reached: written
in place in the store), other store chunks, clean chunks; some O_DSYNC, some
followed by fdatasync.  The main thread cuts the power (resumes the
preloaded dm-flakey drop_writes table of NAME: one ioctl) at a point chosen
by --mode:
  immediate  right after the failover message returns;
  random     when a seeded share (10%..90%) of the chunks is merged;
  end        when at most 2% (or 1 chunk) is left, or at done;
  done       a little after done was seen (a crash after done loads as
             done);
  at-done    the moment the status first says done (polled without pause).
The writer goes on a little after the cut, then everything is logged.

`resume` is the same on a top reloaded after a cut: its table is loaded but
not live; it resumes it (the merge resumes by itself from the durable
cursor), sends commit_depth 1 or 2 at once, checks the state (failover or
done; done when done was seen before the cut), and the writer writes during
the resumed merge, which is cut at a random point (a second crash).

`verify` reads the top (or, with --final, the secondary device after done,
and the top too) and checks every sector:
  - it holds E0, or a top write of the merge phase that started before the
    cut of its phase (no other value: not the primary's data, not an old
    secondary's, not a torn sector);
  - when a write to it completed and was flushed (O_DSYNC, or an fdatasync
    that started after it completed and returned) before the cut of its
    phase, it holds that write or a later one that may exist: a merged
    chunk written in place must never be overwritten by a resumed merge.
"""
import argparse
import fcntl
import json
import mmap
import os
import random
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crash import SECTOR, stamp_buf, read_dev, dm_resume  # noqa: E402

now = time.monotonic

DM_IOCTL = struct.Struct("=3IIIIiIIIQ128s129s7s")
DM_SPEC = struct.Struct("=QQiI16s")
DM_TABLE_STATUS = (3 << 30) | (DM_IOCTL.size << 16) | (0xFD << 8) | 12
DM_TARGET_MSG = (3 << 30) | (DM_IOCTL.size << 16) | (0xFD << 8) | 14
DM_DEV_SUSPEND = (3 << 30) | (DM_IOCTL.size << 16) | (0xFD << 8) | 6


class Dm:
    def __init__(self):
        self.fd = os.open("/dev/mapper/control", os.O_RDWR)
        self.lock = threading.Lock()

    def _call(self, cmd, name, payload=b"", size=4096):
        buf = bytearray(max(size, DM_IOCTL.size + len(payload)))
        DM_IOCTL.pack_into(buf, 0, 4, 0, 0, len(buf), DM_IOCTL.size, 0, 0,
                           0, 0, 0, 0, name.encode(), b"", b"")
        buf[DM_IOCTL.size:DM_IOCTL.size + len(payload)] = payload
        with self.lock:
            fcntl.ioctl(self.fd, cmd, buf, True)
        return buf

    def resume(self, name):
        """Resume NAME: its inactive table goes live (the merge resumes)."""
        self._call(DM_DEV_SUSPEND, name)

    def message(self, name, text):
        self._call(DM_TARGET_MSG, name,
                   struct.pack("=Q", 0) + text.encode() + b"\0")

    def status(self, name):
        """The top's params split: [secondary, state, error, ua/ta, uh/th,
        #checkpoints, #to commit]."""
        buf = self._call(DM_TABLE_STATUS, name)
        f = DM_IOCTL.unpack_from(buf, 0)
        p = f[4] + DM_SPEC.size
        return bytes(buf[p:buf.index(b"\0", p)]).decode().split()


def chunks_of(s, n, chunk):
    return range(s // chunk, (s + n - 1) // chunk + 1)


# ---------------------------------------------------------------------------
# The history before the failover (one thread, no crash: an exact model).

def history(args, rnd, ids, dm):
    top_name = os.path.basename(args.top)
    sec0 = read_dev(args.sec)
    if any(isinstance(v, str) for v in sec0):
        raise SystemExit("not ok - the secondary device holds bad sectors "
                         "before the round")
    nsect = len(sec0)
    chunk = args.chunk
    nchunks = nsect // chunk
    sec = list(sec0)
    top = list(sec0)
    active, hidden = set(), set()
    tfd = os.open(args.top, os.O_WRONLY | os.O_DIRECT)
    pfd = os.open(args.port, os.O_WRONLY | os.O_DIRECT)

    def write(kind, s, n):
        i = ids()
        buf = stamp_buf(s, n, i, 1 if kind == "top" else 2)
        fd = tfd if kind == "top" else pfd
        if os.pwrite(fd, buf, s * SECTOR) != n * SECTOR:
            raise SystemExit("not ok - short %s write in the history" % kind)
        buf.close()
        model = top if kind == "top" else sec
        model[s:s + n] = [i] * n
        (active if kind == "top" else hidden).update(chunks_of(s, n, chunk))

    def small(kind):
        c = rnd.randrange(nchunks)
        if rnd.random() < 0.5:
            write(kind, c * chunk, chunk)
        else:
            a = rnd.randrange(chunk)
            write(kind, c * chunk + a, rnd.randint(1, chunk - a))

    def big(kind):
        n = min(nsect, rnd.choice([256, 1024, 2048]))	# 128 KiB..1 MiB
        s = rnd.randrange(0, nsect - n + 1) // chunk * chunk
        write(kind, s, n)

    # An epoch that the checkpoint drops, then the failover's epoch.
    for _ in range(40):
        small(rnd.choice(["top", "port"]))
    dm.message(top_name, "checkpoint")
    top = list(sec)
    active.clear()
    hidden.clear()
    for _ in range(args.big):
        big(rnd.choice(["top", "top", "port"]))
    for _ in range(args.small):
        small(rnd.choice(["top", "port"]))
    os.fsync(tfd)
    os.fsync(pfd)
    os.close(tfd)
    os.close(pfd)
    got = read_dev(args.top)
    bad = [s for s in range(nsect) if got[s] != top[s]]
    if bad:
        raise SystemExit("not ok - before the failover the top does not show "
                         "its model: %d sectors, first %d holds %s, expected %s"
                         % (len(bad), bad[0], got[bad[0]], top[bad[0]]))
    return top, sorted(active | hidden)


# ---------------------------------------------------------------------------
# The merge phase: a top writer, and the cut.

class Writer(threading.Thread):
    """Top writes during the merge; DURABLE_HOOK, when given, is called
    after every acknowledged durability point (an O_DSYNC write or an
    fdatasync returned)."""

    def __init__(self, args, rnd, ids, dm, fo_chunks, nsect, log,
                 durable_hook=None):
        super().__init__()
        self.args, self.rnd, self.ids, self.dm = args, rnd, ids, dm
        self.fo_chunks, self.nsect, self.log = fo_chunks, nsect, log
        self.durable_hook = durable_hook or (lambda: None)
        self.stop = threading.Event()
        self.errors = []
        self.store = set(fo_chunks)

    def pick(self):
        rnd, chunk = self.rnd, self.args.chunk
        nchunks = self.nsect // chunk
        r = rnd.random()
        if r < 0.55 and self.fo_chunks:
            # Around the merge cursor: mostly just below it (merged).
            st = self.dm.status(os.path.basename(self.args.top))
            left = int(st[6]) if st[1] == "failover" else 0
            i = len(self.fo_chunks) - left + rnd.randint(-8, 3)
            c = self.fo_chunks[max(0, min(len(self.fo_chunks) - 1, i))]
        elif r < 0.75 and self.fo_chunks:
            c = rnd.choice(self.fo_chunks)
        elif r < 0.9:
            c = rnd.randrange(nchunks)
            for _ in range(10):
                if c not in self.store:
                    break
                c = rnd.randrange(nchunks)
        else:
            c = rnd.randrange(nchunks)
        if rnd.random() < 0.5:
            return c * chunk, chunk
        a = rnd.randrange(chunk)
        return c * chunk + a, rnd.randint(1, chunk - a)

    def run(self):
        try:
            self.work()
        except Exception as e:	# noqa: BLE001 - reported, fails the round
            self.errors.append("writer died: %r" % e)

    def work(self):
        fd = os.open(self.args.top, os.O_WRONLY | os.O_DIRECT)
        sfd = os.open(self.args.top, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
        try:
            while not self.stop.is_set():
                try:
                    s, n = self.pick()
                except OSError as e:
                    self.errors.append("status: %s" % e)
                    break
                sync = self.rnd.random() < 0.15
                i = self.ids()
                buf = stamp_buf(s, n, i, 1)
                t0 = now()
                try:
                    ok = os.pwrite(sfd if sync else fd, buf,
                                   s * SECTOR) == n * SECTOR
                    if not ok:
                        self.errors.append("short write %d" % i)
                except OSError as e:
                    ok = False
                    self.errors.append("top write %d+%d: %s" % (s, n, e))
                self.log.append({"op": "syncwrite" if sync else "write",
                                 "id": i, "s": s, "n": n, "t0": t0,
                                 "t1": now(), "ok": ok})
                buf.close()
                if ok and sync:
                    self.durable_hook()
                if self.rnd.random() < 0.4:
                    t0 = now()
                    try:
                        os.fdatasync(fd)
                        ok = True
                    except OSError as e:
                        ok = False
                        self.errors.append("fdatasync: %s" % e)
                    self.log.append({"op": "flush", "t0": t0, "t1": now(),
                                     "ok": ok})
                    if ok:
                        self.durable_hook()
        finally:
            os.close(fd)
            os.close(sfd)


def merge_phase(args, rnd, ids, dm, fo_chunks, nsect, send_failover):
    """Writes during the merge and the cut; returns the phase's record."""
    top_name = os.path.basename(args.top)
    log = []
    rec = {"mode": args.mode, "ops": log}
    if send_failover:
        depth = rnd.choice([1, 2, 4, 8])
        dm.message(top_name, "commit_depth %d" % depth)
        rec["depth"] = depth
        t0 = now()
        dm.message(top_name, "failover")
        rec["msg"] = [t0, now()]
    st = dm.status(top_name)
    rec["status0"] = " ".join(st)
    if st[1] not in ("failover", "done"):
        raise SystemExit("not ok - state %s when the merge should run"
                         % st[1])
    total = int(st[6]) if st[1] == "failover" else 0
    rec["left0"] = total
    w = Writer(args, random.Random(rnd.random()), ids, dm, fo_chunks, nsect,
               log)
    if args.mode == "immediate":
        rec["cut"] = cut(args)
        w.start()
    else:
        w.start()
        if args.mode == "random":
            target = int(total * (1 - rnd.uniform(0.1, 0.9)))
        elif args.mode == "at-done":
            target = -1
        elif args.mode == "end":
            target = max(1, total // 50)
        else:
            target = -1
        rec["target_left"] = target
        deadline = now() + args.timeout
        while True:
            st = dm.status(top_name)
            if st[1] == "done":
                rec["done_seen"] = now()
                if args.mode == "done":
                    time.sleep(rnd.uniform(0.0, 0.3))	# writes after done
                break
            if st[1] != "failover":
                w.stop.set()
                w.join()
                raise SystemExit("not ok - state %s during the merge" % st[1])
            if int(st[6]) <= target:
                break
            if now() > deadline:
                w.stop.set()
                w.join()
                raise SystemExit("not ok - the merge is stuck: %s"
                                 % " ".join(st))
            if args.mode != "at-done":
                time.sleep(0.002)
        rec["status_cut"] = " ".join(dm.status(top_name))
        rec["cut"] = cut(args)
    time.sleep(args.after)
    w.stop.set()
    w.join()
    rec["errors"] = w.errors
    for o in log:
        o["cut"] = rec["cut"]
    return rec


def cut(args):
    t0 = now()
    dm_resume(args.cut_dm)
    return [t0, now()]


def work(args):
    rnd = random.Random(args.seed)
    nid = [args.id_base]

    def ids():
        nid[0] += 1
        return nid[0]
    dm = Dm()
    e0, fo_chunks = history(args, rnd, ids, dm)
    rec = merge_phase(args, rnd, ids, dm, fo_chunks, len(e0), True)
    doc = {"chunk": args.chunk, "e0": e0, "fo_chunks": fo_chunks,
           "phases": [rec], "next_id": nid[0]}
    with open(args.log, "w") as f:
        json.dump(doc, f)
    report(doc, rec)
    return 1 if rec["errors"] else 0


def resume(args):
    with open(args.log) as f:
        doc = json.load(f)
    rnd = random.Random(args.seed)
    nid = [max(args.id_base, doc["next_id"])]

    def ids():
        nid[0] += 1
        return nid[0]
    dm = Dm()
    top_name = os.path.basename(args.top)
    must_done = "done_seen" in doc["phases"][-1]
    # The top's table is loaded, not live: resume it (the merge resumes
    # from the durable cursor) and slow the merge down at once, so that the
    # cut comes during it.
    dm.resume(top_name)
    depth = rnd.choice([1, 2])
    dm.message(top_name, "commit_depth %d" % depth)
    if not os.path.exists(args.top):
        # No udev: dmsetup makes the node of a device it resumes itself.
        subprocess.run(["dmsetup", "mknodes", top_name], check=True)
    st = dm.status(top_name)
    print("# reloaded after the cut: %s; commit_depth %d" % (" ".join(st),
                                                            depth))
    if st[1] not in (["done"] if must_done else ["failover", "done"]):
        print("not ok - state %s after the cut (done seen before it: %s)"
              % (st[1], must_done))
        return 1
    rec = merge_phase(args, rnd, ids, dm, doc["fo_chunks"], len(doc["e0"]),
                      False)
    rec["depth"] = depth
    doc["phases"].append(rec)
    doc["next_id"] = nid[0]
    with open(args.log, "w") as f:
        json.dump(doc, f)
    report(doc, rec)
    return 1 if rec["errors"] else 0


def report(doc, rec):
    ops = rec["ops"]
    nw = sum(1 for o in ops if "write" in o["op"])
    nf = sum(1 for o in ops if o["op"] == "flush")
    c0 = rec["cut"][0]
    dur = [o for o in ops if durable(o, ops)]
    print("# merge phase (%s): %d store chunks, %s chunks left at start, "
          "commit_depth %s; %d top writes (%d before the cut, %d durable), "
          "%d flushes; status at the cut: %s; cut %.0f ms"
          % (rec["mode"], len(doc["fo_chunks"]), rec["left0"],
             rec.get("depth", "-"), nw,
             sum(1 for o in ops if "write" in o["op"] and o["t0"] < c0),
             len(dur), nf, rec.get("status_cut", "(immediate)"),
             1000 * (rec["cut"][1] - rec["cut"][0])))
    for e in rec["errors"]:
        print("not ok - writer error: %s" % e)


# ---------------------------------------------------------------------------
# The verifier.

def durable(o, ops):
    """Completed, and flushed, before the cut of its phase."""
    if "write" not in o["op"] or not o["ok"] or o["t1"] >= o["cut"][0]:
        return False
    if o["op"] == "syncwrite":
        return True
    return any(f["op"] == "flush" and f["ok"] and f["t1"] < o["cut"][0] and
               o["t1"] < f["t0"] for f in ops)


def verify(args):
    with open(args.log) as f:
        doc = json.load(f)
    e0 = doc["e0"]
    nsect = len(e0)
    per = [[] for _ in range(nsect)]
    by_id = {}
    must = [0] * nsect		# the newest durable write per sector
    for ph in doc["phases"]:
        ops = ph["ops"]
        for o in ops:
            if "write" not in o["op"]:
                continue
            by_id[o["id"]] = o
            may = o["ok"] and o["t0"] < o["cut"][1]
            d = durable(o, ops)
            for s in range(o["s"], o["s"] + o["n"]):
                if may:
                    per[s].append(o["id"])
                if d:
                    must[s] = max(must[s], o["id"])

    def describe(v):
        if v == 0:
            return "zero (never written)"
        if isinstance(v, str):
            return v
        o = by_id.get(v)
        if not o:
            return "op %d (E0 or earlier: not a write of the merge phase)" % v
        return "merge-phase %s %d [%d+%d] t=%+.3f..%+.3f s from its cut" % (
            o["op"], v, o["s"], o["n"], o["t0"] - o["cut"][0],
            o["t1"] - o["cut"][0])

    targets = [("top", args.top)]
    if args.final:
        targets = [("secondary device", args.sec), ("top", args.top)]
    fails = 0
    chunk = doc["chunk"]
    for what, dev in targets:
        got = read_dev(dev)[:nsect]
        bad = {"wrong value": [], "flushed write lost": []}
        for s in range(nsect):
            v = got[s]
            if isinstance(v, str) or (v != e0[s] and v not in per[s]):
                bad["wrong value"].append(
                    "%s sector %d (chunk %d) holds %s; expected E0 %s or a "
                    "merge-phase write%s" % (
                        what, s, s // chunk, describe(v), describe(e0[s]),
                        "" if per[s] else " (none to it)"))
            elif must[s] and (v == e0[s] or v < must[s]):
                bad["flushed write lost"].append(
                    "%s sector %d (chunk %d) holds %s, but flushed write %s "
                    "is lost" % (what, s, s // chunk, describe(v),
                                 describe(must[s])))
        n = sum(len(v) for v in bad.values())
        if n:
            fails += 1
            print("not ok - %s: %d sectors wrong (%s)" % (
                what, n, ", ".join("%s: %d" % (k, len(v))
                                   for k, v in bad.items() if v)))
            for k, v in bad.items():
                for m in v[:3]:
                    print("#   e.g. " + m)
        else:
            print("ok - %s: every sector E0 or a merge-phase write, every "
                  "flushed write present" % what)
    nm = sum(1 for s in range(nsect) if must[s])
    print("# %d sectors differ from E0 by a merge-phase write; %d sectors "
          "had a flushed write" % (sum(1 for s in range(nsect) if per[s]), nm))
    return 1 if fails else 0


def inject_loss(args):
    """Test the test: overwrite, on DEV, the newest flushed merge-phase
    write of one sector with that sector's E0 stamp (what a resumed merge
    that copies an old slot over a merged chunk written in place would
    leave).  verify must then fail."""
    with open(args.log) as f:
        doc = json.load(f)
    for ph in reversed(doc["phases"]):
        for o in reversed(ph["ops"]):
            if durable(o, ph["ops"]):
                s = o["s"]
                v = doc["e0"][s]
                buf = stamp_buf(s, 1, v, 1) if v else mmap.mmap(-1, SECTOR)
                fd = os.open(args.sec, os.O_WRONLY | os.O_DIRECT)
                try:
                    os.pwrite(fd, buf, s * SECTOR)
                finally:
                    os.close(fd)
                print("# injected: sector %d set back to E0 (op %d), "
                      "losing flushed write %d" % (s, v, o["id"]))
                return 0
    print("# no flushed write to lose")
    return 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["work", "resume", "verify",
                                    "inject-loss"])
    p.add_argument("--top")
    p.add_argument("--port")
    p.add_argument("--sec")
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mode", default="random",
                   choices=["immediate", "random", "end", "done",
                            "at-done"])
    p.add_argument("--log")
    p.add_argument("--cut-dm")
    p.add_argument("--id-base", type=int, default=0)
    p.add_argument("--big", type=int, default=12,
                   help="big sequential writes in the history")
    p.add_argument("--small", type=int, default=1000,
                   help="small writes in the history")
    p.add_argument("--after", type=float, default=0.3,
                   help="seconds the writer goes on after the cut")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--final", action="store_true")
    args = p.parse_args()
    return {"work": work, "resume": resume, "verify": verify,
            "inject-loss": inject_loss}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
