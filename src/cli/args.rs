//! Stage one of parsing: the raw command line as clap sees it, before validation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use swarmlog_server::limits;

/// swarmlog: a durable, event-sourced coordination service for agent swarms.
#[derive(Debug, Parser)]
#[command(name = "swarmlog", version, about, long_about = None)]
pub struct Cli {
    /// Data directory (used in-process, or through the server serving it).
    #[arg(long, global = true, env = "SWARMLOG_DB", value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// Server URL (overrides --db).
    #[arg(long, global = true, env = "SWARMLOG_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Bearer token for the server.
    #[arg(
        long,
        global = true,
        env = "SWARMLOG_TOKEN",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Branch to read and write.
    #[arg(long, global = true, value_name = "NAME")]
    pub branch: Option<String>,
    /// Print the full JSON object.
    #[arg(long, global = true, conflicts_with = "raw")]
    pub json: bool,
    /// Print the bare value (strings without quotes).
    #[arg(long, global = true)]
    pub raw: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The nouns and verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server on the data directory.
    Serve(ServeArgs),
    /// Append, follow and replay events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// State cells: versioned values with compare-and-swap.
    #[command(subcommand)]
    State(StateCommand),
    /// Plain last-writer-wins keys.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Locks with TTLs and fencing tokens.
    #[command(subcommand)]
    Lock(LockCommand),
    /// Agents with leases and a kill switch.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Branches: isolated copies of the state.
    #[command(subcommand)]
    Branch(BranchCommand),
    /// Tasks: create, claim, complete, fail, assign, auction (exit 4 when nothing to claim).
    #[command(subcommand)]
    Task(TaskCommand),
    /// Blackboard findings.
    #[command(subcommand)]
    Finding(FindingCommand),
    /// Blackboard hypotheses with evidence-weighted confidence.
    #[command(subcommand)]
    Hypothesis(HypothesisCommand),
    /// Proposals and votes.
    #[command(subcommand)]
    Proposal(ProposalCommand),
    /// Direct and broadcast messages.
    #[command(subcommand)]
    Message(MessageCommand),
    /// Sessions and their reports.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Check every record of the log offline (CRC, sequence, hash chain), or with
    /// --store every event of a cluster's stream.
    Verify(StoreArgs),
    /// Show the log's head and size.
    Stats,
    /// Write a projection snapshot now (start-up then replays only what follows it).
    Snapshot,
    /// Serve MCP on stdin/stdout for an LLM agent host (tools, and the guide resource).
    Mcp(McpArgs),
    /// Print the guide for agents (Markdown): joining, work, locks, findings, votes, errors.
    Guide,
    /// Watch the swarm live in the terminal: agents, tasks, locks, the latest events (q quits).
    Top(TopArgs),
    /// Run any catalog operation by name with its arguments as one JSON object
    /// (e.g. `call task_complete '{"task":"T-1","agent":"a","result":1}'`).
    Call(CallArgs),
}

/// Flags of `mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// The agent this connection acts as (else `join` names it, or the token's agent).
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
}

/// Flags of `top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Show only the tasks and events of this session.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// How many of the latest events to keep (1 to 1000; as many as fit are shown).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub events: u16,
}

