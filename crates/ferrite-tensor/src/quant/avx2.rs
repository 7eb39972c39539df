//! AVX2 (+FMA, F16C) kernels: every dot product and the `Q8_0` / `Q8_K` activation quantizers.
//!
//! Each kernel has a twin of the same name in [`super::scalar`] and must agree with it: bit for bit for
//! quantizers, and for dot products exactly in every integer sum, differing only in the order of float
//! additions.
//!
//! The core trick (as in ggml): quantized values are multiplied as bytes with `vpmaddubsw`, which takes
//! an *unsigned* byte times a *signed* byte and adds adjacent pairs into i16; `vpmaddwd` then multiplies
//! those i16 by sub-block scales (or by 1) and adds pairs into i32. Unsigned weights (`Q4_1`, K-quant
//! nibbles) go straight in; signed ones use `|w|` and `a·sign(w)`. No pair sum can saturate i16:
//! the largest is 2·128·127 (`Q8_0` weights of −128 against activations, which never exceed ±127).
//! Offsets such as Q6_K's −32 are applied once per sub-block through the activation sums (`bsums`),
//! keeping the per-element work to shift, mask and `vpmaddubsw`.
//!
//! Safety: every `pub unsafe fn` here requires a CPU with AVX2, FMA and F16C (see
//! [`super::avx2_available`]). Lengths are checked by the public dispatcher; kernels only
//! `debug_assert` them.

#![cfg(target_arch = "x86_64")]

use core::arch::x86_64::*;

use half::f16;

use super::accumulate::{RowsAcc, TiledAcc};
use super::blocks::*;
use crate::QK_K;

// ---------------------------------------------------------------------------------------------------
// Helpers. Each is a `target_feature` fn so it inlines into the kernels (which have the same features).

/// `y·a` in all 8 lanes, for an f32 `y` and an f16 `a` (broadcast before converting, which writes the
/// whole register and so avoids the `vpinsrw` false dependency described at [`f16_pair`]).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn scaled_x8(y: f32, a: f16) -> __m256 {
    _mm256_mul_ps(_mm256_set1_ps(y), _mm256_cvtph_ps(_mm_set1_epi16(a.to_bits() as i16)))
}

/// Two f16 scales → f32, converted together from one zero-extended 32-bit move. (Converting a lone
/// 16-bit value lets LLVM emit `vpinsrw` into an arbitrary register — often the loop's accumulator —
/// which chains every block behind the previous block's FMA: 4-5× slower in the 32-element kernels.)
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16_pair(a: f16, b: f16) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128((a.to_bits() as u32 | (b.to_bits() as u32) << 16) as i32))
}

/// An f16 scale in all 8 lanes as f32 (exact). Broadcasting the 16-bit value first writes the whole
/// register (no false dependency), and `f16_x8(a) · f16_x8(b)` is [`f16_product`] in every lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn f16_x8(a: f16) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(a.to_bits() as i16))
}

/// `a·b` for two f16 scales (exact conversions, one rounding).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn f16_product(a: f16, b: f16) -> f32 {
    let both = f16_pair(a, b);
    _mm_cvtss_f32(_mm_mul_ss(both, _mm_movehdup_ps(both)))
}

