//! The ledger: a sequencer over the state machine, the Merkle tree and a store.
//!
//! ```text
//! submission ─▶ decode (strict) ─▶ verify signatures ─▶ queue ─▶ sequencer (one at a time):
//!     apply to state ─▶ envelope {seq, prev, accepted_at, entry} ─▶ leaf = JCS(envelope)
//!     ─▶ tree append ─▶ one atomic store write per group ─▶ flush + fdatasync ─▶ receipts
//! ```
//!
//! - this module: opening a store (and creating the genesis entry), reading entries and pages of
//!   history;
//! - [`sequencer`](self#submitting): submitting entries, group commit;
//! - `proofs`: inclusion and consistency proofs, checkpoints, a bank's pledge bundle;
//! - `audit`: [`Ledger::verify_full`], the replay of the whole stored history;
//! - `tiles`: [`Ledger::tile`], the tree and the leaves as C2SP tlog tiles ([`crate::tiles`]);
//! - `restore`: [`Restore`], a ledger rebuilt from copies of its log (an export, a mirror) and
//!   checked against the newest checkpoint its key signed (its floor); [`Ledger::restore`] from
//!   an export and its checkpoint.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointError};
use crate::entry::{Body, EntryKind, RegisterParticipant};
use crate::error::RuleError;
use crate::ids::{hex32, Origin, ParticipantId, PublicKey, Role, Text, Timestamp};
use crate::merkle::{self, CompactTree, Hash, ProofError};
use crate::sign::{self, SignatureError};
use crate::state::{
    self, ApplyError, Certificate, CertificateFilter, History, HistoryPage, HistoryVisitor,
    PageRequest, State, TradeFilter, TradeRecord, HISTORY_TABLES,
};
use crate::store::{MemoryStore, Meta, RowRange, SledStore, Store, StoreError, StoreNodes, LAYOUT};
use crate::verify::ReplayError;
use crate::wire::{Envelope, WireError, GENESIS_PREV};

mod audit;
mod catch_up;
mod health;
mod migrate;
mod proofs;
mod replica;
mod restore;
mod sequencer;
mod tiles;

pub use health::{FailureStats, WriteHealth};
pub use replica::Replica;
pub use restore::{Floor, Restore, Restored};

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
    /// An entry bundle cannot be written: one of its leaves is longer than a bundle can carry.
    #[error("{0}; read the entry at /v1/entries/{seq}", seq = .0.seq)]
    LeafTooLargeForBundle(#[from] crate::tiles::LeafTooLarge),
    /// A proof could not be made or checked.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A checkpoint could not be made or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger stopped writing after a failure it could not recover from; it answers reads.
    #[error("the ledger cannot write: {0}")]
    Halted(String),
    /// The store holds another ledger, or its contents contradict themselves.
    #[error("{0}")]
    Integrity(String),
    /// A full verification found the stored history wrong.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The ledger holds fewer entries than a checkpoint its operator key signed (its floor): a
    /// restore from an older copy. Accepting an entry or signing a checkpoint now would make the
    /// key sign a second history, so it does neither until the missing entries are restored
    /// from a copy of the log that verifies against the floor. It answers reads.
    #[error("the ledger holds {size} entries, but its operator key signed a checkpoint of {floor}: it accepts no entry and signs no checkpoint until the {} missing entries are restored from a copy of the log that verifies against that checkpoint (carbon-ledger restore --mirror; docs/operations.md, Recovery); submitting them again cannot recreate them", floor - size)]
    BehindFloor {
        /// Entries held.
        size: u64,
        /// The size of the newest checkpoint the operator key signed.
        floor: u64,
    },
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
            LedgerError::LeafTooLargeForBundle(_) => "leaf-too-large-for-bundle",
            // A proof's nodes could not be read because the store is away: retry, not damage.
            LedgerError::Proof(ProofError::Source(reason))
                if reason.starts_with(STORE_UNAVAILABLE_PREFIX) =>
            {
                "store-unavailable"
            }
            LedgerError::Proof(ProofError::MissingNode(_) | ProofError::Source(_)) => "integrity",
            LedgerError::Proof(_) => "bad-proof-request",
            LedgerError::Checkpoint(_) => "checkpoint",
            LedgerError::Store(StoreError::Unavailable(_) | StoreError::Behind { .. }) => {
                "store-unavailable"
            }
            LedgerError::Store(StoreError::Full(_)) => "storage-full",
            LedgerError::Store(_) | LedgerError::Halted(_) => "storage",
            LedgerError::Integrity(_) => "integrity",
            LedgerError::Replay(_) => "integrity",
            LedgerError::BehindFloor { .. } => "behind-floor",
        }
    }
}

