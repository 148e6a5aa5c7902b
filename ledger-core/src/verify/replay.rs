//! Replaying leaves: an export checked against a checkpoint, entry by entry.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::entry::EntryKind;
use crate::ids::{Origin, ParticipantId, PublicKey, Timestamp};
use crate::merkle::{self, CompactTree, Hash, NodeId, ProofError};
use crate::sign::{self, SignatureError};
use crate::state::{ApplyError, Context, History, State, StateCommitment};
use crate::store::StoreError;
use crate::wire::{Envelope, Prepared};

/// What is wrong with a replayed export or stored history.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayFault {
    /// The checkpoint is not a note signed by the operator key, or its lines are malformed.
    #[error("the checkpoint does not verify: {0}")]
    Checkpoint(CheckpointError),
    /// The checkpoint's origin is not a valid ledger origin.
    #[error("the checkpoint's origin is not valid: {0}")]
    Origin(String),
    /// The export could not be read.
    #[error("the export cannot be read: {0}")]
    Unreadable(String),
    /// A line is not an envelope.
    #[error("the leaf cannot be read: {0}")]
    Leaf(String),
    /// The envelope names another position.
    #[error("the envelope says it is entry {found}")]
    Position {
        /// The seq the envelope states.
        found: u64,
    },
    /// The envelope's `prev` is not the previous leaf's hash.
    #[error("its prev does not match the previous leaf's hash")]
    Chain,
    /// The body names another ledger.
    #[error("it was made for the ledger \"{0}\"")]
    Ledger(String),
    /// The body cannot be put in canonical form.
    #[error("the body cannot be encoded: {0}")]
    Encoding(String),
    /// A signature is missing, wrong or made with a key not current then.
    #[error(transparent)]
    Signature(SignatureError),
    /// The state machine refuses the entry.
    #[error("the state machine refuses it: {0}")]
    Rule(ApplyError),
    /// The tree cannot take the leaf.
    #[error(transparent)]
    Tree(ProofError),
    /// The first entry does not register the checkpoint's key as the operator.
    #[error("the first entry does not register the checkpoint's key as operator")]
    Operator,
    /// The leaves do not lead to the checkpoint's root: history was rewritten.
    #[error("the export's root at the checkpoint's size differs from the checkpoint's root: history was rewritten")]
    RootMismatch,
    /// The checkpoint's state line is not well formed.
    #[error("{0}")]
    StateLine(String),
    /// The checkpoint's state line is not the commitment to the state the replay reaches.
    #[error("the checkpoint's state line does not commit to the state the entries produce: the operator's statement of the market is wrong")]
    StateMismatch,
    /// Fewer leaves than the checkpoint counts.
    #[error("the export holds {entries} entries, fewer than the checkpoint's {checkpoint}")]
    TooShort {
        /// Leaves in the export.
        entries: u64,
        /// The checkpoint's size.
        checkpoint: u64,
    },
    /// Whoever received the verified leaves (a restore writing them to a store) failed.
    #[error("the verified entry could not be kept: {0}")]
    Sink(String),
}

impl ReplayFault {
    /// A stable machine-readable kind, such as `root-mismatch`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReplayFault::Checkpoint(_) => "bad-checkpoint",
            ReplayFault::Origin(_) => "bad-origin",
            ReplayFault::Unreadable(_) => "unreadable",
            ReplayFault::Leaf(_) => "malformed-leaf",
            ReplayFault::Position { .. } => "wrong-position",
            ReplayFault::Chain => "broken-chain",
            ReplayFault::Ledger(_) => "wrong-ledger",
            ReplayFault::Encoding(_) => "malformed-leaf",
            ReplayFault::Signature(e) => e.kind(),
            ReplayFault::Rule(ApplyError::Rule(e)) => e.kind(),
            ReplayFault::Rule(_) => "storage",
            ReplayFault::Tree(_) => "tree",
            ReplayFault::Operator => "wrong-operator",
            ReplayFault::RootMismatch => "root-mismatch",
            ReplayFault::StateMismatch => "state-mismatch",
            ReplayFault::StateLine(_) => "bad-state-line",
            ReplayFault::TooShort { .. } => "too-short",
            ReplayFault::Sink(_) => "storage",
        }
    }
}

/// Why a replay stopped: the first bad entry and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("entry {seq}: {fault}")]
pub struct ReplayError {
    /// The first sequence number that does not verify.
    pub seq: u64,
    /// What is wrong with it.
    pub fault: ReplayFault,
}

impl ReplayError {
    /// The fault's stable kind.
    pub fn kind(&self) -> &'static str {
        self.fault.kind()
    }
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
    last_accepted_at: Option<Timestamp>,
    signatures: u64,
    checked_ahead: u64,
    /// With the history tables kept in a history ([`Replayer::keep_history_in`]): a digest of
    /// the history rows each table received.
    history_rows: Option<BTreeMap<&'static str, RowDigest>>,
}

