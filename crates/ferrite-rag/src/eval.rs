//! Retrieval evaluation against judged queries, and tuning the hybrid weight on them.
//!
//! A qrels file is JSON lines: `{"query": "...", "relevant": ["library/os.rst.txt", ...]}`. Relevance is
//! per document; a hit's document matches a judged path when its source equals the path or ends with
//! `/path`. The chunk ranking of a query (50 deep) is reduced to its documents in first-seen order, and
//! nDCG@10 (binary gains), recall@10 and MRR@10 are computed over those documents and averaged over the
//! queries.

use std::path::Path;

use ferrite_engine::Embedder;
use serde::{Deserialize, Serialize};

use crate::RagError;
use crate::collection::Collection;
use crate::search::{Fusion, Mode, Query};

/// Chunks retrieved per query before reducing to documents.
const DEPTH: usize = 50;

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Judged {
    pub query: String,
    pub relevant: Vec<String>,
}

/// Read a qrels file (JSON lines; blank lines and lines starting with `#` are skipped).
pub fn read_qrels(path: &Path) -> Result<Vec<Judged>, RagError> {
    let text = std::fs::read_to_string(path).map_err(|source| RagError::Io { path: path.to_path_buf(), source })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let j: Judged = serde_json::from_str(line).map_err(|e| RagError::Input(format!("{} line {}: {e}", path.display(), i + 1)))?;
        if j.relevant.is_empty() {
            return Err(RagError::Input(format!("{} line {}: no relevant documents", path.display(), i + 1)));
        }
        out.push(j);
    }
    if out.is_empty() {
        return Err(RagError::Input(format!("{}: no judged queries", path.display())));
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Scores {
    pub ndcg_at_10: f64,
    pub recall_at_10: f64,
    pub mrr_at_10: f64,
    /// Median and 95th-percentile time of one query (embedding it included), milliseconds.
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// Metrics of one ranked document list against the relevant set.
pub fn score(ranked: &[String], relevant: &[String]) -> Scores {
    let is_rel = |src: &str| relevant.iter().any(|r| src == r || src.ends_with(&format!("/{r}")));
    let top: Vec<bool> = ranked.iter().take(10).map(|s| is_rel(s)).collect();
    let dcg: f64 = top.iter().enumerate().filter(|(_, r)| **r).map(|(i, _)| 1.0 / ((i + 2) as f64).log2()).sum();
    let ideal: f64 = (0..relevant.len().min(10)).map(|i| 1.0 / ((i + 2) as f64).log2()).sum();
    let found = top.iter().filter(|r| **r).count();
    Scores {
        ndcg_at_10: if ideal > 0.0 { dcg / ideal } else { 0.0 },
        recall_at_10: found as f64 / relevant.len() as f64,
        mrr_at_10: top.iter().position(|r| *r).map_or(0.0, |p| 1.0 / (p + 1) as f64),
        ..Scores::default()
    }
}

/// The documents of the query's chunk ranking, first-seen order.
fn ranked_docs(c: &Collection, e: &Embedder, query: &str, mode: Mode, fusion: Option<Fusion>) -> Result<Vec<String>, RagError> {
    let hits = c.search(e, &Query { text: query, k: DEPTH, mode, filter: None, fusion })?;
    let mut docs: Vec<String> = Vec::new();
    for h in hits {
        if !docs.contains(&h.source) {
            docs.push(h.source);
        }
    }
    Ok(docs)
}

/// Mean scores of `mode` (with `fusion` for hybrid) over `qrels`.
pub fn evaluate(c: &Collection, e: &Embedder, qrels: &[Judged], mode: Mode, fusion: Option<Fusion>) -> Result<Scores, RagError> {
    let mut sum = Scores::default();
    let mut ms = Vec::with_capacity(qrels.len());
    for j in qrels {
        let t = std::time::Instant::now();
        let docs = ranked_docs(c, e, &j.query, mode, fusion)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        let s = score(&docs, &j.relevant);
        sum.ndcg_at_10 += s.ndcg_at_10;
        sum.recall_at_10 += s.recall_at_10;
        sum.mrr_at_10 += s.mrr_at_10;
    }
    let n = qrels.len() as f64;
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    Ok(Scores {
        ndcg_at_10: sum.ndcg_at_10 / n,
        recall_at_10: sum.recall_at_10 / n,
        mrr_at_10: sum.mrr_at_10 / n,
        p50_ms: pct(0.5),
        p95_ms: pct(0.95),
    })
}

/// The candidates `tune` tries: RRF, and weighted fusion with the dense weight from 0 to 1 in tenths.
pub fn candidates() -> Vec<Fusion> {
    std::iter::once(Fusion::Rrf).chain((0..=10).map(|i| Fusion::Weighted(i as f32 / 10.0))).collect()
}

/// Each candidate fusion's scores; the best by nDCG@10 first (ties: RRF, then the weight nearest 0.5).
pub fn tune(c: &Collection, e: &Embedder, qrels: &[Judged]) -> Result<Vec<(Fusion, Scores)>, RagError> {
    let mut out = Vec::new();
    for f in candidates() {
        out.push((f, evaluate(c, e, qrels, Mode::Hybrid, Some(f))?));
    }
    let tie = |f: &Fusion| match f {
        Fusion::Rrf => 0.0,
        Fusion::Weighted(w) => 1.0 + (w - 0.5).abs() as f64,
    };
    out.sort_by(|a, b| b.1.ndcg_at_10.total_cmp(&a.1.ndcg_at_10).then(tie(&a.0).total_cmp(&tie(&b.0))));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        let ranked: Vec<String> = ["/d/x.rst", "/d/a.rst", "/d/y.rst", "/d/b.rst"].map(String::from).to_vec();
        let s = score(&ranked, &["a.rst".into(), "b.rst".into()]);
        // Relevant at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3).
        let want = (1.0 / 3f64.log2() + 1.0 / 5f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((s.ndcg_at_10 - want).abs() < 1e-12);
        assert_eq!(s.recall_at_10, 1.0);
        assert_eq!(s.mrr_at_10, 0.5);
        let none = score(&ranked, &["zzz.rst".into()]);
        assert_eq!(none, Scores::default());
        // A path only matches whole components: "a.rst" is not "/d/aa.rst".
        assert_eq!(score(&["/d/aa.rst".to_string()], &["a.rst".into()]).recall_at_10, 0.0);
    }
}
