//! The router: one function builds it from the engine, so tests can call it as a service
//! without a socket. Handlers stay thin: extract, call the engine, map the result.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use swarmlog_projections::MAIN_BRANCH;

use crate::engine::{Engine, WriteResponse};
use crate::error::ApiError;
use crate::extract::check_id;
use crate::routes::events;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
}

impl AppState {
    /// The acting agent of a request: the `Swarmlog-Actor` header, else `anonymous`.
    pub fn actor(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        match headers.get("swarmlog-actor") {
            None => Ok("anonymous".to_owned()),
            Some(value) => {
                let actor = value
                    .to_str()
                    .map_err(|_| ApiError::malformed("invalid_actor", "Swarmlog-Actor must be visible ASCII"))?;
                check_id("actor", actor)?;
                Ok(actor.to_owned())
            }
        }
    }

    /// 404 `branch_not_found` unless the branch exists.
    pub async fn require_branch(&self, branch: &str) -> Result<(), ApiError> {
        if branch == MAIN_BRANCH {
            return Ok(());
        }
        let name = branch.to_owned();
        let exists = self.engine.read(move |state| state.has_branch(&name)).await?;
        if exists {
            Ok(())
        } else {
            Err(ApiError::not_found("branch_not_found", format!("branch '{branch}' does not exist")))
        }
    }
}

/// The `?branch=` parameter every endpoint takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchQuery {
    /// The branch, `main` when absent.
    #[serde(default)]
    pub branch: Option<String>,
}

impl BranchQuery {
    /// The validated branch name.
    pub fn branch(&self) -> Result<String, ApiError> {
        match &self.branch {
            None => Ok(MAIN_BRANCH.to_owned()),
            Some(branch) => {
                check_id("branch", branch)?;
                Ok(branch.clone())
            }
        }
    }
}

/// Turns an engine answer into an HTTP response.
pub fn write_response(response: WriteResponse) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let mut http = events::json_text(status, response.body);
    if response.replayed {
        http.headers_mut()
            .insert("idempotent-replayed", header::HeaderValue::from_static("true"));
    }
    http
}

/// Builds the whole router.
pub fn router(engine: Engine) -> Router {
    let state = AppState { engine };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/audit/head", get(audit_head))
        .route("/v1/events", post(events::append).get(events::read_events))
        .route("/v1/streams/{stream}", get(events::read_stream))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn healthz(State(app): State<AppState>) -> Response {
    let head = app.engine.audit_head();
    axum::Json(json!({"status": "ok", "head": head.seq})).into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.engine.metrics().render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    axum::Json(crate::openapi::document()).into_response()
}

async fn audit_head(State(app): State<AppState>) -> Response {
    let head = app.engine.audit_head();
    axum::Json(json!({"seq": head.seq, "hash": hex::encode(head.hash)})).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("route_not_found", "no such route; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /v1/openapi.json",
    )
}
