//! Reading durable records by seq, concurrently with the writer.
//!
//! A read looks the seq's segment up in the shared list, jumps to the nearest index entry
//! and scans forward. Every record it passes is fully checked (checksum, seq, segment), the
//! skipped ones too, so damage anywhere on the read path comes back as `Error::Corrupt`
//! and never as data. A reader never goes past the head it loaded at the start, and the
//! writer publishes the head only after the bytes are synced, so readers see exactly the
//! acknowledged records: sealed segments through their read-only maps, the active segment
//! with positional reads into pooled buffers, bounded by its durable length.

use std::fmt;
use std::sync::Arc;

use crate::error::Error;
use crate::format::{decode_record, peek_frame_bytes, Frame, RECORD_HEADER_BYTES};
use crate::limits::{
    ITER_CHUNK_BYTES_MAX, ITER_CHUNK_RECORDS_MAX, READ_CHUNK_BYTES, RECORD_PAYLOAD_BYTES_MAX,
};
use crate::shared::{Segment, Shared, Source, View};
use crate::storage::{FsStorage, Storage, StorageFile};
use crate::{Record, Seq};

/// A handle for reading a log's durable records; cheap to clone and to send to threads.
pub struct LogReader<S: Storage = FsStorage> {
    shared: Arc<Shared<S>>,
}

impl<S: Storage> Clone for LogReader<S> {
    fn clone(&self) -> Self {
        LogReader {
            shared: self.shared.clone(),
        }
    }
}

impl<S: Storage> fmt::Debug for LogReader<S> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("LogReader")
            .field("storage", &self.shared.storage.describe(""))
            .field("head", &self.head())
            .finish()
    }
}

/// How much a read may still return.
struct Budget {
    records_max: usize,
    bytes_max: usize,
    bytes: usize,
}

impl Budget {
    /// Whether a record of `payload_bytes` still fits after `taken` records; the first
    /// record always does.
    fn admits(&self, taken: usize, payload_bytes: usize) -> bool {
        taken < self.records_max
            && (taken == 0 || self.bytes.saturating_add(payload_bytes) <= self.bytes_max)
    }
}

impl<S: Storage> LogReader<S> {
    pub(crate) fn new(shared: Arc<Shared<S>>) -> LogReader<S> {
        LogReader { shared }
    }

    /// The last seq readers can see: the last record `append_batch` made durable and
    /// returned. `None` while the log is empty.
    pub fn head(&self) -> Option<Seq> {
        self.shared.head().map(Seq)
    }

    /// Records with seq at or after `from` (seq 0 counts as 1), in order, up to the head:
    /// at most `max_records` (0 counts as 1) and, after the first, only while their payloads
    /// total at most `max_bytes`. At least one record is returned if any exists, however
    /// large. Empty if `from` is past the head.
    pub fn read(
        &self,
        from: Seq,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, Error> {
        let Some(head) = self.shared.head() else {
            return Ok(Vec::new());
        };
        self.read_until(from.get().max(1), head, max_records.max(1), max_bytes)
    }

    /// An iterator over the records from `from` (seq 0 counts as 1) up to the head at the
    /// time of this call, fetched in chunks of `limits::ITER_CHUNK_RECORDS_MAX` records or
    /// `limits::ITER_CHUNK_BYTES_MAX` bytes. After an error it yields nothing more.
    pub fn iter_from(
        &self,
        from: Seq,
    ) -> impl Iterator<Item = Result<Record, Error>> + Send + 'static {
        Records {
            reader: self.clone(),
            next: from.get().max(1),
            end: self.shared.head().unwrap_or(0),
            chunk: Vec::new().into_iter(),
            failed: false,
        }
    }

