"""Test support shared by the Python end-to-end tests: free loopback ports and a pagodad process
started on them and stopped by PID. Standard library only."""

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """pagodad on 127.0.0.1 with free gRPC, metrics and HTTP API ports; a context manager that waits until
    the model answers GetModelInfo (through pagoda-cli, beside pagodad) and stops the daemon with
    SIGTERM on exit, recording its exit code in `exit_code`."""

    def __init__(self, pagodad, *flags, ready_timeout=120):
        self.pagodad = pagodad
        self.cli = os.path.join(os.path.dirname(pagodad), "pagoda-cli")
        self.port = free_port()
        self.metrics_port = free_port()
        self.http_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.flags = list(flags)
        self.ready_timeout = ready_timeout
        self.exit_code = None
        self.log_path = os.path.join(tempfile.mkdtemp(prefix="pagodad_"), "pagodad.log")

    def __enter__(self):
        self.process = subprocess.Popen(
            [self.pagodad, "--host", "127.0.0.1", "--port", str(self.port), "--metrics-port",
             str(self.metrics_port), "--http-port", str(self.http_port)] + self.flags,
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + self.ready_timeout
        while self.cli_run("model-info").returncode != 0:
            if self.process.poll() is not None or time.time() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError("pagodad did not start; its log:\n" + self.log())
            time.sleep(0.2)
        return self

    def cli_run(self, *args, timeout=60):
        """Runs pagoda-cli against this daemon; returns the CompletedProcess (text)."""
        return subprocess.run([self.cli, "--address", self.address, "--timeout", "30"] +
                              list(args), capture_output=True, text=True, timeout=timeout)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def metric(self, name, *labels, timeout=30):
        """The sum of the /metrics series of `name` whose label text contains every one of
        `labels` (e.g. 'medium="disk"')."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=timeout) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.split("{", 1)[0].split(" ", 1)[0] == name and all(l in line for l in labels):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.exit_code = self.process.returncode
        return False
