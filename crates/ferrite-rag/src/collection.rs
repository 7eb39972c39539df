//! A collection: one directory of documents, their chunks, the chunks' vectors and both indexes.
//!
//! ```text
//! DIR/collection.json     embedding model (path, name, width, window, fingerprint), chunking, fusion weight
//! DIR/CURRENT             the name of the live generation, e.g. "gen-000003"
//! DIR/gen-000003/         docs.json, chunks.jsonl, vectors.f32 (n × dim, little-endian), hnsw.bin, bm25/
//! DIR/.lock               held (flock) by an ingest
//! ```
//!
//! Crash safety: a generation is never modified. An ingest builds the next one in a temporary directory,
//! fsyncs it, renames it into place, then replaces CURRENT by writing a temporary file, fsyncing it and
//! renaming it over the old one (atomic on POSIX file systems). Interrupted at any point, the collection
//! opens as it was before the ingest or as it is after it; leftovers of an interrupted ingest are removed
//! by the next one. Unchanged documents keep their chunks and vectors (nothing is re-embedded).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrite_engine::Embedder;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::RagError;
use crate::chunk::{ChunkParams, chunk};
use crate::extract::{Format, extract};
use crate::hnsw::{Hnsw, HnswParams};
use crate::lexical::Bm25;
use crate::store::{LexicalStore, LocalVectors, VectorStore};

/// Below this many chunks the dense index is an exact scan (no graph is built).
pub const HNSW_MIN_CHUNKS: usize = 5000;
const FORMAT_VERSION: u32 = 1;

/// `collection.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CollectionConfig {
    pub version: u32,
    /// The embedding model as given at creation.
    pub embed_model: String,
    pub embed_name: String,
    pub dim: usize,
    /// The model's window (tokens per text, specials included).
    pub window: usize,
    /// Identifies the model's weights and tokenizer; a different model is refused.
    pub fingerprint: String,
    pub chunking: ChunkParams,
    /// The dense weight of weighted fusion (`rag tune` sets it).
    pub dense_weight: f32,
    /// Fusion used by hybrid queries unless one is asked for: "rrf" or "weighted".
    pub fusion: String,
}

/// A document of the collection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DocRecord {
    /// Stable id: the first 16 hex digits of SHA-256 of the source path.
    #[serde(default)]
    pub id: String,
    /// The path as ingested.
    pub source: String,
    pub format: Format,
    /// SHA-256 of the file's bytes.
    pub hash: String,
    pub title: Option<String>,
    pub metadata: Value,
    /// Characters of the extracted text.
    pub chars: usize,
}

/// A chunk: character span of its document's text.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChunkRecord {
    /// Index into the generation's documents.
    pub doc: u32,
    pub start: usize,
    pub end: usize,
    /// Heading path the chunk sits under.
    pub context: String,
    /// The span's text.
    pub text: String,
}

/// One live generation, loaded.
pub struct Collection {
    pub dir: PathBuf,
    pub config: CollectionConfig,
    pub generation: String,
    pub docs: Vec<DocRecord>,
    pub chunks: Vec<ChunkRecord>,
    /// The chunks' unit vectors (local: [`LocalVectors`]).
    pub dense: Box<dyn VectorStore>,
    /// BM25 over the chunks' text (local: [`Bm25`]).
    pub lexical: Box<dyn LexicalStore>,
}

/// What an ingest did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
    /// Files that could not be read or extracted (path, why); they are left as they were.
    pub failed: Vec<(String, String)>,
    pub chunks_embedded: usize,
    pub chunks_total: usize,
    pub generation: String,
}

/// Long work reports here (a progress bar in the CLI).
pub trait Progress {
    fn start(&mut self, what: &str, total: u64);
    fn advance(&mut self, n: u64);
    fn finish(&mut self);
}

/// Progress that goes nowhere.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RagError + '_ {
    move |source| RagError::Io { path: path.to_path_buf(), source }
}

fn corrupt(dir: &Path, problem: impl Into<String>) -> RagError {
    RagError::Collection { path: dir.to_path_buf(), problem: problem.into() }
}

