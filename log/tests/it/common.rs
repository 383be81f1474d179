//! Helpers shared by the integration tests: deterministic batches and whole-log reads.

use swarmlog_log::sim::SimRng;
use swarmlog_log::{Log, LogReader, Record, RecordInput, Seq, Storage};

/// A batch the tests append: owned payloads with timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// (timestamp_ms, payload) per record.
    pub records: Vec<(i64, Vec<u8>)>,
}

impl Batch {
    /// A random batch of 1..=`records_max` records with payloads of 0..=`payload_bytes_max`
    /// random bytes (so no two batches are alike and a resurrected old record is noticed).
    pub fn random(rng: &mut SimRng, records_max: u64, payload_bytes_max: u64) -> Batch {
        let count = rng.between(1, records_max);
        let records = (0..count)
            .map(|_| {
                let mut payload = vec![0u8; rng.between(0, payload_bytes_max) as usize];
                rng.fill(&mut payload);
                (rng.next_u64() as i64, payload)
            })
            .collect();
        Batch { records }
    }

    /// The records this batch becomes when its first seq is `first`.
    pub fn at(&self, first: u64) -> Vec<Record> {
        self.records
            .iter()
            .enumerate()
            .map(|(number, (timestamp_ms, payload))| Record {
                seq: Seq(first + number as u64),
                timestamp_ms: *timestamp_ms,
                payload: payload.clone(),
            })
            .collect()
    }

    /// Appends the batch.
    pub fn append<S: Storage>(
        &self,
        log: &mut Log<S>,
    ) -> Result<std::ops::RangeInclusive<Seq>, swarmlog_log::Error> {
        let inputs: Vec<RecordInput<'_>> = self
            .records
            .iter()
            .map(|(timestamp_ms, payload)| RecordInput {
                timestamp_ms: *timestamp_ms,
                payload,
            })
            .collect();
        log.append_batch(&inputs)
    }
}

/// Every record of the log, read with `iter_from`.
pub fn read_all<S: Storage>(reader: &LogReader<S>) -> Result<Vec<Record>, swarmlog_log::Error> {
    reader.iter_from(Seq::FIRST).collect()
}
