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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use swarmlog_projections::work::{
    AckSpec, AssignSpec, AuctionSpec, BidSpec, CancelSpec, ClaimSpec, CompleteSpec, EvidenceSpec,
    FailSpec, FindingCategory, FindingFilter, FindingSpec, HypothesisSpec, ProgressSpec,
    ProposalSpec, ProposalStatus, ReleaseSpec, SessionCompleteSpec, SessionSpec, TaskFilter,
    TaskSpec, TaskStatus, ValidateSpec, VoteSpec, WorkCommand,
};
use swarmlog_projections::{BranchState, Envelope, Rejection};

use super::common::{
    answer, body, branch_of, not_found, ok_json, read_branch, responder, wait_of, Empty, ReadQuery,
    WriteInput,
};
use crate::app::{AppState, BranchQuery, PreparedWrite};
use crate::engine::{Committed, Responder, Status, WriteCommand, WriteResponse};
use crate::error::ApiError;
use crate::extract::{check_id, ApiQuery};
use crate::filter::EventFilter;
use crate::refusal::Refusal;
use crate::routes::events;

// ---- shared plumbing ----------------------------------------------------------------

/// Puts the write's `session` back into the rest of the body, for the bodies where
/// `session` is a field of the entity (tasks, findings, hypotheses).
fn with_session(mut rest: Value, write: &PreparedWrite) -> Value {
    if let (Some(session), Some(object)) = (&write.context.session, rest.as_object_mut()) {
        object
            .entry("session")
            .or_insert_with(|| Value::from(session.clone()));
    }
    rest
}

pub(crate) async fn submit(
    write: PreparedWrite,
    app: &AppState,
    command: WorkCommand,
    wait: Option<Duration>,
    respond: Responder,
) -> Result<Response, ApiError> {
    write
        .submit(app, WriteCommand::Work(command), wait, respond)
        .await
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

fn task_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    branch
        .work
        .tasks
        .get(id)
        .map(|task| task.view())
        .ok_or_else(|| not_found("task", id))
}

/// Answers with task `id` as it is after the write.
fn task_responder(write: &PreparedWrite, id: String) -> Responder {
    responder(
        write.context.branch.clone(),
        Status::Ok,
        move |branch, _| Ok(task_view(branch, &id)?),
    )
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
    submit(
        write,
        &app,
        WorkCommand::TaskCreate { tasks: specs },
        None,
        respond,
    )
    .await
}

pub(crate) async fn task_claim(
    State(app): State<AppState>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: ClaimSpec = body(rest)?;
    write.principal.require_acting_as(&spec.agent)?;
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
    submit(write, &app, WorkCommand::TaskClaim(spec), wait, respond).await
}

pub(crate) async fn task_assign(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: AssignSpec = body(rest)?;
    check_id("id", &id)?;
    let respond = task_responder(&write, id.clone());
    submit(
        write,
        &app,
        WorkCommand::TaskAssign { task: id, spec },
        None,
        respond,
    )
    .await
}

/// Approval opens a gate that exists so that an agent cannot start the work on its own:
/// with `--tokens` it takes an admin token.
pub(crate) async fn task_approve(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let _: Empty = body(rest)?;
    check_id("id", &id)?;
    write.principal.require_admin()?;
    let respond = task_responder(&write, id.clone());
    submit(
        write,
        &app,
        WorkCommand::TaskApprove { task: id },
        None,
        respond,
    )
    .await
}

pub(crate) async fn task_progress(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: ProgressSpec = body(rest)?;
    check_id("id", &id)?;
    write.principal.require_acting_as(&spec.agent)?;
    let respond = task_responder(&write, id.clone());
    submit(
        write,
        &app,
        WorkCommand::TaskProgress { task: id, spec },
        None,
        respond,
    )
    .await
}

pub(crate) async fn task_complete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: CompleteSpec = body(rest)?;
    check_id("id", &id)?;
    write.principal.require_acting_as(&spec.agent)?;
    let respond = task_responder(&write, id.clone());
    submit(
        write,
        &app,
        WorkCommand::TaskComplete { task: id, spec },
        None,
        respond,
    )
    .await
}

pub(crate) async fn task_fail(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: FailSpec = body(rest)?;
    check_id("id", &id)?;
    write.principal.require_acting_as(&spec.agent)?;
    let respond = task_responder(&write, id.clone());
    submit(
        write,
        &app,
        WorkCommand::TaskFail { task: id, spec },
        None,
        respond,
    )
    .await
}

pub(crate) async fn task_release(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: ReleaseSpec = body(rest)?;
    check_id("id", &id)?;
    write.principal.require_acting_as(&spec.agent)?;
    let respond = task_responder(&write, id.clone());
    submit(
        write,
        &app,
        WorkCommand::TaskRelease { task: id, spec },
        None,
        respond,
    )
    .await
}

