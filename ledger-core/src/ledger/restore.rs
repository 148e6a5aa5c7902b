//! Restoring a ledger: its leaves, byte for byte, from copies of the log (an export, a mirror, a
//! witness's copy), checked against every checkpoint of the operator key that could be found.
//!
//! The operator key must never sign a checkpoint inconsistent with one it signed before: a bank
//! or a witness holding the earlier one would see two histories. Leaves cannot be made again (a
//! resubmitted entry gets a new `accepted_at`, so a new leaf), so a restore brings back the very
//! leaves, and takes the newest checkpoint it is given as its **floor**:
//!
//! - the floor is kept in the store before any leaf is written, so a store left part-way (no
//!   metadata row, a checkpoint kept) refuses to open, and a complete store that holds fewer
//!   leaves than the floor opens *behind its floor*: it answers reads and refuses to accept
//!   entries or sign checkpoints ([`LedgerError::BehindFloor`]) until the missing leaves are back;
//! - every leaf is verified as it is written (position, chain, signatures, the market's rules),
//!   as a [`Replica`] does; at the size of each checkpoint given, the root and the state line
//!   must be the checkpoint's;
//! - [`Restore::resume`] brings the missing leaves into a ledger that is behind its floor, from
//!   another copy of the log.

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{self, Checkpoint};
use crate::ids::{Origin, ParticipantId, Text};
use crate::merkle::Hash;
use crate::progress::{Progress, Silent};
use crate::state::StateCommitment;
use crate::store::Store;

use super::{hex32, Ledger, LedgerConfig, LedgerError, Replica};

/// A checkpoint signed by the operator key that a restore must reach and not contradict, and
/// where it was found (a backup's file, a witness, a mirror, a bank's copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Floor {
    /// The signed note, as found (cosignatures included).
    pub note: String,
    /// What it says.
    pub checkpoint: Checkpoint,
    /// Where it was found, for messages.
    pub source: String,
}

/// A ledger being restored (see the module documentation).
#[derive(Debug)]
pub struct Restore {
    replica: Replica,
    /// Checkpoints the copy has not reached yet, smallest first.
    pending: Vec<Floor>,
    /// The newest checkpoint given: the floor.
    floor: Floor,
}

/// What a restore reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// Entries restored.
    pub size: u64,
    /// Their root.
    pub root: Hash,
    /// The floor: the newest checkpoint the operator key signed, as far as the restore was told.
    pub floor: Floor,
}

impl Restored {
    /// Entries the ledger lacks to reach its floor (0 when it is complete).
    pub fn missing(&self) -> u64 {
        self.floor.checkpoint.size.saturating_sub(self.size)
    }
}

/// Opens each note with the operator key, newest last. Two notes of the same size with different
/// roots mean the key has already signed two histories: refused.
fn open_floors(
    origin: &Origin,
    operator: &VerifyingKey,
    notes: Vec<(String, String)>,
) -> Result<Vec<Floor>, LedgerError> {
    let mut floors = Vec::with_capacity(notes.len());
    for (note, source) in notes {
        let checkpoint =
            checkpoint::open_checkpoint(&note, origin.as_str(), operator).map_err(|e| {
                LedgerError::Integrity(format!(
                    "the checkpoint from {source} is not one of this ledger's operator key: {e}"
                ))
            })?;
        floors.push(Floor {
            note,
            checkpoint,
            source,
        });
    }
    floors.sort_by_key(|f| f.checkpoint.size);
    for pair in floors.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.checkpoint.size == b.checkpoint.size && a.checkpoint.root != b.checkpoint.root {
            return Err(LedgerError::Integrity(format!(
                "the checkpoints from {} and {} are both of size {} but have different roots: the operator key has signed two histories",
                a.source, b.source, a.checkpoint.size
            )));
        }
    }
    Ok(floors)
}

