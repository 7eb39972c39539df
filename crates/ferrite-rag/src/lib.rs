//! Retrieval-augmented generation over the user's own documents.
//!
//! - [`extract`]: documents (text, Markdown, reStructuredText, HTML, PDF) to text and structural blocks.
//! - [`chunk`]: blocks packed into chunks within the embedding model's token budget, with overlap.
//! - [`hnsw`]: the approximate nearest-neighbour graph the dense index searches.
//! - [`lexical`]: BM25 (tantivy) over the same chunks.
//! - [`collection`]: a collection directory, crash-safe incremental ingestion.
//! - [`eval`]: nDCG@10, recall@10 and MRR against judged queries; tuning the hybrid weight.
//! - [`answer`]: prompts that quote sources as data, and citation checking.
//! - [`store`]: the vector and lexical stores as traits (local implementations; room for a remote one).
//! - [`filter`]: metadata filters; [`search`]: dense, BM25 and hybrid retrieval with filters inside.

pub mod answer;
pub mod chunk;
pub mod collection;
pub mod eval;
pub mod extract;
pub mod filter;
pub mod hnsw;
pub mod lexical;
pub mod search;
pub mod store;

pub use collection::{Collection, IngestOptions, IngestReport, Progress, Quiet, ingest};
pub use filter::Filter;
pub use search::{Fusion, Hit, Mode, Query};

use std::path::PathBuf;

/// Why a RAG operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RagError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {problem}")]
    Document { path: PathBuf, problem: String },
    #[error("collection {path}: {problem}")]
    Collection { path: PathBuf, problem: String },
    #[error("invalid filter: {0}")]
    Filter(String),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Engine(#[from] ferrite_engine::EngineError),
    #[error("BM25 index: {0}")]
    Lexical(String),
}
