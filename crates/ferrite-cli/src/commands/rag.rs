//! `ferrite rag`: collections of the user's documents — ingest, query, ask, eval, tune.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ferrite_engine::Embedder;
use ferrite_engine::sampling::SamplingParams;
use ferrite_engine::{GenerateRequest, generate};
use ferrite_rag::chunk::ChunkParams;
use ferrite_rag::{Collection, Filter, Fusion, IngestOptions, Mode, Progress, Query, answer, eval};

use crate::{AskArgs, RagArgs, RagCommand};

/// indicatif behind the library's progress trait.
struct Bar(Option<indicatif::ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, what: &str, total: u64) {
        let pb = crate::progress::steps("", total);
        pb.set_message(what.to_string());
        self.0 = Some(pb);
    }
    fn advance(&mut self, n: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(n);
        }
    }
    fn finish(&mut self) {
        if let Some(pb) = self.0.take() {
            pb.finish_and_clear();
        }
    }
}

pub fn main(a: RagArgs) -> Result<()> {
    super::init_threads(a.threads)?;
    match a.command {
        RagCommand::Ingest { collection, embed_model, chunk_tokens, overlap, metadata, paths } => {
            let model = match embed_model {
                Some(m) => m,
                None if Collection::exists(&collection) => PathBuf::from(Collection::read_config(&collection)?.embed_model),
                None => bail!("a new collection needs --embed-model PATH (it is recorded in the collection)"),
            };
            let embedder = super::embed::load_embedder(&model)?;
            let metadata = metadata.map(|m| serde_json::from_str::<serde_json::Value>(&m)).transpose().context("--metadata is not JSON")?;
            if metadata.as_ref().is_some_and(|m| !m.is_object()) {
                bail!("--metadata must be a JSON object");
            }
            let t = std::time::Instant::now();
            let opts = IngestOptions {
                paths: &paths,
                embed_model: &model,
                embedder: &embedder,
                chunking: ChunkParams { max_tokens: chunk_tokens, overlap },
                metadata,
            };
            let r = ferrite_rag::ingest(&collection, &opts, &mut Bar(None))
                .with_context(|| format!("ingesting into {}", collection.display()))?;
            for (path, why) in &r.failed {
                eprintln!("ferrite: skipped {path}: {why}");
            }
            eprintln!(
                "ferrite: {} added, {} updated, {} removed, {} unchanged, {} failed; {} chunks embedded, {} in the collection ({}) in {:.1} s",
                r.added,
                r.updated,
                r.removed,
                r.unchanged,
                r.failed.len(),
                r.chunks_embedded,
                r.chunks_total,
                r.generation,
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        RagCommand::Query { collection, mode, k, filter, fusion, json, query } => {
            let (c, embedder) = open(&collection)?;
            let filter = parse_filter(filter.as_deref())?;
            let fusion = fusion.as_deref().map(|f| parse_fusion(f, &c)).transpose()?;
            let t = std::time::Instant::now();
            let hits = c.search(&embedder, &Query { text: &query, k, mode: mode.parse()?, filter: filter.as_ref(), fusion })?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
            } else {
                for (i, h) in hits.iter().enumerate() {
                    let snippet: String = h.text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(160).collect();
                    println!(
                        "{:>2}. {:.4}  {} [{}..{}]{}\n    {snippet}",
                        i + 1,
                        h.score,
                        h.source,
                        h.start,
                        h.end,
                        if h.context.is_empty() { String::new() } else { format!("  ({})", h.context) }
                    );
                }
            }
            eprintln!("ferrite: {} hits in {ms:.1} ms", hits.len());
            Ok(())
        }
        RagCommand::Ask(a) => ask(a),
        RagCommand::Eval { collection, qrels, json } => {
            let (c, embedder) = open(&collection)?;
            let judged = eval::read_qrels(&qrels)?;
            let tuned = Fusion::Weighted(c.config.dense_weight);
            let runs = [
                ("dense", Mode::Dense, None),
                ("bm25", Mode::Bm25, None),
                ("hybrid (rrf)", Mode::Hybrid, Some(Fusion::Rrf)),
                ("hybrid (weighted)", Mode::Hybrid, Some(tuned)),
            ];
            let mut rows = Vec::new();
            for (name, mode, fusion) in runs {
                let s = eval::evaluate(&c, &embedder, &judged, mode, fusion)?;
                rows.push((name, s));
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, s)| serde_json::json!({"retriever": n, "ndcg@10": s.ndcg_at_10, "recall@10": s.recall_at_10, "mrr@10": s.mrr_at_10, "p50_ms": s.p50_ms, "p95_ms": s.p95_ms}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"queries": judged.len(), "dense_weight": c.config.dense_weight, "default_fusion": c.config.fusion, "results": v})
                    )?
                );
            } else {
                println!(
                    "{} judged queries; weighted fusion uses dense weight {} (default fusion: {})",
                    judged.len(),
                    c.config.dense_weight,
                    c.config.fusion
                );
                println!("{:<18} {:>8} {:>10} {:>7} {:>8} {:>8}", "retriever", "nDCG@10", "recall@10", "MRR@10", "p50 ms", "p95 ms");
                for (n, s) in rows {
                    println!(
                        "{n:<18} {:>8.4} {:>10.4} {:>7.4} {:>8.1} {:>8.1}",
                        s.ndcg_at_10, s.recall_at_10, s.mrr_at_10, s.p50_ms, s.p95_ms
                    );
                }
            }
            Ok(())
        }
        RagCommand::AnnBench { vectors, dim, holdout, m, ef_construction, ef } => {
            ann_bench(&vectors, dim, holdout, m, ef_construction, &ef)
        }
        RagCommand::Tune { collection, qrels } => {
            let (mut c, embedder) = open(&collection)?;
            let judged = eval::read_qrels(&qrels)?;
            let results = eval::tune(&c, &embedder, &judged)?;
            for (f, s) in &results {
                println!("{:<16} nDCG@10 {:.4}  recall@10 {:.4}  MRR@10 {:.4}", fusion_name(f), s.ndcg_at_10, s.recall_at_10, s.mrr_at_10);
            }
            let (best, s) = results[0];
            match best {
                Fusion::Rrf => c.config.fusion = "rrf".into(),
                Fusion::Weighted(w) => {
                    c.config.fusion = "weighted".into();
                    c.config.dense_weight = w;
                }
            }
            c.save_config()?;
            println!(
                "chose {} (nDCG@10 {:.4} on these {} queries); hybrid queries now use it",
                fusion_name(&best),
                s.ndcg_at_10,
                judged.len()
            );
            Ok(())
        }
    }
}

