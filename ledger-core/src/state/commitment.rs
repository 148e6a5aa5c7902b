//! The market's state as a Merkle tree, so that a checkpoint can commit to it and a bank can check
//! one row — a pledge, a balance, a batch, the price in force — from a proof.
//!
//! ```text
//!  row      = JCS([table, key, value])           the committed rows of docs/ledger-format.md §9
//!  sort key = JCS([table, key])                  rows in byte order of their sort keys
//!  root     = RFC 9162 Merkle root over the rows (leaf hash SHA-256(0x00 || row))
//! ```
//!
//! The committed tables are `batches`, `balances` and `pledges`, as the state keeps them, and
//! `prices_in_force`: for each basis, the price in force at the time of the ledger's last entry.
//! A row's absence is proved by its two neighbours in sort-key order (or one, at either end).
//!
//! The cache keeps the rows' sort keys and every perfect subtree of the last commitment's tree.
//! A commitment re-encodes only the rows written since the last one, and rehashes only the
//! subtrees that cover them: O(changed rows × log rows) when rows were only updated. A new or
//! removed row moves every row after it by one position, so every subtree to its right is
//! rehashed: O(rows after it) node hashes, which the format's positional tree makes unavoidable.
//! The first commitment of a state encodes and hashes every row. Rows written since the last
//! settle (a commitment read in the middle of a group) are re-read at every commitment until they
//! are settled, so that a rollback of them is followed too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use serde_json::Value;

use crate::canonical;
use crate::ids::Timestamp;
use crate::merkle::{self, Hash, NodeId, NodeSource, ProofError};
use crate::store::StoreError;

use super::State;

/// The tables whose rows are committed, as the state names them, and the derived table of the
/// prices in force.
pub const COMMITTED_TABLES: &[&str] = &["batches", "balances", "pledges"];

/// The derived table of prices in force, one row per basis.
pub const PRICES_IN_FORCE: &str = "prices_in_force";

/// One committed row: its sort key and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRow {
    /// `JCS([table, key])`: rows are ordered by these bytes.
    pub sort_key: Vec<u8>,
    /// `JCS([table, key, value])`: the leaf of the state tree.
    pub bytes: Vec<u8>,
}

impl StateRow {
    /// The row of `table` with `key` and `value`.
    pub fn new<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        table: &str,
        key: &K,
        value: &V,
    ) -> Result<Self, StoreError> {
        let encode = |e: canonical::CanonicalError| StoreError::Encode(e.to_string());
        let key = serde_json::to_value(key).map_err(|e| StoreError::Encode(e.to_string()))?;
        let value = serde_json::to_value(value).map_err(|e| StoreError::Encode(e.to_string()))?;
        Ok(Self {
            sort_key: canonical::canonicalize(&Value::Array(vec![
                Value::String(table.to_owned()),
                key.clone(),
            ]))
            .map_err(encode)?,
            bytes: canonical::canonicalize(&Value::Array(vec![
                Value::String(table.to_owned()),
                key,
                value,
            ]))
            .map_err(encode)?,
        })
    }

    /// The sort key of a row of `table` with `key`, for a proof of presence or absence.
    pub fn sort_key_of<K: Serialize + ?Sized>(table: &str, key: &K) -> Result<Vec<u8>, StoreError> {
        let key = serde_json::to_value(key).map_err(|e| StoreError::Encode(e.to_string()))?;
        canonical::canonicalize(&Value::Array(vec![Value::String(table.to_owned()), key]))
            .map_err(|e| StoreError::Encode(e.to_string()))
    }

    /// Its leaf hash in the state tree.
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.bytes)
    }
}

/// What a checkpoint says of the state: how many rows, and their root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateCommitment {
    /// Rows in the state tree.
    pub rows: u64,
    /// The RFC 9162 root over them.
    pub root: Hash,
}

/// The word that starts a checkpoint's state line.
pub const STATE_LINE: &str = "state/v1";

impl StateCommitment {
    /// The checkpoint extension line that carries the commitment: `state/v1 <rows> <root in
    /// standard base64>`.
    pub fn line(&self) -> String {
        use base64::Engine as _;
        format!(
            "{STATE_LINE} {} {}",
            self.rows,
            base64::engine::general_purpose::STANDARD.encode(self.root)
        )
    }

