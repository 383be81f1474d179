//! `swarmlog serve`, `verify` and `stats`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use axum::http::Method;
use serde_json::json;
use swarmlog_log::SyncPolicy;
use swarmlog_server::cluster::JetStreamConfig;
use swarmlog_server::guard::HttpPolicy;
use swarmlog_server::limits::CONNECTIONS_MAX_LIMIT;
use swarmlog_server::{ClusterServe, EngineConfig, NetworkConfig, ServeConfig};

use super::args::{ClusterArgs, ServeArgs, StoreArgs, SyncArg};
use super::client::Client;
use super::{print_value, CliError, Config};

/// `serve`: runs the server in the foreground until SIGINT/SIGTERM.
pub async fn serve(config: &Config, args: ServeArgs) -> Result<(), CliError> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        CliError::usage(format!(
            "--listen must be an address like 127.0.0.1:7070, not '{}'",
            args.listen
        ))
    })?;
    let mut engine = EngineConfig::new(config.db.clone());
    engine.sync = match args.sync {
        SyncArg::Always => SyncPolicy::Always,
        SyncArg::None => SyncPolicy::Never,
    };
    if let Some(size) = args.segment_size {
        if size < 4096 {
            return Err(CliError::usage(format!(
                "--segment-size must be at least 4096 bytes, not {size}"
            )));
        }
        engine.segment_size_bytes_max = size;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWARMLOG_LOG")
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs sent to a file or a collector stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    engine.lock_order = args.lock_order;
    engine.free_bytes_min = args.min_free_bytes;
    let http = HttpPolicy::new(&args.allow_hosts, &args.allow_origins).map_err(CliError::usage)?;
    let network = network(&args)?;
    let cluster = cluster(&args.cluster)?;
    swarmlog_server::serve(ServeConfig {
        engine,
        listen,
        tokens: args.tokens,
        http,
        network,
        cluster,
    })
    .await
    .map_err(|error| CliError::failure(error.to_string()))
}

/// The cluster flags of `serve`, checked: `None` without `--store`.
fn cluster(args: &ClusterArgs) -> Result<Option<ClusterServe>, CliError> {
    let Some(servers) = store_servers(&args.store)? else {
        return Ok(None);
    };
    if !(1..=5).contains(&args.nats_replicas) {
        return Err(CliError::usage(format!(
            "--nats-replicas must be between 1 and 5, not {}",
            args.nats_replicas
        )));
    }
    if !(1000..=60_000).contains(&args.lease_ms) {
        return Err(CliError::usage(format!(
            "--lease-ms must be between 1000 and 60000, not {}",
            args.lease_ms
        )));
    }
    if let Some(url) = &args.advertise {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "--advertise must be an http:// or https:// URL, not '{url}'"
            )));
        }
    }
    Ok(Some(ClusterServe {
        history: JetStreamConfig {
            servers,
            stream: args.store.nats_stream.clone(),
            replicas: args.nats_replicas,
            lease_ttl: Duration::from_millis(args.lease_ms),
        },
        node: args.node_name.clone(),
        advertise: args
            .advertise
            .clone()
            .map(|url| url.trim_end_matches('/').to_owned()),
    }))
}

/// The NATS servers of `--store`, checked with `--nats-stream`: `None` without `--store`.
fn store_servers(args: &StoreArgs) -> Result<Option<Vec<String>>, CliError> {
    let Some(store) = &args.store else {
        return Ok(None);
    };
    // SPEC §9's form, nats://HOST:PORT[,HOST:PORT...]; a scheme on the later ones too.
    let mut servers = Vec::new();
    for (index, entry) in store.split(',').map(str::trim).enumerate() {
        let address = match entry.strip_prefix("nats://") {
            Some(address) => address,
            None if index > 0 && !entry.contains("://") => entry,
            None => "",
        };
        let valid = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(CliError::usage(format!(
                "--store must be nats://HOST:PORT[,HOST:PORT...], and '{entry}' is not a NATS server's HOST:PORT"
            )));
        }
        servers.push(format!("nats://{address}"));
    }
    let name = &args.nats_stream;
    let name_ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if !name_ok {
        return Err(CliError::usage(format!(
            "--nats-stream must be 1 to 32 letters, digits, '-' or '_', not '{name}'"
        )));
    }
    Ok(Some(servers))
}

/// The network flags of `serve`, checked against their ranges.
fn network(args: &ServeArgs) -> Result<NetworkConfig, CliError> {
    let milliseconds = |flag: &str, value: u64, low: u64, high: u64| {
        if (low..=high).contains(&value) {
            Ok(Duration::from_millis(value))
        } else {
            Err(CliError::usage(format!(
                "{flag} must be between {low} and {high}, not {value}"
            )))
        }
    };
    let cap = |flag: &str, value: usize| {
        NonZeroUsize::new(value)
            .filter(|cap| cap.get() <= CONNECTIONS_MAX_LIMIT)
            .ok_or_else(|| {
                CliError::usage(format!(
                    "{flag} must be between 1 and {CONNECTIONS_MAX_LIMIT}, not {value}"
                ))
            })
    };
    Ok(NetworkConfig {
        header_timeout: milliseconds("--header-timeout-ms", args.header_timeout_ms, 10, 600_000)?,
        idle_timeout: milliseconds("--idle-timeout-ms", args.idle_timeout_ms, 10, 3_600_000)?,
        shutdown_timeout: milliseconds(
            "--shutdown-timeout-ms",
            args.shutdown_timeout_ms,
            0,
            600_000,
        )?,
        connections_max: cap("--max-connections", args.max_connections)?,
        subscribers_max: cap("--max-subscribers", args.max_subscribers)?,
    })
}

