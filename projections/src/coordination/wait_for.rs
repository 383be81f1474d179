//! The wait-for graph of parked lock requests, used to refuse the request that would close
//! a cycle (SPEC §3 "Locks": 409 `deadlock` with the `cycle`).
//!
//! Waiting is the engine's business: it parks a request refused with `lock_held` and
//! decides it again when a lock is released or expires. The graph is the engine's book of
//! those parked requests (one graph per branch, since locks are per branch); who holds
//! what comes from the branch state. An owner waits for every live holder that blocks one
//! of the resources it asked for, so before parking a request the engine asks
//! [`WaitForGraph::would_deadlock`]: if some blocker already waits, directly or through
//! others, for the requesting owner, parking would freeze them all.
//!
//! The graph is in memory only. A restart drops every parked request (their HTTP requests
//! are gone too), so there is nothing to replay.

use crate::rejection::Code;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::event_types;
use super::locks::{self, LockMode};
use super::Coordination;
use crate::envelope::EventDraft;
use crate::rejection::Rejection;

/// Identifies one parked request in a [`WaitForGraph`]; ids grow, so they order waiters
/// first come, first served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WaiterId(pub u64);

/// A parked lock request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    /// Who waits.
    pub owner: String,
    /// What it waits for, all of them.
    pub resources: Vec<String>,
    /// The mode it asked for.
    pub mode: LockMode,
}

/// One step of a cycle: `owner` waits for `resource`, which `held_by` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitEdge {
    /// The waiting owner.
    pub owner: String,
    /// The resource it waits for.
    pub resource: String,
    /// The holder it waits for.
    pub held_by: String,
}

/// A cycle in the wait-for graph: the first edge starts at the requesting owner and the
/// last ends at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlockCycle {
    /// The edges, in order.
    pub edges: Vec<WaitEdge>,
}

impl DeadlockCycle {
    /// The owners around the cycle, starting with the requesting owner (not repeated).
    pub fn owners(&self) -> Vec<&str> {
        self.edges.iter().map(|edge| edge.owner.as_str()).collect()
    }

    /// The JSON form of the `cycle` in the 409 and in `lock.deadlock_detected`:
    /// `[{"owner","resource","held_by"}, ...]`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.edges).expect("edges of strings serialize")
    }

    /// The 409 `deadlock` answer for `owner`'s request.
    pub fn rejection(&self, owner: &str) -> Rejection {
        Rejection::new(
            Code::Deadlock,
            format!(
                "waiting would deadlock: {} wait for each other",
                self.owners().join(" -> ")
            ),
        )
        .with("owner", owner)
        .with("cycle", self.to_json())
    }

    /// The `lock.deadlock_detected` draft the engine appends with the 409, on the stream
    /// of the first resource asked for: `{"owner","resources","cycle"}`.
    pub fn draft(&self, owner: &str, resources: &[String]) -> EventDraft {
        let stream = resources
            .first()
            .map_or_else(|| locks::stream(""), |resource| locks::stream(resource));
        EventDraft::new(
            event_types::LOCK_DEADLOCK_DETECTED,
            stream,
            json!({"owner": owner, "resources": resources, "cycle": self.to_json()}),
        )
    }
}

/// The parked lock requests of one branch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WaitForGraph {
    next_id: u64,
    waiters: BTreeMap<WaiterId, Waiter>,
}

impl WaitForGraph {
    /// An empty graph.
    pub fn new() -> Self {
        WaitForGraph::default()
    }

    /// Parks a request; returns its id for [`WaitForGraph::remove_waiter`].
    pub fn add_waiter(&mut self, owner: &str, resources: &[String], mode: LockMode) -> WaiterId {
        let id = WaiterId(self.next_id);
        self.next_id += 1;
        self.waiters.insert(
            id,
            Waiter {
                owner: owner.to_owned(),
                resources: resources.to_vec(),
                mode,
            },
        );
        id
    }

