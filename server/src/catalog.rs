//! The command catalog (SPEC §1): every operation declared once, with its name, its HTTP
//! route, its typed input (a serde type with a JSON Schema), a description written for a
//! reader who has nothing else, the caller field an agent fills implicitly, and its handler.
//!
//! The adapters are derived from this table: the router registers each entry's route
//! (`app.rs`), the OpenAPI document lists each entry with its request schema
//! (`openapi.rs`), the MCP server offers each entry marked as a tool (`mcp.rs`), and the
//! CLI's generic `swarmlog call NAME JSON` finds an operation here by name. A new operation
//! is one entry here, its handler and its projection rule.

use std::sync::LazyLock;

use axum::routing::{get, post, MethodRouter};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};
use swarmlog_projections::work::TaskSpec;

use crate::app::{self, AppState};
use crate::routes::common::{Empty, ReadQuery};
use crate::routes::operation::{self, PlanFn, WriteBody};
use crate::routes::{coordination as c, events as e, work as w};
use serde::de::DeserializeOwned;

/// The HTTP method of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A read.
    Get,
    /// A write.
    Post,
    /// A write that replaces a value.
    Put,
    /// A write that removes something.
    Delete,
}

impl Method {
    /// The method's name in lower case, as OpenAPI writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Delete => "delete",
        }
    }

    /// The HTTP method.
    pub fn http(self) -> axum::http::Method {
        match self {
            Method::Get => axum::http::Method::GET,
            Method::Post => axum::http::Method::POST,
            Method::Put => axum::http::Method::PUT,
            Method::Delete => axum::http::Method::DELETE,
        }
    }

    /// Whether the operation writes (its input is a JSON body rather than a query).
    pub fn writes(self) -> bool {
        self != Method::Get
    }
}

/// Builds the JSON Schema of an input type.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One operation.
pub struct Operation {
    /// snake_case name: the MCP tool name, the OpenAPI `operationId`, `swarmlog call NAME`.
    pub name: &'static str,
    /// The HTTP method.
    pub method: Method,
    /// The HTTP path template; `{name}` segments are path parameters, named for what
    /// they hold (`{task}`, `{resource}`), and are fields of the input too.
    pub path: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// For an MCP tool: when an agent should use it (None: not offered over MCP).
    pub tool: Option<&'static str>,
    /// The field that names the acting agent (`owner`, `agent`, `from`); over MCP it is
    /// filled with the caller's agent and left out of the tool's schema.
    pub caller: Option<&'static str>,
    /// The JSON body of a write, or the query of a read (path parameters are added).
    pub input: Option<SchemaFn>,
    /// The input an MCP tool takes where it is narrower than the HTTP one (one object
    /// shape instead of a choice, which tool-calling APIs refuse at the top level).
    pub tool_input: Option<SchemaFn>,
    /// The event types it may write.
    pub writes: &'static [&'static str],
    /// The name of the schema of its answer (`answers.rs`); a write's answer also carries
    /// the `seq` of its last event. NDJSON reads answer one such object per line.
    pub answer: &'static str,
    /// The HTTP handler.
    pub route: MethodRouter<AppState>,
}

/// The JSON Schema of `T`.
pub fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

impl Operation {
    fn new(
        name: &'static str,
        method: Method,
        path: &'static str,
        summary: &'static str,
        route: MethodRouter<AppState>,
    ) -> Self {
        Operation {
            name,
            method,
            path,
            summary,
            tool: None,
            caller: None,
            input: None,
            tool_input: None,
            writes: &[],
            answer: "",
            route,
        }
    }

    /// A write served by the one write adapter ([`operation::write`]): its body is `B`,
    /// and `plan` turns it into an engine command.
    fn write<B>(
        name: &'static str,
        method: Method,
        path: &'static str,
        summary: &'static str,
        plan: PlanFn<B>,
    ) -> Self
    where
        B: JsonSchema + DeserializeOwned + WriteBody + Send + 'static,
    {
        Operation::new(name, method, path, summary, operation::write(method, plan)).input::<B>()
    }

    fn input<T: JsonSchema>(mut self) -> Self {
        self.input = Some(schema::<T>);
        self
    }

