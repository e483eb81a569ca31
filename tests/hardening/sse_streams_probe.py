#!/usr/bin/python3
"""Many idle server-sent-event streams on the OpenAI API: threads stay flat, memory bounded.

Starts PAGODAD (default --model dummy:llama-110m, one request at a time: --max-num-seqs 1) on
free loopback ports, starts one long streamed completion that holds the engine, then opens
--streams more streamed completions that wait in the queue, each on its own connection, their
streams open and silent. It holds them --hold-s seconds while it samples the daemon's thread
count and RSS and checks /health, then closes every waiting client at once: their requests must
leave the queue (pagoda_num_requests_waiting back to 0) within --drain-deadline-s.

Passes (exit 0) when every stream got its 200 head, the thread count never grew by more than 2
over the baseline, the RSS growth per stream stayed under --max-kib-per-stream, health answered
within 1 s each time, and the queue emptied in time. Bounded: every wait has a deadline.

Usage:
  /usr/bin/python3 tests/hardening/sse_streams_probe.py PAGODAD [--streams 2000] [--hold-s 5]
      [--max-kib-per-stream 64] [--json-out FILE] [-- EXTRA PAGODAD FLAGS]
"""

import json
import resource
import selectors
import socket
import sys
import time
import urllib.request

from probe_daemon import Daemon, probe_parser, record_stop, write_json

PROG = "sse_streams_probe"


def proc_status(pid):
    """(threads, VmRSS in KiB) of `pid`."""
    threads = rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return threads, rss


def metric(port, series):
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in page.splitlines():
        if line.startswith(series):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def open_stream(port, max_tokens):
    body = json.dumps({"prompt": [1, 2, 3], "max_tokens": max_tokens, "ignore_eos": True,
                       "stream": True})
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
                  f"\r\n\r\n{body}").encode())
    sock.setblocking(False)
    return sock


def wait_for_heads(socks, deadline_s):
    """Reads from every socket until each has sent its response head; the number that did."""
    sel = selectors.DefaultSelector()
    got = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        got[s] = b""
    heads = answered = 0
    deadline = time.time() + deadline_s
    while answered < len(socks) and time.time() < deadline:
        for key, _ in sel.select(timeout=0.5):
            data = key.fileobj.recv(65536)
            got[key.fileobj] += data
            if b"\r\n\r\n" in got[key.fileobj] or not data:
                sel.unregister(key.fileobj)
                answered += 1
                heads += got[key.fileobj].startswith(b"HTTP/1.1 200")
    sel.close()
    return heads


def wait_healthy(port, deadline_s):
    """Waits until GET /health answers 200 (the model is loaded)."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the model did not load in time")


def main():
    parser, args, extra = probe_parser(__doc__)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--hold-s", type=float, default=5.0)
    parser.add_argument("--max-kib-per-stream", type=float, default=64.0)
    parser.add_argument("--drain-deadline-s", type=float, default=5.0)
    parser.add_argument("--json-out", help="write the full result as JSON here")
    args = parser.parse_args(args)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.streams + 100:
        print(f"{PROG}: SKIP: the open-files limit {hard} is below {args.streams} streams")
        sys.exit(77)
    daemon = Daemon(args.pagodad, "dummy:llama-110m",
                    ["--max-num-seqs", "1", "--max-model-len", "1024",
                     "--max-waiting-requests", str(args.streams + 100),
                     "--threads", "1"] + extra)
    result = {"probe": PROG, "streams": args.streams, "hold_s": args.hold_s}
    reasons = []
    waiting = 'pagoda_num_requests_waiting{'
    try:
        daemon.start()
        port = daemon.http_port
        wait_healthy(port, 120)
        blocker = open_stream(port, 1000)  # about 10 s of decoding: longer than the hold
        if wait_for_heads([blocker], 30) != 1:
            raise RuntimeError("the blocking stream got no head")
        time.sleep(0.5)
        base_threads, base_rss = proc_status(daemon.proc.pid)
        start = time.time()
        socks = [open_stream(port, 4) for _ in range(args.streams)]
        heads = wait_for_heads(socks, 60)
        result.update(baseline_threads=base_threads, baseline_rss_kib=base_rss, heads=heads,
                      open_s=round(time.time() - start, 3))
        samples, health = [], []
        hold_end = time.time() + args.hold_s
        while time.time() < hold_end:
            samples.append(proc_status(daemon.proc.pid))
            t0 = time.time()
            code = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status
            health.append((code, round(time.time() - t0, 4)))
            time.sleep(0.5)
        result["waiting_during_hold"] = metric(daemon.metrics_port, waiting)
        max_threads = max(t for t, _ in samples)
        max_rss = max(r for _, r in samples)
        per_stream = (max_rss - base_rss) / max(1, args.streams)
        result.update(max_threads=max_threads, max_rss_kib=max_rss,
                      kib_per_stream=round(per_stream, 2), health=health)
        closed = time.time()
        for s in socks:
            s.close()
        while metric(daemon.metrics_port, waiting) > 0 and time.time() - closed < args.drain_deadline_s:
            time.sleep(0.05)
        result["queue_empty_after_s"] = round(time.time() - closed, 3)
        result["waiting_after_close"] = metric(daemon.metrics_port, waiting)
        blocker.close()
        if heads != args.streams:
            reasons.append(f"{heads} of {args.streams} streams got their head")
        if max_threads > base_threads + 2:
            reasons.append(f"threads grew from {base_threads} to {max_threads}")
        if per_stream >= args.max_kib_per_stream:
            reasons.append(f"{per_stream:.1f} KiB per stream")
        if any(code != 200 or s > 1.0 for code, s in health):
            reasons.append(f"health: {health}")
        if result["waiting_after_close"] != 0:
            reasons.append(f"{result['waiting_after_close']} requests still wait after the close")
    except Exception as e:  # reported, and the daemon is stopped
        reasons.append(f"{type(e).__name__}: {e}")
    finally:
        record_stop(daemon, result)
    result["passed"] = not reasons
    result["reasons"] = reasons
    print(f"{PROG}: {'PASS' if not reasons else 'FAIL'}: {args.streams} streams open "
          f"({result.get('heads')} heads in {result.get('open_s')} s); threads "
          f"{result.get('baseline_threads')} -> max {result.get('max_threads')}; RSS "
          f"{result.get('baseline_rss_kib', 0) / 1024:.1f} -> max "
          f"{result.get('max_rss_kib', 0) / 1024:.1f} MiB ({result.get('kib_per_stream')} KiB per "
          f"stream); queue empty {result.get('queue_empty_after_s')} s after the clients left"
          + ("" if not reasons else "; " + "; ".join(reasons)))
    write_json(args.json_out, result)
    sys.exit(0 if not reasons else 1)


if __name__ == "__main__":
    main()
