//! The stream index: which events of the log belong to each `(branch, stream)`, what
//! `GET /v1/streams/{stream}` reads (issue 11: memory bounded whatever the history).
//!
//! The log is cut into ranges of a fixed number of durable seqs ([`EngineConfig`]'s
//! `stream_index_range_events`, 65,536 by default). A full range is an immutable file in
//! `DIR/streams/` (its layout is in [`file`]); only the tail after the last full range is
//! in memory, so memory holds at most one range's seqs however long the history is, plus a
//! few bytes of fences per file.
//!
//! The commit thread pushes every durable batch into the tail (where `Shared::publish`
//! used to push into an in-memory index). When the tail covers a full range it is handed,
//! as it is, to a writer thread ([`writer`]) and stays readable in memory until its file
//! is in place, so neither the request that completed the range nor any reader waits for
//! the file. A file is written to a temporary name and renamed, without fsync: the index
//! is derived from the log, every file is checked whole at start-up (both CRCs, its range,
//! and the hash of its last event against the log's, which ties it to this very history),
//! and a file that fails any check, or is missing, is rebuilt from the log. So a crash can
//! cost a rebuild, never a wrong answer, and no fsync competes with the log's.
//!
//! The log crate stays payload-agnostic: this module is the only one that knows the index,
//! and it reads the branch and stream of an event with the envelope's decoder.
//!
//! [`EngineConfig`]: crate::engine::EngineConfig

#![deny(clippy::host_endian_bytes, clippy::big_endian_bytes)]

mod file;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use swarmlog_log::{LogReader, Seq};
use swarmlog_projections::{Envelope, EnvelopeError, GENESIS_HASH};

use crate::hub::Committed;
use crate::limits::STREAM_INDEX_FILES_OPEN_MAX;
use file::{Chain, IndexFile, Window};
use writer::Writer;

/// The directory of the stream index in a data directory.
pub fn stream_index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("streams")
}

/// Why the stream index could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamIndexError {
    /// A file or directory of the index could not be read or written.
    #[error("stream index {path}: {context}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What was being done.
        context: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An index file changed on disk after it was checked.
    #[error("corrupt stream index file {path} at byte {position}: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Where in the file.
        position: u64,
        /// What does not match.
        reason: String,
    },
    /// The log could not be read to rebuild the index.
    #[error("cannot read the log at seq {seq} to rebuild the stream index: {source}")]
    Log {
        /// The seq being read.
        seq: u64,
        /// The log's error.
        source: swarmlog_log::Error,
    },
    /// The log has no event at a seq up to its head.
    #[error("the log has no event at seq {seq}, below its head {head}")]
    MissingEvent {
        /// The seq.
        seq: u64,
        /// The log's head.
        head: u64,
    },
    /// A stored event does not decode.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// The seqs of each `(branch, stream)`'s events over part of the log, in memory: the tail
/// after the last full range, or a full range whose file is not written yet. Nested maps,
/// so that the commit thread looks streams up by `&str` without allocating.
#[derive(Debug, Default)]
pub struct StreamMap {
    branches: HashMap<String, HashMap<String, Vec<u64>>>,
    events: u64,
}

impl StreamMap {
    /// Records that event `seq` belongs to `stream` on `branch`; seqs come in order.
    pub fn push(&mut self, branch: &str, stream: &str, seq: u64) {
        let streams = match self.branches.get_mut(branch) {
            Some(streams) => streams,
            None => self.branches.entry(branch.to_owned()).or_default(),
        };
        match streams.get_mut(stream) {
            Some(seqs) => seqs.push(seq),
            None => {
                streams.insert(stream.to_owned(), vec![seq]);
            }
        }
        self.events += 1;
    }

    /// The seqs of a stream, in order (empty for a stream it has no event of).
    pub fn seqs(&self, branch: &str, stream: &str) -> &[u64] {
        self.branches
            .get(branch)
            .and_then(|streams| streams.get(stream))
            .map_or(&[], Vec::as_slice)
    }

