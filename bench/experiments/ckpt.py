#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Where a checkpoint's time goes (ckpt.sh), on virtio as figure 4: 1 MiB
written through the top and 1 MiB through the port before each of ROUNDS
checkpoints, then, timed from user space as figure 4 times it: a message
that only sets a value (commit_depth: the DM_TARGET_MSG ioctl's own round
trip), the checkpoint, and on the spare disk a flush (fsync of the block
device) and a 4 KiB O_DSYNC write (what a FUA header costs on virtio-blk).
Prints "RESULT what=W us=X min=Y" lines (medians).  A version that also
traced dmr_new_epoch() with ftrace's function_graph crashed the guest once
under TCG (an int3 Oops in ftrace's text patching): bench/README.md."""
import collections
import mmap
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.environ["REPO"], "bench"))
import bench  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "40"))


def us(t0):
    return (time.perf_counter() - t0) * 1e6


def rounds(p, d, n, times):
    half = d.sectors * 512 // 2
    fd = os.open(d.spare, os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
    buf = mmap.mmap(-1, 4096)
    for _ in range(n):
        bench.fill(p.top, 0, bench.MiB)
        bench.fill(p.port, half, bench.MiB)
        t0 = time.perf_counter()
        bench.dm_message("top", "commit_depth 8")
        times["a message that only sets a value (commit_depth)"].append(us(t0))
        t0 = time.perf_counter()
        bench.dm_message("top", "checkpoint")
        times["checkpoint"].append(us(t0))
        t0 = time.perf_counter()
        os.fsync(fd)
        times["flush of a virtio disk"].append(us(t0))
        t0 = time.perf_counter()
        os.pwrite(fd, buf, 0)
        times["4 KiB O_DSYNC write to a virtio disk"].append(us(t0))
    os.close(fd)


def main():
    d = bench.Devices("virtio")
    p = bench.Ours(d)
    try:
        times = collections.defaultdict(list)
        rounds(p, d, ROUNDS, times)
        for k, v in times.items():
            print("RESULT what=%r us=%.0f min=%.0f" %
                  (k, statistics.median(v), min(v)))
    finally:
        p.close()
    print("ok - checkpoint breakdown")


main()
