//! Causal self-attention over each sequence's KV cache, with online softmax (no score matrix is ever
//! materialised) and grouped-query heads reading their shared KV head.
//!
//! The arithmetic deliberately follows llama.cpp's CPU flash attention, which has two paths that round
//! differently — and greedy decoding is checked against it token for token:
//! - a sequence whose batch has fewer than [`TILE_Q`] tokens (decoding, short prompts; a piece of a prompt
//!   counts its whole batch, see `SeqBatch::place`): the query is
//!   rounded to f16, each key's score is an f16 dot product summed in ggml's SIMD lane order, and the
//!   output accumulator is kept in f16, rescaled whenever a new maximum score appears;
//! - longer chunks: keys are taken in tiles of [`TILE_KV`] aligned positions; scores are f32 fused
//!   multiply-add chains, exponentials use ggml's polynomial ([`ops::expf_fast`]), and the f32 output
//!   accumulator is rescaled once per tile.

use half::f16;
use rayon::prelude::*;

use ferrite_tensor::{ops, par};

use crate::layers::Step;
use crate::ModelConfig;

/// Query rows per tile in llama.cpp (`GGML_FA_TILE_Q`): a sequence whose batch has at least this many
/// tokens takes the tiled path.
const TILE_Q: usize = 64;
/// Keys per tile (`GGML_FA_TILE_KV`).
pub(crate) const TILE_KV: usize = 64;

/// Attention of layer `layer` for every row of the step.
///
/// q: (n_rows, n_heads·head_dim), k and v: (n_rows, n_kv_heads·head_dim), all before RoPE. RoPE is applied
/// at each row's position, k and v are stored in the row's sequence cache, then each query head attends
/// over its sequence's cached positions (within the layer's sliding window). Returns
/// (n_rows, n_heads·head_dim).
pub(crate) fn attention(step: &mut Step, cfg: &ModelConfig, layer: usize, q: &mut [f32], k: &mut [f32], v: &[f32]) -> Vec<f32> {
    let (hd, n_heads, n_kv) = (cfg.head_dim, cfg.n_heads, cfg.n_kv_heads);
    let rope = &cfg.rope[layer];
    let kv_w = n_kv * hd;
    for (r, (&s, &p)) in step.seq.iter().zip(&step.pos).enumerate() {
        let qr = &mut q[r * n_heads * hd..(r + 1) * n_heads * hd];
        rope.apply(qr, hd, p);
        if cfg.attn_prescale_q {
            qr.iter_mut().for_each(|x| *x *= cfg.attn_scale);
        }
        rope.apply(&mut k[r * kv_w..(r + 1) * kv_w], hd, p);
        step.pool.store(layer, &step.seqs[s].kv.blocks, p, &k[r * kv_w..(r + 1) * kv_w], &v[r * kv_w..(r + 1) * kv_w]);
    }

    // The tiled path's keys and values (and the scalar code's), per kv head, widened to f32 once for all
    // a sequence's query rows and all heads of a group (f16 → f32 is exact). kv[s][g] = (first position,
    // keys, values). The SIMD per-key path reads the cache in place instead.
    let window = cfg.window[layer];
    let first_visible = |p: usize| window.map_or(0, |w| (p + 1).saturating_sub(w));
    let mut span = vec![(usize::MAX, 0usize); step.seqs.len()];
    for (&s, &p) in step.seq.iter().zip(&step.pos) {
        span[s] = (span[s].0.min(first_visible(p)), span[s].1.max(p + 1));
    }
    let tiled: Vec<bool> = (0..step.seqs.len()).map(|s| step.batch_size(s) >= TILE_Q).collect();
    let simd = simd_supported(hd);
    let pool = &*step.pool;
    let kv: Vec<Vec<WideHead>> = step
        .seqs
        .par_iter()
        .zip(&span)
        .zip(&tiled)
        .map(|((sq, &(lo, hi)), &tiled)| {
            if lo >= hi || (simd && !tiled) {
                return Vec::new();
            }
            (0..n_kv)
                .map(|g| {
                    let (keys, values) = pool.gather(layer, g, &sq.kv.blocks, lo..hi);
                    let (kt_base, kt) = if tiled && simd { transpose_keys(&keys, hd, lo) } else { (0, Vec::new()) };
                    WideHead { lo, keys, values, kt_base, kt }
                })
                .collect()
        })
        .collect();

    let (seq, pos) = (&step.seq, &step.pos);
    let group = n_heads / n_kv;
    let scale = if cfg.attn_prescale_q { 1.0 } else { cfg.attn_scale };
    let mut out = vec![0.0f32; q.len()];
    par::for_each_chunk_mut(&mut out, hd, |i, o| {
        let (r, h) = (i / n_heads, i % n_heads);
        let p = pos[r];
        let start = first_visible(p);
        let qh = &q[i * hd..(i + 1) * hd];
        #[cfg(target_arch = "x86_64")]
        if simd && !tiled[seq[r]] {
            let runs = pool.runs(layer, h / group, &step.seqs[seq[r]].kv.blocks, start..p + 1);
            // SAFETY: simd_supported() checked the CPU features and the head dimension.
            unsafe { attention_avx2::attend_f16(qh, runs, scale, o) };
            return;
        }
        let w = &kv[seq[r]][h / group];
        let range = (start - w.lo) * hd..(p + 1 - w.lo) * hd;
        let (keys, values) = (&w.keys[range.clone()], &w.values[range]);
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: as above; kt was built for tiled sequences and covers their visible positions.
            unsafe { attention_avx2::attend_tiled(qh, &w.kt, w.kt_base, values, start, p + 1, scale, o) };
            return;
        }
        attend(tiled[seq[r]], qh, keys, values, start, scale, o);
    });
    out
}

