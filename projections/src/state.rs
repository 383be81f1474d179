//! The projected state and the two pure rules that drive it: `decide` turns a command into
//! events (or a rejection) against the current state, and `apply` folds a committed event
//! into the state. The engine (server crate) calls `decide`, appends the events, then
//! calls `apply`; replaying the log calls only `apply`, so live state and replayed state
//! are the same by construction.
//!
//! State is kept per branch. Every domain (cells, locks, tasks, ...) owns its part of a
//! [`BranchState`] in its own module, and those modules see only their part: this module
//! sits above them, routes each event to its domain, and folds `branch.created` itself
//! since it touches two branches. Deciding across domains and branches is
//! [`crate::rules`]'.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::coordination::{self, Coordination};
use crate::envelope::{Envelope, EventDraft, Payload};
use crate::work::{self, Work};

/// The default branch.
pub const MAIN_BRANCH: &str = "main";

pub use crate::rejection::{Code, Rejection, RejectionKind};

/// The state of one branch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BranchState {
    /// Number of events per stream (the stream's version).
    pub streams: HashMap<String, u64>,
    /// State cells, kv, locks and agents (issue 3).
    pub coordination: Coordination,
    /// Tasks, blackboard, proposals, messages and sessions (issue 4).
    pub work: Work,
}

impl AsRef<Coordination> for BranchState {
    fn as_ref(&self) -> &Coordination {
        &self.coordination
    }
}

impl AsMut<Coordination> for BranchState {
    fn as_mut(&mut self) -> &mut Coordination {
        &mut self.coordination
    }
}

impl BranchState {
    /// The version of `stream`: how many events it has (0 when it does not exist).
    pub fn stream_version(&self, stream: &str) -> u64 {
        self.streams.get(stream).copied().unwrap_or(0)
    }
}

/// The whole projected state.
///
/// It serializes to JSON, and to postcard for snapshots: the parts postcard cannot carry as
/// they are (JSON values, fields JSON leaves out) go through the crate's `binary_serde`
/// adapters, which leave JSON unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The seq of the last event applied (0 before any).
    pub head: u64,
    /// The hash of the last event applied (the chain's head).
    #[serde(with = "crate::binary_serde::hash")]
    pub head_hash: [u8; 32],
    /// Per-branch state; `main` always exists, every other branch is made by a
    /// `branch.created` event.
    pub branches: BTreeMap<String, BranchState>,
    /// Where each branch but `main` came from.
    #[serde(default)]
    pub branch_origins: BTreeMap<String, BranchOrigin>,
    /// Events of unknown reserved types that were skipped (a newer writer's events).
    pub unknown_events: u64,
}

impl Default for State {
    /// The state before any event: an empty `main`.
    fn default() -> Self {
        State {
            head: 0,
            head_hash: crate::envelope::GENESIS_HASH,
            branches: BTreeMap::from([(MAIN_BRANCH.to_owned(), BranchState::default())]),
            branch_origins: BTreeMap::new(),
            unknown_events: 0,
        }
    }
}

impl State {
    /// The state of `branch`, if it exists (`main` always does).
    pub fn branch(&self, name: &str) -> Option<&BranchState> {
        self.branches.get(name)
    }

    /// Whether `name` is an existing branch (`main` always is).
    pub fn has_branch(&self, name: &str) -> bool {
        name == MAIN_BRANCH || self.branches.contains_key(name)
    }

    /// The version of `stream` on `branch`.
    pub fn stream_version(&self, branch: &str, stream: &str) -> u64 {
        self.branch(branch)
            .map_or(0, |state| state.stream_version(stream))
    }

