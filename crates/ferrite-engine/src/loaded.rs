//! A model file opened for use: the parsed GGUF, the model built from it, its tokenizer and chat template.

use std::path::Path;
use std::sync::Arc;

use ferrite_gguf::GgufFile;
use ferrite_models::Model;
use ferrite_tokenizer::Tokenizer;

use crate::EngineError;
use crate::chat::ChatTemplate;

/// Everything loaded from one GGUF file. The model and tokenizer are immutable and shared.
pub struct LoadedModel {
    pub gguf: Arc<GgufFile>,
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    /// `tokenizer.chat_template`, if the file has one (base models usually do not).
    pub chat_template: Option<String>,
}

impl LoadedModel {
    /// Open `path`, build the model and tokenizer, and page the weights in. `progress(done, total)` is
    /// called with bytes paged in so far, so a caller can draw a progress bar for large files.
    pub fn open(path: impl AsRef<Path>, progress: &mut dyn FnMut(u64, u64)) -> Result<LoadedModel, EngineError> {
        let gguf = GgufFile::open(path.as_ref())?;
        // Paged in before the model is built: weights repacked while building are then copied from
        // memory, and the mapped originals they replace are let go again (`GgufFile::release`).
        prefault(&gguf, progress);
        let model = Model::from_gguf(&gguf)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        if tokenizer.vocab_size() != model.config().vocab_size {
            return Err(EngineError::Mismatch(format!(
                "the tokenizer has {} tokens but the model's vocabulary is {}",
                tokenizer.vocab_size(),
                model.config().vocab_size
            )));
        }
        let chat_template = gguf.opt_str("tokenizer.chat_template")?.map(str::to_string);
        Ok(LoadedModel { gguf: Arc::new(gguf), model: Arc::new(model), tokenizer: Arc::new(tokenizer), chat_template })
    }

    /// The chat template built with this model's BOS and EOS texts; `None` if the file has no template.
    pub fn template(&self) -> Result<Option<ChatTemplate>, EngineError> {
        let Some(src) = &self.chat_template else { return Ok(None) };
        let text = |id: Option<u32>| id.and_then(|id| self.tokenizer.token_text(id)).unwrap_or_default().to_string();
        Ok(Some(ChatTemplate::new(src, &text(self.tokenizer.bos()), &text(self.tokenizer.eos()))?))
    }

    /// Tokenize a prompt as llama.cpp does: special tokens parsed, BOS per the metadata unless the text
    /// (e.g. a rendered chat template) already starts with it.
    pub fn tokenize_prompt(&self, text: &str) -> Vec<u32> {
        let tok = &self.tokenizer;
        let mut ids = tok.encode(text, true, true);
        if let Some(bos) = tok.bos()
            && tok.add_bos()
            && ids.len() >= 2
            && ids[0] == bos
            && ids[1] == bos
        {
            ids.remove(0);
        }
        ids
    }
}

/// Touch every page of the tensor data once, so the first forward pass does not stall on page faults,
/// and report progress while doing it.
fn prefault(gguf: &GgufFile, progress: &mut dyn FnMut(u64, u64)) {
    const PAGE: usize = 4096;
    const REPORT: usize = 16 << 20;
    let storage = gguf.storage();
    let bytes = (*storage).as_ref();
    let start = (gguf.data_offset() as usize).min(bytes.len());
    let data = &bytes[start..];
    let total = data.len() as u64;
    let mut sum = 0u8;
    for (i, chunk) in data.chunks(REPORT).enumerate() {
        for b in chunk.iter().step_by(PAGE) {
            sum = sum.wrapping_add(*b);
        }
        progress(((i * REPORT) as u64 + chunk.len() as u64).min(total), total);
    }
    std::hint::black_box(sum);
}
