//! Submitting: the sequencer and its group commit.
//!
//! There is no sequencer thread. A submitter that finds nobody sequencing takes everything
//! queued and sequences it (it leads the pass), while the others wait for their answers: every
//! entry is applied in order, the pass is written as one atomic, durable store write, and only
//! then is every submitter answered. Meanwhile new submissions queue for the next pass; when the
//! pass ends, the submitter that has waited longest is woken to take the turn (unless one arriving
//! meanwhile takes it first) and leads the next pass with everything queued. A waiting submitter
//! is woken for its answer and at most for the turn: never all of them at the end of every pass.
//!
//! A pass that panics (a broken invariant, a store that panics) is undone by a drop guard: every
//! submitter of the pass gets an error, and the head is read back from what the store holds, so
//! that no later pass builds on a leaf that was never stored. A pass whose write fails answers
//! every submitter with the error and recovers the same way, from a reopened store (see
//! `health`); while the store keeps failing, submissions are refused at once.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, RwLockWriteGuard};

use crate::entry::{EntryKind, SignatureLine, Submission};
use crate::error::RuleError;
use crate::ids::{EntryId, ParticipantId, PublicKey};
use crate::merkle::{self, NodeId};
use crate::sign::{self, Verified};
use crate::state::Context;
use crate::store::{Append, StoreError};
use crate::wire::{self, Envelope, Prepared, WireError};

use super::{hex32, Head, Ledger, LedgerError, Receipt, MAX_GROUP};

/// A unit of work for the sequencer: one entry, or an atomic group.
pub(super) enum Unit {
    Single(Box<(Prepared, Verified)>),
    Group(Vec<(Prepared, Verified)>),
}

type UnitResult = Result<Vec<Receipt>, LedgerError>;

/// What a waiting submitter is woken for.
enum Wake {
    /// Its unit was sequenced (or refused): the answer.
    Answer(UnitResult),
    /// A pass ended and it has waited longest: it may take the turn and lead the next.
    Turn,
}

pub(super) struct Pending {
    unit: Unit,
    reply: mpsc::Sender<Wake>,
}

/// The sequencer's queue, and whether a submitter is sequencing now.
#[derive(Default)]
pub(super) struct Queue {
    waiting: Vec<Pending>,
    sequencing: bool,
}

/// Hands the turn on when a sequencing pass ends, even if it panicked: to the submitter that has
/// waited longest, or to whoever submits next if nobody waits.
struct EndOfTurn<'a>(&'a Ledger);

impl Drop for EndOfTurn<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.sequencing = false;
        // Wakes one: the first to take the turn (it, or a submitter arriving meanwhile) leads.
        // A submitter waiting in `run` holds its receiver until it is answered, so the send
        // reaches it; should it not, the next is woken.
        let _ = queue
            .waiting
            .iter()
            .any(|pending| pending.reply.send(Wake::Turn).is_ok());
    }
}

/// One sequencing pass: the head under its write lock, and the submitters not answered yet.
/// Dropped while they are still waiting (the pass panicked), it answers each with an error and
/// reads the head back from the store.
struct Pass<'a> {
    ledger: &'a Ledger,
    head: RwLockWriteGuard<'a, Head>,
    waiting: Vec<mpsc::Sender<Wake>>,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        self.ledger.reload(&mut self.head);
        let error = LedgerError::Integrity(
            "the ledger failed while writing this entry and nothing of its group was acknowledged; submit it again".to_owned(),
        );
        for reply in self.waiting.drain(..) {
            let _ = reply.send(Wake::Answer(Err(error.clone())));
        }
    }
}

/// Most attempts of one pass on a shared store: the first, optimistic; the next under the
/// store's head lock, which no other instance can overtake (more only if the store misbehaves).
const MAX_ATTEMPTS: usize = 3;

/// How many passes after one that was overtaken take the head lock before they sequence.
const CONTENDED_PASSES: u32 = 32;

/// Releases the store's head lock when a pass that took it ends (an append commits and releases
/// it first; this covers a pass left with nothing to append, an error, a panic).
struct HeadLock<'a>(&'a Ledger);

impl Drop for HeadLock<'_> {
    fn drop(&mut self) {
        self.0.store.unlock_head();
    }
}

