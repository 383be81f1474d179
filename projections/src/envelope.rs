//! The event envelope (SPEC §2): its in-memory form, its binary form in the log (postcard),
//! its JSON form on the wire, and the SHA-256 hash chain that makes the history
//! tamper-evident.
//!
//! The log stores a record's seq and timestamp in its own frame; the payload is a
//! [`StoredEvent`]. JSON values (`data`, `meta`) are kept as their serialized text so that
//! the bytes hashed when the event was written are exactly the bytes read back: no
//! re-serialization can change the hash.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use std::fmt::Write as _;

use crate::time::push_rfc3339_ms;

/// The hash the first event chains from: 32 zero bytes.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// What a rule or a client asks to append; the engine stamps it with seq, time, branch and
/// hash to make an [`Envelope`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    /// The event type, e.g. `task.claimed`.
    pub event_type: String,
    /// The entity the event belongs to, e.g. `task/T-17`.
    pub stream: String,
    /// The event's payload.
    pub data: Payload,
    /// Who caused it; `None` means the actor of the request that produced the draft.
    pub actor: Option<String>,
}

impl EventDraft {
    /// A draft on behalf of the requesting actor.
    pub fn new(event_type: impl Into<String>, stream: impl Into<String>, data: Value) -> Self {
        EventDraft {
            event_type: event_type.into(),
            stream: stream.into(),
            data: Payload::Tree(data),
            actor: None,
        }
    }

    /// A draft caused by the server itself (a timer), with actor `system`.
    pub fn system(event_type: impl Into<String>, stream: impl Into<String>, data: Value) -> Self {
        EventDraft {
            actor: Some(SYSTEM_ACTOR.to_owned()),
            ..EventDraft::new(event_type, stream, data)
        }
    }
}

/// A draft's payload: a tree a rule built, or the JSON text a client sent, already
/// checked and compact, kept as text so that a custom event's data is never built into a
/// tree on its way from the request to the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Built by a rule.
    Tree(Value),
    /// JSON text in serde_json's compact form (what `Value::to_string` writes).
    Text(String),
}

impl Payload {
    /// The string member `key` of an object payload. Text is parsed only if it holds the
    /// key: compact text spells every key in one way, so `"key":` not occurring in it
    /// means the key is absent.
    pub fn str_field(&self, key: &str) -> Option<String> {
        match self {
            Payload::Tree(value) => value.get(key)?.as_str().map(str::to_owned),
            Payload::Text(text) => {
                let member = |(at, _): (usize, &str)| {
                    text[..at].ends_with('"') && text[at + key.len()..].starts_with("\":")
                };
                if !text.match_indices(key).any(member) {
                    return None;
                }
                let value: Value = serde_json::from_str(text).ok()?;
                value.get(key)?.as_str().map(str::to_owned)
            }
        }
    }

    /// The tree a rule built; `None` for a client's text.
    pub fn as_tree(&self) -> Option<&Value> {
        match self {
            Payload::Tree(value) => Some(value),
            Payload::Text(_) => None,
        }
    }

    /// The payload as JSON text, as the envelope stores it.
    pub fn into_text(self) -> String {
        match self {
            Payload::Tree(value) => value.to_string(),
            Payload::Text(text) => text,
        }
    }
}

/// The actor of timer-driven events.
pub const SYSTEM_ACTOR: &str = "system";

/// The record written for the first event of a write that carried an `Idempotency-Key`:
/// enough to answer a retry with the first response, also after a restart. It is stored
/// beside the event, outside the hashed bytes, because the response itself contains the
/// event's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    /// The client's key.
    pub key: String,
    /// SHA-256 of the request (route and body), to tell a retry from a reuse of the key.
    pub request_sha256: [u8; 32],
    /// The HTTP status of the first response.
    pub status: u16,
    /// The body of the first response, as JSON text.
    pub response: String,
}

/// A committed event: the envelope of SPEC §2.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Global, gap-free sequence number from 1.
    pub seq: u64,
    /// Server time at append, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The branch the event was written on.
    pub branch: String,
    /// The event type.
    pub event_type: String,
    /// The entity the event belongs to.
    pub stream: String,
    /// Who caused it (`system` for timers).
    pub actor: String,
    /// Optional grouping id.
    pub session: Option<String>,
    /// Optional id tying the events of one workflow together.
    pub correlation: Option<String>,
    /// Optional provenance object, as JSON text.
    pub meta: Option<String>,
    /// The payload, as JSON text.
    pub data: String,
    /// SHA-256 over the previous event's hash and this event's canonical bytes.
    pub hash: [u8; 32],
    /// Present on the first event of a write made with an `Idempotency-Key`.
    pub idempotency: Option<Idempotency>,
}

