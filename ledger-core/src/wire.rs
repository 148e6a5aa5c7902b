//! Decoding submissions from bytes, and the envelope the ledger wraps each accepted entry in.
//!
//! Decoding is strict where JSON is loose: a member name given twice is refused (a signature must
//! never cover a body that two parsers read differently), so are unknown fields, `null` for an
//! optional field, and anything else that would not re-encode to the very bytes that were signed.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::{self, CanonicalError};
use crate::entry::{Body, Submission};
use crate::ids::Timestamp;

/// The domain separator every signature over a body starts with.
pub const ENTRY_SIGNING_PREFIX: &[u8] = b"carbon-sink-ledger/v1/entry\n";

/// Most signatures one submission may carry.
pub const MAX_SIGNATURES: usize = 8;

/// Why a submission could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not well-formed JSON (or nested too deeply, or a member name repeated).
    #[error("the submission is not well-formed JSON: {0}")]
    Json(String),
    /// Well-formed JSON that does not fit the entry format.
    #[error("the submission does not fit the ledger format: {0}")]
    Format(String),
    /// The body would not re-encode to the bytes that were signed (for example `null` given
    /// for an optional field); send the body without such members.
    #[error(
        "the body is not in its canonical form: leave out optional fields rather than sending null"
    )]
    NotCanonical,
    /// Too many signatures.
    #[error("a submission carries at most {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// The body cannot be canonicalized.
    #[error("the body cannot be canonicalized: {0}")]
    Canonical(#[from] CanonicalError),
}

/// A submission with its canonical body bytes, ready for signature checks and the sequencer.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// The submission.
    pub submission: Submission,
    /// JCS of the body: what every signer signed (after [`ENTRY_SIGNING_PREFIX`]).
    pub canonical_body: Vec<u8>,
    /// SHA-256 of the canonical body.
    pub body_digest: [u8; 32],
}

impl Prepared {
    /// Prepares a typed submission (a library caller's own).
    pub fn new(submission: Submission) -> Result<Self, WireError> {
        let canonical_body = canonical::to_canonical(&submission.body)?;
        Self::with_canonical_body(submission, canonical_body)
    }

    /// A submission whose body's JCS bytes are already known.
    fn with_canonical_body(
        submission: Submission,
        canonical_body: Vec<u8>,
    ) -> Result<Self, WireError> {
        if submission.signatures.len() > MAX_SIGNATURES {
            return Err(WireError::TooManySignatures);
        }
        let body_digest = Sha256::digest(&canonical_body).into();
        Ok(Self {
            submission,
            canonical_body,
            body_digest,
        })
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.submission.body
    }

    /// The bytes each signer signs: the prefix, then the canonical body.
    pub fn signing_message(&self) -> Vec<u8> {
        signing_message(&self.canonical_body)
    }
}

/// The bytes a signer signs for a body whose JCS bytes are `canonical_body`.
pub fn signing_message(canonical_body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(ENTRY_SIGNING_PREFIX.len() + canonical_body.len());
    message.extend_from_slice(ENTRY_SIGNING_PREFIX);
    message.extend_from_slice(canonical_body);
    message
}

/// Decodes a submission from the bytes a client sent.
pub fn decode_submission(bytes: &[u8]) -> Result<Prepared, WireError> {
    let value = parse_strict(bytes)?;
    decode_submission_value(value)
}

/// Decodes a submission from an already strictly parsed JSON value (see [`parse_strict`]).
pub fn decode_submission_value(value: Value) -> Result<Prepared, WireError> {
    let raw_body = value
        .get("body")
        .cloned()
        .ok_or_else(|| WireError::Format("missing field `body`".to_owned()))?;
    let submission: Submission =
        serde_json::from_value(value).map_err(|e| WireError::Format(e.to_string()))?;
    // The typed body must write back as exactly the JSON received (no `null` optionals, no
    // other spelling), so that the bytes signed are the bytes kept; then the received body's
    // canonical form is the typed body's, and it is computed once.
    let typed_body =
        serde_json::to_value(&submission.body).map_err(|e| WireError::Format(e.to_string()))?;
    if typed_body != raw_body {
        return Err(WireError::NotCanonical);
    }
    Prepared::with_canonical_body(submission, canonical::canonicalize(&raw_body)?)
}

/// Parses JSON, refusing a member name that appears twice in one object.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, WireError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut deserializer)
        .map_err(|e| WireError::Json(e.to_string()))?
        .0;
    deserializer
        .end()
        .map_err(|e| WireError::Json(e.to_string()))?;
    Ok(value)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom(format!(
                    "the member \"{}\" appears twice in one object",
                    name.chars().take(64).collect::<String>()
                )));
            }
            let StrictValue(value) = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

/// What the ledger appends for each accepted entry. Its leaf bytes are its JCS encoding.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Position in the ledger, from 0.
    pub seq: u64,
    /// Hex leaf hash of the previous envelope (64 zeros for the first).
    pub prev: String,
    /// When the ledger accepted the entry.
    pub accepted_at: Timestamp,
    /// The signed submission.
    pub entry: Submission,
}

impl Envelope {
    /// The leaf bytes: JCS of the envelope.
    pub fn leaf_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        canonical::to_canonical(self)
    }

    /// Reads an envelope back from its leaf bytes, checking that they are canonical.
    pub fn from_leaf(bytes: &[u8]) -> Result<Self, WireError> {
        let value = parse_strict(bytes)?;
        let envelope: Envelope =
            serde_json::from_value(value).map_err(|e| WireError::Format(e.to_string()))?;
        if envelope.leaf_bytes()? != bytes {
            return Err(WireError::NotCanonical);
        }
        Ok(envelope)
    }
}

/// The `prev` of the first envelope.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[cfg(test)]
mod tests {
    use super::*;

    fn submission_text(body_extra: &str) -> String {
        format!(
            r#"{{"body":{{"type":"register_methodology","id":"m1","ledger":"test/ledger","created_at":"2022-06-01T00:00:00Z","methodology":"wetland","name":"Wetland","version":"1","buffer_rate":"0.1"{body_extra}}},"signatures":[]}}"#
        )
    }

    #[test]
    fn a_well_formed_submission_decodes() {
        let prepared = decode_submission(submission_text("").as_bytes()).unwrap();
        assert_eq!(prepared.body().type_name(), "register_methodology");
        assert!(prepared.signing_message().starts_with(ENTRY_SIGNING_PREFIX));
    }

    #[test]
    fn duplicate_member_names_are_refused() {
        let text = submission_text(r#","buffer_rate":"0.9""#);
        let err = decode_submission(text.as_bytes()).unwrap_err();
        assert!(
            matches!(err, WireError::Json(ref m) if m.contains("appears twice")),
            "{err}"
        );
    }

    #[test]
    fn trailing_garbage_and_deep_nesting_are_refused() {
        let text = submission_text("") + "x";
        assert!(matches!(
            decode_submission(text.as_bytes()),
            Err(WireError::Json(_))
        ));
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(matches!(
            decode_submission(deep.as_bytes()),
            Err(WireError::Json(_))
        ));
    }

    #[test]
    fn null_for_an_optional_field_is_not_canonical() {
        let text = r#"{"body":{"type":"publish_price","id":"p1","ledger":"test/ledger","created_at":"2022-06-01T00:00:00Z","price":"p1","basis":"benchmark","unit_price":"58.83","currency":"CNY","effective_at":"2022-06-01T00:00:00Z","inputs":null},"signatures":[]}"#;
        assert_eq!(
            decode_submission(text.as_bytes()),
            Err(WireError::NotCanonical)
        );
    }
}
