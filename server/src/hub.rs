//! Live fan-out of committed events to subscribers.
//!
//! The engine publishes each group commit once, after it is durable, as one shared batch.
//! The channel is bounded: a subscriber that falls more than [`HUB_BATCHES_MAX`] batches
//! behind gets `Lagged` from its receiver and reads the missed events from the log on disk
//! instead, so it is never dropped and never slows the writer or anyone else.
//!
//! [`HUB_BATCHES_MAX`]: crate::limits::HUB_BATCHES_MAX

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use swarmlog_projections::Envelope;
use tokio::sync::broadcast;

use crate::limits::{HUB_BATCHES_MAX, SUBSCRIBERS_MAX_DEFAULT};

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
    seats: Arc<Seats>,
}

/// How many subscriptions may be open at once, and how many are.
#[derive(Debug)]
struct Seats {
    most: AtomicUsize,
    taken: AtomicUsize,
}

/// An open subscription's seat, given back when it is dropped.
#[derive(Debug)]
pub struct Seat {
    seats: Arc<Seats>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.seats.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every seat is taken: the subscription cap (`serve --max-subscribers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSeat {
    /// The cap.
    pub most: usize,
}

impl Hub {
    /// A hub with the standard capacity and subscription cap.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(HUB_BATCHES_MAX);
        Hub {
            sender,
            seats: Arc::new(Seats {
                most: AtomicUsize::new(SUBSCRIBERS_MAX_DEFAULT),
                taken: AtomicUsize::new(0),
            }),
        }
    }

    /// Sets how many subscriptions may be open at once; the open ones stay.
    pub fn set_subscribers_max(&self, most: usize) {
        self.seats.most.store(most, Ordering::Release);
    }

    /// A seat for one more subscription, unless every seat is taken.
    pub fn seat(&self) -> Result<Seat, NoSeat> {
        let most = self.seats.most.load(Ordering::Acquire);
        self.seats
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < most).then_some(taken + 1)
            })
            .map(|_| Seat {
                seats: self.seats.clone(),
            })
            .map_err(|_| NoSeat { most })
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
