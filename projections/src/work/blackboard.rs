//! The blackboard (SPEC §3 "Blackboard"): findings that agents report, and hypotheses
//! whose confidence the evidence attached to them moves.
//!
//! A hypothesis's confidence is a Bayesian log-odds update, bounded in (0, 1):
//!
//! ```text
//! prior      = clamp(proposed confidence, 0.001, 0.999)
//! log_odds   = ln(prior / (1 - prior)) + Σ sign_i × weight_i × ln 3
//! confidence = 1 / (1 + e^(-log_odds))
//! ```
//!
//! with `sign_i` +1 for supporting and −1 for refuting evidence and `weight_i` in 0..=10
//! (default 1). One unit of weight multiplies the odds by 3 (or divides them by 3): a
//! supporting finding of weight 1 moves 0.5 to 0.75, a refuting one moves it to 0.25, and
//! a supporting and a refuting finding of equal weight cancel out. The clamp keeps a prior
//! of exactly 0 or 1 movable; until the first evidence the confidence is the prior as
//! proposed. `validate` settles it: confirmed sets the confidence to 1,
//! refuted to 0, and the evidence list is closed.

use crate::rejection::Code;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    already_exists, check_id, check_unit, conflict, format_instant, generate_id, invalid,
    not_found, parse_data, Work, WorkBranch,
};
use crate::envelope::{Envelope, EventDraft};
use crate::rejection::Rejection;

/// The bound of the prior's clamp: priors are kept in `[PRIOR_EPSILON, 1 - PRIOR_EPSILON]`
/// so their log-odds is finite (±6.9) and evidence can still move them.
pub const PRIOR_EPSILON: f64 = 0.001;

/// The largest evidence weight: ten units move the odds by 3^10 ≈ 59,000, which takes any
/// clamped prior past 0.98 in one step; more would only hide a mistake.
pub const EVIDENCE_WEIGHT_MAX: f64 = 10.0;

/// The kind of a finding.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FindingCategory {
    /// Something seen.
    Observation,
    /// Something suspected.
    Hypothesis,
    /// Something concluded.
    Conclusion,
}

impl FindingCategory {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCategory::Observation => "observation",
            FindingCategory::Hypothesis => "hypothesis",
            FindingCategory::Conclusion => "conclusion",
        }
    }

    /// Parses a category name.
    pub fn parse(name: &str) -> Option<FindingCategory> {
        [
            FindingCategory::Observation,
            FindingCategory::Hypothesis,
            FindingCategory::Conclusion,
        ]
        .into_iter()
        .find(|category| category.as_str() == name)
    }
}

/// One piece of evidence of a finding: where it comes from and what it showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindingEvidence {
    /// Where it comes from (`prometheus`, `logs`, ...).
    pub source: String,
    /// What was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<Value>,
    /// What came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// The body of `POST /v1/findings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindingSpec {
    /// The id; generated (`F-<n>`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Who reports it.
    pub agent: String,
    /// The session it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `observation`, `hypothesis` or `conclusion`.
    pub category: String,
    /// What was found (any JSON but null).
    pub content: Value,
    /// 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Supporting evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Vec<FindingEvidence>>,
    /// Tags to query by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// A reported finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The id.
    pub id: String,
    /// The reporter.
    pub agent: String,
    /// The session.
    #[serde(default)]
    pub session: Option<String>,
    /// The category.
    pub category: FindingCategory,
    /// What was found.
    #[serde(with = "crate::binary_serde::json_text")]
    pub content: Value,
    /// 0..=1.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Evidence (as JSON text in a binary format: its JSON leaves out absent options, see
    /// `binary_serde`).
    #[serde(with = "crate::binary_serde::json_text")]
    pub evidence: Vec<FindingEvidence>,
    /// Tags, sorted, without duplicates.
    pub tags: Vec<String>,
    /// The seq of `finding.reported`.
    pub seq: u64,
    /// When it was reported.
    pub reported_at_ms: i64,
}

impl Finding {
    /// The finding as the HTTP API shows it.
    pub fn view(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("agent".into(), json!(self.agent));
        if let Some(session) = &self.session {
            out.insert("session".into(), json!(session));
        }
        out.insert("category".into(), json!(self.category));
        out.insert("content".into(), self.content.clone());
        if let Some(confidence) = self.confidence {
            out.insert("confidence".into(), json!(confidence));
        }
        out.insert("evidence".into(), json!(self.evidence));
        out.insert("tags".into(), json!(self.tags));
        out.insert("seq".into(), json!(self.seq));
        out.insert(
            "reported_at".into(),
            json!(format_instant(self.reported_at_ms)),
        );
        Value::Object(out)
    }

