//! The order in which a K-quant dot product adds up its super-blocks.
//!
//! Every kernel computes the same exact integer sums per 256-element super-block; two correct kernels
//! differ only in how they accumulate the float products of those sums with the block scales. That last
//! bit, carried through two dozen layers, is enough to flip a greedy choice, so Ferrite accumulates the
//! way ggml's x86 CPU backend (AVX2 and up: what llama.cpp runs on our machines) does, in each of the
//! three orders it uses, and chooses between them as it does ([`accumulation`]):
//!
//! - [`Accumulation::Lanes`] — ggml's `vec_dot`: each super-block's integer sums spread over 8 lanes,
//!   each lane multiply-added into its own f32 with `d_w·d_a`, the 8 summed at the end (the `vec_dot_*`
//!   kernels of [`scalar`](super::scalar) and [`avx2`](super::avx2)).
//! - [`Accumulation::Rows`] — ggml's interleaved `Q4_K` matrix × vector kernel
//!   (`ggml_gemv_q4_K_8x8_q8_K`; ggml repacks every `Q4_K` matrix whose row count is a multiple of 8):
//!   one f32 per output, `acc = fma(isum, d_w·d_a, acc)` and `acc_min = fma(imin, dmin_w·d_a, acc_min)`
//!   per super-block, `acc − acc_min` at the end.
//!   ggml repacks `Q4_0` matrices with a multiple of 8 rows too (`ggml_gemv/gemm_q4_0_8x8_q8_0`), and
//!   accumulates them the same way per 32-element block, without a min, for any number of tokens.
//! - [`Accumulation::RowsBy64`] — its matrix × matrix twin (`ggml_gemm_q4_K_8x8_q8_K`, which takes the
//!   activation rows four at a time): the same, but per 64 elements (a pair of sub-blocks) instead of per
//!   super-block. A sequence of `t` tokens has its first `t − t mod 4` in groups of four, the rest alone.
//! - [`Accumulation::Tiled`] — ggml's tiled K-quant matmul (`ggml-cpu/tiled`, taken when a matmul has 8
//!   or more activation rows): per super-block `r = fma(−dmin_w, imin, isum·d_w)`, then
//!   `acc = fma(r, d_a, acc)`.
//!
//! Here `isum = Σ_j scale_j·Σ q_w·q_a` and `imin = Σ_j min_j·Σ q_a` over the super-block's sub-blocks,
//! `d_w`/`dmin_w` the weight block's scales and `d_a` the activation block's. The integer sums are exact
//! in every tier, so the scalar and SIMD versions of `Rows` and `Tiled` agree bit for bit.

use crate::DType;

/// How a dot product's per-super-block partial sums are accumulated (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulation {
    /// 8 f32 lanes per dot product, summed at the end (ggml's `vec_dot`).
    Lanes,
    /// One f32 per output, scales applied per super-block (ggml's interleaved `Q4_K` gemv), or per block
    /// (its interleaved `Q4_0` gemv and gemm).
    Rows,
    /// One f32 per output, scales applied per 64 elements (ggml's interleaved `Q4_K` gemm).
    RowsBy64,
    /// One f32 per output, weight scale first, activation scale fused (ggml's tiled K-quant matmul).
    Tiled,
}

/// The order ggml's x86 CPU backend uses for a `weight` matrix with `rows` output rows, for token `index`
/// of a sequence that contributes `tokens` activation rows to the product.
///
/// Deciding per sequence rather than per batch keeps every sequence's results independent of what it
/// is batched with. (ggml decides per `mul_mat`, which for llama.cpp's one-sequence runs is the same.)
/// `Q2_K` and `Q3_K`, which ggml also tiles, keep `Lanes` until a reference model needs them.
pub fn accumulation(weight: DType, rows: usize, tokens: usize, index: usize) -> Accumulation {
    debug_assert!(index < tokens);
    match weight {
        DType::Q4_0 if rows.is_multiple_of(8) => Accumulation::Rows,
        DType::Q4K if rows.is_multiple_of(8) && index < tokens - tokens % 4 => Accumulation::RowsBy64,
        DType::Q4K if rows.is_multiple_of(8) => Accumulation::Rows,
        DType::Q4K | DType::Q5K | DType::Q6K if tokens >= 8 => Accumulation::Tiled,
        _ => Accumulation::Lanes,
    }
}

/// One super-block's contribution (or, for [`Accumulation::RowsBy64`], one 64-element pair of
/// sub-blocks'): `(isum, imin, d_w, dmin_w, d_a)`.
pub(crate) type SuperBlock = (i32, i32, f32, f32, f32);

/// The float state of one output in [`Accumulation::Rows`] or [`Accumulation::RowsBy64`] order (the same
/// steps, fed per super-block or per pair of sub-blocks).
#[derive(Clone, Copy, Default)]
pub(crate) struct RowsAcc {
    acc: f32,
    acc_min: f32,
}

impl RowsAcc {
    #[inline(always)]
    pub fn add(&mut self, (isum, imin, d, dmin, da): SuperBlock) {
        self.acc = (isum as f32).mul_add(d * da, self.acc);
        self.acc_min = (imin as f32).mul_add(dmin * da, self.acc_min);
    }

    #[inline(always)]
    pub fn finish(self) -> f32 {
        self.acc - self.acc_min
    }
}

/// The float state of one output in [`Accumulation::Tiled`] order.
#[derive(Clone, Copy, Default)]
pub(crate) struct TiledAcc(f32);

impl TiledAcc {
    #[inline(always)]
    pub fn add(&mut self, (isum, imin, d, dmin, da): SuperBlock) {
        let r = (-dmin).mul_add(imin as f32, isum as f32 * d);
        self.0 = r.mul_add(da, self.0);
    }

    #[inline(always)]
    pub fn finish(self) -> f32 {
        self.0
    }
}

/// [`Accumulation::Rows`] over a row's super-blocks, or [`Accumulation::RowsBy64`] over its pairs.
#[inline(always)]
pub(crate) fn rows(blocks: impl Iterator<Item = SuperBlock>) -> f32 {
    let mut acc = RowsAcc::default();
    // A `for` loop, not `for_each`: the callers' closures must stay inlinable into their SIMD kernels.
    for b in blocks {
        acc.add(b);
    }
    acc.finish()
}

/// [`Accumulation::Tiled`] over a row's super-blocks.
#[inline(always)]
pub(crate) fn tiled(blocks: impl Iterator<Item = SuperBlock>) -> f32 {
    let mut acc = TiledAcc::default();
    for b in blocks {
        acc.add(b);
    }
    acc.finish()
}
