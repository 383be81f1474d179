//! Bounds on what a write may carry (SPEC §6): the defaults, and the [`Limits`] a process
//! runs with.
//!
//! Limits are process-wide settings, fixed before the first request: `swarmlog serve` sets
//! them from its flags with [`configure`], everything else (tests, in-process CLI
//! commands) runs with the defaults. They only guard decisions about new writes; replaying
//! the log never checks them, so a log written under other limits replays the same.

use std::sync::OnceLock;

/// The longest id, key, stream, type, branch or actor name in bytes (SPEC §3: 1–256 bytes).
/// The default, and the most [`Limits::id_bytes_max`] may be.
pub const ID_BYTES_MAX: usize = 256;

/// How deep a JSON value may nest (SPEC §6): deep enough for any sane payload, shallow
/// enough that recursive encoders and decoders cannot overflow the stack. The default, and
/// the most [`Limits::json_depth_max`] may be.
pub const JSON_DEPTH_MAX: usize = 64;

/// Largest request body (SPEC §6: 1 MiB): far above any sane event, small enough that a
/// burst of maximum-size requests cannot exhaust memory, and what the log's record and
/// batch sizes are checked against (an event, its envelope and a stored idempotent answer
/// must fit one record). The default, and the most [`Limits::request_body_bytes_max`] may be.
pub const REQUEST_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Most events in one atomic batch (SPEC §6). The default, and the most
/// [`Limits::batch_events_max`] may be: an idempotent batch stores its whole answer in one
/// record.
pub const BATCH_EVENTS_MAX: usize = 1000;

/// The default shortest lock TTL or agent lease (SPEC §6: 100 ms): shorter and a holder
/// could not renew in time across one network round trip.
pub const TTL_MS_MIN: u64 = 100;

/// The default longest lock TTL or agent lease (SPEC §6: 24 h): longer and a crashed holder
/// blocks everyone for more than a working day.
pub const TTL_MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// How far the TTL bounds may be set: from 10 ms (the engine's timers are exact to about a
/// millisecond) to 7 days.
pub const TTL_MS_RANGE: std::ops::RangeInclusive<u64> = 10..=7 * 24 * 60 * 60 * 1000;

/// The limits a process runs with. Each may be tightened below its default; the TTL
/// bounds may also be widened within [`TTL_MS_RANGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body in bytes (413 `payload_too_large` beyond).
    pub request_body_bytes_max: usize,
    /// Most events in one batch (422 `invalid_batch` beyond).
    pub batch_events_max: usize,
    /// Longest id, key, stream, type, branch or actor name in bytes.
    pub id_bytes_max: usize,
    /// Deepest JSON nesting of a body (422 `too_deep` beyond).
    pub json_depth_max: usize,
    /// Shortest TTL or lease in milliseconds.
    pub ttl_ms_min: u64,
    /// Longest TTL or lease in milliseconds.
    pub ttl_ms_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_body_bytes_max: REQUEST_BODY_BYTES_MAX,
            batch_events_max: BATCH_EVENTS_MAX,
            id_bytes_max: ID_BYTES_MAX,
            json_depth_max: JSON_DEPTH_MAX,
            ttl_ms_min: TTL_MS_MIN,
            ttl_ms_max: TTL_MS_MAX,
        }
    }
}

/// A limit set outside what it may be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} must be between {low} and {high}, not {value}")]
pub struct OutOfRange {
    /// The [`Limits`] field, e.g. `request_body_bytes_max`.
    pub field: &'static str,
    /// The field in words, e.g. `the request body limit`.
    pub name: &'static str,
    /// The smallest allowed value.
    pub low: u64,
    /// The largest allowed value.
    pub high: u64,
    /// The value given.
    pub value: u64,
}

impl Limits {
    /// Checks every limit against what it may be; the error names the first that is out of
    /// range.
    pub fn check(&self) -> Result<(), OutOfRange> {
        let within = |field, name, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(OutOfRange {
                    field,
                    name,
                    low,
                    high,
                    value,
                })
            }
        };
        within(
            "request_body_bytes_max",
            "the request body limit",
            self.request_body_bytes_max as u64,
            1024,
            REQUEST_BODY_BYTES_MAX as u64,
        )?;
        within(
            "batch_events_max",
            "the batch limit",
            self.batch_events_max as u64,
            1,
            BATCH_EVENTS_MAX as u64,
        )?;
        // Below 64 bytes the generated ids (tasks, proposals, messages) would not fit.
        within(
            "id_bytes_max",
            "the id limit",
            self.id_bytes_max as u64,
            64,
            ID_BYTES_MAX as u64,
        )?;
        // Every write body nests at least its object and its `data`.
        within(
            "json_depth_max",
            "the JSON depth limit",
            self.json_depth_max as u64,
            4,
            JSON_DEPTH_MAX as u64,
        )?;
        within(
            "ttl_ms_min",
            "the shortest TTL",
            self.ttl_ms_min,
            *TTL_MS_RANGE.start(),
            *TTL_MS_RANGE.end(),
        )?;
        within(
            "ttl_ms_max",
            "the longest TTL",
            self.ttl_ms_max,
            self.ttl_ms_min,
            *TTL_MS_RANGE.end(),
        )
    }
}

