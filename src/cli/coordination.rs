//! `swarmlog state|kv|lock|agent|branch ...`: the coordination primitives from a shell.
//!
//! `--raw` prints one bare value per line: for a read its value (a state cell's or a key's
//! value, a lock's holders, an agent's status), for a write the value a script needs next
//! (a state cell's new version, a lock's fencing token, a kv write's seq, an agent's id or
//! status), and for a list one key, resource, agent id or branch name per line.

use axum::http::Method;
use serde_json::{json, Value};

use super::args::{AgentCommand, BranchCommand, KvCommand, LockCommand, ReadArgs, StateCommand};
use super::client::{encode_segment, Client};
use super::{
    at_param, parse_value, print_raw_lines, print_value, write, CliError, Config, OutputMode,
};

/// A path with the `?branch=` of the configuration and any extra query parameters.
fn path(config: &Config, base: &str, extra: &[(&str, Option<String>)]) -> String {
    let mut query: Vec<String> = config.branch_param().into_iter().collect();
    for (name, value) in extra {
        if let Some(value) = value {
            query.push(format!("{name}={}", encode_segment(value)));
        }
    }
    if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", query.join("&"))
    }
}

/// A read at `--at`.
async fn read(
    client: &Client,
    config: &Config,
    base: &str,
    read: &ReadArgs,
    extra: &[(&str, Option<String>)],
) -> Result<Value, CliError> {
    let mut query = extra.to_vec();
    query.push(("at", at_param(read)));
    client
        .call(Method::GET, &path(config, base, &query), None)
        .await
}

/// Prints a list answer: `--json` the whole object, `--raw` the `raw_field` of each item
/// of `key` one per line, default one `human` line per item.
fn print_list(
    config: &Config,
    value: &Value,
    key: &str,
    raw_field: &str,
    human: impl Fn(&Value) -> String,
) {
    let items = value[key].as_array().cloned().unwrap_or_default();
    match config.output {
        OutputMode::Json => println!("{value}"),
        OutputMode::Raw => print_raw_lines(&items, raw_field),
        OutputMode::Human => {
            for item in &items {
                println!("{}", human(item));
            }
        }
    }
}

/// `state ...`.
pub async fn state(
    client: &Client,
    config: &Config,
    command: StateCommand,
) -> Result<(), CliError> {
    let cell = |key: &str| format!("/v1/state/{}", encode_segment(key));
    let (value, human_prefix, raw_field) = match command {
        StateCommand::Get { key, read: at } => (
            read(client, config, &cell(&key), &at, &[]).await?,
            "",
            "value",
        ),
        StateCommand::Set {
            key,
            value,
            write: fields,
        } => {
            let body = json!({"value": parse_value(&value)});
            let target = path(config, &cell(&key), &[]);
            (
                write(client, Method::PUT, &target, body, &fields, None).await?,
                "set ",
                "version",
            )
        }
        StateCommand::Init {
            key,
            value,
            write: fields,
        } => {
            let body = json!({"value": parse_value(&value)});
            let target = path(config, &format!("{}/init", cell(&key)), &[]);
            (
                write(client, Method::POST, &target, body, &fields, None).await?,
                "",
                "version",
            )
        }
        StateCommand::Cas {
            key,
            expected,
            value,
            write: fields,
        } => {
            let expected_version = expected_version(&expected)?;
            let body = json!({"expected_version": expected_version, "value": parse_value(&value)});
            let target = path(config, &format!("{}/cas", cell(&key)), &[]);
            (
                write(client, Method::POST, &target, body, &fields, None).await?,
                "set ",
                "version",
            )
        }
    };
    print_value(config, &value, Some(raw_field), |value| {
        format!(
            "{human_prefix}{} = {} (version {})",
            value["key"].as_str().unwrap_or(""),
            value["value"],
            value["version"]
        )
    });
    Ok(())
}

