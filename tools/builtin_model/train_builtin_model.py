#!/usr/bin/python3
"""Trains Pagoda's built-in model, pagoda-kjv: a small Llama on the King James Bible.

    nice -n 19 /usr/bin/python3 tools/builtin_model/train_builtin_model.py \
        --work-dir /tmp/pagoda-kjv-train --steps N

Steps (each deterministic from --seed):
  1. the corpus (kjv_corpus.py): 31,102 verses, every 50th held out;
  2. a byte-level BPE tokenizer (byte_bpe.py) trained on the training verses;
  3. the model (llama.py), trained on windows of the training stream
     <s> verse </s> <s> verse </s> ... that start at a verse's <s>; checkpoints and the loss log
     go to --work-dir, and a run started again with the same arguments resumes from the last
     checkpoint, drawing the same batches;
  4. export (also alone with --export-only): the Hugging Face directory --out-dir (config.json,
     model.safetensors with bf16 matrices and f32 norms, tokenizer.json, tokenizer_config.json,
     generation_config.json), the evaluation of the exported weights on the held-out verses, the
     golden greedy outputs, and the test data of tests/builtin_model/testdata/.

Needs Debian's python3-torch, python3-numpy, python3-regex, bible-kjv (and bible-kjv-text), and
for speed libopenblas0-openmp: Debian's torch calls the system BLAS, and the reference BLAS is
about 20 times slower. The script runs itself on OpenBLAS (LD_LIBRARY_PATH) when it is installed,
so the system-wide BLAS choice may stay as it is.
"""

import os
import sys

_OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
if os.path.isdir(_OPENBLAS_DIR) and _OPENBLAS_DIR not in os.environ.get("LD_LIBRARY_PATH", ""):
    # Passive OpenMP waits: on a machine shared with builds, spinning threads that wait for a
    # descheduled peer made steps 10 times slower.
    _env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
                OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"),
                LD_LIBRARY_PATH=":".join(
                    p for p in (_OPENBLAS_DIR, os.environ.get("LD_LIBRARY_PATH")) if p))
    os.execve(sys.executable, [sys.executable] + sys.argv, _env)

import argparse
import csv
import json
import math
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byte_bpe  # noqa: E402
import kjv_corpus  # noqa: E402
from llama import LlamaConfig, LlamaForCausalLM  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# Prompts of the golden test (tests/builtin_model) and of the model card's samples. Golden
# prompts need a clear greedy choice at every step (the smallest gap between the top two logits,
# recorded in golden.json, was 0.03 or more here), so that float32 sums taken in another order
# cannot flip a token; "And the LORD said unto Moses," came within 7e-5 of a tie.
GOLDEN_PROMPTS = ["In the beginning", "And God said", "Blessed are the"]
SAMPLE_PROMPTS = GOLDEN_PROMPTS + ["And the LORD said unto Moses,", "The earth",
                                   "Jesus said unto them,", "Hello, how are you?"]
GOLDEN_MAX_TOKENS = 48


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work-dir", default="/tmp/pagoda-kjv-train",
                   help="checkpoints and logs (not part of the repository)")
    p.add_argument("--out-dir", default=os.path.join(REPO, "models", "pagoda-kjv"))
    p.add_argument("--testdata-dir",
                   default=os.path.join(REPO, "tests", "builtin_model", "testdata"))
    p.add_argument("--seed", type=int, default=1611)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--intermediate-size", type=int, default=688)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--max-position-embeddings", type=int, default=256,
                   help="the context served: the training window, as positions past it are "
                        "never trained")
    p.add_argument("--seq-len", type=int, default=256, help="training window, tokens")
    p.add_argument("--batch-size", type=int, default=16, help="windows per step")
    p.add_argument("--steps", type=int, default=3000,
                   help="steps of the cosine schedule (about 50 minutes on 2 idle Zen 4 cores)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--deadline-minutes", type=float, default=76.0,
                   help="stop training (checkpoint, then export) when this run has taken this long")
    p.add_argument("--decay-at", type=float, default=0.7,
                   help="fraction of the deadline after which the final decay may be brought "
                        "forward (see Schedule)")
    p.add_argument("--decay-start", type=int, default=None,
                   help="replay: the step at which an earlier run began its final decay")
    p.add_argument("--decay-steps", type=int, default=None)
    p.add_argument("--measure", type=int, default=0,
                   help="time this many training steps, print seconds per step, and exit")
    p.add_argument("--export-only", action="store_true",
                   help="export the last checkpoint without training")
    return p.parse_args()