    /// The commitment a checkpoint carries in its state line, if it has one.
    ///
    /// # Errors
    ///
    /// [`RowProofError::Malformed`] for a state line that is not well formed.
    pub fn from_checkpoint(
        checkpoint: &crate::checkpoint::Checkpoint,
    ) -> Result<Option<Self>, RowProofError> {
        use base64::Engine as _;
        let Some(line) = checkpoint
            .extensions
            .iter()
            .find(|l| l.split(' ').next() == Some(STATE_LINE))
        else {
            return Ok(None);
        };
        let malformed =
            || RowProofError::Malformed(format!("the state line \"{line}\" is not well formed"));
        let mut parts = line.split(' ').skip(1);
        let (Some(rows), Some(root), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed());
        };
        let rows: u64 = rows.parse().map_err(|_| malformed())?;
        let root: Hash = base64::engine::general_purpose::STANDARD
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(malformed)?;
        let commitment = Self { rows, root };
        if commitment.line() != *line {
            return Err(malformed());
        }
        Ok(Some(commitment))
    }
}

/// A committed row with its inclusion proof in the state tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvedRow {
    /// The row's bytes, `JCS([table, key, value])`, as text.
    pub row: String,
    /// Its position in sort-key order.
    pub index: u64,
    /// Hex hashes of its RFC 9162 inclusion proof.
    pub proof: Vec<String>,
}

/// Proof that a row is in the state, or that no row has its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RowProof {
    /// The row, proved.
    Present(ProvedRow),
    /// The rows just before and just after where the key would be (none at either end).
    Absent {
        /// The row with the greatest sort key below the key's.
        before: Option<ProvedRow>,
        /// The row with the least sort key above the key's.
        after: Option<ProvedRow>,
    },
}

/// A row to set in the state tree: its sort key, and its new leaf hash or `None` to remove it.
type RowChange = (Vec<u8>, Option<Hash>);

/// The committed rows' sort keys, in order, and every perfect subtree of their RFC 9162 tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct LeafTree {
    /// The rows' sort keys, in byte order.
    keys: Vec<Vec<u8>>,
    /// `levels[l][i]` is the hash of the perfect subtree over the leaves `[i·2^l, (i+1)·2^l)`:
    /// `levels[0]` holds the leaf hashes, and level `l` holds `leaves / 2^l` nodes.
    levels: Vec<Vec<Hash>>,
}

impl NodeSource for LeafTree {
    fn node(&self, id: NodeId) -> Result<Hash, ProofError> {
        let index = usize::try_from(id.index).map_err(|_| ProofError::MissingNode(id))?;
        self.levels
            .get(usize::from(id.level))
            .and_then(|level| level.get(index))
            .copied()
            .ok_or(ProofError::MissingNode(id))
    }
}

impl LeafTree {
    /// The tree of these rows (sort key and leaf hash), which are in sort-key order.
    fn new(rows: Vec<(Vec<u8>, Hash)>) -> Self {
        let (keys, leaves): (Vec<Vec<u8>>, Vec<Hash>) = rows.into_iter().unzip();
        assert!(
            keys.windows(2).all(|pair| pair[0] < pair[1]),
            "the state tree's rows are in strict sort-key order"
        );
        let mut tree = Self {
            keys,
            levels: vec![leaves],
        };
        tree.rehash(0, Vec::new());
        tree
    }

    fn size(&self) -> u64 {
        self.keys.len() as u64
    }

    fn position(&self, sort_key: &[u8]) -> Result<usize, usize> {
        self.keys.binary_search_by(|k| k.as_slice().cmp(sort_key))
    }

    fn root(&self) -> Result<Hash, ProofError> {
        merkle::root_at(self.size(), self)
    }

    /// Sets the rows named by `changes` (sort key → new leaf hash, or `None` to remove it), in
    /// strict sort-key order, and rehashes the subtrees that changed.
    fn apply(&mut self, changes: Vec<RowChange>) {
        assert!(
            changes.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "changes to the state tree are in strict sort-key order"
        );
        // A row that comes or goes at position `first` moves every row after it; rows before it
        // are changed where they are.
        let mut first = None;
        let mut updated = Vec::new();
        for (key, hash) in &changes {
            match (self.position(key), hash) {
                (Ok(at), None) | (Err(at), Some(_)) => {
                    first = Some(at);
                    break;
                }
                (Ok(at), Some(hash)) if self.levels[0][at] != *hash => {
                    self.levels[0][at] = *hash;
                    updated.push(at);
                }
                _ => {}
            }
        }
        let first = match first {
            Some(first) => {
                self.splice(first, changes);
                first
            }
            None => self.keys.len(),
        };
        self.rehash(first, updated);
    }

