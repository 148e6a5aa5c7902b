//! The ledger's Merkle tree, as defined by RFC 9162 (Certificate Transparency
//! version 2.0), section 2.1.
//!
//! The tree is append-only. Its hashes are:
//!
//! * the hash of an empty tree: SHA-256 of the empty string ([`empty_root`]);
//! * the hash of a leaf: SHA-256(0x00 || leaf) ([`leaf_hash`]);
//! * the hash of an interior node: SHA-256(0x01 || left || right)
//!   ([`node_hash`]).
//!
//! A tree of `n > 1` leaves is split into a left subtree holding the largest
//! power of two smaller than `n` leaves and a right subtree holding the rest.
//!
//! # Storage and proofs
//!
//! Only *perfect* subtrees (a power-of-two number of leaves, aligned on that
//! power of two) ever stop changing, so they are the only nodes a store keeps.
//! Each is named by a [`NodeId`]. [`CompactTree`] holds the right edge of the
//! tree in O(log n) memory and, on every append, hands back the perfect nodes
//! that became complete so the store can persist them.
//!
//! Proofs are produced in two steps. A *plan* ([`inclusion_plan`],
//! [`consistency_plan`], [`root_plan`]) is pure arithmetic: it lists the
//! perfect nodes each proof element is made of. Fetching
//! ([`inclusion_proof`], [`consistency_proof`], [`root_at`]) reads those nodes
//! from a [`NodeSource`] and hashes together the elements that are not perfect
//! subtrees (the right edge of a tree whose size is not a power of two).
//! Proof shapes are exactly those of RFC 9162 §2.1.3.1 (`PATH`) and §2.1.4.1
//! (`PROOF`/`SUBPROOF`); [`verify_inclusion`] and [`verify_consistency`] are
//! exactly the algorithms of §2.1.3.2 and §2.1.4.2.
//!
//! Code map: [`hash`] (the hashes), [`compact`] (the right edge), [`plan`] (which nodes a proof
//! needs, and fetching them), [`verify`] (checking proofs, one shared walk up the tree).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub mod compact;
pub mod hash;
pub mod plan;
pub mod verify;

pub use compact::CompactTree;
pub use hash::{empty_root, hashes_from_hex, leaf_hash, node_hash, Hash};
pub use plan::{
    consistency_plan, consistency_proof, inclusion_plan, inclusion_proof, root_at, root_plan,
    ProofElement, ProofPlan,
};
pub use verify::{verify_consistency, verify_inclusion};

/// A perfect subtree: level `L`, index `i` covers leaves `[i*2^L, (i+1)*2^L)`.
///
/// Level 0 nodes are leaves; the node at level `L + 1`, index `i` is the
/// parent of the nodes at level `L`, indices `2i` and `2i + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    /// The height of the subtree above its leaves (0 for a leaf).
    pub level: u8,
    /// The position of the subtree among those of its level, from the left.
    pub index: u64,
}

impl NodeId {
    /// Returns the id of the leaf at position `index`.
    #[must_use]
    pub fn leaf(index: u64) -> Self {
        NodeId { level: 0, index }
    }

    /// Returns the first leaf the subtree covers, or `None` if that position
    /// does not fit in a `u64`.
    #[must_use]
    pub fn first_leaf(&self) -> Option<u64> {
        checked_shl(self.index, self.level)
    }

    /// Returns the number of leaves the subtree covers, or `None` if that
    /// number does not fit in a `u64`.
    #[must_use]
    pub fn leaf_count(&self) -> Option<u64> {
        checked_shl(1, self.level)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node (level {}, index {})", self.level, self.index)
    }
}

fn checked_shl(value: u64, shift: u8) -> Option<u64> {
    let shift = u32::from(shift);
    if shift >= u64::BITS {
        return if value == 0 { Some(0) } else { None };
    }
    let shifted = value << shift;
    (shifted >> shift == value).then_some(shifted)
}

/// Why a tree operation, a proof, or its verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// A leaf index is not smaller than the tree size it is meant to be in.
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size it was checked against.
        size: u64,
    },
    /// A consistency proof was asked for from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeExceedsNew {
        /// The size of the earlier tree.
        old_size: u64,
        /// The size of the later tree.
        new_size: u64,
    },
    /// A tree size is larger than the trees the caller or store holds.
    #[error("tree size {size} exceeds the available tree size {available}")]
    SizeUnavailable {
        /// The requested tree size.
        size: u64,
        /// The size of the tree actually available.
        available: u64,
    },
    /// A proof does not have the number of elements the RFC 9162 algorithm
    /// requires for the given sizes.
    #[error("proof has {actual} hashes where {expected} are required")]
    WrongProofLength {
        /// The number of hashes the proof must have.
        expected: usize,
        /// The number of hashes the proof has.
        actual: usize,
    },
    /// An inclusion proof leads to a root other than the expected one.
    #[error("inclusion proof leads to a root hash other than the expected root")]
    RootMismatch,
    /// A consistency proof does not reproduce the root of the earlier tree.
    #[error("consistency proof does not reproduce the old root hash")]
    OldRootMismatch,
    /// A consistency proof does not reproduce the root of the later tree.
    #[error("consistency proof does not reproduce the new root hash")]
    NewRootMismatch,
    /// A node that a proof needs is not in the node source.
    #[error("{0} is not in the node store")]
    MissingNode(NodeId),
    /// The node source failed for a reason other than a missing node.
    #[error("node store failed: {0}")]
    Source(String),
    /// The compact tree's peaks do not match its size: a tree of size `n`
    /// has exactly one peak per set bit of `n`.
    #[error("a tree of size {size} has {expected} peaks, but {actual} were given")]
    PeakCountMismatch {
        /// The tree size.
        size: u64,
        /// The number of peaks a tree of that size has.
        expected: usize,
        /// The number of peaks given.
        actual: usize,
    },
    /// The tree already holds the largest number of leaves a `u64` counts.
    #[error("the tree is full: it cannot hold more than {max} leaves", max = u64::MAX)]
    TreeFull,
}

/// Where proofs read the hashes of perfect subtrees from (the store
/// implements it).
pub trait NodeSource {
    /// Returns the hash of the perfect subtree `id`.
    ///
    /// # Errors
    ///
    /// Returns [`ProofError::MissingNode`] if the node is not stored, or
    /// [`ProofError::Source`] if the store itself failed.
    fn node(&self, id: NodeId) -> Result<Hash, ProofError>;
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    fn node(&self, id: NodeId) -> Result<Hash, ProofError> {
        (**self).node(id)
    }
}

/// Perfect-subtree hashes held in memory, for tests and in-memory ledgers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryNodes(HashMap<NodeId, Hash>);

impl MemoryNodes {
    /// Returns an empty node set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores the hash of one node, replacing any earlier hash for it.
    pub fn insert(&mut self, id: NodeId, hash: Hash) {
        self.0.insert(id, hash);
    }

    /// Returns the number of stored nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Returns whether no node is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Extend<(NodeId, Hash)> for MemoryNodes {
    fn extend<I: IntoIterator<Item = (NodeId, Hash)>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl FromIterator<(NodeId, Hash)> for MemoryNodes {
    fn from_iter<I: IntoIterator<Item = (NodeId, Hash)>>(iter: I) -> Self {
        MemoryNodes(iter.into_iter().collect())
    }
}

impl NodeSource for MemoryNodes {
    fn node(&self, id: NodeId) -> Result<Hash, ProofError> {
        self.0.get(&id).copied().ok_or(ProofError::MissingNode(id))
    }
}

#[cfg(test)]
mod tests;
