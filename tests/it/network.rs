//! The hostile network (issue #9, defects 1, 2 and 11): slow and idle connections, floods
//! of them past the connection cap and the file-descriptor limit, half-closed sockets,
//! partial requests at shutdown, `Expect: 100-continue` and ambiguous request framing.
//! The tests speak raw HTTP/1.1 over `std::net::TcpStream` where a client library would
//! hide what the server does on the wire (with `Host: 127.0.0.1`, an address the server
//! accepts), and set small timeouts with `serve`'s flags.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::support::{data_dir, segments, Server};

/// An answer read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the answer is JSON")
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .expect("an error code")
            .to_owned()
    }
}

/// A raw connection to the server, with reads bounded so a broken server fails the test
/// instead of hanging it.
fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.address()).expect("the server's port accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a read timeout");
    stream
}

/// Reads an answer's head byte by byte, so nothing after it is consumed.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = stream.read(&mut byte).expect("the server answers");
        assert_eq!(read, 1, "the connection closed before an answer: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("an ASCII head")
}

/// Reads one answer: its head, then `Content-Length` bytes of body.
fn read_answer(stream: &mut TcpStream) -> Answer {
    let head = read_head(stream);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, value)| {
            value.parse().expect("a numeric content-length")
        });
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("the whole body");
    Answer {
        status,
        headers,
        body,
    }
}

/// Sends one request on a kept connection and reads its answer.
fn exchange(stream: &mut TcpStream, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("the request is sent");
    read_answer(stream)
}

/// Whether the server closes `stream` (end of file or reset) within `limit`; bytes it
/// sends meanwhile are read and dropped.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("a read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return true,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(error) => panic!("unexpected read error: {error}"),
        }
    }
}

/// The harness's HTTP client keeps a connection, which a short idle timeout closes under
/// it; this one opens a new connection per request.
fn unpooled(server: &mut Server) {
    server.http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
}

/// Sets the child's RLIMIT_NOFILE before it runs.
fn limit_descriptors(command: &mut Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure calls only setrlimit, which is
    // async-signal-safe, and touches no memory shared with the parent.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[tokio::test]
async fn a_head_trickled_past_the_header_timeout_is_closed() {
    let dir = data_dir();
    let server = Server::start(
        dir.path(),
        &["--header-timeout-ms", "300", "--idle-timeout-ms", "60000"],
    )
    .await;
    let mut slow = connect(&server);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .expect("the first bytes are sent");
    // One more header byte every 50 ms: the connection is never idle, its head never ends.
    let started = Instant::now();
    let mut closed = false;
    while !closed && started.elapsed() < Duration::from_secs(10) {
        closed =
            slow.write_all(b"a").is_err() || closed_within(&mut slow, Duration::from_millis(50));
    }
    assert!(
        closed,
        "a head still incomplete after 10 s (header timeout 300 ms) was not closed"
    );
    assert_eq!(
        server.get("/healthz").await.0,
        200,
        "the server still serves"
    );
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout_while_others_are_served() {
    let dir = data_dir();
    let mut server = Server::start(
        dir.path(),
        &["--idle-timeout-ms", "1000", "--header-timeout-ms", "10000"],
    )
    .await;
    unpooled(&mut server);
    // A hundred make one request, each as soon as it is open (so that none sits idle
    // past the timeout before its request): idle between requests counts as idle too.
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut stream = connect(&server);
            assert_eq!(exchange(&mut stream, "GET", "/healthz", None).status, 200);
            stream
        })
        .collect();
    // Two hundred send nothing at all.
    idle.extend((0..200).map(|_| connect(&server)));
    // A client that keeps using its connection is served throughout, past the timeout.
    let mut busy = connect(&server);
    for _ in 0..16 {
        let answer = exchange(&mut busy, "GET", "/healthz", None);
        assert_eq!(answer.status, 200, "a connection in use is kept");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        server.get("/healthz").await.0,
        200,
        "a new client is served"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    for (index, stream) in idle.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            closed_within(stream, left.max(Duration::from_millis(1))),
            "idle connection {index} is still open long after the idle timeout"
        );
    }
}

