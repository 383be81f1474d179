//! Bad requests: every one gets the right status and `error.code`, a message, and writes
//! nothing.

use serde_json::{json, Value};

use crate::support::{data_dir, Server};

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

#[tokio::test]
async fn bad_requests_are_refused_precisely_and_write_nothing() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    server.append("s/1", json!({})).await;
    let head = server.head().await;
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"type": "a.b", "stream": "s"}))
        .collect();
    let long_id = "x".repeat(257);
    let huge = json!({"type": "a.b", "stream": "s", "data": "y".repeat(1024 * 1024)});

    let posts: Vec<(&str, Value, u16, &str)> = vec![
        ("/v1/events", json!({"stream": "s"}), 422, "missing_field"),
        (
            "/v1/events",
            json!({"type": 7, "stream": "s"}),
            422,
            "invalid_value",
        ),
        (
            "/v1/events",
            json!({"type": "a.b", "stream": "s", "colour": "red"}),
            422,
            "unknown_field",
        ),
        (
            "/v1/events",
            json!({"type": "task.claimed", "stream": "s"}),
            422,
            "reserved_type",
        ),
        (
            "/v1/events",
            json!({"type": "lock.acquired", "stream": "s"}),
            422,
            "reserved_type",
        ),
        (
            "/v1/events",
            json!({"type": "a.b", "stream": ""}),
            422,
            "invalid_id",
        ),
        (
            "/v1/events",
            json!({"type": "a.b", "stream": "bad\nstream"}),
            422,
            "invalid_id",
        ),
        (
            "/v1/events",
            json!({"type": "a.b", "stream": long_id}),
            422,
            "invalid_id",
        ),
        (
            "/v1/events",
            json!({"type": "", "stream": "s"}),
            422,
            "invalid_id",
        ),
        (
            "/v1/events",
            json!({"type": "a.b", "stream": "s", "expected_version": -1}),
            422,
            "invalid_value",
        ),
        (
            "/v1/events",
            json!({"type": "a.b", "stream": "s", "meta": "not an object"}),
            422,
            "invalid_value",
        ),
        (
            "/v1/events",
            json!({"type": "a.b", "stream": "s", "session": ""}),
            422,
            "invalid_id",
        ),
        (
            "/v1/events",
            json!({"type": "a.b", "stream": "s", "data": nested(70)}),
            422,
            "too_deep",
        ),
        ("/v1/events", json!({"events": []}), 422, "invalid_batch"),
        (
            "/v1/events",
            json!({"events": too_many}),
            422,
            "invalid_batch",
        ),
        (
            "/v1/events",
            json!({"events": [{"type": "a.b", "stream": "s"}, {"type": "kv.put", "stream": "s"}]}),
            422,
            "reserved_type",
        ),
        (
            "/v1/events",
            json!({"events": [{"type": "a.b", "stream": "s"}], "extra": 1}),
            422,
            "unknown_field",
        ),
        (
            "/v1/events",
            json!({"type": "a.b", "stream": "s/1", "expected_version": 0}),
            409,
            "version_conflict",
        ),
        (
            "/v1/events",
            json!({"type": "a.b", "stream": "s/1", "expected_version": 5}),
            409,
            "version_conflict",
        ),
        (
            "/v1/events?branch=nope",
            json!({"type": "a.b", "stream": "s"}),
            404,
            "branch_not_found",
        ),
        (
            "/v1/events?branch=%01",
            json!({"type": "a.b", "stream": "s"}),
            422,
            "invalid_id",
        ),
        (
            "/v1/events?colour=red",
            json!({"type": "a.b", "stream": "s"}),
            400,
            "invalid_query",
        ),
        (
            "/v1/events",
            json!(["not", "an", "object"]),
            422,
            "invalid_value",
        ),
        // A request that takes no fields refuses one instead of ignoring it.
        (
            "/v1/agents/a-1/heartbeat",
            json!({"ttl_ms": 5000}),
            422,
            "unknown_field",
        ),
        ("/v1/snapshots", json!({"now": true}), 422, "unknown_field"),
        ("/v1/events", huge, 413, "payload_too_large"),
        ("/v1/nothing", json!({}), 404, "route_not_found"),
        ("/v1/streams/s", json!({}), 405, "method_not_allowed"),
    ];
    for (path, body, status, code) in &posts {
        let (got_status, got) = server.post(path, body).await;
        assert_eq!(
            (got_status, got["error"]["code"].as_str()),
            (*status, Some(*code)),
            "POST {path} {}",
            body.to_string().chars().take(80).collect::<String>()
        );
        assert!(
            got["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "a message explains {code}"
        );
    }

    let raws: Vec<(&str, u16, &str)> = vec![
        ("{\"type\": \"a.b\", ", 400, "malformed_json"),
        ("", 422, "missing_field"),
        ("not json at all", 400, "malformed_json"),
    ];
    for (body, status, code) in raws {
        let (got_status, got) = server.post_raw("/v1/events", body).await;
        assert_eq!(
            (got_status, got["error"]["code"].as_str()),
            (status, Some(code)),
            "raw body {body:?}"
        );
    }

    let gets: Vec<(&str, u16, &str)> = vec![
        ("/v1/events?from=abc", 400, "invalid_query"),
        ("/v1/events?from=9&until=3", 422, "invalid_value"),
        ("/v1/events?types=%5B", 400, "invalid_query"),
        ("/v1/events?limit=0", 400, "invalid_query"),
        ("/v1/events?branch=ghost", 404, "branch_not_found"),
        // An id in a query is checked on every route, even one that filters by it: a
        // malformed one is refused, never read as "nothing matches".
        ("/v1/tasks?session=%C2%9B", 422, "invalid_id"),
        ("/v1/agents?type=%01", 422, "invalid_id"),
        ("/v1/audit/head?branch=%C2%9B", 422, "invalid_id"),
        ("/v1/streams/s?at=x", 400, "invalid_query"),
        ("/v1/streams/s?branch=ghost", 404, "branch_not_found"),
        ("/v2/events", 404, "route_not_found"),
    ];
    for (path, status, code) in gets {
        let (got_status, got) = server.get(path).await;
        assert_eq!(
            (got_status, got["error"]["code"].as_str()),
            (status, Some(code)),
            "GET {path}"
        );
    }

    let response = server
        .http
        .get(format!("{}/v1/events", server.url))
        .header("accept", "text/event-stream")
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], json!("invalid_last_event_id"));

    let long_key = "k".repeat(300);
    // Too long, and not visible ASCII (a space was once accepted).
    for key in [long_key.as_str(), "pay 17"] {
        let (status, body) = server
            .post_with(
                "/v1/events",
                &json!({"type": "a.b", "stream": "s"}),
                &[("idempotency-key", key)],
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_idempotency_key")),
            "Idempotency-Key {key:?}"
        );
    }

    assert_eq!(
        server.head().await,
        head,
        "no refused request wrote anything"
    );
}

