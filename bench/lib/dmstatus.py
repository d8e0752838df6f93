# SPDX-License-Identifier: GPL-2.0-only
"""Read a device-mapper device's status line with the DM_TABLE_STATUS ioctl.

One dmsetup call costs ~150 ms under TCG; this costs one ioctl, so a
benchmark can poll a status every few milliseconds.
"""
import fcntl
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tests", "vm"))
import dmmsg  # noqa: E402

HDR = dmmsg.HDR
DM_TABLE_STATUS = (3 << 30) | (HDR.size << 16) | (0xFD << 8) | 12
SPEC = struct.Struct("=Q Q i I 16s")    # struct dm_target_spec
BUF = 16384


def status(fd, name):
    """The status line of the first target of device NAME (without the
    "start length type" prefix that dmsetup prints)."""
    hdr = HDR.pack(4, 0, 0, BUF, HDR.size, 0, 0, 0, 0, 0, 0,
                   name.encode(), b"", b"")
    buf = bytearray(hdr + bytes(BUF - HDR.size))
    fcntl.ioctl(fd, DM_TABLE_STATUS, buf)
    fields = HDR.unpack_from(buf)
    data_start, count = fields[4], fields[5]
    if count < 1:
        return ""
    off = data_start + SPEC.size
    end = buf.index(0, off)
    return buf[off:end].decode()
