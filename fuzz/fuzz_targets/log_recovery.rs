//! A log of several segments and index files, written by `Log`, perhaps torn by a power
//! loss, then damaged; opened with recovery and checked against `verify` and what was
//! written.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| swarmlog_fuzz::fuzz_checks::log_recovery(data));
