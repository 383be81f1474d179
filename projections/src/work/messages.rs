//! Messages (SPEC §3 "Messages"): direct and broadcast messages between agents, inboxes
//! and acknowledgements.
//!
//! A message to `"*"` is a broadcast: its recipients are the agents active when it is
//! sent, except its sender. The recipients are fixed in the `message.sent` event, so an
//! agent registered later does not receive it, and replay does not depend on the registry.
//! A direct message may name any agent id, registered or not yet.
//!
//! Every recipient may ack a message once (a second ack writes nothing), whether or not it
//! `requires_ack`; the inbox's `unacked` filter shows the messages the agent has not acked
//! yet. `requires_ack` tells the sender to expect acks: the message view lists who acked.

use crate::rejection::Code;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{check_id, format_instant, generate_id, not_found, parse_data, Work, WorkBranch};
use crate::envelope::{Envelope, EventDraft};
use crate::rejection::Rejection;

/// The `to` of a broadcast.
pub const BROADCAST: &str = "*";

/// The body of `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    /// The sender.
    pub from: String,
    /// An agent id, or `"*"` for every active agent but the sender.
    pub to: String,
    /// The message type (the swarm's own vocabulary: `request`, `finding`, ...).
    #[serde(rename = "type")]
    pub message_type: String,
    /// The content (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Whether the sender expects acks (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_ack: Option<bool>,
}

/// The body of `POST /v1/messages/{id}/ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AckSpec {
    /// The recipient who acks.
    pub agent: String,
}

/// A message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The id.
    pub id: String,
    /// The sender.
    pub from: String,
    /// The addressee as given (`"*"` for a broadcast).
    pub to: String,
    /// The message type.
    pub message_type: String,
    /// The content.
    #[serde(with = "crate::binary_serde::json_text")]
    pub payload: Value,
    /// Whether acks are expected.
    pub requires_ack: bool,
    /// Who receives it.
    pub recipients: BTreeSet<String>,
    /// Who acked it, with the seq of the ack.
    pub acked_by: BTreeMap<String, u64>,
    /// The seq of `message.sent`.
    pub seq: u64,
    /// When it was sent.
    pub sent_at_ms: i64,
}

impl Message {
    /// The message as the HTTP API shows it; with `for_agent`, as that agent's inbox shows
    /// it (with `acked`).
    pub fn view(&self, for_agent: Option<&str>) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("from".into(), json!(self.from));
        out.insert("to".into(), json!(self.to));
        out.insert("type".into(), json!(self.message_type));
        out.insert("payload".into(), self.payload.clone());
        out.insert("requires_ack".into(), json!(self.requires_ack));
        out.insert("seq".into(), json!(self.seq));
        out.insert("sent_at".into(), json!(format_instant(self.sent_at_ms)));
        match for_agent {
            Some(agent) => {
                out.insert("acked".into(), json!(self.acked_by.contains_key(agent)));
            }
            None => {
                out.insert("recipients".into(), json!(self.recipients));
                out.insert(
                    "acked_by".into(),
                    json!(self.acked_by.keys().collect::<Vec<_>>()),
                );
            }
        }
        Value::Object(out)
    }
}

/// The messages of a branch and every agent's inbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Messages {
    /// Messages by id.
    pub by_id: BTreeMap<String, Message>,
    /// Message ids per recipient, oldest first.
    pub inboxes: BTreeMap<String, Vec<String>>,
}

impl Messages {
    /// The message `id`.
    pub fn get(&self, id: &str) -> Option<&Message> {
        self.by_id.get(id)
    }

    /// The newest `limit` messages, newest first; with `agent`, only those it sent or
    /// received.
    pub fn recent(&self, agent: Option<&str>, limit: usize) -> Vec<&Message> {
        let mut messages: Vec<&Message> = self
            .by_id
            .values()
            .filter(|message| {
                agent
                    .is_none_or(|agent| message.from == agent || message.recipients.contains(agent))
            })
            .collect();
        messages.sort_unstable_by_key(|message| std::cmp::Reverse(message.seq));
        messages.truncate(limit);
        messages
    }

