//! The network edge: swarmlog's own accept loop over hyper's HTTP/1.1 connections, with
//! the axum router as the service (issue #9, defects 1, 2 and 11).
//!
//! It adds what `axum::serve` does not have: header and idle timeouts
//! ([`connection`]), a cap on open connections answered with a 503 past it, a back-off
//! when `accept` runs out of file descriptors, a descriptor reserve for the log
//! ([`descriptors`]), a shutdown with a deadline, and the refusal of requests whose length
//! is ambiguous or announced over the body limit ([`framing`]).
//!
//! Only HTTP/1.1 (and 1.0) is served: every client of swarmlog speaks it, and HTTP/2
//! without TLS (h2c) would need its own set of these defences.

pub mod descriptors;

mod connection;
mod framing;

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::error::ApiError;
use crate::limits::{
    ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, CLOSE_DRAIN_BYTES_MAX, CLOSE_LINGER,
    CONNECTIONS_MAX_DEFAULT, CONNECTIONS_MAX_LIMIT, HEADER_TIMEOUT_DEFAULT, IDLE_TIMEOUT_DEFAULT,
    REFUSALS_IN_FLIGHT_MAX, SHUTDOWN_DROP_WAIT, SHUTDOWN_TIMEOUT_DEFAULT, SUBSCRIBERS_MAX_DEFAULT,
};

/// The settings of the network edge (`serve`'s flags).
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// From a head's first byte to its blank line (`--header-timeout-ms`).
    pub header_timeout: Duration,
    /// With no request in flight, or no byte of an expected body (`--idle-timeout-ms`).
    pub idle_timeout: Duration,
    /// How long in-flight requests may finish after SIGTERM (`--shutdown-timeout-ms`).
    pub shutdown_timeout: Duration,
    /// Most open connections (`--max-connections`), before the descriptor limit lowers it.
    pub connections_max: NonZeroUsize,
    /// Most SSE subscriptions open at once (`--max-subscribers`).
    pub subscribers_max: NonZeroUsize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            header_timeout: HEADER_TIMEOUT_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            shutdown_timeout: SHUTDOWN_TIMEOUT_DEFAULT,
            connections_max: NonZeroUsize::new(CONNECTIONS_MAX_DEFAULT)
                .expect("the default connection cap is not zero"),
            subscribers_max: NonZeroUsize::new(SUBSCRIBERS_MAX_DEFAULT)
                .expect("the default subscription cap is not zero"),
        }
    }
}

/// Counters of the network edge, for logs, metrics and tests.
#[derive(Debug, Default)]
pub struct NetworkStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections refused because the cap was reached (answered 503 or closed).
    pub refused: AtomicU64,
    /// Connections closed by a timeout.
    pub expired: AtomicU64,
    /// Failed `accept` calls that made the loop back off (EMFILE, ENFILE, ...).
    pub accept_errors: AtomicU64,
    /// Connections still open at the shutdown deadline, dropped.
    pub dropped_at_shutdown: AtomicU64,
}

impl NetworkStats {
    fn record_expiry(&self) {
        self.expired.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the server is in its life, as every connection task sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepting and serving.
    Serving,
    /// Shutting down: finish what is in flight, then close.
    Draining,
    /// The shutdown deadline passed: close now.
    Closing,
}

/// Accepts connections on `listener` and serves `router` on each until `shutdown`
/// resolves; then stops accepting, lets in-flight requests finish for
/// `config.shutdown_timeout`, drops every connection still open, and returns.
/// `connections_max` is the cap to enforce (the configured one, lowered to what the
/// descriptor limit allows).
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    config: NetworkConfig,
    connections_max: NonZeroUsize,
    stats: Arc<NetworkStats>,
    shutdown: impl Future<Output = ()>,
) {
    let connections_max = connections_max.get();
    assert!(
        connections_max <= CONNECTIONS_MAX_LIMIT,
        "the connection cap is validated to at most {CONNECTIONS_MAX_LIMIT}"
    );
    let connections = Arc::new(Semaphore::new(connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT_MAX));
    let (phase, phase_receiver) = watch::channel(Phase::Serving);
    let accept = Accept {
        router,
        config: config.clone(),
        connections: connections.clone(),
        connections_max,
        refusals,
        phase: phase_receiver,
        stats: stats.clone(),
    };
    accept.run(listener, shutdown).await;
    drain(&connections, connections_max, &config, &phase, &stats).await;
}

/// The accept loop's state.
struct Accept {
    router: Router,
    config: NetworkConfig,
    /// One permit per connection under the cap.
    connections: Arc<Semaphore>,
    connections_max: usize,
    /// One permit per refusal being answered.
    refusals: Arc<Semaphore>,
    phase: watch::Receiver<Phase>,
    stats: Arc<NetworkStats>,
}