/// `EXPECTED` of `state cas`: a version, or `none`/`null`/0 for "must not exist".
fn expected_version(expected: &str) -> Result<Value, CliError> {
    match expected {
        "none" | "null" | "0" => Ok(Value::Null),
        text => text.parse::<u64>().map(Value::from).map_err(|_| {
            CliError::usage(format!(
                "EXPECTED must be a version number or none, not '{text}'"
            ))
        }),
    }
}

/// `kv ...`.
pub async fn kv(client: &Client, config: &Config, command: KvCommand) -> Result<(), CliError> {
    let entry = |key: &str| format!("/v1/kv/{}", encode_segment(key));
    match command {
        KvCommand::Get { key, read: at } => {
            let value = read(client, config, &entry(&key), &at, &[]).await?;
            print_value(config, &value, Some("value"), |value| {
                value["value"].to_string()
            });
        }
        KvCommand::Put {
            key,
            value,
            write: fields,
        } => {
            let body = json!({"value": parse_value(&value)});
            let target = path(config, &entry(&key), &[]);
            let value = write(client, Method::PUT, &target, body, &fields, None).await?;
            print_value(config, &value, Some("seq"), |value| {
                format!(
                    "put {} at seq {}",
                    value["key"].as_str().unwrap_or(""),
                    value["seq"]
                )
            });
        }
        KvCommand::Delete { key, write: fields } => {
            let target = path(config, &entry(&key), &[]);
            let value = write(client, Method::DELETE, &target, json!({}), &fields, None).await?;
            print_value(config, &value, Some("seq"), |value| {
                format!(
                    "deleted {} at seq {}",
                    value["key"].as_str().unwrap_or(""),
                    value["seq"]
                )
            });
        }
        KvCommand::List { prefix, read: at } => {
            let value = read(client, config, "/v1/kv", &at, &[("prefix", Some(prefix))]).await?;
            print_list(config, &value, "entries", "key", |entry| {
                format!(
                    "{} = {}",
                    entry["key"].as_str().unwrap_or(""),
                    entry["value"]
                )
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
            write: fields,
        } => {
            let mode = if shared { "shared" } else { "exclusive" };
            let mut body =
                json!({"owner": owner, "ttl_ms": ttl_ms, "wait_ms": wait_ms, "mode": mode});
            let target = if let [resource] = resources.as_slice() {
                path(config, &lock(resource, "acquire"), &[])
            } else {
                body["resources"] = json!(resources);
                path(config, "/v1/locks/acquire", &[])
            };
            let value = write(client, Method::POST, &target, body, &fields, None).await?;
            print_acquired(config, &value);
        }
        LockCommand::Renew {
            resource,
            owner,
            fencing_token,
            ttl_ms,
            write: fields,
        } => {
            let body = json!({"owner": owner, "token": fencing_token, "ttl_ms": ttl_ms});
            let target = path(config, &lock(&resource, "renew"), &[]);
            let value = write(client, Method::POST, &target, body, &fields, None).await?;
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
            write: fields,
        } => {
            let body = json!({"owner": owner, "token": fencing_token});
            let target = path(config, &lock(&resource, "release"), &[]);
            let value = write(client, Method::POST, &target, body, &fields, None).await?;
            print_value(config, &value, Some("seq"), |_| {
                format!("released {resource}")
            });
        }
        LockCommand::Show { resource, read: at } => {
            let target = format!("/v1/locks/{}", encode_segment(&resource));
            let value = read(client, config, &target, &at, &[]).await?;
            print_list(config, &value, "holders", "owner", |holder| {
                format!(
                    "{} holds {} ({}) token {} until {}",
                    holder["owner"].as_str().unwrap_or(""),
                    resource,
                    holder["mode"].as_str().unwrap_or(""),
                    holder["token"],
                    holder["expires_at"].as_str().unwrap_or("")
                )
            });
            if config.output == OutputMode::Human {
                if let Some(waiters) = value["waiters"].as_array().filter(|w| !w.is_empty()) {
                    println!("waiting: {}", pretty(&Value::from(waiters.clone())));
                }
            }
        }
        LockCommand::List { read: at } => {
            let value = read(client, config, "/v1/locks", &at, &[]).await?;
            print_list(config, &value, "locks", "resource", pretty);
        }
    }
    Ok(())
}

/// The answer of `lock acquire`: `--raw` prints the fencing token (one per resource, in
/// order, for a multi-resource acquire).
fn print_acquired(config: &Config, value: &Value) {
    match (config.output, value.get("locks")) {
        (OutputMode::Raw, Some(locks)) => {
            print_raw_lines(locks.as_array().map_or(&[], Vec::as_slice), "token");
        }
        (_, Some(locks)) => print_value(config, value, None, |_| format!("acquired {locks}")),
        (_, None) => print_value(config, value, Some("token"), |value| {
            format!(
                "acquired {} token {} until {}",
                value["resource"].as_str().unwrap_or(""),
                value["token"],
                value["expires_at"].as_str().unwrap_or("")
            )
        }),
    }
}

/// `agent ...`.
pub async fn agent(
    client: &Client,
    config: &Config,
    command: AgentCommand,
) -> Result<(), CliError> {
    let agent = |id: &str| format!("/v1/agents/{}", encode_segment(id));
    let (value, raw_field) = match command {
        AgentCommand::Register {
            id,
            agent_type,
            capabilities,
            ttl_ms,
            write: fields,
        } => {
            let mut body = json!({"id": id, "type": agent_type, "capabilities": capabilities});
            if let Some(ttl_ms) = ttl_ms {
                body["ttl_ms"] = json!(ttl_ms);
            }
            let target = path(config, "/v1/agents", &[]);
            (
                write(client, Method::POST, &target, body, &fields, None).await?,
                "id",
            )
        }
        AgentCommand::Heartbeat { id } => {
            let target = path(config, &format!("{}/heartbeat", agent(&id)), &[]);
            (
                client.call(Method::POST, &target, None).await?,
                "lease_expires_at",
            )
        }
        AgentCommand::Kill { id, write: fields } => {
            let target = path(config, &format!("{}/kill", agent(&id)), &[]);
            (
                write(client, Method::POST, &target, json!({}), &fields, None).await?,
                "status",
            )
        }
        AgentCommand::Deregister { id, write: fields } => {
            let target = path(config, &agent(&id), &[]);
            (
                write(client, Method::DELETE, &target, json!({}), &fields, None).await?,
                "status",
            )
        }
        AgentCommand::Show { id, read: at } => {
            (read(client, config, &agent(&id), &at, &[]).await?, "status")
        }
        AgentCommand::List {
            agent_type,
            status,
            read: at,
        } => {
            let extra = [("type", agent_type), ("status", status)];
            let value = read(client, config, "/v1/agents", &at, &extra).await?;
            print_list(config, &value, "agents", "id", |agent| {
                format!(
                    "{} [{}] {}",
                    agent["id"].as_str().unwrap_or(""),
                    agent["status"].as_str().unwrap_or(""),
                    agent["type"].as_str().unwrap_or("")
                )
            });
            return Ok(());
        }
    };
    print_value(config, &value, Some(raw_field), pretty);
    Ok(())
}

/// `branch ...`.
pub async fn branch(
    client: &Client,
    config: &Config,
    command: BranchCommand,
) -> Result<(), CliError> {
    match command {
        BranchCommand::Create {
            name,
            from,
            at,
            write: fields,
        } => {
            let mut body = json!({"name": name});
            if let Some(from) = from {
                body["from"] = json!(from);
            }
            if let Some(at) = at {
                body["at"] = json!(at);
            }
            // A branch is created on main's log; --branch names where the command runs.
            let value = write(client, Method::POST, "/v1/branches", body, &fields, None).await?;
            print_value(config, &value, Some("name"), |value| {
                format!("created branch {}", value["name"].as_str().unwrap_or(""))
            });
        }
        BranchCommand::List => {
            let value = client.call(Method::GET, "/v1/branches", None).await?;
            print_list(config, &value, "branches", "name", |branch| {
                branch["name"].as_str().unwrap_or("").to_owned()
            });
        }
    }
    Ok(())
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