/// Why a stored event could not be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The record payload is not a valid [`StoredEvent`].
    #[error("event at seq {seq} does not decode: {source}")]
    Decode {
        /// The record's seq.
        seq: u64,
        /// What postcard reported.
        source: postcard::Error,
    },
}

/// The binary form of an event in a log record's payload; seq and timestamp live in the
/// record frame. Field order is part of the on-disk format: append new fields at the end
/// only, as `Option`s, and bump [`STORED_EVENT_VERSION`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Format version of this struct.
    pub version: u8,
    /// The branch.
    pub branch: String,
    /// The event type.
    pub event_type: String,
    /// The stream.
    pub stream: String,
    /// The actor.
    pub actor: String,
    /// The session.
    pub session: Option<String>,
    /// The correlation id.
    pub correlation: Option<String>,
    /// The meta object as JSON text.
    pub meta: Option<String>,
    /// The data as JSON text.
    pub data: String,
    /// The chained hash.
    pub hash: [u8; 32],
    /// The idempotency record, if any.
    pub idempotency: Option<Idempotency>,
}

/// [`StoredEvent`] borrowed from an envelope, for encoding without copying. Postcard
/// writes `&str` as it writes `String` and `&T` as `T`, so the bytes are identical (a
/// test checks the round trip).
#[derive(Serialize)]
struct StoredEventRef<'a> {
    version: u8,
    branch: &'a str,
    event_type: &'a str,
    stream: &'a str,
    actor: &'a str,
    session: Option<&'a str>,
    correlation: Option<&'a str>,
    meta: Option<&'a str>,
    data: &'a str,
    hash: &'a [u8; 32],
    idempotency: Option<&'a Idempotency>,
}

/// [`StoredEvent`] decoded in place: its strings borrow the record's bytes, so checking a
/// stored hash allocates nothing. Same fields in the same order.
#[derive(Deserialize)]
struct StoredEventView<'a> {
    #[allow(dead_code)] // Read to keep the field order; one version exists so far.
    version: u8,
    branch: &'a str,
    event_type: &'a str,
    stream: &'a str,
    actor: &'a str,
    session: Option<&'a str>,
    correlation: Option<&'a str>,
    meta: Option<&'a str>,
    data: &'a str,
    hash: [u8; 32],
    #[allow(dead_code)] // Decoded so that a damaged tail is caught, not used.
    idempotency: Option<IdempotencyView<'a>>,
}

/// [`Idempotency`] decoded in place.
#[derive(Deserialize)]
#[allow(dead_code)] // Decoded for validation only.
struct IdempotencyView<'a> {
    key: &'a str,
    request_sha256: [u8; 32],
    status: u16,
    response: &'a str,
}

/// The current version of [`StoredEvent`].
pub const STORED_EVENT_VERSION: u8 = 1;

/// The canonical bytes that the hash covers: every envelope field but the hash and the
/// idempotency record, in a fixed order, postcard-encoded.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    ts_ms: i64,
    branch: &'a str,
    event_type: &'a str,
    stream: &'a str,
    actor: &'a str,
    session: Option<&'a str>,
    correlation: Option<&'a str>,
    meta: Option<&'a str>,
    data: &'a str,
}

impl Canonical<'_> {
    /// SHA-256 over `previous` and these canonical bytes, encoded into `scratch`.
    fn chain_hash(&self, previous: &[u8; 32], scratch: &mut Vec<u8>) -> [u8; 32] {
        scratch.clear();
        let bytes = postcard::to_extend(self, std::mem::take(scratch))
            .expect("postcard encodes plain structs of strings and integers into a Vec");
        let mut hasher = Sha256::new();
        hasher.update(previous);
        hasher.update(&bytes);
        *scratch = bytes;
        hasher.finalize().into()
    }
}

