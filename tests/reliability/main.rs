//! The reliability suite (RELIABILITY.md): attacks on a real `swarmlog serve` process that
//! must not lose or invent anything.
//!
//! - `kill_loop`: many kill -9 cycles under 8 concurrent writers; every acknowledged event
//!   survives exactly once, in order, with no gap, and `swarmlog verify` passes.
//! - `linearizability`: histories of CAS and lock operations from 16 concurrent clients
//!   with a kill -9 and a restart in the middle, checked with stateright's linearizability
//!   tester.
//!
//! How many cycles and histories run is set by the environment (`SWARMLOG_KILL_CYCLES`,
//! `SWARMLOG_LIN_HISTORIES`); the defaults are the CI figures, RELIABILITY.md gives the long
//! runs.

#[path = "../it/support.rs"]
mod support;

mod kill_loop;
mod linearizability;

/// A count from the environment, or `default`.
fn count_from_env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not '{text}'")),
        Err(_) => default,
    }
}
