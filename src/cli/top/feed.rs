//! The live part of `swarmlog top`: follows `GET /v1/events` as SSE and reports what it
//! sees (connection state, the catch-up's head, each event) to the screen loop. A dropped
//! connection (a server restart) is retried with backoff, resuming with `Last-Event-ID`
//! after the last seq seen, so no event is missed or shown twice; this task never ends on
//! its own, and never ends the program.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::super::client::Client;

/// The first pause before reconnecting: a restarting server is usually back quickly.
const BACKOFF_MS_MIN: u64 = 250;

/// The longest pause between two attempts: a server down for long is still noticed within
/// a few seconds of its return.
const BACKOFF_MS_MAX: u64 = 4_000;

/// What the feed tells the screen loop.
#[derive(Debug)]
pub enum FeedMessage {
    /// The server accepted the subscription.
    Connected,
    /// The catch-up is done; the head at that moment.
    CaughtUp(u64),
    /// One event envelope.
    Event(Value),
    /// The connection failed or ended, with why; the feed retries.
    Lost(String),
}

/// Follows `path` (`/v1/events?...`) until the screen loop goes away.
pub async fn follow(client: Arc<Client>, path: String, sender: mpsc::Sender<FeedMessage>) {
    let mut last_seen: Option<u64> = None;
    let mut backoff_ms = BACKOFF_MS_MIN;
    loop {
        let outcome = subscribe_once(&client, &path, &mut last_seen, &sender).await;
        let reason = match outcome {
            Ok(()) => "the server ended the event stream".to_owned(),
            Err(Failure { reason, connected }) => {
                if connected {
                    backoff_ms = BACKOFF_MS_MIN;
                }
                reason
            }
        };
        if sender.send(FeedMessage::Lost(reason)).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(BACKOFF_MS_MAX);
    }
}

/// Why a subscription failed, and whether it had been accepted first.
struct Failure {
    reason: String,
    connected: bool,
}

/// One subscription: connects (resuming after `last_seen`), then forwards events until
/// the server ends the stream (shutdown: `Ok`) or it breaks.
async fn subscribe_once(
    client: &Client,
    path: &str,
    last_seen: &mut Option<u64>,
    sender: &mpsc::Sender<FeedMessage>,
) -> Result<(), Failure> {
    let failed = |reason: String| Failure {
        reason,
        connected: false,
    };
    let mut headers = vec![("accept", "text/event-stream".to_owned())];
    if let Some(seq) = last_seen {
        headers.push(("last-event-id", seq.to_string()));
    }
    let reply = client
        .send(Method::GET, path, None, &headers)
        .await
        .map_err(|error| failed(error.message))?;
    if !reply.status.is_success() {
        let error = reply.json().await.err();
        let reason = error.map_or_else(|| "refused".to_owned(), |error| error.message);
        if reason.contains("invalid_last_event_id") {
            // Another log answers at this address (the data was replaced): start afresh.
            *last_seen = None;
        }
        return Err(failed(reason));
    }
    send(sender, FeedMessage::Connected).await?;
    let mut events = reply
        .body
        .map(|chunk| chunk.map_err(|error| std::io::Error::other(error.message)))
        .eventsource();
    while let Some(event) = events.next().await {
        let event = event.map_err(|error| Failure {
            reason: format!("the event stream broke: {error}"),
            connected: true,
        })?;
        if event.event == "caught_up" {
            let head = serde_json::from_str::<Value>(&event.data)
                .ok()
                .and_then(|data| data["head"].as_u64())
                .unwrap_or(0);
            // Resuming from the head is right even when no event of ours came before it.
            *last_seen = Some(last_seen.map_or(head, |seen| seen.max(head)));
            send(sender, FeedMessage::CaughtUp(head)).await?;
            continue;
        }
        if let Ok(seq) = event.id.parse::<u64>() {
            *last_seen = Some(seq);
        }
        if let Ok(envelope) = serde_json::from_str::<Value>(&event.data) {
            send(sender, FeedMessage::Event(envelope)).await?;
        }
    }
    Ok(())
}

/// Hands a message to the screen loop; when it is gone, the feed stops. Waiting for room
/// in the channel slows only this subscriber, which the server then serves from disk.
async fn send(sender: &mpsc::Sender<FeedMessage>, message: FeedMessage) -> Result<(), Failure> {
    sender.send(message).await.map_err(|_| Failure {
        reason: "the screen closed".to_owned(),
        connected: true,
    })
}
