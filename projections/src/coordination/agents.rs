//! Agents and their leases (SPEC §3 "Agents").
//!
//! An agent registers with a type, capabilities and optionally a lease TTL. Heartbeats
//! extend the lease in memory without writing events (they would flood the log); the
//! engine's timer writes `agent.expired` when a lease runs out, and that event, like the
//! admin's `agent.killed`, is followed by explicit events that release the agent's locks
//! and put its claimed tasks back to pending.
//!
//! Because heartbeats are not logged, a replayed state has each lease as the last logged
//! event left it. That is harmless: after a restart the engine gives every lease its full
//! TTL again ([`super::restart_leases`]), and `?at=` reads show the logged lease.

use crate::rejection::Code;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    agent_locks_freed, check_id, check_ttl, event_types, parse, parse_wire_time, ttl_as_ms,
    wire_time, Coordination,
};
use crate::envelope::{Envelope, EventDraft};
use crate::rejection::Rejection;

/// An agent's status.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Registered and within its lease.
    Active,
    /// Its lease ran out.
    Expired,
    /// An admin killed it: its writes are refused until an admin registers it again.
    Killed,
    /// It was deregistered.
    Deregistered,
}

impl AgentStatus {
    /// The status's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Expired => "expired",
            AgentStatus::Killed => "killed",
            AgentStatus::Deregistered => "deregistered",
        }
    }

    /// Parses a status filter (`active`, `expired`, `killed`, `deregistered`).
    pub fn parse(text: &str) -> Option<AgentStatus> {
        match text {
            "active" => Some(AgentStatus::Active),
            "expired" => Some(AgentStatus::Expired),
            "killed" => Some(AgentStatus::Killed),
            "deregistered" => Some(AgentStatus::Deregistered),
            _ => None,
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// The agent's id.
    pub id: String,
    /// The agent's type.
    pub agent_type: String,
    /// What it can do, as registered.
    pub capabilities: Vec<String>,
    /// The lease TTL; `None`: the agent never expires.
    pub ttl_ms: Option<u64>,
    /// Free-form metadata from the registration.
    #[serde(default, with = "crate::binary_serde::json_text::option")]
    pub meta: Option<Value>,
    /// The status.
    pub status: AgentStatus,
    /// When the lease runs out (in memory, heartbeats move it), ms since the epoch.
    pub lease_expires_at_ms: Option<i64>,
    /// When it last registered, ms since the epoch.
    pub registered_at_ms: i64,
    /// When the status last changed, ms since the epoch.
    pub status_changed_at_ms: i64,
}

impl Agent {
    /// The JSON form of `GET /v1/agents/{id}`: `{"id","type","capabilities","status",
    /// "registered_at","ttl_ms"?,"lease_expires_at"?,"meta"?}`.
    pub fn to_json(&self) -> Value {
        let mut view = json!({
            "id": self.id,
            "type": self.agent_type,
            "capabilities": self.capabilities,
            "status": self.status.as_str(),
            "registered_at": wire_time(self.registered_at_ms),
        });
        let object = view.as_object_mut().expect("built as an object");
        if let Some(ttl_ms) = self.ttl_ms {
            object.insert("ttl_ms".into(), json!(ttl_ms));
        }
        if let Some(lease) = self.lease_expires_at_ms {
            object.insert("lease_expires_at".into(), json!(wire_time(lease)));
        }
        if let Some(meta) = &self.meta {
            object.insert("meta".into(), meta.clone());
        }
        view
    }
}

/// The agent `id` on this branch, if it ever registered.
pub fn agent<'a>(branch: &'a impl AsRef<Coordination>, id: &str) -> Option<&'a Agent> {
    branch.as_ref().agents.get(id)
}

/// The agents of `agent_type` (any if `None`) with `status` (any if `None`), in id order.
pub fn list_agents<'a>(
    branch: &'a impl AsRef<Coordination>,
    agent_type: Option<&'a str>,
    status: Option<AgentStatus>,
) -> impl Iterator<Item = &'a Agent> + 'a {
    branch
        .as_ref()
        .agents
        .values()
        .filter(move |agent| agent_type.is_none_or(|wanted| agent.agent_type == wanted))
        .filter(move |agent| status.is_none_or(|wanted| agent.status == wanted))
}

