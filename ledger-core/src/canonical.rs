//! Canonical JSON: the JSON Canonicalization Scheme of RFC 8785.
//!
//! Every value the ledger hashes or signs is first turned into exactly one
//! byte string, so that two parties holding the same data always compute the
//! same digest. The rules are those of RFC 8785:
//!
//! * no insignificant whitespace;
//! * object members sorted by their names compared as arrays of UTF-16 code
//!   units (not as UTF-8 bytes: the two orders differ for characters above
//!   U+FFFF compared with U+E000..U+FFFF);
//! * strings escaped exactly as ECMAScript `JSON.stringify` escapes them:
//!   `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, every other character below
//!   U+0020 as `\u00xx` with lowercase hexadecimal digits, and every other
//!   character (including U+007F, `/` and all non-ASCII characters) written
//!   as itself in UTF-8;
//! * numbers written as ECMAScript `Number.prototype.toString` writes an
//!   IEEE 754 double.
//!
//! Values that cannot be represented faithfully are refused rather than
//! altered: integers beyond the range an IEEE 754 double holds exactly
//! (±(2^53 − 1)), non-finite numbers, and structures nested deeper than
//! [`MAX_DEPTH`].

use std::cmp::Ordering;
use std::fmt;

use serde::ser::{self, Serialize};
use serde_json::{Map, Number, Value};

/// The largest magnitude of an integer that is written as a number.
///
/// This is ECMAScript's `Number.MAX_SAFE_INTEGER`, 2^53 − 1: every integer of
/// at most this magnitude has exactly one IEEE 754 double, and no other
/// integer rounds to that double. Larger integers would be silently rounded by
/// any consumer that reads JSON numbers as doubles, so they are refused; carry
/// them as strings instead.
///
/// The limit applies to numbers held as integers. A double is written as
/// RFC 8785 requires whatever its value, so a double of magnitude above this
/// limit and below 10^21 is written in integer notation; reading that output
/// back with `serde_json` yields an integer that [`canonicalize`] refuses.
/// Signed data should therefore carry such magnitudes as strings too.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The deepest nesting of arrays and objects that is canonicalized.
///
/// A value nested deeper is refused with [`CanonicalError::TooDeep`], which
/// bounds the stack used on values built from untrusted input. The bound
/// equals the nesting limit of `serde_json`'s own parser.
pub const MAX_DEPTH: usize = 128;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// An integer lies outside ±(2^53 − 1) and would lose precision as an
    /// IEEE 754 double.
    #[error(
        "integer {value} is outside the exactly representable range \
         ±{MAX_SAFE_INTEGER}; encode it as a string"
    )]
    UnsafeInteger {
        /// The integer as written in decimal.
        value: String,
    },
    /// A number is NaN or infinite, which JSON cannot express.
    #[error("number {value} is not finite and has no JSON representation")]
    NonFiniteNumber {
        /// The offending number as Rust prints it.
        value: String,
    },
    /// A number is held in a form that is neither an integer nor a double.
    #[error("number {value} cannot be read as an integer or as a double")]
    UnrepresentableNumber {
        /// The offending number as `serde_json` prints it.
        value: String,
    },
    /// Arrays and objects are nested deeper than [`MAX_DEPTH`].
    #[error("value is nested deeper than {max} levels", max = MAX_DEPTH)]
    TooDeep,
    /// The value could not be turned into JSON at all (for example a map
    /// whose keys are not strings).
    #[error("value cannot be represented as JSON: {message}")]
    Serialize {
        /// The serializer's explanation.
        message: String,
    },
}

/// Returns the RFC 8785 canonical UTF-8 encoding of `value`.
///
/// # Errors
///
/// Returns [`CanonicalError::UnsafeInteger`] for an integer outside
/// ±(2^53 − 1), [`CanonicalError::NonFiniteNumber`] for NaN or an infinity,
/// [`CanonicalError::UnrepresentableNumber`] for a number that is neither an
/// integer nor a double, and [`CanonicalError::TooDeep`] for nesting beyond
/// [`MAX_DEPTH`].
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write_value(value, 0, &mut out)?;
    Ok(out)
}

