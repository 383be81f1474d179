//! The storage seam: where the committer makes a batch of groups durable.
//!
//! The engine decides, stamps and hashes events the same way whatever keeps the history;
//! the committer hands each batch to a [`Store`], and only once the store says a group is
//! durable does anybody see it. Two stores exist:
//!
//! - [`LocalStore`]: the segmented log in the data directory (the default, SPEC §6): a
//!   batch is one append with one fdatasync.
//! - [`crate::cluster::ClusterStore`]: a NATS JetStream stream (SPEC §9). The writer's
//!   groups are published to the stream as atomic batches, each conditional on the
//!   stream's last sequence, and only then mirrored into the local log; the groups a
//!   follower replicates from the stream are already durable there and are only mirrored.
//!
//! Either way every node keeps the whole history in its local log, so reads, `?at=`, SSE
//! catch-up, the stream index and snapshots read the local log and do not know which store
//! the node runs on.

use swarmlog_log::{Error, Log, RecordInput};

/// One group of the batch: its records (seqs follow the previous group's) and whether it
/// came from the shared history rather than from this node's engine.
pub(crate) struct GroupRecords<'a> {
    /// The records, stamped with consecutive seqs.
    pub records: Vec<RecordInput<'a>>,
    /// A group another node made durable: the store only mirrors it locally.
    pub replicated: bool,
}

/// Why a store did not make a whole batch durable. Every variant says how many of the
/// batch's groups (a prefix) are durable: those are answered, the rest refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// The local disk has no room: nothing of the batch was written.
    NoSpace {
        /// What the log needed.
        bytes_needed: u64,
    },
    /// This node is not (or no longer) the writer of the shared history: the groups after
    /// the first `durable` were not appended.
    NotWriter {
        /// The groups that are durable.
        durable: usize,
    },
    /// The shared history did not confirm group `durable` (a timeout or a lost
    /// connection): it may or may not be stored; the groups after it were not appended.
    Unconfirmed {
        /// The groups that are durable.
        durable: usize,
    },
}

impl StoreError {
    /// How many groups of the batch are durable.
    pub fn durable(&self) -> usize {
        match self {
            StoreError::NoSpace { .. } => 0,
            StoreError::NotWriter { durable } | StoreError::Unconfirmed { durable } => *durable,
        }
    }
}

/// Where groups become durable. Called from the commit thread only, one batch at a time.
pub(crate) trait Store: Send {
    /// Makes the groups durable in order, each one atomically; on `Ok` every group is.
    /// A failure to write or sync the local log aborts the process (never retried: the
    /// page cache may hold what the disk does not).
    fn append(&mut self, groups: &[GroupRecords<'_>]) -> Result<(), StoreError>;

    /// The local log, which holds every durable event.
    fn log(&self) -> &Log;
}

/// The local segmented log.
pub(crate) struct LocalStore {
    log: Log,
}

impl LocalStore {
    /// The store over an opened log.
    pub fn new(log: Log) -> Self {
        LocalStore { log }
    }
}

impl Store for LocalStore {
    fn append(&mut self, groups: &[GroupRecords<'_>]) -> Result<(), StoreError> {
        append_locally(
            &mut self.log,
            groups.iter().flat_map(|group| &group.records),
        )
    }

    fn log(&self) -> &Log {
        &self.log
    }
}

/// Appends records to the local log with one fdatasync, checking that the log gives them
/// the seqs after its head; aborts on any error but a full disk met before a byte was
/// written.
pub(crate) fn append_locally<'a>(
    log: &mut Log,
    records: impl IntoIterator<Item = &'a RecordInput<'a>>,
) -> Result<(), StoreError> {
    let inputs: Vec<RecordInput<'_>> = records.into_iter().copied().collect();
    if inputs.is_empty() {
        return Ok(());
    }
    let expected_first = log.head().map_or(1, |seq| seq.get() + 1);
    match log.append_batch(&inputs) {
        Ok(range) => {
            assert_eq!(
                range.start().get(),
                expected_first,
                "the log assigns the seqs after its head"
            );
            Ok(())
        }
        Err(Error::NoSpace {
            bytes_needed,
            context,
            source,
        }) => {
            tracing::warn!(%context, %source, "the log has no space for a group");
            Err(StoreError::NoSpace { bytes_needed })
        }
        Err(error) => {
            tracing::error!(%error, "durable append failed; aborting so that recovery decides what is durable");
            eprintln!("swarmlog: durable append failed: {error}; aborting");
            std::process::abort();
        }
    }
}
