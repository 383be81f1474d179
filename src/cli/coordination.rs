//! `swarmlog state|kv|lock|agent|branch ...`: the coordination primitives from a shell.

use axum::http::Method;
use serde_json::{json, Value};

use super::args::{AgentCommand, BranchCommand, KvCommand, LockCommand, StateCommand};
use super::client::{encode_segment, Client};
use super::{parse_value, print_value, CliError, Config};

/// A path with the `?branch=` of the configuration and any extra query parameters.
fn path(config: &Config, base: &str, extra: &[(&str, String)]) -> String {
    let mut query: Vec<String> = config.branch_param().into_iter().collect();
    query.extend(
        extra
            .iter()
            .map(|(name, value)| format!("{name}={}", encode_segment(value))),
    );
    if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", query.join("&"))
    }
}

/// `state ...`.
pub async fn state(
    client: &Client,
    config: &Config,
    command: StateCommand,
) -> Result<(), CliError> {
    let cell = |key: &str| format!("/v1/state/{}", encode_segment(key));
    let (value, human_prefix) = match command {
        StateCommand::Get { key, at } => {
            let extra: Vec<(&str, String)> =
                at.map(|at| ("at", at.to_string())).into_iter().collect();
            (
                client
                    .call(Method::GET, &path(config, &cell(&key), &extra), None)
                    .await?,
                "",
            )
        }
        StateCommand::Set { key, value } => {
            let body = json!({"value": parse_value(&value)});
            (
                client
                    .call(Method::PUT, &path(config, &cell(&key), &[]), Some(&body))
                    .await?,
                "set ",
            )
        }
        StateCommand::Init { key, value } => {
            let body = json!({"value": parse_value(&value)});
            (
                client
                    .call(
                        Method::POST,
                        &path(config, &format!("{}/init", cell(&key)), &[]),
                        Some(&body),
                    )
                    .await?,
                "",
            )
        }
        StateCommand::Cas {
            key,
            expected,
            value,
        } => {
            let expected_version = match expected.as_str() {
                "none" | "null" | "0" => Value::Null,
                text => Value::from(text.parse::<u64>().map_err(|_| {
                    CliError::usage(format!(
                        "EXPECTED must be a version number or none, not '{text}'"
                    ))
                })?),
            };
            let body = json!({"expected_version": expected_version, "value": parse_value(&value)});
            (
                client
                    .call(
                        Method::POST,
                        &path(config, &format!("{}/cas", cell(&key)), &[]),
                        Some(&body),
                    )
                    .await?,
                "set ",
            )
        }
    };
    print_value(config, &value, Some("value"), |value| {
        format!(
            "{human_prefix}{} = {} (version {})",
            value["key"].as_str().unwrap_or(""),
            value["value"],
            value["version"]
        )
    });
    Ok(())
}

