//! The engine through its public API, without HTTP: writes and their answers, reads,
//! waits, timers, shutdown and the past. Every test goes through the helpers at the top,
//! so an API change means editing them only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use swarmlog_log::Seq;
use swarmlog_projections::coordination::{agents, CoordinationCommand, LockMode};
use swarmlog_projections::work::{ClaimSpec, TaskSpec, TaskStatus, WorkCommand};
use swarmlog_projections::{AppendRequest, Code, Envelope, State, GENESIS_HASH, SYSTEM_ACTOR};
use tempfile::TempDir;

use super::{
    past_state, state_at, tally_contention, AppendItem, Engine, EngineConfig, Fence,
    IdempotencyRequest, Status, WriteCommand, WriteContext, WriteRequest, WriteResponse,
};
use crate::refusal::Refusal;

/// How long a test waits for something the engine does on its own (a timer, a parked
/// request showing up): far beyond what it takes, so that only a bug runs it out.
const PATIENCE: Duration = Duration::from_secs(5);

/// An engine on a fresh data directory; the directory lives as long as the guard.
fn start() -> (TempDir, Engine) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let engine = open(&dir);
    (dir, engine)
}

/// An engine on `dir` with the defaults (recovering what is there).
fn open(dir: &TempDir) -> Engine {
    Engine::start(EngineConfig::new(dir.path())).expect("the engine starts")
}

/// A write on `main` by `actor` whose answer is the JSON list of the seqs it wrote:
/// `Created` when it wrote something, `Empty` when not.
fn request(actor: &str, command: WriteCommand) -> WriteRequest {
    WriteRequest::new(
        WriteContext {
            branch: "main".into(),
            actor: actor.into(),
            ..WriteContext::default()
        },
        command,
        Box::new(|_, written| {
            let seqs: Vec<u64> = written.iter().map(|event| event.envelope.seq).collect();
            Ok(WriteResponse {
                status: if seqs.is_empty() {
                    Status::Empty
                } else {
                    Status::Created
                },
                body: serde_json::to_string(&seqs).expect("a list of numbers serializes"),
                replayed: false,
            })
        }),
    )
}

/// Writes `command` as `actor` and waits for the answer.
async fn write(engine: &Engine, actor: &str, command: WriteCommand) -> Result<Vec<u64>, Refusal> {
    engine
        .write(request(actor, command))
        .await
        .map(|response| seqs(&response))
}

/// The seqs a response of [`request`]'s responder names.
fn seqs(response: &WriteResponse) -> Vec<u64> {
    serde_json::from_str(&response.body).expect("the responder's body is a list of seqs")
}

/// Every durable seq of a stream, from the stream index.
fn stream_seqs(engine: &Engine, branch: &str, stream: &str) -> Vec<u64> {
    engine
        .stream_seqs(branch, stream)
        .expect("the stream index reads")
}

/// Reads the engine's state through `Engine::read`.
async fn read<R: Send + 'static>(
    engine: &Engine,
    read: impl FnOnce(&State) -> R + Send + 'static,
) -> R {
    engine.read(read).await.expect("the engine answers reads")
}

/// The durable head's seq.
fn head(engine: &Engine) -> u64 {
    engine.audit_head().seq
}

/// Every event of the durable log, decoded.
fn events(engine: &Engine) -> Vec<Envelope> {
    engine
        .reader()
        .iter_from(Seq::FIRST)
        .map(|record| {
            let record = record.expect("the log reads");
            Envelope::decode(record.seq.get(), record.timestamp_ms, &record.payload)
                .expect("a stored event decodes")
        })
        .collect()
}

/// The asserted refusal's rule code.
fn code(refusal: Refusal) -> Code {
    match refusal {
        Refusal::Rule(rejection) => rejection.code,
        other => panic!("expected a rule's refusal, got {other:?}"),
    }
}

/// A custom event on `stream`, conditional when `expected_version` is set.
fn item(stream: &str, data: Value, expected_version: Option<u64>) -> AppendItem {
    AppendItem {
        request: AppendRequest {
            event_type: "note.added".into(),
            stream: stream.into(),
            data: data.to_string(),
            expected_version,
        },
        session: None,
        correlation: None,
        meta: None,
    }
}

fn append(items: Vec<AppendItem>) -> WriteCommand {
    WriteCommand::Append(items)
}

fn acquire(owner: &str, resource: &str, ttl_ms: u64) -> WriteCommand {
    WriteCommand::Coordination(CoordinationCommand::LockAcquire {
        resources: vec![resource.into()],
        owner: owner.into(),
        ttl_ms,
        mode: LockMode::Exclusive,
    })
}

