#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Crash-consistency workload and verifier for dm-replication (40-crash.sh).

  crash.py work   --top DEV --port DEV --chunk N --seed S --mode M --log FILE
                  --cut-dm NAME | --cut 'CMD' [--id-base N] [--top-flush P]
  crash.py verify --top DEV --sec DEV --log FILE --state FILE
  crash.py init   --sec DEV --state FILE

Every 512-byte sector a write puts down holds 32 copies of one 16-byte stamp
(magic, sector, op id, kind), so a read tells which write (if any) left each
sector, and a torn sector or a misplaced one shows.  An all-zero sector is
"never written" (version 0).

`work` runs a top writer and a port writer (threads, O_DIRECT) and, on the
main thread, checkpoints; at a seeded moment it cuts the power (swaps in the
dm-flakey table preloaded into the device everything sits on: one resume
ioctl, or CMD), keeps going a little,
and logs every operation with its start and end time (CLOCK_MONOTONIC).

`verify` reads the top device and the secondary device after the reload and
checks them against the log and against the state the previous round left
(--state: what the top and the secondary device held when the round began;
it is rewritten with what they hold now).
"""
import argparse
import contextlib
import json
import mmap
import os
import random
import struct
import subprocess
import sys
import threading
import time

SECTOR = 512
MAGIC = 0x48535243  # "CRSH"
STAMP = struct.Struct("<IIII")
KIND = {1: "top", 2: "port"}

now = time.monotonic


def stamp_buf(sector, nsect, op_id, kind):
    buf = mmap.mmap(-1, nsect * SECTOR)
    for i in range(nsect):
        buf[i * SECTOR:(i + 1) * SECTOR] = STAMP.pack(MAGIC, sector + i, op_id, kind) * 32
    return buf


def decode(data, first_sector):
    """Per sector: 0 (zero), op id, or a string saying what is wrong."""
    out = []
    zero = bytes(SECTOR)
    for i in range(len(data) // SECTOR):
        s = data[i * SECTOR:(i + 1) * SECTOR]
        if s == zero:
            out.append(0)
            continue
        first = s[:16]
        if s != first * 32:
            out.append("torn sector")
            continue
        magic, sec, op_id, kind = STAMP.unpack(first)
        if magic != MAGIC:
            out.append("garbage")
        elif sec != first_sector + i:
            out.append("stamp of sector %d (misplaced data)" % sec)
        elif kind not in KIND:
            out.append("bad kind %d" % kind)
        else:
            out.append(op_id)
    return out


def read_raw(path):
    """The whole device, read O_DIRECT (its page cache may be stale)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        buf = mmap.mmap(-1, size)
        done = 0
        while done < size:
            n = os.preadv(fd, [memoryview(buf)[done:min(size, done + (1 << 20))]], done)
            if n <= 0:
                raise OSError("short read of %s at %d" % (path, done))
            done += n
        return bytes(buf)
    finally:
        os.close(fd)


def read_dev(path):
    return decode(read_raw(path), 0)


# ---------------------------------------------------------------------------
# The workload.

class Log:
    def __init__(self, id_base):
        self.lock = threading.Lock()
        self.next_id = id_base + 1
        self.ops = []

    def new_id(self):
        with self.lock:
            i = self.next_id
            self.next_id += 1
            return i

    def add(self, op):
        with self.lock:
            self.ops.append(op)


RECENT = []	# chunks the top wrote last: the port goes after them


