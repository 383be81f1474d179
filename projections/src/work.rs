//! Work and knowledge (issue 4): tasks with dependencies, leases and auctions; the
//! blackboard of findings and hypotheses; proposals and votes; messages; sessions and
//! their reports.
//!
//! Like every domain of this crate, it has two pure rules. [`decide`] checks a
//! [`WorkCommand`] against a branch and returns the events that carry it out (or a
//! [`Rejection`]); [`apply`] folds a committed event into the [`Work`] part. Time-driven
//! transitions (claim leases, auction and proposal deadlines) come from [`due`], which the
//! engine calls when [`next_deadline`] has passed; agent clean-up comes from
//! [`requeue_claims_of`], which [`crate::effects`] calls when an agent leaves. Everything
//! that decides reads only the state and the `now_ms` argument, and every event carries in
//! its `data` whatever `apply` needs, so replaying the log rebuilds exactly the live state.
//!
//! This module never imports the coordination domain nor the branch state: a branch is
//! seen through [`WorkBranch`] (this part, plus a read of the agents' registry), which
//! [`crate::effects`] implements for [`crate::BranchState`]. So the server calls these
//! functions with a `&BranchState` as before.
//!
//! Each part lives in its own submodule: [`tasks`], [`blackboard`], [`consensus`],
//! [`messages`] and [`sessions`]. Read functions for the server are methods on [`Work`]
//! and on the entities, whose `view()` gives the JSON of the HTTP API.
//!
//! Conventions shared by every part:
//! - Validation errors are 422 `invalid_value` with the offending `field` in the details;
//!   an unknown entity named in the path is 404 `not_found` with `kind` and `id`; an
//!   unknown entity named in the body (a dependency, a finding used as evidence) is 422,
//!   like SPEC §3's unknown dependencies.
//! - A repeated create with the same id and the same body returns no events (the server
//!   answers 200 unchanged); the same id with another body is 409 `already_exists`.
//! - Ids the client leaves out are generated from the state (`T-<n>`, `F-<n>`, `H-<n>`,
//!   `P-<n>`, `M-<n>`, `S-<n>`, with `n` one more than the number of entities of that
//!   kind, skipping ids already taken), so the same state always generates the same id.
//!   The engine may instead pass an id of its own choosing in the command.
//! - Instants inside event `data` and views are RFC 3339 UTC strings with milliseconds
//!   (like the envelope's `ts`); durations are integer milliseconds in `*_ms` fields.

pub mod blackboard;
pub mod consensus;
pub mod messages;
pub mod sessions;
pub mod tasks;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testkit;

pub(crate) use crate::rejection::check_id;
use crate::rejection::Code;
use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{Envelope, EventDraft};
use crate::rejection::Rejection;

pub use blackboard::{
    Blackboard, EvidenceSpec, Finding, FindingCategory, FindingEvidence, FindingFilter,
    FindingSpec, Hypothesis, HypothesisSpec, HypothesisStatus, ValidateSpec,
};
pub use consensus::{
    Ballot, Consensus, Decision, Proposal, ProposalSpec, ProposalStatus, Quorum, VoteChoice,
    VoteSpec,
};
pub use messages::{AckSpec, Message, MessageSpec, Messages, BROADCAST};
pub use sessions::{
    SessionCompleteSpec, SessionReport, SessionSpec, SessionStatus, Sessions, WorkSession,
};
pub use tasks::{
    AssignSpec, AssignStrategy, Auction, AuctionSpec, Bid, BidSpec, CancelSpec, ClaimSpec,
    CompleteSpec, FailSpec, ProgressSpec, ReleaseSpec, Task, TaskFilter, TaskSpec, TaskStatus,
    Tasks,
};

/// Largest `wait_ms` of a claim (24 h), and the unit of the bound on estimates.
pub const DURATION_MS_MAX: i64 = 24 * 60 * 60 * 1000;

