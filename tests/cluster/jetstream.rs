//! The NATS behaviour that the cluster store relies on, pinned down against a real 3-node
//! nats-server cluster: an R3 stream that takes atomic batches, the batch protocol of ADR-50
//! spoken with raw headers, the optimistic concurrency of `Nats-Expected-Last-Sequence`,
//! publishing through the loss of a node, and a KV bucket as an expiring lease.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_EXPECTED_LAST_SEQUENCE,
};
use async_nats::jetstream::{self, context::PublishErrorKind, kv, stream};
use async_nats::{Client, HeaderMap};
use serde_json::Value;

use crate::nats::NatsCluster;

/// The subject of the test stream's events.
const SUBJECT: &str = "sltest.events";

/// The JetStream API error code of a failed `Nats-Expected-Last-Sequence` check.
const WRONG_LAST_SEQUENCE: u64 = 10071;

/// A 3-node cluster with the test stream on it, and a client of the whole cluster.
struct Fixture {
    cluster: NatsCluster,
    client: Client,
    stream: stream::Stream,
}

impl Fixture {
    async fn start() -> Fixture {
        let cluster = NatsCluster::start(3).await;
        let client = cluster.connect().await;
        let stream = jetstream::new(client.clone())
            .create_stream(events_stream())
            .await
            .expect("the R3 events stream is created");
        wait_until_stream_listens(&client, SUBJECT).await;
        Fixture {
            cluster,
            client,
            stream,
        }
    }

    /// The sequence of the last message in the stream (0 when it is empty).
    async fn last_sequence(&self) -> u64 {
        self.stream
            .get_info()
            .await
            .expect("the stream's info")
            .state
            .last_sequence
    }

    /// The payloads stored at `sequences`, read back from the stream.
    async fn payloads(&self, sequences: std::ops::RangeInclusive<u64>) -> Vec<String> {
        let mut payloads = Vec::new();
        for sequence in sequences {
            let message = self
                .stream
                .get_raw_message(sequence)
                .await
                .unwrap_or_else(|error| panic!("message {sequence} of the stream: {error}"));
            payloads.push(String::from_utf8_lossy(&message.payload).into_owned());
        }
        payloads
    }
}