    /// Folds one committed event into the state.
    ///
    /// A `branch.created` makes its branch (see [`crate::branches`]): as a
    /// copy of the parent if it forks at the head, else empty until the caller hands the
    /// parent's older state to [`State::fork_branch`].
    ///
    /// # Panics
    /// If `event.seq` does not follow the last applied seq, or if `event.branch` does not
    /// exist: the engine checks the branch before deciding and replay applies the log in
    /// order, so anything else is a programmer error.
    pub fn apply(&mut self, event: &Envelope) {
        assert_eq!(event.seq, self.head + 1, "events are applied in seq order");
        self.head = event.seq;
        self.head_hash = event.hash;
        // Forking copies the parent before this event counts in any stream.
        let branch_created = (event.event_type == coordination::event_types::BRANCH_CREATED)
            .then(|| self.apply_created(event));
        let branch = self.branches.get_mut(&event.branch).unwrap_or_else(|| {
            panic!(
                "event seq {} is on branch '{}', which does not exist",
                event.seq, event.branch
            )
        });
        *branch.streams.entry(event.stream.clone()).or_insert(0) += 1;
        if let Some(known) = branch_created {
            if !known {
                self.unknown_events += 1;
            }
            return;
        }
        if !crate::catalog::is_reserved(&event.event_type) {
            return;
        }
        let data = event.data_value();
        let known = coordination::apply(&mut branch.coordination, event, &data)
            || work::apply(&mut branch.work, event, &data);
        if !known {
            self.unknown_events += 1;
        }
    }

    /// Folds a `branch.created`: registers the branch, as a copy of its parent's current
    /// state if it forks at the head, else empty until [`State::fork_branch`] fills it.
    /// Returns false (the event is then counted as unknown) if the data is malformed, the
    /// name is taken or the parent does not exist, none of which
    /// [`crate::branches::decide_create`] lets through.
    fn apply_created(&mut self, event: &Envelope) -> bool {
        let Some(point) = ForkPoint::from_event(event) else {
            return false;
        };
        if self.branches.contains_key(&point.name) {
            return false;
        }
        let Some(parent) = self.branches.get(&point.from) else {
            return false;
        };
        let fork = if point.needs_parent_state() {
            BranchState::default()
        } else {
            parent.clone()
        };
        self.branches.insert(point.name.clone(), fork);
        self.branch_origins.insert(
            point.name,
            BranchOrigin {
                from: point.from,
                at: point.at,
                created_seq: point.created_seq,
            },
        );
        true
    }
}

/// Where a branch came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchOrigin {
    /// The parent branch.
    pub from: String,
    /// The seq of the parent's state the branch started from.
    pub at: u64,
    /// The seq of the `branch.created` event.
    pub created_seq: u64,
}

/// A `branch.created` event as a replay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkPoint {
    /// The new branch.
    pub name: String,
    /// Its parent.
    pub from: String,
    /// The seq of the parent's state it starts from.
    pub at: u64,
    /// The seq of the `branch.created` event.
    pub created_seq: u64,
}

/// The data of `branch.created`.
#[derive(Deserialize)]
struct CreatedData {
    name: String,
    from: String,
    at: u64,
}

impl ForkPoint {
    /// The fork point of a `branch.created` event; `None` for any other event.
    pub fn from_event(event: &Envelope) -> Option<ForkPoint> {
        if event.event_type != coordination::event_types::BRANCH_CREATED {
            return None;
        }
        let data = CreatedData::deserialize(&event.data_value()).ok()?;
        Some(ForkPoint {
            name: data.name,
            from: data.from,
            at: data.at,
            created_seq: event.seq,
        })
    }

    /// Whether the fork is older than the event that created it, so that applying the
    /// event cannot take the parent's state from the current state: the caller must
    /// provide it with [`State::fork_branch`].
    pub fn needs_parent_state(&self) -> bool {
        self.at + 1 < self.created_seq
    }
}

/// A custom (non-reserved) event a client asks to append.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    /// The event's type; must not be reserved.
    pub event_type: String,
    /// The event's stream.
    pub stream: String,
    /// The payload as compact JSON text (what `Value::to_string` writes).
    pub data: String,
    /// If set, the stream must have exactly this many events before this one.
    pub expected_version: Option<u64>,
}

