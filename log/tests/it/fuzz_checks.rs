//! What the fuzz targets in `fuzz/` check, shared with `fuzz_regressions.rs` so that every
//! saved input also runs in a plain `cargo test`.
//!
//! This file is compiled twice: as a module of this test binary, and into the fuzz crate
//! (`fuzz/src/lib.rs` includes it by path). So it uses only `std`, `swarmlog_log` and
//! `crc32fast`, and nothing else of the test binary.
//!
//! Each target turns arbitrary bytes into a log directory on a `SimStorage`, then
//! `check_directory` checks what must hold for any directory whatsoever:
//!
//! - nothing panics, and every failure is `Error::Corrupt`;
//! - `verify` changes nothing, and fails exactly when opening the log or reading some record
//!   by seq fails, or when a sealed segment's records do not group into batches (which
//!   only `verify` checks); when it succeeds, it predicts what recovery keeps and cuts;
//! - a log that opens and reads back holds seqs 1, 2, 3, ... with no gap, accepts one more
//!   batch, and reopens to exactly the same records plus that batch, with nothing left to
//!   repair.
//!
//! On top of that, `segment_recovery` compares recovery of a single segment with a model
//! of the decision table in `FORMAT.md`, written from the document alone, and
//! `log_recovery` checks that no damage ever comes back as data.

use std::collections::BTreeMap;

use swarmlog_log::sim::{CrashMode, SimStorage};
use swarmlog_log::{
    verify_with, Error, Log, LogOptions, Record, RecordInput, RecoveryReport, Seq, Storage,
    SyncPolicy, VerifyProgress, VerifyReport,
};

/// The name of the segment that starts at seq 1.
const FIRST_SEGMENT: &str = "00000000000000000001.seg";

/// Bytes of a segment header and of a record frame's header (`FORMAT.md`).
const HEADER_BYTES: usize = 32;

/// The largest payload a frame may declare (`FORMAT.md`).
const PAYLOAD_BYTES_MAX: u32 = 4 * 1024 * 1024;

/// The most records a batch may hold (`FORMAT.md`).
const BATCH_RECORDS_MAX: u32 = 65_536;

/// The payload of the record `check_directory` appends after a successful open.
const APPENDED: &[u8] = b"appended after recovery";

/// The fuzzer's bytes, read as a stream of small choices. Past the end it reads zeros, so
/// every input means something.
struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(bytes: &'a [u8]) -> Input<'a> {
        Input { bytes }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((first, rest)) => {
                self.bytes = rest;
                *first
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `count` bytes (fewer if the input ends).
    fn take(&mut self, count: usize) -> &'a [u8] {
        let (taken, rest) = self.bytes.split_at(count.min(self.bytes.len()));
        self.bytes = rest;
        taken
    }

    /// Everything left.
    fn rest(&mut self) -> &'a [u8] {
        self.take(self.bytes.len())
    }
}

/// The fields of a record frame (`FORMAT.md`); `payload_bytes` is the payload's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameFields {
    seq: u64,
    timestamp_ms: i64,
    index: u32,
    count: u32,
}

/// The segment header for `first_seq`, laid out as `FORMAT.md` draws it.
fn segment_header(first_seq: u64) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..8].copy_from_slice(b"SWLOGSEG");
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    header[12..16].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
    header[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Whether `bytes` start with a valid header of the segment named after `first_seq`.
fn valid_segment_header(bytes: &[u8], first_seq: u64) -> bool {
    bytes.len() >= HEADER_BYTES && bytes[..HEADER_BYTES] == segment_header(first_seq)
}

/// A frame's checksum: CRC-32 of the segment's first seq, then the frame without its
/// checksum field.
fn frame_crc(segment_first_seq: u64, frame: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&segment_first_seq.to_le_bytes());
    hasher.update(&frame[0..4]);
    hasher.update(&frame[8..]);
    hasher.finalize()
}

