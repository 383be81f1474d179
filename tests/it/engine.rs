//! The engine without HTTP, as the embedded CLI uses it: while the commit thread syncs one
//! group the engine decides the next, so its state runs ahead of the disk. Nobody may see
//! that lead: not a writer's answer, not a read, not a subscriber.

use serde_json::{json, Value};
use swarmlog_projections::AppendRequest;
use swarmlog_server::engine::{AppendItem, WriteCommand, WriteContext, WriteRequest};
use swarmlog_server::routes::events::appended;
use swarmlog_server::{Engine, EngineConfig};

use crate::support::data_dir;

fn append(client: usize, index: usize) -> WriteRequest {
    WriteRequest::new(
        WriteContext {
            branch: "main".into(),
            actor: format!("writer-{client}"),
            ..WriteContext::default()
        },
        WriteCommand::Append(vec![AppendItem {
            request: AppendRequest {
                event_type: "load.tick".into(),
                stream: format!("client/{client}"),
                data: json!({"index": index}).to_string(),
                expected_version: None,
            },
            session: None,
            correlation: None,
            meta: None,
        }]),
        Box::new(|_, written| Ok(appended(written))),
    )
}

/// The durable head: what the log lets readers see, which moves only after an fsync.
fn durable(engine: &Engine) -> u64 {
    engine.reader().head().map_or(0, |seq| seq.get())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_reads_and_subscribers_see_only_durable_events() {
    const WRITERS: usize = 8;
    const WRITES: usize = 150;
    let dir = data_dir();
    let engine = Engine::start(EngineConfig::new(dir.path())).expect("engine");
    let mut subscription = engine.hub().subscribe();
    let watcher = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut seen = 0u64;
            while seen < (WRITERS * WRITES) as u64 {
                let batch = subscription.recv().await.expect("no lag at this volume");
                for committed in batch.iter() {
                    assert_eq!(committed.envelope.seq, seen + 1, "no gap, no duplicate");
                    seen = committed.envelope.seq;
                }
                assert!(seen <= durable(&engine), "published before durable");
            }
        })
    };
    let mut tasks = Vec::new();
    for client in 0..WRITERS {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for index in 0..WRITES {
                let response = engine.write(append(client, index)).await.expect("append");
                let body: Value = serde_json::from_str(&response.body).expect("JSON");
                let seq = body["seq"].as_u64().expect("seq");
                assert!(seq <= durable(&engine), "answered before durable");
            }
        }));
    }
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut reads = 0;
                let mut last = 0;
                while last < (WRITERS * WRITES) as u64 {
                    let head = engine.read(|state| state.head).await.expect("read");
                    assert!(head <= durable(&engine), "read state that is not durable");
                    assert!(head >= last, "reads never go back in time");
                    last = head;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    for reader in readers {
        assert!(reader.await.expect("reader") > 0);
    }
    watcher.await.expect("watcher");
    assert_eq!(durable(&engine), (WRITERS * WRITES) as u64);
    engine.shutdown().await;
}

/// Background snapshots taken while writers keep the engine ahead of the disk describe
/// one durable point: after a restart from them, every stream lists each of its events
/// exactly once, as the log has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_taken_under_load_restore_every_stream_exactly() {
    const WRITERS: usize = 6;
    const WRITES: usize = 120;
    let dir = data_dir();
    let config = || EngineConfig {
        snapshot_interval_events: 50,
        ..EngineConfig::new(dir.path())
    };
    let engine = Engine::start(config()).expect("engine");
    let tasks: Vec<_> = (0..WRITERS)
        .map(|client| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for index in 0..WRITES {
                    engine.write(append(client, index)).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    engine.shutdown().await;
    drop(engine);
    // The shutdown snapshot would hide the background ones: keep only those.
    let snapshots = dir.path().join("snapshots");
    let mut files: Vec<_> = std::fs::read_dir(&snapshots)
        .expect("snapshots were written")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    files.sort();
    let newest = files.pop().expect("a shutdown snapshot");
    assert!(!files.is_empty(), "background snapshots were written too");
    std::fs::remove_file(newest).expect("remove the shutdown snapshot");

    let engine = Engine::start(config()).expect("restarts from a background snapshot");
    for client in 0..WRITERS {
        let stream = format!("client/{client}");
        let expected: Vec<u64> = engine
            .reader()
            .iter_from(swarmlog_log::Seq::FIRST)
            .map(|record| record.expect("read"))
            .filter_map(|record| {
                let envelope = swarmlog_projections::Envelope::decode(
                    record.seq.get(),
                    record.timestamp_ms,
                    &record.payload,
                )
                .expect("decode");
                (envelope.stream == stream).then_some(envelope.seq)
            })
            .collect();
        assert_eq!(expected.len(), WRITES);
        let indexed = engine
            .stream_seqs("main", &stream)
            .expect("the index reads");
        assert_eq!(indexed, expected, "{stream}");
    }
    engine.shutdown().await;
}
