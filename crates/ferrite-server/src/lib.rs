//! `ferrite serve`: an OpenAI-compatible HTTP server over the serving engine
//! ([`ferrite_engine::serving`]).
//!
//! - [`router`]: the routes (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`, `/health`,
//!   `/metrics`, `/`), bearer-token auth and request counting on `/v1`, an 8 MiB body limit, OpenAI-shaped
//!   errors for everything including unknown paths.
//! - [`embeddings`]: `/v1/embeddings` over an optional embedding model (`--embed-model`).
//! - [`rag`]: `/v1/rag/ask`, grounded answers from a collection (`--collection`).
//! - [`completion`]: one request from body to answer: prompt, limits, submission to the engine, and the
//!   answer as one JSON object or as a stream of server-sent events.
//! - [`openai`]: request bodies and their checks; [`error`]: errors in OpenAI's format; [`metrics`]:
//!   Prometheus text.
//!
//! The model loads after the listener is bound, so `/health` answers 503 until it is ready. The server keeps
//! no state between requests apart from its caches: several can run behind a load balancer.

mod completion;
pub mod embeddings;
pub mod error;
pub mod metrics;
pub mod openai;
pub mod rag;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferrite_engine::chat::ChatTemplate;
use ferrite_engine::serving::EngineHandle;
use ferrite_engine::LoadedModel;
use serde_json::json;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 8 << 20;

/// Settings fixed at start.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The id `/v1/models` lists.
    pub model_name: String,
    pub api_key: Option<String>,
    pub request_timeout: Duration,
}

/// What exists once the model is loaded.
pub struct Ready {
    pub engine: EngineHandle,
    pub lm: Arc<LoadedModel>,
    pub template: Option<ChatTemplate>,
    /// Unix time the model was loaded (`created` in `/v1/models`).
    pub created: u64,
}

/// Shared by all handlers.
pub struct AppState {
    pub options: ServerOptions,
    pub metrics: Arc<Metrics>,
    pub ready: OnceLock<Ready>,
    /// The embedding model, when the server has one; set before `ready`.
    pub embed: OnceLock<embeddings::EmbedService>,
    /// The collection `/v1/rag/ask` answers from; set before `ready`.
    pub rag: OnceLock<rag::RagService>,
}

impl AppState {
    pub fn new(options: ServerOptions, metrics: Arc<Metrics>) -> Arc<AppState> {
        Arc::new(AppState { options, metrics, ready: OnceLock::new(), embed: OnceLock::new(), rag: OnceLock::new() })
    }

    fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready.get().ok_or_else(|| ApiError::unavailable("the model is still loading"))
    }
}

/// All routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(completion::chat))
        .route("/v1/completions", post(completion::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/rag/ask", post(rag::ask))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .route_layer(middleware::from_fn_with_state(state.clone(), count));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .fallback(|req: Request| async move { ApiError::not_found(req.uri().path()) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Serve on `listener` until `shutdown` resolves, then stop accepting connections and wait for the
/// requests in flight (streams included) to finish.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let closing = state.clone();
    let shutdown = async move {
        shutdown.await;
        // New requests get 503 while the ones in flight finish.
        if let Some(r) = closing.ready.get() {
            r.engine.shutdown();
        }
    };
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// `Authorization: Bearer KEY` on `/v1/*` when the server has a key.
async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.options.api_key {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// A random number for ids and unseeded sampling: SipHash under the process's random keys (a fresh key
/// pair per call) of the current time.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// Compare secrets without an early exit that would leak how much matched through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Count finished `/v1` requests by endpoint and status.
async fn count(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let endpoint = match req.uri().path() {
        "/v1/chat/completions" => "chat_completions",
        "/v1/completions" => "completions",
        "/v1/embeddings" => "embeddings",
        "/v1/rag/ask" => "rag_ask",
        "/v1/models" => "models",
        _ => "other",
    };
    let resp = next.run(req).await;
    st.metrics.request(endpoint, resp.status().as_u16());
    resp
}

async fn models(State(st): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let ready = st.ready()?;
    let mut data = vec![json!({"id": st.options.model_name, "object": "model", "created": ready.created, "owned_by": "ferrite",
                               "context_length": ready.engine.config().ctx})];
    if let Some(e) = st.embed.get() {
        data.push(json!({"id": e.name, "object": "model", "created": ready.created, "owned_by": "ferrite",
                         "context_length": e.embedder.max_tokens(), "dimensions": e.embedder.dim()}));
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    match st.ready.get() {
        Some(_) => Json(json!({"status": "ok"})).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading"}))).into_response(),
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let text = st.metrics.render(st.ready.get().map(|r| r.engine.stats()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../static/index.html"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_numbers_differ() {
        let v: std::collections::HashSet<u64> = (0..100).map(|_| super::random_u64()).collect();
        assert_eq!(v.len(), 100);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret2"));
        assert!(!super::constant_time_eq(b"", b"x"));
    }
}
