//! A replica: a verified copy of another operator's ledger, kept durably in a store of its own.
//!
//! A validating witness and a mirror keep one. Leaves are appended as the ledger wrote them —
//! never re-sequenced — after the same checks a full verification makes: position, chain link,
//! signatures against the keys current at that point, the rules of the market; and the first
//! entry must register the operator's key. Each call to [`Replica::append`] is one atomic,
//! durable store write, so a replica that stops anywhere reopens where it was, without replaying.

use std::sync::Arc;

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{self, Checkpoint};
use crate::ids::{Origin, ParticipantId, PublicKey, Text, Timestamp};
use crate::merkle::{self, Hash};
use crate::state::StateCommitment;
use crate::store::{Append, Store};
use crate::verify::{replay_leaf, ReplayError, ReplayFault};

use super::{hex32, migrate, Head, LedgerError, StoreHistory, StoreNodes};

/// A verified copy of a ledger. See the module documentation.
#[derive(Debug)]
pub struct Replica {
    origin: Origin,
    operator: VerifyingKey,
    store: Arc<dyn Store>,
    head: Head,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("size", &self.tree.size())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens the replica of the ledger `origin`, whose checkpoints `operator` signs, kept in
    /// `store` (empty for a new replica).
    pub fn open(
        store: Box<dyn Store>,
        origin: Origin,
        operator: VerifyingKey,
    ) -> Result<Self, LedgerError> {
        let store: Arc<dyn Store> = Arc::from(store);
        let operator_public = PublicKey::from(operator);
        let head = match store.meta()? {
            Some(meta) => {
                let meta = migrate::to_current_layout(store.as_ref(), meta)?;
                Head::load(&store, meta, &origin, &operator_public)?
            }
            None => {
                let mut head = Head::empty_for(&origin, &operator_public);
                head.state
                    .keep_history_in(Arc::new(StoreHistory(Arc::clone(&store))));
                head
            }
        };
        Ok(Self {
            origin,
            operator,
            store,
            head,
        })
    }

    /// The ledger's origin.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The operator's key, which signs the ledger's checkpoints.
    pub fn operator_key(&self) -> &VerifyingKey {
        &self.operator
    }

    /// Entries held.
    pub fn size(&self) -> u64 {
        self.head.tree.size()
    }

    /// The Merkle root of the entries held.
    pub fn root(&self) -> Hash {
        self.head.tree.root()
    }

    /// The root of the tree at an earlier size, from the store.
    pub fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        if size == self.size() {
            return Ok(self.root());
        }
        Ok(merkle::root_at(size, &StoreNodes(self.store.as_ref()))?)
    }

    /// The commitment to the market's state after the entries held: what the state line of a
    /// checkpoint of this size must say.
    pub fn state_commitment(&self) -> Result<StateCommitment, LedgerError> {
        Ok(self
            .head
            .state
            .state_commitment(&self.head.commitment_time())?)
    }

    /// The store the replica keeps its copy in (its leaves can be read and served from there).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The last checkpoint kept with the replica (see [`Replica::keep_checkpoint`]).
    pub fn kept_checkpoint(&self) -> Result<Option<String>, LedgerError> {
        Ok(self.store.checkpoint()?)
    }

    /// Keeps a checkpoint of the ledger (signed by the operator, with any cosignatures) beside
    /// the copy, durably: a witness keeps the last one it cosigned, a mirror the last one it
    /// verified. It must be of a size the replica holds, with the replica's root at that size.
    pub fn keep_checkpoint(&self, note: &str) -> Result<Checkpoint, LedgerError> {
        let checkpoint = checkpoint::open_checkpoint(note, self.origin.as_str(), &self.operator)?;
        if checkpoint.size > self.size() || self.root_at(checkpoint.size)? != checkpoint.root {
            return Err(LedgerError::Integrity(format!(
                "the checkpoint of size {} is not of the copy held (size {})",
                checkpoint.size,
                self.size()
            )));
        }
        self.store.put_checkpoint(note)?;
        Ok(checkpoint)
    }

    /// Checks and appends the next leaves, as one durable write. Nothing is kept if any leaf
    /// fails; the error names the first that does.
    pub fn append(&mut self, leaves: &[Vec<u8>]) -> Result<(), LedgerError> {
        if leaves.is_empty() {
            return Ok(());
        }
        let first_seq = self.size();
        let end_before = self.head.log_end();
        let outcome = self.replay(leaves);
        let written = outcome.and_then(|nodes| {
            let changes = self.head.state.pending_changes()?;
            let mut meta = self.head.meta.clone();
            meta.size = self.head.tree.size();
            meta.peaks = self.head.tree.peaks().iter().map(hex32).collect();
            meta.last_leaf_hash = hex32(&self.head.last_leaf_hash);
            self.store.append(Append {
                first_seq,
                leaves,
                nodes: &nodes,
                state: &changes,
                meta: Some(&meta),
            })?;
            self.head.meta = meta;
            Ok(())
        });
        match written {
            Ok(()) => {
                self.head.state.settle();
                Ok(())
            }
            Err(error) => {
                self.head.state.revert();
                self.head.rewind(end_before);
                Err(error)
            }
        }
    }

    fn replay(&mut self, leaves: &[Vec<u8>]) -> Result<Vec<(merkle::NodeId, Hash)>, LedgerError> {
        let mut nodes = Vec::new();
        for leaf in leaves {
            let head = &mut self.head;
            let replayed = replay_leaf(
                &self.origin,
                &mut head.state,
                &mut head.tree,
                &mut head.last_leaf_hash,
                leaf,
            )?;
            head.last_accepted_at = Some(replayed.accepted_at);
            nodes.extend(replayed.nodes);
            if head.tree.size() == 1 {
                let operator = head
                    .state
                    .operator()
                    .and_then(|id| head.state.participant(id))
                    .map(|p| p.public_key.to_bytes());
                if operator != Some(self.operator.to_bytes()) {
                    return Err(ReplayError {
                        seq: 0,
                        fault: ReplayFault::Operator,
                    }
                    .into());
                }
            }
        }
        Ok(nodes)
    }

    /// The ledger's operator, once its first entry is held: its id and display name.
    pub fn operator(&self) -> Option<(ParticipantId, Text)> {
        let state = &self.head.state;
        let id = state.operator()?;
        state
            .participant(id)
            .map(|p| (p.id.clone(), p.name.clone()))
    }

    /// When the ledger accepted its last entry held here.
    pub fn last_accepted_at(&self) -> Option<&Timestamp> {
        self.head.last_accepted_at.as_ref()
    }
}
