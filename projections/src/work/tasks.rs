//! Tasks (SPEC §3 "Tasks"): creation with dependencies and approval gates, atomic claims
//! from a priority index, claim leases, assignment strategies, auctions, and the
//! transitions that end a task.
//!
//! Status moves `blocked` (a dependency is not completed yet) → `awaiting_approval` (only
//! with `requires_approval`, until `approve`) → `pending` → `claimed` → `completed` |
//! `failed` | `cancelled`. A task leaves `blocked` when its last dependency completes; that
//! transition is derived by `apply` from the dependency's `task.completed`, so it needs no
//! event of its own. A failed or cancelled task cancels its dependents, transitively, with
//! one explicit `task.cancelled` per dependent.
//!
//! Claims pick from the pending index: pending tasks grouped by (type, required
//! capabilities), each group ordered by (priority descending, creation seq ascending). A
//! claim looks at the head of every group the agent qualifies for and takes the best, so
//! it costs O(G log n) for G distinct (type, capability set) pairs among pending tasks,
//! whatever the number n of pending tasks: a swarm with a handful of task kinds claims
//! from 100,000 pending tasks in microseconds. (A swarm that gives every task its own
//! type pays O(n) per claim; grouping by type is what makes the `types` filter cheap.)
//!
//! The parts, bottom up: `spec` (input and defaults), `model` (the entities), `events`
//! (event data), `claim_index` (the pending index and claim selection), `views` (JSON and
//! listing), `apply` (folding events), `decide` (one function per command), `leases`
//! (claim leases over time) and `auctions`. This file only declares them and hands on
//! what the rest of the crate uses.

mod apply;
mod auctions;
mod claim_index;
mod decide;
mod events;
mod leases;
mod model;
mod spec;
mod views;

#[cfg(test)]
mod testing;

pub use auctions::bid_score;
pub use model::{
    Auction, AuctionStatus, Bid, HistoryEntry, PendingEntry, PendingGroup, Progress, Task,
    TaskStatus, Tasks,
};
pub use spec::{
    AssignSpec, AssignStrategy, AuctionSpec, BidSpec, CancelSpec, ClaimSpec, CompleteSpec,
    FailSpec, ProgressSpec, ReleaseSpec, TaskDefinition, TaskSpec, MAX_ATTEMPTS_DEFAULT,
    MAX_ATTEMPTS_MAX, PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN, TIMEOUT_MS_DEFAULT,
};
pub use views::TaskFilter;

pub(super) use apply::apply;
pub(super) use auctions::{auction_deadline, decide_auction, decide_bid};
pub(super) use decide::{
    decide_approve, decide_assign, decide_cancel, decide_claim, decide_complete, decide_create,
    decide_fail, decide_progress, decide_release,
};
pub(super) use leases::{lease_expired, requeue_claims_of, restart_leases};