/// The stream of agent `id`.
pub fn stream(id: &str) -> String {
    format!("agent/{id}")
}

/// Extends agent `id`'s lease to `now_ms` + its TTL, in memory only (heartbeats are not
/// logged). Returns the new expiry, or `None` for an agent without a lease. Refused for
/// an unknown agent (404 `not_found`), a killed one (403 `agent_killed`), and one that is
/// no longer active or whose lease already ran out (409 `agent_not_active`: it must
/// register again, since its locks and tasks may be gone).
pub fn heartbeat(
    branch: &mut impl AsMut<Coordination>,
    id: &str,
    now_ms: i64,
) -> Result<Option<i64>, Rejection> {
    let Some(agent) = branch.as_mut().agents.get_mut(id) else {
        return Err(not_found(id));
    };
    if agent.status == AgentStatus::Killed {
        return Err(killed(id));
    }
    let lease_over = agent
        .lease_expires_at_ms
        .is_some_and(|lease| lease <= now_ms);
    if agent.status != AgentStatus::Active || lease_over {
        let status = if lease_over {
            AgentStatus::Expired
        } else {
            agent.status
        };
        return Err(Rejection::new(
            Code::AgentNotActive,
            format!("agent '{id}' is {}; register it again", status.as_str()),
        )
        .with("id", id)
        .with("status", status.as_str()));
    }
    let Some(ttl_ms) = agent.ttl_ms else {
        return Ok(None);
    };
    let lease = now_ms + ttl_as_ms(ttl_ms);
    agent.lease_expires_at_ms = Some(lease);
    Ok(Some(lease))
}

pub(super) fn check_actor_allowed(branch: &Coordination, actor: &str) -> Result<(), Rejection> {
    match agent(branch, actor) {
        Some(agent) if agent.status == AgentStatus::Killed => Err(killed(actor)),
        _ => Ok(()),
    }
}

fn killed(id: &str) -> Rejection {
    Rejection::new(
        Code::AgentKilled,
        format!("agent '{id}' was killed by an admin; only an admin can register it again"),
    )
    .with("id", id)
}

fn not_found(id: &str) -> Rejection {
    Rejection::new(Code::NotFound, format!("agent '{id}' is not registered")).with("id", id)
}

/// A registration, borrowed from the command.
pub(super) struct Registration<'a> {
    pub id: &'a str,
    pub agent_type: &'a str,
    pub capabilities: &'a [String],
    pub ttl_ms: Option<u64>,
    pub meta: Option<&'a Value>,
    pub by_admin: bool,
}

/// The data of `agent.registered`.
#[derive(Deserialize)]
struct RegisteredData {
    id: String,
    #[serde(rename = "type")]
    agent_type: String,
    capabilities: Vec<String>,
    #[serde(default)]
    ttl_ms: Option<u64>,
    #[serde(default)]
    lease_expires_at: Option<String>,
    #[serde(default)]
    meta: Option<Value>,
}

/// The data of `agent.expired`, `agent.killed` and `agent.deregistered`.
#[derive(Deserialize)]
struct StatusData {
    id: String,
}

pub(super) fn decide_register(
    branch: &Coordination,
    registration: &Registration<'_>,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let Registration {
        id,
        agent_type,
        capabilities,
        ttl_ms,
        meta,
        by_admin,
    } = *registration;
    check_id("id", id)?;
    check_id("type", agent_type)?;
    for capability in capabilities {
        check_id("capabilities", capability)?;
    }
    if let Some(ttl_ms) = ttl_ms {
        check_ttl("ttl_ms", ttl_ms)?;
    }
    if !by_admin {
        check_actor_allowed(branch, id)?;
    }
    let mut data = json!({"id": id, "type": agent_type, "capabilities": capabilities});
    let object = data.as_object_mut().expect("built as an object");
    if let Some(ttl_ms) = ttl_ms {
        object.insert("ttl_ms".into(), json!(ttl_ms));
        object.insert(
            "lease_expires_at".into(),
            json!(wire_time(now_ms + ttl_as_ms(ttl_ms))),
        );
    }
    if let Some(meta) = meta {
        object.insert("meta".into(), meta.clone());
    }
    Ok(vec![EventDraft::new(
        event_types::AGENT_REGISTERED,
        stream(id),
        data,
    )])
}

