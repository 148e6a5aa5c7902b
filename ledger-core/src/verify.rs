//! Verification that needs no storage and no network: replaying an export against a signed
//! checkpoint, and a bank's check of a pledge bundle.
//!
//! A verifier trusts one thing, the operator's public key. Everything else — the entries, their
//! signatures, the keys that made them, the tree — is recomputed here from bytes.

use std::collections::BTreeMap;
use std::io::BufRead;

use ed25519_dalek::VerifyingKey;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint};
use crate::entry::{Body, EntryKind, Submission};
use crate::ids::{Origin, ParticipantId, PublicKey, Role};
use crate::merkle::{self, CompactTree, Hash, NodeId};
use crate::sign;
use crate::state::{Context, State};
use crate::wire::{self, Envelope, Prepared};

/// Why a replay stopped: the first bad entry and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {seq}: {reason}")]
pub struct ReplayError {
    /// The first sequence number that does not verify.
    pub seq: u64,
    /// What is wrong, in words.
    pub reason: String,
}

/// Replays leaves one by one: decodes each envelope, checks its position and chain link, its
/// signatures against the keys current at that point, applies it to a fresh state, and rebuilds
/// the tree.
#[derive(Debug)]
pub struct Replayer {
    origin: Origin,
    state: State,
    tree: CompactTree,
    prev: Hash,
    signatures: u64,
}

impl Replayer {
    /// A replay of the ledger named `origin`, from its first entry.
    pub fn new(origin: Origin) -> Self {
        Self {
            origin,
            state: State::new(),
            tree: CompactTree::new(),
            prev: [0; 32],
            signatures: 0,
        }
    }

    /// Replays the next leaf; returns the Merkle nodes it completed.
    pub fn push(&mut self, leaf: &[u8]) -> Result<Vec<(NodeId, Hash)>, ReplayError> {
        let seq = self.tree.size();
        let fail = |reason: String| ReplayError { seq, reason };
        let envelope =
            Envelope::from_leaf(leaf).map_err(|e| fail(format!("the leaf cannot be read: {e}")))?;
        if envelope.seq != seq {
            return Err(fail(format!(
                "the envelope says it is entry {}",
                envelope.seq
            )));
        }
        if envelope.prev != hex::encode(self.prev) {
            return Err(fail(
                "its prev does not match the previous leaf's hash".to_owned(),
            ));
        }
        let body = &envelope.entry.body;
        if body.ledger != self.origin {
            return Err(fail(format!(
                "it was made for the ledger \"{}\"",
                body.ledger
            )));
        }
        let signature_count = envelope.entry.signatures.len() as u64;
        let prepared = Prepared::new(envelope.entry)
            .map_err(|e| fail(format!("the body cannot be encoded: {e}")))?;
        let verified =
            sign::verify_signatures(&self.state, &prepared).map_err(|e| fail(e.to_string()))?;
        let ctx = Context {
            seq,
            accepted_at: envelope.accepted_at,
            signers: verified.signers,
            body_digest: prepared.body_digest,
        };
        self.state
            .apply(&ctx, prepared.body())
            .map_err(|e| fail(format!("the state machine refuses it: {e}")))?;
        self.state.settle();
        self.signatures += signature_count;
        let leaf_hash = merkle::leaf_hash(leaf);
        self.prev = leaf_hash;
        self.tree.append(leaf_hash).map_err(|e| fail(e.to_string()))
    }

    /// Entries replayed.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The state so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Signatures checked so far.
    pub fn signatures(&self) -> u64 {
        self.signatures
    }

    /// The tree's right edge and the hash of the last leaf.
    pub fn head(&self) -> (&CompactTree, Hash) {
        (&self.tree, self.prev)
    }
}

/// What an export verification established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportReport {
    /// The ledger's origin.
    pub origin: String,
    /// Entries in the export.
    pub entries: u64,
    /// Signatures checked.
    pub signatures: u64,
    /// The checkpoint's size (a prefix of the export, or all of it).
    pub checkpoint_size: u64,
    /// Hex root at the checkpoint's size.
    pub checkpoint_root: String,
}

