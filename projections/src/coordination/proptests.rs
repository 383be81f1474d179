//! Property test of the whole domain: for random command sequences (cells, kv, locks with
//! TTL expiry, agents with lease expiry and kills, branches forked at the head and in the
//! past), the state built live equals the state rebuilt by replaying the log from seq 1,
//! and equals a snapshot (the state in postcard, as snapshot files hold it) taken live at a
//! random point plus the log's tail.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::coordination::branches::{ForkPoint, Replayer};
use crate::coordination::testing::Harness;
use crate::coordination::{CoordinationCommand as C, LockMode};
use crate::state::State;

const BRANCHES: &[&str] = &["main", "b1", "b2", "b3"];
const KEYS: &[&str] = &["k1", "k2", "k3"];
const RESOURCES: &[&str] = &["r1", "r2", "r3"];
const OWNERS: &[&str] = &["a1", "a2", "a3"];

/// One step of a scenario. Indexes pick from the fixed name lists above, so that commands
/// collide often.
#[derive(Debug, Clone)]
enum Step {
    /// Let time pass, and run the timers (`true`) or not yet, so that commands meet
    /// holders and leases whose time has passed but whose expiry is not written yet.
    Advance(i64, bool),
    Command {
        branch: usize,
        command: Command,
    },
}

#[derive(Debug, Clone)]
enum Command {
    Set(usize, Value),
    Init(usize, Value),
    Cas(usize, Option<u64>, Value),
    KvPut(usize, Value),
    KvDelete(usize),
    Acquire(Vec<usize>, usize, u64, bool),
    /// Renew or release a hold: the `n`th hold on the branch (modulo their number) with
    /// its real owner and token (`true`), or a guessed resource, owner and token.
    Renew(usize, bool, u64),
    Release(usize, bool),
    Register(usize, Option<u64>, bool),
    Kill(usize),
    Deregister(usize),
    /// Fork `BRANCHES[name]` from `BRANCHES[from]`, `back` events before the head.
    CreateBranch(usize, usize, Option<u64>),
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..100).prop_map(Value::from),
        "[a-z]{0,3}".prop_map(Value::from),
        Just(Value::Null),
        (0i64..10, "[a-z]{1,2}").prop_map(|(n, s)| json!({"n": n, "s": [s]})),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let key = 0..KEYS.len();
    let resource = 0..RESOURCES.len();
    let owner = 0..OWNERS.len();
    prop_oneof![
        1 => (key.clone(), value()).prop_map(|(k, v)| Command::Set(k, v)),
        1 => (key.clone(), value()).prop_map(|(k, v)| Command::Init(k, v)),
        1 => (key.clone(), proptest::option::of(0u64..4), value()).prop_map(|(k, e, v)| Command::Cas(k, e, v)),
        1 => (key.clone(), value()).prop_map(|(k, v)| Command::KvPut(k, v)),
        1 => key.prop_map(Command::KvDelete),
        4 => (proptest::collection::vec(resource, 1..3), owner.clone(), 100u64..8000, any::<bool>())
            .prop_map(|(r, o, t, s)| Command::Acquire(r, o, t, s)),
        2 => (0usize..8, any::<bool>(), 100u64..8000).prop_map(|(n, real, t)| Command::Renew(n, real, t)),
        2 => (0usize..8, any::<bool>()).prop_map(|(n, real)| Command::Release(n, real)),
        1 => (owner.clone(), proptest::option::of(100u64..4000), any::<bool>()).prop_map(|(o, t, admin)| Command::Register(o, t, admin)),
        1 => owner.clone().prop_map(Command::Kill),
        1 => owner.prop_map(Command::Deregister),
        2 => (1..BRANCHES.len(), branch(), proptest::option::of(0u64..6)).prop_map(|(n, f, b)| Command::CreateBranch(n, f, b)),
    ]
}

/// A branch index, `main` half of the time.
fn branch() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0), 0..BRANCHES.len()]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0i64..2500, any::<bool>()).prop_map(|(ms, timers)| Step::Advance(ms, timers)),
        4 => (branch(), command()).prop_map(|(branch, command)| Step::Command { branch, command }),
    ]
}