/// How [`StoreError::Unavailable`] reads once it has become text (a proof's node source).
const STORE_UNAVAILABLE_PREFIX: &str = "the store cannot be reached";

impl From<ApplyError> for LedgerError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Rule(rule) => LedgerError::Rule(rule),
            ApplyError::Store(store) => LedgerError::Store(store),
            // `ApplyError` is non-exhaustive; every kind it has is above.
            #[allow(unreachable_patterns)]
            other => LedgerError::Integrity(other.to_string()),
        }
    }
}

/// Where the ledger reads the time it accepts entries at. The system clock in service; a test
/// may move time on (to let a pledge mature) with [`Clock::from_fn`].
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> time::OffsetDateTime + Send + Sync>);

impl Clock {
    /// The system's clock (UTC).
    pub fn system() -> Self {
        Self(Arc::new(time::OffsetDateTime::now_utc))
    }

    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> time::OffsetDateTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The time now.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_instant((self.0)())
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// How long a signed entry may take to reach the ledger, unless configured otherwise.
pub const DEFAULT_ENTRY_MAX_AGE: time::Duration = time::Duration::hours(24);

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
    /// Signed entries expire: one whose `created_at` is older than this when it first arrives
    /// is refused (`entry-expired`). The same entry sent again after it was accepted still gets
    /// its receipt.
    pub entry_max_age: time::Duration,
    /// The clock entries are accepted by.
    pub clock: Clock,
}

impl LedgerConfig {
    /// A configuration with the default entry expiry ([`DEFAULT_ENTRY_MAX_AGE`]).
    pub fn new(
        origin: Origin,
        operator: ParticipantId,
        operator_name: Text,
        operator_key: SigningKey,
    ) -> Self {
        Self {
            origin,
            operator,
            operator_name,
            operator_key,
            entry_max_age: DEFAULT_ENTRY_MAX_AGE,
            clock: Clock::system(),
        }
    }
}

impl std::fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerConfig")
            .field("origin", &self.origin)
            .field("operator", &self.operator)
            .field("operator_name", &self.operator_name)
            .field("operator_key", &"<secret>")
            .field("entry_max_age", &self.entry_max_age)
            .field("clock", &self.clock)
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

/// The sequenced part: state, tree and chain head, always as durable as the store.
struct Head {
    state: State,
    tree: CompactTree,
    last_leaf_hash: Hash,
    /// When the ledger accepted its last entry: the time the state is committed at (the prices
    /// in force).
    last_accepted_at: Option<Timestamp>,
    meta: Meta,
}

/// Where the log ends: its tree, its last leaf's hash and when that leaf was accepted. The
/// sequencer keeps one to go back to when a group or a write fails.
#[derive(Clone)]
struct LogEnd {
    tree: CompactTree,
    last_leaf_hash: Hash,
    last_accepted_at: Option<Timestamp>,
}

