//! Tasks (SPEC §3 "Tasks"): creation with dependencies and approval gates, atomic claims
//! from a priority index, claim leases, assignment strategies, auctions, and the
//! transitions that end a task.
//!
//! Status moves `blocked` (a dependency is not completed yet) → `awaiting_approval` (only
//! with `requires_approval`, until `approve`) → `pending` → `claimed` → `completed` |
//! `failed` | `cancelled`. A task leaves `blocked` when its last dependency completes; that
//! transition is derived by `apply` from the dependency's `task.completed`, so it needs no
//! event of its own. A failed or cancelled task cancels its dependents, transitively, with
//! one explicit `task.cancelled` per dependent.
//!
//! Claims pick from the pending index: pending tasks grouped by (type, required
//! capabilities), each group ordered by (priority descending, creation seq ascending). A
//! claim looks at the head of every group the agent qualifies for and takes the best, so
//! it costs O(G log n) for G distinct (type, capability set) pairs among pending tasks,
//! whatever the number n of pending tasks: a swarm with a handful of task kinds claims
//! from 100,000 pending tasks in microseconds. (A swarm that gives every task its own
//! type pays O(n) per claim; grouping by type is what makes the `types` filter cheap.)

use crate::rejection::Code;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    check_duration, check_id, check_unit, conflict, format_instant, generate_id, invalid,
    not_found, parse_data, AgentInfo, Timer, TimerKind, Work, WorkBranch, DURATION_MS_MAX,
};
use crate::envelope::{Envelope, EventDraft};
use crate::rejection::Rejection;

/// The priority of a task created without one (SPEC §3).
pub const PRIORITY_DEFAULT: u8 = 5;

/// The least urgent priority.
pub const PRIORITY_MIN: u8 = 1;

/// The most urgent priority.
pub const PRIORITY_MAX: u8 = 10;

/// Attempts of a task created without `max_attempts` (SPEC §3).
pub const MAX_ATTEMPTS_DEFAULT: u32 = 3;

/// The largest `max_attempts`: a task that failed a hundred times will not succeed on the
/// next try, and the bound keeps a retry loop from running for days.
pub const MAX_ATTEMPTS_MAX: u32 = 100;

/// The claim lease of a task created without `timeout_ms`: five minutes, long enough for
/// an LLM step, short enough that a crashed worker's task is soon retried. `progress`
/// renews it.
pub const TIMEOUT_MS_DEFAULT: i64 = 5 * 60 * 1000;

/// The status of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// A dependency is not completed yet.
    Blocked,
    /// Waiting for `approve`.
    AwaitingApproval,
    /// Claimable.
    Pending,
    /// Held by an agent under a lease.
    Claimed,
    /// Done.
    Completed,
    /// Failed for good.
    Failed,
    /// Cancelled, directly or because a dependency failed or was cancelled.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Blocked,
        TaskStatus::AwaitingApproval,
        TaskStatus::Pending,
        TaskStatus::Claimed,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    /// The name used in JSON and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Blocked => "blocked",
            TaskStatus::AwaitingApproval => "awaiting_approval",
            TaskStatus::Pending => "pending",
            TaskStatus::Claimed => "claimed",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a status name (`?status=`).
    pub fn parse(name: &str) -> Option<TaskStatus> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
    }

    /// Whether the task is finished for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

/// The body of a task create (one element of `{"tasks": [...]}` or the whole body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The id; generated (`T-<n>`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The task type (what kind of work; claims may filter on it).
    #[serde(rename = "type")]
    pub task_type: String,
    /// A human title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// 1..=10, 10 most urgent; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Ids of tasks (existing, or in the same batch) that must complete first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    /// Capabilities an agent needs to claim it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Free-form input for the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// The claim lease in ms; default [`TIMEOUT_MS_DEFAULT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    /// How many attempts before the task fails for good; default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
    /// Whether it waits for `approve` before it becomes pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_approval: Option<bool>,
    /// The session it belongs to (else the write's session, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// A validated task definition with defaults applied: what `task.created` carries, and
/// what "the same body" compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinition {
    /// The task type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// A human title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// 1..=10.
    pub priority: u8,
    /// Dependencies, sorted and without duplicates.
    pub depends_on: Vec<String>,
    /// Required capabilities, sorted and without duplicates.
    pub capabilities: Vec<String>,
    /// Free-form input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// The claim lease in ms.
    pub timeout_ms: i64,
    /// Attempts before failing for good.
    pub max_attempts: u32,
    /// Whether `approve` is needed.
    pub requires_approval: bool,
    /// The session given in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// The body of `POST /v1/tasks/claim`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    /// Who claims.
    pub agent: String,
    /// The capabilities to match; default the agent's registered ones (none if it is not
    /// registered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Only tasks of these types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// How long the server may wait for a task (the server's concern; validated here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<i64>,
}

/// How `assign` picks an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignStrategy {
    /// The next capable active agent after the one the last round-robin assignment
    /// picked, in id order, wrapping around.
    RoundRobin,
    /// The capable active agent holding the fewest claimed tasks (ties: smallest id).
    LeastLoaded,
    /// The most specialised capable active agent: fewest registered capabilities, so
    /// generalists stay free for work only they can do (ties: fewest claims, then id).
    Capability,
}

impl AssignStrategy {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignStrategy::RoundRobin => "round_robin",
            AssignStrategy::LeastLoaded => "least_loaded",
            AssignStrategy::Capability => "capability",
        }
    }

    /// Parses a strategy name.
    pub fn parse(name: &str) -> Option<AssignStrategy> {
        [
            AssignStrategy::RoundRobin,
            AssignStrategy::LeastLoaded,
            AssignStrategy::Capability,
        ]
        .into_iter()
        .find(|strategy| strategy.as_str() == name)
    }
}

/// The body of `POST /v1/tasks/{id}/assign`: exactly one of `agent` and `strategy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignSpec {
    /// Assign to this agent (no capability check: the assigner decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Or pick among the active agents whose capabilities cover the task's:
    /// `round_robin`, `least_loaded` or `capability` (see [`AssignStrategy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

/// The body of `POST /v1/tasks/{id}/progress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressSpec {
    /// The claimant.
    pub agent: String,
    /// 0..=100.
    pub percent: f64,
    /// A free-form note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The body of `POST /v1/tasks/{id}/complete`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteSpec {
    /// The claimant.
    pub agent: String,
    /// The result (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// The body of `POST /v1/tasks/{id}/fail`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailSpec {
    /// The claimant.
    pub agent: String,
    /// What went wrong (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// Put the task back to pending with `attempt + 1` if attempts remain (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
}

/// The body of `POST /v1/tasks/{id}/release`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    /// The claimant.
    pub agent: String,
}

/// The body of `POST /v1/tasks/{id}/cancel` (may be empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelSpec {
    /// Why (default `cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `POST /v1/tasks/{id}/auction`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuctionSpec {
    /// How long bids are taken, from now, in ms.
    pub deadline_ms: i64,
    /// Bids with a lower confidence are not valid (default 0: every bid is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f64>,
}

/// The body of `POST /v1/tasks/{id}/bids`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidSpec {
    /// The bidder.
    pub agent: String,
    /// What the agent asks for the task, >= 0, in the swarm's own unit ("points").
    pub price: f64,
    /// How long the agent expects to take, ms.
    pub estimated_ms: i64,
    /// How sure the agent is to succeed, 0..=1.
    pub confidence: f64,
}

/// One event in a task's own stream, for its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The event's seq.
    pub seq: u64,
    /// The event's time, ms since the epoch.
    pub ts_ms: i64,
    /// The event type.
    pub event_type: String,
    /// Who caused it.
    pub actor: String,
}

/// The last progress report of the current attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0..=100.
    pub percent: f64,
    /// The note, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Whether an auction takes bids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuctionStatus {
    /// Taking bids until the deadline; the task is not claimable meanwhile.
    Open,
    /// Awarded to the best valid bid, which claimed the task.
    Awarded,
    /// Closed without a valid bid; the task stayed pending.
    Closed,
}

/// A bid in an auction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bid {
    /// The bidder.
    pub agent: String,
    /// The price asked.
    pub price: f64,
    /// The estimated duration, ms.
    pub estimated_ms: i64,
    /// The bidder's confidence, 0..=1.
    pub confidence: f64,
    /// [`bid_score`] of the bid; lower wins.
    pub score: f64,
    /// The seq of the bid (ties go to the earlier bid).
    pub seq: u64,
}

/// The last auction of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Auction {
    /// Open, awarded or closed.
    pub status: AuctionStatus,
    /// When bidding ends, ms since the epoch.
    pub deadline_at_ms: i64,
    /// The lowest valid confidence.
    pub min_confidence: f64,
    /// The bids, one per agent (a later bid replaces the agent's earlier one).
    pub bids: BTreeMap<String, Bid>,
    /// The winner, once awarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
}

/// The score of a bid; the lowest score wins. It is the market formula the swarm
/// cookbooks use, with the estimate in hours:
///
/// `score = 0.4 × price / 100 + 0.3 × estimated_ms / 3 600 000 − 0.3 × confidence`
///
/// so 100 points of price weigh like 1.33 hours of work or a confidence of 1.33. A bid is
/// valid if its confidence is at least the auction's `min_confidence` and its agent is not
/// registered with a status other than `active`; ties go to the earliest bid.
pub fn bid_score(price: f64, estimated_ms: i64, confidence: f64) -> f64 {
    0.4 * price / 100.0 + 0.3 * estimated_ms as f64 / 3_600_000.0 - 0.3 * confidence
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The id.
    pub id: String,
    /// What was created.
    pub definition: TaskDefinition,
    /// The session: the definition's, else the creating write's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The status.
    pub status: TaskStatus,
    /// Whether `approve` was given.
    pub approved: bool,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// The claimant while claimed; after it ends, the agent of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// When the claim lease runs out, while claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at_ms: Option<i64>,
    /// The last progress of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The result, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The last error reported by `fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// Why it was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// The last auction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auction: Option<Auction>,
    /// The seq of `task.created` (the age order of claims).
    pub created_seq: u64,
    /// When it was created.
    pub created_at_ms: i64,
    /// When the current or last attempt was claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at_ms: Option<i64>,
    /// When it completed, failed for good or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// Tasks that depend on this one.
    pub dependents: BTreeSet<String>,
    /// The events of its stream.
    pub history: Vec<HistoryEntry>,
}

impl Task {
    /// Whether the task is in the pending index: pending and not being auctioned.
    pub fn is_claimable(&self) -> bool {
        self.status == TaskStatus::Pending && !self.auction_open()
    }

    /// Whether an auction is taking bids.
    pub fn auction_open(&self) -> bool {
        self.auction
            .as_ref()
            .is_some_and(|auction| auction.status == AuctionStatus::Open)
    }

