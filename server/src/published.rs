//! The engine's state as of a durable point, published for reads that need not queue
//! behind the writes (see [`crate::engine::Engine::read`]).
//!
//! The engine alone fills or empties the cell, and only with a copy of a state every event
//! of which is durable; readers take an `Arc` of it under a lock held for that clone only.
//! A read marks the cell wanted, and the engine copies its state again at its next durable
//! point only if a read came since its last copy: a server nobody reads pays no copy, and
//! one that is read pays at most one per durable point.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use swarmlog_projections::State;

/// The published state and whether reads want a fresh one.
#[derive(Default)]
pub(crate) struct Published {
    state: Mutex<Option<Arc<State>>>,
    /// Set by every read, cleared when the engine publishes.
    wanted: AtomicBool,
}

impl Published {
    /// The published state if it reflects seq `head` or a later one. Either way the
    /// engine is told that reads want a state published at its next durable point.
    pub fn at_least(&self, head: u64) -> Option<Arc<State>> {
        // Readers on several threads only set the flag, so it is written only when it
        // changes: a steady stream of reads does not bounce its cache line.
        if !self.wanted.load(Ordering::Relaxed) {
            self.wanted.store(true, Ordering::Relaxed);
        }
        self.lock()
            .as_ref()
            .filter(|state| state.head >= head)
            .cloned()
    }

    /// Whether a read came since the last call.
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }

    /// Puts `state` in place of the published one (none: reads go to the engine) and
    /// returns the one it replaced, so that the caller drops it outside the lock.
    pub fn replace(&self, state: Option<Arc<State>>) -> Option<Arc<State>> {
        std::mem::replace(&mut *self.lock(), state)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<State>>> {
        // Under the lock an `Arc` is cloned or swapped, neither of which panics.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
