//! The router: one function builds it from the engine, so tests can call it as a service
//! without a socket. Handlers stay thin: extract, call the engine, map the result.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use swarmlog_projections::MAIN_BRANCH;

use crate::auth::{Principal, Role, TokenStore};
use crate::engine::{
    Engine, Fence, IdempotencyRequest, Permit, Responder, Status, WriteCommand, WriteContext,
    WriteRequest, WriteResponse,
};
use crate::error::{from_json_error, ApiError};
use crate::extract::{check_id, idempotency, parse_json};
use crate::guard::HttpPolicy;
use crate::routes::events;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// The bearer tokens, when the server runs with `--tokens`.
    pub tokens: Option<TokenStore>,
    /// The last state rebuilt for `?at=`. History does not change, so it stays valid; a
    /// page that reads several collections at one seq (the board's time slider) rebuilds
    /// it once, and requests for the seq being rebuilt wait for it instead of repeating it.
    past: Arc<tokio::sync::Mutex<Option<PastState>>>,
    /// On a cluster node: its forwarding layer, which also knows the node's place.
    cluster: Option<Arc<crate::cluster::Forwarder>>,
}

/// A state rebuilt for `?at=`: the seq it stands after, and the state.
type PastState = (u64, Arc<swarmlog_projections::State>);

/// The generic part of a write, prepared from the request: who, where, provenance, fence
/// and idempotency. The route adds the command.
pub struct PreparedWrite {
    /// Who and where.
    pub context: WriteContext,
    /// The caller.
    pub principal: Principal,
    /// `fence` from the body.
    pub fence: Option<Fence>,
    /// `Idempotency-Key`.
    pub idempotency: Option<IdempotencyRequest>,
}

impl PreparedWrite {
    /// Submits the write with its command and responder.
    pub async fn submit(
        self,
        app: &AppState,
        command: WriteCommand,
        wait: Option<Duration>,
        respond: Responder,
    ) -> Result<Response, ApiError> {
        let permit = match self.principal.role {
            Role::Admin => Permit::Any,
            Role::Agent | Role::Reader => Permit::OwnOnly,
        };
        let request = WriteRequest {
            context: self.context,
            command,
            idempotency: self.idempotency,
            fence: self.fence,
            wait,
            permit,
            respond,
        };
        Ok(write_response(app.engine.write(request).await?))
    }
}

/// What every write may carry in its body besides the route's own fields, taken out of it
/// (and checked) by [`AppState::prepare`] or by a route that reads its body itself.
#[derive(Debug, Default, PartialEq)]
pub struct WriteFields {
    /// `session`, a checked id.
    pub session: Option<String>,
    /// `correlation`, a checked id.
    pub correlation: Option<String>,
    /// `meta`, an object as compact JSON text.
    pub meta: Option<String>,
    /// `fence`; its resource is checked when the write is prepared.
    pub fence: Option<FenceBody>,
    /// The agent the body names (`agent`, `owner` or `from`), who acts when nothing else
    /// says who does.
    pub agent: Option<String>,
}

/// `fence` in a write body.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceBody {
    resource: String,
    token: u64,
}

/// 422 for a `meta` that is not a JSON object.
pub fn meta_not_an_object() -> ApiError {
    ApiError::invalid("invalid_value", "meta must be a JSON object").with("field", "meta")
}

impl AppState {
    /// The whole state as it was right after event `at` (not beyond the head).
    pub async fn state_at(&self, at: u64) -> Result<Arc<swarmlog_projections::State>, ApiError> {
        let mut cached = self.past.lock().await;
        if let Some((seq, state)) = cached.as_ref() {
            if *seq == at {
                return Ok(Arc::clone(state));
            }
        }
        let reader = self.engine.reader().clone();
        let data_dir = self.engine.data_dir().to_path_buf();
        let state = tokio::task::spawn_blocking(move || {
            crate::engine::state_at_from_snapshot(&reader, &data_dir, at)
        })
        .await
        .map_err(|error| ApiError::internal("time-travel read failed", &error))?
        .map_err(|error| ApiError::internal("cannot rebuild the past state", &error))?;
        let state = Arc::new(state);
        *cached = Some((at, Arc::clone(&state)));
        Ok(state)
    }

    /// The acting agent of a request: an agent token's own agent; otherwise the
    /// `Swarmlog-Actor` header, else the token's agent, else `anonymous`.
    pub fn actor(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        match headers.get("swarmlog-actor") {
            None => Ok("anonymous".to_owned()),
            Some(value) => {
                let actor = value.to_str().map_err(|_| {
                    ApiError::malformed("invalid_actor", "Swarmlog-Actor must be visible ASCII")
                })?;
                check_id("actor", actor)?;
                Ok(actor.to_owned())
            }
        }
    }