impl Restore {
    /// Begins a restore into an empty store of the ledger `origin`, whose checkpoints `operator`
    /// signs, with the checkpoints found (`(note, source)`, at least one). The newest becomes the
    /// floor and is kept in the store at once.
    pub fn begin(
        store: Box<dyn Store>,
        origin: Origin,
        operator: VerifyingKey,
        notes: Vec<(String, String)>,
    ) -> Result<Self, LedgerError> {
        if store.meta()?.is_some()
            || store.checkpoint()?.is_some()
            || store.checkpoint_witness()?.is_some()
            || store.leaf(0)?.is_some()
        {
            return Err(LedgerError::Integrity(
                "a ledger can only be restored into an empty store".to_owned(),
            ));
        }
        let floors = open_floors(&origin, &operator, notes)?;
        let floor = floors.last().cloned().ok_or_else(|| {
            LedgerError::Integrity(
                "a restore needs at least one checkpoint signed by the operator key".to_owned(),
            )
        })?;
        // Before any leaf: a store left part-way holds a checkpoint and no ledger, and so
        // refuses to open rather than start a new ledger under the same key.
        store.put_checkpoint(&floor.note)?;
        let replica = Replica::open(store, origin, operator)?;
        let mut restore = Self {
            replica,
            pending: floors,
            floor,
        };
        restore.check_reached()?;
        Ok(restore)
    }

    /// Resumes the restore of a ledger that is behind its floor: the store holds a ledger, and
    /// the checkpoints it keeps join those given (`(note, source)`). Those the ledger already
    /// reaches must match its tree; a newer floor than the one kept is kept at once.
    pub fn resume(
        store: Box<dyn Store>,
        origin: Origin,
        operator: VerifyingKey,
        notes: Vec<(String, String)>,
    ) -> Result<Self, LedgerError> {
        if store.meta()?.is_none() {
            return Err(LedgerError::Integrity(
                "the store holds no ledger to resume: restore into an empty store instead"
                    .to_owned(),
            ));
        }
        let kept = [
            (store.checkpoint()?, "the store's checkpoint row"),
            (
                store.checkpoint_witness()?,
                "the store's last-checkpoint file",
            ),
        ];
        let mut all = notes;
        let kept_size = kept
            .iter()
            .filter_map(|(note, _)| note.as_deref().and_then(super::proofs::checkpoint_size))
            .max();
        for (note, source) in kept {
            if let Some(note) = note {
                all.push((note, source.to_owned()));
            }
        }
        let floors = open_floors(&origin, &operator, all)?;
        let floor = floors.last().cloned().ok_or_else(|| {
            LedgerError::Integrity(
                "a restore needs at least one checkpoint signed by the operator key".to_owned(),
            )
        })?;
        if kept_size.is_none_or(|size| size < floor.checkpoint.size) {
            store.put_checkpoint(&floor.note)?;
        }
        let replica = Replica::open(store, origin, operator)?;
        let mut restore = Self {
            replica,
            pending: floors,
            floor,
        };
        restore.check_reached()?;
        Ok(restore)
    }

    /// Entries held so far.
    pub fn size(&self) -> u64 {
        self.replica.size()
    }

    /// The floor: the newest checkpoint given.
    pub fn floor(&self) -> &Floor {
        &self.floor
    }

    /// The ledger's operator, from its first entry: its id and name.
    pub fn operator(&self) -> Option<(ParticipantId, Text)> {
        self.replica.operator()
    }

    /// Checks and appends the next leaves. At the size of each checkpoint given, the root and
    /// the state line must be the checkpoint's. Each chunk between checkpoints is one durable
    /// write; nothing of a chunk is kept if one of its leaves fails, and the error names it.
    pub fn append(&mut self, leaves: &[Vec<u8>]) -> Result<(), LedgerError> {
        self.append_with(leaves, &Silent)
    }

    /// [`Restore::append`], telling `progress` the entries held after each durable write (of
    /// the floor's size).
    pub fn append_with(
        &mut self,
        leaves: &[Vec<u8>],
        progress: &dyn Progress,
    ) -> Result<(), LedgerError> {
        let mut rest = leaves;
        while !rest.is_empty() {
            let size = self.size();
            let take = match self.pending.first() {
                Some(next) if next.checkpoint.size > size => {
                    usize::try_from(next.checkpoint.size - size)
                        .map_or(rest.len(), |gap| gap.min(rest.len()))
                }
                _ => rest.len(),
            };
            self.replica.append(&rest[..take])?;
            rest = &rest[take..];
            self.check_reached()?;
            progress.entries(self.size(), self.floor.checkpoint.size);
        }
        Ok(())
    }

