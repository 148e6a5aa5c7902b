//! The rules a bank relies on, through the library: maturity, enforcement, prices and
//! monitoring in time, the genesis entry, resubmission, restoration proceeds, and signed entries
//! that expire. The ledger runs on a clock the tests move forward, so that pledges mature.

mod common;

use common::stores;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ledger_core::entry::Submission;
use ledger_core::ids::{ParticipantId, Timestamp};
use ledger_core::ledger::{Clock, Ledger, LedgerConfig, LedgerError, Receipt};
use ledger_core::num::Money;
use ledger_core::reference::{
    Expect, ReferenceCase, BANK, BATCH, ENTERPRISE_A, ENTERPRISE_B, PLATFORM, PLEDGE, PRICE,
    PRICING, PROJECT, VERIFIER, WETLAND,
};
use ledger_core::state::PledgeStatus;
use serde_json::{json, Value};

const ORIGIN: &str = "rules.example/xiazhuhu";
const OPERATOR: &str = "deqing-registry";

/// A ledger holding the reference case, on a clock that starts now and that the test moves.
struct World {
    ledger: Ledger,
    case: ReferenceCase,
    /// Seconds the clock is ahead of the system's.
    ahead: Arc<AtomicI64>,
    next: i64,
}

impl World {
    fn new(store: &stores::TestStore) -> Self {
        let operator_key = SigningKey::from_bytes(&[3; 32]);
        let ahead = Arc::new(AtomicI64::new(0));
        let offset = Arc::clone(&ahead);
        let mut config = LedgerConfig::new(
            ORIGIN.parse().unwrap(),
            OPERATOR.parse().unwrap(),
            "Registry".parse().unwrap(),
            operator_key.clone(),
        );
        config.clock = Clock::from_fn(move || {
            time::OffsetDateTime::now_utc()
                + time::Duration::seconds(offset.load(Ordering::Relaxed))
        });
        let ledger = store.open(config).unwrap();
        let case = ReferenceCase::new(ORIGIN, OPERATOR, operator_key);
        for step in case.steps() {
            let outcome = ledger.submit(step.submission);
            match step.expect {
                Expect::Accepted => {
                    outcome.unwrap_or_else(|e| panic!("{}: {e}", step.label));
                }
                Expect::Refused(kind) => assert_eq!(outcome.unwrap_err().kind(), kind),
            }
        }
        Self {
            ledger,
            case,
            ahead,
            next: 0,
        }
    }

    /// Moves the ledger's clock `days` forward.
    fn days_pass(&self, days: i64) {
        self.ahead.fetch_add(days * 86_400, Ordering::Relaxed);
    }

    /// Now, on the ledger's clock.
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
            + time::Duration::seconds(self.ahead.load(Ordering::Relaxed))
    }

    /// The date `days` from today on the ledger's clock.
    fn date_in(&self, days: i64) -> String {
        Timestamp::from_instant(self.now())
            .date()
            .plus_days(days)
            .unwrap()
            .to_string()
    }

    /// An entry signed now (on the ledger's clock), with a fresh id.
    fn signed(&mut self, fields: Value, signers: &[&str]) -> Submission {
        self.next += 1;
        let id = format!("R-{}", self.next);
        let created = Timestamp::from_instant(self.now()).to_string();
        self.case
            .sign(self.case.body(&id, &created, fields), signers)
    }

    fn submit(&mut self, fields: Value, signers: &[&str]) -> Result<Receipt, LedgerError> {
        let submission = self.signed(fields, signers);
        self.ledger.submit(submission)
    }

    fn accepted(&mut self, fields: Value, signers: &[&str]) -> Receipt {
        let label = fields.to_string();
        self.submit(fields, signers)
            .unwrap_or_else(|e| panic!("{label}: {e}"))
    }

    fn refused(&mut self, fields: Value, signers: &[&str]) -> LedgerError {
        let size = self.ledger.size();
        let error = self.submit(fields, signers).unwrap_err();
        assert_eq!(self.ledger.size(), size, "a refused entry was appended");
        error
    }

    fn pledge(&self, id: &str) -> ledger_core::state::PledgeRecord {
        self.ledger
            .read(|s| s.pledge(&id.parse().unwrap()).cloned())
            .unwrap()
    }

    fn balance(&self, holder: &str) -> ledger_core::state::Balance {
        let holder: ParticipantId = holder.parse().unwrap();
        self.ledger
            .read(|s| s.balance(&holder, &BATCH.parse().unwrap()))
    }
}

