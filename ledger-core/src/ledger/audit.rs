//! A full verification of the stored history: every signature, the chain, the tree and the
//! state, recomputed from the leaves and compared with what the store holds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::merkle::NodeId;
use crate::progress::{Progress, Silent};
use crate::state::table::{decode, seq_in_key};
use crate::state::{EntryRecord, History, HistoryVisitor, State, HISTORY_TABLES};
use crate::store::{RowRange, Store, StoreError};
use crate::verify::replay::RowDigest;
use crate::verify::{helper_threads, ReplayError, Replayer};

use super::{hex32, Ledger, LedgerError, StoreHistory, VerifyReport};

impl Ledger {
    /// Recomputes everything from the stored leaves — signatures, chain, tree, state — and
    /// compares it with what the store holds. Names the first bad sequence number.
    ///
    /// It reads a consistent ledger, so submissions wait until it is done (about a minute per
    /// million entries on two cores: see docs/performance.md): run it on a stopped ledger
    /// (`carbon-ledger check`) or on a restored copy rather than on a busy service. The
    /// signatures are checked on helper threads, one per core, ahead of the replay
    /// ([`Replayer::replay_ahead`]). The replay keeps the market's current state in memory, not
    /// its history: the rows of the history tables (entry ids, trades, certificates and their
    /// indexes) are compared with the store's as a digest per table, and the rules read the
    /// store's rows of the entries replayed so far. The store's rows are read (and digested) on a
    /// thread of their own while the replay runs.
    pub fn verify_full(&self) -> Result<VerifyReport, LedgerError> {
        self.verify_full_with(&Silent)
    }

