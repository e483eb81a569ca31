#!/usr/bin/python3
"""How much attention a model gives its first tokens: the "attention sink" of StreamingLLM.

Runs the NumPy reference (tests/reference/llama_reference.py) on the built-in model (the ids of
testdata/heldout.json are its tokenizer's) over the first N tokens of the held-out KJV verses
joined into one document (a single <s> at position 0) and prints, per layer,
the mean attention weight that queries in the second half put on token 0 and on tokens 0-3. A
model that keeps much of its attention there (Llama 2 7B: most of it, past layer 1, in the
paper) degrades when a plain window evicts them; one that gives them about a uniform share has no
sink to lose. Used by docs/benchmarks.md ("Attention sinks").

    /usr/bin/python3 bench/attention_sink_mass.py models/pagoda-kjv [--tokens 256]
"""

import argparse
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import llama_reference as ref  # noqa: E402


def document_ids(heldout_path, bos, eos, n):
    """The verses' ids without their own <s> and </s>, after one <s>."""
    ids = [bos]
    with open(heldout_path) as f:
        for verse in json.load(f)["verses"]:
            ids += [t for t in verse["ids"] if t not in (bos, eos)]
            if len(ids) >= n:
                break
    return ids[:n]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--heldout", default=os.path.join(
        HERE, "..", "tests", "builtin_model", "testdata", "heldout.json"))
    args = parser.parse_args()
    m = ref.load_model(args.model_dir)
    ids = document_ids(args.heldout, int(m.config.get("bos_token_id", 0)),
                       int(m.config.get("eos_token_id", 1)), args.tokens)
    vocab = m.w["model.embed_tokens.weight"].shape[0]
    if max(ids) >= vocab:
        sys.exit("the held-out ids are pagoda-kjv's tokenizer's; this model's vocabulary is smaller")
    t = len(ids)
    x = m.w["model.embed_tokens.weight"][np.asarray(ids)]
    freqs = np.outer(np.arange(t, dtype=np.float64), m.inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)
    half = t // 2
    print(f"{args.model_dir}: {t} tokens; queries {half}-{t - 1}; a uniform share of their "
          f"context is about {1 / (0.75 * t):.4f} per token")
    for layer in range(m.num_layers):
        p = f"model.layers.{layer}."
        h = ref.rms_norm(x, m.w[p + "input_layernorm.weight"], m.eps)
        a = p + "self_attn."
        q = m.linear(h, a + "q_proj").reshape(t, m.num_heads, m.head_dim)
        k = m.linear(h, a + "k_proj").reshape(t, m.num_kv_heads, m.head_dim)
        v = m.linear(h, a + "v_proj").reshape(t, m.num_kv_heads, m.head_dim)
        q = q * cos[:, None, :] + ref.rotate_half(q) * sin[:, None, :]
        k = k * cos[:, None, :] + ref.rotate_half(k) * sin[:, None, :]
        group = m.num_heads // m.num_kv_heads
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(m.head_dim)
        s = np.where(np.tril(np.ones((t, t), dtype=bool))[None], s, -np.inf)
        s -= s.max(axis=-1, keepdims=True)
        probs = np.exp(s)
        probs /= probs.sum(axis=-1, keepdims=True)
        late = probs[:, half:, :]
        print(f"layer {layer}: on token 0 mean {late[:, :, 0].mean():.4f} (most-sinking head "
              f"{late[:, :, 0].mean(axis=1).max():.4f}); on tokens 0-3 {late[:, :, :4].sum(-1).mean():.4f}")
        out = np.einsum("hqk,khd->qhd", probs, v).reshape(t, -1)
        x = x + m.linear(out, a + "o_proj")
        h = ref.rms_norm(x, m.w[p + "post_attention_layernorm.weight"], m.eps)
        x = x + m.mlp(h, layer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
