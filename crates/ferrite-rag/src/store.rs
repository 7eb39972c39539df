//! The two stores a collection searches, as traits: the local implementations live in this process
//! ([`LocalVectors`]: vectors in memory with an exact scan or an HNSW graph; [`crate::lexical::Bm25`]:
//! tantivy), and a remote backend (a Qdrant cluster through `qdrant-client`, say) can implement the same
//! traits when a collection outgrows one machine, without touching ingestion, fusion or answering.
//!
//! Filters reach a store as the set of allowed chunk ids, so every store applies them inside its own
//! search.

use std::sync::Arc;

use ferrite_tensor::vmath;

use crate::RagError;
use crate::hnsw::Hnsw;

/// Nearest-neighbour search over the chunks' unit vectors.
pub trait VectorStore: Send + Sync {
    /// Number of vectors (= chunks).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Chunk `id`'s vector (ingestion copies the vectors of unchanged documents).
    fn vector(&self, id: u32) -> Vec<f32>;
    /// The `k` allowed chunks most similar to `q`, best first, as (chunk, cosine). `allowed`, when
    /// given, has one flag per chunk and `n_allowed` of them set.
    fn search(&self, q: &[f32], k: usize, allowed: Option<&[bool]>, n_allowed: usize) -> Vec<(u32, f32)>;
}

/// Ranked lexical search over the chunks' text.
pub trait LexicalStore: Send + Sync {
    /// The `k` best allowed chunks for `query`, best first, as (chunk, score).
    fn search(&self, query: &str, k: usize, allowed: Option<Arc<Vec<bool>>>) -> Result<Vec<(u64, f32)>, RagError>;
}

/// A filter selecting at most this share of the chunks is searched exactly rather than through HNSW.
const EXACT_SHARE: f64 = 0.05;

/// Vectors in memory; an HNSW graph over them when the collection is large enough to have one.
pub struct LocalVectors {
    pub dim: usize,
    /// (n, dim).
    pub data: Vec<f32>,
    pub hnsw: Option<Hnsw>,
}

impl LocalVectors {
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..][..self.dim]
    }

    /// Exact: every allowed vector scored, the best k kept.
    pub fn exact(&self, q: &[f32], k: usize, allowed: Option<&[bool]>) -> Vec<(u32, f32)> {
        let n = self.len();
        let mut scored: Vec<(u32, f32)> =
            (0..n).filter(|&i| allowed.is_none_or(|a| a[i])).map(|i| (i as u32, vmath::dot(q, self.row(i)))).collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        scored.select_nth_unstable_by(k - 1, order);
        scored.truncate(k);
        scored.sort_by(order);
        scored
    }
}

impl VectorStore for LocalVectors {
    fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    fn vector(&self, id: u32) -> Vec<f32> {
        self.row(id as usize).to_vec()
    }

    fn search(&self, q: &[f32], k: usize, allowed: Option<&[bool]>, n_allowed: usize) -> Vec<(u32, f32)> {
        let n = self.len();
        if let Some(h) = &self.hnsw
            && (n_allowed as f64) > EXACT_SHARE * n as f64
        {
            let allow = allowed.map(|a| move |i: u32| a[i as usize]);
            let found = h.search(&self.data, q, k, k.max(64), allow.as_ref().map(|f| f as &dyn Fn(u32) -> bool));
            // Too few allowed nodes reached through the graph: the exact scan finds them all.
            if found.len() >= k.min(n_allowed) {
                return found;
            }
        }
        self.exact(q, k, allowed)
    }
}
