//! Storage behind a small trait, with sled as the embedded default and a memory store for tests
//! and short-lived ledgers.
//!
//! **Only this module names sled.** A store keeps four kinds of rows: leaves (the envelopes, by
//! sequence number), the hashes of perfect Merkle subtrees, the state tables, and one metadata row
//! (tree size, the right edge of the tree, the last leaf hash, the last signed checkpoint). A group
//! of entries is written with all of these in one atomic write, and made durable before
//! [`Store::append`] returns.
//!
//! A write that fails is never trusted, nor is what the store holds in memory after it: the
//! ledger calls [`Store::reopen`], which drops the store's caches and opens it again from what is
//! durable, before it reads its head back and writes again.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::merkle::{Hash, NodeId, NodeSource, ProofError};
use crate::state::StateChange;

/// Why the store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk or the database failed.
    #[error("storage failed: {0}")]
    Io(String),
    /// The store cannot grow: its disk is full (`ENOSPC`), a quota is reached (`EDQUOT`), or a
    /// file-size limit is (`EFBIG`). Nothing of the write was acknowledged; it succeeds again
    /// once there is room.
    #[error("the store has no room left: {0}")]
    Full(String),
    /// Stored bytes are not what the ledger wrote.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A stored row could not be decoded.
    #[error("stored data is corrupt: {what} cannot be read: {reason}")]
    Decode {
        /// Which row.
        what: String,
        /// What the decoder said.
        reason: String,
    },
    /// A row could not be encoded for storage (a programming error: every row type encodes).
    #[error("a row could not be encoded for storage: {0}")]
    Encode(String),
    /// The store's folder is open in another process — a running service, most likely — which
    /// holds its lock. Nothing was read or written.
    #[error("{0} is open in another process, such as a running carbon-ledger serve, which holds its lock")]
    InUse(String),
    /// The store cannot be reached now (a database restarting, a connection dropped); nothing
    /// was written, or a write's outcome is in doubt until the store answers again. Retry.
    #[error("the store cannot be reached: {0}")]
    Unavailable(String),
    /// A store shared by several instances holds more entries than the group's first sequence
    /// number: another instance appended meanwhile. Nothing was written; the caller catches up
    /// with the `durable` entries the store holds and sequences its group again. An embedded
    /// store (sled, memory) never returns it.
    #[error("the store holds {durable} entries: another instance appended meanwhile")]
    Behind {
        /// Entries the store holds.
        durable: u64,
    },
    /// A shared store already keeps a checkpoint at least as large as the one offered, signed
    /// by another instance meanwhile; nothing was written. Read it back with
    /// [`Store::checkpoint`].
    #[error("the store keeps a checkpoint of {stored_size} entries, at least as large")]
    CheckpointSuperseded {
        /// The size of the checkpoint the store keeps.
        stored_size: u64,
    },
}

/// Whether an I/O error says that the store cannot grow (a full disk, a quota, a file-size limit).
fn is_full(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind;
    matches!(
        kind,
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge
    )
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
            // sled keeps the kind of an I/O error (also when it repeats a failure it recorded).
            sled::Error::Io(io) if is_full(io.kind()) => StoreError::Full(io.kind().to_string()),
            other => StoreError::Io(other.to_string()),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        if is_full(e.kind()) {
            StoreError::Full(e.to_string())
        } else {
            StoreError::Io(e.to_string())
        }
    }
}

/// The ledger's metadata row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Version of the storage layout.
    pub layout: u32,
    /// The ledger's origin.
    pub origin: String,
    /// The operator's public key (base64), which signs checkpoints.
    pub operator_key: String,
    /// Number of leaves.
    pub size: u64,
    /// Roots of the perfect subtrees on the tree's right edge (hex), left to right.
    pub peaks: Vec<String>,
    /// Leaf hash of the last envelope (hex).
    pub last_leaf_hash: String,
}

/// The storage layout this code writes: 2 keys trades and certificates by sequence number, with
/// indexes by party, batch, kind and holder (layout 1 keyed them by entry id). How a store keeps
/// its rows underneath is its own affair: sled's node blocks, for one, are converted by the sled
/// store itself when it opens.
pub const LAYOUT: u32 = 2;

/// Which rows of a state table a scan visits: keys that start with `prefix`, after the key
/// `after` if given (before it when `reverse`), in key order or reverse.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowRange<'a> {
    /// Only keys that start with these bytes.
    pub prefix: &'a [u8],
    /// Only keys after this one (before it, in reverse).
    pub after: Option<&'a [u8]>,
    /// Last key first.
    pub reverse: bool,
}

/// What one group commit writes.
#[derive(Clone, Copy, Debug)]
pub struct Append<'a> {
    /// Sequence number of the first leaf.
    pub first_seq: u64,
    /// The leaf bytes, in order.
    pub leaves: &'a [Vec<u8>],
    /// Perfect Merkle nodes completed by these leaves.
    pub nodes: &'a [(NodeId, Hash)],
    /// State rows changed.
    pub state: &'a [StateChange],
    /// The metadata after the group; `None` leaves the metadata row as it is (a restore writes
    /// leaves in chunks and the metadata last).
    pub meta: Option<&'a Meta>,
}

/// Visits leaves in order: sequence number and bytes; returns `false` to stop.
pub type LeafVisitor<'a> = dyn FnMut(u64, &[u8]) -> Result<bool, StoreError> + 'a;

/// Visits state rows: table, key, value; returns `false` to stop.
pub type RowVisitor<'a> = dyn FnMut(&str, &[u8], &[u8]) -> Result<bool, StoreError> + 'a;

