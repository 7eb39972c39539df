use std::path::PathBuf;

/// Why a GGUF file could not be read. Offsets are byte positions in the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a GGUF file (magic {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),
    #[error("file truncated: {what} at offset {offset} needs {need} bytes, only {have} left")]
    Truncated { what: String, offset: u64, need: u64, have: u64 },
    #[error("{what} at offset {offset}: count {count} cannot fit in the {have} bytes left")]
    CountTooLarge { what: String, offset: u64, count: u64, have: u64 },
    #[error("invalid UTF-8 in {what} at offset {offset}")]
    BadUtf8 { what: String, offset: u64 },
    #[error("metadata key {key:?}: unknown value type {ty} at offset {offset}")]
    BadValueType { key: String, ty: u32, offset: u64 },
    #[error("metadata key {key:?}: arrays nested deeper than {max} levels")]
    NestingTooDeep { key: String, max: usize },
    #[error("duplicate metadata key {0:?}")]
    DuplicateKey(String),
    #[error("duplicate tensor name {0:?}")]
    DuplicateTensor(String),
    #[error("general.alignment must be a non-zero power of two, got {0}")]
    BadAlignment(u64),
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: String },
    #[error("missing metadata key {0:?}")]
    MissingKey(String),
    #[error("tensor {name:?}: {problem}")]
    BadTensor { name: String, problem: String },
}