/// `(y·a, y·b)` for an f32 `y` and two f16 scales: a K-quant block's `d` and `dmin` times the
/// activation scale.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scaled_pair(y: f32, a: f16, b: f16) -> (f32, f32) {
    let v = _mm_mul_ps(_mm_set1_ps(y), f16_pair(a, b));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_u8x32(p: &[u8; 32]) -> __m256i {
    // SAFETY: `p` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn load_i8x32(p: &[i8; 32]) -> __m256i {
    // SAFETY: as in `load_u8x32`.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_u8x16(p: &[u8; 16]) -> __m128i {
    // SAFETY: `p` is 16 readable bytes.
    unsafe { _mm_loadu_si128(p.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_i8x16(p: &[i8; 16]) -> __m128i {
    // SAFETY: `p` is 16 readable bytes.
    unsafe { _mm_loadu_si128(p.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_f32x8(p: &[f32; 8]) -> __m256 {
    // SAFETY: `p` is 8 readable floats.
    unsafe { _mm256_loadu_ps(p.as_ptr()) }
}

/// The 16 `bsums` of a `Q8_K` block as i16 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_bsums(b: &BlockQ8K) -> __m256i {
    // SAFETY: `bsums` is 32 readable bytes inside `*b` (a packed field, so read unaligned).
    unsafe { _mm256_loadu_si256((&raw const b.bsums).cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hmax_ps(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}

/// Unsigned bytes × signed bytes, summed in groups of 4 into 8 × i32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Signed bytes × signed bytes, summed in groups of 4 into 8 × i32: `|x| · (y·sign(x))`.
/// `y` must not hold −128 (activations never do).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_i8_i8(x: __m256i, y: __m256i) -> __m256i {
    dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// 16 bytes of packed nibbles → 32 bytes in element order: low nibbles (elements 0..16) in the low
/// 128-bit lane, high nibbles (16..32) in the high lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn nibbles(qs: &[u8; 16]) -> __m256i {
    let t = load_u8x16(qs);
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(t), t);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// 32 bits → 32 bytes, 0xFF where the bit is set (bit `i` → byte `i`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn bits_to_bytes(bits: u32) -> __m256i {
    // Byte i takes byte i/8 of `bits` (the shuffle works per 128-bit lane, and every lane holds
    // `bits` four times, so the high lane's indices 2 and 3 see bytes 2 and 3)...
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0),
    );
    // ...then every bit but bit i%8 is forced on, so the byte is all ones exactly when bit i was.
    let forced = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(forced, _mm256_set1_epi64x(-1))
}

/// `vpshufb` masks that turn 8 i16 scales (the same 8 in both 128-bit lanes) into scale `2s` across the
/// low lane and `2s+1` across the high lane: the scales of the two 16-element sub-blocks that one
/// 32-byte vector of quants covers.
static SCALE_PAIR: [[u8; 32]; 4] = {
    let mut m = [[0u8; 32]; 4];
    let mut s = 0;
    while s < 4 {
        let mut i = 0;
        while i < 16 {
            m[s][i] = (4 * s + i % 2) as u8;
            m[s][16 + i] = (4 * s + 2 + i % 2) as u8;
            i += 1;
        }
        s += 1;
    }
    m
};

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scale_pair_masks() -> [__m256i; 4] {
    [load_u8x32(&SCALE_PAIR[0]), load_u8x32(&SCALE_PAIR[1]), load_u8x32(&SCALE_PAIR[2]), load_u8x32(&SCALE_PAIR[3])]
}

/// 16 i16 sub-block scales → for each 128-element half, its 8 scales in both lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn halves(scales16: __m256i) -> [__m256i; 2] {
    [_mm256_permute2x128_si256::<0x00>(scales16, scales16), _mm256_permute2x128_si256::<0x11>(scales16, scales16)]
}

// ---------------------------------------------------------------------------------------------------
// Activation quantizers.

/// 4 × 8 i32 (each within i8 range) → 32 i8 in order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pack_i32_to_i8(i: [__m256i; 4]) -> __m256i {
    // The packs work per 128-bit lane, leaving 4-byte groups in the order 0a 1a 2a 3a | 0b 1b 2b 3b
    // (where `ka`/`kb` are the low/high halves of i[k]); the permute restores 0a 0b 1a 1b ...
    let p01 = _mm256_packs_epi32(i[0], i[1]);
    let p23 = _mm256_packs_epi32(i[2], i[3]);
    let p = _mm256_packs_epi16(p01, p23);
    _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Same arithmetic as [`super::scalar::quantize_q8_0`]; identical output.
///
/// # Safety
/// Requires AVX2, FMA and F16C. `x.len() == 32 · y.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), y.len() * QK);
    let sign = _mm256_set1_ps(-0.0);
    for (xb, yb) in x.as_chunks::<QK>().0.iter().zip(y.iter_mut()) {
        let c = xb.as_chunks::<8>().0;
        let v = [load_f32x8(&c[0]), load_f32x8(&c[1]), load_f32x8(&c[2]), load_f32x8(&c[3])];
        // New value first: `max_ps` returns its second operand when either is NaN, so NaNs are skipped
        // exactly as `f32::max` skips them in the scalar twin.
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for vk in &v[1..] {
            m = _mm256_max_ps(_mm256_andnot_ps(sign, *vk), m);
        }
        let amax = hmax_ps(m);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        yb.d = f16::from_f32(d);
        let mul = _mm256_set1_ps(id);
        let mut q = [_mm256_setzero_si256(); 4];
        for k in 0..4 {
            q[k] = _mm256_cvtps_epi32(_mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(v[k], mul)));
        }
        // SAFETY: `qs` is 32 writable bytes.
        unsafe { _mm256_storeu_si256(yb.qs.as_mut_ptr().cast(), pack_i32_to_i8(q)) };
    }
}

/// Same arithmetic as [`super::scalar::quantize_q8_k`]; identical output.
///
/// # Safety
/// Requires AVX2, FMA and F16C. `x.len() == 256 · y.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    debug_assert_eq!(x.len(), y.len() * QK_K);
    let sign = _mm256_set1_ps(-0.0);
    for (xb, yb) in x.as_chunks::<QK_K>().0.iter().zip(y.iter_mut()) {
        let c = xb.as_chunks::<8>().0; // 32 vectors of 8
        let mut m = _mm256_setzero_ps();
        for ck in c {
            m = _mm256_max_ps(_mm256_andnot_ps(sign, load_f32x8(ck)), m);
        }
        let amax = hmax_ps(m);
        // The scale follows the signed value of the first element of largest magnitude.
        let amaxv = _mm256_set1_ps(amax);
        let mut max = 0.0f32;
        for ck in c {
            let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_andnot_ps(sign, load_f32x8(ck)), amaxv));
            if hit != 0 {
                max = ck[hit.trailing_zeros() as usize];
                break;
            }
        }
        if amax == 0.0 || max == 0.0 {
            *yb = bytemuck::Zeroable::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        let mul = _mm256_set1_ps(iscale);
        let cap = _mm256_set1_epi32(127);
        let mut bsums = [0i16; QK_K / 16];
        for (g, c4) in c.as_chunks::<4>().0.iter().enumerate() {
            // 32 elements = two 16-element sums.
            let mut q = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(mul, load_f32x8(&c4[k])));
                q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(r), cap);
            }
            bsums[2 * g] = hsum_epi32(_mm256_add_epi32(q[0], q[1])) as i16;
            bsums[2 * g + 1] = hsum_epi32(_mm256_add_epi32(q[2], q[3])) as i16;
            // SAFETY: `qs[32g..32g+32]` is in bounds (g < 8) and writable.
            unsafe { _mm256_storeu_si256(yb.qs.as_mut_ptr().add(32 * g).cast(), pack_i32_to_i8(q)) };
        }
        yb.bsums = bsums;
        yb.d = 1.0 / iscale;
    }
}

