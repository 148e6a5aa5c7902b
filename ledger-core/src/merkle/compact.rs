//! The tree's right edge, in O(log n) memory.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::plan::root_plan;
use super::{empty_root, node_hash, Hash, NodeId, NodeSource, ProofError};

/// The tree's right edge: O(log n) memory.
///
/// A tree of size `n` is the sequence of perfect subtrees given by the binary
/// digits of `n`, largest first; their roots are the *peaks*. The tree's root
/// is the peaks hashed together from the right.
///
/// Serialized as `{"size": n, "peaks": ["<hex>", ...]}`; deserializing checks
/// that the number of peaks matches the size.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CompactTreeRepr", into = "CompactTreeRepr")]
pub struct CompactTree {
    size: u64,
    peaks: Vec<Hash>,
}

impl fmt::Debug for CompactTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompactTree")
            .field("size", &self.size)
            .field(
                "peaks",
                &self.peaks.iter().map(hex::encode).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for CompactTree {
    fn default() -> Self {
        Self::new()
    }
}

impl CompactTree {
    /// Returns the empty tree.
    #[must_use]
    pub fn new() -> Self {
        CompactTree {
            size: 0,
            peaks: Vec::new(),
        }
    }

    /// Rebuilds a tree from its size and peaks, left (largest) first.
    ///
    /// # Errors
    ///
    /// Returns [`ProofError::PeakCountMismatch`] unless there is exactly one
    /// peak per set bit of `size`.
    pub fn from_parts(size: u64, peaks: Vec<Hash>) -> Result<Self, ProofError> {
        let expected = peak_count(size);
        if peaks.len() != expected {
            return Err(ProofError::PeakCountMismatch {
                size,
                expected,
                actual: peaks.len(),
            });
        }
        Ok(CompactTree { size, peaks })
    }

    /// Rebuilds the right edge of the tree of size `size` from the perfect
    /// nodes in `src`.
    ///
    /// # Errors
    ///
    /// Returns the error of `src` for a node it cannot provide.
    pub fn from_source(size: u64, src: &impl NodeSource) -> Result<Self, ProofError> {
        let peaks = root_plan(size)
            .into_iter()
            .map(|id| src.node(id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompactTree { size, peaks })
    }

    /// Returns the number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Returns the roots of the perfect subtrees of the right edge, left
    /// (largest) first.
    #[must_use]
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Returns the ids of the peaks, in the order of [`CompactTree::peaks`].
    #[must_use]
    pub fn peak_ids(&self) -> Vec<NodeId> {
        root_plan(self.size)
    }

    /// Returns the root hash of the tree.
    pub fn root(&self) -> Hash {
        fold_right(&self.peaks).unwrap_or_else(empty_root)
    }

    /// Appends a leaf hash; returns every perfect node that became complete,
    /// the leaf itself (level 0) first, so a store can persist them.
    ///
    /// # Errors
    ///
    /// Returns [`ProofError::TreeFull`] if the tree already holds `u64::MAX`
    /// leaves; the tree is left unchanged.
    pub fn append(&mut self, leaf_hash: Hash) -> Result<Vec<(NodeId, Hash)>, ProofError> {
        let new_size = self.size.checked_add(1).ok_or(ProofError::TreeFull)?;
        let mut completed = vec![(NodeId::leaf(self.size), leaf_hash)];
        let mut hash = leaf_hash;
        let mut id = NodeId::leaf(self.size);
        // Each trailing one bit of the old size is a peak of the same level
        // as the node just completed: merge them.
        let mut merges = self.size.trailing_ones();
        while merges > 0 {
            let Some(left) = self.peaks.pop() else {
                // Unreachable: the constructors keep one peak per set bit.
                return Err(ProofError::PeakCountMismatch {
                    size: self.size,
                    expected: peak_count(self.size),
                    actual: self.peaks.len(),
                });
            };
            hash = node_hash(&left, &hash);
            id = NodeId {
                level: id.level + 1,
                index: id.index >> 1,
            };
            completed.push((id, hash));
            merges -= 1;
        }
        self.peaks.push(hash);
        self.size = new_size;
        Ok(completed)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompactTreeRepr {
    size: u64,
    peaks: Vec<HexHash>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
struct HexHash(Hash);

impl TryFrom<String> for HexHash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|e| format!("a hash must be 64 hexadecimal digits: {e}"))?;
        Ok(HexHash(out))
    }
}

impl From<HexHash> for String {
    fn from(h: HexHash) -> String {
        hex::encode(h.0)
    }
}

impl TryFrom<CompactTreeRepr> for CompactTree {
    type Error = ProofError;
    fn try_from(r: CompactTreeRepr) -> Result<Self, ProofError> {
        CompactTree::from_parts(r.size, r.peaks.into_iter().map(|h| h.0).collect())
    }
}

impl From<CompactTree> for CompactTreeRepr {
    fn from(t: CompactTree) -> Self {
        CompactTreeRepr {
            size: t.size,
            peaks: t.peaks.into_iter().map(HexHash).collect(),
        }
    }
}

pub(super) fn peak_count(size: u64) -> usize {
    // At most 64, so the conversion cannot fail.
    usize::try_from(size.count_ones()).unwrap_or(usize::MAX)
}

/// Hashes a non-empty list of subtree roots together from the right.
pub(super) fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(*last, |acc, left| node_hash(left, &acc)),
    )
}
