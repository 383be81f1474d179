//! The MCP adapter (SPEC §7): LLM agents reach every catalog operation marked as a tool,
//! plus `join`, `whoami`, `wait_events` and `blackboard`, over the official Rust SDK.
//!
//! A tool call becomes the catalog operation's HTTP request (its path filled from the
//! arguments, the caller's agent put in the operation's caller field) and goes through a
//! [`Backend`]: the server's own router for `/mcp`, a remote server for `swarmlog mcp --url`,
//! or the data directory opened for that one request for `swarmlog mcp --db` (so that an
//! idle or waiting MCP process never holds the directory's lock). The same routes, checks
//! and errors as HTTP therefore apply; a refusal becomes a tool error whose text starts
//! with the HTTP `error.code`.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};

use crate::catalog::{self, HttpCall, Method};
use crate::limits::{
    MCP_EVENTS_LIMIT_DEFAULT, MCP_JOIN_TTL_MS_DEFAULT, MCP_TRANSPORT_REFUSAL_BYTES_MAX,
    MCP_WAIT_MS_MAX,
};

/// The URI of the agent guide resource.
pub const GUIDE_URI: &str = "swarmlog://guide";

/// An answer from a backend: the HTTP status and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body (JSON, or NDJSON for event reads).
    pub body: Bytes,
}

/// Where tool calls go.
pub trait Backend: Send + Sync + 'static {
    /// Sends one request; `authorization` is the MCP request's own `Authorization` header
    /// over `/mcp` (a backend with a token of its own ignores it).
    fn send<'a>(
        &'a self,
        call: HttpCall,
        authorization: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Answer, String>>;

    /// Returns once something may have been committed after seq `head` (the head read
    /// before the caller's last read, so that no commit in between is missed), or at
    /// `deadline`.
    fn wait_for_commit(&self, head: u64, deadline: Instant) -> BoxFuture<'_, ()>;

    /// Whether a heartbeat must be a logged re-registration to keep a lease alive: true
    /// where every request opens the log afresh (`--db`), so an in-memory heartbeat would
    /// be forgotten.
    fn heartbeats_are_registrations(&self) -> bool {
        false
    }
}

/// Who the connection acts as.
#[derive(Debug, Clone, Default)]
struct Caller {
    /// The agent named by `--agent`, a token or `join`.
    agent: Option<String>,
    /// Whether `--agent` or a token fixed it (then `join` may not name another).
    fixed: bool,
    /// The registration `join` made, repeated by the keep-alive where needed.
    registration: Option<Value>,
}

/// One MCP connection (a stdio process, or one `/mcp` session).
#[derive(Clone)]
pub struct McpServer {
    backend: Arc<dyn Backend>,
    connection: Arc<Connection>,
}

/// A connection's state; when the last handle goes (the client closed the connection),
/// its keep-alive stops and the joined agent is deregistered.
struct Connection {
    caller: Mutex<Caller>,
    keepalive: Mutex<Option<tokio::task::JoinHandle<()>>>,
    backend: Arc<dyn Backend>,
    /// The `Authorization` header the connection last used (for the goodbye over `/mcp`).
    authorization: Mutex<Option<String>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(keepalive) = lock(&self.keepalive).take() {
            keepalive.abort();
        }
        let caller = lock(&self.caller).clone();
        let (Some(agent), Some(_)) = (caller.agent, caller.registration) else {
            return;
        };
        let backend = self.backend.clone();
        let authorization = lock(&self.authorization).clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                deregister(&*backend, &agent, authorization.as_deref()).await;
            });
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("MCP connection state is never held across a panic")
}

async fn deregister(backend: &dyn Backend, agent: &str, authorization: Option<&str>) {
    let call = HttpCall {
        method: Method::Delete,
        path_and_query: format!("/v1/agents/{}", catalog::percent_encode(agent)),
        body: Some(json!({})),
    };
    if let Err(error) = backend.send(call, authorization).await {
        tracing::warn!(%error, agent, "cannot deregister the agent of a closed MCP connection");
    }
}

