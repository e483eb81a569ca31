#!/usr/bin/env python3
"""Our CUDA paged attention against PyTorch's scaled_dot_product_attention, on one GPU in one run.

    bench/cuda/torch_sdpa_compare.py [--benchmark build-cuda/kernels/cuda_paged_attention_benchmark]
        [--json-out results.json] [--iters 50] [--warmup 5] [--sdpa-backend auto]

Shapes are those of kernels/cuda/paged_attention_benchmark.cc: Llama-3-8B attention (32 query
heads, 8 KV heads, head dim 128), block size 16, bf16; decode at batch x context 1x32k, 16x4k,
64x2k, 256x4k, 256x256, and a causal prefill of 4k and 16k tokens.

Ours: the benchmark binary is run with --benchmark_format=json (or its earlier JSON output is
read with --ours-json) and its manual-time results are taken as they are: mean kernel time from
CUDA events, GB_per_s (K/V bytes the contexts hold / time, L2 flushed before every decode call),
TFLOP_per_s for prefill. Both of its decode variants are listed: the planner's split ("auto")
and none.

Torch: K and V live in a paged cache of the same layout ([num_blocks, kv_heads, block_size,
head_dim], blocks in random order); each call's K/V are first gathered through the block table
into contiguous [batch, kv_heads, context, head_dim] tensors (one gather per tensor). The
gather is not part of the SDPA time: it is timed on its own and reported as "gather us",
because a paged engine built on SDPA would pay it on every step. SDPA gets GQA through
enable_gqa=True where this torch has it (2.5 and newer); otherwise the gather also repeats each
KV head over its 4 query heads (repeat_interleave), which SDPA then reads 4 times over. Each timed
call (SDPA, or one gather of K and V) runs after a write of a buffer 4x the GPU's L2 (at least
256 MiB), between CUDA events (our prefill benchmark does not flush, which matters little for a
compute-bound prefill); the table shows the mean over --iters calls after --warmup, --json-out
also the median and minimum. Decode is one query per request (no mask); prefill is
is_causal=True over the whole prompt. Rates use our counters' formulas: GB/s = 2 * batch *
context * 8 * 128 * 2 bytes / time (what the cache holds, whatever the kernel reads),
TFLOP/s = 4 * 128 * 32 * n(n+1)/2 / time. ratio = torch us / ours us (> 1: ours is faster).

Without PyTorch or a CUDA device it says so and exits 0, as the benchmark binary does without
a device. It exits 1 when our benchmark cannot be run or its output cannot be read.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

NUM_HEADS = 32
NUM_KV_HEADS = 8
HEAD_DIM = 128
BLOCK_SIZE = 16
DECODE_SHAPES = [(1, 32768), (16, 4096), (64, 2048), (256, 4096), (256, 256)]  # (batch, context)
PREFILL_TOKENS = [4096, 16384]
MIN_FLUSH_BYTES = 256 << 20
BF16_BYTES = 2

DECODE_NAME = re.compile(r"^BM_Decode/split:(\w+)/batch:(\d+)/context:(\d+)")
PREFILL_NAME = re.compile(r"^BM_Prefill/tokens:(\d+)")
TIME_UNIT_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def tokens_label(n):
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def decode_label(batch, context):
    return f"decode {batch}x{tokens_label(context)}"


def prefill_label(tokens):
    return f"prefill {tokens_label(tokens)}"


def decode_kv_bytes(batch, context):
    return 2.0 * batch * context * NUM_KV_HEADS * HEAD_DIM * BF16_BYTES


def prefill_flops(tokens):
    return 4.0 * HEAD_DIM * NUM_HEADS * tokens * (tokens + 1) / 2


# ---- Ours: the benchmark binary's JSON ------------------------------------------------------


def extract_json(stdout):
    """The JSON document in the binary's stdout (it prints the read ceiling before it)."""
    start = stdout.find("{")
    if start < 0:
        raise ValueError("no JSON in the benchmark's output")
    document, _ = json.JSONDecoder().raw_decode(stdout[start:])
    return document


