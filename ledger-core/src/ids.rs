//! Identifiers, names, times, digests and keys: the small parsed values every entry carries.
//!
//! Like the numbers in [`crate::num`], each type here can only be built through its parser, so an
//! entry that deserialized is well formed down to its last field.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a field's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// An identifier that is empty, too long or has characters outside the allowed set.
    #[error("the {what} \"{text}\" is not a valid identifier: use 1 to {max} letters, digits, '-', '_' or '.', starting with a letter or digit")]
    BadId {
        /// Which identifier.
        what: &'static str,
        /// The refused text (cut to 80 characters).
        text: String,
        /// The longest allowed.
        max: usize,
    },
    /// A ledger origin that is not a plain line of printable ASCII.
    #[error("the ledger origin \"{0}\" is not valid: use 1 to 128 printable ASCII characters with no spaces or '+'")]
    BadOrigin(String),
    /// A free-text field that is blank, too long or holds control characters.
    #[error("the {what} must be 1 to {max} characters of text with no control characters")]
    BadText {
        /// Which field.
        what: &'static str,
        /// The longest allowed, in characters.
        max: usize,
    },
    /// A time that is not RFC 3339 in UTC.
    #[error("the time \"{0}\" is not an RFC 3339 UTC time such as \"2022-06-01T09:30:00Z\"")]
    BadTime(String),
    /// A date that is not `YYYY-MM-DD`.
    #[error("the date \"{0}\" is not a calendar date written YYYY-MM-DD")]
    BadDate(String),
    /// A digest that is not 64 lowercase hex digits.
    #[error("the SHA-256 digest \"{0}\" must be 64 lowercase hexadecimal digits")]
    BadDigest(String),
    /// A public key that is not the base64 of a usable 32-byte Ed25519 key.
    #[error("the public key is not a usable Ed25519 key: {0}")]
    BadKey(&'static str),
    /// A signature that is not the base64 of 64 bytes.
    #[error("the signature is not the base64 of a 64-byte Ed25519 signature")]
    BadSignature,
}

fn deserialize_parsed<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

