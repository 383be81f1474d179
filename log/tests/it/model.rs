//! A property test against an in-memory model on the real file system: random sequences
//! of appends, reads, clean reopens, and crashes that cut the newest segment at any byte.
//! After every reopen the log must equal the model's acknowledged prefix: every batch that
//! lies wholly before the cut, nothing after it.
//!
//! The model lays batches out itself (32-byte segment header, 32-byte record header plus
//! payload, roll before a batch that would overflow a non-empty segment), so a change to the
//! layout rules shows up here as well as in the unit tests.

use proptest::prelude::*;
use swarmlog_log::{Log, LogOptions, Record, Seq, SyncPolicy};

use crate::common::read_all;

const SEGMENT_HEADER_BYTES: u64 = 32;
const RECORD_HEADER_BYTES: u64 = 32;

#[derive(Debug, Clone)]
enum Op {
    /// Append a batch with these payload sizes.
    Append(Vec<usize>),
    /// Read from a seq (as a fraction of the head), with limits.
    Read {
        from_per_mille: u64,
        max_records: usize,
        max_bytes: usize,
    },
    /// Close and reopen cleanly.
    Reopen,
    /// Crash: cut the newest segment at a byte (as a fraction of its data), by truncating
    /// the file or by zeroing the rest (as a preallocated file would read), then reopen.
    Crash {
        at_per_mille: u64,
        zero_instead_of_truncate: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(prop_oneof![8 => 0usize..200, 1 => 200usize..1500], 1..6).prop_map(Op::Append),
        2 => (0u64..=1000, 1usize..20, 0usize..2000).prop_map(|(from_per_mille, max_records, max_bytes)| Op::Read {
            from_per_mille,
            max_records,
            max_bytes,
        }),
        1 => Just(Op::Reopen),
        2 => (0u64..=1000, any::<bool>()).prop_map(|(at_per_mille, zero_instead_of_truncate)| Op::Crash {
            at_per_mille,
            zero_instead_of_truncate,
        }),
    ]
}

/// One appended batch as the model sees it: its records and where they lie.
#[derive(Debug, Clone)]
struct PlacedBatch {
    records: Vec<Record>,
    segment_first_seq: u64,
    end: u64,
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<PlacedBatch>,
    /// The newest segment: its first seq and the end of its last batch.
    newest: (u64, u64),
}

impl Model {
    fn new() -> Model {
        Model {
            batches: Vec::new(),
            newest: (1, SEGMENT_HEADER_BYTES),
        }
    }

    fn records(&self) -> Vec<Record> {
        self.batches
            .iter()
            .flat_map(|batch| batch.records.clone())
            .collect()
    }

    fn next_seq(&self) -> u64 {
        self.batches.last().map_or(1, |batch| {
            batch.records.last().expect("non-empty").seq.get() + 1
        })
    }

    fn append(&mut self, records: Vec<Record>, segment_size_bytes_max: u64) {
        let bytes: u64 = records
            .iter()
            .map(|record| RECORD_HEADER_BYTES + record.payload.len() as u64)
            .sum();
        let (mut first_seq, mut end) = self.newest;
        if end > SEGMENT_HEADER_BYTES && end + bytes > segment_size_bytes_max {
            first_seq = records[0].seq.get();
            end = SEGMENT_HEADER_BYTES;
        }
        end += bytes;
        self.newest = (first_seq, end);
        self.batches.push(PlacedBatch {
            records,
            segment_first_seq: first_seq,
            end,
        });
    }

    /// Forgets the batches of the newest segment that end after `cut`.
    fn cut(&mut self, cut: u64) {
        let newest_first_seq = self.newest.0;
        self.batches
            .retain(|batch| batch.segment_first_seq != newest_first_seq || batch.end <= cut);
        let end = self
            .batches
            .last()
            .filter(|batch| batch.segment_first_seq == newest_first_seq)
            .map_or(SEGMENT_HEADER_BYTES, |batch| batch.end);
        self.newest = (newest_first_seq, end);
    }
}