impl McpServer {
    /// A connection acting as `agent` when one is named (`--agent`, or a token's agent).
    pub fn new(backend: Arc<dyn Backend>, agent: Option<String>) -> Self {
        let fixed = agent.is_some();
        McpServer {
            backend: backend.clone(),
            connection: Arc::new(Connection {
                caller: Mutex::new(Caller {
                    agent,
                    fixed,
                    registration: None,
                }),
                keepalive: Mutex::new(None),
                backend,
                authorization: Mutex::new(None),
            }),
        }
    }

    /// Deregisters the joined agent now (a clean close), instead of when the last handle
    /// is dropped; used by the stdio server before the process exits.
    pub async fn close(&self) {
        if let Some(keepalive) = lock(&self.connection.keepalive).take() {
            keepalive.abort();
        }
        let caller = std::mem::take(&mut *lock(&self.connection.caller));
        if let (Some(agent), Some(_)) = (caller.agent, caller.registration) {
            let authorization = lock(&self.connection.authorization).clone();
            deregister(&*self.backend, &agent, authorization.as_deref()).await;
        }
    }

    /// Runs one tool call.
    pub async fn call(&self, name: &str, arguments: Map<String, Value>) -> CallToolResult {
        self.call_as(name, arguments, None).await
    }

    async fn call_as(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        authorization: Option<String>,
    ) -> CallToolResult {
        if authorization.is_some() {
            *lock(&self.connection.authorization) = authorization.clone();
        }
        let outcome = match name {
            "join" => self.join(arguments, authorization.as_deref()).await,
            "whoami" => parse_arguments::<NoInput>(arguments).map(|_| self.whoami()),
            "wait_events" => self.wait_events(arguments, authorization.as_deref()).await,
            "blackboard" => self.blackboard(arguments, authorization.as_deref()).await,
            _ => {
                self.operation(name, arguments, authorization.as_deref())
                    .await
            }
        };
        match outcome {
            Ok(value) => structured(value),
            Err(refusal) => CallToolResult::error(vec![ContentBlock::text(refusal)]),
        }
    }

    fn agent(&self) -> Result<String, String> {
        lock(&self.connection.caller).agent.clone().ok_or_else(|| {
            "not_joined: this connection has no agent yet; call join first (with your id, type and capabilities)".to_owned()
        })
    }

    fn whoami(&self) -> Value {
        let caller = lock(&self.connection.caller).clone();
        json!({"agent": caller.agent, "joined": caller.registration.is_some(), "registration": caller.registration})
    }

    async fn operation(
        &self,
        name: &str,
        mut arguments: Map<String, Value>,
        authorization: Option<&str>,
    ) -> Result<Value, String> {
        let operation = catalog::find(name)
            .filter(|operation| operation.tool.is_some())
            .ok_or_else(|| format!("unknown_tool: no tool named '{name}'; see tools/list"))?;
        if let Some(field) = operation.caller {
            arguments.insert(field.to_owned(), Value::String(self.agent()?));
        }
        if name == "read_events" {
            arguments
                .entry("limit")
                .or_insert(json!(MCP_EVENTS_LIMIT_DEFAULT));
        }
        let call = operation
            .http_request(&arguments)
            .map_err(|message| format!("missing_field: {message}"))?;
        let answer = self.backend.send(call, authorization).await?;
        match (name, answer.status) {
            ("task_claim", 204) => Ok(json!({"task": null})),
            ("read_events", 200) => Ok(json!({"events": ndjson(&answer.body)?})),
            _ => json_answer(&answer),
        }
    }

    async fn join(
        &self,
        mut arguments: Map<String, Value>,
        authorization: Option<&str>,
    ) -> Result<Value, String> {
        let named = arguments
            .remove("id")
            .and_then(|id| id.as_str().map(str::to_owned));
        let (current, fixed) = {
            let caller = lock(&self.connection.caller);
            (caller.agent.clone(), caller.fixed)
        };
        let agent =
            match (named, current) {
                (Some(named), Some(current)) if fixed && named != current => {
                    return Err(format!(
                "forbidden: this connection acts as agent '{current}'; it cannot join as '{named}'"
            ))
                }
                (Some(named), _) => named,
                (None, Some(current)) => current,
                (None, None) => return Err(
                    "missing_field: id (the agent id to join as; no --agent or token names one)"
                        .into(),
                ),
            };
        arguments.insert("id".into(), json!(agent));
        let ttl_ms = arguments
            .entry("ttl_ms")
            .or_insert(json!(MCP_JOIN_TTL_MS_DEFAULT))
            .as_u64()
            .unwrap_or(MCP_JOIN_TTL_MS_DEFAULT);
        let registration = Value::Object(arguments);
        let call = HttpCall {
            method: Method::Post,
            path_and_query: "/v1/agents".into(),
            body: Some(registration.clone()),
        };
        let answer = json_answer(&self.backend.send(call, authorization).await?)?;
        {
            let mut caller = lock(&self.connection.caller);
            caller.agent = Some(agent.clone());
            caller.registration = Some(registration.clone());
        }
        self.start_keepalive(
            agent,
            registration,
            ttl_ms,
            authorization.map(str::to_owned),
        );
        Ok(answer)
    }

