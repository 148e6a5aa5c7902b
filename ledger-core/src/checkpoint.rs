//! Signed checkpoints: the ledger's tree head as a C2SP `tlog-checkpoint`
//! body inside a C2SP `signed-note`, signed with Ed25519.
//!
//! A checkpoint commits to the Merkle tree (see [`crate::merkle`]) at one
//! size:
//!
//! ```text
//! <origin>
//! <tree size in decimal>
//! <base64 of the 32-byte root hash>
//!
//! — <key name> <base64 of 4-byte key ID || 64-byte Ed25519 signature>
//! ```
//!
//! The lines above the blank line are the note *text*; the signature covers
//! exactly those bytes. The key ID of an Ed25519 key is the first four bytes
//! of SHA-256(key name || 0x0A || 0x01 || 32-byte public key). Verifiers
//! ignore signature lines from keys they do not know, so a note may carry
//! further signatures (for example witness cosignatures) without affecting
//! this module.
//!
//! The ledger uses its origin as its key name: [`sign_checkpoint`] and
//! [`open_checkpoint`] require the two to be equal, so a checkpoint of one
//! ledger can never be taken for a checkpoint of another ledger sharing the
//! same key.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The largest note, in bytes, that [`open_note`] reads.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// The most signature lines a note may carry.
pub const MAX_SIGNATURES: usize = 100;

/// The signature type byte of Ed25519 signatures in signed notes.
pub const ED25519_SIGNATURE_TYPE: u8 = 0x01;

/// The prefix of every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a checkpoint, a note or a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note is larger than [`MAX_NOTE_SIZE`].
    #[error("note is {size} bytes long, more than the {max} bytes allowed")]
    NoteTooLarge {
        /// The note's length in bytes.
        size: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// The note carries more than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {max} signature lines")]
    TooManySignatures {
        /// The most signature lines allowed.
        max: usize,
    },
    /// The text contains a control character other than newline.
    #[error("control character U+{code:04X} at byte {offset}; only newline is allowed")]
    ControlCharacter {
        /// The byte offset of the character.
        offset: usize,
        /// The character's code point.
        code: u32,
    },
    /// The note or text does not end with a newline.
    #[error("text does not end with a newline")]
    MissingFinalNewline,
    /// No blank line separates the note text from its signatures.
    #[error("note has no blank line before its signatures")]
    MissingSignatureSeparator,
    /// Nothing follows the last blank line of the note.
    #[error("note has no signature lines after its last blank line")]
    NoSignatures,
    /// A signature line does not have the signed-note form.
    #[error("signature line {line} is malformed: {reason}")]
    MalformedSignatureLine {
        /// The 1-based number of the line among the signature lines.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key name is empty or contains whitespace, a plus sign or a control
    /// character.
    #[error("invalid key name {name:?}: {reason}")]
    InvalidKeyName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A signature by the trusted key does not verify: the note was altered
    /// or forged.
    #[error("the signature of {key_name} does not verify")]
    InvalidSignature {
        /// The name of the trusted key.
        key_name: String,
    },
    /// The note carries no signature by the trusted key.
    #[error("the note is not signed by the trusted key {key_name}")]
    NoTrustedSignature {
        /// The name of the trusted key.
        key_name: String,
    },
    /// The checkpoint's origin differs from the key name it is signed under.
    #[error("checkpoint origin {origin:?} differs from the key name {key_name:?}")]
    OriginMismatch {
        /// The checkpoint's origin line.
        origin: String,
        /// The key name.
        key_name: String,
    },
    /// The checkpoint body has fewer than the three mandatory lines.
    #[error("checkpoint has {lines} lines; origin, size and root hash are required")]
    TooFewLines {
        /// The number of lines found.
        lines: usize,
    },
    /// The origin line is empty.
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    /// The size line is not a canonical decimal `u64`.
    #[error("invalid tree size {text:?}: {reason}")]
    InvalidTreeSize {
        /// The size line as found.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The root hash line is not the standard base64 encoding of 32 bytes.
    #[error("invalid root hash {text:?}: {reason}")]
    InvalidRootHash {
        /// The root hash line as found.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An extension line is empty (or contains a newline, when signing).
    #[error("extension line {line} is empty or contains a newline")]
    InvalidExtensionLine {
        /// The 1-based number of the extension line.
        line: usize,
    },
    /// A verifier key string does not have the form
    /// `<name>+<8 hex digits>+<base64 of 0x01 || 32-byte key>`.
    #[error("invalid verifier key: {reason}")]
    InvalidVerifierKey {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A verifier key's key ID is not the one derived from its name and key.
    #[error("verifier key ID {found} does not match the derived key ID {derived}")]
    VerifierKeyIdMismatch {
        /// The key ID written in the verifier key, in hexadecimal.
        found: String,
        /// The key ID derived from the name and key, in hexadecimal.
        derived: String,
    },
    /// A verifier key is of another signature type than the one expected (Ed25519 0x01 for a
    /// log, Ed25519 cosignature 0x04 for a witness).
    #[error("unsupported signature type 0x{algorithm:02x} for this key")]
    UnsupportedAlgorithm {
        /// The signature type byte found.
        algorithm: u8,
    },
    /// A public key is not a valid Ed25519 point, or is of small order.
    #[error("the public key is not a valid, full-order Ed25519 key")]
    InvalidPublicKey,
}

/// A tree head: the size and root hash of the ledger's Merkle tree, named by
/// the ledger's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The identity of the ledger that issued the checkpoint, for example
    /// `ledger.example/carbon-sink`.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The root hash of the tree at that size.
    pub root: Hash,
    /// Optional lines after the root hash, kept as read so the signed text
    /// can be reproduced. The ledger writes none; each must be non-empty.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Returns a checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Returns the note text: the origin, the size in decimal and the root
    /// hash in standard base64, each followed by a newline, then any
    /// extension lines.
    #[must_use]
    pub fn body(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Checks that [`Checkpoint::body`] would produce a well-formed text: the
    /// origin is non-empty, and neither it nor any extension line is empty
    /// (extensions only) or contains a control character.
    ///
    /// # Errors
    ///
    /// Returns [`CheckpointError::EmptyOrigin`],
    /// [`CheckpointError::ControlCharacter`] or
    /// [`CheckpointError::InvalidExtensionLine`].
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_no_controls(&self.origin, false)?;
        for (i, line) in self.extensions.iter().enumerate() {
            if line.is_empty() || line.contains('\n') {
                return Err(CheckpointError::InvalidExtensionLine { line: i + 1 });
            }
            check_no_controls(line, false)?;
        }
        Ok(())
    }

    /// Parses a checkpoint body strictly: at least three newline-terminated
    /// lines; a non-empty origin; a size in decimal digits without sign or
    /// leading zeros that fits a `u64`; a root hash that is the canonical
    /// standard base64 encoding of exactly 32 bytes; non-empty extension
    /// lines; no control character other than newline.
    ///
    /// # Errors
    ///
    /// Returns the [`CheckpointError`] describing the first defect found.
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        check_no_controls(text, true)?;
        let Some(content) = text.strip_suffix('\n') else {
            return Err(CheckpointError::MissingFinalNewline);
        };
        let lines: Vec<&str> = content.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines { lines: lines.len() });
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(size)?;
        let root = parse_root(root)?;
        for (i, line) in extensions.iter().enumerate() {
            if line.is_empty() {
                return Err(CheckpointError::InvalidExtensionLine { line: i + 1 });
            }
        }
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|s| (*s).to_owned()).collect(),
        })
    }
}

