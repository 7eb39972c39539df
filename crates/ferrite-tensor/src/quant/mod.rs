//! Quantized formats and the kernels that compute with them.
//!
//! A weight row in a quantized format is multiplied with an activation row quantized to a *paired*
//! format ([`vec_dot_type`]): `Q8_0` for `Q4_0`/`Q5_0`/`Q8_0`, `Q8_1` for `Q4_1`/`Q5_1`, `Q8_K` for the
//! K-quants, and the weight's own type for `F32`/`F16`/`BF16`. Both are integers with per-block scales,
//! so the inner loop is an integer dot product per block and one float multiply-add per block — the
//! same scheme, and the same pairing, as ggml, so results track llama.cpp's.
//!
//! - [`blocks`]: the block layouts (`BlockQ4_0` … `BlockQ8K`).
//! - [`dequantize_row`], [`quantize_row`], [`vec_dot`]: the public entry points, on byte slices.
//! - [`scalar`]: reference kernels; [`avx2`]: SIMD kernels (x86-64). The kernel set is chosen once, at
//!   run time, from the CPU's features ([`kernel_tier`]); `FERRITE_KERNELS=scalar` forces the scalar
//!   set (`avx2` allows at most AVX2).
//!
//! ```
//! use ferrite_tensor::DType;
//! use ferrite_tensor::quant::{quantize_row, vec_dot, vec_dot_type};
//!
//! // A Q8_0 weight row of 32 elements, all 1.0, made by quantizing.
//! let mut w = vec![0u8; DType::Q8_0.type_size()];
//! quantize_row(DType::Q8_0, &[1.0; 32], &mut w).unwrap();
//!
//! // Activations go to the paired format, then the dot product runs on the integer blocks.
//! let act = vec_dot_type(DType::Q8_0);
//! let mut x = vec![0u8; act.type_size()];
//! quantize_row(act, &[0.5; 32], &mut x).unwrap();
//! let dot = vec_dot(DType::Q8_0, &w, &x, 32);
//! assert!((dot - 16.0).abs() < 1e-2);
//! ```

use std::sync::OnceLock;

use crate::{DType, TensorError};

pub mod accumulate;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
pub mod blocks;
mod dequant;
pub mod interleaved;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub mod vnni;

#[cfg(test)]
mod tests;

pub use accumulate::{Accumulation, accumulation};
use blocks::*;
pub use blocks::{
    BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_0x16, BlockQ4_1, BlockQ4K, BlockQ4Kx16, BlockQ5_0, BlockQ5_0x16, BlockQ5_1, BlockQ5K, BlockQ6K,
    BlockQ6Kx16, BlockQ8_0, BlockQ8_0x16, BlockQ8_1, BlockQ8K, INTERLEAVED_ROWS, WideQ5_0x16,
};

/// The activation format a row of `weight` is multiplied with (ggml's `vec_dot_type`).
///
/// Types without kernels map to themselves; [`vec_dot`] rejects them.
pub fn vec_dot_type(weight: DType) -> DType {
    use DType::*;
    match weight {
        Q4_0 | Q5_0 | Q8_0 => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2K | Q3K | Q4K | Q5K | Q6K => Q8K,
        other => other,
    }
}

/// Bytes of a row of `n` elements of `dtype`, or an error if `n` is not a whole number of blocks.
pub fn row_bytes(dtype: DType, n: usize) -> Result<usize, TensorError> {
    let block = dtype.block_size();
    if !n.is_multiple_of(block) {
        return Err(TensorError::NotBlockMultiple { dtype, n, block });
    }
    (n / block).checked_mul(dtype.type_size()).ok_or(TensorError::Overflow { what: "row" })
}

fn check_len(what: &'static str, unit: &'static str, expected: usize, got: usize) -> Result<(), TensorError> {
    if expected == got { Ok(()) } else { Err(TensorError::Length { what, unit, expected, got }) }
}