/// A pledge of `quantity` t of the platform's sink to the bank, at the benchmark price with a
/// 30 % haircut.
fn pledge_fields(id: &str, quantity: &str, limit: &str, maturity: Option<&str>) -> Value {
    let mut fields = json!({"type": "pledge", "pledge": id, "pledgor": PLATFORM, "bank": BANK,
        "batch": BATCH, "quantity": quantity, "price_ref": PRICE, "haircut": "0.30",
        "limit": limit, "currency": "CNY"});
    if let Some(date) = maturity {
        fields["maturity"] = json!(date);
    }
    fields
}

#[test]
fn a_pledge_cannot_be_made_with_its_maturity_already_past() {
    for store in stores::each_store("a_pledge_cannot_be_made_with_its_maturity_already_past") {
        eprintln!("a_pledge_cannot_be_made_with_its_maturity_already_past: {store}");
        let mut w = World::new(&store);
        let yesterday = w.date_in(-1);
        let error = w.refused(
            pledge_fields("PL-OLD", "100", "4118.10", Some(&yesterday)),
            &[PLATFORM, BANK],
        );
        assert_eq!(error.kind(), "maturity-passed");
        assert!(error.to_string().contains("already past"), "{error}");
        // Maturing today is allowed.
        let today = w.date_in(0);
        w.accepted(
            pledge_fields("PL-TODAY", "100", "4118.10", Some(&today)),
            &[PLATFORM, BANK],
        );
    }
}

#[test]
fn no_drawdown_after_maturity_but_on_the_day_itself() {
    for store in stores::each_store("no_drawdown_after_maturity_but_on_the_day_itself") {
        eprintln!("no_drawdown_after_maturity_but_on_the_day_itself: {store}");
        let mut w = World::new(&store);
        let in_ten_days = w.date_in(10);
        w.accepted(
            pledge_fields("PL-M", "100", "4118.10", Some(&in_ten_days)),
            &[PLATFORM, BANK],
        );
        w.days_pass(10);
        w.accepted(
            json!({"type": "drawdown", "pledge": "PL-M", "amount": "100.00"}),
            &[BANK, PLATFORM],
        );
        w.days_pass(1);
        let error = w.refused(
            json!({"type": "drawdown", "pledge": "PL-M", "amount": "100.00"}),
            &[BANK, PLATFORM],
        );
        assert_eq!(error.kind(), "pledge-matured");
        // Repaying after maturity is still the bank's to record.
        w.accepted(
            json!({"type": "repay", "pledge": "PL-M", "amount": "100.00"}),
            &[BANK],
        );
    }
}

#[test]
fn the_bank_alone_enforces_only_a_loan_in_default() {
    for store in stores::each_store("the_bank_alone_enforces_only_a_loan_in_default") {
        eprintln!("the_bank_alone_enforces_only_a_loan_in_default: {store}");
        let mut w = World::new(&store);
        // The reference pledge matures in a year with 164,724.00 outstanding.
        let before = w.pledge(PLEDGE);
        assert_eq!(before.outstanding, "164724.00".parse().unwrap());
        let error = w.refused(json!({"type": "enforce_pledge", "pledge": PLEDGE}), &[BANK]);
        assert_eq!(error.kind(), "not-in-default");
        assert!(error.to_string().contains(PLATFORM), "{error}");

        // After maturity, with money outstanding, it is in default: the bank alone enforces.
        w.days_pass(366);
        let platform_before = w.balance(PLATFORM);
        let bank_before = w.balance(BANK);
        w.accepted(json!({"type": "enforce_pledge", "pledge": PLEDGE}), &[BANK]);
        let after = w.pledge(PLEDGE);
        assert_eq!(after.status, PledgeStatus::Enforced);
        assert_eq!(after.outstanding, Money::zero());
        assert_eq!(after.settled, Some("164724.00".parse().unwrap()));
        // The locked tonnes moved to the bank.
        let four_thousand: ledger_core::num::Tonnes = "4000".parse().unwrap();
        assert_eq!(
            w.balance(PLATFORM).pledged,
            platform_before.pledged - four_thousand
        );
        assert_eq!(w.balance(PLATFORM).available, platform_before.available);
        assert_eq!(
            w.balance(BANK).available,
            bank_before.available + four_thousand
        );
        // The loan is closed: nothing to repay.
        let error = w.refused(
            json!({"type": "repay", "pledge": PLEDGE, "amount": "1.00"}),
            &[BANK],
        );
        assert_eq!(error.kind(), "pledge-closed");
        w.ledger.read(|s| s.check_invariants()).unwrap();
    }
}