    fn tool_input<T: JsonSchema>(mut self) -> Self {
        self.tool_input = Some(schema::<T>);
        self
    }

    fn tool(mut self, description: &'static str) -> Self {
        self.tool = Some(description);
        self
    }

    fn caller(mut self, field: &'static str) -> Self {
        self.caller = Some(field);
        self
    }

    fn answers(mut self, schema: &'static str) -> Self {
        self.answer = schema;
        self
    }

    fn writes(mut self, types: &'static [&'static str]) -> Self {
        self.writes = types;
        self
    }

    /// The names of the path parameters, in order.
    pub fn path_parameters(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split('}').next())
    }

    /// The input's own schema (body or query) as JSON, with its definitions inlined.
    pub fn input_schema(&self) -> Value {
        schema_of(self.input)
    }

    /// The input schema of the MCP tool (see [`Operation::tool_input`]).
    fn tool_input_schema(&self) -> Value {
        schema_of(self.tool_input.or(self.input))
    }
}

/// An input's schema as JSON, with its definitions inlined.
pub fn schema_of(input: Option<SchemaFn>) -> Value {
    let Some(input) = input else {
        return json!({"type": "object", "properties": {}});
    };
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut value = input(&mut generator).to_value();
    tidy_schema(&mut value);
    value
}

impl Operation {
    /// The whole input as one object schema: path parameters (required strings) and the
    /// body's or query's fields. What MCP and `swarmlog call` take.
    pub fn arguments_schema(&self) -> Value {
        self.with_path_parameters(self.input_schema())
    }

    fn with_path_parameters(&self, mut schema: Value) -> Value {
        let object = schema
            .as_object_mut()
            .expect("an input schema is a JSON object");
        let properties = object
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("properties is an object")
            .clone();
        let mut merged = Map::new();
        let mut required: Vec<Value> = Vec::new();
        for name in self.path_parameters() {
            merged.insert(name.to_owned(), json!({"type": "string"}));
            required.push(json!(name));
        }
        merged.extend(properties);
        for name in object
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !required.contains(name) {
                required.push(name.clone());
            }
        }
        object.insert("properties".into(), Value::Object(merged));
        object.insert("required".into(), Value::Array(required));
        object.insert("type".into(), json!("object"));
        schema
    }

    /// The schema of an MCP tool: the arguments without the caller field and without
    /// `branch` and `at` (an agent works on its connection's branch, now).
    pub fn tool_schema(&self) -> Value {
        let mut schema = self.with_path_parameters(self.tool_input_schema());
        let hidden = [self.caller.unwrap_or(""), "branch", "at"];
        if let Some(properties) = schema["properties"].as_object_mut() {
            properties.retain(|name, _| !hidden.contains(&name.as_str()));
        }
        if let Some(required) = schema["required"].as_array_mut() {
            required.retain(|name| !hidden.iter().any(|hidden| name == hidden));
        }
        schema
    }

    /// Turns arguments (the object [`Operation::arguments_schema`] describes) into an HTTP
    /// request: the path with its parameters filled in (percent-encoded) and, for a read,
    /// the rest as the query, for a write the rest as the JSON body. A missing path
    /// parameter is named in the error.
    pub fn http_request(&self, arguments: &Map<String, Value>) -> Result<HttpCall, String> {
        let mut rest = arguments.clone();
        let mut path = String::new();
        let mut tail = self.path;
        while let Some(open) = tail.find('{') {
            let close = tail[open..]
                .find('}')
                .map(|offset| open + offset)
                .expect("catalog paths close every parameter");
            let name = &tail[open + 1..close];
            let value = match rest.remove(name) {
                Some(Value::String(value)) => value,
                Some(Value::Number(number)) => number.to_string(),
                _ => return Err(format!("missing field `{name}` (a string)")),
            };
            path.push_str(&tail[..open]);
            path.push_str(&percent_encode(&value));
            tail = &tail[close + 1..];
        }
        path.push_str(tail);
        if self.method.writes() {
            return Ok(HttpCall {
                method: self.method,
                path_and_query: path,
                body: Some(Value::Object(rest)),
            });
        }
        let query: Vec<String> = rest
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(name, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Array(items) => items
                        .iter()
                        .map(|item| {
                            item.as_str()
                                .map_or_else(|| item.to_string(), str::to_owned)
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                format!("{}={}", percent_encode(name), percent_encode(&text))
            })
            .collect();
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query.join("&"));
        }
        Ok(HttpCall {
            method: self.method,
            path_and_query: path,
            body: None,
        })
    }
}