/// Arguments of `call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The operation's name (see `GET /v1/openapi.json`, operationId).
    pub operation: String,
    /// Its arguments: one JSON object, path parameters included.
    pub arguments: Option<String>,
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback only without --tokens).
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR")]
    pub listen: String,
    /// `always`: a 2xx means fsynced (default); `none`: no fsync, data can be lost on a crash.
    #[arg(long, value_enum, default_value_t = SyncArg::Always)]
    pub sync: SyncArg,
    /// Segment size in bytes at which the log rolls to a new file.
    #[arg(long, value_name = "BYTES")]
    pub segment_size: Option<u64>,
    /// Bearer-token file (TOML); required to listen on a non-loopback address. SIGHUP
    /// reloads it (a file that does not load keeps the tokens in force).
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// A host name clients may reach the server by (repeatable). Requests whose Host is
    /// not an IP address, localhost or such a name are refused (403 host_not_allowed),
    /// which stops DNS rebinding.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// A web origin (https://board.example:8443) whose pages may call the API (repeatable;
    /// CORS is answered for it). Requests from other origins than the server's own are
    /// refused (403 origin_not_allowed), which stops cross-site requests.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Refuse lock acquisitions that take a resource sorting before one already held.
    #[arg(long)]
    pub lock_order: bool,
    /// Refuse writes with 507 insufficient_storage while the log's file system has less
    /// free space than this (default 64 MiB, or 5% of the file system if smaller; 0: only
    /// when the disk is really full).
    #[arg(long, value_name = "BYTES")]
    pub min_free_bytes: Option<u64>,
    /// Largest request body in bytes (1024 to 1048576, the default); 413 beyond.
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most events in one batch or tasks in one create (1 to 1000, the default).
    #[arg(long, value_name = "N")]
    pub max_batch_events: Option<usize>,
    /// Longest id, key, stream, type, branch or actor name in bytes (64 to 256, the default).
    #[arg(long, value_name = "BYTES")]
    pub max_id_bytes: Option<usize>,
    /// Deepest JSON nesting of a request body (4 to 64, the default).
    #[arg(long, value_name = "N")]
    pub max_json_depth: Option<usize>,
    /// Shortest TTL, lease, claim timeout or deadline in ms (default 100; at least 10).
    #[arg(long, value_name = "MS")]
    pub min_ttl_ms: Option<u64>,
    /// Longest TTL, lease, claim timeout or deadline in ms (default 86400000; at most 7 days).
    #[arg(long, value_name = "MS")]
    pub max_ttl_ms: Option<u64>,
    /// Close a connection whose request head is not complete this many ms after its first
    /// byte (10 to 600000).
    #[arg(long, value_name = "MS", default_value_t = millis(limits::HEADER_TIMEOUT_DEFAULT))]
    pub header_timeout_ms: u64,
    /// Close a connection with no request in flight, or whose request body sends nothing,
    /// for this many ms (10 to 3600000); SSE streams and waiting requests are never cut.
    #[arg(long, value_name = "MS", default_value_t = millis(limits::IDLE_TIMEOUT_DEFAULT))]
    pub idle_timeout_ms: u64,
    /// Most open connections (1 to 1000000); lowered to what the file-descriptor limit
    /// leaves after the descriptors kept for the log. Past it: 503 too_many_connections.
    #[arg(long, value_name = "N", default_value_t = limits::CONNECTIONS_MAX_DEFAULT)]
    pub max_connections: usize,
    /// Most SSE subscriptions open at once (GET /v1/events and the SSE inbox; 1 to
    /// 1000000). Past it: 503 too_many_subscribers.
    #[arg(long, value_name = "N", default_value_t = limits::SUBSCRIBERS_MAX_DEFAULT)]
    pub max_subscribers: usize,
    /// On SIGTERM or SIGINT, how long in-flight requests may finish before every open
    /// connection is dropped (0 to 600000).
    #[arg(long, value_name = "MS", default_value_t = millis(limits::SHUTDOWN_TIMEOUT_DEFAULT))]
    pub shutdown_timeout_ms: u64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Where a cluster's history is (`serve --store`, `verify --store`).
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Keep the history in a NATS JetStream stream instead of the local log alone:
    /// nats://HOST:PORT[,HOST:PORT...] (README, "Running a cluster"; the data directory holds this
    /// node's mirror of the stream).
    #[arg(long, value_name = "URLS")]
    pub store: Option<String>,
    /// The stream's name (letters, digits, `-` and `_`); its lease bucket is NAME_writer.
    #[arg(long, value_name = "NAME", default_value = "swarmlog")]
    pub nats_stream: String,
}

/// The cluster flags of `serve`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Replicas of the stream (and at least this many in an existing one), 1 to 5.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub nats_replicas: usize,
    /// This node's name in the writer's lease and the metrics (default: its address).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The URL other nodes forward writes to (default: http:// and the listen address).
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// How long the writer's lease lasts without renewal, in ms (1000 to 60000): a dead
    /// writer is replaced after about this long.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    pub lease_ms: u64,
}

