//! Kernels for weights repacked at load into interleaved blocks ([`BlockQ4_0x16`], [`BlockQ4Kx16`],
//! [`BlockQ5_0x16`], [`BlockQ8_0x16`], [`BlockQ6Kx16`]): sixteen rows side by side, one 32-bit lane of a 512-bit register per row, so one `vpdpbusd` advances sixteen rows by
//! four columns against a broadcast of four activations. Nothing is reduced across lanes: each lane
//! ends as its row's output, and a matrix is read as one sequential stream.
//!
//! `Q4_0`'s order is ggml's for its own interleaved `Q4_0` (`ggml_gemv/gemm_q4_0_8x8_q8_0`, which llama.cpp
//! uses on every AVX2 CPU for matrices with a multiple of 8 rows): one f32 per output,
//! `acc = fma(isum, d_w·d_a, acc)` per block ([`super::scalar::dot_q4_0_q8_0_rows`], the scalar twin).
//!
//! Weights enter `vpdpbusd` unsigned, as stored (`q + 8` for `Q4_0`); the offset comes off by
//! starting each block's sum at `−8·Σa`, from the activation row's block sums ([`QuantizedRows`]).
//! `Q5_0` and `Q8_0` do the same per lane ([`QuantizedLanes`]).
//!
//! `Q4_K` takes ggml's two orders for its interleaved `Q4_K` (`Rows` for the gemv, `RowsBy64` for
//! the gemm's groups of four tokens; see [`super::accumulate`]): per 64 elements, two chains of eight
//! `vpdpbusd` give each row's two sub-block sums, `vpmulld` applies the rows' sub-block scales, and one
//! `vpdpwssd` of the rows' two mins against the two activation sums gives the min term
//! ([`super::scalar::dot_q4kx16_q8k`] is the scalar twin).
//!
//! `Q5_0` and `Q8_0` ([`BlockQ5_0x16`], [`BlockQ8_0x16`]) take ggml's `vec_dot` order on x86, eight f32
//! lanes per dot product (ggml repacks neither on x86): lane `l` holds elements `4l..4l+4` of each
//! block, which is exactly one `vpdpbusd` of sixteen rows against a broadcast of four activations, so
//! each row's eight lanes become eight registers with one row per lane. A block costs eight
//! `vpdpbusd`, eight conversions and eight FMAs for sixteen rows, and the eight registers are summed at
//! the end in `hsum_ps`'s tree ([`super::scalar::dot_q5_0x16_q8_0`] and
//! [`super::scalar::dot_q8_0x16_q8_0`] are the scalar twins).
//!
//! `Q6_K` ([`BlockQ6Kx16`]; ggml does not repack it on x86) takes ggml's two orders for it: its tiled
//! matmul's for prompts (`Tiled`: the super-block's exact integer sum, then `r = isum·d_w`,
//! `acc = fma(r, d_a, acc)`), where per sub-block four `vpdpbusd` and one `vpmulld` by the rows' scales
//! serve sixteen rows; and `vec_dot`'s eight lanes for decoding, where lane `l` of 32-element chunk `c`
//! (elements `32c + 4l .. + 4`) is again one `vpdpbusd`, small enough for i16, so one `vpdpwssd` applies
//! the scale and accumulates. Values enter unsigned (`q + 32`); the offset comes off per lane as ggml's
//! does, `32·scale·bsum` of the lane's two sub-blocks ([`super::scalar::dot_q6kx16_q8k`] is the scalar
//! twin). A block's bytes lie in the order these kernels read them, so it is one stream.
//!
//! On AVX2 without AVX-512, `Q5_0` keeps the same sixteen-row blocks and takes them as two halves of
//! eight rows (see the AVX2 section at the end): `vpmaddubsw` and `vpmaddwd` stand in for `vpdpbusd`.

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use super::blocks::{BlockQ4_0x16, BlockQ4Kx16, BlockQ5_0x16, BlockQ6Kx16, BlockQ8_0, BlockQ8_0x16, BlockQ8K, WideQ5_0x16};

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

/// The eight lane registers of sixteen rows' interleaved nibbles (`qs` of [`BlockQ4_0x16`] and
/// [`BlockQ5_0x16`]): register `j < 4` holds each row's elements `4j..4j+4` (the low nibbles of the
/// `j`-th 64 bytes), register `4 + j` its elements `16+4j..16+4j+4` (their high nibbles).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn nibble_lanes(qs: &[u8; 256]) -> [__m512i; 8] {
    let m4 = _mm512_set1_epi8(0x0F);
    let mut w = [_mm512_setzero_si512(); 8];
    for j in 0..4 {
        // SAFETY: 64 bytes at 64·j of 256, read in place.
        let raw = unsafe { _mm512_loadu_si512(qs.as_ptr().add(64 * j).cast()) };
        w[j] = _mm512_and_si512(raw, m4);
        w[4 + j] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4);
    }
    w
}