/// Storage for a ledger. Implementations must make [`Store::append`] and [`Store::put_checkpoint`]
/// atomic and durable before they return.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Drops whatever the store keeps in memory and opens it again from what is durable. The
    /// ledger calls it after a write failed, before it reads its head back: what a failed write
    /// left in a cache is never read, nor built on (a store with no cache of its own does
    /// nothing). Reads that arrive meanwhile wait for it.
    fn reopen(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether a write can be expected to succeed now, without trying one: sled answers
    /// [`StoreError::Full`] while it has released its disk reserve and cannot take it back. The
    /// ledger asks when it opens, so that its health is honest before the first write.
    fn writable(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The metadata row, or `None` for a new store.
    fn meta(&self) -> Result<Option<Meta>, StoreError>;
    /// Writes a group atomically and durably.
    fn append(&self, group: Append<'_>) -> Result<(), StoreError>;
    /// Keeps a newly signed checkpoint durably, in the main data and apart from it (see
    /// [`Store::checkpoint_witness`]). Touches nothing else, so it may run beside appends.
    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError>;
    /// The last checkpoint signed, as kept in the main data.
    fn checkpoint(&self) -> Result<Option<String>, StoreError>;
    /// The last checkpoint signed, as kept apart from the main data: if the main data loses
    /// entries (a damaged file that recovery cuts short, an old backup put back), this copy still
    /// says how far the ledger had gone, and opening refuses to go on from less.
    fn checkpoint_witness(&self) -> Result<Option<String>, StoreError>;
    /// One leaf's bytes.
    fn leaf(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Leaves from `from` on, in order, until `visit` returns `false`.
    fn scan_leaves(&self, from: u64, visit: &mut LeafVisitor<'_>) -> Result<(), StoreError>;
    /// A perfect Merkle node's hash.
    fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError>;
    /// The hashes of several nodes, in the order asked (`None` for a node not stored): what a
    /// proof needs, fetched at once. The default reads them one by one; a store across a network
    /// overrides it with one round trip.
    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        ids.iter().map(|&id| self.node(id)).collect()
    }
    /// The hashes of up to `count` perfect Merkle nodes of one level, from index `first` on, in
    /// order; it stops at the first node not stored. A tile (`crate::tiles`) is one such run.
    /// The default reads them one by one; stores override it with one range read.
    fn node_run(&self, level: u8, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let mut hashes = Vec::new();
        for index in (first..).take(usize::try_from(count).unwrap_or(usize::MAX)) {
            match self.node(NodeId { level, index })? {
                Some(hash) => hashes.push(hash),
                None => break,
            }
        }
        Ok(hashes)
    }
    /// The state rows of one table (or of all tables) in `range`, in key order (or reverse),
    /// until `visit` returns `false`.
    fn scan_state(
        &self,
        table: Option<&str>,
        range: RowRange<'_>,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError>;
    /// One state row's value.
    fn state_row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Whether other processes may append to this store (a database shared by several service
    /// instances). A shared store's [`Store::append`] may return [`StoreError::Behind`], and its
    /// [`Store::put_checkpoint`] [`StoreError::CheckpointSuperseded`]. Embedded stores are not.
    fn shared(&self) -> bool {
        false
    }

    /// For a shared store: locks the head so that no other instance appends until this
    /// instance's next [`Store::append`] (which commits and unlocks) or [`Store::unlock_head`],
    /// and returns the number of entries the store holds. A sequencer that found itself behind
    /// takes it before it catches up and sequences again, so that it cannot be overtaken twice.
    /// Embedded stores have no other writer: `Ok(None)`.
    fn lock_head(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Releases the lock of [`Store::lock_head`] if this instance still holds it (a pass that
    /// ended with nothing to append). Does nothing otherwise.
    fn unlock_head(&self) {}
}

/// A shared store is a store (so that a caller can keep a handle on the store it gave a ledger).
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn reopen(&self) -> Result<(), StoreError> {
        (**self).reopen()
    }
    fn writable(&self) -> Result<(), StoreError> {
        (**self).writable()
    }
    fn meta(&self) -> Result<Option<Meta>, StoreError> {
        (**self).meta()
    }
    fn append(&self, group: Append<'_>) -> Result<(), StoreError> {
        (**self).append(group)
    }
    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        (**self).put_checkpoint(note)
    }
    fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        (**self).checkpoint()
    }
    fn checkpoint_witness(&self) -> Result<Option<String>, StoreError> {
        (**self).checkpoint_witness()
    }
    fn leaf(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).leaf(seq)
    }
    fn scan_leaves(&self, from: u64, visit: &mut LeafVisitor<'_>) -> Result<(), StoreError> {
        (**self).scan_leaves(from, visit)
    }
    fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        (**self).node(id)
    }
    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        (**self).nodes(ids)
    }
    fn node_run(&self, level: u8, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        (**self).node_run(level, first, count)
    }
    fn scan_state(
        &self,
        table: Option<&str>,
        range: RowRange<'_>,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError> {
        (**self).scan_state(table, range, visit)
    }
    fn state_row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).state_row(table, key)
    }
    fn shared(&self) -> bool {
        (**self).shared()
    }
    fn lock_head(&self) -> Result<Option<u64>, StoreError> {
        (**self).lock_head()
    }
    fn unlock_head(&self) {
        (**self).unlock_head()
    }
}

/// A store's Merkle nodes as a proof reads them: a node not stored is
/// [`ProofError::MissingNode`], a store that fails is [`ProofError::Source`] with its message.
#[derive(Clone, Copy, Debug)]
pub struct StoreNodes<'a>(pub &'a dyn Store);

impl NodeSource for StoreNodes<'_> {
    fn node(&self, id: NodeId) -> Result<Hash, ProofError> {
        self.0
            .node(id)
            .map_err(|e| ProofError::Source(e.to_string()))?
            .ok_or(ProofError::MissingNode(id))
    }
}

// ---------------------------------------------------------------------------------------------
// Keys: one keyspace, prefixed by row kind.
// ---------------------------------------------------------------------------------------------

