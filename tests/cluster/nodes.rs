//! Several `swarmlog serve` processes on one stream of a real 3-node NATS cluster (SPEC §9):
//! one history through every node, no lost CAS update, SSE across nodes, and the faults
//! (kill -9 of the writer under load, of a NATS server, a paused writer, a full restart).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nats::NatsCluster;
use crate::support::{data_dir, Server};
use tempfile::TempDir;

/// A short lease, so that failovers in the tests take about a second.
const LEASE_MS: &str = "1000";

/// Starts a swarmlog node on `stream` of the cluster.
async fn node(nats: &NatsCluster, dir: &std::path::Path, stream: &str) -> Server {
    node_with_lease(nats, dir, stream, LEASE_MS).await
}

/// Starts a swarmlog node on `stream` of the cluster with a lease of `lease_ms`.
async fn node_with_lease(
    nats: &NatsCluster,
    dir: &std::path::Path,
    stream: &str,
    lease_ms: &str,
) -> Server {
    let urls = nats.urls();
    Server::start(
        dir,
        &[
            "--store",
            &urls,
            "--nats-stream",
            stream,
            "--lease-ms",
            lease_ms,
        ],
    )
    .await
}

/// Two nodes on `stream`, `a` started first (so it becomes the writer), and their data
/// directories, which must outlive them.
async fn two_nodes(nats: &NatsCluster, stream: &str) -> (Server, Server, [TempDir; 2]) {
    let dirs = [data_dir(), data_dir()];
    let a = node(nats, dirs[0].path(), stream).await;
    let b = node(nats, dirs[1].path(), stream).await;
    (a, b, dirs)
}

/// Every event a node serves.
async fn history(server: &Server) -> Vec<Value> {
    server.replay("?from=1&limit=100000").await
}

