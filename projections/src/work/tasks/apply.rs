//! Folds the committed task events into [`Work`]: creation, every status transition, the
//! derived unblocking of dependents, and the indexes (pending, claims, sessions, status
//! counts, timers) kept in step. One function per event kind, so that each transition
//! reads on its own.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::claim_index::{reindex, unindex};
use super::events::{
    AuctionOpenedData, BidData, CancelledData, ClaimedData, CompletedData, Created, EndedData,
    ProgressedData,
};
use super::model::{Auction, AuctionStatus, Bid, HistoryEntry, Progress, Task, TaskStatus};
use super::spec::AssignStrategy;
use crate::envelope::Envelope;
use crate::work::{parse_data, Work};

/// Changes task `id` with every index kept in step.
pub(super) fn update(work: &mut Work, id: &str, change: impl FnOnce(&mut Task)) {
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
pub(crate) fn apply(work: &mut Work, event: &Envelope, data: &Value) -> bool {
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

pub(super) fn create(work: &mut Work, event: &Envelope, created: Created) {
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
    if !is_known(&event.event_type) {
        return false;
    }
    if !fits(&work.tasks.by_id[id], &event.event_type) {
        return true;
    }
    match event.event_type.as_str() {
        "task.approved" => fold_approved(work, id),
        "task.claimed" | "task.assigned" | "task.auction_awarded" => {
            fold_claimed(work, event, data, id)
        }
        "task.progressed" => fold_progressed(work, event, data, id),
        "task.completed" => fold_completed(work, event, data, id),
        "task.failed" | "task.timed_out" => fold_ended(work, event, data, id),
        "task.released" => fold_released(work, id),
        "task.cancelled" => fold_cancelled(work, event, data, id),
        "task.auction_opened" => fold_auction_opened(work, event, data, id),
        "task.bid_placed" => fold_bid_placed(work, event, data, id),
        "task.auction_closed" => fold_auction_closed(work, id),
        _ => return false,
    }
    true
}

/// `task.approved`: the gate opens; a task no longer blocked becomes pending.
fn fold_approved(work: &mut Work, id: &str) {
    update(work, id, |task| {
        task.approved = true;
        if task.status == TaskStatus::AwaitingApproval {
            task.status = TaskStatus::Pending;
        }
    });
}

/// `task.claimed`, `task.assigned` and `task.auction_awarded`: the task is claimed by an
/// agent for a new lease (an award also settles the auction).
fn fold_claimed(work: &mut Work, event: &Envelope, data: &Value, id: &str) {
    let Some(claimed) = parse_data::<ClaimedData>(event, data) else {
        return;
    };
    if event.event_type == "task.assigned" && claimed.strategy == Some(AssignStrategy::RoundRobin) {
        work.tasks.round_robin_last = Some(claimed.agent.clone());
    }
    let session = work.tasks.by_id[id].session.clone();
    let agent = claimed.agent.clone();
    let awarded = event.event_type == "task.auction_awarded";
    let ts_ms = event.ts_ms;
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
        crate::work::sessions::note_agent(work, &session, &agent);
    }
}

/// `task.progressed`: the progress is recorded and the lease renewed.
fn fold_progressed(work: &mut Work, event: &Envelope, data: &Value, id: &str) {
    let Some(progressed) = parse_data::<ProgressedData>(event, data) else {
        return;
    };
    update(work, id, |task| {
        task.progress = Some(Progress {
            percent: progressed.percent,
            note: progressed.note,
        });
        task.lease_expires_at_ms = Some(progressed.lease_expires_at);
    });
}

/// `task.completed`: the task ends with its result, and every dependent whose
/// dependencies are now all completed leaves `blocked`.
fn fold_completed(work: &mut Work, event: &Envelope, data: &Value, id: &str) {
    let Some(completed) = parse_data::<CompletedData>(event, data) else {
        return;
    };
    let ts_ms = event.ts_ms;
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

/// `task.failed` and `task.timed_out`: the attempt ends; the task fails for good, or goes
/// back to pending for the next attempt.
fn fold_ended(work: &mut Work, event: &Envelope, data: &Value, id: &str) {
    let Some(ended) = parse_data::<EndedData>(event, data) else {
        return;
    };
    let ts_ms = event.ts_ms;
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

/// `task.released`: back to pending with the same attempt.
fn fold_released(work: &mut Work, id: &str) {
    update(work, id, |task| {
        task.status = TaskStatus::Pending;
        task.agent = None;
        task.lease_expires_at_ms = None;
        task.progress = None;
    });
}

/// `task.cancelled`: the task ends with its reason, and an open auction closes.
fn fold_cancelled(work: &mut Work, event: &Envelope, data: &Value, id: &str) {
    let Some(cancelled) = parse_data::<CancelledData>(event, data) else {
        return;
    };
    let ts_ms = event.ts_ms;
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

/// `task.auction_opened`: a new auction takes bids until its deadline.
fn fold_auction_opened(work: &mut Work, event: &Envelope, data: &Value, id: &str) {
    let Some(opened) = parse_data::<AuctionOpenedData>(event, data) else {
        return;
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

/// `task.bid_placed`: the agent's bid replaces its earlier one.
fn fold_bid_placed(work: &mut Work, event: &Envelope, data: &Value, id: &str) {
    let Some(bid) = parse_data::<BidData>(event, data) else {
        return;
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

/// `task.auction_closed`: the deadline passed without a valid bid.
fn fold_auction_closed(work: &mut Work, id: &str) {
    update(work, id, |task| {
        if let Some(auction) = task.auction.as_mut() {
            auction.status = AuctionStatus::Closed;
        }
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;
    use crate::rejection::RejectionKind;
    use crate::work::tasks::*;
    use crate::work::testkit::{claim, create, create_all, task_of, types, Harness};
    use crate::work::WorkCommand;
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
}
