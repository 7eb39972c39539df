//! Locating test data that is fetched rather than committed: the real models (`scripts/fetch-models.sh`)
//! and the llama.cpp sources with their tokenizer vectors (`scripts/build-llama-cpp.sh --source-only`).
//!
//! A test that needs such data calls [`model`] or [`llama_cpp_models`]; when the data is genuinely absent
//! it gets `None` and a visible `SKIPPED` line on stderr. With `FERRITE_REQUIRE_DATA=1` (set by CI) absence
//! is a failure instead, so nothing is skipped silently where the data must be present.

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// The directory real models are fetched into: `$FERRITE_MODELS` or `<workspace>/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("FERRITE_MODELS").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("models"))
}

/// The SmolLM2-135M-Instruct Q4_1 file name.
pub const SMOLLM2: &str = "smollm2-135m-instruct-q4_1.gguf";
/// The Qwen2.5-Coder-0.5B-Instruct Q4_K_M file name.
pub const QWEN05: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
/// The all-MiniLM-L6-v2 sentence-transformers folder.
pub const MINILM: &str = "all-minilm-l6-v2";
/// The Gemma-3-270M (base) Q4_K_M file name.
pub const GEMMA3: &str = "gemma3-270m-q4_k_m.gguf";

/// Path of a fetched model, or `None` (with a SKIPPED message) when it is absent.
pub fn model(file: &str) -> Option<PathBuf> {
    present(models_dir().join(file), "model", "scripts/fetch-models.sh")
}

/// `vendor/llama.cpp/models` of the llama-cpp-python 0.3.36 sdist (vocab-only GGUF files, tokenizer test
/// vectors, chat templates), or `None` when it has not been fetched.
pub fn llama_cpp_models() -> Option<PathBuf> {
    let src = std::env::var_os("FERRITE_LLAMA_CPP_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("llama_cpp_python-0.3.36/vendor/llama.cpp"));
    present(src.join("models"), "llama.cpp sources", "scripts/build-llama-cpp.sh --source-only")
}

/// The cache directory: `$FERRITE_CACHE` or `<workspace>/.cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FERRITE_CACHE").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".cache"))
}

/// The perplexity text (`scripts/reference/make_ppl_text.sh`), or `None` when it has not been built.
pub fn ppl_text() -> Option<PathBuf> {
    present(cache_dir().join("ppl.txt"), "perplexity text", "scripts/reference/make_ppl_text.sh")
}

/// The committed llama.cpp reference fixtures of a model (`tests/reference/<short>`).
pub fn reference(short: &str) -> PathBuf {
    workspace_root().join("tests/reference").join(short)
}

/// A reference fixture file, or `None` (with a SKIPPED message) when it has not been generated yet.
pub fn reference_file(short: &str, name: &str) -> Option<PathBuf> {
    present(reference(short).join(name), "reference fixture", "scripts/reference/generate.sh")
}

fn present(path: PathBuf, what: &str, fetch: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if std::env::var("FERRITE_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!("{what} {} is missing and FERRITE_REQUIRE_DATA=1: run {fetch}", path.display());
    }
    eprintln!("SKIPPED: {what} {} is absent (run {fetch})", path.display());
    None
}
