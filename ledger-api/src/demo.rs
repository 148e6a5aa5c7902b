//! `carbon-ledger demo`: the reference case — Xiazhu Lake wetland (下渚湖湿地), 2022 — replayed
//! over HTTP, with a readable report.
//!
//! The case itself is [`ledger_core::reference`]: the same signed entries serve the demo, the
//! examples and the tests. The demo and the HTTP tests replay them with [`replay`].

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ledger_core::ledger::{ConsistencyProof, InclusionProof, Receipt};
use ledger_core::verify::PledgeBundle;
use ledger_core::{checkpoint, merkle, verify};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{Client, ClientError, ClientOptions};
use crate::keys::{self, public_key_base64};
use crate::routes::{GroupReceipts, LedgerInfo, Limits};
use crate::server::{self, ServeOptions};

pub use ledger_core::reference::{
    Expect, Party, ReferenceCase, Step, ACQUISITION, BANK, BATCH, CERTIFICATE, PLATFORM, PLEDGE,
    PRICE, PROJECT, WETLAND,
};

/// What happened to a step.
#[derive(Debug)]
pub struct Outcome {
    /// The step's label.
    pub label: String,
    /// Its receipt, if appended.
    pub receipt: Option<Receipt>,
    /// The problem kind and detail, if refused.
    pub refusal: Option<(String, String)>,
}

