//! Scanning a whole segment: validating every record and classifying what follows them.
//!
//! Recovery scans the newest segment (and any sealed segment whose index cannot be
//! trusted), and `verify` scans everything, through this one function, so that what `verify`
//! reports is exactly what opening the log would do. The decision table in `FORMAT.md`
//! describes the rules; in short:
//!
//! - Records must be valid, gap-free from the segment's first seq, and grouped in complete
//!   batches. A valid frame in the wrong place (wrong seq or batch fields) is corruption.
//! - In a sealed segment the records must end exactly at the end of the file, with a
//!   complete batch. Anything else is corruption.
//! - In the newest segment, the scan may stop at zeros, an invalid frame or the end of the
//!   file. With `SyncPolicy::Always` at most one batch, the last one, was unsynced when the
//!   process died, and any subset of its bytes may have reached the disk. So the tail from
//!   the start of the incomplete batch on is torn (and will be cut) unless a valid record
//!   follows the damage that the torn batch cannot explain: one of an earlier or later
//!   batch, or one with the seq the scan expected. Such a record proves the damaged bytes
//!   were once durable, which makes them corruption.

use crate::error::Error;
use crate::format::{decode_record, Frame, FrameError, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::index::Index;
use crate::limits::VERIFY_PROGRESS_INTERVAL_BYTES;

/// Which rules apply to a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Not the newest segment: it was sealed durably, so it must be exactly complete.
    Sealed,
    /// The newest segment: it may end in preallocated zeros or a torn batch.
    Newest,
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Records in complete batches.
    pub records: u64,
    /// The last seq of a complete batch, `None` if there is none.
    pub last_seq: Option<u64>,
    /// Where that last record starts.
    pub last_record_position: Option<u64>,
    /// The end of the last complete batch: the segment's valid length.
    pub end: u64,
    /// The sparse index of the records before `end`.
    pub index: Index,
    /// A torn tail after `end` (newest segment only).
    pub torn: Option<TornTail>,
}

/// The bytes after the last complete batch of the newest segment that recovery cuts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TornTail {
    /// One past the last non-zero byte: `end..data_end` held data and is cut.
    pub data_end: u64,
    /// Where the scan stopped (inside or at the start of the torn batch).
    pub damage_position: u64,
    /// Valid records of the incomplete batch that are dropped with it.
    pub records_dropped: u64,
    /// What the scan found at `damage_position`.
    pub reason: String,
}

/// Why the record-by-record walk stopped.
enum Stop {
    /// The bytes ended.
    End,
    /// A record header of zeros.
    Zeros,
    /// An invalid frame.
    Invalid(FrameError),
}

/// A batch whose last record has not been seen yet.
#[derive(Clone, Copy)]
struct OpenBatch {
    first_seq: u64,
    record_count: u32,
    records_seen: u64,
}

