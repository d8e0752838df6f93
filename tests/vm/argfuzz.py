#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Hostile-argument fuzz of replication table lines and messages.

  argfuzz.py CASES MSGS DISK...   (4 scratch disks; seed from DMR_FUZZ_SEED)

Table cases: a valid line of one mode (secondary, port, primary), mutated
(random tokens, odd numbers, missing and extra words, lying feature counts,
unknown and duplicate features, missing, tiny, wrong-size and repeated
devices, a second top, a port over the wrong device or without a top, an
underlying device that turns to errors or shrinks between load and resume).
Each case ends either refused (the ioctl fails and the kernel logged a
"replication" reason) or working (resume, read, write, status, remove).

Message cases: random and mutated messages to live tops, ports and
primaries in every state they reach; each succeeds or fails with a reason
logged, and status stays parseable.  Any kernel splat stops the run.

Prints "# N cases: A accepted, R refused (all with a reason), 0 splats";
exit 1 on any violation.
"""
import mmap
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmioctl import DM, Kmsg  # noqa: E402

SPLAT = re.compile(r"BUG|WARNING|Oops|KASAN|lockdep|hung task|"
                   r"blocked for more than|general protection|Call Trace")
STATUS = {
    "secondary": re.compile(r"^secondary (running|failover|failover_failed|done|failed)"
                            r" \d+ \d+/\d+ \d+/\d+ \d+ \d+$"),
    "port": re.compile(r"^port (running|failover|failover_failed|done|failed|unloaded) \d+$"),
    "primary": re.compile(r"^primary (running|syncing|degraded|done) \d+ \d+ \d+/\d+$"),
}

dm = DM()
kmsg = Kmsg()
rnd = random.Random()
stats = dict(cases=0, accepted=0, refused=0, noreason=0, resume_refused=0,
             msgs=0, msg_ok=0, msg_refused=0, msg_noreason=0, bad=0,
             splats=0)
BUF = mmap.mmap(-1, 4096)
NODES = {}


def fail(what):
    stats["bad"] += 1
    print("not ok - %s" % what, flush=True)
    if stats["bad"] > 20:
        report()
        sys.exit(1)


def check_splat(where):
    lines = kmsg.drain()
    for ln in lines:
        if SPLAT.search(ln):
            print("not ok - kernel splat after %s: %s" % (where, ln), flush=True)
            for more in lines + kmsg.drain():
                print("#   " + more)
            stats["bad"] += 1
            stats["splats"] += 1
            report()
            sys.exit(1)
    return lines


def node(name, devno):
    """A device node for the dm device (there is no udev)."""
    path = "/dev/dm-%d" % devno[1]
    if not os.path.exists(path):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "n-" + name)
        if os.path.exists(path):
            os.unlink(path)
        os.mknod(path, 0o600 | 0o060000, os.makedev(*devno))
    return path


def mk(name, table):
    """Create a dm device with a table of (start, len, type, params)."""
    devno = dm.create_live(name, table)
    NODES[name] = (devno, node(name, devno))
    return NODES[name]


def rm(name):
    for _ in range(50):
        try:
            dm.remove(name)
            return
        except OSError as e:
            if e.errno == 6:  # ENXIO: gone
                return
            time.sleep(0.05)
    fail("cannot remove %s" % name)


def blank(path):
    BUF.seek(0)
    BUF.write(bytes(4096))
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        os.pwrite(fd, BUF, 0)
    finally:
        os.close(fd)


def small_io(path, length):
    """A read, a write, a read: errors are fine, hangs and splats are not."""
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        off = rnd.randrange(max(1, length // 8)) * 4096 if length >= 8 else 0
        try:
            os.preadv(fd, [BUF], off)
            BUF.seek(0)
            BUF.write(rnd.randbytes(4096))
            os.pwritev(fd, [BUF], off)
            os.fsync(fd)
            os.preadv(fd, [BUF], off)
        except OSError:
            pass
    finally:
        os.close(fd)


# ---- fixtures -----------------------------------------------------------------
MIB = 2048
def setup(disks):
    a, b, c, d = disks
    lay = {
        "sec0": (a, 0, 16 * MIB), "sec1": (a, 16 * MIB, 16 * MIB),
        "secs": (a, 32 * MIB, 8 * MIB), "vanish": (a, 40 * MIB, 16 * MIB),
        "hid0": (b, 0, 8 * MIB), "hid1": (b, 8 * MIB, 8 * MIB),
        "tiny": (b, 16 * MIB, 8), "mid": (b, 17 * MIB, 48),
        "act0": (c, 0, 8 * MIB), "act1": (c, 8 * MIB, 8 * MIB),
        "loc": (d, 0, 16 * MIB), "rem": (d, 16 * MIB, 16 * MIB),
        "rems": (d, 32 * MIB, 8 * MIB), "meta": (d, 40 * MIB, 8),
        "metab": (d, 41 * MIB, 64),
    }
    dev = {}
    for name, (disk, off, ln) in lay.items():
        n = "fz-" + name
        if dm.exists(n):
            rm(n)
        devno, path = mk(n, [(0, ln, "linear", "%s %d" % (disk, off))])
        dev[name] = dict(len=ln, path=path, num="%d:%d" % devno, disk=disk,
                         off=off, dm=n)
    return dev


def ref(dev, name):
    """A device argument: its path or its major:minor, at random."""
    return dev[name]["path"] if rnd.random() < 0.5 else dev[name]["num"]


NUMBERS = ["0", "1", "-1", "-8", "8", "16", "7", "12", "4096", "2048", "0x10",
           "010", "08", "+8", "8k", "1e3", "4294967295", "4294967296",
           "18446744073709551615", "18446744073709551616",
           "340282366920938463463374607431768211456", "9" * 40, "2097152",
           "4194304", "64", "65", "1024", " ", "\t8", "8\t"]
WORDS = ["secondary", "port", "primary", "SECONDARY", "low_water_mark",
         "metadata", "region_size", "sync_all", "bogus", "x", "checkpoint",
         "/dev/nonexistent", "/dev/null", "0:0", "253:4095", "4095:1048575",
         "/dev/mapper/control", "/", "", "\xe9", "a" * 300]


def token(dev):
    r = rnd.random()
    if r < 0.4:
        return rnd.choice(NUMBERS)
    if r < 0.7:
        return rnd.choice(WORDS)
    return ref(dev, rnd.choice(list(dev)))


def mutate(words, dev):
    for _ in range(rnd.choice([0, 1, 1, 1, 2, 2, 3, 5])):
        op = rnd.randrange(7)
        i = rnd.randrange(len(words) + 1)
        if op == 0 and words:
            words[min(i, len(words) - 1)] = token(dev)
        elif op == 1 and words:
            del words[min(i, len(words) - 1)]
        elif op == 2:
            words.insert(i, token(dev))
        elif op == 3 and words:
            words.insert(i, words[min(i, len(words) - 1)])
        elif op == 4:
            words[i:] = []
        elif op == 5:
            words.append(token(dev))
        else:  # a feature count that lies
            for j, w in enumerate(words):
                if w.isdigit() and j >= 3:
                    words[j] = str(rnd.choice([0, 1, 2, 3, 5, 6, 255, 2**32]))
                    break
    return words


def secondary_line(dev):
    s = rnd.choice(["sec0", "sec0", "sec1", "secs"])
    h, a = rnd.choice([("hid0", "act0"), ("hid1", "act1")] * 4 + [("act0", "hid0"),
                       ("hid0", "act1"), ("mid", "act0"), ("hid0", "tiny"),
                       ("hid1", "hid1"), (s, "act1")])
    w = ["secondary", ref(dev, s), ref(dev, h), ref(dev, a),
         rnd.choice(["8", "8", "16", "64", "2048"])]
    feats = rnd.choice([[], [], ["low_water_mark", str(rnd.randrange(100))],
                        ["low_water_mark", "4", "low_water_mark", "5"],
                        ["sync_all"], ["region_size", "8"]])
    if feats or rnd.random() < 0.5:
        w += [str(len(feats))] + feats
    return s, w


def primary_line(dev):
    lo, re_ = rnd.choice([("loc", "rem")] * 8 + [("loc", "rems"),
                          ("loc", "loc"), ("rem", "loc"), ("sec1", "rem")])
    w = ["primary", ref(dev, lo), ref(dev, re_)]
    feats = []
    for f in rnd.sample(["metadata", "region_size", "sync_all",
                         "low_water_mark", "metadata"], rnd.randrange(4)):
        if f == "metadata":
            feats += [f, ref(dev, rnd.choice(["meta", "metab", "metab", "loc",
                                              "rem", "tiny"]))]
        elif f == "region_size":
            feats += [f, rnd.choice(["8", "1024", "16384", "12", "0",
                                     "2097152", "4194304"])]
        elif f == "low_water_mark":
            feats += [f, "4"]
        else:
            feats.append(f)
    if feats or rnd.random() < 0.5:
        w += [str(len(feats))] + feats
    return lo, w


def fresh_stores(dev, pairs=(("hid0", "act0"), ("hid1", "act1"))):
    for h, a in pairs:
        blank(dev[h]["path"])
        blank(dev[a]["path"])


WHY = {}


def reason(lines, kind="table"):
    r = [ln for ln in lines if "device-mapper:" in ln and "replication" in ln
         and "Unknown error" not in ln]
    for ln in r[:1]:
        k = kind + ": " + re.sub(r"^.*?replication: (fz-\S+: )?", "", ln)[:60]
        WHY[k] = WHY.get(k, 0) + 1
    return r


def vanish(dev, name):
    """Make an underlying device fail or shrink under a loaded table."""
    d = dev[name]
    try:
        dm.remove(d["dm"])
        fail("removed %s while a loaded table holds it" % d["dm"])
        mk(d["dm"], [(0, d["len"], "linear", "%s %d" % (d["disk"], d["off"]))])
        return
    except OSError:
        pass  # EBUSY: the table holds it
    if rnd.random() < 0.5:
        t = [(0, d["len"], "error", "")]
    else:
        t = [(0, max(8, d["len"] // 2), "linear", "%s %d" % (d["disk"], d["off"]))]
    dm.load(d["dm"], t)
    dm.suspend(d["dm"])
    dm.resume(d["dm"])


def restore(dev, name):
    d = dev[name]
    dm.load(d["dm"], [(0, d["len"], "linear", "%s %d" % (d["disk"], d["off"]))])
    dm.suspend(d["dm"])
    dm.resume(d["dm"])


def table_case(dev, n):
    mode = rnd.choice(["secondary", "secondary", "port", "primary", "primary"])
    made = []          # fixture devices of this case, removed at its end
    if rnd.random() < 0.4:
        fresh_stores(dev)
    sec = "sec0"
    if mode == "secondary":
        sec, w = secondary_line(dev)
        if rnd.random() < 0.1:  # a second top over the same secondary
            made.append("fz-ftop")
            try:
                mk("fz-ftop", [(0, dev[sec]["len"], "replication",
                                "secondary %s %s %s 8" % (dev[sec]["num"],
                                                         dev["hid1"]["num"],
                                                         dev["act1"]["num"]))])
            except OSError:
                made.pop()
    elif mode == "port":
        sec = rnd.choice(["sec0", "sec0", "sec1", "hid0"])
        w = ["port", ref(dev, sec)]
        if rnd.random() < 0.7:  # its top (else a port with no top)
            made.append("fz-ftop")
            try:
                mk("fz-ftop", [(0, dev["sec0"]["len"], "replication",
                                "secondary %s %s %s 8" % (dev["sec0"]["num"],
                                                         dev["hid0"]["num"],
                                                         dev["act0"]["num"]))])
            except OSError:
                made.pop()
            if made and rnd.random() < 0.1:
                made.append("fz-fport")
                try:
                    mk("fz-fport", [(0, dev["sec0"]["len"], "replication",
                                     "port " + dev["sec0"]["num"])])
                except OSError:
                    made.pop()
    else:
        sec, w = primary_line(dev)
    base = dev[sec]["len"] if sec in dev else 16 * MIB
    length = rnd.choice([base] * 30 + [base + 8, base - 8, 8, 9, base * 2,
                                      2**40, 1])
    if rnd.random() < 0.45:
        w = mutate(w, dev)
    line = " ".join(w)
    name = "fz-case"
    stats["cases"] += 1
    kmsg.drain()
    devno = dm.create(name)
    try:
        dm.load(name, [(0, length, "replication", line)])
    except OSError as e:
        stats["refused"] += 1
        if not reason(check_splat("load of '%s'" % line)):
            stats["noreason"] += 1
            fail("refused without a reason (%s): %d %s" % (e, length, line))
        rm(name)
        for m in reversed(made):
            rm(m)
        return
    # Loaded: maybe an underlying device changes before the resume.
    gone = None
    if rnd.random() < 0.08:
        gone = rnd.choice([x for x in ("sec0", "hid0", "act0", "loc", "rem")
                           if dev[x]["num"] in line or dev[x]["path"] in line]
                          or [None])
        if gone:
            vanish(dev, gone)
    try:
        dm.resume(name)
    except OSError as e:
        stats["refused"] += 1
        stats["resume_refused"] += 1
        log = check_splat("resume of '%s'" % line)
        # A device that shrank under the loaded table: dm itself says why.
        if not reason(log) and not (gone and [ln for ln in log
                                              if "device-mapper:" in ln]):
            stats["noreason"] += 1
            fail("resume refused without a reason (%s): %d %s (gone: %s): %s"
                 % (e, length, line, gone, " | ".join(log)))
        try:
            dm.clear(name)
        except OSError:
            pass
        rm(name)
    else:
        stats["accepted"] += 1
        st = dm.status(name)
        text = st[0][3] if st else ""
        m = STATUS.get(text.split(" ")[0])
        if not m or not m.match(text):
            fail("unparseable status '%s' of '%s'" % (text, line))
        small_io(node(name, devno), length)
        dm.status(name)
        check_splat("I/O on '%s'" % line)
        rm(name)
    for m in reversed(made):
        rm(m)
    if gone:
        restore(dev, gone)
    check_splat("case %d" % n)


# ---- messages ----------------------------------------------------------------
SEC_MSGS = ["checkpoint"] * 6 + ["commit_depth 8"] * 3 + [
            "checkpoint", "stop", "failover", "commit_depth 8", "commit_depth 1",
            "commit_depth 64", "commit_depth 0", "commit_depth 65",
            "commit_depth -1", "commit_depth 0x8", "commit_depth 18446744073709551617",
            "checkpoint now", "commit_depth", "commit_depth 8 8", "bogus",
            "sync_rate 100", "CHECKPOINT", "failover failover", "stop 1"]
PRI_MSGS = ["checkpoint"] * 6 + ["sync_rate 0"] * 3 + [
            "checkpoint", "stop", "sync_rate 0", "sync_rate 1000",
            "sync_rate -1", "sync_rate 4294967296", "sync_rate 0x10",
            "sync_rate", "sync_rate 1 2", "checkpoint x", "failover",
            "commit_depth 8", "bogus", "stop stop"]


def message_text(pool, dev):
    w = rnd.choice(pool).split(" ")
    if rnd.random() < 0.3:
        w = mutate(w, dev)
    return " ".join(w)


def msg_fixtures(dev):
    """top+port (running), a primary; their states then drift with messages."""
    for n in ("fz-mport", "fz-mtop", "fz-mpri"):
        if dm.exists(n):
            rm(n)
    fresh_stores(dev, (("hid0", "act0"),))
    S = dev["sec0"]["len"]
    mk("fz-mtop", [(0, S, "replication", "secondary %s %s %s 8" % (
        dev["sec0"]["num"], dev["hid0"]["num"], dev["act0"]["num"]))])
    mk("fz-mport", [(0, S, "replication", "port " + dev["sec0"]["num"])])
    feats = rnd.choice(["0", "1 sync_all", "2 metadata %s" % dev["metab"]["num"]])
    mk("fz-mpri", [(0, dev["loc"]["len"], "replication", "primary %s %s %s" % (
        dev["loc"]["num"], dev["rem"]["num"], feats))])
    for n in ("fz-mtop", "fz-mport", "fz-mpri"):
        small_io(NODES[n][1], 8 * MIB)


def message_case(dev, n):
    target = rnd.choice(["fz-mtop"] * 5 + ["fz-mport"] + ["fz-mpri"] * 4)
    text = message_text(PRI_MSGS if target == "fz-mpri" else SEC_MSGS, dev)
    if not text.strip() or text.lstrip().startswith("@"):
        text = "bogus"
    stats["msgs"] += 1
    kmsg.drain()
    try:
        dm.message(target, text)
        stats["msg_ok"] += 1
    except OSError as e:
        stats["msg_refused"] += 1
        log = check_splat("message '%s'" % text)
        reason(log, "message")
        if not [ln for ln in log if "device-mapper:" in ln]:
            stats["msg_noreason"] += 1
            fail("message '%s' to %s failed without a reason: %s" % (text, target, e))
    for t in ("fz-mtop", "fz-mport", "fz-mpri"):
        st = dm.status(t)
        text2 = st[0][3]
        if not STATUS[text2.split(" ")[0]].match(text2):
            fail("unparseable status of %s after '%s': %s" % (t, text, text2))
    if rnd.random() < 0.05:
        small_io(NODES[target][1], 8 * MIB)
    if rnd.random() < 0.03:  # the remote fails: the primary degrades
        vanish(dev, "rem")
        small_io(NODES["fz-mpri"][1], 8 * MIB)
        restore(dev, "rem")
    check_splat("message %d" % n)


def report():
    s = stats
    for k, v in sorted(WHY.items(), key=lambda kv: -kv[1])[:25]:
        print("#   %5d %s" % (v, k))
    print("# %d cases: %d accepted, %d refused (%s), %d splats" % (
        s["cases"] + s["msgs"], s["accepted"] + s["msg_ok"],
        s["refused"] + s["msg_refused"],
        "all with a reason" if not s["noreason"] + s["msg_noreason"] else
        "%d without a reason" % (s["noreason"] + s["msg_noreason"]),
        s["splats"]),
        flush=True)
    print("# %d table lines: %d accepted, %d refused (%d at resume); "
          "%d messages: %d ok, %d refused (%d without a reason)"
          % (s["cases"], s["accepted"], s["refused"], s["resume_refused"],
             s["msgs"], s["msg_ok"], s["msg_refused"], s["msg_noreason"]),
          flush=True)


def main(argv):
    cases, msgs, disks = int(argv[0]), int(argv[1]), argv[2:6]
    seed = int(os.environ.get("DMR_FUZZ_SEED") or random.randrange(2**32))
    print("# seed %d (DMR_FUZZ_SEED=%d to repeat)" % (seed, seed), flush=True)
    rnd.seed(seed)
    dev = setup(disks)
    t0 = time.monotonic()
    for n in range(cases):
        table_case(dev, n)
    print("# table cases: %.0fs" % (time.monotonic() - t0), flush=True)
    t0 = time.monotonic()
    for n in range(msgs):
        if n % 150 == 0:
            msg_fixtures(dev)
        message_case(dev, n)
    print("# message cases: %.0fs" % (time.monotonic() - t0), flush=True)
    for n in ("fz-mport", "fz-mtop", "fz-mpri"):
        if dm.exists(n):
            rm(n)
    for d in dev.values():
        rm(d["dm"])
    check_splat("the end")
    report()
    return 1 if stats["bad"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
