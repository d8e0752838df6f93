#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Read and replay a dm-log-writes log (python3, stdlib only).

  logwrites.py --list LOG            one line per entry:
                                     INDEX SECTOR NR_SECTORS FLAGS [MARK]
  logwrites.py --summary LOG         counts of entries, flushes, FUA, marks...
  logwrites.py --replay LOG --to DEV [--from N] [--end N | --end-mark NAME]
                                     write entries [N, END) onto DEV (END: the
                                     entry after mark NAME, or all entries)

Entries are numbered from 0 in log order (dm-log-writes logs a write when it
completes, and every write that completed before a flush just before that
flush's entry); INDEX counts every entry, marks included.  SECTOR and
NR_SECTORS are in the log's sector size (super.sectorsize, the device's logical
block size); FLAGS is a "|"-joined set of FLUSH FUA DISCARD MARK METADATA.
A discard is replayed as zeroes.

As a module:

  log = logwrites.Log("/dev/vdb")
  for e in log.entries: ...        # Entry(index, sector, nr, flags, off, mark)
  r = logwrites.Replayer(log, "/dev/vdc")
  r.advance(120)                   # entries [0, 120) are now on the device
  r.advance(300)                   # only [120, 300) are written
"""
import argparse
import collections
import mmap
import os
import struct
import sys

WRITE_LOG_MAGIC = 0x6a736677736872
SUPER = struct.Struct("<QQQI")
ENTRY = struct.Struct("<QQQQ")
FLUSH, FUA, DISCARD, MARK, METADATA = 1, 2, 4, 8, 16
FLAG_NAMES = ((FLUSH, "FLUSH"), (FUA, "FUA"), (DISCARD, "DISCARD"), (MARK, "MARK"),
              (METADATA, "METADATA"))

Entry = collections.namedtuple("Entry", "index sector nr flags off mark")


def flag_str(flags):
    return "|".join(n for f, n in FLAG_NAMES if flags & f) or "-"


class Log:
    """The entries of a log device (read once, on construction)."""

    def __init__(self, path):
        self.path = path
        fd = os.open(path, os.O_RDONLY)
        try:
            magic, version, self.nr_entries, self.sectorsize = SUPER.unpack(
                os.pread(fd, SUPER.size, 0))
            if magic != WRITE_LOG_MAGIC:
                raise ValueError("%s: not a dm-log-writes log (magic %#x)" % (path, magic))
            if version != 1:
                raise ValueError("%s: log version %d" % (path, version))
            ss = self.sectorsize
            self.entries = []
            pos = ss
            for i in range(self.nr_entries):
                hdr = os.pread(fd, ss, pos)
                sector, nr, flags, datalen = ENTRY.unpack_from(hdr)
                mark = None
                if flags & MARK:
                    mark = hdr[ENTRY.size:ENTRY.size + datalen].decode(errors="replace")
                self.entries.append(Entry(i, sector, nr, flags, pos + ss, mark))
                pos += ss
                if not flags & (DISCARD | MARK):
                    pos += nr * ss
        finally:
            os.close(fd)

    def mark_index(self, name):
        for e in self.entries:
            if e.mark == name:
                return e.index
        raise KeyError("no mark %r in %s" % (name, self.path))


class Replayer:
    """Replays a log onto a device, incrementally: advance(n) writes the
    entries between the last position and n (O_DIRECT, then fsync)."""

    def __init__(self, log, dev, pos=0):
        self.log = log
        self.pos = pos
        self.lfd = os.open(log.path, os.O_RDONLY | os.O_DIRECT)
        self.dfd = os.open(dev, os.O_RDWR | os.O_DIRECT)
        self.buf = mmap.mmap(-1, 1 << 20)
        self.zero = mmap.mmap(-1, 1 << 20)

    def close(self):
        os.close(self.lfd)
        os.close(self.dfd)

    def _copy(self, e):
        ss = self.log.sectorsize
        done, total = 0, e.nr * ss
        while done < total:
            n = min(len(self.buf), total - done)
            view = memoryview(self.buf)[:n]
            if e.flags & DISCARD:
                view = memoryview(self.zero)[:n]
            elif os.preadv(self.lfd, [view], e.off + done) != n:
                raise OSError("short read of entry %d" % e.index)
            if os.pwritev(self.dfd, [view], e.sector * ss + done) != n:
                raise OSError("short write of entry %d" % e.index)
            done += n

    def advance(self, end):
        if end < self.pos:
            raise ValueError("cannot go back from %d to %d" % (self.pos, end))
        for e in self.log.entries[self.pos:end]:
            if e.nr and not e.flags & MARK:
                self._copy(e)
        self.pos = end
        os.fsync(self.dfd)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--list", action="store_true")
    g.add_argument("--summary", action="store_true")
    g.add_argument("--replay", action="store_true")
    p.add_argument("--to", help="the device to replay onto")
    p.add_argument("--from", dest="start", type=int, default=0)
    p.add_argument("--end", type=int)
    p.add_argument("--end-mark")
    a = p.parse_args()
    log = Log(a.log)
    if a.list:
        for e in log.entries:
            print("%d %d %d %s%s" % (e.index, e.sector, e.nr, flag_str(e.flags),
                                     " " + e.mark if e.mark is not None else ""))
    elif a.summary:
        n = collections.Counter()
        for e in log.entries:
            for f, name in FLAG_NAMES:
                if e.flags & f:
                    n[name] += 1
            if not e.flags & (MARK | DISCARD) and e.nr:
                n["data sectors"] += e.nr
        print("%d entries, sector size %d; %s" % (
            log.nr_entries, log.sectorsize,
            ", ".join("%s %d" % (k, n[k]) for k in
                      ("FLUSH", "FUA", "DISCARD", "MARK", "METADATA", "data sectors"))))
    else:
        if not a.to:
            p.error("--replay needs --to DEV")
        end = len(log.entries)
        if a.end is not None:
            end = a.end
        elif a.end_mark:
            end = log.mark_index(a.end_mark) + 1
        r = Replayer(log, a.to, a.start)
        r.advance(end)
        r.close()
        print("replayed entries [%d, %d)" % (a.start, end))
    return 0


if __name__ == "__main__":
    sys.exit(main())
