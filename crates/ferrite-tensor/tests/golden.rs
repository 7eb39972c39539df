//! Golden tests: our dequantization and activation quantization against an independent reference.
//!
//! The fixtures in `tests/fixtures/` come from `scripts/reference/quant_fixtures.py`, which runs gguf-py
//! (llama.cpp's own Python library) on deterministic random blocks; see that script for the record
//! format. Dequantization performs the same float operations in the same order as the reference, so
//! it must match bit for bit; so must the encodings.

use std::path::{Path, PathBuf};

use ferrite_tensor::DType;
use ferrite_tensor::quant::{self, BlockQ8K, BlockQ8_0, dequantize_row, quantize_row};

struct Record {
    kind: u32,
    dtype: DType,
    n: usize,
    bytes: Vec<u8>,
    floats: Vec<f32>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(name: &str) -> Record {
    let path = fixtures().join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&data[..4], b"FQFX", "{name}: bad magic");
    let u = |i: usize| u32::from_le_bytes(data[4 + 4 * i..8 + 4 * i].try_into().unwrap());
    assert_eq!(u(0), 1, "{name}: unknown version");
    let (kind, id, n, nbytes) = (u(1), u(2), u(3) as usize, u(4) as usize);
    let dtype = DType::from_id(id).unwrap_or_else(|| panic!("{name}: unknown type id {id}"));
    let body = &data[24..];
    assert_eq!(body.len(), nbytes + 4 * n, "{name}: truncated");
    let (bytes, floats) = if kind == 0 { (&body[..nbytes], &body[nbytes..]) } else { (&body[4 * n..], &body[..4 * n]) };
    let floats = floats.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    Record { kind, dtype, n, bytes: bytes.to_vec(), floats }
}

/// Distance in units in the last place (0 = identical bits; ±0 count as equal).
fn ulps(a: f32, b: f32) -> u32 {
    if a == b {
        return 0;
    }
    let key = |x: f32| {
        let i = x.to_bits() as i32;
        if i < 0 { i32::MIN - i } else { i }
    };
    key(a).abs_diff(key(b))
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    let names = [
        "dequant_q4_0.bin",
        "dequant_q4_1.bin",
        "dequant_q5_0.bin",
        "dequant_q5_1.bin",
        "dequant_q8_0.bin",
        "dequant_q2_k.bin",
        "dequant_q3_k.bin",
        "dequant_q4_k.bin",
        "dequant_q5_k.bin",
        "dequant_q6_k.bin",
        "dequant_f16.bin",
        "dequant_bf16.bin",
    ];
    for name in names {
        let r = read(name);
        assert_eq!(r.kind, 0, "{name}");
        let mut got = vec![f32::NAN; r.n];
        dequantize_row(r.dtype, &r.bytes, &mut got).unwrap();
        for (i, (&g, &w)) in got.iter().zip(&r.floats).enumerate() {
            assert!(ulps(g, w) == 0, "{name}: element {i} (block {}): got {g:e}, gguf-py {w:e}", i / r.dtype.block_size());
        }
        // Row by row too: rows of one block and of the rest must decode the same.
        let bs = r.dtype.block_size();
        let ts = r.dtype.type_size();
        let mut one = vec![0.0; bs];
        dequantize_row(r.dtype, &r.bytes[ts..2 * ts], &mut one).unwrap();
        assert_eq!(one, got[bs..2 * bs], "{name}: second block alone");
    }
}

#[test]
fn quantize_matches_reference_bit_for_bit() {
    // Q8_0, F16, BF16 from gguf-py; Q8_1, Q8_K from the script's port of ggml's reference quantizers.
    for name in ["quant_q8_0.bin", "quant_q8_1.bin", "quant_q8_k.bin", "quant_f16.bin", "quant_bf16.bin"] {
        let r = read(name);
        assert_eq!(r.kind, 1, "{name}");
        let mut got = vec![0u8; r.bytes.len()];
        quantize_row(r.dtype, &r.floats, &mut got).unwrap();
        let ts = r.dtype.type_size();
        for (b, (g, w)) in got.chunks(ts).zip(r.bytes.chunks(ts)).enumerate() {
            assert_eq!(g, w, "{name}: block {b} differs (kernels: {})", quant::kernel_tier());
        }
    }
}

/// The public path above runs the best kernels; run the scalar references on the same fixtures too.
#[test]
fn scalar_quantizers_match_reference_bit_for_bit() {
    let r = read("quant_q8_0.bin");
    let mut blocks = vec![bytemuck::Zeroable::zeroed(); r.n / 32];
    quant::scalar::quantize_q8_0(&r.floats, &mut blocks);
    assert_eq!(bytemuck::cast_slice::<BlockQ8_0, u8>(&blocks), &r.bytes[..], "scalar Q8_0");

    let r = read("quant_q8_k.bin");
    let mut blocks = vec![bytemuck::Zeroable::zeroed(); r.n / 256];
    quant::scalar::quantize_q8_k(&r.floats, &mut blocks);
    assert_eq!(bytemuck::cast_slice::<BlockQ8K, u8>(&blocks), &r.bytes[..], "scalar Q8_K");
}
