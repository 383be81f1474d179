//! One accepted connection: HTTP/1.1 served by hyper with the router as its service, and
//! a watchdog that closes the connection when a timeout runs out (issue #9, defect 1).
//!
//! hyper's own `header_read_timeout` starts when hyper begins waiting for a request head,
//! which on a kept-alive connection is as soon as the previous answer is sent: it cannot
//! tell a slow head from an idle connection, so it would close idle connections after the
//! header timeout. It stays off, and the watchdog measures both itself from what the
//! connection does:
//!
//! - no request in flight and no byte of a new one: the idle timeout;
//! - the first byte of a head read, the head not yet dispatched: the header timeout,
//!   counted from that byte (a slowloris client trickling header lines);
//! - a request in flight whose handler waits for body bytes: the idle timeout again,
//!   counted from the last byte read (a client that stops sending its body);
//! - a request in flight otherwise (an SSE stream, a lock `wait_ms`): no timeout.
//!
//! A request is in flight from the moment hyper dispatches its head until its answer's
//! body has been sent or dropped. During a shutdown a connection with no request in
//! flight is closed at once, and one with a request in flight is closed when its answer is
//! done (hyper sends that answer with `Connection: close`).
//!
//! When hyper is done with a connection (the client closed it, or an answer said
//! `Connection: close`), the server ends its sending side and reads what the client still
//! sends for a moment before it closes ([`super::linger`]): a 413 answered before a
//! too-large body was read would otherwise be lost in the reset that closing on unread
//! bytes causes. A connection closed by a timeout or at the shutdown deadline is closed at
//! once.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tower::ServiceExt;

use super::framing::FramingCheck;
use super::{NetworkConfig, NetworkStats, Phase};
use crate::error::ApiError;
use crate::limits::{REQUEST_HEADERS_MAX, REQUEST_HEAD_BYTES_MAX};

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No request for the idle timeout.
    Idle,
    /// A head not complete within the header timeout.
    Head,
    /// A request body with no byte for the idle timeout.
    BodyStalled,
    /// The server shuts down and no request is in flight.
    Draining,
}

/// What the watchdog watches, updated by the socket, the service and the bodies.
#[derive(Debug)]
struct Activity {
    /// Requests dispatched and not yet answered in full (one at a time in HTTP/1.1).
    in_flight: usize,
    /// Whether the handler of the request in flight waits for body bytes that have not
    /// come (its last poll of the body found none).
    body_wanted: bool,
    /// When the handler began to wait for body bytes.
    body_wanted_since: Instant,
    /// When the connection last had no request in flight.
    idle_since: Instant,
    /// When the first byte of the next head arrived, if one did.
    head_started: Option<Instant>,
    /// When the last byte was read.
    last_read: Instant,
    /// Requests dispatched so far: the index of the next one.
    dispatched: u64,
    /// The index of a request with both `Content-Length` and `Transfer-Encoding`.
    ambiguous_head: Option<u64>,
    /// Set once the server shuts down.
    draining: bool,
}

/// The state one connection's socket, service, bodies and watchdog share.
#[derive(Debug)]
struct Shared {
    activity: Mutex<Activity>,
    /// Wakes the watchdog when a deadline may have moved closer or gone.
    changed: Notify,
}

impl Shared {
    fn new() -> Self {
        let now = Instant::now();
        Shared {
            activity: Mutex::new(Activity {
                in_flight: 0,
                body_wanted: false,
                body_wanted_since: now,
                idle_since: now,
                head_started: None,
                last_read: now,
                dispatched: 0,
                ambiguous_head: None,
                draining: false,
            }),
            changed: Notify::new(),
        }
    }

    fn activity(&self) -> MutexGuard<'_, Activity> {
        // The lock only guards plain field updates, which cannot panic halfway.
        self.activity
            .lock()
            .expect("the activity lock is never held across a panic")
    }

    /// Bytes arrived: the start of a head when no request is in flight.
    fn on_read(&self, ambiguous_head: Option<u64>) {
        let mut activity = self.activity();
        let now = Instant::now();
        activity.last_read = now;
        if activity.ambiguous_head.is_none() {
            activity.ambiguous_head = ambiguous_head;
        }
        if activity.in_flight == 0 && activity.head_started.is_none() {
            activity.head_started = Some(now);
            drop(activity);
            self.changed.notify_one();
        }
    }

    /// hyper dispatched a request; returns its index.
    fn begin_request(&self) -> u64 {
        let mut activity = self.activity();
        activity.in_flight += 1;
        activity.head_started = None;
        activity.body_wanted = false;
        let index = activity.dispatched;
        activity.dispatched += 1;
        drop(activity);
        self.changed.notify_one();
        index
    }

    /// The handler polled the body: `wanted` when it found no bytes and waits for more.
    fn body_polled(&self, wanted: bool) {
        let mut activity = self.activity();
        let began = wanted && !activity.body_wanted;
        activity.body_wanted = wanted;
        if began {
            // The stall counts from here at the earliest: hyper reads a body only while
            // its handler asks for it.
            activity.body_wanted_since = Instant::now();
            drop(activity);
            self.changed.notify_one();
        }
    }

    fn end_request(&self) {
        let mut activity = self.activity();
        assert!(activity.in_flight > 0, "a request ends after it began");
        activity.in_flight -= 1;
        if activity.in_flight == 0 {
            activity.idle_since = Instant::now();
            activity.body_wanted = false;
        }
        drop(activity);
        self.changed.notify_one();
    }

    fn is_ambiguous(&self, index: u64) -> bool {
        self.activity().ambiguous_head == Some(index)
    }

    fn begin_draining(&self) {
        self.activity().draining = true;
        self.changed.notify_one();
    }

    /// The next deadline and what runs out at it; `None` while nothing can expire.
    fn deadline(&self, config: &NetworkConfig) -> Option<(Instant, Expiry)> {
        let activity = self.activity();
        if activity.in_flight > 0 {
            return activity.body_wanted.then(|| {
                (
                    activity.last_read.max(activity.body_wanted_since) + config.idle_timeout,
                    Expiry::BodyStalled,
                )
            });
        }
        if activity.draining {
            return Some((Instant::now(), Expiry::Draining));
        }
        Some(match activity.head_started {
            Some(started) => (started + config.header_timeout, Expiry::Head),
            None => (activity.idle_since + config.idle_timeout, Expiry::Idle),
        })
    }
}

