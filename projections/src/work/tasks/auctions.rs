//! Task auctions: opening one, placing bids, and awarding the task to the best valid bid
//! (or closing without a winner) when the deadline passes. [`bid_score`] is the one
//! place that ranks bids.

use crate::rejection::Code;

use serde_json::json;

use super::decide::{auction_open, claim_data, find, invalid_status};
use super::events::{
    draft, system_draft, AuctionClosedData, AuctionOpenedData, BidData, ClaimedData,
};
use super::model::{AuctionStatus, Task, TaskStatus};
use super::spec::{AuctionSpec, BidSpec};
use crate::envelope::EventDraft;
use crate::rejection::Rejection;
use crate::work::{
    check_duration, check_id, check_unit, conflict, invalid, WorkBranch, DURATION_MS_MAX,
};

/// The score of a bid; the lowest score wins. It is the market formula the swarm
/// cookbooks use, with the estimate in hours:
///
/// `score = 0.4 × price / 100 + 0.3 × estimated_ms / 3 600 000 − 0.3 × confidence`
///
/// so 100 points of price weigh like 1.33 hours of work or a confidence of 1.33. A bid is
/// valid if its confidence is at least the auction's `min_confidence` and its agent is not
/// registered with a status other than `active`; ties go to the earliest bid.
pub fn bid_score(price: f64, estimated_ms: i64, confidence: f64) -> f64 {
    0.4 * price / 100.0 + 0.3 * estimated_ms as f64 / 3_600_000.0 - 0.3 * confidence
}

/// Opens an auction on a pending task; it is not claimable until the deadline.
pub(crate) fn decide_auction(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &AuctionSpec,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let task = find(branch, id)?;
    check_duration("deadline_ms", spec.deadline_ms)?;
    let min_confidence = spec.min_confidence.unwrap_or(0.0);
    check_unit("min_confidence", min_confidence)?;
    if task.status != TaskStatus::Pending {
        return Err(invalid_status(task, "auctioned"));
    }
    if task.auction_open() {
        return Err(auction_open(task));
    }
    Ok(vec![draft(
        "task.auction_opened",
        id,
        AuctionOpenedData {
            task: id.to_owned(),
            deadline_at: now_ms + spec.deadline_ms,
            min_confidence,
        },
    )])
}

/// Places (or replaces) an agent's bid in an open auction.
pub(crate) fn decide_bid(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &BidSpec,
    now_ms: i64,
) -> Result<Vec<EventDraft>, Rejection> {
    let task = find(branch, id)?;
    check_id("agent", &spec.agent)?;
    check_bid_values(spec)?;
    let open = task
        .auction
        .as_ref()
        .filter(|auction| auction.status == AuctionStatus::Open && now_ms < auction.deadline_at_ms);
    if open.is_none() {
        return Err(conflict(
            Code::AuctionClosed,
            format!("task '{id}' has no auction taking bids"),
        )
        .with("task", id));
    }
    check_bidder(branch, task, &spec.agent)?;
    Ok(vec![draft(
        "task.bid_placed",
        id,
        BidData {
            task: id.to_owned(),
            agent: spec.agent.clone(),
            price: spec.price,
            estimated_ms: spec.estimated_ms,
            confidence: spec.confidence,
            score: bid_score(spec.price, spec.estimated_ms, spec.confidence),
        },
    )])
}

/// 422 unless a bid's price, estimate and confidence are in range.
fn check_bid_values(spec: &BidSpec) -> Result<(), Rejection> {
    if !spec.price.is_finite() || spec.price < 0.0 {
        return Err(invalid(
            "price",
            format!("price must be a number >= 0, not {}", spec.price),
        ));
    }
    if !(0..=DURATION_MS_MAX * 365).contains(&spec.estimated_ms) {
        return Err(invalid(
            "estimated_ms",
            format!(
                "estimated_ms must be from 0 to one year, not {}",
                spec.estimated_ms
            ),
        ));
    }
    check_unit("confidence", spec.confidence)
}

/// 409 unless `agent` may bid on `task`: not registered as inactive, and with every
/// capability the task needs.
fn check_bidder(branch: &dyn WorkBranch, task: &Task, agent: &str) -> Result<(), Rejection> {
    let registered = branch.agent(agent);
    if registered.as_ref().is_some_and(|info| !info.active) {
        return Err(conflict(
            Code::AgentNotActive,
            format!("agent '{agent}' is not active"),
        )
        .with("agent", agent));
    }
    let capabilities = registered.map(|info| info.capabilities).unwrap_or_default();
    let missing: Vec<&String> = task
        .definition
        .capabilities
        .iter()
        .filter(|capability| !capabilities.contains(*capability))
        .collect();
    if !missing.is_empty() {
        let id = &task.id;
        return Err(conflict(
            Code::MissingCapabilities,
            format!("agent '{agent}' lacks capabilities {missing:?} that task '{id}' needs"),
        )
        .with("missing", json!(missing)));
    }
    Ok(())
}

