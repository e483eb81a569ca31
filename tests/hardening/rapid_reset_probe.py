#!/usr/bin/python3
"""HTTP/2 rapid-reset probe for pagodad.

Starts PAGODAD on free loopback ports, opens ONE plaintext HTTP/2 connection (h2c with prior
knowledge, as gRPC plaintext uses) with the `h2` library, and for each of N streams sends
HEADERS for POST /pagoda.v1.TextGeneration/Generate, one DATA frame with a valid gRPC-framed
GenerateRequest, then at once RST_STREAM(CANCEL) -- as fast as the connection takes them.
Meanwhile a second thread checks health and runs a small real Generate every 0.5 s through
python3-grpcio on its own channel, and a third samples the daemon's VmRSS every 50 ms.

Passes (exit 0) when the RSS growth over the warmed-up baseline stays under the threshold, all N
resets were sent within --timeout-s, and every health check and Generate that ran during the
burst succeeded within 5 s; exit 1 otherwise. The daemon is always stopped (SIGTERM, then SIGKILL
after 10 s).

Usage:
  /usr/bin/python3 tests/hardening/rapid_reset_probe.py PAGODAD [--resets N] \
      [--max-rss-growth-mib M] [--timeout-s T] [--json-out FILE] [-- EXTRA PAGODAD FLAGS]

Needs Debian's python3-h2 and python3-grpcio (see scripts/packages.d/server.txt).
"""

import collections
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from probe_daemon import (STARTUP_TIMEOUT_S, Daemon, probe_parser, record_stop, sha256_of,
                          stopped_early, write_json)

try:
    import grpc
except ImportError:
    sys.exit("rapid_reset_probe: needs python3-grpcio (apt-get install -y python3-grpcio); "
             "run it with /usr/bin/python3")
try:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions
    import h2.settings
except ImportError:
    sys.exit("rapid_reset_probe: needs python3-h2 (apt-get install -y python3-h2); "
             "run it with /usr/bin/python3")

GENERATE_PATH = "/pagoda.v1.TextGeneration/Generate"
HEALTH_PATH = "/grpc.health.v1.Health/Check"
CHECK_DEADLINE_S = 5.0       # a health check or Generate during the burst must answer within it
CHECK_INTERVAL_S = 0.5
RSS_INTERVAL_S = 0.05
SETTLE_S = 5.0               # RSS is still sampled this long after the last reset


# ---------------------------------------------------------------------------------------------
# Hand-written protobuf (only what the probe needs).

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_varint(num, value):
    return _varint(num << 3) + _varint(value)


def _field_bytes(num, data):
    return _varint((num << 3) | 2) + _varint(len(data)) + data


def generate_request(text, max_tokens):
    """pagoda.v1.GenerateRequest{text (3) = text, stopping (6) = {max_tokens (1)}}."""
    stopping = _field_varint(1, max_tokens)
    return _field_bytes(3, text.encode()) + _field_bytes(6, stopping)