    /// Merges `changes` into the rows from position `first` on (the changes of rows before it
    /// are already made).
    fn splice(&mut self, first: usize, changes: Vec<RowChange>) {
        let old_keys = self.keys.split_off(first);
        let old_leaves = self.levels[0].split_off(first);
        let mut old = old_keys.into_iter().zip(old_leaves).peekable();
        let last = self.keys.last().cloned();
        let mut changes = changes
            .into_iter()
            .skip_while(|(key, _)| last.as_ref().is_some_and(|last| key <= last))
            .peekable();
        loop {
            let change_first = match (old.peek(), changes.peek()) {
                (None, None) => break,
                (Some((old_key, _)), Some((key, _))) => key <= old_key,
                (old_row, _) => old_row.is_none(),
            };
            let (key, hash) = if change_first {
                let Some((key, hash)) = changes.next() else {
                    break;
                };
                // A change replaces the row with its key, if there is one.
                if old.peek().is_some_and(|(old_key, _)| *old_key == key) {
                    old.next();
                }
                match hash {
                    Some(hash) => (key, hash),
                    None => continue,
                }
            } else {
                let Some(row) = old.next() else {
                    break;
                };
                row
            };
            self.keys.push(key);
            self.levels[0].push(hash);
        }
    }

    /// Recomputes the interior nodes over the leaves from position `first` on, and over the
    /// leaves `updated` (in order, all before `first`); the others are as they were.
    fn rehash(&mut self, first: usize, updated: Vec<usize>) {
        let mut first = first;
        let mut updated = updated;
        let mut level = 0;
        while self.levels[level].len() >= 2 {
            let parents = self.levels[level].len() / 2;
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::with_capacity(parents));
            }
            let (below, above) = self.levels.split_at_mut(level + 1);
            let (children, nodes) = (&below[level], &mut above[0]);
            // A parent is unchanged when both its children are.
            first = (first / 2).min(parents).min(nodes.len());
            nodes.truncate(first);
            for at in &mut updated {
                *at /= 2;
            }
            updated.dedup();
            updated.retain(|&at| at < first);
            for &at in &updated {
                nodes[at] = merkle::node_hash(&children[2 * at], &children[2 * at + 1]);
            }
            nodes.extend(
                (first..parents)
                    .map(|at| merkle::node_hash(&children[2 * at], &children[2 * at + 1])),
            );
            level += 1;
        }
        self.levels.truncate(level + 1);
        assert!(
            self.levels
                .iter()
                .enumerate()
                .all(|(l, nodes)| nodes.len() == self.keys.len() >> l)
                && self.levels[0].len() == self.keys.len(),
            "every level of the state tree holds the perfect subtrees of its size"
        );
    }

    /// Heap bytes held: the sort keys and the hashes.
    fn heap_bytes(&self) -> usize {
        let keys: usize = self.keys.iter().map(Vec::capacity).sum();
        let hashes: usize = self.levels.iter().map(Vec::capacity).sum();
        keys + self.keys.capacity() * std::mem::size_of::<Vec<u8>>()
            + hashes * std::mem::size_of::<Hash>()
    }
}

/// The state tree of the last commitment, and the rows written since.
#[derive(Clone, Debug, Default)]
pub(super) struct CommitmentCache {
    /// The tree over every committed row as of the last commitment (`None` until the first: a
    /// state loaded from a store starts without it).
    tree: Option<LeafTree>,
    /// The sort keys of the prices in force in that tree (they depend on the time committed at).
    price_keys: Vec<Vec<u8>>,
    /// Stored rows written since, and those not yet settled then.
    dirty: BTreeSet<(&'static str, Vec<u8>)>,
}

/// A [`CommitmentCache`] behind a lock, so that a state read under a shared borrow can refresh
/// it; states compare equal whatever their caches hold.
#[derive(Debug, Default)]
pub(super) struct SharedCache(pub(super) Mutex<CommitmentCache>);

impl Clone for SharedCache {
    fn clone(&self) -> Self {
        SharedCache(Mutex::new(self.lock().clone()))
    }
}

impl PartialEq for SharedCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl SharedCache {
    /// The cache, locked. A panic while it was locked may have left it half updated: it is then
    /// emptied, and the next commitment starts from every row.
    fn lock(&self) -> MutexGuard<'_, CommitmentCache> {
        self.0.lock().unwrap_or_else(|poisoned| {
            let mut cache = poisoned.into_inner();
            *cache = CommitmentCache::default();
            self.0.clear_poison();
            cache
        })
    }

    /// Whether the cache holds a tree (until the first commitment, nothing is tracked).
    pub(super) fn is_filled(&self) -> bool {
        self.lock().tree.is_some()
    }

