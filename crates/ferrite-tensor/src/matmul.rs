//! Weight × activation products: `y = x · Wᵀ` for a (possibly quantized) weight matrix.
//!
//! [`QMatrix`] is a weight matrix as GGUF stores a 2-D tensor: `rows` output features, each a row of
//! `cols` input features in its own dtype (`ne0 = cols`, `ne1 = rows`), borrowed from shared storage
//! (typically the memory-mapped model file).
//!
//! [`matmul`] does what ggml's `mul_mat` does on the CPU:
//! 1. quantize each activation row once to the weight's [`vec_dot_type`];
//! 2. split the weight rows into tasks of at most 256 KiB for the current rayon pool
//!    ([`par::for_each`]), and within each task walk a small tile of rows at a time, taking its dot
//!    product with every token before moving on — so each weight byte is read from memory once per
//!    call, whatever the number of tokens (decode is memory-bound). Four tokens share each weight
//!    block's unpacking (and, where the CPU has the kernel, four rows each activation block's); on
//!    AVX2 without that kernel, the 32-element formats take eight tokens, with the activations' scales
//!    widened to f32 once per call (a third fewer instructions per token than four at a time); a
//!    token left alone pairs each row of the tile's first half with its twin in the second half, two
//!    accumulation chains where one row alone waits on its own multiply-adds, in two sequential
//!    streams the hardware prefetcher follows (adjacent rows, interleaved, defeat it). A lone token
//!    (decode) takes the whole task as one such pair of halves.
//!
//! A matrix repacked at load ([`QMatrix::interleave`]: `Q4_0`, `Q4_K`, `Q5_0`, `Q8_0` and `Q6_K` on
//! AVX-512 VNNI, `Q5_0` on AVX2) takes step 2 differently: sixteen rows sit side by side, one per 32-bit lane, so a task
//! walks its groups of sixteen rows as one stream and runs of up to 8 (`Q4_0`), 6 (`Q6_K` prompts), 4
//! (`Q4_K`) or 2 (`Q5_0`, `Q8_0` and `Q6_K` decoding, whose eight `vec_dot` lanes take eight registers a
//! token) tokens share each group's unpacking, with nothing reduced across lanes
//! ([`quant::interleaved`]). With more tokens than one pass takes (batched decoding), each group's
//! weights are read once from memory and again from cache, and the kernels fetch the next tile's
//! weights while they compute, so the wait on memory overlaps the arithmetic (8 decoding sequences of
//! Qwen2.5-0.5B: ~25% faster steps). On AVX2, `Q5_0` groups take a token a pass, eight rows at a
//! time; a call with two tokens or more first widens each tile's fifth bits into bytes
//! ([`quant::WideQ5_0x16`], a buffer of the task's), so its passes load the weights instead of
//! unpacking them again.
//!
//! Each output is one dot product in the accumulation order ggml would use for this matrix and the
//! batch its sequence's tokens belong to ([`accumulation`], [`TokenSpan`]), so results do not depend on
//! the number of threads, on which other sequences share the call, nor on how a batch was split.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use rayon::prelude::*;

use crate::par;
use crate::quant::interleaved::{LanesX16, QuantizedLanes, QuantizedRows, QuantizedRowsK, block_sums, lane_starts, pair_sums};
use crate::quant::{
    self, Accumulation, BlockQ4_0x16, BlockQ4Kx16, BlockQ5_0x16, BlockQ6Kx16, BlockQ8_0, BlockQ8_0x16, BlockQ8K, accumulation, row_bytes,
    vec_dot_type,
};
use crate::{DType, TensorError};

/// Bytes that back a matrix: a memory map, a `Vec<u8>`, anything that can be shared across threads.
pub type Storage = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A weight matrix `[rows, cols]` (row-major: `rows` output features × `cols` input features).
#[derive(Clone)]
pub struct QMatrix {
    dtype: DType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    storage: Storage,
    offset: usize,
    /// The same weights repacked for this CPU's interleaved kernels ([`QMatrix::interleave`]).
    interleaved: Option<Arc<Interleaved>>,
}

/// Weights repacked at load so that sixteen rows sit side by side (see [`quant::interleaved`]): `rows / 16`
/// groups, each one interleaved block per block of the rows, group after group.
enum Interleaved {
    Q4_0(Vec<BlockQ4_0x16>),
    Q4K(Vec<BlockQ4Kx16>),
    Q5_0(Vec<BlockQ5_0x16>),
    Q8_0(Vec<BlockQ8_0x16>),
    Q6K(Vec<BlockQ6Kx16>),
}

impl Interleaved {
    fn bytes(&self) -> usize {
        match self {
            Interleaved::Q4_0(v) => std::mem::size_of_val(&v[..]),
            Interleaved::Q4K(v) => std::mem::size_of_val(&v[..]),
            Interleaved::Q5_0(v) => std::mem::size_of_val(&v[..]),
            Interleaved::Q8_0(v) => std::mem::size_of_val(&v[..]),
            Interleaved::Q6K(v) => std::mem::size_of_val(&v[..]),
        }
    }
}

/// Rows per interleaved group.
const GROUP: usize = quant::INTERLEAVED_ROWS;

/// Bytes of the original a repacking slice covers before [`QMatrix::interleave_releasing`] reports it done.
const REPACK_SLICE_BYTES: usize = if cfg!(test) { 64 << 10 } else { 16 << 20 };

