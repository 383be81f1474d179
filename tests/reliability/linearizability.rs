//! Linearizability of CAS cells and locks across a kill -9.
//!
//! Each history: 16 clients run operations against one state cell and one lock on a fresh
//! server; partway through, the server is killed with SIGKILL and restarted while the
//! clients keep going. Every operation is recorded as called and answered. One cut short by
//! the crash has no answer: it gets an answer of unknown outcome at the end of the history
//! (it may have taken effect or not; taking effect last is indistinguishable from not at
//! all), and its client goes on under a new process id, as in Jepsen's histories. Each
//! object's history is then checked against a sequential specification with todc-utils'
//! Wing–Gong–Lowe checker (linearizability is local, so objects are checked one by one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use todc_utils::linearizability::history::{Action, History};
use todc_utils::linearizability::WGLChecker;
use todc_utils::specifications::Specification;

use crate::count_from_env;
use crate::support::{data_dir, Server};

const CLIENTS: usize = 16;
/// Operations each client completes per history (on one object or the other).
const OPERATIONS_PER_CLIENT: usize = 8;
/// Histories per run; CI runs this many, RELIABILITY.md documents a longer run.
const HISTORIES_DEFAULT: usize = 20;
const CELL: &str = "lin-cell";
const LOCK: &str = "lin-lock";
/// Long enough that no lock expires within a history (restarts give every lock its full
/// TTL again), so expiry is not part of the specification.
const LOCK_TTL_MS: u64 = 120_000;

/// A value a client writes: (client, its operation number), unique in a history.
type Written = (u64, u64);

/// A state cell: its version and value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Cell {
    version: u64,
    value: Option<Written>,
}

/// A cell operation with its outcome (`None`: the answer was lost).
#[derive(Debug, Clone)]
enum CellOp {
    Read(Option<Cell>),
    Cas {
        expected: u64,
        value: Written,
        outcome: Option<CasOutcome>,
    },
}

#[derive(Debug, Clone)]
enum CasOutcome {
    Written { version: u64 },
    Conflict { current: u64 },
}

struct CellSpec;

impl Specification for CellSpec {
    type State = Cell;
    type Operation = CellOp;

    fn init() -> Cell {
        Cell::default()
    }

    fn apply(op: &CellOp, cell: &Cell) -> (bool, Cell) {
        match op {
            CellOp::Read(read) => (read.as_ref().is_none_or(|read| read == cell), cell.clone()),
            CellOp::Cas {
                expected,
                value,
                outcome,
            } => {
                let applies = *expected == cell.version;
                let after = if applies {
                    Cell {
                        version: cell.version + 1,
                        value: Some(*value),
                    }
                } else {
                    cell.clone()
                };
                let valid = match outcome {
                    None => true,
                    Some(CasOutcome::Written { version }) => applies && *version == after.version,
                    Some(CasOutcome::Conflict { current }) => !applies && *current == cell.version,
                };
                if valid {
                    (true, after)
                } else {
                    (false, cell.clone())
                }
            }
        }
    }
}

/// An exclusive lock: its holder with the fencing token of the grant, and the highest
/// token granted so far. A token is the seq of the `lock.acquired` event, so the
/// specification cannot predict it; it checks that each grant's token is above every earlier
/// one and that a re-entrant acquire returns the same token. A grant whose answer was lost
/// holds the lock with a token not known (`None`) until a re-entrant acquire tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Lock {
    holder: Option<(u64, Option<u64>)>,
    highest_token: u64,
}

/// A lock operation by an owner (a client number) with its outcome (`None`: lost).
#[derive(Debug, Clone)]
enum LockOp {
    Acquire {
        owner: u64,
        outcome: Option<Acquired>,
    },
    Release {
        owner: u64,
        token: u64,
        outcome: Option<bool>,
    },
}

#[derive(Debug, Clone)]
enum Acquired {
    Granted { token: u64 },
    Held,
}

