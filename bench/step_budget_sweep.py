#!/usr/bin/python3
"""Prefill chunking against decode stalls: p99 inter-token latency and throughput as the step's
token budget (or its time cap, --step-time-ratio) varies, with long prompts arriving while
other requests decode.

    bench/step_budget_sweep.py --out docs/figures
    gnuplot -e "dir='docs/figures'" bench/plot_step_budget.gnuplot

Each configuration is one run of bench/concurrency_sweep.py (its own pagodad, dummy:llama-110m
by default) at --concurrency (8,16) with --input-len 512 prompts, --output-len 128, and
lengths spread by --range-ratio so that requests finish, and new prompts arrive, while others
decode. The reference "decode-only" run starts exactly `concurrency` requests at once: their
prompts are prefilled first, and its median inter-token latency is a decode-only step at that
batch. Writes step_budget_sweep.csv into --out and prints a Markdown table with each p99 ITL as
a multiple of that step.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# (label, pagodad flags, prompts per level)
CONFIGS = [
    ("decode-only", "--step-time-ratio 0", 1),
    ("2048", "--step-time-ratio 0 --max-num-batched-tokens 2048", None),
    ("512", "--step-time-ratio 0 --max-num-batched-tokens 512", None),
    ("128", "--step-time-ratio 0 --max-num-batched-tokens 128", None),
    ("32", "--step-time-ratio 0 --max-num-batched-tokens 32", None),
    ("ratio 3", "--step-time-ratio 3", None),
    ("ratio 2", "--step-time-ratio 2", None),
    ("ratio 1.75", "--step-time-ratio 1.75", None),
    ("ratio 1.5", "--step-time-ratio 1.5", None),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pagodad", default="build/server/pagodad")
    p.add_argument("--bench", default="build/bench/pagoda-bench")
    p.add_argument("--model", default="dummy:llama-110m")
    p.add_argument("--out", default=".")
    p.add_argument("--concurrency", default="8,16")
    p.add_argument("--input-len", type=int, default=512)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--range-ratio", type=float, default=0.5)
    p.add_argument("--prompts-per-level", type=int, default=3)
    p.add_argument("--configs", default="",
                   help="comma-separated labels to run (default: all)")
    args = p.parse_args()
    wanted = set(args.configs.split(",")) if args.configs else None
    scratch = tempfile.mkdtemp(prefix="pagoda_budget_")
    rows = []
    for label, flags, prompts in CONFIGS:
        if wanted is not None and label not in wanted:
            continue
        name = "budget_" + label.replace(" ", "_") + ".csv"
        cmd = [sys.executable, os.path.join(HERE, "concurrency_sweep.py"),
               "--pagodad", args.pagodad, "--bench", args.bench, "--model", args.model,
               "--out", scratch, "--csv", name, "--concurrency", args.concurrency,
               "--input-len", str(args.input_len), "--output-len", str(args.output_len),
               "--range-ratio", str(0 if prompts else args.range_ratio),
               "--prompts-per-level", str(prompts or args.prompts_per_level),
               "--daemon-args", flags]
        print("#", label, ":", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(scratch, name)) as f:
            for r in csv.DictReader(f):
                rows.append((label, r))
    reference = {r["concurrency"]: float(r["median_itl_ms"]) for label, r in rows
                 if label == "decode-only"}
    print("| step budget | concurrency | output tok/s | mean TTFT ms | median ITL ms | p99 ITL ms "
          "| p99 ITL ÷ decode-only step |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "step_budget_sweep.csv"), "w") as f:
        f.write("config,concurrency,output_throughput,mean_ttft_ms,median_itl_ms,p99_itl_ms,"
                "p99_itl_over_decode_step\n")
        for label, r in rows:
            step = reference.get(r["concurrency"], float("nan"))
            over = float(r["p99_itl_ms"]) / step
            f.write(f"\"{label}\",{r['concurrency']},{r['output_throughput']},"
                    f"{r['mean_ttft_ms']},{r['median_itl_ms']},{r['p99_itl_ms']},{over}\n")
            print(f"| {label} | {r['concurrency']} | {float(r['output_throughput']):.1f} "
                  f"| {float(r['mean_ttft_ms']):.0f} | {float(r['median_itl_ms']):.1f} "
                  f"| {float(r['p99_itl_ms']):.1f} | {over:.2f} |", flush=True)


if __name__ == "__main__":
    main()
