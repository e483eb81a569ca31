#!/usr/bin/python3
"""End to end: pagoda-bench drives a real pagodad on loopback and reports what it saw.

Usage: pagoda_bench_test.py PAGODAD PAGODA_BENCH WORK_DIR

Starts pagodad (dummy:tiny model) on free 127.0.0.1 ports, runs pagoda-bench in closed loop
and in open loop with a time bound, checks the JSON results against what was asked and
against the server's own counters, then stops the daemon with SIGTERM (it must exit 0).
Standard library only; bounded in time.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

from pagoda_daemon import Daemon


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        return r.read().decode()


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


def main():
    pagodad, bench, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    with Daemon(pagodad, "--model", "dummy:tiny", "--threads", "1", "--max-num-seqs", "8") as d:
        port, metrics_port = d.port, d.metrics_port
        common = [bench, "--address", f"127.0.0.1:{port}", "--metrics-address",
                  f"127.0.0.1:{metrics_port}", "--no-progress", "--ignore-eos",
                  "--input-len", "24", "--output-len", "8"]

        # Closed loop: everything completes with exactly the asked lengths.
        before = scrape(metrics_port)
        out = os.path.join(work, "closed.json")
        # No warm-up: the server's counters must see exactly this run.
        run = subprocess.run(common + ["--num-prompts", "24", "--max-concurrency", "4",
                                       "--num-warmups", "0",
                                       "--prefix-len", "32", "--result-json", out],
                             capture_output=True, text=True, timeout=120)
        print(run.stdout)
        if run.returncode != 0:
            fail(f"pagoda-bench exited {run.returncode}: {run.stderr}")
        after = scrape(metrics_port)
        r = json.load(open(out))
        for key in ["duration", "completed", "total_input_tokens", "total_output_tokens",
                    "request_throughput", "output_throughput", "total_token_throughput",
                    "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
                    "mean_itl_ms", "p99_itl_ms", "mean_e2el_ms", "ttfts", "itls",
                    "input_lens", "output_lens", "max_concurrency"]:
            if key not in r:
                fail("missing key " + key)
        if r["completed"] != 24 or r["failed"] != 0:
            fail(f"completed {r['completed']}, failed {r['failed']}")
        if r["total_output_tokens"] != 24 * 8:
            fail(f"output tokens {r['total_output_tokens']} != {24 * 8}")
        if any(n < 32 + 24 for n in r["input_lens"]):
            fail("a prompt is shorter than prefix + input")
        # The engine reports a step's metrics just after its outputs went out: wait for it.
        deadline = time.time() + 10
        while True:
            generated = (metric_sum(after, "pagoda_generation_tokens_total")
                         - metric_sum(before, "pagoda_generation_tokens_total"))
            if generated >= r["total_output_tokens"] or time.time() > deadline:
                break
            time.sleep(0.05)
            after = scrape(metrics_port)
        if generated != r["total_output_tokens"]:
            fail(f"server counted {generated} generated tokens, client {r['total_output_tokens']}")
        if not r["prefix_cache_hit_rate"] > 0:
            fail("a shared 32-token prefix gave no prefix-cache hits")
        if not r["mean_ttft_ms"] > 0 or not r["mean_itl_ms"] > 0:
            fail("latencies not measured")

        # Open loop with a time bound: it stops sending and still exits cleanly.
        out = os.path.join(work, "open.json")
        start = time.time()
        run = subprocess.run(common + ["--num-prompts", "100000", "--request-rate", "20",
                                       "--num-warmups", "1",
                                       "--burstiness", "0.5", "--max-duration", "1.5",
                                       "--result-json", out],
                             capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            fail(f"open loop exited {run.returncode}: {run.stderr}")
        r = json.load(open(out))
        if not 5 <= r["completed"] <= 200:
            fail(f"open loop completed {r['completed']} requests in 1.5 s at 20/s")
        if time.time() - start > 60:
            fail("the time bound did not hold")
        print("open loop:", r["completed"], "requests,", round(r["duration"], 2), "s")
    if d.exit_code != 0:
        fail(f"pagodad exited {d.exit_code} on SIGTERM")
    print("PASS")


if __name__ == "__main__":
    main()
