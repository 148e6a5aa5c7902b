//! The hashes of RFC 9162 §2.1: leaves, interior nodes, the empty tree.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: the hash of a leaf, of a node, or of a whole tree.
pub type Hash = [u8; 32];

/// The hashes of a proof as JSON carries them (hex, 32 bytes each); `None` if one is
/// not.
#[must_use]
pub fn hashes_from_hex(hexes: &[String]) -> Option<Vec<Hash>> {
    hexes
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out).ok().map(|()| out)
        })
        .collect()
}

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
