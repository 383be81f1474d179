//! The OpenAPI document of `GET /v1/openapi.json`, derived from the command catalog: one
//! operation per catalog entry, with its path and query parameters, its request body's
//! JSON Schema generated from the same types the handlers parse, and the schema of its
//! answer (`answers.rs`). A few operational routes
//! that are not operations on the state (health, metrics, this document, the guide) are
//! listed here.

use serde_json::{json, Map, Value};

use crate::answers;
use crate::catalog::{self, Method, Operation};

/// A route outside the catalog.
struct OperationalRoute {
    path: &'static str,
    summary: &'static str,
    content_type: &'static str,
}

/// The routes that are not catalog operations.
const OPERATIONAL: &[OperationalRoute] = &[
    OperationalRoute {
        path: "/healthz",
        summary: "200 once the log is recovered",
        content_type: "application/json",
    },
    OperationalRoute {
        path: "/metrics",
        summary: "Prometheus text exposition",
        content_type: "application/openmetrics-text",
    },
    OperationalRoute {
        path: "/v1/openapi.json",
        summary: "This document",
        content_type: "application/json",
    },
    OperationalRoute {
        path: "/v1/whoami",
        summary: "Who the bearer token is: {agent, role}",
        content_type: "application/json",
    },
    OperationalRoute {
        path: "/v1/guide",
        summary: "The Markdown guide for agents (also `swarmlog guide` and the MCP resource swarmlog://guide)",
        content_type: "text/markdown",
    },
];

/// The error object every refusal answers.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "snake_case code, e.g. version_conflict"},
                "message": {"type": "string"}
            }
        }}
    })
}

/// The schema of an operation's answer: its component, plus for an operation that writes
/// events the `seq` of its last event.
fn answer_schema(operation: &Operation) -> Value {
    let answer = answers::reference(operation.answer);
    if operation.writes.is_empty() {
        return answer;
    }
    json!({"allOf": [answer, {
        "type": "object",
        "required": ["seq"],
        "properties": {"seq": {"type": "integer", "description": "the seq of the write's last event (the head for a no-op)"}}
    }]})
}

fn responses(operation: &Operation) -> Value {
    let error = json!({"description": "refused; nothing written", "content": {"application/json": {"schema": error_schema()}}});
    // The event reads answer NDJSON: one envelope per line.
    let content = if operation.answer == "Envelope" {
        json!({"application/x-ndjson": {"schema": answers::reference("Envelope")}})
    } else {
        json!({"application/json": {"schema": answer_schema(operation)}})
    };
    let mut responses = json!({
        "200": {"description": "done", "content": content},
        "4XX": error.clone(),
        "5XX": error,
    });
    if operation.name == "task_claim" {
        responses["204"] = json!({"description": "no claimable task (after wait_ms)"});
    }
    responses
}

fn parameters(operation: &Operation) -> Vec<Value> {
    let mut parameters: Vec<Value> = operation
        .path_parameters()
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if operation.method == Method::Get {
        let schema = operation.input_schema();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            parameters.push(json!({"name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": property}));
        }
    }
    let has_branch = parameters
        .iter()
        .any(|parameter| parameter["name"] == "branch");
    if !has_branch {
        parameters.push(json!({"name": "branch", "in": "query", "required": false, "schema": {"type": "string", "default": "main"}}));
    }
    if operation.method.writes() {
        parameters.push(json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string"}}));
    }
    parameters
}

/// The request body of a write: its own schema plus the fields every write may carry.
fn request_body(operation: &Operation) -> Value {
    let mut schema = operation.input_schema();
    // A body with no fields of its own (schemars writes no `properties` for it) still
    // takes the fields every write carries.
    let properties = schema
        .as_object_mut()
        .map(|object| object.entry("properties").or_insert_with(|| json!({})));
    if let Some(properties) = properties.and_then(Value::as_object_mut) {
        properties.insert("session".into(), json!({"type": "string"}));
        properties.insert("correlation".into(), json!({"type": "string"}));
        properties.insert("meta".into(), json!({"type": "object"}));
        properties.insert("fence".into(), json!({"type": "object", "required": ["resource", "token"], "properties": {"resource": {"type": "string"}, "token": {"type": "integer"}}}));
    }
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for operation in catalog::operations() {
        let entry = paths.entry(operation.path).or_insert_with(|| json!({}));
        let mut item = json!({
            "operationId": operation.name,
            "summary": operation.summary,
            "parameters": parameters(operation),
            "responses": responses(operation),
        });
        if let Some(description) = operation.tool {
            item["description"] = json!(description);
        }
        if operation.method.writes() {
            item["requestBody"] = request_body(operation);
        }
        entry[operation.method.as_str()] = item;
    }
    for route in OPERATIONAL {
        paths.insert(
            route.path.to_owned(),
            json!({"get": {
                "summary": route.summary,
                "responses": {"200": {"description": "ok", "content": {route.content_type: {}}}}
            }}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "swarmlog", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": answers::components()},
    })
}
