//! Kernels for weights repacked at load into interleaved blocks ([`BlockQ4_0x16`], [`BlockQ4Kx16`]): sixteen rows side
//! by side, one 32-bit lane of a 512-bit register per row, so one `vpdpbusd` advances sixteen rows by
//! four columns against a broadcast of four activations. Nothing is reduced across lanes: each lane
//! ends as its row's output, and a matrix is read as one sequential stream.
//!
//! The order is ggml's for its own interleaved `Q4_0` (`ggml_gemv/gemm_q4_0_8x8_q8_0`, which llama.cpp
//! uses on every AVX2 CPU for matrices with a multiple of 8 rows): one f32 per output,
//! `acc = fma(isum, d_w·d_a, acc)` per block ([`super::scalar::dot_q4_0_q8_0_rows`], the scalar twin).
//!
//! Weights enter `vpdpbusd` unsigned, as stored (`q + 8`); the offset comes off by starting each
//! block's sum at `−8·Σa`, from the activation row's block sums ([`QuantizedRows`]).
//!
//! `Q4_K` takes ggml's two orders for its interleaved `Q4_K` (`Rows` for the gemv, `RowsBy64` for
//! the gemm's groups of four tokens; see [`super::accumulate`]): per 64 elements, two chains of eight
//! `vpdpbusd` give each row's two sub-block sums, `vpmulld` applies the rows' sub-block scales, and one
//! `vpdpwssd` of the rows' two mins against the two activation sums gives the min term
//! ([`super::scalar::dot_q4kx16_q8k`] is the scalar twin).

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use super::blocks::{BlockQ4_0x16, BlockQ4Kx16, BlockQ8_0, BlockQ8K};

/// Activation rows quantized to `Q8_0` with what the interleaved kernels need per block besides the
/// quants: `sums[i] = Σ q` and `d[i]` as f32, for block `i = token · blocks + b`.
pub struct QuantizedRows<'a> {
    pub q: &'a [BlockQ8_0],
    pub sums: &'a [i32],
    pub d: &'a [f32],
    /// Blocks per row.
    pub blocks: usize,
}

/// Fills `sums` and `d` for [`QuantizedRows`] from quantized rows.
pub fn block_sums(q: &[BlockQ8_0], sums: &mut Vec<i32>, d: &mut Vec<f32>) {
    sums.clear();
    d.clear();
    sums.extend(q.iter().map(|b| b.qs.iter().map(|&v| v as i32).sum::<i32>()));
    d.extend(q.iter().map(|b| { b.d }.to_f32()));
}

/// Activation rows quantized to `Q8_K` with the sums of each 32 quants, two sub-blocks to a word:
/// `pairs[i][p]` holds sub-block `2p`'s sum in its low 16 bits and `2p + 1`'s in its high 16, for
/// super-block `i = token · blocks + b`.
pub struct QuantizedRowsK<'a> {
    pub q: &'a [BlockQ8K],
    pub pairs: &'a [[i32; 4]],
    /// Super-blocks per row.
    pub blocks: usize,
}

/// Fills `pairs` for [`QuantizedRowsK`] from quantized rows (from their per-16 `bsums`).
pub fn pair_sums(q: &[BlockQ8K], pairs: &mut Vec<[i32; 4]>) {
    pairs.clear();
    pairs.extend(q.iter().map(|b| {
        let bs = b.bsums;
        let sub = |s: usize| (bs[2 * s] as i32 + bs[2 * s + 1] as i32) as u16 as u32;
        std::array::from_fn(|p| (sub(2 * p) | sub(2 * p + 1) << 16) as i32)
    }));
}

#[cfg(target_arch = "x86_64")]
/// Most tokens one pass over a block of weights serves (each needs one accumulator register).
const TOKENS: usize = 8;

