//! `swarmlog mcp` (an MCP server on stdio, SPEC §7), `swarmlog guide` and `swarmlog call`:
//! the adapters of the command catalog that run in the client process.
//!
//! `mcp --db DIR` opens the data directory only for the length of each request (through
//! [`client::local_request`]), so that many MCP processes share one directory and none
//! holds its lock while idle or waiting; a waiting tool watches the log for commits made
//! by any process. `mcp --url` talks to a server.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::Method as HttpMethod;
use futures::future::BoxFuture;
use rmcp::ServiceExt;
use serde_json::{Map, Value};
use swarmlog_server::catalog::{self, HttpCall, Method};
use swarmlog_server::mcp::{Answer, Backend, McpServer};

use super::client::{self, ChangeToken, Client, Reply};
use super::{CliError, Config};

/// How often a remote waiting tool asks the server for its head.
const REMOTE_HEAD_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// `--db DIR` with no server: each request opens the directory, and is then closed.
struct LocalBackend {
    db: PathBuf,
    /// The log's change token after the last answer, for `wait_for_commit`.
    seen: Mutex<ChangeToken>,
}

impl Backend for LocalBackend {
    fn send<'a>(
        &'a self,
        call: HttpCall,
        _authorization: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Answer, String>> {
        Box::pin(async move {
            let method = call.method;
            let answer = client::local_request(
                &self.db,
                method.http(),
                &call.path_and_query,
                call.body.as_ref(),
                &[],
            )
            .await
            .map_err(|error| format!("internal: {}", error.message))?;
            // A waiting tool waits from what its last read saw; a keep-alive in between
            // must not move that mark past another process's commit.
            if method == Method::Get {
                *self.seen.lock().expect("never held across a panic") = answer.token.clone();
            }
            Ok(Answer {
                status: answer.status.as_u16(),
                body: answer.body,
            })
        })
    }

    /// Watches the log directory from the change token of the last read, which was taken
    /// under the directory's lock, so `head` is not needed.
    fn wait_for_commit(&self, _head: u64, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let since = self.seen.lock().expect("never held across a panic").clone();
            client::wait_for_commit(&self.db, &since, deadline).await;
        })
    }

    fn heartbeats_are_registrations(&self) -> bool {
        true
    }
}

/// A server, at `--url` or the one serving `--db`.
struct RemoteBackend {
    client: Client,
}

impl Backend for RemoteBackend {
    fn send<'a>(
        &'a self,
        call: HttpCall,
        _authorization: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Answer, String>> {
        Box::pin(async move {
            let reply = self
                .client
                .send(
                    call.method.http(),
                    &call.path_and_query,
                    call.body.as_ref(),
                    &[],
                )
                .await
                .map_err(|error| format!("unavailable: {}", error.message))?;
            answer_of(reply).await
        })
    }

    fn wait_for_commit(&self, head: u64, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let current = || async {
                let reply = self
                    .client
                    .send(HttpMethod::GET, "/v1/audit/head", None, &[])
                    .await
                    .ok()?;
                let answer = answer_of(reply).await.ok()?;
                serde_json::from_slice::<Value>(&answer.body).ok()?["seq"].as_u64()
            };
            while Instant::now() < deadline {
                if current().await.is_some_and(|seq| seq > head) {
                    return;
                }
                tokio::time::sleep(
                    REMOTE_HEAD_POLL_INTERVAL
                        .min(deadline.saturating_duration_since(Instant::now())),
                )
                .await;
            }
        })
    }
}

async fn answer_of(reply: Reply) -> Result<Answer, String> {
    let status = reply.status.as_u16();
    let body = reply
        .bytes()
        .await
        .map_err(|error| format!("unavailable: {}", error.message))?;
    Ok(Answer { status, body })
}

