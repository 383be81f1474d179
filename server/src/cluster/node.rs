//! A cluster node's role: the writer while it holds the lease, a follower otherwise.
//!
//! Every node runs this loop next to its engine. A follower applies the shared history
//! from its local head on and watches the writer's lease; when nobody holds it, the
//! follower claims it, catches up to the history's last sequence, and only then lets its
//! engine decide writes and run the timers. The writer renews its lease; it steps down
//! when a renewal finds the lease gone or moved, or when the store finds that the history
//! moved on without it (its conditional append failed). The lease only decides who tries
//! to write: what keeps two writers from both appending is that every append is
//! conditional on the last sequence its writer's state reflects.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::history::{History, Member};
use super::Signals;
use crate::Engine;

/// How many records a follower hands its engine at most at once.
const REPLICATE_RECORDS_MAX: usize = 1024;
/// The least time between two rounds of the election that forwarded requests asked for
/// (see `Signals::look_now`).
const LOOK_SPACING: Duration = Duration::from_millis(50);

/// The election's clock.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long the lease lasts without a renewal (the bucket's `max_age`).
    pub lease_ttl: Duration,
    /// How often the writer renews its lease, and a follower looks at it.
    pub tick: Duration,
}

impl Timing {
    /// A lease of `lease_ttl`, looked at four times as often as it runs out.
    pub fn new(lease_ttl: Duration) -> Self {
        Timing {
            lease_ttl,
            tick: lease_ttl / 4,
        }
    }
}

/// One node's side of the election.
pub(crate) struct Node<H: History> {
    history: Arc<H>,
    engine: Engine,
    me: Member,
    timing: Timing,
    signals: Arc<Signals>,
    /// The task applying the history, while this node follows.
    follower: Option<JoinHandle<()>>,
    /// The lease's revision, while this node holds it.
    lease: Option<u64>,
    /// When the last claim or renewal that succeeded was sent.
    renewed: Instant,
    /// Whether this node saw another node hold the lease since it last wrote: its next
    /// take-over is then a failover.
    saw_other_writer: bool,
}

impl<H: History> Node<H> {
    /// A follower, until it is elected.
    pub fn new(
        history: Arc<H>,
        engine: Engine,
        me: Member,
        timing: Timing,
        signals: Arc<Signals>,
    ) -> Self {
        Node {
            history,
            engine,
            me,
            timing,
            signals,
            follower: None,
            lease: None,
            renewed: Instant::now(),
            saw_other_writer: false,
        }
    }

