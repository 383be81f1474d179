//! The command line: in-process on `--db`, through a server serving the directory, output
//! modes and exit codes.

use serde_json::Value;

use crate::support::{cli, data_dir, Server};

#[tokio::test]
async fn events_append_and_replay_in_process_with_exit_codes() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    let (code, stdout, stderr) = cli(&[
        "--db",
        db,
        "--raw",
        "events",
        "append",
        "note.added",
        "notes/1",
        "{\"text\":\"hi\"}",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "1", "--raw prints the bare seq");
    let (code, stdout, _) = cli(&[
        "--db",
        db,
        "--raw",
        "events",
        "append",
        "note.added",
        "notes/1",
        "plain words",
        "--expected-version",
        "1",
    ]);
    assert_eq!((code, stdout.trim()), (0, "2"));
    let (code, _, stderr) = cli(&[
        "--db",
        db,
        "events",
        "append",
        "note.added",
        "notes/1",
        "x",
        "--expected-version",
        "1",
    ]);
    assert_eq!(code, 3, "a version conflict exits 3: {stderr}");
    assert!(stderr.contains("version_conflict"), "{stderr}");
    let (code, _, stderr) = cli(&["--db", db, "events", "append", "task.created", "t", "x"]);
    assert_eq!(code, 1, "a reserved type exits 1: {stderr}");
    let (code, _, _) = cli(&[
        "--db", db, "--branch", "ghost", "events", "append", "a.b", "t",
    ]);
    assert_eq!(code, 4, "an unknown branch exits 4");
    let (code, _, _) = cli(&["--db", db, "events", "frobnicate"]);
    assert_eq!(code, 2, "a usage error exits 2");

    let (code, stdout, _) = cli(&["--db", db, "--json", "events", "replay"]);
    assert_eq!(code, 0);
    let events: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("NDJSON"))
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["data"]["text"], "hi");
    assert_eq!(
        events[1]["data"], "plain words",
        "a value that is not JSON is taken as a string"
    );

    let (code, stdout, stderr) = cli(&["--db", db, "--json", "verify"]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).expect("verify --json prints JSON");
    assert_eq!(report["records"], 2);
    assert_eq!(
        report["head_hash"], events[1]["hash"],
        "verify recomputes the chain up to the head hash"
    );
}

#[tokio::test]
async fn the_cli_goes_through_the_server_serving_the_directory() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let db = dir.path().to_str().expect("utf-8 path");
    let (code, stdout, stderr) = cli(&["--db", db, "--raw", "events", "append", "a.b", "s", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "1");
    assert_eq!(
        server.head().await,
        1,
        "the write went through the running server"
    );
    let (code, stdout, _) = cli(&["--db", db, "--json", "stats"]);
    assert_eq!(code, 0);
    let stats: Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(stats["head"], 1);
    assert_eq!(stats["through_server"], true);
    assert_eq!(stats.get("cluster"), None, "a lone server is in no cluster");
    let (_, health) = server.get("/healthz").await;
    assert_eq!(health.get("cluster"), None, "{health}");
}

#[tokio::test]
async fn serve_logs_to_a_file_carry_no_colour_codes() {
    let dir = data_dir();
    let log_path = dir.path().join("serve.log");
    let log_file = std::fs::File::create(&log_path).expect("a log file");
    let mut child = std::process::Command::new(crate::support::binary())
        .arg("--db")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SWARMLOG_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("serve starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&log_path).is_ok_and(|text| text.contains("serving")) {
        assert!(std::time::Instant::now() < deadline, "serve logged nothing");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).expect("the log");
    assert!(text.contains("INFO"), "{text}");
    assert!(
        !text.contains("\x1b["),
        "no ANSI escapes in a log file: {text:?}"
    );
}

/// `serve`'s caps refuse values outside their range with exit 2 and the range, before
/// anything is opened.
#[test]
fn serve_refuses_caps_outside_their_range() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("a UTF-8 temporary path");
    for (flag, value) in [
        ("--max-subscribers", "0"),
        ("--max-subscribers", "1000001"),
        ("--max-connections", "0"),
    ] {
        let (code, _, stderr) = cli(&["--db", db, "serve", flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{flag} must be between 1 and 1000000, not {value}"
            )),
            "{stderr}"
        );
    }
    assert!(
        !dir.path().join("log").exists(),
        "a refused serve opens nothing"
    );
}

#[test]
fn serve_and_verify_refuse_malformed_cluster_flags() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("a UTF-8 temporary path");
    let refusals: [(&[&str], &str); 8] = [
        (
            &["serve", "--store", "foo"],
            "--store must be nats://HOST:PORT[,HOST:PORT...], and 'foo'",
        ),
        (
            &["serve", "--store", "nats://a"],
            "'nats://a' is not a NATS server's HOST:PORT",
        ),
        (
            &["serve", "--store", "nats://a:1,http://b:2"],
            "'http://b:2'",
        ),
        (&["serve", "--store", "nats://a:1,b:x"], "'b:x'"),
        (
            &[
                "serve",
                "--store",
                "nats://a:1",
                "--nats-stream",
                "two words",
            ],
            "--nats-stream must be 1 to 32 letters",
        ),
        (
            &["serve", "--store", "nats://a:1", "--nats-replicas", "0"],
            "--nats-replicas must be between 1 and 5, not 0",
        ),
        (
            &["serve", "--store", "nats://a:1", "--lease-ms", "999"],
            "--lease-ms must be between 1000 and 60000, not 999",
        ),
        (
            &["verify", "--store", "a:1"],
            "'a:1' is not a NATS server's HOST:PORT",
        ),
    ];
    for (args, sentence) in refusals {
        let mut full = vec!["--db", db];
        full.extend_from_slice(args);
        let (code, _, stderr) = cli(&full);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(sentence), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = cli(&[
        "--db",
        db,
        "serve",
        "--store",
        "nats://a:1",
        "--advertise",
        "a:1",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--advertise must be an http:// or https:// URL"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("log").exists(),
        "a refused serve opens nothing"
    );
}