def parse_fields(data):
    """Top-level fields of a protobuf message: list of (number, wire_type, value)."""
    fields, i = [], 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(data, i)
        elif wt == 2:
            ln, i = _read_varint(data, i)
            v, i = data[i:i + ln], i + ln
        elif wt == 1:
            v, i = data[i:i + 8], i + 8
        elif wt == 5:
            v, i = data[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
        fields.append((num, wt, v))
    return fields


def _read_varint(data, i):
    shift = result = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def grpc_frame(message):
    return b"\x00" + len(message).to_bytes(4, "big") + message


# ---------------------------------------------------------------------------------------------
# The daemon.


def read_status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def metrics_snapshot(port):
    """pagoda_* series of /metrics (histogram buckets left out), name{labels} -> value; None if
    the scrape fails (it is diagnostic only)."""
    if not port:
        return None
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode("utf-8", "replace")
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        if line.startswith("pagoda_") and "_bucket{" not in line:
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def metrics_delta(before, after):
    if before is None or after is None:
        return None
    changed = {k: round(v - before.get(k, 0.0), 6) for k, v in sorted(after.items())
               if v != before.get(k, 0.0)}
    return dict(list(changed.items())[:60])



# ---------------------------------------------------------------------------------------------
# gRPC checks (python3-grpcio, generic calls with hand-encoded bytes).

class Checker:
    def __init__(self, port):
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % port,
                                             options=[("grpc.enable_http_proxy", 0)])
        self._health = self.channel.unary_unary(HEALTH_PATH, request_serializer=None,
                                                response_deserializer=None)
        self._generate = self.channel.unary_stream(GENERATE_PATH, request_serializer=None,
                                                   response_deserializer=None)
        self._gen_request = generate_request("hello", 4)

    def health(self, timeout=CHECK_DEADLINE_S):
        """Returns (ok, detail). ok = SERVING."""
        try:
            reply = self._health(b"", timeout=timeout)  # HealthCheckRequest{service: ""}
        except grpc.RpcError as e:
            return False, "%s: %s" % (e.code().name, e.details())
        status = 0
        for num, wt, v in parse_fields(reply):
            if num == 1 and wt == 0:
                status = v
        return status == 1, "status %d" % status

    def generate(self, timeout=CHECK_DEADLINE_S):
        """Returns (ok, detail). ok = the stream ended OK with a Complete message."""
        try:
            complete = False
            messages = 0
            for reply in self._generate(self._gen_request, timeout=timeout):
                messages += 1
                if any(num == 3 for num, _, _ in parse_fields(reply)):
                    complete = True
        except grpc.RpcError as e:
            return False, "%s: %s" % (e.code().name, e.details())
        return complete, "%d messages%s" % (messages, "" if complete else ", no Complete")

    def close(self):
        self.channel.close()


def wait_serving(checker, daemon, timeout_s):
    end = time.monotonic() + timeout_s
    detail = ""
    while time.monotonic() < end:
        if not daemon.alive():
            raise RuntimeError("pagodad exited (%s) before SERVING; log:\n%s"
                               % (daemon.proc.returncode, daemon.log_text()))
        ok, detail = checker.health(timeout=2)
        if ok:
            return
        time.sleep(0.2)
    raise RuntimeError("health not SERVING within %.0f s (%s)" % (timeout_s, detail))


# ---------------------------------------------------------------------------------------------
# Shared state of the run.

class Run:
    def __init__(self):
        self.lock = threading.Lock()
        self.stop = threading.Event()          # everything winds down
        self.attack_stop = threading.Event()   # the attacker closes its connection
        self.burst_start = None                # monotonic
        self.burst_end = None
        self.checks = []                       # dicts
        self.rss = []                          # (t, kib)

    def phase(self, t):
        """'burst' runs from the first reset to SETTLE_S after the last one written: the server
        may still be working through what the socket buffers hold."""
        if self.burst_start is None or t < self.burst_start:
            return "before"
        if self.burst_end is None or t <= self.burst_end + SETTLE_S:
            return "burst"
        return "after"


def rss_sampler(run, pid):
    while not run.stop.is_set():
        kib = read_status_kib(pid, "VmRSS")
        if kib is None:
            return
        with run.lock:
            run.rss.append((time.monotonic(), kib))
        run.stop.wait(RSS_INTERVAL_S)


def monitor(run, checker):
    next_t = time.monotonic()
    while not run.stop.is_set():
        for kind, fn in (("health", checker.health), ("generate", checker.generate)):
            t0 = time.monotonic()
            ok, detail = fn()
            t1 = time.monotonic()
            with run.lock:
                run.checks.append({"t": t0, "kind": kind, "ok": ok, "latency_s": t1 - t0,
                                   "detail": detail, "phase": run.phase(t0)})
        next_t += CHECK_INTERVAL_S
        run.stop.wait(max(0.0, next_t - time.monotonic()))
        next_t = max(next_t, time.monotonic() - CHECK_INTERVAL_S)


# ---------------------------------------------------------------------------------------------
# The attacker: one raw HTTP/2 connection at a time.

