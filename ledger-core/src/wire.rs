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
use crate::entry::{Body, SignatureLine, Submission};
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
///
/// Made only by [`Prepared::new`] and the decoders here, so that the canonical body is always the
/// typed body's: signatures are checked over the one, the rules applied to the other, and the
/// leaf is built from the canonical bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    submission: Submission,
    canonical_body: Vec<u8>,
    body_digest: [u8; 32],
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

    /// The submission.
    pub fn submission(&self) -> &Submission {
        &self.submission
    }

    /// JCS of the body: what every signer signed (after [`ENTRY_SIGNING_PREFIX`]).
    pub fn canonical_body(&self) -> &[u8] {
        &self.canonical_body
    }

    /// SHA-256 of the canonical body.
    pub fn body_digest(&self) -> [u8; 32] {
        self.body_digest
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

    /// The leaf bytes of the envelope that wraps `prepared` at `seq`, after the leaf `prev`,
    /// accepted at `accepted_at`: the same bytes as [`Envelope::leaf_bytes`] of that envelope,
    /// with the body's canonical bytes put in as they are rather than encoded again.
    pub fn leaf_bytes_of(
        seq: u64,
        prev: &str,
        accepted_at: &Timestamp,
        prepared: &Prepared,
    ) -> Result<Vec<u8>, CanonicalError> {
        spliced_leaf(
            seq,
            prev,
            accepted_at,
            &prepared.submission.signatures,
            &prepared.canonical_body,
        )
    }

    /// Reads an envelope back from its leaf bytes, checking that they are canonical.
    pub fn from_leaf(bytes: &[u8]) -> Result<Self, WireError> {
        Self::from_leaf_with_body(bytes).map(|(envelope, _)| envelope)
    }

    /// [`Envelope::from_leaf`], with the canonical bytes of the entry's body, which the check
    /// computes anyway.
    ///
    /// Read straight into the envelope, without [`parse_strict`]'s value tree: the bytes must
    /// then equal the envelope's canonical encoding, which has every member once, so a member
    /// given twice (or any other spelling) is refused all the same.
    fn from_leaf_with_body(bytes: &[u8]) -> Result<(Self, Vec<u8>), WireError> {
        let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => WireError::Format(e.to_string()),
            _ => WireError::Json(e.to_string()),
        })?;
        let body = canonical::to_canonical(&envelope.entry.body)?;
        let canonical = spliced_leaf(
            envelope.seq,
            &envelope.prev,
            &envelope.accepted_at,
            &envelope.entry.signatures,
            &body,
        )?;
        if canonical != bytes {
            return Err(WireError::NotCanonical);
        }
        Ok((envelope, body))
    }

    /// Reads an envelope back from its leaf bytes, checking that they are canonical, and
    /// prepares its submission with the body's canonical bytes found on the way.
    pub(crate) fn prepared_from_leaf(bytes: &[u8]) -> Result<PreparedLeaf, WireError> {
        let (envelope, body) = Self::from_leaf_with_body(bytes)?;
        Ok(PreparedLeaf {
            seq: envelope.seq,
            prev: envelope.prev,
            accepted_at: envelope.accepted_at,
            signatures: envelope.entry.signatures.len(),
            prepared: Prepared::with_canonical_body(envelope.entry, body),
        })
    }
}

/// An envelope read back from its leaf with its submission prepared, or why it cannot be (as
/// [`Prepared::new`] would say).
pub(crate) struct PreparedLeaf {
    pub(crate) seq: u64,
    pub(crate) prev: String,
    pub(crate) accepted_at: Timestamp,
    pub(crate) signatures: usize,
    pub(crate) prepared: Result<Prepared, WireError>,
}