    /// The task as the HTTP API shows it.
    pub fn view(&self) -> Value {
        let definition = &self.definition;
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("type".into(), json!(definition.task_type));
        if let Some(title) = &definition.title {
            out.insert("title".into(), json!(title));
        }
        out.insert("status".into(), json!(self.status.as_str()));
        out.insert("priority".into(), json!(definition.priority));
        out.insert("depends_on".into(), json!(definition.depends_on));
        out.insert("capabilities".into(), json!(definition.capabilities));
        if let Some(parameters) = &definition.parameters {
            out.insert("parameters".into(), parameters.clone());
        }
        out.insert("timeout_ms".into(), json!(definition.timeout_ms));
        out.insert("max_attempts".into(), json!(definition.max_attempts));
        out.insert(
            "requires_approval".into(),
            json!(definition.requires_approval),
        );
        if definition.requires_approval {
            out.insert("approved".into(), json!(self.approved));
        }
        if let Some(session) = &self.session {
            out.insert("session".into(), json!(session));
        }
        out.insert("attempt".into(), json!(self.attempt));
        if let Some(agent) = &self.agent {
            out.insert("agent".into(), json!(agent));
        }
        if let Some(lease) = self.lease_expires_at_ms {
            out.insert("lease_expires_at".into(), json!(format_instant(lease)));
        }
        if let Some(progress) = &self.progress {
            out.insert("progress".into(), json!(progress));
        }
        if let Some(result) = &self.result {
            out.insert("result".into(), result.clone());
        }
        if let Some(error) = &self.error {
            out.insert("error".into(), error.clone());
        }
        if let Some(reason) = &self.cancel_reason {
            out.insert("cancel_reason".into(), json!(reason));
        }
        if let Some(auction) = &self.auction {
            let bids: Vec<Value> = auction
                .bids
                .values()
                .map(|bid| {
                    json!({"agent": bid.agent, "price": bid.price, "estimated_ms": bid.estimated_ms,
                           "confidence": bid.confidence, "score": bid.score, "seq": bid.seq})
                })
                .collect();
            let mut view = json!({
                "status": auction.status, "deadline_at": format_instant(auction.deadline_at_ms),
                "min_confidence": auction.min_confidence, "bids": bids,
            });
            if let Some(winner) = &auction.winner {
                view["winner"] = json!(winner);
            }
            out.insert("auction".into(), view);
        }
        out.insert(
            "created_at".into(),
            json!(format_instant(self.created_at_ms)),
        );
        if let Some(claimed) = self.claimed_at_ms {
            out.insert("claimed_at".into(), json!(format_instant(claimed)));
        }
        if let Some(finished) = self.finished_at_ms {
            out.insert("finished_at".into(), json!(format_instant(finished)));
        }
        out.insert("dependents".into(), json!(self.dependents));
        let history: Vec<Value> = self
            .history
            .iter()
            .map(|entry| {
                json!({"seq": entry.seq, "type": entry.event_type, "ts": format_instant(entry.ts_ms), "actor": entry.actor})
            })
            .collect();
        out.insert("history".into(), Value::Array(history));
        Value::Object(out)
    }
}

/// One entry of the pending index; the derived order is the claim order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PendingEntry {
    /// `PRIORITY_MAX - priority`: smaller is more urgent.
    pub urgency: u8,
    /// The creation seq: smaller is older.
    pub created_seq: u64,
    /// The task id.
    pub id: String,
}

/// The pending tasks of one (type, required capabilities) pair, in claim order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingGroup {
    /// The task type.
    pub task_type: String,
    /// The required capabilities, sorted.
    pub capabilities: Vec<String>,
    /// The claim queue.
    pub queue: BTreeSet<PendingEntry>,
}

/// Filters of `GET /v1/tasks`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only this session.
    pub session: Option<String>,
    /// Only tasks whose current or last claimant is this agent.
    pub agent: Option<String>,
    /// Only this type.
    pub task_type: Option<String>,
}

/// Every task of a branch, with the indexes the rules need.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tasks {
    /// Tasks by id.
    pub by_id: BTreeMap<String, Task>,
    /// The pending index, keyed by the JSON text of `[type, capabilities]`.
    pub pending: BTreeMap<String, PendingGroup>,
    /// The tasks each agent holds claimed right now.
    pub claims: BTreeMap<String, BTreeSet<String>>,
    /// Task ids per session.
    pub by_session: BTreeMap<String, BTreeSet<String>>,
    /// How many tasks have each status (for metrics).
    pub status_counts: BTreeMap<TaskStatus, u64>,
    /// The agent the last `round_robin` assignment picked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_robin_last: Option<String>,
}

impl Tasks {
    /// The task `id`.
    pub fn get(&self, id: &str) -> Option<&Task> {
        self.by_id.get(id)
    }

    /// The tasks matching `filter`, oldest first.
    pub fn list(&self, filter: &TaskFilter) -> Vec<&Task> {
        let matches = |task: &&Task| {
            filter.status.is_none_or(|status| task.status == status)
                && filter
                    .session
                    .as_ref()
                    .is_none_or(|session| task.session.as_ref() == Some(session))
                && filter
                    .agent
                    .as_ref()
                    .is_none_or(|agent| task.agent.as_ref() == Some(agent))
                && filter
                    .task_type
                    .as_ref()
                    .is_none_or(|task_type| &task.definition.task_type == task_type)
        };
        let mut found: Vec<&Task> = match &filter.session {
            Some(session) => self
                .by_session
                .get(session)
                .into_iter()
                .flatten()
                .filter_map(|id| self.by_id.get(id))
                .filter(matches)
                .collect(),
            None => self.by_id.values().filter(matches).collect(),
        };
        found.sort_by_key(|task| task.created_seq);
        found
    }

    /// How many tasks have `status`.
    pub fn count(&self, status: TaskStatus) -> u64 {
        self.status_counts.get(&status).copied().unwrap_or(0)
    }

    /// How many tasks `agent` holds claimed.
    pub fn load_of(&self, agent: &str) -> usize {
        self.claims.get(agent).map_or(0, BTreeSet::len)
    }

    /// The task a claim by an agent with `capabilities`, restricted to `types` if given,
    /// would take: the most urgent, then oldest, claimable task whose required
    /// capabilities the agent has.
    pub fn next_claimable(
        &self,
        capabilities: &BTreeSet<String>,
        types: Option<&BTreeSet<String>>,
    ) -> Option<&Task> {
        let mut best: Option<&PendingEntry> = None;
        for group in self.pending.values() {
            if types.is_some_and(|types| !types.contains(&group.task_type)) {
                continue;
            }
            if !group
                .capabilities
                .iter()
                .all(|capability| capabilities.contains(capability))
            {
                continue;
            }
            if let Some(head) = group.queue.first() {
                if best.is_none_or(|best| head < best) {
                    best = Some(head);
                }
            }
        }
        let task = self
            .by_id
            .get(&best?.id)
            .expect("the pending index holds only existing tasks");
        debug_assert!(task.is_claimable());
        Some(task)
    }

    /// How many tasks are in the pending index.
    pub fn claimable_count(&self) -> usize {
        self.pending.values().map(|group| group.queue.len()).sum()
    }
}

fn group_key(definition: &TaskDefinition) -> String {
    serde_json::to_string(&(&definition.task_type, &definition.capabilities))
        .expect("a pair of strings serializes")
}

fn pending_entry(task: &Task) -> PendingEntry {
    PendingEntry {
        urgency: PRIORITY_MAX - task.definition.priority,
        created_seq: task.created_seq,
        id: task.id.clone(),
    }
}

// ----- event data -----

#[derive(Serialize, Deserialize)]
struct Created {
    task: String,
    #[serde(flatten)]
    definition: TaskDefinition,
}

#[derive(Serialize, Deserialize)]
struct TaskOnly {
    task: String,
}

