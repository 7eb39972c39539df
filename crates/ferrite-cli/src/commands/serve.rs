//! `ferrite serve`: bind, load the model in the background (`/health` says 503 until it is ready), serve
//! until SIGTERM or Ctrl-C, then finish the requests in flight.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ferrite_engine::serving::{Engine, EngineConfig};
use ferrite_models::{KvPool, BLOCK_SIZE};
use ferrite_server::metrics::Metrics;
use ferrite_server::{AppState, Ready, ServerOptions};

use crate::ServeArgs;

/// Largest context a sequence gets by default.
const DEFAULT_MAX_CTX: usize = 8192;

pub fn main(a: ServeArgs) -> Result<()> {
    let kv_mem = a.kv_mem.as_deref().map(parse_size).transpose()?;
    let name = a.model_name.clone().unwrap_or_else(|| {
        a.model.model.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
    });
    let options = ServerOptions { model_name: name, api_key: a.api_key.clone(), request_timeout: Duration::from_secs(a.request_timeout) };
    let metrics = Arc::new(Metrics::default());
    let state = AppState::new(options, metrics.clone());

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", a.host, a.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
        eprintln!("ferrite: listening on http://{}", listener.local_addr()?);

        let engine: Arc<Mutex<Option<Engine>>> = Arc::default();
        let (st, slot) = (state.clone(), engine.clone());
        let loading = tokio::task::spawn_blocking(move || -> Result<()> {
            let lm = super::load(&a.model)?;
            if let Some(dir) = &a.collection {
                // The collection's own embedding model serves /v1/embeddings too.
                let (c, e) = super::rag::open(dir)?;
                if let Some(p) = &a.embed_model {
                    let other = super::embed::load_embedder(p)?;
                    if ferrite_rag::collection::fingerprint(p, &other)? != c.config.fingerprint {
                        bail!("--embed-model {} is not the model the collection {} was built with ({})", p.display(), dir.display(), c.config.embed_model);
                    }
                }
                eprintln!("ferrite: collection {} ({} documents, {} chunks)", dir.display(), c.docs.len(), c.chunks.len());
                let e = Arc::new(e);
                let name = c.config.embed_name.clone();
                let _ = st.embed.set(ferrite_server::embeddings::EmbedService::new(e.clone(), name));
                let _ = st.rag.set(ferrite_server::rag::RagService { collection: c, embedder: e });
            } else if let Some(path) = &a.embed_model {
                let e = super::embed::load_embedder(path)?;
                let name = path.file_stem().map_or_else(|| "embedding".into(), |s| s.to_string_lossy().into_owned());
                let _ = st.embed.set(ferrite_server::embeddings::EmbedService::new(Arc::new(e), name));
            }
            let cfg = lm.model.config();
            let ctx = a.ctx.unwrap_or(cfg.ctx_train.min(DEFAULT_MAX_CTX));
            if ctx > cfg.ctx_train {
                bail!("--ctx {ctx} exceeds the model's training context of {}", cfg.ctx_train);
            }
            let block = KvPool::block_bytes(cfg);
            let min_blocks = ctx.div_ceil(BLOCK_SIZE) + 1;
            let bytes = kv_mem.unwrap_or_else(|| (available_memory() / 4).max(min_blocks * block));
            let kv_blocks = bytes / block;
            if kv_blocks < min_blocks {
                bail!("--kv-mem {bytes} bytes holds {kv_blocks} KV blocks; one full context of {ctx} tokens needs {} ({} bytes)", min_blocks, min_blocks * block);
            }
            let config = EngineConfig {
                ctx,
                max_seqs: a.max_seqs,
                max_queue: a.max_queue,
                // Room for every sequence's decoding token and some prompt tokens in each step.
                step_tokens: a.step_tokens.max(a.max_seqs + a.decode_prefill.max(1)),
                prefill_while_decoding: a.decode_prefill.max(1),
                kv_blocks,
            };
            let template = lm.template()?;
            let m = st.metrics.clone();
            let e = Engine::start(&lm, config, Box::new(move |r| m.step(r)));
            eprintln!(
                "ferrite: serving context {ctx}, up to {} sequences, KV pool {} MiB ({kv_blocks} blocks of {BLOCK_SIZE})",
                a.max_seqs,
                (kv_blocks * block) >> 20,
            );
            let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let ready = Ready { engine: e.handle(), lm: Arc::new(lm), template, created };
            *slot.lock().expect("engine slot") = Some(e);
            let _ = st.ready.set(ready);
            Ok(())
        });
        let serving = ferrite_server::serve(listener, state, shutdown_signal());
        tokio::pin!(serving);
        tokio::select! {
            loaded = loading => {
                loaded.context("the loading task panicked")??;
                serving.await?;
            }
            served = &mut serving => served?,
        }
        if let Some(e) = engine.lock().expect("engine slot").take() {
            e.join();
        }
        eprintln!("ferrite: stopped");
        Ok(())
    })
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("ferrite: shutting down, finishing requests in flight");
}

/// `512M`, `2G`, `1.5GiB`, `1048576`: bytes.
fn parse_size(s: &str) -> Result<usize> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}: expected e.g. 512M or 2G"))?;
    let mult = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => bail!("invalid size {s:?}: unknown unit {unit:?} (K, M, G, T)"),
    };
    Ok((n * mult as f64) as usize)
}

/// `MemAvailable` from /proc/meminfo (4 GiB where it cannot be read).
fn available_memory() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemAvailable:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok()))
        .map_or(4 << 30, |kib| kib << 10)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(super::parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(super::parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(super::parse_size("4096").unwrap(), 4096);
        assert!(super::parse_size("12Q").is_err());
        assert!(super::parse_size("lots").is_err());
    }
}