/// Bytes a kernel asks the cache for while it computes: the weights its caller gives it next, so that
/// their wait on memory overlaps this call's arithmetic. A call with several tokens reads its weights
/// once per pass (from cache after the first), and without this the memory sits idle meanwhile.
/// The bytes are split evenly over the passes and, within a pass, over its blocks, a few cache lines
/// per block. (A hint: results never depend on it.)
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Prefetch {
    at: *const u8,
    end: *const u8,
    per_block: usize,
}

#[cfg(target_arch = "x86_64")]
impl Prefetch {
    /// A kernel's outputs in passes of at most `per_pass` tokens, each with its share of `ahead` spread
    /// over `blocks` blocks.
    fn passes<'o>(
        out: &'o mut [[f32; 16]],
        per_pass: usize,
        ahead: &[u8],
        blocks: usize,
    ) -> impl Iterator<Item = (&'o mut [[f32; 16]], Prefetch)> {
        let passes = out.len().div_ceil(per_pass);
        out.chunks_mut(per_pass).enumerate().map(move |(p, chunk)| (chunk, Prefetch::pass(ahead, passes, p, blocks)))
    }

    /// Pass `p`'s share of `ahead`, out of `passes` passes of `blocks` blocks each.
    fn pass(ahead: &[u8], passes: usize, p: usize, blocks: usize) -> Self {
        let share = ahead.len().div_ceil(passes.max(1)).next_multiple_of(64);
        let from = (p * share).min(ahead.len());
        let part = &ahead[from..(from + share).min(ahead.len())];
        let per_block = part.len().div_ceil(blocks.max(1)).next_multiple_of(64);
        Prefetch { at: part.as_ptr(), end: part.as_ptr().wrapping_add(part.len()), per_block }
    }

    /// Requests the next block's share of cache lines.
    #[inline(always)]
    fn step(&mut self) {
        let stop = self.at.wrapping_add(self.per_block).min(self.end);
        while self.at < stop {
            // SAFETY: `at` is inside the slice `pass` was given (below `end`); a prefetch reads nothing
            // into the program and cannot fault.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(self.at.cast()) };
            self.at = self.at.wrapping_add(64);
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// Most tokens one pass over a block of weights serves (each needs one accumulator register).
const TOKENS: usize = 8;

/// Sixteen interleaved rows (`w`, one block per 32 columns) against the activation rows `tokens`:
/// `out[i][r]` is row `r` against token `tokens.start + i`, bit-identical to
/// [`super::scalar::dot_q4_0_q8_0_rows`]. Meanwhile the bytes `ahead` are fetched into cache (see `Prefetch`);
/// every kernel here takes them.
///
/// # Safety
/// Requires AVX-512 F/BW/VNNI (the VNNI tier's [`super::vnni::available`]).
///
/// # Panics
/// If `w` is not `x.blocks` long, the token range is outside `x`, or `out` is not one entry per token.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn dot_q4_0x16_q8_0(w: &[BlockQ4_0x16], x: &QuantizedRows, tokens: std::ops::Range<usize>, out: &mut [[f32; 16]], ahead: &[u8]) {
    let nb = x.blocks;
    assert_eq!(w.len(), nb, "interleaved blocks");
    assert!(tokens.end * nb <= x.q.len() && tokens.end * nb <= x.sums.len() && tokens.end * nb <= x.d.len(), "token range");
    assert_eq!(out.len(), tokens.len(), "outputs");
    let mut t = tokens.start;
    for (chunk, pf) in Prefetch::passes(out, TOKENS, ahead, nb) {
        // SAFETY: the asserts above keep blocks t·nb .. (t + chunk.len())·nb inside x.
        unsafe {
            match chunk.len() {
                8 => q4_0x16_tokens::<8>(w, x, t, chunk, pf),
                7 => q4_0x16_tokens::<7>(w, x, t, chunk, pf),
                6 => q4_0x16_tokens::<6>(w, x, t, chunk, pf),
                5 => q4_0x16_tokens::<5>(w, x, t, chunk, pf),
                4 => q4_0x16_tokens::<4>(w, x, t, chunk, pf),
                3 => q4_0x16_tokens::<3>(w, x, t, chunk, pf),
                2 => q4_0x16_tokens::<2>(w, x, t, chunk, pf),
                _ => q4_0x16_tokens::<1>(w, x, t, chunk, pf),
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
unsafe fn q4_0x16_tokens<const T: usize>(w: &[BlockQ4_0x16], x: &QuantizedRows, t0: usize, out: &mut [[f32; 16]], mut pf: Prefetch) {
    let nb = x.blocks;
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, wb) in w.iter().enumerate() {
        pf.step();
        // dw: the 16 rows' scales; w8: the nibbles, as stored (q + 8).
        // SAFETY: d is 32 bytes, read in place.
        let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(std::ptr::addr_of!(wb.d).cast()) });
        let w8 = nibble_lanes(&wb.qs);
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
pub unsafe fn dot_q4kx16_q8k(
    w: &[BlockQ4Kx16],
    x: &QuantizedRowsK,
    tokens: std::ops::Range<usize>,
    by_64: bool,
    out: &mut [[f32; 16]],
    ahead: &[u8],
) {
    let nb = x.blocks;
    assert_eq!(w.len(), nb, "interleaved blocks");
    assert!(tokens.end * nb <= x.q.len() && tokens.end * nb <= x.pairs.len(), "token range");
    assert_eq!(out.len(), tokens.len(), "outputs");
    let mut t = tokens.start;
    for (chunk, pf) in Prefetch::passes(out, TOKENS_K, ahead, nb) {
        // SAFETY: the asserts above keep super-blocks t·nb .. (t + chunk.len())·nb inside x.
        unsafe {
            match (chunk.len(), by_64) {
                (4, true) => q4kx16_tokens::<4, true>(w, x, t, chunk, pf),
                (3, true) => q4kx16_tokens::<3, true>(w, x, t, chunk, pf),
                (2, true) => q4kx16_tokens::<2, true>(w, x, t, chunk, pf),
                (_, true) => q4kx16_tokens::<1, true>(w, x, t, chunk, pf),
                (4, false) => q4kx16_tokens::<4, false>(w, x, t, chunk, pf),
                (3, false) => q4kx16_tokens::<3, false>(w, x, t, chunk, pf),
                (2, false) => q4kx16_tokens::<2, false>(w, x, t, chunk, pf),
                (_, false) => q4kx16_tokens::<1, false>(w, x, t, chunk, pf),
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
unsafe fn q4kx16_tokens<const T: usize, const BY64: bool>(
    w: &[BlockQ4Kx16],
    x: &QuantizedRowsK,
    t0: usize,
    out: &mut [[f32; 16]],
    mut pf: Prefetch,
) {
    let nb = x.blocks;
    let m4 = _mm512_set1_epi8(0x0F);
    let zero = _mm512_setzero_si512();
    // Per token: acc (isum side) and acc_min, one f32 lane per row.
    let mut acc = [_mm512_setzero_ps(); T];
    let mut acc_min = [_mm512_setzero_ps(); T];
    for (b, wb) in w.iter().enumerate() {
        pf.step();
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
                // Two chains per sub-block (even and odd k): with one token a single chain would wait
                // on vpdpbusd's latency; integer sums are exact in any order.
                let (mut s_lo, mut s_hi) = ([zero; 2], [zero; 2]);
                for k in 0..8 {
                    s_lo[k % 2] = _mm512_dpbusd_epi32(s_lo[k % 2], lo[k], _mm512_set1_epi32(unsafe { q.add(k).read_unaligned() }));
                    s_hi[k % 2] = _mm512_dpbusd_epi32(s_hi[k % 2], hi[k], _mm512_set1_epi32(unsafe { q.add(8 + k).read_unaligned() }));
                }
                let (s_lo, s_hi) = (_mm512_add_epi32(s_lo[0], s_lo[1]), _mm512_add_epi32(s_hi[0], s_hi[1]));
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

/// Activation rows quantized to `Q8_0` for the [`LanesX16`] kernels: per block `i = token · blocks + b`,
/// the start of each lane's `vpdpbusd` (`starts[i][l] = −o·Σ` of the lane's four quants, for weights
/// stored as `q + o`) and `d[i]` as f32.
pub struct QuantizedLanes<'a> {
    pub q: &'a [BlockQ8_0],
    pub starts: &'a [[i32; 8]],
    pub d: &'a [f32],
    /// Blocks per row.
    pub blocks: usize,
}

/// Fills `starts` and `d` for [`QuantizedLanes`] from quantized rows, for weights stored as `q + offset`.
pub fn lane_starts(q: &[BlockQ8_0], offset: i32, starts: &mut Vec<[i32; 8]>, d: &mut Vec<f32>) {
    starts.clear();
    d.clear();
    starts.extend(q.iter().map(|b| std::array::from_fn(|l| -offset * b.qs[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum::<i32>())));
    d.extend(q.iter().map(|b| { b.d }.to_f32()));
}

/// A sixteen-row interleaved block of a 32-element format whose dot products take ggml's `vec_dot`
/// lanes: the scales, and per lane `l` a register of each row's four values `q + OFFSET` of elements
/// `4l..4l+4`.
pub trait LanesX16: Copy {
    /// What the unpacked values carry on top of `q`.
    const OFFSET: i32;

    /// The 16 rows' scales, as stored.
    fn scales(&self) -> [half::f16; 16];

    /// The eight lane registers.
    ///
    /// # Safety
    /// Requires AVX-512 F/BW.
    #[cfg(target_arch = "x86_64")]
    unsafe fn unpack(&self) -> [__m512i; 8];
}

impl LanesX16 for BlockQ8_0x16 {
    const OFFSET: i32 = 128;

    fn scales(&self) -> [half::f16; 16] {
        self.d
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn unpack(&self) -> [__m512i; 8] {
        let mut w = [_mm512_setzero_si512(); 8];
        for (l, w) in w.iter_mut().enumerate() {
            // SAFETY: qs is 512 bytes, read in place; stored as q + 128 already.
            *w = unsafe { _mm512_loadu_si512(self.qs.as_ptr().add(64 * l).cast()) };
        }
        w
    }
}

impl LanesX16 for BlockQ5_0x16 {
    const OFFSET: i32 = 16;

    fn scales(&self) -> [half::f16; 16] {
        self.d
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn unpack(&self) -> [__m512i; 8] {
        let five = _mm512_set1_epi8(0x10);
        let mut w = nibble_lanes(&self.qs);
        for (l, w) in w.iter_mut().enumerate() {
            // The fifth bits of lane l: one mask bit per byte; a nibble plus 16 is the nibble with bit 4 set.
            let k = _cvtu64_mask64(u64::from_le_bytes(self.qh[l]));
            *w = _mm512_mask_add_epi8(*w, k, *w, five);
        }
        w
    }
}

/// Most tokens one pass of a [`LanesX16`] kernel serves: eight accumulators each, besides the eight
/// weight registers. (Measured: three tokens a pass with the weights reloaded per lane, or `Q5_0`
/// unpacked once per run into a buffer, were both slower.)
#[cfg(target_arch = "x86_64")]
const TOKENS_LANES: usize = 2;

/// Sixteen interleaved rows of a [`LanesX16`] format against the activation rows `tokens`: `out[i][r]` is
/// row `r` against token `tokens.start + i`, bit-identical to ggml's `vec_dot` on AVX2
/// ([`super::scalar::vec_dot_q8_0_q8_0`], [`super::scalar::vec_dot_q5_0_q8_0`]).
///
/// # Safety
/// As [`dot_q4_0x16_q8_0`]; `x.starts` were made for `B::OFFSET`.
///
/// # Panics
/// As [`dot_q4_0x16_q8_0`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn dot_lanes_x16<B: LanesX16>(w: &[B], x: &QuantizedLanes, tokens: std::ops::Range<usize>, out: &mut [[f32; 16]], ahead: &[u8]) {
    let nb = x.blocks;
    assert_eq!(w.len(), nb, "interleaved blocks");
    assert!(tokens.end * nb <= x.q.len() && tokens.end * nb <= x.starts.len() && tokens.end * nb <= x.d.len(), "token range");
    assert_eq!(out.len(), tokens.len(), "outputs");
    let mut t = tokens.start;
    for (chunk, pf) in Prefetch::passes(out, TOKENS_LANES, ahead, nb) {
        // SAFETY: the asserts above keep blocks t·nb .. (t + chunk.len())·nb inside x.
        unsafe {
            match chunk.len() {
                2 => lanes_x16_tokens::<2, B>(w, x, t, chunk, pf),
                _ => lanes_x16_tokens::<1, B>(w, x, t, chunk, pf),
            }
        }
        t += chunk.len();
    }
}

/// `T` tokens from `t0` (eight accumulator registers each); the weights are unpacked once per block for all.
///
/// # Safety
/// AVX-512 F/BW/VNNI; blocks `t0·nb .. (t0 + T)·nb` exist in `x`, `out.len() == T`, `w.len() == nb`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn lanes_x16_tokens<const T: usize, B: LanesX16>(w: &[B], x: &QuantizedLanes, t0: usize, out: &mut [[f32; 16]], mut pf: Prefetch) {
    let nb = x.blocks;
    let mut acc = [[_mm512_setzero_ps(); 8]; T];
    for (b, wb) in w.iter().enumerate() {
        pf.step();
        let scales = wb.scales();
        // SAFETY: 16 f16 on the stack.
        let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(scales.as_ptr().cast()) });
        // SAFETY: the CPU has AVX-512 F/BW (this function's features).
        let w8 = unsafe { wb.unpack() };
        for (t, acc) in acc.iter_mut().enumerate() {
            let i = (t0 + t) * nb + b;
            // SAFETY: block i exists (the caller's contract); its 32 quants are read as 8 words.
            let (q, starts, da) =
                unsafe { (x.q.get_unchecked(i).qs.as_ptr().cast::<i32>(), x.starts.get_unchecked(i), *x.d.get_unchecked(i)) };
            let d = _mm512_mul_ps(dw, _mm512_set1_ps(da));
            for l in 0..8 {
                let a = _mm512_set1_epi32(unsafe { q.add(l).read_unaligned() });
                let s = _mm512_dpbusd_epi32(_mm512_set1_epi32(starts[l]), w8[l], a);
                acc[l] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[l]);
            }
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), hsum_lanes(a)) };
    }
}

/// The eight `vec_dot` lane registers of sixteen rows summed in `hsum_ps`'s tree, one row per lane:
/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn hsum_lanes(a: [__m512; 8]) -> __m512 {
    let s = [_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[2], a[6]), _mm512_add_ps(a[3], a[7])];
    _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[1], s[3]))
}

/// Sub-block `j`'s four registers of sixteen interleaved `Q6_K` rows ([`BlockQ6Kx16`]): register `k`
/// holds each row's values `q + 32` of elements `16j + 4k .. 16j + 4k + 4`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn q6k_sub_block(w: &BlockQ6Kx16, j: usize) -> [__m512i; 4] {
    let m4 = _mm512_set1_epi8(0x0F);
    let m30 = _mm512_set1_epi8(0x30);
    let q = &w.q[3 * j..3 * j + 3];
    // l02: the low bits of registers 0 and 2 (low and high nibbles), l13: of 1 and 3; h: the high bits.
    // SAFETY: three runs of 64 bytes, read in place.
    let (l02, l13, h) = unsafe {
        (_mm512_loadu_si512(q[0].as_ptr().cast()), _mm512_loadu_si512(q[1].as_ptr().cast()), _mm512_loadu_si512(q[2].as_ptr().cast()))
    };
    // (a & m4) | b, one instruction: 0xEA is A&B | C over (a, m4, b).
    let join = |a: __m512i, b: __m512i| _mm512_ternarylogic_epi32::<0xEA>(a, m4, b);
    [
        join(l02, _mm512_and_si512(_mm512_slli_epi16::<4>(h), m30)),
        join(l13, _mm512_and_si512(_mm512_slli_epi16::<2>(h), m30)),
        join(_mm512_srli_epi16::<4>(l02), _mm512_and_si512(h, m30)),
        join(_mm512_srli_epi16::<4>(l13), _mm512_and_si512(_mm512_srli_epi16::<2>(h), m30)),
    ]
}

/// The scales of sub-blocks `2p` and `2p + 1` of sixteen `Q6_K` rows, one 32-bit lane of two i16 per row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn q6k_scale_pairs(w: &BlockQ6Kx16, p: usize) -> __m512i {
    // SAFETY: p < 8; 32 bytes, read in place.
    _mm512_cvtepi8_epi16(unsafe { _mm256_loadu_si256(w.scales[p].as_ptr().cast()) })
}

