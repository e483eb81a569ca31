#!/usr/bin/python3
"""Idle-socket starvation probe for pagodad's /metrics endpoint.

Starts PAGODAD on free loopback ports, checks that /metrics answers, then holds N TCP
connections to the metrics port open that send nothing (--stall silent, the default) or half a
request line (--stall partial). A connection the server closes is opened again at once, so N stay
held for the whole test, as an attacker would keep them. With them held, it times one real
`GET /metrics` scrape and then --scrapes more in a row (each with a 10 s timeout).

Passes (exit 0) when every scrape returned 200 with a body containing "pagoda_" within
--deadline-s; exit 1 otherwise. Closes every socket and stops the daemon (SIGTERM, then SIGKILL
after 10 s) in all cases.

Usage:
  /usr/bin/python3 tests/hardening/metrics_idle_sockets_probe.py PAGODAD [--idle N] \
      [--deadline-s D] [--stall silent|partial] [--json-out FILE] [-- EXTRA PAGODAD FLAGS]

Needs only the Python standard library.
"""

import collections
import errno
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from probe_daemon import (STARTUP_TIMEOUT_S, Daemon, probe_parser, record_stop, sha256_of,
                          stopped_early, write_json)

SCRAPE_TIMEOUT_S = 10.0
SETTLE_S = 1.0            # after opening the idle sockets, before the first scrape
HOLD_MAX_S = 300.0        # the idle sockets are released after this long whatever happens
PARTIAL_REQUEST = b"GET /metr"




def scrape(port, timeout_s=SCRAPE_TIMEOUT_S):
    """One GET /metrics on a fresh connection. Returns a dict (latency covers connect to the
    whole body)."""
    t0 = time.monotonic()
    end = t0 + timeout_s
    res = {"status": None, "bytes": 0, "has_pagoda_": False, "error": None}
    sock = None
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        res["connect_s"] = round(time.monotonic() - t0, 4)
        sock.settimeout(max(0.01, end - time.monotonic()))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/plain\r\n"
                     b"Connection: close\r\n\r\n" % port)
        buf = bytearray()
        length = None
        head_end = -1
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            sock.settimeout(remaining)
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
            if head_end < 0:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    m = re.search(rb"(?im)^content-length:\s*(\d+)", bytes(buf[:head_end]))
                    if m:
                        length = int(m.group(1))
            if head_end >= 0 and length is not None and len(buf) >= head_end + 4 + length:
                break
        status_line = bytes(buf[:buf.find(b"\r\n")]) if b"\r\n" in buf else bytes(buf[:80])
        parts = status_line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            res["status"] = int(parts[1])
        body = bytes(buf[head_end + 4:]) if head_end >= 0 else b""
        res["bytes"] = len(body)
        res["has_pagoda_"] = b"pagoda_" in body
        if res["status"] is None:
            res["error"] = "no HTTP status line (got %d bytes)" % len(buf)
    except socket.timeout:
        res["error"] = "%s timeout after %.1f s" % ("read" if "connect_s" in res else "connect",
                                                    timeout_s)
    except OSError as e:
        res["error"] = "%s: %s" % (type(e).__name__, e.strerror or e)
    finally:
        if sock is not None:
            sock.close()
    res["latency_s"] = round(time.monotonic() - t0, 4)
    return res


