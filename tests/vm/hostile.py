#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Hostile metadata in real stores.

  hostile.py DISK...     (4 scratch disks)

Builds a real session (top and port writes, a checkpoint, more writes, the
devices removed), keeps its store images, then for each corruption of
tests/vm/tests/26-hostile-metadata.sh's table writes the images back,
corrupts them and loads the table:

- expected refusal: the load (or the first resume) fails, the kernel log has
  the documented reason, and the secondary, hidden and active devices are
  byte for byte what they were (sha256);
- expected acceptance: the top reads, chunk by chunk, what the documented
  rules make of the corrupted stores (a model below: the newer valid header
  copy, live records of the session's epoch and of chunks and slots that
  exist; active over hidden over the secondary device).

Prints one ok/not ok line per case; exit 1 on any not ok.
"""
import hashlib
import mmap
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmioctl import DM, Kmsg  # noqa: E402

CHUNK = 8                      # sectors
CB = CHUNK * 512               # chunk bytes
SEC_LEN = 16 * 2048            # 16 MiB secondary
STORE_LEN = 4 * 2048           # 4 MiB stores
NR_CHUNKS = SEC_LEN // CHUNK
HDR_FMT = "<IIIIQQ16sIIQQQQQ"  # up to commit_cursor; reserved follows
FIELDS = ("csum magic version role seq epoch uuid state chunk_sectors "
          "secondary_sectors nr_slots meta_start data_start commit_cursor").split()

dm = DM()
kmsg = Kmsg()
BIG = mmap.mmap(-1, 1 << 20)
failures = 0


# ---- crc32c as the kernel's crc32c(~0, ...) (no final inversion) -------------
def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        t.append(c)
    return t


TAB = _table()


def crc32c(data, crc=0xFFFFFFFF):
    for b in data:
        crc = TAB[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


# ---- devices -------------------------------------------------------------------
def node(name):
    import dmioctl
    d = dmioctl.HDR.unpack_from(dm._call(dmioctl.DM_DEV_STATUS, name))[10]
    path = "/dev/dm-%d" % os.minor(d)
    if not os.path.exists(path):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "n-" + name)
        if not os.path.exists(path):
            os.mknod(path, 0o600 | 0o060000, d)
    return path


def mk(name, params, length, ttype="replication"):
    dm.create(name)
    try:
        dm.load(name, [(0, length, ttype, params)])
        dm.resume(name)
    except OSError:
        try:
            dm.remove(name)
        except OSError:
            pass
        raise
    return node(name)


def read_dev(path, nbytes):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    out = bytearray()
    try:
        while len(out) < nbytes:
            n = os.preadv(fd, [BIG], len(out))
            if n <= 0:
                break
            out += BIG[:n]
    finally:
        os.close(fd)
    return bytes(out[:nbytes])


def write_dev(path, data, off=0):
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        pos = 0
        while pos < len(data):
            n = min(len(BIG), len(data) - pos)
            BIG.seek(0)
            BIG.write(data[pos:pos + n] + bytes(len(BIG) - n))
            os.pwritev(fd, [memoryview(BIG)[:-(-n // 4096) * 4096]], off + pos)
            pos += n
    finally:
        os.close(fd)


def fill(byte, n=1):
    return bytes([byte]) * (CB * n)


# ---- the on-disk format (Documentation/replication.rst, "On-disk format") -------
def hdr_get(img, copy):
    v = struct.unpack_from(HDR_FMT, img, copy * 512)
    return dict(zip(FIELDS, v))


def hdr_put(img, copy, h, fix_csum=True):
    b = bytearray(img[copy * 512:(copy + 1) * 512])
    struct.pack_into(HDR_FMT, b, 0, *[h[f] for f in FIELDS])
    if fix_csum:
        struct.pack_into("<I", b, 0, crc32c(bytes(b[4:])))
    img[copy * 512:(copy + 1) * 512] = b


def hdr_valid(img, copy):
    h = hdr_get(img, copy)
    raw = bytes(img[copy * 512:(copy + 1) * 512])
    return (h["magic"] == 0x4C504552 and h["csum"] == crc32c(raw[4:]) and
            h["version"] == 1 and h["role"] in (1, 2) and h["state"] < 4 and
            h["seq"] and h["epoch"] and h["chunk_sectors"] == CHUNK)


def current(img):
    """The copy the loader picks: the newer valid one."""
    a, b = hdr_valid(img, 0), hdr_valid(img, 1)
    if a and (not b or hdr_get(img, 0)["seq"] >= hdr_get(img, 1)["seq"]):
        return hdr_get(img, 0)
    return hdr_get(img, 1) if b else None


def records(img, h, epoch):
    """{chunk: slot} of the live records: the session's epoch, a chunk that
    exists, a slot the store has."""
    m = {}
    for slot in range(h["nr_slots"]):
        chunk, e = struct.unpack_from("<QQ", img, 4096 + slot * 16)
        if e == epoch and chunk < NR_CHUNKS:
            m[chunk] = slot
    return m


def model(sec, hid, act):
    """What the top reads, chunk by chunk, by the documented rules."""
    hh, ah = current(hid), current(act)
    newer = hh if hh["seq"] >= ah["seq"] else ah
    if newer["state"] == 3:            # done: the top maps the secondary
        return [sec[c * CB:(c + 1) * CB] for c in range(NR_CHUNKS)]
    hm = records(hid, hh, newer["epoch"])
    am = records(act, ah, newer["epoch"])
    out = []
    for c in range(NR_CHUNKS):
        if c in am:
            s = ah["data_start"] * 512 + am[c] * CB
            out.append(act[s:s + CB])
        elif c in hm:
            s = hh["data_start"] * 512 + hm[c] * CB
            out.append(hid[s:s + CB])
        else:
            out.append(sec[c * CB:(c + 1) * CB])
    return out


# ---- the session ---------------------------------------------------------------
def build(d):
    for p in (d["hid"], d["act"]):
        write_dev(p, bytes(4096))
    write_dev(d["sec"], b"".join(fill(c % 200 + 1) for c in range(NR_CHUNKS)))
    tbl = "secondary %s %s %s %d" % (d["sec"], d["hid"], d["act"], CHUNK)
    top = mk("hm-top", tbl, SEC_LEN)
    port = mk("hm-port", "port " + d["sec"], SEC_LEN)
    for c in range(10):
        write_dev(top, fill(0xA0 + c), c * CB)
    for c in range(20, 30):
        write_dev(port, fill(0xD0), c * CB)
    dm.message("hm-top", "checkpoint")
    for c in (1, 2, 3, 40, 41):
        write_dev(top, fill(0xB0 + c % 16), c * CB)
    for c in (5, 41, 60):
        write_dev(port, fill(0xE0), c * CB)
    want = read_dev(top, SEC_LEN * 512)
    dm.remove("hm-port")
    dm.remove("hm-top")
    return tbl, want


def sha(path, n):
    return hashlib.sha256(read_dev(path, n)).hexdigest()


def ok(what):
    print("ok - " + what, flush=True)


def not_ok(what):
    global failures
    failures += 1
    print("not ok - " + what, flush=True)


def run_case(d, tbl, name, corrupt, want_reason, hid0, act0, sec0):
    hid, act = bytearray(hid0), bytearray(act0)
    target = corrupt(hid, act)
    write_dev(d["hid"], bytes(hid))
    write_dev(d["act"], bytes(act))
    length = SEC_LEN
    if isinstance(target, tuple):      # (hidden dev, active dev) to use instead
        tbl2 = "secondary %s %s %s %d" % (d["sec"], target[0], target[1], CHUNK)
    else:
        tbl2 = tbl
    before = [sha(d[k], n) for k, n in (("sec", SEC_LEN * 512),
                                        ("hid", STORE_LEN * 512),
                                        ("act", STORE_LEN * 512))]
    kmsg.drain()
    dm.create("hm-top")
    err = None
    try:
        dm.load("hm-top", [(0, length, "replication", tbl2)])
        stage = "resume"
        dm.resume("hm-top")
    except OSError as e:
        err = e
    log = [ln for ln in kmsg.drain() if "replication" in ln]
    if err is not None:
        dm.drop("hm-top")
        after = [sha(d[k], n) for k, n in (("sec", SEC_LEN * 512),
                                           ("hid", STORE_LEN * 512),
                                           ("act", STORE_LEN * 512))]
        why = log[0].split("replication: ", 1)[-1] if log else "(no reason logged)"
        if want_reason is None:
            not_ok("%s: refused (%s), expected acceptance" % (name, why))
        elif not any(want_reason in ln for ln in log):
            not_ok("%s: refused, but expected '%s' in the log, got: %s" %
                   (name, want_reason, " | ".join(log)))
        elif after != before:
            not_ok("%s: refused with '%s', but a device changed" % (name, want_reason))
        else:
            ok("%s: refused: %s; nothing written" % (name, want_reason))
        return
    top = node("hm-top")
    got = read_dev(top, SEC_LEN * 512)
    dm.remove("hm-top")
    if want_reason is not None:
        not_ok("%s: accepted, expected refusal '%s'" % (name, want_reason))
        return
    exp = model(read_dev(d["sec"], SEC_LEN * 512) if sec0 is None else sec0,
                hid, act)
    bad = [c for c in range(NR_CHUNKS) if got[c * CB:(c + 1) * CB] != exp[c]]
    if bad:
        not_ok("%s: accepted, but %d chunks differ from the documented content, "
               "first %s" % (name, len(bad), bad[:8]))
    else:
        ok("%s: accepted; the top reads what the rules promise" % name)


# ---- corruptions ---------------------------------------------------------------
def cur_copy(img):
    h = current(img)
    return h["seq"] & 1


def field(store, f, value, both=True, fix=True):
    """Set a header field of the current copy (and of the other, with both)."""
    def c(hid, act):
        img = hid if store == "hid" else act
        copies = (0, 1) if both else (cur_copy(img),)
        for cp in copies:
            h = hdr_get(img, cp)
            h[f] = value(h[f]) if callable(value) else value
            hdr_put(img, cp, h, fix)
    return c


def flip(store, off, both=True):
    """Flip one bit at byte off of the current copy (and the other)."""
    def c(hid, act):
        img = hid if store == "hid" else act
        for cp in ((0, 1) if both else (cur_copy(img),)):
            img[cp * 512 + off] ^= 0x10
    return c


def record(store, slot, chunk, epoch_delta=0):
    def c(hid, act):
        img = hid if store == "hid" else act
        e = current(img)["epoch"] + epoch_delta
        struct.pack_into("<QQ", img, 4096 + slot * 16, chunk & (2**64 - 1),
                         e & (2**64 - 1))
    return c


def both(*fns):
    def c(hid, act):
        r = None
        for f in fns:
            r = f(hid, act) or r
        return r
    return c


# ---- a primary's out-of-sync log (dm-dirty-log's disk log) ---------------------
def wait_pstate(name, states, secs=60):
    import time
    end = time.monotonic() + secs
    while time.monotonic() < end:
        st = dm.status(name)[0][3].split()
        if st[1] in states:
            return st
        time.sleep(0.1)
    return dm.status(name)[0][3].split()


def primary_cases(disk):
    """A log with out-of-sync regions (the remote failed under writes),
    corrupted; then the primary is loaded again and left to sync.  The
    remote ends equal to local when the log kept the regions out of sync,
    and differs when the log lost them."""
    ln = 4 * 2048                                 # 4 MiB: 8 regions of 1024
    mk("hm-loc", "%s %d" % (disk, 0), ln, "linear")
    mk("hm-rem", "%s %d" % (disk, ln), ln, "linear")
    mk("hm-meta", "%s %d" % (disk, 2 * ln), 8, "linear")
    loc, rem, meta = node("hm-loc"), node("hm-rem"), node("hm-meta")
    write_dev(meta, bytes(4096))
    write_dev(loc, bytes(ln * 512))
    write_dev(rem, bytes(ln * 512))
    tbl = "primary %s %s 2 metadata %s" % (loc, rem, meta)
    pri = mk("hm-pri", tbl, ln)
    write_dev(pri, fill(0x11), 0)                 # region 0, forwarded
    dm.load("hm-rem", [(0, ln, "error", "")])     # the remote fails
    dm.suspend("hm-rem")
    dm.resume("hm-rem")
    for reg in (1, 3, 6):
        write_dev(pri, fill(0x20 + reg), reg * 512 * 1024)
    st = dm.status("hm-pri")[0][3]
    dm.remove("hm-pri")
    dm.load("hm-rem", [(0, ln, "linear", "%s %d" % (disk, ln))])
    dm.suspend("hm-rem")
    dm.resume("hm-rem")
    meta0 = read_dev(meta, 4096)
    rem0 = read_dev(rem, ln * 512)
    print("# primary before the damage: %s; log magic %#x, version %d, "
          "%d regions, clean bits %#x" % ((st,) + struct.unpack_from(
              "<IIQ", meta0) + (meta0[1024],)))

    def magic_flip(m):
        m[0] ^= 1

    def version(m):
        struct.pack_into("<I", m, 4, 99)

    def regions(v):
        def c(m):
            struct.pack_into("<Q", m, 8, v)
        return c

    def bits(v):
        def c(m):
            m[1024:1032] = bytes([v]) * 8
        return c

    def header_zeroed(m):
        m[0:16] = bytes(16)

    # (name, damage, outcome[, table]): "synced" remote equals local after
    # the sync, "forgotten" the log lost the out-of-sync regions (remote
    # differs), or the reason a refused load or resume logs.  A damaged
    # magic is refused, never read as a blank device's new log; sync_all
    # loads it with every region out of sync.
    refused = "no dm-log and is not zeroed"
    tbl_all = "primary %s %s 3 metadata %s sync_all" % (loc, rem, meta)
    cases = [
        ("log untouched", lambda m: None, "synced"),
        ("log magic bit flip: refused", magic_flip, refused),
        ("log header zeroed: refused", header_zeroed, refused),
        ("log magic bit flip, sync_all: a full resync", magic_flip, "synced",
         tbl_all),
        ("log header zeroed, sync_all: a full resync", header_zeroed,
         "synced", tbl_all),
        ("log version 99: unreadable, all out of sync", version, "synced"),
        ("log region count 1", regions(1), "synced"),
        ("log region count 2^64-1", regions(2**64 - 1), "synced"),
        ("log bits all out of sync", bits(0), "synced"),
        ("log bits all in sync", bits(0xFF), "forgotten"),
    ]
    for case in cases:
        name, damage, want = case[:3]
        ctbl = case[3] if len(case) > 3 else tbl
        m = bytearray(meta0)
        damage(m)
        write_dev(meta, bytes(m))
        write_dev(rem, rem0)
        kmsg.drain()
        dm.create("hm-pri")
        err = None
        try:
            dm.load("hm-pri", [(0, ln, "replication", ctbl)])
            dm.resume("hm-pri")
        except OSError as e:
            err = e
        log = [x for x in kmsg.drain() if "replication" in x or "log" in x]
        if err is not None:
            dm.drop("hm-pri")
            if want in ("synced", "forgotten"):
                not_ok("primary, %s: refused (%s): %s" % (name, err, " | ".join(log)))
            elif not any(want in x for x in log):
                not_ok("primary, %s: refused without '%s': %s" % (name, want,
                                                                 " | ".join(log)))
            elif read_dev(meta, 4096) != bytes(m[:4096]):
                not_ok("primary, %s: refused, but the log was written" % name)
            else:
                ok("primary, %s: refused, log untouched: %s" % (name, want))
            continue
        st = wait_pstate("hm-pri", ("running",))
        dm.remove("hm-pri")
        same = read_dev(rem, ln * 512) == read_dev(loc, ln * 512)
        got = "synced" if same else "forgotten"
        if got != want:
            not_ok("primary, %s: remote %s, expected %s (status %s)" % (
                name, got, want, " ".join(st)))
        else:
            ok("primary, %s: loaded, remote %s" % (name, got))
    for n in ("hm-meta", "hm-rem", "hm-loc"):
        dm.remove(n)
    return len(cases)


def main(argv):
    a, b, c, _ = argv[:4]
    d = {}
    for name, disk, ln in (("sec", a, SEC_LEN), ("hid", b, STORE_LEN),
                           ("act", c, STORE_LEN), ("short", c, STORE_LEN // 2)):
        off = 64 * 2048 if name == "short" else 0
        mk("hm-" + name, "%s %d" % (disk, off), ln, "linear")
        d[name] = node("hm-" + name)
    tbl, want = build(d)
    hid0 = read_dev(d["hid"], STORE_LEN * 512)
    act0 = read_dev(d["act"], STORE_LEN * 512)
    sec0 = read_dev(d["sec"], SEC_LEN * 512)
    # The model reads the untouched session as the top did.
    exp = b"".join(model(sec0, hid0, act0))
    if exp != want:
        not_ok("the model does not read the untouched session as the top did")
        return 1
    if hdr_get(hid0, cur_copy(hid0))["csum"] != crc32c(
            hid0[cur_copy(hid0) * 512 + 4:(cur_copy(hid0) + 1) * 512]):
        not_ok("crc32c here differs from the kernel's")
        return 1
    hh, ah = current(hid0), current(act0)
    print("# session: seq %d, epoch %#x, %d slots per store, data at %d" % (
        hh["seq"], hh["epoch"], hh["nr_slots"], hh["data_start"]))
    ns = hh["nr_slots"]
    act_slot = records(act0, ah, ah["epoch"])
    a1 = act_slot[1]                      # active's slot for chunk 1

    def zero_records(hid, act):
        act[4096:ah["data_start"] * 512] = bytes(ah["data_start"] * 512 - 4096)

    def swap_in(hid, act):
        hid[:4096] = act[:4096]

    def zero_hdr(store):
        def c(hid, act):
            (hid if store == "hid" else act)[:4096] = bytes(4096)
        return c

    def to_short(hid, act):
        write_dev(d["short"], bytes(act[:STORE_LEN * 256]))
        return (d["hid"], d["short"])

    def bump_seq(delta_epoch):
        return both(field("hid", "seq", lambda v: v + 2),
                    field("hid", "epoch", lambda v: v + delta_epoch))

    R = "Store header has "
    cases = [
        # header fields, both copies, checksum fixed: each check of the decoder
        ("hidden magic", field("hid", "magic", 0x4C504553), R + "a wrong magic"),
        ("hidden version 2", field("hid", "version", 2), R + "an unsupported version"),
        ("hidden role 0", field("hid", "role", 0), R + "an unknown role"),
        ("hidden role active", field("hid", "role", 2),
         "Hidden device holds an active store: devices swapped?"),
        ("active role hidden", field("act", "role", 1),
         "Active device holds a hidden store: devices swapped?"),
        ("hidden state 7", field("hid", "state", 7), R + "an unknown state"),
        ("hidden seq 0", field("hid", "seq", 0), R + "a zero generation or epoch"),
        ("active epoch 0", field("act", "epoch", 0), R + "a zero generation or epoch"),
        ("hidden chunk size 12", field("hid", "chunk_sectors", 12),
         R + "an invalid chunk size"),
        ("hidden chunk size 4096", field("hid", "chunk_sectors", 4096),
         R + "an invalid chunk size"),
        ("hidden chunk size 16", field("hid", "chunk_sectors", 16),
         R + "an invalid layout"),
        ("active chunk size 16, layout redone", both(
            field("act", "chunk_sectors", 16),
            field("act", "nr_slots", 510),      # dmr_layout_init(8192, 16)
            field("act", "data_start", 32)),
         "Active store was made with another chunk size"),
        ("hidden target length -8", field("hid", "secondary_sectors", SEC_LEN - 8),
         "Hidden store was made for another target length"),
        ("hidden target length 2^64-1", field("hid", "secondary_sectors", 2**64 - 1),
         "Hidden store was made for another target length"),
        ("hidden nr_slots 0", field("hid", "nr_slots", 0), R + "an invalid layout"),
        ("hidden nr_slots 2^31", field("hid", "nr_slots", 2**31), R + "an invalid layout"),
        ("hidden nr_slots 2^64-1", field("hid", "nr_slots", 2**64 - 1),
         R + "an invalid layout"),
        ("hidden nr_slots +1", field("hid", "nr_slots", lambda v: v + 1),
         "Hidden device is smaller than its store's header says"),
        ("hidden meta_start 16", field("hid", "meta_start", 16), R + "an invalid layout"),
        ("active data_start +8", field("act", "data_start", lambda v: v + 8),
         R + "an invalid layout"),
        ("active data_start 2^64-8", field("act", "data_start", 2**64 - 8),
         R + "an invalid layout"),
        ("hidden commit cursor past the end", field("hid", "commit_cursor", NR_CHUNKS + 1),
         R + "a commit cursor past the target's end"),
        ("hidden commit cursor 2^64-1", field("hid", "commit_cursor", 2**64 - 1),
         R + "a commit cursor past the target's end"),
        ("hidden uuid", field("hid", "uuid", lambda v: bytes([v[0] ^ 1]) + v[1:]),
         "Hidden and active stores belong to different sessions"),
        ("hidden epoch +1 at the same generation", field("hid", "epoch", lambda v: v + 1),
         "Hidden and active stores disagree at the same generation"),
        ("hidden state done at the same generation", field("hid", "state", 3),
         "Hidden and active stores disagree at the same generation"),
        # bit flips without a checksum fix
        ("hidden csum bit flip, both copies", flip("hid", 0), R + "a bad checksum"),
        ("active seq bit flip, both copies", flip("act", 17), R + "a bad checksum"),
        ("hidden uuid bit flip, both copies", flip("hid", 40), R + "a bad checksum"),
        ("active reserved bit flip, both copies", flip("act", 300), R + "a bad checksum"),
        ("active magic bit flip, both copies", flip("act", 5), R + "a wrong magic"),
        # one copy torn: the other (older) copy counts
        ("hidden current copy torn", flip("hid", 20, both=False), None),
        ("active current copy torn", flip("act", 60, both=False), None),
        ("both stores' current copies torn", both(flip("hid", 20, both=False),
                                                  flip("act", 20, both=False)), None),
        # whole headers
        ("hidden header zeroed", zero_hdr("hid"),
         "Hidden store is blank, active is not: zero both to start anew"),
        ("active header zeroed", zero_hdr("act"),
         "Active store is blank, hidden is not: zero both to start anew"),
        ("active's header swapped into hidden", swap_in,
         "Hidden device holds an active store: devices swapped?"),
        ("active on a device half its header's size", to_short,
         "Active device is smaller than its store's header says"),
        # newer generations
        ("hidden two generations newer, same epoch", bump_seq(0), None),
        ("hidden newer with the next epoch", bump_seq(1), None),
        ("active newer and done", both(field("act", "seq", lambda v: v + 1),
                                       field("act", "state", 3)), None),
        # records
        ("active record area zeroed", zero_records, None),
        ("active record of a chunk past the device", record("act", a1, NR_CHUNKS), None),
        ("active record of chunk 2^64-1", record("act", a1, 2**64 - 1), None),
        ("active record of chunk 2^32+1", record("act", a1, 2**32 + 1), None),
        ("active record of the previous epoch", record("act", a1, 1, -1), None),
        ("active record of another epoch", record("act", a1, 1, 12345), None),
        ("hidden live record past the last slot", record("hid", ns + 1, 7), None),
        ("active live record in a slot never given out", record("act", ns - 1, 7), None),
        ("hidden record of a chunk active also maps", record("hid", ns - 2, 1), None),
        ("active maps a chunk twice", record("act", ns - 1, 1),
         "Store metadata maps a chunk twice"),
        ("hidden maps a chunk twice", record("hid", ns - 1, 5),
         "Store metadata maps a chunk twice"),
        # a lagging store would be brought up to date: not by a refused load
        ("hidden current copy torn, active maps a chunk twice",
         both(flip("hid", 20, both=False), record("act", ns - 1, 1)),
         "Store metadata maps a chunk twice"),
    ]
    for name, fn, why in cases:
        run_case(d, tbl, name, fn, why, hid0, act0, sec0)
    # The untouched session still loads and reads as before.
    write_dev(d["hid"], hid0)
    write_dev(d["act"], act0)
    top = mk("hm-top", tbl, SEC_LEN)
    if read_dev(top, SEC_LEN * 512) == want:
        ok("the untouched session loads after all the cases")
    else:
        not_ok("the untouched session reads differently")
    dm.remove("hm-top")
    for n in ("short", "act", "hid", "sec"):
        dm.remove("hm-" + n)
    np = primary_cases(argv[3])
    print("# %d cases, %d failed" % (len(cases) + 1 + np, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
