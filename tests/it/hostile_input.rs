//! Hostile input (issue 9): requests a browser on another site can make (CSRF and DNS
//! rebinding), JSON nested deeper than the limit, duplicate JSON keys, and URLs that are not
//! UTF-8. Each is refused with the JSON error shape of SPEC §3 and writes nothing.
//!
//! The requests that need a `Host` header of their own are written by hand on a raw socket,
//! as a browser would send them, so that no client library fixes them up.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::coordination::code;
use crate::support::{binary, data_dir, Server};

/// An answer read off a raw socket.
struct RawAnswer {
    status: u16,
    /// The header block, lower-cased.
    headers: String,
    body: Value,
}

/// The `host:port` the server listens on.
fn authority(server: &Server) -> String {
    server
        .url
        .strip_prefix("http://")
        .expect("an http URL")
        .to_owned()
}

/// Sends one request written by hand (`head` is the request line and headers without the
/// final blank line; `Connection: close` and `Content-Length` are added) and reads the
/// answer to the end.
async fn send_raw(server: &Server, head: &str, body: &str) -> RawAnswer {
    let mut stream = tokio::net::TcpStream::connect(authority(server))
        .await
        .expect("connect");
    let request = if body.is_empty() {
        format!("{head}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    } else {
        format!(
            "{head}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .expect("read the answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (header_block, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = header_block
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP status line: {text:?}"));
    RawAnswer {
        status,
        headers: header_block.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())),
    }
}

/// Asserts status and `error.code`, and that the body is the JSON error shape.
fn assert_refused(answer: &RawAnswer, status: u16, wanted: &str, what: &str) {
    assert_eq!(
        (answer.status, code(&answer.body)),
        (status, wanted),
        "{what}: {}",
        answer.body
    );
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "{what}: a sentence says why: {}",
        answer.body
    );
}

/// Issue 9, defect 3: the reproduction of the issue. A page on another site does
/// `fetch('http://127.0.0.1:7070/v1/agents/victim/kill', {method: 'POST', mode: 'no-cors',
/// body: '{}'})`: the browser sends `Content-Type: text/plain` and its own `Origin`, and with
/// DNS rebinding the `Host` of the attacker's name. Every variant is refused and the log
/// does not move; the same request from the server's own origin works.
#[tokio::test]
async fn cross_site_and_rebinding_requests_are_refused_and_write_nothing() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, _) = server
        .post("/v1/agents", &json!({"id": "victim", "type": "worker"}))
        .await;
    assert_eq!(status, 201);
    let head = server.head().await;
    let own = authority(&server);
    let kill = "POST /v1/agents/victim/kill HTTP/1.1";
    let append = "POST /v1/events HTTP/1.1";
    let event = r#"{"type":"evil.event","stream":"evil"}"#;
    let cases: Vec<(String, &str, u16, &str, &str)> = vec![
        (
            format!("{kill}\r\nHost: evil.example\r\nOrigin: http://evil.example\r\nContent-Type: text/plain;charset=UTF-8"),
            "{}",
            403,
            "host_not_allowed",
            "rebinding: the kill as the browser sends it",
        ),
        (
            format!("{append}\r\nHost: evil.example\r\nOrigin: http://evil.example\r\nContent-Type: text/plain;charset=UTF-8"),
            event,
            403,
            "host_not_allowed",
            "rebinding: an append as the browser sends it",
        ),
        (
            format!("{kill}\r\nHost: {own}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain;charset=UTF-8"),
            "{}",
            403,
            "origin_not_allowed",
            "CSRF: the kill from another origin",
        ),
        (
            format!("{append}\r\nHost: {own}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain;charset=UTF-8"),
            event,
            403,
            "origin_not_allowed",
            "CSRF: an append from another origin",
        ),
        (
            format!("{kill}\r\nHost: {own}\r\nOrigin: http://evil.example"),
            "",
            403,
            "origin_not_allowed",
            "CSRF: a body-less kill from another origin",
        ),
        (
            format!("{kill}\r\nHost: {own}\r\nOrigin: null\r\nContent-Type: application/json"),
            "{}",
            403,
            "origin_not_allowed",
            "Origin: null (a sandboxed frame or a file: page)",
        ),
        (
            format!("{kill}\r\nHost: {own}\r\nContent-Type: text/plain"),
            "{}",
            415,
            "unsupported_media_type",
            "a text/plain body",
        ),
        (
            format!("{append}\r\nHost: {own}\r\nContent-Type: application/x-www-form-urlencoded"),
            event,
            415,
            "unsupported_media_type",
            "a form body",
        ),
        (
            format!("{append}\r\nHost: {own}"),
            event,
            415,
            "unsupported_media_type",
            "a body without a Content-Type",
        ),
        (
            format!("{kill}\r\nHost: {own}.evil.example\r\nContent-Type: application/json"),
            "{}",
            403,
            "host_not_allowed",
            "a name that only starts with the address",
        ),
        (
            "GET /v1/agents/victim HTTP/1.1\r\nHost: evil.example".to_owned(),
            "",
            403,
            "host_not_allowed",
            "a read through a rebound name",
        ),
        (
            "GET /metrics HTTP/1.1\r\nHost: evil.example".to_owned(),
            "",
            403,
            "host_not_allowed",
            "the metrics through a rebound name",
        ),
        (
            format!("POST /mcp HTTP/1.1\r\nHost: {own}\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream"),
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"evil","version":"1"}}}"#,
            403,
            "origin_not_allowed",
            "/mcp from another origin",
        ),
    ];
    for (head_lines, body, status, wanted, what) in &cases {
        let answer = send_raw(&server, head_lines, body).await;
        assert_refused(&answer, *status, wanted, what);
    }
    assert_eq!(server.head().await, head, "nothing was written");
    let (_, victim) = server.get("/v1/agents/victim").await;
    assert_eq!(victim["status"], json!("active"), "{victim}");

    // The server's own origin (the board at `/`), by address or by `localhost`, works.
    let answer = send_raw(
        &server,
        &format!("{append}\r\nHost: {own}\r\nOrigin: http://{own}\r\nContent-Type: application/json; charset=utf-8"),
        event,
    )
    .await;
    assert_eq!(answer.status, 201, "same origin: {}", answer.body);
    let port = own.rsplit(':').next().expect("a port");
    let answer = send_raw(
        &server,
        &format!("GET /v1/agents/victim HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: http://localhost:{port}"),
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "localhost: {}", answer.body);
    // A write without a body needs no Content-Type; no Origin means no browser page.
    let answer = send_raw(&server, &format!("{kill}\r\nHost: {own}"), "").await;
    assert_eq!(answer.status, 200, "a body-less kill: {}", answer.body);
    // /healthz stays open to any Host (load balancers probe by their own names).
    let answer = send_raw(&server, "GET /healthz HTTP/1.1\r\nHost: lb.internal", "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// Issue 9, defect 3: names given with `--allow-host` and origins given with
/// `--allow-origin` pass, with CORS answers (preflight included) for those origins only.
#[tokio::test]
async fn allowed_hosts_and_origins_pass_and_get_cors_answers() {
    let dir = data_dir();
    let server = Server::start(
        dir.path(),
        &[
            "--allow-host",
            "swarm.internal",
            "--allow-origin",
            "http://board.example:8080",
            "--allow-origin",
            "https://ops.example",
        ],
    )
    .await;
    let port = authority(&server)
        .rsplit(':')
        .next()
        .expect("a port")
        .to_owned();
    let event = r#"{"type":"board.click","stream":"board"}"#;
    let answer = send_raw(
        &server,
        &format!("GET /v1/agents HTTP/1.1\r\nHost: Swarm.Internal:{port}"),
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "an allowed host: {}", answer.body);
    let answer = send_raw(
        &server,
        "POST /v1/events HTTP/1.1\r\nHost: swarm.internal\r\nOrigin: https://swarm.internal\r\nContent-Type: application/json",
        event,
    )
    .await;
    assert_eq!(answer.status, 201, "its own https origin: {}", answer.body);
    let answer = send_raw(
        &server,
        &format!("POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://board.example:8080\r\nContent-Type: application/json"),
        event,
    )
    .await;
    assert_eq!(answer.status, 201, "an allowed origin: {}", answer.body);
    assert!(
        answer
            .headers
            .contains("access-control-allow-origin: http://board.example:8080"),
        "CORS answer for an allowed origin: {}",
        answer.headers
    );
    let preflight = send_raw(
        &server,
        &format!("OPTIONS /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://ops.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type, authorization, idempotency-key"),
        "",
    )
    .await;
    assert_eq!(preflight.status, 200, "preflight: {}", preflight.headers);
    for wanted in [
        "access-control-allow-origin: https://ops.example",
        "access-control-allow-methods:",
        "access-control-allow-headers:",
    ] {
        assert!(
            preflight.headers.contains(wanted),
            "preflight has {wanted}: {}",
            preflight.headers
        );
    }
    assert!(
        preflight.headers.contains("post") && preflight.headers.contains("idempotency-key"),
        "preflight allows POST and the API's headers: {}",
        preflight.headers
    );
    let head = server.head().await;
    let refused = send_raw(
        &server,
        &format!("OPTIONS /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST"),
        "",
    )
    .await;
    assert_refused(&refused, 403, "origin_not_allowed", "a foreign preflight");
    assert!(
        !refused.headers.contains("access-control-allow-origin"),
        "{}",
        refused.headers
    );
    let refused = send_raw(
        &server,
        &format!("POST /v1/events HTTP/1.1\r\nHost: other.internal:{port}\r\nContent-Type: application/json"),
        event,
    )
    .await;
    assert_refused(&refused, 403, "host_not_allowed", "a name not allowed");
    assert_eq!(server.head().await, head, "the refusals wrote nothing");
}

/// Issue 9, defect 3: an `--allow-origin` that is not an origin stops the start (exit 2).
#[test]
fn an_allow_origin_that_is_not_an_origin_stops_the_start() {
    let dir = data_dir();
    for origin in ["board.example", "http://board.example/path", "null", "*"] {
        let output = std::process::Command::new(binary())
            .arg("--db")
            .arg(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--allow-origin", origin])
            .env("SWARMLOG_LOG", "warn")
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{origin}: {stderr}");
        assert!(
            stderr.contains("--allow-origin must be an origin"),
            "{origin}: {stderr}"
        );
    }
}

/// `[[[...1...]]]` nested `depth` levels deep, as text (a `Value` that deep would overflow
/// serde_json's own recursion limit when serialized).
fn nested_text(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Issue 9, defect 8: anything nested deeper than the limit is 422 `too_deep` however deep it
/// is (it was 400 `malformed_json` from 128 levels on, serde_json's recursion limit), in a
/// single event, a batch, any other write and over `/mcp`.
#[tokio::test]
async fn json_nested_beyond_the_limit_is_too_deep_at_any_depth() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    server.append("s", json!({})).await;
    let head = server.head().await;
    // The body object is one level: 63 more fit in 64.
    let fits = format!(
        r#"{{"type":"a.b","stream":"deep","data":{}}}"#,
        nested_text(63)
    );
    let (status, body) = server.post_raw("/v1/events", fits).await;
    assert_eq!(status, 201, "64 levels fit: {body}");
    let head_after = server.head().await;
    assert_eq!(head_after, head + 1);
    for depth in [64, 127, 128, 1_000, 100_000] {
        let data = nested_text(depth);
        let bodies = [
            (
                "/v1/events",
                format!(r#"{{"type":"a.b","stream":"s","data":{data}}}"#),
            ),
            (
                "/v1/events",
                format!(r#"{{"events":[{{"type":"a.b","stream":"s","data":{data}}}]}}"#),
            ),
            (
                "/v1/tasks",
                format!(r#"{{"type":"t","parameters":{data}}}"#),
            ),
            // Unclosed: still too deep, not malformed, whatever follows.
            (
                "/v1/events",
                format!(r#"{{"type":"a.b","data":{}"#, "[".repeat(depth)),
            ),
        ];
        for (path, body) in bodies {
            let (status, refused) = server.post_raw(path, body).await;
            assert_eq!(
                (status, code(&refused)),
                (422, "too_deep"),
                "{depth} levels on {path}: {refused}"
            );
            assert_eq!(refused["error"]["limit"], json!(64), "{refused}");
        }
    }
    let deep_call = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"kv_put","arguments":{{"key":"k","value":{}}}}}}}"#,
        nested_text(100_000)
    );
    let response = server
        .http
        .post(format!("{}/mcp", server.url))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(deep_call)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let refused: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, code(&refused)),
        (422, "too_deep"),
        "/mcp: {refused}"
    );
    assert_eq!(server.head().await, head_after, "nothing was written");
}

