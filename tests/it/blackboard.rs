//! The blackboard through HTTP (SPEC §3 "Blackboard", issue 4): findings and their
//! queries, hypotheses whose confidence the evidence moves (docs/api.md's log-odds
//! formula), validation, ordering by confidence, and bad inputs that write nothing.

use serde_json::{json, Value};

use crate::support::{data_dir, Server};

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

fn close(actual: &Value, expected: f64) -> bool {
    actual
        .as_f64()
        .is_some_and(|value| (value - expected).abs() < 1e-9)
}

#[tokio::test]
async fn findings_are_queried_by_session_agent_category_and_tag() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, first) = server
        .post(
            "/v1/findings",
            &json!({
                "agent": "ops/deploy-validator", "session": "inc-1", "category": "observation",
                "content": "deployment v1.2.3 at 10:15 UTC", "confidence": 0.9,
                "evidence": [{"source": "deploys", "query": "last 1h", "result": {"version": "1.2.3"}}],
                "tags": ["deploy", "timeline"]
            }),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["id"], json!("F-1"));
    assert_eq!(first["evidence"][0]["source"], json!("deploys"));
    let (status, second) = server
        .post_with(
            "/v1/findings",
            &json!({"agent": "sec/lead", "category": "hypothesis", "content": {"suspect": "pool"}, "tags": ["db"], "session": "inc-1"}),
            &[("swarmlog-actor", "sec/lead")],
        )
        .await;
    assert_eq!(status, 201, "{second}");
    server
        .post(
            "/v1/findings",
            &json!({"agent": "sec/lead", "category": "conclusion", "content": "elsewhere", "session": "inc-2"}),
        )
        .await;
    let (_, by_session) = server.get("/v1/findings?session=inc-1").await;
    assert_eq!(ids(&by_session, "findings"), ["F-1", "F-2"]);
    let (_, by_agent) = server.get("/v1/findings?agent=sec/lead").await;
    assert_eq!(ids(&by_agent, "findings"), ["F-2", "F-3"]);
    let (_, by_category) = server.get("/v1/findings?category=conclusion").await;
    assert_eq!(ids(&by_category, "findings"), ["F-3"]);
    let (_, by_tag) = server.get("/v1/findings?tag=deploy&session=inc-1").await;
    assert_eq!(ids(&by_tag, "findings"), ["F-1"]);
    let (status, one) = server.get("/v1/findings/F-2").await;
    assert_eq!(
        (status, one["content"].clone()),
        (200, json!({"suspect": "pool"}))
    );
    // The same id and body again is 200 unchanged; another body is 409.
    let body = json!({"id": "fixed", "agent": "a", "category": "observation", "content": "x"});
    assert_eq!(server.post("/v1/findings", &body).await.0, 201);
    let head = server.head().await;
    assert_eq!(server.post("/v1/findings", &body).await.0, 200);
    let (status, conflict) = server
        .post(
            "/v1/findings",
            &json!({"id": "fixed", "agent": "a", "category": "observation", "content": "y"}),
        )
        .await;
    assert_eq!(
        (status, conflict["error"]["code"].clone()),
        (409, json!("already_exists"))
    );
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn evidence_moves_a_hypothesis_confidence_by_the_log_odds_formula() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for content in ["pool at 100%", "latency up", "memory flat"] {
        server
            .post(
                "/v1/findings",
                &json!({"agent": "a", "category": "observation", "content": content}),
            )
            .await;
    }
    let (status, pool) = server
        .post(
            "/v1/hypotheses",
            &json!({"id": "pool", "description": "connection pool exhaustion", "confidence": 0.5, "session": "inc-1"}),
        )
        .await;
    assert_eq!(status, 201, "{pool}");
    let (_, leak) = server
        .post("/v1/hypotheses", &json!({"id": "leak", "description": "memory leak", "confidence": 0.3, "session": "inc-1"}))
        .await;
    assert!(close(&leak["confidence"], 0.3));
    // One unit of supporting weight multiplies the odds by 3: 0.5 -> 0.75.
    let (status, supported) = server
        .post(
            "/v1/hypotheses/pool/evidence",
            &json!({"finding": "F-1", "supports": true}),
        )
        .await;
    assert_eq!(status, 200, "{supported}");
    assert!(close(&supported["confidence"], 0.75), "{supported}");
    // Weight 2 more: odds 3 * 9 = 27 -> 27/28.
    let (_, stronger) = server
        .post(
            "/v1/hypotheses/pool/evidence",
            &json!({"finding": "F-2", "supports": true, "weight": 2}),
        )
        .await;
    assert!(close(&stronger["confidence"], 27.0 / 28.0), "{stronger}");
    // Refuting evidence of weight 1 divides the odds by 3: 0.3 -> odds 3/7 / 3 = 1/7 -> 0.125.
    let (_, refuted) = server
        .post(
            "/v1/hypotheses/leak/evidence",
            &json!({"finding": "F-3", "supports": false}),
        )
        .await;
    assert!(close(&refuted["confidence"], 0.125), "{refuted}");
    let head = server.head().await;
    let (status, duplicate) = server
        .post(
            "/v1/hypotheses/pool/evidence",
            &json!({"finding": "F-1", "supports": true}),
        )
        .await;
    assert_eq!(
        (status, duplicate["error"]["code"].clone()),
        (409, json!("duplicate_evidence"))
    );
    let (status, unknown) = server
        .post(
            "/v1/hypotheses/pool/evidence",
            &json!({"finding": "F-404", "supports": true}),
        )
        .await;
    assert_eq!(
        (status, unknown["error"]["code"].clone()),
        (422, json!("invalid_value"))
    );
    let (status, heavy) = server
        .post(
            "/v1/hypotheses/pool/evidence",
            &json!({"finding": "F-3", "supports": true, "weight": 11}),
        )
        .await;
    assert_eq!(
        (status, heavy["error"]["code"].clone()),
        (422, json!("invalid_value"))
    );
    assert_eq!(server.head().await, head, "refused evidence writes nothing");

    let (_, list) = server.get("/v1/hypotheses?session=inc-1").await;
    assert_eq!(
        ids(&list, "hypotheses"),
        ["pool", "leak"],
        "most confident first"
    );
    let (status, confirmed) = server
        .post(
            "/v1/hypotheses/pool/validate",
            &json!({"result": true, "evidence": "pool metrics"}),
        )
        .await;
    assert_eq!(status, 200, "{confirmed}");
    assert!(close(&confirmed["confidence"], 1.0));
    assert_eq!(confirmed["status"], json!("confirmed"));
    let (_, rejected) = server
        .post("/v1/hypotheses/leak/validate", &json!({"result": false}))
        .await;
    assert!(close(&rejected["confidence"], 0.0));
    assert_eq!(rejected["status"], json!("refuted"));
    let (status, closed) = server
        .post(
            "/v1/hypotheses/pool/evidence",
            &json!({"finding": "F-3", "supports": false}),
        )
        .await;
    assert_eq!(
        (status, closed["error"]["code"].clone()),
        (409, json!("already_validated"))
    );
}

