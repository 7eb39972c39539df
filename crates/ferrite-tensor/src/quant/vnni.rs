//! AVX-512 VNNI (on 256-bit registers, with AVX512VL) versions of the 32-element block kernels, the
//! formats most of a Q4_K_M file's tensors use (Q4_0, Q4_1, Q5_0, Q8_0): `vpdpbusd` multiplies u8 by i8
//! and sums each four products in one instruction where AVX2 needs `vpmaddubsw` then `vpmaddwd`.
//!
//! Same bits as the [`super::avx2`] kernels: `vpmaddubsw` cannot saturate on these operands (the
//! unsigned side is at most 128 — `|q|` of a weight, or a 4- or 5-bit value — and activations stay
//! within ±127, so a pair sums to at most 2·128·127 < 32767), so every i32 lane is the same, and the
//! float steps are the AVX2 kernels' own helpers in the same order.

use core::arch::x86_64::*;

use super::accumulate::RowsAcc;
use super::avx2::{
    bits_to_bytes, f16_product, f16_x4, f16_x8, hsum_epi32, hsum_ps, hsum4_epi32, k_quant_multi_kernels, lanes_x4, load_i8x32, nibbles,
    q4k_lanes, q4k_min_lanes, q4k_pair_lanes, q4k_pair_sums_v, q4k_unpack, q6k_lanes, q6k_lanes_of, q6k_unpack, scaled_x8, transpose4,
};
use super::blocks::*;

/// Whether the CPU has AVX-512 VNNI with 256-bit forms (and the AVX2 set these kernels build on), and
/// AVX512BW for the 512-bit [`super::interleaved`] kernels.
pub fn available() -> bool {
    super::avx2_available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// Unsigned bytes × signed bytes, summed in groups of 4 into 8 × i32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
}

/// Signed × signed as `|x| · (y·sign(x))`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn dot_i8_i8(x: __m256i, y: __m256i) -> __m256i {
    dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn q4_0_weights(bx: &BlockQ4_0) -> __m256i {
    _mm256_sub_epi8(nibbles(&bx.qs), _mm256_set1_epi8(8))
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn q5_0_weights(bx: &BlockQ5_0) -> __m256i {
    let clear = _mm256_andnot_si256(bits_to_bytes(u32::from_le_bytes(bx.qh)), _mm256_set1_epi8(0xF0u8 as i8));
    _mm256_or_si256(nibbles(&bx.qs), clear)
}

/// One weight row against one activation row, a block at a time into 8 f32 lanes.
macro_rules! lanes {
    ($x:expr, $y:expr, |$bx:ident| $unpack:expr, $dot:ident) => {{
        let mut acc = _mm256_setzero_ps();
        for ($bx, by) in $x.iter().zip($y) {
            let d = _mm256_mul_ps(f16_x8($bx.d), f16_x8(by.d));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps($dot($unpack, load_i8x32(&by.qs))), acc);
        }
        acc
    }};
}

/// Four activation rows against one weight row: the AVX2 tier's order (its macro), reduced.
macro_rules! lanes_x4_sums {
    ($($args:tt)*) => {{
        let acc = lanes_x4!($($args)*);
        [hsum_ps(acc[0]), hsum_ps(acc[1]), hsum_ps(acc[2]), hsum_ps(acc[3])]
    }};
}

/// The 32 nibbles of a 16-byte array as bytes, low nibbles first: one broadcast load, a shift of the
/// upper copy, a mask (where [`nibbles`] needs a load, a shift, an insert and a mask).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn nibbles_u8(qs: &[u8; 16]) -> __m256i {
    // SAFETY: 16 readable bytes.
    let both = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(qs.as_ptr().cast()) });
    // A 64-bit shift carries the next byte's low nibble into each byte's top; the mask drops it.
    _mm256_and_si256(_mm256_srlv_epi64(both, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0F))
}

/// `−o·Σy` over each lane's four activations: the start of a `vpdpbusd` of weights stored unsigned as
/// `q + o` (`dpbusd(offset_lanes(o, y), q + o, y)` = `Σ q·y`, the same exact integers as the signed
/// products, without making either side signed first). One per activation block, shared by all rows.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn offset_lanes(o: u8, y: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, _mm256_set1_epi8(o as i8), y))
}