# ---- data ----------------------------------------------------------------------------------


def build_data(args):
    verses = kjv_corpus.load_verses()
    train_verses, held_out = kjv_corpus.split(verses)
    tokenizer = byte_bpe.train((text for _, text in train_verses), args.vocab_size)
    stream, starts = [], []
    for _, text in train_verses:
        starts.append(len(stream))
        stream += [tokenizer.bos_id] + tokenizer.encode(text) + [tokenizer.eos_id]
    stream = torch.tensor(stream, dtype=torch.long)
    starts = torch.tensor(starts, dtype=torch.long)
    # Windows of seq_len + 1 tokens must fit: drop the starts too close to the end.
    starts = starts[starts + args.seq_len + 1 <= len(stream)]
    held_out_ids = [[tokenizer.bos_id] + tokenizer.encode(text) + [tokenizer.eos_id]
                    for _, text in held_out]
    return tokenizer, stream, starts, held_out, held_out_ids


def batch_for_step(args, stream, starts, step):
    """The inputs and targets of `step`: a pure function of (seed, step), so a resumed run sees
    the same batches."""
    g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
    chosen = starts[torch.randint(len(starts), (args.batch_size,), generator=g)]
    windows = torch.stack([stream[s:s + args.seq_len + 1] for s in chosen.tolist()])
    return windows[:, :-1], windows[:, 1:]


# ---- model and training --------------------------------------------------------------------


def model_config(args, tokenizer):
    return LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=args.hidden_size,
                       intermediate_size=args.intermediate_size, num_hidden_layers=args.layers,
                       num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                       max_position_embeddings=args.max_position_embeddings,
                       bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)


