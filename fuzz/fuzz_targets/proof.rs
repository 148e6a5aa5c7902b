//! Merkle proof verification on untrusted proofs.
//!
//! Input: leaf index (u64 LE), tree size (u64 LE), then 32-byte proof hashes (a short tail is
//! ignored). The same numbers are read as (old size, new size) of a consistency proof. Both
//! verifiers run against a fixed tree of 7 leaves: the leaf hash is that of leaf `index`, the roots
//! those of the fixed tree at the given sizes (the 7-leaf root for larger sizes).
//!
//! Never panics, whatever the sizes (up to u64::MAX) and however many hashes. Where the tree is
//! the real one (sizes <= 7), a proof that verifies must be the very proof the tree gives: a
//! verifier that accepts anything else is unsound.
#![no_main]

use std::sync::OnceLock;

use ledger_core::merkle::{self, CompactTree, Hash, MemoryNodes};
use libfuzzer_sys::fuzz_target;

const LEAVES: u64 = 7;

struct Fixed {
    nodes: MemoryNodes,
    /// Root of the fixed tree at each size 0..=LEAVES.
    roots: Vec<Hash>,
    leaf_hashes: Vec<Hash>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let mut tree = CompactTree::new();
        let mut nodes = MemoryNodes::new();
        let mut roots = vec![tree.root()];
        let mut leaf_hashes = Vec::new();
        for i in 0..LEAVES {
            let h = merkle::leaf_hash(format!("leaf-{i}").as_bytes());
            leaf_hashes.push(h);
            nodes.extend(tree.append(h).expect("append"));
            roots.push(tree.root());
        }
        Fixed {
            nodes,
            roots,
            leaf_hashes,
        }
    })
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = data.get(at..(at + 8).min(data.len())) {
        b[..s.len()].copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    let index = u64_at(data, 0);
    let size = u64_at(data, 8);
    let proof: Vec<Hash> = data
        .get(16..)
        .unwrap_or_default()
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    let root_for = |n: u64| f.roots[usize::try_from(n.min(LEAVES)).expect("small")];
    let leaf = f.leaf_hashes[usize::try_from(index % LEAVES).expect("small")];

    let inclusion = merkle::verify_inclusion(&leaf, index, size, &proof, &root_for(size));
    if inclusion.is_ok() && size <= LEAVES {
        let real = merkle::inclusion_proof(index, size, &f.nodes).expect("real inclusion proof");
        assert_eq!(
            proof, real,
            "verify_inclusion accepted a proof the tree does not give"
        );
    }

    let consistency =
        merkle::verify_consistency(index, size, &root_for(index), &root_for(size), &proof);
    if consistency.is_ok() && size <= LEAVES {
        let real =
            merkle::consistency_proof(index, size, &f.nodes).expect("real consistency proof");
        assert_eq!(
            proof, real,
            "verify_consistency accepted a proof the tree does not give"
        );
    }

    // The planners take the same untrusted sizes.
    let _ = merkle::inclusion_plan(index, size);
    let _ = merkle::consistency_plan(index, size);
    let _ = merkle::root_plan(size);
});
