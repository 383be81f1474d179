//! Strict JSON for request bodies (issue 9): the nesting depth is checked on the raw bytes
//! before any tree is built, so a body nested 100,000 levels deep costs one pass over its
//! bytes and is refused as too deep (not as malformed, which is what serde_json's own
//! recursion limit made of it); and a key repeated in one object is refused instead of
//! letting the last one win silently.
//!
//! [`Compact`] reads one JSON value straight into its compact text, with the same checks
//! and without building a tree: a custom event's `data` goes from the request to the log
//! that way.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::ops::Range;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// serde_json refuses input nested 128 levels deep or more with a syntax error; the depth
/// limit must stay below it so that the scan, not serde_json, decides what is too deep.
const SERDE_JSON_RECURSION_LIMIT: usize = 128;

const _: () = assert!(swarmlog_projections::limits::JSON_DEPTH_MAX < SERDE_JSON_RECURSION_LIMIT);

/// Why a body is not acceptable JSON.
#[derive(Debug)]
pub enum JsonError {
    /// It nests deeper than `limit` levels.
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// An object has `key` twice.
    DuplicateKey {
        /// The key, as decoded.
        key: String,
        /// The line of the second occurrence (from 1).
        line: usize,
        /// The column just after the second occurrence (from 1).
        column: usize,
    },
    /// It is not JSON at all.
    Syntax(serde_json::Error),
}

