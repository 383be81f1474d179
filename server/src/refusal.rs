//! What the engine answers when it does not carry out a request: a rule's [`Rejection`] or
//! one of the engine's own refusals. Typed, with no transport in it: each adapter (HTTP in
//! `error.rs`, MCP, the CLI) maps a refusal in one place.

use swarmlog_projections::Rejection;

/// Why the engine did not carry out a request. Nothing was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A domain rule refused the command.
    #[error("{0}")]
    Rule(#[from] Rejection),
    /// The `Idempotency-Key` was used before with a different request.
    #[error("idempotency key '{key}' was already used with a different request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },
    /// The engine is shutting down; the request may be retried against the restarted one.
    #[error("the server is shutting down; retry against the restarted server")]
    ShuttingDown,
    /// The file system holding the log has less free space than writes need: below
    /// `--min-free-bytes`, or, after a full disk refused a group, below what that group
    /// needed on top. Reads go on; writes are accepted again once the space is back.
    #[error(
        "the disk holding the log has {free_bytes} bytes free and writes need {required_bytes}; \
         nothing was written (reads still work; free some space and retry)"
    )]
    InsufficientStorage {
        /// Free bytes when the write was refused.
        free_bytes: u64,
        /// Free bytes writes need.
        required_bytes: u64,
    },
    /// In a cluster (SPEC §9): this node is not the writer of the shared history (another
    /// node is, or none is while one takes over). Nothing was written; a write sent to a
    /// follower is forwarded to the writer before anybody sees this.
    #[error("this node is not the cluster's writer and no writer could take the request; nothing was written, retry shortly")]
    NotWriter,
    /// In a cluster: the stream did not confirm the write (its connection was lost or the
    /// acknowledgement timed out), so it may or may not be stored. Retrying with the same
    /// `Idempotency-Key` is safe: a stored write is answered as a replay.
    #[error("the cluster did not confirm the write: it may or may not be stored; retry with the same Idempotency-Key to find out")]
    Unconfirmed,
    /// A failure inside the engine (a broken invariant or an unreadable record); the
    /// cause is logged where it happens, not sent to clients.
    #[error("{context}; see the server log")]
    Internal {
        /// What the engine was doing.
        context: &'static str,
    },
}

/// The code of [`Refusal::NotWriter`], which the cluster's forwarding looks for.
pub const NOT_WRITER: &str = "not_writer";

impl Refusal {
    /// An internal failure: logs the cause once and keeps only the context.
    pub fn internal(context: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "{context}");
        Refusal::Internal { context }
    }

    /// The snake_case code of SPEC §3, the same over every transport.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Rule(rejection) => rejection.code.as_str(),
            Refusal::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::InsufficientStorage { .. } => "insufficient_storage",
            Refusal::NotWriter => NOT_WRITER,
            Refusal::Unconfirmed => "write_unconfirmed",
            Refusal::Internal { .. } => "internal",
        }
    }
}
