#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Faults on every device: each fault under each device, one fixed workload,
and the outcome of every step compared with the table in
Documentation/replication.rst ("Faults on every device").

  fault_matrix.py secondary DISK       the secondary's matrix
  fault_matrix.py primary DISK         the primary's matrix
  FM_ONLY="act:error_writes" ...      one or more combinations only
  FM_PRINT=1 ...                      print the outcomes, expect nothing

DISK is a scratch disk; the devices are dm-linear slices of it, each under a
wrapper (dm-linear while healthy) whose table the fault replaces, live.

Faults (the wrapper's table while it is on):
  error_writes  dm-flakey, always down, error_writes: writes and flushes fail
  drop_writes   dm-flakey, always down, drop_writes: writes vanish, succeed
  corrupt_reads dm-flakey, always down, corrupt_bio_byte 1 r 255: the first
                byte of every read is 0xff
  error         dm-error: every bio fails
  delay         dm-delay, 50 ms on every bio

Each outcome is one word per step: "ok", "EIO" (the step failed), "bad" (a
read returned other data than the model's), or a state for the state steps.
The workload, with the fault on from its first step:

  secondary (4 KiB chunks; before the fault: top wrote chunk 1, the port chunk
  2, both fsync'ed)
    r_sec     top read of chunk 10 (on the secondary device)
    r_act     top read of chunk 1 (in active)
    r_hid     top read of chunk 2 (its old content, in hidden)
    w_new     top write of chunk 20 (a new record in active)
    fs_top    fsync of the top
    w_map     top write of chunk 1 again (mapped: no record)
    p_new     port write of chunk 30 (a copy into hidden first)
    fs_port   fsync of the port
    ckpt      the checkpoint message
    st        the top's state
    then the wrapper goes back to dm-linear:
    fo        the failover message, and the state it ends in ("done",
              "failover_failed" or "failed"; within 60 s)
    rl        a reload of the same top table: its state after, or "EIO"
    and in a second session, a failover under the fault (top wrote chunks
    40-79, the port chunks 60-119; the top suspended, failover sent, the
    fault put on, the top resumed: the merge runs under it):
    fo_f      the state the merge ends in ("done", "failover_failed",
              "failed"; within 60 s)
    fo_rt     the fault removed, the retries the documentation gives for
              each state ("failover" for failover_failed, a reload for
              failed, which may load failover_failed), and the end: "done" when the top and the secondary device both
              hold the model (the top's writes over the secondary's old
              content), "bad" when they hold something else
  primary (region 4 KiB; the remote a separate slice)
    r         read of block 3
    w         write of block 5
    fs        fsync
    ckpt      the checkpoint message
    st        the state
    then the wrapper goes back to dm-linear:
    rl        a reload of the same table, and the state it settles in
              ("running" after a resync, within 60 s)
"""
import mmap
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dmmsg  # noqa: E402

BS = 4096
FAULTS = ["error_writes", "drop_writes", "corrupt_reads", "error", "delay"]

# The documented outcomes (Documentation/replication.rst, "Faults on every
# device"): device -> fault -> the steps' words, in the order above.
SEC_STEPS = ("r_sec r_act r_hid w_new fs_top w_map p_new fs_port ckpt st fo rl"
             " fo_f fo_rt")
PRI_STEPS = "r w fs ckpt st rl"
EXPECT = {
    # secondary device
    # fo_f: the merge's first cursor write (its flush of the secondary
    # device fails: failed) races the first copy's write (failover_failed):
    # which meets the fault first depends on how long the resume takes after
    # the failover message (DMR_CURSOR_PERIOD, 250 ms, counts from it).
    ("sec", "error_writes"):
        "ok ok ok ok ok ok EIO EIO EIO failed failed running"
        " failed|failover_failed done",
    ("sec", "drop_writes"):
        "ok ok ok ok ok ok ok ok ok running done done done bad",
    ("sec", "corrupt_reads"):
        "bad ok ok ok ok ok ok ok ok running done done done done",
    ("sec", "error"):
        "EIO ok ok ok ok ok EIO ok ok running done done failover_failed done",
    ("sec", "delay"):
        "ok ok ok ok ok ok ok ok ok running done done done done",
    # hidden
    ("hid", "error_writes"):
        "ok ok ok ok ok ok EIO ok EIO failed failed running failed done",
    ("hid", "drop_writes"):
        "ok ok ok ok ok ok ok ok ok running done done done done",
    ("hid", "corrupt_reads"):
        "ok ok bad ok ok ok ok ok ok running done done done bad",
    ("hid", "error"):
        "ok ok EIO ok ok ok EIO ok EIO failed failed running failed done",
    ("hid", "delay"):
        "ok ok ok ok ok ok ok ok ok running done done done done",
    # active
    ("act", "error_writes"):
        "ok ok ok EIO EIO EIO EIO EIO EIO failed failed running failed done",
    ("act", "drop_writes"):
        "ok ok ok ok ok ok ok ok ok running done done done done",
    ("act", "corrupt_reads"):
        "ok bad ok ok ok ok ok ok ok running done done done bad",
    ("act", "error"):
        "ok EIO ok EIO ok EIO ok ok ok failed failed running failed done",
    ("act", "delay"):
        "ok ok ok ok ok ok ok ok ok running done done done done",
    # a primary's local device
    ("local", "error_writes"): "ok EIO EIO ok running running",
    ("local", "drop_writes"): "ok ok ok ok running running",
    ("local", "corrupt_reads"): "bad ok ok ok running running",
    ("local", "error"): "EIO EIO ok ok running running",
    ("local", "delay"): "ok ok ok ok running running",
    # its remote
    ("remote", "error_writes"): "ok ok ok EIO degraded running",
    ("remote", "drop_writes"): "ok ok ok ok running running",
    ("remote", "corrupt_reads"): "ok ok ok ok running running",
    ("remote", "error"): "ok ok ok EIO degraded running",
    ("remote", "delay"): "ok ok ok ok running running",
    # its metadata device (the out-of-sync log)
    ("meta", "error_writes"): "ok EIO ok ok running running",
    ("meta", "drop_writes"): "ok ok ok ok running running",
    ("meta", "corrupt_reads"): "ok ok ok ok running running",
    ("meta", "error"): "ok EIO ok ok running running",
    ("meta", "delay"): "ok ok ok ok running running",
}


def sh(*args, check=True):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if check and r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def dm(*args, check=True):
    return sh("dmsetup", *args, check=check)


def exists(name):
    return dm("info", name, check=False).returncode == 0


def remove(*names):
    for n in names:
        if exists(n):
            dm("remove", n)


def status(name):
    """The words of a replication target's status after its mode."""
    return dm("status", name).stdout.split()[4:]


def state(name):
    try:
        return status(name)[0]
    except (RuntimeError, IndexError):
        return "gone"


def block(tag, n):
    """A 4 KiB block that names its tag and number."""
    head = ("%s-%d-" % (tag, n)).encode()
    return (head * (BS // len(head) + 1))[:BS]


class Dev:
    """O_DIRECT block I/O on one device; every step gives a word."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_DIRECT)
        self.buf = mmap.mmap(-1, BS)

    def close(self):
        os.close(self.fd)

    def read(self, n, want):
        try:
            got = os.preadv(self.fd, [self.buf], n * BS)
        except OSError:
            return "EIO"
        return "ok" if got == BS and self.buf[:] == want else "bad"

    def write(self, n, data):
        self.buf[:] = data
        try:
            os.pwritev(self.fd, [self.buf], n * BS)
        except OSError:
            return "EIO"
        return "ok"

    def fsync(self):
        try:
            os.fsync(self.fd)
        except OSError:
            return "EIO"
        return "ok"


def message(name, text):
    fd = os.open("/dev/mapper/control", os.O_RDWR)
    try:
        dmmsg.message(fd, name, text)
        return "ok"
    except OSError:
        return "EIO"
    finally:
        os.close(fd)


def wait_state(name, wanted, secs):
    end = time.monotonic() + secs
    while True:
        s = state(name)
        if s in wanted or time.monotonic() > end:
            return s
        time.sleep(0.1)


class Rig:
    """Slices of DISK, each under a wrapper; LAYOUT: name -> sectors."""

    def __init__(self, disk, layout):
        self.len = dict(layout)
        self.under = {}
        start = 0
        for name, n in layout:
            under = "fm_" + name
            dm("create", under, "--table", "0 %d linear %s %d" % (n, disk, start))
            self.under[name] = "/dev/mapper/" + under
            start += n
            dm("create", "fm" + name, "--table", self.table(name, "linear"))

    def path(self, name):
        return "/dev/mapper/fm" + name

    def table(self, name, fault):
        n, u = self.len[name], self.under[name]
        return {
            "linear": "0 %d linear %s 0" % (n, u),
            "error_writes": "0 %d flakey %s 0 0 1 1 error_writes" % (n, u),
            "drop_writes": "0 %d flakey %s 0 0 1 1 drop_writes" % (n, u),
            "corrupt_reads": "0 %d flakey %s 0 0 1 5 corrupt_bio_byte 1 r 255 0"
                             % (n, u),
            "error": "0 %d error" % n,
            "delay": "0 %d delay %s 0 50" % (n, u),
        }[fault]

    def set(self, name, fault):
        dm("load", "fm" + name, "--table", self.table(name, fault))
        dm("resume", "fm" + name)

    def fill(self, name, tag):
        d = Dev(self.path(name))
        for i in range(self.len[name] * 512 // BS):
            d.write(i, block(tag, i))
        d.fsync()
        d.close()

    def zero_head(self, name):
        d = Dev(self.path(name))
        d.write(0, bytes(BS))
        d.fsync()
        d.close()


SEC_LEN = 2048          # 1 MiB: 256 chunks


def new_session(rig):
    """A new session: the secondary stamped, both stores blank, the top and
    the port made.  Returns the top's table and both devices, open."""
    s, h, a = rig.path("sec"), rig.path("hid"), rig.path("act")
    rig.fill("sec", "s")
    rig.zero_head("hid")
    rig.zero_head("act")
    table = "0 %d replication secondary %s %s %s 8" % (SEC_LEN, s, h, a)
    dm("create", "fmtop", "--table", table)
    dm("create", "fmport", "--table", "0 %d replication port %s" % (SEC_LEN, s))
    return table, Dev("/dev/mapper/fmtop"), Dev("/dev/mapper/fmport")


def secondary_case(rig, dev, fault):
    table, top, port = new_session(rig)
    out = []
    try:
        assert top.write(1, block("t", 1)) == "ok"
        assert port.write(2, block("p", 2)) == "ok"
        assert top.fsync() == "ok" and port.fsync() == "ok"
        rig.set(dev, fault)
        out.append(top.read(10, block("s", 10)))
        out.append(top.read(1, block("t", 1)))
        out.append(top.read(2, block("s", 2)))
        out.append(top.write(20, block("t", 20)))
        out.append(top.fsync())
        out.append(top.write(1, block("u", 1)))
        out.append(port.write(30, block("p", 30)))
        out.append(port.fsync())
        out.append(message("fmtop", "checkpoint"))
        # A suspend returns when active's header (a checkpoint's worker) is
        # written, and its failure shows.
        dm("suspend", "fmtop")
        dm("resume", "fmtop")
        out.append(state("fmtop"))
    finally:
        top.close()
        port.close()
        rig.set(dev, "linear")
    dm("remove", "fmport")
    out.append(message("fmtop", "failover") == "ok" and
               wait_state("fmtop", ("done", "failover_failed", "failed"), 60)
               or state("fmtop"))
    r = dm("reload", "fmtop", "--table", table, check=False)
    if r.returncode == 0:
        r = dm("resume", "fmtop", check=False)
    out.append(state("fmtop") if r.returncode == 0 else "EIO")
    remove("fmtop")
    return out + failover_case(rig, dev, fault)


def read_all(path, n):
    d = Dev(path)
    try:
        got = []
        for i in range(n):
            if d.read(i, b"") == "EIO":
                return None
            got.append(bytes(d.buf))
        return got
    finally:
        d.close()


def failover_case(rig, dev, fault):
    """fo_f and fo_rt: a failover whose merge runs under the fault."""
    table, top, port = new_session(rig)
    for i in range(60, 120):
        assert port.write(i, block("p", i)) == "ok"
    for i in range(40, 80):
        assert top.write(i, block("t", i)) == "ok"
    assert top.fsync() == "ok" and port.fsync() == "ok"
    top.close()
    port.close()
    dm("remove", "fmport")
    want = [block("t", i) if 40 <= i < 80 else block("s", i)
            for i in range(SEC_LEN * 512 // BS)]
    dm("message", "fmtop", "0", "commit_depth", "1")
    dm("suspend", "fmtop")
    dm("message", "fmtop", "0", "failover")
    rig.set(dev, fault)
    dm("resume", "fmtop")
    ends = ("done", "failover_failed", "failed")
    end = wait_state("fmtop", ends, 60)
    out = [end]
    rig.set(dev, "linear")
    for _ in range(2):
        if end == "failover_failed":
            message("fmtop", "failover")
        elif end == "failed":
            r = dm("reload", "fmtop", "--table", table, check=False)
            if r.returncode == 0:
                dm("resume", "fmtop", check=False)
        end = wait_state("fmtop", ends, 60)
    if end == "done":
        ok = read_all("/dev/mapper/fmtop", len(want)) == want and \
            read_all(rig.path("sec"), len(want)) == want
        end = "done" if ok else "bad"
    out.append(end)
    remove("fmtop")
    return out


def primary_case(rig, dev, fault):
    loc, rem, meta = rig.path("local"), rig.path("remote"), rig.path("meta")
    rig.fill("local", "l")
    rig.fill("remote", "l")
    rig.zero_head("meta")
    table = ("0 %d replication primary %s %s 4 metadata %s region_size 8"
             % (SEC_LEN, loc, rem, meta))
    dm("create", "fmpri", "--table", table)
    p = Dev("/dev/mapper/fmpri")
    out = []
    try:
        rig.set(dev, fault)
        out.append(p.read(3, block("l", 3)))
        out.append(p.write(5, block("w", 5)))
        out.append(p.fsync())
        out.append(message("fmpri", "checkpoint"))
        out.append(state("fmpri"))
    finally:
        p.close()
        rig.set(dev, "linear")
    r = dm("reload", "fmpri", "--table", table, check=False)
    if r.returncode == 0:
        r = dm("resume", "fmpri", check=False)
    out.append(wait_state("fmpri", ("running",), 60) if r.returncode == 0
               else "EIO")
    remove("fmpri")
    return out


MODES = {
    "secondary": (secondary_case, SEC_STEPS, ["sec", "hid", "act"],
                  [("sec", SEC_LEN), ("hid", 4096), ("act", 4096)]),
    "primary": (primary_case, PRI_STEPS, ["local", "remote", "meta"],
                [("local", SEC_LEN), ("remote", SEC_LEN), ("meta", 64)]),
}


def matches(got, want):
    """Each step's word is the documented one, or one of the documented
    alternatives ("a|b": a race the documentation names)."""
    g, w = got.split(), want.split()
    return len(g) == len(w) and all(x in y.split("|") for x, y in zip(g, w))


def main(argv):
    mode, disk = argv[1], argv[2]
    case, steps, devs, layout = MODES[mode]
    only = os.environ.get("FM_ONLY", "").split()
    show = os.environ.get("FM_PRINT")
    rig = Rig(disk, layout)
    print("# %s steps: %s" % (mode, steps))
    failed = n = 0
    for dev in devs:
        for fault in FAULTS:
            if only and "%s:%s" % (dev, fault) not in only:
                continue
            n += 1
            got = " ".join(case(rig, dev, fault))
            want = EXPECT[(dev, fault)]
            if show or matches(got, want):
                print("ok - %s %s under %s: %s" % (mode, fault, dev, got))
            else:
                failed += 1
                print("not ok - %s %s under %s: got '%s', documented '%s'"
                      % (mode, fault, dev, got, want))
    print("# %s: %d combinations, %d differ from the documentation"
          % (mode, n, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