impl Envelope {
    /// Computes the chained hash of this envelope's content given the previous event's hash.
    pub fn compute_hash(&self, previous: &[u8; 32]) -> [u8; 32] {
        let canonical = Canonical {
            seq: self.seq,
            ts_ms: self.ts_ms,
            branch: &self.branch,
            event_type: &self.event_type,
            stream: &self.stream,
            actor: &self.actor,
            session: self.session.as_deref(),
            correlation: self.correlation.as_deref(),
            meta: self.meta.as_deref(),
            data: &self.data,
        };
        canonical.chain_hash(previous, &mut Vec::new())
    }

    /// Checks a stored event's hash straight from its record payload, without building an
    /// envelope: returns `(stored, computed)`, equal when the event is intact and chains
    /// from `previous`. `scratch` is reused between calls (an audit checks millions).
    pub fn check_stored_hash(
        seq: u64,
        ts_ms: i64,
        payload: &[u8],
        previous: &[u8; 32],
        scratch: &mut Vec<u8>,
    ) -> Result<([u8; 32], [u8; 32]), EnvelopeError> {
        let stored: StoredEventView<'_> = postcard::from_bytes(payload)
            .map_err(|source| EnvelopeError::Decode { seq, source })?;
        let canonical = Canonical {
            seq,
            ts_ms,
            branch: stored.branch,
            event_type: stored.event_type,
            stream: stored.stream,
            actor: stored.actor,
            session: stored.session,
            correlation: stored.correlation,
            meta: stored.meta,
            data: stored.data,
        };
        Ok((stored.hash, canonical.chain_hash(previous, scratch)))
    }

    /// Sets `hash` from the previous event's hash and returns it.
    pub fn seal(&mut self, previous: &[u8; 32]) -> [u8; 32] {
        self.hash = self.compute_hash(previous);
        self.hash
    }

    /// The record payload for the log.
    pub fn encode(&self) -> Vec<u8> {
        let stored = StoredEventRef {
            version: STORED_EVENT_VERSION,
            branch: &self.branch,
            event_type: &self.event_type,
            stream: &self.stream,
            actor: &self.actor,
            session: self.session.as_deref(),
            correlation: self.correlation.as_deref(),
            meta: self.meta.as_deref(),
            data: &self.data,
            hash: &self.hash,
            idempotency: self.idempotency.as_ref(),
        };
        postcard::to_allocvec(&stored).expect("postcard encodes StoredEvent into a Vec")
    }

    /// The branch and stream of a stored event, read from its record payload without
    /// decoding the rest: the server's stream index is rebuilt from these two fields, and
    /// they come first in [`StoredEvent`] (after the version), so the event's data is not
    /// even looked at.
    pub fn decode_branch_and_stream(
        seq: u64,
        payload: &[u8],
    ) -> Result<(&str, &str), EnvelopeError> {
        let ((_version, branch, _event_type, stream), _rest): ((u8, &str, &str, &str), _) =
            postcard::take_from_bytes(payload)
                .map_err(|source| EnvelopeError::Decode { seq, source })?;
        Ok((branch, stream))
    }

    /// Rebuilds an envelope from a log record.
    pub fn decode(seq: u64, ts_ms: i64, payload: &[u8]) -> Result<Envelope, EnvelopeError> {
        let stored: StoredEvent = postcard::from_bytes(payload)
            .map_err(|source| EnvelopeError::Decode { seq, source })?;
        Ok(Envelope {
            seq,
            ts_ms,
            branch: stored.branch,
            event_type: stored.event_type,
            stream: stored.stream,
            actor: stored.actor,
            session: stored.session,
            correlation: stored.correlation,
            meta: stored.meta,
            data: stored.data,
            hash: stored.hash,
            idempotency: stored.idempotency,
        })
    }

    /// The payload parsed as JSON (`null` if the stored text is somehow not JSON, which
    /// the engine never writes).
    pub fn data_value(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }

    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        push_hex(&mut out, &self.hash);
        out
    }

    /// The JSON form of SPEC §2, as text. Optional fields are omitted when absent.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(160 + self.data.len() + self.stream.len());
        out.push_str("{\"seq\":");
        let _ = write!(out, "{}", self.seq);
        out.push_str(",\"ts\":\"");
        push_rfc3339_ms(&mut out, self.ts_ms);
        out.push_str("\",\"branch\":");
        push_json_string(&mut out, &self.branch);
        out.push_str(",\"type\":");
        push_json_string(&mut out, &self.event_type);
        out.push_str(",\"stream\":");
        push_json_string(&mut out, &self.stream);
        out.push_str(",\"actor\":");
        push_json_string(&mut out, &self.actor);
        if let Some(session) = &self.session {
            out.push_str(",\"session\":");
            push_json_string(&mut out, session);
        }
        if let Some(correlation) = &self.correlation {
            out.push_str(",\"correlation\":");
            push_json_string(&mut out, correlation);
        }
        if let Some(meta) = &self.meta {
            out.push_str(",\"meta\":");
            out.push_str(meta);
        }
        out.push_str(",\"data\":");
        out.push_str(&self.data);
        out.push_str(",\"hash\":\"");
        push_hex(&mut out, &self.hash);
        out.push_str("\"}");
        out
    }

    /// The JSON form as a value.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.to_json()).expect("Envelope::to_json writes valid JSON")
    }
}

