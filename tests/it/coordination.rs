//! State cells, kv, `?at=` time travel, branches and `fence` through HTTP (SPEC §3, issue 3),
//! the lost-update scenario, bad inputs that must write nothing, and restarts that must
//! reproduce the exact state. Locks, agents and auth have their own modules; the helpers
//! they share (`call`, `wait_until`) live here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{cli, data_dir, Server};

/// Any request with a JSON body and extra headers; returns status and JSON (or the text).
pub async fn call(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
    let mut request = server.http.request(method, format!("{}{path}", server.url));
    if let Some(body) = body {
        request = request.json(body);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `PUT path` with a JSON body.
pub async fn put(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    call(server, "PUT", path, Some(body), &[]).await
}

/// Polls `probe` until it returns `Some`, for at most 20 s (a bound against hangs, not a
/// timing assertion: the condition itself is what the test checks).
pub async fn wait_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The error code of an error answer.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn state_cells_count_versions_and_cas_refuses_a_stale_version() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, created) = server
        .post("/v1/state/task%3Anext/init", &json!({"value": 0}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created,
        json!({"key": "task:next", "value": 0, "version": 1, "seq": 1})
    );
    let (status, unchanged) = server
        .post("/v1/state/task%3Anext/init", &json!({"value": 99}))
        .await;
    assert_eq!(
        status, 200,
        "init of an existing cell is a no-op: {unchanged}"
    );
    assert_eq!(unchanged["value"], json!(0));
    assert_eq!(unchanged["version"], json!(1));
    assert_eq!(server.head().await, 1, "the no-op init wrote nothing");

    let (status, read) = server.get("/v1/state/task%3Anext").await;
    assert_eq!(
        (status, read),
        (200, json!({"key": "task:next", "value": 0, "version": 1}))
    );
    let (status, swapped) = server
        .post(
            "/v1/state/task%3Anext/cas",
            &json!({"expected_version": 1, "value": 1}),
        )
        .await;
    assert_eq!(status, 200, "{swapped}");
    assert_eq!(
        (swapped["value"].clone(), swapped["version"].clone()),
        (json!(1), json!(2))
    );
    let (status, conflict) = server
        .post(
            "/v1/state/task%3Anext/cas",
            &json!({"expected_version": 1, "value": 7}),
        )
        .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(code(&conflict), "version_conflict");
    assert_eq!(conflict["error"]["current_version"], json!(2));
    let (status, set) = put(
        &server,
        "/v1/state/task%3Anext",
        &json!({"value": {"any": ["json", 1, null]}}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set["version"],
        json!(3),
        "an unconditional set also counts a version"
    );
    assert_eq!(server.head().await, 3);

    // Leader election: expected_version null or 0 means "must not exist".
    let (status, leader) = server
        .post(
            "/v1/state/leader/cas",
            &json!({"expected_version": null, "value": "agent-1"}),
        )
        .await;
    assert_eq!((status, leader["version"].clone()), (200, json!(1)));
    for expected in [json!(null), json!(0)] {
        let (status, refused) = server
            .post(
                "/v1/state/leader/cas",
                &json!({"expected_version": expected, "value": "agent-2"}),
            )
            .await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(code(&refused), "version_conflict");
        assert_eq!(refused["error"]["current_version"], json!(1));
    }
    let (status, absent) = server
        .post(
            "/v1/state/other/cas",
            &json!({"expected_version": 3, "value": 1}),
        )
        .await;
    assert_eq!(
        status, 409,
        "a cell that does not exist is at version 0: {absent}"
    );
    assert_eq!(absent["error"]["current_version"], json!(0));
    let (status, missing) = server.get("/v1/state/nothing").await;
    assert_eq!((status, code(&missing)), (404, "not_found"));
    let (status, no_version) = server
        .post("/v1/state/leader/cas", &json!({"value": "x"}))
        .await;
    assert_eq!(
        (status, code(&no_version)),
        (422, "missing_field"),
        "{no_version}"
    );
    assert_eq!(server.head().await, 4, "no refused write wrote anything");
}

#[tokio::test]
async fn concurrent_read_modify_write_with_cas_loses_no_update() {
    const CLIENTS: u64 = 12;
    const INCREMENTS: u64 = 10;
    let dir = data_dir();
    let server = Arc::new(Server::start(dir.path(), &[]).await);
    let (status, _) = server
        .post("/v1/state/counter/init", &json!({"value": 0}))
        .await;
    assert_eq!(status, 201);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let server = server.clone();
        clients.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..INCREMENTS {
                loop {
                    let (status, cell) = server.get("/v1/state/counter").await;
                    assert_eq!(status, 200);
                    let value = cell["value"].as_u64().expect("a number");
                    let version = cell["version"].as_u64().expect("a version");
                    let (status, answer) = server
                        .post(
                            "/v1/state/counter/cas",
                            &json!({"expected_version": version, "value": value + 1}),
                        )
                        .await;
                    match status {
                        200 => break,
                        409 => {
                            assert_eq!(code(&answer), "version_conflict");
                            conflicts += 1;
                        }
                        other => panic!("unexpected {other}: {answer}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for client in clients {
        conflicts += client.await.expect("the client runs");
    }
    let (_, cell) = server.get("/v1/state/counter").await;
    assert_eq!(
        cell["value"],
        json!(CLIENTS * INCREMENTS),
        "every increment survived ({conflicts} CAS conflicts were retried)"
    );
    assert_eq!(cell["version"], json!(CLIENTS * INCREMENTS + 1));
    let sets = server.replay("?types=state.set").await;
    assert_eq!(
        sets.len() as u64,
        CLIENTS * INCREMENTS + 1,
        "exactly one event per successful write"
    );
}

#[tokio::test]
async fn kv_is_last_writer_wins_with_delete_and_prefix_listing() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for (key, value) in [
        ("task:1:owner", json!("agent-7")),
        ("task:2:owner", json!("agent-8")),
        ("task:1:status", json!({"state": "in_progress"})),
        ("other", json!(1)),
    ] {
        let (status, body) = put(
            &server,
            &format!("/v1/kv/{}", key.replace(':', "%3A")),
            &json!({"value": value}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["key"], json!(key));
    }
    let (status, again) = put(&server, "/v1/kv/other", &json!({"value": 2})).await;
    assert_eq!((status, again["seq"].clone()), (200, json!(5)));
    let (_, read) = server.get("/v1/kv/other").await;
    assert_eq!(read, json!({"key": "other", "value": 2}));
    let (status, listed) = server.get("/v1/kv?prefix=task%3A1%3A").await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = listed["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["key"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["task:1:owner", "task:1:status"],
        "listed in key order"
    );
    let (_, everything) = server.get("/v1/kv").await;
    assert_eq!(everything["entries"].as_array().map(Vec::len), Some(4));
    let (status, deleted) = call(&server, "DELETE", "/v1/kv/other", None, &[]).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deleted"], json!(true));
    let (status, gone) = server.get("/v1/kv/other").await;
    assert_eq!((status, code(&gone)), (404, "not_found"));
    let (status, twice) = call(&server, "DELETE", "/v1/kv/other", None, &[]).await;
    assert_eq!(
        (status, code(&twice)),
        (404, "not_found"),
        "deleting a missing key is 404: {twice}"
    );
    let types: Vec<String> = server
        .replay("")
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "kv.put",
            "kv.put",
            "kv.put",
            "kv.put",
            "kv.put",
            "kv.deleted"
        ]
    );
}

#[tokio::test]
async fn concurrent_reads_at_different_seqs_each_see_their_own_past() {
    // The server keeps the last state it rebuilt for `?at=`: reads that alternate between
    // two seqs, all at once, must each get the state of their own seq.
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for value in ["first", "second", "third"] {
        put(&server, "/v1/state/doc", &json!({"value": value})).await; // seqs 1, 2, 3
    }
    let reads = (0..24).map(|n| {
        let at = [1, 3, 2][n % 3];
        let server = &server;
        async move { (at, server.get(&format!("/v1/state/doc?at={at}")).await) }
    });
    for (at, (status, cell)) in futures::future::join_all(reads).await {
        assert_eq!(status, 200, "{cell}");
        assert_eq!(cell["version"], json!(at), "at={at}: {cell}");
    }
}

#[tokio::test]
async fn at_reads_the_state_as_it_was_after_that_seq() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    put(&server, "/v1/state/doc", &json!({"value": "first"})).await; // seq 1
    put(&server, "/v1/kv/k", &json!({"value": "v1"})).await; // seq 2
    put(&server, "/v1/state/doc", &json!({"value": "second"})).await; // seq 3
    call(&server, "DELETE", "/v1/kv/k", None, &[]).await; // seq 4
    let (status, lock) = server
        .post(
            "/v1/locks/db/acquire",
            &json!({"owner": "a", "ttl_ms": 60000}),
        )
        .await; // seq 5
    assert_eq!(status, 200, "{lock}");
    server
        .post("/v1/agents", &json!({"id": "a", "type": "worker"}))
        .await; // seq 6

    let (status, past) = server.get("/v1/state/doc?at=1").await;
    assert_eq!(
        (status, past),
        (200, json!({"key": "doc", "value": "first", "version": 1}))
    );
    let (_, now) = server.get("/v1/state/doc").await;
    assert_eq!(now["version"], json!(2));
    let (status, before) = server.get("/v1/state/doc?at=0").await;
    assert_eq!(
        status, 404,
        "before the first event the cell did not exist: {before}"
    );
    let (status, kv) = server.get("/v1/kv/k?at=3").await;
    assert_eq!(
        (status, kv["value"].clone()),
        (200, json!("v1")),
        "a deleted key reads as it was"
    );
    let (_, listed) = server.get("/v1/kv?prefix=k&at=2").await;
    assert_eq!(listed["entries"].as_array().map(Vec::len), Some(1));
    let (_, locks_before) = server.get("/v1/locks?at=4").await;
    assert_eq!(locks_before["locks"], json!([]));
    let (_, locks_after) = server.get("/v1/locks/db?at=5").await;
    assert_eq!(locks_after["holders"][0]["token"], json!(5));
    let (status, agents_before) = server.get("/v1/agents/a?at=5").await;
    assert_eq!(status, 404, "{agents_before}");
    let (_, agents_after) = server.get("/v1/agents?at=6").await;
    assert_eq!(agents_after["agents"][0]["id"], json!("a"));
    let (status, beyond) = server.get("/v1/state/doc?at=99").await;
    assert_eq!((status, code(&beyond)), (422, "invalid_value"), "{beyond}");
    let (status, not_a_number) = server.get("/v1/state/doc?at=yesterday").await;
    assert_eq!(
        (status, code(&not_a_number)),
        (400, "invalid_query"),
        "{not_a_number}"
    );
}

#[tokio::test]
async fn branches_fork_the_state_and_isolate_their_writes() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    put(&server, "/v1/kv/shared", &json!({"value": "before"})).await; // seq 1
    let (status, created) = server
        .post("/v1/branches", &json!({"name": "agent-1"}))
        .await; // seq 2
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], json!("agent-1"));
    assert_eq!(created["from"], json!("main"));
    assert_eq!(created["at"], json!(1));
    let (status, sibling) = server
        .post("/v1/branches", &json!({"name": "agent-2"}))
        .await; // seq 3
    assert_eq!(status, 201, "{sibling}");

    let (_, inherited) = server.get("/v1/kv/shared?branch=agent-1").await;
    assert_eq!(
        inherited["value"],
        json!("before"),
        "a branch starts with its parent's state"
    );
    let (status, _) = put(
        &server,
        "/v1/kv/result?branch=agent-1",
        &json!({"value": "Agent 1 result"}),
    )
    .await;
    assert_eq!(status, 200);
    put(
        &server,
        "/v1/kv/shared?branch=agent-1",
        &json!({"value": "changed on agent-1"}),
    )
    .await;
    put(
        &server,
        "/v1/state/status?branch=agent-2",
        &json!({"value": "done"}),
    )
    .await;
    put(
        &server,
        "/v1/kv/shared",
        &json!({"value": "changed on main"}),
    )
    .await;

    let (_, own) = server.get("/v1/kv/result?branch=agent-1").await;
    assert_eq!(own["value"], json!("Agent 1 result"));
    for path in ["/v1/kv/result", "/v1/kv/result?branch=agent-2"] {
        let (status, _) = server.get(path).await;
        assert_eq!(
            status, 404,
            "{path}: a branch's write is invisible elsewhere"
        );
    }
    let (status, _) = server.get("/v1/state/status").await;
    assert_eq!(status, 404);
    let (_, main_value) = server.get("/v1/kv/shared").await;
    assert_eq!(main_value["value"], json!("changed on main"));
    let (_, branch_value) = server.get("/v1/kv/shared?branch=agent-1").await;
    assert_eq!(branch_value["value"], json!("changed on agent-1"));
    let (_, untouched) = server.get("/v1/kv/shared?branch=agent-2").await;
    assert_eq!(untouched["value"], json!("before"));

    // A fork in the past, and a fork of a fork.
    let (status, past) = server
        .post("/v1/branches", &json!({"name": "old", "at": 0}))
        .await;
    assert_eq!(status, 201, "{past}");
    let (status, _) = server.get("/v1/kv/shared?branch=old").await;
    assert_eq!(
        status, 404,
        "forked before the first write, the branch has none of it"
    );
    let (status, nested) = server
        .post(
            "/v1/branches",
            &json!({"name": "agent-1-retry", "from": "agent-1"}),
        )
        .await;
    assert_eq!(status, 201, "{nested}");
    let (_, nested_value) = server.get("/v1/kv/result?branch=agent-1-retry").await;
    assert_eq!(nested_value["value"], json!("Agent 1 result"));

    let (_, listed) = server.get("/v1/branches").await;
    let mut names: Vec<&str> = listed["branches"]
        .as_array()
        .expect("branches")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["agent-1", "agent-1-retry", "agent-2", "main", "old"]
    );

    let head = server.head().await;
    let (status, exists) = server
        .post("/v1/branches", &json!({"name": "agent-1"}))
        .await;
    assert_eq!((status, code(&exists)), (409, "branch_exists"));
    let (status, no_parent) = server
        .post("/v1/branches", &json!({"name": "x", "from": "ghost"}))
        .await;
    assert_eq!((status, code(&no_parent)), (404, "branch_not_found"));
    let (status, future) = server
        .post("/v1/branches", &json!({"name": "x", "at": head + 100}))
        .await;
    assert_eq!((status, code(&future)), (422, "invalid_value"));
    for path in [
        "/v1/kv/shared?branch=ghost",
        "/v1/state/status?branch=ghost",
        "/v1/locks?branch=ghost",
        "/v1/agents?branch=ghost",
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!((status, code(&body)), (404, "branch_not_found"), "{path}");
    }
    let (status, body) = put(&server, "/v1/kv/k?branch=ghost", &json!({"value": 1})).await;
    assert_eq!((status, code(&body)), (404, "branch_not_found"));
    assert_eq!(
        server.head().await,
        head,
        "refused branch requests wrote nothing"
    );
    let events = server.replay("?types=branch.created").await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["stream"], json!("branch/agent-1"));
}

