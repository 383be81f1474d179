//! Every bound the server enforces, in one place, each with how it was chosen. The limits
//! SPEC §6 makes configurable (request body, batch, ids, JSON depth, TTLs) are
//! `swarmlog_projections::limits::Limits`, set by `serve`'s flags.

use std::time::Duration;

use swarmlog_projections::limits::REQUEST_BODY_BYTES_MAX;

/// Depth of the engine's command queue. Handlers wait (async) when it is full, which is
/// the back-pressure: at ~100 µs per fsync a full queue drains in a few commits.
pub const ENGINE_QUEUE_DEPTH_MAX: usize = 8192;

/// Most jobs the engine folds into one group commit. Bounds the latency a single commit
/// adds to the requests queued behind it.
pub const COMMIT_JOBS_MAX: usize = 4096;

/// Most events the engine folds into one group commit.
pub const COMMIT_EVENTS_MAX: usize = 16_384;

/// Bytes of events (as JSON, which is about their stored size) the engine folds into one
/// group commit: half the log's batch limit, so a group that passes it with one more
/// maximum-size request still fits.
pub const COMMIT_BYTES_MAX: usize = 32 * 1024 * 1024;

const _: () = assert!(COMMIT_EVENTS_MAX as u64 <= swarmlog_log::limits::BATCH_RECORDS_MAX as u64);
const _: () = assert!(
    (COMMIT_BYTES_MAX + 2 * REQUEST_BODY_BYTES_MAX) as u64 <= swarmlog_log::limits::BATCH_BYTES_MAX
);

/// Committed batches the live fan-out keeps for subscribers. A subscriber further behind
/// than this is switched to reading from the log on disk (never dropped).
pub const HUB_BATCHES_MAX: usize = 4096;

/// SSE subscriptions open at once by default (`serve --max-subscribers`): the 1,000
/// followers issue 11 measures, below the default connection cap, so that a crowd of
/// followers still leaves connections for writers.
pub const SUBSCRIBERS_MAX_DEFAULT: usize = 1000;

/// Pieces of SSE text a subscriber's connection may have buffered before its task waits
/// for it. A piece is one committed group's events or [`SSE_CHUNK_BYTES`], whichever is
/// less (plus one event), so a slow client holds at most about 1 MiB of text here.
pub const SUBSCRIBER_BUFFER_CHUNKS_MAX: usize = 64;

/// SSE text gathered for one subscriber before it is handed to the connection, even in the
/// middle of a group: large enough that one write carries many events, small enough that a
/// big group does not sit in memory once per subscriber.
pub const SSE_CHUNK_BYTES: usize = 16 * 1024;

/// Records read from disk per chunk when replaying or catching a subscriber up.
pub const REPLAY_CHUNK_RECORDS_MAX: usize = 1024;

/// Bytes read from disk per chunk when replaying or catching a subscriber up.
pub const REPLAY_CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Interval of SSE keep-alive comments (SPEC §3: at least every 15 s).
pub const SSE_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long an `Idempotency-Key` is remembered (SPEC §3: at least 24 h).
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// Longest `Idempotency-Key` in bytes, like any other id.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = swarmlog_projections::limits::ID_BYTES_MAX;

/// Most glob patterns in a `types=` filter.
pub const TYPE_FILTERS_MAX: usize = 64;

/// Longest `wait_ms` for a lock or a task claim: long enough for any hand-off between
/// agents, short enough that a forgotten waiter does not pin a connection for hours.
pub const WAIT_MS_MAX: u64 = 10 * 60 * 1000;

/// Events between automatic snapshots. Replaying this many events at start-up takes a
/// fraction of a second, which bounds start-up time, while a snapshot every 100,000 events
/// costs little.
pub const SNAPSHOT_INTERVAL_EVENTS: u64 = 100_000;

/// How long after a read the engine goes on copying its state for reads (`Engine::read`),
/// one copy per group commit. A copy serves reads only until the next group's head
/// outdates it (a group every 1.3 ms under 32 writers here), so copies made only for
/// the groups right after a read left a reader polling every 3 ms with a stale copy at
/// each of its reads; 50 ms covers readers that poll 20 times a second or more, and
/// bounds the copies an occasional read costs to one window's groups.
pub const READS_WANT_COPIES_FOR: Duration = Duration::from_millis(50);

