//! Quantized block layouts, byte for byte as ggml stores them (`ggml-common.h`).
//!
//! A quantized row is a sequence of blocks; each block holds `block_size` elements as small integers plus
//! one or two f16 scales. Two families:
//!
//! - 32-element blocks (`Q4_0` … `Q8_1`): one scale `d` (and for `_1` types a min `m`) per block;
//!   element `i` is `d·q[i]` (`_0`) or `d·q[i] + m` (`_1`).
//! - 256-element super-blocks (`Q2_K` … `Q8_K`): 8 or 16 sub-blocks, each with its own small integer
//!   scale (and min) that the f16 super-block scales `d` / `dmin` multiply.
//!
//! Every struct is `#[repr(C, packed)]`: GGUF data guarantees no alignment for a row (and an activation
//! buffer is a plain `Vec<u8>`), so making every block 1-aligned lets `bytemuck` view any byte slice of
//! the right length as blocks. Fields are read by value (`b.d`), byte arrays by reference.
//!
//! Sizes are pinned to [`DType::type_size`] at compile time.

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::{DType, QK_K};

/// Elements per block of the 32-element formats.
pub const QK: usize = 32;

/// `Q4_0`: 32 × 4-bit, `x = d·(q − 8)`. Byte `j` of `qs` holds element `j` (low nibble) and `j+16` (high).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

/// `Q4_1`: 32 × 4-bit, `x = d·q + m`. Nibbles as in [`BlockQ4_0`].
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

/// `Q5_0`: 32 × 5-bit, `x = d·(q − 16)`. Low 4 bits as in [`BlockQ4_0`]; bit `i` of the little-endian
/// `qh` is the fifth bit of element `i`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// `Q5_1`: 32 × 5-bit, `x = d·q + m`. Bits as in [`BlockQ5_0`].
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// `Q8_0`: 32 × int8, `x = d·q`. Also the activation format for `Q4_0`, `Q5_0` and `Q8_0` weights.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// `Q8_1`: `Q8_0` plus `s = d·Σq`, which lets a dot product with a `_1` weight apply the weight's min
/// without touching the quants. Activation format for `Q4_1` and `Q5_1` weights.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK],
}

/// `Q2_K`: 16 sub-blocks of 16 × 2-bit, `x = d·sc·q − dmin·m`. `scales[j]` holds sub-block `j`'s scale
/// (low nibble) and min (high nibble). In each 128-element half, byte `l` of the half's 32 `qs` bytes
/// holds elements `l`, `l+32`, `l+64`, `l+96` in bit pairs 0-1, 2-3, 4-5, 6-7.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

/// `Q3_K`: 16 sub-blocks of 16 × 3-bit, `x = d·(sc − 32)·(q − 4·!h)`. Low 2 bits laid out as in
/// [`BlockQ2K`]; bit `k` of `hmask[l]` is the high bit of element `32k + l`, and a *clear* bit subtracts
/// 4. The 16 six-bit scales are packed into 12 bytes (see [`q3k_scales`]).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: f16,
}

/// `Q4_K`: 8 sub-blocks of 32 × 4-bit, `x = d·sc·q − dmin·m`. Six-bit scales and mins packed in 12
/// bytes (see [`k4_scale_min`]). Each 64-element chunk `j` uses `qs[32j..32j+32]`: low nibbles are
/// elements `64j + l`, high nibbles `64j + 32 + l`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

/// `Q5_K`: [`BlockQ4K`] plus a fifth bit: bit `k` of `qh[l]` belongs to element `32k + l`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// `Q6_K`: 16 sub-blocks of 16 × 6-bit, `x = d·sc·(q − 32)` with signed 8-bit `sc`. In each 128-element
/// half `h`, with `ql = ql[64h..]` and `qh = qh[32h..]`, element `l` (`l < 32`) is
/// `ql[l] & 15 | (qh[l] & 3) << 4`, `l+32` is `ql[l+32] & 15 | (qh[l] >> 2 & 3) << 4`, `l+64` is
/// `ql[l] >> 4 | (qh[l] >> 4 & 3) << 4` and `l+96` is `ql[l+32] >> 4 | (qh[l] >> 6) << 4`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// `Q8_K`: 256 × int8 with an f32 scale and the sums of each 16 quants, which K-quant dot products
/// use to apply mins and offsets without touching the quants. Only ever an activation format.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

