#!/usr/bin/python3
"""An independent NumPy reference of the Hugging Face Llama/Mistral/Qwen2 forward pass.

Reads only config.json and model.safetensors (or a sharded model.safetensors.index.json) from a
model directory; the safetensors parser is written here (struct + json + numpy), so nothing is
shared with Pagoda's C++ loader. Computes in float64 by default (--dtype float32 to mimic a
float32 engine). No KV cache: every step recomputes the whole sequence, which is fine for the
small test models this is meant for.

  /usr/bin/python3 tests/reference/llama_reference.py MODEL_DIR --tokens 1,403,407 --greedy 32
  /usr/bin/python3 tests/reference/llama_reference.py --self-test

Prints JSON: {"logits": [[vocab floats] per prompt position] (only the last with --last-only),
"greedy": [ids]}. See tests/reference/README.md for the conventions.
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np

# ---- safetensors ------------------------------------------------------------------------------

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16}


def read_safetensors(path):
    """Returns {name: float32/float64 ndarray} for one .safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len].decode("utf-8"))
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        if dtype not in _DTYPES:
            raise ValueError(f"{name}: unsupported dtype {dtype}")
        begin, end = info["data_offsets"]
        little_endian = np.dtype(_DTYPES[dtype]).newbyteorder("<")
        raw = np.frombuffer(data[base + begin:base + end], dtype=little_endian)
        if dtype == "BF16":
            # bfloat16 is the upper half of a float32.
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        as_float = raw.astype(np.float64 if dtype == "F64" else np.float32)
        tensors[name] = as_float.reshape(info["shape"])
    return tensors


def write_safetensors(path, tensors, dtype="F32"):
    """Writes {name: ndarray} in safetensors format (F32, F16 or BF16), names sorted."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if dtype == "F32":
            blob = a.astype("<f4").tobytes()
        elif dtype == "F16":
            blob = a.astype("<f2").tobytes()
        elif dtype == "BF16":  # truncation, enough for tests
            blob = (a.view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"format": "pt"}
    encoded = json.dumps(header).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


def load_weights(model_dir):
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    with open(os.path.join(model_dir, "model.safetensors.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    tensors = {}
    for shard in shards:
        tensors.update(read_safetensors(os.path.join(model_dir, shard)))
    return tensors


# ---- model ------------------------------------------------------------------------------------


def rope_inv_freq(config, head_dim):
    """Inverse frequencies [head_dim / 2] as HF's ROPE_INIT_FUNCTIONS compute them."""
    base = float(config.get("rope_theta", 10000.0))
    inv_freq = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    scaling = config.get("rope_scaling") or {}
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return inv_freq
    if rope_type == "linear":
        return inv_freq / float(scaling["factor"])
    if rope_type == "llama3":
        # transformers.modeling_rope_utils._compute_llama3_parameters, line by line.
        factor = float(scaling["factor"])
        low_freq_factor = float(scaling["low_freq_factor"])
        high_freq_factor = float(scaling["high_freq_factor"])
        old_context_len = float(scaling["original_max_position_embeddings"])
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = ((old_context_len / wavelen - low_freq_factor)
                         / (high_freq_factor - low_freq_factor))
        smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
        return np.where(is_medium, smoothed, inv_freq_llama)
    raise ValueError(f"unsupported rope_scaling type {rope_type}")


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def layer_windows(config):
    """Each layer's sliding window (0 = full attention), as transformers decides it: Mistral's
    `sliding_window` for every layer; Qwen2's only with `use_sliding_window`, for the layers from
    `max_window_layers` on (default 28); `layer_types` naming each layer when present."""
    num_layers = int(config["num_hidden_layers"])
    is_qwen2 = "Qwen2ForCausalLM" in config.get("architectures", [])
    window = config.get("sliding_window")
    if window is None or not config.get("use_sliding_window", not is_qwen2):
        return [0] * num_layers
    if config.get("layer_types") is not None:
        return [int(window) if t == "sliding_attention" else 0 for t in config["layer_types"]]
    if is_qwen2:
        first = int(config.get("max_window_layers", 28))
        return [int(window) if i >= first else 0 for i in range(num_layers)]
    return [int(window)] * num_layers


