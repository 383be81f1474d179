//! swarmlog-log: the append-only, segmented, checksummed record log under swarmlog.
//!
//! The log stores opaque byte payloads under gap-free sequence numbers (`Seq`, from 1)
//! with the caller's timestamp. It exists so that the server can make a batch of events
//! durable with one write and one `fdatasync`, recover after a crash to exactly the
//! batches it acknowledged, and let many readers stream history while it appends.
//!
//! - `Log` is the single writer: `append_batch` encodes a batch into a reused buffer,
//!   writes it with one positional write, syncs once and only then publishes it.
//! - `LogReader` (cheap to clone, `Send + Sync`) reads durable records by seq: sealed
//!   segments through read-only maps, the active segment with positional reads.
//! - `verify` checks every byte of a log offline and reports what recovery would do.
//! - `Storage` abstracts the file system; `FsStorage` is the real one and
//!   `sim::SimStorage` simulates crashes and power loss for tests.
//!
//! The byte layout and the recovery rules are in `FORMAT.md`.
//!
//! **Architecture invariant:** this crate knows nothing of events, JSON, HTTP, serde or
//! async runtimes; payloads are opaque bytes.

#![deny(missing_docs)]
#![deny(clippy::host_endian_bytes, clippy::big_endian_bytes)]

mod error;
mod files;
mod format;
mod index;
pub mod limits;
mod log;
mod reader;
mod recovery;
mod scan;
mod shared;
pub mod sim;
mod storage;
mod verify;

use std::fmt;

pub use crate::error::Error;
pub use crate::log::{Log, LogOptions, RecordInput, RecoveryReport, SyncPolicy};
pub use crate::reader::LogReader;
pub use crate::storage::{
    file_system_space, is_no_space, Access, FsFile, FsLock, FsStorage, LockMode, Space, Storage,
    StorageFile,
};
pub use crate::verify::{verify, verify_each, verify_with, VerifyProgress, VerifyReport};

/// A record's sequence number: its logical position in the log, gap-free from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl Seq {
    /// The seq of the first record of every log.
    pub const FIRST: Seq = Seq(1);

    /// The seq after this one.
    pub fn next(self) -> Seq {
        Seq(self.0.checked_add(1).expect("seq space is not exhausted"))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its seq.
    pub seq: Seq,
    /// The timestamp the writer passed in, in milliseconds.
    pub timestamp_ms: i64,
    /// The payload, exactly as written.
    pub payload: Vec<u8>,
}

/// A record borrowed from the bytes that hold it (what `verify_each` visits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Its seq.
    pub seq: Seq,
    /// The caller's timestamp, as appended.
    pub timestamp_ms: i64,
    /// The payload.
    pub payload: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_counts_from_one() {
        assert_eq!(Seq::FIRST, Seq(1));
        assert_eq!(Seq::FIRST.next().get(), 2);
        assert_eq!(Seq(42).to_string(), "42");
        assert!(Seq(1) < Seq(2));
    }
}
