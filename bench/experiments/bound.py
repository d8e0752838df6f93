#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""How far the port's first touch through NBD could go within the crash rule
(bound.sh): figure 3's port first-touch jobs (4 KiB random writes once over
the region, QD1 over 8 MiB and QD32 over 32 MiB, through qemu-nbd, after a
reset), QEMU's replication driver against ours with 4 KiB chunks under
three modules (each also with 64 KiB chunks, QEMU's copy unit, as
"base64" and so on): "base" (build/exp/base.ko, the tree), "onewrite" and
"nopersist" (build/exp/bound.ko with bound.patch, dmr_exp=1 and 2;
measuring only, unsafe).  onewrite stands for the design of a record that
travels with its chunk's data: hidden's persist is one flush, with no record
write and no flush before it.  nopersist stands for QEMU's rule: no persist
at all.  Rounds in rotated order; prints "RESULT round=R dev=D peer=P qd=Q
iops=X" lines."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ["REPO"], "bench"))
import bench  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
EXP = os.path.join(os.environ["REPO"], "build", "exp")
# The peers, or those named in build/exp/bound-peers (the guest does not
# inherit the environment); a name ending in 64 is the same module with
# 64 KiB chunks (QEMU's copy unit).
PEERS = ["qemu", "base", "onewrite", "nopersist"]
if os.path.exists(os.path.join(EXP, "bound-peers")):
    PEERS = open(os.path.join(EXP, "bound-peers")).read().split()


def load(peer):
    subprocess.run(["rmmod", "dm_replication"], capture_output=True)
    if peer == "qemu":
        return
    peer = peer.removesuffix("64")
    ko = "base" if peer == "base" else "bound"
    exp = {"onewrite": 1, "nopersist": 2}.get(peer, 0)
    deps = subprocess.run(["modinfo", "-F", "depends",
                           os.path.join(EXP, ko + ".ko")],
                          capture_output=True, text=True, check=True)
    subprocess.run(["modprobe", "-a"] + deps.stdout.strip().split(","),
                   check=True)
    args = ["insmod", os.path.join(EXP, ko + ".ko")]
    if exp:
        args.append("dmr_exp=%d" % exp)
    subprocess.run(args, check=True)


def one(d, peer, rnd):
    load(peer)
    cls = bench.Ours64Nbd if peer.endswith("64") else bench.OursNbd
    p = (bench.Qemu if peer == "qemu" else cls)(d)
    try:
        poff = d.sectors * 512 // 2 // bench.MiB * bench.MiB
        for qd, size, off in ((1, 8 * bench.MiB, poff),
                              (32, 32 * bench.MiB, poff + 8 * bench.MiB)):
            p.reset()
            r = bench.fio(p.port, "randwrite", 4096, qd, size, offset=off)
            print("RESULT round=%d dev=%s peer=%s qd=%d iops=%.0f" %
                  (rnd, d.kind, peer, qd, r["iops"]), flush=True)
    finally:
        p.close()


def main():
    for kind in os.environ.get("KINDS", "virtio brd").split():
        d = bench.Devices(kind)
        d.prefill()
        for rnd, peer in bench.rotated(PEERS, ROUNDS):
            one(d, peer, rnd)
    print("ok - done")


if __name__ == "__main__":
    main()
