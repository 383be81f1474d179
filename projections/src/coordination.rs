//! Coordination primitives (issue 3, SPEC §3): state cells, kv, locks and agents, as the
//! [`Coordination`] part of one branch's state.
//!
//! This module knows only its own part: it never reads the work part nor the other
//! branches, so it imports neither `work` nor `state`. What an agent's departure does to
//! other domains (its claimed tasks go back to pending) is added by [`crate::effects`];
//! what spans branches (a branch must exist, a kill on `main` counts everywhere, forks) by
//! [`crate::rules`]. The rules of this part:
//! - [`decide_in_branch`] turns a [`CoordinationCommand`] into event drafts or a [`Rejection`];
//! - [`apply`] folds this domain's committed events into a [`Coordination`] (called by
//!   [`crate::State::apply`]);
//! - [`check_fence`] and [`check_actor_allowed`] guard every write;
//! - [`next_deadline`], [`due_in_branch`] and [`restart_leases`] are the timers: time
//!   passing is turned into `lock.expired` and `agent.expired` events by the engine, never
//!   by `apply`;
//! - [`agents::heartbeat`] extends a lease in memory only (heartbeats are not logged);
//! - [`WaitForGraph`] is the engine's book of parked lock requests, used to refuse the
//!   request that would close a cycle, and to serve waiters first come, first served.
//!
//! The functions the engine calls with a whole branch take `impl AsRef<Coordination>`,
//! which [`crate::BranchState`] implements. Each primitive lives in its own submodule;
//! this module only holds what they share.

pub mod agents;
pub mod cells;
pub mod locks;
pub mod wait_for;

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod testing;

use crate::rejection::{check_id, Code};
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{Envelope, EventDraft, SYSTEM_ACTOR};
use crate::rejection::Rejection;

pub use agents::{Agent, AgentStatus};
pub use cells::{Cell, KvEntry};
pub use locks::{Hold, Lock, LockMode};
pub use wait_for::{DeadlockCycle, WaitEdge, WaitForGraph, WaiterId};

/// The event types this domain writes, and the catalog entries it folds.
pub mod event_types {
    /// A state cell was written (`set`, `init` or `cas`).
    pub const STATE_SET: &str = "state.set";
    /// A kv key was written.
    pub const KV_PUT: &str = "kv.put";
    /// A kv key was deleted.
    pub const KV_DELETED: &str = "kv.deleted";
    /// An owner took a lock; the event's seq is the fencing token.
    pub const LOCK_ACQUIRED: &str = "lock.acquired";
    /// A holder's TTL was refreshed (renew, or a re-entrant acquire).
    pub const LOCK_RENEWED: &str = "lock.renewed";
    /// A holder let go of a lock, or lost it to a kill or a deregistration.
    pub const LOCK_RELEASED: &str = "lock.released";
    /// A holder's TTL (or its agent's lease) ran out.
    pub const LOCK_EXPIRED: &str = "lock.expired";
    /// A lock request was refused because waiting would have closed a cycle.
    pub const LOCK_DEADLOCK_DETECTED: &str = "lock.deadlock_detected";
    /// An agent registered (or registered again).
    pub const AGENT_REGISTERED: &str = "agent.registered";
    /// An agent's lease ran out.
    pub const AGENT_EXPIRED: &str = "agent.expired";
    /// An admin killed an agent.
    pub const AGENT_KILLED: &str = "agent.killed";
    /// An agent was deregistered.
    pub const AGENT_DEREGISTERED: &str = "agent.deregistered";
    /// A branch was forked from its parent at a seq.
    pub const BRANCH_CREATED: &str = "branch.created";
}

pub use crate::limits::{TTL_MS_MAX, TTL_MS_MIN};

// Kept at their old paths for the server, which calls them as `coordination::...`: they
// span branches or domains, so they live above this module.
pub use crate::branches;
pub use crate::branches::Replayer;
pub use crate::rules::{
    decide_coordination as decide, due_all, due_coordination as due, next_deadline_all,
    restart_all_leases,
};
pub use crate::state::{BranchOrigin, ForkPoint};

