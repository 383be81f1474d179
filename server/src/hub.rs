//! Live fan-out of committed events to subscribers.
//!
//! The engine publishes each group commit once, after it is durable, as one shared batch.
//! The channel is bounded: a subscriber that falls more than [`HUB_BATCHES_MAX`] batches
//! behind gets `Lagged` from its receiver and reads the missed events from the log on disk
//! instead, so it is never dropped and never slows the writer or anyone else.
//!
//! [`HUB_BATCHES_MAX`]: crate::limits::HUB_BATCHES_MAX

use std::sync::Arc;

use swarmlog_projections::Envelope;
use tokio::sync::broadcast;

use crate::limits::HUB_BATCHES_MAX;

/// A committed event with its JSON form, serialized once for every subscriber.
#[derive(Debug)]
pub struct Committed {
    /// The event.
    pub envelope: Envelope,
    /// `envelope.to_json()`.
    pub json: String,
}

impl Committed {
    /// Wraps an envelope, serializing it once.
    pub fn new(envelope: Envelope) -> Self {
        let json = envelope.to_json();
        Committed { envelope, json }
    }
}

/// One group commit's events, in seq order.
pub type CommittedBatch = Arc<[Arc<Committed>]>;

/// The fan-out point.
#[derive(Clone)]
pub struct Hub {
    sender: broadcast::Sender<CommittedBatch>,
}

impl Hub {
    /// A hub with the standard capacity.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(HUB_BATCHES_MAX);
        Hub { sender }
    }

    /// A receiver of every batch published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CommittedBatch> {
        self.sender.subscribe()
    }

    /// Publishes a durable batch. Having no subscriber is fine.
    pub fn publish(&self, batch: CommittedBatch) {
        let _ = self.sender.send(batch);
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}