async fn wait_for_head(server: &Server, head: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = server.head().await;
        if now >= head {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node at {} stayed at head {now} instead of reaching {head}",
            server.url
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends one event with an idempotency key through `servers` in turn until it is
/// acknowledged (a failover refuses or cuts some attempts); returns its seq.
async fn append_until_acknowledged(servers: &[&Server], key: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut attempt = 0;
    loop {
        let server = servers[attempt % servers.len()];
        attempt += 1;
        let sent = server
            .http
            .post(format!("{}/v1/events", server.url))
            .header("idempotency-key", key)
            .json(&json!({"type": "load.tick", "stream": "load", "data": {"key": key}}))
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        if let Ok(response) = sent {
            if response.status().is_success() {
                let body: Value = response.json().await.expect("a JSON answer");
                return body["seq"].as_u64().expect("the answer names its seq");
            }
        }
        assert!(Instant::now() < deadline, "'{key}' was never acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `verify --store` reports for the stream.
fn verify_store(nats: &NatsCluster, stream: &str) -> Value {
    let urls = nats.urls();
    let (code, stdout, stderr) = crate::support::cli(&[
        "--json",
        "verify",
        "--store",
        &urls,
        "--nats-stream",
        stream,
    ]);
    assert_eq!(code, 0, "verify --store failed: {stderr}");
    serde_json::from_str(&stdout).expect("verify --json prints JSON")
}

/// Appends an event of `kind` numbered `n` through `server`, which must take it.
async fn appended(server: &Server, kind: &str, n: u64) {
    let event = json!({"type": kind, "stream": "x", "data": {"n": n}});
    let (status, body) = server.post("/v1/events", &event).await;
    assert_eq!(
        status, 201,
        "an append through {} failed: {body}",
        server.url
    );
}

fn seq_of(event: &Value) -> u64 {
    event["seq"].as_u64().expect("an event has a seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_through_every_node_converge_on_one_history() {
    let nats = NatsCluster::start(3).await;
    let dirs = [data_dir(), data_dir(), data_dir()];
    let mut nodes = Vec::new();
    for dir in &dirs[..2] {
        nodes.push(node(&nats, dir.path(), "converge").await);
    }
    // SPEC §9's form of --store: the scheme once, then HOST:PORT.
    let short = nats.urls().replace(",nats://", ",");
    let third = [
        "--store",
        &short,
        "--nats-stream",
        "converge",
        "--lease-ms",
        LEASE_MS,
    ];
    nodes.push(Server::start(dirs[2].path(), &third).await);
    let writes = nodes.iter().enumerate().map(|(index, server)| async move {
        for n in 0..15 {
            let event =
                json!({"type": "note", "stream": format!("node/{index}"), "data": {"n": n}});
            let (status, body) = server.post("/v1/events", &event).await;
            assert_eq!(status, 201, "an append through node {index} failed: {body}");
        }
    });
    futures::future::join_all(writes).await;
    // An atomic batch through a follower too.
    let batch =
        json!({"events": [{"type": "a", "stream": "batch"}, {"type": "b", "stream": "batch"}]});
    let (status, body) = nodes[2].post("/v1/events", &batch).await;
    assert_eq!(status, 201, "{body}");
    for server in &nodes {
        wait_for_head(server, 47).await;
    }
    let first = history(&nodes[0]).await;
    let seqs: Vec<u64> = first.iter().map(seq_of).collect();
    assert_eq!(
        seqs,
        (1..=47).collect::<Vec<_>>(),
        "seqs are global and gap-free"
    );
    for server in &nodes[1..] {
        assert_eq!(
            history(server).await,
            first,
            "every node serves the same history"
        );
    }
    let report = verify_store(&nats, "converge");
    assert_eq!(report["records"], 47);
    assert_eq!(report["head_hash"], first[46]["hash"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cas_increments_through_two_nodes_lose_no_update() {
    let nats = NatsCluster::start(3).await;
    let (a, b, _dirs) = two_nodes(&nats, "cas").await;
    let (status, body) = a.post("/v1/state/counter/init", &json!({"value": 0})).await;
    assert!(status == 200 || status == 201, "{body}");
    // A follower reads its own writes, not another node's until it has applied them.
    wait_for_head(&b, a.head().await).await;
    const INCREMENTS: u64 = 20;
    async fn increment(server: &Server) {
        let mut done = 0;
        while done < INCREMENTS {
            let (status, cell) = server.get("/v1/state/counter").await;
            assert_eq!(status, 200, "the cell reads on {}: {cell}", server.url);
            let version = cell["version"].as_u64().expect("a version");
            let value = cell["value"].as_u64().expect("a number");
            let cas = json!({"expected_version": version, "value": value + 1});
            let (status, body) = server.post("/v1/state/counter/cas", &cas).await;
            match status {
                200 | 201 => done += 1,
                409 => {}
                other => panic!("a CAS either wins or conflicts, not {other}: {body}"),
            }
        }
    }
    futures::future::join(increment(&a), increment(&b)).await;
    let head = a.head().await.max(b.head().await);
    wait_for_head(&a, head).await;
    wait_for_head(&b, head).await;
    for server in [&a, &b] {
        let (_, cell) = server.get("/v1/state/counter").await;
        assert_eq!(cell["value"], 2 * INCREMENTS, "no increment was lost");
    }
}

/// The seqs of the next `count` events of an SSE stream.
async fn next_seqs(response: reqwest::Response, count: usize) -> Vec<u64> {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    let mut events = response.bytes_stream().eventsource();
    let mut seqs = Vec::new();
    while seqs.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("a well-formed event");
        if event.event == "caught_up" {
            continue;
        }
        let value: Value = serde_json::from_str(&event.data).expect("JSON data");
        seqs.push(seq_of(&value));
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_on_one_node_sees_writes_made_through_another_and_resumes() {
    let nats = NatsCluster::start(3).await;
    let (a, b, _dirs) = two_nodes(&nats, "sse").await;
    let subscribe = |last: Option<u64>| {
        let mut request = b
            .http
            .get(format!("{}/v1/events", b.url))
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        request.send()
    };
    let live = subscribe(None).await.expect("the SSE stream opens");
    for n in 0..3 {
        appended(&a, "sse.test", n).await;
    }
    assert_eq!(next_seqs(live, 3).await, [1, 2, 3]);
    for n in 3..5 {
        appended(&a, "sse.test", n).await;
    }
    let resumed = subscribe(Some(2)).await.expect("the SSE stream resumes");
    assert_eq!(
        next_seqs(resumed, 3).await,
        [3, 4, 5],
        "it resumes after Last-Event-ID"
    );

    // A client saw the end of a big write on the writer and resumes on `b` before `b` has
    // applied it (`b` is paused meanwhile, and finds the resume first when it goes on):
    // `b` waits until it has applied the client's Last-Event-ID instead of refusing it.
    b.signal(libc::SIGSTOP);
    let events: Vec<Value> = (0..1000)
        .map(|n| json!({"type": "sse.bulk", "stream": "bulk", "data": {"n": n}}))
        .collect();
    let (status, body) = a.post("/v1/events", &json!({ "events": events })).await;
    assert_eq!(status, 201, "{body}");
    let last = 1005;
    let resuming = tokio::spawn(subscribe(Some(last)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.signal(libc::SIGCONT);
    let resumed = resuming
        .await
        .expect("the request task ends")
        .expect("the SSE stream resumes");
    assert_eq!(resumed.status(), 200, "{:?}", resumed.text().await);
    appended(&a, "sse.test", 5).await;
    assert_eq!(next_seqs(resumed, 1).await, [last + 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_writer_under_load_loses_no_acknowledged_event() {
    let nats = NatsCluster::start(3).await;
    let (mut a, b, _dirs) = two_nodes(&nats, "failover").await;
    // `a` started first, so it holds the lease; `b` forwards to it until it dies.
    assert_eq!(
        a.post("/v1/events", &json!({"type": "first", "stream": "x"}))
            .await
            .0,
        201
    );
    let b = std::sync::Arc::new(b);
    let so_far = std::sync::Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (b, so_far) = (b.clone(), so_far.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0..25 {
                    let key = format!("c{client}-{n}");
                    let seq = append_until_acknowledged(&[&b], &key).await;
                    acknowledged.push((key, seq));
                    so_far.fetch_add(1, Ordering::SeqCst);
                }
                acknowledged
            })
        })
        .collect();
    // Killed under load: once a fifth of the writes are acknowledged, whatever the
    // machine's speed (a fixed delay let a fast machine finish them all first).
    while so_far.load(Ordering::SeqCst) < 40 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    a.kill9();
    let before_the_kill = so_far.load(Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.expect("a client finishes"));
    }
    assert_eq!(acknowledged.len(), 200);
    assert!(
        before_the_kill < 200,
        "the writer was killed while writes were still on their way"
    );
    let events = history(&b).await;
    assert_eq!(events.len() as u64, b.head().await);
    let mut keys = HashSet::new();
    let mut seqs = HashSet::new();
    for event in &events {
        assert!(seqs.insert(seq_of(event)), "no seq twice");
        if let Some(key) = event["data"]["key"].as_str() {
            assert!(
                keys.insert(key.to_owned()),
                "'{key}' is stored once, not twice"
            );
        }
    }
    for (key, seq) in &acknowledged {
        assert!(
            keys.contains(key),
            "acknowledged '{key}' (seq {seq}) is in the history"
        );
    }
    assert_eq!(
        verify_store(&nats, "failover")["records"].as_u64(),
        Some(events.len() as u64)
    );
    let failovers = b.metric("swarmlog_cluster_failovers_total").await;
    assert_eq!(failovers, 1.0, "the follower took over once");
    assert_eq!(b.metric("swarmlog_cluster_lag_events").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_sent_while_the_writer_is_dead_waits_for_the_next_writer() {
    let nats = NatsCluster::start(3).await;
    let (mut a, b, _dirs) = two_nodes(&nats, "handover").await;
    let (status, body) = b
        .post("/v1/events", &json!({"type": "before", "stream": "x"}))
        .await;
    assert_eq!((status, &body["seq"]), (201, &json!(1)), "{body}");
    // Each node says where it stands, on /healthz and in `stats`.
    let name = |server: &Server| server.url.trim_start_matches("http://").to_owned();
    let (_, health) = a.get("/healthz").await;
    assert_eq!(health["cluster"]["role"], "writer", "{health}");
    assert_eq!(health["cluster"]["node"], name(&a), "{health}");
    let (_, health) = b.get("/healthz").await;
    assert_eq!(health["cluster"]["role"], "follower", "{health}");
    assert_eq!(health["cluster"]["writer"]["node"], name(&a), "{health}");
    assert_eq!(health["cluster"]["writer"]["url"], a.url, "{health}");
    assert!(health["cluster"]["lag_events"].is_u64(), "{health}");
    // `a` dies holding the lease: `b` cannot reach it until the lease runs out and `b`
    // takes over. One attempt, no retry by the client: the follower waits and answers.
    a.kill9();
    let (status, body) = b
        .post("/v1/events", &json!({"type": "during", "stream": "x"}))
        .await;
    assert_eq!((status, &body["seq"]), (201, &json!(2)), "{body}");
    assert_eq!(b.metric("swarmlog_cluster_failovers_total").await, 1.0);
    assert_eq!(verify_store(&nats, "handover")["records"], 2);
    let (code, stdout, stderr) = crate::support::cli(&["--url", &b.url, "--json", "stats"]);
    assert_eq!(code, 0, "{stderr}");
    let stats: Value = serde_json::from_str(&stdout).expect("stats --json prints JSON");
    assert_eq!(stats["head"], 2, "{stats}");
    assert_eq!(
        stats["cluster"],
        json!({"node": name(&b), "role": "writer", "writer": {"node": name(&b), "url": b.url}, "lag_events": 0}),
    );
    let (code, stdout, stderr) = crate::support::cli(&["--url", &b.url, "stats"]);
    assert_eq!(code, 0, "{stderr}");
    let expected = format!(
        "cluster node {0} (writer), writer {0}, 0 events behind the history",
        name(&b)
    );
    assert!(stdout.contains(&expected), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_stopped_cleanly_hands_over_at_once_without_waiting_for_its_lease() {
    let nats = NatsCluster::start(3).await;
    let (dir_a, dir_b) = (data_dir(), data_dir());
    // A lease of a minute: a follower taking over within the forwarding's 8 s can only be
    // one the writer gave its lease to.
    let mut a = node_with_lease(&nats, dir_a.path(), "clean", "60000").await;
    let b = node_with_lease(&nats, dir_b.path(), "clean", "60000").await;
    appended(&b, "before", 0).await;
    a.terminate();
    assert_eq!(
        a.wait_within(Duration::from_secs(20)),
        Some(0),
        "SIGTERM stops the writer cleanly"
    );
    let (status, body) = b
        .post("/v1/events", &json!({"type": "after", "stream": "x"}))
        .await;
    assert_eq!((status, &body["seq"]), (201, &json!(2)), "{body}");
    let (_, health) = b.get("/healthz").await;
    assert_eq!(health["cluster"]["role"], "writer", "{health}");
}

/// The `lock.expired` events a node serves, by resource.
async fn expiries(server: &Server) -> Vec<String> {
    history(server)
        .await
        .iter()
        .filter(|event| event["type"] == "lock.expired")
        .map(|event| {
            assert_eq!(event["actor"], "system", "{event}");
            event["data"]["resource"]
                .as_str()
                .expect("an expiry names its resource")
                .to_owned()
        })
        .collect()
}

async fn wait_for_expiries(server: &Server, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let expired = expiries(server).await;
        if expired.len() >= count {
            return expired;
        }
        assert!(
            Instant::now() < deadline,
            "{} saw the expiries {expired:?}, not {count}",
            server.url
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timers_fire_once_from_the_writer_and_again_after_a_failover() {
    let nats = NatsCluster::start(3).await;
    let (mut a, b, _dirs) = two_nodes(&nats, "timers").await;
    for (resource, ttl_ms) in [("short", 1000), ("long", 4000)] {
        let (status, body) = b
            .post(
                &format!("/v1/locks/{resource}/acquire"),
                &json!({"owner": format!("holder-of-{resource}"), "ttl_ms": ttl_ms}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // Both nodes hold the lock's deadline; only the writer (`a`) writes its expiry.
    assert_eq!(wait_for_expiries(&b, 1).await, ["short"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        expiries(&b).await,
        ["short"],
        "one expiry, not one per node"
    );
    // The writer dies before the long lock's TTL: the new writer gives it its whole TTL
    // again, as a restart does, and expires it once.
    a.kill9();
    assert_eq!(wait_for_expiries(&b, 2).await, ["short", "long"]);
    let (status, body) = b.get("/v1/locks/long").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["holders"], json!([]), "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(expiries(&b).await, ["short", "long"]);
    assert_eq!(b.metric("swarmlog_cluster_failovers_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_go_on_with_two_of_three_nats_servers() {
    let mut nats = NatsCluster::start(3).await;
    let dir = data_dir();
    let server = node(&nats, dir.path(), "minority").await;
    assert_eq!(
        server
            .post("/v1/events", &json!({"type": "before", "stream": "x"}))
            .await
            .0,
        201
    );
    nats.kill9(2);
    for n in 0..5 {
        let seq = append_until_acknowledged(&[&server], &format!("after-{n}")).await;
        assert_eq!(seq, n + 2);
    }
    nats.restart(2).await;
    let seq = append_until_acknowledged(&[&server], "healed").await;
    assert_eq!(seq, 7);
    assert_eq!(verify_store(&nats, "minority")["records"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_paused_past_its_lease_never_appends_and_steps_down() {
    let nats = NatsCluster::start(3).await;
    let (a, b, _dirs) = two_nodes(&nats, "pause").await;
    assert_eq!(
        a.post("/v1/events", &json!({"type": "one", "stream": "x"}))
            .await
            .0,
        201
    );
    a.signal(libc::SIGSTOP);
    // Past the lease: `b` takes over and appends.
    let seq = append_until_acknowledged(&[&b], "during-pause").await;
    assert_eq!(seq, 2);
    a.signal(libc::SIGCONT);
    // `a` believed it was the writer: what it is sent now goes to the new writer, and
    // nothing it decides on its old state is stored.
    let seq = append_until_acknowledged(&[&a], "after-resume").await;
    assert_eq!(seq, 3);
    wait_for_head(&a, 3).await;
    assert_eq!(history(&a).await, history(&b).await);
    assert_eq!(verify_store(&nats, "pause")["records"], 3);
    assert_eq!(b.metric("swarmlog_cluster_failovers_total").await, 1.0);
    assert_eq!(
        a.metric("swarmlog_cluster_failovers_total").await,
        0.0,
        "the first election is no failover"
    );
    // Nodes are named by their address unless --node-name says otherwise.
    let (a_name, b_name) = (
        a.url.trim_start_matches("http://"),
        b.url.trim_start_matches("http://"),
    );
    let writer = |name: &str| format!("swarmlog_cluster_writer{{node=\"{name}\"}}");
    assert_eq!(
        a.metric(&writer(b_name)).await,
        1.0,
        "the old writer sees the new one"
    );
    assert_eq!(a.metric(&writer(a_name)).await, 0.0, "and no longer itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_everything_keeps_the_hash_head() {
    let mut nats = NatsCluster::start(3).await;
    let (mut a, mut b, dirs) = two_nodes(&nats, "restart").await;
    for n in 0..10 {
        appended(&b, "n", n).await;
    }
    wait_for_head(&a, 10).await;
    let before = history(&a).await;
    a.kill9();
    b.kill9();
    nats.stop_all();
    for index in 0..3 {
        nats.restart(index).await;
    }
    let a = node(&nats, dirs[0].path(), "restart").await;
    let b = node(&nats, dirs[1].path(), "restart").await;
    let seq = append_until_acknowledged(&[&a], "after").await;
    assert_eq!(seq, 11);
    wait_for_head(&b, 11).await;
    let after = history(&b).await;
    assert_eq!(
        after[..10],
        before[..],
        "the history before the restart is unchanged"
    );
    assert_eq!(history(&a).await, after);
    assert_eq!(
        verify_store(&nats, "restart")["head_hash"],
        after[10]["hash"]
    );
}

/// Runs `serve` on the cluster expecting it to refuse to start: its exit code and stderr.
fn serve_refused(nats: &NatsCluster, dir: &std::path::Path, stream: &str) -> (i32, String) {
    let output = std::process::Command::new(crate::support::binary())
        .arg("--db")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--store", &nats.urls()])
        .args(["--nats-stream", stream])
        .env("SWARMLOG_LOG", "warn")
        .output()
        .expect("the swarmlog binary runs");
    let code = output.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_refuses_a_stream_that_could_lose_events_and_a_mirror_of_another_history() {
    use async_nats::jetstream::stream::{Config, StorageType};
    let nats = NatsCluster::start(3).await;
    let jetstream = async_nats::jetstream::new(nats.connect().await);
    jetstream
        .create_stream(Config {
            name: "inmemory".into(),
            subjects: vec!["swarmlog.inmemory".into()],
            storage: StorageType::Memory,
            num_replicas: 3,
            allow_atomic_publish: true,
            ..Default::default()
        })
        .await
        .expect("a memory stream is created");
    let dir = data_dir();
    let (code, stderr) = serve_refused(&nats, dir.path(), "inmemory");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("storage is memory"), "{stderr}");
    jetstream
        .create_stream(Config {
            name: "single".into(),
            subjects: vec!["swarmlog.single".into()],
            num_replicas: 1,
            allow_atomic_publish: true,
            ..Default::default()
        })
        .await
        .expect("a stream of one replica is created");
    let (code, stderr) = serve_refused(&nats, dir.path(), "single");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("1 replica(s), fewer than the 3"),
        "{stderr}"
    );

    // A data directory that mirrors stream `one` cannot join stream `two`, whether `two`
    // is shorter (it would lose events) or as long (another history).
    let (mirror, other) = (data_dir(), data_dir());
    let mut a = node(&nats, mirror.path(), "one").await;
    let mut b = node(&nats, other.path(), "two").await;
    for n in 0..2 {
        appended(&a, "one", n).await;
        appended(&b, "two", n).await;
    }
    a.stop();
    b.stop();
    let (code, stderr) = serve_refused(&nats, mirror.path(), "two");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("mirrors another history"), "{stderr}");
    let (code, stderr) = serve_refused(&nats, mirror.path(), "empty");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("holds events up to seq 2 but the stream ends at seq 0"),
        "{stderr}"
    );
    // Its own stream takes it back.
    let a = node(&nats, mirror.path(), "one").await;
    assert_eq!(a.head().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_refuses_a_nats_whose_messages_cannot_hold_an_event() {
    // NATS's default max_payload (1 MB) is below a 1 MiB body and its envelope.
    let nats = NatsCluster::start_with(3, "").await;
    let dir = data_dir();
    let (code, stderr) = serve_refused(&nats, dir.path(), "small");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("max_payload: 8MB"), "{stderr}");
}
