//! One completion request, chat or plain, from body to answer.
//!
//! Both endpoints build a prompt (the chat template renders `messages`; `prompt` is taken as is), check
//! the limits, submit to the engine and then either collect the events into one JSON answer or forward
//! them as server-sent events in OpenAI's chunk format. A client that goes away drops the event channel,
//! which cancels the sequence in the engine.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as Sse, Sse as SseBody};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferrite_engine::serving::{Event, Request as EngineRequest, TokenLogprob, Usage};
use ferrite_engine::FinishReason;
use serde_json::{json, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::time::Instant as TokioInstant;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::openai::{self, ChatRequest, Common, CompletionRequest};
use crate::{AppState, Ready, BODY_LIMIT};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
}

/// A request accepted by the engine, with what shaping its answer needs.
struct Job {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    prompt_tokens: usize,
    logprobs: Option<usize>,
    include_usage: bool,
    start: Instant,
    deadline: TokioInstant,
    metrics: Arc<Metrics>,
    events: UnboundedReceiver<Event>,
}

impl Job {
    /// OpenAI's response object (with `chunk`, a stream chunk) around `choices`.
    fn envelope(&self, chunk: bool, choices: Value) -> Value {
        let object = match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": choices})
    }

    /// Usage of a request its timeout cut short after `tokens` generated tokens.
    fn cut_usage(&self, tokens: usize) -> Usage {
        Usage { prompt_tokens: self.prompt_tokens, completion_tokens: tokens, cached_tokens: 0 }
    }
}

/// The request body, or the OpenAI-shaped error for one over the limit (413) or unreadable (400).
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| if e.status() == StatusCode::PAYLOAD_TOO_LARGE { ApiError::too_large(BODY_LIMIT) } else { ApiError::invalid(e.body_text()) })
}

pub(crate) async fn chat(State(st): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let start = Instant::now();
    let job = (|| {
        let ready = st.ready()?;
        let req: ChatRequest = openai::parse(&body_bytes(body)?)?;
        if req.messages.is_empty() {
            return Err(ApiError::invalid_param("messages", "messages must not be empty"));
        }
        let template = ready.template.as_ref().ok_or_else(|| {
            ApiError::invalid_param("messages", "this model has no chat template; use /v1/completions with a raw prompt")
        })?;
        let mut messages = Vec::with_capacity(req.messages.len());
        for m in &req.messages {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "developer" | "tool") {
                return Err(ApiError::invalid_param("messages", format!("unknown message role {:?}", m.role)));
            }
            let role = if m.role == "developer" { "system" } else { m.role.as_str() };
            messages.push(json!({"role": role, "content": m.text()?}));
        }
        let text = template.render(&messages, true, None).map_err(|e| ApiError::invalid_param("messages", format!("chat template: {e}")))?;
        let logprobs = openai::chat_logprobs(req.logprobs, req.top_logprobs)?;
        submit(&st, ready, Kind::Chat, ready.lm.tokenize_prompt(&text), &req.common, logprobs, start)
    })();
    respond(job).await
}

pub(crate) async fn completions(State(st): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let start = Instant::now();
    let job = (|| {
        let ready = st.ready()?;
        let req: CompletionRequest = openai::parse(&body_bytes(body)?)?;
        let prompt = match &req.prompt {
            Value::String(s) => s.clone(),
            Value::Array(a) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or_default().to_string(),
            _ => return Err(ApiError::invalid_param("prompt", "prompt must be a string (or a list of one string)")),
        };
        if req.echo {
            return Err(ApiError::invalid_param("echo", "echo is not supported"));
        }
        let logprobs = req.logprobs.map(openai::check_top).transpose()?;
        submit(&st, ready, Kind::Text, ready.lm.tokenize_prompt(&prompt), &req.common, logprobs, start)
    })();
    respond(job).await
}

