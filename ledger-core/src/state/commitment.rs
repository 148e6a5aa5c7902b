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
//! The leaf hash of every settled row is cached and refreshed lazily for the rows written since
//! the last commitment, so a commitment costs O(rows) hashes of 32-byte nodes, not O(rows)
//! encodings.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::canonical;
use crate::ids::Timestamp;
use crate::merkle::{self, CompactTree, Hash, MemoryNodes};
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

/// The cached leaf hashes of the settled committed rows, and the rows written since they were
/// last refreshed.
#[derive(Debug, Default)]
pub(super) struct CommitmentCache {
    leaves: BTreeMap<Vec<u8>, Hash>,
    dirty: BTreeSet<(&'static str, Vec<u8>)>,
    /// Whether `leaves` was ever filled (a state loaded from a store starts empty).
    filled: bool,
}

/// A [`CommitmentCache`] behind a lock, so that a state read under a shared borrow can refresh
/// it; states compare equal whatever their caches hold.
#[derive(Debug, Default)]
pub(super) struct SharedCache(pub(super) Mutex<CommitmentCache>);

impl Clone for SharedCache {
    fn clone(&self) -> Self {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        SharedCache(Mutex::new(CommitmentCache {
            leaves: cache.leaves.clone(),
            dirty: cache.dirty.clone(),
            filled: cache.filled,
        }))
    }
}

impl PartialEq for SharedCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl SharedCache {
    /// Whether the cache holds the leaves (until the first commitment, nothing is tracked).
    pub(super) fn is_filled(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).filled
    }

    /// Notes that rows of `table` with these JSON keys were written.
    pub(super) fn mark(&self, table: &'static str, keys: impl IntoIterator<Item = Vec<u8>>) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.filled {
            cache.dirty.extend(keys.into_iter().map(|k| (table, k)));
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

    /// The leaf hashes of every committed row at `at`, in sort-key order: the cached ones of the
    /// stored tables, refreshed where written since, merged with the prices in force.
    fn state_leaves(&self, at: &Timestamp) -> Result<Vec<(Vec<u8>, Hash)>, StoreError> {
        let mut cache = self.commitment.0.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.filled {
            cache.leaves = self
                .stored_rows()?
                .into_iter()
                .map(|row| {
                    let hash = row.leaf_hash();
                    (row.sort_key, hash)
                })
                .collect();
            cache.dirty.clear();
            cache.filled = true;
        }
        let dirty: BTreeSet<(&'static str, Vec<u8>)> = std::mem::take(&mut cache.dirty);
        for (table, key) in dirty {
            let key_value: Value = super::table::decode(table, &key)?;
            let sort_key = StateRow::sort_key_of(table, &key_value)?;
            match self.committed_row(table, &key)? {
                Some(row) => cache.leaves.insert(sort_key, row.leaf_hash()),
                None => cache.leaves.remove(&sort_key),
            };
        }
        let mut leaves: Vec<(Vec<u8>, Hash)> =
            cache.leaves.iter().map(|(k, h)| (k.clone(), *h)).collect();
        drop(cache);
        for row in self.price_rows(at)? {
            let hash = row.leaf_hash();
            leaves.push((row.sort_key, hash));
        }
        leaves.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(leaves)
    }

    /// The commitment to the market's state at `at` (the time of the ledger's last entry, which
    /// decides the prices in force).
    pub fn state_commitment(&self, at: &Timestamp) -> Result<StateCommitment, StoreError> {
        let leaves = self.state_leaves(at)?;
        let mut tree = CompactTree::new();
        for (_, hash) in &leaves {
            tree.append(*hash)
                .map_err(|e| StoreError::Encode(e.to_string()))?;
        }
        Ok(StateCommitment {
            rows: tree.size(),
            root: tree.root(),
        })
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
        let leaves = self.state_leaves(at)?;
        let mut tree = CompactTree::new();
        let mut nodes = MemoryNodes::new();
        for (_, hash) in &leaves {
            nodes.extend(
                tree.append(*hash)
                    .map_err(|e| StoreError::Encode(e.to_string()))?,
            );
        }
        let size = tree.size();
        let proved = |index: usize| -> Result<ProvedRow, StoreError> {
            let row = self.row_at(&leaves[index].0, at)?;
            let index = index as u64;
            let proof = merkle::inclusion_proof(index, size, &nodes)
                .map_err(|e| StoreError::Encode(e.to_string()))?;
            Ok(ProvedRow {
                row: String::from_utf8(row.bytes).map_err(|e| StoreError::Encode(e.to_string()))?,
                index,
                proof: proof.iter().map(hex::encode).collect(),
            })
        };
        let proofs = sort_keys
            .iter()
            .map(|key| match leaves.binary_search_by(|(k, _)| k.cmp(key)) {
                Ok(index) => proved(index).map(RowProof::Present),
                Err(index) => Ok(RowProof::Absent {
                    before: index.checked_sub(1).map(&proved).transpose()?,
                    after: (index < leaves.len()).then(|| proved(index)).transpose()?,
                }),
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((
            StateCommitment {
                rows: size,
                root: tree.root(),
            },
            proofs,
        ))
    }

    /// Notes, before a settle, which committed rows were written since the last one.
    pub(super) fn mark_committed_rows(&self) {
        fn keys<K: Serialize, V>(table: &super::table::Table<K, V>) -> Vec<Vec<u8>> {
            table
                .undo
                .iter()
                .filter_map(|(k, _)| serde_json::to_vec(k).ok())
                .collect()
        }
        if !self.commitment.is_filled() {
            return;
        }
        self.commitment.mark("batches", keys(&self.batches));
        self.commitment.mark("balances", keys(&self.balances));
        self.commitment.mark("pledges", keys(&self.pledges));
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
    let proof = proved
        .proof
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out).map(|()| out)
        })
        .collect::<Result<Vec<Hash>, _>>()
        .map_err(|_| not_included("a proof hash is not hex".to_owned()))?;
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
