//! Per-sequence state: the key/value cache, paged. It lives outside the model, which stays immutable and
//! shared; the forward pass borrows the pool and one block table per sequence of the batch.
//!
//! Keys and values are stored in f16, like llama.cpp's default cache: half the memory of f32, and the
//! rounding is part of the numerics our outputs are compared against.
//!
//! Memory is a [`KvPool`] of fixed-size blocks of [`BLOCK_SIZE`] positions. A sequence's [`SeqKv`] lists
//! the blocks holding its positions in order (its block table) and how many positions are computed. Who
//! owns which block — allocation, sharing of prefix blocks between sequences, eviction — is the caller's
//! business (the server's block manager); the forward pass only checks that the table covers the new
//! positions and that no block is written by two sequences of one step. [`KvCache`] bundles a private pool
//! with one table for the simple one-sequence case.

use half::f16;

use crate::{ModelConfig, ModelError};

/// Positions per block.
pub const BLOCK_SIZE: usize = 16;

/// Storage for `n_blocks` blocks of keys and values for every layer.
///
/// Layout per layer: `k`, `v`: (block, kv_head, BLOCK_SIZE, head_dim), so the keys of one head within a
/// block are contiguous.
#[derive(Clone, Debug)]
pub struct KvPool {
    n_kv_heads: usize,
    head_dim: usize,
    n_blocks: usize,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

impl KvPool {
    /// A pool of `n_blocks` blocks for a model with this configuration. The memory is zeroed lazily by the
    /// operating system, so an unused pool costs address space, not RAM.
    pub fn new(config: &ModelConfig, n_blocks: usize) -> KvPool {
        let per_layer = n_blocks * config.n_kv_heads * BLOCK_SIZE * config.head_dim;
        KvPool {
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
            n_blocks,
            k: (0..config.n_layers).map(|_| bytemuck::zeroed_vec(per_layer)).collect(),
            v: (0..config.n_layers).map(|_| bytemuck::zeroed_vec(per_layer)).collect(),
        }
    }

    /// One pool with a table of `ceil(capacity / BLOCK_SIZE)` blocks for each capacity, blocks assigned in
    /// order: independent sequences batched together without a block manager (tests, perplexity).
    pub fn with_sequences(config: &ModelConfig, capacities: &[usize]) -> (KvPool, Vec<SeqKv>) {
        let mut next = 0u32;
        let tables: Vec<SeqKv> = capacities
            .iter()
            .map(|&c| {
                let n = c.div_ceil(BLOCK_SIZE) as u32;
                next += n;
                SeqKv::new((next - n..next).collect(), 0)
            })
            .collect();
        (KvPool::new(config, next as usize), tables)
    }

    /// Bytes one block takes for a model with this configuration (keys and values, all layers).
    pub fn block_bytes(config: &ModelConfig) -> usize {
        2 * config.n_layers * config.n_kv_heads * BLOCK_SIZE * config.head_dim * size_of::<f16>()
    }

    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// Bytes held by this pool.
    pub fn bytes(&self) -> usize {
        2 * self.k.len() * self.n_blocks * self.n_kv_heads * BLOCK_SIZE * self.head_dim * size_of::<f16>()
    }

    pub(crate) fn fits(&self, config: &ModelConfig) -> bool {
        self.k.len() == config.n_layers && self.n_kv_heads == config.n_kv_heads && self.head_dim == config.head_dim
    }

    fn at(&self, block: u32, h: usize, slot: usize) -> usize {
        ((block as usize * self.n_kv_heads + h) * BLOCK_SIZE + slot) * self.head_dim
    }

    /// Store the key and value rows (each `n_kv_heads * head_dim`) of position `pos` of the sequence with
    /// block table `blocks`, in `layer`.
    pub(crate) fn store(&mut self, layer: usize, blocks: &[u32], pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        let (block, slot) = (blocks[pos / BLOCK_SIZE], pos % BLOCK_SIZE);
        for h in 0..self.n_kv_heads {
            let at = self.at(block, h, slot);
            let (kd, vd) = (&mut self.k[layer][at..at + hd], &mut self.v[layer][at..at + hd]);
            kd.iter_mut().zip(&k[h * hd..(h + 1) * hd]).for_each(|(d, &x)| *d = f16::from_f32(x));
            vd.iter_mut().zip(&v[h * hd..(h + 1) * hd]).for_each(|(d, &x)| *d = f16::from_f32(x));
        }
    }

    /// Keys and values of `layer`, kv head `h`, positions `range` of the sequence with block table
    /// `blocks`, in place (f16): one run of consecutive positions per block touched, each (positions,
    /// head_dim).
    pub(crate) fn runs<'a>(
        &'a self,
        layer: usize,
        h: usize,
        blocks: &'a [u32],
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (&'a [f16], &'a [f16])> + 'a {
        let hd = self.head_dim;
        let (k, v) = (&self.k[layer], &self.v[layer]);
        let first = range.start / BLOCK_SIZE;
        let last = range.end.div_ceil(BLOCK_SIZE);
        (first..last).map(move |b| {
            let from = (b * BLOCK_SIZE).max(range.start);
            let to = ((b + 1) * BLOCK_SIZE).min(range.end);
            let at = self.at(blocks[b], h, from % BLOCK_SIZE);
            let len = (to - from) * hd;
            (&k[at..at + len], &v[at..at + len])
        })
    }

