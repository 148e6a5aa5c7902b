//! Whether the ledger can write, and how it recovers after a write failed.
//!
//! A write that fails — the atomic write of a group, sled's flush, the `fdatasync` after it, a
//! checkpoint's row — is never trusted, and neither is what the store holds in memory after it
//! (the lesson PostgreSQL learned about `fsync` in 2018). Nothing of the group is acknowledged.
//! Then, still holding the head:
//!
//! 1. the store is reopened from what is durable ([`Store::reopen`](crate::store::Store::reopen):
//!    sled's database is dropped and opened again from its folder);
//! 2. the head is read back from it ([`Head::load`], with its O(log n) cross-checks);
//! 3. it is checked against what memory last knew to be durable (the metadata of the last write
//!    that succeeded): the same size, root and chain head; or *ahead*, when the failed write
//!    reached the disk after all — then the tree at the durable size must still have the durable
//!    root, and the entries past it must chain on from the durable chain head. They are
//!    adopted: a restart would find them too. Their submitters were told the write failed and
//!    nothing was acknowledged; resubmitting the same signed entry returns its receipt. Anything
//!    else (fewer entries than were durable, another root) means acknowledged entries are lost:
//!    the ledger halts and does not write again;
//! 4. the metadata row is written again as it is, atomically and durably: the store proves that
//!    it takes writes again before the ledger accepts any.
//!
//! While a step fails with a store error the ledger is *failing*: submissions are refused at once
//! with that error (a full disk as such), and the steps are tried again — by the next submission
//! once a back-off has passed (0.5 s after the first failed attempt, doubling, at most 5 s), or by
//! [`Ledger::retry_store`], which a service calls on a timer so that it recovers with no
//! submission at all. Reads go on throughout, from the reopened store when it opens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ids::{PublicKey, Timestamp};
use crate::merkle::{self, CompactTree};
use crate::store::{Append, StoreError};
use crate::wire::Envelope;

use super::{hex32, proofs, unhex32, Head, Ledger, LedgerError, StoreNodes};

/// The first wait after a failed recovery; it doubles after each one.
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two recoveries.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Whether the ledger takes writes now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteHealth {
    /// Writes succeed.
    Accepting,
    /// A write failed and the store has not recovered yet. Submissions are refused with
    /// `error`; the ledger recovers by itself once the store takes writes again.
    Failing {
        /// The last store error.
        error: StoreError,
        /// When writes started failing.
        since: String,
        /// Recoveries tried since then, all failed.
        attempts: u32,
        /// When the next recovery may be tried.
        retry_in: Duration,
    },
    /// Writing stopped for good: what is durable contradicts what the ledger acknowledged, or
    /// cannot be read. Reads go on; the operator must act (see `reason`).
    Halted {
        /// What happened and what to do.
        reason: String,
        /// When it stopped.
        since: String,
    },
}

impl WriteHealth {
    /// Whether a submission can be written now.
    pub fn is_accepting(&self) -> bool {
        matches!(self, WriteHealth::Accepting)
    }

    /// Why writes are refused, if they are.
    pub fn reason(&self) -> Option<String> {
        match self {
            WriteHealth::Accepting => None,
            WriteHealth::Failing { error, .. } => Some(format!(
                "writes are failing ({error}); the ledger retries by itself"
            )),
            WriteHealth::Halted { reason, .. } => Some(reason.clone()),
        }
    }
}

/// Counts of failures and recoveries since the ledger was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FailureStats {
    /// Writes that failed: groups none of whose entries were acknowledged, and checkpoints
    /// that could not be kept.
    pub failed_writes: u64,
    /// Times the ledger reopened its store, found it consistent, and took writes again.
    pub recoveries: u64,
    /// Entries whose write reported a failure (so were never acknowledged) but which the
    /// reopened store held, and which the ledger therefore kept.
    pub adopted_entries: u64,
}

#[derive(Debug)]
enum State {
    Accepting,
    Failing {
        error: StoreError,
        since: Timestamp,
        attempts: u32,
        next_attempt: Instant,
    },
    Halted {
        reason: String,
        since: Timestamp,
    },
}

