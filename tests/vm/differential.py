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

With --failover the history ends with a failover instead of a stop (the
operations before it are the same as without it, for the same seed): a
fill phase grows the dirty set (top and port writes over the whole device,
no checkpoint), then "failover" is sent and random top writes and reads go
on WHILE the merge runs, each read checked against the model (the top shows
what it showed at the failover, overlaid with the writes since), port
writes must fail with EIO, port reads must show, per sector, the secondary's
old content or a version the top showed; status (state, counts counting
down, error 0), messages (checkpoint, stop, failover, commit_depth: accepted,
nothing changes), suspend/resume (pauses the merge), table reloads and
remove+recreate of the top (the merge resumes; a new port is refused) are
mixed in (--slow-dm: the secondary device's writes are delayed meanwhile,
so that the merge lasts).  After "done": top == secondary device == model
(the tail beyond
a short top untouched), more top I/O, the same again, and done survives a
recreate.  --model-bug breaks the model on purpose, to show the test fails.

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
import re
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

    def event_nr(self, name):
        """The mapped device's event counter (raised by dm events)."""
        buf = self._call(DM_TABLE_STATUS_CMD, name)
        return struct.unpack_from(DM_IOCTL_FMT, buf, 0)[8]

    def status_ev(self, name):
        """status() and the event counter, read by one ioctl."""
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
        return ("%d %d %s %s" % (start, length,
                                 ttype.rstrip(b"\0").decode(), params),
                fields[8])

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
              b"PRTW": "port write", b"DONW": "top write in done",
              b"FOVW": "top write during the failover"}

