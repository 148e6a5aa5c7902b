//! The tree and the leaves as C2SP tlog tiles, read from what the store keeps: a hash tile is a
//! run of the perfect nodes of one level, an entry bundle a run of leaves.

use crate::tiles::{self, Tile, TileKind};

use super::{Ledger, LedgerError};

impl Ledger {
    /// The content of a tile ([`crate::tiles`]): the concatenated 32-byte hashes of a hash tile,
    /// or the encoded leaves of an entry bundle. A tile the tree does not hold yet (a full tile
    /// whose last hash is not complete, a partial one wider than the tree's edge) is
    /// [`LedgerError::NotFound`]; a bundle with a leaf longer than 65,535 bytes is
    /// [`LedgerError::LeafTooLargeForBundle`]. A tile's content never changes once the tree holds
    /// it.
    pub fn tile(&self, tile: &Tile) -> Result<Vec<u8>, LedgerError> {
        let size = self.size();
        let first = tile.first().filter(|_| tile.held_by(size)).ok_or_else(|| {
            LedgerError::NotFound(format!(
                "the ledger holds {size} entries, not yet all of {}",
                tile.path()
            ))
        })?;
        let width = u64::from(tile.width);
        match tile.kind {
            TileKind::Hashes { .. } => {
                let hashes = self.store.node_run(tile.merkle_level(), first, width)?;
                if hashes.len() as u64 != width {
                    return Err(LedgerError::Integrity(format!(
                        "the store lacks Merkle nodes of {} that a tree of {size} entries holds",
                        tile.path()
                    )));
                }
                Ok(hashes.concat())
            }
            TileKind::Entries => {
                let leaves = self.leaves(first, usize::from(tile.width))?;
                let consecutive = leaves.iter().map(|(seq, _)| *seq).eq(first..first + width);
                if !consecutive {
                    return Err(LedgerError::Integrity(format!(
                        "the store lacks leaves of {} that a tree of {size} entries holds",
                        tile.path()
                    )));
                }
                Ok(tiles::entry_bundle(
                    first,
                    leaves.iter().map(|(_, leaf)| leaf.as_slice()),
                )?)
            }
        }
    }
}
