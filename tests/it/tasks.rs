//! Tasks through HTTP (SPEC §3 "Tasks", issue 4): atomic claims under concurrency, claim
//! order, dependencies, leases and retries, claimant checks, cancellation, long-polling
//! claims, assignment, auctions, the approval gate, and bad inputs that write nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{data_dir, Server};

/// Polls `GET path` until `done` holds (bounded so a broken build cannot hang the suite).
pub async fn wait_for(server: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.get(path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never reached the expected state; last: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn create(server: &Server, body: Value) -> Value {
    let (status, answer) = server.post("/v1/tasks", &body).await;
    assert_eq!(status, 201, "create answers 201: {answer}");
    answer
}

async fn claim(server: &Server, body: Value) -> (u16, Value) {
    server.post("/v1/tasks/claim", &body).await
}

async fn claimed_id(server: &Server, agent: &str) -> Option<String> {
    let (status, body) = claim(server, json!({"agent": agent})).await;
    match status {
        200 => Some(
            body["id"]
                .as_str()
                .expect("a claimed task has an id")
                .to_owned(),
        ),
        204 => None,
        other => panic!("claim answered {other}: {body}"),
    }
}

fn history_types(task: &Value) -> Vec<String> {
    task["history"]
        .as_array()
        .expect("a task shows its history")
        .iter()
        .map(|entry| entry["type"].as_str().expect("type").to_owned())
        .collect()
}

#[tokio::test]
async fn twelve_agents_claiming_two_hundred_tasks_claim_each_exactly_once() {
    let dir = data_dir();
    let server = Arc::new(Server::start(dir.path(), &[]).await);
    let tasks: Vec<Value> = (0..200)
        .map(|index| json!({"id": format!("job-{index:03}"), "type": "work"}))
        .collect();
    let created = create(&server, json!({ "tasks": tasks })).await;
    assert_eq!(created["tasks"].as_array().map(Vec::len), Some(200));
    let mut workers = Vec::new();
    for worker in 0..12 {
        let server = server.clone();
        workers.push(tokio::spawn(async move {
            let agent = format!("agent-{worker}");
            let mut mine = Vec::new();
            while let Some(id) = claimed_id(&server, &agent).await {
                let (status, body) = server
                    .post(
                        &format!("/v1/tasks/{id}/complete"),
                        &json!({"agent": agent, "result": {"by": agent}}),
                    )
                    .await;
                assert_eq!(status, 200, "the claimant completes its task: {body}");
                mine.push(id);
            }
            mine
        }));
    }
    let mut claims: BTreeMap<String, usize> = BTreeMap::new();
    for worker in workers {
        for id in worker.await.expect("a worker finishes") {
            *claims.entry(id).or_default() += 1;
        }
    }
    assert_eq!(claims.len(), 200, "every task was claimed");
    assert!(
        claims.values().all(|count| *count == 1),
        "no task was claimed twice: {claims:?}"
    );
    let (_, completed) = server.get("/v1/tasks?status=completed").await;
    assert_eq!(completed["tasks"].as_array().map(Vec::len), Some(200));
    let claimed_events = server.replay("?types=task.claimed").await;
    assert_eq!(
        claimed_events.len(),
        200,
        "exactly one task.claimed per task"
    );
}

#[tokio::test]
async fn claims_take_the_most_urgent_then_oldest_task_the_agent_can_do() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, _) = server
        .post(
            "/v1/agents",
            &json!({"id": "gpu-worker", "type": "worker", "capabilities": ["gpu", "python"]}),
        )
        .await;
    assert_eq!(status, 201);
    create(
        &server,
        json!({"tasks": [
            {"id": "low", "type": "work", "priority": 2},
            {"id": "mid-old", "type": "work"},
            {"id": "urgent", "type": "work", "priority": 9},
            {"id": "mid-new", "type": "work", "priority": 5},
            {"id": "gpu", "type": "render", "priority": 10, "capabilities": ["gpu"]},
            {"id": "other-type", "type": "review", "priority": 8}
        ]}),
    )
    .await;
    let mut order = Vec::new();
    loop {
        let (status, body) = claim(&server, json!({"agent": "plain", "types": ["work"]})).await;
        if status == 204 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], json!("claimed"));
        assert_eq!(body["agent"], json!("plain"));
        assert_eq!(body["attempt"], json!(1));
        assert!(body["lease_expires_at"].is_string(), "{body}");
        order.push(body["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(order, ["urgent", "mid-old", "mid-new", "low"]);
    assert_eq!(
        claimed_id(&server, "plain").await.as_deref(),
        Some("other-type"),
        "an agent without capabilities never gets the gpu task"
    );
    assert_eq!(claimed_id(&server, "plain").await, None);
    let (status, body) = claim(&server, json!({"agent": "gpu-worker"})).await;
    assert_eq!(status, 200, "registered capabilities are used: {body}");
    assert_eq!(body["id"], json!("gpu"));
}

#[tokio::test]
async fn dependencies_block_until_completed_and_a_failure_cancels_dependents() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let created = create(
        &server,
        json!({"tasks": [
            {"id": "edit", "type": "edit", "depends_on": ["write"]},
            {"id": "write", "type": "write", "depends_on": ["research"]},
            {"id": "research", "type": "research"}
        ]}),
    )
    .await;
    let statuses: Vec<&Value> = created["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|task| &task["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!("blocked"), &json!("blocked"), &json!("pending")]
    );
    assert_eq!(claimed_id(&server, "a").await.as_deref(), Some("research"));
    assert_eq!(
        claimed_id(&server, "b").await,
        None,
        "blocked tasks are not claimable"
    );
    let (status, _) = server
        .post(
            "/v1/tasks/research/complete",
            &json!({"agent": "a", "result": "notes"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, write) = server.get("/v1/tasks/write").await;
    assert_eq!(write["status"], json!("pending"));
    assert_eq!(claimed_id(&server, "b").await.as_deref(), Some("write"));
    let (status, failed) = server
        .post(
            "/v1/tasks/write/fail",
            &json!({"agent": "b", "error": "no words"}),
        )
        .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(
        failed["status"],
        json!("failed"),
        "no retry: failed for good"
    );
    let (_, edit) = server.get("/v1/tasks/edit").await;
    assert_eq!(edit["status"], json!("cancelled"));
    assert_eq!(history_types(&edit), ["task.created", "task.cancelled"]);

    // Unknown dependencies and cycles are refused and write nothing.
    let head = server.head().await;
    let (status, body) = server
        .post(
            "/v1/tasks",
            &json!({"id": "x", "type": "t", "depends_on": ["nope"]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("invalid_value"))
    );
    assert_eq!(body["error"]["unknown"], json!(["nope"]));
    let (status, body) = server
        .post(
            "/v1/tasks",
            &json!({"tasks": [
                {"id": "c1", "type": "t", "depends_on": ["c2"]},
                {"id": "c2", "type": "t", "depends_on": ["c1"]}
            ]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["cycle"].is_array(),
        "the cycle is named: {body}"
    );
    assert_eq!(server.head().await, head, "refused creates write nothing");

    // The same id with the same body is 200 unchanged; another body is 409.
    let (status, body) = server
        .post("/v1/tasks", &json!({"id": "research", "type": "research"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("completed"));
    let (status, body) = server
        .post("/v1/tasks", &json!({"id": "research", "type": "other"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("already_exists"))
    );
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn a_lease_that_runs_out_requeues_the_task_then_fails_it_after_max_attempts() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    create(
        &server,
        json!({"id": "flaky", "type": "work", "timeout_ms": 200, "max_attempts": 2}),
    )
    .await;
    create(
        &server,
        json!({"id": "after", "type": "work", "depends_on": ["flaky"]}),
    )
    .await;
    assert_eq!(claimed_id(&server, "slow").await.as_deref(), Some("flaky"));
    let requeued = wait_for(&server, "/v1/tasks/flaky", |task| {
        task["status"] == json!("pending")
    })
    .await;
    assert_eq!(requeued["attempt"], json!(2));
    assert!(history_types(&requeued).contains(&"task.timed_out".to_owned()));
    let (status, body) = server
        .post(
            "/v1/tasks/flaky/complete",
            &json!({"agent": "slow", "result": 1}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("not_claimant")),
        "a claimant whose lease ran out no longer holds the task"
    );
    let (status, second) = claim(&server, json!({"agent": "slow"})).await;
    assert_eq!(status, 200);
    assert_eq!(second["attempt"], json!(2));
    let failed = wait_for(&server, "/v1/tasks/flaky", |task| {
        task["status"] == json!("failed")
    })
    .await;
    let timeouts = history_types(&failed)
        .iter()
        .filter(|kind| *kind == "task.timed_out")
        .count();
    assert_eq!(timeouts, 2);
    let (_, after) = server.get("/v1/tasks/after").await;
    assert_eq!(
        after["status"],
        json!("cancelled"),
        "the failure cancels dependents"
    );
}

#[tokio::test]
async fn only_the_claimant_may_progress_complete_fail_or_release() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    create(
        &server,
        json!({"id": "t", "type": "work", "timeout_ms": 60000}),
    )
    .await;
    let (_, claimed) = claim(&server, json!({"agent": "owner"})).await;
    let head = server.head().await;
    for (verb, body) in [
        ("progress", json!({"agent": "thief", "percent": 50})),
        ("complete", json!({"agent": "thief", "result": 1})),
        ("fail", json!({"agent": "thief", "error": "x"})),
        ("release", json!({"agent": "thief"})),
    ] {
        let (status, answer) = server.post(&format!("/v1/tasks/t/{verb}"), &body).await;
        assert_eq!(status, 409, "{verb}: {answer}");
        assert_eq!(answer["error"]["code"], json!("not_claimant"), "{verb}");
    }
    assert_eq!(server.head().await, head, "refused writes write nothing");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, progressed) = server
        .post(
            "/v1/tasks/t/progress",
            &json!({"agent": "owner", "percent": 40, "note": "half"}),
        )
        .await;
    assert_eq!(status, 200, "{progressed}");
    assert!(
        progressed["lease_expires_at"].as_str() > claimed["lease_expires_at"].as_str(),
        "progress renews the lease: {} then {}",
        claimed["lease_expires_at"],
        progressed["lease_expires_at"]
    );
    assert_eq!(progressed["progress"]["percent"], json!(40.0));
    let (status, released) = server
        .post("/v1/tasks/t/release", &json!({"agent": "owner"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(released["status"], json!("pending"));
    assert_eq!(
        released["attempt"],
        json!(1),
        "a release is not a failed attempt"
    );
    let (status, retried) = claim(&server, json!({"agent": "other"})).await;
    assert_eq!((status, retried["agent"].clone()), (200, json!("other")));
    let (status, failed) = server
        .post(
            "/v1/tasks/t/fail",
            &json!({"agent": "other", "error": "boom", "retry": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(failed["status"], json!("pending"), "retry puts it back");
    assert_eq!(failed["attempt"], json!(2));
}

#[tokio::test]
async fn cancelling_a_task_cancels_its_dependents_transitively() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    create(
        &server,
        json!({"tasks": [
            {"id": "a", "type": "t"},
            {"id": "b", "type": "t", "depends_on": ["a"]},
            {"id": "c", "type": "t", "depends_on": ["b"]},
            {"id": "free", "type": "t"}
        ]}),
    )
    .await;
    let (status, cancelled) = server
        .post("/v1/tasks/a/cancel", &json!({"reason": "scope cut"}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], json!("cancelled"));
    for id in ["b", "c"] {
        let (_, task) = server.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(task["status"], json!("cancelled"), "{id}");
    }
    let (_, free) = server.get("/v1/tasks/free").await;
    assert_eq!(free["status"], json!("pending"));
    let (_, list) = server.get("/v1/tasks?status=cancelled").await;
    let ids: Vec<&str> = list["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|task| task["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(
        list["tasks"][0].get("history").is_none(),
        "lists leave out history"
    );
    // A task created on a cancelled dependency is cancelled at once.
    let (status, late) = server
        .post(
            "/v1/tasks",
            &json!({"id": "d", "type": "t", "depends_on": ["c"]}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(late["status"], json!("cancelled"));
}

#[tokio::test]
async fn a_waiting_claim_is_granted_when_a_task_appears() {
    let dir = data_dir();
    let server = Arc::new(Server::start(dir.path(), &[]).await);
    let (status, body) = claim(&server, json!({"agent": "idle", "wait_ms": 150})).await;
    assert_eq!(
        (status, body),
        (204, Value::String(String::new())),
        "nothing came: 204, no body"
    );
    let waiting = {
        let server = server.clone();
        tokio::spawn(
            async move { claim(&server, json!({"agent": "waiter", "wait_ms": 20000})).await },
        )
    };
    // Let the claim park first; the test holds either way, since a task that exists
    // already is granted at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    create(&server, json!({"id": "late", "type": "work"})).await;
    let (status, granted) = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiting claim is answered")
        .expect("the claim task finishes");
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["id"], json!("late"));
    assert_eq!(granted["agent"], json!("waiter"));
}

#[tokio::test]
async fn assign_names_an_agent_or_picks_one_by_strategy() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for (id, capabilities) in [
        ("generalist", json!(["python", "rust", "sql"])),
        ("specialist", json!(["sql"])),
        ("busy", json!(["sql", "rust"])),
    ] {
        let (status, _) = server
            .post(
                "/v1/agents",
                &json!({"id": id, "type": "worker", "capabilities": capabilities}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let tasks: Vec<Value> = (1..=5)
        .map(|n| json!({"id": format!("t{n}"), "type": "work", "capabilities": ["sql"]}))
        .collect();
    create(&server, json!({ "tasks": tasks })).await;
    let (status, named) = server
        .post("/v1/tasks/t1/assign", &json!({"agent": "busy"}))
        .await;
    assert_eq!(status, 200, "{named}");
    assert_eq!(
        (named["status"].clone(), named["agent"].clone()),
        (json!("claimed"), json!("busy"))
    );
    let (_, least) = server
        .post("/v1/tasks/t2/assign", &json!({"strategy": "least_loaded"}))
        .await;
    assert_eq!(
        least["agent"],
        json!("generalist"),
        "smallest id among the unloaded"
    );
    let (_, special) = server
        .post("/v1/tasks/t3/assign", &json!({"strategy": "capability"}))
        .await;
    assert_eq!(special["agent"], json!("specialist"), "fewest capabilities");
    let (_, first) = server
        .post("/v1/tasks/t4/assign", &json!({"strategy": "round_robin"}))
        .await;
    let (_, second) = server
        .post("/v1/tasks/t5/assign", &json!({"strategy": "round_robin"}))
        .await;
    assert_ne!(first["agent"], second["agent"], "round robin moves on");
    let head = server.head().await;
    let (status, body) = server
        .post("/v1/tasks/t1/assign", &json!({"strategy": "random"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("invalid_value"))
    );
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn an_auction_awards_the_best_scoring_valid_bid_at_its_deadline() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    create(&server, json!({"id": "job", "type": "work"})).await;
    create(&server, json!({"id": "unwanted", "type": "work"})).await;
    let (status, opened) = server
        .post(
            "/v1/tasks/job/auction",
            &json!({"deadline_ms": 400, "min_confidence": 0.5}),
        )
        .await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["auction"]["status"], json!("open"));
    // score = 0.4 price/100 + 0.3 hours - 0.3 confidence; lowest wins.
    for (agent, price, estimated_ms, confidence) in [
        ("cheap-unsure", 10.0, 3_600_000, 0.3), // below min_confidence: not valid
        ("pricey", 200.0, 600_000, 0.9),        // 0.8 + 0.05 - 0.27 = 0.58
        ("balanced", 50.0, 1_800_000, 0.8),     // 0.2 + 0.15 - 0.24 = 0.11
        ("slow", 20.0, 7_200_000, 0.9),         // 0.08 + 0.6 - 0.27 = 0.41
    ] {
        let (status, body) = server
            .post(
                "/v1/tasks/job/bids",
                &json!({"agent": agent, "price": price, "estimated_ms": estimated_ms, "confidence": confidence}),
            )
            .await;
        assert_eq!(status, 200, "{agent}: {body}");
    }
    assert_eq!(
        claimed_id(&server, "grabber").await.as_deref(),
        Some("unwanted"),
        "a task under auction is not claimable"
    );
    let awarded = wait_for(&server, "/v1/tasks/job", |task| {
        task["status"] == json!("claimed")
    })
    .await;
    assert_eq!(awarded["agent"], json!("balanced"));
    assert_eq!(awarded["auction"]["winner"], json!("balanced"));
    assert!(history_types(&awarded).contains(&"task.auction_awarded".to_owned()));

    // No valid bid: the task stays pending and claimable.
    create(&server, json!({"id": "nobody", "type": "work"})).await;
    server
        .post(
            "/v1/tasks/nobody/auction",
            &json!({"deadline_ms": 150, "min_confidence": 0.9}),
        )
        .await;
    server
        .post(
            "/v1/tasks/nobody/bids",
            &json!({"agent": "meh", "price": 1, "estimated_ms": 1000, "confidence": 0.2}),
        )
        .await;
    let closed = wait_for(&server, "/v1/tasks/nobody", |task| {
        task["auction"]["status"] != json!("open")
    })
    .await;
    assert_eq!(closed["status"], json!("pending"));
    assert_eq!(
        claimed_id(&server, "later").await.as_deref(),
        Some("nobody")
    );
}

#[tokio::test]
async fn a_task_that_requires_approval_is_claimable_only_after_approve() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let created = create(
        &server,
        json!({"id": "rollback", "type": "ops", "requires_approval": true}),
    )
    .await;
    assert_eq!(created["status"], json!("awaiting_approval"));
    assert_eq!(claimed_id(&server, "ops-agent").await, None);
    let (status, approved) = server.post("/v1/tasks/rollback/approve", &json!({})).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], json!("pending"));
    assert_eq!(
        claimed_id(&server, "ops-agent").await.as_deref(),
        Some("rollback")
    );
}

#[tokio::test]
async fn a_killed_agents_claims_go_back_to_pending() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    server
        .post("/v1/agents", &json!({"id": "doomed", "type": "worker"}))
        .await;
    create(&server, json!({"id": "t", "type": "work"})).await;
    assert_eq!(claimed_id(&server, "doomed").await.as_deref(), Some("t"));
    let (status, _) = server.post("/v1/agents/doomed/kill", &json!({})).await;
    assert_eq!(status, 200);
    let (_, task) = server.get("/v1/tasks/t").await;
    assert_eq!(task["status"], json!("pending"));
    assert_eq!(task["attempt"], json!(1));
    assert_eq!(claimed_id(&server, "survivor").await.as_deref(), Some("t"));
}

#[tokio::test]
async fn bad_task_inputs_get_a_precise_error_and_write_nothing() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    create(&server, json!({"id": "t", "type": "work"})).await;
    let head = server.head().await;
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/tasks",
            json!({"type": "x", "colour": "red"}),
            422,
            "unknown_field",
        ),
        (
            "/v1/tasks",
            json!({"id": "p", "type": "x", "priority": 11}),
            422,
            "invalid_value",
        ),
        (
            "/v1/tasks",
            json!({"id": "p", "type": "x", "timeout_ms": 5}),
            422,
            "invalid_value",
        ),
        ("/v1/tasks", json!({"id": "p"}), 422, "missing_field"),
        ("/v1/tasks", json!({"tasks": []}), 422, "invalid_value"),
        (
            "/v1/tasks",
            json!({"tasks": [{"type": "x", "bogus": 1}]}),
            422,
            "unknown_field",
        ),
        (
            "/v1/tasks",
            json!({"id": "p", "type": "x", "session": 7}),
            422,
            "invalid_value",
        ),
        ("/v1/tasks/claim", json!({}), 422, "missing_field"),
        (
            "/v1/tasks/claim",
            json!({"agent": "a", "wait_ms": -1}),
            422,
            "invalid_value",
        ),
        (
            "/v1/tasks/nope/complete",
            json!({"agent": "a"}),
            404,
            "not_found",
        ),
        (
            "/v1/tasks/t/complete",
            json!({"agent": "a"}),
            409,
            "not_claimant",
        ),
        (
            "/v1/tasks/t/progress",
            json!({"agent": "a", "percent": "half"}),
            422,
            "invalid_value",
        ),
        (
            "/v1/tasks/t/auction",
            json!({"deadline_ms": 10}),
            422,
            "invalid_value",
        ),
        (
            "/v1/tasks/t/bids",
            json!({"agent": "a", "price": 1, "estimated_ms": 1, "confidence": 0.5}),
            409,
            "auction_closed",
        ),
        (
            "/v1/tasks/t/approve",
            json!({"now": true}),
            422,
            "unknown_field",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = server.post(path, &body).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert_eq!(
            answer["error"]["code"],
            json!(code),
            "{path} {body}: {answer}"
        );
        assert!(answer["error"]["message"].is_string());
    }
    let (status, answer) = server.post_raw("/v1/tasks", "{not json").await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!("malformed_json"))
    );
    let (status, answer) = server.get("/v1/tasks?status=done").await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!("invalid_query"))
    );
    let (status, answer) = server.get("/v1/tasks/missing").await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    assert_eq!(server.head().await, head, "nothing was written");
    let ids: BTreeSet<String> = server.get("/v1/tasks").await.1["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|task| task["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, BTreeSet::from(["t".to_owned()]));
}

#[tokio::test]
async fn task_reads_take_at_and_branch() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let created = create(&server, json!({"id": "t", "type": "work"})).await;
    let at = created["seq"].as_u64().expect("seq");
    claim(&server, json!({"agent": "a"})).await;
    let (_, past) = server.get(&format!("/v1/tasks/t?at={at}")).await;
    assert_eq!(past["status"], json!("pending"));
    let (status, _) = server
        .post("/v1/branches", &json!({"name": "what-if"}))
        .await;
    assert_eq!(status, 201);
    let (status, body) = server
        .post(
            "/v1/tasks/t/complete?branch=what-if",
            &json!({"agent": "a", "result": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, main) = server.get("/v1/tasks/t").await;
    assert_eq!(
        main["status"],
        json!("claimed"),
        "a branch's writes stay on the branch"
    );
    let (_, branch) = server.get("/v1/tasks/t?branch=what-if").await;
    assert_eq!(branch["status"], json!("completed"));
}

/// `POST path` with a bearer token.
async fn post_as(server: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    server
        .post_with(path, body, &[("authorization", &format!("Bearer {token}"))])
        .await
}

#[tokio::test]
async fn work_writes_act_only_as_the_tokens_own_agent() {
    const ADMIN: &str = "work-admin-secret-0123";
    const AGENT: &str = "work-agent-secret-0123";
    const READER: &str = "work-reader-secret-0123";
    let secrets = data_dir();
    let tokens = secrets.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[token]]\nsecret = \"{ADMIN}\"\nagent = \"ops\"\nrole = \"admin\"\n\n\
             [[token]]\nsecret = \"{AGENT}\"\nagent = \"worker-1\"\nrole = \"agent\"\n\n\
             [[token]]\nsecret = \"{READER}\"\nagent = \"auditor\"\nrole = \"reader\"\n"
        ),
    )
    .expect("write the token file");
    let dir = data_dir();
    let server = Server::start(dir.path(), &["--tokens", tokens.to_str().expect("utf-8")]).await;
    let (status, _) = post_as(
        &server,
        AGENT,
        "/v1/tasks",
        &json!({"id": "t", "type": "work", "requires_approval": true}),
    )
    .await;
    assert_eq!(status, 201, "an agent may create tasks");
    let (status, body) = post_as(
        &server,
        READER,
        "/v1/tasks",
        &json!({"id": "r", "type": "work"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("forbidden"))
    );
    let (status, _) = post_as(&server, AGENT, "/v1/tasks/t/approve", &json!({})).await;
    assert_eq!(status, 403, "an agent cannot open its own approval gate");
    let (status, _) = post_as(&server, ADMIN, "/v1/tasks/t/approve", &json!({})).await;
    assert_eq!(status, 200);
    for (path, body) in [
        ("/v1/tasks/claim", json!({"agent": "worker-2"})),
        (
            "/v1/findings",
            json!({"agent": "worker-2", "category": "observation", "content": "x"}),
        ),
        (
            "/v1/messages",
            json!({"from": "worker-2", "to": "worker-1", "type": "x"}),
        ),
        ("/v1/messages/M-1/ack", json!({"agent": "worker-2"})),
    ] {
        let (status, answer) = post_as(&server, AGENT, path, &body).await;
        assert_eq!(status, 403, "{path} as another agent: {answer}");
    }
    let (status, claimed) = post_as(
        &server,
        AGENT,
        "/v1/tasks/claim",
        &json!({"agent": "worker-1"}),
    )
    .await;
    assert_eq!((status, claimed["id"].clone()), (200, json!("t")));
    let events = server
        .http
        .get(format!("{}/v1/events?types=task.claimed", server.url))
        .header("authorization", format!("Bearer {READER}"))
        .send()
        .await
        .expect("the server answers")
        .text()
        .await
        .expect("a body");
    let claimed: Value = serde_json::from_str(events.trim()).expect("one event");
    assert_eq!(
        claimed["actor"],
        json!("worker-1"),
        "the token's agent is the actor"
    );
}

#[tokio::test]
async fn a_restart_replays_the_work_state_exactly() {
    let dir = data_dir();
    let mut server = Server::start(dir.path(), &[]).await;
    server
        .post("/v1/agents", &json!({"id": "a", "type": "w"}))
        .await;
    server
        .post("/v1/agents", &json!({"id": "b", "type": "w"}))
        .await;
    server
        .post("/v1/sessions", &json!({"id": "s", "operation": "op"}))
        .await;
    create(
        &server,
        json!({"tasks": [
            {"id": "one", "type": "t", "priority": 7},
            {"id": "two", "type": "t", "depends_on": ["one"]},
            {"id": "three", "type": "t", "depends_on": ["two"]},
            {"id": "four", "type": "t"}
        ], "session": "s"}),
    )
    .await;
    claim(&server, json!({"agent": "a"})).await;
    server
        .post(
            "/v1/tasks/one/complete",
            &json!({"agent": "a", "result": [1, 2]}),
        )
        .await;
    claim(&server, json!({"agent": "b"})).await;
    server
        .post("/v1/tasks/two/fail", &json!({"agent": "b", "error": "no"}))
        .await;
    server
        .post(
            "/v1/findings",
            &json!({"agent": "a", "category": "observation", "content": "c", "session": "s"}),
        )
        .await;
    server
        .post(
            "/v1/hypotheses",
            &json!({"id": "h", "description": "d", "confidence": 0.2}),
        )
        .await;
    server
        .post(
            "/v1/hypotheses/h/evidence",
            &json!({"finding": "F-1", "supports": true}),
        )
        .await;
    server
        .post(
            "/v1/proposals",
            &json!({"id": "p", "action": "x", "quorum": "majority", "deadline_ms": 60000}),
        )
        .await;
    server
        .post(
            "/v1/proposals/p/votes",
            &json!({"agent": "a", "vote": "yes"}),
        )
        .await;
    server
        .post(
            "/v1/messages",
            &json!({"from": "a", "to": "*", "type": "hi", "requires_ack": true}),
        )
        .await;
    server
        .post("/v1/messages/M-1/ack", &json!({"agent": "b"}))
        .await;
    let reads = [
        "/v1/tasks",
        "/v1/tasks/one",
        "/v1/tasks/three",
        "/v1/findings",
        "/v1/hypotheses",
        "/v1/proposals",
        "/v1/agents/b/inbox",
        "/v1/messages/M-1",
        "/v1/sessions/s",
        "/v1/sessions/s/report",
    ];
    let mut before = Vec::new();
    for path in reads {
        before.push(server.get(path).await);
    }
    assert_eq!(server.stop(), Some(0), "a clean shutdown");
    let server = Server::start(dir.path(), &[]).await;
    for (path, expected) in reads.iter().zip(before) {
        assert_eq!(server.get(path).await, expected, "{path} after a restart");
    }
}

#[tokio::test]
async fn a_retried_claim_with_its_idempotency_key_returns_the_same_task() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    create(
        &server,
        json!({"tasks": [{"id": "first", "type": "t"}, {"id": "second", "type": "t"}]}),
    )
    .await;
    let body = json!({"agent": "a"});
    let key = [("idempotency-key", "claim-a-1")];
    let (status, claimed) = server.post_with("/v1/tasks/claim", &body, &key).await;
    assert_eq!((status, claimed["id"].clone()), (200, json!("first")));
    let head = server.head().await;
    let (status, again) = server.post_with("/v1/tasks/claim", &body, &key).await;
    assert_eq!(status, 200);
    assert_eq!(again, claimed, "the retry gets the first answer");
    assert_eq!(server.head().await, head, "and claims nothing more");
    let (_, second) = server.get("/v1/tasks/second").await;
    assert_eq!(second["status"], json!("pending"));
}
