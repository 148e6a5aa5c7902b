//! The ledger: a sequencer over the state machine, the Merkle tree and a store.
//!
//! ```text
//! submission ─▶ decode (strict) ─▶ verify signatures ─▶ queue ─▶ sequencer (one at a time):
//!     apply to state ─▶ envelope {seq, prev, accepted_at, entry} ─▶ leaf = JCS(envelope)
//!     ─▶ tree append ─▶ one atomic store batch per group ─▶ flush + fdatasync ─▶ receipts
//! ```
//!
//! Concurrent submitters share durable writes (group commit): a submitter that finds nobody
//! sequencing takes everything queued, writes it as one batch, makes it durable, and only then
//! hands every submitter its answer; meanwhile new submissions queue for the next pass.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::{Condvar, Mutex, RwLock, RwLockReadGuard};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::entry::{Body, EntryKind, RegisterParticipant, Submission};
use crate::error::RuleError;
use crate::ids::{Origin, ParticipantId, PledgeId, PublicKey, Role, Text, Timestamp};
use crate::merkle::{self, CompactTree, Hash, NodeId, NodeSource, ProofError};
use crate::sign::{self, SignatureError, Verified};
use crate::state::{Context, History, HistoryVisitor, State, HISTORY_TABLES};
use crate::store::{AppendBatch, MemoryStore, Meta, SledStore, Store, StoreError, LAYOUT};
use crate::verify::{PledgeBundle, ProvedEntry, ReplayError, Replayer};
use crate::wire::{self, Envelope, Prepared, WireError, GENESIS_PREV};

/// Most entries in one atomic group.
pub const MAX_GROUP: usize = 1024;

/// Why the ledger refused a submission or could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The submission could not be decoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The body names another ledger: its signatures are for that ledger only.
    #[error("this entry was made for the ledger \"{found}\"; this ledger is \"{expected}\"")]
    WrongLedger {
        /// This ledger's origin.
        expected: String,
        /// The origin the body names.
        found: String,
    },
    /// A signature is missing, malformed or made with the wrong key.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A rule of the market refused the entry.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// One entry of an atomic group was refused, so none was appended.
    #[error(
        "entry {index} of the group was refused, so no entry of the group was appended: {error}"
    )]
    Group {
        /// Position of the refused entry in the group, from 0.
        index: usize,
        /// Why it was refused.
        error: Box<LedgerError>,
    },
    /// A group that is empty or larger than [`MAX_GROUP`].
    #[error("a group must hold 1 to {MAX_GROUP} entries; this one holds {0}")]
    GroupSize(usize),
    /// Something asked for is not in the ledger (a sequence number past the end...).
    #[error("{0}")]
    NotFound(String),
    /// A proof could not be made or checked.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A checkpoint could not be made or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds another ledger, or its contents contradict themselves.
    #[error("{0}")]
    Integrity(String),
    /// A full verification found the stored history wrong.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

impl LedgerError {
    /// A stable machine-readable kind (`insufficient-sink`, `bad-signature`, `malformed`...).
    pub fn kind(&self) -> &'static str {
        match self {
            LedgerError::Wire(WireError::Json(_)) => "malformed-json",
            LedgerError::Wire(_) => "malformed-entry",
            LedgerError::WrongLedger { .. } => "wrong-ledger",
            LedgerError::Signature(e) => e.kind(),
            LedgerError::Rule(e) => e.kind(),
            LedgerError::Group { error, .. } => error.kind(),
            LedgerError::GroupSize(_) => "group-size",
            LedgerError::NotFound(_) => "not-found",
            LedgerError::Proof(ProofError::MissingNode(_) | ProofError::Source(_)) => "integrity",
            LedgerError::Proof(_) => "bad-proof-request",
            LedgerError::Checkpoint(_) => "checkpoint",
            LedgerError::Store(_) => "storage",
            LedgerError::Integrity(_) => "integrity",
            LedgerError::Replay(_) => "integrity",
        }
    }
}

/// How to open a ledger.
#[derive(Clone)]
pub struct LedgerConfig {
    /// The ledger's origin: in every body, and the name of its checkpoints.
    pub origin: Origin,
    /// The operator's participant id (used when the ledger is created).
    pub operator: ParticipantId,
    /// The operator's display name (used when the ledger is created).
    pub operator_name: Text,
    /// The operator's key: it signs the genesis entry and every checkpoint.
    pub operator_key: SigningKey,
}

impl std::fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerConfig")
            .field("origin", &self.origin)
            .field("operator", &self.operator)
            .field("operator_name", &self.operator_name)
            .field("operator_key", &"<secret>")
            .finish()
    }
}

/// What the ledger says when it accepts an entry (or when the same entry comes again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Position in the ledger.
    pub seq: u64,
    /// The entry's id.
    pub id: String,
    /// The entry's type.
    #[serde(rename = "type")]
    pub entry_type: String,
    /// Hex leaf hash of its envelope.
    pub leaf_hash: String,
    /// When the ledger accepted it.
    pub accepted_at: String,
    /// Whether this is the first receipt returned again for a resubmission.
    pub duplicate: bool,
}

/// An inclusion proof with what it proves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf's position.
    pub seq: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// Hex leaf hash.
    pub leaf_hash: String,
    /// Hex hashes, RFC 9162 order.
    pub proof: Vec<String>,
    /// Hex root of the tree at that size.
    pub root: String,
}

