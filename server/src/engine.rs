//! The single-writer engine (SPEC §1): one thread owns the log and the in-memory state.
//!
//! It drains a bounded queue of jobs; for each write it decides against the state, stamps
//! the resulting events (seq, time, hash) and applies them; then it appends the whole group
//! as one batch with one fsync, and only after that answers every request of the group,
//! publishes the events to subscribers and answers the reads that were queued. So nobody,
//! not even a refused request or a reader, sees state that is not durable.
//!
//! The engine is usable without HTTP: tests and the embedded CLI drive it directly.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use swarmlog_log::{LockMode, Log, LogOptions, LogReader, RecordInput, Seq, SyncPolicy};
use swarmlog_projections::state::decide_append;
use swarmlog_projections::{AppendRequest, Envelope, EventDraft, Idempotency, State, GENESIS_HASH};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::ApiError;
use crate::hub::{Committed, CommittedBatch, Hub};
use crate::limits::{COMMIT_EVENTS_MAX, COMMIT_JOBS_MAX, ENGINE_QUEUE_DEPTH_MAX, IDEMPOTENCY_WINDOW_MS};
use crate::metrics::Metrics;

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
}

impl EngineConfig {
    /// The defaults for a data directory: fsync always, 64 MiB segments.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            sync: SyncPolicy::Always,
            segment_size_bytes_max: LogOptions::default().segment_size_bytes_max,
            lock_wait: false,
        }
    }

    /// Where the log's segments live.
    pub fn log_dir(&self) -> PathBuf {
        log_dir(&self.data_dir)
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
    /// The engine thread could not be started.
    #[error("cannot start the engine thread: {0}")]
    Thread(std::io::Error),
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
#[derive(Debug, Clone)]
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
}

/// The idempotency part of a write.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest {
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// SHA-256 of method, path, query and body.
    pub request_sha256: [u8; 32],
}

/// A write job.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// Who and where.
    pub context: WriteContext,
    /// What.
    pub command: WriteCommand,
    /// Optional idempotency key.
    pub idempotency: Option<IdempotencyRequest>,
}

/// The answer to a write, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// Whether this answers a retry from the idempotency record instead of writing.
    pub replayed: bool,
}

type ReadJob = Box<dyn FnOnce(&State) + Send>;

enum Job {
    Write {
        request: WriteRequest,
        reply: oneshot::Sender<Result<WriteResponse, ApiError>>,
        enqueued: Instant,
    },
    Read(ReadJob),
    Shutdown(oneshot::Sender<()>),
}

/// The head of the hash chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditHead {
    /// The last committed seq (0 when empty).
    pub seq: u64,
    /// Its hash.
    pub hash: [u8; 32],
}

