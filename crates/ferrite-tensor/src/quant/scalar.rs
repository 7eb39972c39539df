//! Plain-Rust reference kernels: every activation quantizer and every dot product, written for
//! clarity. The SIMD modules must agree with these: exactly for quantizers and for the dot products
//! written in ggml's float order (the 32-element formats' and `Q6_K`'s `vec_dot` lanes, and the
//! row-wise orders of `accumulate`); for the other K-quants' `vec_dot` the integer parts are exact and
//! only the order of float additions differs.
//!
//! A dot product takes one weight row and one activation row, both as blocks of the same count
//! (`weight.len() == act.len()` for 32-element types, one `Q8_K` per K-quant super-block); the
//! public dispatcher checks lengths.
//!
//! The shape of each quantized dot product: per block, an exact integer sum `Σ qw·qa`, then one float
//! multiply by the two scales. Weight mins and offsets are folded in through the activation's
//! precomputed sums (`Q8_1::s`, `Q8_K::bsums`) instead of per element.

use bytemuck::Zeroable;
use half::{bf16, f16};

use super::accumulate::{self, SuperBlock};
use super::blocks::*;
use crate::QK_K;

// ---------------------------------------------------------------------------------------------------
// Activation quantizers (ggml's `quantize_row_*_ref`).

/// `Q8_0`: `d = amax/127`, `q = round_half_even(x·127/amax)`: the arithmetic of ggml's x86 quantizer, which
/// is what llama.cpp runs on our machines (its portable reference uses `1/d` and rounds half away from zero;
/// the two differ on ties and in the last bit of the inverse scale, enough to move logits).
pub fn quantize_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), y.len() * QK);
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        yb.d = f16::from_f32(d);
        let mut qs = [0i8; QK];
        for (q, &v) in qs.iter_mut().zip(xb) {
            *q = (v * id).round_ties_even() as i8;
        }
        yb.qs = qs;
    }
}

/// `Q8_1`: as [`quantize_q8_0`], plus `s = d·Σq` (the sum taken in integers, then scaled in f32).
pub fn quantize_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    debug_assert_eq!(x.len(), y.len() * QK);
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut qs = [0i8; QK];
        let mut sum = 0i32;
        for (q, &v) in qs.iter_mut().zip(xb) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        yb.d = f16::from_f32(d);
        yb.s = f16::from_f32(sum as f32 * d);
        yb.qs = qs;
    }
}

/// `Q8_K`: the scale comes from the *signed* value of largest magnitude (the first one, on ties):
/// `iscale = −127/max`, `q = min(127, round_half_even(iscale·x))`, `d = 1/iscale`; so `d` can be
/// negative. `bsums[j]` is the sum of quants `16j..16j+16`. An all-zero block gets `d = 0`.
pub fn quantize_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    debug_assert_eq!(x.len(), y.len() * QK_K);
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *yb = BlockQ8K::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        let mut qs = [0i8; QK_K];
        for (q, &v) in qs.iter_mut().zip(xb) {
            // ggml's nearest_int: round half to even (valid for |v| < 2^22; here |v| <= 127).
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        let mut bsums = [0i16; QK_K / 16];
        for (s, chunk) in bsums.iter_mut().zip(qs.chunks_exact(16)) {
            *s = chunk.iter().map(|&q| q as i16).sum();
        }
        yb.d = 1.0 / iscale;
        yb.qs = qs;
        yb.bsums = bsums;
    }
}

/// f32 → f16, rounding to nearest even (as F16C and ggml do).
pub fn quantize_f16(x: &[f32], y: &mut [u8]) {
    debug_assert_eq!(y.len(), x.len() * 2);
    for (o, &v) in y.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f16::from_f32(v).to_le_bytes());
    }
}

