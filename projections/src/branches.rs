//! Branches (SPEC §3 "Branches"): a `branch.created` event forks the whole state of the
//! parent branch as it was after seq `at`; later writes on either side stay on their side.
//!
//! Forking at the head is a clone of the parent's current state, which [`State::apply`]
//! does by itself. Forking at an earlier seq needs the parent's state at that seq, which a
//! fold over the log does not have at hand. Two ways to provide it:
//! - live, and in a one-pass recovery: after applying a `branch.created` whose
//!   [`ForkPoint::needs_parent_state`] is true, compute the parent's state at `at` (by
//!   replaying the log up to `at`) and hand it to [`State::fork_branch`];
//! - in a two-pass replay: collect the fork points first ([`ForkPoint::from_event`]),
//!   then fold with a [`Replayer`], which keeps a copy of each parent as it passes `at`.
//!   [`State::replay`] does both passes over events in memory.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::coordination::event_types;
use crate::envelope::{Envelope, EventDraft};
use crate::rejection::{check_id, Code, Rejection};
use crate::state::{BranchState, State, MAIN_BRANCH};

// Kept here, where the server and the replay helpers have always found them; they are
// part of the state, which folds `branch.created` itself.
pub use crate::state::{BranchOrigin, ForkPoint};

/// The stream of branch `name`.
pub fn stream(name: &str) -> String {
    format!("branch/{name}")
}

/// The branches for `GET /v1/branches`, in name order: `{"name","from"?,"at"?,"created_seq"?}`
/// (`main` has no origin).
pub fn list_branches(state: &State) -> Vec<Value> {
    state
        .branches
        .keys()
        .map(|name| match state.branch_origins.get(name) {
            None => json!({"name": name}),
            Some(origin) => json!({"name": name, "from": origin.from, "at": origin.at, "created_seq": origin.created_seq}),
        })
        .collect()
}

/// Decides `POST /v1/branches`: a `branch.created` forking `from` at `at` (the head if
/// `None`) into the new branch `name`.
pub fn decide_create(
    state: &State,
    name: &str,
    from: &str,
    at: Option<u64>,
) -> Result<Vec<EventDraft>, Rejection> {
    check_id("name", name)?;
    if state.has_branch(name) {
        return Err(Rejection::new(
            Code::BranchExists,
            format!("branch '{name}' already exists"),
        )
        .with("name", name));
    }
    if !state.has_branch(from) {
        return Err(Rejection::new(
            Code::BranchNotFound,
            format!("parent branch '{from}' does not exist"),
        )
        .with("branch", from));
    }
    let at = at.unwrap_or(state.head);
    if at > state.head {
        return Err(invalid_at(format!(
            "cannot fork at seq {at}: the head is seq {}",
            state.head
        )));
    }
    if let Some(origin) = state.branch_origins.get(from) {
        if at < origin.created_seq {
            return Err(invalid_at(format!(
                "cannot fork '{from}' at seq {at}: it was created at seq {}",
                origin.created_seq
            )));
        }
    }
    Ok(vec![EventDraft::new(
        event_types::BRANCH_CREATED,
        stream(name),
        json!({"name": name, "from": from, "at": at}),
    )])
}

/// A 422 `invalid_value` for the `at` of a fork.
fn invalid_at(message: String) -> Rejection {
    Rejection::new(Code::InvalidValue, message).with("field", "at")
}

impl State {
    /// Sets the state of branch `name`, just created by a `branch.created` whose
    /// [`ForkPoint::needs_parent_state`] is true, to `parent_state_at`: its parent's state
    /// after seq `at`.
    ///
    /// # Panics
    /// If `name` is not a branch: the engine calls this right after applying the event
    /// that created it.
    pub fn fork_branch(&mut self, name: &str, parent_state_at: BranchState) {
        assert!(name != MAIN_BRANCH, "main is never forked");
        let branch = self.branches.get_mut(name).unwrap_or_else(|| {
            panic!("fork_branch('{name}') before its branch.created was applied")
        });
        *branch = parent_state_at;
    }