/// Why [`configure`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigureError {
    /// A limit is out of range.
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    /// The process already runs with other limits.
    #[error("the limits are already fixed for this process as {0:?}")]
    AlreadyFixed(Limits),
}

static CONFIGURED: OnceLock<Limits> = OnceLock::new();

/// Sets the process's limits. Fails if they are out of range, or if limits were already
/// fixed (by an earlier call, or by a first use of [`current`]) with other values.
pub fn configure(limits: Limits) -> Result<(), ConfigureError> {
    limits.check()?;
    let fixed = CONFIGURED.get_or_init(|| limits);
    if *fixed == limits {
        Ok(())
    } else {
        Err(ConfigureError::AlreadyFixed(*fixed))
    }
}

/// The process's limits; the defaults unless [`configure`] came first.
pub fn current() -> &'static Limits {
    CONFIGURED.get_or_init(Limits::default)
}

/// Whether `id` is a valid id, key, stream or branch name: 1 to
/// [`Limits::id_bytes_max`] bytes of UTF-8 without control characters.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= current().id_bytes_max && !id.chars().any(char::is_control)
}

/// The nesting depth of a JSON value: 0 for a scalar, 1 for a flat array or object.
pub fn json_depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_printable() {
        assert!(is_valid_id("task/T-17"));
        assert!(is_valid_id(&"x".repeat(ID_BYTES_MAX)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"x".repeat(ID_BYTES_MAX + 1)));
        assert!(!is_valid_id("a\nb"));
        assert!(!is_valid_id("a\u{7f}b"));
    }

    #[test]
    fn limits_may_be_tightened_but_not_raised_past_what_the_log_is_sized_for() {
        assert_eq!(Limits::default().check(), Ok(()));
        let tight = Limits {
            request_body_bytes_max: 4096,
            batch_events_max: 10,
            id_bytes_max: 64,
            json_depth_max: 8,
            ttl_ms_min: 1000,
            ttl_ms_max: 60_000,
        };
        assert_eq!(tight.check(), Ok(()));
        let wide_ttls = Limits {
            ttl_ms_min: 10,
            ttl_ms_max: 7 * 24 * 60 * 60 * 1000,
            ..Limits::default()
        };
        assert_eq!(wide_ttls.check(), Ok(()));
        for (bad, named) in [
            (
                Limits {
                    request_body_bytes_max: REQUEST_BODY_BYTES_MAX + 1,
                    ..tight
                },
                "request body",
            ),
            (
                Limits {
                    request_body_bytes_max: 1023,
                    ..tight
                },
                "request body",
            ),
            (
                Limits {
                    batch_events_max: 0,
                    ..tight
                },
                "batch",
            ),
            (
                Limits {
                    batch_events_max: BATCH_EVENTS_MAX + 1,
                    ..tight
                },
                "batch",
            ),
            (
                Limits {
                    id_bytes_max: 63,
                    ..tight
                },
                "id",
            ),
            (
                Limits {
                    id_bytes_max: ID_BYTES_MAX + 1,
                    ..tight
                },
                "id",
            ),
            (
                Limits {
                    json_depth_max: 3,
                    ..tight
                },
                "JSON depth",
            ),
            (
                Limits {
                    json_depth_max: JSON_DEPTH_MAX + 1,
                    ..tight
                },
                "JSON depth",
            ),
            (
                Limits {
                    ttl_ms_min: 9,
                    ..tight
                },
                "shortest TTL",
            ),
            (
                Limits {
                    ttl_ms_max: 999,
                    ..tight
                },
                "longest TTL",
            ),
            (
                Limits {
                    ttl_ms_max: *TTL_MS_RANGE.end() + 1,
                    ..tight
                },
                "longest TTL",
            ),
        ] {
            let error = bad.check().expect_err("out of range").to_string();
            assert!(error.contains(named), "{error} names {named}");
        }
    }

    #[test]
    fn depth_counts_nesting() {
        assert_eq!(json_depth(&serde_json::json!(1)), 0);
        assert_eq!(json_depth(&serde_json::json!({"a": [1, {"b": 2}]})), 3);
    }
}