/// The ledger's write health and its counters.
#[derive(Debug)]
pub(super) struct Health {
    state: Mutex<State>,
    failed_writes: AtomicU64,
    recoveries: AtomicU64,
    adopted_entries: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::Accepting),
            failed_writes: AtomicU64::new(0),
            recoveries: AtomicU64::new(0),
            adopted_entries: AtomicU64::new(0),
        }
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What to do with a submission, given the write health.
pub(super) enum Gate {
    /// Write.
    Open,
    /// A recovery is due: try it (holding the head), then ask again.
    RecoveryDue,
    /// Refuse with this error.
    Refuse(LedgerError),
}

impl Ledger {
    /// Whether the ledger takes writes now, and if not, why and until when.
    pub fn write_health(&self) -> WriteHealth {
        match &*self.health.lock() {
            State::Accepting => WriteHealth::Accepting,
            State::Failing {
                error,
                since,
                attempts,
                next_attempt,
            } => WriteHealth::Failing {
                error: error.clone(),
                since: since.to_string(),
                attempts: *attempts,
                retry_in: next_attempt.saturating_duration_since(Instant::now()),
            },
            State::Halted { reason, since } => WriteHealth::Halted {
                reason: reason.clone(),
                since: since.to_string(),
            },
        }
    }

    /// Failed writes, recoveries and adopted entries since the ledger was opened.
    pub fn failure_stats(&self) -> FailureStats {
        FailureStats {
            failed_writes: self.health.failed_writes.load(Ordering::Relaxed),
            recoveries: self.health.recoveries.load(Ordering::Relaxed),
            adopted_entries: self.health.adopted_entries.load(Ordering::Relaxed),
        }
    }

    /// Why the ledger does not write now, if it does not (it still answers reads): writes that
    /// keep failing (it recovers by itself), or a halt (the operator must act).
    pub fn halted(&self) -> Option<String> {
        self.write_health().reason()
    }

    /// If writes are failing and a recovery is due, tries it now: reopens the store, reads the
    /// head back, checks it against what was durable, and proves the store takes writes again.
    /// Returns the health after. A service calls this on a timer, so that it recovers once the
    /// disk has room again even if nobody submits anything.
    pub fn retry_store(&self) -> WriteHealth {
        if matches!(self.gate(), Gate::RecoveryDue) {
            let mut head = self.head.write().unwrap_or_else(|e| e.into_inner());
            // Another thread may have recovered meanwhile.
            if matches!(self.gate(), Gate::RecoveryDue) {
                self.try_recover(&mut head);
            }
        }
        self.write_health()
    }

    /// Whether a submission may be written now.
    pub(super) fn gate(&self) -> Gate {
        match &*self.health.lock() {
            State::Accepting => Gate::Open,
            State::Halted { reason, .. } => Gate::Refuse(LedgerError::Halted(reason.clone())),
            State::Failing { next_attempt, .. } if Instant::now() >= *next_attempt => {
                Gate::RecoveryDue
            }
            State::Failing { error, .. } => Gate::Refuse(LedgerError::Store(error.clone())),
        }
    }

    /// Refuses at once while writes cannot succeed and no recovery is due (nothing is queued
    /// nor verified); otherwise the sequencer decides.
    pub(super) fn refuse_if_unwritable(&self) -> Result<(), LedgerError> {
        match self.gate() {
            Gate::Refuse(error) => Err(error),
            Gate::Open | Gate::RecoveryDue => Ok(()),
        }
    }

    /// The sequencer's gate, holding the head: a due recovery is tried first.
    pub(super) fn gate_for_pass(&self, head: &mut Head) -> Option<LedgerError> {
        if matches!(self.gate(), Gate::RecoveryDue) {
            self.try_recover(head);
        }
        match self.gate() {
            Gate::Open => None,
            Gate::Refuse(error) => Some(error),
            // The recovery just failed and set the next attempt in the future; should the
            // clock say otherwise, refuse rather than write to a store not known to work.
            Gate::RecoveryDue => Some(LedgerError::Store(StoreError::Io(
                "the store has not recovered from a failed write yet".to_owned(),
            ))),
        }
    }