/// Rows side by side in an interleaved block ([`BlockQ4_0x16`], [`BlockQ4Kx16`], [`BlockQ5_0x16`],
/// [`BlockQ8_0x16`], [`BlockQ6Kx16`]): one 32-bit lane of a 512-bit register each.
pub const INTERLEAVED_ROWS: usize = 16;

/// Puts row `r`'s 16 bytes of nibbles (`qs` of a `Q4_0` or `Q5_0` block) into the interleaved `qs` of
/// sixteen rows: bytes `4r..4r+4` of the `j`-th 64 bytes are the row's `qs[4j..4j+4]`.
fn put_nibble_lanes(qs: &mut [u8; 256], r: usize, row: &[u8; QK / 2]) {
    for j in 0..4 {
        qs[64 * j + 4 * r..][..4].copy_from_slice(&row[4 * j..4 * j + 4]);
    }
}

/// Row `r`'s 16 bytes of nibbles back from an interleaved `qs` ([`put_nibble_lanes`]).
fn take_nibble_lanes(qs: &[u8; 256], r: usize) -> [u8; QK / 2] {
    std::array::from_fn(|i| qs[64 * (i / 4) + 4 * r + i % 4])
}

/// Sixteen `Q4_0` rows' blocks at the same column, interleaved so that a 512-bit register holds one
/// 32-bit lane per row (ggml's `block_q4_0x8` idea, at AVX-512's width): `d[r]` is row `r`'s scale,
/// and bytes `4r..4r+4` of the `j`-th 64 bytes of `qs` are row `r`'s `qs[4j..4j+4]` — low nibbles are
/// elements `4j..4j+4`, high nibbles `16+4j..16+4j+4`. Nibbles stay as stored (`q + 8`).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0x16 {
    pub d: [f16; 16],
    pub qs: [u8; 256],
}

impl BlockQ4_0x16 {
    /// Block `b` of each of 16 rows, interleaved.
    pub fn pack(rows: [&[BlockQ4_0]; INTERLEAVED_ROWS], b: usize) -> Self {
        let mut d = [f16::ZERO; 16];
        let mut qs = [0u8; 256];
        for (r, row) in rows.iter().enumerate() {
            let src = &row[b];
            d[r] = src.d;
            put_nibble_lanes(&mut qs, r, &src.qs);
        }
        BlockQ4_0x16 { d, qs }
    }

    /// Row `r`'s block, as [`pack`](Self::pack) took it.
    pub fn unpack(&self, r: usize) -> BlockQ4_0 {
        let qs = take_nibble_lanes(&self.qs, r);
        BlockQ4_0 { d: { self.d }[r], qs }
    }
}

/// Sixteen `Q4_K` rows' super-blocks at the same column, interleaved like [`BlockQ4_0x16`], with the
/// 6-bit scales and mins decoded at repack (64 bytes more than the sixteen blocks, 2.8%).
///
/// - `d[r]`, `dmin[r]`: row `r`'s super-block scales.
/// - `scales[j][r]`: sub-block `j`'s scale of row `r`; `mins[p][r]`: row `r`'s mins of sub-blocks `2p`
///   and `2p + 1` (a pair of bytes, so they widen to one 32-bit lane of two i16).
/// - `qs`: four 512-byte chunks `p`, one per 64 elements; bytes `4r..4r+4` of the `k`-th 64 bytes of
///   chunk `p` are row `r`'s `qs[32p + 4k..32p + 4k + 4]` — low nibbles are elements `4k..4k+4` of
///   sub-block `2p`, high nibbles the same of sub-block `2p + 1`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4Kx16 {
    pub d: [f16; 16],
    pub dmin: [f16; 16],
    pub scales: [[u8; 16]; 8],
    pub mins: [[[u8; 2]; 16]; 4],
    pub qs: [u8; 2048],
}

