//! Restoring a ledger from a backup: an export and the checkpoint it reaches.

use crate::checkpoint;
use crate::ids::PublicKey;
use crate::store::{Append, Meta, Store, LAYOUT};
use crate::wire::GENESIS_PREV;

use super::{hex32, Ledger, LedgerConfig, LedgerError};

impl Ledger {
    /// Restores a ledger into an empty store from a backup: an export and a checkpoint signed by
    /// the operator key. Every entry is verified as it is written (signatures, chain, rules) and
    /// the export must reach the checkpoint's root; the leaves are kept byte for byte, so the
    /// restored ledger has the same entries, roots and proofs. If it fails part-way, discard the
    /// store.
    pub fn restore(
        store: Box<dyn Store>,
        config: LedgerConfig,
        export: impl std::io::BufRead,
        checkpoint_note: &str,
    ) -> Result<Self, LedgerError> {
        if store.meta()?.is_some()
            || store.checkpoint_witness()?.is_some()
            || store.leaf(0)?.is_some()
        {
            return Err(LedgerError::Integrity(
                "a ledger can only be restored into an empty store".to_owned(),
            ));
        }
        let key = config.operator_key.verifying_key();
        let last = checkpoint::open_checkpoint(checkpoint_note, config.origin.as_str(), &key)?;
        const CHUNK: usize = 1024;
        let mut leaves: Vec<Vec<u8>> = Vec::new();
        let mut nodes = Vec::new();
        let mut first_seq = 0;
        let mut meta = Meta {
            layout: LAYOUT,
            origin: config.origin.to_string(),
            operator_key: PublicKey::from(key).to_string(),
            size: 0,
            peaks: Vec::new(),
            last_leaf_hash: GENESIS_PREV.to_owned(),
        };
        // Leaves and nodes go in chunks; the metadata row, which makes the store a ledger, only
        // with the state at the end.
        let (_, replayer) = crate::verify::replay_export(
            export,
            checkpoint_note,
            &key,
            &mut |seq, leaf, completed| {
                if leaves.is_empty() {
                    first_seq = seq;
                }
                leaves.push(leaf.to_vec());
                nodes.extend(completed);
                if leaves.len() >= CHUNK {
                    store
                        .append(Append {
                            first_seq,
                            leaves: &leaves,
                            nodes: &nodes,
                            state: &[],
                            meta: None,
                        })
                        .map_err(|e| e.to_string())?;
                    leaves.clear();
                    nodes.clear();
                }
                Ok(())
            },
        )?;
        let (tree, last_leaf_hash) = replayer.head();
        meta.size = tree.size();
        meta.peaks = tree.peaks().iter().map(hex32).collect();
        meta.last_leaf_hash = hex32(&last_leaf_hash);
        let rows = replayer.state().all_rows()?;
        store.append(Append {
            first_seq,
            leaves: &leaves,
            nodes: &nodes,
            state: &rows,
            meta: Some(&meta),
        })?;
        store.put_checkpoint(checkpoint_note)?;
        if last.size > meta.size {
            return Err(LedgerError::Integrity(
                "the export is shorter than its checkpoint".to_owned(),
            ));
        }
        Self::open(store, config)
    }
}