    /// [`Ledger::verify_full`], telling `progress` after each entry replayed.
    pub fn verify_full_with(&self, progress: &dyn Progress) -> Result<VerifyReport, LedgerError> {
        let head = self.read_head();
        let size = head.tree.size();
        let mut replayer = Replayer::new(self.origin.clone());
        let history = Arc::new(ReplayedHistory {
            store: StoreHistory(Arc::clone(&self.store)),
            replayed: AtomicU64::new(0),
        });
        replayer.keep_history_in(Arc::clone(&history) as Arc<dyn History>);
        let mut expected = 0u64;
        // The store's state rows do not depend on the replay: they are read (and the history
        // tables' rows counted into their digests) on a thread of their own while it runs, and
        // compared with the replayed state once it is done.
        let replay_failed = AtomicBool::new(false);
        let (replayed, stored) = std::thread::scope(|scope| {
            let stored = scope.spawn(|| self.stored_rows(&replay_failed));
            let replayed =
                self.replay_stored(&mut replayer, &history, progress, size, &mut expected);
            if replayed.is_err() {
                replay_failed.store(true, Ordering::Relaxed);
            }
            let stored = stored.join().unwrap_or_else(|_| {
                Err(LedgerError::Integrity(
                    "reading the stored state failed".to_owned(),
                ))
            });
            (replayed, stored)
        });
        replayed?;
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
        compare_stored_state(&replayer, stored?)?;
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

    /// Replays the stored leaves (the first `size`), comparing the Merkle nodes each completes
    /// with the stored ones; `expected` ends as the number of leaves read in order.
    fn replay_stored(
        &self,
        replayer: &mut Replayer,
        history: &ReplayedHistory,
        progress: &dyn Progress,
        size: u64,
        expected: &mut u64,
    ) -> Result<(), LedgerError> {
        // The store reads the leaves and the replay applies them on this thread; the helpers
        // decode them and check their signatures ahead, on the other cores.
        let replayed = replayer.replay_ahead(
            helper_threads(),
            |push| {
                self.store.scan_leaves(0, &mut |seq, leaf| {
                    // A gap stops the reading; it is reported below, once the entries before it
                    // are replayed (one of them may be the first bad entry).
                    if seq >= size || seq != *expected {
                        return Ok(false);
                    }
                    *expected += 1;
                    push(leaf).map_err(Audit::into_store)?;
                    Ok(true)
                })?;
                Ok(())
            },
            |_, seq, _, nodes| {
                history.replayed.store(seq + 1, Ordering::Relaxed);
                progress.entries(seq + 1, size);
                // The entry's nodes share a block or two: read together, each block is read once.
                let ids: Vec<NodeId> = nodes.iter().map(|&(id, _)| id).collect();
                let stored = self.store.nodes(&ids)?;
                for ((id, hash), stored) in nodes.into_iter().zip(stored) {
                    if stored != Some(hash) {
                        return Err(Audit::Store(StoreError::Corrupt(format!(
                            "entry {seq}: the stored Merkle node at level {} index {} is wrong",
                            id.level, id.index
                        ))));
                    }
                }
                Ok(())
            },
        );
        replayed.map_err(|e| Audit::into_store(e).into())
    }

    /// Every stored state row: the history tables' counted into a digest per table, the others
    /// (the market's current state, as small as the market) kept, in the store's order. Stops
    /// early, with nothing to compare, once `stop` is set.
    fn stored_rows(&self, stop: &AtomicBool) -> Result<StoredRows, LedgerError> {
        let mut stored = StoredRows::default();
        self.store
            .scan_state(None, RowRange::default(), &mut |table, key, value| {
                if stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                match HISTORY_TABLES.iter().find(|t| **t == table) {
                    Some(name) => stored
                        .history
                        .entry(name)
                        .or_default()
                        .add(key, Some(value)),
                    None => stored
                        .current
                        .push((table.to_owned(), key.to_vec(), value.to_vec())),
                }
                Ok(true)
            })?;
        Ok(stored)
    }
}

/// The store's state rows, as a full verification compares them with a replay.
#[derive(Default)]
struct StoredRows {
    /// The history tables' rows, as a digest per table.
    history: BTreeMap<&'static str, RowDigest>,
    /// The other tables' rows: table, key, value.
    current: Vec<(String, Vec<u8>, Vec<u8>)>,
}

/// Compares every stored state row with those of a replay: the current state row by row (the
/// first row that differs, in the store's order, is named), the history tables by their digests.
fn compare_stored_state(replayer: &Replayer, stored: StoredRows) -> Result<(), LedgerError> {
    let replayed_history = replayer.history_digests().cloned().unwrap_or_default();
    let mut expected: BTreeMap<(&'static str, Vec<u8>), Vec<u8>> = replayer
        .state()
        .all_rows()?
        .into_iter()
        .filter_map(|row| Some(((row.table, row.key), row.value?)))
        .collect();
    let mut mismatch = None;
    for (table, key, value) in &stored.current {
        let name = State::TABLES
            .iter()
            .find(|t| **t == table)
            .copied()
            .unwrap_or("?");
        if expected.remove(&(name, key.clone())).as_ref() != Some(value) {
            mismatch = Some(format!("{table} {}", String::from_utf8_lossy(key)));
            break;
        }
    }
    if let Some(((table, key), _)) = expected.into_iter().next() {
        mismatch.get_or_insert(format!("{table} {}", String::from_utf8_lossy(&key)));
    }
    if let Some(row) = mismatch {
        return Err(LedgerError::Integrity(format!(
            "the stored state differs from a replay of the entries at row {row}"
        )));
    }
    for table in HISTORY_TABLES {
        let (stored, replayed) = (
            stored.history.get(table).copied().unwrap_or_default(),
            replayed_history.get(table).copied().unwrap_or_default(),
        );
        if stored != replayed {
            return Err(LedgerError::Integrity(format!(
                "the stored rows of {table} differ from a replay of the entries ({} stored, {} replayed)",
                stored.rows, replayed.rows
            )));
        }
    }
    Ok(())
}

/// What stops a full verification while it reads the leaves: the store, or a leaf that does not
/// replay (reported, as ever, as a store holding a corrupt entry).
enum Audit {
    Store(StoreError),
    Replay(ReplayError),
}

impl From<StoreError> for Audit {
    fn from(error: StoreError) -> Self {
        Audit::Store(error)
    }
}

impl From<ReplayError> for Audit {
    fn from(error: ReplayError) -> Self {
        Audit::Replay(error)
    }
}

impl Audit {
    fn into_store(self) -> StoreError {
        match self {
            Audit::Store(error) => error,
            Audit::Replay(error) => StoreError::Corrupt(error.to_string()),
        }
    }
}

/// The store's history rows as a replay may read them: only those of the entries it has
/// replayed (`replayed` of them), as if the rows of the entries to come were not there yet.
#[derive(Debug)]
struct ReplayedHistory {
    store: StoreHistory,
    replayed: AtomicU64,
}

impl ReplayedHistory {
    /// Whether a stored history row belongs to an entry replayed already.
    fn replayed(&self, table: &str, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        let seq = if table == "entries" {
            decode::<EntryRecord>(table, value)?.seq
        } else {
            // Keyed by a sequence number, alone or last in a tuple.
            seq_in_key(table, key)?
        };
        Ok(seq < self.replayed.load(Ordering::Relaxed))
    }
}

impl History for ReplayedHistory {
    fn row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.store.row(table, key)? {
            Some(value) if self.replayed(table, key, &value)? => Ok(Some(value)),
            _ => Ok(None),
        }
    }

    fn scan(
        &self,
        table: &str,
        range: RowRange<'_>,
        visit: &mut HistoryVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.store.scan(table, range, &mut |key, value| {
            if self.replayed(table, key, value)? {
                visit(key, value)
            } else {
                Ok(true)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateChange;
    use crate::store::{Append, MemoryStore};

    /// A replay reads from the store only the history rows of the entries before it: an entry
    /// id, a trade and an index row of entry 5 are there once 6 entries are replayed, not before.
    #[test]
    fn a_replay_sees_only_the_history_rows_of_the_entries_it_has_replayed() {
        let store = MemoryStore::new();
        let row = |table: &'static str, key: &str, value: &str| StateChange {
            table,
            key: key.as_bytes().to_vec(),
            value: Some(value.as_bytes().to_vec()),
        };
        let seq5 = "\"00000000000000000005\"";
        let rows = [
            row(
                "entries",
                "\"T-5\"",
                &format!(r#"{{"seq":5,"body_digest":"{}"}}"#, "ab".repeat(32)),
            ),
            row("trades", seq5, "{}"),
            row("trades_by_party", &format!(r#"["wetland",{seq5}]"#), "null"),
        ];
        store
            .append(Append {
                first_seq: 0,
                leaves: &[],
                nodes: &[],
                state: &rows,
                meta: None,
            })
            .unwrap();
        let history = ReplayedHistory {
            store: StoreHistory(Arc::new(store)),
            replayed: AtomicU64::new(5),
        };
        let seen = |history: &ReplayedHistory| {
            let mut found = Vec::new();
            for change in &rows {
                if history.row(change.table, &change.key).unwrap().is_some() {
                    found.push(change.table);
                }
                history
                    .scan(change.table, RowRange::default(), &mut |_, _| {
                        found.push(change.table);
                        Ok(true)
                    })
                    .unwrap();
            }
            found
        };
        assert!(seen(&history).is_empty());
        history.replayed.store(6, Ordering::Relaxed);
        assert_eq!(
            seen(&history),
            [
                "entries",
                "entries",
                "trades",
                "trades",
                "trades_by_party",
                "trades_by_party"
            ]
        );
    }
}
