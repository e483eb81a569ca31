#!/usr/bin/python3
"""A real Prometheus server scrapes the real pagodad while pagoda-bench loads it.

Usage: prometheus_load_test.py PAGODAD PAGODA_BENCH

During the load, Prometheus' HTTP API must report a non-zero KV usage ratio and non-zero
running requests; after it, the prompt and generation token counters must equal what the
clients received. Everything listens on 127.0.0.1 (free ports), Prometheus keeps its data in a
scratch directory, and every process is stopped by PID. Exits 77 (skip) without Prometheus.
Standard library only; bounded in time.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from pagoda_daemon import Daemon, free_port


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


def query(api, expr):
    url = f"{api}/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        answer = json.load(r)
    if answer.get("status") != "success":
        fail(f"query {expr}: {answer}")
    return [float(sample["value"][1]) for sample in answer["data"]["result"]]


def wait_for(what, predicate, seconds, processes):
    deadline = time.time() + seconds
    while time.time() < deadline:
        for name, process in processes:
            if process.poll() is not None:
                fail(f"{name} exited with {process.returncode} while waiting for {what}")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    fail("timed out waiting for " + what)


def main():
    pagodad, bench = sys.argv[1], sys.argv[2]
    prometheus = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)
    if prometheus is None:
        print("SKIP: no prometheus binary (Debian package prometheus)")
        sys.exit(77)
    web_port = free_port()
    api = f"http://127.0.0.1:{web_port}/api/v1"
    scratch = tempfile.mkdtemp(prefix="pagoda_prom_")
    daemon = Daemon(pagodad, "--model", "dummy:llama-110m", "--max-num-seqs", "8",
                    "--max-model-len", "256", "--threads", "2")
    grpc_port, metrics_port = daemon.port, daemon.metrics_port
    config = os.path.join(scratch, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n"
                "scrape_configs:\n  - job_name: pagoda\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{metrics_port}']\n")
    processes = []
    try:
        daemon.__enter__()
        processes.append(("pagodad", daemon.process))
        processes.append(("prometheus", subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={scratch}/data",
             f"--web.listen-address=127.0.0.1:{web_port}", "--log.level=warn"],
            stdout=open(os.path.join(scratch, "prometheus.log"), "w"),
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=scratch)))
        wait_for("Prometheus to scrape pagodad",
                 lambda: query(api, 'up{job="pagoda"}') == [1.0], 90, processes)
        wait_for("the model's metrics",
                 lambda: len(query(api, "pagoda_kv_cache_capacity_blocks")) == 1, 90, processes)

        result_path = os.path.join(scratch, "bench.json")
        load = subprocess.Popen(
            [bench, "--address", f"127.0.0.1:{grpc_port}", "--metrics-address",
             f"127.0.0.1:{metrics_port}", "--no-progress", "--num-warmups", "0",
             "--num-prompts", "24", "--max-concurrency", "8", "--input-len", "96",
             "--output-len", "64", "--ignore-eos", "--result-json", result_path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = {"pagoda_kv_cache_usage_ratio": 0.0, "pagoda_num_requests_running": 0.0}
        deadline = time.time() + 180
        while load.poll() is None and time.time() < deadline:
            for name in seen:
                values = query(api, name)
                if values:
                    seen[name] = max(seen[name], values[0])
            time.sleep(0.2)
        output = load.communicate(timeout=60)[0]
        print(output)
        if load.returncode != 0:
            fail(f"pagoda-bench exited {load.returncode}")
        print("during the load Prometheus saw:", seen)
        for name, peak in seen.items():
            if not peak > 0:
                fail(f"{name} stayed 0 in Prometheus during the load")

        r = json.load(open(result_path))
        expected = {"pagoda_prompt_tokens_total": r["total_input_tokens"],
                    "pagoda_generation_tokens_total": r["total_output_tokens"]}
        if r["total_output_tokens"] != 24 * 64:
            fail(f"the clients received {r['total_output_tokens']} tokens, not {24 * 64}")

        def counters_match():
            return all(query(api, name) == [float(value)] for name, value in expected.items())

        wait_for(f"the token counters to reach {expected}", counters_match, 30, processes)
        print("Prometheus counters match the clients:", expected)
    finally:
        for name, process in reversed(processes):
            if name != "pagodad" and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if processes:
            daemon.__exit__(None, None, None)
        shutil.rmtree(scratch, ignore_errors=True)
    if daemon.exit_code != 0:
        fail(f"pagodad exited {daemon.exit_code} on SIGTERM")
    print("PASS")


if __name__ == "__main__":
    main()