/// Serializes `v` with `serde` and returns the RFC 8785 canonical encoding of
/// the result.
///
/// Unlike a plain conversion to `serde_json::Value`, which turns NaN and the
/// infinities into `null`, a non-finite float anywhere in `v` is refused.
///
/// # Errors
///
/// Returns [`CanonicalError::NonFiniteNumber`] if `v` contains a NaN or an
/// infinite float, [`CanonicalError::Serialize`] if `v` cannot be represented
/// as JSON, and otherwise the errors of [`canonicalize`].
pub fn to_canonical<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, CanonicalError> {
    v.serialize(FiniteFloats)?;
    let value = serde_json::to_value(v).map_err(|e| CanonicalError::Serialize {
        message: e.to_string(),
    })?;
    canonicalize(&value)
}

fn write_value(value: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            let depth = deeper(depth)?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, depth, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let depth = deeper(depth)?;
            write_object(members, depth, out)?;
        }
    }
    Ok(())
}

fn deeper(depth: usize) -> Result<usize, CanonicalError> {
    if depth >= MAX_DEPTH {
        Err(CanonicalError::TooDeep)
    } else {
        Ok(depth + 1)
    }
}

fn write_object(
    members: &Map<String, Value>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), CanonicalError> {
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| utf16_cmp(a, b));
    out.push(b'{');
    for (i, (name, member)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(name, out);
        out.push(b':');
        write_value(member, depth, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// Compares two strings as sequences of UTF-16 code units.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_number(n: &Number, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(CanonicalError::UnsafeInteger {
                value: u.to_string(),
            });
        }
        out.extend_from_slice(u.to_string().as_bytes());
        return Ok(());
    }
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(CanonicalError::UnsafeInteger {
                value: i.to_string(),
            });
        }
        out.extend_from_slice(i.to_string().as_bytes());
        return Ok(());
    }
    match n.as_f64() {
        Some(f) => write_double(f, out),
        None => Err(CanonicalError::UnrepresentableNumber {
            value: n.to_string(),
        }),
    }
}

/// Writes a double as ECMAScript's `Number.prototype.toString` does.
fn write_double(f: f64, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    if !f.is_finite() {
        return Err(CanonicalError::NonFiniteNumber {
            value: f.to_string(),
        });
    }
    if f == 0.0 {
        // Both +0 and -0 are written as "0".
        out.push(b'0');
        return Ok(());
    }
    let mut buffer = ryu_js::Buffer::new();
    out.extend_from_slice(buffer.format_finite(f).as_bytes());
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A serializer that produces nothing and only refuses non-finite floats.
///
/// `serde_json` maps NaN and the infinities to `null` when building a
/// `Value`; running this first makes [`to_canonical`] refuse them instead.
struct FiniteFloats;

impl ser::Error for CanonicalError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CanonicalError::Serialize {
            message: msg.to_string(),
        }
    }
}

fn check_float(f: f64) -> Result<(), CanonicalError> {
    if f.is_finite() {
        Ok(())
    } else {
        Err(CanonicalError::NonFiniteNumber {
            value: f.to_string(),
        })
    }
}

impl ser::Serializer for FiniteFloats {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _: bool) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        check_float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        check_float(v)
    }
    fn serialize_char(self, _: char) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), CanonicalError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, CanonicalError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, CanonicalError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, CanonicalError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, CanonicalError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, CanonicalError> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, CanonicalError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, CanonicalError> {
        Ok(self)
    }
}

impl ser::SerializeSeq for FiniteFloats {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_element<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(FiniteFloats)
    }
    fn end(self) -> Result<(), CanonicalError> {
        Ok(())
    }
}

impl ser::SerializeTuple for FiniteFloats {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_element<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(FiniteFloats)
    }
    fn end(self) -> Result<(), CanonicalError> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for FiniteFloats {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(FiniteFloats)
    }
    fn end(self) -> Result<(), CanonicalError> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for FiniteFloats {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(FiniteFloats)
    }
    fn end(self) -> Result<(), CanonicalError> {
        Ok(())
    }
}

