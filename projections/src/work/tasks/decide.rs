//! The decisions of the task commands, one function per command (create, claim, assign,
//! approve, progress, complete, fail, release, cancel), plus the checks they share. Each
//! reads the branch and returns the drafts that carry the command out, or a rejection;
//! auctions are in `auctions` and time-driven transitions in `leases`.

use crate::rejection::Code;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{json, Value};

use super::events::{
    draft, system_draft, CancelledData, ClaimedData, CompletedData, Created, EndedData,
    ProgressedData, ReleasedData, TaskOnly,
};
use super::model::{Task, TaskStatus, Tasks};
use super::spec::{
    check_ids, field_name, normalize, AssignSpec, AssignStrategy, CancelSpec, ClaimSpec,
    CompleteSpec, FailSpec, ProgressSpec, ReleaseSpec, TaskDefinition, TaskSpec,
};
use crate::envelope::EventDraft;
use crate::rejection::Rejection;
use crate::work::{
    check_id, conflict, generate_id, invalid, not_found, AgentInfo, WorkBranch, DURATION_MS_MAX,
};

/// Creates one task or an atomic batch.
pub(crate) fn decide_create(
    branch: &dyn WorkBranch,
    specs: &[TaskSpec],
) -> Result<Vec<EventDraft>, Rejection> {
    let tasks = &branch.work().tasks;
    let explicit = check_batch(specs)?;
    let (new_tasks, new_index) = new_definitions(tasks, specs, &explicit)?;
    check_dependencies_known(tasks, specs, &new_tasks, &new_index)?;
    let order = topological_order(&new_tasks, &new_index)?;
    let doomed = doomed_by_dependencies(tasks, &new_tasks, &new_index, &order);
    Ok(creation_drafts(&new_tasks, &order, &doomed))
}

/// The tasks a create makes, in request order, and each one's position by id.
type NewTasks = (Vec<(String, TaskDefinition)>, BTreeMap<String, usize>);

/// Checks a create's size (bounded like a batch, since each task is an event) and its
/// explicit ids (valid, none twice); returns those ids.
fn check_batch(specs: &[TaskSpec]) -> Result<BTreeSet<&str>, Rejection> {
    if specs.is_empty() {
        return Err(invalid("tasks", "a create needs at least one task"));
    }
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
    Ok(explicit)
}

/// Ids and normalized definitions of the tasks to create; tasks that already exist with
/// the same body are left out, and an existing id with another body is 409.
fn new_definitions(
    tasks: &Tasks,
    specs: &[TaskSpec],
    explicit: &BTreeSet<&str>,
) -> Result<NewTasks, Rejection> {
    let batch = specs.len() > 1;
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
            return Err(crate::work::already_exists("task", &id));
        }
        new_index.insert(id.clone(), new_tasks.len());
        new_tasks.push((id, definition));
    }
    Ok((new_tasks, new_index))
}

/// 422 unless every dependency exists already or is created by this batch.
fn check_dependencies_known(
    tasks: &Tasks,
    specs: &[TaskSpec],
    new_tasks: &[(String, TaskDefinition)],
    new_index: &BTreeMap<String, usize>,
) -> Result<(), Rejection> {
    let batch = specs.len() > 1;
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
    Ok(())
}

