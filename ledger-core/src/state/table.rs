//! The state's tables: rows in memory, with what every write since the last settle replaced.
//!
//! A write keeps the value it replaced, which gives atomic groups (a savepoint is a position in
//! the undo log, a rollback pops back to it), the rows to persist (those whose value changed since
//! the last settle) and cheap refusal (an entry that breaks a rule is rolled back). A table whose
//! rows are kept in a [`History`] holds in memory only the rows written since the last settle.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{RowRange, StoreError};

/// One row changed since the last [`super::State::settle`], for storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The table's name.
    pub table: &'static str,
    /// The row's key (JSON).
    pub key: Vec<u8>,
    /// The row's new value (JSON), or `None` if it was removed.
    pub value: Option<Vec<u8>>,
}

/// A stored row that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("stored state row in table {table} cannot be read: {reason}")]
pub struct LoadError {
    /// The table.
    pub table: String,
    /// Why.
    pub reason: String,
}

/// Where the history tables (one row per entry of their kind, and their indexes) are read back
/// from once they are durable. A ledger keeps them in its store rather than in memory, so that
/// memory grows with the market (participants, batches, holdings) and not with its history; a
/// state without a history source keeps every row in memory.
pub trait History: Send + Sync + std::fmt::Debug {
    /// The value of one row (JSON), as [`StateChange`] gave it.
    fn row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// The rows of a table in `range`, in key order (or reverse), until `visit` returns `false`.
    fn scan(
        &self,
        table: &str,
        range: RowRange<'_>,
        visit: &mut HistoryVisitor<'_>,
    ) -> Result<(), StoreError>;
}

/// Visits rows of a history table: key and value (JSON); returns `false` to stop.
pub type HistoryVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StoreError> + 'a;

/// A sequence number as a key of a history table: written as 20 decimal digits, so that the
/// keys' bytes sort as the numbers do and a page is a range of keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqKey(pub u64);

/// Bytes of a [`SeqKey`] at the end of a JSON key: 20 digits, their quotes, a closing bracket.
pub(crate) const SEQ_KEY_TAIL: usize = 20 + 2 + 1;

/// The sequence number of a history table's key (JSON): a [`SeqKey`] alone (`"<20 digits>"`), or
/// last in a tuple (`[..., "<20 digits>"]`, an index). Read from the key's last bytes, without
/// parsing the rest.
pub(crate) fn seq_in_key(table: &str, key: &[u8]) -> Result<u64, StoreError> {
    let tail = match key.last() {
        Some(b']') => key
            .len()
            .checked_sub(SEQ_KEY_TAIL)
            .and_then(|start| key.get(start..key.len() - 1)),
        _ => Some(key),
    }
    .ok_or_else(|| StoreError::Corrupt(format!("a key of {table} is too short")))?;
    let SeqKey(seq) = decode(table, tail)?;
    Ok(seq)
}

impl Serialize for SeqKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:020}", self.0))
    }
}

impl<'de> Deserialize<'de> for SeqKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        if text.len() != 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom("a sequence key is 20 digits"));
        }
        text.parse()
            .map(SeqKey)
            .map_err(|_| serde::de::Error::custom("a sequence key is out of range"))
    }
}

/// The key bytes of a table row, as the store keeps them.
pub(crate) fn key_bytes<K: Serialize + ?Sized>(key: &K) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(key).map_err(|e| StoreError::Encode(e.to_string()))
}

/// The state's history source, if any (states compare equal whatever it is).
#[derive(Clone, Default)]
pub(super) struct HistoryHandle(pub(super) Option<Arc<dyn History>>);

impl PartialEq for HistoryHandle {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for HistoryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "History(store)"
        } else {
            "History(memory)"
        })
    }
}

/// One table of the state: rows, and what each write since the last settle replaced.
#[derive(Clone, Debug)]
pub(super) struct Table<K, V> {
    pub(super) rows: BTreeMap<K, V>,
    pub(super) undo: Vec<(K, Option<V>)>,
    pub(super) in_history: bool,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
            undo: Vec::new(),
            in_history: false,
        }
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for Table<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows
    }
}