/// Decodes one row of `dst.len()` elements of `dtype` from `src` (exactly that row's bytes).
///
/// Supports `F32`, `F16`, `BF16`, the ten weight formats `Q4_0` … `Q6_K`, and the activation formats
/// `Q8_1` and `Q8_K`. Arithmetic matches ggml's reference dequantizers bit for bit.
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<(), TensorError> {
    use DType::*;
    let n = dst.len();
    check_len("dequantize_row source", "bytes", row_bytes(dtype, n)?, src.len())?;
    match dtype {
        F32 => dequant::f32_row(src, dst),
        F16 => dequant::f16_row(src, dst),
        BF16 => dequant::bf16_row(src, dst),
        Q4_0 => dequant::q4_0(as_blocks(src), dst),
        Q4_1 => dequant::q4_1(as_blocks(src), dst),
        Q5_0 => dequant::q5_0(as_blocks(src), dst),
        Q5_1 => dequant::q5_1(as_blocks(src), dst),
        Q8_0 => dequant::q8_0(as_blocks(src), dst),
        Q8_1 => dequant::q8_1(as_blocks(src), dst),
        Q2K => dequant::q2k(as_blocks(src), dst),
        Q3K => dequant::q3k(as_blocks(src), dst),
        Q4K => dequant::q4k(as_blocks(src), dst),
        Q5K => dequant::q5k(as_blocks(src), dst),
        Q6K => dequant::q6k(as_blocks(src), dst),
        Q8K => dequant::q8k(as_blocks(src), dst),
        _ => return Err(TensorError::Unsupported { op: "dequantize_row", dtype }),
    }
    Ok(())
}

/// Encodes `x` as one row of `dtype` into `dst` (exactly that row's bytes).
///
/// Supports the activation formats: `Q8_0`, `Q8_1`, `Q8_K`, `F16`, `BF16`, `F32`, with the arithmetic
/// of ggml's reference quantizers (`quantize_row_*_ref`): `Q8_0`/`Q8_1` round half away from zero,
/// `Q8_K` rounds half to even and scales by the signed maximum.
pub fn quantize_row(dtype: DType, x: &[f32], dst: &mut [u8]) -> Result<(), TensorError> {
    check_len("quantize_row destination", "bytes", row_bytes(dtype, x.len())?, dst.len())?;
    match dtype {
        DType::Q8_0 | DType::Q8_1 | DType::Q8K | DType::F16 | DType::BF16 | DType::F32 => {}
        _ => return Err(TensorError::Unsupported { op: "quantize_row", dtype }),
    }
    quantize_unchecked(kernels(), dtype, x, dst);
    Ok(())
}

/// [`quantize_row`] after its checks: `dtype` is an activation format and `dst` has the row's size.
pub(crate) fn quantize_unchecked(k: &Kernels, dtype: DType, x: &[f32], dst: &mut [u8]) {
    // SAFETY: `k` only holds SIMD kernels the CPU supports (see `select`); lengths were checked.
    unsafe {
        match dtype {
            DType::Q8_0 => (k.quantize_q8_0)(x, as_blocks_mut(dst)),
            DType::Q8_1 => scalar::quantize_q8_1(x, as_blocks_mut(dst)),
            DType::Q8K => (k.quantize_q8_k)(x, as_blocks_mut(dst)),
            DType::F16 => scalar::quantize_f16(x, dst),
            DType::BF16 => scalar::quantize_bf16(x, dst),
            DType::F32 => scalar::quantize_f32(x, dst),
            _ => debug_assert!(false, "quantize_unchecked: {dtype}"),
        }
    }
}

/// Dot product of one weight row (`n` elements of `weight`) with one activation row already quantized to
/// [`vec_dot_type`]`(weight)`, with the best kernel this CPU has.
///
/// Returns NaN when the type has no kernel or a length does not match (so the mistake shows in every
/// result downstream); [`try_vec_dot`] reports those as errors instead.
pub fn vec_dot(weight: DType, w_row: &[u8], x_row: &[u8], n: usize) -> f32 {
    try_vec_dot(weight, w_row, x_row, n).unwrap_or(f32::NAN)
}

/// [`vec_dot`], with bad input reported as an error.
pub fn try_vec_dot(weight: DType, w_row: &[u8], x_row: &[u8], n: usize) -> Result<f32, TensorError> {
    if !weight.is_supported() {
        return Err(TensorError::Unsupported { op: "vec_dot", dtype: weight });
    }
    check_len("vec_dot weight row", "bytes", row_bytes(weight, n)?, w_row.len())?;
    check_len("vec_dot activation row", "bytes", row_bytes(vec_dot_type(weight), n)?, x_row.len())?;
    Ok(dot_unchecked(kernels(), weight, w_row, x_row, n))
}

/// [`try_vec_dot`] accumulated in the given order (see [`accumulate`]). Orders a type does not have
/// (anything but `Lanes` outside `Q4_K`/`Q5_K`/`Q6_K`, `Rows` outside `Q4_0`/`Q4_K`, `RowsBy64` outside
/// `Q4_K`) fall back to `Lanes`.
pub fn try_dot_in(order: Accumulation, weight: DType, w_row: &[u8], x_row: &[u8], n: usize) -> Result<f32, TensorError> {
    try_vec_dot(weight, w_row, x_row, n)?;
    Ok(dot_in_unchecked(kernels(), order, weight, w_row, x_row, n))
}

