//! swarmlog's integration tests: one binary, one module per area. Each test starts the
//! real `swarmlog` binary on a fresh data directory on 127.0.0.1 port 0 and talks to it
//! over HTTP, so what is tested is what users run; `engine` drives the engine in-process,
//! as the embedded CLI does, to watch what its commit thread lets through.

mod support;

mod agents;
mod auth;
mod blackboard;
mod cli;
mod cli_db;
mod cli_verbs;
mod consensus;
mod coordination;
mod crash;
mod disk;
mod engine;
mod errors;
mod events;
mod hostile_input;
mod locks;
mod messages;
mod network;
mod openapi;
mod patterns;
mod reads;
mod recipes;
mod sessions;
mod snapshots;
mod sse;
mod streams;
mod tasks;
