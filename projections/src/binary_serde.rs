//! Serde adapters that let the whole [`crate::State`] round-trip through postcard, the
//! compact binary format snapshots use, while its JSON stays what it was.
//!
//! Postcard is not self-describing: it writes neither field names nor type tags, and reads
//! a value back by the shape its type expects (it has no `deserialize_any`). Three things
//! in the state need care:
//! - A `serde_json::Value` (cell values, payloads, results) can only be deserialized with
//!   `deserialize_any`: [`json_text`] carries it as its JSON text in a binary format.
//! - A field left out by `skip_serializing_if` shifts every later field in a format without
//!   field names. Types that only the state holds (`Task`, `Proposal`, ...) therefore never
//!   skip a field; they keep `#[serde(default)]` on their options so that snapshots
//!   written as JSON (formats 1 and 2, which left absent options out) still load. Types
//!   whose JSON is also event data or API JSON keep leaving absent options out of it:
//!   `TaskDefinition`, one per task, writes its `Serialize` by hand with [`OmitNone`],
//!   which leaves them out of JSON only; the rarer `Progress` and `FindingEvidence` are
//!   carried whole as JSON text by [`json_text`].
//! - The head hash is hex in JSON and 32 plain bytes in a binary format ([`hash`]).
//!
//! Every adapter asks the serializer whether it is human-readable: JSON is, so the JSON of
//! the API and of event data is unchanged. Only the state's own types, which nothing but
//! snapshots serialized, now write an absent option as `null` in JSON.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::ser::{self, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

/// A value carried as itself in a human-readable format and as its JSON text in a binary
/// one: `#[serde(with = "crate::binary_serde::json_text")]`.
pub(crate) mod json_text {
    use super::*;

    /// Writes `value`: itself in JSON, its JSON text in a binary format.
    pub(crate) fn serialize<T: Serialize, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        AsJsonText(value).serialize(serializer)
    }

    /// Reads what [`serialize`] wrote.
    pub(crate) fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        FromJsonText::deserialize(deserializer).map(|FromJsonText(value)| value)
    }

    /// [`json_text`] for an option whose `Some` may hold JSON `null`: a binary format keeps
    /// `None` and `Some(null)` apart, as the live state does
    /// (`#[serde(default, with = "crate::binary_serde::json_text::option")]`).
    pub(crate) mod option {
        use super::*;

        /// Writes `value`: itself in JSON; `None`, or `Some` of its JSON text, in a binary
        /// format.
        pub(crate) fn serialize<T: Serialize, S: Serializer>(
            value: &Option<T>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            value.as_ref().map(AsJsonText).serialize(serializer)
        }

        /// Reads what [`serialize`] wrote.
        pub(crate) fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<T>, D::Error> {
            Option::<FromJsonText<T>>::deserialize(deserializer)
                .map(|value| value.map(|FromJsonText(value)| value))
        }
    }
}

/// Serializes the value it borrows as [`json_text`] does.
pub(crate) struct AsJsonText<'a, T>(pub(crate) &'a T);

impl<T: Serialize> Serialize for AsJsonText<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return self.0.serialize(serializer);
        }
        let text = serde_json::to_string(self.0).map_err(ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

/// Deserializes a value as [`json_text`] wrote it.
struct FromJsonText<T>(T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for FromJsonText<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            return T::deserialize(deserializer).map(FromJsonText);
        }
        deserializer
            .deserialize_str(JsonTextVisitor(PhantomData))
            .map(FromJsonText)
    }
}

struct JsonTextVisitor<T>(PhantomData<T>);

impl<T: DeserializeOwned> Visitor<'_> for JsonTextVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string of JSON text")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        serde_json::from_str(text).map_err(E::custom)
    }
}

/// Serializes a struct field by field for a hand-written `Serialize` whose JSON leaves
/// absent options out, as `skip_serializing_if = "Option::is_none"` would: a
/// human-readable format leaves a `None` out, a binary one writes every field, since it
/// has no field names to tell which one is missing.
pub(crate) struct OmitNone<S: SerializeStruct> {
    fields: S,
    human_readable: bool,
}

