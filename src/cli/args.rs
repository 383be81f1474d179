//! Stage one of parsing: the raw command line as clap sees it, before validation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Check every record of the log offline (CRC, sequence, hash chain).
    Verify,
    /// Show the log's head and size.
    Stats,
    /// Write a projection snapshot now (start-up then replays only what follows it).
    Snapshot,
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
    /// Bearer-token file (TOML); required to listen on a non-loopback address.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Refuse lock acquisitions that take a resource sorting before one already held.
    #[arg(long)]
    pub lock_order: bool,
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
    /// Idempotency key: a retry with the same key does not write twice.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Acting agent id.
    #[arg(long, value_name = "ID")]
    pub actor: Option<String>,
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
        /// Read the cell as it was after this seq.
        #[arg(long, value_name = "SEQ")]
        at: Option<u64>,
    },
    /// Set a cell unconditionally.
    Set {
        /// The cell's key.
        key: String,
        /// The value (JSON if it parses, else a string).
        value: String,
    },
    /// Create a cell if it does not exist (no change if it does).
    Init {
        /// The cell's key.
        key: String,
        /// The value (JSON if it parses, else a string).
        value: String,
    },
    /// Set a cell only if it is at EXPECTED version (`none`, `null` or 0: must not exist); exit 3 on conflict.
    Cas {
        /// The cell's key.
        key: String,
        /// The expected version, or none.
        expected: String,
        /// The value (JSON if it parses, else a string).
        value: String,
    },
}

/// Verbs of `kv`.
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print a key's value.
    Get {
        /// The key.
        key: String,
    },
    /// Set a key.
    Put {
        /// The key.
        key: String,
        /// The value (JSON if it parses, else a string).
        value: String,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
    },
    /// List keys by prefix.
    List {
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
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
    },
    /// Extend a held lock.
    Renew {
        /// The resource.
        resource: String,
        /// The holder.
        #[arg(long)]
        owner: String,
        /// The fencing token from acquire.
        #[arg(long)]
        token: u64,
        /// The new TTL, from now.
        #[arg(long, value_name = "MS")]
        ttl_ms: u64,
    },
    /// Release a held lock.
    Release {
        /// The resource.
        resource: String,
        /// The holder.
        #[arg(long)]
        owner: String,
        /// The fencing token from acquire.
        #[arg(long)]
        token: u64,
    },
    /// List the held locks and their waiters.
    List,
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
    },
    /// Deregister an agent.
    Deregister {
        /// The agent's id.
        id: String,
    },
    /// Show one agent.
    Show {
        /// The agent's id.
        id: String,
    },
    /// List agents.
    List {
        /// Only this type.
        #[arg(long = "type", value_name = "TYPE")]
        agent_type: Option<String>,
        /// Only this status (active, expired, killed, deregistered).
        #[arg(long)]
        status: Option<String>,
    },
}

/// Verbs of `branch`.
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
    },
    /// List branches.
    List,
}