#[test]
fn before_maturity_enforcement_is_a_surrender_the_pledgor_signs_too() {
    for store in
        stores::each_store("before_maturity_enforcement_is_a_surrender_the_pledgor_signs_too")
    {
        eprintln!("before_maturity_enforcement_is_a_surrender_the_pledgor_signs_too: {store}");
        let mut w = World::new(&store);
        w.accepted(
            json!({"type": "enforce_pledge", "pledge": PLEDGE}),
            &[BANK, PLATFORM],
        );
        let after = w.pledge(PLEDGE);
        assert_eq!(after.status, PledgeStatus::Enforced);
        assert_eq!(after.settled, Some("164724.00".parse().unwrap()));
        assert_eq!(after.outstanding, Money::zero());
        // A pledge without maturity is never in default: only a surrender closes it that way.
        w.accepted(
            pledge_fields("PL-N", "100", "4118.10", None),
            &[PLATFORM, BANK],
        );
        w.accepted(
            json!({"type": "drawdown", "pledge": "PL-N", "amount": "10.00"}),
            &[BANK, PLATFORM],
        );
        w.days_pass(3650);
        let error = w.refused(json!({"type": "enforce_pledge", "pledge": "PL-N"}), &[BANK]);
        assert_eq!(error.kind(), "not-in-default");
        // Signed by someone else: wrong signers, whoever they are.
        let error = w.refused(
            json!({"type": "enforce_pledge", "pledge": "PL-N"}),
            &[BANK, ENTERPRISE_A],
        );
        assert_eq!(error.kind(), "wrong-signers");
    }
}

#[test]
fn a_price_is_in_force_only_from_its_effective_time() {
    for store in stores::each_store("a_price_is_in_force_only_from_its_effective_time") {
        eprintln!("a_price_is_in_force_only_from_its_effective_time: {store}");
        let mut w = World::new(&store);
        let next_week = Timestamp::from_instant(w.now() + time::Duration::days(7)).to_string();
        w.accepted(
            json!({"type": "publish_price", "price": "BM-NEXT", "basis": "benchmark",
               "unit_price": "70.00", "currency": "CNY", "effective_at": next_week}),
            &[PRICING],
        );
        let now = Timestamp::from_instant(w.now());
        let in_force = w.ledger.read(|s| {
            s.price_in_force(&"benchmark".parse().unwrap(), &now)
                .map(|p| p.id.to_string())
        });
        assert_eq!(in_force.as_deref(), Some(PRICE));
        // Neither a trade nor a pledge may cite it yet.
        let error = w.refused(
            json!({"type": "trade", "kind": "eco_compensation", "seller": PLATFORM,
               "buyer": ENTERPRISE_A, "batch": BATCH, "quantity": "10", "unit_price": "70.00",
               "currency": "CNY", "amount": "700.00", "price_ref": "BM-NEXT"}),
            &[PLATFORM, ENTERPRISE_A],
        );
        assert_eq!(error.kind(), "price-not-yet-effective");
        let mut pledge = pledge_fields("PL-P", "100", "4900.00", None);
        pledge["price_ref"] = json!("BM-NEXT");
        let error = w.refused(pledge, &[PLATFORM, BANK]);
        assert_eq!(error.kind(), "price-not-yet-effective");
        // A week later it is the price in force, and may be cited.
        w.days_pass(8);
        let now = Timestamp::from_instant(w.now());
        let in_force = w.ledger.read(|s| {
            s.price_in_force(&"benchmark".parse().unwrap(), &now)
                .map(|p| p.id.to_string())
        });
        assert_eq!(in_force.as_deref(), Some("BM-NEXT"));
        let mut pledge = pledge_fields("PL-P2", "100", "4900.00", None);
        pledge["price_ref"] = json!("BM-NEXT");
        w.accepted(pledge, &[PLATFORM, BANK]);
    }
}

