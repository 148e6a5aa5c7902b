//! Builders shared by the state-machine tests: bodies from JSON, contexts with given signers.
#![allow(dead_code)]

use ledger_core::entry::Body;
use ledger_core::error::RuleError;
use ledger_core::ids::{ParticipantId, Timestamp};
use ledger_core::state::{Context, Signers, State};
use serde_json::{json, Value};

pub const LEDGER: &str = "deqing.example/wetland-sink";

/// A deterministic signing key for a participant name (tests only).
pub fn signing_key(name: &str) -> ed25519_dalek::SigningKey {
    let mut seed = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        seed[i % 32] ^= b.wrapping_add(u8::try_from(i % 251).unwrap());
    }
    seed[31] ^= u8::try_from(name.len() % 251).unwrap();
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// The base64 public key of [`signing_key`].
pub fn key_of(name: &str) -> String {
    use base64::Engine as _;
    let key = signing_key(name).verifying_key();
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

pub fn pid(s: &str) -> ParticipantId {
    s.parse().unwrap()
}

/// A body from its type-specific fields; id, ledger and created_at are added.
pub fn body(id: &str, fields: Value) -> Body {
    let mut value = fields;
    let map = value.as_object_mut().unwrap();
    map.insert("id".into(), json!(id));
    map.insert("ledger".into(), json!(LEDGER));
    map.entry("created_at")
        .or_insert(json!("2022-06-01T09:30:00Z"));
    serde_json::from_value(value).unwrap_or_else(|e| panic!("test body {id}: {e}"))
}

/// A distinct digest per sequence number (the state machine only compares them).
fn sha2_like(seq: u64) -> [u8; 32] {
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&seq.to_be_bytes());
    digest
}

/// A small driver that numbers entries and hands the state machine the signers.
#[derive(Default)]
pub struct Market {
    pub state: State,
    pub seq: u64,
}

impl Market {
    pub fn apply(&mut self, body: &Body, signers: Signers) -> Result<(), RuleError> {
        let ctx = Context {
            seq: self.seq,
            accepted_at: "2022-06-01T10:00:00Z".parse::<Timestamp>().unwrap(),
            signers,
            body_digest: sha2_like(self.seq),
        };
        let result = self.state.apply(&ctx, body);
        if result.is_ok() {
            self.seq += 1;
            self.state.settle();
        }
        result
    }

    pub fn ok(&mut self, body: Body, signers: &[&str]) {
        let signers = Signers::of(signers.iter().map(|s| pid(s)).collect::<Vec<_>>().iter());
        let id = body.id.clone();
        self.apply(&body, signers)
            .unwrap_or_else(|e| panic!("entry {id} refused: {e}"));
    }

    pub fn ok_with_new_key(&mut self, body: Body, signers: &[&str]) {
        let signers =
            Signers::of(signers.iter().map(|s| pid(s)).collect::<Vec<_>>().iter()).with_new_key();
        let id = body.id.clone();
        self.apply(&body, signers)
            .unwrap_or_else(|e| panic!("entry {id} refused: {e}"));
    }

    pub fn refused(&mut self, body: Body, signers: &[&str]) -> RuleError {
        let before = self.state.clone();
        let signers = Signers::of(signers.iter().map(|s| pid(s)).collect::<Vec<_>>().iter());
        let err = self
            .apply(&body, signers)
            .expect_err("entry should be refused");
        assert_eq!(self.state, before, "a refused entry changed the state");
        err
    }

    pub fn register(&mut self, id: &str, name: &str, roles: &[&str]) {
        let b = registration(id, name, roles);
        if self.state.operator().is_none() {
            self.ok_with_new_key(b, &[]);
        } else {
            let op = self.state.operator().unwrap().to_string();
            self.ok_with_new_key(b, &[&op]);
        }
    }
}

/// The participants of the reference case: id, name, roles. The operator comes first.
pub const REFERENCE_PARTICIPANTS: &[(&str, &str, &[&str])] = &[
    (
        "deqing-registry",
        "德清县生态资源登记中心 (illustrative operator)",
        &["operator"],
    ),
    ("zj-forestry-academy", "浙江省林业科学研究院", &["verifier"]),
    (
        "deqing-pricing",
        "德清县碳汇定价小组 (illustrative)",
        &["pricing_authority"],
    ),
    ("xiazhuhu-wetland", "下渚湖湿地管理委员会", &["proponent"]),
    ("two-mountains-bank", "德清两山银行", &["platform"]),
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
        "deqing-rural-bank",
        "Deqing rural commercial bank (illustrative)",
        &["bank"],
    ),
];

/// The reference case after registration: methodology, project, the 17,000 t report, the
/// issuance and the benchmark price. Each step: entry id, type fields, signers.
pub fn reference_setup() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    vec![
        (
            "meth-1",
            json!({"type": "register_methodology", "methodology": "wetland-sink",
            "name": "Wetland carbon sink accounting", "version": "1.0", "buffer_rate": "0.10"}),
            vec!["deqing-registry"],
        ),
        (
            "proj-1",
            json!({"type": "register_project", "project": "XZH", "name": "下渚湖湿地",
            "proponent": "xiazhuhu-wetland", "methodology": "wetland-sink",
            "region": "浙江省湖州市德清县", "area_ha": "593.3"}),
            vec!["deqing-registry", "xiazhuhu-wetland"],
        ),
        (
            "mon-1",
            json!({"type": "record_monitoring", "report": "XZH-MR-2021", "project": "XZH",
            "period_start": "2021-01-01", "period_end": "2021-12-31", "quantity": "17000",
            "evidence_sha256": "9f".repeat(32)}),
            vec!["zj-forestry-academy"],
        ),
        (
            "iss-1",
            json!({"type": "issue_batch", "batch": "XZH-2021", "report": "XZH-MR-2021",
            "quantity": "17000", "vintage": 2021}),
            vec!["deqing-registry"],
        ),
        (
            "price-1",
            json!({"type": "publish_price", "price": "BM-2022-06", "basis": "benchmark",
            "unit_price": "58.83", "currency": "CNY", "effective_at": "2022-06-01T00:00:00Z",
            "inputs": {"method": "cost of restoration per tonne"}}),
            vec!["deqing-pricing"],
        ),
    ]
}

/// The registration body of a reference participant.
pub fn registration(id: &str, name: &str, roles: &[&str]) -> Body {
    body(
        &format!("reg-{id}"),
        json!({"type": "register_participant", "participant": id, "name": name,
               "roles": roles, "public_key": key_of(id)}),
    )
}

/// The base64 form of a public key.
pub fn encode_key(key: &ed25519_dalek::VerifyingKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}