/// f32 → bf16 as ggml does it: round to nearest even, NaN forced quiet.
pub fn quantize_bf16(x: &[f32], y: &mut [u8]) {
    debug_assert_eq!(y.len(), x.len() * 2);
    for (o, &v) in y.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f32_to_bf16(v).to_le_bytes());
    }
}

/// ggml's `ggml_compute_fp32_to_bf16`.
#[inline]
pub fn f32_to_bf16(v: f32) -> bf16 {
    let u = v.to_bits();
    let bits = if u & 0x7fff_ffff > 0x7f80_0000 { (u >> 16) | 64 } else { (u + (0x7fff + ((u >> 16) & 1))) >> 16 };
    bf16::from_bits(bits as u16)
}

/// f32 → f32 (the activation format of f32 weights is f32 itself).
pub fn quantize_f32(x: &[f32], y: &mut [u8]) {
    debug_assert_eq!(y.len(), x.len() * 4);
    for (o, &v) in y.chunks_exact_mut(4).zip(x) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

// ---------------------------------------------------------------------------------------------------
// Dot products of 32-element blocks with Q8_0 / Q8_1 activations.

/// The 32 nibbles of a `Q4` block in element order (low nibbles are elements 0..16).
#[inline]
fn nibbles(qs: &[u8; 16]) -> [u8; 32] {
    let mut v = [0u8; 32];
    for (j, &q) in qs.iter().enumerate() {
        v[j] = q & 0x0F;
        v[j + 16] = q >> 4;
    }
    v
}

/// The 32 five-bit values of a `Q5` block in element order.
#[inline]
fn five_bits(qh: [u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let qh = u32::from_le_bytes(qh);
    let mut v = nibbles(qs);
    for (i, x) in v.iter_mut().enumerate() {
        *x |= (((qh >> i) & 1) as u8) << 4;
    }
    v
}

#[inline]
fn idot<A: Copy + Into<i32>>(a: impl IntoIterator<Item = A>, q8: &[i8]) -> i32 {
    a.into_iter().zip(q8).map(|(a, &b)| a.into() * b as i32).sum()
}

/// In [`lanes`] order: bit-identical to the AVX2 and VNNI kernels.
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    lanes(x.iter().zip(y).map(|(bx, by)| (nibbles(&bx.qs).map(|q| q as i32 - 8), f16_to_f32(bx.d) * f16_to_f32(by.d), &by.qs)))
}

/// [`vec_dot_q4_0_q8_0`] in the [`Rows`](super::Accumulation::Rows) order of ggml's interleaved `Q4_0`
/// kernels (`ggml_gemv/gemm_q4_0_8x8_q8_0`): one f32, `acc = fma(isum, d_w·d_a, acc)` per block.
pub fn dot_q4_0_q8_0_rows(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut acc = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let isum = idot(nibbles(&bx.qs).map(|q| q as i32 - 8), &by.qs);
        acc = (isum as f32).mul_add(f16_to_f32(bx.d) * f16_to_f32(by.d), acc);
    }
    acc
}

/// Sixteen interleaved rows (one [`BlockQ4_0x16`] per 32 columns) against one activation row: the
/// scalar twin of the interleaved SIMD kernels, [`dot_q4_0_q8_0_rows`] of each row.
pub fn dot_q4_0x16_q8_0(x: &[BlockQ4_0x16], y: &[BlockQ8_0]) -> [f32; 16] {
    std::array::from_fn(|r| {
        let row: Vec<BlockQ4_0> = x.iter().map(|b| b.unpack(r)).collect();
        dot_q4_0_q8_0_rows(&row, y)
    })
}