/// An open ledger. `Send + Sync`: share it behind an `Arc` between threads.
pub struct Ledger {
    origin: Origin,
    operator_key: SigningKey,
    entry_max_age: time::Duration,
    clock: Clock,
    store: Arc<dyn Store>,
    head: RwLock<Head>,
    /// Every participant's current key, as durable: signature checks read it without waiting for
    /// the sequencer, which holds the head while it writes.
    keys: RwLock<HashMap<ParticipantId, PublicKey>>,
    /// Submissions waiting for the sequencer, and whether a submitter is sequencing now.
    queue: Mutex<sequencer::Queue>,
    durable_writes: AtomicU64,
    entries_written: AtomicU64,
    /// On a shared store: passes left that lock the store's head before they sequence, because
    /// another instance overtook a recent one.
    contended_passes: AtomicU32,
    /// Whether writes succeed, and the recovery after a failed one (see `health`).
    health: health::Health,
    /// The last checkpoint signed; its lock also makes signing one at a time.
    last_checkpoint: Mutex<Option<String>>,
    /// The size of the newest checkpoint signed when it is larger than the tree opened (a
    /// restore from an older copy): until the tree reaches it the ledger refuses to write or sign.
    floor: Option<u64>,
}

/// The last checkpoint signed, and its size if the tree is behind it (the ledger's floor).
type LastSigned = (Option<String>, Option<u64>);

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

fn unhex32(text: &str, what: &str) -> Result<Hash, LedgerError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| LedgerError::Integrity(format!("the stored {what} is not a hex hash")))?;
    Ok(out)
}

/// The store as the state's history.
#[derive(Debug)]
struct StoreHistory(Arc<dyn Store>);

impl History for StoreHistory {
    fn row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.state_row(table, key)
    }

    fn scan(
        &self,
        table: &str,
        range: RowRange<'_>,
        visit: &mut HistoryVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.0
            .scan_state(Some(table), range, &mut |_, key, value| visit(key, value))
    }
}

impl Head {
    /// A new ledger's head, before its genesis entry.
    fn empty(config: &LedgerConfig) -> Self {
        Self::empty_for(
            &config.origin,
            &PublicKey::from(config.operator_key.verifying_key()),
        )
    }

    /// The head of an empty store of the ledger `origin` run with the key `operator`.
    fn empty_for(origin: &Origin, operator: &PublicKey) -> Self {
        Head {
            state: State::new(),
            tree: CompactTree::new(),
            last_leaf_hash: [0; 32],
            last_accepted_at: None,
            meta: Meta {
                layout: LAYOUT,
                origin: origin.to_string(),
                operator_key: operator.to_string(),
                size: 0,
                peaks: Vec::new(),
                last_leaf_hash: GENESIS_PREV.to_owned(),
            },
        }
    }

    /// Reads the head of the ledger in `store` back, without replaying history: the state
    /// tables, the tree's right edge and the chain head, cross-checked in O(log n) (the tree edge
    /// against the stored nodes, the last leaf against the chain head).
    fn load(
        store: &Arc<dyn Store>,
        meta: Meta,
        origin: &Origin,
        operator: &PublicKey,
    ) -> Result<Self, LedgerError> {
        if meta.layout != LAYOUT {
            return Err(LedgerError::Integrity(format!(
                "the store has layout {}, this program reads layout {LAYOUT}",
                meta.layout
            )));
        }
        if meta.origin != origin.as_str() {
            return Err(LedgerError::Integrity(format!(
                "the store holds the ledger \"{}\", not \"{}\"",
                meta.origin, origin
            )));
        }
        if meta.operator_key != operator.to_string() {
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
        let nodes = StoreNodes(store.as_ref());
        let mut last_accepted_at = None;
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
            let envelope = Envelope::from_leaf(&last).map_err(|e| {
                LedgerError::Integrity(format!("the last leaf cannot be read: {e}"))
            })?;
            last_accepted_at = Some(envelope.accepted_at);
        }
        // The market's current state is read back; its history (entries, trades, certificates)
        // stays in the store and is read from there when asked for.
        let mut state = State::new();
        for table in State::TABLES.iter().filter(|t| !HISTORY_TABLES.contains(t)) {
            store.scan_state(
                Some(table),
                RowRange::default(),
                &mut |table, key, value| {
                    state
                        .load_row(table, key, value)
                        .map_err(|e| StoreError::Decode {
                            what: format!("a row of table {table}"),
                            reason: e.reason,
                        })?;
                    Ok(true)
                },
            )?;
        }
        state.keep_history_in(Arc::new(StoreHistory(Arc::clone(store))));
        Ok(Head {
            state,
            tree,
            last_leaf_hash,
            last_accepted_at,
            meta,
        })
    }

