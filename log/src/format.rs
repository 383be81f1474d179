//! The on-disk byte layout: file names, the segment header and the record frame.
//!
//! This module only turns values into bytes and back; it does no I/O, so every rule about
//! what a valid frame is lives in one place and is tested in isolation. `FORMAT.md` draws
//! the same layout as byte diagrams; change both together. All integers are fixed-width
//! little-endian; nothing on disk is a `usize`.

use std::fmt;

use crate::limits::{BATCH_RECORDS_MAX, RECORD_PAYLOAD_BYTES_MAX};

/// Version of the segment and index formats this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// First bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"SWLOGSEG";

/// Size of the segment header; the first record starts right after it.
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 32;

/// Size of a record frame's header; the payload follows it.
pub(crate) const RECORD_HEADER_BYTES: u64 = 32;

/// File name suffix of a segment.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";

/// File name suffix of a segment's persisted sparse index.
pub(crate) const INDEX_SUFFIX: &str = ".idx";

/// Suffix of a file that is still being prepared; such files are removed at open.
pub(crate) const TEMPORARY_SUFFIX: &str = ".tmp";

/// The lock file held (flock) for as long as a `Log` is open.
pub(crate) const LOCK_FILE_NAME: &str = "LOCK";

/// Digits in the zero-padded seq of a file name: enough for any u64, so names sort.
const NAME_DIGITS: usize = 20;

/// The file name of the segment whose first record has `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The file name of the persisted index of the segment starting at `first_seq`.
pub(crate) fn index_name(first_seq: u64) -> String {
    format!("{first_seq:020}{INDEX_SUFFIX}")
}

/// The name under which `name` is prepared before it is renamed into place.
pub(crate) fn temporary_name(name: &str) -> String {
    format!("{name}{TEMPORARY_SUFFIX}")
}

/// What a file in the log directory is, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A segment, with the first seq from its name.
    Segment(u64),
    /// A persisted index, with its segment's first seq.
    Index(u64),
    /// A leftover of an interrupted roll or index write.
    Temporary,
    /// The lock file.
    Lock,
    /// Anything else; the log leaves it alone.
    Other,
}

/// Classifies a directory entry by name.
pub(crate) fn classify(name: &str) -> FileKind {
    if name == LOCK_FILE_NAME {
        return FileKind::Lock;
    }
    if name.ends_with(TEMPORARY_SUFFIX) {
        return FileKind::Temporary;
    }
    let numbered = |suffix: &str| -> Option<u64> {
        let digits = name.strip_suffix(suffix)?;
        if digits.len() != NAME_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    if let Some(first_seq) = numbered(SEGMENT_SUFFIX) {
        return FileKind::Segment(first_seq);
    }
    if let Some(first_seq) = numbered(INDEX_SUFFIX) {
        return FileKind::Index(first_seq);
    }
    FileKind::Other
}

/// Encodes the header of a segment whose first record will have `first_seq`.
///
/// ```text
/// 0       8            12             16          24      28           32
/// | magic | version u32 | header_bytes | first_seq | flags | header_crc |
/// ```
pub(crate) fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    assert!(first_seq >= 1, "seqs start at 1");
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
    header[16..24].copy_from_slice(&first_seq.to_le_bytes());
    // Bytes 24..28 are the flags, none defined in version 1.
    let crc = crc32fast::hash(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Decodes and checks a segment header; returns the segment's first seq, or why the
/// header is invalid.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < SEGMENT_HEADER_BYTES as usize {
        return Err(format!(
            "the file has {} bytes, fewer than the {SEGMENT_HEADER_BYTES}-byte segment header",
            bytes.len()
        ));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err(format!(
            "bad magic {:02x?}, expected {:02x?}",
            &bytes[0..8],
            SEGMENT_MAGIC
        ));
    }
    let stored = read_u32(bytes, 28);
    let computed = crc32fast::hash(&bytes[0..28]);
    if stored != computed {
        return Err(format!(
            "header crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    let version = read_u32(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version} is not supported (this build reads version {FORMAT_VERSION})"
        ));
    }
    let header_bytes = read_u32(bytes, 12);
    if u64::from(header_bytes) != SEGMENT_HEADER_BYTES {
        return Err(format!(
            "header size {header_bytes}, expected {SEGMENT_HEADER_BYTES}"
        ));
    }
    let flags = read_u32(bytes, 24);
    if flags != 0 {
        return Err(format!("unknown header flags {flags:#010x}"));
    }
    let first_seq = read_u64(bytes, 16);
    if first_seq == 0 {
        return Err("first seq is 0; seqs start at 1".to_owned());
    }
    Ok(first_seq)
}

