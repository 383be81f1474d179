//! Injected I/O errors: EIO and ENOSPC at every storage operation of a recovery, of
//! appends and of segment rolls, the way SQLite's I/O error tests fail the Nth operation
//! (issue #9, the "injected I/O errors" suite).
//!
//! For every kind of operation (`sim::Operation`), both faults, and every N until the
//! scenario no longer reaches an Nth operation of that kind, one run fails exactly that
//! operation, the process living on, and checks:
//! - the failure is reported: `open` or the append that met it returns an error; the only
//!   failures the log absorbs are the documented ones (ENOSPC while preallocating, which
//!   shrinks the step, and ENOSPC while writing back a rebuilt index, kept in memory);
//! - a full disk met before a batch is written is `NoSpace` and leaves the log usable;
//!   any other failure poisons it, and every later append is `Poisoned`;
//! - after a failed sync, of a file or of the directory, the log touches storage no more:
//!   the fsync is never retried (the "fsyncgate" rule);
//! - readers never see a batch whose append failed, whole or in part;
//! - after a crash of every kind, reopening recovers every acknowledged batch, and at
//!   most the failed batch besides, whole.

use swarmlog_log::sim::{CrashMode, Fault, Operation, SimRng, SimStorage};
use swarmlog_log::{Error, Log, LogOptions, Record, Seq, Storage, StorageFile};

use crate::common::{read_all, Batch};

/// Small segments so that the scenario rolls; preallocation on, as the server runs.
fn options() -> LogOptions {
    LogOptions {
        segment_size_bytes_max: 1024,
        preallocate: true,
        ..LogOptions::default()
    }
}

/// A log that gives recovery work to do: three sealed segments, one of them without its
/// index file, a leftover temporary file, and a torn batch at the end of the newest
/// segment (a write that failed half-way). Returns the disk and the acknowledged records.
fn base() -> (SimStorage, Vec<Record>) {
    let storage = SimStorage::new();
    let mut log = Log::open_with(storage.clone(), options()).expect("open");
    let mut rng = SimRng::new(9);
    let mut acknowledged = Vec::new();
    while segments(&storage) < 4 {
        let batch = Batch::random(&mut rng, 3, 200);
        let range = batch.append(&mut log).expect("append");
        acknowledged.extend(batch.at(range.start().get()));
    }
    storage.fail_nth(Operation::Write, 0, Fault::Eio);
    let torn = Batch::random(&mut rng, 2, 100);
    assert!(
        torn.append(&mut log).is_err(),
        "the base's last batch is torn"
    );
    drop(log);
    let base = storage.crash(CrashMode::ProcessCrash, 0);
    let index = base
        .list()
        .expect("list")
        .into_iter()
        .find(|name| name.ends_with(".idx"))
        .expect("a sealed segment has an index");
    base.delete_file(&index);
    let leftover = base.create("00000000000000009999.seg.tmp").expect("create");
    leftover.write_at(b"leftover", 0).expect("write");
    base.sync_dir().expect("sync dir");
    let report = Log::open_with(base.crash(CrashMode::ProcessCrash, 0), options())
        .expect("the base opens")
        .recovery()
        .clone();
    assert!(report.truncated_bytes > 0, "a torn tail: {report:?}");
    assert_eq!(report.indexes_rebuilt, 1, "{report:?}");
    assert_eq!(report.temporary_files_removed, 1, "{report:?}");
    (base, acknowledged)
}

fn segments(storage: &SimStorage) -> usize {
    storage
        .list()
        .expect("list")
        .iter()
        .filter(|name| name.ends_with(".seg"))
        .count()
}

/// What one run knows: what was acknowledged, and the batch whose failed append poisoned
/// the log (it may survive a crash, whole).
struct Run {
    acknowledged: Vec<Record>,
    in_flight: Vec<Record>,
}

/// The batches every run appends after opening: enough for several rolls.
fn batches() -> Vec<Batch> {
    let mut rng = SimRng::new(77);
    (0..12).map(|_| Batch::random(&mut rng, 4, 150)).collect()
}