pub(super) fn decide_kill(branch: &Coordination, id: &str) -> Result<Vec<EventDraft>, Rejection> {
    check_id("id", id)?;
    let agent = agent(branch, id).ok_or_else(|| not_found(id))?;
    if agent.status == AgentStatus::Killed {
        return Ok(Vec::new());
    }
    let mut drafts = vec![EventDraft::new(
        event_types::AGENT_KILLED,
        stream(id),
        json!({"id": id}),
    )];
    drafts.extend(agent_locks_freed(
        branch,
        id,
        event_types::LOCK_RELEASED,
        "agent_killed",
        &BTreeSet::new(),
    ));
    Ok(drafts)
}

pub(super) fn decide_deregister(
    branch: &Coordination,
    id: &str,
) -> Result<Vec<EventDraft>, Rejection> {
    check_id("id", id)?;
    let agent = agent(branch, id).ok_or_else(|| not_found(id))?;
    match agent.status {
        AgentStatus::Deregistered => return Ok(Vec::new()),
        // Deregistering must not lift the kill switch; only an admin's registration does.
        AgentStatus::Killed => return Err(killed(id)),
        AgentStatus::Active | AgentStatus::Expired => {}
    }
    let mut drafts = vec![EventDraft::new(
        event_types::AGENT_DEREGISTERED,
        stream(id),
        json!({"id": id}),
    )];
    drafts.extend(agent_locks_freed(
        branch,
        id,
        event_types::LOCK_RELEASED,
        "agent_deregistered",
        &BTreeSet::new(),
    ));
    Ok(drafts)
}

pub(super) fn apply_registered(
    coordination: &mut Coordination,
    event: &Envelope,
    data: &Value,
) -> bool {
    let Some(data) = parse::<RegisteredData>(data) else {
        return false;
    };
    let lease_expires_at_ms = match &data.lease_expires_at {
        None => None,
        Some(text) => match parse_wire_time(text) {
            Some(ms) => Some(ms),
            None => return false,
        },
    };
    coordination.agents.insert(
        data.id.clone(),
        Agent {
            id: data.id,
            agent_type: data.agent_type,
            capabilities: data.capabilities,
            ttl_ms: data.ttl_ms,
            meta: data.meta,
            status: AgentStatus::Active,
            lease_expires_at_ms,
            registered_at_ms: event.ts_ms,
            status_changed_at_ms: event.ts_ms,
        },
    );
    true
}

