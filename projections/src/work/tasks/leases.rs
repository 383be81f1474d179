//! Claim leases over time: a lease that runs out (`task.timed_out`, retried or failed for
//! good), the requeue of a departed agent's claims, and the fresh leases after a restart.
//! Kept apart from the commands because no client asks for them: the engine's timers and
//! the cross-domain effects do.

use std::collections::BTreeSet;

use super::apply::update;
use super::decide::cascade_cancel;
use super::events::{system_draft, EndedData, ReleasedData};
use super::model::TaskStatus;
use crate::envelope::EventDraft;
use crate::work::{Work, WorkBranch};

/// A claim lease ran out: `task.timed_out`, and the cascade if that was the last attempt.
pub(crate) fn lease_expired(
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

/// `task.released` for every task `agent` holds.
pub(crate) fn requeue_claims_of(
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
pub(crate) fn restart_leases(work: &mut Work, now_ms: i64) {
    let claimed: Vec<String> = work.tasks.claims.values().flatten().cloned().collect();
    for id in claimed {
        update(work, &id, |task| {
            task.lease_expires_at_ms = Some(now_ms + task.definition.timeout_ms)
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::work::testkit::{claim, create, create_all, types, Harness};

    use super::*;

    use super::super::testing::*;

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
            crate::work::next_deadline(harness.branch()),
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
        assert_eq!(crate::work::next_deadline(harness.branch()), None);
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
        assert!(crate::work::requeue_claims_of(harness.branch(), "w", "agent_expired").is_empty());
    }

    #[test]
    fn restart_gives_claimed_tasks_their_full_lease_again() {
        let mut harness = Harness::new();
        harness.ok(create(json!({"id": "a", "type": "t", "timeout_ms": 1000})));
        harness.ok(claim("w", &[]));
        harness.now_ms += 5000;
        let now_ms = harness.now_ms;
        crate::work::restart_leases(
            harness.state.branches.get_mut("main").expect("main"),
            now_ms,
        );
        assert_eq!(harness.task("a").lease_expires_at_ms, Some(now_ms + 1000));
        assert_eq!(
            crate::work::next_deadline(harness.branch()),
            Some(now_ms + 1000)
        );
        assert!(harness.fire_due().is_empty());
    }
}
