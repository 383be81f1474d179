//! Authentication and roles (SPEC §4, issue 3): `serve --tokens FILE`, 401 without a valid
//! token, readers only read, an agent token acts only as its own agent, admin does anything,
//! `/healthz` stays open, and no non-loopback listening without tokens.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::coordination::{call, code};
use crate::support::{binary, cli, data_dir, Server};

const ADMIN: &str = "admin-secret-0123456789";
const AGENT_1: &str = "agent-1-secret-0123456789";
const AGENT_2: &str = "agent-2-secret-0123456789";
const READER: &str = "reader-secret-0123456789";

/// A token file with one token per role; the reader's is stored as a SHA-256 digest.
fn write_tokens(dir: &Path) -> std::path::PathBuf {
    // sha256("reader-secret-0123456789"), so the file need not hold the reader's secret.
    let reader_digest = sha256_hex(READER);
    let text = format!(
        "[[token]]\nsecret = \"{ADMIN}\"\nagent = \"ops\"\nrole = \"admin\"\n\n\
         [[token]]\nsecret = \"{AGENT_1}\"\nagent = \"agent-1\"\nrole = \"agent\"\n\n\
         [[token]]\nsecret = \"{AGENT_2}\"\nagent = \"agent-2\"\nrole = \"agent\"\n\n\
         [[token]]\nsecret_sha256 = \"{reader_digest}\"\nagent = \"auditor\"\nrole = \"reader\"\n"
    );
    let path = dir.join("tokens.toml");
    std::fs::write(&path, text).expect("write the token file");
    path
}