    /// Unparks a request (granted, timed out, or its client went away). Removing an id
    /// twice is harmless.
    pub fn remove_waiter(&mut self, id: WaiterId) -> Option<Waiter> {
        self.waiters.remove(&id)
    }

    /// The parked requests, first come first.
    pub fn waiters(&self) -> impl Iterator<Item = (WaiterId, &Waiter)> {
        self.waiters.iter().map(|(id, waiter)| (*id, waiter))
    }

    /// The parked requests that wait for `resource`, first come first (for
    /// `GET /v1/locks/{resource}` and to wake them in FIFO order).
    pub fn waiters_for<'a>(
        &'a self,
        resource: &'a str,
    ) -> impl Iterator<Item = (WaiterId, &'a Waiter)> + 'a {
        self.waiters()
            .filter(move |(_, waiter)| waiter.resources.iter().any(|wanted| wanted == resource))
    }

    /// Waiters are served in arrival order: 409 `lock_held` if any of `resources` has a
    /// parked request of another owner that came before this one, with details
    /// `resource` (the first such resource) and `waiters` (how many are ahead on it).
    ///
    /// `earlier_than` is this request's own id when it is a parked waiter being decided
    /// again (only waiters that arrived before it count), or `None` for a new request
    /// (every parked waiter is ahead of it). An owner's own waiters never block it.
    /// The engine calls it before deciding a lock acquire, after the lock-order check.
    pub fn check_fifo(
        &self,
        owner: &str,
        resources: &[String],
        earlier_than: Option<WaiterId>,
    ) -> Result<(), Rejection> {
        for resource in resources {
            let ahead = self
                .waiters_for(resource)
                .filter(|(id, waiter)| {
                    earlier_than.is_none_or(|mine| *id < mine) && waiter.owner != owner
                })
                .count();
            if ahead > 0 {
                return Err(Rejection::new(
                    Code::LockHeld,
                    format!(
                        "lock '{resource}' has {ahead} earlier waiter(s); they are served first"
                    ),
                )
                .with("resource", resource.clone())
                .with("waiters", ahead));
            }
        }
        Ok(())
    }

    /// Whether parking `owner`'s request for `resources` in `mode` would close a cycle,
    /// given who holds what at `now_ms`: the shortest such cycle, or `None`.
    pub fn would_deadlock(
        &self,
        branch: &impl AsRef<Coordination>,
        owner: &str,
        resources: &[String],
        mode: LockMode,
        now_ms: i64,
    ) -> Option<DeadlockCycle> {
        let branch = branch.as_ref();
        // Breadth-first from the requesting owner over "waits for" edges; the first time
        // the search comes back to the owner, the path is the shortest cycle.
        let mut came_from: BTreeMap<String, WaitEdge> = BTreeMap::new();
        let mut visited: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<String> = VecDeque::new();
        for edge in blocking_edges(branch, owner, resources, mode, now_ms) {
            if edge.held_by == owner {
                continue;
            }
            if visited.insert(edge.held_by.clone()) {
                queue.push_back(edge.held_by.clone());
                came_from.insert(edge.held_by.clone(), edge);
            }
        }
        while let Some(current) = queue.pop_front() {
            for waiter in self
                .waiters
                .values()
                .filter(|waiter| waiter.owner == current)
            {
                for edge in blocking_edges(branch, &current, &waiter.resources, waiter.mode, now_ms)
                {
                    if edge.held_by == owner {
                        let mut edges = vec![edge];
                        let mut step = current.clone();
                        while let Some(previous) = came_from.get(&step) {
                            edges.push(previous.clone());
                            step = previous.owner.clone();
                        }
                        edges.reverse();
                        return Some(DeadlockCycle { edges });
                    }
                    if visited.insert(edge.held_by.clone()) {
                        queue.push_back(edge.held_by.clone());
                        came_from.insert(edge.held_by.clone(), edge);
                    }
                }
            }
        }
        None
    }
}