impl<
        K: Ord + Clone + Serialize + DeserializeOwned,
        V: Clone + PartialEq + Serialize + DeserializeOwned,
    > Table<K, V>
{
    /// A row in memory (for a table kept in a history: only if written since the last settle).
    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.rows.get(key)
    }

    pub(super) fn put(&mut self, key: K, value: V) {
        let old = self.rows.insert(key.clone(), value);
        self.undo.push((key, old));
    }

    pub(super) fn rollback_to(&mut self, len: usize) {
        while self.undo.len() > len {
            let Some((key, old)) = self.undo.pop() else {
                break;
            };
            match old {
                Some(value) => self.rows.insert(key, value),
                None => self.rows.remove(&key),
            };
        }
    }

    /// The rows written since `mark`, as they are now (removed rows are left out).
    pub(super) fn touched_since(&self, mark: usize) -> impl Iterator<Item = &V> {
        self.undo[mark.min(self.undo.len())..]
            .iter()
            .filter_map(|(key, _)| self.rows.get(key))
    }

    pub(super) fn changes(
        &self,
        table: &'static str,
        out: &mut Vec<StateChange>,
    ) -> Result<(), StoreError> {
        // The value each touched row had before its first write since the last settle: a row
        // written back to that value (a transfer's debit and credit of the same batch totals)
        // need not be written at all.
        let mut before: BTreeMap<&K, Option<&V>> = BTreeMap::new();
        for (key, old) in &self.undo {
            before.entry(key).or_insert(old.as_ref());
        }
        for (key, old) in before {
            let now = self.rows.get(key);
            if now == old {
                continue;
            }
            out.push(StateChange {
                table,
                key: key_bytes(key)?,
                value: now.map(key_bytes).transpose()?,
            });
        }
        Ok(())
    }

    pub(super) fn all_rows(
        &self,
        table: &'static str,
        out: &mut Vec<StateChange>,
    ) -> Result<(), StoreError> {
        for (key, value) in &self.rows {
            out.push(StateChange {
                table,
                key: key_bytes(key)?,
                value: Some(key_bytes(value)?),
            });
        }
        Ok(())
    }

    /// Forgets what the writes since the last settle replaced; a table kept in a history also
    /// drops the rows themselves, which are durable now.
    pub(super) fn settle(&mut self) {
        if self.in_history {
            for (key, _) in self.undo.drain(..) {
                self.rows.remove(&key);
            }
        } else {
            self.undo.clear();
        }
    }

    /// Keeps the rows in `history` from now on: only rows not yet settled stay in memory.
    pub(super) fn move_to_history(&mut self) {
        self.in_history = true;
        let pending: std::collections::BTreeSet<K> =
            self.undo.iter().map(|(k, _)| k.clone()).collect();
        self.rows.retain(|k, _| pending.contains(k));
    }

    /// One row, from memory or else from the history.
    pub(super) fn lookup(
        &self,
        table: &'static str,
        key: &K,
        history: &HistoryHandle,
    ) -> Result<Option<V>, StoreError> {
        if let Some(value) = self.rows.get(key) {
            return Ok(Some(value.clone()));
        }
        let (true, Some(source)) = (self.in_history, &history.0) else {
            return Ok(None);
        };
        source
            .row(table, &key_bytes(key)?)?
            .map(|bytes| decode(table, &bytes))
            .transpose()
    }

    /// The rows that pass `keep`, from the history and memory, in key order.
    pub(super) fn select(
        &self,
        table: &'static str,
        history: &HistoryHandle,
        keep: &dyn Fn(&V) -> bool,
    ) -> Result<Vec<V>, StoreError> {
        let mut out: BTreeMap<K, V> = BTreeMap::new();
        if let (true, Some(source)) = (self.in_history, &history.0) {
            source.scan(table, RowRange::default(), &mut |key, value| {
                let value: V = decode(table, value)?;
                if keep(&value) {
                    out.insert(decode(table, key)?, value);
                }
                Ok(true)
            })?;
        }
        for (key, value) in &self.rows {
            if keep(value) {
                out.insert(key.clone(), value.clone());
            }
        }
        Ok(out.into_values().collect())
    }

    pub(super) fn load(&mut self, key: &[u8], value: &[u8]) -> Result<(), serde_json::Error> {
        self.rows
            .insert(serde_json::from_slice(key)?, serde_json::from_slice(value)?);
        Ok(())
    }
}