    /// Keys and values of `layer`, kv head `h`, positions `range` of the sequence with block table
    /// `blocks`, widened to f32 (exact): each (positions, head_dim).
    pub(crate) fn gather(&self, layer: usize, h: usize, blocks: &[u32], range: std::ops::Range<usize>) -> (Vec<f32>, Vec<f32>) {
        use half::slice::HalfFloatSliceExt;
        let n = range.len() * self.head_dim;
        let (mut kf, mut vf) = (vec![0.0f32; n], vec![0.0f32; n]);
        let mut at = 0;
        for (k, v) in self.runs(layer, h, blocks, range) {
            k.convert_to_f32_slice(&mut kf[at..at + k.len()]);
            v.convert_to_f32_slice(&mut vf[at..at + v.len()]);
            at += k.len();
        }
        (kf, vf)
    }
}

/// One sequence's view of a pool: the blocks holding its positions, in order, and how many positions are
/// computed (the next token's position).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqKv {
    /// Block ids; position `p` lives in `blocks[p / BLOCK_SIZE]`.
    pub blocks: Vec<u32>,
    len: usize,
}

impl SeqKv {
    /// A table over `blocks` whose first `len` positions are already computed (e.g. shared prefix blocks).
    pub fn new(blocks: Vec<u32>, len: usize) -> SeqKv {
        SeqKv { blocks, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the table's blocks can hold.
    pub fn capacity(&self) -> usize {
        self.blocks.len() * BLOCK_SIZE
    }

    /// Forget everything from position `len` on (e.g. to rewind after rejected draft tokens).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// The KV cache of one sequence with a pool of its own, sized for `capacity` positions up front.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(crate) pool: KvPool,
    pub(crate) seq: SeqKv,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `capacity` positions of a model with this configuration.
    pub fn new(config: &ModelConfig, capacity: usize) -> KvCache {
        let (pool, mut seqs) = KvPool::with_sequences(config, &[capacity]);
        KvCache { pool, seq: seqs.pop().expect("one sequence"), capacity }
    }

    /// Number of positions computed so far (the next token's position).
    pub fn len(&self) -> usize {
        self.seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forget everything from position `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.seq.truncate(len);
    }

    /// Bytes held by this cache.
    pub fn bytes(&self) -> usize {
        self.pool.bytes()
    }

    /// Check that `adding` more positions fit the capacity asked for (the pool rounds up to whole blocks).
    pub(crate) fn check_room(&self, adding: usize) -> Result<(), ModelError> {
        if self.len() + adding > self.capacity {
            return Err(ModelError::ContextFull { have: self.len(), adding, capacity: self.capacity });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two layers, two kv heads of 8.
    fn config() -> ModelConfig {
        ModelConfig {
            arch: "test".into(),
            n_layers: 2,
            dim: 16,
            n_heads: 2,
            n_kv_heads: 2,
            head_dim: 8,
            ffn_dim: 32,
            vocab_size: 10,
            ctx_train: 64,
            norm_eps: 1e-5,
            attn_scale: 1.0,
            attn_prescale_q: false,
            rope: Vec::new(),
            window: vec![None; 2],
        }
    }

    #[test]
    fn positions_land_in_their_blocks_and_gather_back_across_block_edges() {
        let cfg = config();
        let mut pool = KvPool::new(&cfg, 6);
        // A table whose blocks are out of order, as a block manager hands them out.
        let blocks = [4u32, 1, 5];
        let row = |p: usize, s: f32| -> Vec<f32> { (0..2 * 8).map(|i| (p * 100 + i) as f32 * s).collect() };
        for p in 0..40 {
            pool.store(1, &blocks, p, &row(p, 1.0), &row(p, -1.0));
        }
        for h in 0..2 {
            let (k, v) = pool.gather(1, h, &blocks, 5..37);
            assert_eq!(k.len(), 32 * 8);
            for (i, p) in (5..37).enumerate() {
                let want: Vec<f32> = row(p, 1.0)[h * 8..(h + 1) * 8].iter().map(|&x| f16::from_f32(x).to_f32()).collect();
                assert_eq!(&k[i * 8..(i + 1) * 8], &want[..], "head {h} position {p}");
                assert_eq!(v[i * 8], -want[0]);
            }
            // In place: one run per block touched (5..16, 16..32, 32..37), the same values.
            let runs: Vec<(&[f16], &[f16])> = pool.runs(1, h, &blocks, 5..37).collect();
            assert_eq!(runs.iter().map(|(k, _)| k.len() / 8).collect::<Vec<_>>(), [11, 16, 5]);
            let (rk, rv): (Vec<f32>, Vec<f32>) =
                runs.iter().flat_map(|(k, v)| k.iter().zip(v.iter())).map(|(k, v)| (k.to_f32(), v.to_f32())).unzip();
            assert_eq!((rk, rv), (k, v));
        }
        assert_eq!(pool.runs(1, 0, &blocks, 16..16).map(|(k, _)| k.len()).sum::<usize>(), 0);
        // Layer 0 and blocks outside the table are untouched.
        assert!(pool.k[0].iter().all(|&x| x == f16::ZERO));
        let untouched = pool.at(0, 0, 0)..pool.at(1, 0, 0);
        assert!(pool.k[1][untouched].iter().all(|&x| x == f16::ZERO));
    }

    #[test]
    fn with_sequences_hands_out_disjoint_tables() {
        let (pool, seqs) = KvPool::with_sequences(&config(), &[16, 17, 1]);
        assert_eq!(pool.n_blocks(), 4);
        assert_eq!(seqs.iter().map(|s| s.blocks.clone()).collect::<Vec<_>>(), vec![vec![0], vec![1, 2], vec![3]]);
        assert_eq!(pool.bytes(), 4 * KvPool::block_bytes(&config()));
    }
}