def make_optimizer(args, model):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def cosine_lr(args, step):
    """Linear warmup, then cosine decay to min_lr_ratio * lr at step --steps."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return args.lr * (args.min_lr_ratio + (1.0 - args.min_lr_ratio) * cosine)


class Schedule:
    """The learning rate of each step: cosine_lr, unless the deadline would cut it short. Then,
    once, at step decay_start, the run switches to a linear decay from the current rate to the
    minimum over decay_steps steps, sized to end before the deadline at the recent step time
    (a machine shared with builds may run several times slower than an idle one). The switch is
    logged and saved; --decay-start and --decay-steps replay it, so the schedule of any run can
    be reproduced."""

    def __init__(self, args):
        self.args = args
        self.decay_start = args.decay_start
        self.decay_steps = args.decay_steps

    @property
    def last_step(self):
        if self.decay_start is None:
            return self.args.steps
        return min(self.args.steps, self.decay_start + self.decay_steps)

    def lr(self, step):
        if self.decay_start is None or step < self.decay_start:
            return cosine_lr(self.args, step)
        start_lr = cosine_lr(self.args, self.decay_start)
        fraction = min(1.0, (step - self.decay_start + 1) / self.decay_steps)
        return start_lr + (self.args.lr * self.args.min_lr_ratio - start_lr) * fraction

    def maybe_switch(self, step, elapsed_s, step_s):
        """Switches to the final decay when, past --decay-at of the deadline, the cosine would
        not end in the time left at `step_s` seconds per step."""
        deadline_s = self.args.deadline_minutes * 60.0
        if self.decay_start is not None or step < self.args.warmup_steps:
            return
        left_s = deadline_s - elapsed_s
        if elapsed_s < self.args.decay_at * deadline_s:
            return
        if (self.args.steps - step) * step_s <= left_s:
            return
        self.decay_start = step
        self.decay_steps = max(1, int(left_s / (step_s * 1.25)))
        print("the cosine would not end by the deadline (%.2f s per step): decaying linearly from "
              "step %d over %d steps (replay: --decay-start %d --decay-steps %d)" %
              (step_s, step, self.decay_steps, step, self.decay_steps), flush=True)


@torch.no_grad()
def held_out_nll(model, held_out_ids, kv_round=None, batch_size=32):
    """Per verse: (sum of -log p over the tokens after <s>, their count). Each verse is scored
    alone from position 0, as Pagoda scores it."""
    model.eval()
    order = sorted(range(len(held_out_ids)), key=lambda i: len(held_out_ids[i]))
    out = [None] * len(held_out_ids)
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        width = max(len(held_out_ids[i]) for i in idx)
        ids = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, :len(held_out_ids[i])] = torch.tensor(held_out_ids[i])
        logp = torch.log_softmax(model(ids, kv_round).double(), dim=-1)
        for r, i in enumerate(idx):
            n = len(held_out_ids[i])
            targets = ids[r, 1:n]
            nll = -logp[r, :n - 1].gather(-1, targets[:, None]).sum().item()
            out[i] = (nll, n - 1)
    model.train()
    return out


def mean_nll(per_verse):
    return sum(n for n, _ in per_verse) / sum(c for _, c in per_verse)


def log_writer(f):
    return csv.writer(f, lineterminator="\n")


def save_checkpoint(path, model, optimizer, step, elapsed_s, schedule):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "elapsed_s": elapsed_s, "decay_start": schedule.decay_start,
                "decay_steps": schedule.decay_steps}, tmp)
    os.replace(tmp, path)


def train(args, model, stream, starts, held_out_ids):
    """Trains until the schedule's last step or the deadline; returns (step, schedule,
    training seconds)."""
    ckpt_path = os.path.join(args.work_dir, "checkpoint.pt")
    log_path = os.path.join(args.work_dir, "loss.csv")
    optimizer = make_optimizer(args, model)
    schedule = Schedule(args)
    step, elapsed_before = 0, 0.0
    if os.path.exists(ckpt_path):
        ckpt = torch.load(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, elapsed_before = ckpt["step"], ckpt["elapsed_s"]
        if schedule.decay_start is None and ckpt.get("decay_start") is not None:
            schedule.decay_start, schedule.decay_steps = ckpt["decay_start"], ckpt["decay_steps"]
        print("resumed at step %d (%.0f s of training before)" % (step, elapsed_before))
        # Rows logged after the checkpoint are trained again.
        with open(log_path, newline="") as f:
            rows = list(csv.reader(f))
        with open(log_path, "w", newline="") as f:
            log_writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= step])
    else:
        with open(log_path, "w", newline="") as f:
            log_writer(f).writerow(["step", "tokens", "elapsed_s", "lr", "train_loss",
                                    "heldout_loss"])
    start = time.time()
    elapsed = elapsed_before
    window_losses, step_times = [], []
    model.train()
    while step < schedule.last_step:
        if elapsed / 60.0 > args.deadline_minutes:
            print("deadline reached at step %d: stopping early" % step)
            break
        if step_times:
            schedule.maybe_switch(step, elapsed, sorted(step_times)[len(step_times) // 2])
        step_start = time.time()
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr(step)
        inputs, targets = batch_for_step(args, stream, starts, step)
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        step_times = (step_times + [time.time() - step_start])[-50:]
        window_losses.append(loss.item())
        elapsed = elapsed_before + time.time() - start
        if step % args.log_every == 0 or step == schedule.last_step:
            held = ""
            if step % args.eval_every == 0 or step == schedule.last_step:
                held = "%.5f" % mean_nll(held_out_nll(model, held_out_ids))
            train_loss = sum(window_losses) / len(window_losses)
            window_losses = []
            with open(log_path, "a", newline="") as f:
                log_writer(f).writerow([step, step * args.batch_size * args.seq_len,
                                        "%.1f" % elapsed, "%.6g" % schedule.lr(step - 1),
                                        "%.5f" % train_loss, held])
            print("step %5d  %6.0f s  lr %.2e  train %.4f  %s" %
                  (step, elapsed, schedule.lr(step - 1), train_loss,
                   "held-out %s" % held if held else ""), flush=True)
        if step % args.checkpoint_every == 0:
            save_checkpoint(ckpt_path, model, optimizer, step, elapsed, schedule)
    elapsed = elapsed_before + time.time() - start
    save_checkpoint(ckpt_path, model, optimizer, step, elapsed, schedule)
    return step, schedule, elapsed


# ---- export --------------------------------------------------------------------------------


def to_bf16(t):
    """Round-to-nearest-even to bf16, returned as float32 (exactly representable)."""
    return t.to(torch.bfloat16).to(torch.float32)


def shipped_state(model):
    """The weights as shipped: matrices rounded to bf16, norms kept in f32."""
    return {name: (to_bf16(t) if t.dim() >= 2 else t.clone())
            for name, t in model.state_dict().items()}


def write_safetensors(path, state):
    """Matrices as BF16, vectors as F32, in name order, data 8-byte aligned."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(state):
        t = state[name].contiguous()
        if t.dim() >= 2:
            data = t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
            dtype = "BF16"
        else:
            data = t.to(torch.float32).numpy().astype("<f4").tobytes()
            dtype = "F32"
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


