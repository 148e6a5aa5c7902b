//! Embedding the ledger in a Rust program: no server, a sync API that is `Send + Sync`.
//!
//! Opens (or creates) a ledger in a folder, registers the reference case's participants and
//! market entries, submits from several threads at once (they share durable writes), queries
//! balances, and writes the export and a checkpoint — a backup a bank can verify offline.
//!
//! `cargo run --example embed -- [FOLDER]` (a temporary folder by default)

use std::sync::Arc;

use ledger_core::ledger::{Ledger, LedgerConfig};
use ledger_core::reference::{Expect, ReferenceCase};
use ledger_core::verify::verify_export;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temporary = tempfile::tempdir()?;
    let folder = std::env::args()
        .nth(1)
        .map_or_else(|| temporary.path().to_owned(), Into::into);

    // The operator's key signs the first entry and every checkpoint; a real program keeps it in
    // a key file or a key-management system.
    let operator_key = ledger_core::ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let config = LedgerConfig::new(
        "embedded.example/wetland".parse()?,
        "registry".parse()?,
        "Embedded registry".parse()?,
        operator_key.clone(),
    );
    let ledger = Arc::new(Ledger::open_dir(&folder, config)?);
    println!(
        "ledger {} in {}: {} entries",
        ledger.origin(),
        folder.display(),
        ledger.size()
    );

    let case = ReferenceCase::new("embedded.example/wetland", "registry", operator_key);
    for step in case.registrations().into_iter().chain(case.market()) {
        if step.expect == Expect::Accepted {
            ledger.submit(step.submission)?; // durable when it returns
        }
    }

    // Eight threads transfer 100 t each from the platform to enterprise-b: the sequencer groups
    // them into shared durable writes, and each thread gets its own receipt.
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            let id = format!("T-embed-{i}");
            let body = case.body(
                &id,
                "2022-09-01T10:00:00Z",
                json!({"type": "trade", "kind": "transfer", "seller": "two-mountains-bank",
                       "buyer": "enterprise-b", "batch": "XZH-2021", "quantity": "100"}),
            );
            let submission = case.sign(body, &["two-mountains-bank", "enterprise-b"]);
            std::thread::spawn(move || ledger.submit(submission))
        })
        .collect();
    for worker in workers {
        let receipt = worker.join().map_err(|_| "a submitter panicked")??;
        println!("  {} accepted as entry {}", receipt.id, receipt.seq);
    }

    let holder = "enterprise-b".parse()?;
    ledger.read(|state| {
        for (batch, balance) in state.balances_of(&holder) {
            println!(
                "enterprise-b holds {} t of {batch} available",
                balance.available
            );
        }
    });

    // A backup: the checkpoint, then the export (one line per leaf), verified offline.
    let note = ledger.checkpoint()?;
    let mut export = Vec::new();
    ledger.export(&mut export, None)?;
    let report = verify_export(export.as_slice(), &note, &ledger.operator_key())?;
    println!(
        "export of {} entries verified against the checkpoint ({} signatures checked)",
        report.entries, report.signatures
    );
    Ok(())
}
