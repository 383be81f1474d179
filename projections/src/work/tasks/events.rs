//! The `data` of every task event, as the rules write it and `apply` reads it back, and
//! the helpers that make a draft on a task's stream. One shape per event, shared by both
//! sides, so that what is written is exactly what is folded.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::{AssignStrategy, TaskDefinition};
use crate::envelope::EventDraft;

#[derive(Serialize, Deserialize)]
pub(super) struct Created {
    pub(super) task: String,
    #[serde(flatten)]
    pub(super) definition: TaskDefinition,
}

#[derive(Serialize, Deserialize)]
pub(super) struct TaskOnly {
    pub(super) task: String,
}

/// `task.claimed`, `task.assigned` and `task.auction_awarded`.
#[derive(Serialize, Deserialize)]
pub(super) struct ClaimedData {
    pub(super) task: String,
    pub(super) agent: String,
    pub(super) attempt: u32,
    #[serde(with = "crate::work::instant")]
    pub(super) lease_expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) strategy: Option<AssignStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) estimated_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) score: Option<f64>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ProgressedData {
    pub(super) task: String,
    pub(super) agent: String,
    pub(super) percent: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) note: Option<String>,
    #[serde(with = "crate::work::instant")]
    pub(super) lease_expires_at: i64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct CompletedData {
    pub(super) task: String,
    pub(super) agent: String,
    #[serde(default)]
    pub(super) result: Value,
}

/// `task.failed` and `task.timed_out`: attempt `attempt` ended; `final` says whether the
/// task failed for good or goes back to pending with `attempt + 1`.
#[derive(Serialize, Deserialize)]
pub(super) struct EndedData {
    pub(super) task: String,
    pub(super) agent: String,
    pub(super) attempt: u32,
    #[serde(rename = "final")]
    pub(super) is_final: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) retry: Option<bool>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ReleasedData {
    pub(super) task: String,
    pub(super) agent: String,
    pub(super) reason: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct CancelledData {
    pub(super) task: String,
    pub(super) reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) dependency: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct AuctionOpenedData {
    pub(super) task: String,
    #[serde(with = "crate::work::instant")]
    pub(super) deadline_at: i64,
    pub(super) min_confidence: f64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct BidData {
    pub(super) task: String,
    pub(super) agent: String,
    pub(super) price: f64,
    pub(super) estimated_ms: i64,
    pub(super) confidence: f64,
    pub(super) score: f64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct AuctionClosedData {
    pub(super) task: String,
    pub(super) reason: String,
    pub(super) bids: usize,
}

pub(super) fn draft(event_type: &str, task: &str, data: impl Serialize) -> EventDraft {
    EventDraft::new(
        event_type,
        format!("task/{task}"),
        serde_json::to_value(data).expect("event data serializes"),
    )
}

pub(super) fn system_draft(event_type: &str, task: &str, data: impl Serialize) -> EventDraft {
    EventDraft::system(
        event_type,
        format!("task/{task}"),
        serde_json::to_value(data).expect("event data serializes"),
    )
}