// ---------------------------------------------------------------------------------------------------
// 32-element block formats × Q8_0 / Q8_1.

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = _mm256_setzero_ps();
    for (bx, by) in x.iter().zip(y) {
        let d = _mm256_set1_ps(f16_product(bx.d, by.d));
        let qx = _mm256_sub_epi8(nibbles(&bx.qs), _mm256_set1_epi8(8));
        let p = dot_i8_i8(qx, load_i8x32(&by.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    hsum_ps(acc)
}

/// [`vec_dot_q4_0_q8_0`] in the `Rows` order ([`super::scalar::dot_q4_0_q8_0_rows`]): each block's
/// integer sum reduced, then one scalar multiply-add.
///
/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_0_q8_0_rows(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let qx = _mm256_sub_epi8(nibbles(&bx.qs), _mm256_set1_epi8(8));
        let isum = hsum_epi32(dot_i8_i8(qx, load_i8x32(&by.qs)));
        acc = (isum as f32).mul_add(f16_product(bx.d, by.d), acc);
    }
    acc
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        mins += f16_product(bx.m, by.s);
        let d = _mm256_set1_ps(f16_product(bx.d, by.d));
        let p = dot_u8_i8(nibbles(&bx.qs), load_i8x32(&by.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    hsum_ps(acc) + mins
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = _mm256_setzero_ps();
    for (bx, by) in x.iter().zip(y) {
        let d = _mm256_set1_ps(f16_product(bx.d, by.d));
        // q − 16 as a byte: a clear fifth bit means "subtract 16", i.e. set the top nibble (0xF0).
        let clear = _mm256_andnot_si256(bits_to_bytes(u32::from_le_bytes(bx.qh)), _mm256_set1_epi8(0xF0u8 as i8));
        let qx = _mm256_or_si256(nibbles(&bx.qs), clear);
        let p = dot_i8_i8(qx, load_i8x32(&by.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    hsum_ps(acc)
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        mins += f16_product(bx.m, by.s);
        let d = _mm256_set1_ps(f16_product(bx.d, by.d));
        let high = _mm256_and_si256(bits_to_bytes(u32::from_le_bytes(bx.qh)), _mm256_set1_epi8(0x10));
        let qx = _mm256_or_si256(nibbles(&bx.qs), high);
        let p = dot_u8_i8(qx, load_i8x32(&by.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    hsum_ps(acc) + mins
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = _mm256_setzero_ps();
    for (bx, by) in x.iter().zip(y) {
        let d = _mm256_set1_ps(f16_product(bx.d, by.d));
        let p = dot_i8_i8(load_i8x32(&bx.qs), load_i8x32(&by.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    hsum_ps(acc)
}

// Four activation rows against one weight row: the weight block is unpacked once for all four, each
// token keeps its own 8-lane accumulator, so every result is bit-identical to the single-row kernel.

macro_rules! lanes_x4 {
    ($x:expr, $y:expr, |$bx:ident| $unpack:expr, $dot:ident) => {{
        let mut acc = [_mm256_setzero_ps(); 4];
        for (b, $bx) in $x.iter().enumerate() {
            let qx = $unpack;
            let wd = f16_x8($bx.d);
            for t in 0..4 {
                let by = &$y[t][b];
                let d = _mm256_mul_ps(wd, f16_x8(by.d));
                acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps($dot(qx, load_i8x32(&by.qs))), acc[t]);
            }
        }
        acc
    }};
}
// Shared with the VNNI tier, which passes its own `$dot`.
pub(super) use lanes_x4;

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_0_q8_0_x4(x: &[BlockQ4_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    let acc = lanes_x4!(x, y, |bx| _mm256_sub_epi8(nibbles(&bx.qs), _mm256_set1_epi8(8)), dot_i8_i8);
    [hsum_ps(acc[0]), hsum_ps(acc[1]), hsum_ps(acc[2]), hsum_ps(acc[3])]
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_1_q8_1_x4(x: &[BlockQ4_1], y: [&[BlockQ8_1]; 4]) -> [f32; 4] {
    let acc = lanes_x4!(x, y, |bx| nibbles(&bx.qs), dot_u8_i8);
    let mut mins = [0.0f32; 4];
    for (b, bx) in x.iter().enumerate() {
        for t in 0..4 {
            mins[t] += f16_product(bx.m, y[t][b].s);
        }
    }
    [hsum_ps(acc[0]) + mins[0], hsum_ps(acc[1]) + mins[1], hsum_ps(acc[2]) + mins[2], hsum_ps(acc[3]) + mins[3]]
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_0_q8_0_x4(x: &[BlockQ5_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    let acc = lanes_x4!(
        x,
        y,
        |bx| _mm256_or_si256(
            nibbles(&bx.qs),
            _mm256_andnot_si256(bits_to_bytes(u32::from_le_bytes(bx.qh)), _mm256_set1_epi8(0xF0u8 as i8))
        ),
        dot_i8_i8
    );
    [hsum_ps(acc[0]), hsum_ps(acc[1]), hsum_ps(acc[2]), hsum_ps(acc[3])]
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q8_0_q8_0_x4(x: &[BlockQ8_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    let acc = lanes_x4!(x, y, |bx| load_i8x32(&bx.qs), dot_i8_i8);
    [hsum_ps(acc[0]), hsum_ps(acc[1]), hsum_ps(acc[2]), hsum_ps(acc[3])]
}

// Eight activation rows against one weight row, for batches (decoding several sequences, prompts): the
// weight block is unpacked once for eight tokens instead of four, and the activations' scales come
// already widened to f32 (`yd[t][b]`, once per matmul, not once per row). The arithmetic per token is
// the single-row kernel's, so every result is bit-identical to it: `f16_x8(w.d)·yd` is the same
// product as `f16_product(w.d, y.d)` (both conversions are exact).

macro_rules! lanes_x8 {
    ($x:expr, $y:expr, $yd:expr, |$bx:ident| $unpack:expr) => {{
        let (x, y, yd) = ($x, $y, $yd);
        assert!(y.iter().zip(yd.iter()).all(|(y, d)| y.len() >= x.len() && d.len() >= x.len()), "eight activation rows");
        let mut acc = [_mm256_setzero_ps(); 8];
        for (b, $bx) in x.iter().enumerate() {
            let qx = $unpack;
            // |q| and the signs, for maddubs (unsigned × signed) as in dot_i8_i8.
            let ax = _mm256_sign_epi8(qx, qx);
            let wd = f16_x8($bx.d);
            for t in 0..8 {
                // SAFETY: b < x.len() <= the lengths checked above.
                let (by, ad) = unsafe { (y[t].get_unchecked(b), *yd[t].get_unchecked(b)) };
                let d = _mm256_mul_ps(wd, _mm256_set1_ps(ad));
                let p = dot_u8_i8(ax, _mm256_sign_epi8(load_i8x32(&by.qs), qx));
                acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[t]);
            }
        }
        acc.map(|a| hsum_ps(a))
    }};
}

/// # Safety
/// Requires AVX2, FMA and F16C.
///
/// # Panics
/// If a row of `y` or `yd` is shorter than `x`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_0_q8_0_x8(x: &[BlockQ4_0], y: [&[BlockQ8_0]; 8], yd: [&[f32]; 8]) -> [f32; 8] {
    lanes_x8!(x, y, yd, |bx| _mm256_sub_epi8(nibbles(&bx.qs), _mm256_set1_epi8(8)))
}

/// # Safety
/// Requires AVX2, FMA and F16C.
///
/// # Panics
/// If a row of `y` or `yd` is shorter than `x`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_0_q8_0_x8(x: &[BlockQ5_0], y: [&[BlockQ8_0]; 8], yd: [&[f32]; 8]) -> [f32; 8] {
    lanes_x8!(x, y, yd, |bx| _mm256_or_si256(
        nibbles(&bx.qs),
        _mm256_andnot_si256(bits_to_bytes(u32::from_le_bytes(bx.qh)), _mm256_set1_epi8(0xF0u8 as i8))
    ))
}

/// # Safety
/// Requires AVX2, FMA and F16C.
///
/// # Panics
/// If a row of `y` or `yd` is shorter than `x`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q8_0_q8_0_x8(x: &[BlockQ8_0], y: [&[BlockQ8_0]; 8], yd: [&[f32]; 8]) -> [f32; 8] {
    lanes_x8!(x, y, yd, |bx| load_i8x32(&bx.qs))
}

// ---------------------------------------------------------------------------------------------------
// K-quant super-blocks × Q8_K. Per super-block: an i32×8 integer sum, scaled once by `d`; mins go
// through `bsums` into a second float accumulator.

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q2k_q8k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0x0F);
    let pair = scale_pair_masks();
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = _mm256_setzero_ps();
    for (bx, by) in x.iter().zip(y) {
        let (d, dmin) = scaled_pair(by.d, bx.d, bx.dmin);
        let raw = load_u8x16(&bx.scales);
        let scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
        let mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw), m4));
        let msum = _mm256_madd_epi16(mins16, load_bsums(by));
        acc_min = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(msum), acc_min);

        let sc = halves(scales16);
        let q2 = bx.qs.as_chunks::<32>().0;
        let q8 = by.qs.as_chunks::<32>().0;
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let bits = load_u8x32(&q2[h]);
            let parts = [
                _mm256_and_si256(bits, m3),
                _mm256_and_si256(_mm256_srli_epi16::<2>(bits), m3),
                _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m3),
                _mm256_and_si256(_mm256_srli_epi16::<6>(bits), m3),
            ];
            for s in 0..4 {
                let p = _mm256_maddubs_epi16(parts[s], load_i8x32(&q8[4 * h + s]));
                let p = _mm256_madd_epi16(_mm256_shuffle_epi8(sc[h], pair[s]), p);
                sumi = _mm256_add_epi32(sumi, p);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc) - hsum_ps(acc_min)
}

/// Values are `q + 4·h − 4` with `q + 4·h` in 0..8 (unsigned, fit for `vpmaddubsw`); the −4 is applied
/// per sub-block as `−4·scale·bsum`.
///
/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q3k_q8k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let m3 = _mm256_set1_epi8(3);
    let m1 = _mm256_set1_epi8(1);
    let pair = scale_pair_masks();
    let mut acc = _mm256_setzero_ps();
    for (bx, by) in x.iter().zip(y) {
        let d = scaled_x8(by.d, bx.d);
        let scales16 = _mm256_cvtepi8_epi16(load_i8x16(&q3k_scales(&bx.scales)));
        let offset = _mm256_slli_epi32::<2>(_mm256_madd_epi16(scales16, load_bsums(by)));
        let mut sumi = _mm256_sub_epi32(_mm256_setzero_si256(), offset);

        let sc = halves(scales16);
        let hbits = load_u8x32(&bx.hmask);
        let q3 = bx.qs.as_chunks::<32>().0;
        let q8 = by.qs.as_chunks::<32>().0;
        for h in 0..2 {
            let bits = load_u8x32(&q3[h]);
            for s in 0..4 {
                let low = _mm256_and_si256(_mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * s as i32)), m3);
                let high = _mm256_and_si256(_mm256_srl_epi16(hbits, _mm_cvtsi32_si128((4 * h + s) as i32)), m1);
                let q = _mm256_or_si256(low, _mm256_slli_epi16::<2>(high));
                let p = _mm256_maddubs_epi16(q, load_i8x32(&q8[4 * h + s]));
                let p = _mm256_madd_epi16(_mm256_shuffle_epi8(sc[h], pair[s]), p);
                sumi = _mm256_add_epi32(sumi, p);
            }
        }
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

/// The 8 K-quant mins, each repeated for the two 16-element `bsums` of its 32-element sub-block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn mins_x2(mn: [u8; 8]) -> __m256i {
    let m = _mm_cvtsi64_si128(i64::from_le_bytes(mn));
    _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m))
}

/// One `Q4_K` weight super-block unpacked for the integer products: for each 64-element pair of
/// sub-blocks, the low and high nibbles and their scales; and the mins, each repeated for the two
/// 16-element `bsums` of its sub-block.
pub(super) struct Q4kWeights {
    nibbles: [(__m256i, __m256i); 4],
    scales: [(__m256i, __m256i); 4],
    mins: __m256i,
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q4k_unpack(bx: &BlockQ4K) -> Q4kWeights {
    let m4 = _mm256_set1_epi8(0x0F);
    let (sc, mn) = k4_scale_min_words(&bx.scales);
    // The eight scales as i16 in each 128-bit half; sub-block k's is spread over all 16 lanes by a
    // byte shuffle (one instruction, where a broadcast from a general register takes two).
    let sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
    let zero = _mm256_setzero_si256();
    let mut w = Q4kWeights { nibbles: [(zero, zero); 4], scales: [(zero, zero); 4], mins: mins_x2(mn.to_le_bytes()) };
    // Plain loops, not closures, to keep everything inlined into this function's target features.
    for (j, q4) in bx.qs.as_chunks::<32>().0.iter().enumerate() {
        let bits = load_u8x32(q4);
        w.nibbles[j] = (_mm256_and_si256(bits, m4), _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4));
        // Byte pair (2k, 2k+1) is scale k as an i16: shuffle indices for sub-blocks 2j and 2j+1.
        let k = 2 * j as i16;
        let lo = _mm256_set1_epi16(((2 * k + 1) << 8) | (2 * k));
        let hi = _mm256_set1_epi16(((2 * k + 3) << 8) | (2 * k + 2));
        w.scales[j] = (_mm256_shuffle_epi8(sc16, lo), _mm256_shuffle_epi8(sc16, hi));
    }
    w
}

/// The scaled products of each pair of sub-blocks with the activations, in 8 exact i32 lanes each.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q4k_pair_lanes(w: &Q4kWeights, by: &BlockQ8K) -> [__m256i; 4] {
    let q8 = by.qs.as_chunks::<32>().0;
    let mut p = [_mm256_setzero_si256(); 4];
    for j in 0..4 {
        let lo = _mm256_madd_epi16(w.scales[j].0, _mm256_maddubs_epi16(w.nibbles[j].0, load_i8x32(&q8[2 * j])));
        let hi = _mm256_madd_epi16(w.scales[j].1, _mm256_maddubs_epi16(w.nibbles[j].1, load_i8x32(&q8[2 * j + 1])));
        p[j] = _mm256_add_epi32(lo, hi);
    }
    p
}

/// `mins[k]·(bsums[2k] + bsums[2k+1])` in lane k: the mins against the activation sums, per sub-block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q4k_min_lanes(w: &Q4kWeights, by: &BlockQ8K) -> __m256i {
    _mm256_madd_epi16(w.mins, load_bsums(by))
}