/// Issue 9, defect 10: a key twice in one object is 422 `duplicate_key` naming the key, at
/// any depth; the last one no longer wins.
#[tokio::test]
async fn duplicate_json_keys_are_refused_naming_the_key() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    server.append("s", json!({})).await;
    let head = server.head().await;
    let cases = [
        (
            "/v1/events",
            r#"{"type":"a.b","stream":"s","expected_version":5,"expected_version":0}"#,
            "expected_version",
        ),
        (
            "/v1/events",
            r#"{"type":"a.b","stream":"s","data":{"x":{"amount":1,"amount":2}}}"#,
            "amount",
        ),
        (
            "/v1/events",
            r#"{"events":[{"type":"a.b","stream":"s","stream":"t"}]}"#,
            "stream",
        ),
        (
            "/v1/state/cell/cas",
            r#"{"expected_version":null,"value":1,"value":2}"#,
            "value",
        ),
        (
            "/v1/events",
            r#"{"type":"a.b","stream":"s","meta":{"model":"a","model":"b"}}"#,
            "model",
        ),
        (
            "/v1/events",
            r#"{"type":"a.b","stream":"s","data":{"caf\u00e9":1,"café":2}}"#,
            "café",
        ),
    ];
    for (path, body, key) in cases {
        let (status, refused) = server.post_raw(path, body).await;
        assert_eq!(
            (status, code(&refused)),
            (422, "duplicate_key"),
            "{body}: {refused}"
        );
        assert_eq!(refused["error"]["key"], json!(key), "{refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains(key)),
            "the sentence names the key: {refused}"
        );
    }
    // The same key in two different objects is no duplicate.
    let (status, body) = server
        .post_raw(
            "/v1/events",
            r#"{"type":"a.b","stream":"s","data":{"a":{"k":1},"b":{"k":2}}}"#,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(server.head().await, head + 1, "only the valid write landed");
}

