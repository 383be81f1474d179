//! Sessions and reports (SPEC §3 "Sessions and reports"): a session groups the work of one
//! operation; its view shows who took part and how far its tasks are, and its report sums
//! them up, all computed from the state alone.
//!
//! A task belongs to a session through its `session` field (or the session of the write
//! that created it). A session's agents are the agents that claimed its tasks, reported
//! findings in it, or made any write of this domain carrying the session; they are
//! recorded even before `session.started`, so the order of events does not matter.
//!
//! The report:
//! - `by_task`: per task, its `type`, `status`, `agent` (of the last attempt), `attempt`,
//!   `duration_ms` (from the last claim to completion or failure), `result`, `error`;
//! - `by_agent`: per agent of a last attempt, the ids of those `tasks`, how many it
//!   `completed`, `failed` and holds `in_progress`, and `total_task_ms` and `avg_task_ms`
//!   over its completed tasks;
//! - `summary`: `total_tasks`, `completed_tasks`, `failed_tasks`, `success_rate` =
//!   completed over total (0 without tasks), `avg_task_ms` = mean claim-to-completion time
//!   of the completed tasks (0 without any), and `agents_used` = the number of agents in
//!   `by_agent`.

use crate::rejection::Code;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    already_exists, check_id, conflict, format_instant, generate_id, invalid, not_found,
    parse_data, TaskStatus, Work, WorkBranch,
};
use crate::envelope::{Envelope, EventDraft, SYSTEM_ACTOR};
use crate::rejection::Rejection;

/// The body of `POST /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// The id; generated (`S-<n>`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the session is for (`investigate-inc-1234`, ...).
    pub operation: String,
    /// Free-form context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}

/// The body of `POST /v1/sessions/{id}/complete`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionCompleteSpec {
    /// How it ended (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Value>,
}

/// Whether a session is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Started, not completed.
    Active,
    /// Completed.
    Completed,
}

/// A session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkSession {
    /// The id.
    pub id: String,
    /// What it is for.
    pub operation: String,
    /// Free-form context.
    #[serde(default, with = "crate::binary_serde::json_text::option")]
    pub context: Option<Value>,
    /// Active or completed.
    pub status: SessionStatus,
    /// How it ended.
    #[serde(default, with = "crate::binary_serde::json_text::option")]
    pub outcome: Option<Value>,
    /// Who started it.
    pub started_by: String,
    /// When it started.
    pub started_at_ms: i64,
    /// When it completed.
    #[serde(default)]
    pub completed_at_ms: Option<i64>,
    /// The seq of `session.started`.
    pub seq: u64,
}

/// One task's line in a [`SessionReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskReport {
    /// The task type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// The status.
    pub status: TaskStatus,
    /// The agent of the last attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The attempt.
    pub attempt: u32,
    /// Last claim to completion or failure, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// The result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// One agent's line in a [`SessionReport`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentReport {
    /// The tasks whose last attempt was this agent's.
    pub tasks: Vec<String>,
    /// How many of them it completed.
    pub completed: u64,
    /// How many of them failed for good.
    pub failed: u64,
    /// How many it holds claimed now.
    pub in_progress: u64,
    /// Sum of claim-to-completion times of its completed tasks, ms.
    pub total_task_ms: i64,
    /// Their mean, ms (0 without completed tasks).
    pub avg_task_ms: f64,
}

/// The `summary` of a [`SessionReport`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReportSummary {
    /// Tasks of the session.
    pub total_tasks: u64,
    /// Completed ones.
    pub completed_tasks: u64,
    /// Failed ones.
    pub failed_tasks: u64,
    /// Completed over total (0 without tasks).
    pub success_rate: f64,
    /// Mean claim-to-completion time of completed tasks, ms (0 without any).
    pub avg_task_ms: f64,
    /// Agents in `by_agent`.
    pub agents_used: u64,
}

/// `GET /v1/sessions/{id}/report`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionReport {
    /// Per agent.
    pub by_agent: BTreeMap<String, AgentReport>,
    /// Per task.
    pub by_task: BTreeMap<String, TaskReport>,
    /// Totals.
    pub summary: ReportSummary,
}

