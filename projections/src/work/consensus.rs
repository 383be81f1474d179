//! Consensus (SPEC §3 "Consensus"): proposals that an electorate votes on, decided exactly
//! once by a `proposal.decided` event.
//!
//! Notation: `N` voters in the electorate, `Y` yes, `X` no and `A` abstain votes cast, and
//! `R = N − Y − X − A` voters who have not voted. Abstentions never count toward the ratio.
//!
//! Whether a tally approves:
//! - `majority`: `Y > X` (strictly more yes than no);
//! - `unanimous`: `Y ≥ 1` and `X = 0`;
//! - `threshold` with `t` in (0, 1]: `X + Y > 0` and `Y / (Y + X) ≥ t`.
//!
//! The proposal is decided at the vote after which no way the remaining `R` voters could
//! vote changes the outcome: since every rule approves more with more yes and less with
//! more no, that is when `approves(Y, X + R) == approves(Y + R, X)`, and the decision is
//! that common outcome. In particular it is always decided once everyone has voted.
//!
//! At the deadline an undecided proposal needs a participation quorum, counting
//! abstentions: more than half of the electorate for `majority` and `threshold`, every
//! voter for `unanimous`. With it, the votes cast decide (`approves(Y, X)`); without it the
//! decision is `expired`.

use crate::rejection::Code;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    already_exists, check_duration, check_id, check_unit, conflict, format_instant, generate_id,
    invalid, not_found, parse_data, Timer, TimerKind, Work, WorkBranch,
};
use crate::envelope::{Envelope, EventDraft};
use crate::rejection::Rejection;

/// How a proposal is decided (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quorum {
    /// More yes than no.
    Majority,
    /// No "no" and at least one yes.
    Unanimous,
    /// A share of yes among yes and no votes of at least `threshold`.
    Threshold,
}

impl Quorum {
    /// Parses a quorum name.
    pub fn parse(name: &str) -> Option<Quorum> {
        match name {
            "majority" => Some(Quorum::Majority),
            "unanimous" => Some(Quorum::Unanimous),
            "threshold" => Some(Quorum::Threshold),
            _ => None,
        }
    }
}

/// A vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteChoice {
    /// For.
    Yes,
    /// Against.
    No,
    /// Neither; counts for participation, not for the ratio.
    Abstain,
}

/// The outcome of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The rule approved it.
    Approved,
    /// The rule cannot approve it.
    Rejected,
    /// The deadline passed without a quorum.
    Expired,
}

/// Whether a proposal takes votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Taking votes.
    Open,
    /// Decided.
    Decided,
}

impl ProposalStatus {
    /// Parses `open` or `decided` (`?status=`).
    pub fn parse(name: &str) -> Option<ProposalStatus> {
        match name {
            "open" => Some(ProposalStatus::Open),
            "decided" => Some(ProposalStatus::Decided),
            _ => None,
        }
    }
}

/// The body of `POST /v1/proposals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalSpec {
    /// The id; generated (`P-<n>`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What is proposed (any JSON but null).
    pub action: Value,
    /// `majority`, `unanimous` or `threshold`.
    pub quorum: String,
    /// For `threshold` only: the share of yes among yes and no, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The electorate; default the active agents when it opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voters: Option<Vec<String>>,
    /// How long votes are taken, from now, in ms.
    pub deadline_ms: i64,
}

/// The body of `POST /v1/proposals/{id}/votes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteSpec {
    /// The voter.
    pub agent: String,
    /// `yes`, `no` or `abstain`.
    pub vote: String,
    /// 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A vote cast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ballot {
    /// The vote.
    pub vote: VoteChoice,
    /// The voter's confidence.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// The seq of `vote.cast`.
    pub seq: u64,
}