#[tokio::test]
async fn a_write_fenced_with_a_stale_token_is_refused() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, first) = server
        .post(
            "/v1/locks/db/acquire",
            &json!({"owner": "slow", "ttl_ms": 1000}),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let old_token = first["token"].as_u64().expect("a token");
    let (status, fenced) = put(
        &server,
        "/v1/kv/row",
        &json!({"value": "by slow", "fence": {"resource": "db", "token": old_token}}),
    )
    .await;
    assert_eq!(
        status, 200,
        "a write fenced with the live token passes: {fenced}"
    );

    // The slow holder pauses past its TTL; someone else takes the lock.
    let second = wait_until("the lock to be free for another owner", || async {
        let (status, body) = server
            .post(
                "/v1/locks/db/acquire",
                &json!({"owner": "fast", "ttl_ms": 60000}),
            )
            .await;
        (status == 200).then_some(body)
    })
    .await;
    let new_token = second["token"].as_u64().expect("a token");
    assert!(
        new_token > old_token,
        "fencing tokens grow: {old_token} then {new_token}"
    );
    let head = server.head().await;
    for (method, path, body) in [
        (
            "PUT",
            "/v1/kv/row",
            json!({"value": "late write by slow", "fence": {"resource": "db", "token": old_token}}),
        ),
        (
            "PUT",
            "/v1/state/row",
            json!({"value": 1, "fence": {"resource": "db", "token": old_token}}),
        ),
        (
            "POST",
            "/v1/state/row/cas",
            json!({"expected_version": null, "value": 1, "fence": {"resource": "db", "token": old_token}}),
        ),
        (
            "POST",
            "/v1/events",
            json!({"type": "row.written", "stream": "row", "fence": {"resource": "db", "token": old_token}}),
        ),
        (
            "PUT",
            "/v1/kv/row",
            json!({"value": 2, "fence": {"resource": "other", "token": new_token}}),
        ),
    ] {
        let (status, refused) = call(&server, method, path, Some(&body), &[]).await;
        assert_eq!(status, 409, "{method} {path}: {refused}");
        assert_eq!(code(&refused), "stale_fence");
    }
    assert_eq!(server.head().await, head, "the stale writes wrote nothing");
    let (_, row) = server.get("/v1/kv/row").await;
    assert_eq!(row["value"], json!("by slow"));
    let (status, _) = put(
        &server,
        "/v1/kv/row",
        &json!({"value": "by fast", "fence": {"resource": "db", "token": new_token}}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, malformed) = put(
        &server,
        "/v1/kv/row",
        &json!({"value": 3, "fence": {"resource": "db"}}),
    )
    .await;
    assert_eq!(
        (status, code(&malformed)),
        (422, "missing_field"),
        "{malformed}"
    );
}

#[tokio::test]
async fn bad_inputs_get_a_precise_error_and_write_nothing() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    put(&server, "/v1/kv/seed", &json!({"value": 0})).await;
    let long_key = "k".repeat(257);
    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        (
            "PUT",
            "/v1/state/a".into(),
            Some(json!({"value": 1, "colour": "red"})),
            422,
            "unknown_field",
        ),
        (
            "PUT",
            "/v1/state/a".into(),
            Some(json!({})),
            422,
            "missing_field",
        ),
        (
            "POST",
            "/v1/state/a/init".into(),
            Some(json!({"value": 1, "extra": true})),
            422,
            "unknown_field",
        ),
        (
            "POST",
            "/v1/state/a/cas".into(),
            Some(json!({"expected_version": -1, "value": 1})),
            422,
            "invalid_value",
        ),
        (
            "PUT",
            "/v1/kv/a".into(),
            Some(json!([1, 2])),
            422,
            "invalid_value",
        ),
        (
            "PUT",
            format!("/v1/kv/{long_key}"),
            Some(json!({"value": 1})),
            422,
            "invalid_id",
        ),
        (
            "PUT",
            "/v1/kv/a%07b".into(),
            Some(json!({"value": 1})),
            422,
            "invalid_id",
        ),
        (
            "PUT",
            "/v1/kv/a?branch=".into(),
            Some(json!({"value": 1})),
            422,
            "invalid_id",
        ),
        (
            "PUT",
            "/v1/kv/a".into(),
            Some(json!({"value": 1, "session": 5})),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/locks/db/acquire".into(),
            Some(json!({"owner": "a", "ttl_ms": 99})),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/locks/db/acquire".into(),
            Some(json!({"owner": "a", "ttl_ms": 86_400_001})),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/locks/db/acquire".into(),
            Some(json!({"owner": "a", "ttl_ms": 1000, "mode": "sideways"})),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/locks/db/acquire".into(),
            Some(json!({"owner": "a", "ttl_ms": 1000, "priority": 1})),
            422,
            "unknown_field",
        ),
        (
            "POST",
            "/v1/locks/db/acquire".into(),
            Some(json!({"ttl_ms": 1000})),
            422,
            "missing_field",
        ),
        (
            "POST",
            "/v1/locks/db/acquire".into(),
            Some(json!({"owner": "", "ttl_ms": 1000})),
            422,
            "invalid_id",
        ),
        (
            "POST",
            "/v1/locks/db/acquire".into(),
            Some(json!({"owner": "a", "ttl_ms": 1000, "wait_ms": 999_999_999})),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/locks/acquire".into(),
            Some(json!({"owner": "a", "resources": [], "ttl_ms": 1000})),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/locks/acquire".into(),
            Some(json!({"owner": "a", "resources": ["x", "x"], "ttl_ms": 1000})),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/locks/db/renew".into(),
            Some(json!({"owner": "a", "token": 1, "ttl_ms": 86_400_001})),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/agents".into(),
            Some(json!({"id": "a", "type": "w", "ttl_ms": 50})),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/agents".into(),
            Some(json!({"id": "a", "type": "w", "ttl_ms": 86_400_001})),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/agents".into(),
            Some(json!({"id": "a", "type": "w", "skills": []})),
            422,
            "unknown_field",
        ),
        (
            "POST",
            "/v1/agents".into(),
            Some(json!({"id": "a\nb", "type": "w"})),
            422,
            "invalid_id",
        ),
        (
            "POST",
            "/v1/branches".into(),
            Some(json!({"name": "b", "parent": "main"})),
            422,
            "unknown_field",
        ),
        (
            "POST",
            "/v1/branches".into(),
            Some(json!({"name": ""})),
            422,
            "invalid_id",
        ),
    ];
    for (method, path, body, status, expected_code) in &cases {
        let (got, answer) = call(&server, method, path, body.as_ref(), &[]).await;
        assert_eq!(
            (got, code(&answer)),
            (*status, *expected_code),
            "{method} {path} {body:?}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "a message: {answer}"
        );
    }
    let (status, malformed) = server.post_raw("/v1/state/a/init", "{\"value\": ").await;
    assert_eq!((status, code(&malformed)), (400, "malformed_json"));
    let (status, unknown_query) = server.get("/v1/kv?prefix=a&colour=red").await;
    assert_eq!((status, code(&unknown_query)), (400, "invalid_query"));
    assert_eq!(
        server.head().await,
        1,
        "none of the refused requests wrote anything"
    );
}