/// `task.claimed`, `task.assigned` and `task.auction_awarded`.
#[derive(Serialize, Deserialize)]
struct ClaimedData {
    task: String,
    agent: String,
    attempt: u32,
    #[serde(with = "super::instant")]
    lease_expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strategy: Option<AssignStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    estimated_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct ProgressedData {
    task: String,
    agent: String,
    percent: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(with = "super::instant")]
    lease_expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct CompletedData {
    task: String,
    agent: String,
    #[serde(default)]
    result: Value,
}

/// `task.failed` and `task.timed_out`: attempt `attempt` ended; `final` says whether the
/// task failed for good or goes back to pending with `attempt + 1`.
#[derive(Serialize, Deserialize)]
struct EndedData {
    task: String,
    agent: String,
    attempt: u32,
    #[serde(rename = "final")]
    is_final: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<bool>,
}

#[derive(Serialize, Deserialize)]
struct ReleasedData {
    task: String,
    agent: String,
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct CancelledData {
    task: String,
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dependency: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct AuctionOpenedData {
    task: String,
    #[serde(with = "super::instant")]
    deadline_at: i64,
    min_confidence: f64,
}

#[derive(Serialize, Deserialize)]
struct BidData {
    task: String,
    agent: String,
    price: f64,
    estimated_ms: i64,
    confidence: f64,
    score: f64,
}

#[derive(Serialize, Deserialize)]
struct AuctionClosedData {
    task: String,
    reason: String,
    bids: usize,
}

fn draft(event_type: &str, task: &str, data: impl Serialize) -> EventDraft {
    EventDraft::new(
        event_type,
        format!("task/{task}"),
        serde_json::to_value(data).expect("event data serializes"),
    )
}

fn system_draft(event_type: &str, task: &str, data: impl Serialize) -> EventDraft {
    EventDraft::system(
        event_type,
        format!("task/{task}"),
        serde_json::to_value(data).expect("event data serializes"),
    )
}

// ----- decide -----

fn field_name(batch: bool, index: usize, name: &str) -> String {
    if batch {
        format!("tasks[{index}].{name}")
    } else {
        name.to_owned()
    }
}

fn check_ids(field: &str, values: &[String]) -> Result<Vec<String>, Rejection> {
    for value in values {
        check_id(field, value)?;
    }
    let set: BTreeSet<String> = values.iter().cloned().collect();
    Ok(set.into_iter().collect())
}

fn normalize(spec: &TaskSpec, field: &dyn Fn(&str) -> String) -> Result<TaskDefinition, Rejection> {
    check_id(&field("type"), &spec.task_type)?;
    let priority = spec.priority.unwrap_or(i64::from(PRIORITY_DEFAULT));
    if !(i64::from(PRIORITY_MIN)..=i64::from(PRIORITY_MAX)).contains(&priority) {
        return Err(invalid(
            &field("priority"),
            format!("priority must be from {PRIORITY_MIN} to {PRIORITY_MAX}, not {priority}"),
        ));
    }
    let timeout_ms = spec.timeout_ms.unwrap_or_else(|| {
        let (min, max) = super::duration_bounds();
        TIMEOUT_MS_DEFAULT.clamp(min, max)
    });
    check_duration(&field("timeout_ms"), timeout_ms)?;
    let max_attempts = spec.max_attempts.unwrap_or(i64::from(MAX_ATTEMPTS_DEFAULT));
    if !(1..=i64::from(MAX_ATTEMPTS_MAX)).contains(&max_attempts) {
        return Err(invalid(
            &field("max_attempts"),
            format!("max_attempts must be from 1 to {MAX_ATTEMPTS_MAX}, not {max_attempts}"),
        ));
    }
    if let Some(session) = &spec.session {
        check_id(&field("session"), session)?;
    }
    Ok(TaskDefinition {
        task_type: spec.task_type.clone(),
        title: spec.title.clone(),
        priority: u8::try_from(priority).expect("checked to be 1..=10"),
        depends_on: check_ids(
            &field("depends_on"),
            spec.depends_on.as_deref().unwrap_or_default(),
        )?,
        capabilities: check_ids(
            &field("capabilities"),
            spec.capabilities.as_deref().unwrap_or_default(),
        )?,
        parameters: spec
            .parameters
            .clone()
            .filter(|parameters| !parameters.is_null()),
        timeout_ms,
        max_attempts: u32::try_from(max_attempts).expect("checked to be 1..=100"),
        requires_approval: spec.requires_approval.unwrap_or(false),
        session: spec.session.clone(),
    })
}

/// Creates one task or an atomic batch.
pub(super) fn decide_create(
    branch: &dyn WorkBranch,
    specs: &[TaskSpec],
) -> Result<Vec<EventDraft>, Rejection> {
    let tasks = &branch.work().tasks;
    if specs.is_empty() {
        return Err(invalid("tasks", "a create needs at least one task"));
    }
    // Each task is an event, so a create is bounded like a batch.
    let most = crate::limits::current().batch_events_max;
    if specs.len() > most {
        return Err(invalid(
            "tasks",
            format!("a create takes at most {most} tasks, not {}", specs.len()),
        ));
    }
    let batch = specs.len() > 1;
    let mut explicit: BTreeSet<&str> = BTreeSet::new();
    for (index, spec) in specs.iter().enumerate() {
        if let Some(id) = &spec.id {
            check_id(&field_name(batch, index, "id"), id)?;
            if !explicit.insert(id) {
                return Err(invalid(
                    &field_name(batch, index, "id"),
                    format!("task '{id}' appears twice in the batch"),
                ));
            }
        }
    }
    // Ids and definitions; tasks that already exist with the same body are left out.
    let mut new_tasks: Vec<(String, TaskDefinition)> = Vec::new();
    let mut new_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut generated = 0;
    for (index, spec) in specs.iter().enumerate() {
        let definition = normalize(spec, &|name| field_name(batch, index, name))?;
        let id = match &spec.id {
            Some(id) => id.clone(),
            None => {
                let id = generate_id("T", tasks.by_id.len() + generated, |candidate| {
                    tasks.by_id.contains_key(candidate)
                        || explicit.contains(candidate)
                        || new_index.contains_key(candidate)
                });
                generated += 1;
                id
            }
        };
        if let Some(existing) = tasks.by_id.get(&id) {
            if existing.definition == definition {
                continue;
            }
            return Err(super::already_exists("task", &id));
        }
        new_index.insert(id.clone(), new_tasks.len());
        new_tasks.push((id, definition));
    }
    // Every dependency exists already or is created by this batch.
    for (position, (id, definition)) in new_tasks.iter().enumerate() {
        let unknown: Vec<&String> = definition
            .depends_on
            .iter()
            .filter(|dependency| {
                !tasks.by_id.contains_key(*dependency) && !new_index.contains_key(*dependency)
            })
            .collect();
        if !unknown.is_empty() {
            let index = specs
                .iter()
                .position(|spec| spec.id.as_ref() == Some(id))
                .unwrap_or(position);
            return Err(invalid(
                &field_name(batch, index, "depends_on"),
                format!("task '{id}' depends on unknown tasks {unknown:?}"),
            )
            .with("unknown", json!(unknown)));
        }
    }
    let order = topological_order(&new_tasks, &new_index)?;
    // Tasks with a failed or cancelled dependency are created and cancelled at once.
    let mut doomed: BTreeMap<usize, (String, &'static str)> = BTreeMap::new();
    for &position in &order {
        let (_, definition) = &new_tasks[position];
        for dependency in &definition.depends_on {
            let reason = match new_index.get(dependency) {
                Some(other) => doomed.get(other).map(|_| "dependency_cancelled"),
                None => match tasks.by_id[dependency].status {
                    TaskStatus::Failed => Some("dependency_failed"),
                    TaskStatus::Cancelled => Some("dependency_cancelled"),
                    _ => None,
                },
            };
            if let Some(reason) = reason {
                doomed.insert(position, (dependency.clone(), reason));
                break;
            }
        }
    }
    let mut drafts: Vec<EventDraft> = order
        .iter()
        .map(|&position| {
            let (id, definition) = &new_tasks[position];
            draft(
                "task.created",
                id,
                Created {
                    task: id.clone(),
                    definition: definition.clone(),
                },
            )
        })
        .collect();
    for &position in &order {
        if let Some((dependency, reason)) = doomed.get(&position) {
            let id = &new_tasks[position].0;
            drafts.push(draft(
                "task.cancelled",
                id,
                CancelledData {
                    task: id.clone(),
                    reason: (*reason).to_owned(),
                    dependency: Some(dependency.clone()),
                },
            ));
        }
    }
    Ok(drafts)
}

/// The positions of `new_tasks` ordered so that every task comes after its dependencies
/// in the batch (Kahn's algorithm, ties in request order), or 422 naming a cycle.
fn topological_order(
    new_tasks: &[(String, TaskDefinition)],
    new_index: &BTreeMap<String, usize>,
) -> Result<Vec<usize>, Rejection> {
    let mut waiting_on: Vec<usize> = vec![0; new_tasks.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); new_tasks.len()];
    for (position, (_, definition)) in new_tasks.iter().enumerate() {
        for dependency in &definition.depends_on {
            if let Some(&other) = new_index.get(dependency) {
                waiting_on[position] += 1;
                dependents[other].push(position);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..new_tasks.len())
        .filter(|&position| waiting_on[position] == 0)
        .collect();
    let mut order = Vec::with_capacity(new_tasks.len());
    while let Some(position) = ready.pop_first() {
        order.push(position);
        for &dependent in &dependents[position] {
            waiting_on[dependent] -= 1;
            if waiting_on[dependent] == 0 {
                ready.insert(dependent);
            }
        }
    }
    if order.len() == new_tasks.len() {
        return Ok(order);
    }
    // Every task left waits on another task left: walking dependencies must loop.
    let left: BTreeSet<usize> = (0..new_tasks.len())
        .filter(|&position| waiting_on[position] > 0)
        .collect();
    let mut path: Vec<usize> = Vec::new();
    let mut current = *left
        .first()
        .expect("some task is left when the order is short");
    while !path.contains(&current) {
        path.push(current);
        current = new_tasks[current]
            .1
            .depends_on
            .iter()
            .filter_map(|dependency| new_index.get(dependency).copied())
            .find(|other| left.contains(other))
            .expect("a task left in a cycle waits on another task left");
    }
    let start = path
        .iter()
        .position(|&position| position == current)
        .expect("current is on the path");
    let mut cycle: Vec<&str> = path[start..]
        .iter()
        .map(|&position| new_tasks[position].0.as_str())
        .collect();
    cycle.push(&new_tasks[current].0);
    Err(invalid(
        "depends_on",
        format!("the dependencies form a cycle: {}", cycle.join(" -> ")),
    )
    .with("cycle", json!(cycle)))
}

fn find<'a>(branch: &'a dyn WorkBranch, id: &str) -> Result<&'a Task, Rejection> {
    branch
        .work()
        .tasks
        .get(id)
        .ok_or_else(|| not_found("task", id))
}

fn invalid_status(task: &Task, wanted: &str) -> Rejection {
    conflict(Code::InvalidStatus,
        format!(
            "task '{}' is {}, so it cannot be {wanted}",
            task.id,
            task.status.as_str()
        ),
    )
    .with("task", task.id.as_str())
    .with("status", task.status.as_str())
}

/// The agent's capabilities for matching: the given list, else its registered ones.
fn capabilities_of(
    branch: &dyn WorkBranch,
    agent: &str,
    given: Option<&[String]>,
) -> Result<BTreeSet<String>, Rejection> {
    match given {
        Some(given) => Ok(check_ids("capabilities", given)?.into_iter().collect()),
        None => Ok(branch.agent(agent)
            .map(|info| info.capabilities)
            .unwrap_or_default()),
    }
}

/// Claims the best claimable task; no events when there is none.
pub(super) fn decide_claim(
    branch: &dyn WorkBranch,
    spec: &ClaimSpec,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    check_id("agent", &spec.agent)?;
    if let Some(wait_ms) = spec.wait_ms {
        if !(0..=DURATION_MS_MAX).contains(&wait_ms) {
            return Err(invalid(
                "wait_ms",
                format!("wait_ms must be from 0 to {DURATION_MS_MAX}, not {wait_ms}"),
            ));
        }
    }
    let capabilities = capabilities_of(branch, &spec.agent, spec.capabilities.as_deref())?;
    let types: Option<BTreeSet<String>> = match &spec.types {
        Some(types) => Some(check_ids("types", types)?.into_iter().collect()),
        None => None,
    };
    let Some(task) = branch
        .work()
        .tasks
        .next_claimable(&capabilities, types.as_ref())
    else {
        return Ok(Vec::new());
    };
    Ok(vec![claim_draft("task.claimed", task, &spec.agent, now_ms)])
}

fn claim_draft(event_type: &str, task: &Task, agent: &str, now_ms: i64) -> EventDraft {
    draft(
        event_type,
        &task.id,
        ClaimedData {
            task: task.id.clone(),
            agent: agent.to_owned(),
            attempt: task.attempt,
            lease_expires_at: now_ms + task.definition.timeout_ms,
            strategy: None,
            price: None,
            estimated_ms: None,
            confidence: None,
            score: None,
        },
    )
}

/// Assigns a pending task to a named agent or by strategy; it is then claimed by it.
pub(super) fn decide_assign(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &AssignSpec,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let task = find(branch, id)?;
    let tasks = &branch.work().tasks;
    let (agent, strategy) = match (&spec.agent, &spec.strategy) {
        (Some(agent), None) => {
            check_id("agent", agent)?;
            if branch.agent(agent).is_some_and(|info| !info.active) {
                return Err(
                    conflict(Code::AgentNotActive, format!("agent '{agent}' is not active"))
                        .with("agent", agent.as_str()),
                );
            }
            (agent.clone(), None)
        }
        (None, Some(name)) => {
            let strategy = AssignStrategy::parse(name).ok_or_else(|| {
                invalid(
                    "strategy",
                    format!(
                        "strategy must be round_robin, least_loaded or capability, not '{name}'"
                    ),
                )
            })?;
            (String::new(), Some(strategy))
        }
        _ => return Err(invalid("agent", "give exactly one of agent and strategy")),
    };
    if task.status != TaskStatus::Pending {
        return Err(invalid_status(task, "assigned"));
    }
    if task.auction_open() {
        return Err(auction_open(task));
    }
    let agent = match strategy {
        None => agent,
        Some(strategy) => {
            let required = &task.definition.capabilities;
            let candidates: Vec<AgentInfo> = branch.active_agents()
                .into_iter()
                .filter(|info| {
                    required
                        .iter()
                        .all(|capability| info.capabilities.contains(capability))
                })
                .collect();
            let chosen = match strategy {
                AssignStrategy::RoundRobin => {
                    let after = tasks.round_robin_last.as_deref().unwrap_or("");
                    candidates
                        .iter()
                        .find(|info| info.id.as_str() > after)
                        .or(candidates.first())
                }
                AssignStrategy::LeastLoaded => candidates
                    .iter()
                    .min_by_key(|info| (tasks.load_of(&info.id), &info.id)),
                AssignStrategy::Capability => candidates.iter().min_by_key(|info| {
                    (info.capabilities.len(), tasks.load_of(&info.id), &info.id)
                }),
            };
            match chosen {
                Some(info) => info.id.clone(),
                None => {
                    return Err(conflict(Code::NoEligibleAgent,
                        format!(
                        "no active agent has the capabilities {required:?} that task '{id}' needs"
                    ),
                    )
                    .with("task", id)
                    .with("strategy", strategy.as_str()))
                }
            }
        }
    };
    let mut assigned = claim_draft("task.assigned", task, &agent, now_ms);
    if let Some(strategy) = strategy {
        assigned.data["strategy"] = json!(strategy);
    }
    Ok(vec![assigned])
}

fn auction_open(task: &Task) -> Rejection {
    conflict(Code::AuctionOpen,
        format!("task '{}' is being auctioned", task.id),
    )
    .with("task", task.id.as_str())
}

/// Opens a task's approval gate; no events if it is already open.
pub(super) fn decide_approve(branch: &dyn WorkBranch, id: &str) -> Result<Vec<EventDraft>, Rejection> {
    let task = find(branch, id)?;
    if !task.definition.requires_approval {
        return Err(conflict(Code::ApprovalNotRequired,
            format!("task '{id}' does not require approval"),
        )
        .with("task", id));
    }
    if task.approved {
        return Ok(Vec::new());
    }
    if task.status.is_terminal() {
        return Err(invalid_status(task, "approved"));
    }
    Ok(vec![draft(
        "task.approved",
        id,
        TaskOnly {
            task: id.to_owned(),
        },
    )])
}

/// The task if `agent` holds its claim, else 409 `not_claimant`. The rule is a conflict
/// with the task's state, like a lock's `not_owner`: the server's auth layer answers 403
/// when a token acts for another agent than its own.
fn claimed_by<'a>(branch: &'a dyn WorkBranch, id: &str, agent: &str) -> Result<&'a Task, Rejection> {
    let task = find(branch, id)?;
    check_id("agent", agent)?;
    if task.status == TaskStatus::Claimed && task.agent.as_deref() == Some(agent) {
        return Ok(task);
    }
    let claimant = if task.status == TaskStatus::Claimed {
        json!(task.agent)
    } else {
        Value::Null
    };
    Err(conflict(Code::NotClaimant,
        format!(
            "agent '{agent}' does not hold task '{id}' (status {})",
            task.status.as_str()
        ),
    )
    .with("task", id)
    .with("status", task.status.as_str())
    .with("claimant", claimant))
}

/// Reports progress and renews the claim lease.
pub(super) fn decide_progress(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &ProgressSpec,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let task = claimed_by(branch, id, &spec.agent)?;
    if !spec.percent.is_finite() || !(0.0..=100.0).contains(&spec.percent) {
        return Err(invalid(
            "percent",
            format!("percent must be from 0 to 100, not {}", spec.percent),
        ));
    }
    Ok(vec![draft(
        "task.progressed",
        id,
        ProgressedData {
            task: id.to_owned(),
            agent: spec.agent.clone(),
            percent: spec.percent,
            note: spec.note.clone(),
            lease_expires_at: now_ms + task.definition.timeout_ms,
        },
    )])
}

/// Completes a claimed task.
pub(super) fn decide_complete(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &CompleteSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    claimed_by(branch, id, &spec.agent)?;
    Ok(vec![draft(
        "task.completed",
        id,
        CompletedData {
            task: id.to_owned(),
            agent: spec.agent.clone(),
            result: spec.result.clone().unwrap_or(Value::Null),
        },
    )])
}

/// Fails the current attempt: back to pending if `retry` and attempts remain, else
/// failed for good, cancelling the dependents.
pub(super) fn decide_fail(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &FailSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    let task = claimed_by(branch, id, &spec.agent)?;
    let retry = spec.retry.unwrap_or(false);
    let is_final = !(retry && task.attempt < task.definition.max_attempts);
    let mut drafts = vec![draft(
        "task.failed",
        id,
        EndedData {
            task: id.to_owned(),
            agent: spec.agent.clone(),
            attempt: task.attempt,
            is_final,
            error: Some(spec.error.clone().unwrap_or(Value::Null)),
            retry: Some(retry),
        },
    )];
    if is_final {
        let mut finished = BTreeSet::from([id.to_owned()]);
        cascade_cancel(
            &branch.work().tasks,
            id,
            "dependency_failed",
            false,
            &mut finished,
            &mut drafts,
        );
    }
    Ok(drafts)
}

/// Gives a claimed task back: pending again, same attempt.
pub(super) fn decide_release(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &ReleaseSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    claimed_by(branch, id, &spec.agent)?;
    Ok(vec![draft(
        "task.released",
        id,
        ReleasedData {
            task: id.to_owned(),
            agent: spec.agent.clone(),
            reason: "released".to_owned(),
        },
    )])
}

/// Cancels a task that is not finished, and its dependents; no events if it is already
/// cancelled.
pub(super) fn decide_cancel(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &CancelSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    let task = find(branch, id)?;
    match task.status {
        TaskStatus::Cancelled => return Ok(Vec::new()),
        TaskStatus::Completed | TaskStatus::Failed => {
            return Err(invalid_status(task, "cancelled"))
        }
        _ => {}
    }
    let reason = spec
        .reason
        .clone()
        .unwrap_or_else(|| "cancelled".to_owned());
    let mut drafts = vec![draft(
        "task.cancelled",
        id,
        CancelledData {
            task: id.to_owned(),
            reason,
            dependency: None,
        },
    )];
    let mut finished = BTreeSet::from([id.to_owned()]);
    cascade_cancel(
        &branch.work().tasks,
        id,
        "dependency_cancelled",
        false,
        &mut finished,
        &mut drafts,
    );
    Ok(drafts)
}

/// Appends a `task.cancelled` for every unfinished task that depends, directly or
/// transitively, on `root`, breadth first in id order. `finished` holds tasks already
/// ending in this decision; it grows with the ones cancelled here.
fn cascade_cancel(
    tasks: &Tasks,
    root: &str,
    root_reason: &'static str,
    system: bool,
    finished: &mut BTreeSet<String>,
    drafts: &mut Vec<EventDraft>,
) {
    let mut queue: VecDeque<(String, &'static str)> =
        VecDeque::from([(root.to_owned(), root_reason)]);
    while let Some((parent, reason)) = queue.pop_front() {
        for dependent in &tasks.by_id[&parent].dependents {
            let task = &tasks.by_id[dependent];
            if task.status.is_terminal() || finished.contains(dependent) {
                continue;
            }
            finished.insert(dependent.clone());
            let data = CancelledData {
                task: dependent.clone(),
                reason: reason.to_owned(),
                dependency: Some(parent.clone()),
            };
            drafts.push(if system {
                system_draft("task.cancelled", dependent, data)
            } else {
                draft("task.cancelled", dependent, data)
            });
            queue.push_back((dependent.clone(), "dependency_cancelled"));
        }
    }
}

/// Opens an auction on a pending task; it is not claimable until the deadline.
pub(super) fn decide_auction(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &AuctionSpec,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let task = find(branch, id)?;
    check_duration("deadline_ms", spec.deadline_ms)?;
    let min_confidence = spec.min_confidence.unwrap_or(0.0);
    check_unit("min_confidence", min_confidence)?;
    if task.status != TaskStatus::Pending {
        return Err(invalid_status(task, "auctioned"));
    }
    if task.auction_open() {
        return Err(auction_open(task));
    }
    Ok(vec![draft(
        "task.auction_opened",
        id,
        AuctionOpenedData {
            task: id.to_owned(),
            deadline_at: now_ms + spec.deadline_ms,
            min_confidence,
        },
    )])
}

/// Places (or replaces) an agent's bid in an open auction.
pub(super) fn decide_bid(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &BidSpec,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let task = find(branch, id)?;
    check_id("agent", &spec.agent)?;
    if !spec.price.is_finite() || spec.price < 0.0 {
        return Err(invalid(
            "price",
            format!("price must be a number >= 0, not {}", spec.price),
        ));
    }
    if !(0..=DURATION_MS_MAX * 365).contains(&spec.estimated_ms) {
        return Err(invalid(
            "estimated_ms",
            format!(
                "estimated_ms must be from 0 to one year, not {}",
                spec.estimated_ms
            ),
        ));
    }
    check_unit("confidence", spec.confidence)?;
    let open = task
        .auction
        .as_ref()
        .filter(|auction| auction.status == AuctionStatus::Open && now_ms < auction.deadline_at_ms);
    if open.is_none() {
        return Err(conflict(Code::AuctionClosed,
            format!("task '{id}' has no auction taking bids"),
        )
        .with("task", id));
    }
    let registered = branch.agent(&spec.agent);
    if registered.as_ref().is_some_and(|info| !info.active) {
        return Err(conflict(Code::AgentNotActive,
            format!("agent '{}' is not active", spec.agent),
        )
        .with("agent", spec.agent.as_str()));
    }
    let capabilities = registered.map(|info| info.capabilities).unwrap_or_default();
    let missing: Vec<&String> = task
        .definition
        .capabilities
        .iter()
        .filter(|capability| !capabilities.contains(*capability))
        .collect();
    if !missing.is_empty() {
        return Err(conflict(Code::MissingCapabilities,
            format!(
                "agent '{}' lacks capabilities {missing:?} that task '{id}' needs",
                spec.agent
            ),
        )
        .with("missing", json!(missing)));
    }
    Ok(vec![draft(
        "task.bid_placed",
        id,
        BidData {
            task: id.to_owned(),
            agent: spec.agent.clone(),
            price: spec.price,
            estimated_ms: spec.estimated_ms,
            confidence: spec.confidence,
            score: bid_score(spec.price, spec.estimated_ms, spec.confidence),
        },
    )])
}

// ----- timers and clean-up -----

/// A claim lease ran out: `task.timed_out`, and the cascade if that was the last attempt.
pub(super) fn lease_expired(
    branch: &dyn WorkBranch,
    id: &str,
    finished: &mut BTreeSet<String>,
    drafts: &mut Vec<EventDraft>,
) {
    let tasks = &branch.work().tasks;
    let task = &tasks.by_id[id];
    assert_eq!(
        task.status,
        TaskStatus::Claimed,
        "only a claimed task has a lease timer"
    );
    let agent = task.agent.clone().expect("a claimed task has a claimant");
    let is_final = task.attempt >= task.definition.max_attempts;
    drafts.push(system_draft(
        "task.timed_out",
        id,
        EndedData {
            task: id.to_owned(),
            agent,
            attempt: task.attempt,
            is_final,
            error: None,
            retry: None,
        },
    ));
    finished.insert(id.to_owned());
    if is_final {
        cascade_cancel(tasks, id, "dependency_failed", true, finished, drafts);
    }
}

/// An auction's deadline: award the best valid bid or close without a winner.
pub(super) fn auction_deadline(
    branch: &dyn WorkBranch,
    id: &str,
    now_ms: i64,
    drafts: &mut Vec<EventDraft>,
) {
    let task = &branch.work().tasks.by_id[id];
    let auction = task
        .auction
        .as_ref()
        .expect("only an auctioned task has an auction timer");
    assert_eq!(
        auction.status,
        AuctionStatus::Open,
        "only an open auction has a timer"
    );
    let winner = auction
        .bids
        .values()
        .filter(|bid| bid.confidence >= auction.min_confidence)
        .filter(|bid| branch.agent(&bid.agent).is_none_or(|info| info.active))
        .min_by(|left, right| {
            left.score
                .total_cmp(&right.score)
                .then(left.seq.cmp(&right.seq))
        });
    match winner {
        Some(bid) => {
            let mut awarded = claim_draft("task.auction_awarded", task, &bid.agent, now_ms);
            awarded.actor = Some(crate::envelope::SYSTEM_ACTOR.to_owned());
            awarded.data["price"] = json!(bid.price);
            awarded.data["estimated_ms"] = json!(bid.estimated_ms);
            awarded.data["confidence"] = json!(bid.confidence);
            awarded.data["score"] = json!(bid.score);
            drafts.push(awarded);
        }
        None => drafts.push(system_draft(
            "task.auction_closed",
            id,
            AuctionClosedData {
                task: id.to_owned(),
                reason: "no_valid_bid".to_owned(),
                bids: auction.bids.len(),
            },
        )),
    }
}

/// `task.released` for every task `agent` holds.
pub(super) fn requeue_claims_of(
    branch: &dyn WorkBranch,
    agent: &str,
    reason: &str,
) -> Vec<EventDraft> {
    let tasks = &branch.work().tasks;
    tasks
        .claims
        .get(agent)
        .into_iter()
        .flatten()
        .map(|id| {
            system_draft(
                "task.released",
                id,
                ReleasedData {
                    task: id.clone(),
                    agent: agent.to_owned(),
                    reason: reason.to_owned(),
                },
            )
        })
        .collect()
}

/// Gives every claimed task its full lease again from `now_ms`, without an event (see
/// [`super::restart_leases`]).
pub(super) fn restart_leases(work: &mut Work, now_ms: i64) {
    let claimed: Vec<String> = work.tasks.claims.values().flatten().cloned().collect();
    for id in claimed {
        update(work, &id, |task| {
            task.lease_expires_at_ms = Some(now_ms + task.definition.timeout_ms)
        });
    }
}

// ----- apply -----

/// Removes `id` from every index that depends on its status, lease or auction.
fn unindex(work: &mut Work, id: &str) {
    let tasks = &mut work.tasks;
    let task = &tasks.by_id[id];
    super::bump(&mut tasks.status_counts, &task.status, false);
    if task.is_claimable() {
        let key = group_key(&task.definition);
        let group = tasks
            .pending
            .get_mut(&key)
            .expect("a claimable task has a pending group");
        let removed = group.queue.remove(&pending_entry(task));
        assert!(removed, "a claimable task is in its pending group");
        if group.queue.is_empty() {
            tasks.pending.remove(&key);
        }
    }
    if task.status == TaskStatus::Claimed {
        let agent = task.agent.as_ref().expect("a claimed task has a claimant");
        let held = tasks
            .claims
            .get_mut(agent)
            .expect("a claimant has a claims entry");
        held.remove(id);
        if held.is_empty() {
            tasks.claims.remove(agent);
        }
        if let Some(at_ms) = task.lease_expires_at_ms {
            work.timers.remove(&Timer {
                at_ms,
                kind: TimerKind::TaskLease,
                id: id.to_owned(),
            });
        }
    }
    if let Some(auction) = task
        .auction
        .as_ref()
        .filter(|auction| auction.status == AuctionStatus::Open)
    {
        work.timers.remove(&Timer {
            at_ms: auction.deadline_at_ms,
            kind: TimerKind::Auction,
            id: id.to_owned(),
        });
    }
}

/// Adds `id` back to every index its current status, lease and auction call for.
fn reindex(work: &mut Work, id: &str) {
    let tasks = &mut work.tasks;
    let task = &tasks.by_id[id];
    super::bump(&mut tasks.status_counts, &task.status, true);
    if task.is_claimable() {
        let group = tasks
            .pending
            .entry(group_key(&task.definition))
            .or_insert_with(|| PendingGroup {
                task_type: task.definition.task_type.clone(),
                capabilities: task.definition.capabilities.clone(),
                queue: BTreeSet::new(),
            });
        group.queue.insert(pending_entry(task));
    }
    if task.status == TaskStatus::Claimed {
        let agent = task.agent.clone().expect("a claimed task has a claimant");
        tasks.claims.entry(agent).or_default().insert(id.to_owned());
        let at_ms = task
            .lease_expires_at_ms
            .expect("a claimed task has a lease");
        work.timers.insert(Timer {
            at_ms,
            kind: TimerKind::TaskLease,
            id: id.to_owned(),
        });
    }
    if let Some(auction) = task
        .auction
        .as_ref()
        .filter(|auction| auction.status == AuctionStatus::Open)
    {
        work.timers.insert(Timer {
            at_ms: auction.deadline_at_ms,
            kind: TimerKind::Auction,
            id: id.to_owned(),
        });
    }
}

/// Changes task `id` with every index kept in step.
fn update(work: &mut Work, id: &str, change: impl FnOnce(&mut Task)) {
    unindex(work, id);
    change(work.tasks.by_id.get_mut(id).expect("updated tasks exist"));
    reindex(work, id);
}

/// The status a task has when it is not (or no longer) blocked by a dependency.
fn unblocked_status(task: &Task) -> TaskStatus {
    if task.definition.requires_approval && !task.approved {
        TaskStatus::AwaitingApproval
    } else {
        TaskStatus::Pending
    }
}

/// Folds a `task.*` event; false for an unknown `task.` type.
pub(super) fn apply(work: &mut Work, event: &Envelope, data: &Value) -> bool {
    let Some(id) = data.get("task").and_then(Value::as_str).map(str::to_owned) else {
        return is_known(&event.event_type);
    };
    if event.event_type == "task.created" {
        if let Some(created) = parse_data::<Created>(event, data) {
            create(work, event, created);
        }
    } else if !work.tasks.by_id.contains_key(&id) {
        return is_known(&event.event_type);
    } else if !apply_to_existing(work, event, data, &id) {
        return false;
    }
    if let Some(task) = work.tasks.by_id.get_mut(&id) {
        task.history.push(HistoryEntry {
            seq: event.seq,
            ts_ms: event.ts_ms,
            event_type: event.event_type.clone(),
            actor: event.actor.clone(),
        });
    }
    true
}

fn is_known(event_type: &str) -> bool {
    matches!(
        event_type,
        "task.created"
            | "task.approved"
            | "task.assigned"
            | "task.claimed"
            | "task.progressed"
            | "task.completed"
            | "task.failed"
            | "task.timed_out"
            | "task.released"
            | "task.cancelled"
            | "task.auction_opened"
            | "task.bid_placed"
            | "task.auction_awarded"
            | "task.auction_closed"
    )
}

fn create(work: &mut Work, event: &Envelope, created: Created) {
    let id = created.task;
    let tasks = &mut work.tasks;
    if tasks.by_id.contains_key(&id) {
        return; // The rules create a task once; a repeat changes nothing.
    }
    let session = created
        .definition
        .session
        .clone()
        .or_else(|| event.session.clone());
    let all_completed = created.definition.depends_on.iter().all(|dependency| {
        tasks
            .by_id
            .get(dependency)
            .is_some_and(|task| task.status == TaskStatus::Completed)
    });
    for dependency in &created.definition.depends_on {
        if let Some(task) = tasks.by_id.get_mut(dependency) {
            task.dependents.insert(id.clone());
        }
    }
    if let Some(session) = &session {
        tasks
            .by_session
            .entry(session.clone())
            .or_default()
            .insert(id.clone());
    }
    let mut task = Task {
        id: id.clone(),
        definition: created.definition,
        session,
        status: TaskStatus::Blocked,
        approved: false,
        attempt: 1,
        agent: None,
        lease_expires_at_ms: None,
        progress: None,
        result: None,
        error: None,
        cancel_reason: None,
        auction: None,
        created_seq: event.seq,
        created_at_ms: event.ts_ms,
        claimed_at_ms: None,
        finished_at_ms: None,
        dependents: BTreeSet::new(),
        history: Vec::new(),
    };
    if all_completed {
        task.status = unblocked_status(&task);
    }
    tasks.by_id.insert(id.clone(), task);
    reindex(work, &id);
}

/// Whether `event_type` fits a task in `task`'s current state. The rules only emit events
/// that fit; one that does not (say, two timers of different domains requeueing the same
/// claim at one instant) changes nothing but the task's history, so the state stays
/// consistent whatever the log holds.
fn fits(task: &Task, event_type: &str) -> bool {
    match event_type {
        "task.approved" | "task.cancelled" => !task.status.is_terminal(),
        "task.claimed" | "task.assigned" | "task.auction_opened" => task.is_claimable(),
        "task.auction_awarded" | "task.auction_closed" | "task.bid_placed" => {
            task.status == TaskStatus::Pending && task.auction_open()
        }
        "task.progressed" | "task.completed" | "task.failed" | "task.timed_out"
        | "task.released" => task.status == TaskStatus::Claimed,
        _ => true,
    }
}

fn apply_to_existing(work: &mut Work, event: &Envelope, data: &Value, id: &str) -> bool {
    let ts_ms = event.ts_ms;
    if !is_known(&event.event_type) {
        return false;
    }
    if !fits(&work.tasks.by_id[id], &event.event_type) {
        return true;
    }
    match event.event_type.as_str() {
        "task.approved" => update(work, id, |task| {
            task.approved = true;
            if task.status == TaskStatus::AwaitingApproval {
                task.status = TaskStatus::Pending;
            }
        }),
        "task.claimed" | "task.assigned" | "task.auction_awarded" => {
            let Some(claimed) = parse_data::<ClaimedData>(event, data) else {
                return true;
            };
            if event.event_type == "task.assigned"
                && claimed.strategy == Some(AssignStrategy::RoundRobin)
            {
                work.tasks.round_robin_last = Some(claimed.agent.clone());
            }
            let session = work.tasks.by_id[id].session.clone();
            let agent = claimed.agent.clone();
            let awarded = event.event_type == "task.auction_awarded";
            update(work, id, |task| {
                task.status = TaskStatus::Claimed;
                task.agent = Some(claimed.agent.clone());
                task.attempt = claimed.attempt;
                task.lease_expires_at_ms = Some(claimed.lease_expires_at);
                task.claimed_at_ms = Some(ts_ms);
                task.progress = None;
                if let Some(auction) = task.auction.as_mut().filter(|_| awarded) {
                    auction.status = AuctionStatus::Awarded;
                    auction.winner = Some(claimed.agent);
                }
            });
            if let Some(session) = session {
                super::sessions::note_agent(work, &session, &agent);
            }
        }
        "task.progressed" => {
            let Some(progressed) = parse_data::<ProgressedData>(event, data) else {
                return true;
            };
            update(work, id, |task| {
                task.progress = Some(Progress {
                    percent: progressed.percent,
                    note: progressed.note,
                });
                task.lease_expires_at_ms = Some(progressed.lease_expires_at);
            });
        }
        "task.completed" => {
            let Some(completed) = parse_data::<CompletedData>(event, data) else {
                return true;
            };
            update(work, id, |task| {
                task.status = TaskStatus::Completed;
                task.result = Some(completed.result);
                task.lease_expires_at_ms = None;
                task.finished_at_ms = Some(ts_ms);
            });
            let dependents: Vec<String> = work.tasks.by_id[id].dependents.iter().cloned().collect();
            for dependent in dependents {
                let tasks = &work.tasks;
                let task = &tasks.by_id[&dependent];
                let ready = task.status == TaskStatus::Blocked
                    && task
                        .definition
                        .depends_on
                        .iter()
                        .all(|other| tasks.by_id[other].status == TaskStatus::Completed);
                if ready {
                    update(work, &dependent, |task| {
                        task.status = unblocked_status(task)
                    });
                }
            }
        }
        "task.failed" | "task.timed_out" => {
            let Some(ended) = parse_data::<EndedData>(event, data) else {
                return true;
            };
            update(work, id, |task| {
                task.lease_expires_at_ms = None;
                if let Some(error) = ended.error {
                    task.error = Some(error);
                }
                if ended.is_final {
                    task.status = TaskStatus::Failed;
                    task.finished_at_ms = Some(ts_ms);
                } else {
                    task.status = TaskStatus::Pending;
                    task.agent = None;
                    task.attempt = ended.attempt + 1;
                    task.progress = None;
                }
            });
        }
        "task.released" => update(work, id, |task| {
            task.status = TaskStatus::Pending;
            task.agent = None;
            task.lease_expires_at_ms = None;
            task.progress = None;
        }),
        "task.cancelled" => {
            let Some(cancelled) = parse_data::<CancelledData>(event, data) else {
                return true;
            };
            update(work, id, |task| {
                task.status = TaskStatus::Cancelled;
                task.cancel_reason = Some(cancelled.reason);
                task.lease_expires_at_ms = None;
                task.finished_at_ms = Some(ts_ms);
                if let Some(auction) = task
                    .auction
                    .as_mut()
                    .filter(|auction| auction.status == AuctionStatus::Open)
                {
                    auction.status = AuctionStatus::Closed;
                }
            });
        }
        "task.auction_opened" => {
            let Some(opened) = parse_data::<AuctionOpenedData>(event, data) else {
                return true;
            };
            update(work, id, |task| {
                task.auction = Some(Auction {
                    status: AuctionStatus::Open,
                    deadline_at_ms: opened.deadline_at,
                    min_confidence: opened.min_confidence,
                    bids: BTreeMap::new(),
                    winner: None,
                });
            });
        }
        "task.bid_placed" => {
            let Some(bid) = parse_data::<BidData>(event, data) else {
                return true;
            };
            let task = work.tasks.by_id.get_mut(id).expect("checked above");
            if let Some(auction) = task.auction.as_mut() {
                auction.bids.insert(
                    bid.agent.clone(),
                    Bid {
                        agent: bid.agent,
                        price: bid.price,
                        estimated_ms: bid.estimated_ms,
                        confidence: bid.confidence,
                        score: bid.score,
                        seq: event.seq,
                    },
                );
            }
        }
        "task.auction_closed" => update(work, id, |task| {
            if let Some(auction) = task.auction.as_mut() {
                auction.status = AuctionStatus::Closed;
            }
        }),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::{claim, create, create_all, task_of, types, Harness};
    use super::super::WorkCommand;
    use super::*;
    use crate::rejection::RejectionKind;

    fn complete(task: &str, agent: &str) -> WorkCommand {
        WorkCommand::TaskComplete {
            task: task.into(),
            spec: CompleteSpec {
                agent: agent.into(),
                result: Some(json!("ok")),
            },
        }
    }

    fn fail(task: &str, agent: &str, retry: bool) -> WorkCommand {
        WorkCommand::TaskFail {
            task: task.into(),
            spec: FailSpec {
                agent: agent.into(),
                error: Some(json!("boom")),
                retry: Some(retry),
            },
        }
    }

    fn claimed_id(harness: &mut Harness, agent: &str, capabilities: &[&str]) -> Option<String> {
        let events = harness.ok(claim(agent, capabilities));
        assert!(events.len() <= 1, "a claim takes at most one task");
        events.first().map(task_of)
    }

    fn status(harness: &Harness, id: &str) -> TaskStatus {
        harness.task(id).status
    }

    fn invalid_field(rejection: &Rejection) -> &str {
        assert_eq!(rejection.kind, RejectionKind::Invalid, "{rejection:?}");
        assert!(
            matches!(rejection.code, Code::InvalidValue | Code::InvalidId),
            "{rejection:?}"
        );
        rejection.details["field"]
            .as_str()
            .expect("an invalid value or id names its field")
    }

    #[test]
    fn create_applies_defaults_and_the_view_shows_them() {
        let mut harness = Harness::new();
        let events = harness.ok(create(
            json!({"id": "a", "type": "build", "parameters": {"x": 1}}),
        ));
        assert_eq!(types(&events), ["task.created"]);
        assert_eq!(events[0].stream, "task/a");
        let task = harness.task("a");
        assert_eq!(task.status, TaskStatus::Pending);
        assert_eq!(task.attempt, 1);
        assert_eq!(task.definition.priority, PRIORITY_DEFAULT);
        assert_eq!(task.definition.max_attempts, MAX_ATTEMPTS_DEFAULT);
        assert_eq!(task.definition.timeout_ms, TIMEOUT_MS_DEFAULT);
        let view = task.view();
        assert_eq!(view["type"], json!("build"));
        assert_eq!(view["status"], json!("pending"));
        assert_eq!(view["parameters"], json!({"x": 1}));
        assert_eq!(view["history"][0]["type"], json!("task.created"));
        assert_eq!(view["history"][0]["seq"], json!(events[0].seq));
        assert_eq!(harness.work().tasks.count(TaskStatus::Pending), 1);
    }

    #[test]
    fn same_id_same_body_is_unchanged_and_another_body_conflicts() {
        let mut harness = Harness::new();
        harness.ok(create(json!({"id": "a", "type": "build"})));
        assert!(
            harness
                .ok(create(json!({"id": "a", "type": "build", "priority": 5})))
                .is_empty(),
            "defaults count as the same body"
        );
        let rejection = harness.err(create(json!({"id": "a", "type": "build", "priority": 7})));
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Conflict, "already_exists")
        );
        assert_eq!(rejection.details["id"], json!("a"));
    }

    #[test]
    fn invalid_values_name_their_field() {
        let mut harness = Harness::new();
        let cases = [
            (json!({"type": "t", "priority": 0}), "priority"),
            (json!({"type": "t", "priority": 11}), "priority"),
            (json!({"type": "t", "timeout_ms": 99}), "timeout_ms"),
            (json!({"type": "t", "max_attempts": 0}), "max_attempts"),
            (json!({"type": ""}), "type"),
            (json!({"type": "t", "id": "a\nb"}), "id"),
            (json!({"type": "t", "capabilities": [""]}), "capabilities"),
        ];
        for (spec, field) in cases {
            let rejection = harness.err(create(spec));
            assert_eq!(invalid_field(&rejection), field);
        }
        let rejection = harness.err(create_all(
            json!([{"type": "t"}, {"type": "t", "priority": 12}]),
        ));
        assert_eq!(invalid_field(&rejection), "tasks[1].priority");
        let rejection = harness.err(create_all(
            json!([{"id": "a", "type": "t"}, {"id": "a", "type": "t"}]),
        ));
        assert_eq!(invalid_field(&rejection), "tasks[1].id");
        let rejection = harness.err(WorkCommand::TaskCreate { tasks: Vec::new() });
        assert_eq!(invalid_field(&rejection), "tasks");
    }

    #[test]
    fn unknown_dependencies_and_cycles_are_refused() {
        let mut harness = Harness::new();
        let rejection = harness.err(create(
            json!({"id": "a", "type": "t", "depends_on": ["ghost"]}),
        ));
        assert_eq!(invalid_field(&rejection), "depends_on");
        assert_eq!(rejection.details["unknown"], json!(["ghost"]));
        let rejection = harness.err(create_all(json!([
            {"id": "a", "type": "t", "depends_on": ["c"]},
            {"id": "b", "type": "t", "depends_on": ["a"]},
            {"id": "c", "type": "t", "depends_on": ["b"]},
            {"id": "d", "type": "t"},
        ])));
        assert_eq!(invalid_field(&rejection), "depends_on");
        assert_eq!(rejection.details["cycle"], json!(["a", "c", "b", "a"]));
        let rejection = harness.err(create(json!({"id": "a", "type": "t", "depends_on": ["a"]})));
        assert_eq!(rejection.details["cycle"], json!(["a", "a"]));
        assert!(
            harness.work().tasks.by_id.is_empty(),
            "a refused batch creates nothing"
        );
    }

    #[test]
    fn a_batch_is_created_dependencies_first() {
        let mut harness = Harness::new();
        let events = harness.ok(create_all(json!([
            {"id": "edit", "type": "edit", "depends_on": ["write"]},
            {"id": "write", "type": "write", "depends_on": ["research"]},
            {"id": "research", "type": "research"},
        ])));
        let order: Vec<String> = events.iter().map(task_of).collect();
        assert_eq!(order, ["research", "write", "edit"]);
        assert_eq!(status(&harness, "research"), TaskStatus::Pending);
        assert_eq!(status(&harness, "write"), TaskStatus::Blocked);
        assert_eq!(status(&harness, "edit"), TaskStatus::Blocked);
        assert_eq!(
            harness.task("research").dependents,
            BTreeSet::from(["write".to_owned()])
        );
    }

    #[test]
    fn generated_ids_follow_the_count_and_skip_taken_ones() {
        let mut harness = Harness::new();
        let events = harness.ok(create(json!({"type": "t"})));
        assert_eq!(task_of(&events[0]), "T-1");
        harness.ok(create(json!({"id": "T-3", "type": "t"})));
        let events = harness.ok(create_all(
            json!([{"type": "t"}, {"type": "t"}, {"id": "T-4", "type": "t"}]),
        ));
        let ids: Vec<String> = events.iter().map(task_of).collect();
        assert_eq!(ids, ["T-5", "T-6", "T-4"]);
    }

    #[test]
    fn claims_take_the_most_urgent_then_the_oldest() {
        let mut harness = Harness::new();
        harness.ok(create_all(json!([
            {"id": "a", "type": "t", "priority": 5},
            {"id": "b", "type": "t", "priority": 9},
            {"id": "c", "type": "u", "priority": 5},
            {"id": "d", "type": "u", "priority": 9},
            {"id": "e", "type": "t", "priority": 1},
        ])));
        let order: Vec<String> = (0..5)
            .map(|_| claimed_id(&mut harness, "w", &[]).expect("a task"))
            .collect();
        assert_eq!(order, ["b", "d", "a", "c", "e"]);
        assert_eq!(
            claimed_id(&mut harness, "w", &[]),
            None,
            "nothing left: no events"
        );
        let task = harness.task("b");
        assert_eq!(task.status, TaskStatus::Claimed);
        assert_eq!(task.agent.as_deref(), Some("w"));
        assert_eq!(
            task.lease_expires_at_ms,
            Some(harness.now_ms + TIMEOUT_MS_DEFAULT)
        );
        assert_eq!(harness.work().tasks.load_of("w"), 5);
    }

    #[test]
    fn claims_respect_capabilities_and_types() {
        let mut harness = Harness::new();
        harness.ok(create_all(json!([
            {"id": "gpu", "type": "train", "priority": 10, "capabilities": ["gpu", "cuda"]},
            {"id": "plain", "type": "train", "priority": 1},
            {"id": "doc", "type": "write", "priority": 5},
        ])));
        let only_train = |agent: &str, capabilities: Option<Vec<String>>| {
            WorkCommand::TaskClaim(ClaimSpec {
                agent: agent.into(),
                capabilities,
                types: Some(vec!["train".into()]),
                wait_ms: None,
            })
        };
        let events = harness.ok(only_train("w1", Some(vec!["gpu".into()])));
        assert_eq!(
            task_of(&events[0]),
            "plain",
            "one of two capabilities is not enough"
        );
        harness.register_agent("w2", &["cuda", "gpu", "rust"]);
        let events = harness.ok(only_train("w2", None));
        assert_eq!(
            task_of(&events[0]),
            "gpu",
            "registered capabilities are used when none are given"
        );
        assert!(
            harness.ok(only_train("w3", None)).is_empty(),
            "no train task left"
        );
        assert_eq!(claimed_id(&mut harness, "w3", &[]).as_deref(), Some("doc"));
    }

    #[test]
    fn dependencies_gate_claims_until_they_complete() {
        let mut harness = Harness::new();
        harness.ok(create_all(json!([
            {"id": "research", "type": "t", "priority": 1},
            {"id": "write", "type": "t", "priority": 10, "depends_on": ["research"]},
        ])));
        assert_eq!(
            claimed_id(&mut harness, "w", &[]).as_deref(),
            Some("research")
        );
        assert_eq!(
            claimed_id(&mut harness, "w", &[]),
            None,
            "write waits for research"
        );
        harness.ok(complete("research", "w"));
        assert_eq!(status(&harness, "write"), TaskStatus::Pending);
        assert_eq!(claimed_id(&mut harness, "w", &[]).as_deref(), Some("write"));
        // A task created on a completed dependency is pending at once.
        harness.ok(create(
            json!({"id": "late", "type": "t", "depends_on": ["research"]}),
        ));
        assert_eq!(status(&harness, "late"), TaskStatus::Pending);
    }

    #[test]
    fn approval_gates_a_task_after_its_dependencies() {
        let mut harness = Harness::new();
        harness.ok(create_all(json!([
            {"id": "gate", "type": "t", "requires_approval": true},
            {"id": "dep", "type": "t"},
            {"id": "blocked", "type": "t", "requires_approval": true, "depends_on": ["dep"]},
        ])));
        assert_eq!(status(&harness, "gate"), TaskStatus::AwaitingApproval);
        assert_eq!(status(&harness, "blocked"), TaskStatus::Blocked);
        assert_eq!(claimed_id(&mut harness, "w", &[]).as_deref(), Some("dep"));
        assert_eq!(
            claimed_id(&mut harness, "w", &[]),
            None,
            "awaiting approval is not claimable"
        );
        let events = harness.ok(WorkCommand::TaskApprove {
            task: "gate".into(),
        });
        assert_eq!(types(&events), ["task.approved"]);
        assert_eq!(status(&harness, "gate"), TaskStatus::Pending);
        assert!(
            harness
                .ok(WorkCommand::TaskApprove {
                    task: "gate".into()
                })
                .is_empty(),
            "approving twice writes nothing"
        );
        harness.ok(complete("dep", "w"));
        assert_eq!(
            status(&harness, "blocked"),
            TaskStatus::AwaitingApproval,
            "dependencies first, then approval"
        );
        harness.ok(WorkCommand::TaskApprove {
            task: "blocked".into(),
        });
        assert_eq!(status(&harness, "blocked"), TaskStatus::Pending);
        let rejection = harness.err(WorkCommand::TaskApprove { task: "dep".into() });
        assert_eq!(rejection.code, "approval_not_required");
        let rejection = harness.err(WorkCommand::TaskApprove {
            task: "ghost".into(),
        });
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::NotFound, "not_found")
        );
    }

    /// Twelve agents claiming 2,400 tasks in turn: each task is claimed exactly once and
    /// each agent gets its 200.
    #[test]
    fn twelve_agents_claim_two_hundred_tasks_each_exactly_once() {
        let mut harness = Harness::new();
        for batch in 0..3 {
            let specs: Vec<TaskSpec> = (0..800)
                .map(|index| TaskSpec {
                    id: Some(format!("job-{batch}-{index}")),
                    task_type: "job".into(),
                    priority: Some(1 + (index % 10)),
                    ..TaskSpec::default()
                })
                .collect();
            harness.ok(WorkCommand::TaskCreate { tasks: specs });
        }
        let agents: Vec<String> = (0..12).map(|index| format!("agent-{index}")).collect();
        let mut claimed: BTreeMap<String, String> = BTreeMap::new();
        let mut per_agent: BTreeMap<&str, usize> = BTreeMap::new();
        let mut previous_priority = PRIORITY_MAX;
        'claiming: loop {
            for agent in &agents {
                let Some(id) = claimed_id(&mut harness, agent, &[]) else {
                    break 'claiming;
                };
                let priority = harness.task(&id).definition.priority;
                assert!(
                    priority <= previous_priority,
                    "claims never go back to a more urgent priority"
                );
                previous_priority = priority;
                assert!(
                    claimed.insert(id.clone(), agent.clone()).is_none(),
                    "task {id} claimed twice"
                );
                *per_agent.entry(agent).or_default() += 1;
            }
        }
        assert_eq!(claimed.len(), 2400);
        assert!(
            per_agent.values().all(|&count| count == 200),
            "{per_agent:?}"
        );
        for (id, agent) in &claimed {
            assert_eq!(harness.task(id).agent.as_ref(), Some(agent));
        }
        assert_eq!(harness.work().tasks.claimable_count(), 0);
        assert_eq!(harness.work().tasks.count(TaskStatus::Claimed), 2400);
    }

    #[test]
    fn an_expired_lease_retries_then_fails_and_cancels_dependents() {
        let mut harness = Harness::new();
        harness.ok(create_all(json!([
            {"id": "a", "type": "t", "timeout_ms": 1000, "max_attempts": 2},
            {"id": "b", "type": "t", "depends_on": ["a"]},
            {"id": "c", "type": "t", "depends_on": ["b"]},
        ])));
        harness.ok(claim("w1", &[]));
        assert_eq!(
            super::super::next_deadline(harness.branch()),
            Some(harness.now_ms + 1000)
        );
        assert!(harness.advance(999).is_empty(), "the lease still holds");
        let fired = harness.advance(1);
        assert_eq!(types(&fired), ["task.timed_out"]);
        assert_eq!(fired[0].actor, "system");
        assert_eq!(fired[0].data_value()["final"], json!(false));
        let task = harness.task("a");
        assert_eq!(
            (task.status, task.attempt, task.agent.as_deref()),
            (TaskStatus::Pending, 2, None)
        );
        let events = harness.ok(claim("w2", &[]));
        assert_eq!(events[0].data_value()["attempt"], json!(2));
        let fired = harness.advance(1000);
        assert_eq!(
            types(&fired),
            ["task.timed_out", "task.cancelled", "task.cancelled"]
        );
        assert_eq!(fired[0].data_value()["final"], json!(true));
        assert_eq!(
            fired[1].data_value(),
            json!({"task": "b", "reason": "dependency_failed", "dependency": "a"})
        );
        assert_eq!(
            fired[2].data_value(),
            json!({"task": "c", "reason": "dependency_cancelled", "dependency": "b"})
        );
        assert_eq!(status(&harness, "a"), TaskStatus::Failed);
        assert_eq!(status(&harness, "c"), TaskStatus::Cancelled);
        assert_eq!(super::super::next_deadline(harness.branch()), None);
    }

    #[test]
    fn progress_renews_the_lease() {
        let mut harness = Harness::new();
        harness.ok(create(json!({"id": "a", "type": "t", "timeout_ms": 1000})));
        harness.ok(claim("w", &[]));
        harness.advance(800);
        let progress = |percent: f64| WorkCommand::TaskProgress {
            task: "a".into(),
            spec: ProgressSpec {
                agent: "w".into(),
                percent,
                note: Some("half".into()),
            },
        };
        harness.ok(progress(50.0));
        assert_eq!(
            harness.task("a").lease_expires_at_ms,
            Some(harness.now_ms + 1000)
        );
        assert!(
            harness.advance(900).is_empty(),
            "renewed at 800, so it holds until 1800"
        );
        assert_eq!(
            harness.task("a").progress,
            Some(Progress {
                percent: 50.0,
                note: Some("half".into())
            })
        );
        let rejection = harness.err(progress(101.0));
        assert_eq!(invalid_field(&rejection), "percent");
        assert_eq!(types(&harness.advance(100)), ["task.timed_out"]);
    }

    #[test]
    fn only_the_claimant_may_progress_complete_fail_or_release() {
        let mut harness = Harness::new();
        harness.ok(create_all(
            json!([{"id": "a", "type": "t"}, {"id": "b", "type": "t"}]),
        ));
        harness.ok(claim("owner", &[]));
        let intruder_commands = [
            complete("a", "intruder"),
            fail("a", "intruder", false),
            WorkCommand::TaskRelease {
                task: "a".into(),
                spec: ReleaseSpec {
                    agent: "intruder".into(),
                },
            },
            WorkCommand::TaskProgress {
                task: "a".into(),
                spec: ProgressSpec {
                    agent: "intruder".into(),
                    percent: 1.0,
                    note: None,
                },
            },
        ];
        for command in intruder_commands {
            let rejection = harness.err(command);
            assert_eq!(
                (rejection.kind, rejection.code.as_str()),
                (RejectionKind::Conflict, "not_claimant")
            );
            assert_eq!(rejection.details["claimant"], json!("owner"));
        }
        let rejection = harness.err(complete("b", "owner"));
        assert_eq!(
            rejection.code, "not_claimant",
            "b is pending: nobody holds it"
        );
        assert_eq!(rejection.details["claimant"], Value::Null);
        assert_eq!(rejection.details["status"], json!("pending"));
        let rejection = harness.err(complete("ghost", "owner"));
        assert_eq!(rejection.kind, RejectionKind::NotFound);
        harness.ok(complete("a", "owner"));
        assert_eq!(harness.task("a").result, Some(json!("ok")));
        assert_eq!(
            harness.err(complete("a", "owner")).code.as_str(),
            "not_claimant",
            "completing twice"
        );
    }

    #[test]
    fn fail_with_retry_requeues_until_the_last_attempt() {
        let mut harness = Harness::new();
        harness.ok(create_all(json!([
            {"id": "a", "type": "t", "max_attempts": 2},
            {"id": "b", "type": "t"},
        ])));
        harness.ok(claim("w", &[]));
        let events = harness.ok(fail("a", "w", true));
        assert_eq!(events[0].data_value()["final"], json!(false));
        let task = harness.task("a");
        assert_eq!((task.status, task.attempt), (TaskStatus::Pending, 2));
        assert_eq!(task.error, Some(json!("boom")));
        assert_eq!(claimed_id(&mut harness, "w", &[]).as_deref(), Some("a"));
        harness.ok(fail("a", "w", true));
        assert_eq!(
            status(&harness, "a"),
            TaskStatus::Failed,
            "no attempts left"
        );
        assert_eq!(claimed_id(&mut harness, "w", &[]).as_deref(), Some("b"));
        harness.ok(fail("b", "w", false));
        assert_eq!(status(&harness, "b"), TaskStatus::Failed, "no retry asked");
        assert_eq!(harness.task("b").attempt, 1);
    }

    #[test]
    fn release_puts_the_task_back_with_the_same_attempt() {
        let mut harness = Harness::new();
        harness.ok(create(json!({"id": "a", "type": "t"})));
        harness.ok(claim("w1", &[]));
        let events = harness.ok(WorkCommand::TaskRelease {
            task: "a".into(),
            spec: ReleaseSpec { agent: "w1".into() },
        });
        assert_eq!(types(&events), ["task.released"]);
        let task = harness.task("a");
        assert_eq!(
            (task.status, task.attempt, task.lease_expires_at_ms),
            (TaskStatus::Pending, 1, None)
        );
        assert_eq!(claimed_id(&mut harness, "w2", &[]).as_deref(), Some("a"));
        assert_eq!(harness.work().tasks.load_of("w1"), 0);
    }

    #[test]
    fn cancellation_propagates_to_every_dependent() {
        let mut harness = Harness::new();
        harness.ok(create_all(json!([
            {"id": "a", "type": "t"},
            {"id": "b", "type": "t", "depends_on": ["a"]},
            {"id": "d", "type": "t", "depends_on": ["a"]},
            {"id": "c", "type": "t", "depends_on": ["b", "d"]},
            {"id": "other", "type": "t"},
        ])));
        harness.ok(claim("w", &[]));
        let events = harness.ok(WorkCommand::TaskCancel {
            task: "a".into(),
            spec: CancelSpec::default(),
        });
        let cancelled: Vec<String> = events.iter().map(task_of).collect();
        assert_eq!(cancelled, ["a", "b", "d", "c"]);
        assert_eq!(events[0].data_value()["reason"], json!("cancelled"));
        assert_eq!(
            events[1].data_value()["reason"],
            json!("dependency_cancelled")
        );
        for id in ["a", "b", "c", "d"] {
            assert_eq!(status(&harness, id), TaskStatus::Cancelled, "{id}");
        }
        assert_eq!(status(&harness, "other"), TaskStatus::Pending);
        assert_eq!(
            harness.work().tasks.load_of("w"),
            0,
            "cancelling a claimed task frees it"
        );
        assert!(harness
            .ok(WorkCommand::TaskCancel {
                task: "a".into(),
                spec: CancelSpec::default()
            })
            .is_empty());
        // A new task on a cancelled dependency is created cancelled.
        let events = harness.ok(create(
            json!({"id": "late", "type": "t", "depends_on": ["c"]}),
        ));
        assert_eq!(types(&events), ["task.created", "task.cancelled"]);
        assert_eq!(status(&harness, "late"), TaskStatus::Cancelled);
        harness.ok(claim("w", &[]));
        harness.ok(complete("other", "w"));
        let rejection = harness.err(WorkCommand::TaskCancel {
            task: "other".into(),
            spec: CancelSpec::default(),
        });
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Conflict, "invalid_status")
        );
    }

    fn assign(task: &str, agent: Option<&str>, strategy: Option<&str>) -> WorkCommand {
        WorkCommand::TaskAssign {
            task: task.into(),
            spec: AssignSpec {
                agent: agent.map(str::to_owned),
                strategy: strategy.map(str::to_owned),
            },
        }
    }

    #[test]
    fn assign_to_a_named_agent_claims_for_it() {
        let mut harness = Harness::new();
        harness.ok(create_all(
            json!([{"id": "a", "type": "t"}, {"id": "b", "type": "t"}]),
        ));
        let events = harness.ok(assign("a", Some("w"), None));
        assert_eq!(types(&events), ["task.assigned"]);
        let task = harness.task("a");
        assert_eq!(
            (task.status, task.agent.as_deref()),
            (TaskStatus::Claimed, Some("w"))
        );
        assert_eq!(
            harness.err(assign("a", Some("w"), None)).code.as_str(),
            "invalid_status"
        );
        assert_eq!(
            invalid_field(&harness.err(assign("b", None, None))),
            "agent"
        );
        assert_eq!(
            invalid_field(&harness.err(assign("b", Some("w"), Some("round_robin")))),
            "agent"
        );
        assert_eq!(
            invalid_field(&harness.err(assign("b", None, Some("random")))),
            "strategy"
        );
        harness.register_agent("dead", &[]);
        harness.kill_agent("dead");
        assert_eq!(
            harness.err(assign("b", Some("dead"), None)).code.as_str(),
            "agent_not_active"
        );
    }

    #[test]
    fn assign_strategies_pick_among_capable_active_agents() {
        let mut harness = Harness::new();
        let specs: Vec<Value> = (0..8)
            .map(|index| json!({"id": format!("t{index}"), "type": "t"}))
            .collect();
        harness.ok(create_all(Value::Array(specs)));
        harness.ok(create(
            json!({"id": "gpu", "type": "t", "capabilities": ["gpu"]}),
        ));
        harness.ok(create(
            json!({"id": "nobody", "type": "t", "capabilities": ["quantum"]}),
        ));
        harness.register_agent("a", &["gpu", "rust", "python"]);
        harness.register_agent("b", &[]);
        harness.register_agent("c", &["gpu"]);
        harness.register_agent("d", &[]);
        harness.kill_agent("d");
        let mut picked = Vec::new();
        for index in 0..4 {
            let events = harness.ok(assign(&format!("t{index}"), None, Some("round_robin")));
            assert_eq!(events[0].data_value()["strategy"], json!("round_robin"));
            picked.push(
                harness
                    .task(&format!("t{index}"))
                    .agent
                    .clone()
                    .expect("assigned"),
            );
        }
        assert_eq!(
            picked,
            ["a", "b", "c", "a"],
            "round robin in id order, skipping the killed agent"
        );
        // Loads now: a 2, b 1, c 1.
        harness.ok(assign("t4", None, Some("least_loaded")));
        assert_eq!(
            harness.task("t4").agent.as_deref(),
            Some("b"),
            "b and c hold one each; b sorts first"
        );
        harness.ok(assign("t5", None, Some("least_loaded")));
        assert_eq!(harness.task("t5").agent.as_deref(), Some("c"));
        harness.ok(assign("gpu", None, Some("capability")));
        assert_eq!(
            harness.task("gpu").agent.as_deref(),
            Some("c"),
            "the most specialised gpu agent"
        );
        let rejection = harness.err(assign("nobody", None, Some("least_loaded")));
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Conflict, "no_eligible_agent")
        );
    }

    fn bid(task: &str, agent: &str, price: f64, estimated_ms: i64, confidence: f64) -> WorkCommand {
        WorkCommand::BidPlace {
            task: task.into(),
            spec: BidSpec {
                agent: agent.into(),
                price,
                estimated_ms,
                confidence,
            },
        }
    }

    fn auction(task: &str, deadline_ms: i64, min_confidence: Option<f64>) -> WorkCommand {
        WorkCommand::AuctionOpen {
            task: task.into(),
            spec: AuctionSpec {
                deadline_ms,
                min_confidence,
            },
        }
    }

    #[test]
    fn the_best_valid_bid_wins_the_auction_and_claims_the_task() {
        let mut harness = Harness::new();
        harness.ok(create(json!({"id": "a", "type": "t", "timeout_ms": 60000})));
        harness.ok(auction("a", 5000, Some(0.5)));
        assert_eq!(
            claimed_id(&mut harness, "w", &[]),
            None,
            "an auctioned task is not claimable"
        );
        assert_eq!(
            harness.err(assign("a", Some("w"), None)).code.as_str(),
            "auction_open"
        );
        // Scores: cheap 0.4*10/100 + 0.3*0.5 - 0.3*0.8 = -0.05; slow 0.4*0.1 + 0.3*2 - 0.27 = 0.37;
        // unsure has the best score but is below min_confidence.
        harness.ok(bid("a", "cheap", 10.0, 1_800_000, 0.8));
        harness.ok(bid("a", "slow", 10.0, 7_200_000, 0.9));
        harness.ok(bid("a", "unsure", 0.0, 0, 0.4));
        let scores: Vec<f64> = harness
            .task("a")
            .auction
            .as_ref()
            .expect("open")
            .bids
            .values()
            .map(|bid| bid.score)
            .collect();
        assert!((scores[0] - (-0.05)).abs() < 1e-12, "{scores:?}");
        assert_eq!(
            invalid_field(&harness.err(bid("a", "x", -1.0, 0, 0.5))),
            "price"
        );
        assert_eq!(
            invalid_field(&harness.err(bid("a", "x", 1.0, 0, 1.5))),
            "confidence"
        );
        let fired = harness.advance(5000);
        assert_eq!(types(&fired), ["task.auction_awarded"]);
        assert_eq!(fired[0].data_value()["agent"], json!("cheap"));
        let task = harness.task("a");
        assert_eq!(
            (task.status, task.agent.as_deref()),
            (TaskStatus::Claimed, Some("cheap"))
        );
        assert_eq!(task.lease_expires_at_ms, Some(harness.now_ms + 60000));
        assert_eq!(
            task.auction.as_ref().map(|auction| auction.status),
            Some(AuctionStatus::Awarded)
        );
        assert_eq!(
            harness.err(bid("a", "late", 1.0, 1, 0.9)).code.as_str(),
            "auction_closed"
        );
    }

    #[test]
    fn an_auction_without_a_valid_bid_leaves_the_task_pending() {
        let mut harness = Harness::new();
        harness.ok(create(
            json!({"id": "a", "type": "t", "capabilities": ["gpu"]}),
        ));
        harness.ok(auction("a", 1000, Some(0.9)));
        assert_eq!(harness.err(auction("a", 1000, None)).code, "auction_open");
        let rejection = harness.err(bid("a", "cpu-only", 1.0, 1, 0.95));
        assert_eq!(rejection.code, "missing_capabilities");
        harness.register_agent("g", &["gpu"]);
        harness.ok(bid("a", "g", 1.0, 1, 0.5));
        harness.ok(bid("a", "g", 1.0, 1, 0.6));
        assert_eq!(
            harness.task("a").auction.as_ref().expect("open").bids.len(),
            1,
            "a later bid replaces the earlier"
        );
        let fired = harness.advance(1000);
        assert_eq!(types(&fired), ["task.auction_closed"]);
        assert_eq!(fired[0].data_value()["bids"], json!(1));
        assert_eq!(status(&harness, "a"), TaskStatus::Pending);
        assert_eq!(
            claimed_id(&mut harness, "g", &[]).as_deref(),
            None,
            "explicit capabilities replace the registered ones"
        );
        assert_eq!(
            claimed_id(&mut harness, "x", &["gpu"]).as_deref(),
            Some("a"),
            "claimable again"
        );
        assert_eq!(harness.err(auction("a", 1000, None)).code, "invalid_status");
    }

    #[test]
    fn a_killed_agents_claims_go_back_to_pending() {
        let mut harness = Harness::new();
        harness.register_agent("w", &[]);
        harness.ok(create_all(
            json!([{"id": "a", "type": "t"}, {"id": "b", "type": "t"}, {"id": "c", "type": "t"}]),
        ));
        harness.ok(claim("w", &[]));
        harness.ok(claim("w", &[]));
        let events = harness.kill_agent("w");
        assert_eq!(
            types(&events),
            ["agent.killed", "task.released", "task.released"]
        );
        assert_eq!(events[1].actor, "system");
        for id in ["a", "b"] {
            let task = harness.task(id);
            assert_eq!(
                (task.status, task.attempt, task.agent.as_deref()),
                (TaskStatus::Pending, 1, None)
            );
        }
        assert_eq!(harness.work().tasks.load_of("w"), 0);
        assert!(super::super::requeue_claims_of(harness.branch(), "w", "agent_expired").is_empty());
    }

    #[test]
    fn list_filters_and_history() {
        let mut harness = Harness::new();
        harness.ok(create_all(json!([
            {"id": "a", "type": "t", "session": "s1"},
            {"id": "b", "type": "u", "session": "s1"},
            {"id": "c", "type": "t"},
        ])));
        harness.ok(claim("w", &[]));
        harness.ok(complete("a", "w"));
        let ids = |filter: TaskFilter, harness: &Harness| -> Vec<String> {
            harness
                .work()
                .tasks
                .list(&filter)
                .into_iter()
                .map(|task| task.id.clone())
                .collect()
        };
        assert_eq!(ids(TaskFilter::default(), &harness), ["a", "b", "c"]);
        assert_eq!(
            ids(
                TaskFilter {
                    session: Some("s1".into()),
                    ..TaskFilter::default()
                },
                &harness
            ),
            ["a", "b"]
        );
        assert_eq!(
            ids(
                TaskFilter {
                    task_type: Some("t".into()),
                    ..TaskFilter::default()
                },
                &harness
            ),
            ["a", "c"]
        );
        assert_eq!(
            ids(
                TaskFilter {
                    agent: Some("w".into()),
                    ..TaskFilter::default()
                },
                &harness
            ),
            ["a"]
        );
        assert_eq!(
            ids(
                TaskFilter {
                    status: Some(TaskStatus::Pending),
                    ..TaskFilter::default()
                },
                &harness
            ),
            ["b", "c"]
        );
        let history: Vec<&str> = harness
            .task("a")
            .history
            .iter()
            .map(|entry| entry.event_type.as_str())
            .collect();
        assert_eq!(history, ["task.created", "task.claimed", "task.completed"]);
        assert_eq!(
            TaskStatus::parse("awaiting_approval"),
            Some(TaskStatus::AwaitingApproval)
        );
        assert_eq!(TaskStatus::parse("nope"), None);
    }

    #[test]
    fn restart_gives_claimed_tasks_their_full_lease_again() {
        let mut harness = Harness::new();
        harness.ok(create(json!({"id": "a", "type": "t", "timeout_ms": 1000})));
        harness.ok(claim("w", &[]));
        harness.now_ms += 5000;
        let now_ms = harness.now_ms;
        super::super::restart_leases(
            harness.state.branches.get_mut("main").expect("main"),
            now_ms,
        );
        assert_eq!(harness.task("a").lease_expires_at_ms, Some(now_ms + 1000));
        assert_eq!(
            super::super::next_deadline(harness.branch()),
            Some(now_ms + 1000)
        );
        assert!(harness.fire_due().is_empty());
    }
}