struct LockSpec;

impl Specification for LockSpec {
    type State = Lock;
    type Operation = LockOp;

    fn init() -> Lock {
        Lock::default()
    }

    fn apply(op: &LockOp, lock: &Lock) -> (bool, Lock) {
        let refused = (false, lock.clone());
        match op {
            LockOp::Acquire { owner, outcome } => {
                let held_by_other = lock.holder.is_some_and(|(holder, _)| holder != *owner);
                match outcome {
                    Some(Acquired::Held) if held_by_other => (true, lock.clone()),
                    Some(Acquired::Held) => refused,
                    Some(Acquired::Granted { .. }) if held_by_other => refused,
                    Some(Acquired::Granted { token }) => match lock.holder {
                        // Re-entrant: the same grant, so the same token.
                        Some((_, Some(held))) if held != *token => refused,
                        Some((_, Some(_))) => (true, lock.clone()),
                        // A new grant, or a lost one's token learnt now: above every earlier.
                        _ if *token <= lock.highest_token => refused,
                        _ => (
                            true,
                            Lock {
                                holder: Some((*owner, Some(*token))),
                                highest_token: *token,
                            },
                        ),
                    },
                    None if held_by_other || lock.holder.is_some() => (true, lock.clone()),
                    None => (
                        true,
                        Lock {
                            holder: Some((*owner, None)),
                            ..lock.clone()
                        },
                    ),
                }
            }
            LockOp::Release {
                owner,
                token,
                outcome,
            } => {
                let holds = lock.holder == Some((*owner, Some(*token)));
                let after = if holds {
                    Lock {
                        holder: None,
                        ..lock.clone()
                    }
                } else {
                    lock.clone()
                };
                match outcome {
                    None => (true, after),
                    Some(released) if *released == holds => (true, after),
                    Some(_) => refused,
                }
            }
        }
    }
}

/// One recorded step of a history: a call, or its answer, by a process.
enum Step {
    Cell(usize, Action<CellOp>),
    Lock(usize, Action<LockOp>),
}

type Steps = Arc<Mutex<Vec<Step>>>;

/// A history as todc-utils takes it: calls and answers by process, in real-time order.
type Actions<Op> = Vec<(usize, Action<Op>)>;

/// Why a request has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// The connection was refused (the server was down): nothing was sent, nothing happened.
    NotSent,
    /// Sent, but the answer was lost: the operation may or may not have taken effect.
    Unknown,
}

/// Sends a request and reads its JSON answer.
async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Value), Lost> {
    let response = request.send().await.map_err(|error| {
        if error.is_connect() {
            Lost::NotSent
        } else {
            Lost::Unknown
        }
    })?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.map_err(|_| Lost::Unknown)?;
    Ok((status, body))
}

/// The server's address, which changes at each restart.
type Address = Arc<Mutex<String>>;

