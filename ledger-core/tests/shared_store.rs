//! Several ledgers on one shared store (PostgreSQL): each one catches up with what the others
//! appended, seq stays gap-free, and a resubmission to another instance gets the first receipt.

mod common;

use common::{body, pid, signing_key, stores, LEDGER};
use ledger_core::entry::{Body, Submission};
use ledger_core::ledger::LedgerConfig;
use ledger_core::sign::sign_body;
use serde_json::json;

const OPERATOR: &str = "deqing-registry";

fn config() -> LedgerConfig {
    LedgerConfig::new(
        LEDGER.parse().unwrap(),
        pid(OPERATOR),
        "Registry".parse().unwrap(),
        signing_key(OPERATOR),
    )
}

fn signed(body: Body, signers: &[&str]) -> Submission {
    let ids: Vec<_> = signers.iter().map(|s| pid(s)).collect();
    let keys: Vec<_> = signers.iter().map(|s| signing_key(s)).collect();
    let pairs: Vec<_> = ids.iter().zip(keys.iter()).collect();
    sign_body(body, &pairs).unwrap()
}

#[test]
fn two_instances_on_one_database_append_in_turn_and_catch_up() {
    let Some(store) = stores::postgres("two_instances_on_one_database_append_in_turn_and_catch_up")
    else {
        return;
    };
    let a = store.open(config()).unwrap();
    let b = store.open(config()).unwrap();
    assert_eq!(a.size(), 1);
    assert_eq!(b.size(), 1);
    let registration = common::registration("zj-forestry-academy", "Academy", &["verifier"]);
    let receipt = a
        .submit(signed(
            registration.clone(),
            &[OPERATOR, "zj-forestry-academy"],
        ))
        .unwrap();
    assert_eq!(receipt.seq, 1);
    // B has not seen it; the same entry sent to B gets A's receipt.
    let again = b
        .submit(signed(registration, &[OPERATOR, "zj-forestry-academy"]))
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, 1);
    // B appends after catching up.
    let methodology = body(
        "meth-1",
        json!({"type": "register_methodology", "methodology": "wetland-sink",
               "name": "Wetland", "version": "1.0", "buffer_rate": "0.10"}),
    );
    let r = b.submit(signed(methodology, &[OPERATOR])).unwrap();
    assert_eq!(r.seq, 2);
    assert_eq!(b.size(), 3);
    assert_eq!(a.refresh().unwrap(), 3);
    assert_eq!(a.root(), b.root());
    let note_a = a.checkpoint().unwrap();
    let note_b = b.checkpoint().unwrap();
    assert_eq!(note_a, note_b);
    a.verify_full().unwrap();
}

/// The reference case on instance `a` (the whole market: registrations, issuance, acquisition,
/// resales, a retirement, a pledge).
fn reference_market(a: &ledger_core::ledger::Ledger) -> ledger_core::reference::ReferenceCase {
    use ledger_core::reference::{Expect, ReferenceCase};
    let case = ReferenceCase::new(LEDGER, OPERATOR, signing_key(OPERATOR));
    for step in case.steps() {
        let outcome = a.submit(step.submission);
        match step.expect {
            Expect::Accepted => {
                outcome.unwrap_or_else(|e| panic!("{}: {e}", step.label));
            }
            Expect::Refused(kind) => assert_eq!(outcome.unwrap_err().kind(), kind),
        }
    }
    case
}

fn available(ledger: &ledger_core::ledger::Ledger, holder: &str) -> rust_decimal::Decimal {
    use ledger_core::reference::BATCH;
    let holder = pid(holder);
    ledger.read(|s| {
        s.balance(&holder, &BATCH.parse().unwrap())
            .available
            .value()
    })
}