/// One `Q4_K` super-block against its `Q8_K`: the scaled sub-block products in 8 i32 lanes, and the
/// mins against the activation sums in 8 more. Exact integers; their lane sums are
/// [`scalar::q4k_isums`](super::scalar::q4k_isums).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q4k_lanes(bx: &BlockQ4K, by: &BlockQ8K) -> (__m256i, __m256i) {
    let w = q4k_unpack(bx);
    let p = q4k_pair_lanes(&w, by);
    let sumi = _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3]));
    (sumi, q4k_min_lanes(&w, by))
}

/// [`scalar::q4k_isum_pairs`](super::scalar::q4k_isum_pairs) for an unpacked weight super-block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q4k_pair_sums(w: &Q4kWeights, by: &BlockQ8K) -> [(i32, i32); 4] {
    let (isums, mins) = q4k_pair_sums_v(w, by);
    let (mut i, mut n) = ([0i32; 4], [0i32; 4]);
    // SAFETY: 16 writable bytes each.
    unsafe {
        _mm_storeu_si128(i.as_mut_ptr().cast(), isums);
        _mm_storeu_si128(n.as_mut_ptr().cast(), mins);
    }
    [(i[0], n[0]), (i[1], n[1]), (i[2], n[2]), (i[3], n[3])]
}