/// `rag ask`: retrieve, prompt with numbered sources, generate (streamed to stderr unless --json), and
/// print the answer with its checked citations.
fn ask(a: AskArgs) -> Result<()> {
    let (c, embedder) = open(&a.collection)?;
    let filter = parse_filter(a.filter.as_deref())?;
    let hits = c.search(&embedder, &Query { text: &a.question, k: a.k, mode: a.mode.parse()?, filter: filter.as_ref(), fusion: None })?;
    if hits.is_empty() {
        bail!("nothing in the collection matches the question (and filter)");
    }
    let lm = ferrite_engine::LoadedModel::open(&a.model, &mut |_, _| {}).with_context(|| format!("loading {}", a.model.display()))?;
    let ctx = a.ctx.unwrap_or(lm.model.config().ctx_train.min(8192));
    if a.max_tokens >= ctx {
        bail!("--max-tokens {} leaves no room for the sources in a context of {ctx}", a.max_tokens);
    }
    let template = lm.template()?;
    let (prompt, sources, dropped) =
        answer::fit(template.as_ref(), &a.question, hits, ctx - a.max_tokens, &|p| lm.tokenize_prompt(p).len())?;
    if dropped > 0 {
        eprintln!("ferrite: {dropped} retrieved sources left out: the prompt would not fit the context of {ctx} tokens");
    }
    let tokens = lm.tokenize_prompt(&prompt);
    let prompt_tokens = tokens.len();
    let mut cache = lm.model.new_cache(ctx);
    let req = GenerateRequest { prompt: tokens, max_tokens: a.max_tokens, sampling: SamplingParams::greedy(), stop: Vec::new() };
    let mut text = String::new();
    let live = !a.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    generate(&lm, &mut cache, &mut Vec::new(), &req, &mut |piece| {
        text.push_str(piece);
        if live {
            eprint!("{piece}");
        }
    })?;
    if live {
        eprintln!();
    }
    let ans = answer::Answer::new(text.trim().to_string(), sources, dropped, prompt_tokens);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&ans)?);
        return Ok(());
    }
    println!(
        "{}
",
        ans.answer
    );
    for cit in &ans.citations {
        println!("[{}] {} [{}..{}]", cit.n, cit.source, cit.start, cit.end);
    }
    for f in &ans.flagged {
        println!("warning: {}", f.reason);
    }
    if ans.citations.is_empty() {
        println!("warning: the answer cites no source");
    }
    Ok(())
}

