//! `swarmlog events append|tail|replay`.

use std::io::Write;
use std::time::Duration;

use axum::http::Method;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{json, Value};

use super::args::{AppendArgs, FilterArgs};
use super::client::Client;
use super::{parse_value, print_value, CliError, Config, OutputMode};

/// `events append TYPE STREAM [DATA]`.
pub async fn append(config: &Config, args: AppendArgs) -> Result<(), CliError> {
    let mut body = json!({"type": args.event_type, "stream": args.stream});
    if let Some(data) = &args.data {
        body["data"] = parse_value(data);
    }
    if let Some(version) = args.expected_version {
        body["expected_version"] = json!(version);
    }
    let path = with_query("/v1/events", config.branch_param().into_iter().collect());
    let client = Client::connect(config.url.as_deref(), &config.db, config.token.clone()).await?;
    let answer = super::write(
        &client,
        Method::POST,
        &path,
        body,
        &args.write,
        args.actor.as_deref(),
    )
    .await;
    client.close().await;
    let value = answer?;
    print_value(config, &value, Some("seq"), |value| {
        format!("appended at seq {}", value["seq"])
    });
    Ok(())
}

fn filter_query(config: &Config, args: &FilterArgs, replay: bool) -> Vec<String> {
    let mut query = Vec::new();
    let mut push = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            query.push(format!("{name}={}", super::client::encode_segment(&value)));
        }
    };
    push("from", args.from.map(|v| v.to_string()));
    push("until", args.until.map(|v| v.to_string()));
    push("types", args.types.clone());
    push("stream", args.stream.clone());
    push("actor", args.actor.clone());
    push("session", args.session.clone());
    if replay {
        push("limit", args.limit.map(|v| v.to_string()));
    }
    if args.all_branches {
        push("branch", Some("*".into()));
    } else {
        push("branch", config.branch.clone());
    }
    query
}

fn with_query(path: &str, query: Vec<String>) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// One event as a human-readable line.
fn human_line(event: &Value) -> String {
    format!(
        "{:>8}  {}  {:<22} {:<24} {:<12} {}",
        event["seq"],
        event["ts"].as_str().unwrap_or(""),
        event["type"].as_str().unwrap_or(""),
        event["stream"].as_str().unwrap_or(""),
        event["actor"].as_str().unwrap_or(""),
        event["data"]
    )
}

fn print_event(config: &Config, line: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let written = match config.output {
        OutputMode::Json => writeln!(out, "{line}"),
        OutputMode::Raw => {
            let value: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            writeln!(out, "{}", value["data"])
        }
        OutputMode::Human => {
            let value: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            writeln!(out, "{}", human_line(&value))
        }
    };
    written
        .and_then(|()| out.flush())
        .map_err(|error| CliError::failure(format!("cannot write to stdout: {error}")))
}

/// `events tail`: follows the server's SSE feed, resuming with `Last-Event-ID` after a
/// dropped connection, until `--until` or Ctrl-C.
pub async fn tail(config: &Config, args: FilterArgs) -> Result<(), CliError> {
    let client = Client::connect(config.url.as_deref(), &config.db, config.token.clone()).await?;
    if !client.is_remote() {
        client.close().await;
        return Err(CliError::failure(format!(
            "events tail follows a running server; start one with `swarmlog --db {} serve` or pass --url",
            config.db.display()
        )));
    }
    let path = with_query("/v1/events", filter_query(config, &args, false));
    let mut last_seen: Option<u64> = None;
    loop {
        let mut headers = vec![("accept", "text/event-stream".to_owned())];
        if let Some(seq) = last_seen {
            headers.push(("last-event-id", seq.to_string()));
        }
        let reply = match client.send(Method::GET, &path, None, &headers).await {
            Ok(reply) if reply.status.is_success() => reply,
            Ok(reply) => return reply.json().await.map(drop),
            Err(error) => {
                eprintln!("swarmlog: {}; retrying in 1 s", error.message);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut events = reply
            .body
            .map(|chunk| chunk.map_err(|error| std::io::Error::other(error.message)))
            .eventsource();
        while let Some(event) = events.next().await {
            let Ok(event) = event else { break };
            if event.event == "caught_up" {
                if config.output == OutputMode::Human {
                    eprintln!("-- caught up: {} --", event.data);
                }
                continue;
            }
            if let Ok(seq) = event.id.parse::<u64>() {
                last_seen = Some(seq);
            }
            print_event(config, &event.data)?;
        }
        if args
            .until
            .is_some_and(|until| last_seen.is_some_and(|seen| seen >= until))
        {
            return Ok(());
        }
        eprintln!("swarmlog: the event stream ended; reconnecting");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `events replay`: the finite NDJSON audit replay, with a progress bar on a terminal.
pub async fn replay(config: &Config, args: FilterArgs) -> Result<(), CliError> {
    let client = Client::connect(config.url.as_deref(), &config.db, config.token.clone()).await?;
    let outcome = replay_with(&client, config, &args).await;
    client.close().await;
    outcome
}

async fn replay_with(client: &Client, config: &Config, args: &FilterArgs) -> Result<(), CliError> {
    let head = client.call(Method::GET, "/v1/audit/head", None).await?["seq"]
        .as_u64()
        .unwrap_or(0);
    let progress = indicatif::ProgressBar::with_draw_target(
        Some(head),
        indicatif::ProgressDrawTarget::stderr(),
    );
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seq  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let path = with_query("/v1/events", filter_query(config, args, true));
    let reply = client.send(Method::GET, &path, None, &[]).await?;
    if !reply.status.is_success() {
        return reply.json().await.map(drop);
    }
    let mut body = reply.body;
    let mut pending = Vec::new();
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if let Some(seq) = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|value| value["seq"].as_u64())
            {
                progress.set_position(seq);
            }
            progress.suspend(|| print_event(config, &text))?;
        }
    }
    progress.finish_and_clear();
    Ok(())
}