    /// A write failed (or a pass panicked): nothing of it was acknowledged. Records the failure
    /// and recovers at once if the store allows.
    pub(super) fn write_failed(&self, head: &mut Head, error: &LedgerError) {
        self.health.failed_writes.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = self.health.lock();
            if !matches!(*state, State::Halted { .. }) {
                *state = State::Failing {
                    error: match error {
                        LedgerError::Store(e) => e.clone(),
                        other => StoreError::Io(other.to_string()),
                    },
                    since: self.clock.now(),
                    attempts: 0,
                    next_attempt: Instant::now(),
                };
            }
        }
        self.try_recover(head);
    }

    /// A store write outside the sequencer failed (a checkpoint's row): the store is not
    /// trusted until it has been reopened, which the next submission (or
    /// [`Ledger::retry_store`]) does first.
    pub(super) fn store_write_failed(&self, error: &StoreError) {
        self.health.failed_writes.fetch_add(1, Ordering::Relaxed);
        let mut state = self.health.lock();
        if matches!(*state, State::Accepting) {
            *state = State::Failing {
                error: error.clone(),
                since: self.clock.now(),
                attempts: 0,
                next_attempt: Instant::now(),
            };
        }
    }

    /// Stops writing for good: what the store holds contradicts what this ledger saw durable.
    pub(super) fn halt(&self, reason: String) {
        *self.health.lock() = State::Halted {
            reason,
            since: self.clock.now(),
        };
    }

    /// The store said at opening that it cannot take writes (a disk without room for sled's
    /// reserve): the ledger starts out failing, and recovers like after a failed write.
    pub(super) fn unwritable_at_open(&self, error: StoreError) {
        *self.health.lock() = State::Failing {
            error,
            since: self.clock.now(),
            attempts: 0,
            next_attempt: Instant::now(),
        };
    }

    /// One recovery attempt; updates the health with its outcome.
    fn try_recover(&self, head: &mut Head) {
        let outcome = self.recover(head);
        let mut state = self.health.lock();
        match outcome {
            Ok(()) => {
                if !matches!(*state, State::Accepting) {
                    self.health.recoveries.fetch_add(1, Ordering::Relaxed);
                }
                *state = State::Accepting;
            }
            // The store failed again (its disk is still full, it does not open yet, its folder is
            // still locked by the database being closed, the database cannot be reached, or
            // another instance sharing it appended meanwhile): retry.
            Err(LedgerError::Store(
                error @ (StoreError::Io(_)
                | StoreError::InUse(_)
                | StoreError::Full(_)
                | StoreError::Unavailable(_)
                | StoreError::Behind { .. }),
            )) => {
                let (since, attempts) = match &*state {
                    State::Failing {
                        since, attempts, ..
                    } => (since.clone(), attempts.saturating_add(1)),
                    _ => (self.clock.now(), 1),
                };
                let wait = RETRY_FIRST
                    .saturating_mul(1 << attempts.saturating_sub(1).min(8))
                    .min(RETRY_MAX);
                *state = State::Failing {
                    error,
                    since,
                    attempts,
                    next_attempt: Instant::now() + wait,
                };
            }
            Err(error) => {
                *state = State::Halted {
                    reason: format!(
                        "after a failed write, the store read back from disk cannot be trusted ({error}); nothing more is written. Stop the service, run `carbon-ledger check`, and restore from a backup if it fails"
                    ),
                    since: self.clock.now(),
                };
            }
        }
    }

    /// Reopens the store, reads the head back, checks it against what memory last knew to be
    /// durable (`head.meta`, the metadata of the last write that succeeded), adopts it, and
    /// proves the store takes writes again.
    fn recover(&self, head: &mut Head) -> Result<(), LedgerError> {
        self.store.reopen()?;
        // On a shared store no other instance appends between the head read back and the
        // metadata row written again: the append below commits and releases the lock.
        self.store.lock_head()?;
        let recovered = self.recover_locked(head);
        self.store.unlock_head();
        recovered
    }

    fn recover_locked(&self, head: &mut Head) -> Result<(), LedgerError> {
        let meta = self
            .store
            .meta()?
            .ok_or_else(|| LedgerError::Integrity("the store lost its metadata row".to_owned()))?;
        let operator = PublicKey::from(self.operator_key.verifying_key());
        let fresh = Head::load(&self.store, meta, &self.origin, &operator)?;
        let adopted = self.check_against_durable(&head.meta, &fresh)?;
        // The reopened store must still extend every checkpoint signed (as kept in the main
        // data and apart from it).
        let key = self.operator_key.verifying_key();
        for note in [self.store.checkpoint()?, self.store.checkpoint_witness()?]
            .into_iter()
            .flatten()
        {
            let signed = crate::checkpoint::open_checkpoint(&note, self.origin.as_str(), &key)?;
            proofs::check_extends(self.store.as_ref(), &fresh.tree, &signed)?;
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = fresh.keys();
        *head = fresh;
        // On a shared store the entries past the durable size are mostly other instances'.
        if !self.store.shared() {
            self.health
                .adopted_entries
                .fetch_add(adopted, Ordering::Relaxed);
        }
        // The store must take a write before the ledger accepts any: the metadata row again,
        // as it is, atomically and durably.
        self.store.append(Append {
            first_seq: head.tree.size(),
            leaves: &[],
            nodes: &[],
            state: &[],
            meta: Some(&head.meta),
        })?;
        Ok(())
    }

    /// Checks the head read back from the store against the last durable metadata: the same,
    /// or ahead of it on the same tree and chain. Returns how many entries it is ahead.
    fn check_against_durable(
        &self,
        durable: &crate::store::Meta,
        fresh: &Head,
    ) -> Result<u64, LedgerError> {
        let peaks = durable
            .peaks
            .iter()
            .map(|p| unhex32(p, "tree edge"))
            .collect::<Result<Vec<_>, _>>()?;
        let durable_root = CompactTree::from_parts(durable.size, peaks)?.root();
        let durable_chain = unhex32(&durable.last_leaf_hash, "last leaf hash")?;
        let size = fresh.tree.size();
        if size < durable.size {
            return Err(LedgerError::Integrity(format!(
                "the store holds {size} entries after reopening, but {} were durable: acknowledged entries are missing",
                durable.size
            )));
        }
        if size == durable.size {
            if fresh.tree.root() != durable_root || fresh.last_leaf_hash != durable_chain {
                return Err(LedgerError::Integrity(format!(
                    "after reopening, the store's tree of {size} entries differs from the one made durable"
                )));
            }
            return Ok(0);
        }
        // Ahead: the failed write reached the disk. The durable tree must be a prefix of the
        // stored one, and the entries past it must chain on from the durable chain head.
        let nodes = StoreNodes(self.store.as_ref());
        if durable.size > 0 && merkle::root_at(durable.size, &nodes)? != durable_root {
            return Err(LedgerError::Integrity(format!(
                "after reopening, the store's tree at the durable size {} has another root",
                durable.size
            )));
        }
        let mut prev = durable_chain;
        for seq in durable.size..size {
            let leaf = self.store.leaf(seq)?.ok_or_else(|| {
                LedgerError::Integrity(format!("entry {seq} is missing after reopening"))
            })?;
            let envelope = Envelope::from_leaf(&leaf).map_err(|e| {
                LedgerError::Integrity(format!("entry {seq} cannot be read after reopening: {e}"))
            })?;
            if envelope.seq != seq || envelope.prev != hex32(&prev) {
                return Err(LedgerError::Integrity(format!(
                    "entry {seq}, found after reopening, does not chain on from entry {}",
                    seq.saturating_sub(1)
                )));
            }
            prev = merkle::leaf_hash(&leaf);
        }
        Ok(size - durable.size)
    }
}
