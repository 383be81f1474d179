//! What a client sends to create, claim, assign, end or auction a task, and how a task's
//! body is checked and completed with defaults (priority, attempts, lease) before any
//! event is written. Kept apart from the rules so that every rule works on a validated
//! [`TaskDefinition`], never on raw input.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::binary_serde::{AsJsonText, OmitNone};
use crate::rejection::Rejection;
use crate::work::{check_duration, check_id, invalid};

/// The priority of a task created without one (SPEC §3).
pub const PRIORITY_DEFAULT: u8 = 5;

/// The least urgent priority.
pub const PRIORITY_MIN: u8 = 1;

/// The most urgent priority.
pub const PRIORITY_MAX: u8 = 10;

/// Attempts of a task created without `max_attempts` (SPEC §3).
pub const MAX_ATTEMPTS_DEFAULT: u32 = 3;

/// The largest `max_attempts`: a task that failed a hundred times will not succeed on the
/// next try, and the bound keeps a retry loop from running for days.
pub const MAX_ATTEMPTS_MAX: u32 = 100;

/// The claim lease of a task created without `timeout_ms`: five minutes, long enough for
/// an LLM step, short enough that a crashed worker's task is soon retried. `progress`
/// renews it.
pub const TIMEOUT_MS_DEFAULT: i64 = 5 * 60 * 1000;

/// The body of a task create (one element of `{"tasks": [...]}` or the whole body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The id; generated (`T-<n>`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The task type (what kind of work; claims may filter on it).
    #[serde(rename = "type")]
    pub task_type: String,
    /// A human title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// 1..=10, 10 most urgent; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Ids of tasks (existing, or in the same batch) that must complete first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    /// Capabilities an agent needs to claim it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Free-form input for the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// The claim lease in ms; default [`TIMEOUT_MS_DEFAULT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    /// How many attempts before the task fails for good; default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
    /// Whether it waits for `approve` before it becomes pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_approval: Option<bool>,
    /// The session it belongs to (else the write's session, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// A validated task definition with defaults applied: what `task.created` carries, and
/// what "the same body" compares.
///
/// Its JSON (the event's data) leaves absent options out, which a binary format without
/// field names (the state in a snapshot) cannot do: `Serialize` is written by hand below
/// to leave them out of JSON only. Keep it in the order of the fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskDefinition {
    /// The task type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// A human title.
    #[serde(default)]
    pub title: Option<String>,
    /// 1..=10.
    pub priority: u8,
    /// Dependencies, sorted and without duplicates.
    pub depends_on: Vec<String>,
    /// Required capabilities, sorted and without duplicates.
    pub capabilities: Vec<String>,
    /// Free-form input.
    #[serde(
        default,
        deserialize_with = "crate::binary_serde::json_text::option::deserialize"
    )]
    pub parameters: Option<Value>,
    /// The claim lease in ms.
    pub timeout_ms: i64,
    /// Attempts before failing for good.
    pub max_attempts: u32,
    /// Whether `approve` is needed.
    pub requires_approval: bool,
    /// The session given in the body.
    #[serde(default)]
    pub session: Option<String>,
}

impl Serialize for TaskDefinition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = OmitNone::new(serializer, "TaskDefinition", 10)?;
        fields.field("type", &self.task_type)?;
        fields.option("title", &self.title)?;
        fields.field("priority", &self.priority)?;
        fields.field("depends_on", &self.depends_on)?;
        fields.field("capabilities", &self.capabilities)?;
        fields.option("parameters", &self.parameters.as_ref().map(AsJsonText))?;
        fields.field("timeout_ms", &self.timeout_ms)?;
        fields.field("max_attempts", &self.max_attempts)?;
        fields.field("requires_approval", &self.requires_approval)?;
        fields.option("session", &self.session)?;
        fields.end()
    }
}

/// The body of `POST /v1/tasks/claim`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    /// Who claims.
    pub agent: String,
    /// The capabilities to match; default the agent's registered ones (none if it is not
    /// registered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Only tasks of these types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// How long the server may wait for a task (the server's concern; validated here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<i64>,
}

