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
import subprocess
import tempfile

PEERS = ["raw", "linear", "snapshot", "thin", "ours", "raw-nbd", "ours-nbd",
         "qemu"]
RATIOS = {   # figure: (numerator, denominator) pairs shown beside the table
    "1": [("ours", "raw"), ("ours", "linear"), ("ours", "snapshot"),
          ("ours", "thin"), ("ours-nbd", "qemu"), ("ours-nbd", "raw-nbd")],
    "2": [("ours", "raw"), ("ours", "snapshot"), ("ours", "thin"),
          ("ours-nbd", "qemu"), ("ours-nbd", "raw-nbd")],
    "3": [("ours", "raw"), ("ours", "snapshot"), ("ours-nbd", "qemu"),
          ("ours-nbd", "raw-nbd")],
    "7": [("ours", "raw"), ("ours", "snapshot"), ("ours", "thin"),
          ("ours-nbd", "qemu")],
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
| thin | dm-thin, 64 KiB blocks (its minimum), a thin device with SEC as external origin: first write to a block copies it |
| ours | dm-replication, 4 KiB chunks: top and port devices |
| raw-nbd | SEC through qemu-nbd (fio's nbd engine) |
| ours-nbd | top and port through qemu-nbd (fio's nbd engine) |
| qemu | QEMU's replication driver (`qemu-system-x86_64 -M none`, QMP): qcow2 active and hidden ({cluster} clusters) on ACT and HID over SEC; its top node and SEC node exported by its NBD server (fio's nbd engine) |

"First touch" runs right after a reset: a checkpoint for ours and qemu, a
fresh snapshot for snapshot, a fresh thin device for thin (raw, linear and
raw-nbd have no reset: their regions were written before). Each job writes
every block of its region once (fio's random map), so a first-touch job
touches only unmapped chunks. Values are medians of {reps} runs (rounds: in
each round every peer runs once); a ratio is the median of the per-round
ratios. Every run's value is in the .json beside this file. Units: IOPS for 4 KiB jobs, MiB/s for 1 MiB jobs.
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


def pratio(d, fig, dev, w, a, b, metric=None):
    """The ratio of peer a to peer b: the median of the per-run ratios when
    both have one value per run (run i of every peer comes from the same
    round, minutes apart at most, so a load burst on the shared host hits
    both), else the ratio of the medians."""
    ra, rb = d.get(fig, dev, w, a, metric), d.get(fig, dev, w, b, metric)
    if not ra or not rb or not ra["runs"] or not rb["runs"]:
        return None
    if len(ra["runs"]) == len(rb["runs"]) and all(rb["runs"]):
        import statistics
        return statistics.median(x / y for x, y in zip(ra["runs"], rb["runs"]))
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
    out.append("")


def failover_table(d, out):
    wls = [w for w in d.workloads("5", "virtio") if w.startswith("commit")]
    if not wls:
        return
    w = wls[0]
    out.append("### Figure 5: failover commit — virtio\n")
    out.append("Half the dirty data is in active (top writes), half in hidden "
               "(port writes to other chunks). dd: `dd bs=1M iflag=direct "
               "oflag=direct conv=fsync` of the same size from ACT to SEC, "
               "with the reader on ACT. A fio reader "
               "(4 KiB random reads, QD1, over active, hidden and plain "
               "chunks) runs on the top during the commit. ours: "
               "commit_depth 8 (the default); ours-depth64: 64.\n")
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
    out.append("")


def memory_table(d, out):
    wls = d.workloads("6", "virtio")
    if not wls:
        return
    out.append("### Figure 6: kernel memory per mapped chunk — virtio\n")
    out.append("Differences of /proc/meminfo `Slab` and `VmallocUsed` (after "
               "`drop_caches`, with `slab_nomerge`) before and after mapping "
               "the chunks, divided by the number of chunks; the caches that "
               "grew most are listed (bytes per chunk).\n")
    out.append("| peer | state | slab B/chunk | vmalloc B/chunk | total B/chunk | caches that grew (B/chunk, last run) |")
    out.append("|---|---|---|---|---|---|")
    for p in ("ours", "snapshot"):
        for w in wls:
            r = d.get("6", "virtio", w, p, "total B/chunk")
            if not r:
                continue
            top = d.get("6", "virtio", w, p, "top caches")
            out.append("| %s | %s | %s | %s | %s | %s |" % (
                p, w, fmt(d.med("6", "virtio", w, p, "slab B/chunk")),
                fmt(d.med("6", "virtio", w, p, "vmalloc B/chunk")),
                fmt(r["median"]), top["note"] if top else ""))
    out.append("")


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

def goals(d):
    g = []

    def verdict(ok):
        return "**met**" if ok else "**missed**"

    def io_goal(text, fig, pattern, a, b, want):
        for dev in d.devs(fig):
            vals = []
            for w in d.workloads(fig, dev):
                if pattern in w:
                    rt = pratio(d, fig, dev, w, a, b)
                    if rt is not None:
                        vals.append((w, rt))
            if not vals:
                continue
            ok = all(v >= want for _, v in vals)
            g.append("- %s (%s): %s — %s" % (
                text, dev, verdict(ok),
                "; ".join("%s %.2f×" % (w, v) for w, v in vals)))

    io_goal("top rewrite ≥ 0.9× raw", "1", "rewrite", "ours", "raw", 0.9)
    io_goal("top first touch ≥ 1.5× dm-snapshot", "1", "first", "ours",
            "snapshot", 1.5)
    io_goal("port first touch ≥ 1.2× dm-snapshot-origin", "3", "first",
            "ours", "snapshot", 1.2)
    io_goal("port rewrite ≥ 0.9× raw", "3", "rewrite", "ours", "raw", 0.9)
    io_goal("primary writes ≥ 0.9× dm-raid1", "8", "write", "primary",
            "raid1", 0.9)
    io_goal("primary writes with metadata ≥ 0.9× dm-raid1 with a disk log",
            "8", "write", "primary-meta", "raid1-disk", 0.9)
    bar = d.med("8", "brd", "checkpoint barrier, 32 writes in flight",
                "primary", "ms")
    if bar is not None:
        g.append("- primary checkpoint barrier ≤ 1 ms with 32 writes in flight "
                 "(brd): %s — median %.2f ms" % (verdict(bar <= 1), bar))
    for dev in d.devs("1"):
        vals = []
        for fig in ("1", "2", "3", "7"):
            for w in d.workloads(fig, dev):
                rt = pratio(d, fig, dev, w, "ours-nbd", "qemu")
                if rt is not None:
                    vals.append((w, rt))
        ceil = []
        for fig in ("1", "2", "3", "7"):
            for w in d.workloads(fig, dev):
                rt = pratio(d, fig, dev, w, "raw-nbd", "qemu")
                if rt is not None:
                    ceil.append(rt)
        if vals:
            low = [(w, v) for w, v in vals if v < 2]
            g.append("- every I/O figure ≥ 2× QEMU through the same NBD "
                     "transport (%s): %s — %d of %d at ≥ 2× (min %.2f×, max "
                     "%.2f×)%s" % (
                         dev, verdict(not low), len(vals) - len(low),
                         len(vals), min(v for _, v in vals),
                         max(v for _, v in vals),
                         "; below 2×: " + "; ".join("%s %.2f×" % x for x in low)
                         if low else ""))
            if ceil:
                g.append("  - the transport's own ceiling: the raw device "
                         "through the same NBD server and engine (raw-nbd) "
                         "reaches %.2f× to %.2f× QEMU on these workloads" %
                         (min(ceil), max(ceil)))
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
    wls = [w for w in d.workloads("5", "virtio") if w.startswith("commit")]
    if wls:
        r = d.get("5", "virtio", wls[0], "ours")
        dd = d.med("5", "virtio", wls[0], "dd")
        if r and r["runs"]:
            rt = ratio(r["median"], dd)
            g.append("- commit ≥ 0.8× dd: %s — %.1f MiB/s against dd %.1f "
                     "MiB/s (%.2f×)" % (verdict(rt >= 0.8), r["median"], dd, rt))
            mx = d.get("5", "virtio", "top randread 4k qd1 during commit",
                       "ours", "max")
            if mx:
                worst = max(mx["runs"]) / 1000
                g.append("- no top read stall > 100 ms during the commit: %s — "
                         "longest read %.1f ms (worst of %d runs)" % (
                             verdict(worst <= 100), worst, len(mx["runs"])))
        else:
            note = r["note"] if r else "not measured"
            g.append("- commit ≥ 0.8× dd: **not measured** — %s" % note)
            g.append("- no top read stall > 100 ms during the commit: "
                     "**not measured** — %s" % note)
    for w in d.workloads("6", "virtio"):
        r = d.get("6", "virtio", w, "ours", "total B/chunk")
        if r and "mapped" in w:
            g.append("- ≤ 32 bytes of kernel memory per mapped chunk: %s — "
                     "%.1f B/chunk (slab %.1f + vmalloc %.1f; %s)" % (
                         verdict(r["median"] <= 32), r["median"],
                         d.med("6", "virtio", w, "ours", "slab B/chunk"),
                         d.med("6", "virtio", w, "ours", "vmalloc B/chunk"),
                         w))
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
    memory_table(d, out)
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