/// Check the request's settings and hand it to the engine.
fn submit(st: &AppState, ready: &Ready, kind: Kind, prompt: Vec<u32>, c: &Common, logprobs: Option<usize>, start: Instant) -> Result<(Job, bool), ApiError> {
    let ctx = ready.engine.config().ctx;
    let max_tokens = c.max_tokens()?.unwrap_or_else(|| ctx.saturating_sub(prompt.len()).max(1));
    let prompt_tokens = prompt.len();
    let req = EngineRequest { prompt, max_tokens, sampling: c.sampling()?, stop: c.stop()?, logprobs };
    let events = ready.engine.submit(req)?;
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let prefix = if kind == Kind::Chat { "chatcmpl" } else { "cmpl" };
    let job = Job {
        kind,
        id: format!("{prefix}-{:016x}{:016x}", crate::random_u64(), crate::random_u64()),
        created,
        model: st.options.model_name.clone(),
        prompt_tokens,
        logprobs,
        include_usage: c.stream_options.as_ref().is_some_and(|o| o.include_usage),
        start,
        deadline: TokioInstant::from_std(start + st.options.request_timeout),
        metrics: st.metrics.clone(),
        events,
    };
    Ok((job, c.stream))
}

async fn respond(job: Result<(Job, bool), ApiError>) -> Response {
    match job {
        Err(e) => e.into_response(),
        Ok((job, true)) => stream(job).into_response(),
        Ok((job, false)) => match whole(job).await {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        },
    }
}

/// What the event loop saw: for timing metrics and for a timed-out request's answer.
#[derive(Default)]
struct Progress {
    tokens: usize,
    last: Option<Instant>,
}

impl Progress {
    fn token(&mut self, job: &Job) {
        let now = Instant::now();
        match self.last {
            None => Metrics::latency(&job.metrics.ttft, now - job.start),
            Some(prev) => Metrics::latency(&job.metrics.itl, now - prev),
        }
        self.last = Some(now);
        self.tokens += 1;
    }
}

/// The next engine event, or `None` once the request's time is up.
async fn next(job: &mut Job) -> Result<Option<Event>, ApiError> {
    match tokio::time::timeout_at(job.deadline, job.events.recv()).await {
        Err(_) => Ok(None),
        Ok(Some(ev)) => Ok(Some(ev)),
        Ok(None) => Err(ApiError::internal("the engine stopped")),
    }
}

/// Collect the whole answer.
async fn whole(mut job: Job) -> Result<Value, ApiError> {
    let mut p = Progress::default();
    let mut text = String::new();
    let mut lps = Vec::new();
    let (finish, usage) = loop {
        match next(&mut job).await? {
            None if p.tokens == 0 => return Err(ApiError::timeout()),
            None => break ("length", job.cut_usage(p.tokens)),
            Some(Event::Token { text: t, logprob, .. }) => {
                p.token(&job);
                text.push_str(&t);
                lps.extend(logprob.map(|l| (l, t)));
            }
            Some(Event::Done { finish, usage, tail }) => {
                text.push_str(&tail);
                break (finish_reason(finish), usage);
            }
            Some(Event::Error(e)) => return Err(ApiError::internal(e)),
        }
    };
    Metrics::latency(&job.metrics.duration, job.start.elapsed());
    let logprobs = job.logprobs.map(|_| logprobs_json(job.kind, &lps, 0));
    let choice = match job.kind {
        Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs, "finish_reason": finish}),
        Kind::Text => json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}),
    };
    let mut body = job.envelope(false, json!([choice]));
    body["usage"] = usage_json(&usage);
    Ok(body)
}