/// Each row's offset term `−32·(sc[2l]·bsum[2l] + sc[2l+1]·bsum[2l+1])` for lane `l` of ggml's `vec_dot`
/// (summed over `l`: the whole super-block's), from the rows' scale pairs times −32 (`neg32[l]`, which
/// fit i16) against a broadcast of the activation's bsums `2l, 2l + 1` (one 32-bit word).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn q6k_offset(acc: __m512i, neg32: __m512i, by: &BlockQ8K, l: usize) -> __m512i {
    // SAFETY: l < 8; bsums 2l, 2l + 1 are 4 bytes inside by, read unaligned.
    let pair = unsafe { std::ptr::addr_of!(by.bsums).cast::<i32>().add(l).read_unaligned() };
    _mm512_dpwssd_epi32(acc, neg32, _mm512_set1_epi32(pair))
}

/// Most tokens one pass of the `Q6_K` kernel serves in `Tiled` order (three registers each, besides the
/// weights), and in `vec_dot`'s lanes (eight integer lanes each).
#[cfg(target_arch = "x86_64")]
const TOKENS_Q6K_TILED: usize = 6;
#[cfg(target_arch = "x86_64")]
const TOKENS_Q6K_LANES: usize = 2;

/// Sixteen interleaved `Q6_K` rows against the activation rows `tokens` of `x` (`nb` super-blocks a row),
/// all in `Tiled` order (`tiled`) or all in `vec_dot`'s lanes: `out[i][r]` is row `r` against token
/// `tokens.start + i`, bit-identical to [`super::scalar::dot_q6k_q8k_tiled`] /
/// [`super::scalar::vec_dot_q6k_q8k`] (and the AVX2 kernels).
///
/// # Safety
/// As [`dot_q4_0x16_q8_0`].
///
/// # Panics
/// If `w` is not `nb` long, the token range is outside `x`, or `out` is not one entry per token.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn dot_q6kx16_q8k(
    w: &[BlockQ6Kx16],
    x: &[BlockQ8K],
    nb: usize,
    tokens: std::ops::Range<usize>,
    tiled: bool,
    out: &mut [[f32; 16]],
    ahead: &[u8],
) {
    assert_eq!(w.len(), nb, "interleaved blocks");
    assert!(tokens.end * nb <= x.len(), "token range");
    assert_eq!(out.len(), tokens.len(), "outputs");
    let mut t = tokens.start;
    for (chunk, pf) in Prefetch::passes(out, if tiled { TOKENS_Q6K_TILED } else { TOKENS_Q6K_LANES }, ahead, nb) {
        // SAFETY: the asserts above keep super-blocks t·nb .. (t + chunk.len())·nb inside x.
        unsafe {
            match (chunk.len(), tiled) {
                (6, true) => q6kx16_tiled::<6>(w, x, nb, t, chunk, pf),
                (5, true) => q6kx16_tiled::<5>(w, x, nb, t, chunk, pf),
                (4, true) => q6kx16_tiled::<4>(w, x, nb, t, chunk, pf),
                (3, true) => q6kx16_tiled::<3>(w, x, nb, t, chunk, pf),
                (2, true) => q6kx16_tiled::<2>(w, x, nb, t, chunk, pf),
                (_, true) => q6kx16_tiled::<1>(w, x, nb, t, chunk, pf),
                (2, false) => q6kx16_lanes::<2>(w, x, nb, t, chunk, pf),
                (_, false) => q6kx16_lanes::<1>(w, x, nb, t, chunk, pf),
            }
        }
        t += chunk.len();
    }
}

