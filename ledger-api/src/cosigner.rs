//! The ledger's side of C2SP `tlog-witness`: submitting each new checkpoint to the witnesses
//! (`serve --witness URL=VKEY`) and keeping the cosignatures they return.
//!
//! Rounds run one at a time — the background loop, and a pledge bundle that wants a cosigned
//! checkpoint of its own — so the witnesses always see checkpoints in order of size. A witness
//! that is down or refuses is logged and counted in `/metrics`; the ledger goes on accepting
//! entries, and its checkpoints simply carry fewer cosignatures until the witness is back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use ledger_core::checkpoint::{self, Checkpoint};
use ledger_core::ledger::Ledger;
use ledger_core::witness::AddCheckpoint;

use crate::client::{Client, ClientError};
use crate::metrics::Metrics;

/// One witness the ledger submits its checkpoints to.
#[derive(Debug)]
pub struct WitnessPeer {
    /// Its submission prefix (the URL `add-checkpoint` is under).
    pub url: String,
    /// Its key name.
    pub name: String,
    /// Its cosignature key.
    pub key: VerifyingKey,
    client: Client,
    /// The size of the last checkpoint it cosigned, as far as the ledger knows.
    cosigned: Mutex<u64>,
}

impl WitnessPeer {
    /// A witness from `URL=VKEY` (its submission prefix and its C2SP verifier key).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (url, vkey) = spec
            .split_once('=')
            .ok_or_else(|| format!("\"{spec}\" is not URL=VKEY"))?;
        let (name, key) = checkpoint::parse_cosigner_key(vkey)
            .map_err(|e| format!("the witness key of {url}: {e}"))?;
        let client = Client::new(url).map_err(|e| e.0)?;
        Ok(Self {
            url: url.to_owned(),
            name,
            key,
            client,
            cosigned: Mutex::new(0),
        })
    }

    fn cosigned(&self) -> u64 {
        *self.cosigned.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_cosigned(&self, size: u64) {
        *self.cosigned.lock().unwrap_or_else(|e| e.into_inner()) = size;
    }
}

/// The witnesses, the last cosigned checkpoint, and the lock that keeps rounds in order.
#[derive(Debug)]
pub struct Cosigner {
    witnesses: Vec<WitnessPeer>,
    /// The latest checkpoint submitted, with the cosignatures it got.
    latest: Mutex<Option<String>>,
    round: tokio::sync::Mutex<()>,
}

impl Cosigner {
    /// A cosigner for these witnesses.
    pub fn new(witnesses: Vec<WitnessPeer>) -> Self {
        Self {
            witnesses,
            latest: Mutex::new(None),
            round: tokio::sync::Mutex::new(()),
        }
    }

    /// The witnesses.
    pub fn witnesses(&self) -> &[WitnessPeer] {
        &self.witnesses
    }

    /// The note with the cosignatures collected for the same checkpoint, if any.
    pub fn decorate(&self, note: &str) -> String {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        match latest.as_deref() {
            Some(cosigned) if cosigned.starts_with(note) => cosigned.to_owned(),
            _ => note.to_owned(),
        }
    }