fn release(owner: &str, resource: &str, token: u64) -> WriteCommand {
    WriteCommand::Coordination(CoordinationCommand::LockRelease {
        resource: resource.into(),
        owner: owner.into(),
        token,
    })
}

fn kv_put(key: &str, value: Value) -> WriteCommand {
    WriteCommand::Coordination(CoordinationCommand::KvPut {
        key: key.into(),
        value,
    })
}

/// The owners holding `resource` on `main` right now.
async fn holders(engine: &Engine, resource: &str) -> Vec<String> {
    let resource = resource.to_owned();
    read(engine, move |state| {
        state
            .branch("main")
            .expect("main exists")
            .coordination
            .locks
            .get(&resource)
            .map(|lock| lock.holders.keys().cloned().collect())
            .unwrap_or_default()
    })
    .await
}

/// The value of kv `key` on `main`, read through `Engine::read`.
async fn kv(engine: &Engine, key: &str) -> Option<Value> {
    let key = key.to_owned();
    read(engine, move |state| {
        let kv = &state.branch("main").expect("main exists").coordination.kv;
        kv.get(&key).map(|entry| entry.value.clone())
    })
    .await
}

/// The reads served from the published state, the reads that went to the engine, and the
/// states published, as the metrics count them.
fn read_paths(engine: &Engine) -> (u64, u64, u64) {
    let metrics = engine.metrics();
    (
        metrics.reads_published.get(),
        metrics.reads_engine.get(),
        metrics.state_publications.get(),
    )
}

