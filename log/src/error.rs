//! The log's one error type.
//!
//! Operating errors (I/O, corruption, a limit exceeded, a held lock) are returned as
//! `Error`; programmer errors (an empty batch, a broken internal invariant) panic. Every
//! message names the values involved, and `Io` keeps its cause both as its `source` and in
//! its message, so printing an error never loses why it happened.

use std::io;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A storage operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the log was doing, naming the file.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },

    /// The file system is full: the log could not extend or create the file a batch needed.
    /// No byte of the batch was written and the log stays usable; a later append tries
    /// again (and succeeds once space is freed).
    #[error("no space for {bytes_needed} more bytes: {context}: {source}")]
    NoSpace {
        /// What the log was doing, naming the file.
        context: String,
        /// The smallest extension that would have let the batch through, in bytes.
        bytes_needed: u64,
        /// The operating system's error (`ENOSPC` or `EDQUOT`).
        source: io::Error,
    },

    /// Bytes on disk are not what the log wrote: a checksum, header, sequence or index
    /// does not match. Never returned for a torn tail of the newest segment, which is what
    /// a crash normally leaves and which recovery cuts away.
    #[error("corrupt log: segment {segment} at byte {position}: {reason}")]
    Corrupt {
        /// The file name of the damaged segment (or index file).
        segment: String,
        /// The byte position in that file where the damage was found.
        position: u64,
        /// What exactly does not match, with the expected and actual values.
        reason: String,
    },

    /// Another process holds the log directory's lock (`LockMode::Fail`).
    #[error("the log at {path} is locked by another process")]
    Locked {
        /// The lock file.
        path: String,
    },

    /// An earlier write or fsync failed, so the log no longer knows what is durable. Every
    /// later append fails with this; the fsync is never retried. Reopening the log (after
    /// the process restarts) recovers from what is on disk.
    #[error("the log is poisoned by an earlier write or fsync failure; reopen it to recover")]
    Poisoned,

    /// A record's payload exceeds `limits::RECORD_PAYLOAD_BYTES_MAX`.
    #[error("record payload of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The payload's size in bytes.
        size: u64,
        /// The limit in bytes.
        max: u64,
    },

    /// A batch exceeds `limits::BATCH_RECORDS_MAX` or `limits::BATCH_BYTES_MAX`.
    #[error(
        "batch of {records} records and {bytes} encoded bytes exceeds the limit of \
         {records_max} records or {bytes_max} bytes"
    )]
    BatchTooLarge {
        /// Records in the batch.
        records: u64,
        /// Encoded size of the batch in bytes.
        bytes: u64,
        /// The record limit.
        records_max: u64,
        /// The byte limit.
        bytes_max: u64,
    },

    /// A `LogOptions` value is outside its allowed range.
    #[error("invalid log option {name} = {value}: {reason}")]
    InvalidOption {
        /// The option's field name.
        name: &'static str,
        /// The rejected value.
        value: u64,
        /// The allowed range.
        reason: String,
    },
}

impl Error {
    /// An `Io` error with its context.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// `NoSpace` when `source` says the disk is full, else `Io`. Only for operations after
    /// which the log may go on: never for a sync, whose failure always poisons.
    pub(crate) fn io_or_no_space(
        context: impl Into<String>,
        source: io::Error,
        bytes_needed: u64,
    ) -> Error {
        if crate::storage::is_no_space(&source) {
            Error::NoSpace {
                context: context.into(),
                bytes_needed,
                source,
            }
        } else {
            Error::io(context, source)
        }
    }

    /// Whether this is `NoSpace`: nothing was written and the log is still usable.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }

    /// A `Corrupt` error.
    pub(crate) fn corrupt(segment: &str, position: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            segment: segment.to_owned(),
            position,
            reason: reason.into(),
        }
    }

    /// Whether this is a `Corrupt` error (tests and callers that only care about the kind).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_error_keeps_its_cause_in_message_and_source() {
        let error = Error::io(
            "cannot write segment 00000000000000000001.seg at byte 32",
            io::Error::other("disk on fire"),
        );
        let message = error.to_string();
        assert!(message.contains("00000000000000000001.seg"), "{message}");
        assert!(message.contains("disk on fire"), "{message}");
        assert!(error.source().is_some());
    }

    #[test]
    fn corrupt_error_names_segment_and_position() {
        let error = Error::corrupt("00000000000000000007.seg", 4242, "crc mismatch");
        let message = error.to_string();
        assert!(message.contains("00000000000000000007.seg"), "{message}");
        assert!(message.contains("4242"), "{message}");
        assert!(error.is_corrupt());
    }
}
