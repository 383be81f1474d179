//! The OpenAPI document stays true to the router and the catalog: every documented route
//! is served, and every operation answers the schema the document gives it.

use crate::support::{data_dir, Server};

#[tokio::test]
async fn every_documented_route_is_served() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, document) = server.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 7, "the document lists the routes");
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            let concrete = path.replace(['{', '}'], "");
            let url = format!("{}{concrete}", server.url);
            let request = match method.as_str() {
                "get" => server.http.get(&url),
                "post" => server
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                "put" => server
                    .http
                    .put(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                "delete" => server.http.delete(&url),
                other => panic!("unexpected method {other} for {path}"),
            };
            let response = request
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await;
            // An SSE route may keep the connection open; answering at all is enough there.
            let Ok(response) = response else { continue };
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let code = body["error"]["code"].as_str().unwrap_or("");
            assert!(
                code != "route_not_found" && code != "method_not_allowed" && status != 405,
                "{method} {path} is documented but not served ({status} {code})"
            );
        }
    }
}

/// Every catalog operation, called once through its route with arguments built by the
/// catalog itself, answers what the OpenAPI document says it answers: the request is
/// accepted (2xx) and the body validates against the operation's answer schema.
#[tokio::test]
async fn every_operation_answers_its_documented_schema() {
    use serde_json::{json, Value};
    use swarmlog_server::catalog;

    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (_, document) = server.get("/v1/openapi.json").await;
    // In the order the calls make sense: each entity exists before it is used.
    let calls: Vec<(&str, Value)> = vec![
        (
            "append_events",
            json!({"type": "demo.ping", "stream": "demo/1"}),
        ),
        ("read_events", json!({})),
        ("stream_get", json!({"stream": "demo/1"})),
        ("audit_head", json!({})),
        ("state_set", json!({"key": "k", "value": 1})),
        ("state_init", json!({"key": "k2", "value": 1})),
        (
            "state_cas",
            json!({"key": "k", "expected_version": 1, "value": 2}),
        ),
        ("state_get", json!({"key": "k"})),
        ("kv_put", json!({"key": "kv", "value": "v"})),
        ("kv_get", json!({"key": "kv"})),
        ("kv_list", json!({"prefix": "k"})),
        ("kv_delete", json!({"key": "kv"})),
        (
            "agent_register",
            json!({"id": "a1", "type": "worker", "capabilities": ["x"], "ttl_ms": 60000}),
        ),
        (
            "agent_register",
            json!({"id": "a2", "type": "worker", "ttl_ms": 60000}),
        ),
        ("agent_heartbeat", json!({"agent": "a1"})),
        ("agent_get", json!({"agent": "a1"})),
        ("agent_list", json!({})),
        (
            "lock_acquire",
            json!({"resource": "r", "owner": "a1", "ttl_ms": 60000}),
        ),
        ("lock_get", json!({"resource": "r"})),
        ("lock_list", json!({})),
        (
            "lock_acquire_many",
            json!({"owner": "a1", "resources": ["q1", "q2"], "ttl_ms": 60000}),
        ),
        ("session_start", json!({"id": "s1", "operation": "demo"})),
        (
            "task_create",
            json!({"id": "T1", "type": "build", "session": "s1"}),
        ),
        (
            "task_create",
            json!({"tasks": [{"id": "T2", "type": "build"}, {"id": "T3", "type": "build", "requires_approval": true}, {"id": "T4", "type": "build"}, {"id": "T5", "type": "build"}]}),
        ),
        ("task_claim", json!({"agent": "a1", "types": ["build"]})),
        (
            "task_progress",
            json!({"task": "T1", "agent": "a1", "percent": 50}),
        ),
        (
            "task_complete",
            json!({"task": "T1", "agent": "a1", "result": {"ok": true}}),
        ),
        ("task_assign", json!({"task": "T2", "agent": "a2"})),
        (
            "task_fail",
            json!({"task": "T2", "agent": "a2", "error": "boom", "retry": true}),
        ),
        ("task_approve", json!({"task": "T3"})),
        ("task_cancel", json!({"task": "T3"})),
        ("task_claim", json!({"agent": "a2"})),
        ("task_release", json!({"task": "T2", "agent": "a2"})),
        ("task_auction", json!({"task": "T4", "deadline_ms": 60000})),
        (
            "task_bid",
            json!({"task": "T4", "agent": "a1", "price": 1.0, "estimated_ms": 1000, "confidence": 0.9}),
        ),
        ("task_get", json!({"task": "T1"})),
        ("task_list", json!({"status": "completed"})),
        (
            "finding_post",
            json!({"id": "F1", "agent": "a1", "category": "observation", "content": "x", "session": "s1"}),
        ),
        ("finding_get", json!({"finding": "F1"})),
        ("finding_list", json!({"session": "s1"})),
        (
            "hypothesis_propose",
            json!({"id": "H1", "description": "d", "confidence": 0.5, "session": "s1"}),
        ),
        (
            "hypothesis_evidence",
            json!({"hypothesis": "H1", "finding": "F1", "supports": true}),
        ),
        (
            "hypothesis_validate",
            json!({"hypothesis": "H1", "result": true}),
        ),
        ("hypothesis_get", json!({"hypothesis": "H1"})),
        ("hypothesis_list", json!({"session": "s1"})),
        (
            "proposal_open",
            json!({"id": "P1", "action": "ship", "quorum": "majority", "voters": ["a1", "a2"], "deadline_ms": 60000}),
        ),
        (
            "vote",
            json!({"proposal": "P1", "agent": "a1", "vote": "yes"}),
        ),
        ("proposal_get", json!({"proposal": "P1"})),
        ("proposal_list", json!({})),
        (
            "message_send",
            json!({"from": "a1", "to": "a2", "type": "hello", "payload": 1, "requires_ack": true}),
        ),
        ("message_get", json!({"message": "M-1"})),
        ("message_list", json!({"agent": "a2", "limit": 10})),
        ("inbox", json!({"agent": "a2"})),
        ("message_ack", json!({"message": "M-1", "agent": "a2"})),
        ("session_get", json!({"session": "s1"})),
        ("session_list", json!({})),
        ("session_report", json!({"session": "s1"})),
        ("session_events", json!({"session": "s1"})),
        ("session_complete", json!({"session": "s1"})),
        (
            "lock_renew",
            json!({"resource": "r", "owner": "a1", "token": 0, "ttl_ms": 60000}),
        ),
        (
            "lock_release",
            json!({"resource": "r", "owner": "a1", "token": 0}),
        ),
        ("branch_create", json!({"name": "b1"})),
        ("branch_list", json!({})),
        ("snapshot", json!({})),
        ("agent_kill", json!({"agent": "a2"})),
        ("agent_deregister", json!({"agent": "a1"})),
    ];
    let mut token = 0;
    let mut covered = std::collections::BTreeSet::new();
    for (name, mut arguments) in calls {
        // The fencing token of lock r is known only once it is granted.
        if arguments.get("token") == Some(&json!(0)) {
            arguments["token"] = json!(token);
        }
        let operation = catalog::find(name).unwrap_or_else(|| panic!("{name} is catalogued"));
        let call = operation
            .http_request(arguments.as_object().expect("an object"))
            .expect("valid arguments");
        let url = format!("{}{}", server.url, call.path_and_query);
        let request = server.http.request(call.method.http(), &url);
        let request = match &call.body {
            Some(body) => request.json(body),
            None => request,
        };
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        assert!((200..300).contains(&status), "{name}: {status} {text}");
        let item = &document["paths"][operation.path][operation.method.as_str()];
        assert_eq!(item["operationId"], json!(name), "{name} is documented");
        if operation.method.writes() {
            let body = &item["requestBody"]["content"]["application/json"]["schema"];
            assert!(
                body["properties"].is_object() || body["anyOf"].is_array(),
                "{name} documents its request body: {body}"
            );
        }
        let content = &item["responses"]["200"]["content"];
        let (schema, bodies): (&Value, Vec<Value>) = match content.get("application/x-ndjson") {
            Some(ndjson) => (
                &ndjson["schema"],
                text.lines()
                    .map(|line| serde_json::from_str(line).expect("NDJSON"))
                    .collect(),
            ),
            None => (
                &content["application/json"]["schema"],
                vec![serde_json::from_str(&text).expect("JSON")],
            ),
        };
        let rooted = json!({"allOf": [schema], "components": document["components"]});
        let validator = jsonschema::validator_for(&rooted).expect("a valid schema");
        for body in &bodies {
            let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{name} answered {body} against its schema: {errors:?}"
            );
        }
        if name == "lock_acquire" {
            token = bodies[0]["token"].as_u64().expect("a fencing token");
        }
        covered.insert(name);
    }
    let all: std::collections::BTreeSet<&str> = catalog::operations()
        .iter()
        .map(|operation| operation.name)
        .collect();
    assert_eq!(covered, all, "the scenario calls every operation");
}