/// The fixed-size header of one record frame.
///
/// ```text
/// 0             4     8     16             24                   28                   32
/// | payload_bytes | crc | seq | timestamp_ms | batch_record_index | batch_record_count | payload
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Length of the payload that follows the header.
    pub payload_bytes: u32,
    /// The stored checksum (see `frame_crc`).
    pub crc: u32,
    /// The record's seq.
    pub seq: u64,
    /// The caller's timestamp.
    pub timestamp_ms: i64,
    /// This record's place in its batch, from 0.
    pub batch_record_index: u32,
    /// Records in this record's batch.
    pub batch_record_count: u32,
}

impl FrameHeader {
    /// Bytes of the whole frame, header included.
    pub fn frame_bytes(&self) -> u64 {
        RECORD_HEADER_BYTES + u64::from(self.payload_bytes)
    }

    /// The seq of the first record of this record's batch.
    pub fn batch_first_seq(&self) -> u64 {
        self.seq - u64::from(self.batch_record_index)
    }

    /// Whether this record is the last of its batch.
    pub fn is_batch_end(&self) -> bool {
        self.batch_record_index + 1 == self.batch_record_count
    }
}

/// What the bytes at a record position hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A complete frame whose checksum and fields are valid.
    Record {
        /// The decoded header.
        header: FrameHeader,
        /// The payload bytes.
        payload: &'a [u8],
    },
    /// A record header of all zero bytes (or fewer than a header's bytes, all zero): no
    /// record was ever written here, as in preallocated space. Seq 0 and a batch of 0
    /// records are invalid, so no valid frame starts with 32 zero bytes.
    Zeros,
}

/// Why the bytes at a record position are not a valid frame. `Copy` and allocation-free,
/// because the torn-tail search tries this at every byte position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer than a header's bytes remain and they are not all zero.
    PartialHeader {
        /// Bytes left.
        available: u64,
    },
    /// The length field exceeds the payload limit.
    PayloadTooLarge {
        /// The stored length.
        payload_bytes: u32,
    },
    /// The batch fields cannot be right (empty batch, index past count, count past limit).
    BatchFields {
        /// The stored index.
        index: u32,
        /// The stored count.
        count: u32,
    },
    /// The seq, or the first seq of its batch, lies before the segment's first seq.
    SeqOutOfSegment {
        /// The stored seq.
        seq: u64,
        /// The stored index in the batch.
        index: u32,
        /// The segment's first seq.
        segment_first_seq: u64,
    },
    /// The frame runs past the end of the available bytes.
    Truncated {
        /// The frame's size according to its header.
        frame_bytes: u64,
        /// Bytes left.
        available: u64,
    },
    /// The checksum does not match.
    Crc {
        /// The checksum in the frame.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::PartialHeader { available } => write!(
                formatter,
                "only {available} bytes left, fewer than a {RECORD_HEADER_BYTES}-byte record header"
            ),
            FrameError::PayloadTooLarge { payload_bytes } => write!(
                formatter,
                "payload length {payload_bytes} exceeds the limit of {RECORD_PAYLOAD_BYTES_MAX}"
            ),
            FrameError::BatchFields { index, count } => write!(
                formatter,
                "impossible batch fields: record index {index} of a batch of {count} \
                 (at most {BATCH_RECORDS_MAX})"
            ),
            FrameError::SeqOutOfSegment {
                seq,
                index,
                segment_first_seq,
            } => write!(
                formatter,
                "seq {seq} (record {index} of its batch) does not belong to the segment \
                 starting at seq {segment_first_seq}"
            ),
            FrameError::Truncated {
                frame_bytes,
                available,
            } => write!(
                formatter,
                "record of {frame_bytes} bytes runs past the end of the data ({available} bytes left)"
            ),
            FrameError::Crc { stored, computed } => write!(
                formatter,
                "crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }
}

/// The checksum of a frame: CRC32 over the segment's first seq (8 bytes little-endian,
/// not stored in the frame, so a frame copied into another segment fails), then every byte
/// of the frame except the checksum field itself.
fn frame_crc(segment_first_seq: u64, frame: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&segment_first_seq.to_le_bytes());
    hasher.update(&frame[0..4]);
    hasher.update(&frame[8..]);
    hasher.finalize()
}