/// `T` tokens from `t0` in `Tiled` order: per sub-block, four `vpdpbusd` give each row's exact sum of
/// values `q + 32` times the activations, `vpmulld` applies the rows' scales; the offset comes off once
/// per super-block ([`q6k_offset`]); then `r = isum·d_w`, `acc = fma(r, d_a, acc)`.
///
/// # Safety
/// AVX-512 F/BW/VNNI; super-blocks `t0·nb .. (t0 + T)·nb` exist in `x`, `out.len() == T`, `w.len() == nb`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q6kx16_tiled<const T: usize>(w: &[BlockQ6Kx16], x: &[BlockQ8K], nb: usize, t0: usize, out: &mut [[f32; 16]], mut pf: Prefetch) {
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, wb) in w.iter().enumerate() {
        pf.step();
        // SAFETY (every activation read): super-block (t0 + t)·nb + b exists (the caller's contract).
        let by = |t: usize| unsafe { x.get_unchecked((t0 + t) * nb + b) };
        let mut isum = [zero; T];
        for p in 0..8 {
            let pairs = q6k_scale_pairs(wb, p);
            let neg32 = _mm512_sub_epi16(zero, _mm512_slli_epi16::<5>(pairs));
            for (t, isum) in isum.iter_mut().enumerate() {
                *isum = q6k_offset(*isum, neg32, by(t), p);
            }
            // The two scales sign-extended to i32.
            let sc = [_mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(pairs)), _mm512_srai_epi32::<16>(pairs)];
            for (h, &sc) in sc.iter().enumerate() {
                let j = 2 * p + h;
                let r = q6k_sub_block(wb, j);
                for (t, isum) in isum.iter_mut().enumerate() {
                    let q = by(t).qs.as_ptr().wrapping_add(16 * j).cast::<i32>();
                    let mut s = zero;
                    for (k, &r) in r.iter().enumerate() {
                        // SAFETY: elements 16j + 4k .. + 4 of the activation's 256, read unaligned.
                        s = _mm512_dpbusd_epi32(s, r, _mm512_set1_epi32(unsafe { q.add(k).read_unaligned() }));
                    }
                    *isum = _mm512_add_epi32(*isum, _mm512_mullo_epi32(s, sc));
                }
            }
        }
        // SAFETY: d is 32 bytes, read in place.
        let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(std::ptr::addr_of!(wb.d).cast()) });
        for (t, acc) in acc.iter_mut().enumerate() {
            let r = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), dw);
            *acc = _mm512_fmadd_ps(r, _mm512_set1_ps(by(t).d), *acc);
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
}