/// How `assign` picks an agent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AssignStrategy {
    /// The next capable active agent after the one the last round-robin assignment
    /// picked, in id order, wrapping around.
    RoundRobin,
    /// The capable active agent holding the fewest claimed tasks (ties: smallest id).
    LeastLoaded,
    /// The most specialised capable active agent: fewest registered capabilities, so
    /// generalists stay free for work only they can do (ties: fewest claims, then id).
    Capability,
}

impl AssignStrategy {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignStrategy::RoundRobin => "round_robin",
            AssignStrategy::LeastLoaded => "least_loaded",
            AssignStrategy::Capability => "capability",
        }
    }

    /// Parses a strategy name.
    pub fn parse(name: &str) -> Option<AssignStrategy> {
        [
            AssignStrategy::RoundRobin,
            AssignStrategy::LeastLoaded,
            AssignStrategy::Capability,
        ]
        .into_iter()
        .find(|strategy| strategy.as_str() == name)
    }
}

/// The body of `POST /v1/tasks/{id}/assign`: exactly one of `agent` and `strategy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignSpec {
    /// Assign to this agent (no capability check: the assigner decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Or pick among the active agents whose capabilities cover the task's:
    /// `round_robin`, `least_loaded` or `capability` (see [`AssignStrategy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

/// The body of `POST /v1/tasks/{id}/progress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressSpec {
    /// The claimant.
    pub agent: String,
    /// 0..=100.
    pub percent: f64,
    /// A free-form note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The body of `POST /v1/tasks/{id}/complete`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteSpec {
    /// The claimant.
    pub agent: String,
    /// The result (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// The body of `POST /v1/tasks/{id}/fail`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailSpec {
    /// The claimant.
    pub agent: String,
    /// What went wrong (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// Put the task back to pending with `attempt + 1` if attempts remain (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
}

/// The body of `POST /v1/tasks/{id}/release`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    /// The claimant.
    pub agent: String,
}

/// The body of `POST /v1/tasks/{id}/cancel` (may be empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelSpec {
    /// Why (default `cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `POST /v1/tasks/{id}/auction`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuctionSpec {
    /// How long bids are taken, from now, in ms.
    pub deadline_ms: i64,
    /// Bids with a lower confidence are not valid (default 0: every bid is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f64>,
}

/// The body of `POST /v1/tasks/{id}/bids`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BidSpec {
    /// The bidder.
    pub agent: String,
    /// What the agent asks for the task, >= 0, in the swarm's own unit ("points").
    pub price: f64,
    /// How long the agent expects to take, ms.
    pub estimated_ms: i64,
    /// How sure the agent is to succeed, 0..=1.
    pub confidence: f64,
}

pub(super) fn field_name(batch: bool, index: usize, name: &str) -> String {
    if batch {
        format!("tasks[{index}].{name}")
    } else {
        name.to_owned()
    }
}

pub(super) fn check_ids(field: &str, values: &[String]) -> Result<Vec<String>, Rejection> {
    for value in values {
        check_id(field, value)?;
    }
    let set: BTreeSet<String> = values.iter().cloned().collect();
    Ok(set.into_iter().collect())
}

