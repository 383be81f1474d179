//! Offline verification: every record of every segment, and every index file.
//!
//! `verify` applies the same rules as recovery (it shares the listing checks and the
//! segment scan) but reads everything and changes nothing. So it fails with `Corrupt`
//! wherever opening or reading the log would (and, with forged checksums, in two places
//! reads cannot see: see `FORMAT.md`), and it reports a torn tail of the newest segment
//! (what a crash normally leaves, and what the next open cuts) instead of failing.
//! It reads the newest segment with positional reads rather than a map, so a server
//! appending to it at the same time cannot crash the check; the result is then only a
//! snapshot, which is why `verify` is meant to run offline.

use std::path::Path;

use crate::error::Error;
use crate::files::{self, Listing};
use crate::format::{
    decode_record, index_name, read_frame_header, Frame, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::index::{IndexFile, INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES};
use crate::recovery::{check_continuity, check_last_record};
use crate::scan::{scan, Role};
use crate::storage::{Access, FsStorage, Storage, StorageFile};
use crate::{RecordRef, Seq};

/// Where an index file stores the last seq of its segment (`FORMAT.md`).
const INDEX_LAST_SEQ_POSITION: u64 = 24;

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Records in complete batches (what opening the log would keep).
    pub records: u64,
    /// Bytes of valid segment data (headers and complete batches).
    pub bytes: u64,
    /// The first seq, `None` for an empty log.
    pub first: Option<Seq>,
    /// The last seq that opening the log would keep.
    pub last: Option<Seq>,
    /// Bytes of a torn tail of the newest segment that opening the log would cut.
    pub torn_tail_bytes: u64,
    /// Index files checked against their segments.
    pub index_files_checked: usize,
    /// Index files that are missing or unusable (opening the log rebuilds them).
    pub index_files_rebuildable: usize,
}

/// How far `verify` has got, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Segment bytes checked so far.
    pub bytes_done: u64,
    /// Segment bytes in the log (including preallocated space).
    pub bytes_total: u64,
}

/// Checks the log in `dir` without changing it; see the module documentation.
pub fn verify(dir: &Path, progress: &mut dyn FnMut(VerifyProgress)) -> Result<VerifyReport, Error> {
    let storage = FsStorage::open(dir).map_err(|source| {
        Error::io(
            format!("cannot open the log directory {}", dir.display()),
            source,
        )
    })?;
    verify_with(&storage, progress)
}

