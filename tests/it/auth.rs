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