/// Scans the segment `bytes` (header included, already checked to say `first_seq`) and
/// applies the rules of `role`. `progress` is called with the position reached about every
/// `VERIFY_PROGRESS_INTERVAL_BYTES`.
pub(crate) fn scan(
    bytes: &[u8],
    name: &str,
    first_seq: u64,
    role: Role,
    progress: &mut dyn FnMut(u64),
) -> Result<Scan, Error> {
    assert!(
        bytes.len() as u64 >= SEGMENT_HEADER_BYTES,
        "the caller checked the header"
    );
    let mut index = Index::new(first_seq);
    let mut position = SEGMENT_HEADER_BYTES;
    let mut expected_seq = first_seq;
    let mut open_batch: Option<OpenBatch> = None;
    let mut complete = Scan {
        records: 0,
        last_seq: None,
        last_record_position: None,
        end: SEGMENT_HEADER_BYTES,
        index: Index::new(first_seq),
        torn: None,
    };
    let mut progress_next = VERIFY_PROGRESS_INTERVAL_BYTES;
    let stop = loop {
        if position >= progress_next {
            progress(position);
            progress_next = position + VERIFY_PROGRESS_INTERVAL_BYTES;
        }
        let rest = &bytes[position as usize..];
        if rest.is_empty() {
            break Stop::End;
        }
        let header = match decode_record(rest, first_seq) {
            Ok(Frame::Zeros) => break Stop::Zeros,
            Err(error) => break Stop::Invalid(error),
            Ok(Frame::Record { header, .. }) => header,
        };
        // A valid frame can only be out of place through corruption (or a bug): a torn
        // write leaves old or missing bytes, never a checksummed frame somewhere else.
        if header.seq != expected_seq {
            return Err(Error::corrupt(
                name,
                position,
                format!(
                    "expected seq {expected_seq}, found a valid record with seq {}",
                    header.seq
                ),
            ));
        }
        let batch = match open_batch {
            None if header.batch_record_index == 0 => OpenBatch {
                first_seq: header.seq,
                record_count: header.batch_record_count,
                records_seen: 0,
            },
            Some(batch)
                if header.batch_first_seq() == batch.first_seq
                    && header.batch_record_count == batch.record_count =>
            {
                batch
            }
            _ => {
                return Err(Error::corrupt(
                    name,
                    position,
                    format!(
                        "record seq {} claims to be record {} of a batch of {}, which does not \
                         continue the batch before it",
                        header.seq, header.batch_record_index, header.batch_record_count
                    ),
                ))
            }
        };
        index.observe(header.seq, position);
        let record_position = position;
        position += header.frame_bytes();
        expected_seq += 1;
        if header.is_batch_end() {
            open_batch = None;
            complete.records += batch.records_seen + 1;
            complete.last_seq = Some(header.seq);
            complete.last_record_position = Some(record_position);
            complete.end = position;
        } else {
            open_batch = Some(OpenBatch {
                records_seen: batch.records_seen + 1,
                ..batch
            });
        }
    };
    progress(position);
    index.truncate(complete.end);
    complete.index = index;

    let reason = match &stop {
        Stop::End => "the segment ends inside a batch".to_owned(),
        Stop::Zeros => format!("zeros where seq {expected_seq} was expected"),
        Stop::Invalid(error) => {
            format!("invalid record where seq {expected_seq} was expected: {error}")
        }
    };
    let clean_end = matches!(stop, Stop::End) && open_batch.is_none();
    if role == Role::Sealed {
        if clean_end {
            return Ok(complete);
        }
        let reason = match stop {
            Stop::End => reason,
            _ => format!("{reason}, in a sealed segment"),
        };
        return Err(Error::corrupt(name, position, reason));
    }
    if clean_end {
        return Ok(complete);
    }

    // The newest segment stopped early. Whatever follows must be explainable as the rest of
    // one torn batch: the open batch, or a new one that would have started at `expected_seq`.
    let torn_batch_first_seq = open_batch.map_or(expected_seq, |batch| batch.first_seq);
    let torn_batch_record_count = open_batch.map(|batch| batch.record_count);
    let mut records_dropped = open_batch.map_or(0, |batch| batch.records_seen);
    let damage_position = position;
    let data_end = match last_nonzero(&bytes[complete.end as usize..]) {
        None => {
            // Only zeros after the last complete batch: preallocated space, nothing torn.
            return Ok(complete);
        }
        Some(last) => complete.end + last as u64 + 1,
    };
    let mut candidate = damage_position + 1;
    while candidate < data_end {
        let rest = &bytes[candidate as usize..];
        let header_bytes = RECORD_HEADER_BYTES.min(rest.len() as u64) as usize;
        if is_zero(&rest[..header_bytes]) {
            // No frame starts with a zero header; jump to the first frame that could
            // contain the next non-zero byte.
            match first_nonzero(&rest[header_bytes..]) {
                None => break,
                Some(next) => {
                    let next_nonzero = candidate + header_bytes as u64 + next as u64;
                    candidate = (candidate + 1).max(next_nonzero + 1 - RECORD_HEADER_BYTES);
                    continue;
                }
            }
        }
        let header = match decode_record(rest, first_seq) {
            Ok(Frame::Record { header, .. }) => header,
            Ok(Frame::Zeros) | Err(_) => {
                candidate += 1;
                continue;
            }
        };
        let explained = header.batch_first_seq() == torn_batch_first_seq
            && header.seq > expected_seq
            && torn_batch_record_count.is_none_or(|count| count == header.batch_record_count);
        if !explained {
            return Err(Error::corrupt(
                name,
                damage_position,
                format!(
                    "{reason}, but a valid record with seq {} (of the batch starting at seq {}) \
                     follows at byte {candidate}, so this is damage, not a torn write",
                    header.seq,
                    header.batch_first_seq()
                ),
            ));
        }
        records_dropped += 1;
        candidate += header.frame_bytes();
    }
    complete.torn = Some(TornTail {
        data_end,
        damage_position,
        records_dropped,
        reason,
    });
    Ok(complete)
}

/// A page of zeros to compare against; `==` on slices compiles to `memcmp`, which is fast
/// even in debug builds, where scanning a preallocated 64 MiB tail byte by byte is not.
static ZEROS: [u8; 4096] = [0u8; 4096];