    /// How many events it holds.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Every `(branch, stream, seqs)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &[u64])> {
        self.branches.iter().flat_map(|(branch, streams)| {
            streams
                .iter()
                .map(move |(stream, seqs)| (branch.as_str(), stream.as_str(), seqs.as_slice()))
        })
    }
}

/// A full range held in memory: while its file is being written, or when it could not be.
#[derive(Debug)]
pub(crate) struct MemoryRange {
    first: u64,
    last: u64,
    /// The hashes around it, which the file records.
    chain: Chain,
    streams: StreamMap,
}

/// A full range, on disk or in memory.
#[derive(Debug, Clone)]
enum Range {
    File(Arc<IndexFile>),
    Memory(Arc<MemoryRange>),
}

impl Range {
    fn last(&self) -> u64 {
        match self {
            Range::File(file) => file.last(),
            Range::Memory(range) => range.last,
        }
    }

    fn seqs(
        &self,
        branch: &str,
        stream: &str,
        window: Window,
        gate: &Gate,
    ) -> Result<Vec<u64>, StreamIndexError> {
        match self {
            Range::File(file) => {
                let _open = gate.enter();
                file.seqs(branch, stream, window)
            }
            Range::Memory(range) => Ok(within(range.streams.seqs(branch, stream), window).to_vec()),
        }
    }

    fn count_until(
        &self,
        branch: &str,
        stream: &str,
        until: u64,
        gate: &Gate,
    ) -> Result<u64, StreamIndexError> {
        match self {
            Range::File(file) => {
                let _open = gate.enter();
                file.count_until(branch, stream, until)
            }
            Range::Memory(range) => {
                let seqs = range.streams.seqs(branch, stream);
                Ok(seqs.partition_point(|seq| *seq <= until) as u64)
            }
        }
    }
}

/// The part of sorted `seqs` inside `window`.
fn within(seqs: &[u64], window: Window) -> &[u64] {
    let start = seqs.partition_point(|seq| *seq < window.from);
    let end = seqs.partition_point(|seq| *seq <= window.until);
    &seqs[start..end.max(start)]
}

/// What readers share with the commit and writer threads.
#[derive(Debug)]
struct Inner {
    /// The full ranges, by first seq.
    ranges: BTreeMap<u64, Range>,
    /// The events after the last full range.
    tail: StreamMap,
    /// The hash of the event before the tail's first.
    tail_previous_hash: [u8; 32],
    /// The last seq pushed (durable).
    head: u64,
}

/// One page of a stream's seqs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSeqs {
    /// The seqs, in order.
    pub seqs: Vec<u64>,
    /// The seq the next page starts from, when a limit cut this one short.
    pub next: Option<u64>,
}

/// The stream index of a data directory; see the module's documentation.
#[derive(Debug)]
pub struct StreamIndex {
    dir: PathBuf,
    range_events: u64,
    inner: Arc<RwLock<Inner>>,
    writer: Writer,
    gate: Gate,
}

impl StreamIndex {
    /// An empty index over `DIR/streams/` with ranges of `range_events` seqs, and its
    /// writer thread; [`StreamIndex::open`] loads it.
    pub fn new(data_dir: &Path, range_events: u32) -> std::io::Result<StreamIndex> {
        let dir = stream_index_dir(data_dir);
        let inner = Arc::new(RwLock::new(Inner {
            ranges: BTreeMap::new(),
            tail: StreamMap::default(),
            tail_previous_hash: GENESIS_HASH,
            head: 0,
        }));
        let writer = Writer::start(dir.clone(), Arc::downgrade(&inner))?;
        Ok(StreamIndex {
            dir,
            range_events: u64::from(range_events.max(1)),
            inner,
            writer,
            gate: Gate::new(STREAM_INDEX_FILES_OPEN_MAX),
        })
    }

