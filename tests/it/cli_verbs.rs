//! The command line's verbs against the API: the write flags every write verb shares
//! (`--fence`, `--idempotency-key`, `--meta`, `--session`, `--correlation`), `--at` on the
//! reads, the `show`/`list` verbs, what `--raw` prints, and ids that need percent-encoding.

use serde_json::Value;

use crate::support::{cli, data_dir};

/// Runs the CLI on `db`; asserts exit 0 and returns stdout.
fn ok(db: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = cli(&[&["--db", db], args].concat());
    assert_eq!(code, 0, "{args:?}: {stderr}");
    stdout
}

/// The whole log of `db` as envelopes.
fn events(db: &str) -> Vec<Value> {
    ok(db, &["--json", "events", "replay"])
        .lines()
        .map(|line| serde_json::from_str(line).expect("NDJSON"))
        .collect()
}

#[test]
fn write_verbs_carry_meta_session_correlation_and_an_idempotency_key() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    let provenance = [
        "--meta",
        r#"{"model":"m1"}"#,
        "--session",
        "s-1",
        "--correlation",
        "c-1",
    ];
    ok(db, &[&["kv", "put", "k", "v"], &provenance[..]].concat());
    ok(
        db,
        &[&["state", "set", "cell", "1"], &provenance[..]].concat(),
    );
    ok(
        db,
        &[&["task", "create", "work", "--id", "t1"], &provenance[..]].concat(),
    );
    ok(
        db,
        &[
            &["finding", "post", "seen", "--agent", "a"],
            &provenance[..],
        ]
        .concat(),
    );
    ok(
        db,
        &[&["events", "append", "note.added", "n/1"], &provenance[..]].concat(),
    );
    let log = events(db);
    assert_eq!(log.len(), 5);
    for event in &log {
        assert_eq!(event["meta"]["model"], "m1", "{event}");
        assert_eq!(event["session"], "s-1", "{event}");
        assert_eq!(event["correlation"], "c-1", "{event}");
    }

    let retry = [
        "--raw",
        "kv",
        "put",
        "once",
        "1",
        "--idempotency-key",
        "key-1",
    ];
    let first = ok(db, &retry);
    let second = ok(db, &retry);
    assert_eq!(first, second, "a retry answers the first write's seq");
    assert_eq!(events(db).len(), 6, "and does not write again");
    let (code, _, stderr) = cli(&[
        "--db",
        db,
        "kv",
        "put",
        "once",
        "2",
        "--idempotency-key",
        "key-1",
    ]);
    assert_eq!(
        code, 1,
        "the same key with another body is refused: {stderr}"
    );
    assert!(stderr.contains("idempotency_key_reused"), "{stderr}");
}

#[test]
fn a_fenced_write_succeeds_only_with_the_current_token() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    let token = ok(
        db,
        &[
            "--raw", "lock", "acquire", "report:1", "--owner", "a", "--ttl-ms", "60000",
        ],
    );
    let token = token.trim();
    assert!(
        token.parse::<u64>().is_ok(),
        "--raw prints the fencing token: {token}"
    );
    let fence = format!("report:1:{token}");
    ok(db, &["state", "set", "report", "v1", "--fence", &fence]);
    let stale = format!("report:1:{}", token.parse::<u64>().expect("token") + 100);
    let head = events(db).len();
    let (code, _, stderr) = cli(&[
        "--db", db, "state", "set", "report", "v2", "--fence", &stale,
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("stale_fence"), "{stderr}");
    assert_eq!(events(db).len(), head, "a refused write writes nothing");
}