/// A proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The id.
    pub id: String,
    /// What is proposed.
    #[serde(with = "crate::binary_serde::json_text")]
    pub action: Value,
    /// The rule.
    pub quorum: Quorum,
    /// The threshold, for `threshold`.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// The electorate, fixed at opening.
    pub voters: BTreeSet<String>,
    /// Whether the voters were given (else: the active agents at opening).
    pub voters_given: bool,
    /// The deadline as given, ms from opening.
    pub deadline_ms: i64,
    /// The deadline, ms since the epoch.
    pub deadline_at_ms: i64,
    /// Open or decided.
    pub status: ProposalStatus,
    /// The outcome, once decided.
    #[serde(default)]
    pub decision: Option<Decision>,
    /// Yes votes.
    pub votes_for: u32,
    /// No votes.
    pub votes_against: u32,
    /// Abstentions.
    pub abstentions: u32,
    /// The votes by voter.
    pub votes: BTreeMap<String, Ballot>,
    /// Who opened it.
    pub opened_by: String,
    /// The seq of `proposal.opened`.
    pub seq: u64,
    /// When it was decided.
    #[serde(default)]
    pub decided_at_ms: Option<i64>,
}

impl Proposal {
    /// The proposal as the HTTP API shows it.
    pub fn view(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("action".into(), self.action.clone());
        out.insert("quorum".into(), json!(self.quorum));
        if let Some(threshold) = self.threshold {
            out.insert("threshold".into(), json!(threshold));
        }
        out.insert("voters".into(), json!(self.voters));
        out.insert(
            "deadline_at".into(),
            json!(format_instant(self.deadline_at_ms)),
        );
        out.insert("status".into(), json!(self.status));
        if let Some(decision) = self.decision {
            out.insert("decision".into(), json!(decision));
        }
        out.insert("votes_for".into(), json!(self.votes_for));
        out.insert("votes_against".into(), json!(self.votes_against));
        out.insert("abstentions".into(), json!(self.abstentions));
        let votes: Vec<Value> = self
            .votes
            .iter()
            .map(|(agent, ballot)| {
                let mut vote = json!({"agent": agent, "vote": ballot.vote, "seq": ballot.seq});
                if let Some(confidence) = ballot.confidence {
                    vote["confidence"] = json!(confidence);
                }
                if let Some(reason) = &ballot.reason {
                    vote["reason"] = json!(reason);
                }
                vote
            })
            .collect();
        out.insert("votes".into(), Value::Array(votes));
        out.insert("opened_by".into(), json!(self.opened_by));
        if let Some(decided) = self.decided_at_ms {
            out.insert("decided_at".into(), json!(format_instant(decided)));
        }
        Value::Object(out)
    }

    fn approves(&self, yes: u32, no: u32) -> bool {
        approves(self.quorum, self.threshold.unwrap_or(1.0), yes, no)
    }

    /// The tally after one more `vote`: (yes, no, abstain).
    fn tally_with(&self, vote: VoteChoice) -> (u32, u32, u32) {
        let (mut yes, mut no, mut abstain) = (self.votes_for, self.votes_against, self.abstentions);
        match vote {
            VoteChoice::Yes => yes += 1,
            VoteChoice::No => no += 1,
            VoteChoice::Abstain => abstain += 1,
        }
        (yes, no, abstain)
    }

    /// The decision after one more `vote`, if no way the voters who have not voted yet
    /// could change it.
    fn settled_after(&self, vote: VoteChoice) -> Option<Decision> {
        let (yes, no, abstain) = self.tally_with(vote);
        let electorate = u32::try_from(self.voters.len()).expect("an electorate fits in u32");
        let remaining = electorate - yes - no - abstain;
        let worst = self.approves(yes, no + remaining);
        let best = self.approves(yes + remaining, no);
        (worst == best).then_some(if best {
            Decision::Approved
        } else {
            Decision::Rejected
        })
    }

    /// The decision at the deadline (see the module docs).
    fn at_deadline(&self) -> Decision {
        let electorate = self.voters.len() as u64;
        let cast = u64::from(self.votes_for + self.votes_against + self.abstentions);
        let quorum = match self.quorum {
            Quorum::Majority | Quorum::Threshold => cast * 2 > electorate,
            Quorum::Unanimous => cast == electorate,
        };
        match (quorum, self.approves(self.votes_for, self.votes_against)) {
            (false, _) => Decision::Expired,
            (true, true) => Decision::Approved,
            (true, false) => Decision::Rejected,
        }
    }
}