/// `T` tokens from `t0` in `vec_dot`'s lanes: per 32-element chunk `c` and lane `l`, one `vpdpbusd` gives
/// each row's sum over elements `32c + 4l .. + 4` (at most 4·63·128 in size, so it fits i16) and one `vpdpwssd`
/// adds it times the sub-block's scale to lane `l`'s integer sum (scale in the low i16, zero in the
/// high); per super-block, `acc[l] = fma(d_w·d_a, lane_l, acc[l])`; at the end `hsum_ps`'s tree.
///
/// # Safety
/// As [`q6kx16_tiled`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q6kx16_lanes<const T: usize>(w: &[BlockQ6Kx16], x: &[BlockQ8K], nb: usize, t0: usize, out: &mut [[f32; 16]], mut pf: Prefetch) {
    let zero = _mm512_setzero_si512();
    let low16 = _mm512_set1_epi32(0xFFFF);
    let mut acc = [[_mm512_setzero_ps(); 8]; T];
    for (b, wb) in w.iter().enumerate() {
        pf.step();
        // SAFETY (every activation read): super-block (t0 + t)·nb + b exists (the caller's contract).
        let by = |t: usize| unsafe { x.get_unchecked((t0 + t) * nb + b) };
        let mut lanes = [[zero; 8]; T];
        for c in 0..8 {
            let pairs = q6k_scale_pairs(wb, c);
            // Sub-blocks 2c and 2c + 1: their registers and their scales as (scale, 0) i16 pairs.
            let r = [q6k_sub_block(wb, 2 * c), q6k_sub_block(wb, 2 * c + 1)];
            let sc = [_mm512_and_si512(pairs, low16), _mm512_srli_epi32::<16>(pairs)];
            for (t, lanes) in lanes.iter_mut().enumerate() {
                let q = by(t).qs.as_ptr().wrapping_add(32 * c).cast::<i32>();
                for (l, lane) in lanes.iter_mut().enumerate() {
                    // SAFETY: elements 32c + 4l .. + 4 of the activation's 256, read unaligned.
                    let s = _mm512_dpbusd_epi32(zero, r[l / 4][l % 4], _mm512_set1_epi32(unsafe { q.add(l).read_unaligned() }));
                    *lane = _mm512_dpwssd_epi32(*lane, s, sc[l / 4]);
                }
            }
        }
        // The offsets, after the chunks: indexed by the loop's `c`, the lanes would live in memory.
        for l in 0..8 {
            let neg32 = _mm512_sub_epi16(zero, _mm512_slli_epi16::<5>(q6k_scale_pairs(wb, l)));
            for (t, lanes) in lanes.iter_mut().enumerate() {
                lanes[l] = q6k_offset(lanes[l], neg32, by(t), l);
            }
        }
        // SAFETY: d is 32 bytes, read in place.
        let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(std::ptr::addr_of!(wb.d).cast()) });
        for (t, acc) in acc.iter_mut().enumerate() {
            let d = _mm512_mul_ps(_mm512_set1_ps(by(t).d), dw);
            for (acc, &lane) in acc.iter_mut().zip(&lanes[t]) {
                *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lane), *acc);
            }
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), hsum_lanes(a)) };
    }
}