/// Verifies an NDJSON export against a checkpoint signed by the operator key: every entry
/// replays, the ledger's first entry registers that very key as operator, and the root at the
/// checkpoint's size is the checkpoint's root.
pub fn verify_export(
    export: impl BufRead,
    checkpoint_note: &str,
    operator_key: &VerifyingKey,
) -> Result<ExportReport, ReplayError> {
    replay_export(export, checkpoint_note, operator_key, &mut |_, _, _| Ok(())).map(|(r, _)| r)
}

/// Called for each verified leaf of an export: its bytes and the Merkle nodes it completed.
pub type LeafSink<'a> = dyn FnMut(u64, &[u8], Vec<(NodeId, Hash)>) -> Result<(), String> + 'a;

/// [`verify_export`], handing each verified leaf to `sink` (a restore writes them to a store);
/// also returns the replay, whose state is the ledger's state after the export.
pub fn replay_export(
    export: impl BufRead,
    checkpoint_note: &str,
    operator_key: &VerifyingKey,
    sink: &mut LeafSink<'_>,
) -> Result<(ExportReport, Replayer), ReplayError> {
    let at_start = |reason: String| ReplayError { seq: 0, reason };
    let origin_line = checkpoint_note.lines().next().unwrap_or_default();
    let checkpoint = checkpoint::open_checkpoint(checkpoint_note, origin_line, operator_key)
        .map_err(|e| at_start(format!("the checkpoint does not verify: {e}")))?;
    let origin: Origin = checkpoint
        .origin
        .parse()
        .map_err(|e| at_start(format!("the checkpoint's origin is not valid: {e}")))?;
    let mut replayer = Replayer::new(origin);
    let mut root_at_checkpoint = (checkpoint.size == 0).then(merkle::empty_root);
    for line in export.split(b'\n') {
        let seq = replayer.size();
        let line = line.map_err(|e| ReplayError {
            seq,
            reason: format!("the export cannot be read: {e}"),
        })?;
        if line.is_empty() {
            continue;
        }
        let nodes = replayer.push(&line)?;
        sink(seq, &line, nodes).map_err(|reason| ReplayError { seq, reason })?;
        if seq == 0 {
            let operator = replayer
                .state()
                .operator()
                .and_then(|id| replayer.state().participant(id));
            if operator.map(|p| p.public_key.to_bytes()) != Some(operator_key.to_bytes()) {
                return Err(at_start(
                    "the first entry does not register the checkpoint's key as operator".to_owned(),
                ));
            }
        }
        if replayer.size() == checkpoint.size {
            root_at_checkpoint = Some(replayer.root());
        }
    }
    match root_at_checkpoint {
        Some(root) if root == checkpoint.root => Ok((
            ExportReport {
                origin: checkpoint.origin,
                entries: replayer.size(),
                signatures: replayer.signatures(),
                checkpoint_size: checkpoint.size,
                checkpoint_root: hex::encode(checkpoint.root),
            },
            replayer,
        )),
        Some(_) => Err(ReplayError {
            seq: checkpoint.size.saturating_sub(1),
            reason: "the export's root at the checkpoint's size differs from the checkpoint's root: history was rewritten".to_owned(),
        }),
        None => Err(ReplayError {
            seq: replayer.size(),
            reason: format!(
                "the export holds {} entries, fewer than the checkpoint's {}",
                replayer.size(),
                checkpoint.size
            ),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// The bank's pledge bundle
// ---------------------------------------------------------------------------------------------

/// One entry of a bundle: its leaf bytes and its inclusion proof under the bundle's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvedEntry {
    /// The leaf bytes (the envelope's JCS), as text.
    pub leaf: String,
    /// Hex hashes of the inclusion proof.
    pub proof: Vec<String>,
}

/// Everything a bank needs to check a pledge offline: a signed checkpoint, and with inclusion
/// proofs under it the pledge entry, the issuance of its batch, the monitoring report behind it,
/// and the registrations and key rotations of everyone who signed them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PledgeBundle {
    /// Bundle format version.
    pub version: u32,
    /// The pledge's id.
    pub pledge: String,
    /// The checkpoint (C2SP signed note) the proofs lead to.
    pub checkpoint: String,
    /// The entries, in ledger order.
    pub entries: Vec<ProvedEntry>,
}

/// What a verified pledge bundle proves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PledgeFinding {
    /// The pledge.
    pub pledge: String,
    /// Entry that made it.
    pub pledge_seq: u64,
    /// Who pledged.
    pub pledgor: String,
    /// In whose favour.
    pub bank: String,
    /// The batch.
    pub batch: String,
    /// Its vintage.
    pub vintage: u16,
    /// The project it came from.
    pub project: String,
    /// Tonnes locked.
    pub quantity: Decimal,
    /// Facility limit.
    pub limit: Decimal,
    /// Currency.
    pub currency: String,
    /// Reference price relied on.
    pub price_ref: String,
    /// Haircut.
    pub haircut: Decimal,
    /// Tonnes issued in the batch.
    pub batch_issued: Decimal,
    /// The monitoring report behind it.
    pub report: String,
    /// Tonnes the report verified.
    pub report_verified: Decimal,
    /// The verifier who signed the report.
    pub verifier: String,
    /// Checkpoint size the proofs lead to.
    pub checkpoint_size: u64,
    /// Checkpoint root (hex).
    pub checkpoint_root: String,
}

/// Why a pledge bundle does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the pledge bundle does not verify: {0}")]
pub struct BundleError(pub String);

/// A participant's keys over time (the entry each became current at, oldest first) and roles.
type KeyHistory = (Vec<(u64, PublicKey)>, Vec<Role>);

/// The keys and roles of participants over time, rebuilt from their registrations and rotations.
#[derive(Default)]
struct KeyBook {
    keys: BTreeMap<ParticipantId, KeyHistory>,
}

impl KeyBook {
    fn key_at(&self, who: &ParticipantId, seq: u64) -> Option<&PublicKey> {
        let (history, _) = self.keys.get(who)?;
        history
            .iter()
            .rev()
            .find(|(since, _)| *since < seq)
            .map(|(_, key)| key)
    }

    fn has_role(&self, who: &ParticipantId, role: Role) -> bool {
        self.keys
            .get(who)
            .is_some_and(|(_, roles)| roles.contains(&role))
    }
}

fn signed_by(
    submission: &Submission,
    message: &[u8],
    who: &ParticipantId,
    key: &PublicKey,
) -> bool {
    submission.signatures.iter().any(|line| {
        line.signer == *who
            && key
                .verifying_key()
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&line.sig.0))
                .is_ok()
    })
}