/// Whether `yes` and `no` votes approve under `quorum` (see the module docs); `threshold`
/// is used by [`Quorum::Threshold`] only. The ratio is computed by division, which rounds
/// correctly, so 7 of 10 meets a threshold of 0.7.
pub fn approves(quorum: Quorum, threshold: f64, yes: u32, no: u32) -> bool {
    match quorum {
        Quorum::Majority => yes > no,
        Quorum::Unanimous => yes >= 1 && no == 0,
        Quorum::Threshold => yes + no > 0 && f64::from(yes) / f64::from(yes + no) >= threshold,
    }
}

/// The proposals of a branch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Consensus {
    /// Proposals by id.
    pub proposals: BTreeMap<String, Proposal>,
}

impl Consensus {
    /// The proposal `id`.
    pub fn proposal(&self, id: &str) -> Option<&Proposal> {
        self.proposals.get(id)
    }

    /// The proposals (with `status`, if given), oldest first.
    pub fn list(&self, status: Option<ProposalStatus>) -> Vec<&Proposal> {
        let mut found: Vec<&Proposal> = self
            .proposals
            .values()
            .filter(|proposal| status.is_none_or(|status| proposal.status == status))
            .collect();
        found.sort_by_key(|proposal| proposal.seq);
        found
    }
}

// ----- event data -----

#[derive(Serialize, Deserialize)]
struct OpenedData {
    proposal: String,
    action: Value,
    quorum: Quorum,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    voters: Vec<String>,
    voters_given: bool,
    deadline_ms: i64,
    #[serde(with = "super::instant")]
    deadline_at: i64,
}