/// ggml's `vec_dot` order for the 32-element formats on AVX2 and up (the
/// [`Lanes`](super::Accumulation::Lanes) the SIMD tiers take): lane `l` of eight holds the exact sum of
/// elements `4l..4l+4` of each block, `acc[l] = fma(lane, d_w·d_a, acc[l])` per block, and the eight are
/// summed at the end as `hsum_ps` does. `blocks` yields each block's weights (as `i32`), the product
/// of the two scales `d_w·d_a`, and the activation quants.
#[inline(always)]
fn lanes<'a>(blocks: impl Iterator<Item = ([i32; QK], f32, &'a [i8; QK])>) -> f32 {
    lanes_order(blocks.map(|(w, d, qs)| (std::array::from_fn(|l| idot(w[4 * l..4 * l + 4].iter().copied(), &qs[4 * l..4 * l + 4])), d)))
}

/// The float steps of ggml's `vec_dot` on AVX2 and up, from each block's eight exact lane sums and its
/// `d_w·d_a`: `acc[l] = fma(lane_l, d, acc[l])`, the eight summed at the end in `hsum_ps`'s tree.
#[inline(always)]
fn lanes_order(blocks: impl Iterator<Item = ([i32; 8], f32)>) -> f32 {
    let mut acc = [0.0f32; 8];
    for (lanes, d) in blocks {
        for (acc, lane) in acc.iter_mut().zip(lanes) {
            *acc = (lane as f32).mul_add(d, *acc);
        }
    }
    let s = [acc[0] + acc[4], acc[1] + acc[5], acc[2] + acc[6], acc[3] + acc[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// In [`lanes`] order: bit-identical to the AVX2 and VNNI kernels.
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    lanes(x.iter().zip(y).map(|(bx, by)| (five_bits(bx.qh, &bx.qs).map(|q| q as i32 - 16), f16_to_f32(bx.d) * f16_to_f32(by.d), &by.qs)))
}

/// In [`lanes`] order: bit-identical to the AVX2 and VNNI kernels.
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    lanes(x.iter().zip(y).map(|(bx, by)| (bx.qs.map(|q| q as i32), f16_to_f32(bx.d) * f16_to_f32(by.d), &by.qs)))
}

/// Sixteen interleaved `Q5_0` rows against one activation row: the scalar twin of the interleaved
/// SIMD kernel, [`vec_dot_q5_0_q8_0`] of each row.
pub fn dot_q5_0x16_q8_0(x: &[BlockQ5_0x16], y: &[BlockQ8_0]) -> [f32; 16] {
    std::array::from_fn(|r| vec_dot_q5_0_q8_0(&x.iter().map(|b| b.unpack(r)).collect::<Vec<_>>(), y))
}

/// Sixteen interleaved `Q8_0` rows against one activation row: the scalar twin of the interleaved
/// SIMD kernel, [`vec_dot_q8_0_q8_0`] of each row.
pub fn dot_q8_0x16_q8_0(x: &[BlockQ8_0x16], y: &[BlockQ8_0]) -> [f32; 16] {
    std::array::from_fn(|r| vec_dot_q8_0_q8_0(&x.iter().map(|b| b.unpack(r)).collect::<Vec<_>>(), y))
}

/// Sixteen interleaved `Q4_K` rows against one activation row, in `Rows` order or (`by_64`) in
/// `RowsBy64` order, read straight from the interleaved layout: the scalar twin of the interleaved
/// SIMD kernel, and an independent check of the repacking against [`dot_q4k_q8k_rows`].
pub fn dot_q4kx16_q8k(x: &[BlockQ4Kx16], y: &[BlockQ8K], by_64: bool) -> [f32; 16] {
    std::array::from_fn(|r| {
        let mut acc = accumulate::RowsAcc::default();
        for (bx, by) in x.iter().zip(y) {
            let (d, dmin, da, bsums) = (f16_to_f32({ bx.d }[r]), f16_to_f32({ bx.dmin }[r]), by.d, by.bsums);
            let (mut isum, mut imin) = (0, 0);
            for p in 0..4 {
                for s in [2 * p, 2 * p + 1] {
                    // Sub-block s: 32 nibbles of row r, four from each of the chunk's 64-byte groups.
                    let q = (0..32).map(|e| {
                        let byte = bx.qs[512 * p + 64 * (e / 4) + 4 * r + e % 4];
                        if s % 2 == 0 { byte & 0x0F } else { byte >> 4 }
                    });
                    isum += bx.scales[s][r] as i32 * idot(q, &by.qs[32 * s..][..32]);
                    imin += bx.mins[p][r][s % 2] as i32 * (bsums[2 * s] as i32 + bsums[2 * s + 1] as i32);
                }
                if by_64 {
                    acc.add((isum, imin, d, dmin, da));
                    (isum, imin) = (0, 0);
                }
            }
            if !by_64 {
                acc.add((isum, imin, d, dmin, da));
            }
        }
        acc.finish()
    })
}

/// The `m·s` terms of a `Q4_1`/`Q5_1` dot product, summed in sequence as ggml's `vec_dot` does beside its
/// lanes.
fn mins(m: impl Iterator<Item = (f16, f16)>) -> f32 {
    m.fold(0.0f32, |sum, (m, s)| sum + f16_to_f32(m) * f16_to_f32(s))
}

/// `Σ (d_w·q_w + m_w)·d_a·q_a = d_w·d_a·Σ q_w·q_a + m_w·s_a`, in [`lanes`] order with the mins summed
/// beside: bit-identical to the AVX2 and VNNI kernels.
pub fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let dot = lanes(x.iter().zip(y).map(|(bx, by)| (nibbles(&bx.qs).map(|q| q as i32), f16_to_f32(bx.d) * f16_to_f32(by.d), &by.qs)));
    dot + mins(x.iter().zip(y).map(|(bx, by)| (bx.m, by.s)))
}

