#!/usr/bin/python3
"""Multi-turn chat with and without the tiered KV cache (docs/benchmarks.md, "KV offload").

    bench/kv_offload_chat.py --pagodad build/server/pagodad [--model dummy:llama-110m]
        [--conversations 16] [--turns 6] [--concurrency 4] [--pool-conversations 4]
        [--json out.json]

--conversations chats sharing one system prompt, --turns turns each; every turn resends the
whole history plus a new user message as one streamed greedy /v1/completions prompt
(--max-tokens per answer). --concurrency conversations are in flight, the others wait in a FIFO,
so a conversation's next turn comes after every other conversation's: with a pool that holds
only --pool-conversations final histories, its blocks have been evicted by then. Runs twice on
fresh daemons, in this order: without tiers (the evicted history is recomputed) and with a disk
tier in a fresh directory (--kv-offload-dir; the cost model decides, --kv-offload-reload
auto). Then, with the tiered run's directory, the first turn after a restart: the last
conversation's final prompt on a fresh daemon with that warm disk tier, the same prompt again
(now a warm device cache), and on a fresh daemon with an empty directory (cold).

Reports per turn TTFT p50/p99 (client side, to the first streamed token), output tokens/s, the
prefix-cache hit rate, and the tiers' loads and the cost model's decisions. Prints a Markdown
table; --json FILE keeps everything, --csv FILE the per-turn table that
bench/plot_kv_offload.gnuplot plots.
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
from fleet_sim import SYSTEM, make_messages, percentile, stream_completion  # noqa: E402
from pagoda_daemon import Daemon  # noqa: E402


def bytes_per_token(args):
    with Daemon(args.pagodad, "--model", args.model, "--kv-cache-memory", "64MiB",
                "--threads", str(args.threads)) as probe:
        found = re.search(r"(\d+) bytes per token", probe.log())
    return int(found.group(1))


def conversations(args):
    rng = random.Random(args.seed)
    return [make_messages(rng, args.turns) for _ in range(args.conversations)]


def final_history_tokens(messages, max_tokens):
    # The byte tokenizer of the dummy models: one token per byte (answers estimated at
    # max_tokens bytes each), plus BOS.
    return len((SYSTEM + "".join(f"Seeker: {m}\nTeacher:" + "x" * max_tokens + "\n"
                                 for m in messages)).encode()) + 1


def run_chat(daemon, plan, args):
    """Plays every conversation; returns per-turn TTFTs, output tokens and the wall time."""
    queue = list(range(len(plan)))
    histories = [SYSTEM] * len(plan)
    turns = [0] * len(plan)
    ttft = [[] for _ in range(args.turns)]
    out_tokens = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                cid = queue.pop(0)
            t = turns[cid]
            prompt = histories[cid] + f"Seeker: {plan[cid][t]}\nTeacher:"
            seconds, text, produced, _, _ = stream_completion(daemon, prompt, args.max_tokens)
            with lock:
                ttft[t].append(seconds)
                out_tokens[0] += produced
                histories[cid] = prompt + text + "\n"
                turns[cid] += 1
                if turns[cid] < args.turns:
                    queue.append(cid)

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return ttft, out_tokens[0], time.monotonic() - start, histories


def daemon_flags(args, pool_bytes, offload_dir=None):
    flags = ["--model", args.model, "--kv-cache-memory", str(pool_bytes), "--threads",
             str(args.threads), "--max-num-seqs", str(args.concurrency)]
    if offload_dir is not None:
        flags += ["--kv-offload-dir", offload_dir, "--kv-offload-bytes", "8GiB",
                  "--kv-offload-reload", args.reload]
    return flags


def summarize(name, daemon, ttft, tokens, wall):
    queried = daemon.metric("pagoda_prefix_cache_queried_tokens_total")
    hit = daemon.metric("pagoda_prefix_cache_hit_tokens_total")
    row = {"config": name,
           "ttft_p50": [percentile(t, 0.5) for t in ttft],
           "ttft_p99": [percentile(t, 0.99) for t in ttft],
           "output_tokens_per_s": tokens / wall, "wall_s": wall,
           "device_prefix_hit_rate": hit / queried if queried else 0.0,
           "disk_loads": daemon.metric("pagoda_kv_offload_loads_total", 'medium="disk"'),
           "decisions_load": daemon.metric("pagoda_kv_offload_decisions_total", '"load"'),
           "decisions_recompute": daemon.metric("pagoda_kv_offload_decisions_total",
                                         '"recompute"'),
           "spilled": daemon.metric("pagoda_kv_offload_spilled_blocks_total")}
    offload = [l for l in daemon.log().splitlines() if "KV offload:" in l]
    row["cost_model"] = offload[0].split("pagodad: ", 1)[-1] if offload else ""
    return row


def first_turn_after_restart(args, pool_bytes, offload_dir, prompt):
    """TTFT of `prompt` on a fresh daemon with a warm disk tier, then again (warm device
    cache), and on a fresh daemon with an empty tier (cold)."""
    out = {}
    with Daemon(args.pagodad, *daemon_flags(args, pool_bytes, offload_dir)) as d:
        out["warm_disk"], _, _, out["warm_disk_cached"], _ = stream_completion(d, prompt, 4)
        out["warm_device"], _, _, out["warm_device_cached"], _ = stream_completion(d, prompt, 4)
    cold_dir = tempfile.mkdtemp(prefix="pagoda_kv_cold_")
    try:
        with Daemon(args.pagodad, *daemon_flags(args, pool_bytes, cold_dir)) as d:
            out["cold"], _, _, out["cold_cached"], _ = stream_completion(d, prompt, 4)
    finally:
        shutil.rmtree(cold_dir, ignore_errors=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pagodad", required=True)
    p.add_argument("--model", default="dummy:llama-110m")
    p.add_argument("--conversations", type=int, default=16)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--pool-conversations", type=float, default=4)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reload", default="auto", choices=["auto", "always"])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json")
    p.add_argument("--csv", help="per-turn TTFT table for bench/plot_kv_offload.gnuplot")
    args = p.parse_args()

    plan = conversations(args)
    per_token = bytes_per_token(args)
    longest = max(final_history_tokens(m, args.max_tokens) for m in plan)
    pool_bytes = int(args.pool_conversations * longest * per_token)
    print(f"{args.model}: {per_token} KV bytes per token; final histories up to {longest} "
          f"tokens; pool {pool_bytes / 2**20:.1f} MiB (~{args.pool_conversations:g} "
          f"conversations of {args.conversations})", flush=True)
    rows = []
    offload_dir = tempfile.mkdtemp(prefix="pagoda_kv_offload_bench_")
    try:
        for name, directory in (("no tiers", None), ("disk tier", offload_dir)):
            with Daemon(args.pagodad, *daemon_flags(args, pool_bytes, directory)) as d:
                ttft, tokens, wall, histories = run_chat(d, plan, args)
                rows.append(summarize(name, d, ttft, tokens, wall))
            print(json.dumps(rows[-1]), flush=True)
        last = histories[-1]
        restart = first_turn_after_restart(args, pool_bytes, offload_dir,
                                           last + "Seeker: And what more?\nTeacher:")
    finally:
        shutil.rmtree(offload_dir, ignore_errors=True)

    base, tiered = rows
    print(f"\n| turn | TTFT p50 no tiers (s) | TTFT p50 disk tier (s) | ratio | "
          f"TTFT p99 no tiers | TTFT p99 disk tier |")
    print("|---|---|---|---|---|---|")
    for t in range(args.turns):
        print(f"| {t + 1} | {base['ttft_p50'][t]:.3f} | {tiered['ttft_p50'][t]:.3f} | "
              f"{base['ttft_p50'][t] / tiered['ttft_p50'][t]:.2f}x | "
              f"{base['ttft_p99'][t]:.3f} | {tiered['ttft_p99'][t]:.3f} |")
    print(f"\noutput tokens/s: no tiers {base['output_tokens_per_s']:.1f}, disk tier "
          f"{tiered['output_tokens_per_s']:.1f} "
          f"({tiered['output_tokens_per_s'] / base['output_tokens_per_s']:.2f}x); "
          f"disk loads {tiered['disk_loads']:.0f} blocks, decisions load "
          f"{tiered['decisions_load']:.0f} / recompute {tiered['decisions_recompute']:.0f}")
    print(f"cost model: {tiered['cost_model']}")
    print(f"first turn after a restart: warm disk {restart['warm_disk']:.3f} s "
          f"({restart['warm_disk_cached']} cached), warm device {restart['warm_device']:.3f} s, "
          f"cold {restart['cold']:.3f} s")
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("turn,p50_no_tiers,p50_disk_tier,p99_no_tiers,p99_disk_tier\n")
            for t in range(args.turns):
                f.write(f"{t + 1},{base['ttft_p50'][t]:.4f},{tiered['ttft_p50'][t]:.4f},"
                        f"{base['ttft_p99'][t]:.4f},{tiered['ttft_p99'][t]:.4f}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "restart": restart}, f, indent=1)


if __name__ == "__main__":
    main()
