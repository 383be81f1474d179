//! The catalog of event types: which prefixes are reserved for the server's own rules.

/// Type prefixes that only the server's rules may write (SPEC §2). A client appending a
/// custom event with one of these prefixes is refused with `reserved_type`.
pub const RESERVED_PREFIXES: &[&str] = &[
    "session.",
    "agent.",
    "task.",
    "finding.",
    "hypothesis.",
    "lock.",
    "state.",
    "kv.",
    "message.",
    "proposal.",
    "vote.",
    "branch.",
];

/// Whether `event_type` belongs to a reserved domain prefix.
pub fn is_reserved(event_type: &str) -> bool {
    RESERVED_PREFIXES
        .iter()
        .any(|prefix| event_type.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_prefixes_are_refused_and_custom_types_pass() {
        assert!(is_reserved("task.claimed"));
        assert!(is_reserved("lock.acquired"));
        assert!(!is_reserved("bench.event"));
        assert!(!is_reserved("tasks.custom"));
        assert!(!is_reserved("order.placed"));
    }
}
