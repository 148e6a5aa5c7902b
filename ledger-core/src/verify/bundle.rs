//! A bank's offline check of a pledge bundle.
//!
//! A verifier trusts one thing, the operator's public key. The check runs in phases: the
//! checkpoint ([`open_bundle_checkpoint`]), every entry proved under it ([`proved_entries`]),
//! participants' keys over time rebuilt from their registrations and rotations ([`KeyBook`]), and
//! then the chain of facts behind the pledge — the pledge itself, the issuance of its batch, the
//! monitoring report behind that — each signed as the market's rules require.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use serde_json::{json, Value};

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::entry::{self, Body, EntryKind, Submission};
use crate::ids::{Date, ParticipantId, PublicKey, Role, Timestamp};
use crate::merkle::{self, ProofError};
use crate::num::{Money, Rate, Tonnes, UnitPrice};
use crate::state::{
    verify_row_proof, Balance, Batch, PledgeRecord, PledgeStatus, Price, RowProof, State,
    StateCommitment,
};
use crate::wire::{self, Envelope};

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
    /// Version 2: the pledge's, the pledgor's balance's, the batch's and the price in force's
    /// rows of the state the checkpoint's state line commits to, each with its proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<BundleState>,
    /// Version 2: a consistency proof from an earlier checkpoint the bank holds (asked for with
    /// `?old_size=`), so that the bank can check that this checkpoint extends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<BundleConsistency>,
}

/// The state rows of a bundle, each proved under the checkpoint's state line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleState {
    /// The pledge's row (`pledges`, keyed by the pledge id).
    pub pledge: RowProof,
    /// The pledgor's balance of the batch (`balances`, keyed by `[pledgor, batch]`).
    pub balance: RowProof,
    /// The batch's row (`batches`).
    pub batch: RowProof,
    /// The price in force of the reference price's basis (`prices_in_force`, keyed by basis).
    pub price: RowProof,
}

/// A consistency proof from an earlier checkpoint to the bundle's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConsistency {
    /// The earlier checkpoint's size.
    pub old_size: u64,
    /// Hex hashes, RFC 9162 order.
    pub proof: Vec<String>,
}

/// What a bank requires of a bundle beyond the operator's signature.
#[derive(Clone, Debug, Default)]
pub struct BankPolicy {
    /// The witnesses whose cosignatures count: name and cosignature key (from their verifier
    /// keys, C2SP vkeys of type 0x04).
    pub witnesses: Vec<(String, VerifyingKey)>,
    /// How many of them must have cosigned the checkpoint.
    pub quorum: usize,
    /// The last checkpoint the bank accepted: the bundle's must extend it.
    pub accepted: Option<Checkpoint>,
}

/// What the state rows of a version-2 bundle prove, at the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFinding {
    /// The pledge as the state holds it now.
    pub status: PledgeStatus,
    /// Drawn and not repaid.
    pub outstanding: Money,
    /// Facility limit.
    pub limit: Money,
    /// Maturity, if any.
    pub maturity: Option<Date>,
    /// What enforcement settled, if enforced.
    pub settled: Option<Money>,
    /// The pledgor's balance of the batch: pledged (locked) and available.
    pub pledgor_pledged: Tonnes,
    /// The pledgor's available balance of the batch.
    pub pledgor_available: Tonnes,
    /// The batch as it stands: issued, retired, reversed.
    pub batch_issued: Tonnes,
    /// Retired from the batch.
    pub batch_retired: Tonnes,
    /// Reversed from the batch's buffer.
    pub batch_reversed: Tonnes,
    /// The price in force of the reference price's basis.
    pub price: String,
    /// Its unit price.
    pub unit_price: UnitPrice,
    /// From when it applies.
    pub price_effective_at: Timestamp,
    /// Locked tonnes × the price in force.
    pub collateral_value: Money,
    /// Collateral value ÷ outstanding, to 4 places; none when nothing is outstanding.
    pub coverage_ratio: Option<rust_decimal::Decimal>,
    /// Rows in the committed state, and the state root (hex).
    pub state_rows: u64,
    /// The state root the checkpoint commits to (hex).
    pub state_root: String,
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
    pub quantity: Tonnes,
    /// Facility limit.
    pub limit: Money,
    /// Currency.
    pub currency: String,
    /// Reference price relied on.
    pub price_ref: String,
    /// Haircut.
    pub haircut: Rate,
    /// Tonnes issued in the batch.
    pub batch_issued: Tonnes,
    /// The monitoring report behind it.
    pub report: String,
    /// Tonnes the report verified.
    pub report_verified: Tonnes,
    /// The verifier who signed the report.
    pub verifier: String,
    /// Checkpoint size the proofs lead to.
    pub checkpoint_size: u64,
    /// Checkpoint root (hex).
    pub checkpoint_root: String,
    /// The witnesses of the bank's policy that cosigned the checkpoint.
    pub cosigned_by: Vec<String>,
    /// What the state rows prove (version-2 bundles).
    pub state: Option<StateFinding>,
}