/// Appends a frame with these fields and a valid checksum, whatever the fields say.
fn encode_frame(out: &mut Vec<u8>, segment_first_seq: u64, fields: FrameFields, payload: &[u8]) {
    let start = out.len();
    let payload_bytes = u32::try_from(payload.len()).expect("small payload");
    out.extend_from_slice(&payload_bytes.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&fields.seq.to_le_bytes());
    out.extend_from_slice(&fields.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&fields.index.to_le_bytes());
    out.extend_from_slice(&fields.count.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = frame_crc(segment_first_seq, &out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// What `FORMAT.md` says the bytes at a record position are.
#[derive(Debug, PartialEq, Eq)]
enum SpecFrame<'a> {
    /// A record header of zeros (or fewer bytes than a header, all zero): never written.
    Zeros,
    /// Not a valid frame: a partial header, an impossible field, a bad checksum.
    Invalid,
    /// A valid frame.
    Valid {
        fields: FrameFields,
        payload: &'a [u8],
    },
}

impl SpecFrame<'_> {
    fn decode(bytes: &[u8], segment_first_seq: u64) -> SpecFrame<'_> {
        let header = &bytes[..bytes.len().min(HEADER_BYTES)];
        if header.iter().all(|byte| *byte == 0) {
            return SpecFrame::Zeros;
        }
        if header.len() < HEADER_BYTES {
            return SpecFrame::Invalid;
        }
        let payload_bytes = read_u32(bytes, 0);
        let fields = FrameFields {
            seq: read_u64(bytes, 8),
            timestamp_ms: read_u64(bytes, 16) as i64,
            index: read_u32(bytes, 24),
            count: read_u32(bytes, 28),
        };
        let frame_bytes = HEADER_BYTES as u64 + u64::from(payload_bytes);
        // A batch never spans segments, so its first seq is in this segment too.
        let possible = payload_bytes <= PAYLOAD_BYTES_MAX
            && (1..=BATCH_RECORDS_MAX).contains(&fields.count)
            && fields.index < fields.count
            && fields
                .seq
                .checked_sub(u64::from(fields.index))
                .is_some_and(|batch_first_seq| batch_first_seq >= segment_first_seq)
            && frame_bytes <= bytes.len() as u64;
        if !possible {
            return SpecFrame::Invalid;
        }
        let frame = &bytes[..frame_bytes as usize];
        if frame_crc(segment_first_seq, frame) != read_u32(bytes, 4) {
            return SpecFrame::Invalid;
        }
        SpecFrame::Valid {
            fields,
            payload: &frame[HEADER_BYTES..],
        }
    }
}

/// What recovery must do with a newest segment, by the decision table of `FORMAT.md`.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Fail the open with `Corrupt`.
    Corrupt,
    /// Keep everything up to `end` (the rest, if any, is zeros).
    Clean { end: u64 },
    /// Cut the bytes `end..data_end` as a torn tail.
    Torn { end: u64, data_end: u64 },
    /// Either of those: a valid record that would prove damage sits inside the payload of
    /// a record of the torn batch, where the table does not say whether it counts.
    TornOrCorrupt { end: u64, data_end: u64 },
}

/// The model's verdict on a newest segment: the decision, and the records it keeps when
/// it opens.
#[derive(Debug)]
struct Model {
    decision: Decision,
    records: Vec<Record>,
}

