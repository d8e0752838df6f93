# SPDX-License-Identifier: GPL-2.0-only
"""A minimal QMP client (QEMU Machine Protocol) over a Unix socket."""
import json
import socket
import time


class QMPError(RuntimeError):
    pass


class QMP:
    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX)
        end = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        self.f = self.sock.makefile("rw")
        self.f.readline()               # the greeting
        self.cmd("qmp_capabilities")

    def cmd(self, _name, **args):
        """Run a command; return its "return" value, raise QMPError on error.
        Option names with dashes are passed as **{"node-name": ...}."""
        self.f.write(json.dumps({"execute": _name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise QMPError("%s: QMP connection closed" % _name)
            r = json.loads(line)
            if "event" in r or "QMP" in r:
                # An event, or a greeting: stop 24's bench once got a reply
                # to qmp_capabilities without "return" (not kept).
                continue
            if "error" in r:
                raise QMPError("%s: %s" % (_name, r["error"]["desc"]))
            if "return" not in r:
                raise QMPError("%s: unexpected reply %r" % (_name, r))
            return r["return"]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