/// A default duration as the milliseconds of its flag.
const fn millis(duration: std::time::Duration) -> u64 {
    duration.as_millis() as u64
}

/// A refused limit as a sentence naming its flag.
pub fn limit_error(error: &swarmlog_projections::limits::ConfigureError) -> String {
    use swarmlog_projections::limits::ConfigureError;
    match error {
        ConfigureError::OutOfRange(range) => {
            let flag = match range.field {
                "request_body_bytes_max" => "--max-body-bytes",
                "batch_events_max" => "--max-batch-events",
                "id_bytes_max" => "--max-id-bytes",
                "json_depth_max" => "--max-json-depth",
                "ttl_ms_min" => "--min-ttl-ms",
                "ttl_ms_max" => "--max-ttl-ms",
                other => other,
            };
            format!(
                "{flag} must be between {} and {}, not {}",
                range.low, range.high, range.value
            )
        }
        other => other.to_string(),
    }
}

impl ServeArgs {
    /// The limits the flags ask for, the defaults for the others.
    pub fn limits(&self) -> swarmlog_projections::limits::Limits {
        let defaults = swarmlog_projections::limits::Limits::default();
        swarmlog_projections::limits::Limits {
            request_body_bytes_max: self
                .max_body_bytes
                .unwrap_or(defaults.request_body_bytes_max),
            batch_events_max: self.max_batch_events.unwrap_or(defaults.batch_events_max),
            id_bytes_max: self.max_id_bytes.unwrap_or(defaults.id_bytes_max),
            json_depth_max: self.max_json_depth.unwrap_or(defaults.json_depth_max),
            ttl_ms_min: self.min_ttl_ms.unwrap_or(defaults.ttl_ms_min),
            ttl_ms_max: self.max_ttl_ms.unwrap_or(defaults.ttl_ms_max),
        }
    }
}

/// `--sync` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncArg {
    /// fdatasync before every answer.
    Always,
    /// Never fsync (weaker: a crash can lose acknowledged writes).
    None,
}

/// Verbs of `events`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Append one custom event.
    Append(AppendArgs),
    /// Follow committed events (SSE) and print them as they arrive.
    Tail(FilterArgs),
    /// Print committed events as NDJSON and stop (the audit replay).
    Replay(FilterArgs),
}

/// Flags of `events append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Event type (not one of the reserved domain prefixes).
    #[arg(value_name = "TYPE")]
    pub event_type: String,
    /// Stream the event belongs to.
    pub stream: String,
    /// Payload: JSON if it parses, else a string.
    pub data: Option<String>,
    /// Append only if the stream has exactly this many events.
    #[arg(long, value_name = "N")]
    pub expected_version: Option<u64>,
    /// Acting agent id.
    #[arg(long, value_name = "ID")]
    pub actor: Option<String>,
    #[command(flatten)]
    pub write: WriteArgs,
}

/// Filters shared by `events tail` and `events replay`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// First seq (inclusive).
    #[arg(long, value_name = "SEQ")]
    pub from: Option<u64>,
    /// Last seq (inclusive).
    #[arg(long, value_name = "SEQ")]
    pub until: Option<u64>,
    /// Comma-separated type globs, e.g. `task.*,lock.acquired`.
    #[arg(long, value_name = "GLOBS")]
    pub types: Option<String>,
    /// Stream prefix.
    #[arg(long, value_name = "PREFIX")]
    pub stream: Option<String>,
    /// Only events by this actor.
    #[arg(long, value_name = "ID")]
    pub actor: Option<String>,
    /// Only events of this session.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// At most this many events (replay only).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Events of every branch, not just --branch.
    #[arg(long)]
    pub all_branches: bool,
}