/// An auction's deadline: award the best valid bid or close without a winner.
pub(crate) fn auction_deadline(
    branch: &dyn WorkBranch,
    id: &str,
    now_ms: i64,
    drafts: &mut Vec<EventDraft>,
) {
    let task = &branch.work().tasks.by_id[id];
    let auction = task
        .auction
        .as_ref()
        .expect("only an auctioned task has an auction timer");
    assert_eq!(
        auction.status,
        AuctionStatus::Open,
        "only an open auction has a timer"
    );
    let winner = auction
        .bids
        .values()
        .filter(|bid| bid.confidence >= auction.min_confidence)
        .filter(|bid| branch.agent(&bid.agent).is_none_or(|info| info.active))
        .min_by(|left, right| {
            left.score
                .total_cmp(&right.score)
                .then(left.seq.cmp(&right.seq))
        });
    match winner {
        Some(bid) => {
            let data = ClaimedData {
                price: Some(bid.price),
                estimated_ms: Some(bid.estimated_ms),
                confidence: Some(bid.confidence),
                score: Some(bid.score),
                ..claim_data(task, &bid.agent, now_ms)
            };
            drafts.push(system_draft("task.auction_awarded", &task.id, data));
        }
        None => drafts.push(system_draft(
            "task.auction_closed",
            id,
            AuctionClosedData {
                task: id.to_owned(),
                reason: "no_valid_bid".to_owned(),
                bids: auction.bids.len(),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::work::testkit::{create, types, Harness};
    use crate::work::WorkCommand;

    use super::super::testing::*;

    fn bid(task: &str, agent: &str, price: f64, estimated_ms: i64, confidence: f64) -> WorkCommand {
        WorkCommand::BidPlace {
            task: task.into(),
            spec: BidSpec {
                agent: agent.into(),
                price,
                estimated_ms,
                confidence,
            },
        }
    }

    fn auction(task: &str, deadline_ms: i64, min_confidence: Option<f64>) -> WorkCommand {
        WorkCommand::AuctionOpen {
            task: task.into(),
            spec: AuctionSpec {
                deadline_ms,
                min_confidence,
            },
        }
    }

    #[test]
    fn the_best_valid_bid_wins_the_auction_and_claims_the_task() {
        let mut harness = Harness::new();
        harness.ok(create(json!({"id": "a", "type": "t", "timeout_ms": 60000})));
        harness.ok(auction("a", 5000, Some(0.5)));
        assert_eq!(
            claimed_id(&mut harness, "w", &[]),
            None,
            "an auctioned task is not claimable"
        );
        assert_eq!(
            harness.err(assign("a", Some("w"), None)).code.as_str(),
            "auction_open"
        );
        // Scores: cheap 0.4*10/100 + 0.3*0.5 - 0.3*0.8 = -0.05; slow 0.4*0.1 + 0.3*2 - 0.27 = 0.37;
        // unsure has the best score but is below min_confidence.
        harness.ok(bid("a", "cheap", 10.0, 1_800_000, 0.8));
        harness.ok(bid("a", "slow", 10.0, 7_200_000, 0.9));
        harness.ok(bid("a", "unsure", 0.0, 0, 0.4));
        let scores: Vec<f64> = harness
            .task("a")
            .auction
            .as_ref()
            .expect("open")
            .bids
            .values()
            .map(|bid| bid.score)
            .collect();
        assert!((scores[0] - (-0.05)).abs() < 1e-12, "{scores:?}");
        assert_eq!(
            invalid_field(&harness.err(bid("a", "x", -1.0, 0, 0.5))),
            "price"
        );
        assert_eq!(
            invalid_field(&harness.err(bid("a", "x", 1.0, 0, 1.5))),
            "confidence"
        );
        let fired = harness.advance(5000);
        assert_eq!(types(&fired), ["task.auction_awarded"]);
        assert_eq!(fired[0].data_value()["agent"], json!("cheap"));
        let task = harness.task("a");
        assert_eq!(
            (task.status, task.agent.as_deref()),
            (TaskStatus::Claimed, Some("cheap"))
        );
        assert_eq!(task.lease_expires_at_ms, Some(harness.now_ms + 60000));
        assert_eq!(
            task.auction.as_ref().map(|auction| auction.status),
            Some(AuctionStatus::Awarded)
        );
        assert_eq!(
            harness.err(bid("a", "late", 1.0, 1, 0.9)).code.as_str(),
            "auction_closed"
        );
    }

    #[test]
    fn an_auction_without_a_valid_bid_leaves_the_task_pending() {
        let mut harness = Harness::new();
        harness.ok(create(
            json!({"id": "a", "type": "t", "capabilities": ["gpu"]}),
        ));
        harness.ok(auction("a", 1000, Some(0.9)));
        assert_eq!(harness.err(auction("a", 1000, None)).code, "auction_open");
        let rejection = harness.err(bid("a", "cpu-only", 1.0, 1, 0.95));
        assert_eq!(rejection.code, "missing_capabilities");
        harness.register_agent("g", &["gpu"]);
        harness.ok(bid("a", "g", 1.0, 1, 0.5));
        harness.ok(bid("a", "g", 1.0, 1, 0.6));
        assert_eq!(
            harness.task("a").auction.as_ref().expect("open").bids.len(),
            1,
            "a later bid replaces the earlier"
        );
        let fired = harness.advance(1000);
        assert_eq!(types(&fired), ["task.auction_closed"]);
        assert_eq!(fired[0].data_value()["bids"], json!(1));
        assert_eq!(status(&harness, "a"), TaskStatus::Pending);
        assert_eq!(
            claimed_id(&mut harness, "g", &[]).as_deref(),
            None,
            "explicit capabilities replace the registered ones"
        );
        assert_eq!(
            claimed_id(&mut harness, "x", &["gpu"]).as_deref(),
            Some("a"),
            "claimable again"
        );
        assert_eq!(harness.err(auction("a", 1000, None)).code, "invalid_status");
    }
}
