//! The state the writer shares with every reader: the segment list, each segment's index
//! and durable length, and the durable head.
//!
//! The writer changes this only after a batch is durable: it extends the active segment's
//! index and durable length under that segment's lock, then publishes the new head with a
//! release store. A reader loads the head (acquire) first and never reads past it, so it
//! can only see bytes that were fsynced and fully written. Locks are held for a few
//! pointer copies and never across I/O; sealed segments are mapped lazily, and the active
//! segment is read with positional reads bounded by its durable length.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::Error;
use crate::index::Index;
use crate::limits::{READ_BUFFERS_POOLED_MAX, READ_BUFFER_POOLED_BYTES_MAX};
use crate::storage::Storage;

/// Everything a `Log` shares with its `LogReader`s.
pub(crate) struct Shared<S: Storage> {
    /// Where the files live.
    pub storage: S,
    /// All segments in seq order; the last one is the active segment.
    segments: RwLock<Vec<Arc<Segment<S>>>>,
    /// The last durable seq, or 0 while the log is empty.
    head: AtomicU64,
    /// Reusable buffers for positional reads of the active segment.
    buffers: Mutex<Vec<Vec<u8>>>,
}

impl<S: Storage> Shared<S> {
    /// Shared state over recovered segments.
    pub fn new(storage: S, segments: Vec<Arc<Segment<S>>>, head: Option<u64>) -> Shared<S> {
        assert!(!segments.is_empty(), "a log always has an active segment");
        Shared {
            storage,
            segments: RwLock::new(segments),
            head: AtomicU64::new(head.unwrap_or(0)),
            buffers: Mutex::new(Vec::new()),
        }
    }

    /// The last durable seq.
    pub fn head(&self) -> Option<u64> {
        match self.head.load(Ordering::Acquire) {
            0 => None,
            seq => Some(seq),
        }
    }

    /// Publishes a new durable head, after the segment state that holds it.
    pub fn publish_head(&self, seq: u64) {
        let previous = self.head.load(Ordering::Relaxed);
        assert!(
            seq > previous,
            "the head only moves forward: {previous} -> {seq}"
        );
        self.head.store(seq, Ordering::Release);
    }

    /// The segment that holds `seq` (the last one whose first seq is not after it).
    pub fn segment_for(&self, seq: u64) -> Arc<Segment<S>> {
        let segments = read_lock(&self.segments);
        let after = segments.partition_point(|segment| segment.first_seq <= seq);
        let found = after
            .checked_sub(1)
            .expect("seq is at or after the first segment");
        segments[found].clone()
    }

    /// A snapshot of the segment list (tests inspect indexes through it).
    #[cfg(test)]
    pub fn segments(&self) -> Vec<Arc<Segment<S>>> {
        read_lock(&self.segments).clone()
    }

    /// Adds a new active segment after the current one.
    pub fn push_segment(&self, segment: Arc<Segment<S>>) {
        let mut segments = write_lock(&self.segments);
        let last = segments.last().expect("a log always has an active segment");
        assert!(
            segment.first_seq > last.first_seq,
            "segments are appended in seq order"
        );
        segments.push(segment);
    }

    /// A buffer for one read, from the pool if one is free.
    pub fn take_buffer(&self) -> Vec<u8> {
        let mut buffers = self
            .buffers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        buffers.pop().unwrap_or_default()
    }

    /// Returns a buffer to the pool, unless the pool is full or the buffer grew too large.
    pub fn return_buffer(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() > READ_BUFFER_POOLED_BYTES_MAX {
            return;
        }
        buffer.clear();
        let mut buffers = self
            .buffers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buffers.len() < READ_BUFFERS_POOLED_MAX {
            buffers.push(buffer);
        }
    }
}

/// One segment file as the log knows it.
pub(crate) struct Segment<S: Storage> {
    /// The seq of its first record (also in its name and header).
    pub first_seq: u64,
    /// Its file name.
    pub name: String,
    state: RwLock<SegmentState<S>>,
}

