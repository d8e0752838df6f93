#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Device-mapper control with raw ioctls (no dmsetup: one dmsetup call costs
~150 ms under TCG, an ioctl a few ms).

  import dmctl
  dm = dmctl.Control()
  dm.create("name", "0 2048 linear /dev/vdb 0")   # create, load, resume
  dm.status("name")          # the first target's status params
  dm.message("name", "mark m1")
  dm.remove("name")

create() makes /dev/mapper/NAME itself (there is no udev in the VM) and
remove() unlinks it.  Tables have one target line.
"""
import fcntl
import os
import stat
import struct

DM_NAME_LEN, DM_UUID_LEN = 128, 129
HDR = struct.Struct("=3I I I I i I I I Q %ds %ds 7s" % (DM_NAME_LEN, DM_UUID_LEN))
SPEC = struct.Struct("=QQiI16s")	# struct dm_target_spec

DM_DEV_CREATE, DM_DEV_REMOVE, DM_DEV_SUSPEND = 3, 4, 6
DM_TABLE_LOAD, DM_TABLE_STATUS, DM_TARGET_MSG = 9, 12, 14
DM_SUSPEND_FLAG = 1 << 1
DM_NOFLUSH_FLAG = 1 << 11


def _req(nr):
    return (3 << 30) | (HDR.size << 16) | (0xFD << 8) | nr


class Control:
    def __init__(self):
        self.fd = os.open("/dev/mapper/control", os.O_RDWR)

    def close(self):
        os.close(self.fd)

    def ioctl(self, nr, name, payload=b"", flags=0, targets=0, room=0):
        size = HDR.size + len(payload) + room
        buf = bytearray(HDR.pack(4, 0, 0, size, HDR.size, targets, 0, flags, 0, 0, 0,
                                 name.encode(), b"", b"") + payload + bytes(room))
        fcntl.ioctl(self.fd, _req(nr), buf)
        return buf

    def load(self, name, table):
        start, length, ttype, params = table.split(None, 3)
        p = params.encode() + b"\0"
        p += bytes(-(SPEC.size + len(p)) % 8)
        spec = SPEC.pack(int(start), int(length), 0, SPEC.size + len(p), ttype.encode())
        self.ioctl(DM_TABLE_LOAD, name, spec + p, targets=1)

    def resume(self, name, flags=0):
        self.ioctl(DM_DEV_SUSPEND, name, flags=flags)

    def suspend(self, name, flags=0):
        self.ioctl(DM_DEV_SUSPEND, name, flags=DM_SUSPEND_FLAG | flags)

    def create(self, name, table):
        buf = self.ioctl(DM_DEV_CREATE, name)
        dev = HDR.unpack_from(buf)[10]
        try:
            self.load(name, table)
            self.resume(name)
        except OSError:
            self.ioctl(DM_DEV_REMOVE, name)
            raise
        path = "/dev/mapper/" + name
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        major, minor = (dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00)
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        return path

    def remove(self, name):
        self.ioctl(DM_DEV_REMOVE, name)
        try:
            os.unlink("/dev/mapper/" + name)
        except FileNotFoundError:
            pass

    def status(self, name):
        buf = self.ioctl(DM_TABLE_STATUS, name, room=4096)
        h = HDR.unpack_from(buf)
        start, count = h[4], h[5]
        if not count:
            return ""
        p = buf[start + SPEC.size:]
        return bytes(p[:p.index(0)]).decode()

    def message(self, name, text):
        payload = struct.pack("=Q", 0) + text.encode() + b"\0"
        self.ioctl(DM_TARGET_MSG, name, payload)