fn parse_size(text: &str) -> Result<u64, CheckpointError> {
    let invalid = |reason| CheckpointError::InvalidTreeSize {
        text: text.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("only the digits 0-9 are allowed"));
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(invalid("leading zeros are not allowed"));
    }
    text.parse().map_err(|_| invalid("larger than 2^64 - 1"))
}

fn parse_root(text: &str) -> Result<Hash, CheckpointError> {
    let invalid = |reason| CheckpointError::InvalidRootHash {
        text: text.to_owned(),
        reason,
    };
    let bytes = BASE64
        .decode(text)
        .map_err(|_| invalid("not canonical standard base64"))?;
    Hash::try_from(bytes.as_slice()).map_err(|_| invalid("not 32 bytes long"))
}

/// Refuses control characters (below U+0020), allowing newline only when
/// `newline_ok`.
fn check_no_controls(text: &str, newline_ok: bool) -> Result<(), CheckpointError> {
    match text
        .bytes()
        .enumerate()
        .find(|&(_, b)| b < 0x20 && !(newline_ok && b == b'\n'))
    {
        Some((offset, b)) => Err(CheckpointError::ControlCharacter {
            offset,
            code: u32::from(b),
        }),
        None => Ok(()),
    }
}

/// Checks a key name: non-empty, without Unicode whitespace, plus signs or
/// control characters.
///
/// # Errors
///
/// Returns [`CheckpointError::InvalidKeyName`].
pub fn validate_key_name(name: &str) -> Result<(), CheckpointError> {
    let invalid = |reason| {
        Err(CheckpointError::InvalidKeyName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.chars().any(char::is_whitespace) {
        return invalid("contains whitespace");
    }
    if name.contains('+') {
        return invalid("contains '+'");
    }
    if name.chars().any(char::is_control) {
        return invalid("contains a control character");
    }
    Ok(())
}

/// Returns the key ID of an Ed25519 key: the first four bytes of
/// SHA-256(`name` || 0x0A || 0x01 || public key).
#[must_use]
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    typed_key_id(name, ED25519_SIGNATURE_TYPE, key)
}

/// The key ID of a key of the given signature type: the first 4 bytes of
/// SHA-256(name || 0x0A || type || key).
fn typed_key_id(name: &str, signature_type: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', signature_type]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Returns the verifier key string that publishes a key:
/// `<name>+<key ID in 8 lowercase hex digits>+<base64 of 0x01 || public key>`.
///
/// The name is written as given; check it first with [`validate_key_name`].
#[must_use]
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    let mut material = Vec::with_capacity(33);
    material.push(ED25519_SIGNATURE_TYPE);
    material.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, key)),
        BASE64.encode(material)
    )
}

/// Parses a verifier key string into its key name and Ed25519 public key,
/// checking that the key ID matches the name and key.
///
/// # Errors
///
/// Returns [`CheckpointError::InvalidVerifierKey`] for a malformed string,
/// [`CheckpointError::InvalidKeyName`] for a bad name,
/// [`CheckpointError::UnsupportedAlgorithm`] for a non-Ed25519 key,
/// [`CheckpointError::InvalidPublicKey`] for an invalid or small-order key,
/// and [`CheckpointError::VerifierKeyIdMismatch`] if the key ID is wrong.
pub fn parse_verifier_key(vkey: &str) -> Result<(String, VerifyingKey), CheckpointError> {
    parse_typed_verifier_key(vkey, ED25519_SIGNATURE_TYPE)
}