pub(super) fn normalize(
    spec: &TaskSpec,
    field: &dyn Fn(&str) -> String,
) -> Result<TaskDefinition, Rejection> {
    check_id(&field("type"), &spec.task_type)?;
    let priority = spec.priority.unwrap_or(i64::from(PRIORITY_DEFAULT));
    if !(i64::from(PRIORITY_MIN)..=i64::from(PRIORITY_MAX)).contains(&priority) {
        return Err(invalid(
            &field("priority"),
            format!("priority must be from {PRIORITY_MIN} to {PRIORITY_MAX}, not {priority}"),
        ));
    }
    let timeout_ms = spec.timeout_ms.unwrap_or_else(|| {
        let (min, max) = crate::work::duration_bounds();
        TIMEOUT_MS_DEFAULT.clamp(min, max)
    });
    check_duration(&field("timeout_ms"), timeout_ms)?;
    let max_attempts = spec.max_attempts.unwrap_or(i64::from(MAX_ATTEMPTS_DEFAULT));
    if !(1..=i64::from(MAX_ATTEMPTS_MAX)).contains(&max_attempts) {
        return Err(invalid(
            &field("max_attempts"),
            format!("max_attempts must be from 1 to {MAX_ATTEMPTS_MAX}, not {max_attempts}"),
        ));
    }
    if let Some(session) = &spec.session {
        check_id(&field("session"), session)?;
    }
    Ok(TaskDefinition {
        task_type: spec.task_type.clone(),
        title: spec.title.clone(),
        priority: u8::try_from(priority).expect("checked to be 1..=10"),
        depends_on: check_ids(
            &field("depends_on"),
            spec.depends_on.as_deref().unwrap_or_default(),
        )?,
        capabilities: check_ids(
            &field("capabilities"),
            spec.capabilities.as_deref().unwrap_or_default(),
        )?,
        parameters: spec
            .parameters
            .clone()
            .filter(|parameters| !parameters.is_null()),
        timeout_ms,
        max_attempts: u32::try_from(max_attempts).expect("checked to be 1..=100"),
        requires_approval: spec.requires_approval.unwrap_or(false),
        session: spec.session.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::work::testkit::{create, create_all, Harness};
    use crate::work::WorkCommand;

    use super::super::testing::*;
    use super::TaskDefinition;

    #[test]
    fn invalid_values_name_their_field() {
        let mut harness = Harness::new();
        let cases = [
            (json!({"type": "t", "priority": 0}), "priority"),
            (json!({"type": "t", "priority": 11}), "priority"),
            (json!({"type": "t", "timeout_ms": 99}), "timeout_ms"),
            (json!({"type": "t", "max_attempts": 0}), "max_attempts"),
            (json!({"type": ""}), "type"),
            (json!({"type": "t", "id": "a\nb"}), "id"),
            (json!({"type": "t", "capabilities": [""]}), "capabilities"),
        ];
        for (spec, field) in cases {
            let rejection = harness.err(create(spec));
            assert_eq!(invalid_field(&rejection), field);
        }
        let rejection = harness.err(create_all(
            json!([{"type": "t"}, {"type": "t", "priority": 12}]),
        ));
        assert_eq!(invalid_field(&rejection), "tasks[1].priority");
        let rejection = harness.err(create_all(
            json!([{"id": "a", "type": "t"}, {"id": "a", "type": "t"}]),
        ));
        assert_eq!(invalid_field(&rejection), "tasks[1].id");
        let rejection = harness.err(WorkCommand::TaskCreate { tasks: Vec::new() });
        assert_eq!(invalid_field(&rejection), "tasks");
    }

    /// `task.created` carries the definition with absent options left out, byte for byte
    /// as the derived `Serialize` wrote it (the expected texts are events of the last
    /// version that derived it); postcard writes every field and gets the definition back.
    #[test]
    fn a_definition_leaves_absent_options_out_of_json_only() {
        let mut harness = Harness::new();
        let a = harness.ok(create(json!({
            "id": "a", "type": "build", "title": "Build", "priority": 8,
            "capabilities": ["rust"], "parameters": {"x": 1}, "session": "S-1",
        })));
        let b = harness.ok(create(
            json!({"id": "b", "type": "test", "depends_on": ["a"]}),
        ));
        assert_eq!(
            a[0].data,
            r#"{"task":"a","type":"build","title":"Build","priority":8,"depends_on":[],"capabilities":["rust"],"parameters":{"x":1},"timeout_ms":300000,"max_attempts":3,"requires_approval":false,"session":"S-1"}"#
        );
        assert_eq!(
            b[0].data,
            r#"{"task":"b","type":"test","priority":5,"depends_on":["a"],"capabilities":[],"timeout_ms":300000,"max_attempts":3,"requires_approval":false}"#
        );
        for id in ["a", "b"] {
            let definition = &harness.task(id).definition;
            let bytes = postcard::to_allocvec(definition).expect("encodes");
            let decoded: TaskDefinition = postcard::from_bytes(&bytes).expect("decodes");
            assert_eq!(&decoded, definition);
        }
    }
}