/// Waits until publishes to `subject` from `client`'s server reach the stream that was just
/// created for it. Right after `create_stream` returns, the stream's interest in its subject
/// may not have reached the other servers yet: a request published there gets "no
/// responders" and a plain publish is dropped without a word. The probe is a publish that
/// expects the stream's last sequence to be `u64::MAX`, which the stream refuses (10071)
/// without storing anything.
async fn wait_until_stream_listens(client: &Client, subject: &str) {
    let started = Instant::now();
    loop {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_EXPECTED_LAST_SEQUENCE, u64::MAX.to_string());
        let error = match client
            .request_with_headers(subject.to_owned(), headers, "probe".into())
            .await
        {
            Ok(reply) => {
                let reply: Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
                assert_eq!(
                    error_code(&reply),
                    WRONG_LAST_SEQUENCE,
                    "the probe of {subject}"
                );
                return;
            }
            Err(error) => error,
        };
        assert!(
            started.elapsed() < FAILOVER_TIMEOUT,
            "publishes to {subject} reach no stream {FAILOVER_TIMEOUT:?} after it was created: \
             {error}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stream the cluster store keeps the history in: replicated on 3 nodes, on disk,
/// accepting atomic batches, and append-only (no message deleted or purged).
fn events_stream() -> stream::Config {
    stream::Config {
        name: "SLTEST".to_owned(),
        subjects: vec![SUBJECT.to_owned()],
        num_replicas: 3,
        storage: stream::StorageType::File,
        allow_atomic_publish: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// A batch id no other batch of this process has (ids are at most 64 characters).
fn new_batch_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "sltest-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One atomic batch (ADR-50) spoken with raw headers: every message carries `Nats-Batch-Id`
/// and `Nats-Batch-Sequence` (1, 2, ...); the last also `Nats-Batch-Commit: 1` and is sent
/// as a request, whose reply is the batch's PubAck or error.
struct Batch<'a> {
    id: String,
    payloads: &'a [&'a str],
    /// `Nats-Expected-Last-Sequence`, and the batch sequence (1-based) of the message that
    /// carries it.
    expected_last_sequence: Option<(u64, usize)>,
    /// Whether the first message is sent as a request (the server then answers it with an
    /// empty message, or an error) rather than a plain publish.
    first_as_request: bool,
}

/// What the server answered to a [`Batch`].
#[derive(Debug)]
struct BatchReplies {
    /// The raw reply to the first message, when it was sent as a request.
    first: Option<String>,
    /// The reply to the commit: a PubAck or a JetStream API error, as JSON.
    commit: Value,
}

impl Batch<'_> {
    /// A batch of `payloads` whose first message carries `Nats-Expected-Last-Sequence:
    /// expected` and is sent as a request.
    fn expecting<'a>(payloads: &'a [&'a str], expected: u64) -> Batch<'a> {
        Batch {
            id: new_batch_id(),
            payloads,
            expected_last_sequence: Some((expected, 1)),
            first_as_request: true,
        }
    }

    /// Sends the batch on `client`, in order on the one connection, and returns what the
    /// server answered.
    async fn send(&self, client: &Client) -> BatchReplies {
        let mut first = None;
        let last = self.payloads.len();
        for (index, payload) in self.payloads.iter().enumerate() {
            let sequence = index + 1;
            let mut headers = HeaderMap::new();
            headers.insert(NATS_BATCH_ID, self.id.as_str());
            headers.insert(NATS_BATCH_SEQUENCE, sequence.to_string());
            if let Some((expected, carrier)) = self.expected_last_sequence {
                if carrier == sequence {
                    headers.insert(NATS_EXPECTED_LAST_SEQUENCE, expected.to_string());
                }
            }
            let payload = payload.to_string().into();
            if sequence == last {
                headers.insert(NATS_BATCH_COMMIT, "1");
                let reply = client
                    .request_with_headers(SUBJECT, headers, payload)
                    .await
                    .expect("a reply to the batch commit");
                let commit = serde_json::from_slice(&reply.payload)
                    .unwrap_or_else(|error| panic!("the commit reply {reply:?} is JSON: {error}"));
                return BatchReplies { first, commit };
            } else if sequence == 1 && self.first_as_request {
                let reply = client
                    .request_with_headers(SUBJECT, headers, payload)
                    .await
                    .expect("a reply to the batch's first message");
                first = Some(String::from_utf8_lossy(&reply.payload).into_owned());
            } else {
                client
                    .publish_with_headers(SUBJECT, headers, payload)
                    .await
                    .expect("a batch message is sent");
            }
        }
        panic!("a batch needs at least one message");
    }
}

/// The `err_code` of a JetStream API error reply, or a panic naming the reply.
fn error_code(reply: &Value) -> u64 {
    reply["error"]["err_code"]
        .as_u64()
        .unwrap_or_else(|| panic!("expected a JetStream API error, got {reply}"))
}

/// A single JetStream publish of `payload` with `Nats-Expected-Last-Sequence: expected` and
/// no batch headers, sent as a request: its raw reply (PubAck or error) as JSON.
async fn publish_expecting(client: &Client, payload: &str, expected: u64) -> Value {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_EXPECTED_LAST_SEQUENCE, expected.to_string());
    let reply = client
        .request_with_headers(SUBJECT, headers, payload.to_string().into())
        .await
        .expect("a reply to the publish");
    serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|error| panic!("the publish reply {reply:?} is JSON: {error}"))
}