impl Model {
    /// Applies `FORMAT.md` to `bytes` as the newest segment, starting at `first_seq`.
    fn newest_segment(bytes: &[u8], first_seq: u64) -> Model {
        let corrupt = Model {
            decision: Decision::Corrupt,
            records: Vec::new(),
        };
        if !valid_segment_header(bytes, first_seq) {
            return corrupt;
        }
        // Walk the records while they are valid; a valid record in the wrong place (seq or
        // batch fields) is corruption.
        let mut records = Vec::new();
        let mut batch: Vec<Record> = Vec::new();
        let mut batch_first_seq = 0;
        let mut batch_count = 0;
        let mut end = HEADER_BYTES;
        let mut position = HEADER_BYTES;
        let mut expected_seq = first_seq;
        let stop_frame = loop {
            if position == bytes.len() {
                break None;
            }
            let frame = SpecFrame::decode(&bytes[position..], first_seq);
            let SpecFrame::Valid { fields, payload } = frame else {
                break Some(frame);
            };
            let continues = if batch.is_empty() {
                fields.index == 0
            } else {
                fields.seq - u64::from(fields.index) == batch_first_seq
                    && fields.count == batch_count
            };
            if fields.seq != expected_seq || !continues {
                return corrupt;
            }
            if batch.is_empty() {
                batch_first_seq = fields.seq;
                batch_count = fields.count;
            }
            batch.push(Record {
                seq: Seq(fields.seq),
                timestamp_ms: fields.timestamp_ms,
                payload: payload.to_vec(),
            });
            position += HEADER_BYTES + payload.len();
            expected_seq += 1;
            if fields.index + 1 == fields.count {
                records.append(&mut batch);
                end = position;
            }
        };
        let clean = Model {
            decision: Decision::Clean { end: end as u64 },
            records: records.clone(),
        };
        if stop_frame.is_none() && batch.is_empty() {
            return clean;
        }
        let Some(last_nonzero) = bytes[end..].iter().rposition(|byte| *byte != 0) else {
            return clean;
        };
        let data_end = end + last_nonzero + 1;
        // The torn batch: the one left open, or one that would have started at the seq
        // the walk expected. Valid records after the stop must all belong to it.
        let (torn_first_seq, torn_count) = if batch.is_empty() {
            (expected_seq, None)
        } else {
            (batch_first_seq, Some(batch_count))
        };
        let mut explained_spans = Vec::new();
        let mut proofs = Vec::new();
        for candidate in position + 1..data_end {
            if let SpecFrame::Valid { fields, payload } =
                SpecFrame::decode(&bytes[candidate..], first_seq)
            {
                let explained = fields.seq - u64::from(fields.index) == torn_first_seq
                    && fields.seq > expected_seq
                    && torn_count.is_none_or(|count| count == fields.count);
                if explained {
                    explained_spans.push(candidate..candidate + HEADER_BYTES + payload.len());
                } else {
                    proofs.push(candidate);
                }
            }
        }
        let (end, data_end) = (end as u64, data_end as u64);
        let decision = if proofs.is_empty() {
            Decision::Torn { end, data_end }
        } else if proofs.iter().any(|proof| {
            !explained_spans
                .iter()
                .any(|span| span.start < *proof && *proof < span.end)
        }) {
            Decision::Corrupt
        } else {
            Decision::TornOrCorrupt { end, data_end }
        };
        Model { decision, records }
    }
}

/// What `check_directory` saw.
#[derive(Debug)]
pub struct Checked {
    /// What `verify` reported before the log was opened.
    pub verified: Result<VerifyReport, Error>,
    /// What recovery reported, `None` if the open failed (with `Corrupt`).
    pub recovery: Option<RecoveryReport>,
    /// The records read from seq 1 on, up to the first error.
    pub records: Vec<Record>,
}

/// Every file of `storage`, with its contents.
fn files(storage: &SimStorage) -> BTreeMap<String, Vec<u8>> {
    storage
        .list()
        .expect("list")
        .into_iter()
        .map(|name| {
            let bytes = storage.read_file(&name).expect("a listed file exists");
            (name, bytes)
        })
        .collect()
}

/// Writes a file, creating it if needed.
fn put(storage: &SimStorage, name: &str, bytes: &[u8]) {
    if storage.read_file(name).is_none() {
        storage.create(name).expect("create");
    }
    storage.write_file(name, bytes);
}

/// Panics unless `error` is `Corrupt`: on a simulated disk nothing else can go wrong.
fn assert_corrupt(error: &Error, what: &str) {
    assert!(
        error.is_corrupt(),
        "{what} failed with {error}, not Corrupt"
    );
}

/// Reads every record from seq 1 with `iter_from`, then each seq on its own (so that
/// every index entry is used); returns the records read before the first error, and
/// whether there was one.
fn read_everything(log: &Log<SimStorage>) -> (Vec<Record>, bool) {
    let reader = log.reader();
    let mut records = Vec::new();
    for record in reader.iter_from(Seq::FIRST) {
        match record {
            Ok(record) => {
                assert_eq!(
                    record.seq.get(),
                    records.len() as u64 + 1,
                    "seqs are gap-free from 1"
                );
                records.push(record);
            }
            Err(error) => {
                assert_corrupt(&error, "a read");
                return (records, true);
            }
        }
    }
    assert_eq!(
        log.head(),
        records.last().map(|record| record.seq),
        "reads end at the head"
    );
    for expected in &records {
        match reader.read(expected.seq, 1, 0) {
            Ok(read) => assert_eq!(read, std::slice::from_ref(expected), "a read by seq"),
            Err(error) => {
                assert_corrupt(&error, "a read by seq");
                return (records, true);
            }
        }
    }
    (records, false)
}

