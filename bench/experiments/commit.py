#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The failover commit's knobs (commit.sh): 512 MiB of dirty data (half
active, half hidden) committed by ours under each variant (the module,
build/exp/KO.ko; commit_depth; dm-kcopyd's sub-job size in KiB:
KO:DEPTH:KIB), with QEMU's failover and dd beside them;
rounds in rotated order, no reader.  Prints "RESULT round=R variant=V
mibs=X" lines, with "kernel=Nms" (the kernel's "failover done ... in N ms")
for ours."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ["REPO"], "bench"))
import bench  # noqa: E402

SUB = "/sys/module/dm_mod/parameters/kcopyd_subjob_size_kb"


def commit_ours(p, depth):
    bench.dm_message("top", "commit_depth %d" % depth)
    t0 = time.perf_counter()
    bench.dm_message("top", "failover")
    while True:
        st = bench.dm_status("top").split()
        if st[1] == "done":
            return time.perf_counter() - t0
        if st[1] == "failover_failed":
            raise RuntimeError(" ".join(st))
        time.sleep(0.002)


def commit_qemu(p):
    t0 = time.perf_counter()
    p.q.cmd("xen-set-replication", enable=False, primary=False, failover=True)
    while ("top", "file", "sec") not in p.graph():
        time.sleep(0.002)
    return time.perf_counter() - t0


def one(d, v, total, half):
    if v == "dd":
        t0 = time.perf_counter()
        bench.run(["dd", "if=" + d.act, "of=" + d.sec, "bs=1M",
                   "count=%d" % (total // bench.MiB), "iflag=direct",
                   "oflag=direct", "conv=fsync", "status=none"])
        return time.perf_counter() - t0
    ko, depth, sub = ("", 8, 512) if v == "qemu" else v.split(":")
    depth, sub = int(depth), int(sub)
    if ko:
        subprocess.run(["rmmod", "dm_replication"], capture_output=True)
        subprocess.run(["insmod", os.path.join(os.environ["REPO"], "build", "exp",
                                               ko + ".ko")], check=True)
    # A kcopyd client reads the sub-job size when it is made: with the table.
    with open(SUB, "w") as f:
        f.write(str(sub))
    p = (bench.Qemu if v == "qemu" else bench.Ours)(d)
    try:
        p.reset()
        bench.fill(p.top, 0, total // 2)
        bench.fill(p.port, half, total // 2)
        return commit_qemu(p) if v == "qemu" else commit_ours(p, depth)
    finally:
        p.close()
        with open(SUB, "w") as f:
            f.write("512")


def main():
    d = bench.Devices("virtio")
    d.prefill()
    total = bench.env_int("DMR_EXP_MIB", 512) * bench.MiB
    half = d.sectors * 512 // 2
    # The guest does not inherit the host's environment: build/exp/variants.
    vf = os.path.join(os.environ["REPO"], "build", "exp", "variants")
    variants = (open(vf).read() if os.path.exists(vf) else
                "dd qemu kc:8:512 own:8:512 kc:8:1024 kc:32:512 own:32:512 own:2:512").split()
    for r in range(bench.env_int("DMR_EXP_ROUNDS", 3)):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            secs = one(d, v, total, half)
            k_ms = ""
            if ":" in v:
                done = [ln for ln in subprocess.run(
                    ["dmesg"], capture_output=True, text=True).stdout.splitlines()
                    if "failover done:" in ln]
                k_ms = " kernel=%s" % done[-1].split(" in ")[-1].replace(" ", "") if done else ""
            print("RESULT round=%d variant=%s mibs=%.0f%s" % (
                r + 1, v, total / bench.MiB / secs, k_ms), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