// ---------------------------------------------------------------------------------------------------
// AVX2 without AVX-512: the same sixteen-row `Q5_0` blocks as two halves of eight rows, one row per
// 32-bit lane of a 256-bit register. Without `vpdpbusd`, a lane's four products take `vpmaddubsw`
// (weights unsigned as stored, q + 16 ≤ 31, so its pairs never saturate against activations within
// ±127) and `vpmaddwd` against ones; the offset comes off with the lane's start ([`QuantizedLanes`]),
// so each lane's integer is `vec_dot`'s exactly. Per block and token one `vmulps` gives the eight
// rows' `d_w·d_a`, shared by the eight lanes: five instructions per lane and eight rows, where
// `vec_dot`'s layout needs six per row (the sign trick and its own scale product).

/// Lane `l` of rows `8h..8h+8` of an interleaved `Q5_0` block, unpacked: bytes `4r..4r+4` are row
/// `8h + r`'s values `q + 16` of elements `4l..4l+4`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q5_0_half_lane(b: &BlockQ5_0x16, h: usize, l: usize) -> __m256i {
    // SAFETY: 32 bytes at 64·(l % 4) + 32·h of 256 (h < 2, l < 8), read in place.
    let raw = unsafe { _mm256_loadu_si256(b.qs.as_ptr().add(64 * (l % 4) + 32 * h).cast()) };
    let nibbles = _mm256_and_si256(if l < 4 { raw } else { _mm256_srli_epi16::<4>(raw) }, _mm256_set1_epi8(0x0F));
    let q = b.qh[l];
    let bits = u32::from_le_bytes([q[4 * h], q[4 * h + 1], q[4 * h + 2], q[4 * h + 3]]);
    _mm256_or_si256(nibbles, _mm256_and_si256(super::avx2::bits_to_bytes(bits), _mm256_set1_epi8(0x10)))
}