/// What one group commit writes, as the pass builds it.
#[derive(Default)]
struct GroupWrite {
    leaves: Vec<Vec<u8>>,
    nodes: Vec<(NodeId, merkle::Hash)>,
    /// Keys registered or rotated by the pass, for the key cache once it is durable.
    new_keys: Vec<(ParticipantId, PublicKey)>,
}

impl GroupWrite {
    fn truncate(&mut self, (leaves, nodes, keys): (usize, usize, usize)) {
        self.leaves.truncate(leaves);
        self.nodes.truncate(nodes);
        self.new_keys.truncate(keys);
    }

    fn lengths(&self) -> (usize, usize, usize) {
        (self.leaves.len(), self.nodes.len(), self.new_keys.len())
    }
}

/// The same signatures, whatever their order.
fn same_signatures(a: &[SignatureLine], b: &[SignatureLine]) -> bool {
    let set = |lines: &[SignatureLine]| -> BTreeSet<(String, [u8; 64])> {
        lines
            .iter()
            .map(|l| (l.signer.to_string(), l.sig.0))
            .collect()
    };
    a.len() == b.len() && set(a) == set(b)
}

impl Ledger {
    /// Submits one signed entry and returns its receipt once it is durable. The same signed
    /// entry submitted again (its signatures in any order) returns its first receipt.
    pub fn submit(&self, submission: Submission) -> Result<Receipt, LedgerError> {
        self.submit_prepared(Prepared::new(submission)?)
    }

    /// Submits one entry from the bytes a client sent.
    pub fn submit_bytes(&self, bytes: &[u8]) -> Result<Receipt, LedgerError> {
        self.submit_prepared(wire::decode_submission(bytes)?)
    }

    /// Submits one decoded entry.
    pub fn submit_prepared(&self, prepared: Prepared) -> Result<Receipt, LedgerError> {
        // The same signed entry again gets its first receipt, even if a signer's key has
        // rotated since: it was verified when it was accepted. Looked for here only when the
        // sequencer is not writing (its pass holds the head): a submitter that waited for the
        // head would join the next group late. The sequencer looks again anyway, and a
        // resubmission whose signatures no longer verify is looked for below.
        if let Ok(head) = self.head.try_read() {
            if let Some(receipt) =
                self.same_entry_again(&head, &GroupWrite::default(), &prepared)?
            {
                return Ok(receipt);
            }
        }
        self.refuse_if_unwritable()?;
        let verified = match self.verify(&prepared) {
            Err(LedgerError::Signature(error)) => {
                // A signer registered, or a key rotated, by another instance sharing the store:
                // catch up and check again before refusing.
                if self.store.shared() {
                    self.refresh()?;
                }
                let again = {
                    let head = self.read_head();
                    self.same_entry_again(&head, &GroupWrite::default(), &prepared)?
                };
                match again {
                    Some(receipt) => return Ok(receipt),
                    None if self.store.shared() => match self.verify(&prepared) {
                        Err(LedgerError::Signature(error)) => {
                            return Err(self.explained(error, &prepared))
                        }
                        other => other?,
                    },
                    None => return Err(self.explained(error, &prepared)),
                }
            }
            other => other?,
        };
        let mut receipts = self.run(Unit::Single(Box::new((prepared, verified))))?;
        receipts
            .pop()
            .ok_or_else(|| LedgerError::Integrity("the sequencer returned no receipt".to_owned()))
    }

    /// Submits an atomic group: every entry is appended, in order, or none is.
    pub fn submit_group(&self, group: Vec<Prepared>) -> Result<Vec<Receipt>, LedgerError> {
        if group.is_empty() || group.len() > MAX_GROUP {
            return Err(LedgerError::GroupSize(group.len()));
        }
        self.refuse_if_unwritable()?;
        // Signatures are checked on all cores. A signer registered, or a key rotated, earlier in
        // the same group is not known yet: such entries are verified again by the sequencer, in
        // order, which then gives the real answer.
        let checks = self.verify_all(&group);
        let mut verified = Vec::with_capacity(group.len());
        for (index, (prepared, check)) in group.into_iter().zip(checks).enumerate() {
            let checked = match check {
                Ok(v) => v,
                Err(LedgerError::Signature(_)) => Verified::default(),
                Err(error) => {
                    return Err(LedgerError::Group {
                        index,
                        error: Box::new(error),
                    })
                }
            };
            verified.push((prepared, checked));
        }
        self.run(Unit::Group(verified))
    }