/// [`q4k_pair_sums`] left in registers: (the four pairs' isums, their mins), lane j = pair j.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q4k_pair_sums_v(w: &Q4kWeights, by: &BlockQ8K) -> (__m128i, __m128i) {
    let isums = hsum4_epi32(q4k_pair_lanes(w, by));
    // Mins: pair j is lanes 2j + 2j+1.
    let m = q4k_min_lanes(w, by);
    let m = _mm256_permute4x64_epi64::<0b1000>(_mm256_hadd_epi32(m, m));
    (isums, _mm256_castsi256_si128(m))
}

/// 4 × 4 i32 transposed: out[j] lane i = v[i] lane j.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn transpose4(v: [__m128i; 4]) -> [__m128i; 4] {
    let a = _mm_unpacklo_epi32(v[0], v[1]); // v0[0] v1[0] v0[1] v1[1]
    let b = _mm_unpacklo_epi32(v[2], v[3]);
    let c = _mm_unpackhi_epi32(v[0], v[1]); // v0[2] v1[2] v0[3] v1[3]
    let d = _mm_unpackhi_epi32(v[2], v[3]);
    [_mm_unpacklo_epi64(a, b), _mm_unpackhi_epi64(a, b), _mm_unpacklo_epi64(c, d), _mm_unpackhi_epi64(c, d)]
}

/// Four 8-lane i32 vectors summed each: lane r of the result is the sum of `v[r]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hsum4_epi32(v: [__m256i; 4]) -> __m128i {
    // hadd twice leaves [s0 s1 s2 s3] as partial sums in each 128-bit half.
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// Four f16 values as four f32 (exact), from one 64-bit move.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn f16_x4(v: [f16; 4]) -> __m128 {
    let bits = v.map(|h| h.to_bits() as u64);
    _mm_cvtph_ps(_mm_cvtsi64_si128((bits[0] | bits[1] << 16 | bits[2] << 32 | bits[3] << 48) as i64))
}

/// [`scalar::q4k_isums`](super::scalar::q4k_isums), vectorised.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn q4k_isums(bx: &BlockQ4K, by: &BlockQ8K) -> (i32, i32) {
    let (sumi, msum) = q4k_lanes(bx, by);
    (hsum_epi32(sumi), hsum_epi32(msum))
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4k_q8k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = _mm256_setzero_ps();
    for (bx, by) in x.iter().zip(y) {
        let (d, dmin) = scaled_pair(by.d, bx.d, bx.dmin);
        let (sumi, msum) = q4k_lanes(bx, by);
        acc_min = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(msum), acc_min);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc) - hsum_ps(acc_min)
}

/// [`q4k_lanes`] for `Q5_K`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q5k_lanes(bx: &BlockQ5K, by: &BlockQ8K) -> (__m256i, __m256i) {
    let m4 = _mm256_set1_epi8(0x0F);
    let m1 = _mm256_set1_epi8(1);
    let (sc, mn) = k4_scale_min(&bx.scales);
    let msum = _mm256_madd_epi16(mins_x2(mn), load_bsums(by));
    let hbits = load_u8x32(&bx.qh);
    let q5 = bx.qs.as_chunks::<32>().0;
    let q8 = by.qs.as_chunks::<32>().0;
    let mut sumi = _mm256_setzero_si256();
    for j in 0..4 {
        let bits = load_u8x32(&q5[j]);
        // Fifth bits of sub-blocks 2j and 2j+1, moved to bit 4 of each byte.
        let h_lo = _mm256_and_si256(_mm256_srl_epi16(hbits, _mm_cvtsi32_si128(2 * j as i32)), m1);
        let h_hi = _mm256_and_si256(_mm256_srl_epi16(hbits, _mm_cvtsi32_si128(2 * j as i32 + 1)), m1);
        let q_lo = _mm256_or_si256(_mm256_and_si256(bits, m4), _mm256_slli_epi16::<4>(h_lo));
        let q_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4), _mm256_slli_epi16::<4>(h_hi));
        let lo = _mm256_maddubs_epi16(q_lo, load_i8x32(&q8[2 * j]));
        let hi = _mm256_maddubs_epi16(q_hi, load_i8x32(&q8[2 * j + 1]));
        let lo = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * j] as i16), lo);
        let hi = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * j + 1] as i16), hi);
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(lo, hi));
    }
    (sumi, msum)
}

/// [`scalar::q5k_isums`](super::scalar::q5k_isums), vectorised.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn q5k_isums(bx: &BlockQ5K, by: &BlockQ8K) -> (i32, i32) {
    let (sumi, msum) = q5k_lanes(bx, by);
    (hsum_epi32(sumi), hsum_epi32(msum))
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5k_q8k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = _mm256_setzero_ps();
    for (bx, by) in x.iter().zip(y) {
        let (d, dmin) = scaled_pair(by.d, bx.d, bx.dmin);
        let (sumi, msum) = q5k_lanes(bx, by);
        acc_min = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(msum), acc_min);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc) - hsum_ps(acc_min)
}