/// Parses a verifier key of the given signature type (0x01 for a log's Ed25519 key, 0x04 for a
/// witness's Ed25519 cosignature key).
fn parse_typed_verifier_key(
    vkey: &str,
    signature_type: u8,
) -> Result<(String, VerifyingKey), CheckpointError> {
    let invalid = |reason| CheckpointError::InvalidVerifierKey { reason };
    // The name holds no '+', and the base64 key may, so split twice only.
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(material_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("expected <name>+<key ID>+<key>"));
    };
    validate_key_name(name)?;
    if id_hex.len() != 8 {
        return Err(invalid("the key ID must be 8 hexadecimal digits"));
    }
    let mut id = [0u8; 4];
    hex::decode_to_slice(id_hex, &mut id)
        .map_err(|_| invalid("the key ID must be 8 hexadecimal digits"))?;
    let material = BASE64
        .decode(material_b64)
        .map_err(|_| invalid("the key is not canonical standard base64"))?;
    let Some((&algorithm, raw)) = material.split_first() else {
        return Err(invalid("the key is empty"));
    };
    if algorithm != signature_type {
        return Err(CheckpointError::UnsupportedAlgorithm { algorithm });
    }
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| invalid("an Ed25519 key must be 32 bytes long"))?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| CheckpointError::InvalidPublicKey)?;
    if key.is_weak() {
        return Err(CheckpointError::InvalidPublicKey);
    }
    let derived = typed_key_id(name, signature_type, &key);
    if derived != id {
        return Err(CheckpointError::VerifierKeyIdMismatch {
            found: id_hex.to_owned(),
            derived: hex::encode(derived),
        });
    }
    Ok((name.to_owned(), key))
}

/// Signs `text` and returns the signed note: the text, a blank line and one
/// signature line.
///
/// # Errors
///
/// Returns [`CheckpointError::InvalidKeyName`] for a bad key name,
/// [`CheckpointError::MissingFinalNewline`] if the text does not end with a
/// newline, [`CheckpointError::ControlCharacter`] if it holds a control
/// character other than newline, and [`CheckpointError::NoteTooLarge`] if the
/// note would exceed [`MAX_NOTE_SIZE`].
pub fn sign_note(text: &str, key_name: &str, key: &SigningKey) -> Result<String, CheckpointError> {
    validate_key_name(key_name)?;
    if !text.ends_with('\n') {
        return Err(CheckpointError::MissingFinalNewline);
    }
    check_no_controls(text, true)?;
    let signature = key.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(4 + Signature::BYTE_SIZE);
    blob.extend_from_slice(&key_id(key_name, &key.verifying_key()));
    blob.extend_from_slice(&signature.to_bytes());
    let note = format!(
        "{text}\n{SIGNATURE_PREFIX}{key_name} {}\n",
        BASE64.encode(blob)
    );
    if note.len() > MAX_NOTE_SIZE {
        return Err(CheckpointError::NoteTooLarge {
            size: note.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    Ok(note)
}

/// Opens a signed note: checks its form, requires a valid signature by the
/// key `key_name`/`key`, and returns the signed text.
///
/// Signature lines of other keys (another name, or the same name with another
/// key ID) are ignored. Every signature line of the trusted key must verify
/// (with Ed25519 strict verification), and at least one must be present.
///
/// # Errors
///
/// Returns [`CheckpointError::NoteTooLarge`],
/// [`CheckpointError::ControlCharacter`],
/// [`CheckpointError::MissingFinalNewline`],
/// [`CheckpointError::MissingSignatureSeparator`],
/// [`CheckpointError::NoSignatures`],
/// [`CheckpointError::TooManySignatures`] or
/// [`CheckpointError::MalformedSignatureLine`] for a malformed note,
/// [`CheckpointError::InvalidKeyName`] for a bad `key_name`,
/// [`CheckpointError::InvalidSignature`] if a signature of the trusted key
/// fails, and [`CheckpointError::NoTrustedSignature`] if there is none.
pub fn open_note<'a>(
    note: &'a str,
    key_name: &str,
    key: &VerifyingKey,
) -> Result<&'a str, CheckpointError> {
    validate_key_name(key_name)?;
    let (text, lines) = split_note(note)?;
    let trusted_id = key_id(key_name, key);
    let mut verified = false;
    for (i, line) in lines.iter().enumerate() {
        let (name, blob) = parse_signature_line(line, i + 1)?;
        let (id, signature) = blob.split_at(4);
        if name != key_name || *id != trusted_id {
            continue;
        }
        let rejected = || CheckpointError::InvalidSignature {
            key_name: key_name.to_owned(),
        };
        let signature = Signature::from_slice(signature).map_err(|_| rejected())?;
        key.verify_strict(text.as_bytes(), &signature)
            .map_err(|_| rejected())?;
        verified = true;
    }
    if verified {
        Ok(text)
    } else {
        Err(CheckpointError::NoTrustedSignature {
            key_name: key_name.to_owned(),
        })
    }
}

/// Signs a checkpoint and returns the whole signed note.
///
/// The key name must equal the checkpoint's origin.
///
/// # Errors
///
/// Returns [`CheckpointError::OriginMismatch`] if `key_name` differs from the
/// origin, the errors of [`Checkpoint::validate`] for a checkpoint whose body
/// would be malformed, and those of [`sign_note`].
pub fn sign_checkpoint(
    cp: &Checkpoint,
    key_name: &str,
    key: &SigningKey,
) -> Result<String, CheckpointError> {
    validate_key_name(key_name)?;
    cp.validate()?;
    if cp.origin != key_name {
        return Err(CheckpointError::OriginMismatch {
            origin: cp.origin.clone(),
            key_name: key_name.to_owned(),
        });
    }
    sign_note(&cp.body(), key_name, key)
}

/// Opens a signed checkpoint: requires a valid signature by the key
/// `key_name`/`key` (see [`open_note`]), parses the body strictly (see
/// [`Checkpoint::parse_body`]) and requires the origin to equal `key_name`.
///
/// # Errors
///
/// Returns the errors of [`open_note`] and [`Checkpoint::parse_body`], and
/// [`CheckpointError::OriginMismatch`] if the origin differs from the key
/// name.
pub fn open_checkpoint(
    note: &str,
    key_name: &str,
    key: &VerifyingKey,
) -> Result<Checkpoint, CheckpointError> {
    let text = open_note(note, key_name, key)?;
    let cp = Checkpoint::parse_body(text)?;
    if cp.origin != key_name {
        return Err(CheckpointError::OriginMismatch {
            origin: cp.origin,
            key_name: key_name.to_owned(),
        });
    }
    Ok(cp)
}

// ---------------------------------------------------------------------------------------------
// Cosignatures (C2SP tlog-cosignature, Ed25519 `cosignature/v1`)
// ---------------------------------------------------------------------------------------------

/// The signature type byte of Ed25519 cosignatures (C2SP tlog-cosignature).
pub const COSIGNATURE_TYPE: u8 = 0x04;

/// The key ID of a witness's Ed25519 cosignature key: the first 4 bytes of
/// SHA-256(name || 0x0A || 0x04 || key).
#[must_use]
pub fn cosigner_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    typed_key_id(name, COSIGNATURE_TYPE, key)
}

