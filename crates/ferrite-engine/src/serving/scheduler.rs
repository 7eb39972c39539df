//! What each engine step computes, counted in tokens.
//!
//! Every sequence has `tokens` (prompt, then generated) and `kv.len()` of them computed. A step gives each
//! decoding sequence (one uncomputed token: the last one sampled) one token, then fills the rest of the
//! step's budget with prompt pieces, oldest sequence first — at most `prefill_while_decoding` of them when
//! sequences are decoding, so a new prompt holds back their next tokens only a little. Pieces are placed
//! in the prompt's batches (`prefill_chunk`, `prompt_place`), so a prompt's bits never depend on the
//! split. Blocks are allocated as positions are needed; when the
//! pool has none left, the newest running sequence is preempted: its computed full blocks stay cached, its
//! references are dropped, and it goes back to the front of the queue to be recomputed (mostly from the
//! prefix cache) later. Nothing fails for lack of memory.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ferrite_models::{KvPool, Logits, Model, SeqBatch, SeqKv, BLOCK_SIZE};
use ferrite_tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use super::blocks::{BlockHashes, BlockManager};
use super::{gone, EngineConfig, EngineStats, Event, Request, TokenLogprob, Usage};
use crate::sampling::Sampler;
use crate::stop::TokenText;
use crate::{prefill_chunk, prompt_place, reusable_prefix, FinishReason, LoadedModel};

/// One request's sequence and its generation state.
pub(crate) struct Seq {
    req: Request,
    events: UnboundedSender<Event>,
    /// Prompt, then the generated tokens.
    tokens: Vec<u32>,
    kv: SeqKv,
    hashes: BlockHashes,
    sampler: Sampler,
    /// Detokenizer and stop strings, from first admission on (it needs the tokenizer).
    text: Option<TokenText>,
    generated: usize,
    /// Prompt tokens reused from the prefix cache at first admission.
    cached_tokens: usize,
    admitted: bool,
    /// Tokens this step computes for it (0: not in the step).
    planned: usize,
    /// Where the tokens computed as a prompt end, set at each admission (the prompt, or for a resumed
    /// sequence everything it had): tokens before it are computed in prompt pieces placed in their
    /// batches, the ones after it one at a time as they are sampled.
    prefill_end: usize,
}

impl Seq {
    pub(crate) fn new(req: Request, events: UnboundedSender<Event>) -> Seq {
        Seq {
            tokens: req.prompt.clone(),
            sampler: Sampler::new(&req.sampling),
            req,
            events,
            kv: SeqKv::default(),
            hashes: BlockHashes::default(),
            text: None,
            generated: 0,
            cached_tokens: 0,
            admitted: false,
            planned: 0,
            prefill_end: 0,
        }
    }

    fn uncomputed(&self) -> usize {
        self.tokens.len() - self.kv.len()
    }
}

pub(crate) struct Scheduler {
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    config: EngineConfig,
    stats: Arc<EngineStats>,
    pool: KvPool,
    blocks: BlockManager,
    waiting: VecDeque<Seq>,
    /// Admission order: the last is the newest (preempted first).
    running: Vec<Seq>,
}

