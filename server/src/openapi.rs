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