/// A fingerprint of an embedding model: SHA-256 over its width, window and the bytes of its weights'
/// and tokenizer's first MiB and sizes — enough to tell models apart without hashing gigabytes.
pub fn fingerprint(path: &Path, e: &Embedder) -> Result<String, RagError> {
    let mut h = Sha256::new();
    h.update(format!("{} {} {:?} {}", e.dim(), e.max_tokens(), e.pooling(), e.normalizes()));
    let files: Vec<PathBuf> =
        if path.is_dir() { vec![path.join("model.safetensors"), path.join("tokenizer.json")] } else { vec![path.to_path_buf()] };
    for f in files {
        let mut file = File::open(&f).map_err(io(&f))?;
        let len = file.metadata().map_err(io(&f))?.len();
        let mut head = vec![0u8; (1 << 20).min(len as usize)];
        file.read_exact(&mut head).map_err(io(&f))?;
        h.update(len.to_le_bytes());
        h.update(&head);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write `bytes` to `path` and fsync it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RagError> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), RagError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Collection {
    /// Whether `dir` holds a collection.
    pub fn exists(dir: &Path) -> bool {
        dir.join("collection.json").is_file()
    }

    pub fn read_config(dir: &Path) -> Result<CollectionConfig, RagError> {
        let p = dir.join("collection.json");
        let text = fs::read_to_string(&p).map_err(io(&p))?;
        let c: CollectionConfig = serde_json::from_str(&text).map_err(|e| corrupt(dir, format!("collection.json: {e}")))?;
        if c.version != FORMAT_VERSION {
            return Err(corrupt(dir, format!("format version {} (this build reads {FORMAT_VERSION})", c.version)));
        }
        Ok(c)
    }

    /// Open the live generation of the collection in `dir`.
    pub fn open(dir: &Path) -> Result<Collection, RagError> {
        let config = Self::read_config(dir)?;
        let cur = dir.join("CURRENT");
        let generation = fs::read_to_string(&cur).map_err(io(&cur))?.trim().to_string();
        if !generation.starts_with("gen-") || generation.contains('/') {
            return Err(corrupt(dir, format!("CURRENT names {generation:?}")));
        }
        let g = dir.join(&generation);
        let docs_path = g.join("docs.json");
        let docs: Vec<DocRecord> = serde_json::from_str(&fs::read_to_string(&docs_path).map_err(io(&docs_path))?)
            .map_err(|e| corrupt(dir, format!("docs.json: {e}")))?;
        let mut docs = docs;
        for d in docs.iter_mut().filter(|d| d.id.is_empty()) {
            d.id = doc_id(&d.source);
        }
        let chunks_path = g.join("chunks.jsonl");
        let mut chunks = Vec::new();
        for (i, line) in BufReader::new(File::open(&chunks_path).map_err(io(&chunks_path))?).lines().enumerate() {
            let line = line.map_err(io(&chunks_path))?;
            let c: ChunkRecord = serde_json::from_str(&line).map_err(|e| corrupt(dir, format!("chunks.jsonl line {}: {e}", i + 1)))?;
            if c.doc as usize >= docs.len() {
                return Err(corrupt(dir, format!("chunk {i} names document {} of {}", c.doc, docs.len())));
            }
            chunks.push(c);
        }
        let vec_path = g.join("vectors.f32");
        let bytes = fs::read(&vec_path).map_err(io(&vec_path))?;
        if bytes.len() != chunks.len() * config.dim * 4 {
            return Err(corrupt(
                dir,
                format!("vectors.f32 holds {} bytes for {} chunks of {} dims", bytes.len(), chunks.len(), config.dim),
            ));
        }
        let vectors: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let hnsw_path = g.join("hnsw.bin");
        let hnsw = if hnsw_path.exists() {
            let h = Hnsw::read(&mut BufReader::new(File::open(&hnsw_path).map_err(io(&hnsw_path))?)).map_err(io(&hnsw_path))?;
            if h.len() != chunks.len() {
                return Err(corrupt(dir, "hnsw.bin does not match the chunks"));
            }
            Some(h)
        } else {
            None
        };
        let lexical = Box::new(Bm25::open(&g.join("bm25"))?);
        let dense = Box::new(LocalVectors { dim: config.dim, data: vectors, hnsw });
        Ok(Collection { dir: dir.to_path_buf(), config, generation, docs, chunks, dense, lexical })
    }

    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// A chunk's vector.
    pub fn vector(&self, chunk: usize) -> Vec<f32> {
        self.dense.vector(chunk as u32)
    }

    /// The fields a filter sees for `chunk`: its document's metadata, plus `source`, `format` and `title`.
    pub fn field(&self, chunk: usize, path: &str) -> Option<Value> {
        let d = &self.docs[self.chunks[chunk].doc as usize];
        match path {
            "source" => Some(Value::String(d.source.clone())),
            "id" => Some(Value::String(d.id.clone())),
            "format" => serde_json::to_value(d.format).ok(),
            "title" => d.title.clone().map(Value::String),
            p => crate::filter::lookup(&d.metadata, p).cloned(),
        }
    }

    /// Save a new dense weight / default fusion (used by `rag tune`); collection.json is replaced
    /// atomically.
    pub fn save_config(&mut self) -> Result<(), RagError> {
        write_config(&self.dir, &self.config)
    }
}

fn write_config(dir: &Path, c: &CollectionConfig) -> Result<(), RagError> {
    let tmp = dir.join("collection.json.tmp");
    write_synced(&tmp, serde_json::to_string_pretty(c).expect("config serializes").as_bytes())?;
    let dst = dir.join("collection.json");
    fs::rename(&tmp, &dst).map_err(io(&dst))?;
    sync_dir(dir)
}

/// What to ingest and how.
pub struct IngestOptions<'a> {
    /// Files and folders (folders are walked recursively; hidden entries and unsupported files skipped).
    pub paths: &'a [PathBuf],
    /// Embedding model path, recorded at creation (required then; must match afterwards).
    pub embed_model: &'a Path,
    pub embedder: &'a Embedder,
    /// Chunking of a new collection (an existing one keeps its own).
    pub chunking: ChunkParams,
    /// Merged into the metadata of every document this ingest sees.
    pub metadata: Option<Value>,
}