impl<S: SerializeStruct> OmitNone<S> {
    /// Starts struct `name` of `len` fields (every field: JSON and postcard ignore the
    /// count).
    pub(crate) fn new<T>(serializer: T, name: &'static str, len: usize) -> Result<Self, S::Error>
    where
        T: Serializer<SerializeStruct = S, Ok = S::Ok, Error = S::Error>,
    {
        let human_readable = serializer.is_human_readable();
        Ok(OmitNone {
            fields: serializer.serialize_struct(name, len)?,
            human_readable,
        })
    }

    /// Writes a field that is always there.
    pub(crate) fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        self.fields.serialize_field(key, value)
    }

    /// Writes an option, or leaves it out of a human-readable format when it is `None`.
    pub(crate) fn option<T: Serialize>(
        &mut self,
        key: &'static str,
        value: &Option<T>,
    ) -> Result<(), S::Error> {
        if value.is_none() && self.human_readable {
            return self.fields.skip_field(key);
        }
        self.fields.serialize_field(key, value)
    }

    /// Ends the struct.
    pub(crate) fn end(self) -> Result<S::Ok, S::Error> {
        self.fields.end()
    }
}

/// A SHA-256 hash: lowercase hex in a human-readable format, 32 bytes in a binary one
/// (`#[serde(with = "crate::binary_serde::hash")]`).
pub(crate) mod hash {
    use super::*;

    /// Writes `hash`.
    pub(crate) fn serialize<S: Serializer>(
        hash: &[u8; 32],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(hash))
        } else {
            hash.serialize(serializer)
        }
    }

    /// Reads what [`serialize`] wrote.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; 32], D::Error> {
        if !deserializer.is_human_readable() {
            return <[u8; 32]>::deserialize(deserializer);
        }
        let text = String::deserialize(deserializer)?;
        let bytes = hex::decode(&text).map_err(de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| de::Error::custom("a hash is 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "json_text")]
        value: Value,
        #[serde(default, with = "json_text::option")]
        maybe: Option<Value>,
        #[serde(with = "hash")]
        hash: [u8; 32],
        after: u64,
    }

    fn sample(maybe: Option<Value>) -> Sample {
        Sample {
            value: json!({"b": [1, 2.5, -3, "x", null, true], "a": {"nested": 0.1}}),
            maybe,
            hash: [7; 32],
            after: 42,
        }
    }

    #[test]
    fn postcard_round_trips_values_options_and_hashes() {
        for maybe in [None, Some(Value::Null), Some(json!([{"k": 1e-7}]))] {
            let original = sample(maybe);
            let bytes = postcard::to_allocvec(&original).expect("encodes");
            let decoded: Sample = postcard::from_bytes(&bytes).expect("decodes");
            assert_eq!(decoded, original);
        }
    }

    #[test]
    fn json_is_what_it_was_without_the_adapters() {
        let text = serde_json::to_string(&sample(Some(json!(1)))).expect("encodes");
        assert_eq!(
            text,
            format!(
                r#"{{"value":{{"b":[1,2.5,-3,"x",null,true],"a":{{"nested":0.1}}}},"maybe":1,"hash":"{}","after":42}}"#,
                "07".repeat(32)
            )
        );
        let decoded: Sample = serde_json::from_str(&text).expect("decodes");
        assert_eq!(decoded, sample(Some(json!(1))));
        let absent: Sample = serde_json::from_str(&format!(
            r#"{{"value":1,"hash":"{}","after":42}}"#,
            "07".repeat(32)
        ))
        .expect("an absent option is None");
        assert_eq!(absent.maybe, None);
    }

    #[test]
    fn a_binary_value_that_is_not_json_text_is_an_error() {
        let bytes =
            postcard::to_allocvec(&("{not json", None::<u8>, [0u8; 32], 1u64)).expect("encodes");
        let error = postcard::from_bytes::<Sample>(&bytes).expect_err("not JSON");
        assert!(matches!(error, postcard::Error::SerdeDeCustom), "{error:?}");
    }
}