/// A consistency proof between two tree sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The earlier size.
    pub old_size: u64,
    /// The later size.
    pub new_size: u64,
    /// Hex root at the earlier size.
    pub old_root: String,
    /// Hex root at the later size.
    pub new_root: String,
    /// Hex hashes, RFC 9162 order.
    pub proof: Vec<String>,
}

/// The outcome of a full verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Signatures checked.
    pub signatures: u64,
    /// Hex root recomputed from the leaves.
    pub root: String,
}

/// A unit of work for the sequencer: one entry, or an atomic group.
enum Unit {
    Single(Box<(Prepared, Verified)>),
    Group(Vec<(Prepared, Verified)>),
}

type UnitResult = Result<Vec<Receipt>, LedgerError>;

struct Pending {
    unit: Unit,
    reply: mpsc::Sender<UnitResult>,
}

/// The sequencer's queue. There is no sequencer thread: a submitter that finds nobody sequencing
/// takes everything queued and sequences it (leader), while the others wait for their answers.
#[derive(Default)]
struct Queue {
    waiting: Vec<Pending>,
    sequencing: bool,
}

/// Hands the turn on when a sequencing pass ends, even if it panicked.
struct EndOfTurn<'a>(&'a Ledger);

impl Drop for EndOfTurn<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.sequencing = false;
        self.0.turn.notify_all();
    }
}

/// The sequenced part: state, tree and chain head, always as durable as the store.
struct Head {
    state: State,
    tree: CompactTree,
    last_leaf_hash: Hash,
    meta: Meta,
}

/// Work in progress of one group commit.
#[derive(Default)]
struct Batch {
    leaves: Vec<Vec<u8>>,
    nodes: Vec<(NodeId, Hash)>,
    /// Keys registered or rotated by the batch, for the key cache once it is durable.
    new_keys: Vec<(ParticipantId, PublicKey)>,
}

impl Batch {
    fn truncate(&mut self, (leaves, nodes, keys): (usize, usize, usize)) {
        self.leaves.truncate(leaves);
        self.nodes.truncate(nodes);
        self.new_keys.truncate(keys);
    }

    fn lengths(&self) -> (usize, usize, usize) {
        (self.leaves.len(), self.nodes.len(), self.new_keys.len())
    }
}

/// An open ledger. `Send + Sync`: share it behind an `Arc` between threads.
pub struct Ledger {
    origin: Origin,
    operator_key: SigningKey,
    store: Arc<dyn Store>,
    head: RwLock<Head>,
    /// Every participant's current key, as durable: signature checks read it without waiting for
    /// the sequencer, which holds the head while it writes.
    keys: RwLock<HashMap<ParticipantId, PublicKey>>,
    /// Submissions waiting for the sequencer, and whether a submitter is sequencing now.
    queue: Mutex<Queue>,
    /// Signalled when a sequencing pass ends: its submitters have their answers, and the next
    /// waiting submitter takes the queue.
    turn: Condvar,
    durable_writes: AtomicU64,
    entries_written: AtomicU64,
    /// The last checkpoint signed; its lock also makes signing one at a time.
    last_checkpoint: Mutex<Option<String>>,
}

/// How the sequencer has written since the ledger was opened: concurrent submitters share
/// durable writes, so `entries / durable_writes` is the mean group size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteStats {
    /// Atomic, durable store writes (each one flush and fdatasync).
    pub durable_writes: u64,
    /// Entries those writes appended.
    pub entries: u64,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("origin", &self.origin)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn hex32(hash: &Hash) -> String {
    hex::encode(hash)
}

fn unhex32(text: &str, what: &str) -> Result<Hash, LedgerError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| LedgerError::Integrity(format!("the stored {what} is not a hex hash")))?;
    Ok(out)
}

struct StoreNodes<'a>(&'a dyn Store);

impl NodeSource for StoreNodes<'_> {
    fn node(&self, id: NodeId) -> Result<Hash, ProofError> {
        self.0
            .node(id)
            .map_err(|e| ProofError::Source(e.to_string()))?
            .ok_or(ProofError::MissingNode(id))
    }
}

impl Ledger {
    /// Opens the ledger kept in `dir` with sled, creating it (and its genesis entry) if the folder
    /// holds none.
    pub fn open_dir(dir: &Path, config: LedgerConfig) -> Result<Self, LedgerError> {
        Self::open(Box::new(SledStore::open(dir)?), config)
    }

    /// A new ledger in memory.
    pub fn in_memory(config: LedgerConfig) -> Result<Self, LedgerError> {
        Self::open(Box::new(MemoryStore::new()), config)
    }