#[test]
fn a_monitoring_period_must_be_over() {
    for store in stores::each_store("a_monitoring_period_must_be_over") {
        eprintln!("a_monitoring_period_must_be_over: {store}");
        let mut w = World::new(&store);
        let error = w.refused(
            json!({"type": "record_monitoring", "report": "XZH-MR-2030", "project": PROJECT,
               "period_start": "2030-01-01", "period_end": "2030-12-31", "quantity": "30600",
               "evidence_sha256": "ab".repeat(32)}),
            &[VERIFIER],
        );
        assert_eq!(error.kind(), "period-not-ended");
        // Nor one that ends today: its last day is not over.
        let today = w.date_in(0);
        let error = w.refused(
            json!({"type": "record_monitoring", "report": "XZH-MR-NOW", "project": PROJECT,
               "period_start": "2025-01-01", "period_end": today, "quantity": "1",
               "evidence_sha256": "ab".repeat(32)}),
            &[VERIFIER],
        );
        assert_eq!(error.kind(), "period-not-ended");
        let yesterday = w.date_in(-1);
        w.accepted(
            json!({"type": "record_monitoring", "report": "XZH-MR-DONE", "project": PROJECT,
               "period_start": "2025-01-01", "period_end": yesterday, "quantity": "1",
               "evidence_sha256": "ab".repeat(32)}),
            &[VERIFIER],
        );
    }
}

#[test]
fn the_operator_holds_the_operator_role_and_no_other() {
    use ledger_core::state::{ApplyError, Context, Signers, State};
    let case = ReferenceCase::new(ORIGIN, OPERATOR, SigningKey::from_bytes(&[3; 32]));
    let key = ledger_core::ids::PublicKey::from(case.key(OPERATOR).verifying_key()).to_string();
    let genesis = |roles: Value| {
        case.body(
            "genesis",
            &case.at(0),
            json!({"type": "register_participant", "participant": OPERATOR, "name": "Registry",
                   "roles": roles, "public_key": key}),
        )
    };
    let ctx = Context {
        seq: 0,
        accepted_at: Timestamp::now(),
        signers: Signers::default().with_new_key(),
        body_digest: [0; 32],
    };
    let mut state = State::new();
    let error = state
        .apply(&ctx, &genesis(json!(["operator", "verifier", "proponent"])))
        .unwrap_err();
    assert!(
        matches!(&error, ApplyError::Rule(e) if e.kind() == "genesis-roles"),
        "{error}"
    );
    assert_eq!(state, State::new());
    state.apply(&ctx, &genesis(json!(["operator"]))).unwrap();
}

#[test]
fn the_same_signatures_in_another_order_are_the_same_entry() {
    for store in stores::each_store("the_same_signatures_in_another_order_are_the_same_entry") {
        eprintln!("the_same_signatures_in_another_order_are_the_same_entry: {store}");
        let mut w = World::new(&store);
        let submission = w.signed(
            json!({"type": "trade", "kind": "transfer", "seller": ENTERPRISE_B,
               "buyer": ENTERPRISE_A, "batch": BATCH, "quantity": "1"}),
            &[ENTERPRISE_B, ENTERPRISE_A],
        );
        let first = w.ledger.submit(submission.clone()).unwrap();
        let mut reordered = submission;
        reordered.signatures.reverse();
        let again = w.ledger.submit(reordered).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.seq, first.seq);
        assert_eq!(again.leaf_hash, first.leaf_hash);
    }
}

#[test]
fn restoration_proceeds_count_money_reaching_the_wetland_once() {
    for store in stores::each_store("restoration_proceeds_count_money_reaching_the_wetland_once") {
        eprintln!("restoration_proceeds_count_money_reaching_the_wetland_once: {store}");
        let mut w = World::new(&store);
        let proceeds = |w: &World| {
            w.ledger.read(|s| {
                s.proceeds_of(&PROJECT.parse().unwrap())
                    .map(|p| (p.acquisition, p.eco_compensation, p.trades))
                    .next()
                    .unwrap()
            })
        };
        // The reference case: the acquisition from the proponent, and two eco-compensation sales by
        // the platform.
        let start = proceeds(&w);
        assert_eq!(
            start,
            (
                "588300.00".parse().unwrap(),
                "300000.00".parse().unwrap(),
                3
            )
        );
        // A resale between two enterprises is not restoration money.
        w.accepted(
            json!({"type": "trade", "kind": "eco_compensation", "seller": ENTERPRISE_A,
               "buyer": ENTERPRISE_B, "batch": BATCH, "quantity": "100", "unit_price": "65.00",
               "currency": "CNY", "amount": "6500.00"}),
            &[ENTERPRISE_A, ENTERPRISE_B],
        );
        assert_eq!(proceeds(&w), start);
        // An eco-compensation bought straight from the proponent is.
        w.accepted(
            json!({"type": "trade", "kind": "eco_compensation", "seller": WETLAND,
               "buyer": ENTERPRISE_B, "batch": BATCH, "quantity": "10", "unit_price": "60.00",
               "currency": "CNY", "amount": "600.00"}),
            &[WETLAND, ENTERPRISE_B],
        );
        let (acquisition, eco, trades) = proceeds(&w);
        assert_eq!(acquisition, start.0);
        assert_eq!(eco, start.1 + "600.00".parse().unwrap());
        assert_eq!(trades, start.2 + 1);
    }
}