/// Every state read of this module's scenario, to compare before and after a restart.
async fn snapshot_of_reads(server: &Server) -> Vec<(String, u16, Value)> {
    let mut reads = Vec::new();
    for path in [
        "/v1/state/counter",
        "/v1/state/leader",
        "/v1/kv",
        "/v1/kv?branch=side",
        "/v1/state/counter?branch=side",
        "/v1/branches",
        "/v1/audit/head",
        "/v1/state/counter?at=3",
    ] {
        let (status, body) = server.get(path).await;
        reads.push((path.to_owned(), status, body));
    }
    // Lock and lease expiries are given afresh from the restart; compare everything else.
    let (status, mut agents) = server.get("/v1/agents").await;
    for agent in agents["agents"].as_array_mut().into_iter().flatten() {
        agent
            .as_object_mut()
            .map(|object| object.remove("lease_expires_at"));
    }
    reads.push(("/v1/agents".to_owned(), status, agents));
    let (status, mut locks) = server.get("/v1/locks").await;
    for lock in locks["locks"].as_array_mut().into_iter().flatten() {
        lock.as_object_mut()
            .map(|object| object.remove("expires_at"));
        for holder in lock["holders"].as_array_mut().into_iter().flatten() {
            holder
                .as_object_mut()
                .map(|object| object.remove("expires_at"));
        }
    }
    reads.push(("/v1/locks".to_owned(), status, locks));
    reads
}