/// The backend for the global flags: `--url`, the server serving `--db`, or `--db` itself.
async fn backend(config: &Config) -> Arc<dyn Backend> {
    let url = match &config.url {
        Some(url) => Some(url.clone()),
        None => client::serving_url(&config.db).await,
    };
    match url {
        Some(url) => Arc::new(RemoteBackend {
            client: Client::connect(Some(&url), &config.db, config.token.clone())
                .await
                .expect("connecting to a URL opens nothing and cannot fail"),
        }),
        None => Arc::new(LocalBackend {
            db: config.db.clone(),
            seen: Mutex::new(ChangeToken::of(&config.db)),
        }),
    }
}

/// `swarmlog mcp`: serves MCP on stdin/stdout until the client closes it, then
/// deregisters the joined agent.
pub async fn serve(config: &Config, agent: Option<String>) -> Result<(), CliError> {
    if let Some(agent) = &agent {
        swarmlog_projections::rejection::check_id("--agent", agent)
            .map_err(|rejection| CliError::usage(rejection.message))?;
    }
    let backend = backend(config).await;
    // Through a server with a token, the token's agent is the caller (SPEC §7).
    let agent = match (agent, &config.token) {
        (None, Some(_)) => token_agent(&*backend).await?,
        (agent, _) => agent,
    };
    let server = McpServer::new(backend, agent);
    let running = server
        .clone()
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|error| CliError::failure(format!("cannot start MCP on stdio: {error}")))?;
    let _ = running.waiting().await;
    server.close().await;
    Ok(())
}

/// The agent the server says the token names, if any.
async fn token_agent(backend: &dyn Backend) -> Result<Option<String>, CliError> {
    let call = HttpCall {
        method: Method::Get,
        path_and_query: "/v1/whoami".into(),
        body: None,
    };
    let answer = backend.send(call, None).await.map_err(CliError::failure)?;
    if answer.status == 401 {
        return Err(CliError::failure(
            "the server refused the token (401 unauthorized)",
        ));
    }
    let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    Ok(value["agent"].as_str().map(str::to_owned))
}

/// `swarmlog guide`: the agent guide, as `GET /v1/guide` and `swarmlog://guide` serve it.
pub fn guide() {
    print!("{}", swarmlog_server::app::GUIDE);
}

/// `swarmlog call NAME [JSON]`: any catalog operation by name, with its arguments as one
/// JSON object (path parameters included); prints the JSON answer.
pub async fn call(config: &Config, name: &str, arguments: Option<&str>) -> Result<(), CliError> {
    let operation = catalog::find(name).ok_or_else(|| {
        let names: Vec<&str> = catalog::operations()
            .iter()
            .map(|operation| operation.name)
            .collect();
        CliError::usage(format!(
            "no operation named '{name}'; the operations are: {}",
            names.join(", ")
        ))
    })?;
    let arguments: Map<String, Value> = match arguments {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(object)) => object,
            _ => {
                return Err(CliError::usage(format!(
                    "the arguments of {name} must be one JSON object, not '{text}'"
                )))
            }
        },
    };
    let call = operation
        .http_request(&arguments)
        .map_err(|message| CliError::usage(format!("{name}: {message}")))?;
    let client = Client::connect(config.url.as_deref(), &config.db, config.token.clone()).await?;
    let reply = client
        .send(
            call.method.http(),
            &with_branch(config, &call.path_and_query),
            call.body.as_ref(),
            &[],
        )
        .await?;
    let status = reply.status;
    let body = reply.bytes().await?;
    client.close().await;
    if status.as_u16() == 204 {
        return Err(CliError {
            exit: super::Exit::NotFound,
            message: format!("{name}: nothing to answer (HTTP 204)"),
        });
    }
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        return Err(CliError::from_api(status, &value));
    }
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn with_branch(config: &Config, path_and_query: &str) -> String {
    match &config.branch {
        None => path_and_query.to_owned(),
        Some(branch) => {
            let separator = if path_and_query.contains('?') {
                '&'
            } else {
                '?'
            };
            format!(
                "{path_and_query}{separator}branch={}",
                catalog::percent_encode(branch)
            )
        }
    }
}