impl PledgeFinding {
    /// What the bundle proves, in lines a credit officer reads: the pledge, its batch and the
    /// report behind it, and (from a version-2 bundle) the state at the checkpoint — the pledge's
    /// limit, outstanding and maturity, the pledgor's balance, the batch, the price in force and
    /// the coverage. `carbon-ledger verify-pledge` prints this.
    pub fn describe(&self) -> String {
        let f = self;
        let mut out = String::new();
        out.push_str(&format!(
        "pledgor: {}\nbank: {}\nlocked for this bank: {} t of batch {} (vintage {}, project {})\n\
         pledged at entry {} with facility limit {} {} (reference price {}, haircut {})\n\
         batch issued: {} t by the operator from report {}, which {} verified at {} t\n",
        f.pledgor,
        f.bank,
        f.quantity,
        f.batch,
        f.vintage,
        f.project,
        f.pledge_seq,
        f.limit,
        f.currency,
        f.price_ref,
        f.haircut,
        f.batch_issued,
        f.report,
        f.verifier,
        f.report_verified,
    ));
        if let Some(state) = &f.state {
            out.push_str(&format!(
                "state at the checkpoint ({} rows, root {}):\n\
             - the pledge is {}; limit {} {}, outstanding {} {}, maturity {}{}\n\
             - {} holds {} t of {} pledged (covering the {} t locked) and {} t available\n\
             - batch {}: issued {} t, retired {} t, reversed {} t\n\
             - price in force: {} at {} {} (effective {})\n\
             - coverage: {} t × {} = {} {}; ÷ outstanding = {}\n",
                state.state_rows,
                state.state_root,
                state.status.word(),
                state.limit,
                f.currency,
                state.outstanding,
                f.currency,
                state
                    .maturity
                    .map_or_else(|| "none".to_owned(), |m| m.to_string()),
                state.settled.map_or_else(String::new, |s| format!(
                    ", settled by the collateral {s} {}",
                    f.currency
                )),
                f.pledgor,
                state.pledgor_pledged,
                f.batch,
                f.quantity,
                state.pledgor_available,
                f.batch,
                state.batch_issued,
                state.batch_retired,
                state.batch_reversed,
                state.price,
                state.unit_price,
                f.currency,
                state.price_effective_at,
                f.quantity,
                state.unit_price,
                state.collateral_value,
                f.currency,
                state.coverage_ratio.map_or_else(
                    || "none (nothing outstanding)".to_owned(),
                    |r| r.to_string()
                ),
            ));
        }
        out
    }
}

