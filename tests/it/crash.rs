//! Crash recovery for real: kill -9 under load, garbage after the last record, a flipped
//! bit in an acknowledged record, and idempotent retries across a restart.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{cli, data_dir, segments, Server};

#[tokio::test]
async fn kill_9_under_concurrent_load_loses_no_acknowledged_event() {
    let dir = data_dir();
    let mut server = Server::start(dir.path(), &[]).await;
    let acknowledged: Arc<Mutex<HashMap<u64, (usize, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let url = server.url.clone();
    let mut clients = Vec::new();
    for client in 0..8usize {
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut index = 0usize;
            while !stop.load(Ordering::Relaxed) && index < 100_000 {
                let body = json!({"type": "load.tick", "stream": format!("client/{client}"), "data": {"client": client, "index": index}});
                let Ok(response) = http.post(format!("{url}/v1/events")).json(&body).send().await else { break };
                if response.status().as_u16() != 201 {
                    break;
                }
                let Ok(answer) = response.json::<Value>().await else { break };
                let seq = answer["seq"].as_u64().expect("an acknowledged append has a seq");
                acknowledged.lock().expect("not poisoned").insert(seq, (client, index));
                index += 1;
            }
        }));
    }
    // Let the load run, then pull the plug while requests are in flight.
    while acknowledged.lock().expect("not poisoned").len() < 2000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    let acknowledged = acknowledged.lock().expect("not poisoned").clone();

    let server = Server::start(dir.path(), &[]).await;
    let events = server.replay("").await;
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<u64>>(),
        "the sequence is gap-free after recovery"
    );
    let recovered: HashMap<u64, (usize, usize)> = events
        .iter()
        .map(|e| {
            let client = e["data"]["client"].as_u64().expect("client") as usize;
            let index = e["data"]["index"].as_u64().expect("index") as usize;
            (e["seq"].as_u64().expect("seq"), (client, index))
        })
        .collect();
    for (seq, origin) in &acknowledged {
        assert_eq!(
            recovered.get(seq),
            Some(origin),
            "acknowledged seq {seq} survived with its content"
        );
    }
    // Nothing invented: each client's recovered events are its own appends, in order, once.
    let mut per_client: HashMap<usize, Vec<usize>> = HashMap::new();
    for (client, index) in events.iter().map(|e| {
        (
            e["data"]["client"].as_u64().expect("c") as usize,
            e["data"]["index"].as_u64().expect("i") as usize,
        )
    }) {
        per_client.entry(client).or_default().push(index);
    }
    for (client, indexes) in per_client {
        assert_eq!(
            indexes,
            (0..indexes.len()).collect::<Vec<_>>(),
            "client {client}'s events are a prefix of what it sent"
        );
    }
    let next = server.append("after", json!({})).await;
    assert_eq!(
        next,
        seqs.len() as u64 + 1,
        "appends continue right after the recovered head"
    );
}

/// The position just after the last non-zero byte of a file (the logical end of a
/// preallocated segment).
fn logical_end(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rposition(|byte| *byte != 0)
        .map_or(0, |position| position + 1)
}

#[tokio::test]
async fn garbage_after_the_last_record_is_cut_away() {
    let dir = data_dir();
    let mut server = Server::start(dir.path(), &[]).await;
    for index in 0..10 {
        // The idempotency record makes each record end in a non-zero byte, so the end of
        // the last record can be found from outside as the last non-zero byte.
        let key = format!("garbage-{index}");
        let (status, _) = server
            .post_with(
                "/v1/events",
                &json!({"type": "test.event", "stream": "s", "data": {"i": index}}),
                &[("idempotency-key", key.as_str())],
            )
            .await;
        assert_eq!(status, 201);
    }
    server.kill9();
    let segment = segments(dir.path()).pop().expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let end = logical_end(&bytes);
    let garbage = b"\x13\x37garbage that a torn write could leave behind\xff\xfe";
    if bytes.len() < end + garbage.len() {
        bytes.resize(end + garbage.len(), 0);
    }
    bytes[end..end + garbage.len()].copy_from_slice(garbage);
    std::fs::write(&segment, &bytes).expect("write segment");

    let server = Server::start(dir.path(), &[]).await;
    assert_eq!(
        server.head().await,
        10,
        "the ten acknowledged events survive"
    );
    assert_eq!(
        server.append("s", json!({"i": 10})).await,
        11,
        "the torn tail is gone and appends continue"
    );
    let events = server.replay("").await;
    assert_eq!(events.len(), 11);
    assert_eq!(events[10]["data"], json!({"i": 10}));
}

