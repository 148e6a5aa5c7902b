//! Proofs: inclusion and consistency proofs from the store, signed checkpoints, and the bundle a
//! bank checks a pledge with.

use std::collections::BTreeSet;

use crate::checkpoint::{self, Checkpoint};
use crate::ids::PledgeId;
use crate::merkle::{self, CompactTree, Hash, NodeId, NodeSource};
use crate::store::Store;
use crate::verify::{PledgeBundle, ProvedEntry};

use super::{hex32, ConsistencyProof, InclusionProof, Ledger, LedgerError, StoreNodes};

impl Ledger {
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
        if let Err(error) = self.store.put_checkpoint(&note) {
            // The store is not trusted until it has been reopened (see `health`).
            self.store_write_failed(&error);
            return Err(error.into());
        }
        *last = Some(note.clone());
        Ok(note)
    }

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
}

pub(super) fn checkpoint_size(note: &str) -> Option<u64> {
    note.lines().nth(1).and_then(|l| l.parse().ok())
}

/// Checks that the tree extends the checkpoint `last` (same root at its size).
pub(super) fn check_extends(
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
