//! How a command reaches swarmlog: over HTTP to a server, or in-process on a data
//! directory. Both go through the same router, so a command behaves the same either way.
//!
//! In-process, the engine holds the directory's exclusive file lock only while one request
//! is being processed: each request opens the log, is answered, and closes it again. A
//! client kept open for hours (the MCP server) therefore never blocks other processes
//! while idle. A request that may wait (`wait_ms` on a task claim or a lock acquire) does
//! not wait inside the engine, where it would hold the lock for the whole wait: it is sent
//! with `wait_ms: 0`, and while the answer is "nothing yet" the client closes the log,
//! polls the log directory for another process's commit ([`wait_for_commit`]) and tries
//! again until the wait's deadline. Waiters in different processes therefore poll: FIFO
//! order and deadlock detection among them need a server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::Value;
use swarmlog_server::{Engine, EngineConfig, SERVER_ADDRESS_FILE};

use super::CliError;

/// An in-process command writes a snapshot on close only after this many events since
/// the last one: often enough that opening stays fast, rarely enough that a command does
/// not rewrite the whole state each time.
const IN_PROCESS_SNAPSHOT_MIN_EVENTS: u64 = 1000;

/// How often a local waiter looks at the log directory for another process's commit:
/// short enough that a claim follows a create within a few tens of milliseconds, long
/// enough that a waiter costs next to nothing (one directory listing and one stat).
pub const COMMIT_POLL_INTERVAL_MS: u64 = 20;

/// A local waiter retries at least this often even when nothing was committed, because
/// timers (a lock's TTL, a claim lease) are only evaluated when some command opens the log.
pub const COMMIT_RECHECK_INTERVAL_MS: u64 = 250;

/// Where commands go.
pub enum Client {
    /// A running server.
    Remote {
        /// The HTTP client.
        http: reqwest::Client,
        /// `http://host:port` without a trailing slash.
        base: String,
        /// Bearer token, if any.
        token: Option<String>,
    },
    /// A data directory opened in this process for each request, and closed in between.
    Local {
        /// The data directory.
        db: PathBuf,
    },
}

/// A response: status and a body that can be read whole or as a stream.
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body chunks.
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, CliError>> + Send>>,
}

impl Reply {
    /// Reads the whole body.
    pub async fn bytes(mut self) -> Result<Bytes, CliError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(Bytes::from(out))
    }

    /// Reads the body as JSON; a non-2xx status becomes the matching [`CliError`].
    pub async fn json(self) -> Result<Value, CliError> {
        let status = self.status;
        let bytes = self.bytes().await?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|error| {
                CliError::failure(format!(
                    "the server answered {status} with a body that is not JSON: {error}"
                ))
            })?
        };
        if status.is_success() {
            Ok(value)
        } else {
            Err(CliError::from_api(status, &value))
        }
    }

    fn buffered(status: StatusCode, body: Bytes) -> Reply {
        Reply {
            status,
            body: Box::pin(futures::stream::once(async move { Ok(body) })),
        }
    }
}

/// The whole answer to one in-process request, with the log directory's change token as
/// it was when the request was answered (still under the directory's lock), so a waiter
/// can tell any later commit from this one.
pub struct LocalAnswer {
    /// The HTTP status the router answered.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
    /// The log directory's change token right after the answer.
    pub token: ChangeToken,
}

impl LocalAnswer {
    /// The `error.code` of an error answer, if it has one.
    pub fn error_code(&self) -> Option<String> {
        let value: Value = serde_json::from_slice(&self.body).ok()?;
        value["error"]["code"].as_str().map(str::to_owned)
    }

    /// Whether this is the "nothing yet" of a request that may wait: 204 (no task to
    /// claim) or 409 `lock_held`.
    pub fn is_nothing_yet(&self) -> bool {
        self.status == StatusCode::NO_CONTENT
            || (self.status == StatusCode::CONFLICT
                && self.error_code().as_deref() == Some("lock_held"))
    }
}

/// A cheap summary of the newest commit in a data directory: the newest segment's name,
/// modification time (nanoseconds) and length. Segments are preallocated, so the length
/// alone does not move; the modification time does on every append. Two tokens differ when
/// something was committed between them (or the coarse file-system clock may hide two
/// commits within one tick, which the periodic recheck covers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeToken {
    newest_segment: Option<(String, u128, u64)>,
}

impl ChangeToken {
    /// The token of `db` now (an empty token when it has no log yet).
    pub fn of(db: &Path) -> ChangeToken {
        let log_dir = swarmlog_server::engine::log_dir(db);
        let Ok(entries) = std::fs::read_dir(&log_dir) else {
            return ChangeToken::default();
        };
        let newest = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".seg"))
            .max();
        let newest_segment = newest.and_then(|name| {
            let metadata = std::fs::metadata(log_dir.join(&name)).ok()?;
            let modified_ns = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_nanos());
            Some((name, modified_ns, metadata.len()))
        });
        ChangeToken { newest_segment }
    }
}

