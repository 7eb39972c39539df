//! Retrieval-augmented generation over the user's own documents.
//!
//! - [`extract`]: documents (text, Markdown, reStructuredText, HTML, PDF) to text and structural blocks.
//! - [`chunk`]: blocks packed into chunks within the embedding model's token budget, with overlap.
//! - [`hnsw`]: the approximate nearest-neighbour graph the dense index searches.

pub mod chunk;
pub mod extract;
pub mod hnsw;

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
