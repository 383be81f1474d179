//! swarmlog's server: the single-writer engine (usable without HTTP), the subscriber hub,
//! the axum routes with SSE, and metrics. It is the only crate that knows HTTP.

pub mod answers;
pub mod app;
pub mod audit;
pub mod auth;
pub mod board;
pub mod catalog;
pub mod cluster;
mod committer;
pub mod engine;
pub mod error;
pub mod extract;
pub mod filter;
pub mod guard;
pub mod hub;
pub mod json;
pub mod limits;
pub mod mcp;
pub mod metrics;
pub mod net;
pub mod openapi;
mod published;
pub mod refusal;
pub mod routes;
pub mod snapshot;
pub mod space;
mod store;
pub mod stream_index;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use app::{router, router_with, RouterOptions};
pub use engine::{Engine, EngineConfig, EngineError};
pub use error::ApiError;
pub use net::NetworkConfig;

/// The file in a data directory that holds the address of the server serving it, so that a
/// command-line client given `--db DIR` can go through the server.
pub const SERVER_ADDRESS_FILE: &str = "server.addr";

/// Everything `swarmlog serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The engine's configuration.
    pub engine: EngineConfig,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The bearer-token file (`--tokens`); without it only loopback is allowed.
    pub tokens: Option<PathBuf>,
    /// Host names and web origins allowed besides the server's own (`--allow-host`,
    /// `--allow-origin`).
    pub http: guard::HttpPolicy,
    /// Timeouts, the connection cap and the shutdown deadline.
    pub network: NetworkConfig,
    /// Keep the history in a NATS JetStream stream shared with other servers (SPEC §9)
    /// instead of the local log alone.
    pub cluster: Option<ClusterServe>,
}

/// How a server joins a cluster (`serve --store nats://...`).
#[derive(Debug, Clone)]
pub struct ClusterServe {
    /// The stream and where it is.
    pub history: cluster::JetStreamConfig,
    /// The node's name in the writer's lease and the metrics (default: its address).
    pub node: Option<String>,
    /// The URL other nodes forward writes to (default: `http://` and the address it
    /// listens on).
    pub advertise: Option<String>,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The engine could not start (recovery failed, the directory is locked, ...).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Refused to listen on a non-loopback address without authentication.
    #[error("refusing to listen on {0}: without --tokens every request has admin rights, so only loopback addresses are allowed")]
    NotLoopback(SocketAddr),
    /// The file-descriptor limit leaves too few for connections.
    #[error(transparent)]
    Descriptors(#[from] net::descriptors::TooFewDescriptors),
    /// The cluster node could not start (NATS unreachable, an unsafe stream, a local
    /// mirror of another history).
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// Socket or file trouble.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Runs the server until SIGINT or SIGTERM, then shuts down: stops accepting, ends the
/// SSE streams, lets in-flight requests finish until the shutdown deadline, drops the
/// connections still open, finishes the queued writes and closes the log. SIGHUP reloads
/// the tokens file.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let tokens = match &config.tokens {
        Some(path) => Some(
            auth::TokenStore::load(path).map_err(|error| ServeError::Io {
                context: "cannot load the tokens".into(),
                source: std::io::Error::other(error.to_string()),
            })?,
        ),
        None => None,
    };
    if tokens.is_none() && !config.listen.ip().is_loopback() {
        return Err(ServeError::NotLoopback(config.listen));
    }
    let connections_max = connections_max(&config.network)?;
    let data_dir = config.engine.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| ServeError::Io {
        context: format!("cannot create the data directory {}", data_dir.display()),
        source,
    })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Io {
            context: format!("cannot listen on {}", config.listen),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Io {
        context: "cannot read the listening address".into(),
        source,
    })?;
    let (engine, node) = match &config.cluster {
        None => (Engine::start(config.engine.clone())?, None),
        Some(cluster) => {
            let me = cluster::history::Member {
                node: cluster.node.clone().unwrap_or_else(|| local.to_string()),
                url: cluster
                    .advertise
                    .clone()
                    .unwrap_or_else(|| format!("http://{local}")),
            };
            tracing::info!(node = %me.node, url = %me.url, stream = %cluster.history.stream, "joining the cluster");
            let node =
                cluster::ClusterNode::start(config.engine.clone(), cluster.history.clone(), me)
                    .await?;
            (node.engine.clone(), Some(node))
        }
    };
    engine
        .hub()
        .set_subscribers_max(config.network.subscribers_max.get());
    let address_file = AddressFile::write(&data_dir, local);
    tracing::info!(address = %local, data = %data_dir.display(), head = engine.audit_head().seq, "serving");
    println!(
        "swarmlog listening on http://{local} (data in {})",
        data_dir.display()
    );
    let shutdown_engine = engine.clone();
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing queued writes and ending streams");
        shutdown_engine.begin_shutdown();
    };
    #[cfg(unix)]
    let reloader = tokio::spawn(auth::reload_on_hangup(tokens.clone(), engine.clone()));
    let options = app::RouterOptions {
        tokens,
        http: config.http.clone(),
        forwarder: node.as_ref().map(|node| node.forwarder.clone()),
    };
    net::serve_connections(
        listener,
        app::router_with(engine.clone(), options),
        config.network.clone(),
        connections_max,
        Arc::new(net::NetworkStats::default()),
        shutdown,
    )
    .await;
    #[cfg(unix)]
    reloader.abort();
    if let Some(node) = node {
        // Hands the lease over before the engine stops, so another node takes over now.
        node.stop_election().await;
    }
    engine.shutdown().await;
    drop(address_file);
    Ok(())
}

/// Raises the soft file-descriptor limit to the hard one and returns the connection cap
/// it leaves room for: the configured cap, or less when the limit is low.
fn connections_max(network: &NetworkConfig) -> Result<NonZeroUsize, ServeError> {
    let requested = network.connections_max.get();
    let soft = match net::descriptors::raise_soft_limit() {
        Ok(limit) => {
            let shown =
                |value: Option<u64>| value.map_or("unlimited".to_owned(), |v| v.to_string());
            tracing::info!(
                before = limit.soft_before,
                soft = %shown(limit.soft),
                hard = %shown(limit.hard),
                "file-descriptor limit (the soft limit is raised to the hard one)"
            );
            limit.soft
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the file-descriptor limit");
            None
        }
    };
    let allowed = net::descriptors::connections_allowed(requested, soft)?;
    if allowed < requested {
        tracing::warn!(
            requested,
            allowed,
            reserved = net::descriptors::reserved(),
            "the file-descriptor limit lowers the connection cap, keeping descriptors for the log"
        );
    }
    Ok(NonZeroUsize::new(allowed)
        .expect("connections_allowed answers the nonzero request or at least CONNECTIONS_MIN"))
}

/// The `server.addr` record, removed when dropped.
struct AddressFile {
    path: PathBuf,
}

impl AddressFile {
    /// Writes the file. A server on a full disk still serves reads, so failing to write
    /// it is only a warning: clients then need `--url` to find the server.
    fn write(data_dir: &Path, address: SocketAddr) -> Option<Self> {
        let path = data_dir.join(SERVER_ADDRESS_FILE);
        let content = format!("http://{address}\n{}\n", std::process::id());
        match std::fs::write(&path, content) {
            Ok(()) => Some(AddressFile { path }),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot write the server address file; clients need --url");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }
}

impl Drop for AddressFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
