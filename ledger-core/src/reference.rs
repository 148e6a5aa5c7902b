//! The reference case — the Xiazhu Lake wetland (下渚湖湿地), 2022 — as signed entries, written
//! once for the demo, the examples and the tests.
//!
//! Published figures: about 17,000 tCO2e a year measured (the provincial forestry academy's
//! estimate); the "Two Mountains Bank" platform (两山银行) bought 10,000 t at 58.83 CNY/t =
//! 588,300.00 CNY. Everything else — the resales to two enterprises, the retirement, the pledge
//! and its drawdowns, the participants' display names other than the wetland's and the
//! platform's — is **illustrative** and labelled so.
//!
//! The facts are those of 2022 (the 2021 monitoring period, the benchmark price effective on
//! 1 June 2022), but the entries are signed when the case is built: a ledger refuses signed
//! entries older than its expiry window, and a pledge that matured long ago. Entries are spaced
//! one minute apart from `start`, and the pledge matures a year after it.

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use crate::entry::{Body, Submission};
use crate::ids::{ParticipantId, PublicKey, Timestamp};
use crate::sign;

/// The project's id.
pub const PROJECT: &str = "XZH";
/// The monitoring report of 2021.
pub const REPORT: &str = "XZH-MR-2021";
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
/// The monitoring verifier.
pub const VERIFIER: &str = "zj-forestry-academy";
/// The pricing authority (illustrative).
pub const PRICING: &str = "deqing-pricing";
/// The wetland's manager (the proponent).
pub const WETLAND: &str = "xiazhuhu-wetland";
/// The platform, 两山银行.
pub const PLATFORM: &str = "two-mountains-bank";
/// The first enterprise (illustrative).
pub const ENTERPRISE_A: &str = "enterprise-a";
/// The second enterprise (illustrative).
pub const ENTERPRISE_B: &str = "enterprise-b";
/// The lending bank (illustrative).
pub const BANK: &str = "deqing-rural-bank";

/// The participants besides the operator: id, display name, roles.
pub const PARTIES: &[(&str, &str, &[&str])] = &[
    (VERIFIER, "浙江省林业科学研究院", &["verifier"]),
    (
        PRICING,
        "德清县碳汇定价小组 (illustrative)",
        &["pricing_authority"],
    ),
    (WETLAND, "下渚湖湿地管理委员会", &["proponent"]),
    (PLATFORM, "德清两山银行 (Two Mountains Bank)", &["platform"]),
    (ENTERPRISE_A, "Enterprise A (illustrative)", &["enterprise"]),
    (ENTERPRISE_B, "Enterprise B (illustrative)", &["enterprise"]),
    (
        BANK,
        "Deqing rural commercial bank (illustrative)",
        &["bank"],
    ),
];

/// A participant of the case, with its key.
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
    /// Refused with this error kind (the ledger refusing what it must).
    Refused(&'static str),
}

/// One entry of the case.
#[derive(Debug)]
pub struct Step {
    /// What it is, for a report.
    pub label: String,
    /// The body.
    pub body: Body,
    /// Who signs it, in order.
    pub signers: Vec<String>,
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
    /// When the first entry is made; the others follow a minute apart.
    pub start: time::OffsetDateTime,
}

impl ReferenceCase {
    /// The case for the ledger `origin` run by `operator`, with fresh keys for everyone else,
    /// its entries made from an hour ago on.
    pub fn new(origin: &str, operator: &str, operator_key: SigningKey) -> Self {
        let start = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        Self::with_keys(origin, operator, operator_key, start, |_| {
            SigningKey::generate(&mut rand_core::OsRng)
        })
    }

