//! Tasks, the blackboard, consensus, messages and sessions (SPEC §3): thin handlers that
//! parse the body, check who may act as whom, and hand a [`WorkCommand`] to the engine
//! with a responder that shapes the answer from the state after the write.
//!
//! Conventions of this module's answers:
//! - A write that creates a top-level entity (task, finding, hypothesis, proposal,
//!   message, session) answers 201 with the entity, or 200 with it unchanged when the
//!   same body was already written; every other write answers 200 with the entity it
//!   changed. Every write answer carries the `seq` of its last event (the head for a
//!   no-op).
//! - A claim with nothing to claim answers 204 with no body (after waiting `wait_ms`).
//! - Lists answer `{"<plural>": [...]}`; task lists leave out each task's `history`,
//!   which `GET /v1/tasks/{id}` shows.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use swarmlog_projections::work::{
    AckSpec, AssignSpec, AuctionSpec, BidSpec, CancelSpec, ClaimSpec, CompleteSpec, EvidenceSpec,
    FailSpec, FindingCategory, FindingFilter, FindingSpec, HypothesisSpec, MessageSpec,
    ProgressSpec, ProposalSpec, ProposalStatus, ReleaseSpec, SessionCompleteSpec, SessionSpec,
    TaskFilter, TaskSpec, TaskStatus, ValidateSpec, VoteSpec, WorkCommand,
};
use swarmlog_projections::{BranchState, Envelope, Rejection};

use super::common::{
    answer, body, branch_of, not_found, ok_json, read_branch, responder, wait_of, Empty, ReadQuery,
    WriteInput,
};
use crate::app::{AppState, BranchQuery, PreparedWrite};
use crate::auth::{Principal, Role};
use crate::engine::{Committed, Responder, Status, WriteCommand, WriteResponse};
use crate::error::ApiError;
use crate::extract::{check_id, ApiPath, ApiQuery};
use crate::filter::EventFilter;
use crate::refusal::Refusal;
use crate::routes::events;
use crate::routes::operation::{with_session, Plan, Target, WriteBody};

// ---- shared plumbing ----------------------------------------------------------------

/// The plan of a work command answered by `respond`.
fn plan(command: WorkCommand, respond: Responder) -> Result<Plan, ApiError> {
    Ok(Plan::new(WriteCommand::Work(command), respond))
}

/// Answers with the `view` of entity `id` as it is after the write.
fn entity_responder(
    write: &PreparedWrite,
    id: String,
    view: fn(&BranchState, &str) -> Result<Value, Rejection>,
) -> Responder {
    responder(
        write.context.branch.clone(),
        Status::Ok,
        move |branch, _| Ok(view(branch, &id)?),
    )
}

/// Answers 201 with the `view` of the entity of `kind` the write created (its id given in
/// the body, or generated).
fn created_responder(
    write: &PreparedWrite,
    kind: &'static str,
    given: Option<String>,
    view: fn(&BranchState, &str) -> Result<Value, Rejection>,
) -> Responder {
    responder(
        write.context.branch.clone(),
        Status::Created,
        move |branch, written| {
            let id = written_id(written, kind, given.as_deref())
                .ok_or_else(|| Refusal::internal("created entity missing after apply", &kind))?;
            Ok(view(branch, &id)?)
        },
    )
}

/// Bodies that act as their `agent`.
macro_rules! acting_as_agent {
    ($($body:ty),*) => {$(
        impl WriteBody for $body {
            fn acting_as(&self) -> Option<(&'static str, &str)> {
                Some(("agent", &self.agent))
            }
        }
    )*};
}

acting_as_agent!(
    ClaimSpec,
    ProgressSpec,
    CompleteSpec,
    FailSpec,
    ReleaseSpec,
    BidSpec,
    VoteSpec,
    AckSpec
);

impl WriteBody for AssignSpec {}
impl WriteBody for CancelSpec {}
impl WriteBody for AuctionSpec {}
impl WriteBody for EvidenceSpec {}
impl WriteBody for ValidateSpec {}
impl WriteBody for ProposalSpec {}
impl WriteBody for SessionSpec {}
impl WriteBody for SessionCompleteSpec {}

