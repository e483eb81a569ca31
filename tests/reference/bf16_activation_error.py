#!/usr/bin/python3
"""How far bf16 activations move a model's logits: the error budget of the CUDA runner's tests.

The CUDA runner (runner/cuda/) rounds every kernel's output to bf16 (residual stream, norms,
projections, rotated q/k, the KV cache, softmax probabilities before P.V, the logits); the CPU
runner computes in f32 with a bf16 KV cache. This script runs the NumPy reference
(llama_reference.py) both ways on the same bf16 weights and prints the largest logit difference,
the tolerance's margin, and how often the greedy tokens agree, so that the tolerance of
engine/cuda_model_runner_test.cc rests on a measurement rather than a guess.

  /usr/bin/python3 tests/reference/bf16_activation_error.py models/pagoda-kjv
  /usr/bin/python3 tests/reference/bf16_activation_error.py --dummy [--attention-bias]
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_reference import LlamaReference, load_weights, rms_norm, rotate_half, silu  # noqa: E402


def to_bf16(x):
    """Rounds to the nearest bfloat16 (ties to even), returned as float64."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


class RoundedForward(LlamaReference):
    """The reference forward pass with bf16 weights, rounding at the CUDA runner's kernel
    boundaries when `round_activations` (else only the KV cache is bf16, as on the CPU)."""

    def __init__(self, config, tensors, round_activations):
        super().__init__(config, tensors, dtype=np.float64)
        self.w = {name: to_bf16(t) for name, t in self.w.items()}
        self.lm_head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        self.r = to_bf16 if round_activations else (lambda x: x)

    def forward(self, tokens):
        r, t = self.r, len(tokens)
        x = r(self.w["model.embed_tokens.weight"][np.asarray(tokens)])
        freqs = np.outer(np.arange(t, dtype=np.float64), self.inv_freq)
        cos, sin = np.cos(np.concatenate([freqs, freqs], -1)), np.sin(np.concatenate([freqs, freqs], -1))
        group = self.num_heads // self.num_kv_heads
        causal = np.tril(np.ones((t, t), dtype=bool))[None]
        for layer in range(self.num_layers):
            p = f"model.layers.{layer}."
            h = r(rms_norm(x, self.w[p + "input_layernorm.weight"], self.eps))
            q = r(self.linear(h, p + "self_attn.q_proj")).reshape(t, self.num_heads, -1)
            k = r(self.linear(h, p + "self_attn.k_proj")).reshape(t, self.num_kv_heads, -1)
            v = r(self.linear(h, p + "self_attn.v_proj")).reshape(t, self.num_kv_heads, -1)
            q = r(q * cos[:, None] + rotate_half(q) * sin[:, None])
            k = to_bf16(k * cos[:, None] + rotate_half(k) * sin[:, None])  # the bf16 cache
            k, v = np.repeat(k, group, 1), np.repeat(to_bf16(v), group, 1)
            s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(self.head_dim)
            s = np.where(causal, s, -np.inf)
            probs = np.exp(s - s.max(-1, keepdims=True))
            probs = r(probs / probs.sum(-1, keepdims=True))
            o = r(np.einsum("hqk,khd->qhd", probs, v).reshape(t, -1))
            x = r(x + self.linear(o, p + "self_attn.o_proj"))
            h = r(rms_norm(x, self.w[p + "post_attention_layernorm.weight"], self.eps))
            gate, up = r(self.linear(h, p + "mlp.gate_proj")), r(self.linear(h, p + "mlp.up_proj"))
            x = r(x + self.linear(r(silu(gate) * up), p + "mlp.down_proj"))
        return r(r(rms_norm(x, self.w["model.norm.weight"], self.eps)) @ self.lm_head.T)


def dummy_model(rng, attention_bias):
    """The shape of cuda_model_runner_test's SmallConfig, with MakeDummyWeights' distributions."""
    h, inter, vocab, layers, heads, kv_heads, hd = 256, 340, 509, 3, 4, 2, 64
    config = {"hidden_size": h, "intermediate_size": inter, "vocab_size": vocab,
              "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "head_dim": hd, "rms_norm_eps": 1e-5}

    def uniform(shape, fan_in):
        return rng.uniform(-1, 1, shape) * math.sqrt(3 / fan_in)

    def norm():
        return 1 + rng.uniform(-0.05, 0.05, h)

    t = {"model.embed_tokens.weight": uniform((vocab, h), h),
         "lm_head.weight": uniform((vocab, h), h), "model.norm.weight": norm()}
    for layer in range(layers):
        p = f"model.layers.{layer}."
        t[p + "input_layernorm.weight"], t[p + "post_attention_layernorm.weight"] = norm(), norm()
        for name, rows in (("q", heads * hd), ("k", kv_heads * hd), ("v", kv_heads * hd)):
            t[p + f"self_attn.{name}_proj.weight"] = uniform((rows, h), h)
            if attention_bias:
                t[p + f"self_attn.{name}_proj.bias"] = uniform((rows,), 1) * 0.02
        t[p + "self_attn.o_proj.weight"] = uniform((h, heads * hd), heads * hd)
        t[p + "mlp.gate_proj.weight"] = uniform((inter, h), h)
        t[p + "mlp.up_proj.weight"] = uniform((inter, h), h)
        t[p + "mlp.down_proj.weight"] = uniform((h, inter), inter)
    return config, t


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", nargs="?")
    parser.add_argument("--dummy", action="store_true")
    parser.add_argument("--attention-bias", action="store_true")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--abs-tolerance", type=float, default=0.15)
    parser.add_argument("--rel-tolerance", type=float, default=0.02)
    args = parser.parse_args()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        if args.dummy:
            config, tensors = dummy_model(rng, args.attention_bias)
        else:
            with open(os.path.join(args.model_dir, "config.json")) as f:
                config = json.load(f)
            tensors = load_weights(args.model_dir)
        tokens = rng.integers(0, config["vocab_size"], args.tokens)
        cpu = RoundedForward(config, tensors, round_activations=False).forward(tokens)
        gpu = RoundedForward(config, tensors, round_activations=True).forward(tokens)
        diff = np.abs(gpu - cpu)
        margin = (args.abs_tolerance + args.rel_tolerance * np.abs(cpu)) - diff
        print(json.dumps({"seed": seed, "max_abs_diff": round(float(diff.max()), 4),
                          "max_abs_logit": round(float(np.abs(cpu).max()), 2),
                          "smallest_tolerance_margin": round(float(margin.min()), 4),
                          "greedy_agreement": float((gpu.argmax(-1) == cpu.argmax(-1)).mean())}))


if __name__ == "__main__":
    main()
