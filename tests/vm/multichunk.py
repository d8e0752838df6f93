#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Bios that span many chunks, on a secondary and its port, against a model.

    multichunk.py fill CHUNK                      OLD stamps on the secondary
    multichunk.py PHASE CHUNK [--seed N] [--model-bug run-tail]

Devices: /dev/mapper/top, /dev/mapper/port and the secondary device
/dev/mapper/msec; CHUNK is the top's chunk size in sectors.  Every sector
written carries "<tag> <sector number>", so a misplaced or torn chunk shows.

A phase starts with a checkpoint, takes what the secondary then holds as OLD,
and keeps a model of two byte arrays: what the top shows (the secondary at the
checkpoint overlaid with the top's writes) and what the secondary holds (the
port's writes land there).  After each step both devices are read whole and
compared with the model, and the status must say: running, error 0 (unless
the step expects one), active slots = the chunks the top wrote since the
checkpoint, hidden slots between the chunks the port wrote that the top had
not written (those must have been copied) and the chunks the port wrote, and
chunks to commit = the chunks either wrote.  The seq, race and full phases
also remove and create the top and the port before their last checkpoint:
the mappings must come back from the stores' records.

Phases (I/O is O_DIRECT from mmap buffers; some top writes are O_DSYNC):

  seq         1 MiB and 256 KiB runs over fresh chunks, the same again,
              unaligned runs (copy-ups at both ends), runs over chunks mapped
              alone, in reverse or interleaved slot order, or partially,
              runs over chunks only hidden holds, runs that end at the last
              (partial) chunk, port runs over chunks partly in hidden
  race        3 rounds without a checkpoint between: 2 top writers, 2 port
              writers (runs of 1..64 chunks, some unaligned, each read back)
              and 2 top readers over the whole device.  Top writers own
              disjoint chunk groups, port writers too (independently of the
              top's).  A reader must see, in a chunk no top writer owns, what
              the top showed at the round's start, and elsewhere that or the
              round's top stamp of that very sector: never a port write
  checkpoint  a writer streams 1 MiB top writes while checkpoints are sent
              (each after a port run): see check_stream()
  full        on a top with small stores: a run needing more slots than are
              free, mixed runs, a port run that fills hidden; see phase_full()

--model-bug run-tail makes the model forget the last chunk of every top write
that spans chunks (as a run that wrote one chunk short would): the test must
fail.  Exit 1 with a message on the first mismatch.
"""
import argparse
import errno
import os
import random
import sys
import threading
import time

from differential import DmControl, dmsetup
from race import Failure, pread, pwrite

SECTOR = 512
MIB = 1 << 20
TOP, PORT, SEC = "/dev/mapper/top", "/dev/mapper/port", "/dev/mapper/msec"


def sector(tag, s):
    return (b"%s %d " % (tag, s)).ljust(SECTOR, b".")


def stamp(tag, off, n):
    s = off // SECTOR
    return b"".join(sector(tag, i) for i in range(s, s + n // SECTOR))


def torn(got, old, new):
    """Is GOT a sector caught while OLD was being overwritten with NEW: each
    8-byte word from one or the other, some from each?  A read racing a
    write of the same sector may see that (brd copies with memcpy; no
    device makes a sector atomic against a concurrent read)."""
    words = range(0, SECTOR, 8)
    return all(got[i:i + 8] in (old[i:i + 8], new[i:i + 8]) for i in words) and \
        any(got[i:i + 8] != old[i:i + 8] for i in words) and \
        any(got[i:i + 8] != new[i:i + 8] for i in words)


class Model:
    def __init__(self, old, cb, bug):
        self.cb, self.bug = cb, bug
        self.checkpoint(old)

    def checkpoint(self, sec):
        self.top, self.sec = bytearray(sec), bytearray(sec)
        # Chunks the top wrote, the port wrote, and the port wrote while
        # the top had not: those had to be copied into hidden.
        self.tset, self.pset, self.must_copy = set(), set(), set()

    def chunks(self, off, n):
        return range(off // self.cb, (off + n - 1) // self.cb + 1)

    def top_write(self, off, data):
        cs = self.chunks(off, len(data))
        if self.bug == "run-tail" and len(cs) > 1:
            data = data[:cs[-1] * self.cb - off]
            cs = cs[:-1]
        self.top[off:off + len(data)] = data
        self.tset.update(cs)

    def port_write(self, off, data):
        self.sec[off:off + len(data)] = data
        cs = set(self.chunks(off, len(data)))
        self.must_copy |= cs - self.tset
        self.pset |= cs


class Test:
    def __init__(self, a):
        self.a, self.rnd = a, random.Random(a.seed)
        self.cb = a.chunk * SECTOR
        self.sfd = os.open(SEC, os.O_RDWR | os.O_DIRECT)
        self.open()
        self.size = os.lseek(self.tfd, 0, os.SEEK_END)
        self.nchunks = -(-self.size // self.cb)
        self.ctl = DmControl()
        self.ntop = 0
        self.checkpoint()
        old = pread(self.sfd, 0, self.size)
        self.m = Model(old, self.cb, a.model_bug)
        self.compare("at the start, top", pread(self.tfd, 0, self.size), old)

    def open(self):
        flags = os.O_RDWR | os.O_DIRECT
        self.tfd, self.pfd = os.open(TOP, flags), os.open(PORT, flags)
        self.tsync = os.open(TOP, flags | os.O_DSYNC)

    def checkpoint(self):
        self.ctl.message("top", "checkpoint")

    def status(self):
        """state, error, (used, total) active, (used, total) hidden, #to commit"""
        f = self.ctl.status("top").split()
        used = [tuple(map(int, x.split("/"))) for x in f[6:8]]
        return f[4], int(f[5]), used[0], used[1], int(f[9])

    def recreate(self, what):
        """Remove the top and the port and create them again: the mappings
        come back from the stores' records."""
        tables = [(d, dmsetup("table", d).strip()) for d in ("top", "port")]
        for fd in (self.tfd, self.tsync, self.pfd):
            os.close(fd)
        dmsetup("remove", "port", "top")
        for d, table in tables:
            dmsetup("create", d, "--table", table)
        self.open()
        self.verify(what + ", after remove and create")

    # ---- I/O through the model --------------------------------------------

    def tag(self, kind):
        self.ntop += 1
        return b"%s%d" % (kind, self.ntop)

    def top(self, off, n, sync=False):
        data = stamp(self.tag(b"T"), off, n)
        pwrite(self.tsync if sync else self.tfd, off, data)
        self.m.top_write(off, data)

    def port(self, off, n):
        data = stamp(self.tag(b"P"), off, n)
        pwrite(self.pfd, off, data)
        self.m.port_write(off, data)

    def run(self, c, n, head=0, tail=0, sync=False):
        """Top write over chunks c..c+n-1 (clipped to the device), leaving
        out head sectors at the start and tail sectors at the end."""
        end = min((c + n) * self.cb, self.size) - tail * SECTOR
        off = c * self.cb + head * SECTOR
        self.top(off, end - off, sync)

    def port_run(self, c, n, head=0, tail=0):
        end = min((c + n) * self.cb, self.size) - tail * SECTOR
        off = c * self.cb + head * SECTOR
        self.port(off, end - off)

    def top_fails(self, c, n, gets, head=0):
        """A top run over chunks c..c+n-1 must fail with ENOSPC; exactly the
        chunks in gets take the new data, the others keep what they had."""
        off, end = c * self.cb + head * SECTOR, min((c + n) * self.cb, self.size)
        data = stamp(self.tag(b"T"), off, end - off)
        try:
            pwrite(self.tfd, off, data)
            raise Failure("top run over chunks %d..%d succeeded in a full store"
                          % (c, c + n - 1))
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise Failure("top run over chunks %d..%d: %s, expected ENOSPC"
                              % (c, c + n - 1, e)) from e
        for k in gets:
            lo, hi = max(off, k * self.cb), min(end, (k + 1) * self.cb)
            self.m.top_write(lo, data[lo - off:hi - off])

    # ---- checks ---------------------------------------------------------------

    def compare(self, what, got, want, base=0):
        if got == want:
            return
        for i in range(0, len(got), SECTOR):
            if got[i:i + SECTOR] != want[i:i + SECTOR]:
                s = (base + i) // SECTOR
                raise Failure("%s: chunk %d sector %d reads %r, expected %r"
                              % (what, s * SECTOR // self.cb, s,
                                 bytes(got[i:i + 24]), bytes(want[i:i + 24])))

    def verify(self, what, error=0):
        m = self.m
        self.compare(what + ": top", pread(self.tfd, 0, self.size), m.top)
        self.compare(what + ": secondary", pread(self.sfd, 0, self.size), m.sec)
        state, err, (act, _), (hid, _), commit = self.status()
        if (state, err) != ("running", error):
            raise Failure("%s: status says %s, error %d; expected running, %d"
                          % (what, state, err, error))
        # Every chunk the port wrote is in hidden, or the top wrote it.
        if commit != len(m.tset | m.pset):
            raise Failure("%s: %d chunks to commit, the top and the port wrote %d"
                          % (what, commit, len(m.tset | m.pset)))
        if act != len(m.tset):
            raise Failure("%s: %d active slots used, the top wrote %d chunks"
                          % (what, act, len(m.tset)))
        if not len(m.must_copy) <= hid <= len(m.pset):
            raise Failure("%s: %d hidden slots used, expected %d..%d"
                          % (what, hid, len(m.must_copy), len(m.pset)))
        print("%s: ok (active %d, hidden %d)" % (what, act, hid))

    def verify_checkpoint(self, what):
        self.checkpoint()
        self.m.checkpoint(self.m.sec)
        self.verify(what + ", checkpoint")

    # ---- phases ---------------------------------------------------------------

    def phase_seq(self):
        cb, mib = self.cb, MIB // self.cb	# mib: chunks per MiB
        at = 0

        def area(n):
            nonlocal at
            at += n
            return at - n

        c0 = area(6 * mib)
        for rewrite in (False, True):
            for i in range(4):
                self.run(c0 + i * mib, mib, sync=i == 1)
            for i in range(8):
                self.run(c0 + 4 * mib + i * mib // 4, mib // 4, sync=i == 5)
            self.verify("1 MiB and 256 KiB runs, " + ("rewritten" if rewrite else "fresh"))

        # Unaligned ends: copy-ups from the secondary, next to mapped chunks.
        c = area(2 * mib)
        self.run(c, mib, head=1, tail=1)
        self.run(c - 3, 9, head=self.a.chunk // 2, tail=3)
        self.run(c + mib + 2, mib // 4, head=self.a.chunk - 1)
        for i in range(12):
            self.top(*self.random_io(self.rnd, c, 2 * mib, unaligned=1), sync=i % 5 == 0)
        self.verify("unaligned runs")

        # Runs over chunks some of which are mapped, in various slot orders.
        k = area(16) + 3
        self.run(k, 1)
        self.run(k - 3, 7)
        k = area(16) + 3
        for j in range(3, -4, -1):
            self.run(k + j, 1)		# all mapped, slots in reverse order
        self.run(k - 3, 7)
        k = area(16) + 3
        for j in list(range(-3, 4, 2)) + list(range(-2, 4, 2)):
            self.run(k + j, 1)		# all mapped, slots interleaved
        self.run(k - 3, 7)
        k = area(16) + 3
        for j in (0, 2):
            self.top((k + j) * cb + 3 * SECTOR, SECTOR)	# copied up
        self.run(k - 3, 7, head=1, tail=1)
        k = area(40)
        for j in range(1, 32, 3):
            self.run(k + j, 1)
        self.run(k, 32)			# mapped every third chunk
        self.run(k + 30, 8)		# mapped, then fresh
        self.verify("runs over mapped and fresh chunks")

        # Runs over chunks only hidden holds: the port wrote them first.
        h = area(96)
        self.port_run(h, 48)
        for j in range(48, 96, 3):
            self.port_run(h + j, 1)
        self.port((h + 88) * cb + SECTOR, 5 * cb)
        for i in range(5):		# partial ends: copy-ups from hidden
            self.run(h + 1 + 3 * i, 3, head=i + 1, tail=i + 2)
        self.run(h + 20, 24)				# hidden-only, aligned
        self.run(h + 40, 32, head=2, tail=1)		# hidden and fresh
        self.run(h + 86, 10, head=self.a.chunk - 1, tail=self.a.chunk - 1)
        self.port_run(h + 1, 4)		# the top wrote these first
        self.verify("runs over chunks only hidden holds")

        # The device's last chunk is partial: runs that end there.
        n = self.nchunks
        self.port_run(n - 2, 2)
        self.run(n - 3, 3, head=1, tail=2)		# copied up from hidden
        self.run(n - 6, 6)
        self.run(n - 9, 9, head=3, sync=True)
        self.run(n - 1, 1)
        self.port_run(n - 4, 4, head=1)
        self.verify("runs to the last sector (a partial chunk)")

        # Port runs over chunks partly in hidden: the top still reads OLD.
        x = area(24) + 4
        self.port_run(x, 8)
        self.port_run(x - 4, 16, head=1)
        self.port_run(x + 2, 4)
        self.verify("port runs over chunks partly in hidden")
        self.recreate("seq")
        self.verify_checkpoint("seq")

    def phase_race(self):
        for r in range(1, self.a.rounds + 1):
            self.race_round(r)
        self.recreate("race")
        self.verify_checkpoint("race")

    def partition(self, owners):
        """Chunk groups of 1..64 chunks, each given to a random owner (None:
        nobody writes it); returns {owner: [(first, count), ...]}."""
        parts = {o: [] for o in owners}
        c = 0
        while c < self.nchunks:
            n = min(self.rnd.randint(1, 64), self.nchunks - c)
            parts[self.rnd.choice(owners)].append((c, n))
            c += n
        return parts

    def random_io(self, rnd, first, count, unaligned=1 / 3):
        """A random run of 1..64 chunks inside chunks first..first+count-1,
        with unaligned ends at that rate.  Returns (offset, length)."""
        c = first + rnd.randrange(count)
        n = rnd.randint(1, min(64, first + count - c))
        off, end = c * self.cb, min((c + n) * self.cb, self.size)
        if rnd.random() < unaligned:
            off = min(off + rnd.randrange(self.a.chunk) * SECTOR, end - SECTOR)
            end = max(end - rnd.randrange(self.a.chunk) * SECTOR, off + SECTOR)
        return off, end - off

    def race_round(self, r):
        tparts = self.partition([0, 1, None])
        pparts = self.partition([0, 1, None])
        owner = {c: o for o in (0, 1) for f, n in tparts[o] for c in range(f, f + n)}
        towned = set(owner)
        snap = bytes(self.m.top)
        prefix = b"R%d.T" % r		# the round's top stamps
        done = threading.Event()
        errors, topw, portw, reads = [], [[], []], [[], []], [0, 0]

        def check_read(off, got):
            if got == snap[off:off + len(got)]:
                return
            for i in range(0, len(got), SECTOR):
                a, g = off + i, got[i:i + SECTOR]
                if g == snap[a:a + SECTOR]:
                    continue
                if a // self.cb in towned and g.startswith(prefix) and \
                        g == sector(g.split(b" ", 1)[0], a // SECTOR):
                    continue
                # A top-owned sector read while its owner wrote it.
                if a // self.cb in towned and any(
                        torn(g, snap[a:a + SECTOR],
                             sector(b"R%d.T%d.%d" % (r, owner[a // self.cb], i),
                                    a // SECTOR))
                        for i in range(self.a.ops)):
                    continue
                raise Failure("round %d: top read of chunk %d sector %d saw %r "
                              "(%s)" % (r, a // self.cb, a // SECTOR, g[:24],
                                        "top-owned" if a // self.cb in towned
                                        else "no top writer"))

        def writer(fd, rfd, parts, log, kind, seed):
            rnd = random.Random(seed)
            try:
                for i in range(self.a.ops):
                    off, n = self.random_io(rnd, *rnd.choice(parts))
                    data = stamp(b"R%d.%s.%d" % (r, kind, i), off, n)
                    pwrite(fd if rnd.random() < .8 else rfd, off, data)
                    log.append((off, data))
                    self.compare("round %d: %s read back" % (r, kind),
                                 pread(fd, off, n), data, off)
            except Exception as e:	# noqa: BLE001
                errors.append("%s writer: %s" % (kind.decode(), e))

        def reader(i):
            rnd = random.Random(self.a.seed * 10 + i)
            try:
                while not done.is_set() and not errors:
                    off, n = self.random_io(rnd, 0, self.nchunks)
                    check_read(off, pread(self.tfd, off, n))
                    reads[i] += 1
            except Exception as e:	# noqa: BLE001
                errors.append("top reader: %s" % e)

        writers = [threading.Thread(target=writer, args=(
            self.tfd, self.tsync, tparts[i], topw[i], b"T%d" % i, self.a.seed * 10 + i))
            for i in (0, 1)]
        writers += [threading.Thread(target=writer, args=(
            self.pfd, self.pfd, pparts[i], portw[i], b"P%d" % i, self.a.seed * 10 + 5 + i))
            for i in (0, 1)]
        readers = [threading.Thread(target=reader, args=(i,)) for i in (0, 1)]
        for t in writers + readers:
            t.start()
        for t in writers:
            t.join()
        done.set()
        for t in readers:
            t.join()
        if errors:
            raise Failure(errors[0])
        for log in topw:
            for off, data in log:
                self.m.top_write(off, data)
        for log in portw:
            for off, data in log:
                self.m.port_write(off, data)
        self.verify("race round %d (%d top reads)" % (r, sum(reads)))
        if min(reads) == 0:
            raise Failure("round %d: a reader read nothing" % r)

    def phase_checkpoint(self):
        """A writer streams 1 MiB top writes (whole chunks, each at 1 MiB - 3
        chunks past the last, wrapping) while the main thread, after every
        two of them, writes a port run and sends a checkpoint.  A checkpoint
        drops what the top wrote before it: the top then shows the secondary.
        After the stream, chunk by chunk: a chunk written after the last
        checkpoint returned shows the last such write; else a chunk written
        while that checkpoint ran shows the last of those writes or the
        secondary; any other chunk shows the secondary.  Active holds
        exactly the chunks that show a write.  A final checkpoint: top ==
        secondary."""
        region = (self.size // MIB - 1) * MIB
        step = MIB - 3 * self.cb
        writes, errors = [], []
        cond, stop = threading.Condition(), threading.Event()

        def writer():
            try:
                i = 0
                while not stop.is_set():
                    off = i * step % region // self.cb * self.cb
                    data = stamp(b"W%d" % i, off, MIB)
                    t0 = time.monotonic()
                    pwrite(self.tfd, off, data)
                    with cond:
                        writes.append((t0, time.monotonic(), off, data))
                        cond.notify()
                    i += 1
            except Exception as e:	# noqa: BLE001
                errors.append("writer: %s" % e)
            with cond:
                stop.set()
                cond.notify()

        def wait_writes(n):
            with cond:
                if not cond.wait_for(lambda: len(writes) >= n or stop.is_set(), 120):
                    errors.append("the writer stalled")
            if errors:
                stop.set()
                raise Failure(errors[0])

        ckpts0 = int(self.ctl.status("top").split()[8])
        windows = []
        t = threading.Thread(target=writer)
        t.start()
        try:
            for _ in range(self.a.checkpoints):
                wait_writes(len(writes) + self.rnd.randint(1, 3))
                c = self.rnd.randrange(self.nchunks)
                self.port_run(c, self.rnd.randint(1, 64), head=self.rnd.randrange(2))
                t_send = time.monotonic()
                self.checkpoint()
                windows.append((t_send, time.monotonic()))
            wait_writes(len(writes) + 2)
        finally:
            stop.set()
            t.join()
        if errors:
            raise Failure(errors[0])
        print("checkpoint stream: %d writes, %d of them while a checkpoint ran"
              % (len(writes), sum(any(t0 < r and t1 > s for s, r in windows)
                                  for t0, t1, _, _ in writes)))
        self.check_stream(writes, *windows[-1])
        f = self.ctl.status("top").split()
        if int(f[8]) - ckpts0 != self.a.checkpoints:
            raise Failure("status counts %d checkpoints, sent %d"
                          % (int(f[8]) - ckpts0, self.a.checkpoints))
        self.verify_checkpoint("checkpoint stream")

    def check_stream(self, writes, t_send, t_ret):
        cb, sec = self.cb, self.m.sec
        after, during = {}, {}
        for t0, t1, off, data in writes:
            into = after if t0 > t_ret else during if t1 >= t_send else None
            cs = range(off // cb, (off + len(data)) // cb)
            if into is not None:
                for c in cs[:-1] if self.m.bug == "run-tail" else cs:
                    into[c] = data[c * cb - off:(c + 1) * cb - off]
        got = pread(self.tfd, 0, self.size)
        kept = 0
        for c in range(self.nchunks):
            g, s = got[c * cb:(c + 1) * cb], sec[c * cb:(c + 1) * cb]
            want = [after[c]] if c in after else [s, during[c]] if c in during else [s]
            if g not in want:
                raise Failure("checkpoint stream: top chunk %d reads %r, expected "
                              "one of %r" % (c, g[:24], [bytes(w[:24]) for w in want]))
            kept += g != s
        self.compare("checkpoint stream: secondary", pread(self.sfd, 0, self.size), sec)
        state, err, (act, _), (hid, _), commit = self.status()
        if (state, err, act, hid, commit) != ("running", 0, kept, 0, kept):
            raise Failure("checkpoint stream: status %s error %d, %d active and %d "
                          "hidden slots used, %d to commit; expected running 0 "
                          "%d 0 %d" % (state, err, act, hid, commit, kept, kept))
        print("checkpoint stream: %d chunks written since the last checkpoint: ok"
              % kept)
        self.m.top = bytearray(got)

    def phase_full(self):
        """A top whose stores hold F (active) and H (hidden) chunks, F, H
        >= 48.  What the data path did when dm still split every bio at
        chunk boundaries (observed on main, 6.12 and 6.1; never a hang, an
        oops or a wrong status):

          - a top run needing more new slots than are free fails with ENOSPC;
            its chunks take slots in order while slots last, and those
            chunks hold the new data; the others keep their old data;
          - chunks of the run that active holds already are written, also
            after a chunk that failed; active's full state is no replication
            error (status error 0);
          - a port run needing more copies than hidden has free fails with
            ENOSPC: the first chunks are copied and written, the others are
            left alone on the secondary, and status records error 28;
          - a port write to chunks active holds durably (after a top fsync)
            needs no copy, even with hidden full;
          - a checkpoint frees both stores and clears the error."""
        _, _, (_, f), (_, h), _ = self.status()
        if f < 48 or h < 48:
            raise Failure("stores of %d and %d chunks: too big for this phase" % (f, h))
        self.run(0, f - 12)				# F-12 used
        b = f + 40
        self.top_fails(b, 24, range(b, b + 12))		# F used
        self.verify("full active: a run of 24 chunks with 12 free")
        self.top_fails(b + 30, 4, [], head=1)
        self.top_fails(b - 4, 8, range(b, b + 4))	# fresh, then mapped
        self.top_fails(f - 16, 8, range(f - 16, f - 12))	# mapped, then fresh
        self.top_fails(b + 8, 8, range(b + 8, b + 12), head=3)
        self.run(0, f - 12)
        self.run(b, 12, head=1, tail=1)
        self.verify("full active: mixed runs, rewrites of mapped runs")
        self.recreate("full active")

        os.fsync(self.tfd)				# active durable: no copies
        self.port_run(0, 20)
        p = b + 60
        self.port_run(p, h - 8)
        self.verify("full active: port runs")
        data = stamp(self.tag(b"P"), (p + h) * self.cb, 20 * self.cb)
        try:
            pwrite(self.pfd, (p + h) * self.cb, data)
            raise Failure("port run needing 20 copies with 8 free succeeded")
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise Failure("port run into full hidden: %s, expected ENOSPC" % e) from e
        self.m.port_write((p + h) * self.cb, data[:8 * self.cb])
        self.port_run(0, 8)
        self.verify("full hidden: a port run of 20 chunks with 8 free", error=errno.ENOSPC)

        self.verify_checkpoint("full")
        self.run(100, f)
        self.top_fails(100 + f, 2, [])
        os.fsync(self.tfd)
        self.port_run(100, h + 4)		# 4 copies: active holds the rest
        self.verify("full again after the checkpoint")
        self.recreate("full again")
        self.verify_checkpoint("full")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("phase", choices=["fill", "seq", "race", "checkpoint", "full"])
    p.add_argument("chunk", type=int, help="chunk size in sectors")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ops", type=int, default=64, help="race: writes per writer")
    p.add_argument("--rounds", type=int, default=3, help="race: rounds")
    p.add_argument("--checkpoints", type=int, default=12)
    p.add_argument("--model-bug", choices=["none", "run-tail"], default="none")
    a = p.parse_args()
    if a.phase == "fill":
        fd = os.open(SEC, os.O_RDWR | os.O_DIRECT)
        size = os.lseek(fd, 0, os.SEEK_END)
        for off in range(0, size, MIB):
            pwrite(fd, off, stamp(b"OLD", off, min(MIB, size - off)))
        return 0
    t = Test(a)
    try:
        getattr(t, "phase_" + a.phase)()
    except (Failure, OSError) as e:
        print("FAIL (%s, chunk %d, seed %d): %s" % (a.phase, a.chunk, a.seed, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
