//! Server-sent events: catch-up then live with no gap and no duplicate, the `caught_up`
//! marker, `Last-Event-ID` resume, `until`, and slow subscribers served from disk.

use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

use crate::support::{data_dir, Server};

/// Opens an SSE subscription.
async fn subscribe(
    server: &Server,
    query: &str,
    last_event_id: Option<u64>,
) -> impl Stream<Item = Event> + Unpin {
    let mut request = server
        .http
        .get(format!("{}/v1/events{query}", server.url))
        .header("accept", "text/event-stream");
    if let Some(seq) = last_event_id {
        request = request.header("last-event-id", seq.to_string());
    }
    let response = request.send().await.expect("the server answers");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    Box::pin(
        response
            .bytes_stream()
            .eventsource()
            .map(|event| event.expect("well-formed SSE")),
    )
}

/// Reads events until `count` data events arrived (the bound only keeps a broken build
/// from hanging the suite); returns (seqs, position of caught_up among them, its head).
async fn collect(
    stream: &mut (impl Stream<Item = Event> + Unpin),
    count: usize,
) -> (Vec<u64>, Option<(usize, u64)>) {
    let mut seqs = Vec::new();
    let mut caught_up = None;
    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        while seqs.len() < count {
            let Some(event) = stream.next().await else {
                break;
            };
            if event.event == "caught_up" {
                assert!(caught_up.is_none(), "caught_up is sent once");
                let data: Value =
                    serde_json::from_str(&event.data).expect("caught_up data is JSON");
                caught_up = Some((seqs.len(), data["head"].as_u64().expect("head")));
                continue;
            }
            let envelope: Value = serde_json::from_str(&event.data).expect("data is an envelope");
            let seq = envelope["seq"].as_u64().expect("seq");
            assert_eq!(event.id, seq.to_string(), "id is the seq");
            assert_eq!(
                event.event,
                envelope["type"].as_str().expect("type"),
                "event is the type"
            );
            seqs.push(seq);
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "received only {} of {count} events",
        seqs.len()
    );
    (seqs, caught_up)
}

#[tokio::test]
async fn catch_up_then_live_with_concurrent_writers_has_no_gap_or_duplicate() {
    let dir = data_dir();
    let server = Arc::new(Server::start(dir.path(), &[]).await);
    for index in 0..50 {
        server.append("history", json!({"i": index})).await;
    }
    let mut stream = subscribe(&server, "", None).await;
    let mut writers = Vec::new();
    for writer in 0..4 {
        let server = server.clone();
        writers.push(tokio::spawn(async move {
            for index in 0..100 {
                server
                    .append(&format!("live/{writer}"), json!({"i": index}))
                    .await;
            }
        }));
    }
    let (seqs, caught_up) = collect(&mut stream, 450).await;
    for writer in writers {
        writer.await.expect("writer finished");
    }
    assert_eq!(
        seqs,
        (1..=450).collect::<Vec<u64>>(),
        "every event once, in order"
    );
    let (position, head) = caught_up.expect("a caught_up marker");
    assert!(head >= 50, "the catch-up covered the history (head {head})");
    assert_eq!(
        position as u64, head,
        "caught_up comes right after the events up to its head"
    );
}

#[tokio::test]
async fn last_event_id_resumes_after_that_seq_and_until_ends_the_stream() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for index in 0..20 {
        server.append("s", json!({"i": index})).await;
    }
    let mut resumed = subscribe(&server, "", Some(12)).await;
    let (seqs, _) = collect(&mut resumed, 8).await;
    assert_eq!(seqs, (13..=20).collect::<Vec<u64>>());

    let mut bounded = subscribe(&server, "?from=5&until=7", None).await;
    let (seqs, _) = collect(&mut bounded, 3).await;
    assert_eq!(seqs, vec![5, 6, 7]);
    let end = tokio::time::timeout(Duration::from_secs(10), bounded.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends at until");

    let mut filtered = subscribe(&server, "?types=test.*&stream=s&from=19", None).await;
    let (seqs, caught_up) = collect(&mut filtered, 2).await;
    assert_eq!(seqs, vec![19, 20]);
    assert_eq!(
        caught_up.map(|(_, head)| head),
        None,
        "caught_up comes after the history, not before it"
    );
    server.append("s", json!({"live": true})).await;
    let (seqs, caught_up) = collect(&mut filtered, 1).await;
    assert_eq!(seqs, vec![21]);
    assert_eq!(caught_up, Some((0, 20)));
}

