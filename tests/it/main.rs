//! swarmlog's integration tests: one binary, one module per area. Each test starts the
//! real `swarmlog` binary on a fresh data directory on 127.0.0.1 port 0 and talks to it
//! over HTTP, so what is tested is what users run.

mod support;

mod cli;
mod crash;
mod errors;
mod events;
mod snapshots;
mod sse;