/// A stored row's key or value, read back.
pub(crate) fn decode<T: DeserializeOwned>(table: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        what: format!("a row of table {table}"),
        reason: e.to_string(),
    })
}

/// Declares the state's tables: the `State` struct, its savepoints, and what is done to every
/// table at once (pending changes, settle, rollback, load).
macro_rules! tables {
    ($($field:ident : $key:ty => $value:ty),* $(,)?) => {
        /// The whole state of the market. See the module documentation.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct State {
            $($field: Table<$key, $value>,)*
            history: HistoryHandle,
            commitment: commitment::SharedCache,
        }

        /// A point among the pending writes (see [`State::savepoint`]).
        #[derive(Clone, Copy, Debug)]
        pub struct Savepoint(Mark);

        #[derive(Clone, Copy, Debug)]
        struct Mark {
            $($field: usize,)*
        }

        impl State {
            /// The names of the state's tables, as [`StateChange::table`] gives them.
            pub const TABLES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// A point among the pending writes to roll back to.
            pub fn savepoint(&self) -> Savepoint {
                Savepoint(self.mark())
            }

            /// Undoes the writes made since the savepoint.
            pub fn rollback_to(&mut self, savepoint: Savepoint) {
                self.rollback(savepoint.0);
            }

            fn mark(&self) -> Mark {
                Mark { $($field: self.$field.undo.len(),)* }
            }

            fn rollback(&mut self, mark: Mark) {
                $(self.$field.rollback_to(mark.$field);)*
            }

            /// The rows changed since the last [`State::settle`], with their new values.
            pub fn pending_changes(&self) -> Result<Vec<StateChange>, StoreError> {
                let mut out = Vec::new();
                $(self.$field.changes(stringify!($field), &mut out)?;)*
                Ok(out)
            }

            /// The rows of the history tables ([`HISTORY_TABLES`]) changed since the last
            /// [`State::settle`], with their new values.
            pub fn pending_history_changes(&self) -> Result<Vec<StateChange>, StoreError> {
                let mut out = Vec::new();
                $(
                    if HISTORY_TABLES.contains(&stringify!($field)) {
                        self.$field.changes(stringify!($field), &mut out)?;
                    }
                )*
                Ok(out)
            }

            /// Every row of every table, as [`State::pending_changes`] would give them had each
            /// been written since the last settle (a restore writes a whole state at once). A
            /// table kept in a history gives only its rows not yet settled.
            pub fn all_rows(&self) -> Result<Vec<StateChange>, StoreError> {
                let mut out = Vec::new();
                $(self.$field.all_rows(stringify!($field), &mut out)?;)*
                Ok(out)
            }

            /// Forgets what the writes since the last settle replaced: they are durable now.
            pub fn settle(&mut self) {
                self.mark_committed_rows();
                $(self.$field.settle();)*
            }

            /// Keeps the history tables' rows in `history` from now on: rows already settled
            /// are dropped from memory (they must be durable in `history`), and rows settled later
            /// too. Reads of those tables then go to `history`.
            pub fn keep_history_in(&mut self, history: std::sync::Arc<dyn History>) {
                $(
                    if HISTORY_TABLES.contains(&stringify!($field)) {
                        self.$field.move_to_history();
                    }
                )*
                self.history = HistoryHandle(Some(history));
            }

            /// Whether table `name` is kept in a history rather than in memory.
            pub fn in_history(&self, name: &str) -> bool {
                match name {
                    $(stringify!($field) => self.$field.in_history,)*
                    _ => false,
                }
            }

            /// Undoes every write since the last settle.
            pub fn revert(&mut self) {
                $(self.$field.rollback_to(0);)*
            }

            /// Puts back one stored row (opening a store), as [`State::pending_changes`] gave it.
            pub fn load_row(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
                let result = match table {
                    $(stringify!($field) => self.$field.load(key, value),)*
                    _ => return Err(LoadError { table: table.to_owned(), reason: "unknown table".to_owned() }),
                };
                result.map_err(|e| LoadError { table: table.to_owned(), reason: e.to_string() })
            }
        }
    };
}

pub(super) use tables;
