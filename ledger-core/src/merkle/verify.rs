//! Checking proofs: RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), which walk up
//! the tree the same way (one shared walk).

use super::plan::{consistency_plan, inclusion_plan};
use super::{empty_root, node_hash, Hash, ProofError};

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
    // 2. fn = leaf_index, sn = tree_size - 1; 3. r = hash; 4. fold in each proof element;
    // 5. sn must be 0.
    let mut r = *leaf_hash;
    let complete = walk(index, size - 1, proof, |sibling, p| {
        r = match sibling {
            Sibling::Left => node_hash(p, &r),
            Sibling::Right => node_hash(&r, p),
        }
    });
    if !complete {
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
    // 3. fn = first - 1, sn = second - 1; 4. right-shift both while LSB(fn) is set.
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
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
    // 6. Fold in each subsequent value; 7. sn must be 0.
    let complete = walk(f_n, s_n, rest.iter().copied(), |sibling, c| match sibling {
        Sibling::Left => {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
        }
        Sibling::Right => s_r = node_hash(&s_r, c),
    });
    if !complete {
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

/// Which side of the path a proof hash sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sibling {
    /// Left of the path: hashed as `node_hash(sibling, path)`.
    Left,
    /// Right of the path: hashed as `node_hash(path, sibling)`.
    Right,
}

/// The walk both verifications share (RFC 9162 §2.1.3.2 step 4 and §2.1.4.2 step 6): from node
/// `f_n` of a level whose last node is `s_n`, up the tree, each hash of `path` a sibling on the
/// left or on the right. Returns whether the path reached the root exactly (`s_n` ends at 0 and
/// no hash is left over).
fn walk<'a>(
    mut f_n: u64,
    mut s_n: u64,
    path: impl IntoIterator<Item = &'a Hash>,
    mut visit: impl FnMut(Sibling, &Hash),
) -> bool {
    for hash in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            visit(Sibling::Left, hash);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            visit(Sibling::Right, hash);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0
}