/// Why a pledge bundle does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A bundle format this program does not read.
    #[error("the pledge bundle does not verify: unknown bundle version {0}")]
    Version(u32),
    /// The checkpoint is not signed by the operator key.
    #[error(
        "the pledge bundle does not verify: the checkpoint is not signed by the operator key: {0}"
    )]
    Checkpoint(CheckpointError),
    /// An entry is not an envelope, or its body cannot be put in canonical form.
    #[error("the pledge bundle does not verify: an entry cannot be read: {0}")]
    Entry(String),
    /// An entry of another ledger.
    #[error("the pledge bundle does not verify: entry {0} belongs to another ledger")]
    ForeignEntry(u64),
    /// An entry's proof does not lead to the checkpoint's root.
    #[error("the pledge bundle does not verify: entry {seq} is not in the checkpointed ledger: {reason}")]
    NotIncluded {
        /// The entry.
        seq: u64,
        /// Why the proof fails.
        reason: String,
    },
    /// A registration or key rotation not signed as the rules require.
    #[error("the pledge bundle does not verify: the {what} of {participant} (entry {seq}) is not signed as it must be")]
    KeyEntryUnsigned {
        /// `registration` or `key rotation`.
        what: &'static str,
        /// Whose.
        participant: String,
        /// The entry.
        seq: u64,
    },
    /// The ledger's first entry (the operator's registration) is missing.
    #[error("the pledge bundle does not verify: the ledger's first entry (the operator's registration) is missing")]
    GenesisMissing,
    /// A fact the check needs is not in the bundle.
    #[error("the pledge bundle does not verify: the {0} is not in the bundle")]
    Missing(String),
    /// The pledge is not signed by its pledgor and its bank with their keys current then.
    #[error("the pledge bundle does not verify: the pledge is not signed by both {pledgor} and {bank} with their keys current at entry {seq}")]
    PledgeUnsigned {
        /// The pledgor.
        pledgor: String,
        /// The bank.
        bank: String,
        /// The pledge entry.
        seq: u64,
    },
    /// The pledge's bank is not registered as a bank.
    #[error("the pledge bundle does not verify: {0} is not registered as a bank")]
    NotABank(String),
    /// The batch was not issued by the operator before the pledge.
    #[error("the pledge bundle does not verify: batch {0} was not issued by the operator before the pledge")]
    IssuanceUnbacked(String),
    /// The pledge locks more than the batch's issuance.
    #[error("the pledge bundle does not verify: the pledge locks more than the batch's issuance")]
    ExceedsIssuance,
    /// The monitoring report is not signed by a registered verifier.
    #[error(
        "the pledge bundle does not verify: report {0} is not signed by a registered verifier"
    )]
    ReportUnsigned(String),
    /// Fewer trusted witnesses cosigned the checkpoint than the bank requires.
    #[error("the pledge bundle does not verify: its checkpoint carries {found} valid cosignature(s) of the witnesses given, {needed} are required")]
    Quorum {
        /// Cosignatures required.
        needed: usize,
        /// Valid cosignatures of trusted witnesses found.
        found: usize,
    },
    /// A cosignature of a trusted witness does not verify: the note was altered.
    #[error("the pledge bundle does not verify: a witness's cosignature fails: {0}")]
    Cosignature(CheckpointError),
    /// The bundle's checkpoint is older than the one the bank accepted.
    #[error("the pledge bundle does not verify: its checkpoint (size {bundle}) is older than the one the bank accepted (size {accepted})")]
    Older {
        /// The size the bank accepted.
        accepted: u64,
        /// The bundle's size.
        bundle: u64,
    },
    /// The bundle's checkpoint does not extend the one the bank accepted: a forked history.
    #[error("the pledge bundle does not verify: its checkpoint does not extend the one the bank accepted: {0}")]
    NotExtending(String),
    /// A version-2 bundle whose checkpoint has no state line, or whose state rows are missing.
    #[error("the pledge bundle does not verify: {0}")]
    NoState(String),
    /// A state row does not verify under the checkpoint's state line.
    #[error("the pledge bundle does not verify: the {what} row: {reason}")]
    StateRow {
        /// Which row.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The state rows contradict the entries, or each other.
    #[error("the pledge bundle does not verify: {0}")]
    StateContradicts(String),
    /// The monitoring report does not back the issuance.
    #[error("the pledge bundle does not verify: report {report} does not back the issuance of batch {batch}")]
    ReportUnbacked {
        /// The report.
        report: String,
        /// The batch.
        batch: String,
    },
}