/// The most resources one acquire may name. Each resource costs at most two events
/// (an expiry of a stale holder and the grant), so 100 resources stay far below the
/// 1,000-event batch limit.
pub const LOCK_RESOURCES_MAX: usize = 100;

/// The coordination part of a branch's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coordination {
    /// State cells by key.
    pub cells: BTreeMap<String, Cell>,
    /// Key-value entries by key.
    pub kv: BTreeMap<String, KvEntry>,
    /// Locks that have at least one holder, by resource.
    pub locks: BTreeMap<String, Lock>,
    /// Every agent ever registered on this branch, by id.
    pub agents: BTreeMap<String, Agent>,
}

impl AsRef<Coordination> for Coordination {
    fn as_ref(&self) -> &Coordination {
        self
    }
}

impl AsMut<Coordination> for Coordination {
    fn as_mut(&mut self) -> &mut Coordination {
        self
    }
}

/// A write of this domain, as the server parsed it from a request.
#[derive(Debug, Clone, PartialEq)]
pub enum CoordinationCommand {
    /// `PUT /v1/state/{key}`: unconditional set.
    StateSet {
        /// The cell's key.
        key: String,
        /// The new value.
        value: Value,
    },
    /// `POST /v1/state/{key}/init`: create if absent; no events if present.
    StateInit {
        /// The cell's key.
        key: String,
        /// The initial value.
        value: Value,
    },
    /// `POST /v1/state/{key}/cas`: set if the cell is at `expected_version`.
    StateCas {
        /// The cell's key.
        key: String,
        /// The version the cell must have; `None` or `Some(0)` means it must not exist.
        expected_version: Option<u64>,
        /// The new value.
        value: Value,
    },
    /// `PUT /v1/kv/{key}`.
    KvPut {
        /// The key.
        key: String,
        /// The value.
        value: Value,
    },
    /// `DELETE /v1/kv/{key}`.
    KvDelete {
        /// The key.
        key: String,
    },
    /// `POST /v1/locks/{resource}/acquire` and `POST /v1/locks/acquire`: all or none.
    /// Waiting (`wait_ms`) is the engine's: it parks a request refused with `lock_held`
    /// and decides it again when a lock is released or expires.
    LockAcquire {
        /// The resources to take, all or none.
        resources: Vec<String>,
        /// Who takes them.
        owner: String,
        /// How long the locks last unless renewed.
        ttl_ms: u64,
        /// Exclusive or shared.
        mode: LockMode,
    },
    /// `POST /v1/locks/{resource}/renew`.
    LockRenew {
        /// The resource.
        resource: String,
        /// The holder.
        owner: String,
        /// The holder's fencing token.
        token: u64,
        /// The new TTL, from now.
        ttl_ms: u64,
    },
    /// `POST /v1/locks/{resource}/release`.
    LockRelease {
        /// The resource.
        resource: String,
        /// The holder.
        owner: String,
        /// The holder's fencing token.
        token: u64,
    },
    /// `POST /v1/agents`.
    AgentRegister {
        /// The agent's id.
        id: String,
        /// The agent's type.
        agent_type: String,
        /// What the agent can do.
        capabilities: Vec<String>,
        /// The lease; `None` means the agent never expires.
        ttl_ms: Option<u64>,
        /// Free-form metadata.
        meta: Option<Value>,
        /// Whether the request has the admin role: only an admin may register a killed
        /// agent again (which revives it). Without `--tokens` every request is admin.
        by_admin: bool,
    },
    /// `POST /v1/agents/{id}/kill` (admin).
    AgentKill {
        /// The agent's id.
        id: String,
    },
    /// `DELETE /v1/agents/{id}`.
    AgentDeregister {
        /// The agent's id.
        id: String,
    },
    /// `POST /v1/branches`.
    BranchCreate {
        /// The new branch's name.
        name: String,
        /// The parent branch.
        from: String,
        /// The seq to fork at; `None` means the head.
        at: Option<u64>,
    },
}

