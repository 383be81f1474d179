//! Opening a log directory: checking what is there and repairing what a crash can leave.
//!
//! A crash can leave exactly three things, and recovery repairs each: leftover `.tmp`
//! files of an interrupted roll or index write (removed), a missing or stale index file
//! (rebuilt from its segment), and a torn tail in the newest segment (cut back to the end
//! of its last complete batch, then reported). Anything else is corruption and fails the
//! open with the segment and byte position named.
//!
//! Sealed segments are checked cheaply: header, index file, and the last record (which
//! must end exactly at the end of the file and close its batch). Every other record is
//! checked when it is read, since every read verifies checksums; `verify` checks all of
//! them up front. The newest segment is always scanned in full, because that is where a
//! torn tail must be told apart from damage.
//!
//! Recovery must work on a full disk, so that a server can still start and serve reads:
//! the preallocation past the data shrinks to nothing when there is no room, and an index
//! that was rebuilt but cannot be written back is kept in memory. Only a new log, which
//! needs its first segment file, cannot be created on a full disk.

use std::sync::Arc;

use crate::error::Error;
use crate::files::{self, Allocation, Listing};
use crate::format::{decode_record, index_name, segment_name, Frame, SEGMENT_HEADER_BYTES};
use crate::index::{Index, IndexFile};
use crate::limits::PREALLOCATE_STEP_BYTES;
use crate::log::{Active, LogOptions, RecoveryReport};
use crate::scan::{scan, Role};
use crate::shared::{Segment, SegmentState};
use crate::storage::{Access, Storage, StorageFile};

/// The log as recovery leaves it.
pub(crate) struct Recovered<S: Storage> {
    /// Every segment, the active one last.
    pub segments: Vec<Arc<Segment<S>>>,
    /// The writer's view of the active segment.
    pub active: Active<S>,
    /// The last durable seq.
    pub head: Option<u64>,
    /// The seq of the next record.
    pub next_seq: u64,
    /// What was found and done.
    pub report: RecoveryReport,
}