    /// Checks the checkpoints the copy has reached.
    fn check_reached(&mut self) -> Result<(), LedgerError> {
        let size = self.size();
        while let Some(next) = self.pending.first() {
            if next.checkpoint.size > size {
                break;
            }
            let root = self.replica.root_at(next.checkpoint.size)?;
            if root != next.checkpoint.root {
                return Err(LedgerError::Integrity(format!(
                    "the leaves restored contradict the checkpoint of size {} from {}: at that size their root is {}, the checkpoint's {}; this copy of the log is not the history the operator key signed",
                    next.checkpoint.size,
                    next.source,
                    hex32(&root),
                    hex32(&next.checkpoint.root)
                )));
            }
            if next.checkpoint.size == size {
                let claimed = StateCommitment::from_checkpoint(&next.checkpoint)
                    .map_err(|e| LedgerError::Integrity(e.to_string()))?;
                if let Some(claimed) = claimed {
                    if claimed != self.replica.state_commitment()? {
                        return Err(LedgerError::Integrity(format!(
                        "the checkpoint of size {} from {} commits to another market state than its entries produce",
                        next.checkpoint.size, next.source
                    )));
                    }
                }
            }
            self.pending.remove(0);
        }
        Ok(())
    }

    /// Ends the restore: what it reached. A ledger short of its floor opens behind it.
    pub fn finish(self) -> Restored {
        Restored {
            size: self.replica.size(),
            root: self.replica.root(),
            floor: self.floor,
        }
    }
}

impl Ledger {
    /// Restores a ledger into an empty store from a backup: an export and a checkpoint signed by
    /// the operator key (see [`Restore`]). Every entry is verified as it is written (signatures,
    /// chain, rules) and the export must reach the checkpoint's root and state line; the leaves
    /// are kept byte for byte, so the restored ledger has the same entries, roots and proofs. A
    /// store left by a restore that failed refuses to open.
    pub fn restore(
        store: Box<dyn Store>,
        config: LedgerConfig,
        export: impl std::io::BufRead,
        checkpoint_note: &str,
    ) -> Result<Self, LedgerError> {
        Self::restore_with(store, config, export, checkpoint_note, &Silent)
    }

    /// [`Ledger::restore`], telling `progress` the entries restored after each durable write
    /// (of the checkpoint's size).
    pub fn restore_with(
        store: Box<dyn Store>,
        config: LedgerConfig,
        export: impl std::io::BufRead,
        checkpoint_note: &str,
        progress: &dyn Progress,
    ) -> Result<Self, LedgerError> {
        const CHUNK: usize = 1024;
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::from(store);
        let mut restore = Restore::begin(
            Box::new(std::sync::Arc::clone(&store)),
            config.origin.clone(),
            config.operator_key.verifying_key(),
            vec![(checkpoint_note.to_owned(), "the backup".to_owned())],
        )?;
        let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
        for line in export.split(b'\n') {
            let line = line.map_err(|e| {
                LedgerError::Replay(crate::verify::ReplayError {
                    seq: restore.size() + chunk.len() as u64,
                    fault: crate::verify::ReplayFault::Unreadable(e.to_string()),
                })
            })?;
            if line.is_empty() {
                continue;
            }
            chunk.push(line);
            if chunk.len() >= CHUNK {
                restore.append_with(&chunk, progress)?;
                chunk.clear();
            }
        }
        restore.append_with(&chunk, progress)?;
        let restored = restore.finish();
        if restored.missing() > 0 {
            return Err(LedgerError::Replay(crate::verify::ReplayError {
                seq: restored.size,
                fault: crate::verify::ReplayFault::TooShort {
                    entries: restored.size,
                    checkpoint: restored.floor.checkpoint.size,
                },
            }));
        }
        Self::open(Box::new(store), config)
    }
}
