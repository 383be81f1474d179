//! Locks with TTLs and fencing tokens (SPEC §3 "Locks").
//!
//! A lock on a resource has one exclusive holder or any number of shared holders. Each
//! holder has its own fencing token: the seq of the `lock.acquired` event that granted it,
//! so tokens only ever grow and a write fenced with an old token can be refused even after
//! its lock was taken over (a TTL alone cannot stop a paused holder from writing late).
//!
//! Time is always an argument: a holder whose TTL has passed no longer counts as holding,
//! even before the engine's timer has written its `lock.expired`. Deciding over such a
//! stale holder writes that `lock.expired` first, so the audit trail stays complete
//! whatever the timer's lag.

use crate::rejection::Code;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    check_id, check_ttl, event_types, invalid_value, parse, parse_wire_time, ttl_as_ms, wire_time,
    Coordination, LOCK_RESOURCES_MAX,
};
use crate::envelope::{Envelope, EventDraft};
use crate::rejection::Rejection;

/// How a lock is held.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
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
pub enum LockMode {
    /// One holder at a time.
    #[default]
    Exclusive,
    /// Any number of shared holders, and no exclusive one.
    Shared,
}

impl LockMode {
    /// The mode's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Exclusive => "exclusive",
            LockMode::Shared => "shared",
        }
    }
}

/// A lock with at least one holder (a lock with none is removed from the state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    /// The mode all holders share.
    pub mode: LockMode,
    /// The holders by owner: one if exclusive.
    pub holders: BTreeMap<String, Hold>,
}

/// One owner's hold on a lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// The fencing token: the seq of the `lock.acquired` that granted this hold.
    pub token: u64,
    /// The TTL of the last acquire or renew (a restart gives it again in full).
    pub ttl_ms: u64,
    /// When the hold was granted, ms since the epoch.
    pub acquired_at_ms: i64,
    /// When the hold ends unless renewed, ms since the epoch.
    pub expires_at_ms: i64,
}

impl Hold {
    /// Whether the hold still counts at `now_ms`: its TTL has not passed.
    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms < self.expires_at_ms
    }
}

impl Lock {
    /// The live holders, other than `owner`, that stop `owner` from holding this lock in
    /// `mode` at `now_ms`, in owner order. Empty means `owner` may take (or keep) it.
    pub fn blockers(&self, owner: &str, mode: LockMode, now_ms: i64) -> Vec<&str> {
        if mode == LockMode::Shared && self.mode == LockMode::Shared {
            return Vec::new();
        }
        self.holders
            .iter()
            .filter(|(holder, hold)| holder.as_str() != owner && hold.is_live(now_ms))
            .map(|(holder, _)| holder.as_str())
            .collect()
    }

    /// The hold of `owner`, if it is live at `now_ms`.
    pub fn live_hold(&self, owner: &str, now_ms: i64) -> Option<&Hold> {
        self.holders.get(owner).filter(|hold| hold.is_live(now_ms))
    }

    /// When the last holder's TTL runs out, ms since the epoch.
    pub fn expires_at_ms(&self) -> i64 {
        self.holders
            .values()
            .map(|hold| hold.expires_at_ms)
            .max()
            .expect("a lock in the state has at least one holder")
    }

    /// The JSON form of `GET /v1/locks/{resource}` without the waiters (those are the
    /// engine's): `{"resource","mode","holders":[...],"expires_at"}`.
    pub fn to_json(&self, resource: &str) -> Value {
        let holders: Vec<Value> = self
            .holders
            .iter()
            .map(|(owner, hold)| holder_json(resource, owner, self.mode, hold))
            .collect();
        json!({
            "resource": resource,
            "mode": self.mode.as_str(),
            "holders": holders,
            "expires_at": wire_time(self.expires_at_ms()),
        })
    }
}

/// One holder as JSON: `{"resource","owner","mode","token","acquired_at","expires_at"}`.
/// Without `acquired_at` this is the body of a successful acquire.
pub fn holder_json(resource: &str, owner: &str, mode: LockMode, hold: &Hold) -> Value {
    json!({
        "resource": resource,
        "owner": owner,
        "mode": mode.as_str(),
        "token": hold.token,
        "acquired_at": wire_time(hold.acquired_at_ms),
        "expires_at": wire_time(hold.expires_at_ms),
    })
}