    /// Notes that these rows (table, JSON key) were written.
    fn mark(&self, keys: BTreeSet<(&'static str, Vec<u8>)>) {
        let mut cache = self.lock();
        if cache.tree.is_some() {
            cache.dirty.extend(keys);
        }
    }
}

impl State {
    /// The committed row of `table` with the JSON key `key`, if the table holds one.
    fn committed_row(&self, table: &str, key: &[u8]) -> Result<Option<StateRow>, StoreError> {
        fn row<K, V>(
            table: &str,
            key: &[u8],
            get: impl FnOnce(&K) -> Option<V>,
        ) -> Result<Option<StateRow>, StoreError>
        where
            K: serde::de::DeserializeOwned + Serialize,
            V: Serialize,
        {
            let typed: K = super::table::decode(table, key)?;
            get(&typed)
                .map(|value| StateRow::new(table, &typed, &value))
                .transpose()
        }
        match table {
            "batches" => row(table, key, |k| self.batches.get(k).cloned()),
            "balances" => row(table, key, |k| self.balances.get(k).copied()),
            "pledges" => row(table, key, |k| self.pledges.get(k).cloned()),
            _ => Err(StoreError::Encode(format!(
                "{table} is not a committed table"
            ))),
        }
    }

    /// Every row of the committed tables, unordered.
    fn stored_rows(&self) -> Result<Vec<StateRow>, StoreError> {
        let mut rows = Vec::new();
        for (key, value) in &self.batches.rows {
            rows.push(StateRow::new("batches", key, value)?);
        }
        for (key, value) in &self.balances.rows {
            rows.push(StateRow::new("balances", key, value)?);
        }
        for (key, value) in &self.pledges.rows {
            rows.push(StateRow::new("pledges", key, value)?);
        }
        Ok(rows)
    }

    /// The rows of the prices in force at `at`, one per basis.
    fn price_rows(&self, at: &Timestamp) -> Result<Vec<StateRow>, StoreError> {
        self.prices_in_force(at)
            .into_iter()
            .map(|price| StateRow::new(PRICES_IN_FORCE, &price.basis, price))
            .collect()
    }

    /// Every committed row at `at` (the time of the ledger's last entry), in sort-key order.
    pub fn state_rows(&self, at: &Timestamp) -> Result<Vec<StateRow>, StoreError> {
        let mut rows = self.stored_rows()?;
        rows.extend(self.price_rows(at)?);
        rows.sort_by(|a, b| a.sort_key.cmp(&b.sort_key));
        Ok(rows)
    }

    /// Brings the cached tree up to the committed rows at `at`, and hands it to `read`: the
    /// rows written since the last commitment are re-encoded, the prices in force at `at` put in
    /// place of those of the last commitment, and the subtrees over them rehashed. The first
    /// commitment encodes every row.
    fn with_state_tree<T>(
        &self,
        at: &Timestamp,
        read: impl FnOnce(&LeafTree) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut cache = self.commitment.lock();
        let cache = &mut *cache;
        let prices = self.price_rows(at)?;
        // Rows written since the last settle are read as they are now, and stay marked after
        // this commitment: a rollback may still put back what they replaced.
        let pending = self.pending_committed_keys();
        let Some(tree) = cache.tree.as_mut() else {
            let mut rows: Vec<(Vec<u8>, Hash)> = self
                .stored_rows()?
                .into_iter()
                .chain(prices.iter().cloned())
                .map(|row| {
                    let hash = row.leaf_hash();
                    (row.sort_key, hash)
                })
                .collect();
            // Each table is read in the order of its typed keys, which is nearly always the
            // order of the sort keys too: a stable sort merges those runs in about linear time.
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            cache.dirty = pending;
            cache.price_keys = prices.into_iter().map(|row| row.sort_key).collect();
            return read(cache.tree.insert(LeafTree::new(rows)));
        };
        // Nothing is forgotten before every change is encoded: after an error, the next
        // commitment tries again.
        let changes = self.changes_since(
            cache.dirty.iter().chain(&pending),
            &cache.price_keys,
            &prices,
        )?;
        cache.dirty = pending;
        cache.price_keys = prices.into_iter().map(|row| row.sort_key).collect();
        tree.apply(changes);
        read(tree)
    }