def parse_ours(document):
    """Our results by key ("decode", batch, context, split) or ("prefill", tokens).

    Each value: us (mean over repetitions of the manual time), GB_per_s or TFLOP_per_s, and for
    decode partitions and pct_of_ceiling; an entry whose benchmark failed carries error instead.
    """
    runs = {}
    for entry in document.get("benchmarks", []):
        if entry.get("run_type", "iteration") != "iteration":
            continue  # repetitions' aggregates
        name = entry.get("run_name") or entry.get("name", "")
        decode = DECODE_NAME.match(name)
        prefill = PREFILL_NAME.match(name)
        if decode:
            key = ("decode", int(decode.group(2)), int(decode.group(3)), decode.group(1))
        elif prefill:
            key = ("prefill", int(prefill.group(1)))
        else:
            continue
        runs.setdefault(key, []).append(entry)
    results = {}
    for key, entries in runs.items():
        failed = [e for e in entries if e.get("error_occurred")]
        if failed:
            results[key] = {"error": failed[0].get("error_message", "failed")}
            continue
        scale = TIME_UNIT_US[entries[0].get("time_unit", "ns")]
        result = {"us": statistics.mean(e["real_time"] * scale for e in entries)}
        for counter in ("GB_per_s", "TFLOP_per_s", "pct_of_ceiling", "ceiling_GB_per_s",
                        "partitions"):
            if counter in entries[0]:
                result[counter] = statistics.mean(e[counter] for e in entries)
        results[key] = result
    return results


def run_ours(binary, extra_args):
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"our benchmark {binary} is not an executable: build it "
                           "(ninja -C build-cuda cuda_paged_attention_benchmark) or pass "
                           "--benchmark PATH")
    command = [binary, "--benchmark_format=json", *extra_args]
    print("running", " ".join(command), flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{binary} exited with status {done.returncode}")
    if "no CUDA device" in done.stdout and "{" not in done.stdout:
        raise RuntimeError(f"{binary} sees no CUDA device, though PyTorch does")
    return extract_json(done.stdout)


# ---- Torch: SDPA on gathered K/V -------------------------------------------------------------


class TorchBench:
    """SDPA and the K/V gather on one device, timed with CUDA events after an L2 flush."""

    def __init__(self, torch, iters, warmup, backend):
        self.torch = torch
        self.iters = iters
        self.warmup = warmup
        self.device = torch.device("cuda")
        props = torch.cuda.get_device_properties(self.device)
        self.device_name = props.name
        l2_bytes = getattr(props, "L2_cache_size", 0) or (50 << 20)
        self.flush_buffer = torch.empty(max(4 * l2_bytes, MIN_FLUSH_BYTES), dtype=torch.uint8,
                                        device=self.device)
        self.native_gqa = sdpa_has_enable_gqa(torch)
        self.backend = backend
        self.sdpa_context = sdpa_backend_context(torch, backend)

    def time_us(self, fn):
        """Mean, median and minimum of fn's time in microseconds, L2 flushed before each call."""
        torch = self.torch
        for _ in range(self.warmup):
            self.flush_buffer.zero_()
            fn()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(self.iters)]
        stops = [torch.cuda.Event(enable_timing=True) for _ in range(self.iters)]
        for start, stop in zip(starts, stops):
            self.flush_buffer.zero_()
            start.record()
            fn()
            stop.record()
        torch.cuda.synchronize()
        times = [start.elapsed_time(stop) * 1e3 for start, stop in zip(starts, stops)]
        return {"us": statistics.mean(times), "median_us": statistics.median(times),
                "min_us": min(times)}

    def paged_cache(self, num_sequences, tokens_each):
        """K and V caches holding num_sequences contexts in shuffled blocks, and their table."""
        torch = self.torch
        blocks_each = -(-tokens_each // BLOCK_SIZE)
        num_blocks = num_sequences * blocks_each
        shape = (num_blocks, NUM_KV_HEADS, BLOCK_SIZE, HEAD_DIM)
        generator = torch.Generator(device=self.device).manual_seed(4)
        key = torch.randn(shape, dtype=torch.bfloat16, device=self.device, generator=generator)
        value = torch.randn(shape, dtype=torch.bfloat16, device=self.device, generator=generator)
        order = torch.randperm(num_blocks, device=self.device, generator=generator)
        table = order.view(num_sequences, blocks_each)
        return key, value, table

    def gather(self, key_cache, value_cache, table, context_len):
        repeats = 1 if self.native_gqa else NUM_HEADS // NUM_KV_HEADS
        return (gather_paged(self.torch, key_cache, table, context_len, repeats),
                gather_paged(self.torch, value_cache, table, context_len, repeats))

    def sdpa(self, q, k, v, causal):
        kwargs = {"is_causal": causal}
        if self.native_gqa:
            kwargs["enable_gqa"] = True
        with self.sdpa_context():
            return self.torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)

    def measure(self, num_sequences, context_len, queries_each, causal):
        torch = self.torch
        key_cache, value_cache, table = self.paged_cache(num_sequences, context_len)
        q = torch.randn((num_sequences, NUM_HEADS, queries_each, HEAD_DIM), dtype=torch.bfloat16,
                        device=self.device)
        gather_time = self.time_us(lambda: self.gather(key_cache, value_cache, table, context_len))
        k, v = self.gather(key_cache, value_cache, table, context_len)
        sdpa_time = self.time_us(lambda: self.sdpa(q, k, v, causal))
        del k, v, key_cache, value_cache
        torch.cuda.empty_cache()
        return sdpa_time, gather_time


