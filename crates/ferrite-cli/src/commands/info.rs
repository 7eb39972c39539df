//! `ferrite info`: what a model file holds.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use ferrite_gguf::GgufFile;
use ferrite_models::Model;
use ferrite_tokenizer::Tokenizer;

use crate::InfoArgs;

pub fn main(a: InfoArgs) -> Result<()> {
    if a.cpu {
        cpu();
    }
    let Some(path) = &a.model else { return Ok(()) };
    let gguf = GgufFile::open(path).with_context(|| format!("opening {}", path.display()))?;
    println!("file:         {} ({:.1} MiB, GGUF v{})", path.display(), gguf.file_size() as f64 / (1 << 20) as f64, gguf.version());
    if let Some(name) = gguf.opt_str("general.name")? {
        println!("name:         {name}");
    }
    println!("architecture: {}", gguf.architecture().unwrap_or("(none)"));

    let mut types: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    let mut params = 0u64;
    for t in gguf.tensors() {
        let e = types.entry(t.dtype.name()).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.size;
        params += t.n_elements();
    }
    println!("parameters:   {:.1} M in {} tensors", params as f64 / 1e6, gguf.tensors().len());
    for (ty, (n, elems, bytes)) in &types {
        println!("  {ty:<6} {n:>4} tensors, {:>8.1} M elements, {:>8.1} MiB", *elems as f64 / 1e6, *bytes as f64 / (1 << 20) as f64);
    }

    if gguf.architecture() == Some("bert") {
        // An encoder: `ferrite embed` runs it (with the WordPiece tokenizer rebuilt from the vocabulary).
        match ferrite_models::Bert::from_gguf(&gguf) {
            Ok(m) => {
                let c = m.config();
                println!("encoder:      {} layers, dim {} (ffn {}), {} heads, {} positions, pooling {:?}", c.n_layers, c.dim, c.ffn_dim, c.n_heads, c.max_positions, c.pooling);
                println!("use:          ferrite embed --model {} TEXT...", a.model.as_ref().map_or(String::new(), |p| p.display().to_string()));
            }
            Err(e) => println!("encoder:      cannot be built: {e}"),
        }
        println!("kernels:      {}", ferrite_tensor::quant::kernel_tier());
        if a.tensors {
            for t in gguf.tensors() {
                println!("  {:<40} {:<6} {:?}", t.name, t.dtype.name(), t.dims);
            }
        }
        return Ok(());
    }
    match Model::from_gguf(&gguf) {
        Ok(m) => {
            let c = m.config();
            println!("layers:       {}", c.n_layers);
            println!("dim:          {} (ffn {})", c.dim, c.ffn_dim);
            println!("heads:        {} query, {} key/value, head size {}", c.n_heads, c.n_kv_heads, c.head_dim);
            println!("context:      {} (trained)", c.ctx_train);
            let windows: Vec<String> = c.window.iter().map(|w| w.map_or("global".into(), |w| w.to_string())).collect();
            if c.window.iter().any(Option::is_some) {
                println!("attention:    sliding window per layer: {}", windows.join(" "));
            }
            let r = &c.rope[c.n_layers - 1];
            println!("rope:         {:?}, {} dims, base {} (last layer), scale {}", r.style, r.n_dims, r.freq_base, r.freq_scale);
        }
        Err(e) => println!("model:        cannot be built: {e}"),
    }

    match Tokenizer::from_gguf(&gguf) {
        Ok(t) => println!(
            "tokenizer:    {} / {}, {} tokens, bos {:?}, eos {:?}, add_bos {}",
            gguf.opt_str("tokenizer.ggml.model")?.unwrap_or("?"),
            gguf.opt_str("tokenizer.ggml.pre")?.unwrap_or("default"),
            t.vocab_size(),
            t.bos(),
            t.eos(),
            t.add_bos()
        ),
        Err(e) => println!("tokenizer:    cannot be built: {e}"),
    }
    let template = gguf.opt_str("tokenizer.chat_template")?;
    println!("chat template: {}", template.map_or("absent (use raw prompts)".to_string(), |t| format!("present ({} bytes)", t.len())));
    println!("kernels:      {}", ferrite_tensor::quant::kernel_tier());

    if a.tensors {
        for t in gguf.tensors() {
            println!("  {:<40} {:<6} {:?}", t.name, t.dtype.name(), t.dims);
        }
    }
    Ok(())
}

fn cpu() {
    let on: Vec<&str> = ferrite_tensor::cpu::features().iter().filter(|f| f.1).map(|f| f.0).collect();
    let off: Vec<&str> = ferrite_tensor::cpu::features().iter().filter(|f| !f.1).map(|f| f.0).collect();
    println!("cpu:          {} ({} threads)", std::env::consts::ARCH, std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("features:     {}", if on.is_empty() { "(none detected)".into() } else { on.join(" ") });
    if !off.is_empty() {
        println!("missing:      {}", off.join(" "));
    }
    for (family, chosen) in ferrite_tensor::cpu::kernels() {
        println!("kernels:      {family}: {chosen}");
    }
}
