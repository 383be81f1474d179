//! Forwarding: a follower's engine refuses writes (`not_writer`), and this layer sends
//! such a request on to the writer, as it came, and answers with the writer's answer,
//! once this node's own state reflects it (so a client reads its own writes on the node
//! it wrote through).
//!
//! Only requests the engine refused as a follower are forwarded, so reads and everything
//! else a node answers itself never leave it. A forwarded request carries
//! `Swarmlog-Forwarded-By`; the writer does not forward it again, and adds
//! `Swarmlog-Head`, its durable head when it answered, which the follower waits for.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::history::Member;
use super::Signals;
use crate::error::{ApiError, NotWriterAnswer};
use crate::Engine;

/// Set on a request a follower forwards: the follower's name.
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("swarmlog-forwarded-by");
/// Set on the writer's answer to a forwarded request: its durable head then.
pub const HEAD: HeaderName = HeaderName::from_static("swarmlog-head");
/// How long a follower waits for its state to reflect a forwarded write before it
/// answers anyway (the write is durable; only read-your-writes on this node would wait).
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);
/// How long a write waits for a writer while none is known (a failover): longer than a
/// lease's default lifetime plus the catch-up of its successor.
const WRITER_WAIT: Duration = Duration::from_secs(8);

/// The forwarding layer's state.
pub struct Forwarder {
    engine: Engine,
    signals: Arc<Signals>,
    me: Member,
    http: reqwest::Client,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    pub(crate) fn new(engine: Engine, signals: Arc<Signals>, me: Member) -> Self {
        Forwarder {
            engine,
            signals,
            me,
            http: reqwest::Client::new(),
        }
    }

    /// The writer, waiting for one while none is known (a failover in progress): this
    /// node itself when it took over meanwhile.
    async fn writer(&self) -> Option<Member> {
        let deadline = tokio::time::Instant::now() + WRITER_WAIT;
        loop {
            if self.engine.is_writer() {
                return Some(self.me.clone());
            }
            if let Some(writer) = self.signals.writer().filter(|writer| *writer != self.me) {
                return Some(writer);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends the request to the writer and turns its answer into this node's.
    async fn send(
        &self,
        writer: &Member,
        parts: &axum::http::request::Parts,
        body: bytes::Bytes,
    ) -> Response {
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |path| path.as_str());
        let mut request = self
            .http
            .request(parts.method.clone(), format!("{}{path}", writer.url))
            .body(body);
        for (name, value) in &parts.headers {
            if !is_hop_by_hop(name) {
                request = request.header(name, value);
            }
        }
        request = request.header(&FORWARDED_BY, &self.me.node);
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(error) => {
                // Not connected: the writer never saw the request. Otherwise it may have
                // written it before the connection broke.
                let refusal = match error.is_connect() {
                    true => crate::refusal::Refusal::NotWriter,
                    false => crate::refusal::Refusal::Unconfirmed,
                };
                return ApiError::from(refusal)
                    .with("writer", writer.url.clone())
                    .with("reason", format!("the writer did not answer: {error}"))
                    .into_response();
            }
        };
        let head = answer
            .headers()
            .get(&HEAD)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if !is_hop_by_hop(name) {
                response = response.header(name, value);
            }
        }
        let body = match answer.bytes().await {
            Ok(body) => body,
            Err(error) => {
                return ApiError::from(crate::refusal::Refusal::Unconfirmed)
                    .with(
                        "reason",
                        format!("the writer's answer was cut off: {error}"),
                    )
                    .into_response()
            }
        };
        if let Some(head) = head {
            self.wait_for(head).await;
        }
        // The writer answered, so a request it wrote is written: a failure to pass its
        // answer on must not say that nothing was.
        response.body(Body::from(body)).unwrap_or_else(|_| {
            ApiError::from(crate::refusal::Refusal::Unconfirmed).into_response()
        })
    }

    /// Waits, briefly, until this node's durable head reaches `head`.
    async fn wait_for(&self, head: u64) {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        while self.engine.audit_head().seq < head && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The middleware: see the module's documentation.
pub async fn forward(
    State(forwarder): State<Arc<Forwarder>>,
    request: Request,
    next: Next,
) -> Response {
    let forwarded = request.headers().contains_key(&FORWARDED_BY);
    if forwarded || forwarder.engine.is_writer() || is_read(request.method()) {
        let mut response = next.run(request).await;
        if forwarded {
            let head = forwarder.engine.audit_head().seq;
            response.headers_mut().insert(HEAD, HeaderValue::from(head));
        }
        return response;
    }
    let (parts, body) = request.into_parts();
    let limit = swarmlog_projections::limits::current().request_body_bytes_max;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return ApiError::payload_too_large(limit).into_response();
    };
    let response = next
        .run(Request::from_parts(parts.clone(), Body::from(body.clone())))
        .await;
    if response.extensions().get::<NotWriterAnswer>().is_none() {
        return response;
    }
    match forwarder.writer().await {
        Some(writer) => forwarder.send(&writer, &parts, body).await,
        None => response,
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Headers that belong to one connection, not to the request or answer.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}