/// Issue 9, defect 9: invalid UTF-8 in a path segment or a query value is 400 with the JSON
/// error shape (it was a plain-text 400 in a path, and a silent U+FFFD in a query); and
/// every other rejection (unknown route, wrong method, bad parameters) is JSON too.
#[tokio::test]
async fn every_rejection_of_a_url_is_json_and_invalid_utf8_is_refused() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    // A branch literally named U+FFFD: a lossy decoding of %FF would find it.
    let (status, _) = server
        .post("/v1/branches", &json!({"name": "\u{FFFD}"}))
        .await;
    assert_eq!(status, 201);
    server.append("s", json!({})).await;
    let head = server.head().await;
    let own = authority(&server);
    let cases: Vec<(String, &str, u16, &str)> = vec![
        ("GET /v1/kv/%FF%FE".into(), "", 400, "invalid_path"),
        ("GET /v1/streams/a%C3".into(), "", 400, "invalid_path"),
        ("GET /v1/agents/%FF/inbox".into(), "", 400, "invalid_path"),
        (
            "PUT /v1/kv/%FF%FE".into(),
            r#"{"value":1}"#,
            400,
            "invalid_path",
        ),
        (
            "POST /v1/tasks/%FF/cancel".into(),
            "{}",
            400,
            "invalid_path",
        ),
        ("GET /v1/tasks/%ED%A0%80".into(), "", 400, "invalid_path"),
        ("GET /v1/kv?prefix=%FF".into(), "", 400, "invalid_query"),
        ("GET /v1/agents?branch=%ff".into(), "", 400, "invalid_query"),
        (
            "GET /v1/events?stream=%FE%FF".into(),
            "",
            400,
            "invalid_query",
        ),
        ("GET /v1/events?%FF=1".into(), "", 400, "invalid_query"),
        (
            "PUT /v1/kv/k?branch=%ff".into(),
            r#"{"value":1}"#,
            400,
            "invalid_query",
        ),
        ("GET /v1/events?bogus=1".into(), "", 400, "invalid_query"),
        ("GET /v1/events?from=-1".into(), "", 400, "invalid_query"),
        ("GET /v2/nothing".into(), "", 404, "route_not_found"),
        (
            "GET /v1/kv/%FF/more/segments".into(),
            "",
            400,
            "invalid_path",
        ),
        ("DELETE /v1/events".into(), "", 405, "method_not_allowed"),
        (
            "PATCH /v1/kv/k".into(),
            r#"{"value":1}"#,
            405,
            "method_not_allowed",
        ),
        ("POST /healthz".into(), "", 405, "method_not_allowed"),
        ("PUT /mcp".into(), "{}", 405, "method_not_allowed"),
        ("GET /mcp".into(), "", 406, "not_acceptable"),
        ("DELETE /mcp".into(), "", 400, "invalid_mcp_request"),
    ];
    for (line, body, status, wanted) in &cases {
        let content_type = if body.is_empty() {
            String::new()
        } else {
            "\r\nContent-Type: application/json".to_owned()
        };
        let answer = send_raw(
            &server,
            &format!("{line} HTTP/1.1\r\nHost: {own}{content_type}"),
            body,
        )
        .await;
        assert_refused(&answer, *status, wanted, line);
        assert!(
            answer.headers.contains("content-type: application/json"),
            "{line}: {}",
            answer.headers
        );
    }
    assert_eq!(server.head().await, head, "nothing was written");
}