    /// The rows to set in the tree of the last commitment (sort key → leaf hash, or `None` to
    /// remove one), in sort-key order: the stored rows written since, and the prices in force
    /// now in place of those then.
    fn changes_since<'a>(
        &self,
        dirty: impl Iterator<Item = &'a (&'static str, Vec<u8>)>,
        price_keys: &[Vec<u8>],
        prices: &[StateRow],
    ) -> Result<Vec<RowChange>, StoreError> {
        let mut changes: BTreeMap<Vec<u8>, Option<Hash>> = BTreeMap::new();
        for (table, key) in dirty {
            let key_value: Value = super::table::decode(table, key)?;
            let sort_key = StateRow::sort_key_of(table, &key_value)?;
            let hash = self.committed_row(table, key)?.map(|row| row.leaf_hash());
            changes.insert(sort_key, hash);
        }
        for key in price_keys {
            changes.insert(key.clone(), None);
        }
        for row in prices {
            changes.insert(row.sort_key.clone(), Some(row.leaf_hash()));
        }
        Ok(changes.into_iter().collect())
    }

    /// The commitment to the market's state at `at` (the time of the ledger's last entry, which
    /// decides the prices in force).
    pub fn state_commitment(&self, at: &Timestamp) -> Result<StateCommitment, StoreError> {
        self.with_state_tree(at, |tree| {
            Ok(StateCommitment {
                rows: tree.size(),
                root: tree.root().map_err(|e| StoreError::Encode(e.to_string()))?,
            })
        })
    }

    /// Heap bytes held by the cache of the state commitment: the committed rows' sort keys and
    /// the hashes of their tree's perfect subtrees (none before the first commitment).
    pub fn commitment_cache_bytes(&self) -> usize {
        self.commitment
            .lock()
            .tree
            .as_ref()
            .map_or(0, LeafTree::heap_bytes)
    }

    /// The committed row whose sort key is `sort_key`, at `at`.
    fn row_at(&self, sort_key: &[u8], at: &Timestamp) -> Result<StateRow, StoreError> {
        let missing = || StoreError::Corrupt("a cached state leaf has no row".to_owned());
        let (table, key): (String, Value) = super::table::decode("state", sort_key)?;
        if table == PRICES_IN_FORCE {
            return self
                .price_rows(at)?
                .into_iter()
                .find(|row| row.sort_key == sort_key)
                .ok_or_else(missing);
        }
        let table = COMMITTED_TABLES
            .iter()
            .find(|t| **t == table)
            .ok_or_else(missing)?;
        let key = serde_json::to_vec(&key).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.committed_row(table, &key)?.ok_or_else(missing)
    }

    /// The commitment at `at`, and a proof for each of the rows named by `sort_keys`: of the
    /// row, or of its absence.
    pub fn prove_state_rows(
        &self,
        at: &Timestamp,
        sort_keys: &[Vec<u8>],
    ) -> Result<(StateCommitment, Vec<RowProof>), StoreError> {
        self.with_state_tree(at, |tree| {
            let encode = |e: ProofError| StoreError::Encode(e.to_string());
            let size = tree.size();
            let proved = |index: usize| -> Result<ProvedRow, StoreError> {
                let row = self.row_at(&tree.keys[index], at)?;
                let index = index as u64;
                let proof = merkle::inclusion_proof(index, size, tree).map_err(encode)?;
                Ok(ProvedRow {
                    row: String::from_utf8(row.bytes)
                        .map_err(|e| StoreError::Encode(e.to_string()))?,
                    index,
                    proof: proof.iter().map(hex::encode).collect(),
                })
            };
            let proofs = sort_keys
                .iter()
                .map(|key| match tree.position(key) {
                    Ok(index) => proved(index).map(RowProof::Present),
                    Err(index) => Ok(RowProof::Absent {
                        before: index.checked_sub(1).map(&proved).transpose()?,
                        after: (index < tree.keys.len())
                            .then(|| proved(index))
                            .transpose()?,
                    }),
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok((
                StateCommitment {
                    rows: size,
                    root: tree.root().map_err(encode)?,
                },
                proofs,
            ))
        })
    }

    /// The committed rows (table, JSON key) written since the last settle.
    fn pending_committed_keys(&self) -> BTreeSet<(&'static str, Vec<u8>)> {
        fn keys<'a, K: Serialize, V>(
            table: &'static str,
            rows: &'a super::table::Table<K, V>,
        ) -> impl Iterator<Item = (&'static str, Vec<u8>)> + 'a {
            rows.undo
                .iter()
                .filter_map(move |(k, _)| serde_json::to_vec(k).ok().map(|k| (table, k)))
        }
        keys("batches", &self.batches)
            .chain(keys("balances", &self.balances))
            .chain(keys("pledges", &self.pledges))
            .collect()
    }

    /// Notes, before a settle, which committed rows were written since the last one.
    pub(super) fn mark_committed_rows(&self) {
        if !self.commitment.is_filled() {
            return;
        }
        self.commitment.mark(self.pending_committed_keys());
    }
}

/// Why a row proof does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RowProofError {
    /// The row is not text of the form `[table, key, value]`.
    #[error("a state row is not JCS of [table, key, value]: {0}")]
    Malformed(String),
    /// The row's inclusion proof does not lead to the state root.
    #[error("the state row at index {index} is not in the committed state: {reason}")]
    NotIncluded {
        /// Its claimed position.
        index: u64,
        /// Why the proof fails.
        reason: String,
    },
    /// A proof of presence for another key, or an absence proof whose neighbours do not bracket
    /// the key or are not adjacent.
    #[error("the proof is not about the row asked for: {0}")]
    WrongRow(String),
}