impl Scheduler {
    pub(crate) fn new(lm: &LoadedModel, config: EngineConfig, stats: Arc<EngineStats>) -> Scheduler {
        let pool = KvPool::new(lm.model.config(), config.kv_blocks);
        let blocks = BlockManager::new(config.kv_blocks);
        stats.kv_blocks_total.store(config.kv_blocks, Ordering::Relaxed);
        Scheduler {
            model: lm.model.clone(),
            tokenizer: lm.tokenizer.clone(),
            config,
            stats,
            pool,
            blocks,
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    pub(crate) fn enqueue(&mut self, seq: Seq) {
        self.waiting.push_back(seq);
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// One step: drop cancelled requests, admit waiting ones, compute, sample, report. Returns the
    /// sequences and tokens computed, or `None` if there was nothing to compute.
    pub(crate) fn step(&mut self) -> Option<(usize, usize)> {
        self.drop_cancelled();
        self.admit();
        let planned = self.plan();
        let result = if planned.1 > 0 { self.compute() } else { Ok(Vec::new()) };
        match result {
            Ok(logits) => self.advance(&logits),
            Err(e) => self.fail_planned(&e.to_string()),
        }
        self.publish();
        (planned.1 > 0).then_some(planned)
    }

    fn drop_cancelled(&mut self) {
        let stats = &self.stats;
        self.waiting.retain(|s| {
            let keep = !gone(&s.events);
            if !keep && !s.admitted {
                stats.waiting.fetch_sub(1, Ordering::SeqCst);
            }
            keep
        });
        let blocks = &mut self.blocks;
        self.running.retain(|s| {
            let keep = !gone(&s.events);
            if !keep {
                blocks.release(&s.kv.blocks);
            }
            keep
        });
    }

    /// Admit waiting sequences in order while there is room: a sequence slot, and blocks for its whole
    /// uncomputed prompt plus one token, keeping one spare block per running sequence so the running ones
    /// can keep decoding.
    fn admit(&mut self) {
        while self.running.len() < self.config.max_seqs {
            let Some(s) = self.waiting.front() else { break };
            let total = s.tokens.len();
            let hit = self.blocks.peek_prefix(&s.tokens, total / BLOCK_SIZE);
            let reuse = reusable_prefix(hit * BLOCK_SIZE, total, BLOCK_SIZE);
            let (prefix, hashes) = self.blocks.acquire_prefix(&s.tokens, reuse / BLOCK_SIZE);
            let need = (total + 1).div_ceil(BLOCK_SIZE) - prefix.len();
            if need + self.running.len() > self.blocks.available() && !self.running.is_empty() {
                self.blocks.release(&prefix);
                break;
            }
            let mut s = self.waiting.pop_front().expect("front exists");
            s.kv = SeqKv::new(prefix, reuse);
            s.prefill_end = s.tokens.len();
            s.hashes = hashes;
            if !s.admitted {
                s.admitted = true;
                s.cached_tokens = reuse;
                s.text = Some(TokenText::new(self.tokenizer.decoder().continuing(), &s.req.stop));
                self.stats.prompt_tokens.fetch_add(total as u64, Ordering::Relaxed);
                self.stats.cached_prompt_tokens.fetch_add(reuse as u64, Ordering::Relaxed);
                // Counted by `submit` while it waits for first admission; a preempted sequence waiting
                // to resume is not new load.
                self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            }
            self.running.push(s);
        }
    }

    /// Decide how many tokens each running sequence computes this step and give it the blocks for them,
    /// preempting the newest sequences when the pool runs out. Returns (sequences, tokens) planned.
    fn plan(&mut self) -> (usize, usize) {
        let mut budget = self.config.step_tokens;
        self.running.iter_mut().for_each(|s| s.planned = 0);
        // Decoding sequences first (one token each), then prompt pieces, oldest first: while some
        // decode, at most `prefill_while_decoding` prompt tokens.
        let mut decoding = false;
        for decode in [true, false] {
            if !decode && decoding {
                budget = budget.min(self.config.prefill_while_decoding);
            }
            let mut i = 0;
            while i < self.running.len() && budget > 0 {
                let s = &self.running[i];
                let prefilling = s.kv.len() < s.prefill_end;
                let n = match (decode, prefilling) {
                    (true, false) if s.uncomputed() == 1 => 1,
                    (false, true) => prefill_chunk(s.kv.len(), s.prefill_end, budget),
                    _ => 0,
                };
                if n == 0 {
                    i += 1;
                    continue;
                }
                if !self.reserve(i, n) {
                    // Sequence i itself was preempted; the one now at i (if any) is next.
                    continue;
                }
                self.running[i].planned = n;
                budget -= n;
                decoding |= decode;
                i += 1;
            }
        }
        let planned: Vec<usize> = self.running.iter().map(|s| s.planned).filter(|&n| n > 0).collect();
        (planned.len(), planned.iter().sum())
    }

    /// Blocks for sequence `i` to compute `n` more tokens, preempting the newest sequences (never one
    /// older than `i`) until they fit. `false` if `i` itself had to go.
    fn reserve(&mut self, i: usize, n: usize) -> bool {
        loop {
            let s = &mut self.running[i];
            let want = s.kv.len() + n;
            if self.blocks.grow(&mut s.kv.blocks, want) {
                return true;
            }
            let newest = self.running.len() - 1;
            self.preempt(newest);
            if newest == i {
                return false;
            }
        }
    }

    /// Put a running sequence back at the front of the queue, keeping its computed full blocks cached so
    /// that resuming it mostly reuses them.
    fn preempt(&mut self, i: usize) {
        let mut s = self.running.remove(i);
        self.blocks.commit(&s.kv.blocks, &mut s.hashes, &s.tokens, s.kv.len());
        self.blocks.release(&s.kv.blocks);
        s.kv = SeqKv::default();
        s.hashes = BlockHashes::default();
        s.planned = 0;
        self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
        self.waiting.push_front(s);
    }

    /// The forward pass over every planned sequence; logits for those whose last uncomputed token is in
    /// the step.
    fn compute(&mut self) -> Result<Vec<f32>, ferrite_models::ModelError> {
        let mut batch: Vec<SeqBatch> = self
            .running
            .iter_mut()
            .filter(|s| s.planned > 0)
            .map(|s| {
                let at = s.kv.len();
                let logits = if at + s.planned == s.tokens.len() { Logits::Last } else { Logits::None };
                // A prompt piece sits in its prompt's batch (even a piece of one token); a decoding
                // token is a batch of its own.
                let place = (at < s.prefill_end).then(|| prompt_place(at, s.prefill_end));
                SeqBatch { tokens: &s.tokens[at..at + s.planned], kv: &mut s.kv, logits, place }
            })
            .collect();
        self.model.forward(&mut self.pool, &mut batch)
    }

    /// After the forward pass: register newly full blocks, sample the next token of every sequence that
    /// got logits, emit it, and finish sequences that are done.
    fn advance(&mut self, logits: &[f32]) {
        let vocab = self.model.config().vocab_size;
        let mut rows = logits.chunks_exact(vocab);
        let mut i = 0;
        while i < self.running.len() {
            let s = &mut self.running[i];
            if s.planned == 0 {
                i += 1;
                continue;
            }
            self.blocks.commit(&s.kv.blocks, &mut s.hashes, &s.tokens, s.kv.len());
            s.planned = 0;
            if s.uncomputed() > 0 {
                i += 1;
                continue; // more prompt to compute
            }
            let row = rows.next().expect("one logits row per sequence that finished its prompt");
            match sample_and_emit(s, row, &self.tokenizer, &self.stats) {
                None => i += 1,
                Some(finish) => {
                    let s = self.running.remove(i);
                    self.finish(s, finish);
                }
            }
        }
    }

    fn finish(&mut self, mut s: Seq, finish: Option<FinishReason>) {
        self.blocks.release(&s.kv.blocks);
        let Some(finish) = finish else { return }; // the client left
        let tail = match s.text.take() {
            Some(text) if finish != FinishReason::Stop => text.finish(),
            _ => String::new(),
        };
        let usage = Usage { prompt_tokens: s.req.prompt.len(), completion_tokens: s.generated, cached_tokens: s.cached_tokens };
        let _ = s.events.send(Event::Done { finish, usage, tail });
    }

    fn fail_planned(&mut self, message: &str) {
        let blocks = &mut self.blocks;
        self.running.retain(|s| {
            if s.planned == 0 {
                return true;
            }
            blocks.release(&s.kv.blocks);
            let _ = s.events.send(Event::Error(message.to_string()));
            false
        });
    }

    fn publish(&self) {
        let st = &self.stats;
        st.running.store(self.running.len(), Ordering::Relaxed);
        st.kv_blocks_used.store(self.blocks.used(), Ordering::Relaxed);
        st.kv_blocks_cached.store(self.blocks.cached(), Ordering::Relaxed);
    }
}

/// Sample sequence `s`'s next token from its logits row and send it. `Some(reason)` when the sequence is
/// done (`Some(None)`: the client has gone).
fn sample_and_emit(s: &mut Seq, row: &[f32], tok: &Tokenizer, stats: &EngineStats) -> Option<Option<FinishReason>> {
    let id = s.sampler.sample(row, &s.tokens);
    if tok.is_eog(id) {
        return Some(Some(FinishReason::Eog));
    }
    s.tokens.push(id);
    s.generated += 1;
    stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
    let out = s.text.as_mut().expect("admitted").push(id);
    let logprob = s.req.logprobs.map(|n| token_logprob(row, id, n, tok));
    if s.events.send(Event::Token { id, text: out.text, logprob }).is_err() {
        return Some(None);
    }
    if out.stopped {
        Some(Some(FinishReason::Stop))
    } else if s.generated >= s.req.max_tokens {
        Some(Some(FinishReason::Length))
    } else {
        None
    }
}

/// Log-softmax of `row` at `id`, and the `n` most likely tokens (ties: lower id first).
pub(crate) fn token_logprob(row: &[f32], id: u32, n: usize, tok: &Tokenizer) -> TokenLogprob {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max as f64 + row.iter().map(|&x| ((x - max) as f64).exp()).sum::<f64>().ln();
    let lp = |x: f32| (x as f64 - lse) as f32;
    let mut top: Vec<(u32, f32)> = Vec::new();
    if n > 0 {
        let mut idx: Vec<u32> = (0..row.len() as u32).collect();
        let n = n.min(idx.len());
        let by = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
        idx.select_nth_unstable_by(n - 1, by);
        idx.truncate(n);
        idx.sort_by(by);
        top = idx.into_iter().map(|t| (t, lp(row[t as usize]))).collect();
    }
    TokenLogprob {
        token: tok.token_to_piece(id),
        logprob: lp(row[id as usize]),
        top: top.into_iter().map(|(t, l)| (tok.token_to_piece(t), l)).collect(),
    }
}