/// A digest of a multiset of rows, whatever their order: how many, and the sum (four 64-bit
/// lanes, wrapping) of each row's SHA-256. Two tables' digests agree when they hold the same rows;
/// a row missing, added, changed or given twice changes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RowDigest {
    /// Rows counted.
    pub(crate) rows: u64,
    sum: [u64; 4],
}

impl RowDigest {
    /// Counts one row: its key, and its value (`None`: a removal).
    pub(crate) fn add(&mut self, key: &[u8], value: Option<&[u8]>) {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update((key.len() as u64).to_be_bytes());
        hash.update(key);
        match value {
            Some(value) => {
                hash.update([1]);
                hash.update(value);
            }
            None => hash.update([0]),
        }
        let digest = hash.finalize();
        for (lane, bytes) in self.sum.iter_mut().zip(digest.chunks_exact(8)) {
            let mut word = [0; 8];
            word.copy_from_slice(bytes);
            *lane = lane.wrapping_add(u64::from_be_bytes(word));
        }
        self.rows += 1;
    }
}

/// One leaf checked and applied: the Merkle nodes it completed and when it was accepted.
#[derive(Debug)]
pub struct Replayed {
    /// Perfect nodes completed by the leaf, the leaf itself first.
    pub nodes: Vec<(NodeId, Hash)>,
    /// When the ledger accepted it.
    pub accepted_at: Timestamp,
    /// Signatures it carries (all checked).
    pub signatures: u64,
    /// The key it registered or rotated to, if it is a registration or a rotation.
    pub key: Option<(ParticipantId, PublicKey)>,
}

/// Checks the leaf at position `tree.size()` of the ledger `origin` and applies it: its envelope
/// (position, chain link to `prev`, origin), its signatures against the keys current in `state`,
/// the market's rules; then appends it to `tree` and moves `prev` on. The state's changes stay
/// pending (the caller settles them, or writes them first).
pub fn replay_leaf(
    origin: &Origin,
    state: &mut State,
    tree: &mut CompactTree,
    prev: &mut Hash,
    leaf: &[u8],
) -> Result<Replayed, ReplayError> {
    let decoded = Decoded::new(tree.size(), leaf)?;
    apply_decoded(origin, state, tree, prev, leaf, decoded, None)
}

/// A leaf read back and checked for what needs no state: its bytes are a canonical envelope
/// that names its position. Decoding is the part of a replay that can run ahead of it, on
/// another thread ([`super::ahead`]).
#[derive(Debug)]
pub(crate) struct Decoded {
    seq: u64,
    prev: String,
    accepted_at: Timestamp,
    signatures: u64,
    /// The submission with its body's canonical bytes, or why the body cannot be encoded (a
    /// fault reported after the chain and origin checks, as the replay's order has it).
    prepared: Result<Prepared, String>,
}

impl Decoded {
    /// Decodes the leaf at position `seq`.
    pub(crate) fn new(seq: u64, leaf: &[u8]) -> Result<Self, ReplayError> {
        let fail = |fault: ReplayFault| ReplayError { seq, fault };
        let envelope = Envelope::prepared_from_leaf(leaf)
            .map_err(|e| fail(ReplayFault::Leaf(e.to_string())))?;
        if envelope.seq != seq {
            return Err(fail(ReplayFault::Position {
                found: envelope.seq,
            }));
        }
        Ok(Self {
            seq,
            prev: envelope.prev,
            accepted_at: envelope.accepted_at,
            signatures: envelope.signatures as u64,
            prepared: envelope.prepared.map_err(|e| e.to_string()),
        })
    }

    /// The decoded submission, if its body could be encoded.
    pub(crate) fn prepared(&self) -> Option<&Prepared> {
        self.prepared.as_ref().ok()
    }
}

/// Signatures checked ahead of the replay, against the keys the signers were expected to hold
/// (the keys registered and rotated in the entries before, as if every one were accepted). The
/// check stands only if those are the keys the replayed state holds when the entry is applied;
/// otherwise the signatures are checked again against the state.
#[derive(Debug)]
pub(crate) struct CheckedAhead {
    /// Who signed, as [`sign::verify_signatures`] found it with the expected keys.
    pub(crate) verified: sign::Verified,
    /// Each signer's expected current key (`None`: not expected to be a participant yet).
    pub(crate) expected: Vec<(ParticipantId, Option<[u8; 32]>)>,
}

impl CheckedAhead {
    fn holds_for(&self, state: &State) -> bool {
        use sign::KeyLookup as _;
        self.expected
            .iter()
            .all(|(id, key)| state.current_key(id).map(|k| k.to_bytes()) == *key)
    }
}

