//! The `swarmlog` binary: the server (`swarmlog serve`) and the command-line client in one.
//!
//! Parsing happens in two stages: clap turns arguments into raw flags ([`cli::args`]), then
//! [`cli::config`] validates them into a configuration the commands can trust. Exit codes
//! follow SPEC §5: 0 ok, 1 error, 2 usage, 3 conflict, 4 not found.

mod cli;

/// mimalloc instead of the system allocator: the request path allocates many small,
/// short-lived buffers on several threads, where glibc malloc's arena locks showed up in
/// profiles (benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
