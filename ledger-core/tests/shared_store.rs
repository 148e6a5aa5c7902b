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