/// A file found by the walk: its source string (the path as ingested) and format.
struct Found {
    source: String,
    path: PathBuf,
    format: Format,
}

fn walk(root: &Path, out: &mut Vec<Found>) -> Result<(), RagError> {
    let meta = fs::metadata(root).map_err(io(root))?;
    if meta.is_file() {
        if let Some(format) = Format::of(root) {
            out.push(Found { source: root.to_string_lossy().into_owned(), path: root.to_path_buf(), format });
        }
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(root).map_err(io(root))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        let m = fs::metadata(&p).map_err(io(&p))?;
        if m.is_dir() {
            walk(&p, out)?;
        } else if let Some(format) = Format::of(&p) {
            out.push(Found { source: p.to_string_lossy().into_owned(), path: p, format });
        }
    }
    Ok(())
}

/// Whether `source` lies under the ingested `root` (so its absence from the walk means it was deleted).
fn under(source: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    source == root || source.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// Ingest `opts.paths` into the collection at `dir` (created if absent), as one atomic step.
pub fn ingest(dir: &Path, opts: &IngestOptions, progress: &mut dyn Progress) -> Result<IngestReport, RagError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let lock_path = dir.join(".lock");
    let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
    lock.try_lock().map_err(|_| RagError::Collection { path: dir.to_path_buf(), problem: "another ingest holds .lock".into() })?;

    let fp = fingerprint(opts.embed_model, opts.embedder)?;
    let (config, old) = if Collection::exists(dir) {
        let c = Collection::open(dir)?;
        if c.config.fingerprint != fp {
            return Err(RagError::Collection {
                path: dir.to_path_buf(),
                problem: format!(
                    "was built with the embedding model {} ({}); {} is a different model",
                    c.config.embed_model,
                    c.config.embed_name,
                    opts.embed_model.display()
                ),
            });
        }
        (c.config.clone(), Some(c))
    } else {
        let e = opts.embedder;
        if opts.chunking.max_tokens + 2 > e.max_tokens() {
            return Err(RagError::Input(format!(
                "chunks of {} tokens do not fit the model's window of {} (2 go to [CLS] and [SEP])",
                opts.chunking.max_tokens,
                e.max_tokens()
            )));
        }
        let c = CollectionConfig {
            version: FORMAT_VERSION,
            embed_model: opts.embed_model.to_string_lossy().into_owned(),
            embed_name: e.name().to_string(),
            dim: e.dim(),
            window: e.max_tokens(),
            fingerprint: fp,
            chunking: opts.chunking,
            dense_weight: 0.5,
            fusion: "rrf".into(),
        };
        write_config(dir, &c)?;
        (c, None)
    };
    // Leftovers of an interrupted ingest.
    for e in fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || name == "CURRENT.tmp" {
            let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
        }
    }

    // 1. Walk.
    let mut found = Vec::new();
    for p in opts.paths {
        walk(p, &mut found)?;
    }
    let roots: Vec<String> = opts.paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let old_docs: HashMap<&str, (usize, &DocRecord)> =
        old.as_ref().map(|c| c.docs.iter().enumerate().map(|(i, d)| (d.source.as_str(), (i, d))).collect()).unwrap_or_default();

    // 2. Read, hash, extract and chunk what changed.
    let mut report = IngestReport::default();
    let mut new_docs: Vec<DocRecord> = Vec::new();
    // Per new document: either Kept(old index) or Fresh(chunks to embed).
    enum Source {
        Kept(usize),
        Fresh(Vec<ChunkRecord>),
    }
    let mut sources: Vec<Source> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    progress.start("reading", found.len() as u64);
    let count = |s: &str| opts.embedder.count_tokens(s).unwrap_or(usize::MAX / 4);
    for f in &found {
        progress.advance(1);
        if !seen.insert(f.source.clone()) {
            continue;
        }
        let prev = old_docs.get(f.source.as_str()).copied();
        // Read and hash; an unchanged file stops there (Ok(None)), a changed or new one is extracted.
        let outcome = fs::read(&f.path).map_err(|e| e.to_string()).and_then(|bytes| {
            let hash = hex(&Sha256::digest(&bytes));
            if prev.is_some_and(|(_, o)| o.hash == hash) {
                return Ok(None);
            }
            extract(f.format, &bytes, &f.path).map(|ex| Some((hash, ex))).map_err(|e| e.to_string())
        });
        let (hash, ex) = match outcome {
            Ok(Some(fresh)) => fresh,
            Ok(None) => {
                let (i, o) = prev.expect("only a known document is unchanged");
                report.unchanged += 1;
                new_docs.push(DocRecord { metadata: merged(Some(&o.metadata), opts.metadata.as_ref()), ..o.clone() });
                sources.push(Source::Kept(i));
                continue;
            }
            Err(why) => {
                // A file that cannot be read or extracted keeps its previous version, if it had one.
                report.failed.push((f.source.clone(), why));
                if let Some((i, o)) = prev {
                    new_docs.push(o.clone());
                    sources.push(Source::Kept(i));
                }
                continue;
            }
        };
        let metadata = merged(prev.map(|(_, o)| &o.metadata), opts.metadata.as_ref());
        if prev.is_some() {
            report.updated += 1;
        } else {
            report.added += 1;
        }
        let doc = new_docs.len() as u32;
        let chunks = chunk(&ex, config.chunking, &count)
            .into_iter()
            .map(|c| ChunkRecord {
                doc,
                start: c.span.start,
                end: c.span.end,
                text: crate::extract::slice_chars(&ex.text, c.span.clone()).to_string(),
                context: c.context,
            })
            .collect();
        new_docs.push(DocRecord {
            id: doc_id(&f.source),
            source: f.source.clone(),
            format: f.format,
            hash,
            title: ex.title.clone(),
            metadata,
            chars: ex.text.chars().count(),
        });
        sources.push(Source::Fresh(chunks));
    }
    progress.finish();
    // Documents not walked this time: kept unless they lie under an ingested root (then: deleted).
    if let Some(o) = &old {
        for (i, d) in o.docs.iter().enumerate() {
            if seen.contains(&d.source) {
                continue;
            }
            if roots.iter().any(|r| under(&d.source, r)) {
                report.removed += 1;
            } else {
                new_docs.push(d.clone());
                sources.push(Source::Kept(i));
            }
        }
    }

    // 3. Embed the fresh chunks.
    // In document order, as step 4 assembles them.
    let texts: Vec<String> = sources
        .iter()
        .flat_map(|s| match s {
            Source::Fresh(c) => c.as_slice(),
            Source::Kept(_) => &[],
        })
        .map(|ch| crate::chunk::indexed_text(&ch.context, &ch.text))
        .collect();
    progress.start("embedding", texts.len() as u64);
    let mut fresh_vectors: Vec<f32> = Vec::with_capacity(texts.len() * config.dim);
    for batch in texts.chunks(32) {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        let e = opts.embedder.embed(&refs)?;
        for v in e.vectors {
            fresh_vectors.extend(v);
        }
        progress.advance(batch.len() as u64);
    }
    progress.finish();
    report.chunks_embedded = texts.len();

    // 4. Assemble the generation's chunk table and vectors, in document order.
    let dim = config.dim;
    let mut chunks: Vec<ChunkRecord> = Vec::new();
    let mut vectors: Vec<f32> = Vec::new();
    let mut fresh_i = 0;
    for (d, s) in sources.iter().enumerate() {
        match s {
            Source::Kept(oi) => {
                let o = old.as_ref().expect("kept documents come from the old generation");
                for (ci, c) in o.chunks.iter().enumerate().filter(|(_, c)| c.doc as usize == *oi) {
                    chunks.push(ChunkRecord { doc: d as u32, ..c.clone() });
                    vectors.extend_from_slice(&o.vector(ci));
                }
            }
            Source::Fresh(cs) => {
                for c in cs {
                    chunks.push(ChunkRecord { doc: d as u32, ..c.clone() });
                    vectors.extend_from_slice(&fresh_vectors[fresh_i * dim..][..dim]);
                    fresh_i += 1;
                }
            }
        }
    }
    report.chunks_total = chunks.len();

    // 5. Write the next generation and switch to it.
    let next = old.as_ref().map_or(1, |o| o.generation.trim_start_matches("gen-").parse::<u64>().unwrap_or(0) + 1);
    let name = format!("gen-{next:06}");
    let tmp = dir.join(format!(".tmp-{name}"));
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    write_synced(&tmp.join("docs.json"), serde_json::to_string(&new_docs).expect("docs serialize").as_bytes())?;
    {
        let p = tmp.join("chunks.jsonl");
        let mut w = BufWriter::new(File::create(&p).map_err(io(&p))?);
        for c in &chunks {
            serde_json::to_writer(&mut w, c).expect("chunk serializes");
            w.write_all(b"\n").map_err(io(&p))?;
        }
        w.into_inner().map_err(|e| io(&p)(e.into_error()))?.sync_all().map_err(io(&p))?;
    }
    let bytes: Vec<u8> = vectors.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_synced(&tmp.join("vectors.f32"), &bytes)?;
    if chunks.len() >= HNSW_MIN_CHUNKS {
        progress.start("indexing vectors", chunks.len() as u64);
        let mut last = 0;
        let h = Hnsw::build(&vectors, dim, HnswParams::default(), &mut |done| {
            progress.advance((done - last) as u64);
            last = done;
        });
        progress.finish();
        let p = tmp.join("hnsw.bin");
        let mut w = BufWriter::new(File::create(&p).map_err(io(&p))?);
        h.write(&mut w).map_err(io(&p))?;
        w.into_inner().map_err(|e| io(&p)(e.into_error()))?.sync_all().map_err(io(&p))?;
    }
    let bm25_dir = tmp.join("bm25");
    fs::create_dir_all(&bm25_dir).map_err(io(&bm25_dir))?;
    let indexed: Vec<String> = chunks.iter().map(|c| crate::chunk::indexed_text(&c.context, &c.text)).collect();
    Bm25::build(&bm25_dir, indexed.iter().enumerate().map(|(i, t)| (i as u64, t.as_str())))?;
    for e in fs::read_dir(&bm25_dir).map_err(io(&bm25_dir))?.flatten() {
        if e.path().is_file() {
            File::open(e.path()).and_then(|f| f.sync_all()).map_err(io(&e.path()))?;
        }
    }
    sync_dir(&bm25_dir)?;
    sync_dir(&tmp)?;
    let live = dir.join(&name);
    fs::rename(&tmp, &live).map_err(io(&live))?;
    sync_dir(dir)?;
    let cur_tmp = dir.join("CURRENT.tmp");
    write_synced(&cur_tmp, format!("{name}\n").as_bytes())?;
    fs::rename(&cur_tmp, dir.join("CURRENT")).map_err(io(dir))?;
    sync_dir(dir)?;
    // The old generations are no longer reachable.
    for e in fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("gen-") && n != name {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    report.generation = name;
    Ok(report)
}

/// A document's id from its source path.
pub fn doc_id(source: &str) -> String {
    hex(&Sha256::digest(source.as_bytes())[..8])
}

/// `base` (or {}) with the keys of `extra` set on top.
fn merged(base: Option<&Value>, extra: Option<&Value>) -> Value {
    let mut out = base.cloned().filter(Value::is_object).unwrap_or_else(|| Value::Object(Default::default()));
    if let (Some(Value::Object(e)), Value::Object(o)) = (extra, &mut out) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Shared, immutable view for concurrent queries.
pub type Shared = Arc<Collection>;
