//! The single-writer engine (SPEC §1): one task owns the in-memory state and decides
//! every write (on the server's multi-threaded runtime; elsewhere a thread of its own runs
//! it); the commit thread (`committer`) owns the log.
//!
//! The engine drains a bounded queue of jobs; for each write it decides against the state,
//! stamps the resulting events (seq, time, hash) and applies them, then hands the group to
//! the commit thread and goes on with the next. The commit thread appends what it was
//! handed with one fsync, and only after that answers every request of the group,
//! answers the reads computed meanwhile and publishes the events to subscribers. So the
//! state may run ahead of the disk by the groups in flight, yet nobody, not even a refused
//! request or a reader, sees state that is not durable.
//!
//! Most reads do not queue at all: while reads come, the engine hands a copy of its state
//! to the commit thread with each group, which publishes it
//! (`published`) once the group is durable, and [`Engine::read`] runs on that copy, on the
//! reader's task, whenever it holds the durable head of the moment.
//!
//! A full disk is met in two places. Before deciding a group the engine asks the
//! free-space guard (`space`): below `--min-free-bytes` it answers writes 507 without
//! deciding them and runs no timers, so nothing is written and nothing must be undone.
//! If the log still finds no room for a group (another process took the space), the
//! commit thread refuses that group and the ones decided after it; the engine then reloads
//! its state from the log, as a restart would, and goes on serving reads.
//!
//! The engine is usable without HTTP: tests and the embedded CLI drive it directly.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use swarmlog_projections::Code;

use swarmlog_log::{LockMode, Log, LogOptions, LogReader, Record, Seq, SyncPolicy};
use swarmlog_projections::coordination::branches::{ForkPoint, Replayer};
use swarmlog_projections::coordination::wait_for::{WaitForGraph, WaiterId};
use swarmlog_projections::coordination::{self, CoordinationCommand};
use swarmlog_projections::state::decide_append;
use swarmlog_projections::{
    work, AppendRequest, Envelope, EventDraft, Idempotency, Rejection, State, GENESIS_HASH,
    MAIN_BRANCH,
};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{mpsc, oneshot, watch};

use crate::committer::{Answer, Commit, Committer, Deferred, Durability};
pub use crate::hub::Committed;
use crate::hub::Hub;
use crate::limits::{
    COMMIT_BYTES_MAX, COMMIT_EVENTS_MAX, COMMIT_JOBS_MAX, CONTENTION_TOP_MAX,
    CONTENTION_TRACKED_MAX, ENGINE_QUEUE_DEPTH_MAX, IDEMPOTENCY_WINDOW_MS,
    SNAPSHOT_INTERVAL_EVENTS, SPACE_RECHECK_INTERVAL, STATE_PUBLICATION_SPACING_PER_COST,
    STREAM_INDEX_RANGE_EVENTS,
};
use crate::metrics::Metrics;
use crate::published::{Publication, Published};
use crate::refusal::Refusal;
use crate::snapshot::{self, Snapshot};
use crate::space::SpaceGuard;
use crate::store::{LocalStore, Store};
use crate::stream_index::{StreamIndex, StreamIndexError};

/// How the engine opens its data directory.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The data directory; the log lives in `DIR/log`.
    pub data_dir: PathBuf,
    /// Whether every batch is fsynced before it is answered.
    pub sync: SyncPolicy,
    /// Segment size at which the log rolls to a new segment.
    pub segment_size_bytes_max: u64,
    /// Wait for the data directory's lock instead of failing when another process holds
    /// it (the in-process CLI waits; a server fails at once).
    pub lock_wait: bool,
    /// Refuse lock acquisitions out of resource order (`serve --lock-order`).
    pub lock_order: bool,
    /// At shutdown, write a snapshot only if at least this many events came since the
    /// last one: 1 for a server; more for the in-process CLI, which opens and closes the
    /// log for every command and should not rewrite the state each time.
    pub shutdown_snapshot_min_events: u64,
    /// On open, give every lock and lease its full TTL again: a server's holders could not
    /// renew while it was down. The in-process CLI opens the log for every request, with
    /// nothing down in between, so it keeps the deadlines (else no TTL would ever run out).
    pub restart_leases_on_open: bool,
    /// A snapshot is written in the background every this many events (default
    /// [`SNAPSHOT_INTERVAL_EVENTS`]).
    pub snapshot_interval_events: u64,
    /// Writes are refused with 507 `insufficient_storage` while the log's file system has
    /// less free space than this (`serve --min-free-bytes`); `None` is the default of
    /// [`crate::space::SpaceGuard::new`], 0 refuses only when the disk is really full.
    pub free_bytes_min: Option<u64>,
    /// Events per stream index file (default [`STREAM_INDEX_RANGE_EVENTS`]); tests make
    /// it small to cross range boundaries with a few events.
    pub stream_index_range_events: u32,
}

impl EngineConfig {
    /// The defaults for a data directory: fsync always, 64 MiB segments.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            sync: SyncPolicy::Always,
            segment_size_bytes_max: LogOptions::default().segment_size_bytes_max,
            lock_wait: false,
            lock_order: false,
            shutdown_snapshot_min_events: 1,
            restart_leases_on_open: true,
            snapshot_interval_events: SNAPSHOT_INTERVAL_EVENTS,
            free_bytes_min: None,
            stream_index_range_events: STREAM_INDEX_RANGE_EVENTS,
        }
    }

    /// Where the log's segments live.
    pub fn log_dir(&self) -> PathBuf {
        log_dir(&self.data_dir)
    }
}

/// How the engine keeps its history: the local log (the default), or a shared history
/// that every node mirrors into its local log (a cluster's, SPEC §9).
pub(crate) struct StoreSetup {
    /// Wraps the opened local log into the store the committer appends through.
    pub open: Box<dyn FnOnce(Log) -> Box<dyn Store> + Send>,
    /// See `Core::group_events_max`.
    pub group_events_max: usize,
    /// Whether the engine starts as the writer (a cluster node starts as a follower).
    pub writer: bool,
}

impl StoreSetup {
    /// The local log: the engine is the writer, groups as large as a log batch allows.
    pub fn local() -> Self {
        StoreSetup {
            open: Box::new(|log| Box::new(LocalStore::new(log))),
            group_events_max: COMMIT_EVENTS_MAX,
            writer: true,
        }
    }
}

/// Where the log lives inside a data directory.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The log could not be opened or recovered.
    #[error("cannot open the log in {dir}: {source}")]
    Log {
        /// The log directory.
        dir: String,
        /// The log's error.
        source: swarmlog_log::Error,
    },
    /// A stored event does not decode.
    #[error("{0}")]
    Envelope(#[from] swarmlog_projections::EnvelopeError),
    /// The hash chain is broken: the history was rewritten.
    #[error("hash chain broken at seq {seq}: stored {stored}, recomputed {computed}")]
    HashChain {
        /// The first event whose hash does not match.
        seq: u64,
        /// The stored hash.
        stored: String,
        /// The recomputed hash.
        computed: String,
    },
    /// A thread of the engine (its own, the commit thread's, the stream index writer's)
    /// could not be started.
    #[error("cannot start a thread of the engine: {0}")]
    Thread(std::io::Error),
    /// The stream index could not be loaded or rebuilt.
    #[error("cannot open the stream index: {0}")]
    StreamIndex(#[from] StreamIndexError),
}

/// Who makes a write and with what provenance; shared by every event of the write.
#[derive(Debug, Clone, Default)]
pub struct WriteContext {
    /// The branch written to.
    pub branch: String,
    /// The acting agent.
    pub actor: String,
    /// Optional session id.
    pub session: Option<String>,
    /// Optional correlation id.
    pub correlation: Option<String>,
    /// Optional provenance object, as JSON text.
    pub meta: Option<String>,
}

/// One custom event of a `POST /v1/events`, with its own optional provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendItem {
    /// The rule input.
    pub request: AppendRequest,
    /// Overrides the write's session for this event.
    pub session: Option<String>,
    /// Overrides the write's correlation for this event.
    pub correlation: Option<String>,
    /// Overrides the write's meta for this event.
    pub meta: Option<String>,
}

/// What a write asks the engine to do.
#[derive(Debug, Clone)]
pub enum WriteCommand {
    /// Append custom events atomically.
    Append(Vec<AppendItem>),
    /// A state cell, kv, lock, agent or branch command.
    Coordination(CoordinationCommand),
    /// A task, blackboard, proposal, message or session command.
    Work(work::WorkCommand),
}

impl WriteCommand {
    /// Whether an answer with no events means "nothing yet" and the request may wait for
    /// a later commit (a claim with no pending task).
    fn waits_on_empty(&self) -> bool {
        matches!(self, WriteCommand::Work(command) if command.waits_when_empty())
    }
}

/// A write guarded by a fencing token (SPEC §3 `fence`): it succeeds only while lock
/// `resource` is held with `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lock's resource.
    pub resource: String,
    /// The fencing token the writer holds.
    pub token: u64,
}

/// Builds the answer of a write from the state after its events were applied and the
/// events it wrote (none for a no-op). Kept apart from the rules so that the routes own
/// response shapes, and run inside the engine so that the idempotency record can hold it.
/// It runs after the rules accepted the write, so its events stand whatever it answers:
/// an error here is a broken invariant (the entity just written is missing), and the
/// engine answers it as `Refusal::Internal`, never as a refusal that would claim nothing
/// was written.
pub type Responder =
    Box<dyn FnOnce(&State, &[Arc<Committed>]) -> Result<WriteResponse, Refusal> + Send>;

/// The idempotency part of a write.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest {
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// SHA-256 of method, path, query and body.
    pub request_sha256: [u8; 32],
}