fn bundle_error(text: impl Into<String>) -> BundleError {
    BundleError(text.into())
}

/// Checks a pledge bundle with nothing but the operator's public key, and says what it proves.
///
/// It proves that, in the ledger the checkpoint commits to: the pledge was signed by the pledgor
/// and the bank with their then-current keys; its batch was issued by the operator from a
/// monitoring report signed by a registered verifier, which verified at least the batch's
/// quantity; and the pledge locks no more than was issued. The bank alone can release or enforce
/// a pledge, and only with its own signature, so a bank that has signed neither knows the pledge
/// is still active.
pub fn verify_pledge_bundle(
    bundle: &PledgeBundle,
    operator_key: &VerifyingKey,
) -> Result<PledgeFinding, BundleError> {
    if bundle.version != 1 {
        return Err(bundle_error(format!(
            "unknown bundle version {}",
            bundle.version
        )));
    }
    let origin_line = bundle.checkpoint.lines().next().unwrap_or_default();
    let checkpoint: Checkpoint =
        checkpoint::open_checkpoint(&bundle.checkpoint, origin_line, operator_key).map_err(
            |e| {
                bundle_error(format!(
                    "the checkpoint is not signed by the operator key: {e}"
                ))
            },
        )?;

    // Every entry: readable, included under the checkpoint.
    let mut entries: BTreeMap<u64, (Envelope, Vec<u8>)> = BTreeMap::new();
    for proved in &bundle.entries {
        let leaf = proved.leaf.as_bytes();
        let envelope = Envelope::from_leaf(leaf)
            .map_err(|e| bundle_error(format!("an entry cannot be read: {e}")))?;
        let seq = envelope.seq;
        if envelope.entry.body.ledger.as_str() != checkpoint.origin {
            return Err(bundle_error(format!(
                "entry {seq} belongs to another ledger"
            )));
        }
        let proof = proved
            .proof
            .iter()
            .map(|h| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(h, &mut out).map(|()| out)
            })
            .collect::<Result<Vec<Hash>, _>>()
            .map_err(|_| bundle_error(format!("entry {seq}: a proof hash is not hex")))?;
        merkle::verify_inclusion(
            &merkle::leaf_hash(leaf),
            seq,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )
        .map_err(|e| {
            bundle_error(format!(
                "entry {seq} is not in the checkpointed ledger: {e}"
            ))
        })?;
        let message = wire::signing_message(
            &crate::canonical::to_canonical(&envelope.entry.body)
                .map_err(|e| bundle_error(format!("entry {seq}: {e}")))?,
        );
        entries.insert(seq, (envelope, message));
    }

    // Keys over time, from the registrations and rotations in the bundle, in ledger order.
    let mut book = KeyBook::default();
    for (seq, (envelope, message)) in &entries {
        let submission = &envelope.entry;
        match &submission.body.kind {
            EntryKind::RegisterParticipant(r) => {
                let self_signed = signed_by(submission, message, &r.participant, &r.public_key);
                let ok = if *seq == 0 {
                    r.roles.contains(&Role::Operator)
                        && r.public_key.to_bytes() == operator_key.to_bytes()
                        && self_signed
                } else {
                    let operator = book
                        .keys
                        .iter()
                        .find(|(_, (_, roles))| roles.contains(&Role::Operator));
                    operator.is_some_and(|(id, _)| {
                        book.key_at(id, *seq)
                            .is_some_and(|key| signed_by(submission, message, id, key))
                    }) && self_signed
                };
                if !ok {
                    return Err(bundle_error(format!(
                        "the registration of {} (entry {seq}) is not signed as it must be",
                        r.participant
                    )));
                }
                book.keys.insert(
                    r.participant.clone(),
                    (vec![(*seq, r.public_key)], r.roles.clone()),
                );
            }
            EntryKind::RotateKey(r) => {
                let current = book.key_at(&r.participant, *seq).copied();
                let ok = current
                    .is_some_and(|key| signed_by(submission, message, &r.participant, &key))
                    && signed_by(submission, message, &r.participant, &r.new_public_key);
                if !ok {
                    return Err(bundle_error(format!(
                        "the key rotation of {} (entry {seq}) is not signed as it must be",
                        r.participant
                    )));
                }
                if let Some((history, _)) = book.keys.get_mut(&r.participant) {
                    history.push((*seq, r.new_public_key));
                }
            }
            _ => {}
        }
    }
    if !entries.contains_key(&0) {
        return Err(bundle_error(
            "the ledger's first entry (the operator's registration) is missing",
        ));
    }
    let operator = book
        .keys
        .iter()
        .find(|(_, (_, roles))| roles.contains(&Role::Operator))
        .map(|(id, _)| id.clone())
        .ok_or_else(|| bundle_error("the operator's registration is missing"))?;
    let signed = |seq: u64, who: &ParticipantId| -> bool {
        let Some((envelope, message)) = entries.get(&seq) else {
            return false;
        };
        book.key_at(who, seq)
            .is_some_and(|key| signed_by(&envelope.entry, message, who, key))
    };
    let find = |pred: &dyn Fn(&Body) -> bool| {
        entries
            .iter()
            .find(|(_, (e, _))| pred(&e.entry.body))
            .map(|(seq, (e, _))| (*seq, e.entry.body.clone()))
    };

    // The pledge.
    let (pledge_seq, pledge_body) =
        find(&|b| matches!(&b.kind, EntryKind::Pledge(p) if p.pledge.as_str() == bundle.pledge))
            .ok_or_else(|| {
                bundle_error(format!("the pledge {} is not in the bundle", bundle.pledge))
            })?;
    let EntryKind::Pledge(pledge) = &pledge_body.kind else {
        return Err(bundle_error("the pledge entry is not a pledge"));
    };
    if !signed(pledge_seq, &pledge.pledgor) || !signed(pledge_seq, &pledge.bank) {
        return Err(bundle_error(format!(
            "the pledge is not signed by both {} and {} with their keys current at entry {pledge_seq}",
            pledge.pledgor, pledge.bank
        )));
    }
    if !book.has_role(&pledge.bank, Role::Bank) {
        return Err(bundle_error(format!(
            "{} is not registered as a bank",
            pledge.bank
        )));
    }

    // The batch's issuance, before the pledge, by the operator.
    let (issue_seq, issue_body) =
        find(&|b| matches!(&b.kind, EntryKind::IssueBatch(i) if i.batch == pledge.batch))
            .ok_or_else(|| {
                bundle_error(format!(
                    "the issuance of batch {} is not in the bundle",
                    pledge.batch
                ))
            })?;
    let EntryKind::IssueBatch(issue) = &issue_body.kind else {
        return Err(bundle_error("the issuance entry is not an issuance"));
    };
    if issue_seq >= pledge_seq || !signed(issue_seq, &operator) {
        return Err(bundle_error(format!(
            "batch {} was not issued by the operator before the pledge",
            pledge.batch
        )));
    }
    if pledge.quantity.value() > issue.quantity.value() {
        return Err(bundle_error(
            "the pledge locks more than the batch's issuance",
        ));
    }

    // The monitoring report behind it, signed by a registered verifier.
    let (report_seq, report_body) =
        find(&|b| matches!(&b.kind, EntryKind::RecordMonitoring(r) if r.report == issue.report))
            .ok_or_else(|| {
                bundle_error(format!(
                    "the monitoring report {} is not in the bundle",
                    issue.report
                ))
            })?;
    let EntryKind::RecordMonitoring(report) = &report_body.kind else {
        return Err(bundle_error("the monitoring entry is not a report"));
    };
    let verifier = entries
        .get(&report_seq)
        .and_then(|(e, _)| e.entry.signatures.first())
        .map(|line| line.signer.clone())
        .filter(|who| book.has_role(who, Role::Verifier) && signed(report_seq, who))
        .ok_or_else(|| {
            bundle_error(format!(
                "report {} is not signed by a registered verifier",
                report.report
            ))
        })?;
    if report_seq >= issue_seq || report.quantity.value() < issue.quantity.value() {
        return Err(bundle_error(format!(
            "report {} does not back the issuance of batch {}",
            report.report, issue.batch
        )));
    }

    Ok(PledgeFinding {
        pledge: pledge.pledge.to_string(),
        pledge_seq,
        pledgor: pledge.pledgor.to_string(),
        bank: pledge.bank.to_string(),
        batch: pledge.batch.to_string(),
        vintage: issue.vintage,
        project: report.project.to_string(),
        quantity: pledge.quantity.value(),
        limit: pledge.limit.value(),
        currency: pledge.currency.to_string(),
        price_ref: pledge.price_ref.to_string(),
        haircut: pledge.haircut.value(),
        batch_issued: issue.quantity.value(),
        report: report.report.to_string(),
        report_verified: report.quantity.value(),
        verifier: verifier.to_string(),
        checkpoint_size: checkpoint.size,
        checkpoint_root: hex::encode(checkpoint.root),
    })
}
