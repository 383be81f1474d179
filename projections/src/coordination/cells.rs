//! State cells and key-value entries (SPEC §3 "State cells and key-value").
//!
//! A state cell is a versioned value: every write moves its version up by one, from 1, so
//! a client can read-modify-write with compare-and-swap and never lose an update. A kv
//! entry is a plain last-writer-wins value. Both are written by events on their own
//! stream (`state/KEY`, `kv/KEY`), so every change is in the audit trail.

use crate::rejection::Code;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{check_id, event_types, parse, Coordination};
use crate::envelope::{Envelope, EventDraft};
use crate::rejection::Rejection;

/// A state cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The current value.
    #[serde(with = "crate::binary_serde::json_text")]
    pub value: Value,
    /// How many times the cell was written; 1 after the first write.
    pub version: u64,
    /// The seq of the last write.
    pub updated_seq: u64,
    /// The time of the last write, ms since the epoch.
    pub updated_at_ms: i64,
}

impl Cell {
    /// The JSON form of `GET /v1/state/{key}`: `{"key","value","version"}`.
    pub fn to_json(&self, key: &str) -> Value {
        json!({"key": key, "value": self.value, "version": self.version})
    }
}

/// A kv entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The current value.
    #[serde(with = "crate::binary_serde::json_text")]
    pub value: Value,
    /// The seq of the last write.
    pub updated_seq: u64,
    /// The time of the last write, ms since the epoch.
    pub updated_at_ms: i64,
}

impl KvEntry {
    /// The JSON form of `GET /v1/kv/{key}`: `{"key","value"}`.
    pub fn to_json(&self, key: &str) -> Value {
        json!({"key": key, "value": self.value})
    }
}

/// The cell `key` on this branch, if it exists.
pub fn get_cell<'a>(branch: &'a impl AsRef<Coordination>, key: &str) -> Option<&'a Cell> {
    let branch = branch.as_ref();
    branch.cells.get(key)
}

/// The kv entry `key` on this branch, if it exists.
pub fn get_kv<'a>(branch: &'a impl AsRef<Coordination>, key: &str) -> Option<&'a KvEntry> {
    let branch = branch.as_ref();
    branch.kv.get(key)
}

/// The kv entries whose key starts with `prefix`, in key order (`""` lists them all).
pub fn list_kv<'a>(
    branch: &'a impl AsRef<Coordination>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a KvEntry)> + 'a {
    branch
        .as_ref()
        .kv
        .range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        ))
        .take_while(move |(key, _)| key.starts_with(prefix))
}

/// The stream of cell `key`.
pub fn state_stream(key: &str) -> String {
    format!("state/{key}")
}

/// The stream of kv `key`.
pub fn kv_stream(key: &str) -> String {
    format!("kv/{key}")
}

/// The data of `state.set` (`version` is written for readers of the audit trail; apply
/// counts it itself).
#[derive(Deserialize)]
struct StateSetData {
    key: String,
    value: Value,
}

/// The data of `kv.put`.
#[derive(Deserialize)]
struct KvPutData {
    key: String,
    value: Value,
}

/// The data of `kv.deleted`.
#[derive(Deserialize)]
struct KvDeletedData {
    key: String,
}

fn set_draft(branch: &Coordination, key: &str, value: &Value) -> EventDraft {
    let version = get_cell(branch, key).map_or(0, |cell| cell.version) + 1;
    EventDraft::new(
        event_types::STATE_SET,
        state_stream(key),
        json!({"key": key, "value": value, "version": version}),
    )
}

pub(super) fn decide_set(
    branch: &Coordination,
    key: &str,
    value: &Value,
) -> Result<Vec<EventDraft>, Rejection> {
    check_id("key", key)?;
    Ok(vec![set_draft(branch, key, value)])
}

pub(super) fn decide_init(
    branch: &Coordination,
    key: &str,
    value: &Value,
) -> Result<Vec<EventDraft>, Rejection> {
    check_id("key", key)?;
    if get_cell(branch, key).is_some() {
        return Ok(Vec::new());
    }
    Ok(vec![set_draft(branch, key, value)])
}

