//! The one error type of the HTTP API, and the only place that maps errors to status codes
//! and the `{"error": {"code", "message", ...}}` body of SPEC §3.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use swarmlog_projections::{Rejection, RejectionKind};

use crate::json::JsonError;
use crate::refusal::Refusal;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The snake_case code.
    pub code: &'static str,
    /// A sentence for humans.
    pub message: String,
    /// Extra fields merged into the error object.
    pub details: Map<String, Value>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// Adds a detail field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// 400: the request cannot be parsed.
    pub fn malformed(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: valid JSON, invalid request.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 404 for an unknown entity.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 503 while the server shuts down.
    pub fn shutting_down() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; retry against the restarted server",
        )
    }

    /// 413: a request body, or its announced `Content-Length`, is over the body limit.
    pub fn payload_too_large(limit_bytes: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit_bytes} bytes"),
        )
        .with("limit_bytes", limit_bytes)
    }

    /// 400: a request with both `Content-Length` and `Transfer-Encoding`, whose length a
    /// proxy in front may read otherwise than the server (request smuggling).
    pub fn ambiguous_length() -> Self {
        ApiError::malformed(
            "ambiguous_length",
            "the request has both Content-Length and Transfer-Encoding; send only one",
        )
    }

    /// 503: the server has as many connections open as it allows.
    pub fn too_many_connections(limit: usize) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            format!("the server has {limit} connections open, its limit; retry later"),
        )
        .with("limit", limit)
    }

    /// 503: as many SSE subscriptions are open as the server allows.
    pub fn too_many_subscribers(limit: usize) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            format!("the server has {limit} subscriptions open, its limit; retry later"),
        )
        .with("limit", limit)
    }

    /// 500 for a failure inside the server (details are logged, not sent).
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; see the server log"),
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), Value::from(self.code));
        error.insert("message".into(), Value::from(self.message.clone()));
        // A detail never replaces the code or the sentence.
        for (key, value) in &self.details {
            error.entry(key.clone()).or_insert_with(|| value.clone());
        }
        serde_json::json!({ "error": error })
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        let status = match rejection.kind {
            RejectionKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            RejectionKind::NotFound => StatusCode::NOT_FOUND,
            RejectionKind::Conflict => StatusCode::CONFLICT,
            RejectionKind::Forbidden => StatusCode::FORBIDDEN,
        };
        ApiError {
            status,
            code: rejection.code.as_str(),
            message: rejection.message,
            details: rejection.details,
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Rule(rejection) => rejection.into(),
            Refusal::IdempotencyKeyReused { ref key } => ApiError::invalid(
                refusal.code(),
                format!("Idempotency-Key '{key}' was already used with a different request"),
            ),
            Refusal::ShuttingDown => ApiError::shutting_down(),
            Refusal::InsufficientStorage {
                free_bytes,
                required_bytes,
            } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                refusal.code(),
                refusal.to_string(),
            )
            .with("free_bytes", free_bytes)
            .with("required_bytes", required_bytes),
            Refusal::NotWriter | Refusal::Unconfirmed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                refusal.code(),
                refusal.to_string(),
            ),
            Refusal::Internal { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                refusal.code(),
                refusal.to_string(),
            ),
        }
    }
}

/// Marks an answer that a cluster follower gives because it is not the writer, so that
/// the forwarding layer (`cluster::forward`) sends the request on to the writer instead.
#[derive(Debug, Clone, Copy)]
pub struct NotWriterAnswer;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let not_writer = self.code == crate::refusal::NOT_WRITER;
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if not_writer {
            response.extensions_mut().insert(NotWriterAnswer);
        }
        response
    }
}

impl From<JsonError> for ApiError {
    fn from(error: JsonError) -> Self {
        match error {
            JsonError::TooDeep { limit } => ApiError::invalid(
                "too_deep",
                format!("the body nests arrays and objects more than {limit} levels deep; the limit is {limit}"),
            )
            .with("limit", limit),
            JsonError::DuplicateKey { key, line, column } => ApiError::invalid(
                "duplicate_key",
                format!("the body has the key '{key}' twice in one object (line {line}, column {column}); each key may appear once per object"),
            )
            .with("key", key)
            .with("line", line)
            .with("column", column),
            JsonError::Syntax(error) => from_json_error(&error),
        }
    }
}

/// Maps a serde_json error on a request body: syntax errors are 400, a well-formed body
/// of the wrong shape is 422 with the most precise code we can tell.
pub fn from_json_error(error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = error.to_string();
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::malformed(
            "malformed_json",
            format!("the body is not valid JSON: {message}"),
        ),
        Category::Data if message.starts_with("unknown field") => {
            ApiError::invalid("unknown_field", message)
        }
        Category::Data if message.starts_with("missing field") => {
            ApiError::invalid("missing_field", message)
        }
        Category::Data => ApiError::invalid("invalid_value", message),
    }
}
