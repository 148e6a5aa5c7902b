//! A validating witness: C2SP `tlog-witness` with Ed25519 `cosignature/v1` cosignatures, that
//! replays every entry before it cosigns.
//!
//! A plain transparency-log witness checks that each checkpoint is consistent with the last one
//! it cosigned, so that the log cannot show two histories. This one also keeps a verified copy of
//! the ledger ([`crate::ledger::Replica`]): before cosigning a checkpoint it fetches every new
//! entry and replays it — signatures, the rules of the market — and requires the checkpoint's
//! root and its state line to be those its replay produces. Its cosignature therefore states,
//! beyond the base semantics of `cosignature/v1`: *every entry up to this size obeys the rules of
//! the market, and the state line commits to the state they produce*. A bank that trusts this
//! witness's key trusts that statement, not the operator's.
//!
//! The HTTP service (`carbon-ledger witness`) is a thin layer over [`Witness::add_checkpoint`]
//! and [`Witness::latest`]; fetching entries from the ledger is the caller's (a closure).

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::ids::Origin;
use crate::ledger::{LedgerError, Replica};
use crate::merkle::{self, Hash};
use crate::state::StateCommitment;

/// Most consistency proof lines an `add-checkpoint` request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// Most entries fetched from the ledger at a time while replaying.
pub const FETCH_CHUNK: u64 = 1000;

/// An `add-checkpoint` request: the size of the witness's last cosigned checkpoint, a
/// consistency proof from it, and the new checkpoint (a signed note).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The old size.
    pub old_size: u64,
    /// The consistency proof from the old size to the checkpoint's.
    pub proof: Vec<Hash>,
    /// The checkpoint, with its signatures.
    pub note: String,
}

impl AddCheckpoint {
    /// The request body: `old <size>`, one base64 hash per line, a blank line, the checkpoint.
    pub fn body(&self) -> String {
        let mut body = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            body.push_str(&BASE64.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.note);
        body
    }

    /// Parses a request body strictly.
    ///
    /// # Errors
    ///
    /// [`WitnessError::BadRequest`] for any deviation from the format.
    pub fn parse(body: &str) -> Result<Self, WitnessError> {
        let bad = |what: &str| WitnessError::BadRequest(what.to_owned());
        let (head, note) = body
            .split_once("\n\n")
            .ok_or_else(|| bad("the request has no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("the first line must be \"old <size>\""))?;
        if old.is_empty()
            || !old.bytes().all(|b| b.is_ascii_digit())
            || (old.len() > 1 && old.starts_with('0'))
        {
            return Err(bad(
                "the old size is not a decimal number without leading zeros",
            ));
        }
        let old_size = old
            .parse()
            .map_err(|_| bad("the old size is out of range"))?;
        let proof = lines
            .map(|line| {
                let bytes = BASE64
                    .decode(line)
                    .map_err(|_| bad("a proof line is not base64"))?;
                if BASE64.encode(&bytes) != line {
                    return Err(bad("a proof line is not canonical base64"));
                }
                bytes
                    .try_into()
                    .map_err(|_| bad("a proof line is not a 32-byte hash"))
            })
            .collect::<Result<Vec<Hash>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("more than 63 proof lines"));
        }
        Ok(Self {
            old_size,
            proof,
            note: note.to_owned(),
        })
    }
}

/// Why the witness did not cosign. Each kind has the status C2SP `tlog-witness` gives it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The request is malformed, or the old size exceeds the checkpoint's (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The checkpoint is not signed by the log's key (403).
    #[error("the checkpoint is not signed by the log's key: {0}")]
    Unauthorized(String),
    /// The witness does not witness this log (404).
    #[error("this witness does not witness the log \"{0}\"")]
    UnknownLog(String),
    /// The old size is not that of the last checkpoint cosigned (409, with that size).
    #[error("the last checkpoint this witness cosigned has size {size}")]
    Conflict {
        /// The size of the last checkpoint cosigned.
        size: u64,
    },
    /// The checkpoint is inconsistent with what the witness saw, or its entries break the
    /// market's rules, or its state line is not the replay's (422).
    #[error("refused: {0}")]
    Refused(String),
    /// The witness could not fetch the log's entries (503).
    #[error("the log's entries could not be fetched: {0}")]
    Unavailable(String),
    /// The witness's own store failed (500).
    #[error("the witness's store failed: {0}")]
    Storage(String),
}

