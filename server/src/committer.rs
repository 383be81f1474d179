//! The committer: the thread that makes the engine's decisions durable and only then lets
//! anybody see them.
//!
//! The engine decides and applies writes on its own thread and hands each group to the
//! committer as a [`Commit`]. The committer takes every commit queued while its previous
//! fsync ran, appends all their events as one batch with one fdatasync, and then does what
//! must wait for durability, in this order: publishes the stream index and the head, then
//! the copy of the engine's state for readers that came with the batch's last group that
//! has one, answers the requests, hands the deferred reads their answers, and publishes
//! the events to subscribers. So the disk never waits for the engine and the engine never waits for
//! the disk: while one group is being synced the engine decides the next, and that next
//! group holds every request that arrived during the sync.
//!
//! Nothing a client sees depends on state that is not durable: every answer and every
//! read the engine computes carries the last seq its state reflected (`upto`), and is
//! released only once that seq is durable. A refused write is released the same way,
//! because the refusal may rest on an event still in flight.
//!
//! A failed write or fsync aborts the process (the page cache may hold what the disk does
//! not, so retrying would lie). A full disk met before any byte of the batch was written
//! (`swarmlog_log::Error::NoSpace`) does not: the batch is refused with 507
//! `insufficient_storage`, and so is every commit after it that was decided on top of it,
//! until the engine has reloaded its state from the log (which still ends where it did)
//! and calls [`Committer::resume`]. A reply refused this way never shows state that
//! included the refused events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use swarmlog_log::limits::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX, RECORD_FRAME_BYTES};
use swarmlog_log::RecordInput;

use crate::engine::{AuditHead, Reply, Shared, WriteResponse};
use crate::hub::{Committed, Hub};
use crate::limits::{COMMIT_BYTES_MAX, COMMIT_EVENTS_MAX};
use crate::published::Publication;
use crate::refusal::Refusal;
use crate::space::SpaceGuard;
use crate::store::{GroupRecords, Store, StoreError};

/// A read's (or heartbeat's) reply, sent once the state it was computed from is durable
/// (`Ok`), or refused because that state included refused events.
pub(crate) type Deferred = Box<dyn FnOnce(Result<(), Refusal>) + Send>;

/// An answer to a write, and when its request was queued.
pub(crate) type Answer = (Reply, Result<WriteResponse, Refusal>, Instant);

/// One group of the engine's: its events (possibly none) and everything that waits for
/// them.
pub(crate) struct Commit {
    /// The events to append, stamped with consecutive seqs after the previous commit's.
    events: Vec<Arc<Committed>>,
    /// Their record payloads.
    payloads: Vec<Vec<u8>>,
    /// What the events take in the log, frame headers included.
    bytes: u64,
    /// The last seq the engine's state reflected when it produced the answers and reads.
    upto: u64,
    answers: Vec<Answer>,
    deferred: Vec<Deferred>,
    /// A copy of the engine's state as of `upto`, for readers once it is durable.
    publication: Option<Publication>,
    /// Events another node made durable in the shared history, which this node only
    /// mirrors (a cluster follower's).
    replicated: bool,
}

impl Commit {
    /// A group's commit: `events` (final: their envelopes are encoded here), the answers
    /// to its writes, the replies to reads and heartbeats computed against the state that
    /// reflects everything up to seq `upto`, and maybe a copy of that state for readers.
    pub fn new(
        events: Vec<Arc<Committed>>,
        upto: u64,
        answers: Vec<Answer>,
        deferred: Vec<Deferred>,
        publication: Option<Publication>,
    ) -> Commit {
        let payloads: Vec<Vec<u8>> = events
            .iter()
            .map(|committed| committed.envelope.encode())
            .collect();
        let bytes = payloads
            .iter()
            .map(|payload| RECORD_FRAME_BYTES + payload.len() as u64)
            .sum();
        Commit {
            events,
            payloads,
            bytes,
            upto,
            answers,
            deferred,
            publication,
            replicated: false,
        }
    }

    /// Marks the commit's events as replicated from the shared history.
    pub fn replicated(self) -> Commit {
        Commit {
            replicated: true,
            ..self
        }
    }