/// Runs `verify`, checking its progress reports and that it changes nothing.
fn verify_unchanged(storage: &SimStorage) -> Result<VerifyReport, Error> {
    let before = files(storage);
    let mut last: Option<VerifyProgress> = None;
    let verified = verify_with(storage, &mut |progress| {
        assert!(progress.bytes_done <= progress.bytes_total, "{progress:?}");
        if let Some(last) = last {
            assert_eq!(progress.bytes_total, last.bytes_total, "{progress:?}");
            assert!(progress.bytes_done >= last.bytes_done, "{progress:?}");
        }
        last = Some(progress);
    });
    assert!(files(storage) == before, "verify changed the directory");
    if let Err(error) = &verified {
        assert_corrupt(error, "verify");
    }
    verified
}

/// Checks what must hold for any log directory (see the module documentation) and returns
/// what it saw, for the targets' own checks.
pub fn check_directory(storage: &SimStorage, options: LogOptions) -> Checked {
    let verified = verify_unchanged(storage);
    let segments: BTreeMap<u64, Vec<u8>> = files(storage)
        .into_iter()
        .filter_map(|(name, bytes)| Some((segment_first_seq(&name)?, bytes)))
        .collect();
    let newest = segments.keys().next_back().copied();
    let newest_has_index =
        newest.is_some_and(|newest| storage.read_file(&format!("{newest:020}.idx")).is_some());
    let sealed_batches_broken = segments
        .iter()
        .filter(|(first_seq, _)| Some(**first_seq) != newest)
        .any(|(first_seq, bytes)| batches_broken(bytes, *first_seq));
    let log = match Log::open_with(storage.clone(), options) {
        Ok(log) => log,
        Err(error) => {
            assert_corrupt(&error, "open");
            assert!(
                verified.is_err(),
                "open failed with {error}, but verify passed: {verified:?}"
            );
            return Checked {
                verified,
                recovery: None,
                records: Vec::new(),
            };
        }
    };
    let recovery = log.recovery().clone();
    let (records, read_failed) = read_everything(&log);
    match &verified {
        // Only `verify` checks how a sealed segment's records group into batches: a read
        // checks what each record is (checksum, seq, segment), and a record with the wrong
        // batch fields still holds exactly what was written.
        Err(error) => assert!(
            read_failed || sealed_batches_broken,
            "verify failed with {error}, but the log opened and every record reads back"
        ),
        Ok(report) => {
            assert!(!read_failed, "verify passed, but a read failed");
            let last = records.last().map(|record| record.seq);
            assert_eq!(report.records, records.len() as u64, "{report:?}");
            assert_eq!(report.last, last, "{report:?}");
            assert_eq!(report.first, last.map(|_| Seq::FIRST), "{report:?}");
            assert_eq!(recovery.records, report.records, "{recovery:?}");
            assert_eq!(
                recovery.truncated_bytes, report.torn_tail_bytes,
                "{recovery:?} {report:?}"
            );
            assert_eq!(
                recovery.segments,
                report.segments.max(1),
                "{recovery:?} {report:?}"
            );
            assert_eq!(recovery.created, report.segments == 0, "{recovery:?}");
            assert_eq!(
                report.index_files_rebuildable,
                recovery.indexes_rebuilt + usize::from(newest_has_index),
                "{recovery:?} {report:?}"
            );
        }
    }
    if verified.is_ok() {
        append_and_reopen(storage, options, log, &records);
    }
    Checked {
        verified,
        recovery: Some(recovery),
        records,
    }
}

