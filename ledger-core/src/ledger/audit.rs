//! A full verification of the stored history: every signature, the chain, the tree and the
//! state, recomputed from the leaves and compared with what the store holds.

use std::collections::BTreeMap;

use crate::progress::{Progress, Silent};
use crate::state::State;
use crate::store::{RowRange, StoreError};
use crate::verify::{helper_threads, ReplayError, Replayer};

use super::{hex32, Ledger, LedgerError, VerifyReport};

impl Ledger {
    /// Recomputes everything from the stored leaves — signatures, chain, tree, state — and
    /// compares it with what the store holds. Names the first bad sequence number.
    ///
    /// It reads a consistent ledger, so submissions wait until it is done (about 70 s per
    /// million entries on two cores, and memory for the whole history: see
    /// docs/performance.md): run it on a stopped ledger (`carbon-ledger check`) or on a restored
    /// copy rather than on a busy service. The signatures are checked on helper threads, one
    /// per core, ahead of the replay ([`Replayer::replay_ahead`]).
    pub fn verify_full(&self) -> Result<VerifyReport, LedgerError> {
        self.verify_full_with(&Silent)
    }

    /// [`Ledger::verify_full`], telling `progress` after each entry replayed.
    pub fn verify_full_with(&self, progress: &dyn Progress) -> Result<VerifyReport, LedgerError> {
        let head = self.read_head();
        let size = head.tree.size();
        let mut replayer = Replayer::new(self.origin.clone());
        let mut expected = 0u64;
        // The store reads the leaves and the replay applies them on this thread; the helpers
        // decode them and check their signatures ahead, on the other cores.
        let replayed = replayer.replay_ahead(
            helper_threads(),
            |push| {
                self.store.scan_leaves(0, &mut |seq, leaf| {
                    // A gap stops the reading; it is reported below, once the entries before it
                    // are replayed (one of them may be the first bad entry).
                    if seq >= size || seq != expected {
                        return Ok(false);
                    }
                    expected += 1;
                    push(leaf).map_err(Audit::into_store)?;
                    Ok(true)
                })?;
                Ok(())
            },
            |_, seq, _, nodes| {
                progress.entries(seq + 1, size);
                for (id, hash) in nodes {
                    if self.store.node(id)? != Some(hash) {
                        return Err(Audit::Store(StoreError::Corrupt(format!(
                            "entry {seq}: the stored Merkle node at level {} index {} is wrong",
                            id.level, id.index
                        ))));
                    }
                }
                Ok(())
            },
        );
        replayed.map_err(Audit::into_store)?;
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

    /// Compares every stored state row with those of a replayed state.
    fn compare_stored_state(&self, replayed: &State) -> Result<(), LedgerError> {
        let mut expected: BTreeMap<(&'static str, Vec<u8>), Vec<u8>> = replayed
            .all_rows()?
            .into_iter()
            .filter_map(|row| Some(((row.table, row.key), row.value?)))
            .collect();
        let mut mismatch = None;
        self.store
            .scan_state(None, RowRange::default(), &mut |table, key, value| {
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
