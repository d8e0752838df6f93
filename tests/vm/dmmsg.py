#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Send a device-mapper target message with the DM_TARGET_MSG ioctl.

One dmsetup call costs ~150 ms under TCG; this costs one ioctl.

  dmmsg.py DEV MESSAGE...                  send once, exit 1 on failure
  dmmsg.py --every SECS --for SECS DEV MESSAGE...
                                           send periodically; print
                                           "sent N, failed N, max_ms X"
"""
import fcntl
import os
import struct
import sys
import time

DM_NAME_LEN, DM_UUID_LEN = 128, 129
HDR = struct.Struct("=3I I I I i I I I Q %ds %ds 7s" % (DM_NAME_LEN, DM_UUID_LEN))
DM_TARGET_MSG = (3 << 30) | (HDR.size << 16) | (0xFD << 8) | 14


def message(fd, name, text):
    payload = struct.pack("=Q", 0) + text.encode() + b"\0"
    size = HDR.size + len(payload)
    hdr = HDR.pack(4, 0, 0, size, HDR.size, 0, 0, 0, 0, 0, 0,
                   name.encode(), b"", b"")
    buf = bytearray(hdr + payload)
    fcntl.ioctl(fd, DM_TARGET_MSG, buf)


def main(argv):
    every = duration = None
    while argv and argv[0].startswith("--"):
        opt, val = argv[0], float(argv[1])
        argv = argv[2:]
        if opt == "--every":
            every = val
        elif opt == "--for":
            duration = val
    name, text = os.path.basename(argv[0]), " ".join(argv[1:])
    fd = os.open("/dev/mapper/control", os.O_RDWR)
    if every is None:
        message(fd, name, text)
        return 0
    sent = failed = 0
    worst = 0.0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            message(fd, name, text)
            sent += 1
        except OSError as e:
            failed += 1
            print("message failed: %s" % e, file=sys.stderr)
        worst = max(worst, time.monotonic() - t0)
        time.sleep(every)
    print("sent %d, failed %d, max_ms %.1f" % (sent, failed, worst * 1000))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