/// The engine copies its state for reads (`Engine::read`) at most once per this many
/// times what its last copy took (the copy plus the drop of copies retired since), so that
/// copying takes at most a fiftieth of the engine's time however large the state. A state
/// of a few dozen streams and cells copies in about 10 µs, which still leaves one copy per
/// group commit under 32 writers (a group every 1.3 ms here). 10,000 tasks take about
/// 10 ms to copy on this 2-core machine (`cargo bench --bench engine --
/// state_publication`): a tenth of the time (one copy per 100 ms) cost 32 durable writers
/// 8 % of their throughput and raised their p99 from 2 to 10 ms, for almost no read
/// served by a copy, since the next group's head outdates it within 1.3 ms; a fiftieth
/// (one copy per half second) keeps the stalls out of the p99.
pub const STATE_PUBLICATION_SPACING_PER_COST: u32 = 50;

/// Events per stream index file (`DIR/streams/`): the tail after the last full range is
/// kept in memory (about 16 bytes an event, 1 MiB) and rebuilt from the log at start-up
/// (a few tens of milliseconds for 65,536 events), while a 10M-event log makes about 150
/// files, each read with a few small reads per stream read.
pub const STREAM_INDEX_RANGE_EVENTS: u32 = 65_536;

/// Stream index files readers hold open at once (see [`DESCRIPTORS_RESERVED`]): each
/// read of a file is a few small `pread`s, so a handful of readers at a time keeps up
/// with many more concurrent stream reads.
pub const STREAM_INDEX_FILES_OPEN_MAX: usize = 4;

/// Resources listed by the `lock_contention_top` metric: enough to spot the hot ones,
/// few enough to keep the metric's cardinality fixed.
pub const CONTENTION_TOP_MAX: usize = 10;

/// How many lock resources the contention counts follow at most. Past it, the less
/// contended half is forgotten, so memory stays bounded however many resources a log
/// names, and the most contended ones (the metric's top) keep their counts.
pub const CONTENTION_TRACKED_MAX: usize = 10_000;

/// The most `wait_events` waits (SPEC §7: 60 s), so an agent's tool call never hangs for
/// longer than its host's usual tool timeout.
pub const MCP_WAIT_MS_MAX: u64 = 60_000;

/// How many events `read_events` and `wait_events` answer at most per call over MCP: an
/// agent pays for every byte in its context, and can page on with `from`/`next`.
pub const MCP_EVENTS_LIMIT_DEFAULT: u64 = 100;

/// The lease `join` asks for when the agent names none: long enough that a keep-alive every
/// third of it survives a busy moment, short enough that a crashed agent's locks and
/// claims come back within half a minute.
pub const MCP_JOIN_TTL_MS_DEFAULT: u64 = 30_000;

/// Default `--min-free-bytes`: writes are refused below this much free space on the log's
/// file system. It leaves room for what must still be written once writes are refused:
/// the groups already in flight (typically kilobytes, at most `COMMIT_BYTES_MAX` each), a
/// segment roll's index and new header, and the snapshot written at shutdown.
pub const FREE_BYTES_MIN_DEFAULT: u64 = 64 * 1024 * 1024;

/// On a file system smaller than 20 × [`FREE_BYTES_MIN_DEFAULT`] (1.28 GiB) the default
/// threshold is this percentage of its size instead, so a small volume is not read-only
/// from the start.
pub const FREE_BYTES_MIN_DEFAULT_PERCENT: u64 = 5;

/// How long a free-space reading is reused (less the bytes written since). `statvfs` costs
/// about 2 µs here, against ~100 µs for the fsync of a group: cheap, but a busy server
/// asks once per group, and 50 ms of writes is far below any sensible threshold.
pub const SPACE_READING_AGE_MAX: Duration = Duration::from_millis(50);

/// While writes are refused for lack of space, due timers (lock and lease expiries, which
/// are writes too) wait this long between checks instead of waking the engine every
/// millisecond.
pub const SPACE_RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Most bytes of an MCP transport's plain-text refusal kept as the message of its JSON
/// error: its sentences are one line; more would only be noise in a client's log.
pub const MCP_TRANSPORT_REFUSAL_BYTES_MAX: usize = 4096;