def writer(name, kind, path, args, log, rnd, stop, errors):
    """Writes (full and partial chunks) and flushes to one device.

    The port writes 40% of the time to a chunk the top has just written: the
    race between a top write's commit and the port's copy-before-write.  The
    two hot sets overlap by half, so the top also writes chunks that the port
    has not copied into hidden yet in this epoch.
    """
    durable_hook = getattr(args, "durable_hook", None)	# after a flush, a sync write
    guard = getattr(args, "guard", None)	# guard(s, n): held over a write of [s, s+n)
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    sfd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
    size = os.lseek(fd, 0, os.SEEK_END) // SECTOR
    chunk = args.chunk
    nchunks = size // chunk
    hot = min(nchunks // 2, args.hot)
    try:
        while not stop.is_set():
            x = rnd.random()
            if x < (args.top_flush if kind == 1 else 0.12):
                t0 = now()
                try:
                    os.fdatasync(fd)
                    ok = True
                except OSError as e:
                    ok = False
                    errors.append("%s flush: %s" % (name, e))
                log.add({"dev": name, "op": "flush", "t0": t0, "t1": now(), "ok": ok})
                if ok and durable_hook:
                    durable_hook(log)
                continue
            if kind == 2 and RECENT and rnd.random() < 0.4:
                c = rnd.choice(RECENT[-8:])
            elif rnd.random() < 0.9:
                # hot chunks: the port's overlap half of the top's
                c = rnd.randrange(hot) + (hot // 2 if kind == 2 else 0)
            else:
                c = rnd.randrange(nchunks)
            if rnd.random() < 0.45:
                s, n = c * chunk, chunk
            else:
                a = rnd.randrange(chunk)
                s, n = c * chunk + a, rnd.randint(1, chunk - a)
            sync = rnd.random() < 0.1
            op_id = log.new_id()
            buf = stamp_buf(s, n, op_id, kind)
            with guard(s, n) if guard else contextlib.nullcontext():
                t0 = now()
                try:
                    w = os.pwrite(sfd if sync else fd, buf, s * SECTOR)
                    ok = w == n * SECTOR
                    if not ok:
                        errors.append("%s write %d: short (%d)" % (name, op_id, w))
                except OSError as e:
                    ok = False
                    errors.append("%s write %d at %d+%d: %s" % (name, op_id, s, n, e))
                t1 = now()
            if kind == 1:
                RECENT.append(c)
                del RECENT[:-64]
            log.add({"dev": name, "op": "syncwrite" if sync else "write",
                     "id": op_id, "s": s, "n": n, "t0": t0, "t1": t1, "ok": ok})
            buf.close()
            if ok and sync and durable_hook:
                durable_hook(log)
    finally:
        os.close(fd)
        os.close(sfd)


def checkpoint(log, top_name, errors, durable_hook=None):
    t0 = now()
    r = subprocess.run(["dmsetup", "message", top_name, "0", "checkpoint"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t1 = now()
    if r.returncode:
        errors.append("checkpoint failed: %s" % r.stdout.strip())
    log.add({"dev": "top", "op": "checkpoint", "t0": t0, "t1": t1, "ok": r.returncode == 0})
    if durable_hook and r.returncode == 0:
        durable_hook(log)


DM_DEV_SUSPEND = 0xC138FD06		# _IOWR(0xfd, 6, struct dm_ioctl)
DM_NOFLUSH_FLAG = 1 << 11


def dm_resume(name):
    """Resume NAME, swapping in its inactive table, in one ioctl: dmsetup
    takes a few hundred ms under TCG, this a few ms, so the cut is sharp."""
    import fcntl
    # struct dm_ioctl: version[3], data_size, data_start, target_count,
    # open_count, flags, event_nr, padding, dev, name[128], uuid[129], data[7]
    buf = bytearray(struct.pack("<3IIIIiIIIQ128s129s7s", 4, 0, 0, 312, 312, 0, 0,
                                DM_NOFLUSH_FLAG, 0, 0, 0, name.encode(), b"", b""))
    fd = os.open("/dev/mapper/control", os.O_RDWR)
    try:
        fcntl.ioctl(fd, DM_DEV_SUSPEND, buf)
    finally:
        os.close(fd)


def cut(args, log):
    t0 = now()
    if args.cut_dm:
        dm_resume(args.cut_dm)
    else:
        r = subprocess.run(args.cut, shell=True)
        if r.returncode:
            raise SystemExit("cut command failed: %s" % args.cut)
    t1 = now()
    log.add({"op": "cut", "t0": t0, "t1": t1})
    return t0, t1


def work(args):
    rnd = random.Random(args.seed)
    log = Log(args.id_base)
    stop = threading.Event()
    errors = []
    top_name = os.path.basename(args.top)
    threads = [
        threading.Thread(target=writer, args=("top", 1, args.top, args, log,
                                              random.Random(rnd.random()), stop, errors)),
        threading.Thread(target=writer, args=("port", 2, args.port, args, log,
                                              random.Random(rnd.random()), stop, errors)),
    ]
    start = now()
    for t in threads:
        t.start()
    cut_at = start + rnd.uniform(0.4, args.duration)
    try:
        if args.mode == "ckpt-cut":
            # Checkpoints until the cut time, then one whose message races
            # the cut: the cut starts a random moment after the message.
            while now() < cut_at:
                time.sleep(rnd.uniform(0.05, 0.4))
                checkpoint(log, top_name, errors)
            ck = threading.Thread(target=checkpoint, args=(log, top_name, errors))
            ck.start()
            time.sleep(rnd.uniform(0.0, 0.3))
            cut(args, log)
            ck.join()
        else:
            # "random": checkpoints now and then; "nockpt": none.
            while True:
                pause = rnd.uniform(0.1, 0.8)
                if now() + pause >= cut_at:
                    time.sleep(max(0.0, cut_at - now()))
                    break
                time.sleep(pause)
                if args.mode != "nockpt":
                    checkpoint(log, top_name, errors)
            cut(args, log)
        time.sleep(args.after)
    finally:
        stop.set()
        for t in threads:
            t.join()
    with open(args.log, "w") as f:
        json.dump({"ops": log.ops, "errors": errors, "chunk": args.chunk}, f)
    nw = {d: sum(1 for o in log.ops if o.get("dev") == d and "write" in o["op"])
          for d in ("top", "port")}
    nf = {d: sum(1 for o in log.ops if o.get("dev") == d and o["op"] == "flush")
          for d in ("top", "port")}
    nck = sum(1 for o in log.ops if o["op"] == "checkpoint")
    c = [o for o in log.ops if o["op"] == "cut"][0]
    print("# workload: %d top writes, %d top flushes, %d port writes, %d port flushes, "
          "%d checkpoints; cut at %.2fs (%.0f ms)" %
          (nw["top"], nf["top"], nw["port"], nf["port"], nck, c["t0"] - start,
           1000 * (c["t1"] - c["t0"])))
    for e in errors:
        print("not ok - workload error: %s" % e)
    return 1 if errors else 0


# ---------------------------------------------------------------------------
# The verifier.

def verify(args):
    with open(args.log) as f:
        L = json.load(f)
    with open(args.state) as f:
        st = json.load(f)
    T0, S0 = st["top"], st["sec"]
    ops = L["ops"]
    cutop = [o for o in ops if o["op"] == "cut"][0]
    top = read_dev(args.top)
    sec = read_dev(args.sec)
    if len(sec) < len(top) or len(T0) != len(top):
        print("not ok - device sizes changed")
        return 1
    if args.fault:
        rc = fault_errors(ops, cutop["t0"], args.fault == "slow")
        rc |= fault_state(ops, args.end_state, args.fault == "slow")
        end = max(o["t1"] for o in ops) + 1.0
        rc |= check(ops, top, sec, T0, S0, end, end, fault=True)
    else:
        rc = check(ops, top, sec, T0, S0, cutop["t0"], cutop["t1"])
    with open(args.state, "w") as f:
        json.dump({"top": top, "sec": sec[:len(top)]}, f)
    return rc


def fault_errors(ops, fault_t0, slow):
    """A fault under one device, not a power cut: nothing may fail before
    it, and nothing at all under a device that is only slow."""
    bad = [o for o in ops if o.get("ok") is False and (slow or o["t1"] < fault_t0)]
    for o in bad[:5]:
        print("not ok - %s %s failed %.3fs %s the fault" % (
            o["dev"], o["op"], abs(o["t1"] - fault_t0),
            "before" if o["t1"] < fault_t0 else "after"))
    return 1 if bad else 0


def fault_state(ops, st, slow):
    """The top's state at the end of a round with a fault: running under a
    slow device; otherwise running or failed, and failed when a flush or a
    checkpoint failed (a failed durable step puts the session in the failed
    mode)."""
    durable_failed = [o for o in ops if o["op"] in ("flush", "checkpoint") and not o["ok"]]
    if slow:
        want = {"running"}
    elif durable_failed:
        want = {"failed"}
    else:
        want = {"running", "failed"}
    if st in want:
        print("ok - state %s at the end of the workload (%d failed flushes or checkpoints)"
              % (st, len(durable_failed)))
        return 0
    print("not ok - state %s at the end of the workload, want %s (%d failed flushes or "
          "checkpoints)" % (st, " or ".join(sorted(want)), len(durable_failed)))
    return 1


def check(ops, top, sec, T0, S0, cut0, cut1, say=print, fault=False):
    """Rules (a)-(d) for a crash in [cut0, cut1] (CLOCK_MONOTONIC), with
    T0 and S0 what the top and the secondary device held when ops began and
    top and sec what they hold now (read_dev() lists).  Prints through say();
    returns 1 when a rule is broken.

    fault: the devices were reloaded after a fault under one of them, not a
    crash (cut0 = cut1 = after the last op): a write that failed may still
    have reached some of its sectors (a failed write leaves its range
    undefined).  A checkpoint whose message failed must have taken no effect:
    the faults used fail a write whole, so a failed header never lands."""
    fails = []

    def fail(msg):
        fails.append(msg)

    nsect = len(top)

    writes = {"top": [], "port": []}
    flushes = {"top": [], "port": []}
    for o in ops:
        if "write" in o["op"]:
            writes[o["dev"]].append(o)
        elif o["op"] == "flush" and o["ok"]:
            flushes[o["dev"]].append(o)
    cks = sorted((o for o in ops if o["op"] == "checkpoint" and o["ok"]),
                 key=lambda o: o["t0"])
    by_id = {}
    per_sector = {"top": [[] for _ in range(nsect)], "port": [[] for _ in range(nsect)]}
    for d in ("top", "port"):
        writes[d].sort(key=lambda o: o["id"])
        for o in writes[d]:
            by_id[o["id"]] = o
            for s in range(o["s"], o["s"] + o["n"]):
                per_sector[d][s].append(o)

    # a completed write is flushed by a flush that began after it and
    # returned before the cut: by the latest-starting such flush, if any
    last_flush = {d: max([f["t0"] for f in flushes[d] if f["t1"] < cut0], default=None)
                  for d in flushes}

    def durable(o, dev):
        """The contract says this completed write must be on disk."""
        if not o["ok"] or o["t1"] >= cut0:
            return False
        if o["op"] == "syncwrite":
            return True
        lf = last_flush[dev]
        return lf is not None and o["t1"] < lf

    def may_exist(o):
        return (o["ok"] or fault) and o["t0"] < cut1

    def describe(v):
        if v == 0:
            return "zero (never written)"
        if isinstance(v, str):
            return v
        o = by_id.get(v)
        if not o:
            return "op %d of an earlier round" % v
        return "%s %s %d [%d+%d] t=%.3f..%.3f" % (o["dev"], o["op"], v, o["s"], o["n"],
                                                o["t0"] - cut0, o["t1"] - cut0)

    # ---- the secondary device (d) ----
    sec_bad = 0
    for s in range(nsect):
        v = sec[s]
        allowed = {S0[s]} | {o["id"] for o in per_sector["port"][s] if may_exist(o)}
        need = [o["id"] for o in per_sector["port"][s] if durable(o, "port")]
        if isinstance(v, str) or v not in allowed:
            if sec_bad < 5:
                fail("secondary sector %d holds %s: not a port write that can be there"
                     % (s, describe(v)))
            sec_bad += 1
        elif need and v < max(need):
            if sec_bad < 5:
                fail("secondary sector %d holds %s, but flushed port write %s is lost"
                     % (s, describe(v), describe(max(need))))
            sec_bad += 1
    if sec_bad:
        fail("%d secondary sectors wrong" % sec_bad)

    # ---- the top device: which checkpoint is the durable one? ----
    # (c): every checkpoint that returned before the cut began is durable;
    # one that started before the cut ended may be.
    k_min = -1
    k_max = -1
    for j, c in enumerate(cks):
        if c["t1"] < cut0:
            k_min = j
        if c["t0"] < cut1:
            k_max = j

    def port_base(s, c):
        """What the secondary device may have held at checkpoint c."""
        ws = per_sector["port"][s]
        before = [o for o in ws if o["ok"] and o["t1"] < c["t0"]]
        base = {before[-1]["id"]} if before else {S0[s]}
        base |= {o["id"] for o in ws if o["ok"] and o["t0"] < c["t1"] and o["t1"] >= c["t0"]}
        if fault:	# a failed port write may have left any of its sectors
            base |= {o["id"] for o in ws if not o["ok"] and o["t0"] < c["t1"]}
        return base

    def check_top(k):
        """Explain the whole top with checkpoint k (-1: none of this round)."""
        errs = []
        c = cks[k] if k >= 0 else None
        nxt = cks[k + 1] if k + 1 < len(cks) else None
        for s in range(nsect):
            v = top[s]
            if isinstance(v, str):
                errs.append(("bad sector", "top sector %d: %s" % (s, v)))
                continue
            base = port_base(s, c) if c else {T0[s]}
            mine = []
            tops = set()
            allowed = set(base)
            for o in per_sector["top"][s]:
                if not may_exist(o):
                    continue
                if c and o["t1"] < c["t0"]:
                    continue		# an earlier epoch's, dropped by c
                if nxt and o["t0"] > nxt["t1"]:
                    continue		# the next epoch's
                allowed.add(o["id"])
                tops.add(o["id"])
                # (a): durable when in this epoch for sure
                if durable(o, "top") and (not c or o["t0"] > c["t1"]) and \
                        (not nxt or o["t1"] < nxt["t0"]):
                    mine.append(o["id"])
            if v not in allowed:
                if by_id.get(v, {}).get("dev") == "port":
                    cat = "port write of the epoch shown"
                else:
                    cat = "unexpected version"
                errs.append((cat, "top sector %d holds %s; allowed: %s" % (
                    s, describe(v), ", ".join(describe(a) for a in sorted(allowed)))))
            elif mine and not (v in tops and v >= max(mine)):
                errs.append(("flushed top write lost",
                             "top sector %d holds %s, but flushed top write %s is lost" % (
                                 s, describe(v), describe(max(mine)))))
        return errs

    results = {}
    for k in range(k_min, k_max + 1):
        results[k] = check_top(k)
    good = [k for k, e in results.items() if not e]
    if good:
        k = good[-1]
        what = "no checkpoint of this round" if k < 0 else "checkpoint %d of %d" % (k + 1, len(cks))
        amb = [j for j in range(k_min + 1, k_max + 1)]
        extra = ""
        if amb:
            extra = " (ambiguous: checkpoint(s) %s raced the cut; loaded %s)" % (
                ",".join(str(j + 1) for j in amb),
                "the new epoch" if k > k_min else "the old epoch")
        if amb and len(good) > 1:
            extra = " (ambiguous: checkpoint(s) %s raced the cut; the data fits both epochs)" % (
                ",".join(str(j + 1) for j in amb))
        say("ok - top explained by %s%s" % (what, extra))
    else:
        for k, e in results.items():
            cats = {}
            for cat, msg in e:
                cats.setdefault(cat, []).append(msg)
            fail("top not explained by %s: %d sectors wrong (%s)" % (
                "no checkpoint of this round" if k < 0 else "checkpoint %d" % (k + 1),
                len(e), ", ".join("%s: %d" % (c, len(m)) for c, m in cats.items())))
            for cat, msgs in cats.items():
                say("#   e.g. " + "\n#   e.g. ".join(msgs[:2]))

    if not sec_bad:
        say("ok - secondary device: every flushed port write present, nothing unexpected")
    for m in fails:
        say("not ok - " + m)
    n_top = sum(1 for v in top if v != 0)
    say("# top: %d written sectors; secondary: %d; durable-required top writes: %d, port: %d" % (
        n_top, sum(1 for v in sec if v != 0),
        sum(1 for o in writes["top"] if durable(o, "top")),
        sum(1 for o in writes["port"] if durable(o, "port"))))

    return 1 if fails else 0


def init(args):
    sec = read_dev(args.sec)
    bad = [v for v in sec if isinstance(v, str)]
    if bad:
        print("not ok - secondary device holds %s" % bad[0])
        return 1
    with open(args.state, "w") as f:
        json.dump({"top": sec, "sec": sec}, f)
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["work", "verify", "init"])
    p.add_argument("--top")
    p.add_argument("--port")
    p.add_argument("--sec")
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mode", default="random", choices=["random", "nockpt", "ckpt-cut"])
    p.add_argument("--log")
    p.add_argument("--state")
    p.add_argument("--cut", help="the power cut: a shell command")
    p.add_argument("--cut-dm", help="the power cut: resume this dm device (its "
                   "inactive table loaded) with one ioctl")
    p.add_argument("--id-base", type=int, default=0)
    p.add_argument("--duration", type=float, default=2.5)
    p.add_argument("--after", type=float, default=0.4)
    p.add_argument("--hot", type=int, default=48)
    p.add_argument("--fault", choices=["error", "slow"],
                   help="verify: the round put a fault under one device "
                   "(error: it failed I/O; slow: it only delayed it) instead "
                   "of cutting the power; every write acknowledged durable "
                   "must be there")
    p.add_argument("--end-state", help="verify --fault: the top's state when "
                   "the workload ended")
    p.add_argument("--top-flush", type=float, default=0.12,
                   help="share of the top's operations that are fdatasync")
    args = p.parse_args()
    return {"work": work, "verify": verify, "init": init}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
