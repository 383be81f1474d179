//! Locks through HTTP (SPEC §3 "Locks", issue 3): modes, re-entrance, renew, release by
//! the owner only, TTL expiry as a `lock.expired` event, waiters served FIFO, deadlocks
//! refused with their cycle, `--lock-order`, and all-or-nothing multi-resource acquires.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::coordination::{code, wait_until};
use crate::support::{cli, data_dir, Server};

async fn acquire(server: &Server, resource: &str, body: Value) -> (u16, Value) {
    server
        .post(&format!("/v1/locks/{resource}/acquire"), &body)
        .await
}

/// Waits until `owner` is listed as a waiter of `resource`, so that the order of waiters is
/// known before the test goes on.
async fn wait_for_waiter(server: &Server, resource: &str, owner: &str) {
    let path = format!("/v1/locks/{resource}");
    wait_until(&format!("{owner} to wait for {resource}"), || async {
        let (_, lock) = server.get(&path).await;
        lock["waiters"]
            .as_array()
            .is_some_and(|waiters| waiters.iter().any(|w| w["owner"] == json!(owner)))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_exclusive_lock_is_re_entrant_renewable_and_refuses_others() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, grant) = acquire(&server, "db", json!({"owner": "a", "ttl_ms": 30000})).await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["resource"], json!("db"));
    assert_eq!(grant["owner"], json!("a"));
    assert_eq!(grant["mode"], json!("exclusive"));
    assert_eq!(
        grant["token"],
        json!(1),
        "the token is the seq of lock.acquired"
    );
    assert!(
        grant["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{grant}"
    );

    let (status, again) = acquire(&server, "db", json!({"owner": "a", "ttl_ms": 60000})).await;
    assert_eq!(status, 200);
    assert_eq!(again["token"], json!(1), "re-entrant: the same token");
    assert!(
        again["expires_at"].as_str() > grant["expires_at"].as_str(),
        "re-entrant: the TTL is refreshed"
    );

    let (status, held) = acquire(&server, "db", json!({"owner": "b", "ttl_ms": 1000})).await;
    assert_eq!(status, 409, "{held}");
    assert_eq!(code(&held), "lock_held");
    assert_eq!(held["error"]["holders"][0]["owner"], json!("a"));
    assert_eq!(held["error"]["expires_at"], again["expires_at"]);

    let (status, renewed) = server
        .post(
            "/v1/locks/db/renew",
            &json!({"owner": "a", "token": 1, "ttl_ms": 90000}),
        )
        .await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["token"], json!(1));
    assert!(renewed["expires_at"].as_str() > again["expires_at"].as_str());
    for body in [
        json!({"owner": "a", "token": 2, "ttl_ms": 1000}),
        json!({"owner": "b", "token": 1, "ttl_ms": 1000}),
    ] {
        let (status, lost) = server.post("/v1/locks/db/renew", &body).await;
        assert_eq!((status, code(&lost)), (409, "lock_lost"), "{body}: {lost}");
    }

    let (status, released) = server
        .post("/v1/locks/db/release", &json!({"owner": "a", "token": 1}))
        .await;
    assert_eq!(status, 200, "{released}");
    let (_, free) = server.get("/v1/locks/db").await;
    assert_eq!(free["holders"], json!([]));
    let (status, next) = acquire(&server, "db", json!({"owner": "b", "ttl_ms": 1000})).await;
    assert_eq!(status, 200);
    assert!(
        next["token"].as_u64() > Some(1),
        "a new holder gets a larger token: {next}"
    );
    let types: Vec<String> = server
        .replay("?stream=lock/db")
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "lock.acquired",
            "lock.renewed",
            "lock.renewed",
            "lock.released",
            "lock.acquired"
        ]
    );
}

#[tokio::test]
async fn only_the_owner_with_its_token_may_release() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (_, grant) = acquire(&server, "db", json!({"owner": "a", "ttl_ms": 30000})).await;
    let token = grant["token"].as_u64().expect("token");
    let head = server.head().await;
    for body in [
        json!({"owner": "b", "token": token}),
        json!({"owner": "a", "token": token + 1}),
    ] {
        let (status, refused) = server.post("/v1/locks/db/release", &body).await;
        assert_eq!(
            (status, code(&refused)),
            (409, "not_owner"),
            "{body}: {refused}"
        );
    }
    let (status, refused) = server
        .post(
            "/v1/locks/never-held/release",
            &json!({"owner": "a", "token": token}),
        )
        .await;
    assert_eq!((status, code(&refused)), (409, "not_owner"));
    assert_eq!(server.head().await, head, "refused releases wrote nothing");
    let (_, lock) = server.get("/v1/locks/db").await;
    assert_eq!(
        lock["holders"][0]["owner"],
        json!("a"),
        "the lock is still held"
    );
}

