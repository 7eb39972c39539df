//! BM25 over chunks with tantivy: an English analyzer (split on non-alphanumerics, lowercase, stop
//! words removed, Porter/Snowball stemming) on the indexed text, and the chunk id as a fast field so a
//! filter can be applied inside the search.
//!
//! Queries are analyzed with the same analyzer and become an OR of term queries: user text is never
//! parsed as tantivy query syntax, so no input is an error.

use std::path::Path;
use std::sync::Arc;

use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer};
use tantivy::{Index, IndexReader, TantivyDocument, Term};

use crate::RagError;

const ANALYZER: &str = "ferrite_en";

fn lex(e: impl std::fmt::Display) -> RagError {
    RagError::Lexical(e.to_string())
}

/// A BM25 index of (chunk id, text).
pub struct Bm25 {
    reader: IndexReader,
    text: Field,
}

fn analyzer() -> TextAnalyzer {
    let stop = StopWordFilter::new(Language::English).expect("tantivy ships English stop words");
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop)
        .filter(Stemmer::new(Language::English))
        .build()
}

fn schema() -> (Schema, Field, Field) {
    let mut b = Schema::builder();
    let id = b.add_u64_field("id", INDEXED | FAST);
    let indexing = TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let text = b.add_text_field("text", TextOptions::default().set_indexing_options(indexing));
    (b.build(), id, text)
}

impl Bm25 {
    /// Index `docs` into the empty directory `dir`.
    pub fn build<'a>(dir: &Path, docs: impl Iterator<Item = (u64, &'a str)>) -> Result<Bm25, RagError> {
        let (schema, id, text) = schema();
        let index = Index::create_in_dir(dir, schema).map_err(lex)?;
        index.tokenizers().register(ANALYZER, analyzer());
        {
            let mut w = index.writer_with_num_threads(1, 64 << 20).map_err(lex)?;
            for (i, t) in docs {
                let mut d = TantivyDocument::default();
                d.add_u64(id, i);
                d.add_text(text, t);
                w.add_document(d).map_err(lex)?;
            }
            w.commit().map_err(lex)?;
            w.wait_merging_threads().map_err(lex)?;
        }
        Self::with_index(&index, text)
    }

    pub fn open(dir: &Path) -> Result<Bm25, RagError> {
        let index = Index::open_in_dir(dir).map_err(lex)?;
        index.tokenizers().register(ANALYZER, analyzer());
        let schema = index.schema();
        schema.get_field("id").map_err(lex)?;
        let text = schema.get_field("text").map_err(lex)?;
        Self::with_index(&index, text)
    }

    fn with_index(index: &Index, text: Field) -> Result<Bm25, RagError> {
        let reader = index.reader().map_err(lex)?;
        Ok(Bm25 { reader, text })
    }

    /// The analyzed terms of `query` (what it is searched for).
    pub fn terms(&self, query: &str) -> Vec<String> {
        let mut a = analyzer();
        let mut stream = a.token_stream(query);
        let mut out = Vec::new();
        while let Some(t) = stream.next() {
            if !out.contains(&t.text) {
                out.push(t.text.clone());
            }
        }
        out
    }

    /// The `k` best chunks for `query` by BM25, best first, as (chunk id, score); with `allowed`, only
    /// chunks whose id it marks true (the filter runs inside the collector, so up to k allowed matches
    /// come back whenever they exist).
    pub fn search(&self, query: &str, k: usize, allowed: Option<Arc<Vec<bool>>>) -> Result<Vec<(u64, f32)>, RagError> {
        let clauses: Vec<(Occur, Box<dyn Query>)> = self
            .terms(query)
            .into_iter()
            .map(|t| {
                (
                    Occur::Should,
                    Box::new(TermQuery::new(Term::from_field_text(self.text, &t), IndexRecordOption::WithFreqs)) as Box<dyn Query>,
                )
            })
            .collect();
        if clauses.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let q = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(k).order_by_score();
        let hits = match allowed {
            None => searcher.search(&q, &top).map_err(lex)?,
            Some(a) => {
                let f = FilterCollector::new("id".to_string(), move |id: u64| a.get(id as usize).copied().unwrap_or(false), top);
                searcher.search(&q, &f).map_err(lex)?
            }
        };
        let mut out = Vec::with_capacity(hits.len());
        for (score, addr) in hits {
            let seg = searcher.segment_reader(addr.segment_ord);
            let ids = seg.fast_fields().u64("id").map_err(lex)?;
            let id = ids.first(addr.doc_id).ok_or_else(|| lex("document without an id"))?;
            out.push((id, score));
        }
        Ok(out)
    }
}

impl crate::store::LexicalStore for Bm25 {
    fn search(&self, query: &str, k: usize, allowed: Option<Arc<Vec<bool>>>) -> Result<Vec<(u64, f32)>, RagError> {
        Bm25::search(self, query, k, allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stemmed_ranked_and_filtered() {
        let dir = std::env::temp_dir().join(format!("ferrite-bm25-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let docs = [
            (0u64, "Walking the directory tree with os.walk yields every folder."),
            (1, "The json module encodes and decodes JSON documents."),
            (2, "Directories are created with os.makedirs; walks are recursive."),
            (3, "Unrelated text about cooking pasta."),
        ];
        let idx = Bm25::build(&dir, docs.iter().map(|(i, t)| (*i, *t))).unwrap();
        assert_eq!(idx.terms("The Walking directories!"), ["walk", "directori"]);
        let hits = idx.search("walking directories", 10, None).unwrap();
        let ids: Vec<u64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(ids.len(), 2, "{hits:?}");
        assert!(ids.contains(&0) && ids.contains(&2));
        assert!(hits[0].1 >= hits[1].1);
        let only2 = idx.search("walking directories", 10, Some(Arc::new(vec![false, true, true, true]))).unwrap();
        assert_eq!(only2.iter().map(|h| h.0).collect::<Vec<_>>(), [2]);
        assert!(idx.search("the and of", 10, None).unwrap().is_empty(), "stop words only");
        assert!(idx.search("AND OR ( \" :", 10, None).unwrap().is_empty(), "query syntax is not parsed");
        drop(idx);
        let again = Bm25::open(&dir).unwrap();
        assert_eq!(again.search("json", 5, None).unwrap()[0].0, 1);
        std::fs::remove_dir_all(&dir).ok();
    }
}
