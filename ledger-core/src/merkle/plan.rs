//! Which perfect nodes a proof needs — pure arithmetic on sizes and indexes — and fetching them
//! from a [`NodeSource`].

use super::compact::{fold_right, CompactTree};
use super::{Hash, NodeId, NodeSource, ProofError};

/// One element of a proof: a hash that the verifier combines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofElement {
    /// The root of a perfect subtree, read from the store as is.
    Node(NodeId),
    /// The root of a subtree that is not perfect, made of two or more perfect
    /// subtrees (largest first) that are hashed together from the right:
    /// `node_hash(n0, node_hash(n1, ... node_hash(n[k-2], n[k-1])))`.
    Ephemeral(Vec<NodeId>),
}

impl ProofElement {
    /// Returns the perfect nodes the element is made of, left first.
    #[must_use]
    pub fn nodes(&self) -> &[NodeId] {
        match self {
            ProofElement::Node(id) => std::slice::from_ref(id),
            ProofElement::Ephemeral(ids) => ids,
        }
    }

    /// Reads the element's nodes from `src` and returns its hash.
    ///
    /// # Errors
    ///
    /// Returns the error of `src` for a node it cannot provide.
    pub fn fetch(&self, src: &impl NodeSource) -> Result<Hash, ProofError> {
        let hashes = self
            .nodes()
            .iter()
            .map(|&id| src.node(id))
            .collect::<Result<Vec<_>, _>>()?;
        // Every element holds at least one node by construction.
        fold_right(&hashes).ok_or(ProofError::WrongProofLength {
            expected: 1,
            actual: 0,
        })
    }
}

/// Which perfect nodes a proof needs, in proof order; computed apart from
/// fetching them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProofPlan {
    elements: Vec<ProofElement>,
}

impl ProofPlan {
    /// Returns the proof's elements, in the order the proof lists them.
    #[must_use]
    pub fn elements(&self) -> &[ProofElement] {
        &self.elements
    }

    /// Returns the number of hashes in the proof.
    #[must_use]
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Returns whether the proof has no hashes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Returns every perfect node the proof reads, in proof order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.elements.iter().flat_map(|e| e.nodes().iter().copied())
    }

    /// Reads the planned nodes from `src` and returns the proof.
    ///
    /// # Errors
    ///
    /// Returns the error of `src` for a node it cannot provide.
    pub fn fetch(&self, src: &impl NodeSource) -> Result<Vec<Hash>, ProofError> {
        self.elements.iter().map(|e| e.fetch(src)).collect()
    }
}

/// Returns the largest power of two strictly smaller than `n`; `n` must be at
/// least 2.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// Returns the perfect subtrees, largest first, that make up the subtree of
/// the leaves `[start, end)` as RFC 9162 shapes it. Every range produced by
/// the RFC's recursion starts on a multiple of the largest power of two not
/// above its length, so each part is aligned.
fn range_nodes(start: u64, end: u64) -> Vec<NodeId> {
    let mut nodes = Vec::new();
    let mut at = start;
    while at < end {
        let remaining = end - at;
        // Largest power of two that fits in the remaining range and on whose
        // multiple `at` lies.
        let mut level = u64::BITS - 1 - remaining.leading_zeros();
        if at != 0 {
            level = level.min(at.trailing_zeros());
        }
        // `level` is below 64, so it fits in a u8.
        let level_u8 = u8::try_from(level).unwrap_or(u8::MAX);
        nodes.push(NodeId {
            level: level_u8,
            index: at >> level,
        });
        at += 1 << level;
    }
    nodes
}

fn element(start: u64, end: u64) -> ProofElement {
    let mut nodes = range_nodes(start, end);
    if nodes.len() == 1 {
        ProofElement::Node(nodes.remove(0))
    } else {
        ProofElement::Ephemeral(nodes)
    }
}

/// Which perfect nodes the inclusion proof of leaf `index` in the tree of
/// size `size` needs: RFC 9162 `PATH(index, D[size])`, from the leaf upward.
///
/// # Errors
///
/// Returns [`ProofError::IndexOutOfRange`] unless `index < size`.
pub fn inclusion_plan(index: u64, size: u64) -> Result<ProofPlan, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut elements = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index - lo < k {
            // PATH(m, D[0:k]) : MTH(D[k:n])
            elements.push(element(lo + k, hi));
            hi = lo + k;
        } else {
            // PATH(m - k, D[k:n]) : MTH(D[0:k])
            elements.push(element(lo, lo + k));
            lo += k;
        }
    }
    // The recursion appends each sibling after the deeper path.
    elements.reverse();
    Ok(ProofPlan { elements })
}

/// Which perfect nodes the consistency proof from the tree of size
/// `old_size` to the tree of size `new_size` needs: RFC 9162
/// `PROOF(old_size, D[new_size])`.
///
/// The proof is empty when `old_size` is 0 or equals `new_size`.
///
/// # Errors
///
/// Returns [`ProofError::OldSizeExceedsNew`] if `old_size > new_size`.
pub fn consistency_plan(old_size: u64, new_size: u64) -> Result<ProofPlan, ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeExceedsNew { old_size, new_size });
    }
    let mut elements = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(ProofPlan { elements });
    }
    // SUBPROOF(m, D[lo:hi], b), with m = old_size - lo.
    let (mut lo, mut hi, mut whole_old_tree) = (0u64, new_size, true);
    loop {
        if old_size == hi {
            // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if !whole_old_tree {
                elements.push(element(lo, hi));
            }
            break;
        }
        let k = split_point(hi - lo);
        if old_size - lo <= k {
            // SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            elements.push(element(lo + k, hi));
            hi = lo + k;
        } else {
            // SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            elements.push(element(lo, lo + k));
            lo += k;
            whole_old_tree = false;
        }
    }
    elements.reverse();
    Ok(ProofPlan { elements })
}

/// Which perfect nodes make up the root of the tree of size `size`: its
/// peaks, largest first. Their hashes folded from the right give the root;
/// an empty list stands for the empty tree.
#[must_use]
pub fn root_plan(size: u64) -> Vec<NodeId> {
    range_nodes(0, size)
}

/// Returns the inclusion proof of leaf `index` in the tree of size `size`,
/// reading perfect nodes from `src`.
///
/// # Errors
///
/// Returns [`ProofError::IndexOutOfRange`] unless `index < size`, and the
/// error of `src` for a node it cannot provide.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    src: &impl NodeSource,
) -> Result<Vec<Hash>, ProofError> {
    inclusion_plan(index, size)?.fetch(src)
}

/// Returns the consistency proof from the tree of size `old_size` to the tree
/// of size `new_size`, reading perfect nodes from `src`.
///
/// # Errors
///
/// Returns [`ProofError::OldSizeExceedsNew`] if `old_size > new_size`, and
/// the error of `src` for a node it cannot provide.
pub fn consistency_proof(
    old_size: u64,
    new_size: u64,
    src: &impl NodeSource,
) -> Result<Vec<Hash>, ProofError> {
    consistency_plan(old_size, new_size)?.fetch(src)
}

/// Returns the root hash of the tree of size `size`, reading its peaks from
/// `src`. The root of the empty tree is [`empty_root`](super::empty_root).
///
/// # Errors
///
/// Returns the error of `src` for a node it cannot provide.
pub fn root_at(size: u64, src: &impl NodeSource) -> Result<Hash, ProofError> {
    Ok(CompactTree::from_source(size, src)?.root())
}