/// Sixteen interleaved rows (`w`, one block per 32 columns) against the activation rows `tokens`:
/// `out[i][r]` is row `r` against token `tokens.start + i`, bit-identical to
/// [`super::scalar::dot_q4_0_q8_0_rows`].
///
/// # Safety
/// Requires AVX-512 F/BW/VNNI (the VNNI tier's [`super::vnni::available`]).
///
/// # Panics
/// If `w` is not `x.blocks` long, the token range is outside `x`, or `out` is not one entry per token.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn dot_q4_0x16_q8_0(w: &[BlockQ4_0x16], x: &QuantizedRows, tokens: std::ops::Range<usize>, out: &mut [[f32; 16]]) {
    let nb = x.blocks;
    assert_eq!(w.len(), nb, "interleaved blocks");
    assert!(tokens.end * nb <= x.q.len() && tokens.end * nb <= x.sums.len() && tokens.end * nb <= x.d.len(), "token range");
    assert_eq!(out.len(), tokens.len(), "outputs");
    let mut t = tokens.start;
    for chunk in out.chunks_mut(TOKENS) {
        // SAFETY: the asserts above keep blocks t·nb .. (t + chunk.len())·nb inside x.
        unsafe {
            match chunk.len() {
                8 => q4_0x16_tokens::<8>(w, x, t, chunk),
                7 => q4_0x16_tokens::<7>(w, x, t, chunk),
                6 => q4_0x16_tokens::<6>(w, x, t, chunk),
                5 => q4_0x16_tokens::<5>(w, x, t, chunk),
                4 => q4_0x16_tokens::<4>(w, x, t, chunk),
                3 => q4_0x16_tokens::<3>(w, x, t, chunk),
                2 => q4_0x16_tokens::<2>(w, x, t, chunk),
                _ => q4_0x16_tokens::<1>(w, x, t, chunk),
            }
        }
        t += chunk.len();
    }
}

/// `T` tokens from `t0` (each an accumulator register); the weights are unpacked once per block for all.
///
/// # Safety
/// AVX-512 F/BW/VNNI; blocks `t0·nb .. (t0 + T)·nb` exist in `x`, `out.len() == T`, `w.len() == nb`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4_0x16_tokens<const T: usize>(w: &[BlockQ4_0x16], x: &QuantizedRows, t0: usize, out: &mut [[f32; 16]]) {
    let nb = x.blocks;
    let m4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, wb) in w.iter().enumerate() {
        // dw: the 16 rows' scales. w8[j] (j < 4) holds per row elements 4j..4j+4 and w8[4 + j]
        // elements 16+4j..16+4j+4, as stored (q + 8).
        // SAFETY: d is 32 bytes and qs 256, read in place.
        let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(std::ptr::addr_of!(wb.d).cast()) });
        let mut w8 = [_mm512_setzero_si512(); 8];
        for j in 0..4 {
            let raw = unsafe { _mm512_loadu_si512(wb.qs.as_ptr().add(64 * j).cast()) };
            w8[j] = _mm512_and_si512(raw, m4);
            w8[4 + j] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4);
        }
        for (t, acc) in acc.iter_mut().enumerate() {
            let i = (t0 + t) * nb + b;
            // SAFETY: block i exists (the caller's contract); its 32 quants are read as 8 words.
            let (q, sum, da) = unsafe { (x.q.get_unchecked(i).qs.as_ptr().cast::<i32>(), *x.sums.get_unchecked(i), *x.d.get_unchecked(i)) };
            let mut s = _mm512_set1_epi32(-8 * sum);
            for (j, &w4) in w8.iter().enumerate() {
                s = _mm512_dpbusd_epi32(s, w4, _mm512_set1_epi32(unsafe { q.add(j).read_unaligned() }));
            }
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(da)), *acc);
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
}

/// Most tokens one pass of the `Q4_K` kernel serves (two accumulators each, besides 16 weight registers).
#[cfg(target_arch = "x86_64")]
const TOKENS_K: usize = 4;

/// Sixteen interleaved `Q4_K` rows against the activation rows `tokens`, all in `RowsBy64` order
/// (`by_64`) or all in `Rows` order: `out[i][r]` is row `r` against token `tokens.start + i`,
/// bit-identical to [`super::scalar::dot_q4k_q8k_rows_by_64`] / [`super::scalar::dot_q4k_q8k_rows`].
///
/// # Safety
/// As [`dot_q4_0x16_q8_0`].
///
/// # Panics
/// As [`dot_q4_0x16_q8_0`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn dot_q4kx16_q8k(w: &[BlockQ4Kx16], x: &QuantizedRowsK, tokens: std::ops::Range<usize>, by_64: bool, out: &mut [[f32; 16]]) {
    let nb = x.blocks;
    assert_eq!(w.len(), nb, "interleaved blocks");
    assert!(tokens.end * nb <= x.q.len() && tokens.end * nb <= x.pairs.len(), "token range");
    assert_eq!(out.len(), tokens.len(), "outputs");
    let mut t = tokens.start;
    for chunk in out.chunks_mut(TOKENS_K) {
        // SAFETY: the asserts above keep super-blocks t·nb .. (t + chunk.len())·nb inside x.
        unsafe {
            match (chunk.len(), by_64) {
                (4, true) => q4kx16_tokens::<4, true>(w, x, t, chunk),
                (3, true) => q4kx16_tokens::<3, true>(w, x, t, chunk),
                (2, true) => q4kx16_tokens::<2, true>(w, x, t, chunk),
                (_, true) => q4kx16_tokens::<1, true>(w, x, t, chunk),
                (4, false) => q4kx16_tokens::<4, false>(w, x, t, chunk),
                (3, false) => q4kx16_tokens::<3, false>(w, x, t, chunk),
                (2, false) => q4kx16_tokens::<2, false>(w, x, t, chunk),
                (_, false) => q4kx16_tokens::<1, false>(w, x, t, chunk),
            }
        }
        t += chunk.len();
    }
}