    /// Keeps the joined agent's lease alive while the connection is open: a heartbeat
    /// every third of the TTL (a re-registration where heartbeats are not kept).
    fn start_keepalive(
        &self,
        agent: String,
        registration: Value,
        ttl_ms: u64,
        authorization: Option<String>,
    ) {
        let backend = self.backend.clone();
        let period = Duration::from_millis((ttl_ms / 3).max(50));
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let call = if backend.heartbeats_are_registrations() {
                    HttpCall {
                        method: Method::Post,
                        path_and_query: "/v1/agents".into(),
                        body: Some(registration.clone()),
                    }
                } else {
                    HttpCall {
                        method: Method::Post,
                        path_and_query: format!(
                            "/v1/agents/{}/heartbeat",
                            catalog::percent_encode(&agent)
                        ),
                        body: Some(json!({})),
                    }
                };
                if let Err(error) = backend.send(call, authorization.as_deref()).await {
                    tracing::warn!(%error, agent, "MCP keep-alive failed");
                }
            }
        });
        if let Some(previous) = lock(&self.connection.keepalive).replace(task) {
            previous.abort();
        }
    }

    /// The long poll: events after `after` that match, as soon as there are any.
    async fn wait_events(
        &self,
        arguments: Map<String, Value>,
        authorization: Option<&str>,
    ) -> Result<Value, String> {
        let input: WaitEventsInput = parse_arguments(arguments)?;
        let timeout_ms = input.timeout_ms.unwrap_or(MCP_WAIT_MS_MAX);
        if timeout_ms > MCP_WAIT_MS_MAX {
            return Err(format!(
                "invalid_value: timeout_ms must be at most {MCP_WAIT_MS_MAX}, not {timeout_ms}"
            ));
        }
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let after = input.after;
        let mut query = Map::new();
        query.insert("from".into(), json!(after + 1));
        query.insert("limit".into(), json!(MCP_EVENTS_LIMIT_DEFAULT));
        if let Some(types) = input.types {
            query.insert("types".into(), json!(types));
        }
        if let Some(stream) = input.stream {
            query.insert("stream".into(), json!(stream));
        }
        let read = catalog::find("read_events").expect("the catalog has read_events");
        loop {
            // The head before the read: a commit after it either is in the read or wakes
            // the wait below.
            let head = self.head(authorization).await?;
            let call = read
                .http_request(&query)
                .map_err(|message| format!("invalid_value: {message}"))?;
            let answer = self.backend.send(call, authorization).await?;
            if answer.status != 200 {
                return json_answer(&answer);
            }
            let events = ndjson(&answer.body)?;
            if let Some(last) = events.last().and_then(|event| event["seq"].as_u64()) {
                return Ok(json!({"events": events, "next": last}));
            }
            if Instant::now() >= deadline {
                return Ok(json!({"events": [], "next": head.max(after)}));
            }
            self.backend.wait_for_commit(head, deadline).await;
        }
    }

    async fn head(&self, authorization: Option<&str>) -> Result<u64, String> {
        let call = HttpCall {
            method: Method::Get,
            path_and_query: "/v1/audit/head".into(),
            body: None,
        };
        let head = json_answer(&self.backend.send(call, authorization).await?)?;
        Ok(head["seq"].as_u64().unwrap_or(0))
    }

    /// Findings and hypotheses of a session (or all) in one read.
    async fn blackboard(
        &self,
        arguments: Map<String, Value>,
        authorization: Option<&str>,
    ) -> Result<Value, String> {
        let input: BlackboardInput = parse_arguments(arguments)?;
        let query = match input.session.as_deref() {
            Some(session) => format!("?session={}", catalog::percent_encode(session)),
            None => String::new(),
        };
        let mut board = Map::new();
        for (key, path) in [
            ("findings", "/v1/findings"),
            ("hypotheses", "/v1/hypotheses"),
        ] {
            let call = HttpCall {
                method: Method::Get,
                path_and_query: format!("{path}{query}"),
                body: None,
            };
            let answer = json_answer(&self.backend.send(call, authorization).await?)?;
            board.insert(key.into(), answer[key].clone());
        }
        Ok(Value::Object(board))
    }
}

