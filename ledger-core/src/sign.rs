//! Signing bodies, and checking a submission's signatures against the keys current in the ledger.
//!
//! Each signer signs `b"carbon-sink-ledger/v1/entry\n" || JCS(body)` with Ed25519; the ledger
//! verifies strictly (no malleable signatures, no small-order keys). Which parties *must* sign is
//! the state machine's business ([`crate::state`]); this module establishes who *did*.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::canonical::CanonicalError;
use crate::entry::{Body, EntryKind, SignatureLine, Submission};
use crate::ids::{ParticipantId, PublicKey, SignatureBytes};
use crate::state::{Signers, State};
use crate::wire::Prepared;

/// Why a submission's signatures were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No signature at all.
    #[error("the entry carries no signature")]
    Unsigned,
    /// A signature line names a participant the ledger does not know.
    #[error("the entry is signed by {0}, who is not a participant of this ledger")]
    UnknownSigner(String),
    /// A signature does not verify with the signer's current key.
    #[error("the signature of {0} does not verify with its current key over this body")]
    BadSignature(String),
    /// The same key signed twice.
    #[error("{0} signed the entry twice with the same key")]
    DuplicateSignature(String),
    /// A signature that does not verify with the signer's current key, but does with a key the
    /// signer held before: it was made before a `rotate_key`.
    #[error(
        "the signature of {signer} was signed with a key that is not the current one: {signer} rotated its key at entry {rotated_at}; sign the body again with the current key"
    )]
    FormerKey {
        /// Who signed.
        signer: String,
        /// The `rotate_key` entry from which the current key signs.
        rotated_at: u64,
    },
}

impl SignatureError {
    /// A stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            SignatureError::Unsigned => "unsigned",
            SignatureError::UnknownSigner(_) => "unknown-signer",
            SignatureError::BadSignature(_) | SignatureError::FormerKey { .. } => "bad-signature",
            SignatureError::DuplicateSignature(_) => "duplicate-signature",
        }
    }
}

/// One signature line for a body.
pub fn sign_line(canonical_body: &[u8], signer: &ParticipantId, key: &SigningKey) -> SignatureLine {
    let signature = key.sign(&crate::wire::signing_message(canonical_body));
    SignatureLine {
        signer: signer.clone(),
        sig: SignatureBytes(signature.to_bytes()),
    }
}

/// Signs a body by each of the given parties, in order, and returns the submission.
pub fn sign_body(
    body: Body,
    signers: &[(&ParticipantId, &SigningKey)],
) -> Result<Submission, CanonicalError> {
    let canonical_body = crate::canonical::to_canonical(&body)?;
    let signatures = signers
        .iter()
        .map(|(id, key)| sign_line(&canonical_body, id, key))
        .collect();
    Ok(Submission { body, signatures })
}

/// Where signature checks find each participant's current key.
pub trait KeyLookup {
    /// The key that signs for `id` now, if `id` is a participant.
    fn current_key(&self, id: &ParticipantId) -> Option<PublicKey>;

    /// The keys `id` held before its current one, and the entry from which the current one
    /// signs: for a refusal that says a signature was made with a key rotated away. None by
    /// default.
    fn former_keys(&self, _id: &ParticipantId) -> Option<(Vec<PublicKey>, u64)> {
        None
    }
}

impl KeyLookup for State {
    fn current_key(&self, id: &ParticipantId) -> Option<PublicKey> {
        self.participant(id).map(|p| p.public_key)
    }

    fn former_keys(&self, id: &ParticipantId) -> Option<(Vec<PublicKey>, u64)> {
        let since = self.participant(id)?.key_since_seq;
        Some((State::former_keys(self, id), since))
    }
}

impl KeyLookup for std::collections::HashMap<ParticipantId, PublicKey> {
    fn current_key(&self, id: &ParticipantId) -> Option<PublicKey> {
        self.get(id).copied()
    }
}

/// Who signed a submission, and with which keys (so that the sequencer can tell whether a key
/// rotated between verification and sequencing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// The signers, as the state machine needs them.
    pub signers: Signers,
    /// The current keys that verified, per signer.
    pub keys_used: Vec<(ParticipantId, [u8; 32])>,
}

impl Verified {
    /// Whether at least one key verified and every key used is still the signer's current key.
    pub fn still_current(&self, keys: &impl KeyLookup) -> bool {
        !self.keys_used.is_empty()
            && self.keys_used.iter().all(|(id, key)| {
                keys.current_key(id)
                    .is_some_and(|current| current.to_bytes() == *key)
            })
    }
}

/// The key named in the body that `signer` may prove possession of: the new participant's key in
/// a registration, the new key in a rotation.
fn body_key_for<'a>(body: &'a Body, signer: &ParticipantId) -> Option<&'a PublicKey> {
    match &body.kind {
        EntryKind::RegisterParticipant(r) if r.participant == *signer => Some(&r.public_key),
        EntryKind::RotateKey(r) if r.participant == *signer => Some(&r.new_public_key),
        _ => None,
    }
}

fn verifies(key: &VerifyingKey, message: &[u8], sig: &SignatureBytes) -> bool {
    key.verify_strict(message, &Signature::from_bytes(&sig.0))
        .is_ok()
}

/// Checks every signature line of a prepared submission against the keys current now (and the
/// key a registration or rotation names), and says who signed.
pub fn verify_signatures(
    keys: &impl KeyLookup,
    prepared: &Prepared,
) -> Result<Verified, SignatureError> {
    let lines = &prepared.submission().signatures;
    if lines.is_empty() {
        return Err(SignatureError::Unsigned);
    }
    let message = prepared.signing_message();
    let body = prepared.body();
    let mut verified = Verified::default();
    for line in lines {
        let current = keys.current_key(&line.signer);
        let by_current = current.filter(|k| verifies(k.verifying_key(), &message, &line.sig));
        if let Some(key) = by_current {
            if !verified.signers.current.insert(line.signer.clone()) {
                return Err(SignatureError::DuplicateSignature(line.signer.to_string()));
            }
            verified
                .keys_used
                .push((line.signer.clone(), key.to_bytes()));
            continue;
        }
        match body_key_for(body, &line.signer) {
            Some(key) if verifies(key.verifying_key(), &message, &line.sig) => {
                if verified.signers.new_key {
                    return Err(SignatureError::DuplicateSignature(line.signer.to_string()));
                }
                verified.signers.new_key = true;
            }
            None if current.is_none() => {
                return Err(SignatureError::UnknownSigner(line.signer.to_string()))
            }
            _ => return Err(bad_signature(keys, &line.signer, &message, &line.sig)),
        }
    }
    Ok(verified)
}

/// A signature that verifies with no key it may be checked with: [`SignatureError::FormerKey`]
/// if it verifies with a key the signer rotated away, else [`SignatureError::BadSignature`].
fn bad_signature(
    keys: &impl KeyLookup,
    signer: &ParticipantId,
    message: &[u8],
    sig: &SignatureBytes,
) -> SignatureError {
    match keys.former_keys(signer) {
        Some((former, rotated_at))
            if former
                .iter()
                .any(|k| verifies(k.verifying_key(), message, sig)) =>
        {
            SignatureError::FormerKey {
                signer: signer.to_string(),
                rotated_at,
            }
        }
        _ => SignatureError::BadSignature(signer.to_string()),
    }
}
