//! Synthetic markets for measuring the ledger: many holders of one batch, trading tiny amounts
//! with two signatures each, signed ahead of time. The bench (`carbon-ledger bench`), the
//! examples and the benchmarks share them, with the signature-verification ceiling that their
//! figures are compared against.
//!
//! Keys come from fixed seeds, so the same market can be rebuilt to sign more trades for an
//! existing ledger; bodies are dated when they are signed, since a ledger refuses stale ones.

use std::time::Instant;

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use serde::Serialize;
use serde_json::{json, Value};

use crate::entry::Body;
use crate::ids::{ParticipantId, PublicKey, Timestamp};
use crate::ledger::{Ledger, LedgerConfig};
use crate::sign;
use crate::wire::Prepared;

/// Why a synthetic market could not be built or fed.
#[derive(Debug, thiserror::Error)]
#[error("load: {0}")]
pub struct LoadError(pub String);

fn failed(e: impl std::fmt::Display) -> LoadError {
    LoadError(e.to_string())
}

/// The origin of every synthetic market's ledger.
pub const ORIGIN: &str = "bench.carbon-sink-ledger.local/load";

fn seeded_key(kind: u8, n: usize) -> SigningKey {
    let mut seed = [kind; 32];
    seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
    SigningKey::from_bytes(&seed)
}

/// Rates of signature verification on every core.
#[derive(Clone, Debug, Serialize)]
pub struct Ceiling {
    /// Threads used (the machine's cores).
    pub threads: usize,
    /// Strict verifications per second, one by one.
    pub strict_per_second: f64,
    /// Signatures per second verified in batches of 64.
    pub batch64_per_second: f64,
    /// Two-signature trades per second that batch verification alone would allow.
    pub trade_ceiling_batch: f64,
    /// The same for one-by-one strict verification.
    pub trade_ceiling_strict: f64,
}

/// This process's resident memory now, in KiB (`VmRSS` of `/proc/self/status`; 0 where the
/// system does not say).
pub fn resident_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

/// This process's largest resident memory so far, in KiB (`VmHWM`; 0 where the system does not
/// say).
pub fn peak_resident_kib() -> u64 {
    proc_status_kib("VmHWM:")
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Verification rates on every core, measured now.
pub fn measure_ceiling(seconds: f64) -> Ceiling {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = |batch: bool| -> f64 {
        let keys: Vec<SigningKey> = (0..64).map(|i| seeded_key(9, i)).collect();
        let messages: Vec<Vec<u8>> = (0..64)
            .map(|i| format!("carbon-sink-ledger bench message {i}").into_bytes())
            .collect();
        let signatures: Vec<Signature> =
            keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
        let verifying: Vec<_> = keys.iter().map(SigningKey::verifying_key).collect();
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed().as_secs_f64() < seconds {
            if batch {
                let ok = ed25519_dalek::verify_batch(&refs, &signatures, &verifying).is_ok();
                done += if ok { 64 } else { 0 };
            } else {
                for i in 0..64 {
                    if verifying[i].verify_strict(refs[i], &signatures[i]).is_ok() {
                        done += 1;
                    }
                }
            }
        }
        done as f64 / start.elapsed().as_secs_f64()
    };
    let on_all_cores = |batch: bool| -> f64 {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| scope.spawn(move || per_thread(batch)))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0.0)).sum()
        })
    };
    let strict = on_all_cores(false);
    let batch = on_all_cores(true);
    Ceiling {
        threads,
        strict_per_second: strict,
        batch64_per_second: batch,
        trade_ceiling_batch: batch / 2.0,
        trade_ceiling_strict: strict / 2.0,
    }
}

/// The market the trades run in: an operator, a verifier, a proponent and `holders` holders,
/// one batch, and sink handed to every holder. Keys come from fixed seeds, so the same market
/// can be rebuilt to sign more trades for an existing ledger.
#[derive(Debug)]
pub struct Market {
    operator_key: SigningKey,
    keys: Vec<(ParticipantId, SigningKey)>,
}

impl Market {
    /// The market with `holders` holders.
    pub fn new(holders: usize) -> Self {
        let mut keys = vec![
            ("verifier".parse().ok(), seeded_key(2, 0)),
            ("wetland".parse().ok(), seeded_key(3, 0)),
        ];
        keys.extend((0..holders).map(|i| (format!("holder-{i}").parse().ok(), seeded_key(4, i))));
        Self {
            operator_key: seeded_key(1, 0),
            keys: keys
                .into_iter()
                .filter_map(|(id, key)| Some((id?, key)))
                .collect(),
        }
    }

