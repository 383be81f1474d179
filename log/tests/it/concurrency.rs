//! Readers running while the writer appends and rolls segments, on the real file system
//! (so both read paths run: maps of sealed segments, positional reads of the active one).
//! Every reader must always see a gap-free prefix of what was appended, never more than
//! the head, and never a record that changes later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use swarmlog_log::sim::SimRng;
use swarmlog_log::{Log, LogOptions, LogReader, RecordInput, Seq, SyncPolicy};

/// The payload of `seq`: its seq, then filler derived from it, of a seq-dependent length.
fn payload(seq: u64) -> Vec<u8> {
    let mut bytes = seq.to_le_bytes().to_vec();
    bytes.extend((0..(seq * 37) % 700).map(|number| (seq + number) as u8));
    bytes
}

fn check_record(record: &swarmlog_log::Record) {
    assert_eq!(
        record.payload,
        payload(record.seq.get()),
        "seq {}",
        record.seq
    );
    assert_eq!(record.timestamp_ms, record.seq.get() as i64);
}

/// Follows the log in chunks from seq 1 until `done` and caught up.
fn follow(reader: LogReader, done: Arc<AtomicBool>, seed: u64) -> u64 {
    let mut rng = SimRng::new(seed);
    let mut cursor = 1u64;
    loop {
        let finished = done.load(Ordering::Acquire);
        let head = reader.head().map_or(0, Seq::get);
        let records = reader
            .read(
                Seq(cursor),
                rng.between(1, 50) as usize,
                rng.between(0, 20_000) as usize,
            )
            .expect("read");
        for record in &records {
            assert_eq!(record.seq.get(), cursor, "gap-free");
            check_record(record);
            cursor += 1;
        }
        assert!(
            cursor <= reader.head().map_or(0, Seq::get) + 1,
            "never past the head"
        );
        if head > 0 {
            // Random access into the durable part, through the sparse index.
            let seq = rng.between(1, head);
            let record = &reader.read(Seq(seq), 1, 0).expect("read one")[0];
            assert_eq!(record.seq.get(), seq);
            check_record(record);
        }
        if finished && records.is_empty() && cursor > head {
            return cursor - 1;
        }
        if records.is_empty() {
            thread::yield_now();
        }
    }
}

#[test]
fn readers_see_a_gap_free_prefix_while_the_writer_appends_and_rolls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LogOptions {
        segment_size_bytes_max: 16 * 1024,
        sync: SyncPolicy::Never,
        preallocate: true,
        ..LogOptions::default()
    };
    let mut log = Log::open(dir.path(), options).expect("open");
    let done = Arc::new(AtomicBool::new(false));
    let followers: Vec<_> = (0..2)
        .map(|number| {
            let reader = log.reader();
            let done = done.clone();
            thread::spawn(move || follow(reader, done, number))
        })
        .collect();
    let iterating = {
        let reader = log.reader();
        let done = done.clone();
        thread::spawn(move || {
            let mut iterations = 0;
            while !done.load(Ordering::Acquire) {
                let head = reader.head().map_or(0, Seq::get);
                let mut expected = 1;
                for record in reader.iter_from(Seq::FIRST) {
                    let record = record.expect("iterate");
                    assert_eq!(record.seq.get(), expected);
                    check_record(&record);
                    expected += 1;
                }
                assert!(
                    expected > head,
                    "the iterator reaches the head at its start"
                );
                iterations += 1;
            }
            iterations
        })
    };

    let mut rng = SimRng::new(99);
    let mut next = 1u64;
    while next <= 4000 {
        let count = rng.between(1, 8);
        let payloads: Vec<Vec<u8>> = (next..next + count).map(payload).collect();
        let inputs: Vec<RecordInput<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(number, payload)| RecordInput {
                timestamp_ms: (next + number as u64) as i64,
                payload,
            })
            .collect();
        let range = log.append_batch(&inputs).expect("append");
        assert_eq!(range.start().get(), next);
        next += count;
    }
    done.store(true, Ordering::Release);
    let last = next - 1;
    for follower in followers {
        assert_eq!(follower.join().expect("follower"), last);
    }
    assert!(iterating.join().expect("iterator") > 0);
    let segments = std::fs::read_dir(dir.path())
        .expect("list")
        .filter(|entry| {
            entry
                .as_ref()
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count();
    assert!(
        segments > 20,
        "the writer rolled while readers read ({segments} segments)"
    );
}