#[tokio::test]
async fn shared_holders_coexist_and_keep_an_exclusive_request_out() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for owner in ["r1", "r2"] {
        let (status, grant) = acquire(
            &server,
            "doc",
            json!({"owner": owner, "ttl_ms": 30000, "mode": "shared"}),
        )
        .await;
        assert_eq!(status, 200, "{grant}");
        assert_eq!(grant["mode"], json!("shared"));
    }
    let (status, held) = acquire(&server, "doc", json!({"owner": "w", "ttl_ms": 30000})).await;
    assert_eq!((status, code(&held)), (409, "lock_held"));
    assert_eq!(held["error"]["holders"].as_array().map(Vec::len), Some(2));
    let (_, lock) = server.get("/v1/locks/doc").await;
    assert_eq!(lock["mode"], json!("shared"));
    assert_eq!(lock["holders"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_lock_whose_ttl_passes_is_released_by_a_lock_expired_event() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, grant) = acquire(&server, "db", json!({"owner": "crashed", "ttl_ms": 150})).await;
    assert_eq!(status, 200);
    // Nobody touches the lock: the engine's own timer must write the expiry.
    let expired = wait_until("lock.expired in the log", || async {
        let events = server.replay("?types=lock.expired").await;
        events.into_iter().next()
    })
    .await;
    assert_eq!(expired["actor"], json!("system"));
    assert_eq!(expired["stream"], json!("lock/db"));
    assert_eq!(expired["data"]["owner"], json!("crashed"));
    assert_eq!(expired["data"]["token"], grant["token"]);
    assert_eq!(expired["data"]["reason"], json!("ttl"));
    let (_, lock) = server.get("/v1/locks/db").await;
    assert_eq!(lock["holders"], json!([]));
    let (status, _) = acquire(&server, "db", json!({"owner": "next", "ttl_ms": 1000})).await;
    assert_eq!(status, 200, "the lock is free for others");
    let (status, lost) = server
        .post(
            "/v1/locks/db/renew",
            &json!({"owner": "crashed", "token": grant["token"], "ttl_ms": 1000}),
        )
        .await;
    assert_eq!((status, code(&lost)), (409, "lock_lost"));
}