/// One `Q6_K` weight super-block unpacked for the integer products: values stored as `q + 32` in 0..64
/// (unsigned, fit for `vpmaddubsw`), one vector per 32 elements with the scales of its two sub-blocks.
pub(super) struct Q6kWeights {
    /// `[half][quarter]`: (values, scales shuffled to their 16-element halves).
    parts: [[(__m256i, __m256i); 4]; 2],
    scales16: __m256i,
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q6k_unpack(bx: &BlockQ6K) -> Q6kWeights {
    let m4 = _mm256_set1_epi8(0x0F);
    let pair = scale_pair_masks();
    let scales16 = _mm256_cvtepi8_epi16(load_i8x16(&bx.scales));
    let sc = halves(scales16);
    let ql = bx.ql.as_chunks::<32>().0;
    let qh = bx.qh.as_chunks::<32>().0;
    let zero = _mm256_setzero_si256();
    let mut w = Q6kWeights { parts: [[(zero, zero); 4]; 2], scales16 };
    // Plain loops, not closures: a closure does not inherit this function's target features.
    for h in 0..2 {
        let l0 = load_u8x32(&ql[2 * h]);
        let l1 = load_u8x32(&ql[2 * h + 1]);
        let hb = load_u8x32(&qh[h]);
        // High bit pairs 0-1, 2-3, 4-5, 6-7 of `qh` become bits 4-5 of elements +0, +32, +64, +96.
        let q = [
            _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16::<4>(_mm256_and_si256(hb, _mm256_set1_epi8(0x03)))),
            _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16::<2>(_mm256_and_si256(hb, _mm256_set1_epi8(0x0C)))),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4), _mm256_and_si256(hb, _mm256_set1_epi8(0x30))),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
                _mm256_srli_epi16::<2>(_mm256_and_si256(hb, _mm256_set1_epi8(0xC0u8 as i8))),
            ),
        ];
        for s in 0..4 {
            w.parts[h][s] = (q[s], _mm256_shuffle_epi8(sc[h], pair[s]));
        }
    }
    w
}

/// An unpacked `Q6_K` super-block against its `Q8_K` in 8 exact i32 lanes (ggml's lane layout); the
/// −32 of the stored values is applied per sub-block as `−32·scale·bsum`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q6k_lanes_of(w: &Q6kWeights, by: &BlockQ8K) -> __m256i {
    let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(w.scales16, load_bsums(by)));
    let mut sumi = _mm256_sub_epi32(_mm256_setzero_si256(), offset);
    let q8 = by.qs.as_chunks::<32>().0;
    for h in 0..2 {
        for s in 0..4 {
            let (q, scale) = w.parts[h][s];
            let p = _mm256_maddubs_epi16(q, load_i8x32(&q8[4 * h + s]));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale, p));
        }
    }
    sumi
}

/// One `Q6_K` super-block against its `Q8_K` in 8 exact i32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q6k_lanes(bx: &BlockQ6K, by: &BlockQ8K) -> __m256i {
    q6k_lanes_of(&q6k_unpack(bx), by)
}

/// [`scalar::q6k_isum`](super::scalar::q6k_isum), vectorised.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn q6k_isum(bx: &BlockQ6K, by: &BlockQ8K) -> i32 {
    hsum_epi32(q6k_lanes(bx, by))
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q6k_q8k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = _mm256_setzero_ps();
    for (bx, by) in x.iter().zip(y) {
        let d = scaled_x8(by.d, bx.d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q6k_lanes(bx, by)), acc);
    }
    hsum_ps(acc)
}