    /// Opens a ledger on any store. A new store gets the genesis entry: the operator's own
    /// registration. An existing one is opened without replaying its history: the state tables,
    /// the tree's right edge and the chain head are read back and cross-checked.
    pub fn open(store: Box<dyn Store>, config: LedgerConfig) -> Result<Self, LedgerError> {
        let store: Arc<dyn Store> = Arc::from(store);
        let operator_public = PublicKey::from(config.operator_key.verifying_key());
        let witness = store.checkpoint_witness()?;
        let (head, last_checkpoint) = match store.meta()? {
            Some(meta) => Self::load(store.as_ref(), meta, witness, &config, &operator_public)?,
            None if witness.is_some() || store.leaf(0)?.is_some() => {
                return Err(LedgerError::Integrity(
                    "the store has no ledger metadata, yet it holds entries or the ledger signed a checkpoint of them: its data was lost or damaged, or a restore was interrupted; restore it from a backup into an empty folder".to_owned(),
                ))
            }
            None => (
                Head {
                    state: State::new(),
                    tree: CompactTree::new(),
                    last_leaf_hash: [0; 32],
                    meta: Meta {
                        layout: LAYOUT,
                        origin: config.origin.to_string(),
                        operator_key: operator_public.to_string(),
                        size: 0,
                        peaks: Vec::new(),
                        last_leaf_hash: GENESIS_PREV.to_owned(),
                    },
                },
                None,
            ),
        };
        let mut head = head;
        head.state
            .keep_history_in(Arc::new(StoreHistory(Arc::clone(&store))));
        let fresh = head.tree.size() == 0;
        let keys = head
            .state
            .participants()
            .map(|p| (p.id.clone(), p.public_key))
            .collect();
        let ledger = Ledger {
            origin: config.origin.clone(),
            operator_key: config.operator_key.clone(),
            store,
            head: RwLock::new(head),
            keys: RwLock::new(keys),
            queue: Mutex::new(Queue::default()),
            turn: Condvar::new(),
            durable_writes: AtomicU64::new(0),
            entries_written: AtomicU64::new(0),
            last_checkpoint: Mutex::new(last_checkpoint),
        };
        if fresh {
            ledger.write_genesis(&config)?;
        }
        Ok(ledger)
    }

    /// Restores a ledger into an empty store from a backup: an export and a checkpoint signed by
    /// the operator key. Every entry is verified as it is written (signatures, chain, rules) and
    /// the export must reach the checkpoint's root; the leaves are kept byte for byte, so the
    /// restored ledger has the same entries, roots and proofs. If it fails part-way, discard the
    /// store.
    pub fn restore(
        store: Box<dyn Store>,
        config: LedgerConfig,
        export: impl std::io::BufRead,
        checkpoint_note: &str,
    ) -> Result<Self, LedgerError> {
        if store.meta()?.is_some()
            || store.checkpoint_witness()?.is_some()
            || store.leaf(0)?.is_some()
        {
            return Err(LedgerError::Integrity(
                "a ledger can only be restored into an empty store".to_owned(),
            ));
        }
        let key = config.operator_key.verifying_key();
        let last = checkpoint::open_checkpoint(checkpoint_note, config.origin.as_str(), &key)?;
        const CHUNK: usize = 1024;
        let mut batch = Batch::default();
        let mut first_seq = 0;
        let mut meta = Meta {
            layout: LAYOUT,
            origin: config.origin.to_string(),
            operator_key: PublicKey::from(key).to_string(),
            size: 0,
            peaks: Vec::new(),
            last_leaf_hash: GENESIS_PREV.to_owned(),
        };
        // Leaves and nodes go in chunks; the metadata row, which makes the store a ledger, only
        // with the state at the end.
        let (_, replayer) = crate::verify::replay_export(
            export,
            checkpoint_note,
            &key,
            &mut |seq, leaf, nodes| {
                if batch.leaves.is_empty() {
                    first_seq = seq;
                }
                batch.leaves.push(leaf.to_vec());
                batch.nodes.extend(nodes);
                if batch.leaves.len() >= CHUNK {
                    store
                        .append(AppendBatch {
                            first_seq,
                            leaves: &batch.leaves,
                            nodes: &batch.nodes,
                            state: &[],
                            meta: None,
                        })
                        .map_err(|e| e.to_string())?;
                    batch = Batch::default();
                }
                Ok(())
            },
        )?;
        let (tree, last_leaf_hash) = replayer.head();
        meta.size = tree.size();
        meta.peaks = tree.peaks().iter().map(hex32).collect();
        meta.last_leaf_hash = hex32(&last_leaf_hash);
        let rows = replayer
            .state()
            .all_rows()
            .map_err(|e| StoreError::Io(e.to_string()))?;
        store.append(AppendBatch {
            first_seq,
            leaves: &batch.leaves,
            nodes: &batch.nodes,
            state: &rows,
            meta: Some(&meta),
        })?;
        store.put_checkpoint(checkpoint_note)?;
        if last.size > meta.size {
            return Err(LedgerError::Integrity(
                "the export is shorter than its checkpoint".to_owned(),
            ));
        }
        Self::open(store, config)
    }

