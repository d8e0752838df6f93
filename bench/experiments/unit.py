#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The copy unit of a port first touch (unit.sh): QEMU's replication driver
against ours with 4 KiB and with 64 KiB chunks, and with 4 KiB chunks and
port_copy_chunks 16, each through NBD, on virtio and on brd.  The jobs are figure 3's first-touch jobs (4 KiB random writes
that write every block of the region once, QD1 over 8 MiB, QD32 over
32 MiB, after a reset).  Beside the IOPS, on virtio (brd keeps no I/O
statistics), what the job read from the secondary device and wrote to the
hidden store's device (/sys/block/*/stat): the reads are the copies' reads,
so their count per write and their size say how often and how much each
peer copies.  Rounds in rotated order; prints "RESULT round=R dev=D peer=P
qd=Q iops=X sec_reads_per_write=A sec_kib_per_read=B hid_kib_per_write=C"
lines (A, B and C are "-" on brd)."""
import os
import sys

sys.path.insert(0, os.path.join(os.environ["REPO"], "bench"))
import bench  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))


PEERS = [bench.Qemu, bench.OursNbd, bench.Ours64Nbd, bench.OursUnitNbd]


def stat(dev):
    """(reads, sectors read, sectors written) of a whole disk."""
    name = os.path.basename(os.path.realpath(dev))
    f = open("/sys/block/%s/stat" % name).read().split()
    return int(f[0]), int(f[2]), int(f[6])


def one(d, cls, rnd):
    p = cls(d)
    try:
        poff = d.sectors * 512 // 2 // bench.MiB * bench.MiB
        for qd, size, off in ((1, 8 * bench.MiB, poff),
                              (32, 32 * bench.MiB, poff + 8 * bench.MiB)):
            p.reset()
            s0, h0 = stat(d.sec), stat(d.hid)
            r = bench.fio(p.port, "randwrite", 4096, qd, size, offset=off)
            s1, h1 = stat(d.sec), stat(d.hid)
            n = size // 4096
            reads, rsec, hsec = s1[0] - s0[0], s1[1] - s0[1], h1[2] - h0[2]
            if d.kind == "brd":
                counts = "- - -"
            else:
                counts = "%.4f %.1f %.2f" % (reads / n, rsec / 2 / max(reads, 1),
                                             hsec / 2 / n)
            print("RESULT round=%d dev=%s peer=%s qd=%d iops=%.0f "
                  "sec_reads_per_write=%s sec_kib_per_read=%s "
                  "hid_kib_per_write=%s" %
                  ((rnd, d.kind, p.name, qd, r["iops"]) +
                   tuple(counts.split())), flush=True)
    finally:
        p.close()


def main():
    for kind in ("virtio", "brd"):
        d = bench.Devices(kind)
        d.prefill()
        for rnd, cls in bench.rotated(PEERS, ROUNDS):
            one(d, cls, rnd)
    print("ok - done")


if __name__ == "__main__":
    main()
