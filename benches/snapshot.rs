//! Snapshot size and speed, JSON against postcard, for a state of 100,000 tasks (a fifth
//! of them claimed, half of those completed) and 100,000 state cells, built by writing
//! the commands through the engine. Prints the sizes, then measures encoding and decoding
//! the body both ways, the SHA-256 of each body, and `snapshot::load_newest` (read, check
//! and decode the file the engine wrote, as a start does).
//! Run: `cargo bench --bench snapshot`.
//!
//! It uses only what the last JSON-writing version also has, so that the same file
//! measures that version (`benches/README.md`, "Snapshots in postcard"); there postcard
//! cannot decode the state, and the postcard decode is skipped.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use sha2::{Digest, Sha256};
use swarmlog_projections::coordination::CoordinationCommand;
use swarmlog_projections::work::{AssignSpec, CompleteSpec, TaskSpec, WorkCommand};
use swarmlog_server::engine::{WriteCommand, WriteContext, WriteRequest};
use swarmlog_server::routes::events::appended_minimal;
use swarmlog_server::snapshot::{self, Snapshot};
use swarmlog_server::{Engine, EngineConfig};

// The allocator of the server binary, which decoding a snapshot leans on.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TASKS: usize = 100_000;
const CLAIMED: usize = 20_000;
const COMPLETED: usize = 10_000;
const CELLS: usize = 100_000;
const AGENTS: usize = 100;
const TASKS_PER_CREATE: usize = 500;

async fn run(engine: &Engine, actor: &str, command: WriteCommand) {
    let request = WriteRequest::new(
        WriteContext {
            branch: "main".into(),
            actor: actor.into(),
            ..WriteContext::default()
        },
        command,
        Box::new(|_, written| Ok(appended_minimal(written))),
    );
    engine.write(request).await.expect("the write is accepted");
}

fn agent(n: usize) -> String {
    format!("agent-{}", n % AGENTS)
}

/// Task `n`: every second one has a title, every third needs `rust`, and every fourth
/// depends on the one before it.
fn task(n: usize) -> TaskSpec {
    TaskSpec {
        id: Some(format!("T-{n}")),
        task_type: ["build", "test", "lint", "deploy"][n % 4].into(),
        title: n.is_multiple_of(2).then(|| format!("Work item {n}")),
        priority: Some((n % 10 + 1) as i64),
        depends_on: (n.is_multiple_of(4) && n > 0).then(|| vec![format!("T-{}", n - 1)]),
        capabilities: n.is_multiple_of(3).then(|| vec!["rust".into()]),
        parameters: Some(
            json!({"file": format!("src/module_{n}.rs"), "line": n % 997, "flags": ["-O", "--check"]}),
        ),
        ..TaskSpec::default()
    }
}

/// Fills `dir` through the engine (no fsync: this is set-up) and writes a snapshot.
fn fill(dir: &Path, runtime: &tokio::runtime::Runtime) {
    let config = EngineConfig {
        sync: swarmlog_log::SyncPolicy::Never,
        snapshot_interval_events: 1 << 40,
        ..EngineConfig::new(dir)
    };
    let engine = Engine::start(config).expect("engine");
    runtime.block_on(async {
        for n in 0..AGENTS {
            let command = CoordinationCommand::AgentRegister {
                id: agent(n),
                agent_type: "worker".into(),
                capabilities: vec!["rust".into()],
                ttl_ms: None,
                meta: Some(json!({"model": format!("m-{}", n % 4)})),
                by_admin: true,
            };
            run(&engine, "admin", WriteCommand::Coordination(command)).await;
        }
        for first in (0..TASKS).step_by(TASKS_PER_CREATE) {
            let tasks = (first..first + TASKS_PER_CREATE).map(task).collect();
            let command = WorkCommand::TaskCreate { tasks };
            run(&engine, "planner", WriteCommand::Work(command)).await;
        }
        // Tasks without a dependency are pending: assign some, complete half of those.
        let claimable = (0..TASKS).filter(|n| !n.is_multiple_of(4)).take(CLAIMED);
        for (index, n) in claimable.enumerate() {
            let assign = WorkCommand::TaskAssign {
                task: format!("T-{n}"),
                spec: AssignSpec {
                    agent: Some(agent(n)),
                    strategy: None,
                },
            };
            run(&engine, "planner", WriteCommand::Work(assign)).await;
            if index < COMPLETED {
                let complete = WorkCommand::TaskComplete {
                    task: format!("T-{n}"),
                    spec: CompleteSpec {
                        agent: agent(n),
                        result: Some(json!({"ok": true, "lines": n % 1000, "note": "done"})),
                    },
                };
                run(&engine, &agent(n), WriteCommand::Work(complete)).await;
            }
        }
        for n in 0..CELLS {
            let command = CoordinationCommand::StateSet {
                key: format!("cell/{n}"),
                value: json!({"n": n, "owner": agent(n), "tags": ["a", "b"], "ratio": n as f64 / 7.0}),
            };
            run(&engine, &agent(n), WriteCommand::Coordination(command)).await;
        }
        engine.snapshot().await.expect("a snapshot");
        engine.shutdown().await;
    });
}

fn snapshots(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    fill(dir.path(), &runtime);
    let loaded = || snapshot::load_newest(dir.path(), &mut |_, _| true).expect("a snapshot");
    let snapshot = loaded();
    let file_bytes: u64 = std::fs::read_dir(snapshot::snapshot_dir(dir.path()))
        .expect("snapshots")
        .map(|entry| entry.expect("entry").metadata().expect("metadata").len())
        .max()
        .expect("a snapshot file");
    let json_body = serde_json::to_vec(&snapshot).expect("JSON");
    let postcard_body = postcard::to_allocvec(&snapshot).expect("postcard");
    let postcard_decodes = postcard::from_bytes::<Snapshot>(&postcard_body).is_ok_and(|decoded| {
        decoded.state == snapshot.state && decoded.idempotency == snapshot.idempotency
    });
    eprintln!(
        "snapshot at head {} (format {}): file {file_bytes} bytes; body as JSON {} bytes, as postcard {} bytes; postcard round-trips: {postcard_decodes}",
        snapshot.state.head,
        snapshot.format,
        json_body.len(),
        postcard_body.len(),
    );

    let mut group = c.benchmark_group("snapshot_100k_tasks_100k_cells");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("json_encode", |b| {
        b.iter(|| serde_json::to_vec(&snapshot).expect("JSON"))
    });
    group.bench_function("json_decode", |b| {
        b.iter(|| serde_json::from_slice::<Snapshot>(&json_body).expect("JSON"))
    });
    group.bench_function("postcard_encode", |b| {
        b.iter(|| postcard::to_allocvec(&snapshot).expect("postcard"))
    });
    if postcard_decodes {
        group.bench_function("postcard_decode", |b| {
            b.iter(|| postcard::from_bytes::<Snapshot>(&postcard_body).expect("postcard"))
        });
    }
    group.bench_function("sha256_json_body", |b| {
        b.iter(|| Sha256::digest(&json_body))
    });
    group.bench_function("sha256_postcard_body", |b| {
        b.iter(|| Sha256::digest(&postcard_body))
    });
    group.bench_function("load_newest", |b| b.iter(loaded));
    group.finish();
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