/// In [`lanes`] order, the mins summed beside: bit-identical to the AVX2 and VNNI kernels.
pub fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let dot =
        lanes(x.iter().zip(y).map(|(bx, by)| (five_bits(bx.qh, &bx.qs).map(|q| q as i32), f16_to_f32(bx.d) * f16_to_f32(by.d), &by.qs)));
    dot + mins(x.iter().zip(y).map(|(bx, by)| (bx.m, by.s)))
}

// ---------------------------------------------------------------------------------------------------
// Dot products of K-quant super-blocks with Q8_K activations.

/// `Σ_sb (d·sc_sb·Σ q·a − dmin·m_sb·Σ a)`; `Σ a` per 16 elements is `bsums`.
pub fn vec_dot_q2k_q8k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let bsums = by.bsums;
        let mut isum = 0i32; // Σ sc·Σ q·a
        let mut msum = 0i32; // Σ m·Σ a
        for (sb, (&sc, &bs)) in bx.scales.iter().zip(&bsums).enumerate() {
            let (h, s, u) = (sb / 8, (sb % 8) / 2, sb % 2);
            let q = bx.qs[32 * h + 16 * u..][..16].iter().map(|&b| ((b >> (2 * s)) & 3) as i32);
            isum += (sc & 0x0F) as i32 * idot(q, &by.qs[16 * sb..][..16]);
            msum += (sc >> 4) as i32 * bs as i32;
        }
        let d = by.d * f16_to_f32(bx.d);
        let dmin = by.d * f16_to_f32(bx.dmin);
        sum += d * isum as f32 - dmin * msum as f32;
    }
    sum
}

pub fn vec_dot_q3k_q8k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let scales = q3k_scales(&bx.scales);
        let mut isum = 0i32;
        for (sb, &sc) in scales.iter().enumerate() {
            let (h, s, u) = (sb / 8, (sb % 8) / 2, sb % 2);
            let hbit = 4 * h + s;
            let q = (16 * u..16 * u + 16).map(|l| {
                let low = ((bx.qs[32 * h + l] >> (2 * s)) & 3) as i32;
                if bx.hmask[l] >> hbit & 1 == 1 { low } else { low - 4 }
            });
            isum += sc as i32 * idot(q, &by.qs[16 * sb..][..16]);
        }
        sum += by.d * f16_to_f32(bx.d) * isum as f32;
    }
    sum
}

