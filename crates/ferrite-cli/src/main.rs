//! `ferrite`: the command-line front end. Parsing and glue only; the work happens in the library crates.

mod commands;
mod progress;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ferrite", version, about = "Run open-weight language models on your own hardware")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text: the continuation of --prompt, or an interactive chat without it.
    Run(RunArgs),
    /// Print the token ids of TEXT as a JSON array (BOS added as the model's metadata says).
    Tokenize(TokenizeArgs),
    /// Print the text of token ids.
    Detokenize(DetokenizeArgs),
    /// Perplexity of a text file, computed as llama-perplexity does; prints JSON.
    Perplexity(PerplexityArgs),
    /// Describe a model file (architecture, sizes, tensor types, tokenizer, chat template) or, with
    /// --cpu, this CPU's features and the kernels chosen for it.
    Info(InfoArgs),
    /// Measure prompt processing and generation speed, like llama-bench.
    Bench(BenchArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (see docs/server.md).
    Serve(ServeArgs),
    /// Print sentence embeddings of TEXTs (or of each line of stdin) as a JSON array of vectors.
    Embed(EmbedArgs),
    /// Retrieval over your own documents: ingest, query, ask, eval, tune (see docs/rag.md).
    Rag(RagArgs),
}

#[derive(Args)]
pub struct RagArgs {
    /// Worker threads (default: all available cores).
    #[arg(long, short = 't', global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: RagCommand,
}

#[derive(Subcommand)]
pub enum RagCommand {
    /// Add, update and remove documents: files and folders of text, Markdown, reST, HTML and PDF.
    Ingest {
        /// The collection's directory (created on first ingest).
        #[arg(long)]
        collection: PathBuf,
        /// Embedding model (sentence-transformers folder or BERT GGUF); recorded at creation.
        #[arg(long)]
        embed_model: Option<PathBuf>,
        /// Most tokens per chunk, heading context included (new collections).
        #[arg(long, default_value_t = 200)]
        chunk_tokens: usize,
        /// Tokens carried from one chunk into the next (new collections).
        #[arg(long, default_value_t = 32)]
        overlap: usize,
        /// JSON object merged into the metadata of every document ingested.
        #[arg(long)]
        metadata: Option<String>,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Retrieve the chunks that best match QUERY.
    Query {
        #[arg(long)]
        collection: PathBuf,
        /// hybrid, dense or bm25.
        #[arg(long, default_value = "hybrid")]
        mode: String,
        #[arg(short = 'k', long, default_value_t = 10)]
        k: usize,
        /// Metadata filter, e.g. '{"format": "rst"}' (see docs/rag.md).
        #[arg(long)]
        filter: Option<String>,
        /// Hybrid fusion: rrf, weighted (the collection's weight) or weighted:W.
        #[arg(long)]
        fusion: Option<String>,
        /// Print the hits as a JSON array.
        #[arg(long)]
        json: bool,
        query: String,
    },
    /// Answer QUESTION from the collection with a chat model, citing the sources it used.
    Ask(AskArgs),
    /// nDCG@10, recall@10 and MRR@10 of dense, BM25 and hybrid retrieval on judged queries.
    Eval {
        #[arg(long)]
        collection: PathBuf,
        /// JSON lines: {"query": "...", "relevant": ["path/suffix", ...]}.
        #[arg(long)]
        qrels: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Benchmark: recall@10 and queries/s of the HNSW index on raw f32 vectors (first --holdout are queries).
    #[command(hide = true)]
    AnnBench {
        #[arg(long)]
        vectors: PathBuf,
        #[arg(long, default_value_t = 384)]
        dim: usize,
        #[arg(long, default_value_t = 1000)]
        holdout: usize,
        #[arg(long, default_value_t = 16)]
        m: usize,
        #[arg(long, default_value_t = 200)]
        ef_construction: usize,
        #[arg(long, value_delimiter = ',', default_value = "10,20,40,80,160")]
        ef: Vec<usize>,
    },
    /// Pick the hybrid fusion (RRF or a dense weight) that scores best on judged queries, and keep it.
    Tune {
        #[arg(long)]
        collection: PathBuf,
        #[arg(long)]
        qrels: PathBuf,
    },
}

#[derive(Args)]
pub struct AskArgs {
    #[arg(long)]
    collection: PathBuf,
    /// The chat model (GGUF).
    #[arg(long, short = 'm')]
    model: PathBuf,
    /// Sources retrieved and given to the model.
    #[arg(short = 'k', long, default_value_t = 5)]
    k: usize,
    #[arg(long, default_value = "hybrid")]
    mode: String,
    #[arg(long)]
    filter: Option<String>,
    /// Most tokens of the answer.
    #[arg(long, default_value_t = 384)]
    max_tokens: usize,
    /// Context size (default: the model's, at most 8192).
    #[arg(long)]
    ctx: Option<usize>,
    /// Print the answer, citations, flagged citations and sources as JSON.
    #[arg(long)]
    json: bool,
    question: String,
}

#[derive(Args)]
struct ModelArgs {
    /// Path of a GGUF model file.
    #[arg(long, short = 'm')]
    model: PathBuf,
    /// Worker threads (default: all available cores).
    #[arg(long, short = 't')]
    threads: Option<usize>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt text; without it, an interactive chat on stdin.
    #[arg(long, short = 'p')]
    prompt: Option<String>,
    /// Render the prompt with the model's chat template as a user message.
    #[arg(long)]
    chat: bool,
    /// System message for --chat and the interactive chat.
    #[arg(long)]
    system: Option<String>,
    /// Maximum number of tokens to generate.
    #[arg(long, short = 'n', default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    min_p: Option<f32>,
    /// Repetition penalty (1.0 = off), over the last --repeat-last-n tokens.
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Random seed (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop generating when this string appears (may be repeated); it is not printed.
    #[arg(long)]
    stop: Vec<String>,
    /// Context size in tokens (default: the model's training context, at most 8192).
    #[arg(long)]
    ctx: Option<usize>,
}

#[derive(Args)]
pub struct EmbedArgs {
    /// A sentence-transformers folder (config.json, model.safetensors, tokenizer.json) or a BERT GGUF file.
    #[arg(long, short = 'm')]
    model: PathBuf,
    /// Worker threads (default: all available cores).
    #[arg(long, short = 't')]
    threads: Option<usize>,
    /// Texts per batch (one forward pass each, no padding).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Texts to embed; without any, one text per line of stdin.
    texts: Vec<String>,
}

#[derive(Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Do not add BOS even if the model's metadata asks for it.
    #[arg(long)]
    no_bos: bool,
    /// Treat special-token text (e.g. <|im_start|>) as plain text.
    #[arg(long)]
    no_parse_special: bool,
    text: String,
}

#[derive(Args)]
pub struct DetokenizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(required = true)]
    ids: Vec<u32>,
}