    /// Rebuilds the state by folding `events` (the log from seq 1, or any prefix of it),
    /// forks included: a first pass collects the fork points, a second folds with a
    /// [`Replayer`].
    pub fn replay(events: &[Envelope]) -> State {
        let fork_points: Vec<ForkPoint> = events.iter().filter_map(ForkPoint::from_event).collect();
        let mut replayer = Replayer::new(State::default(), fork_points)
            .expect("a replay from seq 1 serves every fork");
        for event in events {
            replayer.apply(event);
        }
        replayer.finish()
    }
}

/// Folds events onto a start state (empty, or a snapshot), keeping a copy of each fork's
/// parent as the fold passes the fork's `at`, so that forks to earlier seqs replay exactly.
#[derive(Debug)]
pub struct Replayer {
    state: State,
    /// Forks still to come that need their parent's state, by `at`.
    waiting: BTreeMap<u64, Vec<ForkPoint>>,
    /// Parent states kept for forks still to come, by the new branch's name.
    kept: BTreeMap<String, BranchState>,
}

impl Replayer {
    /// A replayer from `start` that will meet the `fork_points` of the events to come (fork
    /// points of events already in `start` are ignored). Refuses, returning the first such
    /// fork point, when a fork still to come forks at a seq before `start.head`: its parent's
    /// state is not in `start`, so the replay must start earlier (an older snapshot, or seq 1).
    pub fn new(
        start: State,
        fork_points: impl IntoIterator<Item = ForkPoint>,
    ) -> Result<Replayer, ForkPoint> {
        let mut waiting: BTreeMap<u64, Vec<ForkPoint>> = BTreeMap::new();
        for point in fork_points {
            if point.created_seq <= start.head || !point.needs_parent_state() {
                continue;
            }
            if point.at < start.head {
                return Err(point);
            }
            waiting.entry(point.at).or_default().push(point);
        }
        let mut replayer = Replayer {
            state: start,
            waiting,
            kept: BTreeMap::new(),
        };
        replayer.keep_parents();
        Ok(replayer)
    }

    /// Folds the next event.
    pub fn apply(&mut self, event: &Envelope) {
        self.state.apply(event);
        if let Some(point) = ForkPoint::from_event(event) {
            if let Some(parent) = self.kept.remove(&point.name) {
                if point.needs_parent_state() && self.state.has_branch(&point.name) {
                    self.state.fork_branch(&point.name, parent);
                }
            }
        }
        self.keep_parents();
    }

    /// The state so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state after the last event.
    pub fn finish(self) -> State {
        self.state
    }