/// An operation as an HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCall {
    /// The method.
    pub method: Method,
    /// The path with its parameters and query filled in.
    pub path_and_query: String,
    /// The JSON body of a write.
    pub body: Option<Value>,
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Drops what schemars adds that no client needs (`$schema`, `title`, integer `format`s),
/// so that the MCP tool list stays small.
fn tidy_schema(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.remove("$schema");
            object.remove("title");
            if object
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|format| {
                    matches!(
                        format,
                        "uint64" | "int64" | "uint" | "double" | "uint8" | "uint32"
                    )
                })
            {
                // A seq, version or token: the server reads it as a u64 (a field's own
                // `range(max = ...)` stays).
                if object.get("format").and_then(Value::as_str) == Some("uint64") {
                    object.entry("maximum").or_insert_with(|| json!(u64::MAX));
                }
                object.remove("format");
            }
            for child in object.values_mut() {
                tidy_schema(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tidy_schema),
        _ => {}
    }
}

/// Finds an operation by name.
pub fn find(name: &str) -> Option<&'static Operation> {
    operations().iter().find(|operation| operation.name == name)
}

/// Every operation, in the order the API reference lists them.
pub fn operations() -> &'static [Operation] {
    &OPERATIONS
}

use Method::{Delete, Get, Post, Put};

static OPERATIONS: LazyLock<Vec<Operation>> = LazyLock::new(|| {
    let mut all = events();
    all.extend(coordination());
    all.extend(tasks());
    all.extend(blackboard_and_consensus());
    all.extend(messages_and_sessions());
    all
});

fn events() -> Vec<Operation> {
    vec![
        Operation::new("append_events", Post, "/v1/events", "Append one custom event or an atomic batch; 201 {seq, events}", post(e::append))
            .answers("Appended")
            .input::<e::AppendBody>()
            .tool_input::<e::BatchBody>()
            .tool("Append your own events (any type outside the reserved prefixes task. lock. state. kv. agent. ...) atomically, optionally only if a stream is at expected_version. Use for domain facts other agents react to.")
            .writes(&["*"]),
        Operation::new("read_events", Get, "/v1/events", "NDJSON replay of committed events (SSE with Accept: text/event-stream)", get(e::read_events))
            .answers("Envelope")
            .input::<e::EventsQuery>()
            .tool_input::<e::ReadEventsArguments>()
            .tool("Read committed events in seq order, filtered by types (globs such as task.*), stream prefix, actor or session. For history and audit; to wait for new events use wait_events."),
        Operation::new("stream_get", Get, "/v1/streams/{stream}", "A stream's events and version", get(e::read_stream))
            .answers("Stream")
            .input::<e::StreamQuery>(),
        Operation::new("audit_head", Get, "/v1/audit/head", "The head of the hash chain: {seq, hash}", get(app::audit_head))
            .answers("AuditHead"),
        Operation::new("snapshot", Post, "/v1/snapshots", "Write a projection snapshot now (admin); 201 {head, path, bytes}", post(app::snapshot))
            .answers("Snapshot")
            .input::<Empty>(),
    ]
}

