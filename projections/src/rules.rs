//! The top-level rules that span domains or branches: deciding a coordination command
//! against the whole state, and the coordination timers of every branch.
//!
//! The domains below see one part of one branch each. What needs more than that lives
//! here: a command must name an existing branch; a lock owner killed on `main` is killed
//! everywhere; a fork reads the parent branch; and every agent departure flows through
//! [`crate::effects`], so its clean-up in other domains is added in one place. The server
//! has always called these as `coordination::decide`, `coordination::due_all` and so on;
//! those paths re-export them.

use crate::branches;
use crate::coordination::{self, CoordinationCommand};
use crate::effects;
use crate::envelope::{EventDraft, SYSTEM_ACTOR};
use crate::rejection::{Code, Rejection};
use crate::state::{BranchState, State, MAIN_BRANCH};

/// Decides `command` against the state of `branch` at `now_ms`: the events to append, or
/// why nothing may be appended. An empty list is a no-op the server answers with 200
/// (`init` of an existing cell, killing an agent twice, deregistering twice).
///
/// `branch` must exist (404 `branch_not_found`). [`CoordinationCommand::BranchCreate`]
/// looks at the whole state; its event goes on `branch` like any other (the request's
/// `?branch=`, usually `main`), while its data names the parent. An agent's kill or
/// deregistration also puts its claimed tasks back to pending (see [`crate::effects`]).
pub fn decide_coordination(
    state: &State,
    branch: &str,
    command: &CoordinationCommand,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let branch_state = state.branch(branch).ok_or_else(|| {
        Rejection::new(
            Code::BranchNotFound,
            format!("branch '{branch}' does not exist"),
        )
        .with("branch", branch)
    })?;
    // The owner a lock command names is the agent that acts, whoever sends the request:
    // a killed agent may not take, renew or release locks through a third party either.
    if let Some(owner) = coordination::named_owner(command) {
        check_named_agent_allowed(state, branch, owner)?;
    }
    if let CoordinationCommand::BranchCreate { name, from, at } = command {
        return branches::decide_create(state, name, from, *at);
    }
    let drafts = coordination::decide_in_branch(&branch_state.coordination, command, now_ms)?;
    Ok(effects::with_departures(branch_state, drafts))
}

/// 403 `agent_killed` if `agent`, named by a command as the one who acts (a lock's owner),
/// is killed on `branch` or on `main` (a kill on main stops the agent everywhere).
fn check_named_agent_allowed(state: &State, branch: &str, agent: &str) -> Result<(), Rejection> {
    for name in [branch, MAIN_BRANCH] {
        if let Some(branch_state) = state.branch(name) {
            coordination::check_actor_allowed(branch_state, agent)?;
        }
    }
    Ok(())
}

/// The coordination timer events due on `branch` at `now_ms`, all with actor `system`, in
/// a fixed order: first `lock.expired` (reason `ttl`) for every holder whose TTL passed,
/// then for every agent whose lease passed `agent.expired` followed by its clean-up:
/// `lock.expired` (reason `agent_expired`) for the locks it still holds and the requeue of
/// its claimed tasks. The engine stamps and applies them in this order.
pub fn due_coordination(branch: &BranchState, now_ms: i64) -> Vec<EventDraft> {
    let due = coordination::due_in_branch(&branch.coordination, now_ms);
    let mut drafts = effects::with_departures(branch, due);
    for draft in &mut drafts {
        if draft.actor.is_none() {
            draft.actor = Some(SYSTEM_ACTOR.to_owned());
        }
    }
    drafts
}

/// [`coordination::next_deadline`] over every branch.
pub fn next_deadline_all(state: &State) -> Option<i64> {
    state
        .branches
        .values()
        .filter_map(coordination::next_deadline)
        .min()
}

/// [`due_coordination`] over every branch: `(branch name, drafts)` for each branch with
/// something due, in branch-name order.
pub fn due_all(state: &State, now_ms: i64) -> Vec<(String, Vec<EventDraft>)> {
    state
        .branches
        .iter()
        .map(|(name, branch)| (name.clone(), due_coordination(branch, now_ms)))
        .filter(|(_, drafts)| !drafts.is_empty())
        .collect()
}

/// [`coordination::restart_leases`] over every branch.
pub fn restart_all_leases(state: &mut State, now_ms: i64) {
    for branch in state.branches.values_mut() {
        coordination::restart_leases(branch, now_ms);
    }
}
