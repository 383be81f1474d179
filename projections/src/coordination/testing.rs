//! The test harness of this domain: runs commands through `decide`, stamps the drafts into
//! envelopes the way the engine does (seq, time, branch, actor, hash chain), applies them,
//! and keeps the log so that tests can replay it.

use crate::coordination::branches::ForkPoint;
use crate::coordination::{decide, due_all, CoordinationCommand, LockMode};
use crate::envelope::{Envelope, EventDraft};
use crate::state::{BranchState, Rejection, State, MAIN_BRANCH};

/// The harness's clock at the start: 2026-11-22T10:00:00Z.
pub(crate) const START_MS: i64 = 1_795_341_600_000;

/// The actor of requests in tests.
const TEST_ACTOR: &str = "tester";

/// A live state, its clock and its log.
pub(crate) struct Harness {
    pub state: State,
    pub now_ms: i64,
    pub log: Vec<Envelope>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            state: State::default(),
            now_ms: START_MS,
            log: Vec::new(),
        }
    }

    pub fn main(&self) -> &BranchState {
        self.state.branch(MAIN_BRANCH).expect("main always exists")
    }

    pub fn main_mut(&mut self) -> &mut BranchState {
        self.state
            .branches
            .get_mut(MAIN_BRANCH)
            .expect("main always exists")
    }

    /// Moves the clock without running the timers.
    pub fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
    }

    /// Moves the clock and runs the timers, as the engine does when a deadline passes.
    pub fn tick(&mut self, ms: i64) -> Vec<Envelope> {
        self.advance(ms);
        let mut committed = Vec::new();
        for (branch, drafts) in due_all(&self.state, self.now_ms) {
            committed.extend(self.commit(&branch, drafts, TEST_ACTOR));
        }
        committed
    }

    /// Decides `command` on `branch` and commits what it decided.
    pub fn run(
        &mut self,
        branch: &str,
        command: CoordinationCommand,
    ) -> Result<Vec<Envelope>, Rejection> {
        let drafts = decide(&self.state, branch, &command, self.now_ms)?;
        Ok(self.commit(branch, drafts, TEST_ACTOR))
    }

    pub fn ok(&mut self, command: CoordinationCommand) -> Vec<Envelope> {
        self.ok_on(MAIN_BRANCH, command)
    }

    pub fn ok_on(&mut self, branch: &str, command: CoordinationCommand) -> Vec<Envelope> {
        let described = format!("{command:?}");
        self.run(branch, command)
            .unwrap_or_else(|rejection| panic!("{described} was refused: {rejection:?}"))
    }

    pub fn err(&mut self, command: CoordinationCommand) -> Rejection {
        self.err_on(MAIN_BRANCH, command)
    }

    pub fn err_on(&mut self, branch: &str, command: CoordinationCommand) -> Rejection {
        let head = self.state.head;
        let described = format!("{command:?}");
        let rejection = self
            .run(branch, command)
            .err()
            .unwrap_or_else(|| panic!("{described} was accepted"));
        assert_eq!(self.state.head, head, "a refused request writes nothing");
        rejection
    }

    /// Stamps, applies and logs drafts, and fills a fork in the past the way the engine
    /// does: from a replay of the log up to the fork's seq.
    pub fn commit(&mut self, branch: &str, drafts: Vec<EventDraft>, actor: &str) -> Vec<Envelope> {
        let mut committed = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let mut envelope = Envelope {
                seq: self.state.head + 1,
                ts_ms: self.now_ms,
                branch: branch.to_owned(),
                event_type: draft.event_type,
                stream: draft.stream,
                actor: draft.actor.unwrap_or_else(|| actor.to_owned()),
                session: None,
                correlation: None,
                meta: None,
                data: draft.data.into_text(),
                hash: [0; 32],
                idempotency: None,
            };
            envelope.seal(&self.state.head_hash);
            self.state.apply(&envelope);
            if let Some(point) =
                ForkPoint::from_event(&envelope).filter(ForkPoint::needs_parent_state)
            {
                let at = usize::try_from(point.at).expect("small test logs");
                let parent = State::replay(&self.log[..at])
                    .branches
                    .remove(&point.from)
                    .expect("decide checked that the parent existed at `at`");
                self.state.fork_branch(&point.name, parent);
            }
            self.log.push(envelope.clone());
            committed.push(envelope);
        }
        committed
    }
}

pub(crate) fn acquire(
    resource: &str,
    owner: &str,
    ttl_ms: u64,
    mode: LockMode,
) -> CoordinationCommand {
    CoordinationCommand::LockAcquire {
        resources: vec![resource.to_owned()],
        owner: owner.to_owned(),
        ttl_ms,
        mode,
    }
}

pub(crate) fn acquire_many(resources: &[&str], owner: &str, ttl_ms: u64) -> CoordinationCommand {
    CoordinationCommand::LockAcquire {
        resources: resources
            .iter()
            .map(|resource| (*resource).to_owned())
            .collect(),
        owner: owner.to_owned(),
        ttl_ms,
        mode: LockMode::Exclusive,
    }
}

pub(crate) fn register(id: &str, ttl_ms: Option<u64>) -> CoordinationCommand {
    CoordinationCommand::AgentRegister {
        id: id.to_owned(),
        agent_type: "worker".to_owned(),
        capabilities: vec!["rust".to_owned()],
        ttl_ms,
        meta: None,
        by_admin: false,
    }
}