def gather_paged(torch, cache, table, context_len, repeats=1):
    """[batch, kv_heads * repeats, context_len, head_dim], contiguous, from a paged cache.

    cache: [num_blocks, kv_heads, block_size, head_dim]; table: [batch, blocks_per_sequence].
    One indexing kernel: the (block, head) index pairs broadcast to [batch, kv_heads, blocks],
    so the result is already in sequence order. repeats > 1 repeats each KV head (for an SDPA
    without enable_gqa), at the price of a second copy.
    """
    batch, blocks = table.shape
    kv_heads, block_size, head_dim = cache.shape[1:]
    heads = torch.arange(kv_heads, device=cache.device)
    gathered = cache[table[:, None, :], heads[None, :, None]]  # [batch, kv_heads, blocks, bs, d]
    gathered = gathered.view(batch, kv_heads, blocks * block_size, head_dim)
    if context_len < blocks * block_size:
        gathered = gathered[:, :, :context_len].contiguous()
    if repeats > 1:
        gathered = gathered.repeat_interleave(repeats, dim=1)
    return gathered


def sdpa_has_enable_gqa(torch):
    """Whether scaled_dot_product_attention takes enable_gqa (torch 2.5 and newer)."""
    q = torch.zeros((1, 2, 1, 8))
    kv = torch.zeros((1, 1, 1, 8))
    try:
        torch.nn.functional.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
    except (TypeError, RuntimeError):
        return False
    return True


def sdpa_backend_context(torch, backend):
    """A factory of context managers that restrict SDPA to `backend` ("auto": torch chooses)."""
    import contextlib
    if backend == "auto":
        return contextlib.nullcontext
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # torch 2.3 and newer
    except ImportError as error:
        raise RuntimeError(f"--sdpa-backend {backend} needs torch.nn.attention: {error}")
    name = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
            "cudnn": "CUDNN_ATTENTION", "math": "MATH"}[backend]
    chosen = getattr(SDPBackend, name, None)
    if chosen is None:
        raise RuntimeError(f"this torch has no SDPA backend {name}")
    return lambda: sdpa_kernel([chosen])


def measure_torch(bench):
    """Torch's results by the same keys as parse_ours (without the split); a shape that torch
    fails on (no SDPA kernel for it, out of memory) gets {"error": message}."""
    torch = bench.torch
    cases = [(("decode", b, c), decode_label(b, c), (b, c, 1, False)) for b, c in DECODE_SHAPES]
    cases += [(("prefill", n), prefill_label(n), (1, n, n, True)) for n in PREFILL_TOKENS]
    results = {}
    for key, label, shape in cases:
        print(f"torch: {label}", flush=True)
        try:
            sdpa, gather = bench.measure(*shape)
        except RuntimeError as error:  # torch.cuda.OutOfMemoryError included
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            print(f"torch: {label} failed: {message}", flush=True)
            results[key] = {"error": message}
            torch.cuda.empty_cache()
            continue
        if key[0] == "decode":
            sdpa["GB_per_s"] = decode_kv_bytes(key[1], key[2]) / (sdpa["us"] * 1e-6) / 1e9
        else:
            sdpa["TFLOP_per_s"] = prefill_flops(key[1]) / (sdpa["us"] * 1e-6) / 1e12
        results[key] = {"sdpa": sdpa, "gather": gather}
    return results


# ---- Report ----------------------------------------------------------------------------------


def join_rows(ours, theirs):
    """One row per result of ours (decode: each split variant), with torch's for its shape."""
    rows = []
    for key in sorted(ours, key=lambda k: (k[0] != "decode", k[1:])):
        mine = ours[key]
        if key[0] == "decode":
            _, batch, context, split = key
            torch_key = ("decode", batch, context)
            row = {"kind": "decode", "shape": decode_label(batch, context), "batch": batch,
                   "context": context, "split": split}
        else:
            torch_key = key
            row = {"kind": "prefill", "shape": prefill_label(key[1]), "tokens": key[1]}
        row["ours"] = mine
        their = theirs.get(torch_key)
        if their is not None and "error" in their:
            row["torch_error"] = their["error"]
        elif their is not None:
            row["torch"] = their["sdpa"]
            row["gather"] = their["gather"]
            if "us" in mine:
                row["ratio"] = their["sdpa"]["us"] / mine["us"]
        rows.append(row)
    return rows


