//! The checks behind the fuzz targets. They live with the log's integration tests
//! (`log/tests/it/fuzz_checks.rs`), so that `cargo test` runs them on every saved input
//! without a fuzzer; see `log/tests/it/fuzz_regressions.rs`.

#[path = "../../log/tests/it/fuzz_checks.rs"]
pub mod fuzz_checks;
