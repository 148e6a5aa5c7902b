//! A bank checks the sink pledged to it from proofs alone, trusting neither the operator nor anyone
//! it did not choose.
//!
//! Three parties run in this one process, each seeing only what it would see over the wire:
//!
//! - the operator's ledger holds the reference case, signs checkpoints that commit to the market
//!   state, and hands out pledge bundles (as `GET /v1/pledges/{id}/bundle` does);
//! - a witness the bank chose (as `carbon-ledger witness` runs) follows the ledger: it fetches
//!   every new entry, replays it (signatures, the market's rules, the state root) and only then
//!   cosigns the checkpoint (C2SP tlog-witness `add-checkpoint`, `cosignature/v1`);
//! - the bank holds the operator's public key and the witness's verifier key, nothing else. It
//!   checks the bundle at quorum 1 and prints what is proved: the tonnes locked for it, the
//!   pledgor's balance that covers them, the loan's limit, outstanding and maturity, the price in
//!   force and the coverage at that price (as `carbon-ledger verify-pledge --witness … --quorum 1`
//!   does).
//!
//! Then it shows what the bank refuses: a bundle whose state row was altered, one without the
//! quorum, and a checkpoint the operator signed for a forked history, which the witness refuses
//! to cosign.
//!
//! `cargo run --example bank_verification`

use ledger_core::checkpoint;
use ledger_core::ed25519_dalek::SigningKey;
use ledger_core::ids::Origin;
use ledger_core::ledger::Replica;
use ledger_core::ledger::{Ledger, LedgerConfig};
use ledger_core::reference::{Expect, ReferenceCase};
use ledger_core::state::RowProof;
use ledger_core::store::MemoryStore;
use ledger_core::verify::{verify_pledge_bundle_with, BankPolicy, PledgeBundle};
use ledger_core::witness::{AddCheckpoint, Witness};

const ORIGIN: &str = "deqing.example/xiazhuhu";
const PLEDGE: &str = "PL-2022-001";

type Error = Box<dyn std::error::Error>;

/// The operator's ledger, holding the reference case.
fn operator_ledger(operator_key: &SigningKey) -> Result<Ledger, Error> {
    let ledger = Ledger::in_memory(LedgerConfig::new(
        ORIGIN.parse()?,
        "deqing-registry".parse()?,
        "德清县生态资源登记中心 (illustrative operator)".parse()?,
        operator_key.clone(),
    ))?;
    let case = ReferenceCase::new(ORIGIN, "deqing-registry", operator_key.clone());
    for step in case.registrations().into_iter().chain(case.market()) {
        if step.expect == Expect::Accepted {
            ledger.submit(step.submission)?;
        }
    }
    Ok(ledger)
}

/// The ledger submits its latest checkpoint to the witness, with the consistency proof from the
/// size the witness last cosigned (0 the first time), and appends the cosignature it gets back to
/// the note. The witness fetches the entries it has not seen from the ledger and replays them.
fn submit_to_witness(ledger: &Ledger, witness: &Witness, note: &str) -> Result<String, Error> {
    let operator = ledger.operator_key();
    let size = checkpoint::open_checkpoint(note, ORIGIN, &operator)?.size;
    let old_size = match witness.latest(&ledger_core::witness::origin_hash(ORIGIN))? {
        Some(kept) => checkpoint::open_checkpoint(&kept, ORIGIN, &operator)?.size,
        None => 0,
    };
    let mut proof = Vec::new();
    if old_size > 0 {
        for hash in ledger.consistency_proof(old_size, Some(size))?.proof {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(hash, &mut bytes)?;
            proof.push(bytes);
        }
    }
    let request = AddCheckpoint {
        old_size,
        proof,
        note: note.to_owned(),
    };
    let mut fetch = |_: &Origin, from: u64, to: u64| {
        let count = usize::try_from(to - from).map_err(|e| e.to_string())?;
        Ok(ledger
            .leaves(from, count)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(_, leaf)| leaf)
            .collect())
    };
    let now = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .try_into()?;
    let cosignature = witness.add_checkpoint(&request.body(), &mut fetch, now)?;
    Ok(format!("{note}{cosignature}"))
}