def rope(x, positions, inv_freq):
    """x [..., t, head_dim] rotated at `positions` [t] (rotate_half convention)."""
    freqs = np.outer(np.asarray(positions, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)
    return x * cos + rotate_half(x) * sin


class LlamaReference:
    def __init__(self, config, tensors, dtype=np.float64, streaming=None):
        self.config = config
        # StreamingLLM (sinks, window): every layer keeps the first `sinks` tokens and the last
        # `window`; positions are those in the cache, keys rotated per query (the paper's way).
        self.streaming = streaming
        self.windows = layer_windows(config)
        self.dtype = dtype
        self.w = {name: t.astype(dtype) for name, t in tensors.items()}
        self.hidden = int(config["hidden_size"])
        self.num_heads = int(config["num_attention_heads"])
        self.num_kv_heads = int(config.get("num_key_value_heads") or self.num_heads)
        self.head_dim = int(config.get("head_dim") or self.hidden // self.num_heads)
        self.num_layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("rms_norm_eps", 1e-6))
        self.inv_freq = rope_inv_freq(config, self.head_dim)
        if config.get("hidden_act", "silu") != "silu":
            raise ValueError("only silu MLPs are supported")
        if "lm_head.weight" in self.w:
            self.lm_head = self.w["lm_head.weight"]
        elif config.get("tie_word_embeddings", False):
            self.lm_head = self.w["model.embed_tokens.weight"]
        else:
            raise ValueError("no lm_head.weight and tie_word_embeddings is false")

    def linear(self, x, prefix):
        y = x @ self.w[prefix + ".weight"].T
        bias = self.w.get(prefix + ".bias")
        return y if bias is None else y + bias

    def attention(self, x, layer, cos, sin):
        p = f"model.layers.{layer}.self_attn."
        t = x.shape[0]
        q = self.linear(x, p + "q_proj").reshape(t, self.num_heads, self.head_dim)
        k = self.linear(x, p + "k_proj").reshape(t, self.num_kv_heads, self.head_dim)
        v = self.linear(x, p + "v_proj").reshape(t, self.num_kv_heads, self.head_dim)
        group = self.num_heads // self.num_kv_heads
        if self.streaming is not None:
            out = self.streaming_attention(q, np.repeat(k, group, axis=1),
                                           np.repeat(v, group, axis=1))
            return self.linear(out.reshape(t, -1).astype(self.dtype), p + "o_proj")
        q = q * cos[:, None, :] + rotate_half(q) * sin[:, None, :]
        k = k * cos[:, None, :] + rotate_half(k) * sin[:, None, :]
        k = np.repeat(k, group, axis=1)  # query head h reads kv head h // group
        v = np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(self.head_dim)
        visible = np.tril(np.ones((t, t), dtype=bool))
        if self.windows[layer] > 0:  # key j visible to query i when i - j < window
            visible &= np.triu(np.ones((t, t), dtype=bool), -(self.windows[layer] - 1))
        scores = np.where(visible[None], scores, -np.inf)
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out = np.einsum("hqk,khd->qhd", probs, v).reshape(t, self.num_heads * self.head_dim)
        return self.linear(out, p + "o_proj")

    def streaming_attention(self, q, k, v):
        """StreamingLLM on un-rotated q, k, v [t, heads, head_dim]: query i attends all of
        [0, i] while i < sinks + window, else the sinks [0, sinks) and [i - window + 1, i], with
        the sinks at positions 0..sinks-1, the window at sinks..sinks+window-1 and the query at
        the last of them."""
        sinks, window = self.streaming
        out = np.zeros_like(q, dtype=np.float64)
        for i in range(q.shape[0]):
            if i < sinks + window:
                keys = np.arange(i + 1)
                positions = keys
                q_pos = i
            else:
                keys = np.concatenate([np.arange(sinks), np.arange(i - window + 1, i + 1)])
                positions = np.arange(sinks + window)
                q_pos = sinks + window - 1
            kk = rope(k[keys].transpose(1, 0, 2), positions, self.inv_freq)  # [heads, n, d]
            qq = rope(q[i][:, None, :], [q_pos], self.inv_freq)  # [heads, 1, d]
            scores = (qq @ kk.transpose(0, 2, 1))[:, 0, :] / math.sqrt(self.head_dim)
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            out[i] = np.einsum("hk,khd->hd", probs, v[keys])
        return out

    def mlp(self, x, layer):
        p = f"model.layers.{layer}.mlp."
        return self.linear(silu(self.linear(x, p + "gate_proj")) * self.linear(x, p + "up_proj"),
                           p + "down_proj")

    def forward(self, tokens):
        """Logits [len(tokens), vocab] for positions 0..len-1."""
        tokens = np.asarray(tokens, dtype=np.int64)
        x = self.w["model.embed_tokens.weight"][tokens]
        freqs = np.outer(np.arange(len(tokens), dtype=np.float64), self.inv_freq)
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = np.cos(emb).astype(self.dtype), np.sin(emb).astype(self.dtype)
        for layer in range(self.num_layers):
            p = f"model.layers.{layer}."
            h = rms_norm(x, self.w[p + "input_layernorm.weight"], self.eps)
            x = x + self.attention(h, layer, cos, sin)
            h = rms_norm(x, self.w[p + "post_attention_layernorm.weight"], self.eps)
            x = x + self.mlp(h, layer)
        return rms_norm(x, self.w["model.norm.weight"], self.eps) @ self.lm_head.T

    def greedy(self, tokens, num_tokens, stop_ids=()):
        """Greedy continuation (argmax, lowest id on ties), stopping after a stop id."""
        seq, out = list(tokens), []
        for _ in range(num_tokens):
            next_id = int(np.argmax(self.forward(seq)[-1]))
            out.append(next_id)
            seq.append(next_id)
            if next_id in stop_ids:
                break
        return out


def load_model(model_dir, dtype=np.float64, streaming=None):
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    return LlamaReference(config, load_weights(model_dir), dtype, streaming)


# ---- self-test --------------------------------------------------------------------------------


def _random_model(rng, num_kv_heads, with_bias):
    config = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": num_kv_heads, "head_dim": 8,
              "vocab_size": 50, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "hidden_act": "silu", "tie_word_embeddings": True}
    h, d = 32, 8
    w = {"model.embed_tokens.weight": rng.standard_normal((50, h)),
         "model.norm.weight": 1 + 0.1 * rng.standard_normal(h)}
    for i in range(2):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(h)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(h)
        kv_rows = num_kv_heads * d
        for name, rows in (("q", 4 * d), ("k", kv_rows), ("v", kv_rows), ("o", h)):
            w[p + f"self_attn.{name}_proj.weight"] = rng.standard_normal((rows, h)) / math.sqrt(h)
            if with_bias and name != "o":
                w[p + f"self_attn.{name}_proj.bias"] = 0.1 * rng.standard_normal(rows)
        w[p + "mlp.gate_proj.weight"] = rng.standard_normal((48, h)) / math.sqrt(h)
        w[p + "mlp.up_proj.weight"] = rng.standard_normal((48, h)) / math.sqrt(h)
        w[p + "mlp.down_proj.weight"] = rng.standard_normal((h, 48)) / math.sqrt(48)
    return config, {k: v.astype(np.float32) for k, v in w.items()}