impl WriteBody for FindingSpec {
    const HAS_SESSION: bool = true;

    fn acting_as(&self) -> Option<(&'static str, &str)> {
        Some(("agent", &self.agent))
    }
}

impl WriteBody for HypothesisSpec {
    const HAS_SESSION: bool = true;
}

impl WriteBody for MessageSpec {
    fn acting_as(&self) -> Option<(&'static str, &str)> {
        Some(("from", &self.from))
    }
}

/// The id of the entity of `kind` the write created: the stream `kind/ID` of its first
/// event of that kind, else the id given in the body.
fn written_id(written: &[Arc<Committed>], kind: &str, given: Option<&str>) -> Option<String> {
    written
        .iter()
        .find_map(|committed| {
            committed
                .envelope
                .stream
                .strip_prefix(kind)
                .and_then(|rest| rest.strip_prefix('/'))
                .map(str::to_owned)
        })
        .or_else(|| given.map(str::to_owned))
}

fn invalid_query(message: String) -> ApiError {
    ApiError::malformed("invalid_query", message)
}

// ---- tasks --------------------------------------------------------------------------

/// A task's view without its history, for lists.
fn task_summary(branch: &BranchState, id: &str) -> Option<Value> {
    let mut view = branch.work.tasks.get(id)?.view();
    if let Some(object) = view.as_object_mut() {
        object.remove("history");
    }
    Some(view)
}

pub(crate) fn task_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    branch
        .work
        .tasks
        .get(id)
        .map(|task| task.view())
        .ok_or_else(|| not_found("task", id))
}

/// Answers with task `id` as it is after the write.
fn task_responder(write: &PreparedWrite, id: String) -> Responder {
    entity_responder(write, id, task_view)
}

/// The batch form of `POST /v1/tasks`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskBatch {
    tasks: Vec<Value>,
}

pub(crate) async fn task_create(
    State(app): State<AppState>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let batch = rest.get("tasks").is_some();
    let specs: Vec<TaskSpec> = if batch {
        let TaskBatch { tasks } = body(rest)?;
        let mut specs = Vec::with_capacity(tasks.len());
        for (index, task) in tasks.into_iter().enumerate() {
            let spec: TaskSpec =
                body(with_session(task, &write)).map_err(|error| error.with("index", index))?;
            specs.push(spec);
        }
        specs
    } else {
        vec![body(with_session(rest, &write))?]
    };
    let explicit: Vec<Option<String>> = specs.iter().map(|spec| spec.id.clone()).collect();
    let respond = responder(
        write.context.branch.clone(),
        Status::Created,
        move |branch, written| {
            // Tasks without an id in the body got generated ids, in request order.
            let given: BTreeSet<&str> = explicit.iter().flatten().map(String::as_str).collect();
            let mut generated: Vec<String> = written
                .iter()
                .filter(|committed| committed.envelope.event_type == "task.created")
                .filter_map(|committed| committed.envelope.stream.strip_prefix("task/"))
                .filter(|id| !given.contains(id))
                .map(str::to_owned)
                .collect();
            generated.sort_by(|left, right| (left.len(), left).cmp(&(right.len(), right)));
            let mut generated = generated.into_iter();
            let mut views = Vec::with_capacity(explicit.len());
            for id in &explicit {
                let id = match id {
                    Some(id) => id.clone(),
                    None => generated.next().ok_or_else(|| {
                        Refusal::internal("created task missing after apply", &"task.created")
                    })?,
                };
                views.push(task_view(branch, &id)?);
            }
            if batch {
                Ok(json!({ "tasks": views }))
            } else {
                views
                    .pop()
                    .ok_or_else(|| Refusal::internal("no task in a single create", &"tasks"))
            }
        },
    );
    write
        .submit(
            &app,
            WriteCommand::Work(WorkCommand::TaskCreate { tasks: specs }),
            None,
            respond,
        )
        .await
}

