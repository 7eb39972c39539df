//! `ferrite tokenize` and `ferrite detokenize`: the model's tokenizer alone.

use anyhow::{Context, Result};
use ferrite_gguf::GgufFile;
use ferrite_tokenizer::Tokenizer;

use crate::{DetokenizeArgs, TokenizeArgs};

fn tokenizer(path: &std::path::Path) -> Result<Tokenizer> {
    let gguf = GgufFile::open(path).with_context(|| format!("opening {}", path.display()))?;
    Tokenizer::from_gguf(&gguf).with_context(|| format!("building the tokenizer of {}", path.display()))
}

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    let tok = tokenizer(&a.model.model)?;
    // Like llama-tokenize: BOS as the metadata says unless --no-bos, special tokens parsed by default.
    let ids = tok.encode(&a.text, !a.no_bos, !a.no_parse_special);
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

pub fn detokenize(a: DetokenizeArgs) -> Result<()> {
    let tok = tokenizer(&a.model.model)?;
    if let Some(&bad) = a.ids.iter().find(|&&id| id as usize >= tok.vocab_size()) {
        anyhow::bail!("token id {bad} is outside the vocabulary of {}", tok.vocab_size());
    }
    println!("{}", tok.decode(&a.ids));
    Ok(())
}