/// [`try_dot_in`] after its checks.
#[inline]
pub(crate) fn dot_in_unchecked(k: &Kernels, order: Accumulation, weight: DType, w: &[u8], x: &[u8], n: usize) -> f32 {
    use Accumulation::*;
    use DType::*;
    // SAFETY: as in `dot_unchecked`.
    unsafe {
        match (order, weight) {
            (Rows, Q4K) => (k.q4k_rows)(as_blocks(w), as_blocks(x)),
            (Rows, Q4_0) => (k.q4_0_rows)(as_blocks(w), as_blocks(x)),
            (RowsBy64, Q4K) => (k.q4k_rows_by_64)(as_blocks(w), as_blocks(x)),
            (Tiled, Q4K) => (k.q4k_tiled)(as_blocks(w), as_blocks(x)),
            (Tiled, Q5K) => (k.q5k_tiled)(as_blocks(w), as_blocks(x)),
            (Tiled, Q6K) => (k.q6k_tiled)(as_blocks(w), as_blocks(x)),
            _ => dot_unchecked(k, weight, w, x, n),
        }
    }
}

/// Whether [`dot4_unchecked`] has a kernel for `weight` in `order`.
pub(crate) fn has_dot4(order: Accumulation, weight: DType) -> bool {
    use DType::*;
    matches!(
        (order, weight),
        (Accumulation::RowsBy64 | Accumulation::Rows, Q4K)
            | (Accumulation::Tiled | Accumulation::Lanes, Q6K)
            | (Accumulation::Lanes, Q4_0 | Q4_1 | Q5_0 | Q8_0)
    )
}

/// Four outputs of one weight row against four activation rows, bit-identical to four
/// [`dot_in_unchecked`] calls in `order` (the weight is unpacked once). Only where [`has_dot4`].
#[inline]
pub(crate) fn dot4_unchecked(k: &Kernels, order: Accumulation, weight: DType, w: &[u8], x: [&[u8]; 4]) -> [f32; 4] {
    use DType::*;
    // SAFETY: as in `dot_unchecked`.
    unsafe {
        match (order, weight) {
            (Accumulation::RowsBy64, Q4K) => (k.q4k_rows_by_64_x4)(as_blocks(w), x.map(as_blocks)),
            (Accumulation::Tiled, Q6K) => (k.q6k_tiled_x4)(as_blocks(w), x.map(as_blocks)),
            (Accumulation::Rows, Q4K) => (k.q4k_rows_x4)(as_blocks(w), x.map(as_blocks)),
            (Accumulation::Lanes, Q6K) => (k.q6k_x4)(as_blocks(w), x.map(as_blocks)),
            (Accumulation::Lanes, Q4_0) => (k.q4_0_x4)(as_blocks(w), x.map(as_blocks)),
            (Accumulation::Lanes, Q4_1) => (k.q4_1_x4)(as_blocks(w), x.map(as_blocks)),
            (Accumulation::Lanes, Q5_0) => (k.q5_0_x4)(as_blocks(w), x.map(as_blocks)),
            (Accumulation::Lanes, Q8_0) => (k.q8_0_x4)(as_blocks(w), x.map(as_blocks)),
            _ => {
                debug_assert!(false, "dot4_unchecked: {weight} {order:?}");
                [f32::NAN; 4]
            }
        }
    }
}

/// Four weight rows × four activation rows (`out[row][token]`), bit-identical to sixteen
/// [`dot_in_unchecked`] calls in the `Lanes` order; `None` where the kernel set has no such kernel.
#[inline]
pub(crate) fn dot4x4_unchecked(k: &Kernels, order: Accumulation, weight: DType, w: [&[u8]; 4], x: [&[u8]; 4]) -> Option<[[f32; 4]; 4]> {
    use DType::*;
    if order != Accumulation::Lanes {
        return None;
    }
    // SAFETY: as in `dot_unchecked`; the caller passes rows of one matrix and of one activation matrix.
    unsafe {
        match weight {
            Q4_0 => k.q4_0_4x4.map(|f| f(w.map(as_blocks), x.map(as_blocks))),
            Q5_0 => k.q5_0_4x4.map(|f| f(w.map(as_blocks), x.map(as_blocks))),
            Q8_0 => k.q8_0_4x4.map(|f| f(w.map(as_blocks), x.map(as_blocks))),
            _ => None,
        }
    }
}

/// Whether [`dot4x4_unchecked`] has a kernel (so a caller can group rows in fours).
pub(crate) fn has_dot4x4(k: &Kernels, order: Accumulation, weight: DType) -> bool {
    use DType::*;
    order == Accumulation::Lanes
        && match weight {
            Q4_0 => k.q4_0_4x4.is_some(),
            Q5_0 => k.q5_0_4x4.is_some(),
            Q8_0 => k.q8_0_4x4.is_some(),
            _ => false,
        }
}