#[tokio::test]
async fn a_restart_after_kill_9_or_sigterm_reproduces_the_exact_state() {
    let dir = data_dir();
    let mut server = Server::start(dir.path(), &[]).await;
    server
        .post("/v1/state/counter/init", &json!({"value": 0}))
        .await;
    for version in 1..=4 {
        server
            .post(
                "/v1/state/counter/cas",
                &json!({"expected_version": version, "value": version * 10}),
            )
            .await;
    }
    server
        .post(
            "/v1/state/leader/cas",
            &json!({"expected_version": null, "value": "agent-3"}),
        )
        .await;
    put(&server, "/v1/kv/a", &json!({"value": {"nested": [1, 2]}})).await;
    put(&server, "/v1/kv/b", &json!({"value": "gone soon"})).await;
    call(&server, "DELETE", "/v1/kv/b", None, &[]).await;
    server.post("/v1/agents", &json!({"id": "agent-3", "type": "worker", "capabilities": ["rust"], "ttl_ms": 3_600_000})).await;
    server
        .post("/v1/agents", &json!({"id": "agent-4", "type": "worker"}))
        .await;
    server.post("/v1/agents/agent-4/kill", &json!({})).await;
    let (status, _) = server
        .post(
            "/v1/locks/acquire",
            &json!({"owner": "agent-3", "resources": ["r1", "r2"], "ttl_ms": 3_600_000}),
        )
        .await;
    assert_eq!(status, 200);
    server
        .post("/v1/branches", &json!({"name": "side", "at": 4}))
        .await;
    put(
        &server,
        "/v1/kv/only-on-side?branch=side",
        &json!({"value": true}),
    )
    .await;
    server
        .post(
            "/v1/state/counter/cas?branch=side",
            &json!({"expected_version": 3, "value": "side"}),
        )
        .await;
    let before = snapshot_of_reads(&server).await;
    assert_eq!(before[1].2["value"], json!("agent-3"));

    server.kill9();
    let mut server = Server::start(dir.path(), &[]).await;
    assert_eq!(
        snapshot_of_reads(&server).await,
        before,
        "kill -9 and restart reproduce every read"
    );

    assert_eq!(server.stop(), Some(0), "SIGTERM shuts down cleanly");
    let server = Server::start(dir.path(), &[]).await;
    assert_eq!(
        snapshot_of_reads(&server).await,
        before,
        "SIGTERM and restart reproduce every read"
    );
    let (status, refused) = server
        .post(
            "/v1/locks/r1/acquire",
            &json!({"owner": "other", "ttl_ms": 1000}),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (409, "lock_held"),
        "locks survive the restart"
    );
    let (status, killed) = call(
        &server,
        "PUT",
        "/v1/kv/x",
        Some(&json!({"value": 1})),
        &[("swarmlog-actor", "agent-4")],
    )
    .await;
    assert_eq!(
        (status, code(&killed)),
        (403, "agent_killed"),
        "the kill switch survives the restart"
    );
}