    /// Prepares a write: parses the body as a JSON object, takes out the fields every
    /// write may carry (`session`, `correlation`, `meta`, `fence`) and returns the rest
    /// for the route's own struct.
    pub fn prepare(
        &self,
        principal: Principal,
        query: &BranchQuery,
        uri: &Uri,
        headers: &HeaderMap,
        raw: &Bytes,
    ) -> Result<(PreparedWrite, Value), ApiError> {
        let (fields, body) = take_fields(raw)?;
        let write = self.prepare_fields(principal, query, uri, headers, raw, fields)?;
        Ok((write, body))
    }

    /// Prepares a write from the fields every write may carry, already taken out of its
    /// body (`raw`, kept whole for the idempotency hash).
    pub fn prepare_fields(
        &self,
        principal: Principal,
        query: &BranchQuery,
        uri: &Uri,
        headers: &HeaderMap,
        raw: &Bytes,
        fields: WriteFields,
    ) -> Result<PreparedWrite, ApiError> {
        let fence = match fields.fence {
            None => None,
            Some(fence) => {
                check_id("fence.resource", &fence.resource)?;
                Some(Fence {
                    resource: fence.resource,
                    token: fence.token,
                })
            }
        };
        let actor = match (&principal.role, &principal.agent) {
            (Role::Agent, Some(agent)) => agent.clone(),
            (_, Some(agent)) if headers.get("swarmlog-actor").is_none() => agent.clone(),
            // Without tokens, the agent the body names acts (who did what stays known).
            (_, None) if headers.get("swarmlog-actor").is_none() => {
                fields.agent.unwrap_or_else(|| "anonymous".to_owned())
            }
            _ => self.actor(headers)?,
        };
        let idempotency = idempotency(
            headers,
            "POST",
            uri.path_and_query().map_or("", |pq| pq.as_str()),
            raw,
        )?;
        let context = WriteContext {
            branch: query.branch()?,
            actor,
            session: fields.session,
            correlation: fields.correlation,
            meta: fields.meta,
        };
        Ok(PreparedWrite {
            context,
            principal,
            fence,
            idempotency,
        })
    }

    /// 404 `branch_not_found` unless the branch exists.
    pub async fn require_branch(&self, branch: &str) -> Result<(), ApiError> {
        if branch == MAIN_BRANCH {
            return Ok(());
        }
        let name = branch.to_owned();
        let exists = self
            .engine
            .read(move |state| state.has_branch(&name))
            .await?;
        if exists {
            Ok(())
        } else {
            Err(ApiError::not_found(
                "branch_not_found",
                format!("branch '{branch}' does not exist"),
            ))
        }
    }
}

/// Parses a write body as a JSON object and takes out the fields every write may carry
/// (`session`, `correlation`, `meta`, `fence`, and the agent it names); returns them and
/// the rest, for the route's own struct.
pub fn take_fields(raw: &[u8]) -> Result<(WriteFields, Value), ApiError> {
    let mut body: Value = if raw.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        parse_json(raw)?
    };
    let Some(object) = body.as_object_mut() else {
        return Err(ApiError::invalid(
            "invalid_value",
            "the body must be a JSON object",
        ));
    };
    let text = |object: &mut Map<String, Value>, name: &str| -> Result<Option<String>, ApiError> {
        match object.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => {
                check_id(name, &text)?;
                Ok(Some(text))
            }
            Some(_) => Err(
                ApiError::invalid("invalid_value", format!("{name} must be a string"))
                    .with("field", name),
            ),
        }
    };
    let session = text(object, "session")?;
    let correlation = text(object, "correlation")?;
    let meta = match object.remove("meta") {
        None | Some(Value::Null) => None,
        Some(meta @ Value::Object(_)) => Some(meta.to_string()),
        Some(_) => return Err(meta_not_an_object()),
    };
    let fence = match object.remove("fence") {
        None | Some(Value::Null) => None,
        Some(fence) => Some(
            serde_json::from_value(fence)
                .map_err(|error| from_json_error(&error).with("field", "fence"))?,
        ),
    };
    let fields = WriteFields {
        session,
        correlation,
        meta,
        fence,
        agent: body_agent(object),
    };
    Ok((fields, body))
}

/// The agent a write body names as its actor (`agent`, `owner` or `from`), if it is a
/// valid id; the route checks the field itself.
fn body_agent(object: &Map<String, Value>) -> Option<String> {
    ["agent", "owner", "from"]
        .iter()
        .find_map(|field| object.get(*field)?.as_str())
        .filter(|agent| swarmlog_projections::limits::is_valid_id(agent))
        .map(str::to_owned)
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
    let status = match response.status {
        Status::Ok => StatusCode::OK,
        Status::Created => StatusCode::CREATED,
        Status::Empty => StatusCode::NO_CONTENT,
    };
    let mut http = events::json_text(status, response.body);
    if response.replayed {
        http.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
    }
    http
}