/// Waits until another process commits to `db` (its [`ChangeToken`] moves away from
/// `since`), or [`COMMIT_RECHECK_INTERVAL_MS`] passed, or `deadline` came, polling every
/// [`COMMIT_POLL_INTERVAL_MS`]. Holds no lock. Returns whether a commit was seen; either
/// way the caller should look again (reopen and retry) unless its deadline passed.
pub async fn wait_for_commit(db: &Path, since: &ChangeToken, deadline: Instant) -> bool {
    let recheck = Instant::now() + Duration::from_millis(COMMIT_RECHECK_INTERVAL_MS);
    let until = recheck.min(deadline);
    loop {
        if ChangeToken::of(db) != *since {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        let pause = Duration::from_millis(COMMIT_POLL_INTERVAL_MS).min(until - now);
        tokio::time::sleep(pause).await;
    }
}

/// The engine and router of one in-process request.
struct OpenLog {
    engine: Engine,
    router: axum::Router,
}

impl OpenLog {
    /// Opens (creating if need be) `db`, waiting for its lock if another process holds it.
    async fn open(db: &Path) -> Result<OpenLog, CliError> {
        let config = EngineConfig {
            lock_wait: true,
            shutdown_snapshot_min_events: IN_PROCESS_SNAPSHOT_MIN_EVENTS,
            restart_leases_on_open: false,
            ..EngineConfig::new(db.to_path_buf())
        };
        // Waiting for the directory lock blocks the thread, so not on the runtime's own.
        let engine = tokio::task::spawn_blocking(move || Engine::start(config))
            .await
            .map_err(|error| CliError::failure(format!("cannot open the log: {error}")))?
            .map_err(|error| CliError::failure(format!("cannot open {}: {error}", db.display())))?;
        let router = swarmlog_server::router(engine.clone());
        Ok(OpenLog { engine, router })
    }

    /// Shuts the engine down; when this returns the directory's lock is released.
    async fn close(self) {
        drop(self.router);
        self.engine.shutdown().await;
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<axum::response::Response, CliError> {
        swarmlog_server::app::call_in_process(&self.router, method, path_and_query, body, headers)
            .await
            .map_err(CliError::usage)
    }
}

/// Sends one request to `db` in-process, holding the directory's lock only while it is
/// processed: opens the log, answers, reads the whole body, takes the change token and
/// closes the log. Waits inside the engine like a server would (use
/// [`local_request_waiting`] to wait without holding the lock).
pub async fn local_request(
    db: &Path,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
    headers: &[(&str, String)],
) -> Result<LocalAnswer, CliError> {
    let open = OpenLog::open(db).await?;
    let answered = async {
        let response = open.send(method, path_and_query, body, headers).await?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|error| CliError::failure(format!("response failed: {error}")))?;
        Ok::<_, CliError>((status, bytes))
    }
    .await;
    let token = ChangeToken::of(db);
    open.close().await;
    let (status, body) = answered?;
    Ok(LocalAnswer {
        status,
        body,
        token,
    })
}

/// The wait a request body asks for, when the client should do the waiting itself:
/// `wait_ms` from 1 to the server's maximum (a value outside that range is sent as is,
/// for the router to refuse).
fn client_side_wait(body: Option<&Value>) -> Option<Duration> {
    let wait_ms = body?.get("wait_ms")?.as_u64()?;
    (1..=swarmlog_server::limits::WAIT_MS_MAX)
        .contains(&wait_ms)
        .then(|| Duration::from_millis(wait_ms))
}

/// Like [`local_request`], but a body with `wait_ms > 0` is sent with `wait_ms: 0`, and
/// while the answer is "nothing yet" ([`LocalAnswer::is_nothing_yet`]) the log is closed,
/// the client waits for another process's commit ([`wait_for_commit`]) and tries again,
/// until the wait's deadline; then it answers what a server would (204, 409 `lock_held`).
pub async fn local_request_waiting(
    db: &Path,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
    headers: &[(&str, String)],
) -> Result<LocalAnswer, CliError> {
    let Some(wait) = client_side_wait(body) else {
        return local_request(db, method, path_and_query, body, headers).await;
    };
    let deadline = Instant::now() + wait;
    let mut body = body.cloned().unwrap_or(Value::Null);
    body["wait_ms"] = Value::from(0);
    loop {
        let answer =
            local_request(db, method.clone(), path_and_query, Some(&body), headers).await?;
        if !answer.is_nothing_yet() || Instant::now() >= deadline {
            return Ok(answer);
        }
        wait_for_commit(db, &answer.token, deadline).await;
    }
}

impl Client {
    /// Connects to `url`, or to the server serving `db`, or uses `db` in-process (opened
    /// per request).
    pub async fn connect(
        url: Option<&str>,
        db: &Path,
        token: Option<String>,
    ) -> Result<Client, CliError> {
        if let Some(url) = url {
            return Ok(Client::remote(url, token));
        }
        if let Some(url) = serving_url(db).await {
            return Ok(Client::remote(&url, token));
        }
        Ok(Client::Local {
            db: db.to_path_buf(),
        })
    }

    fn remote(url: &str, token: Option<String>) -> Client {
        Client::Remote {
            http: reqwest::Client::new(),
            base: url.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// Whether the commands go to a server.
    pub fn is_remote(&self) -> bool {
        matches!(self, Client::Remote { .. })
    }

    /// Sends a request; `headers` are extra (name, value) pairs. In-process, a read
    /// (`GET`) of a directory that holds no log is refused and creates nothing.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Reply, CliError> {
        match self {
            Client::Remote { http, base, token } => {
                let mut request = http.request(method, format!("{base}{path_and_query}"));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                for (name, value) in headers {
                    request = request.header(*name, value);
                }
                if let Some(body) = body {
                    request = request
                        .header("content-type", "application/json")
                        .body(body.to_string());
                }
                let response = request.send().await.map_err(|error| {
                    CliError::failure(format!("cannot reach the server at {base}: {error}"))
                })?;
                let status = StatusCode::from_u16(response.status().as_u16())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let body = response.bytes_stream().map_err(|error| {
                    CliError::failure(format!("the connection to the server broke: {error}"))
                });
                Ok(Reply {
                    status,
                    body: Box::pin(body),
                })
            }
            Client::Local { db } => {
                if method == Method::GET {
                    require_log(db)?;
                }
                if method == Method::GET {
                    return local_streaming(db, method, path_and_query, headers).await;
                }
                // A write's answer is small: read it whole, so the log is closed (and a
                // snapshot possibly written) before the command goes on.
                let answer =
                    local_request_waiting(db, method, path_and_query, body, headers).await?;
                Ok(Reply::buffered(answer.status, answer.body))
            }
        }
    }

    /// Sends a request and returns its JSON answer (or the matching error).
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        self.send(method, path_and_query, body, &[])
            .await?
            .json()
            .await
    }

    /// Ends the client. In-process nothing is open between requests, so this only exists
    /// to make the end of a command explicit.
    pub async fn close(self) {}
}

/// A read of `db` that has no log fails with a sentence naming the directory, instead of
/// creating an empty database there.
pub fn require_log(db: &Path) -> Result<(), CliError> {
    if swarmlog_server::engine::log_dir(db).is_dir() {
        return Ok(());
    }
    Err(CliError::failure(format!(
        "no swarmlog data in {} (no log/ directory); writes create it, or pass --db DIR / --url URL",
        db.display()
    )))
}

/// One in-process read whose body is streamed (an NDJSON replay can be larger than
/// memory): the log stays open until the body has been read to its end, then closes. A
/// reply dropped before its end drops the engine, which closes the log as its thread ends.
async fn local_streaming(
    db: &Path,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, String)],
) -> Result<Reply, CliError> {
    let open = OpenLog::open(db).await?;
    let response = match open.send(method, path_and_query, None, headers).await {
        Ok(response) => response,
        Err(error) => {
            open.close().await;
            return Err(error);
        }
    };
    let status = response.status();
    let chunks = response
        .into_body()
        .into_data_stream()
        .map_err(|error| CliError::failure(format!("response failed: {error}")));
    let closing = futures::stream::once(open.close()).filter_map(|()| async { None });
    Ok(Reply {
        status,
        body: Box::pin(chunks.chain(closing)),
    })
}

/// The URL recorded by a server serving `db`, if that server answers. A record left by a
/// server that died is detected (nothing answers) and ignored.
pub async fn serving_url(db: &Path) -> Option<String> {
    let text = std::fs::read_to_string(db.join(SERVER_ADDRESS_FILE)).ok()?;
    let url = text.lines().next()?.trim().to_owned();
    let address = url.strip_prefix("http://")?;
    let connect = tokio::net::TcpStream::connect(address.to_owned());
    match tokio::time::timeout(Duration::from_millis(500), connect).await {
        Ok(Ok(_)) => Some(url),
        _ => None,
    }
}

/// The default data directory.
pub fn default_db() -> PathBuf {
    PathBuf::from("./data")
}

/// Percent-encodes one path segment: the catalog's encoding, so the CLI and MCP agree.
pub use swarmlog_server::catalog::percent_encode as encode_segment;
