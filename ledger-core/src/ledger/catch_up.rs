//! Catching up: the entries that other instances appended to a shared store, applied to this
//! instance's head.
//!
//! Several service instances may share one store (a database). Each holds the market's state, the
//! tree's right edge and the chain head in memory; another instance's appends make the store run
//! ahead of that memory. Catching up reads the missed leaves in order and replays each one into
//! the head — envelope position and chain link, signatures against the keys current at that
//! point, the rules of the market, the tree — without writing anything: the instance that
//! appended them already wrote their state rows. The result is checked against the store's
//! metadata row (size, tree edge, chain head), and the key cache is refreshed.
//!
//! The sequencer catches up when the store says it is behind ([`StoreError::Behind`]), and reads
//! catch up when they name something this instance does not hold yet ([`Ledger::refresh`]).

use crate::ids::{ParticipantId, PublicKey};
use crate::state::ApplyError;
use crate::store::StoreError;
use crate::verify::{replay_leaf, ReplayFault};

use super::{hex32, Head, Ledger, LedgerError};

/// Beyond this many missed entries an instance reads its head back from the store (O(state))
/// rather than replay them (O(entries), with every change held for undo until the end).
const REPLAY_AT_MOST: u64 = 50_000;

impl Ledger {
    /// Catches up with the entries other instances appended to a shared store, and returns the
    /// number of entries this instance holds now. On an embedded store (sled, memory), which has
    /// no other writer, it only returns the size.
    ///
    /// Reads call it before they answer "not found" for something named by id or seq, and while
    /// they wait for a minimum sequence number; it costs one read of the store's metadata row
    /// when nothing was missed.
    pub fn refresh(&self) -> Result<u64, LedgerError> {
        if !self.store.shared() {
            return Ok(self.size());
        }
        let durable = self.store.meta()?.map_or(0, |meta| meta.size);
        if durable <= self.size() {
            return Ok(self.size());
        }
        let mut head = self.head.write().unwrap_or_else(|e| e.into_inner());
        self.catch_up(&mut head)?;
        Ok(head.tree.size())
    }

    /// Whether other instances may append to this ledger's store (a shared database).
    pub fn shared_store(&self) -> bool {
        self.store.shared()
    }

    /// Applies the entries the store holds beyond the head, all or none: if the store cannot
    /// be read meanwhile, or holds an entry this program refuses, the head is as it was and the
    /// error is returned.
    pub(super) fn catch_up(&self, head: &mut Head) -> Result<(), LedgerError> {
        let before = head.log_end();
        let result = self.replay_missed(head);
        if result.is_err() {
            head.state.revert();
            head.rewind(before);
        }
        result
    }

    fn replay_missed(&self, head: &mut Head) -> Result<(), LedgerError> {
        let meta = self
            .store
            .meta()?
            .ok_or_else(|| LedgerError::Integrity("the store lost its metadata row".to_owned()))?;
        if meta.size < head.meta.size {
            return Err(LedgerError::Integrity(format!(
                "the store holds {} entries, fewer than the {} this instance saw durable: it lost entries (a database restored from an old backup, or failed over to a replica that was behind); stop every instance and see docs/operations.md",
                meta.size, head.meta.size
            )));
        }
        let from = head.tree.size();
        if meta.size <= from {
            return Ok(());
        }
        if meta.size - from > REPLAY_AT_MOST {
            // Far behind (a long disconnection): the state as stored, without the history. It
            // stands only if no other instance appended while it was read.
            let operator = PublicKey::from(self.operator_key.verifying_key());
            let fresh = Head::load(&self.store, meta.clone(), &self.origin, &operator)?;
            if self.store.meta()?.map(|m| m.size) != Some(meta.size) {
                return Err(StoreError::Unavailable(
                    "other instances appended while this one read the store's state; retry"
                        .to_owned(),
                )
                .into());
            }
            *self.keys.write().unwrap_or_else(|e| e.into_inner()) = fresh.keys();
            *head = fresh;
            return Ok(());
        }
        let mut new_keys: Vec<(ParticipantId, PublicKey)> = Vec::new();
        let mut failure: Option<LedgerError> = None;
        let mut next = from;
        self.store.scan_leaves(from, &mut |seq, leaf| {
            if seq >= meta.size {
                return Ok(false);
            }
            if seq != next {
                failure = Some(LedgerError::Integrity(format!(
                    "entry {next} is missing from the store"
                )));
                return Ok(false);
            }
            match self.replay_one(head, seq, leaf) {
                Ok(Some(key)) => new_keys.push(key),
                Ok(None) => {}
                Err(error) => {
                    failure = Some(error);
                    return Ok(false);
                }
            }
            next += 1;
            Ok(true)
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        if next != meta.size {
            return Err(LedgerError::Integrity(format!(
                "entry {next} is missing from the store"
            )));
        }
        head.state.settle();
        let peaks: Vec<String> = head.tree.peaks().iter().map(hex32).collect();
        if peaks != meta.peaks || hex32(&head.last_leaf_hash) != meta.last_leaf_hash {
            return Err(LedgerError::Integrity(format!(
                "the entries {from}..{} replayed do not lead to the tree head the store holds",
                meta.size
            )));
        }
        head.meta = meta;
        if !new_keys.is_empty() {
            // In order: a key rotated twice ends as the last one.
            let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
            keys.extend(new_keys);
        }
        Ok(())
    }

    /// Replays one stored leaf into the head (as a verifier of the export does, see
    /// [`replay_leaf`]); returns the key it registered or rotated, if any.
    fn replay_one(
        &self,
        head: &mut Head,
        seq: u64,
        leaf: &[u8],
    ) -> Result<Option<(ParticipantId, PublicKey)>, LedgerError> {
        if head.tree.size() != seq {
            return Err(LedgerError::Integrity(format!(
                "stored entry {seq} is not the next one after {}",
                head.tree.size()
            )));
        }
        let replayed = replay_leaf(
            &self.origin,
            &mut head.state,
            &mut head.tree,
            &mut head.last_leaf_hash,
            leaf,
        )
        .map_err(|e| match e.fault {
            // The store's history could not be read (the database went away): not a fault of
            // the entry, and worth another try.
            ReplayFault::Rule(ApplyError::Store(store)) => LedgerError::Store(store),
            _ => LedgerError::Integrity(format!("stored {e}")),
        })?;
        head.last_accepted_at = Some(replayed.accepted_at);
        Ok(replayed.key)
    }

    /// What a pass does when the store says it holds `durable` entries, more than the pass
    /// built on: catch up with them. A store that holds fewer entries than this instance saw
    /// durable lost some; the instance stops writing rather than build on a shorter history.
    pub(super) fn behind(&self, head: &mut Head, durable: u64) -> Result<(), LedgerError> {
        if durable < head.meta.size {
            let reason = format!(
                "the store holds {durable} entries, fewer than the {} this instance saw durable: it lost entries (a database restored from an old backup, or failed over to a replica that was behind); stop every instance and see docs/operations.md",
                head.meta.size
            );
            self.halt(reason.clone());
            return Err(LedgerError::Halted(reason));
        }
        self.catch_up(head)
    }
}
