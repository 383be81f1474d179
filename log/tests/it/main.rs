//! The log's integration tests, compiled as one binary; each module says what belongs in it.
//!
//! Unit tests of single modules (encoding, index, scan rules, recovery cases) live next to
//! the code. Here are the tests that drive a whole `Log` through its public API: simulated
//! power loss, a model-based property test, exhaustive corruption, concurrent readers, and
//! the real file system.

mod common;
mod concurrency;
mod corruption;
mod fixtures;
mod fs;
mod model;
mod power_loss;