/// The sessions of a branch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sessions {
    /// Sessions by id.
    pub by_id: BTreeMap<String, WorkSession>,
    /// The agents seen per session id (started or not yet).
    pub participants: BTreeMap<String, BTreeSet<String>>,
}

impl Work {
    /// The session `id`.
    pub fn session(&self, id: &str) -> Option<&WorkSession> {
        self.sessions.by_id.get(id)
    }

    /// The session as `GET /v1/sessions/{id}` shows it: with its `agents`, `total_tasks`,
    /// `completed_tasks` and `progress_percent` (completed over all its tasks × 100; 0
    /// without tasks).
    pub fn session_view(&self, id: &str) -> Option<Value> {
        let session = self.sessions.by_id.get(id)?;
        let (total, completed) = self.session_counts(id);
        let mut out = Map::new();
        out.insert("id".into(), json!(session.id));
        out.insert("operation".into(), json!(session.operation));
        if let Some(context) = &session.context {
            out.insert("context".into(), context.clone());
        }
        out.insert("status".into(), json!(session.status));
        if let Some(outcome) = &session.outcome {
            out.insert("outcome".into(), outcome.clone());
        }
        out.insert("started_by".into(), json!(session.started_by));
        out.insert(
            "started_at".into(),
            json!(format_instant(session.started_at_ms)),
        );
        if let Some(completed_at) = session.completed_at_ms {
            out.insert("completed_at".into(), json!(format_instant(completed_at)));
        }
        let agents: Vec<&String> = self
            .sessions
            .participants
            .get(id)
            .into_iter()
            .flatten()
            .collect();
        out.insert("agents".into(), json!(agents));
        out.insert("total_tasks".into(), json!(total));
        out.insert("completed_tasks".into(), json!(completed));
        out.insert("progress_percent".into(), json!(percent(completed, total)));
        Some(Value::Object(out))
    }

    fn session_counts(&self, id: &str) -> (u64, u64) {
        let ids = self.tasks.by_session.get(id);
        let total = ids.map_or(0, |ids| ids.len() as u64);
        let completed = ids
            .into_iter()
            .flatten()
            .filter(|task| self.tasks.by_id[*task].status == TaskStatus::Completed)
            .count() as u64;
        (total, completed)
    }

    /// The report of session `id` (see the module docs), if the session exists.
    pub fn session_report(&self, id: &str) -> Option<SessionReport> {
        self.sessions.by_id.get(id)?;
        let mut by_agent: BTreeMap<String, AgentReport> = BTreeMap::new();
        let mut by_task: BTreeMap<String, TaskReport> = BTreeMap::new();
        let mut summary = ReportSummary::default();
        let mut completed_ms_total: i64 = 0;
        for task_id in self.tasks.by_session.get(id).into_iter().flatten() {
            let task = &self.tasks.by_id[task_id];
            let duration_ms = match (task.status, task.claimed_at_ms, task.finished_at_ms) {
                (TaskStatus::Completed | TaskStatus::Failed, Some(claimed), Some(finished)) => {
                    Some(finished - claimed)
                }
                _ => None,
            };
            summary.total_tasks += 1;
            match task.status {
                TaskStatus::Completed => {
                    summary.completed_tasks += 1;
                    completed_ms_total += duration_ms.unwrap_or(0);
                }
                TaskStatus::Failed => summary.failed_tasks += 1,
                _ => {}
            }
            if let Some(agent) = &task.agent {
                let line = by_agent.entry(agent.clone()).or_default();
                line.tasks.push(task_id.clone());
                match task.status {
                    TaskStatus::Completed => {
                        line.completed += 1;
                        line.total_task_ms += duration_ms.unwrap_or(0);
                    }
                    TaskStatus::Failed => line.failed += 1,
                    TaskStatus::Claimed => line.in_progress += 1,
                    _ => {}
                }
            }
            by_task.insert(
                task_id.clone(),
                TaskReport {
                    task_type: task.definition.task_type.clone(),
                    status: task.status,
                    agent: task.agent.clone(),
                    attempt: task.attempt,
                    duration_ms,
                    result: task.result.clone(),
                    error: task.error.clone(),
                },
            );
        }
        for line in by_agent.values_mut() {
            line.avg_task_ms = mean(line.total_task_ms, line.completed);
        }
        summary.success_rate = if summary.total_tasks == 0 {
            0.0
        } else {
            summary.completed_tasks as f64 / summary.total_tasks as f64
        };
        summary.avg_task_ms = mean(completed_ms_total, summary.completed_tasks);
        summary.agents_used = by_agent.len() as u64;
        Some(SessionReport {
            by_agent,
            by_task,
            summary,
        })
    }
}