const META_KEY: &[u8] = b"M";
const CHECKPOINT_KEY: &[u8] = b"C";
const LEAF: u8 = b'L';
/// A node row of stores written before node blocks: converted into blocks when the store opens.
const NODE: u8 = b'N';
const BLOCK: u8 = b'B';
const STATE: u8 = b'S';

/// The tree levels one node block spans. A block keeps the nodes of one perfect subtree of
/// 2^`BLOCK_LEVELS` nodes of its lowest level: 16 nodes of that level, 8 of the next, 4, then 2
/// (the subtree's root is the next band's). A proof for a leaf of a 10⁶-entry tree reads its
/// twenty nodes from five blocks, instead of twenty rows that each sit on a page of their own
/// (sled keeps 8 to 16 rows to a page, so a block of a height of 8 — C2SP's tiles, 16 KB —
/// would make pages of 128–256 KB that each read pulls whole).
const BLOCK_LEVELS: u8 = 4;
/// Nodes in a block: 16 + 8 + 4 + 2.
const BLOCK_SLOTS: usize = (1 << (BLOCK_LEVELS + 1)) - 2;
/// A block's bytes: which slots are filled (one bit each), then 32 bytes a slot.
const BLOCK_BITMAP: usize = BLOCK_SLOTS.div_ceil(8);
const BLOCK_BYTES: usize = BLOCK_BITMAP + 32 * BLOCK_SLOTS;

fn leaf_key(seq: u64) -> [u8; 9] {
    let mut key = [LEAF; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Where a node is kept: the key of its block (band of levels, then the block's index in the
/// band) and its slot in the block.
fn node_place(id: NodeId) -> ([u8; 10], usize) {
    let band = id.level / BLOCK_LEVELS;
    let step = id.level % BLOCK_LEVELS;
    // The block's nodes of this level: 16 >> step of them, after those of the levels below.
    let width = 1u64 << (BLOCK_LEVELS - step);
    let before = (1usize << (BLOCK_LEVELS + 1)) - (1usize << (BLOCK_LEVELS + 1 - step));
    let mut key = [BLOCK; 10];
    key[1] = band;
    key[2..].copy_from_slice(&(id.index >> (BLOCK_LEVELS - step)).to_be_bytes());
    // Below `width` (at most 16), so it fits any usize.
    let column = usize::try_from(id.index & (width - 1)).unwrap_or(0);
    (key, before + column)
}

/// A stored block, refused if it is not a block's size.
fn checked_block(block: &[u8]) -> Result<&[u8], StoreError> {
    if block.len() == BLOCK_BYTES {
        Ok(block)
    } else {
        Err(StoreError::Corrupt(format!(
            "a block of Merkle nodes is {} bytes, not {BLOCK_BYTES}",
            block.len()
        )))
    }
}

/// The node in `slot` of a stored block, if that slot is filled.
fn block_node(block: &[u8], slot: usize) -> Result<Option<Hash>, StoreError> {
    let block = checked_block(block)?;
    if block[slot / 8] & (1 << (slot % 8)) == 0 {
        return Ok(None);
    }
    let at = BLOCK_BITMAP + 32 * slot;
    hash_from(&block[at..at + 32], "a Merkle node").map(Some)
}

/// Fills `slot` of `block` with `hash`.
fn set_block_node(block: &mut [u8], slot: usize, hash: &Hash) {
    block[slot / 8] |= 1 << (slot % 8);
    let at = BLOCK_BITMAP + 32 * slot;
    block[at..at + 32].copy_from_slice(hash);
}

/// Puts `nodes` into their blocks: each block as `blocks` already holds it, else as `db` does,
/// else empty. Returns an error for a stored block of the wrong size.
fn fill_blocks(
    db: &sled::Db,
    blocks: &mut BTreeMap<[u8; 10], Vec<u8>>,
    nodes: impl IntoIterator<Item = (NodeId, Hash)>,
) -> Result<(), StoreError> {
    for (id, hash) in nodes {
        let (key, slot) = node_place(id);
        let block = match blocks.entry(key) {
            std::collections::btree_map::Entry::Occupied(held) => held.into_mut(),
            std::collections::btree_map::Entry::Vacant(place) => {
                let stored = match db.get(key)? {
                    Some(bytes) => checked_block(&bytes)?.to_vec(),
                    None => vec![0; BLOCK_BYTES],
                };
                place.insert(stored)
            }
        };
        set_block_node(block, slot, &hash);
    }
    Ok(())
}

/// Converts the node rows of a store written before node blocks into blocks, a chunk at a time,
/// each chunk one atomic batch (its blocks written, its rows removed): an interrupted conversion
/// goes on at the next opening. Then makes it durable.
fn convert_node_rows(handle: &SledHandle) -> Result<(), StoreError> {
    const CHUNK: usize = 100_000;
    let mut converted = false;
    loop {
        let mut write = sled::Batch::default();
        let mut blocks = BTreeMap::new();
        let mut nodes = Vec::new();
        for row in handle.db.scan_prefix([NODE]).take(CHUNK) {
            let (key, value) = row?;
            // The key: the prefix, the level, the index (8 bytes, big-endian).
            let id =
                match key.as_ref() {
                    &[NODE, level, ref index @ ..] => NodeId {
                        level,
                        index: u64::from_be_bytes(index.try_into().map_err(|_| {
                            StoreError::Corrupt("a Merkle node row's key".to_owned())
                        })?),
                    },
                    _ => return Err(StoreError::Corrupt("a Merkle node row's key".to_owned())),
                };
            nodes.push((id, hash_from(&value, "a Merkle node")?));
            write.remove(key);
        }
        if nodes.is_empty() {
            break;
        }
        fill_blocks(&handle.db, &mut blocks, nodes)?;
        for (key, block) in blocks {
            write.insert(&key, block);
        }
        handle.db.apply_batch(write)?;
        converted = true;
    }
    if converted {
        handle.make_durable()?;
    }
    Ok(())
}

fn state_key(table: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + table.len() + key.len());
    out.push(STATE);
    out.extend_from_slice(table.as_bytes());
    out.push(0);
    out.extend_from_slice(key);
    out
}

/// The store keys a scan covers: the prefix every key starts with, and the scan's bounds.
type KeyBounds = (Vec<u8>, std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>);

/// The store keys a [`RowRange`] of a table (or of all tables) covers (none when the cursor is
/// outside the prefix).
fn state_bounds(table: Option<&str>, range: RowRange<'_>) -> Option<KeyBounds> {
    use std::ops::Bound;
    let prefix = match table {
        Some(table) => state_key(table, range.prefix),
        None => {
            let mut all = vec![STATE];
            all.extend_from_slice(range.prefix);
            all
        }
    };
    let cursor = range.after.map(|after| match table {
        Some(table) => state_key(table, after),
        None => [&[STATE][..], after].concat(),
    });
    if cursor.as_ref().is_some_and(|c| !c.starts_with(&prefix)) {
        return None;
    }
    let end = prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
    let (low, high) = match (cursor, range.reverse) {
        (Some(cursor), false) => (Bound::Excluded(cursor), end),
        (Some(cursor), true) => (Bound::Included(prefix.clone()), Bound::Excluded(cursor)),
        (None, _) => (Bound::Included(prefix.clone()), end),
    };
    Some((prefix, low, high))
}

/// The first key after every key that starts with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn split_state_key(raw: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    let rest = &raw[1..];
    let nul = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| StoreError::Corrupt("a state row key has no table name".to_owned()))?;
    let table = std::str::from_utf8(&rest[..nul])
        .map_err(|_| StoreError::Corrupt("a state row's table name is not UTF-8".to_owned()))?;
    Ok((table, &rest[nul + 1..]))
}