/// Recovers the log in `storage`; the caller holds the directory's lock.
pub(crate) fn recover<S: Storage>(
    storage: &S,
    options: &LogOptions,
) -> Result<Recovered<S>, Error> {
    let mut report = RecoveryReport::default();
    let listing = Listing::read(storage)?;
    listing.check()?;
    let mut directory_changed = false;
    for name in &listing.temporaries {
        storage.remove(name).map_err(|source| {
            Error::io(
                format!("cannot remove leftover {}", storage.describe(name)),
                source,
            )
        })?;
        report.temporary_files_removed += 1;
        directory_changed = true;
    }
    let Some((&newest_first_seq, newest_name)) = listing.segments.iter().next_back() else {
        let allocation = options.preallocate.then_some(Allocation {
            needed: SEGMENT_HEADER_BYTES,
            wanted: (SEGMENT_HEADER_BYTES + PREALLOCATE_STEP_BYTES)
                .min(options.segment_size_bytes_max),
            free_bytes_min: options.free_bytes_min,
        });
        let (file, allocated_bytes) = files::create_segment(storage, 1, allocation)?;
        let file = Arc::new(file);
        report.created = true;
        report.segments = 1;
        let segment = Arc::new(Segment::new(
            1,
            segment_name(1),
            SegmentState {
                file: Some(file.clone()),
                map: None,
                index: Index::new(1),
                durable_bytes: SEGMENT_HEADER_BYTES,
                last_seq: None,
            },
        ));
        return Ok(Recovered {
            active: Active {
                segment: segment.clone(),
                file,
                written_bytes: SEGMENT_HEADER_BYTES,
                last_record_position: None,
                index_next_position: SEGMENT_HEADER_BYTES,
                allocated_bytes,
            },
            segments: vec![segment],
            head: None,
            next_seq: 1,
            report,
        });
    };

    let mut segments = Vec::with_capacity(listing.segments.len());
    let mut expected_first_seq = 1;
    for (&first_seq, name) in &listing.segments {
        check_continuity(name, first_seq, expected_first_seq)?;
        if first_seq == newest_first_seq {
            break;
        }
        let has_index = listing.index_files.contains(&first_seq);
        let (segment, rebuilt) = recover_sealed(storage, name, first_seq, has_index)?;
        match rebuilt {
            Rebuilt::No => {}
            Rebuilt::Written => {
                report.indexes_rebuilt += 1;
                directory_changed = true;
            }
            Rebuilt::InMemory => {
                report.indexes_rebuilt += 1;
                report.indexes_unwritten += 1;
            }
        }
        let last_seq = segment
            .state()
            .last_seq
            .expect("a sealed segment has records");
        report.records += last_seq - first_seq + 1;
        expected_first_seq = last_seq + 1;
        segments.push(Arc::new(segment));
    }

    // The newest segment: scan it all and cut a torn tail.
    let name = newest_name;
    let first_seq = newest_first_seq;
    let location = storage.describe(name);
    let file = storage
        .open(name, Access::ReadWrite)
        .map_err(|source| Error::io(format!("cannot open segment {location}"), source))?;
    let scanned = {
        let map = files::map_segment(storage, name, first_seq)?;
        scan(&map, name, first_seq, Role::Newest, &mut |_| {})?
        // The map is dropped here, before the file is truncated.
    };
    if listing.index_files.contains(&first_seq) {
        // Left by a crash after sealing began but before the next segment existed; it is
        // written again when this segment is sealed.
        storage.remove(&index_name(first_seq)).map_err(|source| {
            Error::io(
                format!(
                    "cannot remove stale {}",
                    storage.describe(&index_name(first_seq))
                ),
                source,
            )
        })?;
        directory_changed = true;
    }
    let mut file_changed = false;
    if let Some(torn) = &scanned.torn {
        file.set_len(scanned.end).map_err(|source| {
            Error::io(
                format!(
                    "cannot cut the torn tail of {location} at byte {}",
                    scanned.end
                ),
                source,
            )
        })?;
        report.truncated_bytes = torn.data_end - scanned.end;
        report.truncated_segment = Some(name.clone());
        report.truncated_position = Some(scanned.end);
        report.truncated_records = torn.records_dropped;
        report.truncated_reason = Some(torn.reason.clone());
        file_changed = true;
        directory_changed = true;
    }
    // Allocate a step past the data (an older, wholly preallocated segment keeps its size),
    // or less, or nothing on a full disk: appends allocate what they need themselves.
    if options.preallocate {
        let current = file
            .len()
            .map_err(|source| Error::io(format!("cannot read the length of {location}"), source))?;
        let allocation = Allocation {
            needed: scanned.end,
            wanted: (scanned.end + PREALLOCATE_STEP_BYTES)
                .min(options.segment_size_bytes_max.max(scanned.end)),
            free_bytes_min: options.free_bytes_min,
        };
        let allocated = files::allocate(storage, &file, current, allocation).map_err(|source| {
            Error::io(
                format!(
                    "cannot preallocate {} bytes for {location}",
                    allocation.wanted
                ),
                source,
            )
        })?;
        file_changed |= allocated > current;
    }
    if file_changed {
        file.sync_all().map_err(|source| {
            Error::io(format!("cannot sync {location} after recovery"), source)
        })?;
    }
    let allocated_bytes = file
        .len()
        .map_err(|source| Error::io(format!("cannot read the length of {location}"), source))?;
    if directory_changed {
        storage.sync_dir().map_err(|source| {
            Error::io(
                format!("cannot sync the log directory {}", storage.describe("")),
                source,
            )
        })?;
    }

    report.records += scanned.records;
    report.segments = segments.len() + 1;
    let file = Arc::new(file);
    let head = scanned
        .last_seq
        .or(expected_first_seq.checked_sub(1).filter(|seq| *seq > 0));
    let next_seq = scanned.last_seq.map_or(first_seq, |last| last + 1);
    let index_next_position = scanned.index.next_entry_position();
    let segment = Arc::new(Segment::new(
        first_seq,
        name.clone(),
        SegmentState {
            file: Some(file.clone()),
            map: None,
            index: scanned.index,
            durable_bytes: scanned.end,
            last_seq: scanned.last_seq,
        },
    ));
    segments.push(segment.clone());
    Ok(Recovered {
        segments,
        active: Active {
            segment,
            file,
            written_bytes: scanned.end,
            last_record_position: scanned.last_record_position,
            index_next_position,
            allocated_bytes,
        },
        head,
        next_seq,
        report,
    })
}