#[tokio::test]
async fn an_r3_atomic_append_only_stream_is_created_on_a_fresh_cluster() {
    let started = Instant::now();
    let cluster = NatsCluster::start(3).await;
    let formed = started.elapsed();
    let client = cluster.connect().await;
    let context = jetstream::new(client.clone());
    let mut stream = context
        .create_stream(events_stream())
        .await
        .expect("the R3 events stream is created");
    let created = started.elapsed();
    wait_until_stream_listens(&client, SUBJECT).await;
    println!(
        "3-node cluster usable after {formed:?}, stream created after {created:?}, publishes \
         reach it after {:?}",
        started.elapsed()
    );

    let info = stream.info().await.expect("the stream's info");
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.config.storage, stream::StorageType::File);
    assert!(info.config.allow_atomic_publish);
    assert!(info.config.deny_delete && info.config.deny_purge);
    let placement = info
        .cluster
        .clone()
        .expect("a clustered stream reports its group");
    assert!(placement.leader.is_some(), "{placement:?}");
    assert_eq!(placement.replicas.len(), 2, "two followers: {placement:?}");

    let ack = context
        .publish(SUBJECT, "first".into())
        .await
        .expect("the publish is sent")
        .await
        .expect("the publish is acknowledged");
    assert_eq!(ack.sequence, 1);
    assert!(
        stream.delete_message(1).await.is_err(),
        "deny_delete refuses deleting a message"
    );
    assert!(stream.purge().await.is_err(), "deny_purge refuses a purge");
    assert_eq!(stream.get_info().await.expect("info").state.messages, 1);
}

#[tokio::test]
async fn an_atomic_batch_is_stored_whole_after_the_expected_last_sequence() {
    let fixture = Fixture::start().await;
    let expected = fixture.last_sequence().await;
    let batch = Batch::expecting(&["a", "b", "c"], expected);
    let replies = batch.send(&fixture.client).await;

    assert_eq!(
        replies.first.as_deref(),
        Some(""),
        "the first message's reply"
    );
    let ack = &replies.commit;
    assert_eq!(ack["seq"].as_u64(), Some(expected + 3), "{ack}");
    assert_eq!(ack["batch"].as_str(), Some(batch.id.as_str()), "{ack}");
    assert_eq!(ack["count"].as_u64(), Some(3), "{ack}");
    assert_eq!(ack["stream"].as_str(), Some("SLTEST"), "{ack}");
    assert_eq!(fixture.last_sequence().await, expected + 3);
    assert_eq!(
        fixture.payloads(expected + 1..=expected + 3).await,
        ["a", "b", "c"]
    );

    // The messages are stored with the headers they were sent with, batch headers included.
    let first_stored = fixture.stream.get_raw_message(expected + 1).await;
    let first_stored = first_stored.expect("the batch's first message").headers;
    assert_eq!(
        first_stored.get(NATS_BATCH_ID).map(|id| id.as_str()),
        Some(batch.id.as_str())
    );
    assert_eq!(
        first_stored
            .get(NATS_BATCH_SEQUENCE)
            .map(|seq| seq.as_str()),
        Some("1")
    );
    let expected_text = expected.to_string();
    assert_eq!(
        first_stored
            .get(NATS_EXPECTED_LAST_SEQUENCE)
            .map(|seq| seq.as_str()),
        Some(expected_text.as_str())
    );
    let commit_stored = fixture.stream.get_raw_message(expected + 3).await;
    let commit_stored = commit_stored.expect("the batch's commit message").headers;
    assert_eq!(
        commit_stored
            .get(NATS_BATCH_COMMIT)
            .map(|commit| commit.as_str()),
        Some("1")
    );
}