pub(crate) async fn task_cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: CancelSpec = body(rest)?;
    check_id("id", &id)?;
    let respond = task_responder(&write, id.clone());
    submit(
        write,
        &app,
        WorkCommand::TaskCancel { task: id, spec },
        None,
        respond,
    )
    .await
}

pub(crate) async fn task_auction(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: AuctionSpec = body(rest)?;
    check_id("id", &id)?;
    let respond = task_responder(&write, id.clone());
    submit(
        write,
        &app,
        WorkCommand::AuctionOpen { task: id, spec },
        None,
        respond,
    )
    .await
}

pub(crate) async fn task_bid(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: BidSpec = body(rest)?;
    check_id("id", &id)?;
    write.principal.require_acting_as(&spec.agent)?;
    let respond = task_responder(&write, id.clone());
    submit(
        write,
        &app,
        WorkCommand::BidPlace { task: id, spec },
        None,
        respond,
    )
    .await
}

pub(crate) async fn task_get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    check_id("id", &id)?;
    let value = read_branch(&app, &query, move |branch| task_view(branch, &id)).await?;
    Ok(ok_json(value))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TasksQuery {
    #[serde(default)]
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

fn finding_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    branch
        .work
        .blackboard
        .finding(id)
        .map(|finding| finding.view())
        .ok_or_else(|| not_found("finding", id))
}

fn hypothesis_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    branch
        .work
        .blackboard
        .hypothesis(id)
        .map(|hypothesis| hypothesis.view())
        .ok_or_else(|| not_found("hypothesis", id))
}

pub(crate) async fn finding_post(
    State(app): State<AppState>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: FindingSpec = body(with_session(rest, &write))?;
    write.principal.require_acting_as(&spec.agent)?;
    let given = spec.id.clone();
    let respond = responder(
        write.context.branch.clone(),
        Status::Created,
        move |branch, written| {
            let id = written_id(written, "finding", given.as_deref())
                .ok_or_else(|| Refusal::internal("reported finding missing", &"finding"))?;
            Ok(finding_view(branch, &id)?)
        },
    );
    submit(write, &app, WorkCommand::FindingPost(spec), None, respond).await
}

pub(crate) async fn finding_get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    check_id("id", &id)?;
    let value = read_branch(&app, &query, move |branch| finding_view(branch, &id)).await?;
    Ok(ok_json(value))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindingsQuery {
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
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

pub(crate) async fn hypothesis_propose(
    State(app): State<AppState>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: HypothesisSpec = body(with_session(rest, &write))?;
    let given = spec.id.clone();
    let respond = responder(
        write.context.branch.clone(),
        Status::Created,
        move |branch, written| {
            let id = written_id(written, "hypothesis", given.as_deref())
                .ok_or_else(|| Refusal::internal("proposed hypothesis missing", &"hypothesis"))?;
            Ok(hypothesis_view(branch, &id)?)
        },
    );
    submit(
        write,
        &app,
        WorkCommand::HypothesisPropose(spec),
        None,
        respond,
    )
    .await
}

fn hypothesis_responder(write: &PreparedWrite, id: String) -> Responder {
    responder(
        write.context.branch.clone(),
        Status::Ok,
        move |branch, _| Ok(hypothesis_view(branch, &id)?),
    )
}

pub(crate) async fn hypothesis_evidence(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: EvidenceSpec = body(rest)?;
    check_id("id", &id)?;
    let respond = hypothesis_responder(&write, id.clone());
    let command = WorkCommand::EvidenceAdd {
        hypothesis: id,
        spec,
    };
    submit(write, &app, command, None, respond).await
}

pub(crate) async fn hypothesis_validate(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: ValidateSpec = body(rest)?;
    check_id("id", &id)?;
    let respond = hypothesis_responder(&write, id.clone());
    let command = WorkCommand::HypothesisValidate {
        hypothesis: id,
        spec,
    };
    submit(write, &app, command, None, respond).await
}

pub(crate) async fn hypothesis_get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    check_id("id", &id)?;
    let value = read_branch(&app, &query, move |branch| hypothesis_view(branch, &id)).await?;
    Ok(ok_json(value))
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

fn proposal_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    branch
        .work
        .consensus
        .proposal(id)
        .map(|proposal| proposal.view())
        .ok_or_else(|| not_found("proposal", id))
}

pub(crate) async fn proposal_open(
    State(app): State<AppState>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: ProposalSpec = body(rest)?;
    let given = spec.id.clone();
    let respond = responder(
        write.context.branch.clone(),
        Status::Created,
        move |branch, written| {
            let id = written_id(written, "proposal", given.as_deref())
                .ok_or_else(|| Refusal::internal("opened proposal missing", &"proposal"))?;
            Ok(proposal_view(branch, &id)?)
        },
    );
    submit(write, &app, WorkCommand::ProposalOpen(spec), None, respond).await
}