    /// Records `from..=end` (`end` at most the head), within the limits.
    fn read_until(
        &self,
        from: u64,
        end: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, Error> {
        let mut records = Vec::new();
        let mut budget = Budget {
            records_max: max_records,
            bytes_max: max_bytes,
            bytes: 0,
        };
        let mut seq = from;
        while seq <= end && records.len() < max_records {
            let segment = self.shared.segment_for(seq);
            let view = segment.view(&self.shared.storage, seq)?;
            let segment_last_seq = view
                .last_seq
                .expect("a segment that holds a seq up to the head has records");
            let until = end.min(segment_last_seq);
            let before = records.len();
            let full = self.read_segment(&segment, view, seq, until, &mut budget, &mut records)?;
            debug_assert!(records.len() > before || full);
            if full {
                break;
            }
            seq = until + 1;
        }
        Ok(records)
    }

    /// Appends the records `from..=until` of one segment to `records`, as the budget
    /// allows; returns whether the budget ran out.
    fn read_segment(
        &self,
        segment: &Segment<S>,
        view: View<S>,
        from: u64,
        until: u64,
        budget: &mut Budget,
        records: &mut Vec<Record>,
    ) -> Result<bool, Error> {
        let mut bytes = match &view.source {
            Source::Map(map) => Bytes::Map(&map[..view.durable_bytes as usize]),
            Source::File(file) => Bytes::File {
                file: &**file,
                buffer: self.shared.take_buffer(),
                buffer_position: 0,
                durable_bytes: view.durable_bytes,
            },
        };
        let result = read_frames(
            segment,
            &mut bytes,
            view.start_seq,
            view.start_position,
            from,
            until,
            budget,
            records,
        );
        if let Bytes::File { buffer, .. } = bytes {
            self.shared.return_buffer(buffer);
        }
        result
    }
}

/// The bytes of one segment, as a reader reaches them.
enum Bytes<'a, F: StorageFile> {
    /// A sealed segment's map, cut at its durable length.
    Map(&'a [u8]),
    /// The active segment, read in chunks into `buffer`, which holds the bytes from
    /// `buffer_position` on.
    File {
        file: &'a F,
        buffer: Vec<u8>,
        buffer_position: u64,
        durable_bytes: u64,
    },
}

impl<F: StorageFile> Bytes<'_, F> {
    /// The bytes from `position` on, at least `wanted` of them unless the durable part
    /// ends sooner.
    fn at(&mut self, position: u64, wanted: u64) -> std::io::Result<&[u8]> {
        match self {
            Bytes::Map(bytes) => Ok(&bytes[(position as usize).min(bytes.len())..]),
            Bytes::File {
                file,
                buffer,
                buffer_position,
                durable_bytes,
            } => {
                let available = durable_bytes.saturating_sub(position);
                let wanted = wanted.min(available);
                let buffered = position >= *buffer_position
                    && position + wanted <= *buffer_position + buffer.len() as u64;
                if !buffered {
                    let length = READ_CHUNK_BYTES.max(wanted).min(available);
                    buffer.resize(length as usize, 0);
                    file.read_at(buffer, position)?;
                    *buffer_position = position;
                }
                Ok(&buffer[(position - *buffer_position) as usize..])
            }
        }
    }
}

/// Walks frames from an index entry, checking each, collecting those in `from..=until`.
#[allow(clippy::too_many_arguments)]
fn read_frames<S: Storage>(
    segment: &Segment<S>,
    bytes: &mut Bytes<'_, S::File>,
    start_seq: u64,
    start_position: u64,
    from: u64,
    until: u64,
    budget: &mut Budget,
    records: &mut Vec<Record>,
) -> Result<bool, Error> {
    assert!(start_seq <= from, "the index entry is at or before the seq");
    let mut seq = start_seq;
    let mut position = start_position;
    while seq <= until {
        let window = bytes.at(position, RECORD_HEADER_BYTES).map_err(|source| {
            Error::io(
                format!("cannot read segment {} at byte {position}", segment.name),
                source,
            )
        })?;
        let frame_bytes = peek_frame_bytes(window)
            .unwrap_or(RECORD_HEADER_BYTES)
            .min(RECORD_HEADER_BYTES + u64::from(RECORD_PAYLOAD_BYTES_MAX));
        let window = if (window.len() as u64) < frame_bytes {
            bytes.at(position, frame_bytes).map_err(|source| {
                Error::io(
                    format!("cannot read segment {} at byte {position}", segment.name),
                    source,
                )
            })?
        } else {
            window
        };
        let (header, payload) = match decode_record(window, segment.first_seq) {
            Ok(Frame::Record { header, payload }) => (header, payload),
            Ok(Frame::Zeros) => {
                return Err(Error::corrupt(
                    &segment.name,
                    position,
                    format!("zeros where seq {seq} was expected"),
                ));
            }
            Err(error) => {
                return Err(Error::corrupt(
                    &segment.name,
                    position,
                    format!("invalid record where seq {seq} was expected: {error}"),
                ));
            }
        };
        if header.seq != seq {
            return Err(Error::corrupt(
                &segment.name,
                position,
                format!("expected seq {seq}, found a record with seq {}", header.seq),
            ));
        }
        if seq >= from {
            if !budget.admits(records.len(), payload.len()) {
                return Ok(true);
            }
            budget.bytes += payload.len();
            records.push(Record {
                seq: Seq(seq),
                timestamp_ms: header.timestamp_ms,
                payload: payload.to_vec(),
            });
            if records.len() >= budget.records_max {
                return Ok(true);
            }
        }
        position += header.frame_bytes();
        seq += 1;
    }
    Ok(false)
}

