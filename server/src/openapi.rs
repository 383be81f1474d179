//! The OpenAPI document of `GET /v1/openapi.json`, built from one table of routes that a
//! test checks against the router.

use serde_json::{json, Map, Value};

/// One documented route.
pub struct RouteDoc {
    /// HTTP method, lowercase.
    pub method: &'static str,
    /// Path template as OpenAPI writes it (`{stream}`).
    pub path: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
}

/// Every route the router serves.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "get",
        path: "/healthz",
        summary: "200 once the log is recovered",
    },
    RouteDoc {
        method: "get",
        path: "/metrics",
        summary: "Prometheus text exposition",
    },
    RouteDoc {
        method: "get",
        path: "/v1/openapi.json",
        summary: "This document",
    },
    RouteDoc {
        method: "get",
        path: "/v1/audit/head",
        summary: "The head of the hash chain: {seq, hash}",
    },
    RouteDoc {
        method: "post",
        path: "/v1/snapshots",
        summary: "Write a projection snapshot now (admin); 201 {head, path, bytes}",
    },
    RouteDoc {
        method: "post",
        path: "/v1/events",
        summary: "Append one custom event or an atomic batch; 201 {seq, events}",
    },
    RouteDoc {
        method: "get",
        path: "/v1/events",
        summary: "SSE (Accept: text/event-stream) or NDJSON replay of committed events",
    },
    RouteDoc {
        method: "get",
        path: "/v1/streams/{stream}",
        summary: "A stream's events and version",
    },
    RouteDoc {
        method: "get",
        path: "/v1/state/{key}",
        summary: "A state cell: {key, value, version}; ?at=SEQ reads the past",
    },
    RouteDoc {
        method: "put",
        path: "/v1/state/{key}",
        summary: "Set a state cell unconditionally",
    },
    RouteDoc {
        method: "post",
        path: "/v1/state/{key}/init",
        summary: "Create a state cell if absent (201); 200 unchanged if present",
    },
    RouteDoc {
        method: "post",
        path: "/v1/state/{key}/cas",
        summary: "Compare-and-swap on expected_version (null: must not exist); 409 version_conflict",
    },
    RouteDoc {
        method: "get",
        path: "/v1/kv",
        summary: "Key-value entries by ?prefix=",
    },
    RouteDoc {
        method: "get",
        path: "/v1/kv/{key}",
        summary: "A key's value",
    },
    RouteDoc {
        method: "put",
        path: "/v1/kv/{key}",
        summary: "Set a key (last writer wins)",
    },
    RouteDoc {
        method: "delete",
        path: "/v1/kv/{key}",
        summary: "Delete a key",
    },
    RouteDoc {
        method: "get",
        path: "/v1/locks",
        summary: "Held locks with holders, waiters and expiry",
    },
    RouteDoc {
        method: "post",
        path: "/v1/locks/acquire",
        summary: "Acquire several resources, all or none",
    },
    RouteDoc {
        method: "get",
        path: "/v1/locks/{resource}",
        summary: "A lock's holders, waiters and expiry",
    },
    RouteDoc {
        method: "post",
        path: "/v1/locks/{resource}/acquire",
        summary: "Acquire a lock: fencing token; wait_ms waits FIFO; 409 lock_held or deadlock",
    },
    RouteDoc {
        method: "post",
        path: "/v1/locks/{resource}/renew",
        summary: "Renew a held lock; 409 lock_lost",
    },
    RouteDoc {
        method: "post",
        path: "/v1/locks/{resource}/release",
        summary: "Release a held lock; 409 not_owner",
    },
    RouteDoc {
        method: "post",
        path: "/v1/agents",
        summary: "Register an agent with type, capabilities and lease",
    },
    RouteDoc {
        method: "get",
        path: "/v1/agents",
        summary: "Agents by ?type= and ?status=",
    },
    RouteDoc {
        method: "get",
        path: "/v1/agents/{id}",
        summary: "One agent",
    },
    RouteDoc {
        method: "delete",
        path: "/v1/agents/{id}",
        summary: "Deregister an agent",
    },
    RouteDoc {
        method: "post",
        path: "/v1/agents/{id}/heartbeat",
        summary: "Extend an agent's lease (not logged)",
    },
    RouteDoc {
        method: "post",
        path: "/v1/agents/{id}/kill",
        summary: "Kill switch (admin): release its locks, requeue its tasks, refuse its writes",
    },
    RouteDoc {
        method: "post",
        path: "/v1/branches",
        summary: "Fork a branch from a parent at a seq",
    },
    RouteDoc {
        method: "get",
        path: "/v1/branches",
        summary: "Every branch",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks",
        summary: "Create a task or an atomic batch {\"tasks\": [...]}; 201, or 200 unchanged",
    },
    RouteDoc {
        method: "get",
        path: "/v1/tasks",
        summary: "List tasks (?status=&session=&agent=&type=), oldest first, without history",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks/claim",
        summary: "Claim the most urgent, then oldest, pending task the agent can do; 200 the task or 204 (after wait_ms)",
    },
    RouteDoc {
        method: "get",
        path: "/v1/tasks/{id}",
        summary: "A task with its history",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks/{id}/assign",
        summary: "Assign a pending task to an agent or by strategy (round_robin, least_loaded, capability)",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks/{id}/approve",
        summary: "Open a task's approval gate (admin)",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks/{id}/progress",
        summary: "Report progress and renew the claim lease (claimant only)",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks/{id}/complete",
        summary: "Complete a claimed task with its result (claimant only)",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks/{id}/fail",
        summary: "Fail the current attempt, optionally retrying (claimant only)",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks/{id}/release",
        summary: "Give a claimed task back to pending (claimant only)",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks/{id}/cancel",
        summary: "Cancel a task and its dependents",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks/{id}/auction",
        summary: "Open an auction on a pending task until deadline_ms",
    },
    RouteDoc {
        method: "post",
        path: "/v1/tasks/{id}/bids",
        summary: "Bid in a task's open auction",
    },
    RouteDoc {
        method: "post",
        path: "/v1/findings",
        summary: "Report a finding to the blackboard; 201",
    },
    RouteDoc {
        method: "get",
        path: "/v1/findings",
        summary: "List findings (?session=&agent=&category=&tag=)",
    },
    RouteDoc {
        method: "get",
        path: "/v1/findings/{id}",
        summary: "A finding",
    },
    RouteDoc {
        method: "post",
        path: "/v1/hypotheses",
        summary: "Propose a hypothesis with a prior confidence; 201",
    },
    RouteDoc {
        method: "get",
        path: "/v1/hypotheses",
        summary: "List hypotheses (?session=), most confident first",
    },
    RouteDoc {
        method: "get",
        path: "/v1/hypotheses/{id}",
        summary: "A hypothesis with its evidence",
    },
    RouteDoc {
        method: "post",
        path: "/v1/hypotheses/{id}/evidence",
        summary: "Attach a finding as supporting or refuting evidence",
    },
    RouteDoc {
        method: "post",
        path: "/v1/hypotheses/{id}/validate",
        summary: "Confirm or refute a hypothesis",
    },
    RouteDoc {
        method: "post",
        path: "/v1/proposals",
        summary: "Open a proposal (majority, unanimous or threshold quorum); 201",
    },
    RouteDoc {
        method: "get",
        path: "/v1/proposals",
        summary: "List proposals (?status=open|decided)",
    },
    RouteDoc {
        method: "get",
        path: "/v1/proposals/{id}",
        summary: "A proposal with its votes and decision",
    },
    RouteDoc {
        method: "post",
        path: "/v1/proposals/{id}/votes",
        summary: "Cast one vote (yes, no, abstain) as an eligible agent",
    },
    RouteDoc {
        method: "post",
        path: "/v1/messages",
        summary: "Send a direct message or a broadcast (to \"*\"); 201",
    },
    RouteDoc {
        method: "get",
        path: "/v1/messages/{id}",
        summary: "A message with its recipients and acks",
    },
    RouteDoc {
        method: "post",
        path: "/v1/messages/{id}/ack",
        summary: "Acknowledge a message as one of its recipients",
    },
    RouteDoc {
        method: "get",
        path: "/v1/agents/{id}/inbox",
        summary: "An agent's inbox (?unacked=true); SSE of its messages with Accept: text/event-stream",
    },
    RouteDoc {
        method: "post",
        path: "/v1/sessions",
        summary: "Start a session; 201",
    },
    RouteDoc {
        method: "get",
        path: "/v1/sessions",
        summary: "List sessions with their progress",
    },
    RouteDoc {
        method: "get",
        path: "/v1/sessions/{id}",
        summary: "A session: status, agents, progress percent",
    },
    RouteDoc {
        method: "post",
        path: "/v1/sessions/{id}/complete",
        summary: "Complete a session with an outcome",
    },
    RouteDoc {
        method: "get",
        path: "/v1/sessions/{id}/report",
        summary: "A session's report: by_agent, by_task, summary",
    },
    RouteDoc {
        method: "get",
        path: "/v1/sessions/{id}/events",
        summary: "NDJSON export of every event of the session",
    },
];

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths.entry(route.path).or_insert_with(|| json!({}));
        let mut parameters = Vec::new();
        for name in route
            .path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split('}').next())
        {
            parameters.push(
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}),
            );
        }
        if route.path.starts_with("/v1/") {
            parameters.push(json!({"name": "branch", "in": "query", "required": false, "schema": {"type": "string", "default": "main"}}));
        }
        entry[route.method] = json!({
            "summary": route.summary,
            "parameters": parameters,
            "responses": {"default": {"description": "JSON; errors are {\"error\": {\"code\", \"message\"}}"}},
        });
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "swarmlog", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
    })
}