#[tokio::test]
async fn a_batch_needs_no_request_before_its_commit() {
    let fixture = Fixture::start().await;
    let all_plain = Batch {
        first_as_request: false,
        ..Batch::expecting(&["a", "b", "c"], 0)
    };
    let replies = all_plain.send(&fixture.client).await;
    assert_eq!(
        replies.commit["seq"].as_u64(),
        Some(3),
        "{}",
        replies.commit
    );
    assert_eq!(
        replies.commit["count"].as_u64(),
        Some(3),
        "{}",
        replies.commit
    );

    // A batch of one: its only message is first, carrier of the expected sequence and commit.
    let single = Batch::expecting(&["d"], 3).send(&fixture.client).await;
    assert_eq!(single.first, None, "the commit is the only request");
    assert_eq!(single.commit["seq"].as_u64(), Some(4), "{}", single.commit);
    assert_eq!(
        single.commit["count"].as_u64(),
        Some(1),
        "{}",
        single.commit
    );
    assert_eq!(fixture.payloads(1..=4).await, ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn a_stale_expected_last_sequence_refuses_the_whole_batch() {
    let fixture = Fixture::start().await;
    let first = Batch::expecting(&["a", "b", "c"], 0)
        .send(&fixture.client)
        .await;
    assert_eq!(first.commit["seq"].as_u64(), Some(3), "{}", first.commit);

    let replies = Batch::expecting(&["x", "y", "z"], 1)
        .send(&fixture.client)
        .await;
    // The check happens at the commit: the first message is still answered with nothing.
    assert_eq!(replies.first.as_deref(), Some(""));
    assert_eq!(error_code(&replies.commit), WRONG_LAST_SEQUENCE);
    assert_eq!(
        replies.commit,
        serde_json::json!({
            "error": {"code": 400, "err_code": 10071, "description": "wrong last sequence: 3"},
            "stream": "SLTEST",
            "seq": 0
        }),
        "the refusal names the stream's actual last sequence"
    );
    assert_eq!(
        fixture.last_sequence().await,
        3,
        "nothing of the batch is stored"
    );

    let retried = Batch::expecting(&["x", "y", "z"], 3)
        .send(&fixture.client)
        .await;
    assert_eq!(
        retried.commit["seq"].as_u64(),
        Some(6),
        "{}",
        retried.commit
    );
    assert_eq!(
        fixture.payloads(1..=6).await,
        ["a", "b", "c", "x", "y", "z"]
    );
}

#[tokio::test]
async fn expected_last_sequence_is_refused_on_a_later_batch_message() {
    let fixture = Fixture::start().await;
    // On message 2 the server compares the header with the sequence that message 1 of the
    // batch would get (1 here), and refuses a different value as stale...
    let replies = Batch {
        expected_last_sequence: Some((0, 2)),
        ..Batch::expecting(&["a", "b", "c"], 0)
    }
    .send(&fixture.client)
    .await;
    assert_eq!(error_code(&replies.commit), WRONG_LAST_SEQUENCE);
    assert_eq!(
        replies.commit["error"]["description"],
        "wrong last sequence: 1"
    );
    // ...and refuses even that value, with another code: the header belongs on message 1.
    let replies = Batch {
        expected_last_sequence: Some((1, 2)),
        ..Batch::expecting(&["a", "b", "c"], 0)
    }
    .send(&fixture.client)
    .await;
    assert_eq!(
        replies.commit,
        serde_json::json!({
            "error": {"code": 400, "err_code": 10164, "description": "wrong last sequence"},
            "stream": "SLTEST",
            "seq": 0
        })
    );
    assert_eq!(fixture.last_sequence().await, 0, "neither batch is stored");
}

#[tokio::test]
async fn a_single_publish_checks_the_expected_last_sequence() {
    let fixture = Fixture::start().await;
    let ack = publish_expecting(&fixture.client, "one", 0).await;
    assert_eq!(ack, serde_json::json!({"stream": "SLTEST", "seq": 1}));
    let ack = publish_expecting(&fixture.client, "two", 1).await;
    assert_eq!(ack["seq"].as_u64(), Some(2), "{ack}");

    let refused = publish_expecting(&fixture.client, "stale", 1).await;
    assert_eq!(
        refused,
        serde_json::json!({
            "error": {"code": 400, "err_code": 10071, "description": "wrong last sequence: 2"},
            "stream": "SLTEST",
            "seq": 0
        })
    );
    assert_eq!(fixture.last_sequence().await, 2);

    // async-nats' own publish surfaces the same refusal as its WrongLastSequence kind.
    let mut headers = HeaderMap::new();
    headers.insert(NATS_EXPECTED_LAST_SEQUENCE, "1");
    let error = jetstream::new(fixture.client.clone())
        .publish_with_headers(SUBJECT, headers, "stale".into())
        .await
        .expect("the publish is sent")
        .await
        .expect_err("a stale expected last sequence is refused");
    assert_eq!(error.kind(), PublishErrorKind::WrongLastSequence, "{error}");
    assert_eq!(fixture.payloads(1..=2).await, ["one", "two"]);
}

/// How long a publish may take to go through again after a node is killed. Killing the
/// stream's leader costs an election: its followers wait a random 4 to 9 s without
/// heartbeats before they campaign (nats-server's raft election timeout, which no option
/// changes), so publishing resumes 4 to 10 s later.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(15);

/// Publishes `payload` after `expected`, retrying for up to [`FAILOVER_TIMEOUT`] while the
/// cluster elects a new leader, and returns how long that took. A retry whose earlier
/// attempt was stored after all (its ack lost) is refused as stale: then the message at
/// `expected + 1` must be this one.
async fn publish_through_failover(fixture: &Fixture, payload: &str, expected: u64) -> Duration {
    let started = Instant::now();
    let mut last_outcome = String::new();
    while started.elapsed() < FAILOVER_TIMEOUT {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_EXPECTED_LAST_SEQUENCE, expected.to_string());
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(payload.to_string().into())
            .timeout(Some(Duration::from_secs(1)));
        match fixture.client.send_request(SUBJECT, request).await {
            Ok(reply) => {
                let reply: Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
                if reply["seq"].as_u64() == Some(expected + 1) {
                    return started.elapsed();
                }
                if reply["error"]["err_code"].as_u64() == Some(WRONG_LAST_SEQUENCE) {
                    let stored = fixture.payloads(expected + 1..=expected + 1).await;
                    assert_eq!(stored, [payload], "an earlier attempt was stored: {reply}");
                    return started.elapsed();
                }
                last_outcome = reply.to_string();
            }
            Err(error) => last_outcome = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "publishing {payload:?} failed for {FAILOVER_TIMEOUT:?} (last outcome: {last_outcome})\n{}",
        fixture.cluster.log_tails()
    );
}

/// The index of the node that leads the test stream.
async fn stream_leader(fixture: &Fixture) -> usize {
    let info = fixture.stream.get_info().await.expect("the stream's info");
    let leader = info
        .cluster
        .and_then(|cluster| cluster.leader)
        .expect("the stream has a leader");
    fixture.cluster.index_of(&leader)
}

/// Waits until node `i` is the stream's leader or a current follower with no lag.
async fn wait_until_caught_up(fixture: &Fixture, i: usize) -> Duration {
    let name = fixture.cluster.name(i).to_owned();
    let started = Instant::now();
    loop {
        let info = fixture.stream.get_info().await;
        let cluster = info.ok().and_then(|info| info.cluster);
        if let Some(cluster) = &cluster {
            let leads = cluster.leader.as_deref() == Some(name.as_str());
            let current = cluster.replicas.iter().any(|peer| {
                peer.name == name && peer.current && !peer.offline && peer.lag.unwrap_or(0) == 0
            });
            if leads || current {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < FAILOVER_TIMEOUT,
            "{name} did not catch up on the stream within {FAILOVER_TIMEOUT:?}: {cluster:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn publishing_goes_on_when_the_stream_leader_is_killed_and_it_catches_up() {
    let mut fixture = Fixture::start().await;
    let ack = publish_expecting(&fixture.client, "before", 0).await;
    assert_eq!(ack["seq"].as_u64(), Some(1), "{ack}");

    let killed = stream_leader(&fixture).await;
    fixture.cluster.kill9(killed);
    let leader_failover = publish_through_failover(&fixture, "during", 1).await;
    let leader = stream_leader(&fixture).await;
    assert_ne!(leader, killed, "a new leader was elected");

    fixture.cluster.restart(killed).await;
    let catch_up = wait_until_caught_up(&fixture, killed).await;

    // The restarted node is a full member again: with the third node killed, the leader
    // needs its acknowledgement to store anything.
    let third = (0..3)
        .find(|&i| i != killed && i != leader)
        .expect("a third node");
    fixture.cluster.kill9(third);
    let follower_failover = publish_through_failover(&fixture, "after", 2).await;
    assert_eq!(fixture.payloads(1..=3).await, ["before", "during", "after"]);
    println!(
        "publishing resumed {leader_failover:?} after the stream leader was killed; restarted, \
         it caught up after {catch_up:?}; publishing resumed {follower_failover:?} after a \
         follower was killed"
    );
}

/// Waits until the stream answers again after a restart of the whole cluster (its leader
/// elected anew) and returns its last sequence.
async fn last_sequence_after_restart(fixture: &Fixture) -> u64 {
    let started = Instant::now();
    loop {
        match fixture.stream.get_info().await {
            Ok(info) => return info.state.last_sequence,
            Err(error) => assert!(
                started.elapsed() < FAILOVER_TIMEOUT,
                "the stream did not answer within {FAILOVER_TIMEOUT:?} of the restart: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn acknowledged_messages_survive_a_kill_9_of_the_whole_cluster() {
    let mut fixture = Fixture::start().await;
    let batch = Batch::expecting(&["a", "b", "c"], 0)
        .send(&fixture.client)
        .await;
    assert_eq!(batch.commit["seq"].as_u64(), Some(3), "{}", batch.commit);

    for i in 0..3 {
        fixture.cluster.kill9(i);
    }
    for i in 0..3 {
        fixture.cluster.restart(i).await;
    }
    fixture.cluster.wait_until_ready().await;
    assert_eq!(last_sequence_after_restart(&fixture).await, 3);

    fixture.cluster.stop_all();
    for i in 0..3 {
        fixture.cluster.restart(i).await;
    }
    fixture.cluster.wait_until_ready().await;
    assert_eq!(last_sequence_after_restart(&fixture).await, 3);
    publish_through_failover(&fixture, "d", 3).await;
    assert_eq!(fixture.payloads(1..=4).await, ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn a_kv_key_with_max_age_serves_as_an_expiring_lease() {
    let cluster = NatsCluster::start(3).await;
    let max_age = Duration::from_secs(2);
    let holder_client = cluster.connect().await;
    let holder = jetstream::new(holder_client.clone())
        .create_key_value(kv::Config {
            bucket: "sltest_lease".to_owned(),
            history: 1,
            max_age,
            num_replicas: 3,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("the R3 lease bucket is created");
    wait_until_stream_listens(&holder_client, "$KV.sltest_lease.writer").await;
    let rival_client = cluster.connect().await;
    let rival = jetstream::new(rival_client.clone())
        .get_key_value("sltest_lease")
        .await
        .expect("a second client opens the bucket");
    wait_until_stream_listens(&rival_client, "$KV.sltest_lease.writer").await;

    let revision = holder
        .create("writer", "a".into())
        .await
        .expect("the first creator takes the lease");
    let error = rival
        .create("writer", "b".into())
        .await
        .expect_err("a second creator is refused while the key exists");
    assert_eq!(error.kind(), kv::CreateErrorKind::AlreadyExists, "{error}");

    // Renewing before max_age keeps the key past max_age from its creation.
    tokio::time::sleep(max_age * 3 / 4).await;
    let renewed = holder
        .update("writer", "a".into(), revision)
        .await
        .expect("the holder renews with its revision");
    let renewed_at = Instant::now();
    let error = rival
        .update("writer", "b".into(), revision)
        .await
        .expect_err("an update with a stale revision is refused");
    assert_eq!(
        error.kind(),
        kv::UpdateErrorKind::WrongLastRevision,
        "{error}"
    );
    tokio::time::sleep(max_age / 2).await;
    assert_eq!(
        rival.get("writer").await.expect("a read").as_deref(),
        Some(&b"a"[..]),
        "renewed {renewed}: still held {:?} after the creation",
        max_age * 5 / 4
    );

    // Without renewal the key expires after max_age and can be created again. Every replica
    // expires it on its own clock: a read served by a follower may see it gone a little
    // before the stream leader lets a create through, so the rival polls with create.
    let mut read_gone_after = None;
    let taken_after = loop {
        if read_gone_after.is_none() && rival.get("writer").await.expect("a read").is_none() {
            read_gone_after = Some(renewed_at.elapsed());
        }
        match rival.create("writer", "b".into()).await {
            Ok(_) => break renewed_at.elapsed(),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(error) => panic!("the rival's create failed: {error}"),
        }
        assert!(
            renewed_at.elapsed() < max_age + Duration::from_secs(10),
            "the lease did not expire within 10 s after max_age"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "after its last renewal the lease key read as gone after {read_gone_after:?} and was \
         taken by the rival after {taken_after:?} (max_age {max_age:?})"
    );
    assert!(
        taken_after + Duration::from_millis(100) >= max_age,
        "the lease was taken {taken_after:?} after its renewal, before max_age {max_age:?}"
    );
    let error = holder
        .update("writer", "a".into(), renewed)
        .await
        .expect_err("the former holder's renewal is refused");
    assert_eq!(
        error.kind(),
        kv::UpdateErrorKind::WrongLastRevision,
        "{error}"
    );
}