class IdleHolder:
    """Keeps N idle connections to the port open: opens them without blocking, sends nothing (or
    a partial request line once connected), and reopens any the server closes."""

    def __init__(self, port, n, stall):
        self.port = port
        self.n = n
        self.stall = stall
        self.socks = {}             # fd -> [socket, connected, opened_at]
        self.poller = select.poll()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.opened = 0
        self.reopened = 0
        self.closed_by_server = 0
        self.open_errors = collections.Counter()
        self.lifetimes = collections.deque(maxlen=5000)   # seconds a socket lived before close
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open_one(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex(("127.0.0.1", self.port))
        if rc not in (0, errno.EINPROGRESS):
            self.open_errors[errno.errorcode.get(rc, str(rc))] += 1
            s.close()
            return False
        fd = s.fileno()
        self.socks[fd] = [s, rc == 0, time.monotonic()]
        if rc == 0:
            self._on_connected(fd)
            self.poller.register(fd, select.POLLIN)
        else:
            self.poller.register(fd, select.POLLOUT | select.POLLIN)
        self.opened += 1
        return True

    def _on_connected(self, fd):
        entry = self.socks[fd]
        entry[1] = True
        if self.stall == "partial":
            try:
                entry[0].send(PARTIAL_REQUEST)
            except OSError:
                pass

    def _close(self, fd):
        entry = self.socks.pop(fd, None)
        if entry is None:
            return
        try:
            self.poller.unregister(fd)
        except (KeyError, ValueError):
            pass
        entry[0].close()
        self.lifetimes.append(time.monotonic() - entry[2])

    def open_all(self):
        with self.lock:
            for _ in range(self.n):
                self._open_one()
        self.thread.start()

    def counts(self):
        with self.lock:
            connected = sum(1 for e in self.socks.values() if e[1])
            return {"held": len(self.socks), "connected": connected,
                    "connect_pending": len(self.socks) - connected,
                    "opened_total": self.opened, "reopened": self.reopened,
                    "closed_by_server": self.closed_by_server,
                    "open_errors": dict(self.open_errors)}

    def _run(self):
        stop_at = time.monotonic() + HOLD_MAX_S
        while not self.stop.is_set() and time.monotonic() < stop_at:
            events = self.poller.poll(100)
            with self.lock:
                for fd, ev in events:
                    entry = self.socks.get(fd)
                    if entry is None:
                        continue
                    s, connected = entry[0], entry[1]
                    if not connected and ev & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            self.open_errors[errno.errorcode.get(err, str(err))] += 1
                            self._close(fd)
                            self._replace()
                            continue
                        self._on_connected(fd)
                        self.poller.modify(fd, select.POLLIN)
                        continue
                    if ev & (select.POLLIN | select.POLLERR | select.POLLHUP):
                        try:
                            data = s.recv(4096)
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""
                        if not data:        # closed (or reset) by the server: take it again
                            self.closed_by_server += 1
                            self._close(fd)
                            self._replace()
                        # Anything the server sent (a 400 or 408) is read and dropped; the
                        # socket stays open until the server closes it.

    def _replace(self):
        if not self.stop.is_set() and self._open_one():
            self.reopened += 1

    def close_all(self):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(5)
        with self.lock:
            for fd in list(self.socks):
                self._close(fd)


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main():
    p, argv, extra = probe_parser(__doc__)
    p.add_argument("--idle", type=int, default=200, help="idle connections held (default 200)")
    p.add_argument("--deadline-s", type=float, default=1.0,
                   help="most seconds one scrape may take (default 1.0)")
    p.add_argument("--scrapes", type=int, default=5,
                   help="scrapes in a row after the first (default 5)")
    p.add_argument("--stall", choices=("silent", "partial"), default="silent",
                   help="idle sockets send nothing (silent) or %r and stall (partial)"
                   % PARTIAL_REQUEST.decode())
    p.add_argument("--json-out", help="write the full result as JSON here")
    p.add_argument("--model", default="dummy:tiny",
                   help="--model of pagodad unless the extra flags set one (default dummy:tiny)")
    args = p.parse_args(argv)
    if args.idle < 0 or args.idle > 20000 or args.scrapes < 0 or args.scrapes > 100:
        p.error("--idle must be in [0, 20000] and --scrapes in [0, 100]")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    result = {"probe": "metrics_idle_sockets", "pagodad": os.path.abspath(args.pagodad),
              "idle": args.idle, "stall": args.stall, "deadline_s": args.deadline_s,
              "scrape_timeout_s": SCRAPE_TIMEOUT_S}
    try:
        result["pagodad_sha256"] = sha256_of(args.pagodad)
    except OSError as e:
        sys.exit("metrics_idle_sockets_probe: cannot read %s: %s" % (args.pagodad, e))
    result["fd_limit"] = raise_fd_limit(args.idle + 256)

    daemon = Daemon(args.pagodad, args.model, extra)
    result["command"] = daemon.cmd
    holder = None
    reasons = []
    scrapes = []
    try:
        daemon.start()
        port = daemon.metrics_port
        result.update(metrics_port=port, grpc_port=daemon.grpc_port, pid=daemon.proc.pid)

        # Control: /metrics answers with nothing else connected.
        end = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            control = scrape(port)
            if control["status"] == 200 and control["has_pagoda_"]:
                break
            if time.monotonic() >= end or not daemon.alive():
                raise RuntimeError("/metrics never answered 200 with pagoda_ metrics: %s"
                                   % control)
            time.sleep(0.2)
        result["control_scrape"] = control

        holder = IdleHolder(port, args.idle, args.stall)
        holder.open_all()
        time.sleep(SETTLE_S)
        result["idle_at_first_scrape"] = holder.counts()

        t_begin = time.monotonic()
        for i in range(1 + args.scrapes):
            r = scrape(port)
            r["index"] = i
            r["t_s"] = round(time.monotonic() - t_begin, 3)
            r["ok"] = (r["status"] == 200 and r["has_pagoda_"]
                       and r["latency_s"] <= args.deadline_s)
            scrapes.append(r)
        result["idle_after_scrapes"] = holder.counts()
        result["idle_socket_lifetimes_s"] = (
            {"count": len(holder.lifetimes),
             "min": round(min(holder.lifetimes), 3), "max": round(max(holder.lifetimes), 3)}
            if holder.lifetimes else {"count": 0})
        result["scrapes"] = scrapes
        bad = [s for s in scrapes if not s["ok"]]
        if bad:
            reasons.append("%d of %d scrapes failed or took > %.2f s (%s)"
                           % (len(bad), len(scrapes), args.deadline_s,
                              ", ".join(s["error"] or ("status %s" % s["status"])
                                        if (s["error"] or s["status"] != 200)
                                        else "%.2f s" % s["latency_s"] for s in bad)))
        if not daemon.alive():
            reasons.append("pagodad died (exit %s)" % daemon.proc.returncode)
    except Exception as e:
        reasons.append("probe error: %s: %s" % (type(e).__name__, e))
    finally:
        if holder is not None:
            holder.close_all()
        record_stop(daemon, result)

    if stopped_early("metrics_idle_sockets_probe", result, reasons, args.json_out, "control_scrape"):
        return 1
    lat = ", ".join("%.3f%s" % (s["latency_s"], "" if s["ok"] else "!") for s in scrapes)
    held = result.get("idle_at_first_scrape", {})
    print("metrics_idle_sockets_probe: %s: %d idle sockets (%s; %s connected, %s pending at the "
          "first scrape), control scrape %s s; scrape latencies [s] (! = failed): %s%s"
          % ("PASS" if result["passed"] else "FAIL", args.idle, args.stall,
             held.get("connected"), held.get("connect_pending"),
             result.get("control_scrape", {}).get("latency_s"), lat or "none",
             "" if result["passed"] else "; " + "; ".join(reasons)))
    write_json(args.json_out, result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