/// The work part of a branch's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Work {
    /// Tasks and their indexes.
    pub tasks: Tasks,
    /// Findings and hypotheses.
    pub blackboard: Blackboard,
    /// Proposals and their votes.
    pub consensus: Consensus,
    /// Messages and inboxes.
    pub messages: Messages,
    /// Sessions.
    pub sessions: Sessions,
    /// Every pending deadline of this part, earliest first: claim leases, auction and
    /// proposal deadlines. Kept by `apply`, so [`next_deadline`] is O(1).
    pub timers: BTreeSet<Timer>,
}

/// A branch as the work rules see it: their own part, and a read of the agents' registry
/// (kept by the coordination domain, which this module does not import). Implemented for
/// [`crate::BranchState`] by [`crate::effects`].
pub trait WorkBranch {
    /// The work part of the branch.
    fn work(&self) -> &Work;
    /// The work part of the branch, to change it.
    fn work_mut(&mut self) -> &mut Work;
    /// The registered agent `id` (any status), if any.
    fn agent(&self, id: &str) -> Option<AgentInfo>;
    /// The agents whose status is `active`, ordered by id. An agent whose lease ran out
    /// stays active until its `agent.expired` is applied: the engine fires timers before
    /// it decides, so that is never later than the rules need.
    fn active_agents(&self) -> Vec<AgentInfo>;
    /// 403 `agent_killed` if `agent` was killed on this branch.
    fn check_actor_allowed(&self, agent: &str) -> Result<(), Rejection>;
}

/// What the work rules need to know about a registered agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInfo {
    /// The agent's id.
    pub id: String,
    /// Whether its status is `active`.
    pub active: bool,
    /// Its registered capabilities.
    pub capabilities: BTreeSet<String>,
}

/// A deadline that [`due`] acts on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timer {
    /// When it fires, ms since the Unix epoch.
    pub at_ms: i64,
    /// What fires.
    pub kind: TimerKind,
    /// The task or proposal id.
    pub id: String,
}

/// What a [`Timer`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// A claimed task's lease runs out: `task.timed_out`.
    TaskLease,
    /// A task's auction closes: `task.auction_awarded` or `task.auction_closed`.
    Auction,
    /// A proposal's deadline: `proposal.decided`.
    ProposalDeadline,
}

impl WorkCommand {
    /// Whether an answer with no events means "nothing yet", so that a request with a
    /// `wait_ms` may be parked and decided again after later commits, instead of answered
    /// at once: true only for [`WorkCommand::TaskClaim`], whose empty answer means no task
    /// is claimable right now (204 without waiting). Every other command's empty answer is
    /// a repeat of what the state already holds, which waiting would not change.
    pub fn waits_when_empty(&self) -> bool {
        matches!(self, WorkCommand::TaskClaim(_))
    }

    /// The agent a command acts for, when its body names one.
    pub fn named_agent(&self) -> Option<&str> {
        match self {
            WorkCommand::TaskClaim(spec) => Some(&spec.agent),
            WorkCommand::TaskProgress { spec, .. } => Some(&spec.agent),
            WorkCommand::TaskComplete { spec, .. } => Some(&spec.agent),
            WorkCommand::TaskFail { spec, .. } => Some(&spec.agent),
            WorkCommand::TaskRelease { spec, .. } => Some(&spec.agent),
            WorkCommand::BidPlace { spec, .. } => Some(&spec.agent),
            WorkCommand::FindingPost(spec) => Some(&spec.agent),
            WorkCommand::VoteCast { spec, .. } => Some(&spec.agent),
            WorkCommand::MessageSend(spec) => Some(&spec.from),
            WorkCommand::MessageAck { spec, .. } => Some(&spec.agent),
            _ => None,
        }
    }
}

