//! Deterministic random rows for tests: no `rand` dependency, the same data on every run.

use half::{bf16, f16};

use crate::DType;
use crate::quant::{dequantize_row, row_bytes};

/// SplitMix64: tiny, good enough to make test data.
/// Every type the kernels compute with as a weight (quantized, then plain).
pub const WEIGHT_TYPES: [DType; 13] = [
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q2K,
    DType::Q3K,
    DType::Q4K,
    DType::Q5K,
    DType::Q6K,
    DType::F32,
    DType::F16,
    DType::BF16,
];

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// Activation-like values: mostly in ±1, with an occasional outlier.
    pub fn activations(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| if self.unit() < 0.01 { self.range(-8.0, 8.0) } else { self.range(-1.0, 1.0) })
            .collect()
    }
}

/// Byte offsets of the f16 scale fields (`d`, and `m`/`dmin` where present) inside one block.
pub fn f16_fields(dtype: DType) -> &'static [usize] {
    use DType::*;
    match dtype {
        Q4_0 | Q5_0 | Q8_0 => &[0],
        Q4_1 | Q5_1 | Q4K | Q5K => &[0, 2],
        Q2K => &[80, 82],
        Q3K => &[108],
        Q6K => &[208],
        _ => &[],
    }
}

/// A random weight row of `n` elements: random quant bytes, with the f16 scales set to finite values of
/// a realistic size (random sign) so results are neither huge nor NaN.
pub fn random_weight_row(dtype: DType, n: usize, rng: &mut Rng) -> Vec<u8> {
    match dtype {
        DType::F32 => rng.activations(n).iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => rng.activations(n).iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        DType::BF16 => rng.activations(n).iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        _ => {
            let ts = dtype.type_size();
            let mut row = rng.bytes(row_bytes(dtype, n).expect("whole blocks"));
            for block in row.chunks_exact_mut(ts) {
                for (i, &off) in f16_fields(dtype).iter().enumerate() {
                    // d: ±[1e-3, 2e-2]; mins: ±[1e-4, 2e-3].
                    let mag = if i == 0 { rng.range(1e-3, 2e-2) } else { rng.range(1e-4, 2e-3) };
                    let v = if rng.unit() < 0.5 { -mag } else { mag };
                    block[off..off + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
                }
            }
            row
        }
    }
}

/// Dequantizes a whole row (test helper; panics on bad input).
pub fn dequant(dtype: DType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0; n];
    dequantize_row(dtype, bytes, &mut out).expect("dequantize");
    out
}

/// `Σ|w_i·a_i|` in f64: the scale against which float-summation differences are judged.
pub fn abs_dot(w: &[f32], a: &[f32]) -> f64 {
    w.iter().zip(a).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum()
}

/// `Σ w_i·a_i` in f64.
pub fn dot64(w: &[f32], a: &[f32]) -> f64 {
    w.iter().zip(a).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The tolerance for two computations of one dot product that differ only in the order of their float
/// operations. With exact integer block sums, each computes `Σ_b s_b·I_b` over `blocks` blocks plus a
/// few lane reductions; reordering a sum of `k` terms moves it by at most about `k·ε·Σ|terms|`.
/// We allow `k = blocks + 16` (lanes, min terms) with a factor 4 of slack, and take `Σ|w_i·a_i|`
/// (times 2, since a min term can be as large as the value it corrects) for `Σ|terms|`.
pub fn reorder_tolerance(blocks: usize, abs_sum: f64) -> f64 {
    4.0 * (blocks as f64 + 16.0) * f32::EPSILON as f64 * 2.0 * abs_sum + 1e-30
}