/// The edges from `owner` to every live holder that blocks one of `resources` in `mode`.
fn blocking_edges(
    branch: &Coordination,
    owner: &str,
    resources: &[String],
    mode: LockMode,
    now_ms: i64,
) -> Vec<WaitEdge> {
    let mut edges = Vec::new();
    for resource in resources {
        let Some(lock) = locks::lock_info(branch, resource) else {
            continue;
        };
        for holder in lock.blockers(owner, mode, now_ms) {
            edges.push(WaitEdge {
                owner: owner.to_owned(),
                resource: resource.clone(),
                held_by: holder.to_owned(),
            });
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::testing::{acquire, Harness};
    use crate::rejection::RejectionKind;

    fn names(resources: &[&str]) -> Vec<String> {
        resources
            .iter()
            .map(|resource| (*resource).to_owned())
            .collect()
    }

    #[test]
    fn two_owners_waiting_for_each_other_are_a_cycle() {
        let mut harness = Harness::new();
        harness.ok(acquire("r1", "a", 10_000, LockMode::Exclusive));
        harness.ok(acquire("r2", "b", 10_000, LockMode::Exclusive));
        let now = harness.now_ms;
        let mut graph = WaitForGraph::new();
        assert_eq!(
            graph.would_deadlock(
                harness.main(),
                "a",
                &names(&["r2"]),
                LockMode::Exclusive,
                now
            ),
            None
        );
        let waiting = graph.add_waiter("a", &names(&["r2"]), LockMode::Exclusive);
        let cycle = graph
            .would_deadlock(
                harness.main(),
                "b",
                &names(&["r1"]),
                LockMode::Exclusive,
                now,
            )
            .expect("b waits for a, which waits for b");
        assert_eq!(cycle.owners(), ["b", "a"]);
        assert_eq!(
            cycle.to_json(),
            json!([{"owner": "b", "resource": "r1", "held_by": "a"}, {"owner": "a", "resource": "r2", "held_by": "b"}])
        );
        let rejection = cycle.rejection("b");
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Conflict, "deadlock")
        );
        assert_eq!(rejection.details["cycle"], cycle.to_json());
        let draft = cycle.draft("b", &names(&["r1"]));
        assert_eq!(
            (draft.event_type.as_str(), draft.stream.as_str()),
            ("lock.deadlock_detected", "lock/r1")
        );
        assert_eq!(
            draft.data.as_tree().map(|data| &data["cycle"]),
            Some(&cycle.to_json())
        );
        let before = harness.state.clone();
        harness.commit(crate::state::MAIN_BRANCH, vec![draft], "b");
        assert_eq!(harness.state.unknown_events, 0);
        assert_eq!(
            harness.main().coordination,
            before.branches["main"].coordination,
            "an audit record only"
        );
        // Once a stops waiting there is no cycle.
        graph.remove_waiter(waiting);
        assert_eq!(
            graph.would_deadlock(
                harness.main(),
                "b",
                &names(&["r1"]),
                LockMode::Exclusive,
                now
            ),
            None
        );
    }

    #[test]
    fn longer_cycles_are_found_and_expired_holds_break_them() {
        let mut harness = Harness::new();
        harness.ok(acquire("r1", "a", 10_000, LockMode::Exclusive));
        harness.ok(acquire("r2", "b", 10_000, LockMode::Exclusive));
        harness.ok(acquire("r3", "c", 1_000, LockMode::Exclusive));
        let now = harness.now_ms;
        let mut graph = WaitForGraph::new();
        graph.add_waiter("a", &names(&["r2"]), LockMode::Exclusive);
        graph.add_waiter("b", &names(&["r3"]), LockMode::Exclusive);
        let cycle = graph
            .would_deadlock(
                harness.main(),
                "c",
                &names(&["r1"]),
                LockMode::Exclusive,
                now,
            )
            .expect("c -> a -> b -> c");
        assert_eq!(cycle.owners(), ["c", "a", "b"]);
        assert_eq!(cycle.edges[2].held_by, "c");
        assert_eq!(
            graph.would_deadlock(
                harness.main(),
                "c",
                &names(&["r1"]),
                LockMode::Exclusive,
                now + 1_000
            ),
            None,
            "c's hold on r3 has expired, so b is not stuck behind c"
        );
        assert_eq!(
            graph.would_deadlock(
                harness.main(),
                "d",
                &names(&["r1"]),
                LockMode::Exclusive,
                now
            ),
            None
        );
    }

    #[test]
    fn shared_requests_on_a_shared_lock_do_not_wait() {
        let mut harness = Harness::new();
        harness.ok(acquire("doc", "a", 10_000, LockMode::Shared));
        harness.ok(acquire("r2", "b", 10_000, LockMode::Exclusive));
        let now = harness.now_ms;
        let mut graph = WaitForGraph::new();
        graph.add_waiter("a", &names(&["r2"]), LockMode::Exclusive);
        assert_eq!(
            graph.would_deadlock(harness.main(), "b", &names(&["doc"]), LockMode::Shared, now),
            None
        );
        assert!(graph
            .would_deadlock(
                harness.main(),
                "b",
                &names(&["doc"]),
                LockMode::Exclusive,
                now
            )
            .is_some());
    }

    #[test]
    fn waiters_are_listed_first_come_first() {
        let mut graph = WaitForGraph::new();
        let first = graph.add_waiter("a", &names(&["x", "y"]), LockMode::Exclusive);
        let second = graph.add_waiter("b", &names(&["y"]), LockMode::Shared);
        graph.add_waiter("c", &names(&["z"]), LockMode::Exclusive);
        let for_y: Vec<WaiterId> = graph.waiters_for("y").map(|(id, _)| id).collect();
        assert_eq!(for_y, [first, second]);
        assert_eq!(
            graph.remove_waiter(first).map(|waiter| waiter.owner),
            Some("a".to_owned())
        );
        assert_eq!(graph.remove_waiter(first), None);
        assert_eq!(graph.waiters_for("y").count(), 1);
    }

    #[test]
    fn a_new_request_waits_behind_every_earlier_waiter_of_another_owner() {
        let mut graph = WaitForGraph::new();
        graph.add_waiter("a", &names(&["x"]), LockMode::Exclusive);
        graph.add_waiter("b", &names(&["x", "y"]), LockMode::Shared);
        let refused = graph
            .check_fifo("c", &names(&["y", "x"]), None)
            .expect_err("b waits for y");
        assert_eq!(refused.code, Code::LockHeld);
        assert_eq!(refused.kind, RejectionKind::Conflict);
        assert_eq!(refused.details["resource"], json!("y"));
        assert_eq!(refused.details["waiters"], json!(1));
        let on_x = graph
            .check_fifo("c", &names(&["x"]), None)
            .expect_err("a and b wait");
        assert_eq!(on_x.details["waiters"], json!(2));
        assert_eq!(graph.check_fifo("c", &names(&["z"]), None), Ok(()));
    }

    #[test]
    fn an_owner_is_not_blocked_by_its_own_waiters() {
        let mut graph = WaitForGraph::new();
        graph.add_waiter("a", &names(&["x"]), LockMode::Exclusive);
        assert_eq!(graph.check_fifo("a", &names(&["x"]), None), Ok(()));
    }

    #[test]
    fn a_parked_waiter_counts_only_the_waiters_that_came_before_it() {
        let mut graph = WaitForGraph::new();
        let first = graph.add_waiter("a", &names(&["x"]), LockMode::Exclusive);
        let second = graph.add_waiter("b", &names(&["x"]), LockMode::Exclusive);
        graph.add_waiter("c", &names(&["x"]), LockMode::Exclusive);
        assert_eq!(graph.check_fifo("a", &names(&["x"]), Some(first)), Ok(()));
        let refused = graph
            .check_fifo("b", &names(&["x"]), Some(second))
            .expect_err("a came first");
        assert_eq!(refused.details["waiters"], json!(1));
        graph.remove_waiter(first);
        assert_eq!(graph.check_fifo("b", &names(&["x"]), Some(second)), Ok(()));
    }
}
