//! The reference case of 2022 — the Xiazhu Lake wetland (下渚湖湿地) — replayed in process on a
//! ledger in a temporary folder, with a short report. Figures the press did not publish (the
//! resales, the retirement, the pledge and its loans) are illustrative and labelled so.
//!
//! `cargo run --example reference_case`

use ledger_core::ledger::{Ledger, LedgerConfig};
use ledger_core::merkle;
use ledger_core::reference::{Expect, ReferenceCase};
use ledger_core::state::State;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = tempfile::tempdir()?;
    let operator_key = ledger_core::ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let config = LedgerConfig::new(
        "deqing.example/xiazhuhu".parse()?,
        "deqing-registry".parse()?,
        "德清县生态资源登记中心 (illustrative operator)".parse()?,
        operator_key.clone(),
    );
    let ledger = Ledger::open_dir(folder.path(), config)?;
    let case = ReferenceCase::new("deqing.example/xiazhuhu", "deqing-registry", operator_key);

    for step in case.registrations().into_iter().chain(case.market()) {
        let outcome = ledger.submit(step.submission);
        match (step.expect, outcome) {
            (Expect::Accepted, Ok(receipt)) => println!("  #{:<3} {}", receipt.seq, step.label),
            (Expect::Refused(kind), Err(error)) if error.kind() == kind => {
                println!("  refused {}: {error}", step.label)
            }
            (_, outcome) => return Err(format!("{}: unexpected {outcome:?}", step.label).into()),
        }
    }

    let batch = "XZH-2021".parse()?;
    let project = "XZH".parse()?;
    let pledge_id = "PL-2022-001".parse()?;
    ledger.read(|state| {
        if let Some(b) = state.batch(&batch) {
            println!(
                "\nbatch {}: issued {} t, buffer {} t, retired {} t, held {} t available + {} t pledged",
                b.id, b.issued, b.buffer, b.retired, b.available, b.pledged
            );
        }
        for proceeds in state.proceeds_of(&project) {
            println!(
                "restoration proceeds (生态反哺) of {}: {} {} (acquisition {}, eco-compensation {})",
                proceeds.project,
                proceeds.total(),
                proceeds.currency,
                proceeds.acquisition,
                proceeds.eco_compensation
            );
        }
        if let (Some(pledge), Some(price)) = (state.pledge(&pledge_id), state.price(&"BM-2022-06".parse().ok()?)) {
            let coverage = State::coverage(pledge, price.unit_price);
            println!(
                "pledge {}: limit {} CNY, outstanding {} CNY, collateral {} CNY, coverage {:?}",
                pledge.id, pledge.limit, pledge.outstanding, coverage.collateral_value, coverage.coverage_ratio
            );
        }
        Some(())
    });

    let note = ledger.checkpoint()?;
    println!("\ncheckpoint:\n{note}");
    let acquisition = ledger
        .read(|s| s.entry(&"T-2022-0001".parse().ok()?).ok().flatten())
        .ok_or("the acquisition is not in the ledger")?;
    let proof = ledger.inclusion_proof(acquisition.seq, None)?;
    let leaf = ledger.leaf(proof.seq)?;
    let path: Vec<merkle::Hash> = proof
        .proof
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out).map(|()| out)
        })
        .collect::<Result<_, _>>()?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(&leaf),
        proof.seq,
        ledger.size(),
        &path,
        &ledger.root(),
    )?;
    println!(
        "the acquisition (entry {}) is in the tree of {} entries: inclusion proof verified",
        proof.seq,
        ledger.size()
    );
    Ok(())
}
