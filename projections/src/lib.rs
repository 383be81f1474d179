//! swarmlog's domain model without I/O: the event envelope, its binary encoding and hash
//! chain, the catalog of reserved event types, and the pure projection rules that fold
//! events into state.
//!
//! Nothing in this crate reads a clock, a file or a socket: time is an argument, so that
//! replaying the same events always yields the same state.
#![deny(missing_docs)]

mod binary_serde;
pub mod branches;
pub mod catalog;
pub mod coordination;
pub mod effects;
pub mod envelope;
pub mod limits;
pub mod rejection;
pub mod rules;
pub mod state;
pub mod time;
pub mod work;

pub use envelope::{
    Envelope, EnvelopeError, EventDraft, Idempotency, Payload, StoredEvent, GENESIS_HASH,
    SYSTEM_ACTOR,
};
pub use rejection::{Code, Rejection, RejectionKind};
pub use state::{AppendRequest, BranchState, State, MAIN_BRANCH};