/// A command of this domain: one per write operation of SPEC §3. The bodies (`*Spec`)
/// deserialize from the HTTP body with the same field names and refuse unknown fields;
/// the server takes the generic write fields (`correlation`, `meta`, and `session` where it
/// is not one of the body's own fields) out of the body first. Ids from the path are
/// separate fields.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkCommand {
    /// `POST /v1/tasks`: one task or an atomic batch that may depend on each other.
    TaskCreate {
        /// The tasks, in the order of the request.
        tasks: Vec<TaskSpec>,
    },
    /// `POST /v1/tasks/claim`. No events means nothing is claimable (204, or park the
    /// request for `wait_ms` and decide again after later commits).
    TaskClaim(ClaimSpec),
    /// `POST /v1/tasks/{id}/assign`.
    TaskAssign {
        /// The task id.
        task: String,
        /// The body.
        spec: AssignSpec,
    },
    /// `POST /v1/tasks/{id}/approve`. No events means it was already approved.
    TaskApprove {
        /// The task id.
        task: String,
    },
    /// `POST /v1/tasks/{id}/progress`.
    TaskProgress {
        /// The task id.
        task: String,
        /// The body.
        spec: ProgressSpec,
    },
    /// `POST /v1/tasks/{id}/complete`.
    TaskComplete {
        /// The task id.
        task: String,
        /// The body.
        spec: CompleteSpec,
    },
    /// `POST /v1/tasks/{id}/fail`.
    TaskFail {
        /// The task id.
        task: String,
        /// The body.
        spec: FailSpec,
    },
    /// `POST /v1/tasks/{id}/release`.
    TaskRelease {
        /// The task id.
        task: String,
        /// The body.
        spec: ReleaseSpec,
    },
    /// `POST /v1/tasks/{id}/cancel`. No events means it was already cancelled.
    TaskCancel {
        /// The task id.
        task: String,
        /// The body (may be empty).
        spec: CancelSpec,
    },
    /// `POST /v1/tasks/{id}/auction`.
    AuctionOpen {
        /// The task id.
        task: String,
        /// The body.
        spec: AuctionSpec,
    },
    /// `POST /v1/tasks/{id}/bids`.
    BidPlace {
        /// The task id.
        task: String,
        /// The body.
        spec: BidSpec,
    },
    /// `POST /v1/findings`. No events means the same finding already exists.
    FindingPost(FindingSpec),
    /// `POST /v1/hypotheses`. No events means the same hypothesis already exists.
    HypothesisPropose(HypothesisSpec),
    /// `POST /v1/hypotheses/{id}/evidence`.
    EvidenceAdd {
        /// The hypothesis id.
        hypothesis: String,
        /// The body.
        spec: EvidenceSpec,
    },
    /// `POST /v1/hypotheses/{id}/validate`.
    HypothesisValidate {
        /// The hypothesis id.
        hypothesis: String,
        /// The body.
        spec: ValidateSpec,
    },
    /// `POST /v1/proposals`. No events means the same proposal already exists.
    ProposalOpen(ProposalSpec),
    /// `POST /v1/proposals/{id}/votes`: `vote.cast`, plus `proposal.decided` when this vote
    /// settles the outcome.
    VoteCast {
        /// The proposal id.
        proposal: String,
        /// The body.
        spec: VoteSpec,
    },
    /// `POST /v1/messages`.
    MessageSend(MessageSpec),
    /// `POST /v1/messages/{id}/ack`. No events means this agent already acked it.
    MessageAck {
        /// The message id.
        message: String,
        /// The body.
        spec: AckSpec,
    },
    /// `POST /v1/sessions`. No events means the same session already exists.
    SessionStart(SessionSpec),
    /// `POST /v1/sessions/{id}/complete`. No events means it was already completed with
    /// the same outcome.
    SessionComplete {
        /// The session id.
        session: String,
        /// The body.
        spec: SessionCompleteSpec,
    },
}

