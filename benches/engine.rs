//! Benchmarks of the engine without HTTP: durable appends of 256-byte custom events from
//! many concurrent writers, so that group commit folds them into few fsyncs.
//! Run: `cargo bench --bench engine`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use swarmlog_projections::AppendRequest;
use swarmlog_server::engine::{AppendItem, WriteCommand, WriteContext, WriteRequest};
use swarmlog_server::routes::events::appended;
use swarmlog_server::{Engine, EngineConfig};

fn request(client: usize) -> WriteRequest {
    WriteRequest::new(
        WriteContext { branch: "main".into(), actor: format!("bench-{client}"), ..WriteContext::default() },
        WriteCommand::Append(vec![AppendItem {
            request: AppendRequest {
                event_type: "bench.event".into(),
                stream: format!("bench/{client}"),
                data: json!({"d": "z".repeat(256)}),
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

criterion_group!(benches, concurrent_appends);
criterion_main!(benches);