fn hash_from(bytes: &[u8], what: &str) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

fn meta_from(bytes: &[u8]) -> Result<Meta, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        what: "the metadata row".to_owned(),
        reason: e.to_string(),
    })
}

fn meta_bytes(meta: &Meta) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(meta).map_err(|e| StoreError::Encode(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// sled
// ---------------------------------------------------------------------------------------------

/// The file, beside sled's own, that keeps the last signed checkpoint.
const WITNESS_FILE: &str = "last-checkpoint";

/// How long [`SledStore::reopen`] waits for reads that still use the old database, and reads
/// wait for a reopen, before giving up.
const REOPEN_WAIT: Duration = Duration::from_secs(10);

/// The file, beside sled's own, that holds disk space back for an emergency.
const RESERVE_FILE: &str = "reserve";

/// Disk space a [`SledStore`] holds back unless told otherwise: 16 MiB.
pub const DEFAULT_RESERVE_BYTES: u64 = 16 << 20;

/// Leaves a scan copies out of sled at a time: the scan's visitor (an export writing to a slow
/// client) then runs without holding the database, so that a reopen need not wait for it.
const SCAN_CHUNK: usize = 256;

/// The embedded default: sled 0.34 in a local folder.
///
/// sled's recovery treats a damaged log record as the end of the log (as it would a torn write)
/// and silently drops what follows; the last signed checkpoint is therefore also kept in a file of
/// its own (`last-checkpoint`, replaced atomically), so that a ledger that lost entries refuses to
/// open instead of serving less than it once signed.
///
/// Settings, all stated here: one tree (the default), every group written as one atomic
/// `apply_batch`; sled's background flush is off (`flush_every_ms(None)`) because the ledger
/// flushes each group itself; after `flush()` the data file is `fdatasync`ed, since sled's flush
/// ends in `sync_file_range`, which survives a killed process but not a power cut. Cache 256 MiB,
/// no compression, `Mode::HighThroughput`.
///
/// After a failed write sled keeps the error and refuses every later write, and its cache may
/// hold the batch the disk refused: [`Store::reopen`] drops the database (without flushing it, as
/// sled does not flush after an error) and opens it again from the folder.
///
/// **A disk reserve.** sled cannot even open on a full disk (its recovery writes). So that the
/// ledger can reopen its store and go on answering reads while the disk is full, the store holds
/// space back in a file of filler bytes, `reserve` (16 MiB unless told otherwise; the same idea as
/// CockroachDB's emergency ballast). When opening fails for lack of room, the reserve is deleted
/// and opening tried again. Without its reserve the store takes no write: every write first puts
/// the reserve back, and fails with [`StoreError::Full`] while it cannot. Writes therefore resume
/// only once the disk has room for twice the reserve (the reserve, and as much again to write
/// into). An operator may delete the file to give its space back to the disk in an emergency;
/// the store then takes no write until it can make it again.
#[derive(Debug)]
pub struct SledStore {
    open: RwLock<Slot>,
    path: PathBuf,
    /// The size of the reserve; 0: none.
    reserve_bytes: u64,
    /// Makes one attempt at a time to put the reserve back.
    reserve_lock: Mutex<()>,
}

/// The database, as reads find it.
#[derive(Debug)]
enum Slot {
    Open(Arc<SledHandle>),
    /// Being reopened: reads wait.
    Reopening,
    /// A reopen failed: reads fail at once until the next reopen succeeds.
    Closed(StoreError),
}

/// One opening of the database, with the data file that `fdatasync` is called on.
#[derive(Debug)]
struct SledHandle {
    db: sled::Db,
    data_file: File,
}

impl SledHandle {
    /// sled's flush, then `fdatasync` of its data file (see [`SledStore::flush`] and
    /// [`SledStore::sync`]).
    fn make_durable(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.data_file.sync_data()?;
        Ok(())
    }

    fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        remove_unfinished_snapshots(dir)?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .use_compression(false)
            .flush_every_ms(None);
        // sled's threads may hold the folder's lock a moment after the last handle of a previous
        // open is dropped: wait for it briefly rather than fail a restart. (sled reports a held
        // lock only in its message, as an error of kind `Other`.)
        let deadline = Instant::now() + Duration::from_secs(3);
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if Instant::now() >= deadline {
                        return Err(StoreError::InUse(dir.display().to_string()));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let data_file = File::open(dir.join("db"))?;
        Ok(Self { db, data_file })
    }
}

/// Deletes sled's snapshot files that were never finished (`snap.<lsn>.generating`). sled writes
/// a snapshot there and renames it when complete; one cut short (by a full disk) stays behind,
/// and sled 0.34 then reads it as the latest snapshot, calls it corrupt, and refuses to open
/// (spacejam/sled#1527). A snapshot only caches the replay of sled's log, so an unfinished one
/// holds nothing the log does not; the folder is this store's alone while it opens.
fn remove_unfinished_snapshots(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, with the default disk reserve
    /// ([`DEFAULT_RESERVE_BYTES`]).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::with_reserve(dir, DEFAULT_RESERVE_BYTES)
    }

    /// Opens (or creates) the store in `dir`, holding `reserve_bytes` of disk space back (0:
    /// none). A reserve that cannot be made (the disk is nearly full) does not stop the store
    /// from opening; writes are refused until it is made.
    pub fn with_reserve(dir: &Path, reserve_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let reserve = dir.join(RESERVE_FILE);
        let handle = match SledHandle::open(dir) {
            Err(StoreError::Full(_)) if reserve.exists() => {
                std::fs::remove_file(&reserve)?;
                SledHandle::open(dir)?
            }
            other => other?,
        };
        convert_node_rows(&handle)?;
        let store = Self {
            open: RwLock::new(Slot::Open(Arc::new(handle))),
            path: dir.to_owned(),
            reserve_bytes,
            reserve_lock: Mutex::new(()),
        };
        let _ = store.ensure_reserve();
        Ok(store)
    }

    /// Puts the disk reserve in place if it is not: [`StoreError::Full`] when there is no room
    /// for it.
    fn ensure_reserve(&self) -> Result<(), StoreError> {
        if self.reserve_bytes == 0 {
            return Ok(());
        }
        let _one_at_a_time = self.reserve_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Looked at before every write (a `stat`, next to an `fdatasync`): an operator may have
        // deleted it.
        let reserve = self.path.join(RESERVE_FILE);
        if std::fs::metadata(&reserve).is_ok_and(|m| m.len() >= self.reserve_bytes) {
            return Ok(());
        }
        // Room for the reserve and as much again to write into: otherwise the reserve given up
        // to open the store would be taken back at once, and the next write fail again.
        let room = self.reserve_bytes.saturating_mul(2);
        match write_filler(&self.path, RESERVE_FILE, room, self.reserve_bytes) {
            Ok(()) => Ok(()),
            Err(error) => Err(match error {
                StoreError::Full(reason) => StoreError::Full(format!(
                    "writes need {} MiB free (the store's disk reserve, and as much again): {reason}",
                    room >> 20
                )),
                other => other,
            }),
        }
    }

    /// Deletes the disk reserve, to make room for sled to open.
    fn release_reserve(&self) -> Result<bool, StoreError> {
        let _one_at_a_time = self.reserve_lock.lock().unwrap_or_else(|e| e.into_inner());
        match std::fs::remove_file(self.path.join(RESERVE_FILE)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The folder the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open database, waiting while it is being reopened.
    fn handle(&self) -> Result<Arc<SledHandle>, StoreError> {
        let deadline = Instant::now() + REOPEN_WAIT;
        loop {
            match &*self.open.read().unwrap_or_else(|e| e.into_inner()) {
                Slot::Open(handle) => return Ok(Arc::clone(handle)),
                Slot::Closed(error) => return Err(error.clone()),
                Slot::Reopening if Instant::now() >= deadline => {
                    return Err(StoreError::Io(
                        "the store is being reopened after a failed write".to_owned(),
                    ))
                }
                Slot::Reopening => {}
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn set_slot(&self, slot: Slot) {
        *self.open.write().unwrap_or_else(|e| e.into_inner()) = slot;
    }

    /// Step 1 of [`Store::append`]: the group as one atomic sled batch, in sled's memory only.
    ///
    /// The three steps are public so that tests can fail each in turn
    /// (`ledger-core/tests/faults.rs`); a ledger calls [`Store::append`], which runs all three.
    pub fn write_group(&self, group: Append<'_>) -> Result<(), StoreError> {
        let handle = self.handle()?;
        let mut write = sled::Batch::default();
        for (i, leaf) in group.leaves.iter().enumerate() {
            write.insert(&leaf_key(group.first_seq + i as u64), leaf.as_slice());
        }
        let mut blocks = BTreeMap::new();
        fill_blocks(&handle.db, &mut blocks, group.nodes.iter().copied())?;
        for (key, block) in blocks {
            write.insert(&key, block);
        }
        for change in group.state {
            let key = state_key(change.table, &change.key);
            match &change.value {
                Some(value) => write.insert(key, value.as_slice()),
                None => write.remove(key),
            }
        }
        if let Some(meta) = group.meta {
            write.insert(META_KEY, meta_bytes(meta)?);
        }
        handle.db.apply_batch(write)?;
        Ok(())
    }

    /// Step 2 of [`Store::append`]: sled's `flush()`, which writes its log to the data file and
    /// ends in `sync_file_range` (a killed process then loses nothing; a power cut still may).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.handle()?.db.flush()?;
        Ok(())
    }

    /// Step 3 of [`Store::append`]: `fdatasync` of the data file (a power cut then loses
    /// nothing).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.handle()?.data_file.sync_data()?;
        Ok(())
    }

    fn make_durable(&self) -> Result<(), StoreError> {
        self.handle()?.make_durable()
    }
}

impl Store for SledStore {
    fn reopen(&self) -> Result<(), StoreError> {
        // Take the database out of reach of new reads, then wait until the reads in progress
        // let go of it: two openings of one folder must never coexist.
        let previous = std::mem::replace(
            &mut *self.open.write().unwrap_or_else(|e| e.into_inner()),
            Slot::Reopening,
        );
        if let Slot::Open(old) = previous {
            let deadline = Instant::now() + REOPEN_WAIT;
            while Arc::strong_count(&old) > 1 {
                if Instant::now() >= deadline {
                    self.set_slot(Slot::Open(old));
                    return Err(StoreError::Io(
                        "reads in progress kept the store open; it is reopened at the next attempt"
                            .to_owned(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            // Dropping the last handle closes sled. A database that recorded an error writes
            // nothing more; one that did not (a failure outside sled) writes what its cache
            // holds, which the reopened store then shows and the ledger checks like anything
            // else it reads back.
            drop(old);
        }
        let opened = match SledHandle::open(&self.path) {
            // No room to open: give the reserve up, so that reads go on.
            Err(StoreError::Full(_)) if self.release_reserve()? => SledHandle::open(&self.path),
            other => other,
        };
        match opened {
            Ok(fresh) => {
                self.set_slot(Slot::Open(Arc::new(fresh)));
                Ok(())
            }
            Err(error) => {
                self.set_slot(Slot::Closed(error.clone()));
                Err(error)
            }
        }
    }

    fn writable(&self) -> Result<(), StoreError> {
        self.ensure_reserve()
    }

    fn meta(&self) -> Result<Option<Meta>, StoreError> {
        self.handle()?
            .db
            .get(META_KEY)?
            .map(|v| meta_from(&v))
            .transpose()
    }

    fn append(&self, group: Append<'_>) -> Result<(), StoreError> {
        self.ensure_reserve()?;
        self.write_group(group)?;
        self.make_durable()
    }

    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        self.ensure_reserve()?;
        self.handle()?.db.insert(CHECKPOINT_KEY, note.as_bytes())?;
        self.make_durable()?;
        write_atomically(&self.path, WITNESS_FILE, note.as_bytes())
    }

    fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        self.handle()?
            .db
            .get(CHECKPOINT_KEY)?
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| StoreError::Corrupt("the checkpoint row is not UTF-8".to_owned()))
            })
            .transpose()
    }

    fn checkpoint_witness(&self) -> Result<Option<String>, StoreError> {
        match std::fs::read(self.path.join(WITNESS_FILE)) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("{WITNESS_FILE} is not UTF-8 text"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn leaf(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.handle()?.db.get(leaf_key(seq))?.map(|v| v.to_vec()))
    }

    fn scan_leaves(&self, from: u64, visit: &mut LeafVisitor<'_>) -> Result<(), StoreError> {
        let mut next = from;
        loop {
            // A chunk is copied out, so that `visit` runs without holding the database.
            let mut chunk = Vec::with_capacity(SCAN_CHUNK);
            {
                let handle = self.handle()?;
                for row in handle.db.range(leaf_key(next)..=leaf_key(u64::MAX)) {
                    let (key, value) = row?;
                    let seq: [u8; 8] = key[1..]
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("a leaf key is malformed".to_owned()))?;
                    chunk.push((u64::from_be_bytes(seq), value));
                    if chunk.len() == SCAN_CHUNK {
                        break;
                    }
                }
            }
            let full = chunk.len() == SCAN_CHUNK;
            for (seq, leaf) in chunk {
                if !visit(seq, &leaf)? {
                    return Ok(());
                }
                next = seq.saturating_add(1);
            }
            if !full || next == u64::MAX {
                return Ok(());
            }
        }
    }

    fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        let (key, slot) = node_place(id);
        match self.handle()?.db.get(key)? {
            Some(block) => block_node(&block, slot),
            None => Ok(None),
        }
    }

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        let handle = self.handle()?;
        // A proof's twenty-odd nodes sit in a handful of blocks: read each block once.
        let mut blocks: Vec<([u8; 10], Option<sled::IVec>)> = Vec::new();
        ids.iter()
            .map(|&id| {
                let (key, slot) = node_place(id);
                let held = match blocks.iter().position(|(held, _)| *held == key) {
                    Some(at) => at,
                    None => {
                        blocks.push((key, handle.db.get(key)?));
                        blocks.len() - 1
                    }
                };
                match &blocks[held].1 {
                    Some(block) => block_node(block, slot),
                    None => Ok(None),
                }
            })
            .collect()
    }

    fn node_run(&self, level: u8, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let end = first.saturating_add(count);
        let mut hashes = Vec::new();
        let handle = self.handle()?;
        // Consecutive nodes of a level share a block: read each block once.
        let mut block: Option<([u8; 10], sled::IVec)> = None;
        for index in first..end {
            let (key, slot) = node_place(NodeId { level, index });
            if block.as_ref().is_none_or(|(held, _)| *held != key) {
                match handle.db.get(key)? {
                    Some(bytes) => block = Some((key, bytes)),
                    None => break,
                }
            }
            let Some((_, bytes)) = &block else { break };
            match block_node(bytes, slot)? {
                Some(hash) => hashes.push(hash),
                None => break,
            }
        }
        Ok(hashes)
    }

    fn scan_state(
        &self,
        table: Option<&str>,
        range: RowRange<'_>,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError> {
        let Some((prefix, low, high)) = state_bounds(table, range) else {
            return Ok(());
        };
        let handle = self.handle()?;
        let rows = handle.db.range::<Vec<u8>, _>((low, high));
        let rows: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if range.reverse {
                Box::new(rows.rev())
            } else {
                Box::new(rows)
            };
        for row in rows {
            let (key, value) = row?;
            if !key.starts_with(&prefix) {
                break;
            }
            let (table, key) = split_state_key(&key)?;
            if !visit(table, key, &value)? {
                break;
            }
        }
        Ok(())
    }

    fn state_row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .handle()?
            .db
            .get(state_key(table, key))?
            .map(|v| v.to_vec()))
    }
}

