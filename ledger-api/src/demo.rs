//! The reference case of DESIGN §2 — Xiazhu Lake wetland (下渚湖湿地), 2022 — as signed
//! submissions, and `carbon-ledger demo`, which replays it over HTTP and prints a readable report.
//!
//! Published figures: about 17,000 tCO2e a year measured; the "Two Mountains Bank" platform
//! (两山银行) bought 10,000 t at 58.83 CNY/t = 588,300.00 CNY. Everything else — the resales to
//! two enterprises, the retirement, the pledge and its drawdowns, the participants' display names
//! other than the wetland's and the platform's — is **illustrative** and labelled so.
//!
//! [`ReferenceCase`] builds the bodies; the demo and the HTTP tests both replay them with
//! [`replay`].

use std::io::Write;
use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use ledger_core::entry::{Body, Submission};
use ledger_core::ids::ParticipantId;
use ledger_core::ledger::{ConsistencyProof, InclusionProof, Receipt};
use ledger_core::verify::PledgeBundle;
use ledger_core::{checkpoint, merkle, sign, verify};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{Client, ClientError};
use crate::keys::{self, public_key_base64};
use crate::routes::{GroupReceipts, LedgerInfo, Limits};
use crate::server::{self, ServeOptions};

/// The project's id.
pub const PROJECT: &str = "XZH";
/// The batch issued from the 2021 monitoring report.
pub const BATCH: &str = "XZH-2021";
/// The acquisition (收储).
pub const ACQUISITION: &str = "T-2022-0001";
/// The retirement certificate (illustrative).
pub const CERTIFICATE: &str = "CERT-2022-0001";
/// The pledge (illustrative).
pub const PLEDGE: &str = "PL-2022-001";
/// The benchmark price.
pub const PRICE: &str = "BM-2022-06";
/// The wetland's manager (the proponent).
pub const WETLAND: &str = "xiazhuhu-wetland";
/// The platform, 两山银行.
pub const PLATFORM: &str = "two-mountains-bank";
/// The lending bank (illustrative).
pub const BANK: &str = "deqing-rural-bank";

/// A participant of the case, with a freshly generated key.
#[derive(Debug)]
pub struct Party {
    /// Its id.
    pub id: &'static str,
    /// Its display name.
    pub name: &'static str,
    /// Its roles.
    pub roles: &'static [&'static str],
    /// Its key.
    pub key: SigningKey,
}

/// What a step is expected to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Appended.
    Accepted,
    /// Refused with this problem kind (the ledger refusing what it must).
    Refused(&'static str),
}

/// One submission of the case.
#[derive(Debug)]
pub struct Step {
    /// What it is, for the report.
    pub label: String,
    /// The signed submission.
    pub submission: Submission,
    /// What should happen.
    pub expect: Expect,
}

/// The reference case for one ledger: its origin, its operator, and the other parties' keys.
#[derive(Debug)]
pub struct ReferenceCase {
    /// The ledger's origin.
    pub origin: String,
    /// The operator's participant id.
    pub operator: String,
    operator_key: SigningKey,
    /// The other participants.
    pub parties: Vec<Party>,
}

const PARTIES: &[(&str, &str, &[&str])] = &[
    ("zj-forestry-academy", "浙江省林业科学研究院", &["verifier"]),
    (
        "deqing-pricing",
        "德清县碳汇定价小组 (illustrative)",
        &["pricing_authority"],
    ),
    (WETLAND, "下渚湖湿地管理委员会", &["proponent"]),
    (PLATFORM, "德清两山银行 (Two Mountains Bank)", &["platform"]),
    (
        "enterprise-a",
        "Enterprise A (illustrative)",
        &["enterprise"],
    ),
    (
        "enterprise-b",
        "Enterprise B (illustrative)",
        &["enterprise"],
    ),
    (
        BANK,
        "Deqing rural commercial bank (illustrative)",
        &["bank"],
    ),
];

impl ReferenceCase {
    /// The case for the ledger `origin` run by `operator`, with fresh keys for everyone else.
    pub fn new(origin: &str, operator: &str, operator_key: SigningKey) -> Self {
        Self {
            origin: origin.to_owned(),
            operator: operator.to_owned(),
            operator_key,
            parties: PARTIES
                .iter()
                .map(|(id, name, roles)| Party {
                    id,
                    name,
                    roles,
                    key: keys::generate_key(),
                })
                .collect(),
        }
    }