/// A write job.
pub struct WriteRequest {
    /// Who and where.
    pub context: WriteContext,
    /// What.
    pub command: WriteCommand,
    /// Optional idempotency key.
    pub idempotency: Option<IdempotencyRequest>,
    /// Optional fencing token the write depends on.
    pub fence: Option<Fence>,
    /// How long the request may wait for a lock or a task (`wait_ms`); `None` answers at once.
    pub wait: Option<Duration>,
    /// What the caller may do to things other agents created.
    pub permit: Permit,
    /// Builds the answer.
    pub respond: Responder,
}

/// What a caller may do to things other agents created (SPEC §4, issue 9). Checked by the
/// engine against the state the command is decided on, so no write can slip between the
/// check and the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// An operator (an admin token, or a server without tokens): anything.
    Any,
    /// An agent token: its actor's own things only
    /// ([`swarmlog_projections::work::check_creator_rights`]).
    OwnOnly,
}

impl WriteRequest {
    /// A write with no idempotency key, fence or wait.
    pub fn new(context: WriteContext, command: WriteCommand, respond: Responder) -> Self {
        WriteRequest {
            context,
            command,
            idempotency: None,
            fence: None,
            wait: None,
            permit: Permit::Any,
            respond,
        }
    }
}

/// What kind of answer a write gives; adapters map it (HTTP 200, 201, 204).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done, or nothing to change (a no-op write).
    Ok,
    /// Something new was created.
    Created,
    /// Nothing to answer (a claim that found no task).
    Empty,
}

impl Status {
    /// The number an idempotency record stores on disk. These are the HTTP numbers the
    /// records have always held, so logs written before this type existed still replay.
    pub fn stored(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::Created => 201,
            Status::Empty => 204,
        }
    }

    /// The status an idempotency record stored (anything unknown answers as `Ok`).
    pub fn from_stored(stored: u16) -> Self {
        match stored {
            201 => Status::Created,
            204 => Status::Empty,
            _ => Status::Ok,
        }
    }
}

/// The answer to a write, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResponse {
    /// What kind of answer.
    pub status: Status,
    /// JSON body.
    pub body: String,
    /// Whether this answers a retry from the idempotency record instead of writing.
    pub replayed: bool,
}

/// A read against the engine's state; returns the reply to send once that state is durable.
type ReadJob = Box<dyn FnOnce(&State, &HashMap<String, WaitForGraph>) -> Deferred + Send>;
/// A change to unlogged state (a heartbeat); returns its reply, sent like a read's.
type TouchJob = Box<dyn FnOnce(&mut State, i64) -> Deferred + Send>;
/// Where a write's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<WriteResponse, Refusal>>;

// Writes are nearly every job, so boxing them would add an allocation per request to
// shrink the rare ones.
#[allow(clippy::large_enum_variant)]
enum Job {
    Write {
        request: WriteRequest,
        reply: Reply,
        enqueued: Instant,
    },
    Read(ReadJob),
    Touch(TouchJob),
    Snapshot(oneshot::Sender<Result<(PathBuf, u64), String>>),
    Shutdown(oneshot::Sender<()>),
    /// A cluster follower's: events another node made durable in the shared history, in
    /// order, to apply and mirror.
    Replicate(Vec<Record>),
    /// Become the writer if the state reflects exactly the shared history's head; else
    /// answers the head it reflects.
    Promote {
        head: u64,
        reply: oneshot::Sender<Result<(), u64>>,
    },
    /// Stop deciding writes and running timers.
    Demote(oneshot::Sender<()>),
}

/// The head of the hash chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditHead {
    /// The last committed seq (0 when empty).
    pub seq: u64,
    /// Its hash.
    pub hash: [u8; 32],
}

/// What readers share with the engine; updated only after a batch is durable.
pub struct Shared {
    head: Mutex<AuditHead>,
    /// Where each `(branch, stream)`'s events are: files for full ranges, memory for the
    /// tail.
    stream_index: StreamIndex,
    /// A copy of the engine's state as of the durable head, for [`Engine::read`].
    pub(crate) published: Published,
    /// Lets a test hold the commit thread or fail its next append.
    #[cfg(test)]
    pub(crate) commit_gate: crate::committer::CommitGate,
    /// The metrics.
    pub metrics: Metrics,
    shutting_down: AtomicBool,
    shutdown_signal: watch::Sender<bool>,
    /// Whether this engine decides writes and runs the timers: always with the local log;
    /// in a cluster, only on the node that holds the writer's lease.
    writer: AtomicBool,
}

impl Shared {
    /// Whether this engine decides writes (see [`Shared::writer`]).
    pub(crate) fn is_writer(&self) -> bool {
        self.writer.load(Ordering::Acquire)
    }

    /// Makes durable events visible to readers: their streams' seqs, then the new head.
    pub(crate) fn publish<'a>(
        &self,
        events: impl Iterator<Item = &'a Arc<Committed>>,
        head: AuditHead,
    ) {
        self.stream_index.push(events);
        self.set_head(head);
    }

    /// The stream index.
    pub(crate) fn stream_index(&self) -> &StreamIndex {
        &self.stream_index
    }

    /// Publishes the head of the durable hash chain.
    pub(crate) fn set_head(&self, head: AuditHead) {
        *self
            .head
            .lock()
            .expect("the head lock is never held across a panic") = head;
        self.metrics.head_seq.set(head.seq as i64);
    }
}

/// A cloneable handle to a running engine.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    reader: LogReader,
    hub: Hub,
    shared: Arc<Shared>,
    config: Arc<EngineConfig>,
}