/// A JSON answer, or the refusal text `code: message`.
fn json_answer(answer: &Answer) -> Result<Value, String> {
    let value: Value = if answer.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&answer.body).map_err(|error| {
            format!("internal: the server answered something that is not JSON: {error}")
        })?
    };
    if (200..300).contains(&answer.status) {
        return Ok(value);
    }
    let code = value["error"]["code"]
        .as_str()
        .unwrap_or(match answer.status {
            401 => "unauthorized",
            403 => "forbidden",
            _ => "error",
        });
    let message = value["error"]["message"]
        .as_str()
        .unwrap_or("the request was refused");
    Err(format!("{code}: {message} (nothing was written)"))
}

fn ndjson(body: &[u8]) -> Result<Vec<Value>, String> {
    body.split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line)
                .map_err(|error| format!("internal: an event line is not JSON: {error}"))
        })
        .collect()
}

/// A tool result: the JSON as `structuredContent` (an object; anything else is wrapped as
/// `{"result": ...}`) and the same JSON as text.
fn structured(value: Value) -> CallToolResult {
    let value = match value {
        Value::Object(_) => value,
        other => json!({"result": other}),
    };
    CallToolResult::structured(value)
}

/// The tools: the catalog's, plus the four that are the adapter's own.
static TOOLS: LazyLock<Vec<Tool>> = LazyLock::new(|| {
    let mut tools: Vec<Tool> = own_tools();
    for operation in catalog::operations() {
        let Some(description) = operation.tool else {
            continue;
        };
        let mut schema = operation.tool_schema();
        if operation.method.writes() && operation.name != "join" {
            schema["properties"]["fence"] = json!({
                "type": "object",
                "description": "{resource, token}: write only while you hold this lock with this token"
            });
        }
        tools.push(tool(operation.name, description, schema));
    }
    tools
});

fn tool(name: &'static str, description: &'static str, schema: Value) -> Tool {
    let object: JsonObject = match schema {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    };
    Tool::new(
        Cow::Borrowed(name),
        Cow::Borrowed(description),
        Arc::new(object),
    )
}

/// The arguments of `wait_events`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitEventsInput {
    /// The seq to wait after: 0, or the previous answer's `next`.
    after: u64,
    /// Only these types (globs such as task.*).
    #[serde(default)]
    types: Option<Vec<String>>,
    /// Only streams with this prefix.
    #[serde(default)]
    stream: Option<String>,
    /// How long to wait at most (default and maximum 60000).
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// The arguments of `blackboard`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct BlackboardInput {
    /// Only this session's findings and hypotheses.
    #[serde(default)]
    session: Option<String>,
}

/// The arguments of `whoami`: none.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoInput {}

/// Parses a tool's arguments into its input type; a bad argument answers the code HTTP
/// would (`unknown_field`, `missing_field`, `invalid_value`).
fn parse_arguments<T: serde::de::DeserializeOwned>(
    arguments: Map<String, Value>,
) -> Result<T, String> {
    serde_json::from_value(Value::Object(arguments)).map_err(|error| {
        let refusal = crate::error::from_json_error(&error);
        format!("{}: {}", refusal.code, refusal.message)
    })
}

/// The schema of `join`: the catalog's registration input, with `id` optional (the
/// connection may already name the agent).
fn join_schema() -> Value {
    let mut schema = catalog::find("agent_register")
        .expect("the catalog has agent_register")
        .tool_schema();
    if let Some(required) = schema["required"].as_array_mut() {
        required.retain(|name| name != "id");
    }
    schema
}

