//! The event filter of `GET /v1/events` (SPEC §3): seq range, type globs, stream prefix,
//! actor, session and branch.

use globset::{Glob, GlobSet, GlobSetBuilder};
use swarmlog_projections::Envelope;

use crate::error::ApiError;
use crate::limits::TYPE_FILTERS_MAX;

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// First seq wanted (inclusive, from 1).
    pub from: u64,
    /// Last seq wanted (inclusive), if bounded.
    pub until: Option<u64>,
    /// Type globs (`task.*`); any match passes.
    pub types: Option<GlobSet>,
    /// Stream prefix.
    pub stream_prefix: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact session.
    pub session: Option<String>,
    /// Exact branch; `None` means every branch.
    pub branch: Option<String>,
}

impl EventFilter {
    /// Compiles a comma-separated list of type globs.
    pub fn parse_types(text: &str) -> Result<GlobSet, ApiError> {
        let patterns: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if patterns.is_empty() || patterns.len() > TYPE_FILTERS_MAX {
            return Err(ApiError::malformed(
                "invalid_query",
                format!("types must list 1 to {TYPE_FILTERS_MAX} comma-separated globs"),
            ));
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = Glob::new(pattern).map_err(|error| {
                ApiError::malformed(
                    "invalid_query",
                    format!("types glob '{pattern}' is invalid: {error}"),
                )
            })?;
            builder.add(glob);
        }
        builder.build().map_err(|error| {
            ApiError::malformed("invalid_query", format!("types globs are invalid: {error}"))
        })
    }

    /// Whether `seq` is past `until`: the reader is done.
    pub fn is_past_end(&self, seq: u64) -> bool {
        self.until.is_some_and(|until| seq > until)
    }

    /// Whether the event passes every condition but the seq range.
    pub fn matches(&self, envelope: &Envelope) -> bool {
        self.branch
            .as_ref()
            .is_none_or(|branch| *branch == envelope.branch)
            && self
                .types
                .as_ref()
                .is_none_or(|types| types.is_match(&envelope.event_type))
            && self
                .stream_prefix
                .as_ref()
                .is_none_or(|prefix| envelope.stream.starts_with(prefix.as_str()))
            && self
                .actor
                .as_ref()
                .is_none_or(|actor| *actor == envelope.actor)
            && self
                .session
                .as_ref()
                .is_none_or(|session| envelope.session.as_ref() == Some(session))
    }
}