impl BlockQ4Kx16 {
    /// Super-block `b` of each of 16 rows, interleaved.
    pub fn pack(rows: [&[BlockQ4K]; INTERLEAVED_ROWS], b: usize) -> Self {
        let mut out = BlockQ4Kx16::zeroed();
        let (mut d, mut dmin) = ([f16::ZERO; 16], [f16::ZERO; 16]);
        let (mut scales, mut mins) = ([[0u8; 16]; 8], [[[0u8; 2]; 16]; 4]);
        for (r, row) in rows.iter().enumerate() {
            let src = &row[b];
            (d[r], dmin[r]) = (src.d, src.dmin);
            let (sc, mn) = k4_scale_min(&src.scales);
            for j in 0..8 {
                scales[j][r] = sc[j];
                mins[j / 2][r][j % 2] = mn[j];
            }
            for p in 0..4 {
                for k in 0..8 {
                    out.qs[512 * p + 64 * k + 4 * r..][..4].copy_from_slice(&src.qs[32 * p + 4 * k..][..4]);
                }
            }
        }
        (out.d, out.dmin, out.scales, out.mins) = (d, dmin, scales, mins);
        out
    }
}

/// Sixteen `Q5_0` rows' blocks at the same column, interleaved like [`BlockQ4_0x16`] (`d`, `qs`), with the
/// fifth bits rearranged so that they fit the same lanes: bit `4r + k` of `qh[l]` (little-endian) is the
/// fifth bit of row `r`'s element `4l + k`. Unpacked, values are as stored (`q + 16`). Same size as the
/// sixteen blocks.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0x16 {
    pub d: [f16; 16],
    pub qh: [[u8; 8]; 8],
    pub qs: [u8; 256],
}

impl BlockQ5_0x16 {
    /// Block `b` of each of 16 rows, interleaved.
    pub fn pack(rows: [&[BlockQ5_0]; INTERLEAVED_ROWS], b: usize) -> Self {
        let mut out = BlockQ5_0x16::zeroed();
        let (mut d, mut qh) = ([f16::ZERO; 16], [0u64; 8]);
        for (r, row) in rows.iter().enumerate() {
            let src = &row[b];
            d[r] = src.d;
            let bits = u32::from_le_bytes(src.qh) as u64;
            for (l, h) in qh.iter_mut().enumerate() {
                *h |= (bits >> (4 * l) & 0xF) << (4 * r);
            }
            put_nibble_lanes(&mut out.qs, r, &src.qs);
        }
        (out.d, out.qh) = (d, qh.map(u64::to_le_bytes));
        out
    }

    /// Row `r`'s block, as [`pack`](Self::pack) took it.
    pub fn unpack(&self, r: usize) -> BlockQ5_0 {
        let qs = take_nibble_lanes(&self.qs, r);
        let qh = (0..8).fold(0u32, |h, l| h | ((u64::from_le_bytes(self.qh[l]) >> (4 * r) & 0xF) as u32) << (4 * l));
        BlockQ5_0 { d: { self.d }[r], qh: qh.to_le_bytes(), qs }
    }
}

/// A [`BlockQ5_0x16`] with its fifth bits merged in: one byte per value (`q + 16`), laid out as
/// [`BlockQ8_0x16`]'s `qs` (bytes `4r..4r+4` of the `l`-th 64 bytes are row `r`'s elements `4l..4l+4`).
/// Not a storage format: the form a matmul with many tokens widens a tile of weights into once, so
/// that its passes over the tile load values instead of merging bits again each pass.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct WideQ5_0x16 {
    pub d: [f16; 16],
    pub qs: [u8; 512],
}

