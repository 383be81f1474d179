//! `swarmlog task|finding|hypothesis|proposal|message|session ...`: work and knowledge
//! from a shell (SPEC §5).
//!
//! Verbs that name an agent (`--agent`, `--from`) send it as the write's actor too, so
//! the log records who did what. `--raw` prints one bare value per line: the id of what
//! a write created, the status of what it changed, and for lists one item per line (its
//! id, or the field named by `--field`). `task claim` exits 4 ("not found") when there
//! is nothing to claim, so a worker loop can tell "no work" from success and from errors
//! (exit 1).

use axum::http::Method;
use serde_json::{json, Map, Value};

use super::args::{
    Command, FindingCommand, HypothesisCommand, MessageCommand, ProposalCommand, ReadArgs,
    SessionCommand, TaskCommand, WriteArgs,
};
use super::client::{encode_segment, Client};
use super::{parse_value, print_value, CliError, Config, Exit, OutputMode};

/// Runs one of this module's nouns.
pub async fn run(client: &Client, config: &Config, command: Command) -> Result<(), CliError> {
    match command {
        Command::Task(verb) => task(client, config, verb).await,
        Command::Finding(verb) => finding(client, config, verb).await,
        Command::Hypothesis(verb) => hypothesis(client, config, verb).await,
        Command::Proposal(verb) => proposal(client, config, verb).await,
        Command::Message(verb) => message(client, config, verb).await,
        Command::Session(verb) => session(client, config, verb).await,
        _ => Err(CliError::usage("not a work command")),
    }
}

/// A path with the `?branch=` of the configuration and the given query parameters.
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

/// A JSON body built from optional fields: absent ones are left out.
struct Body(Map<String, Value>);

impl Body {
    fn new() -> Self {
        Body(Map::new())
    }

    fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.insert(name.to_owned(), value.into());
        self
    }

    fn maybe(self, name: &str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(value) => self.set(name, value),
            None => self,
        }
    }

    fn parsed(self, name: &str, text: Option<&str>) -> Self {
        self.maybe(name, text.map(parse_value))
    }

    fn value(self) -> Value {
        Value::Object(self.0)
    }
}

/// A `POST` write with the shared write fields; `actor` becomes the `Swarmlog-Actor` header.
async fn write(
    client: &Client,
    path: &str,
    body: Value,
    fields: &WriteArgs,
    actor: Option<&str>,
) -> Result<Value, CliError> {
    super::write(client, Method::POST, path, body, fields, actor).await
}

/// A `GET` of `base` with the `query` filters and `--at`.
async fn read(
    client: &Client,
    config: &Config,
    base: &str,
    query: &[(&str, Option<String>)],
    at: &ReadArgs,
) -> Result<Value, CliError> {
    let mut query = query.to_vec();
    query.push(("at", super::at_param(at)));
    client
        .call(Method::GET, &path(config, base, &query), None)
        .await
}