/// `kv ...`.
pub async fn kv(client: &Client, config: &Config, command: KvCommand) -> Result<(), CliError> {
    let entry = |key: &str| format!("/v1/kv/{}", encode_segment(key));
    match command {
        KvCommand::Get { key } => {
            let value = client
                .call(Method::GET, &path(config, &entry(&key), &[]), None)
                .await?;
            print_value(config, &value, Some("value"), |value| {
                value["value"].to_string()
            });
        }
        KvCommand::Put { key, value } => {
            let body = json!({"value": parse_value(&value)});
            let value = client
                .call(Method::PUT, &path(config, &entry(&key), &[]), Some(&body))
                .await?;
            print_value(config, &value, Some("seq"), |value| {
                format!(
                    "put {} at seq {}",
                    value["key"].as_str().unwrap_or(""),
                    value["seq"]
                )
            });
        }
        KvCommand::Delete { key } => {
            let value = client
                .call(Method::DELETE, &path(config, &entry(&key), &[]), None)
                .await?;
            print_value(config, &value, Some("seq"), |value| {
                format!(
                    "deleted {} at seq {}",
                    value["key"].as_str().unwrap_or(""),
                    value["seq"]
                )
            });
        }
        KvCommand::List { prefix } => {
            let value = client
                .call(
                    Method::GET,
                    &path(config, "/v1/kv", &[("prefix", prefix)]),
                    None,
                )
                .await?;
            print_value(config, &value, Some("entries"), |value| {
                value["entries"]
                    .as_array()
                    .map(|entries| {
                        entries
                            .iter()
                            .map(|entry| {
                                format!(
                                    "{} = {}",
                                    entry["key"].as_str().unwrap_or(""),
                                    entry["value"]
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
    }
    Ok(())
}

/// `lock ...`.
pub async fn lock(client: &Client, config: &Config, command: LockCommand) -> Result<(), CliError> {
    let lock =
        |resource: &str, verb: &str| format!("/v1/locks/{}/{verb}", encode_segment(resource));
    match command {
        LockCommand::Acquire {
            resources,
            owner,
            ttl_ms,
            wait_ms,
            shared,
        } => {
            let mode = if shared { "shared" } else { "exclusive" };
            let value = if resources.len() == 1 {
                let body =
                    json!({"owner": owner, "ttl_ms": ttl_ms, "wait_ms": wait_ms, "mode": mode});
                client
                    .call(
                        Method::POST,
                        &path(config, &lock(&resources[0], "acquire"), &[]),
                        Some(&body),
                    )
                    .await?
            } else {
                let body = json!({"owner": owner, "resources": resources, "ttl_ms": ttl_ms, "wait_ms": wait_ms, "mode": mode});
                client
                    .call(
                        Method::POST,
                        &path(config, "/v1/locks/acquire", &[]),
                        Some(&body),
                    )
                    .await?
            };
            print_value(config, &value, Some("token"), |value| {
                match value.get("locks") {
                    Some(locks) => format!("acquired {locks}"),
                    None => format!(
                        "acquired {} token {} until {}",
                        value["resource"].as_str().unwrap_or(""),
                        value["token"],
                        value["expires_at"].as_str().unwrap_or("")
                    ),
                }
            });
        }
        LockCommand::Renew {
            resource,
            owner,
            fencing_token,
            ttl_ms,
        } => {
            let body = json!({"owner": owner, "token": fencing_token, "ttl_ms": ttl_ms});
            let value = client
                .call(
                    Method::POST,
                    &path(config, &lock(&resource, "renew"), &[]),
                    Some(&body),
                )
                .await?;
            print_value(config, &value, Some("expires_at"), |value| {
                format!(
                    "renewed until {}",
                    value["expires_at"].as_str().unwrap_or("")
                )
            });
        }
        LockCommand::Release {
            resource,
            owner,
            fencing_token,
        } => {
            let body = json!({"owner": owner, "token": fencing_token});
            let value = client
                .call(
                    Method::POST,
                    &path(config, &lock(&resource, "release"), &[]),
                    Some(&body),
                )
                .await?;
            print_value(config, &value, Some("seq"), |_| {
                format!("released {resource}")
            });
        }
        LockCommand::List => {
            let value = client
                .call(Method::GET, &path(config, "/v1/locks", &[]), None)
                .await?;
            print_value(config, &value, Some("locks"), |value| {
                pretty(&value["locks"])
            });
        }
    }
    Ok(())
}

/// `agent ...`.
pub async fn agent(
    client: &Client,
    config: &Config,
    command: AgentCommand,
) -> Result<(), CliError> {
    let agent = |id: &str| format!("/v1/agents/{}", encode_segment(id));
    let value = match command {
        AgentCommand::Register {
            id,
            agent_type,
            capabilities,
            ttl_ms,
        } => {
            let mut body = json!({"id": id, "type": agent_type, "capabilities": capabilities});
            if let Some(ttl_ms) = ttl_ms {
                body["ttl_ms"] = json!(ttl_ms);
            }
            client
                .call(Method::POST, &path(config, "/v1/agents", &[]), Some(&body))
                .await?
        }
        AgentCommand::Heartbeat { id } => {
            client
                .call(
                    Method::POST,
                    &path(config, &format!("{}/heartbeat", agent(&id)), &[]),
                    None,
                )
                .await?
        }
        AgentCommand::Kill { id } => {
            client
                .call(
                    Method::POST,
                    &path(config, &format!("{}/kill", agent(&id)), &[]),
                    None,
                )
                .await?
        }
        AgentCommand::Deregister { id } => {
            client
                .call(Method::DELETE, &path(config, &agent(&id), &[]), None)
                .await?
        }
        AgentCommand::Show { id } => {
            client
                .call(Method::GET, &path(config, &agent(&id), &[]), None)
                .await?
        }
        AgentCommand::List { agent_type, status } => {
            let mut extra = Vec::new();
            if let Some(agent_type) = agent_type {
                extra.push(("type", agent_type));
            }
            if let Some(status) = status {
                extra.push(("status", status));
            }
            client
                .call(Method::GET, &path(config, "/v1/agents", &extra), None)
                .await?
        }
    };
    print_value(config, &value, None, pretty);
    Ok(())
}

/// `branch ...`.
pub async fn branch(
    client: &Client,
    config: &Config,
    command: BranchCommand,
) -> Result<(), CliError> {
    match command {
        BranchCommand::Create { name, from, at } => {
            let mut body = json!({"name": name});
            if let Some(from) = from {
                body["from"] = json!(from);
            }
            if let Some(at) = at {
                body["at"] = json!(at);
            }
            // A branch is created on main's log; --branch names where the command runs.
            let value = client
                .call(Method::POST, "/v1/branches", Some(&body))
                .await?;
            print_value(config, &value, Some("name"), |value| {
                format!("created branch {}", value["name"].as_str().unwrap_or(""))
            });
        }
        BranchCommand::List => {
            let value = client.call(Method::GET, "/v1/branches", None).await?;
            print_value(config, &value, Some("branches"), |value| {
                value["branches"]
                    .as_array()
                    .map(|branches| {
                        branches
                            .iter()
                            .filter_map(|b| b["name"].as_str())
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
    }
    Ok(())
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