fn coordination() -> Vec<Operation> {
    vec![
        Operation::new("state_get", Get, "/v1/state/{key}", "A state cell: {key, value, version}", operation::entity(c::cell_view))
            .answers("Cell")
            .input::<ReadQuery>()
            .tool("Read a shared state cell with its version; pass the version to state_cas to update it without losing a concurrent update."),
        Operation::write("state_set", Put, "/v1/state/{key}", "Set a state cell unconditionally", c::state_set)
            .answers("Cell")
            .writes(&["state.set"]),
        Operation::write("state_init", Post, "/v1/state/{key}/init", "Create a state cell if absent (no-op if present)", c::state_init)
            .answers("Cell")
            .writes(&["state.set"]),
        Operation::write("state_cas", Post, "/v1/state/{key}/cas", "Compare-and-swap a state cell on its version", c::state_cas)
            .answers("Cell")
            .tool("Update a state cell only if it is still at expected_version (null: only if it does not exist, e.g. to elect a leader). On version_conflict re-read with state_get and retry.")
            .writes(&["state.set"]),
        Operation::new("kv_list", Get, "/v1/kv", "List kv entries by prefix", get(c::kv_list))
            .answers("KvEntries")
            .input::<c::KvListQuery>(),
        Operation::new("kv_get", Get, "/v1/kv/{key}", "A kv entry", operation::entity(c::kv_view))
            .answers("KvEntry")
            .input::<ReadQuery>()
            .tool("Read a plain key (last writer wins)."),
        Operation::write("kv_put", Put, "/v1/kv/{key}", "Put a kv entry (last writer wins)", c::kv_put)
            .answers("KvEntry")
            .tool("Write a plain key, last writer wins. For values several agents update, use state_cas instead.")
            .writes(&["kv.put"]),
        Operation::write("kv_delete", Delete, "/v1/kv/{key}", "Delete a kv entry", c::kv_delete)
            .answers("KvDeleted")
            .writes(&["kv.deleted"]),
        Operation::new("lock_list", Get, "/v1/locks", "Every held lock with holders and waiters", get(c::locks_list))
            .answers("Locks")
            .input::<ReadQuery>(),
        Operation::write("lock_acquire_many", Post, "/v1/locks/acquire", "Acquire several locks atomically (all or none)", c::locks_acquire_many)
            .answers("LockGrants")
            .caller("owner")
            .writes(&["lock.acquired", "lock.renewed", "lock.expired", "lock.deadlock_detected"]),
        Operation::new("lock_get", Get, "/v1/locks/{resource}", "A lock: holders, mode, token, expiry, waiters", get(c::lock_get))
            .answers("Lock")
            .input::<ReadQuery>(),
        Operation::write("lock_acquire", Post, "/v1/locks/{resource}/acquire", "Acquire a lock with a TTL; 200 {token, expires_at}", c::lock_acquire)
            .answers("LockGrant")
            .caller("owner")
            .tool("Take a lock for ttl_ms (wait up to wait_ms in FIFO order). Returns a fencing token: pass {\"fence\":{\"resource\",\"token\"}} on the writes it guards. Acquire again before the TTL ends to renew.")
            .writes(&["lock.acquired", "lock.renewed", "lock.expired", "lock.deadlock_detected"]),
        Operation::write("lock_renew", Post, "/v1/locks/{resource}/renew", "Renew a held lock's TTL", c::lock_renew)
            .answers("LockGrant")
            .caller("owner")
            .writes(&["lock.renewed"]),
        Operation::write("lock_release", Post, "/v1/locks/{resource}/release", "Release a held lock", c::lock_release)
            .answers("LockReleased")
            .caller("owner")
            .tool("Release a lock you hold, with its token, as soon as the guarded work is done.")
            .writes(&["lock.released"]),
        Operation::new("agent_register", Post, "/v1/agents", "Register an agent with a lease", post(c::agent_register))
            .answers("Agent")
            .input::<c::RegisterBody>()
            .writes(&["agent.registered"]),
        Operation::new("agent_list", Get, "/v1/agents", "List agents (?type=&status=)", get(c::agents_list))
            .answers("Agents")
            .input::<c::AgentsQuery>(),
        Operation::new("agent_get", Get, "/v1/agents/{agent}", "An agent", operation::entity(c::agent_view))
            .answers("Agent")
            .input::<ReadQuery>(),
        Operation::write("agent_deregister", Delete, "/v1/agents/{agent}", "Deregister an agent (its locks released, its claims back to pending)", c::agent_deregister)
            .answers("Agent")
            .writes(&["agent.deregistered", "lock.released", "task.released"]),
        Operation::new("agent_heartbeat", Post, "/v1/agents/{agent}/heartbeat", "Extend an agent's lease (not logged)", post(c::agent_heartbeat))
            .answers("Heartbeat")
            .input::<Empty>(),
        Operation::write("agent_kill", Post, "/v1/agents/{agent}/kill", "Kill an agent (admin): clean-up and every later write refused", c::agent_kill)
            .answers("Agent")
            .writes(&["agent.killed", "lock.released", "task.released"]),
        Operation::write("branch_create", Post, "/v1/branches", "Fork a branch from another at a seq", c::branch_create)
            .answers("Branch")
            .writes(&["branch.created"]),
        Operation::new("branch_list", Get, "/v1/branches", "List branches", get(c::branches_list))
            .answers("Branches"),
    ]
}

