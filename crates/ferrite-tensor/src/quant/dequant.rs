//! Dequantization: blocks → f32, with ggml's exact arithmetic (`dequantize_row_*` in `ggml-quants.c`),
//! operation for operation, so results match llama.cpp (and gguf-py) bit for bit.
//!
//! Only used off the hot path (embedding rows, tests, debugging), so there is one scalar version.

use half::{bf16, f16};

use super::blocks::*;
use crate::QK_K;

pub(crate) fn f32_row(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

pub(crate) fn f16_row(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

pub(crate) fn bf16_row(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

pub(crate) fn q4_0(src: &[BlockQ4_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for (j, &q) in b.qs.iter().enumerate() {
            y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
            y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub(crate) fn q4_1(src: &[BlockQ4_1], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
        for (j, &q) in b.qs.iter().enumerate() {
            y[j] = (q & 0x0F) as f32 * d + m;
            y[j + 16] = (q >> 4) as f32 * d + m;
        }
    }
}

/// The 5-bit values of a `Q5_0` / `Q5_1` block, without offset (0..=31).
#[inline]
fn q5_values(qh: [u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let qh = u32::from_le_bytes(qh);
    let mut v = [0u8; 32];
    for (j, &q) in qs.iter().enumerate() {
        v[j] = (q & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
        v[j + 16] = (q >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    v
}

pub(crate) fn q5_0(src: &[BlockQ5_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for (o, v) in y.iter_mut().zip(q5_values(b.qh, &b.qs)) {
            *o = (v as i32 - 16) as f32 * d;
        }
    }
}

pub(crate) fn q5_1(src: &[BlockQ5_1], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
        for (o, v) in y.iter_mut().zip(q5_values(b.qh, &b.qs)) {
            *o = v as f32 * d + m;
        }
    }
}

pub(crate) fn q8_0(src: &[BlockQ8_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for (o, &q) in y.iter_mut().zip(b.qs.iter()) {
            *o = q as f32 * d;
        }
    }
}

pub(crate) fn q8_1(src: &[BlockQ8_1], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for (o, &q) in y.iter_mut().zip(b.qs.iter()) {
            *o = q as f32 * d;
        }
    }
}

pub(crate) fn q2k(src: &[BlockQ2K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        // Sub-block `sb` (16 elements) = half h, bit pair s, upper/lower 16 bytes u.
        for sb in 0..16 {
            let (h, s, u) = (sb / 8, (sb % 8) / 2, sb % 2);
            let sc = b.scales[sb];
            let dl = d * (sc & 0x0F) as f32;
            let ml = dmin * (sc >> 4) as f32;
            let q = &b.qs[32 * h + 16 * u..][..16];
            for (o, &qb) in y[16 * sb..][..16].iter_mut().zip(q) {
                *o = dl * ((qb >> (2 * s)) & 3) as f32 - ml;
            }
        }
    }
}

pub(crate) fn q3k(src: &[BlockQ3K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        let scales = q3k_scales(&b.scales);
        for (sb, &sc) in scales.iter().enumerate() {
            let (h, s, u) = (sb / 8, (sb % 8) / 2, sb % 2);
            let dl = d * sc as f32;
            let hbit = 4 * h + s; // bit of hmask[l] for these elements
            for l in 16 * u..16 * u + 16 {
                let low = ((b.qs[32 * h + l] >> (2 * s)) & 3) as i32;
                let sub = if b.hmask[l] >> hbit & 1 == 1 { 0 } else { 4 };
                y[128 * h + 32 * s + l] = dl * (low - sub) as f32;
            }
        }
    }
}

pub(crate) fn q4k(src: &[BlockQ4K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        let (sc, mn) = k4_scale_min(&b.scales);
        for j in 0..4 {
            let (d1, m1) = (d * sc[2 * j] as f32, dmin * mn[2 * j] as f32);
            let (d2, m2) = (d * sc[2 * j + 1] as f32, dmin * mn[2 * j + 1] as f32);
            for l in 0..32 {
                let q = b.qs[32 * j + l];
                y[64 * j + l] = d1 * (q & 0x0F) as f32 - m1;
                y[64 * j + 32 + l] = d2 * (q >> 4) as f32 - m2;
            }
        }
    }
}

pub(crate) fn q5k(src: &[BlockQ5K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        let (sc, mn) = k4_scale_min(&b.scales);
        for j in 0..4 {
            let (d1, m1) = (d * sc[2 * j] as f32, dmin * mn[2 * j] as f32);
            let (d2, m2) = (d * sc[2 * j + 1] as f32, dmin * mn[2 * j + 1] as f32);
            for l in 0..32 {
                let q = b.qs[32 * j + l];
                let h = b.qh[l] >> (2 * j);
                y[64 * j + l] = d1 * ((q & 0x0F) | ((h & 1) << 4)) as f32 - m1;
                y[64 * j + 32 + l] = d2 * ((q >> 4) | ((h >> 1 & 1) << 4)) as f32 - m2;
            }
        }
    }
}

/// The 256 six-bit values of a `Q6_K` block, already offset by −32.
#[inline]
pub(crate) fn q6k_values(b: &BlockQ6K) -> [i8; QK_K] {
    let mut v = [0i8; QK_K];
    for h in 0..2 {
        let (ql, qh) = (&b.ql[64 * h..][..64], &b.qh[32 * h..][..32]);
        let out = &mut v[128 * h..][..128];
        for l in 0..32 {
            out[l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
            out[l + 32] = ((ql[l + 32] & 0x0F) | ((qh[l] >> 2 & 3) << 4)) as i8 - 32;
            out[l + 64] = ((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) as i8 - 32;
            out[l + 96] = ((ql[l + 32] >> 4) | ((qh[l] >> 6) << 4)) as i8 - 32;
        }
    }
    v
}

pub(crate) fn q6k(src: &[BlockQ6K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        let q = q6k_values(b);
        for (sb, &sc) in b.scales.iter().enumerate() {
            let ds = d * sc as f32;
            for l in 16 * sb..16 * sb + 16 {
                y[l] = ds * q[l] as f32;
            }
        }
    }
}

pub(crate) fn q8k(src: &[BlockQ8K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d;
        for (o, &q) in y.iter_mut().zip(b.qs.iter()) {
            *o = d * q as f32;
        }
    }
}
