#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Chunk stamps, I/O and a crash model for 45-failed-mode.sh.

  failed_mode.py init   DEV TAG [--state FILE]
  failed_mode.py zero   DEV...
  failed_mode.py write  DEV TAG CHUNKS [--dsync] [--shuffle SEED]
                        [--state FILE [--may-land]]
  failed_mode.py fsync  DEV [--state FILE]
  failed_mode.py check  DEV --state FILE (--current | --durable)
  failed_mode.py observe DEV --state FILE
  failed_mode.py expect DEV SPEC...
  failed_mode.py dump   DEV
  failed_mode.py serve

`serve` reads one command a line (the words above, shell-quoted) from stdin
and answers with its output and a line "#end": a test runs it as a bash
coprocess, since starting Python costs a second or more under TCG.

`zero` zeroes the first 4 KiB of each DEV (a new session's stores).

Chunks are 4 KiB.  A chunk written with TAG holds, in each of its eight
512-byte sectors, the text "dmr-fm TAG chunk C sector S" padded with dots, so
a read names the write that left the whole chunk (its tag), or says
"?mixed" (sectors of different writes: a torn chunk), "?garbage", "zero".

CHUNKS: "10-19", "3,5,7" or "10-19,40".  All I/O is O_DIRECT through an
aligned buffer.  `write` and `fsync` print one word: "ok", or the errno's
name when every write (or the fsync) failed with it, else "mixed: ...".

The model (--state, JSON) follows a top device: for each chunk the tags it may
read now ("current") and the tags it may read after a power cut ("durable").
A write that succeeded makes its tag current and possibly durable; a write that
failed changes nothing (with --may-land: its tag may be there, now and after a
cut); an fsync that succeeded makes the current tags the durable ones; a failed
fsync changes nothing.  `observe` (after a reload: the disk is read anew)
checks the device against the durable tags and takes what it reads as current.

`expect` checks explicit tags: SPEC is CHUNKS=TAG[|TAG...], or *=TAG[|TAG...]
for every chunk no other SPEC names.  `check` and `expect` print "ok" or one
line per wrong chunk (the first 20), and exit 0 either way.
"""
import argparse
import errno
import functools
import json
import mmap
import os
import random
import shlex
import sys

CHUNK = 4096
SECTOR = 512


@functools.lru_cache(maxsize=8192)
def stamp(tag, chunk):
    out = bytearray()
    for s in range(CHUNK // SECTOR):
        line = ("dmr-fm %s chunk %d sector %d\n" % (tag, chunk, s)).encode()
        out += line.ljust(SECTOR, b".")
    return bytes(out)


def decode(data, chunk):
    if data == bytes(CHUNK):
        return "zero"
    head = data[:SECTOR].split(b"\n", 1)[0].decode("ascii", "replace").split()
    if len(head) != 6 or head[0] != "dmr-fm" or head[2] != "chunk":
        return "?garbage"
    if head[3] != str(chunk):
        return "?chunk%s" % head[3]
    if data != stamp(head[1], chunk):
        return "?mixed"
    return head[1]


def parse_chunks(spec):
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def dev_chunks(fd):
    return os.lseek(fd, 0, os.SEEK_END) // CHUNK


def read_tags(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        n = dev_chunks(fd)
        step = 256
        buf = mmap.mmap(-1, step * CHUNK)
        tags = []
        for first in range(0, n, step):
            cnt = min(step, n - first)
            view = memoryview(buf)[:cnt * CHUNK]
            got = os.preadv(fd, [view], first * CHUNK)
            view.release()
            if got != cnt * CHUNK:
                raise OSError(errno.EIO, "short read at chunk %d" % first)
            for i in range(cnt):
                tags.append(decode(buf[i * CHUNK:(i + 1) * CHUNK], first + i))
        return tags
    finally:
        os.close(fd)


def load_state(path):
    with open(path) as f:
        return json.load(f)


def save_state(path, st):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.rename(tmp, path)


def add(tags, tag):
    return sorted(set(tags) | {tag})


def report(bad):
    if not bad:
        return ["ok"]
    return ["%d wrong chunks:" % len(bad)] + ["  " + line for line in bad[:20]]


def cmd_init(args):
    dev, tag = args.pos
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    try:
        n = dev_chunks(fd)
        step = 256
        buf = mmap.mmap(-1, step * CHUNK)
        for first in range(0, n, step):
            cnt = min(step, n - first)
            for i in range(cnt):
                buf[i * CHUNK:(i + 1) * CHUNK] = stamp(tag, first + i)
            view = memoryview(buf)[:cnt * CHUNK]
            os.pwritev(fd, [view], first * CHUNK)
            view.release()
        os.fsync(fd)
    finally:
        os.close(fd)
    if args.state:
        save_state(args.state, {"cur": [[tag]] * n, "dur": [[tag]] * n})
    return ["ok"]


def cmd_zero(args):
    buf = mmap.mmap(-1, CHUNK)
    for dev in args.pos:
        fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
        try:
            os.pwritev(fd, [buf], 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    return ["ok"]


def cmd_write(args):
    dev, tag, spec = args.pos
    chunks = parse_chunks(spec)
    if args.shuffle is not None:
        random.Random(args.shuffle).shuffle(chunks)
    st = load_state(args.state) if args.state else None
    flags = os.O_WRONLY | os.O_DIRECT | (os.O_DSYNC if args.dsync else 0)
    fd = os.open(dev, flags)
    buf = mmap.mmap(-1, CHUNK)
    results = {}
    try:
        for c in chunks:
            buf[:] = stamp(tag, c)
            try:
                os.pwritev(fd, [buf], c * CHUNK)
                results[c] = "ok"
            except OSError as e:
                results[c] = errno.errorcode.get(e.errno, str(e.errno))
            if st is not None:
                if results[c] == "ok":
                    st["cur"][c] = [tag]
                    st["dur"][c] = add(st["dur"][c], tag)
                elif args.may_land:
                    st["cur"][c] = add(st["cur"][c], tag)
                    st["dur"][c] = add(st["dur"][c], tag)
    finally:
        os.close(fd)
    if st is not None:
        save_state(args.state, st)
    words = set(results.values())
    if len(words) == 1:
        return [words.pop()]
    return ["mixed: " + " ".join("%d:%s" % (c, results[c]) for c in chunks)]


def cmd_fsync(args):
    (dev,) = args.pos
    fd = os.open(dev, os.O_WRONLY)
    try:
        os.fsync(fd)
        word = "ok"
    except OSError as e:
        word = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        os.close(fd)
    if word == "ok" and args.state:
        st = load_state(args.state)
        st["dur"] = [list(t) for t in st["cur"]]
        save_state(args.state, st)
    return [word]


def cmd_check(args):
    (dev,) = args.pos
    st = load_state(args.state)
    want = st["dur"] if args.durable else st["cur"]
    tags = read_tags(dev)
    bad = ["chunk %d reads %s, expected %s" % (c, t, "|".join(want[c]))
           for c, t in enumerate(tags) if t not in want[c]]
    return report(bad)


def cmd_observe(args):
    (dev,) = args.pos
    st = load_state(args.state)
    tags = read_tags(dev)
    bad = ["chunk %d reads %s, expected %s" % (c, t, "|".join(st["dur"][c]))
           for c, t in enumerate(tags) if t not in st["dur"][c]]
    st["cur"] = [[t] for t in tags]
    save_state(args.state, st)
    return report(bad)


def cmd_expect(args):
    dev = args.pos[0]
    tags = read_tags(dev)
    want = [None] * len(tags)
    default = None
    for spec in args.pos[1:]:
        where, alts = spec.split("=", 1)
        alts = alts.split("|")
        if where == "*":
            default = alts
            continue
        for c in parse_chunks(where):
            want[c] = alts
    bad = []
    for c, t in enumerate(tags):
        w = want[c] or default
        if w is not None and t not in w:
            bad.append("chunk %d reads %s, expected %s" % (c, t, "|".join(w)))
    return report(bad)


def cmd_dump(args):
    (dev,) = args.pos
    return ["%d %s" % (c, t) for c, t in enumerate(read_tags(dev))]


class Usage(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Usage(message)


def parser():
    p = Parser(prog="failed_mode.py", description=__doc__.splitlines()[0])
    p.add_argument("cmd", choices=["init", "zero", "write", "fsync", "check",
                                   "observe", "expect", "dump"])
    p.add_argument("pos", nargs="+")
    p.add_argument("--state")
    p.add_argument("--dsync", action="store_true")
    p.add_argument("--may-land", action="store_true")
    p.add_argument("--shuffle", type=int)
    p.add_argument("--current", action="store_true")
    p.add_argument("--durable", action="store_true")
    return p


def run(argv):
    """One command: its output lines (raises Usage)."""
    args = parser().parse_args(argv)
    need = {"init": 2, "write": 3, "fsync": 1, "check": 1, "observe": 1,
            "dump": 1}
    if args.cmd in need and len(args.pos) != need[args.cmd]:
        raise Usage("%s takes %d arguments" % (args.cmd, need[args.cmd]))
    if args.cmd in ("check", "observe") and not args.state:
        raise Usage("%s needs --state" % args.cmd)
    if args.cmd == "check" and args.current == args.durable:
        raise Usage("check needs --current or --durable")
    return globals()["cmd_" + args.cmd](args)


def serve():
    """One command a line on stdin; its output, then a line "#end"."""
    for line in sys.stdin:
        try:
            out = run(shlex.split(line))
        except Usage as e:
            out = ["usage error: %s" % e]
        except OSError as e:
            out = ["error: %s" % e]
        sys.stdout.write("".join(x + "\n" for x in out) + "#end\n")
        sys.stdout.flush()


def main():
    if sys.argv[1:] == ["serve"]:
        serve()
        return
    try:
        out = run(sys.argv[1:])
    except Usage as e:
        sys.exit("failed_mode.py: %s (see its docstring)" % e)
    for x in out:
        print(x)


if __name__ == "__main__":
    main()
