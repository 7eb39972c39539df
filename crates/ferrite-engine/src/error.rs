/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] ferrite_gguf::GgufError),
    #[error(transparent)]
    Model(#[from] ferrite_models::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] ferrite_tokenizer::TokenizerError),
    #[error(transparent)]
    Chat(#[from] crate::chat::ChatError),
    #[error("{0}")]
    Mismatch(String),
    /// The request cannot be served as asked (e.g. a prompt longer than the context); nothing is truncated.
    #[error("{0}")]
    Input(String),
}