/// Verbs of `state`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print a cell (`--raw`: the bare value; `--json`: key, value, version).
    Get {
        /// The cell's key.
        key: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Set a cell unconditionally.
    Set {
        /// The cell's key.
        key: String,
        /// The value (JSON if it parses, else a string).
        value: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Create a cell if it does not exist (no change if it does).
    Init {
        /// The cell's key.
        key: String,
        /// The value (JSON if it parses, else a string).
        value: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Set a cell only if it is at EXPECTED version (`none`, `null` or 0: must not exist); exit 3 on conflict.
    Cas {
        /// The cell's key.
        key: String,
        /// The expected version, or none.
        expected: String,
        /// The value (JSON if it parses, else a string).
        value: String,
        #[command(flatten)]
        write: WriteArgs,
    },
}

/// Verbs of `kv`.
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print a key's value.
    Get {
        /// The key.
        key: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Set a key.
    Put {
        /// The key.
        key: String,
        /// The value (JSON if it parses, else a string).
        value: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// List keys by prefix.
    List {
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// Verbs of `lock`.
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Acquire one or more resources (all or none); exit 3 if held.
    Acquire {
        /// The resources.
        #[arg(required = true)]
        resources: Vec<String>,
        /// Who takes the lock.
        #[arg(long)]
        owner: String,
        /// How long it lasts unless renewed.
        #[arg(long, value_name = "MS")]
        ttl_ms: u64,
        /// How long to wait for it.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        wait_ms: u64,
        /// Take it in shared mode.
        #[arg(long)]
        shared: bool,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Extend a held lock.
    Renew {
        /// The resource.
        resource: String,
        /// The holder.
        #[arg(long)]
        owner: String,
        /// The fencing token from acquire (`--token` is the global bearer token).
        #[arg(long, value_name = "N")]
        fencing_token: u64,
        /// The new TTL, from now.
        #[arg(long, value_name = "MS")]
        ttl_ms: u64,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Release a held lock.
    Release {
        /// The resource.
        resource: String,
        /// The holder.
        #[arg(long)]
        owner: String,
        /// The fencing token from acquire (`--token` is the global bearer token).
        #[arg(long, value_name = "N")]
        fencing_token: u64,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show one lock: holders, waiters, expiry (`--raw`: one holder per line).
    Show {
        /// The resource.
        resource: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// List the held locks and their waiters.
    List {
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// Verbs of `agent`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register (or re-register) an agent.
    Register {
        /// The agent's id.
        id: String,
        /// The agent's type.
        #[arg(long = "type", value_name = "TYPE")]
        agent_type: String,
        /// Comma-separated capabilities.
        #[arg(long, value_delimiter = ',')]
        capabilities: Vec<String>,
        /// Lease length; without it the agent never expires.
        #[arg(long, value_name = "MS")]
        ttl_ms: Option<u64>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Extend an agent's lease.
    Heartbeat {
        /// The agent's id.
        id: String,
    },
    /// Kill switch: release its locks, requeue its tasks, refuse its writes.
    Kill {
        /// The agent's id.
        id: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Deregister an agent.
    Deregister {
        /// The agent's id.
        id: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show one agent.
    Show {
        /// The agent's id.
        id: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// List agents.
    List {
        /// Only this type.
        #[arg(long = "type", value_name = "TYPE")]
        agent_type: Option<String>,
        /// Only this status (active, expired, killed, deregistered).
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// Verbs of `branch`.
// One value per process, parsed once: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum BranchCommand {
    /// Fork a branch from another (default main) at a seq (default the head).
    Create {
        /// The new branch's name.
        name: String,
        /// The parent branch.
        #[arg(long)]
        from: Option<String>,
        /// The seq to fork at.
        #[arg(long, value_name = "SEQ")]
        at: Option<u64>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// List branches.
    List,
}

/// `--fence RESOURCE:TOKEN`: the write succeeds only if lock RESOURCE is held right now
/// with fencing token TOKEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceArg {
    /// The lock's resource.
    pub resource: String,
    /// The fencing token.
    pub token: u64,
}

/// Parses `RESOURCE:TOKEN` (the resource may itself contain colons: the token is after the
/// last one).
fn parse_fence(text: &str) -> Result<FenceArg, String> {
    let Some((resource, token)) = text.rsplit_once(':') else {
        return Err(format!("'{text}' is not RESOURCE:TOKEN"));
    };
    if resource.is_empty() {
        return Err(format!("'{text}' names no resource before ':'"));
    }
    let token = token
        .parse::<u64>()
        .map_err(|_| format!("the token after ':' must be a whole number, not '{token}'"))?;
    Ok(FenceArg {
        resource: resource.to_owned(),
        token,
    })
}

/// Parses `--meta`: a JSON object.
fn parse_meta(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        Ok(_) => Err("it must be a JSON object, like '{\"model\":\"m1\"}'".to_owned()),
        Err(error) => Err(format!("it is not valid JSON: {error}")),
    }
}

/// The fields every write accepts (SPEC §2, §3), flattened into every write verb.
#[derive(Debug, Clone, Default, Args)]
pub struct WriteArgs {
    /// Write only if lock RESOURCE is held right now with fencing token TOKEN (else exit 3, stale_fence).
    #[arg(long, value_name = "RESOURCE:TOKEN", value_parser = parse_fence)]
    pub fence: Option<FenceArg>,
    /// A retry with the same key and the same write returns the first answer without writing again.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Provenance recorded on the events (a JSON object: model, tool call, prompt hash, ...).
    #[arg(long, value_name = "JSON", value_parser = parse_meta)]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// The session the events belong to.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// An id tying together the events of one workflow.
    #[arg(long, value_name = "ID")]
    pub correlation: Option<String>,
}

/// `--at` of every read verb.
#[derive(Debug, Clone, Default, Args)]
pub struct ReadArgs {
    /// Read the state as it was after this seq.
    #[arg(long, value_name = "SEQ")]
    pub at: Option<u64>,
}

/// `--field` of the read verbs: which field `--raw` prints.
#[derive(Debug, Args)]
pub struct FieldArg {
    /// The field `--raw` prints (of each item, for lists).
    #[arg(long, value_name = "NAME")]
    pub field: Option<String>,
}

/// Verbs of `task`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create a task (`--raw` prints its id), or an atomic batch with `--batch`.
    Create {
        /// The task type (omit with --batch).
        #[arg(value_name = "TYPE", required_unless_present = "batch")]
        task_type: Option<String>,
        /// The id (generated T-n when absent).
        #[arg(long)]
        id: Option<String>,
        /// A human title.
        #[arg(long)]
        title: Option<String>,
        /// 1..10, 10 most urgent (default 5).
        #[arg(long)]
        priority: Option<i64>,
        /// Comma-separated ids of tasks that must complete first.
        #[arg(long, value_delimiter = ',', value_name = "IDS")]
        depends_on: Vec<String>,
        /// Comma-separated capabilities an agent needs to claim it.
        #[arg(long, value_delimiter = ',', value_name = "CAPS")]
        capabilities: Vec<String>,
        /// Input for the worker (JSON if it parses, else a string).
        #[arg(long, value_name = "VALUE")]
        parameters: Option<String>,
        /// The claim lease (default 300000).
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<i64>,
        /// Attempts before it fails for good (default 3).
        #[arg(long, value_name = "N")]
        max_attempts: Option<i64>,
        /// Wait for `task approve` before it can be claimed.
        #[arg(long)]
        requires_approval: bool,
        /// A JSON array of task bodies created atomically (they may depend on each other).
        #[arg(long, value_name = "JSON", conflicts_with = "task_type")]
        batch: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Claim the most urgent pending task the agent can do; exit 4 if there is none.
    Claim {
        /// Who claims.
        #[arg(long)]
        agent: String,
        /// Comma-separated capabilities (default: the agent's registered ones).
        #[arg(long, value_delimiter = ',', value_name = "CAPS")]
        capabilities: Option<Vec<String>>,
        /// Comma-separated task types to consider.
        #[arg(long, value_delimiter = ',', value_name = "TYPES")]
        types: Option<Vec<String>>,
        /// How long to wait for a task to appear.
        #[arg(long, value_name = "MS")]
        wait_ms: Option<i64>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Assign a pending task to an agent, or by strategy.
    Assign {
        /// The task id.
        id: String,
        /// The agent.
        #[arg(long, conflicts_with = "strategy")]
        agent: Option<String>,
        /// round_robin, least_loaded or capability.
        #[arg(long, required_unless_present = "agent")]
        strategy: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Open a task's approval gate.
    Approve {
        /// The task id.
        id: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Report progress (renews the claim lease).
    Progress {
        /// The task id.
        id: String,
        /// The claimant.
        #[arg(long)]
        agent: String,
        /// 0..100.
        percent: f64,
        /// A note.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Complete a claimed task.
    Complete {
        /// The task id.
        id: String,
        /// The claimant.
        #[arg(long)]
        agent: String,
        /// The result (JSON if it parses, else a string).
        result: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Fail the current attempt.
    Fail {
        /// The task id.
        id: String,
        /// The claimant.
        #[arg(long)]
        agent: String,
        /// What went wrong (JSON if it parses, else a string).
        error: Option<String>,
        /// Put it back to pending if attempts remain.
        #[arg(long)]
        retry: bool,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Give a claimed task back to pending.
    Release {
        /// The task id.
        id: String,
        /// The claimant.
        #[arg(long)]
        agent: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Cancel a task and its dependents.
    Cancel {
        /// The task id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Open an auction on a pending task.
    Auction {
        /// The task id.
        id: String,
        /// How long bids are taken.
        #[arg(long, value_name = "MS")]
        deadline_ms: i64,
        /// Bids below this confidence are not valid.
        #[arg(long, value_name = "C")]
        min_confidence: Option<f64>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Bid in a task's auction.
    Bid {
        /// The task id.
        id: String,
        /// The bidder.
        #[arg(long)]
        agent: String,
        /// The price asked.
        #[arg(long)]
        price: f64,
        /// The estimated duration.
        #[arg(long, value_name = "MS")]
        estimated_ms: i64,
        /// 0..1.
        #[arg(long)]
        confidence: f64,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// List tasks (`--raw`: one id per line, or --field).
    List {
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// Only this session.
        #[arg(long)]
        session: Option<String>,
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
        /// Only this type.
        #[arg(long = "type", value_name = "TYPE")]
        task_type: Option<String>,
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Show a task with its history (`--raw`: its status, or --field).
    Show {
        /// The task id.
        id: String,
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// Verbs of `finding`.
#[derive(Debug, Subcommand)]
pub enum FindingCommand {
    /// Post a finding (`--raw` prints its id).
    Post {
        /// The reporter.
        #[arg(long)]
        agent: String,
        /// observation, hypothesis or conclusion.
        #[arg(long, default_value = "observation")]
        category: String,
        /// What was found (JSON if it parses, else a string).
        content: String,
        /// 0..1.
        #[arg(long)]
        confidence: Option<f64>,
        /// A tag (repeatable or comma-separated).
        #[arg(long = "tag", value_delimiter = ',')]
        tags: Vec<String>,
        /// Evidence: a JSON array of {source, query?, result?}.
        #[arg(long, value_name = "JSON")]
        evidence: Option<String>,
        /// The id (generated F-n when absent).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show one finding (`--raw`: its content, or --field).
    Show {
        /// The finding id.
        id: String,
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// List findings (`--raw`: one id per line, or --field).
    List {
        /// Only this session.
        #[arg(long)]
        session: Option<String>,
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
        /// Only this category.
        #[arg(long)]
        category: Option<String>,
        /// Only with this tag.
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// Verbs of `hypothesis`.
#[derive(Debug, Subcommand)]
pub enum HypothesisCommand {
    /// Propose a hypothesis (`--raw` prints its id).
    Propose {
        /// What is suspected.
        description: String,
        /// The prior confidence, 0..1.
        #[arg(long)]
        confidence: f64,
        /// The id (generated H-n when absent).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Attach a finding as evidence (`--raw` prints the new confidence).
    Evidence {
        /// The hypothesis id.
        id: String,
        /// The finding id.
        #[arg(long)]
        finding: String,
        /// The finding refutes the hypothesis (default: it supports it).
        #[arg(long)]
        refutes: bool,
        /// 0..10 (default 1).
        #[arg(long)]
        weight: Option<f64>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Confirm (`true`) or refute (`false`) a hypothesis.
    Validate {
        /// The hypothesis id.
        id: String,
        /// `true` (confirmed) or `false` (refuted).
        #[arg(value_name = "true|false")]
        result: String,
        /// Evidence (JSON if it parses, else a string).
        #[arg(long)]
        evidence: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// List hypotheses, most confident first (`--raw`: one id per line, or --field).
    List {
        /// Only this session.
        #[arg(long)]
        session: Option<String>,
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// Verbs of `proposal`.
#[derive(Debug, Subcommand)]
pub enum ProposalCommand {
    /// Open a proposal (`--raw` prints its id).
    Open {
        /// What is proposed (JSON if it parses, else a string).
        action: String,
        /// majority, unanimous or threshold.
        #[arg(long, default_value = "majority")]
        quorum: String,
        /// For threshold: the share of yes among yes and no, in (0, 1].
        #[arg(long)]
        threshold: Option<f64>,
        /// Comma-separated electorate (default: the active agents).
        #[arg(long, value_delimiter = ',')]
        voters: Option<Vec<String>>,
        /// How long the vote stays open.
        #[arg(long, value_name = "MS")]
        deadline_ms: i64,
        /// The id (generated P-n when absent).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Vote yes, no or abstain (`--raw` prints the decision, or `open`).
    Vote {
        /// The proposal id.
        id: String,
        /// The voter.
        #[arg(long)]
        agent: String,
        /// yes, no or abstain.
        vote: String,
        /// 0..1.
        #[arg(long)]
        confidence: Option<f64>,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show a proposal (`--raw` prints the decision, or `open`).
    Show {
        /// The proposal id.
        id: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// List proposals (`--raw`: one id per line, or --field).
    List {
        /// open or decided.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// Verbs of `message`.
#[derive(Debug, Subcommand)]
pub enum MessageCommand {
    /// Send a message to an agent or to `*` (every active agent but the sender).
    Send {
        /// The sender.
        #[arg(long)]
        from: String,
        /// An agent id, or `*`.
        #[arg(long)]
        to: String,
        /// The message type.
        #[arg(value_name = "TYPE")]
        message_type: String,
        /// The payload (JSON if it parses, else a string).
        payload: Option<String>,
        /// The sender expects acks.
        #[arg(long)]
        requires_ack: bool,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// An agent's inbox (`--raw`: one id per line, or --field payload).
    Inbox {
        /// The agent.
        agent: String,
        /// Only messages it has not acked.
        #[arg(long)]
        unacked: bool,
        /// Keep following: print each message as it arrives (needs a server).
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Show one message with who acked it (`--raw`: its payload, or --field).
    Show {
        /// The message id.
        id: String,
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Acknowledge a message.
    Ack {
        /// The message id.
        id: String,
        /// The recipient.
        #[arg(long)]
        agent: String,
        #[command(flatten)]
        write: WriteArgs,
    },
}

/// Verbs of `session`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Start a session (`--raw` prints its id).
    Start {
        /// What it is for.
        operation: String,
        /// The id (generated S-n when absent).
        #[arg(long)]
        id: Option<String>,
        /// Context (JSON if it parses, else a string).
        #[arg(long)]
        context: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Complete a session.
    Complete {
        /// The session id.
        id: String,
        /// How it ended (JSON if it parses, else a string).
        #[arg(long)]
        outcome: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show a session (`--raw`: its progress percent, or --field).
    Show {
        /// The session id.
        id: String,
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// List sessions (`--raw`: one id per line, or --field).
    List {
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// A session's report (`--raw`: a summary field, default success_rate).
    Report {
        /// The session id.
        id: String,
        #[command(flatten)]
        field: FieldArg,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Print every event of the session as NDJSON, for archiving.
    Export {
        /// The session id.
        id: String,
    },
}