#[tokio::test]
async fn a_request_body_that_stops_is_closed_after_the_idle_timeout() {
    let dir = data_dir();
    let mut server = Server::start(
        dir.path(),
        &["--idle-timeout-ms", "300", "--header-timeout-ms", "60000"],
    )
    .await;
    unpooled(&mut server);
    let head_before = server.head().await;
    let event = json!({"type": "test.event", "stream": "slow-body"}).to_string();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        event.len()
    );
    // A body that keeps coming, a byte every 50 ms, takes longer than the timeout: served.
    let mut slow = connect(&server);
    slow.write_all(head.as_bytes()).expect("sent");
    for byte in event.as_bytes() {
        slow.write_all(&[*byte]).expect("the slow body is taken");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read_answer(&mut slow).status, 201);
    // A body that stops halfway is closed, unanswered, and writes nothing.
    let mut stopped = connect(&server);
    stopped.write_all(head.as_bytes()).expect("sent");
    stopped
        .write_all(&event.as_bytes()[..10])
        .expect("half the body is sent");
    assert!(
        closed_within(&mut stopped, Duration::from_secs(10)),
        "a body that stopped is still waited for long after the idle timeout"
    );
    assert_eq!(server.head().await, head_before + 1);
}

#[tokio::test]
async fn sse_streams_and_waiting_requests_outlive_the_timeouts() {
    let dir = data_dir();
    let mut server = Server::start(
        dir.path(),
        &["--idle-timeout-ms", "200", "--header-timeout-ms", "200"],
    )
    .await;
    unpooled(&mut server);
    let subscription = server
        .http
        .get(format!("{}/v1/events", server.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("the server answers");
    assert_eq!(subscription.status().as_u16(), 200);
    let mut events = subscription.bytes_stream();
    let (status, _) = server
        .post(
            "/v1/locks/outlive/acquire",
            &json!({"owner": "a", "ttl_ms": 1000}),
        )
        .await;
    assert_eq!(status, 200);
    // Granted when a's lock expires, a second later: five idle timeouts in flight.
    let waiter = {
        let http = server.http.clone();
        let url = format!("{}/v1/locks/outlive/acquire", server.url);
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({"owner": "b", "ttl_ms": 1000, "wait_ms": 10000}))
                .send()
                .await
                .expect("the waiting request is answered")
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.append("outlive", json!({"late": true})).await;
    let delivered = tokio::time::timeout(Duration::from_secs(20), async {
        let mut text = String::new();
        while let Some(chunk) = events.next().await {
            let chunk = chunk.expect("the stream stays open");
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("\"late\":true") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        delivered,
        Ok(true),
        "the SSE stream delivered the later event"
    );
    assert_eq!(
        waiter.await.expect("the waiter task"),
        200,
        "the lock wait got its grant"
    );
}

#[tokio::test]
async fn half_closed_sockets_get_their_answer_or_are_closed() {
    let dir = data_dir();
    let server = Server::start(
        dir.path(),
        &["--idle-timeout-ms", "60000", "--header-timeout-ms", "60000"],
    )
    .await;
    let head = server.head().await;
    // A complete request, then the client shuts its sending side: it still gets its answer.
    let mut complete = connect(&server);
    complete
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("sent");
    complete.shutdown(Shutdown::Write).expect("half-closed");
    assert_eq!(read_answer(&mut complete).status, 200);
    assert!(closed_within(&mut complete, Duration::from_secs(10)));
    // Half a head, then the sending side shut: closed at once, not after the timeouts.
    let mut partial_head = connect(&server);
    partial_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("sent");
    partial_head.shutdown(Shutdown::Write).expect("half-closed");
    assert!(
        closed_within(&mut partial_head, Duration::from_secs(10)),
        "a half-closed partial head is closed"
    );
    // Half a body, then the sending side shut: told so (it was answered 413 before, as if
    // the body were too large), closed, and nothing written.
    let mut partial_body = connect(&server);
    partial_body
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"type\":\"t.x\",",
        )
        .expect("sent");
    partial_body.shutdown(Shutdown::Write).expect("half-closed");
    let answer = read_answer(&mut partial_body);
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_code(), "incomplete_body");
    assert!(
        closed_within(&mut partial_body, Duration::from_secs(10)),
        "a half-closed partial body is closed"
    );
    assert_eq!(server.head().await, head, "nothing was written");
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_too_many_connections() {
    let dir = data_dir();
    let mut server = Server::start(dir.path(), &["--max-connections", "3"]).await;
    // The harness's own kept connection counts until the server sees it close.
    unpooled(&mut server);
    let mut filled = None;
    for _ in 0..100 {
        let mut held = Vec::new();
        let mut refused = None;
        for _ in 0..4 {
            let mut stream = connect(&server);
            let answer = exchange(&mut stream, "GET", "/healthz", None);
            if answer.status == 200 {
                held.push(stream);
            } else {
                refused = Some((stream, answer));
                break;
            }
        }
        assert!(
            held.len() <= 3,
            "a fourth connection was served past a cap of 3"
        );
        if let (3, Some(refused)) = (held.len(), refused) {
            filled = Some((held, refused));
            break;
        }
        drop(held);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut held, (mut refused_stream, refused)) =
        filled.expect("three connections served and the fourth refused");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.error_code(), "too_many_connections");
    assert_eq!(refused.json()["error"]["limit"], 3);
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(closed_within(&mut refused_stream, Duration::from_secs(5)));
    // The three kept connections still work, and freeing one place lets a new one in.
    for stream in &mut held {
        assert_eq!(exchange(stream, "GET", "/healthz", None).status, 200);
    }
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = connect(&server);
        if exchange(&mut stream, "GET", "/healthz", None).status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a freed place is never given out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The reproduction of issue #9, defect 1: with `ulimit -n 128` and 200 idle connections,
/// the server aborted at the next segment roll (`Too many open files`).
#[tokio::test]
async fn idle_connections_cannot_starve_the_log_of_file_descriptors() {
    let dir = data_dir();
    let mut server =
        Server::start_configured(dir.path(), &["--segment-size", "65536"], |command| {
            limit_descriptors(command, 128, 128)
        })
        .await;
    let mut kept = connect(&server);
    assert_eq!(exchange(&mut kept, "GET", "/healthz", None).status, 200);
    let idle: Vec<TcpStream> = (0..200).map(|_| connect(&server)).collect();
    let pad = "x".repeat(4096);
    let mut acknowledged = Vec::new();
    for index in 0..100 {
        let event =
            json!({"type": "test.event", "stream": "fd", "data": {"index": index, "pad": pad}});
        let answer = exchange(&mut kept, "POST", "/v1/events", Some(&event));
        assert_eq!(answer.status, 201, "write {index}: {:?}", answer.json());
        acknowledged.push(answer.json()["seq"].as_u64().expect("a seq"));
    }
    assert!(
        segments(dir.path()).len() >= 5,
        "the writes rolled several segments"
    );
    drop(idle);
    drop(kept);
    assert_eq!(
        server.stop_within(Duration::from_secs(30)),
        Some(0),
        "the server ran to a clean exit"
    );
    let server = Server::start(dir.path(), &[]).await;
    let events = server.replay("?stream=fd").await;
    let seqs: Vec<u64> = events
        .iter()
        .map(|event| event["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, acknowledged, "every acknowledged event is there");
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["data"]["index"], index);
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_soft_descriptor_limit_is_raised_to_the_hard_limit() {
    let dir = data_dir();
    let server = Server::start_configured(dir.path(), &[], |command| {
        limit_descriptors(command, 256, 4096)
    })
    .await;
    let pid = server.pid().expect("the server runs");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("its limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a descriptor limit");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{line}");
}

/// The reproduction of issue #9, defect 2: SIGTERM never finished while one partial
/// request was open.
#[tokio::test]
async fn shutdown_with_a_partial_request_open_exits_with_everything_on_disk() {
    let dir = data_dir();
    let mut server = Server::start(
        dir.path(),
        &[
            "--shutdown-timeout-ms",
            "1000",
            "--header-timeout-ms",
            "600000",
        ],
    )
    .await;
    for index in 0..20 {
        server.append("shutdown", json!({"index": index})).await;
    }
    let mut partial = connect(&server);
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("sent");
    assert!(!closed_within(&mut partial, Duration::from_millis(200)));
    // A second for the deadline, the rest is slack for a loaded machine.
    assert_eq!(server.stop_within(Duration::from_secs(20)), Some(0));
    assert!(closed_within(&mut partial, Duration::from_secs(1)));
    let server = Server::start(dir.path(), &[]).await;
    assert_eq!(server.replay("?stream=shutdown").await.len(), 20);
}

#[tokio::test]
async fn shutdown_answers_what_finishes_and_drops_the_rest_at_the_deadline() {
    let dir = data_dir();
    let mut server = Server::start(
        dir.path(),
        &[
            "--shutdown-timeout-ms",
            "3000",
            "--idle-timeout-ms",
            "600000",
        ],
    )
    .await;
    for index in 0..10 {
        server.append("deadline", json!({"index": index})).await;
    }
    let (status, _) = server
        .post(
            "/v1/locks/deadline/acquire",
            &json!({"owner": "a", "ttl_ms": 600000}),
        )
        .await;
    assert_eq!(status, 200);
    // A lock wait of ten minutes: in flight far past the deadline.
    let mut waiting = connect(&server);
    let wait = json!({"owner": "b", "ttl_ms": 1000, "wait_ms": 600000}).to_string();
    write!(
        waiting,
        "POST /v1/locks/deadline/acquire HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{wait}",
        wait.len()
    )
    .expect("sent");
    // A body that stops halfway, and one that is finished during the shutdown.
    let event =
        json!({"type": "test.event", "stream": "deadline", "data": {"index": 10}}).to_string();
    let (first, rest) = event.split_at(10);
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{first}",
        event.len()
    );
    let mut stalled = connect(&server);
    stalled.write_all(head.as_bytes()).expect("sent");
    let mut finishing = connect(&server);
    finishing.write_all(head.as_bytes()).expect("sent");
    // An SSE stream, which the shutdown ends.
    let mut subscription = connect(&server);
    subscription
        .write_all(
            b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
        )
        .expect("sent");
    let streaming = read_head(&mut subscription);
    assert!(streaming.starts_with("HTTP/1.1 200"), "{streaming}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    finishing.write_all(rest.as_bytes()).expect("sent");
    let answer = read_answer(&mut finishing);
    let written = match answer.status {
        201 => true,
        503 => {
            assert_eq!(answer.error_code(), "shutting_down");
            false
        }
        other => panic!("a request finished during the shutdown got {other}"),
    };
    assert_eq!(
        server.wait_within(Duration::from_secs(30)),
        Some(0),
        "the server exits cleanly after dropping what is still in flight"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it did not wait for the ten-minute lock wait"
    );
    assert!(closed_within(&mut waiting, Duration::from_secs(1)));
    assert!(closed_within(&mut stalled, Duration::from_secs(1)));
    // The stream was ended, not cut: its chunked body has its last chunk.
    let mut rest = Vec::new();
    subscription
        .read_to_end(&mut rest)
        .expect("the stream ends with the connection");
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "the SSE body ends with its last chunk: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let server = Server::start(dir.path(), &[]).await;
    let expected = if written { 11 } else { 10 };
    assert_eq!(server.replay("?stream=deadline").await.len(), expected);
}

#[tokio::test]
async fn expect_100_continue_over_the_body_limit_gets_413_without_continue() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let mut stream = connect(&server);
    stream
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 10485760\r\nExpect: 100-continue\r\n\r\n",
        )
        .expect("sent");
    let answer = read_answer(&mut stream);
    assert_eq!(
        answer.status, 413,
        "the first answer is the refusal, not 100 Continue"
    );
    assert_eq!(answer.error_code(), "payload_too_large");
    assert_eq!(answer.json()["error"]["limit_bytes"], 1_048_576);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(closed_within(&mut stream, Duration::from_secs(5)));
    // Within the limit, the client is invited to send its body, and the write happens.
    let event = json!({"type": "test.event", "stream": "continue"}).to_string();
    let mut stream = connect(&server);
    write!(
        stream,
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        event.len()
    )
    .expect("sent");
    assert_eq!(read_answer(&mut stream).status, 100);
    stream.write_all(event.as_bytes()).expect("sent");
    assert_eq!(read_answer(&mut stream).status, 201);
}

#[tokio::test]
async fn a_client_that_sends_a_body_over_the_limit_before_reading_gets_its_413() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let mut stream = connect(&server);
    let length = 10 * 1024 * 1024;
    write!(
        stream,
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
    .expect("sent");
    // The server answers at the head and closes, but reads what is still coming first: a
    // close on unread bytes would reset the connection under the client's feet.
    stream
        .write_all(&vec![b' '; length])
        .expect("the whole body is taken, not reset");
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error_code(), "payload_too_large");
    assert!(closed_within(&mut stream, Duration::from_secs(5)));
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_and_closed() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let head = server.head().await;
    let event = json!({"type": "test.event", "stream": "smuggle"}).to_string();
    let chunked = format!("{:x}\r\n{event}\r\n0\r\n\r\n", event.len());
    let lengths = [
        format!(
            "Transfer-Encoding: chunked\r\nContent-Length: {}",
            chunked.len()
        ),
        format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked",
            chunked.len()
        ),
    ];
    for length in lengths {
        let mut stream = connect(&server);
        write!(
            stream,
            "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{length}\r\n\r\n{chunked}"
        )
        .expect("sent");
        let answer = read_answer(&mut stream);
        assert_eq!(answer.status, 400, "{length}");
        assert_eq!(answer.error_code(), "ambiguous_length");
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(closed_within(&mut stream, Duration::from_secs(5)));
    }
    // Pipelined behind a plain request: the plain one is served, the ambiguous one refused.
    let mut stream = connect(&server);
    let plain = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{event}",
        event.len()
    );
    let ambiguous = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{}\r\n\r\n{chunked}",
        lengths_first(&chunked)
    );
    stream
        .write_all(format!("{plain}{ambiguous}").as_bytes())
        .expect("sent");
    assert_eq!(read_answer(&mut stream).status, 201);
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_code(), "ambiguous_length");
    assert!(closed_within(&mut stream, Duration::from_secs(5)));
    assert_eq!(
        server.head().await,
        head + 1,
        "only the plain request wrote"
    );
}

/// A head over 64 KiB is refused, so that padding cannot carry an ambiguous request past
/// the framing check (which follows heads up to that size).
#[tokio::test]
async fn a_request_head_over_64_kib_is_refused_431() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let mut stream = connect(&server);
    let pad = "a".repeat(70 * 1024);
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {pad}\r\n\r\n"
    )
    .expect("sent");
    assert_eq!(read_answer(&mut stream).status, 431);
    let mut stream = connect(&server);
    let pad = "a".repeat(60 * 1024);
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {pad}\r\n\r\n"
    )
    .expect("sent");
    assert_eq!(
        read_answer(&mut stream).status,
        200,
        "a head under the limit is served"
    );
}

/// Both length headers for a chunked body, `Content-Length` first.
fn lengths_first(chunked: &str) -> String {
    format!(
        "Content-Length: {}\r\nTransfer-Encoding: chunked",
        chunked.len()
    )
}