/// Runs the scenario with `operation` number `nth` failing with `fault`; returns whether the
/// failure fired (false once `nth` is past the scenario's last operation of that kind).
fn run(
    base: &SimStorage,
    base_acknowledged: &[Record],
    operation: Operation,
    nth: u64,
    fault: Fault,
) -> bool {
    let what = format!("{fault:?} at {operation:?} #{nth}");
    let storage = base.crash(CrashMode::ProcessCrash, 0);
    storage.fail_nth(operation, nth, fault);
    let mut run = Run {
        acknowledged: base_acknowledged.to_vec(),
        in_flight: Vec::new(),
    };
    match Log::open_with(storage.clone(), options()) {
        Err(error) => {
            assert_eq!(
                storage.faults_fired(),
                1,
                "{what}: open failed on its own: {error}"
            );
            check_no_retry_after_sync(&storage, operation, &what);
        }
        Ok(mut log) => {
            if storage.faults_fired() == 1 {
                let absorbed = fault == Fault::Enospc
                    && (operation == Operation::Resize || log.recovery().indexes_unwritten == 1);
                assert!(absorbed, "{what}: open swallowed the failure");
            }
            assert_eq!(read_all(&log.reader()).expect("read"), run.acknowledged);
            append_all(&storage, &mut log, &mut run, operation, fault, &what);
        }
    }
    let fired = storage.faults_fired() == 1;
    for mode in CrashMode::ALL {
        for seed in 0..3 {
            check_recovered(
                &storage.crash(mode, seed),
                &run,
                &format!("{what}, {mode:?} {seed}"),
            );
        }
    }
    fired
}

/// Appends every batch, checking each outcome against the failure.
fn append_all(
    storage: &SimStorage,
    log: &mut Log<SimStorage>,
    run: &mut Run,
    operation: Operation,
    fault: Fault,
    what: &str,
) {
    for batch in batches() {
        let fired_before = storage.faults_fired();
        let first = log.next_seq().get();
        let outcome = batch.append(log);
        let fired_now = storage.faults_fired() > fired_before;
        match outcome {
            Ok(_) => {
                if fired_now {
                    assert!(
                        operation == Operation::Resize && fault == Fault::Enospc,
                        "{what}: the append swallowed the failure"
                    );
                }
                run.acknowledged.extend(batch.at(first));
            }
            Err(Error::NoSpace { .. }) => {
                assert!(fired_now && fault == Fault::Enospc, "{what}: NoSpace");
                assert!(
                    !matches!(operation, Operation::Sync | Operation::SyncDir),
                    "{what}: a failed sync must poison"
                );
            }
            Err(Error::Poisoned) => panic!("{what}: poisoned without a failure"),
            Err(error) => {
                assert!(fired_now, "{what}: failed on its own: {error}");
                check_no_retry_after_sync(storage, operation, what);
                run.in_flight = batch.at(first);
                let mutations = storage.mutations();
                for _ in 0..3 {
                    assert!(
                        matches!(batch.append(log), Err(Error::Poisoned)),
                        "{what}: a poisoned log refuses appends"
                    );
                }
                assert_eq!(
                    storage.mutations(),
                    mutations,
                    "{what}: poisoned, yet wrote"
                );
            }
        }
        assert_eq!(
            read_all(&log.reader()).expect("read"),
            run.acknowledged,
            "{what}: readers see exactly the acknowledged batches"
        );
        assert_eq!(log.head(), run.acknowledged.last().map(|record| record.seq));
        if !run.in_flight.is_empty() {
            return;
        }
    }
}

/// After a failed sync nothing at all was attempted: no retry, no cleanup that could lie.
fn check_no_retry_after_sync(storage: &SimStorage, operation: Operation, what: &str) {
    if matches!(operation, Operation::Sync | Operation::SyncDir) {
        assert_eq!(
            storage.last_fault_at(),
            Some(storage.mutations()),
            "{what}: storage was touched after the failed sync"
        );
    }
}

/// A reopened disk holds every acknowledged record and at most the in-flight batch, whole.
fn check_recovered(disk: &SimStorage, run: &Run, what: &str) {
    let log = Log::open_with(disk.clone(), options())
        .unwrap_or_else(|error| panic!("{what}: does not reopen: {error}"));
    let records = read_all(&log.reader()).expect("a recovered log reads back");
    let acknowledged = run.acknowledged.len();
    assert!(
        records.len() >= acknowledged && records[..acknowledged] == run.acknowledged[..],
        "{what}: lost or changed acknowledged records ({} recovered, {acknowledged} acknowledged)",
        records.len()
    );
    let extra = &records[acknowledged..];
    assert!(
        extra.is_empty() || extra == &run.in_flight[..],
        "{what}: recovered {} records that are not the whole failed batch",
        extra.len()
    );
    assert_eq!(
        log.next_seq(),
        Seq(records.last().map_or(1, |record| record.seq.get() + 1))
    );
}

#[test]
fn every_operation_of_recovery_appends_and_rolls_fails_cleanly() {
    let (base, acknowledged) = base();
    let mut points = 0;
    for operation in Operation::ALL {
        for fault in Fault::ALL {
            let mut nth = 0;
            while run(&base, &acknowledged, operation, nth, fault) {
                nth += 1;
                points += 1;
            }
            assert!(nth > 0, "the scenario never reaches a {operation:?}");
        }
    }
    eprintln!("{points} failure points");
    assert!(points > 100, "only {points} failure points");
}
