#!/usr/bin/env python3
"""Golden fixtures for ferrite-tensor's quantized formats, made with an independent reference.

The reference is gguf-py, llama.cpp's own Python library (its numpy (de)quantizers mirror
ggml-quants.c). For each weight format we write deterministic random blocks and gguf-py's
dequantization of them; for F16 and BF16 activations we write inputs and gguf-py's encoding. For Q8_0 and
Q8_1 this script carries a numpy port of ggml's x86 quantizers, and for Q8_K of quantize_row_q8_K_ref (which
x86 uses too), marked below.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install gguf==0.19.0
    /tmp/venv/bin/python scripts/reference/quant_fixtures.py

Output: crates/ferrite-tensor/tests/fixtures/{dequant,quant}_<type>.bin, one record per file,
little-endian:

    magic b"FQFX" | u32 version = 1 | u32 kind (0 = dequantize, 1 = quantize) | u32 ggml type id
    | u32 n_elements | u32 n_bytes
    kind 0: n_bytes of encoded data, then n_elements f32 (the reference's decoding)
    kind 1: n_elements f32 input, then n_bytes (the reference's encoding)

The data are a pure function of SEED, so rerunning reproduces the files byte for byte.
"""

import importlib.metadata
import pathlib
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

SEED = 20240601
VERSION = 1
OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "ferrite-tensor" / "tests" / "fixtures"

# type -> (elements per block, bytes per block, byte offsets of the f16 scale fields (d first))
LAYOUT = {
    T.Q4_0: (32, 18, [0]),
    T.Q4_1: (32, 20, [0, 2]),
    T.Q5_0: (32, 22, [0]),
    T.Q5_1: (32, 24, [0, 2]),
    T.Q8_0: (32, 34, [0]),
    T.Q2_K: (256, 84, [80, 82]),
    T.Q3_K: (256, 110, [108]),
    T.Q4_K: (256, 144, [0, 2]),
    T.Q5_K: (256, 176, [0, 2]),
    T.Q6_K: (256, 210, [208]),
}


def record(kind: int, qtype: T, n: int, first: bytes, second: bytes) -> bytes:
    head = b"FQFX" + struct.pack("<5I", VERSION, kind, int(qtype), n, len(first if kind == 0 else second))
    return head + first + second


def write(name: str, data: bytes) -> None:
    path = OUT / name
    path.write_bytes(data)
    print(f"{path.relative_to(OUT.parents[3])}: {len(data)} bytes")