/// For a caller that may act only as its own `agent` (an agent token, SPEC §4): refuses
/// `command` if it acts on a task `agent` did not create in a way reserved to the task's
/// creator and operators (issue 9). An agent may assign a task to itself; assigning it to
/// another agent or by strategy, cancelling it and auctioning it are for its creator or an
/// admin. A task that does not exist passes: the rule answers `not_found`.
pub fn check_creator_rights(
    branch: &dyn WorkBranch,
    agent: &str,
    command: &WorkCommand,
) -> Result<(), Rejection> {
    let (id, verb) = match command {
        WorkCommand::TaskAssign { task, spec } if spec.agent.as_deref() != Some(agent) => {
            (task, "assign a task to another agent or by strategy")
        }
        WorkCommand::TaskCancel { task, .. } => (task, "cancel a task"),
        WorkCommand::AuctionOpen { task, .. } => (task, "auction a task"),
        _ => return Ok(()),
    };
    let Some(creator) = branch.work().tasks.get(id).and_then(Task::creator) else {
        return Ok(());
    };
    if creator == agent {
        return Ok(());
    }
    Err(Rejection::new(
        Code::Forbidden,
        format!(
            "only the task's creator or an admin may {verb}: task '{id}' was created by '{creator}', and this token acts as '{agent}' (an agent may assign a task to itself)"
        ),
    )
    .with("task", id.as_str())
    .with("creator", creator))
}

/// Decides `command` against `branch` at `now_ms`: the events that carry it out, in order,
/// or why it is refused. An empty list means "nothing to write": the command is a repeat
/// of what the state already holds (answer 200 with the current entity), except for
/// [`WorkCommand::TaskClaim`], where it means no task is claimable (answer 204 or wait).
///
/// The drafts leave `actor` unset (the request's actor) and must be applied in order.
pub fn decide(
    branch: &dyn WorkBranch,
    command: &WorkCommand,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    // The kill switch covers an agent named in a body, not just the one making the
    // request: a killed agent's claims, results, bids, votes and messages are refused.
    if let Some(agent) = command.named_agent() {
        branch.check_actor_allowed(agent)?;
    }
    match command {
        WorkCommand::TaskCreate { tasks } => tasks::decide_create(branch, tasks),
        WorkCommand::TaskClaim(spec) => tasks::decide_claim(branch, spec, now_ms),
        WorkCommand::TaskAssign { task, spec } => tasks::decide_assign(branch, task, spec, now_ms),
        WorkCommand::TaskApprove { task } => tasks::decide_approve(branch, task),
        WorkCommand::TaskProgress { task, spec } => {
            tasks::decide_progress(branch, task, spec, now_ms)
        }
        WorkCommand::TaskComplete { task, spec } => tasks::decide_complete(branch, task, spec),
        WorkCommand::TaskFail { task, spec } => tasks::decide_fail(branch, task, spec),
        WorkCommand::TaskRelease { task, spec } => tasks::decide_release(branch, task, spec),
        WorkCommand::TaskCancel { task, spec } => tasks::decide_cancel(branch, task, spec),
        WorkCommand::AuctionOpen { task, spec } => {
            tasks::decide_auction(branch, task, spec, now_ms)
        }
        WorkCommand::BidPlace { task, spec } => tasks::decide_bid(branch, task, spec, now_ms),
        WorkCommand::FindingPost(spec) => blackboard::decide_finding(branch, spec),
        WorkCommand::HypothesisPropose(spec) => blackboard::decide_hypothesis(branch, spec),
        WorkCommand::EvidenceAdd { hypothesis, spec } => {
            blackboard::decide_evidence(branch, hypothesis, spec)
        }
        WorkCommand::HypothesisValidate { hypothesis, spec } => {
            blackboard::decide_validate(branch, hypothesis, spec)
        }
        WorkCommand::ProposalOpen(spec) => consensus::decide_open(branch, spec, now_ms),
        WorkCommand::VoteCast { proposal, spec } => {
            consensus::decide_vote(branch, proposal, spec, now_ms)
        }
        WorkCommand::MessageSend(spec) => messages::decide_send(branch, spec),
        WorkCommand::MessageAck { message, spec } => messages::decide_ack(branch, message, spec),
        WorkCommand::SessionStart(spec) => sessions::decide_start(branch, spec),
        WorkCommand::SessionComplete { session, spec } => {
            sessions::decide_complete(branch, session, spec)
        }
    }
}

