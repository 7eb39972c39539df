//! Retrieval: dense (cosine over the chunk vectors: exact scan or HNSW), BM25, and their fusion.
//!
//! A metadata filter becomes the set of allowed chunks, which both retrievers search *within* (HNSW
//! walks the whole graph but returns only allowed nodes, falling back to an exact scan of the allowed
//! chunks when the filter is selective or the graph returns too few; BM25 filters in its collector), so
//! a filtered query returns k hits whenever k chunks match the filter. Hybrid fuses the two ranked
//! lists by reciprocal rank (1/(60 + rank)) or by a weighted sum of min-max normalized scores. Hits with
//! the same text as a better hit (a file ingested twice) are dropped, and retrieval goes deeper until k
//! distinct hits are found or the collection is exhausted: deduplication never silently returns fewer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferrite_engine::Embedder;
use serde::Serialize;

use crate::RagError;
use crate::collection::Collection;
use crate::filter::Filter;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Dense,
    Bm25,
    Hybrid,
}

impl std::str::FromStr for Mode {
    type Err = RagError;
    fn from_str(s: &str) -> Result<Mode, RagError> {
        match s {
            "dense" => Ok(Mode::Dense),
            "bm25" => Ok(Mode::Bm25),
            "hybrid" => Ok(Mode::Hybrid),
            other => Err(RagError::Input(format!("mode {other:?} is not one of hybrid, dense, bm25"))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion with constant 60.
    Rrf,
    /// w · dense + (1 − w) · bm25, each min-max normalized over its candidates.
    Weighted(f32),
}

/// One retrieved chunk.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Hit {
    pub chunk: u32,
    /// The document's id.
    pub doc_id: String,
    /// The document's path as ingested.
    pub source: String,
    /// Character offsets of the chunk in the document's text.
    pub start: usize,
    pub end: usize,
    pub score: f32,
    pub text: String,
    /// Headings the chunk sits under.
    pub context: String,
    pub title: Option<String>,
    /// Ranks (1-based) in the dense and BM25 lists, when it was in them.
    pub dense_rank: Option<usize>,
    pub bm25_rank: Option<usize>,
}

/// A query.
#[derive(Clone, Debug)]
pub struct Query<'a> {
    pub text: &'a str,
    pub k: usize,
    pub mode: Mode,
    pub filter: Option<&'a Filter>,
    /// `None`: the collection's default.
    pub fusion: Option<Fusion>,
}

const RRF_K: f32 = 60.0;

impl Collection {
    /// The fusion hybrid queries use unless told otherwise.
    pub fn default_fusion(&self) -> Fusion {
        if self.config.fusion == "weighted" { Fusion::Weighted(self.config.dense_weight) } else { Fusion::Rrf }
    }

    /// Run `q`: the best `q.k` distinct chunks, best first.
    pub fn search(&self, embedder: &Embedder, q: &Query) -> Result<Vec<Hit>, RagError> {
        let n = self.chunks.len();
        if q.k == 0 || n == 0 {
            return Ok(Vec::new());
        }
        let allowed: Option<Arc<Vec<bool>>> = q.filter.map(|f| Arc::new((0..n).map(|c| f.matches(&|p| self.field(c, p))).collect()));
        let n_allowed = allowed.as_ref().map_or(n, |a| a.iter().filter(|&&x| x).count());
        let qvec = match q.mode {
            Mode::Bm25 => None,
            _ => Some(embedder.embed(&[q.text])?.vectors.remove(0)),
        };
        let fusion = q.fusion.unwrap_or_else(|| self.default_fusion());
        let mut depth = (4 * q.k).max(50).min(n);
        loop {
            let dense = match &qvec {
                Some(v) => self.dense.search(v, depth, allowed.as_deref().map(|a| &a[..]), n_allowed),
                None => Vec::new(),
            };
            let lexical: Vec<(u32, f32)> = match q.mode {
                Mode::Dense => Vec::new(),
                _ => self.lexical.search(q.text, depth, allowed.clone())?.into_iter().map(|(i, s)| (i as u32, s)).collect(),
            };
            let fused = fuse(q.mode, fusion, &dense, &lexical);
            let mut seen = HashSet::new();
            let mut hits = Vec::with_capacity(q.k);
            for (chunk, score) in fused {
                let c = &self.chunks[chunk as usize];
                if !seen.insert(c.text.trim()) {
                    continue;
                }
                let d = &self.docs[c.doc as usize];
                let rank = |list: &[(u32, f32)]| list.iter().position(|x| x.0 == chunk).map(|p| p + 1);
                hits.push(Hit {
                    chunk,
                    doc_id: d.id.clone(),
                    source: d.source.clone(),
                    start: c.start,
                    end: c.end,
                    score,
                    text: c.text.clone(),
                    context: c.context.clone(),
                    title: d.title.clone(),
                    dense_rank: rank(&dense),
                    bm25_rank: rank(&lexical),
                });
                if hits.len() == q.k {
                    break;
                }
            }
            // Too few distinct hits while more candidates exist: look deeper.
            if hits.len() >= q.k || depth >= n_allowed.min(n) {
                return Ok(hits);
            }
            depth = (depth * 4).min(n);
        }
    }
}

/// Combine the ranked lists as `mode` and `fusion` say; best first.
pub fn fuse(mode: Mode, fusion: Fusion, dense: &[(u32, f32)], lexical: &[(u32, f32)]) -> Vec<(u32, f32)> {
    match mode {
        Mode::Dense => return dense.to_vec(),
        Mode::Bm25 => return lexical.to_vec(),
        Mode::Hybrid => {}
    }
    let mut score: HashMap<u32, f32> = HashMap::new();
    match fusion {
        Fusion::Rrf => {
            for list in [dense, lexical] {
                for (rank, &(id, _)) in list.iter().enumerate() {
                    *score.entry(id).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
                }
            }
        }
        Fusion::Weighted(w) => {
            for (list, weight) in [(dense, w), (lexical, 1.0 - w)] {
                let (lo, hi) = list.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), x| (l.min(x.1), h.max(x.1)));
                for &(id, s) in list {
                    let norm = if hi > lo { (s - lo) / (hi - lo) } else { 1.0 };
                    *score.entry(id).or_default() += weight * norm;
                }
            }
        }
    }
    let mut out: Vec<(u32, f32)> = score.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_and_weighted_fusion() {
        let dense = [(1u32, 0.9f32), (2, 0.8), (3, 0.1)];
        let lexical = [(3u32, 12.0f32), (1, 3.0)];
        let rrf = fuse(Mode::Hybrid, Fusion::Rrf, &dense, &lexical);
        assert_eq!(rrf[0].0, 1, "in both lists, ranks 1 and 2");
        assert_eq!(rrf.len(), 3);
        let w0 = fuse(Mode::Hybrid, Fusion::Weighted(0.0), &dense, &lexical);
        assert_eq!(w0[0].0, 3, "BM25 only");
        let w1 = fuse(Mode::Hybrid, Fusion::Weighted(1.0), &dense, &lexical);
        assert_eq!(w1.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2, 3], "dense only");
        assert_eq!(fuse(Mode::Dense, Fusion::Rrf, &dense, &lexical), dense.to_vec());
    }
}