impl WideQ5_0x16 {
    /// The scalar widening (the AVX2 one's twin: [`super::interleaved::widen_q5_0x16_avx2`]).
    pub fn widen(b: &BlockQ5_0x16) -> Self {
        let mut out = WideQ5_0x16 { d: b.d, qs: [0; 512] };
        for r in 0..INTERLEAVED_ROWS {
            let row = b.unpack(r);
            let high = u32::from_le_bytes(row.qh);
            for e in 0..QK {
                let nibble = if e < QK / 2 { row.qs[e] & 0x0F } else { row.qs[e - QK / 2] >> 4 };
                out.qs[64 * (e / 4) + 4 * r + e % 4] = nibble | ((high >> e & 1) as u8) << 4;
            }
        }
        out
    }
}

/// Sixteen `Q8_0` rows' blocks at the same column, interleaved so that a 512-bit register holds one
/// 32-bit lane per row: bytes `4r..4r+4` of the `l`-th 64 bytes of `qs` are row `r`'s elements
/// `4l..4l+4`, stored unsigned as `q + 128` (the sign bit flipped, ready for `vpdpbusd`).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0x16 {
    pub d: [f16; 16],
    pub qs: [u8; 512],
}

impl BlockQ8_0x16 {
    /// Block `b` of each of 16 rows, interleaved.
    pub fn pack(rows: [&[BlockQ8_0]; INTERLEAVED_ROWS], b: usize) -> Self {
        let mut out = BlockQ8_0x16::zeroed();
        let mut d = [f16::ZERO; 16];
        for (r, row) in rows.iter().enumerate() {
            let src = &row[b];
            d[r] = src.d;
            for l in 0..8 {
                for k in 0..4 {
                    out.qs[64 * l + 4 * r + k] = src.qs[4 * l + k] as u8 ^ 0x80;
                }
            }
        }
        out.d = d;
        out
    }

    /// Row `r`'s block, as [`pack`](Self::pack) took it.
    pub fn unpack(&self, r: usize) -> BlockQ8_0 {
        let qs = std::array::from_fn(|i| (self.qs[64 * (i / 4) + 4 * r + i % 4] ^ 0x80) as i8);
        BlockQ8_0 { d: { self.d }[r], qs }
    }
}

/// Sixteen `Q6_K` rows' super-blocks at the same column, interleaved so that one 512-bit register holds
/// four consecutive values of one sub-block for each of the sixteen rows. Values are unsigned, as
/// stored (`q + 32`, in 0..64). Same size as the sixteen blocks.
///
/// Register `k` (`k < 4`) of sub-block `j` holds, in bytes `4r..4r+4`, row `r`'s elements
/// `16j + 4k .. 16j + 4k + 4`:
/// - `d[r]`: row `r`'s scale; `scales[p][r]`: its signed scales of sub-blocks `2p` and `2p + 1` (a pair
///   of bytes, so they widen to one 32-bit lane of two i16).
/// - `q[3j..3j + 3]`: sub-block `j`'s three 64-byte runs, in the order the kernels read them (so a
///   block is one stream):
///   - `q[3j + k % 2]`, the low bits: its byte `4r + i` holds element `16j + 4k + i`'s low four bits, in
///     its low nibble for `k < 2` and its high nibble for `k ≥ 2`;
///   - `q[3j + 2]`, the high bits: bits `2k..2k+2` of its byte `4r + i` are element `16j + 4k + i`'s
///     high two bits.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6Kx16 {
    pub d: [f16; 16],
    pub scales: [[[i8; 2]; 16]; 8],
    pub q: [[u8; 64]; 48],
}