/// The progress bar of `verify` on stderr (drawn only on a terminal), in `template`.
fn verify_progress(template: &str) -> indicatif::ProgressBar {
    let progress =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    progress.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress
}

/// `verify --store`: checks every event of a cluster's stream and prints the head of the
/// hash chain.
pub async fn verify_store(config: &Config, args: &StoreArgs) -> Result<(), CliError> {
    let Some(servers) = store_servers(args)? else {
        return verify(config);
    };
    let progress = verify_progress("verifying {bar:40} {pos}/{len} events {per_sec}");
    let report = swarmlog_server::cluster::jetstream::verify(
        &servers,
        &args.nats_stream,
        &mut |done, total| {
            progress.set_length(total);
            progress.set_position(done);
        },
    )
    .await;
    progress.finish_and_clear();
    let report =
        report.map_err(|error| CliError::failure(format!("verification failed: {error}")))?;
    let value = json!({
        "ok": true,
        "stream": args.nats_stream,
        "records": report.records,
        "first": report.first,
        "last": report.last,
        "head_hash": report.head_hash,
    });
    print_value(config, &value, Some("head_hash"), |_| {
        format!(
            "ok: {} events in stream {}, seq {}..{}, head hash {}",
            report.records,
            args.nats_stream,
            report.first.unwrap_or(0),
            report.last.unwrap_or(0),
            report.head_hash
        )
    });
    Ok(())
}

/// `verify`: checks every record of the log offline and prints the head of the hash chain.
pub fn verify(config: &Config) -> Result<(), CliError> {
    super::client::require_log(&config.db)?;
    let log_dir = swarmlog_server::engine::log_dir(&config.db);
    let progress = verify_progress("verifying {bar:40} {bytes}/{total_bytes} {bytes_per_sec}");
    let report = swarmlog_server::audit::verify(&log_dir, &mut |done, total| {
        progress.set_length(total);
        progress.set_position(done);
    });
    progress.finish_and_clear();
    let report =
        report.map_err(|error| CliError::failure(format!("verification failed: {error}")))?;
    let value = json!({
        "ok": true,
        "segments": report.segments,
        "records": report.records,
        "bytes": report.bytes,
        "first": report.first,
        "last": report.last,
        "torn_tail_bytes": report.torn_tail_bytes,
        "head_hash": report.head_hash,
    });
    print_value(config, &value, Some("head_hash"), |_| {
        let mut text = format!(
            "ok: {} records in {} segments ({} bytes), seq {}..{}, head hash {}",
            report.records,
            report.segments,
            report.bytes,
            report.first.unwrap_or(0),
            report.last.unwrap_or(0),
            report.head_hash
        );
        if report.torn_tail_bytes > 0 {
            text.push_str(&format!("\nnote: {} bytes of torn tail in the newest segment; the next start cuts them away", report.torn_tail_bytes));
        }
        text
    });
    Ok(())
}

/// `stats`: the head of the log, through the server or in-process.
pub async fn stats(config: &Config) -> Result<(), CliError> {
    let client = Client::connect(config.url.as_deref(), &config.db, config.token.clone()).await?;
    let remote = client.is_remote();
    let head = client.call(Method::GET, "/v1/audit/head", None).await;
    let health = client.call(Method::GET, "/healthz", None).await;
    client.close().await;
    let (head, health) = (head?, health?);
    let mut value = json!({"head": head["seq"], "hash": head["hash"], "through_server": remote});
    if let Some(cluster) = health.get("cluster") {
        value["cluster"] = cluster.clone();
    }
    print_value(config, &value, Some("head"), |value| {
        let mut text = format!(
            "head seq {} hash {} ({})",
            value["head"],
            value["hash"].as_str().unwrap_or(""),
            if remote { "server" } else { "in-process" }
        );
        if let Some(cluster) = value.get("cluster") {
            text.push_str(&format!(
                "\ncluster node {} ({}), writer {}, {} events behind the history",
                cluster["node"].as_str().unwrap_or("?"),
                cluster["role"].as_str().unwrap_or("?"),
                cluster["writer"]["node"].as_str().unwrap_or("none yet"),
                cluster["lag_events"],
            ));
        }
        text
    });
    Ok(())
}

/// `snapshot`: writes a projection snapshot, through the server or in-process.
pub async fn snapshot(config: &Config) -> Result<(), CliError> {
    let client = Client::connect(config.url.as_deref(), &config.db, config.token.clone()).await?;
    let answer = client.call(Method::POST, "/v1/snapshots", None).await;
    client.close().await;
    let value = answer?;
    print_value(config, &value, Some("path"), |value| {
        format!(
            "snapshot at seq {} written to {} ({} bytes)",
            value["head"],
            value["path"].as_str().unwrap_or(""),
            value["bytes"]
        )
    });
    Ok(())
}
