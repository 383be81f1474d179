//! The OpenAPI document of `GET /v1/openapi.json`, derived from the command catalog: one
//! operation per catalog entry, with its path and query parameters, its request body's
//! JSON Schema generated from the same types the handlers parse, and the schema of its
//! answer (`answers.rs`). A few operational routes
//! that are not operations on the state (health, metrics, this document, the guide) are
//! listed here.

use serde_json::{json, Map, Value};

use crate::answers;
use crate::catalog::{self, Method, Operation};
use crate::extract::ID_QUERY_PARAMETERS;
use crate::limits::IDEMPOTENCY_KEY_BYTES_MAX;

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
    // A write that creates something answers 201 with the same body.
    if operation.method.writes() {
        responses["201"] = json!({"description": "created", "content": content});
    }
    if operation.name == "task_claim" {
        responses["204"] = json!({"description": "no claimable task (after wait_ms)"});
    }
    responses
}

fn parameters(operation: &Operation) -> Vec<Value> {
    let mut parameters: Vec<Value> = operation
        .path_parameters()
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": id_schema()}))
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
            let mut property = property.clone();
            // Documented exactly where the server checks it (`extract::check_query_ids`, called by `auth::authenticate`).
            constrain_ids(ID_QUERY_PARAMETERS, name, &mut property);
            parameters.push(json!({"name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": property}));
        }
    }
    let has_branch = parameters
        .iter()
        .any(|parameter| parameter["name"] == "branch");
    if !has_branch {
        let mut branch = id_schema();
        branch["default"] = json!("main");
        parameters
            .push(json!({"name": "branch", "in": "query", "required": false, "schema": branch}));
    }
    if operation.name == "append_events" {
        // RFC 7240: a server ignores the preferences it does not know, so any value goes.
        let prefer = json!({"type": "string", "examples": ["return=minimal"],
            "description": "return=minimal (RFC 7240): answer {seq, count} without echoing the events; other preferences are ignored"});
        parameters
            .push(json!({"name": "Prefer", "in": "header", "required": false, "schema": prefer}));
    }
    if !operation.writes.is_empty() {
        let key = json!({
            "type": "string",
            "minLength": 1,
            "maxLength": IDEMPOTENCY_KEY_BYTES_MAX,
            "pattern": "^[\\x21-\\x7e]+$",
            "description": "1 to 256 bytes of visible ASCII",
        });
        parameters.push(
            json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": key}),
        );
    }
    parameters
}

/// The request body of a write: its own schema plus the fields every write may carry. A
/// request that writes no event (a heartbeat, a snapshot) takes no fields at all.
fn request_body(operation: &Operation) -> Value {
    if operation.writes.is_empty() && operation.input.is_none() {
        let nothing = json!({"type": "object", "additionalProperties": false, "maxProperties": 0});
        return json!({"required": false, "content": {"application/json": {"schema": nothing}}});
    }
    let mut schema = operation.input_schema();
    // A body with no fields of its own (schemars writes no `properties` for it) still
    // takes the fields every write carries.
    let properties = schema
        .as_object_mut()
        .map(|object| object.entry("properties").or_insert_with(|| json!({})));
    if let Some(properties) = properties.and_then(Value::as_object_mut) {
        // `null` reads as absent.
        let mut nullable_id = id_schema();
        nullable_id["type"] = json!(["string", "null"]);
        properties.insert("session".into(), nullable_id.clone());
        properties.insert("correlation".into(), nullable_id);
        properties.insert("meta".into(), json!({"type": ["object", "null"]}));
        properties.insert("fence".into(), json!({
            "type": ["object", "null"],
            "required": ["resource", "token"],
            "additionalProperties": false,
            "properties": {"resource": id_schema(), "token": {"type": "integer", "minimum": 0, "maximum": u64::MAX}},
        }));
    }
    constrain_ids(ID_PROPERTIES, "", &mut schema);
    // A body whose every field is optional may be left out (the write adapter reads an
    // empty body as `{}`).
    let required = schema["required"]
        .as_array()
        .is_some_and(|required| !required.is_empty());
    json!({"required": required, "content": {"application/json": {"schema": schema}}})
}

/// The properties that name an id, key, stream or branch wherever they appear in a request:
/// each takes the one rule of `check_id` (SPEC §3).
const ID_PROPERTIES: &[&str] = &[
    "id",
    "agent",
    "owner",
    "from",
    "to",
    "resource",
    "key",
    "stream",
    "session",
    "correlation",
    "branch",
    "task",
    "voter",
    "type",
    "name",
];

/// An id, key, stream or branch name: 1 to 256 bytes of UTF-8 without control characters.
/// JSON Schema counts characters, not bytes, so `maxLength` is the most a string may have
/// whatever its characters; the server also refuses one of more than 256 bytes.
fn id_schema() -> Value {
    let most = swarmlog_projections::limits::current().id_bytes_max;
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": most,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
        "description": format!("1 to {most} bytes of UTF-8 without control characters"),
    })
}

/// Gives every string property named in `ids` (at any depth) the id rule.
fn constrain_ids(ids: &[&str], name: &str, schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let is_string = match object.get("type") {
        Some(Value::String(kind)) => kind == "string",
        Some(Value::Array(kinds)) => kinds.iter().any(|kind| kind == "string"),
        _ => false,
    };
    if is_string && ids.contains(&name) && !object.contains_key("enum") {
        for (key, value) in id_schema().as_object().into_iter().flatten() {
            if key != "type" && key != "description" {
                object.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            constrain_ids(ids, name, property);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(variants)) = object.get_mut(key) {
            for variant in variants {
                constrain_ids(ids, name, variant);
            }
        }
    }
    if let Some(items) = object.get_mut("items") {
        constrain_ids(ids, "", items);
    }
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