/// Makes `dir/name` a file of `bytes` filler bytes, written (not sparse, and not zeros, which a
/// compressing file system would store in no space), and put in place by a rename; nothing is
/// left behind if the disk has no room for it. `written` bytes are written first and the file
/// cut to `bytes`: that proves the disk had room for `written`. It is not synced: file systems
/// count the space of a write when it is made, and a reserve cut short by a crash is made again
/// at the next open.
fn write_filler(dir: &Path, name: &str, written: u64, bytes: u64) -> Result<(), StoreError> {
    use std::io::Write as _;
    let temporary = dir.join(format!("{name}.tmp"));
    let written = (|| -> std::io::Result<()> {
        let mut file = File::create(&temporary)?;
        let mut chunk = vec![0u8; 1 << 20];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for byte in &mut chunk {
            // xorshift64: bytes that do not compress.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state.to_le_bytes()[0];
        }
        let mut left = written.max(bytes);
        while left > 0 {
            let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.set_len(bytes)?;
        std::fs::rename(&temporary, dir.join(name))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    Ok(written?)
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old or the new file, never a mix:
/// write a temporary file, sync it, rename it over, sync the folder.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write as _;
    let temporary = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(name))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

/// A store in memory: for tests, examples and ledgers that need not outlive the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    meta: Option<Meta>,
    leaves: BTreeMap<u64, Vec<u8>>,
    nodes: HashMap<NodeId, Hash>,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    witness: Option<String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Io("the memory store's lock is poisoned".to_owned()))
    }

    /// Overwrites one leaf's bytes, as a disk fault would (for tests of tamper detection).
    pub fn tamper_leaf(&self, seq: u64, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.lock()?.leaves.insert(seq, bytes);
        Ok(())
    }
}