    fn load(
        store: &dyn Store,
        meta: Meta,
        witness: Option<String>,
        config: &LedgerConfig,
        operator_public: &PublicKey,
    ) -> Result<(Head, Option<String>), LedgerError> {
        if meta.layout != LAYOUT {
            return Err(LedgerError::Integrity(format!(
                "the store has layout {}, this program reads layout {LAYOUT}",
                meta.layout
            )));
        }
        if meta.origin != config.origin.as_str() {
            return Err(LedgerError::Integrity(format!(
                "the store holds the ledger \"{}\", not \"{}\"",
                meta.origin, config.origin
            )));
        }
        if meta.operator_key != operator_public.to_string() {
            return Err(LedgerError::Integrity(
                "the store was created with another operator key".to_owned(),
            ));
        }
        let peaks = meta
            .peaks
            .iter()
            .map(|p| unhex32(p, "tree edge"))
            .collect::<Result<Vec<_>, _>>()?;
        let tree = CompactTree::from_parts(meta.size, peaks)?;
        let last_leaf_hash = unhex32(&meta.last_leaf_hash, "last leaf hash")?;
        // Cross-checks that cost O(log n): the tree edge against the stored nodes, and the chain
        // head against the last leaf.
        let nodes = StoreNodes(store);
        if tree.size() > 0 {
            if merkle::root_at(tree.size(), &nodes)? != tree.root() {
                return Err(LedgerError::Integrity(
                    "the stored Merkle nodes disagree with the stored tree head".to_owned(),
                ));
            }
            let last = store.leaf(tree.size() - 1)?.ok_or_else(|| {
                LedgerError::Integrity("the last leaf is missing from the store".to_owned())
            })?;
            if merkle::leaf_hash(&last) != last_leaf_hash {
                return Err(LedgerError::Integrity(format!(
                    "leaf {} does not match the stored chain head",
                    tree.size() - 1
                )));
            }
        }
        // The market's current state is read back; its history (entries, trades, certificates)
        // stays in the store and is read from there when asked for.
        let mut state = State::new();
        for table in State::TABLES.iter().filter(|t| !HISTORY_TABLES.contains(t)) {
            store.scan_state(Some(table), &mut |table, key, value| {
                state
                    .load_row(table, key, value)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(true)
            })?;
        }
        let head = Head {
            state,
            tree,
            last_leaf_hash,
            meta,
        };
        // The checkpoint kept in the main data, and the one kept apart from it: the tree must
        // extend both, and the later one is the last signed.
        let key = config.operator_key.verifying_key();
        let mut latest: Option<(u64, String)> = None;
        for note in [store.checkpoint()?, witness].into_iter().flatten() {
            let last = checkpoint::open_checkpoint(&note, config.origin.as_str(), &key)?;
            check_extends(store, &head.tree, &last)?;
            if latest.as_ref().is_none_or(|(size, _)| last.size > *size) {
                latest = Some((last.size, note));
            }
        }
        Ok((head, latest.map(|(_, note)| note)))
    }

    fn write_genesis(&self, config: &LedgerConfig) -> Result<(), LedgerError> {
        let body = Body {
            id: "genesis".parse().map_err(|_| {
                LedgerError::Integrity("the genesis entry id is invalid".to_owned())
            })?,
            ledger: config.origin.clone(),
            created_at: Timestamp::now(),
            kind: EntryKind::RegisterParticipant(RegisterParticipant {
                participant: config.operator.clone(),
                name: config.operator_name.clone(),
                roles: vec![Role::Operator],
                public_key: PublicKey::from(config.operator_key.verifying_key()),
            }),
        };
        let submission = sign::sign_body(body, &[(&config.operator, &config.operator_key)])
            .map_err(WireError::from)?;
        self.submit(submission)?;
        Ok(())
    }

    // --- submitting ----------------------------------------------------------------------

    /// Submits one signed entry and returns its receipt once it is durable. The same signed
    /// entry submitted again returns its first receipt.
    pub fn submit(&self, submission: Submission) -> Result<Receipt, LedgerError> {
        self.submit_prepared(Prepared::new(submission)?)
    }

    /// Submits one entry from the bytes a client sent.
    pub fn submit_bytes(&self, bytes: &[u8]) -> Result<Receipt, LedgerError> {
        self.submit_prepared(wire::decode_submission(bytes)?)
    }

    /// Submits one decoded entry.
    pub fn submit_prepared(&self, prepared: Prepared) -> Result<Receipt, LedgerError> {
        // The same signed entry again gets its first receipt, even if a signer's key has
        // rotated since: it was verified when it was accepted.
        {
            let head = self.read_head();
            if let Some(receipt) = self.same_entry_again(&head, &Batch::default(), &prepared)? {
                return Ok(receipt);
            }
        }
        let verified = self.verify(&prepared)?;
        let mut receipts = self.run(Unit::Single(Box::new((prepared, verified))))?;
        receipts
            .pop()
            .ok_or_else(|| LedgerError::Integrity("the sequencer returned no receipt".to_owned()))
    }

    /// Submits an atomic group: every entry is appended, in order, or none is.
    pub fn submit_group(&self, group: Vec<Prepared>) -> Result<Vec<Receipt>, LedgerError> {
        if group.is_empty() || group.len() > MAX_GROUP {
            return Err(LedgerError::GroupSize(group.len()));
        }
        // Signatures are checked on all cores. A signer registered, or a key rotated, earlier in
        // the same group is not known yet: such entries are verified again by the sequencer, in
        // order, which then gives the real answer.
        let checks = self.verify_all(&group);
        let mut verified = Vec::with_capacity(group.len());
        for (index, (prepared, check)) in group.into_iter().zip(checks).enumerate() {
            let checked = match check {
                Ok(v) => v,
                Err(LedgerError::Signature(_)) => Verified::default(),
                Err(error) => {
                    return Err(LedgerError::Group {
                        index,
                        error: Box::new(error),
                    })
                }
            };
            verified.push((prepared, checked));
        }
        self.run(Unit::Group(verified))
    }