/// Decides `command` against one branch's coordination part at `now_ms`: the events to
/// append, or why nothing may be appended. An empty list is a no-op the server answers
/// with 200 (`init` of an existing cell, killing an agent twice, deregistering twice).
///
/// The events are this part's only: [`crate::rules::decide_coordination`] checks the
/// branch and the lock owner's kill switch first, decides
/// [`CoordinationCommand::BranchCreate`] itself, and adds what an agent's departure does
/// to the work part.
///
/// # Panics
/// On [`CoordinationCommand::BranchCreate`], which spans branches: only the rules above
/// this module may route it, so reaching here is a programmer error.
pub fn decide_in_branch(
    branch: &Coordination,
    command: &CoordinationCommand,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    use CoordinationCommand as C;
    match command {
        C::StateSet { key, value } => cells::decide_set(branch, key, value),
        C::StateInit { key, value } => cells::decide_init(branch, key, value),
        C::StateCas {
            key,
            expected_version,
            value,
        } => cells::decide_cas(branch, key, *expected_version, value),
        C::KvPut { key, value } => cells::decide_kv_put(key, value),
        C::KvDelete { key } => cells::decide_kv_delete(branch, key),
        C::LockAcquire {
            resources,
            owner,
            ttl_ms,
            mode,
        } => locks::decide_acquire(branch, resources, owner, *ttl_ms, *mode, now_ms),
        C::LockRenew {
            resource,
            owner,
            token,
            ttl_ms,
        } => locks::decide_renew(branch, resource, owner, *token, *ttl_ms, now_ms),
        C::LockRelease {
            resource,
            owner,
            token,
        } => locks::decide_release(branch, resource, owner, *token, now_ms),
        C::AgentRegister {
            id,
            agent_type,
            capabilities,
            ttl_ms,
            meta,
            by_admin,
        } => agents::decide_register(
            branch,
            &agents::Registration {
                id,
                agent_type,
                capabilities,
                ttl_ms: *ttl_ms,
                meta: meta.as_ref(),
                by_admin: *by_admin,
            },
            now_ms,
        ),
        C::AgentKill { id } => agents::decide_kill(branch, id),
        C::AgentDeregister { id } => agents::decide_deregister(branch, id),
        C::BranchCreate { .. } => {
            unreachable!("branch.created spans branches; crate::rules decides it")
        }
    }
}

/// The lock owner a command names: the agent that acts, whoever sends the request.
pub fn named_owner(command: &CoordinationCommand) -> Option<&str> {
    use CoordinationCommand as C;
    match command {
        C::LockAcquire { owner, .. }
        | C::LockRenew { owner, .. }
        | C::LockRelease { owner, .. } => Some(owner),
        _ => None,
    }
}

/// The agent that leaves, and why, if `draft` is one of the events that end an agent's
/// stay (`agent.expired`, `agent.killed`, `agent.deregistered`). The reason is the one
/// this domain writes on the locks it frees, so that other domains can free what the
/// agent held with the same reason.
pub fn departure(draft: &EventDraft) -> Option<(&str, &'static str)> {
    let reason = match draft.event_type.as_str() {
        event_types::AGENT_EXPIRED => "agent_expired",
        event_types::AGENT_KILLED => "agent_killed",
        event_types::AGENT_DEREGISTERED => "agent_deregistered",
        _ => return None,
    };
    let id = draft.data.as_tree()?.get("id").and_then(Value::as_str)?;
    Some((id, reason))
}