#[tokio::test]
async fn the_cli_reads_and_writes_cells_kv_and_branches_in_process() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    let run = |args: &[&str]| {
        let mut full = vec!["--db", db];
        full.extend_from_slice(args);
        cli(&full)
    };
    assert_eq!(run(&["state", "init", "task:next", "0"]).0, 0);
    assert_eq!(
        run(&["state", "init", "task:next", "5"]).0,
        0,
        "init again is a no-op, exit 0"
    );
    let (code, raw, _) = run(&["--raw", "state", "get", "task:next"]);
    assert_eq!((code, raw.trim()), (0, "0"));
    let (code, json_out, _) = run(&["--json", "state", "get", "task:next"]);
    assert_eq!(code, 0);
    let cell: Value = serde_json::from_str(json_out.trim()).expect("--json prints JSON");
    assert_eq!(cell, json!({"key": "task:next", "value": 0, "version": 1}));
    assert_eq!(run(&["state", "cas", "task:next", "1", "1"]).0, 0);
    let (code, _, stderr) = run(&["state", "cas", "task:next", "1", "2"]);
    assert_eq!(code, 3, "a CAS conflict exits 3: {stderr}");
    assert!(stderr.contains("version_conflict"), "{stderr}");
    assert_eq!(run(&["state", "cas", "leader", "none", "agent-1"]).0, 0);
    assert_eq!(run(&["state", "cas", "leader", "none", "agent-2"]).0, 3);
    let (_, leader, _) = run(&["--raw", "state", "get", "leader"]);
    assert_eq!(
        leader.trim(),
        "agent-1",
        "--raw prints strings without quotes"
    );
    let (code, _, _) = run(&["state", "get", "nothing"]);
    assert_eq!(code, 4, "not found exits 4");
    let (code, _, _) = run(&["state", "cas", "leader", "seven", "x"]);
    assert_eq!(code, 2, "a bad EXPECTED is a usage error");
    let (code, old, _) = run(&["--raw", "state", "get", "task:next", "--at", "1"]);
    assert_eq!((code, old.trim()), (0, "0"), "--at reads the past");

    assert_eq!(run(&["kv", "put", "task:3:owner", "agent-7"]).0, 0);
    assert_eq!(run(&["kv", "put", "task:3:meta", "{\"tries\": 2}"]).0, 0);
    let (_, owner, _) = run(&["--raw", "kv", "get", "task:3:owner"]);
    assert_eq!(owner.trim(), "agent-7");
    let (_, meta, _) = run(&["--raw", "kv", "get", "task:3:meta"]);
    assert_eq!(
        serde_json::from_str::<Value>(meta.trim()).expect("JSON"),
        json!({"tries": 2}),
        "valid JSON is stored as JSON"
    );
    let (_, listed, _) = run(&["--json", "kv", "list", "--prefix", "task:3:"]);
    let listed: Value = serde_json::from_str(listed.trim()).expect("JSON");
    assert_eq!(listed["entries"].as_array().map(Vec::len), Some(2));
    assert_eq!(run(&["kv", "delete", "task:3:meta"]).0, 0);
    assert_eq!(run(&["kv", "get", "task:3:meta"]).0, 4);

    assert_eq!(run(&["branch", "create", "agent-1"]).0, 0);
    assert_eq!(
        run(&["branch", "create", "agent-1"]).0,
        3,
        "an existing branch is a conflict"
    );
    assert_eq!(
        run(&[
            "--branch",
            "agent-1",
            "kv",
            "put",
            "result",
            "Agent 1 result"
        ])
        .0,
        0
    );
    let (code, result, _) = run(&["--branch", "agent-1", "--raw", "kv", "get", "result"]);
    assert_eq!((code, result.trim()), (0, "Agent 1 result"));
    assert_eq!(run(&["kv", "get", "result"]).0, 4, "invisible on main");
    assert_eq!(run(&["--branch", "ghost", "kv", "get", "result"]).0, 4);
    let (_, branches, _) = run(&["--raw", "branch", "list"]);
    assert_eq!(
        branches, "agent-1\nmain\n",
        "--raw branch list: one name per line"
    );
}