    /// The case with entries made from `start` on, and each party's key given by `key_of`
    /// (deterministic keys make reproducible bodies).
    pub fn with_keys(
        origin: &str,
        operator: &str,
        operator_key: SigningKey,
        start: time::OffsetDateTime,
        key_of: impl Fn(&str) -> SigningKey,
    ) -> Self {
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
                    key: key_of(id),
                })
                .collect(),
            start,
        }
    }

    /// A participant's key (the operator's included).
    ///
    /// # Panics
    ///
    /// If `id` is not a participant of the case.
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

    /// The time of the case's `n`th entry (`start` + `n` minutes), RFC 3339.
    pub fn at(&self, n: i64) -> String {
        Timestamp::from_instant(self.start + time::Duration::minutes(n)).to_string()
    }

    /// The pledge's maturity: a year after the case starts.
    pub fn maturity(&self) -> String {
        Timestamp::from_instant(self.start + time::Duration::days(365))
            .date()
            .to_string()
    }

    /// A body of this ledger from its type's fields.
    ///
    /// # Panics
    ///
    /// If the fields do not make a valid body (a mistake in the caller's fixture).
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
    ///
    /// # Panics
    ///
    /// If a signer is not a participant of the case.
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

    fn step(&self, label: &str, body: Body, signers: &[&str], expect: Expect) -> Step {
        Step {
            label: label.to_owned(),
            submission: self.sign(body.clone(), signers),
            body,
            signers: signers.iter().map(|s| (*s).to_owned()).collect(),
            expect,
        }
    }

    /// The participants' registrations, each signed by the operator and the new key.
    pub fn registrations(&self) -> Vec<Step> {
        self.parties
            .iter()
            .map(|p| {
                let public_key = PublicKey::from(p.key.verifying_key()).to_string();
                let body = self.body(
                    &format!("reg-{}", p.id),
                    &self.at(0),
                    json!({"type": "register_participant", "participant": p.id, "name": p.name,
                           "roles": p.roles, "public_key": public_key}),
                );
                self.step(
                    &format!("register {} ({})", p.id, p.name),
                    body,
                    &[&self.operator, p.id],
                    Expect::Accepted,
                )
            })
            .collect()
    }

    /// The market, from the methodology to the drawdowns, with two refusals the ledger must make.
    pub fn market(&self) -> Vec<Step> {
        let op = self.operator.as_str();
        let ok = Expect::Accepted;
        let entry = |n: i64, label: &str, id: &str, fields: Value, signers: &[&str], expect| {
            self.step(label, self.body(id, &self.at(n), fields), signers, expect)
        };
        vec![
            entry(
                1,
                "methodology wetland-sink, buffer rate 0.10",
                "meth-1",
                json!({"type": "register_methodology", "methodology": "wetland-sink",
                       "name": "Wetland carbon sink accounting", "version": "1.0", "buffer_rate": "0.10"}),
                &[op],
                ok,
            ),
            entry(
                2,
                "project XZH, 下渚湖湿地, 593.3 ha",
                "proj-1",
                json!({"type": "register_project", "project": PROJECT, "name": "下渚湖湿地",
                       "proponent": WETLAND, "methodology": "wetland-sink",
                       "region": "浙江省湖州市德清县", "area_ha": "593.3"}),
                &[op, WETLAND],
                ok,
            ),
            entry(
                3,
                "monitoring report XZH-MR-2021: 17,000 t",
                "mon-1",
                json!({"type": "record_monitoring", "report": REPORT, "project": PROJECT,
                       "period_start": "2021-01-01", "period_end": "2021-12-31", "quantity": "17000",
                       "evidence_sha256": "9f".repeat(32)}),
                &[VERIFIER],
                ok,
            ),
            entry(
                4,
                "issuance of batch XZH-2021: 17,000 t",
                "iss-1",
                json!({"type": "issue_batch", "batch": BATCH, "report": REPORT,
                       "quantity": "17000", "vintage": 2021}),
                &[op],
                ok,
            ),
            entry(
                5,
                "benchmark price BM-2022-06: 58.83 CNY/t",
                "price-1",
                json!({"type": "publish_price", "price": PRICE, "basis": "benchmark",
                       "unit_price": "58.83", "currency": "CNY", "effective_at": "2022-06-01T00:00:00Z",
                       "inputs": {"method": "cost of restoration per tonne"}}),
                &[PRICING],
                ok,
            ),
            entry(
                6,
                "acquisition (收储) T-2022-0001: 10,000 t × 58.83",
                ACQUISITION,
                json!({"type": "trade", "kind": "acquisition", "seller": WETLAND, "buyer": PLATFORM,
                       "batch": BATCH, "quantity": "10000", "unit_price": "58.83", "currency": "CNY",
                       "amount": "588300.00", "price_ref": PRICE}),
                &[WETLAND, PLATFORM],
                ok,
            ),
            entry(
                7,
                "eco-compensation T-2022-0002 (illustrative): 3,000 t to enterprise-a",
                "T-2022-0002",
                json!({"type": "trade", "kind": "eco_compensation", "seller": PLATFORM, "buyer": ENTERPRISE_A,
                       "batch": BATCH, "quantity": "3000", "unit_price": "60.00", "currency": "CNY",
                       "amount": "180000.00"}),
                &[PLATFORM, ENTERPRISE_A],
                ok,
            ),
            entry(
                8,
                "eco-compensation T-2022-0003 (illustrative): 2,000 t to enterprise-b",
                "T-2022-0003",
                json!({"type": "trade", "kind": "eco_compensation", "seller": PLATFORM, "buyer": ENTERPRISE_B,
                       "batch": BATCH, "quantity": "2000", "unit_price": "60.00", "currency": "CNY",
                       "amount": "120000.00"}),
                &[PLATFORM, ENTERPRISE_B],
                ok,
            ),
            entry(
                9,
                "retirement CERT-2022-0001 (illustrative): 1,000 t",
                CERTIFICATE,
                json!({"type": "retire", "holder": ENTERPRISE_A, "batch": BATCH, "quantity": "1000",
                       "beneficiary": "Enterprise A", "purpose": "2022 Scope 1 emissions offset"}),
                &[ENTERPRISE_A],
                ok,
            ),
            entry(
                10,
                "pledge PL-2022-001 (illustrative): 4,000 t, haircut 0.30, margin call below 1.25",
                "PL-1",
                json!({"type": "pledge", "pledge": PLEDGE, "pledgor": PLATFORM, "bank": BANK,
                       "batch": BATCH, "quantity": "4000", "price_ref": PRICE, "haircut": "0.30",
                       "limit": "164724.00", "currency": "CNY", "maturity": self.maturity(),
                       "margin_threshold": "1.25"}),
                &[PLATFORM, BANK],
                ok,
            ),
            entry(
                11,
                "retiring pledged sink (must be refused)",
                "CERT-2022-0002",
                json!({"type": "retire", "holder": PLATFORM, "batch": BATCH, "quantity": "1500",
                       "beneficiary": "x", "purpose": "y"}),
                &[PLATFORM],
                Expect::Refused("insufficient-sink"),
            ),
            entry(
                12,
                "drawdown DD-1 (illustrative): 100,000.00",
                "DD-1",
                json!({"type": "drawdown", "pledge": PLEDGE, "amount": "100000.00"}),
                &[BANK, PLATFORM],
                ok,
            ),
            entry(
                13,
                "drawdown DD-2 (illustrative): 64,724.00",
                "DD-2",
                json!({"type": "drawdown", "pledge": PLEDGE, "amount": "64724.00"}),
                &[BANK, PLATFORM],
                ok,
            ),
            entry(
                14,
                "drawdown DD-3 past the limit (must be refused)",
                "DD-3",
                json!({"type": "drawdown", "pledge": PLEDGE, "amount": "0.01"}),
                &[BANK, PLATFORM],
                Expect::Refused("limit-exceeded"),
            ),
        ]
    }

    /// Every step: the registrations, then the market.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = self.registrations();
        steps.extend(self.market());
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_case_builds_and_signs() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let case = ReferenceCase::new("test.example/ledger", "operator", key);
        assert_eq!(case.registrations().len(), PARTIES.len());
        let market = case.market();
        assert!(market
            .iter()
            .any(|s| s.expect == Expect::Refused("limit-exceeded")));
        assert!(market.iter().all(|s| !s.submission.signatures.is_empty()));
        assert!(case.maturity().as_str() > &case.at(0)[..10]);
    }
}