/// The eight `vec_dot` lane registers of eight rows summed in `hsum_float_8`'s tree, one row per lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_lanes8(a: [__m256; 8]) -> __m256 {
    let s = [_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[2], a[6]), _mm256_add_ps(a[3], a[7])];
    _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[1], s[3]))
}

/// One token against eight rows (half `h` of each block of `w`), `lane(b, l)` giving the weights of
/// lane `l` of block `b`: `vec_dot`'s lanes, summed.
///
/// # Safety
/// AVX2, FMA, F16C; blocks `t·nb .. (t + 1)·nb` exist in `x`, `w.len() == nb`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn lanes_half<W>(
    w: &[W],
    scales: impl Fn(&W) -> [half::f16; 16],
    lane: impl Fn(&W, usize) -> __m256i,
    x: &QuantizedLanes,
    t: usize,
    h: usize,
    mut pf: Prefetch,
) -> __m256 {
    let nb = x.blocks;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 8];
    for (b, wb) in w.iter().enumerate() {
        pf.step();
        let i = t * nb + b;
        // SAFETY: block i exists (the caller's contract); its 32 quants are read as 8 words.
        let (q, starts, da) = unsafe { (x.q.get_unchecked(i).qs.as_ptr().cast::<i32>(), x.starts.get_unchecked(i), *x.d.get_unchecked(i)) };
        let sc = scales(wb);
        // SAFETY: 8 f16 of the 16 on the stack.
        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(sc.as_ptr().add(8 * h).cast()) });
        let d = _mm256_mul_ps(dw, _mm256_set1_ps(da));
        for (l, acc) in acc.iter_mut().enumerate() {
            // SAFETY: word l of the block's 8.
            let a = _mm256_set1_epi32(unsafe { q.add(l).read_unaligned() });
            let s = _mm256_madd_epi16(_mm256_maddubs_epi16(lane(wb, l), a), ones);
            let s = _mm256_add_epi32(s, _mm256_set1_epi32(starts[l]));
            *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), *acc);
        }
    }
    hsum_lanes8(acc)
}