impl BundleError {
    /// A stable machine-readable kind, such as `not-included`.
    pub fn kind(&self) -> &'static str {
        match self {
            BundleError::Version(_) => "bundle-version",
            BundleError::Checkpoint(_) => "bad-checkpoint",
            BundleError::Entry(_) => "malformed-entry",
            BundleError::ForeignEntry(_) => "wrong-ledger",
            BundleError::NotIncluded { .. } => "not-included",
            BundleError::KeyEntryUnsigned { .. } => "key-entry-unsigned",
            BundleError::GenesisMissing => "genesis-missing",
            BundleError::Missing(_) => "missing-entry",
            BundleError::PledgeUnsigned { .. } => "pledge-unsigned",
            BundleError::NotABank(_) => "not-a-bank",
            BundleError::IssuanceUnbacked(_) => "issuance-unbacked",
            BundleError::ExceedsIssuance => "exceeds-issuance",
            BundleError::ReportUnsigned(_) => "report-unsigned",
            BundleError::ReportUnbacked { .. } => "report-unbacked",
            BundleError::Quorum { .. } => "quorum",
            BundleError::Cosignature(_) => "bad-cosignature",
            BundleError::Older { .. } => "older-checkpoint",
            BundleError::NotExtending(_) => "not-extending",
            BundleError::NoState(_) => "no-state",
            BundleError::StateRow { .. } => "bad-state-row",
            BundleError::StateContradicts(_) => "state-contradicts",
        }
    }
}

/// A participant's keys over time (the entry each became current at, oldest first) and roles.
type KeyHistory = (Vec<(u64, PublicKey)>, Vec<Role>);

/// The keys and roles of participants over time, rebuilt from their registrations and rotations.
#[derive(Debug, Default)]
pub struct KeyBook {
    keys: BTreeMap<ParticipantId, KeyHistory>,
}

impl KeyBook {
    /// Rebuilds the book from the registrations and rotations among `entries`, in ledger order,
    /// checking that each is signed as the rules require: the genesis entry with the operator key
    /// and the operator role alone, later registrations by the operator and the new key, rotations
    /// with the current key and the new one.
    pub fn rebuild(
        entries: &ProvedEntries,
        operator_key: &VerifyingKey,
    ) -> Result<Self, BundleError> {
        let mut book = KeyBook::default();
        for (seq, (envelope, message)) in entries {
            let submission = &envelope.entry;
            match &submission.body.kind {
                EntryKind::RegisterParticipant(r) => {
                    if !book.registration_signed(*seq, submission, message, r, operator_key) {
                        return Err(BundleError::KeyEntryUnsigned {
                            what: "registration",
                            participant: r.participant.to_string(),
                            seq: *seq,
                        });
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
                        return Err(BundleError::KeyEntryUnsigned {
                            what: "key rotation",
                            participant: r.participant.to_string(),
                            seq: *seq,
                        });
                    }
                    if let Some((history, _)) = book.keys.get_mut(&r.participant) {
                        history.push((*seq, r.new_public_key));
                    }
                }
                _ => {}
            }
        }
        Ok(book)
    }

    fn registration_signed(
        &self,
        seq: u64,
        submission: &Submission,
        message: &[u8],
        r: &entry::RegisterParticipant,
        operator_key: &VerifyingKey,
    ) -> bool {
        let self_signed = signed_by(submission, message, &r.participant, &r.public_key);
        if seq == 0 {
            return r.roles == [Role::Operator]
                && r.public_key.to_bytes() == operator_key.to_bytes()
                && self_signed;
        }
        self.operator().is_some_and(|id| {
            self.key_at(&id, seq)
                .is_some_and(|key| signed_by(submission, message, &id, key))
        }) && self_signed
    }

    /// The key `who` signed with at entry `seq` (registered or rotated before it).
    pub fn key_at(&self, who: &ParticipantId, seq: u64) -> Option<&PublicKey> {
        let (history, _) = self.keys.get(who)?;
        history
            .iter()
            .rev()
            .find(|(since, _)| *since < seq)
            .map(|(_, key)| key)
    }

    /// Whether `who` was registered with `role`.
    pub fn has_role(&self, who: &ParticipantId, role: Role) -> bool {
        self.keys
            .get(who)
            .is_some_and(|(_, roles)| roles.contains(&role))
    }