// The row-wise accumulation orders of `super::accumulate`: the integer sums vectorised, the float
// steps exactly as in the scalar versions (so both agree bit for bit).

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4k_q8k_rows(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let n = x.len().min(y.len());
    // Lanes 0 and 1 hold `RowsAcc`'s acc and acc_min; each step below is its `add` for one super-block
    // (a fused multiply-add of the exact integer sum with `d·d_a`, and of the mins with `dmin·d_a`).
    let mut state = _mm_setzero_ps();
    let mut b = 0;
    // Two super-blocks at a time share one horizontal reduction: [isum, imin, isum', imin'].
    while b + 2 <= n {
        let (s0, m0) = q4k_lanes(&x[b], &y[b]);
        let (s1, m1) = q4k_lanes(&x[b + 1], &y[b + 1]);
        let sums = _mm_cvtepi32_ps(hsum4_epi32([s0, m0, s1, m1]));
        let da = _mm_setr_ps(y[b].d, y[b].d, y[b + 1].d, y[b + 1].d);
        let scales = _mm_mul_ps(f16_x4([x[b].d, x[b].dmin, x[b + 1].d, x[b + 1].dmin]), da);
        state = _mm_fmadd_ps(sums, scales, state);
        state = _mm_fmadd_ps(_mm_movehl_ps(sums, sums), _mm_movehl_ps(scales, scales), state);
        b += 2;
    }
    if b < n {
        let (s0, m0) = q4k_lanes(&x[b], &y[b]);
        let zero = _mm256_setzero_si256();
        let sums = _mm_cvtepi32_ps(hsum4_epi32([s0, m0, zero, zero]));
        let scales = _mm_mul_ps(f16_x4([x[b].d, x[b].dmin, x[b].d, x[b].dmin]), _mm_set1_ps(y[b].d));
        state = _mm_fmadd_ps(sums, scales, state);
    }
    _mm_cvtss_f32(_mm_sub_ss(state, _mm_movehdup_ps(state)))
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4k_q8k_rows_by_64(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut acc = RowsAcc::default();
    for (bx, by) in x.iter().zip(y) {
        let (d, dmin, da) = (bx.d.to_f32(), bx.dmin.to_f32(), by.d);
        for (isum, imin) in q4k_pair_sums(&q4k_unpack(bx), by) {
            acc.add((isum, imin, d, dmin, da));
        }
    }
    acc.finish()
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4k_q8k_tiled(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut acc = TiledAcc::default();
    for (bx, by) in x.iter().zip(y) {
        let (isum, imin) = q4k_isums(bx, by);
        acc.add((isum, imin, bx.d.to_f32(), bx.dmin.to_f32(), by.d));
    }
    acc.finish()
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q5k_q8k_tiled(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut acc = TiledAcc::default();
    for (bx, by) in x.iter().zip(y) {
        let (isum, imin) = q5k_isums(bx, by);
        acc.add((isum, imin, bx.d.to_f32(), bx.dmin.to_f32(), by.d));
    }
    acc.finish()
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q6k_q8k_tiled(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut acc = TiledAcc::default();
    for (bx, by) in x.iter().zip(y) {
        acc.add((q6k_isum(bx, by), 0, bx.d.to_f32(), 0.0, by.d));
    }
    acc.finish()
}

// The K-quant kernels over several rows or tokens, generated for a feature set: here for AVX2, and
// again in the VNNI tier with AVX-512F/VL, whose 32 vector registers hold an unpacked super-block
// with room to spare where AVX2's 16 spill it to the stack (same instructions otherwise, so the same
// bits).
macro_rules! k_quant_multi_kernels {
    ($features:literal) => {
        /// [`dot_q6k_q8k_tiled`] for four activation rows at once: each weight super-block is unpacked once for
        /// all four. Bit-identical to four single calls.
        ///
        /// # Safety
        /// Requires the CPU features of this copy's tier (AVX2, FMA and F16C; and AVX-512F/VL in the VNNI tier's).
        #[target_feature(enable = $features)]
        pub unsafe fn dot_q6k_q8k_tiled_x4(x: &[BlockQ6K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
            // The four tokens' chains in the four lanes of one register, each `TiledAcc::add`'s steps
            // (with no mins its first fused multiply-add is the product `isum·d_w`), so each lane has
            // the single-row kernel's bits; the four integer sums share one horizontal reduction.
            let mut acc = _mm_setzero_ps();
            for (b, bx) in x.iter().enumerate() {
                let w = q6k_unpack(bx);
                let l = [q6k_lanes_of(&w, &y[0][b]), q6k_lanes_of(&w, &y[1][b]), q6k_lanes_of(&w, &y[2][b]), q6k_lanes_of(&w, &y[3][b])];
                let r = _mm_mul_ps(_mm_cvtepi32_ps(hsum4_epi32(l)), _mm_cvtph_ps(_mm_set1_epi16(bx.d.to_bits() as i16)));
                acc = _mm_fmadd_ps(r, _mm_setr_ps(y[0][b].d, y[1][b].d, y[2][b].d, y[3][b].d), acc);
            }
            let mut out = [0.0f32; 4];
            // SAFETY: 16 writable bytes.
            unsafe { _mm_storeu_ps(out.as_mut_ptr(), acc) };
            out
        }

        /// [`vec_dot_q6k_q8k`] for four activation rows (four decoding sequences), the weight super-block
        /// unpacked once for all four. Bit-identical to four single calls.
        ///
        /// # Safety
        /// Requires the CPU features of this copy's tier (AVX2, FMA and F16C; and AVX-512F/VL in the VNNI tier's).
        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_q6k_q8k_x4(x: &[BlockQ6K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
            let mut acc = [_mm256_setzero_ps(); 4];
            for (b, bx) in x.iter().enumerate() {
                let w = q6k_unpack(bx);
                for t in 0..4 {
                    let by = &y[t][b];
                    acc[t] = _mm256_fmadd_ps(scaled_x8(by.d, bx.d), _mm256_cvtepi32_ps(q6k_lanes_of(&w, by)), acc[t]);
                }
            }
            [hsum_ps(acc[0]), hsum_ps(acc[1]), hsum_ps(acc[2]), hsum_ps(acc[3])]
        }

        /// [`dot_q4k_q8k_rows`] for four activation rows (four decoding sequences): each weight super-block is
        /// unpacked once for all four. Bit-identical to four single calls.
        ///
        /// # Safety
        /// Requires the CPU features of this copy's tier (AVX2, FMA and F16C; and AVX-512F/VL in the VNNI tier's).
        #[target_feature(enable = $features)]
        pub unsafe fn dot_q4k_q8k_rows_x4(x: &[BlockQ4K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
            let mut acc = [RowsAcc::default(); 4];
            for (b, bx) in x.iter().enumerate() {
                let w = q4k_unpack(bx);
                let (d, dmin) = (bx.d.to_f32(), bx.dmin.to_f32());
                for t in 0..4 {
                    let by = &y[t][b];
                    let p = q4k_pair_lanes(&w, by);
                    let sumi = _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3]));
                    let (isum, imin) = (hsum_epi32(sumi), hsum_epi32(q4k_min_lanes(&w, by)));
                    acc[t].add((isum, imin, d, dmin, by.d));
                }
            }
            [acc[0].finish(), acc[1].finish(), acc[2].finish(), acc[3].finish()]
        }

        /// [`dot_q4k_q8k_rows_by_64`] for four activation rows at once: each weight super-block is unpacked once
        /// for all four, and their four accumulation chains interleave. Bit-identical to four single calls.
        ///
        /// # Safety
        /// Requires the CPU features of this copy's tier (AVX2, FMA and F16C; and AVX-512F/VL in the VNNI tier's).
        #[target_feature(enable = $features)]
        pub unsafe fn dot_q4k_q8k_rows_by_64_x4(x: &[BlockQ4K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
            // The four tokens' float chains run in the four lanes of one register: lane t takes exactly the
            // scalar steps of `RowsAcc::add` for token t (d·da, then a fused multiply-add per pair of
            // sub-blocks, in pair order), so each lane's bits are the single-row kernel's.
            let (mut acc, mut acc_min) = (_mm_setzero_ps(), _mm_setzero_ps());
            for (b, bx) in x.iter().enumerate() {
                let w = q4k_unpack(bx);
                let da = _mm_setr_ps(y[0][b].d, y[1][b].d, y[2][b].d, y[3][b].d);
                let dd = _mm_mul_ps(_mm_set1_ps(bx.d.to_f32()), da);
                let dm = _mm_mul_ps(_mm_set1_ps(bx.dmin.to_f32()), da);
                // Per token: the four pairs' sums; transposed to per pair: the four tokens' sums.
                let mut is = [_mm_setzero_si128(); 4];
                let mut ms = [_mm_setzero_si128(); 4];
                for t in 0..4 {
                    (is[t], ms[t]) = q4k_pair_sums_v(&w, &y[t][b]);
                }
                let is = transpose4(is);
                let ms = transpose4(ms);
                for p in 0..4 {
                    acc = _mm_fmadd_ps(_mm_cvtepi32_ps(is[p]), dd, acc);
                    acc_min = _mm_fmadd_ps(_mm_cvtepi32_ps(ms[p]), dm, acc_min);
                }
            }
            let mut out = [0.0f32; 4];
            // SAFETY: 16 writable bytes.
            unsafe { _mm_storeu_ps(out.as_mut_ptr(), _mm_sub_ps(acc, acc_min)) };
            out
        }

        /// [`dot_q4k_q8k_rows`] for two weight rows against one activation row (decode): both rows' sums go
        /// through one horizontal reduction per super-block, and their float chains run side by side in one
        /// register (lanes 0-1 row 0's acc and acc_min, lanes 2-3 row 1's), each the single-row kernel's steps.
        ///
        /// # Safety
        /// Requires the CPU features of this copy's tier (AVX2, FMA and F16C; and AVX-512F/VL in the VNNI
        /// tier's); both rows have `y.len()` super-blocks or more.
        #[target_feature(enable = $features)]
        pub unsafe fn dot_q4k_q8k_rows_r2(x: [&[BlockQ4K]; 2], y: &[BlockQ8K]) -> [f32; 2] {
            let nb = y.len();
            let (x0, x1) = (&x[0][..nb], &x[1][..nb]);
            let mut state = _mm_setzero_ps();
            for (b, by) in y.iter().enumerate() {
                let (s0, m0) = q4k_lanes(&x0[b], by);
                let (s1, m1) = q4k_lanes(&x1[b], by);
                let sums = _mm_cvtepi32_ps(hsum4_epi32([s0, m0, s1, m1]));
                let scales = _mm_mul_ps(f16_x4([x0[b].d, x0[b].dmin, x1[b].d, x1[b].dmin]), _mm_set1_ps(by.d));
                state = _mm_fmadd_ps(sums, scales, state);
            }
            // acc − acc_min of each row: lanes 0 − 1 and 2 − 3.
            let diff = _mm_sub_ps(state, _mm_movehdup_ps(state));
            [_mm_cvtss_f32(diff), _mm_cvtss_f32(_mm_movehl_ps(diff, diff))]
        }

        /// [`vec_dot_q6k_q8k`] for two weight rows against one activation row (decode): two independent chains,
        /// each the single-row kernel's steps (same bits).
        ///
        /// # Safety
        /// Requires the CPU features of this copy's tier (AVX2, FMA and F16C; and AVX-512F/VL in the VNNI
        /// tier's); both rows have `y.len()` super-blocks or more.
        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_q6k_q8k_r2(x: [&[BlockQ6K]; 2], y: &[BlockQ8K]) -> [f32; 2] {
            let nb = y.len();
            let (x0, x1) = (&x[0][..nb], &x[1][..nb]);
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (b, by) in y.iter().enumerate() {
                acc0 = _mm256_fmadd_ps(scaled_x8(by.d, x0[b].d), _mm256_cvtepi32_ps(q6k_lanes(&x0[b], by)), acc0);
                acc1 = _mm256_fmadd_ps(scaled_x8(by.d, x1[b].d), _mm256_cvtepi32_ps(q6k_lanes(&x1[b], by)), acc1);
            }
            [hsum_ps(acc0), hsum_ps(acc1)]
        }
    };
}
k_quant_multi_kernels!("avx2,fma,f16c");
pub(super) use k_quant_multi_kernels;

// ---------------------------------------------------------------------------------------------------
// Plain float rows. `x` and `y` hold at least `n` elements as little-endian bytes, any alignment.

/// 8 f32 from element `i` of `p`. Safety: `p` holds at least `4·(i+8)` bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_f32s(p: &[u8], i: usize) -> __m256 {
    debug_assert!(p.len() >= 4 * (i + 8));
    unsafe { _mm256_loadu_ps(p.as_ptr().add(4 * i).cast()) }
}

/// 8 f16 from element `i` of `p`, widened. Safety: `p` holds at least `2·(i+8)` bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_f16s(p: &[u8], i: usize) -> __m256 {
    debug_assert!(p.len() >= 2 * (i + 8));
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.as_ptr().add(2 * i).cast())) }
}