/// The exact integer parts of one `Q4_K` super-block per 64-element pair of sub-blocks (entry `j` covers
/// sub-blocks `2j` and `2j+1`): `(Σ sc·Σ q·y, Σ m·Σ y)`. Every accumulation order (see
/// [`super::accumulate`]) starts from these.
pub(crate) fn q4k_isum_pairs(bx: &BlockQ4K, by: &BlockQ8K) -> [(i32, i32); 4] {
    let (sc, mn) = k4_scale_min(&bx.scales);
    let bsums = by.bsums;
    std::array::from_fn(|j| {
        let q = &bx.qs[32 * j..][..32];
        let isum = sc[2 * j] as i32 * idot(q.iter().map(|&b| b & 0x0F), &by.qs[64 * j..][..32])
            + sc[2 * j + 1] as i32 * idot(q.iter().map(|&b| b >> 4), &by.qs[64 * j + 32..][..32]);
        let imin = (2 * j..2 * j + 2).map(|s| mn[s] as i32 * (bsums[2 * s] as i32 + bsums[2 * s + 1] as i32)).sum();
        (isum, imin)
    })
}

/// [`q4k_isum_pairs`] summed over the super-block.
pub(crate) fn q4k_isums(bx: &BlockQ4K, by: &BlockQ8K) -> (i32, i32) {
    q4k_isum_pairs(bx, by).iter().fold((0, 0), |(i, m), &(pi, pm)| (i + pi, m + pm))
}

/// `Σ_j m_j·(bsums[2j] + bsums[2j+1])`: the weight mins against the activation's per-16 sums.
fn k4_min_sum(mn: [u8; 8], by: &BlockQ8K) -> i32 {
    let bsums = by.bsums;
    bsums.iter().enumerate().map(|(k, &bs)| mn[k / 2] as i32 * bs as i32).sum()
}

pub fn vec_dot_q4k_q8k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let (isum, msum) = q4k_isums(bx, by);
        let d = by.d * f16_to_f32(bx.d);
        let dmin = by.d * f16_to_f32(bx.dmin);
        sum += d * isum as f32 - dmin * msum as f32;
    }
    sum
}

/// [`q4k_isums`] for `Q5_K`.
pub(crate) fn q5k_isums(bx: &BlockQ5K, by: &BlockQ8K) -> (i32, i32) {
    let (sc, mn) = k4_scale_min(&bx.scales);
    let mut isum = 0i32;
    for j in 0..4 {
        let q = &bx.qs[32 * j..][..32];
        let lo = q.iter().zip(&bx.qh).map(|(&b, &h)| (b & 0x0F) | ((h >> (2 * j) & 1) << 4));
        let hi = q.iter().zip(&bx.qh).map(|(&b, &h)| (b >> 4) | ((h >> (2 * j + 1) & 1) << 4));
        isum += sc[2 * j] as i32 * idot(lo, &by.qs[64 * j..][..32]);
        isum += sc[2 * j + 1] as i32 * idot(hi, &by.qs[64 * j + 32..][..32]);
    }
    (isum, k4_min_sum(mn, by))
}

pub fn vec_dot_q5k_q8k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let (isum, msum) = q5k_isums(bx, by);
        let d = by.d * f16_to_f32(bx.d);
        let dmin = by.d * f16_to_f32(bx.dmin);
        sum += d * isum as f32 - dmin * msum as f32;
    }
    sum
}

/// The exact integer part of one `Q6_K` super-block: `Σ_s sc_s·Σ (q−32)·y` over 16 sub-blocks of 16.
pub(crate) fn q6k_isum(bx: &BlockQ6K, by: &BlockQ8K) -> i32 {
    let q = super::dequant::q6k_values(bx);
    let mut isum = 0i32;
    for (sb, &sc) in bx.scales.iter().enumerate() {
        isum += sc as i32 * idot(q[16 * sb..][..16].iter().copied(), &by.qs[16 * sb..][..16]);
    }
    isum
}