#[tokio::test]
async fn a_stalled_subscriber_neither_loses_events_nor_slows_a_fast_one() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    // Subscribe, then read nothing: its socket, its buffer and then the live feed's window
    // fill up, and the server must switch it to reading from disk.
    let mut stalled = subscribe(&server, "", None).await;
    let mut fast = subscribe(&server, "", None).await;
    let total = 8000usize;
    let filler = "x".repeat(16 * 1024);
    let fast_reader = tokio::spawn(async move { collect(&mut fast, total).await });
    for index in 0..total {
        server
            .append("bulk", json!({"i": index, "pad": filler}))
            .await;
    }
    let (fast_seqs, _) = fast_reader.await.expect("fast reader finished");
    assert_eq!(
        fast_seqs,
        (1..=total as u64).collect::<Vec<u64>>(),
        "the fast subscriber got everything while the other stalled"
    );
    let (stalled_seqs, _) = collect(&mut stalled, total).await;
    assert_eq!(
        stalled_seqs,
        (1..=total as u64).collect::<Vec<u64>>(),
        "the stalled subscriber lost nothing"
    );
    let lags = server.metric("swarmlog_subscriber_lags_total").await;
    assert!(
        lags >= 1.0,
        "the stalled subscriber was served from disk at least once"
    );
}

#[tokio::test]
async fn the_wire_format_is_id_event_data_and_caught_up_has_no_id() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    server.append("s", json!({"n": 1})).await;
    let response = server
        .http
        .get(format!("{}/v1/events?until=2", server.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("the server answers");
    let appender = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.append("s", json!({"n": 2})).await
    };
    let (text, _) = tokio::join!(
        async { response.text().await.expect("the stream ends at until") },
        appender
    );
    let blocks: Vec<&str> = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty() && !block.starts_with(':'))
        .collect();
    assert_eq!(blocks.len(), 3, "two events and the marker: {text}");
    assert!(
        blocks[0].starts_with("id: 1\nevent: test.event\ndata: {"),
        "{}",
        blocks[0]
    );
    assert_eq!(
        blocks[1], "event: caught_up\ndata: {\"head\":1}",
        "the marker has no id"
    );
    assert!(
        blocks[2].starts_with("id: 2\nevent: test.event\ndata: {"),
        "{}",
        blocks[2]
    );
}