#[derive(Serialize, Deserialize)]
struct CastData {
    proposal: String,
    agent: String,
    vote: VoteChoice,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct DecidedData {
    proposal: String,
    decision: Decision,
    votes_for: u32,
    votes_against: u32,
    abstentions: u32,
}

fn to_data(data: impl Serialize) -> Value {
    serde_json::to_value(data).expect("event data serializes")
}

// ----- decide -----

/// Opens a proposal; no events if the same proposal exists.
pub(super) fn decide_open(
    branch: &dyn WorkBranch,
    spec: &ProposalSpec,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let consensus = &branch.work().consensus;
    if spec.action.is_null() {
        return Err(invalid("action", "action must not be null"));
    }
    let quorum = Quorum::parse(&spec.quorum).ok_or_else(|| {
        invalid(
            "quorum",
            format!(
                "quorum must be majority, unanimous or threshold, not '{}'",
                spec.quorum
            ),
        )
    })?;
    match (quorum, spec.threshold) {
        (Quorum::Threshold, None) => {
            return Err(invalid("threshold", "a threshold quorum needs a threshold"))
        }
        (Quorum::Threshold, Some(threshold)) => {
            check_unit("threshold", threshold)?;
            if threshold == 0.0 {
                return Err(invalid("threshold", "threshold must be above 0"));
            }
        }
        (_, Some(_)) => {
            return Err(invalid(
                "threshold",
                "threshold applies to the threshold quorum only",
            ))
        }
        (_, None) => {}
    }
    check_duration("deadline_ms", spec.deadline_ms)?;
    let voters: BTreeSet<String> = match &spec.voters {
        Some(voters) => {
            for voter in voters {
                check_id("voters", voter)?;
            }
            voters.iter().cloned().collect()
        }
        None => branch
            .active_agents()
            .into_iter()
            .map(|agent| agent.id)
            .collect(),
    };
    if voters.is_empty() {
        return Err(invalid(
            "voters",
            "a proposal needs at least one voter (no voters given and no active agents)",
        ));
    }
    let id = match &spec.id {
        Some(id) => {
            check_id("id", id)?;
            id.clone()
        }
        None => generate_id("P", consensus.proposals.len(), |id| {
            consensus.proposals.contains_key(id)
        }),
    };
    if let Some(existing) = consensus.proposals.get(&id) {
        let same = existing.action == spec.action
            && existing.quorum == quorum
            && existing.threshold == spec.threshold
            && existing.deadline_ms == spec.deadline_ms
            && existing.voters_given == spec.voters.is_some()
            && (!existing.voters_given || existing.voters == voters);
        if same {
            return Ok(Vec::new());
        }
        return Err(already_exists("proposal", &id));
    }
    Ok(vec![EventDraft::new(
        "proposal.opened",
        format!("proposal/{id}"),
        to_data(OpenedData {
            proposal: id,
            action: spec.action.clone(),
            quorum,
            threshold: spec.threshold,
            voters: voters.into_iter().collect(),
            voters_given: spec.voters.is_some(),
            deadline_ms: spec.deadline_ms,
            deadline_at: now_ms + spec.deadline_ms,
        }),
    )])
}

/// Casts a vote; adds `proposal.decided` when the vote settles the outcome.
pub(super) fn decide_vote(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &VoteSpec,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let proposal = branch
        .work()
        .consensus
        .proposals
        .get(id)
        .ok_or_else(|| not_found("proposal", id))?;
    check_id("agent", &spec.agent)?;
    let vote = match spec.vote.as_str() {
        "yes" => VoteChoice::Yes,
        "no" => VoteChoice::No,
        "abstain" => VoteChoice::Abstain,
        other => {
            return Err(invalid(
                "vote",
                format!("vote must be yes, no or abstain, not '{other}'"),
            ))
        }
    };
    if let Some(confidence) = spec.confidence {
        check_unit("confidence", confidence)?;
    }
    if proposal.status != ProposalStatus::Open || now_ms >= proposal.deadline_at_ms {
        return Err(conflict(
            Code::ProposalClosed,
            format!("proposal '{id}' no longer takes votes"),
        )
        .with("proposal", id)
        .with("status", json!(proposal.status))
        .with("decision", json!(proposal.decision)));
    }
    if !proposal.voters.contains(&spec.agent) {
        return Err(Rejection::new(
            Code::NotEligible,
            format!(
                "agent '{}' is not in the electorate of proposal '{id}'",
                spec.agent
            ),
        )
        .with("proposal", id)
        .with("agent", spec.agent.as_str()));
    }
    if let Some(ballot) = proposal.votes.get(&spec.agent) {
        return Err(conflict(
            Code::AlreadyVoted,
            format!("agent '{}' already voted on proposal '{id}'", spec.agent),
        )
        .with("proposal", id)
        .with("vote", json!(ballot.vote)));
    }
    let stream = format!("proposal/{id}");
    let mut drafts = vec![EventDraft::new(
        "vote.cast",
        stream.clone(),
        to_data(CastData {
            proposal: id.to_owned(),
            agent: spec.agent.clone(),
            vote,
            confidence: spec.confidence,
            reason: spec.reason.clone(),
        }),
    )];
    if let Some(decision) = proposal.settled_after(vote) {
        let (yes, no, abstain) = proposal.tally_with(vote);
        drafts.push(EventDraft::new(
            "proposal.decided",
            stream,
            to_data(DecidedData {
                proposal: id.to_owned(),
                decision,
                votes_for: yes,
                votes_against: no,
                abstentions: abstain,
            }),
        ));
    }
    Ok(drafts)
}

/// The deadline of proposal `id` passed: decide it by the votes cast, or expire it.
pub(super) fn deadline(branch: &dyn WorkBranch, id: &str, drafts: &mut Vec<EventDraft>) {
    let proposal = &branch.work().consensus.proposals[id];
    assert_eq!(
        proposal.status,
        ProposalStatus::Open,
        "only an open proposal has a deadline timer"
    );
    drafts.push(EventDraft::system(
        "proposal.decided",
        format!("proposal/{id}"),
        to_data(DecidedData {
            proposal: id.to_owned(),
            decision: proposal.at_deadline(),
            votes_for: proposal.votes_for,
            votes_against: proposal.votes_against,
            abstentions: proposal.abstentions,
        }),
    ));
}

// ----- apply -----

/// Folds a `proposal.*` or `vote.*` event; false for an unknown type.
pub(super) fn apply(work: &mut Work, event: &Envelope, data: &Value) -> bool {
    match event.event_type.as_str() {
        "proposal.opened" => {
            let Some(opened) = parse_data::<OpenedData>(event, data) else {
                return true;
            };
            if work.consensus.proposals.contains_key(&opened.proposal) {
                return true; // Opened once by the rules; a repeat changes nothing.
            }
            work.timers.insert(Timer {
                at_ms: opened.deadline_at,
                kind: TimerKind::ProposalDeadline,
                id: opened.proposal.clone(),
            });
            work.consensus.proposals.insert(
                opened.proposal.clone(),
                Proposal {
                    id: opened.proposal,
                    action: opened.action,
                    quorum: opened.quorum,
                    threshold: opened.threshold,
                    voters: opened.voters.into_iter().collect(),
                    voters_given: opened.voters_given,
                    deadline_ms: opened.deadline_ms,
                    deadline_at_ms: opened.deadline_at,
                    status: ProposalStatus::Open,
                    decision: None,
                    votes_for: 0,
                    votes_against: 0,
                    abstentions: 0,
                    votes: BTreeMap::new(),
                    opened_by: event.actor.clone(),
                    seq: event.seq,
                    decided_at_ms: None,
                },
            );
        }
        "vote.cast" => {
            let Some(cast) = parse_data::<CastData>(event, data) else {
                return true;
            };
            let Some(proposal) = work.consensus.proposals.get_mut(&cast.proposal) else {
                return true;
            };
            // The rules take one vote per voter while open; anything else changes nothing.
            if proposal.status != ProposalStatus::Open || proposal.votes.contains_key(&cast.agent) {
                return true;
            }
            proposal.votes.insert(
                cast.agent,
                Ballot {
                    vote: cast.vote,
                    confidence: cast.confidence,
                    reason: cast.reason,
                    seq: event.seq,
                },
            );
            match cast.vote {
                VoteChoice::Yes => proposal.votes_for += 1,
                VoteChoice::No => proposal.votes_against += 1,
                VoteChoice::Abstain => proposal.abstentions += 1,
            }
        }
        "proposal.decided" => {
            let Some(decided) = parse_data::<DecidedData>(event, data) else {
                return true;
            };
            let Some(proposal) = work.consensus.proposals.get_mut(&decided.proposal) else {
                return true;
            };
            if proposal.status != ProposalStatus::Open {
                return true; // Decided exactly once: a second decision changes nothing.
            }
            proposal.status = ProposalStatus::Decided;
            proposal.decision = Some(decided.decision);
            proposal.decided_at_ms = Some(event.ts_ms);
            work.timers.remove(&Timer {
                at_ms: proposal.deadline_at_ms,
                kind: TimerKind::ProposalDeadline,
                id: decided.proposal,
            });
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::rejection::RejectionKind;
    use serde_json::json;

    use super::super::testkit::{types, Harness};
    use super::super::WorkCommand;
    use super::*;

    fn open(
        harness: &mut Harness,
        id: &str,
        quorum: &str,
        threshold: Option<f64>,
        voters: &[&str],
    ) {
        harness.ok(WorkCommand::ProposalOpen(ProposalSpec {
            id: Some(id.into()),
            action: json!({"rollback": "v1.2.3"}),
            quorum: quorum.into(),
            threshold,
            voters: Some(voters.iter().map(|voter| voter.to_string()).collect()),
            deadline_ms: 60_000,
        }));
    }

    fn vote(proposal: &str, agent: &str, choice: &str) -> WorkCommand {
        WorkCommand::VoteCast {
            proposal: proposal.into(),
            spec: VoteSpec {
                agent: agent.into(),
                vote: choice.into(),
                confidence: Some(0.9),
                reason: None,
            },
        }
    }

    fn proposal<'a>(harness: &'a Harness, id: &str) -> &'a Proposal {
        harness
            .work()
            .consensus
            .proposal(id)
            .expect("the proposal exists")
    }

    /// Casts `votes` in order and returns the decision event's data, if one came.
    fn cast(harness: &mut Harness, id: &str, votes: &[(&str, &str)]) -> Option<Value> {
        let mut decided = None;
        for (agent, choice) in votes {
            assert!(
                decided.is_none(),
                "no vote after the decision in this helper"
            );
            let events = harness.ok(vote(id, agent, choice));
            assert_eq!(events[0].event_type, "vote.cast");
            decided = events.get(1).map(|event| {
                assert_eq!(event.event_type, "proposal.decided");
                event.data_value()
            });
        }
        decided
    }

    #[test]
    fn majority_is_decided_as_soon_as_it_cannot_change() {
        let mut harness = Harness::new();
        open(&mut harness, "p", "majority", None, &["a", "b", "c"]);
        assert_eq!(cast(&mut harness, "p", &[("a", "yes")]), None);
        let decided = cast(&mut harness, "p", &[("b", "yes")]).expect("two of three is final");
        assert_eq!(
            decided,
            json!({"proposal": "p", "decision": "approved", "votes_for": 2, "votes_against": 0, "abstentions": 0})
        );
        let view = proposal(&harness, "p").view();
        assert_eq!(view["status"], json!("decided"));
        assert_eq!(view["decision"], json!("approved"));
        assert_eq!(view["votes"][0]["agent"], json!("a"));
        let rejection = harness.err(vote("p", "c", "no"));
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Conflict, "proposal_closed")
        );
        assert!(
            harness.advance(60_000).is_empty(),
            "decided exactly once: the deadline adds nothing"
        );