pub(crate) async fn proposal_vote(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: VoteSpec = body(rest)?;
    check_id("id", &id)?;
    write.principal.require_acting_as(&spec.agent)?;
    let response_id = id.clone();
    let respond = responder(
        write.context.branch.clone(),
        Status::Ok,
        move |branch, _| Ok(proposal_view(branch, &response_id)?),
    );
    let command = WorkCommand::VoteCast { proposal: id, spec };
    submit(write, &app, command, None, respond).await
}

pub(crate) async fn proposal_get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    check_id("id", &id)?;
    let value = read_branch(&app, &query, move |branch| proposal_view(branch, &id)).await?;
    Ok(ok_json(value))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProposalsQuery {
    #[serde(default)]
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

pub(crate) async fn message_send(
    State(app): State<AppState>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: swarmlog_projections::work::MessageSpec = body(rest)?;
    write.principal.require_acting_as(&spec.from)?;
    let respond = responder(
        write.context.branch.clone(),
        Status::Created,
        move |branch, written| {
            let id = written_id(written, "message", None)
                .ok_or_else(|| Refusal::internal("sent message missing", &"message"))?;
            Ok(message_view(branch, &id, None)?)
        },
    );
    submit(write, &app, WorkCommand::MessageSend(spec), None, respond).await
}

pub(crate) async fn message_ack(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: AckSpec = body(rest)?;
    check_id("id", &id)?;
    write.principal.require_acting_as(&spec.agent)?;
    let (response_id, agent) = (id.clone(), spec.agent.clone());
    let respond = responder(
        write.context.branch.clone(),
        Status::Ok,
        move |branch, _| Ok(message_view(branch, &response_id, Some(&agent))?),
    );
    let command = WorkCommand::MessageAck { message: id, spec };
    submit(write, &app, command, None, respond).await
}

pub(crate) async fn message_get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    check_id("id", &id)?;
    let value = read_branch(&app, &query, move |branch| message_view(branch, &id, None)).await?;
    Ok(ok_json(value))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InboxQuery {
    #[serde(default)]
    unacked: Option<bool>,
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
    Path(agent): Path<String>,
    ApiQuery(query): ApiQuery<InboxQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_id("id", &agent)?;
    let unacked = query.unacked.unwrap_or(false);
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    if !wants_sse {
        if query.from.is_some() {
            return Err(invalid_query(
                "from applies to the SSE inbox (Accept: text/event-stream) only".into(),
            ));
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
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::malformed(
                        "invalid_last_event_id",
                        "Last-Event-ID must be a seq (a whole number)",
                    )
                })?,
        ),
    };
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
        from: last_event_id.map_or(query.from.unwrap_or(1).max(1), |seen| seen + 1),
        until: None,
        types: Some(types),
        stream_prefix: Some("message/".into()),
        actor: None,
        session: None,
        branch: Some(branch),
    };
    let predicate: events::EventPredicate =
        Arc::new(move |envelope: &Envelope| addressed_to(envelope, &agent, &acked));
    Ok(events::subscribe_matching(app.engine.clone(), filter, predicate).into_response())
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

fn session_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    branch
        .work
        .session_view(id)
        .ok_or_else(|| not_found("session", id))
}

pub(crate) async fn session_start(
    State(app): State<AppState>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: SessionSpec = body(rest)?;
    let given = spec.id.clone();
    let respond = responder(
        write.context.branch.clone(),
        Status::Created,
        move |branch, written| {
            let id = written_id(written, "session", given.as_deref())
                .ok_or_else(|| Refusal::internal("started session missing", &"session"))?;
            Ok(session_view(branch, &id)?)
        },
    );
    submit(write, &app, WorkCommand::SessionStart(spec), None, respond).await
}

pub(crate) async fn session_complete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (write, rest) = input.prepare(&app)?;
    let spec: SessionCompleteSpec = body(rest)?;
    check_id("id", &id)?;
    let response_id = id.clone();
    let respond = responder(
        write.context.branch.clone(),
        Status::Ok,
        move |branch, _| Ok(session_view(branch, &response_id)?),
    );
    let command = WorkCommand::SessionComplete { session: id, spec };
    submit(write, &app, command, None, respond).await
}

pub(crate) async fn session_get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    check_id("id", &id)?;
    let value = read_branch(&app, &query, move |branch| session_view(branch, &id)).await?;
    Ok(ok_json(value))
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
    Path(id): Path<String>,
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
    Path(id): Path<String>,
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
