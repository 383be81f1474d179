//! Cross-domain effects: the one place where what happens in one domain changes another.
//!
//! Today there is one such effect. When an agent leaves (its lease expires, an admin kills
//! it, or it deregisters), the coordination rules free its locks, and its claimed tasks go
//! back to pending (`task.released` with the same reason). Coordination never imports
//! work and work never imports coordination: coordination's decisions and timers flow
//! through [`with_departures`], which adds the work part's answer after each departure.
//! The work rules read the agents' registry only through [`WorkBranch`], which this
//! module implements for a [`BranchState`].

use crate::coordination::{self, agents, AgentStatus};
use crate::envelope::EventDraft;
use crate::rejection::Rejection;
use crate::state::BranchState;
use crate::work::{self, AgentInfo, Work, WorkBranch};

/// Adds to coordination `drafts`, decided against `branch`, what each agent departure
/// among them does to the work part: right after the departure's own events (the
/// `agent.*` event and its locks), the requeue of the tasks the agent claimed, with the
/// departure's reason. The order of every other draft is unchanged. The requeue reads
/// `branch` as it was before `drafts`, as the departure itself was decided.
pub fn with_departures(branch: &BranchState, drafts: Vec<EventDraft>) -> Vec<EventDraft> {
    let mut result = Vec::with_capacity(drafts.len());
    let mut pending: Option<(String, &'static str)> = None;
    for draft in drafts {
        let departure = coordination::departure(&draft).map(|(id, reason)| (id.to_owned(), reason));
        if departure.is_some() {
            result.extend(requeue(branch, pending.take()));
            pending = departure;
        }
        result.push(draft);
    }
    result.extend(requeue(branch, pending));
    result
}

/// The work part's answer to agent `departed` leaving with a reason: its claims go back.
fn requeue(branch: &BranchState, departed: Option<(String, &'static str)>) -> Vec<EventDraft> {
    match departed {
        Some((id, reason)) => work::requeue_claims_of(branch, &id, reason),
        None => Vec::new(),
    }
}

impl WorkBranch for BranchState {
    fn work(&self) -> &Work {
        &self.work
    }

    fn work_mut(&mut self) -> &mut Work {
        &mut self.work
    }

    fn agent(&self, id: &str) -> Option<AgentInfo> {
        agents::agent(self, id).map(info)
    }

    fn active_agents(&self) -> Vec<AgentInfo> {
        agents::list_agents(self, None, Some(AgentStatus::Active))
            .map(info)
            .collect()
    }

    fn check_actor_allowed(&self, agent: &str) -> Result<(), Rejection> {
        coordination::check_actor_allowed(self, agent)
    }
}

/// What the work rules need to know about a registered agent.
fn info(agent: &coordination::Agent) -> AgentInfo {
    AgentInfo {
        id: agent.id.clone(),
        active: agent.status == AgentStatus::Active,
        capabilities: agent.capabilities.iter().cloned().collect(),
    }
}
