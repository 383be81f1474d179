//! Snapshots: a forced or shutdown snapshot plus the log's tail rebuild exactly the state
//! a full replay gives, a damaged snapshot is skipped, and idempotency keys survive.

use serde_json::{json, Value};

use crate::support::{cli, data_dir, Server};

/// Everything a client can observe about the state the test builds.
async fn observe(server: &Server) -> Value {
    let mut seen = serde_json::Map::new();
    for key in ["counter", "config"] {
        seen.insert(
            format!("state/{key}"),
            server.get(&format!("/v1/state/{key}")).await.1,
        );
    }
    seen.insert("kv".into(), server.get("/v1/kv?prefix=").await.1);
    seen.insert("stream".into(), server.get("/v1/streams/orders").await.1);
    seen.insert("head".into(), server.get("/v1/audit/head").await.1);
    seen.insert("branches".into(), server.get("/v1/branches").await.1);
    seen.insert(
        "branch_state".into(),
        server.get("/v1/state/counter?branch=experiment").await.1,
    );
    Value::Object(seen)
}

async fn write_some(server: &Server, round: u64) {
    let (status, _) = server.post("/v1/state/counter/cas", &json!({"expected_version": if round == 0 { Value::Null } else { json!(round) }, "value": round})).await;
    assert_eq!(status, 200, "cas round {round}");
    let (status, _) = server
        .post("/v1/state/config/init", &json!({"value": {"round": round}}))
        .await;
    assert!(status == 200 || status == 201);
    let response = server
        .http
        .put(format!("{}/v1/kv/key-{round}", server.url))
        .json(&json!({"value": format!("v{round}")}))
        .send()
        .await
        .expect("kv put");
    assert_eq!(response.status().as_u16(), 200);
    server.append("orders", json!({"round": round})).await;
}

#[tokio::test]
async fn snapshot_plus_tail_equals_full_replay_and_damage_is_skipped() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    let mut server = Server::start(dir.path(), &[]).await;
    for round in 0..3 {
        write_some(&server, round).await;
    }
    let (status, _) = server
        .post("/v1/branches", &json!({"name": "experiment"}))
        .await;
    assert_eq!(status, 201);
    let (status, _) = server
        .post(
            "/v1/state/counter/cas?branch=experiment",
            &json!({"expected_version": 3, "value": 100}),
        )
        .await;
    assert_eq!(status, 200);
    let key = [("idempotency-key", "before-snapshot")];
    let body = json!({"type": "pay.made", "stream": "pay/1"});
    let (_, first) = server.post_with("/v1/events", &body, &key).await;

    let (code, stdout, stderr) = cli(&["--db", db, "--json", "snapshot"]);
    assert_eq!(
        code, 0,
        "swarmlog snapshot goes through the server: {stderr}"
    );
    let written: Value = serde_json::from_str(stdout.trim()).expect("json");
    let snapshot_path = std::path::PathBuf::from(written["path"].as_str().expect("path"));
    assert!(snapshot_path.exists());

    for round in 3..6 {
        write_some(&server, round).await;
    }
    let before = observe(&server).await;
    server.kill9();

    let mut server = Server::start(dir.path(), &[]).await;
    assert_eq!(
        observe(&server).await,
        before,
        "snapshot + tail reproduce the state"
    );
    let (status, again) = server.post_with("/v1/events", &body, &key).await;
    assert_eq!(
        (status, &again),
        (201, &first),
        "an idempotency key from before the snapshot still answers"
    );
    assert_eq!(server.stop(), Some(0));
    let snapshots: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .expect("dir")
        .collect();
    assert!(!snapshots.is_empty(), "a clean shutdown leaves a snapshot");

    // Damage every snapshot: the start must ignore them and replay the whole log.
    for entry in std::fs::read_dir(dir.path().join("snapshots")).expect("dir") {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(&path, bytes).expect("damage");
    }
    let server = Server::start(dir.path(), &[]).await;
    assert_eq!(
        observe(&server).await,
        before,
        "damaged snapshots are skipped, never trusted"
    );
}