/// Appends `text` as a JSON string; only text with a character to escape goes through
/// serde_json.
fn push_json_string(out: &mut String, text: &str) {
    if text
        .bytes()
        .any(|byte| byte < 0x20 || byte == b'"' || byte == b'\\')
    {
        out.push_str(&serde_json::to_string(text).expect("a str always serializes to JSON"));
    } else {
        out.push('"');
        out.push_str(text);
        out.push('"');
    }
}

/// Appends `bytes` in lowercase hexadecimal.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(seq: u64) -> Envelope {
        Envelope {
            seq,
            ts_ms: 1_795_341_600_123,
            branch: "main".into(),
            event_type: "task.claimed".into(),
            stream: "task/T-17".into(),
            actor: "agent-1".into(),
            session: Some("inc-1234".into()),
            correlation: None,
            meta: Some(r#"{"model":"m"}"#.into()),
            data: r#"{"attempt":1}"#.into(),
            hash: GENESIS_HASH,
            idempotency: None,
        }
    }

    #[test]
    fn a_text_payload_finds_a_top_level_string_member_like_a_tree() {
        for text in [
            r#"{"session":"s-1","n":1}"#,
            r#"{"n":{"session":"inner"},"session":"s-2"}"#,
            r#"{"n":{"session":"inner"}}"#,
            r#"{"note":"the \"session\": key","x":"session"}"#,
            r#"{"session":7}"#,
            r#"["session"]"#,
            r#"{}"#,
        ] {
            let tree: Value = serde_json::from_str(text).expect("valid");
            assert_eq!(
                Payload::Text(text.into()).str_field("session"),
                Payload::Tree(tree).str_field("session"),
                "{text}"
            );
        }
        assert_eq!(
            Payload::Text(r#"{"session":"s-1"}"#.into()).str_field("session"),
            Some("s-1".into())
        );
    }

    #[test]
    fn the_json_form_escapes_what_json_needs_and_nothing_else() {
        let mut event = sample(18_446_744_073_709_551_615);
        event.seal(&[7; 32]);
        event.actor = "a \"quoted\" \\ back\u{1}slash".into();
        event.stream = "caf\u{e9}/\u{1f600}/\u{7f}".into();
        event.session = None;
        event.correlation = Some("c".into());
        let text = event.to_json();
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("valid JSON"),
            json!({
                "seq": 18_446_744_073_709_551_615_u64,
                "ts": "2026-11-22T10:00:00.123Z",
                "branch": "main",
                "type": "task.claimed",
                "stream": "caf\u{e9}/\u{1f600}/\u{7f}",
                "actor": "a \"quoted\" \\ back\u{1}slash",
                "correlation": "c",
                "meta": {"model": "m"},
                "data": {"attempt": 1},
                "hash": hex::encode(event.hash),
            })
        );
        assert!(
            text.contains(r#""actor":"a \"quoted\" \\ back\u0001slash""#),
            "{text}"
        );
        assert_eq!(event.hash_hex(), hex::encode(event.hash));
    }

    #[test]
    fn a_stored_hash_is_checked_from_the_record_bytes_alone() {
        let previous = [9; 32];
        let mut event = sample(7);
        event.seal(&previous);
        event.idempotency = Some(Idempotency {
            key: "k".into(),
            request_sha256: [1; 32],
            status: 201,
            response: r#"{"seq":7}"#.into(),
        });
        let payload = event.encode();
        let mut scratch = Vec::new();
        let (stored, computed) =
            Envelope::check_stored_hash(7, event.ts_ms, &payload, &previous, &mut scratch)
                .expect("decodes");
        assert_eq!(stored, event.hash);
        assert_eq!(computed, event.compute_hash(&previous));
        assert_eq!(stored, computed);

        // Another predecessor, seq or time, or a changed byte of the data: no match.
        let check = |seq, ts_ms, payload: &[u8], previous: &[u8; 32]| {
            let (stored, computed) =
                Envelope::check_stored_hash(seq, ts_ms, payload, previous, &mut Vec::new())
                    .expect("decodes");
            stored == computed
        };
        assert!(!check(7, event.ts_ms, &payload, &GENESIS_HASH));
        assert!(!check(8, event.ts_ms, &payload, &previous));
        assert!(!check(7, event.ts_ms + 1, &payload, &previous));
        let mut tampered = payload.clone();
        let at = tampered
            .windows(8)
            .position(|window| window == b"attempt\"")
            .expect("the data is stored as text");
        tampered[at] = b'A';
        assert!(!check(7, event.ts_ms, &tampered, &previous));
        assert!(matches!(
            Envelope::check_stored_hash(7, event.ts_ms, &payload[..10], &previous, &mut scratch),
            Err(EnvelopeError::Decode { seq: 7, .. })
        ));
    }

    #[test]
    fn branch_and_stream_decode_from_the_front_of_a_record() {
        let mut event = sample(3);
        event.branch = "side".into();
        event.seal(&GENESIS_HASH);
        let payload = event.encode();
        assert_eq!(
            Envelope::decode_branch_and_stream(3, &payload).expect("decodes"),
            ("side", "task/T-17")
        );
        assert!(matches!(
            Envelope::decode_branch_and_stream(3, &payload[..6]),
            Err(EnvelopeError::Decode { seq: 3, .. })
        ));
    }

    #[test]
    fn encode_decode_round_trips() {
        let mut event = sample(42);
        event.seal(&GENESIS_HASH);
        event.idempotency = Some(Idempotency {
            key: "k".into(),
            request_sha256: [7; 32],
            status: 201,
            response: "{}".into(),
        });
        let decoded = Envelope::decode(42, event.ts_ms, &event.encode()).expect("decodes");
        assert_eq!(decoded, event);
        let owned = StoredEvent {
            version: STORED_EVENT_VERSION,
            branch: event.branch.clone(),
            event_type: event.event_type.clone(),
            stream: event.stream.clone(),
            actor: event.actor.clone(),
            session: event.session.clone(),
            correlation: event.correlation.clone(),
            meta: event.meta.clone(),
            data: event.data.clone(),
            hash: event.hash,
            idempotency: event.idempotency.clone(),
        };
        assert_eq!(
            postcard::to_allocvec(&owned).expect("encodes"),
            event.encode(),
            "the borrowed encoding is byte for byte the stored format"
        );
    }

    #[test]
    fn json_form_matches_the_spec_shape() {
        let event = sample(42);
        let value = event.to_value();
        assert_eq!(value["seq"], json!(42));
        assert_eq!(value["ts"], json!("2026-11-22T10:00:00.123Z"));
        assert_eq!(value["type"], json!("task.claimed"));
        assert_eq!(value["session"], json!("inc-1234"));
        assert_eq!(value["meta"], json!({"model": "m"}));
        assert_eq!(value["data"], json!({"attempt": 1}));
        assert!(
            value.get("correlation").is_none(),
            "absent optional fields are omitted"
        );
        assert_eq!(value["hash"].as_str().map(str::len), Some(64));
    }

    #[test]
    fn hash_chains_and_detects_any_field_change() {
        let mut first = sample(1);
        let first_hash = first.seal(&GENESIS_HASH);
        let mut second = sample(2);
        let second_hash = second.seal(&first_hash);
        assert_ne!(first_hash, second_hash);
        let mut tampered = second.clone();
        tampered.data = r#"{"attempt":2}"#.into();
        assert_ne!(tampered.compute_hash(&first_hash), second_hash);
        assert_ne!(
            second.compute_hash(&GENESIS_HASH),
            second_hash,
            "the chain depends on the previous hash"
        );
        let mut with_key = second.clone();
        with_key.idempotency = Some(Idempotency {
            key: "k".into(),
            request_sha256: [0; 32],
            status: 201,
            response: String::new(),
        });
        assert_eq!(
            with_key.compute_hash(&first_hash),
            second_hash,
            "the idempotency record is outside the hash"
        );
    }
}