fn run(options: LogOptions, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = Some(Log::open(dir.path(), options).expect("open"));
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Append(sizes) => {
                let writer = log.as_mut().expect("open");
                let first = model.next_seq();
                let records: Vec<Record> = sizes
                    .iter()
                    .enumerate()
                    .map(|(number, size)| {
                        let seq = first + number as u64;
                        Record {
                            seq: Seq(seq),
                            timestamp_ms: seq as i64 * 7,
                            payload: (0..*size).map(|byte| (seq as usize ^ byte) as u8).collect(),
                        }
                    })
                    .collect();
                let inputs: Vec<swarmlog_log::RecordInput<'_>> = records
                    .iter()
                    .map(|record| swarmlog_log::RecordInput {
                        timestamp_ms: record.timestamp_ms,
                        payload: &record.payload,
                    })
                    .collect();
                let range = writer.append_batch(&inputs).expect("append");
                prop_assert_eq!(range, Seq(first)..=Seq(first + sizes.len() as u64 - 1));
                model.append(records, options.segment_size_bytes_max);
            }
            Op::Read {
                from_per_mille,
                max_records,
                max_bytes,
            } => {
                let expected_all = model.records();
                let from = (expected_all.len() as u64 + 1) * from_per_mille / 1000;
                let read = log
                    .as_ref()
                    .expect("open")
                    .reader()
                    .read(Seq(from), max_records, max_bytes)
                    .expect("read");
                let start = from.max(1) as usize - 1;
                let mut expected = Vec::new();
                let mut bytes = 0;
                for record in expected_all.iter().skip(start).take(max_records) {
                    if !expected.is_empty() && bytes + record.payload.len() > max_bytes {
                        break;
                    }
                    bytes += record.payload.len();
                    expected.push(record.clone());
                }
                prop_assert_eq!(read, expected);
            }
            Op::Reopen => {
                drop(log.take());
                let reopened = Log::open(dir.path(), options).expect("reopen");
                prop_assert_eq!(reopened.recovery().truncated_bytes, 0);
                log = Some(reopened);
            }
            Op::Crash {
                at_per_mille,
                zero_instead_of_truncate,
            } => {
                drop(log.take());
                let (newest_first_seq, newest_end) = model.newest;
                let path = dir.path().join(format!("{newest_first_seq:020}.seg"));
                let cut = SEGMENT_HEADER_BYTES
                    + (newest_end - SEGMENT_HEADER_BYTES) * at_per_mille / 1000;
                let mut bytes = std::fs::read(&path).expect("newest segment");
                prop_assert!(bytes.len() as u64 >= newest_end);
                // Zeroing bytes that already were zeros (the end of a header, a payload
                // ending in zeros) changes nothing, so the model's cut moves past them.
                let mut intact_until = cut;
                if zero_instead_of_truncate {
                    while intact_until < newest_end && bytes[intact_until as usize] == 0 {
                        intact_until += 1;
                    }
                    bytes[cut as usize..].fill(0);
                } else {
                    bytes.truncate(cut as usize);
                }
                std::fs::write(&path, &bytes).expect("write");
                model.cut(intact_until);
                let reopened = Log::open(dir.path(), options).expect("reopen after a crash");
                log = Some(reopened);
            }
        }
        let current = log.as_ref().expect("open");
        let expected = model.records();
        prop_assert_eq!(
            read_all(&current.reader()).expect("read all"),
            expected.clone()
        );
        prop_assert_eq!(current.head(), expected.last().map(|record| record.seq));
        prop_assert_eq!(current.next_seq(), Seq(model.next_seq()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_log_equals_the_models_acknowledged_prefix(
        segment_size_bytes_max in 1024u64..8192,
        preallocate in any::<bool>(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let options = LogOptions {
            segment_size_bytes_max,
            sync: SyncPolicy::Never,
            preallocate,
            ..LogOptions::default()
        };
        run(options, ops)?;
    }
}
