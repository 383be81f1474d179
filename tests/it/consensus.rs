//! Consensus through HTTP (SPEC §3 "Consensus", issue 4): each quorum kind decided as
//! soon as the outcome cannot change, decisions at the deadline with and without a
//! participation quorum, exactly one `proposal.decided`, and the voting errors.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{data_dir, Server};

async fn open(server: &Server, body: Value) -> Value {
    let (status, proposal) = server.post("/v1/proposals", &body).await;
    assert_eq!(status, 201, "{proposal}");
    assert_eq!(proposal["status"], json!("open"));
    proposal
}

async fn vote(server: &Server, id: &str, agent: &str, choice: &str) -> Value {
    let (status, proposal) = server
        .post(
            &format!("/v1/proposals/{id}/votes"),
            &json!({"agent": agent, "vote": choice, "confidence": 0.8, "reason": "because"}),
        )
        .await;
    assert_eq!(status, 200, "{agent} votes {choice}: {proposal}");
    proposal
}

async fn decided_events(server: &Server, id: &str) -> Vec<Value> {
    server
        .replay("?types=proposal.decided")
        .await
        .into_iter()
        .filter(|event| event["data"]["proposal"] == json!(id))
        .collect()
}

async fn wait_decided(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, proposal) = server.get(&format!("/v1/proposals/{id}")).await;
        if proposal["status"] == json!("decided") {
            return proposal;
        }
        assert!(
            Instant::now() < deadline,
            "proposal {id} was never decided: {proposal}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn majority_is_decided_as_soon_as_the_rest_cannot_change_it() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let voters = ["v1", "v2", "v3", "v4", "v5"];
    open(&server, json!({"id": "rollback", "action": {"rollback": "v1.2.3"}, "quorum": "majority", "voters": voters, "deadline_ms": 60000})).await;
    vote(&server, "rollback", "v1", "yes").await;
    vote(&server, "rollback", "v2", "abstain").await;
    let still_open = vote(&server, "rollback", "v3", "yes").await;
    assert_eq!(
        still_open["status"],
        json!("open"),
        "two no votes could still tie it"
    );
    let decided = vote(&server, "rollback", "v4", "yes").await;
    assert_eq!(decided["status"], json!("decided"));
    assert_eq!(decided["decision"], json!("approved"));
    assert_eq!(
        (
            decided["votes_for"].clone(),
            decided["votes_against"].clone(),
            decided["abstentions"].clone()
        ),
        (json!(3), json!(0), json!(1))
    );
    let (status, late) = server
        .post(
            "/v1/proposals/rollback/votes",
            &json!({"agent": "v5", "vote": "no"}),
        )
        .await;
    assert_eq!(
        (status, late["error"]["code"].clone()),
        (409, json!("proposal_closed"))
    );
    let events = decided_events(&server, "rollback").await;
    assert_eq!(events.len(), 1, "exactly one proposal.decided");
    assert_eq!(events[0]["data"]["decision"], json!("approved"));
    assert_eq!(events[0]["data"]["abstentions"], json!(1));
}

#[tokio::test]
async fn unanimous_is_rejected_by_the_first_no() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    open(&server, json!({"id": "u", "action": "ship", "quorum": "unanimous", "voters": ["a", "b", "c"], "deadline_ms": 60000})).await;
    vote(&server, "u", "a", "yes").await;
    let rejected = vote(&server, "u", "b", "no").await;
    assert_eq!(
        (rejected["status"].clone(), rejected["decision"].clone()),
        (json!("decided"), json!("rejected"))
    );
    open(&server, json!({"id": "u2", "action": "ship", "quorum": "unanimous", "voters": ["a", "b"], "deadline_ms": 60000})).await;
    vote(&server, "u2", "a", "yes").await;
    let approved = vote(&server, "u2", "b", "yes").await;
    assert_eq!(approved["decision"], json!("approved"));
    assert_eq!(decided_events(&server, "u").await.len(), 1);
    assert_eq!(decided_events(&server, "u2").await.len(), 1);
}

#[tokio::test]
async fn threshold_compares_the_share_of_yes_among_yes_and_no() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let voters: Vec<String> = (1..=10).map(|n| format!("v{n}")).collect();
    open(&server, json!({"id": "t", "action": "migrate", "quorum": "threshold", "threshold": 0.7, "voters": voters, "deadline_ms": 60000})).await;
    for n in 1..=6 {
        let proposal = vote(&server, "t", &format!("v{n}"), "yes").await;
        assert_eq!(
            proposal["status"],
            json!("open"),
            "after {n} yes, the rest voting no would leave it below 0.7"
        );
    }
    let proposal = vote(&server, "t", "v7", "yes").await;
    assert_eq!(
        proposal["decision"],
        json!("approved"),
        "7 yes: even 3 no make 7 of 10, which meets 0.7"
    );
    assert_eq!(proposal["votes_for"], json!(7));

    open(&server, json!({"id": "t2", "action": "migrate", "quorum": "threshold", "threshold": 0.75, "voters": ["a", "b", "c", "d"], "deadline_ms": 60000})).await;
    vote(&server, "t2", "a", "no").await;
    let rejected = vote(&server, "t2", "b", "no").await;
    assert_eq!(
        rejected["decision"],
        json!("rejected"),
        "at most 2 of 4 yes is below 0.75"
    );
}