# ti->error of a port table once the session has failed over.
FAILED_OVER = ("Session failed over: zero the first 4 KiB of both stores "
               "to start anew")


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
        # A port first touch may copy the chunks around it too, within
        # their aligned group of this many.
        self.unit = a.port_copy_chunks
        if self.unit > 1:
            self.top_table += " 2 port_copy_chunks %d" % self.unit
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
        self.raw = None           # the secondary device (--failover)
        self.soft_fails = []
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
        had_port = self.port is not None
        self.close_devs()
        if had_port or (not self.a.failover and
                        os.path.exists("/dev/mapper/" + self.a.port)):
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

    def soft_fail(self, text):
        """A failure that does not stop the run; the seed fails at its end."""
        self.soft_fails.append("op #%d: %s" % (self.op, text))
        print("seed %d: FAILED (goes on) at op #%d: %s"
              % (self.seed, self.op, text))
        for line in self.log:
            print("  " + line)

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

    def top_write(self, rng_range=None):
        off, n = rng_range or self.pick_range(self.top_len, 3 * self.chunk)
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

    def port_write(self, rng_range=None):
        off, n = rng_range or self.pick_range(self.port_len, 3 * self.chunk)
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
                lo = c - c % self.unit
                self.hidden_max.update(range(lo, min(lo + self.unit,
                                                     self.nr_chunks)))
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
                ("port", self.port or self.raw, self.sec_model,
                 self.port_len)):
            for off in range(0, length, step):
                n = min(step, length - off)
                self.compare("%s (full compare, %s)" % (which, why), off,
                             dev.read(off, n),
                             model[off * SECTOR:(off + n) * SECTOR])
        self.stats["full compares"] += 1

    def check_status(self, why):
        st = self.dm.status(self.a.top).split()
        # Chunks to commit: active's, and hidden's that active lacks (with a
        # copy unit, hidden may hold chunks no port write touched).
        want_commit = (len(self.active | self.hidden),
                       len(self.active | self.hidden_max) if self.unit > 1
                       else len(self.active | self.hidden))
        if self.a.failover and self.state == "done" and \
                not self.fo["ckpt_bumped"] and len(st) > 8 and \
                st[8] == str(self.nr_checkpoints + 1):
            # The end of the failover may count as one checkpoint.
            self.nr_checkpoints += 1
            self.fo["ckpt_bumped"] = True
        used_hidden = -1
        try:
            used_hidden = int(st[7].split("/")[0])
            ok = (st[2] == "replication" and st[3] == "secondary" and
                  int(st[1]) == self.top_len and
                  st[4] == self.state and st[5] == "0" and
                  int(st[6].split("/")[0]) == len(self.active) and
                  len(self.hidden) <= used_hidden <= len(self.hidden_max) and
                  int(st[8]) == self.nr_checkpoints and
                  want_commit[0] <= int(st[9]) <= want_commit[1])
        except (IndexError, ValueError):
            ok = False
        if not ok:
            self.fail("STATUS MISMATCH (%s): top status '%s'; expected "
                      "state %s, error 0, used active %d, used hidden %d..%d, "
                      "%d checkpoints, %d..%d chunks to commit"
                      % (why, " ".join(st), self.state, len(self.active),
                         len(self.hidden), len(self.hidden_max),
                         self.nr_checkpoints, *want_commit))
        if ok and used_hidden > len(self.hidden | (self.hidden_max &
                                                  self.active)):
            # Only a copy unit copies chunks that no port write touched.
            self.stats["unit copies seen"] += 1
        if self.port is None:
            self.stats["status checks"] += 1
            return
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

        # State done survives a recreate; a port is refused (it would only
        # get EIO for its writes: the session is over).
        self.op += 1
        self.note("remove port, top; create top (done); a port is refused")
        self.remove()
        dmsetup("create", self.a.top, "--table", self.top_table)
        self.top = DirectDev("/dev/mapper/" + self.a.top,
                             max(1024, 4 * self.chunk) * SECTOR + (1 << 20))
        self.nr_checkpoints = 0
        self.refuse_port_table("in done after stop, after a recreate")
        self.check_status("recreated in done")
        # Without a port, the secondary device itself is compared.
        self.raw = DirectDev(self.a.secondary,
                             max(1024, 4 * self.chunk) * SECTOR + (1 << 20))
        self.full_compare("recreated in done")
        self.raw.close()
        self.raw = None

    # -- the failover finale (--failover) --

    def kmsg_mark(self):
        """Mark the kernel log; kmsg_since(mark) gives what follows."""
        self.nmarks = getattr(self, "nmarks", 0) + 1
        mark = "dmr-diff-mark-%d-%d-%d" % (os.getpid(), self.seed,
                                           self.nmarks)
        with open("/dev/kmsg", "w") as f:
            f.write(mark + "\n")
        return mark

    @staticmethod
    def kmsg_since(mark):
        out = subprocess.run(["dmesg"], stdout=subprocess.PIPE, text=True,
                             check=False).stdout.splitlines()
        for i in range(len(out) - 1, -1, -1):
            if out[i].endswith(mark):
                return out[i + 1:]
        return out

    def fo_status(self, why):
        """The top's status during the failover, checked; returns
        (state, chunks to commit)."""
        text, ev = self.dm.status_ev(self.a.top)
        st = text.split()
        self.stats["fo status"] += 1
        try:
            state, err = st[4], st[5]
            ua, ta = (int(x) for x in st[6].split("/"))
            uh, th = (int(x) for x in st[7].split("/"))
            nck, left = int(st[8]), int(st[9])
        except (IndexError, ValueError):
            self.fail("STATUS (%s): cannot parse top status '%s'"
                      % (why, " ".join(st)))
        bad = []
        if st[2:4] != ["replication", "secondary"] or \
                int(st[1]) != self.top_len:
            bad.append("not the top's table")
        if state not in ("failover", "done"):
            bad.append("state %s, expected failover or done" % state)
        if self.fo_state == "done" and state != "done":
            bad.append("state %s after done" % state)
        if err != "0":
            bad.append("error %s, expected 0" % err)
        if state == "done" and not self.fo["ckpt_bumped"] and \
                nck == self.nr_checkpoints + 1:
            # Emptying the stores at done may count as one checkpoint (the
            # spec does not say); once, and from then on it must not move.
            self.nr_checkpoints = nck
            self.fo["ckpt_bumped"] = True
        if nck != self.nr_checkpoints:
            bad.append("%d checkpoints, expected %d (a checkpoint in "
                       "failover does nothing)" % (nck, self.nr_checkpoints))
        if (ta, th) != self.fo["totals"]:
            bad.append("store sizes %d/%d changed (were %d/%d)"
                       % ((ta, th) + self.fo["totals"]))
        if state == "done":
            if (ua, uh, left) != (0, 0, 0):
                bad.append("done with used %d/%d and %d to commit; "
                           "expected 0, 0, 0" % (ua, uh, left))
        else:
            # Nothing is given out during a failover: writes go in place
            # or to the secondary device.
            if (ua, uh) != self.fo["used"]:
                bad.append("used active/hidden %d/%d changed during the "
                           "failover (were %d/%d)" % ((ua, uh) +
                                                      self.fo["used"]))
            if left > self.fo["chunks"]:
                bad.append("%d chunks to commit, more than the %d the "
                           "failover had" % (left, self.fo["chunks"]))
            if self.fo_left is not None and left > self.fo_left:
                bad.append("chunks to commit went up: %d after %d (same "
                           "table)" % (left, self.fo_left))
        if bad:
            # Recorded, and the run goes on (the data checks matter more);
            # the seed fails at its end.
            self.soft_fail("STATUS MISMATCH during the failover (%s): top "
                           "status '%s': %s"
                           % (why, " ".join(st), "; ".join(bad)))
        if self.port is not None:
            # Read after the top's: the merge may have finished between.
            pst = self.dm.status(self.a.port).split()
            if pst[2:4] != ["replication", "port"] or pst[4] not in (
                    [state, "done"] if state == "failover" else [state]):
                self.fail("STATUS MISMATCH during the failover (%s): port "
                          "status '%s', expected state %s"
                          % (why, " ".join(pst), state))
        if state == "done" and self.fo_state != "done":
            self.fo["done_at"] = time.monotonic()
        if state == "failover":
            # A waiter that saw this must get an event at done.
            self.fo["ev_failover"] = ev
        self.fo_state = state
        self.fo_left = left if state == "failover" else 0
        return state, left

    def fo_top_write(self):
        """A top write during the merge: near the merge cursor (merged,
        in flight, not reached), anywhere, or to a clean chunk."""
        rng, c = self.rng, self.chunk
        r = rng.random()
        if r < 0.4 and self.fo_chunks:
            done = self.fo["chunks"] - (self.fo_left or 0)
            i = min(len(self.fo_chunks) - 1,
                    max(0, done + rng.randint(-6, 6)))
            ch = self.fo_chunks[i]
            if rng.random() < 0.5:
                off, n = ch * c, c
            else:
                a = rng.randrange(c)
                off, n = ch * c + a, rng.randint(1, c - a)
            n = max(1, min(n, self.top_len - off))
        else:
            off, n = self.pick_range(self.top_len, 3 * c)
        sync = rng.random() < 0.1
        data = self.make_data(b"FOVW", off, n)
        self.note("top write %d+%d%s (chunks %d..%d) during the failover"
                  % (off, n, " dsync" if sync else "", off // c,
                     (off + n - 1) // c))
        self.top.write(off, data, sync)
        self.stats["fo top writes"] += 1
        if self.a.model_bug == "drop-write" and not self.fo["dropped"]:
            self.fo["dropped"] = True	# the model "forgets" this write
            return
        b = off * SECTOR
        self.top_model[b:b + len(data)] = data
        for i in range(n):
            self.fo_versions.setdefault(off + i, set()).add(
                data[i * SECTOR:(i + 1) * SECTOR])

    def fo_port_read(self):
        """The secondary device is half merged: each sector holds its old
        content, or a version of the top's since the failover."""
        maxn = 1024 if self.rng.random() < 0.05 else 4 * self.chunk
        off, n = self.pick_range(self.port_len, maxn)
        dev = self.port or self.raw
        self.note("%s read %d+%d during the failover"
                  % ("port" if self.port else "secondary device", off, n))
        got = dev.read(off, n)
        for i in range(n):
            s = off + i
            g = got[i * SECTOR:(i + 1) * SECTOR]
            b = s * SECTOR
            if g == self.fo_sec[b:b + SECTOR]:
                continue
            if s < self.top_len and (g == self.fo_top[b:b + SECTOR] or
                                     g in self.fo_versions.get(s, ())):
                continue
            self.fail("MISMATCH on the secondary device during the failover "
                      "at sector %d (chunk %d): %s [%s]; allowed: its old "
                      "content (%s), the top's at the failover (%s) or a top "
                      "write since"
                      % (s, s // self.chunk, describe_sector(g), g[:24].hex(),
                         describe_sector(self.fo_sec[b:b + SECTOR]),
                         describe_sector(self.fo_top[b:b + SECTOR])
                         if s < self.top_len else "beyond the top"))
        self.stats["fo port reads"] += 1

    def port_write_refused(self, why):
        """A port write must fail with EIO and change nothing."""
        if self.port is None:
            return
        off, n = self.pick_range(self.port_len, 3 * self.chunk)
        self.note("port write %d+%d %s (must fail with EIO)" % (off, n, why))
        try:
            self.port.write(off, self.make_data(b"PRTW", off, n))
        except OSError as e:
            if e.errno != errno.EIO:
                self.fail("port write %s failed with %s, expected EIO"
                          % (why, e))
        else:
            self.fail("port write %d+%d succeeded %s" % (off, n, why))
        self.stats["fo port refused"] += 1

    def fo_message(self):
        r = self.rng.random()
        if r < 0.6:
            msg = self.rng.choice(["checkpoint", "stop", "failover"])
        else:
            msg = "commit_depth %d" % self.rng.choice([1, 2, 3, 8, 16, 64])
        self.note(msg + " during the failover")
        try:
            self.dm.message(self.a.top, msg)
        except OSError as e:
            self.fail("message '%s' during the failover failed: %s"
                      % (msg, e))
        self.stats["fo messages"] += 1
        self.fo_status("after " + msg)

    def fo_suspend_resume(self):
        self.note("suspend top during the failover")
        self.dm.suspend(self.a.top)
        _, left = self.fo_status("suspended")
        self.port_write_refused("while the top is suspended")
        self.fo_port_read()
        time.sleep(0.2)
        _, left2 = self.fo_status("suspended, 0.2s later")
        if left2 != left:
            self.fail("the merge went on while the top was suspended: %d "
                      "chunks to commit, then %d" % (left, left2))
        self.note("resume top")
        self.dm.resume(self.a.top)
        self.stats["fo suspends"] += 1
        self.fo_status("after suspend/resume")

    def refuse_port_table(self, why):
        mark = self.kmsg_mark()
        r = subprocess.run(["dmsetup", "create", self.a.port, "--table",
                            self.port_table], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, check=False)
        if r.returncode == 0:
            dmsetup("remove", self.a.port)
            self.fail("a port table was accepted %s" % why)
        log = "\n".join(self.kmsg_since(mark))
        if "replication: " + FAILED_OVER not in log:
            self.fail("port table refused %s, but the log lacks '%s': %s"
                      % (why, FAILED_OVER, log.strip()))

    def fo_reload(self):
        r = self.rng.random()
        if r < 0.4:
            self.note("reload top's table in place during the failover")
            dmsetup("reload", self.a.top, "--table", self.top_table)
            dmsetup("resume", self.a.top)
        elif r < 0.75 and self.port is not None:
            self.note("remove top (the port stays) during the failover; "
                      "port I/O; create top")
            self.top.close()
            self.top = None
            dmsetup("remove", self.a.top)
            self.port_write_refused("without a top")
            self.fo_port_read()
            dmsetup("create", self.a.top, "--table", self.top_table)
            self.top = DirectDev("/dev/mapper/" + self.a.top,
                                 len(self.raw.mm))
            self.nr_checkpoints = 0
            self.fo["recreated"] = True
            self.fo["ev_failover"] = None
        else:
            self.note("remove port, top during the failover; create top; "
                      "a port is refused")
            had_port = self.port is not None
            self.close_devs()
            if had_port:
                dmsetup("remove", self.a.port)
            dmsetup("remove", self.a.top)
            dmsetup("create", self.a.top, "--table", self.top_table)
            self.top = DirectDev("/dev/mapper/" + self.a.top,
                                 len(self.raw.mm))
            self.nr_checkpoints = 0
            self.fo["recreated"] = True
            self.fo["ev_failover"] = None
            self.refuse_port_table("after a failover and a recreate")
        # A new table resumes from the durable cursor: the count may go up.
        self.fo_left = None
        self.stats["fo reloads"] += 1
        self.fo_status("after reload")

    def fo_step(self):
        ops = [(38, self.fo_top_write),
               (30, self.fo_top_read),
               (8, self.fo_port_read),
               (3, lambda: self.port_write_refused("during the failover")),
               (4, self.fsync),
               (2, self.fo_message),
               (0.4, self.fo_suspend_resume),
               (0.4 if self.stats["fo reloads"] < 3 else 0, self.fo_reload)]
        r = self.rng.random() * sum(w for w, _ in ops)
        for w, fn in ops:
            r -= w
            if r < 0:
                fn()
                return
        ops[0][1]()

    def fo_top_read(self):
        self.read("top")
        self.stats["fo top reads"] += 1

    def compare_secondary(self, why):
        for off in range(0, self.port_len, 2048):
            n = min(2048, self.port_len - off)
            self.compare("secondary device (%s)" % why, off,
                         self.raw.read(off, n),
                         self.sec_model[off * SECTOR:(off + n) * SECTOR])

    def fill_write(self):
        """Grow the dirty set: a top or a port write anywhere."""
        rng, c = self.rng, self.chunk
        port = rng.random() < 0.5
        length = self.port_len if port else self.top_len
        if rng.random() < 0.5:
            off = rng.randrange(0, (length + c - 1) // c) * c
            n = rng.randint(1, 4) * c
        else:
            off = rng.randrange(0, length)
            n = rng.randint(1, 3 * c)
        n = max(1, min(n, length - off))
        if port:
            self.port_write((off, n))
        else:
            self.top_write((off, n))

    def slow_secondary(self, slow):
        """Swap the dm-linear under the secondary device for dm-delay
        (writes --slow-ms late) and back: the merge takes long enough for
        the I/O, suspends and reloads during it."""
        name = self.a.slow_dm
        if slow:
            self.linear_table = dmsetup("table", name).strip()
            f = self.linear_table.split()
            if len(f) != 5 or f[2] != "linear":
                self.fail("--slow-dm %s: not one linear target: %s"
                          % (name, self.linear_table))
            table = "%s %s delay %s %s 0 %s %s %d" % (
                f[0], f[1], f[3], f[4], f[3], f[4], self.a.slow_ms)
        else:
            table = self.linear_table
        self.note("%s: %s" % (name, table))
        dmsetup("reload", name, "--table", table)
        dmsetup("resume", name)

    def failover_finale(self):
        """Failover; I/O while the merge runs; done; I/O; recreate."""
        self.op = self.a.nops
        self.raw = DirectDev(self.a.secondary, len(self.top.mm))
        for _ in range(self.a.fill):
            self.op += 1
            self.fill_write()
        self.op += 1
        self.full_compare("before the failover")
        self.check_status("before the failover")
        depth = self.a.commit_depth or self.rng.choice([1, 1, 1, 2, 8])
        self.note("commit_depth %d" % depth)
        self.dm.message(self.a.top, "commit_depth %d" % depth)

        # What the merge must do: every chunk of active, every chunk of
        # hidden not in active; the top's view becomes the secondary's.
        self.fo_chunks = sorted(self.active | self.hidden)
        st = self.dm.status(self.a.top).split()
        self.fo = {"chunks": len(self.fo_chunks), "depth": depth,
                   "used": (int(st[6].split("/")[0]),
                            int(st[7].split("/")[0])),
                   "totals": (int(st[6].split("/")[1]),
                              int(st[7].split("/")[1])),
                   "dropped": False, "recreated": False, "in_failover": 0,
                   "done_at": None, "ev_failover": None,
                   "ckpt_bumped": False}
        if self.unit > 1:
            # Hidden's extra copies are merged too (check_status() has
            # checked the count against the model's bounds).
            self.fo["chunks"] = int(st[9])
        self.fo_sec = bytes(self.sec_model)
        if self.a.model_bug == "port-wins":
            # A wrong model: the primary's writes win over the top's view.
            self.top_model[:] = self.sec_model[:self.top_len * SECTOR]
        self.fo_top = bytes(self.top_model)
        self.fo_versions = {}
        self.fo_state = "failover"
        self.fo_left = None
        ev0 = self.dm.event_nr(self.a.top)

        if self.a.slow_dm:
            self.slow_secondary(True)
        self.note("failover (%d chunks to commit)" % self.fo["chunks"])
        fo_mark = self.kmsg_mark()
        t0 = time.monotonic()
        try:
            self.dm.message(self.a.top, "failover")
        except OSError as e:
            self.fail("message 'failover' failed: %s" % e)
        t1 = time.monotonic()
        self.fo["msg_ms"] = (t1 - t0) * 1000
        self.state = "failover"
        state, _ = self.fo_status("right after failover")
        if state == "failover":
            self.fo["in_failover"] += 1
        self.port_write_refused("right after the failover message")

        # I/O while the merge runs, until done.
        deadline = t1 + self.a.commit_timeout
        while self.fo_state != "done":
            if time.monotonic() > deadline:
                self.fail("the failover's merge is not done after %ds: "
                          "status '%s'" % (self.a.commit_timeout,
                                           self.dm.status(self.a.top)))
            self.op += 1
            if self.stats["fo ops"] < self.a.during_max:
                self.fo_step()
                self.stats["fo ops"] += 1
            else:
                time.sleep(0.01)
            if self.fo_status("polling")[0] == "failover":
                self.fo["in_failover"] += 1
        self.fo["secs"] = self.fo["done_at"] - t1
        if self.a.slow_dm:
            self.slow_secondary(False)
        log = self.kmsg_since(fo_mark)
        started = [ln for ln in log if "failover: committing" in ln]
        m = re.search(r"failover: committing (\d+) chunks from chunk (\d+)",
                      started[0]) if started else None
        if not m or int(m.group(1)) != self.fo["chunks"]:
            self.fail("expected the log line 'failover: committing %d "
                      "chunks from chunk ...', got: %s"
                      % (self.fo["chunks"], started or log[-5:]))
        if not any("failover done:" in ln for ln in log):
            self.fail("no 'failover done:' log line: %s" % log[-5:])
        # Events (raised by a worker, so wait a little): one after the
        # failover message (a waiter that saw "running" wakes up), and one
        # at done (a waiter that saw "failover" wakes up).  Two raised
        # before the worker runs may count once.
        want = []
        if not self.fo["recreated"]:
            want.append(("the failover", ev0))
        if self.fo["ev_failover"] is not None:
            want.append(("done", self.fo["ev_failover"]))
        for what, before in want:
            end = time.monotonic() + 5
            ev = self.dm.event_nr(self.a.top)
            while ev <= before and time.monotonic() < end:
                time.sleep(0.05)
                ev = self.dm.event_nr(self.a.top)
            if ev <= before:
                self.fail("no dm event for %s: event number %d, was %d "
                          "when the top's status said %s"
                          % (what, ev, before, "running" if what ==
                             "the failover" else "failover"))

        # Done: the secondary device is the top's view (beyond a short top,
        # what the port wrote before the failover).
        self.state = "done"
        self.active.clear()
        self.hidden.clear()
        self.hidden_max.clear()
        self.sec_model[:self.top_len * SECTOR] = self.top_model
        self.op += 1
        self.full_compare("failover done")
        self.compare_secondary("failover done")
        self.check_status("failover done")

        # More top I/O; it goes straight to the secondary device.
        for _ in range(self.a.after):
            self.op += 1
            r = self.rng.random()
            if r < 0.45:
                self.top_write()
            elif r < 0.75:
                self.read("top")
            elif r < 0.85 and self.port is not None:
                self.read("port")
            elif r < 0.9:
                self.port_write_refused("in done")
                self.stats["fo port refused"] -= 1
                self.stats["done port refused"] += 1
            elif r < 0.95:
                self.fsync()
            else:
                self.message(self.rng.choice(["checkpoint", "stop",
                                              "failover"]))
            self.stats["done ops"] += 1
        self.op += 1
        self.full_compare("done, after top writes")
        self.compare_secondary("done, after top writes")
        self.check_status("done, after top writes")

        # Done survives a recreate; a port is refused.
        self.op += 1
        self.note("remove port, top; create top (done); a port is refused")
        self.remove()
        dmsetup("create", self.a.top, "--table", self.top_table)
        self.top = DirectDev("/dev/mapper/" + self.a.top, len(self.raw.mm))
        self.nr_checkpoints = 0
        self.refuse_port_table("in done, after a recreate")
        self.check_status("recreated in done")
        self.full_compare("recreated in done")
        self.compare_secondary("recreated in done")
        self.raw.close()

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
        if self.a.failover:
            self.failover_finale()
        else:
            self.finale()
        self.remove()
        self.dm.close()
        if self.soft_fails:
            raise Failure("%d failures, the first at %s"
                          % (len(self.soft_fails), self.soft_fails[0]))
        s = self.stats
        if self.unit > 1 and not s["unit copies seen"]:
            raise Failure("port_copy_chunks %d: no status check saw hidden "
                          "hold a chunk that no port write touched"
                          % self.unit)
        print("seed %d: %d ops (%d top writes, %d port writes, %d reads, "
              "%d checkpoints, %d reloads): 0 mismatches"
              % (self.seed, self.a.nops, s["top writes"], s["port writes"],
                 s["reads"], s["checkpoints"], s["reloads"]))
        print("# seed %d: chunk %d, top %d sectors, port %d sectors (%s); "
              "%d suspends, %d fsyncs, %d status checks (%d saw a copy unit's "
              "extra chunks), %d full compares; %.1fs"
              % (self.seed, self.chunk, self.top_len, self.port_len, queue,
                 s["suspends"], s["fsyncs"], s["status checks"],
                 s["unit copies seen"], s["full compares"],
                 time.monotonic() - t0))
        if self.a.failover:
            print("# seed %d: failover of %d chunks (commit_depth %d): "
                  "message %.0f ms, commit %.2fs; during it %d ops (%d top "
                  "writes, %d top reads, %d port reads, %d port writes "
                  "refused, %d status, %d messages, %d suspends, %d "
                  "reloads); %d ops seen in state failover; after done %d "
                  "ops (%d port writes refused)"
                  % (self.seed, self.fo["chunks"], self.fo["depth"],
                     self.fo["msg_ms"], self.fo["secs"], s["fo ops"],
                     s["fo top writes"], s["fo top reads"],
                     s["fo port reads"], s["fo port refused"],
                     s["fo status"], s["fo messages"], s["fo suspends"],
                     s["fo reloads"], self.fo["in_failover"],
                     s["done ops"], s["done port refused"]))


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
    p.add_argument("--failover", action="store_true",
                   help="end with a failover instead of a stop")
    p.add_argument("--fill", type=int, default=400,
                   help="failover: top and port writes anywhere (no "
                   "checkpoint) before it, so the merge has work")
    p.add_argument("--commit-depth", type=int, default=0,
                   help="failover: commit_depth (default: random)")
    p.add_argument("--during-max", type=int, default=3000,
                   help="failover: at most N ops while the merge runs")
    p.add_argument("--after", type=int, default=200,
                   help="failover: N ops after done")
    p.add_argument("--commit-timeout", type=int, default=240,
                   help="failover: seconds the merge may take")
    p.add_argument("--slow-dm", metavar="NAME",
                   help="failover: the dm-linear under the secondary device; "
                   "dm-delay replaces it during the merge")
    p.add_argument("--slow-ms", type=int, default=3,
                   help="failover: write delay of --slow-dm")
    p.add_argument("--port-copy-chunks", type=int, default=1,
                   help="the top table's port_copy_chunks (1: none given)")
    p.add_argument("--model-bug", choices=["none", "drop-write",
                                           "port-wins"], default="none",
                   help="break the model on purpose (the test must fail)")
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