/// Whether a valid record of the segment `bytes` has batch fields that do not continue the
/// batch before it (`FORMAT.md`), before the first invalid frame.
fn batches_broken(bytes: &[u8], first_seq: u64) -> bool {
    let mut position = HEADER_BYTES;
    let mut open_batch: Option<(u64, u32)> = None;
    while position < bytes.len() {
        let SpecFrame::Valid { fields, payload } = SpecFrame::decode(&bytes[position..], first_seq)
        else {
            return false;
        };
        let batch_first_seq = fields.seq - u64::from(fields.index);
        let continues = match open_batch {
            None => fields.index == 0,
            Some(open) => open == (batch_first_seq, fields.count),
        };
        if !continues {
            return true;
        }
        open_batch = (fields.index + 1 < fields.count).then_some((batch_first_seq, fields.count));
        position += HEADER_BYTES + payload.len();
    }
    false
}

/// Appends one batch to a log that recovered `records`, and checks that the log reopens
/// to exactly those records plus the batch, with nothing left to repair.
fn append_and_reopen(
    storage: &SimStorage,
    options: LogOptions,
    mut log: Log<SimStorage>,
    records: &[Record],
) {
    let next = Seq(records.len() as u64 + 1);
    assert_eq!(log.next_seq(), next);
    let appended = log
        .append_batch(&[RecordInput {
            timestamp_ms: -1,
            payload: APPENDED,
        }])
        .expect("a recovered log appends");
    assert_eq!(appended, next..=next);
    drop(log);
    let report = verify_unchanged(storage).expect("verify after an append");
    assert_eq!(report.records, next.get(), "{report:?}");
    assert_eq!(report.torn_tail_bytes, 0, "{report:?}");
    let log = Log::open_with(storage.clone(), options).expect("reopen after an append");
    let recovery = log.recovery();
    assert_eq!(recovery.records, next.get(), "{recovery:?}");
    assert_eq!(recovery.truncated_bytes, 0, "{recovery:?}");
    assert_eq!(recovery.indexes_rebuilt, 0, "{recovery:?}");
    assert_eq!(recovery.temporary_files_removed, 0, "{recovery:?}");
    let (reread, read_failed) = read_everything(&log);
    assert!(!read_failed, "a read after reopening failed");
    assert!(
        reread.get(..records.len()) == Some(records),
        "reopening changed or lost a record"
    );
    assert_eq!(
        reread[records.len()..],
        [Record {
            seq: next,
            timestamp_ms: -1,
            payload: APPENDED.to_vec(),
        }]
    );
}

/// Options from one byte of input: small segments (so appends roll), preallocation or not.
fn options(choice: u8) -> LogOptions {
    LogOptions {
        segment_size_bytes_max: if choice & 1 == 0 { 1024 } else { 4096 },
        preallocate: choice & 2 != 0,
        sync: if choice & 4 == 0 {
            SyncPolicy::Always
        } else {
            SyncPolicy::Never
        },
        ..LogOptions::default()
    }
}

/// Target `segment_recovery`: the log directory holds one segment, the newest, made of
/// the input's bytes. The first byte chooses the options and how the rest makes the
/// segment: taken as it is, after a valid header, or as a list of operations that write
/// valid batches, frames with any fields (and valid checksums), junk and zeros, and
/// damage them. Recovery and `verify` must follow the decision table of `FORMAT.md`.
pub fn segment_recovery(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.byte();
    let options = options(setup >> 2);
    let segment = match setup & 3 {
        0 => input.rest().to_vec(),
        1 => [&segment_header(1)[..], input.rest()].concat(),
        _ => build_segment(&mut input),
    };
    let storage = SimStorage::new();
    put(&storage, FIRST_SEGMENT, &segment);
    let model = Model::newest_segment(&segment, 1);
    let checked = check_directory(&storage, options);
    let Some(recovery) = checked.recovery else {
        assert!(
            matches!(
                model.decision,
                Decision::Corrupt | Decision::TornOrCorrupt { .. }
            ),
            "open failed with {:?}, FORMAT.md says {model:?}",
            checked.verified
        );
        return;
    };
    assert_eq!(checked.records, model.records, "{model:?}");
    let (end, torn_bytes) = match model.decision {
        Decision::Corrupt => panic!("the log opened ({recovery:?}), FORMAT.md says {model:?}"),
        Decision::Clean { end } => (end, 0),
        Decision::Torn { end, data_end } | Decision::TornOrCorrupt { end, data_end } => {
            (end, data_end - end)
        }
    };
    assert_eq!(
        recovery.truncated_bytes, torn_bytes,
        "{recovery:?} {model:?}"
    );
    if torn_bytes > 0 {
        assert_eq!(recovery.truncated_position, Some(end), "{recovery:?}");
        assert_eq!(recovery.truncated_segment.as_deref(), Some(FIRST_SEGMENT));
    }
}