/// What readers share with the engine thread; updated only after a batch is durable.
pub struct Shared {
    head: Mutex<AuditHead>,
    /// Seqs of each `(branch, stream)`'s events, in order.
    stream_index: RwLock<HashMap<(String, String), Vec<u64>>>,
    /// The metrics.
    pub metrics: Metrics,
    shutting_down: AtomicBool,
    shutdown_signal: watch::Sender<bool>,
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
        let log_dir = config.log_dir();
        let options = LogOptions {
            segment_size_bytes_max: config.segment_size_bytes_max,
            sync: config.sync,
            lock: if config.lock_wait { LockMode::Wait } else { LockMode::Fail },
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
        let reader = log.reader();
        let (shutdown_signal, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            head: Mutex::new(AuditHead { seq: 0, hash: GENESIS_HASH }),
            stream_index: RwLock::new(HashMap::new()),
            metrics: Metrics::new(),
            shutting_down: AtomicBool::new(false),
            shutdown_signal,
        });
        let mut core = Core {
            log,
            state: State::default(),
            hub: Hub::new(),
            shared: shared.clone(),
            idempotency: HashMap::new(),
            idempotency_expiry: VecDeque::new(),
            last_ts_ms: 0,
        };
        core.recover()?;
        let hub = core.hub.clone();
        let (jobs, receiver) = mpsc::channel(ENGINE_QUEUE_DEPTH_MAX);
        std::thread::Builder::new()
            .name("swarmlog-engine".into())
            .spawn(move || core.run(receiver))
            .map_err(EngineError::Thread)?;
        Ok(Engine {
            jobs,
            reader,
            hub,
            shared,
            config: Arc::new(config),
        })
    }

    /// Submits a write and waits until it is durable (or refused).
    pub async fn write(&self, request: WriteRequest) -> Result<WriteResponse, ApiError> {
        if self.is_shutting_down() {
            return Err(ApiError::shutting_down());
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Write {
            request,
            reply,
            enqueued: Instant::now(),
        };
        self.jobs.send(job).await.map_err(|_| ApiError::shutting_down())?;
        answer.await.map_err(|_| ApiError::shutting_down())?
    }

    /// Runs `read` on the engine thread against state that is entirely durable.
    pub async fn read<R, F>(&self, read: F) -> Result<R, ApiError>
    where
        F: FnOnce(&State) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job::Read(Box::new(move |state: &State| {
            let _ = reply.send(read(state));
        }));
        self.jobs.send(job).await.map_err(|_| ApiError::shutting_down())?;
        answer.await.map_err(|_| ApiError::shutting_down())
    }

    /// A reader of the durable log.
    pub fn reader(&self) -> &LogReader {
        &self.reader
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
        *self.shared.head.lock().expect("the head lock is never held across a panic")
    }

    /// The seqs of a stream's events on a branch, in order.
    pub fn stream_seqs(&self, branch: &str, stream: &str) -> Vec<u64> {
        let index = self.shared.stream_index.read().expect("the index lock is never held across a panic");
        index
            .get(&(branch.to_owned(), stream.to_owned()))
            .cloned()
            .unwrap_or_default()
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

/// The engine thread's own state.
struct Core {
    log: Log,
    state: State,
    hub: Hub,
    shared: Arc<Shared>,
    idempotency: HashMap<String, IdempotencyEntry>,
    /// Keys in the order they expire.
    idempotency_expiry: VecDeque<(i64, String)>,
    last_ts_ms: i64,
}

#[derive(Debug, Clone)]
struct IdempotencyEntry {
    request_sha256: [u8; 32],
    /// The seq of the first event of the write, whose record holds the response.
    seq: u64,
    /// The response while its write is not yet durable (same group commit).
    pending: Option<WriteResponse>,
}

/// A write decided in the current group, waiting for the commit.
struct Decided {
    reply: oneshot::Sender<Result<WriteResponse, ApiError>>,
    outcome: Result<WriteResponse, ApiError>,
    enqueued: Instant,
}

impl Core {
    /// Replays the log into the state, the stream index and the idempotency window, and
    /// checks the hash chain on the way.
    fn recover(&mut self) -> Result<(), EngineError> {
        let reader = self.log.reader();
        let now_ms = wall_clock_ms();
        let mut previous = GENESIS_HASH;
        let mut index: HashMap<(String, String), Vec<u64>> = HashMap::new();
        for record in reader.iter_from(Seq::FIRST) {
            let record = record.map_err(|source| EngineError::Log {
                dir: "log".into(),
                source,
            })?;
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
                    self.remember_key(idempotency.key.clone(), idempotency.request_sha256, seq, envelope.ts_ms, None);
                }
            }
            index
                .entry((envelope.branch.clone(), envelope.stream.clone()))
                .or_default()
                .push(seq);
            self.last_ts_ms = self.last_ts_ms.max(envelope.ts_ms);
            self.state.apply(&envelope);
        }
        *self.shared.stream_index.write().expect("not poisoned during recovery") = index;
        self.publish_head();
        tracing::info!(head = self.state.head, "recovered the state from the log");
        Ok(())
    }

    fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime without I/O always builds");
        loop {
            let Some(first) = runtime.block_on(receiver.recv()) else {
                return;
            };
            let mut jobs = vec![first];
            while jobs.len() < COMMIT_JOBS_MAX {
                match receiver.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if self.process(jobs) {
                return;
            }
        }
    }

    /// Runs one group commit; returns true when a shutdown job was seen.
    fn process(&mut self, jobs: Vec<Job>) -> bool {
        let mut decided: Vec<Decided> = Vec::with_capacity(jobs.len());
        let mut reads: Vec<ReadJob> = Vec::new();
        let mut envelopes: Vec<Envelope> = Vec::new();
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        let mut deferred: Vec<Job> = Vec::new();
        let now_ms = self.next_timestamp();
        for job in jobs {
            match job {
                Job::Write { request, reply, enqueued } if shutdown.is_none() => {
                    if envelopes.len() >= COMMIT_EVENTS_MAX {
                        deferred.push(Job::Write { request, reply, enqueued });
                        continue;
                    }
                    let outcome = self.decide_write(&request, now_ms, &mut envelopes);
                    decided.push(Decided { reply, outcome, enqueued });
                }
                Job::Write { reply, .. } => {
                    let _ = reply.send(Err(ApiError::shutting_down()));
                }
                Job::Read(read) => reads.push(read),
                Job::Shutdown(done) => shutdown = Some(done),
            }
        }
        if !envelopes.is_empty() {
            self.commit(&envelopes);
        }
        for item in decided {
            if item.outcome.is_err() {
                self.shared.metrics.rejections.inc();
            }
            let _ = item.reply.send(item.outcome);
            self.shared
                .metrics
                .append_latency
                .observe(item.enqueued.elapsed().as_secs_f64());
        }
        if !envelopes.is_empty() {
            let batch: CommittedBatch = envelopes.into_iter().map(|envelope| Arc::new(Committed::new(envelope))).collect();
            self.hub.publish(batch);
        }
        for read in reads {
            read(&self.state);
        }
        if !deferred.is_empty() {
            return self.process(deferred) || shutdown.map(|done| done.send(())).is_some();
        }
        if let Some(done) = shutdown {
            let _ = done.send(());
            return true;
        }
        false
    }

    /// Decides one write; on success its events are stamped, applied to the state and added
    /// to `envelopes` (not yet durable).
    fn decide_write(
        &mut self,
        request: &WriteRequest,
        now_ms: i64,
        envelopes: &mut Vec<Envelope>,
    ) -> Result<WriteResponse, ApiError> {
        if let Some(idempotency) = &request.idempotency {
            if let Some(entry) = self.idempotency.get(&idempotency.key) {
                if entry.request_sha256 != idempotency.request_sha256 {
                    return Err(ApiError::invalid(
                        "idempotency_key_reused",
                        format!(
                            "Idempotency-Key '{}' was already used with a different request",
                            idempotency.key
                        ),
                    ));
                }
                return self.replay_response(entry.clone());
            }
        }
        let context = &request.context;
        if !self.state.has_branch(&context.branch) {
            return Err(ApiError::not_found(
                "branch_not_found",
                format!("branch '{}' does not exist", context.branch),
            ));
        }
        let (drafts, overrides) = match &request.command {
            WriteCommand::Append(items) => {
                let requests: Vec<AppendRequest> = items.iter().map(|item| item.request.clone()).collect();
                let drafts = decide_append(&self.state, &context.branch, &requests)?;
                let overrides: Vec<Provenance> = items
                    .iter()
                    .map(|item| Provenance {
                        session: item.session.clone(),
                        correlation: item.correlation.clone(),
                        meta: item.meta.clone(),
                    })
                    .collect();
                (drafts, overrides)
            }
        };
        let first_index = envelopes.len();
        for (position, draft) in drafts.into_iter().enumerate() {
            let provenance = overrides.get(position);
            let envelope = self.stamp(draft, context, provenance, now_ms, envelopes);
            self.state.apply(&envelope);
            envelopes.push(envelope);
        }
        let written = &envelopes[first_index..];
        let response = respond(&request.command, written);
        if let (Some(idempotency), Some(first)) = (&request.idempotency, envelopes.get_mut(first_index)) {
            first.idempotency = Some(Idempotency {
                key: idempotency.key.clone(),
                request_sha256: idempotency.request_sha256,
                status: response.status,
                response: response.body.clone(),
            });
            let seq = first.seq;
            self.remember_key(idempotency.key.clone(), idempotency.request_sha256, seq, now_ms, Some(response.clone()));
        }
        Ok(response)
    }

    /// The first response of an idempotent write, for a retry.
    fn replay_response(&self, entry: IdempotencyEntry) -> Result<WriteResponse, ApiError> {
        let stored = match entry.pending {
            Some(response) => response,
            None => {
                let records = self
                    .log
                    .reader()
                    .read(Seq(entry.seq), 1, 1)
                    .map_err(|error| ApiError::internal("cannot read an idempotency record", &error))?;
                let record = records
                    .into_iter()
                    .find(|record| record.seq.get() == entry.seq)
                    .ok_or_else(|| ApiError::internal("idempotency record missing", &entry.seq))?;
                let envelope = Envelope::decode(entry.seq, record.timestamp_ms, &record.payload)
                    .map_err(|error| ApiError::internal("cannot decode an idempotency record", &error))?;
                let idempotency = envelope
                    .idempotency
                    .ok_or_else(|| ApiError::internal("record has no idempotency entry", &entry.seq))?;
                WriteResponse {
                    status: idempotency.status,
                    body: idempotency.response,
                    replayed: false,
                }
            }
        };
        Ok(WriteResponse { replayed: true, ..stored })
    }

    fn remember_key(&mut self, key: String, request_sha256: [u8; 32], seq: u64, ts_ms: i64, pending: Option<WriteResponse>) {
        self.idempotency_expiry.push_back((ts_ms + IDEMPOTENCY_WINDOW_MS, key.clone()));
        self.idempotency.insert(key, IdempotencyEntry { request_sha256, seq, pending });
    }

    /// Turns a draft into the next envelope of the group.
    fn stamp(
        &self,
        draft: EventDraft,
        context: &WriteContext,
        provenance: Option<&Provenance>,
        now_ms: i64,
        envelopes: &[Envelope],
    ) -> Envelope {
        let (seq, previous_hash) = match envelopes.last() {
            Some(last) => (last.seq + 1, last.hash),
            None => (self.state.head + 1, self.state.head_hash),
        };
        let pick = |own: Option<&Option<String>>, shared: &Option<String>| -> Option<String> {
            own.and_then(|value| value.clone()).or_else(|| shared.clone())
        };
        let mut envelope = Envelope {
            seq,
            ts_ms: now_ms,
            branch: context.branch.clone(),
            event_type: draft.event_type,
            stream: draft.stream,
            actor: draft.actor.unwrap_or_else(|| context.actor.clone()),
            session: pick(provenance.map(|p| &p.session), &context.session),
            correlation: pick(provenance.map(|p| &p.correlation), &context.correlation),
            meta: pick(provenance.map(|p| &p.meta), &context.meta),
            data: draft.data.to_string(),
            hash: GENESIS_HASH,
            idempotency: None,
        };
        envelope.seal(&previous_hash);
        envelope
    }

    /// Appends the group durably. Any failure here aborts the process: after a failed
    /// fsync the page cache may hold data the disk does not, so retrying would lie.
    fn commit(&mut self, envelopes: &[Envelope]) {
        let payloads: Vec<Vec<u8>> = envelopes.iter().map(Envelope::encode).collect();
        let inputs: Vec<RecordInput<'_>> = envelopes
            .iter()
            .zip(&payloads)
            .map(|(envelope, payload)| RecordInput {
                timestamp_ms: envelope.ts_ms,
                payload,
            })
            .collect();
        let started = Instant::now();
        match self.log.append_batch(&inputs) {
            Ok(range) => {
                assert_eq!(range.start().get(), envelopes[0].seq, "the log assigns the seqs the engine stamped");
            }
            Err(error) => {
                tracing::error!(%error, "durable append failed; aborting so that recovery decides what is durable");
                eprintln!("swarmlog: durable append failed: {error}; aborting");
                std::process::abort();
            }
        }
        let metrics = &self.shared.metrics;
        metrics.fsync_latency.observe(started.elapsed().as_secs_f64());
        metrics.batch_events.observe(envelopes.len() as f64);
        metrics.events.inc_by(envelopes.len() as u64);
        {
            let mut index = self.shared.stream_index.write().expect("the index lock is never held across a panic");
            for envelope in envelopes {
                index
                    .entry((envelope.branch.clone(), envelope.stream.clone()))
                    .or_default()
                    .push(envelope.seq);
            }
        }
        for envelope in envelopes {
            if let Some(idempotency) = &envelope.idempotency {
                if let Some(entry) = self.idempotency.get_mut(&idempotency.key) {
                    entry.pending = None;
                }
            }
        }
        self.expire_keys();
        self.publish_head();
    }

    fn expire_keys(&mut self) {
        let now_ms = self.last_ts_ms;
        while let Some((expires_ms, _)) = self.idempotency_expiry.front() {
            if *expires_ms > now_ms {
                break;
            }
            let Some((_, key)) = self.idempotency_expiry.pop_front() else { break };
            self.idempotency.remove(&key);
        }
    }

    fn publish_head(&self) {
        let head = AuditHead {
            seq: self.state.head,
            hash: self.state.head_hash,
        };
        *self.shared.head.lock().expect("the head lock is never held across a panic") = head;
        self.shared.metrics.head_seq.set(head.seq as i64);
    }

    /// The timestamp of the next group: wall-clock time, never going backwards.
    fn next_timestamp(&mut self) -> i64 {
        self.last_ts_ms = self.last_ts_ms.max(wall_clock_ms());
        self.last_ts_ms
    }
}

/// Per-event provenance that overrides the write's.
struct Provenance {
    session: Option<String>,
    correlation: Option<String>,
    meta: Option<String>,
}

/// The response body of a write, from the events it wrote. Kept a function of the events
/// so that the idempotency record can hold it.
fn respond(command: &WriteCommand, written: &[Envelope]) -> WriteResponse {
    match command {
        WriteCommand::Append(_) => {
            let last = written.last().map_or(0, |envelope| envelope.seq);
            let mut body = format!("{{\"seq\":{last},\"events\":[");
            for (index, envelope) in written.iter().enumerate() {
                if index > 0 {
                    body.push(',');
                }
                body.push_str(&envelope.to_json());
            }
            body.push_str("]}");
            WriteResponse {
                status: 201,
                body,
                replayed: false,
            }
        }
    }
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Parses a JSON value's text for the `meta` field, which must be an object.
pub fn meta_text(meta: &Option<Value>) -> Option<String> {
    meta.as_ref().map(Value::to_string)
}