/// One `Q6_K` super-block (values `q + 32` in element order, the 16 scales) against its `Q8_K` in the
/// eight exact i32 lanes of ggml's AVX2 `vec_dot`: 32-element chunk `c` gives lane `l` the sum over
/// its elements `4l..4l+4` times their sub-block's scale (`2c + l/4`), and the offset comes off lane `l`
/// as `32·(sc[2l]·bsum[2l] + sc[2l+1]·bsum[2l+1])`. The lanes sum to [`q6k_isum`].
fn q6k_lanes(u: &[u8; QK_K], sc: &[i8; 16], by: &BlockQ8K) -> [i32; 8] {
    let bsums = by.bsums;
    std::array::from_fn(|l| {
        let main: i32 =
            (0..8).map(|c| sc[2 * c + l / 4] as i32 * idot(u[32 * c + 4 * l..][..4].iter().copied(), &by.qs[32 * c + 4 * l..][..4])).sum();
        main - 32 * (sc[2 * l] as i32 * bsums[2 * l] as i32 + sc[2 * l + 1] as i32 * bsums[2 * l + 1] as i32)
    })
}

/// ggml's `vec_dot` order ([`lanes_order`]) over [`q6k_lanes`]. `blocks` yields each super-block's values
/// `q + 32`, scales, `d_w` and activation block.
#[inline(always)]
fn q6k_lanes_dot<'a>(blocks: impl Iterator<Item = ([u8; QK_K], [i8; 16], f32, &'a BlockQ8K)>) -> f32 {
    lanes_order(blocks.map(|(u, sc, dw, by)| (q6k_lanes(&u, &sc, by), by.d * dw)))
}

/// In ggml's `vec_dot` lanes ([`q6k_lanes_dot`]): bit-identical to the AVX2 and VNNI kernels.
pub fn vec_dot_q6k_q8k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    q6k_lanes_dot(x.iter().zip(y).map(|(bx, by)| (super::dequant::q6k_values(bx).map(|q| (q + 32) as u8), bx.scales, f16_to_f32(bx.d), by)))
}

/// Sixteen interleaved `Q6_K` rows against one activation row, in `Tiled` order (`tiled`) or `vec_dot`'s
/// lanes, read through [`BlockQ6Kx16::values`]: the scalar twin of the interleaved SIMD kernel.
pub fn dot_q6kx16_q8k(x: &[BlockQ6Kx16], y: &[BlockQ8K], tiled: bool) -> [f32; 16] {
    std::array::from_fn(|r| {
        let blocks = x
            .iter()
            .zip(y)
            .map(|(bx, by)| (bx.values(r), std::array::from_fn(|j| bx.scales[j / 2][r][j % 2]), f16_to_f32({ bx.d }[r]), by));
        if tiled {
            accumulate::tiled(blocks.map(|(u, sc, dw, by)| (q6k_lanes(&u, &sc, by).iter().sum(), 0, dw, 0.0, by.d)))
        } else {
            q6k_lanes_dot(blocks)
        }
    })
}

// The row-wise accumulation orders of `super::accumulate` (exact integer sums, fused float steps).

fn q4k_blocks<'a>(x: &'a [BlockQ4K], y: &'a [BlockQ8K]) -> impl Iterator<Item = SuperBlock> + 'a {
    x.iter().zip(y).map(|(bx, by)| {
        let (isum, imin) = q4k_isums(bx, by);
        (isum, imin, f16_to_f32(bx.d), f16_to_f32(bx.dmin), by.d)
    })
}

