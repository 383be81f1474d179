//! The shared history in memory, for deterministic tests of the election: appends are
//! conditional like JetStream's, the lease runs out on tokio's clock (which a test can
//! pause and advance).

use std::sync::{Arc, Mutex};

use futures::stream::{BoxStream, StreamExt};
use swarmlog_log::{Record, RecordInput, Seq};
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

use super::history::{AppendError, History, HistoryError, Lease, Member};

/// A history of records and a lease with a TTL.
pub struct MemoryHistory {
    state: Arc<Mutex<Inner>>,
    /// Bumped at every append, so followers wake up.
    appended: watch::Sender<u64>,
    lease_ttl: Duration,
}

struct Inner {
    records: Vec<Record>,
    lease: Option<(Lease, Instant)>,
    revisions: u64,
}

impl MemoryHistory {
    pub fn new(lease_ttl: Duration) -> Self {
        MemoryHistory {
            state: Arc::new(Mutex::new(Inner {
                records: Vec::new(),
                lease: None,
                revisions: 0,
            })),
            appended: watch::channel(0).0,
            lease_ttl,
        }
    }

    /// Every record, in order.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.state)
    }

    /// Gives `me` the lease for a full lifetime, at a new revision.
    fn grant(&self, inner: &mut Inner, me: &Member) -> u64 {
        inner.revisions += 1;
        let revision = inner.revisions;
        let lease = Lease {
            holder: me.clone(),
            revision,
        };
        inner.lease = Some((lease, Instant::now() + self.lease_ttl));
        revision
    }

    /// The lease if it has not run out.
    fn live_lease(inner: &mut Inner) -> Option<Lease> {
        match &inner.lease {
            Some((lease, until)) if Instant::now() < *until => Some(lease.clone()),
            _ => {
                inner.lease = None;
                None
            }
        }
    }
}

impl History for MemoryHistory {
    async fn append(
        &self,
        expected_last: u64,
        batches: &[&[RecordInput<'_>]],
    ) -> Result<(), (usize, AppendError)> {
        let mut inner = self.lock();
        let mut expected = expected_last;
        for (index, batch) in batches.iter().enumerate() {
            let last = inner.records.len() as u64;
            if last != expected {
                return Err((index, AppendError::Conflict { expected }));
            }
            for record in batch.iter() {
                let seq = Seq(inner.records.len() as u64 + 1);
                inner.records.push(Record {
                    seq,
                    timestamp_ms: record.timestamp_ms,
                    payload: record.payload.to_vec(),
                });
            }
            expected += batch.len() as u64;
            self.appended.send_replace(expected);
        }
        Ok(())
    }

    async fn last_seq(&self) -> Result<u64, HistoryError> {
        Ok(self.lock().records.len() as u64)
    }

    fn follow(&self, from: u64) -> BoxStream<'static, Result<Record, HistoryError>> {
        let state = self.state.clone();
        let appended = self.appended.subscribe();
        futures::stream::unfold(
            (state, appended, from.max(1)),
            |(state, mut appended, next)| async move {
                loop {
                    let record = lock(&state).records.get(next as usize - 1).cloned();
                    if let Some(record) = record {
                        return Some((Ok(record), (state, appended, next + 1)));
                    }
                    appended.changed().await.ok()?;
                }
            },
        )
        .boxed()
    }

    async fn lease(&self) -> Result<Option<Lease>, HistoryError> {
        Ok(Self::live_lease(&mut self.lock()))
    }

    async fn claim(&self, me: &Member) -> Result<Option<u64>, HistoryError> {
        let mut inner = self.lock();
        if Self::live_lease(&mut inner).is_some() {
            return Ok(None);
        }
        Ok(Some(self.grant(&mut inner, me)))
    }

    async fn renew(&self, me: &Member, revision: u64) -> Result<Option<u64>, HistoryError> {
        let mut inner = self.lock();
        match Self::live_lease(&mut inner) {
            Some(lease) if lease.holder == *me && lease.revision == revision => {
                Ok(Some(self.grant(&mut inner, me)))
            }
            _ => Ok(None),
        }
    }

    async fn release(&self, me: &Member, revision: u64) {
        let mut inner = self.lock();
        if Self::live_lease(&mut inner)
            .is_some_and(|lease| lease.holder == *me && lease.revision == revision)
        {
            inner.lease = None;
        }
    }
}

fn lock(state: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    state
        .lock()
        .expect("the memory history's lock is never held across a panic")
}
