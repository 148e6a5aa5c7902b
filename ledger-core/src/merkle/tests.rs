//! Known answers from the RFC and the specs, and properties of the tree and its proofs.

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

const VECTORS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/merkle.json"));

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
                verify_consistency(*old_size, *new_size, &h(old_root), &h(new_root), &hs(proof)),
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