fn tasks() -> Vec<Operation> {
    vec![
        Operation::new("task_create", Post, "/v1/tasks", "Create a task, or an atomic batch {tasks: [...]}", post(w::task_create))
            .answers("TaskCreated")
            .input::<TaskSpec>()
            .tool("Create a unit of work for any capable agent: type, priority 1..10 (10 most urgent), depends_on (ids that must complete first), capabilities required, parameters, timeout_ms, max_attempts.")
            .writes(&["task.created"]),
        Operation::new("task_list", Get, "/v1/tasks", "List tasks (?status=&session=&agent=&type=)", get(w::tasks_list))
            .answers("Tasks")
            .input::<w::TasksQuery>()
            .tool("List tasks, filtered by status (blocked, awaiting_approval, pending, claimed, completed, failed, cancelled), session, agent or type."),
        Operation::write("task_claim", Post, "/v1/tasks/claim", "Claim the most urgent pending task the agent can do; 204 if none", w::task_claim)
            .answers("Task")
            .caller("agent")
            .tool("Claim the most urgent pending task your capabilities cover (optionally only some types); wait up to wait_ms for one to appear. Returns the task, or {\"task\": null} when there is none. Keep it alive with task_progress.")
            .writes(&["task.claimed"]),
        Operation::new("task_get", Get, "/v1/tasks/{task}", "A task with its history", operation::entity(w::task_view))
            .answers("Task")
            .input::<ReadQuery>(),
        Operation::write("task_assign", Post, "/v1/tasks/{task}/assign", "Assign a task to an agent or by strategy", w::task_assign)
            .answers("Task")
            .writes(&["task.assigned", "task.claimed"]),
        Operation::write("task_approve", Post, "/v1/tasks/{task}/approve", "Approve a task that requires approval", w::task_approve)
            .answers("Task")
            .writes(&["task.approved"]),
        Operation::write("task_progress", Post, "/v1/tasks/{task}/progress", "Report progress on a claimed task (renews its lease)", w::task_progress)
            .answers("Task")
            .caller("agent")
            .tool("Report progress (percent 0..100, note) on a task you claimed; this renews your claim's lease, so call it more often than timeout_ms.")
            .writes(&["task.progressed"]),
        Operation::write("task_complete", Post, "/v1/tasks/{task}/complete", "Complete a claimed task with a result", w::task_complete)
            .answers("Task")
            .caller("agent")
            .tool("Finish a task you claimed with its result (any JSON); dependents become claimable.")
            .writes(&["task.completed"]),
        Operation::write("task_fail", Post, "/v1/tasks/{task}/fail", "Fail a claimed task (retry or not)", w::task_fail)
            .answers("Task")
            .caller("agent")
            .tool("Give up a task you claimed with an error; retry: true puts it back to pending (until max_attempts), else it fails and its dependents are cancelled.")
            .writes(&["task.failed"]),
        Operation::write("task_release", Post, "/v1/tasks/{task}/release", "Release a claimed task back to pending", w::task_release)
            .answers("Task")
            .caller("agent")
            .writes(&["task.released"]),
        Operation::write("task_cancel", Post, "/v1/tasks/{task}/cancel", "Cancel a task and its dependents", w::task_cancel)
            .answers("Task")
            .writes(&["task.cancelled"]),
        Operation::write("task_auction", Post, "/v1/tasks/{task}/auction", "Open an auction for a task", w::task_auction)
            .answers("Task")
            .writes(&["task.auction_opened"]),
        Operation::write("task_bid", Post, "/v1/tasks/{task}/bids", "Bid on an auctioned task", w::task_bid)
            .answers("Task")
            .caller("agent")
            .writes(&["task.bid_placed"]),
    ]
}

