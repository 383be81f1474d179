//! Simulated crashes and power loss through `SimStorage`: the log is killed at random
//! operations (during appends, rolls and recovery itself), the unsynced writes are kept,
//! dropped, torn or reordered, and the reopened log must hold every acknowledged record
//! intact, nothing that was never written, no partial batch, and no gap.
//!
//! `cargo test` runs 1,000 seeded runs in about a second. For a longer hunt run, e.g.,
//! `SWARMLOG_SIM_RUNS=200000 cargo test -p swarmlog-log --release power_loss`. A failing run
//! prints its seed; `SWARMLOG_SIM_SEED=<seed>` replays exactly that run.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use swarmlog_log::sim::{CrashMode, SimRng, SimStorage};
use swarmlog_log::{verify_with, Error, Log, LogOptions, Record, Seq, SyncPolicy};

use crate::common::{read_all, Batch};

/// Seeded runs in a plain `cargo test`.
const RUNS_DEFAULT: u64 = 1000;

/// What the test knows: the records the log acknowledged, and the batch whose append was
/// cut short by the crash (it may or may not have reached the disk, but only whole).
#[derive(Default)]
struct Model {
    acknowledged: Vec<Record>,
    in_flight: Vec<Record>,
}

impl Model {
    /// Checks a reopened log against the model and folds in the in-flight batch if it
    /// survived.
    fn check_recovered(&mut self, log: &Log<SimStorage>, verified_last: Option<Seq>) {
        let records = read_all(&log.reader()).expect("a recovered log reads back");
        let acknowledged = self.acknowledged.len();
        assert!(
            records.len() >= acknowledged,
            "lost acknowledged records: {} recovered, {acknowledged} acknowledged",
            records.len()
        );
        assert!(
            records[..acknowledged] == self.acknowledged[..],
            "an acknowledged record changed"
        );
        let extra = &records[acknowledged..];
        assert!(
            extra.is_empty() || extra == &self.in_flight[..],
            "recovered {} records beyond the acknowledged ones that are not the whole in-flight batch of {}",
            extra.len(),
            self.in_flight.len()
        );
        self.acknowledged.extend_from_slice(extra);
        self.in_flight.clear();
        let head = self.acknowledged.last().map(|record| record.seq);
        assert_eq!(log.head(), head);
        assert_eq!(log.next_seq(), Seq(head.map_or(1, |seq| seq.get() + 1)));
        assert_eq!(verified_last, head, "verify predicted what recovery kept");
    }
}

/// One run: a few lives of a process that opens the log, appends until it dies at a random
/// operation (or stops), and loses power in a random way.
fn run(seed: u64) {
    let mut rng = SimRng::new(seed);
    let options = LogOptions {
        segment_size_bytes_max: rng.between(1024, 4096),
        sync: SyncPolicy::Always,
        preallocate: rng.coin(),
        ..LogOptions::default()
    };
    let mut storage = SimStorage::new();
    let mut model = Model::default();
    let lives = rng.between(2, 4);
    for life in 0..=lives {
        let verified = verify_with(&storage, &mut |_| {});
        let verified_last = match verified {
            Ok(report) => report.last,
            Err(error) => panic!("verify after a crash reported {error}"),
        };
        // Open, and maybe die during recovery; then the power goes and we try again.
        let mut log = loop {
            if rng.below(4) == 0 {
                storage.fail_after_mutations(rng.below(8));
            }
            match Log::open_with(storage.clone(), options) {
                Ok(log) => break log,
                Err(error) => {
                    assert!(storage.is_dead(), "open failed without a crash: {error}");
                    assert!(
                        !error.is_corrupt(),
                        "a crash during recovery looks like corruption: {error}"
                    );
                    storage = storage.crash(CrashMode::ALL[rng.below(4) as usize], rng.next_u64());
                }
            }
        };
        model.check_recovered(&log, verified_last);
        if life == lives {
            break;
        }
        if !storage.is_dead() && rng.below(8) != 0 {
            storage.fail_after_mutations(rng.below(60));
        }
        for _ in 0..rng.between(1, 25) {
            // Now and then a batch larger than a whole segment.
            let payload_bytes_max = if rng.below(20) == 0 { 3000 } else { 300 };
            let batch = Batch::random(&mut rng, 5, payload_bytes_max);
            let first = log.next_seq().get();
            match batch.append(&mut log) {
                Ok(range) => {
                    assert_eq!(range.start().get(), first);
                    model.acknowledged.extend(batch.at(first));
                    assert_eq!(
                        log.reader().head(),
                        model.acknowledged.last().map(|record| record.seq)
                    );
                }
                Err(error) => {
                    assert!(storage.is_dead(), "append failed without a crash: {error}");
                    assert!(matches!(error, Error::Io { .. }), "{error}");
                    model.in_flight = batch.at(first);
                    break;
                }
            }
        }
        drop(log);
        storage = storage.crash(CrashMode::ALL[rng.below(4) as usize], rng.next_u64());
    }
}