    /// Where the log ends now.
    fn log_end(&self) -> LogEnd {
        LogEnd {
            tree: self.tree.clone(),
            last_leaf_hash: self.last_leaf_hash,
            last_accepted_at: self.last_accepted_at.clone(),
        }
    }

    /// Goes back to where the log ended before.
    fn rewind(&mut self, end: LogEnd) {
        self.tree = end.tree;
        self.last_leaf_hash = end.last_leaf_hash;
        self.last_accepted_at = end.last_accepted_at;
    }

    /// The time the state is committed at: the acceptance of the log's last entry (it decides
    /// the prices in force).
    fn commitment_time(&self) -> Timestamp {
        self.last_accepted_at
            .clone()
            .unwrap_or_else(|| Timestamp::from_instant(time::OffsetDateTime::UNIX_EPOCH))
    }

    /// Every participant's current key.
    fn keys(&self) -> HashMap<ParticipantId, PublicKey> {
        self.state
            .participants()
            .map(|p| (p.id.clone(), p.public_key))
            .collect()
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
    /// the tree's right edge and the chain head are read back and cross-checked, and the tree
    /// must extend the last checkpoint signed.
    pub fn open(store: Box<dyn Store>, config: LedgerConfig) -> Result<Self, LedgerError> {
        let store: Arc<dyn Store> = Arc::from(store);
        let operator_public = PublicKey::from(config.operator_key.verifying_key());
        // The checkpoints before the metadata: on a shared store other instances may append
        // and sign meanwhile, and a checkpoint is only ever signed over what is durable.
        let witness = store.checkpoint_witness()?;
        let stored_checkpoint = store.checkpoint()?;
        // A shared store's head is locked while the state is read, so that no other instance
        // appends between the metadata row and the last state row read.
        let locked = store.lock_head()?.is_some();
        let loaded = Self::load_head(
            &store,
            &config,
            &operator_public,
            [stored_checkpoint, witness],
        );
        if locked {
            store.unlock_head();
        }
        let (head, (last_checkpoint, floor)) = loaded?;
        let fresh = head.tree.size() == 0;
        let keys = head.keys();
        let ledger = Ledger {
            origin: config.origin.clone(),
            operator_key: config.operator_key.clone(),
            entry_max_age: config.entry_max_age,
            clock: config.clock.clone(),
            store,
            head: RwLock::new(head),
            keys: RwLock::new(keys),
            queue: Mutex::new(sequencer::Queue::default()),
            durable_writes: AtomicU64::new(0),
            entries_written: AtomicU64::new(0),
            contended_passes: AtomicU32::new(0),
            health: health::Health::default(),
            last_checkpoint: Mutex::new(last_checkpoint),
            floor,
        };
        if let Err(error) = ledger.store.writable() {
            ledger.unwritable_at_open(error);
        }
        if fresh {
            match ledger.write_genesis(&config) {
                Ok(()) => {}
                // Another instance sharing the store created the ledger first: this one caught
                // up with its genesis entry, which must register the same operator key.
                Err(LedgerError::Rule(RuleError::EntryIdUsed { .. }))
                    if ledger.store.shared() && ledger.genesis_is(&config) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(ledger)
    }

    /// The head of the ledger in `store` (empty for a new store) and the last checkpoint signed,
    /// from the checkpoints `notes` read before the metadata.
    fn load_head(
        store: &Arc<dyn Store>,
        config: &LedgerConfig,
        operator_public: &PublicKey,
        notes: [Option<String>; 2],
    ) -> Result<(Head, LastSigned), LedgerError> {
        Ok(match store.meta()? {
            Some(meta) => {
                let meta = migrate::to_current_layout(store.as_ref(), meta)?;
                let head = Head::load(store, meta, &config.origin, operator_public)?;
                let last = Self::last_signed(store.as_ref(), &head, notes, config)?;
                (head, last)
            }
            None if notes.iter().any(Option::is_some) || store.leaf(0)?.is_some() => {
                return Err(LedgerError::Integrity(
                    "the store has no ledger metadata, yet it holds entries or the ledger signed a checkpoint of them: its data was lost or damaged, or a restore was interrupted; restore it from a backup into an empty folder".to_owned(),
                ))
            }
            None => {
                let mut head = Head::empty(config);
                head.state
                    .keep_history_in(Arc::new(StoreHistory(Arc::clone(store))));
                (head, (None, None))
            }
        })
    }

    /// The last checkpoint signed, from the one kept in the main data and the one kept apart
    /// from it: the later one is the last signed. The tree must extend every one it reaches; a
    /// checkpoint larger than the tree is its floor (returned with it): the store lost entries,
    /// or was restored from an older copy, and the ledger opens behind its floor.
    fn last_signed(
        store: &dyn Store,
        head: &Head,
        notes: [Option<String>; 2],
        config: &LedgerConfig,
    ) -> Result<LastSigned, LedgerError> {
        let key = config.operator_key.verifying_key();
        let mut latest: Option<(u64, String)> = None;
        for note in notes.into_iter().flatten() {
            let last = checkpoint::open_checkpoint(&note, config.origin.as_str(), &key)?;
            if last.size <= head.tree.size() {
                proofs::check_extends(store, &head.tree, &last)?;
            }
            if latest.as_ref().is_none_or(|(size, _)| last.size > *size) {
                latest = Some((last.size, note));
            }
        }
        let floor = latest
            .as_ref()
            .map(|(size, _)| *size)
            .filter(|size| *size > head.tree.size());
        Ok((latest.map(|(_, note)| note), floor))
    }

    /// Why the ledger may not write or sign now: it holds fewer entries than a checkpoint its
    /// key signed ([`LedgerError::BehindFloor`]).
    pub fn behind_floor(&self) -> Option<LedgerError> {
        let floor = self.floor?;
        let size = self.size();
        (size < floor).then_some(LedgerError::BehindFloor { size, floor })
    }

    fn write_genesis(&self, config: &LedgerConfig) -> Result<(), LedgerError> {
        let body = Body {
            id: "genesis".parse().map_err(|_| {
                LedgerError::Integrity("the genesis entry id is invalid".to_owned())
            })?,
            ledger: config.origin.clone(),
            created_at: config.clock.now(),
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

    /// Whether the ledger's operator is the one `config` names, with its key.
    fn genesis_is(&self, config: &LedgerConfig) -> bool {
        let key = PublicKey::from(config.operator_key.verifying_key());
        self.read(|state| {
            state.operator() == Some(&config.operator)
                && state
                    .participant(&config.operator)
                    .is_some_and(|p| p.public_key == key)
        })
    }

    fn read_head(&self) -> RwLockReadGuard<'_, Head> {
        // A panic while holding the lock leaves the head as durable as the store: keep serving.
        self.head.read().unwrap_or_else(|e| e.into_inner())
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
        use std::sync::atomic::Ordering;
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

    /// A page of trades, read from the store's indexes without holding up the sequencer: it
    /// costs O(page), whatever the length of the history.
    pub fn trade_page(
        &self,
        filter: &TradeFilter,
        request: PageRequest,
    ) -> Result<HistoryPage<TradeRecord>, LedgerError> {
        Ok(state::trade_page(
            &StoreHistory(Arc::clone(&self.store)),
            filter,
            request,
        )?)
    }

    /// A page of retirement certificates, read from the store's indexes without holding up the
    /// sequencer.
    pub fn certificate_page(
        &self,
        filter: &CertificateFilter,
        request: PageRequest,
    ) -> Result<HistoryPage<Certificate>, LedgerError> {
        Ok(state::certificate_page(
            &StoreHistory(Arc::clone(&self.store)),
            filter,
            request,
        )?)
    }
}