fn own_tools() -> Vec<Tool> {
    vec![
        tool(
            "join",
            "Register as an agent before working: your type and capabilities (and id, unless the connection already names you); the lease (ttl_ms, default 30000) stays alive while this connection is open, and closing it deregisters you.",
            join_schema(),
        ),
        tool(
            "whoami",
            "Which agent this connection acts as, and whether it joined.",
            catalog::schema_of(Some(catalog::schema::<NoInput>)),
        ),
        tool(
            "wait_events",
            "Wait for committed events after seq `after` instead of polling: returns as soon as a matching event commits (or at once if one already has), else empty at timeout_ms (max 60000). Pass the answer's `next` as `after` to continue.",
            catalog::schema_of(Some(catalog::schema::<WaitEventsInput>)),
        ),
        tool(
            "blackboard",
            "Read the blackboard: every finding and hypothesis (ordered by confidence), optionally of one session.",
            catalog::schema_of(Some(catalog::schema::<BlackboardInput>)),
        ),
    ]
}

/// The tool list, for tests and `benches/README.md`'s size figure.
pub fn tools() -> &'static [Tool] {
    &TOOLS
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_instructions(
            "swarmlog: durable coordination for agent swarms. Call join first, then claim and finish tasks, lock with fencing, post findings, vote, and wait_events instead of polling. Read the resource swarmlog://guide for the whole guide and what each error code means.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools().to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().iter().find(|tool| tool.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let parts = context.extensions.get::<axum::http::request::Parts>();
        let authorization = parts
            .and_then(|parts| parts.headers.get(axum::http::header::AUTHORIZATION))
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        // Over `/mcp` a token's agent is the caller, whatever the connection says.
        if let Some(agent) = parts
            .and_then(|parts| parts.extensions.get::<crate::auth::Principal>())
            .and_then(|principal| principal.agent.clone())
        {
            let mut caller = lock(&self.connection.caller);
            caller.agent.get_or_insert(agent);
            caller.fixed = true;
        }
        let arguments = request.arguments.unwrap_or_default();
        Ok(self
            .call_as(&request.name, arguments, authorization)
            .await
            .into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let guide = Resource::new(GUIDE_URI, "guide")
            .with_description("How an agent uses swarmlog, and what each error code means")
            .with_mime_type("text/markdown");
        Ok(ListResourcesResult::with_all_items(vec![guide]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != GUIDE_URI {
            return Err(ErrorData::resource_not_found(
                format!("no resource {}; the only one is {GUIDE_URI}", request.uri),
                None,
            ));
        }
        let guide = ResourceContents::TextResourceContents {
            uri: GUIDE_URI.to_owned(),
            mime_type: Some("text/markdown".to_owned()),
            text: crate::app::GUIDE.to_owned(),
            meta: None,
        };
        Ok(ReadResourceResult::new(vec![guide]).into())
    }
}

/// The backend of `/mcp` on `serve`: the server's own router, called in-process with the
/// MCP request's `Authorization` header, so tokens and roles apply exactly as over HTTP.
#[derive(Clone)]
pub struct RouterBackend {
    router: axum::Router,
    engine: crate::Engine,
}

impl RouterBackend {
    /// Calls `router`; `engine` tells when something committed.
    pub fn new(router: axum::Router, engine: crate::Engine) -> Self {
        RouterBackend { router, engine }
    }
}

impl Backend for RouterBackend {
    fn send<'a>(
        &'a self,
        call: HttpCall,
        authorization: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Answer, String>> {
        Box::pin(async move {
            let headers: Vec<(&str, &str)> = authorization
                .map(|authorization| ("authorization", authorization))
                .into_iter()
                .collect();
            let response = crate::app::call_in_process(
                &self.router,
                call.method.http(),
                &call.path_and_query,
                call.body.as_ref(),
                &headers,
            )
            .await
            .map_err(|message| format!("invalid_value: {message}"))?;
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map_err(|error| format!("internal: {error}"))?;
            Ok(Answer { status, body })
        })
    }

    /// Waits on the hub, which the commit thread feeds after it publishes the head: a
    /// batch published before the subscription has already moved the head past `head`.
    fn wait_for_commit(&self, head: u64, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut published = self.engine.hub().subscribe();
            let mut shutdown = self.engine.shutdown_watch();
            if self.engine.audit_head().seq > head || *shutdown.borrow() {
                return;
            }
            let deadline = tokio::time::Instant::from_std(deadline);
            tokio::select! {
                _ = published.recv() => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        })
    }
}

/// Middleware of `/mcp`: the MCP transport answers its own HTTP-level refusals (a method it
/// does not take, a missing `Accept`, an unknown session) in plain text; they are answered
/// in the JSON error shape of SPEC §3 like every other refusal, with its text as the
/// message. JSON-RPC answers and event streams pass untouched.
pub async fn json_refusals(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(response.into_body(), MCP_TRANSPORT_REFUSAL_BYTES_MAX)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "mcp_session_not_found",
        status if status.is_server_error() => "internal",
        _ => "invalid_mcp_request",
    };
    let message = if text.is_empty() {
        format!("the MCP transport refused the request ({status})")
    } else {
        text
    };
    let mut refused = crate::ApiError::new(status, code, message).into_response();
    if let Some(allow) = allow {
        refused.headers_mut().insert(header::ALLOW, allow);
    }
    refused
}