/// Folds a reserved event of this domain into `coordination`; returns false if the type is
/// not one of this domain's, or if its data does not have the shape this domain writes
/// (the state then counts it as unknown instead of guessing). `branch.created` is folded
/// by [`crate::State::apply`] itself, since it touches two branches.
pub fn apply(coordination: &mut Coordination, event: &Envelope, data: &Value) -> bool {
    use event_types as T;
    match event.event_type.as_str() {
        T::STATE_SET => cells::apply_state_set(coordination, event, data),
        T::KV_PUT => cells::apply_kv_put(coordination, event, data),
        T::KV_DELETED => cells::apply_kv_deleted(coordination, data),
        T::LOCK_ACQUIRED => locks::apply_acquired(coordination, event, data),
        T::LOCK_RENEWED => locks::apply_renewed(coordination, data),
        T::LOCK_RELEASED | T::LOCK_EXPIRED => locks::apply_ended(coordination, data),
        // An audit record only: the refused request changed nothing.
        T::LOCK_DEADLOCK_DETECTED => true,
        T::AGENT_REGISTERED => agents::apply_registered(coordination, event, data),
        T::AGENT_EXPIRED => agents::apply_status(coordination, event, data, AgentStatus::Expired),
        T::AGENT_KILLED => agents::apply_status(coordination, event, data, AgentStatus::Killed),
        T::AGENT_DEREGISTERED => {
            agents::apply_status(coordination, event, data, AgentStatus::Deregistered)
        }
        _ => false,
    }
}

/// Checks a write's `fence: {resource, token}`: 409 `stale_fence` unless lock `resource`
/// is held right now with fencing token `token`. The server calls it before deciding any
/// write that carries a fence.
pub fn check_fence(
    branch: &impl AsRef<Coordination>,
    resource: &str,
    token: u64,
    now_ms: i64,
) -> Result<(), Rejection> {
    locks::check_fence(branch.as_ref(), resource, token, now_ms)
}

/// 403 `agent_killed` if `actor` is an agent killed on this branch. The server calls it
/// for every write with the acting agent (the token's agent, or the owner/agent/from the
/// body names), except [`CoordinationCommand::AgentRegister`], which checks it itself
/// because an admin may register a killed agent again.
pub fn check_actor_allowed(
    branch: &impl AsRef<Coordination>,
    actor: &str,
) -> Result<(), Rejection> {
    agents::check_actor_allowed(branch.as_ref(), actor)
}

/// With `serve --lock-order`: 409 `lock_order_violation` if `owner` asks for a resource
/// that sorts (bytewise) before one it already holds. The server calls it before
/// deciding a [`CoordinationCommand::LockAcquire`].
pub fn check_lock_order(
    branch: &impl AsRef<Coordination>,
    owner: &str,
    resources: &[String],
    now_ms: i64,
) -> Result<(), Rejection> {
    locks::check_lock_order(branch.as_ref(), owner, resources, now_ms)
}

/// The earliest time at which [`due`] has something to do on this branch: the first lock
/// TTL or agent lease to run out. It may be in the past (the engine then fires at once).
/// Heartbeats move it, so the engine asks again after each one.
pub fn next_deadline(branch: &impl AsRef<Coordination>) -> Option<i64> {
    let coordination = branch.as_ref();
    let holds = coordination
        .locks
        .values()
        .flat_map(|lock| lock.holders.values().map(|hold| hold.expires_at_ms));
    let leases = coordination
        .agents
        .values()
        .filter(|agent| agent.status == AgentStatus::Active)
        .filter_map(|agent| agent.lease_expires_at_ms);
    holds.chain(leases).min()
}

/// The timer events of this part due on this branch at `now_ms`, all with actor `system`,
/// in a fixed order: first `lock.expired` (reason `ttl`) for every holder whose TTL
/// passed, then for every agent whose lease passed `agent.expired` followed by
/// `lock.expired` (reason `agent_expired`) for the locks it still holds.
/// [`crate::rules::due_coordination`] adds, after each agent's events, the requeue of its
/// claimed tasks.
pub fn due_in_branch(branch: &Coordination, now_ms: i64) -> Vec<EventDraft> {
    let mut drafts = Vec::new();
    let mut ended: BTreeSet<(String, String)> = BTreeSet::new();
    for (resource, lock) in &branch.locks {
        for (owner, hold) in &lock.holders {
            if !hold.is_live(now_ms) {
                drafts.push(locks::ended_draft(
                    event_types::LOCK_EXPIRED,
                    resource,
                    owner,
                    hold.token,
                    "ttl",
                ));
                ended.insert((resource.clone(), owner.clone()));
            }
        }
    }
    for agent in branch.agents.values() {
        let lease_over = agent
            .lease_expires_at_ms
            .is_some_and(|lease| lease <= now_ms);
        if agent.status != AgentStatus::Active || !lease_over {
            continue;
        }
        drafts.push(EventDraft::system(
            event_types::AGENT_EXPIRED,
            agents::stream(&agent.id),
            serde_json::json!({"id": agent.id, "reason": "lease"}),
        ));
        drafts.extend(agent_locks_freed(
            branch,
            &agent.id,
            event_types::LOCK_EXPIRED,
            "agent_expired",
            &ended,
        ));
    }
    for draft in &mut drafts {
        if draft.actor.is_none() {
            draft.actor = Some(SYSTEM_ACTOR.to_owned());
        }
    }
    drafts
}