/// An SSE subscriber that sends its request and never reads: a socket with a small receive
/// buffer, so that it is full after a few kilobytes.
fn stalled_subscriber(server: &Server) -> std::net::TcpStream {
    use std::io::Write;
    let address: std::net::SocketAddr = server
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address");
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("a socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    socket.connect(&address.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    stream
        .write_all(
            format!(
                "GET /v1/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("send the request");
    stream
}

/// Issue 9, defect 12: `swarmlog_lagging_subscribers` read 0 while subscribers that had
/// stopped reading held megabytes of backlog, because a subscriber only counted as lagging
/// once it noticed the live feed had left it behind, which it never does while it waits for
/// its client. Subscribers whose client stops reading count while they are behind, and stop
/// counting when they go away.
#[tokio::test]
async fn subscribers_that_stop_reading_count_as_lagging() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let stalled = [stalled_subscriber(&server), stalled_subscriber(&server)];
    crate::coordination::wait_until("two subscribers", || async {
        (server.metric("swarmlog_subscribers").await >= 2.0).then_some(())
    })
    .await;
    assert_eq!(server.metric("swarmlog_lagging_subscribers").await, 0.0);
    let pad = "x".repeat(4096);
    let batch: Vec<Value> = (0..200)
        .map(|_| json!({"type": "bulk.event", "stream": "bulk", "data": {"pad": pad}}))
        .collect();
    let mut appended = 0;
    loop {
        let lagging = server.metric("swarmlog_lagging_subscribers").await;
        if lagging >= 2.0 {
            break;
        }
        assert!(
            appended < 10_000,
            "after {appended} events of 4 KiB the two stalled subscribers count as {lagging} lagging"
        );
        let (status, body) = server.post("/v1/events", &json!({ "events": batch })).await;
        assert_eq!(status, 201, "{body}");
        appended += batch.len();
    }
    drop(stalled);
    crate::coordination::wait_until("the gauge to return to 0", || async {
        (server.metric("swarmlog_lagging_subscribers").await == 0.0).then_some(())
    })
    .await;
}

/// An SSE request with `Last-Event-ID: value` on `path`.
async fn resume(server: &Server, path: &str, value: &str) -> reqwest::Response {
    server
        .http
        .get(format!("{}{path}", server.url))
        .header("accept", "text/event-stream")
        .header("last-event-id", value)
        .send()
        .await
        .expect("the server answers")
}

/// Issue 9, defect 7: a `Last-Event-ID` beyond the head (u64::MAX included, which wrapped to
/// a replay from 1) is 400 `invalid_last_event_id` with the head, on the events feed and the
/// inbox feed; `caught_up` reports the real head even when `from` is beyond it.
#[tokio::test]
async fn a_last_event_id_beyond_the_head_is_refused_with_the_head() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for index in 0..5 {
        server.append("s", json!({"i": index})).await;
    }
    for path in ["/v1/events", "/v1/agents/w/inbox"] {
        for value in ["6", "99", "18446744073709551615"] {
            let response = resume(&server, path, value).await;
            // Checked before the body is read: an accepted stream has no end.
            assert_eq!(response.status().as_u16(), 400, "{path} after {value}");
            let refused: Value = response.json().await.expect("a JSON error");
            assert_eq!(
                crate::coordination::code(&refused),
                "invalid_last_event_id",
                "{path} after {value}: {refused}"
            );
            assert_eq!(refused["error"]["head"], json!(5), "{refused}");
        }
        let response = resume(&server, path, "18446744073709551616").await;
        assert_eq!(response.status().as_u16(), 400, "{path}: not a seq");
    }
    let response = resume(&server, "/v1/events", "5").await;
    assert_eq!(response.status().as_u16(), 200, "resuming at the head");
    let mut at_head = Box::pin(
        response
            .bytes_stream()
            .eventsource()
            .map(|event| event.expect("well-formed SSE")),
    );
    let marker = tokio::time::timeout(Duration::from_secs(20), at_head.next())
        .await
        .expect("the marker comes")
        .expect("the stream is open");
    assert_eq!(
        (marker.event.as_str(), marker.data.as_str()),
        ("caught_up", "{\"head\":5}"),
        "nothing to catch up after the head"
    );
    let mut ahead = subscribe(&server, "?from=99", None).await;
    let marker = tokio::time::timeout(Duration::from_secs(20), ahead.next())
        .await
        .expect("the marker comes")
        .expect("the stream is open");
    assert_eq!(
        (marker.event.as_str(), marker.data.as_str()),
        ("caught_up", "{\"head\":5}"),
        "caught_up names the head, not the seq before from"
    );
}

/// `serve --max-subscribers`: past the cap a subscription is refused with 503
/// `too_many_subscribers` naming the limit, and the server goes on serving writes and the
/// open subscriptions; a subscription that ends gives its seat back.
#[tokio::test]
async fn subscriptions_past_the_cap_are_refused_503_and_the_open_ones_go_on() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &["--max-subscribers", "2"]).await;
    let mut first = subscribe(&server, "", None).await;
    let second = subscribe(&server, "?from=1&until=1", None).await;
    let refused = ask_to_follow_everything(&server).await;
    assert_eq!(refused.status().as_u16(), 503);
    let body: Value = refused.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "too_many_subscribers");
    assert_eq!(body["error"]["limit"], 2);

    let written = server
        .http
        .post(format!("{}/v1/events", server.url))
        .json(&json!({"type": "note.added", "stream": "notes"}))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(written.status().as_u16(), 201, "writes are not capped");
    let (seqs, _) = collect(&mut first, 1).await;
    assert_eq!(seqs, [1], "an open subscription goes on");

    // The second ends at its `until`: its seat is free again.
    let mut second = second;
    collect(&mut second, 1).await;
    assert!(second.next().await.is_none(), "the stream ended at until");
    let reopened = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if ask_to_follow_everything(&server).await.status().as_u16() == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        reopened.is_ok(),
        "the ended subscription gave its seat back"
    );
}

/// Asks for an SSE subscription to every event, whatever the answer.
async fn ask_to_follow_everything(server: &Server) -> reqwest::Response {
    server
        .http
        .get(format!("{}/v1/events", server.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("the server answers")
}