    /// The operator, once its registration is in the book.
    pub fn operator(&self) -> Option<ParticipantId> {
        self.keys
            .iter()
            .find(|(_, (_, roles))| roles.contains(&Role::Operator))
            .map(|(id, _)| id.clone())
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

/// The entries of a bundle, by seq: each envelope and the message its signers signed.
pub type ProvedEntries = BTreeMap<u64, (Envelope, Vec<u8>)>;

/// Phase 1: the bundle's version, and its checkpoint signed by the operator key.
pub fn open_bundle_checkpoint(
    bundle: &PledgeBundle,
    operator_key: &VerifyingKey,
) -> Result<Checkpoint, BundleError> {
    if !(1..=2).contains(&bundle.version) {
        return Err(BundleError::Version(bundle.version));
    }
    let origin_line = bundle.checkpoint.lines().next().unwrap_or_default();
    checkpoint::open_checkpoint(&bundle.checkpoint, origin_line, operator_key)
        .map_err(BundleError::Checkpoint)
}

/// Phase 2: every entry readable, of this ledger, and included under the checkpoint.
pub fn proved_entries(
    entries: &[ProvedEntry],
    checkpoint: &Checkpoint,
) -> Result<ProvedEntries, BundleError> {
    let mut out = ProvedEntries::new();
    for proved in entries {
        let leaf = proved.leaf.as_bytes();
        let envelope = Envelope::from_leaf(leaf).map_err(|e| BundleError::Entry(e.to_string()))?;
        let seq = envelope.seq;
        if envelope.entry.body.ledger.as_str() != checkpoint.origin {
            return Err(BundleError::ForeignEntry(seq));
        }
        let not_included = |reason: String| BundleError::NotIncluded { seq, reason };
        let proof = merkle::hashes_from_hex(&proved.proof)
            .ok_or_else(|| not_included("a proof hash is not hex".to_owned()))?;
        merkle::verify_inclusion(
            &merkle::leaf_hash(leaf),
            seq,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )
        .map_err(|e: ProofError| not_included(e.to_string()))?;
        let message = wire::signing_message(
            &crate::canonical::to_canonical(&envelope.entry.body)
                .map_err(|e| BundleError::Entry(format!("entry {seq}: {e}")))?,
        );
        out.insert(seq, (envelope, message));
    }
    if !out.contains_key(&0) {
        return Err(BundleError::GenesisMissing);
    }
    Ok(out)
}

/// The facts of a bundle, with the keys that signed them.
struct Facts<'a> {
    entries: &'a ProvedEntries,
    book: KeyBook,
}

impl Facts<'_> {
    /// Whether `who` signed entry `seq` with its key current then.
    fn signed(&self, seq: u64, who: &ParticipantId) -> bool {
        let Some((envelope, message)) = self.entries.get(&seq) else {
            return false;
        };
        self.book
            .key_at(who, seq)
            .is_some_and(|key| signed_by(&envelope.entry, message, who, key))
    }

    /// The first entry whose body passes `pred`.
    fn find(&self, pred: &dyn Fn(&Body) -> bool) -> Option<(u64, &Body)> {
        self.entries
            .iter()
            .find(|(_, (e, _))| pred(&e.entry.body))
            .map(|(seq, (e, _))| (*seq, &e.entry.body))
    }

    /// Phase 3: the pledge, signed by pledgor and bank, in favour of a registered bank.
    fn pledge(&self, id: &str) -> Result<(u64, &entry::Pledge), BundleError> {
        let found =
            self.find(&|b| matches!(&b.kind, EntryKind::Pledge(p) if p.pledge.as_str() == id));
        let Some((
            seq,
            Body {
                kind: EntryKind::Pledge(pledge),
                ..
            },
        )) = found
        else {
            return Err(BundleError::Missing(format!("pledge {id}")));
        };
        if !self.signed(seq, &pledge.pledgor) || !self.signed(seq, &pledge.bank) {
            return Err(BundleError::PledgeUnsigned {
                pledgor: pledge.pledgor.to_string(),
                bank: pledge.bank.to_string(),
                seq,
            });
        }
        if !self.book.has_role(&pledge.bank, Role::Bank) {
            return Err(BundleError::NotABank(pledge.bank.to_string()));
        }
        Ok((seq, pledge))
    }