/// Checks one proved row against a state commitment; returns the row's table, key and value.
pub fn verify_proved_row(
    proved: &ProvedRow,
    commitment: &StateCommitment,
) -> Result<(String, Value, Value), RowProofError> {
    let not_included = |reason: String| RowProofError::NotIncluded {
        index: proved.index,
        reason,
    };
    let proof = merkle::hashes_from_hex(&proved.proof)
        .ok_or_else(|| not_included("a proof hash is not hex".to_owned()))?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(proved.row.as_bytes()),
        proved.index,
        commitment.rows,
        &proof,
        &commitment.root,
    )
    .map_err(|e| not_included(e.to_string()))?;
    let value: Value =
        serde_json::from_str(&proved.row).map_err(|e| RowProofError::Malformed(e.to_string()))?;
    let canonical =
        canonical::canonicalize(&value).map_err(|e| RowProofError::Malformed(e.to_string()))?;
    if canonical != proved.row.as_bytes() {
        return Err(RowProofError::Malformed("not in canonical form".to_owned()));
    }
    match value {
        Value::Array(mut parts) if parts.len() == 3 => {
            let value = parts.pop().unwrap_or(Value::Null);
            let key = parts.pop().unwrap_or(Value::Null);
            match parts.pop() {
                Some(Value::String(table)) => Ok((table, key, value)),
                _ => Err(RowProofError::Malformed(
                    "the table is not a string".to_owned(),
                )),
            }
        }
        _ => Err(RowProofError::Malformed(
            "a row is an array of three elements".to_owned(),
        )),
    }
}

