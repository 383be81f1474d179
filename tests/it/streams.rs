//! The stream index on disk (issue 11): `GET /v1/streams/{stream}` finds a stream's events
//! in index files for full ranges of 65,536 events and in memory for the rest, and answers
//! the same after a file is damaged and the server killed, because start-up checks every
//! file and rebuilds a bad one from the log.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{data_dir, Server};

/// Events in the log: past the first range (65,536 events), so that one index file exists.
const EVENTS: usize = 66_000;

/// The first index file of a data directory.
fn first_index_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("streams").join(format!("{:020}.idx", 1))
}

#[tokio::test]
async fn a_damaged_index_file_is_rebuilt_after_kill_9_and_reads_stay_the_same() {
    let dir = data_dir();
    let mut server = Server::start(dir.path(), &[]).await;
    let (status, _) = server.post("/v1/branches", &json!({"name": "side"})).await;
    assert_eq!(status, 201);
    for batch in 0..EVENTS / 1000 {
        let events: Vec<Value> = (0..1000)
            .map(|n| {
                let n = batch * 1000 + n;
                json!({"type": "item.added", "stream": format!("s/{}", n % 7), "data": {"n": n}})
            })
            .collect();
        let (status, answer) = server
            .post_with(
                "/v1/events",
                &json!({"events": events}),
                &[("prefer", "return=minimal")],
            )
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    for n in 0..3 {
        let body = json!({"type": "item.added", "stream": "s/3", "data": {"side": n}});
        let (status, _) = server.post("/v1/events?branch=side", &body).await;
        assert_eq!(status, 201);
    }
    let file = first_index_file(dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !file.exists() {
        assert!(
            Instant::now() < deadline,
            "the first index file was not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queries = [
        "/v1/streams/s%2F3",
        "/v1/streams/s%2F3?from=65530&limit=3",
        "/v1/streams/s%2F3?at=65540&limit=2&from=65500",
        "/v1/streams/s%2F3?at=100",
        "/v1/streams/s%2F0?from=65000&limit=500",
        "/v1/streams/s%2F3?branch=side",
        "/v1/streams/none",
    ];
    let mut before = Vec::new();
    for query in queries {
        let (status, answer) = server.get(query).await;
        assert_eq!(status, 200, "{query}: {answer}");
        before.push(answer);
    }
    let whole = &before[0];
    let in_stream = (0..EVENTS).filter(|n| n % 7 == 3).count();
    assert_eq!(whole["version"], json!(in_stream));
    assert_eq!(whole["events"].as_array().map(Vec::len), Some(in_stream));
    assert_eq!(before[1]["events"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        before[2]["version"],
        json!((0..65_539).filter(|n| n % 7 == 3).count())
    );
    assert_eq!(
        before[5]["version"],
        json!(3),
        "a branch's stream is its own events"
    );

    let original = std::fs::read(&file).expect("read the index file");
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(&file, &damaged).expect("damage the index file");
    server.kill9();

    let server = Server::start(dir.path(), &[]).await;
    for (query, expected) in queries.iter().zip(&before) {
        let (status, answer) = server.get(query).await;
        assert_eq!(status, 200, "{query}: {answer}");
        assert_eq!(&answer, expected, "{query} after the restart");
    }
    assert_eq!(
        std::fs::read(&file).expect("read the index file"),
        original,
        "the damaged file was rebuilt from the log"
    );
}

/// The seqs and branches of a stream read's events.
fn seqs_and_branches(read: &Value) -> Vec<(u64, String)> {
    read["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| {
            let seq = event["seq"].as_u64().expect("seq");
            (seq, event["branch"].as_str().expect("branch").to_owned())
        })
        .collect()
}

/// A branch forks the whole state, its streams included: a stream read on a branch lists
/// the events it inherited at the fork before its own, and its version is the one an
/// append on the branch checks `expected_version` against, also for a branch of a branch,
/// across pages and in the past.
#[tokio::test]
async fn a_stream_on_a_branch_holds_what_it_inherited_and_its_version_takes_appends() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let event = json!({"type": "item.added", "stream": "s"});
    for _ in 0..2 {
        assert_eq!(server.post("/v1/events", &event).await.0, 201);
    }
    assert_eq!(
        server.post("/v1/branches", &json!({"name": "b"})).await.0,
        201
    ); // seq 3
    let (status, read) = server.get("/v1/streams/s?branch=b").await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["version"], 2);
    assert_eq!(
        seqs_and_branches(&read),
        [(1, "main".into()), (2, "main".into())]
    );

    let (status, written) = server
        .post(
            "/v1/events?branch=b",
            &json!({"type": "item.added", "stream": "s", "expected_version": 2}),
        )
        .await;
    assert_eq!(
        status, 201,
        "the version read is the one appends check: {written}"
    );
    assert_eq!(server.post("/v1/events", &event).await.0, 201); // seq 5, main only

    let (_, read) = server.get("/v1/streams/s?branch=b").await;
    assert_eq!(read["version"], 3);
    assert_eq!(
        seqs_and_branches(&read),
        [(1, "main".into()), (2, "main".into()), (4, "b".into())],
        "main's event after the fork is not the branch's"
    );
    let (_, page) = server.get("/v1/streams/s?branch=b&limit=2").await;
    assert_eq!(page["next"], 4, "a page ends inside the inheritance");
    let (_, page) = server.get("/v1/streams/s?branch=b&limit=2&from=4").await;
    assert_eq!(seqs_and_branches(&page), [(4, "b".into())]);
    assert_eq!(page["next"], Value::Null);
    let (_, past) = server.get("/v1/streams/s?branch=b&at=3").await;
    assert_eq!(past["version"], 2);
    assert_eq!(seqs_and_branches(&past).len(), 2);
    let (_, main) = server.get("/v1/streams/s").await;
    assert_eq!(main["version"], 3);
    assert_eq!(
        seqs_and_branches(&main),
        [(1, "main".into()), (2, "main".into()), (5, "main".into())]
    );

    // A branch of the branch, forked before the branch's own event.
    assert_eq!(
        server
            .post("/v1/branches", &json!({"name": "c", "from": "b", "at": 3}))
            .await
            .0,
        201
    );
    let (_, read) = server.get("/v1/streams/s?branch=c").await;
    assert_eq!(read["version"], 2);
    assert_eq!(
        seqs_and_branches(&read),
        [(1, "main".into()), (2, "main".into())]
    );
    let (status, refused) = server
        .post(
            "/v1/events?branch=c",
            &json!({"type": "item.added", "stream": "s", "expected_version": 3}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["current_version"], 2);
}
