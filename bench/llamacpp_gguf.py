#!/usr/bin/python3
"""Writes a GGUF of random bf16 weights in the shape of one of Pagoda's dummy presets, for
running llama.cpp's llama-server beside `pagodad --model dummy:<preset>` (docs/benchmarks.md,
"Against llama.cpp").

    /usr/bin/python3 bench/llamacpp_gguf.py --gguf-py LLAMA_CPP_SOURCE/gguf-py \\
        --preset llama-110m --out /tmp/llama-110m-bf16.gguf

The values differ from Pagoda's dummy draw (both are random; neither engine's speed depends
on them: no sparsity, generation forced to its full length); the shapes, dtype (bf16 matrices,
f32 norms), tied embeddings and vocabulary size are the same. The vocabulary is a placeholder
SentencePiece one (<unk>, <s>, </s>, the 256 byte pieces, then numbered pieces): the benchmark
sends token ids. Needs NumPy and the gguf package of a llama.cpp source tree (--gguf-py).
"""

import argparse
import sys

# (hidden, intermediate, layers, heads, kv heads, vocab, context, tied embeddings, rope theta)
PRESETS = {
    "llama-110m": (768, 2048, 12, 12, 12, 32000, 1024, True, 10000.0),
    "tinyllama-1.1b": (2048, 5632, 22, 32, 4, 32000, 2048, False, 10000.0),
}


def bf16_bytes(np, rng, shape):
    """Normal(0, 0.02) values rounded to bf16, as the raw bytes GGUF stores."""
    values = (rng.standard_normal(shape, dtype=np.float32) * 0.02).view(np.uint32)
    rounded = ((values + 0x7FFF + ((values >> 16) & 1)) >> 16).astype(np.uint16)
    return rounded.view(np.uint8)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gguf-py", required=True, help="llama.cpp's gguf-py directory")
    p.add_argument("--preset", choices=sorted(PRESETS), default="llama-110m")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sys.path.insert(0, args.gguf_py)
    import gguf
    import numpy as np

    hidden, inter, layers, heads, kv_heads, vocab, context, tied, theta = PRESETS[args.preset]
    head_dim = hidden // heads
    rng = np.random.default_rng(args.seed)
    w = gguf.GGUFWriter(args.out, "llama")
    w.add_name(f"random {args.preset}")
    w.add_context_length(context)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(inter)
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(theta)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(vocab - len(tokens))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (vocab - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * vocab)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    bf16 = gguf.GGMLQuantizationType.BF16
    ones = np.ones(hidden, dtype=np.float32)
    w.add_tensor("token_embd.weight", bf16_bytes(np, rng, (vocab, hidden)), raw_dtype=bf16)
    w.add_tensor("output_norm.weight", ones)
    if not tied:
        w.add_tensor("output.weight", bf16_bytes(np, rng, (vocab, hidden)), raw_dtype=bf16)
    kv_dim = kv_heads * head_dim
    for i in range(layers):
        blk = f"blk.{i}."
        w.add_tensor(blk + "attn_norm.weight", ones)
        w.add_tensor(blk + "attn_q.weight", bf16_bytes(np, rng, (hidden, hidden)), raw_dtype=bf16)
        w.add_tensor(blk + "attn_k.weight", bf16_bytes(np, rng, (kv_dim, hidden)), raw_dtype=bf16)
        w.add_tensor(blk + "attn_v.weight", bf16_bytes(np, rng, (kv_dim, hidden)), raw_dtype=bf16)
        w.add_tensor(blk + "attn_output.weight", bf16_bytes(np, rng, (hidden, hidden)),
                     raw_dtype=bf16)
        w.add_tensor(blk + "ffn_norm.weight", ones)
        w.add_tensor(blk + "ffn_gate.weight", bf16_bytes(np, rng, (inter, hidden)), raw_dtype=bf16)
        w.add_tensor(blk + "ffn_up.weight", bf16_bytes(np, rng, (inter, hidden)), raw_dtype=bf16)
        w.add_tensor(blk + "ffn_down.weight", bf16_bytes(np, rng, (hidden, inter)), raw_dtype=bf16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
