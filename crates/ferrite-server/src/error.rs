//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the matching status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferrite_engine::serving::SubmitError;
use serde_json::json;

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }

    /// 400: the request is malformed or asks for something unsupported.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 naming the offending field.
    pub fn invalid_param(param: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { param: Some(param), ..ApiError::invalid(message) }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            code: Some("invalid_api_key"),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", "missing or invalid API key (Authorization: Bearer KEY)")
        }
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError { code: Some("not_found"), ..ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("no route for {path}")) }
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            code: Some("request_too_large"),
            ..ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", format!("the request body is larger than {limit} bytes"))
        }
    }

    /// 429 with `Retry-After: 1`: too many requests are already waiting.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError { code: Some("queue_full"), retry_after: Some(1), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message) }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError { code: Some("unavailable"), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message) }
    }

    pub fn timeout() -> ApiError {
        ApiError { code: Some("timeout"), ..ApiError::new(StatusCode::GATEWAY_TIMEOUT, "server_error", "the request timed out before producing output") }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body (also sent as an SSE event when a stream fails midway).
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        let message = e.to_string();
        match e {
            SubmitError::EmptyPrompt => ApiError::invalid_param("prompt", message),
            SubmitError::NoTokens => ApiError::invalid_param("max_tokens", message),
            SubmitError::ContextExceeded { .. } => {
                ApiError { code: Some("context_length_exceeded"), param: Some("messages"), ..ApiError::invalid(message) }
            }
            SubmitError::QueueFull { .. } => ApiError::busy(message),
            SubmitError::ShuttingDown => ApiError::unavailable(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}