    /// One round: signs the latest checkpoint with `sign` (the ledger's checkpoint, or a
    /// bundle's), submits it to every witness and returns what `sign` returned with the note
    /// carrying the cosignatures obtained.
    pub async fn round<T: Send + 'static>(
        &self,
        ledger: &Arc<Ledger>,
        metrics: &Metrics,
        sign: impl FnOnce(&Ledger) -> Result<(String, T), String> + Send + 'static,
    ) -> Result<(String, T), String> {
        let _turn = self.round.lock().await;
        let ledger_for_sign = Arc::clone(ledger);
        let (note, extra) = tokio::task::spawn_blocking(move || sign(&ledger_for_sign))
            .await
            .map_err(|e| e.to_string())??;
        let checkpoint =
            checkpoint::open_checkpoint(&note, ledger.origin().as_str(), &ledger.operator_key())
                .map_err(|e| e.to_string())?;
        let mut cosigned = note.clone();
        for witness in &self.witnesses {
            match self.submit(ledger, witness, &note, &checkpoint).await {
                Ok(line) => {
                    metrics.witness_cosigned(&witness.name, checkpoint.size);
                    cosigned.push_str(&line);
                }
                Err(error) => {
                    metrics.witness_failed(&witness.name);
                    tracing::warn!(witness = %witness.name, url = %witness.url, %error, "the witness did not cosign");
                }
            }
        }
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(cosigned.clone());
        Ok((cosigned, extra))
    }

    /// Submits the checkpoint to one witness; on 409, learns the size it last cosigned and tries
    /// once more from there. Returns its cosignature line, checked with its key.
    async fn submit(
        &self,
        ledger: &Arc<Ledger>,
        witness: &WitnessPeer,
        note: &str,
        checkpoint: &Checkpoint,
    ) -> Result<String, String> {
        for _ in 0..2 {
            let old = witness.cosigned().min(checkpoint.size);
            let proof = if old == 0 {
                Vec::new()
            } else {
                let ledger = Arc::clone(ledger);
                let size = checkpoint.size;
                tokio::task::spawn_blocking(move || ledger.consistency_proof(old, Some(size)))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?
                    .proof
                    .iter()
                    .map(|h| {
                        let mut out = [0u8; 32];
                        hex::decode_to_slice(h, &mut out).map(|()| out)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?
            };
            let body = AddCheckpoint {
                old_size: old,
                proof,
                note: note.to_owned(),
            }
            .body();
            let answer = tokio::time::timeout(
                Duration::from_secs(60),
                witness.client.post("/add-checkpoint", body.into_bytes()),
            )
            .await
            .map_err(|_| "no answer within 60 s".to_owned())?
            .map_err(|ClientError(e)| e)?;
            match answer.status.as_u16() {
                200 => {
                    let lines = answer.text();
                    let found = checkpoint::verify_cosignatures(
                        &format!("{note}{lines}"),
                        &[(witness.name.clone(), witness.key)],
                    )
                    .map_err(|e| format!("its answer does not verify: {e}"))?;
                    if found.is_empty() {
                        return Err("its answer carries no cosignature of its key".to_owned());
                    }
                    witness.set_cosigned(checkpoint.size);
                    return Ok(lines
                        .lines()
                        .filter(|l| l.starts_with(&format!("\u{2014} {} ", witness.name)))
                        .map(|l| format!("{l}\n"))
                        .collect());
                }
                409 => {
                    let size: u64 = answer
                        .text()
                        .trim_end()
                        .parse()
                        .map_err(|_| "a 409 without a size".to_owned())?;
                    witness.set_cosigned(size);
                }
                status => return Err(format!("{status}: {}", answer.text().trim_end())),
            }
        }
        Err("it still disagrees on the size it last cosigned".to_owned())
    }

    /// Runs rounds in the background: whenever the ledger has grown, every `interval`, until the
    /// task returned is aborted.
    pub fn spawn(
        self: &Arc<Self>,
        state: crate::AppState,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let cosigner = Arc::clone(self);
        tokio::spawn(async move {
            let ledger = Arc::clone(state.ledger());
            let metrics = state.metrics();
            let mut submitted = 0u64;
            loop {
                tokio::time::sleep(interval).await;
                let size = ledger.size();
                if size == submitted {
                    continue;
                }
                let round = cosigner
                    .round(&ledger, metrics, |ledger| {
                        ledger
                            .checkpoint()
                            .map(|note| (note, ()))
                            .map_err(|e| e.to_string())
                    })
                    .await;
                match round {
                    Ok(_) => submitted = size,
                    Err(error) => {
                        tracing::warn!(%error, "no checkpoint to submit to the witnesses")
                    }
                }
            }
        })
    }
}
