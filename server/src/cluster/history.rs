//! The shared history as the cluster sees it: an append-only sequence of records with a
//! conditional append, a way to follow it, and the writer's lease. JetStream implements it
//! (`jetstream.rs`); tests implement it in memory (`memory.rs`) to drive the election
//! deterministically.

use std::future::Future;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use swarmlog_log::{Record, RecordInput};

/// A node of the cluster, as the writer's lease names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's name (`serve --node-name`, by default host and port).
    pub node: String,
    /// Where the node takes HTTP requests: followers forward writes there.
    pub url: String,
}

/// The writer's lease as it stands in the history's lease store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The writer.
    pub holder: Member,
    /// The lease's revision, which the holder's next renewal must name.
    pub revision: u64,
}

/// Why an append stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The history's last sequence is not the one the append expected: another writer
    /// appended. Nothing of the batch was stored.
    #[error("the history does not end at seq {expected} as this node's state does: another node appended")]
    Conflict {
        /// The sequence the append expected.
        expected: u64,
    },
    /// The history refused the batch for another reason; nothing of it was stored.
    #[error("the history refused the batch: {0}")]
    Refused(String),
    /// No answer came (a timeout, a lost connection): the batch may or may not be stored.
    #[error("the history did not confirm the batch: {0}")]
    Unconfirmed(String),
}

/// A failure to reach or read the history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HistoryError(pub String);

impl HistoryError {
    /// Wraps any error with what was being done.
    pub fn new(context: &str, error: impl std::fmt::Display) -> Self {
        HistoryError(format!("{context}: {error}"))
    }
}

/// The shared history and the writer's lease.
pub trait History: Send + Sync + 'static {
    /// Appends `batches` in order right after sequence `expected_last`, each one
    /// atomically (all of its records or none), the first conditional on the history's
    /// last sequence being `expected_last`. On failure, says how many batches were stored
    /// before the one that failed.
    fn append(
        &self,
        expected_last: u64,
        batches: &[&[RecordInput<'_>]],
    ) -> impl Future<Output = Result<(), (usize, AppendError)>> + Send;

    /// The last sequence in the history (0 when empty).
    fn last_seq(&self) -> impl Future<Output = Result<u64, HistoryError>> + Send;

    /// Every record from sequence `from` on, in order, then each new one as it is
    /// appended. The stream ends (or yields an error) when the history cannot be read;
    /// the caller starts it again from where it got to.
    fn follow(&self, from: u64) -> BoxStream<'static, Result<Record, HistoryError>>;

    /// The writer's lease, if one is held and has not run out.
    fn lease(&self) -> impl Future<Output = Result<Option<Lease>, HistoryError>> + Send;

    /// Takes the lease for `me` if nobody holds it: its revision, or `None` when another
    /// node was first.
    fn claim(&self, me: &Member) -> impl Future<Output = Result<Option<u64>, HistoryError>> + Send;

    /// Renews the lease `me` holds at `revision`: the new revision, or `None` when the
    /// lease ran out or another node holds it now.
    fn renew(
        &self,
        me: &Member,
        revision: u64,
    ) -> impl Future<Output = Result<Option<u64>, HistoryError>> + Send;

    /// Gives the lease up if `me` still holds it at `revision`, so that another node need
    /// not wait for it to run out.
    fn release(&self, me: &Member, revision: u64) -> impl Future<Output = ()> + Send;
}
