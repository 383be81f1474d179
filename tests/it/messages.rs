//! Messages through HTTP (SPEC §3 "Messages", issue 4): direct messages, broadcasts that
//! skip their sender, acks and the unacked inbox, the inbox as SSE, and bad inputs.

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

use crate::support::{data_dir, Server};

async fn register(server: &Server, id: &str) {
    let (status, body) = server
        .post("/v1/agents", &json!({"id": id, "type": "worker"}))
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn send(server: &Server, body: Value) -> Value {
    let (status, message) = server.post("/v1/messages", &body).await;
    assert_eq!(status, 201, "{message}");
    message
}

async fn inbox_ids(server: &Server, agent: &str, unacked: bool) -> Vec<String> {
    let query = if unacked { "?unacked=true" } else { "" };
    let (status, inbox) = server
        .get(&format!("/v1/agents/{agent}/inbox{query}"))
        .await;
    assert_eq!(status, 200, "{inbox}");
    assert_eq!(inbox["agent"], json!(agent));
    ids(&inbox)
}

/// The ids of the `messages` of an inbox or a message list, in order.
fn ids(list: &Value) -> Vec<String> {
    list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| message["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_broadcast_reaches_every_active_agent_but_its_sender() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for id in ["coordinator", "w1", "w2", "gone"] {
        register(&server, id).await;
    }
    let (status, _) = server.post("/v1/agents/gone/kill", &json!({})).await;
    assert_eq!(status, 200);
    let broadcast = send(
        &server,
        json!({"from": "coordinator", "to": "*", "type": "phase", "payload": {"phase": "analysis"}}),
    )
    .await;
    assert_eq!(broadcast["recipients"], json!(["w1", "w2"]));
    let direct = send(
        &server,
        json!({"from": "w1", "to": "coordinator", "type": "result", "payload": 42, "requires_ack": true}),
    )
    .await;
    assert_eq!(direct["recipients"], json!(["coordinator"]));
    assert_eq!(
        inbox_ids(&server, "coordinator", false).await,
        ["M-2"],
        "the sender does not get its own broadcast"
    );
    assert_eq!(inbox_ids(&server, "w1", false).await, ["M-1"]);
    assert_eq!(inbox_ids(&server, "w2", false).await, ["M-1"]);
    assert_eq!(
        inbox_ids(&server, "gone", false).await,
        Vec::<String>::new()
    );
    // An agent registered after the broadcast does not receive it.
    register(&server, "late").await;
    assert_eq!(
        inbox_ids(&server, "late", false).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn acks_are_per_recipient_and_the_unacked_inbox_leaves_them_out() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for id in ["lead", "a", "b"] {
        register(&server, id).await;
    }
    send(&server, json!({"from": "lead", "to": "*", "type": "task_assignment", "payload": {"task": "x"}, "requires_ack": true})).await;
    send(
        &server,
        json!({"from": "lead", "to": "a", "type": "note", "payload": "hi"}),
    )
    .await;
    let (status, acked) = server
        .post("/v1/messages/M-1/ack", &json!({"agent": "a"}))
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["acked"], json!(true));
    let head = server.head().await;
    let (status, _) = server
        .post("/v1/messages/M-1/ack", &json!({"agent": "a"}))
        .await;
    assert_eq!(status, 200, "a second ack is a no-op");
    assert_eq!(server.head().await, head);
    assert_eq!(inbox_ids(&server, "a", true).await, ["M-2"]);
    assert_eq!(inbox_ids(&server, "a", false).await, ["M-1", "M-2"]);
    assert_eq!(inbox_ids(&server, "b", true).await, ["M-1"]);
    let (_, message) = server.get("/v1/messages/M-1").await;
    assert_eq!(message["acked_by"], json!(["a"]));
    assert_eq!(message["recipients"], json!(["a", "b"]));
    let (status, refused) = server
        .post("/v1/messages/M-2/ack", &json!({"agent": "b"}))
        .await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (403, json!("not_recipient"))
    );
    // A detail never replaces the sentence (it once did: `message` held the id).
    assert_eq!(refused["error"]["message_id"], json!("M-2"));
    let sentence = refused["error"]["message"].as_str().expect("a sentence");
    assert!(sentence.contains("did not receive"), "{sentence}");
    let (status, missing) = server
        .post("/v1/messages/M-9/ack", &json!({"agent": "b"}))
        .await;
    assert_eq!(
        (status, missing["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    for body in [
        json!({"from": "lead", "to": "a"}),
        json!({"from": "lead", "to": "a", "type": "x", "priority": "high"}),
        json!({"from": "", "to": "a", "type": "x"}),
    ] {
        let (status, answer) = server.post("/v1/messages", &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
    }
    let (status, answer) = server.get("/v1/agents/a/inbox?unacked=maybe").await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!("invalid_query"))
    );
    assert_eq!(server.head().await, head, "refused writes write nothing");
}

async fn subscribe(server: &Server, agent: &str, query: &str) -> impl Stream<Item = Event> + Unpin {
    let response = server
        .http
        .get(format!("{}/v1/agents/{agent}/inbox{query}", server.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 200);
    Box::pin(
        response
            .bytes_stream()
            .eventsource()
            .map(|event| event.expect("well-formed SSE")),
    )
}

/// The next event that is not `caught_up`, with a bound so a broken build cannot hang.
async fn next_message(stream: &mut (impl Stream<Item = Event> + Unpin)) -> (Event, bool) {
    let mut saw_caught_up = false;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("an event arrives")
            .expect("the stream stays open");
        if event.event == "caught_up" {
            saw_caught_up = true;
            continue;
        }
        return (event, saw_caught_up);
    }
}

#[tokio::test]
async fn the_inbox_as_sse_catches_up_then_follows_only_this_agents_messages() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for id in ["lead", "a", "b"] {
        register(&server, id).await;
    }
    send(
        &server,
        json!({"from": "lead", "to": "a", "type": "old", "payload": 1}),
    )
    .await;
    send(
        &server,
        json!({"from": "lead", "to": "b", "type": "not-for-a", "payload": 2}),
    )
    .await;
    send(
        &server,
        json!({"from": "lead", "to": "a", "type": "acked", "payload": 3}),
    )
    .await;
    server
        .post("/v1/messages/M-3/ack", &json!({"agent": "a"}))
        .await;
    let mut stream = subscribe(&server, "a", "?unacked=true").await;
    let (first, caught_up_before) = next_message(&mut stream).await;
    assert!(!caught_up_before);
    assert_eq!(first.event, "message.sent");
    let data: Value = serde_json::from_str(&first.data).expect("JSON");
    assert_eq!(
        data["data"]["message"],
        json!("M-1"),
        "acked M-3 and b's M-2 are left out"
    );
    // Live: a broadcast from a reaches b but not a; one from b reaches a.
    send(
        &server,
        json!({"from": "a", "to": "*", "type": "own-broadcast", "payload": 4}),
    )
    .await;
    send(
        &server,
        json!({"from": "b", "to": "*", "type": "hello", "payload": 5}),
    )
    .await;
    let (live, caught_up) = next_message(&mut stream).await;
    assert!(caught_up, "caught_up separates history from live");
    let data: Value = serde_json::from_str(&live.data).expect("JSON");
    assert_eq!(data["data"]["message"], json!("M-5"));
    assert_eq!(data["data"]["type"], json!("hello"));
    assert_eq!(
        live.id,
        data["seq"].to_string(),
        "the SSE id is the seq, for Last-Event-ID"
    );
}