/// The segment that `segment_recovery` builds from a list of operations.
fn build_segment(input: &mut Input<'_>) -> Vec<u8> {
    let mut bytes = segment_header(1).to_vec();
    let mut next_seq = 1u64;
    while !input.is_empty() {
        let op = input.byte();
        match op % 8 {
            // Most often, a whole batch of 1 to 4 records, as the log writes it.
            0..=3 => {
                let count = u32::from(op >> 3) % 4 + 1;
                for index in 0..count {
                    let length = usize::from(input.byte() % 64);
                    let fields = FrameFields {
                        seq: next_seq.wrapping_add(u64::from(index)),
                        timestamp_ms: i64::from(op),
                        index,
                        count,
                    };
                    encode_frame(&mut bytes, 1, fields, input.take(length));
                }
                next_seq = next_seq.wrapping_add(u64::from(count));
            }
            // One frame with fields of the input's choosing and a valid checksum; its
            // payload may itself be such a frame.
            4 => {
                let mut fields = FrameFields {
                    seq: next_seq.wrapping_add_signed(i64::from(input.byte() as i8)),
                    timestamp_ms: 0,
                    index: u32::from(input.byte() % 8),
                    count: u32::from(input.byte() % 8),
                };
                if op & 0x10 != 0 {
                    fields.count = [0, BATCH_RECORDS_MAX, BATCH_RECORDS_MAX + 1, u32::MAX]
                        [usize::from(op >> 5) % 4];
                }
                let length = usize::from(input.byte() % 64);
                let mut payload = input.take(length).to_vec();
                if op & 0x08 != 0 {
                    let inner = FrameFields {
                        seq: fields.seq.wrapping_add(1),
                        ..fields
                    };
                    let mut nested = Vec::new();
                    encode_frame(&mut nested, 1, inner, &payload);
                    payload = nested;
                }
                encode_frame(&mut bytes, 1, fields, &payload);
                if fields.seq >= next_seq {
                    next_seq = fields.seq.saturating_add(1);
                }
            }
            // Junk.
            5 => {
                let length = usize::from(input.byte());
                bytes.extend_from_slice(input.take(length));
            }
            // Zeros, as preallocation or a lost write leaves them.
            6 => {
                let length = usize::from(input.u16() % 8192);
                bytes.resize(bytes.len() + length, 0);
            }
            // Damage to what is there: a changed byte, or a cut.
            _ => {
                let position = HEADER_BYTES + usize::from(input.u16()) % (bytes.len() - 31);
                if op & 0x08 == 0 {
                    if let Some(byte) = bytes.get_mut(position) {
                        *byte ^= input.byte() | 1;
                    }
                } else {
                    bytes.truncate(position);
                }
            }
        }
    }
    bytes
}

/// The payload `log_recovery` writes for `seq`: `length` bytes that only that seq has.
fn payload(seq: u64, length: usize) -> Vec<u8> {
    (0..length)
        .map(|number| (seq as usize * 31 + number * 7) as u8)
        .collect()
}