    /// Verifies many submissions, spread over the machine's cores.
    fn verify_all(&self, group: &[Prepared]) -> Vec<Result<Verified, LedgerError>> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        if threads < 2 || group.len() < 8 {
            return group.iter().map(|p| self.verify(p)).collect();
        }
        let chunk = group.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = group
                .chunks(chunk)
                .map(|part| {
                    let worker = scope.spawn(move || part.iter().map(|p| self.verify(p)).collect());
                    (part.len(), worker)
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|(len, worker)| {
                    worker.join().unwrap_or_else(|_| {
                        let panicked =
                            LedgerError::Integrity("a signature check failed".to_owned());
                        vec![Err(panicked); len]
                    })
                })
                .collect()
        })
    }

    fn read_head(&self) -> RwLockReadGuard<'_, Head> {
        // A panic while holding the lock leaves the head as durable as the store: keep serving.
        self.head.read().unwrap_or_else(|e| e.into_inner())
    }

    fn verify(&self, prepared: &Prepared) -> Result<Verified, LedgerError> {
        if prepared.body().ledger != self.origin {
            return Err(LedgerError::WrongLedger {
                expected: self.origin.to_string(),
                found: prepared.body().ledger.to_string(),
            });
        }
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        Ok(sign::verify_signatures(&*keys, prepared)?)
    }

    /// Queues a unit and waits for its answer, sequencing the queue itself when nobody else is.
    ///
    /// Group commit: while one pass writes and syncs, new submissions queue up, and the next pass
    /// takes them all as one durable batch. Waiters block on the queue's condition variable, not
    /// on the pass, so those answered leave at once and the next leader starts at once.
    fn run(&self, unit: Unit) -> UnitResult {
        let (reply, answer) = mpsc::channel();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.waiting.push(Pending { unit, reply });
        loop {
            if let Ok(result) = answer.try_recv() {
                return result;
            }
            if !queue.sequencing {
                queue.sequencing = true;
                let work = std::mem::take(&mut queue.waiting);
                drop(queue);
                let end = EndOfTurn(self);
                self.sequence(work);
                drop(end);
                queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            queue = self.turn.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Sequences queued units, writes them as one durable batch, then answers each.
    fn sequence(&self, work: Vec<Pending>) {
        let mut head = self.head.write().unwrap_or_else(|e| e.into_inner());
        let tree_before = head.tree.clone();
        let chain_before = head.last_leaf_hash;
        let mut batch = Batch::default();
        let mut results: Vec<(mpsc::Sender<UnitResult>, UnitResult)> = Vec::new();
        for pending in work {
            let result = match pending.unit {
                Unit::Single(single) => self
                    .sequence_one(&mut head, &mut batch, &single.0, &single.1)
                    .map(|r| vec![r]),
                Unit::Group(entries) => self.sequence_group(&mut head, &mut batch, &entries),
            };
            results.push((pending.reply, result));
        }
        let outcome = if batch.leaves.is_empty() {
            Ok(())
        } else {
            self.write(&mut head, &batch, tree_before.size())
        };
        match outcome {
            Ok(()) => {
                head.state.settle();
                if !batch.leaves.is_empty() {
                    self.durable_writes.fetch_add(1, Ordering::Relaxed);
                    self.entries_written
                        .fetch_add(batch.leaves.len() as u64, Ordering::Relaxed);
                }
                if !batch.new_keys.is_empty() {
                    let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
                    keys.extend(batch.new_keys.drain(..));
                }
            }
            Err(error) => {
                head.state.revert();
                head.tree = tree_before;
                head.last_leaf_hash = chain_before;
                for (_, result) in &mut results {
                    if result.is_ok() {
                        *result = Err(error.clone());
                    }
                }
            }
        }
        drop(head);
        for (reply, result) in results {
            // A submitter that went away no longer needs its answer.
            let _ = reply.send(result);
        }
    }

    fn write(&self, head: &mut Head, batch: &Batch, first_seq: u64) -> Result<(), LedgerError> {
        let changes = head
            .state
            .pending_changes()
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let mut meta = head.meta.clone();
        meta.size = head.tree.size();
        meta.peaks = head.tree.peaks().iter().map(hex32).collect();
        meta.last_leaf_hash = hex32(&head.last_leaf_hash);
        self.store.append(AppendBatch {
            first_seq,
            leaves: &batch.leaves,
            nodes: &batch.nodes,
            state: &changes,
            meta: Some(&meta),
        })?;
        head.meta = meta;
        Ok(())
    }

    fn sequence_group(
        &self,
        head: &mut Head,
        batch: &mut Batch,
        entries: &[(Prepared, Verified)],
    ) -> UnitResult {
        let savepoint = head.state.savepoint();
        let tree_before = head.tree.clone();
        let chain_before = head.last_leaf_hash;
        let batch_before = batch.lengths();
        let mut receipts = Vec::with_capacity(entries.len());
        for (index, (prepared, verified)) in entries.iter().enumerate() {
            match self.sequence_one(head, batch, prepared, verified) {
                Ok(receipt) => receipts.push(receipt),
                Err(error) => {
                    head.state.rollback_to(savepoint);
                    head.tree = tree_before;
                    head.last_leaf_hash = chain_before;
                    batch.truncate(batch_before);
                    return Err(LedgerError::Group {
                        index,
                        error: Box::new(error),
                    });
                }
            }
        }
        Ok(receipts)
    }

    fn sequence_one(
        &self,
        head: &mut Head,
        batch: &mut Batch,
        prepared: &Prepared,
        verified: &Verified,
    ) -> Result<Receipt, LedgerError> {
        let body = prepared.body();
        if let Some(receipt) = self.same_entry_again(head, batch, prepared)? {
            return Ok(receipt);
        }
        // Keys may have rotated (or signers registered) since verification: verify again.
        let fresh;
        let verified = if verified.still_current(&head.state) {
            verified
        } else {
            fresh = sign::verify_signatures(&head.state, prepared)?;
            &fresh
        };
        let seq = head.tree.size();
        let accepted_at = Timestamp::now();
        let ctx = Context {
            seq,
            accepted_at: accepted_at.clone(),
            signers: verified.signers.clone(),
            body_digest: prepared.body_digest,
        };
        head.state.apply(&ctx, body)?;
        match &body.kind {
            EntryKind::RegisterParticipant(r) => {
                batch.new_keys.push((r.participant.clone(), r.public_key));
            }
            EntryKind::RotateKey(r) => batch
                .new_keys
                .push((r.participant.clone(), r.new_public_key)),
            _ => {}
        }
        let envelope = Envelope {
            seq,
            prev: hex32(&head.last_leaf_hash),
            accepted_at: accepted_at.clone(),
            entry: prepared.submission.clone(),
        };
        let leaf = envelope.leaf_bytes().map_err(WireError::from)?;
        let leaf_hash = merkle::leaf_hash(&leaf);
        batch.nodes.extend(head.tree.append(leaf_hash)?);
        batch.leaves.push(leaf);
        head.last_leaf_hash = leaf_hash;
        Ok(Receipt {
            seq,
            id: body.id.to_string(),
            entry_type: body.type_name().to_owned(),
            leaf_hash: hex32(&leaf_hash),
            accepted_at: accepted_at.to_string(),
            duplicate: false,
        })
    }

    /// The first receipt, if `prepared` is an entry already in the ledger (or in the batch being
    /// sequenced): the same body with the same signatures. The same body with other signatures
    /// is not the same signed entry; it goes through verification and the rules like any other.
    fn same_entry_again(
        &self,
        head: &Head,
        batch: &Batch,
        prepared: &Prepared,
    ) -> Result<Option<Receipt>, LedgerError> {
        let Some(first) = head.state.entry(&prepared.body().id)? else {
            return Ok(None);
        };
        if first.body_digest != prepared.body_digest {
            return Ok(None);
        }
        let (receipt, signatures) = self.receipt_again(head, batch, first.seq)?;
        Ok((signatures == prepared.submission.signatures).then_some(receipt))
    }

    /// The receipt of entry `seq`, with the signatures it was accepted with.
    fn receipt_again(
        &self,
        head: &Head,
        batch: &Batch,
        seq: u64,
    ) -> Result<(Receipt, Vec<crate::entry::SignatureLine>), LedgerError> {
        let durable = head.meta.size;
        let leaf = if seq >= durable {
            usize::try_from(seq - durable)
                .ok()
                .and_then(|i| batch.leaves.get(i).cloned())
        } else {
            self.store.leaf(seq)?
        };
        let leaf = leaf.ok_or_else(|| LedgerError::Integrity(format!("leaf {seq} is missing")))?;
        let envelope = Envelope::from_leaf(&leaf)
            .map_err(|e| LedgerError::Integrity(format!("leaf {seq} cannot be read: {e}")))?;
        let receipt = Receipt {
            seq,
            id: envelope.entry.body.id.to_string(),
            entry_type: envelope.entry.body.type_name().to_owned(),
            leaf_hash: hex32(&merkle::leaf_hash(&leaf)),
            accepted_at: envelope.accepted_at.to_string(),
            duplicate: true,
        };
        Ok((receipt, envelope.entry.signatures))
    }

    // --- reading -------------------------------------------------------------------------

    /// The ledger's origin.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The operator's public key, which signs checkpoints.
    pub fn operator_key(&self) -> ed25519_dalek::VerifyingKey {
        self.operator_key.verifying_key()
    }

    /// Runs a query over the current (durable) state.
    pub fn read<R>(&self, query: impl FnOnce(&State) -> R) -> R {
        query(&self.read_head().state)
    }

    /// How the sequencer has written since the ledger was opened.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            durable_writes: self.durable_writes.load(Ordering::Relaxed),
            entries: self.entries_written.load(Ordering::Relaxed),
        }
    }

    /// Number of entries.
    pub fn size(&self) -> u64 {
        self.read_head().tree.size()
    }

    /// The Merkle root now.
    pub fn root(&self) -> Hash {
        self.read_head().tree.root()
    }

    /// One entry's leaf bytes (its envelope, JCS).
    pub fn leaf(&self, seq: u64) -> Result<Vec<u8>, LedgerError> {
        if seq >= self.size() {
            return Err(LedgerError::NotFound(format!(
                "there is no entry {seq}; the ledger holds {} entries",
                self.size()
            )));
        }
        self.store
            .leaf(seq)?
            .ok_or_else(|| LedgerError::Integrity(format!("leaf {seq} is missing from the store")))
    }

    /// One entry's envelope.
    pub fn envelope(&self, seq: u64) -> Result<Envelope, LedgerError> {
        let leaf = self.leaf(seq)?;
        Envelope::from_leaf(&leaf)
            .map_err(|e| LedgerError::Integrity(format!("leaf {seq} cannot be read: {e}")))
    }

    /// Up to `limit` leaves from `from` on.
    pub fn leaves(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, LedgerError> {
        let size = self.size();
        let mut out = Vec::new();
        self.store.scan_leaves(from, &mut |seq, leaf| {
            if seq >= size || out.len() >= limit {
                return Ok(false);
            }
            out.push((seq, leaf.to_vec()));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Writes the export: one line per leaf, each line exactly the leaf bytes, up to `size` (the
    /// current size when `None`).
    pub fn export(
        &self,
        out: &mut dyn std::io::Write,
        size: Option<u64>,
    ) -> Result<u64, LedgerError> {
        let size = size.unwrap_or_else(|| self.size()).min(self.size());
        let mut written = 0;
        self.store.scan_leaves(0, &mut |seq, leaf| {
            if seq >= size {
                return Ok(false);
            }
            out.write_all(leaf)?;
            out.write_all(b"\n")?;
            written += 1;
            Ok(true)
        })?;
        Ok(written)
    }

    /// Proof that entry `seq` is in the tree of size `tree_size` (the current size when `None`).
    pub fn inclusion_proof(
        &self,
        seq: u64,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, LedgerError> {
        let (size, current_root) = self.tree_head();
        let tree_size = tree_size.unwrap_or(size);
        if tree_size > size {
            return Err(LedgerError::NotFound(format!(
                "the ledger holds {size} entries, fewer than {tree_size}"
            )));
        }
        let nodes = StoreNodes(self.store.as_ref());
        let proof = merkle::inclusion_proof(seq, tree_size, &nodes)?;
        let leaf_hash = nodes.node(NodeId {
            level: 0,
            index: seq,
        })?;
        let root = self.root_of(tree_size, (size, current_root), &nodes)?;
        Ok(InclusionProof {
            seq,
            tree_size,
            leaf_hash: hex32(&leaf_hash),
            proof: proof.iter().map(hex32).collect(),
            root: hex32(&root),
        })
    }

    /// Proof that the tree of `old_size` is a prefix of the tree of `new_size` (the current size
    /// when `None`).
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: Option<u64>,
    ) -> Result<ConsistencyProof, LedgerError> {
        let (size, current_root) = self.tree_head();
        let new_size = new_size.unwrap_or(size);
        if new_size > size {
            return Err(LedgerError::NotFound(format!(
                "the ledger holds {size} entries, fewer than {new_size}"
            )));
        }
        let nodes = StoreNodes(self.store.as_ref());
        let proof = merkle::consistency_proof(old_size, new_size, &nodes)?;
        Ok(ConsistencyProof {
            old_size,
            new_size,
            old_root: hex32(&self.root_of(old_size, (size, current_root), &nodes)?),
            new_root: hex32(&self.root_of(new_size, (size, current_root), &nodes)?),
            proof: proof.iter().map(hex32).collect(),
        })
    }

    /// The tree's size and root now, read together.
    fn tree_head(&self) -> (u64, Hash) {
        let head = self.read_head();
        (head.tree.size(), head.tree.root())
    }

    /// The root at `tree_size`: the current root from memory, an earlier one from the store.
    fn root_of(
        &self,
        tree_size: u64,
        (size, root): (u64, Hash),
        nodes: &StoreNodes<'_>,
    ) -> Result<Hash, LedgerError> {
        if tree_size == size {
            return Ok(root);
        }
        Ok(merkle::root_at(tree_size, nodes)?)
    }

    /// The latest checkpoint, signed by the operator key, as a C2SP signed note. A new one is
    /// signed (when the ledger has grown) only after checking that it extends the last one
    /// signed. Signing holds neither the sequencer nor the state: submissions go on meanwhile.
    pub fn checkpoint(&self) -> Result<String, LedgerError> {
        let mut last = self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = self.operator_key.verifying_key();
        let current = {
            let head = self.read_head();
            if let Some(note) = last.as_ref() {
                if checkpoint_size(note) == Some(head.tree.size()) {
                    return Ok(note.clone());
                }
                let previous = checkpoint::open_checkpoint(note, self.origin.as_str(), &key)?;
                check_extends(self.store.as_ref(), &head.tree, &previous)?;
            }
            Checkpoint::new(self.origin.as_str(), head.tree.size(), head.tree.root())
        };
        let note = checkpoint::sign_checkpoint(&current, self.origin.as_str(), &self.operator_key)?;
        self.store.put_checkpoint(&note)?;
        *last = Some(note.clone());
        Ok(note)
    }

    /// Compares every stored state row with those of a replayed state.
    fn compare_stored_state(&self, replayed: &State) -> Result<(), LedgerError> {
        let mut expected: BTreeMap<(&'static str, Vec<u8>), Vec<u8>> = replayed
            .all_rows()
            .map_err(|e| LedgerError::Integrity(e.to_string()))?
            .into_iter()
            .filter_map(|row| Some(((row.table, row.key), row.value?)))
            .collect();
        let mut mismatch = None;
        self.store.scan_state(None, &mut |table, key, value| {
            let name = State::TABLES
                .iter()
                .find(|t| **t == table)
                .copied()
                .unwrap_or("?");
            if expected.remove(&(name, key.to_vec())).as_deref() != Some(value) {
                mismatch = Some(format!("{table} {}", String::from_utf8_lossy(key)));
                return Ok(false);
            }
            Ok(true)
        })?;
        if let Some(((table, key), _)) = expected.into_iter().next() {
            mismatch.get_or_insert(format!("{table} {}", String::from_utf8_lossy(&key)));
        }
        match mismatch {
            Some(row) => Err(LedgerError::Integrity(format!(
                "the stored state differs from a replay of the entries at row {row}"
            ))),
            None => Ok(()),
        }
    }

    /// Everything a bank needs to check pledge `id` offline (see
    /// [`crate::verify::verify_pledge_bundle`]), proved under the latest checkpoint.
    pub fn pledge_bundle(&self, id: &PledgeId) -> Result<PledgeBundle, LedgerError> {
        let note = self.checkpoint()?;
        let size = checkpoint_size(&note)
            .ok_or_else(|| LedgerError::Integrity("the checkpoint has no size line".to_owned()))?;
        let seqs = self.read(|state| -> Result<BTreeSet<u64>, LedgerError> {
            let missing = |what: String| LedgerError::NotFound(what);
            let pledge = state
                .pledge(id)
                .ok_or_else(|| missing(format!("there is no pledge \"{id}\"")))?;
            let batch = state
                .batch(&pledge.batch)
                .ok_or_else(|| missing(format!("there is no batch \"{}\"", pledge.batch)))?;
            let report = state
                .report(&batch.report)
                .ok_or_else(|| missing(format!("there is no report \"{}\"", batch.report)))?;
            let mut seqs: BTreeSet<u64> = [pledge.seq, batch.seq, report.seq].into();
            let signers = [
                state.operator(),
                Some(&pledge.pledgor),
                Some(&pledge.bank),
                Some(&report.verifier),
            ];
            for who in signers.into_iter().flatten() {
                if let Some(p) = state.participant(who) {
                    seqs.insert(p.registered_seq);
                    seqs.extend(p.rotations.iter().copied());
                }
            }
            // Keys of the operator and the signers only matter up to the pledge.
            Ok(seqs.into_iter().filter(|s| *s <= pledge.seq).collect())
        })?;
        let nodes = StoreNodes(self.store.as_ref());
        let mut entries = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let leaf = self.leaf(seq)?;
            let proof = merkle::inclusion_proof(seq, size, &nodes)?;
            entries.push(ProvedEntry {
                leaf: String::from_utf8(leaf)
                    .map_err(|_| LedgerError::Integrity(format!("leaf {seq} is not UTF-8")))?,
                proof: proof.iter().map(hex32).collect(),
            });
        }
        Ok(PledgeBundle {
            version: 1,
            pledge: id.to_string(),
            checkpoint: note,
            entries,
        })
    }

    /// Recomputes everything from the stored leaves — signatures, chain, tree, state — and
    /// compares it with what the store holds. Names the first bad sequence number.
    ///
    /// It reads a consistent ledger, so submissions wait until it is done (about two minutes
    /// per million entries on two cores, see docs/performance.md): run it on a stopped ledger
    /// (`carbon-ledger check`) or on a restored copy rather than on a busy service.
    pub fn verify_full(&self) -> Result<VerifyReport, LedgerError> {
        let head = self.read_head();
        let size = head.tree.size();
        let mut replayer = Replayer::new(self.origin.clone());
        let mut expected = 0u64;
        self.store.scan_leaves(0, &mut |seq, leaf| {
            if seq >= size {
                return Ok(false);
            }
            if seq != expected {
                return Err(StoreError::Corrupt(format!("entry {expected} is missing")));
            }
            expected += 1;
            let nodes = replayer
                .push(leaf)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            for (id, hash) in nodes {
                if self.store.node(id)? != Some(hash) {
                    return Err(StoreError::Corrupt(format!(
                        "entry {seq}: the stored Merkle node at level {} index {} is wrong",
                        id.level, id.index
                    )));
                }
            }
            Ok(true)
        })?;
        if expected != size {
            return Err(LedgerError::Integrity(format!(
                "entry {expected} is missing"
            )));
        }
        if replayer.root() != head.tree.root() {
            return Err(LedgerError::Integrity(
                "the recomputed root differs from the stored tree head".to_owned(),
            ));
        }
        self.compare_stored_state(replayer.state())?;
        replayer
            .state()
            .check_invariants()
            .map_err(LedgerError::Integrity)?;
        Ok(VerifyReport {
            entries: size,
            signatures: replayer.signatures(),
            root: hex32(&replayer.root()),
        })
    }
}

/// The store as the state's history.
#[derive(Debug)]
struct StoreHistory(Arc<dyn Store>);

impl History for StoreHistory {
    fn row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.0.state_row(table, key).map_err(|e| e.to_string())
    }

    fn scan(&self, table: &str, visit: &mut HistoryVisitor<'_>) -> Result<(), String> {
        self.0
            .scan_state(Some(table), &mut |_, key, value| {
                visit(key, value).map_err(StoreError::Corrupt)
            })
            .map_err(|e| e.to_string())
    }
}

fn checkpoint_size(note: &str) -> Option<u64> {
    note.lines().nth(1).and_then(|l| l.parse().ok())
}

/// Checks that the tree extends the checkpoint `last` (same root at its size).
fn check_extends(
    store: &dyn Store,
    tree: &CompactTree,
    last: &Checkpoint,
) -> Result<(), LedgerError> {
    if last.size > tree.size() {
        return Err(LedgerError::Integrity(format!(
            "the ledger signed a checkpoint at size {} but holds only {} entries",
            last.size,
            tree.size()
        )));
    }
    let nodes = StoreNodes(store);
    if last.size > 0 && merkle::root_at(last.size, &nodes)? != last.root {
        return Err(LedgerError::Integrity(format!(
            "the stored tree at size {} contradicts the checkpoint signed at that size",
            last.size
        )));
    }
    Ok(())
}
