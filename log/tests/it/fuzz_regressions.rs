//! The fuzz targets' checks (`fuzz_checks.rs`) on saved inputs: the seeds, and every input
//! under `fuzz/regressions/<target>/`, where each crash a fuzzer found is kept once it is
//! fixed. So `cargo test` keeps them fixed without a fuzzer or a nightly toolchain.
//!
//! `SWARMLOG_WRITE_FUZZ_SEEDS=1 cargo test -p swarmlog-log --test it fuzz_regressions`
//! also writes the seeds to `fuzz/corpus/<target>/` (not checked in), where `cargo fuzz run`
//! starts from them.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::fuzz_checks::{log_recovery, seeds, segment_recovery};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the log crate sits in the workspace")
        .join("fuzz")
}

/// Runs `check` on every input of `target`, naming the input that fails.
fn run(target: &str, check: fn(&[u8])) {
    let mut inputs: Vec<(String, Vec<u8>)> = seeds()
        .into_iter()
        .filter(|(seed_target, _, _)| *seed_target == target)
        .map(|(_, name, bytes)| (format!("seed {name}"), bytes))
        .collect();
    assert!(!inputs.is_empty(), "{target} has seeds");
    let regressions = fuzz_dir().join("regressions").join(target);
    if let Ok(entries) = std::fs::read_dir(&regressions) {
        let mut paths: Vec<PathBuf> = entries
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).expect("read a saved input");
            inputs.push((path.display().to_string(), bytes));
        }
    }
    if std::env::var_os("SWARMLOG_WRITE_FUZZ_SEEDS").is_some() {
        let corpus = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&corpus).expect("create the corpus directory");
        for (name, bytes) in &inputs {
            if let Some(seed) = name.strip_prefix("seed ") {
                std::fs::write(corpus.join(format!("seed-{seed}")), bytes).expect("write a seed");
            }
        }
    }
    for (name, bytes) in inputs {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&bytes))) {
            eprintln!("{target} fails on {name}");
            resume_unwind(panic);
        }
    }
}

#[test]
fn segment_recovery_inputs_pass() {
    run("segment_recovery", segment_recovery);
}

#[test]
fn log_recovery_inputs_pass() {
    run("log_recovery", log_recovery);
}
