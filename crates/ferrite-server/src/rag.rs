//! `POST /v1/rag/ask`: a grounded answer from the server's collection (`ferrite serve --collection DIR`).
//!
//! Body: `{"question": "...", "k": 5, "mode": "hybrid"|"dense"|"bm25", "filter": {...}, "max_tokens": 384}`.
//! Retrieval runs off the async runtime; generation goes through the same engine (continuous batching)
//! as the completion endpoints, greedy. The answer comes back whole with its checked citations (each
//! mapped to source path and character span), the flagged ones (naming a source that was not retrieved),
//! and the sources given to the model.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use ferrite_engine::sampling::SamplingParams;
use ferrite_engine::serving::{Event, Request as EngineRequest};
use ferrite_rag::{Collection, Filter, Query, answer};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::completion::body_bytes;
use crate::error::ApiError;
use crate::openai;

/// The collection a server answers from, and the embedding model it was built with.
pub struct RagService {
    pub collection: Collection,
    pub embedder: Arc<ferrite_engine::Embedder>,
}

#[derive(Debug, Deserialize)]
struct AskRequest {
    question: String,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    max_tokens: Option<usize>,
}

pub async fn ask(State(st): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let start = Instant::now();
    let req: AskRequest = openai::parse(&body_bytes(body)?)?;
    let ready = st.ready()?;
    if st.rag.get().is_none() {
        return Err(ApiError::invalid("this server has no collection (start it with --collection DIR)"));
    }
    if req.question.trim().is_empty() {
        return Err(ApiError::invalid_param("question", "question must not be empty"));
    }
    let k = req.k.unwrap_or(5);
    if !(1..=50).contains(&k) {
        return Err(ApiError::invalid_param("k", "k must be between 1 and 50"));
    }
    let mode: ferrite_rag::Mode = req
        .mode
        .as_deref()
        .unwrap_or("hybrid")
        .parse()
        .map_err(|e: ferrite_rag::RagError| ApiError::invalid_param("mode", e.to_string()))?;
    let filter = req.filter.as_ref().map(Filter::parse).transpose().map_err(|e| ApiError::invalid_param("filter", e.to_string()))?;
    let ctx = ready.engine.config().ctx;
    let max_tokens = req.max_tokens.unwrap_or(384);
    if max_tokens == 0 || max_tokens >= ctx {
        return Err(ApiError::invalid_param("max_tokens", format!("max_tokens must be between 1 and {} (the context is {ctx})", ctx - 1)));
    }

    let st2 = st.clone();
    let question = req.question;
    let (prompt, sources, dropped) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let rag = st2.rag.get().expect("checked above");
        let ready = st2.ready()?;
        let hits = rag
            .collection
            .search(&rag.embedder, &Query { text: &question, k, mode, filter: filter.as_ref(), fusion: None })
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let (prompt, sources, dropped) =
            answer::fit(ready.template.as_ref(), &question, hits, ctx - max_tokens, &|p| ready.lm.tokenize_prompt(p).len())
                .map_err(|e| ApiError { code: Some("context_length_exceeded"), ..ApiError::invalid_param("question", e.to_string()) })?;
        Ok((ready.lm.tokenize_prompt(&prompt), sources, dropped))
    })
    .await
    .map_err(|e| ApiError::internal(format!("retrieval task failed: {e}")))??;
    if sources.is_empty() {
        return Ok(Json(json!({"answer": null, "citations": [], "flagged": [], "sources": [], "dropped_sources": dropped,
                              "message": "nothing in the collection matches the question"})));
    }

    let prompt_tokens = prompt.len();
    let mut events =
        ready.engine.submit(EngineRequest { prompt, max_tokens, sampling: SamplingParams::greedy(), stop: Vec::new(), logprobs: None })?;
    let deadline = tokio::time::Instant::from_std(start + st.options.request_timeout);
    let mut text = String::new();
    let (finish, completion_tokens) = loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Err(ApiError::timeout()),
            Ok(None) => return Err(ApiError::internal("the engine stopped")),
            Ok(Some(Event::Token { text: t, .. })) => text.push_str(&t),
            Ok(Some(Event::Done { finish, usage, tail })) => {
                text.push_str(&tail);
                break (finish, usage.completion_tokens);
            }
            Ok(Some(Event::Error(e))) => return Err(ApiError::internal(e)),
        }
    };
    let a = answer::Answer::new(text.trim().to_string(), sources, dropped, prompt_tokens);
    let mut v = serde_json::to_value(&a).map_err(|e| ApiError::internal(e.to_string()))?;
    v["finish_reason"] = json!(finish);
    v["usage"] =
        json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
    Ok(Json(v))
}
