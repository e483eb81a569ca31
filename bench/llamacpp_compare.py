#!/usr/bin/python3
"""Pagoda against llama.cpp's llama-server on the same model shape, same threads, same client:
issue 25's four scenarios, in alternating runs (docs/benchmarks.md, "Against llama.cpp").

    bench/llamacpp_compare.py --llama-server LLAMA_CPP/build/bin/llama-server \\
        --gguf /tmp/llama-110m-bf16.gguf --preset llama-110m --rounds 2

pagodad serves `dummy:<preset>` (bf16) over gRPC; llama-server serves the GGUF written by
bench/llamacpp_gguf.py (random bf16 weights of the same shape) over its OpenAI API, with one
slot per concurrent request and flash attention on (--flash-attn off to compare without). Both
get --threads. pagoda-bench drives both, closed loop, random token-id prompts, generation forced
to full length (ignore_eos); for llama-server it takes the vocabulary from the idle pagodad
(--grpc-address). Each round runs every scenario on Pagoda, then on llama.cpp, alternating which
engine goes first; the median of the per-round output-throughput ratios is reported, with the
p99 inter-token latencies. Scratch files go to a temporary directory.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from concurrency_sweep import free_port, wait_for_pagodad  # noqa: E402

# name, concurrency, input tokens, output tokens, shared prefix tokens, prompts
SCENARIOS = [
    ("c=1, 128/128", 1, 128, 128, 0, 6),
    ("c=16, 128/128", 16, 128, 128, 0, 48),
    ("c=8, 512/128", 8, 512, 128, 0, 32),
    ("c=8, 384 shared + 128/128", 8, 128, 128, 384, 32),
]


def wait_http(port, path, deadline_s, proc):
    import urllib.request
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited ({proc.returncode}) before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.5)
    sys.exit(f"no answer on port {port}{path}")


def bench(args, scratch, engine, scenario, round_, grpc_port, metrics_port, llama_port):
    name, c, n_in, n_out, prefix, prompts = scenario
    prompts = max(c, round(prompts * args.prompt_fraction))
    out = os.path.join(scratch, f"{engine}_{c}_{n_in}_{prefix}_{round_}.json")
    cmd = [args.bench, "--no-progress", "--ignore-eos", "--input-len", str(n_in),
           "--output-len", str(n_out), "--max-concurrency", str(c), "--num-prompts",
           str(prompts), "--num-warmups", "1", "--seed", str(round_), "--result-json", out]
    if prefix:
        cmd += ["--prefix-len", str(prefix)]
    if engine == "pagoda":
        cmd += ["--address", f"127.0.0.1:{grpc_port}", "--metrics-address",
                f"127.0.0.1:{metrics_port}"]
    else:
        cmd += ["--backend", "openai-completions", "--address", f"127.0.0.1:{llama_port}",
                "--grpc-address", f"127.0.0.1:{grpc_port}", "--no-metrics"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def start_llama(args, port, scratch):
    slots = max(s[1] for s in SCENARIOS)
    per_slot = max(s[2] + s[3] + s[4] for s in SCENARIOS) + 64
    log = open(os.path.join(scratch, "llama-server.log"), "a")
    proc = subprocess.Popen(
        [args.llama_server, "-m", args.gguf, "--host", "127.0.0.1", "--port", str(port),
         "--threads", str(args.threads), "--threads-batch", str(args.threads),
         "--parallel", str(slots), "--ctx-size", str(slots * per_slot),
         "--flash-attn", args.flash_attn, "--no-warmup"],
        stdout=log, stderr=subprocess.STDOUT)
    wait_http(port, "/health", 300, proc)
    return proc


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pagodad", default="build/server/pagodad")
    p.add_argument("--bench", default="build/bench/pagoda-bench")
    p.add_argument("--llama-server", required=True)
    p.add_argument("--gguf", required=True)
    p.add_argument("--preset", default="llama-110m")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--flash-attn", default="on", choices=["on", "off"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--pagodad-args", default="", help="extra pagodad flags")
    p.add_argument("--scenarios", default="", help="indices to run, e.g. 0,2 (default: all)")
    p.add_argument("--prompt-fraction", type=float, default=1.0,
                   help="scale each scenario's prompt count (at least its concurrency), for "
                        "larger models")
    args = p.parse_args()
    chosen = [SCENARIOS[int(i)] for i in args.scenarios.split(",")] if args.scenarios else SCENARIOS
    scratch = tempfile.mkdtemp(prefix="pagoda_vs_llamacpp_")
    grpc_port, metrics_port, llama_port = free_port(), free_port(), free_port()
    longest = max(s[2] + s[3] + s[4] for s in SCENARIOS) + 64
    pagodad = subprocess.Popen(
        [args.pagodad, "--model", f"dummy:{args.preset}", "--threads", str(args.threads),
         "--port", str(grpc_port), "--metrics-port", str(metrics_port), "--http-port", "off",
         "--max-num-seqs", "64", "--max-model-len", str(longest)] + args.pagodad_args.split(),
        stdout=open(os.path.join(scratch, "pagodad.log"), "w"), stderr=subprocess.STDOUT)
    llama = None
    results = {s[0]: {"pagoda": [], "llama.cpp": []} for s in chosen}
    try:
        wait_for_pagodad(args.pagodad, grpc_port, pagodad, scratch)
        for round_ in range(args.rounds):
            order = ["pagoda", "llama.cpp"] if round_ % 2 == 0 else ["llama.cpp", "pagoda"]
            for engine in order:
                if engine == "llama.cpp":
                    llama = start_llama(args, llama_port, scratch)
                for scenario in chosen:
                    r = bench(args, scratch, engine, scenario, round_, grpc_port, metrics_port,
                              llama_port)
                    results[scenario[0]][engine].append(r)
                    print(f"# round {round_} {engine:9} {scenario[0]:26} "
                          f"{r['output_throughput']:7.1f} tok/s  p99 ITL {r['p99_itl_ms']:6.1f} ms"
                          f"  mean TTFT {r['mean_ttft_ms']:7.1f} ms", flush=True)
                if llama is not None:
                    llama.send_signal(signal.SIGTERM)
                    llama.wait(timeout=60)
                    llama = None
    finally:
        if llama is not None:
            llama.kill()
        pagodad.send_signal(signal.SIGTERM)
        pagodad.wait(timeout=60)
    print("| scenario | Pagoda tok/s | llama.cpp tok/s | Pagoda ÷ llama.cpp (median of rounds) "
          "| p99 ITL ms, Pagoda | p99 ITL ms, llama.cpp |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        ratios = sorted(a["output_throughput"] / b["output_throughput"]
                        for a, b in zip(runs["pagoda"], runs["llama.cpp"]))
        half = len(ratios) // 2
        median = ratios[half] if len(ratios) % 2 else (ratios[half - 1] + ratios[half]) / 2
        fmt = lambda rs, key: ", ".join(f"{r[key]:.0f}" for r in rs)  # noqa: E731
        print(f"| {name} | {fmt(runs['pagoda'], 'output_throughput')} "
              f"| {fmt(runs['llama.cpp'], 'output_throughput')} "
              f"| **{median:.2f}x** ({', '.join(f'{x:.2f}' for x in ratios)}) "
              f"| {fmt(runs['pagoda'], 'p99_itl_ms')} | {fmt(runs['llama.cpp'], 'p99_itl_ms')} |")
    print(f"(raw results and logs: {scratch})")


if __name__ == "__main__":
    main()