class Attacker:
    BATCH = 200                 # streams queued per round
    HIGH_WATER = 256 << 10      # bytes queued for the socket before generating more
    PING = b"pagodarr"

    def __init__(self, run, port, resets, deadline):
        self.run = run
        self.port = port
        self.target = resets
        self.deadline = deadline
        self.resets_sent = 0          # RST_STREAM frames written to the socket
        self.streams_ignored = 0      # sent after a GOAWAY's last_stream_id (never processed)
        self.connections = 0
        self.reconnects = 0
        self.goaways = []             # bounded list of dicts
        self.close_reasons = collections.Counter()
        self.frames_received = collections.Counter()
        self.bytes_received = 0
        self.error = None
        self.written_at = None        # all resets written to the socket
        self.acked_at = None          # the server acknowledged the PING sent after them
        body = grpc_frame(generate_request("hello", 16))
        self.body = body
        self.headers = [
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", GENERATE_PATH.encode()),
            (b":authority", ("127.0.0.1:%d" % port).encode()),
            (b"content-type", b"application/grpc"), (b"te", b"trailers"),
            (b"user-agent", b"pagoda-rapid-reset-probe"),
        ]

    def effective(self):
        """Resets the server processed: written, less those sent after a GOAWAY's last id."""
        return self.resets_sent - self.streams_ignored

    def done(self):
        return self.effective() >= self.target

    def run_attack(self):
        try:
            while not self.run.attack_stop.is_set():
                if time.monotonic() >= self.deadline and self.run.burst_end is None:
                    break
                self._one_connection()
                if self.run.attack_stop.is_set() or self.done():
                    break  # after the burst a closed connection is not reopened
                self.reconnects += 1
                time.sleep(0.01)
        except Exception as e:  # reported, never raised: the main thread must stop the daemon
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            if self.run.burst_start is not None and self.run.burst_end is None:
                self.run.burst_end = time.monotonic()

    def _one_connection(self):
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError as e:
            self.close_reasons["connect failed: %s" % e.strerror] += 1
            time.sleep(0.1)
            return
        self.connections += 1
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                           validate_outbound_headers=False,
                                           normalize_outbound_headers=False,
                                           validate_inbound_headers=False)
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0,
                              h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        conn.increment_flow_control_window(1 << 24)
        out = bytearray(conn.data_to_send())
        queued_abs = len(out)
        flushed_abs = 0
        batches = collections.deque()   # (end offset, resets in it, last stream id)
        goaway = None
        ping_sent = False
        max_sid_flushed = 0
        try:
            while True:
                now = time.monotonic()
                if self.run.attack_stop.is_set():
                    self.close_reasons["probe finished"] += 1
                    return
                if now >= self.deadline and self.run.burst_end is None:
                    self.close_reasons["probe deadline"] += 1
                    return
                # Queue more streams (each: HEADERS, DATA(END_STREAM), RST_STREAM(CANCEL)).
                queued_resets = self.effective() + sum(b[1] for b in batches)
                k = 0
                if (goaway is None and len(out) < self.HIGH_WATER
                        and queued_resets < self.target):
                    last_sid = 0
                    for _ in range(min(self.BATCH, self.target - queued_resets)):
                        if conn.outbound_flow_control_window < len(self.body):
                            break
                        sid = conn.get_next_available_stream_id()
                        conn.send_headers(sid, self.headers)
                        if conn.local_flow_control_window(sid) < len(self.body):
                            conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                        else:
                            conn.send_data(sid, self.body, end_stream=True)
                            conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                        k += 1
                        last_sid = sid
                    data = conn.data_to_send()
                    if data:
                        out += data
                        queued_abs += len(data)
                    if k:
                        if self.run.burst_start is None:
                            self.run.burst_start = time.monotonic()
                        batches.append((queued_abs, k, last_sid))
                # Spin while streams are being queued; otherwise wait for the socket.
                r, w, _ = select.select([sock], [sock] if out else [], [], 0 if k else 0.05)
                if w:
                    try:
                        n = sock.send(out[:1 << 20])
                    except BlockingIOError:
                        n = 0
                    except OSError as e:
                        self.close_reasons["send: %s" % (e.strerror or e)] += 1
                        return
                    del out[:n]
                    flushed_abs += n
                    while batches and batches[0][0] <= flushed_abs:
                        _, k, sid = batches.popleft()
                        self.resets_sent += k
                        max_sid_flushed = max(max_sid_flushed, sid)
                    if self.done() and self.written_at is None:
                        self.written_at = time.monotonic()
                    if self.done() and not ping_sent and goaway is None:
                        # The server answers a PING after every frame before it: its ACK says
                        # that all resets have been read, not merely buffered by the kernel.
                        conn.ping(self.PING)
                        ping_sent = True
                        data = conn.data_to_send()
                        out += data
                        queued_abs += len(data)
                if r:
                    try:
                        data = sock.recv(1 << 20)
                    except BlockingIOError:
                        data = None
                    except OSError as e:
                        self.close_reasons["recv: %s" % (e.strerror or e)] += 1
                        return
                    if data == b"":
                        self.close_reasons["server closed the connection"
                                           + (" after GOAWAY" if goaway else "")] += 1
                        return
                    if data:
                        self.bytes_received += len(data)
                        try:
                            events = conn.receive_data(data)
                        except h2.exceptions.ProtocolError as e:
                            self.close_reasons["h2 protocol error: %s" % type(e).__name__] += 1
                            return
                        for ev in events:
                            self.frames_received[type(ev).__name__] += 1
                            if isinstance(ev, h2.events.DataReceived):
                                try:
                                    conn.acknowledge_received_data(ev.flow_controlled_length,
                                                                   ev.stream_id)
                                except (h2.exceptions.StreamClosedError,
                                        h2.exceptions.ProtocolError):
                                    pass
                            elif (isinstance(ev, h2.events.PingAckReceived)
                                  and ev.ping_data == self.PING):
                                self.acked_at = time.monotonic()
                                if self.run.burst_end is None:
                                    self.run.burst_end = self.acked_at
                            elif isinstance(ev, h2.events.ConnectionTerminated):
                                goaway = ev
                                ignored = 0
                                if ev.last_stream_id is not None:
                                    # Client stream ids are odd: count those above the last one.
                                    top = max(max_sid_flushed, batches[-1][2] if batches else 0)
                                    if top > ev.last_stream_id:
                                        ignored = (top - ev.last_stream_id) // 2
                                self.streams_ignored += ignored
                                if len(self.goaways) < 100:
                                    self.goaways.append({
                                        "t_in_burst_s": round(time.monotonic()
                                                              - (self.run.burst_start or 0), 3),
                                        "error_code": getattr(ev.error_code, "name",
                                                              str(ev.error_code)),
                                        "last_stream_id": ev.last_stream_id,
                                        "additional_data": (ev.additional_data or b"")[:200]
                                        .decode("utf-8", "replace"),
                                        "streams_sent_after_it": ignored})
                        data = conn.data_to_send()
                        if data and goaway is None:
                            out += data
                            queued_abs += len(data)
                # After a GOAWAY: flush what is queued (the server ignores new streams) and go.
                if goaway is not None and (not out or time.monotonic() >= self.deadline):
                    code = getattr(goaway.error_code, "name", goaway.error_code)
                    self.close_reasons["GOAWAY %s" % code] += 1
                    # Whatever is queued but unsent is dropped.
                    return
        finally:
            try:
                sock.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------

