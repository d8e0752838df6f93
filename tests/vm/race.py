#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Races on the same chunks: the port's copy-before-write against top reads
and top copy-ups.  Each round, after a checkpoint:

  - port threads write NEW data into every chunk of a region (random order);
  - top reader threads read random chunks that no top writer touches and
    must see the OLD data (the content at the checkpoint), never NEW;
  - top writer threads write one sector (a partial chunk: a copy-up) into
    the other chunks and then read the chunk back: their sector, and OLD
    everywhere else.

Then the top must equal OLD overlaid with the top writes, the secondary must
hold NEW everywhere in the region, and after a checkpoint the top must read
the secondary.  Exit 1 with a message on the first violation.

  race.py TOP PORT SECONDARY CHUNKS ROUNDS SEED
"""
import mmap
import os
import random
import subprocess
import sys
import threading

BS = 4096


def buf(data):
    m = mmap.mmap(-1, len(data))
    m.write(data)
    return m


def chunk_data(tag, chunk):
    return (b"%s chunk %08d " % (tag, chunk)).ljust(64, b".") * (BS // 64)


class Failure(Exception):
    pass


def pread(fd, off, n=BS):
    m = mmap.mmap(-1, n)
    got = os.preadv(fd, [m], off)
    if got != n:
        raise Failure("short read at %d" % off)
    return bytes(m)


def pwrite(fd, off, data):
    if os.pwritev(fd, [buf(data)], off) != len(data):
        raise Failure("short write at %d" % off)


def checkpoint():
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__),
                                                 "dmmsg.py"), "top",
                    "checkpoint"], check=True)


def main(top, port, sec, nchunks, rounds, seed):
    rnd = random.Random(seed)
    flags = os.O_RDWR | os.O_DIRECT
    tfd, pfd, sfd = (os.open(p, flags) for p in (top, port, sec))
    errors = []

    # Round 0's OLD content, written through the port then checkpointed.
    old = {c: chunk_data(b"OLD0", c) for c in range(nchunks)}
    for c in range(nchunks):
        pwrite(pfd, c * BS, old[c])
    checkpoint()

    for r in range(1, rounds + 1):
        new = {c: chunk_data(b"NEW%d" % r, c) for c in range(nchunks)}
        chunks = list(range(nchunks))
        rnd.shuffle(chunks)
        written = set(chunks[: nchunks // 3])	# top writers' chunks
        readable = [c for c in chunks if c not in written]
        topw = {}

        def port_writer(part):
            try:
                for c in part:
                    pwrite(pfd, c * BS, new[c])
            except Exception as e:	# noqa: BLE001
                errors.append("port writer: %r" % e)

        def top_reader(seed2):
            lr = random.Random(seed2)
            try:
                for _ in range(nchunks * 2):
                    c = lr.choice(readable)
                    got = pread(tfd, c * BS)
                    if got != old[c]:
                        errors.append("round %d: top read of chunk %d saw %r"
                                      % (r, c, got[:24]))
                        return
            except Exception as e:	# noqa: BLE001
                errors.append("top reader: %r" % e)

        def top_writer(part, seed2):
            lr = random.Random(seed2)
            try:
                for c in part:
                    s = lr.randrange(8)
                    sector = (b"TOP%d chunk %08d sector %d " % (r, c, s)).ljust(512, b"*")
                    pwrite(tfd, c * BS + s * 512, sector)
                    want = old[c][: s * 512] + sector + old[c][(s + 1) * 512:]
                    topw[c] = want
                    got = pread(tfd, c * BS)
                    if got != want:
                        errors.append("round %d: top copy-up of chunk %d reads %r"
                                      % (r, c, got[:24]))
                        return
            except Exception as e:	# noqa: BLE001
                errors.append("top writer: %r" % e)

        wl = sorted(written)
        threads = [threading.Thread(target=port_writer, args=(chunks[i::3],))
                   for i in range(3)]
        threads += [threading.Thread(target=top_reader, args=(seed * 100 + r * 10 + i,))
                    for i in range(3)]
        threads += [threading.Thread(target=top_writer, args=(wl[i::2], seed * 1000 + r * 10 + i))
                    for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise Failure(errors[0])

        for c in range(nchunks):
            want = topw.get(c, old[c])
            if pread(tfd, c * BS) != want:
                raise Failure("round %d: after the race, top chunk %d is wrong" % (r, c))
            if pread(sfd, c * BS) != new[c]:
                raise Failure("round %d: secondary chunk %d lacks the port's write" % (r, c))
        checkpoint()
        for c in range(nchunks):
            if pread(tfd, c * BS) != new[c]:
                raise Failure("round %d: after checkpoint top chunk %d != secondary" % (r, c))
        old = new
        print("round %d: %d chunks, %d top copy-ups, 3 port writers, 3 top readers: ok"
              % (r, nchunks, len(wl)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
                      int(sys.argv[5]), int(sys.argv[6])))
    except Failure as e:
        print("FAIL: %s" % e)
        sys.exit(1)
