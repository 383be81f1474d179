//! Several servers, one history (SPEC §9): the history lives in a NATS JetStream stream,
//! every node mirrors it into its local log and applies it to its own state, and one node
//! at a time, the holder of a lease in a JetStream key-value bucket, decides the writes.
//!
//! - `history.rs`: what the cluster needs of the shared history (conditional atomic
//!   appends, following, the lease), as a trait.
//! - `jetstream.rs`: that trait on JetStream (async-nats), with the stream's safety checks.
//! - `store.rs`: the engine's storage seam on the shared history ([`ClusterStore`]).
//! - `node.rs`: the election: follow, claim, catch up, write, step down.
//! - `forward.rs`: a follower sends the writes it cannot decide on to the writer.

mod forward;
pub mod history;
pub mod jetstream;
#[cfg(test)]
mod memory;
mod node;
mod store;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

pub use forward::{forward, Forwarder};
use history::{History, Member};
pub use jetstream::{JetStream, JetStreamConfig};
pub(crate) use node::Node;
pub use node::Timing;
pub(crate) use store::ClusterStore;
pub use store::ATOMIC_BATCH_RECORDS_MAX;

use crate::engine::{EngineConfig, EngineError, StoreSetup};
use crate::Engine;

/// What the election, the store and the forwarding share.
#[derive(Default)]
pub(crate) struct Signals {
    /// Set while this node holds the writer's lease and has taken over: the store
    /// appends to the history only then.
    leased: AtomicBool,
    /// Set by the store when the history refused this node's append.
    deposed: AtomicBool,
    deposed_notify: Notify,
    /// Set by the forwarding when the writer this node sees cannot be reached: the
    /// election looks at the lease again without waiting for its next round.
    look_notify: Notify,
    /// The writer, as this node last saw it.
    writer: Mutex<Option<Member>>,
}

impl Signals {
    pub fn holds_lease(&self) -> bool {
        self.leased.load(Ordering::Acquire)
    }

    fn set_leased(&self, leased: bool) {
        self.leased.store(leased, Ordering::Release);
    }

    /// The store's word that this node must step down.
    pub fn depose(&self) {
        self.leased.store(false, Ordering::Release);
        self.deposed.store(true, Ordering::Release);
        self.deposed_notify.notify_one();
    }

    fn take_deposed(&self) -> bool {
        self.deposed.swap(false, Ordering::AcqRel)
    }

    /// Completes when the store deposes this node.
    async fn deposed(&self) {
        self.deposed_notify.notified().await;
    }

    /// Asks the election to look at the lease now: the writer it names did not answer
    /// (it may have stopped and given the lease up).
    pub fn look_now(&self) {
        self.look_notify.notify_one();
    }

    /// Completes when the election is asked to look at the lease now.
    async fn asked_to_look(&self) {
        self.look_notify.notified().await;
    }

    /// The writer as this node last saw it.
    pub fn writer(&self) -> Option<Member> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_writer(&self, writer: Option<Member>) {
        *self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = writer;
    }
}

/// A running cluster node: its engine, and the election next to it.
pub struct ClusterNode {
    /// The node's engine (a follower's refuses writes until it is elected).
    pub engine: Engine,
    /// Forwards what the engine refuses as a follower to the writer.
    pub forwarder: Arc<Forwarder>,
    stop: watch::Sender<bool>,
    election: tokio::task::JoinHandle<()>,
}

impl ClusterNode {
    /// Opens the local mirror on `config`'s data directory, checks that it is a prefix of
    /// the shared history, and starts the engine as a follower with the election next to
    /// it. Must run on a multi-threaded tokio runtime.
    pub async fn start(
        config: EngineConfig,
        history: JetStreamConfig,
        me: Member,
    ) -> Result<ClusterNode, ClusterError> {
        let timing = Timing::new(history.lease_ttl);
        let history = Arc::new(
            JetStream::open(&history, &me.node)
                .await
                .map_err(ClusterError::History)?,
        );
        start_node(config, history, me, timing).await
    }