/// The changing part of a segment.
pub(crate) struct SegmentState<S: Storage> {
    /// The open file, while this is the active segment.
    pub file: Option<Arc<S::File>>,
    /// A read-only map, once this sealed segment has been read.
    pub map: Option<Arc<S::Map>>,
    /// Sparse seq -> position index of its durable records.
    pub index: Index,
    /// Length of the prefix that holds durable, complete batches.
    pub durable_bytes: u64,
    /// The last durable seq in it, `None` while it has no records.
    pub last_seq: Option<u64>,
}

/// Where a reader gets a segment's bytes from.
pub(crate) enum Source<S: Storage> {
    /// A sealed segment's map.
    Map(Arc<S::Map>),
    /// The active segment's file, for positional reads.
    File(Arc<S::File>),
}

/// A consistent snapshot of what a reader needs to read one segment from a seq on.
pub(crate) struct View<S: Storage> {
    /// Where the bytes come from.
    pub source: Source<S>,
    /// The indexed seq at or before the requested one, where the scan starts.
    pub start_seq: u64,
    /// The byte position of `start_seq`.
    pub start_position: u64,
    /// Readers never read at or past this position.
    pub durable_bytes: u64,
    /// The last durable seq in the segment.
    pub last_seq: Option<u64>,
}

impl<S: Storage> Segment<S> {
    /// A segment with the given state.
    pub fn new(first_seq: u64, name: String, state: SegmentState<S>) -> Segment<S> {
        Segment {
            first_seq,
            name,
            state: RwLock::new(state),
        }
    }

    /// Exclusive access to the state (the writer publishing a batch or sealing).
    pub fn state_mut(&self) -> RwLockWriteGuard<'_, SegmentState<S>> {
        write_lock(&self.state)
    }

    /// Shared access to the state.
    pub fn state(&self) -> RwLockReadGuard<'_, SegmentState<S>> {
        read_lock(&self.state)
    }

    /// What a reader needs to read from `seq` on; maps a sealed segment on first use.
    pub fn view(&self, storage: &S, seq: u64) -> Result<View<S>, Error> {
        {
            let state = self.state();
            let source = match (&state.file, &state.map) {
                (Some(file), _) => Some(Source::File(file.clone())),
                (None, Some(map)) => Some(Source::Map(map.clone())),
                (None, None) => None,
            };
            if let Some(source) = source {
                let (start_seq, start_position) = state.index.lookup(seq);
                return Ok(View {
                    source,
                    start_seq,
                    start_position,
                    durable_bytes: state.durable_bytes,
                    last_seq: state.last_seq,
                });
            }
        }
        // Sealed and not mapped yet: map outside the lock, then keep the first map made.
        let map = storage.map(&self.name).map_err(|source| {
            Error::io(
                format!("cannot map segment {}", storage.describe(&self.name)),
                source,
            )
        })?;
        let mut state = self.state_mut();
        if (map.len() as u64) < state.durable_bytes {
            return Err(Error::corrupt(
                &self.name,
                map.len() as u64,
                format!(
                    "sealed segment has {} bytes, but {} bytes of records were written to it",
                    map.len(),
                    state.durable_bytes
                ),
            ));
        }
        let map = state.map.get_or_insert_with(|| Arc::new(map)).clone();
        let (start_seq, start_position) = state.index.lookup(seq);
        Ok(View {
            source: Source::Map(map),
            start_seq,
            start_position,
            durable_bytes: state.durable_bytes,
            last_seq: state.last_seq,
        })
    }
}

/// Takes a read lock; a panic while holding the lock cannot leave the guarded data
/// half-changed (every change is a few assignments after all checks), so poisoning is
/// ignored rather than turned into a second panic.
fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes a write lock; see `read_lock` on poisoning.
fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