#[tokio::test]
async fn openapi_lists_every_coordination_route_and_the_router_serves_each() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, document) = server.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    let routes = [
        ("get", "/v1/state/{key}"),
        ("put", "/v1/state/{key}"),
        ("post", "/v1/state/{key}/init"),
        ("post", "/v1/state/{key}/cas"),
        ("get", "/v1/kv"),
        ("get", "/v1/kv/{key}"),
        ("put", "/v1/kv/{key}"),
        ("delete", "/v1/kv/{key}"),
        ("get", "/v1/locks"),
        ("post", "/v1/locks/acquire"),
        ("get", "/v1/locks/{resource}"),
        ("post", "/v1/locks/{resource}/acquire"),
        ("post", "/v1/locks/{resource}/renew"),
        ("post", "/v1/locks/{resource}/release"),
        ("post", "/v1/agents"),
        ("get", "/v1/agents"),
        ("get", "/v1/agents/{agent}"),
        ("delete", "/v1/agents/{agent}"),
        ("post", "/v1/agents/{agent}/heartbeat"),
        ("post", "/v1/agents/{agent}/kill"),
        ("post", "/v1/branches"),
        ("get", "/v1/branches"),
    ];
    for (method, template) in routes {
        assert!(
            document["paths"][template][method].is_object(),
            "openapi lists {method} {template}"
        );
        let path = template
            .replace("{key}", "k")
            .replace("{resource}", "r")
            .replace("{agent}", "a");
        let (status, answer) = call(
            &server,
            &method.to_uppercase(),
            &path,
            Some(&json!({})),
            &[],
        )
        .await;
        assert!(
            status != 405 && code(&answer) != "route_not_found",
            "{method} {path} is served: {status} {answer}"
        );
    }
}

