#!/usr/bin/python3
"""Steady-state throughput of KV-cache dtypes when memory is the limit (issue 22).

    bench/kv_dtype_steady.py --pagodad build/server/pagodad --bench build/bench/pagoda-bench \\
        --dtypes bf16,int8 --rounds 2

For each round and dtype (the order alternates between rounds), starts pagodad on free
loopback ports with the same --kv-cache-memory, keeps --concurrency requests in flight with
pagoda-bench (far more prompts than the window needs, so the queue never empties), reads the
daemon's Prometheus counters after --warmup seconds and again after --window seconds more, then
stops both. A closed run ends in a tail where the last requests decode alone; the window leaves
it out. Prints, per run, the window's steps, time per step, decodes and prefill tokens per step
(recomputation after preemptions included: prefill tokens beyond the new prompts') and output
tokens/s, then each dtype's output rate over the first dtype's in the same round.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from concurrency_sweep import free_port, wait_for_pagodad

COUNTERS = ("generation_tokens_total", "prefix_cache_queried_tokens_total",
            "prefix_cache_hit_tokens_total", "iteration_tokens_sum",
            "engine_step_duration_seconds_count", "engine_step_duration_seconds_sum",
            "num_preemptions_total")


def read_counters(metrics_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read()
    values = {}
    for line in text.decode().splitlines():
        m = re.match(r"pagoda_(\w+)(?:\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m and m.group(1) in COUNTERS:
            values[m.group(1)] = float(m.group(2))
    return values


def run_one(args, dtype, log_dir):
    port, metrics_port = free_port(), free_port()
    log_path = os.path.join(log_dir, f"pagodad_{dtype}.log")
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [args.pagodad, "--model", args.model, "--threads", str(args.threads), "--port",
             str(port), "--metrics-port", str(metrics_port), "--http-port", "off",
             "--max-num-seqs", "64", "--max-model-len", "1024", "--kv-cache-dtype", dtype,
             "--kv-cache-memory", args.kv_cache_memory] + args.pagodad_args.split(),
            stdout=log, stderr=subprocess.STDOUT)
    bench = None
    try:
        wait_for_pagodad(args.pagodad, port, daemon, log_path)
        bench = subprocess.Popen(
            [args.bench, "--address", f"127.0.0.1:{port}", "--no-progress", "--ignore-eos",
             "--num-prompts", "100000", "--max-concurrency", str(args.concurrency),
             "--input-len", str(args.input_len), "--output-len", str(args.output_len),
             "--max-duration", str(args.warmup + args.window + 30)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.warmup)
        before, t0 = read_counters(metrics_port), time.time()
        time.sleep(args.window)
        after, t1 = read_counters(metrics_port), time.time()
    finally:
        for process in (bench, daemon):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM if process is daemon else signal.SIGKILL)
                process.wait(timeout=60)
    d = {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS}
    steps = max(1.0, d["engine_step_duration_seconds_count"])
    prefill = d["iteration_tokens_sum"] - d["generation_tokens_total"]
    return {"steps": steps, "ms_per_step": 1000 * d["engine_step_duration_seconds_sum"] / steps,
            "decodes_per_step": d["generation_tokens_total"] / steps,
            "prefill_per_step": prefill / steps,
            # New prompts' tokens are counted at their first admission (queried), less what
            # the prefix cache served; the rest of the prefill is recomputation.
            "recomputed": prefill - (d["prefix_cache_queried_tokens_total"] -
                                     d["prefix_cache_hit_tokens_total"]),
            "prefill": prefill,
            "preemptions": d["num_preemptions_total"],
            "output_tok_s": d["generation_tokens_total"] / (t1 - t0)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pagodad", default="build/server/pagodad")
    p.add_argument("--bench", default="build/bench/pagoda-bench")
    p.add_argument("--model", default="dummy:llama-110m")
    p.add_argument("--dtypes", default="bf16,int8")
    p.add_argument("--kv-cache-memory", default="302MB")  # bf16: 8 requests of 1,024 tokens
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--input-len", type=int, default=480)
    p.add_argument("--output-len", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=float, default=30)
    p.add_argument("--window", type=float, default=60)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--pagodad-args", default="", help="more pagodad flags, space-separated")
    p.add_argument("--log-dir", default="/tmp")
    args = p.parse_args()
    dtypes = args.dtypes.split(",")
    print("| round | dtype | steps | ms a step | decodes a step | prefill tokens a step "
          "| recomputed of prefill | preemptions | output tok/s | ÷ first |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for round_ in range(args.rounds):
        order = dtypes if round_ % 2 == 0 else list(reversed(dtypes))
        results = {dtype: run_one(args, dtype, args.log_dir) for dtype in order}
        for dtype in dtypes:
            r = results[dtype]
            print(f"| {round_ + 1} | {dtype} | {r['steps']:.0f} | {r['ms_per_step']:.1f} "
                  f"| {r['decodes_per_step']:.1f} | {r['prefill_per_step']:.1f} "
                  f"| {r['recomputed']:.0f} of {r['prefill']:.0f} | {r['preemptions']:.0f} "
                  f"| {r['output_tok_s']:.1f} "
                  f"| {r['output_tok_s'] / results[dtypes[0]]['output_tok_s']:.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
