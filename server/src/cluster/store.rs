//! The JetStream side of the storage seam: the writer's groups go to the shared history
//! first, then into the local log; a follower's replicated groups only into the local log.

use std::sync::Arc;

use swarmlog_log::{Log, RecordInput};

use super::history::{AppendError, History};
use super::Signals;
use crate::store::{append_locally, GroupRecords, Store, StoreError};

/// The most records of one JetStream atomic batch (the server's limit).
pub const ATOMIC_BATCH_RECORDS_MAX: usize = 1000;

/// A store whose durable home is the shared history, mirrored into the local log.
pub(crate) struct ClusterStore<H: History> {
    log: Log,
    history: Arc<H>,
    /// The runtime the history's client runs on; the commit thread blocks on it.
    runtime: tokio::runtime::Handle,
    signals: Arc<Signals>,
}

impl<H: History> ClusterStore<H> {
    /// The store over the opened local log.
    pub fn new(
        log: Log,
        history: Arc<H>,
        runtime: tokio::runtime::Handle,
        signals: Arc<Signals>,
    ) -> Self {
        ClusterStore {
            log,
            history,
            runtime,
            signals,
        }
    }

    /// Publishes a run of this node's groups, packed into atomic batches (see [`pack`]),
    /// then mirrors what the history stored. Returns how many of the run's groups are durable on failure.
    fn publish(&mut self, run: &[GroupRecords<'_>]) -> Result<(), (usize, AppendError)> {
        if !self.signals.holds_lease() {
            return Err((
                0,
                AppendError::Refused("this node does not hold the writer's lease".into()),
            ));
        }
        let (batches, ends) = pack(run);
        let batches: Vec<&[RecordInput<'_>]> = batches.iter().map(Vec::as_slice).collect();
        let expected = self.log.head().map_or(0, |seq| seq.get());
        let outcome = self
            .runtime
            .block_on(self.history.append(expected, &batches));
        let stored = match &outcome {
            Ok(()) => batches.len(),
            Err((stored, _)) => *stored,
        };
        let durable = ends.iter().take_while(|end| **end <= stored).count();
        self.mirror(&run[..durable]);
        outcome.map_err(|(_, error)| (durable, error))
    }

    /// Appends groups the history holds to the local log. The history has them, so a
    /// failure here (a full disk included) aborts the process: the restarted node fetches
    /// them again from the history.
    fn mirror(&mut self, groups: &[GroupRecords<'_>]) {
        let records = groups.iter().flat_map(|group| &group.records);
        if let Err(error) = append_locally(&mut self.log, records) {
            tracing::error!(?error, "cannot mirror durable events into the local log; aborting (the restarted node fetches them from the stream)");
            eprintln!(
                "swarmlog: cannot mirror durable events into the local log ({error:?}); aborting"
            );
            std::process::abort();
        }
    }
}

impl<H: History> Store for ClusterStore<H> {
    fn append(&mut self, groups: &[GroupRecords<'_>]) -> Result<(), StoreError> {
        let mut done = 0;
        while done < groups.len() {
            let replicated = groups[done].replicated;
            let run_length = groups[done..]
                .iter()
                .take_while(|group| group.replicated == replicated)
                .count();
            let run = &groups[done..done + run_length];
            if replicated {
                self.mirror(run);
            } else if let Err((durable, error)) = self.publish(run) {
                tracing::warn!(%error, "the shared history did not take this node's group: stepping down");
                self.signals.depose();
                let durable = done + durable;
                return Err(match error {
                    AppendError::Unconfirmed(_) => StoreError::Unconfirmed { durable },
                    AppendError::Conflict { .. } | AppendError::Refused(_) => {
                        StoreError::NotWriter { durable }
                    }
                });
            }
            done += run_length;
        }
        Ok(())
    }

    fn log(&self) -> &Log {
        &self.log
    }
}

/// Packs a run of groups into atomic batches of at most [`ATOMIC_BATCH_RECORDS_MAX`]
/// records, in order: a group joins the last batch whole when it fits, else starts new
/// ones (a group larger than a batch, which no request makes, is split). Returns the
/// batches and, for each group, how many batches hold it and everything before it: the
/// group is stored once that many batches are.
fn pack<'a>(run: &[GroupRecords<'a>]) -> (Vec<Vec<RecordInput<'a>>>, Vec<usize>) {
    let mut batches: Vec<Vec<RecordInput<'a>>> = Vec::new();
    let mut ends = Vec::with_capacity(run.len());
    for group in run {
        match batches.last_mut() {
            Some(batch) if batch.len() + group.records.len() <= ATOMIC_BATCH_RECORDS_MAX => {
                batch.extend_from_slice(&group.records);
            }
            _ => batches.extend(
                group
                    .records
                    .chunks(ATOMIC_BATCH_RECORDS_MAX)
                    .map(<[RecordInput<'a>]>::to_vec),
            ),
        }
        ends.push(batches.len());
    }
    (batches, ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_packed_whole_into_batches_of_at_most_a_thousand_records() {
        let payload = [0u8; 1];
        let record = RecordInput {
            timestamp_ms: 0,
            payload: &payload,
        };
        let sizes = [3, 998, 1, 1500, 2];
        let run: Vec<GroupRecords<'_>> = sizes
            .iter()
            .map(|size| GroupRecords {
                records: vec![record; *size],
                replicated: false,
            })
            .collect();
        let (batches, ends) = pack(&run);
        let lengths: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(lengths, [3, 999, 1000, 502]);
        assert_eq!(
            ends,
            [1, 2, 2, 4, 4],
            "a group is stored once its last batch is"
        );
        assert_eq!(lengths.iter().sum::<usize>(), sizes.iter().sum::<usize>());
    }
}
