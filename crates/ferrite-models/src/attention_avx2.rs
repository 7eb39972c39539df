//! AVX2 + FMA + F16C twins of the two attention paths in `attention.rs`, bit-identical to them (tested
//! below): the same operations in the same order per key and per output element, only several at once.
//!
//! - per-key path (decoding): the f16 rounding of the query and of the accumulator is done eight lanes at
//!   a time with F16C (round to nearest even, as `half` does in software), and ggml's 16-lane dot product
//!   keeps its lane layout in two 8-lane registers;
//! - tiled path (prompt chunks): a key's score is a sequential fused multiply-add chain over the head
//!   dimension, so eight keys' chains run side by side in the lanes of one register, reading keys
//!   transposed in groups of eight ([`transpose_keys`]); the output accumulates 64 dimensions at a time
//!   in registers.
//!
//! Both take head dimensions that are multiples of 64 up to 256 ([`supported`]); others use the scalar
//! code.

#![allow(clippy::needless_range_loop)] // index loops over lanes read most plainly here

use std::arch::x86_64::*;

use half::f16;

use ferrite_tensor::ops;

use crate::attention::TILE_KV;

/// Largest head dimension the SIMD kernels take.
const MAX_HD: usize = 256;

/// Whether the CPU and the head dimension allow these kernels (and `FERRITE_KERNELS` does not cap them
/// to scalar).
pub(crate) fn supported(hd: usize) -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let cpu = *CPU.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
            && ferrite_tensor::quant::kernel_tier() != "scalar"
    });
    cpu && hd > 0 && hd.is_multiple_of(64) && hd <= MAX_HD
}

/// Keys (positions, hd) starting at absolute position `lo`, transposed into groups of eight positions
/// aligned to multiples of eight: `[d][group][8]` (a tile's groups side by side for each `d`: as
/// `[group][d][8]` they would sit 4 KB apart, in one L1 set), group 0 starting at `lo / 8 * 8`. Positions before
/// `lo` or past the end are zero (they are masked by the caller), and [`GROUPS`] groups of zeros follow.
pub(crate) fn transpose_keys(keys: &[f32], hd: usize, lo: usize) -> (usize, Vec<f32>) {
    let base = lo / 8 * 8;
    let n = keys.len() / hd;
    // A tile's scores always read GROUPS groups from its first: zero groups pad the end.
    let groups = (lo + n - base).div_ceil(8) + GROUPS;
    let mut kt = vec![0.0f32; groups * hd * 8];
    for (j, key) in keys.chunks_exact(hd).enumerate() {
        let a = lo + j - base;
        let (g, lane) = (a / 8, a % 8);
        for (d, &x) in key.iter().enumerate() {
            kt[(d * groups + g) * 8 + lane] = x;
        }
    }
    (base, kt)
}

/// f16 rounding of eight lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn round16(x: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
}

/// ggml's 16-lane f16 dot product (see `attention::dot_lanes`) of one key, as stored in the cache, with
/// the rounded query.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `k` points at `hd` (a multiple of 64) readable f16.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_lanes(k: *const f16, q: &[__m256], hd: usize) -> f32 {
    // SAFETY: eight f16 at `at` < hd, inside the key (the caller's contract).
    let load = |at: usize| _mm256_cvtph_ps(unsafe { _mm_loadu_si128(k.add(at).cast()) });
    let mut a = [_mm256_setzero_ps(); 8]; // acc[j] lanes 0..8 at 2j, lanes 8..16 at 2j+1
    for blk in 0..hd / 64 {
        for j in 0..4 {
            let at = blk * 64 + j * 16;
            a[2 * j] = _mm256_fmadd_ps(load(at), q[at / 8], a[2 * j]);
            a[2 * j + 1] = _mm256_fmadd_ps(load(at + 8), q[at / 8 + 1], a[2 * j + 1]);
        }
    }
    let lo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
    let hi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
    let t8 = _mm256_add_ps(hi, lo);
    let t4 = _mm_add_ps(_mm256_extractf128_ps::<1>(t8), _mm256_castps256_ps128(t8));
    let t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4)); // [t4[0]+t4[2], t4[1]+t4[3], ..]
    _mm_cvtss_f32(_mm_add_ss(t2, _mm_shuffle_ps::<0b01>(t2, t2)))
}