/// The verifier key that publishes a witness's cosignature key:
/// `<name>+<key ID>+<base64 of 0x04 || public key>`.
#[must_use]
pub fn cosigner_verifier_key(name: &str, key: &VerifyingKey) -> String {
    let mut material = Vec::with_capacity(33);
    material.push(COSIGNATURE_TYPE);
    material.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{}+{}",
        hex::encode(cosigner_key_id(name, key)),
        BASE64.encode(material)
    )
}

/// Parses a witness's verifier key (signature type 0x04) into its name and key.
///
/// # Errors
///
/// As [`parse_verifier_key`], for the cosignature type.
pub fn parse_cosigner_key(vkey: &str) -> Result<(String, VerifyingKey), CheckpointError> {
    parse_typed_verifier_key(vkey, COSIGNATURE_TYPE)
}

/// The message an Ed25519 cosignature signs: `cosignature/v1`, `time <timestamp>`, then the
/// checkpoint's note text (its body, extension lines included).
#[must_use]
pub fn cosigned_message(checkpoint_text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// A witness's cosignature line over a checkpoint's note text, made at `timestamp` (POSIX
/// seconds): `— <name> base64(key ID || timestamp (8 bytes, big-endian) || signature)`.
///
/// # Errors
///
/// [`CheckpointError::InvalidKeyName`] for a bad name.
pub fn cosign(
    checkpoint_text: &str,
    name: &str,
    key: &SigningKey,
    timestamp: u64,
) -> Result<String, CheckpointError> {
    validate_key_name(name)?;
    let signature = key.sign(cosigned_message(checkpoint_text, timestamp).as_bytes());
    let mut blob = Vec::with_capacity(4 + 8 + Signature::BYTE_SIZE);
    blob.extend_from_slice(&cosigner_key_id(name, &key.verifying_key()));
    blob.extend_from_slice(&timestamp.to_be_bytes());
    blob.extend_from_slice(&signature.to_bytes());
    Ok(format!(
        "{SIGNATURE_PREFIX}{name} {}\n",
        BASE64.encode(blob)
    ))
}

/// The key name and timestamp of a cosignature line (`— <name> base64(key ID || timestamp ||
/// signature)`), read without verifying it.
///
/// # Errors
///
/// [`CheckpointError::MalformedSignatureLine`] for a line that is not a cosignature line.
pub fn cosignature_timestamp(line: &str) -> Result<(String, u64), CheckpointError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let (name, blob) = parse_signature_line(line, 1)?;
    if blob.len() != 4 + 8 + Signature::BYTE_SIZE {
        return Err(CheckpointError::MalformedSignatureLine {
            line: 1,
            reason: "an Ed25519 cosignature is 76 bytes",
        });
    }
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&blob[4..12]);
    Ok((name.to_owned(), u64::from_be_bytes(timestamp)))
}

/// A verified cosignature: who made it, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness's key name.
    pub name: String,
    /// When it cosigned (POSIX seconds).
    pub timestamp: u64,
}

/// The cosignatures of the trusted witnesses on a note (at most one counted per witness).
/// Lines of unknown keys are ignored; a line of a trusted witness whose signature fails makes the
/// note malformed, as the signed-note format says.
///
/// # Errors
///
/// The errors of [`open_note`]'s form checks, and [`CheckpointError::InvalidSignature`] for a
/// failing cosignature of a trusted witness.
pub fn verify_cosignatures(
    note: &str,
    witnesses: &[(String, VerifyingKey)],
) -> Result<Vec<Cosignature>, CheckpointError> {
    let (text, lines) = split_note(note)?;
    let mut found: Vec<Cosignature> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let (name, blob) = parse_signature_line(line, i + 1)?;
        for (witness, key) in witnesses {
            if name != witness.as_str()
                || blob.len() < 4
                || blob[..4] != cosigner_key_id(witness, key)
            {
                continue;
            }
            let rejected = || CheckpointError::InvalidSignature {
                key_name: witness.clone(),
            };
            let (timestamp, signature) = blob[4..].split_at_checked(8).ok_or_else(rejected)?;
            let timestamp = u64::from_be_bytes(timestamp.try_into().map_err(|_| rejected())?);
            let signature = Signature::from_slice(signature).map_err(|_| rejected())?;
            key.verify_strict(cosigned_message(text, timestamp).as_bytes(), &signature)
                .map_err(|_| rejected())?;
            if !found.iter().any(|c| c.name == *witness) {
                found.push(Cosignature {
                    name: witness.clone(),
                    timestamp,
                });
            }
        }
    }
    Ok(found)
}

