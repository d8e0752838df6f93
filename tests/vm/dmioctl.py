# SPDX-License-Identifier: GPL-2.0-only
"""Device-mapper ioctls from python: one ioctl per call, no dmsetup.

A dmsetup call costs ~150 ms under TCG; these cost one ioctl each.  The
structs are include/uapi/linux/dm-ioctl.h's (version 4).  Errors raise
OSError with the ioctl's errno.
"""
import errno
import fcntl
import os
import stat
import struct

DM_NAME_LEN, DM_UUID_LEN = 128, 129
HDR = struct.Struct("=3I I I I i I I I Q %ds %ds 7s" % (DM_NAME_LEN, DM_UUID_LEN))
SPEC = struct.Struct("=Q Q i I 16s")

(DM_VERSION, DM_REMOVE_ALL, DM_LIST_DEVICES, DM_DEV_CREATE, DM_DEV_REMOVE,
 DM_DEV_RENAME, DM_DEV_SUSPEND, DM_DEV_STATUS, DM_DEV_WAIT, DM_TABLE_LOAD,
 DM_TABLE_CLEAR, DM_TABLE_DEPS, DM_TABLE_STATUS, DM_LIST_VERSIONS,
 DM_TARGET_MSG) = range(15)

DM_SUSPEND_FLAG = 1 << 1
DM_SKIP_LOCKFS_FLAG = 1 << 10
DM_STATUS_TABLE_FLAG = 1 << 4
DM_BUFFER_FULL_FLAG = 1 << 8


def _nr(cmd):
    return (3 << 30) | (HDR.size << 16) | (0xFD << 8) | cmd


def line_target(table):
    """(start, length, type, params) of a one-target table line."""
    start, length, ttype, params = table.split(None, 3)
    return int(start), int(length), ttype, params


class DM:
    def __init__(self):
        self.fd = os.open("/dev/mapper/control", os.O_RDWR)

    def close(self):
        os.close(self.fd)

    def _call(self, cmd, name, flags=0, payload=b"", size=16384, count=0):
        total = max(HDR.size + len(payload), size)
        hdr = HDR.pack(4, 0, 0, total, HDR.size, count, 0, flags, 0, 0, 0,
                       name.encode()[:DM_NAME_LEN - 1], b"", b"")
        buf = bytearray(hdr + payload)
        buf += bytes(total - len(buf))
        fcntl.ioctl(self.fd, _nr(cmd), buf)
        return buf

    def create(self, name):
        buf = self._call(DM_DEV_CREATE, name)
        dev = HDR.unpack_from(buf)[10]
        return os.major(dev), os.minor(dev)

    def load(self, name, targets):
        """targets: [(start, length, type, params)]"""
        payload = b""
        for i, (start, length, ttype, params) in enumerate(targets):
            p = params.encode() + b"\0"
            p += bytes(-(SPEC.size + len(p)) % 8)
            nxt = SPEC.size + len(p) if i + 1 < len(targets) else 0
            payload += SPEC.pack(start, length, 0, nxt, ttype.encode()) + p
        self._call(DM_TABLE_LOAD, name, payload=payload, count=len(targets))

    def resume(self, name):
        self._call(DM_DEV_SUSPEND, name)

    def suspend(self, name, lockfs=True):
        self._call(DM_DEV_SUSPEND, name,
                   flags=DM_SUSPEND_FLAG | (0 if lockfs else DM_SKIP_LOCKFS_FLAG))

    def clear(self, name):
        self._call(DM_TABLE_CLEAR, name)

    def remove(self, name):
        self._call(DM_DEV_REMOVE, name)

    def drop(self, name):
        """Clear NAME's inactive table, if any, and remove NAME."""
        try:
            self.clear(name)
        except OSError:
            pass
        self.remove(name)

    def message(self, name, text, sector=0):
        self._call(DM_TARGET_MSG, name,
                   payload=struct.pack("=Q", sector) + text.encode() + b"\0")

    def status(self, name, table=False):
        """[(start, length, type, text)] of the live table."""
        buf = self._call(DM_TABLE_STATUS, name,
                         flags=DM_STATUS_TABLE_FLAG if table else 0)
        f = HDR.unpack_from(buf)
        if f[7] & DM_BUFFER_FULL_FLAG:
            raise OSError(errno.ENOBUFS, "status buffer full")
        off, out = f[4], []
        for _ in range(f[5]):
            start, length, _st, nxt, tt = SPEC.unpack_from(buf, off)
            text = bytes(buf[off + SPEC.size:]).split(b"\0", 1)[0].decode()
            out.append((start, length, tt.rstrip(b"\0").decode(), text))
            off += nxt
            if not nxt:
                break
        return out

    # With one-line tables and /dev/mapper nodes (there is no udev in the VM):

    def load_line(self, name, table):
        """Load a one-target table given as dmsetup writes it."""
        self.load(name, [line_target(table)])

    def create_live(self, name, targets):
        """Create NAME with TARGETS ([(start, length, type, params)]) and
        resume it; on a failure nothing is left.  Returns (major, minor)."""
        devno = self.create(name)
        try:
            self.load(name, targets)
            self.resume(name)
        except OSError:
            self.remove(name)
            raise
        return devno

    def make(self, name, table):
        """Create, load and resume NAME, and make /dev/mapper/NAME."""
        major, minor = self.create_live(name, [line_target(table)])
        path = "/dev/mapper/" + name
        if os.path.lexists(path):
            os.unlink(path)
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        return path

    def unmake(self, name):
        """Remove NAME and its /dev/mapper node."""
        self.remove(name)
        if os.path.lexists("/dev/mapper/" + name):
            os.unlink("/dev/mapper/" + name)

    def params(self, name):
        """The first target's status text ("" without a table)."""
        st = self.status(name)
        return st[0][3] if st else ""

    def exists(self, name):
        try:
            self._call(DM_DEV_STATUS, name)
            return True
        except OSError:
            return False


class Kmsg:
    """The kernel log since the last drain()."""

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def drain(self):
        lines = []
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                return lines
            except BrokenPipeError:  # overwritten: go on from the next one
                continue
            rec = rec.decode(errors="replace")
            lines.append(rec.split(";", 1)[-1].rstrip("\n"))
