//! Logs written by earlier format versions, checked in under `tests/fixtures/`: they must
//! still open and read back, and today's code must still write them byte for byte (so a
//! format change without a version bump fails here).
//!
//! To write a fixture again (only when deliberately adding a new format version):
//! `SWARMLOG_WRITE_FIXTURES=1 cargo test -p swarmlog-log --test it fixtures`.

use std::path::{Path, PathBuf};

use swarmlog_log::{verify, Log, LogOptions, Record, RecordInput, Seq};

use crate::common::read_all;

/// Junk appended to the newest segment, as a crash in the middle of a write leaves it.
const TORN_TAIL: &[u8] = b"torn: a batch that never finished";

fn options() -> LogOptions {
    LogOptions {
        segment_size_bytes_max: 1024,
        preallocate: false,
        ..LogOptions::default()
    }
}

/// The records of the version 1 fixture: 30 records in batches of one to three.
fn records_v1() -> Vec<Record> {
    (1..=30u64)
        .map(|seq| Record {
            seq: Seq(seq),
            timestamp_ms: 1_700_000_000_000 + seq as i64,
            payload: format!("record {seq} ")
                .repeat(seq as usize % 7 + 1)
                .into_bytes(),
        })
        .collect()
}

/// Writes the version 1 fixture into `dir` with today's code.
fn write_v1(dir: &Path) {
    let mut log = Log::open(dir, options()).expect("open");
    let records = records_v1();
    let mut rest = &records[..];
    let mut batch_length = 1;
    while !rest.is_empty() {
        let (batch, after) = rest.split_at(batch_length.min(rest.len()));
        let inputs: Vec<RecordInput<'_>> = batch
            .iter()
            .map(|record| RecordInput {
                timestamp_ms: record.timestamp_ms,
                payload: &record.payload,
            })
            .collect();
        log.append_batch(&inputs).expect("append");
        rest = after;
        batch_length = batch_length % 3 + 1;
    }
    drop(log);
    let newest = newest_segment(dir);
    let mut bytes = std::fs::read(&newest).expect("read");
    bytes.extend_from_slice(TORN_TAIL);
    std::fs::write(&newest, bytes).expect("write");
    std::fs::remove_file(dir.join("LOCK")).expect("the lock file is not part of the fixture");
}

fn newest_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

/// The fixture's files, sorted, with their contents.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            let entry = entry.expect("entry");
            let name = entry.file_name().into_string().expect("utf-8 name");
            (name, std::fs::read(entry.path()).expect("read"))
        })
        .filter(|(name, _)| name != "LOCK")
        .collect();
    files.sort();
    files
}

fn fixture_dir(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}"))
}

#[test]
fn a_version_1_log_still_opens_and_reads_back() {
    let fixture = fixture_dir(1);
    if std::env::var_os("SWARMLOG_WRITE_FIXTURES").is_some() {
        let _ = std::fs::remove_dir_all(&fixture);
        write_v1(&fixture);
    }
    let copy = tempfile::tempdir().expect("temp dir");
    for (name, bytes) in files(&fixture) {
        std::fs::write(copy.path().join(name), bytes).expect("copy");
    }
    let report = verify(copy.path(), &mut |_| {}).expect("verify");
    assert_eq!(report.torn_tail_bytes, TORN_TAIL.len() as u64);
    assert_eq!(report.last, Some(Seq(30)));
    assert!(report.segments >= 3, "{report:?}");
    let log = Log::open(copy.path(), options()).expect("open");
    assert_eq!(log.recovery().truncated_bytes, TORN_TAIL.len() as u64);
    assert_eq!(read_all(&log.reader()).expect("read"), records_v1());
}

#[test]
fn todays_code_still_writes_version_1_byte_for_byte() {
    let fresh = tempfile::tempdir().expect("temp dir");
    write_v1(fresh.path());
    assert_eq!(files(fresh.path()), files(&fixture_dir(1)));
}