impl BlockQ6Kx16 {
    /// Super-block `b` of each of 16 rows, interleaved.
    pub fn pack(rows: [&[BlockQ6K]; INTERLEAVED_ROWS], b: usize) -> Self {
        let mut out = BlockQ6Kx16::zeroed();
        let (mut d, mut scales) = ([f16::ZERO; 16], [[[0i8; 2]; 16]; 8]);
        for (r, row) in rows.iter().enumerate() {
            let src = &row[b];
            d[r] = src.d;
            let v = super::dequant::q6k_values(src).map(|q| (q + 32) as u8);
            for j in 0..16 {
                scales[j / 2][r][j % 2] = src.scales[j];
                for k in 0..4 {
                    for i in 0..4 {
                        let q = v[16 * j + 4 * k + i];
                        out.q[3 * j + k % 2][4 * r + i] |= (q & 0x0F) << (4 * (k / 2));
                        out.q[3 * j + 2][4 * r + i] |= (q >> 4) << (2 * k);
                    }
                }
            }
        }
        (out.d, out.scales) = (d, scales);
        out
    }

    /// Row `r`'s 256 values `q + 32`, in element order.
    pub fn values(&self, r: usize) -> [u8; QK_K] {
        std::array::from_fn(|e| {
            let (j, k, i) = (e / 16, e % 16 / 4, e % 4);
            let low = self.q[3 * j + k % 2][4 * r + i] >> (4 * (k / 2)) & 0x0F;
            let high = self.q[3 * j + 2][4 * r + i] >> (2 * k) & 3;
            low | high << 4
        })
    }

    /// Row `r`'s super-block, as [`pack`](Self::pack) took it (re-encoded in `Q6_K`'s layout).
    pub fn unpack(&self, r: usize) -> BlockQ6K {
        let v = self.values(r);
        let mut out = BlockQ6K {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales: std::array::from_fn(|j| self.scales[j / 2][r][j % 2]),
            d: { self.d }[r],
        };
        // The inverse of `q6k_values`: per 128-element half, element l + 32m's low nibble in ql[l + 32(m % 2)]
        // (low nibble for m < 2), its high bits at bit 2m of qh[l].
        for h in 0..2 {
            for l in 0..32 {
                for m in 0..4 {
                    let q = v[128 * h + l + 32 * m];
                    out.ql[64 * h + l + 32 * (m % 2)] |= (q & 0x0F) << (4 * (m / 2));
                    out.qh[32 * h + l] |= (q >> 4) << (2 * m);
                }
            }
        }
        out
    }
}

const _: () = assert!(size_of::<BlockQ4_0>() == DType::Q4_0.type_size());
const _: () = assert!(size_of::<BlockQ4_1>() == DType::Q4_1.type_size());
const _: () = assert!(size_of::<BlockQ5_0>() == DType::Q5_0.type_size());
const _: () = assert!(size_of::<BlockQ5_1>() == DType::Q5_1.type_size());
const _: () = assert!(size_of::<BlockQ8_0>() == DType::Q8_0.type_size());
const _: () = assert!(size_of::<BlockQ8_1>() == DType::Q8_1.type_size());
const _: () = assert!(size_of::<BlockQ2K>() == DType::Q2K.type_size());
const _: () = assert!(size_of::<BlockQ3K>() == DType::Q3K.type_size());
const _: () = assert!(size_of::<BlockQ4K>() == DType::Q4K.type_size());
const _: () = assert!(size_of::<BlockQ5K>() == DType::Q5K.type_size());
const _: () = assert!(size_of::<BlockQ6K>() == DType::Q6K.type_size());
const _: () = assert!(size_of::<BlockQ8K>() == DType::Q8K.type_size());
const _: () = assert!(align_of::<BlockQ8K>() == 1);
const _: () = assert!(size_of::<BlockQ4_0x16>() == 16 * DType::Q4_0.type_size());
const _: () = assert!(size_of::<BlockQ4Kx16>() == 16 * DType::Q4K.type_size() + 64);
const _: () = assert!(size_of::<BlockQ5_0x16>() == 16 * DType::Q5_0.type_size());
const _: () = assert!(size_of::<BlockQ8_0x16>() == 16 * DType::Q8_0.type_size());
const _: () = assert!(size_of::<WideQ5_0x16>() == size_of::<BlockQ8_0x16>());
const _: () = assert!(size_of::<BlockQ6Kx16>() == 16 * DType::Q6K.type_size());