@torch.no_grad()
def greedy(model, prompt_ids, max_tokens, eos_id, kv_round=None):
    """Greedy continuation (stops after EOS or max_tokens) and the smallest gap between the top
    two logits along the way (how close greedy came to a tie)."""
    model.eval()
    ids, out, min_margin = list(prompt_ids), [], float("inf")
    for _ in range(max_tokens):
        logits = model(torch.tensor([ids]), kv_round)[0, -1].double()
        top2 = torch.topk(logits, 2)
        min_margin = min(min_margin, (top2.values[0] - top2.values[1]).item())
        nxt = int(top2.indices[0])
        ids.append(nxt)
        out.append(nxt)
        if nxt == eos_id:
            break
    return out, min_margin


@torch.no_grad()
def sample(model, prompt_ids, max_tokens, eos_id, temperature, seed):
    model.eval()
    g = torch.Generator().manual_seed(seed)
    ids, out = list(prompt_ids), []
    for _ in range(max_tokens):
        logits = model(torch.tensor([ids]))[0, -1] / temperature
        nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
        ids.append(nxt)
        out.append(nxt)
        if nxt == eos_id:
            break
    return out


def write_json(path, value, indent=1):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=indent, ensure_ascii=False)
        f.write("\n")


def export(args, model, tokenizer, held_out, held_out_ids, run):
    os.makedirs(args.out_dir, exist_ok=True)
    os.makedirs(args.testdata_dir, exist_ok=True)
    config = model.config
    state = shipped_state(model)
    write_safetensors(os.path.join(args.out_dir, "model.safetensors"), state)
    write_json(os.path.join(args.out_dir, "config.json"), config.to_hf(), indent=2)
    write_json(os.path.join(args.out_dir, "generation_config.json"),
               {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
                "max_length": config.max_position_embeddings}, indent=2)
    write_json(os.path.join(args.out_dir, "tokenizer_config.json"),
               {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": byte_bpe.BOS,
                "eos_token": byte_bpe.EOS, "add_bos_token": True, "add_eos_token": False,
                "clean_up_tokenization_spaces": False,
                "model_max_length": config.max_position_embeddings}, indent=2)
    tokenizer.write(os.path.join(args.out_dir, "tokenizer.json"))

    shipped = LlamaForCausalLM(config)
    shipped.load_state_dict(state)
    per_verse = held_out_nll(shipped, held_out_ids)
    nll = mean_nll(per_verse)
    num_tokens = sum(c for _, c in per_verse)
    # Served defaults (bf16 KV cache) for comparison: K and V rounded to bf16.
    nll_bf16_kv = mean_nll(held_out_nll(shipped, held_out_ids, kv_round=to_bf16))
    summary = dict(run, **{
        "num_parameters": shipped.num_parameters(),
        "held_out_verses": len(held_out_ids),
        "held_out_predicted_tokens": num_tokens,
        "held_out_mean_nll": nll,
        "held_out_perplexity": math.exp(nll),
        "held_out_perplexity_bf16_kv": math.exp(nll_bf16_kv),
        "model_safetensors_bytes": os.path.getsize(os.path.join(args.out_dir,
                                                                "model.safetensors")),
    })
    write_json(os.path.join(args.testdata_dir, "heldout.json"), {
        "about": "The held-out verses of pagoda-kjv (every 50th verse of the KJV), their token ids "
                 "from tools/builtin_model/byte_bpe.py (<s> text </s>), and the training script's "
                 "evaluation of the shipped weights: each verse scored alone from position 0, "
                 "every token after <s> predicted, float32 compute, float32 K/V.",
        "mean_nll": nll,
        "perplexity": math.exp(nll),
        "predicted_tokens": num_tokens,
        "verses": [{"ref": ref, "text": text, "ids": ids, "nll": v[0]}
                   for (ref, text), ids, v in zip(held_out, held_out_ids, per_verse)],
    }, indent=None)

    golden = []
    for prompt in GOLDEN_PROMPTS:
        prompt_ids = tokenizer.encode(prompt, add_bos=True)
        out, margin = greedy(shipped, prompt_ids, GOLDEN_MAX_TOKENS, tokenizer.eos_id)
        golden.append({"prompt": prompt, "prompt_ids": prompt_ids,
                       "max_tokens": GOLDEN_MAX_TOKENS, "output_ids": out,
                       "text": tokenizer.decode(out), "min_top2_logit_margin": margin})
    write_json(os.path.join(args.testdata_dir, "golden.json"), {
        "about": "Greedy continuations by the training script (float32 compute, float32 K/V) "
                 "of the shipped pagoda-kjv weights; output stops after </s> or max_tokens.",
        "outputs": golden,
    })

    samples = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        prompt_ids = tokenizer.encode(prompt, add_bos=True)
        out, _ = greedy(shipped, prompt_ids, 64, tokenizer.eos_id)
        sampled = sample(shipped, prompt_ids, 64, tokenizer.eos_id, 0.8, args.seed + i)
        samples.append({"prompt": prompt, "greedy": tokenizer.decode(out),
                        "temperature_0.8": tokenizer.decode(sampled)})
    summary["samples"] = samples
    write_json(os.path.join(args.work_dir, "summary.json"), summary)
    print(json.dumps(summary, indent=1))


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.time()
    tokenizer, stream, starts, held_out, held_out_ids = build_data(args)
    config = model_config(args, tokenizer)
    model = LlamaForCausalLM(config)
    print("data: %d training tokens, %d held-out verses; model: %d parameters; setup %.1f s" %
          (len(stream), len(held_out_ids), model.num_parameters(), time.time() - t0), flush=True)
    if args.measure:
        optimizer = make_optimizer(args, model)
        times = []
        for step in range(args.measure):
            t = time.time()
            inputs, targets = batch_for_step(args, stream, starts, step)
            logits = model(inputs)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.time() - t)
            print("step %d: %.3f s, loss %.3f" % (step, times[-1], loss.item()), flush=True)
        t = time.time()
        held_out_nll(model, held_out_ids)
        print("median step %.3f s; held-out evaluation %.1f s" %
              (sorted(times)[len(times) // 2], time.time() - t))
        return
    if args.export_only:
        ckpt = torch.load(os.path.join(args.work_dir, "checkpoint.pt"))
        model.load_state_dict(ckpt["model"])
        run = {"step": ckpt["step"], "training_s": ckpt["elapsed_s"],
               "decay_start": ckpt.get("decay_start"), "decay_steps": ckpt.get("decay_steps")}
    else:
        step, schedule, elapsed = train(args, model, stream, starts, held_out_ids)
        run = {"step": step, "training_s": elapsed, "decay_start": schedule.decay_start,
               "decay_steps": schedule.decay_steps}
    export(args, model, tokenizer, held_out, held_out_ids, run)


if __name__ == "__main__":
    main()
