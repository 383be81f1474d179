//! Why a command was refused: a typed [`Code`] (never a string compared later), the class
//! of refusal it belongs to, a sentence for humans and structured details.
//!
//! Adapters map a rejection in one place each: the HTTP error body (status from
//! [`RejectionKind`], `error.code` from [`Code::as_str`]), the MCP tool error (text starting
//! with the code) and the CLI's exit code.

use serde_json::{Map, Value};

/// The refusal codes of SPEC §3 that the rules and the engine can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// A field has a value the operation does not accept.
    InvalidValue,
    /// An id, key, stream or branch name is empty, too long or has control characters.
    InvalidId,
    /// The entity does not exist.
    NotFound,
    /// The branch does not exist.
    BranchNotFound,
    /// A branch of that name exists already.
    BranchExists,
    /// A stream or cell is not at the expected version.
    VersionConflict,
    /// A custom event used a reserved type prefix.
    ReservedType,
    /// The lock is held by someone else (or earlier waiters are served first).
    LockHeld,
    /// The caller does not hold the lock it tried to release.
    NotOwner,
    /// A fenced write's token is not the lock's current one.
    StaleFence,
    /// Waiting for the lock would close a cycle of waiters.
    Deadlock,
    /// `serve --lock-order`: a resource sorting before one already held.
    LockOrderViolation,
    /// The lock to renew is no longer held with that token.
    LockLost,
    /// An admin killed the acting agent.
    AgentKilled,
    /// The named agent is not active.
    AgentNotActive,
    /// A create reused an id with another body.
    AlreadyExists,
    /// The hypothesis is validated already.
    AlreadyValidated,
    /// The agent voted already.
    AlreadyVoted,
    /// The task does not need approval.
    ApprovalNotRequired,
    /// The auction is closed.
    AuctionClosed,
    /// The task is being auctioned.
    AuctionOpen,
    /// The finding was added as evidence already.
    DuplicateEvidence,
    /// The task's status does not allow the operation.
    InvalidStatus,
    /// The agent lacks capabilities the task requires.
    MissingCapabilities,
    /// No agent is eligible for an assignment strategy.
    NoEligibleAgent,
    /// Only the current claimant may do this.
    NotClaimant,
    /// The agent may not vote on this proposal.
    NotEligible,
    /// Only the recipient may acknowledge a message.
    NotRecipient,
    /// The proposal is decided.
    ProposalClosed,
    /// The session is completed.
    SessionCompleted,
    /// The caller may act only as its own agent, and this is another's (SPEC §4).
    Forbidden,
}

impl Code {
    /// The snake_case `error.code`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::InvalidValue => "invalid_value",
            Code::InvalidId => "invalid_id",
            Code::NotFound => "not_found",
            Code::BranchNotFound => "branch_not_found",
            Code::BranchExists => "branch_exists",
            Code::VersionConflict => "version_conflict",
            Code::ReservedType => "reserved_type",
            Code::LockHeld => "lock_held",
            Code::NotOwner => "not_owner",
            Code::StaleFence => "stale_fence",
            Code::Deadlock => "deadlock",
            Code::LockOrderViolation => "lock_order_violation",
            Code::LockLost => "lock_lost",
            Code::AgentKilled => "agent_killed",
            Code::AgentNotActive => "agent_not_active",
            Code::AlreadyExists => "already_exists",
            Code::AlreadyValidated => "already_validated",
            Code::AlreadyVoted => "already_voted",
            Code::ApprovalNotRequired => "approval_not_required",
            Code::AuctionClosed => "auction_closed",
            Code::AuctionOpen => "auction_open",
            Code::DuplicateEvidence => "duplicate_evidence",
            Code::InvalidStatus => "invalid_status",
            Code::MissingCapabilities => "missing_capabilities",
            Code::NoEligibleAgent => "no_eligible_agent",
            Code::NotClaimant => "not_claimant",
            Code::NotEligible => "not_eligible",
            Code::NotRecipient => "not_recipient",
            Code::ProposalClosed => "proposal_closed",
            Code::SessionCompleted => "session_completed",
            Code::Forbidden => "forbidden",
        }
    }

    /// The class of refusal the code belongs to.
    pub const fn kind(self) -> RejectionKind {
        match self {
            Code::InvalidValue | Code::InvalidId | Code::ReservedType => RejectionKind::Invalid,
            Code::NotFound | Code::BranchNotFound => RejectionKind::NotFound,
            Code::AgentKilled | Code::NotEligible | Code::NotRecipient | Code::Forbidden => {
                RejectionKind::Forbidden
            }
            Code::BranchExists
            | Code::VersionConflict
            | Code::LockHeld
            | Code::NotOwner
            | Code::StaleFence
            | Code::Deadlock
            | Code::LockOrderViolation
            | Code::LockLost
            | Code::AgentNotActive
            | Code::AlreadyExists
            | Code::AlreadyValidated
            | Code::AlreadyVoted
            | Code::ApprovalNotRequired
            | Code::AuctionClosed
            | Code::AuctionOpen
            | Code::DuplicateEvidence
            | Code::InvalidStatus
            | Code::MissingCapabilities
            | Code::NoEligibleAgent
            | Code::NotClaimant
            | Code::ProposalClosed
            | Code::SessionCompleted => RejectionKind::Conflict,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Lets tests and adapters compare a code with the `error.code` text of SPEC §3.
impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// What was refused, typed.
    pub code: Code,
    /// The class of refusal (derived from `code`).
    pub kind: RejectionKind,
    /// A sentence for humans, naming the values involved.
    pub message: String,
    /// Extra fields for the error object (`current_version`, `holders`, `cycle`, ...).
    pub details: Map<String, Value>,
}

/// The class of a [`Rejection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The request is well-formed but invalid (HTTP 422).
    Invalid,
    /// The entity does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with the current state (HTTP 409).
    Conflict,
    /// The actor may not do this (HTTP 403).
    Forbidden,
}

impl Rejection {
    /// A rejection without details.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Rejection {
            code,
            kind: code.kind(),
            message: message.into(),
            details: Map::new(),
        }
    }

    /// Adds a detail field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

/// 422 `invalid_id` unless `id` is a valid id, key, stream or branch name (SPEC §3: 1 to
/// `--max-id-bytes` bytes of UTF-8 without control characters); `field` names it. The one
/// check every layer uses, so the same fault always answers the same code.
pub fn check_id(field: &str, id: &str) -> Result<(), Rejection> {
    if crate::limits::is_valid_id(id) {
        return Ok(());
    }
    let most = crate::limits::current().id_bytes_max;
    Err(Rejection::new(
        Code::InvalidId,
        format!("{field} must be 1 to {most} bytes of UTF-8 without control characters"),
    )
    .with("field", field)
    .with("limit", most))
}
