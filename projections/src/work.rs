//! Work and knowledge (issue 4): tasks, blackboard, proposals and votes, messages, sessions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Envelope;
use crate::state::BranchState;

/// The work part of a branch's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Work {}

/// Folds a reserved event of this domain into `branch`; returns false if the type is not
/// one of this domain's.
pub fn apply(branch: &mut BranchState, event: &Envelope, data: &Value) -> bool {
    let _ = (branch, event, data);
    false
}