#[tokio::test]
async fn an_idempotent_retry_of_a_coordination_write_returns_the_first_answer() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    server
        .post("/v1/state/counter/init", &json!({"value": 0}))
        .await;
    let key = [("idempotency-key", "bump-1")];
    let body = json!({"expected_version": 1, "value": 1});
    let (status, first) = call(&server, "POST", "/v1/state/counter/cas", Some(&body), &key).await;
    assert_eq!(status, 200, "{first}");
    // Without the key this retry would be a version conflict; with it, the first answer.
    let (status, again) = call(&server, "POST", "/v1/state/counter/cas", Some(&body), &key).await;
    assert_eq!(
        (status, &again),
        (200, &first),
        "a retry gets the first response"
    );
    assert_eq!(server.head().await, 2, "and writes nothing");
    let other = json!({"expected_version": 2, "value": 2});
    let (status, reused) = call(&server, "POST", "/v1/state/counter/cas", Some(&other), &key).await;
    assert_eq!((status, code(&reused)), (422, "idempotency_key_reused"));
    let lock_key = [("idempotency-key", "lock-1")];
    let lock = json!({"owner": "a", "ttl_ms": 60000});
    let (_, granted) = call(
        &server,
        "POST",
        "/v1/locks/db/acquire",
        Some(&lock),
        &lock_key,
    )
    .await;
    let (status, regranted) = call(
        &server,
        "POST",
        "/v1/locks/db/acquire",
        Some(&lock),
        &lock_key,
    )
    .await;
    assert_eq!(
        (status, &regranted),
        (200, &granted),
        "the same token, not a renewal"
    );
    assert_eq!(server.head().await, 3);
}

