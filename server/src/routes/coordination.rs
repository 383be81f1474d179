//! State cells, kv, locks, agents and branches (SPEC §3): thin handlers that parse the
//! body, check who may act as whom, and hand a command to the engine with a responder
//! that shapes the answer from the state after the write.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use swarmlog_projections::coordination::agents::{self, AgentStatus};
use swarmlog_projections::coordination::branches::list_branches;
use swarmlog_projections::coordination::cells::{get_cell, get_kv, list_kv};
use swarmlog_projections::coordination::locks::{grant_json, list_locks, lock_info, LockMode};
use swarmlog_projections::coordination::CoordinationCommand;
use swarmlog_projections::{BranchState, Rejection, MAIN_BRANCH};

use super::common::{
    answer, body, branch_of, not_found, ok_json, read_branch, responder, wait_of, Empty, ReadQuery,
    WriteInput,
};
use super::operation::{Plan, Target, WriteBody};
use crate::app::{AppState, BranchQuery, PreparedWrite};
use crate::auth::Principal;
use crate::engine::{Responder, Status, WriteCommand};
use crate::error::ApiError;
use crate::extract::{check_id, ApiPath, ApiQuery};
use crate::refusal::Refusal;

// ---- state cells ------------------------------------------------------------------

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValueBody {
    /// Any JSON.
    value: Value,
}

impl WriteBody for ValueBody {}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CasBody {
    /// The version the cell must be at now; null (or 0) means "must not exist". Required.
    #[serde(deserialize_with = "present")]
    #[schemars(with = "Option<u64>")]
    expected_version: Option<u64>,
    /// The new value (any JSON).
    value: Value,
}

impl WriteBody for CasBody {}

/// A field that must be present even when null (`expected_version: null`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Option::deserialize(deserializer)
}

fn cell_responder(branch: String, key: String, created_status: Status) -> Responder {
    responder(branch, created_status, move |branch, _| {
        Ok(cell_view(branch, &key)?)
    })
}

pub(crate) fn state_set(
    Target(key): Target,
    spec: ValueBody,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = cell_responder(write.context.branch.clone(), key.clone(), Status::Ok);
    let command = CoordinationCommand::StateSet {
        key,
        value: spec.value,
    };
    Ok(Plan::new(WriteCommand::Coordination(command), respond))
}

pub(crate) fn state_init(
    Target(key): Target,
    spec: ValueBody,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = cell_responder(write.context.branch.clone(), key.clone(), Status::Created);
    let command = CoordinationCommand::StateInit {
        key,
        value: spec.value,
    };
    Ok(Plan::new(WriteCommand::Coordination(command), respond))
}

pub(crate) fn state_cas(
    Target(key): Target,
    spec: CasBody,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = cell_responder(write.context.branch.clone(), key.clone(), Status::Ok);
    let command = CoordinationCommand::StateCas {
        key,
        expected_version: spec.expected_version,
        value: spec.value,
    };
    Ok(Plan::new(WriteCommand::Coordination(command), respond))
}

// ---- kv ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KvListQuery {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