fn blackboard_and_consensus() -> Vec<Operation> {
    vec![
        Operation::write("finding_post", Post, "/v1/findings", "Report a finding on the blackboard", w::finding_post)
            .answers("Finding")
            .caller("agent")
            .tool("Post what you found to the shared blackboard: category observation|hypothesis|conclusion, content, confidence 0..1, evidence [{source, query, result}], tags.")
            .writes(&["finding.reported"]),
        Operation::new("finding_list", Get, "/v1/findings", "List findings (?session=&agent=&category=&tag=)", get(w::findings_list))
            .answers("Findings")
            .input::<w::FindingsQuery>(),
        Operation::new("finding_get", Get, "/v1/findings/{finding}", "A finding", operation::entity(w::finding_view))
            .answers("Finding")
            .input::<ReadQuery>(),
        Operation::write("hypothesis_propose", Post, "/v1/hypotheses", "Propose a hypothesis with a prior confidence", w::hypothesis_propose)
            .answers("Hypothesis")
            .tool("Propose a hypothesis with a prior confidence 0..1; findings then move its confidence through hypothesis_evidence.")
            .writes(&["hypothesis.proposed"]),
        Operation::new("hypothesis_list", Get, "/v1/hypotheses", "List hypotheses by confidence (?session=)", get(w::hypotheses_list))
            .answers("Hypotheses")
            .input::<w::SessionFilterQuery>(),
        Operation::new("hypothesis_get", Get, "/v1/hypotheses/{hypothesis}", "A hypothesis with its evidence", operation::entity(w::hypothesis_view))
            .answers("Hypothesis")
            .input::<ReadQuery>(),
        Operation::write("hypothesis_evidence", Post, "/v1/hypotheses/{hypothesis}/evidence", "Attach a finding as evidence for or against", w::hypothesis_evidence)
            .answers("Hypothesis")
            .tool("Attach a finding as evidence for (supports: true) or against a hypothesis, with an optional weight; the hypothesis's confidence is recomputed.")
            .writes(&["hypothesis.evidence_added"]),
        Operation::write("hypothesis_validate", Post, "/v1/hypotheses/{hypothesis}/validate", "Validate or refute a hypothesis", w::hypothesis_validate)
            .answers("Hypothesis")
            .writes(&["hypothesis.validated"]),
        Operation::write("proposal_open", Post, "/v1/proposals", "Open a proposal for a vote", w::proposal_open)
            .answers("Proposal")
            .tool("Ask the swarm to decide an action by vote: quorum majority|unanimous|threshold, voters (default: the active agents), deadline_ms.")
            .writes(&["proposal.opened"]),
        Operation::new("proposal_list", Get, "/v1/proposals", "List proposals (?status=open|decided)", get(w::proposals_list))
            .answers("Proposals")
            .input::<w::ProposalsQuery>(),
        Operation::new("proposal_get", Get, "/v1/proposals/{proposal}", "A proposal with its votes and decision", operation::entity(w::proposal_view))
            .answers("Proposal")
            .input::<ReadQuery>()
            .tool("Read a proposal: status open|decided, decision, votes for/against, abstentions and each vote."),
        Operation::write("vote", Post, "/v1/proposals/{proposal}/votes", "Cast one vote as an eligible agent", w::proposal_vote)
            .answers("Proposal")
            .caller("agent")
            .tool("Vote yes, no or abstain on an open proposal, once, with an optional confidence and reason.")
            .writes(&["vote.cast", "proposal.decided"]),
    ]
}

