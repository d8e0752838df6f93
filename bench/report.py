#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Turn the JSON of one bench run (bench/bench.py) into bench/results/:

    report.py --kernel K [--secs N] [--command CMD] JSON_DIR RESULTS_DIR

writes K.md (tables, ratios, goals), K.json (every run) and K-*.png
(gnuplot, when installed).  Only figures that were measured are shown; a
figure that could not be measured says so."""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import tempfile

PEERS = ["raw", "linear", "snapshot", "snapshot64", "thin", "ours", "ours64",
         "raw-nbd", "ours-nbd", "ours64-nbd", "ours-unit-nbd", "qemu"]
RATIOS = {   # figure: (numerator, denominator) pairs shown beside the table
    "1": [("ours", "raw"), ("ours", "linear"), ("ours", "snapshot"),
          ("ours", "thin"), ("ours-nbd", "qemu"), ("ours-nbd", "raw-nbd"),
          ("ours64", "linear"), ("ours64", "snapshot64")],
    "2": [("ours", "raw"), ("ours", "linear"), ("ours", "snapshot"),
          ("ours", "thin"), ("ours-nbd", "qemu"), ("ours-nbd", "raw-nbd")],
    "3": [("ours", "raw"), ("ours", "linear"), ("ours", "snapshot"),
          ("ours-nbd", "qemu"), ("ours-nbd", "raw-nbd"),
          ("ours64-nbd", "qemu"), ("ours-unit-nbd", "qemu")],
    "7": [("ours", "raw"), ("ours", "linear"), ("ours", "snapshot"),
          ("ours", "thin"), ("ours-nbd", "qemu")],
}
TITLES = {
    "1": "Figure 1: top 4 KiB random writes, first touch after a checkpoint and rewrite",
    "2": "Figure 2: top 1 MiB sequential writes; top 4 KiB random reads over three layers",
    "3": "Figure 3: port writes (copy-before-write on first touch), rewrite, sequential",
    "7": "Figure 7: fsync after every 4 KiB write on the top (QD1)",
}
PEER_NOTES = """Peers, all on the same devices in the same VM run (SEC = the secondary
device / origin, HID = hidden store / snapshot COW / thin data, ACT = active
store, SPARE = thin metadata):