#[tokio::test]
async fn at_the_deadline_the_votes_cast_decide_or_the_proposal_expires() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    // Participation quorum met (3 of 5 voted): the votes cast decide.
    open(&server, json!({"id": "quorate", "action": "a", "quorum": "majority", "voters": ["a", "b", "c", "d", "e"], "deadline_ms": 300})).await;
    vote(&server, "quorate", "a", "yes").await;
    vote(&server, "quorate", "b", "yes").await;
    vote(&server, "quorate", "c", "no").await;
    // Not met (1 of 3): expired.
    open(&server, json!({"id": "quiet", "action": "b", "quorum": "majority", "voters": ["a", "b", "c"], "deadline_ms": 300})).await;
    vote(&server, "quiet", "a", "yes").await;
    let quorate = wait_decided(&server, "quorate").await;
    assert_eq!(quorate["decision"], json!("approved"));
    assert_eq!(
        (
            quorate["votes_for"].clone(),
            quorate["votes_against"].clone()
        ),
        (json!(2), json!(1))
    );
    let quiet = wait_decided(&server, "quiet").await;
    assert_eq!(quiet["decision"], json!("expired"));
    let events = decided_events(&server, "quiet").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["actor"],
        json!("system"),
        "the deadline is the server's doing"
    );
    let (_, decided) = server.get("/v1/proposals?status=decided").await;
    assert_eq!(decided["proposals"].as_array().map(Vec::len), Some(2));
    let (_, still_open) = server.get("/v1/proposals?status=open").await;
    assert_eq!(still_open["proposals"], json!([]));
}

#[tokio::test]
async fn the_electorate_defaults_to_the_active_agents_and_each_votes_once() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    for id in ["alice", "bob"] {
        server
            .post("/v1/agents", &json!({"id": id, "type": "reviewer"}))
            .await;
    }
    let proposal = open(
        &server,
        json!({"action": "merge", "quorum": "majority", "deadline_ms": 60000}),
    )
    .await;
    assert_eq!(proposal["id"], json!("P-1"));
    assert_eq!(proposal["voters"], json!(["alice", "bob"]));
    server
        .post("/v1/agents", &json!({"id": "carol", "type": "reviewer"}))
        .await;
    vote(&server, "P-1", "alice", "yes").await;
    let head = server.head().await;
    let (status, again) = server
        .post(
            "/v1/proposals/P-1/votes",
            &json!({"agent": "alice", "vote": "no"}),
        )
        .await;
    assert_eq!(
        (status, again["error"]["code"].clone()),
        (409, json!("already_voted"))
    );
    let (status, late) = server
        .post(
            "/v1/proposals/P-1/votes",
            &json!({"agent": "carol", "vote": "yes"}),
        )
        .await;
    assert_eq!(
        (status, late["error"]["code"].clone()),
        (403, json!("not_eligible")),
        "registered after opening"
    );
    let (status, bad) = server
        .post(
            "/v1/proposals/P-1/votes",
            &json!({"agent": "bob", "vote": "maybe"}),
        )
        .await;
    assert_eq!(
        (status, bad["error"]["code"].clone()),
        (422, json!("invalid_value"))
    );
    let (status, missing) = server
        .post(
            "/v1/proposals/P-9/votes",
            &json!({"agent": "bob", "vote": "yes"}),
        )
        .await;
    assert_eq!(
        (status, missing["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    for body in [
        json!({"action": "x", "quorum": "plurality", "deadline_ms": 1000}),
        json!({"action": "x", "quorum": "threshold", "deadline_ms": 1000}),
        json!({"action": "x", "quorum": "majority", "deadline_ms": 10}),
        json!({"action": "x", "quorum": "majority", "deadline_ms": 1000, "voters": []}),
    ] {
        let (status, answer) = server.post("/v1/proposals", &body).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (422, json!("invalid_value")),
            "{body}: {answer}"
        );
    }
    assert_eq!(
        server.head().await,
        head,
        "refused votes and proposals write nothing"
    );
    let (_, shown) = server.get("/v1/proposals/P-1").await;
    assert_eq!(shown["votes"][0]["agent"], json!("alice"));
    assert_eq!(shown["votes"][0]["reason"], json!("because"));
}