pub(crate) fn task_claim(
    _: Target,
    spec: ClaimSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let wait = wait_of(spec.wait_ms.unwrap_or(0).into())?;
    let branch = write.context.branch.clone();
    let respond: Responder = Box::new(move |state, written| {
        let Some(id) = written_id(written, "task", None) else {
            return Ok(WriteResponse {
                status: Status::Empty,
                body: String::new(),
                replayed: false,
            });
        };
        let view = task_view(branch_of(state, &branch)?, &id)?;
        answer(Status::Ok, view, state, written)
    });
    Ok(plan(WorkCommand::TaskClaim(spec), respond)?.waiting(wait))
}

pub(crate) fn task_assign(
    Target(id): Target,
    spec: AssignSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    plan(
        WorkCommand::TaskAssign {
            task: id.clone(),
            spec,
        },
        task_responder(write, id),
    )
}

/// Approval opens a gate that exists so that an agent cannot start the work on its own:
/// with `--tokens` it takes an admin token.
pub(crate) fn task_approve(
    Target(id): Target,
    _: Empty,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    write.principal.require_admin()?;
    plan(
        WorkCommand::TaskApprove { task: id.clone() },
        task_responder(write, id),
    )
}

pub(crate) fn task_progress(
    Target(id): Target,
    spec: ProgressSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    plan(
        WorkCommand::TaskProgress {
            task: id.clone(),
            spec,
        },
        task_responder(write, id),
    )
}

pub(crate) fn task_complete(
    Target(id): Target,
    spec: CompleteSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    plan(
        WorkCommand::TaskComplete {
            task: id.clone(),
            spec,
        },
        task_responder(write, id),
    )
}

pub(crate) fn task_fail(
    Target(id): Target,
    spec: FailSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    plan(
        WorkCommand::TaskFail {
            task: id.clone(),
            spec,
        },
        task_responder(write, id),
    )
}

pub(crate) fn task_release(
    Target(id): Target,
    spec: ReleaseSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    plan(
        WorkCommand::TaskRelease {
            task: id.clone(),
            spec,
        },
        task_responder(write, id),
    )
}

pub(crate) fn task_cancel(
    Target(id): Target,
    spec: CancelSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    plan(
        WorkCommand::TaskCancel {
            task: id.clone(),
            spec,
        },
        task_responder(write, id),
    )
}

pub(crate) fn task_auction(
    Target(id): Target,
    spec: AuctionSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    plan(
        WorkCommand::AuctionOpen {
            task: id.clone(),
            spec,
        },
        task_responder(write, id),
    )
}

pub(crate) fn task_bid(
    Target(id): Target,
    spec: BidSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    plan(
        WorkCommand::BidPlace {
            task: id.clone(),
            spec,
        },
        task_responder(write, id),
    )
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TasksQuery {
    #[serde(default)]
    #[schemars(with = "Option<TaskStatus>")]
    status: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default, rename = "type")]
    task_type: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

pub(crate) async fn tasks_list(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<TasksQuery>,
) -> Result<Response, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(TaskStatus::parse(text).ok_or_else(|| {
            let names: Vec<&str> = TaskStatus::ALL
                .iter()
                .map(|status| status.as_str())
                .collect();
            invalid_query(format!(
                "status must be one of {}, not '{text}'",
                names.join(", ")
            ))
        })?),
    };
    let filter = TaskFilter {
        status,
        session: query.session,
        agent: query.agent,
        task_type: query.task_type,
    };
    let read = ReadQuery {
        branch: query.branch,
        at: query.at,
    };
    let tasks = read_branch(&app, &read, move |branch| {
        Ok(branch
            .work
            .tasks
            .list(&filter)
            .into_iter()
            .filter_map(|task| task_summary(branch, &task.id))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ok_json(json!({ "tasks": tasks })))
}

// ---- blackboard ---------------------------------------------------------------------

pub(crate) fn finding_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    branch
        .work
        .blackboard
        .finding(id)
        .map(|finding| finding.view())
        .ok_or_else(|| not_found("finding", id))
}

pub(crate) fn hypothesis_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    branch
        .work
        .blackboard
        .hypothesis(id)
        .map(|hypothesis| hypothesis.view())
        .ok_or_else(|| not_found("hypothesis", id))
}

