//! The reference case of the design (Xiazhu Lake wetland, 2022) through the state machine alone.
//! Quantities the press did not publish (the resales, the retirement, the pledge) are illustrative.

mod common;

use common::{body, date_in, pid, Market};
use ledger_core::error::RuleError;
use ledger_core::state::{PledgeStatus, State, TradeFilter};
use serde_json::json;

/// A figure of whatever type the comparison needs (tonnes, money, a ratio).
fn d<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn reference_market() -> Market {
    let mut m = Market::default();
    for (id, name, roles) in common::REFERENCE_PARTICIPANTS {
        m.register(id, name, roles);
    }
    for (id, fields, signers) in common::reference_setup() {
        m.ok(body(id, fields), &signers);
    }
    m
}

#[test]
fn xiazhu_lake_reference_case() {
    let mut m = reference_market();
    let wetland = pid("xiazhuhu-wetland");
    let platform = pid("two-mountains-bank");
    let batch = "XZH-2021".parse().unwrap();

    // Issuance: 17,000 t with a 10 % buffer.
    let b = m.state.batch(&batch).unwrap().clone();
    assert_eq!(b.issued, d("17000"));
    assert_eq!(b.buffer, d("1700.000"));
    assert_eq!(m.state.balance(&wetland, &batch).available, d("15300.000"));

    // The acquisition (收储): 10,000 t × 58.83 = 588,300.00 CNY.
    m.ok(
        body("T-2022-0001", json!({"type": "trade", "kind": "acquisition", "seller": "xiazhuhu-wetland",
            "buyer": "two-mountains-bank", "batch": "XZH-2021", "quantity": "10000",
            "unit_price": "58.83", "currency": "CNY", "amount": "588300.00", "price_ref": "BM-2022-06"})),
        &["xiazhuhu-wetland", "two-mountains-bank"],
    );
    assert_eq!(m.state.balance(&platform, &batch).available, d("10000"));
    assert_eq!(m.state.balance(&wetland, &batch).available, d("5300.000"));

    // Ecological compensation (生态补偿) resales to two enterprises.
    for (id, buyer, quantity, amount) in [
        ("T-2022-0002", "enterprise-a", "3000", "180000.00"),
        ("T-2022-0003", "enterprise-b", "2000", "120000.00"),
    ] {
        m.ok(
            body(
                id,
                json!({"type": "trade", "kind": "eco_compensation", "seller": "two-mountains-bank",
                "buyer": buyer, "batch": "XZH-2021", "quantity": quantity, "unit_price": "60.00",
                "currency": "CNY", "amount": amount}),
            ),
            &["two-mountains-bank", buyer],
        );
    }
    let project = "XZH".parse().unwrap();
    let proceeds: Vec<_> = m.state.proceeds_of(&project).collect();
    assert_eq!(proceeds.len(), 1);
    assert_eq!(proceeds[0].acquisition, d("588300.00"));
    assert_eq!(proceeds[0].eco_compensation, d("300000.00"));
    assert_eq!(proceeds[0].total(), d("888300.00"));
    let eco = m
        .state
        .trades(&TradeFilter {
            kind: Some(ledger_core::entry::TradeKind::EcoCompensation),
            ..TradeFilter::default()
        })
        .unwrap();
    assert_eq!(eco.len(), 2);

    // A retirement with beneficiary and purpose.
    m.ok(
        body("CERT-2022-0001", json!({"type": "retire", "holder": "enterprise-a", "batch": "XZH-2021",
            "quantity": "1000", "beneficiary": "Enterprise A", "purpose": "2022 Scope 1 emissions offset"})),
        &["enterprise-a"],
    );
    let cert = m
        .state
        .certificate(&"CERT-2022-0001".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(cert.vintage, 2021);
    assert_eq!(m.state.batch(&batch).unwrap().retired, d("1000"));

    // A pledge to a bank: 4,000 t at 58.83 with a 30 % haircut → limit 164,724.00.
    m.ok(
        body(
            "PL-1",
            json!({"type": "pledge", "pledge": "PL-2022-001", "pledgor": "two-mountains-bank",
            "bank": "deqing-rural-bank", "batch": "XZH-2021", "quantity": "4000",
            "price_ref": "BM-2022-06", "haircut": "0.30", "limit": "164724.00", "currency": "CNY",
            "maturity": date_in(365)}),
        ),
        &["two-mountains-bank", "deqing-rural-bank"],
    );
    let bal = m.state.balance(&platform, &batch);
    assert_eq!((bal.available, bal.pledged), (d("1000"), d("4000")));
    // Pledged sink can be neither traded nor retired.
    let err = m.refused(
        body(
            "CERT-2022-0002",
            json!({"type": "retire", "holder": "two-mountains-bank", "batch": "XZH-2021",
            "quantity": "1500", "beneficiary": "x", "purpose": "y"}),
        ),
        &["two-mountains-bank"],
    );
    assert_eq!(err.kind(), "insufficient-sink");
    assert_eq!(
        err.to_string(),
        "two-mountains-bank holds 1000.000 t of batch XZH-2021 available; the retirement needs 1500.000 t"
    );

    // Drawdowns up to the limit, then one past it.
    for (id, amount) in [("DD-1", "100000.00"), ("DD-2", "64724.00")] {
        m.ok(
            body(
                id,
                json!({"type": "drawdown", "pledge": "PL-2022-001", "amount": amount}),
            ),
            &["deqing-rural-bank", "two-mountains-bank"],
        );
    }
    let err = m.refused(
        body(
            "DD-3",
            json!({"type": "drawdown", "pledge": "PL-2022-001", "amount": "0.01"}),
        ),
        &["deqing-rural-bank", "two-mountains-bank"],
    );
    assert!(matches!(err, RuleError::LimitExceeded { .. }), "{err}");
    let pledge = m
        .state
        .pledge(&"PL-2022-001".parse().unwrap())
        .unwrap()
        .clone();
    let coverage = State::coverage(&pledge, "58.83".parse().unwrap());
    assert_eq!(coverage.collateral_value, d("235320.00"));
    assert_eq!(coverage.coverage_ratio, Some(d("1.4286")));

    // Release refused while outstanding; repayment, then release.
    let err = m.refused(
        body(
            "REL-1",
            json!({"type": "release_pledge", "pledge": "PL-2022-001"}),
        ),
        &["deqing-rural-bank"],
    );
    assert_eq!(err.kind(), "pledge-outstanding");
    m.ok(
        body(
            "REP-1",
            json!({"type": "repay", "pledge": "PL-2022-001", "amount": "164724.00"}),
        ),
        &["deqing-rural-bank"],
    );
    m.ok(
        body(
            "REL-2",
            json!({"type": "release_pledge", "pledge": "PL-2022-001"}),
        ),
        &["deqing-rural-bank"],
    );
    let pledge = m.state.pledge(&"PL-2022-001".parse().unwrap()).unwrap();
    assert_eq!(pledge.status, PledgeStatus::Released);
    let bal = m.state.balance(&platform, &batch);
    assert_eq!((bal.available, bal.pledged), (d("5000"), d("0")));

    // Every tonne accounted for: 17,000 = held + buffer + retired.
    m.state.check_invariants().unwrap();
    let b = m.state.batch(&batch).unwrap();
    assert_eq!(
        b.available + b.pledged + b.buffer + b.retired + b.reversed,
        d("17000")
    );
}

#[test]
fn rules_refuse_with_figures_and_change_nothing() {
    let mut m = reference_market();
    // The stated amount must be quantity × price to the fen.
    let err = m.refused(
        body(
            "T-x",
            json!({"type": "trade", "kind": "acquisition", "seller": "xiazhuhu-wetland",
            "buyer": "two-mountains-bank", "batch": "XZH-2021", "quantity": "10000",
            "unit_price": "58.83", "currency": "CNY", "amount": "588300.01"}),
        ),
        &["xiazhuhu-wetland", "two-mountains-bank"],
    );
    assert_eq!(err.kind(), "amount-mismatch");
    // A priced trade worth less than half a fen.
    let err = m.refused(
        body(
            "T-y",
            json!({"type": "trade", "kind": "acquisition", "seller": "xiazhuhu-wetland",
            "buyer": "two-mountains-bank", "batch": "XZH-2021", "quantity": "0.001",
            "unit_price": "1", "currency": "CNY", "amount": "0.01"}),
        ),
        &["xiazhuhu-wetland", "two-mountains-bank"],
    );
    assert_eq!(err.kind(), "amount-rounds-to-zero");
    // Signed by the buyer alone.
    let err = m.refused(
        body(
            "T-z",
            json!({"type": "trade", "kind": "transfer", "seller": "xiazhuhu-wetland",
            "buyer": "two-mountains-bank", "batch": "XZH-2021", "quantity": "1"}),
        ),
        &["two-mountains-bank"],
    );
    assert_eq!(err.kind(), "wrong-signers");
    // Signed by the operator instead of the seller.
    let err = m.refused(
        body(
            "T-z",
            json!({"type": "trade", "kind": "transfer", "seller": "xiazhuhu-wetland",
            "buyer": "two-mountains-bank", "batch": "XZH-2021", "quantity": "1"}),
        ),
        &["deqing-registry", "two-mountains-bank"],
    );
    assert_eq!(err.kind(), "wrong-signers");
    // An acquisition must buy from the project's proponent, for a platform.
    let err = m.refused(
        body(
            "T-w",
            json!({"type": "trade", "kind": "acquisition", "seller": "xiazhuhu-wetland",
            "buyer": "enterprise-a", "batch": "XZH-2021", "quantity": "1",
            "unit_price": "58.83", "currency": "CNY", "amount": "58.83"}),
        ),
        &["xiazhuhu-wetland", "enterprise-a"],
    );
    assert_eq!(err.kind(), "missing-role");
    // Issuing past the verified quantity.
    let err = m.refused(
        body(
            "iss-2",
            json!({"type": "issue_batch", "batch": "XZH-2021-B", "report": "XZH-MR-2021",
            "quantity": "0.001", "vintage": 2021}),
        ),
        &["deqing-registry"],
    );
    assert_eq!(err.kind(), "exceeds-verified");
    // Overlapping monitoring periods would count the same carbon twice.
    let err = m.refused(
        body(
            "mon-2",
            json!({"type": "record_monitoring", "report": "XZH-MR-2021b", "project": "XZH",
            "period_start": "2021-12-01", "period_end": "2022-11-30", "quantity": "17000",
            "evidence_sha256": "ab".repeat(32)}),
        ),
        &["zj-forestry-academy"],
    );
    assert_eq!(err.kind(), "period-overlap");
    // A used entry id is a conflict.
    let err = m.refused(
        body(
            "iss-1",
            json!({"type": "reversal", "batch": "XZH-2021", "quantity": "1", "reason": "fire"}),
        ),
        &["deqing-registry", "zj-forestry-academy"],
    );
    assert_eq!(err.kind(), "entry-id-conflict");
    // Reversal from the buffer pool, not past it.
    m.ok(
        body("rev-1", json!({"type": "reversal", "batch": "XZH-2021", "quantity": "700", "reason": "drought"})),
        &["deqing-registry", "zj-forestry-academy"],
    );
    let err = m.refused(
        body("rev-2", json!({"type": "reversal", "batch": "XZH-2021", "quantity": "1000.001", "reason": "drought"})),
        &["deqing-registry", "zj-forestry-academy"],
    );
    assert_eq!(err.kind(), "insufficient-buffer");
    m.state.check_invariants().unwrap();
}

/// Only rows whose value changed are handed to storage: a transfer moves sink between two
/// holders of a batch, so the batch's totals end where they started and are not written again.
/// Beside the balances go the entry id, the trade, and its index rows (by each party, by batch
/// and by kind) that let a list be paged by key range.
#[test]
fn a_transfer_writes_the_two_balances_but_not_the_unchanged_batch() {
    let mut m = reference_market();
    let transfer = body(
        "T-rows",
        json!({"type": "trade", "kind": "transfer", "seller": "xiazhuhu-wetland",
            "buyer": "enterprise-a", "batch": "XZH-2021", "quantity": "5"}),
    );
    let ctx = ledger_core::state::Context {
        seq: m.seq,
        accepted_at: m.accepted_at(),
        signers: ledger_core::state::Signers::of(
            [pid("xiazhuhu-wetland"), pid("enterprise-a")].iter(),
        ),
        body_digest: [7; 32],
    };
    m.state.apply(&ctx, &transfer).unwrap();
    let tables: Vec<&str> = m
        .state
        .pending_changes()
        .unwrap()
        .iter()
        .map(|c| c.table)
        .collect();
    assert_eq!(
        tables,
        [
            "entries",
            "balances",
            "balances",
            "trades",
            "trades_by_party",
            "trades_by_party",
            "trades_by_batch",
            "trades_by_kind"
        ]
    );
}
