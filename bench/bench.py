#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""dm-replication against its peers, inside the test VM (bench/run).

    bench.py io brd|virtio   figures 1, 2, 3, 7: fio on every peer
    bench.py checkpoint      figure 4: checkpoint latency against stored data
    bench.py failover        figure 5: the merge-down commit against dd
    bench.py memory          figure 6: kernel memory per mapped chunk,
                             after a sequential and after a random fill
    bench.py primary         figure 8: the primary against dm-raid1; its
                             checkpoint barrier; its resync against dd

Each writes $OUT/bench/<what>.json: a list of rows
    {fig, dev, workload, peer, metric, unit, runs: [...], median, note}
which bench/report turns into bench/results/<kernel>.md and the plots.
Everything is measured in the same VM run, on the same devices, so the ratios
between peers mean something even where TCG makes the absolute numbers slow.

Peers (all on the same devices: SEC is the secondary / origin, HID the hidden
store / snapshot COW / thin data, ACT the active store, SPARE thin metadata):
  raw       the device itself                  (libaio, O_DIRECT)
  linear    dm-linear over it
  snapshot  dm-snapshot, 4 KiB chunks, persistent: `snapshot` for top
            writes, `snapshot-origin` for port writes
  snapshot64  dm-snapshot with 64 KiB chunks (figure 1 only)
  thin      dm-thin, 64 KiB blocks (its minimum), a thin device with SEC as
            external origin (first write to a block copies it from SEC)
  ours      dm-replication, 4 KiB chunks: top and port
  ours64    the same with 64 KiB chunks (figure 1 only)
  raw-nbd   the device through qemu-nbd      (fio's nbd engine)
  ours-nbd  top and port through qemu-nbd    (fio's nbd engine)
  ours64-nbd  the same with 64 KiB chunks, QEMU's copy unit on a port
            first touch (figure 3 only)
  ours-unit-nbd  ours-nbd with port_copy_chunks 16: 4 KiB chunks, and a
            port first touch copies 64 KiB (figure 3 only)
  qemu      QEMU's replication driver in `qemu-system-x86_64 -M none`, qcow2
            active and hidden (4 KiB clusters) over SEC, its top node and
            SEC node exported by its own NBD server (fio's nbd engine)
"""
import json
import mmap
import os
import signal
import statistics
import subprocess
import sys
import time

REPO = os.environ.get("REPO") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), ".."))
OUT = os.environ.get("OUT", "/tmp")
sys.path.insert(0, os.path.join(REPO, "tests", "vm"))
sys.path.insert(0, os.path.join(REPO, "bench", "lib"))
import dmmsg  # noqa: E402
import dmstatus  # noqa: E402
from qmp import QMP  # noqa: E402

MiB = 1 << 20
TMP = os.environ.get("TMPDIR", "/tmp")


def env_int(name, default):
    return int(os.environ.get(name, default))


def load_env():
    """bench/run passes the DMR_BENCH_* settings in build/bench/env (the
    test VM does not inherit the host's environment)."""
    path = os.path.join(REPO, "build", "bench", "env")
    if os.path.exists(path):
        for line in open(path):
            k, _, v = line.strip().partition("=")
            if k.startswith("DMR_BENCH_") and v:
                os.environ.setdefault(k, v)


load_env()
REPS = env_int("DMR_BENCH_REPS", 3)
CHUNK = 4096
QCOW2_CLUSTER = os.environ.get("DMR_BENCH_QCOW2_CLUSTER", "4k")


def log(*a):
    print(*a, flush=True)


def run(cmd, check=True, quiet=True):
    """Run a command (a list, or a string for the shell); return stdout."""
    r = subprocess.run(cmd, shell=isinstance(cmd, str), text=True,
                       stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE if quiet else None)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (cmd, r.returncode,
                                                   (r.stderr or "").strip()))
    return r.stdout


def dev_bytes(dev):
    return int(run(["blockdev", "--getsize64", dev]))


def zero_head(dev, nbytes=4096):
    run(["dd", "if=/dev/zero", "of=" + dev, "bs=%d" % nbytes, "count=1",
         "oflag=direct", "status=none"])


def dm_create(name, table):
    run(["dmsetup", "create", name, "--table", table])
    return "/dev/mapper/" + name


def dm_remove(*names):
    for n in names:
        for _ in range(50):
            r = subprocess.run(["dmsetup", "remove", n], capture_output=True)
            if r.returncode == 0 or not os.path.exists("/dev/mapper/" + n):
                break
            time.sleep(0.1)


CTL = None


def dm_message(name, text):
    global CTL
    if CTL is None:
        CTL = os.open("/dev/mapper/control", os.O_RDWR)
    dmmsg.message(CTL, name, text)


def dm_status(name):
    global CTL
    if CTL is None:
        CTL = os.open("/dev/mapper/control", os.O_RDWR)
    return dmstatus.status(CTL, name)


def rotated(peers, rounds):
    """(round, peer) pairs for ROUNDS rounds of PEERS, round r starting at
    peer r modulo their count: no peer always runs first (experiments)."""
    for rnd in range(1, rounds + 1):
        k = rnd % len(peers)
        for peer in peers[k:] + peers[:k]:
            yield rnd, peer


def median(v):
    return statistics.median(v) if v else None


def pct(v, p):
    """The p-th percentile (nearest rank) of v."""
    s = sorted(v)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


# ---- results -------------------------------------------------------------

class Results:
    def __init__(self, name):
        os.makedirs(os.path.join(OUT, "bench"), exist_ok=True)
        self.path = os.path.join(OUT, "bench", name + ".json")
        self.rows = []
        self.meta = {"kernel": os.uname().release, "reps": REPS,
                     "chunk": CHUNK, "qcow2_cluster": QCOW2_CLUSTER}

    def add(self, fig, dev, workload, peer, metric, unit, value, note=""):
        """Add one run's value to its row (made on first use)."""
        for r in self.rows:
            if (r["fig"], r["dev"], r["workload"], r["peer"], r["metric"]) == \
                    (fig, dev, workload, peer, metric):
                break
        else:
            r = {"fig": fig, "dev": dev, "workload": workload, "peer": peer,
                 "metric": metric, "unit": unit, "runs": [], "note": note}
            self.rows.append(r)
        if value is None:
            r["note"] = note or r["note"]
        else:
            r["runs"].append(round(value, 4))
        r["median"] = median(r["runs"])
        log("%-5s %-6s %-28s %-9s %-10s %s" % (fig, dev, workload, peer, metric,
                                                value if value is not None else note))
        self.save()

    def save(self):
        with open(self.path + ".tmp", "w") as f:
            json.dump({"meta": self.meta, "rows": self.rows}, f, indent=1)
        os.replace(self.path + ".tmp", self.path)


# ---- fio -----------------------------------------------------------------

def job_args(target, rw, bs, qd, size, offset=0, fsync=0):
    """fio options for one job on a block device or an nbd+unix:// URI."""
    args = ["--rw=" + rw, "--bs=" + str(bs), "--iodepth=%d" % qd,
            "--offset=%d" % offset, "--size=%d" % size]
    if target.startswith("nbd"):
        args += ["--ioengine=nbd", "--uri=" + target]
    else:
        args += ["--filename=" + target, "--direct=1",
                 "--ioengine=" + ("psync" if fsync else "libaio")]
    if fsync:
        args.append("--fsync=%d" % fsync)
    return args


FIO_GLOBAL = ["--output-format=json", "--randrepeat=0",
              "--percentile_list=50:99:99.9"]


def fio_jobs(jobs):
    """Run jobs one after another in one fio process (fio's start-up costs
    ~0.5 s under TCG); each job is a dict of job_args()'s arguments.
    Return one result dict per job (see fio_parse)."""
    args = ["fio"] + FIO_GLOBAL
    for i, j in enumerate(jobs):
        args += ["--name=j%d" % i] + (["--stonewall"] if i else []) + \
            job_args(**j)
    text = run(args)
    out = json.loads(text[text.index("{"):])["jobs"]
    return [fio_result(o, jobs[i]["rw"]) for i, o in enumerate(out)]


def fio(target, rw, bs, qd, size, offset=0, fsync=0, runtime=None,
        background=False):
    """One fio job; return its result (or the process, in the background)."""
    args = ["fio"] + FIO_GLOBAL + ["--name=b"] + \
        job_args(target, rw, bs, qd, size, offset, fsync)
    if runtime:
        args += ["--runtime=%d" % runtime, "--time_based"]
    if background:
        return subprocess.Popen(args, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return fio_parse(run(args), rw)


def fio_parse(text, rw):
    return fio_result(json.loads(text[text.index("{"):])["jobs"][0], rw)


def fio_result(job, rw):
    d = job["read" if "read" in rw else "write"]
    clat = d.get("clat_ns") or {}
    p = clat.get("percentile") or {}
    return {"iops": d["iops"], "mibs": d["bw_bytes"] / MiB,
            "p50": p.get("50.000000", 0) / 1000,
            "p99": p.get("99.000000", 0) / 1000,
            "max": clat.get("max", 0) / 1000,
            "ios": d["total_ios"]}


def fio_stop(proc, rw):
    """End a background fio (SIGINT makes it report) and parse it."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return fio_parse(out, rw)


def fill(target, offset, size, qd=8):
    """Write SIZE bytes at OFFSET with 1 MiB sequential writes."""
    fio(target, "write", MiB, qd, size, offset=offset)


def nbd_uri(sock, name):
    return "nbd+unix:///%s?socket=%s" % (name, sock)


class QemuNbd:
    """qemu-nbd exporting a block device (the same server code as QEMU's)."""

    def __init__(self, dev, name):
        self.sock = os.path.join(TMP, "qnbd-%s.sock" % name)
        self.pidf = os.path.join(TMP, "qnbd-%s.pid" % name)
        run(["qemu-nbd", "--fork", "--persistent", "--shared=8", "-f", "raw",
             "--cache=none", "--aio=native", "-x", name, "-k", self.sock,
             "--pid-file", self.pidf, dev])
        self.uri = nbd_uri(self.sock, name)

    def close(self):
        try:
            pid = int(open(self.pidf).read())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
        except (OSError, ValueError):
            pass


# ---- peers ---------------------------------------------------------------

class Peer:
    """A stack on the devices.  top: where VM writes go; port: where the
    primary's writes go (None: the peer has no such path); reset(): make the
    next write to any chunk a first touch; layers: how many layers a top read
    can come from."""
    top = port = None
    layers = 1
    same_path = False   # top and port are the same device (raw, linear)
    port_only = False   # runs figure 3 only
    fig1_only = False   # runs figure 1 only

    def reset(self):
        pass

    def close(self):
        pass


class Raw(Peer):
    name = "raw"
    same_path = True

    def __init__(self, d):
        self.top = self.port = d.sec


class Linear(Peer):
    name = "linear"
    same_path = True

    def __init__(self, d):
        self.top = self.port = dm_create(
            "blin", "0 %d linear %s 0" % (d.sectors, d.sec))

    def close(self):
        dm_remove("blin")


class RawNbd(Peer):
    name = "raw-nbd"
    same_path = True

    def __init__(self, d):
        self.nbd = QemuNbd(d.sec, "raw")
        self.top = self.port = self.nbd.uri

    def close(self):
        self.nbd.close()


class Snapshot(Peer):
    name = "snapshot"
    layers = 2
    chunk = CHUNK

    def __init__(self, d):
        self.d = d
        # The origin after the snapshot: snapshot-origin splits writes at
        # the snapshots' chunk size as it is when the origin resumes; with
        # no snapshot then, a 1 MiB write would copy only its first chunk.
        self._snap()
        self.port = dm_create("borig", "0 %d snapshot-origin %s" %
                              (d.sectors, d.sec))

    def _snap(self):
        zero_head(self.d.hid)
        self.top = dm_create("bsnap", "0 %d snapshot %s %s P %d" %
                             (self.d.sectors, self.d.sec, self.d.hid,
                              self.chunk // 512))

    def reset(self):
        dm_remove("bsnap")
        self._snap()

    def close(self):
        dm_remove("bsnap", "borig")


class Snapshot64(Snapshot):
    """dm-snapshot with 64 KiB chunks, figure 1 only: issue 15 asks for the
    top's first touch ahead of dm-snapshot at both chunk sizes."""
    name = "snapshot64"
    chunk = 65536
    fig1_only = True


class Thin(Peer):
    name = "thin"
    layers = 2
    BLOCK = 128     # sectors: 64 KiB, dm-thin's smallest block

    def __init__(self, d):
        self.d = d
        zero_head(d.spare)
        hs = dev_bytes(d.hid) // 512 // self.BLOCK * self.BLOCK
        dm_create("bpool", "0 %d thin-pool %s %s %d 0 1 skip_block_zeroing" %
                  (hs, d.spare, d.hid, self.BLOCK))
        self._thin()

    def _thin(self):
        dm_message("bpool", "create_thin 1")
        self.top = dm_create("bthin", "0 %d thin /dev/mapper/bpool 1 %s" %
                             (self.d.sectors, self.d.sec))

    def reset(self):
        dm_remove("bthin")
        dm_message("bpool", "delete 1")
        self._thin()

    def close(self):
        dm_remove("bthin", "bpool")


class Ours(Peer):
    name = "ours"
    layers = 3
    chunk = CHUNK
    features = "0"

    def __init__(self, d):
        zero_head(d.hid)
        zero_head(d.act)
        self.top = dm_create("top", "0 %d replication secondary %s %s %s %d %s"
                             % (d.sectors, d.sec, d.hid, d.act,
                                self.chunk // 512, self.features))
        self.port = dm_create("port", "0 %d replication port %s" %
                              (d.sectors, d.sec))

    def reset(self):
        dm_message("top", "checkpoint")

    def close(self):
        dm_remove("port", "top")


class Ours64(Ours):
    """ours with 64 KiB chunks, figure 1 only: issue 15's first-touch and
    rewrite goals hold for 4 KiB and 64 KiB chunks."""
    name = "ours64"
    chunk = 65536
    fig1_only = True


class OursNbd(Ours):
    name = "ours-nbd"

    def __init__(self, d):
        super().__init__(d)
        self.ntop = QemuNbd(self.top, "top")
        self.nport = QemuNbd(self.port, "port")
        self.top, self.port = self.ntop.uri, self.nport.uri

    def close(self):
        self.ntop.close()
        self.nport.close()
        super().close()


class Ours64Nbd(OursNbd):
    """ours-nbd with 64 KiB chunks.  QEMU's replication driver copies in
    units of its backup job's cluster, in QEMU 7.2 the larger of 64 KiB and
    the hidden qcow2's cluster size: with 64 KiB chunks ours makes the same
    copies on figure 3's port first touch (bench/README.md)."""
    name = "ours64-nbd"
    chunk = 65536
    port_only = True


class OursUnitNbd(OursNbd):
    """ours-nbd with port_copy_chunks 16: 4 KiB chunks, so the top's
    copy-ups stay 4 KiB, and a port first touch copies the 64 KiB around
    it, QEMU's copy unit (bench/README.md)."""
    name = "ours-unit-nbd"
    features = "2 port_copy_chunks %d" % max(1, 65536 // CHUNK)
    port_only = True


class Qemu(Peer):
    """QEMU's replication driver, secondary side (docs/block-replication.txt):
    replication(mode=secondary, top-id) -> qcow2 active -> qcow2 hidden ->
    raw secondary.  xen-set-replication starts it: a backup job
    (copy-before-write) from the secondary disk into hidden, so that writes
    through the secondary disk's NBD export (the primary's) copy first."""
    name = "qemu"
    layers = 3

    def __init__(self, d, start=True):
        self.d = d
        size = dev_bytes(d.sec)
        for dev in (d.hid, d.act):
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                 "cluster_size=%s" % QCOW2_CLUSTER, dev, str(size)])
        self.qsock = os.path.join(TMP, "qmp.sock")
        self.nsock = os.path.join(TMP, "qemu-nbd.sock")
        self.log = open(os.path.join(TMP, "qemu.log"), "a")
        self.proc = subprocess.Popen(
            ["qemu-system-x86_64", "-M", "none", "-nodefaults", "-display",
             "none", "-qmp", "unix:%s,server=on,wait=off" % self.qsock],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        q = self.q = QMP(self.qsock)

        def f(dev):
            return {"driver": "host_device", "filename": dev,
                    "cache": {"direct": True}, "aio": "native"}
        q.cmd("blockdev-add", driver="raw",
              **{"node-name": "sec", "file": f(d.sec)})
        q.cmd("blockdev-add", driver="qcow2",
              **{"node-name": "hid", "file": f(d.hid), "backing": "sec"})
        q.cmd("blockdev-add", driver="qcow2",
              **{"node-name": "act", "file": f(d.act), "backing": "hid"})
        q.cmd("blockdev-add", driver="replication", mode="secondary",
              **{"node-name": "top", "top-id": "top", "file": "act"})
        q.cmd("nbd-server-start",
              addr={"type": "unix", "data": {"path": self.nsock}})
        q.cmd("block-export-add", type="nbd", id="esec",
              **{"node-name": "sec", "writable": True, "name": "sec"})
        q.cmd("block-export-add", type="nbd", id="etop",
              **{"node-name": "top", "writable": True, "name": "top"})
        q.cmd("xen-set-replication", enable=True, primary=False)
        self.top = nbd_uri(self.nsock, "top")
        self.port = nbd_uri(self.nsock, "sec")

    def reset(self):
        self.q.cmd("xen-colo-do-checkpoint")

    def graph(self):
        g = self.q.cmd("x-debug-query-block-graph")
        names = {n["id"]: n["name"] for n in g["nodes"]}
        return {(names[e["parent"]], e["name"], names[e["child"]])
                for e in g["edges"]}

    def close(self):
        try:
            self.q.cmd("quit")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.q.close()
        self.log.close()


PEERS = [Raw, Linear, RawNbd, Snapshot, Snapshot64, Thin, Ours, Ours64,
         OursNbd, Ours64Nbd, OursUnitNbd, Qemu]


class Devices:
    def __init__(self, kind):
        self.kind = kind
        if kind == "brd":
            mib = env_int("DMR_BENCH_BRD_MIB", 256)
            subprocess.run(["rmmod", "brd"], capture_output=True)
            run(["modprobe", "brd", "rd_nr=4", "rd_size=%d" % (mib * 1024)])
            disks = ["/dev/ram%d" % i for i in range(4)]
        else:
            disks = os.environ["DISKS"].split()[:4]
        self.sec, self.hid, self.act, self.spare = disks
        self.sectors = dev_bytes(self.sec) // 512
        self.all = disks

    def prefill(self):
        """Write every block once, so that no peer pays for the first
        allocation of brd pages or of the host's sparse files."""
        for dev in self.all:
            run(["dd", "if=/dev/zero", "of=" + dev, "bs=4M", "oflag=direct",
                 "status=none"], check=False)


# ---- figures 1, 2, 3, 7 ----------------------------------------------------

def io_bench(kind):
    res = Results("io-" + kind)
    d = Devices(kind)
    res.meta["devices"] = {"kind": kind, "sec": d.sec, "hid": d.hid,
                           "act": d.act, "spare": d.spare,
                           "size_mib": d.sectors * 512 // MiB}
    r1 = env_int("DMR_BENCH_QD1_MIB", 8) * MiB
    r32 = env_int("DMR_BENCH_QD32_MIB", 32) * MiB
    rf = env_int("DMR_BENCH_FSYNC_MIB", 2) * MiB
    rs = env_int("DMR_BENCH_SEQ_MIB", 64) * MiB
    rr = env_int("DMR_BENCH_READ_MIB", 24) * MiB
    # Port writes go to the second half: a top write never maps them.
    poff = d.sectors * 512 // 2 // MiB * MiB
    res.meta["sizes_mib"] = {"qd1": r1 // MiB, "qd32": r32 // MiB,
                             "fsync": rf // MiB, "seq": rs // MiB,
                             "read": rr // MiB}
    d.prefill()
    names = os.environ.get("DMR_BENCH_PEERS")
    peers = [p for p in PEERS if not names or p.name in names.split()]
    for rep in range(REPS):
        for cls in peers:
            p = cls(d)
            try:
                io_peer(res, kind, p, r1, r32, rf, rs, rr, poff)
            finally:
                p.close()
        log("rep %d done" % (rep + 1))
    return res


def io_peer(res, kind, p, r1, r32, rf, rs, rr, poff):
    """All I/O figures of one peer, one run each.  Jobs that follow one
    reset share one fio process and use disjoint regions."""
    n = p.name

    def job(target, rw, bs, qd, size, offset=0, fsync=0):
        return {"target": target, "rw": rw, "bs": bs, "qd": qd, "size": size,
                "offset": offset, "fsync": fsync}

    def record(fig, plan, results):
        for (wl, metric), r in zip(plan, results):
            if wl:
                res.add(fig, kind, wl, n, metric,
                        "IOPS" if metric == "iops" else "MiB/s", r[metric])

    if not p.port_only:
        io_top(res, kind, p, r1, r32, rf, rs, rr, job, record)
    if not p.fig1_only:
        io_port(res, kind, p, r1, r32, rs, poff, job, record)


def io_top(res, kind, p, r1, r32, rf, rs, rr, job, record):
    """Figures 1, 7 and 2: the top."""
    # Figures 1 and 7: top 4 KiB random writes after a reset (checkpoint):
    # first touch, then rewrite of the same blocks; QD1, QD32, and QD1 with
    # an fsync after every write.
    o32, of = r1, r1 + r32
    p.reset()
    plan = [("top randwrite 4k qd1 first", "iops"),
            ("top randwrite 4k qd1 rewrite", "iops"),
            ("top randwrite 4k qd32 first", "iops"),
            ("top randwrite 4k qd32 rewrite", "iops"),
            ("top randwrite 4k fsync=1 first", "iops"),
            ("top randwrite 4k fsync=1 rewrite", "iops")]
    jobs = [job(p.top, "randwrite", 4096, 1, r1),
            job(p.top, "randwrite", 4096, 1, r1),
            job(p.top, "randwrite", 4096, 32, r32, o32),
            job(p.top, "randwrite", 4096, 32, r32, o32),
            job(p.top, "randwrite", 4096, 1, rf, of, fsync=1),
            job(p.top, "randwrite", 4096, 1, rf, of, fsync=1)]
    r = fio_jobs(jobs[:4] if p.fig1_only else jobs)
    record("1", plan[:4], r[:4])
    if p.fig1_only:
        return
    record("7", plan[4:], r[4:])
    # Figure 2: 1 MiB sequential writes (first touch), then 4 KiB random
    # reads over a region whose first third was written through the top
    # (active), second third through the port (old data copied into hidden),
    # last third only on the secondary device.
    p.reset()
    third = rr // 3 // MiB * MiB
    jobs = [job(p.top, "write", MiB, 8, rs)]
    plan = [("top seqwrite 1M qd8 first", "mibs")]
    if p.layers >= 2 and not p.same_path:
        jobs.append(job(p.top, "write", MiB, 8, third, rs))
        plan.append((None, None))
        if p.port:
            jobs.append(job(p.port, "write", MiB, 8, third, rs + third))
            plan.append((None, None))
    for qd in (1, 32):
        jobs.append(job(p.top, "randread", 4096, qd, 3 * third, rs))
        plan.append(("top randread 4k qd%d layers" % qd, "iops"))
    record("2", plan, fio_jobs(jobs))


def io_port(res, kind, p, r1, r32, rs, poff, job, record):
    """Figure 3: the port."""
    n, o32 = p.name, r1
    # Figure 3: port 4 KiB random writes (first touch: copy-before-write),
    # rewrite, and 1 MiB sequential writes (first touch), in the second half
    # of the device.  raw and linear: the port is the same device as the
    # top, so their figure-1 and -2 runs stand (repeated in the table).
    if p.port is None:
        return
    if p.same_path:
        for row in list(res.rows):
            if row["peer"] != n or row["dev"] != kind:
                continue
            if row["fig"] == "1" or row["workload"].startswith("top seqwrite"):
                res.add("3", kind, row["workload"].replace("top", "port"), n,
                        row["metric"], row["unit"], row["runs"][-1],
                        "same device as the top: the top's runs")
        return
    p.reset()
    plan = [("port randwrite 4k qd1 first", "iops"),
            ("port randwrite 4k qd1 rewrite", "iops"),
            ("port randwrite 4k qd32 first", "iops"),
            ("port randwrite 4k qd32 rewrite", "iops"),
            ("port seqwrite 1M qd8 first", "mibs")]
    r = fio_jobs([job(p.port, "randwrite", 4096, 1, r1, poff),
                  job(p.port, "randwrite", 4096, 1, r1, poff),
                  job(p.port, "randwrite", 4096, 32, r32, poff + o32),
                  job(p.port, "randwrite", 4096, 32, r32, poff + o32),
                  job(p.port, "write", MiB, 8, rs, poff + o32 + r32)])
    record("3", plan, r)


# ---- figure 4: checkpoint latency ------------------------------------------

class SpareTimer:
    """Times a flush and a 4 KiB O_DSYNC write of a device nobody else
    uses (on virtio-blk, which has no FUA, the write is a write and a
    flush: what a FUA header costs)."""

    def __init__(self, dev):
        self.fd = os.open(dev, os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
        self.buf = mmap.mmap(-1, 4096)
        self.flush, self.write = [], []

    def sample(self):
        t0 = time.perf_counter()
        os.fsync(self.fd)
        t1 = time.perf_counter()
        os.pwrite(self.fd, self.buf, 0)
        t2 = time.perf_counter()
        self.flush.append((t1 - t0) * 1000)
        self.write.append((t2 - t1) * 1000)

    def close(self):
        os.close(self.fd)


def checkpoint_bench():
    res = Results("checkpoint")
    d = Devices("virtio")
    d.prefill()
    half = d.sectors * 512 // 2
    plan = []
    for item in os.environ.get("DMR_BENCH_CKPT",
                               "1:100 64:20 512:5").split():
        mib, reps = item.split(":")
        plan.append((int(mib), int(reps)))
    res.meta["plan"] = plan
    spare = SpareTimer(d.spare)
    for cls in (Ours, Qemu):
        p = cls(d)
        try:
            p.reset()
            floor = []
            for mib, reps in plan:
                for _ in range(reps):
                    # active: top writes from 0; hidden: port writes from the
                    # middle (chunks not in active).
                    fill(p.top, 0, mib * MiB)
                    fill(p.port, half, mib * MiB)
                    if cls is Ours:
                        st = dm_status("top").split()
                        used = (st[3].split("/")[0], st[4].split("/")[0])
                        # The ioctl's own round trip: a message that only
                        # sets a value (to its default).
                        t0 = time.perf_counter()
                        dm_message("top", "commit_depth 8")
                        floor.append((time.perf_counter() - t0) * 1000)
                        t0 = time.perf_counter()
                        dm_message("top", "checkpoint")
                        ms = (time.perf_counter() - t0) * 1000
                        # What the checkpoint's own I/O costs at this moment.
                        spare.sample()
                    else:
                        t0 = time.perf_counter()
                        p.reset()
                        ms = (time.perf_counter() - t0) * 1000
                        used = None
                        t0 = time.perf_counter()
                        p.q.cmd("query-status")
                        floor.append((time.perf_counter() - t0) * 1000)
                    res.add("4", "virtio", "checkpoint %d MiB" % mib, p.name,
                            "ms", "ms", ms,
                            "chunks active+hidden %s+%s" % used if used else "")
            if floor and cls is Ours:
                res.add("4", "virtio", "message round trip (commit_depth)",
                        "ours", "ms", "ms", median(floor))
                res.add("4", "virtio", "flush of a virtio disk", "device",
                        "ms", "ms", median(spare.flush))
                res.add("4", "virtio", "4 KiB O_DSYNC write to a virtio disk",
                        "device", "ms", "ms", median(spare.write))
            elif floor:
                res.add("4", "virtio", "QMP round trip (query-status)",
                        "qemu", "ms", "ms", median(floor))
        finally:
            p.close()
    spare.close()
    return res


# ---- figure 5: failover ------------------------------------------------------

def failover_bench():
    res = Results("failover")
    d = Devices("virtio")
    d.prefill()
    total = env_int("DMR_BENCH_FAILOVER_MIB", 512) * MiB
    half = d.sectors * 512 // 2
    res.meta["failover_mib"] = total // MiB
    for rep in range(REPS):
        # dd of the same size, from a store device to the secondary (and
        # flushed, as the commit is), with the same reader on the source:
        # the read latency the copy alone causes on these devices.
        reader = fio(d.act, "randread", 4096, 1, half, runtime=3600,
                     background=True)
        time.sleep(2)
        t0 = time.perf_counter()
        run(["dd", "if=" + d.act, "of=" + d.sec, "bs=1M",
             "count=%d" % (total // MiB), "iflag=direct", "oflag=direct",
             "conv=fsync", "status=none"])
        secs = time.perf_counter() - t0
        r = fio_stop(reader, "randread")
        res.add("5", "virtio", "commit %d MiB" % (total // MiB), "dd", "mibs",
                "MiB/s", total / MiB / secs)
        for m in ("p50", "p99", "max"):
            res.add("5", "virtio", "top randread 4k qd1 during commit", "dd",
                    m, "us", r[m])
        for cls in (Ours, Qemu):
            p = cls(d)
            try:
                failover_one(res, p, total, half)
            finally:
                p.close()
        # The commit depth: 8 (the default) above, the deepest here.
        p = Ours(d)
        try:
            failover_one(res, p, total, half, depth=64)
        finally:
            p.close()
        # The copy alone: the QD1 reader takes as many reads as a peer
        # serves, so a peer that serves them faster gives the copy less CPU.
        for cls in (Ours, Qemu):
            p = cls(d)
            try:
                failover_one(res, p, total, half, with_reader=False)
            finally:
                p.close()
    return res


def failover_one(res, p, total, half, depth=None, with_reader=True):
    wl = "commit %d MiB" % (total // MiB) + ("" if with_reader else ", no reader")
    name = p.name if depth is None else "%s-depth%d" % (p.name, depth)
    p.reset()
    # Half the dirty data in active (top writes), half in hidden (port
    # writes to other chunks).
    fill(p.top, 0, total // 2)
    fill(p.port, half, total // 2)
    # The reader reads chunks of all three kinds: in active, in hidden, in
    # neither.
    reader = None
    if with_reader:
        reader = fio(p.top, "randread", 4096, 1, half + total // 2,
                     runtime=3600, background=True)
        time.sleep(2)
    t0 = time.perf_counter()
    if isinstance(p, Ours):
        try:
            if depth:
                dm_message("top", "commit_depth %d" % depth)
            dm_message("top", "failover")
        except OSError as e:
            if reader:
                fio_stop(reader, "randread")
            res.add("5", "virtio", wl, name, "mibs", "MiB/s", None,
                    "not available: failover message fails (%s)" % e.strerror)
            return
        while True:
            st = dm_status("top").split()
            if st[1] == "done":
                break
            if st[1] == "failover_failed":
                raise RuntimeError("failover failed: %s" % " ".join(st))
            time.sleep(0.005)
    else:
        p.q.cmd("xen-set-replication", enable=False, primary=False,
                failover=True)
        # The commit is an internal job (no QMP events): it is done when
        # the replication node's file child is the secondary disk.
        while ("top", "file", "sec") not in p.graph():
            time.sleep(0.005)
    secs = time.perf_counter() - t0
    res.add("5", "virtio", wl, name, "mibs", "MiB/s", total / MiB / secs)
    if not with_reader:
        return
    r = fio_stop(reader, "randread")
    for m in ("p50", "p99", "max"):
        res.add("5", "virtio", "top randread 4k qd1 during commit", name,
                m, "us", r[m])


# ---- figure 6: memory ----------------------------------------------------

def meminfo():
    m = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":")
        m[k] = int(v.split()[0]) * 1024
    return m


def slabinfo():
    s = {}
    for line in open("/proc/slabinfo"):
        if line.startswith(("slabinfo", "#")):
            continue
        f = line.split()
        s[f[0]] = int(f[2]) * int(f[3])     # num_objs * objsize
    return s


def settle():
    """Let freeing finish (RCU, workers), then drop the page cache, dentries
    and inodes, and shrink every slab cache: the free objects that per-CPU
    and empty slabs keep are not memory that a peer holds."""
    time.sleep(2)
    run("sync; echo 3 > /proc/sys/vm/drop_caches")
    time.sleep(1)
    run("for f in /sys/kernel/slab/*/shrink; do echo 1 > $f; done")


def snapshot_mem():
    settle()
    return meminfo(), slabinfo()


def mem_total(before, after, chunks):
    """Slab + VmallocUsed grown from BEFORE to AFTER, per chunk."""
    return sum(after[0][k] - before[0][k]
               for k in ("Slab", "VmallocUsed")) / chunks


def mem_delta(res, peer, what, before, after, chunks, note=""):
    m0, s0 = before
    m1, s1 = after
    slab = (m1["Slab"] - m0["Slab"]) / chunks
    vm = (m1["VmallocUsed"] - m0["VmallocUsed"]) / chunks
    res.add("6", "virtio", what, peer, "slab B/chunk", "B", slab)
    res.add("6", "virtio", what, peer, "vmalloc B/chunk", "B", vm)
    res.add("6", "virtio", what, peer, "total B/chunk", "B", slab + vm,
            note)
    deltas = sorted(((s1.get(k, 0) - s0.get(k, 0), k) for k in
                     set(s0) | set(s1)), reverse=True)[:4]
    res.add("6", "virtio", what, peer, "top caches", "", None,
            ", ".join("%s %+.1f" % (k, v / chunks) for v, k in deltas))


def fill_random(target, offset, size, qd=32):
    """Write every 4 KiB block of SIZE bytes at OFFSET exactly once, in
    random order (fio randwrite with its random map, O_DIRECT)."""
    fio(target, "randwrite", CHUNK, qd, size, offset=offset)


MEM_FILLS = (("sequential", fill), ("random", fill_random))


def memory_bench():
    """Figure 6: for ours and dm-snapshot, the kernel memory per mapped
    chunk after a sequential fill (1 MiB writes, QD8) and after a random
    fill (every 4 KiB chunk written once, in random order, QD32); ours also
    after the checkpoint that follows each fill.  ours maps half the chunks
    through the top (active), half through the port (hidden); dm-snapshot
    all of them through the snapshot (its COW)."""
    res = Results("memory")
    d = Devices("virtio")
    # As large as the 1 GiB disks allow (dm-snapshot's COW takes both
    # halves): the guest's own slab moves by up to some 300 KB between two
    # snapshots with nothing mapped (dentries, inodes), 4.5 B a chunk over
    # 2 x 128 MiB, 1.3 B over 2 x 448 MiB.
    mib = env_int("DMR_BENCH_MEM_MIB", 448)
    half = d.sectors * 512 // 2
    chunks = 2 * mib * MiB // CHUNK
    res.meta["chunks"] = chunks
    res.meta["fills"] = {"sequential": "1 MiB writes, QD8",
                         "random": "4 KiB randwrite, fio random map, QD32"}
    # A warm-up, not measured: the first fill after boot also pays for
    # one-off allocations (slab pages of caches used for the first time,
    # mempools, fio's and the devices' first use), which showed as 10-15
    # B/chunk in a first round.  Each peer, each fill, on a small region.
    warm = env_int("DMR_BENCH_MEM_WARM_MIB", 8) * MiB
    for kind, fn in MEM_FILLS:
        for cls in (Ours, Snapshot):
            p = cls(d)
            try:
                fn(p.top, 0, warm)
                if cls is Ours:
                    fn(p.port, half, warm)
                p.reset()
            finally:
                p.close()
    settle()
    for _ in range(REPS):
        for kind, fn in MEM_FILLS:
            what = "%s fill, %d chunks mapped" % (kind, chunks)
            p = Ours(d)
            try:
                before = snapshot_mem()
                fn(p.top, 0, mib * MiB)
                fn(p.port, half, mib * MiB)
                st = dm_status("top").split()
                after = snapshot_mem()
                mem_delta(res, "ours", what, before, after, chunks,
                          "active+hidden chunks used %s+%s" % (
                              st[3].split("/")[0], st[4].split("/")[0]))
                p.reset()
                freed = snapshot_mem()
                mem_delta(res, "ours", "%s fill, after checkpoint" % kind,
                          before, freed, chunks)
                # The checkpoint frees the maps: their own cost.
                res.add("6", "virtio", what, "ours", "freed B/chunk", "B",
                        mem_total(freed, after, chunks))
            finally:
                p.close()
            p = Snapshot(d)
            try:
                before = snapshot_mem()
                fn(p.top, 0, 2 * mib * MiB)
                st = dm_status("bsnap")
                mem_delta(res, "snapshot", what, before, snapshot_mem(),
                          chunks, "status: %s (COW sectors used/total, "
                          "metadata)" % st)
            finally:
                p.close()
    return res


# ---- figure 8: primary -------------------------------------------------------

PRIMARY_PEERS = ("local", "raid1", "primary", "raid1-disk", "primary-meta")


def primary_peer(name, loc, rem, meta, sectors):
    """Create one primary-side peer over local LOC and remote REM; return
    (device, dm names to remove)."""
    if name == "local":
        return loc, []
    if name.startswith("raid1"):
        log_args = "core 2 1024 nosync" if name == "raid1" else \
            "disk 3 %s 1024 nosync" % meta
        return dm_create("bmir", "0 %d mirror %s 2 %s 0 %s 0 1 handle_errors"
                         % (sectors, log_args, loc, rem)), ["bmir"]
    zero_head(meta)
    feat = " 2 metadata %s" % meta if name == "primary-meta" else ""
    return dm_create("bpri", "0 %d replication primary %s %s%s"
                     % (sectors, loc, rem, feat)), ["bpri"]


def primary_barrier(res, dev, n):
    """Time N checkpoint barriers of the primary "bpri": idle, then with a
    QD32 random write job running on it (32 writes in flight)."""
    idle = []
    for _ in range(n):
        t0 = time.perf_counter()
        dm_message("bpri", "checkpoint")
        idle.append((time.perf_counter() - t0) * 1000)
    job = fio(dev, "randwrite", 4096, 32, 64 * MiB, runtime=3600,
              background=True)
    # Until the job writes (a signal in fio's start-up may be lost).
    fw0 = int(dm_status("bpri").split()[3])
    for _ in range(600):
        if int(dm_status("bpri").split()[3]) > fw0 + 1000:
            break
        time.sleep(0.1)
    busy = []
    for _ in range(n):
        t0 = time.perf_counter()
        dm_message("bpri", "checkpoint")
        busy.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.01)
    try:
        fio_stop(job, "randwrite")
    except subprocess.TimeoutExpired:
        log("fio does not stop: status %s" % dm_status("bpri"))
        for pid in run("pgrep -x fio", check=False).split():
            log("fio %s: %s" % (pid, run("cat /proc/%s/stack" % pid,
                                         check=False)))
        run("echo w > /proc/sysrq-trigger", check=False)
        job.kill()
        raise
    for wl, v in (("checkpoint barrier, idle", idle),
                  ("checkpoint barrier, 32 writes in flight", busy)):
        res.add("8", "brd", wl, "primary", "ms", "ms", median(v))
        res.add("8", "brd", wl, "primary", "p99", "ms", pct(v, 99))


def primary_resync(res, d, loc, rem, sectors):
    """sync_all of the whole device against dd of the same bytes."""
    mib = sectors * 512 // MiB
    t0 = time.perf_counter()
    run(["dd", "if=" + loc, "of=" + rem, "bs=1M", "count=%d" % mib,
         "iflag=direct", "oflag=direct", "conv=fsync", "status=none"])
    res.add("8", "brd", "resync %d MiB" % mib, "dd", "mibs", "MiB/s",
            mib / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    dm_create("bpri", "0 %d replication primary %s %s 1 sync_all"
              % (sectors, loc, rem))
    try:
        while dm_status("bpri").split()[1] != "running":
            time.sleep(0.005)
        res.add("8", "brd", "resync %d MiB" % mib, "primary", "mibs",
                "MiB/s", mib / (time.perf_counter() - t0))
    finally:
        dm_remove("bpri")


def primary_bench():
    res = Results("primary")
    d = Devices("brd")
    loc, rem, meta = d.sec, d.hid, d.act
    sectors = d.sectors
    r1 = env_int("DMR_BENCH_QD1_MIB", 8) * MiB
    r32 = env_int("DMR_BENCH_QD32_MIB", 32) * MiB
    rs = env_int("DMR_BENCH_SEQ_MIB", 64) * MiB
    res.meta["devices"] = {"local": loc, "remote": rem, "metadata": meta,
                           "size_mib": sectors * 512 // MiB}
    d.prefill()
    names = os.environ.get("DMR_BENCH_PEERS")
    peers = [p for p in PRIMARY_PEERS if not names or p in names.split()]
    for rep in range(REPS):
        for name in peers:
            dev, dms = primary_peer(name, loc, rem, meta, sectors)
            try:
                rows = fio_jobs([
                    dict(target=dev, rw="randwrite", bs=4096, qd=1, size=r1),
                    dict(target=dev, rw="randwrite", bs=4096, qd=32, size=r32),
                    dict(target=dev, rw="write", bs=MiB, qd=8, size=rs)])
                res.add("8", "brd", "write 4k qd1", name, "iops", "IOPS",
                        rows[0]["iops"])
                res.add("8", "brd", "write 4k qd32", name, "iops", "IOPS",
                        rows[1]["iops"])
                res.add("8", "brd", "write 1M seq qd8", name, "mibs", "MiB/s",
                        rows[2]["mibs"])
                if name == "primary":
                    primary_barrier(res, dev, 50)
            finally:
                dm_remove(*dms)
        primary_resync(res, d, loc, rem, sectors)
        log("rep %d done" % (rep + 1))
    return res


def main(argv):
    what = argv[0] if argv else ""
    if what == "io":
        io_bench(argv[1])
    elif what == "checkpoint":
        checkpoint_bench()
    elif what == "failover":
        failover_bench()
    elif what == "memory":
        memory_bench()
    elif what == "primary":
        primary_bench()
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
