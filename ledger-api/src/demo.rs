//! `carbon-ledger demo`: the reference case — Xiazhu Lake wetland (下渚湖湿地), 2022 — replayed
//! over HTTP, with a readable report.
//!
//! The case itself is [`ledger_core::reference`]: the same signed entries serve the demo, the
//! examples and the tests. The demo and the HTTP tests replay them with [`replay`].

use std::io::Write;
use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use ledger_core::ledger::{ConsistencyProof, InclusionProof, Receipt};
use ledger_core::verify::PledgeBundle;
use ledger_core::{checkpoint, merkle, verify};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{Client, ClientError};
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
    let result = report(&url, running.is_some(), operator_key, out).await;
    if let Some(running) = running {
        running
            .stop()
            .await
            .map_err(|e| ClientError(format!("the demo's service did not stop cleanly: {e}")))?;
    }
    result?;
    out.flush().map_err(io)
}

async fn report(
    url: &str,
    own_service: bool,
    operator_key: SigningKey,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError(format!("cannot write the report: {e}"));
    let client = Client::new(url)?;
    let info: LedgerInfo = fetch(&client, "/v1/ledger")
        .await
        .and_then(|v| serde_json::from_value(v).map_err(|e| ClientError(e.to_string())))?;
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

    writeln!(out, "Carbon-sink ledger — the reference case (DESIGN §2): Xiazhu Lake wetland (下渚湖湿地), 2022").map_err(io)?;
    writeln!(
        out,
        "Figures the press did not publish are marked (illustrative)."
    )
    .map_err(io)?;
    writeln!(
        out,
        "Service {url}{}; ledger \"{}\", operator {operator}",
        if own_service {
            " (started by the demo on a temporary folder)"
        } else {
            ""
        },
        info.origin
    )
    .map_err(io)?;
    let size_before = info.size;

    let outcomes = replay(&client, &case).await?;
    writeln!(out, "\n1. Submitted {} entries over HTTP:", outcomes.len()).map_err(io)?;
    for o in &outcomes {
        match (&o.receipt, &o.refusal) {
            (Some(r), _) => writeln!(out, "   #{:<3} {}", r.seq, o.label).map_err(io)?,
            (None, Some((kind, detail))) => {
                writeln!(out, "   refused {} → {kind}: {detail}", o.label).map_err(io)?
            }
            (None, None) => {}
        }
    }

    let project = fetch(&client, &format!("/v1/projects/{PROJECT}")).await?;
    let area: rust_decimal::Decimal = s(&project, "area_ha").parse().unwrap_or_default();
    writeln!(out, "\n2. The wetland").map_err(io)?;
    writeln!(
        out,
        "   {} ({PROJECT}), {}, {} ha (≈ {} mu), managed by {}",
        s(&project, "name"),
        s(&project, "region"),
        s(&project, "area_ha"),
        thousands(&(area * rust_decimal::Decimal::from(15)).round().to_string()),
        s(&project, "proponent")
    )
    .map_err(io)?;
    let report_row = fetch(&client, "/v1/reports/XZH-MR-2021").await?;
    writeln!(
        out,
        "   monitoring report XZH-MR-2021, {} to {}: {} tCO2e verified by {}",
        s(&report_row, "period_start"),
        s(&report_row, "period_end"),
        tonnes(&report_row, "verified"),
        s(&report_row, "verifier")
    )
    .map_err(io)?;

    let batch = fetch(&client, &format!("/v1/batches/{BATCH}")).await?;
    writeln!(out, "\n3. The issuance").map_err(io)?;
    writeln!(
        out,
        "   batch {BATCH} (vintage {}): {} t issued from the report, {} t of it held back in the buffer pool (methodology buffer rate 0.10), the rest to the proponent",
        s(&batch, "vintage"),
        tonnes(&batch, "issued"),
        tonnes(&batch, "buffer_initial")
    )
    .map_err(io)?;

    let acquisition = fetch(&client, &format!("/v1/trades/{ACQUISITION}")).await?;
    writeln!(out, "\n4. The acquisition (收储)").map_err(io)?;
    writeln!(
        out,
        "   {ACQUISITION}: {} → {} (两山银行), {} t × {} {} = {} {}",
        s(&acquisition, "seller"),
        s(&acquisition, "buyer"),
        tonnes(&acquisition, "quantity"),
        s(&acquisition, "unit_price"),
        s(&acquisition, "currency"),
        t(&acquisition, "amount"),
        s(&acquisition, "currency")
    )
    .map_err(io)?;

    let resales = fetch(&client, "/v1/trades?kind=eco_compensation").await?;
    writeln!(
        out,
        "\n5. Ecological compensation (生态补偿) resales (illustrative)"
    )
    .map_err(io)?;
    for trade in resales["items"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "   {}: {} → {}, {} t × {} = {} {}",
            s(trade, "id"),
            s(trade, "seller"),
            s(trade, "buyer"),
            tonnes(trade, "quantity"),
            s(trade, "unit_price"),
            t(trade, "amount"),
            s(trade, "currency")
        )
        .map_err(io)?;
    }
    let proceeds = fetch(&client, &format!("/v1/projects/{PROJECT}/proceeds")).await?;
    for p in proceeds["items"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "   restoration proceeds (生态反哺) of {PROJECT}: acquisition {} + eco-compensation {} = {} {}",
            t(p, "acquisition"),
            t(p, "eco_compensation"),
            t(p, "total"),
            s(p, "currency")
        )
        .map_err(io)?;
    }

    let cert = fetch(&client, &format!("/v1/certificates/{CERTIFICATE}")).await?;
    writeln!(out, "\n6. The retirement certificate (illustrative)").map_err(io)?;
    writeln!(
        out,
        "   {CERTIFICATE}: {} retired {} t of {} (vintage {}) for \"{}\", purpose \"{}\", recorded at {}",
        s(&cert, "holder"),
        tonnes(&cert, "quantity"),
        s(&cert, "batch"),
        s(&cert, "vintage"),
        s(&cert, "beneficiary"),
        s(&cert, "purpose"),
        s(&cert, "retired_at")
    )
    .map_err(io)?;

    let pledge = fetch(&client, &format!("/v1/pledges/{PLEDGE}")).await?;
    let coverage = &pledge["coverage"];
    writeln!(out, "\n7. The pledge and its coverage (illustrative)").map_err(io)?;
    writeln!(
        out,
        "   {PLEDGE}: {} pledged {} t to {} at {} with haircut {} → facility limit {} {}",
        s(&pledge, "pledgor"),
        tonnes(&pledge, "quantity"),
        s(&pledge, "bank"),
        s(&pledge, "price_ref"),
        s(&pledge, "haircut"),
        t(&pledge, "limit"),
        s(&pledge, "currency")
    )
    .map_err(io)?;
    writeln!(
        out,
        "   drawn {} {}, outstanding {}; valued at the latest {} price, {} ({}): collateral worth {}, coverage ratio {}",
        t(&pledge, "drawn"),
        s(&pledge, "currency"),
        t(&pledge, "outstanding"),
        s(coverage, "basis"),
        s(coverage, "unit_price"),
        s(coverage, "price"),
        t(coverage, "collateral_value"),
        s(coverage, "coverage_ratio")
    )
    .map_err(io)?;
    let balances = fetch(&client, &format!("/v1/participants/{PLATFORM}/balances")).await?;
    for b in balances["balances"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "   {PLATFORM} holds {} t of {} available and {} t pledged",
            tonnes(b, "available"),
            s(b, "batch"),
            tonnes(b, "pledged")
        )
        .map_err(io)?;
    }

    let batch = fetch(&client, &format!("/v1/batches/{BATCH}")).await?;
    writeln!(
        out,
        "   every tonne of {BATCH} accounted for: {} issued = {} available + {} pledged + {} buffer + {} retired + {} reversed",
        tonnes(&batch, "issued"),
        tonnes(&batch, "available"),
        tonnes(&batch, "pledged"),
        tonnes(&batch, "buffer"),
        tonnes(&batch, "retired"),
        tonnes(&batch, "reversed")
    )
    .map_err(io)?;

    // The checkpoint, and proofs checked here with nothing but the operator's public key.
    writeln!(
        out,
        "\n8. The checkpoint and the proofs, verified offline with the operator's key"
    )
    .map_err(io)?;
    let note = client.get("/v1/checkpoint").await?;
    if !note.status.is_success() {
        return Err(note.error());
    }
    let note = note.text();
    let cp = checkpoint::open_checkpoint(&note, &info.origin, &verifying_key)
        .map_err(|e| ClientError(format!("the checkpoint does not verify: {e}")))?;
    for line in note.lines() {
        writeln!(out, "   │ {line}").map_err(io)?;
    }
    writeln!(
        out,
        "   signature ✓ (operator key {})",
        info.operator_public_key
    )
    .map_err(io)?;

    let proof: InclusionProof = fetch(
        &client,
        &format!(
            "/v1/proofs/inclusion?id={ACQUISITION}&tree_size={}",
            cp.size
        ),
    )
    .await
    .and_then(|v| serde_json::from_value(v).map_err(|e| ClientError(e.to_string())))?;
    let entry: EntryRaw = client
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
    writeln!(
        out,
        "   inclusion of the acquisition (entry {}) under the checkpoint: {} hashes ✓",
        proof.seq,
        proof.proof.len()
    )
    .map_err(io)?;

    if size_before > 0 && size_before < cp.size {
        let consistency: ConsistencyProof = fetch(
            &client,
            &format!(
                "/v1/proofs/consistency?old_size={size_before}&new_size={}",
                cp.size
            ),
        )
        .await
        .and_then(|v| serde_json::from_value(v).map_err(|e| ClientError(e.to_string())))?;
        merkle::verify_consistency(
            size_before,
            cp.size,
            &unhex(&consistency.old_root)?,
            &cp.root,
            &hashes(&consistency.proof)?,
        )
        .map_err(|e| ClientError(format!("the consistency proof does not verify: {e}")))?;
        writeln!(
            out,
            "   the ledger of {size_before} {} before the demo is a prefix of today's {}: ✓",
            entries_word(size_before),
            cp.size
        )
        .map_err(io)?;
    }

    let bundle: PledgeBundle = client
        .get(&format!("/v1/pledges/{PLEDGE}/bundle"))
        .await?
        .ok_json()?;
    let finding = verify::verify_pledge_bundle(&bundle, &verifying_key)
        .map_err(|e| ClientError(e.to_string()))?;
    writeln!(
        out,
        "   the bank's pledge bundle ({} entries): {} t of {} (vintage {}, project {}) locked for {}, limit {} {}, report {} verified {} t by {} ✓",
        bundle.entries.len(),
        thousands(&finding.quantity.to_string()),
        finding.batch,
        finding.vintage,
        finding.project,
        finding.bank,
        thousands(&finding.limit.to_string()),
        finding.currency,
        finding.report,
        thousands(&finding.report_verified.to_string()),
        finding.verifier
    )
    .map_err(io)?;

    let export = client.get(&format!("/v1/export?size={}", cp.size)).await?;
    if !export.status.is_success() {
        return Err(export.error());
    }
    let replayed = verify::verify_export(export.body.as_ref(), &note, &verifying_key)
        .map_err(|e| ClientError(format!("the export does not verify: {e}")))?;
    writeln!(
        out,
        "   the export replays: {} entries, {} signatures, root {} ✓",
        replayed.entries, replayed.signatures, replayed.checkpoint_root
    )
    .map_err(io)?;
    writeln!(
        out,
        "\nDone: every figure above is in the ledger, and the checkpoint proves it to anyone holding the operator's public key."
    )
    .map_err(io)?;
    Ok(())
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
