use ferrite_gguf::GgufError;

/// Why a tokenizer could not be built from a GGUF file's metadata.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("missing metadata key {0:?}")]
    MissingKey(&'static str),
    #[error("metadata key {key:?}: {problem}")]
    BadMetadata { key: &'static str, problem: String },
    /// A `tokenizer.ggml.model` that llama.cpp knows but this crate does not implement.
    #[error("tokenizer model {model:?} is not supported ({reason})")]
    UnsupportedModel { model: String, reason: &'static str },
    /// A `tokenizer.ggml.model` llama.cpp does not know either.
    #[error("unknown tokenizer model {0:?}")]
    UnknownModel(String),
    /// A `tokenizer.ggml.pre` that llama.cpp knows but this crate does not implement.
    #[error("pre-tokenizer {pre:?} is not supported ({reason})")]
    UnsupportedPre { pre: String, reason: &'static str },
    /// A `tokenizer.ggml.pre` llama.cpp does not know either.
    #[error("unknown pre-tokenizer {0:?}")]
    UnknownPre(String),
    /// A split pattern that does not compile: a bug in this crate's pattern table.
    #[error("pre-tokenizer pattern {pattern:?} does not compile: {reason}")]
    BadPattern { pattern: String, reason: String },
}
