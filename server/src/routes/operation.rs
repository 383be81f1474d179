//! The one HTTP adapter of a write operation: a catalog entry names its body type and a
//! `plan` function, and [`write`] does the rest the same way for every operation: take
//! out the fields every write carries, parse the body into its type (422 with the
//! field's name when it does not fit), check the path's id, check that an agent token
//! acts only as its own agent, and submit the planned command to the engine.

use std::time::Duration;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, State};
use axum::routing::{get, on, MethodFilter, MethodRouter};
use serde::de::DeserializeOwned;
use serde_json::Value;
use swarmlog_projections::{BranchState, Rejection};

use super::common::{body, ok_json, read_branch, ReadQuery, WriteInput};
use crate::app::{AppState, PreparedWrite};
use crate::catalog::Method;
use crate::engine::{Responder, WriteCommand};
use crate::error::ApiError;
use crate::extract::{check_id, ApiQuery};

/// What a write asks of the engine.
pub struct Plan {
    /// The command.
    pub command: WriteCommand,
    /// How long it may wait for a lock or a task (`wait_ms`).
    pub wait: Option<Duration>,
    /// Shapes the answer from the state after the write.
    pub respond: Responder,
}

impl Plan {
    /// A command answered by `respond`, without waiting.
    pub fn new(command: WriteCommand, respond: Responder) -> Self {
        Plan {
            command,
            wait: None,
            respond,
        }
    }

    /// The same, allowed to wait.
    pub fn waiting(mut self, wait: Option<Duration>) -> Self {
        self.wait = wait;
        self
    }
}

/// What the adapter needs to know of a write body beyond its fields.
pub trait WriteBody {
    /// Whether `session` is a field of the entity the body creates (a task, a finding, a
    /// hypothesis): then the write's `session` is put back into the body.
    const HAS_SESSION: bool = false;

    /// The field naming the agent the body acts as, and its value, or `None` when it acts
    /// for no agent in particular. The adapter checks the id and, for an agent token,
    /// that it names the token's own agent.
    fn acting_as(&self) -> Option<(&'static str, &str)> {
        None
    }
}

/// The path parameter of a write (the entity it is about), validated as an id; empty for
/// a route without one.
pub struct Target(pub String);

/// Plans a write from its path parameter, its typed body and the prepared write.
pub type PlanFn<B> = fn(Target, B, &PreparedWrite) -> Result<Plan, ApiError>;

/// The route of a write operation.
pub fn write<B>(method: Method, plan: PlanFn<B>) -> MethodRouter<AppState>
where
    B: DeserializeOwned + WriteBody + Send + 'static,
{
    let handler = move |State(app): State<AppState>, input: WriteInput| async move {
        let (write, mut rest) = input.prepare(&app)?;
        if B::HAS_SESSION {
            rest = with_session(rest, &write);
        }
        let spec: B = body(rest)?;
        let target = match &input.target {
            Some((name, value)) => {
                check_id(name, value)?;
                Target(value.clone())
            }
            None => Target(String::new()),
        };
        if let Some((field, agent)) = spec.acting_as() {
            check_id(field, agent)?;
            write.principal.require_acting_as(agent)?;
        }
        let plan = plan(target, spec, &write)?;
        write
            .submit(&app, plan.command, plan.wait, plan.respond)
            .await
    };
    on(filter(method), handler)
}

/// Puts the write's `session` back into the rest of the body, for the bodies where
/// `session` is a field of the entity (tasks, findings, hypotheses).
pub fn with_session(mut rest: Value, write: &PreparedWrite) -> Value {
    if let (Some(session), Some(object)) = (&write.context.session, rest.as_object_mut()) {
        object
            .entry("session")
            .or_insert_with(|| Value::from(session.clone()));
    }
    rest
}

/// Shows one entity of a branch by its id, or refuses (`not_found`).
pub type ViewFn = fn(&BranchState, &str) -> Result<Value, Rejection>;

/// The route of a read of one entity by the id in its path: `?branch=` and `?at=` as every
/// read, the id checked like every id, the entity shown by `view`.
pub fn entity(view: ViewFn) -> MethodRouter<AppState> {
    get(
        move |State(app): State<AppState>,
              params: Result<RawPathParams, RawPathParamsRejection>,
              ApiQuery(query): ApiQuery<ReadQuery>| async move {
            let params = params
                .map_err(|rejection| ApiError::malformed("invalid_path", rejection.body_text()))?;
            let (name, id) = params
                .iter()
                .next()
                .map(|(name, id)| (name.to_owned(), id.to_owned()))
                .ok_or_else(|| ApiError::internal("an entity route has no id", &"path"))?;
            check_id(&name, &id)?;
            let value = read_branch(&app, &query, move |branch| view(branch, &id)).await?;
            Ok::<_, ApiError>(ok_json(value))
        },
    )
}

fn filter(method: Method) -> MethodFilter {
    match method {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
        Method::Put => MethodFilter::PUT,
        Method::Delete => MethodFilter::DELETE,
    }
}
