//! Offline audit of a data directory (`swarmlog verify`): every record's frame and CRC (the
//! log's own check), then every event's decoding and the SHA-256 hash chain of SPEC §2.

use std::path::Path;

use swarmlog_projections::{Envelope, GENESIS_HASH};

/// What a clean verification found.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// Segment files.
    pub segments: usize,
    /// Records (events).
    pub records: u64,
    /// Bytes of segment data checked.
    pub bytes: u64,
    /// First seq.
    pub first: Option<u64>,
    /// Last seq.
    pub last: Option<u64>,
    /// Bytes of torn tail the next start will cut away.
    pub torn_tail_bytes: u64,
    /// The hash chain's head, hex.
    pub head_hash: String,
}

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The log's frame check failed (names segment and byte position).
    #[error(transparent)]
    Log(#[from] swarmlog_log::Error),
    /// A record holds something that is not an event.
    #[error(transparent)]
    Envelope(#[from] swarmlog_projections::EnvelopeError),
    /// The hash chain is broken.
    #[error("hash chain broken at seq {seq}: stored {stored}, recomputed {computed}")]
    HashChain {
        /// The first bad seq.
        seq: u64,
        /// The stored hash.
        stored: String,
        /// The recomputed hash.
        computed: String,
    },
}

/// Verifies the log in `log_dir`; `progress(done, total)` reports bytes checked.
pub fn verify(
    log_dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AuditReport, AuditError> {
    let mut previous = GENESIS_HASH;
    let mut chain_error: Option<AuditError> = None;
    let mut scratch = Vec::new();
    let report = swarmlog_log::verify_each(
        log_dir,
        &mut |step: swarmlog_log::VerifyProgress| progress(step.bytes_done, step.bytes_total),
        &mut |record: swarmlog_log::RecordRef<'_>| {
            if chain_error.is_some() {
                return;
            }
            let seq = record.seq.get();
            match Envelope::check_stored_hash(
                seq,
                record.timestamp_ms,
                record.payload,
                &previous,
                &mut scratch,
            ) {
                Ok((stored, computed)) => {
                    if computed != stored {
                        chain_error = Some(AuditError::HashChain {
                            seq,
                            stored: hex::encode(stored),
                            computed: hex::encode(computed),
                        });
                    }
                    previous = stored;
                }
                Err(error) => chain_error = Some(error.into()),
            }
        },
    )?;
    if let Some(error) = chain_error {
        return Err(error);
    }
    Ok(AuditReport {
        segments: report.segments,
        records: report.records,
        bytes: report.bytes,
        first: report.first.map(swarmlog_log::Seq::get),
        last: report.last.map(swarmlog_log::Seq::get),
        torn_tail_bytes: report.torn_tail_bytes,
        head_hash: hex::encode(previous),
    })
}