/// Forward the answer as server-sent events, ending with `data: [DONE]`.
fn stream(mut job: Job) -> impl IntoResponse {
    let (tx, rx) = mpsc::channel::<Result<Sse, Infallible>>(64);
    tokio::spawn(async move {
        let send = |v: Value| Ok(Sse::default().data(v.to_string()));
        let chunk = |job: &Job, delta: Value, finish: Option<&str>, logprobs: Option<Value>| -> Value {
            let choice = match job.kind {
                Kind::Chat => json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}),
                Kind::Text => json!({"index": 0, "text": delta["content"].as_str().unwrap_or(""), "logprobs": logprobs, "finish_reason": finish}),
            };
            job.envelope(true, json!([choice]))
        };
        if job.kind == Kind::Chat && tx.send(send(chunk(&job, json!({"role": "assistant", "content": ""}), None, None))).await.is_err() {
            return;
        }
        let mut p = Progress::default();
        let mut offset = 0;
        loop {
            // Wake up on an event, or as soon as the client is gone (dropping `job` cancels the sequence).
            let ev = tokio::select! {
                ev = next(&mut job) => ev,
                _ = tx.closed() => return,
            };
            let (finish, usage, tail) = match ev {
                Ok(Some(Event::Token { text, logprob, .. })) => {
                    p.token(&job);
                    if text.is_empty() && logprob.is_none() {
                        continue;
                    }
                    let lp = job.logprobs.map(|_| logprobs_json(job.kind, &logprob.into_iter().map(|l| (l, text.clone())).collect::<Vec<_>>(), offset));
                    offset += text.len();
                    if tx.send(send(chunk(&job, json!({"content": text}), None, lp))).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Some(Event::Done { finish, usage, tail })) => (finish_reason(finish), usage, tail),
                Ok(None) => ("length", job.cut_usage(p.tokens), String::new()),
                Ok(Some(Event::Error(e))) => {
                    let _ = tx.send(send(ApiError::internal(e).body())).await;
                    break;
                }
                Err(e) => {
                    let _ = tx.send(send(e.body())).await;
                    break;
                }
            };
            if !tail.is_empty() {
                let _ = tx.send(send(chunk(&job, json!({"content": tail}), None, None))).await;
            }
            let _ = tx.send(send(chunk(&job, json!({}), Some(finish), None))).await;
            if job.include_usage {
                let mut v = job.envelope(true, json!([]));
                v["usage"] = usage_json(&usage);
                let _ = tx.send(send(v)).await;
            }
            break;
        }
        Metrics::latency(&job.metrics.duration, job.start.elapsed());
        let _ = tx.send(Ok(Sse::default().data("[DONE]"))).await;
    });
    SseBody::new(tokio_stream::wrappers::ReceiverStream::new(rx))
}

fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Eog | FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// OpenAI's logprobs objects: chat `{"content": [{token, logprob, bytes, top_logprobs}]}`, completions
/// `{tokens, token_logprobs, top_logprobs, text_offset}`. `lps` pairs each token's log-probabilities with
/// the text it emitted; `offset` is where that text starts in the answer.
fn logprobs_json(kind: Kind, lps: &[(TokenLogprob, String)], mut offset: usize) -> Value {
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match kind {
        Kind::Chat => {
            let content: Vec<Value> = lps
                .iter()
                .map(|(l, _)| {
                    let top: Vec<Value> = l.top.iter().map(|(t, lp)| json!({"token": s(t), "logprob": lp, "bytes": t})).collect();
                    json!({"token": s(&l.token), "logprob": l.logprob, "bytes": l.token, "top_logprobs": top})
                })
                .collect();
            json!({"content": content})
        }
        Kind::Text => {
            let mut offsets = Vec::new();
            for (_, text) in lps {
                offsets.push(offset);
                offset += text.len();
            }
            json!({
                "tokens": lps.iter().map(|(l, _)| s(&l.token)).collect::<Vec<_>>(),
                "token_logprobs": lps.iter().map(|(l, _)| l.logprob).collect::<Vec<_>>(),
                "top_logprobs": lps.iter().map(|(l, _)| l.top.iter().map(|(t, lp)| (s(t), json!(lp))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
                "text_offset": offsets,
            })
        }
    }
}
