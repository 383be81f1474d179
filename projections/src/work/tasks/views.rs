//! The JSON views of tasks for the HTTP API, and the filtered listing of
//! `GET /v1/tasks`. Read-only: nothing here decides or changes state.

use serde_json::{json, Map, Value};

use super::model::{Auction, Task, TaskStatus, Tasks};
use crate::work::format_instant;

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

impl Task {
    /// The task as the HTTP API shows it.
    pub fn view(&self) -> Value {
        let mut out = Map::new();
        self.insert_definition(&mut out);
        self.insert_attempt(&mut out);
        if let Some(auction) = &self.auction {
            out.insert("auction".into(), auction_view(auction));
        }
        self.insert_times_and_history(&mut out);
        Value::Object(out)
    }

    /// The id, status and what was created: type, title, priority, dependencies,
    /// capabilities, parameters, lease, attempts and the approval gate.
    fn insert_definition(&self, out: &mut Map<String, Value>) {
        let definition = &self.definition;
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
    }

    /// The session and the current or last attempt: its agent, lease, progress and end.
    fn insert_attempt(&self, out: &mut Map<String, Value>) {
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
    }

    /// When it was created, claimed and finished, its dependents and its history.
    fn insert_times_and_history(&self, out: &mut Map<String, Value>) {
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
    }
}

/// An auction as the task view shows it: status, deadline, bids and winner.
fn auction_view(auction: &Auction) -> Value {
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
    view
}

impl Tasks {
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::work::testkit::{claim, create, create_all, types, Harness};

    use super::super::testing::*;
    use super::*;
    use crate::work::tasks::*;

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
}