/// What an agent leaving (expired, killed, deregistered) sets free in this part: one lock
/// event of `lock_event_type` with `reason` per lock it holds (except those in
/// `already_ended`). Its claimed tasks are [`crate::effects`]' business.
fn agent_locks_freed(
    branch: &Coordination,
    id: &str,
    lock_event_type: &str,
    reason: &str,
    already_ended: &BTreeSet<(String, String)>,
) -> Vec<EventDraft> {
    let mut drafts = Vec::new();
    for (resource, lock) in &branch.locks {
        let Some(hold) = lock.holders.get(id) else {
            continue;
        };
        if already_ended.contains(&(resource.clone(), id.to_owned())) {
            continue;
        }
        drafts.push(locks::ended_draft(
            lock_event_type,
            resource,
            id,
            hold.token,
            reason,
        ));
    }
    drafts
}

/// After a restart, every lock and agent lease gets its full TTL again from `now_ms`
/// (holders could not renew while the server was down). The engine calls it once after
/// recovery, for every branch; it writes no event, like a heartbeat.
pub fn restart_leases(branch: &mut impl AsMut<Coordination>, now_ms: i64) {
    let coordination = branch.as_mut();
    for lock in coordination.locks.values_mut() {
        for hold in lock.holders.values_mut() {
            hold.expires_at_ms = now_ms + ttl_as_ms(hold.ttl_ms);
        }
    }
    for agent in coordination.agents.values_mut() {
        if agent.status == AgentStatus::Active {
            if let Some(ttl_ms) = agent.ttl_ms {
                agent.lease_expires_at_ms = Some(now_ms + ttl_as_ms(ttl_ms));
            }
        }
    }
}

/// A TTL as a signed duration; TTLs are bounded by `limits::TTL_MS_RANGE` (at most 7 days),
/// so this never wraps.
fn ttl_as_ms(ttl_ms: u64) -> i64 {
    i64::try_from(ttl_ms).expect("TTLs are validated to at most 7 days")
}

/// 422 `invalid_value` unless `ttl_ms` is within the process's TTL limits.
fn check_ttl(field: &str, ttl_ms: u64) -> Result<(), Rejection> {
    let limits = crate::limits::current();
    if (limits.ttl_ms_min..=limits.ttl_ms_max).contains(&ttl_ms) {
        return Ok(());
    }
    Err(invalid_value(
        field,
        format!(
            "{field} must be between {} and {}, not {ttl_ms}",
            limits.ttl_ms_min, limits.ttl_ms_max
        ),
    ))
}

/// A 422 `invalid_value` naming the offending field.
fn invalid_value(field: &str, message: String) -> Rejection {
    Rejection::new(Code::InvalidValue, message).with("field", field)
}

/// Parses an event's data into the shape this domain writes.
fn parse<T: serde::de::DeserializeOwned>(data: &Value) -> Option<T> {
    T::deserialize(data).ok()
}

/// A time as it appears on the wire (events, error details): RFC 3339 UTC with ms.
fn wire_time(ms: i64) -> String {
    crate::time::format_rfc3339_ms(ms)
}

/// Reads a time written by [`wire_time`].
fn parse_wire_time(text: &str) -> Option<i64> {
    crate::time::parse_rfc3339_ms(text)
}