impl WitnessError {
    /// The HTTP status C2SP `tlog-witness` gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            WitnessError::BadRequest(_) => 400,
            WitnessError::Unauthorized(_) => 403,
            WitnessError::UnknownLog(_) => 404,
            WitnessError::Conflict { .. } => 409,
            WitnessError::Refused(_) => 422,
            WitnessError::Unavailable(_) => 503,
            WitnessError::Storage(_) => 500,
        }
    }
}

/// Fetches the ledger's leaves `[from, to)` (fewer is fine, in order, none skipped).
pub type Fetch<'a> = dyn FnMut(&Origin, u64, u64) -> Result<Vec<Vec<u8>>, String> + 'a;

/// The lowercase hex SHA-256 of an origin: how the monitoring path names a log.
pub fn origin_hash(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

/// A validating witness. See the module documentation.
#[derive(Debug)]
pub struct Witness {
    name: String,
    key: SigningKey,
    /// Each log witnessed, by origin: its replica and, beside it, the last checkpoint cosigned.
    logs: BTreeMap<String, Mutex<Replica>>,
}

impl Witness {
    /// A witness named `name` (its key name in cosignatures) signing with `key`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidKeyName`] for a bad name.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        checkpoint::validate_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key,
            logs: BTreeMap::new(),
        })
    }

    /// Witnesses the log whose replica this is.
    pub fn add_log(&mut self, replica: Replica) {
        self.logs
            .insert(replica.origin().to_string(), Mutex::new(replica));
    }

    /// Its key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its verifier key (C2SP vkey, signature type 0x04), which banks configure.
    pub fn verifier_key(&self) -> String {
        checkpoint::cosigner_verifier_key(&self.name, &self.key.verifying_key())
    }

    /// The origins of the logs it witnesses.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    /// The last checkpoint it cosigned for the log whose origin hashes to `origin_hash`, with
    /// the log's signature and its own cosignature.
    pub fn latest(&self, origin_hash_hex: &str) -> Result<Option<String>, WitnessError> {
        let Some((_, log)) = self
            .logs
            .iter()
            .find(|(origin, _)| origin_hash(origin) == origin_hash_hex)
        else {
            return Err(WitnessError::UnknownLog(origin_hash_hex.to_owned()));
        };
        let replica = log.lock().unwrap_or_else(|e| e.into_inner());
        replica
            .kept_checkpoint()
            .map_err(|e| WitnessError::Storage(e.to_string()))
    }

    /// Handles an `add-checkpoint` request: checks it as C2SP `tlog-witness` says, replays the
    /// log's new entries (fetched with `fetch`), and returns the cosignature line made at `now`
    /// (POSIX seconds) once the cosigned checkpoint is durable.
    pub fn add_checkpoint(
        &self,
        body: &str,
        fetch: &mut Fetch<'_>,
        now: u64,
    ) -> Result<String, WitnessError> {
        let request = AddCheckpoint::parse(body)?;
        let origin = request.note.lines().next().unwrap_or_default().to_owned();
        let log = self
            .logs
            .get(&origin)
            .ok_or_else(|| WitnessError::UnknownLog(origin.clone()))?;
        // Checking the old size and keeping the new checkpoint happen under one lock.
        let mut replica = log.lock().unwrap_or_else(|e| e.into_inner());
        let key = *replica.operator_key();
        let checkpoint = checkpoint::open_checkpoint(&request.note, &origin, &key)
            .map_err(|e| WitnessError::Unauthorized(e.to_string()))?;
        if request.old_size > checkpoint.size {
            return Err(WitnessError::BadRequest(format!(
                "the old size {} exceeds the checkpoint's size {}",
                request.old_size, checkpoint.size
            )));
        }
        let last = self.last_cosigned(&replica)?;
        let last_size = last.as_ref().map_or(0, |c| c.size);
        if request.old_size != last_size {
            return Err(WitnessError::Conflict { size: last_size });
        }
        Self::check_consistency(&request, &checkpoint, last.as_ref())?;
        self.replay_to(&mut replica, &checkpoint, fetch)?;
        let text = checkpoint.body();
        let line = checkpoint::cosign(&text, &self.name, &self.key, now)
            .map_err(|e| WitnessError::Storage(e.to_string()))?;
        let kept = format!(
            "{}{line}",
            Self::without_own_cosignature(&request.note, &self.name)
        );
        replica
            .keep_checkpoint(&kept)
            .map_err(|e| WitnessError::Storage(e.to_string()))?;
        Ok(line)
    }

    /// The last checkpoint cosigned, as kept beside the replica.
    fn last_cosigned(&self, replica: &Replica) -> Result<Option<Checkpoint>, WitnessError> {
        let Some(note) = replica
            .kept_checkpoint()
            .map_err(|e| WitnessError::Storage(e.to_string()))?
        else {
            return Ok(None);
        };
        checkpoint::open_checkpoint(&note, replica.origin().as_str(), replica.operator_key())
            .map(Some)
            .map_err(|e| WitnessError::Storage(format!("the kept checkpoint: {e}")))
    }

    /// The checks of C2SP `tlog-witness`: the empty tree's root, and the consistency proof from
    /// the last checkpoint cosigned.
    fn check_consistency(
        request: &AddCheckpoint,
        checkpoint: &Checkpoint,
        last: Option<&Checkpoint>,
    ) -> Result<(), WitnessError> {
        if checkpoint.size == 0 && checkpoint.root != merkle::empty_root() {
            return Err(WitnessError::Refused(
                "a checkpoint of size 0 must have the empty tree's root".to_owned(),
            ));
        }
        match last {
            None => {
                if !request.proof.is_empty() {
                    return Err(WitnessError::Refused(
                        "a proof from size 0 must be empty".to_owned(),
                    ));
                }
                Ok(())
            }
            Some(last) => merkle::verify_consistency(
                last.size,
                checkpoint.size,
                &last.root,
                &checkpoint.root,
                &request.proof,
            )
            .map_err(|e| {
                WitnessError::Refused(format!(
                    "the checkpoint is not consistent with the one of size {} this witness cosigned: {e}",
                    last.size
                ))
            }),
        }
    }

    /// Replays the log up to the checkpoint's size and checks that the replay reaches the
    /// checkpoint's root and state line.
    fn replay_to(
        &self,
        replica: &mut Replica,
        checkpoint: &Checkpoint,
        fetch: &mut Fetch<'_>,
    ) -> Result<(), WitnessError> {
        if replica.size() > checkpoint.size {
            return Err(WitnessError::Refused(format!(
                "this witness has already replayed {} entries, past this checkpoint's {}: submit the latest checkpoint",
                replica.size(),
                checkpoint.size
            )));
        }
        let origin = replica.origin().clone();
        while replica.size() < checkpoint.size {
            let from = replica.size();
            let to = checkpoint.size.min(from + FETCH_CHUNK);
            let leaves = fetch(&origin, from, to).map_err(WitnessError::Unavailable)?;
            if leaves.is_empty() {
                return Err(WitnessError::Unavailable(format!(
                    "the log served no entry from {from} on, yet its checkpoint counts {}",
                    checkpoint.size
                )));
            }
            let take = usize::try_from(to - from)
                .unwrap_or(usize::MAX)
                .min(leaves.len());
            replica.append(&leaves[..take]).map_err(|e| match e {
                LedgerError::Replay(replay) => WitnessError::Refused(format!(
                    "the log's entry {} does not replay: {}",
                    replay.seq, replay.fault
                )),
                other => WitnessError::Storage(other.to_string()),
            })?;
        }
        if replica.root() != checkpoint.root {
            return Err(WitnessError::Refused(
                "the log's entries do not lead to the checkpoint's root: it shows another history than the one it served".to_owned(),
            ));
        }
        let claimed = StateCommitment::from_checkpoint(checkpoint)
            .map_err(|e| WitnessError::Refused(e.to_string()))?
            .ok_or_else(|| {
                WitnessError::Refused(
                    "the checkpoint has no state line for this witness to check".to_owned(),
                )
            })?;
        let replayed = replica
            .state_commitment()
            .map_err(|e| WitnessError::Storage(e.to_string()))?;
        if claimed != replayed {
            return Err(WitnessError::Refused(
                "the checkpoint's state line is not the commitment to the state its entries produce"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The note without a cosignature line of this witness (a log may send back an earlier
    /// cosignature of ours; the kept note carries only the new one).
    fn without_own_cosignature(note: &str, name: &str) -> String {
        let prefix = format!("\u{2014} {name} ");
        note.lines()
            .filter(|line| !line.starts_with(&prefix))
            .map(|line| format!("{line}\n"))
            .collect()
    }
}