async fn listed(server: &Server, query: &str) -> Vec<String> {
    let (status, list) = server.get(&format!("/v1/messages{query}")).await;
    assert_eq!(status, 200, "{list}");
    ids(&list)
}

#[tokio::test]
async fn the_message_list_is_newest_first_by_agent_limited_and_travels_in_time() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for id in ["a", "b", "c"] {
        register(&server, id).await;
    }
    let first = send(
        &server,
        json!({"from": "a", "to": "b", "type": "t", "payload": 1}),
    )
    .await;
    let after_first = server.head().await;
    let second = send(
        &server,
        json!({"from": "b", "to": "c", "type": "t", "payload": 2}),
    )
    .await;
    let third = send(
        &server,
        json!({"from": "c", "to": "*", "type": "t", "payload": 3}),
    )
    .await;
    let id = |message: &Value| message["id"].as_str().expect("id").to_owned();
    assert_eq!(
        listed(&server, "").await,
        [id(&third), id(&second), id(&first)]
    );
    // An agent's messages: sent by it, to it, or broadcast to it.
    assert_eq!(listed(&server, "?agent=a").await, [id(&third), id(&first)]);
    assert_eq!(listed(&server, "?agent=c").await, [id(&third), id(&second)]);
    assert_eq!(listed(&server, "?limit=1").await, [id(&third)]);
    assert_eq!(
        listed(&server, &format!("?at={after_first}")).await,
        [id(&first)]
    );
    let (_, list) = server.get("/v1/messages?agent=b&limit=1").await;
    assert_eq!(list["messages"][0]["id"], json!(id(&third)), "{list}");
    assert_eq!(
        list["messages"][0]["recipients"],
        json!(["a", "b"]),
        "{list}"
    );
    for (query, status, code) in [
        ("?limit=0", 400, "invalid_query"),
        ("?limit=1001", 400, "invalid_query"),
        ("?at=999", 422, "invalid_value"),
    ] {
        let (got, refused) = server.get(&format!("/v1/messages{query}")).await;
        assert_eq!(
            (got, refused["error"]["code"].as_str()),
            (status, Some(code)),
            "{query}: {refused}"
        );
    }
}