def format_table(rows, kind, rate, rate_key):
    header = ["shape", "split", "ours us", f"ours {rate}", "torch us", f"torch {rate}",
              "ratio", "gather us"]
    if kind == "prefill":
        header.remove("split")
    lines = []
    notes = []
    for row in rows:
        if row["kind"] != kind:
            continue
        mine = row["ours"]
        torch_result = row.get("torch", {})
        cells = [row["shape"]]
        if kind == "decode":
            cells.append(row["split"])
        if "error" in mine:
            cells += ["error", "-"]
            notes.append(f"{row['shape']}: ours failed: {mine['error']}")
        else:
            cells += [f"{mine['us']:.1f}", f"{mine.get(rate_key, float('nan')):.1f}"]
        if torch_result:
            cells += [f"{torch_result['us']:.1f}", f"{torch_result[rate_key]:.1f}"]
        else:
            cells += ["error" if "torch_error" in row else "-", "-"]
        cells.append(f"{row['ratio']:.2f}" if "ratio" in row else "-")
        cells.append(f"{row['gather']['us']:.1f}" if "gather" in row else "-")
        lines.append(cells)
        if "torch_error" in row:
            notes.append(f"{row['shape']}: torch failed: {row['torch_error']}")
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    for cells in lines:
        out.append("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))))
    out += list(dict.fromkeys(notes))  # decode's two split rows share torch's failure
    return "\n".join(out)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="build-cuda/kernels/cuda_paged_attention_benchmark",
                        help="our cuda_paged_attention_benchmark binary")
    parser.add_argument("--ours-json",
                        help="read our results from this JSON file of the benchmark binary "
                             "(--benchmark_out=FILE --benchmark_out_format=json) "
                             "instead of running it")
    parser.add_argument("--benchmark-arg", action="append", default=[],
                        help="an extra argument for our binary (repeatable), e.g. "
                             "--benchmark-arg=--benchmark_repetitions=3")
    parser.add_argument("--iters", type=int, default=50, help="timed torch calls per shape")
    parser.add_argument("--warmup", type=int, default=5, help="untimed torch calls per shape")
    parser.add_argument("--sdpa-backend", default="auto",
                        choices=["auto", "flash", "efficient", "cudnn", "math"],
                        help="restrict SDPA to one backend (torch 2.3 and newer)")
    parser.add_argument("--json-out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    return args


def main(argv):
    args = parse_args(argv)
    try:
        import torch
    except ImportError as error:
        print(f"torch_sdpa_compare: PyTorch is not installed ({error}); nothing compared")
        return 0
    if not torch.cuda.is_available():
        print(f"torch_sdpa_compare: no CUDA device visible to PyTorch {torch.__version__}; "
              "nothing compared")
        return 0
    if not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        print(f"torch_sdpa_compare: PyTorch {torch.__version__} has no "
              "scaled_dot_product_attention (2.0 or newer); nothing compared")
        return 0
    try:
        if args.ours_json:
            with open(args.ours_json, encoding="utf-8") as f:
                ours_document = json.load(f)
        else:
            ours_document = run_ours(args.benchmark, args.benchmark_arg)
        ours = parse_ours(ours_document)
    except (OSError, RuntimeError, ValueError) as error:
        print(f"torch_sdpa_compare: {error}", file=sys.stderr)
        return 1
    if not ours:
        print("torch_sdpa_compare: no BM_Decode/BM_Prefill results in our benchmark's output",
              file=sys.stderr)
        return 1

    try:
        bench = TorchBench(torch, args.iters, args.warmup, args.sdpa_backend)
    except RuntimeError as error:
        print(f"torch_sdpa_compare: {error}", file=sys.stderr)
        return 1
    theirs = measure_torch(bench)
    rows = join_rows(ours, theirs)
    ceiling = next((r["ours"]["ceiling_GB_per_s"] for r in rows
                    if "ceiling_GB_per_s" in r["ours"]), None)
    gqa = "enable_gqa" if bench.native_gqa else "repeat_interleave in the gather"
    print()
    print(f"{bench.device_name}, torch {torch.__version__}, SDPA backend {args.sdpa_backend}, "
          f"GQA by {gqa}" + (f", read ceiling {ceiling:.0f} GB/s" if ceiling else ""))
    print("ratio = torch us / ours us (> 1: ours is faster); gather us = torch's K/V gather "
          "from the paged cache, not in torch us\n")
    print(format_table(rows, "decode", "GB/s", "GB_per_s"))
    print()
    print(format_table(rows, "prefill", "TFLOP/s", "TFLOP_per_s"))
    if args.json_out:
        report = {"device": bench.device_name, "torch_version": torch.__version__,
                  "sdpa_backend": args.sdpa_backend, "gqa": gqa, "read_ceiling_GB_per_s": ceiling,
                  "iters": args.iters, "warmup": args.warmup,
                  "shape": {"num_heads": NUM_HEADS, "num_kv_heads": NUM_KV_HEADS,
                            "head_dim": HEAD_DIM, "block_size": BLOCK_SIZE, "dtype": "bf16"},
                  "rows": rows}
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