fn mean(total: i64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        total as f64 / count as f64
    }
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

#[derive(Serialize, Deserialize)]
struct StartedData {
    session: String,
    operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<Value>,
}

#[derive(Serialize, Deserialize)]
struct CompletedData {
    session: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Value>,
}

/// Starts a session; no events if the same session exists.
pub(super) fn decide_start(
    branch: &dyn WorkBranch,
    spec: &SessionSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    let sessions = &branch.work().sessions;
    if spec.operation.is_empty() {
        return Err(invalid("operation", "operation must not be empty"));
    }
    let id = match &spec.id {
        Some(id) => {
            check_id("id", id)?;
            id.clone()
        }
        None => generate_id("S", sessions.by_id.len(), |id| {
            sessions.by_id.contains_key(id)
        }),
    };
    if let Some(existing) = sessions.by_id.get(&id) {
        if existing.operation == spec.operation && existing.context == spec.context {
            return Ok(Vec::new());
        }
        return Err(already_exists("session", &id));
    }
    let data = StartedData {
        session: id.clone(),
        operation: spec.operation.clone(),
        context: spec.context.clone(),
    };
    Ok(vec![EventDraft::new(
        "session.started",
        format!("session/{id}"),
        serde_json::to_value(data).expect("event data serializes"),
    )])
}

/// Completes a session; no events if it already completed with the same outcome.
pub(super) fn decide_complete(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &SessionCompleteSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    let session = branch
        .work()
        .sessions
        .by_id
        .get(id)
        .ok_or_else(|| not_found("session", id))?;
    if session.status == SessionStatus::Completed {
        if session.outcome == spec.outcome {
            return Ok(Vec::new());
        }
        return Err(conflict(
            Code::SessionCompleted,
            format!("session '{id}' already completed with another outcome"),
        )
        .with("session", id));
    }
    let data = CompletedData {
        session: id.to_owned(),
        outcome: spec.outcome.clone(),
    };
    Ok(vec![EventDraft::new(
        "session.completed",
        format!("session/{id}"),
        serde_json::to_value(data).expect("event data serializes"),
    )])
}

/// Records `agent` as a participant of `session`.
pub(super) fn note_agent(work: &mut Work, session: &str, agent: &str) {
    let participants = work
        .sessions
        .participants
        .entry(session.to_owned())
        .or_default();
    if !participants.contains(agent) {
        participants.insert(agent.to_owned());
    }
}

/// Records the actor of a work event that carries a session in its envelope.
pub(super) fn note_envelope_session(work: &mut Work, event: &Envelope) {
    if let Some(session) = &event.session {
        if event.actor != SYSTEM_ACTOR {
            note_agent(work, session, &event.actor);
        }
    }
}