    /// Phase 4: the batch's issuance, by the operator, before the pledge, of at least what the
    /// pledge locks.
    fn issuance(
        &self,
        pledge_seq: u64,
        pledge: &entry::Pledge,
    ) -> Result<(u64, &entry::IssueBatch), BundleError> {
        let found =
            self.find(&|b| matches!(&b.kind, EntryKind::IssueBatch(i) if i.batch == pledge.batch));
        let Some((
            seq,
            Body {
                kind: EntryKind::IssueBatch(issue),
                ..
            },
        )) = found
        else {
            return Err(BundleError::Missing(format!(
                "issuance of batch {}",
                pledge.batch
            )));
        };
        let by_operator = self
            .book
            .operator()
            .is_some_and(|operator| self.signed(seq, &operator));
        if seq >= pledge_seq || !by_operator {
            return Err(BundleError::IssuanceUnbacked(pledge.batch.to_string()));
        }
        if pledge.quantity.value() > issue.quantity.value() {
            return Err(BundleError::ExceedsIssuance);
        }
        Ok((seq, issue))
    }

    /// Phase 5: the monitoring report behind the issuance, signed by a registered verifier,
    /// before it, verifying at least what was issued.
    fn report(
        &self,
        issue_seq: u64,
        issue: &entry::IssueBatch,
    ) -> Result<(&entry::RecordMonitoring, ParticipantId), BundleError> {
        let found = self.find(
            &|b| matches!(&b.kind, EntryKind::RecordMonitoring(r) if r.report == issue.report),
        );
        let Some((
            seq,
            Body {
                kind: EntryKind::RecordMonitoring(report),
                ..
            },
        )) = found
        else {
            return Err(BundleError::Missing(format!(
                "monitoring report {}",
                issue.report
            )));
        };
        let verifier = self
            .entries
            .get(&seq)
            .and_then(|(e, _)| e.entry.signatures.first())
            .map(|line| line.signer.clone())
            .filter(|who| self.book.has_role(who, Role::Verifier) && self.signed(seq, who))
            .ok_or_else(|| BundleError::ReportUnsigned(report.report.to_string()))?;
        if seq >= issue_seq || report.quantity.value() < issue.quantity.value() {
            return Err(BundleError::ReportUnbacked {
                report: report.report.to_string(),
                batch: issue.batch.to_string(),
            });
        }
        Ok((report, verifier))
    }
}

/// Checks a pledge bundle with nothing but the operator's public key, and says what it proves.
///
/// It proves that, in the ledger the checkpoint commits to: the pledge was signed by the pledgor
/// and the bank with their then-current keys; its batch was issued by the operator from a
/// monitoring report signed by a registered verifier, which verified at least the batch's
/// quantity; and the pledge locks no more than was issued. A version-2 bundle also proves, from
/// the state the checkpoint's state line commits to, where the pledge stands now (status,
/// outstanding, limit, maturity), that the pledgor's pledged balance covers it, the batch as it
/// stands and the price in force — see [`verify_pledge_bundle_with`] for the witnesses' quorum.
pub fn verify_pledge_bundle(
    bundle: &PledgeBundle,
    operator_key: &VerifyingKey,
) -> Result<PledgeFinding, BundleError> {
    verify_pledge_bundle_with(bundle, operator_key, &BankPolicy::default())
}

