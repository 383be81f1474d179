//! The engine's state as of the durable head, published for reads that need not queue
//! behind the writes (see [`crate::engine::Engine::read`]).
//!
//! The engine copies its state at the end of a pass while reads come (one came within
//! [`READS_WANT_COPIES_FOR`]), and hands the copy to the commit thread with the pass's
//! group. The commit thread
//! publishes it once that group is durable, right after it moves the durable head and
//! before it answers the group: no copy is seen before its events are on disk (nor before
//! the head and the stream index have them), and a writer's next read finds its write in
//! the copy. State no event records (a heartbeat's lease) would not show in a head, so the
//! engine withdraws the published copy before it answers such a change, and every copy
//! made before the withdrawal is dropped instead of published.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use swarmlog_projections::State;

use crate::limits::READS_WANT_COPIES_FOR;

/// The published state and when reads last came.
pub(crate) struct Published {
    current: Mutex<Current>,
    /// When the last read came, in ns after `epoch` (0: never), to the millisecond.
    last_read_ns: AtomicU64,
    epoch: Instant,
}

impl Default for Published {
    fn default() -> Self {
        Published {
            current: Mutex::default(),
            last_read_ns: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

#[derive(Default)]
struct Current {
    state: Option<Arc<State>>,
    /// Counts the withdrawals: a copy made before the last one is not published.
    generation: u64,
    /// Copies replaced since the engine last looked, dropped by the engine so that the
    /// commit thread does not spend its time freeing states.
    retired: Vec<Arc<State>>,
}

/// A copy of the engine's state on its way to readers.
pub(crate) struct Publication {
    state: Arc<State>,
    generation: u64,
}

impl Published {
    /// The published state if it reflects seq `head` or a later one. Either way the read
    /// is noted, so that the engine goes on copying its state.
    pub fn at_least(&self, head: u64) -> Option<Arc<State>> {
        // Written at most once a millisecond, so that a steady stream of reads on several
        // threads does not bounce its cache line.
        let now_ns = self.now_ns().max(1);
        let last_ns = self.last_read_ns.load(Ordering::Relaxed);
        if last_ns == 0 || now_ns.saturating_sub(last_ns) >= 1_000_000 {
            self.last_read_ns.store(now_ns, Ordering::Relaxed);
        }
        self.lock()
            .state
            .as_ref()
            .filter(|state| state.head >= head)
            .cloned()
    }

    /// Whether a read came within [`READS_WANT_COPIES_FOR`].
    pub fn reads_come(&self) -> bool {
        let last_ns = self.last_read_ns.load(Ordering::Relaxed);
        last_ns != 0
            && self.now_ns().saturating_sub(last_ns) <= READS_WANT_COPIES_FOR.as_nanos() as u64
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Makes `state` a publication (for [`Published::publish`] once it is durable), and
    /// hands back the copies retired since the last call, for the caller to drop.
    pub fn prepare(&self, state: State) -> (Publication, Vec<Arc<State>>) {
        let mut current = self.lock();
        let publication = Publication {
            state: Arc::new(state),
            generation: current.generation,
        };
        (publication, std::mem::take(&mut current.retired))
    }

    /// Publishes a copy whose events are all durable, unless it was withdrawn meanwhile.
    pub fn publish(&self, publication: Publication) {
        let mut current = self.lock();
        if publication.generation == current.generation {
            let replaced = current.state.replace(publication.state);
            current.retired.extend(replaced);
        }
    }

    /// Takes the published state back, and every copy on its way: reads go to the engine
    /// until a copy made after this call is published. Returns what the caller drops.
    pub fn withdraw(&self) -> Vec<Arc<State>> {
        let mut current = self.lock();
        current.generation += 1;
        let mut retired = std::mem::take(&mut current.retired);
        retired.extend(current.state.take());
        retired
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        // Under the lock `Arc`s are cloned and moved and a counter is bumped; none of
        // that panics.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