/// Eight outputs of one weight row against eight `Q8_0` activation rows whose block scales are also
/// given as f32 (`xd[t][b]`, see [`widen_scales`]), bit-identical to eight [`dot_in_unchecked`] calls in
/// the `Lanes` order; `None` where the kernel set has no such kernel.
#[inline]
pub(crate) fn dot8_unchecked(
    k: &Kernels,
    order: Accumulation,
    weight: DType,
    w: &[u8],
    x: [&[u8]; 8],
    xd: [&[f32]; 8],
) -> Option<[f32; 8]> {
    use DType::*;
    if order != Accumulation::Lanes {
        return None;
    }
    // SAFETY: as in `dot_unchecked`; the kernels check that the activation rows are long enough.
    unsafe {
        match weight {
            Q4_0 => k.q4_0_x8.map(|f| f(as_blocks(w), x.map(as_blocks), xd)),
            Q5_0 => k.q5_0_x8.map(|f| f(as_blocks(w), x.map(as_blocks), xd)),
            Q8_0 => k.q8_0_x8.map(|f| f(as_blocks(w), x.map(as_blocks), xd)),
            _ => None,
        }
    }
}

/// Whether [`dot8_unchecked`] has a kernel (so a caller can take tokens in eights).
pub(crate) fn has_dot8(k: &Kernels, order: Accumulation, weight: DType) -> bool {
    use DType::*;
    order == Accumulation::Lanes
        && match weight {
            Q4_0 => k.q4_0_x8.is_some(),
            Q5_0 => k.q5_0_x8.is_some(),
            Q8_0 => k.q8_0_x8.is_some(),
            _ => false,
        }
}

/// The f32 scales of `Q8_0` activation rows (`bytes`, whole blocks), block by block, for [`dot8_unchecked`].
pub(crate) fn widen_scales(bytes: &[u8], out: &mut Vec<f32>) {
    out.clear();
    out.extend(as_blocks::<BlockQ8_0>(bytes).iter().map(|b| { b.d }.to_f32()));
}

/// Two weight rows against one activation row (`out[row]`), bit-identical to two [`dot_in_unchecked`]
/// calls in `order`; `None` where the kernel set has no such kernel. Pass rows far apart: two
/// interleaved streams inside the same pages defeat the hardware prefetcher, two sequential ones not.
#[inline]
pub(crate) fn dot_r2_unchecked(k: &Kernels, order: Accumulation, weight: DType, w: [&[u8]; 2], x: &[u8]) -> Option<[f32; 2]> {
    use Accumulation::*;
    use DType::*;
    // SAFETY: as in `dot_unchecked`; the caller passes rows of one matrix, each as long as `x`.
    unsafe {
        match (order, weight) {
            (Rows, Q4K) => k.q4k_rows_r2.map(|f| f(w.map(as_blocks), as_blocks(x))),
            (Lanes, Q6K) => k.q6k_r2.map(|f| f(w.map(as_blocks), as_blocks(x))),
            (Lanes, Q4_0) => k.q4_0_r2.map(|f| f(w.map(as_blocks), as_blocks(x))),
            (Lanes, Q5_0) => k.q5_0_r2.map(|f| f(w.map(as_blocks), as_blocks(x))),
            (Lanes, Q8_0) => k.q8_0_r2.map(|f| f(w.map(as_blocks), as_blocks(x))),
            _ => None,
        }
    }
}

/// Whether [`dot_r2_unchecked`] has a kernel (so a caller can pair rows).
pub(crate) fn has_dot_r2(k: &Kernels, order: Accumulation, weight: DType) -> bool {
    use Accumulation::*;
    use DType::*;
    match (order, weight) {
        (Rows, Q4K) => k.q4k_rows_r2.is_some(),
        (Lanes, Q6K) => k.q6k_r2.is_some(),
        (Lanes, Q4_0) => k.q4_0_r2.is_some(),
        (Lanes, Q5_0) => k.q5_0_r2.is_some(),
        (Lanes, Q8_0) => k.q8_0_r2.is_some(),
        _ => false,
    }
}

/// Whether the kernel set has an interleaved kernel for `weight` (so a matrix may be repacked for it).
pub(crate) fn has_interleaved(k: &Kernels, weight: DType) -> bool {
    match weight {
        DType::Q4_0 => k.q4_0x16.is_some(),
        DType::Q4K => k.q4kx16.is_some(),
        DType::Q5_0 => k.q5_0x16.is_some(),
        DType::Q8_0 => k.q8_0x16.is_some(),
        DType::Q6K => k.q6kx16.is_some(),
        _ => false,
    }
}