/// Resolves when a timeout of the connection runs out.
async fn watchdog(shared: &Shared, config: &NetworkConfig) -> Expiry {
    loop {
        // A notification between computing the deadline and waiting is kept as a permit
        // (`notify_one`), so the wait below ends at once and nothing is missed.
        match shared.deadline(config) {
            None => shared.changed.notified().await,
            Some((deadline, expiry)) => {
                if deadline <= Instant::now() {
                    return expiry;
                }
                tokio::select! {
                    () = shared.changed.notified() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
    }
}

/// Serves one connection until the client closes it, a timeout runs out, or the shutdown
/// drops it. `permit` is its place under the connection cap, given back at the end.
pub(super) async fn serve(
    stream: TcpStream,
    router: Router,
    config: NetworkConfig,
    mut phase: watch::Receiver<Phase>,
    stats: Arc<NetworkStats>,
    permit: OwnedSemaphorePermit,
) {
    let shared = Arc::new(Shared::new());
    let io = TokioIo::new(Tracked {
        stream,
        shared: shared.clone(),
        framing: FramingCheck::new(),
    });
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        // Boxed so that the connection is Unpin and can be polled without shutting down.
        let answer: Pin<Box<dyn Future<Output = _> + Send>> =
            Box::pin(handle(router.clone(), service_shared.clone(), request));
        answer
    });
    let mut connection = hyper::server::conn::http1::Builder::new()
        // Off: see the module comment; the watchdog measures the header timeout.
        .header_read_timeout(None)
        // A client that shuts down its sending side after a complete request still gets
        // the answer.
        .half_close(true)
        // The framing check follows heads of this size, and hyper refuses longer ones
        // (431), complete or not.
        .max_header_size(REQUEST_HEAD_BYTES_MAX)
        .max_headers(REQUEST_HEADERS_MAX)
        .serve_connection(io, service);
    let watchdog = watchdog(&shared, &config);
    tokio::pin!(watchdog);
    let mut draining = false;
    let finished = loop {
        tokio::select! {
            result = std::future::poll_fn(|context| connection.poll_without_shutdown(context)) => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                break true;
            }
            expiry = &mut watchdog => {
                tracing::debug!(?expiry, "closing the connection");
                if expiry != Expiry::Draining {
                    stats.record_expiry();
                }
                break false;
            }
            changed = phase.changed() => {
                let phase = changed.map_or(Phase::Closing, |()| *phase.borrow_and_update());
                match phase {
                    Phase::Serving => {}
                    Phase::Draining if !draining => {
                        draining = true;
                        shared.begin_draining();
                        Pin::new(&mut connection).graceful_shutdown();
                    }
                    Phase::Draining => {}
                    Phase::Closing => break false,
                }
            }
        }
    };
    if finished {
        // hyper is done with the connection: its last answer is sent, and the client may
        // still be sending (a body refused before it was read).
        let stream = connection.into_parts().io.into_inner().stream;
        tokio::select! {
            () = super::linger(stream) => {}
            () = closing(&mut phase) => {}
        }
    }
    drop(permit);
}

/// Resolves when the shutdown deadline passes.
async fn closing(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|phase| *phase == Phase::Closing).await;
}

/// Answers one request: the framing refusals first, then the router.
async fn handle(
    router: Router,
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Answer>, Infallible> {
    let index = shared.begin_request();
    let guard = InFlight(shared.clone());
    let limit = swarmlog_projections::limits::current().request_body_bytes_max;
    let refusal = if shared.is_ambiguous(index) {
        Some(ApiError::ambiguous_length())
    } else if content_length(&request).is_some_and(|length| length > limit as u64) {
        // Answered before the body is read, so hyper never sends `100 Continue` for it.
        Some(ApiError::payload_too_large(limit))
    } else {
        None
    };
    let response = match refusal {
        Some(error) => {
            drop(request);
            let mut response = error.into_response();
            // The body was not read, so the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        None => {
            let request = request.map(|body| {
                Body::new(Upload {
                    body,
                    shared: shared.clone(),
                })
            });
            match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    };
    Ok(response.map(|body| Answer {
        body,
        _in_flight: guard,
    }))
}

/// The `Content-Length` of a request, as hyper validated it.
fn content_length(request: &Request<Incoming>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// An answer's body; the request stays in flight until hyper has sent or dropped it.
pub(super) struct Answer {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that tells the watchdog whether its handler waits for bytes.
struct Upload {
    body: Incoming,
    shared: Arc<Shared>,
}

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(context);
        self.shared.body_polled(frame.is_pending());
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.shared.body_polled(false);
    }
}

/// The socket, reporting every byte read to the watchdog and the framing check.
struct Tracked {
    stream: TcpStream,
    shared: Arc<Shared>,
    framing: FramingCheck,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buffer.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(context, buffer);
        let read = &buffer.filled()[before..];
        if matches!(result, Poll::Ready(Ok(()))) && !read.is_empty() {
            let this = &mut *self;
            let ambiguous = this.framing.observe(read);
            this.shared.on_read(ambiguous);
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(context, bytes)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}
