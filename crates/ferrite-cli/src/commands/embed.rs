//! `ferrite embed`: sentence embeddings as a JSON array of vectors, one per text, in input order.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use ferrite_engine::Embedder;

use crate::EmbedArgs;

pub fn main(a: EmbedArgs) -> Result<()> {
    super::init_threads(a.threads)?;
    let embedder = load_embedder(&a.model)?;
    let texts: Vec<String> = if a.texts.is_empty() {
        std::io::stdin().lock().lines().collect::<std::io::Result<_>>().context("reading texts from stdin")?
    } else {
        a.texts
    };
    let pb = crate::progress::steps("embedding", texts.len() as u64);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    out.write_all(b"[")?;
    let (mut tokens, mut truncated) = (0, 0);
    let (t0, mut busy) = (std::time::Instant::now(), std::time::Duration::ZERO);
    for (g, group) in texts.chunks(a.batch_size.max(1)).enumerate() {
        let refs: Vec<&str> = group.iter().map(String::as_str).collect();
        let t = std::time::Instant::now();
        let e = embedder.embed(&refs)?;
        busy += t.elapsed();
        (tokens, truncated) = (tokens + e.tokens, truncated + e.truncated);
        for (i, v) in e.vectors.iter().enumerate() {
            if g + i > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut out, v)?;
        }
        pb.inc(group.len() as u64);
    }
    out.write_all(b"]\n")?;
    out.flush()?;
    pb.finish_and_clear();
    if truncated > 0 {
        eprintln!("ferrite: {truncated} of {} texts were longer than {} tokens and were truncated", texts.len(), embedder.max_tokens());
    }
    let secs = busy.as_secs_f64();
    eprintln!(
        "ferrite: {} texts, {tokens} tokens embedded in {secs:.3} s ({:.1} texts/s, {:.0} tokens/s; {:.3} s in all)",
        texts.len(),
        texts.len() as f64 / secs.max(1e-9),
        tokens as f64 / secs.max(1e-9),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Load an embedding model (a sentence-transformers folder or a BERT GGUF) and say what it is.
pub fn load_embedder(path: &std::path::Path) -> Result<Embedder> {
    let t = std::time::Instant::now();
    let e = Embedder::load(path).with_context(|| format!("loading the embedding model {}", path.display()))?;
    eprintln!(
        "ferrite: loaded embedding model {} ({} dims, {:?} pooling{}, window {} tokens) in {:.2} s",
        path.display(),
        e.dim(),
        e.pooling(),
        if e.normalizes() { ", normalized" } else { "" },
        e.max_tokens(),
        t.elapsed().as_secs_f64()
    );
    Ok(e)
}