/// Appends one encoded record frame to `out`.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    segment_first_seq: u64,
    seq: u64,
    timestamp_ms: i64,
    batch_record_index: u32,
    batch_record_count: u32,
    payload: &[u8],
) {
    assert!(seq >= segment_first_seq, "a record belongs to its segment");
    assert!(
        batch_record_index < batch_record_count,
        "index inside the batch"
    );
    assert!(
        batch_record_count <= BATCH_RECORDS_MAX,
        "batch within its limit"
    );
    let payload_bytes =
        u32::try_from(payload.len()).expect("payload length checked against the limit");
    assert!(
        payload_bytes <= RECORD_PAYLOAD_BYTES_MAX,
        "payload within its limit"
    );
    let start = out.len();
    out.extend_from_slice(&payload_bytes.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&batch_record_index.to_le_bytes());
    out.extend_from_slice(&batch_record_count.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = frame_crc(segment_first_seq, &out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The frame size a record header at the start of `bytes` claims, without checking it;
/// readers use it to know how many bytes to fetch before decoding. `None` if fewer than
/// four bytes are available.
pub(crate) fn peek_frame_bytes(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < 4 {
        return None;
    }
    Some(RECORD_HEADER_BYTES + u64::from(read_u32(bytes, 0)))
}

/// Decodes the frame at the start of `bytes` (which may extend past it) and checks
/// everything that can be checked without context: lengths, batch fields, that the seq
/// belongs to the segment, and the checksum. The caller checks the seq it expected.
pub(crate) fn decode_record(bytes: &[u8], segment_first_seq: u64) -> Result<Frame<'_>, FrameError> {
    let header_bytes = RECORD_HEADER_BYTES as usize;
    if bytes.len() < header_bytes {
        if bytes.iter().all(|byte| *byte == 0) {
            return Ok(Frame::Zeros);
        }
        return Err(FrameError::PartialHeader {
            available: bytes.len() as u64,
        });
    }
    if bytes[..header_bytes].iter().all(|byte| *byte == 0) {
        return Ok(Frame::Zeros);
    }
    let header = read_frame_header(bytes);
    if header.payload_bytes > RECORD_PAYLOAD_BYTES_MAX {
        return Err(FrameError::PayloadTooLarge {
            payload_bytes: header.payload_bytes,
        });
    }
    if header.batch_record_count == 0
        || header.batch_record_count > BATCH_RECORDS_MAX
        || header.batch_record_index >= header.batch_record_count
    {
        return Err(FrameError::BatchFields {
            index: header.batch_record_index,
            count: header.batch_record_count,
        });
    }
    if header.seq < segment_first_seq
        || u64::from(header.batch_record_index) > header.seq - segment_first_seq
    {
        return Err(FrameError::SeqOutOfSegment {
            seq: header.seq,
            index: header.batch_record_index,
            segment_first_seq,
        });
    }
    let frame_bytes = header.frame_bytes();
    if frame_bytes > bytes.len() as u64 {
        return Err(FrameError::Truncated {
            frame_bytes,
            available: bytes.len() as u64,
        });
    }
    let frame = &bytes[..frame_bytes as usize];
    let computed = frame_crc(segment_first_seq, frame);
    if computed != header.crc {
        return Err(FrameError::Crc {
            stored: header.crc,
            computed,
        });
    }
    Ok(Frame::Record {
        header,
        payload: &frame[header_bytes..],
    })
}

/// The header fields at the start of `bytes`, unchecked: for frames already validated by
/// `decode_record` (a second pass over a verified segment), or inside `decode_record`.
///
/// # Panics
///
/// If `bytes` is shorter than a record header.
pub(crate) fn read_frame_header(bytes: &[u8]) -> FrameHeader {
    FrameHeader {
        payload_bytes: read_u32(bytes, 0),
        crc: read_u32(bytes, 4),
        seq: read_u64(bytes, 8),
        timestamp_ms: read_i64(bytes, 16),
        batch_record_index: read_u32(bytes, 24),
        batch_record_count: read_u32(bytes, 28),
    }
}

/// Reads a little-endian u32 at `position`; the caller has checked the length.
pub(crate) fn read_u32(bytes: &[u8], position: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[position..position + 4]);
    u32::from_le_bytes(field)
}

/// Reads a little-endian u64 at `position`; the caller has checked the length.
pub(crate) fn read_u64(bytes: &[u8], position: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[position..position + 8]);
    u64::from_le_bytes(field)
}