#[tokio::test]
async fn bad_blackboard_inputs_get_a_precise_error_and_write_nothing() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let head = server.head().await;
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/findings",
            json!({"agent": "a", "category": "rumour", "content": "x"}),
            422,
            "invalid_value",
        ),
        (
            "/v1/findings",
            json!({"agent": "a", "category": "observation", "content": "x", "confidence": 1.5}),
            422,
            "invalid_value",
        ),
        (
            "/v1/findings",
            json!({"agent": "a", "category": "observation"}),
            422,
            "missing_field",
        ),
        (
            "/v1/findings",
            json!({"agent": "a", "category": "observation", "content": "x", "evidence": [{"query": "q"}]}),
            422,
            "missing_field",
        ),
        (
            "/v1/hypotheses",
            json!({"description": "x", "confidence": -0.1}),
            422,
            "invalid_value",
        ),
        (
            "/v1/hypotheses",
            json!({"description": "x", "confidence": 0.5, "weight": 1}),
            422,
            "unknown_field",
        ),
        (
            "/v1/hypotheses/none/evidence",
            json!({"finding": "F-1", "supports": true}),
            404,
            "not_found",
        ),
        (
            "/v1/hypotheses/none/validate",
            json!({"result": true}),
            404,
            "not_found",
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
    }
    let (status, answer) = server.get("/v1/findings?category=rumour").await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!("invalid_query"))
    );
    assert_eq!(server.head().await, head, "nothing was written");
}