/// Views `bytes` as blocks, dropping a trailing partial block (callers check lengths first).
/// Never fails: every block type is 1-aligned and `Pod`.
#[inline]
pub(crate) fn as_blocks<B: Pod>(bytes: &[u8]) -> &[B] {
    let whole = bytes.len() / size_of::<B>() * size_of::<B>();
    bytemuck::cast_slice(&bytes[..whole])
}

/// Mutable twin of [`as_blocks`].
#[inline]
pub(crate) fn as_blocks_mut<B: Pod>(bytes: &mut [u8]) -> &mut [B] {
    let whole = bytes.len() / size_of::<B>() * size_of::<B>();
    bytemuck::cast_slice_mut(&mut bytes[..whole])
}

/// The 16 signed sub-block scales of a [`BlockQ3K`], already offset by −32.
///
/// Scale `j` has its low 4 bits in `packed[j]` (low nibble, `j < 8`) or `packed[j-8]` (high nibble),
/// and its high 2 bits in `packed[8 + j%4]` at bit `2·(j/4)`.
#[inline]
pub fn q3k_scales(packed: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { packed[j] & 0x0F } else { packed[j - 8] >> 4 };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

/// The 8 six-bit scales and 8 six-bit mins of a [`BlockQ4K`] / [`BlockQ5K`].
///
/// Sub-blocks 0-3 keep scale and min in the low 6 bits of bytes 0-3 and 4-7; sub-blocks 4-7 keep their
/// low 4 bits in the nibbles of bytes 8-11 and their high 2 bits in the top bits of bytes 0-7.
#[inline]
pub fn k4_scale_min(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let (sc, mn) = k4_scale_min_words(packed);
    (sc.to_le_bytes(), mn.to_le_bytes())
}

/// [`k4_scale_min`] as two little-endian words (byte j = sub-block j), decoded four bytes at a time.
#[inline]
pub fn k4_scale_min_words(packed: &[u8; 12]) -> (u64, u64) {
    let word = |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (a, b, c) = (word(0), word(4), word(8));
    // Sub-blocks 0-3: the low 6 bits. Sub-blocks 4-7: a nibble of bytes 8-11, and the top 2 bits of
    // bytes 0-3 (scales) or 4-7 (mins) as bits 4-5.
    let low6 = 0x3F3F_3F3F;
    let top2 = |w: u32| ((w >> 6) & 0x0303_0303) << 4;
    let sc = (a & low6) as u64 | (((c & 0x0F0F_0F0F) | top2(a)) as u64) << 32;
    let mn = (b & low6) as u64 | ((((c >> 4) & 0x0F0F_0F0F) | top2(b)) as u64) << 32;
    (sc, mn)
}

/// f16 → f32 for a block's scale fields (exact: every f16 value is an f32 value).
#[inline(always)]
pub(crate) fn f16_to_f32(h: f16) -> f32 {
    h.to_f32()
}

#[cfg(test)]
mod k4_tests {
    /// The layout read a byte at a time, as ggml's `get_scale_min_k4` does.
    fn by_bytes(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
        let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
        for j in 0..8 {
            if j < 4 {
                sc[j] = packed[j] & 63;
                mn[j] = packed[j + 4] & 63;
            } else {
                sc[j] = (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4);
                mn[j] = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
            }
        }
        (sc, mn)
    }

    #[test]
    fn word_decoding_equals_byte_decoding() {
        // Every byte value in every position (the twelve bytes are independent fields).
        for v in 0..=255u8 {
            for i in 0..12 {
                let mut p = [0x5Au8; 12];
                p[i] = v;
                assert_eq!(super::k4_scale_min(&p), by_bytes(&p), "byte {i} = {v:#x}");
            }
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..10_000 {
            let mut p = [0u8; 12];
            for b in p.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            assert_eq!(super::k4_scale_min(&p), by_bytes(&p));
        }
    }
}
