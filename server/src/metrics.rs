//! Prometheus metrics (`GET /metrics`): append and fsync latency, batch sizes, events,
//! subscribers, reads. One registry per engine so tests running several engines do not mix.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Time from a write entering the engine queue to its answer (seconds).
    pub append_latency: Histogram,
    /// Time of one durable append of a batch: write plus fdatasync (seconds).
    pub fsync_latency: Histogram,
    /// Events per group commit.
    pub batch_events: Histogram,
    /// Events appended.
    pub events: Counter<u64, AtomicU64>,
    /// Writes refused by the rules.
    pub rejections: Counter<u64, AtomicU64>,
    /// Connected subscribers (SSE).
    pub subscribers: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Subscribers that fell behind: their client does not read as fast as events commit
    /// (their buffer is full), or they are being served from disk to catch up.
    pub lagging_subscribers: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Times a subscriber fell behind the live feed and was switched to disk.
    pub subscriber_lag_events: Counter<u64, AtomicU64>,
    /// The last committed seq.
    pub head_seq: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Lock grants.
    pub lock_acquisitions: Counter<u64, AtomicU64>,
    /// Lock requests refused because the lock was held (after any wait).
    pub lock_denials: Counter<u64, AtomicU64>,
    /// Lock requests that waited (`wait_ms`).
    pub lock_waits: Counter<u64, AtomicU64>,
    /// How long granted waiters waited (seconds).
    pub lock_wait_time: Histogram,
    /// Deadlocks detected (requests refused because waiting would close a cycle).
    pub deadlocks: Counter<u64, AtomicU64>,
    /// Locks released by their TTL or their holder's expiry.
    pub lock_expiries: Counter<u64, AtomicU64>,
    /// Denials plus waits of the most contended resources (the top few only).
    pub lock_contention_top:
        Family<Vec<(String, String)>, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// Agents on main by status.
    pub agents_by_status: Family<Vec<(String, String)>, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// Tasks on main by status.
    pub tasks_by_status: Family<Vec<(String, String)>, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// Reloads of the tokens file on SIGHUP, by outcome (`loaded` or `refused`).
    pub token_reloads: Family<Vec<(String, String)>, Counter<u64, AtomicU64>>,
    /// Reads of the live state answered from the copy of the state published with the
    /// last durable group, on the reader's task (`reads_total{path="published"}`).
    pub reads_published: Counter<u64, AtomicU64>,
    /// Reads of the live state that went through the engine's queue (answered once the
    /// engine's state is durable) (`reads_total{path="engine"}`).
    pub reads_engine: Counter<u64, AtomicU64>,
    /// Copies of the engine's state made for reads.
    pub state_publications: Counter<u64, AtomicU64>,
    /// In a cluster: 1 for the node this node sees as the writer (`cluster_writer{node}`).
    pub cluster_writer: Family<Vec<(String, String)>, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// In a cluster: how many events of the shared history this node has not applied yet.
    pub cluster_lag_events: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// In a cluster: times this node took over as the writer from another node (the
    /// first election of a new cluster is not counted).
    pub cluster_failovers: Counter<u64, AtomicU64>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("swarmlog");
        let append_latency = Histogram::new(exponential_buckets(0.000_025, 2.0, 18));
        let fsync_latency = Histogram::new(exponential_buckets(0.000_010, 2.0, 18));
        let batch_events = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        let events = Counter::default();
        let rejections = Counter::default();
        let subscribers = Gauge::default();
        let lagging_subscribers = Gauge::default();
        let subscriber_lag_events = Counter::default();
        let head_seq = Gauge::default();
        registry.register(
            "append_latency_seconds",
            "Time from a write entering the engine queue to its durable answer",
            append_latency.clone(),
        );
        registry.register(
            "fsync_latency_seconds",
            "Time of one group commit: write plus fdatasync",
            fsync_latency.clone(),
        );
        registry.register(
            "batch_events",
            "Events per group commit",
            batch_events.clone(),
        );
        registry.register("events", "Events appended", events.clone());
        registry.register(
            "rejections",
            "Writes refused by the rules",
            rejections.clone(),
        );
        registry.register(
            "subscribers",
            "Connected SSE subscribers",
            subscribers.clone(),
        );
        registry.register(
            "lagging_subscribers",
            "Subscribers behind the live feed: their client does not keep up (buffer full) or they catch up from disk",
            lagging_subscribers.clone(),
        );
        registry.register(
            "subscriber_lags",
            "Times a subscriber fell behind the live feed and was switched to disk",
            subscriber_lag_events.clone(),
        );
        registry.register("head_seq", "The last committed seq", head_seq.clone());
        let lock_acquisitions = Counter::default();
        let lock_denials = Counter::default();
        let lock_waits = Counter::default();
        let lock_wait_time = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        let deadlocks = Counter::default();
        let lock_expiries = Counter::default();
        let lock_contention_top = Family::default();
        let agents_by_status = Family::default();
        let tasks_by_status = Family::default();
        registry.register(
            "lock_acquisitions",
            "Lock grants",
            lock_acquisitions.clone(),
        );
        registry.register(
            "lock_denials",
            "Lock requests refused because the lock was held",
            lock_denials.clone(),
        );
        registry.register(
            "lock_waits",
            "Lock requests that waited",
            lock_waits.clone(),
        );
        registry.register(
            "lock_wait_seconds",
            "How long granted waiters waited",
            lock_wait_time.clone(),
        );
        registry.register(
            "deadlocks_detected",
            "Lock requests refused because waiting would close a cycle",
            deadlocks.clone(),
        );
        registry.register(
            "lock_expiries",
            "Locks released by their TTL or their holder's expiry",
            lock_expiries.clone(),
        );
        registry.register(
            "lock_contention_top",
            "Denials plus waits of the most contended resources",
            lock_contention_top.clone(),
        );
        registry.register(
            "agents",
            "Agents on main by status",
            agents_by_status.clone(),
        );
        registry.register("tasks", "Tasks on main by status", tasks_by_status.clone());
        let token_reloads = Family::default();
        registry.register(
            "token_reloads",
            "Reloads of the tokens file on SIGHUP, by outcome (loaded, refused)",
            token_reloads.clone(),
        );
        let reads: Family<Vec<(String, String)>, Counter<u64, AtomicU64>> = Family::default();
        // A counter of a family shares its value with the family, so the hot path
        // increments these two without looking the labels up.
        let read_path = |path: &str| {
            reads
                .get_or_create(&vec![("path".to_owned(), path.to_owned())])
                .clone()
        };
        let reads_published = read_path("published");
        let reads_engine = read_path("engine");
        registry.register(
            "reads",
            "Reads of the live state, by path: published (the copy of the state published with the last durable group, on the reader's task) or engine (queued behind the writes)",
            reads,
        );
        let state_publications = Counter::default();
        registry.register(
            "state_publications",
            "Copies of the engine's state made for reads",
            state_publications.clone(),
        );
        let cluster_writer = Family::default();
        registry.register(
            "cluster_writer",
            "In a cluster: 1 for the node this node sees as the writer",
            cluster_writer.clone(),
        );
        let cluster_lag_events = Gauge::default();
        registry.register(
            "cluster_lag_events",
            "In a cluster: events of the shared history this node has not applied yet",
            cluster_lag_events.clone(),
        );
        let cluster_failovers = Counter::default();
        registry.register(
            "cluster_failovers",
            "In a cluster: times this node took over as the writer from another node",
            cluster_failovers.clone(),
        );
        Metrics {
            registry,
            append_latency,
            fsync_latency,
            batch_events,
            events,
            rejections,
            subscribers,
            lagging_subscribers,
            subscriber_lag_events,
            head_seq,
            lock_acquisitions,
            lock_denials,
            lock_waits,
            lock_wait_time,
            deadlocks,
            lock_expiries,
            lock_contention_top,
            agents_by_status,
            tasks_by_status,
            token_reloads,
            reads_published,
            reads_engine,
            state_publications,
            cluster_writer,
            cluster_lag_events,
            cluster_failovers,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing into a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
