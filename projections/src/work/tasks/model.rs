//! The task entities as the state holds them: [`Task`] with its status, history and
//! auction, and [`Tasks`], every task of a branch with the indexes the rules keep. Data
//! only: deciding lives in `decide`, folding in `apply`, the claim order in `claim_index`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::TaskDefinition;

/// The status of a task.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
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
    #[serde(default)]
    pub winner: Option<String>,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The id.
    pub id: String,
    /// What was created.
    pub definition: TaskDefinition,
    /// The session: the definition's, else the creating write's.
    #[serde(default)]
    pub session: Option<String>,
    /// The status.
    pub status: TaskStatus,
    /// Whether `approve` was given.
    pub approved: bool,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// The claimant while claimed; after it ends, the agent of the last attempt.
    #[serde(default)]
    pub agent: Option<String>,
    /// When the claim lease runs out, while claimed.
    #[serde(default)]
    pub lease_expires_at_ms: Option<i64>,
    /// The last progress of the current attempt (as JSON text in a binary format, like
    /// the definition).
    #[serde(default, with = "crate::binary_serde::json_text::option")]
    pub progress: Option<Progress>,
    /// The result, once completed (JSON `null` when `complete` gave none).
    #[serde(default, with = "crate::binary_serde::json_text::option")]
    pub result: Option<Value>,
    /// The last error reported by `fail`.
    #[serde(default, with = "crate::binary_serde::json_text::option")]
    pub error: Option<Value>,
    /// Why it was cancelled.
    #[serde(default)]
    pub cancel_reason: Option<String>,
    /// The last auction.
    #[serde(default)]
    pub auction: Option<Auction>,
    /// The seq of `task.created` (the age order of claims).
    pub created_seq: u64,
    /// When it was created.
    pub created_at_ms: i64,
    /// When the current or last attempt was claimed.
    #[serde(default)]
    pub claimed_at_ms: Option<i64>,
    /// When it completed, failed for good or was cancelled.
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
    /// Tasks that depend on this one.
    pub dependents: BTreeSet<String>,
    /// The events of its stream.
    pub history: Vec<HistoryEntry>,
}

impl Task {
    /// The agent that created the task: the actor of its `task.created`, the first entry of
    /// its history.
    pub fn creator(&self) -> Option<&str> {
        self.history
            .first()
            .filter(|entry| entry.event_type == "task.created")
            .map(|entry| entry.actor.as_str())
    }

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
    #[serde(default)]
    pub round_robin_last: Option<String>,
}

impl Tasks {
    /// The task `id`.
    pub fn get(&self, id: &str) -> Option<&Task> {
        self.by_id.get(id)
    }

    /// How many tasks have `status`.
    pub fn count(&self, status: TaskStatus) -> u64 {
        self.status_counts.get(&status).copied().unwrap_or(0)
    }

    /// How many tasks `agent` holds claimed.
    pub fn load_of(&self, agent: &str) -> usize {
        self.claims.get(agent).map_or(0, BTreeSet::len)
    }
}
