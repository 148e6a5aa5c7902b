//! Merkle proofs the tree produces always verify.
//!
//! Input: three u16 LE (size, index, old size) and a byte choosing a bit to flip. Builds a tree of
//! `size % 300 + 1` leaves with `CompactTree` into `MemoryNodes`, checks its root against a
//! straightforward RFC 9162 MTH, asks `inclusion_proof(index % n, n)` and
//! `consistency_proof(old % (n + 1), n)` from the nodes, and asserts that both verify, and that a
//! proof with one bit flipped does not.
#![no_main]

use ledger_core::merkle::{self, CompactTree, Hash, MemoryNodes};
use libfuzzer_sys::fuzz_target;

/// RFC 9162 §2.1.1 MTH, written out plainly as the oracle.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => merkle::empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n);
            merkle::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly smaller than `n` (n >= 2).
fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn u16_at(data: &[u8], at: usize) -> u16 {
    let lo = data.get(at).copied().unwrap_or(0);
    let hi = data.get(at + 1).copied().unwrap_or(0);
    u16::from_le_bytes([lo, hi])
}

fuzz_target!(|data: &[u8]| {
    let n = u64::from(u16_at(data, 0)) % 300 + 1;
    let index = u64::from(u16_at(data, 2)) % n;
    let old = u64::from(u16_at(data, 4)) % (n + 1);
    let flip = usize::from(data.get(6).copied().unwrap_or(0));

    let mut tree = CompactTree::new();
    let mut nodes = MemoryNodes::new();
    let mut leaves = Vec::new();
    for i in 0..n {
        let h = merkle::leaf_hash(&i.to_be_bytes());
        leaves.push(h);
        nodes.extend(tree.append(h).expect("append"));
    }
    let len = |k: u64| usize::try_from(k).expect("small");
    let root = mth(&leaves);
    let old_root = mth(&leaves[..len(old)]);
    assert_eq!(tree.root(), root, "CompactTree root differs from MTH");
    assert_eq!(merkle::root_at(n, &nodes).expect("root_at"), root);
    assert_eq!(merkle::root_at(old, &nodes).expect("root_at old"), old_root);

    let inclusion = merkle::inclusion_proof(index, n, &nodes).expect("inclusion proof");
    merkle::verify_inclusion(&leaves[len(index)], index, n, &inclusion, &root)
        .unwrap_or_else(|e| panic!("inclusion proof of {index} in {n} fails: {e}"));

    let consistency = merkle::consistency_proof(old, n, &nodes).expect("consistency proof");
    merkle::verify_consistency(old, n, &old_root, &root, &consistency)
        .unwrap_or_else(|e| panic!("consistency proof {old} -> {n} fails: {e}"));

    // One flipped bit must be refused.
    if !inclusion.is_empty() {
        let mut bad = inclusion.clone();
        let bit = flip % (bad.len() * 256);
        bad[bit / 256][(bit % 256) / 8] ^= 1 << (bit % 8);
        assert!(
            merkle::verify_inclusion(&leaves[len(index)], index, n, &bad, &root).is_err(),
            "tampered inclusion proof verifies"
        );
    }
    if !consistency.is_empty() {
        let mut bad = consistency.clone();
        let bit = flip % (bad.len() * 256);
        bad[bit / 256][(bit % 256) / 8] ^= 1 << (bit % 8);
        assert!(
            merkle::verify_consistency(old, n, &old_root, &root, &bad).is_err(),
            "tampered consistency proof verifies"
        );
    }
});
