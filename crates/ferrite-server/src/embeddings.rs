//! `POST /v1/embeddings`: OpenAI's embeddings API over the server's embedding model
//! (`ferrite serve --embed-model PATH`).
//!
//! `input` is a string or an array of strings; `encoding_format` is `float` (default) or `base64`
//! (little-endian f32 bytes). A text longer than the model's window is refused with 400
//! `context_length_exceeded`, as OpenAI does — never cut silently — unless the request sets the extension
//! field `"truncate": true`. Work runs off the async runtime, one request at a time (each already a
//! batched forward pass over all its texts); requests beyond [`MAX_WAITING`] get 429.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use base64::Engine as _;
use ferrite_engine::Embedder;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::completion::body_bytes;
use crate::error::ApiError;
use crate::openai;

/// Texts in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;
/// Requests waiting for the embedding model before new ones get 429.
pub const MAX_WAITING: usize = 64;

/// The embedding model and its admission state.
pub struct EmbedService {
    pub embedder: Arc<Embedder>,
    /// The id requests may name in `model` and `/v1/models` lists.
    pub name: String,
    gate: tokio::sync::Semaphore,
    waiting: AtomicUsize,
}

impl EmbedService {
    pub fn new(embedder: Arc<Embedder>, name: String) -> EmbedService {
        EmbedService { embedder, name, gate: tokio::sync::Semaphore::new(1), waiting: AtomicUsize::new(0) }
    }
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    pub input: Value,
    #[serde(default)]
    #[allow(dead_code)]
    pub model: Option<String>,
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[serde(default)]
    pub dimensions: Option<i64>,
    /// Extension: truncate texts longer than the window instead of refusing them.
    #[serde(default)]
    pub truncate: bool,
    #[serde(default)]
    #[allow(dead_code)]
    pub user: Option<String>,
}

/// The texts of `input`, checked.
fn texts(input: &Value) -> Result<Vec<String>, ApiError> {
    let bad = |m: &str| ApiError::invalid_param("input", m);
    let texts = match input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.is_empty() => return Err(bad("input must not be an empty array")),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect()
        }
        Value::Array(items) if items.iter().all(|v| v.is_number() || v.is_array()) => {
            return Err(bad(
                "token-id input is not supported: send the texts as strings (the ids of another tokenizer would mean nothing to this model)",
            ));
        }
        _ => return Err(bad("input must be a string or an array of strings")),
    };
    if texts.len() > MAX_INPUTS {
        return Err(bad(&format!("{} texts in one request; at most {MAX_INPUTS}", texts.len())));
    }
    Ok(texts)
}

pub async fn embeddings(State(st): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let req: EmbeddingsRequest = openai::parse(&body_bytes(body)?)?;
    st.ready()?;
    // Like the completion endpoints, `model` is not matched: the endpoint says which model answers.
    let svc = st
        .embed
        .get()
        .ok_or_else(|| ApiError::invalid_param("model", "this server has no embedding model (start it with --embed-model PATH)"))?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(ApiError::invalid_param("encoding_format", format!("{other:?} is not one of float, base64"))),
    };
    let dim = svc.embedder.dim();
    if let Some(d) = req.dimensions
        && d != dim as i64
    {
        return Err(ApiError::invalid_param("dimensions", format!("this model's vectors have {dim} dimensions and cannot be shortened")));
    }
    let texts = texts(&req.input)?;

    // Admission: one request computes at a time; a bounded number wait.
    if svc.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
        svc.waiting.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::busy(format!("{MAX_WAITING} embedding requests are already waiting")));
    }
    let permit = tokio::time::timeout(st.options.request_timeout, svc.gate.acquire()).await;
    svc.waiting.fetch_sub(1, Ordering::SeqCst);
    let _permit = permit.map_err(|_| ApiError::timeout())?.map_err(|_| ApiError::unavailable("shutting down"))?;

    let embedder = svc.embedder.clone();
    let truncate = req.truncate;
    let out = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        if !truncate {
            let window = embedder.max_tokens();
            for (i, t) in texts.iter().enumerate() {
                let n = embedder.count_tokens(t).map_err(|e| ApiError::internal(e.to_string()))? + 2;
                if n > window {
                    return Err(ApiError {
                        code: Some("context_length_exceeded"),
                        ..ApiError::invalid_param(
                            "input",
                            format!(
                                "input[{i}] has {n} tokens; this model's window is {window} (send \"truncate\": true to cut longer texts)"
                            ),
                        )
                    });
                }
            }
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        embedder.embed(&refs).map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::internal(format!("embedding task failed: {e}")))??;

    st.metrics.embedding_tokens.fetch_add(out.tokens as u64, Ordering::Relaxed);
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": svc.name,
        "usage": {"prompt_tokens": out.tokens, "total_tokens": out.tokens},
    })))
}
