//! Property tests of the work rules: random sequences of commands of this domain, with
//! agents registering and dying and the clock moving timers along, must build a state that
//! (1) replaying the produced log from the start rebuilds exactly, (2) a snapshot of any
//! prefix (the state in postcard, as snapshot files hold it) plus the rest of the log
//! rebuilds exactly, and (3) keeps every index in step with the entities it indexes.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::json;

use super::testkit::{replay, Harness};
use super::*;
use crate::envelope::SYSTEM_ACTOR;
use crate::state::State;

const AGENTS: [&str; 4] = ["a0", "a1", "a2", "a3"];
const CAPABILITIES: [&str; 2] = ["gpu", "rust"];
const SESSIONS: [&str; 2] = ["s0", "s1"];

#[derive(Debug, Clone)]
enum Op {
    Register {
        agent: usize,
        capabilities: u8,
    },
    Kill {
        agent: usize,
    },
    Create {
        count: usize,
        dependencies: Vec<usize>,
        priority: i64,
        capabilities: u8,
        approval: bool,
        attempts: i64,
        session: Option<usize>,
    },
    Claim {
        agent: usize,
        capabilities: Option<u8>,
    },
    Complete {
        task: usize,
        by_claimant: bool,
        with_result: bool,
    },
    Fail {
        task: usize,
        retry: bool,
    },
    Release {
        task: usize,
    },
    Progress {
        task: usize,
    },
    Cancel {
        task: usize,
    },
    Approve {
        task: usize,
    },
    Assign {
        task: usize,
        strategy: usize,
    },
    Auction {
        task: usize,
        deadline_ms: i64,
        min_confidence: f64,
    },
    Bid {
        task: usize,
        agent: usize,
        price: f64,
        estimated_ms: i64,
        confidence: f64,
    },
    Finding {
        agent: usize,
        category: usize,
        tag: usize,
        session: Option<usize>,
    },
    Hypothesis {
        confidence: f64,
    },
    Evidence {
        hypothesis: usize,
        finding: usize,
        supports: bool,
        weight: f64,
    },
    Validate {
        hypothesis: usize,
        result: bool,
    },
    Propose {
        quorum: usize,
        voters: Option<u8>,
        deadline_ms: i64,
    },
    Vote {
        proposal: usize,
        agent: usize,
        choice: usize,
    },
    Send {
        from: usize,
        to: Option<usize>,
        requires_ack: bool,
    },
    Ack {
        message: usize,
        agent: usize,
    },
    StartSession {
        session: usize,
    },
    CompleteSession {
        session: usize,
    },
    Requeue {
        agent: usize,
    },
    Advance {
        ms: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let agent = 0..AGENTS.len();
    prop_oneof![
        2 => (agent.clone(), 0u8..4).prop_map(|(agent, capabilities)| Op::Register { agent, capabilities }),
        1 => agent.clone().prop_map(|agent| Op::Kill { agent }),
        4 => (1usize..4, prop::collection::vec(0usize..64, 0..3), 1i64..=10, prop_oneof![Just(0u8), 0u8..4], prop::bool::weighted(0.2), 1i64..=3, prop::option::of(0..SESSIONS.len()))
            .prop_map(|(count, dependencies, priority, capabilities, approval, attempts, session)| Op::Create {
                count, dependencies, priority, capabilities, approval, attempts, session
            }),
        5 => (agent.clone(), prop::option::of(0u8..4)).prop_map(|(agent, capabilities)| Op::Claim { agent, capabilities }),
        4 => (0usize..64, prop::bool::weighted(0.9), any::<bool>()).prop_map(|(task, by_claimant, with_result)| Op::Complete { task, by_claimant, with_result }),
        2 => (0usize..64, any::<bool>()).prop_map(|(task, retry)| Op::Fail { task, retry }),
        1 => (0usize..64).prop_map(|task| Op::Release { task }),
        2 => (0usize..64).prop_map(|task| Op::Progress { task }),
        1 => (0usize..64).prop_map(|task| Op::Cancel { task }),
        1 => (0usize..64).prop_map(|task| Op::Approve { task }),
        1 => (0usize..64, 0usize..4).prop_map(|(task, strategy)| Op::Assign { task, strategy }),
        1 => (0usize..64, 100i64..3000, 0.0f64..0.6).prop_map(|(task, deadline_ms, min_confidence)| Op::Auction { task, deadline_ms, min_confidence }),
        3 => (0usize..64, agent.clone(), 0.0f64..200.0, 0i64..7_200_000, 0.0f64..=1.0)
            .prop_map(|(task, agent, price, estimated_ms, confidence)| Op::Bid { task, agent, price, estimated_ms, confidence }),
        2 => (agent.clone(), 0usize..3, 0usize..3, prop::option::of(0..SESSIONS.len()))
            .prop_map(|(agent, category, tag, session)| Op::Finding { agent, category, tag, session }),
        1 => (0.0f64..=1.0).prop_map(|confidence| Op::Hypothesis { confidence }),
        2 => (0usize..16, 0usize..16, any::<bool>(), 0.0f64..3.0)
            .prop_map(|(hypothesis, finding, supports, weight)| Op::Evidence { hypothesis, finding, supports, weight }),
        1 => (0usize..16, any::<bool>()).prop_map(|(hypothesis, result)| Op::Validate { hypothesis, result }),
        1 => (0usize..3, prop::option::of(1u8..16), 100i64..5000).prop_map(|(quorum, voters, deadline_ms)| Op::Propose { quorum, voters, deadline_ms }),
        4 => (0usize..16, agent.clone(), 0usize..3).prop_map(|(proposal, agent, choice)| Op::Vote { proposal, agent, choice }),
        1 => (agent.clone(), prop::option::of(agent.clone()), any::<bool>()).prop_map(|(from, to, requires_ack)| Op::Send { from, to, requires_ack }),
        1 => (0usize..16, agent.clone()).prop_map(|(message, agent)| Op::Ack { message, agent }),
        1 => (0..SESSIONS.len()).prop_map(|session| Op::StartSession { session }),
        1 => (0..SESSIONS.len()).prop_map(|session| Op::CompleteSession { session }),
        1 => agent.clone().prop_map(|agent| Op::Requeue { agent }),
        3 => (0i64..2500).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn capabilities(mask: u8) -> Vec<String> {
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(index, _)| mask & (1 << index) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// The `index`-th id of `ids` (modulo its length), if any.
fn pick<'a>(ids: impl ExactSizeIterator<Item = &'a String>, index: usize) -> Option<String> {
    let length = ids.len();
    if length == 0 {
        return None;
    }
    ids.into_iter().nth(index % length).cloned()
}

/// Turns `op` into a command against the harness's current state, or runs it directly
/// (agents, timers, requeue). Returns nothing to run when the op has no target yet.
fn run(harness: &mut Harness, op: &Op) {
    let work = harness.work().clone();
    let task_id = |index: usize| pick(work.tasks.by_id.keys(), index);
    // Most ops target a task in the status they need, so that they mostly succeed; the
    // rest (and every op while no task fits) target any task, so that refusals happen too.
    let task_where = |index: usize, wanted: &dyn Fn(&Task) -> bool| -> Option<String> {
        let fitting: Vec<String> = work
            .tasks
            .by_id
            .values()
            .filter(|task| wanted(task))
            .map(|task| task.id.clone())
            .collect();
        if index % 8 == 7 || fitting.is_empty() {
            task_id(index)
        } else {
            pick(fitting.iter(), index)
        }
    };
    let claimant = |index: usize| -> Option<(String, String)> {
        let id = task_where(index, &|task| task.status == TaskStatus::Claimed)?;
        let agent = work.tasks.by_id[&id]
            .agent
            .clone()
            .unwrap_or_else(|| "nobody".into());
        Some((id, agent))
    };
    let command = match op.clone() {
        Op::Register {
            agent,
            capabilities: mask,
        } => {
            let caps = capabilities(mask);
            let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
            harness.register_agent(AGENTS[agent], &caps);
            None
        }
        Op::Kill { agent } => {
            if crate::coordination::agents::agent(harness.branch(), AGENTS[agent])
                .is_some_and(|info| info.status == crate::coordination::AgentStatus::Active)
            {
                harness.kill_agent(AGENTS[agent]);
            }
            None
        }
        Op::Requeue { agent } => {
            let drafts = requeue_claims_of(harness.branch(), AGENTS[agent], "agent_expired");
            harness.commit(SYSTEM_ACTOR, drafts);
            None
        }
        Op::Advance { ms } => {
            harness.advance(ms);
            None
        }
        Op::Create {
            count,
            dependencies,
            priority,
            capabilities: mask,
            approval,
            attempts,
            session,
        } => {
            let depends_on: Vec<String> = dependencies
                .iter()
                .filter_map(|index| task_id(*index))
                .collect();
            let tasks = (0..count)
                .map(|position| TaskSpec {
                    id: None,
                    task_type: format!("type{}", position % 2),
                    priority: Some(priority),
                    depends_on: Some(depends_on.clone()),
                    capabilities: Some(capabilities(mask)),
                    timeout_ms: Some(1000),
                    max_attempts: Some(attempts),
                    requires_approval: Some(approval),
                    session: session.map(|index| SESSIONS[index].to_owned()),
                    ..TaskSpec::default()
                })
                .collect();
            Some(WorkCommand::TaskCreate { tasks })
        }
        Op::Claim {
            agent,
            capabilities: mask,
        } => Some(WorkCommand::TaskClaim(ClaimSpec {
            agent: AGENTS[agent].into(),
            capabilities: mask.map(capabilities),
            types: None,
            wait_ms: None,
        })),
        Op::Complete {
            task,
            by_claimant,
            with_result,
        } => {
            claimant(task).map(|(task, agent)| WorkCommand::TaskComplete {
                task,
                spec: CompleteSpec {
                    agent: if by_claimant {
                        agent
                    } else {
                        "intruder".into()
                    },
                    // Without a result the task holds `Some(null)`, which a snapshot keeps.
                    result: with_result.then(|| json!(1)),
                },
            })
        }
        Op::Fail { task, retry } => claimant(task).map(|(task, agent)| WorkCommand::TaskFail {
            task,
            spec: FailSpec {
                agent,
                error: Some(json!("e")),
                retry: Some(retry),
            },
        }),
        Op::Release { task } => claimant(task).map(|(task, agent)| WorkCommand::TaskRelease {
            task,
            spec: ReleaseSpec { agent },
        }),
        Op::Progress { task } => claimant(task).map(|(task, agent)| WorkCommand::TaskProgress {
            task,
            spec: ProgressSpec {
                agent,
                percent: 50.0,
                note: None,
            },
        }),
        Op::Cancel { task } => task_id(task).map(|task| WorkCommand::TaskCancel {
            task,
            spec: CancelSpec::default(),
        }),
        Op::Approve { task } => task_where(task, &|task| {
            task.definition.requires_approval && !task.approved
        })
        .map(|task| WorkCommand::TaskApprove { task }),
        Op::Assign { task, strategy } => task_where(task, &Task::is_claimable).map(|task| {
            let spec = match strategy {
                0 => AssignSpec {
                    agent: Some(AGENTS[0].into()),
                    strategy: None,
                },
                1 => AssignSpec {
                    agent: None,
                    strategy: Some("round_robin".into()),
                },
                2 => AssignSpec {
                    agent: None,
                    strategy: Some("least_loaded".into()),
                },
                _ => AssignSpec {
                    agent: None,
                    strategy: Some("capability".into()),
                },
            };
            WorkCommand::TaskAssign { task, spec }
        }),
        Op::Auction {
            task,
            deadline_ms,
            min_confidence,
        } => task_where(task, &Task::is_claimable).map(|task| WorkCommand::AuctionOpen {
            task,
            spec: AuctionSpec {
                deadline_ms,
                min_confidence: Some(min_confidence),
            },
        }),
        Op::Bid {
            task,
            agent,
            price,
            estimated_ms,
            confidence,
        } => task_where(task, &Task::auction_open).map(|task| WorkCommand::BidPlace {
            task,
            spec: BidSpec {
                agent: AGENTS[agent].into(),
                price,
                estimated_ms,
                confidence,
            },
        }),
        Op::Finding {
            agent,
            category,
            tag,
            session,
        } => Some(WorkCommand::FindingPost(FindingSpec {
            id: None,
            agent: AGENTS[agent].into(),
            session: session.map(|index| SESSIONS[index].to_owned()),
            category: ["observation", "hypothesis", "conclusion"][category].into(),
            content: json!(format!("finding {tag}")),
            confidence: Some(0.5),
            evidence: None,
            tags: Some(vec![format!("tag{tag}")]),
        })),
        Op::Hypothesis { confidence } => Some(WorkCommand::HypothesisPropose(HypothesisSpec {
            id: None,
            description: "it".into(),
            confidence,
            session: None,
        })),
        Op::Evidence {
            hypothesis,
            finding,
            supports,
            weight,
        } => {
            match (
                pick(work.blackboard.hypotheses.keys(), hypothesis),
                pick(work.blackboard.findings.keys(), finding),
            ) {
                (Some(hypothesis), Some(finding)) => Some(WorkCommand::EvidenceAdd {
                    hypothesis,
                    spec: EvidenceSpec {
                        finding,
                        supports,
                        weight: Some(weight),
                    },
                }),
                _ => None,
            }
        }
        Op::Validate { hypothesis, result } => pick(work.blackboard.hypotheses.keys(), hypothesis)
            .map(|hypothesis| WorkCommand::HypothesisValidate {
                hypothesis,
                spec: ValidateSpec {
                    result,
                    evidence: None,
                },
            }),
        Op::Propose {
            quorum,
            voters,
            deadline_ms,
        } => Some(WorkCommand::ProposalOpen(ProposalSpec {
            id: None,
            action: json!("act"),
            quorum: ["majority", "unanimous", "threshold"][quorum].into(),
            threshold: (quorum == 2).then_some(0.6),
            voters: voters.map(|mask| {
                AGENTS
                    .iter()
                    .enumerate()
                    .filter(|(index, _)| mask & (1 << index) != 0)
                    .map(|(_, id)| id.to_string())
                    .collect()
            }),
            deadline_ms,
        })),
        Op::Vote {
            proposal,
            agent,
            choice,
        } => {
            pick(work.consensus.proposals.keys(), proposal).map(|proposal| WorkCommand::VoteCast {
                proposal,
                spec: VoteSpec {
                    agent: AGENTS[agent].into(),
                    vote: ["yes", "no", "abstain"][choice].into(),
                    confidence: None,
                    reason: None,
                },
            })
        }
        Op::Send {
            from,
            to,
            requires_ack,
        } => Some(WorkCommand::MessageSend(MessageSpec {
            from: AGENTS[from].into(),
            to: to.map_or(messages::BROADCAST.to_owned(), |to| AGENTS[to].to_owned()),
            message_type: "note".into(),
            payload: None,
            requires_ack: Some(requires_ack),
        })),
        Op::Ack { message, agent } => {
            pick(work.messages.by_id.keys(), message).map(|message| WorkCommand::MessageAck {
                message,
                spec: AckSpec {
                    agent: AGENTS[agent].into(),
                },
            })
        }
        Op::StartSession { session } => Some(WorkCommand::SessionStart(SessionSpec {
            id: Some(SESSIONS[session].into()),
            operation: "op".into(),
            context: None,
        })),
        Op::CompleteSession { session } => Some(WorkCommand::SessionComplete {
            session: SESSIONS[session].into(),
            spec: SessionCompleteSpec {
                outcome: Some(json!("done")),
            },
        }),
    };
    if let Some(command) = command {
        // Refusals are part of the game; they must write nothing, which `decide` being a
        // pure function of the state guarantees.
        let _ = harness.run(command);
    }
}

/// Every index of the work part agrees with the entities it indexes.
fn check_invariants(work: &Work) {
    let tasks = &work.tasks;
    let claimable: BTreeSet<&String> = tasks
        .by_id
        .values()
        .filter(|task| task.is_claimable())
        .map(|task| &task.id)
        .collect();
    let indexed: BTreeSet<&String> = tasks
        .pending
        .values()
        .flat_map(|group| group.queue.iter().map(|entry| &entry.id))
        .collect();
    assert_eq!(
        claimable, indexed,
        "the pending index holds exactly the claimable tasks"
    );
    assert!(
        tasks.pending.values().all(|group| !group.queue.is_empty()),
        "no empty pending group is kept"
    );
    let mut counts: BTreeMap<TaskStatus, u64> = BTreeMap::new();
    let mut claims: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut timers: BTreeSet<Timer> = BTreeSet::new();
    for task in tasks.by_id.values() {
        *counts.entry(task.status).or_default() += 1;
        if task.status == TaskStatus::Claimed {
            let agent = task.agent.clone().expect("a claimed task has a claimant");
            claims.entry(agent).or_default().insert(task.id.clone());
            let at_ms = task
                .lease_expires_at_ms
                .expect("a claimed task has a lease");
            timers.insert(Timer {
                at_ms,
                kind: TimerKind::TaskLease,
                id: task.id.clone(),
            });
        } else {
            assert_eq!(
                task.lease_expires_at_ms, None,
                "only claimed tasks have a lease"
            );
        }
        if task.status == TaskStatus::Blocked {
            assert!(
                task.definition
                    .depends_on
                    .iter()
                    .any(|dependency| tasks.by_id[dependency].status != TaskStatus::Completed),
                "a blocked task waits on something"
            );
        }
        if matches!(
            task.status,
            TaskStatus::Pending | TaskStatus::Claimed | TaskStatus::AwaitingApproval
        ) {
            assert!(
                task.definition
                    .depends_on
                    .iter()
                    .all(|dependency| tasks.by_id[dependency].status == TaskStatus::Completed),
                "a task past blocked has every dependency completed"
            );
        }
        if task.definition.depends_on.iter().any(|dependency| {
            matches!(
                tasks.by_id[dependency].status,
                TaskStatus::Failed | TaskStatus::Cancelled
            )
        }) {
            assert_eq!(
                task.status,
                TaskStatus::Cancelled,
                "a failed or cancelled dependency cancels its dependents"
            );
        }
        if let Some(auction) = task
            .auction
            .as_ref()
            .filter(|auction| auction.status == tasks::AuctionStatus::Open)
        {
            assert_eq!(
                task.status,
                TaskStatus::Pending,
                "only pending tasks are auctioned"
            );
            timers.insert(Timer {
                at_ms: auction.deadline_at_ms,
                kind: TimerKind::Auction,
                id: task.id.clone(),
            });
        }
    }
    assert_eq!(counts, tasks.status_counts, "status counts");
    assert_eq!(claims, tasks.claims, "claims per agent");
    for proposal in work.consensus.proposals.values() {
        let cast = proposal.votes_for + proposal.votes_against + proposal.abstentions;
        assert_eq!(
            cast as usize,
            proposal.votes.len(),
            "tallies match the votes"
        );
        assert!(
            proposal
                .votes
                .keys()
                .all(|voter| proposal.voters.contains(voter)),
            "only eligible voters"
        );
        assert_eq!(
            proposal.status == ProposalStatus::Decided,
            proposal.decision.is_some()
        );
        if proposal.status == ProposalStatus::Open {
            timers.insert(Timer {
                at_ms: proposal.deadline_at_ms,
                kind: TimerKind::ProposalDeadline,
                id: proposal.id.clone(),
            });
        }
    }
    assert_eq!(
        timers, work.timers,
        "the timers are exactly the live deadlines"
    );
    for hypothesis in work.blackboard.hypotheses.values() {
        assert!(
            (0.0..=1.0).contains(&hypothesis.confidence),
            "confidence is bounded"
        );
    }
    for message in work.messages.by_id.values() {
        assert!(
            !(message.to == messages::BROADCAST && message.recipients.contains(&message.from)),
            "a broadcast skips its sender"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn replay_and_snapshot_plus_tail_rebuild_the_live_state(
        ops in prop::collection::vec(op(), 1..120),
        cut in 0.0f64..=1.0,
    ) {
        let mut harness = Harness::new();
        for op in &ops {
            run(&mut harness, op);
            check_invariants(harness.work());
        }
        // Once everything came due, due() has nothing more to say.
        harness.advance(0);
        prop_assert_eq!(&harness.replayed(), &harness.state, "replay from the start equals the live state");
        let split = ((harness.log.len() as f64) * cut) as usize;
        let prefix = replay(State::default(), &harness.log[..split]);
        let snapshot = postcard::to_allocvec(&prefix).expect("the state encodes");
        let restored: State = postcard::from_bytes(&snapshot).expect("the snapshot decodes");
        prop_assert_eq!(&restored, &prefix, "a snapshot round-trips");
        let rebuilt = replay(restored, &harness.log[split..]);
        prop_assert_eq!(&rebuilt, &harness.state, "snapshot plus tail equals the live state");
        // Each proposal is decided at most once in the log.
        let mut decided: BTreeMap<String, usize> = BTreeMap::new();
        for event in harness.log.iter().filter(|event| event.event_type == "proposal.decided") {
            *decided.entry(event.stream.clone()).or_default() += 1;
        }
        prop_assert!(decided.values().all(|&count| count == 1), "{:?}", decided);
    }
}