fn cut(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

/// Longest identifier, in bytes.
pub const MAX_ID_LEN: usize = 64;

fn is_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ID_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

macro_rules! id_newtype {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Sorts before every valid id (for range scans).
            #[allow(dead_code)] // only the ids that lead a composite key need it
            pub(crate) fn lowest() -> Self {
                Self(String::new())
            }
        }

        impl FromStr for $name {
            type Err = FieldError;
            fn from_str(text: &str) -> Result<Self, FieldError> {
                if is_id(text) {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(FieldError::BadId { what: $what, text: cut(text, 80), max: MAX_ID_LEN })
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_parsed(d)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    };
}

id_newtype!(
    /// A participant's id, a slug such as `xiazhuhu-wetland`.
    ParticipantId, "participant id"
);
id_newtype!(
    /// A methodology's id.
    MethodologyId, "methodology id"
);
id_newtype!(
    /// A project's (wetland site's) id.
    ProjectId, "project id"
);
id_newtype!(
    /// A monitoring report's id.
    ReportId, "report id"
);
id_newtype!(
    /// A batch (vintage) id such as `XZH-2022-01`.
    BatchId, "batch id"
);
id_newtype!(
    /// A reference price's id.
    PriceId, "price id"
);
id_newtype!(
    /// A pledge's id.
    PledgeId, "pledge id"
);
id_newtype!(
    /// An entry's own id, unique in the ledger: a trade id, a certificate number...
    EntryId, "entry id"
);
id_newtype!(
    /// A price basis such as `benchmark` or `cost`.
    Basis, "price basis"
);

/// The ledger's origin name (its C2SP checkpoint origin), such as `ledger.deqing.example/xiazhuhu`.
/// A signature made for one ledger names its origin and is refused by every other.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Origin(String);

impl Origin {
    /// The origin as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Origin {
    type Err = FieldError;
    fn from_str(text: &str) -> Result<Self, FieldError> {
        let ok = !text.is_empty()
            && text.len() <= 128
            && text.bytes().all(|b| b.is_ascii_graphic() && b != b'+');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(FieldError::BadOrigin(cut(text, 80)))
        }
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Free text (names, purposes, reasons): any Unicode, Chinese included, 1 to 500 characters, not
/// blank, with no control characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    /// Longest text, in characters.
    pub const MAX_CHARS: usize = 500;

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Text {
    type Err = FieldError;
    fn from_str(text: &str) -> Result<Self, FieldError> {
        let count = text.chars().count();
        let ok = count > 0
            && count <= Self::MAX_CHARS
            && !text.trim().is_empty()
            && !text.chars().any(char::is_control);
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(FieldError::BadText {
                what: "text",
                max: Self::MAX_CHARS,
            })
        }
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// An RFC 3339 time in UTC (`Z`), kept as written so that signatures over it stay valid.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Timestamp {
    text: String,
    #[serde(skip)]
    instant: time::OffsetDateTime,
}

impl Timestamp {
    /// The time as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The instant.
    pub fn instant(&self) -> time::OffsetDateTime {
        self.instant
    }

    /// A timestamp for an instant, written with whole seconds or nanoseconds as needed.
    pub fn from_instant(instant: time::OffsetDateTime) -> Self {
        let instant = instant.to_offset(time::UtcOffset::UTC);
        let text = instant
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned());
        Self { text, instant }
    }

    /// The current time.
    pub fn now() -> Self {
        Self::from_instant(time::OffsetDateTime::now_utc())
    }

    /// The calendar day (UTC) this instant falls on.
    pub fn date(&self) -> Date {
        Date(self.instant.to_offset(time::UtcOffset::UTC).date())
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.instant
            .cmp(&other.instant)
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl FromStr for Timestamp {
    type Err = FieldError;
    fn from_str(text: &str) -> Result<Self, FieldError> {
        let bad = || FieldError::BadTime(cut(text, 40));
        if !text.ends_with('Z') || text.len() > 40 {
            return Err(bad());
        }
        let instant =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad())?;
        Ok(Self {
            text: text.to_owned(),
            instant,
        })
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// A calendar date, `YYYY-MM-DD`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(time::Date);

impl Date {
    /// The calendar year.
    pub fn year(self) -> i32 {
        self.0.year()
    }

    /// The day `days` later (earlier, if negative), if the calendar has it.
    pub fn plus_days(self, days: i64) -> Option<Self> {
        self.0.checked_add(time::Duration::days(days)).map(Self)
    }
}

const DATE_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

impl FromStr for Date {
    type Err = FieldError;
    fn from_str(text: &str) -> Result<Self, FieldError> {
        if text.len() != 10 {
            return Err(FieldError::BadDate(cut(text, 40)));
        }
        time::Date::parse(text, DATE_FORMAT)
            .map(Self)
            .map_err(|_| FieldError::BadDate(cut(text, 40)))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d)
    }
}

/// A SHA-256 digest written as 64 lowercase hex digits (the evidence behind a monitoring report).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Hex(pub [u8; 32]);

impl FromStr for Sha256Hex {
    type Err = FieldError;
    fn from_str(text: &str) -> Result<Self, FieldError> {
        let lower = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut out = [0u8; 32];
        if text.len() != 64 || !lower || hex::decode_to_slice(text, &mut out).is_err() {
            return Err(FieldError::BadDigest(cut(text, 80)));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex32(&self.0))
    }
}

/// A 32-byte hash or digest as its 64 lowercase hex digits, written into a buffer at once
/// (`hex::encode` collects its digits one `char` at a time; an entry's chain link, digests and
/// proofs write many).
pub(crate) fn hex32(bytes: &[u8; 32]) -> String {
    let mut digits = [0u8; 64];
    match hex::encode_to_slice(bytes, &mut digits).map(|()| std::str::from_utf8(&digits)) {
        Ok(Ok(text)) => text.to_owned(),
        // Not reached: 32 bytes fill 64 ASCII digits.
        _ => hex::encode(bytes),
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d)
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A participant's Ed25519 public key, base64 of 32 bytes on the wire. Keys that are not valid
/// curve points or have small order are refused.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// The key for verification.
    pub fn verifying_key(&self) -> &ed25519_dalek::VerifyingKey {
        &self.0
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

impl From<ed25519_dalek::VerifyingKey> for PublicKey {
    fn from(key: ed25519_dalek::VerifyingKey) -> Self {
        Self(key)
    }
}

impl FromStr for PublicKey {
    type Err = FieldError;
    fn from_str(text: &str) -> Result<Self, FieldError> {
        let bytes = B64
            .decode(text)
            .map_err(|_| FieldError::BadKey("not standard base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| FieldError::BadKey("not 32 bytes"))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| FieldError::BadKey("not a point on the curve"))?;
        if key.is_weak() {
            return Err(FieldError::BadKey("a weak (small-order) key"));
        }
        // Refuse non-canonical base64 so that one key has exactly one spelling.
        if B64.encode(bytes) != text {
            return Err(FieldError::BadKey("not canonical base64"));
        }
        Ok(Self(key))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d)
    }
}

/// An Ed25519 signature, base64 of 64 bytes on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl FromStr for SignatureBytes {
    type Err = FieldError;
    fn from_str(text: &str) -> Result<Self, FieldError> {
        let bytes = B64.decode(text).map_err(|_| FieldError::BadSignature)?;
        let bytes: [u8; 64] = bytes.try_into().map_err(|_| FieldError::BadSignature)?;
        if B64.encode(bytes) != text {
            return Err(FieldError::BadSignature);
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d)
    }
}

/// What a participant may do in the market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the ledger: registers participants, methodologies and projects, issues batches.
    Operator,
    /// Verifies monitoring reports and co-signs reversals.
    Verifier,
    /// Publishes reference prices.
    PricingAuthority,
    /// Manages a wetland project (the seller in an acquisition).
    Proponent,
    /// An ecological-asset platform that acquires and stores sink (收储).
    Platform,
    /// An enterprise or public body that pays ecological compensation (生态补偿).
    Enterprise,
    /// A bank that lends against pledged sink.
    Bank,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Role::Operator => "operator",
            Role::Verifier => "verifier",
            Role::PricingAuthority => "pricing authority",
            Role::Proponent => "proponent",
            Role::Platform => "platform",
            Role::Enterprise => "enterprise",
            Role::Bank => "bank",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {

    /// A hash written by `hex32` is its 64 lowercase hex digits, and reads back as itself.
    #[test]
    fn hex32_writes_64_lowercase_digits_that_read_back() {
        let mut hash = [0u8; 32];
        for (i, byte) in (0u8..).zip(hash.iter_mut()) {
            *byte = i.wrapping_mul(37).wrapping_add(0xa5);
        }
        for hash in [[0u8; 32], [0xff; 32], hash] {
            let text = hex32(&hash);
            assert_eq!(text, hex::encode(hash));
            assert_eq!(text.len(), 64);
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert_eq!(text.parse::<Sha256Hex>().unwrap().0, hash);
        }
    }
    use super::*;

    #[test]
    fn ids_are_slugs_of_bounded_length() {
        assert!("xiazhuhu-wetland".parse::<ParticipantId>().is_ok());
        assert!("XZH-2022-01".parse::<BatchId>().is_ok());
        for bad in ["", "-lead", "has space", "中文", "a/b", &"a".repeat(65)] {
            assert!(bad.parse::<ParticipantId>().is_err(), "{bad}");
        }
        assert!("a".repeat(64).parse::<EntryId>().is_ok());
    }

    #[test]
    fn text_takes_chinese_but_not_controls() {
        assert!("下渚湖湿地".parse::<Text>().is_ok());
        assert!("".parse::<Text>().is_err());
        assert!("   ".parse::<Text>().is_err());
        assert!("a\u{0}b".parse::<Text>().is_err());
        assert!("a\nb".parse::<Text>().is_err());
    }

    #[test]
    fn times_must_be_utc() {
        assert!("2022-06-01T09:30:00Z".parse::<Timestamp>().is_ok());
        assert!("2022-06-01T09:30:00.123Z".parse::<Timestamp>().is_ok());
        for bad in [
            "2022-06-01T09:30:00+08:00",
            "2022-06-01",
            "yesterday",
            "2022-13-01T00:00:00Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
        let t = Timestamp::from_instant(time::macros::datetime!(2022-06-01 09:30 UTC));
        assert_eq!(t.as_str(), "2022-06-01T09:30:00Z");
    }

    #[test]
    fn dates_and_digests() {
        assert_eq!(
            "2022-01-31".parse::<Date>().unwrap().to_string(),
            "2022-01-31"
        );
        assert!("2022-02-30".parse::<Date>().is_err());
        assert!("2022-1-31".parse::<Date>().is_err());
        let digest = "ab".repeat(32);
        assert!(digest.parse::<Sha256Hex>().is_ok());
        assert!("AB".repeat(32).parse::<Sha256Hex>().is_err());
        assert!("ab".repeat(31).parse::<Sha256Hex>().is_err());
    }

    #[test]
    fn keys_must_be_canonical_strong_points() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let text = B64.encode(key.as_bytes());
        assert_eq!(text.parse::<PublicKey>().unwrap().to_string(), text);
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(B64.encode(identity).parse::<PublicKey>().is_err());
        assert!("AAAA".parse::<PublicKey>().is_err());
    }
}