/// SPEC §6's limits are settings of `serve`: tightened (or, for TTLs, widened), every one
/// refuses exactly past its new value, names the value, and writes nothing; at the value
/// the request passes.
#[tokio::test]
async fn limits_set_on_the_command_line_are_enforced_at_their_values() {
    let dir = data_dir();
    let server = Server::start(
        dir.path(),
        &[
            "--max-body-bytes",
            "2048",
            "--max-batch-events",
            "3",
            "--max-id-bytes",
            "64",
            "--max-json-depth",
            "6",
            "--min-ttl-ms",
            "1000",
            "--max-ttl-ms",
            "172800000",
        ],
    )
    .await;
    let event = |stream: &str| json!({"type": "a.b", "stream": stream});
    let id_64 = "i".repeat(64);
    let id_65 = "i".repeat(65);

    // At each limit: accepted.
    let at_limit: Vec<(String, Value)> = vec![
        (
            "/v1/events".into(),
            json!({"type": "a.b", "stream": "s", "data": {"d": "x".repeat(1900)}}),
        ),
        (
            "/v1/events".into(),
            json!({"events": [event("s"), event("s"), event("s")]}),
        ),
        ("/v1/events".into(), event(&id_64)),
        (
            "/v1/events".into(),
            json!({"type": "a.b", "stream": "s", "data": nested(5)}),
        ),
        (
            "/v1/locks/short/acquire".into(),
            json!({"owner": "a", "ttl_ms": 1000}),
        ),
        // 36 h: above the default 24 h, within the 48 h set here.
        (
            "/v1/locks/long/acquire".into(),
            json!({"owner": "a", "ttl_ms": 129_600_000}),
        ),
        (
            "/v1/tasks".into(),
            json!({"tasks": [{"type": "t"}, {"type": "t"}, {"type": "t"}]}),
        ),
    ];
    for (path, body) in &at_limit {
        let (status, answer) = server.post(path, body).await;
        assert!(
            status == 200 || status == 201,
            "{path} {body}: {status} {answer}"
        );
    }
    let head = server.head().await;

    // One past each limit: refused with the configured value.
    let past_limit: Vec<(String, Value, u16, &str, &str)> = vec![
        (
            "/v1/events".into(),
            json!({"type": "a.b", "stream": "s", "data": {"d": "x".repeat(2100)}}),
            413,
            "payload_too_large",
            "2048",
        ),
        (
            "/v1/events".into(),
            json!({"events": [event("s"), event("s"), event("s"), event("s")]}),
            422,
            "invalid_batch",
            "3",
        ),
        ("/v1/events".into(), event(&id_65), 422, "invalid_id", "64"),
        (
            "/v1/events".into(),
            json!({"type": "a.b", "stream": "s", "data": nested(6)}),
            422,
            "too_deep",
            "6",
        ),
        (
            "/v1/locks/short2/acquire".into(),
            json!({"owner": "a", "ttl_ms": 999}),
            422,
            "invalid_value",
            "1000",
        ),
        (
            "/v1/locks/long2/acquire".into(),
            json!({"owner": "a", "ttl_ms": 172_800_001}),
            422,
            "invalid_value",
            "172800000",
        ),
        (
            "/v1/tasks".into(),
            json!({"tasks": [{"type": "t"}, {"type": "t"}, {"type": "t"}, {"type": "t"}]}),
            422,
            "invalid_value",
            "3",
        ),
    ];
    for (path, body, status, code, named) in &past_limit {
        let (got, answer) = server.post(path, body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{path}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(named),
            "{path}: the message names the limit: {message}"
        );
    }
    assert_eq!(server.head().await, head, "refused requests wrote nothing");
}