/// Every token of `tokens` against both halves of the sixteen rows of `w`, `lane(b, h, l)` giving lane
/// `l` of half `h` of block `b` and `scales(b)` its sixteen scales: the two AVX2 `Q5_0` kernels' body.
///
/// # Safety
/// AVX2, FMA, F16C.
///
/// # Panics
/// As [`dot_q4_0x16_q8_0`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn halves_x16<W>(
    w: &[W],
    scales: impl Fn(&W) -> [half::f16; 16],
    lane: impl Fn(&W, usize, usize) -> __m256i,
    x: &QuantizedLanes,
    tokens: std::ops::Range<usize>,
    out: &mut [[f32; 16]],
    ahead: &[u8],
) {
    let nb = x.blocks;
    assert_eq!(w.len(), nb, "interleaved blocks");
    assert!(tokens.end * nb <= x.q.len() && tokens.end * nb <= x.starts.len() && tokens.end * nb <= x.d.len(), "token range");
    assert_eq!(out.len(), tokens.len(), "outputs");
    let passes = 2 * out.len();
    for (i, o) in out.iter_mut().enumerate() {
        for h in 0..2 {
            let pf = Prefetch::pass(ahead, passes, 2 * i + h, nb);
            // SAFETY: the asserts above keep token tokens.start + i's blocks inside x.
            let v = unsafe { lanes_half(w, &scales, |b, l| lane(b, h, l), x, tokens.start + i, h, pf) };
            // SAFETY: 8 floats at 8·h of 16.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * h), v) };
        }
    }
}

/// [`dot_lanes_x16`] for `Q5_0` on AVX2: sixteen interleaved rows against the activation rows `tokens`,
/// bit-identical to [`super::scalar::vec_dot_q5_0_q8_0`] per row. Each token and half unpacks the
/// weights again, so runs of more than one token are better served widened ([`widen_q5_0x16_avx2`],
/// [`dot_wide_q5_0x16_avx2`]).
///
/// # Safety
/// Requires AVX2, FMA and F16C; `x.starts` were made for offset 16.
///
/// # Panics
/// As [`dot_q4_0x16_q8_0`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q5_0x16_avx2(
    w: &[BlockQ5_0x16],
    x: &QuantizedLanes,
    tokens: std::ops::Range<usize>,
    out: &mut [[f32; 16]],
    ahead: &[u8],
) {
    // SAFETY: the caller's contract.
    unsafe { halves_x16(w, |b| b.d, |b, h, l| q5_0_half_lane(b, h, l), x, tokens, out, ahead) }
}

/// `src` widened ([`WideQ5_0x16`]) into `dst`, which it replaces; bit-identical to
/// [`WideQ5_0x16::widen`] block by block.
///
/// # Safety
/// Requires AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn widen_q5_0x16_avx2(src: &[BlockQ5_0x16], dst: &mut Vec<WideQ5_0x16>) {
    dst.clear();
    dst.reserve(src.len());
    // Written in place (a block built on the stack and moved in costs a copy as large as the work).
    for (b, slot) in src.iter().zip(dst.spare_capacity_mut()) {
        let out = slot.as_mut_ptr();
        // SAFETY: `out` points at capacity for one block; every one of its 544 bytes is written below
        // (`d`, then `qs` in sixteen runs of 32), unaligned (the type is packed).
        unsafe {
            std::ptr::addr_of_mut!((*out).d).write_unaligned(b.d);
            let qs = std::ptr::addr_of_mut!((*out).qs).cast::<u8>();
            for l in 0..8 {
                for h in 0..2 {
                    _mm256_storeu_si256(qs.add(64 * l + 32 * h).cast(), q5_0_half_lane(b, h, l));
                }
            }
        }
    }
    // SAFETY: the first src.len() blocks were all written above.
    unsafe { dst.set_len(src.len()) };
}

/// [`dot_q5_0x16_avx2`] over widened blocks: the weights are loaded, not unpacked, for every token.
///
/// # Safety
/// As [`dot_q5_0x16_avx2`].
///
/// # Panics
/// As [`dot_q4_0x16_q8_0`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_wide_q5_0x16_avx2(
    w: &[WideQ5_0x16],
    x: &QuantizedLanes,
    tokens: std::ops::Range<usize>,
    out: &mut [[f32; 16]],
    ahead: &[u8],
) {
    // SAFETY: 32 bytes at 64·l + 32·h of 512 (l < 8, h < 2), read in place.
    let lane = |b: &WideQ5_0x16, h: usize, l: usize| unsafe { _mm256_loadu_si256(b.qs.as_ptr().add(64 * l + 32 * h).cast()) };
    // SAFETY: the caller's contract.
    unsafe { halves_x16(w, |b| b.d, lane, x, tokens, out, ahead) }
}
