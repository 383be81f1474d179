//! The command-line client: dispatch, output modes and exit codes (SPEC §5).

pub mod args;
pub mod client;
mod config;
mod coordination;
mod events;
mod mcp;
mod ops;
mod top;
mod work;

use std::process::ExitCode;

use axum::http::{Method, StatusCode};
use clap::Parser;
use serde_json::Value;

use args::{Cli, Command, EventsCommand, ReadArgs, WriteArgs};
use client::Client;
pub use config::{Config, OutputMode};

/// Exit codes of SPEC §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: any other error.
    Failure = 1,
    /// 2: the command line is wrong.
    Usage = 2,
    /// 3: a conflict (CAS, version, lock held).
    Conflict = 3,
    /// 4: not found.
    NotFound = 4,
}

/// A failed command: an exit code and one sentence for stderr.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong.
    pub message: String,
}

impl CliError {
    /// Exit 1.
    pub fn failure(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Failure,
            message: message.into(),
        }
    }

    /// Exit 2.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    /// Maps an API error answer to an exit code: 409 is a conflict (3), 404 not found (4),
    /// anything else 1 (so is 507 `insufficient_storage`: a script retries it later).
    pub fn from_api(status: StatusCode, body: &Value) -> Self {
        let code = body["error"]["code"].as_str().unwrap_or("error");
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("the server refused the request");
        let exit = match status {
            StatusCode::CONFLICT => Exit::Conflict,
            StatusCode::NOT_FOUND => Exit::NotFound,
            _ => Exit::Failure,
        };
        CliError {
            exit,
            message: format!("{message} ({code}, HTTP {})", status.as_u16()),
        }
    }
}

/// Parses the command line, runs the command and maps the outcome to an exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(Exit::Usage as u8),
            };
        }
    };
    match &cli.command {
        // Fixed first, before anything (the --branch check, say) reads the limits.
        Command::Serve(args) => {
            if let Err(error) = swarmlog_projections::limits::configure(args.limits()) {
                eprintln!("swarmlog: {}", args::limit_error(&error));
                return ExitCode::from(Exit::Usage as u8);
            }
        }
        _ => restore_default_sigpipe(),
    }
    let outcome = Config::from_cli(&cli).and_then(|config| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|error| CliError::failure(format!("cannot start the runtime: {error}")))?;
        runtime.block_on(dispatch(cli.command, config))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("swarmlog: {}", error.message);
            ExitCode::from(error.exit as u8)
        }
    }
}

/// A client command piped into `head` should end quietly when the pipe closes, like any
/// Unix tool, instead of panicking in `println!`. Not for `serve`, whose sockets must not
/// kill the process when a peer goes away.
fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to its default has no memory-safety
    // preconditions; it runs before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn dispatch(command: Command, config: Config) -> Result<(), CliError> {
    match command {
        Command::Serve(args) => ops::serve(&config, args).await,
        Command::Verify(args) => ops::verify_store(&config, &args).await,
        Command::Stats => ops::stats(&config).await,
        Command::Snapshot => ops::snapshot(&config).await,
        Command::Mcp(args) => mcp::serve(&config, args.agent).await,
        Command::Guide => {
            mcp::guide();
            Ok(())
        }
        Command::Top(args) => top::run(&config, args).await,
        Command::Call(args) => mcp::call(&config, &args.operation, args.arguments.as_deref()).await,
        Command::State(_)
        | Command::Kv(_)
        | Command::Lock(_)
        | Command::Agent(_)
        | Command::Branch(_) => {
            // One client for the command; in-process it opens the data directory (and
            // takes its lock) only while each request is processed.
            let client =
                Client::connect(config.url.as_deref(), &config.db, config.token.clone()).await?;
            let outcome = match command {
                Command::State(verb) => coordination::state(&client, &config, verb).await,
                Command::Kv(verb) => coordination::kv(&client, &config, verb).await,
                Command::Lock(verb) => coordination::lock(&client, &config, verb).await,
                Command::Agent(verb) => coordination::agent(&client, &config, verb).await,
                Command::Branch(verb) => coordination::branch(&client, &config, verb).await,
                _ => unreachable!("matched by the outer arm"),
            };
            client.close().await;
            outcome
        }
        Command::Task(_)
        | Command::Finding(_)
        | Command::Hypothesis(_)
        | Command::Proposal(_)
        | Command::Message(_)
        | Command::Session(_) => {
            let client =
                Client::connect(config.url.as_deref(), &config.db, config.token.clone()).await?;
            let outcome = work::run(&client, &config, command).await;
            client.close().await;
            outcome
        }
        Command::Events(EventsCommand::Append(args)) => events::append(&config, args).await,
        Command::Events(EventsCommand::Tail(args)) => events::tail(&config, args).await,
        Command::Events(EventsCommand::Replay(args)) => events::replay(&config, args).await,
    }
}

/// Prints a JSON answer in the chosen mode: `--json` the whole object, `--raw` the bare
/// value of `raw_field` (strings without quotes), default a human line from `human`.
pub fn print_value(
    config: &Config,
    value: &Value,
    raw_field: Option<&str>,
    human: impl FnOnce(&Value) -> String,
) {
    match config.output {
        OutputMode::Json => println!("{value}"),
        OutputMode::Raw => {
            let field = raw_field.map_or(value, |name| &value[name]);
            match field {
                Value::String(text) => println!("{text}"),
                other => println!("{other}"),
            }
        }
        OutputMode::Human => println!("{}", human(value)),
    }
}

/// Parses a command-line value: JSON when it is valid JSON, else the string itself.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Sends a write: `body` (a JSON object) with the shared write fields of `write` added
/// (`fence`, `meta`, `session`, `correlation`), its `Idempotency-Key` header, and `actor`
/// as the `Swarmlog-Actor` header. Returns the JSON answer or the matching error.
pub async fn write(
    client: &Client,
    method: Method,
    path: &str,
    mut body: Value,
    write: &WriteArgs,
    actor: Option<&str>,
) -> Result<Value, CliError> {
    let Some(object) = body.as_object_mut() else {
        unreachable!("every write body the CLI builds is a JSON object");
    };
    if let Some(fence) = &write.fence {
        object.insert(
            "fence".into(),
            serde_json::json!({"resource": fence.resource, "token": fence.token}),
        );
    }
    if let Some(meta) = &write.meta {
        object.insert("meta".into(), Value::Object(meta.clone()));
    }
    if let Some(session) = &write.session {
        object.insert("session".into(), Value::from(session.as_str()));
    }
    if let Some(correlation) = &write.correlation {
        object.insert("correlation".into(), Value::from(correlation.as_str()));
    }
    let mut headers: Vec<(&str, String)> = Vec::new();
    if let Some(key) = &write.idempotency_key {
        headers.push(("idempotency-key", key.clone()));
    }
    if let Some(actor) = actor {
        headers.push(("swarmlog-actor", actor.to_owned()));
    }
    client
        .send(method, path, Some(&body), &headers)
        .await?
        .json()
        .await
}

/// The query parameters of a read's `--at`.
pub fn at_param(read: &ReadArgs) -> Option<String> {
    read.at.map(|at| at.to_string())
}

/// Prints the items of a list answer one per line under `--raw`: the `field` of each
/// (strings bare), which is the id for every noun unless `--field` names another.
pub fn print_raw_lines(items: &[Value], field: &str) {
    for item in items {
        match &item[field] {
            Value::String(text) => println!("{text}"),
            Value::Null => println!(),
            other => println!("{other}"),
        }
    }
}