impl Engine {
    /// Opens (recovering) the log, rebuilds the state and starts the writer thread.
    pub fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        Engine::start_with(config, StoreSetup::local())
    }

    /// Like [`Engine::start`], with the store the committer appends through (a cluster
    /// node's: `cluster::ClusterStore`).
    pub(crate) fn start_with(
        config: EngineConfig,
        setup: StoreSetup,
    ) -> Result<Engine, EngineError> {
        let log_dir = config.log_dir();
        let space = Arc::new(SpaceGuard::new(&log_dir, config.free_bytes_min));
        let options = LogOptions {
            segment_size_bytes_max: config.segment_size_bytes_max,
            sync: config.sync,
            lock: if config.lock_wait {
                LockMode::Wait
            } else {
                LockMode::Fail
            },
            free_bytes_min: space.free_bytes_min(),
            ..LogOptions::default()
        };
        let log = Log::open(&log_dir, options).map_err(|source| EngineError::Log {
            dir: log_dir.display().to_string(),
            source,
        })?;
        let recovery = log.recovery();
        if recovery.truncated_bytes > 0 {
            tracing::warn!(
                bytes = recovery.truncated_bytes,
                segment = ?recovery.truncated_segment,
                "recovery cut a torn tail from the active segment"
            );
        }
        if recovery.indexes_unwritten > 0 {
            tracing::warn!(
                indexes = recovery.indexes_unwritten,
                "the disk is full: rebuilt index files are kept in memory only"
            );
        }
        let reader = log.reader();
        let hub = Hub::new();
        let (shutdown_signal, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            head: Mutex::new(AuditHead {
                seq: 0,
                hash: GENESIS_HASH,
            }),
            stream_index: StreamIndex::new(&config.data_dir, config.stream_index_range_events)
                .map_err(EngineError::Thread)?,
            published: Published::default(),
            #[cfg(test)]
            commit_gate: crate::committer::CommitGate::default(),
            metrics: Metrics::new(),
            shutting_down: AtomicBool::new(false),
            shutdown_signal,
            writer: AtomicBool::new(setup.writer),
        });
        let committer = Committer::start(
            (setup.open)(log),
            shared.clone(),
            hub.clone(),
            space.clone(),
        )
        .map_err(EngineError::Thread)?;
        let mut core = Core {
            reader: reader.clone(),
            committer,
            state: State::default(),
            shared: shared.clone(),
            lock_order: config.lock_order,
            idempotency: HashMap::new(),
            idempotency_expiry: VecDeque::new(),
            last_ts_ms: 0,
            parked: VecDeque::new(),
            wait_for: HashMap::new(),
            data_dir: config.data_dir.clone(),
            snapshot_head: 0,
            snapshot_running: Arc::new(AtomicBool::new(false)),
            snapshot_thread: None,
            space,
            space_refusal: None,
            shutdown_snapshot_min_events: config.shutdown_snapshot_min_events.max(1),
            restart_leases_on_open: config.restart_leases_on_open,
            snapshot_interval_events: config.snapshot_interval_events.max(1),
            coordination_deadline: None,
            contention: HashMap::new(),
            contention_changed: false,
            not_durable_keys: VecDeque::new(),
            published_head: None,
            publication: None,
            group_events_max: setup.group_events_max,
        };
        core.recover()?;
        shared.stream_index.open(&reader)?;
        let (jobs, receiver) = mpsc::channel(ENGINE_QUEUE_DEPTH_MAX);
        // On a multi-threaded runtime (the server's) the engine is one of its tasks: a
        // request hands its job over without waking another thread, and the engine
        // decides what every connection handed it in one scheduler pass as one group.
        // Anywhere else it gets a thread of its own.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
                runtime.spawn(core.run(receiver));
            }
            _ => {
                std::thread::Builder::new()
                    .name("swarmlog-engine".into())
                    .spawn(move || {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_time()
                            .build()
                            .expect("a current-thread runtime without I/O always builds")
                            .block_on(core.run(receiver))
                    })
                    .map_err(EngineError::Thread)?;
            }
        }
        Ok(Engine {
            jobs,
            reader,
            hub,
            shared,
            config: Arc::new(config),
        })
    }

    /// Submits a write and waits until it is durable (or refused).
    pub async fn write(&self, request: WriteRequest) -> Result<WriteResponse, Refusal> {
        if self.is_shutting_down() {
            return Err(Refusal::ShuttingDown);
        }
        if !self.shared.is_writer() {
            return Err(Refusal::NotWriter);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Write {
            request,
            reply,
            enqueued: Instant::now(),
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| Refusal::ShuttingDown)?;
        answer.await.map_err(|_| Refusal::ShuttingDown)?
    }

    /// Runs `read` against a durable state that reflects every write answered before the
    /// call: a read never returns in-flight state, and a client reads its own writes.
    ///
    /// When the copy of the state published with the last durable group reflects the
    /// durable head as it is now, `read` runs on it here, on the caller's task. Every write
    /// is answered after the head that includes it is set, so that copy holds each of
    /// them. Otherwise the read queues behind the writes and runs in the engine against its
    /// current state, answered once every event that state reflects is durable. Either
    /// way the engine goes on copying its state with its groups while reads come.
    pub async fn read<R, F>(&self, read: F) -> Result<R, Refusal>
    where
        F: FnOnce(&State) -> R + Send + 'static,
        R: Send + 'static,
    {
        let head = self.audit_head().seq;
        if let Some(state) = self.shared.published.at_least(head) {
            self.shared.metrics.reads_published.inc();
            // This path never waits, so it spends the task's cooperative budget: a loop
            // of reads still lets the other tasks of the runtime (the engine's) run.
            tokio::task::consume_budget().await;
            return Ok(read(&state));
        }
        self.shared.metrics.reads_engine.inc();
        let (reply, answer) = oneshot::channel();
        let job = Job::Read(Box::new(
            move |state: &State, _: &HashMap<String, WaitForGraph>| {
                let value = read(state);
                Box::new(move |released: Result<(), Refusal>| {
                    let _ = reply.send(released.map(|()| value));
                }) as Deferred
            },
        ));
        self.jobs
            .send(job)
            .await
            .map_err(|_| Refusal::ShuttingDown)?;
        answer.await.map_err(|_| Refusal::ShuttingDown)?
    }

    /// The lock waiters of a branch in the order they will be served:
    /// `(owner, resources, mode)`.
    pub async fn lock_waiters(
        &self,
        branch: &str,
    ) -> Result<Vec<(String, Vec<String>, &'static str)>, Refusal> {
        let (reply, answer) = oneshot::channel();
        let branch = branch.to_owned();
        let job = Job::Read(Box::new(
            move |_: &State, graphs: &HashMap<String, WaitForGraph>| {
                let waiters = graphs
                    .get(&branch)
                    .map(|graph| {
                        graph
                            .waiters()
                            .map(|(_, waiter)| {
                                (
                                    waiter.owner.clone(),
                                    waiter.resources.clone(),
                                    waiter.mode.as_str(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Box::new(move |released: Result<(), Refusal>| {
                    let _ = reply.send(released.map(|()| waiters));
                }) as Deferred
            },
        ));
        self.jobs
            .send(job)
            .await
            .map_err(|_| Refusal::ShuttingDown)?;
        answer.await.map_err(|_| Refusal::ShuttingDown)?
    }

    /// Changes in-memory state that is not logged (a heartbeat extending a lease), on the
    /// engine, in order with the writes.
    pub async fn touch<R, F>(&self, touch: F) -> Result<R, Refusal>
    where
        F: FnOnce(&mut State, i64) -> R + Send + 'static,
        R: Send + 'static,
    {
        // A heartbeat renews a lease that only the writer's timers can end.
        if !self.shared.is_writer() {
            return Err(Refusal::NotWriter);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Touch(Box::new(move |state: &mut State, now_ms: i64| {
            let value = touch(state, now_ms);
            Box::new(move |released: Result<(), Refusal>| {
                let _ = reply.send(released.map(|()| value));
            }) as Deferred
        }));
        self.jobs
            .send(job)
            .await
            .map_err(|_| Refusal::ShuttingDown)?;
        answer.await.map_err(|_| Refusal::ShuttingDown)?
    }

    /// The test's hold on the commit thread.
    #[cfg(test)]
    pub(crate) fn commit_gate(&self) -> &crate::committer::CommitGate {
        &self.shared.commit_gate
    }

    /// Whether this engine decides writes: always with the local log; in a cluster, on
    /// the writer only.
    pub fn is_writer(&self) -> bool {
        self.shared.is_writer()
    }

    /// Queues events of the shared history, in order, for a follower to apply and mirror
    /// (they are durable in the history already; see `Core::replicate`).
    pub(crate) async fn replicate(&self, records: Vec<Record>) -> Result<(), Refusal> {
        self.jobs
            .send(Job::Replicate(records))
            .await
            .map_err(|_| Refusal::ShuttingDown)
    }

    /// Makes this engine the writer once every event queued before is applied, if its
    /// state then reflects the shared history up to `head` exactly; else answers the head
    /// its state reflects.
    pub(crate) async fn promote(&self, head: u64) -> Result<Result<(), u64>, Refusal> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Promote { head, reply })
            .await
            .map_err(|_| Refusal::ShuttingDown)?;
        answer.await.map_err(|_| Refusal::ShuttingDown)
    }

    /// Stops deciding writes and running timers (a cluster writer that lost its lease).
    pub(crate) async fn demote(&self) {
        let (done, finished) = oneshot::channel();
        if self.jobs.send(Job::Demote(done)).await.is_ok() {
            let _ = finished.await;
        }
    }

    /// Writes a snapshot of the current (durable) state now; returns its path and size.
    pub async fn snapshot(&self) -> Result<(PathBuf, u64), Refusal> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Snapshot(reply))
            .await
            .map_err(|_| Refusal::ShuttingDown)?;
        answer
            .await
            .map_err(|_| Refusal::ShuttingDown)?
            .map_err(|error| Refusal::internal("cannot write the snapshot", &error))
    }

    /// A reader of the durable log.
    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// The data directory (the log and its snapshots).
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The live fan-out.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The head of the hash chain (only durable events).
    pub fn audit_head(&self) -> AuditHead {
        *self
            .shared
            .head
            .lock()
            .expect("the head lock is never held across a panic")
    }

    /// Waits, at most `within`, until the durable head reaches `seq`; the head then. (A
    /// follower's head moves as it applies the shared history.)
    pub async fn wait_for_head(&self, seq: u64, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        // Subscribed before the head is read: the hub is fed after the head moves, so no
        // batch can move it unseen between the two.
        let mut published = self.hub.subscribe();
        loop {
            let head = self.audit_head().seq;
            if head >= seq {
                return head;
            }
            tokio::select! {
                received = published.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = received {
                        return self.audit_head().seq;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return self.audit_head().seq,
            }
        }
    }

    /// The seqs of a stream's durable events on a branch, in order (all of them: reads
    /// that page go through [`Engine::stream_index`]).
    pub fn stream_seqs(&self, branch: &str, stream: &str) -> Result<Vec<u64>, StreamIndexError> {
        let index = &self.shared.stream_index;
        Ok(index.read(branch, stream, 0, u64::MAX, None)?.seqs)
    }

    /// Where each stream's durable events are (reading it may block on file I/O).
    pub fn stream_index(&self) -> &StreamIndex {
        &self.shared.stream_index
    }

    /// Whether shutdown has begun (new writes are refused with 503).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Acquire)
    }

    /// A receiver that turns `true` when shutdown begins, so streams can end cleanly.
    pub fn shutdown_watch(&self) -> watch::Receiver<bool> {
        self.shared.shutdown_signal.subscribe()
    }

    /// Marks shutdown as begun: refuses new writes and ends the live streams.
    pub fn begin_shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        self.shared.shutdown_signal.send_replace(true);
    }

    /// Finishes the queued jobs, then stops the writer thread (the log is closed once every
    /// handle is dropped).
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        let (done, finished) = oneshot::channel();
        if self.jobs.send(Job::Shutdown(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

/// The engine's own state.
struct Core {
    /// Reads the durable log (idempotent replays, forks at past seqs).
    reader: LogReader,
    /// Makes the groups durable and releases their answers; owns the log.
    committer: Committer,
    /// Ahead of the durable log by the groups the committer has not synced yet.
    state: State,
    shared: Arc<Shared>,
    lock_order: bool,
    idempotency: HashMap<String, IdempotencyEntry>,
    /// Keys in the order they expire.
    idempotency_expiry: VecDeque<(i64, String)>,
    last_ts_ms: i64,
    /// Requests waiting for a lock or a task, in arrival order.
    parked: VecDeque<Parked>,
    /// Lock waiters per branch, for FIFO order and deadlock detection.
    wait_for: HashMap<String, WaitForGraph>,
    /// Where snapshots go.
    data_dir: PathBuf,
    /// The head of the last snapshot written (or loaded).
    snapshot_head: u64,
    /// Set while a background snapshot is being written.
    snapshot_running: Arc<AtomicBool>,
    /// The last background snapshot's thread, joined before the state is reloaded.
    snapshot_thread: Option<JoinHandle<()>>,
    /// Whether the disk has room for writes.
    space: Arc<SpaceGuard>,
    /// Set for the group being decided when `space` refuses writes: every write of the
    /// group is answered with it, and no timer runs.
    space_refusal: Option<Refusal>,
    /// See [`EngineConfig::shutdown_snapshot_min_events`].
    shutdown_snapshot_min_events: u64,
    /// See [`EngineConfig::restart_leases_on_open`].
    restart_leases_on_open: bool,
    /// See [`EngineConfig::snapshot_interval_events`].
    snapshot_interval_events: u64,
    /// The earliest lock TTL or agent lease of every branch, while it is known: forgotten
    /// whenever something that can move it happens (a reserved event is applied, a
    /// heartbeat, a reload), so that a group of custom events asks no lock or agent.
    coordination_deadline: Option<Option<i64>>,
    /// Denials plus waits per lock resource, for the contention metric.
    contention: HashMap<String, u64>,
    /// Whether `contention` changed since the metric was last updated.
    contention_changed: bool,
    /// Idempotency keys whose entry still holds its response because the event that
    /// stores it may not be durable yet, as `(seq, key)` in seq order.
    not_durable_keys: VecDeque<(u64, String)>,
    /// The head of the last copy of `state` handed to the committer for readers, until a
    /// heartbeat, a reload or the shutdown withdraws it.
    published_head: Option<u64>,
    /// When the last copy ended and what it took, which spaces the next one.
    publication: Option<(Instant, Duration)>,
    /// The most events a group holds, but for one request's events (which are never
    /// split): [`COMMIT_EVENTS_MAX`] locally, a JetStream atomic batch's limit in a cluster.
    group_events_max: usize,
}

#[derive(Debug, Clone)]
struct IdempotencyEntry {
    request_sha256: [u8; 32],
    /// The seq of the first event of the write, whose record holds the response.
    seq: u64,
    /// The response while its event may not be durable yet (then the log cannot be read
    /// for it).
    pending: Option<WriteResponse>,
}

/// A request waiting for a lock to be released or a task to appear.
struct Parked {
    request: WriteRequest,
    reply: Reply,
    enqueued: Instant,
    deadline: Instant,
    waiter: Option<WaiterId>,
}

/// One group commit in the making: events stamped and applied but not yet durable, and
/// the answers that wait for them.
#[derive(Default)]
struct Group {
    events: Vec<Arc<Committed>>,
    /// About how many bytes `events` will append (the sum of their JSON), kept as they
    /// are added: the engine asks after every job whether the group is full.
    bytes: usize,
    answers: Vec<Answer>,
    /// Replies to the reads and heartbeats handled with the group.
    deferred: Vec<Deferred>,
    /// Whether the events came from the shared history (a cluster follower's) rather
    /// than from this engine's decisions; a group never holds both.
    replicated: bool,
}

impl Group {
    /// Adds a decided event.
    fn push(&mut self, committed: Committed) {
        self.bytes += committed.json.len();
        self.events.push(Arc::new(committed));
    }

    /// The seq and hash the next event chains from.
    fn chain_from(&self, state: &State) -> (u64, [u8; 32]) {
        match self.events.last() {
            Some(last) => (last.envelope.seq + 1, last.envelope.hash),
            None => (state.head + 1, state.head_hash),
        }
    }
}

/// What deciding a write led to.
enum Outcome {
    /// Answer now (after the commit).
    Answer(Result<WriteResponse, Refusal>),
    /// Nothing yet: wait for a later commit.
    Park(Box<WriteRequest>, Option<WaiterId>),
}

impl Core {
    /// Rebuilds the state and the idempotency window: from the newest valid snapshot plus
    /// the tail of the log, or from the whole log. Checks the hash chain of every event it
    /// replays. Two passes over what it replays: the first finds
    /// the branches forked in the past, so that the second can keep their parents' state
    /// when it passes the fork point.
    fn recover(&mut self) -> Result<(), EngineError> {
        let reader = self.reader.clone();
        let log_head = reader.head().map_or(0, Seq::get);
        let snapshot = snapshot::load_newest(&self.data_dir, &mut |head, hash| {
            head <= log_head && event_hash(&reader, head).is_some_and(|stored| stored == *hash)
        });
        let now_ms = wall_clock_ms();
        let replayed = match snapshot {
            Some(snapshot) => {
                let head = snapshot.state.head;
                match self.replay_from(&reader, Some(snapshot), now_ms)? {
                    Some(replayed) => {
                        self.snapshot_head = head;
                        tracing::info!(snapshot = head, "loaded a snapshot");
                        replayed
                    }
                    None => {
                        tracing::warn!(snapshot = head, "a branch in the tail forks before the snapshot; replaying the whole log");
                        self.replay_from(&reader, None, now_ms)?
                            .expect("a replay from seq 1 serves every fork point")
                    }
                }
            }
            None => self
                .replay_from(&reader, None, now_ms)?
                .expect("a replay from seq 1 serves every fork point"),
        };
        self.state = replayed;
        self.coordination_deadline = None;
        self.withdraw_published();
        // Holders could not renew while the server was down: every lease starts afresh.
        let now_ms = self.last_ts_ms.max(now_ms);
        if self.restart_leases_on_open {
            self.restart_leases(now_ms);
        }
        self.shared.set_head(AuditHead {
            seq: self.state.head,
            hash: self.state.head_hash,
        });
        tracing::info!(head = self.state.head, "recovered the state");
        Ok(())
    }

    /// Gives every lock and lease its full TTL again from `now_ms`: their
    /// holders could not renew while this engine was not the writer (after a restart, or
    /// on a node taking over).
    fn restart_leases(&mut self, now_ms: i64) {
        coordination::restart_all_leases(&mut self.state, now_ms);
        for branch in self.state.branches.values_mut() {
            work::restart_leases(branch, now_ms);
        }
    }

    /// Replays the log after `snapshot` (or from seq 1). `None` when a fork in the tail
    /// needs a parent state from before the snapshot.
    fn replay_from(
        &mut self,
        reader: &LogReader,
        snapshot: Option<Snapshot>,
        now_ms: i64,
    ) -> Result<Option<State>, EngineError> {
        let log_error = |source| EngineError::Log {
            dir: "log".into(),
            source,
        };
        self.idempotency.clear();
        self.idempotency_expiry.clear();
        let start = match snapshot {
            Some(snapshot) => {
                for (key, request_hex, seq, ts_ms) in snapshot.idempotency {
                    let request = hex::decode(&request_hex)
                        .ok()
                        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
                    if let Some(request_sha256) =
                        request.filter(|_| ts_ms + IDEMPOTENCY_WINDOW_MS > now_ms)
                    {
                        self.remember_key(key, request_sha256, seq, ts_ms, None);
                    }
                }
                self.last_ts_ms = self.last_ts_ms.max(snapshot.last_ts_ms);
                snapshot.state
            }
            None => State::default(),
        };
        let from = Seq(start.head + 1);
        let mut fork_points = Vec::new();
        for record in reader.iter_from(from) {
            let record = record.map_err(log_error)?;
            let envelope =
                Envelope::decode(record.seq.get(), record.timestamp_ms, &record.payload)?;
            fork_points.extend(ForkPoint::from_event(&envelope));
        }
        let mut previous = start.head_hash;
        let Ok(mut replayer) = Replayer::new(start, fork_points) else {
            return Ok(None);
        };
        for record in reader.iter_from(from) {
            let record = record.map_err(log_error)?;
            let seq = record.seq.get();
            let envelope = Envelope::decode(seq, record.timestamp_ms, &record.payload)?;
            let computed = envelope.compute_hash(&previous);
            if computed != envelope.hash {
                return Err(EngineError::HashChain {
                    seq,
                    stored: envelope.hash_hex(),
                    computed: hex::encode(computed),
                });
            }
            previous = envelope.hash;
            if let Some(idempotency) = &envelope.idempotency {
                if envelope.ts_ms + IDEMPOTENCY_WINDOW_MS > now_ms {
                    self.remember_key(
                        idempotency.key.clone(),
                        idempotency.request_sha256,
                        seq,
                        envelope.ts_ms,
                        None,
                    );
                }
            }
            self.last_ts_ms = self.last_ts_ms.max(envelope.ts_ms);
            replayer.apply(&envelope);
        }
        Ok(Some(replayer.finish()))
    }

    async fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        loop {
            let wake = self.next_wake();
            let first = match wake {
                Some(at) => tokio::time::timeout_at(at.into(), receiver.recv())
                    .await
                    .ok(),
                None => Some(receiver.recv().await),
            };
            let mut jobs = Vec::new();
            match first {
                Some(None) => return,
                Some(Some(job)) => {
                    jobs.push(job);
                    // Let the requests that are ready now hand in their jobs too, so
                    // that one group holds them all.
                    tokio::task::yield_now().await;
                }
                None => {} // A timer or a wait ran out.
            }
            while jobs.len() < COMMIT_JOBS_MAX {
                match receiver.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let blocks = jobs
                .iter()
                .any(|job| matches!(job, Job::Snapshot(_) | Job::Shutdown(_) | Job::Demote(_)))
                || self.committer.durability().refusal().is_some();
            let stop = if blocks {
                on_the_side(|| self.process(jobs))
            } else {
                self.process(jobs)
            };
            if stop {
                return;
            }
        }
    }

    /// When the loop must wake up without a job: the next timer or the first wait to end.
    fn next_wake(&mut self) -> Option<Instant> {
        let timer = self.next_timer_ms().map(|at_ms| {
            // At least 1 ms: a deadline that is due is handled by the group this wake-up
            // starts, so waking again at once could only spin. While writes are refused
            // for lack of space a due timer cannot run, so it waits for the next check.
            let delay_ms = (at_ms - wall_clock_ms()).max(1) as u64;
            let delay = Duration::from_millis(delay_ms);
            match self.space_refusal {
                Some(_) => Instant::now() + delay.max(SPACE_RECHECK_INTERVAL),
                None => Instant::now() + delay,
            }
        });
        let wait = self.parked.iter().map(|parked| parked.deadline).min();
        match (timer, wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn next_timer_ms(&mut self) -> Option<i64> {
        let coordination = self.coordination_deadline();
        let work = self
            .state
            .branches
            .values()
            .filter_map(work::next_deadline)
            .min();
        match (coordination, work) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest lock TTL or agent lease over every branch, looked for again only when
    /// something forgot the one known.
    fn coordination_deadline(&mut self) -> Option<i64> {
        *self
            .coordination_deadline
            .get_or_insert_with(|| coordination::next_deadline_all(&self.state))
    }

    /// Runs group commits until nothing is left to decide; returns true when a shutdown
    /// job was seen.
    fn process(&mut self, jobs: Vec<Job>) -> bool {
        if let Some(refusal) = self.committer.durability().refusal() {
            self.reload_after_refusal(&refusal);
        }
        self.forget_durable_responses();
        let jobs = self.answer_reads_if_durable(jobs);
        self.space_refusal = self.space.check().err();
        let mut reads: Vec<ReadJob> = Vec::new();
        let mut snapshots = Vec::new();
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        let mut group = Group::default();
        let now_ms = self.next_timestamp();
        if self.space_refusal.is_none() && self.shared.is_writer() {
            self.run_timers(now_ms, &mut group);
        }
        let mut jobs = VecDeque::from(jobs);
        let mut deferred = VecDeque::new();
        while let Some(job) = jobs.pop_front() {
            match job {
                Job::Write {
                    request,
                    reply,
                    enqueued,
                } if shutdown.is_none() && self.shared.is_writer() => {
                    if group.events.len() >= COMMIT_EVENTS_MAX || group.bytes >= COMMIT_BYTES_MAX {
                        deferred.push_back(Job::Write {
                            request,
                            reply,
                            enqueued,
                        });
                        continue;
                    }
                    self.handle_write(request, reply, enqueued, now_ms, &mut group, None);
                }
                Job::Write { reply, .. } => {
                    let refusal = match shutdown {
                        Some(_) => Refusal::ShuttingDown,
                        None => Refusal::NotWriter,
                    };
                    let _ = reply.send(Err(refusal));
                }
                Job::Replicate(records) => {
                    if !group.replicated {
                        self.cut_group(&mut group);
                        group.replicated = true;
                    }
                    self.replicate(records, &mut group);
                }
                Job::Promote { head, reply } => {
                    self.cut_group(&mut group);
                    let _ = reply.send(self.promote(head));
                }
                Job::Demote(done) => {
                    self.cut_group(&mut group);
                    self.demote();
                    let _ = done.send(());
                }
                Job::Read(read) => reads.push(read),
                Job::Touch(touch) => {
                    self.coordination_deadline = None;
                    // Before its reply, which the published state does not reflect.
                    self.withdraw_published();
                    group.deferred.push(touch(&mut self.state, now_ms));
                }
                Job::Snapshot(reply) => snapshots.push(reply),
                Job::Shutdown(done) => shutdown = Some(done),
            }
        }
        // Reads that came while the state was ahead of the disk see the group's writes; all
        // are released once the group is durable.
        for read in reads {
            group.deferred.push(read(&self.state, &self.wait_for));
        }
        let wrote = self.finish_group(group);
        for reply in snapshots {
            let _ = reply.send(self.write_snapshot());
        }
        if wrote || !self.parked.is_empty() {
            self.retry_parked();
        }
        if !deferred.is_empty() {
            let stop = self.process(deferred.into());
            return stop || shutdown.map(|done| done.send(())).is_some();
        }
        if let Some(done) = shutdown {
            // Reads after the shutdown are refused, as the engine no longer answers them.
            self.withdraw_published();
            for parked in std::mem::take(&mut self.parked) {
                let _ = parked.reply.send(Err(Refusal::ShuttingDown));
            }
            // Every group is durable and answered before the snapshot and the goodbye.
            self.committer.stop();
            if self.state.head >= self.snapshot_head + self.shutdown_snapshot_min_events {
                if let Err(error) = self.write_snapshot() {
                    tracing::warn!(%error, "cannot write the shutdown snapshot; the next start replays more");
                }
            }
            let _ = done.send(());
            return true;
        }
        false
    }

    /// What a snapshot of the current state holds; [`complete_snapshot`] waits until that
    /// state is durable.
    fn snapshot_now(&self) -> Snapshot {
        let idempotency = self
            .idempotency_expiry
            .iter()
            .filter_map(|(expires_ms, key)| {
                let entry = self.idempotency.get(key)?;
                Some((
                    key.clone(),
                    hex::encode(entry.request_sha256),
                    entry.seq,
                    expires_ms - IDEMPOTENCY_WINDOW_MS,
                ))
            })
            .collect();
        Snapshot {
            format: snapshot::SNAPSHOT_FORMAT,
            state: self.state.clone(),
            idempotency,
            last_ts_ms: self.last_ts_ms,
        }
    }

    /// Writes a snapshot synchronously (forced, or at shutdown), once the state is durable.
    fn write_snapshot(&mut self) -> Result<(PathBuf, u64), String> {
        let snapshot = self.snapshot_now();
        complete_snapshot(self.committer.durability(), &snapshot)
            .map_err(|refusal| format!("the state was not made durable: {refusal}"))?;
        let written =
            snapshot::write(&self.data_dir, &snapshot).map_err(|error| error.to_string())?;
        self.snapshot_head = self.state.head;
        Ok(written)
    }

    /// Every `snapshot_interval_events` events, writes a snapshot on a background thread
    /// so that the writer does not wait for it.
    fn maybe_snapshot(&mut self) {
        if self.state.head < self.snapshot_head + self.snapshot_interval_events
            || self.snapshot_running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let snapshot = self.snapshot_now();
        self.snapshot_head = self.state.head;
        let data_dir = self.data_dir.clone();
        let running = self.snapshot_running.clone();
        let durability = self.committer.durability().clone();
        let spawned = std::thread::Builder::new()
            .name("swarmlog-snapshot".into())
            .spawn(move || {
                let written = complete_snapshot(&durability, &snapshot)
                    .map_err(|refusal| refusal.to_string())
                    .and_then(|()| {
                        snapshot::write(&data_dir, &snapshot).map_err(|error| error.to_string())
                    });
                if let Err(error) = written {
                    tracing::warn!(%error, "cannot write a snapshot; the next start replays more");
                }
                running.store(false, Ordering::Release);
            });
        match spawned {
            Ok(thread) => self.snapshot_thread = Some(thread),
            Err(_) => self.snapshot_running.store(false, Ordering::Release),
        }
    }

    /// Hands the group to the committer, which makes it durable and then answers and
    /// publishes it. Returns whether the group has events.
    fn finish_group(&mut self, group: Group) -> bool {
        let wrote = !group.events.is_empty();
        if wrote {
            for committed in &group.events {
                if let Some(idempotency) = &committed.envelope.idempotency {
                    self.not_durable_keys
                        .push_back((committed.envelope.seq, idempotency.key.clone()));
                }
            }
            self.count_domain_metrics(&group.events);
            self.expire_keys();
            self.space.note_written(group.bytes as u64);
        }
        let publication = self.copy_for_readers();
        let commit = Commit::new(
            group.events,
            self.state.head,
            group.answers,
            group.deferred,
            publication,
        );
        self.committer.submit(match group.replicated {
            true => commit.replicated(),
            false => commit,
        });
        if wrote {
            self.maybe_snapshot();
        }
        wrote
    }

    /// Hands the group built so far to the committer and starts an empty one in its place.
    fn cut_group(&mut self, group: &mut Group) {
        let full = std::mem::take(group);
        if !full.events.is_empty() || !full.answers.is_empty() || !full.deferred.is_empty() {
            self.finish_group(full);
        }
    }

    /// Applies events another node made durable in the shared history (a cluster
    /// follower's), after checking that each one follows this node's history: the next
    /// seq, chained to the previous hash. Records this node already has (a stream consumer
    /// that restarted delivers them again) are skipped. A record that does not follow
    /// means the shared history is not the one this node mirrors: the process aborts
    /// rather than serve a history it cannot vouch for.
    fn replicate(&mut self, records: Vec<Record>, group: &mut Group) {
        for record in records {
            let (next, previous) = group.chain_from(&self.state);
            let seq = record.seq.get();
            if seq < next {
                continue;
            }
            let envelope = Envelope::decode(seq, record.timestamp_ms, &record.payload)
                .ok()
                .filter(|envelope| {
                    seq == next && envelope.compute_hash(&previous) == envelope.hash
                });
            let Some(envelope) = envelope else {
                tracing::error!(
                    seq,
                    expected = next,
                    "an event of the shared history does not follow this node's history; aborting"
                );
                eprintln!("swarmlog: event {seq} of the shared history does not follow this node's history (it expects seq {next} chained to its head); aborting");
                std::process::abort();
            };
            if let Some(idempotency) = &envelope.idempotency {
                let response = WriteResponse {
                    status: Status::from_stored(idempotency.status),
                    body: idempotency.response.clone(),
                    replayed: false,
                };
                self.remember_key(
                    idempotency.key.clone(),
                    idempotency.request_sha256,
                    seq,
                    envelope.ts_ms,
                    Some(response),
                );
            }
            self.last_ts_ms = self.last_ts_ms.max(envelope.ts_ms);
            self.apply_into(envelope, group);
        }
    }

    /// Makes this engine the writer, if its state reflects the shared history up to
    /// `head` and no further (else answers the head it reflects). Holders could not renew
    /// through the old writer while it failed, and a follower never saw their heartbeats
    /// (they are not logged): as after a restart, every lock and lease starts afresh.
    fn promote(&mut self, head: u64) -> Result<(), u64> {
        if self.state.head != head {
            return Err(self.state.head);
        }
        let now_ms = self.next_timestamp();
        self.restart_leases(now_ms);
        self.coordination_deadline = None;
        self.withdraw_published();
        self.shared.writer.store(true, Ordering::Release);
        tracing::info!(head, "this node is the writer");
        Ok(())
    }

    /// Stops deciding writes and running timers; the requests waiting for a lock or a
    /// task are refused (their clients retry through the new writer). The groups this
    /// engine decided and the store has not taken are refused by the store (the node no
    /// longer holds the lease); the state is then reloaded from the local log, so that
    /// what the follower applies next chains to durable events only.
    fn demote(&mut self) {
        if !self.shared.writer.swap(false, Ordering::AcqRel) {
            return;
        }
        for parked in std::mem::take(&mut self.parked) {
            self.answer_parked(parked, &Refusal::NotWriter);
        }
        self.wait_for.clear();
        self.committer.wait_idle();
        if let Some(refusal) = self.committer.durability().refusal() {
            self.reload_after_refusal(&refusal);
        }
        debug_assert_eq!(
            self.state.head,
            self.committer.durability().durable(),
            "a follower's state holds durable events only"
        );
        tracing::info!(head = self.state.head, "this node is a follower");
    }

    /// A copy of the state for [`Engine::read`], which the committer publishes once the
    /// group it goes with is durable, before it answers that group: made while reads come
    /// ([`crate::limits::READS_WANT_COPIES_FOR`]) and the last copy is not of this state
    /// already (at most one per group, none while nobody reads), and no sooner than
    /// [`STATE_PUBLICATION_SPACING_PER_COST`] times what the last one took after it, so
    /// that a large state does not take the engine's time from the writes.
    fn copy_for_readers(&mut self) -> Option<Publication> {
        let spaced = self.publication.is_none_or(|(ended, took)| {
            ended.elapsed() >= took * STATE_PUBLICATION_SPACING_PER_COST
        });
        if !spaced
            || self.published_head == Some(self.state.head)
            || !self.shared.published.reads_come()
        {
            return None;
        }
        let started = Instant::now();
        let (publication, retired) = self.shared.published.prepare(self.state.clone());
        drop(retired);
        let ended = Instant::now();
        self.published_head = Some(self.state.head);
        self.publication = Some((ended, ended - started));
        self.shared.metrics.state_publications.inc();
        Some(publication)
    }

    /// While the state is durable, answers the reads handed in with this pass from it at
    /// once, before the pass decides anything: none of the writes decided with them is
    /// answered yet, so they need not see them, and need not wait for their fsync. Returns
    /// the other jobs.
    fn answer_reads_if_durable(&mut self, jobs: Vec<Job>) -> Vec<Job> {
        if self.committer.durability().durable() < self.state.head
            || !jobs.iter().any(|job| matches!(job, Job::Read(_)))
        {
            return jobs;
        }
        let mut replies = Vec::new();
        let others = jobs
            .into_iter()
            .filter_map(|job| match job {
                Job::Read(read) => {
                    replies.push(read(&self.state, &self.wait_for));
                    None
                }
                other => Some(other),
            })
            .collect();
        // Nothing to append and durable already: the committer publishes the copy and
        // sends the replies at once, so the next read of these readers takes the copy.
        let publication = self.copy_for_readers();
        self.committer.submit(Commit::new(
            Vec::new(),
            self.state.head,
            Vec::new(),
            replies,
            publication,
        ));
        others
    }

    /// Takes the published state back, with the copies on their way to readers, so that
    /// reads go to the engine until a later copy is published: for changes that no event
    /// records (a heartbeat, a reload), which a newer head would not reveal.
    fn withdraw_published(&mut self) {
        if self.published_head.take().is_some() {
            drop(self.shared.published.withdraw());
        }
    }

    /// Drops the responses kept for idempotent retries whose events are now durable (a
    /// retry then reads the response from the log).
    fn forget_durable_responses(&mut self) {
        let durable = self.committer.durability().durable();
        while let Some((seq, _)) = self.not_durable_keys.front() {
            if *seq > durable {
                return;
            }
            if let Some((seq, key)) = self.not_durable_keys.pop_front() {
                // The key may have expired and been used again by a later write.
                if let Some(entry) = self.idempotency.get_mut(&key) {
                    if entry.seq == seq {
                        entry.pending = None;
                    }
                }
            }
        }
    }

    /// Decides parked requests again, in arrival order, after a commit changed the state
    /// or when their wait ran out; repeats while that writes something.
    fn retry_parked(&mut self) {
        if let Some(refusal) = self.space_refusal.clone() {
            self.refuse_expired_parked(&refusal);
            return;
        }
        loop {
            if self.parked.is_empty() {
                return;
            }
            let now_ms = self.next_timestamp();
            let mut group = Group::default();
            self.run_timers(now_ms, &mut group);
            let now = Instant::now();
            for parked in std::mem::take(&mut self.parked) {
                let Parked {
                    mut request,
                    reply,
                    enqueued,
                    deadline,
                    waiter,
                } = parked;
                if let Some(id) = waiter {
                    self.wait_for
                        .entry(request.context.branch.clone())
                        .or_default()
                        .remove_waiter(id);
                }
                // A request whose wait ran out is decided once more without waiting.
                let retry = if deadline <= now {
                    request.wait = None;
                    None
                } else {
                    Some((deadline, waiter))
                };
                self.handle_write(request, reply, enqueued, now_ms, &mut group, retry);
            }
            if !self.finish_group(group) {
                return;
            }
        }
    }

    /// While writes are refused for lack of space, parked requests are not decided again
    /// (that could write); those whose wait ran out are answered with the refusal.
    fn refuse_expired_parked(&mut self, refusal: &Refusal) {
        let now = Instant::now();
        let (expired, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|parked| parked.deadline <= now);
        self.parked = waiting.into();
        for parked in expired {
            self.answer_parked(parked, refusal);
        }
    }

    /// Answers a parked request with `refusal` and removes it from the wait-for graph.
    fn answer_parked(&mut self, parked: Parked, refusal: &Refusal) {
        if let Some(id) = parked.waiter {
            if let Some(graph) = self.wait_for.get_mut(&parked.request.context.branch) {
                graph.remove_waiter(id);
            }
        }
        self.shared.metrics.rejections.inc();
        let _ = parked.reply.send(Err(refusal.clone()));
    }

    /// After a full disk refused a group: waits until the commit thread has answered
    /// everything submitted, reloads the state from the log (which ends where it did before
    /// the refused group), answers the parked requests with the refusal, and lets the
    /// commit thread take commits again.
    fn reload_after_refusal(&mut self, refusal: &Refusal) {
        self.committer.wait_idle();
        if let Some(thread) = self.snapshot_thread.take() {
            // It waited for a refused seq and gave up, or it finished.
            let _ = thread.join();
        }
        tracing::warn!(
            head = self.committer.durability().durable(),
            "reloading the state from the log after a refused group"
        );
        for parked in std::mem::take(&mut self.parked) {
            self.answer_parked(parked, refusal);
        }
        self.wait_for.clear();
        self.not_durable_keys.clear();
        if let Err(error) = self.recover() {
            tracing::error!(%error, "cannot reload the state from the log; aborting");
            eprintln!("swarmlog: cannot reload the state from the log: {error}; aborting");
            std::process::abort();
        }
        self.snapshot_head = self.snapshot_head.min(self.state.head);
        self.committer.resume();
    }

    /// Decides one write into the group, or parks it.
    fn handle_write(
        &mut self,
        request: WriteRequest,
        reply: Reply,
        enqueued: Instant,
        now_ms: i64,
        group: &mut Group,
        retry: Option<(Instant, Option<WaiterId>)>,
    ) {
        let earlier_than = retry.and_then(|(_, waiter)| waiter);
        let lock_resources = match &request.command {
            WriteCommand::Coordination(CoordinationCommand::LockAcquire { resources, .. }) => {
                Some(resources.clone())
            }
            _ => None,
        };
        match self.decide_write(request, now_ms, group, earlier_than) {
            Outcome::Answer(outcome) => {
                if let Some(resources) = lock_resources {
                    match &outcome {
                        Ok(_) if earlier_than.is_some() => self
                            .shared
                            .metrics
                            .lock_wait_time
                            .observe(enqueued.elapsed().as_secs_f64()),
                        Err(Refusal::Rule(rejection)) if rejection.code == Code::LockHeld => {
                            self.shared.metrics.lock_denials.inc();
                            self.count_contention(&resources);
                        }
                        _ => {}
                    }
                }
                group.answers.push((reply, outcome, enqueued));
            }
            Outcome::Park(request, waiter) => {
                let deadline = match retry {
                    Some((deadline, _)) => deadline,
                    None => {
                        if let Some(resources) = &lock_resources {
                            self.shared.metrics.lock_waits.inc();
                            self.count_contention(resources);
                        }
                        enqueued + request.wait.unwrap_or_default()
                    }
                };
                self.parked.push_back(Parked {
                    request: *request,
                    reply,
                    enqueued,
                    deadline,
                    waiter,
                });
            }
        }
    }

    /// Appends the events that time has made due: expired locks, leases and claims,
    /// auction and vote deadlines. Coordination first, then work, because an agent's expiry
    /// requeues its tasks and the task timers must see that.
    fn run_timers(&mut self, now_ms: i64, group: &mut Group) {
        let system = WriteContext {
            actor: swarmlog_projections::SYSTEM_ACTOR.to_owned(),
            ..WriteContext::default()
        };
        if self
            .coordination_deadline()
            .is_some_and(|deadline| deadline <= now_ms)
        {
            for (branch, drafts) in coordination::due_all(&self.state, now_ms) {
                let context = WriteContext {
                    branch,
                    ..system.clone()
                };
                self.stamp_due(drafts, &context, now_ms, group);
            }
        }
        let due: Vec<String> = self
            .state
            .branches
            .iter()
            .filter(|(_, state)| work::next_deadline(*state).is_some_and(|at| at <= now_ms))
            .map(|(branch, _)| branch.clone())
            .collect();
        for branch in due {
            let drafts = self
                .state
                .branch(&branch)
                .map(|state| work::due(state, now_ms))
                .unwrap_or_default();
            if !drafts.is_empty() {
                let context = WriteContext {
                    branch,
                    ..system.clone()
                };
                self.stamp_due(drafts, &context, now_ms, group);
            }
        }
    }

    /// Stamps events that time made due, cutting the group where it would grow past
    /// `group_events_max`: they belong to no request, so any cut keeps every request whole.
    fn stamp_due(
        &mut self,
        mut drafts: Vec<EventDraft>,
        context: &WriteContext,
        now_ms: i64,
        group: &mut Group,
    ) {
        while !drafts.is_empty() {
            if group.events.len() >= self.group_events_max {
                self.cut_group(group);
            }
            let room = self.group_events_max - group.events.len();
            let rest = drafts.split_off(room.min(drafts.len()));
            self.stamp_and_apply(drafts, context, &[], now_ms, group);
            drafts = rest;
        }
    }

    /// Decides one write. On success its events are stamped, applied to the state and
    /// added to the group (not yet durable).
    fn decide_write(
        &mut self,
        request: WriteRequest,
        now_ms: i64,
        group: &mut Group,
        earlier_than: Option<WaiterId>,
    ) -> Outcome {
        if let Some(idempotency) = &request.idempotency {
            if let Some(entry) = self.idempotency.get(&idempotency.key) {
                if entry.request_sha256 != idempotency.request_sha256 {
                    return Outcome::Answer(Err(Refusal::IdempotencyKeyReused {
                        key: idempotency.key.clone(),
                    }));
                }
                return Outcome::Answer(self.replay_response(entry.clone()));
            }
        }
        if let Some(refusal) = &self.space_refusal {
            return Outcome::Answer(Err(refusal.clone()));
        }
        let decided = self.check_and_decide(&request, now_ms, earlier_than);
        let drafts = match decided {
            Ok(drafts)
                if drafts.is_empty()
                    && request.wait.is_some()
                    && request.command.waits_on_empty() =>
            {
                return Outcome::Park(Box::new(request), None);
            }
            Ok(drafts) => drafts,
            Err(rejection) if rejection.code == Code::LockHeld && request.wait.is_some() => {
                return self.park_lock_waiter(request, rejection, now_ms, group);
            }
            Err(rejection) => return Outcome::Answer(Err(rejection.into())),
        };
        let provenance = match &request.command {
            WriteCommand::Append(items) => items
                .iter()
                .map(|item| Provenance {
                    session: item.session.clone(),
                    correlation: item.correlation.clone(),
                    meta: item.meta.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        // A request's events are never split; a group that cannot take them is cut first.
        if !group.events.is_empty() && group.events.len() + drafts.len() > self.group_events_max {
            self.cut_group(group);
        }
        let first_index = group.events.len();
        self.stamp_and_apply(drafts, &request.context, &provenance, now_ms, group);
        let response = match (request.respond)(&self.state, &group.events[first_index..]) {
            Ok(response) => response,
            Err(error) => {
                return Outcome::Answer(Err(Refusal::internal(
                    "the answer of a written request could not be built",
                    &error,
                )))
            }
        };
        if let (Some(idempotency), Some(first)) =
            (&request.idempotency, group.events.get_mut(first_index))
        {
            let first =
                Arc::get_mut(first).expect("events of the group being built are not shared yet");
            first.envelope.idempotency = Some(Idempotency {
                key: idempotency.key.clone(),
                request_sha256: idempotency.request_sha256,
                status: response.status.stored(),
                response: response.body.clone(),
            });
            let seq = first.envelope.seq;
            self.remember_key(
                idempotency.key.clone(),
                idempotency.request_sha256,
                seq,
                now_ms,
                Some(response.clone()),
            );
        }
        Outcome::Answer(Ok(response))
    }

    /// The guards every write passes (branch, kill switch, fence, lock order, FIFO), then
    /// the domain's rule.
    fn check_and_decide(
        &self,
        request: &WriteRequest,
        now_ms: i64,
        earlier_than: Option<WaiterId>,
    ) -> Result<Vec<EventDraft>, Rejection> {
        let context = &request.context;
        let Some(branch) = self.state.branch(&context.branch) else {
            return Err(Rejection::new(
                Code::BranchNotFound,
                format!("branch '{}' does not exist", context.branch),
            ));
        };
        let registering = matches!(
            request.command,
            WriteCommand::Coordination(CoordinationCommand::AgentRegister { .. })
        );
        if !registering {
            coordination::check_actor_allowed(branch, &context.actor)?;
            if context.branch != MAIN_BRANCH {
                if let Some(main) = self.state.branch(MAIN_BRANCH) {
                    coordination::check_actor_allowed(main, &context.actor)?;
                }
            }
        }
        if let Some(fence) = &request.fence {
            coordination::check_fence(branch, &fence.resource, fence.token, now_ms)?;
        }
        match &request.command {
            WriteCommand::Append(items) => decide_append(
                &self.state,
                &context.branch,
                items.iter().map(|item| &item.request),
            ),
            WriteCommand::Coordination(command) => {
                if let CoordinationCommand::LockAcquire {
                    resources, owner, ..
                } = command
                {
                    if self.lock_order {
                        coordination::check_lock_order(branch, owner, resources, now_ms)?;
                    }
                    self.check_fifo(&context.branch, owner, resources, earlier_than)?;
                }
                coordination::decide(&self.state, &context.branch, command, now_ms)
            }
            WriteCommand::Work(command) => {
                if request.permit == Permit::OwnOnly {
                    work::check_creator_rights(branch, &context.actor, command)?;
                }
                work::decide(branch, command, now_ms)
            }
        }
    }

    /// Waiters are served in arrival order (the rule is `WaitForGraph::check_fifo`).
    fn check_fifo(
        &self,
        branch: &str,
        owner: &str,
        resources: &[String],
        earlier_than: Option<WaiterId>,
    ) -> Result<(), Rejection> {
        match self.wait_for.get(branch) {
            Some(graph) => graph.check_fifo(owner, resources, earlier_than),
            None => Ok(()),
        }
    }

    /// A lock request that may wait: refuse it if waiting would close a cycle (recording a
    /// `lock.deadlock_detected` event), else park it as a waiter.
    fn park_lock_waiter(
        &mut self,
        request: WriteRequest,
        rejection: Rejection,
        now_ms: i64,
        group: &mut Group,
    ) -> Outcome {
        let WriteCommand::Coordination(CoordinationCommand::LockAcquire {
            resources,
            owner,
            mode,
            ..
        }) = &request.command
        else {
            return Outcome::Answer(Err(rejection.into()));
        };
        let branch_name = request.context.branch.clone();
        let Some(branch) = self.state.branch(&branch_name) else {
            return Outcome::Answer(Err(rejection.into()));
        };
        let graph = self.wait_for.entry(branch_name).or_default();
        if let Some(cycle) = graph.would_deadlock(branch, owner, resources, *mode, now_ms) {
            let draft = cycle.draft(owner, resources);
            let answer = cycle.rejection(owner);
            self.stamp_and_apply(vec![draft], &request.context, &[], now_ms, group);
            return Outcome::Answer(Err(answer.into()));
        }
        let waiter = graph.add_waiter(owner, resources, *mode);
        Outcome::Park(Box::new(request), Some(waiter))
    }

    /// Stamps drafts into envelopes chained after the group's last event and applies them.
    fn stamp_and_apply(
        &mut self,
        drafts: Vec<EventDraft>,
        context: &WriteContext,
        provenance: &[Provenance],
        now_ms: i64,
        group: &mut Group,
    ) {
        for (position, draft) in drafts.into_iter().enumerate() {
            let (seq, previous_hash) = group.chain_from(&self.state);
            let own = provenance.get(position);
            let pick = |own: Option<&Option<String>>, shared: &Option<String>| {
                own.and_then(Clone::clone).or_else(|| shared.clone())
            };
            // A task's events belong to its session even when the write names none, so
            // that `?session=` filters and session exports see them.
            let session = pick(own.map(|p| &p.session), &context.session).or_else(|| {
                self.state
                    .branch(&context.branch)
                    .and_then(|branch| work::draft_session(branch, &draft))
            });
            let mut envelope = Envelope {
                seq,
                ts_ms: now_ms,
                branch: context.branch.clone(),
                event_type: draft.event_type,
                stream: draft.stream,
                actor: draft.actor.unwrap_or_else(|| context.actor.clone()),
                session,
                correlation: pick(own.map(|p| &p.correlation), &context.correlation),
                meta: pick(own.map(|p| &p.meta), &context.meta),
                data: draft.data.into_text(),
                hash: GENESIS_HASH,
                idempotency: None,
            };
            envelope.seal(&previous_hash);
            self.apply_into(envelope, group);
        }
    }

    /// Applies an event that follows the state (stamped here, or replicated) and adds it
    /// to the group.
    fn apply_into(&mut self, envelope: Envelope, group: &mut Group) {
        if swarmlog_projections::catalog::is_reserved(&envelope.event_type) {
            self.coordination_deadline = None;
        }
        self.state.apply(&envelope);
        self.fork_if_needed(&envelope, group);
        group.push(Committed::new(envelope));
    }

    /// A branch forked at an earlier seq gets its parent's state as of that seq, rebuilt
    /// from the log and, for a seq not submitted yet, the group being built.
    fn fork_if_needed(&mut self, envelope: &Envelope, group: &Group) {
        let Some(point) = ForkPoint::from_event(envelope) else {
            return;
        };
        if !point.needs_parent_state() {
            return;
        }
        let submitted = group
            .events
            .first()
            .map_or(envelope.seq, |first| first.envelope.seq)
            - 1;
        if self
            .committer
            .durability()
            .wait_durable(submitted.min(point.at))
            .is_err()
        {
            // An earlier group was refused for lack of space, so this one will be too, and
            // the state is reloaded before anything else is decided.
            return;
        }
        match state_after(&self.reader, point.at, &group.events) {
            Ok(past) => {
                let parent = past.branch(&point.from).cloned().unwrap_or_default();
                self.state.fork_branch(&point.name, parent);
            }
            Err(error) => {
                tracing::error!(%error, "cannot rebuild the parent state of a fork; aborting");
                std::process::abort();
            }
        }
    }

    /// The first response of an idempotent write, for a retry.
    fn replay_response(&self, entry: IdempotencyEntry) -> Result<WriteResponse, Refusal> {
        let stored = match entry.pending {
            Some(response) => response,
            None => {
                let records = self.reader.read(Seq(entry.seq), 1, 1).map_err(|error| {
                    Refusal::internal("cannot read an idempotency record", &error)
                })?;
                let record = records
                    .into_iter()
                    .find(|record| record.seq.get() == entry.seq)
                    .ok_or_else(|| Refusal::internal("idempotency record missing", &entry.seq))?;
                let envelope = Envelope::decode(entry.seq, record.timestamp_ms, &record.payload)
                    .map_err(|error| {
                        Refusal::internal("cannot decode an idempotency record", &error)
                    })?;
                let idempotency = envelope.idempotency.ok_or_else(|| {
                    Refusal::internal("record has no idempotency entry", &entry.seq)
                })?;
                WriteResponse {
                    status: Status::from_stored(idempotency.status),
                    body: idempotency.response,
                    replayed: false,
                }
            }
        };
        Ok(WriteResponse {
            replayed: true,
            ..stored
        })
    }

    fn remember_key(
        &mut self,
        key: String,
        request_sha256: [u8; 32],
        seq: u64,
        ts_ms: i64,
        pending: Option<WriteResponse>,
    ) {
        self.idempotency_expiry
            .push_back((ts_ms + IDEMPOTENCY_WINDOW_MS, key.clone()));
        self.idempotency.insert(
            key,
            IdempotencyEntry {
                request_sha256,
                seq,
                pending,
            },
        );
    }

    fn count_contention(&mut self, resources: &[String]) {
        tally_contention(&mut self.contention, resources, CONTENTION_TRACKED_MAX);
        self.contention_changed = true;
    }

    /// Lock, agent and task metrics from a durable group.
    fn count_domain_metrics(&mut self, events: &[Arc<Committed>]) {
        let metrics = &self.shared.metrics;
        let mut agents_or_tasks = false;
        for committed in events {
            match committed.envelope.event_type.as_str() {
                "lock.acquired" => {
                    metrics.lock_acquisitions.inc();
                }
                "lock.expired" => {
                    metrics.lock_expiries.inc();
                }
                "lock.deadlock_detected" => {
                    metrics.deadlocks.inc();
                }
                other => {
                    agents_or_tasks |= other.starts_with("agent.") || other.starts_with("task.")
                }
            }
        }
        if agents_or_tasks {
            if let Some(main) = self.state.branch(MAIN_BRANCH) {
                metrics.agents_by_status.clear();
                for agent in main.coordination.agents.values() {
                    metrics
                        .agents_by_status
                        .get_or_create(&vec![(
                            "status".to_owned(),
                            agent.status.as_str().to_owned(),
                        )])
                        .inc();
                }
                metrics.tasks_by_status.clear();
                for (status, count) in &main.work.tasks.status_counts {
                    metrics
                        .tasks_by_status
                        .get_or_create(&vec![("status".to_owned(), status.as_str().to_owned())])
                        .set(*count as i64);
                }
            }
        }
        if std::mem::take(&mut self.contention_changed) {
            let mut top: Vec<(&String, &u64)> = self.contention.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            metrics.lock_contention_top.clear();
            for (resource, count) in top.into_iter().take(CONTENTION_TOP_MAX) {
                metrics
                    .lock_contention_top
                    .get_or_create(&vec![("resource".to_owned(), resource.clone())])
                    .set(*count as i64);
            }
        }
    }

    fn expire_keys(&mut self) {
        let now_ms = self.last_ts_ms;
        while let Some((expires_ms, _)) = self.idempotency_expiry.front() {
            if *expires_ms > now_ms {
                break;
            }
            let Some((_, key)) = self.idempotency_expiry.pop_front() else {
                break;
            };
            self.idempotency.remove(&key);
        }
    }

    /// The timestamp of the next group: wall-clock time, never going backwards.
    fn next_timestamp(&mut self) -> i64 {
        self.last_ts_ms = self.last_ts_ms.max(wall_clock_ms());
        self.last_ts_ms
    }
}

/// Waits until the snapshot's state is durable (a snapshot never describes a state the log
/// may lose). Fails if that state included events refused for lack of space.
fn complete_snapshot(durability: &Durability, snapshot: &Snapshot) -> Result<(), Refusal> {
    durability.wait_durable(snapshot.state.head)
}

/// The stored hash of event `seq`, if the log has it.
fn event_hash(reader: &LogReader, seq: u64) -> Option<[u8; 32]> {
    let record = reader
        .read(Seq(seq), 1, 1)
        .ok()?
        .into_iter()
        .next()
        .filter(|record| record.seq.get() == seq)?;
    Envelope::decode(seq, record.timestamp_ms, &record.payload)
        .ok()
        .map(|envelope| envelope.hash)
}

/// The state as it was right after event `at`, rebuilt from the durable log.
pub fn state_at(reader: &LogReader, at: u64) -> Result<State, EngineError> {
    state_after(reader, at, &[])
}

/// The state as it was right after event `at`: from the newest snapshot of `data_dir` at
/// or before `at` plus the events after it, else from the whole log. The snapshot's state
/// is the live one, so what the log does not hold (a lease a heartbeat extended) reads as
/// the server had it then.
pub fn state_at_from_snapshot(
    reader: &LogReader,
    data_dir: &Path,
    at: u64,
) -> Result<State, EngineError> {
    past_state(reader, data_dir, at).map(|(state, _)| state)
}

/// [`state_at_from_snapshot`], and the head of the snapshot it started from (None: seq 1).
fn past_state(
    reader: &LogReader,
    data_dir: &Path,
    at: u64,
) -> Result<(State, Option<u64>), EngineError> {
    let snapshot = snapshot::load_newest_at_most(data_dir, at, &mut |head, hash| {
        event_hash(reader, head).is_some_and(|stored| stored == *hash)
    });
    let Some(snapshot) = snapshot else {
        return Ok((state_at(reader, at)?, None));
    };
    let start = snapshot.state;
    let snapshot_head = start.head;
    let events = durable_events(reader, snapshot_head + 1, at)?;
    let forks: Vec<ForkPoint> = events.iter().filter_map(ForkPoint::from_event).collect();
    let Ok(mut replayer) = Replayer::new(start, forks) else {
        // A branch made after the snapshot forks from before it: only a replay from
        // seq 1 passes that point.
        return Ok((state_at(reader, at)?, None));
    };
    for event in &events {
        replayer.apply(event);
    }
    Ok((replayer.finish(), Some(snapshot_head)))
}

/// The state right after event `at`, from the durable log followed by `newer`: events
/// not durable yet that come right after the log's head, in seq order.
fn state_after(
    reader: &LogReader,
    at: u64,
    newer: &[Arc<Committed>],
) -> Result<State, EngineError> {
    let mut events = durable_events(reader, 1, at)?;
    let next = events.last().map_or(1, |last| last.seq + 1);
    events.extend(
        newer
            .iter()
            .map(|committed| &committed.envelope)
            .filter(|envelope| envelope.seq >= next && envelope.seq <= at)
            .cloned(),
    );
    Ok(State::replay(&events))
}

/// The durable events from seq `from` to `until`, decoded.
fn durable_events(reader: &LogReader, from: u64, until: u64) -> Result<Vec<Envelope>, EngineError> {
    let mut events = Vec::new();
    for record in reader.iter_from(Seq(from)) {
        let record = record.map_err(|source| EngineError::Log {
            dir: "log".into(),
            source,
        })?;
        if record.seq.get() > until {
            break;
        }
        events.push(Envelope::decode(
            record.seq.get(),
            record.timestamp_ms,
            &record.payload,
        )?);
    }
    Ok(events)
}

/// Per-event provenance that overrides the write's.
struct Provenance {
    session: Option<String>,
    correlation: Option<String>,
    meta: Option<String>,
}

/// Counts one denial or wait on each of `resources`; past `most` resources followed, keeps
/// only those counted more than the median (at most half of them).
fn tally_contention(counts: &mut HashMap<String, u64>, resources: &[String], most: usize) {
    for resource in resources {
        *counts.entry(resource.clone()).or_insert(0) += 1;
    }
    if counts.len() > most {
        let mut values: Vec<u64> = counts.values().copied().collect();
        let middle = values.len() / 2;
        let (_, median, _) = values.select_nth_unstable(middle);
        let median = *median;
        counts.retain(|_, count| *count > median);
    }
}

/// Runs `work`, which waits for the disk (a snapshot, the shutdown's last fsync, reloading
/// the state), without holding up the other tasks of a multi-threaded runtime: the
/// runtime moves them to another thread meanwhile. Elsewhere it simply runs `work`.
fn on_the_side<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
