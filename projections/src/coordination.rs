//! Coordination primitives (issue 3): state cells, kv, locks, agents and branches.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Envelope;
use crate::state::BranchState;

/// The coordination part of a branch's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coordination {}

/// Folds a reserved event of this domain into `branch`; returns false if the type is not
/// one of this domain's.
pub fn apply(branch: &mut BranchState, event: &Envelope, data: &Value) -> bool {
    let _ = (branch, event, data);
    false
}