/// Keys whose scores one pass of the per-key kernels takes: their dot products first (independent of
/// each other), then the softmax's scalar steps (calls to `expf`, which would make the compiler keep the
/// accumulator in memory across each), then the accumulator's updates, in registers.
const KEYS_PER_PASS: usize = 32;

/// The online softmax's running maximum and sum, stepped key by key as `attention::attend_f16` does.
struct Softmax {
    m: f32,
    sum: f32,
}

impl Softmax {
    fn new() -> Self {
        Softmax { m: f32::NEG_INFINITY, sum: 0.0 }
    }

    /// For each score in order, the factor the accumulator is scaled by (`ms`: 1 unless the score is a new
    /// maximum) and the value's weight (`vs`: 1 for a new maximum).
    fn steps(&mut self, s: &[f32], ms: &mut [f32], vs: &mut [f32]) {
        for ((&s, ms), vs) in s.iter().zip(ms).zip(vs) {
            (*ms, *vs) = (1.0, 1.0);
            if s > self.m {
                *ms = (self.m - s).exp();
                self.m = s;
            } else {
                *vs = (s - self.m).exp();
            }
            self.sum = self.sum.mul_add(*ms, *vs);
        }
    }

    /// What the accumulator is multiplied by at the end.
    fn inverse(&self) -> f32 {
        if self.sum == 0.0 { 0.0 } else { 1.0 / self.sum }
    }
}

/// Twin of `attention::attend_f16`, reading the keys and values in place from the cache: `runs` are
/// runs of consecutive positions, each (positions, hd) of keys and of values, in position order. A
/// scale by `ms` = 1 is skipped: the accumulator holds f16 values, so it would change nothing.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `q.len()` is a multiple of 64 up to 256.
///
/// # Panics
/// If a run's keys and values differ in length or are not whole rows of `q.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attend_f16<'a>(q: &[f32], runs: impl Iterator<Item = (&'a [f16], &'a [f16])>, scale: f32, out: &mut [f32]) {
    let hd = q.len();
    let nv = hd / 8;
    let mut q16 = [_mm256_setzero_ps(); MAX_HD / 8];
    for i in 0..nv {
        // SAFETY: eight floats inside q.
        q16[i] = round16(unsafe { _mm256_loadu_ps(q.as_ptr().add(8 * i)) });
    }
    let mut acc = [_mm256_setzero_ps(); MAX_HD / 8];
    let mut soft = Softmax::new();
    let (mut s, mut ms, mut vs) = ([0.0f32; KEYS_PER_PASS], [0.0f32; KEYS_PER_PASS], [0.0f32; KEYS_PER_PASS]);
    for (keys, values) in runs {
        assert!(keys.len() == values.len() && keys.len().is_multiple_of(hd), "whole rows of keys and values");
        for (kp, vp) in keys.chunks(KEYS_PER_PASS * hd).zip(values.chunks(KEYS_PER_PASS * hd)) {
            let n = kp.len() / hd;
            for (s, kj) in s.iter_mut().zip(kp.chunks_exact(hd)) {
                // SAFETY: kj is one key of hd f16; the CPU features are this function's.
                *s = unsafe { dot_lanes(kj.as_ptr(), &q16[..nv], hd) } * scale;
            }
            soft.steps(&s[..n], &mut ms[..n], &mut vs[..n]);
            for ((&ms, &vs), vj) in ms.iter().zip(&vs).zip(vp.chunks_exact(hd)) {
                if ms != 1.0 {
                    let msv = _mm256_set1_ps(ms);
                    for a in acc.iter_mut().take(nv) {
                        *a = round16(_mm256_mul_ps(*a, msv));
                    }
                }
                let vsv = _mm256_set1_ps(vs);
                for (i, a) in acc.iter_mut().enumerate().take(nv) {
                    // SAFETY: eight f16 at 8i < hd, inside vj.
                    let v = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(vj.as_ptr().add(8 * i).cast()) });
                    *a = round16(_mm256_fmadd_ps(v, vsv, *a));
                }
            }
        }
    }
    let inv = _mm256_set1_ps(soft.inverse());
    for (i, a) in acc.iter().enumerate().take(nv) {
        // SAFETY: eight floats inside out (hd long).
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), _mm256_mul_ps(*a, inv)) };
    }
}