    /// Whether the finding carries the same body as `spec` would create.
    fn same_as(&self, spec: &FindingData) -> bool {
        self.agent == spec.agent
            && self.session == spec.session
            && self.category == spec.category
            && self.content == spec.content
            && self.confidence == spec.confidence
            && self.evidence == spec.evidence
            && self.tags == spec.tags
    }
}

/// Filters of `GET /v1/findings`; all given filters must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingFilter {
    /// Only this session.
    pub session: Option<String>,
    /// Only this reporter.
    pub agent: Option<String>,
    /// Only this category.
    pub category: Option<FindingCategory>,
    /// Only findings with this tag.
    pub tag: Option<String>,
}

/// The body of `POST /v1/hypotheses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HypothesisSpec {
    /// The id; generated (`H-<n>`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What is suspected.
    pub description: String,
    /// The prior confidence, 0..=1.
    pub confidence: f64,
    /// The session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// The body of `POST /v1/hypotheses/{id}/evidence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSpec {
    /// The finding that is the evidence.
    pub finding: String,
    /// Whether it supports (true) or refutes (false) the hypothesis.
    pub supports: bool,
    /// 0..=10, default 1 (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// The body of `POST /v1/hypotheses/{id}/validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateSpec {
    /// True confirms, false refutes.
    pub result: bool,
    /// What settled it (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Value>,
}

/// Whether a hypothesis is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HypothesisStatus {
    /// Evidence may still move it.
    Open,
    /// Validated true.
    Confirmed,
    /// Validated false.
    Refuted,
}

/// Evidence attached to a hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HypothesisEvidence {
    /// The finding.
    pub finding: String,
    /// Supports or refutes.
    pub supports: bool,
    /// Its weight.
    pub weight: f64,
    /// The seq of `hypothesis.evidence_added`.
    pub seq: u64,
}

/// A hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    /// The id.
    pub id: String,
    /// What is suspected.
    pub description: String,
    /// The confidence it was proposed with.
    pub prior: f64,
    /// The aggregate confidence (see the module docs).
    pub confidence: f64,
    /// The session.
    #[serde(default)]
    pub session: Option<String>,
    /// Open, confirmed or refuted.
    pub status: HypothesisStatus,
    /// Evidence, in the order it was added.
    pub evidence: Vec<HypothesisEvidence>,
    /// Who proposed it (the event's actor).
    pub proposed_by: String,
    /// Who validated it.
    #[serde(default)]
    pub validated_by: Option<String>,
    /// What settled it.
    #[serde(default, with = "crate::binary_serde::json_text::option")]
    pub validation_evidence: Option<Value>,
    /// The seq of `hypothesis.proposed`.
    pub seq: u64,
}

impl Hypothesis {
    /// The hypothesis as the HTTP API shows it.
    pub fn view(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("description".into(), json!(self.description));
        out.insert("confidence".into(), json!(self.confidence));
        out.insert("prior".into(), json!(self.prior));
        out.insert("status".into(), json!(self.status));
        if let Some(session) = &self.session {
            out.insert("session".into(), json!(session));
        }
        out.insert("evidence".into(), json!(self.evidence));
        out.insert("proposed_by".into(), json!(self.proposed_by));
        if let Some(by) = &self.validated_by {
            out.insert("validated_by".into(), json!(by));
        }
        if let Some(evidence) = &self.validation_evidence {
            out.insert("validation_evidence".into(), evidence.clone());
        }
        Value::Object(out)
    }
}

/// The aggregate confidence of a hypothesis with `prior` and `evidence` (see the module
/// docs): the prior itself, unclamped, until there is evidence. Always within 0..=1.
pub fn aggregate_confidence(prior: f64, evidence: impl IntoIterator<Item = (bool, f64)>) -> f64 {
    let mut evidence = evidence.into_iter().peekable();
    if evidence.peek().is_none() {
        return prior;
    }
    let prior = prior.clamp(PRIOR_EPSILON, 1.0 - PRIOR_EPSILON);
    let mut log_odds = (prior / (1.0 - prior)).ln();
    for (supports, weight) in evidence {
        let sign = if supports { 1.0 } else { -1.0 };
        log_odds += sign * weight * 3f64.ln();
    }
    let confidence = 1.0 / (1.0 + (-log_odds).exp());
    assert!(
        (0.0..=1.0).contains(&confidence),
        "a logistic is within 0..=1"
    );
    confidence
}

