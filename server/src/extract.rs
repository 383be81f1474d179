//! Request extractors that answer every malformed input with the error body of SPEC §3
//! instead of axum's plain-text rejections.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use swarmlog_projections::limits::{self, is_valid_id};

use crate::engine::IdempotencyRequest;
use crate::error::{from_json_error, ApiError};
use crate::limits::IDEMPOTENCY_KEY_BYTES_MAX;

/// A JSON request body: within the process's body limit (413), valid JSON (400), within
/// its depth limit (422 `too_deep`), each key once per object (422 `duplicate_key`) and of
/// the expected shape (422). Keeps the raw
/// bytes for the idempotency hash.
pub struct ApiJson<T> {
    /// The parsed body.
    pub value: T,
    /// The body as received.
    pub raw: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = read_body(request).await?;
        let value = parse_json(&raw)?;
        Ok(ApiJson { value, raw })
    }
}

/// A raw request body within the process's body limit (413 beyond).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        read_body(request).await.map(RawBody)
    }
}

/// The body of a request that takes no fields (an agent's heartbeat, a snapshot): empty or
/// `{}`. Anything else is refused like any body (400 malformed, 422 `unknown_field`), so
/// that a mistyped field is never silently ignored.
pub struct EmptyBody;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

impl<S: Send + Sync> FromRequest<S> for EmptyBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = read_body(request).await?;
        if !raw.iter().all(u8::is_ascii_whitespace) {
            parse_json::<NoFields>(&raw)?;
        }
        Ok(EmptyBody)
    }
}

/// Reads a body up to the limit.
pub async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    read_limited(request.into_body()).await
}

/// Reads `body` up to the process's body limit: 413 beyond it, 400 `incomplete_body` when
/// the body cannot be read to its end (the client closed its side early, or sent a broken
/// chunked encoding), which is no reason to call it too large (issue #9).
pub async fn read_limited(body: Body) -> Result<Bytes, ApiError> {
    let most = limits::current().request_body_bytes_max;
    axum::body::to_bytes(body, most).await.map_err(|error| {
        if is_length_limit(&error) {
            ApiError::payload_too_large(most)
        } else {
            ApiError::malformed(
                "incomplete_body",
                "the request body ended before its announced length, or its chunked encoding is invalid",
            )
        }
    })
}

/// Whether a body error, or one of its causes, is the body limit.
fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// Parses a body: first as any JSON (syntax, depth checked on the raw bytes, each key once
/// per object: [`crate::json::parse`]), then into `T` (shape).
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed(
            "malformed_json",
            "the request body is empty; a JSON object is expected",
        ));
    }
    let value = crate::json::parse(raw, limits::current().json_depth_max)?;
    serde_json::from_value(value).map_err(|error| from_json_error(&error))
}

/// Middleware of `/mcp`: its JSON-RPC bodies are read by the MCP transport's own parser,
/// so they are checked here first like every other body: within the body limit (413),
/// within the depth limit (422 `too_deep`) and each key once per object (422
/// `duplicate_key`). A body that is not JSON is left to the transport to answer.
pub async fn check_json_body(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let raw = match read_limited(body).await {
        Ok(raw) => raw,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = crate::json::check(&raw, limits::current().json_depth_max) {
        return ApiError::from(error).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(raw))).await
}

/// A path parameter, with a rejection answered as 400 `invalid_path` instead of axum's
/// plain text.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::malformed("invalid_path", rejection.body_text()))
    }
}

/// Query parameters, with unknown or malformed parameters answered as 400 `invalid_query`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::malformed("invalid_query", rejection.body_text()))
    }
}

/// The query parameters that name an id (SPEC §3), wherever they appear.
pub(crate) const ID_QUERY_PARAMETERS: &[&str] = &[
    "branch", "session", "agent", "actor", "owner", "type", "stream",
];

/// Refuses a request whose query names an id that breaks the id rule (`invalid_id`), also
/// on routes that ignore the parameter, so that no malformed id is ever silently read as
/// "nothing matches". Every API route checks it ([`crate::auth::authenticate`]).
pub fn check_query_ids(uri: &Uri) -> Result<(), ApiError> {
    if let Some(query) = uri.query() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|error| ApiError::malformed("invalid_query", error.to_string()))?;
        for (name, value) in &pairs {
            if ID_QUERY_PARAMETERS.contains(&name.as_str()) {
                check_id(name, value)?;
            }
        }
    }
    Ok(())
}

/// Checks an id, key, stream or branch name with the one rule every layer shares
/// ([`swarmlog_projections::rejection::check_id`]); `what` names it in the error.
pub fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    swarmlog_projections::rejection::check_id(what, id).map_err(ApiError::from)
}

/// Reads the `Idempotency-Key` header, if any, and hashes the request it guards.
pub fn idempotency(
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<Option<IdempotencyRequest>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| {
            is_valid_id(key)
                && key.len() <= IDEMPOTENCY_KEY_BYTES_MAX
                && key.bytes().all(|byte| byte.is_ascii_graphic())
        })
        .ok_or_else(|| {
            let most = limits::current()
                .id_bytes_max
                .min(IDEMPOTENCY_KEY_BYTES_MAX);
            ApiError::malformed(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1 to {most} bytes of visible ASCII"),
            )
        })?;
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(path_and_query.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    Ok(Some(IdempotencyRequest {
        key: key.to_owned(),
        request_sha256: hasher.finalize().into(),
    }))
}