#[test]
fn two_instances_race_to_sell_the_same_sink_and_exactly_one_wins() {
    use ledger_core::reference::{BATCH, ENTERPRISE_A, ENTERPRISE_B, PLATFORM};
    let Some(store) = stores::postgres("two_instances_race_to_sell_the_same_sink") else {
        return;
    };
    let a = std::sync::Arc::new(store.open(config()).unwrap());
    let case = reference_market(&a);
    let b = std::sync::Arc::new(store.open(config()).unwrap());
    let held = available(&a, PLATFORM);
    assert!(held > rust_decimal::Decimal::ZERO);
    let created = case.at(20);
    // Rounds of two sales of everything the platform holds, one to each instance at once.
    for round in 0..5 {
        let held = available(&a, PLATFORM);
        if held.is_zero() {
            break;
        }
        let sale = |buyer: &str, n: &str| {
            case.sign(
                case.body(
                    &format!("race-{round}-{n}"),
                    &created,
                    json!({"type": "trade", "kind": "transfer", "seller": PLATFORM,
                           "buyer": buyer, "batch": BATCH, "quantity": held.to_string()}),
                ),
                &[PLATFORM, buyer],
            )
        };
        let (to_a, to_b) = (sale(ENTERPRISE_A, "a"), sale(ENTERPRISE_B, "b"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let race = |ledger: std::sync::Arc<ledger_core::ledger::Ledger>, s: Submission| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                ledger.submit(s)
            })
        };
        let (ra, rb) = (race(a.clone(), to_a), race(b.clone(), to_b));
        let outcomes = [ra.join().unwrap(), rb.join().unwrap()];
        let wins = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {outcomes:?}");
        let loser = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
        assert_eq!(loser.kind(), "insufficient-sink", "{loser}");
        a.refresh().unwrap();
        b.refresh().unwrap();
        assert_eq!(available(&a, PLATFORM), rust_decimal::Decimal::ZERO);
        assert_eq!(available(&b, PLATFORM), rust_decimal::Decimal::ZERO);
        // Give the platform sink again for the next round.
        let back = case.sign(
            case.body(
                &format!("race-{round}-back"),
                &created,
                json!({"type": "trade", "kind": "transfer", "seller": ENTERPRISE_A,
                       "buyer": PLATFORM, "batch": BATCH, "quantity": "1"}),
            ),
            &[ENTERPRISE_A, PLATFORM],
        );
        if available(&a, ENTERPRISE_A) >= rust_decimal::Decimal::ONE {
            b.submit(back).unwrap();
            a.refresh().unwrap();
        } else {
            break;
        }
    }
    assert_eq!(a.root(), b.root());
    a.verify_full().unwrap();
    b.verify_full().unwrap();
}

#[test]
fn concurrent_submitters_on_two_instances_keep_seq_gap_free() {
    use ledger_core::reference::{BATCH, PLATFORM};
    let Some(store) = stores::postgres("concurrent_submitters_on_two_instances") else {
        return;
    };
    let a = std::sync::Arc::new(store.open(config()).unwrap());
    let case = std::sync::Arc::new(reference_market(&a));
    let b = std::sync::Arc::new(store.open(config()).unwrap());
    let start = a.size();
    let created = case.at(20);
    // Four threads per instance, ten entries each, 1 t transfers from the platform to an enterprise and back.
    let mut threads = Vec::new();
    for t in 0..8 {
        let ledger = if t % 2 == 0 { a.clone() } else { b.clone() };
        let (case, created) = (case.clone(), created.clone());
        threads.push(std::thread::spawn(move || {
            let mut receipts = Vec::new();
            for i in 0..10 {
                let s = case.sign(
                    case.body(
                        &format!("load-{t}-{i}"),
                        &created,
                        json!({"type": "trade", "kind": "transfer", "seller": PLATFORM,
                               "buyer": "enterprise-a", "batch": BATCH, "quantity": "0.001"}),
                    ),
                    &[PLATFORM, "enterprise-a"],
                );
                receipts.push(ledger.submit(s).unwrap());
            }
            receipts
        }));
    }
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .map(|r| r.seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (start..start + 80).collect::<Vec<_>>());
    assert_eq!(a.refresh().unwrap(), start + 80);
    assert_eq!(b.refresh().unwrap(), start + 80);
    assert_eq!(a.root(), b.root());
    assert_eq!(a.read(|s| s.clone()), b.read(|s| s.clone()));
    let (mut export_a, mut export_b) = (Vec::new(), Vec::new());
    a.export(&mut export_a, None).unwrap();
    b.export(&mut export_b, None).unwrap();
    assert_eq!(export_a, export_b);
    b.verify_full().unwrap();
    // A third instance opened now starts from the same head without replaying.
    let c = store.open(config()).unwrap();
    assert_eq!(c.root(), a.root());
    assert_eq!(c.read(|s| s.clone()), a.read(|s| s.clone()));
}

/// Several instances started at once on an empty database: one creates the ledger (its
/// genesis entry), the others find it created and open it; the schema is migrated once.
#[test]
fn instances_started_at_once_on_an_empty_database_create_one_ledger() {
    let Some(cluster) = ledger_postgres::testing::TestCluster::shared("instances_started_at_once")
    else {
        return;
    };
    let url = cluster.database();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let store = ledger_postgres::PgStore::connect(&url)?;
                ledger_core::ledger::Ledger::open(Box::new(store), config())
                    .map_err(|e| ledger_core::store::StoreError::Io(e.to_string()))
            })
        })
        .collect();
    let ledgers: Vec<_> = starts
        .into_iter()
        .map(|s| s.join().unwrap().unwrap())
        .collect();
    for ledger in &ledgers {
        assert_eq!(ledger.refresh().unwrap(), 1, "one genesis entry");
        assert_eq!(ledger.root(), ledgers[0].root());
    }
}