def mib(kib):
    return None if kib is None else round(kib / 1024.0, 1)


def main():
    p, argv, extra = probe_parser(__doc__)
    p.add_argument("--resets", type=int, default=60000,
                   help="streams opened and reset at once (default 60000)")
    p.add_argument("--max-rss-growth-mib", type=float, default=150.0,
                   help="pass threshold for peak RSS minus baseline (default 150)")
    p.add_argument("--timeout-s", type=float, default=120.0,
                   help="most seconds the burst may take, until the server has read every "
                   "reset (default 120)")
    p.add_argument("--json-out", help="write the full result as JSON here")
    p.add_argument("--model", default="dummy:tiny",
                   help="--model of pagodad unless the extra flags set one (default dummy:tiny)")
    args = p.parse_args(argv)
    if args.resets < 1 or args.timeout_s <= 0:
        p.error("--resets and --timeout-s must be positive")

    # Exit when asked to, through the finally blocks (the daemon is always stopped).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    result = {"probe": "rapid_reset", "pagodad": os.path.abspath(args.pagodad),
              "resets_target": args.resets, "max_rss_growth_mib": args.max_rss_growth_mib,
              "timeout_s": args.timeout_s, "check_deadline_s": CHECK_DEADLINE_S}
    try:
        result["pagodad_sha256"] = sha256_of(args.pagodad)
    except OSError as e:
        sys.exit("rapid_reset_probe: cannot read %s: %s" % (args.pagodad, e))

    daemon = Daemon(args.pagodad, args.model, extra)
    result["command"] = daemon.cmd
    run = Run()
    checker = None
    threads = []
    attacker = None
    reasons = []
    try:
        daemon.start()
        pid = daemon.proc.pid
        result.update(grpc_port=daemon.grpc_port, metrics_port=daemon.metrics_port, pid=pid)
        checker = Checker(daemon.grpc_port)
        wait_serving(checker, daemon, STARTUP_TIMEOUT_S)

        # Warm-up: a few real calls, then the baseline RSS is the median of 1 s of samples.
        for _ in range(3):
            checker.health()
            checker.generate()
        sampler = threading.Thread(target=rss_sampler, args=(run, pid), daemon=True)
        sampler.start()
        threads.append(sampler)
        mon = threading.Thread(target=monitor, args=(run, checker), daemon=True)
        mon.start()
        threads.append(mon)
        time.sleep(2.0)
        with run.lock:
            recent = [k for t, k in run.rss if t >= time.monotonic() - 1.0]
        baseline = int(statistics.median(recent)) if recent else read_status_kib(pid, "VmRSS")
        hwm_reset = False
        try:  # "5" resets VmHWM (the kernel's peak RSS) to the current RSS
            with open("/proc/%d/clear_refs" % pid, "w") as f:
                f.write("5")
            hwm_reset = True
        except OSError:
            pass

        metrics_before = metrics_snapshot(daemon.metrics_port)
        t_begin = time.monotonic()
        attacker = Attacker(run, daemon.grpc_port, args.resets, t_begin + args.timeout_s)
        att = threading.Thread(target=attacker.run_attack, daemon=True)
        att.start()
        # Wait for the burst to finish: the PING after the last reset acknowledged (or the
        # connection gone, or the deadline).
        while att.is_alive() and run.burst_end is None:
            if not daemon.alive():
                break
            time.sleep(0.05)
        if run.burst_end is None:
            run.burst_end = time.monotonic()
        burst_end_wall = time.monotonic()
        # Settle: the connection stays open and fed; RSS and checks go on.
        settle_end = burst_end_wall + SETTLE_S
        while time.monotonic() < settle_end and daemon.alive():
            time.sleep(0.05)
        with run.lock:
            rss_settled = run.rss[-1][1] if run.rss else None
        # Diagnostic: what the server's own counters saw (the monitor's calls are in it too).
        result["metrics_delta"] = metrics_delta(metrics_before,
                                                metrics_snapshot(daemon.metrics_port))
        run.attack_stop.set()
        att.join(10)
        time.sleep(2.0)
        rss_after_close = read_status_kib(pid, "VmRSS")
        hwm = read_status_kib(pid, "VmHWM")
        run.stop.set()
        for t in threads:
            t.join(CHECK_DEADLINE_S * 2 + 1)

        with run.lock:
            samples = list(run.rss)
            checks = list(run.checks)
        burst_samples = [k for t, k in samples if t >= run.burst_start] if run.burst_start \
            else [k for _, k in samples]
        peak_sampled = max(burst_samples) if burst_samples else None
        peak = peak_sampled
        if hwm_reset and hwm is not None and (peak is None or hwm > peak):
            peak = hwm
        growth_mib = None if peak is None else (peak - baseline) / 1024.0
        burst_s = (run.burst_end - run.burst_start) if run.burst_start else 0.0

        def summarize(phase):
            out = {}
            for kind in ("health", "generate"):
                cs = [c for c in checks if c["phase"] == phase and c["kind"] == kind]
                ok = [c for c in cs if c["ok"] and c["latency_s"] <= CHECK_DEADLINE_S]
                out[kind] = {"runs": len(cs), "ok": len(ok), "failed": len(cs) - len(ok),
                             "worst_latency_s": round(max((c["latency_s"] for c in cs),
                                                          default=0.0), 3),
                             "failures": [{"t_s": round(c["t"] - t_begin, 2),
                                           "latency_s": round(c["latency_s"], 3),
                                           "detail": c["detail"]}
                                          for c in cs if c not in ok][:10]}
            return out

        result.update({
            "baseline_rss_mib": mib(baseline),
            "peak_rss_mib": mib(peak),
            "peak_rss_sampled_mib": mib(peak_sampled),
            "peak_rss_vmhwm_mib": mib(hwm) if hwm_reset else None,
            "rss_growth_mib": None if growth_mib is None else round(growth_mib, 1),
            "rss_5s_after_burst_mib": mib(rss_settled),
            "rss_2s_after_close_mib": mib(rss_after_close),
            "resets_sent": attacker.resets_sent,
            "resets_after_goaway_ignored": attacker.streams_ignored,
            "burst_s": round(burst_s, 2),
            "resets_per_s": round(attacker.resets_sent / burst_s, 1) if burst_s > 0 else None,
            "written_in_s": (round(attacker.written_at - run.burst_start, 2)
                             if attacker.written_at and run.burst_start else None),
            "server_read_all": attacker.acked_at is not None,
            "connections": attacker.connections,
            "reconnects": attacker.reconnects,
            "goaways": attacker.goaways,
            "connection_ends": dict(attacker.close_reasons),
            "events_received": dict(attacker.frames_received),
            "bytes_received": attacker.bytes_received,
            "attacker_error": attacker.error,
            "checks_before": summarize("before"),
            "checks_during_burst": summarize("burst"),
            "checks_after": summarize("after"),
            "rss_timeline_mib": [[round(t - t_begin, 2), mib(k)]
                                 for t, k in samples[::10]][:2000],
            "daemon_alive_after_burst": daemon.alive(),
        })
        if attacker.error:
            reasons.append("attacker error: %s" % attacker.error)
        if attacker.effective() < args.resets:
            reasons.append("only %d of %d resets sent within %.0f s"
                           % (attacker.effective(), args.resets, args.timeout_s))
        elif attacker.acked_at is None and not attacker.goaways:
            reasons.append("the server had not read all resets (no PING ACK) within %.0f s"
                           % args.timeout_s)
        if growth_mib is None or growth_mib >= args.max_rss_growth_mib:
            reasons.append("RSS growth %s MiB >= %.0f MiB"
                           % (result["rss_growth_mib"], args.max_rss_growth_mib))
        during = result["checks_during_burst"]
        for kind in ("health", "generate"):
            if during[kind]["runs"] == 0:
                reasons.append("no %s check ran during the burst" % kind)
            elif during[kind]["failed"]:
                reasons.append("%d of %d %s checks during the burst failed or took > %.0f s"
                               % (during[kind]["failed"], during[kind]["runs"], kind,
                                  CHECK_DEADLINE_S))
        if not result["daemon_alive_after_burst"]:
            reasons.append("pagodad died (exit %s)" % daemon.proc.returncode)
    except Exception as e:  # start-up failures and the like
        reasons.append("probe error: %s: %s" % (type(e).__name__, e))
    finally:
        run.stop.set()
        run.attack_stop.set()
        if checker is not None:
            checker.close()
        record_stop(daemon, result)

    if stopped_early("rapid_reset_probe", result, reasons, args.json_out, "resets_sent"):
        return 1
    d = result.get("checks_during_burst", {})
    h, g = d.get("health", {}), d.get("generate", {})
    print("rapid_reset_probe: %s: %s/%s resets written in %s s, read by the server in %s s (%s/s, "
          "%s reconnects); RSS baseline %s MiB,"
          " peak %s MiB, growth %s MiB (limit %.0f); during burst health %s/%s ok, generate %s/%s"
          " ok, worst latency %s s%s"
          % ("PASS" if result["passed"] else "FAIL", result.get("resets_sent"), args.resets,
             result.get("written_in_s"), result.get("burst_s"), result.get("resets_per_s"),
             result.get("reconnects"),
             result.get("baseline_rss_mib"), result.get("peak_rss_mib"),
             result.get("rss_growth_mib"), args.max_rss_growth_mib, h.get("ok"), h.get("runs"),
             g.get("ok"), g.get("runs"),
             max(h.get("worst_latency_s", 0), g.get("worst_latency_s", 0)) if d else None,
             "" if result["passed"] else "; " + "; ".join(reasons)))
    write_json(args.json_out, result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