/// The state-dependent part of [`replay_leaf`], for a leaf already decoded: the chain link, the
/// origin, the signatures (unless `verified` says who signed, as checked ahead against the keys
/// the state holds), the market's rules and the tree.
fn apply_decoded(
    origin: &Origin,
    state: &mut State,
    tree: &mut CompactTree,
    prev: &mut Hash,
    leaf: &[u8],
    decoded: Decoded,
    verified: Option<sign::Verified>,
) -> Result<Replayed, ReplayError> {
    let seq = decoded.seq;
    let fail = |fault: ReplayFault| ReplayError { seq, fault };
    if decoded.prev != crate::ids::hex32(prev) {
        return Err(fail(ReplayFault::Chain));
    }
    let prepared = decoded
        .prepared
        .map_err(|e| fail(ReplayFault::Encoding(e)))?;
    let body = prepared.body();
    if body.ledger != *origin {
        return Err(fail(ReplayFault::Ledger(body.ledger.to_string())));
    }
    let verified = match verified {
        Some(verified) => verified,
        None => sign::verify_signatures(&*state, &prepared)
            .map_err(|e| fail(ReplayFault::Signature(e)))?,
    };
    let ctx = Context {
        seq,
        accepted_at: decoded.accepted_at.clone(),
        signers: verified.signers,
        body_digest: prepared.body_digest(),
    };
    state
        .apply(&ctx, prepared.body())
        .map_err(|e| fail(ReplayFault::Rule(e)))?;
    let key = key_change(prepared.body());
    let leaf_hash = merkle::leaf_hash(leaf);
    let nodes = tree
        .append(leaf_hash)
        .map_err(|e| fail(ReplayFault::Tree(e)))?;
    *prev = leaf_hash;
    Ok(Replayed {
        nodes,
        accepted_at: decoded.accepted_at,
        signatures: decoded.signatures,
        key,
    })
}

/// The key an entry registers or rotates to, if it is a registration or a rotation.
pub(crate) fn key_change(body: &crate::entry::Body) -> Option<(ParticipantId, PublicKey)> {
    match &body.kind {
        EntryKind::RegisterParticipant(r) => Some((r.participant.clone(), r.public_key)),
        EntryKind::RotateKey(r) => Some((r.participant.clone(), r.new_public_key)),
        _ => None,
    }
}

impl Replayer {
    /// A replay of the ledger named `origin`, from its first entry.
    pub fn new(origin: Origin) -> Self {
        Self {
            origin,
            state: State::new(),
            tree: CompactTree::new(),
            prev: [0; 32],
            last_accepted_at: None,
            signatures: 0,
            checked_ahead: 0,
            history_rows: None,
        }
    }

    /// Keeps the history tables' rows in `history` rather than in memory: each entry's history
    /// rows are counted into a digest per table ([`Replayer::history_digests`]) and then
    /// dropped, and the rules read those tables from `history`, which must show only the rows
    /// of the entries replayed so far. A full verification compares the digests with the
    /// store's, so that its memory does not grow with the history.
    pub(crate) fn keep_history_in(&mut self, history: Arc<dyn History>) {
        self.state.keep_history_in(history);
        self.history_rows = Some(BTreeMap::new());
    }

    /// The digest of the history rows replayed, per table, if they are kept in a history.
    pub(crate) fn history_digests(&self) -> Option<&BTreeMap<&'static str, RowDigest>> {
        self.history_rows.as_ref()
    }

    /// Replays the next leaf; returns the Merkle nodes it completed.
    pub fn push(&mut self, leaf: &[u8]) -> Result<Vec<(NodeId, Hash)>, ReplayError> {
        let decoded = Decoded::new(self.size(), leaf)?;
        self.apply(leaf, decoded, None)
    }

    /// Replays the next leaf, decoded already, with its signatures checked ahead if `ahead` says
    /// so.
    pub(super) fn apply(
        &mut self,
        leaf: &[u8],
        decoded: Decoded,
        ahead: Option<CheckedAhead>,
    ) -> Result<Vec<(NodeId, Hash)>, ReplayError> {
        let verified = ahead
            .filter(|ahead| ahead.holds_for(&self.state))
            .map(|ahead| ahead.verified);
        let taken = verified.is_some();
        let replayed = apply_decoded(
            &self.origin,
            &mut self.state,
            &mut self.tree,
            &mut self.prev,
            leaf,
            decoded,
            verified,
        )?;
        if let Some(digests) = &mut self.history_rows {
            let changes = self
                .state
                .pending_history_changes()
                .map_err(|e| ReplayError {
                    seq: self.tree.size() - 1,
                    fault: ReplayFault::Sink(e.to_string()),
                })?;
            for change in changes {
                digests
                    .entry(change.table)
                    .or_default()
                    .add(&change.key, change.value.as_deref());
            }
        }
        self.state.settle();
        self.signatures += replayed.signatures;
        if taken {
            self.checked_ahead += replayed.signatures;
        }
        self.last_accepted_at = Some(replayed.accepted_at);
        Ok(replayed.nodes)
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

    /// Of the signatures checked, those a helper thread checked ahead of the replay
    /// ([`Replayer::replay_ahead`]) against the very keys the replayed state held.
    pub fn signatures_checked_ahead(&self) -> u64 {
        self.checked_ahead
    }

    /// The tree's right edge and the hash of the last leaf.
    pub fn head(&self) -> (&CompactTree, Hash) {
        (&self.tree, self.prev)
    }

    /// The commitment to the state replayed so far, at the time of the last entry (the state
    /// line a checkpoint of this size must carry).
    pub fn state_commitment(&self) -> Result<StateCommitment, StoreError> {
        let at = self
            .last_accepted_at
            .clone()
            .unwrap_or_else(|| Timestamp::from_instant(time::OffsetDateTime::UNIX_EPOCH));
        self.state.state_commitment(&at)
    }
}