    /// A signature refusal that stands, checked once more against the state, which knows the
    /// keys each participant rotated away: a signature made with one of them is refused as such
    /// ([`sign::SignatureError::FormerKey`]) rather than as a bare bad signature.
    fn explained(&self, error: sign::SignatureError, prepared: &Prepared) -> LedgerError {
        let head = self.read_head();
        LedgerError::Signature(
            sign::verify_signatures(&head.state, prepared)
                .err()
                .unwrap_or(error),
        )
    }

    /// Verifies many submissions, spread over the machine's cores.
    fn verify_all(&self, group: &[Prepared]) -> Vec<Result<Verified, LedgerError>> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        if threads < 2 || group.len() < 8 {
            return group.iter().map(|p| self.verify(p)).collect();
        }
        let chunk = group.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = group
                .chunks(chunk)
                .map(|part| {
                    let worker = scope.spawn(move || part.iter().map(|p| self.verify(p)).collect());
                    (part.len(), worker)
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|(len, worker)| {
                    worker.join().unwrap_or_else(|_| {
                        let panicked =
                            LedgerError::Integrity("a signature check failed".to_owned());
                        vec![Err(panicked); len]
                    })
                })
                .collect()
        })
    }

    fn verify(&self, prepared: &Prepared) -> Result<Verified, LedgerError> {
        if prepared.body().ledger != self.origin {
            return Err(LedgerError::WrongLedger {
                expected: self.origin.to_string(),
                found: prepared.body().ledger.to_string(),
            });
        }
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        Ok(sign::verify_signatures(&*keys, prepared)?)
    }

    /// Queues a unit and waits for its answer, sequencing the queue itself when nobody else is.
    ///
    /// Group commit: while one pass writes and syncs, new submissions queue up, and the next pass
    /// takes them all as one durable write. Waiters block on their own channel, not on the pass:
    /// those answered leave at once, and the one handed the turn starts the next pass at once.
    fn run(&self, unit: Unit) -> UnitResult {
        // Behind its floor, an entry accepted now would start a second history under the key.
        if let Some(refusal) = self.floor.and_then(|_| self.behind_floor()) {
            return Err(refusal);
        }
        let (reply, answer) = mpsc::channel();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .push(Pending { unit, reply });
        loop {
            // Take the turn if nobody has it, and with it everything queued (this unit too,
            // unless a pass took it already).
            let work = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                (!std::mem::replace(&mut queue.sequencing, true))
                    .then(|| std::mem::take(&mut queue.waiting))
            };
            if let Some(work) = work {
                let end = EndOfTurn(self);
                if !work.is_empty() {
                    // A panic in the pass has answered every submitter of it (this one
                    // included) through the pass's guard; this thread goes on to its answer.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| self.sequence(work)));
                }
                drop(end);
            }
            match answer.recv() {
                Ok(Wake::Answer(result)) => return result,
                // Woken for the turn, but a pass may have taken this unit and answered it
                // since: then it leaves rather than leading a pass for the others.
                Ok(Wake::Turn) => {
                    if let Ok(Wake::Answer(result)) = answer.try_recv() {
                        return result;
                    }
                }
                Err(mpsc::RecvError) => {
                    return Err(LedgerError::Integrity(
                        "the sequencer dropped this entry without an answer".to_owned(),
                    ))
                }
            }
        }
    }

    /// Sequences queued units, writes them as one durable group, then answers each.
    fn sequence(&self, work: Vec<Pending>) {
        let (units, waiting): (Vec<Unit>, Vec<_>) =
            work.into_iter().map(|p| (p.unit, p.reply)).unzip();
        let mut pass = Pass {
            ledger: self,
            head: self.head.write().unwrap_or_else(|e| e.into_inner()),
            waiting,
        };
        let results = self.sequence_units(&mut pass.head, units);
        let waiting = std::mem::take(&mut pass.waiting);
        drop(pass);
        for (reply, result) in waiting.into_iter().zip(results) {
            // A submitter that went away no longer needs its answer.
            let _ = reply.send(Wake::Answer(result));
        }
    }

    /// Sequences the units, writes them and answers. On a shared store another instance may
    /// have appended since this one last did ([`StoreError::Behind`]): the pass locks the store's
    /// head, catches up with what it missed and sequences the same units again, so that it
    /// cannot be overtaken twice.
    fn sequence_units(&self, head: &mut Head, units: Vec<Unit>) -> Vec<UnitResult> {
        let mut _locked = None;
        // Under contention (another instance appended before one of the last passes), a pass
        // takes the head lock first: an optimistic attempt would most likely be overtaken.
        let contended = self.store.shared()
            && self
                .contended_passes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
        if contended {
            // Catch up with what is durable before taking the lock, so that the lock is held
            // for the few entries appended meanwhile rather than for all of them.
            if let Ok(Some(meta)) = self.store.meta() {
                if meta.size > head.tree.size() {
                    let _ = self.behind(head, meta.size);
                }
            }
            let lock = HeadLock(self);
            let caught_up = self
                .store
                .lock_head()
                .map_err(LedgerError::from)
                .and_then(|locked| self.behind(head, locked.unwrap_or(0)));
            if let Err(error) = caught_up {
                return units.iter().map(|_| Err(error.clone())).collect();
            }
            _locked = Some(lock);
        }
        let mut attempt = 1;
        loop {
            let (results, mut behind, appended) = self.sequence_attempt(head, &units);
            if behind.is_none() && !appended && self.store.shared() && attempt < MAX_ATTEMPTS {
                behind = self.refusals_stale(head, &results);
            }
            let Some(durable) = behind.filter(|_| attempt < MAX_ATTEMPTS) else {
                return results;
            };
            self.contended_passes
                .store(CONTENDED_PASSES, Ordering::Relaxed);
            attempt += 1;
            let lock = HeadLock(self);
            let caught_up = self
                .store
                .lock_head()
                .map_err(LedgerError::from)
                .and_then(|locked| self.behind(head, locked.unwrap_or(durable).max(durable)));
            if let Err(error) = caught_up {
                return units.iter().map(|_| Err(error.clone())).collect();
            }
            _locked = Some(lock);
        }
    }

    /// On a shared store, a pass that refused something without appending anything made its
    /// decisions on this instance's state, which another instance's appends may have left
    /// behind (a signer registered, sink received elsewhere). A pass that appended needs no
    /// check: its append found the store's head where the pass built on, so every decision of
    /// the pass was made on the latest state. Returns the store's size if it is ahead: the pass
    /// then catches up and decides again.
    fn refusals_stale(&self, head: &Head, results: &[UnitResult]) -> Option<u64> {
        let refused = results.iter().any(|r| {
            r.as_ref()
                .err()
                .is_some_and(|e| !matches!(e, LedgerError::Store(_) | LedgerError::Halted(_)))
        });
        if !refused {
            return None;
        }
        let durable = self.store.meta().ok().flatten().map(|meta| meta.size)?;
        (durable > head.tree.size()).then_some(durable)
    }

    /// One attempt of a pass: every unit sequenced, the group written. Returns the answers, the
    /// store's size if the write found that another instance appended meanwhile (memory is then
    /// as before the attempt), and whether it appended.
    fn sequence_attempt(
        &self,
        head: &mut Head,
        units: &[Unit],
    ) -> (Vec<UnitResult>, Option<u64>, bool) {
        let end_before = head.log_end();
        let mut group = GroupWrite::default();
        let refusal = self.gate_for_pass(head);
        let mut results: Vec<UnitResult> = units
            .iter()
            .map(|unit| match (&refusal, unit) {
                (Some(error), _) => Err(error.clone()),
                (None, Unit::Single(single)) => self
                    .sequence_one(head, &mut group, &single.0, &single.1)
                    .map(|r| vec![r]),
                (None, Unit::Group(entries)) => self.sequence_group(head, &mut group, entries),
            })
            .collect();
        let outcome = if group.leaves.is_empty() {
            Ok(())
        } else {
            self.write(head, &group, end_before.tree.size())
        };
        let mut behind = None;
        let appended = outcome.is_ok() && !group.leaves.is_empty();
        match outcome {
            Ok(()) => {
                head.state.settle();
                if !group.leaves.is_empty() {
                    self.durable_writes.fetch_add(1, Ordering::Relaxed);
                    self.entries_written
                        .fetch_add(group.leaves.len() as u64, Ordering::Relaxed);
                }
                if !group.new_keys.is_empty() {
                    let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
                    keys.extend(group.new_keys.drain(..));
                }
            }
            Err(error) => {
                head.state.revert();
                head.rewind(end_before);
                for result in &mut results {
                    if result.is_ok() {
                        *result = Err(error.clone());
                    }
                }
                if let LedgerError::Store(StoreError::Behind { durable }) = error {
                    // Another instance appended first: nothing was written, and nothing failed.
                    behind = Some(durable);
                } else {
                    // Nothing of the group is acknowledged, and nothing more is read from the
                    // store as the failed write left it: reopen it and check it before the next
                    // write.
                    self.write_failed(head, &error);
                }
            }
        }
        (results, behind, appended)
    }

    fn write(
        &self,
        head: &mut Head,
        group: &GroupWrite,
        first_seq: u64,
    ) -> Result<(), LedgerError> {
        let changes = head.state.pending_changes()?;
        let mut meta = head.meta.clone();
        meta.size = head.tree.size();
        meta.peaks = head.tree.peaks().iter().map(hex32).collect();
        meta.last_leaf_hash = hex32(&head.last_leaf_hash);
        self.store.append(Append {
            first_seq,
            leaves: &group.leaves,
            nodes: &group.nodes,
            state: &changes,
            meta: Some(&meta),
        })?;
        head.meta = meta;
        Ok(())
    }

    /// Reads the head back after a pass failed in a way that leaves memory in doubt (it
    /// panicked): from the store reopened from disk and checked against what was durable, as
    /// after a failed write (see `health`). Until that succeeds, writes are refused; if what is
    /// durable contradicts what was acknowledged, for good.
    pub(super) fn reload(&self, head: &mut Head) {
        let cause = LedgerError::Integrity("a sequencing pass failed while writing".to_owned());
        self.write_failed(head, &cause);
    }

    fn sequence_group(
        &self,
        head: &mut Head,
        group: &mut GroupWrite,
        entries: &[(Prepared, Verified)],
    ) -> UnitResult {
        let savepoint = head.state.savepoint();
        let end_before = head.log_end();
        let group_before = group.lengths();
        let mut receipts = Vec::with_capacity(entries.len());
        for (index, (prepared, verified)) in entries.iter().enumerate() {
            match self.sequence_one(head, group, prepared, verified) {
                Ok(receipt) => receipts.push(receipt),
                Err(error) => {
                    head.state.rollback_to(savepoint);
                    head.rewind(end_before);
                    group.truncate(group_before);
                    return Err(LedgerError::Group {
                        index,
                        error: Box::new(error),
                    });
                }
            }
        }
        Ok(receipts)
    }

    fn sequence_one(
        &self,
        head: &mut Head,
        group: &mut GroupWrite,
        prepared: &Prepared,
        verified: &Verified,
    ) -> Result<Receipt, LedgerError> {
        let body = prepared.body();
        if let Some(receipt) = self.same_entry_again(head, group, prepared)? {
            return Ok(receipt);
        }
        let accepted_at = self.clock.now();
        let expired = body
            .created_at
            .instant()
            .checked_add(self.entry_max_age)
            .is_some_and(|deadline| deadline < accepted_at.instant());
        if expired {
            return Err(RuleError::EntryExpired {
                created_at: body.created_at.clone(),
                arrived_at: accepted_at,
                window: describe_duration(self.entry_max_age),
            }
            .into());
        }
        // Keys may have rotated (or signers registered) since verification: verify again.
        let fresh;
        let verified = if verified.still_current(&head.state) {
            verified
        } else {
            fresh = sign::verify_signatures(&head.state, prepared)?;
            &fresh
        };
        let seq = head.tree.size();
        let ctx = Context {
            seq,
            accepted_at: accepted_at.clone(),
            signers: verified.signers.clone(),
            body_digest: prepared.body_digest(),
        };
        head.state.apply(&ctx, body)?;
        match &body.kind {
            EntryKind::RegisterParticipant(r) => {
                group.new_keys.push((r.participant.clone(), r.public_key));
            }
            EntryKind::RotateKey(r) => group
                .new_keys
                .push((r.participant.clone(), r.new_public_key)),
            _ => {}
        }
        let prev = hex32(&head.last_leaf_hash);
        let leaf =
            Envelope::leaf_bytes_of(seq, &prev, &accepted_at, prepared).map_err(WireError::from)?;
        debug_assert_eq!(
            Some(&leaf),
            Envelope {
                seq,
                prev,
                accepted_at: accepted_at.clone(),
                entry: prepared.submission().clone(),
            }
            .leaf_bytes()
            .ok()
            .as_ref(),
            "the spliced leaf is the envelope's JCS"
        );
        let leaf_hash = merkle::leaf_hash(&leaf);
        group.nodes.extend(head.tree.append(leaf_hash)?);
        group.leaves.push(leaf);
        head.last_leaf_hash = leaf_hash;
        head.last_accepted_at = Some(accepted_at.clone());
        Ok(Receipt {
            seq,
            id: body.id.to_string(),
            entry_type: body.type_name().to_owned(),
            leaf_hash: hex32(&leaf_hash),
            accepted_at: accepted_at.to_string(),
            duplicate: false,
        })
    }

    /// The first receipt, if `prepared` is an entry already in the ledger (or in the group being
    /// sequenced): the same body with the same signatures, in any order. The same body with
    /// other signatures is not the same signed entry; it goes through verification and the rules
    /// like any other.
    fn same_entry_again(
        &self,
        head: &Head,
        group: &GroupWrite,
        prepared: &Prepared,
    ) -> Result<Option<Receipt>, LedgerError> {
        let Some(first) = head.state.entry(&prepared.body().id)? else {
            return Ok(None);
        };
        if first.body_digest != prepared.body_digest() {
            return Ok(None);
        }
        let (receipt, signatures) =
            self.receipt_again(head, group, first.seq, &prepared.body().id)?;
        Ok(same_signatures(&signatures, &prepared.submission().signatures).then_some(receipt))
    }

    /// The receipt of entry `seq`, with the signatures it was accepted with.
    fn receipt_again(
        &self,
        head: &Head,
        group: &GroupWrite,
        seq: u64,
        id: &EntryId,
    ) -> Result<(Receipt, Vec<SignatureLine>), LedgerError> {
        let read = |leaf: &[u8]| {
            Envelope::from_leaf(leaf)
                .map_err(|e| LedgerError::Integrity(format!("leaf {seq} cannot be read: {e}")))
        };
        // An entry of this pass is in the group; an earlier one in the store. On a shared store
        // the entry may also be one that another instance appended and this one has not caught
        // up with: it is in the store, at a position the group may cover too.
        let in_group = seq
            .checked_sub(head.meta.size)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| group.leaves.get(i))
            .map(|leaf| read(leaf).map(|envelope| (leaf.clone(), envelope)))
            .transpose()?
            .filter(|(_, envelope)| envelope.entry.body.id == *id);
        let (leaf, envelope) = match in_group {
            Some(found) => found,
            None => {
                let leaf = self
                    .store
                    .leaf(seq)?
                    .ok_or_else(|| LedgerError::Integrity(format!("leaf {seq} is missing")))?;
                let envelope = read(&leaf)?;
                (leaf, envelope)
            }
        };
        let receipt = Receipt {
            seq,
            id: envelope.entry.body.id.to_string(),
            entry_type: envelope.entry.body.type_name().to_owned(),
            leaf_hash: hex32(&merkle::leaf_hash(&leaf)),
            accepted_at: envelope.accepted_at.to_string(),
            duplicate: true,
        };
        Ok((receipt, envelope.entry.signatures))
    }
}

/// A duration in the largest whole unit that states it exactly (`24 h`, `90 min`, `45 s`).
fn describe_duration(duration: time::Duration) -> String {
    let seconds = duration.whole_seconds();
    if seconds % 3600 == 0 {
        format!("{} h", seconds / 3600)
    } else if seconds % 60 == 0 {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}