def _save(directory, config, tensors, dtype="F32"):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    write_safetensors(os.path.join(directory, "model.safetensors"), tensors, dtype)


def _expand_kv_heads(config, tensors):
    """The MHA model equal to a GQA one: each kv head's rows repeated for its query heads."""
    config = dict(config, num_key_value_heads=config["num_attention_heads"])
    group = config["num_attention_heads"] // 2
    out = dict(tensors)
    for name, t in tensors.items():
        if ".k_proj." in name or ".v_proj." in name:
            heads = t.reshape(2, 8, -1) if t.ndim == 2 else t.reshape(2, 8)
            out[name] = np.repeat(heads, group, axis=0).reshape(4 * 8, *t.shape[1:])
    return config, out


def self_test():
    rng = np.random.default_rng(0)
    failures = []

    def check(ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        config, tensors = _random_model(rng, num_kv_heads=2, with_bias=True)
        _save(os.path.join(tmp, "gqa"), config, tensors)
        gqa = load_model(os.path.join(tmp, "gqa"))
        loaded = read_safetensors(os.path.join(tmp, "gqa", "model.safetensors"))
        check(all(np.array_equal(loaded[k], v) for k, v in tensors.items()), "F32 round trip")

        tokens = [1, 7, 3, 42, 9, 11, 0, 5]
        logits = gqa.forward(tokens)
        changed = gqa.forward(tokens[:4] + [8, 30, 2, 49])
        check(np.allclose(logits[:4], changed[:4], rtol=0, atol=1e-12),
              "causal: earlier positions unchanged")
        check(not np.allclose(logits[4:], changed[4:]), "later positions do change")
        check(np.allclose(gqa.forward(tokens[:5])[-1], logits[4], rtol=0, atol=1e-12),
              "prefix forward equals full forward at the same position")

        mha_config, mha_tensors = _expand_kv_heads(config, tensors)
        _save(os.path.join(tmp, "mha"), mha_config, mha_tensors)
        mha = load_model(os.path.join(tmp, "mha"))
        diff = np.abs(mha.forward(tokens) - logits).max()
        check(diff < 1e-12, f"GQA equals MHA with repeated kv heads (max diff {diff:.2e})")

        untied = dict(tensors, **{"lm_head.weight": tensors["model.embed_tokens.weight"]})
        _save(os.path.join(tmp, "untied"), dict(config, tie_word_embeddings=False), untied)
        diff = np.abs(load_model(os.path.join(tmp, "untied")).forward(tokens) - logits).max()
        check(diff == 0, "explicit lm_head equal to tied embedding")

        for dtype, tol in (("F16", 1e-3), ("BF16", 1e-2)):
            _save(os.path.join(tmp, dtype), config, tensors, dtype)
            back = read_safetensors(os.path.join(tmp, dtype, "model.safetensors"))
            err = max(np.abs(back[k] - v).max() / (np.abs(v).max()) for k, v in tensors.items())
            check(err < tol, f"{dtype} weights read back (max relative error {err:.1e})")

        # A window as wide as the sequence is full attention; a narrower one changes only the
        # positions that lose keys.
        wide = LlamaReference(dict(config, sliding_window=len(tokens)), tensors)
        check(np.abs(wide.forward(tokens) - logits).max() < 1e-12, "window >= length is full")
        narrow = LlamaReference(dict(config, sliding_window=3), tensors).forward(tokens)
        check(np.abs(narrow[:3] - logits[:3]).max() < 1e-12
              and not np.allclose(narrow[3:], logits[3:]), "window 3 changes positions 3+ only")
        # StreamingLLM before any eviction is full attention; a window with no sinks and no
        # eviction yet too; the rotation is relative: shifting every position changes nothing.
        stream = LlamaReference(config, tensors, streaming=(2, len(tokens) - 2))
        check(np.abs(stream.forward(tokens) - logits).max() < 1e-9, "streaming before eviction")
        q = rng.standard_normal((3, 4, 8))
        check(np.allclose(np.sum(rope(q[:1], [5], np.ones(4)) * rope(q[1:2], [2], np.ones(4))),
                          np.sum(rope(q[:1], [13], np.ones(4)) * rope(q[1:2], [10], np.ones(4)))),
              "rope scores depend on the position difference only")

        # llama3 scaling keeps high frequencies, divides low ones by factor, smooths between.
        inv = rope_inv_freq({"rope_theta": 500000.0}, 128)
        scaled = rope_inv_freq({"rope_theta": 500000.0, "rope_scaling": {
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}}, 128)
        wavelen = 2 * math.pi / inv
        check(np.array_equal(scaled[wavelen < 2048], inv[wavelen < 2048])
              and np.allclose(scaled[wavelen > 8192], inv[wavelen > 8192] / 8)
              and np.all((scaled <= inv) & (scaled >= inv / 8)), "llama3 rope scaling bands")

    print("self-test " + ("passed" if not failures else f"FAILED ({len(failures)})"))
    return 0 if not failures else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", nargs="?")
    parser.add_argument("--tokens", help="comma-separated prompt token ids")
    parser.add_argument("--greedy", type=int, default=0, help="greedy continuation length")
    parser.add_argument("--stop-ids", default="", help="comma-separated ids that end --greedy")
    parser.add_argument("--last-only", action="store_true",
                        help="print only the last position's logits")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--sinks", type=int, default=0,
                        help="StreamingLLM: attention sinks (with --streaming-window)")
    parser.add_argument("--streaming-window", type=int, default=0,
                        help="StreamingLLM: recent tokens kept besides the sinks")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if not args.model_dir or not args.tokens:
        parser.error("MODEL_DIR and --tokens are required")
    tokens = [int(t) for t in args.tokens.split(",")]
    streaming = (args.sinks, args.streaming_window) if args.streaming_window > 0 else None
    model = load_model(args.model_dir, np.float64 if args.dtype == "float64" else np.float32,
                       streaming)
    logits = model.forward(tokens)
    if args.last_only:
        logits = logits[-1:]
    stop_ids = {int(t) for t in args.stop_ids.split(",") if t}
    result = {"logits": [[float(v) for v in row] for row in logits],
              "greedy": model.greedy(tokens, args.greedy, stop_ids)}
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