#[test]
fn a_signed_entry_expires_but_its_receipt_does_not() {
    for store in stores::each_store("a_signed_entry_expires_but_its_receipt_does_not") {
        eprintln!("a_signed_entry_expires_but_its_receipt_does_not: {store}");
        let mut w = World::new(&store);
        let submission = w.signed(
            json!({"type": "trade", "kind": "transfer", "seller": ENTERPRISE_B,
               "buyer": ENTERPRISE_A, "batch": BATCH, "quantity": "1"}),
            &[ENTERPRISE_B, ENTERPRISE_A],
        );
        let late = w.signed(
            json!({"type": "trade", "kind": "transfer", "seller": ENTERPRISE_B,
               "buyer": ENTERPRISE_A, "batch": BATCH, "quantity": "2"}),
            &[ENTERPRISE_B, ENTERPRISE_A],
        );
        let first = w.ledger.submit(submission.clone()).unwrap();
        w.days_pass(2);
        // Signed two days ago and arriving only now: expired.
        let size = w.ledger.size();
        let error = w.ledger.submit(late).unwrap_err();
        assert_eq!(error.kind(), "entry-expired");
        assert!(error.to_string().contains("24 h"), "{error}");
        assert_eq!(w.ledger.size(), size);
        // The entry accepted in time still gets its receipt.
        let again = w.ledger.submit(submission).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.seq, first.seq);
    }
}

/// Replay and restore refuse a history whose operator gave itself more roles: such an operator
/// could verify, and issue to itself, alone.
#[test]
fn an_export_whose_operator_holds_other_roles_is_refused() {
    use ledger_core::checkpoint::{sign_checkpoint, Checkpoint};
    use ledger_core::wire::{Envelope, GENESIS_PREV};
    let case = ReferenceCase::new(ORIGIN, OPERATOR, SigningKey::from_bytes(&[3; 32]));
    let operator_key = case.key(OPERATOR).clone();
    let key = ledger_core::ids::PublicKey::from(operator_key.verifying_key()).to_string();
    let body = case.body(
        "genesis",
        &case.at(0),
        json!({"type": "register_participant", "participant": OPERATOR, "name": "Registry",
               "roles": ["operator", "verifier", "proponent"], "public_key": key}),
    );
    let leaf = Envelope {
        seq: 0,
        prev: GENESIS_PREV.to_owned(),
        accepted_at: case.at(0).parse().unwrap(),
        entry: case.sign(body, &[OPERATOR]),
    }
    .leaf_bytes()
    .unwrap();
    let root = ledger_core::merkle::leaf_hash(&leaf);
    let note = sign_checkpoint(&Checkpoint::new(ORIGIN, 1, root), ORIGIN, &operator_key).unwrap();
    let mut export = leaf.clone();
    export.push(b'\n');
    let error =
        ledger_core::verify::verify_export(&export[..], &note, &operator_key.verifying_key())
            .unwrap_err();
    assert_eq!((error.seq, error.kind()), (0, "genesis-roles"), "{error}");
    let restored = Ledger::restore(
        Box::new(ledger_core::store::MemoryStore::new()),
        LedgerConfig::new(
            ORIGIN.parse().unwrap(),
            OPERATOR.parse().unwrap(),
            "Registry".parse().unwrap(),
            operator_key,
        ),
        &export[..],
        &note,
    );
    assert_eq!(restored.unwrap_err().kind(), "integrity");
}