/// [`vec_dot`] after its checks: `weight` is supported and both rows have exactly `n` elements' bytes.
#[inline]
pub(crate) fn dot_unchecked(k: &Kernels, weight: DType, w: &[u8], x: &[u8], n: usize) -> f32 {
    use DType::*;
    // SAFETY: `k` only holds SIMD kernels the CPU supports (see `select`); lengths were checked, and
    // `as_blocks` views whole blocks only.
    unsafe {
        match weight {
            Q4_0 => (k.q4_0)(as_blocks(w), as_blocks(x)),
            Q4_1 => (k.q4_1)(as_blocks(w), as_blocks(x)),
            Q5_0 => (k.q5_0)(as_blocks(w), as_blocks(x)),
            Q5_1 => (k.q5_1)(as_blocks(w), as_blocks(x)),
            Q8_0 => (k.q8_0)(as_blocks(w), as_blocks(x)),
            Q2K => (k.q2k)(as_blocks(w), as_blocks(x)),
            Q3K => (k.q3k)(as_blocks(w), as_blocks(x)),
            Q4K => (k.q4k)(as_blocks(w), as_blocks(x)),
            Q5K => (k.q5k)(as_blocks(w), as_blocks(x)),
            Q6K => (k.q6k)(as_blocks(w), as_blocks(x)),
            F32 => (k.f32)(w, x, n),
            F16 => (k.f16)(w, x, n),
            BF16 => (k.bf16)(w, x, n),
            _ => {
                debug_assert!(false, "dot_unchecked: {weight}");
                f32::NAN
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Run-time kernel selection.

type Dot<W, A> = unsafe fn(&[W], &[A]) -> f32;
type Dot4<W, A> = unsafe fn(&[W], [&[A]; 4]) -> [f32; 4];
type DotR2<W, A> = Option<unsafe fn([&[W]; 2], &[A]) -> [f32; 2]>;
type Dot4x4<W, A> = Option<unsafe fn([&[W]; 4], [&[A]; 4]) -> [[f32; 4]; 4]>;
type Dot8<W> = Option<unsafe fn(&[W], [&[BlockQ8_0]; 8], [&[f32]; 8]) -> [f32; 8]>;
type DotPlain = unsafe fn(&[u8], &[u8], usize) -> f32;
type Quant<B> = unsafe fn(&[f32], &mut [B]);
/// Sixteen interleaved rows against a range of activation rows (see [`interleaved`]), fetching the
/// bytes of the last argument into cache meanwhile (the weights the caller computes next).
pub(crate) type DotX16<W> = Option<unsafe fn(&[W], &interleaved::QuantizedRows, std::ops::Range<usize>, &mut [[f32; 16]], &[u8])>;
/// The same for `Q4_K`, in `RowsBy64` order (`true`) or `Rows`.
pub(crate) type DotX16K<W> = Option<unsafe fn(&[W], &interleaved::QuantizedRowsK, std::ops::Range<usize>, bool, &mut [[f32; 16]], &[u8])>;
/// The same for `Q6_K` (activation rows of `blocks` super-blocks each), in `Tiled` order (`true`) or
/// `vec_dot`'s lanes.
pub(crate) type DotX16Q6K = Option<unsafe fn(&[BlockQ6Kx16], &[BlockQ8K], usize, std::ops::Range<usize>, bool, &mut [[f32; 16]], &[u8])>;
/// The same for the formats that keep `vec_dot`'s lanes (see [`interleaved::LanesX16`]).
pub(crate) type DotLanesX16<W> = Option<LanesFn<W>>;
pub(crate) type LanesFn<W> = unsafe fn(&[W], &interleaved::QuantizedLanes, std::ops::Range<usize>, &mut [[f32; 16]], &[u8]);
/// [`interleaved::widen_q5_0x16_avx2`].
pub(crate) type WidenQ5_0x16 = unsafe fn(&[BlockQ5_0x16], &mut Vec<WideQ5_0x16>);

/// One complete set of kernels. Function pointers are `unsafe fn` because the SIMD ones may only be
/// called on a CPU with their features; a `Kernels` is only ever built for the CPU it runs on.
pub(crate) struct Kernels {
    tier: &'static str,
    q4_0: Dot<BlockQ4_0, BlockQ8_0>,
    q4_1: Dot<BlockQ4_1, BlockQ8_1>,
    q5_0: Dot<BlockQ5_0, BlockQ8_0>,
    q5_1: Dot<BlockQ5_1, BlockQ8_1>,
    q8_0: Dot<BlockQ8_0, BlockQ8_0>,
    q2k: Dot<BlockQ2K, BlockQ8K>,
    q3k: Dot<BlockQ3K, BlockQ8K>,
    q4k: Dot<BlockQ4K, BlockQ8K>,
    q5k: Dot<BlockQ5K, BlockQ8K>,
    q6k: Dot<BlockQ6K, BlockQ8K>,
    q4k_rows: Dot<BlockQ4K, BlockQ8K>,
    q4_0_rows: Dot<BlockQ4_0, BlockQ8_0>,
    pub(crate) q4_0x16: DotX16<BlockQ4_0x16>,
    pub(crate) q4kx16: DotX16K<BlockQ4Kx16>,
    pub(crate) q5_0x16: DotLanesX16<BlockQ5_0x16>,
    pub(crate) q8_0x16: DotLanesX16<BlockQ8_0x16>,
    /// `Q5_0` widened for many tokens: the widening and the kernel over its blocks.
    pub(crate) q5_0x16_wide: Option<(WidenQ5_0x16, LanesFn<WideQ5_0x16>)>,
    pub(crate) q6kx16: DotX16Q6K,
    q4k_rows_by_64: Dot<BlockQ4K, BlockQ8K>,
    q4k_rows_by_64_x4: Dot4<BlockQ4K, BlockQ8K>,
    q6k_tiled_x4: Dot4<BlockQ6K, BlockQ8K>,
    q4k_rows_x4: Dot4<BlockQ4K, BlockQ8K>,
    q6k_x4: Dot4<BlockQ6K, BlockQ8K>,
    q4_0_x4: Dot4<BlockQ4_0, BlockQ8_0>,
    q4_1_x4: Dot4<BlockQ4_1, BlockQ8_1>,
    q5_0_x4: Dot4<BlockQ5_0, BlockQ8_0>,
    q8_0_x4: Dot4<BlockQ8_0, BlockQ8_0>,
    q4k_rows_r2: DotR2<BlockQ4K, BlockQ8K>,
    q6k_r2: DotR2<BlockQ6K, BlockQ8K>,
    q4_0_r2: DotR2<BlockQ4_0, BlockQ8_0>,
    q5_0_r2: DotR2<BlockQ5_0, BlockQ8_0>,
    q8_0_r2: DotR2<BlockQ8_0, BlockQ8_0>,
    q4_0_4x4: Dot4x4<BlockQ4_0, BlockQ8_0>,
    q5_0_4x4: Dot4x4<BlockQ5_0, BlockQ8_0>,
    q8_0_4x4: Dot4x4<BlockQ8_0, BlockQ8_0>,
    q4_0_x8: Dot8<BlockQ4_0>,
    q5_0_x8: Dot8<BlockQ5_0>,
    q8_0_x8: Dot8<BlockQ8_0>,
    q4k_tiled: Dot<BlockQ4K, BlockQ8K>,
    q5k_tiled: Dot<BlockQ5K, BlockQ8K>,
    q6k_tiled: Dot<BlockQ6K, BlockQ8K>,
    f32: DotPlain,
    f16: DotPlain,
    bf16: DotPlain,
    quantize_q8_0: Quant<BlockQ8_0>,
    quantize_q8_k: Quant<BlockQ8K>,
}

static SCALAR: Kernels = Kernels {
    tier: "scalar",
    q4_0: scalar::vec_dot_q4_0_q8_0,
    q4_1: scalar::vec_dot_q4_1_q8_1,
    q5_0: scalar::vec_dot_q5_0_q8_0,
    q5_1: scalar::vec_dot_q5_1_q8_1,
    q8_0: scalar::vec_dot_q8_0_q8_0,
    q2k: scalar::vec_dot_q2k_q8k,
    q3k: scalar::vec_dot_q3k_q8k,
    q4k: scalar::vec_dot_q4k_q8k,
    q5k: scalar::vec_dot_q5k_q8k,
    q6k: scalar::vec_dot_q6k_q8k,
    q4k_rows: scalar::dot_q4k_q8k_rows,
    q4_0_rows: scalar::dot_q4_0_q8_0_rows,
    q4_0x16: None,
    q4kx16: None,
    q5_0x16: None,
    q8_0x16: None,
    q5_0x16_wide: None,
    q6kx16: None,
    q4k_rows_by_64: scalar::dot_q4k_q8k_rows_by_64,
    q4k_rows_by_64_x4: scalar::dot_q4k_q8k_rows_by_64_x4,
    q6k_tiled_x4: scalar::dot_q6k_q8k_tiled_x4,
    q4k_rows_x4: scalar::dot_q4k_q8k_rows_x4,
    q6k_x4: scalar::vec_dot_q6k_q8k_x4,
    q4_0_x4: scalar::vec_dot_q4_0_q8_0_x4,
    q4_1_x4: scalar::vec_dot_q4_1_q8_1_x4,
    q5_0_x4: scalar::vec_dot_q5_0_q8_0_x4,
    q8_0_x4: scalar::vec_dot_q8_0_q8_0_x4,
    q4k_rows_r2: None,
    q6k_r2: None,
    q4_0_r2: None,
    q5_0_r2: None,
    q8_0_r2: None,
    q4_0_4x4: None,
    q5_0_4x4: None,
    q8_0_4x4: None,
    q4_0_x8: None,
    q5_0_x8: None,
    q8_0_x8: None,
    q4k_tiled: scalar::dot_q4k_q8k_tiled,
    q5k_tiled: scalar::dot_q5k_q8k_tiled,
    q6k_tiled: scalar::dot_q6k_q8k_tiled,
    f32: scalar::vec_dot_f32,
    f16: scalar::vec_dot_f16,
    bf16: scalar::vec_dot_bf16,
    quantize_q8_0: scalar::quantize_q8_0,
    quantize_q8_k: scalar::quantize_q8_k,
};

#[cfg(target_arch = "x86_64")]
static AVX2: Kernels = Kernels {
    tier: "avx2",
    q4_0: avx2::vec_dot_q4_0_q8_0,
    q4_1: avx2::vec_dot_q4_1_q8_1,
    q5_0: avx2::vec_dot_q5_0_q8_0,
    q5_1: avx2::vec_dot_q5_1_q8_1,
    q8_0: avx2::vec_dot_q8_0_q8_0,
    q2k: avx2::vec_dot_q2k_q8k,
    q3k: avx2::vec_dot_q3k_q8k,
    q4k: avx2::vec_dot_q4k_q8k,
    q5k: avx2::vec_dot_q5k_q8k,
    q6k: avx2::vec_dot_q6k_q8k,
    q4k_rows: avx2::dot_q4k_q8k_rows,
    q4_0_rows: avx2::dot_q4_0_q8_0_rows,
    q4_0x16: None,
    q4kx16: None,
    q5_0x16: Some(interleaved::dot_q5_0x16_avx2),
    q8_0x16: None,
    q5_0x16_wide: Some((interleaved::widen_q5_0x16_avx2, interleaved::dot_wide_q5_0x16_avx2)),
    q6kx16: None,
    q4k_rows_by_64: avx2::dot_q4k_q8k_rows_by_64,
    q4k_rows_by_64_x4: avx2::dot_q4k_q8k_rows_by_64_x4,
    q6k_tiled_x4: avx2::dot_q6k_q8k_tiled_x4,
    q4k_rows_x4: avx2::dot_q4k_q8k_rows_x4,
    q6k_x4: avx2::vec_dot_q6k_q8k_x4,
    q4_0_x4: avx2::vec_dot_q4_0_q8_0_x4,
    q4_1_x4: avx2::vec_dot_q4_1_q8_1_x4,
    q5_0_x4: avx2::vec_dot_q5_0_q8_0_x4,
    q8_0_x4: avx2::vec_dot_q8_0_q8_0_x4,
    q4k_rows_r2: Some(avx2::dot_q4k_q8k_rows_r2),
    q6k_r2: Some(avx2::vec_dot_q6k_q8k_r2),
    q4_0_r2: None,
    q5_0_r2: None,
    q8_0_r2: None,
    q4_0_4x4: None,
    q5_0_4x4: None,
    q8_0_4x4: None,
    q4_0_x8: Some(avx2::vec_dot_q4_0_q8_0_x8),
    q5_0_x8: Some(avx2::vec_dot_q5_0_q8_0_x8),
    q8_0_x8: Some(avx2::vec_dot_q8_0_q8_0_x8),
    q4k_tiled: avx2::dot_q4k_q8k_tiled,
    q5k_tiled: avx2::dot_q5k_q8k_tiled,
    q6k_tiled: avx2::dot_q6k_q8k_tiled,
    f32: avx2::vec_dot_f32,
    f16: avx2::vec_dot_f16,
    bf16: avx2::vec_dot_bf16,
    quantize_q8_0: avx2::quantize_q8_0,
    quantize_q8_k: avx2::quantize_q8_k,
};

/// The AVX2 set with the 32-element block formats' dot products on AVX-512 VNNI, and the four-token
/// K-quant kernels with AVX-512's 32 registers (same bits).
#[cfg(target_arch = "x86_64")]
static AVX512VNNI: Kernels = Kernels {
    tier: "avx512vnni",
    q4_0: vnni::vec_dot_q4_0_q8_0,
    q4_1: vnni::vec_dot_q4_1_q8_1,
    q5_0: vnni::vec_dot_q5_0_q8_0,
    q8_0: vnni::vec_dot_q8_0_q8_0,
    q4k_rows_by_64_x4: vnni::dot_q4k_q8k_rows_by_64_x4,
    q4k_rows_r2: Some(vnni::dot_q4k_q8k_rows_r2),
    q6k_r2: Some(vnni::vec_dot_q6k_q8k_r2),
    q4k_rows_x4: vnni::dot_q4k_q8k_rows_x4,
    q6k_tiled_x4: vnni::dot_q6k_q8k_tiled_x4,
    q6k_x4: vnni::vec_dot_q6k_q8k_x4,
    q4_0_x4: vnni::vec_dot_q4_0_q8_0_x4,
    q4_1_x4: vnni::vec_dot_q4_1_q8_1_x4,
    q5_0_x4: vnni::vec_dot_q5_0_q8_0_x4,
    q8_0_x4: vnni::vec_dot_q8_0_q8_0_x4,
    q4_0_r2: Some(vnni::vec_dot_q4_0_q8_0_r2),
    q5_0_r2: Some(vnni::vec_dot_q5_0_q8_0_r2),
    q8_0_r2: Some(vnni::vec_dot_q8_0_q8_0_r2),
    q4_0_4x4: Some(vnni::vec_dot_q4_0_q8_0_4x4),
    q4_0x16: Some(interleaved::dot_q4_0x16_q8_0),
    q4kx16: Some(interleaved::dot_q4kx16_q8k),
    q5_0x16: Some(interleaved::dot_lanes_x16::<BlockQ5_0x16>),
    q8_0x16: Some(interleaved::dot_lanes_x16::<BlockQ8_0x16>),
    q5_0x16_wide: None,
    q6kx16: Some(interleaved::dot_q6kx16_q8k),
    q5_0_4x4: Some(vnni::vec_dot_q5_0_q8_0_4x4),
    q8_0_4x4: Some(vnni::vec_dot_q8_0_q8_0_4x4),
    ..AVX2
};

/// Kernel tiers, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    Scalar,
    Avx2,
    Avx512Vnni,
}

/// Whether this CPU can run the [`avx2`] kernels (AVX2, FMA and F16C).
pub fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The tier to use: the best the CPU has, capped by `FERRITE_KERNELS` (`scalar`, `avx2` or
/// `avx512vnni`; any other value leaves the choice to the CPU).
fn select(cap: Option<&str>, cpu_best: Tier) -> Tier {
    let cap = match cap.map(str::trim).map(str::to_ascii_lowercase).as_deref() {
        Some("scalar") => Tier::Scalar,
        Some("avx2") => Tier::Avx2,
        _ => Tier::Avx512Vnni,
    };
    cap.min(cpu_best)
}

pub(crate) fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<&'static Kernels> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let cpu_best = if vnni::available() {
            Tier::Avx512Vnni
        } else if avx2_available() {
            Tier::Avx2
        } else {
            Tier::Scalar
        };
        #[cfg(not(target_arch = "x86_64"))]
        let cpu_best = Tier::Scalar;
        let cap = std::env::var("FERRITE_KERNELS").ok();
        match select(cap.as_deref(), cpu_best) {
            Tier::Scalar => &SCALAR,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => &AVX2,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512Vnni => &AVX512VNNI,
            #[cfg(not(target_arch = "x86_64"))]
            Tier::Avx2 | Tier::Avx512Vnni => &SCALAR,
        }
    })
}

/// The kernel set in use: `"scalar"`, `"avx2"` or `"avx512vnni"`. Chosen on first use and fixed for the process.
pub fn kernel_tier() -> &'static str {
    kernels().tier
}

#[cfg(test)]
mod select_tests {
    use super::*;

    #[test]
    fn env_caps_but_never_raises_the_tier() {
        assert_eq!(select(None, Tier::Avx2), Tier::Avx2);
        assert_eq!(select(Some("scalar"), Tier::Avx2), Tier::Scalar);
        assert_eq!(select(Some(" AVX2 "), Tier::Avx2), Tier::Avx2);
        assert_eq!(select(Some("avx2"), Tier::Scalar), Tier::Scalar);
        assert_eq!(select(Some("avx512"), Tier::Avx2), Tier::Avx2);
        assert_eq!(select(None, Tier::Avx512Vnni), Tier::Avx512Vnni);
        assert_eq!(select(Some("avx2"), Tier::Avx512Vnni), Tier::Avx2);
        assert_eq!(select(None, Tier::Scalar), Tier::Scalar);
    }
}