def random_blocks(rng: np.random.Generator, qtype: T, n_blocks: int) -> np.ndarray:
    """Random quant bytes; f16 scales finite and of realistic size, plus a few edge values."""
    _, size, f16_offsets = LAYOUT[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for i, off in enumerate(f16_offsets):
        lo, hi = (1e-3, 2e-2) if i == 0 else (1e-4, 2e-3)
        mag = np.exp(rng.uniform(np.log(lo), np.log(hi), size=n_blocks))
        vals = (mag * rng.choice([-1.0, 1.0], size=n_blocks)).astype(np.float16)
        # Edge values in the first blocks: zero, a larger scale, an f16 subnormal.
        vals[0] = 0.0
        vals[1] = 3.5
        vals[2] = np.float16(3e-6)  # subnormal in f16
        blocks[:, off : off + 2] = vals.view(np.uint8).reshape(n_blocks, 2)
    return blocks


def dequant_fixtures(rng: np.random.Generator) -> None:
    for qtype, (bs, _, _) in LAYOUT.items():
        n_blocks = 24 if bs == 32 else 6
        blocks = random_blocks(rng, qtype, n_blocks)
        data = blocks.reshape(-1)
        values = dequantize(data, qtype).astype("<f4")
        assert values.shape == (n_blocks * bs,)
        write(f"dequant_{qtype.name.lower()}.bin", record(0, qtype, values.size, data.tobytes(), values.tobytes()))

    # F16 and BF16: random finite bit patterns (normals, subnormals, zeros of both signs).
    for qtype, exp_mask in ((T.F16, 0x7C00), (T.BF16, 0x7F80)):
        bits = rng.integers(0, 1 << 16, size=512, dtype=np.uint16)
        bits = bits[(bits & exp_mask) != exp_mask][:384]
        bits[:4] = [0x0000, 0x8000, 0x0001, 0x8001]
        data = bits.astype("<u2").view(np.uint8)
        values = dequantize(data, qtype).astype("<f4")
        write(f"dequant_{qtype.name.lower()}.bin", record(0, qtype, values.size, data.tobytes(), values.tobytes()))


def activation_inputs(rng: np.random.Generator) -> np.ndarray:
    """2048 floats (8 blocks of 256) covering the quantizers' corner cases."""
    x = rng.standard_normal((8, 256)).astype(np.float32)
    x[0] *= 0.01
    # Exact halves with amax = 127 (scale 1): ties round to even.
    x[1] = (np.arange(256) % 64 - 31.5).astype(np.float32)
    x[1, 0], x[1, 40] = -127.0, 127.0
    # Largest magnitude with both signs: Q8_K takes the sign of the first.
    x[2, 3], x[2, 200] = 5.0, -5.0
    x[3] = 0.0  # an all-zero block
    x[4, 32:64] = 0.0  # a zero 32-block in a non-zero 256-block
    x[5] *= 1e3
    x[6] *= 1e-6
    x[7, :8] = [1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1.0 + 2.0**-11, 65504.0, 70000.0, -0.0, 2.0**-24, 2.0**-25]
    return x.reshape(-1)


# --- numpy port of ggml's reference quantizers (ggml-quants.c); gguf-py has none for these two. ---


# Q8_0 and Q8_1 follow ggml's x86 quantizers (ggml-cpu/arch/x86/quants.c), the ones llama.cpp runs on our
# machines, rather than the portable reference: `id = 127/amax` (not 1/d) and round half to even
# (_mm256_round_ps with _MM_ROUND_NEAREST). The difference shows on ties and in the last bit of id, and it is
# visible in llama.cpp's logits on models with large activations (SmolLM2), so Ferrite mirrors it.


def q8_x86(x: np.ndarray, with_sum: bool) -> bytes:
    out = bytearray()
    for b in x.reshape(-1, 32):
        amax = np.float32(np.max(np.abs(b)))
        d = np.float32(amax / np.float32(127))
        inv = np.float32(127) / amax if amax != 0 else np.float32(0)
        q = np.rint((b * inv).astype(np.float32)).astype(np.int8)  # ties to even
        out += np.float16(d).tobytes()
        if with_sum:
            out += np.float16(np.float32(d * np.float32(int(q.astype(np.int32).sum())))).tobytes()
        out += q.tobytes()
    return bytes(out)


def q8_k_ref(x: np.ndarray) -> bytes:
    out = bytearray()
    for b in x.reshape(-1, 256):
        a = np.abs(b)
        amax = a.max()
        if amax == 0:
            out += bytes(292)
            continue
        mx = b[int(np.argmax(a))]  # argmax returns the first occurrence, as ggml's strict `>` scan
        iscale = np.float32(np.float32(-127) / mx)
        q = np.minimum(np.rint(iscale * b), 127).astype(np.int8)  # nearest_int: ties to even
        bsums = q.astype(np.int16).reshape(16, 16).sum(axis=1).astype("<i2")
        d = np.float32(np.float32(1) / iscale)
        out += np.array([d], dtype="<f4").tobytes() + q.tobytes() + bsums.tobytes()
    return bytes(out)


def quant_fixtures(rng: np.random.Generator) -> None:
    x = activation_inputs(rng)
    xb = x.astype("<f4").tobytes()
    encoded = {
        T.Q8_0: q8_x86(x, with_sum=False),  # port above
        T.F16: quantize(x, T.F16).astype("<f2").tobytes(),  # gguf-py (numpy's round-to-nearest-even)
        T.BF16: quantize(x, T.BF16).tobytes(),  # gguf-py
        T.Q8_1: q8_x86(x, with_sum=True),  # port above
        T.Q8_K: q8_k_ref(x),  # port above
    }
    for qtype, enc in encoded.items():
        write(f"quant_{qtype.name.lower()}.bin", record(1, qtype, x.size, xb, enc))


def main() -> int:
    version = importlib.metadata.version("gguf")
    if version != "0.19.0":
        print(f"warning: made with gguf 0.19.0, found {version}", file=sys.stderr)
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    with np.errstate(over="ignore"):
        dequant_fixtures(rng)
        quant_fixtures(rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
