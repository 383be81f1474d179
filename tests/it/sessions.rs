//! Sessions through HTTP (SPEC §3 "Sessions and reports", issue 4): progress percent,
//! the report's numbers, the NDJSON export of a session's events, and completion.

use serde_json::{json, Value};

use crate::support::{data_dir, Server};

async fn ok(server: &Server, path: &str, body: Value) -> Value {
    let (status, answer) = server.post(path, &body).await;
    assert!(status == 200 || status == 201, "{path}: {status} {answer}");
    answer
}

#[tokio::test]
async fn a_sessions_view_report_and_export_add_up() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let session = ok(
        &server,
        "/v1/sessions",
        json!({"id": "inc-1", "operation": "investigate", "context": {"ticket": "INC-1"}}),
    )
    .await;
    assert_eq!(session["status"], json!("active"));
    assert_eq!(session["progress_percent"], json!(0.0));
    let tasks: Vec<Value> = (1..=5)
        .map(|n| json!({"id": format!("t{n}"), "type": "check", "max_attempts": 1}))
        .collect();
    ok(
        &server,
        "/v1/tasks",
        json!({"tasks": tasks, "session": "inc-1"}),
    )
    .await;
    ok(
        &server,
        "/v1/tasks",
        json!({"id": "elsewhere", "type": "check"}),
    )
    .await;
    // Workers write without naming the session; their events still belong to it.
    for (agent, task) in [("a", "t1"), ("a", "t2"), ("b", "t3"), ("b", "t4")] {
        let (status, claimed) = server
            .post(
                "/v1/tasks/claim",
                &json!({"agent": agent, "types": ["check"]}),
            )
            .await;
        assert_eq!((status, claimed["id"].clone()), (200, json!(task)));
    }
    for (agent, task) in [("a", "t1"), ("a", "t2"), ("b", "t3")] {
        ok(
            &server,
            &format!("/v1/tasks/{task}/complete"),
            json!({"agent": agent, "result": {"ok": task}}),
        )
        .await;
    }
    ok(
        &server,
        "/v1/tasks/t4/fail",
        json!({"agent": "b", "error": "timeout"}),
    )
    .await;
    let (_, view) = server.get("/v1/sessions/inc-1").await;
    assert_eq!(view["total_tasks"], json!(5));
    assert_eq!(view["completed_tasks"], json!(3));
    assert_eq!(view["progress_percent"], json!(60.0));
    let agents: Vec<&Value> = view["agents"].as_array().expect("agents").iter().collect();
    assert!(
        agents.contains(&&json!("a")) && agents.contains(&&json!("b")),
        "{view}"
    );

    let (status, report) = server.get("/v1/sessions/inc-1/report").await;
    assert_eq!(status, 200, "{report}");
    let summary = &report["summary"];
    assert_eq!(summary["total_tasks"], json!(5));
    assert_eq!(summary["completed_tasks"], json!(3));
    assert_eq!(summary["failed_tasks"], json!(1));
    assert_eq!(summary["success_rate"], json!(0.6));
    assert_eq!(summary["agents_used"], json!(2));
    assert!(summary["avg_task_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert_eq!(report["by_agent"]["a"]["completed"], json!(2));
    assert_eq!(report["by_agent"]["a"]["tasks"], json!(["t1", "t2"]));
    assert_eq!(report["by_agent"]["b"]["completed"], json!(1));
    assert_eq!(report["by_agent"]["b"]["failed"], json!(1));
    assert_eq!(report["by_task"]["t1"]["status"], json!("completed"));
    assert_eq!(report["by_task"]["t1"]["result"], json!({"ok": "t1"}));
    assert_eq!(report["by_task"]["t4"]["error"], json!("timeout"));
    assert_eq!(report["by_task"]["t5"]["status"], json!("pending"));
    assert!(
        report["by_task"].get("elsewhere").is_none(),
        "other sessions' tasks stay out"
    );
    let ms: i64 = ["t1", "t2", "t3"]
        .iter()
        .map(|task| {
            report["by_task"][task]["duration_ms"]
                .as_i64()
                .expect("duration")
        })
        .sum();
    assert_eq!(summary["avg_task_ms"].as_f64(), Some(ms as f64 / 3.0));

    // The export holds every event of the session and nothing else.
    let response = server
        .http
        .get(format!("{}/v1/sessions/inc-1/events", server.url))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );
    let text = response.text().await.expect("a body");
    let events: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert!(events
        .iter()
        .all(|event| event["session"] == json!("inc-1")));
    let count = |kind: &str| {
        events
            .iter()
            .filter(|event| event["type"] == json!(kind))
            .count()
    };
    assert_eq!(count("session.started"), 1);
    assert_eq!(count("task.created"), 5);
    assert_eq!(count("task.claimed"), 4);
    assert_eq!(count("task.completed"), 3);
    assert_eq!(count("task.failed"), 1);
    assert_eq!(events.len(), 14);

    let completed = ok(
        &server,
        "/v1/sessions/inc-1/complete",
        json!({"outcome": "root cause found"}),
    )
    .await;
    assert_eq!(completed["status"], json!("completed"));
    assert_eq!(completed["outcome"], json!("root cause found"));
    let head = server.head().await;
    let (status, _) = server
        .post(
            "/v1/sessions/inc-1/complete",
            &json!({"outcome": "root cause found"}),
        )
        .await;
    assert_eq!(status, 200, "the same completion again is a no-op");
    let (status, other) = server
        .post("/v1/sessions/inc-1/complete", &json!({"outcome": "other"}))
        .await;
    assert_eq!(
        (status, other["error"]["code"].clone()),
        (409, json!("session_completed"))
    );
    assert_eq!(server.head().await, head);
    let (_, list) = server.get("/v1/sessions").await;
    assert_eq!(list["sessions"][0]["id"], json!("inc-1"));
}

#[tokio::test]
async fn bad_session_inputs_get_a_precise_error_and_write_nothing() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    ok(
        &server,
        "/v1/sessions",
        json!({"id": "s", "operation": "op"}),
    )
    .await;
    let head = server.head().await;
    let (status, answer) = server.post("/v1/sessions", &json!({"operation": ""})).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (422, json!("invalid_value"))
    );
    let (status, answer) = server
        .post("/v1/sessions", &json!({"id": "s", "operation": "other"}))
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (409, json!("already_exists"))
    );
    let (status, answer) = server
        .post("/v1/sessions", &json!({"operation": "op", "owner": "me"}))
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (422, json!("unknown_field"))
    );
    let (status, answer) = server.post("/v1/sessions/nope/complete", &json!({})).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    for path in [
        "/v1/sessions/nope",
        "/v1/sessions/nope/report",
        "/v1/sessions/nope/events",
    ] {
        let (status, answer) = server.get(path).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (404, json!("not_found")),
            "{path}"
        );
    }
    assert_eq!(server.head().await, head);
}
