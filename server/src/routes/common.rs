//! What the domain handlers share: parsing the route-specific rest of a body, shaping a
//! write's answer, and reading a branch now or as it was after `?at=SEQ`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use swarmlog_projections::{BranchState, Code, Rejection, State as Projection};

use axum::body::Bytes;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, Uri};

use crate::app::{AppState, BranchQuery, PreparedWrite};
use crate::auth::Principal;
use crate::engine::{Committed, Responder, Status, WriteResponse};
use crate::error::{from_json_error, ApiError};
use crate::extract::{read_limited, ApiQuery};
use crate::limits::WAIT_MS_MAX;
use crate::refusal::Refusal;

/// Deserializes the route-specific rest of a write body.
pub fn body<T: DeserializeOwned>(rest: Value) -> Result<T, ApiError> {
    serde_json::from_value(rest).map_err(|error| from_json_error(&error))
}

/// A body with nothing route-specific in it.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

impl super::operation::WriteBody for Empty {}

/// A write's answer: `value` with the `seq` of the write's last event (the head for a
/// no-op) added.
pub fn answer(
    status: Status,
    mut value: Value,
    state: &Projection,
    written: &[Arc<Committed>],
) -> Result<WriteResponse, Refusal> {
    let seq = written
        .last()
        .map_or(state.head, |committed| committed.envelope.seq);
    if let Some(object) = value.as_object_mut() {
        object.insert("seq".into(), json!(seq));
    }
    Ok(WriteResponse {
        status,
        body: value.to_string(),
        replayed: false,
    })
}

/// A responder that answers `created` (or 200 for a no-op, 200 always if `created` is
/// 200) with the JSON `view` builds from the branch after the write.
pub fn responder<F>(branch: String, created: Status, view: F) -> Responder
where
    F: FnOnce(&BranchState, &[Arc<Committed>]) -> Result<Value, Refusal> + Send + 'static,
{
    Box::new(move |state, written| {
        let value = view(branch_of(state, &branch)?, written)?;
        let status = if written.is_empty() {
            Status::Ok
        } else {
            created
        };
        answer(status, value, state, written)
    })
}

/// The wait of a request that may wait for a lock or a task (`wait_ms`): none for 0, 422
/// `invalid_value` outside 0 to [`WAIT_MS_MAX`]. Takes an `i128` so that both the lock
/// routes' unsigned and the claim's signed field convert without loss.
pub fn wait_of(wait_ms: i128) -> Result<Option<Duration>, ApiError> {
    if !(0..=i128::from(WAIT_MS_MAX)).contains(&wait_ms) {
        return Err(ApiError::invalid(
            "invalid_value",
            format!("wait_ms must be from 0 to {WAIT_MS_MAX}, not {wait_ms}"),
        )
        .with("field", "wait_ms"));
    }
    Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms as u64)))
}

/// The state of `branch`, or 404 `branch_not_found`.
pub fn branch_of<'a>(state: &'a Projection, branch: &str) -> Result<&'a BranchState, Rejection> {
    state.branch(branch).ok_or_else(|| {
        Rejection::new(
            Code::BranchNotFound,
            format!("branch '{branch}' does not exist"),
        )
    })
}

/// 404 `not_found` for an entity of `kind`.
pub fn not_found(kind: &str, id: &str) -> Rejection {
    Rejection::new(Code::NotFound, format!("{kind} '{id}' does not exist"))
        .with("kind", kind)
        .with("id", id)
}

/// A 200 JSON answer.
pub fn ok_json(value: Value) -> Response {
    (StatusCode::OK, Json(value)).into_response()
}

/// `?branch=` and `?at=` of every state read.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// The branch, `main` when absent.
    #[serde(default)]
    pub branch: Option<String>,
    /// Read the state as it was after this seq.
    #[serde(default)]
    pub at: Option<u64>,
}

/// Reads the state of a branch now, or as it was after `at` (rebuilt from the log).
pub async fn read_branch<R, F>(app: &AppState, query: &ReadQuery, read: F) -> Result<R, ApiError>
where
    F: FnOnce(&BranchState) -> Result<R, Rejection> + Send + 'static,
    R: Send + 'static,
{
    let read = move |branch: &BranchState| read(branch).map_err(ApiError::from);
    let branch = BranchQuery {
        branch: query.branch.clone(),
    }
    .branch()?;
    match query.at {
        None => {
            app.engine
                .read(move |state| {
                    branch_of(state, &branch)
                        .map_err(ApiError::from)
                        .and_then(read)
                })
                .await?
        }
        Some(at) => {
            let head = app.engine.audit_head().seq;
            if at > head {
                return Err(ApiError::invalid(
                    "invalid_value",
                    format!("at={at} is beyond the head ({head})"),
                )
                .with("field", "at"));
            }
            let past = app.state_at(at).await?;
            branch_of(&past, &branch)
                .map_err(ApiError::from)
                .and_then(read)
        }
    }
}

/// Everything a write handler needs from the request besides its path: the caller, the
/// `?branch=`, and the raw body (kept whole for the idempotency hash).
pub struct WriteInput {
    /// The caller.
    pub principal: Principal,
    /// `?branch=`.
    pub query: BranchQuery,
    /// The request URI (for the idempotency hash).
    pub uri: Uri,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as received.
    pub raw: Bytes,
    /// The route's path parameter (`{task}`, `{resource}`, ...) as `(name, value)`, if
    /// it has one.
    pub target: Option<(String, String)>,
}

impl FromRequest<AppState> for WriteInput {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let principal = parts
            .extensions
            .remove::<Principal>()
            .ok_or_else(|| ApiError::internal("no principal on a routed request", &"auth"))?;
        let ApiQuery(query) =
            ApiQuery::<BranchQuery>::from_request_parts(&mut parts, state).await?;
        // A route without parameters has none to give: that is no error; a parameter that
        // does not decode is.
        let target = match axum::extract::RawPathParams::from_request_parts(&mut parts, state).await
        {
            Ok(params) => params
                .iter()
                .next()
                .map(|(name, value)| (name.to_owned(), value.to_owned())),
            Err(RawPathParamsRejection::InvalidUtf8InPathParam(rejection)) => {
                return Err(ApiError::malformed("invalid_path", rejection.body_text()))
            }
            Err(_) => None,
        };
        let raw = read_limited(body).await?;
        Ok(WriteInput {
            principal,
            query,
            uri: parts.uri,
            headers: parts.headers,
            raw,
            target,
        })
    }
}

impl WriteInput {
    /// Takes out the generic write fields; returns the rest of the body.
    pub fn prepare(&self, app: &AppState) -> Result<(PreparedWrite, Value), ApiError> {
        app.prepare(
            self.principal.clone(),
            &self.query,
            &self.uri,
            &self.headers,
            &self.raw,
        )
    }
}