    /// Loads the index of the log `reader` reads: checks every file of a full range up to
    /// the log's head (rebuilding from the log one that is missing or fails a check),
    /// removes files beyond the head and leftovers, and rebuilds the tail from the log.
    ///
    /// Each file is read whole (both CRCs, every offset) with plain reads. Which history
    /// it belongs to is checked along the hash chain, newest first: the newest file's last
    /// hash against the log's event, and every older file's against the previous hash of
    /// the file after it (see [`Chain`]). So the log is read once, not once per file,
    /// which keeps start-up from touching (and mapping into memory) a page of every
    /// segment.
    pub fn open(&self, reader: &LogReader) -> Result<(), StreamIndexError> {
        self.writer.flush();
        let head = reader.head().map_or(0, Seq::get);
        let found = self.list_files().unwrap_or_else(|error| {
            // A full disk cannot make the directory: the ranges are kept in memory until
            // the writer can write their files.
            tracing::warn!(%error, "cannot list the stream index; rebuilding it from the log");
            BTreeMap::new()
        });
        let (ranges, leftovers) = self.load_ranges(reader, head, found)?;
        let tail_previous_hash = match ranges.values().next_back() {
            Some(Range::File(file)) => file.last_hash(),
            Some(Range::Memory(range)) => range.chain.last,
            None => GENESIS_HASH,
        };
        for (first, path) in leftovers {
            tracing::warn!(file = %path.display(), first, head, "removing a stream index file that is beyond the log's head or not of this range size");
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), %error, "cannot remove a stream index file");
            }
        }
        let tail_first = head / self.range_events * self.range_events + 1;
        let tail = scan(reader, tail_first, head)?;
        *self.write() = Inner {
            ranges,
            tail,
            tail_previous_hash,
            head,
        };
        let unwritten: Vec<Arc<MemoryRange>> = self
            .read_lock()
            .ranges
            .values()
            .filter_map(|range| match range {
                Range::Memory(range) => Some(range.clone()),
                Range::File(_) => None,
            })
            .collect();
        for range in unwritten {
            // The writer tries again with every range it is given, and at every flush.
            self.writer.write(range);
        }
        Ok(())
    }

    /// Adds durable events, in seq order right after the last ones; hands a range that
    /// became full to the writer thread. Called by the commit thread after each fsync.
    ///
    /// # Panics
    /// If the events do not follow the last seq pushed: the commit thread publishes every
    /// durable batch once, in order.
    pub(crate) fn push<'a>(&self, events: impl Iterator<Item = &'a Arc<Committed>>) {
        let mut inner = self.write();
        for committed in events {
            let envelope = &committed.envelope;
            assert_eq!(
                envelope.seq,
                inner.head + 1,
                "durable events are indexed in order, without gaps"
            );
            inner
                .tail
                .push(&envelope.branch, &envelope.stream, envelope.seq);
            inner.head = envelope.seq;
            if envelope.seq % self.range_events == 0 {
                let chain = Chain {
                    previous: inner.tail_previous_hash,
                    last: envelope.hash,
                };
                inner.tail_previous_hash = envelope.hash;
                let range = Arc::new(MemoryRange {
                    first: envelope.seq + 1 - self.range_events,
                    last: envelope.seq,
                    chain,
                    streams: std::mem::take(&mut inner.tail),
                });
                inner
                    .ranges
                    .insert(range.first, Range::Memory(range.clone()));
                self.writer.write(range);
            }
        }
    }

    /// Waits until every full range handed to the writer has its file written (or failed
    /// to). The commit thread calls it before it closes the log, so the next process to
    /// open the data directory finds the files.
    pub fn flush(&self) {
        self.writer.flush();
    }

    /// The seqs of `stream` on `branch` from `from` to `until` (both inclusive, `until`
    /// bounded by the durable head), at most `limit` of them, with the seq of the next one
    /// when there are more.
    pub fn read(
        &self,
        branch: &str,
        stream: &str,
        from: u64,
        until: u64,
        limit: Option<usize>,
    ) -> Result<StreamSeqs, StreamIndexError> {
        let (ranges, tail, window) = {
            let inner = self.read_lock();
            let window = Window {
                from,
                until: until.min(inner.head),
            };
            let ranges: Vec<Range> = inner
                .ranges
                .range(..=window.until)
                .map(|(_, range)| range)
                .filter(|range| range.last() >= window.from)
                .cloned()
                .collect();
            let tail = within(inner.tail.seqs(branch, stream), window).to_vec();
            (ranges, tail, window)
        };
        let wanted = limit.map_or(usize::MAX, |limit| limit.saturating_add(1));
        let mut seqs = Vec::new();
        for range in ranges {
            if seqs.len() >= wanted {
                break;
            }
            seqs.extend(range.seqs(branch, stream, window, &self.gate)?);
        }
        if seqs.len() < wanted {
            seqs.extend(tail);
        }
        let next = match limit {
            Some(limit) if seqs.len() > limit => {
                let next = seqs[limit];
                seqs.truncate(limit);
                Some(next)
            }
            _ => None,
        };
        Ok(StreamSeqs { seqs, next })
    }

    /// How many events `stream` has on `branch` up to seq `until` (bounded by the durable
    /// head): its version as of `until`.
    pub fn count(&self, branch: &str, stream: &str, until: u64) -> Result<u64, StreamIndexError> {
        let (ranges, tail) = {
            let inner = self.read_lock();
            let until = until.min(inner.head);
            let ranges: Vec<Range> = inner
                .ranges
                .range(..=until)
                .map(|(_, range)| range.clone())
                .collect();
            let tail = inner.tail.seqs(branch, stream);
            (ranges, tail.partition_point(|seq| *seq <= until) as u64)
        };
        let mut count = tail;
        for range in ranges {
            count += range.count_until(branch, stream, until, &self.gate)?;
        }
        Ok(count)
    }

    /// The last seq the index holds.
    pub fn head(&self) -> u64 {
        self.read_lock().head
    }

    /// How many full ranges are on disk and how many only in memory.
    pub fn ranges(&self) -> (usize, usize) {
        let inner = self.read_lock();
        let on_disk = inner
            .ranges
            .values()
            .filter(|range| matches!(range, Range::File(_)))
            .count();
        (on_disk, inner.ranges.len() - on_disk)
    }

    /// The index files in the directory, by first seq; removes temporary leftovers.
    fn list_files(&self) -> Result<BTreeMap<u64, PathBuf>, StreamIndexError> {
        let io = |context| {
            let path = self.dir.display().to_string();
            move |source| StreamIndexError::Io {
                path,
                context,
                source,
            }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("cannot create the directory"))?;
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io("cannot list the directory"))? {
            let entry = entry.map_err(io("cannot list the directory"))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(file::TEMPORARY_SUFFIX) {
                if let Err(error) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(file = %entry.path().display(), %error, "cannot remove a leftover temporary file");
                }
            } else if let Some(first) = file::parse_name(name) {
                found.insert(first, entry.path());
            }
        }
        Ok(found)
    }

    /// The full ranges up to `head`, newest first: the files of `found` that pass their
    /// checks, and the others rebuilt from the log. Returns them and the files that fit no
    /// range.
    #[allow(clippy::type_complexity)]
    fn load_ranges(
        &self,
        reader: &LogReader,
        head: u64,
        mut found: BTreeMap<u64, PathBuf>,
    ) -> Result<(BTreeMap<u64, Range>, BTreeMap<u64, PathBuf>), StreamIndexError> {
        let full = head / self.range_events;
        let missing = (0..full)
            .filter(|index| !found.contains_key(&(index * self.range_events + 1)))
            .count();
        if missing > 0 {
            tracing::info!(
                files = missing,
                of = full,
                "building missing stream index files from the log"
            );
        }
        let mut ranges = BTreeMap::new();
        let mut buffer = Vec::new();
        // The hash the next (older) range must end with; the log says it for the newest.
        let mut expected_last: Option<[u8; 32]> = None;
        for index in (0..full).rev() {
            let first = index * self.range_events + 1;
            let last = first + self.range_events - 1;
            let last_hash = match expected_last {
                Some(hash) => hash,
                None => event_hash(reader, last, head)?,
            };
            let loaded = found.remove(&first).and_then(|path| {
                IndexFile::load(&path, first, last, &last_hash, &mut buffer)
                    .inspect_err(|reason| {
                        tracing::warn!(file = %path.display(), %reason, "rebuilding a damaged stream index file from the log");
                    })
                    .ok()
            });
            let range = match loaded {
                Some(file) => {
                    expected_last = Some(*file.previous_hash());
                    Range::File(Arc::new(file))
                }
                None => {
                    let previous = match first {
                        1 => GENESIS_HASH,
                        _ => event_hash(reader, first - 1, head)?,
                    };
                    expected_last = Some(previous);
                    let chain = Chain {
                        previous,
                        last: last_hash,
                    };
                    self.rebuild(reader, first, last, chain)?
                }
            };
            ranges.insert(first, range);
        }
        Ok((ranges, found))
    }

    /// Rebuilds the range `first..=last` from the log and writes its file; kept in memory
    /// if the file cannot be written (a full disk), and then handed to the writer by
    /// [`StreamIndex::open`].
    fn rebuild(
        &self,
        reader: &LogReader,
        first: u64,
        last: u64,
        chain: Chain,
    ) -> Result<Range, StreamIndexError> {
        let range = MemoryRange {
            first,
            last,
            chain,
            streams: scan(reader, first, last)?,
        };
        match writer::write_file(&self.dir, &range) {
            Ok(file) => Ok(Range::File(Arc::new(file))),
            Err(error) => {
                tracing::warn!(%error, first, last, "cannot write a rebuilt stream index file; keeping it in memory");
                Ok(Range::Memory(Arc::new(range)))
            }
        }
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Inner> {
        // Every change under this lock is a few pushes and inserts that cannot panic
        // halfway (the one assertion is checked before anything changes).
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The branch and stream of every event `first..=last` of the log, read without decoding
/// the rest of the event.
fn scan(reader: &LogReader, first: u64, last: u64) -> Result<StreamMap, StreamIndexError> {
    let mut streams = StreamMap::default();
    if first > last {
        return Ok(streams);
    }
    let mut expected = first;
    for record in reader.iter_from(Seq(first)) {
        let record = record.map_err(|source| StreamIndexError::Log {
            seq: expected,
            source,
        })?;
        let seq = record.seq.get();
        if seq > last {
            break;
        }
        if seq != expected {
            return Err(StreamIndexError::MissingEvent {
                seq: expected,
                head: last,
            });
        }
        let (branch, stream) = Envelope::decode_branch_and_stream(seq, &record.payload)?;
        streams.push(branch, stream, seq);
        expected += 1;
    }
    if expected != last + 1 {
        return Err(StreamIndexError::MissingEvent {
            seq: expected,
            head: last,
        });
    }
    Ok(streams)
}

/// The stored hash of event `seq` of the log.
fn event_hash(reader: &LogReader, seq: u64, head: u64) -> Result<[u8; 32], StreamIndexError> {
    let records = reader
        .read(Seq(seq), 1, 1)
        .map_err(|source| StreamIndexError::Log { seq, source })?;
    let record = records
        .into_iter()
        .next()
        .filter(|record| record.seq.get() == seq)
        .ok_or(StreamIndexError::MissingEvent { seq, head })?;
    Ok(Envelope::decode(seq, record.timestamp_ms, &record.payload)?.hash)
}

/// Bounds how many index files readers hold open at once, so that concurrent stream
/// reads cannot take the descriptors the log needs (see `limits::DESCRIPTORS_RESERVED`).
#[derive(Debug)]
struct Gate {
    open: Mutex<usize>,
    freed: Condvar,
    most: usize,
}

/// One open file's place in the [`Gate`], given back when dropped.
struct GateEntry<'a> {
    gate: &'a Gate,
}

impl Gate {
    fn new(most: usize) -> Gate {
        Gate {
            open: Mutex::new(0),
            freed: Condvar::new(),
            most: most.max(1),
        }
    }

    fn enter(&self) -> GateEntry<'_> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *open >= self.most {
            open = self
                .freed
                .wait(open)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *open += 1;
        GateEntry { gate: self }
    }
}

impl Drop for GateEntry<'_> {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *open -= 1;
        drop(open);
        self.gate.freed.notify_one();
    }
}

#[cfg(test)]
mod tests;
