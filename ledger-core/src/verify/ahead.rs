//! A replay that decodes leaves and checks their signatures ahead of it, on other threads.
//!
//! Checking signatures is most of a replay's work, and it does not depend on the state except
//! for one thing: which key is each signer's current one. Helper threads decode the leaves to
//! come and check their signatures against the keys the signers are *expected* to hold: those
//! registered and rotated by the entries before, as if every entry were accepted. The replay
//! then applies the leaves in order on its own thread, and takes a helper's finding only if the
//! keys it was checked with are the ones the replayed state holds at that point, and otherwise
//! checks the signatures again itself. (A replay stops at its first refused entry, so the
//! expectation holds wherever the replay gets to; comparing the keys makes that certain rather
//! than assumed.) The result is the one [`Replayer::push`] would give, leaf for leaf: the same
//! refusals, at the same entry.
//!
//! With `h` helpers, helper `k` checks the leaves `k`, `k + h`, `k + 2h`… of the replay; each sees
//! every leaf, and reads the others only to follow registrations and rotations (a leaf that does
//! not contain such an entry's type is skipped without decoding).

use std::collections::{HashMap, VecDeque};
use std::sync::{mpsc, Arc};

use crate::ids::{ParticipantId, PublicKey};
use crate::merkle::{Hash, NodeId};
use crate::sign;
use crate::wire::{Envelope, Prepared};

use super::replay::{key_change, CheckedAhead, Decoded};
use super::{ReplayError, Replayer};

/// Leaves in flight between the reader and the replay: enough to keep the helpers busy, few
/// enough that memory stays small (a leaf is about a kilobyte).
const WINDOW: u64 = 4096;

/// How many helper threads a replay on this machine uses: one per core, at most eight.
pub fn helper_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
}

/// What a helper found about one leaf.
struct Ahead {
    decoded: Result<Decoded, ReplayError>,
    checked: Option<CheckedAhead>,
}

impl Replayer {
    /// Replays, in order, the leaves that `source` hands to the function it is given, as
    /// [`Replayer::push`] would, with `helpers` threads decoding them and checking their
    /// signatures ahead. `applied` is called for each leaf replayed, in order, with the replay
    /// as it stands after it, its seq, its bytes and the Merkle nodes it completed.
    ///
    /// The first error stops the replay, and it is the error of the first entry that has one: if
    /// `source` fails (it cannot read the next leaf, or finds one missing), the leaves it handed
    /// over before are replayed first, and a fault among them is the one returned. `source` must
    /// stop at the first error of the function it is given, and return it.
    pub fn replay_ahead<E: From<ReplayError>>(
        &mut self,
        helpers: usize,
        source: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<(), E>) -> Result<(), E>,
        applied: impl FnMut(&Replayer, u64, &[u8], Vec<(NodeId, Hash)>) -> Result<(), E>,
    ) -> Result<(), E> {
        let helpers = helpers.max(1);
        let expected = self.current_keys();
        let first = self.size();
        std::thread::scope(|scope| {
            let mut pipe = Pipe {
                replayer: self,
                applied,
                inputs: Vec::with_capacity(helpers),
                outputs: Vec::with_capacity(helpers),
                in_flight: VecDeque::new(),
                next: first,
                turn: 0,
                stopped: false,
            };
            for k in 0..helpers {
                let (input, leaves) = mpsc::channel::<Arc<[u8]>>();
                let (found, output) = mpsc::channel::<Ahead>();
                let expected = expected.clone();
                scope.spawn(move || help(k as u64, helpers as u64, first, expected, leaves, found));
                pipe.inputs.push(input);
                pipe.outputs.push(output);
            }
            let fed = source(&mut |leaf| pipe.push(leaf));
            if !pipe.stopped {
                while !pipe.in_flight.is_empty() {
                    pipe.apply_oldest()?;
                }
            }
            fed
            // Dropping the pipe closes the helpers' inputs: they stop, and the scope joins them.
        })
    }

    /// The participants' current keys in the replayed state.
    fn current_keys(&self) -> HashMap<ParticipantId, PublicKey> {
        self.state()
            .participants()
            .map(|p| (p.id.clone(), p.public_key))
            .collect()
    }
}