    /// The commit's records, for the store.
    fn records(&self) -> GroupRecords<'_> {
        GroupRecords {
            records: self
                .events
                .iter()
                .zip(&self.payloads)
                .map(|(committed, payload)| RecordInput {
                    timestamp_ms: committed.envelope.ts_ms,
                    payload,
                })
                .collect(),
            replicated: self.replicated,
        }
    }

    /// Sends everything the commit waited for; its events are durable.
    fn release(self, shared: &Shared, hub: &Hub) {
        for (reply, outcome, enqueued) in self.answers {
            if outcome.is_err() {
                shared.metrics.rejections.inc();
            }
            let _ = reply.send(outcome);
            shared
                .metrics
                .append_latency
                .observe(enqueued.elapsed().as_secs_f64());
        }
        for deferred in self.deferred {
            deferred(Ok(()));
        }
        if !self.events.is_empty() {
            hub.publish(self.events.into());
        }
    }

    /// Whether the commit can be released while earlier events are refused: it writes
    /// nothing and its replies rest only on durable state.
    fn rests_on_durable(&self, durable: u64) -> bool {
        self.events.is_empty() && self.upto <= durable
    }

    /// Answers everything the commit holds with `refusal`; its events are dropped.
    fn refuse(self, refusal: &Refusal, shared: &Shared) {
        for (reply, _, _) in self.answers {
            shared.metrics.rejections.inc();
            let _ = reply.send(Err(refusal.clone()));
        }
        for deferred in self.deferred {
            deferred(Err(refusal.clone()));
        }
    }
}

/// What the engine and the committer thread share.
pub(crate) struct Durability {
    queue: Mutex<Queue>,
    /// The committer waits here for commits.
    work: Condvar,
    /// The engine waits here for queue space or for a seq to become durable.
    progress: Condvar,
    /// The last durable seq (0 while the log is empty).
    durable: AtomicU64,
}

#[derive(Default)]
struct Queue {
    commits: VecDeque<Commit>,
    events: usize,
    bytes: u64,
    stopping: bool,
    /// Whether the committer is appending or releasing commits it took from the queue.
    busy: bool,
    /// Set when a full disk refused a batch: every later commit that is not
    /// `rests_on_durable` is refused with this, until `resume`.
    refusing: Option<Refusal>,
}