/// The answer to an acquire after its events were applied: `{"resource","owner","mode",
/// "token","expires_at"}` for `owner`'s hold on `resource`, if it has one.
pub fn grant_json(branch: &impl AsRef<Coordination>, resource: &str, owner: &str) -> Option<Value> {
    let lock = lock_info(branch, resource)?;
    let hold = lock.holders.get(owner)?;
    Some(json!({
        "resource": resource,
        "owner": owner,
        "mode": lock.mode.as_str(),
        "token": hold.token,
        "expires_at": wire_time(hold.expires_at_ms),
    }))
}

/// The lock on `resource`, if anyone holds it (holders whose TTL passed are listed until
/// their `lock.expired` is applied; see [`Hold::is_live`]).
pub fn lock_info<'a>(branch: &'a impl AsRef<Coordination>, resource: &str) -> Option<&'a Lock> {
    branch.as_ref().locks.get(resource)
}

/// Every held lock, in resource order.
pub fn list_locks(branch: &impl AsRef<Coordination>) -> impl Iterator<Item = (&String, &Lock)> {
    branch.as_ref().locks.iter()
}

/// The resources `owner` holds live at `now_ms`, in resource order.
pub fn held_by<'a>(
    branch: &'a impl AsRef<Coordination>,
    owner: &'a str,
    now_ms: i64,
) -> impl Iterator<Item = &'a String> + 'a {
    branch
        .as_ref()
        .locks
        .iter()
        .filter(move |(_, lock)| lock.live_hold(owner, now_ms).is_some())
        .map(|(resource, _)| resource)
}

/// The stream of lock `resource`.
pub fn stream(resource: &str) -> String {
    format!("lock/{resource}")
}

/// A `lock.released` or `lock.expired` draft (`reason`: `released`, `ttl`,
/// `agent_expired`, `agent_killed`, `agent_deregistered`).
pub(super) fn ended_draft(
    event_type: &str,
    resource: &str,
    owner: &str,
    token: u64,
    reason: &str,
) -> EventDraft {
    let data = json!({"resource": resource, "owner": owner, "token": token, "reason": reason});
    if event_type == event_types::LOCK_EXPIRED {
        EventDraft::system(event_type, stream(resource), data)
    } else {
        EventDraft::new(event_type, stream(resource), data)
    }
}

/// The data of `lock.acquired`.
#[derive(Deserialize)]
struct AcquiredData {
    resource: String,
    owner: String,
    mode: LockMode,
    ttl_ms: u64,
    expires_at: String,
}

/// The data of `lock.renewed`.
#[derive(Deserialize)]
struct RenewedData {
    resource: String,
    owner: String,
    token: u64,
    mode: LockMode,
    ttl_ms: u64,
    expires_at: String,
}

/// The data of `lock.released` and `lock.expired`.
#[derive(Deserialize)]
struct EndedData {
    resource: String,
    owner: String,
    token: u64,
}

