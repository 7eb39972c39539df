use ferrite_gguf::GgufError;
use ferrite_tensor::DType;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{path}: {problem}")]
    BadConfig { path: std::path::PathBuf, problem: String },
    #[error("unsupported architecture {0:?} (supported: llama, qwen2, gemma3; encoders: bert)")]
    UnsupportedArch(String),
    #[error("missing tensor {0:?}")]
    MissingTensor(String),
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    BadShape { name: String, expected: Vec<u64>, found: Vec<u64> },
    #[error("tensor {name:?} has type {dtype}, which Ferrite cannot compute with")]
    UnsupportedType { name: String, dtype: DType },
    #[error("tensor {name:?}: {source}")]
    Tensor { name: String, source: ferrite_tensor::TensorError },
    #[error("invalid hyperparameter {key}: {problem}")]
    BadHparam { key: String, problem: String },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken { id: u32, vocab: usize },
    #[error("a sequence of {len} tokens exceeds the {max} positions the model has")]
    TooLong { len: usize, max: usize },
    #[error("context full: {have} cached + {adding} new tokens exceed the cache capacity of {capacity}")]
    ContextFull { have: usize, adding: usize, capacity: usize },
    #[error("kernel: {0}")]
    Compute(ferrite_tensor::TensorError),
    #[error("KV cache was made for another model shape")]
    CacheMismatch,
    #[error("block table names block {block}, but the KV pool has {n_blocks} blocks")]
    BadBlock { block: u32, n_blocks: usize },
    #[error("two sequences of one step write KV block {block}")]
    SharedBlockWrite { block: u32 },
    #[error("{tokens} tokens from index {first} do not fit the batch of {size} they are placed in")]
    BadPlace { tokens: usize, first: usize, size: usize },
}