/// Reads kv `key` until a read is served from the published state; every read must
/// answer `expected`.
async fn read_published(engine: &Engine, key: &str, expected: &Value) {
    let start = Instant::now();
    loop {
        let (published, _, _) = read_paths(engine);
        assert_eq!(kv(engine, key).await.as_ref(), Some(expected));
        if read_paths(engine).0 > published {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no read was served from the published state"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits (up to [`PATIENCE`]) until `done` holds, polling every few milliseconds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `owner` is a parked lock waiter on `main`.
async fn parked_lock_waiter(engine: &Engine, owner: &str) {
    let start = Instant::now();
    loop {
        let waiters = engine.lock_waiters("main").await.expect("waiters read");
        if waiters.iter().any(|(waiter, _, _)| waiter == owner) {
            return;
        }
        assert!(start.elapsed() < PATIENCE, "{owner} was never parked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_append_is_created_durable_readable_and_folded_into_the_state() {
    let (_dir, engine) = start();
    assert_eq!(engine.audit_head().hash, GENESIS_HASH);

    let response = engine
        .write(request(
            "alice",
            append(vec![item("orders/1", json!({"n": 1}), None)]),
        ))
        .await
        .expect("append");
    assert_eq!(response.status, Status::Created);
    assert!(!response.replayed);
    assert_eq!(seqs(&response), [1]);
    let batch = write(
        &engine,
        "alice",
        append(vec![
            item("orders/1", json!({"n": 2}), None),
            item("orders/2", json!({"n": 3}), None),
        ]),
    )
    .await
    .expect("a batch");
    assert_eq!(batch, [2, 3]);

    let log = events(&engine);
    let written: Vec<_> = log
        .iter()
        .map(|event| {
            (
                event.seq,
                event.stream.as_str(),
                event.actor.as_str(),
                event.data.as_str(),
            )
        })
        .collect();
    assert_eq!(
        written,
        [
            (1, "orders/1", "alice", r#"{"n":1}"#),
            (2, "orders/1", "alice", r#"{"n":2}"#),
            (3, "orders/2", "alice", r#"{"n":3}"#),
        ]
    );
    assert!(log.iter().all(|event| event.event_type == "note.added"));
    assert_eq!(engine.audit_head().seq, 3);
    assert_eq!(
        engine.audit_head().hash,
        log[2].hash,
        "the head is the last event's hash"
    );
    assert_eq!(stream_seqs(&engine, "main", "orders/1"), [1, 2]);

    let (state_head, versions) = read(&engine, |state| {
        (
            state.head,
            (
                state.stream_version("main", "orders/1"),
                state.stream_version("main", "orders/2"),
            ),
        )
    })
    .await;
    assert_eq!(state_head, 3);
    assert_eq!(versions, (2, 1));
    engine.shutdown().await;
}

#[tokio::test]
async fn a_conditional_append_at_the_wrong_version_is_refused_and_writes_nothing() {
    let (_dir, engine) = start();
    write(&engine, "alice", append(vec![item("s", json!(1), None)]))
        .await
        .expect("first append");
    let before = engine.audit_head();

    let refused = write(&engine, "alice", append(vec![item("s", json!(2), Some(0))])).await;
    assert_eq!(
        code(refused.expect_err("stale version")),
        Code::VersionConflict
    );
    // A batch is all or nothing: its good first item is not written either.
    let refused = write(
        &engine,
        "alice",
        append(vec![
            item("other", json!(3), None),
            item("s", json!(4), Some(5)),
        ]),
    )
    .await;
    assert_eq!(
        code(refused.expect_err("stale version")),
        Code::VersionConflict
    );
    assert_eq!(engine.audit_head(), before);
    assert_eq!(events(&engine).len(), 1);
    assert_eq!(
        read(&engine, |state| state.stream_version("main", "other")).await,
        0
    );

    let accepted = write(&engine, "alice", append(vec![item("s", json!(5), Some(1))])).await;
    assert_eq!(accepted.expect("the right version"), [2]);
    engine.shutdown().await;
}

#[tokio::test]
async fn an_idempotent_retry_answers_the_first_response_and_another_request_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keyed = |sha: u8| {
        let mut request = request("alice", append(vec![item("s", json!("once"), None)]));
        request.idempotency = Some(IdempotencyRequest {
            key: "key-1".into(),
            request_sha256: [sha; 32],
        });
        request
    };
    let engine = open(&dir);
    let first = engine.write(keyed(1)).await.expect("first write");
    assert_eq!(
        (first.status, seqs(&first), first.replayed),
        (Status::Created, vec![1], false)
    );

    let retry = engine.write(keyed(1)).await.expect("retry");
    assert_eq!(
        retry,
        WriteResponse {
            replayed: true,
            ..first.clone()
        }
    );
    assert_eq!(head(&engine), 1, "a retry writes nothing");

    let reused = engine.write(keyed(2)).await;
    assert_eq!(
        reused,
        Err(Refusal::IdempotencyKeyReused {
            key: "key-1".into()
        })
    );
    assert_eq!(head(&engine), 1);
    engine.shutdown().await;
    drop(engine);

    // The key outlives a restart: the response comes from the log (or the snapshot).
    let engine = open(&dir);
    let retry = engine.write(keyed(1)).await.expect("retry after restart");
    assert_eq!(
        retry,
        WriteResponse {
            replayed: true,
            ..first
        }
    );
    assert_eq!(
        engine.write(keyed(2)).await,
        Err(Refusal::IdempotencyKeyReused {
            key: "key-1".into()
        })
    );
    assert_eq!(head(&engine), 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_waiting_lock_request_is_granted_after_the_release() {
    let (_dir, engine) = start();
    let token = write(&engine, "a", acquire("a", "r", 60_000))
        .await
        .expect("a takes r")[0];
    let started = Instant::now();
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut waiting = request("b", acquire("b", "r", 60_000));
            waiting.wait = Some(PATIENCE);
            engine.write(waiting).await
        })
    };
    parked_lock_waiter(&engine, "b").await;
    assert!(!waiter.is_finished(), "b is not answered while a holds r");
    assert_eq!(holders(&engine, "r").await, ["a"]);

    let released = write(&engine, "a", release("a", "r", token))
        .await
        .expect("release")[0];
    let granted = waiter.await.expect("the waiter task").expect("b gets r");
    assert_eq!(granted.status, Status::Created);
    let granted = seqs(&granted);
    assert_eq!(granted.len(), 1);
    assert!(
        granted[0] > released,
        "b's lock.acquired ({granted:?}) comes after the release ({released})"
    );
    assert!(
        started.elapsed() < PATIENCE,
        "b was granted on the release, not on its wait running out"
    );
    let acquired = &events(&engine)[granted[0] as usize - 1];
    assert_eq!(
        (acquired.event_type.as_str(), acquired.actor.as_str()),
        ("lock.acquired", "b")
    );
    assert_eq!(holders(&engine, "r").await, ["b"]);
    assert!(engine
        .lock_waiters("main")
        .await
        .expect("waiters")
        .is_empty());
    engine.shutdown().await;
}

#[tokio::test]
async fn a_lock_waiter_whose_wait_runs_out_is_refused_with_lock_held() {
    let (_dir, engine) = start();
    write(&engine, "a", acquire("a", "r", 60_000))
        .await
        .expect("a takes r");
    let before = head(&engine);
    let wait = Duration::from_millis(200);
    let started = Instant::now();
    let mut waiting = request("c", acquire("c", "r", 60_000));
    waiting.wait = Some(wait);
    let refused = engine.write(waiting).await.expect_err("a still holds r");
    assert!(
        started.elapsed() >= wait,
        "refused after {:?}, before its wait ran out",
        started.elapsed()
    );
    assert_eq!(code(refused), Code::LockHeld);
    assert_eq!(head(&engine), before, "a refused wait writes nothing");
    assert!(engine
        .lock_waiters("main")
        .await
        .expect("waiters")
        .is_empty());
    assert_eq!(holders(&engine, "r").await, ["a"]);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_waiting_claim_gets_the_task_created_after_it() {
    let (_dir, engine) = start();
    let claim = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut claim = request(
                "worker",
                WriteCommand::Work(WorkCommand::TaskClaim(ClaimSpec {
                    agent: "worker".into(),
                    wait_ms: Some(PATIENCE.as_millis() as i64),
                    ..ClaimSpec::default()
                })),
            );
            claim.wait = Some(PATIENCE);
            engine.write(claim).await
        })
    };
    // Give the claim time to reach the engine and find nothing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !claim.is_finished(),
        "a claim with a wait does not answer empty at once"
    );
    assert_eq!(head(&engine), 0);

    let created = write(
        &engine,
        "boss",
        WriteCommand::Work(WorkCommand::TaskCreate {
            tasks: vec![TaskSpec {
                id: Some("T1".into()),
                task_type: "build".into(),
                ..TaskSpec::default()
            }],
        }),
    )
    .await
    .expect("create")[0];
    let claimed = claim.await.expect("the claim task").expect("the claim");
    assert_eq!(claimed.status, Status::Created);
    assert_eq!(seqs(&claimed), [created + 1]);
    let event = &events(&engine)[created as usize];
    assert_eq!(
        (event.event_type.as_str(), event.stream.as_str()),
        ("task.claimed", "task/T1")
    );
    let task = read(&engine, |state| {
        let task = &state.branch("main").expect("main").work.tasks.by_id["T1"];
        (task.status, task.agent.clone())
    })
    .await;
    assert_eq!(task, (TaskStatus::Claimed, Some("worker".to_owned())));
    engine.shutdown().await;
}

#[tokio::test]
async fn a_write_fenced_with_a_stale_token_is_refused_and_writes_nothing() {
    let (_dir, engine) = start();
    let old = write(&engine, "a", acquire("a", "r", 60_000))
        .await
        .expect("a takes r")[0];
    write(&engine, "a", release("a", "r", old))
        .await
        .expect("a lets go");
    let current = write(&engine, "b", acquire("b", "r", 60_000))
        .await
        .expect("b takes r")[0];
    let before = engine.audit_head();
    let fenced = |token| {
        let mut request = request("a", kv_put("k", json!(token)));
        request.fence = Some(Fence {
            resource: "r".into(),
            token,
        });
        request
    };

    let refused = engine
        .write(fenced(old))
        .await
        .expect_err("a's token is stale");
    assert_eq!(code(refused), Code::StaleFence);
    assert_eq!(engine.audit_head(), before);
    assert!(
        read(&engine, |state| state
            .branch("main")
            .expect("main")
            .coordination
            .kv
            .is_empty())
        .await
    );

    let accepted = engine
        .write(fenced(current))
        .await
        .expect("b's token is current");
    assert_eq!(seqs(&accepted), [before.seq + 1]);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_lock_past_its_ttl_expires_by_a_system_event_without_any_request() {
    let (_dir, engine) = start();
    let ttl_ms = swarmlog_projections::limits::TTL_MS_MIN + 50;
    // Taken before the write, so no later than the lock's acquisition.
    let asked_at = Instant::now();
    let token = write(&engine, "a", acquire("a", "r", ttl_ms))
        .await
        .expect("a takes r")[0];

    eventually("the lock to expire", || head(&engine) > token).await;
    assert!(
        // The engine's clock counts whole milliseconds.
        asked_at.elapsed() >= Duration::from_millis(ttl_ms - 2),
        "expired after {:?}, before its TTL of {ttl_ms} ms",
        asked_at.elapsed()
    );
    let log = events(&engine);
    assert_eq!(log.len() as u64, token + 1, "one expiry, nothing else");
    let expired = &log[token as usize];
    assert_eq!(
        (
            expired.event_type.as_str(),
            expired.actor.as_str(),
            expired.stream.as_str()
        ),
        ("lock.expired", SYSTEM_ACTOR, "lock/r")
    );
    assert!(holders(&engine, "r").await.is_empty());
    engine.shutdown().await;
}

#[tokio::test]
async fn after_shutdown_writes_are_refused_and_a_reopen_recovers_the_same_head() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let engine = open(&dir);
    write(&engine, "alice", append(vec![item("s", json!(1), None)]))
        .await
        .expect("append");
    write(&engine, "alice", kv_put("k", json!("v")))
        .await
        .expect("put");
    let before = engine.audit_head();
    assert_eq!(before.seq, 2);

    engine.shutdown().await;
    assert!(engine.is_shutting_down());
    let refused = write(&engine, "alice", append(vec![item("s", json!(2), None)])).await;
    assert_eq!(refused, Err(Refusal::ShuttingDown));
    assert_eq!(
        engine.read(|state| state.head).await,
        Err(Refusal::ShuttingDown)
    );
    drop(engine);

    let engine = open(&dir);
    assert_eq!(engine.audit_head(), before);
    let (state_head, state_hash, value) = read(&engine, |state| {
        let kv = &state.branch("main").expect("main").coordination.kv;
        (
            state.head,
            state.head_hash,
            kv.get("k").map(|entry| entry.value.clone()),
        )
    })
    .await;
    assert_eq!(
        (state_head, state_hash, value),
        (before.seq, before.hash, Some(json!("v")))
    );
    assert_eq!(stream_seqs(&engine, "main", "s"), [1]);
    let next = write(&engine, "alice", append(vec![item("s", json!(3), Some(1))])).await;
    assert_eq!(next.expect("the chain goes on"), [3]);
    engine.shutdown().await;
}

#[tokio::test]
async fn state_at_rebuilds_the_state_as_of_a_past_seq() {
    let (_dir, engine) = start();
    let value_at = |seq| {
        let state = state_at(engine.reader(), seq).expect("the past rebuilds");
        let kv = &state.branch("main").expect("main").coordination.kv;
        (state.head, kv.get("k").map(|entry| entry.value.clone()))
    };
    let first = write(&engine, "alice", kv_put("k", json!(1)))
        .await
        .expect("put 1")[0];
    write(
        &engine,
        "alice",
        append(vec![item("s", json!("between"), None)]),
    )
    .await
    .expect("append");
    let second = write(&engine, "alice", kv_put("k", json!(2)))
        .await
        .expect("put 2")[0];

    assert_eq!(value_at(0), (0, None));
    assert_eq!(value_at(first), (first, Some(json!(1))));
    assert_eq!(value_at(second - 1), (second - 1, Some(json!(1))));
    assert_eq!(value_at(second), (second, Some(json!(2))));
    let live = read(&engine, |state| state.clone()).await;
    assert_eq!(state_at(engine.reader(), second).expect("now"), live);
    engine.shutdown().await;
}

/// The contention counts stay bounded however many resources are contended, and the
/// most contended keep their counts.
#[test]
fn contention_counts_stay_bounded_and_keep_the_hot_resources() {
    let mut counts = std::collections::HashMap::new();
    let hot = ["hot-1".to_owned(), "hot-2".to_owned()];
    for n in 0..50_000 {
        tally_contention(&mut counts, &[format!("cold-{n}")], 1_000);
        if n % 10 == 0 {
            tally_contention(&mut counts, &hot, 1_000);
        }
        assert!(counts.len() <= 1_000, "{} resources followed", counts.len());
    }
    assert_eq!((counts["hot-1"], counts["hot-2"]), (5_000, 5_000));
}

/// A time-travel read from the newest snapshot at or before its seq gives the state a
/// replay from seq 1 gives, at every seq: before the snapshot (none fits: the whole log),
/// from it with a branch forked after it, and, once a branch forks from before the
/// snapshot, from seq 1 again (only that replay passes the fork point).
#[tokio::test]
async fn state_at_from_a_snapshot_equals_a_replay_from_the_start_at_every_seq() {
    let (dir, engine) = start();
    for n in 0..4 {
        write(&engine, "alice", kv_put("k", json!(n)))
            .await
            .expect("put");
    }
    engine.snapshot().await.expect("a snapshot");
    let snapshot_head = head(&engine);
    let fork = |name: &str, at: Option<u64>| {
        WriteCommand::Coordination(CoordinationCommand::BranchCreate {
            name: name.into(),
            from: "main".into(),
            at,
        })
    };
    write(&engine, "alice", kv_put("k", json!("later")))
        .await
        .expect("put");
    write(&engine, "alice", fork("late", None))
        .await
        .expect("fork after the snapshot");
    write(&engine, "alice", kv_put("k", json!("last")))
        .await
        .expect("put");
    write(&engine, "alice", fork("early", Some(2)))
        .await
        .expect("fork from before the snapshot");
    let last = head(&engine);
    for at in 0..=last {
        let (from_snapshot, started_at) =
            past_state(engine.reader(), dir.path(), at).expect("the past rebuilds");
        let from_start = state_at(engine.reader(), at).expect("the past rebuilds from seq 1");
        assert_eq!(from_snapshot, from_start, "at {at}");
        let expected = (snapshot_head..last).contains(&at).then_some(snapshot_head);
        assert_eq!(started_at, expected, "where the rebuild of {at} started");
    }
    engine.shutdown().await;
}

/// A responder runs after the rules accepted the write, so its events stand: when it
/// fails (a broken invariant), the answer is `Internal`, never a refusal that would claim
/// nothing was written.
#[tokio::test]
async fn a_failing_responder_answers_internal_and_the_write_stands() {
    let (_dir, engine) = start();
    let mut failing = request("alice", append(vec![item("orders/1", json!({}), None)]));
    failing.respond = Box::new(|_, _| {
        Err(Refusal::Rule(swarmlog_projections::Rejection::new(
            Code::NotFound,
            "the entity just written is missing",
        )))
    });
    let answer = engine.write(failing).await;
    assert!(
        matches!(answer, Err(Refusal::Internal { .. })),
        "{answer:?}"
    );
    assert_eq!(head(&engine), 1, "the accepted write stands");
}

/// Every read of the stream index an HTTP stream read can make (each stream on each
/// branch, up to every seq, from a few seqs, whole and in pages of 2), as the log says it
/// should be: a branch's stream holds the events written on that branch only.
fn check_stream_reads(engine: &Engine) -> Vec<(u64, Vec<u64>)> {
    let log = events(engine);
    let head = log.len() as u64;
    let index = engine.stream_index();
    let mut reads = Vec::new();
    for branch in ["main", "side"] {
        for stream in ["s/1", "s/2", "branch/side", "nothing"] {
            for until in 0..=head + 1 {
                let expected: Vec<u64> = log
                    .iter()
                    .filter(|e| e.branch == branch && e.stream == stream && e.seq <= until)
                    .map(|e| e.seq)
                    .collect();
                let what = format!("({branch}, {stream}) until {until}");
                let count = index.count(branch, stream, until).expect("count");
                assert_eq!(count, expected.len() as u64, "{what}");
                for from in [0, 3, 6] {
                    let expected: Vec<u64> = expected
                        .iter()
                        .copied()
                        .filter(|seq| *seq >= from)
                        .collect();
                    let whole = index.read(branch, stream, from, until, None).expect("read");
                    assert_eq!((&whole.seqs, whole.next), (&expected, None), "{what}");
                    let page = index
                        .read(branch, stream, from, until, Some(2))
                        .expect("page");
                    assert_eq!(page.seqs, expected[..expected.len().min(2)], "{what}");
                    assert_eq!(page.next, expected.get(2).copied(), "{what}");
                    reads.push((count, page.seqs));
                }
            }
        }
    }
    reads
}

// Issue 11, "Memory and scale": full ranges of the stream index are files, only the tail is
// in memory. With ranges of 4 events, reads cross range boundaries everywhere; they are
// the log's answer before a restart, after one (files and tail reloaded), and after one
// without the index directory (every file rebuilt from the log).
#[tokio::test]
async fn stream_reads_are_the_same_across_ranges_restarts_and_rebuilds() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = || EngineConfig {
        stream_index_range_events: 4,
        ..EngineConfig::new(dir.path())
    };
    let engine = Engine::start(config()).expect("the engine starts");
    let streams = ["s/1", "s/2", "s/1"];
    for round in 0..4 {
        let items = (0..=round)
            .map(|n| item(streams[n % 3], json!(n), None))
            .collect();
        write(&engine, "alice", append(items))
            .await
            .expect("append");
    }
    let fork = WriteCommand::Coordination(CoordinationCommand::BranchCreate {
        name: "side".into(),
        from: "main".into(),
        at: Some(3),
    });
    write(&engine, "alice", fork).await.expect("fork");
    for branch in ["side", "main", "side"] {
        let mut on_branch = request("alice", append(vec![item("s/1", json!(branch), None)]));
        on_branch.context.branch = branch.into();
        engine.write(on_branch).await.expect("append on a branch");
    }
    let before = check_stream_reads(&engine);
    let versions = read(&engine, |state| {
        (
            state.stream_version("main", "s/1"),
            state.stream_version("side", "s/1"),
        )
    })
    .await;
    let index = engine.stream_index();
    let head = head(&engine);
    assert_eq!(
        versions.0,
        index.count("main", "s/1", head).expect("count"),
        "on main the state counts what the index holds"
    );
    assert_eq!(
        (versions.1, index.count("side", "s/1", head).expect("count")),
        (4, 2),
        "the branch's state counts what it inherited at seq 3, its stream only its own"
    );
    index.flush();
    assert_eq!(
        index.ranges(),
        (head as usize / 4, 0),
        "full ranges are files"
    );
    engine.shutdown().await;
    drop(engine);

    let engine = Engine::start(config()).expect("restarts");
    assert_eq!(check_stream_reads(&engine), before, "after a restart");
    engine.shutdown().await;
    drop(engine);

    std::fs::remove_dir_all(dir.path().join("streams")).expect("remove the index");
    let engine = Engine::start(config()).expect("restarts without an index");
    assert_eq!(engine.stream_index().ranges(), (head as usize / 4, 0));
    assert_eq!(check_stream_reads(&engine), before, "after a rebuild");
    engine.shutdown().await;
}

#[tokio::test]
async fn reads_take_the_copy_of_the_state_published_with_the_last_durable_group() {
    let (_dir, engine) = start();
    write(&engine, "a", kv_put("k", json!(1)))
        .await
        .expect("put");
    assert_eq!(kv(&engine, "k").await, Some(json!(1)));
    assert_eq!(
        read_paths(&engine),
        (0, 1, 1),
        "the first read goes to the engine, which publishes a copy of its durable state"
    );
    for _ in 0..3 {
        assert_eq!(kv(&engine, "k").await, Some(json!(1)));
    }
    assert_eq!(
        read_paths(&engine),
        (3, 1, 1),
        "the next reads take the copy, which is not made again"
    );

    // Whether a write's group carries a copy depends on how long the last copy took (the
    // copies are spaced), so the path of the next read is not fixed; its answer is.
    for value in [2, 3] {
        write(&engine, "a", kv_put("k", json!(value)))
            .await
            .expect("put");
        assert_eq!(
            kv(&engine, "k").await,
            Some(json!(value)),
            "the writer reads its write"
        );
        read_published(&engine, "k", &json!(value)).await;
    }

    // A heartbeat changes the state without an event, so no head tells it apart.
    let register = WriteCommand::Coordination(CoordinationCommand::AgentRegister {
        id: "w".into(),
        agent_type: "worker".into(),
        capabilities: Vec::new(),
        ttl_ms: Some(60_000),
        meta: None,
        by_admin: true,
    });
    write(&engine, "w", register).await.expect("register");
    read_published(&engine, "k", &json!(3)).await;
    // Later than the lease the registration gave.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let lease = engine
        .touch(|state, now_ms| {
            let main = state.branches.get_mut("main").expect("main exists");
            agents::heartbeat(main, "w", now_ms).expect("an active agent")
        })
        .await
        .expect("heartbeat");
    let read_lease = read(&engine, |state| {
        let main = state.branch("main").expect("main exists");
        main.coordination.agents["w"].lease_expires_at_ms
    })
    .await;
    assert_eq!(
        read_lease, lease,
        "a read after the heartbeat's answer sees it, from the engine or a later copy"
    );
    engine.shutdown().await;
    assert_eq!(
        engine.read(|state| state.head).await,
        Err(Refusal::ShuttingDown),
        "the shutdown withdrew it too"
    );
}

#[tokio::test]
async fn a_group_the_disk_refuses_is_never_visible_to_a_read() {
    let (_dir, engine) = start();
    write(&engine, "a", kv_put("k", json!(1)))
        .await
        .expect("put");
    assert_eq!(kv(&engine, "k").await, Some(json!(1)));
    let gate = &engine.shared.commit_gate;
    gate.close();
    let refused_put = {
        let engine = engine.clone();
        tokio::spawn(async move { write(&engine, "a", kv_put("k", json!(2))).await })
    };
    eventually("the commit thread holding the second put", || {
        gate.is_holding()
    })
    .await;

    // The engine has applied the second put; the disk does not have it. A read that
    // queued would wait for the held group, hence the timeout.
    let (published, _, _) = read_paths(&engine);
    let read = tokio::time::timeout(PATIENCE, kv(&engine, "k")).await;
    assert_eq!(read.ok(), Some(Some(json!(1))), "answered at once");
    assert_eq!(
        read_paths(&engine).0,
        published + 1,
        "served from the published state, without waiting for the disk"
    );
    // A heartbeat withdraws the published state, so the next read goes to the engine,
    // whose state holds the second put: that read waits for its group.
    let heartbeat = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.touch(|_, _| ()).await })
    };
    eventually("the heartbeat withdrawing the published state", || {
        let published = engine.shared.published.at_least(0);
        assert!(
            published.as_ref().is_none_or(|state| state.head == 1),
            "a copy holding the put in flight was published"
        );
        published.is_none()
    })
    .await;
    // Reads now go to the engine, which must not publish its state while the second put
    // is in flight: the second read would take it.
    let spawn_read = || {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .read(|state| {
                    state.branch("main").expect("main").coordination.kv["k"]
                        .value
                        .clone()
                })
                .await
        })
    };
    let first_read = spawn_read();
    eventually("the first read reaching the engine", || {
        read_paths(&engine).1 == 2
    })
    .await;
    let second_read = spawn_read();
    eventually("the second read", || {
        let (published_reads, engine_reads, _) = read_paths(&engine);
        published_reads > published + 1 || engine_reads == 3
    })
    .await;

    gate.open(true);
    let refused = refused_put.await.expect("the put's task");
    assert!(
        matches!(refused, Err(Refusal::InsufficientStorage { .. })),
        "{refused:?}"
    );
    let heartbeat = heartbeat.await.expect("the heartbeat's task");
    assert!(
        matches!(heartbeat, Ok(()) | Err(Refusal::InsufficientStorage { .. })),
        "{heartbeat:?}"
    );
    for read in [first_read, second_read] {
        match read.await.expect("the read's task") {
            Ok(value) => assert_eq!(value, json!(1), "a read never sees a refused group"),
            Err(refusal) => assert!(
                matches!(refusal, Refusal::InsufficientStorage { .. }),
                "{refusal:?}"
            ),
        }
    }
    assert_eq!(
        kv(&engine, "k").await,
        Some(json!(1)),
        "the state is the log's again"
    );
    read_published(&engine, "k", &json!(1)).await;

    write(&engine, "a", kv_put("k", json!(3)))
        .await
        .expect("the disk has room again");
    assert_eq!(kv(&engine, "k").await, Some(json!(3)));
    let puts: Vec<(u64, String)> = events(&engine)
        .iter()
        .map(|event| (event.seq, event.data.clone()))
        .collect();
    assert_eq!(puts.len(), 2, "the refused put is not in the log: {puts:?}");
    engine.shutdown().await;
}