| peer | what |
|---|---|
| raw | the device itself (fio libaio, O_DIRECT) |
| linear | dm-linear over it |
| snapshot | dm-snapshot, 4 KiB chunks, persistent COW: `snapshot` writes for top writes, `snapshot-origin` writes for port writes |
| snapshot64 | dm-snapshot with 64 KiB chunks, figure 1 only |
| thin | dm-thin, 64 KiB blocks (its minimum), a thin device with SEC as external origin: first write to a block copies it |
| ours | dm-replication, 4 KiB chunks: top and port devices |
| ours64 | ours with 64 KiB chunks, figure 1 only (issue 15's first-touch and rewrite goals hold at both chunk sizes) |
| raw-nbd | SEC through qemu-nbd (fio's nbd engine) |
| ours-nbd | top and port through qemu-nbd (fio's nbd engine) |
| ours64-nbd | ours-nbd with 64 KiB chunks, figure 3 only: QEMU's copy unit (its backup job copies at least 64 KiB on a port first touch: in QEMU 7.2 the larger of 64 KiB and its qcow2 cluster; bench/README.md) |
| ours-unit-nbd | ours-nbd with the table feature `port_copy_chunks 16`, figure 3 only: 4 KiB chunks, and a port first touch copies the 64 KiB around it (QEMU's copy unit), while the top's copy-ups stay 4 KiB |
| qemu | QEMU's replication driver (`qemu-system-x86_64 -M none`, QMP): qcow2 active and hidden ({cluster} clusters) on ACT and HID over SEC; its top node and SEC node exported by its NBD server (fio's nbd engine) |

"First touch" runs right after a reset: a checkpoint for ours and qemu, a
fresh snapshot for snapshot, a fresh thin device for thin (raw, linear and
raw-nbd have no reset: their regions were written before). Each job writes
every block of its region once (fio's random map), so a first-touch job
touches only unmapped chunks. Values are medians of {reps} runs (rounds: in
each round every peer runs once); a ratio is the median of the per-round
ratios. Every run's value is in the .json beside this file. Units: IOPS for 4 KiB jobs, MiB/s for 1 MiB jobs.

`ours/linear` is in every I/O table: dm-linear is the floor that any dm
target pays under TCG. raw and linear have no port: their figure-3 rows are
their top runs of the same round (same device as the top), so in figure 3
`ours/linear` compares ours' port writes with plain writes to the device.
"""


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if unit in ("ms",):
        return "%.2f" % v
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def load(jdir):
    meta, rows = {}, []
    for f in sorted(glob.glob(os.path.join(jdir, "*.json"))):
        with open(f) as fh:
            j = json.load(fh)
        meta[os.path.basename(f)[:-5]] = j["meta"]
        rows += j["rows"]
    return meta, rows


class Data:
    def __init__(self, rows):
        self.rows = rows

    def get(self, fig, dev, wl, peer, metric=None):
        for r in self.rows:
            if (r["fig"], r["dev"], r["workload"], r["peer"]) == \
                    (fig, dev, wl, peer) and (metric is None or
                                              r["metric"] == metric):
                return r
        return None

    def med(self, *k):
        r = self.get(*k)
        return r["median"] if r else None

    def workloads(self, fig, dev):
        seen = []
        for r in self.rows:
            if r["fig"] == fig and r["dev"] == dev and r["workload"] not in seen:
                seen.append(r["workload"])
        return seen

    def devs(self, fig):
        seen = []
        for r in self.rows:
            if r["fig"] == fig and r["dev"] not in seen:
                seen.append(r["dev"])
        return seen


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def round_ratios(d, fig, dev, w, a, b, metric=None):
    """The per-round ratios of peer a to peer b (run i of every peer comes
    from round i), or None when the runs do not pair up."""
    ra, rb = d.get(fig, dev, w, a, metric), d.get(fig, dev, w, b, metric)
    if not ra or not rb or not ra["runs"] or not rb["runs"]:
        return None
    if len(ra["runs"]) == len(rb["runs"]) and all(rb["runs"]):
        return [x / y for x, y in zip(ra["runs"], rb["runs"])]
    return None


def pratio(d, fig, dev, w, a, b, metric=None):
    """The ratio of peer a to peer b: the median of the per-run ratios when
    both have one value per run (run i of every peer comes from the same
    round, minutes apart at most, so a load burst on the shared host hits
    both), else the ratio of the medians."""
    rr = round_ratios(d, fig, dev, w, a, b, metric)
    if rr:
        return statistics.median(rr)
    ra, rb = d.get(fig, dev, w, a, metric), d.get(fig, dev, w, b, metric)
    if not ra or not rb or not ra["runs"] or not rb["runs"]:
        return None
    return ratio(ra["median"], rb["median"])


def io_tables(d, out):
    for fig in ("1", "2", "3", "7"):
        for dev in d.devs(fig):
            out.append("### %s — %s\n" % (TITLES[fig], dev))
            wls = d.workloads(fig, dev)
            peers = [p for p in PEERS
                     if any(d.get(fig, dev, w, p) for w in wls)]
            rat = [(a, b) for a, b in RATIOS[fig] if a in peers and b in peers]
            out.append("| workload | " + " | ".join(peers) + " | " +
                       " | ".join("%s/%s" % ab for ab in rat) + " |")
            out.append("|---" * (1 + len(peers) + len(rat)) + "|")
            for w in wls:
                cells = [fmt(d.med(fig, dev, w, p)) for p in peers]
                rs = [fmt(pratio(d, fig, dev, w, a, b)) for a, b in rat]
                out.append("| %s | %s | %s |" % (w, " | ".join(cells),
                                                 " | ".join(rs)))
            out.append("")


def ckpt_stats(d, peer, mib):
    r = d.get("4", "virtio", "checkpoint %d MiB" % mib, peer)
    if not r or not r["runs"]:
        return None
    s = sorted(r["runs"])
    p99 = s[max(0, -(-99 * len(s) // 100) - 1)]
    return {"median": r["median"], "p99": p99, "n": len(s), "max": s[-1],
            "note": r.get("note", "")}


def ckpt_sizes(d):
    sizes = []
    for w in d.workloads("4", "virtio"):
        if w.startswith("checkpoint "):
            sizes.append(int(w.split()[1]))
    return sizes


def ckpt_table(d, out):
    sizes = ckpt_sizes(d)
    if not sizes:
        return
    out.append("### Figure 4: checkpoint latency against the data in the stores — virtio\n")
    out.append("Each sample: write N MiB through the top (active) and N MiB "
               "through the port (hidden), then time one checkpoint: ours = "
               "the DM_TARGET_MSG ioctl, qemu = the `xen-colo-do-checkpoint` "
               "QMP command (round trip included; the QMP round trip of an "
               "empty command is given below). p99 is the nearest-rank 99th "
               "percentile of n samples (with n < 100 that is the maximum).\n")
    out.append("| data in each store | ours median ms | ours p99 ms | n | qemu median ms | qemu p99 ms | n | qemu/ours (median) |")
    out.append("|---|---|---|---|---|---|---|---|")
    for mib in sizes:
        o, q = ckpt_stats(d, "ours", mib), ckpt_stats(d, "qemu", mib)
        out.append("| %d MiB | %s | %s | %s | %s | %s | %s | %s |" % (
            mib, fmt(o and o["median"], "ms"), fmt(o and o["p99"], "ms"),
            o["n"] if o else 0, fmt(q and q["median"], "ms"),
            fmt(q and q["p99"], "ms"), q["n"] if q else 0,
            fmt(ratio(q and q["median"], o and o["median"]))))
    fl = d.med("4", "virtio", "QMP round trip (query-status)", "qemu")
    if fl is not None:
        out.append("\nQMP round trip of `query-status`: %s ms (median)." %
                   fmt(fl, "ms"))
    mr = d.med("4", "virtio", "message round trip (commit_depth)", "ours")
    fd = d.med("4", "virtio", "flush of a virtio disk", "device")
    wd = d.med("4", "virtio", "4 KiB O_DSYNC write to a virtio disk", "device")
    if mr is not None and fd is not None and wd is not None:
        out.append("\nWhat ours cannot go below: the DM_TARGET_MSG round trip "
                   "of a message that only sets a value (`commit_depth`), %s "
                   "ms; and on the spare virtio disk, right after each of "
                   "ours, a flush, %s ms, then a 4 KiB O_DSYNC write "
                   "(virtio-blk has no FUA: a write and a flush), %s ms. A "
                   "checkpoint flushes the secondary and then writes hidden's "
                   "header with FUA: %s ms in all (medians)."
                   % (fmt(mr, "ms"), fmt(fd, "ms"), fmt(wd, "ms"),
                      fmt(mr + fd + wd, "ms")))
    out.append("")


def commit_workloads(d):
    """Figure 5's commit with the reader, and without it (or None)."""
    wls = [w for w in d.workloads("5", "virtio") if w.startswith("commit")]
    return ([w for w in wls if not w.endswith("no reader")][:1] or [None])[0], \
        ([w for w in wls if w.endswith("no reader")][:1] or [None])[0]


def failover_table(d, out):
    w, quiet = commit_workloads(d)
    if not w:
        return
    out.append("### Figure 5: failover commit — virtio\n")
    out.append("Half the dirty data is in active (top writes), half in hidden "
               "(port writes to other chunks). dd: `dd bs=1M iflag=direct "
               "oflag=direct conv=fsync` of the same size from ACT to SEC, "
               "with the reader on ACT. A fio reader "
               "(4 KiB random reads, QD1, over active, hidden and plain "
               "chunks) runs on the top during the commit. ours: "
               "commit_depth 8 (the default); ours-depth64: 64; "
               "\"no reader\": the same commit with no reader (a QD1 "
               "reader takes as many reads as a peer serves: the faster it "
               "serves them, the less CPU is left to the copy).\n")
    out.append("| peer | commit MiB/s | /dd | read p50 us | read p99 us | read max us | note |")
    out.append("|---|---|---|---|---|---|---|")
    dd = d.med("5", "virtio", w, "dd")
    rl = "top randread 4k qd1 during commit"
    for p in ("dd", "ours", "ours-depth64", "qemu"):
        r = d.get("5", "virtio", w, p)
        if not r:
            continue
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            p, fmt(r["median"]), fmt(ratio(r["median"], dd)),
            fmt(d.med("5", "virtio", rl, p, "p50")),
            fmt(d.med("5", "virtio", rl, p, "p99")),
            fmt(d.med("5", "virtio", rl, p, "max")), r.get("note", "")))
    for p in ("ours", "qemu"):
        r = d.get("5", "virtio", quiet, p) if quiet else None
        if r:
            out.append("| %s, no reader | %s | %s | | | | %s |" % (
                p, fmt(r["median"]), fmt(ratio(r["median"], dd)),
                r.get("note", "")))
    out.append("")


MEM_FILLS = ("sequential", "random")
MEM_PEERS = ("ours", "snapshot")


def mem_fill(w):
    """The fill of a figure-6 workload: "random", "sequential", or None for
    the rows of a run from before the two fills ("N chunks mapped", "after
    checkpoint"), which filled sequentially (1 MiB writes)."""
    for f in MEM_FILLS:
        if w.startswith(f + " fill"):
            return f
    return None


def mem_row(d, peer, fill, metric="total B/chunk"):
    """(workload, row) of PEER's mapped-chunks row for FILL; an old run's
    unnamed rows count as the sequential fill."""
    for w in d.workloads("6", "virtio"):
        f = mem_fill(w)
        if "mapped" in w and (f == fill or f is None and fill == "sequential"):
            r = d.get("6", "virtio", w, peer, metric)
            if r and r["runs"]:
                return w, r
    return None, None


def mem_missing(d):
    """The (fill, peer) pairs that this run did not measure."""
    return [(f, p) for f in MEM_FILLS for p in MEM_PEERS
            if mem_row(d, p, f)[1] is None]


def spread(v):
    """The range of the runs V: "44.4–51.9 (n=3)", or "one run"."""
    if not v:
        return "n/a"
    if len(v) == 1:
        return "one run"
    return "%s–%s (n=%d)" % (fmt(min(v)), fmt(max(v)), len(v))


def memory_table(d, out, meta):
    wls = d.workloads("6", "virtio")
    if not wls:
        return
    fills = meta.get("fills") or {}
    out.append("### Figure 6: kernel memory per mapped chunk — virtio\n")
    out.append("Differences of /proc/meminfo `Slab` and `VmallocUsed` (after "
               "`drop_caches` and a shrink of every slab cache, with "
               "`slab_nomerge`) before and after mapping "
               "the chunks, divided by the number of chunks; the caches that "
               "grew most are listed (bytes per chunk). Two fills, each on "
               "fresh devices: sequential (%s) and random (%s: every 4 KiB "
               "chunk of the region written exactly once, in random order). "
               "ours maps half the chunks through the top (active) and half "
               "through the port (hidden), then takes a checkpoint (`after "
               "checkpoint`); dm-snapshot maps all of them through the "
               "snapshot (its COW).\n" % (
                   fills.get("sequential", "1 MiB writes, QD8"),
                   fills.get("random", "fio randwrite bs=4k with its random "
                             "map, direct=1")))
    out.append("| peer | fill | state | slab B/chunk | vmalloc B/chunk | total B/chunk | total, range of the runs | caches that grew (B/chunk, last run) | note |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    legacy = False
    for p in MEM_PEERS:
        for fill in MEM_FILLS:
            for w in wls:
                f = mem_fill(w)
                if not (f == fill or f is None and fill == "sequential"):
                    continue
                r = d.get("6", "virtio", w, p, "total B/chunk")
                if not r:
                    continue
                legacy = legacy or f is None
                top = d.get("6", "virtio", w, p, "top caches")
                state = w.split(", ", 1)[1] if f else w
                out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    p, fill if f else "sequential (old run)", state,
                    fmt(d.med("6", "virtio", w, p, "slab B/chunk")),
                    fmt(d.med("6", "virtio", w, p, "vmalloc B/chunk")),
                    fmt(r["median"]), spread(r["runs"]),
                    top["note"] if top else "", r.get("note", "")))
    out.append("")
    if legacy:
        out.append("Rows marked `sequential (old run)` come from a run made "
                   "before figure 6 had two fills: that run filled "
                   "sequentially only (1 MiB writes).\n")
    miss = mem_missing(d)
    if miss:
        out.append("Not measured in this run: %s.\n" % "; ".join(
            "%s fill for %s" % fp for fp in miss))


# ---- figure 8: primary -------------------------------------------------------

PRIMARY_PEERS = ["local", "raid1", "primary", "raid1-disk", "primary-meta"]
PRIMARY_RATIOS = [("primary", "raid1"), ("primary-meta", "raid1-disk"),
                  ("primary", "local")]


def primary_table(d, out):
    wls = [w for w in d.workloads("8", "brd") if w.startswith("write")]
    if not wls:
        return
    out.append("### Figure 8: the primary (mirroring to local and remote) — brd\n")
    out.append("local = the local device alone; raid1 = dm-mirror over the "
               "same two devices (core log, 512 KiB regions, `handle_errors`); "
               "primary = ours (core log, 512 KiB regions); raid1-disk and "
               "primary-meta = the same with a disk log on a third device.\n")
    peers = [p for p in PRIMARY_PEERS if any(d.get("8", "brd", w, p) for w in wls)]
    rat = [(a, b) for a, b in PRIMARY_RATIOS if a in peers and b in peers]
    out.append("| workload | " + " | ".join(peers) + " | " +
               " | ".join("%s/%s" % ab for ab in rat) + " |")
    out.append("|---" * (1 + len(peers) + len(rat)) + "|")
    for w in wls:
        cells = [fmt(d.med("8", "brd", w, p)) for p in peers]
        rs = [fmt(pratio(d, "8", "brd", w, a, b)) for a, b in rat]
        out.append("| %s | %s | %s |" % (w, " | ".join(cells), " | ".join(rs)))
    out.append("")
    out.append("| checkpoint barrier | median ms | p99 ms |")
    out.append("|---|---|---|")
    for w in d.workloads("8", "brd"):
        if w.startswith("checkpoint barrier"):
            out.append("| %s | %s | %s |" % (
                w, fmt(d.med("8", "brd", w, "primary", "ms"), "ms"),
                fmt(d.med("8", "brd", w, "primary", "p99"), "ms")))
    out.append("")
    for w in d.workloads("8", "brd"):
        if w.startswith("resync"):
            out.append("Resync (`sync_all`, unlimited) of the whole device: %s "
                       "MiB/s; `dd` of the same bytes local → remote "
                       "(O_DIRECT, fsync): %s MiB/s; ratio %s.\n" % (
                           fmt(d.med("8", "brd", w, "primary")),
                           fmt(d.med("8", "brd", w, "dd")),
                           fmt(pratio(d, "8", "brd", w, "primary", "dd"))))


# ---- goals -------------------------------------------------------------------

def verdict(ok):
    return "**met**" if ok else "**missed**"


def ratio_text(d, fig, dev, w, a, b):
    """(median ratio, "0.87× (rounds 0.80–0.95×, n=3)") of peer a to peer
    b on one workload, or (None, None) when not measured."""
    med = pratio(d, fig, dev, w, a, b)
    if med is None:
        return None, None
    rr = round_ratios(d, fig, dev, w, a, b)
    if rr and len(rr) > 1:
        return med, "%.2f× (rounds %.2f–%.2f×, n=%d)" % (
            med, min(rr), max(rr), len(rr))
    if rr:
        return med, "%.2f× (one round)" % med
    return med, "%.2f× (ratio of the medians: runs not paired by round)" % med


# Issue 15's goals on the I/O figures: (text, figure, workload, numerator,
# denominator, target ratio, [(peer, what its ratio over the denominator
# shows)] beside it).
PORT_BESIDE = [("raw-nbd", "the transport's own ceiling"),
               ("ours64-nbd", "at QEMU's copy unit (ours with 64 KiB chunks)"),
               ("ours-unit-nbd", "at QEMU's copy unit over 4 KiB chunks "
                "(port_copy_chunks 16)")]
IO_GOALS = [
    ("port 4 KiB first touch QD1 through NBD: ours-nbd ≥ 1.0× qemu", "3",
     "port randwrite 4k qd1 first", "ours-nbd", "qemu", 1.0, PORT_BESIDE),
    ("port 4 KiB first touch QD32 through NBD: ours-nbd ≥ 1.2× qemu", "3",
     "port randwrite 4k qd32 first", "ours-nbd", "qemu", 1.2, PORT_BESIDE),
    ("top 4 KiB first touch fsync=1: ours ≥ 1.0× dm-snapshot", "7",
     "top randwrite 4k fsync=1 first", "ours", "snapshot", 1.0, []),
    ("top 4 KiB first touch QD1: ours ≥ 1.5× dm-snapshot", "1",
     "top randwrite 4k qd1 first", "ours", "snapshot", 1.5, []),
    ("top 4 KiB first touch QD32: ours ≥ 1.0× dm-snapshot", "1",
     "top randwrite 4k qd32 first", "ours", "snapshot", 1.0, []),
    ("top 4 KiB rewrite QD32: ours ≥ 0.95× dm-linear", "1",
     "top randwrite 4k qd32 rewrite", "ours", "linear", 0.95, []),
    ("top 4 KiB first touch QD1, 64 KiB chunks: ours64 ≥ 1.0× dm-snapshot "
     "with 64 KiB chunks", "1", "top randwrite 4k qd1 first", "ours64",
     "snapshot64", 1.0, []),
    ("top 4 KiB first touch QD32, 64 KiB chunks: ours64 ≥ 1.0× dm-snapshot "
     "with 64 KiB chunks", "1", "top randwrite 4k qd32 first", "ours64",
     "snapshot64", 1.0, []),
    ("top 4 KiB rewrite QD32, 64 KiB chunks: ours64 ≥ 0.95× dm-linear", "1",
     "top randwrite 4k qd32 rewrite", "ours64", "linear", 0.95, []),
]
# Issue 15's memory goals: ours' bytes per mapped chunk (figure 6).
MEM_GOALS = [("random", 16), ("sequential", 1)]


def io_goals(d, g):
    devs = []
    for fig in ("1", "3", "7"):
        devs += [v for v in d.devs(fig) if v not in devs]
    for text, fig, w, a, b, want, beside in IO_GOALS:
        if not devs:
            g.append("- %s (figure %s): **not measured** — no I/O figures in "
                     "this run" % (text, fig))
        for dev in devs:
            med, txt = ratio_text(d, fig, dev, w, a, b)
            if med is None:
                g.append("- %s (figure %s, %s): **not measured** — no %s or "
                         "%s runs of `%s`" % (text, fig, dev, a, b, w))
                continue
            extra = ""
            for peer, what in beside:
                cm, ct = ratio_text(d, fig, dev, w, peer, b)
                if cm is not None:
                    extra += "; %s, %s/%s: %s" % (what, peer, b, ct)
            g.append("- %s (figure %s, %s): %s — %s%s" % (
                text, fig, dev, verdict(med >= want), txt, extra))


def failover_goals(d, g, later):
    """Issue 15's commit goal into G, the (earlier) reader goal into
    LATER."""
    w, quiet = commit_workloads(d)
    text = "failover commit%s: ours ≥ 1.0× qemu (figure 5, virtio)"
    stall = "no top read stall > 100 ms during the commit (figure 5)"
    if not w:
        g.append("- %s: **not measured** — figure 5 not in this run" %
                 (text % ""))
        later.append("- %s: **not measured** — figure 5 not in this run" %
                     stall)
        return
    text %= w[len("commit"):]
    r = d.get("5", "virtio", w, "ours")
    if not r or not r["runs"]:
        note = r["note"] if r else "not measured"
        g.append("- %s: **not measured** — %s" % (text, note))
        later.append("- %s: **not measured** — %s" % (stall, note))
        return
    med, txt = ratio_text(d, "5", "virtio", w, "ours", "qemu")
    dd = ratio_text(d, "5", "virtio", w, "ours", "dd")[1]
    if med is None:
        g.append("- %s: **not measured** — no qemu runs; ours %.1f MiB/s, "
                 "ours/dd %s" % (text, r["median"], dd))
    else:
        g.append("- %s: %s — %s; ours %.1f MiB/s, qemu %.1f MiB/s; ours/dd "
                 "%s" % (text, verdict(med >= 1.0), txt, r["median"],
                         d.med("5", "virtio", w, "qemu"), dd))
        qmed, qtxt = ratio_text(d, "5", "virtio", quiet, "ours", "qemu") \
            if quiet else (None, "")
        if qmed is not None:
            g[-1] += "; with no reader %s" % qtxt
    mx = d.get("5", "virtio", "top randread 4k qd1 during commit", "ours",
               "max")
    if mx and mx["runs"]:
        worst = max(mx["runs"]) / 1000
        later.append("- %s: %s — longest read %.1f ms (worst of %d runs; "
                 "median of the runs' longest %.1f ms)" % (
                     stall, verdict(worst <= 100), worst, len(mx["runs"]),
                     mx["median"] / 1000))


def memory_goals(d, g):
    for fill, want in MEM_GOALS:
        text = "memory per mapped chunk, %s fill: ours ≤ %d B (figure 6)" % (
            fill, want)
        w, r = mem_row(d, "ours", fill)
        if r is None:
            g.append("- %s: **not measured** — this run's figure 6 has no "
                     "%s fill%s" % (text, fill, " (its JSON predates the "
                                    "random fill)" if fill == "random" and
                                    mem_row(d, "ours", "sequential")[1]
                                    else ""))
            continue
        sw, sr = mem_row(d, "snapshot", fill)
        fr = d.get("6", "virtio", w, "ours", "freed B/chunk")
        g.append("- %s: %s — %.1f B/chunk (runs: %s; slab %s + "
                 "vmalloc %s; %s%s)%s%s" % (
                     text, verdict(r["median"] <= want), r["median"],
                     spread(r["runs"]),
                     fmt(d.med("6", "virtio", w, "ours", "slab B/chunk")),
                     fmt(d.med("6", "virtio", w, "ours", "vmalloc B/chunk")),
                     w, "" if mem_fill(w) else ": an old run, sequential "
                     "1 MiB writes",
                     "; dm-snapshot %.1f B/chunk (runs: %s)" % (
                         sr["median"], spread(sr["runs"])) if sr else "",
                     "; the map's own, what the checkpoint after the fill "
                     "frees: %.1f B/chunk (runs: %s)" % (
                         fr["median"], spread(fr["runs"]))
                     if fr and fr["runs"] else ""))


def goals(d):
    """Issue 15's goals first, then the earlier ones that still stand
    (checkpoint, the reader during the commit, the primary)."""
    g = ["Issue 15 (medians; the spread is the range of the per-round "
         "ratios, or of the runs for figure 6):\n"]
    later = []
    io_goals(d, g)
    failover_goals(d, g, later)
    memory_goals(d, g)
    g.append("")
    g.append("Earlier goals that still stand:\n")
    g += later
    n = len(g)
    sizes = ckpt_sizes(d)
    if sizes:
        o = {m: ckpt_stats(d, "ours", m) for m in sizes}
        big, small = max(sizes), min(sizes)
        if o[big]:
            g.append("- checkpoint ≤ 1 ms at %d MiB in the stores: %s — "
                     "median %.2f ms, p99 %.2f ms (n=%d)" % (
                         big, verdict(o[big]["median"] <= 1),
                         o[big]["median"], o[big]["p99"], o[big]["n"]))
        if o[big] and o[small]:
            flat = o[big]["median"] <= 1.5 * o[small]["median"]
            g.append("- checkpoint flat from %d to %d MiB (criterion: median at "
                     "%d MiB ≤ 1.5× median at %d MiB): %s — %s" % (
                         small, big, big, small, verdict(flat),
                         ", ".join("%d MiB %.2f ms" % (m, o[m]["median"])
                                   for m in sizes if o[m])))
    for text, w, a, b in (
            ("primary writes ≥ 0.9× dm-raid1", "write", "primary", "raid1"),
            ("primary writes with metadata ≥ 0.9× dm-raid1 with a disk log",
             "write", "primary-meta", "raid1-disk")):
        vals = []
        for wl in d.workloads("8", "brd"):
            if w in wl:
                med, txt = ratio_text(d, "8", "brd", wl, a, b)
                if med is not None:
                    vals.append((wl, med, txt))
        if vals:
            g.append("- %s (figure 8, brd): %s — %s" % (
                text, verdict(all(v >= 0.9 for _, v, _ in vals)),
                "; ".join("%s %s" % (wl, t) for wl, _, t in vals)))
    bar = d.med("8", "brd", "checkpoint barrier, 32 writes in flight",
                "primary", "ms")
    if bar is not None:
        g.append("- primary checkpoint barrier ≤ 1 ms with 32 writes in flight "
                 "(figure 8, brd): %s — median %.2f ms" % (verdict(bar <= 1),
                                                           bar))
    if len(g) == n:
        g.append("- (figures 4 and 8 not in this run)")
    g.append("")
    g.append("Superseded by issue 15's goals and no longer judged: top and "
             "port rewrite ≥ 0.9× raw, top first touch ≥ 1.5× dm-snapshot "
             "at both depths, port first touch ≥ 1.2× dm-snapshot-origin, "
             "every I/O figure ≥ 2× QEMU through NBD, commit ≥ 0.8× dd "
             "(ours/dd is still shown beside the commit goal), ≤ 32 B per "
             "mapped chunk. Their ratios are still in the tables below.")
    return g


# ---- plots -------------------------------------------------------------------

def gnuplot(script):
    if not shutil.which("gnuplot"):
        return False
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    return True


def plots(d, rdir, k):
    made = []
    sizes = ckpt_sizes(d)
    if sizes:
        with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as f:
            for m in sizes:
                o, q = ckpt_stats(d, "ours", m), ckpt_stats(d, "qemu", m)
                f.write("%d %s %s %s %s\n" % (
                    m, o["median"] if o else "NaN", o["p99"] if o else "NaN",
                    q["median"] if q else "NaN", q["p99"] if q else "NaN"))
            dat = f.name
        png = "%s-checkpoint.png" % k
        if gnuplot("""set terminal pngcairo size 800,500 noenhanced
set output '%s'
set title 'Checkpoint latency against data in each store (%s, virtio, TCG)'
set xlabel 'MiB in each store (active and hidden)'
set ylabel 'ms'
set logscale x 2
set key top left
set grid
plot '%s' u 1:2 w lp lw 2 t 'dm-replication median', \\
     '' u 1:3 w lp dt 2 t 'dm-replication p99', \\
     '' u 1:4 w lp lw 2 t 'QEMU xen-colo-do-checkpoint median', \\
     '' u 1:5 w lp dt 2 t 'QEMU p99'
""" % (os.path.join(rdir, png), k, dat)):
            made.append(png)
        os.unlink(dat)
    for dev in d.devs("1"):
        wls = []
        for fig in ("1", "2", "3", "7"):
            wls += [(fig, w) for w in d.workloads(fig, dev)]
        peers = [p for p in PEERS if p != "raw" and
                 any(d.get(f, dev, w, p) for f, w in wls)]
        # The bars are ratios to raw: none without it (DMR_BENCH_PEERS).
        if not any(d.med(f, dev, w, "raw") for f, w in wls):
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as f:
            f.write("# workload " + " ".join(peers) + "\n")
            for fig, w in wls:
                raw = d.med(fig, dev, w, "raw")
                f.write('"%s" %s\n' % (w.replace("top ", "top:").replace(
                    "port ", "port:"), " ".join(
                    "%s" % (ratio(d.med(fig, dev, w, p), raw) or "NaN")
                    for p in peers)))
            dat = f.name
        png = "%s-throughput-%s.png" % (k, dev)
        cols = ", ".join("'%s' u %d:xtic(1) t '%s'" % (dat if i == 0 else "",
                                                     i + 2, p)
                         for i, p in enumerate(peers))
        if gnuplot("""set terminal pngcairo size 1400,600 noenhanced
set output '%s'
set title 'Throughput relative to the raw device (%s, %s, TCG; raw = 1)'
set style data histogram
set style histogram clustered gap 1
set style fill solid border -1
set boxwidth 0.9
set xtics rotate by -35 font ',9'
set ylabel 'IOPS or MiB/s / raw device'
set key outside right top
set grid ytics
set yrange [0:*]
plot %s
""" % (os.path.join(rdir, png), k, dev, cols)):
            made.append(png)
        os.unlink(dat)
    return made


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--secs", type=int)
    ap.add_argument("--command", default="make bench")
    ap.add_argument("--note", default="", help="a line about this run")
    ap.add_argument("jdir")
    ap.add_argument("rdir")
    a = ap.parse_args()
    meta, rows = load(a.jdir)
    if not rows:
        print("report: no results in %s" % a.jdir)
        return 1
    d = Data(rows)
    k = a.kernel
    os.makedirs(a.rdir, exist_ok=True)
    with open(os.path.join(a.rdir, k + ".json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    made = plots(d, a.rdir, k)
    m = next(iter(meta.values()))
    io = meta.get("io-virtio") or meta.get("io-brd") or {}
    out = ["# dm-replication benchmarks: kernel %s\n" % k]
    out.append("Command: `%s` (bench/run). Made by one boot of the test VM "
               "(QEMU TCG, 2 vCPUs, 3 GiB, `slab_nomerge`) on a 2-core "
               "host shared with other work: absolute numbers are slow and "
               "noisy, the ratios between peers of this same run are what "
               "counts.%s\n" % (a.command, " Wall time %d s." % a.secs
                                  if a.secs else ""))
    if a.note:
        out.append("**Note on this run:** %s\n" % a.note)
    out.append("Devices: brd = 4 RAM disks of %s MiB; virtio = 4 virtio-blk "
               "disks of 1 GiB backed by files on the host (cache=unsafe). "
               "Every device is written whole before the I/O figures. "
               "Region sizes (MiB): %s.\n" % (
                   (meta.get("io-brd") or {}).get("devices", {}).get(
                       "size_mib", "?"), io.get("sizes_mib", "?")))
    out.append("## Goals\n")
    out += goals(d)
    out.append("")
    out.append("## Plots\n")
    for p in made:
        out.append("![%s](%s)\n" % (p, p))
    if not made:
        out.append("(gnuplot is not installed: no plots)\n")
    out.append("## Tables\n")
    out.append(PEER_NOTES.format(cluster=m.get("qcow2_cluster", "?"),
                                 reps=m.get("reps", "?")))
    io_tables(d, out)
    ckpt_table(d, out)
    failover_table(d, out)
    memory_table(d, out, meta.get("memory") or {})
    primary_table(d, out)
    missing = [f for f in ("io-brd", "io-virtio", "checkpoint", "failover",
                           "memory", "primary") if f not in meta]
    if missing:
        out.append("Not measured in this run (the VM test failed or was not "
                   "selected): %s.\n" % ", ".join(missing))
    with open(os.path.join(a.rdir, k + ".md"), "w") as f:
        f.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