/// Folds a reserved event of this domain into `work`; returns false if the type is not
/// one of this domain's (the caller counts it as unknown).
pub fn apply(work: &mut Work, event: &Envelope, data: &Value) -> bool {
    let known = match event.event_type.split_once('.').map(|(prefix, _)| prefix) {
        Some("task") => tasks::apply(work, event, data),
        Some("finding") | Some("hypothesis") => blackboard::apply(work, event, data),
        Some("proposal") | Some("vote") => consensus::apply(work, event, data),
        Some("message") => messages::apply(work, event, data),
        Some("session") => sessions::apply(work, event, data),
        _ => false,
    };
    if known {
        sessions::note_envelope_session(work, event);
    }
    known
}

/// The earliest deadline of `branch`'s work part (ms since the epoch), if any: the engine
/// calls [`due`] once its clock reaches it.
pub fn next_deadline(branch: &impl WorkBranch) -> Option<i64> {
    branch.work().timers.first().map(|timer| timer.at_ms)
}

/// The system events for every deadline at or before `now_ms`, in deadline order:
///
/// - a claim lease that ran out: `task.timed_out`; the task goes back to `pending` with
///   `attempt + 1`, or, if that was attempt `max_attempts`, it fails and its dependents
///   are cancelled (`task.cancelled`, transitively);
/// - an auction deadline: `task.auction_awarded` to the best valid bid (see
///   [`tasks::bid_score`]), which claims the task, or `task.auction_closed` when there
///   is none (the task stays pending and claimable);
/// - a proposal deadline: `proposal.decided` with the outcome of the votes cast if the
///   participation quorum is met, else `expired` (see [`consensus`]).
///
/// Applying the returned drafts in order removes every timer they fired, so calling this
/// again with the same `now_ms` returns nothing.
pub fn due(branch: &dyn WorkBranch, now_ms: i64) -> Vec<EventDraft> {
    let mut drafts = Vec::new();
    let mut finished_tasks: BTreeSet<String> = BTreeSet::new();
    for timer in branch
        .work()
        .timers
        .iter()
        .take_while(|timer| timer.at_ms <= now_ms)
    {
        match timer.kind {
            TimerKind::TaskLease => {
                if !finished_tasks.contains(&timer.id) {
                    tasks::lease_expired(branch, &timer.id, &mut finished_tasks, &mut drafts);
                }
            }
            TimerKind::Auction => {
                if !finished_tasks.contains(&timer.id) {
                    tasks::auction_deadline(branch, &timer.id, now_ms, &mut drafts);
                }
            }
            TimerKind::ProposalDeadline => consensus::deadline(branch, &timer.id, &mut drafts),
        }
    }
    drafts
}

/// The system events that put every task `agent` has claimed back to `pending`
/// (`task.released` with `reason`, the attempt unchanged: the agent's death is not the
/// task's failure). [`crate::effects`] calls this when an agent expires, is killed or
/// deregisters.
pub fn requeue_claims_of(branch: &dyn WorkBranch, agent: &str, reason: &str) -> Vec<EventDraft> {
    tasks::requeue_claims_of(branch, agent, reason)
}

/// The session a work draft belongs to, for the envelope's `session` when the write does
/// not carry one: the session named in the draft's data (`task.created`,
/// `finding.reported`, `hypothesis.proposed`), the session itself for `session.*`, else
/// the session of the entity its stream names (`task/ID`, `finding/ID`, `hypothesis/ID`).
/// With it, `GET /v1/events?session=` and a session's NDJSON export include the events of
/// its tasks even when the workers' writes do not repeat the session.
pub fn draft_session(branch: &dyn WorkBranch, draft: &EventDraft) -> Option<String> {
    let named = draft.data.str_field("session");
    if named.is_some() || draft.event_type.starts_with("session.") {
        return named;
    }
    let work = branch.work();
    let (kind, id) = draft.stream.split_once('/')?;
    match kind {
        "task" => work.tasks.get(id)?.session.clone(),
        "finding" => work.blackboard.finding(id)?.session.clone(),
        "hypothesis" => work.blackboard.hypothesis(id)?.session.clone(),
        _ => None,
    }
}

/// After a restart, every claimed task gets its full claim lease again from `now_ms`, like
/// locks and agent leases (SPEC §3): its claimant could not report progress while the
/// server was down. It writes no event, like a heartbeat; the engine calls it once after
/// recovery, for every branch. Auction and proposal deadlines are not leases and stay.
pub fn restart_leases(branch: &mut dyn WorkBranch, now_ms: i64) {
    tasks::restart_leases(branch.work_mut(), now_ms);
}

