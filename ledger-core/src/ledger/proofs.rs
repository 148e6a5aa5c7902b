//! Proofs: inclusion and consistency proofs from the store, signed checkpoints, and the bundle a
//! bank checks a pledge with.

use std::collections::BTreeSet;

use crate::checkpoint::{self, Checkpoint};
use crate::ids::PledgeId;
use crate::merkle::{self, CompactTree, Hash, MemoryNodes, NodeId, NodeSource};
use crate::state::commitment::PRICES_IN_FORCE;
use crate::state::{RowProof, StateCommitment, StateRow};
use crate::store::{Store, StoreError};
use crate::verify::{BundleConsistency, BundleState, PledgeBundle, ProvedEntry};

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
        let plan = merkle::inclusion_plan(seq, tree_size)?;
        let leaf = NodeId::leaf(seq);
        let ids = plan.node_ids().chain([leaf]);
        let nodes = fetch_nodes(self.store.as_ref(), ids, &[tree_size], size)?;
        let proof = plan.fetch(&nodes)?;
        let leaf_hash = nodes.node(leaf)?;
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
        let plan = merkle::consistency_plan(old_size, new_size)?;
        let nodes = fetch_nodes(
            self.store.as_ref(),
            plan.node_ids(),
            &[old_size, new_size],
            size,
        )?;
        let proof = plan.fetch(&nodes)?;
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
        nodes: &impl NodeSource,
    ) -> Result<Hash, LedgerError> {
        if tree_size == size {
            return Ok(root);
        }
        Ok(merkle::root_at(tree_size, nodes)?)
    }

    /// The latest checkpoint, signed by the operator key, as a C2SP signed note. Its extension
    /// line `state/v1 <rows> <root>` commits to the market's state at that size (see
    /// [`crate::state::commitment`]). A new one is signed (when the ledger has grown) only after
    /// checking that it extends the last one signed. The tree head and the state are read
    /// together under the head's shared lock; signing holds neither the sequencer nor the state.
    ///
    /// On a store shared by several instances the last checkpoint signed is the one the store
    /// keeps, whichever instance signed it: this instance first catches up to it, and keeps its
    /// own only if the store holds none as large (a compare-and-set on the size); when another
    /// instance won, it reads theirs back. So no instance ever answers a checkpoint older than
    /// one any instance has answered.
    pub fn checkpoint(&self) -> Result<String, LedgerError> {
        Ok(self.checkpoint_proving(&[])?.0)
    }

    /// [`Ledger::checkpoint`], with proofs, under its state line, of the state rows named by
    /// their sort keys (present or absent), read at the same moment as the tree head.
    pub fn checkpoint_proving(
        &self,
        sort_keys: &[Vec<u8>],
    ) -> Result<(String, Vec<RowProof>), LedgerError> {
        const ATTEMPTS: usize = 8;
        if let Some(refusal) = self.behind_floor() {
            return Err(refusal);
        }
        let mut last = self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = self.operator_key.verifying_key();
        for _ in 0..ATTEMPTS {
            if self.store.shared() {
                self.adopt_stored_checkpoint(&mut last)?;
            }
            let (current, proofs) = {
                let head = self.read_head();
                let last_size = last.as_ref().and_then(|note| checkpoint_size(note));
                if let Some(note) = last.as_ref() {
                    if last_size == Some(head.tree.size()) && sort_keys.is_empty() {
                        let previous =
                            checkpoint::open_checkpoint(note, self.origin.as_str(), &key)?;
                        if StateCommitment::from_checkpoint(&previous)
                            .ok()
                            .flatten()
                            .is_some()
                        {
                            return Ok((note.clone(), Vec::new()));
                        }
                    }
                    let previous = checkpoint::open_checkpoint(note, self.origin.as_str(), &key)?;
                    check_extends(self.store.as_ref(), &head.tree, &previous)?;
                }
                let at = head.commitment_time();
                let (commitment, proofs) = if sort_keys.is_empty() {
                    (head.state.state_commitment(&at)?, Vec::new())
                } else {
                    head.state.prove_state_rows(&at, sort_keys)?
                };
                let mut current =
                    Checkpoint::new(self.origin.as_str(), head.tree.size(), head.tree.root());
                current.extensions.push(commitment.line());
                (current, proofs)
            };
            let note =
                checkpoint::sign_checkpoint(&current, self.origin.as_str(), &self.operator_key)?;
            if last.as_deref() == Some(note.as_str()) {
                return Ok((note, proofs));
            }
            match self.store.put_checkpoint(&note) {
                Ok(()) => {
                    *last = Some(note.clone());
                    return Ok((note, proofs));
                }
                // Another instance kept one at least as large meanwhile: read it back.
                Err(StoreError::CheckpointSuperseded { .. }) => continue,
                Err(error) => {
                    // The store is not trusted until it has been reopened (see `health`).
                    self.store_write_failed(&error);
                    return Err(error.into());
                }
            }
        }
        Err(StoreError::Unavailable(
            "other instances kept signing checkpoints while this one tried".to_owned(),
        )
        .into())
    }

    /// On a shared store: takes the checkpoint the store keeps as the last one signed if it is
    /// later than this instance's, after checking its signature, and catches up to its size.
    fn adopt_stored_checkpoint(&self, last: &mut Option<String>) -> Result<(), LedgerError> {
        let Some(stored) = self.store.checkpoint()? else {
            return Ok(());
        };
        let key = self.operator_key.verifying_key();
        let opened = checkpoint::open_checkpoint(&stored, self.origin.as_str(), &key)?;
        let known = last.as_deref().and_then(checkpoint_size);
        if known.is_some_and(|size| size >= opened.size) {
            return Ok(());
        }
        if self.refresh()? < opened.size {
            return Err(LedgerError::Integrity(format!(
                "the store keeps a checkpoint of {} entries but holds fewer",
                opened.size
            )));
        }
        check_extends(self.store.as_ref(), &self.read_head().tree, &opened)?;
        *last = Some(stored);
        Ok(())
    }

    /// Everything a bank needs to check pledge `id` offline (see
    /// [`crate::verify::verify_pledge_bundle`]), proved under the latest checkpoint: the entries
    /// behind the pledge with their inclusion proofs, and the state rows of the pledge, the
    /// pledgor's balance, the batch and the price in force with their proofs under the
    /// checkpoint's state line. With `old_size`, a consistency proof from that size too.
    pub fn pledge_bundle(
        &self,
        id: &PledgeId,
        old_size: Option<u64>,
    ) -> Result<PledgeBundle, LedgerError> {
        let (seqs, sort_keys) = self.read(|state| -> Result<_, LedgerError> {
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
            let price = state
                .price(&pledge.price_ref)
                .ok_or_else(|| missing(format!("there is no price \"{}\"", pledge.price_ref)))?;
            let mut seqs: BTreeSet<u64> = [pledge.seq, batch.seq, report.seq, price.seq].into();
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
            let seqs: BTreeSet<u64> = seqs.into_iter().filter(|s| *s <= pledge.seq).collect();
            let sort_keys = vec![
                StateRow::sort_key_of("pledges", &pledge.id)?,
                StateRow::sort_key_of("balances", &(&pledge.pledgor, &pledge.batch))?,
                StateRow::sort_key_of("batches", &pledge.batch)?,
                StateRow::sort_key_of(PRICES_IN_FORCE, &price.basis)?,
            ];
            Ok((seqs, sort_keys))
        })?;
        let (note, mut proofs) = self.checkpoint_proving(&sort_keys)?;
        let size = checkpoint_size(&note)
            .ok_or_else(|| LedgerError::Integrity("the checkpoint has no size line".to_owned()))?;
        let mut entries = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let leaf = self.leaf(seq)?;
            let plan = merkle::inclusion_plan(seq, size)?;
            let proof = plan.fetch(&fetch_nodes(
                self.store.as_ref(),
                plan.node_ids(),
                &[],
                size,
            )?)?;
            entries.push(ProvedEntry {
                leaf: String::from_utf8(leaf)
                    .map_err(|_| LedgerError::Integrity(format!("leaf {seq} is not UTF-8")))?,
                proof: proof.iter().map(hex32).collect(),
            });
        }
        let consistency = old_size
            .map(|old| -> Result<BundleConsistency, LedgerError> {
                let proof = self.consistency_proof(old, Some(size))?;
                Ok(BundleConsistency {
                    old_size: old,
                    proof: proof.proof,
                })
            })
            .transpose()?;
        let mut take = || proofs.remove(0);
        let state = BundleState {
            pledge: take(),
            balance: take(),
            batch: take(),
            price: take(),
        };
        Ok(PledgeBundle {
            version: 2,
            pledge: id.to_string(),
            checkpoint: note,
            entries,
            state: Some(state),
            consistency,
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

/// The nodes a proof reads (`ids`) and those of the roots at the tree sizes `roots` other than
/// `size` (whose root memory holds), read from the store in one call (one round trip to a
/// database), as a node source for the proof; one not stored is missing from it, and the proof
/// says so.
fn fetch_nodes(
    store: &dyn Store,
    ids: impl Iterator<Item = NodeId>,
    roots: &[u64],
    size: u64,
) -> Result<MemoryNodes, LedgerError> {
    let mut ids: Vec<NodeId> = ids.collect();
    for &tree_size in roots.iter().filter(|&&tree_size| tree_size != size) {
        ids.extend(merkle::root_plan(tree_size));
    }
    let mut nodes = MemoryNodes::new();
    for (&id, hash) in ids.iter().zip(store.nodes(&ids)?) {
        if let Some(hash) = hash {
            nodes.insert(id, hash);
        }
    }
    Ok(nodes)
}