/// The replay's side of the helpers.
struct Pipe<'r, F> {
    replayer: &'r mut Replayer,
    applied: F,
    inputs: Vec<mpsc::Sender<Arc<[u8]>>>,
    outputs: Vec<mpsc::Receiver<Ahead>>,
    /// The leaves handed to the helpers and not yet replayed, oldest first.
    in_flight: VecDeque<Arc<[u8]>>,
    /// The seq of the oldest leaf in flight.
    next: u64,
    /// The helper that checked the oldest leaf in flight.
    turn: usize,
    /// A leaf failed: nothing after it is replayed.
    stopped: bool,
}

impl<F, E> Pipe<'_, F>
where
    F: FnMut(&Replayer, u64, &[u8], Vec<(NodeId, Hash)>) -> Result<(), E>,
    E: From<ReplayError>,
{
    fn push(&mut self, leaf: &[u8]) -> Result<(), E> {
        if self.in_flight.len() as u64 >= WINDOW {
            self.apply_oldest()?;
        }
        let leaf: Arc<[u8]> = Arc::from(leaf);
        for input in &self.inputs {
            // A helper that has stopped is replaced by the replay's own checks (below).
            let _ = input.send(Arc::clone(&leaf));
        }
        self.in_flight.push_back(leaf);
        Ok(())
    }

    fn apply_oldest(&mut self) -> Result<(), E> {
        let Some(leaf) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let seq = self.next;
        self.next += 1;
        // Helper k checks the leaves k, k + h, k + 2h…: the oldest leaf's is the next in turn.
        let helper = self.turn;
        self.turn = (self.turn + 1) % self.outputs.len();
        let ahead = match self.outputs[helper].recv() {
            Ok(ahead) => ahead,
            Err(_) => Ahead {
                decoded: Decoded::new(seq, &leaf),
                checked: None,
            },
        };
        let outcome = ahead
            .decoded
            .and_then(|decoded| self.replayer.apply(&leaf, decoded, ahead.checked))
            .map_err(E::from)
            .and_then(|nodes| (self.applied)(self.replayer, seq, &leaf, nodes));
        self.stopped = outcome.is_err();
        outcome
    }
}

/// Helper `k` of `count`: decodes and checks the leaves `first + k`, `first + k + count`…, and
/// follows the keys that every leaf registers or rotates.
fn help(
    k: u64,
    count: u64,
    first: u64,
    mut expected: HashMap<ParticipantId, PublicKey>,
    leaves: mpsc::Receiver<Arc<[u8]>>,
    found: mpsc::Sender<Ahead>,
) {
    let mut seq = first;
    while let Ok(leaf) = leaves.recv() {
        if (seq - first) % count == k {
            let decoded = Decoded::new(seq, &leaf);
            let prepared = decoded.as_ref().ok().and_then(Decoded::prepared);
            let checked = prepared.and_then(|p| check_ahead(&expected, p));
            if let Some((id, key)) = prepared.and_then(|p| key_change(p.body())) {
                expected.insert(id, key);
            }
            if found.send(Ahead { decoded, checked }).is_err() {
                return;
            }
        } else if may_change_keys(&leaf) {
            if let Some((id, key)) = Envelope::from_leaf(&leaf)
                .ok()
                .and_then(|envelope| key_change(&envelope.entry.body))
            {
                expected.insert(id, key);
            }
        }
        seq += 1;
    }
}

/// The signatures of `prepared` checked against the expected keys, if they verify.
fn check_ahead(
    expected: &HashMap<ParticipantId, PublicKey>,
    prepared: &Prepared,
) -> Option<CheckedAhead> {
    let verified = sign::verify_signatures(expected, prepared).ok()?;
    let signers = prepared
        .submission()
        .signatures
        .iter()
        .map(|line| {
            let key = expected.get(&line.signer).map(|k| k.to_bytes());
            (line.signer.clone(), key)
        })
        .collect();
    Some(CheckedAhead {
        verified,
        expected: signers,
    })
}

/// Whether a leaf may register or rotate a key: its bytes (canonical JSON, without spaces) hold
/// the type of such an entry. Other text could hold it too; such a leaf is only decoded for
/// nothing.
fn may_change_keys(leaf: &[u8]) -> bool {
    const TYPES: [&[u8]; 2] = [
        b"\"type\":\"register_participant\"",
        b"\"type\":\"rotate_key\"",
    ];
    TYPES
        .iter()
        .any(|pattern| leaf.windows(pattern.len()).any(|w| w == *pattern))
}