/// Decides an atomic batch of custom appends: every `expected_version` is checked against
/// the stream's version as it would be after the earlier events of the same batch.
pub fn decide_append<'a>(
    state: &State,
    branch: &str,
    requests: impl IntoIterator<Item = &'a AppendRequest>,
) -> Result<Vec<EventDraft>, Rejection> {
    let mut pending: HashMap<&str, u64> = HashMap::new();
    let mut drafts = Vec::new();
    for (index, request) in requests.into_iter().enumerate() {
        if crate::catalog::is_reserved(&request.event_type) {
            return Err(Rejection::new(
                Code::ReservedType,
                format!(
                    "event type '{}' uses a reserved prefix; only the server's rules write it",
                    request.event_type
                ),
            )
            .with("index", index));
        }
        let current = pending
            .get(request.stream.as_str())
            .copied()
            .unwrap_or_else(|| state.stream_version(branch, &request.stream));
        if let Some(expected) = request.expected_version {
            if expected != current {
                return Err(Rejection::new(
                    Code::VersionConflict,
                    format!(
                        "stream '{}' is at version {current}, not the expected {expected}",
                        request.stream
                    ),
                )
                .with("stream", request.stream.clone())
                .with("expected_version", expected)
                .with("current_version", current)
                .with("index", index));
            }
        }
        pending.insert(&request.stream, current + 1);
        drafts.push(EventDraft {
            event_type: request.event_type.clone(),
            stream: request.stream.clone(),
            data: Payload::Text(request.data.clone()),
            actor: None,
        });
    }
    Ok(drafts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::GENESIS_HASH;
    use serde_json::json;

    fn event(seq: u64, stream: &str) -> Envelope {
        Envelope {
            seq,
            ts_ms: 0,
            branch: MAIN_BRANCH.into(),
            event_type: "order.placed".into(),
            stream: stream.into(),
            actor: "a".into(),
            session: None,
            correlation: None,
            meta: None,
            data: "{}".into(),
            hash: GENESIS_HASH,
            idempotency: None,
        }
    }

    fn append(stream: &str, expected_version: Option<u64>) -> AppendRequest {
        AppendRequest {
            event_type: "order.placed".into(),
            stream: stream.into(),
            data: "{}".into(),
            expected_version,
        }
    }

    #[test]
    fn expected_version_is_checked_within_a_batch() {
        let mut state = State::default();
        state.apply(&event(1, "order/1"));
        let ok = decide_append(
            &state,
            MAIN_BRANCH,
            &[append("order/1", Some(1)), append("order/1", Some(2))],
        );
        assert_eq!(ok.map(|drafts| drafts.len()), Ok(2));
        let conflict = decide_append(
            &state,
            MAIN_BRANCH,
            &[append("order/1", Some(1)), append("order/1", Some(1))],
        )
        .expect_err("the second event expects a version the first one moved");
        assert_eq!(conflict.code, "version_conflict");
        assert_eq!(conflict.details["current_version"], json!(2));
        assert_eq!(conflict.details["index"], json!(1));
    }

    #[test]
    fn reserved_types_are_refused() {
        let mut request = append("task/1", None);
        request.event_type = "task.claimed".into();
        let rejection =
            decide_append(&State::default(), MAIN_BRANCH, &[request]).expect_err("reserved");
        assert_eq!(rejection.code, "reserved_type");
        assert_eq!(rejection.kind, RejectionKind::Invalid);
    }

    #[test]
    fn apply_counts_stream_versions_per_branch() {
        let mut state = State::default();
        state.apply(&event(1, "order/1"));
        let mut fork = event(2, "branch/b");
        fork.event_type = "branch.created".into();
        fork.data = r#"{"name":"b","from":"main","at":1}"#.into();
        state.apply(&fork);
        let mut on_branch = event(3, "order/1");
        on_branch.branch = "b".into();
        state.apply(&on_branch);
        assert_eq!(state.stream_version(MAIN_BRANCH, "order/1"), 1);
        assert_eq!(
            state.stream_version("b", "order/1"),
            2,
            "b forked from main after seq 1"
        );
        assert_eq!(state.stream_version(MAIN_BRANCH, "branch/b"), 1);
        assert_eq!(
            state.stream_version("b", "branch/b"),
            0,
            "the fork is the parent's state before the event"
        );
        assert_eq!(state.stream_version(MAIN_BRANCH, "order/2"), 0);
        assert_eq!(state.head, 3);
    }

    #[test]
    fn main_exists_before_any_event() {
        let state = State::default();
        assert!(state.branch(MAIN_BRANCH).is_some());
        assert!(!state.has_branch("b"));
    }
}
