//! The coordination patterns of `examples/` (issue 4), run as written with the binary
//! under test and no server: each script must succeed, print its outcome, and leave the
//! state the pattern promises in its data directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{binary, cli, data_dir};

/// Runs `examples/NAME` on `db`; returns its stdout, asserting it succeeded.
fn run(name: &str, db: &Path) -> String {
    let script: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let output = Command::new("bash")
        .arg(script)
        .env("SWARMLOG", binary())
        .env("SWARMLOG_DB", db)
        .env_remove("SWARMLOG_URL")
        .output()
        .expect("bash runs the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{name} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// `swarmlog --db DB --json ARGS...` parsed.
fn json_of(db: &Path, args: &[&str]) -> Value {
    let db = db.to_str().expect("a UTF-8 path");
    let mut full = vec!["--db", db, "--json"];
    full.extend_from_slice(args);
    let (code, stdout, stderr) = cli(&full);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(stdout.trim()).expect("--json prints one JSON object")
}

fn line_with<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with '{prefix}' in:\n{stdout}"))
}

fn statuses(db: &Path, args: &[&str]) -> Vec<(String, String)> {
    let mut full = vec!["task", "list"];
    full.extend_from_slice(args);
    json_of(db, &full)["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|task| {
            (
                task["id"].as_str().expect("id").to_owned(),
                task["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_coordinator_runs_research_write_edit_in_dependency_order() {
    let dir = data_dir();
    let stdout = run("coordinator_chain.sh", dir.path());
    assert_eq!(
        line_with(&stdout, "final: "),
        "edit(write(notes on event sourcing))"
    );
    let research = json_of(dir.path(), &["task", "show", "research"]);
    let write = json_of(dir.path(), &["task", "show", "write"]);
    let edit = json_of(dir.path(), &["task", "show", "edit"]);
    assert!(research["finished_at"].as_str() <= write["claimed_at"].as_str());
    assert!(write["finished_at"].as_str() <= edit["claimed_at"].as_str());
    let report = json_of(dir.path(), &["session", "report", "S-1"]);
    assert_eq!(report["summary"]["completed_tasks"], json!(3));
    assert_eq!(report["summary"]["agents_used"], json!(3));
    assert_eq!(
        json_of(dir.path(), &["session", "show", "S-1"])["status"],
        json!("completed")
    );
}

#[test]
fn map_reduce_counts_every_chunk_once() {
    let dir = data_dir();
    let stdout = run("map_reduce.sh", dir.path());
    assert_eq!(line_with(&stdout, "total words: "), "27");
    let mapped = stdout
        .lines()
        .filter(|line| line.contains(" mapped map-"))
        .count();
    assert_eq!(mapped, 6, "each map task ran exactly once:\n{stdout}");
    let reduce = json_of(dir.path(), &["task", "show", "reduce"]);
    assert_eq!(
        (reduce["status"].clone(), reduce["result"].clone()),
        (json!("completed"), json!(27))
    );
}

#[test]
fn the_pipeline_moves_every_item_through_every_stage() {
    let dir = data_dir();
    let stdout = run("pipeline.sh", dir.path());
    assert_eq!(line_with(&stdout, "loaded "), "4 records");
    assert_eq!(line_with(&stdout, "first record: "), "RECORD-1");
    let all = statuses(dir.path(), &[]);
    assert_eq!(all.len(), 12);
    assert!(
        all.iter().all(|(_, status)| status == "completed"),
        "{all:?}"
    );
    let db = dir.path().to_str().expect("path");
    let (_, value, _) = cli(&["--db", db, "--raw", "kv", "get", "loaded:4"]);
    assert_eq!(value.trim(), "RECORD-4");
}

#[test]
fn scatter_gather_keeps_the_first_valid_answer_only() {
    let dir = data_dir();
    let stdout = run("scatter_gather.sh", dir.path());
    let winner = line_with(&stdout, "winner: ");
    let (agent, answer) = winner.split_once(" answer: ").expect("winner line");
    assert_eq!(answer, "42");
    assert_ne!(agent, "solver-1", "the fast invalid answer never wins");
    assert_eq!(line_with(&stdout, "gatherer heard: "), "42");
    let tasks = json_of(dir.path(), &["task", "list"]);
    let tasks = tasks["tasks"].as_array().expect("tasks");
    let by = |agent: &str| {
        tasks
            .iter()
            .find(|task| task["agent"] == json!(agent))
            .unwrap_or_else(|| panic!("no task of {agent}: {tasks:?}"))
    };
    assert_eq!(by(agent)["status"], json!("completed"));
    assert_eq!(by(agent)["result"], json!(42));
    assert_eq!(
        by("solver-1")["status"],
        json!("failed"),
        "the invalid answer failed its task"
    );
    assert!(tasks.iter().all(|task| ["completed", "failed", "cancelled"]
        .contains(&task["status"].as_str().expect("status"))));
    let (_, answer, _) = cli(&[
        "--db",
        dir.path().to_str().expect("path"),
        "--raw",
        "state",
        "get",
        "answer",
    ]);
    assert_eq!(answer.trim(), format!("{agent}:42"));
}

#[test]
fn the_investigation_votes_the_rollback_through() {
    let dir = data_dir();
    let stdout = run("investigation.sh", dir.path());
    assert_eq!(
        line_with(&stdout, "top hypothesis: "),
        "database connection pool exhaustion from v1.2.3"
    );
    assert_eq!(line_with(&stdout, "decision: "), "approved");
    let findings = json_of(dir.path(), &["finding", "list", "--session", "INC-1234"]);
    assert_eq!(findings["findings"].as_array().map(Vec::len), Some(3));
    let proposal = json_of(dir.path(), &["proposal", "show", "P-1"]);
    assert_eq!(
        (
            proposal["votes_for"].clone(),
            proposal["abstentions"].clone()
        ),
        (json!(2), json!(1))
    );
    let rollback = json_of(dir.path(), &["task", "show", "rollback-v1.2.3"]);
    assert_eq!(rollback["status"], json!("awaiting_approval"));
    assert_eq!(
        json_of(dir.path(), &["session", "show", "INC-1234"])["status"],
        json!("completed")
    );
}

#[test]
fn the_auction_goes_to_the_best_score() {
    let dir = data_dir();
    let stdout = run("auction.sh", dir.path());
    assert_eq!(line_with(&stdout, "winner: "), "balanced");
    let task = json_of(dir.path(), &["task", "show", "translate-manual"]);
    assert_eq!(task["status"], json!("completed"));
    assert_eq!(task["auction"]["winner"], json!("balanced"));
    assert_eq!(task["auction"]["bids"].as_array().map(Vec::len), Some(4));
}

#[test]
fn task_claim_exits_4_when_there_is_nothing_to_claim() {
    let dir = data_dir();
    let db = dir.path().to_str().expect("path");
    let (code, stdout, stderr) = cli(&["--db", db, "--raw", "task", "claim", "--agent", "idle"]);
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(stdout, "", "nothing on stdout, so `id=$(...)` stays empty");
    assert!(stderr.contains("no task"), "{stderr}");
    let (code, stdout, _) = cli(&["--db", db, "--raw", "task", "create", "work", "--id", "w-1"]);
    assert_eq!((code, stdout.trim()), (0, "w-1"));
    let (code, stdout, _) = cli(&["--db", db, "--raw", "task", "claim", "--agent", "idle"]);
    assert_eq!((code, stdout.trim()), (0, "w-1"));
    let (code, stdout, _) = cli(&[
        "--db", db, "--raw", "task", "complete", "w-1", "--agent", "other",
    ]);
    assert_eq!(
        (code, stdout.as_str()),
        (3, ""),
        "not the claimant: a conflict"
    );
    let (code, _, _) = cli(&["--db", db, "task", "show", "nope"]);
    assert_eq!(code, 4);
    let (code, _, stderr) = cli(&["--db", db, "hypothesis", "validate", "h", "maybe"]);
    assert_eq!(code, 2, "{stderr}");
}