#[tokio::test]
async fn a_waiter_is_granted_on_release_and_waiters_are_served_in_arrival_order() {
    let dir = data_dir();
    let server = Arc::new(Server::start(dir.path(), &[]).await);
    let (_, grant) = acquire(&server, "db", json!({"owner": "holder", "ttl_ms": 60000})).await;
    let mut waiters = Vec::new();
    for owner in ["first", "second"] {
        let waiting = server.clone();
        waiters.push(tokio::spawn(async move {
            let answer = acquire(
                &waiting,
                "db",
                json!({"owner": owner, "ttl_ms": 60000, "wait_ms": 30000}),
            )
            .await;
            (owner, answer)
        }));
        wait_for_waiter(&server, "db", owner).await;
    }
    let (_, lock) = server.get("/v1/locks/db").await;
    assert_eq!(
        lock["waiters"],
        json!([{"owner": "first", "mode": "exclusive"}, {"owner": "second", "mode": "exclusive"}])
    );
    // A newcomer without wait_ms may not jump the queue.
    let (status, _) = acquire(&server, "db", json!({"owner": "newcomer", "ttl_ms": 1000})).await;
    assert_eq!(status, 409);

    let (status, _) = server
        .post(
            "/v1/locks/db/release",
            &json!({"owner": "holder", "token": grant["token"]}),
        )
        .await;
    assert_eq!(status, 200);
    let first = waiters.remove(0).await.expect("the waiter runs");
    assert_eq!(first.0, "first");
    assert_eq!(
        first.1 .0, 200,
        "the first waiter gets the lock on release: {}",
        first.1 .1
    );
    let first_token = first.1 .1["token"].clone();
    let (_, lock) = server.get("/v1/locks/db").await;
    assert_eq!(lock["holders"][0]["owner"], json!("first"));
    assert_eq!(
        lock["waiters"],
        json!([{"owner": "second", "mode": "exclusive"}]),
        "the second still waits"
    );

    let (status, _) = server
        .post(
            "/v1/locks/db/release",
            &json!({"owner": "first", "token": first_token}),
        )
        .await;
    assert_eq!(status, 200);
    let second = waiters.remove(0).await.expect("the waiter runs");
    assert_eq!(second.1 .0, 200, "{}", second.1 .1);
    let grants: Vec<String> = server
        .replay("?types=lock.acquired")
        .await
        .iter()
        .map(|e| e["data"]["owner"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        grants,
        ["holder", "first", "second"],
        "granted in arrival order"
    );
}

#[tokio::test]
async fn a_waiter_that_is_not_served_in_time_gets_lock_held() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    acquire(&server, "db", json!({"owner": "holder", "ttl_ms": 60000})).await;
    let (status, refused) = acquire(
        &server,
        "db",
        json!({"owner": "patient", "ttl_ms": 1000, "wait_ms": 200}),
    )
    .await;
    assert_eq!((status, code(&refused)), (409, "lock_held"), "{refused}");
    assert_eq!(refused["error"]["holders"][0]["owner"], json!("holder"));
    let (_, lock) = server.get("/v1/locks/db").await;
    assert_eq!(lock["waiters"], json!([]), "a waiter that gave up is gone");
}

#[tokio::test]
async fn a_deadlock_is_refused_at_once_with_its_cycle_and_recorded() {
    let dir = data_dir();
    let server = Arc::new(Server::start(dir.path(), &[]).await);
    let (_, a) = acquire(&server, "A", json!({"owner": "p", "ttl_ms": 60000})).await;
    acquire(&server, "B", json!({"owner": "q", "ttl_ms": 60000})).await;
    let waiting = server.clone();
    let p_waits = tokio::spawn(async move {
        acquire(
            &waiting,
            "B",
            json!({"owner": "p", "ttl_ms": 60000, "wait_ms": 30000}),
        )
        .await
    });
    wait_for_waiter(&server, "B", "p").await;

    // q now asks for A with a long wait: waiting would close the cycle p -> q -> p. The
    // answer is `deadlock`, not the `lock_held` that 30 s of waiting would end in; the
    // timeout only guards against a hang.
    let closing = tokio::time::timeout(
        Duration::from_secs(10),
        acquire(
            &server,
            "A",
            json!({"owner": "q", "ttl_ms": 60000, "wait_ms": 30000}),
        ),
    )
    .await
    .expect("the deadlock is answered instead of waited out");
    let (status, deadlock) = closing;
    assert_eq!((status, code(&deadlock)), (409, "deadlock"), "{deadlock}");
    let cycle = deadlock["error"]["cycle"].as_array().expect("a cycle");
    let owners: Vec<&str> = cycle
        .iter()
        .filter_map(|edge| edge["owner"].as_str())
        .collect();
    assert!(
        owners.contains(&"p") && owners.contains(&"q"),
        "the cycle names both owners: {deadlock}"
    );
    assert!(
        cycle.iter().any(|e| e["owner"] == json!("q")
            && e["resource"] == json!("A")
            && e["held_by"] == json!("p")),
        "{deadlock}"
    );
    assert!(
        cycle.iter().any(|e| e["owner"] == json!("p")
            && e["resource"] == json!("B")
            && e["held_by"] == json!("q")),
        "{deadlock}"
    );
    let detected = server.replay("?types=lock.deadlock_detected").await;
    assert_eq!(detected.len(), 1);
    assert_eq!(detected[0]["data"]["owner"], json!("q"));
    assert_eq!(detected[0]["data"]["cycle"], deadlock["error"]["cycle"]);

    // The refused request changed nothing: p still waits, and gets B when q lets go.
    let (_, b) = server.get("/v1/locks/B").await;
    let q_token = b["holders"][0]["token"].clone();
    let (status, _) = server
        .post(
            "/v1/locks/B/release",
            &json!({"owner": "q", "token": q_token}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, granted) = p_waits.await.expect("the waiter runs");
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["owner"], json!("p"));
    let (_, still_a) = server.get("/v1/locks/A").await;
    assert_eq!(still_a["holders"][0]["token"], a["token"]);
}