/// Findings and hypotheses of a branch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Blackboard {
    /// Findings by id.
    pub findings: BTreeMap<String, Finding>,
    /// Hypotheses by id.
    pub hypotheses: BTreeMap<String, Hypothesis>,
}

impl Blackboard {
    /// The finding `id`.
    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.get(id)
    }

    /// The findings matching `filter`, in the order they were reported. Scans every
    /// finding: findings are written by reasoning agents, so there are thousands, not
    /// millions.
    pub fn query_findings(&self, filter: &FindingFilter) -> Vec<&Finding> {
        let mut found: Vec<&Finding> = self
            .findings
            .values()
            .filter(|finding| {
                filter
                    .session
                    .as_ref()
                    .is_none_or(|session| finding.session.as_ref() == Some(session))
                    && filter
                        .agent
                        .as_ref()
                        .is_none_or(|agent| &finding.agent == agent)
                    && filter
                        .category
                        .is_none_or(|category| finding.category == category)
                    && filter
                        .tag
                        .as_ref()
                        .is_none_or(|tag| finding.tags.binary_search(tag).is_ok())
            })
            .collect();
        found.sort_by_key(|finding| finding.seq);
        found
    }

    /// The hypothesis `id`.
    pub fn hypothesis(&self, id: &str) -> Option<&Hypothesis> {
        self.hypotheses.get(id)
    }

    /// The hypotheses (of `session`, if given), most confident first; ties by id.
    pub fn hypotheses_by_confidence(&self, session: Option<&str>) -> Vec<&Hypothesis> {
        let mut found: Vec<&Hypothesis> = self
            .hypotheses
            .values()
            .filter(|hypothesis| {
                session.is_none_or(|session| hypothesis.session.as_deref() == Some(session))
            })
            .collect();
        found.sort_by(|left, right| {
            right
                .confidence
                .total_cmp(&left.confidence)
                .then_with(|| left.id.cmp(&right.id))
        });
        found
    }
}

// ----- event data -----

