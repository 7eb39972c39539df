//! Per-sequence state: the key/value cache. It lives outside the model, which stays immutable and shared;
//! the forward pass borrows one cache per sequence of the batch.
//!
//! Keys and values are stored in f16, like llama.cpp's default cache: half the memory of f32, and the
//! rounding is part of the numerics our outputs are compared against.

use half::f16;

use crate::ModelConfig;

/// Keys and values of one sequence for every layer.
///
/// Layout per layer: `k`, `v`: (kv_head, capacity, head_dim), so the keys a head attends over are
/// contiguous.
#[derive(Clone, Debug)]
pub struct KvCache {
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

impl KvCache {
    /// An empty cache for `capacity` positions of a model with this configuration.
    pub fn new(config: &ModelConfig, capacity: usize) -> KvCache {
        let per_layer = config.n_kv_heads * capacity * config.head_dim;
        KvCache {
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
            capacity,
            len: 0,
            k: (0..config.n_layers).map(|_| vec![f16::ZERO; per_layer]).collect(),
            v: (0..config.n_layers).map(|_| vec![f16::ZERO; per_layer]).collect(),
        }
    }

    /// Number of positions computed so far (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forget everything from position `len` on (e.g. to rewind after rejected draft tokens).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes held by this cache.
    pub fn bytes(&self) -> usize {
        2 * self.k.len() * self.n_kv_heads * self.capacity * self.head_dim * size_of::<f16>()
    }

    pub(crate) fn fits(&self, config: &ModelConfig) -> bool {
        self.k.len() == config.n_layers && self.n_kv_heads == config.n_kv_heads && self.head_dim == config.head_dim
    }

    /// Store the key and value rows (each `n_kv_heads * head_dim`) of position `pos` in `layer`.
    pub(crate) fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        for h in 0..self.n_kv_heads {
            let at = (h * self.capacity + pos) * hd;
            let (kd, vd) = (&mut self.k[layer][at..at + hd], &mut self.v[layer][at..at + hd]);
            kd.iter_mut().zip(&k[h * hd..(h + 1) * hd]).for_each(|(d, &x)| *d = f16::from_f32(x));
            vd.iter_mut().zip(&v[h * hd..(h + 1) * hd]).for_each(|(d, &x)| *d = f16::from_f32(x));
        }
    }

    /// Keys and values of `layer`, kv head `h`, positions `range`: each (positions, head_dim).
    pub(crate) fn head(&self, layer: usize, h: usize, range: std::ops::Range<usize>) -> (&[f16], &[f16]) {
        let base = h * self.capacity;
        let span = (base + range.start) * self.head_dim..(base + range.end) * self.head_dim;
        (&self.k[layer][span.clone()], &self.v[layer][span])
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