fn to_command(harness: &Harness, branch: &str, command: Command) -> C {
    let holds: Vec<(String, String, u64)> = harness
        .state
        .branch(branch)
        .into_iter()
        .flat_map(|state| &state.coordination.locks)
        .flat_map(|(resource, lock)| {
            lock.holders
                .iter()
                .map(move |(owner, hold)| (resource.clone(), owner.clone(), hold.token))
        })
        .collect();
    let pick = |n: usize, real: bool| match holds.get(n % holds.len().max(1)) {
        Some(hold) if real => hold.clone(),
        _ => (
            RESOURCES[n % RESOURCES.len()].to_owned(),
            OWNERS[n % OWNERS.len()].to_owned(),
            harness.state.head,
        ),
    };
    match command {
        Command::Set(k, value) => C::StateSet {
            key: KEYS[k].into(),
            value,
        },
        Command::Init(k, value) => C::StateInit {
            key: KEYS[k].into(),
            value,
        },
        Command::Cas(k, expected_version, value) => C::StateCas {
            key: KEYS[k].into(),
            expected_version,
            value,
        },
        Command::KvPut(k, value) => C::KvPut {
            key: KEYS[k].into(),
            value,
        },
        Command::KvDelete(k) => C::KvDelete {
            key: KEYS[k].into(),
        },
        Command::Acquire(resources, o, ttl_ms, shared) => C::LockAcquire {
            resources: resources.iter().map(|r| RESOURCES[*r].to_owned()).collect(),
            owner: OWNERS[o].into(),
            ttl_ms,
            mode: if shared {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            },
        },
        Command::Renew(n, real, ttl_ms) => {
            let (resource, owner, token) = pick(n, real);
            C::LockRenew {
                resource,
                owner,
                token,
                ttl_ms,
            }
        }
        Command::Release(n, real) => {
            let (resource, owner, token) = pick(n, real);
            C::LockRelease {
                resource,
                owner,
                token,
            }
        }
        Command::Register(o, ttl_ms, by_admin) => C::AgentRegister {
            id: OWNERS[o].into(),
            agent_type: "worker".into(),
            capabilities: vec!["x".into()],
            ttl_ms,
            meta: Some(json!({"o": o})),
            by_admin,
        },
        Command::Kill(o) => C::AgentKill {
            id: OWNERS[o].into(),
        },
        Command::Deregister(o) => C::AgentDeregister {
            id: OWNERS[o].into(),
        },
        Command::CreateBranch(name, from, back) => C::BranchCreate {
            name: BRANCHES[name].into(),
            from: BRANCHES[from].into(),
            at: back.map(|back| harness.state.head.saturating_sub(back)),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn live_replayed_and_snapshot_states_agree(
        steps in proptest::collection::vec(step(), 1..60),
        snapshot_fraction in 0.0f64..=1.0,
    ) {
        let mut harness = Harness::new();
        let snapshot_step = (steps.len() as f64 * snapshot_fraction) as usize;
        let mut snapshot: Option<Vec<u8>> = None;
        for (index, step) in steps.into_iter().enumerate() {
            if index == snapshot_step {
                snapshot = Some(postcard::to_allocvec(&harness.state).expect("state encodes"));
            }
            match step {
                Step::Advance(ms, true) => {
                    harness.tick(ms);
                    prop_assert!(crate::coordination::due_all(&harness.state, harness.now_ms).is_empty(), "the timers leave nothing due");
                }
                Step::Advance(ms, false) => harness.advance(ms),
                Step::Command { branch, command } => {
                    let branch = BRANCHES[branch];
                    let command = to_command(&harness, branch, command);
                    let head = harness.state.head;
                    if harness.run(branch, command).is_err() {
                        prop_assert_eq!(harness.state.head, head);
                    }
                }
            }
        }
        let snapshot = snapshot.unwrap_or_else(|| postcard::to_allocvec(&harness.state).expect("state encodes"));

        prop_assert_eq!(harness.state.unknown_events, 0);
        let replayed = State::replay(&harness.log);
        prop_assert_eq!(&replayed, &harness.state);

        let loaded: State = postcard::from_bytes(&snapshot).expect("snapshot loads");
        let start = usize::try_from(loaded.head).expect("small logs");
        prop_assert_eq!(&loaded, &State::replay(&harness.log[..start]), "a snapshot is the replay of its prefix");
        let tail = &harness.log[start..];
        match Replayer::new(loaded, tail.iter().filter_map(ForkPoint::from_event)) {
            Ok(mut replayer) => {
                for event in tail {
                    replayer.apply(event);
                }
                prop_assert_eq!(&replayer.finish(), &harness.state);
            }
            // A fork in the tail to a seq before the snapshot: recovery must start earlier.
            Err(point) => prop_assert!(point.at < start as u64),
        }
    }
}
