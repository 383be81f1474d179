//! Appends, conditional appends, streams, replay filters and the audit head, through HTTP.

use serde_json::{json, Value};

use crate::support::{data_dir, Server};

#[tokio::test]
async fn append_returns_durable_envelopes_with_a_hash_chain() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, body) = server
        .post_with(
            "/v1/events",
            &json!({"type": "order.placed", "stream": "order/1", "data": {"qty": 2}, "session": "s-1", "meta": {"model": "m"}}),
            &[("swarmlog-actor", "agent-1")],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["seq"], json!(1));
    let event = &body["events"][0];
    assert_eq!(event["seq"], json!(1));
    assert_eq!(event["type"], json!("order.placed"));
    assert_eq!(event["stream"], json!("order/1"));
    assert_eq!(event["branch"], json!("main"));
    assert_eq!(event["actor"], json!("agent-1"));
    assert_eq!(event["session"], json!("s-1"));
    assert_eq!(event["meta"], json!({"model": "m"}));
    assert_eq!(event["data"], json!({"qty": 2}));
    assert!(
        event.get("correlation").is_none(),
        "absent optional fields are omitted"
    );
    assert!(
        event["ts"]
            .as_str()
            .is_some_and(|ts| ts.ends_with('Z') && ts.len() == 24),
        "ts is RFC 3339 with ms: {}",
        event["ts"]
    );
    let (_, head) = server.get("/v1/audit/head").await;
    assert_eq!(head["seq"], json!(1));
    assert_eq!(head["hash"], event["hash"]);

    let (status, batch) = server
        .post(
            "/v1/events",
            &json!({"events": [
                {"type": "order.paid", "stream": "order/1"},
                {"type": "order.shipped", "stream": "order/1", "correlation": "c-9"}
            ], "correlation": "c-1"}),
        )
        .await;
    assert_eq!(status, 201, "{batch}");
    assert_eq!(batch["seq"], json!(3));
    assert_eq!(batch["events"][0]["correlation"], json!("c-1"));
    assert_eq!(
        batch["events"][1]["correlation"],
        json!("c-9"),
        "a per-event field overrides the batch's"
    );
    assert_ne!(batch["events"][0]["hash"], event["hash"]);
}

#[tokio::test]
async fn prefer_return_minimal_answers_the_seq_and_count_without_the_events() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let batch = json!({"events": [
        {"type": "bulk.loaded", "stream": "bulk/1", "data": {"n": 1}},
        {"type": "bulk.loaded", "stream": "bulk/2", "data": {"n": 2}},
        {"type": "bulk.loaded", "stream": "bulk/3", "data": {"n": 3}},
    ]});
    let response = server
        .http
        .post(format!("{}/v1/events", server.url))
        .header("prefer", "respond-async, return=minimal")
        .json(&batch)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(
        response.headers()["preference-applied"],
        "return=minimal",
        "RFC 7240 says which preference was honoured"
    );
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer, json!({"seq": 3, "count": 3}));
    // Written all the same, and durable.
    let events = server.replay("").await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["data"], json!({"n": 3}));

    // Without the preference, or with another, the events come back.
    let (status, full) = server
        .post_with(
            "/v1/events",
            &json!({"type": "one", "stream": "s"}),
            &[("prefer", "return=representation")],
        )
        .await;
    assert_eq!(status, 201, "{full}");
    assert_eq!(full["events"][0]["seq"], json!(4), "{full}");
}

#[tokio::test]
async fn a_stream_reads_in_pages_with_next() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let events: Vec<Value> = (0..5)
        .map(|n| json!({"type": "page.item", "stream": "paged", "data": {"n": n}}))
        .collect();
    let (status, _) = server.post("/v1/events", &json!({"events": events})).await;
    assert_eq!(status, 201);
    server.append("other", json!({})).await; // seq 6, another stream
    let (status, first) = server.get("/v1/streams/paged?limit=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["version"], json!(5), "the whole stream's version");
    let ns = |page: &Value| -> Vec<Value> {
        let events = page["events"].as_array().expect("events");
        events
            .iter()
            .map(|event| event["data"]["n"].clone())
            .collect()
    };
    assert_eq!(
        (ns(&first), first["next"].clone()),
        (vec![json!(0), json!(1)], json!(3))
    );
    let (_, second) = server.get("/v1/streams/paged?limit=2&from=3").await;
    assert_eq!(
        (ns(&second), second["next"].clone()),
        (vec![json!(2), json!(3)], json!(5))
    );
    let (_, last) = server.get("/v1/streams/paged?limit=2&from=5").await;
    assert_eq!(
        (ns(&last), last["next"].clone()),
        (vec![json!(4)], Value::Null)
    );
    // Without limit, the whole stream (SPEC §3), or its rest from `from`.
    let (_, whole) = server.get("/v1/streams/paged").await;
    assert_eq!((ns(&whole).len(), whole["next"].clone()), (5, Value::Null));
    let (_, rest) = server.get("/v1/streams/paged?from=3").await;
    assert_eq!(ns(&rest), vec![json!(2), json!(3), json!(4)]);
    let (_, past) = server.get("/v1/streams/paged?at=2&limit=1").await;
    assert_eq!(
        (past["version"].clone(), past["next"].clone()),
        (json!(2), json!(2))
    );
    for query in ["limit=0", "limit=10001"] {
        let (status, refused) = server.get(&format!("/v1/streams/paged?{query}")).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some("invalid_query")),
            "{query}"
        );
    }
}