impl Durability {
    /// The last durable seq.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Blocks until `seq` is durable, or until the events up to it are refused for lack of
    /// space (they will never be durable). The committer never waits for the engine, so
    /// the engine (or a snapshot thread) may block here without deadlock, as long as every
    /// event up to `seq` has been submitted.
    pub fn wait_durable(&self, seq: u64) -> Result<(), Refusal> {
        let mut queue = self.lock();
        loop {
            if self.durable() >= seq {
                return Ok(());
            }
            if let Some(refusal) = &queue.refusing {
                return Err(refusal.clone());
            }
            queue = self
                .progress
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Set when a full disk refused a batch and the engine has not reloaded its state yet:
    /// the refusal every write answered since got.
    pub fn refusal(&self) -> Option<Refusal> {
        self.lock().refusing.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every change under this lock is a few assignments that cannot panic halfway.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The engine's handle to the committer thread. Dropping it drains the queue (every
/// submitted commit is appended and released) and joins the thread.
pub(crate) struct Committer {
    durability: Arc<Durability>,
    shared: Arc<Shared>,
    hub: Hub,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the thread that owns `store` from now on; a full disk blocks `space`.
    pub fn start(
        store: Box<dyn Store>,
        shared: Arc<Shared>,
        hub: Hub,
        space: Arc<SpaceGuard>,
    ) -> std::io::Result<Committer> {
        let durability = Arc::new(Durability {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
            durable: AtomicU64::new(store.log().head().map_or(0, |seq| seq.get())),
        });
        let thread = {
            let durability = durability.clone();
            let shared = shared.clone();
            let hub = hub.clone();
            std::thread::Builder::new()
                .name("swarmlog-commit".into())
                .spawn(move || {
                    // Without this thread nothing becomes durable and every writer would
                    // wait forever; a bug here must stop the process like a failed fsync.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run(store, &durability, &shared, &hub, &space)
                    }));
                    if ran.is_err() {
                        eprintln!("swarmlog: the commit thread panicked; aborting");
                        std::process::abort();
                    }
                })?
        };
        Ok(Committer {
            durability,
            shared,
            hub,
            thread: Some(thread),
        })
    }

    /// The shared part, for threads that wait for durability (background snapshots).
    pub fn durability(&self) -> &Arc<Durability> {
        &self.durability
    }

    /// Queues a commit. A commit without events whose state is already durable is released
    /// at once on the caller's thread; otherwise this blocks while the queue holds more
    /// than a few groups' worth of events, so a slow disk slows the engine down instead of
    /// filling memory.
    pub fn submit(&self, mut commit: Commit) {
        if commit.events.is_empty() && self.durability.durable() >= commit.upto {
            if let Some(publication) = commit.publication.take() {
                self.shared.published.publish(publication);
            }
            commit.release(&self.shared, &self.hub);
            return;
        }
        let mut queue = self.durability.lock();
        while queue.events >= 2 * COMMIT_EVENTS_MAX || queue.bytes >= 2 * COMMIT_BYTES_MAX as u64 {
            queue = self
                .durability
                .progress
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        queue.events += commit.events.len();
        queue.bytes += commit.bytes;
        queue.commits.push_back(commit);
        drop(queue);
        self.durability.work.notify_one();
    }

    /// Blocks until every submitted commit has been appended and released, or refused.
    pub fn wait_idle(&self) {
        let mut queue = self.durability.lock();
        while !queue.commits.is_empty() || queue.busy {
            queue = self
                .durability
                .progress
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Ends the refusals that followed a full disk: the engine has reloaded its state from
    /// the log, so what it submits from now on rests on durable state only. Call it only
    /// after `wait_idle`.
    pub fn resume(&self) {
        let mut queue = self.durability.lock();
        debug_assert!(
            queue.commits.is_empty() && !queue.busy,
            "resume follows wait_idle"
        );
        queue.refusing = None;
    }

    /// Appends and releases everything submitted, then stops the thread.
    pub fn stop(&mut self) {
        self.durability.lock().stopping = true;
        self.durability.work.notify_one();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the commit thread panicked");
            }
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The committer thread: take what is queued, append it with one fsync, release it.
fn run(
    mut store: Box<dyn Store>,
    durability: &Durability,
    shared: &Shared,
    hub: &Hub,
    space: &SpaceGuard,
) {
    loop {
        let (batch, refusing) = {
            let mut queue = durability.lock();
            while queue.commits.is_empty() && !queue.stopping {
                queue = durability
                    .work
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if queue.commits.is_empty() {
                drop(queue);
                // While this thread still holds the log (and the data directory's lock),
                // so that the next process to open the directory finds every index file.
                shared.stream_index().flush();
                return;
            }
            queue.busy = true;
            (take_batch(&mut queue), queue.refusing.clone())
        };
        durability.progress.notify_all();
        match refusing {
            Some(refusal) => refuse(batch, &refusal, durability, shared, hub),
            None => commit(store.as_mut(), batch, durability, shared, hub, space),
        }
        durability.lock().busy = false;
        durability.progress.notify_all();
    }
}

/// Appends a batch and releases it. What the store could not make durable is refused, and
/// so is every commit after it until the engine has reloaded its state: a full disk, or,
/// in a cluster, a node that is no longer the writer or a write the stream did not
/// confirm.
fn commit(
    store: &mut dyn Store,
    mut batch: Vec<Commit>,
    durability: &Durability,
    shared: &Shared,
    hub: &Hub,
    space: &SpaceGuard,
) {
    let failure = append(store, &batch, shared).err();
    let durable = failure.as_ref().map_or(batch.len(), |failure| {
        durable_commits(&batch, failure.durable())
    });
    let rest = batch.split_off(durable);
    let last = batch
        .iter()
        .rev()
        .find_map(|commit| commit.events.last())
        .map(|committed| AuditHead {
            seq: committed.envelope.seq,
            hash: committed.envelope.hash,
        });
    if let Some(last) = last {
        shared.publish(batch.iter().flat_map(|commit| &commit.events), last);
        durability.durable.store(last.seq, Ordering::Release);
        // Taking the lock orders the store before any waiter's next check.
        drop(durability.lock());
        durability.progress.notify_all();
    }
    // Every commit of `batch` is durable now (one without events waited in the queue for
    // the events before it). The copy comes after the head and the stream index, so that
    // no read shows a seq they do not have yet, and before the answers, so that a writer's
    // next read takes it.
    if let Some(publication) = batch
        .iter_mut()
        .rev()
        .find_map(|commit| commit.publication.take())
    {
        shared.published.publish(publication);
    }
    for commit in batch {
        commit.release(shared, hub);
    }
    let Some(failure) = failure else {
        return;
    };
    // What the commits of the batch that are not durable get, and what every commit after
    // them gets until the engine has reloaded its state.
    let (refusal, refusing) = match failure {
        StoreError::NoSpace { bytes_needed } => {
            tracing::warn!(
                first_seq = durability.durable() + 1,
                bytes_needed,
                "the disk is full: refusing the group and every write until space is freed"
            );
            let refusal = space.block(bytes_needed);
            (refusal.clone(), refusal)
        }
        StoreError::NotWriter { .. } => (Refusal::NotWriter, Refusal::NotWriter),
        // The history took the batches in order, so after one it did not confirm, every
        // later one of this batch may be stored too; none after them is sent.
        StoreError::Unconfirmed { .. } => (Refusal::Unconfirmed, Refusal::NotWriter),
    };
    durability.lock().refusing = Some(refusing);
    durability.progress.notify_all();
    refuse(rest, &refusal, durability, shared, hub);
}

/// Refuses the commits of a batch that rest on refused events; releases the others.
fn refuse(
    batch: Vec<Commit>,
    refusal: &Refusal,
    durability: &Durability,
    shared: &Shared,
    hub: &Hub,
) {
    let durable = durability.durable();
    for commit in batch {
        if commit.rests_on_durable(durable) {
            commit.release(shared, hub);
        } else {
            commit.refuse(refusal, shared);
        }
    }
}

/// Takes queued commits, in order, as long as their events fit one log batch (at least
/// one commit: the engine's groups always fit).
fn take_batch(queue: &mut Queue) -> Vec<Commit> {
    let mut batch = Vec::new();
    let mut records = 0u64;
    let mut bytes = 0u64;
    while let Some(commit) = queue.commits.front() {
        let commit_bytes = commit.bytes;
        let fits = records + commit.events.len() as u64 <= u64::from(BATCH_RECORDS_MAX)
            && bytes + commit_bytes <= BATCH_BYTES_MAX;
        if !fits && !batch.is_empty() {
            break;
        }
        records += commit.events.len() as u64;
        bytes += commit_bytes;
        queue.events -= commit.events.len();
        queue.bytes -= commit_bytes;
        batch.extend(queue.commits.pop_front());
    }
    batch
}

/// Makes the batch's events durable through the store (which aborts the process when the
/// local log cannot be written or synced). A failure counts the durable groups with
/// events, as the store does ([`durable_commits`] turns them into commits).
fn append(store: &mut dyn Store, batch: &[Commit], shared: &Shared) -> Result<(), StoreError> {
    let groups: Vec<GroupRecords<'_>> = batch
        .iter()
        .filter(|commit| !commit.events.is_empty())
        .map(Commit::records)
        .collect();
    if groups.is_empty() {
        return Ok(());
    }
    #[cfg(test)]
    if shared.commit_gate.pass() {
        return Err(StoreError::NoSpace { bytes_needed: 1 });
    }
    let events: usize = groups.iter().map(|group| group.records.len()).sum();
    let started = Instant::now();
    store.append(&groups)?;
    let metrics = &shared.metrics;
    metrics
        .fsync_latency
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_events.observe(events as f64);
    metrics.events.inc_by(events as u64);
    Ok(())
}

/// How many of the batch's commits are durable when the store made the first `groups` of
/// the groups with events durable: every commit before the first group it did not.
fn durable_commits(batch: &[Commit], groups: usize) -> usize {
    let mut seen = 0;
    for (index, commit) in batch.iter().enumerate() {
        if !commit.events.is_empty() {
            if seen == groups {
                return index;
            }
            seen += 1;
        }
    }
    batch.len()
}

/// A test's hold on the commit thread: while the gate is closed the thread waits before it
/// appends, so the engine's state stays ahead of the disk; opened with `refuse`, the next
/// append fails as on a full disk, before anything is written.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct CommitGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[cfg(test)]
#[derive(Default)]
struct GateState {
    closed: bool,
    /// Whether the commit thread waits at the closed gate.
    holding: bool,
    refuse: bool,
}

#[cfg(test)]
impl CommitGate {
    /// Holds the commit thread at its next append.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Whether the commit thread waits at the gate.
    pub fn is_holding(&self) -> bool {
        self.lock().holding
    }

    /// Lets the commit thread go on; with `refuse`, its next append fails as on a full
    /// disk.
    pub fn open(&self, refuse: bool) {
        let mut state = self.lock();
        state.closed = false;
        state.refuse = refuse;
        self.changed.notify_all();
    }

    /// The commit thread's way through: waits while the gate is closed, then says whether
    /// to refuse the append.
    fn pass(&self) -> bool {
        let mut state = self.lock();
        while state.closed {
            state.holding = true;
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.holding = false;
        std::mem::take(&mut state.refuse)
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