impl Store for MemoryStore {
    fn meta(&self) -> Result<Option<Meta>, StoreError> {
        Ok(self.lock()?.meta.clone())
    }

    fn append(&self, group: Append<'_>) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        for (i, leaf) in group.leaves.iter().enumerate() {
            inner
                .leaves
                .insert(group.first_seq + i as u64, leaf.clone());
        }
        inner.nodes.extend(group.nodes.iter().copied());
        for change in group.state {
            let key = state_key(change.table, &change.key);
            match &change.value {
                Some(value) => inner.state.insert(key, value.clone()),
                None => inner.state.remove(&key),
            };
        }
        if let Some(meta) = group.meta {
            inner.meta = Some(meta.clone());
        }
        Ok(())
    }

    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        self.lock()?.witness = Some(note.to_owned());
        Ok(())
    }

    fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        Ok(self.lock()?.witness.clone())
    }

    fn checkpoint_witness(&self) -> Result<Option<String>, StoreError> {
        Ok(self.lock()?.witness.clone())
    }

    fn leaf(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock()?.leaves.get(&seq).cloned())
    }

    fn scan_leaves(&self, from: u64, visit: &mut LeafVisitor<'_>) -> Result<(), StoreError> {
        let mut next = from;
        loop {
            // Copy one leaf at a time so that `visit` may run without the lock.
            let row = self
                .lock()?
                .leaves
                .range(next..)
                .next()
                .map(|(s, l)| (*s, l.clone()));
            let Some((seq, leaf)) = row else {
                return Ok(());
            };
            if !visit(seq, &leaf)? {
                return Ok(());
            }
            next = seq + 1;
        }
    }

    fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        Ok(self.lock()?.nodes.get(&id).copied())
    }

    fn scan_state(
        &self,
        table: Option<&str>,
        range: RowRange<'_>,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError> {
        use std::ops::Bound;
        // Rows are copied a few at a time, so that `visit` runs without the lock (it may read
        // the store) and a page costs O(page), not O(table).
        const CHUNK: usize = 64;
        let Some((prefix, mut low, mut high)) = state_bounds(table, range) else {
            return Ok(());
        };
        loop {
            let chunk: Vec<(Vec<u8>, Vec<u8>)> = {
                let inner = self.lock()?;
                let rows = inner.state.range::<Vec<u8>, _>((low.clone(), high.clone()));
                let copy = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
                if range.reverse {
                    rows.rev().take(CHUNK).map(copy).collect()
                } else {
                    rows.take(CHUNK).map(copy).collect()
                }
            };
            let Some((last, _)) = chunk.last() else {
                return Ok(());
            };
            if range.reverse {
                high = Bound::Excluded(last.clone());
            } else {
                low = Bound::Excluded(last.clone());
            }
            for (key, value) in chunk {
                if !key.starts_with(&prefix) {
                    return Ok(());
                }
                let (table, key) = split_state_key(&key)?;
                if !visit(table, key, &value)? {
                    return Ok(());
                }
            }
        }
    }

    fn state_row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock()?.state.get(&state_key(table, key)).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, CompactTree, MemoryNodes};

    /// Appends `sizes` groups of leaves to `store` and to an in-memory tree; returns every node
    /// completed, and the tree.
    fn grow(store: &SledStore, sizes: &[u64]) -> (Vec<(NodeId, Hash)>, CompactTree) {
        let mut tree = CompactTree::new();
        let mut all = Vec::new();
        for &n in sizes {
            let first_seq = tree.size();
            let leaves: Vec<Vec<u8>> = (first_seq..first_seq + n)
                .map(|i| i.to_be_bytes().to_vec())
                .collect();
            let mut nodes = Vec::new();
            for leaf in &leaves {
                nodes.extend(tree.append(merkle::leaf_hash(leaf)).unwrap());
            }
            store
                .append(Append {
                    first_seq,
                    leaves: &leaves,
                    nodes: &nodes,
                    state: &[],
                    meta: None,
                })
                .unwrap();
            all.extend(nodes);
        }
        (all, tree)
    }

    /// Node blocks give back every node written, whatever the groups' sizes (a group may fill a
    /// block in part, finish one another group began, or span several), and no node that was
    /// never written; runs of a level stop at the first missing node; and the roots agree.
    #[test]
    fn node_blocks_give_back_every_node_written_in_groups_of_any_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::with_reserve(dir.path(), 0).unwrap();
        let sizes = [1, 1, 3, 16, 5, 31, 64, 2, 17, 100, 256, 7, 300, 1];
        let (nodes, tree) = grow(&store, &sizes);
        let mut memory = MemoryNodes::new();
        for &(id, hash) in &nodes {
            assert_eq!(store.node(id).unwrap(), Some(hash), "{id:?}");
            memory.insert(id, hash);
        }
        let size = tree.size();
        for level in 0..12u8 {
            let stored = (size >> level) + 2;
            for index in 0..stored {
                let id = NodeId { level, index };
                let expected = memory.node(id).ok();
                assert_eq!(store.node(id).unwrap(), expected, "{id:?}");
            }
            for (first, count) in [(0, stored), (3, 40), (15, 2), (size >> level, 5)] {
                let expected: Vec<Hash> = (first..first + count)
                    .map_while(|index| memory.node(NodeId { level, index }).ok())
                    .collect();
                assert_eq!(
                    store.node_run(level, first, count).unwrap(),
                    expected,
                    "level {level} from {first}"
                );
            }
        }
        // Many nodes at once, each block read once: the same answers, in the order asked.
        let ids: Vec<NodeId> = (0..12u8)
            .flat_map(|level| (0..(size >> level) + 2).map(move |index| NodeId { level, index }))
            .rev()
            .collect();
        let one_by_one: Vec<_> = ids.iter().map(|&id| store.node(id).unwrap()).collect();
        assert_eq!(store.nodes(&ids).unwrap(), one_by_one);
        for seq in [0, 17, size / 2, size - 1] {
            let plan = merkle::inclusion_plan(seq, size).unwrap();
            let ids: Vec<NodeId> = plan.node_ids().chain([NodeId::leaf(seq)]).collect();
            let expected: Vec<_> = ids.iter().map(|&id| memory.node(id).ok()).collect();
            assert_eq!(store.nodes(&ids).unwrap(), expected, "proof of {seq}");
        }
        assert_eq!(
            merkle::root_at(size, &StoreNodes(&store)).unwrap(),
            tree.root()
        );
    }

    /// A store written before node blocks kept a row per node: opening it converts them, and
    /// every node reads back the same, also after a conversion cut short.
    #[test]
    fn node_rows_of_an_older_store_become_blocks_when_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, tree) = {
            let store = SledStore::with_reserve(dir.path(), 0).unwrap();
            grow(&store, &[40, 200, 3])
        };
        // Rewrite the store as an older version left it: a row per node, no blocks; and, as an
        // interrupted conversion leaves it, some of the nodes already in blocks.
        {
            let handle = SledHandle::open(dir.path()).unwrap();
            for row in handle.db.scan_prefix([BLOCK]) {
                handle.db.remove(row.unwrap().0).unwrap();
            }
            let (converted, rows) = nodes.split_at(nodes.len() / 3);
            let mut blocks = BTreeMap::new();
            fill_blocks(&handle.db, &mut blocks, converted.iter().copied()).unwrap();
            for (key, block) in blocks {
                handle.db.insert(key, block).unwrap();
            }
            for (id, hash) in rows {
                let mut key = vec![NODE, id.level];
                key.extend_from_slice(&id.index.to_be_bytes());
                handle.db.insert(key, hash.as_slice()).unwrap();
            }
            handle.db.flush().unwrap();
        }
        let store = SledStore::with_reserve(dir.path(), 0).unwrap();
        for &(id, hash) in &nodes {
            assert_eq!(store.node(id).unwrap(), Some(hash), "{id:?}");
        }
        assert_eq!(store.handle().unwrap().db.scan_prefix([NODE]).count(), 0);
        assert_eq!(
            merkle::root_at(tree.size(), &StoreNodes(&store)).unwrap(),
            tree.root()
        );
    }

    /// A full disk, a quota and a file-size limit are all "no room"; other I/O errors are not.
    #[cfg(target_os = "linux")]
    #[test]
    fn no_room_is_told_apart_from_other_io_errors() {
        let os = std::io::Error::from_raw_os_error;
        // ENOSPC, EDQUOT, EFBIG on Linux.
        for code in [28, 122, 27] {
            assert!(
                matches!(StoreError::from(os(code)), StoreError::Full(_)),
                "errno {code}"
            );
            let through_sled = sled::Error::Io(os(code)).clone();
            assert!(
                matches!(StoreError::from(through_sled), StoreError::Full(_)),
                "errno {code} through sled"
            );
        }
        // EIO, EPIPE.
        for code in [5, 32] {
            assert!(
                matches!(StoreError::from(os(code)), StoreError::Io(_)),
                "errno {code}"
            );
        }
    }

    /// The core recognises an unavailable store by this text once a proof's node source has
    /// turned the error into a string (`LedgerError::kind`): keep the two in step.
    #[test]
    fn an_unavailable_store_reads_as_the_core_expects() {
        let text = StoreError::Unavailable("db error".to_owned()).to_string();
        assert!(text.starts_with("the store cannot be reached"), "{text}");
    }
}