/// `verify` that also hands every valid record, in seq order, to `visit` (records of a
/// torn tail are not visited: opening the log would cut them). Lets a caller check what
/// the log cannot, such as a hash chain over the payloads, in the same pass.
pub fn verify_each(
    dir: &Path,
    progress: &mut dyn FnMut(VerifyProgress),
    visit: &mut dyn FnMut(RecordRef<'_>),
) -> Result<VerifyReport, Error> {
    let storage = FsStorage::open(dir).map_err(|source| {
        Error::io(
            format!("cannot open the log directory {}", dir.display()),
            source,
        )
    })?;
    verify_visiting(&storage, progress, Some(visit))
}

/// `verify` over any storage (tests use `SimStorage`).
pub fn verify_with<S: Storage>(
    storage: &S,
    progress: &mut dyn FnMut(VerifyProgress),
) -> Result<VerifyReport, Error> {
    verify_visiting(storage, progress, None)
}

fn verify_visiting<S: Storage>(
    storage: &S,
    progress: &mut dyn FnMut(VerifyProgress),
    mut visit: Option<&mut dyn FnMut(RecordRef<'_>)>,
) -> Result<VerifyReport, Error> {
    let listing = Listing::read(storage)?;
    listing.check()?;
    let mut lengths = Vec::with_capacity(listing.segments.len());
    for name in listing.segments.values() {
        let length = storage
            .open(name, Access::ReadOnly)
            .and_then(|file| file.len())
            .map_err(|source| {
                Error::io(
                    format!("cannot open segment {}", storage.describe(name)),
                    source,
                )
            })?;
        lengths.push(length);
    }
    let bytes_total: u64 = lengths.iter().sum();
    let mut bytes_done = 0;
    progress(VerifyProgress {
        bytes_done,
        bytes_total,
    });

    let mut report = VerifyReport::default();
    let mut expected_first_seq = 1;
    let newest_first_seq = listing.segments.keys().next_back().copied();
    for ((&first_seq, name), length) in listing.segments.iter().zip(lengths) {
        check_continuity(name, first_seq, expected_first_seq)?;
        let newest = Some(first_seq) == newest_first_seq;
        let mapped;
        let read;
        let bytes: &[u8] = if newest {
            read = files::read_whole(storage, name)?;
            files::check_header(&read, name, first_seq)?;
            &read
        } else {
            mapped = files::map_segment(storage, name, first_seq)?;
            &mapped
        };
        let role = if newest { Role::Newest } else { Role::Sealed };
        let scanned = scan(bytes, name, first_seq, role, &mut |position| {
            progress(VerifyProgress {
                bytes_done: bytes_done + position.min(length),
                bytes_total,
            });
        })?;
        if !newest && scanned.last_seq.is_none() {
            return Err(Error::corrupt(
                name,
                scanned.end,
                "a sealed segment holds no records",
            ));
        }
        if listing.index_files.contains(&first_seq) {
            if newest {
                // Opening the log removes an index file of the newest segment.
                report.index_files_rebuildable += 1;
            } else if check_index_file(storage, bytes, first_seq, scanned.last_seq)? {
                report.index_files_checked += 1;
            } else {
                report.index_files_rebuildable += 1;
            }
        } else if !newest {
            report.index_files_rebuildable += 1;
        }
        if let Some(torn) = &scanned.torn {
            report.torn_tail_bytes = torn.data_end - scanned.end;
        }
        if let Some(visit) = visit.as_mut() {
            visit_records(&bytes[..scanned.end as usize], *visit);
        }
        if let Some(last_seq) = scanned.last_seq {
            report.first.get_or_insert(Seq(first_seq));
            report.last = Some(Seq(last_seq));
            expected_first_seq = last_seq + 1;
        }
        report.segments += 1;
        report.records += scanned.records;
        report.bytes += scanned.end;
        bytes_done += length;
        progress(VerifyProgress {
            bytes_done,
            bytes_total,
        });
    }
    Ok(report)
}

/// Hands the records of an already scanned (so valid) segment prefix to `visit`.
fn visit_records(bytes: &[u8], visit: &mut dyn FnMut(RecordRef<'_>)) {
    let mut position = SEGMENT_HEADER_BYTES as usize;
    while position < bytes.len() {
        let header = read_frame_header(&bytes[position..]);
        let start = position + RECORD_HEADER_BYTES as usize;
        let end = start + header.payload_bytes as usize;
        visit(RecordRef {
            seq: Seq(header.seq),
            timestamp_ms: header.timestamp_ms,
            payload: &bytes[start..end],
        });
        position = end;
    }
}

/// Checks a sealed segment's index file against the segment and the last seq its scan
/// found. Returns false if it is unusable (open would rebuild it), and `Corrupt` if it
/// decodes and passes its own checks, and the check open makes, yet points somewhere wrong:
/// reads through it would then fail, or open would take the wrong last seq from it.
fn check_index_file<S: Storage>(
    storage: &S,
    segment: &[u8],
    first_seq: u64,
    last_seq: Option<u64>,
) -> Result<bool, Error> {
    let name = index_name(first_seq);
    let Ok(bytes) = files::read_whole(storage, &name) else {
        return Ok(false);
    };
    let Ok(index_file) = IndexFile::decode(&bytes, first_seq) else {
        return Ok(false);
    };
    if check_last_record(segment, first_seq, &index_file).is_err() {
        return Ok(false);
    }
    // The check open makes can pass for a valid frame inside the last record's payload,
    // and open then continues the log after the seq the index names.
    if Some(index_file.last_seq) != last_seq {
        return Err(Error::corrupt(
            &name,
            INDEX_LAST_SEQ_POSITION,
            format!(
                "the index says the segment ends with seq {}, but its records end with seq {}",
                index_file.last_seq,
                last_seq.map_or_else(|| "none".to_owned(), |seq| seq.to_string())
            ),
        ));
    }
    for (number, entry) in index_file.index.entries().iter().enumerate() {
        let seq = first_seq + u64::from(entry.seq_offset);
        let position = u64::from(entry.position);
        let matches = matches!(
            decode_record(&segment[position as usize..], first_seq),
            Ok(Frame::Record { header, .. }) if header.seq == seq
        );
        if !matches {
            return Err(Error::corrupt(
                &name,
                (INDEX_HEADER_BYTES + INDEX_ENTRY_BYTES * number) as u64,
                format!("index entry {number} says seq {seq} starts at byte {position}, but no such record is there"),
            ));
        }
    }
    Ok(true)
}