/// The new tasks (by position) that a failed or cancelled dependency dooms: they are
/// created and cancelled at once, with the dependency and the reason.
fn doomed_by_dependencies(
    tasks: &Tasks,
    new_tasks: &[(String, TaskDefinition)],
    new_index: &BTreeMap<String, usize>,
    order: &[usize],
) -> BTreeMap<usize, (String, &'static str)> {
    let mut doomed: BTreeMap<usize, (String, &'static str)> = BTreeMap::new();
    for &position in order {
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
    doomed
}

/// One `task.created` per new task in dependency order, then the `task.cancelled` of the
/// doomed ones in the same order.
fn creation_drafts(
    new_tasks: &[(String, TaskDefinition)],
    order: &[usize],
    doomed: &BTreeMap<usize, (String, &'static str)>,
) -> Vec<EventDraft> {
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
    for &position in order {
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
    drafts
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

pub(super) fn find<'a>(branch: &'a dyn WorkBranch, id: &str) -> Result<&'a Task, Rejection> {
    branch
        .work()
        .tasks
        .get(id)
        .ok_or_else(|| not_found("task", id))
}

pub(super) fn invalid_status(task: &Task, wanted: &str) -> Rejection {
    conflict(
        Code::InvalidStatus,
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
        None => Ok(branch
            .agent(agent)
            .map(|info| info.capabilities)
            .unwrap_or_default()),
    }
}

/// Claims the best claimable task; no events when there is none.
pub(crate) fn decide_claim(
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

pub(super) fn claim_draft(event_type: &str, task: &Task, agent: &str, now_ms: i64) -> EventDraft {
    draft(event_type, &task.id, claim_data(task, agent, now_ms))
}

/// The data of a claim of `task` by `agent` now, without the assignment's or the
/// auction's extras.
pub(super) fn claim_data(task: &Task, agent: &str, now_ms: i64) -> ClaimedData {
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
    }
}

/// Assigns a pending task to a named agent or by strategy; it is then claimed by it.
pub(crate) fn decide_assign(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &AssignSpec,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let task = find(branch, id)?;
    let (agent, strategy) = assignee_or_strategy(branch, spec)?;
    if task.status != TaskStatus::Pending {
        return Err(invalid_status(task, "assigned"));
    }
    if task.auction_open() {
        return Err(auction_open(task));
    }
    let agent = match strategy {
        None => agent,
        Some(strategy) => pick_assignee(branch, task, strategy)?,
    };
    let data = ClaimedData {
        strategy,
        ..claim_data(task, &agent, now_ms)
    };
    Ok(vec![draft("task.assigned", &task.id, data)])
}

/// The named agent of an assign (valid and not inactive), or its strategy: exactly one.
fn assignee_or_strategy(
    branch: &dyn WorkBranch,
    spec: &AssignSpec,
) -> Result<(String, Option<AssignStrategy>), Rejection> {
    match (&spec.agent, &spec.strategy) {
        (Some(agent), None) => {
            check_id("agent", agent)?;
            if branch.agent(agent).is_some_and(|info| !info.active) {
                return Err(conflict(
                    Code::AgentNotActive,
                    format!("agent '{agent}' is not active"),
                )
                .with("agent", agent.as_str()));
            }
            Ok((agent.clone(), None))
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
            Ok((String::new(), Some(strategy)))
        }
        _ => Err(invalid("agent", "give exactly one of agent and strategy")),
    }
}

/// The active agent `strategy` picks among those with every capability `task` needs, or
/// 409 `no_eligible_agent`.
fn pick_assignee(
    branch: &dyn WorkBranch,
    task: &Task,
    strategy: AssignStrategy,
) -> Result<String, Rejection> {
    let tasks = &branch.work().tasks;
    let required = &task.definition.capabilities;
    let candidates: Vec<AgentInfo> = branch
        .active_agents()
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
        AssignStrategy::Capability => candidates
            .iter()
            .min_by_key(|info| (info.capabilities.len(), tasks.load_of(&info.id), &info.id)),
    };
    let id = &task.id;
    chosen.map(|info| info.id.clone()).ok_or_else(|| {
        conflict(
            Code::NoEligibleAgent,
            format!("no active agent has the capabilities {required:?} that task '{id}' needs"),
        )
        .with("task", id.as_str())
        .with("strategy", strategy.as_str())
    })
}

pub(super) fn auction_open(task: &Task) -> Rejection {
    conflict(
        Code::AuctionOpen,
        format!("task '{}' is being auctioned", task.id),
    )
    .with("task", task.id.as_str())
}

/// Opens a task's approval gate; no events if it is already open.
pub(crate) fn decide_approve(
    branch: &dyn WorkBranch,
    id: &str,
) -> Result<Vec<EventDraft>, Rejection> {
    let task = find(branch, id)?;
    if !task.definition.requires_approval {
        return Err(conflict(
            Code::ApprovalNotRequired,
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
fn claimed_by<'a>(
    branch: &'a dyn WorkBranch,
    id: &str,
    agent: &str,
) -> Result<&'a Task, Rejection> {
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
    Err(conflict(
        Code::NotClaimant,
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
pub(crate) fn decide_progress(
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
pub(crate) fn decide_complete(
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
pub(crate) fn decide_fail(
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
pub(crate) fn decide_release(
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
pub(crate) fn decide_cancel(
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
pub(super) fn cascade_cancel(
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

    /// Issue 9: what an agent token may do to a task another agent created.
    #[test]
    fn only_the_creator_assigns_to_others_cancels_and_auctions() {
        let mut harness = Harness::new();
        harness
            .run_as("alice", create(json!({"id": "a", "type": "t"})))
            .expect("created");
        assert_eq!(harness.task("a").creator(), Some("alice"));
        let cancel = WorkCommand::TaskCancel {
            task: "a".into(),
            spec: CancelSpec::default(),
        };
        let auction = WorkCommand::AuctionOpen {
            task: "a".into(),
            spec: AuctionSpec {
                deadline_ms: 1000,
                min_confidence: None,
            },
        };
        let check = |agent: &str, command: &WorkCommand| {
            crate::work::check_creator_rights(harness.branch(), agent, command)
                .map_err(|rejection| (rejection.code, rejection.kind))
        };
        let forbidden = Err((Code::Forbidden, RejectionKind::Forbidden));
        assert_eq!(check("bob", &assign("a", Some("carol"), None)), forbidden);
        assert_eq!(
            check("bob", &assign("a", None, Some("round_robin"))),
            forbidden
        );
        assert_eq!(check("bob", &cancel), forbidden);
        assert_eq!(check("bob", &auction), forbidden);
        assert_eq!(check("bob", &assign("a", Some("bob"), None)), Ok(()));
        for command in [assign("a", Some("carol"), None), cancel, auction] {
            assert_eq!(check("alice", &command), Ok(()));
        }
        assert_eq!(
            check("bob", &assign("ghost", Some("carol"), None)),
            Ok(()),
            "an unknown task is the rule's to refuse (not_found)"
        );
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
}
