#!/usr/bin/env python3
"""Write a LLaMA-architecture GGUF with random weights and real shapes, for speed benchmarks only.

Default shape: TinyLlama-1.1B (dim 2048, 22 layers, 32 heads, 4 KV heads, ffn 5632, vocab 32000).
Usage: synth_gguf.py OUT.gguf TYPE   with TYPE one of f16, q8_0, q4_0, q4_k.

Weights are random but well-formed: block scales are small positive f16 values and quants are uniform
random, so every kernel does its full work and no value overflows. Norm weights are 1, the token
embedding and output head use the same type as the other matrices (as in a uniform quantization).
Needs numpy and gguf-py (the one vendored in the llama-cpp-python sdist: see scripts/build-llama-cpp.sh).
"""
import sys

import numpy as np
import gguf

DIM, LAYERS, HEADS, KV_HEADS, FFN, VOCAB = 2048, 22, 32, 4, 5632, 32000
Q = gguf.GGMLQuantizationType
TYPES = {"f16": Q.F16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_k": Q.Q4_K}

rng = np.random.default_rng(1234)


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8).reshape(-1, 2)


def matrix(rows, cols, qtype):
    """(rows, cols) weights as GGUF bytes: for quantized types a uint8 (rows, row_bytes) array."""
    if qtype == Q.F16:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    nb = rows * cols // block
    data = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
    if qtype in (Q.Q8_0, Q.Q4_0):
        data[:, 0:2] = f16_bytes(rng.uniform(1e-4, 2e-3, nb))  # d
    elif qtype == Q.Q4_K:
        data[:, 0:2] = f16_bytes(rng.uniform(1e-4, 2e-3, nb))  # d
        data[:, 2:4] = f16_bytes(rng.uniform(1e-4, 2e-3, nb))  # dmin
    return data.reshape(rows, cols // block * size)


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in TYPES:
        sys.exit(__doc__)
    out, qtype = sys.argv[1], TYPES[sys.argv[2]]
    w = gguf.GGUFWriter(out, "llama")
    w.add_name(f"synthetic TinyLlama-1.1B shape ({sys.argv[2]})")
    w.add_file_type({Q.F16: 1, Q.Q8_0: 7, Q.Q4_0: 2, Q.Q4_K: 15}[qtype])
    w.add_context_length(2048)
    w.add_embedding_length(DIM)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(DIM // HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(VOCAB)
    # A SentencePiece-style vocabulary: specials, the 256 byte tokens, then filler pieces.
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(VOCAB - len(tokens))]
    types = [2, 3, 3] + [6] * 256 + [1] * (VOCAB - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(VOCAB - 259)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)

    hd = DIM // HEADS
    ones = np.ones(DIM, dtype=np.float32)
    add = lambda name, t: w.add_tensor(name, t, raw_dtype=None if t.dtype != np.uint8 else qtype)
    add("token_embd.weight", matrix(VOCAB, DIM, qtype))
    for i in range(LAYERS):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", ones)
        add(p + "attn_q.weight", matrix(DIM, DIM, qtype))
        add(p + "attn_k.weight", matrix(KV_HEADS * hd, DIM, qtype))
        add(p + "attn_v.weight", matrix(KV_HEADS * hd, DIM, qtype))
        add(p + "attn_output.weight", matrix(DIM, DIM, qtype))
        add(p + "ffn_norm.weight", ones)
        add(p + "ffn_gate.weight", matrix(FFN, DIM, qtype))
        add(p + "ffn_up.weight", matrix(FFN, DIM, qtype))
        add(p + "ffn_down.weight", matrix(DIM, FFN, qtype))
        print(f"\rlayer {i + 1}/{LAYERS}", end="", file=sys.stderr)
    add("output_norm.weight", ones)
    add("output.weight", matrix(VOCAB, DIM, qtype))
    print(file=sys.stderr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()


if __name__ == "__main__":
    main()