    fn keep_parents(&mut self) {
        let Some(points) = self.waiting.remove(&self.state.head) else {
            return;
        };
        for point in points {
            if let Some(parent) = self.state.branches.get(&point.from) {
                self.kept.insert(point.name, parent.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::cells::get_kv;
    use crate::coordination::testing::{acquire, Harness};
    use crate::coordination::{locks::LockMode, CoordinationCommand as C};
    use crate::rejection::RejectionKind;

    fn put(key: &str, value: &str) -> C {
        C::KvPut {
            key: key.into(),
            value: json!(value),
        }
    }
    fn create(name: &str, from: &str, at: Option<u64>) -> C {
        C::BranchCreate {
            name: name.into(),
            from: from.into(),
            at,
        }
    }
    fn kv(harness: &Harness, branch: &str, key: &str) -> Option<Value> {
        harness
            .state
            .branch(branch)
            .and_then(|state| get_kv(state, key))
            .map(|entry| entry.value.clone())
    }

    #[test]
    fn writes_on_a_branch_are_invisible_elsewhere() {
        let mut harness = Harness::new();
        harness.ok(put("shared", "before"));
        let events = harness.ok(create("agent-1", "main", None));
        assert_eq!(
            events[0].data_value(),
            json!({"name": "agent-1", "from": "main", "at": 1})
        );
        assert_eq!(events[0].stream, "branch/agent-1");
        harness.ok(create("agent-2", "main", None));
        harness.ok_on("agent-1", put("result", "Agent 1 result"));
        harness.ok_on("agent-2", put("result", "Agent 2 result"));
        harness.ok(put("shared", "after"));
        assert_eq!(
            kv(&harness, "agent-1", "result"),
            Some(json!("Agent 1 result"))
        );
        assert_eq!(
            kv(&harness, "agent-2", "result"),
            Some(json!("Agent 2 result"))
        );
        assert_eq!(kv(&harness, "main", "result"), None);
        assert_eq!(
            kv(&harness, "agent-1", "shared"),
            Some(json!("before")),
            "the fork saw main as it was"
        );
        assert_eq!(kv(&harness, "main", "shared"), Some(json!("after")));
        let listed = list_branches(&harness.state);
        assert_eq!(
            listed[0],
            json!({"name": "agent-1", "from": "main", "at": 1, "created_seq": 2})
        );
        assert_eq!(listed[2], json!({"name": "main"}));
    }

    #[test]
    fn a_fork_in_the_past_sees_the_parent_as_it_was() {
        let mut harness = Harness::new();
        harness.ok(put("k", "one"));
        harness.ok(acquire("db", "a", 10_000, LockMode::Exclusive));
        harness.ok(put("k", "two"));
        harness.ok(create("old", "main", Some(1)));
        assert_eq!(kv(&harness, "old", "k"), Some(json!("one")));
        assert!(harness.state.branches["old"].coordination.locks.is_empty());
        harness.ok(create("older", "main", Some(0)));
        assert_eq!(harness.state.branches["older"], BranchState::default());
        harness.ok_on("old", put("k", "three"));
        harness.ok(create("grandchild", "old", None));
        assert_eq!(kv(&harness, "grandchild", "k"), Some(json!("three")));
        assert_eq!(
            State::replay(&harness.log),
            harness.state,
            "replay reproduces forks in the past"
        );
    }

    #[test]
    fn create_is_validated() {
        let mut harness = Harness::new();
        harness.ok(put("k", "v"));
        harness.ok(create("b", "main", None));
        let exists = harness.err(create("b", "main", None));
        assert_eq!(
            (exists.kind, exists.code.as_str()),
            (RejectionKind::Conflict, "branch_exists")
        );
        assert_eq!(
            harness.err(create("main", "main", None)).code.as_str(),
            "branch_exists"
        );
        let missing = harness.err(create("c", "nope", None));
        assert_eq!(
            (missing.kind, missing.code.as_str()),
            (RejectionKind::NotFound, "branch_not_found")
        );
        let future = harness.err(create("c", "main", Some(3)));
        assert_eq!(
            (future.kind, future.code.as_str()),
            (RejectionKind::Invalid, "invalid_value")
        );
        let before_parent = harness.err(create("c", "b", Some(1)));
        assert_eq!(
            before_parent.code, "invalid_value",
            "b did not exist after seq 1"
        );
        harness.ok(create("c", "b", Some(2)));
        assert_eq!(harness.err(create("", "main", None)).code, "invalid_id");
        let unknown = harness.err_on("nope", put("k", "v"));
        assert_eq!(unknown.code, "branch_not_found");
    }

    #[test]
    fn a_replayer_from_a_snapshot_refuses_forks_it_cannot_serve() {
        let mut harness = Harness::new();
        harness.ok(put("k", "one"));
        harness.ok(put("k", "two"));
        let snapshot = harness.state.clone();
        harness.ok(create("old", "main", Some(1)));
        harness.ok(create("new", "main", Some(2)));
        let points: Vec<ForkPoint> = harness
            .log
            .iter()
            .filter_map(ForkPoint::from_event)
            .collect();
        let refused = Replayer::new(snapshot.clone(), points.clone())
            .expect_err("at 1 is before the snapshot");
        assert_eq!(refused.name, "old");
        let mut replayer =
            Replayer::new(snapshot, points[1..].to_vec()).expect("at 2 is the snapshot's head");
        assert_eq!(replayer.state().head, 2);
        replayer.apply(&harness.log[2]);
        replayer.apply(&harness.log[3]);
        assert_eq!(
            replayer.finish().branches["new"],
            harness.state.branches["new"]
        );
    }
}