impl ser::SerializeMap for FiniteFloats {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonicalError> {
        key.serialize(FiniteFloats)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(FiniteFloats)
    }
    fn end(self) -> Result<(), CanonicalError> {
        Ok(())
    }
}

impl ser::SerializeStruct for FiniteFloats {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(FiniteFloats)
    }
    fn end(self) -> Result<(), CanonicalError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for FiniteFloats {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(FiniteFloats)
    }
    fn end(self) -> Result<(), CanonicalError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon_str(v: &Value) -> String {
        String::from_utf8(canonicalize(v).expect("canonicalizable")).expect("UTF-8")
    }

    fn canon_text(json_text: &str) -> String {
        let v: Value = serde_json::from_str(json_text).expect("valid JSON");
        canon_str(&v)
    }

    fn double(f: f64) -> String {
        canon_str(&json!(f))
    }

    #[test]
    fn rfc8785_sorting_example() {
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
                        \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\
                        \"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\
                        \"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon_text(input), expected);
    }

    #[test]
    fn rfc8785_main_example() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let expected = "{\"literals\":[null,true,false],\
                        \"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
                        \"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(canon_text(input), expected);
    }

    #[test]
    fn rfc8785_main_example_utf8_bytes() {
        // The same example as a byte string, checked in hexadecimal so the
        // test does not depend on how string literals are escaped.
        let input = r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#;
        let v: Value = serde_json::from_str(input).expect("valid JSON");
        let expected = "7b226c69746572616c73223a5b6e756c6c2c747275652c66616c73655d2c\
                        226e756d62657273223a5b3333333333333333332e333333333333332c31\
                        652b33302c342e352c302e3030322c31652d32375d2c22737472696e6722\
                        3a22e282ac245c75303030665c6e4127425c225c5c5c5c5c222f227d";
        assert_eq!(
            hex::encode(canonicalize(&v).expect("canonicalizable")),
            expected
        );
    }

    #[test]
    fn rfc8785_number_samples() {
        // IEEE 754 bit patterns and their ECMAScript serializations.
        let samples: &[(u64, &str)] = &[
            (0x0000_0000_0000_0000, "0"),
            (0x8000_0000_0000_0000, "0"),
            (0x0000_0000_0000_0001, "5e-324"),
            (0x8000_0000_0000_0001, "-5e-324"),
            (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
            (0xffef_ffff_ffff_ffff, "-1.7976931348623157e+308"),
            (0x4340_0000_0000_0000, "9007199254740992"),
            (0xc340_0000_0000_0000, "-9007199254740992"),
            (0x4430_0000_0000_0000, "295147905179352830000"),
            (0x44b5_2d02_c7e1_4af5, "9.999999999999997e+22"),
            (0x44b5_2d02_c7e1_4af6, "1e+23"),
            (0x44b5_2d02_c7e1_4af7, "1.0000000000000001e+23"),
            (0x444b_1ae4_d6e2_ef4e, "999999999999999700000"),
            (0x444b_1ae4_d6e2_ef4f, "999999999999999900000"),
            (0x444b_1ae4_d6e2_ef50, "1e+21"),
            (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
            (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
            (0x41b3_de43_5555_5553, "333333333.3333332"),
            (0x41b3_de43_5555_5554, "333333333.33333325"),
            (0x41b3_de43_5555_5555, "333333333.3333333"),
            (0x41b3_de43_5555_5556, "333333333.3333334"),
            (0x41b3_de43_5555_5557, "333333333.33333343"),
            (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
            (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
        ];
        for &(bits, expected) in samples {
            assert_eq!(double(f64::from_bits(bits)), expected, "bits {bits:016x}");
        }
    }

    #[test]
    fn number_spellings_from_text() {
        assert_eq!(canon_text("1e+30"), "1e+30");
        assert_eq!(canon_text("1E30"), "1e+30");
        assert_eq!(canon_text("4.50"), "4.5");
        assert_eq!(canon_text("2e-3"), "0.002");
        assert_eq!(canon_text("0.000001"), "0.000001");
        assert_eq!(canon_text("1e-7"), "1e-7");
        assert_eq!(canon_text("-0"), "0");
        assert_eq!(canon_text("-0.0"), "0");
        assert_eq!(canon_text("100"), "100");
        assert_eq!(canon_text("1.0"), "1");
        assert_eq!(canon_text("-1"), "-1");
        assert_eq!(canon_text("1e20"), "100000000000000000000");
        assert_eq!(canon_text("1e21"), "1e+21");
        assert_eq!(canon_text("9007199254740991"), "9007199254740991");
        assert_eq!(canon_text("-9007199254740991"), "-9007199254740991");
    }

    #[test]
    fn non_finite_doubles_are_refused() {
        let mut out = Vec::new();
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                write_double(f, &mut out),
                Err(CanonicalError::NonFiniteNumber { .. })
            ));
        }
        assert!(out.is_empty());
    }

    #[test]
    fn unsafe_integers_are_refused() {
        for text in [
            "9007199254740992",
            "-9007199254740992",
            "9007199254740993",
            "18446744073709551615",
            "-9223372036854775808",
        ] {
            let v: Value = serde_json::from_str(text).expect("valid JSON");
            assert!(
                matches!(canonicalize(&v), Err(CanonicalError::UnsafeInteger { .. })),
                "{text} must be refused"
            );
        }
        assert!(matches!(
            canonicalize(&json!({"a": [u64::MAX]})),
            Err(CanonicalError::UnsafeInteger { .. })
        ));
        assert!(matches!(
            to_canonical(&i64::MIN),
            Err(CanonicalError::UnsafeInteger { .. })
        ));
    }

    #[test]
    fn string_escapes() {
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        let expected = "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\
                        \\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\
                        \\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\
                        \\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\"";
        assert_eq!(canon_str(&json!(all_controls)), expected);
        assert_eq!(
            canon_str(&json!("\u{7f}/\u{2028}\u{2029}")),
            "\"\u{7f}/\u{2028}\u{2029}\""
        );
        assert_eq!(canon_str(&json!("a\"b\\c")), "\"a\\\"b\\\\c\"");
        assert_eq!(canon_str(&json!("\u{1f600}é")), "\"\u{1f600}é\"");
    }

    #[test]
    fn utf16_order_differs_from_utf8_order() {
        // U+E000 sorts after U+1D11E in UTF-8 byte order but before it in
        // UTF-16 code-unit order (0xE000 > 0xD834).
        let v = json!({"\u{e000}": 1, "\u{1d11e}": 2});
        assert_eq!(canon_str(&v), "{\"\u{1d11e}\":2,\"\u{e000}\":1}");
        let v = json!({"\u{ffff}": 1, "\u{1f600}": 2});
        assert_eq!(canon_str(&v), "{\"\u{1f600}\":2,\"\u{ffff}\":1}");
    }

    #[test]
    fn nested_structures_and_literals() {
        assert_eq!(
            canon_text(r#"{ "z": {"z": 1, "a": [ {"b": null, "a": true} ]}, "a": {} , "": []}"#),
            r#"{"":[],"a":{},"z":{"a":[{"a":true,"b":null}],"z":1}}"#
        );
        assert_eq!(canon_text("[]"), "[]");
        assert_eq!(canon_text("{}"), "{}");
        assert_eq!(canon_text("\"\""), "\"\"");
    }

    #[test]
    fn french_words_sort_by_code_unit_not_locale() {
        let v = json!({"sin": 4, "pêche": 3, "péché": 2, "peach": 1});
        assert_eq!(
            canon_str(&v),
            "{\"peach\":1,\"péché\":2,\"pêche\":3,\"sin\":4}"
        );
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH {
            v = json!([v]);
        }
        assert!(canonicalize(&v).is_ok());
        let v = json!({ "a": v });
        assert_eq!(canonicalize(&v), Err(CanonicalError::TooDeep));
    }

    #[derive(serde::Serialize)]
    struct Sample {
        zeta: u32,
        alpha: Vec<f64>,
        inner: Option<Box<Sample>>,
    }

    #[test]
    fn to_canonical_sorts_struct_fields() {
        let s = Sample {
            zeta: 7,
            alpha: vec![0.5, 1.0],
            inner: Some(Box::new(Sample {
                zeta: 1,
                alpha: vec![],
                inner: None,
            })),
        };
        let out = to_canonical(&s).expect("canonicalizable");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            r#"{"alpha":[0.5,1],"inner":{"alpha":[],"inner":null,"zeta":1},"zeta":7}"#
        );
    }

    #[test]
    fn to_canonical_refuses_non_finite_floats() {
        let s = Sample {
            zeta: 0,
            alpha: vec![1.0, f64::NAN],
            inner: None,
        };
        assert!(matches!(
            to_canonical(&s),
            Err(CanonicalError::NonFiniteNumber { .. })
        ));
        assert!(matches!(
            to_canonical(&Some(f32::INFINITY)),
            Err(CanonicalError::NonFiniteNumber { .. })
        ));
    }

    #[test]
    fn to_canonical_refuses_non_string_keys() {
        let mut m = std::collections::BTreeMap::new();
        m.insert(vec![1u8], 1u8);
        assert!(matches!(
            to_canonical(&m),
            Err(CanonicalError::Serialize { .. })
        ));
    }

    /// Whether a double is written in integer notation beyond the safe
    /// integer range, which `serde_json` then reads back as an integer.
    fn writes_as_unsafe_integer(f: f64) -> bool {
        f.abs() > MAX_SAFE_INTEGER as f64 && f.abs() < 1e21
    }

    #[test]
    fn large_doubles_are_written_in_integer_notation() {
        // RFC 8785 requires integer notation for doubles below 1e21. Reading
        // such text back with serde_json gives an integer outside the safe
        // range, which is refused rather than rounded.
        let text = double(-1.173_062_793_746_300_7e18);
        assert_eq!(text, "-1173062793746300700");
        let reparsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert!(matches!(
            canonicalize(&reparsed),
            Err(CanonicalError::UnsafeInteger { .. })
        ));
        assert!(writes_as_unsafe_integer(-1.173_062_793_746_300_7e18));
        assert!(!writes_as_unsafe_integer(1e21));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(MAX_SAFE_INTEGER as i64)..=(MAX_SAFE_INTEGER as i64)).prop_map(|i| json!(i)),
            any::<f64>()
                .prop_filter("finite and not a large integer", |f| {
                    f.is_finite() && !writes_as_unsafe_integer(*f)
                })
                .prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_form_is_valid_json_and_a_fixed_point(v in arb_json()) {
            let first = canonicalize(&v).expect("canonicalizable");
            let reparsed: Value = serde_json::from_slice(&first).expect("output is JSON");
            let second = canonicalize(&reparsed).expect("canonicalizable");
            prop_assert_eq!(first, second);
        }

        #[test]
        fn member_order_does_not_matter(
            members in prop::collection::vec((any::<String>(), any::<i32>()), 0..12)
        ) {
            let forward: Map<String, Value> =
                members.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let backward: Map<String, Value> =
                members.iter().rev().map(|(k, v)| (k.clone(), json!(v))).collect();
            // Later duplicates win in each map, so compare only when unique.
            if forward == backward {
                prop_assert_eq!(
                    canonicalize(&Value::Object(forward)).expect("canonicalizable"),
                    canonicalize(&Value::Object(backward)).expect("canonicalizable")
                );
            }
        }

        #[test]
        fn doubles_round_trip_exactly(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let text = double(f);
            let back: f64 = text.parse().expect("a number");
            prop_assert_eq!(back, if f == 0.0 { 0.0 } else { f });
            prop_assert_eq!(back.to_bits(), if f == 0.0 { 0 } else { f.to_bits() });
        }

        #[test]
        fn strings_match_reference_escaping(s in any::<String>()) {
            // serde_json escapes the same characters the same way except
            // that it writes controls without a short form as \u00XX too,
            // so the two agree on every string.
            let ours = canon_str(&Value::String(s.clone()));
            let theirs = serde_json::to_string(&s).expect("string");
            prop_assert_eq!(ours, theirs);
        }
    }
}