#[derive(Serialize, Deserialize)]
struct FindingData {
    finding: String,
    agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    category: FindingCategory,
    content: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confidence: Option<f64>,
    evidence: Vec<FindingEvidence>,
    tags: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ProposedData {
    hypothesis: String,
    description: String,
    confidence: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct EvidenceData {
    hypothesis: String,
    finding: String,
    supports: bool,
    weight: f64,
    /// The aggregate after this evidence, for subscribers; `apply` recomputes it.
    confidence: f64,
}

#[derive(Serialize, Deserialize)]
struct ValidatedData {
    hypothesis: String,
    result: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    evidence: Option<Value>,
}

fn to_data(data: impl Serialize) -> Value {
    serde_json::to_value(data).expect("event data serializes")
}

// ----- decide -----

/// Reports a finding; no events if the same finding exists.
pub(super) fn decide_finding(
    branch: &dyn WorkBranch,
    spec: &FindingSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    let blackboard = &branch.work().blackboard;
    check_id("agent", &spec.agent)?;
    if let Some(session) = &spec.session {
        check_id("session", session)?;
    }
    let category = FindingCategory::parse(&spec.category).ok_or_else(|| {
        invalid(
            "category",
            format!(
                "category must be observation, hypothesis or conclusion, not '{}'",
                spec.category
            ),
        )
    })?;
    if spec.content.is_null() {
        return Err(invalid("content", "content must not be null"));
    }
    if let Some(confidence) = spec.confidence {
        check_unit("confidence", confidence)?;
    }
    let evidence = spec.evidence.clone().unwrap_or_default();
    for (index, item) in evidence.iter().enumerate() {
        check_id(&format!("evidence[{index}].source"), &item.source)?;
    }
    let mut tags = spec.tags.clone().unwrap_or_default();
    for tag in &tags {
        check_id("tags", tag)?;
    }
    tags.sort();
    tags.dedup();
    let id = match &spec.id {
        Some(id) => {
            check_id("id", id)?;
            id.clone()
        }
        None => generate_id("F", blackboard.findings.len(), |id| {
            blackboard.findings.contains_key(id)
        }),
    };
    let data = FindingData {
        finding: id.clone(),
        agent: spec.agent.clone(),
        session: spec.session.clone(),
        category,
        content: spec.content.clone(),
        confidence: spec.confidence,
        evidence,
        tags,
    };
    if let Some(existing) = blackboard.findings.get(&id) {
        if existing.same_as(&data) {
            return Ok(Vec::new());
        }
        return Err(already_exists("finding", &id));
    }
    Ok(vec![EventDraft::new(
        "finding.reported",
        format!("finding/{id}"),
        to_data(data),
    )])
}

/// Proposes a hypothesis; no events if the same hypothesis exists.
pub(super) fn decide_hypothesis(
    branch: &dyn WorkBranch,
    spec: &HypothesisSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    let blackboard = &branch.work().blackboard;
    if spec.description.is_empty() {
        return Err(invalid("description", "description must not be empty"));
    }
    check_unit("confidence", spec.confidence)?;
    if let Some(session) = &spec.session {
        check_id("session", session)?;
    }
    let id = match &spec.id {
        Some(id) => {
            check_id("id", id)?;
            id.clone()
        }
        None => generate_id("H", blackboard.hypotheses.len(), |id| {
            blackboard.hypotheses.contains_key(id)
        }),
    };
    if let Some(existing) = blackboard.hypotheses.get(&id) {
        if existing.description == spec.description
            && existing.prior == spec.confidence
            && existing.session == spec.session
        {
            return Ok(Vec::new());
        }
        return Err(already_exists("hypothesis", &id));
    }
    Ok(vec![EventDraft::new(
        "hypothesis.proposed",
        format!("hypothesis/{id}"),
        to_data(ProposedData {
            hypothesis: id,
            description: spec.description.clone(),
            confidence: spec.confidence,
            session: spec.session.clone(),
        }),
    )])
}

fn open_hypothesis<'a>(branch: &'a dyn WorkBranch, id: &str) -> Result<&'a Hypothesis, Rejection> {
    let hypothesis = branch
        .work()
        .blackboard
        .hypotheses
        .get(id)
        .ok_or_else(|| not_found("hypothesis", id))?;
    if hypothesis.status != HypothesisStatus::Open {
        return Err(conflict(
            Code::AlreadyValidated,
            format!("hypothesis '{id}' is already validated"),
        )
        .with("hypothesis", id)
        .with("status", json!(hypothesis.status)));
    }
    Ok(hypothesis)
}

/// Attaches a finding as evidence for or against an open hypothesis.
pub(super) fn decide_evidence(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &EvidenceSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    let hypothesis = open_hypothesis(branch, id)?;
    check_id("finding", &spec.finding)?;
    if !branch
        .work()
        .blackboard
        .findings
        .contains_key(&spec.finding)
    {
        return Err(invalid(
            "finding",
            format!("finding '{}' does not exist", spec.finding),
        ));
    }
    let weight = spec.weight.unwrap_or(1.0);
    if !weight.is_finite() || !(0.0..=EVIDENCE_WEIGHT_MAX).contains(&weight) {
        return Err(invalid(
            "weight",
            format!("weight must be from 0 to {EVIDENCE_WEIGHT_MAX}, not {weight}"),
        ));
    }
    if hypothesis
        .evidence
        .iter()
        .any(|item| item.finding == spec.finding)
    {
        return Err(conflict(
            Code::DuplicateEvidence,
            format!(
                "finding '{}' is already evidence of hypothesis '{id}'",
                spec.finding
            ),
        )
        .with("finding", spec.finding.as_str()));
    }
    let confidence = aggregate_confidence(
        hypothesis.prior,
        hypothesis
            .evidence
            .iter()
            .map(|item| (item.supports, item.weight))
            .chain([(spec.supports, weight)]),
    );
    Ok(vec![EventDraft::new(
        "hypothesis.evidence_added",
        format!("hypothesis/{id}"),
        to_data(EvidenceData {
            hypothesis: id.to_owned(),
            finding: spec.finding.clone(),
            supports: spec.supports,
            weight,
            confidence,
        }),
    )])
}

/// Confirms or refutes an open hypothesis.
pub(super) fn decide_validate(
    branch: &dyn WorkBranch,
    id: &str,
    spec: &ValidateSpec,
) -> Result<Vec<EventDraft>, Rejection> {
    open_hypothesis(branch, id)?;
    Ok(vec![EventDraft::new(
        "hypothesis.validated",
        format!("hypothesis/{id}"),
        to_data(ValidatedData {
            hypothesis: id.to_owned(),
            result: spec.result,
            evidence: spec.evidence.clone(),
        }),
    )])
}

