//! The log's integration tests, compiled as one binary; each module says what belongs in it.
//!
//! Unit tests of single modules (encoding, index, scan rules, recovery cases) live next to
//! the code. Here are the tests that drive a whole `Log` through its public API: simulated
//! power loss, injected I/O errors, a model-based property test, exhaustive corruption, concurrent readers, the
//! real file system, and the fuzz targets' checks on their saved inputs.

mod common;
mod concurrency;
mod corruption;
mod fixtures;
mod fs;
mod fuzz_checks;
mod fuzz_regressions;
mod io_errors;
mod model;
mod power_loss;