#[test]
fn bad_write_flags_are_usage_errors_that_write_nothing() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    ok(db, &["kv", "put", "k", "v"]);
    for (flag, value) in [
        ("--fence", "x"),
        ("--fence", "x:"),
        ("--fence", ":7"),
        ("--fence", "x:minus"),
        ("--meta", "[1]"),
        ("--meta", "{not json"),
        ("--meta", "\"text\""),
    ] {
        let (code, stdout, stderr) = cli(&["--db", db, "kv", "put", "k", "w", flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {stdout}{stderr}");
        assert!(stderr.contains(flag), "the error names the flag: {stderr}");
    }
    assert_eq!(events(db).len(), 1, "nothing was written");
    let (code, _, stderr) = cli(&["--db", db, "message", "inbox", "a", "--follow", "--at", "1"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn reads_take_at_and_the_show_and_list_verbs_exist() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    ok(db, &["state", "set", "cell", "1"]);
    ok(db, &["state", "set", "cell", "2"]);
    assert_eq!(
        ok(db, &["--raw", "state", "get", "cell", "--at", "1"]).trim(),
        "1"
    );
    ok(db, &["kv", "put", "a", "1"]);
    ok(db, &["kv", "put", "b", "1"]);
    assert_eq!(ok(db, &["--raw", "kv", "list", "--at", "3"]), "a\n");
    assert_eq!(
        ok(db, &["--raw", "kv", "get", "a", "--at", "3"]).trim(),
        "1"
    );
    let (code, _, _) = cli(&["--db", db, "kv", "get", "b", "--at", "3"]);
    assert_eq!(code, 4, "b did not exist yet at seq 3");

    let finding = ok(
        db,
        &["--raw", "finding", "post", "disk full", "--agent", "a"],
    );
    let shown = ok(db, &["--json", "finding", "show", finding.trim()]);
    let shown: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["content"], "disk full");
    assert_eq!(
        ok(db, &["--raw", "finding", "show", finding.trim()]).trim(),
        "disk full"
    );

    ok(db, &["agent", "register", "b", "--type", "worker"]);
    let message = ok(
        db,
        &[
            "--raw", "message", "send", "--from", "a", "--to", "b", "ping", "hello",
        ],
    );
    assert_eq!(
        ok(db, &["--raw", "message", "show", message.trim()]).trim(),
        "hello"
    );
    let (code, _, _) = cli(&["--db", db, "message", "show", "no-such-message"]);
    assert_eq!(code, 4);

    ok(
        db,
        &["lock", "acquire", "r", "--owner", "a", "--ttl-ms", "60000"],
    );
    assert_eq!(ok(db, &["--raw", "lock", "show", "r"]), "a\n");
    let head = events(db).len().to_string();
    ok(
        db,
        &[
            "lock",
            "release",
            "r",
            "--owner",
            "a",
            "--fencing-token",
            &head,
        ],
    );
    assert_eq!(ok(db, &["--raw", "lock", "show", "r"]), "", "no holder now");
    assert_eq!(
        ok(db, &["--raw", "lock", "show", "r", "--at", &head]),
        "a\n"
    );

    ok(db, &["session", "start", "investigate", "--id", "s-1"]);
    ok(db, &["session", "start", "deploy", "--id", "s-2"]);
    assert_eq!(ok(db, &["--raw", "session", "list"]), "s-1\ns-2\n");
    let before = (events(db).len() - 1).to_string();
    assert_eq!(
        ok(db, &["--raw", "session", "list", "--at", &before]),
        "s-1\n"
    );
    let (code, _, stderr) = cli(&["--db", db, "task", "list", "--at", "999"]);
    assert_eq!(code, 1, "beyond the head: {stderr}");
}

#[test]
fn raw_prints_one_bare_value_for_writes_and_one_id_per_line_for_lists() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    assert_eq!(
        ok(db, &["--raw", "state", "set", "cell", "\"x\""]).trim(),
        "1"
    );
    assert_eq!(
        ok(db, &["--raw", "state", "set", "cell", "\"y\""]).trim(),
        "2",
        "the version"
    );
    assert_eq!(
        ok(db, &["--raw", "state", "cas", "cell", "2", "\"z\""]).trim(),
        "3"
    );
    assert_eq!(
        ok(db, &["--raw", "state", "get", "cell"]).trim(),
        "z",
        "a read prints the value"
    );
    let tokens = ok(
        db,
        &[
            "--raw", "lock", "acquire", "a", "b", "--owner", "o", "--ttl-ms", "60000",
        ],
    );
    let tokens: Vec<u64> = tokens
        .lines()
        .map(|line| line.parse().expect("a token per resource"))
        .collect();
    assert_eq!(tokens.len(), 2, "one token per resource");
    assert_eq!(ok(db, &["--raw", "lock", "list"]), "a\nb\n");
    assert_eq!(
        ok(
            db,
            &["--raw", "agent", "register", "w1", "--type", "worker"]
        )
        .trim(),
        "w1"
    );
    ok(db, &["agent", "register", "w2", "--type", "worker"]);
    assert_eq!(ok(db, &["--raw", "agent", "list"]), "w1\nw2\n");
    assert_eq!(ok(db, &["--raw", "agent", "show", "w1"]).trim(), "active");
    assert_eq!(
        ok(db, &["--raw", "agent", "deregister", "w2"]).trim(),
        "deregistered"
    );
    assert_eq!(
        ok(db, &["--raw", "task", "create", "t", "--id", "t-1"]).trim(),
        "t-1"
    );
    assert_eq!(ok(db, &["--raw", "task", "list"]), "t-1\n");
    ok(db, &["kv", "put", "k1", "1"]);
    ok(db, &["kv", "put", "k2", "1"]);
    assert_eq!(
        ok(db, &["--raw", "kv", "list", "--prefix", "k"]),
        "k1\nk2\n"
    );
    ok(db, &["branch", "create", "side"]);
    assert_eq!(ok(db, &["--raw", "branch", "list"]), "main\nside\n");
}

#[test]
fn ids_are_percent_encoded_in_paths() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("utf-8 path");
    for key in ["a/b", "with space", "q?x=1&y", "100%", "ü/…#frag"] {
        ok(db, &["kv", "put", key, "1"]);
        assert_eq!(ok(db, &["--raw", "kv", "get", key]).trim(), "1", "{key}");
        ok(db, &["state", "set", key, "2"]);
        assert_eq!(ok(db, &["--raw", "state", "get", key]).trim(), "2", "{key}");
    }
    ok(db, &["task", "create", "t", "--id", "job/1 ?"]);
    assert_eq!(
        ok(db, &["--raw", "task", "show", "job/1 ?"]).trim(),
        "pending"
    );
}