/// Many writers and readers at once: each writer reads its own write once it is
/// answered, and no read shows a seq beyond the durable head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_writer_reads_its_answered_write_while_others_write() {
    const WRITERS: usize = 16;
    const WRITES: u64 = 25;
    let (_dir, engine) = start();
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let key = format!("k{writer}");
                for value in 0..WRITES {
                    write(&engine, "w", kv_put(&key, json!(value)))
                        .await
                        .expect("put");
                    assert_eq!(
                        kv(&engine, &key).await,
                        Some(json!(value)),
                        "writer {writer} reads its answered write"
                    );
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (engine, writing) = (engine.clone(), writing.clone());
            tokio::spawn(async move {
                let mut last = 0;
                while writing.load(Ordering::Relaxed) {
                    let seen = read(&engine, |state| state.head).await;
                    assert!(
                        seen <= head(&engine),
                        "a read showed a seq that is not durable"
                    );
                    assert!(seen >= last, "reads never go back in time");
                    last = seen;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("every writer read its writes");
    }
    writing.store(false, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("every read was durable and in order");
    }
    let (published, engine_reads, _) = read_paths(&engine);
    assert!(published + engine_reads > (WRITERS as u64) * WRITES);
    engine.shutdown().await;
}

/// A store that records the size of every group it is handed, then appends locally.
struct RecordingStore {
    local: crate::store::LocalStore,
    groups: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl crate::store::Store for RecordingStore {
    fn append(
        &mut self,
        groups: &[crate::store::GroupRecords<'_>],
    ) -> Result<(), crate::store::StoreError> {
        self.groups
            .lock()
            .expect("the recording lock")
            .extend(groups.iter().map(|group| group.records.len()));
        self.local.append(groups)
    }

    fn log(&self) -> &swarmlog_log::Log {
        self.local.log()
    }
}

#[tokio::test]
async fn groups_are_cut_at_the_stores_limit_but_never_inside_a_request() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
    let setup = super::StoreSetup {
        open: {
            let groups = groups.clone();
            Box::new(move |log| {
                Box::new(RecordingStore {
                    local: crate::store::LocalStore::new(log),
                    groups,
                })
            })
        },
        group_events_max: 3,
        writer: true,
    };
    let engine =
        Engine::start_with(EngineConfig::new(dir.path()), setup).expect("the engine starts");
    // Concurrent writes share groups; the five events of one request stay together.
    let five = (0..5)
        .map(|n| item("five", json!({"n": n}), None))
        .collect();
    let mut writes = vec![write(&engine, "a", append(five))];
    for n in 0..6 {
        writes.push(write(
            &engine,
            "a",
            append(vec![item("one", json!({"n": n}), None)]),
        ));
    }
    for written in futures::future::join_all(writes).await {
        written.expect("every write is answered");
    }
    // Seven locks run out at once: their expiry events are cut into groups of at most 3.
    for n in 0..7 {
        write(&engine, "holder", acquire("holder", &format!("r{n}"), 100))
            .await
            .expect("the lock is taken");
    }
    eventually("the seven locks run out", || {
        events(&engine)
            .iter()
            .filter(|event| event.event_type == "lock.expired")
            .count()
            == 7
    })
    .await;
    let sizes = groups.lock().expect("the recording lock").clone();
    assert!(
        sizes.contains(&5),
        "the request of five is one group: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|size| *size <= 3 || *size == 5),
        "no group but the request's grows past the limit: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>() as u64, engine.audit_head().seq);
    engine.shutdown().await;
}
