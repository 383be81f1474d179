//! Benchmarks of the log alone: durable batched appends of 256-byte records (one
//! fdatasync per batch) and replay throughput. Run: `cargo bench --bench log`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use swarmlog_log::{Log, LogOptions, RecordInput, Seq, SyncPolicy};

const PAYLOAD_BYTES: usize = 256;

fn open(dir: &std::path::Path, sync: SyncPolicy) -> Log {
    Log::open(
        dir,
        LogOptions {
            sync,
            ..LogOptions::default()
        },
    )
    .expect("open the log")
}

fn append(c: &mut Criterion) {
    let payload = vec![b'x'; PAYLOAD_BYTES];
    let mut group = c.benchmark_group("append_256b");
    group.measurement_time(Duration::from_secs(5));
    for (name, sync) in [("fsync", SyncPolicy::Always), ("nosync", SyncPolicy::Never)] {
        for batch in [1usize, 32, 256] {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut log = open(dir.path(), sync);
            let inputs: Vec<RecordInput<'_>> = (0..batch)
                .map(|_| RecordInput {
                    timestamp_ms: 0,
                    payload: &payload,
                })
                .collect();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("{name}/batch_{batch}"), |b| {
                b.iter(|| log.append_batch(&inputs).expect("append"));
            });
        }
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let payload = vec![b'y'; PAYLOAD_BYTES];
    let dir = tempfile::tempdir().expect("temp dir");
    let records = 200_000usize;
    {
        let mut log = open(dir.path(), SyncPolicy::Never);
        let inputs: Vec<RecordInput<'_>> = (0..1000)
            .map(|_| RecordInput {
                timestamp_ms: 0,
                payload: &payload,
            })
            .collect();
        for _ in 0..records / 1000 {
            log.append_batch(&inputs).expect("append");
        }
    }
    let log = open(dir.path(), SyncPolicy::Never);
    let reader = log.reader();
    let mut group = c.benchmark_group("replay_256b");
    group.throughput(Throughput::Bytes((records * PAYLOAD_BYTES) as u64));
    group.sample_size(10);
    group.bench_function("iter_from_start", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut count = 0usize;
                for record in reader.iter_from(Seq::FIRST) {
                    count += record.expect("record").payload.len();
                }
                assert_eq!(count, records * PAYLOAD_BYTES);
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, append, replay);
criterion_main!(benches);