fn segment(kind: &str, id: &str, verb: &str) -> String {
    if verb.is_empty() {
        format!("/v1/{kind}/{}", encode_segment(id))
    } else {
        format!("/v1/{kind}/{}/{verb}", encode_segment(id))
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Prints a list answer: `--json` the whole object, `--raw` one `field` per item, default
/// one `human` line per item.
fn print_list(
    config: &Config,
    value: &Value,
    key: &str,
    field: Option<&str>,
    default_field: &str,
    human: impl Fn(&Value) -> String,
) {
    let items = value[key].as_array().cloned().unwrap_or_default();
    match config.output {
        OutputMode::Json => println!("{value}"),
        OutputMode::Raw => {
            let field = field.unwrap_or(default_field);
            for item in &items {
                println!("{}", text(&item[field]));
            }
        }
        OutputMode::Human => {
            for item in &items {
                println!("{}", human(item));
            }
        }
    }
}

/// Prints an entity answer: `--raw` the `field` (strings bare), default `human`.
fn print_entity(
    config: &Config,
    value: &Value,
    field: Option<&str>,
    default_field: &str,
    human: impl FnOnce(&Value) -> String,
) {
    let field = field.unwrap_or(default_field);
    match config.output {
        OutputMode::Raw => println!("{}", text(&value[field])),
        _ => print_value(config, value, Some(field), human),
    }
}

fn task_line(task: &Value) -> String {
    let mut line = format!(
        "{} [{}] {} priority {}",
        text(&task["id"]),
        text(&task["status"]),
        text(&task["type"]),
        task["priority"]
    );
    if let Some(agent) = task["agent"].as_str() {
        line.push_str(&format!(" agent {agent}"));
    }
    if let Some(title) = task["title"].as_str() {
        line.push_str(&format!(" - {title}"));
    }
    line
}

// ---- tasks --------------------------------------------------------------------------

async fn task(client: &Client, config: &Config, command: TaskCommand) -> Result<(), CliError> {
    let tasks = |id: &str, verb: &str| path(config, &segment("tasks", id, verb), &[]);
    let (value, actor_field) = match command {
        TaskCommand::Create {
            task_type,
            id,
            title,
            priority,
            depends_on,
            capabilities,
            parameters,
            timeout_ms,
            max_attempts,
            requires_approval,
            batch,
            write: fields,
        } => {
            let body = match batch {
                Some(batch) => {
                    let tasks: Value = serde_json::from_str(&batch).map_err(|error| {
                        CliError::usage(format!("--batch must be a JSON array: {error}"))
                    })?;
                    if !tasks.is_array() {
                        return Err(CliError::usage("--batch must be a JSON array of tasks"));
                    }
                    Body::new().set("tasks", tasks).value()
                }
                None => Body::new()
                    .maybe("id", id)
                    .maybe("type", task_type)
                    .maybe("title", title)
                    .maybe("priority", priority)
                    .maybe("depends_on", (!depends_on.is_empty()).then_some(depends_on))
                    .maybe(
                        "capabilities",
                        (!capabilities.is_empty()).then_some(capabilities),
                    )
                    .parsed("parameters", parameters.as_deref())
                    .maybe("timeout_ms", timeout_ms)
                    .maybe("max_attempts", max_attempts)
                    .maybe("requires_approval", requires_approval.then_some(true))
                    .value(),
            };
            let value = write(client, &path(config, "/v1/tasks", &[]), body, &fields, None).await?;
            if let Some(created) = value["tasks"].as_array() {
                match config.output {
                    OutputMode::Json => println!("{value}"),
                    OutputMode::Raw => {
                        for task in created {
                            println!("{}", text(&task["id"]));
                        }
                    }
                    OutputMode::Human => {
                        for task in created {
                            println!("{}", task_line(task));
                        }
                    }
                }
                return Ok(());
            }
            (value, "id")
        }
        TaskCommand::Claim {
            agent,
            capabilities,
            types,
            wait_ms,
            write: fields,
        } => {
            let body = Body::new()
                .set("agent", agent.clone())
                .maybe("capabilities", capabilities)
                .maybe("types", types)
                .maybe("wait_ms", wait_ms)
                .value();
            let target = path(config, "/v1/tasks/claim", &[]);
            let value = write(client, &target, body, &fields, Some(&agent)).await?;
            // 204: nothing to claim (within --wait-ms).
            if value.is_null() {
                return Err(CliError {
                    exit: Exit::NotFound,
                    message: format!("no task for agent '{agent}' to claim"),
                });
            }
            (value, "id")
        }
        TaskCommand::Assign {
            id,
            agent,
            strategy,
            write: fields,
        } => {
            let body = Body::new()
                .maybe("agent", agent)
                .maybe("strategy", strategy)
                .value();
            (
                write(client, &tasks(&id, "assign"), body, &fields, None).await?,
                "agent",
            )
        }
        TaskCommand::Approve { id, write: fields } => (
            write(client, &tasks(&id, "approve"), json!({}), &fields, None).await?,
            "status",
        ),
        TaskCommand::Progress {
            id,
            agent,
            percent,
            note,
            write: fields,
        } => {
            let body = Body::new()
                .set("agent", agent.clone())
                .set("percent", percent)
                .maybe("note", note)
                .value();
            (
                write(client, &tasks(&id, "progress"), body, &fields, Some(&agent)).await?,
                "lease_expires_at",
            )
        }
        TaskCommand::Complete {
            id,
            agent,
            result,
            write: fields,
        } => {
            let body = Body::new()
                .set("agent", agent.clone())
                .parsed("result", result.as_deref())
                .value();
            (
                write(client, &tasks(&id, "complete"), body, &fields, Some(&agent)).await?,
                "status",
            )
        }
        TaskCommand::Fail {
            id,
            agent,
            error,
            retry,
            write: fields,
        } => {
            let body = Body::new()
                .set("agent", agent.clone())
                .parsed("error", error.as_deref())
                .maybe("retry", retry.then_some(true))
                .value();
            (
                write(client, &tasks(&id, "fail"), body, &fields, Some(&agent)).await?,
                "status",
            )
        }
        TaskCommand::Release {
            id,
            agent,
            write: fields,
        } => {
            let body = json!({ "agent": agent });
            (
                write(client, &tasks(&id, "release"), body, &fields, Some(&agent)).await?,
                "status",
            )
        }
        TaskCommand::Cancel {
            id,
            reason,
            write: fields,
        } => {
            let body = Body::new().maybe("reason", reason).value();
            (
                write(client, &tasks(&id, "cancel"), body, &fields, None).await?,
                "status",
            )
        }
        TaskCommand::Auction {
            id,
            deadline_ms,
            min_confidence,
            write: fields,
        } => {
            let body = Body::new()
                .set("deadline_ms", deadline_ms)
                .maybe("min_confidence", min_confidence)
                .value();
            (
                write(client, &tasks(&id, "auction"), body, &fields, None).await?,
                "status",
            )
        }
        TaskCommand::Bid {
            id,
            agent,
            price,
            estimated_ms,
            confidence,
            write: fields,
        } => {
            let body = json!({"agent": agent, "price": price, "estimated_ms": estimated_ms, "confidence": confidence});
            (
                write(client, &tasks(&id, "bids"), body, &fields, Some(&agent)).await?,
                "status",
            )
        }
        TaskCommand::List {
            status,
            session,
            agent,
            task_type,
            field,
            read: at,
        } => {
            let query = [
                ("status", status),
                ("session", session),
                ("agent", agent),
                ("type", task_type),
            ];
            let value = read(client, config, "/v1/tasks", &query, &at).await?;
            print_list(
                config,
                &value,
                "tasks",
                field.field.as_deref(),
                "id",
                task_line,
            );
            return Ok(());
        }
        TaskCommand::Show {
            id,
            field,
            read: at,
        } => {
            let value = read(client, config, &segment("tasks", &id, ""), &[], &at).await?;
            print_entity(config, &value, field.field.as_deref(), "status", pretty);
            return Ok(());
        }
    };
    print_entity(config, &value, None, actor_field, task_line);
    Ok(())
}

// ---- blackboard ---------------------------------------------------------------------

async fn finding(
    client: &Client,
    config: &Config,
    command: FindingCommand,
) -> Result<(), CliError> {
    match command {
        FindingCommand::Post {
            agent,
            category,
            content,
            confidence,
            tags,
            evidence,
            id,
            write: fields,
        } => {
            let evidence = match evidence {
                None => None,
                Some(text) => Some(serde_json::from_str::<Value>(&text).map_err(|error| {
                    CliError::usage(format!("--evidence must be a JSON array: {error}"))
                })?),
            };
            let body = Body::new()
                .maybe("id", id)
                .set("agent", agent.clone())
                .set("category", category)
                .set("content", parse_value(&content))
                .maybe("confidence", confidence)
                .maybe("evidence", evidence)
                .maybe("tags", (!tags.is_empty()).then_some(tags))
                .value();
            let value = write(
                client,
                &path(config, "/v1/findings", &[]),
                body,
                &fields,
                Some(&agent),
            )
            .await?;
            print_entity(config, &value, None, "id", |value| {
                format!("reported finding {}", text(&value["id"]))
            });
        }
        FindingCommand::Show {
            id,
            field,
            read: at,
        } => {
            let value = read(client, config, &segment("findings", &id, ""), &[], &at).await?;
            print_entity(
                config,
                &value,
                field.field.as_deref(),
                "content",
                finding_line,
            );
        }
        FindingCommand::List {
            session,
            agent,
            category,
            tag,
            field,
            read: at,
        } => {
            let query = [
                ("session", session),
                ("agent", agent),
                ("category", category),
                ("tag", tag),
            ];
            let value = read(client, config, "/v1/findings", &query, &at).await?;
            print_list(
                config,
                &value,
                "findings",
                field.field.as_deref(),
                "id",
                finding_line,
            );
        }
    }
    Ok(())
}

fn finding_line(finding: &Value) -> String {
    format!(
        "{} [{}] by {}: {}",
        text(&finding["id"]),
        text(&finding["category"]),
        text(&finding["agent"]),
        text(&finding["content"])
    )
}

fn hypothesis_line(hypothesis: &Value) -> String {
    format!(
        "{} [{}] confidence {:.3}: {}",
        text(&hypothesis["id"]),
        text(&hypothesis["status"]),
        hypothesis["confidence"].as_f64().unwrap_or(0.0),
        text(&hypothesis["description"])
    )
}

async fn hypothesis(
    client: &Client,
    config: &Config,
    command: HypothesisCommand,
) -> Result<(), CliError> {
    let hypotheses = |id: &str, verb: &str| path(config, &segment("hypotheses", id, verb), &[]);
    let (value, raw_field) = match command {
        HypothesisCommand::Propose {
            description,
            confidence,
            id,
            write: fields,
        } => {
            let body = Body::new()
                .maybe("id", id)
                .set("description", description)
                .set("confidence", confidence)
                .value();
            (
                write(
                    client,
                    &path(config, "/v1/hypotheses", &[]),
                    body,
                    &fields,
                    None,
                )
                .await?,
                "id",
            )
        }
        HypothesisCommand::Evidence {
            id,
            finding,
            refutes,
            weight,
            write: fields,
        } => {
            let body = Body::new()
                .set("finding", finding)
                .set("supports", !refutes)
                .maybe("weight", weight)
                .value();
            (
                write(client, &hypotheses(&id, "evidence"), body, &fields, None).await?,
                "confidence",
            )
        }
        HypothesisCommand::Validate {
            id,
            result,
            evidence,
            write: fields,
        } => {
            let result = match result.as_str() {
                "true" | "confirmed" => true,
                "false" | "refuted" => false,
                other => {
                    return Err(CliError::usage(format!(
                        "the result must be true (confirmed) or false (refuted), not '{other}'"
                    )))
                }
            };
            let body = Body::new()
                .set("result", result)
                .parsed("evidence", evidence.as_deref())
                .value();
            (
                write(client, &hypotheses(&id, "validate"), body, &fields, None).await?,
                "status",
            )
        }
        HypothesisCommand::List {
            session,
            field,
            read: at,
        } => {
            let query = [("session", session)];
            let value = read(client, config, "/v1/hypotheses", &query, &at).await?;
            print_list(
                config,
                &value,
                "hypotheses",
                field.field.as_deref(),
                "id",
                hypothesis_line,
            );
            return Ok(());
        }
    };
    print_entity(config, &value, None, raw_field, hypothesis_line);
    Ok(())
}

// ---- consensus ----------------------------------------------------------------------

fn proposal_line(proposal: &Value) -> String {
    let outcome = proposal["decision"]
        .as_str()
        .unwrap_or_else(|| proposal["status"].as_str().unwrap_or(""));
    format!(
        "{} [{}] {} yes, {} no, {} abstain: {}",
        text(&proposal["id"]),
        outcome,
        proposal["votes_for"],
        proposal["votes_against"],
        proposal["abstentions"],
        text(&proposal["action"])
    )
}

/// The decision of a proposal, or `open` while it is undecided.
fn with_outcome(mut proposal: Value) -> Value {
    let outcome = proposal["decision"].as_str().unwrap_or("open").to_owned();
    if let Some(object) = proposal.as_object_mut() {
        object.insert("outcome".into(), Value::from(outcome));
    }
    proposal
}

async fn proposal(
    client: &Client,
    config: &Config,
    command: ProposalCommand,
) -> Result<(), CliError> {
    let (value, raw_field) = match command {
        ProposalCommand::Open {
            action,
            quorum,
            threshold,
            voters,
            deadline_ms,
            id,
            write: fields,
        } => {
            let body = Body::new()
                .maybe("id", id)
                .set("action", parse_value(&action))
                .set("quorum", quorum)
                .maybe("threshold", threshold)
                .maybe("voters", voters)
                .set("deadline_ms", deadline_ms)
                .value();
            (
                write(
                    client,
                    &path(config, "/v1/proposals", &[]),
                    body,
                    &fields,
                    None,
                )
                .await?,
                "id",
            )
        }
        ProposalCommand::Vote {
            id,
            agent,
            vote,
            confidence,
            reason,
            write: fields,
        } => {
            let body = Body::new()
                .set("agent", agent.clone())
                .set("vote", vote)
                .maybe("confidence", confidence)
                .maybe("reason", reason)
                .value();
            let target = path(config, &segment("proposals", &id, "votes"), &[]);
            (
                with_outcome(write(client, &target, body, &fields, Some(&agent)).await?),
                "outcome",
            )
        }
        ProposalCommand::Show { id, read: at } => {
            let target = segment("proposals", &id, "");
            (
                with_outcome(read(client, config, &target, &[], &at).await?),
                "outcome",
            )
        }
        ProposalCommand::List {
            status,
            field,
            read: at,
        } => {
            let query = [("status", status)];
            let value = read(client, config, "/v1/proposals", &query, &at).await?;
            print_list(
                config,
                &value,
                "proposals",
                field.field.as_deref(),
                "id",
                proposal_line,
            );
            return Ok(());
        }
    };
    print_entity(config, &value, None, raw_field, proposal_line);
    Ok(())
}

// ---- messages -----------------------------------------------------------------------

async fn message(
    client: &Client,
    config: &Config,
    command: MessageCommand,
) -> Result<(), CliError> {
    match command {
        MessageCommand::Send {
            from,
            to,
            message_type,
            payload,
            requires_ack,
            write: fields,
        } => {
            let body = Body::new()
                .set("from", from.clone())
                .set("to", to)
                .set("type", message_type)
                .parsed("payload", payload.as_deref())
                .maybe("requires_ack", requires_ack.then_some(true))
                .value();
            let value = write(
                client,
                &path(config, "/v1/messages", &[]),
                body,
                &fields,
                Some(&from),
            )
            .await?;
            print_entity(config, &value, None, "id", |value| {
                format!(
                    "sent {} to {}",
                    text(&value["id"]),
                    value["recipients"]
                        .as_array()
                        .map(|recipients| recipients
                            .iter()
                            .map(text)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                )
            });
        }
        MessageCommand::Inbox {
            agent,
            unacked,
            follow: true,
            field,
            read: at,
        } => {
            if at.at.is_some() {
                return Err(CliError::usage(
                    "--at reads the inbox as it was; it cannot be combined with --follow",
                ));
            }
            let query = [("unacked", unacked.then(|| "true".to_owned()))];
            let target = path(config, &segment("agents", &agent, "inbox"), &query);
            return follow_inbox(client, config, &target, field.field.as_deref()).await;
        }
        MessageCommand::Inbox {
            agent,
            unacked,
            follow: false,
            field,
            read: at,
        } => {
            let query = [("unacked", unacked.then(|| "true".to_owned()))];
            let target = segment("agents", &agent, "inbox");
            let value = read(client, config, &target, &query, &at).await?;
            print_list(
                config,
                &value,
                "messages",
                field.field.as_deref(),
                "id",
                |message| {
                    format!(
                        "{} from {} [{}]{}: {}",
                        text(&message["id"]),
                        text(&message["from"]),
                        text(&message["type"]),
                        if message["acked"] == json!(true) {
                            " (acked)"
                        } else {
                            ""
                        },
                        text(&message["payload"])
                    )
                },
            );
        }
        MessageCommand::Show {
            id,
            field,
            read: at,
        } => {
            let value = read(client, config, &segment("messages", &id, ""), &[], &at).await?;
            print_entity(config, &value, field.field.as_deref(), "payload", pretty);
        }
        MessageCommand::Ack {
            id,
            agent,
            write: fields,
        } => {
            let target = path(config, &segment("messages", &id, "ack"), &[]);
            let value = write(
                client,
                &target,
                json!({ "agent": agent }),
                &fields,
                Some(&agent),
            )
            .await?;
            print_entity(config, &value, None, "id", |value| {
                format!("acked {}", text(&value["id"]))
            });
        }
    }
    Ok(())
}

/// `message inbox --follow`: the inbox as SSE, one message per line (`--json` the
/// `message.sent` data, `--raw` its `--field`, default `id`), resuming with
/// `Last-Event-ID` when the connection drops. It follows a running server: an in-process
/// engine would hold the directory's lock, so no one could send the messages it waits for.
async fn follow_inbox(
    client: &Client,
    config: &Config,
    target: &str,
    field: Option<&str>,
) -> Result<(), CliError> {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;

    if !client.is_remote() {
        return Err(CliError::failure(format!(
            "message inbox --follow follows a running server; start one with `swarmlog --db {} serve` or pass --url",
            config.db.display()
        )));
    }
    let mut last_seen: Option<u64> = None;
    loop {
        let mut headers = vec![("accept", "text/event-stream".to_owned())];
        if let Some(seq) = last_seen {
            headers.push(("last-event-id", seq.to_string()));
        }
        let reply = match client.send(Method::GET, target, None, &headers).await {
            Ok(reply) if reply.status.is_success() => reply,
            Ok(reply) => return reply.json().await.map(drop),
            Err(error) => {
                eprintln!("swarmlog: {}; retrying in 1 s", error.message);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut events = reply
            .body
            .map(|chunk| chunk.map_err(|error| std::io::Error::other(error.message)))
            .eventsource();
        while let Some(event) = events.next().await {
            let Ok(event) = event else { break };
            if event.event != "message.sent" {
                continue;
            }
            if let Ok(seq) = event.id.parse::<u64>() {
                last_seen = Some(seq);
            }
            let envelope: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            let message = &envelope["data"];
            match config.output {
                OutputMode::Json => println!("{message}"),
                OutputMode::Raw => println!("{}", text(&message[field.unwrap_or("message")])),
                OutputMode::Human => println!(
                    "{} from {} [{}]: {}",
                    text(&message["message"]),
                    text(&message["from"]),
                    text(&message["type"]),
                    text(&message["payload"])
                ),
            }
        }
        eprintln!("swarmlog: the inbox stream ended; reconnecting");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

// ---- sessions -----------------------------------------------------------------------

fn session_line(session: &Value) -> String {
    format!(
        "{} [{}] {}: {}/{} tasks completed ({}%), agents {}",
        text(&session["id"]),
        text(&session["status"]),
        text(&session["operation"]),
        session["completed_tasks"],
        session["total_tasks"],
        session["progress_percent"],
        session["agents"]
    )
}

async fn session(
    client: &Client,
    config: &Config,
    command: SessionCommand,
) -> Result<(), CliError> {
    match command {
        SessionCommand::Start {
            operation,
            id,
            context,
            write: fields,
        } => {
            let body = Body::new()
                .maybe("id", id)
                .set("operation", operation)
                .parsed("context", context.as_deref())
                .value();
            let value = write(
                client,
                &path(config, "/v1/sessions", &[]),
                body,
                &fields,
                None,
            )
            .await?;
            print_entity(config, &value, None, "id", session_line);
        }
        SessionCommand::Complete {
            id,
            outcome,
            write: fields,
        } => {
            let body = Body::new().parsed("outcome", outcome.as_deref()).value();
            let target = path(config, &segment("sessions", &id, "complete"), &[]);
            let value = write(client, &target, body, &fields, None).await?;
            print_entity(config, &value, None, "status", session_line);
        }
        SessionCommand::Show {
            id,
            field,
            read: at,
        } => {
            let value = read(client, config, &segment("sessions", &id, ""), &[], &at).await?;
            print_entity(
                config,
                &value,
                field.field.as_deref(),
                "progress_percent",
                session_line,
            );
        }
        SessionCommand::List { field, read: at } => {
            let value = read(client, config, "/v1/sessions", &[], &at).await?;
            print_list(
                config,
                &value,
                "sessions",
                field.field.as_deref(),
                "id",
                session_line,
            );
        }
        SessionCommand::Report {
            id,
            field,
            read: at,
        } => {
            let target = segment("sessions", &id, "report");
            let value = read(client, config, &target, &[], &at).await?;
            let summary = &value["summary"];
            match config.output {
                OutputMode::Json => println!("{value}"),
                OutputMode::Raw => {
                    let field = field.field.as_deref().unwrap_or("success_rate");
                    println!("{}", text(&summary[field]));
                }
                OutputMode::Human => {
                    println!(
                        "session {}: {} tasks, {} completed, {} failed, success rate {}, average task {} ms, {} agents",
                        id,
                        summary["total_tasks"],
                        summary["completed_tasks"],
                        summary["failed_tasks"],
                        summary["success_rate"],
                        summary["avg_task_ms"],
                        summary["agents_used"]
                    );
                    if let Some(agents) = value["by_agent"].as_object() {
                        for (agent, line) in agents {
                            println!(
                                "  {agent}: {} completed, {} failed, {} in progress, average {} ms",
                                line["completed"],
                                line["failed"],
                                line["in_progress"],
                                line["avg_task_ms"]
                            );
                        }
                    }
                }
            }
        }
        SessionCommand::Export { id } => {
            let target = path(config, &segment("sessions", &id, "events"), &[]);
            let reply = client.send(Method::GET, &target, None, &[]).await?;
            if !reply.status.is_success() {
                return reply.json().await.map(|_| ());
            }
            let bytes = reply.bytes().await?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&bytes)
                .map_err(|error| CliError::failure(format!("cannot write the export: {error}")))?;
        }
    }
    Ok(())
}
