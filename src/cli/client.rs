//! How a command reaches swarmlog: over HTTP to a server, or in-process on a data
//! directory. Both go through the same router, so a command behaves the same either way;
//! in-process the engine holds the directory's exclusive lock for the whole command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::Value;
use swarmlog_server::{Engine, EngineConfig, SERVER_ADDRESS_FILE};
use tower::ServiceExt;

use super::CliError;

/// An in-process command writes a snapshot on close only after this many events since
/// the last one: often enough that opening stays fast, rarely enough that a command does
/// not rewrite the whole state each time.
const IN_PROCESS_SNAPSHOT_MIN_EVENTS: u64 = 1000;

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
    /// The engine opened in this process.
    Local {
        /// The engine (kept to shut it down at the end).
        engine: Engine,
        /// The router over it.
        router: axum::Router,
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
}

impl Client {
    /// Connects to `url`, or to the server serving `db`, or opens `db` in-process.
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
        let engine = Engine::start(EngineConfig {
            lock_wait: true,
            shutdown_snapshot_min_events: IN_PROCESS_SNAPSHOT_MIN_EVENTS,
            ..EngineConfig::new(db.to_path_buf())
        })
        .map_err(|error| CliError::failure(format!("cannot open {}: {error}", db.display())))?;
        let router = swarmlog_server::router(engine.clone());
        Ok(Client::Local { engine, router })
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

    /// Sends a request; `headers` are extra (name, value) pairs.
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
            Client::Local { router, .. } => {
                let mut request = Request::builder().method(method).uri(path_and_query);
                for (name, value) in headers {
                    request = request.header(*name, value);
                }
                let request = request
                    .header("content-type", "application/json")
                    .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
                    .map_err(|error| CliError::usage(format!("invalid request: {error}")))?;
                let response = router
                    .clone()
                    .oneshot(request)
                    .await
                    .map_err(|error| CliError::failure(format!("request failed: {error}")))?;
                let status = response.status();
                let body = response
                    .into_body()
                    .into_data_stream()
                    .map_err(|error| CliError::failure(format!("response failed: {error}")));
                Ok(Reply {
                    status,
                    body: Box::pin(body),
                })
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

    /// Closes the in-process engine cleanly (a no-op for a server).
    pub async fn close(self) {
        if let Client::Local { engine, router } = self {
            drop(router);
            engine.shutdown().await;
        }
    }
}

/// The URL recorded by a server serving `db`, if that server answers. A record left by a
/// server that died is detected (nothing answers) and ignored.
async fn serving_url(db: &Path) -> Option<String> {
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

/// Percent-encodes one path segment.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