/// Recall@10 against exact search and single-thread queries/s of our HNSW at several `ef`, on the
/// vectors of `vectors` (raw little-endian f32, e.g. a collection's vectors.f32): the first `holdout`
/// vectors are the queries, the rest the index. Prints JSON (compared with hnswlib by
/// scripts/bench/rag.py).
fn ann_bench(path: &Path, dim: usize, holdout: usize, m: usize, ef_construction: usize, efs: &[usize]) -> Result<()> {
    use ferrite_rag::hnsw::{Hnsw, HnswParams};
    use ferrite_rag::store::LocalVectors;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let all: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let n = all.len() / dim;
    if n <= holdout + 10 {
        bail!("{n} vectors are too few for {holdout} queries");
    }
    let (queries, base) = all.split_at(holdout * dim);
    let t = std::time::Instant::now();
    let h = Hnsw::build(base, dim, HnswParams { m, ef_construction }, &mut |_| {});
    let build_s = t.elapsed().as_secs_f64();
    let exact = LocalVectors { dim, data: base.to_vec(), hnsw: None };
    let truth: Vec<Vec<u32>> = queries.chunks(dim).map(|q| exact.exact(q, 10, None).into_iter().map(|x| x.0).collect()).collect();
    let mut rows = Vec::new();
    for &ef in efs {
        let t = std::time::Instant::now();
        let found: Vec<Vec<u32>> =
            queries.chunks(dim).map(|q| h.search(base, q, 10, ef, None).into_iter().map(|x| x.0).collect()).collect();
        let secs = t.elapsed().as_secs_f64();
        let hits: usize = found.iter().zip(&truth).map(|(f, t)| f.iter().filter(|x| t.contains(x)).count()).sum();
        rows.push(serde_json::json!({"ef": ef, "recall@10": hits as f64 / (10 * holdout) as f64, "qps": holdout as f64 / secs}));
    }
    println!(
        "{}",
        serde_json::json!({"index": n - holdout, "queries": holdout, "dim": dim, "m": m, "ef_construction": ef_construction, "build_s": build_s, "runs": rows})
    );
    Ok(())
}

/// `--filter JSON`, parsed.
fn parse_filter(f: Option<&str>) -> Result<Option<Filter>> {
    f.map(|f| -> Result<Filter> { Ok(Filter::parse(&serde_json::from_str(f).context("--filter is not JSON")?)?) }).transpose()
}

fn fusion_name(f: &Fusion) -> String {
    match f {
        Fusion::Rrf => "rrf".into(),
        Fusion::Weighted(w) => format!("weighted:{w:.1}"),
    }
}

fn parse_fusion(f: &str, c: &Collection) -> Result<Fusion> {
    Ok(match f {
        "rrf" => Fusion::Rrf,
        "weighted" => Fusion::Weighted(c.config.dense_weight),
        w => match w.strip_prefix("weighted:").and_then(|x| x.parse::<f32>().ok()) {
            Some(x) if (0.0..=1.0).contains(&x) => Fusion::Weighted(x),
            _ => bail!("--fusion {f:?}: rrf, weighted, or weighted:W with W in [0, 1]"),
        },
    })
}

/// Open a collection and the embedding model recorded in it (checked to be the same model).
pub fn open(dir: &Path) -> Result<(Collection, Embedder)> {
    let c = Collection::open(dir).with_context(|| format!("opening the collection {}", dir.display()))?;
    let model = PathBuf::from(&c.config.embed_model);
    let e = Embedder::load(&model).with_context(|| format!("loading the collection's embedding model {}", model.display()))?;
    let fp = ferrite_rag::collection::fingerprint(&model, &e)?;
    if fp != c.config.fingerprint {
        bail!(
            "{} is no longer the embedding model this collection was built with (its fingerprint changed); re-create the collection",
            model.display()
        );
    }
    Ok((c, e))
}
