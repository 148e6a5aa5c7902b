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

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A SHA-256 digest: the hash of a leaf, of a node, or of a whole tree.
pub type Hash = [u8; 32];

/// Returns the hash of a leaf: SHA-256(0x00 || `leaf`).
#[must_use]
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// Returns the hash of an interior node: SHA-256(0x01 || `left` || `right`).
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Returns the root hash of the empty tree: SHA-256 of the empty string.
#[must_use]
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

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

fn peak_count(size: u64) -> usize {
    // At most 64, so the conversion cannot fail.
    usize::try_from(size.count_ones()).unwrap_or(usize::MAX)
}

/// Hashes a non-empty list of subtree roots together from the right.
fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(*last, |acc, left| node_hash(left, &acc)),
    )
}

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
/// `src`. The root of the empty tree is [`empty_root`].
///
/// # Errors
///
/// Returns the error of `src` for a node it cannot provide.
pub fn root_at(size: u64, src: &impl NodeSource) -> Result<Hash, ProofError> {
    Ok(CompactTree::from_source(size, src)?.root())
}

/// Checks that `leaf_hash` is the leaf at `index` of the tree of size `size`
/// whose root is `root`, with the algorithm of RFC 9162 §2.1.3.2.
///
/// # Errors
///
/// Returns [`ProofError::IndexOutOfRange`] unless `index < size`,
/// [`ProofError::WrongProofLength`] if the proof is not as long as the tree
/// shape requires, and [`ProofError::RootMismatch`] if the proof leads to
/// another root.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // 1. leaf_index must be smaller than tree_size.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_plan(index, size)?.len();
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    // 2. fn = leaf_index, sn = tree_size - 1; 3. r = hash.
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf_hash;
    // 4. Fold in each proof element.
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. sn must be 0 and r must equal the root.
    if s_n != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of size `old_size` with root `old_root` is a prefix of