/// A `Q5_0` block's values unsigned, as stored (`q + 16`): the nibble with the fifth bit as bit 4.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn q5_0_unsigned(bx: &BlockQ5_0) -> __m256i {
    _mm256_or_si256(nibbles_u8(&bx.qs), _mm256_and_si256(bits_to_bytes(u32::from_le_bytes(bx.qh)), _mm256_set1_epi8(0x10)))
}

/// A `Q8_0` block's values unsigned as `q + 128`: `q` with its sign bit flipped.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn q8_0_unsigned(bx: &BlockQ8_0) -> __m256i {
    _mm256_xor_si256(load_i8x32(&bx.qs), _mm256_set1_epi8(0x80u8 as i8))
}

/// # Safety
/// Requires AVX2, FMA, F16C, AVX512F/VL/VNNI ([`available`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (bx, by) in x.iter().zip(y) {
        let d = _mm256_mul_ps(f16_x8(bx.d), f16_x8(by.d));
        let qy = load_i8x32(&by.qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(offset_lanes(8, qy), nibbles_u8(&bx.qs), qy)), acc);
    }
    hsum_ps(acc)
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let mut mins = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        mins += f16_product(bx.m, by.s);
    }
    hsum_ps(lanes!(x, y, |bx| nibbles(&bx.qs), dot_u8_i8)) + mins
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    hsum_ps(lanes!(x, y, |bx| q5_0_weights(bx), dot_i8_i8))
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    hsum_ps(lanes!(x, y, |bx| load_i8x32(&bx.qs), dot_i8_i8))
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q4_0_q8_0_x4(x: &[BlockQ4_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    lanes_x4_sums!(x, y, |bx| q4_0_weights(bx), dot_i8_i8)
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q4_1_q8_1_x4(x: &[BlockQ4_1], y: [&[BlockQ8_1]; 4]) -> [f32; 4] {
    let dots = lanes_x4_sums!(x, y, |bx| nibbles(&bx.qs), dot_u8_i8);
    let mut mins = [0.0f32; 4];
    for (b, bx) in x.iter().enumerate() {
        for t in 0..4 {
            mins[t] += f16_product(bx.m, y[t][b].s);
        }
    }
    [dots[0] + mins[0], dots[1] + mins[1], dots[2] + mins[2], dots[3] + mins[3]]
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q5_0_q8_0_x4(x: &[BlockQ5_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    lanes_x4_sums!(x, y, |bx| q5_0_weights(bx), dot_i8_i8)
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q8_0_q8_0_x4(x: &[BlockQ8_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    lanes_x4_sums!(x, y, |bx| load_i8x32(&bx.qs), dot_i8_i8)
}

// ---------------------------------------------------------------------------------------------------
// Four weight rows × four activation rows: sixteen 8-lane accumulators (AVX-512 has 32 registers), each
// weight block unpacked once for four tokens and each activation block loaded once for four rows, the
// four rows' scales multiplied by a token's scale in one instruction. Every (row, token) accumulator
// takes the single-row kernel's steps in its order, so the results are bit-identical to it.

/// Lane `r` of `v` in all 8 lanes.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn lane_x8<const R: i32>(v: __m128) -> __m256 {
    _mm256_broadcastss_ps(_mm_permute_ps::<R>(v))
}

// The weights enter `vpdpbusd` unsigned, as stored (`q + o`), with the accumulator started at
// [`offset_lanes`] (one per token and block, shared by the four rows): each lane ends at the exact
// integer of the signed kernels, for one instruction per row and token instead of three.
macro_rules! lanes_4x4 {
    ($x:expr, $y:expr, $o:expr, |$bx:ident| $unsigned:expr) => {{
        let mut acc = [[_mm256_setzero_ps(); 4]; 4];
        let nb = $x[0].len();
        // Every row has nb blocks: checked once here, so the loop indexes without bounds checks.
        let xr = [&$x[0][..nb], &$x[1][..nb], &$x[2][..nb], &$x[3][..nb]];
        let yr = [&$y[0][..nb], &$y[1][..nb], &$y[2][..nb], &$y[3][..nb]];
        for b in 0..nb {
            // Plain code, no closures: a closure would not inherit this function's target features, and
            // its calls to the helpers could not be inlined.
            let mut qx = [_mm256_setzero_si256(); 4];
            let mut packed = 0u64;
            for i in 0..4 {
                let $bx = &xr[i][b];
                qx[i] = $unsigned;
                // The four rows' scales as f32 (exact), from one 64-bit move.
                packed |= ($bx.d.to_bits() as u64) << (16 * i);
            }
            let wd = _mm_cvtph_ps(_mm_cvtsi64_si128(packed as i64));
            for t in 0..4 {
                let by = &yr[t][b];
                let qy = load_i8x32(&by.qs);
                let off = offset_lanes($o, qy);
                let d = _mm_mul_ps(wd, _mm_cvtph_ps(_mm_set1_epi16(by.d.to_bits() as i16)));
                let ds = [lane_x8::<0x00>(d), lane_x8::<0x55>(d), lane_x8::<0xAA>(d), lane_x8::<0xFF>(d)];
                for r in 0..4 {
                    acc[r][t] = _mm256_fmadd_ps(ds[r], _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(off, qx[r], qy)), acc[r][t]);
                }
            }
        }
        let mut out = [[0.0f32; 4]; 4];
        for r in 0..4 {
            for t in 0..4 {
                out[r][t] = hsum_ps(acc[r][t]);
            }
        }
        out
    }};
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0`]; all rows have the same number of blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q4_0_q8_0_4x4(x: [&[BlockQ4_0]; 4], y: [&[BlockQ8_0]; 4]) -> [[f32; 4]; 4] {
    lanes_4x4!(x, y, 8u8, |bx| nibbles_u8(&bx.qs))
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0_4x4`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q5_0_q8_0_4x4(x: [&[BlockQ5_0]; 4], y: [&[BlockQ8_0]; 4]) -> [[f32; 4]; 4] {
    lanes_4x4!(x, y, 16u8, |bx| q5_0_unsigned(bx))
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0_4x4`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q8_0_q8_0_4x4(x: [&[BlockQ8_0]; 4], y: [&[BlockQ8_0]; 4]) -> [[f32; 4]; 4] {
    lanes_4x4!(x, y, 128u8, |bx| q8_0_unsigned(bx))
}

// ---------------------------------------------------------------------------------------------------
// Two weight rows × one activation row (decode). One row's blocks form a chain of multiply-adds into
// the same accumulator, so the single-row kernels wait on the FMA latency; two rows are two chains.
// The weights enter `vpdpbusd` unsigned, as stored (`q + o`), from the accumulator start
// [`offset_lanes`], computed once for both rows: each i32 lane is the same exact integer as in the
// signed kernels, and every float step is the single-row kernel's, so the bits are too.
// (The caller passes rows far apart: two interleaved streams inside the same pages defeat the
// hardware prefetcher, two sequential streams do not.)

macro_rules! rows_x2 {
    ($x:expr, $y:expr, $o:expr, |$bx:ident| $unsigned:expr) => {{
        let nb = $y.len();
        // Both rows have nb blocks: checked once here, so the loop indexes without bounds checks.
        let xr = [&$x[0][..nb], &$x[1][..nb]];
        let mut acc = [_mm256_setzero_ps(); 2];
        for (b, by) in $y.iter().enumerate() {
            let qy = load_i8x32(&by.qs);
            let off = offset_lanes($o, qy);
            let yd = f16_x8(by.d);
            // Plain code, no closures: a closure would not inherit this function's target features.
            for r in 0..2 {
                let $bx = &xr[r][b];
                let p = _mm256_dpbusd_epi32(off, $unsigned, qy);
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(f16_x8($bx.d), yd), _mm256_cvtepi32_ps(p), acc[r]);
            }
        }
        [hsum_ps(acc[0]), hsum_ps(acc[1])]
    }};
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0`]; both rows have `y.len()` blocks or more.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q4_0_q8_0_r2(x: [&[BlockQ4_0]; 2], y: &[BlockQ8_0]) -> [f32; 2] {
    rows_x2!(x, y, 8u8, |bx| nibbles_u8(&bx.qs))
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0_r2`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q5_0_q8_0_r2(x: [&[BlockQ5_0]; 2], y: &[BlockQ8_0]) -> [f32; 2] {
    rows_x2!(x, y, 16u8, |bx| q5_0_unsigned(bx))
}

/// # Safety
/// As [`vec_dot_q4_0_q8_0_r2`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_q8_0_q8_0_r2(x: [&[BlockQ8_0]; 2], y: &[BlockQ8_0]) -> [f32; 2] {
    rows_x2!(x, y, 128u8, |bx| q8_0_unsigned(bx))
}

// ---------------------------------------------------------------------------------------------------
// The AVX2 tier's K-quant kernels over several rows or tokens, compiled with AVX-512F/VL for its 32
// vector registers.

k_quant_multi_kernels!("avx2,fma,f16c,avx512f,avx512vl");