/// Target `log_recovery`: a log of several segments (sealed ones with index files),
/// written through `Log`, perhaps left by a power loss, then damaged by a list of
/// operations: changed, cut, extended, zeroed, deleted and copied files, and forged
/// checksums (of segment headers, frames and index files, so that damage can pass them).
/// No damage may come back as data, unless checksums were forged.
pub fn log_recovery(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.byte();
    let options = options(setup);
    let storage = SimStorage::new();
    let mut log = Log::open_with(storage.clone(), options).expect("a new log opens");
    let mut written = Vec::new();
    for _ in 0..input.byte() % 32 {
        let first = log.next_seq().get();
        let count = input.byte() % 4 + 1;
        let batch: Vec<Record> = (0..u64::from(count))
            .map(|number| Record {
                seq: Seq(first + number),
                timestamp_ms: (first + number) as i64,
                payload: payload(first + number, usize::from(input.byte()) * 2),
            })
            .collect();
        let inputs: Vec<RecordInput<'_>> = batch
            .iter()
            .map(|record| RecordInput {
                timestamp_ms: record.timestamp_ms,
                payload: &record.payload,
            })
            .collect();
        log.append_batch(&inputs).expect("append");
        written.extend(batch);
    }
    drop(log);
    let storage = if setup & 8 != 0 {
        let mode = CrashMode::ALL[usize::from(setup >> 4) % CrashMode::ALL.len()];
        storage.crash(mode, u64::from(input.u16()))
    } else {
        storage
    };
    let mut forged = false;
    while !input.is_empty() {
        forged |= damage(&storage, &mut input);
    }
    let checked = check_directory(&storage, options);
    if !forged {
        for record in &checked.records {
            let index = record.seq.get() as usize - 1;
            assert!(
                written.get(index) == Some(record),
                "seq {} read back as data that was never written",
                record.seq
            );
        }
    }
}

/// Applies one damaging operation to a file of `storage`; returns whether it forged a
/// checksum.
fn damage(storage: &SimStorage, input: &mut Input<'_>) -> bool {
    let op = input.byte();
    let names = storage.list().expect("list");
    let choice = usize::from(input.byte());
    let Some(name) = names.get(choice % names.len().max(1)) else {
        return false;
    };
    let mut bytes = storage.read_file(name).expect("a listed file exists");
    let position = usize::from(input.u16()) % bytes.len().max(1);
    let mut forged = false;
    match op % 8 {
        0 => {
            if let Some(byte) = bytes.get_mut(position) {
                *byte ^= input.byte() | 1;
            }
        }
        1 => bytes.truncate(position),
        2 => {
            let length = usize::from(input.byte());
            bytes.extend_from_slice(input.take(length));
        }
        3 => {
            let end = (position + usize::from(input.byte())).min(bytes.len());
            bytes[position..end].fill(0);
        }
        4 => {
            storage.delete_file(name);
            return false;
        }
        // A copy under another name: another file's, or a segment or index file of a
        // number near the start (what a misplaced file looks like).
        5 => {
            let target = input.byte();
            let other = match target % 3 {
                0 => names[usize::from(target) % names.len()].clone(),
                1 => format!("{:020}.seg", 1 + target / 3),
                _ => format!("{:020}.idx", 1 + target / 3),
            };
            put(storage, &other, &bytes);
            return false;
        }
        // A frame with fields of the input's choosing at any position, with a valid
        // checksum; its payload reaches to the end of the file or is of the input's size.
        6 => {
            let Some(first_seq) = segment_first_seq(name) else {
                return false;
            };
            let payload_bytes = if op & 0x08 == 0 {
                bytes.len().saturating_sub(position + HEADER_BYTES)
            } else {
                usize::from(input.byte())
            };
            let fields = FrameFields {
                seq: first_seq.saturating_add(u64::from(input.byte())),
                timestamp_ms: 0,
                index: u32::from(input.byte() % 4),
                count: u32::from(input.byte() % 4),
            };
            let mut frame = Vec::new();
            let payload_end = (position + HEADER_BYTES + payload_bytes).min(bytes.len());
            let payload = bytes
                .get(position + HEADER_BYTES..payload_end)
                .unwrap_or(&[]);
            encode_frame(&mut frame, first_seq, fields, payload);
            let end = (position + frame.len()).min(bytes.len());
            bytes[position..end].copy_from_slice(&frame[..end - position]);
            forged = true;
        }
        // A field changed by a small amount (a u32 or a u64), and then the checksum that
        // covers it fixed; or only the checksum fixed.
        _ => {
            let delta = i64::from(input.byte() as i8);
            if op & 0x08 != 0 && position + 8 <= bytes.len() {
                let value = read_u64(&bytes, position).wrapping_add_signed(delta);
                bytes[position..position + 8].copy_from_slice(&value.to_le_bytes());
            } else if op & 0x10 != 0 && position + 4 <= bytes.len() {
                let value = read_u32(&bytes, position).wrapping_add_signed(delta as i32);
                bytes[position..position + 4].copy_from_slice(&value.to_le_bytes());
            }
            fix_checksum(name, &mut bytes, position);
            forged = true;
        }
    }
    storage.write_file(name, &bytes);
    forged
}