#[derive(Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Text file to score.
    #[arg(long, short = 'f')]
    file: PathBuf,
    /// Window size in tokens.
    #[arg(long, short = 'c', default_value_t = 512)]
    ctx: usize,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Path of a GGUF model file.
    #[arg(long, short = 'm', required_unless_present = "cpu")]
    model: Option<PathBuf>,
    /// Print every tensor.
    #[arg(long)]
    tensors: bool,
    /// Show the CPU's features and the kernels chosen for it.
    #[arg(long)]
    cpu: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Path of a GGUF model file.
    #[arg(long, short = 'm', required_unless_present = "membw")]
    model: Option<PathBuf>,
    /// Prompt-processing test: tokens in one forward pass (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Generation test: tokens decoded one at a time (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Thread counts to test, comma-separated (default: all cores).
    #[arg(short = 't', long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    reps: usize,
    /// Print a JSON array, one object per test (llama-bench's field names where they exist).
    #[arg(long)]
    json: bool,
    /// Only measure the DRAM read bandwidth.
    #[arg(long)]
    membw: bool,
    /// Buffer size for the bandwidth measurement, in MiB.
    #[arg(long, default_value_t = 1024)]
    membw_mib: usize,
    /// Seed of the random token ids.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sequences decoded together in the generation test, one token each per forward pass (like
    /// llama-batched-bench's S_TG at `-npl N`); tokens/s counts every sequence's tokens. (Not
    /// llama-bench's `-b`, its batch size.)
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Positions already in each sequence's cache when a test starts, computed untimed beforehand
    /// (llama-bench's `-d`): attention then reads a context this long.
    #[arg(short = 'd', long = "depth", default_value_t = 0)]
    depth: usize,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Most tokens one sequence may hold, prompt and output (default: the model's, at most 8192).
    #[arg(long)]
    ctx: Option<usize>,
    /// Sequences computed together.
    #[arg(long, default_value_t = 16)]
    max_seqs: usize,
    /// Memory for the paged KV cache, e.g. 512M or 2G (default: a quarter of the available memory, at
    /// least one full context).
    #[arg(long)]
    kv_mem: Option<String>,
    /// Require `Authorization: Bearer KEY` on /v1 requests.
    #[arg(long)]
    api_key: Option<String>,
    /// Requests waiting for admission before new ones get 429.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Tokens per engine step (decoding sequences plus prompt pieces); at least --max-seqs plus
    /// --decode-prefill. Larger steps prefill faster when nothing else runs.
    #[arg(long, default_value_t = 256)]
    step_tokens: usize,
    /// Most prompt tokens a step takes while other sequences are decoding: smaller keeps their
    /// inter-token latency lower while a new prompt is read, larger reads it sooner. A prompt's output
    /// does not depend on it.
    #[arg(long, default_value_t = 32)]
    decode_prefill: usize,
    /// Seconds a request may run.
    #[arg(long, default_value_t = 600)]
    request_timeout: u64,
    /// Model id reported by /v1/models (default: the file name).
    #[arg(long)]
    model_name: Option<String>,
    /// An embedding model (sentence-transformers folder or BERT GGUF) for /v1/embeddings.
    #[arg(long)]
    embed_model: Option<PathBuf>,
    /// A collection (`ferrite rag ingest`) for POST /v1/rag/ask; its embedding model also serves
    /// /v1/embeddings.
    #[arg(long)]
    collection: Option<PathBuf>,
}

fn main() -> Result<()> {
    // Like other command-line tools, end quietly when stdout is a closed pipe (`ferrite info … | head`)
    // instead of panicking on the failed write: restore the default SIGPIPE action Rust's runtime ignores.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Forward passes allocate and free activation buffers of megabytes every layer. glibc serves those
    // with mmap and gives them back on free, so each layer pays page faults to zero fresh pages; keep them
    // in the heap instead (up to 256 MiB per buffer), where a freed buffer is reused.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => commands::run::main(a),
        Command::Tokenize(a) => commands::tokens::tokenize(a),
        Command::Detokenize(a) => commands::tokens::detokenize(a),
        Command::Perplexity(a) => commands::perplexity::main(a),
        Command::Info(a) => commands::info::main(a),
        Command::Bench(a) => commands::bench::main(a),
        Command::Serve(a) => commands::serve::main(a),
        Command::Embed(a) => commands::embed::main(a),
        Command::Rag(a) => commands::rag::main(a),
    }
}