// ----- helpers shared by the submodules -----

/// 422 `invalid_value` naming `field`.
pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Rejection {
    Rejection::new(Code::InvalidValue, message).with("field", field)
}

/// 404 `not_found` for the `kind` entity `id`.
pub(crate) fn not_found(kind: &str, id: &str) -> Rejection {
    Rejection::new(Code::NotFound, format!("{kind} '{id}' does not exist"))
        .with("kind", kind)
        .with("id", id)
}

/// 409 with `code`.
pub(crate) fn conflict(code: Code, message: impl Into<String>) -> Rejection {
    Rejection::new(code, message)
}

/// 409 `already_exists`: a create reused an id with another body.
pub(crate) fn already_exists(kind: &str, id: &str) -> Rejection {
    conflict(
        Code::AlreadyExists,
        format!("{kind} '{id}' already exists with a different body"),
    )
    .with("kind", kind)
    .with("id", id)
}

/// Checks that `value` is a finite number in `0..=1`.
pub(crate) fn check_unit(field: &str, value: f64) -> Result<(), Rejection> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{field} must be a number from 0 to 1, not {value}"),
        ))
    }
}

/// Checks that a claim lease (`timeout_ms`) or a proposal or auction deadline is within
/// the process's TTL limits (SPEC §6: 100 ms to 24 h by default); anything shorter would
/// expire before a client could act on it.
pub(crate) fn check_duration(field: &str, value: i64) -> Result<(), Rejection> {
    let (min, max) = duration_bounds();
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{field} must be from {min} to {max} ms, not {value}"),
        ))
    }
}

/// The TTL limits as signed milliseconds (at most 7 days, so they fit).
pub(crate) fn duration_bounds() -> (i64, i64) {
    let limits = crate::limits::current();
    let signed = |ms: u64| i64::try_from(ms).expect("TTL limits are at most 7 days");
    (signed(limits.ttl_ms_min), signed(limits.ttl_ms_max))
}

/// The id `PREFIX-n` for the first `n >= count + 1` that `taken` does not hold.
pub(crate) fn generate_id(prefix: &str, count: usize, taken: impl Fn(&str) -> bool) -> String {
    let mut number = count + 1;
    loop {
        let id = format!("{prefix}-{number}");
        if !taken(&id) {
            return id;
        }
        number += 1;
    }
}

/// An instant as it appears in data and views.
pub(crate) fn format_instant(ms: i64) -> String {
    crate::time::format_rfc3339_ms(ms)
}

/// Parses the data of an event this domain wrote. A reserved event whose data does not
/// match is a programmer error of this crate's own rules: debug builds stop on it, release
/// builds skip the event rather than refuse to start.
pub(crate) fn parse_data<T: DeserializeOwned>(event: &Envelope, data: &Value) -> Option<T> {
    match serde_json::from_value(data.clone()) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            debug_assert!(
                false,
                "event {} ({}) has malformed data: {error}",
                event.seq, event.event_type
            );
            None
        }
    }
}

/// `serde` helper: instants as RFC 3339 strings in event data.
pub(crate) mod instant {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::time::format_rfc3339_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::time::parse_rfc3339_ms(&text)
            .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 instant"))
    }
}

/// Counts per key, e.g. tasks per status, for metrics.
pub(crate) fn bump<K: Ord + Clone>(counts: &mut BTreeMap<K, u64>, key: &K, up: bool) {
    let count = counts.entry(key.clone()).or_insert(0);
    if up {
        *count += 1;
    } else {
        assert!(*count > 0, "a count never goes below zero");
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::claim;
    use super::*;

    #[test]
    fn only_a_claim_waits_when_it_finds_nothing() {
        assert!(claim("a", &[]).waits_when_empty());
        let approve = WorkCommand::TaskApprove { task: "T-1".into() };
        assert!(!approve.waits_when_empty());
    }
}