    /// `agent`'s messages, oldest first; with `unacked_only`, those it has not acked.
    pub fn inbox(&self, agent: &str, unacked_only: bool) -> Vec<&Message> {
        self.inboxes
            .get(agent)
            .into_iter()
            .flatten()
            .map(|id| &self.by_id[id])
            .filter(|message| !unacked_only || !message.acked_by.contains_key(agent))
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct SentData {
    message: String,
    from: String,
    to: String,
    #[serde(rename = "type")]
    message_type: String,
    payload: Value,
    requires_ack: bool,
    recipients: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct AckedData {
    message: String,
    agent: String,
}

/// Sends a direct message or a broadcast.
pub(super) fn decide_send(
    branch: &dyn WorkBranch,
    spec: &MessageSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    let messages = &branch.work().messages;
    check_id("from", &spec.from)?;
    check_id("to", &spec.to)?;
    check_id("type", &spec.message_type)?;
    let recipients: Vec<String> = if spec.to == BROADCAST {
        branch
            .active_agents()
            .into_iter()
            .map(|agent| agent.id)
            .filter(|id| id != &spec.from)
            .collect()
    } else {
        vec![spec.to.clone()]
    };
    let id = generate_id("M", messages.by_id.len(), |id| {
        messages.by_id.contains_key(id)
    });
    let data = SentData {
        message: id.clone(),
        from: spec.from.clone(),
        to: spec.to.clone(),
        message_type: spec.message_type.clone(),
        payload: spec.payload.clone().unwrap_or(Value::Null),
        requires_ack: spec.requires_ack.unwrap_or(false),
        recipients,
    };
    Ok(vec![EventDraft::new(
        "message.sent",
        format!("message/{id}"),
        serde_json::to_value(data).expect("event data serializes"),
    )])
}

/// Acks a message for one recipient; no events if it already acked.
pub(super) fn decide_ack(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &AckSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    let message = branch
        .work()
        .messages
        .get(id)
        .ok_or_else(|| not_found("message", id))?;
    check_id("agent", &spec.agent)?;
    if !message.recipients.contains(&spec.agent) {
        return Err(Rejection::new(
            Code::NotRecipient,
            format!("agent '{}' did not receive message '{id}'", spec.agent),
        )
        .with("message_id", id)
        .with("agent", spec.agent.as_str()));
    }
    if message.acked_by.contains_key(&spec.agent) {
        return Ok(Vec::new());
    }
    let data = AckedData {
        message: id.to_owned(),
        agent: spec.agent.clone(),
    };
    Ok(vec![EventDraft::new(
        "message.acked",
        format!("message/{id}"),
        serde_json::to_value(data).expect("event data serializes"),
    )])
}

/// Folds a `message.*` event; false for an unknown type.
pub(super) fn apply(work: &mut Work, event: &Envelope, data: &Value) -> bool {
    let messages = &mut work.messages;
    match event.event_type.as_str() {
        "message.sent" => {
            let Some(sent) = parse_data::<SentData>(event, data) else {
                return true;
            };
            if messages.by_id.contains_key(&sent.message) {
                return true; // Sent once by the rules; a repeat changes nothing.
            }
            for recipient in &sent.recipients {
                messages
                    .inboxes
                    .entry(recipient.clone())
                    .or_default()
                    .push(sent.message.clone());
            }
            messages.by_id.insert(
                sent.message.clone(),
                Message {
                    id: sent.message,
                    from: sent.from,
                    to: sent.to,
                    message_type: sent.message_type,
                    payload: sent.payload,
                    requires_ack: sent.requires_ack,
                    recipients: sent.recipients.into_iter().collect(),
                    acked_by: BTreeMap::new(),
                    seq: event.seq,
                    sent_at_ms: event.ts_ms,
                },
            );
        }
        "message.acked" => {
            let Some(acked) = parse_data::<AckedData>(event, data) else {
                return true;
            };
            if let Some(message) = messages.by_id.get_mut(&acked.message) {
                message.acked_by.insert(acked.agent, event.seq);
            }
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::rejection::RejectionKind;
    use serde_json::json;

    use super::super::testkit::Harness;
    use super::super::WorkCommand;
    use super::*;

    fn send(from: &str, to: &str, requires_ack: bool) -> WorkCommand {
        WorkCommand::MessageSend(MessageSpec {
            from: from.into(),
            to: to.into(),
            message_type: "request".into(),
            payload: Some(json!({"please": "check"})),
            requires_ack: Some(requires_ack),
        })
    }

    fn ack(message: &str, agent: &str) -> WorkCommand {
        WorkCommand::MessageAck {
            message: message.into(),
            spec: AckSpec {
                agent: agent.into(),
            },
        }
    }

    fn inbox(harness: &Harness, agent: &str, unacked_only: bool) -> Vec<String> {
        harness
            .work()
            .messages
            .inbox(agent, unacked_only)
            .into_iter()
            .map(|message| message.id.clone())
            .collect()
    }

    #[test]
    fn a_broadcast_reaches_every_active_agent_but_its_sender() {
        let mut harness = Harness::new();
        for agent in ["a", "b", "c", "d"] {
            harness.register_agent(agent, &[]);
        }
        harness.kill_agent("d");
        let events = harness.ok(send("a", BROADCAST, false));
        assert_eq!(events[0].data_value()["recipients"], json!(["b", "c"]));
        harness.register_agent("late", &[]);
        assert_eq!(
            inbox(&harness, "a", false),
            Vec::<String>::new(),
            "not delivered to its sender"
        );
        assert_eq!(inbox(&harness, "b", false), ["M-1"]);
        assert_eq!(inbox(&harness, "c", false), ["M-1"]);
        assert_eq!(
            inbox(&harness, "d", false),
            Vec::<String>::new(),
            "killed agents are not active"
        );
        assert_eq!(
            inbox(&harness, "late", false),
            Vec::<String>::new(),
            "recipients are fixed when sent"
        );
    }

    #[test]
    fn direct_messages_are_acked_once_by_their_recipient() {
        let mut harness = Harness::new();
        harness.ok(send("a", "b", true));
        harness.ok(send("c", "b", false));
        assert_eq!(inbox(&harness, "b", true), ["M-1", "M-2"]);
        let events = harness.ok(ack("M-1", "b"));
        assert_eq!(events[0].event_type, "message.acked");
        assert!(
            harness.ok(ack("M-1", "b")).is_empty(),
            "a second ack writes nothing"
        );
        assert_eq!(inbox(&harness, "b", true), ["M-2"]);
        assert_eq!(inbox(&harness, "b", false), ["M-1", "M-2"]);
        let message = harness.work().messages.get("M-1").expect("exists");
        assert_eq!(message.view(Some("b"))["acked"], json!(true));
        assert_eq!(message.view(None)["acked_by"], json!(["b"]));
        let rejection = harness.err(ack("M-1", "a"));
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Forbidden, "not_recipient")
        );
        assert_eq!(harness.err(ack("M-9", "b")).kind, RejectionKind::NotFound);
        assert_eq!(
            harness.err(send("a", "", false)).details["field"],
            json!("to")
        );
    }
}
