//! The shell recipes of SPEC §5 in `examples/`, run as written by 8 concurrent processes on
//! one data directory with no server (issue 3): every task number claimed exactly once,
//! exactly one leader, and every branch reads its own result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{binary, cli, data_dir};

const AGENTS: usize = 8;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// Starts `examples/NAME ARGS...` with the binary under test and `db` as the data directory.
fn spawn(name: &str, args: &[&str], db: &Path) -> Child {
    Command::new("bash")
        .arg(example(name))
        .args(args)
        .env("SWARMLOG", binary())
        .env("SWARMLOG_DB", db)
        .env_remove("SWARMLOG_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs the example")
}

/// Waits for a recipe process; returns its stdout lines, asserting it succeeded.
fn finish(child: Child, what: &str) -> Vec<String> {
    let output = child.wait_with_output().expect("the example finishes");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{what} failed: {stderr}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn cas_task_claiming_hands_out_every_task_exactly_once() {
    const TASKS: usize = 24;
    let dir = data_dir();
    let agents: Vec<Child> = (0..AGENTS)
        .map(|index| {
            spawn(
                "claim_tasks.sh",
                &[&format!("agent-{index}"), &TASKS.to_string()],
                dir.path(),
            )
        })
        .collect();
    let mut claims: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (index, agent) in agents.into_iter().enumerate() {
        for line in finish(agent, &format!("agent-{index}")) {
            let (agent_id, task) = line
                .split_once(" claimed task ")
                .unwrap_or_else(|| panic!("unexpected output line: {line}"));
            claims
                .entry(task.parse().expect("a task number"))
                .or_default()
                .push(agent_id.to_owned());
        }
    }
    assert_eq!(
        claims.keys().copied().collect::<Vec<_>>(),
        (0..TASKS).collect::<Vec<_>>(),
        "every task number was claimed"
    );
    for (task, owners) in &claims {
        assert_eq!(owners.len(), 1, "task {task} was claimed by {owners:?}");
        let db = dir.path().to_str().expect("utf-8 path");
        let (code, owner, _) = cli(&[
            "--db",
            db,
            "--raw",
            "kv",
            "get",
            &format!("task:{task}:owner"),
        ]);
        assert_eq!(
            (code, owner.trim()),
            (0, owners[0].as_str()),
            "the owner recorded for task {task}"
        );
    }
    let db = dir.path().to_str().expect("utf-8 path");
    let (_, next, _) = cli(&["--db", db, "--raw", "state", "get", "task:next"]);
    assert_eq!(next.trim(), TASKS.to_string());
}

#[test]
fn leader_election_elects_exactly_one_leader() {
    let dir = data_dir();
    let candidates: Vec<Child> = (0..AGENTS)
        .map(|index| {
            spawn(
                "leader_election.sh",
                &[&format!("agent-{index}")],
                dir.path(),
            )
        })
        .collect();
    let lines: Vec<String> = candidates
        .into_iter()
        .enumerate()
        .flat_map(|(index, child)| finish(child, &format!("agent-{index}")))
        .collect();
    assert_eq!(lines.len(), AGENTS, "{lines:?}");
    let leaders: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.strip_suffix(" is now the leader"))
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader: {lines:?}");
    let leader = leaders[0];
    let followers = lines
        .iter()
        .filter(|line| line.ends_with(&format!("is not the leader (current: {leader})")))
        .count();
    assert_eq!(
        followers,
        AGENTS - 1,
        "everyone else knows the leader: {lines:?}"
    );
    let db = dir.path().to_str().expect("utf-8 path");
    let (_, stored, _) = cli(&["--db", db, "--raw", "state", "get", "leader"]);
    assert_eq!(stored.trim(), leader);
}

#[test]
fn per_agent_branches_each_read_their_own_result() {
    let dir = data_dir();
    let workers: Vec<Child> = (0..AGENTS)
        .map(|index| {
            spawn(
                "branch_per_agent.sh",
                &["work", &index.to_string()],
                dir.path(),
            )
        })
        .collect();
    for (index, worker) in workers.into_iter().enumerate() {
        finish(worker, &format!("worker {index}"));
    }
    let lines = finish(
        spawn(
            "branch_per_agent.sh",
            &["aggregate", &AGENTS.to_string()],
            dir.path(),
        ),
        "aggregate",
    );
    let expected: Vec<String> = (0..AGENTS)
        .map(|index| format!("Agent {index}: Agent {index} result (done)"))
        .collect();
    assert_eq!(lines, expected);
    let db = dir.path().to_str().expect("utf-8 path");
    let (code, _, _) = cli(&["--db", db, "kv", "get", "result"]);
    assert_eq!(code, 4, "main never saw any branch's result");
}