/// [`verify_pledge_bundle`] under a bank's policy: at least `quorum` of the bank's witnesses
/// cosigned the checkpoint (so the operator cannot show the bank a history the witnesses did not
/// see, and — for validating witnesses — every entry obeys the rules and the state line is
/// true), and the checkpoint extends the last one the bank accepted.
pub fn verify_pledge_bundle_with(
    bundle: &PledgeBundle,
    operator_key: &VerifyingKey,
    policy: &BankPolicy,
) -> Result<PledgeFinding, BundleError> {
    let checkpoint = open_bundle_checkpoint(bundle, operator_key)?;
    let cosigned_by = check_quorum(&bundle.checkpoint, policy)?;
    check_extends_accepted(bundle, &checkpoint, policy.accepted.as_ref())?;
    let entries = proved_entries(&bundle.entries, &checkpoint)?;
    let facts = Facts {
        book: KeyBook::rebuild(&entries, operator_key)?,
        entries: &entries,
    };
    let (pledge_seq, pledge) = facts.pledge(&bundle.pledge)?;
    let (issue_seq, issue) = facts.issuance(pledge_seq, pledge)?;
    let (report, verifier) = facts.report(issue_seq, issue)?;
    let state = match (&bundle.state, bundle.version) {
        (Some(state), _) => Some(facts.state(state, &checkpoint, pledge)?),
        (None, 2) => {
            return Err(BundleError::NoState(
                "a version-2 bundle carries state rows".to_owned(),
            ))
        }
        (None, _) => None,
    };
    Ok(PledgeFinding {
        pledge: pledge.pledge.to_string(),
        pledge_seq,
        pledgor: pledge.pledgor.to_string(),
        bank: pledge.bank.to_string(),
        batch: pledge.batch.to_string(),
        vintage: issue.vintage,
        project: report.project.to_string(),
        quantity: pledge.quantity.tonnes(),
        limit: pledge.limit.money(),
        currency: pledge.currency.to_string(),
        price_ref: pledge.price_ref.to_string(),
        haircut: pledge.haircut,
        batch_issued: issue.quantity.tonnes(),
        report: report.report.to_string(),
        report_verified: report.quantity.tonnes(),
        verifier: verifier.to_string(),
        checkpoint_size: checkpoint.size,
        checkpoint_root: hex::encode(checkpoint.root),
        cosigned_by,
        state,
    })
}

/// The bank's witnesses that cosigned the note; at least the quorum.
fn check_quorum(note: &str, policy: &BankPolicy) -> Result<Vec<String>, BundleError> {
    let cosignatures = checkpoint::verify_cosignatures(note, &policy.witnesses)
        .map_err(BundleError::Cosignature)?;
    if cosignatures.len() < policy.quorum {
        return Err(BundleError::Quorum {
            needed: policy.quorum,
            found: cosignatures.len(),
        });
    }
    Ok(cosignatures.into_iter().map(|c| c.name).collect())
}

/// The bundle's checkpoint extends the one the bank accepted: same, or proved consistent.
fn check_extends_accepted(
    bundle: &PledgeBundle,
    checkpoint: &Checkpoint,
    accepted: Option<&Checkpoint>,
) -> Result<(), BundleError> {
    let Some(accepted) = accepted else {
        return Ok(());
    };
    if checkpoint.size < accepted.size {
        return Err(BundleError::Older {
            accepted: accepted.size,
            bundle: checkpoint.size,
        });
    }
    if checkpoint.size == accepted.size {
        return if checkpoint.root == accepted.root {
            Ok(())
        } else {
            Err(BundleError::NotExtending(format!(
                "another root at the same size {}",
                accepted.size
            )))
        };
    }
    let Some(consistency) = &bundle.consistency else {
        return Err(BundleError::NotExtending(format!(
            "the bundle carries no consistency proof; fetch it with ?old_size={}",
            accepted.size
        )));
    };
    if consistency.old_size != accepted.size {
        return Err(BundleError::NotExtending(format!(
            "its consistency proof starts at size {}, not at the accepted size {}",
            consistency.old_size, accepted.size
        )));
    }
    let proof = merkle::hashes_from_hex(&consistency.proof)
        .ok_or_else(|| BundleError::NotExtending("a proof hash is not hex".to_owned()))?;
    merkle::verify_consistency(
        accepted.size,
        checkpoint.size,
        &accepted.root,
        &checkpoint.root,
        &proof,
    )
    .map_err(|e| BundleError::NotExtending(e.to_string()))
}

