//! Serving many sequences at once: an engine thread that owns the paged KV pool and the running
//! sequences, fed through a cloneable [`EngineHandle`].
//!
//! A caller submits a [`Request`] (token ids, limits, sampling) and gets a channel of [`Event`]s: one per
//! generated token, then `Done` with the usage. Dropping the receiver cancels the request; its KV blocks
//! are freed at the next step. The engine loop is a few lines (see [`run`]); the work is in
//! [`scheduler`] (what each step computes: one token for every decoding sequence plus prompt pieces up to
//! the step's token budget, fewer while sequences decode) and [`blocks`] (which KV block belongs to whom, prefix reuse, eviction).

pub mod blocks;
mod scheduler;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::sampling::SamplingParams;
use crate::{FinishReason, LoadedModel};
use scheduler::Scheduler;

/// Limits of one engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Most positions (prompt + generated) one sequence may hold.
    pub ctx: usize,
    /// Most sequences computed together.
    pub max_seqs: usize,
    /// Most requests waiting for admission; more are refused with [`SubmitError::QueueFull`].
    pub max_queue: usize,
    /// Tokens per step: one per decoding sequence, the rest for prompt chunks.
    pub step_tokens: usize,
    /// Most prompt tokens a step takes while sequences are decoding in it: what bounds how long a new
    /// prompt holds back their next tokens (a step with no one decoding fills `step_tokens`).
    pub prefill_while_decoding: usize,
    /// Blocks of [`ferrite_models::BLOCK_SIZE`] positions in the KV pool.
    pub kv_blocks: usize,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Request {
    /// The prompt, special tokens included.
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends before the first of these strings; it is not emitted.
    pub stop: Vec<String>,
    /// Report each token's log-probability and this many most likely alternatives.
    pub logprobs: Option<usize>,
}

/// A generated token's log-probability under the model (before sampling filters and penalties).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: Vec<u8>,
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, most likely first.
    pub top: Vec<(Vec<u8>, f32)>,
}

/// Token counts of a finished request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: usize,
}

/// What the engine reports about a request, in order.
#[derive(Clone, Debug)]
pub enum Event {
    /// A generated token and the text it completes: possibly empty (an unfinished UTF-8 character or a
    /// possible start of a stop string is held back until the next tokens decide it).
    Token { id: u32, text: String, logprob: Option<TokenLogprob> },
    /// Generation ended; `tail` is held-back text to emit before finishing.
    Done { finish: FinishReason, usage: Usage, tail: String },
    /// The request failed inside the engine.
    Error(String),
}

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("max_tokens must be at least 1")]
    NoTokens,
    #[error(
        "this model's context is {ctx} tokens, but the request needs {prompt} prompt tokens plus up to {max_tokens} generated tokens; \
         shorten the prompt or lower max_tokens"
    )]
    ContextExceeded { prompt: usize, max_tokens: usize, ctx: usize },
    #[error("{waiting} requests are already waiting; try again shortly")]
    QueueFull { waiting: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// One engine step: how many sequences and tokens it computed and how long it took.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    pub sequences: usize,
    pub tokens: usize,
    pub duration: Duration,
}

/// Live counters of an engine, for metrics.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub waiting: AtomicUsize,
    pub running: AtomicUsize,
    pub kv_blocks_total: AtomicUsize,
    pub kv_blocks_used: AtomicUsize,
    pub kv_blocks_cached: AtomicUsize,
    pub prompt_tokens: AtomicU64,
    pub cached_prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub preemptions: AtomicU64,
}

enum Command {
    Submit(Box<scheduler::Seq>),
    Shutdown,
}

/// Submits requests to the engine thread; cheap to clone and share between HTTP handlers.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    stats: Arc<EngineStats>,
    config: EngineConfig,
    closing: Arc<AtomicBool>,
}

impl EngineHandle {
    /// Queue a request. Checked here, before anything is queued: a prompt plus limit that cannot fit the
    /// context is refused (never truncated), as is a request past the queue bound.
    pub fn submit(&self, req: Request) -> Result<UnboundedReceiver<Event>, SubmitError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        if req.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if req.max_tokens == 0 {
            return Err(SubmitError::NoTokens);
        }
        if req.prompt.len() + req.max_tokens > self.config.ctx {
            return Err(SubmitError::ContextExceeded { prompt: req.prompt.len(), max_tokens: req.max_tokens, ctx: self.config.ctx });
        }
        let waiting = self.stats.waiting.fetch_add(1, Ordering::SeqCst);
        if waiting >= self.config.max_queue {
            self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull { waiting });
        }
        let (tx, rx) = unbounded_channel();
        let seq = scheduler::Seq::new(req, tx);
        if self.tx.send(Command::Submit(Box::new(seq))).is_err() {
            self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::ShuttingDown);
        }
        Ok(rx)
    }

    /// Refuse new requests from now on; the engine finishes the ones it has, then its thread ends.
    pub fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Command::Shutdown);
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }
}

/// The engine thread.
pub struct Engine {
    handle: EngineHandle,
    thread: JoinHandle<()>,
}

impl Engine {
    /// Start the engine thread over `lm`. `on_step` is called after every step (for metrics).
    pub fn start(lm: &LoadedModel, config: EngineConfig, on_step: Box<dyn FnMut(&StepReport) + Send>) -> Engine {
        let stats = Arc::new(EngineStats::default());
        let (tx, rx) = mpsc::channel();
        let sched = Scheduler::new(lm, config.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("ferrite-engine".into())
            .spawn(move || run(sched, rx, on_step))
            .expect("spawn the engine thread");
        Engine { handle: EngineHandle { tx, stats, config, closing: Arc::new(AtomicBool::new(false)) }, thread }
    }

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Shut down (finishing what is in flight) and wait for the thread.
    pub fn join(self) {
        self.handle.shutdown();
        let _ = self.thread.join();
    }
}

/// The engine loop: take new requests (sleeping only when there is nothing to compute), run a step.
fn run(mut sched: Scheduler, rx: mpsc::Receiver<Command>, mut on_step: Box<dyn FnMut(&StepReport) + Send>) {
    let mut draining = false;
    loop {
        let first = if sched.is_idle() {
            if draining {
                return;
            }
            match rx.recv() {
                Ok(cmd) => Some(cmd),
                Err(_) => return,
            }
        } else {
            None
        };
        for cmd in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match cmd {
                Command::Submit(seq) => sched.enqueue(*seq),
                Command::Shutdown => draining = true,
            }
        }
        let start = Instant::now();
        if let Some((sequences, tokens)) = sched.step() {
            on_step(&StepReport { sequences, tokens, duration: start.elapsed() });
        }
    }
}

/// An [`UnboundedSender`] whose receiver is gone means the client left.
fn gone(tx: &UnboundedSender<Event>) -> bool {
    tx.is_closed()
}