pub(crate) async fn kv_list(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<KvListQuery>,
) -> Result<Response, ApiError> {
    let prefix = query.prefix.unwrap_or_default();
    let read = ReadQuery {
        branch: query.branch,
        at: query.at,
    };
    let entries = read_branch(&app, &read, move |branch| {
        Ok(list_kv(branch, &prefix)
            .map(|(key, entry)| entry.to_json(key))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ok_json(json!({ "entries": entries })))
}

pub(crate) fn kv_put(
    Target(key): Target,
    spec: ValueBody,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let branch = write.context.branch.clone();
    let response_key = key.clone();
    let respond: Responder = Box::new(move |state, written| {
        let entry = kv_view(branch_of(state, &branch)?, &response_key)?;
        answer(Status::Ok, entry, state, written)
    });
    let command = CoordinationCommand::KvPut {
        key,
        value: spec.value,
    };
    Ok(Plan::new(WriteCommand::Coordination(command), respond))
}

pub(crate) fn kv_delete(
    Target(key): Target,
    _: Empty,
    _: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let response = json!({"key": key, "deleted": true});
    let respond: Responder =
        Box::new(move |state, written| answer(Status::Ok, response, state, written));
    let command = CoordinationCommand::KvDelete { key };
    Ok(Plan::new(WriteCommand::Coordination(command), respond))
}

// ---- locks ------------------------------------------------------------------------

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcquireBody {
    owner: String,
    ttl_ms: u64,
    #[serde(default)]
    wait_ms: u64,
    #[serde(default)]
    mode: LockMode,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcquireManyBody {
    owner: String,
    resources: Vec<String>,
    ttl_ms: u64,
    #[serde(default)]
    wait_ms: u64,
    #[serde(default)]
    mode: LockMode,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenewBody {
    owner: String,
    token: u64,
    ttl_ms: u64,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseBody {
    owner: String,
    token: u64,
}

/// Every lock body acts as its `owner`.
macro_rules! owned_by_owner {
    ($($body:ty),*) => {$(
        impl WriteBody for $body {
            fn acting_as(&self) -> Option<(&'static str, &str)> {
                Some(("owner", &self.owner))
            }
        }
    )*};
}

owned_by_owner!(AcquireBody, AcquireManyBody, RenewBody, ReleaseBody);

/// Answers the owner's grant of `resource` after the write.
fn grant_responder(branch: String, resource: String, owner: String) -> Responder {
    Box::new(move |state, written| {
        let grant = grant_json(branch_of(state, &branch)?, &resource, &owner)
            .ok_or_else(|| Refusal::internal("granted lock missing after apply", &resource))?;
        answer(Status::Ok, grant, state, written)
    })
}

pub(crate) fn lock_acquire(
    Target(resource): Target,
    spec: AcquireBody,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let wait = wait_of(spec.wait_ms.into())?;
    let respond = grant_responder(
        write.context.branch.clone(),
        resource.clone(),
        spec.owner.clone(),
    );
    let command = CoordinationCommand::LockAcquire {
        resources: vec![resource],
        owner: spec.owner,
        ttl_ms: spec.ttl_ms,
        mode: spec.mode,
    };
    Ok(Plan::new(WriteCommand::Coordination(command), respond).waiting(wait))
}

pub(crate) fn locks_acquire_many(
    _: Target,
    spec: AcquireManyBody,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let wait = wait_of(spec.wait_ms.into())?;
    let branch = write.context.branch.clone();
    let (owner, resources) = (spec.owner.clone(), spec.resources.clone());
    let respond: Responder = Box::new(move |state, written| {
        let branch_state = branch_of(state, &branch)?;
        let grants: Vec<Value> = resources
            .iter()
            .filter_map(|resource| grant_json(branch_state, resource, &owner))
            .collect();
        answer(
            Status::Ok,
            json!({"owner": owner, "locks": grants}),
            state,
            written,
        )
    });
    let command = CoordinationCommand::LockAcquire {
        resources: spec.resources,
        owner: spec.owner,
        ttl_ms: spec.ttl_ms,
        mode: spec.mode,
    };
    Ok(Plan::new(WriteCommand::Coordination(command), respond).waiting(wait))
}

pub(crate) fn lock_renew(
    Target(resource): Target,
    spec: RenewBody,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let respond = grant_responder(
        write.context.branch.clone(),
        resource.clone(),
        spec.owner.clone(),
    );
    let command = CoordinationCommand::LockRenew {
        resource,
        owner: spec.owner,
        token: spec.token,
        ttl_ms: spec.ttl_ms,
    };
    Ok(Plan::new(WriteCommand::Coordination(command), respond))
}

pub(crate) fn lock_release(
    Target(resource): Target,
    spec: ReleaseBody,
    _: &PreparedWrite,
) -> Result<Plan, ApiError> {
    let response = json!({"resource": resource, "owner": spec.owner, "released": true});
    let respond: Responder =
        Box::new(move |state, written| answer(Status::Ok, response, state, written));
    let command = CoordinationCommand::LockRelease {
        resource,
        owner: spec.owner,
        token: spec.token,
    };
    Ok(Plan::new(WriteCommand::Coordination(command), respond))
}

pub(crate) async fn locks_list(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    let branch = BranchQuery {
        branch: query.branch.clone(),
    }
    .branch()?;
    let waiting = app.engine.lock_waiters(&branch).await?;
    let locks = read_branch(&app, &query, move |state| {
        Ok(list_locks(state)
            .map(|(resource, lock)| with_waiters(lock.to_json(resource), &waiting, resource))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ok_json(json!({ "locks": locks })))
}

pub(crate) async fn lock_get(
    State(app): State<AppState>,
    ApiPath(resource): ApiPath<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    check_id("resource", &resource)?;
    let branch = BranchQuery {
        branch: query.branch.clone(),
    }
    .branch()?;
    let waiting = app.engine.lock_waiters(&branch).await?;
    let value = read_branch(&app, &query, move |state| {
        let base = match lock_info(state, &resource) {
            Some(lock) => lock.to_json(&resource),
            None => json!({"resource": resource, "holders": []}),
        };
        Ok(with_waiters(base, &waiting, &resource))
    })
    .await?;
    Ok(ok_json(value))
}

/// Adds the waiters of `resource` (in the order they will be served) to a lock's JSON.
fn with_waiters(
    mut lock: Value,
    waiting: &[(String, Vec<String>, &'static str)],
    resource: &str,
) -> Value {
    let waiters: Vec<Value> = waiting
        .iter()
        .filter(|(_, resources, _)| resources.iter().any(|wanted| wanted == resource))
        .map(|(owner, _, mode)| json!({"owner": owner, "mode": mode}))
        .collect();
    if let Some(object) = lock.as_object_mut() {
        object.insert("waiters".into(), Value::Array(waiters));
    }
    lock
}

// ---- agents -----------------------------------------------------------------------

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    /// The agent's id.
    id: String,
    /// What kind of agent it is.
    #[serde(rename = "type")]
    agent_type: String,
    /// What it can do; tasks that require capabilities go to agents that have them.
    #[serde(default)]
    capabilities: Vec<String>,
    /// The lease: without a heartbeat for this long the agent expires (its locks are
    /// released and its claims go back to pending).
    #[serde(default)]
    ttl_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentsQuery {
    #[serde(default, rename = "type")]
    agent_type: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<swarmlog_projections::coordination::agents::AgentStatus>")]
    status: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

/// A state cell, for `GET /v1/state/{key}`.
pub(crate) fn cell_view(branch: &BranchState, key: &str) -> Result<Value, Rejection> {
    get_cell(branch, key)
        .map(|cell| cell.to_json(key))
        .ok_or_else(|| not_found("state cell", key))
}

/// A kv entry, for `GET /v1/kv/{key}`.
pub(crate) fn kv_view(branch: &BranchState, key: &str) -> Result<Value, Rejection> {
    get_kv(branch, key)
        .map(|entry| entry.to_json(key))
        .ok_or_else(|| not_found("key", key))
}

/// An agent, for `GET /v1/agents/{agent}`.
pub(crate) fn agent_view(branch: &BranchState, id: &str) -> Result<Value, Rejection> {
    agents::agent(branch, id)
        .map(|agent| agent.to_json())
        .ok_or_else(|| not_found("agent", id))
}

fn agent_responder(branch: String, id: String, status: Status) -> Responder {
    Box::new(move |state, written| {
        let agent = agent_view(branch_of(state, &branch)?, &id)?;
        answer(status, agent, state, written)
    })
}

pub(crate) async fn agent_register(
    State(app): State<AppState>,
    input: WriteInput,
) -> Result<Response, ApiError> {
    let (mut write, mut rest) = input.prepare(&app)?;
    // `meta` on a registration is the agent's own metadata, not the event's provenance.
    let agent_meta = write
        .context
        .meta
        .take()
        .and_then(|text| serde_json::from_str(&text).ok());
    if let Some(object) = rest.as_object_mut() {
        object.remove("meta");
    }
    let spec: RegisterBody = body(rest)?;
    check_id("id", &spec.id)?;
    write.principal.require_acting_as(&spec.id)?;
    let by_admin = write.principal.role == crate::auth::Role::Admin;
    let respond = agent_responder(
        write.context.branch.clone(),
        spec.id.clone(),
        Status::Created,
    );
    let command = CoordinationCommand::AgentRegister {
        id: spec.id,
        agent_type: spec.agent_type,
        capabilities: spec.capabilities,
        ttl_ms: spec.ttl_ms,
        meta: agent_meta,
        by_admin,
    };
    write
        .submit(&app, WriteCommand::Coordination(command), None, respond)
        .await
}

pub(crate) fn agent_kill(
    Target(id): Target,
    _: Empty,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    write.principal.require_admin()?;
    let respond = agent_responder(write.context.branch.clone(), id.clone(), Status::Ok);
    let command = CoordinationCommand::AgentKill { id };
    Ok(Plan::new(WriteCommand::Coordination(command), respond))
}

pub(crate) fn agent_deregister(
    Target(id): Target,
    _: Empty,
    write: &PreparedWrite,
) -> Result<Plan, ApiError> {
    write.principal.require_acting_as(&id)?;
    let respond = agent_responder(write.context.branch.clone(), id.clone(), Status::Ok);
    let command = CoordinationCommand::AgentDeregister { id };
    Ok(Plan::new(WriteCommand::Coordination(command), respond))
}

pub(crate) async fn agent_heartbeat(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<BranchQuery>,
    _: crate::extract::EmptyBody,
) -> Result<Response, ApiError> {
    check_id("id", &id)?;
    principal.require_acting_as(&id)?;
    let branch = query.branch()?;
    let agent = id.clone();
    let lease = app
        .engine
        .touch(move |state, now_ms| {
            let branch_state = state.branches.get_mut(&branch).ok_or_else(|| {
                ApiError::not_found(
                    "branch_not_found",
                    format!("branch '{branch}' does not exist"),
                )
            })?;
            agents::heartbeat(branch_state, &agent, now_ms).map_err(ApiError::from)
        })
        .await??;
    let lease = lease.map(swarmlog_projections::time::format_rfc3339_ms);
    Ok(ok_json(json!({"id": id, "lease_expires_at": lease})))
}

pub(crate) async fn agents_list(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<AgentsQuery>,
) -> Result<Response, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(AgentStatus::parse(text).ok_or_else(|| {
            ApiError::malformed(
                "invalid_query",
                format!("status must be active, expired, killed or deregistered, not '{text}'"),
            )
        })?),
    };
    let agent_type = query.agent_type;
    let read = ReadQuery {
        branch: query.branch,
        at: query.at,
    };
    let list = read_branch(&app, &read, move |branch| {
        Ok(agents::list_agents(branch, agent_type.as_deref(), status)
            .map(|agent| agent.to_json())
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ok_json(json!({ "agents": list })))
}

// ---- branches ---------------------------------------------------------------------

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BranchBody {
    /// The new branch's name.
    name: String,
    /// The branch to fork (default main).
    #[serde(default)]
    from: Option<String>,
    /// Fork the state as it was after this seq (default the head).
    #[serde(default)]
    at: Option<u64>,
}

impl WriteBody for BranchBody {}

pub(crate) fn branch_create(
    _: Target,
    spec: BranchBody,
    _: &PreparedWrite,
) -> Result<Plan, ApiError> {
    check_id("name", &spec.name)?;
    let from = spec.from.unwrap_or_else(|| MAIN_BRANCH.to_owned());
    let name = spec.name.clone();
    let respond: Responder = Box::new(move |state, written| {
        let listed = list_branches(state)
            .into_iter()
            .find(|branch| branch["name"] == json!(name));
        answer(
            Status::Created,
            listed.unwrap_or_else(|| json!({"name": name})),
            state,
            written,
        )
    });
    let command = CoordinationCommand::BranchCreate {
        name: spec.name,
        from,
        at: spec.at,
    };
    Ok(Plan::new(WriteCommand::Coordination(command), respond))
}

pub(crate) async fn branches_list(State(app): State<AppState>) -> Result<Response, ApiError> {
    let list = app.engine.read(list_branches).await?;
    Ok(ok_json(json!({ "branches": list })))
}