    /// Runs the election until `stop` turns true; then gives the lease up, so another
    /// node takes over without waiting for it to run out.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let ticked = Instant::now();
            self.tick().await;
            tokio::select! {
                () = tokio::time::sleep(self.timing.tick) => {}
                () = self.signals.deposed() => {}
                // Every request that cannot reach the writer asks; one look per spacing.
                () = self.signals.asked_to_look() => {
                    tokio::time::sleep_until(ticked + LOOK_SPACING).await;
                }
                _ = stop.changed() => break,
            }
        }
        self.step_down(true).await;
        self.stop_following();
    }

    /// One round: the writer renews its lease (or steps down); a follower makes sure it
    /// applies the history and claims the lease when nobody holds it.
    pub async fn tick(&mut self) {
        if self.signals.take_deposed() {
            self.step_down(false).await;
        }
        if let Some(revision) = self.lease {
            self.renew(revision).await;
        }
        // A node that just stepped down follows at once.
        if self.lease.is_none() {
            self.follow_or_claim().await;
        }
    }

    /// The node's engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether this node is the writer.
    #[cfg(test)]
    pub fn is_writer(&self) -> bool {
        self.lease.is_some() && self.engine.is_writer()
    }

    async fn renew(&mut self, revision: u64) {
        let sent = Instant::now();
        match self.history.renew(&self.me, revision).await {
            Ok(Some(next)) => {
                self.lease = Some(next);
                self.renewed = sent;
            }
            Ok(None) => {
                tracing::warn!(
                    "the writer's lease ran out or moved to another node: stepping down"
                );
                self.step_down(false).await;
            }
            Err(error) if sent.duration_since(self.renewed) >= self.timing.lease_ttl => {
                tracing::warn!(%error, "cannot renew the writer's lease before it ran out: stepping down");
                self.step_down(false).await;
            }
            Err(error) => tracing::warn!(%error, "cannot renew the writer's lease; retrying"),
        }
    }

    async fn follow_or_claim(&mut self) {
        self.follow();
        let lease = match self.history.lease().await {
            Ok(lease) => lease,
            Err(error) => {
                tracing::warn!(%error, "cannot read the writer's lease");
                return;
            }
        };
        if let Some(lease) = lease {
            self.saw_other_writer |= lease.holder != self.me;
            self.see_writer(Some(lease.holder));
            if let Ok(last) = self.history.last_seq().await {
                let head = self.engine.audit_head().seq;
                self.engine
                    .metrics()
                    .cluster_lag_events
                    .set(last.saturating_sub(head) as i64);
            }
            return;
        }
        self.see_writer(None);
        let sent = Instant::now();
        match self.history.claim(&self.me).await {
            Ok(Some(revision)) => {
                self.lease = Some(revision);
                self.renewed = sent;
                if let Err(reason) = self.take_over().await {
                    tracing::warn!(%reason, "could not take over as the writer");
                    self.step_down(true).await;
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot claim the writer's lease"),
        }
    }

    /// With the lease held: catches up to the history's last sequence, stops following
    /// and lets the engine decide writes.
    async fn take_over(&mut self) -> Result<(), String> {
        let last = self
            .history
            .last_seq()
            .await
            .map_err(|error| error.to_string())?;
        tracing::info!(
            last,
            head = self.engine.audit_head().seq,
            "holding the writer's lease: catching up"
        );
        while self.engine.audit_head().seq < last {
            if self.renewed.elapsed() >= self.timing.tick {
                let revision = self.lease.ok_or("the lease was lost while catching up")?;
                self.renew(revision).await;
                if self.lease.is_none() {
                    return Err("the lease was lost while catching up".into());
                }
            }
            self.follow();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.stop_following();
        match self.engine.promote(last).await {
            Ok(Ok(())) => {}
            Ok(Err(head)) => {
                return Err(format!(
                    "the state reflects seq {head}, not the history's last {last}: another node appended"
                ))
            }
            Err(refusal) => return Err(refusal.to_string()),
        }
        self.signals.set_leased(true);
        self.see_writer(Some(self.me.clone()));
        let metrics = self.engine.metrics();
        metrics.cluster_lag_events.set(0);
        if std::mem::take(&mut self.saw_other_writer) {
            metrics.cluster_failovers.inc();
        }
        tracing::info!(head = last, "took over as the writer");
        Ok(())
    }

    /// Stops appending; gives the lease up when asked (a clean stop, a failed take-over)
    /// and it is still held.
    async fn step_down(&mut self, release: bool) {
        self.signals.set_leased(false);
        if let Some(revision) = self.lease.take() {
            if release {
                self.history.release(&self.me, revision).await;
            }
        }
        if self.engine.is_writer() {
            self.engine.demote().await;
            tracing::info!("stepped down: following the history");
        }
        self.see_writer(None);
    }

    /// Notes who the writer is, for forwarding and the metrics.
    fn see_writer(&self, writer: Option<Member>) {
        let metrics = self.engine.metrics();
        if let Some(previous) = self.signals.writer() {
            if writer.as_ref() != Some(&previous) {
                metrics
                    .cluster_writer
                    .get_or_create(&vec![("node".to_owned(), previous.node)])
                    .set(0);
            }
        }
        if let Some(writer) = &writer {
            metrics
                .cluster_writer
                .get_or_create(&vec![("node".to_owned(), writer.node.clone())])
                .set(1);
        }
        self.signals.set_writer(writer);
    }

    /// Starts applying the history from the local head on, unless it is being applied.
    fn follow(&mut self) {
        if self
            .follower
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        let from = self.engine.audit_head().seq + 1;
        let records = self.history.follow(from);
        let engine = self.engine.clone();
        self.follower = Some(tokio::spawn(async move {
            let mut batches = records.ready_chunks(REPLICATE_RECORDS_MAX);
            while let Some(batch) = batches.next().await {
                let mut records = Vec::with_capacity(batch.len());
                let mut failure = None;
                for item in batch {
                    match item {
                        Ok(record) => records.push(record),
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    }
                }
                if !records.is_empty() && engine.replicate(records).await.is_err() {
                    return;
                }
                if let Some(error) = failure {
                    tracing::warn!(%error, "stopped following the history; starting again");
                    return;
                }
            }
        }));
    }

    fn stop_following(&mut self) {
        if let Some(task) = self.follower.take() {
            task.abort();
        }
    }
}

impl<H: History> Drop for Node<H> {
    fn drop(&mut self) {
        self.stop_following();
    }
}