/// Checks the checkpoint's state line, if it has one, against the state replayed to its size.
fn check_state_line(checkpoint: &Checkpoint, replayer: &Replayer) -> Result<(), ReplayError> {
    let at = |fault| ReplayError {
        seq: checkpoint.size.saturating_sub(1),
        fault,
    };
    let claimed = StateCommitment::from_checkpoint(checkpoint)
        .map_err(|e| at(ReplayFault::StateLine(e.to_string())))?;
    match claimed {
        Some(claimed) => {
            let replayed = replayer
                .state_commitment()
                .map_err(|e| at(ReplayFault::Sink(e.to_string())))?;
            if claimed == replayed {
                Ok(())
            } else {
                Err(at(ReplayFault::StateMismatch))
            }
        }
        None => Ok(()),
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

/// [`verify_export`], telling `progress` after each entry replayed (of the checkpoint's size).
pub fn verify_export_with(
    export: impl BufRead,
    checkpoint_note: &str,
    operator_key: &VerifyingKey,
    progress: &dyn crate::progress::Progress,
) -> Result<ExportReport, ReplayError> {
    // The size line, read before the note is checked (the replay checks it, and fails first).
    let total = checkpoint_note
        .lines()
        .nth(1)
        .and_then(|line| line.parse().ok())
        .unwrap_or(0);
    let mut tell = |seq: u64, _: &[u8], _| {
        progress.entries(seq + 1, total);
        Ok(())
    };
    replay_export(export, checkpoint_note, operator_key, &mut tell).map(|(r, _)| r)
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
    let at = |seq: u64, fault: ReplayFault| ReplayError { seq, fault };
    let origin_line = checkpoint_note.lines().next().unwrap_or_default();
    let checkpoint = checkpoint::open_checkpoint(checkpoint_note, origin_line, operator_key)
        .map_err(|e| at(0, ReplayFault::Checkpoint(e)))?;
    let origin: Origin = checkpoint
        .origin
        .parse()
        .map_err(|e: crate::ids::FieldError| at(0, ReplayFault::Origin(e.to_string())))?;
    let mut replayer = Replayer::new(origin);
    let mut root_at_checkpoint = (checkpoint.size == 0).then(merkle::empty_root);
    // The export is read and replayed on this thread; helper threads decode the lines and check
    // their signatures ahead.
    replayer.replay_ahead::<ReplayError>(
        super::helper_threads(),
        |push| {
            let mut seq = 0;
            for line in export.split(b'\n') {
                let line = line.map_err(|e| at(seq, ReplayFault::Unreadable(e.to_string())))?;
                if !line.is_empty() {
                    push(&line)?;
                    seq += 1;
                }
            }
            Ok(())
        },
        |replayer, seq, leaf, nodes| {
            sink(seq, leaf, nodes).map_err(|reason| at(seq, ReplayFault::Sink(reason)))?;
            if seq == 0 {
                let operator = replayer
                    .state()
                    .operator()
                    .and_then(|id| replayer.state().participant(id));
                if operator.map(|p| p.public_key.to_bytes()) != Some(operator_key.to_bytes()) {
                    return Err(at(0, ReplayFault::Operator));
                }
            }
            if replayer.size() == checkpoint.size {
                root_at_checkpoint = Some(replayer.root());
                check_state_line(&checkpoint, replayer)?;
            }
            Ok(())
        },
    )?;
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
        Some(_) => Err(at(
            checkpoint.size.saturating_sub(1),
            ReplayFault::RootMismatch,
        )),
        None => Err(at(
            replayer.size(),
            ReplayFault::TooShort {
                entries: replayer.size(),
                checkpoint: checkpoint.size,
            },
        )),
    }
}