/// A note's text and its signature lines, after the form checks of [`open_note`].
fn split_note(note: &str) -> Result<(&str, Vec<&str>), CheckpointError> {
    if note.len() > MAX_NOTE_SIZE {
        return Err(CheckpointError::NoteTooLarge {
            size: note.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    check_no_controls(note, true)?;
    if !note.ends_with('\n') {
        return Err(CheckpointError::MissingFinalNewline);
    }
    let Some(split) = note.rfind("\n\n") else {
        return Err(CheckpointError::MissingSignatureSeparator);
    };
    let text = &note[..=split];
    let Some(signatures) = note[split + 2..].strip_suffix('\n') else {
        return Err(CheckpointError::NoSignatures);
    };
    let lines: Vec<&str> = signatures.split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(CheckpointError::TooManySignatures {
            max: MAX_SIGNATURES,
        });
    }
    Ok((text, lines))
}

/// A signature line's key name and decoded blob (key ID || signature).
fn parse_signature_line(line: &str, line_no: usize) -> Result<(&str, Vec<u8>), CheckpointError> {
    let malformed = |reason| CheckpointError::MalformedSignatureLine {
        line: line_no,
        reason,
    };
    let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
        return Err(malformed("does not start with an em dash and a space"));
    };
    let Some((name, encoded)) = rest.split_once(' ') else {
        return Err(malformed("expected a key name and a signature"));
    };
    if validate_key_name(name).is_err() {
        return Err(malformed("invalid key name"));
    }
    let blob = BASE64
        .decode(encoded)
        .map_err(|_| malformed("signature is not canonical standard base64"))?;
    if blob.len() <= 4 {
        return Err(malformed("signature is shorter than a key ID"));
    }
    Ok((name, blob))
}

/// The signature lines of a note (each with its final newline), to carry them to another copy
/// of the same checkpoint.
///
/// # Errors
///
/// The form errors of [`open_note`].
pub fn signature_lines(note: &str) -> Result<Vec<String>, CheckpointError> {
    let (_, lines) = split_note(note)?;
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Vectors {
        #[allow(dead_code)]
        description: String,
        key_name: String,
        seed: String,
        public_key: String,
        key_id: String,
        verifier_key: String,
        other_seed: String,
        checkpoint: CheckpointVector,
        body: String,
        note: String,
        accepted: Vec<AcceptedVector>,
        negative: Vec<NegativeVector>,
        known_answer: KnownAnswer,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CheckpointVector {
        origin: String,
        size: u64,
        root: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AcceptedVector {
        name: String,
        note: String,
        extensions: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NegativeVector {
        name: String,
        #[allow(dead_code)]
        mutation: String,
        note: String,
        error: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct KnownAnswer {
        signer_seed: String,
        text: String,
        keys: Vec<KnownKey>,
        note_one_signature: String,
        note_two_signatures: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct KnownKey {
        name: String,
        verifier_key: String,
    }

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/checkpoint.json"
    ));

    fn vectors() -> Vectors {
        serde_json::from_str(VECTORS).expect("checkpoint.json parses")
    }

    fn seed(hex_seed: &str) -> SigningKey {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_seed, &mut bytes).expect("32-byte hex seed");
        SigningKey::from_bytes(&bytes)
    }

    fn root(hex_root: &str) -> Hash {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_root, &mut bytes).expect("32-byte hex root");
        bytes
    }

    fn error_name(e: &CheckpointError) -> &'static str {
        match e {
            CheckpointError::NoteTooLarge { .. } => "note-too-large",
            CheckpointError::TooManySignatures { .. } => "too-many-signatures",
            CheckpointError::ControlCharacter { .. } => "control-character",
            CheckpointError::MissingFinalNewline => "missing-final-newline",
            CheckpointError::MissingSignatureSeparator => "missing-signature-separator",
            CheckpointError::NoSignatures => "no-signatures",
            CheckpointError::MalformedSignatureLine { .. } => "malformed-signature-line",
            CheckpointError::InvalidKeyName { .. } => "invalid-key-name",
            CheckpointError::InvalidSignature { .. } => "invalid-signature",
            CheckpointError::NoTrustedSignature { .. } => "no-trusted-signature",
            CheckpointError::OriginMismatch { .. } => "origin-mismatch",
            CheckpointError::TooFewLines { .. } => "too-few-lines",
            CheckpointError::EmptyOrigin => "empty-origin",
            CheckpointError::InvalidTreeSize { .. } => "invalid-tree-size",
            CheckpointError::InvalidRootHash { .. } => "invalid-root-hash",
            CheckpointError::InvalidExtensionLine { .. } => "empty-extension-line",
            CheckpointError::InvalidVerifierKey { .. } => "invalid-verifier-key",
            CheckpointError::VerifierKeyIdMismatch { .. } => "verifier-key-id-mismatch",
            CheckpointError::UnsupportedAlgorithm { .. } => "unsupported-algorithm",
            CheckpointError::InvalidPublicKey => "invalid-public-key",
        }
    }

    #[test]
    fn fixed_seed_vector() {
        let v = vectors();
        let key = seed(&v.seed);
        let public = key.verifying_key();
        assert_eq!(hex::encode(public.as_bytes()), v.public_key);
        assert_eq!(hex::encode(key_id(&v.key_name, &public)), v.key_id);
        assert_eq!(verifier_key(&v.key_name, &public), v.verifier_key);
        let (name, parsed) = parse_verifier_key(&v.verifier_key).expect("valid vkey");
        assert_eq!(name, v.key_name);
        assert_eq!(parsed, public);

        let cp = Checkpoint::new(
            v.checkpoint.origin.clone(),
            v.checkpoint.size,
            root(&v.checkpoint.root),
        );
        assert_eq!(cp.body(), v.body);
        assert_eq!(Checkpoint::parse_body(&v.body), Ok(cp.clone()));
        let note = sign_checkpoint(&cp, &v.key_name, &key).expect("signs");
        assert_eq!(note, v.note);
        assert_eq!(open_checkpoint(&v.note, &v.key_name, &public), Ok(cp));
    }

    #[test]
    fn accepted_variants() {
        let v = vectors();
        let public = seed(&v.seed).verifying_key();
        for case in &v.accepted {
            let cp = open_checkpoint(&case.note, &v.key_name, &public)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(cp.extensions, case.extensions, "{}", case.name);
            assert_eq!(cp.root, root(&v.checkpoint.root));
            // The body is reproduced exactly, extensions included.
            assert!(
                case.note.starts_with(&format!("{}\n", cp.body())),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn negative_vectors() {
        let v = vectors();
        let public = seed(&v.seed).verifying_key();
        let names: Vec<&str> = v.negative.iter().map(|c| c.name.as_str()).collect();
        for required in [
            "modified-root",
            "wrong-key",
            "size-off-by-one",
            "missing-blank-line",
            "bad-key-id",
            "extra-trailing-newline",
            "unknown-signer-only",
        ] {
            assert!(
                names.contains(&required),
                "missing negative case {required}"
            );
        }
        for case in &v.negative {
            match open_checkpoint(&case.note, &v.key_name, &public) {
                Ok(_) => panic!("negative case {} was accepted", case.name),
                Err(e) => assert_eq!(error_name(&e), case.error, "{}: {e}", case.name),
            }
        }
    }

    #[test]
    fn wrong_key_vector_opens_with_its_own_key() {
        // The "wrong-key" note is well formed: it opens with the key that
        // signed it, and only with that one.
        let v = vectors();
        let other = seed(&v.other_seed).verifying_key();
        let case = v
            .negative
            .iter()
            .find(|c| c.name == "wrong-key")
            .expect("wrong-key case");
        assert!(open_checkpoint(&case.note, &v.key_name, &other).is_ok());
    }

    #[test]
    fn published_signed_note_known_answer() {
        let v = vectors().known_answer;
        let mut keys = Vec::new();
        for k in &v.keys {
            let (name, key) = parse_verifier_key(&k.verifier_key).expect("published vkey");
            assert_eq!(name, k.name);
            assert_eq!(verifier_key(&name, &key), k.verifier_key);
            keys.push((name, key));
        }
        // The published key ID of PeterNeumann.
        assert_eq!(hex::encode(key_id(&keys[0].0, &keys[0].1)), "c74f20a3");
        // Ed25519 is deterministic: signing the text with the published seed
        // reproduces the published note byte for byte.
        let signer = seed(&v.signer_seed);
        assert_eq!(signer.verifying_key(), keys[0].1);
        assert_eq!(
            sign_note(&v.text, &keys[0].0, &signer).expect("signs"),
            v.note_one_signature
        );
        assert_eq!(
            open_note(&v.note_one_signature, &keys[0].0, &keys[0].1),
            Ok(v.text.as_str())
        );
        for (name, key) in &keys {
            assert_eq!(
                open_note(&v.note_two_signatures, name, key),
                Ok(v.text.as_str())
            );
        }
        assert_eq!(
            open_note(&v.note_one_signature, &keys[1].0, &keys[1].1),
            Err(CheckpointError::NoTrustedSignature {
                key_name: "EnochRoot".to_owned()
            })
        );
        // The text is not a checkpoint.
        assert_eq!(
            open_checkpoint(&v.note_one_signature, &keys[0].0, &keys[0].1),
            Err(CheckpointError::TooFewLines { lines: 2 })
        );
    }

    fn test_key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    const NAME: &str = "ledger.example/test";

    #[test]
    fn round_trip() {
        let key = test_key();
        for size in [0u64, 1, 9, u64::MAX] {
            let cp = Checkpoint::new(NAME, size, [size.to_le_bytes()[0]; 32]);
            let note = sign_checkpoint(&cp, NAME, &key).expect("signs");
            assert_eq!(open_checkpoint(&note, NAME, &key.verifying_key()), Ok(cp));
        }
        let mut cp = Checkpoint::new(NAME, 3, [1; 32]);
        cp.extensions = vec!["a b".to_owned(), "c".to_owned()];
        let note = sign_checkpoint(&cp, NAME, &key).expect("signs");
        assert_eq!(open_checkpoint(&note, NAME, &key.verifying_key()), Ok(cp));
    }

    #[test]
    fn key_names_are_validated() {
        for bad in [
            "",
            "a b",
            "a+b",
            "a\tb",
            "a\u{a0}b",
            "a\u{2003}b",
            "a\u{1}b",
            "a\nb",
        ] {
            assert!(
                matches!(
                    validate_key_name(bad),
                    Err(CheckpointError::InvalidKeyName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(validate_key_name("example.com/log-1_é").is_ok());
        let key = test_key();
        let cp = Checkpoint::new("a b", 1, [0; 32]);
        assert!(matches!(
            sign_checkpoint(&cp, "a b", &key),
            Err(CheckpointError::InvalidKeyName { .. })
        ));
        assert!(matches!(
            open_note("x\n\n\u{2014} a x\n", "", &key.verifying_key()),
            Err(CheckpointError::InvalidKeyName { .. })
        ));
    }

    #[test]
    fn signing_refuses_bad_checkpoints() {
        let key = test_key();
        assert_eq!(
            sign_checkpoint(&Checkpoint::new("", 1, [0; 32]), NAME, &key),
            Err(CheckpointError::EmptyOrigin)
        );
        assert!(matches!(
            sign_checkpoint(&Checkpoint::new("other.example/x", 1, [0; 32]), NAME, &key),
            Err(CheckpointError::OriginMismatch { .. })
        ));
        assert!(matches!(
            sign_checkpoint(&Checkpoint::new("a\nb", 1, [0; 32]), "a", &key),
            Err(CheckpointError::ControlCharacter { .. })
        ));
        let mut cp = Checkpoint::new(NAME, 1, [0; 32]);
        cp.extensions = vec![String::new()];
        assert_eq!(
            sign_checkpoint(&cp, NAME, &key),
            Err(CheckpointError::InvalidExtensionLine { line: 1 })
        );
        cp.extensions = vec!["x\ny".to_owned()];
        assert_eq!(
            sign_checkpoint(&cp, NAME, &key),
            Err(CheckpointError::InvalidExtensionLine { line: 1 })
        );
        assert_eq!(
            sign_note("no newline", NAME, &key),
            Err(CheckpointError::MissingFinalNewline)
        );
    }

    #[test]
    fn body_parsing_is_strict() {
        let r = BASE64.encode([9u8; 32]);
        let ok = |t: &str| Checkpoint::parse_body(t);
        assert!(ok(&format!("o\n0\n{r}\n")).is_ok());
        assert!(ok(&format!("o\n18446744073709551615\n{r}\n")).is_ok());
        let cases: &[(String, &str)] = &[
            (
                format!("o\n18446744073709551616\n{r}\n"),
                "invalid-tree-size",
            ),
            (format!("o\n+1\n{r}\n"), "invalid-tree-size"),
            (format!("o\n-1\n{r}\n"), "invalid-tree-size"),
            (format!("o\n00\n{r}\n"), "invalid-tree-size"),
            (format!("o\n 1\n{r}\n"), "invalid-tree-size"),
            (format!("o\n\n{r}\n"), "invalid-tree-size"),
            (format!("o\n１\n{r}\n"), "invalid-tree-size"),
            (format!("\n1\n{r}\n"), "empty-origin"),
            (format!("o\n1\n{r}"), "missing-final-newline"),
            ("o\n1\n".to_owned(), "too-few-lines"),
            ("o\n1\nAAAA\n".to_owned(), "invalid-root-hash"),
            (
                format!("o\n1\n{}\n", r.trim_end_matches('=')),
                "invalid-root-hash",
            ),
            (format!("o\n1\n{r} \n"), "invalid-root-hash"),
            (
                format!("o\n1\n{}\n", BASE64.encode([9u8; 33])),
                "invalid-root-hash",
            ),
            (
                format!("o\n1\n{}\n", BASE64.encode([0xfbu8; 32]).replace('+', "-")),
                "invalid-root-hash",
            ),
            (format!("o\n1\n{r}\n\n"), "empty-extension-line"),
            (format!("o\r\n1\n{r}\n"), "control-character"),
        ];
        for (text, expected) in cases {
            match ok(text) {
                Ok(cp) => panic!("{text:?} parsed as {cp:?}"),
                Err(e) => assert_eq!(error_name(&e), *expected, "{text:?}: {e}"),
            }
        }
        // Non-canonical base64 (nonzero trailing bits) is refused.
        let mut noncanonical = r.clone().into_bytes();
        let last = noncanonical.len() - 2;
        noncanonical[last] = b'F';
        let noncanonical = String::from_utf8(noncanonical).expect("ASCII");
        assert_ne!(noncanonical, r);
        assert!(matches!(
            ok(&format!("o\n1\n{noncanonical}\n")),
            Err(CheckpointError::InvalidRootHash { .. })
        ));
    }

    #[test]
    fn verifier_key_parsing_is_strict() {
        let v = vectors();
        let good = v.verifier_key.clone();
        assert!(parse_verifier_key(&good).is_ok());
        // Every proper prefix and suffix, and every single-byte change, fails.
        let bytes = good.as_bytes();
        for i in 0..bytes.len() {
            for (s, e) in [(0, i), (i + 1, bytes.len())] {
                if let Ok(sub) = std::str::from_utf8(&bytes[s..e]) {
                    assert!(parse_verifier_key(sub).is_err(), "{sub:?}");
                }
            }
            let mut changed = bytes.to_vec();
            changed[i] = changed[i].wrapping_add(1);
            if let Ok(s) = std::str::from_utf8(&changed) {
                assert!(parse_verifier_key(s).is_err(), "{s:?}");
            }
        }
        let (name, key) = parse_verifier_key(&good).expect("valid");
        // An unknown signature type, with the key ID adjusted to match.
        let mut material = vec![0x02];
        material.extend_from_slice(key.as_bytes());
        let other = format!(
            "{name}+{}+{}",
            hex::encode(key_id(&name, &key)),
            BASE64.encode(&material)
        );
        assert_eq!(
            parse_verifier_key(&other),
            Err(CheckpointError::UnsupportedAlgorithm { algorithm: 2 })
        );
        // A small-order key (the identity point) is refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).expect("decodes");
        assert_eq!(
            parse_verifier_key(&verifier_key("weak", &weak)),
            Err(CheckpointError::InvalidPublicKey)
        );
        assert!(matches!(
            parse_verifier_key(&good.replacen(&v.key_id, "00000000", 1)),
            Err(CheckpointError::VerifierKeyIdMismatch { .. })
        ));
    }

    #[test]
    fn size_and_count_limits() {
        let key = test_key();
        let public = key.verifying_key();
        let cp = Checkpoint::new(NAME, 5, [3; 32]);
        let note = sign_checkpoint(&cp, NAME, &key).expect("signs");
        // 99 foreign signatures plus ours: accepted.
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let foreign = sign_note(&cp.body(), "witness.example/w", &other).expect("signs");
        let foreign_line = &foreign[cp.body().len() + 1..];
        let own_line = &note[cp.body().len() + 1..];
        let many = |n: usize| format!("{}\n{}{}", cp.body(), foreign_line.repeat(n), own_line);
        assert_eq!(
            open_checkpoint(&many(MAX_SIGNATURES - 1), NAME, &public),
            Ok(cp.clone())
        );
        assert_eq!(
            open_checkpoint(&many(MAX_SIGNATURES), NAME, &public),
            Err(CheckpointError::TooManySignatures {
                max: MAX_SIGNATURES
            })
        );
        // A note above the size limit is refused before anything else.
        let mut big = cp.clone();
        big.extensions = vec!["x".repeat(MAX_NOTE_SIZE)];
        assert!(matches!(
            sign_checkpoint(&big, NAME, &key),
            Err(CheckpointError::NoteTooLarge { .. })
        ));
        let huge = format!("{}{}\n\n{}", cp.body(), "x".repeat(MAX_NOTE_SIZE), own_line);
        assert!(matches!(
            open_checkpoint(&huge, NAME, &public),
            Err(CheckpointError::NoteTooLarge { .. })
        ));
    }

    #[test]
    fn a_bad_trusted_signature_rejects_the_note_even_beside_a_good_one() {
        let key = test_key();
        let cp = Checkpoint::new(NAME, 5, [3; 32]);
        let note = sign_checkpoint(&cp, NAME, &key).expect("signs");
        let own_line = &note[cp.body().len() + 1..];
        // Same key name and key ID, but a signature over another text.
        let forged =
            sign_note(&Checkpoint::new(NAME, 6, [3; 32]).body(), NAME, &key).expect("signs");
        let forged_line = &forged[forged.find('\u{2014}').expect("signature line")..];
        let both = format!("{}\n{}{}", cp.body(), own_line, forged_line);
        assert!(matches!(
            open_checkpoint(&both, NAME, &key.verifying_key()),
            Err(CheckpointError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn malformed_signature_lines() {
        let key = test_key();
        let public = key.verifying_key();
        let body = Checkpoint::new(NAME, 1, [0; 32]).body();
        for line in [
            "\u{2014} name\n",
            "\u{2014}name AAAAAAAA\n",
            "\u{2014} name AAAA\n",
            "\u{2014} name AAAAAA==\n",
            "\u{2014} name not*base64\n",
            "\u{2014} na+me AAAAAAAA\n",
            "\u{2014} name AAAAAAAA extra\n",
            "\u{2014}  name AAAAAAAA\n",
        ] {
            let note = format!("{body}\n{line}");
            assert!(
                matches!(
                    open_checkpoint(&note, NAME, &public),
                    Err(CheckpointError::MalformedSignatureLine { line: 1, .. })
                ),
                "{line:?}"
            );
        }
        // A signature of the trusted key with a wrong length fails as a bad
        // signature, not as an unknown signer.
        let mut blob = key_id(NAME, &public).to_vec();
        blob.extend_from_slice(&[0u8; 63]);
        let note = format!("{body}\n\u{2014} {NAME} {}\n", BASE64.encode(&blob));
        assert!(matches!(
            open_checkpoint(&note, NAME, &public),
            Err(CheckpointError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn text_may_contain_blank_lines() {
        // The separator is the last blank line of the note.
        let key = test_key();
        let text = "first\n\nsecond\n\n";
        let note = sign_note(text, NAME, &key).expect("signs");
        assert_eq!(open_note(&note, NAME, &key.verifying_key()), Ok(text));
    }

    #[test]
    fn error_messages_are_readable() {
        let e = CheckpointError::NoTrustedSignature {
            key_name: NAME.to_owned(),
        };
        assert_eq!(
            e.to_string(),
            "the note is not signed by the trusted key ledger.example/test"
        );
        let e = CheckpointError::ControlCharacter {
            offset: 3,
            code: 13,
        };
        assert_eq!(
            e.to_string(),
            "control character U+000D at byte 3; only newline is allowed"
        );
    }

    proptest! {
        #[test]
        fn any_checkpoint_round_trips(
            origin in "[a-z0-9./_-]{1,40}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            extensions in prop::collection::vec("[ -~]{1,20}", 0..3),
            seed_bytes in any::<[u8; 32]>(),
        ) {
            let key = SigningKey::from_bytes(&seed_bytes);
            let mut cp = Checkpoint::new(origin.clone(), size, root);
            cp.extensions = extensions;
            let note = sign_checkpoint(&cp, &origin, &key).expect("signs");
            prop_assert_eq!(Checkpoint::parse_body(&cp.body()), Ok(cp.clone()));
            prop_assert_eq!(open_checkpoint(&note, &origin, &key.verifying_key()), Ok(cp));
        }

        #[test]
        fn any_single_byte_change_is_rejected(
            position in any::<prop::sample::Index>(),
            replacement in 0x20u8..0x7f,
        ) {
            let key = test_key();
            let cp = Checkpoint::new(NAME, 1234, [5; 32]);
            let note = sign_checkpoint(&cp, NAME, &key).expect("signs");
            let mut bytes = note.clone().into_bytes();
            let i = position.index(bytes.len());
            prop_assume!(bytes[i].is_ascii() && bytes[i] != replacement);
            bytes[i] = replacement;
            if let Ok(changed) = String::from_utf8(bytes) {
                prop_assert!(open_checkpoint(&changed, NAME, &key.verifying_key()).is_err());
            }
        }
    }
}