/// SHA-256 through the `sha256sum` tool, which every CI image has.
fn sha256_hex(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("sha256sum finishes");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

async fn as_token(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    call(
        server,
        method,
        path,
        body,
        &[("authorization", bearer.as_str())],
    )
    .await
}

async fn tokened_server() -> (tempfile::TempDir, tempfile::TempDir, Server) {
    let secrets = data_dir();
    let tokens = write_tokens(secrets.path());
    let dir = data_dir();
    let server = Server::start(
        dir.path(),
        &["--tokens", tokens.to_str().expect("utf-8 path")],
    )
    .await;
    (secrets, dir, server)
}

#[tokio::test]
async fn a_missing_or_unknown_token_is_401_and_healthz_stays_open() {
    let (_secrets, _dir, server) = tokened_server().await;
    let (status, health) = server.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
    for (method, path, body) in [
        ("GET", "/v1/kv", None),
        ("GET", "/v1/locks", None),
        ("PUT", "/v1/kv/k", Some(json!({"value": 1}))),
        ("POST", "/v1/agents", Some(json!({"id": "x", "type": "w"}))),
    ] {
        let (status, refused) = call(&server, method, path, body.as_ref(), &[]).await;
        assert_eq!(
            (status, code(&refused)),
            (401, "unauthorized"),
            "{method} {path} without a token"
        );
        let (status, refused) = as_token(
            &server,
            "not-a-known-secret-at-all",
            method,
            path,
            body.as_ref(),
        )
        .await;
        assert_eq!(
            (status, code(&refused)),
            (401, "unauthorized"),
            "{method} {path} with an unknown token"
        );
        let (status, _) = call(
            &server,
            method,
            path,
            body.as_ref(),
            &[("authorization", ADMIN)],
        )
        .await;
        assert_eq!(
            status, 401,
            "the secret without the Bearer scheme is not a token"
        );
    }
    assert_eq!(
        server.get("/healthz").await.1["head"],
        json!(0),
        "nothing was written"
    );
}

#[tokio::test]
async fn a_reader_reads_but_may_not_write() {
    let (_secrets, _dir, server) = tokened_server().await;
    let (status, _) = as_token(
        &server,
        ADMIN,
        "PUT",
        "/v1/kv/k",
        Some(&json!({"value": 1})),
    )
    .await;
    assert_eq!(status, 200);
    for path in [
        "/v1/kv/k",
        "/v1/kv",
        "/v1/locks",
        "/v1/agents",
        "/v1/branches",
        "/v1/audit/head",
    ] {
        let (status, body) = as_token(&server, READER, "GET", path, None).await;
        assert_eq!(status, 200, "a reader reads {path}: {body}");
    }
    for (method, path, body) in [
        ("PUT", "/v1/kv/k", json!({"value": 2})),
        ("PUT", "/v1/state/s", json!({"value": 2})),
        (
            "POST",
            "/v1/locks/db/acquire",
            json!({"owner": "auditor", "ttl_ms": 1000}),
        ),
        ("POST", "/v1/agents", json!({"id": "auditor", "type": "w"})),
        ("POST", "/v1/branches", json!({"name": "b"})),
        ("POST", "/v1/events", json!({"type": "a.b", "stream": "s"})),
    ] {
        let (status, refused) = as_token(&server, READER, method, path, Some(&body)).await;
        assert_eq!(
            (status, code(&refused)),
            (403, "forbidden"),
            "{method} {path}: {refused}"
        );
    }
    assert_eq!(
        server.get("/healthz").await.1["head"],
        json!(1),
        "the reader wrote nothing"
    );
}

#[tokio::test]
async fn an_agent_token_acts_only_as_its_own_agent() {
    let (_secrets, _dir, server) = tokened_server().await;
    let (status, own) = as_token(
        &server,
        AGENT_1,
        "POST",
        "/v1/agents",
        Some(&json!({"id": "agent-1", "type": "w"})),
    )
    .await;
    assert_eq!(status, 201, "{own}");
    let (status, grant) = as_token(
        &server,
        AGENT_1,
        "POST",
        "/v1/locks/db/acquire",
        Some(&json!({"owner": "agent-1", "ttl_ms": 60000})),
    )
    .await;
    assert_eq!(status, 200, "{grant}");
    let (status, written) = as_token(
        &server,
        AGENT_1,
        "PUT",
        "/v1/kv/k",
        Some(&json!({"value": 1})),
    )
    .await;
    assert_eq!(status, 200, "{written}");
    let events = server.replay_with_token(AGENT_1, "?stream=kv/k").await;
    assert_eq!(
        events[0]["actor"],
        json!("agent-1"),
        "the actor is the token's agent"
    );

    let head = server.get("/healthz").await.1["head"].clone();
    let as_other: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/v1/agents".into(),
            json!({"id": "agent-2", "type": "w"}),
        ),
        (
            "POST",
            "/v1/locks/db2/acquire".into(),
            json!({"owner": "agent-2", "ttl_ms": 60000}),
        ),
        (
            "POST",
            "/v1/locks/acquire".into(),
            json!({"owner": "agent-2", "resources": ["x"], "ttl_ms": 60000}),
        ),
        (
            "POST",
            "/v1/locks/db/release".into(),
            json!({"owner": "agent-2", "token": grant["token"]}),
        ),
        (
            "POST",
            "/v1/locks/db/renew".into(),
            json!({"owner": "agent-2", "token": grant["token"], "ttl_ms": 1000}),
        ),
        ("POST", "/v1/agents/agent-2/heartbeat".into(), json!({})),
        ("DELETE", "/v1/agents/agent-2".into(), json!({})),
        ("POST", "/v1/agents/agent-1/kill".into(), json!({})),
    ];
    for (method, path, body) in &as_other {
        let (status, refused) = as_token(&server, AGENT_1, method, path, Some(body)).await;
        assert_eq!(
            (status, code(&refused)),
            (403, "forbidden"),
            "{method} {path}: {refused}"
        );
    }
    // A Swarmlog-Actor header does not let an agent token pass as someone else.
    let bearer = format!("Bearer {AGENT_1}");
    let (status, _) = call(
        &server,
        "PUT",
        "/v1/kv/k2",
        Some(&json!({"value": 1})),
        &[
            ("authorization", bearer.as_str()),
            ("swarmlog-actor", "agent-2"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let events = server.replay_with_token(AGENT_1, "?stream=kv/k2").await;
    assert_eq!(
        events[0]["actor"],
        json!("agent-1"),
        "the header is ignored for an agent token"
    );
    assert_eq!(
        server.get("/healthz").await.1["head"].as_u64(),
        head.as_u64().map(|h| h + 1)
    );
}

#[tokio::test]
async fn an_admin_may_do_anything_including_the_kill_switch() {
    let (_secrets, _dir, server) = tokened_server().await;
    as_token(
        &server,
        AGENT_1,
        "POST",
        "/v1/agents",
        Some(&json!({"id": "agent-1", "type": "w"})),
    )
    .await;
    let (status, _) = as_token(
        &server,
        ADMIN,
        "POST",
        "/v1/locks/db/acquire",
        Some(&json!({"owner": "agent-2", "ttl_ms": 60000})),
    )
    .await;
    assert_eq!(status, 200, "an admin may act for any agent");
    let (status, killed) = as_token(
        &server,
        ADMIN,
        "POST",
        "/v1/agents/agent-1/kill",
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{killed}");
    let (status, refused) = as_token(
        &server,
        AGENT_1,
        "PUT",
        "/v1/kv/k",
        Some(&json!({"value": 1})),
    )
    .await;
    assert_eq!(
        (status, code(&refused)),
        (403, "agent_killed"),
        "a killed agent's token writes nothing"
    );
    let (status, refused) = as_token(
        &server,
        AGENT_1,
        "POST",
        "/v1/agents",
        Some(&json!({"id": "agent-1", "type": "w"})),
    )
    .await;
    assert_eq!(
        (status, code(&refused)),
        (403, "agent_killed"),
        "only an admin revives: {refused}"
    );
    let (status, _) = as_token(
        &server,
        ADMIN,
        "POST",
        "/v1/agents",
        Some(&json!({"id": "agent-1", "type": "w"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = as_token(
        &server,
        AGENT_1,
        "PUT",
        "/v1/kv/k",
        Some(&json!({"value": 1})),
    )
    .await;
    assert_eq!(status, 200, "revived by an admin");
}

#[tokio::test]
async fn the_cli_sends_its_token_to_the_server() {
    let (_secrets, dir, server) = tokened_server().await;
    let db = dir.path().to_str().expect("utf-8 path");
    let (code, _, stderr) = cli(&["--url", &server.url, "kv", "put", "k", "v"]);
    assert_eq!(code, 1, "no token: refused: {stderr}");
    assert!(stderr.contains("unauthorized"), "{stderr}");
    let (code, _, stderr) = cli(&[
        "--url",
        &server.url,
        "--token",
        AGENT_1,
        "kv",
        "put",
        "k",
        "v",
    ]);
    assert_eq!(code, 0, "{stderr}");
    // --db goes through the server serving the directory, with SWARMLOG_TOKEN.
    let output = Command::new(binary())
        .args(["--db", db, "--raw", "kv", "get", "k"])
        .env("SWARMLOG_TOKEN", READER)
        .env_remove("SWARMLOG_URL")
        .output()
        .expect("the binary runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "v");
}

#[test]
fn without_tokens_the_server_refuses_a_non_loopback_address() {
    let dir = data_dir();
    let output = Command::new(binary())
        .arg("--db")
        .arg(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("SWARMLOG_LOG", "warn")
        .output()
        .expect("the binary runs");
    assert_ne!(output.status.code(), Some(0), "the server must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0"),
        "the refusal says why: {stderr}"
    );
    assert!(stderr.contains("--tokens"), "and what to do: {stderr}");
    assert!(!dir.path().join("server.addr").exists(), "it never served");
}

#[test]
fn a_bad_token_file_stops_the_start() {
    let dir = data_dir();
    for (name, text) in [
        (
            "short.toml",
            "[[token]]\nsecret = \"short\"\nagent = \"a\"\nrole = \"agent\"\n",
        ),
        (
            "role.toml",
            "[[token]]\nsecret = \"long-enough-secret-1\"\nagent = \"a\"\nrole = \"king\"\n",
        ),
        ("empty.toml", ""),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let output = Command::new(binary())
            .arg("--db")
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0", "--tokens"])
            .arg(&path)
            .env("SWARMLOG_LOG", "warn")
            .output()
            .expect("the binary runs");
        assert_ne!(
            output.status.code(),
            Some(0),
            "{name}: the server must not start"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(name),
            "{name}: the error names the file: {stderr}"
        );
        assert!(
            !stderr.contains("long-enough-secret-1"),
            "secrets are never printed: {stderr}"
        );
    }
}

impl Server {
    /// The NDJSON replay of `query` with a bearer token.
    async fn replay_with_token(&self, token: &str, query: &str) -> Vec<Value> {
        let response = self
            .http
            .get(format!("{}/v1/events{query}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 200);
        let text = response.text().await.expect("a body");
        text.lines()
            .map(|line| serde_json::from_str(line).expect("NDJSON"))
            .collect()
    }
}

/// Registers `agent` with its own token.
async fn register(server: &Server, token: &str, agent: &str) {
    let (status, body) = as_token(
        server,
        token,
        "POST",
        "/v1/agents",
        Some(&json!({"id": agent, "type": "w"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Creates task `id` with `token`.
async fn create_task(server: &Server, token: &str, id: &str) {
    let (status, body) = as_token(
        server,
        token,
        "POST",
        "/v1/tasks",
        Some(&json!({"id": id, "type": "work"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Issue 9, defect 4: an agent token assigns a task only to itself unless it created the
/// task; assigning by strategy or to another agent, cancelling and opening an auction are
/// for the task's creator or an admin. The refusals are 403 `forbidden` with a sentence
/// naming the rule, and write nothing.
#[tokio::test]
async fn an_agent_token_assigns_and_cancels_only_the_tasks_it_created() {
    let (_secrets, _dir, server) = tokened_server().await;
    register(&server, AGENT_1, "agent-1").await;
    register(&server, AGENT_2, "agent-2").await;
    create_task(&server, AGENT_2, "T-by-2").await;
    create_task(&server, ADMIN, "T-by-admin").await;
    create_task(&server, AGENT_2, "T-self").await;
    let head = server.head_with_token(READER).await;
    let refused: Vec<(&str, Value, &str)> = vec![
        // The reproduction of the issue: agent-1's token hands a task to agent-2.
        (
            "/v1/tasks/T-by-2/assign",
            json!({"agent": "agent-2"}),
            "assign",
        ),
        (
            "/v1/tasks/T-by-admin/assign",
            json!({"agent": "agent-2"}),
            "assign",
        ),
        (
            "/v1/tasks/T-by-2/assign",
            json!({"strategy": "round_robin"}),
            "assign",
        ),
        ("/v1/tasks/T-by-2/cancel", json!({}), "cancel"),
        (
            "/v1/tasks/T-by-admin/cancel",
            json!({"reason": "mine now"}),
            "cancel",
        ),
        (
            "/v1/tasks/T-by-2/auction",
            json!({"deadline_ms": 1000}),
            "auction",
        ),
    ];
    for (path, body, verb) in &refused {
        let (status, answer) = as_token(&server, AGENT_1, "POST", path, Some(body)).await;
        assert_eq!(
            (status, code(&answer)),
            (403, "forbidden"),
            "{path} {body}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(verb) && message.contains("creator") && message.contains("admin"),
            "the sentence names the rule: {message}"
        );
    }
    assert_eq!(
        server.head_with_token(READER).await,
        head,
        "the refusals wrote nothing"
    );
    let (_, task) = as_token(&server, READER, "GET", "/v1/tasks/T-by-2", None).await;
    assert_eq!(task["status"], json!("pending"), "{task}");

    // Any agent may take a task for itself; the creator hands its task to anyone, by name or
    // by strategy, and cancels it; an admin does all of it on any task.
    let (status, taken) = as_token(
        &server,
        AGENT_1,
        "POST",
        "/v1/tasks/T-self/assign",
        Some(&json!({"agent": "agent-1"})),
    )
    .await;
    assert_eq!(
        (status, &taken["agent"]),
        (200, &json!("agent-1")),
        "{taken}"
    );
    let (status, handed) = as_token(
        &server,
        AGENT_2,
        "POST",
        "/v1/tasks/T-by-2/assign",
        Some(&json!({"agent": "agent-1"})),
    )
    .await;
    assert_eq!(
        (status, &handed["agent"]),
        (200, &json!("agent-1")),
        "{handed}"
    );
    create_task(&server, AGENT_2, "T-cancel").await;
    let (status, cancelled) = as_token(
        &server,
        AGENT_2,
        "POST",
        "/v1/tasks/T-cancel/cancel",
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        (status, &cancelled["status"]),
        (200, &json!("cancelled")),
        "{cancelled}"
    );
    let (status, assigned) = as_token(
        &server,
        ADMIN,
        "POST",
        "/v1/tasks/T-by-admin/assign",
        Some(&json!({"strategy": "round_robin"})),
    )
    .await;
    assert_eq!(status, 200, "{assigned}");
    create_task(&server, AGENT_1, "T-admin-cancels").await;
    let (status, cancelled) = as_token(
        &server,
        ADMIN,
        "POST",
        "/v1/tasks/T-admin-cancels/cancel",
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
}

/// Issue 9, defect 4: an agent token reads and acks only its own inbox; reader and admin
/// tokens read any inbox.
#[tokio::test]
async fn an_agent_token_reads_and_acks_only_its_own_inbox() {
    let (_secrets, _dir, server) = tokened_server().await;
    register(&server, AGENT_1, "agent-1").await;
    register(&server, AGENT_2, "agent-2").await;
    let (status, sent) = as_token(
        &server,
        ADMIN,
        "POST",
        "/v1/messages",
        Some(&json!({"from": "ops", "to": "agent-2", "type": "note", "payload": {"secret": 1}, "requires_ack": true})),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    let id = sent["id"].as_str().expect("a message id").to_owned();
    let head = server.head_with_token(READER).await;
    let (status, refused) =
        as_token(&server, AGENT_1, "GET", "/v1/agents/agent-2/inbox", None).await;
    assert_eq!((status, code(&refused)), (403, "forbidden"), "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("inbox")),
        "{refused}"
    );
    let response = server
        .http
        .get(format!("{}/v1/agents/agent-2/inbox", server.url))
        .bearer_auth(AGENT_1)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 403, "nor as SSE");
    for (token, who) in [
        (AGENT_2, "its own agent"),
        (READER, "a reader"),
        (ADMIN, "an admin"),
    ] {
        let (status, inbox) =
            as_token(&server, token, "GET", "/v1/agents/agent-2/inbox", None).await;
        assert_eq!(status, 200, "{who}: {inbox}");
        assert_eq!(inbox["messages"][0]["id"], json!(id), "{who}: {inbox}");
    }
    let ack = format!("/v1/messages/{id}/ack");
    let (status, refused) = as_token(
        &server,
        AGENT_1,
        "POST",
        &ack,
        Some(&json!({"agent": "agent-2"})),
    )
    .await;
    assert_eq!((status, code(&refused)), (403, "forbidden"), "{refused}");
    let (status, refused) = as_token(
        &server,
        AGENT_1,
        "POST",
        &ack,
        Some(&json!({"agent": "agent-1"})),
    )
    .await;
    assert_eq!(
        (status, code(&refused)),
        (403, "not_recipient"),
        "{refused}"
    );
    assert_eq!(
        server.head_with_token(READER).await,
        head,
        "nothing written"
    );
    let (status, acked) = as_token(
        &server,
        AGENT_2,
        "POST",
        &ack,
        Some(&json!({"agent": "agent-2"})),
    )
    .await;
    assert_eq!(status, 200, "{acked}");
}

#[tokio::test]
async fn an_agent_token_lists_only_the_messages_it_sent_or_received() {
    let (_secrets, _dir, server) = tokened_server().await;
    register(&server, AGENT_1, "agent-1").await;
    register(&server, AGENT_2, "agent-2").await;
    for body in [
        json!({"from": "ops", "to": "agent-2", "type": "note", "payload": 1}),
        json!({"from": "ops", "to": "agent-1", "type": "note", "payload": 2}),
    ] {
        let (status, sent) = as_token(&server, ADMIN, "POST", "/v1/messages", Some(&body)).await;
        assert_eq!(status, 201, "{sent}");
    }
    let payloads = |list: &Value| -> Vec<Value> {
        let messages = list["messages"].as_array().expect("messages");
        messages
            .iter()
            .map(|message| message["payload"].clone())
            .collect()
    };
    let (status, own) = as_token(&server, AGENT_1, "GET", "/v1/messages", None).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(payloads(&own), [json!(2)], "by default its own");
    let (status, refused) =
        as_token(&server, AGENT_1, "GET", "/v1/messages?agent=agent-2", None).await;
    assert_eq!((status, code(&refused)), (403, "forbidden"), "{refused}");
    for token in [READER, ADMIN] {
        let (status, all) = as_token(&server, token, "GET", "/v1/messages", None).await;
        assert_eq!(status, 200, "{all}");
        assert_eq!(payloads(&all), [json!(2), json!(1)]);
    }
}

#[tokio::test]
async fn the_board_page_needs_no_token_but_what_it_reads_does() {
    let (_secrets, _dir, server) = tokened_server().await;
    for path in [
        "/",
        "/board/board.js",
        "/board/board.css",
        "/board/icon.svg",
    ] {
        let response = server
            .http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    let (status, refused) = call(&server, "GET", "/v1/whoami", None, &[]).await;
    assert_eq!((status, code(&refused)), (401, "unauthorized"));
    let (status, me) = as_token(&server, READER, "GET", "/v1/whoami", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, json!({"agent": "auditor", "role": "reader"}));
}

/// A tokens file of `(secret line, agent, role)` entries.
fn tokens_text(entries: &[(String, &str, &str)]) -> String {
    entries
        .iter()
        .map(|(secret, agent, role)| {
            format!("[[token]]\n{secret}\nagent = \"{agent}\"\nrole = \"{role}\"\n\n")
        })
        .collect()
}

/// Runs `serve --tokens tokens` on `data` and returns its exit code and stderr; a server
/// that is still running after 20 s (it accepted the file) is killed and gives `None`.
fn serve_until_exit(data: &Path, tokens: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(binary())
        .arg("--db")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(tokens)
        .env("SWARMLOG_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (exit, stderr)
}

/// Issue 9, defect 6: two entries with the same secret (also one as a digest) stop the
/// start, naming both entries; the later one no longer wins.
#[test]
fn duplicate_secrets_in_the_tokens_file_stop_the_start_naming_both_entries() {
    let dir = data_dir();
    let plain = |secret: &str| format!("secret = \"{secret}\"");
    let cases = [
        (
            "plain.toml",
            tokens_text(&[
                (plain(AGENT_1), "agent-1", "agent"),
                (plain(ADMIN), "ops", "admin"),
                (plain(AGENT_1), "boss", "admin"),
            ]),
            "token 2 (agent 'boss')",
            "token 0 (agent 'agent-1')",
        ),
        (
            "digest.toml",
            tokens_text(&[
                (plain(READER), "auditor", "reader"),
                (
                    format!("secret_sha256 = \"{}\"", sha256_hex(READER).to_uppercase()),
                    "root",
                    "admin",
                ),
            ]),
            "token 1 (agent 'root')",
            "token 0 (agent 'auditor')",
        ),
    ];
    for (name, text, later, earlier) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let (exit, stderr) = serve_until_exit(&dir.path().join("data"), &path);
        assert_eq!(exit, Some(1), "{name}: {stderr}");
        for wanted in [name, later, earlier, "same secret"] {
            assert!(stderr.contains(wanted), "{name}: names {wanted}: {stderr}");
        }
        assert!(
            !stderr.contains(AGENT_1) && !stderr.contains(READER),
            "secrets are never printed: {stderr}"
        );
    }
}

/// The counter `swarmlog_token_reloads_total{outcome}`, read with the admin token.
async fn reloads(server: &Server, outcome: &str) -> u64 {
    let text = server
        .http
        .get(format!("{}/metrics", server.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let prefix = format!("swarmlog_token_reloads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Issue 9, defect 6: SIGHUP reloads the tokens file: a token added to the file works after
/// it; a bad file is refused on reload and the old tokens keep working.
#[tokio::test]
async fn sighup_reloads_the_tokens_file_and_a_bad_file_keeps_the_old_tokens() {
    const AGENT_3: &str = "agent-3-secret-0123456789";
    let (secrets, _dir, server) = tokened_server().await;
    let path = secrets.path().join("tokens.toml");
    let whoami = |token: &'static str| {
        let server = &server;
        async move { as_token(server, token, "GET", "/v1/whoami", None).await }
    };
    assert_eq!(whoami(AGENT_3).await.0, 401, "not in the file yet");
    let original = std::fs::read_to_string(&path).expect("read the tokens");
    let added = format!(
        "{original}\n[[token]]\nsecret = \"{AGENT_3}\"\nagent = \"agent-3\"\nrole = \"agent\"\n"
    );
    std::fs::write(&path, &added).expect("rewrite the tokens");
    server.signal(libc::SIGHUP);
    crate::coordination::wait_until("the reload", || async {
        (reloads(&server, "loaded").await == 1).then_some(())
    })
    .await;
    let (status, me) = whoami(AGENT_3).await;
    assert_eq!((status, &me["agent"]), (200, &json!("agent-3")), "{me}");

    for bad in [
        "this is [not toml".to_owned(),
        format!(
            "{added}\n[[token]]\nsecret = \"{AGENT_3}\"\nagent = \"thief\"\nrole = \"admin\"\n"
        ),
    ] {
        let refused_before = reloads(&server, "refused").await;
        std::fs::write(&path, bad).expect("write a bad file");
        server.signal(libc::SIGHUP);
        crate::coordination::wait_until("the refused reload", || async {
            (reloads(&server, "refused").await == refused_before + 1).then_some(())
        })
        .await;
        for (token, agent) in [(AGENT_1, "agent-1"), (AGENT_3, "agent-3"), (ADMIN, "ops")] {
            let (status, me) = whoami(token).await;
            assert_eq!((status, &me["agent"]), (200, &json!(agent)), "{me}");
        }
    }
    assert_eq!(reloads(&server, "loaded").await, 1);
}

impl Server {
    /// The committed head, read with a token.
    async fn head_with_token(&self, token: &str) -> u64 {
        let (status, head) = as_token(self, token, "GET", "/v1/audit/head", None).await;
        assert_eq!(status, 200, "{head}");
        head["seq"].as_u64().expect("a seq")
    }
}