/// One kv head's keys and values from a first position on, widened to f32, and for the tiled SIMD path
/// the keys transposed in groups of eight.
struct WideHead {
    lo: usize,
    keys: Vec<f32>,
    values: Vec<f32>,
    // Read by the x86-64 SIMD path only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    kt_base: usize,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    kt: Vec<f32>,
}

#[cfg(target_arch = "x86_64")]
use crate::attention_avx2::{self, transpose_keys};

#[cfg(target_arch = "x86_64")]
fn simd_supported(hd: usize) -> bool {
    attention_avx2::supported(hd)
}

#[cfg(not(target_arch = "x86_64"))]
fn simd_supported(_: usize) -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn transpose_keys(_: &[f32], _: usize, _: usize) -> (usize, Vec<f32>) {
    unreachable!("no SIMD attention on this architecture")
}

/// One query head: the tiled or the per-key path, compiled with FMA where the CPU has it (the fused
/// multiply-adds give the same bits either way; without the instruction they are library calls).
fn attend(tiled: bool, q: &[f32], keys: &[f32], values: &[f32], start: usize, scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if ops::fma_available() {
        // SAFETY: the CPU has FMA (checked above).
        return unsafe { attend_fma(tiled, q, keys, values, start, scale, out) };
    }
    attend_body(tiled, q, keys, values, start, scale, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn attend_fma(tiled: bool, q: &[f32], keys: &[f32], values: &[f32], start: usize, scale: f32, out: &mut [f32]) {
    attend_body(tiled, q, keys, values, start, scale, out)
}

#[inline(always)]
fn attend_body(tiled: bool, q: &[f32], keys: &[f32], values: &[f32], start: usize, scale: f32, out: &mut [f32]) {
    if tiled {
        attend_tiled(q, keys, values, start, scale, out)
    } else {
        attend_f16(q, keys, values, scale, out)
    }
}

/// One query against keys/values (positions, head_dim), per-key online softmax with an f16 accumulator.
#[inline(always)]
pub(crate) fn attend_f16(q: &[f32], keys: &[f32], values: &[f32], scale: f32, out: &mut [f32]) {
    let hd = q.len();
    let q16: Vec<f32> = q.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    let mut acc = vec![f16::ZERO; hd];
    let (mut m, mut sum) = (f32::NEG_INFINITY, 0.0f32);
    for (kj, vj) in keys.chunks_exact(hd).zip(values.chunks_exact(hd)) {
        let s = dot_lanes(kj, &q16) * scale;
        let (mut ms, mut vs) = (1.0f32, 1.0f32);
        if s > m {
            ms = (m - s).exp();
            m = s;
            acc.iter_mut().for_each(|a| *a = f16::from_f32(a.to_f32() * ms));
        } else {
            vs = (s - m).exp();
        }
        acc.iter_mut().zip(vj).for_each(|(a, v)| *a = f16::from_f32(v.mul_add(vs, a.to_f32())));
        sum = sum.mul_add(ms, vs);
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    out.iter_mut().zip(&acc).for_each(|(o, a)| *o = a.to_f32() * inv);
}

/// Dot product summed the way ggml's AVX-512 `ggml_vec_dot_f16` sums: four 16-lane fused accumulators
/// over blocks of 64, folded pairwise, then the lanes reduced as a tree; a tail in f64.
#[inline(always)]
fn dot_lanes(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len();
    let np = n & !63;
    let mut acc = [[0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, a) in acc.iter_mut().enumerate() {
            for (l, al) in a.iter_mut().enumerate() {
                let idx = i + j * 16 + l;
                *al = x[idx].mul_add(y[idx], *al);
            }
        }
    }
    let mut v = [0f32; 16];
    for l in 0..16 {
        v[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    }
    let mut sum = reduce16(&v) as f64;
    for i in np..n {
        sum += (x[i] * y[i]) as f64;
    }
    sum as f32
}

/// `_mm512_reduce_add_ps` as GCC expands it: halves added pairwise down to one lane.
#[inline(always)]
pub(crate) fn reduce16(v: &[f32; 16]) -> f32 {
    let t8: [f32; 8] = std::array::from_fn(|i| v[i + 8] + v[i]);
    let t4: [f32; 4] = std::array::from_fn(|i| t8[i + 4] + t8[i]);
    (t4[0] + t4[2]) + (t4[1] + t4[3])
}

/// One query against keys/values that start at cache position `start`, in tiles of TILE_KV positions
/// aligned to multiples of TILE_KV, with an f32 accumulator rescaled per tile.
#[inline(always)]
pub(crate) fn attend_tiled(q: &[f32], keys: &[f32], values: &[f32], start: usize, scale: f32, out: &mut [f32]) {
    let hd = q.len();
    let n = keys.len() / hd;
    let end = start + n; // one past the last visible position
    let (mut m, mut sum) = (f32::NEG_INFINITY, 0.0f32);
    out.fill(0.0);
    let mut p = [0f32; TILE_KV];
    let mut tile = start / TILE_KV * TILE_KV;
    while tile < end {
        // Scores of the visible keys of this tile; the rest of the tile is masked (-inf).
        p.fill(f32::NEG_INFINITY);
        let (lo, hi) = (tile.max(start), (tile + TILE_KV).min(end));
        for j in lo..hi {
            let kj = &keys[(j - start) * hd..(j - start + 1) * hd];
            let s = kj.iter().zip(q).fold(0.0f32, |acc, (k, q)| q.mul_add(*k, acc));
            p[j - tile] = s * scale;
        }
        let tile_max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let m_new = m.max(tile_max);
        if m_new > m {
            let ms = (m - m_new).exp();
            out.iter_mut().for_each(|o| *o *= ms);
            sum *= ms;
        }
        m = m_new;
        // Probabilities, summed per 16 lanes in f64 as ggml_vec_soft_max_f32 does.
        let mut tile_sum = 0.0f64;
        for chunk in p.chunks_exact_mut(16) {
            chunk.iter_mut().for_each(|x| *x = ops::expf_fast(*x - m));
            tile_sum += reduce16(&(&*chunk).try_into().expect("16 lanes")) as f64;
        }
        sum = (sum as f64 + tile_sum) as f32;
        for j in lo..hi {
            let vj = &values[(j - start) * hd..(j - start + 1) * hd];
            let w = p[j - tile];
            out.iter_mut().zip(vj).for_each(|(o, v)| *o = v.mul_add(w, *o));
        }
        tile += TILE_KV;
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    out.iter_mut().for_each(|o| *o *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(q: &[f32], keys: &[f32], values: &[f32], scale: f32) -> Vec<f64> {
        let hd = q.len();
        let s: Vec<f64> = keys.chunks(hd).map(|k| k.iter().zip(q).map(|(k, q)| *k as f64 * *q as f64).sum::<f64>() * scale as f64).collect();
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = w.iter().sum();
        (0..hd).map(|d| w.iter().zip(values.chunks(hd)).map(|(w, v)| w * v[d] as f64).sum::<f64>() / z).collect()
    }

    #[test]
    fn both_paths_compute_softmax_attention() {
        let hd = 64;
        for n in [1usize, 5, 63, 64, 65, 200] {
            let f = |i: usize, s: f32| f16::from_f32(((i as f32 * s).sin() * 2.0).round() / 4.0 + (i % 7) as f32 * 0.01);
            let keys: Vec<f16> = (0..n * hd).map(|i| f(i, 0.37)).collect();
            let values: Vec<f16> = (0..n * hd).map(|i| f(i, 0.11)).collect();
            let q: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.7).cos()).collect();
            let (keys, values): (Vec<f32>, Vec<f32>) = (keys.iter().map(|k| k.to_f32()).collect(), values.iter().map(|v| v.to_f32()).collect());
            let want = reference(&q, &keys, &values, 0.125);
            for start in [0usize, 3, 64, 100] {
                let mut a = vec![0.0; hd];
                attend_tiled(&q, &keys, &values, start, 0.125, &mut a);
                let mut b = vec![0.0; hd];
                attend_f16(&q, &keys, &values, 0.125, &mut b);
                for d in 0..hd {
                    assert!((a[d] as f64 - want[d]).abs() < 1e-4, "tiled n={n} start={start} d={d}: {} vs {}", a[d], want[d]);
                    // f16 query and accumulator: about three decimal digits.
                    assert!((b[d] as f64 - want[d]).abs() < 4e-3 * (1.0 + want[d].abs()), "f16 n={n} d={d}: {} vs {}", b[d], want[d]);
                }
            }
        }
    }

    #[test]
    fn lane_dot_matches_plain_sum() {
        let x: Vec<f32> = (0..200).map(|i| (i as f32).sin()).collect();
        let y: Vec<f32> = (0..200).map(|i| (i as f32 * 0.3).cos()).collect();
        let plain: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((dot_lanes(&x, &y) as f64 - plain).abs() < 1e-4);
        assert_eq!(reduce16(&[1.0; 16]), 16.0);
    }
}