/// Replays the case over HTTP: the registrations as one atomic group, then the market one entry
/// at a time. Fails on the first step that does not do what it should.
pub async fn replay(client: &Client, case: &ReferenceCase) -> Result<Vec<Outcome>, ClientError> {
    let mut outcomes = Vec::new();
    let registrations = case.registrations();
    let group = json!({"entries": registrations.iter().map(|s| &s.submission).collect::<Vec<_>>()});
    let response = client
        .post(
            "/v1/entries/group",
            serde_json::to_vec(&group).unwrap_or_default(),
        )
        .await?;
    let receipts: GroupReceipts = response.ok_json().map_err(|e| {
        ClientError(format!(
            "registering the participants as one group was refused: {e} (a ledger that already holds the reference case refuses it again: run the demo on a fresh ledger)"
        ))
    })?;
    for (step, receipt) in registrations.into_iter().zip(receipts.receipts) {
        outcomes.push(Outcome {
            label: step.label,
            receipt: Some(receipt),
            refusal: None,
        });
    }
    for step in case.market() {
        let body = serde_json::to_vec(&step.submission).unwrap_or_default();
        let response = client.post("/v1/entries", body).await?;
        let outcome = match (step.expect, response.status.is_success()) {
            (Expect::Accepted, true) => Outcome {
                label: step.label,
                receipt: Some(response.json()?),
                refusal: None,
            },
            (Expect::Refused(kind), false) => {
                let problem = response.problem().ok_or_else(|| response.error())?;
                if problem.kind != kind {
                    return Err(ClientError(format!(
                        "{}: expected a {kind} refusal, got {} {}: {}",
                        step.label, problem.status, problem.kind, problem.detail
                    )));
                }
                Outcome {
                    label: step.label,
                    receipt: None,
                    refusal: Some((problem.kind, problem.detail)),
                }
            }
            (Expect::Accepted, false) => {
                return Err(ClientError(format!("{}: {}", step.label, response.error())))
            }
            (Expect::Refused(kind), true) => {
                return Err(ClientError(format!(
                    "{}: accepted, but the ledger should have refused it ({kind})",
                    step.label
                )))
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Where `carbon-ledger demo` runs.
#[derive(Clone, Debug, Default)]
pub struct DemoOptions {
    /// A running service; `None` starts one on a temporary folder.
    pub url: Option<String>,
    /// The running service's operator key file (required with `url`: registering participants
    /// takes the operator's signature).
    pub operator_key: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for an `https://` service, besides the platform's roots.
    pub ca_cert: Option<PathBuf>,
    /// A folder to write the participants' secret keys to (with `url`), so that more entries can
    /// be signed for them after the demo.
    pub keys: Option<PathBuf>,
}

/// Writes `12345678.90` as `12,345,678.90`.
pub fn thousands(number: &str) -> String {
    let (sign, digits) = number
        .strip_prefix('-')
        .map_or(("", number), |rest| ("-", rest));
    let (int, frac) = digits
        .split_once('.')
        .map_or((digits, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn s(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::String(text) => text.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

fn t(value: &Value, key: &str) -> String {
    thousands(&s(value, key))
}

/// Tonnes without trailing zeros: `1700.00` → `1,700`, `0.500` → `0.5`.
fn tonnes(value: &Value, key: &str) -> String {
    let text = s(value, key);
    match text.parse::<rust_decimal::Decimal>() {
        Ok(d) => thousands(&d.normalize().to_string()),
        Err(_) => text,
    }
}

/// How many steps were appended, and how many were refused on purpose.
pub fn counts(outcomes: &[Outcome]) -> (u64, u64) {
    let appended = outcomes.iter().filter(|o| o.receipt.is_some()).count();
    let refused = outcomes.len() - appended;
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    (as_u64(appended), as_u64(refused))
}

fn entries_word(n: u64) -> &'static str {
    if n == 1 {
        "entry"
    } else {
        "entries"
    }
}

async fn fetch(client: &Client, path: &str) -> Result<Value, ClientError> {
    client.get(path).await?.ok_json()
}

#[derive(Deserialize)]
struct EntryRaw {
    envelope: Box<serde_json::value::RawValue>,
}

fn hashes(hex_hashes: &[String]) -> Result<Vec<merkle::Hash>, ClientError> {
    hex_hashes
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out)
                .map(|()| out)
                .map_err(|_| ClientError(format!("\"{h}\" is not a hex hash")))
        })
        .collect()
}

fn unhex(text: &str) -> Result<merkle::Hash, ClientError> {
    hashes(&[text.to_owned()]).map(|h| h[0])
}

/// `carbon-ledger demo`: replays the case and writes the report to `out`.
pub async fn run(options: DemoOptions, out: &mut dyn Write) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError(format!("cannot write the report: {e}"));
    if options.keys.is_some() && options.url.is_none() {
        return Err(ClientError(
            "--keys needs --url: without it the demo's own ledger is gone when the demo ends, and its keys with it".to_owned(),
        ));
    }
    let (running, _temp, operator_key) = match &options.url {
        Some(_) => {
            let path = options.operator_key.as_ref().ok_or_else(|| {
                ClientError(
                    "against a running service, the demo needs --operator-key FILE (the service's DIR/operator.key): registering participants takes the operator's signature".to_owned(),
                )
            })?;
            let key = keys::read_key_file(path).map_err(|e| ClientError(e.to_string()))?;
            (None, None, key)
        }
        None => {
            let temp = tempfile::tempdir()
                .map_err(|e| ClientError(format!("no temporary folder: {e}")))?;
            let running = server::start(ServeOptions {
                data: keys::DataDirOptions {
                    dir: temp.path().join("data"),
                    origin: Some("demo.carbon-sink-ledger.local/xiazhuhu".to_owned()),
                    operator: "deqing-registry".to_owned(),
                    operator_name: "德清县生态资源登记中心 (illustrative operator)".to_owned(),
                },
                listen: ([127, 0, 0, 1], 0).into(),
                limits: Limits::default(),
                entry_max_age: server::DEFAULT_ENTRY_MAX_AGE,
                witnesses: Vec::new(),
                cosign_interval: server::DEFAULT_COSIGN_INTERVAL,
                store: None,
            })
            .await
            .map_err(|e| ClientError(format!("cannot start a service: {e}")))?;
            let key = keys::read_key_file(&running.operator_key_path)
                .map_err(|e| ClientError(e.to_string()))?;
            (Some(running), Some(temp), key)
        }
    };
    let url = match (&options.url, &running) {
        (Some(url), _) => url.clone(),
        (None, Some(running)) => running.url(),
        (None, None) => unreachable!("a service was started"),
    };
    let client = Client::with_options(
        &url,
        ClientOptions {
            ca_cert: options.ca_cert.clone(),
        },
    )?;
    let result = report(
        &client,
        running.is_some(),
        operator_key,
        options.keys.as_deref(),
        out,
    )
    .await;
    if let Some(running) = running {
        running
            .stop()
            .await
            .map_err(|e| ClientError(format!("the demo's service did not stop cleanly: {e}")))?;
    }
    result?;
    out.flush().map_err(io)
}

/// The report, written as the demo goes: one section per phase of the case.
struct Report<'a> {
    url: String,
    /// The CA the demo trusts for an `https://` service; the witness it starts trusts it too.
    ca_cert: Option<PathBuf>,
    client: Client,
    out: &'a mut dyn Write,
}

/// Writes one line of the report.
macro_rules! say {
    ($report:expr, $($arg:tt)*) => {
        writeln!($report.out, $($arg)*)
            .map_err(|e| ClientError(format!("cannot write the report: {e}")))
    };
}

async fn report(
    client: &Client,
    own_service: bool,
    operator_key: SigningKey,
    keys_folder: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let url = client.url().to_owned();
    let mut report = Report {
        url: url.clone(),
        ca_cert: client.options().ca_cert.clone(),
        client: client.clone(),
        out,
    };
    let info: LedgerInfo = report.fetch_as("/v1/ledger").await?;
    if info.operator_public_key != public_key_base64(&operator_key) {
        return Err(ClientError(
            "the operator key given is not this ledger's operator key".to_owned(),
        ));
    }
    let operator = info
        .operator
        .clone()
        .ok_or_else(|| ClientError("the ledger has no operator".to_owned()))?;
    let verifying_key = operator_key.verifying_key();
    let case = ReferenceCase::new(&info.origin, &operator, operator_key);
    report.heading(&url, own_service, &info, &operator)?;
    if let Some(folder) = keys_folder {
        check_keys_folder(folder, &case)?;
    }
    let outcomes = replay(&report.client, &case).await?;
    report.submitted(&outcomes)?;
    if let Some(folder) = keys_folder {
        report.write_keys(folder, &case)?;
    }
    report.wetland().await?;
    report.issuance().await?;
    report.trades().await?;
    report.retirement().await?;
    report.pledge().await?;
    report.proofs(&info, &verifying_key).await?;
    report.bank(&info, &verifying_key).await?;
    let (appended, refused) = counts(&outcomes);
    say!(
        report,
        "\nDone: {appended} {} appended and {refused} refused on purpose. Every figure above is in the ledger, and the checkpoint proves it to anyone holding the operator's public key.",
        entries_word(appended)
    )
}

/// The key file of each party of the case in `folder`.
fn key_path(folder: &Path, party: &Party) -> PathBuf {
    folder.join(format!("{}.key", party.id))
}

/// Before anything is submitted: the folder for the parties' keys can be made, and holds none of
/// their key files yet (a key file is never overwritten).
fn check_keys_folder(folder: &Path, case: &ReferenceCase) -> Result<(), ClientError> {
    std::fs::create_dir_all(folder)
        .map_err(|e| ClientError(format!("cannot make the folder {}: {e}", folder.display())))?;
    match case
        .parties
        .iter()
        .map(|p| key_path(folder, p))
        .find(|p| p.exists())
    {
        Some(taken) => Err(ClientError(format!(
            "{} exists: give --keys a folder without the demo's key files (they are never overwritten)",
            taken.display()
        ))),
        None => Ok(()),
    }
}

impl Report<'_> {
    async fn fetch(&self, path: &str) -> Result<Value, ClientError> {
        fetch(&self.client, path).await
    }

    async fn fetch_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.fetch(path)
            .await
            .and_then(|v| serde_json::from_value(v).map_err(|e| ClientError(e.to_string())))
    }

    fn heading(
        &mut self,
        url: &str,
        own_service: bool,
        info: &LedgerInfo,
        operator: &str,
    ) -> Result<(), ClientError> {
        say!(
            self,
            "Carbon-sink ledger — the reference case: Xiazhu Lake wetland (下渚湖湿地), 2022"
        )?;
        say!(
            self,
            "Figures the press did not publish are marked (illustrative)."
        )?;
        let started = if own_service {
            " (started by the demo on a temporary folder)"
        } else {
            ""
        };
        say!(
            self,
            "Service {url}{started}; ledger \"{}\", operator {operator}",
            info.origin
        )
    }

    /// 1. What was appended, and what the ledger refused on purpose.
    fn submitted(&mut self, outcomes: &[Outcome]) -> Result<(), ClientError> {
        let (appended, refused) = counts(outcomes);
        say!(
            self,
            "\n1. {appended} {} appended over HTTP; {refused} {} shown on purpose (entries the rules forbid, which the ledger refused and did not append)",
            entries_word(appended),
            if refused == 1 { "refusal" } else { "refusals" }
        )?;
        for o in outcomes {
            match (&o.receipt, &o.refusal) {
                (Some(r), _) => say!(self, "   #{:<3} {}", r.seq, o.label)?,
                (None, Some((kind, detail))) => {
                    say!(self, "   refused {} → {kind}: {detail}", o.label)?
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// The parties' secret keys, one file each, so that the user can sign more entries for them.
    fn write_keys(&mut self, folder: &Path, case: &ReferenceCase) -> Result<(), ClientError> {
        for party in &case.parties {
            keys::write_key_file(&key_path(folder, party), &party.key)
                .map_err(|e| ClientError(e.to_string()))?;
        }
        say!(
            self,
            "   the participants' secret keys are in {} (one file each, <participant>.key, mode 0600): sign more entries for them with carbon-ledger sign --key",
            folder.display()
        )
    }

    /// 2. The wetland and its monitoring report.
    async fn wetland(&mut self) -> Result<(), ClientError> {
        let project = self.fetch(&format!("/v1/projects/{PROJECT}")).await?;
        let area: rust_decimal::Decimal = s(&project, "area_ha").parse().unwrap_or_default();
        say!(self, "\n2. The wetland")?;
        say!(
            self,
            "   {} ({PROJECT}), {}, {} ha (≈ {} mu), managed by {}",
            s(&project, "name"),
            s(&project, "region"),
            s(&project, "area_ha"),
            thousands(&(area * rust_decimal::Decimal::from(15)).round().to_string()),
            s(&project, "proponent")
        )?;
        let report_row = self.fetch("/v1/reports/XZH-MR-2021").await?;
        say!(
            self,
            "   monitoring report XZH-MR-2021, {} to {}: {} tCO2e verified by {}",
            s(&report_row, "period_start"),
            s(&report_row, "period_end"),
            tonnes(&report_row, "verified"),
            s(&report_row, "verifier")
        )
    }

    /// 3. The issuance and its buffer.
    async fn issuance(&mut self) -> Result<(), ClientError> {
        let batch = self.fetch(&format!("/v1/batches/{BATCH}")).await?;
        say!(self, "\n3. The issuance")?;
        say!(
            self,
            "   batch {BATCH} (vintage {}): {} t issued from the report, {} t of it held back in the buffer pool (methodology buffer rate 0.10), the rest to the proponent",
            s(&batch, "vintage"),
            tonnes(&batch, "issued"),
            tonnes(&batch, "buffer_initial")
        )
    }

    /// 4 and 5. The acquisition, the eco-compensation resales, and the restoration proceeds.
    async fn trades(&mut self) -> Result<(), ClientError> {
        let acquisition = self.fetch(&format!("/v1/trades/{ACQUISITION}")).await?;
        say!(self, "\n4. The acquisition (收储)")?;
        say!(
            self,
            "   {ACQUISITION}: {} → {} (两山银行), {} t × {} {} = {} {}",
            s(&acquisition, "seller"),
            s(&acquisition, "buyer"),
            tonnes(&acquisition, "quantity"),
            s(&acquisition, "unit_price"),
            s(&acquisition, "currency"),
            t(&acquisition, "amount"),
            s(&acquisition, "currency")
        )?;
        let resales = self.fetch("/v1/trades?kind=eco_compensation").await?;
        say!(
            self,
            "\n5. Ecological compensation (生态补偿) resales (illustrative)"
        )?;
        for trade in resales["items"].as_array().into_iter().flatten() {
            say!(
                self,
                "   {}: {} → {}, {} t × {} = {} {}",
                s(trade, "id"),
                s(trade, "seller"),
                s(trade, "buyer"),
                tonnes(trade, "quantity"),
                s(trade, "unit_price"),
                t(trade, "amount"),
                s(trade, "currency")
            )?;
        }
        let proceeds = self
            .fetch(&format!("/v1/projects/{PROJECT}/proceeds"))
            .await?;
        for p in proceeds["items"].as_array().into_iter().flatten() {
            say!(
                self,
                "   restoration proceeds (生态反哺) of {PROJECT}: acquisition {} + eco-compensation {} = {} {}",
                t(p, "acquisition"),
                t(p, "eco_compensation"),
                t(p, "total"),
                s(p, "currency")
            )?;
        }
        Ok(())
    }

    /// 6. The retirement certificate.
    async fn retirement(&mut self) -> Result<(), ClientError> {
        let cert = self
            .fetch(&format!("/v1/certificates/{CERTIFICATE}"))
            .await?;
        say!(self, "\n6. The retirement certificate (illustrative)")?;
        say!(
            self,
            "   {CERTIFICATE}: {} retired {} t of {} (vintage {}) for \"{}\", purpose \"{}\", recorded at {}",
            s(&cert, "holder"),
            tonnes(&cert, "quantity"),
            s(&cert, "batch"),
            s(&cert, "vintage"),
            s(&cert, "beneficiary"),
            s(&cert, "purpose"),
            s(&cert, "retired_at")
        )
    }

    /// 7. The pledge, its loans and its coverage; every tonne of the batch accounted for.
    async fn pledge(&mut self) -> Result<(), ClientError> {
        let pledge = self.fetch(&format!("/v1/pledges/{PLEDGE}")).await?;
        let coverage = &pledge["coverage"];
        say!(self, "\n7. The pledge and its coverage (illustrative)")?;
        say!(
            self,
            "   {PLEDGE}: {} pledged {} t to {} at {} with haircut {} → facility limit {} {}, maturing {}",
            s(&pledge, "pledgor"),
            tonnes(&pledge, "quantity"),
            s(&pledge, "bank"),
            s(&pledge, "price_ref"),
            s(&pledge, "haircut"),
            t(&pledge, "limit"),
            s(&pledge, "currency"),
            s(&pledge, "maturity")
        )?;
        say!(
            self,
            "   drawn {} {}, outstanding {}; valued at the {} price in force, {} ({}): collateral worth {}, coverage ratio {}",
            t(&pledge, "drawn"),
            s(&pledge, "currency"),
            t(&pledge, "outstanding"),
            s(coverage, "basis"),
            s(coverage, "unit_price"),
            s(coverage, "price"),
            t(coverage, "collateral_value"),
            s(coverage, "coverage_ratio")
        )?;
        let balances = self
            .fetch(&format!("/v1/participants/{PLATFORM}/balances"))
            .await?;
        for b in balances["balances"].as_array().into_iter().flatten() {
            say!(
                self,
                "   {PLATFORM} holds {} t of {} available and {} t pledged",
                tonnes(b, "available"),
                s(b, "batch"),
                tonnes(b, "pledged")
            )?;
        }
        let batch = self.fetch(&format!("/v1/batches/{BATCH}")).await?;
        say!(
            self,
            "   every tonne of {BATCH} accounted for: {} issued = {} available + {} pledged + {} buffer + {} retired + {} reversed",
            tonnes(&batch, "issued"),
            tonnes(&batch, "available"),
            tonnes(&batch, "pledged"),
            tonnes(&batch, "buffer"),
            tonnes(&batch, "retired"),
            tonnes(&batch, "reversed")
        )
    }

    /// 8. The checkpoint and the proofs, checked here with nothing but the operator's key.
    async fn proofs(
        &mut self,
        info: &LedgerInfo,
        verifying_key: &ed25519_dalek::VerifyingKey,
    ) -> Result<(), ClientError> {
        say!(
            self,
            "\n8. The checkpoint and the proofs, verified offline with the operator's key"
        )?;
        let note = self.client.get("/v1/checkpoint").await?;
        if !note.status.is_success() {
            return Err(note.error());
        }
        let note = note.text();
        let cp = checkpoint::open_checkpoint(&note, &info.origin, verifying_key)
            .map_err(|e| ClientError(format!("the checkpoint does not verify: {e}")))?;
        for line in note.lines() {
            say!(self, "   │ {line}")?;
        }
        say!(
            self,
            "   signature ✓ (operator key {})",
            info.operator_public_key
        )?;
        self.inclusion(&cp).await?;
        if info.size > 0 && info.size < cp.size {
            self.consistency(info.size, &cp).await?;
        }
        let export = self
            .client
            .get(&format!("/v1/export?size={}", cp.size))
            .await?;
        if !export.status.is_success() {
            return Err(export.error());
        }
        let replayed = verify::verify_export(export.body.as_ref(), &note, verifying_key)
            .map_err(|e| ClientError(format!("the export does not verify: {e}")))?;
        say!(
            self,
            "   the export replays: {} entries, {} signatures, root {} ✓",
            replayed.entries,
            replayed.signatures,
            replayed.checkpoint_root
        )
    }

    async fn inclusion(&mut self, cp: &checkpoint::Checkpoint) -> Result<(), ClientError> {
        let proof: InclusionProof = self
            .fetch_as(&format!(
                "/v1/proofs/inclusion?id={ACQUISITION}&tree_size={}",
                cp.size
            ))
            .await?;
        let entry: EntryRaw = self
            .client
            .get(&format!("/v1/entries/{}", proof.seq))
            .await?
            .ok_json()?;
        let leaf_hash = merkle::leaf_hash(entry.envelope.get().as_bytes());
        merkle::verify_inclusion(
            &leaf_hash,
            proof.seq,
            cp.size,
            &hashes(&proof.proof)?,
            &cp.root,
        )
        .map_err(|e| ClientError(format!("the inclusion proof does not verify: {e}")))?;
        say!(
            self,
            "   inclusion of the acquisition (entry {}) under the checkpoint: {} hashes ✓",
            proof.seq,
            proof.proof.len()
        )
    }

    async fn consistency(
        &mut self,
        size_before: u64,
        cp: &checkpoint::Checkpoint,
    ) -> Result<(), ClientError> {
        let consistency: ConsistencyProof = self
            .fetch_as(&format!(
                "/v1/proofs/consistency?old_size={size_before}&new_size={}",
                cp.size
            ))
            .await?;
        merkle::verify_consistency(
            size_before,
            cp.size,
            &unhex(&consistency.old_root)?,
            &cp.root,
            &hashes(&consistency.proof)?,
        )
        .map_err(|e| ClientError(format!("the consistency proof does not verify: {e}")))?;
        say!(
            self,
            "   the ledger of {size_before} {} before the demo is a prefix of today's {}: ✓",
            entries_word(size_before),
            cp.size
        )
    }

    /// Section 9: a witness the demo starts itself replays the ledger and cosigns its checkpoint;
    /// the bank checks the pledge from the bundle, the operator's key and that witness's key.
    async fn bank(
        &mut self,
        info: &LedgerInfo,
        verifying_key: &ed25519_dalek::VerifyingKey,
    ) -> Result<(), ClientError> {
        let folder =
            tempfile::tempdir().map_err(|e| ClientError(format!("no temporary folder: {e}")))?;
        let witness = crate::witness::start(crate::witness::WitnessOptions {
            data: folder.path().join("witness"),
            name: Some("witness.demo.example/w1".to_owned()),
            listen: ([127, 0, 0, 1], 0).into(),
            logs: vec![format!("{}={}", self.url, info.checkpoint_verifier_key)],
            ca_cert: self.ca_cert.clone(),
        })
        .await
        .map_err(|e| ClientError(format!("cannot start a witness: {e}")))?;
        say!(
            self,
            "\n9. A validating witness, and the bank's check at a quorum of one"
        )?;
        say!(
            self,
            "   witness started on {}, verifier key {}",
            witness.url(),
            witness.verifier_key
        )?;
        let mut bundle: PledgeBundle = self
            .client
            .get(&format!("/v1/pledges/{PLEDGE}/bundle"))
            .await?
            .ok_json()?;
        let request = ledger_core::witness::AddCheckpoint {
            old_size: 0,
            proof: Vec::new(),
            note: bundle.checkpoint.clone(),
        };
        let answer = Client::new(&witness.url())?
            .post("/add-checkpoint", request.body().into_bytes())
            .await?;
        if !answer.status.is_success() {
            return Err(ClientError(format!(
                "the witness refused to cosign: {} {}",
                answer.status,
                answer.text()
            )));
        }
        let cosignature = answer.text();
        bundle.checkpoint.push_str(&cosignature);
        say!(
            self,
            "   it replayed all {} entries (signatures, rules, state root) and cosigned:",
            checkpoint::open_checkpoint(&bundle.checkpoint, &info.origin, verifying_key)
                .map(|c| c.size)
                .unwrap_or_default()
        )?;
        for line in cosignature.lines() {
            say!(self, "   │ {line}")?;
        }
        let policy = verify::BankPolicy {
            witnesses: vec![checkpoint::parse_cosigner_key(&witness.verifier_key)
                .map_err(|e| ClientError(e.to_string()))?],
            quorum: 1,
            accepted: None,
        };
        let f = verify::verify_pledge_bundle_with(&bundle, verifying_key, &policy)
            .map_err(|e| ClientError(e.to_string()))?;
        let state = f
            .state
            .as_ref()
            .ok_or_else(|| ClientError("the bundle carries no state rows".to_owned()))?;
        say!(
            self,
            "   the bank's check, trusting only the operator's key and the witness's, at quorum 1 ✓ ({} entries, 4 state rows):",
            bundle.entries.len()
        )?;
        say!(
            self,
            "   - {} t of {} (vintage {}, project {}) locked for {}, from report {} verified at {} t by {}",
            thousands(&f.quantity.to_string()),
            f.batch,
            f.vintage,
            f.project,
            f.bank,
            f.report,
            thousands(&f.report_verified.to_string()),
            f.verifier
        )?;
        say!(
            self,
            "   - {}'s pledged balance of {} is {} t: it covers them",
            f.pledgor,
            f.batch,
            thousands(&state.pledgor_pledged.to_string())
        )?;
        say!(
            self,
            "   - the pledge is {}: limit {} {}, outstanding {} {}, maturity {}",
            state.status.word(),
            thousands(&state.limit.to_string()),
            f.currency,
            thousands(&state.outstanding.to_string()),
            f.currency,
            state
                .maturity
                .map_or_else(|| "none".to_owned(), |m| m.to_string())
        )?;
        say!(
            self,
            "   - price in force {} at {} {}: collateral worth {} {}, coverage {}",
            state.price,
            state.unit_price,
            f.currency,
            thousands(&state.collateral_value.to_string()),
            f.currency,
            state
                .coverage_ratio
                .map_or_else(|| "none".to_owned(), |r| r.to_string())
        )?;
        witness
            .stop()
            .await
            .map_err(|e| ClientError(format!("the witness did not stop cleanly: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands("588300.00"), "588,300.00");
        assert_eq!(thousands("17000"), "17,000");
        assert_eq!(thousands("100"), "100");
        assert_eq!(thousands("-1234567.5"), "-1,234,567.5");
    }
}
