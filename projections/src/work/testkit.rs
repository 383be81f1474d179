//! The `check` helper of the work tests: a tiny single-writer engine that decides a
//! command, stamps the drafts into envelopes (seq increasing, ts = now, hash chained),
//! applies them to a [`State`] and keeps the log, so tests can compare live state with
//! replayed state. Every test of this domain goes through it, so an API change means
//! editing this file only.

use serde_json::Value;

use crate::coordination::CoordinationCommand;

use super::*;
use crate::envelope::{Envelope, EventDraft, GENESIS_HASH};
use crate::state::{BranchState, Rejection, State, MAIN_BRANCH};

/// The actor of commands run without one.
pub const TESTER: &str = "tester";

/// The clock the harness starts at: 2027-01-15T08:00:00Z.
pub const START_MS: i64 = 1_800_000_000_000;

/// A state, a clock and the log that built the state.
pub struct Harness {
    /// The live state.
    pub state: State,
    /// The clock, ms since the epoch.
    pub now_ms: i64,
    /// Every committed event.
    pub log: Vec<Envelope>,
    /// The session put on the envelopes of the next commands, if any.
    pub session: Option<String>,
}

impl Harness {
    /// An empty state at [`START_MS`].
    pub fn new() -> Self {
        Harness {
            state: State::default(),
            now_ms: START_MS,
            log: Vec::new(),
            session: None,
        }
    }

    /// The main branch.
    pub fn branch(&self) -> &BranchState {
        self.state
            .branch(MAIN_BRANCH)
            .expect("the harness creates main")
    }

    /// The work part of the main branch.
    pub fn work(&self) -> &Work {
        &self.branch().work
    }

    /// Decides `command` as [`TESTER`] and commits the result.
    pub fn run(&mut self, command: WorkCommand) -> Result<Vec<Envelope>, Rejection> {
        self.run_as(TESTER, command)
    }

    /// Decides `command` as `actor` and commits the result.
    pub fn run_as(
        &mut self,
        actor: &str,
        command: WorkCommand,
    ) -> Result<Vec<Envelope>, Rejection> {
        // The engine fires due timers before it decides: do the same.
        self.fire_due();
        let drafts = decide(self.branch(), &command, self.now_ms)?;
        Ok(self.commit(actor, drafts))
    }

    /// Runs `command` and expects it to be accepted.
    pub fn ok(&mut self, command: WorkCommand) -> Vec<Envelope> {
        let description = format!("{command:?}");
        self.run(command)
            .unwrap_or_else(|rejection| panic!("{description} was refused: {rejection:?}"))
    }

    /// Runs `command` and expects a rejection, which must write nothing.
    pub fn err(&mut self, command: WorkCommand) -> Rejection {
        let before = self.state.clone();
        let description = format!("{command:?}");
        let rejection = match self.run(command) {
            Ok(events) => panic!("{description} was accepted: {events:?}"),
            Err(rejection) => rejection,
        };
        assert_eq!(self.state, before, "a refused command changes nothing");
        rejection
    }

    /// Stamps `drafts` into envelopes, applies them and logs them.
    pub fn commit(&mut self, actor: &str, drafts: Vec<EventDraft>) -> Vec<Envelope> {
        let mut committed = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let mut envelope = Envelope {
                seq: self.state.head + 1,
                ts_ms: self.now_ms,
                branch: MAIN_BRANCH.to_owned(),
                event_type: draft.event_type,
                stream: draft.stream,
                actor: draft.actor.unwrap_or_else(|| actor.to_owned()),
                session: self.session.clone(),
                correlation: None,
                meta: None,
                data: draft.data.into_text(),
                hash: GENESIS_HASH,
                idempotency: None,
            };
            envelope.seal(&self.state.head_hash);
            self.state.apply(&envelope);
            self.log.push(envelope.clone());
            committed.push(envelope);
        }
        committed
    }

    /// Commits whatever timers are due now.
    pub fn fire_due(&mut self) -> Vec<Envelope> {
        let drafts = due(self.branch(), self.now_ms);
        let fired = self.commit(crate::envelope::SYSTEM_ACTOR, drafts);
        assert!(
            due(self.branch(), self.now_ms).is_empty(),
            "applying due events clears them"
        );
        fired
    }

    /// Moves the clock forward and fires the timers that came due.
    pub fn advance(&mut self, ms: i64) -> Vec<Envelope> {
        self.now_ms += ms;
        self.fire_due()
    }

    /// Registers `id` as an active agent with `capabilities` and no lease, through the
    /// agents' own rules, so the work rules see it the way they do in production.
    pub fn register_agent(&mut self, id: &str, capabilities: &[&str]) {
        self.coordinate(CoordinationCommand::AgentRegister {
            id: id.to_owned(),
            agent_type: "worker".to_owned(),
            capabilities: capabilities
                .iter()
                .map(|capability| capability.to_string())
                .collect(),
            ttl_ms: None,
            meta: None,
            by_admin: true,
        });
    }

    /// Kills agent `id` through the agents' rules (which requeue its claims).
    pub fn kill_agent(&mut self, id: &str) -> Vec<Envelope> {
        self.coordinate(CoordinationCommand::AgentKill { id: id.to_owned() })
    }

    fn coordinate(&mut self, command: CoordinationCommand) -> Vec<Envelope> {
        let drafts = crate::coordination::decide(&self.state, MAIN_BRANCH, &command, self.now_ms)
            .unwrap_or_else(|rejection| panic!("{command:?} was refused: {rejection:?}"));
        self.commit(TESTER, drafts)
    }

    /// The task `id`.
    pub fn task(&self, id: &str) -> &Task {
        self.work()
            .tasks
            .get(id)
            .unwrap_or_else(|| panic!("task '{id}' exists"))
    }

    /// The state rebuilt by replaying the whole log from the start.
    pub fn replayed(&self) -> State {
        replay(State::default(), &self.log)
    }
}

/// Applies `events` to `state`.
pub fn replay(mut state: State, events: &[Envelope]) -> State {
    for event in events {
        state.apply(event);
    }
    state
}

/// A one-task create.
pub fn create(spec: Value) -> WorkCommand {
    WorkCommand::TaskCreate {
        tasks: vec![serde_json::from_value(spec).expect("a valid task spec")],
    }
}

/// A batch create.
pub fn create_all(specs: Value) -> WorkCommand {
    WorkCommand::TaskCreate {
        tasks: serde_json::from_value(specs).expect("valid task specs"),
    }
}

/// A claim by `agent` with explicit capabilities.
pub fn claim(agent: &str, capabilities: &[&str]) -> WorkCommand {
    WorkCommand::TaskClaim(ClaimSpec {
        agent: agent.to_owned(),
        capabilities: Some(
            capabilities
                .iter()
                .map(|capability| capability.to_string())
                .collect(),
        ),
        types: None,
        wait_ms: None,
    })
}

/// The id of the task an event is about.
pub fn task_of(event: &Envelope) -> String {
    event.data_value()["task"]
        .as_str()
        .expect("a task event names its task")
        .to_owned()
}

/// The event types of `events`.
pub fn types(events: &[Envelope]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event.event_type.as_str())
        .collect()
}