// ----- apply -----

/// Folds a `finding.*` or `hypothesis.*` event; false for an unknown type.
pub(super) fn apply(work: &mut Work, event: &Envelope, data: &Value) -> bool {
    let blackboard = &mut work.blackboard;
    match event.event_type.as_str() {
        "finding.reported" => {
            let Some(reported) = parse_data::<FindingData>(event, data) else {
                return true;
            };
            if blackboard.findings.contains_key(&reported.finding) {
                return true; // Reported once by the rules; a repeat changes nothing.
            }
            let session = reported.session.clone();
            let agent = reported.agent.clone();
            blackboard.findings.insert(
                reported.finding.clone(),
                Finding {
                    id: reported.finding,
                    agent: reported.agent,
                    session: reported.session,
                    category: reported.category,
                    content: reported.content,
                    confidence: reported.confidence,
                    evidence: reported.evidence,
                    tags: reported.tags,
                    seq: event.seq,
                    reported_at_ms: event.ts_ms,
                },
            );
            if let Some(session) = session {
                super::sessions::note_agent(work, &session, &agent);
            }
        }
        "hypothesis.proposed" => {
            let Some(proposed) = parse_data::<ProposedData>(event, data) else {
                return true;
            };
            if blackboard.hypotheses.contains_key(&proposed.hypothesis) {
                return true; // Proposed once by the rules; a repeat changes nothing.
            }
            blackboard.hypotheses.insert(
                proposed.hypothesis.clone(),
                Hypothesis {
                    id: proposed.hypothesis,
                    description: proposed.description,
                    prior: proposed.confidence,
                    confidence: aggregate_confidence(proposed.confidence, []),
                    session: proposed.session,
                    status: HypothesisStatus::Open,
                    evidence: Vec::new(),
                    proposed_by: event.actor.clone(),
                    validated_by: None,
                    validation_evidence: None,
                    seq: event.seq,
                },
            );
        }
        "hypothesis.evidence_added" => {
            let Some(added) = parse_data::<EvidenceData>(event, data) else {
                return true;
            };
            let Some(hypothesis) = blackboard.hypotheses.get_mut(&added.hypothesis) else {
                return true;
            };
            if hypothesis.status != HypothesisStatus::Open {
                return true;
            }
            hypothesis.evidence.push(HypothesisEvidence {
                finding: added.finding,
                supports: added.supports,
                weight: added.weight,
                seq: event.seq,
            });
            hypothesis.confidence = aggregate_confidence(
                hypothesis.prior,
                hypothesis
                    .evidence
                    .iter()
                    .map(|item| (item.supports, item.weight)),
            );
        }
        "hypothesis.validated" => {
            let Some(validated) = parse_data::<ValidatedData>(event, data) else {
                return true;
            };
            let Some(hypothesis) = blackboard.hypotheses.get_mut(&validated.hypothesis) else {
                return true;
            };
            if hypothesis.status != HypothesisStatus::Open {
                return true;
            }
            hypothesis.status = if validated.result {
                HypothesisStatus::Confirmed
            } else {
                HypothesisStatus::Refuted
            };
            hypothesis.confidence = if validated.result { 1.0 } else { 0.0 };
            hypothesis.validated_by = Some(event.actor.clone());
            hypothesis.validation_evidence = validated.evidence;
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::{types, Harness};
    use super::super::WorkCommand;
    use super::*;
    use crate::rejection::RejectionKind;

    fn finding(spec: Value) -> WorkCommand {
        WorkCommand::FindingPost(serde_json::from_value(spec).expect("a valid finding spec"))
    }

    fn propose(id: &str, confidence: f64, session: Option<&str>) -> WorkCommand {
        WorkCommand::HypothesisPropose(HypothesisSpec {
            id: Some(id.into()),
            description: format!("{id} is the cause"),
            confidence,
            session: session.map(str::to_owned),
        })
    }

    fn evidence(
        hypothesis: &str,
        finding: &str,
        supports: bool,
        weight: Option<f64>,
    ) -> WorkCommand {
        WorkCommand::EvidenceAdd {
            hypothesis: hypothesis.into(),
            spec: EvidenceSpec {
                finding: finding.into(),
                supports,
                weight,
            },
        }
    }

    fn confidence(harness: &Harness, id: &str) -> f64 {
        harness
            .work()
            .blackboard
            .hypothesis(id)
            .expect("exists")
            .confidence
    }

    #[test]
    fn findings_are_reported_and_queried() {
        let mut harness = Harness::new();
        let events = harness.ok(finding(json!({
            "agent": "ops/deploy-validator", "session": "inc-1", "category": "observation",
            "content": "deployment v1.2.3 at 10:15 UTC", "confidence": 0.9,
            "evidence": [{"source": "prometheus", "query": "rate(errors[5m])", "result": "0.05"}],
            "tags": ["deploy", "errors", "deploy"],
        })));
        assert_eq!(types(&events), ["finding.reported"]);
        assert_eq!(events[0].stream, "finding/F-1");
        harness.ok(finding(json!({"agent": "sec/lead", "session": "inc-1", "category": "hypothesis", "content": {"x": 1}, "tags": ["errors"]})));
        harness.ok(finding(
            json!({"id": "mine", "agent": "sec/lead", "category": "conclusion", "content": "done"}),
        ));
        let query = |filter: FindingFilter, harness: &Harness| -> Vec<String> {
            harness
                .work()
                .blackboard
                .query_findings(&filter)
                .into_iter()
                .map(|finding| finding.id.clone())
                .collect()
        };
        assert_eq!(
            query(FindingFilter::default(), &harness),
            ["F-1", "F-2", "mine"]
        );
        assert_eq!(
            query(
                FindingFilter {
                    session: Some("inc-1".into()),
                    ..Default::default()
                },
                &harness
            ),
            ["F-1", "F-2"]
        );
        assert_eq!(
            query(
                FindingFilter {
                    agent: Some("sec/lead".into()),
                    ..Default::default()
                },
                &harness
            ),
            ["F-2", "mine"]
        );
        assert_eq!(
            query(
                FindingFilter {
                    category: Some(FindingCategory::Observation),
                    ..Default::default()
                },
                &harness
            ),
            ["F-1"]
        );
        assert_eq!(
            query(
                FindingFilter {
                    tag: Some("errors".into()),
                    ..Default::default()
                },
                &harness
            ),
            ["F-1", "F-2"]
        );
        assert_eq!(
            query(
                FindingFilter {
                    tag: Some("deploy".into()),
                    session: Some("x".into()),
                    ..Default::default()
                },
                &harness
            ),
            Vec::<String>::new()
        );
        let view = harness
            .work()
            .blackboard
            .finding("F-1")
            .expect("exists")
            .view();
        assert_eq!(view["tags"], json!(["deploy", "errors"]));
        assert_eq!(view["evidence"][0]["source"], json!("prometheus"));
        assert_eq!(
            harness.work().session_view("inc-1"),
            None,
            "a session id alone is not a session"
        );
    }

    #[test]
    fn invalid_findings_are_refused_and_repeats_are_idempotent() {
        let mut harness = Harness::new();
        let cases = [
            (
                json!({"agent": "a", "category": "rumour", "content": "x"}),
                "category",
            ),
            (
                json!({"agent": "a", "category": "observation", "content": "x", "confidence": 1.5}),
                "confidence",
            ),
            (
                json!({"agent": "a", "category": "observation", "content": null}),
                "content",
            ),
            (
                json!({"agent": "", "category": "observation", "content": "x"}),
                "agent",
            ),
            (
                json!({"agent": "a", "category": "observation", "content": "x", "evidence": [{"source": ""}]}),
                "evidence[0].source",
            ),
        ];
        for (spec, field) in cases {
            let rejection = harness.err(finding(spec));
            assert_eq!(rejection.details["field"], json!(field));
        }
        let spec = json!({"id": "f", "agent": "a", "category": "observation", "content": "x"});
        harness.ok(finding(spec.clone()));
        assert!(harness.ok(finding(spec)).is_empty());
        let rejection = harness.err(finding(
            json!({"id": "f", "agent": "a", "category": "observation", "content": "y"}),
        ));
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Conflict, "already_exists")
        );
    }

    #[test]
    fn evidence_moves_the_confidence_by_log_odds() {
        let mut harness = Harness::new();
        for id in ["f1", "f2", "f3"] {
            harness.ok(finding(
                json!({"id": id, "agent": "a", "category": "observation", "content": id}),
            ));
        }
        harness.ok(propose("pool", 0.5, Some("inc-1")));
        assert_eq!(confidence(&harness, "pool"), 0.5);
        let events = harness.ok(evidence("pool", "f1", true, None));
        assert!(
            (confidence(&harness, "pool") - 0.75).abs() < 1e-12,
            "odds 1 × 3"
        );
        assert!(
            (events[0].data_value()["confidence"]
                .as_f64()
                .expect("a number")
                - 0.75)
                .abs()
                < 1e-12
        );
        harness.ok(evidence("pool", "f2", false, None));
        assert!(
            (confidence(&harness, "pool") - 0.5).abs() < 1e-12,
            "equal weights cancel"
        );
        harness.ok(evidence("pool", "f3", false, Some(2.0)));
        assert!(
            (confidence(&harness, "pool") - 0.1).abs() < 1e-12,
            "odds 1 / 9"
        );
        let rejection = harness.err(evidence("pool", "f1", true, None));
        assert_eq!(rejection.code, "duplicate_evidence");
        assert_eq!(
            harness.err(evidence("pool", "ghost", true, None)).details["field"],
            json!("finding")
        );
        assert_eq!(
            harness
                .err(evidence("pool", "f1", true, Some(11.0)))
                .details["field"],
            json!("weight")
        );
        assert_eq!(
            harness.err(evidence("ghost", "f1", true, None)).kind,
            RejectionKind::NotFound
        );
        assert_eq!(
            harness.err(propose("bad", 1.1, None)).details["field"],
            json!("confidence")
        );
    }

    #[test]
    fn confidence_stays_within_bounds() {
        assert_eq!(aggregate_confidence(0.0, []), 0.0);
        let up = aggregate_confidence(1.0, std::iter::repeat_n((true, EVIDENCE_WEIGHT_MAX), 100));
        assert!((0.0..=1.0).contains(&up));
        let down =
            aggregate_confidence(0.0, std::iter::repeat_n((false, EVIDENCE_WEIGHT_MAX), 100));
        assert!((0.0..=1.0).contains(&down));
        let moved = aggregate_confidence(0.0, [(true, 1.0)]);
        assert!(
            moved > 0.0 && moved < 0.01,
            "a prior of 0 is clamped so evidence moves it: {moved}"
        );
    }

    #[test]
    fn validation_settles_and_lists_order_by_confidence() {
        let mut harness = Harness::new();
        harness.ok(finding(
            json!({"id": "f", "agent": "a", "category": "observation", "content": "x"}),
        ));
        harness.ok(propose("pool", 0.7, Some("inc-1")));
        harness.ok(propose("leak", 0.3, Some("inc-1")));
        harness.ok(propose("elsewhere", 0.9, Some("inc-2")));
        let order = |harness: &Harness, session: Option<&str>| -> Vec<String> {
            harness
                .work()
                .blackboard
                .hypotheses_by_confidence(session)
                .into_iter()
                .map(|h| h.id.clone())
                .collect()
        };
        assert_eq!(order(&harness, Some("inc-1")), ["pool", "leak"]);
        assert_eq!(order(&harness, None), ["elsewhere", "pool", "leak"]);
        let validate = |id: &str, result: bool| WorkCommand::HypothesisValidate {
            hypothesis: id.into(),
            spec: ValidateSpec {
                result,
                evidence: Some(json!({"finding": "f"})),
            },
        };
        harness
            .run_as("ops/lead", validate("leak", true))
            .expect("validated");
        harness.ok(validate("pool", false));
        let leak = harness
            .work()
            .blackboard
            .hypothesis("leak")
            .expect("exists");
        assert_eq!(
            (leak.status, leak.confidence, leak.validated_by.as_deref()),
            (HypothesisStatus::Confirmed, 1.0, Some("ops/lead"))
        );
        assert_eq!(order(&harness, Some("inc-1")), ["leak", "pool"]);
        let rejection = harness.err(validate("leak", false));
        assert_eq!(
            (rejection.kind, rejection.code.as_str()),
            (RejectionKind::Conflict, "already_validated")
        );
        assert_eq!(
            harness.err(evidence("pool", "f", true, None)).code.as_str(),
            "already_validated"
        );
        assert!(
            harness
                .ok(propose("elsewhere", 0.9, Some("inc-2")))
                .is_empty(),
            "same body"
        );
        assert_eq!(
            harness
                .err(propose("elsewhere", 0.8, Some("inc-2")))
                .code
                .as_str(),
            "already_exists"
        );
    }
}