/// The first seq a segment file's name promises, `None` for other files.
fn segment_first_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Recomputes the checksum that covers byte `position` of the file `name`: an index file's,
/// a segment header's, or that of the frame `position` falls in (frames found by their
/// length fields from the header on).
fn fix_checksum(name: &str, bytes: &mut [u8], position: usize) {
    if name.ends_with(".idx") && bytes.len() >= 4 {
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        return;
    }
    let Some(first_seq) = segment_first_seq(name) else {
        return;
    };
    if position < HEADER_BYTES {
        if bytes.len() >= HEADER_BYTES {
            let crc = crc32fast::hash(&bytes[..28]);
            bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        }
        return;
    }
    let mut start = HEADER_BYTES;
    while start + HEADER_BYTES <= bytes.len() {
        let end = start + HEADER_BYTES + read_u32(bytes, start) as usize;
        if position < end {
            if end <= bytes.len() {
                let crc = frame_crc(first_seq, &bytes[start..end]);
                bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            }
            return;
        }
        start = end;
    }
}

/// Inputs that reach the interesting paths quickly: the fuzzers' starting corpus, also run
/// by `fuzz_regressions.rs`. Returns (target, name, input).
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    // `segment_recovery` operations: a batch of `count` records with `length`-byte payloads.
    let batch = |count: u8, length: u8| -> Vec<u8> {
        let mut op = vec![(count - 1) << 3];
        for number in 0..count {
            op.push(length);
            op.extend(std::iter::repeat_n(number + 1, usize::from(length)));
        }
        op
    };
    let segment = |setup: u8, ops: &[Vec<u8>]| -> Vec<u8> { [vec![setup], ops.concat()].concat() };
    vec![
        ("segment_recovery", "empty", Vec::new()),
        ("segment_recovery", "header-only", vec![1]),
        (
            "segment_recovery",
            "junk-after-header",
            b"\x01junk".to_vec(),
        ),
        (
            "segment_recovery",
            "batches",
            segment(2, &[batch(1, 10), batch(3, 20), batch(2, 0)]),
        ),
        (
            "segment_recovery",
            "batches-preallocated",
            segment(2 | 8, &[batch(2, 30), batch(1, 5), vec![6, 0, 16]]),
        ),
        (
            "segment_recovery",
            "torn-last-batch",
            segment(2, &[batch(1, 10), batch(3, 20), vec![7 | 0x08, 150, 0]]),
        ),
        (
            "segment_recovery",
            "damage-before-a-later-batch",
            segment(
                2,
                &[batch(1, 10), batch(2, 20), batch(1, 9), vec![7, 80, 0, 4]],
            ),
        ),
        (
            "segment_recovery",
            "zeros-then-junk",
            segment(2, &[batch(2, 8), vec![6, 100, 0], vec![5, 3, 1, 2, 3]]),
        ),
        (
            "segment_recovery",
            "frame-with-the-wrong-seq",
            segment(2, &[batch(1, 4), vec![4, 3, 0, 1, 4, 9, 9, 9, 9]]),
        ),
        (
            "segment_recovery",
            "nested-frame",
            segment(
                2,
                &[batch(1, 4), vec![4 | 0x08, 0, 0, 2, 6, 1, 2, 3, 4, 5, 6]],
            ),
        ),
        ("log_recovery", "empty-log", vec![0]),
        (
            "log_recovery",
            "sealed-segments",
            [vec![2, 12], [3, 40, 50, 60, 70].repeat(12)].concat(),
        ),
        (
            "log_recovery",
            "power-loss-without-syncs",
            [
                vec![4 | 8 | 0x30, 10],
                [2, 90, 100, 110].repeat(10),
                vec![7, 0],
            ]
            .concat(),
        ),
        (
            "log_recovery",
            "flipped-index",
            [vec![0, 12], [0, 200].repeat(12), vec![0, 0, 60, 0, 1]].concat(),
        ),
        (
            "log_recovery",
            "forged-index-field",
            [
                vec![0, 12],
                [0, 200].repeat(12),
                vec![7 | 0x08, 0, 24, 0, 1],
            ]
            .concat(),
        ),
    ]
}