#[tokio::test]
async fn locks_and_agents_are_per_branch() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    server.post("/v1/branches", &json!({"name": "side"})).await;
    let (status, _) = server
        .post(
            "/v1/locks/db/acquire",
            &json!({"owner": "a", "ttl_ms": 60000}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, on_side) = server
        .post(
            "/v1/locks/db/acquire?branch=side",
            &json!({"owner": "b", "ttl_ms": 60000}),
        )
        .await;
    assert_eq!(
        status, 200,
        "a lock on main does not hold the branch's: {on_side}"
    );
    let (_, side_lock) = server.get("/v1/locks/db?branch=side").await;
    assert_eq!(side_lock["holders"][0]["owner"], json!("b"));
    server
        .post(
            "/v1/agents?branch=side",
            &json!({"id": "scout", "type": "w"}),
        )
        .await;
    let (status, _) = server.get("/v1/agents/scout").await;
    assert_eq!(
        status, 404,
        "an agent registered on a branch is not on main"
    );
    let (status, _) = server.get("/v1/agents/scout?branch=side").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_cli_goes_through_a_live_server_and_ignores_a_dead_ones_record() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    let mut server = Server::start(dir.path(), &[]).await;
    let (code, _, stderr) = cli(&["--db", db, "state", "set", "mode", "served"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        server.head().await,
        1,
        "the write went through the running server"
    );
    server.kill9();
    assert!(
        dir.path().join("server.addr").exists(),
        "kill -9 leaves the record behind"
    );
    let (code, value, stderr) = cli(&["--db", db, "--raw", "state", "get", "mode"]);
    assert_eq!(
        (code, value.trim()),
        (0, "served"),
        "the stale record is ignored and the log opened in-process: {stderr}"
    );
    let (code, _, stderr) = cli(&["--db", db, "state", "cas", "mode", "1", "offline"]);
    assert_eq!(code, 0, "{stderr}");
    let server = Server::start(dir.path(), &[]).await;
    let (_, cell) = server.get("/v1/state/mode").await;
    assert_eq!(
        (cell["value"].clone(), cell["version"].clone()),
        (json!("offline"), json!(2))
    );
}
