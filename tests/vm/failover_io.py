#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Helpers of 56-failover-fio.sh.

  failover_io.py image DEV FILE
      crc32 of every 4 KiB block of DEV into FILE (the top's image at the
      failover).
  failover_io.py reader TOP FILE --skip OFF:LEN [--seed S] [--max SECS]
      until TOP's state is done: random 4 KiB O_DIRECT preads of TOP outside
      [OFF, OFF+LEN) (bytes), each checked against FILE and timed (--ready
      FILE2: created when the reads begin); prints
      "reads N (M during failover), mismatches K, max_ms X, p99_ms Y" and a
      JSON line; exit 1 on a mismatch.
  failover_io.py compare DEV FILE --skip OFF:LEN
      every 4 KiB block of DEV outside the range must match FILE.
"""
import argparse
import array
import fcntl
import json
import mmap
import os
import random
import struct
import sys
import time
import zlib

BS = 4096
DM_IOCTL = struct.Struct("=3IIIIiIIIQ128s129s7s")
DM_SPEC = struct.Struct("=QQiI16s")
DM_TABLE_STATUS = (3 << 30) | (DM_IOCTL.size << 16) | (0xFD << 8) | 12


def top_state(ctl, name):
    buf = bytearray(4096)
    DM_IOCTL.pack_into(buf, 0, 4, 0, 0, len(buf), DM_IOCTL.size, 0, 0, 0, 0,
                       0, 0, name.encode(), b"", b"")
    fcntl.ioctl(ctl, DM_TABLE_STATUS, buf, True)
    p = DM_IOCTL.unpack_from(buf, 0)[4] + DM_SPEC.size
    return bytes(buf[p:buf.index(b"\0", p)]).decode().split()


def crcs(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    out = array.array("I")
    step = 1 << 20
    m = mmap.mmap(-1, step)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        off = 0
        while off < size:
            n = os.preadv(fd, [m], off)
            if n <= 0 or n % BS:
                raise OSError("short read of %s at %d" % (path, off))
            for i in range(0, n, BS):
                out.append(zlib.crc32(m[i:i + BS]))
            off += n
    finally:
        m.close()
        os.close(fd)
    return out


def load(path):
    a = array.array("I")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    return a


def skip_range(s):
    off, length = (int(x) for x in s.split(":"))
    return off // BS, (off + length) // BS


def image(args):
    a = crcs(args.dev)
    with open(args.file, "wb") as f:
        a.tofile(f)
    print("# image of %s: %d blocks" % (args.dev, len(a)))
    return 0


def compare(args):
    want = load(args.file)
    got = crcs(args.dev)
    lo, hi = skip_range(args.skip)
    bad = [b for b in range(len(want)) if not lo <= b < hi and
           (b >= len(got) or got[b] != want[b])]
    if bad:
        print("not ok - %s: %d blocks outside the fio region differ from the "
              "image at the failover, first at byte %d" % (
                  args.dev, len(bad), bad[0] * BS))
        return 1
    print("ok - %s: all %d blocks outside the fio region are the top's "
          "image at the failover" % (args.dev, len(want) - (hi - lo)))
    return 0


def reader(args):
    want = load(args.file)
    lo, hi = skip_range(args.skip)
    blocks = [b for b in (range(0, lo), range(hi, len(want))) if len(b)]
    rnd = random.Random(args.seed)
    name = os.path.basename(args.top)
    ctl = os.open("/dev/mapper/control", os.O_RDWR)
    fd = os.open(args.top, os.O_RDONLY | os.O_DIRECT)
    m = mmap.mmap(-1, BS)
    lat = []
    lat_fo = []
    bad = []
    reads = 0
    end = time.monotonic() + args.max
    last_poll = 0.0
    state = top_state(ctl, name)[1]
    t_fo = t_done = None
    if args.ready:
        open(args.ready, "w").close()
    try:
        while time.monotonic() < end:
            t = time.monotonic()
            if t - last_poll > 0.02:
                state = top_state(ctl, name)[1]
                last_poll = t
                if state == "failover" and t_fo is None:
                    t_fo = t
                if state == "done":
                    t_done = t
                    break
            r = rnd.choice(blocks)
            b = rnd.randrange(r.start, r.stop)
            t0 = time.monotonic()
            n = os.preadv(fd, [m], b * BS)
            dt = time.monotonic() - t0
            reads += 1
            lat.append(dt)
            if state == "failover":
                lat_fo.append((dt, t0))
            if n != BS or zlib.crc32(m) != want[b]:
                bad.append(b)
    finally:
        m.close()
        os.close(fd)
        os.close(ctl)
    lat_fo.sort()
    mx = lat_fo[-1][0] * 1000 if lat_fo else 0.0
    p99 = lat_fo[int(len(lat_fo) * 0.99)][0] * 1000 if lat_fo else 0.0
    # The slowest reads, when: seconds after the state was first seen
    # failover, and before done was first seen (state polled every 20 ms).
    slow = ["%.1f ms at +%.2fs/-%.2fs" % (
        d * 1000, t - t_fo if t_fo else 0.0, t_done - t if t_done else 0.0)
        for d, t in reversed(lat_fo[-5:])]
    print("reads %d (%d during failover), mismatches %d, max_ms %.1f, "
          "p99_ms %.1f, final state %s; slowest (after failover seen/before "
          "done seen): %s"
          % (reads, len(lat_fo), len(bad), mx, p99, state, ", ".join(slow)))
    print(json.dumps({"reads": reads, "reads_failover": len(lat_fo),
                      "mismatches": len(bad), "max_ms": mx, "p99_ms": p99,
                      "state": state, "first_bad": bad[:5]}))
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("image")
    s.add_argument("dev")
    s.add_argument("file")
    s = sub.add_parser("compare")
    s.add_argument("dev")
    s.add_argument("file")
    s.add_argument("--skip", default="0:0")
    s = sub.add_parser("reader")
    s.add_argument("top")
    s.add_argument("file")
    s.add_argument("--skip", default="0:0")
    s.add_argument("--seed", type=int, default=56)
    s.add_argument("--max", type=float, default=300)
    s.add_argument("--ready", help="create this file when reading")
    args = p.parse_args()
    return {"image": image, "compare": compare, "reader": reader}[args.cmd](
        args)


if __name__ == "__main__":
    sys.exit(main())
