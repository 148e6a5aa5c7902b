//! A bank checks the sink pledged to it, offline, from proofs alone.
//!
//! The operator's side builds the reference case and hands out a pledge bundle (as
//! `GET /v1/pledges/{id}/bundle` does). The bank's side trusts one thing, the operator's public
//! key obtained out of band, and checks: the checkpoint's signature, every inclusion proof, the
//! signatures of the pledgor and the bank, the issuance behind the batch and the verifier's
//! monitoring report behind that. Then it shows that a forged bundle fails.
//!
//! `cargo run --example bank_verification`

use ledger_core::ledger::{Ledger, LedgerConfig};
use ledger_core::reference::{Expect, ReferenceCase};
use ledger_core::verify::{verify_pledge_bundle, PledgeBundle};

/// The operator's side: a ledger with the reference case, and the bundle text it serves.
fn operator_side() -> Result<(String, [u8; 32]), Box<dyn std::error::Error>> {
    let operator_key = ledger_core::ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let ledger = Ledger::in_memory(LedgerConfig::new(
        "deqing.example/xiazhuhu".parse()?,
        "deqing-registry".parse()?,
        "德清县生态资源登记中心 (illustrative operator)".parse()?,
        operator_key.clone(),
    ))?;
    let case = ReferenceCase::new("deqing.example/xiazhuhu", "deqing-registry", operator_key);
    for step in case.registrations().into_iter().chain(case.market()) {
        if step.expect == Expect::Accepted {
            ledger.submit(step.submission)?;
        }
    }
    let bundle = ledger.pledge_bundle(&"PL-2022-001".parse()?, None)?;
    Ok((
        serde_json::to_string_pretty(&bundle)?,
        ledger.operator_key().to_bytes(),
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (bundle_text, operator_public) = operator_side()?;

    // The bank's side: nothing but the bundle's bytes and the operator's public key.
    let operator_key = ledger_core::ed25519_dalek::VerifyingKey::from_bytes(&operator_public)?;
    let bundle: PledgeBundle = serde_json::from_str(&bundle_text)?;
    println!(
        "bundle of {} entries under checkpoint:\n{}",
        bundle.entries.len(),
        bundle.checkpoint
    );
    let finding = verify_pledge_bundle(&bundle, &operator_key)?;
    println!(
        "VERIFIED: pledge {} (entry {}) locks {} t of batch {} (vintage {}, project {}) held by {} in favour of {};\n\
         facility limit {} {} at {} with haircut {}; the batch issued {} t from report {} ({} t verified by {}).",
        finding.pledge, finding.pledge_seq, finding.quantity, finding.batch, finding.vintage,
        finding.project, finding.pledgor, finding.bank, finding.limit, finding.currency,
        finding.price_ref, finding.haircut, finding.batch_issued, finding.report,
        finding.report_verified, finding.verifier
    );

    // A forged bundle: someone raises the locked quantity in the pledge entry.
    let forged_text = bundle_text.replace(r#"\"quantity\":\"4000\""#, r#"\"quantity\":\"9000\""#);
    assert_ne!(
        forged_text, bundle_text,
        "the pledge's quantity was not found to forge"
    );
    let forged: PledgeBundle = serde_json::from_str(&forged_text)?;
    match verify_pledge_bundle(&forged, &operator_key) {
        Ok(_) => return Err("a forged bundle verified".into()),
        Err(error) => println!("forged bundle refused: {error}"),
    }
    Ok(())
}