        open(&mut harness, "tie", "majority", None, &["a", "b"]);
        let decided =
            cast(&mut harness, "tie", &[("a", "yes"), ("b", "no")]).expect("everyone voted");
        assert_eq!(
            decided["decision"],
            json!("rejected"),
            "a tie does not approve"
        );

        open(&mut harness, "no", "majority", None, &["a", "b", "c", "d"]);
        let decided =
            cast(&mut harness, "no", &[("a", "no"), ("b", "no")]).expect("yes can at best tie");
        assert_eq!(decided["decision"], json!("rejected"));
    }

    #[test]
    fn abstentions_do_not_count_toward_the_ratio() {
        let mut harness = Harness::new();
        open(&mut harness, "p", "majority", None, &["a", "b", "c"]);
        assert_eq!(
            cast(&mut harness, "p", &[("a", "yes"), ("b", "abstain")]),
            None,
            "c could still tie it"
        );
        let decided = cast(&mut harness, "p", &[("c", "abstain")]).expect("everyone voted");
        assert_eq!(
            decided,
            json!({"proposal": "p", "decision": "approved", "votes_for": 1, "votes_against": 0, "abstentions": 2})
        );

        open(&mut harness, "silent", "majority", None, &["a", "b"]);
        let decided = cast(
            &mut harness,
            "silent",
            &[("a", "abstain"), ("b", "abstain")],
        )
        .expect("everyone voted");
        assert_eq!(decided["decision"], json!("rejected"), "nobody said yes");
    }

    #[test]
    fn unanimous_needs_every_vote_and_any_no_rejects() {
        let mut harness = Harness::new();
        open(&mut harness, "p", "unanimous", None, &["a", "b", "c"]);
        assert_eq!(cast(&mut harness, "p", &[("a", "yes"), ("b", "yes")]), None);
        let decided = cast(&mut harness, "p", &[("c", "abstain")]).expect("everyone voted");
        assert_eq!(decided["decision"], json!("approved"));

        open(&mut harness, "veto", "unanimous", None, &["a", "b", "c"]);
        let decided = cast(&mut harness, "veto", &[("a", "no")]).expect("one no settles it");
        assert_eq!(
            decided,
            json!({"proposal": "veto", "decision": "rejected", "votes_for": 0, "votes_against": 1, "abstentions": 0})
        );
    }

    #[test]
    fn threshold_is_a_share_of_yes_among_yes_and_no() {
        let mut harness = Harness::new();
        let voters: Vec<String> = (0..10).map(|index| format!("v{index}")).collect();
        let voters: Vec<&str> = voters.iter().map(String::as_str).collect();
        open(&mut harness, "p", "threshold", Some(0.7), &voters);
        let yes: Vec<(&str, &str)> = voters[..6].iter().map(|voter| (*voter, "yes")).collect();
        assert_eq!(
            cast(&mut harness, "p", &yes),
            None,
            "6 of 10 could end at 0.6"
        );
        let decided = cast(&mut harness, "p", &[(voters[6], "yes")])
            .expect("7 of 10 meets 0.7 whatever the rest do");
        assert_eq!(decided["decision"], json!("approved"));

        open(&mut harness, "q", "threshold", Some(0.7), &voters);
        let no: Vec<(&str, &str)> = voters[..3].iter().map(|voter| (*voter, "no")).collect();
        assert_eq!(
            cast(&mut harness, "q", &no),
            None,
            "7 yes of 10 are still possible"
        );
        let decided = cast(&mut harness, "q", &[(voters[3], "no")]).expect("at most 6 of 10 now");
        assert_eq!(decided["decision"], json!("rejected"));
        assert!(
            approves(Quorum::Threshold, 0.7, 7, 3),
            "the boundary is inclusive"
        );
        assert!(
            !approves(Quorum::Threshold, 0.5, 0, 0),
            "no yes/no votes never approve"
        );
    }

    #[test]
    fn at_the_deadline_the_votes_cast_decide_if_the_quorum_is_met() {
        let mut harness = Harness::new();
        open(
            &mut harness,
            "met",
            "majority",
            None,
            &["a", "b", "c", "d", "e"],
        );
        open(
            &mut harness,
            "thin",
            "majority",
            None,
            &["a", "b", "c", "d", "e"],
        );
        open(&mut harness, "all", "unanimous", None, &["a", "b"]);
        open(
            &mut harness,
            "half",
            "majority",
            None,
            &["a", "b", "c", "d"],
        );
        open(
            &mut harness,
            "share",
            "threshold",
            Some(0.6),
            &["a", "b", "c", "d", "e"],
        );
        assert_eq!(
            cast(
                &mut harness,
                "met",
                &[("a", "yes"), ("b", "yes"), ("c", "no")]
            ),
            None
        );
        assert_eq!(
            cast(&mut harness, "thin", &[("a", "yes"), ("b", "abstain")]),
            None
        );
        assert_eq!(cast(&mut harness, "all", &[("a", "yes")]), None);
        assert_eq!(
            cast(&mut harness, "half", &[("a", "yes"), ("b", "abstain")]),
            None
        );
        assert_eq!(
            cast(
                &mut harness,
                "share",
                &[("a", "yes"), ("b", "no"), ("c", "abstain")]
            ),
            None
        );
        assert!(harness.advance(59_999).is_empty());
        let fired = harness.advance(1);
        assert_eq!(types(&fired), ["proposal.decided"; 5]);
        assert!(fired.iter().all(|event| event.actor == "system"));
        let decided: BTreeMap<String, Value> = fired
            .iter()
            .map(|event| {
                let data = event.data_value();
                (data["proposal"].as_str().expect("named").to_owned(), data)
            })
            .collect();
        assert_eq!(
            decided.keys().collect::<Vec<_>>(),
            ["all", "half", "met", "share", "thin"],
            "same deadline: id order"
        );
        assert_eq!(
            decided["met"]["decision"],
            json!("approved"),
            "3 of 5 voted, 2 yes to 1 no"
        );
        assert_eq!(
            decided["thin"]["decision"],
            json!("expired"),
            "2 of 5 is no quorum"
        );
        assert_eq!(
            decided["half"]["decision"],
            json!("expired"),
            "exactly half is no quorum"
        );
        assert_eq!(
            decided["all"]["decision"],
            json!("expired"),
            "unanimous needs everyone"
        );
        assert_eq!(
            decided["share"]["decision"],
            json!("rejected"),
            "1 of 2 is below 0.6"
        );
        assert_eq!(
            decided["share"],
            json!({"proposal": "share", "decision": "rejected", "votes_for": 1, "votes_against": 1, "abstentions": 1})
        );
        assert_eq!(
            harness
                .work()
                .consensus
                .list(Some(ProposalStatus::Open))
                .len(),
            0
        );
        assert_eq!(
            harness
                .work()
                .consensus
                .list(Some(ProposalStatus::Decided))
                .len(),
            5
        );
    }

    #[test]
    fn only_eligible_agents_vote_and_only_once() {
        let mut harness = Harness::new();
        harness.register_agent("a", &[]);
        harness.register_agent("b", &[]);
        harness.register_agent("c", &[]);
        harness.kill_agent("c");
        harness.ok(WorkCommand::ProposalOpen(ProposalSpec {
            id: None,
            action: json!("rollback"),
            quorum: "majority".into(),
            threshold: None,
            voters: None,
            deadline_ms: 1000,
        }));
        harness.register_agent("late", &[]);
        let opened = harness
            .work()
            .consensus
            .proposal("P-1")
            .expect("generated id P-1");
        assert_eq!(
            opened.voters,
            BTreeSet::from(["a".to_owned(), "b".to_owned()]),
            "the active agents at opening"
        );
        let rejection = harness.err(vote("P-1", "late", "yes"));
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Forbidden, "not_eligible")
        );
        assert_eq!(
            harness.err(vote("P-1", "c", "yes")).code.as_str(),
            "agent_killed",
            "a killed agent is refused before eligibility is even considered"
        );
        harness.ok(vote("P-1", "a", "yes"));
        let rejection = harness.err(vote("P-1", "a", "no"));
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Conflict, "already_voted")
        );
        assert_eq!(
            harness.err(vote("P-1", "b", "maybe")).details["field"],
            json!("vote")
        );
        assert_eq!(
            harness.err(vote("ghost", "a", "yes")).kind,
            RejectionKind::NotFound
        );
    }

    #[test]
    fn invalid_proposals_are_refused() {
        let mut harness = Harness::new();
        let spec = |quorum: &str,
                    threshold: Option<f64>,
                    voters: Option<Vec<String>>,
                    deadline_ms: i64| {
            WorkCommand::ProposalOpen(ProposalSpec {
                id: None,
                action: json!("x"),
                quorum: quorum.into(),
                threshold,
                voters,
                deadline_ms,
            })
        };
        let voters = Some(vec!["a".to_owned()]);
        let cases = [
            (spec("plurality", None, voters.clone(), 1000), "quorum"),
            (spec("threshold", None, voters.clone(), 1000), "threshold"),
            (
                spec("threshold", Some(0.0), voters.clone(), 1000),
                "threshold",
            ),
            (
                spec("threshold", Some(1.5), voters.clone(), 1000),
                "threshold",
            ),
            (
                spec("majority", Some(0.5), voters.clone(), 1000),
                "threshold",
            ),
            (spec("majority", None, voters.clone(), 10), "deadline_ms"),
            (spec("majority", None, None, 1000), "voters"),
            (spec("majority", None, Some(Vec::new()), 1000), "voters"),
        ];
        for (command, field) in cases {
            let rejection = harness.err(command);
            assert_eq!(
                (rejection.code.as_str(), rejection.details["field"].as_str()),
                ("invalid_value", Some(field))
            );
        }
        open(&mut harness, "p", "majority", None, &["a"]);
        assert!(harness
            .run(WorkCommand::ProposalOpen(ProposalSpec {
                id: Some("p".into()),
                action: json!({"rollback": "v1.2.3"}),
                quorum: "majority".into(),
                threshold: None,
                voters: Some(vec!["a".into()]),
                deadline_ms: 60_000,
            }))
            .expect("same body")
            .is_empty());
        let rejection = harness.err(WorkCommand::ProposalOpen(ProposalSpec {
            id: Some("p".into()),
            action: json!("other"),
            quorum: "majority".into(),
            threshold: None,
            voters: Some(vec!["a".into()]),
            deadline_ms: 60_000,
        }));
        assert_eq!(rejection.code, "already_exists");
    }
}