#[tokio::test]
async fn multi_resource_acquire_takes_all_or_nothing() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    acquire(&server, "b", json!({"owner": "x", "ttl_ms": 60000})).await;
    let head = server.head().await;
    let (status, refused) = server
        .post(
            "/v1/locks/acquire",
            &json!({"owner": "y", "resources": ["a", "b", "c"], "ttl_ms": 60000}),
        )
        .await;
    assert_eq!((status, code(&refused)), (409, "lock_held"), "{refused}");
    assert_eq!(refused["error"]["resource"], json!("b"));
    assert_eq!(server.head().await, head, "no partial hold was written");
    for resource in ["a", "c"] {
        let (_, lock) = server.get(&format!("/v1/locks/{resource}")).await;
        assert_eq!(lock["holders"], json!([]), "{resource} is not held");
    }
    let (status, granted) = server
        .post(
            "/v1/locks/acquire",
            &json!({"owner": "y", "resources": ["c", "a"], "ttl_ms": 60000}),
        )
        .await;
    assert_eq!(status, 200, "{granted}");
    let locks = granted["locks"].as_array().expect("locks");
    assert_eq!(locks.len(), 2);
    assert_eq!(locks[0]["resource"], json!("c"));
    assert_eq!(locks[1]["resource"], json!("a"));
    assert_ne!(
        locks[0]["token"], locks[1]["token"],
        "each resource has its own token"
    );
    let (_, listed) = server.get("/v1/locks").await;
    let resources: Vec<&str> = listed["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .filter_map(|l| l["resource"].as_str())
        .collect();
    assert_eq!(resources, ["a", "b", "c"]);
}

#[tokio::test]
async fn with_lock_order_a_resource_before_a_held_one_is_refused() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &["--lock-order"]).await;
    acquire(&server, "m", json!({"owner": "a", "ttl_ms": 60000})).await;
    let head = server.head().await;
    let (status, refused) = acquire(&server, "c", json!({"owner": "a", "ttl_ms": 60000})).await;
    assert_eq!(
        (status, code(&refused)),
        (409, "lock_order_violation"),
        "{refused}"
    );
    assert_eq!(refused["error"]["resource"], json!("c"));
    assert_eq!(refused["error"]["held"], json!("m"));
    assert_eq!(server.head().await, head);
    let (status, _) = acquire(&server, "z", json!({"owner": "a", "ttl_ms": 60000})).await;
    assert_eq!(status, 200, "a resource after the held one is fine");
    let (status, _) = acquire(&server, "c", json!({"owner": "b", "ttl_ms": 60000})).await;
    assert_eq!(status, 200, "another owner holding nothing is fine");

    let other = data_dir();
    let unordered = Server::start(other.path(), &[]).await;
    acquire(&unordered, "m", json!({"owner": "a", "ttl_ms": 60000})).await;
    let (status, _) = acquire(&unordered, "c", json!({"owner": "a", "ttl_ms": 60000})).await;
    assert_eq!(status, 200, "without --lock-order any order is accepted");
}