/// `T` tokens from `t0`; `BY64` picks the order.
///
/// # Safety
/// AVX-512 F/BW/VNNI; super-blocks `t0·nb .. (t0 + T)·nb` exist in `x`, `out.len() == T`, `w.len() == nb`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4kx16_tokens<const T: usize, const BY64: bool>(w: &[BlockQ4Kx16], x: &QuantizedRowsK, t0: usize, out: &mut [[f32; 16]]) {
    let nb = x.blocks;
    let m4 = _mm512_set1_epi8(0x0F);
    let zero = _mm512_setzero_si512();
    // Per token: acc (isum side) and acc_min, one f32 lane per row.
    let mut acc = [_mm512_setzero_ps(); T];
    let mut acc_min = [_mm512_setzero_ps(); T];
    for (b, wb) in w.iter().enumerate() {
        // SAFETY (every load): inside wb's 2368 bytes.
        let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(std::ptr::addr_of!(wb.d).cast()) });
        let dminw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(std::ptr::addr_of!(wb.dmin).cast()) });
        // Per token, the super-block's integer sums (Rows order only).
        let mut isum = [zero; T];
        let mut imin = [zero; T];
        // d_w·d_a and dmin_w·d_a per token.
        let mut dd = [_mm512_setzero_ps(); T];
        let mut ddmin = [_mm512_setzero_ps(); T];
        for t in 0..T {
            // SAFETY: super-block (t0 + t)·nb + b exists (the caller's contract).
            let da = _mm512_set1_ps(unsafe { x.q.get_unchecked((t0 + t) * nb + b) }.d);
            dd[t] = _mm512_mul_ps(dw, da);
            ddmin[t] = _mm512_mul_ps(dminw, da);
        }
        for p in 0..4 {
            // lo[k]/hi[k]: per row, elements 4k..4k+4 of sub-blocks 2p / 2p + 1.
            let mut lo = [zero; 8];
            let mut hi = [zero; 8];
            for k in 0..8 {
                let raw = unsafe { _mm512_loadu_si512(wb.qs.as_ptr().add(512 * p + 64 * k).cast()) };
                lo[k] = _mm512_and_si512(raw, m4);
                hi[k] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4);
            }
            let sc_lo = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(wb.scales[2 * p].as_ptr().cast()) });
            let sc_hi = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(wb.scales[2 * p + 1].as_ptr().cast()) });
            let mins = _mm512_cvtepu8_epi16(unsafe { _mm256_loadu_si256(wb.mins[p].as_ptr().cast()) });
            for t in 0..T {
                let i = (t0 + t) * nb + b;
                // SAFETY: block i exists; sub-block 2p's 32 quants are words 16p..16p+8, 2p + 1's the next 8.
                let (q, pair) = unsafe { (x.q.get_unchecked(i).qs.as_ptr().add(64 * p).cast::<i32>(), x.pairs.get_unchecked(i)[p]) };
                let (mut s_lo, mut s_hi) = (zero, zero);
                for k in 0..8 {
                    s_lo = _mm512_dpbusd_epi32(s_lo, lo[k], _mm512_set1_epi32(unsafe { q.add(k).read_unaligned() }));
                    s_hi = _mm512_dpbusd_epi32(s_hi, hi[k], _mm512_set1_epi32(unsafe { q.add(8 + k).read_unaligned() }));
                }
                let is = _mm512_add_epi32(_mm512_mullo_epi32(s_lo, sc_lo), _mm512_mullo_epi32(s_hi, sc_hi));
                if BY64 {
                    let im = _mm512_dpwssd_epi32(zero, mins, _mm512_set1_epi32(pair));
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), dd[t], acc[t]);
                    acc_min[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(im), ddmin[t], acc_min[t]);
                } else {
                    isum[t] = _mm512_add_epi32(isum[t], is);
                    imin[t] = _mm512_dpwssd_epi32(imin[t], mins, _mm512_set1_epi32(pair));
                }
            }
        }
        if !BY64 {
            for t in 0..T {
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), dd[t], acc[t]);
                acc_min[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin[t]), ddmin[t], acc_min[t]);
            }
        }
    }
    for (t, o) in out.iter_mut().enumerate() {
        // SAFETY: 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), _mm512_sub_ps(acc[t], acc_min[t])) };
    }
}