/// JCS of an envelope from its parts, the body's canonical bytes put in as they are. JCS orders
/// members by name: `accepted_at`, `entry` (`body`, `signatures`), `prev`, `seq`; the parts other
/// than the body go through JCS themselves (a sequence number beyond 2^53 is refused, as the
/// envelope's own encoding refuses it).
fn spliced_leaf(
    seq: u64,
    prev: &str,
    accepted_at: &Timestamp,
    signatures: &[SignatureLine],
    canonical_body: &[u8],
) -> Result<Vec<u8>, CanonicalError> {
    let signatures = canonical::to_canonical(signatures)?;
    let accepted_at = canonical::to_canonical(accepted_at)?;
    let prev = canonical::to_canonical(prev)?;
    let seq = canonical::to_canonical(&seq)?;
    let mut leaf = Vec::with_capacity(
        64 + accepted_at.len() + canonical_body.len() + signatures.len() + prev.len() + seq.len(),
    );
    leaf.extend_from_slice(b"{\"accepted_at\":");
    leaf.extend_from_slice(&accepted_at);
    leaf.extend_from_slice(b",\"entry\":{\"body\":");
    leaf.extend_from_slice(canonical_body);
    leaf.extend_from_slice(b",\"signatures\":");
    leaf.extend_from_slice(&signatures);
    leaf.extend_from_slice(b"},\"prev\":");
    leaf.extend_from_slice(&prev);
    leaf.extend_from_slice(b",\"seq\":");
    leaf.extend_from_slice(&seq);
    leaf.push(b'}');
    Ok(leaf)
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

    /// Every signed entry of the reference case, in order.
    fn reference_submissions() -> Vec<Submission> {
        crate::reference::ReferenceCase::new(
            "test/ledger",
            "operator",
            ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        )
        .steps()
        .into_iter()
        .map(|step| step.submission)
        .collect()
    }

    /// The leaf the sequencer splices from the canonical body is byte for byte the envelope's
    /// JCS: for every entry kind of the reference case (one, two and three signatures, none),
    /// at sequence numbers of every width and times with and without fractions; and both refuse
    /// a sequence number beyond JCS's safe integers.
    #[test]
    fn a_spliced_leaf_is_the_envelope_s_jcs() {
        let mut submissions = reference_submissions();
        let mut unsigned = submissions[0].clone();
        unsigned.signatures.clear();
        submissions.push(unsigned);
        let times = ["2026-12-01T00:00:00Z", "2026-12-01T23:59:59.123456Z"];
        for (i, submission) in submissions.into_iter().enumerate() {
            let prepared = Prepared::new(submission).unwrap();
            for seq in [
                0,
                9,
                10,
                1_000_000 + i as u64,
                (1 << 53) - 1,
                1 << 53,
                u64::MAX,
            ] {
                let accepted_at: Timestamp = times[i % 2].parse().unwrap();
                let prev = format!("{:064x}", seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let spliced = Envelope::leaf_bytes_of(seq, &prev, &accepted_at, &prepared);
                let envelope = Envelope {
                    seq,
                    prev,
                    accepted_at,
                    entry: prepared.submission().clone(),
                };
                let encoded = envelope.leaf_bytes();
                assert_eq!(spliced.is_ok(), seq < 1 << 53, "seq {seq}: {spliced:?}");
                assert_eq!(
                    spliced.map(String::from_utf8),
                    encoded.map(String::from_utf8)
                );
            }
        }
    }

    /// A leaf is read back only from its canonical bytes: the same envelope with a space, with
    /// members in another order, with a character of the body escaped, or with a member of the
    /// envelope or of the body given twice is refused.
    #[test]
    fn a_leaf_that_is_not_canonical_is_refused() {
        let prepared = Prepared::new(reference_submissions().remove(0)).unwrap();
        let accepted_at: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let leaf = Envelope::leaf_bytes_of(3, GENESIS_PREV, &accepted_at, &prepared).unwrap();
        let read = Envelope::prepared_from_leaf(&leaf).unwrap();
        assert_eq!(read.seq, 3);
        assert_eq!(read.prepared.as_ref().ok(), Some(&prepared));
        assert_eq!(
            Envelope::from_leaf(&leaf).unwrap().entry,
            *prepared.submission()
        );

        let text = String::from_utf8(leaf).unwrap();
        let reordered = {
            let (head, tail) = text.split_once(",\"prev\":").unwrap();
            let (prev, seq) = tail.trim_end_matches('}').split_once(",\"seq\":").unwrap();
            format!("{{\"seq\":{seq},\"prev\":{prev},{}}}", &head[1..])
        };
        let id = &prepared.body().id.to_string();
        let escaped = text.replacen(id, &id.replacen(char::is_alphanumeric, "\\u0041", 1), 1);
        let twice_in_envelope = text.replacen('{', "{\"seq\":3,", 1);
        let twice_in_body = text.replacen(
            "\"body\":{",
            &format!("\"body\":{{\"id\":{},", serde_json::to_string(id).unwrap()),
            1,
        );
        for altered in [
            text.replacen('{', "{ ", 1),
            reordered,
            escaped,
            twice_in_envelope,
            twice_in_body,
        ] {
            assert_ne!(altered, text);
            assert!(
                serde_json::from_str::<Value>(&altered).is_ok(),
                "still JSON: {altered}"
            );
            assert!(
                Envelope::from_leaf(altered.as_bytes()).is_err(),
                "{altered}"
            );
            assert!(
                Envelope::prepared_from_leaf(altered.as_bytes()).is_err(),
                "{altered}"
            );
        }
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
