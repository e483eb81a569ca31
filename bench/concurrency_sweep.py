#!/usr/bin/python3
"""A concurrency sweep against a real pagodad: throughput and latency as concurrency grows.

    bench/concurrency_sweep.py --pagodad build/server/pagodad --bench build/bench/pagoda-bench \\
        --model dummy:llama-110m --out docs/figures

Starts pagodad on free loopback ports, runs pagoda-bench in closed loop at each concurrency
(--concurrency 1,2,4,...), writes concurrency_sweep.csv into --out (the per-level JSON
results and the daemon's log go to a scratch directory), prints a Markdown table, then stops the daemon with SIGTERM. Plot with
    gnuplot -e "dir='docs/figures'" bench/plot_sweep.gnuplot

With --backends grpc,openai-completions each level runs through both front ends of the same
daemon (--rounds times each, alternating which goes first; the median run is reported), and a
last table gives each backend's output throughput as a ratio of the first's: of the median runs,
and the median of the per-round ratios.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_pagodad(pagodad, port, daemon, log_path, timeout_s=300):
    """Returns once pagodad answers GetModelInfo on `port` (its metrics port opens before the
    model loads); exits if the daemon dies or the timeout passes."""
    cli = os.path.join(os.path.dirname(pagodad), "pagoda-cli")
    deadline = time.time() + timeout_s
    while subprocess.run([cli, "--address", f"127.0.0.1:{port}", "--timeout", "2",
                          "model-info"], capture_output=True).returncode != 0:
        if daemon.poll() is not None or time.time() > deadline:
            sys.exit("pagodad did not start; see " + log_path)
        time.sleep(0.5)


def run_bench(args, backend, c, round_, port, http_port, metrics_port, scratch):
    """One pagoda-bench run; its result JSON."""
    out = os.path.join(scratch, f"sweep_c{c}_{backend}_{round_}.json")
    address = port if backend == "grpc" else http_port
    cmd = [args.bench, "--backend", backend, "--address", f"127.0.0.1:{address}",
           "--grpc-address", f"127.0.0.1:{port}",
           "--metrics-address", f"127.0.0.1:{metrics_port}", "--no-progress",
           "--ignore-eos", "--input-len", str(args.input_len),
           "--range-ratio", str(args.range_ratio),
           "--output-len", str(args.output_len), "--max-concurrency", str(c),
           "--num-prompts", str(max(8, args.prompts_per_level * c)),
           "--num-warmups", "1", "--seed", str(c * 1000 + round_), "--result-json", out]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if run.returncode != 0:
        sys.exit(f"pagoda-bench ({backend}) failed at concurrency {c}:\n{run.stdout}\n{run.stderr}")
    return json.load(open(out))


def print_ratios(rows, runs_by_level, backends):
    """Each backend's output throughput as a ratio of the first's, per level: the ratio of the
    median runs, and the median of the per-round ratios (runs of one round are adjacent in time,
    so slow drifts of a shared machine cancel in them)."""
    print()
    print("| concurrency | " + " | ".join(f"{b} / {backends[0]} (medians) | per-round median [min, max]"
                                         for b in backends[1:]) + " |")
    print("|---:|" + "---:|---:|" * (len(backends) - 1))
    by_level = {}
    for c, backend, r in rows:
        by_level.setdefault(c, {})[backend] = r["output_throughput"]
    for c, tput in by_level.items():
        cells = []
        for b in backends[1:]:
            paired = sorted(x["output_throughput"] / y["output_throughput"]
                            for x, y in zip(runs_by_level[c][b], runs_by_level[c][backends[0]]))
            cells.append(f"{tput[b] / tput[backends[0]]:.3f} | {paired[len(paired) // 2]:.3f} "
                         f"[{paired[0]:.3f}, {paired[-1]:.3f}]")
        print(f"| {c} | " + " | ".join(cells) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pagodad", default="build/server/pagodad")
    p.add_argument("--bench", default="build/bench/pagoda-bench")
    p.add_argument("--model", default="dummy:llama-110m", help='"" for the built-in model')
    p.add_argument("--out", default=".")
    p.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--range-ratio", type=float, default=0,
                   help="lengths uniform in [N(1-F), N(1+F)] (pagoda-bench --range-ratio)")
    p.add_argument("--csv", default="concurrency_sweep.csv", help="file name in --out")
    p.add_argument("--prompts-per-level", type=int, default=2,
                   help="prompts = max(8, this x concurrency)")
    p.add_argument("--daemon-args", default="", help="extra pagodad flags")
    p.add_argument("--backends", default="grpc",
                   help="pagoda-bench backends, comma-separated (grpc, openai-completions, openai-chat)")
    p.add_argument("--rounds", type=int, default=1, help="runs per level and backend")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    levels = [int(c) for c in args.concurrency.split(",")]

    backends = args.backends.split(",")
    port, metrics_port, http_port = free_port(), free_port(), free_port()
    scratch = tempfile.mkdtemp(prefix="pagoda_sweep_")  # the daemon's log and raw JSON results
    log_path = os.path.join(scratch, "pagodad.log")
    daemon = subprocess.Popen(
        [args.pagodad] + (["--model", args.model] if args.model else [])
        + ["--host", "127.0.0.1", "--port", str(port),
         "--metrics-port", str(metrics_port), "--http-port", str(http_port),
         "--max-num-seqs", str(max(levels)),
         "--max-model-len",
         str(int((args.input_len + args.output_len) * (1 + args.range_ratio)) + 16)]
        + args.daemon_args.split(),
        stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    rows = []
    runs_by_level = {}
    try:
        wait_for_pagodad(args.pagodad, port, daemon, log_path)
        print(f"| concurrency | backend | req/s | output tok/s | mean TTFT ms | p99 TTFT ms "
              f"| mean TPOT ms | p99 ITL ms | peak KV usage |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for c in levels:
            runs = runs_by_level[c] = {b: [] for b in backends}
            for round_ in range(args.rounds):
                order = backends if round_ % 2 == 0 else list(reversed(backends))
                for backend in order:
                    runs[backend].append(run_bench(args, backend, c, round_, port, http_port,
                                                   metrics_port, scratch))
            for backend in backends:
                r = sorted(runs[backend], key=lambda x: x["output_throughput"])[args.rounds // 2]
                r["all_output_throughputs"] = [x["output_throughput"] for x in runs[backend]]
                rows.append((c, backend, r))
                print(f"| {c} | {backend} | {r['request_throughput']:.2f} "
                      f"| {r['output_throughput']:.1f} | {r['mean_ttft_ms']:.0f} "
                      f"| {r['p99_ttft_ms']:.0f} | {r['mean_tpot_ms']:.1f} "
                      f"| {r['p99_itl_ms']:.1f} | {r.get('peak_kv_cache_usage_ratio', 0):.3f} |",
                      flush=True)
        if len(backends) > 1:
            print_ratios(rows, runs_by_level, backends)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
    with open(os.path.join(args.out, args.csv), "w") as f:
        f.write("concurrency,backend,request_throughput,output_throughput,mean_ttft_ms,"
                "p99_ttft_ms,mean_tpot_ms,p99_tpot_ms,mean_itl_ms,p99_itl_ms,median_itl_ms\n")
        for c, backend, r in rows:
            f.write(f"{c},{backend},{r['request_throughput']},{r['output_throughput']},{r['mean_ttft_ms']},"
                    f"{r['p99_ttft_ms']},{r['mean_tpot_ms']},{r['p99_tpot_ms']},"
                    f"{r['mean_itl_ms']},{r['p99_itl_ms']},{r['median_itl_ms']}\n")


if __name__ == "__main__":
    main()