pub(super) fn decide_cas(
    branch: &Coordination,
    key: &str,
    expected_version: Option<u64>,
    value: &Value,
) -> Result<Vec<EventDraft>, Rejection> {
    check_id("key", key)?;
    let expected = expected_version.unwrap_or(0);
    let current = get_cell(branch, key).map_or(0, |cell| cell.version);
    if expected != current {
        let wanted = if expected == 0 {
            "not to exist".to_owned()
        } else {
            format!("to be at version {expected}")
        };
        return Err(Rejection::new(
            Code::VersionConflict,
            format!("state cell '{key}' is at version {current}; the write expected it {wanted}"),
        )
        .with("key", key)
        .with("expected_version", expected)
        .with("current_version", current));
    }
    Ok(vec![set_draft(branch, key, value)])
}

pub(super) fn decide_kv_put(key: &str, value: &Value) -> Result<Vec<EventDraft>, Rejection> {
    check_id("key", key)?;
    Ok(vec![EventDraft::new(
        event_types::KV_PUT,
        kv_stream(key),
        json!({"key": key, "value": value}),
    )])
}

pub(super) fn decide_kv_delete(
    branch: &Coordination,
    key: &str,
) -> Result<Vec<EventDraft>, Rejection> {
    check_id("key", key)?;
    if get_kv(branch, key).is_none() {
        return Err(
            Rejection::new(Code::NotFound, format!("kv key '{key}' does not exist"))
                .with("key", key),
        );
    }
    Ok(vec![EventDraft::new(
        event_types::KV_DELETED,
        kv_stream(key),
        json!({"key": key}),
    )])
}

pub(super) fn apply_state_set(
    coordination: &mut Coordination,
    event: &Envelope,
    data: &Value,
) -> bool {
    let Some(data) = parse::<StateSetData>(data) else {
        return false;
    };
    let version = coordination
        .cells
        .get(&data.key)
        .map_or(0, |cell| cell.version)
        + 1;
    coordination.cells.insert(
        data.key,
        Cell {
            value: data.value,
            version,
            updated_seq: event.seq,
            updated_at_ms: event.ts_ms,
        },
    );
    true
}

pub(super) fn apply_kv_put(
    coordination: &mut Coordination,
    event: &Envelope,
    data: &Value,
) -> bool {
    let Some(data) = parse::<KvPutData>(data) else {
        return false;
    };
    coordination.kv.insert(
        data.key,
        KvEntry {
            value: data.value,
            updated_seq: event.seq,
            updated_at_ms: event.ts_ms,
        },
    );
    true
}