pub(super) fn decide_acquire(
    branch: &Coordination,
    resources: &[String],
    owner: &str,
    ttl_ms: u64,
    mode: LockMode,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    check_id("owner", owner)?;
    check_ttl("ttl_ms", ttl_ms)?;
    if resources.is_empty() || resources.len() > LOCK_RESOURCES_MAX {
        return Err(invalid_value(
            "resources",
            format!(
                "an acquire names 1 to {LOCK_RESOURCES_MAX} resources, not {}",
                resources.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for resource in resources {
        check_id("resource", resource)?;
        if !seen.insert(resource.as_str()) {
            return Err(invalid_value(
                "resources",
                format!("resource '{resource}' is named twice"),
            ));
        }
    }
    // All or nothing: refuse before writing anything if any resource is taken.
    for resource in resources {
        let Some(lock) = lock_info(branch, resource) else {
            continue;
        };
        let blockers = lock.blockers(owner, mode, now_ms);
        if !blockers.is_empty() {
            return Err(lock_held(resource, lock, &blockers, now_ms));
        }
    }
    let expires_at = wire_time(now_ms + ttl_as_ms(ttl_ms));
    let mut drafts = Vec::with_capacity(resources.len());
    for resource in resources {
        let existing = lock_info(branch, resource);
        for (holder, hold) in existing.iter().flat_map(|lock| &lock.holders) {
            if !hold.is_live(now_ms) {
                drafts.push(ended_draft(
                    event_types::LOCK_EXPIRED,
                    resource,
                    holder,
                    hold.token,
                    "ttl",
                ));
            }
        }
        match existing.and_then(|lock| lock.live_hold(owner, now_ms)) {
            // Re-entrant: the same hold, the same token, a fresh TTL (and the mode asked).
            Some(hold) => drafts.push(EventDraft::new(
                event_types::LOCK_RENEWED,
                stream(resource),
                json!({"resource": resource, "owner": owner, "token": hold.token, "mode": mode.as_str(), "ttl_ms": ttl_ms, "expires_at": expires_at}),
            )),
            None => drafts.push(EventDraft::new(
                event_types::LOCK_ACQUIRED,
                stream(resource),
                json!({"resource": resource, "owner": owner, "mode": mode.as_str(), "ttl_ms": ttl_ms, "expires_at": expires_at}),
            )),
        }
    }
    Ok(drafts)
}

/// 409 `lock_held`: who holds `resource` and when the last of them expires.
fn lock_held(resource: &str, lock: &Lock, blockers: &[&str], now_ms: i64) -> Rejection {
    let holders: Vec<Value> = blockers
        .iter()
        .map(|owner| holder_json(resource, owner, lock.mode, &lock.holders[*owner]))
        .collect();
    let expires_at_ms = blockers
        .iter()
        .map(|owner| lock.holders[*owner].expires_at_ms)
        .max()
        .unwrap_or(now_ms);
    Rejection::new(
        Code::LockHeld,
        format!(
            "lock '{resource}' is held ({}) by {}",
            lock.mode.as_str(),
            blockers.join(", ")
        ),
    )
    .with("resource", resource)
    .with("holders", holders)
    .with("expires_at", wire_time(expires_at_ms))
}

pub(super) fn decide_renew(
    branch: &Coordination,
    resource: &str,
    owner: &str,
    token: u64,
    ttl_ms: u64,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    check_id("resource", resource)?;
    check_id("owner", owner)?;
    check_ttl("ttl_ms", ttl_ms)?;
    let lock = lock_info(branch, resource);
    let hold = lock
        .and_then(|lock| lock.live_hold(owner, now_ms))
        .filter(|hold| hold.token == token);
    let (Some(lock), Some(_)) = (lock, hold) else {
        return Err(Rejection::new(
            Code::LockLost,
            format!("'{owner}' does not hold lock '{resource}' with token {token} any more"),
        )
        .with("resource", resource)
        .with("owner", owner)
        .with("token", token));
    };
    let expires_at = wire_time(now_ms + ttl_as_ms(ttl_ms));
    Ok(vec![EventDraft::new(
        event_types::LOCK_RENEWED,
        stream(resource),
        json!({"resource": resource, "owner": owner, "token": token, "mode": lock.mode.as_str(), "ttl_ms": ttl_ms, "expires_at": expires_at}),
    )])
}

pub(super) fn decide_release(
    branch: &Coordination,
    resource: &str,
    owner: &str,
    token: u64,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    check_id("resource", resource)?;
    check_id("owner", owner)?;
    let held = lock_info(branch, resource)
        .and_then(|lock| lock.live_hold(owner, now_ms))
        .is_some_and(|hold| hold.token == token);
    if !held {
        return Err(Rejection::new(Code::NotOwner,
            format!("'{owner}' does not hold lock '{resource}' with token {token} (never held, released or expired)"),
        )
        .with("resource", resource)
        .with("owner", owner)
        .with("token", token));
    }
    Ok(vec![ended_draft(
        event_types::LOCK_RELEASED,
        resource,
        owner,
        token,
        "released",
    )])
}

pub(super) fn check_fence(
    branch: &Coordination,
    resource: &str,
    token: u64,
    now_ms: i64,
) -> Result<(), Rejection> {
    let held = lock_info(branch, resource).is_some_and(|lock| {
        lock.holders
            .values()
            .any(|hold| hold.token == token && hold.is_live(now_ms))
    });
    if held {
        return Ok(());
    }
    Err(Rejection::new(
        Code::StaleFence,
        format!("lock '{resource}' is not held with fencing token {token} right now"),
    )
    .with("resource", resource)
    .with("token", token))
}

pub(super) fn check_lock_order(
    branch: &Coordination,
    owner: &str,
    resources: &[String],
    now_ms: i64,
) -> Result<(), Rejection> {
    let held: BTreeSet<&String> = held_by(branch, owner, now_ms).collect();
    let Some(highest_held) = held.last() else {
        return Ok(());
    };
    let violation = resources
        .iter()
        .filter(|resource| !held.contains(resource))
        .find(|resource| resource.as_str() < highest_held.as_str());
    match violation {
        None => Ok(()),
        Some(resource) => Err(Rejection::new(Code::LockOrderViolation,
            format!("'{owner}' asks for lock '{resource}', which sorts before lock '{highest_held}' it already holds"),
        )
        .with("resource", resource.as_str())
        .with("held", highest_held.as_str())),
    }
}

pub(super) fn apply_acquired(
    coordination: &mut Coordination,
    event: &Envelope,
    data: &Value,
) -> bool {
    let Some(data) = parse::<AcquiredData>(data) else {
        return false;
    };
    let Some(expires_at_ms) = parse_wire_time(&data.expires_at) else {
        return false;
    };
    let lock = coordination
        .locks
        .entry(data.resource)
        .or_insert_with(|| Lock {
            mode: data.mode,
            holders: BTreeMap::new(),
        });
    lock.mode = data.mode;
    lock.holders.insert(
        data.owner,
        Hold {
            token: event.seq,
            ttl_ms: data.ttl_ms,
            acquired_at_ms: event.ts_ms,
            expires_at_ms,
        },
    );
    true
}

pub(super) fn apply_renewed(coordination: &mut Coordination, data: &Value) -> bool {
    let Some(data) = parse::<RenewedData>(data) else {
        return false;
    };
    let Some(expires_at_ms) = parse_wire_time(&data.expires_at) else {
        return false;
    };
    let Some(lock) = coordination.locks.get_mut(&data.resource) else {
        return true;
    };
    let Some(hold) = lock
        .holders
        .get_mut(&data.owner)
        .filter(|hold| hold.token == data.token)
    else {
        return true;
    };
    hold.ttl_ms = data.ttl_ms;
    hold.expires_at_ms = expires_at_ms;
    lock.mode = data.mode;
    true
}

pub(super) fn apply_ended(coordination: &mut Coordination, data: &Value) -> bool {
    let Some(data) = parse::<EndedData>(data) else {
        return false;
    };
    let Some(lock) = coordination.locks.get_mut(&data.resource) else {
        return true;
    };
    if lock
        .holders
        .get(&data.owner)
        .is_some_and(|hold| hold.token == data.token)
    {
        lock.holders.remove(&data.owner);
    }
    if lock.holders.is_empty() {
        coordination.locks.remove(&data.resource);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::testing::{acquire, acquire_many, Harness, START_MS};
    use crate::coordination::{
        check_fence, check_lock_order, due, CoordinationCommand as C, TTL_MS_MAX, TTL_MS_MIN,
    };
    use crate::rejection::RejectionKind;

    fn renew(resource: &str, owner: &str, token: u64, ttl_ms: u64) -> C {
        C::LockRenew {
            resource: resource.into(),
            owner: owner.into(),
            token,
            ttl_ms,
        }
    }
    fn release(resource: &str, owner: &str, token: u64) -> C {
        C::LockRelease {
            resource: resource.into(),
            owner: owner.into(),
            token,
        }
    }
    fn token(harness: &Harness, resource: &str, owner: &str) -> Option<u64> {
        lock_info(harness.main(), resource)
            .and_then(|lock| lock.holders.get(owner))
            .map(|hold| hold.token)
    }

    #[test]
    fn the_token_is_the_seq_of_lock_acquired_and_grows() {
        let mut harness = Harness::new();
        harness.ok(C::KvPut {
            key: "k".into(),
            value: json!(1),
        });
        let events = harness.ok(acquire("db", "a", 1000, LockMode::Exclusive));
        assert_eq!(events[0].event_type, "lock.acquired");
        assert_eq!(events[0].stream, "lock/db");
        assert_eq!(token(&harness, "db", "a"), Some(2));
        let grant = grant_json(harness.main(), "db", "a").expect("held");
        assert_eq!(grant["token"], json!(2));
        assert_eq!(grant["mode"], json!("exclusive"));
        assert_eq!(grant["expires_at"], json!(wire_time(START_MS + 1000)));
        harness.ok(release("db", "a", 2));
        assert!(
            lock_info(harness.main(), "db").is_none(),
            "a lock without holders is gone"
        );
        harness.ok(acquire("db", "b", 1000, LockMode::Exclusive));
        assert_eq!(token(&harness, "db", "b"), Some(4));
    }

    #[test]
    fn an_exclusive_lock_refuses_others_with_holders_and_expiry() {
        let mut harness = Harness::new();
        harness.ok(acquire("db", "a", 5000, LockMode::Exclusive));
        for mode in [LockMode::Exclusive, LockMode::Shared] {
            let held = harness.err(acquire("db", "b", 1000, mode));
            assert_eq!(
                (held.kind, held.code.as_str()),
                (RejectionKind::Conflict, "lock_held")
            );
            assert_eq!(held.details["holders"][0]["owner"], json!("a"));
            assert_eq!(held.details["holders"][0]["token"], json!(1));
            assert_eq!(
                held.details["expires_at"],
                json!(wire_time(START_MS + 5000))
            );
        }
        assert_eq!(harness.state.head, 1);
    }

    #[test]
    fn shared_holders_coexist_and_block_exclusive() {
        let mut harness = Harness::new();
        harness.ok(acquire("doc", "a", 1000, LockMode::Shared));
        harness.ok(acquire("doc", "b", 2000, LockMode::Shared));
        assert_eq!(token(&harness, "doc", "a"), Some(1));
        assert_eq!(token(&harness, "doc", "b"), Some(2));
        let held = harness.err(acquire("doc", "c", 1000, LockMode::Exclusive));
        assert_eq!(held.details["holders"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            held.details["expires_at"],
            json!(wire_time(START_MS + 2000))
        );
        let upgrade = harness.err(acquire("doc", "a", 1000, LockMode::Exclusive));
        assert_eq!(
            upgrade.code, "lock_held",
            "no upgrade while another shared holder remains"
        );
        harness.ok(release("doc", "b", 2));
        harness.ok(acquire("doc", "a", 1000, LockMode::Exclusive));
        let lock = lock_info(harness.main(), "doc").expect("held");
        assert_eq!(
            (lock.mode, lock.holders["a"].token),
            (LockMode::Exclusive, 1),
            "a sole holder upgrades in place"
        );
    }

    #[test]
    fn acquire_is_re_entrant_with_the_same_token() {
        let mut harness = Harness::new();
        harness.ok(acquire("db", "a", 1000, LockMode::Exclusive));
        harness.advance(600);
        let events = harness.ok(acquire("db", "a", 1000, LockMode::Exclusive));
        assert_eq!(events[0].event_type, "lock.renewed");
        let hold = &lock_info(harness.main(), "db").expect("held").holders["a"];
        assert_eq!(hold.token, 1);
        assert_eq!(hold.expires_at_ms, START_MS + 1600, "the TTL is refreshed");
        assert_eq!(hold.acquired_at_ms, START_MS);
    }

    #[test]
    fn multi_resource_acquire_is_all_or_nothing() {
        let mut harness = Harness::new();
        harness.ok(acquire("b", "x", 1000, LockMode::Exclusive));
        let held = harness.err(acquire_many(&["a", "b", "c"], "y", 1000));
        assert_eq!(held.details["resource"], json!("b"));
        assert!(lock_info(harness.main(), "a").is_none(), "no partial hold");
        assert!(lock_info(harness.main(), "c").is_none());
        let events = harness.ok(acquire_many(&["c", "a"], "y", 1000));
        assert_eq!(
            events
                .iter()
                .map(|event| event.stream.as_str())
                .collect::<Vec<_>>(),
            ["lock/c", "lock/a"]
        );
        assert_eq!(token(&harness, "c", "y"), Some(2));
        assert_eq!(token(&harness, "a", "y"), Some(3));
        let duplicate = harness.err(acquire_many(&["d", "d"], "y", 1000));
        assert_eq!(duplicate.code, "invalid_value");
        let empty = harness.err(acquire_many(&[], "y", 1000));
        assert_eq!(empty.code, "invalid_value");
    }

    #[test]
    fn ttl_must_be_within_bounds() {
        let mut harness = Harness::new();
        for ttl_ms in [0, TTL_MS_MIN - 1, TTL_MS_MAX + 1] {
            let invalid = harness.err(acquire("db", "a", ttl_ms, LockMode::Exclusive));
            assert_eq!(
                (invalid.kind, invalid.code.as_str()),
                (RejectionKind::Invalid, "invalid_value")
            );
            assert_eq!(invalid.details["field"], json!("ttl_ms"));
        }
        harness.ok(acquire("db", "a", TTL_MS_MIN, LockMode::Exclusive));
        let invalid = harness.err(renew("db", "a", 1, TTL_MS_MAX + 1));
        assert_eq!(invalid.code, "invalid_value");
        harness.ok(renew("db", "a", 1, TTL_MS_MAX));
    }

    #[test]
    fn renew_needs_the_live_token() {
        let mut harness = Harness::new();
        harness.ok(acquire("db", "a", 1000, LockMode::Exclusive));
        assert_eq!(harness.err(renew("db", "a", 99, 1000)).code, "lock_lost");
        assert_eq!(harness.err(renew("db", "b", 1, 1000)).code, "lock_lost");
        assert_eq!(harness.err(renew("other", "a", 1, 1000)).code, "lock_lost");
        harness.advance(900);
        harness.ok(renew("db", "a", 1, 1000));
        assert_eq!(
            lock_info(harness.main(), "db").expect("held").holders["a"].expires_at_ms,
            START_MS + 1900
        );
        harness.advance(1000);
        let lost = harness.err(renew("db", "a", 1, 1000));
        assert_eq!(
            lost.code, "lock_lost",
            "a TTL that passed is lost even before lock.expired is written"
        );
        assert_eq!(lost.details["token"], json!(1));
    }

    #[test]
    fn release_needs_owner_and_token() {
        let mut harness = Harness::new();
        harness.ok(acquire("db", "a", 1000, LockMode::Exclusive));
        let refused = harness.err(release("db", "b", 1));
        assert_eq!(
            (refused.kind, refused.code.as_str()),
            (RejectionKind::Conflict, "not_owner")
        );
        assert_eq!(harness.err(release("db", "a", 2)).code, "not_owner");
        assert_eq!(harness.err(release("nothing", "a", 1)).code, "not_owner");
        let events = harness.ok(release("db", "a", 1));
        assert_eq!(events[0].event_type, "lock.released");
        assert_eq!(events[0].data_value()["reason"], json!("released"));
        assert_eq!(
            harness.err(release("db", "a", 1)).code.as_str(),
            "not_owner",
            "released twice"
        );
    }

    #[test]
    fn ttl_expiry_is_a_system_event_from_the_timer() {
        let mut harness = Harness::new();
        harness.ok(acquire("db", "a", 1000, LockMode::Exclusive));
        harness.ok(acquire("doc", "b", 3000, LockMode::Shared));
        assert_eq!(
            crate::coordination::next_deadline(harness.main()),
            Some(START_MS + 1000)
        );
        harness.advance(999);
        assert!(due(harness.main(), harness.now_ms).is_empty());
        let expired = harness.tick(1);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].event_type, "lock.expired");
        assert_eq!(expired[0].actor, "system");
        assert_eq!(
            expired[0].data_value(),
            json!({"resource": "db", "owner": "a", "token": 1, "reason": "ttl"})
        );
        assert!(lock_info(harness.main(), "db").is_none());
        assert_eq!(
            crate::coordination::next_deadline(harness.main()),
            Some(START_MS + 3000)
        );
        harness.ok(acquire("db", "c", 1000, LockMode::Exclusive));
    }

    #[test]
    fn acquiring_over_a_stale_holder_writes_its_expiry_first() {
        let mut harness = Harness::new();
        harness.ok(acquire("db", "a", 1000, LockMode::Exclusive));
        harness.advance(1000);
        let events = harness.ok(acquire("db", "b", 1000, LockMode::Exclusive));
        let types: Vec<&str> = events
            .iter()
            .map(|event| event.event_type.as_str())
            .collect();
        assert_eq!(types, ["lock.expired", "lock.acquired"]);
        assert_eq!(events[0].actor, "system");
        let lock = lock_info(harness.main(), "db").expect("held");
        assert_eq!(lock.holders.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(lock.holders["b"].token, 3);
        // The original owner coming back after its TTL gets a new hold and a new token.
        harness.advance(1000);
        harness.ok(acquire("db", "b", 1000, LockMode::Exclusive));
        assert_eq!(
            lock_info(harness.main(), "db").expect("held").holders["b"].token,
            5
        );
    }

    #[test]
    fn a_fence_passes_only_with_the_current_live_token() {
        let mut harness = Harness::new();
        harness.ok(acquire("db", "a", 1000, LockMode::Exclusive));
        let now = harness.now_ms;
        assert_eq!(check_fence(harness.main(), "db", 1, now), Ok(()));
        let stale = check_fence(harness.main(), "db", 2, now).expect_err("wrong token");
        assert_eq!(
            (stale.kind, stale.code.as_str()),
            (RejectionKind::Conflict, "stale_fence")
        );
        assert_eq!(
            check_fence(harness.main(), "other", 1, now)
                .map_err(|rejection| rejection.code.as_str()),
            Err("stale_fence")
        );
        assert_eq!(
            check_fence(harness.main(), "db", 1, now + 1000)
                .map_err(|rejection| rejection.code.as_str()),
            Err("stale_fence"),
            "a TTL that passed fences out its holder at once"
        );
        harness.tick(1000);
        harness.ok(acquire("db", "b", 1000, LockMode::Exclusive));
        let now = harness.now_ms;
        assert_eq!(
            check_fence(harness.main(), "db", 1, now).map_err(|rejection| rejection.code.as_str()),
            Err("stale_fence")
        );
        assert_eq!(check_fence(harness.main(), "db", 3, now), Ok(()));
    }

    #[test]
    fn lock_order_refuses_a_resource_before_a_held_one() {
        let mut harness = Harness::new();
        harness.ok(acquire("m", "a", 1000, LockMode::Exclusive));
        let main = harness.main();
        let now = harness.now_ms;
        let refused = check_lock_order(main, "a", &["c".into()], now).expect_err("c < m");
        assert_eq!(
            (refused.kind, refused.code.as_str()),
            (RejectionKind::Conflict, "lock_order_violation")
        );
        assert_eq!(
            (
                refused.details["resource"].clone(),
                refused.details["held"].clone()
            ),
            (json!("c"), json!("m"))
        );
        assert_eq!(
            check_lock_order(main, "a", &["z".into(), "m".into()], now),
            Ok(())
        );
        assert_eq!(
            check_lock_order(main, "b", &["c".into()], now),
            Ok(()),
            "b holds nothing"
        );
        assert_eq!(
            check_lock_order(main, "a", &["c".into()], now + 1000),
            Ok(()),
            "an expired hold does not count"
        );
    }

    #[test]
    fn lock_views_show_holders() {
        let mut harness = Harness::new();
        harness.ok(acquire("doc", "a", 1000, LockMode::Shared));
        harness.ok(acquire("doc", "b", 2000, LockMode::Shared));
        let view = lock_info(harness.main(), "doc")
            .expect("held")
            .to_json("doc");
        assert_eq!(view["mode"], json!("shared"));
        assert_eq!(view["holders"][1]["owner"], json!("b"));
        assert_eq!(
            view["holders"][1]["acquired_at"],
            json!(wire_time(START_MS))
        );
        assert_eq!(view["expires_at"], json!(wire_time(START_MS + 2000)));
        assert_eq!(list_locks(harness.main()).count(), 1);
        assert_eq!(
            held_by(harness.main(), "b", harness.now_ms).collect::<Vec<_>>(),
            ["doc"]
        );
    }
}