fn q5k_blocks<'a>(x: &'a [BlockQ5K], y: &'a [BlockQ8K]) -> impl Iterator<Item = SuperBlock> + 'a {
    x.iter().zip(y).map(|(bx, by)| {
        let (isum, imin) = q5k_isums(bx, by);
        (isum, imin, f16_to_f32(bx.d), f16_to_f32(bx.dmin), by.d)
    })
}

fn q6k_blocks<'a>(x: &'a [BlockQ6K], y: &'a [BlockQ8K]) -> impl Iterator<Item = SuperBlock> + 'a {
    x.iter().zip(y).map(|(bx, by)| (q6k_isum(bx, by), 0, f16_to_f32(bx.d), 0.0, by.d))
}

pub fn dot_q4k_q8k_rows(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    accumulate::rows(q4k_blocks(x, y))
}

pub fn dot_q4k_q8k_rows_by_64(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    accumulate::rows(x.iter().zip(y).flat_map(|(bx, by)| {
        let (d, dmin, da) = (f16_to_f32(bx.d), f16_to_f32(bx.dmin), by.d);
        q4k_isum_pairs(bx, by).map(|(isum, imin)| (isum, imin, d, dmin, da))
    }))
}

/// [`dot_q4k_q8k_rows_by_64`] for four activation rows (the SIMD tier shares the weight unpacking).
pub fn dot_q4k_q8k_rows_by_64_x4(x: &[BlockQ4K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
    y.map(|y| dot_q4k_q8k_rows_by_64(x, y))
}

pub fn dot_q4k_q8k_tiled(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    accumulate::tiled(q4k_blocks(x, y))
}

pub fn dot_q5k_q8k_tiled(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    accumulate::tiled(q5k_blocks(x, y))
}

pub fn dot_q6k_q8k_tiled(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    accumulate::tiled(q6k_blocks(x, y))
}

// Four activation rows against one weight row (the SIMD tier shares the weight unpacking).

pub fn dot_q4k_q8k_rows_x4(x: &[BlockQ4K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
    y.map(|y| dot_q4k_q8k_rows(x, y))
}

pub fn vec_dot_q6k_q8k_x4(x: &[BlockQ6K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
    y.map(|y| vec_dot_q6k_q8k(x, y))
}

pub fn dot_q6k_q8k_tiled_x4(x: &[BlockQ6K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
    y.map(|y| dot_q6k_q8k_tiled(x, y))
}

pub fn vec_dot_q4_0_q8_0_x4(x: &[BlockQ4_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    y.map(|y| vec_dot_q4_0_q8_0(x, y))
}

pub fn vec_dot_q4_1_q8_1_x4(x: &[BlockQ4_1], y: [&[BlockQ8_1]; 4]) -> [f32; 4] {
    y.map(|y| vec_dot_q4_1_q8_1(x, y))
}

pub fn vec_dot_q5_0_q8_0_x4(x: &[BlockQ5_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    y.map(|y| vec_dot_q5_0_q8_0(x, y))
}

pub fn vec_dot_q8_0_q8_0_x4(x: &[BlockQ8_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    y.map(|y| vec_dot_q8_0_q8_0(x, y))
}

// ---------------------------------------------------------------------------------------------------
// Dot products of plain float rows (`n` elements, little-endian bytes, no alignment assumed).

pub fn vec_dot_f32(x: &[u8], y: &[u8], n: usize) -> f32 {
    let xs = x.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let ys = y.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    xs.zip(ys).take(n).fold(0.0f32, |s, (a, b)| s + a * b)
}

pub fn vec_dot_f16(x: &[u8], y: &[u8], n: usize) -> f32 {
    let xs = x.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32());
    let ys = y.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32());
    xs.zip(ys).take(n).fold(0.0f32, |s, (a, b)| s + a * b)
}

pub fn vec_dot_bf16(x: &[u8], y: &[u8], n: usize) -> f32 {
    let xs = x.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32());
    let ys = y.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32());
    xs.zip(ys).take(n).fold(0.0f32, |s, (a, b)| s + a * b)
}