fn messages_and_sessions() -> Vec<Operation> {
    vec![
        Operation::write("message_send", Post, "/v1/messages", "Send a direct message or a broadcast (to \"*\")", w::message_send)
            .answers("Message")
            .caller("from")
            .tool("Send a message to one agent or to every agent (to: \"*\"), with a type and any JSON payload; requires_ack asks the recipients to message_ack it.")
            .writes(&["message.sent"]),
        Operation::new("message_list", Get, "/v1/messages", "The newest messages, newest first (?agent=&limit=)", get(w::messages_list))
            .answers("Messages")
            .input::<w::MessagesQuery>(),
        Operation::new("message_get", Get, "/v1/messages/{message}", "A message with its recipients and acks", operation::entity(w::message_get_view))
            .answers("Message")
            .input::<ReadQuery>(),
        Operation::write("message_ack", Post, "/v1/messages/{message}/ack", "Acknowledge a message as a recipient", w::message_ack)
            .answers("Message")
            .caller("agent")
            .tool("Acknowledge a message sent to you that requires an ack.")
            .writes(&["message.acked"]),
        Operation::new("inbox", Get, "/v1/agents/{agent}/inbox", "An agent's inbox (?unacked=true); SSE with Accept: text/event-stream", get(w::inbox))
            .answers("Inbox")
            .input::<w::InboxQuery>()
            .caller("agent")
            .tool("Read the messages sent to you (unacked: true for only those you have not acknowledged)."),
        Operation::write("session_start", Post, "/v1/sessions", "Start a session", w::session_start)
            .answers("Session")
            .writes(&["session.started"]),
        Operation::new("session_list", Get, "/v1/sessions", "List sessions with their progress", get(w::sessions_list))
            .answers("Sessions")
            .input::<ReadQuery>(),
        Operation::new("session_get", Get, "/v1/sessions/{session}", "A session: status, agents, progress percent", operation::entity(w::session_view))
            .answers("Session")
            .input::<ReadQuery>(),
        Operation::write("session_complete", Post, "/v1/sessions/{session}/complete", "Complete a session with an outcome", w::session_complete)
            .answers("Session")
            .writes(&["session.completed"]),
        Operation::new("session_report", Get, "/v1/sessions/{session}/report", "A session's report: by_agent, by_task, summary", get(w::session_report))
            .answers("Report")
            .input::<ReadQuery>()
            .tool("Summarize a session: tasks by agent and by task, totals, success rate, average task time."),
        Operation::new("session_events", Get, "/v1/sessions/{session}/events", "NDJSON export of every event of the session", get(w::session_events))
            .answers("Envelope")
            .input::<w::SessionEventsQuery>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_every_route_has_a_schema_or_no_input() {
        let mut seen = std::collections::HashSet::new();
        for operation in operations() {
            assert!(seen.insert(operation.name), "{} twice", operation.name);
            assert!(
                operation
                    .name
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte == b'_'),
                "{} is snake_case",
                operation.name
            );
            assert_eq!(
                operation.arguments_schema()["type"],
                "object",
                "{}",
                operation.name
            );
            if operation.method.writes() {
                assert!(
                    operation.input.is_some(),
                    "write {} has an input type",
                    operation.name
                );
            }
        }
    }

    #[test]
    fn a_call_fills_the_path_percent_encoded_and_sends_the_rest_as_body_or_query() {
        let complete = find("task_complete").expect("catalogued");
        let mut arguments = Map::new();
        arguments.insert("task".into(), json!("T 1/2"));
        arguments.insert("agent".into(), json!("a"));
        let call = complete.http_request(&arguments).expect("valid");
        assert_eq!(call.path_and_query, "/v1/tasks/T%201%2F2/complete");
        assert_eq!(call.body, Some(json!({"agent": "a"})));
        let list = find("task_list").expect("catalogued");
        let mut query = Map::new();
        query.insert("status".into(), json!("pending"));
        query.insert("types".into(), json!(["a.*", "b"]));
        let call = list.http_request(&query).expect("valid");
        assert_eq!(
            call.path_and_query,
            "/v1/tasks?status=pending&types=a.%2A%2Cb"
        );
        assert_eq!(call.body, None);
        let missing = complete.http_request(&Map::new()).expect_err("no task");
        assert!(missing.contains("task"), "{missing}");
    }

    #[test]
    fn a_tool_schema_leaves_out_the_caller_branch_and_at() {
        let acquire = find("lock_acquire").expect("catalogued");
        let schema = acquire.tool_schema();
        let properties = schema["properties"].as_object().expect("properties");
        assert!(properties.contains_key("resource"));
        assert!(properties.contains_key("ttl_ms"));
        assert!(!properties.contains_key("owner"));
        let required: Vec<&str> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(required.contains(&"resource") && required.contains(&"ttl_ms"));
        assert!(!required.contains(&"owner"));
        let get = find("state_get").expect("catalogued").tool_schema();
        assert!(get["properties"].get("branch").is_none());
        assert!(get["properties"].get("at").is_none());
    }
}
