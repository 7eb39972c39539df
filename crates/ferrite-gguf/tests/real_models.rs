//! The reader on the real model files.

use ferrite_gguf::GgufFile;
use ferrite_tensor::DType;

#[test]
// Tensor counts as the `gguf` Python package (llama.cpp's own reader) reports them.
fn real_models_parse() {
    for (file, arch, n_tensors) in [
        (ferrite_testdata::SMOLLM2, "llama", 272),
        (ferrite_testdata::QWEN05, "qwen2", 291),
        (ferrite_testdata::GEMMA3, "gemma3", 236),
    ] {
        let Some(path) = ferrite_testdata::model(file) else { continue };
        let g = GgufFile::open(&path).unwrap();
        assert_eq!(g.architecture(), Some(arch), "{file}");
        assert_eq!(g.tensors().len(), n_tensors, "{file}");
        assert!(g.tensors().iter().all(|t| t.dtype.is_supported()), "{file}: {:?}",
            g.tensors().iter().map(|t| t.dtype).collect::<std::collections::HashSet<_>>());
        let emb = g.tensor("token_embd.weight").unwrap();
        assert_ne!(emb.dtype, DType::F32);
        assert!(g.opt_array("tokenizer.ggml.tokens").unwrap().unwrap().len() > 30000);
    }
}