fn main() -> Result<(), Error> {
    // The operator.
    let operator_key = SigningKey::generate(&mut rand_core::OsRng);
    let ledger = operator_ledger(&operator_key)?;

    // The witness the bank chose, with its own key and its own copy of the log.
    let mut witness = Witness::new(
        "witness.two-mountains-bank.example/w1",
        SigningKey::generate(&mut rand_core::OsRng),
    )?;
    witness.add_log(Replica::open(
        Box::new(MemoryStore::new()),
        ORIGIN.parse()?,
        operator_key.verifying_key(),
    )?);
    let witness_vkey = witness.verifier_key();
    println!("the bank's witness publishes its verifier key: {witness_vkey}");

    // The operator builds the bundle; its checkpoint goes to the witness, which replays the log
    // and cosigns.
    let mut bundle = ledger.pledge_bundle(&PLEDGE.parse()?, None)?;
    bundle.checkpoint = submit_to_witness(&ledger, &witness, &bundle.checkpoint)?;
    let bundle_text = serde_json::to_string_pretty(&bundle)?;
    println!(
        "bundle of {} entries and 4 state rows under the cosigned checkpoint:\n{}",
        bundle.entries.len(),
        bundle.checkpoint
    );

    // The bank: the bundle's bytes, the operator's public key and its witness's key, nothing else.
    let operator_public = operator_key.verifying_key();
    let policy = BankPolicy {
        witnesses: vec![checkpoint::parse_cosigner_key(&witness_vkey)?],
        quorum: 1,
        accepted: None,
    };
    let received: PledgeBundle = serde_json::from_str(&bundle_text)?;
    let finding = verify_pledge_bundle_with(&received, &operator_public, &policy)?;
    println!(
        "VERIFIED at quorum 1, cosigned by {}:\n{}",
        finding.cosigned_by.join(", "),
        finding.describe()
    );

    // An altered state row: the outstanding of the pledge lowered in the bundle.
    let mut altered: PledgeBundle = serde_json::from_str(&bundle_text)?;
    let state = finding.state.as_ref().ok_or("the bundle proves no state")?;
    let Some(RowProof::Present(row)) = altered.state.as_mut().map(|s| &mut s.pledge) else {
        return Err("the bundle carries no pledge row".into());
    };
    let outstanding = format!("\"outstanding\":\"{}\"", state.outstanding);
    assert!(row.row.contains(&outstanding), "{}", row.row);
    row.row = row.row.replace(&outstanding, "\"outstanding\":\"0.00\"");
    match verify_pledge_bundle_with(&altered, &operator_public, &policy) {
        Ok(_) => return Err("a bundle with an altered state row verified".into()),
        Err(error) => println!("altered state row refused: {error}"),
    }

    // The same bundle without its cosignature: the quorum is not met.
    let mut uncosigned: PledgeBundle = serde_json::from_str(&bundle_text)?;
    uncosigned.checkpoint = ledger.pledge_bundle(&PLEDGE.parse()?, None)?.checkpoint;
    match verify_pledge_bundle_with(&uncosigned, &operator_public, &policy) {
        Ok(_) => return Err("a bundle without the quorum verified".into()),
        Err(error) => println!("bundle without the quorum refused: {error}"),
    }

    // A split view: the operator keeps a second ledger under the same origin and key (the same
    // entries, sequenced at other times, so another history of the same size) and submits its
    // checkpoint. The witness has cosigned the first history and refuses one that does not
    // extend it; a bank requiring the witness never sees the fork cosigned.
    let fork = operator_ledger(&operator_key)?;
    let forked_note = fork.checkpoint()?;
    match submit_to_witness(&fork, &witness, &forked_note) {
        Ok(_) => return Err("the witness cosigned a forked history".into()),
        Err(error) => println!("forked checkpoint refused by the witness: {error}"),
    }
    Ok(())
}