/// Sends one request to `router` in-process, without a socket: how the CLI reaches a data
/// directory it opened itself and how `/mcp` runs a tool call. A request that cannot be
/// built (an invalid header or path) is named in the error.
pub async fn call_in_process<H: AsRef<str>>(
    router: &Router,
    method: axum::http::Method,
    path_and_query: &str,
    body: Option<&Value>,
    headers: &[(&str, H)],
) -> Result<Response, String> {
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, value.as_ref());
    }
    let body = body.map_or_else(axum::body::Body::empty, |body| {
        axum::body::Body::from(body.to_string())
    });
    let request = request
        .body(body)
        .map_err(|error| format!("invalid request: {error}"))?;
    match router.clone().oneshot(request).await {
        Ok(response) => Ok(response),
        Err(never) => match never {},
    }
}

/// What the router needs besides the engine.
#[derive(Debug, Clone, Default)]
pub struct RouterOptions {
    /// The bearer tokens (`--tokens`); without them every request has admin rights.
    pub tokens: Option<TokenStore>,
    /// The host names and web origins allowed besides the server's own
    /// (`--allow-host`, `--allow-origin`).
    pub http: HttpPolicy,
    /// On a cluster node: sends the writes its engine refuses as a follower to the writer.
    pub forwarder: Option<Arc<crate::cluster::Forwarder>>,
}

/// Builds the whole router, open to everyone (no `--tokens`).
pub fn router(engine: Engine) -> Router {
    router_with(engine, RouterOptions::default())
}

/// Builds the whole router; with tokens, every route but `/healthz` and the board's page
/// (which holds no data and asks for a token itself) needs a bearer token.
/// Every request first passes the checks of [`crate::guard`] (URL, `Host`, `Origin`,
/// `Content-Type`); with allowed origins, CORS is answered for them.
pub fn router_with(engine: Engine, options: RouterOptions) -> Router {
    let state = AppState {
        engine,
        tokens: options.tokens,
        past: Arc::default(),
        cluster: options.forwarder.clone(),
    };
    let operations = crate::catalog::operations()
        .iter()
        .fold(Router::new(), |router, operation| {
            router.route(operation.path, operation.route.clone())
        });
    let api = operations
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/guide", get(guide))
        .route("/v1/whoami", get(whoami))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ));
    let inner = Router::new()
        .route("/healthz", get(healthz))
        .merge(crate::board::routes())
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state.clone());
    // Outside the routes and inside the guard: the MCP tools, which call `inner`, are
    // forwarded too.
    let inner = match options.forwarder {
        Some(forwarder) => inner.layer(axum::middleware::from_fn_with_state(
            forwarder,
            crate::cluster::forward,
        )),
        None => inner,
    };
    let mcp = Router::new()
        .nest_service(
            "/mcp",
            crate::mcp::http_service(inner.clone(), state.engine.clone()),
        )
        .layer(axum::middleware::from_fn(crate::mcp::json_refusals))
        .layer(axum::middleware::from_fn(crate::extract::check_json_body))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::auth::authenticate_mcp,
        ));
    let policy = Arc::new(options.http);
    let mut router = inner.merge(mcp);
    if policy.has_origins() {
        router = router.layer(policy.cors());
    }
    router.layer(axum::middleware::from_fn_with_state(
        policy,
        crate::guard::guard,
    ))
}

async fn healthz(State(app): State<AppState>) -> Response {
    let head = app.engine.audit_head();
    let mut health = json!({"status": "ok", "head": head.seq});
    if let Some(cluster) = &app.cluster {
        health["cluster"] = cluster.status();
    }
    axum::Json(health).into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.engine.metrics().render(),
    )
        .into_response()
}

/// The Markdown guide for agents (SPEC §7), the same text as `swarmlog guide` and the MCP
/// resource `swarmlog://guide`.
pub const GUIDE: &str = include_str!("../../docs/guide.md");

/// Who the request's token is: `{"agent", "role"}` (admin and no agent without tokens).
async fn whoami(principal: Principal) -> Response {
    axum::Json(json!({"agent": principal.agent, "role": principal.role.as_str()})).into_response()
}

async fn guide() -> Response {
    (
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        GUIDE,
    )
        .into_response()
}

async fn openapi() -> Response {
    axum::Json(crate::openapi::document()).into_response()
}

pub(crate) async fn audit_head(State(app): State<AppState>) -> Response {
    let head = app.engine.audit_head();
    axum::Json(json!({"seq": head.seq, "hash": hex::encode(head.hash)})).into_response()
}

pub(crate) async fn snapshot(
    State(app): State<AppState>,
    principal: Principal,
    _: crate::extract::EmptyBody,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let head = app.engine.audit_head().seq;
    let (path, bytes) = app.engine.snapshot().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"head": head, "path": path.display().to_string(), "bytes": bytes})),
    )
        .into_response())
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
