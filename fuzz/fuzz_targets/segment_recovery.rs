//! One segment of arbitrary bytes (raw, after a valid header, or built from valid frames
//! and damage), opened with recovery and checked against `verify` and `FORMAT.md`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| swarmlog_fuzz::fuzz_checks::segment_recovery(data));