/// `m`'s rows interleaved sixteen at a time by `pack`, in slices of about [`REPACK_SLICE_BYTES`] (groups
/// in parallel within a slice), calling `done(start, len)` with each slice's byte range in `m.data()`
/// once it is packed.
fn interleave_rows<B: bytemuck::Pod + Sync, P: bytemuck::Pod + Send>(
    m: &QMatrix,
    pack: impl Fn([&[B]; GROUP], usize) -> P + Sync,
    done: &(dyn Fn(usize, usize) + Sync),
) -> Vec<P> {
    let nb = m.cols / m.dtype.block_size();
    let group_bytes = GROUP * m.row_bytes;
    let slice_groups = (REPACK_SLICE_BYTES / group_bytes.max(1)).max(1);
    // Zeroed by the allocator (fresh pages, not written): resident memory grows slice by slice as the
    // packing writes it, while `done` lets the original's pages go.
    let mut packed: Vec<P> = bytemuck::zeroed_vec(m.rows / GROUP * nb);
    for (s, slice) in packed.chunks_mut((slice_groups * nb).max(1)).enumerate() {
        let g0 = s * slice_groups;
        slice.par_chunks_mut(nb.max(1)).enumerate().for_each(|(i, group)| {
            let rows: [&[B]; GROUP] = std::array::from_fn(|r| bytemuck::cast_slice(m.row((g0 + i) * GROUP + r)));
            for (b, out) in group.iter_mut().enumerate() {
                *out = pack(rows, b);
            }
        });
        done(g0 * group_bytes, slice.len() / nb.max(1) * group_bytes);
    }
    packed
}

impl QMatrix {
    /// A matrix whose `rows · row_bytes` bytes start at `offset` in `storage`.
    ///
    /// Fails if `dtype` has no kernels, `cols` is not a whole number of blocks, or the data does not fit.
    pub fn new(dtype: DType, rows: usize, cols: usize, storage: Storage, offset: usize) -> Result<Self, TensorError> {
        if !dtype.is_supported() {
            return Err(TensorError::Unsupported { op: "QMatrix", dtype });
        }
        let row_bytes = row_bytes(dtype, cols)?;
        let need = rows.checked_mul(row_bytes).ok_or(TensorError::Overflow { what: "matrix" })?;
        let len = (*storage).as_ref().len();
        if offset.checked_add(need).is_none_or(|end| end > len) {
            return Err(TensorError::OutOfBounds { need, offset, len });
        }
        Ok(QMatrix { dtype, rows, cols, row_bytes, storage, offset, interleaved: None })
    }

