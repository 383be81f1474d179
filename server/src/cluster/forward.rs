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
/// How long a write may wait for a writer to take it (a failover): longer than a lease's
/// default lifetime plus the catch-up of its successor.
const WRITER_WAIT: Duration = Duration::from_secs(8);
/// How long a request no writer took waits before it goes to the writer again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long connecting to the writer may take: a writer cut off by a partition does not
/// refuse the connection, it never answers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

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
            http: reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .expect("a client without TLS and with a valid timeout builds"),
        }
    }

    /// This node's place in the cluster, for `/healthz`: its name, whether it is the
    /// writer, the writer it sees, and how many events of the history it has not applied.
    pub fn status(&self) -> serde_json::Value {
        let is_writer = self.engine.is_writer();
        let writer = match is_writer {
            true => Some(self.me.clone()),
            false => self.signals.writer(),
        };
        serde_json::json!({
            "node": self.me.node,
            "role": if is_writer { "writer" } else { "follower" },
            "writer": writer.map(|writer| serde_json::json!({"node": writer.node, "url": writer.url})),
            "lag_events": self.engine.metrics().cluster_lag_events.get(),
        })
    }

    /// The writer, waiting until `deadline` for one while none is known (a failover in
    /// progress): this node itself when it took over meanwhile.
    async fn writer(&self, deadline: tokio::time::Instant) -> Option<Member> {
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
    ) -> Sent {
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
                let refusal = |refusal: crate::refusal::Refusal| {
                    ApiError::from(refusal)
                        .with("writer", writer.url.clone())
                        .with("reason", format!("the writer did not answer: {error}"))
                        .into_response()
                };
                // Not connected: the writer never saw the request (it died, and its
                // lease has not run out yet). Otherwise it may have written it before the
                // connection broke.
                if !error.is_connect() {
                    return Sent::Answered(refusal(crate::refusal::Refusal::Unconfirmed));
                }
                // A writer that stopped cleanly gave its lease up: the election need not
                // wait for its next round to see it.
                self.signals.look_now();
                return Sent::NotTaken(refusal(crate::refusal::Refusal::NotWriter));
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
        let status = answer.status();
        let body = match answer.bytes().await {
            Ok(body) => body,
            Err(error) => {
                return Sent::Answered(
                    ApiError::from(crate::refusal::Refusal::Unconfirmed)
                        .with(
                            "reason",
                            format!("the writer's answer was cut off: {error}"),
                        )
                        .into_response(),
                )
            }
        };
        if let Some(head) = head {
            self.engine.wait_for_head(head, CATCH_UP_WAIT).await;
        }
        // The writer answered, so a request it wrote is written: a failure to pass its
        // answer on must not say that nothing was.
        let response = response.body(Body::from(body.clone())).unwrap_or_else(|_| {
            ApiError::from(crate::refusal::Refusal::Unconfirmed).into_response()
        });
        // A node that lost the lease since this one looked refuses it the same way.
        match is_not_writer(status, &body) {
            true => Sent::NotTaken(response),
            false => Sent::Answered(response),
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
    let mut response = next
        .run(Request::from_parts(parts.clone(), Body::from(body.clone())))
        .await;
    if response.extensions().get::<NotWriterAnswer>().is_none() {
        return response;
    }
    // Until the deadline, a request no writer took (one that died and still holds its
    // lease, one that was just deposed) goes to the writer of the moment again: nothing
    // of it was written, so sending it again cannot write it twice.
    let deadline = tokio::time::Instant::now() + WRITER_WAIT;
    while let Some(writer) = forwarder.writer(deadline).await {
        match forwarder.send(&writer, &parts, body.clone()).await {
            Sent::Answered(answer) => return answer,
            Sent::NotTaken(answer) => response = answer,
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    response
}

/// What became of a request sent to the writer.
enum Sent {
    /// Its answer, to pass on: the writer took the request (or may have).
    Answered(Response),
    /// The writer could not be reached, or no longer is the writer: nothing was written,
    /// and the request may go to the next writer. The answer, should none take it.
    NotTaken(Response),
}

/// Whether a writer's answer is the refusal of a node that is not the writer.
fn is_not_writer(status: axum::http::StatusCode, body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Refused<'a> {
        #[serde(borrow)]
        error: Code<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Code<'a> {
        code: &'a str,
    }
    status == axum::http::StatusCode::SERVICE_UNAVAILABLE
        && serde_json::from_slice::<Refused>(body)
            .is_ok_and(|refused| refused.error.code == crate::refusal::NOT_WRITER)
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
