//! The log on the real file system: directory creation, preallocation, the cross-process
//! lock, and `verify` on a directory, as the server and the CLI use them.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use swarmlog_log::{
    verify, verify_each, Error, LockMode, Log, LogOptions, RecordInput, Seq, VerifyProgress,
};

fn options() -> LogOptions {
    LogOptions {
        segment_size_bytes_max: 64 * 1024,
        ..LogOptions::default()
    }
}

/// A log whose segments end right after their records, so that bytes a test appends to a
/// file by hand come straight after the last record (a torn tail).
fn open_unpreallocated(dir: &std::path::Path) -> Log {
    Log::open(
        dir,
        LogOptions {
            preallocate: false,
            ..options()
        },
    )
    .expect("open")
}

fn append(log: &mut Log, count: u64) {
    for _ in 0..count {
        let seq = log.next_seq().get();
        let payload = vec![seq as u8; 100 + (seq % 50) as usize];
        log.append_batch(&[RecordInput {
            timestamp_ms: seq as i64,
            payload: &payload,
        }])
        .expect("append");
    }
}

#[test]
fn open_creates_the_directory_and_preallocates_the_active_segment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_dir = dir.path().join("data/log");
    let mut log = Log::open(&log_dir, options()).expect("open");
    assert!(log.recovery().created);
    append(&mut log, 3);
    let segment = log_dir.join("00000000000000000001.seg");
    assert_eq!(
        std::fs::metadata(&segment).expect("segment").len(),
        64 * 1024
    );
    assert!(log_dir.join("LOCK").exists());
    drop(log);
    let log = Log::open(&log_dir, options()).expect("reopen");
    assert_eq!(log.head(), Some(Seq(3)));
    assert_eq!(log.recovery().truncated_bytes, 0);
}

#[test]
fn a_second_open_is_locked_out_or_waits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Log::open(dir.path(), options()).expect("open");
    let error = Log::open(dir.path(), options()).unwrap_err();
    match &error {
        Error::Locked { path } => assert!(path.ends_with("LOCK"), "{path}"),
        other => panic!("expected Locked, got {other}"),
    }
    let (opened, waiting) = mpsc::channel();
    let path = dir.path().to_path_buf();
    let waiter = thread::spawn(move || {
        let log = Log::open(
            &path,
            LogOptions {
                lock: LockMode::Wait,
                ..options()
            },
        )
        .expect("open after waiting");
        opened.send(()).expect("send");
        log.head()
    });
    assert!(
        waiting.recv_timeout(Duration::from_millis(200)).is_err(),
        "the waiter waits"
    );
    drop(log);
    waiting
        .recv_timeout(Duration::from_secs(10))
        .expect("the waiter gets the lock");
    assert_eq!(waiter.join().expect("waiter"), None);
}

#[test]
fn verify_checks_every_segment_and_reports_progress() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = Log::open(dir.path(), options()).expect("open");
    append(&mut log, 2000);
    drop(log);
    let mut updates: Vec<VerifyProgress> = Vec::new();
    let report = verify(dir.path(), &mut |progress| updates.push(progress)).expect("verify");
    assert_eq!(report.records, 2000);
    assert_eq!(report.first, Some(Seq(1)));
    assert_eq!(report.last, Some(Seq(2000)));
    assert!(report.segments > 3, "{report:?}");
    assert_eq!(report.torn_tail_bytes, 0);
    assert_eq!(report.index_files_checked, report.segments - 1);
    let total = updates[0].bytes_total;
    assert!(
        updates
            .windows(2)
            .all(|pair| pair[0].bytes_done <= pair[1].bytes_done),
        "progress only moves forward"
    );
    assert!(updates
        .iter()
        .all(|update| update.bytes_total == total && update.bytes_done <= total));
    assert_eq!(updates.last().map(|update| update.bytes_done), Some(total));
}

#[test]
fn verify_reports_a_torn_tail_that_open_then_cuts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = open_unpreallocated(dir.path());
    append(&mut log, 10);
    drop(log);
    let segment = dir.path().join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes.extend_from_slice(b"half of a record that never finished");
    std::fs::write(&segment, &bytes).expect("write");
    let report = verify(dir.path(), &mut |_| {}).expect("a torn tail is not corruption");
    assert_eq!(report.torn_tail_bytes, 36);
    assert_eq!(report.last, Some(Seq(10)));
    let log = Log::open(dir.path(), options()).expect("open");
    assert_eq!(log.recovery().truncated_bytes, 36);
    assert_eq!(
        log.recovery().truncated_segment.as_deref(),
        Some("00000000000000000001.seg")
    );
    assert_eq!(log.head(), Some(Seq(10)));
}

#[test]
fn verify_each_visits_every_record_in_order_across_segments_but_not_a_torn_tail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = open_unpreallocated(dir.path());
    append(&mut log, 1500);
    let expected = log
        .reader()
        .iter_from(Seq::FIRST)
        .collect::<Result<Vec<_>, _>>()
        .expect("read back");
    drop(log);
    let newest = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .max()
        .expect("a segment");
    let mut bytes = std::fs::read(&newest).expect("read");
    bytes.extend_from_slice(b"a torn write");
    std::fs::write(&newest, &bytes).expect("write");

    let mut visited = Vec::new();
    let report = verify_each(dir.path(), &mut |_| {}, &mut |record| {
        visited.push((record.seq, record.timestamp_ms, record.payload.to_vec()));
    })
    .expect("verify");
    assert!(report.segments > 3, "{report:?}");
    assert_eq!(report.torn_tail_bytes, 12);
    assert_eq!(visited.len(), expected.len());
    for (record, (seq, timestamp_ms, payload)) in expected.iter().zip(&visited) {
        assert_eq!(record.seq, *seq);
        assert_eq!(record.timestamp_ms, *timestamp_ms);
        assert_eq!(&record.payload, payload);
    }
}

#[test]
fn verify_names_corruption_and_fails_on_a_missing_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = Log::open(dir.path(), options()).expect("open");
    append(&mut log, 2000);
    drop(log);
    let segment = dir.path().join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes[5000] ^= 0x40;
    std::fs::write(&segment, &bytes).expect("write");
    match verify(dir.path(), &mut |_| {}) {
        Err(Error::Corrupt {
            segment,
            position,
            reason,
        }) => {
            assert_eq!(segment, "00000000000000000001.seg");
            assert!(position <= 5000 && position > 4000, "{position}");
            assert!(reason.contains("crc"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(matches!(
        verify(&dir.path().join("missing"), &mut |_| {}),
        Err(Error::Io { .. })
    ));
}