pub(crate) fn finding_post(
    _: Target,
    spec: FindingSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = created_responder(write, "finding", spec.id.clone(), finding_view);
    plan(WorkCommand::FindingPost(spec), respond)
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindingsQuery {
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<FindingCategory>")]
    category: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

pub(crate) async fn findings_list(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<FindingsQuery>,
) -> Result<Response, ApiError> {
    let category = match query.category.as_deref() {
        None => None,
        Some(text) => Some(FindingCategory::parse(text).ok_or_else(|| {
            invalid_query(format!(
                "category must be observation, hypothesis or conclusion, not '{text}'"
            ))
        })?),
    };
    let filter = FindingFilter {
        session: query.session,
        agent: query.agent,
        category,
        tag: query.tag,
    };
    let read = ReadQuery {
        branch: query.branch,
        at: query.at,
    };
    let findings = read_branch(&app, &read, move |branch| {
        Ok(branch
            .work
            .blackboard
            .query_findings(&filter)
            .into_iter()
            .map(|finding| finding.view())
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ok_json(json!({ "findings": findings })))
}

pub(crate) fn hypothesis_propose(
    _: Target,
    spec: HypothesisSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = created_responder(write, "hypothesis", spec.id.clone(), hypothesis_view);
    plan(WorkCommand::HypothesisPropose(spec), respond)
}

pub(crate) fn hypothesis_evidence(
    Target(id): Target,
    spec: EvidenceSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = entity_responder(write, id.clone(), hypothesis_view);
    plan(
        WorkCommand::EvidenceAdd {
            hypothesis: id,
            spec,
        },
        respond,
    )
}

pub(crate) fn hypothesis_validate(
    Target(id): Target,
    spec: ValidateSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = entity_responder(write, id.clone(), hypothesis_view);
    plan(
        WorkCommand::HypothesisValidate {
            hypothesis: id,
            spec,
        },
        respond,
    )
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionFilterQuery {
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

pub(crate) async fn hypotheses_list(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<SessionFilterQuery>,
) -> Result<Response, ApiError> {
    let session = query.session;
    let read = ReadQuery {
        branch: query.branch,
        at: query.at,
    };
    let hypotheses = read_branch(&app, &read, move |branch| {
        Ok(branch
            .work
            .blackboard
            .hypotheses_by_confidence(session.as_deref())
            .into_iter()
            .map(|hypothesis| hypothesis.view())
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ok_json(json!({ "hypotheses": hypotheses })))
}

// ---- consensus ----------------------------------------------------------------------

pub(crate) fn proposal_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    branch
        .work
        .consensus
        .proposal(id)
        .map(|proposal| proposal.view())
        .ok_or_else(|| not_found("proposal", id))
}

pub(crate) fn proposal_open(
    _: Target,
    spec: ProposalSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = created_responder(write, "proposal", spec.id.clone(), proposal_view);
    plan(WorkCommand::ProposalOpen(spec), respond)
}

pub(crate) fn proposal_vote(
    Target(id): Target,
    spec: VoteSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = entity_responder(write, id.clone(), proposal_view);
    plan(WorkCommand::VoteCast { proposal: id, spec }, respond)
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProposalsQuery {
    #[serde(default)]
    #[schemars(with = "Option<ProposalStatus>")]
    status: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

pub(crate) async fn proposals_list(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<ProposalsQuery>,
) -> Result<Response, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(ProposalStatus::parse(text).ok_or_else(|| {
            invalid_query(format!("status must be open or decided, not '{text}'"))
        })?),
    };
    let read = ReadQuery {
        branch: query.branch,
        at: query.at,
    };
    let proposals = read_branch(&app, &read, move |branch| {
        Ok(branch
            .work
            .consensus
            .list(status)
            .into_iter()
            .map(|proposal| proposal.view())
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ok_json(json!({ "proposals": proposals })))
}

// ---- messages -----------------------------------------------------------------------

fn message_view(
    branch: &BranchState,
    id: &str,
    for_agent: Option<&str>,
) -> Result<Value, Rejection> {
    branch
        .work
        .messages
        .get(id)
        .map(|message| message.view(for_agent))
        .ok_or_else(|| not_found("message", id))
}

/// A message as anyone sees it, for `GET /v1/messages/{message}`.
pub(crate) fn message_get_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    message_view(branch, id, None)
}

pub(crate) fn message_send(
    _: Target,
    spec: MessageSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = created_responder(write, "message", None, message_get_view);
    plan(WorkCommand::MessageSend(spec), respond)
}

pub(crate) fn message_ack(
    Target(id): Target,
    spec: AckSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let (response_id, agent) = (id.clone(), spec.agent.clone());
    let respond = responder(
        write.context.branch.clone(),
        Status::Ok,
        move |branch, _| Ok(message_view(branch, &response_id, Some(&agent))?),
    );
    plan(WorkCommand::MessageAck { message: id, spec }, respond)
}

/// The most messages `GET /v1/messages` answers at once, and how many without `limit`.
const MESSAGES_LIMIT: (u64, u64) = (1000, 100);

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessagesQuery {
    /// Only the messages this agent sent or received (an agent token: its own, the default).
    #[serde(default)]
    agent: Option<String>,
    /// At most this many, the newest (default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<u64>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

/// `GET /v1/messages`: the newest messages, newest first.
pub(crate) async fn messages_list(
    State(app): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> Result<Response, ApiError> {
    let (max, default) = MESSAGES_LIMIT;
    let limit = query.limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(invalid_query(format!(
            "limit must be 1 to {max}, not {limit}"
        )));
    }
    // An agent token lists what it sent or received (tokens always name their agent).
    let agent = match principal.role {
        Role::Agent => query.agent.or_else(|| principal.agent.clone()),
        Role::Reader | Role::Admin => query.agent,
    };
    if let Some(agent) = &agent {
        principal.require_reading_inbox_of(agent)?;
    }
    let read = ReadQuery {
        branch: query.branch,
        at: query.at,
    };
    let messages = read_branch(&app, &read, move |branch| {
        Ok(branch
            .work
            .messages
            .recent(agent.as_deref(), limit as usize)
            .into_iter()
            .map(|message| message.view(None))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ok_json(json!({ "messages": messages })))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InboxQuery {
    #[serde(default)]
    unacked: Option<bool>,
    /// The SSE inbox only: catch up from this seq (422 on the JSON inbox).
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

/// `GET /v1/agents/{id}/inbox`: the agent's messages as JSON, or with
/// `Accept: text/event-stream` the `message.sent` events addressed to it as SSE (catch-up
/// from `from` or after `Last-Event-ID`, then live). With `unacked=true`, the SSE catch-up
/// leaves out the messages the agent had acked when it subscribed.
pub(crate) async fn inbox(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(agent): ApiPath<String>,
    ApiQuery(query): ApiQuery<InboxQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_id("id", &agent)?;
    principal.require_reading_inbox_of(&agent)?;
    let unacked = query.unacked.unwrap_or(false);
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    if !wants_sse {
        if query.from.is_some() {
            return Err(ApiError::invalid(
                "invalid_value",
                "from applies to the SSE inbox (Accept: text/event-stream) only",
            )
            .with("field", "from"));
        }
        let read = ReadQuery {
            branch: query.branch,
            at: query.at,
        };
        let owner = agent.clone();
        let messages = read_branch(&app, &read, move |branch| {
            Ok(branch
                .work
                .messages
                .inbox(&owner, unacked)
                .into_iter()
                .map(|message| message.view(Some(&owner)))
                .collect::<Vec<_>>())
        })
        .await?;
        return Ok(ok_json(json!({ "agent": agent, "messages": messages })));
    }
    if query.at.is_some() {
        return Err(invalid_query(
            "at does not apply to a live inbox; use from".into(),
        ));
    }
    let last_event_id = events::last_event_id(&headers, &app.engine).await?;
    let branch = BranchQuery {
        branch: query.branch,
    }
    .branch()?;
    app.require_branch(&branch).await?;
    let acked: BTreeSet<String> = if unacked {
        let (name, owner) = (branch.clone(), agent.clone());
        app.engine
            .read(move |state| {
                state
                    .branch(&name)
                    .map(|branch| {
                        branch
                            .work
                            .messages
                            .inbox(&owner, false)
                            .into_iter()
                            .filter(|message| message.acked_by.contains_key(&owner))
                            .map(|message| message.id.clone())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .await?
    } else {
        BTreeSet::new()
    };
    let types = EventFilter::parse_types("message.sent")?;
    let filter = EventFilter {
        from: last_event_id.map_or(query.from.unwrap_or(1).max(1), |seen| {
            seen.saturating_add(1)
        }),
        until: None,
        types: Some(types),
        stream_prefix: Some("message/".into()),
        actor: None,
        session: None,
        branch: Some(branch),
    };
    let predicate: events::EventPredicate =
        Arc::new(move |envelope: &Envelope| addressed_to(envelope, &agent, &acked));
    events::subscribe_matching(app.engine.clone(), filter, predicate)
}

/// Whether a `message.sent` event is addressed to `agent` and not among `acked`.
fn addressed_to(envelope: &Envelope, agent: &str, acked: &BTreeSet<String>) -> bool {
    let data = envelope.data_value();
    let for_agent = data
        .get("recipients")
        .and_then(Value::as_array)
        .is_some_and(|recipients| recipients.iter().any(|recipient| recipient == agent));
    let already_acked = data
        .get("message")
        .and_then(Value::as_str)
        .is_some_and(|id| acked.contains(id));
    for_agent && !already_acked
}

// ---- sessions -----------------------------------------------------------------------

pub(crate) fn session_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    branch
        .work
        .session_view(id)
        .ok_or_else(|| not_found("session", id))
}

pub(crate) fn session_start(
    _: Target,
    spec: SessionSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = created_responder(write, "session", spec.id.clone(), session_view);
    plan(WorkCommand::SessionStart(spec), respond)
}

pub(crate) fn session_complete(
    Target(id): Target,
    spec: SessionCompleteSpec,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = entity_responder(write, id.clone(), session_view);
    plan(WorkCommand::SessionComplete { session: id, spec }, respond)
}

pub(crate) async fn sessions_list(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    let sessions = read_branch(&app, &query, move |branch| {
        Ok(branch
            .work
            .sessions
            .by_id
            .keys()
            .filter_map(|id| branch.work.session_view(id))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ok_json(json!({ "sessions": sessions })))
}

pub(crate) async fn session_report(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    check_id("id", &id)?;
    let value = read_branch(&app, &query, move |branch| {
        let report = branch
            .work
            .session_report(&id)
            .ok_or_else(|| not_found("session", &id))?;
        let mut value = serde_json::to_value(report)
            .expect("a session report serializes: string keys and plain fields only");
        if let Some(object) = value.as_object_mut() {
            object.insert("session".into(), Value::from(id));
        }
        Ok(value)
    })
    .await?;
    Ok(ok_json(value))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionEventsQuery {
    #[serde(default)]
    branch: Option<String>,
}

/// `GET /v1/sessions/{id}/events`: every event of the session (on its branch) as NDJSON,
/// up to the head at request time, for archiving. The engine stamps a task's events with
/// its session even when the write names none, so the export holds the whole workflow.
pub(crate) async fn session_events(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<SessionEventsQuery>,
) -> Result<Response, ApiError> {
    check_id("id", &id)?;
    let read = ReadQuery {
        branch: query.branch,
        at: None,
    };
    let branch = BranchQuery {
        branch: read.branch.clone(),
    }
    .branch()?;
    let session = id.clone();
    read_branch(&app, &read, move |branch| {
        branch
            .work
            .session(&session)
            .map(|_| ())
            .ok_or_else(|| not_found("session", &session))
    })
    .await?;
    let filter = EventFilter {
        from: 1,
        until: None,
        types: None,
        stream_prefix: None,
        actor: None,
        session: Some(id),
        branch: Some(branch),
    };
    Ok(events::replay(app.engine.clone(), filter, None))
}