pub(super) fn apply_kv_deleted(coordination: &mut Coordination, data: &Value) -> bool {
    let Some(data) = parse::<KvDeletedData>(data) else {
        return false;
    };
    coordination.kv.remove(&data.key);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::testing::Harness;
    use crate::coordination::CoordinationCommand as C;
    use crate::rejection::RejectionKind;
    use crate::state::MAIN_BRANCH;

    fn set(key: &str, value: Value) -> C {
        C::StateSet {
            key: key.into(),
            value,
        }
    }
    fn init(key: &str, value: Value) -> C {
        C::StateInit {
            key: key.into(),
            value,
        }
    }
    fn cas(key: &str, expected_version: Option<u64>, value: Value) -> C {
        C::StateCas {
            key: key.into(),
            expected_version,
            value,
        }
    }

    #[test]
    fn versions_count_from_one_per_key() {
        let mut harness = Harness::new();
        let events = harness.ok(set("a", json!({"x": [1, 2]})));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, "state.set");
        assert_eq!(events[0].stream, "state/a");
        harness.ok(set("a", json!("two")));
        harness.ok(set("b", json!(null)));
        let main = harness.main();
        assert_eq!(get_cell(main, "a").map(|cell| cell.version), Some(2));
        assert_eq!(
            get_cell(main, "a").map(|cell| cell.value.clone()),
            Some(json!("two"))
        );
        assert_eq!(get_cell(main, "b").map(|cell| cell.version), Some(1));
        assert_eq!(get_cell(main, "b").map(|cell| cell.updated_seq), Some(3));
        assert_eq!(
            get_cell(main, "a").map(|cell| cell.to_json("a")),
            Some(json!({"key": "a", "value": "two", "version": 2}))
        );
    }

    #[test]
    fn init_creates_once_and_is_a_no_op_after() {
        let mut harness = Harness::new();
        assert_eq!(harness.ok(init("n", json!(0))).len(), 1);
        assert!(
            harness.ok(init("n", json!(5))).is_empty(),
            "init of an existing cell writes nothing"
        );
        let cell = get_cell(harness.main(), "n").expect("created");
        assert_eq!((cell.value.clone(), cell.version), (json!(0), 1));
    }

    #[test]
    fn cas_checks_the_version() {
        let mut harness = Harness::new();
        harness.ok(cas("leader", None, json!("agent-1")));
        let conflict = harness.err(cas("leader", None, json!("agent-2")));
        assert_eq!(conflict.code, "version_conflict");
        assert_eq!(conflict.kind, RejectionKind::Conflict);
        assert_eq!(conflict.details["current_version"], json!(1));
        let conflict = harness.err(cas("leader", Some(0), json!("agent-2")));
        assert_eq!(conflict.details["expected_version"], json!(0));
        let stale = harness.err(cas("leader", Some(7), json!("agent-2")));
        assert_eq!(stale.details["current_version"], json!(1));
        harness.ok(cas("leader", Some(1), json!("agent-3")));
        let cell = get_cell(harness.main(), "leader").expect("exists");
        assert_eq!((cell.value.clone(), cell.version), (json!("agent-3"), 2));
        let missing = harness.err(cas("other", Some(1), json!(1)));
        assert_eq!(missing.details["current_version"], json!(0));
    }

    #[test]
    fn keys_are_validated() {
        let mut harness = Harness::new();
        for command in [
            set("", json!(1)),
            init("a\nb", json!(1)),
            C::KvPut {
                key: "x".repeat(257),
                value: json!(1),
            },
        ] {
            let rejection = harness.err(command);
            assert_eq!(rejection.code, "invalid_id");
            assert_eq!(rejection.kind, RejectionKind::Invalid);
        }
        assert_eq!(harness.state.head, 0, "a refused request writes nothing");
    }

    #[test]
    fn kv_is_last_writer_wins_with_prefix_listing() {
        let mut harness = Harness::new();
        for (key, value) in [
            ("task:1", "a"),
            ("task:2", "b"),
            ("tasl", "c"),
            ("task:1", "d"),
            ("t", "e"),
        ] {
            harness.ok(C::KvPut {
                key: key.into(),
                value: json!(value),
            });
        }
        let main = harness.main();
        let listed: Vec<(&str, Value)> = list_kv(main, "task:")
            .map(|(key, entry)| (key.as_str(), entry.value.clone()))
            .collect();
        assert_eq!(listed, vec![("task:1", json!("d")), ("task:2", json!("b"))]);
        assert_eq!(list_kv(main, "").count(), 4);
        assert_eq!(
            get_kv(main, "task:1").map(|entry| entry.updated_seq),
            Some(4)
        );
        let deleted = harness.ok(C::KvDelete {
            key: "task:1".into(),
        });
        assert_eq!(deleted[0].event_type, "kv.deleted");
        assert!(get_kv(harness.main(), "task:1").is_none());
        let missing = harness.err(C::KvDelete {
            key: "task:1".into(),
        });
        assert_eq!(
            (missing.kind, missing.code.as_str()),
            (RejectionKind::NotFound, "not_found")
        );
    }

    #[test]
    fn malformed_data_is_counted_not_guessed() {
        let mut harness = Harness::new();
        harness.commit(
            MAIN_BRANCH,
            vec![EventDraft::new("state.set", "state/a", json!({"value": 1}))],
            "x",
        );
        assert_eq!(harness.state.unknown_events, 1);
        assert!(get_cell(harness.main(), "a").is_none());
    }
}
