//! The pending-task index and claim selection: pending tasks grouped by (type, required
//! capabilities), each group in claim order (priority descending, creation seq
//! ascending). A claim compares only the heads of the groups an agent qualifies for, so it
//! costs O(G log n) whatever the number of pending tasks. `apply` keeps the index in step
//! with every status change through [`unindex`] and [`reindex`].

use std::collections::BTreeSet;

use super::model::{AuctionStatus, PendingEntry, PendingGroup, Task, TaskStatus, Tasks};
use super::spec::{TaskDefinition, PRIORITY_MAX};
use crate::work::{Timer, TimerKind, Work};

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

/// Removes `id` from every index that depends on its status, lease or auction.
pub(super) fn unindex(work: &mut Work, id: &str) {
    let tasks = &mut work.tasks;
    let task = &tasks.by_id[id];
    crate::work::bump(&mut tasks.status_counts, &task.status, false);
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
pub(super) fn reindex(work: &mut Work, id: &str) {
    let tasks = &mut work.tasks;
    let task = &tasks.by_id[id];
    crate::work::bump(&mut tasks.status_counts, &task.status, true);
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

impl Tasks {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::testing::*;
    use super::*;
    use crate::work::tasks::*;
    use crate::work::testkit::{create_all, task_of, Harness};
    use crate::work::WorkCommand;

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
}