#[tokio::test]
async fn the_cli_acquires_renews_and_releases_with_exit_codes() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    let (code, token, stderr) = cli(&[
        "--db", db, "--raw", "lock", "acquire", "db", "--owner", "a", "--ttl-ms", "60000",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let token = token.trim().to_owned();
    assert_eq!(token, "1", "--raw prints the fencing token");
    let (code, _, stderr) = cli(&[
        "--db", db, "lock", "acquire", "db", "--owner", "b", "--ttl-ms", "1000",
    ]);
    assert_eq!(code, 3, "a held lock exits 3: {stderr}");
    assert!(stderr.contains("lock_held"), "{stderr}");
    // Regression (issue 3): `--token` of renew and release collided with the global bearer
    // `--token` and made the command panic; the fencing token is `--fencing-token`.
    let (code, _, _) = cli(&[
        "--db",
        db,
        "lock",
        "renew",
        "db",
        "--owner",
        "a",
        "--fencing-token",
        &token,
        "--ttl-ms",
        "60000",
    ]);
    assert_eq!(code, 0);
    let (code, _, _) = cli(&[
        "--db",
        db,
        "lock",
        "release",
        "db",
        "--owner",
        "b",
        "--fencing-token",
        &token,
    ]);
    assert_eq!(code, 3, "not_owner exits 3");
    let (code, listed, _) = cli(&["--db", db, "--json", "lock", "list"]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(listed.trim()).expect("JSON");
    assert_eq!(listed["locks"][0]["holders"][0]["owner"], json!("a"));
    let (code, _, _) = cli(&[
        "--db",
        db,
        "lock",
        "release",
        "db",
        "--owner",
        "a",
        "--fencing-token",
        &token,
    ]);
    assert_eq!(code, 0);
    let (code, _, _) = cli(&[
        "--db", db, "lock", "acquire", "x", "y", "--owner", "b", "--ttl-ms", "1000",
    ]);
    assert_eq!(code, 0, "several resources at once");
    let (code, _, stderr) = cli(&[
        "--db", db, "lock", "acquire", "db", "--owner", "b", "--ttl-ms", "10",
    ]);
    assert_eq!(code, 1, "an invalid TTL exits 1: {stderr}");
    let (code, _, _) = cli(&["--db", db, "lock", "acquire", "db", "--owner", "b"]);
    assert_eq!(code, 2, "a missing --ttl-ms is a usage error");
}

/// The value of the sample `name` (with its labels, e.g. `swarmlog_agents{status="active"}`)
/// in a Prometheus text exposition.
fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_grants_denials_waits_deadlocks_expiries_and_agents() {
    let dir = data_dir();
    let server = Arc::new(Server::start(dir.path(), &[]).await);
    server
        .post("/v1/agents", &json!({"id": "p", "type": "w"}))
        .await;
    acquire(&server, "A", json!({"owner": "p", "ttl_ms": 60000})).await;
    let (_, b) = acquire(&server, "B", json!({"owner": "q", "ttl_ms": 60000})).await;
    acquire(&server, "short", json!({"owner": "q", "ttl_ms": 100})).await;
    let (status, _) = acquire(&server, "B", json!({"owner": "r", "ttl_ms": 1000})).await;
    assert_eq!(status, 409, "one denial");
    let waiting = server.clone();
    let p_waits = tokio::spawn(async move {
        acquire(
            &waiting,
            "B",
            json!({"owner": "p", "ttl_ms": 60000, "wait_ms": 30000}),
        )
        .await
    });
    wait_for_waiter(&server, "B", "p").await;
    let (status, _) = acquire(
        &server,
        "A",
        json!({"owner": "q", "ttl_ms": 60000, "wait_ms": 30000}),
    )
    .await;
    assert_eq!(status, 409, "one deadlock");
    server
        .post(
            "/v1/locks/B/release",
            &json!({"owner": "q", "token": b["token"]}),
        )
        .await;
    assert_eq!(p_waits.await.expect("the waiter runs").0, 200);
    wait_until("the short lock to expire", || async {
        (!server.replay("?types=lock.expired").await.is_empty()).then_some(())
    })
    .await;

    let response = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 200);
    let exposition = response.text().await.expect("a body");
    assert_eq!(
        sample(&exposition, "swarmlog_lock_acquisitions_total"),
        Some(4.0),
        "A, B, short, then B by p:\n{exposition}"
    );
    assert_eq!(
        sample(&exposition, "swarmlog_deadlocks_detected_total"),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        sample(&exposition, "swarmlog_lock_expiries_total"),
        Some(1.0),
        "{exposition}"
    );
    assert!(
        sample(&exposition, "swarmlog_lock_denials_total") >= Some(1.0),
        "{exposition}"
    );
    assert!(
        sample(&exposition, "swarmlog_lock_waits_total") >= Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        sample(&exposition, "swarmlog_lock_wait_seconds_count"),
        Some(1.0),
        "one waiter was granted:\n{exposition}"
    );
    assert!(
        sample(&exposition, "swarmlog_lock_contention_top{resource=\"B\"}") >= Some(2.0),
        "B was the most contended:\n{exposition}"
    );
    assert_eq!(
        sample(&exposition, "swarmlog_agents{status=\"active\"}"),
        Some(1.0),
        "{exposition}"
    );
}