pub(super) fn apply_status(
    coordination: &mut Coordination,
    event: &Envelope,
    data: &Value,
    status: AgentStatus,
) -> bool {
    let Some(data) = parse::<StatusData>(data) else {
        return false;
    };
    if let Some(agent) = coordination.agents.get_mut(&data.id) {
        agent.status = status;
        agent.status_changed_at_ms = event.ts_ms;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::locks::{lock_info, LockMode};
    use crate::coordination::testing::{acquire, register, Harness, START_MS};
    use crate::coordination::{
        check_actor_allowed, due, next_deadline, restart_leases, CoordinationCommand as C,
        TTL_MS_MAX,
    };
    use crate::rejection::RejectionKind;

    #[test]
    fn register_records_the_agent_and_its_lease() {
        let mut harness = Harness::new();
        let events = harness.ok(register("a1", Some(1000)));
        assert_eq!(
            (events[0].event_type.as_str(), events[0].stream.as_str()),
            ("agent.registered", "agent/a1")
        );
        let registered = agent(harness.main(), "a1").expect("registered");
        assert_eq!(registered.status, AgentStatus::Active);
        assert_eq!(registered.lease_expires_at_ms, Some(START_MS + 1000));
        assert_eq!(registered.capabilities, ["rust"]);
        let view = registered.to_json();
        assert_eq!(view["type"], json!("worker"));
        assert_eq!(view["status"], json!("active"));
        assert_eq!(view["lease_expires_at"], json!(wire_time(START_MS + 1000)));
        harness.ok(register("a2", None));
        assert_eq!(
            agent(harness.main(), "a2").and_then(|agent| agent.lease_expires_at_ms),
            None
        );
        let invalid = harness.err(register("a3", Some(TTL_MS_MAX + 1)));
        assert_eq!(invalid.code, "invalid_value");
    }

    #[test]
    fn heartbeats_extend_the_lease_without_events() {
        let mut harness = Harness::new();
        harness.ok(register("a1", Some(1000)));
        harness.advance(800);
        let now = harness.now_ms;
        let head = harness.state.head;
        let lease = heartbeat(harness.main_mut(), "a1", now).expect("active");
        assert_eq!(lease, Some(START_MS + 1800));
        assert_eq!(harness.state.head, head, "not logged");
        assert_eq!(next_deadline(harness.main()), Some(START_MS + 1800));
        harness.advance(900);
        assert!(harness.tick(0).is_empty(), "the heartbeat kept it alive");
        assert_eq!(
            heartbeat(harness.main_mut(), "ghost", now)
                .map_err(|rejection| rejection.code.as_str()),
            Err("not_found")
        );
        harness.advance(1000);
        let now = harness.now_ms;
        let late = heartbeat(harness.main_mut(), "a1", now).expect_err("lease ran out");
        assert_eq!(
            (late.kind, late.code.as_str()),
            (RejectionKind::Conflict, "agent_not_active")
        );
        assert_eq!(late.details["status"], json!("expired"));
    }

    #[test]
    fn lease_expiry_releases_locks_in_the_audit_trail() {
        let mut harness = Harness::new();
        harness.ok(register("a1", Some(1000)));
        harness.ok(acquire("db", "a1", 5000, LockMode::Exclusive));
        harness.ok(acquire("doc", "a1", 500, LockMode::Shared));
        harness.ok(acquire("doc", "a2", 5000, LockMode::Shared));
        let events = harness.tick(1000);
        let summary: Vec<(String, String, Value)> = events
            .iter()
            .map(|event| {
                (
                    event.event_type.clone(),
                    event.stream.clone(),
                    event.data_value()["reason"].clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "lock.expired".to_owned(),
                    "lock/doc".to_owned(),
                    json!("ttl")
                ),
                (
                    "agent.expired".to_owned(),
                    "agent/a1".to_owned(),
                    json!("lease")
                ),
                (
                    "lock.expired".to_owned(),
                    "lock/db".to_owned(),
                    json!("agent_expired")
                ),
            ]
        );
        assert!(events.iter().all(|event| event.actor == "system"));
        assert_eq!(
            agent(harness.main(), "a1").map(|agent| agent.status),
            Some(AgentStatus::Expired)
        );
        assert!(lock_info(harness.main(), "db").is_none());
        assert_eq!(
            lock_info(harness.main(), "doc").map(|lock| lock.holders.len()),
            Some(1)
        );
        assert!(
            due(harness.main(), harness.now_ms).is_empty(),
            "nothing is expired twice"
        );
        assert_eq!(next_deadline(harness.main()), Some(START_MS + 5000));
        // It may come back by registering again.
        harness.ok(register("a1", Some(1000)));
        assert_eq!(
            agent(harness.main(), "a1").map(|agent| agent.status),
            Some(AgentStatus::Active)
        );
    }

    #[test]
    fn the_kill_switch_releases_locks_and_refuses_later_writes() {
        let mut harness = Harness::new();
        harness.ok(register("a1", None));
        harness.ok(acquire("db", "a1", 5000, LockMode::Exclusive));
        assert_eq!(check_actor_allowed(harness.main(), "a1"), Ok(()));
        let events = harness.ok(C::AgentKill { id: "a1".into() });
        let types: Vec<&str> = events
            .iter()
            .map(|event| event.event_type.as_str())
            .collect();
        assert_eq!(types, ["agent.killed", "lock.released"]);
        assert_eq!(events[1].data_value()["reason"], json!("agent_killed"));
        assert!(lock_info(harness.main(), "db").is_none());
        let refused = check_actor_allowed(harness.main(), "a1").expect_err("killed");
        assert_eq!(
            (refused.kind, refused.code.as_str()),
            (RejectionKind::Forbidden, "agent_killed")
        );
        assert_eq!(check_actor_allowed(harness.main(), "someone-else"), Ok(()));
        assert_eq!(
            harness
                .err(acquire("other", "a1", 5000, LockMode::Exclusive))
                .code
                .as_str(),
            "agent_killed",
            "a lock naming a killed owner is refused, whoever sends it"
        );
        assert!(
            harness.ok(C::AgentKill { id: "a1".into() }).is_empty(),
            "killing twice writes nothing"
        );
        assert_eq!(
            harness.err(register("a1", None)).code.as_str(),
            "agent_killed",
            "it cannot revive itself"
        );
        assert_eq!(
            harness
                .err(C::AgentDeregister { id: "a1".into() })
                .code
                .as_str(),
            "agent_killed"
        );
        let now = harness.now_ms;
        assert_eq!(
            heartbeat(harness.main_mut(), "a1", now).map_err(|rejection| rejection.code.as_str()),
            Err("agent_killed")
        );
        let mut revive = register("a1", None);
        if let C::AgentRegister { by_admin, .. } = &mut revive {
            *by_admin = true;
        }
        harness.ok(revive);
        assert_eq!(check_actor_allowed(harness.main(), "a1"), Ok(()));
        assert_eq!(
            harness
                .err(C::AgentKill {
                    id: "nobody".into()
                })
                .code
                .as_str(),
            "not_found"
        );
    }

    #[test]
    fn deregistering_releases_locks_and_lists_by_status() {
        let mut harness = Harness::new();
        harness.ok(register("a1", None));
        harness.ok(register("a2", Some(1000)));
        harness.ok(acquire("db", "a1", 5000, LockMode::Exclusive));
        let events = harness.ok(C::AgentDeregister { id: "a1".into() });
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1].data_value()["reason"],
            json!("agent_deregistered")
        );
        assert!(harness
            .ok(C::AgentDeregister { id: "a1".into() })
            .is_empty());
        assert_eq!(
            harness
                .err(C::AgentDeregister { id: "zz".into() })
                .code
                .as_str(),
            "not_found"
        );
        let deregistered: Vec<&str> =
            list_agents(harness.main(), None, Some(AgentStatus::Deregistered))
                .map(|agent| agent.id.as_str())
                .collect();
        assert_eq!(deregistered, ["a1"]);
        let workers: Vec<&str> = list_agents(harness.main(), Some("worker"), None)
            .map(|agent| agent.id.as_str())
            .collect();
        assert_eq!(workers, ["a1", "a2"]);
        assert_eq!(list_agents(harness.main(), Some("other"), None).count(), 0);
        assert_eq!(AgentStatus::parse("killed"), Some(AgentStatus::Killed));
        assert_eq!(AgentStatus::parse("zombie"), None);
    }

    #[test]
    fn a_restart_gives_every_lease_its_full_ttl() {
        let mut harness = Harness::new();
        harness.ok(register("a1", Some(1000)));
        harness.ok(acquire("db", "a1", 3000, LockMode::Exclusive));
        harness.advance(10_000);
        let now = harness.now_ms;
        restart_leases(harness.main_mut(), now);
        assert_eq!(
            agent(harness.main(), "a1").and_then(|agent| agent.lease_expires_at_ms),
            Some(now + 1000)
        );
        assert_eq!(
            lock_info(harness.main(), "db").expect("held").holders["a1"].expires_at_ms,
            now + 3000
        );
        assert!(harness.tick(0).is_empty());
    }
}
