//! Bounds on what an event may carry; the server enforces them before deciding.

/// The longest id, key, stream, type, branch or actor name in bytes (SPEC §3: 1–256 bytes).
pub const ID_BYTES_MAX: usize = 256;

/// How deep a JSON value may nest (SPEC §6): deep enough for any sane payload, shallow
/// enough that recursive encoders and decoders cannot overflow the stack.
pub const JSON_DEPTH_MAX: usize = 64;

/// Whether `id` is a valid id, key, stream or branch name: 1 to [`ID_BYTES_MAX`] bytes of
/// UTF-8 without control characters.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= ID_BYTES_MAX && !id.chars().any(char::is_control)
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
    fn depth_counts_nesting() {
        assert_eq!(json_depth(&serde_json::json!(1)), 0);
        assert_eq!(json_depth(&serde_json::json!({"a": [1, {"b": 2}]})), 3);
    }
}