#[tokio::test]
async fn a_flipped_bit_in_an_acknowledged_record_is_reported_and_refuses_the_start() {
    let dir = data_dir();
    let mut server = Server::start(dir.path(), &[]).await;
    for index in 0..10 {
        server
            .append("s", json!({"needle": format!("needle-{index}")}))
            .await;
    }
    assert_eq!(server.stop(), Some(0), "a clean shutdown exits 0");
    let db = dir.path().to_str().expect("utf-8 path");
    let (code, _, stderr) = cli(&["--db", db, "verify"]);
    assert_eq!(code, 0, "a clean log verifies: {stderr}");

    let segment = segments(dir.path()).pop().expect("a segment");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .expect("open segment");
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).expect("read");
    let position = bytes
        .windows(8)
        .position(|window| window == b"needle-4")
        .expect("the payload is on disk");
    file.seek(SeekFrom::Start(position as u64 + 3))
        .expect("seek");
    file.write_all(&[bytes[position + 3] ^ 0b0000_0100])
        .expect("flip one bit");
    file.sync_all().expect("sync");
    drop(file);

    let segment_name = segment
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    let (code, _, stderr) = cli(&["--db", db, "verify"]);
    assert_ne!(code, 0, "verify fails on a flipped bit");
    assert!(
        stderr.contains(&segment_name),
        "verify names the segment: {stderr}"
    );
    let (code, stderr) = Server::start_expecting_failure(dir.path());
    assert_ne!(
        code, 0,
        "the server refuses to start on a corrupt acknowledged record"
    );
    assert!(
        stderr.contains(&segment_name),
        "the start names the segment: {stderr}"
    );
}

#[tokio::test]
async fn an_idempotent_retry_across_a_restart_does_not_write_twice() {
    let dir = data_dir();
    let mut server = Server::start(dir.path(), &[]).await;
    let body = json!({"type": "payment.made", "stream": "payment/7", "data": {"cents": 1250}});
    let key = [("idempotency-key", "pay-7-once")];
    let (status, first) = server.post_with("/v1/events", &body, &key).await;
    assert_eq!(status, 201);
    let (status, again) = server.post_with("/v1/events", &body, &key).await;
    assert_eq!(
        (status, &again),
        (201, &first),
        "a retry gets the first response"
    );
    server.kill9();

    let server = Server::start(dir.path(), &[]).await;
    let (status, after_restart) = server.post_with("/v1/events", &body, &key).await;
    assert_eq!(
        (status, &after_restart),
        (201, &first),
        "the key survives a crash and restart"
    );
    assert_eq!(server.head().await, 1, "nothing was written twice");
    let other = json!({"type": "payment.made", "stream": "payment/7", "data": {"cents": 99}});
    let (status, error) = server.post_with("/v1/events", &other, &key).await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["code"], json!("idempotency_key_reused"));
    assert_eq!(server.head().await, 1);
}

/// A history rewritten with valid checksums (what someone with write access to the files,
/// but not the chain, could produce) passes the frame check and fails the hash chain.
#[test]
fn verify_finds_a_rewritten_event_whose_frames_are_valid() {
    use swarmlog_log::{Log, LogOptions, RecordInput, Seq};
    use swarmlog_projections::Envelope;

    let original = data_dir();
    let db = original.path().to_str().expect("utf-8 path");
    for text in ["first", "second", "third"] {
        let (code, _, stderr) = cli(&[
            "--db",
            db,
            "events",
            "append",
            "note.added",
            "notes/n",
            text,
        ]);
        assert_eq!(code, 0, "{stderr}");
    }
    let log = Log::open(&original.path().join("log"), LogOptions::default()).expect("open");
    let mut envelopes: Vec<Envelope> = log
        .reader()
        .iter_from(Seq::FIRST)
        .map(|record| {
            let record = record.expect("read");
            Envelope::decode(record.seq.get(), record.timestamp_ms, &record.payload)
                .expect("decode")
        })
        .collect();
    drop(log);
    assert_eq!(envelopes.len(), 3);
    envelopes[1].data = envelopes[1].data.replace("second", "SECOND");

    let rewritten = data_dir();
    let mut log = Log::open(&rewritten.path().join("log"), LogOptions::default()).expect("open");
    for envelope in &envelopes {
        let payload = envelope.encode();
        log.append_batch(&[RecordInput {
            timestamp_ms: envelope.ts_ms,
            payload: &payload,
        }])
        .expect("append");
    }
    drop(log);

    let db = rewritten.path().to_str().expect("utf-8 path");
    let (code, _, stderr) = cli(&["--db", db, "verify"]);
    assert_ne!(code, 0, "verify fails on a rewritten event");
    assert!(
        stderr.contains("hash chain broken at seq 2"),
        "verify names the first rewritten seq: {stderr}"
    );
    let (code, stderr) = Server::start_expecting_failure(rewritten.path());
    assert_ne!(code, 0, "the server refuses a rewritten history: {stderr}");
}