/// The `/mcp` Streamable HTTP service over `api` (the router without `/mcp`): one
/// [`McpServer`] per MCP session, acting as the token's agent when there is one.
pub fn http_service(
    api: axum::Router,
    engine: crate::Engine,
) -> rmcp::transport::streamable_http_server::StreamableHttpService<
    McpServer,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let backend: Arc<dyn Backend> = Arc::new(RouterBackend::new(api, engine));
    let mut config = StreamableHttpServerConfig::default()
        // Hosts are checked by the HTTP layer and tokens, as for every other route.
        .disable_allowed_hosts();
    config.legacy_session_mode = true;
    StreamableHttpService::new(
        move || Ok(McpServer::new(backend.clone(), None)),
        Default::default(),
        config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue #9, defect 5: a write refused for lack of disk space reaches an agent as a tool
    // error that starts with its code, like every refusal.
    #[test]
    fn a_full_disk_is_a_tool_error_naming_insufficient_storage() {
        let error = crate::ApiError::from(crate::refusal::Refusal::InsufficientStorage {
            free_bytes: 4096,
            required_bytes: 1 << 20,
        });
        let answer = Answer {
            status: error.status.as_u16(),
            body: Bytes::from(error.body().to_string()),
        };
        assert_eq!(answer.status, 507);
        let text = json_answer(&answer).unwrap_err();
        assert!(text.starts_with("insufficient_storage: "), "{text}");
        assert!(text.contains("4096 bytes free"), "{text}");
    }

    /// SPEC §7: every named tool, and the whole list within 24 KB.
    #[test]
    fn the_tool_list_has_every_spec_tool_and_fits_in_24_kb() {
        let names: Vec<&str> = tools().iter().map(|tool| tool.name.as_ref()).collect();
        for wanted in [
            "join",
            "whoami",
            "append_events",
            "read_events",
            "wait_events",
            "state_get",
            "state_cas",
            "kv_get",
            "kv_put",
            "lock_acquire",
            "lock_release",
            "task_create",
            "task_claim",
            "task_progress",
            "task_complete",
            "task_fail",
            "task_list",
            "finding_post",
            "hypothesis_propose",
            "hypothesis_evidence",
            "blackboard",
            "proposal_open",
            "vote",
            "proposal_get",
            "message_send",
            "inbox",
            "message_ack",
            "session_report",
        ] {
            assert!(names.contains(&wanted), "tools/list lacks {wanted}");
        }
        let bytes = serde_json::to_vec(&ListToolsResult::with_all_items(tools().to_vec()))
            .expect("serializes")
            .len();
        assert!(bytes <= 24 * 1024, "tools/list is {bytes} bytes");
    }

    #[test]
    fn a_refusal_is_its_code_then_its_message() {
        let answer = Answer {
            status: 409,
            body: Bytes::from_static(
                br#"{"error":{"code":"version_conflict","message":"at 2, not 1"}}"#,
            ),
        };
        let text = json_answer(&answer).expect_err("refused");
        assert!(text.starts_with("version_conflict: at 2, not 1"), "{text}");
        let unauthorized = Answer {
            status: 401,
            body: Bytes::new(),
        };
        assert!(json_answer(&unauthorized)
            .expect_err("refused")
            .starts_with("unauthorized: "));
    }
}
