//! The JSON Schemas of what the operations answer, by name, for the OpenAPI document's
//! `components.schemas`. The answers are views the projections build as JSON, so their
//! schemas are written here once; `tests/it/openapi.rs` checks real answers against them.
//! Each schema requires the fields every answer of its kind has and allows more, so that
//! a field added later breaks no client.

use serde_json::{json, Map, Value};

/// An object schema with these required fields and property schemas.
fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn list_of(key: &str, item: &str) -> Value {
    object(
        &[key],
        json!({key: {"type": "array", "items": reference(item)}}),
    )
}

/// A `$ref` to a component schema.
pub fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn integer() -> Value {
    json!({"type": "integer"})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

/// Every answer schema, by name.
pub fn components() -> Map<String, Value> {
    let mut all = Map::new();
    let mut add = |name: &str, schema: Value| {
        all.insert(name.to_owned(), schema);
    };
    add(
        "Envelope",
        object(
            &[
                "seq", "ts", "branch", "type", "stream", "actor", "data", "hash",
            ],
            json!({"seq": integer(), "ts": string(), "branch": string(), "type": string(),
               "stream": string(), "actor": string(), "session": string(),
               "correlation": string(), "meta": {"type": "object"}, "data": {}, "hash": string()}),
        ),
    );
    add(
        "Appended",
        object(
            &["seq"],
            json!({"seq": integer(), "events": {"type": "array", "items": reference("Envelope")},
               "count": {"type": "integer", "minimum": 1,
                         "description": "with Prefer: return=minimal, how many events were appended (instead of events)"}}),
        ),
    );
    add(
        "Stream",
        object(
            &["stream", "version", "events"],
            json!({"stream": string(), "version": integer(), "events": {"type": "array", "items": reference("Envelope")},
               "next": {"type": ["integer", "null"], "description": "the from of the next page; null on the last"}}),
        ),
    );
    add(
        "AuditHead",
        object(
            &["seq", "hash"],
            json!({"seq": integer(), "hash": string()}),
        ),
    );
    add(
        "Snapshot",
        object(
            &["head", "path", "bytes"],
            json!({"head": integer(), "path": string(), "bytes": integer()}),
        ),
    );
    add(
        "Cell",
        object(
            &["key", "value", "version"],
            json!({"key": string(), "value": {}, "version": integer()}),
        ),
    );
    add(
        "KvEntry",
        object(&["key", "value"], json!({"key": string(), "value": {}})),
    );
    add("KvEntries", list_of("entries", "KvEntry"));
    add(
        "KvDeleted",
        object(
            &["key", "deleted"],
            json!({"key": string(), "deleted": {"type": "boolean"}}),
        ),
    );
    coordination(&mut add);
    work(&mut add);
    all
}

fn coordination(add: &mut impl FnMut(&str, Value)) {
    let mode = json!({"enum": ["exclusive", "shared"]});
    add(
        "LockGrant",
        object(
            &["resource", "owner", "mode", "token", "expires_at"],
            json!({"resource": string(), "owner": string(), "mode": mode, "token": integer(), "expires_at": string()}),
        ),
    );
    add(
        "LockGrants",
        object(
            &["owner", "locks"],
            json!({"owner": string(), "locks": {"type": "array", "items": reference("LockGrant")}}),
        ),
    );
    add(
        "LockReleased",
        object(
            &["resource", "owner", "released"],
            json!({"resource": string(), "owner": string(), "released": {"type": "boolean"}}),
        ),
    );
    add(
        "Lock",
        object(
            &["resource", "holders", "waiters"],
            json!({"resource": string(), "mode": mode, "expires_at": string(),
               "holders": {"type": "array", "items": object(&["owner", "token", "expires_at"], json!({"owner": string(), "token": integer(), "expires_at": string()}))},
               "waiters": {"type": "array", "items": object(&["owner", "mode"], json!({"owner": string(), "mode": mode}))}}),
        ),
    );
    add("Locks", list_of("locks", "Lock"));
    add(
        "Agent",
        object(
            &["id", "type", "capabilities", "status"],
            json!({"id": string(), "type": string(), "capabilities": strings(),
               "status": {"enum": ["active", "expired", "killed", "deregistered"]},
               "registered_at": string(), "ttl_ms": integer(), "lease_expires_at": string(), "meta": {"type": "object"}}),
        ),
    );
    add("Agents", list_of("agents", "Agent"));
    add(
        "Heartbeat",
        object(
            &["id"],
            json!({"id": string(), "lease_expires_at": {"type": ["string", "null"]}}),
        ),
    );
    add(
        "Branch",
        object(
            &["name"],
            json!({"name": string(), "from": string(), "at": integer(), "created_seq": integer()}),
        ),
    );
    add("Branches", list_of("branches", "Branch"));
}

fn work(add: &mut impl FnMut(&str, Value)) {
    add(
        "Task",
        object(
            &[
                "id",
                "type",
                "status",
                "priority",
                "depends_on",
                "capabilities",
                "attempt",
                "max_attempts",
            ],
            json!({"id": string(), "type": string(),
               "status": {"enum": ["blocked", "awaiting_approval", "pending", "claimed", "completed", "failed", "cancelled"]},
               "priority": integer(), "depends_on": strings(), "capabilities": strings(), "attempt": integer(),
               "max_attempts": integer(), "timeout_ms": integer(), "agent": string(), "lease_expires_at": string(),
               "session": string(), "result": {}, "history": {"type": "array"}}),
        ),
    );
    add("Tasks", list_of("tasks", "Task"));
    add(
        "TaskCreated",
        json!({"oneOf": [reference("Task"), reference("Tasks")]}),
    );
    add(
        "Finding",
        object(
            &["id", "agent", "category", "content", "evidence", "tags"],
            json!({"id": string(), "agent": string(), "session": string(),
               "category": {"enum": ["observation", "hypothesis", "conclusion"]}, "content": {},
               "confidence": {"type": "number"}, "evidence": {"type": "array"}, "tags": strings()}),
        ),
    );
    add("Findings", list_of("findings", "Finding"));
    add(
        "Hypothesis",
        object(
            &["id", "description", "confidence", "status", "evidence"],
            json!({"id": string(), "description": string(), "confidence": {"type": "number"}, "prior": {"type": "number"},
               "status": string(), "evidence": {"type": "array"}}),
        ),
    );
    add("Hypotheses", list_of("hypotheses", "Hypothesis"));
    add(
        "Proposal",
        object(
            &[
                "id",
                "action",
                "quorum",
                "voters",
                "status",
                "votes_for",
                "votes_against",
                "abstentions",
                "votes",
            ],
            json!({"id": string(), "action": {}, "quorum": string(), "voters": strings(), "deadline_at": string(),
               "status": {"enum": ["open", "decided"]}, "decision": {"enum": ["approved", "rejected", "expired"]},
               "votes_for": integer(), "votes_against": integer(), "abstentions": integer(), "votes": {"type": "array"}}),
        ),
    );
    add("Proposals", list_of("proposals", "Proposal"));
    add(
        "Message",
        object(
            &["id", "from", "to", "type", "payload"],
            json!({"id": string(), "from": string(), "to": string(), "type": string(), "payload": {},
               "requires_ack": {"type": "boolean"}, "recipients": strings(), "acked_by": strings()}),
        ),
    );
    add("Messages", list_of("messages", "Message"));
    add(
        "Inbox",
        object(
            &["agent", "messages"],
            json!({"agent": string(), "messages": {"type": "array", "items": reference("Message")}}),
        ),
    );
    add(
        "Session",
        object(
            &["id", "status", "agents", "progress_percent"],
            json!({"id": string(), "operation": {}, "status": string(), "agents": strings(),
               "total_tasks": integer(), "completed_tasks": integer(), "progress_percent": {"type": "number"}}),
        ),
    );
    add("Sessions", list_of("sessions", "Session"));
    add(
        "Report",
        object(
            &["by_agent", "by_task", "summary"],
            json!({"by_agent": {"type": "object"}, "by_task": {"type": "object"},
            "summary": object(
                &["total_tasks", "completed_tasks", "failed_tasks", "success_rate", "avg_task_ms", "agents_used"],
                json!({"total_tasks": integer(), "completed_tasks": integer(), "failed_tasks": integer(),
                       "success_rate": {"type": "number"}, "avg_task_ms": {"type": "number"}, "agents_used": integer()}),
            )}),
        ),
    );
}