#[tokio::test]
async fn expected_version_lets_exactly_one_concurrent_writer_win() {
    let dir = data_dir();
    let server = std::sync::Arc::new(Server::start(dir.path(), &[]).await);
    server.append("counter/1", json!({"n": 0})).await;
    for round in 1..=5u64 {
        let mut tasks = Vec::new();
        for client in 0..8 {
            let server = server.clone();
            tasks.push(tokio::spawn(async move {
                server
                    .post(
                        "/v1/events",
                        &json!({"type": "counter.bumped", "stream": "counter/1", "expected_version": round, "data": {"client": client}}),
                    )
                    .await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            let (status, body) = task.await.expect("the task runs");
            match status {
                201 => winners += 1,
                409 => {
                    assert_eq!(body["error"]["code"], json!("version_conflict"));
                    assert_eq!(body["error"]["current_version"], json!(round + 1));
                }
                other => panic!("unexpected status {other}: {body}"),
            }
        }
        assert_eq!(
            winners, 1,
            "round {round}: exactly one conditional append wins"
        );
    }
    let (status, stream) = server.get("/v1/streams/counter%2F1").await;
    assert_eq!(status, 200);
    assert_eq!(stream["version"], json!(6));
    assert_eq!(stream["events"].as_array().map(Vec::len), Some(6));
}

#[tokio::test]
async fn a_batch_is_atomic_and_checks_versions_in_order() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, body) = server
        .post(
            "/v1/events",
            &json!({"events": [
                {"type": "a.b", "stream": "s/1", "expected_version": 0},
                {"type": "a.b", "stream": "s/1", "expected_version": 0}
            ]}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["index"], json!(1));
    assert_eq!(
        server.head().await,
        0,
        "a refused batch writes nothing, not even its valid first event"
    );
    let (status, _) = server
        .post(
            "/v1/events",
            &json!({"events": [
                {"type": "a.b", "stream": "s/1", "expected_version": 0},
                {"type": "a.b", "stream": "s/1", "expected_version": 1}
            ]}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(server.head().await, 2);
}

#[tokio::test]
async fn streams_read_versions_and_time_travel() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, empty) = server.get("/v1/streams/nothing-here").await;
    assert_eq!(status, 200);
    assert_eq!(
        empty,
        json!({"stream": "nothing-here", "version": 0, "events": [], "next": null})
    );
    let first = server.append("doc/1", json!({"v": 1})).await;
    server.append("doc/2", json!({"v": 1})).await;
    server.append("doc/1", json!({"v": 2})).await;
    let (_, stream) = server.get("/v1/streams/doc%2F1").await;
    assert_eq!(stream["version"], json!(2));
    let data: Vec<Value> = stream["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["data"]["v"].clone())
        .collect();
    assert_eq!(data, vec![json!(1), json!(2)]);
    let (_, past) = server.get(&format!("/v1/streams/doc%2F1?at={first}")).await;
    assert_eq!(
        past["version"],
        json!(1),
        "?at= shows the stream as it was after that seq"
    );
}

#[tokio::test]
async fn replay_filters_by_range_type_stream_actor_and_session() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for index in 0..10 {
        let event_type = if index % 2 == 0 {
            "job.started"
        } else {
            "job.finished"
        };
        let actor = if index < 5 { "alice" } else { "bob" };
        let (status, _) = server
            .post_with(
                "/v1/events",
                &json!({"type": event_type, "stream": format!("job/{}", index % 3), "session": format!("s{}", index % 2)}),
                &[("swarmlog-actor", actor)],
            )
            .await;
        assert_eq!(status, 201);
    }
    let seqs = |events: Vec<Value>| -> Vec<u64> {
        events
            .iter()
            .map(|e| e["seq"].as_u64().expect("seq"))
            .collect()
    };
    assert_eq!(seqs(server.replay("").await), (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(server.replay("?from=4&until=6").await), vec![4, 5, 6]);
    assert_eq!(
        seqs(server.replay("?types=job.fin*").await),
        vec![2, 4, 6, 8, 10]
    );
    assert_eq!(
        seqs(server.replay("?types=nothing.*,job.started").await),
        vec![1, 3, 5, 7, 9]
    );
    assert_eq!(
        seqs(server.replay("?stream=job/0").await),
        vec![1, 4, 7, 10]
    );
    assert_eq!(
        seqs(server.replay("?actor=bob").await),
        vec![6, 7, 8, 9, 10]
    );
    assert_eq!(seqs(server.replay("?session=s1&limit=2").await), vec![2, 4]);
}