/// the tree of size `new_size` with root `new_root`, with the algorithm of
/// RFC 9162 §2.1.4.2.
///
/// The RFC defines proofs for `0 < old_size < new_size`. For the other sizes
/// the proof must be empty, and:
///
/// * if `old_size == 0`, `old_root` must be the root of the empty tree (and
///   so must `new_root` if `new_size` is 0 too); every tree extends it;
/// * if `old_size == new_size`, the two roots must be equal.
///
/// # Errors
///
/// Returns [`ProofError::OldSizeExceedsNew`] if `old_size > new_size`,
/// [`ProofError::WrongProofLength`] if the proof is not as long as the sizes
/// require, and [`ProofError::OldRootMismatch`] or
/// [`ProofError::NewRootMismatch`] if the proof does not reproduce a root.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let expected = consistency_plan(old_size, new_size)?.len();
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if old_size == 0 {
        if *old_root != empty_root() {
            return Err(ProofError::OldRootMismatch);
        }
        if new_size == 0 && *new_root != empty_root() {
            return Err(ProofError::NewRootMismatch);
        }
        return Ok(());
    }
    if old_size == new_size {
        if old_root != new_root {
            return Err(ProofError::NewRootMismatch);
        }
        return Ok(());
    }
    // 1. An empty consistency_path fails (cannot happen past the length
    // check, since 0 < old_size < new_size needs at least one hash).
    if proof.is_empty() {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: 0,
        });
    }
    // 2. If first is an exact power of 2, prepend first_hash.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof.iter());
    // 3. fn = first - 1, sn = second - 1.
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    // 4. Right-shift both while LSB(fn) is set.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. fr = sr = first value of the path.
    let Some((&first, rest)) = path.split_first() else {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: 0,
        });
    };
    let (mut f_r, mut s_r) = (*first, *first);
    // 6. Fold in each subsequent value.
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // 7. fr must equal first_hash, sr second_hash, and sn must be 0.
    if s_n != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if f_r != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if s_r != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::cell::RefCell;

    // ---------------------------------------------------------------
    // Reference: RFC 9162 MTH, PATH and SUBPROOF written as recursions
    // over a slice of leaf hashes, with subtree hashes memoized by range.
    // ---------------------------------------------------------------

    struct Reference {
        leaves: Vec<Hash>,
        memo: RefCell<HashMap<(usize, usize), Hash>>,
    }

    fn k_of(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    impl Reference {
        fn new(leaves: Vec<Hash>) -> Self {
            Reference {
                leaves,
                memo: RefCell::new(HashMap::new()),
            }
        }

        /// MTH(D[lo:hi]).
        fn mth(&self, lo: usize, hi: usize) -> Hash {
            let n = hi - lo;
            if n == 0 {
                return empty_root();
            }
            if n == 1 {
                return self.leaves[lo];
            }
            if let Some(h) = self.memo.borrow().get(&(lo, hi)) {
                return *h;
            }
            let k = k_of(n);
            let h = node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi));
            self.memo.borrow_mut().insert((lo, hi), h);
            h
        }

        /// PATH(m, D[lo:hi]), m relative to lo.
        fn path(&self, m: usize, lo: usize, hi: usize) -> Vec<Hash> {
            let n = hi - lo;
            if n <= 1 {
                return Vec::new();
            }
            let k = k_of(n);
            if m < k {
                let mut p = self.path(m, lo, lo + k);
                p.push(self.mth(lo + k, hi));
                p
            } else {
                let mut p = self.path(m - k, lo + k, hi);
                p.push(self.mth(lo, lo + k));
                p
            }
        }

        /// SUBPROOF(m, D[lo:hi], b), m relative to lo.
        fn subproof(&self, m: usize, lo: usize, hi: usize, b: bool) -> Vec<Hash> {
            let n = hi - lo;
            if m == n {
                return if b {
                    Vec::new()
                } else {
                    vec![self.mth(lo, hi)]
                };
            }
            let k = k_of(n);
            if m <= k {
                let mut p = self.subproof(m, lo, lo + k, b);
                p.push(self.mth(lo + k, hi));
                p
            } else {
                let mut p = self.subproof(m - k, lo + k, hi, false);
                p.push(self.mth(lo, lo + k));
                p
            }
        }

        /// PROOF(m, D[n]); empty outside 0 < m < n.
        fn proof(&self, m: usize, n: usize) -> Vec<Hash> {
            if m == 0 || m >= n {
                Vec::new()
            } else {
                self.subproof(m, 0, n, true)
            }
        }
    }

    /// A tree built both ways: by appending to a `CompactTree` (persisting
    /// the completed nodes) and as a reference.
    struct Built {
        tree: CompactTree,
        nodes: MemoryNodes,
        reference: Reference,
    }

    fn build(leaf_hashes: &[Hash]) -> Built {
        let mut tree = CompactTree::new();
        let mut nodes = MemoryNodes::new();
        for h in leaf_hashes {
            nodes.extend(tree.append(*h).expect("tree not full"));
        }
        Built {
            tree,
            nodes,
            reference: Reference::new(leaf_hashes.to_vec()),
        }
    }

    fn synthetic_leaves(seed: u64, n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let mut data = seed.to_be_bytes().to_vec();
                data.extend_from_slice(&(i as u64).to_be_bytes());
                leaf_hash(&data)
            })
            .collect()
    }

    fn to_u64(n: usize) -> u64 {
        u64::try_from(n).expect("fits")
    }

    fn flip(mut h: Hash, bit: usize) -> Hash {
        h[bit / 8 % 32] ^= 1 << (bit % 8);
        h
    }

    // ---------------------------------------------------------------
    // The step sequence of the RFC 9162 verification algorithms, without
    // hashing: two calls with equal traces perform the same hash
    // computation, so a proof valid for one is valid for the other.
    // ---------------------------------------------------------------

    fn inclusion_trace(index: u64, size: u64, len: usize) -> Option<Vec<bool>> {
        if index >= size {
            return None;
        }
        let (mut f_n, mut s_n) = (index, size - 1);
        let mut trace = Vec::new();
        for _ in 0..len {
            if s_n == 0 {
                return None;
            }
            let left = f_n & 1 == 1 || f_n == s_n;
            trace.push(left);
            if left && f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        (s_n == 0).then_some(trace)
    }

    fn consistency_trace(old: u64, new: u64, len: usize) -> Option<(bool, Vec<bool>)> {
        if old == 0 || old >= new || len == 0 {
            return None;
        }
        let prepend = old.is_power_of_two();
        let total = len + usize::from(prepend);
        let (mut f_n, mut s_n) = (old - 1, new - 1);
        while f_n & 1 == 1 {
            f_n >>= 1;
            s_n >>= 1;
        }
        let mut trace = Vec::new();
        for _ in 1..total {
            if s_n == 0 {
                return None;
            }
            let both = f_n & 1 == 1 || f_n == s_n;
            trace.push(both);
            if both && f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        (s_n == 0).then_some((prepend, trace))
    }

    // ---------------------------------------------------------------
    // Known-answer vectors.
    // ---------------------------------------------------------------

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Vectors {
        #[allow(dead_code)]
        description: String,
        leaves: Vec<String>,
        roots: Vec<RootVector>,
        inclusion: Vec<InclusionVector>,
        consistency: Vec<ConsistencyVector>,
        negative: Vec<NegativeVector>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RootVector {
        size: u64,
        root: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct InclusionVector {
        index: u64,
        size: u64,
        proof: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ConsistencyVector {
        old_size: u64,
        new_size: u64,
        proof: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    enum NegativeVector {
        Inclusion {
            name: String,
            #[allow(dead_code)]
            mutation: String,
            leaf_hash: String,
            index: u64,
            size: u64,
            proof: Vec<String>,
            root: String,
            error: String,
        },
        Consistency {
            name: String,
            #[allow(dead_code)]
            mutation: String,
            old_size: u64,
            new_size: u64,
            old_root: String,
            new_root: String,
            proof: Vec<String>,
            error: String,
        },
    }

    const VECTORS: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/merkle.json"));

    fn vectors() -> Vectors {
        serde_json::from_str(VECTORS).expect("merkle.json parses")
    }

    fn h(s: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).expect("32-byte hex hash");
        out
    }

    fn hs(v: &[String]) -> Vec<Hash> {
        v.iter().map(|s| h(s)).collect()
    }

    fn error_name(e: &ProofError) -> &'static str {
        match e {
            ProofError::IndexOutOfRange { .. } => "index-out-of-range",
            ProofError::OldSizeExceedsNew { .. } => "old-size-exceeds-new",
            ProofError::WrongProofLength { .. } => "wrong-proof-length",
            ProofError::RootMismatch => "root-mismatch",
            ProofError::OldRootMismatch => "old-root-mismatch",
            ProofError::NewRootMismatch => "new-root-mismatch",
            _ => "other",
        }
    }

    fn vector_tree() -> (Vectors, Built) {
        let v = vectors();
        let leaves: Vec<Hash> = v
            .leaves
            .iter()
            .map(|x| leaf_hash(&hex::decode(x).expect("hex leaf")))
            .collect();
        let built = build(&leaves);
        (v, built)
    }

    #[test]
    fn known_roots() {
        let (v, built) = vector_tree();
        assert_eq!(v.roots.len(), 9);
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Published root of the one-leaf tree of the empty input.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let mut tree = CompactTree::new();
        for r in &v.roots {
            assert_eq!(tree.size(), r.size);
            assert_eq!(tree.root(), h(&r.root), "compact root at size {}", r.size);
            assert_eq!(
                root_at(r.size, &built.nodes).expect("nodes stored"),
                h(&r.root),
                "stored root at size {}",
                r.size
            );
            if let Some(leaf) = v.leaves.get(usize::try_from(r.size).expect("small")) {
                tree.append(leaf_hash(&hex::decode(leaf).expect("hex")))
                    .expect("tree not full");
            }
        }
        assert_eq!(
            hex::encode(built.tree.root()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    #[test]
    fn known_inclusion_proofs() {
        let (v, built) = vector_tree();
        assert_eq!(v.inclusion.len(), 36);
        for c in &v.inclusion {
            let expected = hs(&c.proof);
            let got = inclusion_proof(c.index, c.size, &built.nodes).expect("proof");
            assert_eq!(got, expected, "inclusion {} in {}", c.index, c.size);
            let leaf = built.reference.leaves[usize::try_from(c.index).expect("small")];
            let root = root_at(c.size, &built.nodes).expect("root");
            verify_inclusion(&leaf, c.index, c.size, &expected, &root).expect("verifies");
        }
    }

    #[test]
    fn known_consistency_proofs() {
        let (v, built) = vector_tree();
        assert_eq!(v.consistency.len(), 44);
        for c in &v.consistency {
            let expected = hs(&c.proof);
            let got = consistency_proof(c.old_size, c.new_size, &built.nodes).expect("proof");
            assert_eq!(
                got, expected,
                "consistency {} to {}",
                c.old_size, c.new_size
            );
            let old_root = root_at(c.old_size, &built.nodes).expect("root");
            let new_root = root_at(c.new_size, &built.nodes).expect("root");
            verify_consistency(c.old_size, c.new_size, &old_root, &new_root, &expected)
                .expect("verifies");
        }
    }

    #[test]
    fn known_negative_cases() {
        let v = vectors();
        assert_eq!(v.negative.len(), 30);
        for case in &v.negative {
            let (name, result, error) = match case {
                NegativeVector::Inclusion {
                    name,
                    leaf_hash,
                    index,
                    size,
                    proof,
                    root,
                    error,
                    ..
                } => (
                    name,
                    verify_inclusion(&h(leaf_hash), *index, *size, &hs(proof), &h(root)),
                    error,
                ),
                NegativeVector::Consistency {
                    name,
                    old_size,
                    new_size,
                    old_root,
                    new_root,
                    proof,
                    error,
                    ..
                } => (
                    name,
                    verify_consistency(
                        *old_size,
                        *new_size,
                        &h(old_root),
                        &h(new_root),
                        &hs(proof),
                    ),
                    error,
                ),
            };
            match result {
                Ok(()) => panic!("negative case {name} verified"),
                Err(e) => assert_eq!(error_name(&e), error, "negative case {name}: {e}"),
            }
        }
    }

    // ---------------------------------------------------------------
    // Unit tests.
    // ---------------------------------------------------------------

    #[test]
    fn append_reports_completed_nodes() {
        let mut tree = CompactTree::new();
        let leaves = synthetic_leaves(1, 8);
        let reference = Reference::new(leaves.clone());
        let mut all = Vec::new();
        for (i, leaf) in leaves.iter().enumerate() {
            let completed = tree.append(*leaf).expect("tree not full");
            assert_eq!(completed[0], (NodeId::leaf(to_u64(i)), *leaf));
            // A leaf completes one node per trailing one bit of its index.
            assert_eq!(completed.len(), 1 + (i as u64).trailing_ones() as usize);
            for (id, hash) in &completed {
                let first = usize::try_from(id.first_leaf().expect("fits")).expect("fits");
                let count = usize::try_from(id.leaf_count().expect("fits")).expect("fits");
                assert_eq!(*hash, reference.mth(first, first + count), "{id}");
            }
            all.extend(completed);
        }
        // Every perfect node of the eight-leaf tree, each reported once.
        assert_eq!(all.len(), 8 + 4 + 2 + 1);
        assert_eq!(
            all.last().map(|(id, _)| *id),
            Some(NodeId { level: 3, index: 0 })
        );
        assert_eq!(tree.peaks().len(), 1);
    }

    #[test]
    fn from_parts_checks_peak_count() {
        assert!(CompactTree::from_parts(0, vec![]).is_ok());
        assert!(CompactTree::from_parts(5, vec![[0; 32], [1; 32]]).is_ok());
        assert_eq!(
            CompactTree::from_parts(5, vec![[0; 32]]),
            Err(ProofError::PeakCountMismatch {
                size: 5,
                expected: 2,
                actual: 1
            })
        );
        assert!(CompactTree::from_parts(0, vec![[0; 32]]).is_err());
    }

    #[test]
    fn full_tree_refuses_to_grow() {
        let peaks = vec![[7u8; 32]; 64];
        let mut tree = CompactTree::from_parts(u64::MAX, peaks).expect("valid parts");
        let before = tree.clone();
        assert_eq!(tree.append([0; 32]), Err(ProofError::TreeFull));
        assert_eq!(tree, before);
    }

    #[test]
    fn compact_tree_serde_round_trip() {
        let built = build(&synthetic_leaves(2, 11));
        let json = serde_json::to_string(&built.tree).expect("serializes");
        assert!(json.starts_with("{\"size\":11,\"peaks\":[\""), "{json}");
        let back: CompactTree = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, built.tree);
        // A peak count that does not match the size is refused.
        let bad = json.replace("\"size\":11", "\"size\":12");
        assert!(serde_json::from_str::<CompactTree>(&bad).is_err());
        // So is a malformed hash.
        let bad = r#"{"size":1,"peaks":["00"]}"#;
        assert!(serde_json::from_str::<CompactTree>(bad).is_err());
    }

    #[test]
    fn compact_tree_from_source_matches() {
        let built = build(&synthetic_leaves(3, 21));
        for size in 0..=21u64 {
            let t = CompactTree::from_source(size, &built.nodes).expect("nodes stored");
            assert_eq!(t.size(), size);
            assert_eq!(t.peak_ids(), root_plan(size));
            assert_eq!(
                t.root(),
                built.reference.mth(0, usize::try_from(size).expect("fits"))
            );
        }
    }

    #[test]
    fn plans_describe_ephemeral_nodes() {
        // Leaf 0 in a tree of 7: siblings are leaf 1, nodes [2,4) and the
        // right edge [4,7) made of node (1,2) and leaf 6.
        let plan = inclusion_plan(0, 7).expect("in range");
        assert_eq!(
            plan.elements(),
            &[
                ProofElement::Node(NodeId::leaf(1)),
                ProofElement::Node(NodeId { level: 1, index: 1 }),
                ProofElement::Ephemeral(vec![NodeId { level: 1, index: 2 }, NodeId::leaf(6)]),
            ]
        );
        assert_eq!(plan.node_ids().count(), 4);
        assert_eq!(
            root_plan(13),
            vec![
                NodeId { level: 3, index: 0 },
                NodeId { level: 2, index: 2 },
                NodeId::leaf(12)
            ]
        );
        assert!(root_plan(0).is_empty());
        assert!(consistency_plan(0, 9).expect("valid").is_empty());
        assert!(consistency_plan(9, 9).expect("valid").is_empty());
    }

    #[test]
    fn plans_reject_bad_arguments() {
        assert_eq!(
            inclusion_plan(3, 3),
            Err(ProofError::IndexOutOfRange { index: 3, size: 3 })
        );
        assert_eq!(
            inclusion_plan(0, 0),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            consistency_plan(4, 3),
            Err(ProofError::OldSizeExceedsNew {
                old_size: 4,
                new_size: 3
            })
        );
    }

    #[test]
    fn plans_for_huge_trees_are_well_formed() {
        for size in [
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) + 1,
            (1 << 40) + 12345,
        ] {
            let peaks = root_plan(size);
            assert_eq!(peaks.len(), size.count_ones() as usize);
            let total: u64 = peaks.iter().map(|p| p.leaf_count().expect("fits")).sum();
            assert_eq!(total, size);
            for index in [0, 1, size / 3, size - 2, size - 1] {
                let plan = inclusion_plan(index, size).expect("in range");
                assert!(plan.len() <= 64);
            }
            for old in [1, 2, size / 2, size - 1] {
                let plan = consistency_plan(old, size).expect("valid");
                assert!(plan.len() <= 2 * 64);
            }
        }
    }

    #[test]
    fn missing_nodes_are_reported() {
        let built = build(&synthetic_leaves(4, 6));
        let mut partial = built.nodes.clone();
        partial.0.remove(&NodeId { level: 1, index: 2 });
        assert_eq!(
            inclusion_proof(0, 6, &partial),
            Err(ProofError::MissingNode(NodeId { level: 1, index: 2 }))
        );
        assert_eq!(
            root_at(6, &partial),
            Err(ProofError::MissingNode(NodeId { level: 1, index: 2 }))
        );
        assert_eq!(
            root_at(7, &built.nodes),
            Err(ProofError::MissingNode(NodeId::leaf(6)))
        );
        let msg = ProofError::MissingNode(NodeId::leaf(6)).to_string();
        assert_eq!(msg, "node (level 0, index 6) is not in the node store");
    }

    #[test]
    fn consistency_edge_cases() {
        let built = build(&synthetic_leaves(5, 4));
        let r = |n: u64| built.reference.mth(0, usize::try_from(n).expect("fits"));
        let e = empty_root();
        assert_eq!(verify_consistency(0, 0, &e, &e, &[]), Ok(()));
        assert_eq!(verify_consistency(0, 3, &e, &r(3), &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 3, &r(1), &r(3), &[]),
            Err(ProofError::OldRootMismatch)
        );
        assert_eq!(
            verify_consistency(0, 0, &e, &r(1), &[]),
            Err(ProofError::NewRootMismatch)
        );
        assert_eq!(verify_consistency(3, 3, &r(3), &r(3), &[]), Ok(()));
        assert_eq!(
            verify_consistency(3, 3, &r(3), &r(4), &[]),
            Err(ProofError::NewRootMismatch)
        );
        assert_eq!(
            verify_consistency(3, 3, &r(3), &r(3), &[r(3)]),
            Err(ProofError::WrongProofLength {
                expected: 0,
                actual: 1
            })
        );
        assert_eq!(
            verify_consistency(0, 2, &e, &r(2), &[e]),
            Err(ProofError::WrongProofLength {
                expected: 0,
                actual: 1
            })
        );
    }

    #[test]
    fn inclusion_single_leaf() {
        let leaf = leaf_hash(b"data");
        assert_eq!(verify_inclusion(&leaf, 0, 1, &[], &leaf), Ok(()));
        assert_eq!(
            verify_inclusion(&leaf, 0, 1, &[], &empty_root()),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(
            verify_inclusion(&leaf, 1, 1, &[], &leaf),
            Err(ProofError::IndexOutOfRange { index: 1, size: 1 })
        );
    }

    #[test]
    fn every_proof_in_small_trees() {
        for n in 1..=40usize {
            let built = build(&synthetic_leaves(6, n));
            let size = to_u64(n);
            assert_eq!(built.tree.root(), built.reference.mth(0, n));
            for m in 0..n {
                let proof = inclusion_proof(to_u64(m), size, &built.nodes).expect("proof");
                assert_eq!(proof, built.reference.path(m, 0, n), "PATH({m}, {n})");
                verify_inclusion(
                    &built.reference.leaves[m],
                    to_u64(m),
                    size,
                    &proof,
                    &built.tree.root(),
                )
                .expect("verifies");
            }
            for old in 0..=n {
                let proof = consistency_proof(to_u64(old), size, &built.nodes).expect("proof");
                assert_eq!(proof, built.reference.proof(old, n), "PROOF({old}, {n})");
                verify_consistency(
                    to_u64(old),
                    size,
                    &built.reference.mth(0, old),
                    &built.tree.root(),
                    &proof,
                )
                .expect("verifies");
            }
        }
    }

    // ---------------------------------------------------------------
    // Property tests against the reference.
    // ---------------------------------------------------------------

    fn check_inclusion_mutations(
        built: &Built,
        m: usize,
        n: usize,
        proof: &[Hash],
        bit: usize,
    ) -> Result<(), TestCaseError> {
        let leaf = built.reference.leaves[m];
        let root = built.reference.mth(0, n);
        let (index, size) = (to_u64(m), to_u64(n));
        // Any single-bit change of a proof hash, the leaf or the root fails.
        for i in 0..proof.len() {
            let mut bad = proof.to_vec();
            bad[i] = flip(bad[i], bit);
            prop_assert_eq!(
                verify_inclusion(&leaf, index, size, &bad, &root),
                Err(ProofError::RootMismatch)
            );
        }
        prop_assert_eq!(
            verify_inclusion(&flip(leaf, bit), index, size, proof, &root),
            Err(ProofError::RootMismatch)
        );
        prop_assert_eq!(
            verify_inclusion(&leaf, index, size, proof, &flip(root, bit)),
            Err(ProofError::RootMismatch)
        );
        // A shorter or longer proof fails.
        if let Some((_, shorter)) = proof.split_last() {
            prop_assert!(verify_inclusion(&leaf, index, size, shorter, &root).is_err());
        }
        let mut longer = proof.to_vec();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, index, size, &longer, &root).is_err());
        // Off-by-one index or size fails, unless the RFC algorithm performs
        // the very same computation for the changed value.
        let own = inclusion_trace(index, size, proof.len());
        prop_assert!(own.is_some());
        let mut changed = vec![(index.wrapping_sub(1), size), (index + 1, size)];
        changed.push((index, size - 1));
        changed.push((index, size + 1));
        for (i2, s2) in changed {
            let same = inclusion_trace(i2, s2, proof.len()) == own && i2 == index;
            let result = verify_inclusion(&leaf, i2, s2, proof, &root);
            prop_assert_eq!(result.is_ok(), same, "index {} size {}", i2, s2);
        }
        Ok(())
    }

    fn check_consistency_mutations(
        built: &Built,
        old: usize,
        n: usize,
        proof: &[Hash],
        bit: usize,
    ) -> Result<(), TestCaseError> {
        let old_root = built.reference.mth(0, old);
        let new_root = built.reference.mth(0, n);
        let (o, s) = (to_u64(old), to_u64(n));
        for i in 0..proof.len() {
            let mut bad = proof.to_vec();
            bad[i] = flip(bad[i], bit);
            prop_assert!(verify_consistency(o, s, &old_root, &new_root, &bad).is_err());
        }
        prop_assert!(verify_consistency(o, s, &flip(old_root, bit), &new_root, proof).is_err());
        prop_assert!(verify_consistency(o, s, &old_root, &flip(new_root, bit), proof).is_err());
        if let Some((_, shorter)) = proof.split_last() {
            prop_assert!(verify_consistency(o, s, &old_root, &new_root, shorter).is_err());
        }
        let mut longer = proof.to_vec();
        longer.push(new_root);
        prop_assert!(verify_consistency(o, s, &old_root, &new_root, &longer).is_err());
        if proof.is_empty() {
            return Ok(());
        }
        let own = consistency_trace(o, s, proof.len());
        prop_assert!(own.is_some());
        for (o2, s2) in [(o - 1, s), (o + 1, s), (o, s - 1), (o, s + 1)] {
            let result = verify_consistency(o2, s2, &old_root, &new_root, proof);
            let same = consistency_trace(o2, s2, proof.len()) == own;
            // Sizes 0 and equal sizes take the empty-proof paths, which a
            // non-empty proof always fails.
            prop_assert_eq!(result.is_ok(), same, "old {} new {}", o2, s2);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn every_proof_matches_reference_and_verifies(
            n in 1usize..=300,
            seed in any::<u64>(),
            bit in 0usize..256,
        ) {
            let built = build(&synthetic_leaves(seed, n));
            let size = to_u64(n);
            let root = built.reference.mth(0, n);
            prop_assert_eq!(built.tree.root(), root);
            for m in 0..n {
                let proof = inclusion_proof(to_u64(m), size, &built.nodes).expect("proof");
                prop_assert_eq!(&proof, &built.reference.path(m, 0, n));
                prop_assert_eq!(
                    verify_inclusion(&built.reference.leaves[m], to_u64(m), size, &proof, &root),
                    Ok(())
                );
            }
            for old in 0..=n {
                let proof = consistency_proof(to_u64(old), size, &built.nodes).expect("proof");
                prop_assert_eq!(&proof, &built.reference.proof(old, n));
                prop_assert_eq!(
                    verify_consistency(
                        to_u64(old), size, &built.reference.mth(0, old), &root, &proof
                    ),
                    Ok(())
                );
            }
            // Mutations on a sample of the proofs, to bound the run time.
            for m in (0..n).step_by(1 + n / 16) {
                let proof = built.reference.path(m, 0, n);
                check_inclusion_mutations(&built, m, n, &proof, bit)?;
            }
            for old in (1..n).step_by(1 + n / 16) {
                let proof = built.reference.proof(old, n);
                check_consistency_mutations(&built, old, n, &proof, bit)?;
            }
        }

        #[test]
        fn single_proof_mutations_fail(
            n in 2usize..=300,
            pick in any::<prop::sample::Index>(),
            pick_old in any::<prop::sample::Index>(),
            seed in any::<u64>(),
            bit in 0usize..256,
        ) {
            let built = build(&synthetic_leaves(seed, n));
            let m = pick.index(n);
            let proof = inclusion_proof(to_u64(m), to_u64(n), &built.nodes).expect("proof");
            check_inclusion_mutations(&built, m, n, &proof, bit)?;
            let old = 1 + pick_old.index(n - 1);
            let proof = consistency_proof(to_u64(old), to_u64(n), &built.nodes).expect("proof");
            check_consistency_mutations(&built, old, n, &proof, bit)?;
        }

        #[test]
        fn compact_root_matches_reference_at_every_size(
            n in 0usize..=300,
            seed in any::<u64>(),
        ) {
            let leaves = synthetic_leaves(seed, n);
            let reference = Reference::new(leaves.clone());
            let mut tree = CompactTree::new();
            prop_assert_eq!(tree.root(), empty_root());
            for (i, leaf) in leaves.iter().enumerate() {
                tree.append(*leaf).expect("tree not full");
                prop_assert_eq!(tree.size(), to_u64(i + 1));
                prop_assert_eq!(tree.peaks().len(), (i + 1).count_ones() as usize);
                prop_assert_eq!(tree.root(), reference.mth(0, i + 1));
            }
        }
    }
}