    /// A matrix that owns its bytes (exactly `rows · row_bytes` of them).
    pub fn from_vec(dtype: DType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self, TensorError> {
        let expected = row_bytes(dtype, cols)?.checked_mul(rows).ok_or(TensorError::Overflow { what: "matrix" })?;
        if data.len() != expected {
            return Err(TensorError::Length { what: "QMatrix data", unit: "bytes", expected, got: data.len() });
        }
        QMatrix::new(dtype, rows, cols, Arc::new(data), 0)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (elements per row).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// All rows, `rows · row_bytes` bytes.
    pub fn data(&self) -> &[u8] {
        // In bounds: checked in `new`, and the storage is immutable.
        &(*self.storage).as_ref()[self.offset..self.offset + self.rows * self.row_bytes]
    }

    /// Repacks the weights for this CPU's interleaved kernels, if it has them for this type and shape
    /// (today: `Q4_0`, `Q4_K`, `Q5_0`, `Q8_0` and `Q6_K` with a multiple of 16 rows, on AVX-512 VNNI). Returns
    /// the bytes the repacked copy takes — as many as the matrix (`Q4_K`: 2.8% more, its scales
    /// decoded), held besides the original (which row lookups keep using) — or 0 where nothing was
    /// repacked. Products give the same bits either way.
    pub fn interleave(&mut self) -> usize {
        self.interleave_releasing(&|_, _| {})
    }

    /// [`interleave`](Self::interleave), calling `done(start, len)` for each byte range of
    /// [`data`](Self::data) as soon as it is repacked (slices of 16 MiB), so a caller can let the
    /// original's pages go while the rest is repacked: resident memory then never holds both copies of
    /// more than a slice.
    pub fn interleave_releasing(&mut self, done: &(dyn Fn(usize, usize) + Sync)) -> usize {
        if self.interleaved.is_some() || !self.rows.is_multiple_of(GROUP) || !quant::has_interleaved(quant::kernels(), self.dtype) {
            return 0;
        }
        let packed = match self.dtype {
            DType::Q4_0 => Interleaved::Q4_0(interleave_rows(self, BlockQ4_0x16::pack, done)),
            DType::Q4K => Interleaved::Q4K(interleave_rows(self, BlockQ4Kx16::pack, done)),
            DType::Q5_0 => Interleaved::Q5_0(interleave_rows(self, BlockQ5_0x16::pack, done)),
            DType::Q8_0 => Interleaved::Q8_0(interleave_rows(self, BlockQ8_0x16::pack, done)),
            DType::Q6K => Interleaved::Q6K(interleave_rows(self, BlockQ6Kx16::pack, done)),
            _ => return 0,
        };
        let bytes = packed.bytes();
        self.interleaved = Some(Arc::new(packed));
        bytes
    }

    /// Whether [`interleave`](Self::interleave) repacked this matrix.
    pub fn is_interleaved(&self) -> bool {
        self.interleaved.is_some()
    }

    /// The bytes of row `r`.
    ///
    /// # Panics
    /// If `r >= rows` (like slice indexing; [`dequantize_rows`] checks instead).
    pub fn row(&self, r: usize) -> &[u8] {
        assert!(r < self.rows, "row {r} out of range for {} rows", self.rows);
        &self.data()[r * self.row_bytes..][..self.row_bytes]
    }
}

impl fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QMatrix")
            .field("dtype", &self.dtype)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// Decodes row `row` of `w` into `dst` (`cols` floats): an embedding lookup.
pub fn dequantize_rows(w: &QMatrix, row: usize, dst: &mut [f32]) -> Result<(), TensorError> {
    if row >= w.rows {
        return Err(TensorError::RowOutOfRange { row, rows: w.rows });
    }
    if dst.len() != w.cols {
        return Err(TensorError::Length { what: "dequantize_rows destination", unit: "floats", expected: w.cols, got: dst.len() });
    }
    quant::dequantize_row(w.dtype, w.row(row), dst)
}

// Per-thread scratch, reused across calls. Taken out of the cell while in use, so a nested call (a
// rayon task that itself calls `matmul`) simply allocates its own.
thread_local! {
    static ACT_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Weight bytes one tile of rows should span: small enough to stay in L2 while every token visits it.
const TILE_BYTES: usize = 32 * 1024;
/// Below this many weight bytes per task, splitting costs more than it saves.
const MIN_TASK_BYTES: usize = 16 * 1024;
/// Above this many, a thread slowed by another process holds back too much of the product (see [`par`]).
const MAX_TASK_BYTES: usize = 256 * 1024;
/// Scratch larger than this is freed after the call rather than kept for the next one.
const KEEP_SCRATCH_BYTES: usize = 64 << 20;

fn keep<T>(cell: &'static std::thread::LocalKey<Cell<Vec<T>>>, v: Vec<T>) {
    if v.capacity() * size_of::<T>() <= KEEP_SCRATCH_BYTES {
        cell.set(v);
    }
}

/// `y = x · Wᵀ`: `x` is `[n, cols]` f32 row-major, `y` is `[n, rows]`;
/// `y[t][r] = Σ_c W[r][c] · x[t][c]`, with `x` quantized to `vec_dot_type(W.dtype())` first.
/// The `n` rows are one sequence's tokens; [`matmul_seqs`] takes several sequences.
///
/// Runs on the current rayon pool, for any `n` (including 1).
pub fn matmul(w: &QMatrix, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), TensorError> {
    matmul_seqs(w, x, &[TokenSpan::whole(n)], y)
}

/// One sequence's rows in a [`matmul_seqs`]: `tokens` rows, which are rows `first..first + tokens` of a
/// batch of `batch` rows, the batch whose size decides their accumulation order ([`accumulation`]). A
/// sequence whose rows are a batch of their own is [`TokenSpan::whole`]; a prompt computed in pieces
/// gives each piece its place in the batch the whole prompt would have been, so every piece gets the
/// bits of computing them all at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenSpan {
    pub tokens: usize,
    pub batch: usize,
    pub first: usize,
}

impl TokenSpan {
    /// `n` rows that are a batch of their own.
    pub fn whole(n: usize) -> Self {
        TokenSpan { tokens: n, batch: n, first: 0 }
    }
}

/// [`matmul`] over the rows of several sequences at once: the first `spans[0].tokens` rows of `x` belong
/// to the first sequence, and so on (`n = Σ tokens`).
///
/// The accumulation order of K-quant dot products depends on how many tokens a sequence brings (see
/// [`accumulation`]), decided here per sequence from its [`TokenSpan`], so each sequence gets exactly the
/// bits [`matmul`] would give its span's batch alone, whatever it is batched with.
pub fn matmul_seqs(w: &QMatrix, x: &[f32], spans: &[TokenSpan], y: &mut [f32]) -> Result<(), TensorError> {
    if let Some(s) = spans.iter().find(|s| s.first.checked_add(s.tokens).is_none_or(|end| end > s.batch)) {
        return Err(TensorError::Length {
            what: "token span's batch",
            unit: "tokens",
            expected: s.first.saturating_add(s.tokens),
            got: s.batch,
        });
    }
    let n = spans.iter().try_fold(0usize, |a, s| a.checked_add(s.tokens)).ok_or(TensorError::Overflow { what: "tokens" })?;
    let (rows, cols) = (w.rows, w.cols);
    let x_len = n.checked_mul(cols).ok_or(TensorError::Overflow { what: "activations" })?;
    let y_len = n.checked_mul(rows).ok_or(TensorError::Overflow { what: "outputs" })?;
    if x.len() != x_len {
        return Err(TensorError::Length { what: "matmul input", unit: "floats", expected: x_len, got: x.len() });
    }
    if y.len() != y_len {
        return Err(TensorError::Length { what: "matmul output", unit: "floats", expected: y_len, got: y.len() });
    }
    if n == 0 || rows == 0 {
        return Ok(());
    }
    if cols == 0 {
        y.fill(0.0);
        return Ok(());
    }

    let kernels = quant::kernels();
    let orders: Vec<Accumulation> =
        spans.iter().flat_map(|s| (s.first..s.first + s.tokens).map(move |i| accumulation(w.dtype, rows, s.batch, i))).collect();
    let act = vec_dot_type(w.dtype);
    let x_row_bytes = row_bytes(act, cols)?;

    // 1. Quantize the activations: xq is [n, x_row_bytes].
    let mut xq = ACT_SCRATCH.take();
    xq.clear();
    xq.resize(n * x_row_bytes, 0);
    if n >= 4 {
        xq.par_chunks_mut(x_row_bytes).zip(x.par_chunks(cols)).for_each(|(q, xr)| quant::quantize_unchecked(kernels, act, xr, q));
    } else {
        for (q, xr) in xq.chunks_mut(x_row_bytes).zip(x.chunks(cols)) {
            quant::quantize_unchecked(kernels, act, xr, q);
        }
    }

    if let Some(packed) = w.interleaved.as_deref() {
        interleaved_product(kernels, w, packed, &xq, &orders, y);
        keep(&ACT_SCRATCH, xq);
        return Ok(());
    }

    // 2. Rows in parallel. Each task owns a run of rows and fills their outputs for all n tokens.
    let w_data = w.data();
    let wrb = w.row_bytes;
    let tile = (TILE_BYTES / wrb).clamp(1, 64);
    let per_task = units_per_task(rows, wrb, tile);
    let dtype = w.dtype;
    // Eight tokens at a time where the kernel set has it, with the activations' scales widened once here.
    let eights = n >= 8 && orders.iter().any(|&o| quant::has_dot8(kernels, o, dtype) && !quant::has_dot4x4(kernels, o, dtype));
    let mut xd = Vec::new();
    if eights {
        quant::widen_scales(&xq, &mut xd);
    }
    let blocks_per_row = xd.len() / n;

    // Each task owns a run of rows and writes their outputs for all n tokens straight into y
    // ([token, row]); tasks own disjoint rows, so their writes never overlap.
    let y_out = OutPtr(y.as_mut_ptr());
    let y_out = &y_out;
    let n_tasks = rows.div_ceil(per_task);

    let work = |task: usize| {
        let r0 = task * per_task;
        let nr = per_task.min(rows - r0);
        // SAFETY: r0 + r < rows and t < n keep the index inside y (n × rows), and no other task
        // writes row r0 + r.
        let put = |r: usize, t: usize, v: f32| unsafe { *y_out.0.add(t * rows + r0 + r) = v };
        let wr = |r: usize| &w_data[(r0 + r) * wrb..][..wrb];
        let xt = |t: usize| &xq[t * x_row_bytes..][..x_row_bytes];
        // One token against rows [a, b): in pairs where the CPU has a two-row kernel, a row of the first
        // half with its twin in the second, so the two streams of weights are each sequential.
        let single = |t: usize, a: usize, b: usize| {
            let mut r = a;
            if quant::has_dot_r2(kernels, orders[t], dtype) {
                let h = (b - a) / 2;
                for r in a..a + h {
                    let v = quant::dot_r2_unchecked(kernels, orders[t], dtype, [wr(r), wr(r + h)], xt(t)).expect("has_dot_r2");
                    put(r, t, v[0]);
                    put(r + h, t, v[1]);
                }
                r = a + 2 * h;
            }
            for r in r..b {
                put(r, t, quant::dot_in_unchecked(kernels, orders[t], dtype, wr(r), xt(t), cols));
            }
        };
        // A lone token (decode) needs no tiles: the task's rows are read once, as two long streams.
        if n == 1 {
            single(0, 0, nr);
            return;
        }
        for t0 in (0..nr).step_by(tile) {
            let t1 = (t0 + tile).min(nr);
            let mut t = 0;
            while t < n {
                // Eight tokens with the same order share each weight block's unpacking.
                if eights
                    && t + 8 <= n
                    && orders[t + 1..t + 8].iter().all(|&o| o == orders[t])
                    && quant::has_dot8(kernels, orders[t], dtype)
                {
                    let xs = std::array::from_fn(|j| xt(t + j));
                    let ds = std::array::from_fn(|j| &xd[(t + j) * blocks_per_row..][..blocks_per_row]);
                    for r in t0..t1 {
                        let v = quant::dot8_unchecked(kernels, orders[t], dtype, wr(r), xs, ds).expect("has_dot8");
                        for (j, &x) in v.iter().enumerate() {
                            put(r, t + j, x);
                        }
                    }
                    t += 8;
                    continue;
                }
                // Four tokens with the same order share each weight block's unpacking.
                if t + 4 <= n && orders[t + 1..t + 4].iter().all(|&o| o == orders[t]) && quant::has_dot4(orders[t], dtype) {
                    let xs = [xt(t), xt(t + 1), xt(t + 2), xt(t + 3)];
                    let mut r = t0;
                    // Four rows at a time where the CPU has the 4x4 kernel (same bits per output).
                    if quant::has_dot4x4(kernels, orders[t], dtype) {
                        while r + 4 <= t1 {
                            let m = quant::dot4x4_unchecked(kernels, orders[t], dtype, [wr(r), wr(r + 1), wr(r + 2), wr(r + 3)], xs)
                                .expect("has_dot4x4");
                            for (i, v) in m.iter().enumerate() {
                                for (j, &x) in v.iter().enumerate() {
                                    put(r + i, t + j, x);
                                }
                            }
                            r += 4;
                        }
                    }
                    for r in r..t1 {
                        let v = quant::dot4_unchecked(kernels, orders[t], dtype, wr(r), xs);
                        for (j, &x) in v.iter().enumerate() {
                            put(r, t + j, x);
                        }
                    }
                    t += 4;
                    continue;
                }
                single(t, t0, t1);
                t += 1;
            }
        }
    };
    par::for_each(n_tasks, work);
    keep(&ACT_SCRATCH, xq);
    Ok(())
}

/// Step 2 of [`matmul_seqs`] for an interleaved matrix: groups of 16 rows in parallel, each group's
/// weights read once per run of up to 8 (`Q4_0`, and `Q5_0`/`Q8_0`, whose kernel takes a run two tokens
/// at a time), 6 (`Q6_K`, in passes of 6 tokens in `Tiled` order and 2 in lanes) or 4 (`Q4_K`) tokens of
/// one order, which share its unpacking; one sequential stream per task.
fn interleaved_product(kernels: &quant::Kernels, w: &QMatrix, packed: &Interleaved, xq: &[u8], orders: &[Accumulation], y: &mut [f32]) {
    let nb = w.cols / w.dtype.block_size();
    match packed {
        Interleaved::Q4_0(blocks) => {
            let dot = kernels.q4_0x16.expect(EXPECT);
            let q: &[BlockQ8_0] = bytemuck::cast_slice(xq);
            let (mut sums, mut d) = (Vec::new(), Vec::new());
            block_sums(q, &mut sums, &mut d);
            let x = QuantizedRows { q, sums: &sums, d: &d, blocks: nb };
            // SAFETY: the kernel set has this kernel only where the CPU has its features.
            groups_in_parallel(blocks, nb, w.rows, orders, MOST_TOKENS, y, as_stored, |g, tokens, _, out, ahead| unsafe {
                dot(g, &x, tokens, out, ahead)
            });
        }
        Interleaved::Q4K(blocks) => {
            let dot = kernels.q4kx16.expect(EXPECT);
            let q: &[BlockQ8K] = bytemuck::cast_slice(xq);
            let mut pairs = Vec::new();
            pair_sums(q, &mut pairs);
            let x = QuantizedRowsK { q, pairs: &pairs, blocks: nb };
            // SAFETY: as above.
            groups_in_parallel(blocks, nb, w.rows, orders, 4, y, as_stored, |g, tokens, order, out, ahead| unsafe {
                dot(g, &x, tokens, order == Accumulation::RowsBy64, out, ahead)
            });
        }
        Interleaved::Q5_0(blocks) => match kernels.q5_0x16_wide {
            // SAFETY: the kernel set has the widening only where the CPU has its features.
            Some((widen, dot)) if orders.len() >= WIDEN_FROM => {
                lanes_product(Some(dot), blocks, nb, w.rows, xq, orders, y, |tile, wide| {
                    unsafe { widen(tile, wide) };
                    wide
                })
            }
            _ => lanes_product(kernels.q5_0x16, blocks, nb, w.rows, xq, orders, y, as_stored),
        },
        Interleaved::Q8_0(blocks) => lanes_product(kernels.q8_0x16, blocks, nb, w.rows, xq, orders, y, as_stored),
        Interleaved::Q6K(blocks) => {
            let dot = kernels.q6kx16.expect(EXPECT);
            let q: &[BlockQ8K] = bytemuck::cast_slice(xq);
            debug_assert!(orders.iter().all(|&o| matches!(o, Accumulation::Tiled | Accumulation::Lanes)), "Q6_K takes Tiled or Lanes");
            // SAFETY: as above.
            groups_in_parallel(blocks, nb, w.rows, orders, 6, y, as_stored, |g, tokens, order, out, ahead| unsafe {
                dot(g, q, nb, tokens, order == Accumulation::Tiled, out, ahead)
            });
        }
    }
}

/// [`interleaved_product`] for the formats that keep `vec_dot`'s lanes.
#[allow(clippy::too_many_arguments)]
fn lanes_product<B: LanesX16 + bytemuck::Pod + Sync, W: bytemuck::Pod + Send + Sync>(
    dot: quant::DotLanesX16<W>,
    blocks: &[B],
    nb: usize,
    rows: usize,
    xq: &[u8],
    orders: &[Accumulation],
    y: &mut [f32],
    prepare: impl for<'t> Fn(&'t [B], &'t mut Vec<W>) -> &'t [W] + Sync,
) {
    debug_assert!(orders.iter().all(|&o| o == Accumulation::Lanes), "these formats only take vec_dot's lanes");
    let dot = dot.expect(EXPECT);
    let q: &[BlockQ8_0] = bytemuck::cast_slice(xq);
    let (mut starts, mut d) = (Vec::new(), Vec::new());
    // The stored format's offset, which a prepared (widened) tile keeps.
    lane_starts(q, B::OFFSET, &mut starts, &mut d);
    let x = QuantizedLanes { q, starts: &starts, d: &d, blocks: nb };
    // SAFETY: the kernel set has this kernel only where the CPU has its features; starts were made for B.
    groups_in_parallel(blocks, nb, rows, orders, MOST_TOKENS, y, prepare, |g, tokens, _, out, ahead| unsafe {
        dot(g, &x, tokens, out, ahead)
    });
}

/// Why an interleaved matrix's kernel is there: matrices are repacked only where the kernel set has it.
const EXPECT: &str = "interleaved only where the kernel set has the kernel";

/// A tile of interleaved blocks read by its kernel as stored (see [`groups_in_parallel`]'s `prepare`).
fn as_stored<'t, B>(tile: &'t [B], _: &'t mut Vec<B>) -> &'t [B] {
    tile
}

/// From how many tokens a `Q5_0` matmul widens its weights ([`quant::WideQ5_0x16`]) once per tile
/// instead of merging their fifth bits again for every token (AVX2, where a token takes a pass): the
/// widening costs about what one pass's unpacking does.
const WIDEN_FROM: usize = 2;

/// Runs `kernel` over every group of `blocks` (`nb` interleaved blocks each) and every run of tokens
/// with one order (at most `most` long), writing `y` (`[token, row]`); groups split into tasks, and
/// tasks into tiles of groups, each turned by `prepare` into what the kernel reads (as stored, or
/// widened once for all of the tile's runs, in a buffer of the task's). Each call also gets its share of
/// the next tile's bytes, for the kernel to prefetch.
#[allow(clippy::too_many_arguments)]
fn groups_in_parallel<B: bytemuck::Pod + Sync, W: bytemuck::Pod + Send>(
    blocks: &[B],
    nb: usize,
    rows: usize,
    orders: &[Accumulation],
    most: usize,
    y: &mut [f32],
    prepare: impl for<'t> Fn(&'t [B], &'t mut Vec<W>) -> &'t [W] + Sync,
    kernel: impl Fn(&[W], std::ops::Range<usize>, Accumulation, &mut [[f32; GROUP]], &[u8]) + Sync,
) {
    assert!(most <= MOST_TOKENS, "runs of at most {MOST_TOKENS} tokens");
    let n = orders.len();
    let mut runs = Vec::new();
    let mut t = 0;
    while t < n {
        let end = (t + 1..n.min(t + most)).find(|&e| orders[e] != orders[t]).unwrap_or(n.min(t + most));
        runs.push(t..end);
        t = end;
    }
    let groups = rows / GROUP;
    let group_bytes = nb * size_of::<B>();
    let per_task = units_per_task(groups, group_bytes, 1);
    let tile = (TILE_BYTES / group_bytes).max(1);
    let y_out = OutPtr(y.as_mut_ptr());
    let y_out = &y_out;
    par::for_each(groups.div_ceil(per_task), |task| {
        let (g0, g1) = (task * per_task, ((task + 1) * per_task).min(groups));
        let mut out = [[0.0f32; GROUP]; MOST_TOKENS];
        let mut scratch = Vec::new();
        for t0 in (g0..g1).step_by(tile) {
            let t1 = (t0 + tile).min(g1);
            let read = prepare(&blocks[t0 * nb..t1 * nb], &mut scratch);
            // Where the weights are read more than once (several runs, or a kernel that takes its run
            // in passes), the first read waits on memory and the others on arithmetic: the kernels fetch
            // the next tile's weights meanwhile, a share per call.
            let next = bytemuck::cast_slice::<B, u8>(&blocks[t1 * nb..(t1 + tile).min(g1) * nb]);
            let next = if n > 2 { next } else { &[] };
            let share = next.len().div_ceil(runs.len() * (t1 - t0)).next_multiple_of(64);
            let mut fetched = 0;
            for run in &runs {
                let out = &mut out[..run.len()];
                for g in t0..t1 {
                    let ahead = &next[fetched..(fetched + share).min(next.len())];
                    fetched += ahead.len();
                    kernel(&read[(g - t0) * nb..][..nb], run.clone(), orders[run.start], out, ahead);
                    for (i, o) in out.iter().enumerate() {
                        // SAFETY: token run.start + i < n and rows g·16 .. g·16 + 16 <= rows stay inside y
                        // (n × rows); this task alone writes group g's rows.
                        unsafe { std::ptr::copy_nonoverlapping(o.as_ptr(), y_out.0.add((run.start + i) * rows + g * GROUP), GROUP) };
                    }
                }
            }
        }
    });
}

/// Most tokens an interleaved kernel call takes (`Q4_0`'s, `Q5_0`'s and `Q8_0`'s runs; `Q4_K`'s are
/// shorter).
const MOST_TOKENS: usize = 8;

/// How many of `units` (rows, or groups of interleaved rows) of `unit_bytes` each one parallel task
/// takes: about four tasks per thread, within [`MIN_TASK_BYTES`]..[`MAX_TASK_BYTES`] of weights, rounded
/// up to a multiple of `multiple` (a tile).
fn units_per_task(units: usize, unit_bytes: usize, multiple: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    units.div_ceil(threads * 4).min(MAX_TASK_BYTES / unit_bytes).max(MIN_TASK_BYTES.div_ceil(unit_bytes)).div_ceil(multiple) * multiple
}

/// `y`'s base pointer, shared by the tasks of one matmul (each writes only its own rows).
struct OutPtr(*mut f32);
// SAFETY: the tasks write disjoint elements and `y` outlives them (the parallel loop joins before
// matmul_seqs returns).
unsafe impl Sync for OutPtr {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{dequantize_row, quantize_row};
    use crate::testutil::*;

    fn random_matrix(dtype: DType, rows: usize, cols: usize, rng: &mut Rng) -> QMatrix {
        let data: Vec<u8> = (0..rows).flat_map(|_| random_weight_row(dtype, cols, rng)).collect();
        QMatrix::from_vec(dtype, rows, cols, data).unwrap()
    }

    /// The reference: dequantize W, quantize-then-dequantize x (the kernels see x only as its
    /// activation format), and take every dot product in f64.
    fn reference(w: &QMatrix, x: &[f32], n: usize) -> (Vec<f64>, Vec<f64>) {
        let (rows, cols) = (w.rows(), w.cols());
        let act = vec_dot_type(w.dtype());
        let wf: Vec<Vec<f32>> = (0..rows).map(|r| dequant(w.dtype(), w.row(r), cols)).collect();
        let mut want = vec![0.0; n * rows];
        let mut scale = vec![0.0; n * rows];
        for t in 0..n {
            let mut q = vec![0u8; row_bytes(act, cols).unwrap()];
            quantize_row(act, &x[t * cols..][..cols], &mut q).unwrap();
            let mut xf = vec![0.0f32; cols];
            dequantize_row(act, &q, &mut xf).unwrap();
            for r in 0..rows {
                want[t * rows + r] = dot64(&wf[r], &xf);
                scale[t * rows + r] = abs_dot(&wf[r], &xf);
            }
        }
        (want, scale)
    }

    fn check(dtype: DType, rows: usize, cols: usize, n: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let w = random_matrix(dtype, rows, cols, &mut rng);
        let x = rng.activations(n * cols);
        let mut y = vec![f32::NAN; n * rows];
        matmul(&w, &x, n, &mut y).unwrap();
        let (want, scale) = reference(&w, &x, n);
        for (i, ((&got, &want), &scale)) in y.iter().zip(&want).zip(&scale).enumerate() {
            // Same bound as the kernel tests, plus Q8_1's f16 `s` (2^-11 of the min terms, which are
            // bounded by Σ|w·a| for these random rows).
            let mut tol = reorder_tolerance(cols / dtype.block_size(), scale);
            if vec_dot_type(dtype) == DType::Q8_1 {
                tol += scale * (-11f64).exp2();
            }
            assert!(
                (got as f64 - want).abs() <= tol,
                "{dtype} {rows}x{cols} n={n}: y[{}][{}] = {got}, want {want} (tolerance {tol})",
                i / rows,
                i % rows
            );
        }
    }

    #[test]
    fn matmul_one_token_matches_f64_reference() {
        for dtype in WEIGHT_TYPES {
            check(dtype, 67, 512, 1, 10);
        }
    }

    #[test]
    fn matmul_seven_tokens_matches_f64_reference() {
        for dtype in WEIGHT_TYPES {
            check(dtype, 45, 768, 7, 11);
        }
    }

    /// Each output is one dot product in its sequence's order whatever the split, so neither the thread
    /// count nor the other sequences of a batch change a bit of a sequence's result.
    #[test]
    fn matmul_is_bitwise_independent_of_threads_and_batching() {
        let mut rng = Rng::new(12);
        let seqs = [3, 9, 1, 8];
        let n: usize = seqs.iter().sum();
        // Q4_K with 296 rows takes the row order, with 300 rows lanes or tiles by sequence length.
        for (dtype, rows) in [
            (DType::Q4_0, 300),
            (DType::Q5_0, 300),
            (DType::Q8_0, 300),
            (DType::Q4K, 296),
            (DType::Q4K, 300),
            (DType::Q6K, 300),
            (DType::F16, 300),
        ] {
            let cols = 1024;
            let w = random_matrix(dtype, rows, cols, &mut rng);
            let x = rng.activations(n * cols);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut y = vec![0.0f32; n * rows];
                pool.install(|| matmul_seqs(&w, &x, &seqs.map(TokenSpan::whole), &mut y)).unwrap();
                y
            };
            let one = run(1);
            assert_eq!(one, run(3), "{dtype}: 1 vs 3 threads");
            let mut t0 = 0;
            for &len in &seqs {
                let mut alone = vec![0.0f32; len * rows];
                matmul(&w, &x[t0 * cols..][..len * cols], len, &mut alone).unwrap();
                assert_eq!(&one[t0 * rows..][..len * rows], &alone[..], "{dtype} {rows} rows: sequence of {len} alone vs batched");
                t0 += len;
            }
            // The 9-token sequence in pieces of 2, 3 and 4 (one of them batched with the lone token),
            // each placed in its batch of 9: the bits of all 9 at once.
            let (x9, mut pieces) = (&x[3 * cols..12 * cols], vec![0.0f32; 9 * rows]);
            let span = |tokens, first| TokenSpan { tokens, batch: 9, first };
            matmul_seqs(&w, &x9[..2 * cols], &[span(2, 0)], &mut pieces[..2 * rows]).unwrap();
            let mut two = vec![0.0f32; 4 * rows];
            let x2 = [&x9[2 * cols..5 * cols], &x[12 * cols..13 * cols]].concat();
            matmul_seqs(&w, &x2, &[span(3, 2), TokenSpan::whole(1)], &mut two).unwrap();
            pieces[2 * rows..5 * rows].copy_from_slice(&two[..3 * rows]);
            assert_eq!(&two[3 * rows..], &one[12 * rows..13 * rows], "{dtype}: the lone token beside a piece");
            matmul_seqs(&w, &x9[5 * cols..], &[span(4, 5)], &mut pieces[5 * rows..]).unwrap();
            assert_eq!(&pieces[..], &one[3 * rows..12 * rows], "{dtype} {rows} rows: pieces of a batch of 9");
        }
        let w = random_matrix(DType::Q4_0, 16, 32, &mut rng);
        let e = matmul_seqs(&w, &[0.0; 64], &[TokenSpan { tokens: 2, batch: 2, first: 1 }], &mut [0.0; 32]).unwrap_err();
        assert!(e.to_string().contains("token span"), "{e}");
    }

    /// The orders really differ (or the test above would prove nothing for K-quants): somewhere in a
    /// model-sized matrix, the 8-token tiled result differs from the same token's 1-token result.
    #[test]
    fn sequence_length_picks_the_order() {
        let mut rng = Rng::new(14);
        let (rows, cols) = (64, 4864);
        let w = random_matrix(DType::Q6K, rows, cols, &mut rng);
        let x = rng.activations(8 * cols);
        let mut eight = vec![0.0f32; 8 * rows];
        matmul(&w, &x, 8, &mut eight).unwrap();
        let mut first = vec![0.0f32; rows];
        matmul(&w, &x[..cols], 1, &mut first).unwrap();
        assert_ne!(&eight[..rows], &first[..], "tiled and lane orders agreed on every row");
    }

    /// An interleaved matrix gives the bits of the same matrix unpacked, for decode and prompt token
    /// counts and batches of sequences (whose orders differ for `Q4_K` and `Q6_K`), on any number of threads;
    /// shapes and types it cannot take are left alone.
    #[test]
    fn interleaved_matrix_gives_the_same_bits() {
        let mut rng = Rng::new(15);
        let (rows, cols) = (96, 2048);
        for dtype in [DType::Q4_0, DType::Q4K, DType::Q5_0, DType::Q8_0, DType::Q6K] {
            let w = random_matrix(dtype, rows, cols, &mut rng);
            let mut packed = w.clone();
            let bytes = packed.interleave();
            if !quant::has_interleaved(quant::kernels(), dtype) {
                assert_eq!((bytes, packed.is_interleaved()), (0, false));
                println!("interleaved_matrix_gives_the_same_bits: no interleaved {dtype} kernel on this CPU");
                continue;
            }
            let extra = if dtype == DType::Q4K { rows / 16 * cols / 256 * 64 } else { 0 };
            assert_eq!(bytes, w.data().len() + extra);
            assert!(packed.is_interleaved() && !w.is_interleaved());
            assert_eq!(packed.interleave(), 0, "a second call repacks nothing");
            for seqs in [&[1][..], &[3], &[8], &[13], &[5, 1, 8, 2]] {
                let n: usize = seqs.iter().sum();
                let x = rng.activations(n * cols);
                for threads in [1, 2] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let (mut a, mut b) = (vec![0.0f32; n * rows], vec![f32::NAN; n * rows]);
                    let spans: Vec<TokenSpan> = seqs.iter().map(|&t| TokenSpan::whole(t)).collect();
                    pool.install(|| matmul_seqs(&w, &x, &spans, &mut a)).unwrap();
                    pool.install(|| matmul_seqs(&packed, &x, &spans, &mut b)).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&a), bits(&b), "{dtype} {seqs:?} threads={threads}");
                }
            }
        }
        for (dtype, rows) in
            [(DType::Q4_0, 88), (DType::Q4K, 88), (DType::Q5_0, 88), (DType::Q8_0, 88), (DType::Q6K, 88), (DType::Q4_1, 96)]
        {
            let mut m = random_matrix(dtype, rows, 256, &mut rng);
            assert_eq!((m.interleave(), m.is_interleaved()), (0, false), "{dtype} {rows} rows");
        }
    }

    /// Repacking reports every byte of the original exactly once, in order, in slices, and the
    /// repacked matrix gives the original's bits.
    #[test]
    fn repacking_reports_each_slice_of_the_original_once() {
        let mut rng = Rng::new(16);
        let w = random_matrix(DType::Q8_0, 96, 2048, &mut rng);
        let mut packed = w.clone();
        let ranges = std::sync::Mutex::new(Vec::new());
        let bytes = packed.interleave_releasing(&|start, len| ranges.lock().unwrap().push((start, len)));
        if !quant::has_interleaved(quant::kernels(), DType::Q8_0) {
            assert_eq!((bytes, ranges.into_inner().unwrap()), (0, vec![]));
            return;
        }
        let ranges = ranges.into_inner().unwrap();
        assert!(ranges.len() > 1, "{ranges:?}");
        let mut next = 0;
        for &(start, len) in &ranges {
            assert_eq!(start, next, "{ranges:?}");
            assert!(len > 0 && len.is_multiple_of(GROUP * w.row_bytes()), "{ranges:?}");
            next += len;
        }
        assert_eq!(next, w.data().len());
        let x = rng.activations(3 * 2048);
        let (mut a, mut b) = (vec![0.0f32; 3 * 96], vec![0.0f32; 3 * 96]);
        matmul(&w, &x, 3, &mut a).unwrap();
        matmul(&packed, &x, 3, &mut b).unwrap();
        assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn matrix_construction_validates_shape_and_bounds() {
        let storage: Storage = Arc::new(vec![0u8; 100]);
        // 2 rows of 32 Q4_0 = 36 bytes, fits at offset 64 but not 65.
        assert!(QMatrix::new(DType::Q4_0, 2, 32, storage.clone(), 64).is_ok());
        assert!(matches!(QMatrix::new(DType::Q4_0, 2, 32, storage.clone(), 65), Err(TensorError::OutOfBounds { .. })));
        assert!(matches!(QMatrix::new(DType::Q4_0, 2, 33, storage.clone(), 0), Err(TensorError::NotBlockMultiple { .. })));
        assert!(matches!(QMatrix::new(DType::Q4_0, usize::MAX, 32, storage.clone(), 0), Err(TensorError::Overflow { .. })));
        assert!(matches!(QMatrix::new(DType::Q4_0, 1, 32, storage.clone(), usize::MAX), Err(TensorError::OutOfBounds { .. })));
        assert!(matches!(QMatrix::new(DType::IQ2XXS, 1, 256, storage, 0), Err(TensorError::Unsupported { .. })));
        assert!(matches!(QMatrix::from_vec(DType::Q8_0, 2, 32, vec![0; 67]), Err(TensorError::Length { .. })));

        let w = QMatrix::new(DType::Q4_0, 2, 32, Arc::new((0..100u8).collect::<Vec<u8>>()), 10).unwrap();
        assert_eq!((w.rows(), w.cols(), w.row_bytes(), w.data().len()), (2, 32, 18, 36));
        assert_eq!(w.row(1)[0], 28);
    }

    #[test]
    fn matmul_and_row_lookup_reject_bad_shapes() {
        let mut rng = Rng::new(13);
        let w = random_matrix(DType::Q8_0, 4, 64, &mut rng);
        let mut y = vec![0.0; 8];
        assert!(matches!(matmul(&w, &[0.0; 127], 2, &mut y), Err(TensorError::Length { .. })));
        assert!(matches!(matmul(&w, &[0.0; 128], 2, &mut y[..7]), Err(TensorError::Length { .. })));
        assert!(matmul(&w, &[], 0, &mut []).is_ok());

        let mut row = vec![0.0; 64];
        assert!(matches!(dequantize_rows(&w, 4, &mut row), Err(TensorError::RowOutOfRange { row: 4, rows: 4 })));
        assert!(matches!(dequantize_rows(&w, 0, &mut row[..63]), Err(TensorError::Length { .. })));
        dequantize_rows(&w, 3, &mut row).unwrap();
        assert_eq!(row, dequant(DType::Q8_0, w.row(3), 64));
    }
}
