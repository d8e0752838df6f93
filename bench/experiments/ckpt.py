#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Where a checkpoint's time goes (ckpt.sh), on virtio as figure 4: 1 MiB
written through the top and 1 MiB through the port before each checkpoint,
then, timed from user space as figure 4 times it: a message the target
only stores a value, commit_depth (the DM_TARGET_MSG ioctl's own round trip), the checkpoint, and on
the spare disk a flush (fsync of the block device) and a 4 KiB O_DSYNC
write (what a FUA header costs on virtio-blk).  Then the same rounds with
ftrace's function_graph on dmr_new_epoch(), depth 2: each step's time in
the kernel.  Prints "RESULT what=W us=X" lines (medians) and
"RESULT step=S us=X n=N"."""
import collections
import mmap
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.environ["REPO"], "bench"))
import bench  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "40"))
TR = "/sys/kernel/tracing"


def us(t0):
    return (time.perf_counter() - t0) * 1e6


def tw(name, text):
    with open(os.path.join(TR, name), "w") as f:
        f.write(text)


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
        if not os.path.exists(os.path.join(TR, "current_tracer")):
            bench.run(["mount", "-t", "tracefs", "nodev", TR])
        tw("current_tracer", "nop")
        tw("set_graph_function", "dmr_new_epoch")
        tw("max_graph_depth", "2")
        tw("trace", "")
        tw("current_tracer", "function_graph")
        tw("tracing_on", "1")
        rounds(p, d, ROUNDS, collections.defaultdict(list))
        tw("tracing_on", "0")
        steps = collections.defaultdict(list)
        text = open(os.path.join(TR, "trace")).read()
        with open(os.path.join(bench.OUT, "ckpt-trace.txt"), "w") as f:
            f.write(text)
        for line in text.splitlines():
            # " 1)   + 12.345 us   |    dmr_freeze [dm_replication]();"
            if "|" not in line or " us " not in line:
                continue
            left, right = line.split("|", 1)
            f = left.split()
            try:
                val = float(f[-2])
            except (ValueError, IndexError):
                continue
            name = right.strip().rstrip(";").strip()
            if name == "}":
                name = "dmr_new_epoch (total)"
            steps[name.split("[")[0].strip()].append(val)
        tw("current_tracer", "nop")
        for k, v in sorted(steps.items(), key=lambda kv: -statistics.median(kv[1])):
            print("RESULT step=%r us=%.0f n=%d" %
                  (k, statistics.median(v), len(v)))
    finally:
        p.close()
    print("ok - checkpoint breakdown")


main()
