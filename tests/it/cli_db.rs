//! The command line in `--db` mode with no server: how it shares a data directory with
//! other processes (the directory lock is held only while a request is processed, waits
//! poll), and what it does with a directory that holds no log.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{binary, cli, cli_in, data_dir};

/// Starts the CLI in the background.
fn spawn(args: &[&str]) -> Child {
    Command::new(binary())
        .args(args)
        .env_remove("SWARMLOG_URL")
        .env_remove("SWARMLOG_DB")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the swarmlog binary starts")
}

/// Waits for a background CLI; returns its output and how long it ran since `started`.
fn finish(child: Child, started: Instant) -> (Output, Duration) {
    let output = child.wait_with_output().expect("the CLI ends");
    (output, started.elapsed())
}

/// Runs the CLI and times it.
fn timed(args: &[&str]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let (code, stdout, stderr) = cli(args);
    (code, stdout, stderr, started.elapsed())
}

#[test]
fn a_waiting_claim_does_not_hold_the_directory_lock() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    assert_eq!(cli(&["--db", db, "kv", "put", "warm", "1"]).0, 0);
    let started = Instant::now();
    let waiter = spawn(&[
        "--db",
        db,
        "--raw",
        "task",
        "claim",
        "--agent",
        "a",
        "--wait-ms",
        "4000",
    ]);
    std::thread::sleep(Duration::from_millis(400));
    let (code, id, stderr, took) = timed(&["--db", db, "--raw", "task", "create", "work"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        took < Duration::from_millis(1500),
        "a create next to a waiting claim answers at once, not after the wait ({took:?})"
    );
    let (output, waited) = finish(waiter, started);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), id.trim());
    assert!(
        waited < Duration::from_millis(3000),
        "the waiter claims soon after the create commits ({waited:?})"
    );
}

#[test]
fn a_claim_that_finds_nothing_within_its_wait_exits_4_after_the_wait() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    assert_eq!(cli(&["--db", db, "kv", "put", "warm", "1"]).0, 0);
    let (code, _, stderr, took) = timed(&[
        "--db",
        db,
        "task",
        "claim",
        "--agent",
        "a",
        "--wait-ms",
        "600",
    ]);
    assert_eq!(code, 4, "{stderr}");
    assert!(took >= Duration::from_millis(600), "it waited ({took:?})");
    assert!(
        took < Duration::from_millis(3000),
        "not much longer ({took:?})"
    );
}

#[test]
fn a_waiting_lock_acquire_does_not_block_other_writes_and_gets_the_lock_on_release() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    let (code, token, stderr) = cli(&[
        "--db", db, "--raw", "lock", "acquire", "r", "--owner", "o1", "--ttl-ms", "60000",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let started = Instant::now();
    let waiter = spawn(&[
        "--db",
        db,
        "--raw",
        "lock",
        "acquire",
        "r",
        "--owner",
        "o2",
        "--ttl-ms",
        "60000",
        "--wait-ms",
        "5000",
    ]);
    std::thread::sleep(Duration::from_millis(400));
    let (code, _, stderr, took) = timed(&["--db", db, "kv", "put", "k", "v"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        took < Duration::from_millis(1500),
        "a kv put next to a waiting acquire answers at once ({took:?})"
    );
    let (code, _, stderr) = cli(&[
        "--db",
        db,
        "lock",
        "release",
        "r",
        "--owner",
        "o1",
        "--fencing-token",
        token.trim(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (output, waited) = finish(waiter, started);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let new_token: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("--raw prints the fencing token");
    assert!(new_token > token.trim().parse::<u64>().expect("a token"));
    assert!(waited < Duration::from_millis(4000), "{waited:?}");
}

#[test]
fn a_waiting_lock_acquire_that_times_out_answers_lock_held() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    let args = ["--db", db, "lock", "acquire", "r", "--ttl-ms", "60000"];
    assert_eq!(cli(&[&args[..], &["--owner", "o1"]].concat()).0, 0);
    let (code, _, stderr, took) =
        timed(&[&args[..], &["--owner", "o2", "--wait-ms", "500"]].concat());
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("lock_held"), "{stderr}");
    assert!(took >= Duration::from_millis(500), "it waited ({took:?})");
}

#[test]
fn a_waiting_lock_acquire_sees_a_ttl_run_out_without_other_commands() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    let args = ["--db", db, "--raw", "lock", "acquire", "r"];
    assert_eq!(
        cli(&[&args[..], &["--owner", "o1", "--ttl-ms", "300"]].concat()).0,
        0
    );
    let (code, stdout, stderr, _) = timed(
        &[
            &args[..],
            &["--owner", "o2", "--ttl-ms", "60000", "--wait-ms", "3000"],
        ]
        .concat(),
    );
    assert_eq!(
        code, 0,
        "the expiry is noticed on a periodic retry: {stderr}"
    );
    assert!(stdout.trim().parse::<u64>().is_ok(), "{stdout}");
}

#[test]
fn a_read_of_a_directory_without_a_log_fails_and_creates_nothing() {
    let work = data_dir();
    let (code, stdout, stderr) = cli_in(work.path(), &["kv", "get", "x"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("no swarmlog data in ./data") && stderr.contains("--db"),
        "the error names the directory: {stderr}"
    );
    assert!(!work.path().join("data").exists(), "nothing was created");
    for read in [
        &["task", "list"][..],
        &["state", "get", "k"],
        &["lock", "list"],
        &["session", "list"],
        &["stats"],
        &["events", "replay"],
        &["verify"],
    ] {
        let (code, _, stderr) = cli_in(work.path(), &[&["--db", "elsewhere"], read].concat());
        assert_eq!(code, 1, "{read:?}: {stderr}");
        assert!(stderr.contains("no swarmlog data in elsewhere"), "{stderr}");
    }
    assert!(
        !work.path().join("elsewhere").exists(),
        "nothing was created"
    );
    let (code, _, stderr) = cli_in(work.path(), &["kv", "put", "x", "1"]);
    assert_eq!(code, 0, "a write creates the directory: {stderr}");
    assert!(work.path().join("data/log").is_dir());
    let (code, stdout, _) = cli_in(work.path(), &["--raw", "kv", "get", "x"]);
    assert_eq!((code, stdout.trim()), (0, "1"));
}