    /// Stops the election (giving the lease up, so another node takes over at once).
    /// The engine goes on until it is shut down.
    pub async fn stop_election(self) -> Engine {
        let _ = self.stop.send(true);
        let _ = self.election.await;
        self.engine
    }
}

/// Starts a node on any history, with the election running on its own task.
pub(crate) async fn start_node<H: History>(
    config: EngineConfig,
    history: Arc<H>,
    me: Member,
    timing: Timing,
) -> Result<ClusterNode, ClusterError> {
    let (node, forwarder) = open_node(config, history, me, timing).await?;
    let engine = node.engine().clone();
    let (stop, stopped) = watch::channel(false);
    let election = tokio::spawn(node.run(stopped));
    Ok(ClusterNode {
        engine,
        forwarder,
        stop,
        election,
    })
}

/// Opens a node's engine as a follower over `history`, and its side of the election,
/// which the caller runs (or, in tests, ticks).
pub(crate) async fn open_node<H: History>(
    config: EngineConfig,
    history: Arc<H>,
    me: Member,
    timing: Timing,
) -> Result<(Node<H>, Arc<Forwarder>), ClusterError> {
    let signals = Arc::new(Signals::default());
    let setup = StoreSetup {
        open: {
            let history = history.clone();
            let signals = signals.clone();
            let runtime = tokio::runtime::Handle::current();
            Box::new(move |log| Box::new(ClusterStore::new(log, history, runtime, signals)))
        },
        group_events_max: ATOMIC_BATCH_RECORDS_MAX,
        writer: false,
    };
    let engine = tokio::task::block_in_place(|| Engine::start_with(config, setup))
        .map_err(ClusterError::Engine)?;
    check_mirror(&engine, history.as_ref()).await?;
    let forwarder = Arc::new(Forwarder::new(engine.clone(), signals.clone(), me.clone()));
    Ok((Node::new(history, engine, me, timing, signals), forwarder))
}

/// Refuses a local mirror that is not a prefix of the shared history: one that holds more
/// events, or whose last event is not the history's event at that seq (it mirrors
/// another history, or the history lost acknowledged events).
async fn check_mirror<H: History>(engine: &Engine, history: &H) -> Result<(), ClusterError> {
    use futures::StreamExt;
    let local = engine.audit_head();
    let last = history.last_seq().await.map_err(ClusterError::History)?;
    if local.seq > last {
        return Err(ClusterError::Diverged {
            local: local.seq,
            last,
        });
    }
    if local.seq == 0 {
        return Ok(());
    }
    let record = history
        .follow(local.seq)
        .next()
        .await
        .ok_or_else(|| {
            ClusterError::History(history::HistoryError(
                "the stream ended before the local head".into(),
            ))
        })?
        .map_err(ClusterError::History)?;
    let same = record.seq.get() == local.seq
        && swarmlog_projections::Envelope::decode(
            record.seq.get(),
            record.timestamp_ms,
            &record.payload,
        )
        .is_ok_and(|envelope| envelope.hash == local.hash);
    if !same {
        return Err(ClusterError::Forked { seq: local.seq });
    }
    Ok(())
}

/// Why a cluster node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// NATS could not be reached, or its stream cannot keep the history safely.
    #[error("{0}")]
    History(history::HistoryError),
    /// The local mirror could not be opened.
    #[error(transparent)]
    Engine(EngineError),
    /// The local mirror's last event is not the shared history's event at that seq.
    #[error("the local data directory's event {seq} is not the stream's event {seq}: it mirrors another history; start this node on an empty data directory")]
    Forked {
        /// The local head.
        seq: u64,
    },
    /// The local mirror is ahead of the shared history.
    #[error("the local data directory holds events up to seq {local} but the stream ends at seq {last}: it mirrors another history (or the stream lost acknowledged events); start this node on an empty data directory")]
    Diverged {
        /// The local head.
        local: u64,
        /// The stream's last sequence.
        last: u64,
    },
}

/// The lease's default lifetime: a dead writer is replaced within it plus a tick.
pub const LEASE_TTL_DEFAULT: Duration = Duration::from_secs(3);
