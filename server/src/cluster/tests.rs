//! The election and step-down logic against the in-memory history: real engines, real
//! stores, the nodes' rounds driven one by one so every step is the test's choice.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::history::{History, Member};
use super::memory::MemoryHistory;
use super::{open_node, Node, Timing};
use crate::{Engine, EngineConfig};

const LEASE: Duration = Duration::from_millis(300);

fn member(name: &str) -> Member {
    Member {
        node: name.to_owned(),
        url: format!("http://{name}.invalid"),
    }
}

/// Two nodes, `a` and `b`, on one in-memory history with a short lease (and the data
/// directories, which must outlive them).
async fn two_nodes() -> (
    Arc<MemoryHistory>,
    [tempfile::TempDir; 2],
    Node<MemoryHistory>,
    Node<MemoryHistory>,
) {
    let history = Arc::new(MemoryHistory::new(LEASE));
    let dirs = [
        tempfile::tempdir().expect("a dir"),
        tempfile::tempdir().expect("a dir"),
    ];
    let a = node(&history, &dirs[0], "a").await;
    let b = node(&history, &dirs[1], "b").await;
    (history, dirs, a, b)
}

async fn node(
    history: &Arc<MemoryHistory>,
    dir: &tempfile::TempDir,
    name: &str,
) -> Node<MemoryHistory> {
    let (node, _) = open_node(
        EngineConfig::new(dir.path()),
        history.clone(),
        member(name),
        Timing::new(LEASE),
    )
    .await
    .expect("a node opens on an empty directory");
    node
}

/// Appends one event through the node's own router (no forwarding): the status and the
/// error code, if any.
async fn append(engine: &Engine, kind: &str) -> (StatusCode, Option<String>) {
    let request = Request::post("/v1/events")
        .header("content-type", "application/json")
        .body(Body::from(json!({"type": kind, "stream": "s"}).to_string()))
        .expect("a valid request");
    let response = crate::router(engine.clone())
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    let body: Value = serde_json::from_slice(&body).expect("a JSON answer");
    let code = body["error"]["code"].as_str().map(str::to_owned);
    (status, code)
}

async fn wait_for_head(engine: &Engine, head: u64) {
    for _ in 0..500 {
        if engine.audit_head().seq >= head {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the node's head stayed at {} instead of reaching {head}",
        engine.audit_head().seq
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_writer_is_deposed_by_the_expected_sequence_and_follows_its_successor() {
    let (history, _dirs, mut a, mut b) = two_nodes().await;

    a.tick().await;
    assert!(
        a.is_writer(),
        "the first node to look finds no lease and takes it"
    );
    b.tick().await;
    assert!(
        !b.is_writer(),
        "the lease is held, so the second node follows"
    );
    assert_eq!(
        history
            .lease()
            .await
            .expect("lease")
            .map(|lease| lease.holder),
        Some(member("a"))
    );

    assert_eq!(append(a.engine(), "one").await, (StatusCode::CREATED, None));
    assert_eq!(
        append(b.engine(), "refused").await,
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_writer".into())),
        "a follower's engine decides no write"
    );
    wait_for_head(b.engine(), 1).await;

    // `a` is paused (no rounds): its lease runs out, and `b` takes over after catching up.
    tokio::time::sleep(LEASE + LEASE / 3).await;
    b.tick().await;
    assert!(b.is_writer(), "a lease that ran out is taken");
    assert_eq!(append(b.engine(), "two").await, (StatusCode::CREATED, None));

    // `a` wakes up still believing it writes: its append expects seq 1 as the last and
    // the history is at 2, so nothing is stored and it is told to step down.
    assert!(a.engine().is_writer());
    assert_eq!(
        append(a.engine(), "stale").await,
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_writer".into()))
    );
    a.tick().await;
    assert!(
        !a.is_writer(),
        "a deposed writer steps down at its next round"
    );
    assert!(!a.engine().is_writer());
    wait_for_head(a.engine(), 2).await;

    let records = history.records();
    assert_eq!(records.len(), 2, "the stale append stored nothing");
    let kinds: Vec<String> = records
        .iter()
        .map(|record| {
            let envelope = swarmlog_projections::Envelope::decode(
                record.seq.get(),
                record.timestamp_ms,
                &record.payload,
            )
            .expect("a stored event decodes");
            envelope.event_type
        })
        .collect();
    assert_eq!(kinds, ["one", "two"]);
    assert_eq!(
        a.engine().audit_head(),
        b.engine().audit_head(),
        "one history, one head"
    );
    b.tick().await;
    assert!(
        b.is_writer(),
        "the successor keeps its lease by renewing it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_cannot_renew_steps_down_and_a_released_lease_is_taken_at_once() {
    let (history, _dirs, mut a, mut b) = two_nodes().await;
    a.tick().await;
    assert!(a.is_writer());
    assert_eq!(append(a.engine(), "one").await, (StatusCode::CREATED, None));

    // Another node took the lease while `a` slept through it: `a`'s renewal fails.
    tokio::time::sleep(LEASE + LEASE / 3).await;
    b.tick().await;
    assert!(b.is_writer());
    a.tick().await;
    assert!(
        !a.is_writer(),
        "a renewal that fails ends the writer's term"
    );
    assert_eq!(
        append(a.engine(), "refused").await,
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_writer".into()))
    );

    // A writer that stops cleanly gives the lease up: the other node takes it at its
    // next round, without waiting for it to run out.
    a.tick().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let _ = stop.send(true);
    b.run(stopped).await;
    assert_eq!(
        history.lease().await.expect("lease"),
        None,
        "the lease was released"
    );
    a.tick().await;
    assert!(a.is_writer(), "a released lease is taken at the next round");
    assert_eq!(append(a.engine(), "two").await, (StatusCode::CREATED, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stepping_down_with_a_write_in_flight_follows_from_its_durable_head() {
    let (history, _dirs, mut a, mut b) = two_nodes().await;
    a.tick().await;
    b.tick().await;
    assert_eq!(append(a.engine(), "one").await, (StatusCode::CREATED, None));
    wait_for_head(b.engine(), 1).await;
    tokio::time::sleep(LEASE + LEASE / 3).await;
    b.tick().await;
    assert!(b.is_writer());
    assert_eq!(append(b.engine(), "two").await, (StatusCode::CREATED, None));

    // `a` still decides a write, and its round finds the lease gone while that write is
    // on its way to the store (held at the commit thread's gate): the write is refused,
    // and the state `a` follows on from is its durable one, not one that holds it.
    a.engine().commit_gate().close();
    let engine = a.engine().clone();
    let stale = tokio::spawn(async move { append(&engine, "stale").await });
    while !a.engine().commit_gate().is_holding() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let engine = a.engine().clone();
    let open = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        engine.commit_gate().open(false);
    });
    a.tick().await;
    open.await.expect("the gate opens");
    assert_eq!(
        stale.await.expect("the write is answered"),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_writer".into()))
    );
    assert!(!a.is_writer());
    assert_eq!(
        append(b.engine(), "three").await,
        (StatusCode::CREATED, None)
    );
    wait_for_head(a.engine(), 3).await;
    assert_eq!(a.engine().audit_head(), b.engine().audit_head());
    assert_eq!(history.records().len(), 3, "the stale write stored nothing");
}