/// Folds a `session.*` event; false for an unknown type.
pub(super) fn apply(work: &mut Work, event: &Envelope, data: &Value) -> bool {
    let sessions = &mut work.sessions;
    match event.event_type.as_str() {
        "session.started" => {
            let Some(started) = parse_data::<StartedData>(event, data) else {
                return true;
            };
            if sessions.by_id.contains_key(&started.session) {
                return true; // Started once by the rules; a repeat changes nothing.
            }
            sessions.by_id.insert(
                started.session.clone(),
                WorkSession {
                    id: started.session,
                    operation: started.operation,
                    context: started.context,
                    status: SessionStatus::Active,
                    outcome: None,
                    started_by: event.actor.clone(),
                    started_at_ms: event.ts_ms,
                    completed_at_ms: None,
                    seq: event.seq,
                },
            );
        }
        "session.completed" => {
            let Some(completed) = parse_data::<CompletedData>(event, data) else {
                return true;
            };
            if let Some(session) = sessions.by_id.get_mut(&completed.session) {
                session.status = SessionStatus::Completed;
                session.outcome = completed.outcome;
                session.completed_at_ms = Some(event.ts_ms);
            }
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::{claim, create_all, Harness};
    use super::super::{CompleteSpec, FailSpec, WorkCommand};
    use super::*;
    use crate::rejection::RejectionKind;

    fn start(id: &str) -> WorkCommand {
        WorkCommand::SessionStart(SessionSpec {
            id: Some(id.into()),
            operation: "investigate".into(),
            context: Some(json!({"incident": 1234})),
        })
    }

    fn complete_session(id: &str, outcome: Value) -> WorkCommand {
        WorkCommand::SessionComplete {
            session: id.into(),
            spec: SessionCompleteSpec {
                outcome: Some(outcome),
            },
        }
    }

    #[test]
    fn the_report_sums_up_the_sessions_tasks() {
        let mut harness = Harness::new();
        harness.ok(start("inc-1"));
        harness.ok(create_all(json!([
            {"id": "t1", "type": "logs", "session": "inc-1", "priority": 10},
            {"id": "t2", "type": "metrics", "session": "inc-1", "priority": 9},
            {"id": "t3", "type": "deploys", "session": "inc-1", "priority": 8},
            {"id": "t4", "type": "report", "session": "inc-1", "priority": 7},
            {"id": "other", "type": "x", "priority": 1},
        ])));
        harness.ok(claim("a", &[]));
        harness.ok(claim("b", &[]));
        harness.advance(1000);
        harness.ok(WorkCommand::TaskComplete {
            task: "t1".into(),
            spec: CompleteSpec {
                agent: "a".into(),
                result: Some(json!("pool")),
            },
        });
        harness.ok(claim("a", &[]));
        harness.advance(2000);
        harness.ok(WorkCommand::TaskComplete {
            task: "t2".into(),
            spec: CompleteSpec {
                agent: "b".into(),
                result: None,
            },
        });
        harness.ok(WorkCommand::TaskFail {
            task: "t3".into(),
            spec: FailSpec {
                agent: "a".into(),
                error: Some(json!("no access")),
                retry: None,
            },
        });
        let view = harness.work().session_view("inc-1").expect("started");
        assert_eq!(view["status"], json!("active"));
        assert_eq!(view["agents"], json!(["a", "b"]));
        assert_eq!(view["total_tasks"], json!(4));
        assert_eq!(view["progress_percent"], json!(50.0));
        let report = harness.work().session_report("inc-1").expect("started");
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(
            json["summary"],
            json!({"total_tasks": 4, "completed_tasks": 2, "failed_tasks": 1, "success_rate": 0.5, "avg_task_ms": 2000.0, "agents_used": 2})
        );
        assert_eq!(
            json["by_agent"]["a"],
            json!({"tasks": ["t1", "t3"], "completed": 1, "failed": 1, "in_progress": 0, "total_task_ms": 1000, "avg_task_ms": 1000.0})
        );
        assert_eq!(json["by_agent"]["b"]["total_task_ms"], json!(3000));
        assert_eq!(
            json["by_task"]["t1"],
            json!({"type": "logs", "status": "completed", "agent": "a", "attempt": 1, "duration_ms": 1000, "result": "pool"})
        );
        assert_eq!(json["by_task"]["t3"]["duration_ms"], json!(2000));
        assert_eq!(
            json["by_task"]["t4"],
            json!({"type": "report", "status": "pending", "attempt": 1})
        );
        assert!(json["by_task"].get("other").is_none());
    }

    #[test]
    fn sessions_start_and_complete_once() {
        let mut harness = Harness::new();
        assert!(harness.work().session_report("s").is_none());
        harness.ok(start("s"));
        assert!(harness.ok(start("s")).is_empty(), "same body");
        let rejection = harness.err(WorkCommand::SessionStart(SessionSpec {
            id: Some("s".into()),
            operation: "other".into(),
            context: None,
        }));
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Conflict, "already_exists")
        );
        let report = harness.work().session_report("s").expect("started");
        assert_eq!(
            report.summary,
            ReportSummary::default(),
            "no tasks: all zero"
        );
        assert_eq!(
            harness.work().session_view("s").expect("started")["progress_percent"],
            json!(0.0)
        );
        harness.ok(complete_session("s", json!("resolved")));
        assert!(harness
            .ok(complete_session("s", json!("resolved")))
            .is_empty());
        assert_eq!(
            harness
                .err(complete_session("s", json!("other")))
                .code
                .as_str(),
            "session_completed"
        );
        assert_eq!(
            harness.err(complete_session("ghost", json!(1))).kind,
            RejectionKind::NotFound
        );
        let view = harness.work().session_view("s").expect("exists");
        assert_eq!(
            (view["status"].clone(), view["outcome"].clone()),
            (json!("completed"), json!("resolved"))
        );
        let generated = harness.ok(WorkCommand::SessionStart(SessionSpec {
            id: None,
            operation: "op".into(),
            context: None,
        }));
        assert_eq!(generated[0].stream, "session/S-2");
        assert_eq!(
            harness
                .err(WorkCommand::SessionStart(SessionSpec {
                    id: None,
                    operation: String::new(),
                    context: None
                }))
                .details["field"],
            json!("operation")
        );
    }

    #[test]
    fn drafts_are_stamped_with_their_entitys_session() {
        let mut harness = Harness::new();
        harness.ok(create_all(
            json!([{"id": "t", "type": "x", "session": "s"}, {"id": "u", "type": "x"}]),
        ));
        let claimed = crate::work::decide(harness.branch(), &claim("w", &[]), harness.now_ms)
            .expect("claimable");
        assert_eq!(
            crate::work::draft_session(harness.branch(), &claimed[0]).as_deref(),
            Some("s")
        );
        let created = crate::work::decide(
            harness.branch(),
            &WorkCommand::FindingPost(
                serde_json::from_value(
                    json!({"agent": "a", "session": "f", "category": "observation", "content": 1}),
                )
                .expect("spec"),
            ),
            harness.now_ms,
        )
        .expect("valid");
        assert_eq!(
            crate::work::draft_session(harness.branch(), &created[0]).as_deref(),
            Some("f")
        );
        let started =
            crate::work::decide(harness.branch(), &start("own"), harness.now_ms).expect("valid");
        assert_eq!(
            crate::work::draft_session(harness.branch(), &started[0]).as_deref(),
            Some("own")
        );
        harness.ok(claim("w", &[]));
        harness.ok(claim("w", &[]));
        let completed = crate::work::decide(
            harness.branch(),
            &WorkCommand::TaskComplete {
                task: "u".into(),
                spec: CompleteSpec {
                    agent: "w".into(),
                    result: None,
                },
            },
            harness.now_ms,
        )
        .expect("claimed by w");
        assert_eq!(
            crate::work::draft_session(harness.branch(), &completed[0]),
            None,
            "u has no session"
        );
    }

    #[test]
    fn writes_carrying_a_session_make_their_actor_a_participant() {
        let mut harness = Harness::new();
        harness.session = Some("s".into());
        harness.run_as("coordinator", start("s")).expect("started");
        harness.session = None;
        harness.ok(WorkCommand::FindingPost(serde_json::from_value(json!({"agent": "scout", "session": "s", "category": "observation", "content": "x"})).expect("spec")));
        let view = harness.work().session_view("s").expect("started");
        assert_eq!(view["agents"], json!(["coordinator", "scout"]));
        assert_eq!(view["started_by"], json!("coordinator"));
    }
}