/// Whether `raw` nests arrays and objects more than `most` levels deep: a `{` or `[`
/// outside a string opens a level, a `}` or `]` closes one. Exact for valid JSON; for
/// anything else it errs towards "not too deep" and leaves the verdict to the parser.
pub fn nests_deeper_than(raw: &[u8], most: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > most {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses a request body: at most `depth_max` levels deep, each key once per object.
pub fn parse(raw: &[u8], depth_max: usize) -> Result<Value, JsonError> {
    if nests_deeper_than(raw, depth_max) {
        return Err(JsonError::TooDeep { limit: depth_max });
    }
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let parsed = StrictValue {
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|error| match duplicate.into_inner() {
        Some(key) => JsonError::DuplicateKey {
            key,
            line: error.line(),
            column: error.column(),
        },
        None => JsonError::Syntax(error),
    })
}

/// Checks a body the way [`parse`] does without keeping the tree, for bodies another
/// parser reads (the MCP transport's). A body that is not JSON at all passes: its own
/// parser answers for that.
pub fn check(raw: &[u8], depth_max: usize) -> Result<(), JsonError> {
    match parse(raw, depth_max) {
        Ok(_) | Err(JsonError::Syntax(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Builds a [`Value`] like serde_json's own, but remembers the first key an object repeats
/// (in `duplicate`) and stops there.
#[derive(Clone, Copy)]
struct StrictValue<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // JSON text has no NaN or infinity, so every parsed float is a number.
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(sequence.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = sequence.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            // One lookup per key: the vacant entry takes the value once it is parsed.
            match map.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(access.next_value_seed(self)?);
                }
                Entry::Occupied(entry) => {
                    let key = entry.key().clone();
                    let message = format!("duplicate key '{key}'");
                    *self.duplicate.borrow_mut() = Some(key);
                    return Err(de::Error::custom(message));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// One JSON value as serde_json's compact text (byte for byte what `Value::to_string`
/// writes for the value's tree), read without building the tree. Like [`parse`], it refuses
/// a key repeated in one object. Reading from a [`Value`] works too (its keys are unique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compact {
    /// The compact text.
    pub text: String,
    /// Whether the value is an object.
    pub is_object: bool,
}

impl<'de> de::Deserialize<'de> for Compact {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Compact, D::Error> {
        // Most event data fits without growing the buffer more than once.
        let mut out = Vec::with_capacity(COMPACT_CAPACITY_FIRST);
        Transcode { out: &mut out }.deserialize(deserializer)?;
        let is_object = out.first() == Some(&b'{');
        let text = String::from_utf8(out).map_err(de::Error::custom)?;
        Ok(Compact { text, is_object })
    }
}

impl schemars::JsonSchema for Compact {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        Value::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Value::json_schema(generator)
    }
}

/// The first capacity of a [`Compact`]'s text, in bytes.
const COMPACT_CAPACITY_FIRST: usize = 128;

/// Objects with more keys than this look repeated keys up in a hash set instead of
/// comparing with every earlier key.
const KEYS_SCANNED_MAX: usize = 16;

/// Writes the value it visits to `out` in compact form.
struct Transcode<'a> {
    out: &'a mut Vec<u8>,
}

impl Transcode<'_> {
    fn write<T: serde::Serialize + ?Sized, E: de::Error>(&mut self, value: &T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.out, value).map_err(E::custom)
    }
}

impl<'de> DeserializeSeed<'de> for Transcode<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Transcode<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, value: bool) -> Result<(), E> {
        self.write(&value)
    }

    fn visit_i64<E: de::Error>(mut self, value: i64) -> Result<(), E> {
        self.write(&value)
    }

    fn visit_u64<E: de::Error>(mut self, value: u64) -> Result<(), E> {
        self.write(&value)
    }

    fn visit_f64<E: de::Error>(mut self, value: f64) -> Result<(), E> {
        // As a tree holds it: JSON text has no NaN or infinity.
        self.write(&Number::from_f64(value))
    }

    fn visit_str<E: de::Error>(mut self, value: &str) -> Result<(), E> {
        self.write(value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            let mark = self.out.len();
            if !first {
                self.out.push(b',');
            }
            if sequence
                .next_element_seed(Transcode { out: self.out })?
                .is_none()
            {
                self.out.truncate(mark);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut keys = Keys::default();
        loop {
            if !keys.is_empty() {
                self.out.push(b',');
            }
            let start = self.out.len();
            if access.next_key_seed(Key { out: self.out })?.is_none() {
                self.out
                    .truncate(start.saturating_sub(usize::from(!keys.is_empty())));
                break;
            }
            if !keys.insert(self.out, start..self.out.len()) {
                let key: String =
                    serde_json::from_slice(&self.out[start..]).map_err(de::Error::custom)?;
                return Err(de::Error::custom(format!("duplicate key '{key}'")));
            }
            self.out.push(b':');
            access.next_value_seed(Transcode { out: self.out })?;
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Writes the key of an object member it visits to `out`.
struct Key<'a> {
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        Transcode { out: self.out }.write(key)
    }
}

/// The keys of one object, as ranges of the output: compact text writes each key in one
/// way, so two keys are equal exactly when their written bytes are.
#[derive(Default)]
struct Keys {
    written: Vec<Range<usize>>,
    hashes: HashSet<u64>,
}

impl Keys {
    fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    /// Adds the key written at `range` of `out`; false if the object already has it.
    fn insert(&mut self, out: &[u8], range: Range<usize>) -> bool {
        let key = &out[range.clone()];
        let hash = |bytes: &[u8]| {
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            hasher.finish()
        };
        if self.written.len() == KEYS_SCANNED_MAX {
            self.hashes = self.written.iter().map(|r| hash(&out[r.clone()])).collect();
        }
        // Past the threshold only a hash already seen needs the scan.
        let may_repeat = self.written.len() < KEYS_SCANNED_MAX || !self.hashes.insert(hash(key));
        if may_repeat && self.written.iter().any(|seen| &out[seen.clone()] == key) {
            return false;
        }
        self.written.push(range);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_depth(text: &str, most: usize) -> bool {
        let deeper = nests_deeper_than(text.as_bytes(), most);
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            assert_eq!(
                deeper,
                swarmlog_projections::limits::json_depth(&value) > most,
                "the scan agrees with the tree on {text}"
            );
        }
        deeper
    }

    #[test]
    fn the_scan_counts_levels_outside_strings_only() {
        assert!(!check_depth("1", 0));
        assert!(check_depth("[]", 0));
        assert!(!check_depth("[[1],{\"a\":[2]}]", 3));
        assert!(check_depth("[[1],{\"a\":[2]}]", 2));
        assert!(!check_depth(r#"{"a":"[[[[{{{{"}"#, 1));
        assert!(!check_depth(r#"{"a":"\"[[[[\\"}"#, 1));
        assert!(check_depth(r#"{"a\"":[["\\",[]]]}"#, 3));
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(nests_deeper_than(deep.as_bytes(), 64));
        assert!(nests_deeper_than("[".repeat(65).as_bytes(), 64));
    }

    #[test]
    fn parse_refuses_depth_and_duplicates_and_keeps_everything_else() {
        let deep = format!("{}1{}", "[".repeat(1_000), "]".repeat(1_000));
        assert!(matches!(
            parse(deep.as_bytes(), 64),
            Err(JsonError::TooDeep { limit: 64 })
        ));
        match parse(br#"{"a":{"b":1,"c":[{"b":2,"b":3}]}}"#, 64) {
            Err(JsonError::DuplicateKey { key, line, .. }) => {
                assert_eq!((key.as_str(), line), ("b", 1));
            }
            other => panic!("not a duplicate: {other:?}"),
        }
        match parse(br#"{"caf\u00e9":1,"caf\u00c3\u00a9":2,"caf\u00e9":3}"#, 64) {
            Err(JsonError::DuplicateKey { key, .. }) => assert_eq!(key, "café"),
            other => panic!("not a duplicate: {other:?}"),
        }
        assert!(matches!(
            parse(b"{\"a\":1} x", 64),
            Err(JsonError::Syntax(_))
        ));
        assert!(matches!(parse(b"{\"a\":", 64), Err(JsonError::Syntax(_))));
        let text = r#"{"n":-1,"u":18446744073709551615,"f":1.5,"s":"x\n","z":null,"t":true,"a":[{},[]],"k":{"k":{"k":1}}}"#;
        assert_eq!(
            parse(text.as_bytes(), 64).expect("valid"),
            serde_json::from_str::<Value>(text).expect("valid")
        );
        assert!(check(b"not json", 64).is_ok());
        assert!(check(br#"{"a":1,"a":2}"#, 64).is_err());
    }

    fn compact(text: &str) -> Result<Compact, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn compact_text_is_what_the_tree_writes() {
        let many_keys = format!(
            "{{{}}}",
            (0..40)
                .map(|n| format!("\"k{n}\": {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for text in [
            "{}",
            "[]",
            " { \"a\" : [ 1 , -2 , 3.50 , 1e3 , -0 , 1E-7, 18446744073709551615, -9223372036854775808 ] } ",
            r#"{"s":"tab\t \u00e9 \ud83d\ude00 \"q\" \\ \/ \u0001","n":null,"t":true,"f":false}"#,
            r#"{"caf\u00e9":{"":[{},[[]],{"x":{"y":"z"}}]}}"#,
            "123456789012345678901234567890",
            "\"just a string\"",
            "null",
            &many_keys,
        ] {
            let tree: Value = serde_json::from_str(text).expect("valid");
            let read = compact(text).expect("valid");
            assert_eq!(read.text, tree.to_string(), "{text}");
            assert_eq!(read.is_object, tree.is_object(), "{text}");
            let from_tree: Compact = serde_json::from_value(tree.clone()).expect("a tree");
            assert_eq!(from_tree, read, "{text}");
        }
    }

    #[test]
    fn compact_refuses_repeated_keys_however_they_are_spelt() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"x":[{"b":1,"c":2,"b":3}]}"#,
        ] {
            let error = compact(text).expect_err(text);
            assert!(
                error.to_string().contains("duplicate key"),
                "{text}: {error}"
            );
        }
        let wide = |repeat: &str| {
            let mut keys: Vec<String> = (0..40).map(|n| format!("\"k{n}\":0")).collect();
            keys.push(format!("\"{repeat}\":1"));
            format!("{{{}}}", keys.join(","))
        };
        assert!(
            compact(&wide("k3")).is_err(),
            "a repeat of an early key in a wide object"
        );
        assert!(
            compact(&wide("k39")).is_err(),
            "a repeat of a late key in a wide object"
        );
        assert!(compact(&wide("other")).is_ok());
        assert!(
            compact(r#"{"a":{"a":1},"b":{"a":2}}"#).is_ok(),
            "keys repeat across objects"
        );
    }
}