fn is_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(ZEROS.len())
        .all(|chunk| chunk == &ZEROS[..chunk.len()])
}

/// The index of the first non-zero byte.
pub(crate) fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut base = 0;
    for chunk in bytes.chunks(ZEROS.len()) {
        if chunk != &ZEROS[..chunk.len()] {
            return chunk
                .iter()
                .position(|byte| *byte != 0)
                .map(|found| base + found);
        }
        base += chunk.len();
    }
    None
}

/// The index of the last non-zero byte.
pub(crate) fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut end = bytes.len();
    while end > 0 {
        let start = end.saturating_sub(ZEROS.len());
        let chunk = &bytes[start..end];
        if chunk != &ZEROS[..chunk.len()] {
            return chunk
                .iter()
                .rposition(|byte| *byte != 0)
                .map(|found| start + found);
        }
        end = start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_record, encode_segment_header};

    const FIRST_SEQ: u64 = 5;

    /// A segment starting at `FIRST_SEQ` holding batches of the given payload sizes, padded
    /// with `zeros` preallocated bytes; returns the bytes and each batch's end position.
    fn segment(batches: &[&[usize]], zeros: usize) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = encode_segment_header(FIRST_SEQ).to_vec();
        let mut ends = Vec::new();
        let mut seq = FIRST_SEQ;
        for batch in batches {
            for (number, size) in batch.iter().enumerate() {
                let payload: Vec<u8> = (0..*size)
                    .map(|byte| (seq as usize + byte) as u8 | 1)
                    .collect();
                encode_record(
                    &mut bytes,
                    FIRST_SEQ,
                    seq,
                    seq as i64,
                    number as u32,
                    batch.len() as u32,
                    &payload,
                );
                seq += 1;
            }
            ends.push(bytes.len() as u64);
        }
        bytes.resize(bytes.len() + zeros, 0);
        (bytes, ends)
    }

    /// What a check expects.
    #[derive(Debug, PartialEq, Eq)]
    enum Expect {
        /// Records and end of the complete batches, and whether a torn tail is cut.
        Ok { records: u64, end: u64, torn: bool },
        /// Corruption reported at this position.
        Corrupt { position: u64 },
    }

    fn check(bytes: &[u8], role: Role, expected: Expect) {
        let mut last_progress = 0;
        let result = scan(bytes, "test.seg", FIRST_SEQ, role, &mut |position| {
            assert!(position >= last_progress, "progress moves forward");
            last_progress = position;
        });
        let actual = match result {
            Ok(scan) => {
                assert_eq!(
                    scan.last_seq,
                    (scan.records > 0).then(|| FIRST_SEQ + scan.records - 1)
                );
                if let Some(torn) = &scan.torn {
                    assert!(torn.data_end > scan.end);
                    assert!(torn.damage_position >= scan.end);
                }
                Expect::Ok {
                    records: scan.records,
                    end: scan.end,
                    torn: scan.torn.is_some(),
                }
            }
            Err(Error::Corrupt {
                position, segment, ..
            }) => {
                assert_eq!(segment, "test.seg");
                Expect::Corrupt { position }
            }
            Err(other) => panic!("unexpected error {other}"),
        };
        assert_eq!(actual, expected);
    }

    #[test]
    fn complete_segments_scan_clean() {
        let (bytes, ends) = segment(&[&[10], &[0, 300, 5], &[7]], 0);
        check(
            &bytes,
            Role::Sealed,
            Expect::Ok {
                records: 5,
                end: ends[2],
                torn: false,
            },
        );
        check(
            &bytes,
            Role::Newest,
            Expect::Ok {
                records: 5,
                end: ends[2],
                torn: false,
            },
        );
        let (empty, _) = segment(&[], 0);
        check(
            &empty,
            Role::Newest,
            Expect::Ok {
                records: 0,
                end: SEGMENT_HEADER_BYTES,
                torn: false,
            },
        );
    }

    #[test]
    fn preallocated_zeros_end_the_newest_segment_but_not_a_sealed_one() {
        let (bytes, ends) = segment(&[&[10, 20], &[30]], 5000);
        check(
            &bytes,
            Role::Newest,
            Expect::Ok {
                records: 3,
                end: ends[1],
                torn: false,
            },
        );
        check(&bytes, Role::Sealed, Expect::Corrupt { position: ends[1] });
    }

    #[test]
    fn a_batch_cut_anywhere_is_torn_and_dropped_whole() {
        let (full, ends) = segment(&[&[10], &[40, 50, 60]], 0);
        for length in ends[0] + 1..ends[1] {
            let mut bytes = full[..length as usize].to_vec();
            check(
                &bytes,
                Role::Newest,
                Expect::Ok {
                    records: 1,
                    end: ends[0],
                    torn: true,
                },
            );
            check(
                &bytes,
                Role::Sealed,
                Expect::Corrupt {
                    position: scan_stop(&bytes),
                },
            );
            // The same with the cut-off part reading as zeros (preallocated file).
            bytes.resize(full.len() + 100, 0);
            check(
                &bytes,
                Role::Newest,
                Expect::Ok {
                    records: 1,
                    end: ends[0],
                    torn: true,
                },
            );
        }
    }

    /// Where a scan of `bytes` as the newest segment stopped.
    fn scan_stop(bytes: &[u8]) -> u64 {
        let scan = scan(bytes, "test.seg", FIRST_SEQ, Role::Newest, &mut |_| {}).expect("scans");
        scan.torn.map_or(scan.end, |torn| torn.damage_position)
    }

    #[test]
    fn any_lost_sector_of_the_last_batch_is_a_torn_tail() {
        // Zero out each 16-byte piece of the last batch in turn (as if that sector never
        // reached the disk while later ones did): always torn, never corruption.
        let (full, ends) = segment(&[&[10], &[40, 50, 60]], 64);
        let mut start = ends[0];
        while start < ends[1] {
            let mut bytes = full.clone();
            let end = (start + 16).min(ends[1]);
            bytes[start as usize..end as usize].fill(0);
            check(
                &bytes,
                Role::Newest,
                Expect::Ok {
                    records: 1,
                    end: ends[0],
                    torn: true,
                },
            );
            start = end;
        }
    }

    #[test]
    fn damage_followed_by_a_later_batch_is_corruption() {
        let (full, ends) = segment(&[&[10], &[40, 50], &[60]], 64);
        for position in [ends[0] + 3, ends[0] + 40, ends[1] - 1] {
            let mut bytes = full.clone();
            bytes[position as usize] ^= 0x10;
            let damaged_record = if position < ends[0] + 32 + 40 {
                ends[0]
            } else {
                ends[0] + 32 + 40
            };
            check(
                &bytes,
                Role::Newest,
                Expect::Corrupt {
                    position: damaged_record,
                },
            );
        }
    }

    #[test]
    fn garbage_after_the_last_batch_is_a_torn_tail() {
        let (mut bytes, ends) = segment(&[&[10], &[20]], 200);
        bytes[ends[1] as usize + 7] = 0xAB;
        bytes[ends[1] as usize + 100] = 0xCD;
        check(
            &bytes,
            Role::Newest,
            Expect::Ok {
                records: 2,
                end: ends[1],
                torn: true,
            },
        );
        let (mut unallocated, ends) = segment(&[&[10]], 0);
        unallocated.extend_from_slice(b"this is not a record, just junk that got appended");
        check(
            &unallocated,
            Role::Newest,
            Expect::Ok {
                records: 1,
                end: ends[0],
                torn: true,
            },
        );
    }

    #[test]
    fn garbage_followed_by_the_expected_record_is_corruption() {
        let (full, ends) = segment(&[&[10], &[20]], 64);
        let mut bytes = full[..ends[0] as usize].to_vec();
        bytes.extend_from_slice(&[0xEE; 9]);
        bytes.extend_from_slice(&full[ends[0] as usize..]);
        check(&bytes, Role::Newest, Expect::Corrupt { position: ends[0] });
    }

    #[test]
    fn a_valid_record_in_the_wrong_place_is_corruption() {
        // Batch two written twice: the second copy has a seq the scan does not expect.
        let (full, ends) = segment(&[&[10], &[20]], 0);
        let mut bytes = full.clone();
        bytes.extend_from_slice(&full[ends[0] as usize..]);
        check(&bytes, Role::Newest, Expect::Corrupt { position: ends[1] });
    }

    #[test]
    fn zero_helpers_find_the_edges() {
        let mut bytes = vec![0u8; 10_000];
        assert_eq!(first_nonzero(&bytes), None);
        assert_eq!(last_nonzero(&bytes), None);
        bytes[4100] = 1;
        bytes[9000] = 1;
        assert_eq!(first_nonzero(&bytes), Some(4100));
        assert_eq!(last_nonzero(&bytes), Some(9000));
        assert!(is_zero(&bytes[..4100]) && !is_zero(&bytes[..4101]));
    }
}
