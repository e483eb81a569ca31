"""What the hardening probes share: pagodad on free loopback ports, and the binary's digest.

Imported by the probes beside it (Python puts a script's own folder on sys.path).
"""

import collections
import argparse
import hashlib
import json
import re
import signal
import subprocess
import sys
import threading

STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


class Daemon:
    """Runs pagodad on free loopback ports and keeps its log drained (bounded in memory)."""

    GRPC_RE = re.compile(r"gRPC listening on [^ ]*:(\d+)")
    METRICS_RE = re.compile(r"metrics at http://[^/]*:(\d+)/metrics")
    HTTP_RE = re.compile(r"OpenAI API at http://[^/]*:(\d+)/v1")

    def __init__(self, binary, model, extra):
        self.cmd = [binary, "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                    "--http-port", "0"]
        if not any(a == "--model" or a.startswith("--model=") for a in extra):
            self.cmd += ["--model", model]
        self.cmd += list(extra)
        self.proc = None
        self.grpc_port = None
        self.metrics_port = None
        self.http_port = None
        self.log_head = []
        self.log_tail = collections.deque(maxlen=60)
        self.log_lines = 0
        self._ports = threading.Event()
        self._reader = None

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._ports.wait(STARTUP_TIMEOUT_S) or self.grpc_port is None:
            if self.proc.poll() is not None:
                raise RuntimeError("pagodad exited with %s before logging its ports; log:\n%s"
                                   % (self.proc.returncode, self.log_text()))
            raise RuntimeError("pagodad did not log its ports within %.0f s; log:\n%s"
                               % (STARTUP_TIMEOUT_S, self.log_text()))

    def _read_log(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log_lines += 1
            if len(self.log_head) < 40:
                self.log_head.append(line)
            else:
                self.log_tail.append(line)
            m = self.GRPC_RE.search(line)
            if m:
                self.grpc_port = int(m.group(1))
            m = self.METRICS_RE.search(line)
            if m:
                self.metrics_port = int(m.group(1))
            m = self.HTTP_RE.search(line)
            if m:
                self.http_port = int(m.group(1))
            if self.grpc_port is not None and self.metrics_port is not None:
                self._ports.set()
        self._ports.set()  # EOF: the daemon is gone; let start() report it

    def log_text(self):
        return "\n".join(self.log_head + list(self.log_tail))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_GRACE_S. Returns (exit code, how)."""
        if self.proc is None:
            return None, "not started"
        if self.proc.poll() is not None:
            return self.proc.returncode, "had exited"
        how = "SIGTERM"
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            how = "SIGKILL after %.0f s" % STOP_GRACE_S
            self.proc.kill()
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(2)
        return self.proc.returncode, how


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path, result):
    """Writes a probe's result as indented JSON to `path` (nothing when path is empty)."""
    if not path:
        return
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)
        f.write("\n")


def record_stop(daemon, result):
    """Stops the daemon and records how it ended, with the tail of its log."""
    code, how = daemon.stop()
    result["daemon_exit"] = {"code": code, "how": how}
    result["daemon_log_lines"] = daemon.log_lines
    result["daemon_log_tail"] = list(daemon.log_tail)[-20:]


def stopped_early(prog, result, reasons, json_out, reached_key):
    """Records the verdict in `result`. When the probe never got as far as `reached_key`, prints
    FAIL with the reasons, writes the JSON and returns True; otherwise returns False."""
    result["passed"] = not reasons
    result["reasons"] = reasons
    if reached_key in result:
        return False
    print("%s: FAIL: %s" % (prog, "; ".join(reasons)))
    write_json(json_out, result)
    return True


def probe_parser(doc):
    """The probes' common command line: PAGODAD, the probe's own flags, then `-- FLAGS` passed to
    pagodad. Returns (the parser, the probe's arguments, pagodad's extra flags)."""
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("pagodad", help="the pagodad binary to start")
    return parser, argv, extra