/// One client: picks the cell or the lock at random, recording each call and answer. A
/// lost answer leaves the operation unanswered and moves the client to a new process id.
async fn client(number: usize, address: Address, steps: Steps) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let owner = number as u64;
    let mut process = number;
    let mut seed = (number as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut random = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let mut held_token: Option<u64> = None;
    let mut completed = 0;
    while completed < OPERATIONS_PER_CLIENT {
        let url = address.lock().expect("not poisoned").clone();
        let cell = |action: Action<CellOp>| Step::Cell(process, action);
        let lock = |action: Action<LockOp>| Step::Lock(process, action);
        let record = |step: Step| steps.lock().expect("not poisoned").push(step);
        let lost = match random(3) {
            0 => {
                record(cell(Action::Call(CellOp::Read(None))));
                match send(http.get(format!("{url}/v1/state/{CELL}"))).await {
                    Err(lost) => Some(lost),
                    Ok((status, body)) => {
                        let read = match status {
                            200 => Cell {
                                version: body["version"].as_u64().expect("a version"),
                                value: serde_json::from_value(body["value"].clone()).ok(),
                            },
                            404 => Cell::default(),
                            other => panic!("read answered {other}: {body}"),
                        };
                        record(cell(Action::Response(CellOp::Read(Some(read)))));
                        None
                    }
                }
            }
            1 => {
                // A compare-and-swap from a version that is often current, sometimes stale.
                let expected = steps
                    .lock()
                    .expect("not poisoned")
                    .iter()
                    .filter(|step| {
                        matches!(
                            step,
                            Step::Cell(
                                _,
                                Action::Response(CellOp::Cas {
                                    outcome: Some(CasOutcome::Written { .. }),
                                    ..
                                })
                            )
                        )
                    })
                    .count() as u64;
                let expected = expected.saturating_sub(random(2));
                let value = (owner, completed as u64);
                let op = |outcome| CellOp::Cas {
                    expected,
                    value,
                    outcome,
                };
                record(cell(Action::Call(op(None))));
                let body = json!({"expected_version": expected, "value": [value.0, value.1]});
                match send(http.post(format!("{url}/v1/state/{CELL}/cas")).json(&body)).await {
                    Err(lost) => Some(lost),
                    Ok((200 | 201, body)) => {
                        let version = body["version"].as_u64().expect("a version");
                        record(cell(Action::Response(op(Some(CasOutcome::Written {
                            version,
                        })))));
                        None
                    }
                    Ok((409, body)) => {
                        let current = body["error"]["current_version"]
                            .as_u64()
                            .expect("current_version");
                        record(cell(Action::Response(op(Some(CasOutcome::Conflict {
                            current,
                        })))));
                        None
                    }
                    Ok((other, body)) => panic!("cas answered {other}: {body}"),
                }
            }
            _ => match held_token {
                Some(token) => {
                    let op = |outcome| LockOp::Release {
                        owner,
                        token,
                        outcome,
                    };
                    record(lock(Action::Call(op(None))));
                    let body = json!({"owner": format!("client-{owner}"), "token": token});
                    match send(
                        http.post(format!("{url}/v1/locks/{LOCK}/release"))
                            .json(&body),
                    )
                    .await
                    {
                        Err(lost) => Some(lost),
                        Ok((status, body)) => {
                            let released = match status {
                                200 => true,
                                409 if body["error"]["code"] == "not_owner" => false,
                                other => panic!("release answered {other}: {body}"),
                            };
                            held_token = None;
                            record(lock(Action::Response(op(Some(released)))));
                            None
                        }
                    }
                }
                None => {
                    let op = |outcome| LockOp::Acquire { owner, outcome };
                    record(lock(Action::Call(op(None))));
                    let body = json!({"owner": format!("client-{owner}"), "ttl_ms": LOCK_TTL_MS, "wait_ms": 0});
                    match send(
                        http.post(format!("{url}/v1/locks/{LOCK}/acquire"))
                            .json(&body),
                    )
                    .await
                    {
                        Err(lost) => Some(lost),
                        Ok((200, body)) => {
                            let token = body["token"].as_u64().expect("a token");
                            held_token = Some(token);
                            record(lock(Action::Response(op(Some(Acquired::Granted {
                                token,
                            })))));
                            None
                        }
                        Ok((409, body)) if body["error"]["code"] == "lock_held" => {
                            record(lock(Action::Response(op(Some(Acquired::Held)))));
                            None
                        }
                        Ok((other, body)) => panic!("acquire answered {other}: {body}"),
                    }
                }
            },
        };
        match lost {
            None => completed += 1,
            Some(Lost::NotSent) => {
                // Never sent: take the call back out of the history, wait for the server.
                {
                    let mut steps = steps.lock().expect("not poisoned");
                    let last_call = steps.iter().rposition(|step| match step {
                        Step::Cell(owner, Action::Call(_)) | Step::Lock(owner, Action::Call(_)) => {
                            *owner == process
                        }
                        _ => false,
                    });
                    steps.remove(last_call.expect("the call just recorded"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some(Lost::Unknown) => {
                // The answer is lost: the operation stays unanswered, and this client goes
                // on as a new process. It may hold the lock without knowing the token;
                // acquiring again (re-entrant) tells it.
                process += CLIENTS;
                held_token = None;
            }
        }
    }
}

/// Splits the recorded steps by object. A call left unanswered by the crash gets an answer
/// of unknown outcome at the end of the history, except a read, which changes nothing and
/// is left out.
fn histories(steps: Vec<Step>) -> (Actions<CellOp>, Actions<LockOp>) {
    let (mut cell, mut lock) = (Vec::new(), Vec::new());
    let mut open_cell = std::collections::BTreeMap::new();
    let mut open_lock = std::collections::BTreeMap::new();
    for step in steps {
        match step {
            Step::Cell(process, Action::Call(op)) => {
                open_cell.insert(process, (cell.len(), op.clone()));
                cell.push((process, Action::Call(op)));
            }
            Step::Cell(process, response) => {
                open_cell.remove(&process);
                cell.push((process, response));
            }
            Step::Lock(process, Action::Call(op)) => {
                open_lock.insert(process, op.clone());
                lock.push((process, Action::Call(op)));
            }
            Step::Lock(process, response) => {
                open_lock.remove(&process);
                lock.push((process, response));
            }
        }
    }
    let mut unanswered_reads = Vec::new();
    for (process, (index, op)) in open_cell {
        match op {
            CellOp::Read(_) => unanswered_reads.push(index),
            op => cell.push((process, Action::Response(op))),
        }
    }
    unanswered_reads.sort_unstable();
    for index in unanswered_reads.into_iter().rev() {
        cell.remove(index);
    }
    lock.extend(
        open_lock
            .into_iter()
            .map(|(process, op)| (process, Action::Response(op))),
    );
    (cell, lock)
}

/// What one history held.
#[derive(Default)]
struct Counts {
    cell: usize,
    lock: usize,
    unanswered: usize,
}

/// Runs one history and checks it.
async fn run_history(number: usize) -> Counts {
    let dir = data_dir();
    let mut server = Server::start(dir.path(), &[]).await;
    let address: Address = Arc::new(Mutex::new(server.url.clone()));
    let steps: Steps = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|number| tokio::spawn(client(number, address.clone(), steps.clone())))
        .collect();
    // Kill the server once about a third of the operations are done, wherever they are.
    let third = 2 * CLIENTS * OPERATIONS_PER_CLIENT / 3 + number % 7;
    while steps.lock().expect("not poisoned").len() < third
        && !clients.iter().all(|client| client.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill9();
    let server = Server::start(dir.path(), &[]).await;
    *address.lock().expect("not poisoned") = server.url.clone();
    for client in clients {
        client.await.expect("a client does not panic");
    }
    drop(server);

    let steps = std::mem::take(&mut *steps.lock().expect("not poisoned"));
    let unanswered = steps
        .iter()
        .map(|step| match step {
            Step::Cell(_, Action::Call(_)) | Step::Lock(_, Action::Call(_)) => 1,
            _ => -1,
        })
        .sum::<i64>();
    let (cell, lock) = histories(steps);
    let counts = Counts {
        cell: cell.len() / 2,
        lock: lock.len() / 2,
        unanswered: usize::try_from(unanswered).expect("every answer follows its call"),
    };
    let described = format!("{cell:?}");
    assert!(
        WGLChecker::<CellSpec>::is_linearizable(History::from_actions(cell)),
        "history {number}: the cell's history is not linearizable: {described}"
    );
    let described = format!("{lock:?}");
    assert!(
        WGLChecker::<LockSpec>::is_linearizable(History::from_actions(lock)),
        "history {number}: the lock's history is not linearizable: {described}"
    );
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_and_lock_histories_across_a_kill_9_are_linearizable() {
    let histories = count_from_env("SWARMLOG_LIN_HISTORIES", HISTORIES_DEFAULT);
    let mut total = Counts::default();
    for number in 0..histories {
        let counts = run_history(number).await;
        total.cell += counts.cell;
        total.lock += counts.lock;
        total.unanswered += counts.unanswered;
    }
    eprintln!(
        "linearizability: {histories} histories of {CLIENTS} clients across a kill -9: {} CAS-cell \
         and {} lock operations ({} answers lost in the crash), all linearizable",
        total.cell, total.lock, total.unanswered
    );
}

/// The checker with these specifications must refuse what a broken server would answer, or
/// the test above could not fail.
#[test]
fn the_checker_refuses_lost_updates_stale_reads_and_double_grants() {
    use Action::{Call, Response};
    let cas = |expected, value, outcome| CellOp::Cas {
        expected,
        value,
        outcome,
    };
    let written = |version| Some(CasOutcome::Written { version });
    let read = |version, value| CellOp::Read(Some(Cell { version, value }));
    let linearizable = |actions: Actions<CellOp>| {
        WGLChecker::<CellSpec>::is_linearizable(History::from_actions(actions))
    };
    // Two writes from version 0 both succeeding: a lost update.
    assert!(!linearizable(vec![
        (0, Call(cas(0, (0, 0), None))),
        (1, Call(cas(0, (1, 0), None))),
        (0, Response(cas(0, (0, 0), written(1)))),
        (1, Response(cas(0, (1, 0), written(1)))),
    ]));
    // A read that starts after a write finished and does not see it: a stale read.
    assert!(!linearizable(vec![
        (0, Call(cas(0, (0, 0), None))),
        (0, Response(cas(0, (0, 0), written(1)))),
        (1, Call(CellOp::Read(None))),
        (1, Response(read(0, None))),
    ]));
    // The same read concurrent with the write may see either.
    assert!(linearizable(vec![
        (0, Call(cas(0, (0, 0), None))),
        (1, Call(CellOp::Read(None))),
        (1, Response(read(0, None))),
        (0, Response(cas(0, (0, 0), written(1)))),
    ]));
    // A write whose answer was lost may have happened or not, but not twice.
    assert!(linearizable(vec![
        (0, Call(cas(0, (0, 0), None))),
        (1, Call(CellOp::Read(None))),
        (1, Response(read(1, Some((0, 0))))),
        (0, Response(cas(0, (0, 0), None))),
    ]));

    let acquire = |owner, outcome| LockOp::Acquire { owner, outcome };
    let granted = |token| Some(Acquired::Granted { token });
    let lock_linearizable = |actions: Actions<LockOp>| {
        WGLChecker::<LockSpec>::is_linearizable(History::from_actions(actions))
    };
    // Two owners granted one after the other with no release: two holders at once.
    assert!(!lock_linearizable(vec![
        (0, Call(acquire(0, None))),
        (0, Response(acquire(0, granted(5)))),
        (1, Call(acquire(1, None))),
        (1, Response(acquire(1, granted(9)))),
    ]));
    // A grant after a release with a smaller token: fencing tokens must increase.
    let release = |owner, token, outcome| LockOp::Release {
        owner,
        token,
        outcome,
    };
    assert!(!lock_linearizable(vec![
        (0, Call(acquire(0, None))),
        (0, Response(acquire(0, granted(5)))),
        (0, Call(release(0, 5, None))),
        (0, Response(release(0, 5, Some(true)))),
        (1, Call(acquire(1, None))),
        (1, Response(acquire(1, granted(4)))),
    ]));
    assert!(lock_linearizable(vec![
        (0, Call(acquire(0, None))),
        (0, Response(acquire(0, granted(5)))),
        (0, Call(release(0, 5, None))),
        (0, Response(release(0, 5, Some(true)))),
        (1, Call(acquire(1, None))),
        (1, Response(acquire(1, granted(7)))),
    ]));
}