/// The iterator of `LogReader::iter_from`.
struct Records<S: Storage> {
    reader: LogReader<S>,
    next: u64,
    end: u64,
    chunk: std::vec::IntoIter<Record>,
    failed: bool,
}

impl<S: Storage> Iterator for Records<S> {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.chunk.next() {
            return Some(Ok(record));
        }
        if self.failed || self.next > self.end {
            return None;
        }
        match self.reader.read_until(
            self.next,
            self.end,
            ITER_CHUNK_RECORDS_MAX,
            ITER_CHUNK_BYTES_MAX,
        ) {
            Ok(records) => {
                let last = records
                    .last()
                    .expect("a read below the head returns a record")
                    .seq
                    .get();
                assert_eq!(records[0].seq.get(), self.next, "reads are gap-free");
                self.next = last + 1;
                self.chunk = records.into_iter();
                self.chunk.next().map(Ok)
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimStorage;
    use crate::{Log, LogOptions, RecordInput};

    /// A log of 20 records, seq N with a payload of N * 10 bytes, over several 1 KiB
    /// segments (some of them sealed and mapped, the newest read with positional reads).
    fn log() -> Log<SimStorage> {
        let options = LogOptions {
            segment_size_bytes_max: 1024,
            preallocate: false,
            ..LogOptions::default()
        };
        let mut log = Log::open_with(SimStorage::new(), options).expect("open");
        for seq in 1..=20u64 {
            let payload = vec![seq as u8; seq as usize * 10];
            log.append_batch(&[RecordInput {
                timestamp_ms: 0,
                payload: &payload,
            }])
            .expect("append");
        }
        log
    }

    /// Reads with the given limits and compares the seqs returned.
    fn check(
        log: &Log<SimStorage>,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        expected: &[u64],
    ) {
        let records = log
            .reader()
            .read(Seq(from), max_records, max_bytes)
            .expect("read");
        let seqs: Vec<u64> = records.iter().map(|record| record.seq.get()).collect();
        assert_eq!(seqs, expected, "read({from}, {max_records}, {max_bytes})");
        for record in records {
            assert_eq!(
                record.payload,
                vec![record.seq.get() as u8; record.seq.get() as usize * 10]
            );
        }
    }

    #[test]
    fn reads_stop_at_the_record_limit() {
        let log = log();
        check(&log, 1, 5, usize::MAX, &[1, 2, 3, 4, 5]);
        check(&log, 18, 5, usize::MAX, &[18, 19, 20]);
        check(&log, 7, 0, usize::MAX, &[7]);
    }

    #[test]
    fn reads_stop_before_the_byte_limit_but_return_at_least_one_record() {
        let log = log();
        check(&log, 1, 100, 30, &[1, 2]);
        check(&log, 1, 100, 29, &[1]);
        check(&log, 5, 100, 0, &[5]);
        check(&log, 19, 100, 1, &[19]);
    }

    #[test]
    fn reads_cross_segments_and_stop_at_the_head() {
        let log = log();
        let all: Vec<u64> = (1..=20).collect();
        check(&log, 1, 1000, usize::MAX, &all);
        check(&log, 0, 1000, usize::MAX, &all);
        check(&log, 21, 1000, usize::MAX, &[]);
        check(&log, u64::MAX, 1000, usize::MAX, &[]);
    }

    #[test]
    fn iteration_ends_at_the_head_of_its_start() {
        let mut log = log();
        let records = log.reader().iter_from(Seq(15));
        log.append_batch(&[RecordInput {
            timestamp_ms: 0,
            payload: b"later",
        }])
        .expect("append");
        let seqs: Vec<u64> = records
            .map(|record| record.expect("read").seq.get())
            .collect();
        assert_eq!(seqs, vec![15, 16, 17, 18, 19, 20]);
        assert_eq!(log.reader().iter_from(Seq(21)).count(), 1);
    }

    #[test]
    fn readers_are_send_sync_and_static() {
        fn assert_traits<T: Clone + Send + Sync + 'static>(_: &T) {}
        let log = log();
        let reader = log.reader();
        assert_traits(&reader);
        let handle = std::thread::spawn(move || reader.read(Seq(3), 1, 1).expect("read")[0].seq);
        assert_eq!(handle.join().expect("thread"), Seq(3));
    }
}
