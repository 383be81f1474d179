//! Benchmarks of the engine without HTTP: durable appends of 256-byte custom events from
//! many concurrent writers, so that group commit folds them into few fsyncs; replay; and
//! the copy of the state the engine publishes for reads.
//! Run: `cargo bench --bench engine`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use swarmlog_projections::work::{TaskSpec, WorkCommand};
use swarmlog_projections::AppendRequest;
use swarmlog_server::engine::{AppendItem, WriteCommand, WriteContext, WriteRequest};
use swarmlog_server::routes::events::appended;
use swarmlog_server::{Engine, EngineConfig};

/// A write on `main` by the actor `bench`, answered with its events.
fn bench_write(command: WriteCommand) -> WriteRequest {
    WriteRequest::new(
        WriteContext {
            branch: "main".into(),
            actor: "bench".into(),
            ..WriteContext::default()
        },
        command,
        Box::new(|_, written| Ok(appended(written))),
    )
}

fn request(client: usize) -> WriteRequest {
    WriteRequest::new(
        WriteContext {
            branch: "main".into(),
            actor: format!("bench-{client}"),
            ..WriteContext::default()
        },
        WriteCommand::Append(vec![AppendItem {
            request: AppendRequest {
                event_type: "bench.event".into(),
                stream: format!("bench/{client}"),
                data: json!({"d": "z".repeat(256)}).to_string(),
                expected_version: None,
            },
            session: None,
            correlation: None,
            meta: None,
        }]),
        Box::new(|_, written| Ok(appended(written))),
    )
}

fn concurrent_appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::start(EngineConfig::new(dir.path())).expect("engine");
    let mut group = c.benchmark_group("engine_append_256b_fsync");
    group.measurement_time(Duration::from_secs(5));
    for clients in [1usize, 32] {
        let per_client = 64usize;
        group.throughput(Throughput::Elements((clients * per_client) as u64));
        group.bench_function(format!("clients_{clients}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let mut tasks = Vec::with_capacity(clients);
                    for client in 0..clients {
                        let engine = engine.clone();
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..per_client {
                                engine.write(request(client)).await.expect("append");
                            }
                        }));
                    }
                    for task in tasks {
                        task.await.expect("task");
                    }
                });
            });
        });
    }
    group.finish();
}

/// Fills a data directory with `events` 256-byte events (no fsync: this is set-up).
fn fill(dir: &std::path::Path, events: usize, runtime: &tokio::runtime::Runtime) {
    let config = EngineConfig {
        sync: swarmlog_log::SyncPolicy::Never,
        ..EngineConfig::new(dir)
    };
    let engine = Engine::start(config).expect("engine");
    runtime.block_on(async {
        for chunk in 0..events / 1000 {
            let items = (0..1000)
                .map(|index| AppendItem {
                    request: AppendRequest {
                        event_type: "bench.event".into(),
                        stream: format!("bench/{}", (chunk * 1000 + index) % 64),
                        data: json!({"d": "z".repeat(256)}).to_string(),
                        expected_version: None,
                    },
                    session: None,
                    correlation: None,
                    meta: None,
                })
                .collect();
            let request = bench_write(WriteCommand::Append(items));
            engine.write(request).await.expect("append");
        }
        engine.shutdown().await;
    });
}

/// Replay speed: the offline audit (frame CRCs plus the SHA-256 hash chain) and a full
/// recovery (decode, chain check, fold into the state), from the page cache.
fn replay(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let events = 200_000usize;
    fill(dir.path(), events, &runtime);
    let _ = std::fs::remove_dir_all(dir.path().join("snapshots"));
    let log_dir = swarmlog_server::engine::log_dir(dir.path());
    let bytes = swarmlog_log::verify(&log_dir, &mut |_| {})
        .expect("clean log")
        .bytes;
    let mut group = c.benchmark_group("replay_200k_events");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("verify_crc_and_hash_chain", |b| {
        b.iter(|| swarmlog_server::audit::verify(&log_dir, &mut |_, _| {}).expect("clean log"));
    });
    group.bench_function("verify_crc_only", |b| {
        b.iter(|| swarmlog_log::verify(&log_dir, &mut |_| {}).expect("clean log"));
    });
    group.throughput(Throughput::Elements(events as u64));
    group.bench_function("recover_full_replay", |b| {
        b.iter(|| {
            let engine = Engine::start(EngineConfig::new(dir.path())).expect("recovers");
            runtime.block_on(engine.shutdown());
            let _ = std::fs::remove_dir_all(dir.path().join("snapshots"));
        });
    });
    group.finish();
}

/// What publishing the state for reads costs the engine (`Engine::read`): one copy of the
/// state per durable point while reads come, and the drop of the copy it replaces, with
/// 10,000 tasks on `main` (each with a title and 100 bytes of parameters).
fn state_publication(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EngineConfig {
        sync: swarmlog_log::SyncPolicy::Never,
        ..EngineConfig::new(dir.path())
    };
    let engine = Engine::start(config).expect("engine");
    let tasks = 10_000usize;
    let state = runtime.block_on(async {
        for chunk in 0..tasks / 1000 {
            let specs = (0..1000)
                .map(|index| TaskSpec {
                    id: Some(format!("T-{}", chunk * 1000 + index)),
                    task_type: "build".into(),
                    title: Some(format!("build part {index} of chunk {chunk}")),
                    parameters: Some(json!({"input": "p".repeat(100)})),
                    ..TaskSpec::default()
                })
                .collect();
            let request = bench_write(WriteCommand::Work(WorkCommand::TaskCreate { tasks: specs }));
            engine.write(request).await.expect("create tasks");
        }
        let state = engine.read(|state| state.clone()).await.expect("read");
        engine.shutdown().await;
        state
    });
    let mut group = c.benchmark_group("state_publication_10k_tasks");
    group.bench_function("clone", |b| b.iter_with_large_drop(|| state.clone()));
    group.bench_function("clone_and_drop", |b| b.iter(|| state.clone()));
    group.finish();
}

criterion_group!(benches, concurrent_appends, replay, state_publication);
criterion_main!(benches);
