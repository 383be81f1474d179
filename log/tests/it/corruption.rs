//! Exhaustive corruption: every single-bit flip of a small log, checked on the read path
//! (open, then read everything) and by `verify`. Damage must come back as
//! `Error::Corrupt` and never as data; the only damage recovery may quietly repair is what
//! a crash could also have produced, a torn last batch of the newest segment.

use swarmlog_log::sim::{CrashMode, SimStorage};
use swarmlog_log::{verify_with, Error, Log, LogOptions, Record, Storage};

use crate::common::{read_all, Batch};

const SEALED: &str = "00000000000000000001.seg";

fn options() -> LogOptions {
    LogOptions {
        segment_size_bytes_max: 1024,
        preallocate: true,
        ..LogOptions::default()
    }
}

/// Writes `batches`; returns the disk and the records.
fn build(batches: &[Batch]) -> (SimStorage, Vec<Record>) {
    let storage = SimStorage::new();
    let mut log = Log::open_with(storage.clone(), options()).expect("open");
    let mut records = Vec::new();
    for batch in batches {
        let first = log.next_seq().get();
        batch.append(&mut log).expect("append");
        records.extend(batch.at(first));
    }
    (storage, records)
}

fn batch(payloads: &[&[u8]]) -> Batch {
    Batch {
        records: payloads
            .iter()
            .enumerate()
            .map(|(number, payload)| (1_700_000_000_000 + number as i64, payload.to_vec()))
            .collect(),
    }
}

/// A copy of `storage` with one bit of `name` flipped.
fn flipped(storage: &SimStorage, name: &str, bit: usize) -> SimStorage {
    let copy = storage.crash(CrashMode::ProcessCrash, 0);
    let mut bytes = copy.read_file(name).expect("file exists");
    bytes[bit / 8] ^= 1 << (bit % 8);
    copy.write_file(name, &bytes);
    copy
}

/// Opens and reads everything: the records read before the first error, and the error.
fn open_and_read(storage: SimStorage) -> (Vec<Record>, Option<Error>) {
    let log = match Log::open_with(storage, options()) {
        Ok(log) => log,
        Err(error) => return (Vec::new(), Some(error)),
    };
    let mut records = Vec::new();
    for record in log.reader().iter_from(swarmlog_log::Seq::FIRST) {
        match record {
            Ok(record) => records.push(record),
            Err(error) => return (records, Some(error)),
        }
    }
    (records, None)
}

#[test]
fn every_bit_flip_in_a_sealed_segment_is_detected_by_reads_and_by_verify() {
    // Two small batches, then one too big for the rest of the 1 KiB segment, so the first
    // segment is sealed with its index written and the second is active.
    let (storage, records) = build(&[
        batch(&[b"alpha", b"", b"gamma gamma"]),
        batch(&[b"delta"]),
        batch(&[&[7u8; 900]]),
    ]);
    let sealed_bytes = storage.read_file(SEALED).expect("sealed segment").len();
    assert!(
        sealed_bytes < 300,
        "a small sealed segment ({sealed_bytes} bytes)"
    );
    assert!(
        storage.read_file("00000000000000000001.idx").is_some(),
        "sealed with an index"
    );
    assert!(verify_with(&storage, &mut |_| {}).is_ok());
    for bit in 0..sealed_bytes * 8 {
        let damaged = flipped(&storage, SEALED, bit);
        match verify_with(&damaged, &mut |_| {}) {
            Err(Error::Corrupt { segment, .. }) => assert_eq!(segment, SEALED, "bit {bit}"),
            other => panic!("verify missed the flip of bit {bit}: {other:?}"),
        }
        let (read, error) = open_and_read(damaged);
        match error {
            Some(Error::Corrupt { segment, .. }) => assert_eq!(segment, SEALED, "bit {bit}"),
            other => panic!("the read path missed the flip of bit {bit}: {other:?}"),
        }
        assert!(
            read[..] == records[..read.len()],
            "bit {bit}: a damaged record was returned as data"
        );
    }
}

#[test]
fn a_flipped_bit_in_the_active_segment_before_later_batches_fails_open() {
    let (storage, records) = build(&[
        batch(&[b"one", b"two"]),
        batch(&[b"three"]),
        batch(&[b"four", b"five", b"six"]),
        batch(&[b"seven"]),
    ]);
    let newest = "00000000000000000001.seg";
    let segment = storage.read_file(newest).expect("active segment");
    // Frame size is 32 header bytes plus the payload; the last batch starts after the
    // header and the first six records.
    let last_batch_start = 32
        + records[..6]
            .iter()
            .map(|record| 32 + record.payload.len())
            .sum::<usize>();
    let data_end = last_batch_start + 32 + records[6].payload.len();
    for bit in 32 * 8..last_batch_start * 8 {
        let damaged = flipped(&storage, newest, bit);
        assert!(
            verify_with(&damaged, &mut |_| {}).is_err_and(|error| error.is_corrupt()),
            "verify missed bit {bit}"
        );
        match Log::open_with(damaged, options()) {
            Err(Error::Corrupt {
                segment,
                position,
                reason,
            }) => {
                assert_eq!(segment, newest);
                assert!(
                    (32..last_batch_start as u64).contains(&position),
                    "bit {bit}: position {position}"
                );
                assert!(reason.contains("follows"), "bit {bit}: {reason}");
            }
            other => panic!(
                "bit {bit}: expected corruption, got {:?}",
                other.map(|log| log.head())
            ),
        }
    }
    // The last batch could be a torn write of an unacknowledged batch, so damage there is
    // cut (and reported), never returned; beyond it, a flipped zero is junk after the end.
    for bit in last_batch_start * 8..segment.len() * 8 {
        let damaged = flipped(&storage, newest, bit);
        let log =
            Log::open_with(damaged, options()).unwrap_or_else(|error| panic!("bit {bit}: {error}"));
        let expected = if bit < data_end * 8 {
            &records[..6]
        } else {
            &records[..]
        };
        assert_eq!(
            read_all(&log.reader()).expect("reads"),
            expected,
            "bit {bit}"
        );
        assert!(
            log.recovery().truncated_bytes > 0,
            "bit {bit}: the repair is reported"
        );
    }
}

#[test]
fn damage_in_the_header_of_any_segment_fails_open() {
    let (storage, _) = build(&[batch(&[&[1u8; 600]]), batch(&[&[2u8; 600]])]);
    let names: Vec<String> = storage
        .list()
        .expect("list")
        .into_iter()
        .filter(|name| name.ends_with(".seg"))
        .collect();
    assert_eq!(names.len(), 2);
    for name in &names {
        for bit in 0..32 * 8 {
            let damaged = flipped(&storage, name, bit);
            assert!(
                Log::open_with(damaged.clone(), options()).is_err_and(|error| error.is_corrupt()),
                "{name} bit {bit}"
            );
            assert!(
                verify_with(&damaged, &mut |_| {}).is_err_and(|error| error.is_corrupt()),
                "{name} bit {bit}"
            );
        }
    }
}
