#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Randomized differential test of a dm-replication secondary and its port.

    differential.py SEED NOPS CHUNK [options]

Runs NOPS random operations on /dev/mapper/<top> and /dev/mapper/<port> and
checks every result against a model of two byte arrays:

  model secondary  what the secondary device holds (port writes land here);
  model top        what the top shows: the secondary as of the last
                   checkpoint, overlaid with every top write since.

Operations: top and port writes at random sector offsets (1..3*CHUNK
sectors, unaligned, overlapping, crossing chunks; some with O_DSYNC, i.e.
FUA), top and port reads compared with the model, top fsyncs (flush),
checkpoints, suspend/resume of the top (with port I/O while it is
suspended), table reloads and full remove+recreate of both devices
(persistence), status checks, and periodic whole-device comparisons.  The
run ends with a stop: top == secondary == model, the port refuses writes
(EIO), top writes land on the secondary device, and state done survives a
recreate.

The status is checked against the model too: after every checkpoint both
stores are empty and nothing is to commit; at status checks and reloads
the used chunk counts are exactly the chunks the model says each store
holds.

Checkpoints, status and suspend/resume go through the dm ioctls directly
(no dmsetup process); the rare table operations use dmsetup.

Exit status: 0 when no mismatch, 1 on a mismatch or an unexpected result.
"""

import argparse
import collections
import errno
import fcntl
import mmap
import os
import random
import struct
import subprocess
import sys
import time

SECTOR = 512

# ---- device-mapper ioctls ----------------------------------------------------

DM_IOCTL_FMT = "=3IIIIiIIIQ128s129s7s"  # struct dm_ioctl
DM_IOCTL_SIZE = struct.calcsize(DM_IOCTL_FMT)
assert DM_IOCTL_SIZE == 312
DM_SPEC_FMT = "=QQiI16s"  # struct dm_target_spec
DM_SPEC_SIZE = struct.calcsize(DM_SPEC_FMT)

DM_DEV_SUSPEND_CMD = 6
DM_TABLE_STATUS_CMD = 12
DM_TARGET_MSG_CMD = 14

DM_SUSPEND_FLAG = 1 << 1
DM_BUFFER_FULL_FLAG = 1 << 8


def dm_iowr(nr):
    return (3 << 30) | (DM_IOCTL_SIZE << 16) | (0xFD << 8) | nr


class DmControl:
    """The few dm ioctls the test sends often, without dmsetup."""

    def __init__(self):
        self.fd = os.open("/dev/mapper/control", os.O_RDWR)

    def close(self):
        os.close(self.fd)

    def _call(self, cmd, name, flags=0, payload=b"", size=16384):
        buf = bytearray(max(size, DM_IOCTL_SIZE + len(payload)))
        struct.pack_into(DM_IOCTL_FMT, buf, 0, 4, 0, 0, len(buf),
                         DM_IOCTL_SIZE, 0, 0, flags, 0, 0, 0,
                         name.encode(), b"", b"")
        buf[DM_IOCTL_SIZE:DM_IOCTL_SIZE + len(payload)] = payload
        fcntl.ioctl(self.fd, dm_iowr(cmd), buf, True)
        return buf

    def message(self, name, msg):
        payload = struct.pack("=Q", 0) + msg.encode() + b"\0"
        self._call(DM_TARGET_MSG_CMD, name, payload=payload)

    def status(self, name):
        """'<start> <len> <type> <params>' of the first target, as dmsetup."""
        buf = self._call(DM_TABLE_STATUS_CMD, name)
        fields = struct.unpack_from(DM_IOCTL_FMT, buf, 0)
        data_start, count, flags = fields[4], fields[5], fields[7]
        if flags & DM_BUFFER_FULL_FLAG or count < 1:
            raise RuntimeError("status of %s: count %d flags %#x"
                               % (name, count, flags))
        start, length, _st, _next, ttype = struct.unpack_from(
            DM_SPEC_FMT, buf, data_start)
        p = data_start + DM_SPEC_SIZE
        params = bytes(buf[p:buf.index(b"\0", p)]).decode()
        return "%d %d %s %s" % (start, length,
                                ttype.rstrip(b"\0").decode(), params)

    def suspend(self, name):
        self._call(DM_DEV_SUSPEND_CMD, name, flags=DM_SUSPEND_FLAG)

    def resume(self, name):
        self._call(DM_DEV_SUSPEND_CMD, name, flags=0)


def dmsetup(*args):
    r = subprocess.run(["dmsetup"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, check=False)
    if r.returncode:
        raise RuntimeError("dmsetup %s: exit %d: %s"
                           % (" ".join(args), r.returncode, r.stdout.strip()))
    return r.stdout


# ---- direct I/O -----------------------------------------------------------------


class Failure(Exception):
    """A mismatch or an unexpected result; the message says which."""


class DirectDev:
    """A block device opened with O_DIRECT, I/O through an aligned buffer."""

    def __init__(self, path, max_bytes):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_DIRECT)
        self.fd_sync = os.open(path, os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
        self.mm = mmap.mmap(-1, max_bytes)
        self.mv = memoryview(self.mm)

    def close(self):
        self.mv.release()
        self.mm.close()
        os.close(self.fd)
        os.close(self.fd_sync)

    def write(self, sector, data, sync=False):
        n = len(data)
        self.mv[:n] = data
        done = os.pwrite(self.fd_sync if sync else self.fd, self.mv[:n],
                         sector * SECTOR)
        if done != n:
            raise Failure("short write to %s: %d of %d bytes at sector %d"
                          % (self.path, done, n, sector))

    def read(self, sector, count):
        n = count * SECTOR
        done = os.preadv(self.fd, [self.mv[:n]], sector * SECTOR)
        if done != n:
            raise Failure("short read from %s: %d of %d bytes at sector %d"
                          % (self.path, done, n, sector))
        return bytes(self.mv[:n])

    def status_op(self):
        self.note("status")
        self.check_status("status op")

    def fsync(self):
        os.fsync(self.fd)


# ---- sector tags: every sector written says who wrote it ----------------------

TAG_FMT = "=4sIQI"  # kind, op index, sector, seed
TAG_SIZE = struct.calcsize(TAG_FMT)
KIND_NAMES = {b"INIT": "initial content", b"TOPW": "top write",
              b"PRTW": "port write", b"DONW": "top write in done"}


def describe_sector(data):
    if data == bytes(SECTOR):
        return "zeros"
    kind, op, sector, seed = struct.unpack_from(TAG_FMT, data, 0)
    if kind in KIND_NAMES:
        what = KIND_NAMES[kind]
        if kind == b"INIT":
            return "%s of sector %d (seed %d)" % (what, sector, seed)
        return "%s of op #%d to sector %d (seed %d)" % (what, op, sector, seed)
    return "unknown data %s..." % data[:16].hex()


# ---- the test -------------------------------------------------------------------


class Differential:
    def __init__(self, a):
        self.a = a
        self.seed = a.seed
        self.rng = random.Random(a.seed)
        self.chunk = a.chunk
        self.top_len = a.top_len
        self.port_len = a.port_len
        self.nr_chunks = (self.top_len + self.chunk - 1) // self.chunk
        self.top_table = "0 %d replication secondary %s %s %s %d" % (
            self.top_len, a.secondary, a.hidden, a.active, self.chunk)
        self.port_table = "0 %d replication port %s" % (self.port_len,
                                                        a.secondary)
        self.dm = DmControl()
        self.log = collections.deque(maxlen=20)
        self.op = 0
        self.state = "running"
        self.nr_checkpoints = 0   # since the top's core was loaded
        self.active = set()       # chunks the model says active holds
        self.hidden = set()       # chunks hidden must hold
        # Chunks hidden may hold: a port write copies a chunk that active
        # holds too when active's mapping is not committed yet (a crash
        # would lose it), and commits are timed (at least every second).
        self.hidden_max = set()
        self.stats = collections.Counter()
        self.top = None
        self.port = None
        # Weights of the operations, in percent.
        self.ops = [
            (30, self.top_write),
            (30, self.port_write),
            (17, lambda: self.read("top")),
            (12, lambda: self.read("port")),
            (a.checkpoint_pct, lambda: self.message("checkpoint")),
            (1.5, self.fsync),
            (1.5, self.status_op),
            (0.5, self.suspend_resume),
            (0.3, self.reload),
        ]
        # The hot window where most I/O goes, so top and port writes meet.
        hot_chunks = min(self.nr_chunks, 32)
        self.hot_start = self.rng.randrange(
            0, self.nr_chunks - hot_chunks + 1) * self.chunk
        self.hot_len = min(hot_chunks * self.chunk,
                           self.top_len - self.hot_start)

    # -- devices --

    def open_devs(self):
        maxb = max(1024, 4 * self.chunk) * SECTOR + (1 << 20)
        self.top = DirectDev("/dev/mapper/" + self.a.top, maxb)
        self.port = DirectDev("/dev/mapper/" + self.a.port, maxb)

    def close_devs(self):
        for d in (self.top, self.port):
            if d:
                d.close()
        self.top = self.port = None

    def create(self):
        dmsetup("create", self.a.top, "--table", self.top_table)
        dmsetup("create", self.a.port, "--table", self.port_table)
        self.open_devs()

    def remove(self):
        self.close_devs()
        dmsetup("remove", self.a.port)
        dmsetup("remove", self.a.top)

    # -- data --

    def make_data(self, kind, sector, count):
        data = bytearray(self.rng.randbytes(count * SECTOR))
        for i in range(count):
            struct.pack_into(TAG_FMT, data, i * SECTOR, kind, self.op,
                             sector + i, self.seed)
        return bytes(data)

    def init_secondary(self):
        """Fill the secondary device with tagged content, the model too."""
        data = bytearray(self.port_len * SECTOR)
        for s in range(self.port_len):
            struct.pack_into(TAG_FMT, data, s * SECTOR, b"INIT", 0, s,
                             self.seed)
        fd = os.open(self.a.secondary, os.O_RDWR | os.O_DIRECT)
        mm = mmap.mmap(-1, 1 << 20)
        try:
            for off in range(0, len(data), 1 << 20):
                piece = data[off:off + (1 << 20)]
                mm[:len(piece)] = piece
                with memoryview(mm) as mv:
                    if os.pwrite(fd, mv[:len(piece)], off) != len(piece):
                        raise Failure("short write initialising the secondary")
            os.fsync(fd)
        finally:
            mm.close()
            os.close(fd)
        self.sec_model = data
        self.top_model = bytearray(data[:self.top_len * SECTOR])

    # -- reporting --

    def note(self, text):
        self.log.append("#%d %s" % (self.op, text))

    def fail(self, text):
        raise Failure(text)

    def compare(self, what, sector, got, want):
        if got == want:
            return
        for i in range(0, len(want), SECTOR):
            if got[i:i + SECTOR] != want[i:i + SECTOR]:
                s = sector + i // SECTOR
                g, w = got[i:i + SECTOR], want[i:i + SECTOR]
                nbad = sum(1 for j in range(0, len(want), SECTOR)
                           if got[j:j + SECTOR] != want[j:j + SECTOR])
                self.fail("MISMATCH on %s at sector %d (chunk %d, +%d; %d "
                          "bad sectors in sectors %d..%d):\n"
                          "  expected: %s [%s]\n"
                          "  actual:   %s [%s]"
                          % (what, s, s // self.chunk, s % self.chunk, nbad,
                             sector, sector + len(want) // SECTOR - 1,
                             describe_sector(w), w[:24].hex(),
                             describe_sector(g), g[:24].hex()))

    def chunks_of(self, sector, count):
        return range(sector // self.chunk,
                     (sector + count - 1) // self.chunk + 1)

    # -- random ranges --

    def pick_range(self, dev_len, maxn):
        rng, c = self.rng, self.chunk
        n = rng.randint(1, maxn)
        r = rng.random()
        if r < 0.10:
            # Whole chunks, chunk-aligned (the no-copy path).
            start = rng.randrange(0, (dev_len + c - 1) // c) * c
            n = rng.randint(1, 3) * c
        elif r < 0.17:
            # The end of the device (the tail chunk).
            start = max(0, dev_len - n - rng.randint(0, c))
        elif r < 0.60:
            start = self.hot_start + rng.randrange(0, self.hot_len)
        else:
            start = rng.randrange(0, dev_len)
        start = min(start, dev_len - 1)
        n = max(1, min(n, dev_len - start))
        return start, n

    # -- operations --

    def top_write(self):
        off, n = self.pick_range(self.top_len, 3 * self.chunk)
        sync = self.rng.random() < 0.1
        kind = b"TOPW" if self.state == "running" else b"DONW"
        data = self.make_data(kind, off, n)
        self.note("top write %d+%d%s (chunks %d..%d)"
                  % (off, n, " dsync" if sync else "",
                     off // self.chunk, (off + n - 1) // self.chunk))
        self.top.write(off, data, sync)
        b = off * SECTOR
        self.top_model[b:b + len(data)] = data
        if self.state == "running":
            self.active.update(self.chunks_of(off, n))
        else:
            self.sec_model[b:b + len(data)] = data
        self.stats["top writes"] += 1

    def port_write(self):
        off, n = self.pick_range(self.port_len, 3 * self.chunk)
        sync = self.rng.random() < 0.1
        data = self.make_data(b"PRTW", off, n)
        self.note("port write %d+%d%s (chunks %d..%d)"
                  % (off, n, " dsync" if sync else "",
                     off // self.chunk, (off + n - 1) // self.chunk))
        self.port.write(off, data, sync)
        b = off * SECTOR
        self.sec_model[b:b + len(data)] = data
        for c in self.chunks_of(off, n):
            if c < self.nr_chunks and c not in self.active:
                self.hidden.add(c)
            if c < self.nr_chunks:
                self.hidden_max.add(c)
        self.stats["port writes"] += 1

    def read(self, which):
        dev_len = self.top_len if which == "top" else self.port_len
        maxn = 1024 if self.rng.random() < 0.05 else 4 * self.chunk
        off, n = self.pick_range(dev_len, maxn)
        self.note("%s read %d+%d" % (which, off, n))
        dev, model = ((self.top, self.top_model) if which == "top"
                      else (self.port, self.sec_model))
        got = dev.read(off, n)
        self.compare(which, off, got, model[off * SECTOR:(off + n) * SECTOR])
        self.stats["reads"] += 1

    def full_compare(self, why):
        self.note("full compare (%s)" % why)
        step = 2048
        for which, dev, model, length in (
                ("top", self.top, self.top_model, self.top_len),
                ("port", self.port, self.sec_model, self.port_len)):
            for off in range(0, length, step):
                n = min(step, length - off)
                self.compare("%s (full compare, %s)" % (which, why), off,
                             dev.read(off, n),
                             model[off * SECTOR:(off + n) * SECTOR])
        self.stats["full compares"] += 1

    def check_status(self, why):
        st = self.dm.status(self.a.top).split()
        want_commit = len(self.active) + len(self.hidden - self.active)
        used_hidden = -1
        try:
            used_hidden = int(st[7].split("/")[0])
            ok = (st[2] == "replication" and st[3] == "secondary" and
                  int(st[1]) == self.top_len and
                  st[4] == self.state and st[5] == "0" and
                  int(st[6].split("/")[0]) == len(self.active) and
                  len(self.hidden) <= used_hidden <= len(self.hidden_max) and
                  int(st[8]) == self.nr_checkpoints and
                  int(st[9]) == want_commit)
        except (IndexError, ValueError):
            ok = False
        if not ok:
            self.fail("STATUS MISMATCH (%s): top status '%s'; expected "
                      "state %s, error 0, used active %d, used hidden %d..%d, "
                      "%d checkpoints, %d chunks to commit"
                      % (why, " ".join(st), self.state, len(self.active),
                         len(self.hidden), len(self.hidden_max),
                         self.nr_checkpoints, want_commit))
        pst = self.dm.status(self.a.port).split()
        want = ["0", str(self.port_len), "replication", "port", self.state,
                str(used_hidden)]
        if pst != want:
            self.fail("STATUS MISMATCH (%s): port status '%s', expected '%s'"
                      % (why, " ".join(pst), " ".join(want)))
        self.stats["status checks"] += 1

    def message(self, msg):
        self.note(msg)
        try:
            self.dm.message(self.a.top, msg)
        except OSError as e:
            self.fail("message '%s' failed: %s" % (msg, e))
        if self.state == "running":
            self.top_model[:] = self.sec_model[:self.top_len * SECTOR]
            self.active.clear()
            self.hidden.clear()
            self.hidden_max.clear()
            self.nr_checkpoints += 1
            self.stats["checkpoints"] += 1
            if msg == "stop":
                self.state = "done"
        self.check_status("after " + msg)

    def status_op(self):
        self.note("status")
        self.check_status("status op")

    def fsync(self):
        self.note("top fsync")
        self.top.fsync()
        self.stats["fsyncs"] += 1

    def suspend_resume(self):
        self.note("suspend top")
        self.dm.suspend(self.a.top)
        # The primary goes on writing while the secondary VM is paused.
        for _ in range(self.rng.randint(0, 3)):
            self.port_write()
        if self.rng.random() < 0.5:
            self.read("port")
        self.note("resume top")
        self.dm.resume(self.a.top)
        self.stats["suspends"] += 1
        self.check_status("after suspend/resume")

    def reload(self):
        r = self.rng.random()
        if r < 0.4:
            self.note("remove port, top; create top, port")
            self.remove()
            self.create()
            self.nr_checkpoints = 0
        elif r < 0.7:
            # The port outlives the top: without loaded stores its reads
            # pass and its writes fail; a new top loads the same view.
            self.note("remove top (the port stays); port I/O; create top")
            self.top.close()
            self.top = None
            dmsetup("remove", self.a.top)
            off, n = self.pick_range(self.port_len, 3 * self.chunk)
            try:
                self.port.write(off, self.make_data(b"PRTW", off, n))
            except OSError as e:
                if e.errno != errno.EIO:
                    self.fail("port write without a top failed with %s, "
                              "expected EIO" % e)
            else:
                self.fail("port write %d+%d succeeded without a top"
                          % (off, n))
            self.read("port")
            dmsetup("create", self.a.top, "--table", self.top_table)
            maxb = len(self.port.mm)
            self.top = DirectDev("/dev/mapper/" + self.a.top, maxb)
            self.nr_checkpoints = 0
        else:
            self.note("reload top's table in place")
            dmsetup("reload", self.a.top, "--table", self.top_table)
            dmsetup("resume", self.a.top)
        self.stats["reloads"] += 1
        self.check_status("after reload")

    # -- the run --

    def step(self):
        r = self.rng.random() * sum(w for w, _ in self.ops)
        for w, fn in self.ops:
            r -= w
            if r < 0:
                fn()
                return
        self.ops[0][1]()

    def finale(self):
        """Stop; then done's rules, and done survives a recreate."""
        self.op = self.a.nops
        self.message("stop")
        self.full_compare("after stop")
        # top == secondary == model, read from the raw secondary device too.
        raw = DirectDev(self.a.secondary, 1 << 20)
        try:
            for off in range(0, self.port_len, 2048):
                n = min(2048, self.port_len - off)
                self.compare("secondary device (after stop)", off,
                             raw.read(off, n),
                             self.sec_model[off * SECTOR:(off + n) * SECTOR])
        finally:
            raw.close()
        if self.top_model != self.sec_model[:self.top_len * SECTOR]:
            self.fail("model: top != secondary after stop")

        # The port refuses writes; what it would have written is not there.
        off, n = self.pick_range(self.port_len, 3 * self.chunk)
        self.note("port write %d+%d in done (must fail)" % (off, n))
        try:
            self.port.write(off, self.make_data(b"PRTW", off, n))
        except OSError as e:
            if e.errno != errno.EIO:
                self.fail("port write in done failed with %s, expected EIO"
                          % e)
        else:
            self.fail("port write %d+%d succeeded in state done" % (off, n))
        self.read("port")

        # Top writes land on the secondary device.
        for _ in range(20):
            self.op += 1
            self.top_write()
            self.op += 1
            self.read("port")
        self.message("checkpoint")
        self.message("stop")
        self.full_compare("done, after top writes")

        # State done survives a recreate.
        self.op += 1
        self.note("remove port, top; create top, port (done)")
        self.remove()
        self.create()
        self.nr_checkpoints = 0
        self.check_status("recreated in done")
        self.full_compare("recreated in done")

    def queue_info(self):
        """The top's write cache and FUA: whether flushes reach the target."""
        rdev = os.stat("/dev/mapper/" + self.a.top).st_rdev
        q = "/sys/dev/block/%d:%d/queue/" % (os.major(rdev), os.minor(rdev))
        out = []
        for f in ("write_cache", "fua"):
            try:
                with open(q + f) as fh:
                    out.append("%s %s" % (f, fh.read().strip()))
            except OSError:
                out.append("%s ?" % f)
        return ", ".join(out)

    def run(self):
        t0 = time.monotonic()
        self.init_secondary()
        self.create()
        self.check_status("new session")
        queue = self.queue_info()
        for self.op in range(self.a.nops):
            self.step()
            if self.a.full_every and (self.op + 1) % self.a.full_every == 0:
                self.full_compare("every %d ops" % self.a.full_every)
                self.check_status("every %d ops" % self.a.full_every)
        self.op = self.a.nops
        self.full_compare("end of ops")
        self.check_status("end of ops")
        self.finale()
        self.remove()
        self.dm.close()
        s = self.stats
        print("seed %d: %d ops (%d top writes, %d port writes, %d reads, "
              "%d checkpoints, %d reloads): 0 mismatches"
              % (self.seed, self.a.nops, s["top writes"], s["port writes"],
                 s["reads"], s["checkpoints"], s["reloads"]))
        print("# seed %d: chunk %d, top %d sectors, port %d sectors (%s); "
              "%d suspends, %d fsyncs, %d status checks, %d full compares; "
              "%.1fs" % (self.seed, self.chunk, self.top_len, self.port_len,
                         queue, s["suspends"], s["fsyncs"],
                         s["status checks"], s["full compares"],
                         time.monotonic() - t0))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("seed", type=int)
    p.add_argument("nops", type=int)
    p.add_argument("chunk", type=int, help="chunk size in sectors")
    p.add_argument("--secondary", default="/dev/mapper/dsec")
    p.add_argument("--hidden", default="/dev/ram1")
    p.add_argument("--active", default="/dev/ram2")
    p.add_argument("--top", default="top", help="top device name")
    p.add_argument("--port", default="port", help="port device name")
    p.add_argument("--top-len", type=int,
                   help="top length in sectors (default: the secondary's)")
    p.add_argument("--port-len", type=int,
                   help="port length in sectors (default: the secondary's)")
    p.add_argument("--full-every", type=int, default=200,
                   help="whole-device comparison every N ops (0: never)")
    p.add_argument("--checkpoint-pct", type=float, default=4.0,
                   help="percent of ops that checkpoint (at most 5)")
    a = p.parse_args()
    a.checkpoint_pct = max(0.0, min(a.checkpoint_pct, 5.0))

    with open(a.secondary, "rb") as f:
        sec_len = f.seek(0, os.SEEK_END) // SECTOR
    a.top_len = a.top_len or sec_len
    a.port_len = a.port_len or sec_len

    t = Differential(a)
    try:
        t.run()
    except (Failure, OSError, RuntimeError) as e:
        print("seed %d: FAILED at op #%d: %s" % (a.seed, t.op, e))
        print("last %d ops (seed %d, chunk %d, top %d, port %d sectors):"
              % (len(t.log), a.seed, a.chunk, a.top_len, a.port_len))
        for line in t.log:
            print("  " + line)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
