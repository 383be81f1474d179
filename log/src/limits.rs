//! Every bound the log enforces, in one place, each with a note on how it was chosen.
//!
//! The compile-time assertions at the bottom check how the numbers relate, so that changing
//! one of them cannot silently break another (for example the largest record must still fit
//! in a default segment, and every byte position must still fit the index's `u32`).

use crate::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};

/// Largest payload of one record, in bytes.
///
/// The server caps a request body at 1 MiB (SPEC §6); an event's envelope adds a few hundred
/// bytes to the caller's data, so 4 MiB leaves 4x headroom without letting one record
/// dominate a segment or a read chunk.
pub const RECORD_PAYLOAD_BYTES_MAX: u32 = 4 * 1024 * 1024;

/// Most records in one `append_batch`.
///
/// The server folds at most 16,384 events into one group commit; 65,536 leaves 4x headroom
/// and keeps the per-record batch index well inside its `u32` field.
pub const BATCH_RECORDS_MAX: u32 = 65_536;

/// Largest encoded batch (record headers plus payloads), in bytes.
///
/// A batch is encoded into one buffer and written with one `write`, so this bounds the
/// writer's memory. 64 MiB holds sixteen maximum-size records, or more than 200,000
/// typical 256-byte events, which is far more than one group commit gathers at ~100 µs per
/// fsync.
pub const BATCH_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// What a record adds to its payload in a batch (its frame header): `BATCH_BYTES_MAX`
/// counts these bytes too, so a caller that merges batches sums `payload + this`.
pub const RECORD_FRAME_BYTES: u64 = RECORD_HEADER_BYTES;

/// Default for `LogOptions::segment_size_bytes_max`.
///
/// 64 MiB is large enough that rolling (a few fsyncs) happens rarely even at 80k appends/s
/// of 300-byte events (about every 3 s), and small enough that the newest segment, which
/// recovery scans in full, is read in well under a second.
pub const SEGMENT_SIZE_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Smallest accepted `LogOptions::segment_size_bytes_max`.
///
/// Tiny segments are only useful to tests that want many rolls; 1 KiB still holds the
/// segment header and several small records.
pub const SEGMENT_SIZE_BYTES_MAX_FLOOR: u64 = 1024;

/// Largest accepted `LogOptions::segment_size_bytes_max`.
///
/// 1 GiB, so that a segment plus one oversized batch stays below 4 GiB and every byte
/// position fits the `u32` of an index entry.
pub const SEGMENT_SIZE_BYTES_MAX_CEILING: u64 = 1024 * 1024 * 1024;

/// Distance in bytes between two entries of a segment's sparse index.
///
/// A read by seq jumps to the nearest entry and then scans (and checks) at most this many
/// bytes. 4 KiB is one page, about 14 typical records, while the index costs 8 bytes per
/// 4 KiB of log (0.2 %) in memory and on disk.
pub const INDEX_INTERVAL_BYTES: u64 = 4096;

/// Most entries in one index file; the decoder refuses larger counts before allocating.
///
/// One entry per `INDEX_INTERVAL_BYTES` of the largest possible segment, plus one.
pub const INDEX_ENTRIES_MAX: u64 = SEGMENT_BYTES_MAX / INDEX_INTERVAL_BYTES + 1;

/// Largest segment file the log can produce: the largest configurable segment, filled to
/// just below its limit, never exceeds this; nor does a segment that holds one batch larger
/// than the segment limit (a batch is never split across segments).
pub const SEGMENT_BYTES_MAX: u64 =
    SEGMENT_SIZE_BYTES_MAX_CEILING + BATCH_BYTES_MAX + SEGMENT_HEADER_BYTES;

/// Bytes read per positional read from the active segment.
///
/// 64 KiB amortizes the syscall over a few hundred typical records while staying small
/// enough to keep in a pool of reusable buffers.
pub const READ_CHUNK_BYTES: u64 = 64 * 1024;

/// Read buffers kept for reuse between reads of the active segment.
///
/// One per concurrently reading thread is enough; the server reads from a small blocking
/// pool, and extra readers simply allocate.
pub const READ_BUFFERS_POOLED_MAX: usize = 16;