/// Checks that a segment starts where the one before it ended.
pub(crate) fn check_continuity(
    name: &str,
    first_seq: u64,
    expected_first_seq: u64,
) -> Result<(), Error> {
    if first_seq != expected_first_seq {
        return Err(Error::corrupt(
            name,
            0,
            format!(
                "the segment starts at seq {first_seq}, but the log continues at seq {expected_first_seq} \
                 (a segment is missing, or the one before it is short)"
            ),
        ));
    }
    Ok(())
}

/// Whether a sealed segment's index had to be rebuilt, and where it went.
enum Rebuilt {
    /// The index file was valid.
    No,
    /// Rebuilt and written.
    Written,
    /// Rebuilt, but the disk is full: kept in memory only.
    InMemory,
}

/// Opens a sealed segment through its index file, or rebuilds the index by scanning it.
/// Returns the segment and whether the index was rebuilt.
fn recover_sealed<S: Storage>(
    storage: &S,
    name: &str,
    first_seq: u64,
    has_index: bool,
) -> Result<(Segment<S>, Rebuilt), Error> {
    let map = files::map_segment(storage, name, first_seq)?;
    let trusted = if has_index {
        load_index(storage, &map, first_seq)
    } else {
        None
    };
    let (index, last_seq, rebuilt) = match trusted {
        Some(index_file) => (index_file.index, index_file.last_seq, Rebuilt::No),
        None => {
            let scanned = scan(&map, name, first_seq, Role::Sealed, &mut |_| {})?;
            let (Some(last_seq), Some(last_record_position)) =
                (scanned.last_seq, scanned.last_record_position)
            else {
                return Err(Error::corrupt(
                    name,
                    SEGMENT_HEADER_BYTES,
                    "a sealed segment holds no records",
                ));
            };
            let index_file = IndexFile {
                index: scanned.index,
                last_seq,
                last_record_position,
                segment_bytes: scanned.end,
            };
            let rebuilt = match files::write_index(storage, &index_file, first_seq) {
                Ok(()) => Rebuilt::Written,
                Err(error) if error.is_no_space() => Rebuilt::InMemory,
                Err(error) => return Err(error),
            };
            (index_file.index, last_seq, rebuilt)
        }
    };
    let segment = Segment::new(
        first_seq,
        name.to_owned(),
        SegmentState {
            file: None,
            durable_bytes: map.len() as u64,
            map: Some(Arc::new(map)),
            index,
            last_seq: Some(last_seq),
        },
    );
    Ok((segment, rebuilt))
}

/// The segment's index file, if it decodes and agrees with the segment's length and last
/// record; `None` means "rebuild it". A damaged index is derived data, not corruption.
fn load_index<S: Storage>(storage: &S, segment: &[u8], first_seq: u64) -> Option<IndexFile> {
    let bytes = files::read_whole(storage, &index_name(first_seq)).ok()?;
    let index_file = IndexFile::decode(&bytes, first_seq).ok()?;
    check_last_record(segment, first_seq, &index_file).ok()?;
    Some(index_file)
}

/// Checks that the index file's last record is where it says, valid, closes its batch and
/// ends exactly at the end of the segment.
pub(crate) fn check_last_record(
    segment: &[u8],
    first_seq: u64,
    index_file: &IndexFile,
) -> Result<(), String> {
    if index_file.segment_bytes != segment.len() as u64 {
        return Err(format!(
            "index says the segment has {} bytes, it has {}",
            index_file.segment_bytes,
            segment.len()
        ));
    }
    let position = index_file.last_record_position;
    match decode_record(&segment[position as usize..], first_seq) {
        Ok(Frame::Record { header, .. })
            if header.seq == index_file.last_seq
                && header.is_batch_end()
                && position + header.frame_bytes() == segment.len() as u64 =>
        {
            Ok(())
        }
        Ok(Frame::Record { header, .. }) => Err(format!(
            "the record at byte {position} has seq {} and ends at byte {}, the index expects seq {} ending the segment",
            header.seq,
            position + header.frame_bytes(),
            index_file.last_seq
        )),
        Ok(Frame::Zeros) => Err(format!("zeros at byte {position}, where the index expects seq {}", index_file.last_seq)),
        Err(error) => Err(format!("invalid record at byte {position}: {error}")),
    }
}