/// Runs `run` for each seed, printing the seed of a failure so it can be replayed.
fn run_seeds(seeds: impl Iterator<Item = u64>, run: impl Fn(u64)) {
    for seed in seeds {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(seed))) {
            eprintln!("power-loss run failed; replay it with SWARMLOG_SIM_SEED={seed}");
            resume_unwind(panic);
        }
    }
}

fn seeds() -> Box<dyn Iterator<Item = u64>> {
    if let Ok(seed) = std::env::var("SWARMLOG_SIM_SEED") {
        let seed = seed.parse().expect("SWARMLOG_SIM_SEED is a number");
        return Box::new(std::iter::once(seed));
    }
    let runs = std::env::var("SWARMLOG_SIM_RUNS")
        .map(|runs| runs.parse().expect("SWARMLOG_SIM_RUNS is a number"))
        .unwrap_or(RUNS_DEFAULT);
    Box::new(0..runs)
}

#[test]
fn acknowledged_batches_survive_power_loss_at_random_points() {
    run_seeds(seeds(), run);
}

/// A fixed workload (appends that roll several segments), killed at every single storage
/// operation in turn, with every kind of crash.
#[test]
fn acknowledged_batches_survive_a_crash_at_every_operation() {
    let options = LogOptions {
        segment_size_bytes_max: 1024,
        preallocate: true,
        ..LogOptions::default()
    };
    let workload: Vec<Batch> = {
        let mut rng = SimRng::new(7);
        (0..14).map(|_| Batch::random(&mut rng, 4, 200)).collect()
    };
    let operations = {
        let storage = SimStorage::new();
        let mut log = Log::open_with(storage.clone(), options).expect("open");
        let before = storage.mutations();
        for batch in &workload {
            batch.append(&mut log).expect("append");
        }
        storage.mutations() - before
    };
    assert!(
        operations > 40,
        "the workload rolls segments ({operations} operations)"
    );
    for crash_at in 0..=operations {
        for (mode_number, mode) in CrashMode::ALL.into_iter().enumerate() {
            for seed in 0..3 {
                let storage = SimStorage::new();
                let mut log = Log::open_with(storage.clone(), options).expect("open");
                storage.fail_after_mutations(crash_at);
                let mut model = Model::default();
                for batch in &workload {
                    let first = log.next_seq().get();
                    match batch.append(&mut log) {
                        Ok(_) => model.acknowledged.extend(batch.at(first)),
                        Err(_) => {
                            model.in_flight = batch.at(first);
                            break;
                        }
                    }
                }
                drop(log);
                let crashed = storage.crash(mode, seed * 4 + mode_number as u64);
                let verified = verify_with(&crashed, &mut |_| {}).unwrap_or_else(|error| {
                    panic!("crash at {crash_at} ({mode:?}): verify reported {error}")
                });
                let log = Log::open_with(crashed, options).unwrap_or_else(|error| {
                    panic!("crash at {crash_at} ({mode:?}): open failed: {error}")
                });
                model.check_recovered(&log, verified.last);
            }
        }
    }
}

/// With `SyncPolicy::Never` a process crash (the machine keeps running) still loses
/// nothing that was acknowledged: the page cache holds it.
#[test]
fn without_syncs_a_process_crash_loses_nothing() {
    run_seeds(0..200, |seed| {
        let mut rng = SimRng::new(seed);
        let options = LogOptions {
            segment_size_bytes_max: rng.between(1024, 4096),
            sync: SyncPolicy::Never,
            preallocate: rng.coin(),
            ..LogOptions::default()
        };
        let mut storage = SimStorage::new();
        let mut model = Model::default();
        for _ in 0..3 {
            let mut log = Log::open_with(storage.clone(), options).expect("open");
            model.check_recovered(&log, log.head());
            for _ in 0..rng.between(1, 20) {
                let batch = Batch::random(&mut rng, 5, 300);
                let first = log.next_seq().get();
                batch.append(&mut log).expect("append");
                model.acknowledged.extend(batch.at(first));
            }
            drop(log);
            storage = storage.crash(CrashMode::ProcessCrash, rng.next_u64());
        }
    });
}