    /// A participant's key (the operator's included).
    pub fn key(&self, id: &str) -> &SigningKey {
        if id == self.operator {
            return &self.operator_key;
        }
        &self
            .parties
            .iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("{id} is not a party of the reference case"))
            .key
    }

    /// A body of this ledger from its type's fields.
    pub fn body(&self, id: &str, created_at: &str, fields: Value) -> Body {
        let mut value = fields;
        if let Some(map) = value.as_object_mut() {
            map.insert("id".into(), json!(id));
            map.insert("ledger".into(), json!(self.origin));
            map.insert("created_at".into(), json!(created_at));
        }
        serde_json::from_value(value)
            .unwrap_or_else(|e| panic!("the reference case's body {id} is not valid: {e}"))
    }

    /// A body signed by the given participants, in order.
    pub fn sign(&self, body: Body, signers: &[&str]) -> Submission {
        let ids: Vec<ParticipantId> = signers
            .iter()
            .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
            .collect();
        let pairs: Vec<(&ParticipantId, &SigningKey)> = ids
            .iter()
            .zip(signers)
            .map(|(id, s)| (id, self.key(s)))
            .collect();
        sign::sign_body(body, &pairs).unwrap_or_else(|e| panic!("signing: {e}"))
    }

    /// The participants' registrations, each signed by the operator and the new key.
    pub fn registrations(&self) -> Vec<Step> {
        self.parties
            .iter()
            .map(|p| {
                let body = self.body(
                    &format!("reg-{}", p.id),
                    "2022-05-20T09:00:00Z",
                    json!({"type": "register_participant", "participant": p.id, "name": p.name,
                           "roles": p.roles, "public_key": public_key_base64(&p.key)}),
                );
                Step {
                    label: format!("register {} ({})", p.id, p.name),
                    submission: self.sign(body, &[&self.operator, p.id]),
                    expect: Expect::Accepted,
                }
            })
            .collect()
    }

    fn step(
        &self,
        label: &str,
        id: &str,
        created_at: &str,
        fields: Value,
        signers: &[&str],
        expect: Expect,
    ) -> Step {
        Step {
            label: label.to_owned(),
            submission: self.sign(self.body(id, created_at, fields), signers),
            expect,
        }
    }

    /// The market, from the methodology to the drawdowns, with two refusals the ledger must make.
    pub fn market(&self) -> Vec<Step> {
        let op = self.operator.as_str();
        let ok = Expect::Accepted;
        vec![
            self.step("methodology wetland-sink, buffer rate 0.10", "meth-1", "2022-05-20T10:00:00Z",
                json!({"type": "register_methodology", "methodology": "wetland-sink",
                       "name": "Wetland carbon sink accounting", "version": "1.0", "buffer_rate": "0.10"}),
                &[op], ok),
            self.step("project XZH, 下渚湖湿地, 593.3 ha", "proj-1", "2022-05-20T10:30:00Z",
                json!({"type": "register_project", "project": PROJECT, "name": "下渚湖湿地",
                       "proponent": WETLAND, "methodology": "wetland-sink",
                       "region": "浙江省湖州市德清县", "area_ha": "593.3"}),
                &[op, WETLAND], ok),
            self.step("monitoring report XZH-MR-2021: 17,000 t", "mon-1", "2022-05-25T09:00:00Z",
                json!({"type": "record_monitoring", "report": "XZH-MR-2021", "project": PROJECT,
                       "period_start": "2021-01-01", "period_end": "2021-12-31", "quantity": "17000",
                       "evidence_sha256": "9f".repeat(32)}),
                &["zj-forestry-academy"], ok),
            self.step("issuance of batch XZH-2021: 17,000 t", "iss-1", "2022-05-30T09:00:00Z",
                json!({"type": "issue_batch", "batch": BATCH, "report": "XZH-MR-2021",
                       "quantity": "17000", "vintage": 2021}),
                &[op], ok),
            self.step("benchmark price BM-2022-06: 58.83 CNY/t", "price-1", "2022-06-01T00:00:00Z",
                json!({"type": "publish_price", "price": PRICE, "basis": "benchmark",
                       "unit_price": "58.83", "currency": "CNY", "effective_at": "2022-06-01T00:00:00Z",
                       "inputs": {"method": "cost of restoration per tonne"}}),
                &["deqing-pricing"], ok),
            self.step("acquisition (收储) T-2022-0001: 10,000 t × 58.83", ACQUISITION, "2022-06-01T09:30:00Z",
                json!({"type": "trade", "kind": "acquisition", "seller": WETLAND, "buyer": PLATFORM,
                       "batch": BATCH, "quantity": "10000", "unit_price": "58.83", "currency": "CNY",
                       "amount": "588300.00", "price_ref": PRICE}),
                &[WETLAND, PLATFORM], ok),
            self.step("eco-compensation T-2022-0002 (illustrative): 3,000 t to enterprise-a", "T-2022-0002", "2022-06-15T10:00:00Z",
                json!({"type": "trade", "kind": "eco_compensation", "seller": PLATFORM, "buyer": "enterprise-a",
                       "batch": BATCH, "quantity": "3000", "unit_price": "60.00", "currency": "CNY",
                       "amount": "180000.00"}),
                &[PLATFORM, "enterprise-a"], ok),
            self.step("eco-compensation T-2022-0003 (illustrative): 2,000 t to enterprise-b", "T-2022-0003", "2022-06-16T10:00:00Z",
                json!({"type": "trade", "kind": "eco_compensation", "seller": PLATFORM, "buyer": "enterprise-b",
                       "batch": BATCH, "quantity": "2000", "unit_price": "60.00", "currency": "CNY",
                       "amount": "120000.00"}),
                &[PLATFORM, "enterprise-b"], ok),
            self.step("retirement CERT-2022-0001 (illustrative): 1,000 t", CERTIFICATE, "2022-07-01T09:00:00Z",
                json!({"type": "retire", "holder": "enterprise-a", "batch": BATCH, "quantity": "1000",
                       "beneficiary": "Enterprise A", "purpose": "2022 Scope 1 emissions offset"}),
                &["enterprise-a"], ok),
            self.step("pledge PL-2022-001 (illustrative): 4,000 t, haircut 0.30", "PL-1", "2022-07-15T09:00:00Z",
                json!({"type": "pledge", "pledge": PLEDGE, "pledgor": PLATFORM, "bank": BANK,
                       "batch": BATCH, "quantity": "4000", "price_ref": PRICE, "haircut": "0.30",
                       "limit": "164724.00", "currency": "CNY", "maturity": "2023-06-30"}),
                &[PLATFORM, BANK], ok),
            self.step("retiring pledged sink (must be refused)", "CERT-2022-0002", "2022-07-16T09:00:00Z",
                json!({"type": "retire", "holder": PLATFORM, "batch": BATCH, "quantity": "1500",
                       "beneficiary": "x", "purpose": "y"}),
                &[PLATFORM], Expect::Refused("insufficient-sink")),
            self.step("drawdown DD-1 (illustrative): 100,000.00", "DD-1", "2022-07-20T09:00:00Z",
                json!({"type": "drawdown", "pledge": PLEDGE, "amount": "100000.00"}),
                &[BANK, PLATFORM], ok),
            self.step("drawdown DD-2 (illustrative): 64,724.00", "DD-2", "2022-08-20T09:00:00Z",
                json!({"type": "drawdown", "pledge": PLEDGE, "amount": "64724.00"}),
                &[BANK, PLATFORM], ok),
            self.step("drawdown DD-3 past the limit (must be refused)", "DD-3", "2022-08-21T09:00:00Z",
                json!({"type": "drawdown", "pledge": PLEDGE, "amount": "0.01"}),
                &[BANK, PLATFORM], Expect::Refused("limit-exceeded")),
        ]
    }
}

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

    #[test]
    fn the_case_builds_and_signs() {
        let case = ReferenceCase::new("test.example/ledger", "operator", keys::generate_key());
        assert_eq!(case.registrations().len(), PARTIES.len());
        let market = case.market();
        assert!(market
            .iter()
            .any(|s| s.expect == Expect::Refused("limit-exceeded")));
        assert!(market.iter().all(|s| !s.submission.signatures.is_empty()));
    }
}