/// Largest read buffer returned to the pool; a buffer grown for a huge record is dropped.
pub const READ_BUFFER_POOLED_BYTES_MAX: usize = 1024 * 1024;

/// Largest append buffer kept between batches; a buffer grown for an unusually large batch
/// shrinks back to this so one burst does not pin 64 MiB forever.
pub const APPEND_BUFFER_RETAINED_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Records fetched per chunk by `LogReader::iter_from`.
///
/// Same as the server's replay chunk: large enough to amortize the segment lookup, small
/// enough that an iterator holds little memory.
pub const ITER_CHUNK_RECORDS_MAX: usize = 1024;

/// Payload bytes fetched per chunk by `LogReader::iter_from` (at least one record is
/// always fetched, however large).
pub const ITER_CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Bytes scanned between two calls of a `verify` progress callback.
///
/// About a millisecond of work, so a progress bar moves smoothly without the callback
/// costing anything measurable.
pub const VERIFY_PROGRESS_INTERVAL_BYTES: u64 = 1024 * 1024;

// The largest record is a valid batch on its own.
const _: () = assert!(RECORD_HEADER_BYTES + RECORD_PAYLOAD_BYTES_MAX as u64 <= BATCH_BYTES_MAX);
// The largest record fits in a segment of the default size, so default segments never need
// the one-oversized-batch exception for a single record.
const _: () = assert!(
    SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + RECORD_PAYLOAD_BYTES_MAX as u64
        <= SEGMENT_SIZE_BYTES_DEFAULT
);
// Even the smallest segment holds its header and at least one empty record.
const _: () = assert!(SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES <= SEGMENT_SIZE_BYTES_MAX_FLOOR);
const _: () = assert!(SEGMENT_SIZE_BYTES_MAX_FLOOR <= SEGMENT_SIZE_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_SIZE_BYTES_DEFAULT <= SEGMENT_SIZE_BYTES_MAX_CEILING);
// Every byte position in any segment fits an index entry's u32.
const _: () = assert!(SEGMENT_BYTES_MAX <= u32::MAX as u64);
// Every seq offset inside a segment fits an index entry's u32: each record takes at least
// a header, so a segment holds fewer records than bytes / header.
const _: () = assert!(SEGMENT_BYTES_MAX / RECORD_HEADER_BYTES <= u32::MAX as u64);
// A batch's record count fits the frame's u32 fields.
const _: () = assert!(BATCH_RECORDS_MAX as u64 <= u32::MAX as u64);
// A full batch of empty records fits the byte limit, so the record-count limit is the one
// that binds for tiny records.
const _: () = assert!(BATCH_RECORDS_MAX as u64 * RECORD_HEADER_BYTES <= BATCH_BYTES_MAX);
const _: () = assert!(INDEX_INTERVAL_BYTES >= RECORD_HEADER_BYTES);
const _: () = assert!(READ_CHUNK_BYTES >= RECORD_HEADER_BYTES);
const _: () = assert!(READ_CHUNK_BYTES as usize <= READ_BUFFER_POOLED_BYTES_MAX);
const _: () = assert!(ITER_CHUNK_RECORDS_MAX > 0);
const _: () = assert!(VERIFY_PROGRESS_INTERVAL_BYTES > 0);

/// How far ahead of the data the active segment is preallocated. Writing into allocated
/// space lets `fdatasync` skip the metadata update (measured here: 8.5k/s against 7.6k/s,
/// p99 195 µs against 400 µs), and extending once every 4 MiB keeps nearly all of that
/// gain. Preallocating a whole 64 MiB segment instead made every open read 64 MiB of zeros
/// to find where the data ends (25–48 ms per in-process CLI command).
pub const PREALLOCATE_STEP_BYTES: u64 = 4 * 1024 * 1024;

/// The smallest preallocation step tried on a nearly full disk before falling back to
/// exactly what the batch needs. Halving from `PREALLOCATE_STEP_BYTES` reaches it in six
/// attempts, and below 64 KiB a step saves too few `fallocate` calls to be worth more
/// failed ones.
pub const ALLOCATE_STEP_BYTES_MIN: u64 = 64 * 1024;

const _: () = assert!(ALLOCATE_STEP_BYTES_MIN <= PREALLOCATE_STEP_BYTES);