impl Accept {
    /// Accepts until `shutdown` resolves; the listener is closed on return.
    async fn run(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff: Option<Duration> = None;
        let mut refusing = false;
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => return,
                accepted = listener.accept() => accepted,
            };
            let error = match accepted {
                Ok((stream, _peer)) => {
                    if backoff.take().is_some() {
                        tracing::info!("accepting connections again");
                    }
                    refusing = self.admit(stream, refusing);
                    continue;
                }
                Err(error) => error,
            };
            if is_connection_error(&error) {
                // The peer gave up before we accepted; nothing is wrong with the listener.
                continue;
            }
            self.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
            let pause = match backoff {
                None => {
                    log_accept_error(&error);
                    ACCEPT_BACKOFF_MIN
                }
                Some(pause) => (pause * 2).min(ACCEPT_BACKOFF_MAX),
            };
            backoff = Some(pause);
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Serves `stream` if the cap allows, else refuses it; returns whether the server is
    /// refusing connections now (to log the change once, not every refusal).
    fn admit(&self, stream: TcpStream, refusing: bool) -> bool {
        // Answers are small and each client waits for its answer: send them at once.
        let _ = stream.set_nodelay(true);
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            if !refusing {
                tracing::warn!(
                    limit = self.connections_max,
                    "connection cap reached: refusing new connections with 503 too_many_connections"
                );
            }
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            if let Ok(refusal) = self.refusals.clone().try_acquire_owned() {
                let limit = self.connections_max;
                tokio::spawn(async move {
                    refuse(stream, limit).await;
                    drop(refusal);
                });
            }
            // Past REFUSALS_IN_FLIGHT_MAX the stream is dropped here: closed unanswered.
            return true;
        };
        if refusing {
            tracing::info!("accepting connections again: below the connection cap");
        }
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection::serve(
            stream,
            self.router.clone(),
            self.config.clone(),
            self.phase.clone(),
            self.stats.clone(),
            permit,
        ));
        false
    }
}

/// Lets the connections finish their requests for the shutdown timeout, then drops the
/// rest; returns when every connection is gone (or, at worst, shortly after the drop).
async fn drain(
    connections: &Arc<Semaphore>,
    connections_max: usize,
    config: &NetworkConfig,
    phase: &watch::Sender<Phase>,
    stats: &NetworkStats,
) {
    // Every permit back means every connection task has ended.
    let all =
        u32::try_from(connections_max).expect("a cap of at most CONNECTIONS_MAX_LIMIT fits in u32");
    phase.send_replace(Phase::Draining);
    let open = connections_max - connections.available_permits();
    tracing::info!(open, "stopped accepting; letting in-flight requests finish");
    let finished = tokio::time::timeout(config.shutdown_timeout, connections.acquire_many(all));
    if finished.await.is_ok() {
        return;
    }
    let open = connections_max - connections.available_permits();
    stats
        .dropped_at_shutdown
        .fetch_add(open as u64, Ordering::Relaxed);
    tracing::warn!(
        open,
        timeout_ms = config.shutdown_timeout.as_millis() as u64,
        "shutdown deadline passed: dropping the connections still open"
    );
    phase.send_replace(Phase::Closing);
    let dropped = tokio::time::timeout(SHUTDOWN_DROP_WAIT, connections.acquire_many(all));
    if dropped.await.is_err() {
        tracing::warn!("some connections did not close in time; closing the log anyway");
    }
}

/// Errors of one incoming connection (the peer reset or gave up before `accept`), after
/// which the next `accept` works at once.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
            | ErrorKind::WouldBlock
    )
}

fn log_accept_error(error: &std::io::Error) {
    #[cfg(unix)]
    let exhausted = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    #[cfg(not(unix))]
    let exhausted = false;
    if exhausted {
        tracing::warn!(%error, "out of file descriptors: cannot accept connections; backing off");
    } else {
        tracing::warn!(%error, "cannot accept connections; backing off");
    }
}

/// Answers a connection past the cap with 503 `too_many_connections`, then closes it.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let body = ApiError::too_many_connections(limit).body().to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let sent = tokio::time::timeout(CLOSE_LINGER, stream.write_all(answer.as_bytes())).await;
    if matches!(sent, Ok(Ok(()))) {
        linger(stream).await;
    }
}

/// Closes a connection after its last answer: ends the sending side, then reads and drops
/// what the client still sends until it closes, for at most [`CLOSE_LINGER`] and
/// [`CLOSE_DRAIN_BYTES_MAX`] (closing on unread bytes would reset the connection, and the
/// client could lose the answer before reading it).
pub(crate) async fn linger(mut stream: TcpStream) {
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        stream.shutdown().await?;
        let mut buffer = vec![0u8; 64 * 1024];
        let mut drained = 0;
        while drained < CLOSE_DRAIN_BYTES_MAX {
            match stream.read(&mut buffer).await? {
                0 => break,
                read => drained += read,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}