/// Checks a proof about the row of `table` with `key` against a commitment: returns the row's
/// value if it is present, `None` if it is proved absent.
pub fn verify_row_proof(
    proof: &RowProof,
    table: &str,
    key: &Value,
    commitment: &StateCommitment,
) -> Result<Option<Value>, RowProofError> {
    let sort_key = canonical::canonicalize(&Value::Array(vec![
        Value::String(table.to_owned()),
        key.clone(),
    ]))
    .map_err(|e| RowProofError::Malformed(e.to_string()))?;
    let sort_key_of = |t: &str, k: &Value| {
        canonical::canonicalize(&Value::Array(vec![Value::String(t.to_owned()), k.clone()]))
            .map_err(|e| RowProofError::Malformed(e.to_string()))
    };
    match proof {
        RowProof::Present(proved) => {
            let (t, k, value) = verify_proved_row(proved, commitment)?;
            if sort_key_of(&t, &k)? != sort_key {
                return Err(RowProofError::WrongRow(format!(
                    "it proves the row of {t} {k}"
                )));
            }
            Ok(Some(value))
        }
        RowProof::Absent { before, after } => {
            let mut below = None;
            if let Some(row) = before {
                let (t, k, _) = verify_proved_row(row, commitment)?;
                if sort_key_of(&t, &k)? >= sort_key {
                    return Err(RowProofError::WrongRow(
                        "the row before does not sort before the key".to_owned(),
                    ));
                }
                below = Some(row.index);
            }
            let mut above = None;
            if let Some(row) = after {
                let (t, k, _) = verify_proved_row(row, commitment)?;
                if sort_key_of(&t, &k)? <= sort_key {
                    return Err(RowProofError::WrongRow(
                        "the row after does not sort after the key".to_owned(),
                    ));
                }
                above = Some(row.index);
            }
            let adjacent = match (below, above) {
                (Some(b), Some(a)) => a == b + 1,
                (None, Some(a)) => a == 0,
                (Some(b), None) => b + 1 == commitment.rows,
                (None, None) => commitment.rows == 0,
            };
            if !adjacent {
                return Err(RowProofError::WrongRow(
                    "the rows around the key are not neighbours".to_owned(),
                ));
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use serde_json::{json, Value};

    use super::{verify_row_proof, LeafTree, SharedCache, StateCommitment, StateRow};
    use crate::ids::Timestamp;
    use crate::merkle::{self, CompactTree, Hash};
    use crate::state::{Balance, State};

    /// The size and root of a tree built from the rows one by one: the oracle.
    fn from_scratch(rows: &BTreeMap<Vec<u8>, Hash>) -> (u64, Hash) {
        let mut tree = CompactTree::new();
        for hash in rows.values() {
            tree.append(*hash).expect("append");
        }
        (tree.size(), tree.root())
    }

    fn check(tree: &LeafTree, rows: &BTreeMap<Vec<u8>, Hash>) -> Result<(), TestCaseError> {
        let (size, root) = from_scratch(rows);
        prop_assert_eq!(tree.size(), size);
        prop_assert_eq!(tree.root().expect("root"), root);
        prop_assert_eq!(&tree.keys, &rows.keys().cloned().collect::<Vec<_>>());
        for (index, hash) in rows.values().enumerate() {
            let index = index as u64;
            let proof = merkle::inclusion_proof(index, size, tree).expect("proof");
            prop_assert_eq!(
                merkle::verify_inclusion(hash, index, size, &proof, &root),
                Ok(())
            );
        }
        // Built at once, the same tree.
        prop_assert_eq!(
            tree,
            &LeafTree::new(rows.iter().map(|(k, h)| (k.clone(), *h)).collect())
        );
        Ok(())
    }

    fn key(n: u16) -> Vec<u8> {
        format!("[\"balances\",[\"holder-{n:05}\",\"B\"]]").into_bytes()
    }

    fn hash(n: u16, version: u8) -> Hash {
        merkle::leaf_hash(&[&n.to_be_bytes()[..], &[version]].concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Rows updated, added and removed in rounds, as between checkpoints: the cached tree
        /// has the root, proofs and nodes of one built from every row.
        #[test]
        fn the_cached_tree_equals_one_built_from_every_row(
            initial in proptest::collection::btree_set(0u16..400, 0..200),
            rounds in proptest::collection::vec(
                proptest::collection::btree_map(0u16..400, proptest::option::of(any::<u8>()), 0..24),
                1..6,
            ),
        ) {
            let mut rows: BTreeMap<Vec<u8>, Hash> =
                initial.iter().map(|&n| (key(n), hash(n, 0))).collect();
            let mut tree = LeafTree::new(rows.iter().map(|(k, h)| (k.clone(), *h)).collect());
            check(&tree, &rows)?;
            for round in rounds {
                let changes: Vec<super::RowChange> = round
                    .iter()
                    .map(|(&n, version)| (key(n), version.map(|v| hash(n, v))))
                    .collect();
                for (k, h) in &changes {
                    match h {
                        Some(h) => rows.insert(k.clone(), *h),
                        None => rows.remove(k),
                    };
                }
                tree.apply(changes);
                check(&tree, &rows)?;
            }
        }
    }

    /// What happens to a state between and during checkpoints.
    #[derive(Clone, Debug)]
    enum Step {
        /// A balance row written: holder, batch, thousandths of a tonne available.
        Put(u8, u8, u16),
        /// A group starts.
        Savepoint,
        /// The group is refused: its writes are undone.
        Rollback,
        /// The whole pass fails to be written: every write since the last settle is undone.
        Revert,
        /// The writes are durable.
        Settle,
        /// A commitment.
        Commit,
        /// A commitment with a proof of this balance row's presence or absence.
        Prove(u8, u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0u8..12, 0u8..6, any::<u16>()).prop_map(|(h, b, v)| Step::Put(h, b, v)),
            1 => Just(Step::Savepoint),
            1 => Just(Step::Rollback),
            1 => Just(Step::Revert),
            2 => Just(Step::Settle),
            1 => Just(Step::Commit),
            1 => (0u8..13, 0u8..7).prop_map(|(h, b)| Step::Prove(h, b)),
        ]
    }

    fn balance_key(holder: u8, batch: u8) -> Value {
        json!([format!("holder-{holder:02}"), format!("B-{batch}")])
    }

    /// The commitment of a tree built from every row, one by one: the oracle.
    fn from_every_row(state: &State, at: &Timestamp) -> StateCommitment {
        let mut tree = CompactTree::new();
        for row in state.state_rows(at).expect("rows") {
            tree.append(row.leaf_hash()).expect("append");
        }
        StateCommitment {
            rows: tree.size(),
            root: tree.root(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Balances written, groups refused and rolled back, passes reverted, writes settled,
        /// commitments made between them and in the middle of a group: every commitment and
        /// proof from the cache is that of the rows as they are, and that of a state whose cache
        /// is empty.
        #[test]
        fn the_cached_commitment_follows_writes_rollbacks_and_reverts(
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let at: Timestamp = "2022-06-01T09:30:00Z".parse().expect("a time");
            let mut state = State::new();
            let mut savepoints = Vec::new();
            for step in steps {
                match step {
                    Step::Put(holder, batch, thousandths) => {
                        let key = serde_json::from_value(balance_key(holder, batch)).expect("a key");
                        let value: Balance = serde_json::from_value(json!({
                            "available": format!("{}.{:03}", thousandths / 1000, thousandths % 1000),
                            "pledged": "0.000",
                        }))
                        .expect("a balance");
                        state.balances.put(key, value);
                    }
                    Step::Savepoint => savepoints.push(state.savepoint()),
                    Step::Rollback => match savepoints.pop() {
                        Some(savepoint) => state.rollback_to(savepoint),
                        None => state.revert(),
                    },
                    Step::Revert => {
                        state.revert();
                        savepoints.clear();
                    }
                    Step::Settle => {
                        state.settle();
                        savepoints.clear();
                    }
                    Step::Commit => {
                        let expected = from_every_row(&state, &at);
                        prop_assert_eq!(state.state_commitment(&at).expect("commit"), expected);
                    }
                    Step::Prove(holder, batch) => {
                        let expected = from_every_row(&state, &at);
                        let key = balance_key(holder, batch);
                        let sort_key = StateRow::sort_key_of("balances", &key).expect("a key");
                        let (commitment, proofs) = state
                            .prove_state_rows(&at, std::slice::from_ref(&sort_key))
                            .expect("proof");
                        prop_assert_eq!(commitment, expected);
                        let held = verify_row_proof(&proofs[0], "balances", &key, &expected);
                        let in_state = state
                            .state_rows(&at)
                            .expect("rows")
                            .iter()
                            .any(|row| row.sort_key == sort_key);
                        prop_assert!(matches!(held, Ok(ref row) if row.is_some() == in_state));
                        // A state whose cache is empty proves the same, with the same hashes.
                        let mut cold = state.clone();
                        cold.commitment = SharedCache::default();
                        prop_assert_eq!(
                            cold.prove_state_rows(&at, std::slice::from_ref(&sort_key))
                                .expect("proof"),
                            (expected, proofs)
                        );
                    }
                }
            }
            let expected = from_every_row(&state, &at);
            prop_assert_eq!(state.state_commitment(&at).expect("commit"), expected);
        }
    }

    /// A commitment made while a group's writes were pending, the first to fill the cache or a
    /// later one, read those writes; the group was then refused and rolled back. The cache once
    /// forgot such rows at the commitment, and kept their refused values.
    #[test]
    fn a_commitment_in_the_middle_of_a_refused_group_is_not_kept() {
        let at: Timestamp = "2022-06-01T09:30:00Z".parse().expect("a time");
        let put = |state: &mut State, holder: u8, thousandths: u16| {
            let key = serde_json::from_value(balance_key(holder, 0)).expect("a key");
            let value: Balance = serde_json::from_value(json!({
                "available": format!("{}.{:03}", thousandths / 1000, thousandths % 1000),
                "pledged": "0.000",
            }))
            .expect("a balance");
            state.balances.put(key, value);
        };
        for filled_before in [false, true] {
            let mut state = State::new();
            put(&mut state, 1, 1000);
            state.settle();
            if filled_before {
                state.state_commitment(&at).expect("commit");
            }
            let savepoint = state.savepoint();
            put(&mut state, 1, 2000);
            put(&mut state, 2, 3000);
            assert_eq!(
                state.state_commitment(&at).expect("commit"),
                from_every_row(&state, &at)
            );
            state.rollback_to(savepoint);
            state.settle();
            assert_eq!(
                state.state_commitment(&at).expect("commit"),
                from_every_row(&state, &at),
                "after the rollback (cache filled before the group: {filled_before})"
            );
        }
    }

    #[test]
    fn a_tree_grows_from_empty_and_shrinks_back() {
        let mut tree = LeafTree::new(Vec::new());
        let mut rows = BTreeMap::new();
        for n in 0..70u16 {
            rows.insert(key(n), hash(n, 1));
            tree.apply(vec![(key(n), Some(hash(n, 1)))]);
            check(&tree, &rows).expect("after an append");
        }
        for n in (0..70u16).rev().step_by(3) {
            rows.remove(&key(n));
            tree.apply(vec![(key(n), None)]);
            check(&tree, &rows).expect("after a removal");
        }
        let every: Vec<_> = rows.keys().map(|k| (k.clone(), None)).collect();
        tree.apply(every);
        assert_eq!(tree.root().expect("root"), merkle::empty_root());
        assert_eq!(tree.levels.len(), 1);
    }

    #[test]
    fn a_panic_while_the_cache_was_locked_empties_it() {
        let cache = SharedCache::default();
        cache.lock().tree = Some(LeafTree::new(vec![(key(1), hash(1, 0))]));
        assert!(cache.is_filled());
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _locked = cache.lock();
            panic!("a panic in the middle of an update");
        }));
        assert!(cache.0.is_poisoned());
        // Half updated, perhaps: the next commitment starts from every row.
        assert!(!cache.is_filled());
        assert!(!cache.0.is_poisoned());
    }
}