impl Facts<'_> {
    /// Phase 6 (version 2): the state rows, proved under the checkpoint's state line, agree with
    /// the pledge entry; the pledgor's pledged balance covers an active pledge; coverage at the
    /// price in force.
    fn state(
        &self,
        state: &BundleState,
        checkpoint: &Checkpoint,
        pledge: &entry::Pledge,
    ) -> Result<StateFinding, BundleError> {
        let commitment = StateCommitment::from_checkpoint(checkpoint)
            .map_err(|e| BundleError::NoState(e.to_string()))?
            .ok_or_else(|| BundleError::NoState("the checkpoint has no state line".to_owned()))?;
        let row = |what: &'static str, proof: &RowProof, table: &str, key: Value| {
            verify_row_proof(proof, table, &key, &commitment)
                .map_err(|e| BundleError::StateRow {
                    what,
                    reason: e.to_string(),
                })?
                .ok_or_else(|| BundleError::StateRow {
                    what,
                    reason: "the state proves it absent".to_owned(),
                })
        };
        fn decode<T: serde::de::DeserializeOwned>(
            what: &'static str,
            value: Value,
        ) -> Result<T, BundleError> {
            serde_json::from_value(value).map_err(|e| BundleError::StateRow {
                what,
                reason: e.to_string(),
            })
        }
        let record: PledgeRecord = decode(
            "pledge",
            row("pledge", &state.pledge, "pledges", json!(pledge.pledge))?,
        )?;
        if record.pledgor != pledge.pledgor
            || record.bank != pledge.bank
            || record.batch != pledge.batch
            || record.quantity != pledge.quantity
            || record.price_ref != pledge.price_ref
        {
            return Err(BundleError::StateContradicts(
                "the pledge's state row is not the pledge the entry made".to_owned(),
            ));
        }
        let balance: Balance = decode(
            "balance",
            row(
                "balance",
                &state.balance,
                "balances",
                json!([pledge.pledgor, pledge.batch]),
            )?,
        )?;
        if record.status == PledgeStatus::Active && balance.pledged < pledge.quantity.tonnes() {
            return Err(BundleError::StateContradicts(format!(
                "{} has {} t of {} pledged, less than the {} t this pledge locks",
                pledge.pledgor, balance.pledged, pledge.batch, pledge.quantity
            )));
        }
        let batch: Batch = decode(
            "batch",
            row("batch", &state.batch, "batches", json!(pledge.batch))?,
        )?;
        let basis = self.basis_of(&pledge.price_ref)?;
        let price: Price = decode(
            "price",
            row("price", &state.price, "prices_in_force", json!(basis))?,
        )?;
        if price.currency != pledge.currency {
            return Err(BundleError::StateContradicts(format!(
                "the price in force of {basis} is in {}, the pledge in {}",
                price.currency, pledge.currency
            )));
        }
        let coverage = State::coverage(&record, price.unit_price);
        Ok(StateFinding {
            status: record.status,
            outstanding: record.outstanding,
            limit: record.limit,
            maturity: record.maturity,
            settled: record.settled,
            pledgor_pledged: balance.pledged,
            pledgor_available: balance.available,
            batch_issued: batch.issued,
            batch_retired: batch.retired,
            batch_reversed: batch.reversed,
            price: price.id.to_string(),
            unit_price: price.unit_price,
            price_effective_at: price.effective_at,
            collateral_value: coverage.collateral_value,
            coverage_ratio: coverage.coverage_ratio,
            state_rows: commitment.rows,
            state_root: hex::encode(commitment.root),
        })
    }

    /// The basis of a reference price, from its publication among the bundle's entries.
    fn basis_of(&self, price: &crate::ids::PriceId) -> Result<crate::ids::Basis, BundleError> {
        match self.find(&|b| matches!(&b.kind, EntryKind::PublishPrice(p) if p.price == *price)) {
            Some((
                _,
                Body {
                    kind: EntryKind::PublishPrice(p),
                    ..
                },
            )) => Ok(p.basis.clone()),
            _ => Err(BundleError::Missing(format!(
                "publication of price {price}"
            ))),
        }
    }
}