/// Twin of `attention::attend_tiled` for the keys at absolute positions `start..end`, read transposed
/// from `kt` (built by [`transpose_keys`] with group 0 at `kt_base`), and `values` (rows from `start`).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `q.len()` is a multiple of 64 up to 256; `kt` covers `start..end`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn attend_tiled(
    q: &[f32],
    kt: &[f32],
    kt_base: usize,
    values: &[f32],
    start: usize,
    end: usize,
    scale: f32,
    out: &mut [f32],
) {
    // SAFETY: the caller's contract; the AVX-512 copies only where the CPU has them.
    unsafe { attend_tiled_in(avx512_available(), (q, kt, kt_base, values, start, end, scale, out)) }
}

/// Whether the CPU has AVX-512 F and VL (for [`attend_tiled`]'s wider copy).
fn avx512_available() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // `FERRITE_KERNELS=avx2` caps this too.
    *AVX512.get_or_init(|| {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") && ferrite_tensor::quant::kernel_tier() == "avx512vnni"
    })
}

/// [`attend_tiled`] in its AVX2 copy or (`wide`) its AVX-512VL one.
///
/// # Safety
/// As [`attend_tiled`]; `wide` only where [`avx512_available`].
unsafe fn attend_tiled_in(wide: bool, a: TiledArgs) {
    let hd = a.0.len();
    // SAFETY: the caller's contract.
    unsafe {
        match (hd, wide) {
            (64, false) => tiled_avx2::<64>(a),
            (128, false) => tiled_avx2::<128>(a),
            (192, false) => tiled_avx2::<192>(a),
            (256, false) => tiled_avx2::<256>(a),
            (64, true) => tiled_avx512::<64>(a),
            (128, true) => tiled_avx512::<128>(a),
            (192, true) => tiled_avx512::<192>(a),
            (256, true) => tiled_avx512::<256>(a),
            (hd, _) => unreachable!("head dimension {hd} is not supported()"),
        }
    }
}

/// [`attend_tiled`]'s arguments.
type TiledArgs<'a> = (&'a [f32], &'a [f32], usize, &'a [f32], usize, usize, f32, &'a mut [f32]);

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiled_avx2<const HD: usize>(a: TiledArgs) {
    // SAFETY: the caller's contract.
    unsafe { tiled_body::<HD>(a) }
}

/// The same instructions with AVX-512VL's 32 vector registers, which hold the output accumulator of a
/// 128-wide head whole (AVX2's 16 spill it).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
unsafe fn tiled_avx512<const HD: usize>(a: TiledArgs) {
    // SAFETY: the caller's contract.
    unsafe { tiled_body::<HD>(a) }
}

/// Score groups one tile spans: TILE_KV keys, eight to a group, plus one when the tile's first visible
/// key is not aligned to eight.
const GROUPS: usize = TILE_KV / 8 + 1;