/// Reads a little-endian i64 at `position`; the caller has checked the length.
fn read_i64(bytes: &[u8], position: usize) -> i64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[position..position + 8]);
    i64::from_le_bytes(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENT_FIRST_SEQ: u64 = 10;

    /// Encodes one record (seq 12, record 1 of a batch of 3), lets `damage` change the
    /// bytes, decodes them and compares with `expected` (`Ok(())` meaning "decodes to the
    /// same record").
    fn check(payload: &[u8], damage: impl FnOnce(&mut Vec<u8>), expected: Result<(), FrameError>) {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, SEGMENT_FIRST_SEQ, 12, -5, 1, 3, payload);
        assert_eq!(
            bytes.len() as u64,
            RECORD_HEADER_BYTES + payload.len() as u64
        );
        damage(&mut bytes);
        let decoded = decode_record(&bytes, SEGMENT_FIRST_SEQ);
        match (decoded, expected) {
            (
                Ok(Frame::Record {
                    header,
                    payload: decoded_payload,
                }),
                Ok(()),
            ) => {
                assert_eq!(header.seq, 12);
                assert_eq!(header.timestamp_ms, -5);
                assert_eq!(header.batch_record_index, 1);
                assert_eq!(header.batch_record_count, 3);
                assert_eq!(header.batch_first_seq(), 11);
                assert!(!header.is_batch_end());
                assert_eq!(decoded_payload, payload);
            }
            (Err(actual), Err(expected)) => assert_eq!(actual, expected),
            (actual, expected) => panic!("decoded {actual:?}, expected {expected:?}"),
        }
    }

    /// Rewrites a header field and recomputes the checksum, so only the field check can
    /// catch it.
    fn rewrite(bytes: &mut [u8], position: usize, value: &[u8]) {
        bytes[position..position + value.len()].copy_from_slice(value);
        let crc = frame_crc(SEGMENT_FIRST_SEQ, bytes);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn record_round_trips() {
        check(b"hello", |_| {}, Ok(()));
        check(b"", |_| {}, Ok(()));
        check(&[0u8; 100], |_| {}, Ok(()));
    }

    #[test]
    fn record_trailing_bytes_are_ignored() {
        check(
            b"hello",
            |bytes| bytes.extend_from_slice(b"next record"),
            Ok(()),
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut clean = Vec::new();
        encode_record(&mut clean, SEGMENT_FIRST_SEQ, 12, 7, 0, 1, b"payload bytes");
        for bit in 0..clean.len() * 8 {
            let mut bytes = clean.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_record(&bytes, SEGMENT_FIRST_SEQ).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn record_in_another_segment_fails_its_checksum() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, SEGMENT_FIRST_SEQ, 12, 0, 0, 1, b"x");
        assert!(matches!(
            decode_record(&bytes, SEGMENT_FIRST_SEQ - 1),
            Err(FrameError::Crc { .. })
        ));
    }

    #[test]
    fn record_crc_mismatch_names_both_values() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, SEGMENT_FIRST_SEQ, 12, -5, 1, 3, b"hello");
        let stored = read_u32(&bytes, 4);
        bytes[34] ^= 0x01;
        match decode_record(&bytes, SEGMENT_FIRST_SEQ) {
            Err(FrameError::Crc {
                stored: actual_stored,
                computed,
            }) => {
                assert_eq!(actual_stored, stored);
                assert_ne!(computed, stored);
            }
            other => panic!("expected a crc mismatch, got {other:?}"),
        }
        let message = FrameError::Crc {
            stored: 0xdead_beef,
            computed: 1,
        }
        .to_string();
        assert!(
            message.contains("0xdeadbeef") && message.contains("0x00000001"),
            "{message}"
        );
    }

    #[test]
    fn record_truncated_anywhere_is_an_error() {
        let mut clean = Vec::new();
        encode_record(&mut clean, SEGMENT_FIRST_SEQ, 12, 0, 0, 1, b"0123456789");
        for length in 1..clean.len() {
            let result = decode_record(&clean[..length], SEGMENT_FIRST_SEQ);
            let expected = if length < RECORD_HEADER_BYTES as usize {
                Err(FrameError::PartialHeader {
                    available: length as u64,
                })
            } else {
                Err(FrameError::Truncated {
                    frame_bytes: clean.len() as u64,
                    available: length as u64,
                })
            };
            assert_eq!(result, expected, "length {length}");
        }
    }

    #[test]
    fn zeros_are_not_a_record() {
        assert_eq!(
            decode_record(&[0u8; 64], SEGMENT_FIRST_SEQ),
            Ok(Frame::Zeros)
        );
        assert_eq!(
            decode_record(&[0u8; 5], SEGMENT_FIRST_SEQ),
            Ok(Frame::Zeros)
        );
        assert_eq!(decode_record(&[], SEGMENT_FIRST_SEQ), Ok(Frame::Zeros));
        assert_eq!(
            decode_record(&[0, 0, 1], SEGMENT_FIRST_SEQ),
            Err(FrameError::PartialHeader { available: 3 })
        );
    }

    #[test]
    fn impossible_fields_are_rejected_even_with_a_matching_checksum() {
        let too_large = (RECORD_PAYLOAD_BYTES_MAX + 1).to_le_bytes();
        check(
            b"x",
            |bytes| rewrite(bytes, 0, &too_large),
            Err(FrameError::PayloadTooLarge {
                payload_bytes: RECORD_PAYLOAD_BYTES_MAX + 1,
            }),
        );
        check(
            b"x",
            |bytes| rewrite(bytes, 28, &0u32.to_le_bytes()),
            Err(FrameError::BatchFields { index: 1, count: 0 }),
        );
        check(
            b"x",
            |bytes| rewrite(bytes, 24, &3u32.to_le_bytes()),
            Err(FrameError::BatchFields { index: 3, count: 3 }),
        );
        check(
            b"x",
            |bytes| rewrite(bytes, 8, &9u64.to_le_bytes()),
            Err(FrameError::SeqOutOfSegment {
                seq: 9,
                index: 1,
                segment_first_seq: SEGMENT_FIRST_SEQ,
            }),
        );
        // Seq 10 as record 1 would put the batch's start at seq 9, in the previous segment.
        check(
            b"x",
            |bytes| rewrite(bytes, 8, &10u64.to_le_bytes()),
            Err(FrameError::SeqOutOfSegment {
                seq: 10,
                index: 1,
                segment_first_seq: SEGMENT_FIRST_SEQ,
            }),
        );
    }

    #[test]
    fn peek_reads_the_claimed_frame_size() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, SEGMENT_FIRST_SEQ, 12, 0, 0, 1, b"abc");
        assert_eq!(peek_frame_bytes(&bytes), Some(RECORD_HEADER_BYTES + 3));
        assert_eq!(peek_frame_bytes(&bytes[..3]), None);
    }

    #[test]
    fn segment_header_round_trips_and_every_bit_flip_is_detected() {
        let header = encode_segment_header(42);
        assert_eq!(decode_segment_header(&header), Ok(42));
        for bit in 0..header.len() * 8 {
            let mut bytes = header;
            bytes[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_segment_header(&bytes).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
        assert!(decode_segment_header(&header[..31]).is_err());
    }

    #[test]
    fn segment_header_rejects_another_version_with_a_clear_reason() {
        let mut header = encode_segment_header(1);
        header[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&header[0..28]);
        header[28..32].copy_from_slice(&crc.to_le_bytes());
        let reason = decode_segment_header(&header).unwrap_err();
        assert!(reason.contains("version 2"), "{reason}");
    }

    #[test]
    fn names_sort_by_seq_and_classify_back() {
        assert_eq!(segment_name(1), "00000000000000000001.seg");
        assert_eq!(index_name(1), "00000000000000000001.idx");
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(
            classify(&segment_name(u64::MAX)),
            FileKind::Segment(u64::MAX)
        );
        assert_eq!(classify(&index_name(77)), FileKind::Index(77));
        assert_eq!(
            classify(&temporary_name(&segment_name(3))),
            FileKind::Temporary
        );
        assert_eq!(classify("LOCK"), FileKind::Lock);
        assert_eq!(classify("1.seg"), FileKind::Other);
        assert_eq!(classify("0000000000000000000a.seg"), FileKind::Other);
        assert_eq!(classify("99999999999999999999.seg"), FileKind::Other);
        assert_eq!(classify("notes.txt"), FileKind::Other);
    }
}