/// 8 bf16 from element `i` of `p`, widened (bf16 is the top half of an f32). Safety: as [`load_f16s`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_bf16s(p: &[u8], i: usize) -> __m256 {
    debug_assert!(p.len() >= 2 * (i + 8));
    let h = unsafe { _mm_loadu_si128(p.as_ptr().add(2 * i).cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
}

/// # Safety
/// Requires AVX2, FMA and F16C; `x.len() >= 4n`, `y.len() >= 4n`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f32(x: &[u8], y: &[u8], n: usize) -> f32 {
    debug_assert!(x.len() >= 4 * n && y.len() >= 4 * n);
    // SAFETY (every `load`): it reads 8 elements from index i with i + 8 <= n, inside both slices.
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = unsafe { _mm256_fmadd_ps(load_f32s(x, i + 8 * k), load_f32s(y, i + 8 * k), *a) };
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = unsafe { _mm256_fmadd_ps(load_f32s(x, i), load_f32s(y, i), acc[0]) };
        i += 8;
    }
    let mut sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    sum += super::scalar::vec_dot_f32(&x[4 * i..], &y[4 * i..], n - i);
    sum
}

/// # Safety
/// Requires AVX2, FMA and F16C; `x.len() >= 2n`, `y.len() >= 2n`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f16(x: &[u8], y: &[u8], n: usize) -> f32 {
    debug_assert!(x.len() >= 2 * n && y.len() >= 2 * n);
    // SAFETY (every `load`): it reads 8 elements from index i with i + 8 <= n, inside both slices.
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = unsafe { _mm256_fmadd_ps(load_f16s(x, i + 8 * k), load_f16s(y, i + 8 * k), *a) };
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = unsafe { _mm256_fmadd_ps(load_f16s(x, i), load_f16s(y, i), acc[0]) };
        i += 8;
    }
    let mut sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    sum += super::scalar::vec_dot_f16(&x[2 * i..], &y[2 * i..], n - i);
    sum
}

/// # Safety
/// Requires AVX2, FMA and F16C; `x.len() >= 2n`, `y.len() >= 2n`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_bf16(x: &[u8], y: &[u8], n: usize) -> f32 {
    debug_assert!(x.len() >= 2 * n && y.len() >= 2 * n);
    // SAFETY (every `load`): it reads 8 elements from index i with i + 8 <= n, inside both slices.
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = unsafe { _mm256_fmadd_ps(load_bf16s(x, i + 8 * k), load_bf16s(y, i + 8 * k), *a) };
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = unsafe { _mm256_fmadd_ps(load_bf16s(x, i), load_bf16s(y, i), acc[0]) };
        i += 8;
    }
    let mut sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    sum += super::scalar::vec_dot_bf16(&x[2 * i..], &y[2 * i..], n - i);
    sum
}