/// How long a browser may cache a CORS preflight answer (`Access-Control-Max-Age`): ten
/// minutes spares a board a preflight per request, and a changed `--allow-origin` reaches
/// browsers within that time of a restart.
pub const CORS_PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// How long a request head may take from its first byte to its blank line before the
/// connection is closed (`serve --header-timeout-ms`): a slowloris client trickling
/// header lines holds a connection for this long at most. Ten seconds is far more than any
/// real client needs to send a few hundred bytes, even over a slow link.
pub const HEADER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// How long a connection may stay open with no request in flight, and how long a request
/// body may go without a byte, before the connection is closed (`serve
/// --idle-timeout-ms`). A minute outlives the pauses of a client that reuses its
/// connection between requests, and frees an abandoned connection's descriptor soon.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// How long in-flight requests may run after SIGTERM or SIGINT before every connection
/// still open is dropped (`serve --shutdown-timeout-ms`): about what a service manager
/// waits before it sends SIGKILL (systemd's default is 90 s, Kubernetes' 30 s).
pub const SHUTDOWN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Open connections (`serve --max-connections`), lowered at start to what the
/// file-descriptor limit leaves after [`DESCRIPTORS_RESERVED`]. Each connection costs a
/// descriptor and a few kilobytes of buffers; 1,024 covers hundreds of agents that each
/// hold a request and a subscription open.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;

/// Most connections `--max-connections` accepts.
pub const CONNECTIONS_MAX_LIMIT: usize = 1_000_000;

/// File descriptors kept back from connections for everything else: the log (directory,
/// lock, active segment, its index and the index being written at a roll, files opened
/// for a moment to map a sealed segment or read a directory), snapshots (file and
/// directory), the stream index ([`STREAM_INDEX_FILES_OPEN_MAX`] readers and the file
/// being written), the tokens file, stdio and the runtime's own (epoll, wake-up,
/// signals). That is under 30 at any moment; 64 leaves room for what a library opens
/// unasked.
pub const DESCRIPTORS_RESERVED: u64 = 64;

/// Connections past the cap that are answered 503 at the same time. Each holds its
/// descriptor for at most [`CLOSE_LINGER`]; past this many a new connection is closed
/// without an answer, so a flood cannot spend the descriptors reserved for the log.
pub const REFUSALS_IN_FLIGHT_MAX: usize = 16;

/// Fewest connections the file-descriptor limit must leave room for; below it `serve`
/// refuses to start rather than run a server that turns away nearly everyone.
pub const CONNECTIONS_MIN: u64 = 8;

/// How long a connection the server closes is kept to read (and drop) what the client is
/// still sending: closing a socket with unread bytes resets it, and the client may lose
/// the answer it was sent (a 503 for a refused connection, a 413 sent before the body).
/// A second is enough to take several megabytes on any link where a body of that size
/// is sent at all.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Most bytes read and dropped while lingering: more than the largest body limit's
/// worth, so a client that sends a too-large body before reading gets its 413.
pub const CLOSE_DRAIN_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The first pause of the accept loop after an error such as EMFILE (no descriptor for
/// the new socket); it doubles up to [`ACCEPT_BACKOFF_MAX`] while the error lasts, so the
/// loop neither spins on a listener that stays readable nor waits long once a
/// descriptor is free again.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// The longest pause of the accept loop after an error.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Largest request head (request line and headers) in bytes: 64 KiB is eight times what
/// nginx accepts by default, and bounds what a client can make the server buffer per
/// connection before the request is dispatched.
pub const REQUEST_HEAD_BYTES_MAX: usize = 64 * 1024;

/// Most header lines in a request head (hyper's own default).
pub const REQUEST_HEADERS_MAX: usize = 100;

/// Longest chunk-size or trailer line of a chunked request body the framing check
/// follows; a longer one stops the check for that connection (hyper refuses it anyway).
pub const CHUNK_LINE_BYTES_MAX: usize = 4096;

/// How long the shutdown waits for the connections it dropped at its deadline to be
/// gone before it closes the log anyway.
pub const SHUTDOWN_DROP_WAIT: Duration = Duration::from_secs(1);

const _: () = assert!(CONNECTIONS_MAX_DEFAULT <= CONNECTIONS_MAX_LIMIT);