/// The body of [`attend_tiled`] for a head dimension known at compile time, so every accumulator loop
/// has a fixed length and the accumulators stay in registers; inlined into the feature-enabled copies.
#[inline(always)]
unsafe fn tiled_body<const HD: usize>((q, kt, kt_base, values, start, end, scale, out): TiledArgs) {
    unsafe {
        let q = &q[..HD];
        let (mut m, mut sum) = (f32::NEG_INFINITY, 0.0f32);
        // The output accumulator, in memory: each pass over the values holds 64 of it in registers.
        let mut o = [0f32; MAX_HD];
        let o = &mut o[..HD];
        let mut p = [0f32; TILE_KV];
        let mut tile = start / TILE_KV * TILE_KV;
        while tile < end {
            let (lo, hi) = (tile.max(start), (tile + TILE_KV).min(end));
            // Scores of the groups of eight keys from lo's: eight fma chains per register, always
            // GROUPS of them (kt is padded), those past hi unused.
            let g0 = (lo - kt_base) / 8;
            let groups = kt.len() / (HD * 8);
            assert!(g0 + GROUPS <= groups, "transposed keys padded for a whole tile");
            let kg = kt.as_ptr().add(g0 * 8);
            let mut accs = [_mm256_setzero_ps(); GROUPS];
            for d in 0..HD {
                let qd = _mm256_set1_ps(q[d]);
                let kd = kg.add(d * groups * 8);
                for (g, a) in accs.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd.add(g * 8)), *a);
                }
            }
            let mut scores = [0f32; GROUPS * 8];
            for (g, a) in accs.iter().enumerate() {
                _mm256_storeu_ps(scores.as_mut_ptr().add(8 * g), *a);
            }
            p.fill(f32::NEG_INFINITY);
            let first = kt_base + g0 * 8;
            for j in lo..hi {
                p[j - tile] = scores[j - first] * scale;
            }
            let mut tile_max = f32::NEG_INFINITY;
            for &x in &p {
                tile_max = tile_max.max(x);
            }
            let m_new = m.max(tile_max);
            if m_new > m {
                let ms = (m - m_new).exp();
                for x in o.iter_mut() {
                    *x *= ms;
                }
                sum *= ms;
            }
            m = m_new;
            let mut tile_sum = 0.0f64;
            for chunk in p.chunks_exact_mut(16) {
                for x in chunk.iter_mut() {
                    *x = ops::expf_fast(*x - m);
                }
                let c: &[f32; 16] = (&*chunk).try_into().expect("16 lanes");
                tile_sum += crate::attention::reduce16(c) as f64;
            }
            sum = (sum as f64 + tile_sum) as f32;
            assert!((hi - start) * HD <= values.len(), "values cover the keys");
            // 64 dimensions at a time, the keys inside: eight accumulators stay in registers.
            for (b, block) in o.chunks_exact_mut(64).enumerate() {
                let mut acc = [_mm256_setzero_ps(); 8];
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_loadu_ps(block.as_ptr().add(8 * i));
                }
                for j in lo..hi {
                    let w = _mm256_set1_ps(p[j - tile]);
                    let v = values.as_ptr().add((j - start) * HD + 64 * b);
                    for (i, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(8 * i)), w, *a);
                    }
                }
                for (i, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(block.as_mut_ptr().add(8 * i), *a);
                }
            }
            tile += TILE_KV;
        }
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        for (y, &x) in out[..HD].iter_mut().zip(o.iter()) {
            *y = x * inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, hd: usize, seed: f32) -> Vec<f32> {
        // f16-representable values (they come from the f16 cache), with a wide range of scores.
        (0..n * hd).map(|i| f16::from_f32(((i as f32 * seed).sin() * 3.0) + ((i % 13) as f32 - 6.0) * 0.05).to_f32()).collect()
    }

    #[test]
    fn both_paths_are_bit_identical_to_the_scalar_code() {
        if !supported(64) {
            eprintln!("no AVX2/FMA/F16C: nothing to compare");
            return;
        }
        for hd in [64usize, 128, 192, 256] {
            for n in [1usize, 7, 63, 64, 65, 130, 300] {
                let keys = data(n, hd, 0.37);
                let values = data(n, hd, 0.11);
                let q: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.7).cos() * 1.3).collect();
                for scale in [0.125f32, 1.0] {
                    let mut want = vec![0.0; hd];
                    crate::attention::attend_f16(&q, &keys, &values, scale, &mut want);
                    // In place from f16 rows, in runs of 16 positions (a cache block's) and of 5.
                    let (k16, v16): (Vec<f16>, Vec<f16>) =
                        keys.iter().zip(&values).map(|(&k, &v)| (f16::from_f32(k), f16::from_f32(v))).unzip();
                    for run in [16 * hd, 5 * hd] {
                        let mut got = vec![0.0; hd];
                        // SAFETY: supported() checked the CPU; hd is a multiple of 64 up to 256.
                        unsafe { attend_f16(&q, k16.chunks(run).zip(v16.chunks(run)), scale, &mut got) };
                        assert_eq!(got, want, "f16 path hd={hd} n={n} run={run}");
                    }

                    // Tiled: the keys are the visible positions start..start+n of a cache from `lo`.
                    for (lo, start) in [(0usize, 0usize), (3, 3), (3, 10), (64, 100), (90, 90)] {
                        let end = start + n;
                        let mut all = vec![0.0; (end - lo) * hd];
                        all[(start - lo) * hd..].copy_from_slice(&keys);
                        let (base, kt) = transpose_keys(&all, hd, lo);
                        let mut want = vec![0.0; hd];
                        crate::attention::attend_tiled(&q, &keys, &values, start, scale, &mut want);
                        // Both copies: AVX2's, and AVX-512VL's where the CPU has it.
                        for wide in [false, avx512_available()] {
                            let mut got = vec![0.0; hd];
                            // SAFETY: as above; kt covers lo..end; wide only with AVX-512.
                            unsafe { attend_tiled_in(wide, (&q, &kt, base, &values, start, end, scale, &mut got)) };
                            assert_eq!(got, want, "tiled path hd={hd} n={n} lo={lo} start={start} wide={wide}");
                        }
                    }
                }
            }
        }
    }
}