    /// How to open its ledger.
    pub fn config(&self) -> Result<LedgerConfig, LoadError> {
        Ok(LedgerConfig::new(
            ORIGIN.parse().map_err(failed)?,
            "operator".parse().map_err(failed)?,
            "Bench operator".parse().map_err(failed)?,
            self.operator_key.clone(),
        ))
    }

    fn key(&self, id: &str) -> &SigningKey {
        if id == "operator" {
            return &self.operator_key;
        }
        self.keys
            .iter()
            .find(|(p, _)| p.as_str() == id)
            .map_or(&self.operator_key, |(_, k)| k)
    }

    fn sign(&self, id: &str, fields: Value, signers: &[&str]) -> Result<Prepared, LoadError> {
        let mut value = fields;
        if let Some(map) = value.as_object_mut() {
            map.insert("id".into(), json!(id));
            map.insert("ledger".into(), json!(ORIGIN));
            map.insert("created_at".into(), json!(Timestamp::now().to_string()));
        }
        let body: Body = serde_json::from_value(value).map_err(failed)?;
        let ids: Vec<ParticipantId> = signers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(failed)?;
        let pairs: Vec<_> = ids
            .iter()
            .zip(signers.iter().map(|s| self.key(s)))
            .collect();
        Prepared::new(sign::sign_body(body, &pairs).map_err(failed)?).map_err(failed)
    }

    /// Everything before the trades, in groups.
    pub fn setup(&self, ledger: &Ledger) -> Result<(), LoadError> {
        let mut entries = Vec::new();
        for (id, key) in &self.keys {
            let role = match id.as_str() {
                "verifier" => "verifier",
                "wetland" => "proponent",
                _ => "enterprise",
            };
            entries.push(self.sign(
                &format!("reg-{id}"),
                json!({"type": "register_participant", "participant": id, "name": id.as_str(),
                       "roles": [role], "public_key": PublicKey::from(key.verifying_key()).to_string()}),
                &["operator", id.as_str()],
            )?);
        }
        entries.push(self.sign(
            "meth",
            json!({"type": "register_methodology", "methodology": "m",
            "name": "Bench methodology", "version": "1", "buffer_rate": "0"}),
            &["operator"],
        )?);
        entries.push(self.sign(
            "proj",
            json!({"type": "register_project", "project": "P",
            "name": "Bench wetland", "proponent": "wetland", "methodology": "m", "region": "bench",
            "area_ha": "1"}),
            &["operator", "wetland"],
        )?);
        entries.push(self.sign(
            "mon",
            json!({"type": "record_monitoring", "report": "R",
            "project": "P", "period_start": "2021-01-01", "period_end": "2021-12-31",
            "quantity": "1000000000", "evidence_sha256": "00".repeat(32)}),
            &["verifier"],
        )?);
        entries.push(self.sign(
            "iss",
            json!({"type": "issue_batch", "batch": "B", "report": "R",
            "quantity": "1000000000", "vintage": 2021}),
            &["operator"],
        )?);
        for (i, (id, _)) in self.keys.iter().enumerate().skip(2) {
            entries.push(self.sign(
                &format!("fund-{i}"),
                json!({"type": "trade", "kind": "transfer",
                "seller": "wetland", "buyer": id, "batch": "B", "quantity": "1000000"}),
                &["wetland", id.as_str()],
            )?);
        }
        for group in entries.chunks(256) {
            ledger.submit_group(group.to_vec()).map_err(failed)?;
        }
        Ok(())
    }

    /// Trade number `k`: 0.001 t between two holders, signed by both.
    pub fn trade(&self, k: usize) -> Result<Prepared, LoadError> {
        let holders = self.keys.len() - 2;
        let seller = format!("holder-{}", k % holders);
        let buyer = format!("holder-{}", (k * 7 + 1 + k / holders) % holders);
        let buyer = if buyer == seller {
            format!("holder-{}", (k + 1) % holders)
        } else {
            buyer
        };
        self.sign(
            &format!("T-{k}"),
            json!({"type": "trade", "kind": "transfer", "seller": seller, "buyer": buyer,
                   "batch": "B", "quantity": "0.001"}),
            &[&seller, &buyer],
        )
    }

    /// How many entries [`Market::setup`] appends after the genesis entry: the registrations,
    /// the methodology, project, report and issuance, and the funding of every holder.
    pub fn setup_entries(&self) -> usize {
        2 * self.keys.len() + 2
    }

    /// `n` pre-signed trades, as the bytes a client sends.
    pub fn trades(&self, n: usize) -> Result<Vec<Vec<u8>>, LoadError> {
        (0..n)
            .map(|k| serde_json::to_vec(self.trade(k)?.submission()).map_err(failed))
            .collect()
    }
}
