//! Banks verify without trusting the operator: the state committed at each checkpoint, the
//! validating witness, and the bank's check of a bundle at a quorum of witnesses — with the ways
//! an operator showing one history to the witnesses and another to a bank is caught.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ledger_core::checkpoint::{self, Checkpoint};
use ledger_core::ledger::{Ledger, LedgerConfig, Replica};
use ledger_core::merkle;
use ledger_core::reference::{Expect, ReferenceCase, BANK, BATCH, ENTERPRISE_A, PLATFORM, PLEDGE};
use ledger_core::state::{verify_row_proof, RowProof, StateCommitment, StateRow};
use ledger_core::store::{Append, MemoryStore, Store, StoreNodes};
use ledger_core::verify::{verify_pledge_bundle_with, BankPolicy, PledgeBundle};
use ledger_core::witness::{AddCheckpoint, Witness, WitnessError};
use serde_json::json;

const ORIGIN: &str = "witness.example/xiazhuhu";
const OPERATOR: &str = "deqing-registry";

fn operator_key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

fn config() -> LedgerConfig {
    LedgerConfig::new(
        ORIGIN.parse().unwrap(),
        OPERATOR.parse().unwrap(),
        "Registry".parse().unwrap(),
        operator_key(),
    )
}

/// A ledger with the reference case, in memory, and the case.
fn reference_ledger() -> (Ledger, ReferenceCase) {
    let ledger = Ledger::in_memory(config()).unwrap();
    let case = ReferenceCase::new(ORIGIN, OPERATOR, operator_key());
    for step in case.steps() {
        if step.expect == Expect::Accepted {
            ledger.submit(step.submission).unwrap();
        }
    }
    (ledger, case)
}

/// A witness of `origin` named `name`, on a store in memory.
fn witness(name: &str, seed: u8) -> Witness {
    let mut witness = Witness::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap();
    let replica = Replica::open(
        Box::new(MemoryStore::new()),
        ORIGIN.parse().unwrap(),
        operator_key().verifying_key(),
    )
    .unwrap();
    witness.add_log(replica);
    witness
}

/// Asks the witness to cosign the ledger's latest checkpoint, from `old` (the size it last
/// cosigned), with the entries fetched from the ledger.
fn cosign(
    witness: &Witness,
    ledger: &Ledger,
    note: &str,
    old: u64,
) -> Result<String, WitnessError> {
    let size = checkpoint_of(note).size;
    let proof = if old == 0 {
        Vec::new()
    } else {
        ledger
            .consistency_proof(old, Some(size))
            .unwrap()
            .proof
            .iter()
            .map(|h| unhex(h))
            .collect()
    };
    let body = AddCheckpoint {
        old_size: old,
        proof,
        note: note.to_owned(),
    }
    .body();
    let mut fetch = |_: &ledger_core::ids::Origin, from: u64, to: u64| {
        Ok(ledger
            .leaves(from, usize::try_from(to - from).unwrap())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(_, leaf)| leaf)
            .collect())
    };
    witness.add_checkpoint(&body, &mut fetch, 1_700_000_000)
}

fn checkpoint_of(note: &str) -> Checkpoint {
    checkpoint::open_checkpoint(note, ORIGIN, &operator_key().verifying_key()).unwrap()
}

fn unhex(text: &str) -> merkle::Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).unwrap();
    out
}

fn policy(witnesses: &[&Witness], quorum: usize) -> BankPolicy {
    BankPolicy {
        witnesses: witnesses
            .iter()
            .map(|w| checkpoint::parse_cosigner_key(&w.verifier_key()).unwrap())
            .collect(),
        quorum,
        accepted: None,
    }
}

#[test]
fn the_checkpoint_commits_to_the_state_and_rows_are_proved_present_or_absent() {
    let (ledger, _) = reference_ledger();
    let note = ledger.checkpoint().unwrap();
    let checkpoint = checkpoint_of(&note);
    let commitment = StateCommitment::from_checkpoint(&checkpoint)
        .unwrap()
        .expect("a state line");
    // A replay of the export reaches the same commitment.
    let mut export = Vec::new();
    ledger.export(&mut export, None).unwrap();
    let report =
        ledger_core::verify::verify_export(&export[..], &note, &operator_key().verifying_key())
            .unwrap();
    assert_eq!(report.entries, checkpoint.size);

    let bundle = ledger
        .pledge_bundle(&PLEDGE.parse().unwrap(), None)
        .unwrap();
    assert_eq!(bundle.version, 2);
    let state = bundle.state.as_ref().unwrap();
    let pledge = verify_row_proof(&state.pledge, "pledges", &json!(PLEDGE), &commitment)
        .unwrap()
        .unwrap();
    assert_eq!(pledge["outstanding"], "164724.00");
    let balance = verify_row_proof(
        &state.balance,
        "balances",
        &json!([PLATFORM, BATCH]),
        &commitment,
    )
    .unwrap()
    .unwrap();
    assert_eq!(balance["pledged"], "4000.000");
    // A balance nobody holds is proved absent.
    let at = ledger_core::ids::Timestamp::now();
    let absent_key = StateRow::sort_key_of("balances", &(BANK, BATCH)).unwrap();
    let (_, proofs) = ledger
        .read(|s| s.prove_state_rows(&at, &[absent_key]))
        .unwrap();
    let absent = &proofs[0];
    assert!(matches!(absent, RowProof::Absent { .. }));
    // The live state's commitment now (prices at `at` are the same).
    let live = ledger.read(|s| s.state_commitment(&at)).unwrap();
    assert_eq!(
        verify_row_proof(absent, "balances", &json!([BANK, BATCH]), &live).unwrap(),
        None
    );
    // The absence proof of one key proves nothing about another; a row proof of one key
    // proves nothing about another.
    assert!(verify_row_proof(absent, "balances", &json!([ENTERPRISE_A, BATCH]), &live).is_err());
    assert!(verify_row_proof(&state.pledge, "pledges", &json!("PL-OTHER"), &commitment).is_err());
}

#[test]
fn the_incremental_commitment_equals_one_computed_from_every_row() {
    let (ledger, case) = reference_ledger();
    let now = ledger_core::ids::Timestamp::now();
    let from_rows = |ledger: &Ledger, at: &ledger_core::ids::Timestamp| {
        ledger.read(|s| {
            let mut tree = merkle::CompactTree::new();
            for row in s.state_rows(at).unwrap() {
                tree.append(row.leaf_hash()).unwrap();
            }
            StateCommitment {
                rows: tree.size(),
                root: tree.root(),
            }
        })
    };
    let cached = |ledger: &Ledger, at: &ledger_core::ids::Timestamp| {
        ledger.read(|s| s.state_commitment(at)).unwrap()
    };
    assert_eq!(cached(&ledger, &now), from_rows(&ledger, &now));
    // More entries after the cache was filled: the cache follows them. The last one gives the
    // bank its first holding, a new row in the middle of the rows' order.
    let transfers = [
        (ENTERPRISE_A, PLATFORM, "1"),
        (ENTERPRISE_A, PLATFORM, "2.5"),
        (ENTERPRISE_A, PLATFORM, "0.001"),
        (ENTERPRISE_A, BANK, "3"),
    ];
    for (i, (seller, buyer, quantity)) in transfers.into_iter().enumerate() {
        let body = case.body(
            &format!("T-c-{i}"),
            &case.at(20),
            json!({"type": "trade", "kind": "transfer", "seller": seller,
                   "buyer": buyer, "batch": BATCH, "quantity": quantity}),
        );
        ledger.submit(case.sign(body, &[seller, buyer])).unwrap();
        assert_eq!(cached(&ledger, &now), from_rows(&ledger, &now));
    }
    // Committed at a time before any price was in force, then at the present again: the rows of
    // the prices in force leave the tree and come back.
    let before_prices: ledger_core::ids::Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
    let early = cached(&ledger, &before_prices);
    assert_eq!(early, from_rows(&ledger, &before_prices));
    assert!(early.rows < cached(&ledger, &now).rows);
    assert_eq!(cached(&ledger, &now), from_rows(&ledger, &now));
    // Proofs from the cached tree verify against the commitment computed from every row.
    let expected = from_rows(&ledger, &now);
    let present = StateRow::sort_key_of("balances", &(BANK, BATCH)).unwrap();
    let absent = StateRow::sort_key_of("balances", &(BANK, "XZH-1999")).unwrap();
    let (commitment, proofs) = ledger
        .read(|s| s.prove_state_rows(&now, &[present, absent]))
        .unwrap();
    assert_eq!(commitment, expected);
    let held = verify_row_proof(&proofs[0], "balances", &json!([BANK, BATCH]), &expected)
        .unwrap()
        .unwrap();
    assert_eq!(held["available"], "3.000");
    assert_eq!(
        verify_row_proof(
            &proofs[1],
            "balances",
            &json!([BANK, "XZH-1999"]),
            &expected
        )
        .unwrap(),
        None
    );
}

#[test]
fn a_witness_replays_then_cosigns_and_a_bank_checks_the_quorum() {
    let (ledger, _) = reference_ledger();
    let w1 = witness("witness.bank.example/w1", 21);
    let w2 = witness("witness.auditor.example/w2", 22);
    let note = ledger.checkpoint().unwrap();
    let line = cosign(&w1, &ledger, &note, 0).unwrap();
    let (name, timestamp) = checkpoint::cosignature_timestamp(&line).unwrap();
    assert_eq!(
        (name.as_str(), timestamp),
        ("witness.bank.example/w1", 1_700_000_000)
    );
    // The witness keeps what it cosigned, log signature and its own cosignature.
    let kept = w1
        .latest(&ledger_core::witness::origin_hash(ORIGIN))
        .unwrap()
        .unwrap();
    assert!(kept.ends_with(&line), "{kept}");

    let mut bundle = ledger
        .pledge_bundle(&PLEDGE.parse().unwrap(), None)
        .unwrap();
    assert_eq!(bundle.checkpoint, note);
    bundle.checkpoint.push_str(&line);
    let operator = operator_key().verifying_key();
    let finding = verify_pledge_bundle_with(&bundle, &operator, &policy(&[&w1, &w2], 1)).unwrap();
    assert_eq!(finding.cosigned_by, ["witness.bank.example/w1"]);
    let state = finding.state.unwrap();
    assert_eq!(state.outstanding, "164724.00".parse().unwrap());
    assert_eq!(state.coverage_ratio, Some("1.4286".parse().unwrap()));
    // A quorum of two is not met by one witness.
    let error = verify_pledge_bundle_with(&bundle, &operator, &policy(&[&w1, &w2], 2)).unwrap_err();
    assert_eq!(error.kind(), "quorum");
    // The second witness cosigns the same checkpoint: quorum 2.
    let second = cosign(&w2, &ledger, &note, 0).unwrap();
    bundle.checkpoint.push_str(&second);
    let finding = verify_pledge_bundle_with(&bundle, &operator, &policy(&[&w1, &w2], 2)).unwrap();
    assert_eq!(finding.cosigned_by.len(), 2);
}

#[test]
fn a_witness_follows_the_log_and_refuses_what_it_would_not_cosign() {
    let (ledger, case) = reference_ledger();
    let w = witness("witness.bank.example/w1", 21);
    let first = ledger.checkpoint().unwrap();
    cosign(&w, &ledger, &first, 0).unwrap();
    let size = checkpoint_of(&first).size;
    // The same old size again is a conflict: it says the size it cosigned.
    assert_eq!(
        cosign(&w, &ledger, &first, 0).unwrap_err(),
        WitnessError::Conflict { size }
    );
    let body = case.body(
        "T-w-1",
        &case.at(20),
        json!({"type": "trade", "kind": "transfer", "seller": ENTERPRISE_A,
               "buyer": PLATFORM, "batch": BATCH, "quantity": "1"}),
    );
    ledger
        .submit(case.sign(body, &[ENTERPRISE_A, PLATFORM]))
        .unwrap();
    let second = ledger.checkpoint().unwrap();
    cosign(&w, &ledger, &second, size).unwrap();
    // An unknown log, and a note not signed by the log's key.
    let forged = second.replace(ORIGIN, "other.example/log");
    assert_eq!(cosign_raw(&w, &forged, size + 1).unwrap_err().status(), 404);
    let unsigned = checkpoint::sign_checkpoint(
        &checkpoint_of(&second),
        ORIGIN,
        &SigningKey::from_bytes(&[99; 32]),
    )
    .unwrap();
    assert_eq!(
        cosign_raw(&w, &unsigned, size + 1).unwrap_err().status(),
        403
    );
}

/// Sends a raw note with an old size and no proof.
fn cosign_raw(witness: &Witness, note: &str, old: u64) -> Result<String, WitnessError> {
    let body = AddCheckpoint {
        old_size: old,
        proof: Vec::new(),
        note: note.to_owned(),
    }
    .body();
    witness.add_checkpoint(&body, &mut |_, _, _| Ok(Vec::new()), 1_700_000_000)
}

/// Split view: the operator keeps a second ledger under the same origin and key, shows the
/// witness one history and a bank the other. The witness refuses the fork; the bank, requiring
/// the witness's cosignature, refuses the fork's bundle.
#[test]
fn a_forked_log_is_caught_by_the_witness_and_by_the_bank() {
    let (honest, case) = reference_ledger();
    let w = witness("witness.bank.example/w1", 21);
    let note = honest.checkpoint().unwrap();
    cosign(&w, &honest, &note, 0).unwrap();
    let cosigned_size = checkpoint_of(&note).size;

    // The fork: the same entries up to the pledge, then the pledgor's 4,000 t sold elsewhere
    // instead of pledged — the bank is shown a pledge that the other history does not have.
    let fork = Ledger::in_memory(config()).unwrap();
    for step in case.steps() {
        if step.expect == Expect::Accepted {
            fork.submit(step.submission).unwrap();
        }
    }
    let fork_note = fork.checkpoint().unwrap();
    // Both histories have the same size but different roots (accepted_at differs): the witness
    // refuses the fork's checkpoint as inconsistent with what it cosigned.
    let error = cosign(&w, &fork, &fork_note, cosigned_size).unwrap_err();
    assert_eq!(error.status(), 422, "{error}");
    // A bank requiring the witness refuses the fork's bundle, which carries no cosignature.
    let bundle = fork.pledge_bundle(&PLEDGE.parse().unwrap(), None).unwrap();
    let error =
        verify_pledge_bundle_with(&bundle, &operator_key().verifying_key(), &policy(&[&w], 1))
            .unwrap_err();
    assert_eq!(error.kind(), "quorum");
    // And a bank that accepted the honest checkpoint refuses the fork's even without witnesses.
    let accepted = BankPolicy {
        accepted: Some(checkpoint_of(&note)),
        ..BankPolicy::default()
    };
    let error =
        verify_pledge_bundle_with(&bundle, &operator_key().verifying_key(), &accepted).unwrap_err();
    assert_eq!(error.kind(), "not-extending");
}

/// An altered sequencer lets in an entry that breaks the rules (a retirement of sink the holder
/// does not have) and signs a checkpoint over it: the witness's replay refuses to cosign.
#[test]
fn a_witness_refuses_a_log_with_an_entry_that_breaks_the_rules() {
    let memory = Arc::new(MemoryStore::new());
    let ledger = Ledger::open(Box::new(Arc::clone(&memory)), config()).unwrap();
    let case = ReferenceCase::new(ORIGIN, OPERATOR, operator_key());
    for step in case.steps() {
        if step.expect == Expect::Accepted {
            ledger.submit(step.submission).unwrap();
        }
    }
    let size = ledger.size();
    let w = witness("witness.bank.example/w1", 21);
    cosign(&w, &ledger, &ledger.checkpoint().unwrap(), 0).unwrap();

    // Write a leaf the rules refuse straight into the store, as a broken sequencer would.
    let body = case.body(
        "CERT-FORGED",
        &case.at(20),
        json!({"type": "retire", "holder": ENTERPRISE_A, "batch": BATCH, "quantity": "99999",
               "beneficiary": "x", "purpose": "y"}),
    );
    let envelope = ledger_core::wire::Envelope {
        seq: size,
        prev: hex::encode(merkle::leaf_hash(&ledger.leaf(size - 1).unwrap())),
        accepted_at: case.at(20).parse().unwrap(),
        entry: case.sign(body, &[ENTERPRISE_A]),
    };
    let leaf = envelope.leaf_bytes().unwrap();
    let mut tree = merkle::CompactTree::from_source(size, &StoreNodes(memory.as_ref())).unwrap();
    let nodes = tree.append(merkle::leaf_hash(&leaf)).unwrap();
    let mut meta = memory.meta().unwrap().unwrap();
    meta.size = size + 1;
    meta.peaks = tree.peaks().iter().map(hex::encode).collect();
    meta.last_leaf_hash = hex::encode(merkle::leaf_hash(&leaf));
    memory
        .append(Append {
            first_seq: size,
            leaves: &[leaf],
            nodes: &nodes,
            state: &[],
            meta: Some(&meta),
        })
        .unwrap();
    drop(ledger);
    let altered = Ledger::open(Box::new(Arc::clone(&memory)), config()).unwrap();
    let note = altered.checkpoint().unwrap();
    let error = cosign(&w, &altered, &note, size).unwrap_err();
    assert_eq!(error.status(), 422, "{error}");
    assert!(error.to_string().contains("does not replay"), "{error}");
}

/// A checkpoint whose state line lies (the operator claims another state) is refused by the
/// witness, and by a bank whose rows it would have to match.
#[test]
fn a_state_line_that_lies_is_refused() {
    let (ledger, _) = reference_ledger();
    let w = witness("witness.bank.example/w1", 21);
    let honest = checkpoint_of(&ledger.checkpoint().unwrap());
    let mut lying = honest.clone();
    let mut commitment = StateCommitment::from_checkpoint(&honest).unwrap().unwrap();
    commitment.root[0] ^= 1;
    lying.extensions = vec![commitment.line()];
    let note = checkpoint::sign_checkpoint(&lying, ORIGIN, &operator_key()).unwrap();
    let error = cosign(&w, &ledger, &note, 0).unwrap_err();
    assert_eq!(error.status(), 422);
    assert!(error.to_string().contains("state line"), "{error}");
}

#[test]
fn a_tampered_or_stale_bundle_is_refused() {
    let (ledger, case) = reference_ledger();
    let operator = operator_key().verifying_key();
    let policy = BankPolicy::default();
    let bundle = ledger
        .pledge_bundle(&PLEDGE.parse().unwrap(), None)
        .unwrap();
    verify_pledge_bundle_with(&bundle, &operator, &policy).unwrap();

    // A state row altered: the pledge shown with nothing outstanding.
    let mut altered: PledgeBundle = bundle.clone();
    if let Some(RowProof::Present(row)) = altered.state.as_mut().map(|s| &mut s.pledge) {
        row.row = row
            .row
            .replace("\"outstanding\":\"164724.00\"", "\"outstanding\":\"0.00\"");
    }
    let error = verify_pledge_bundle_with(&altered, &operator, &policy).unwrap_err();
    assert_eq!(error.kind(), "bad-state-row", "{error}");

    // A later trade moves the pledgor's available sink; a bundle that pairs the new checkpoint
    // with the old balance row (omitting the trade) is refused.
    let body = case.body(
        "T-late",
        &case.at(20),
        json!({"type": "trade", "kind": "transfer", "seller": PLATFORM,
               "buyer": ENTERPRISE_A, "batch": BATCH, "quantity": "500"}),
    );
    ledger
        .submit(case.sign(body, &[PLATFORM, ENTERPRISE_A]))
        .unwrap();
    let fresh = ledger
        .pledge_bundle(&PLEDGE.parse().unwrap(), None)
        .unwrap();
    verify_pledge_bundle_with(&fresh, &operator, &policy).unwrap();
    let mut stale = fresh.clone();
    stale.state.as_mut().unwrap().balance = bundle.state.as_ref().unwrap().balance.clone();
    let error = verify_pledge_bundle_with(&stale, &operator, &policy).unwrap_err();
    assert_eq!(error.kind(), "bad-state-row", "{error}");

    // A bank that accepted the newer checkpoint refuses the older bundle; with the newer as its
    // last, a bundle proved consistent from it is accepted.
    let newer = checkpoint_of(&fresh.checkpoint);
    let accepted = BankPolicy {
        accepted: Some(newer.clone()),
        ..BankPolicy::default()
    };
    let error = verify_pledge_bundle_with(&bundle, &operator, &accepted).unwrap_err();
    assert_eq!(error.kind(), "older-checkpoint");
    let old_policy = BankPolicy {
        accepted: Some(checkpoint_of(&bundle.checkpoint)),
        ..BankPolicy::default()
    };
    let error = verify_pledge_bundle_with(&fresh, &operator, &old_policy).unwrap_err();
    assert_eq!(
        error.kind(),
        "not-extending",
        "no consistency proof asked for"
    );
    let with_proof = ledger
        .pledge_bundle(
            &PLEDGE.parse().unwrap(),
            Some(checkpoint_of(&bundle.checkpoint).size),
        )
        .unwrap();
    verify_pledge_bundle_with(&with_proof, &operator, &old_policy).unwrap();
}

/// A witness keeps its replica and its last cosigned checkpoint durably: restarted, it neither
/// forgets what it cosigned nor cosigns from scratch.
#[test]
fn a_restarted_witness_remembers_what_it_cosigned() {
    let (ledger, _) = reference_ledger();
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let mut witness =
            Witness::new("witness.bank.example/w1", SigningKey::from_bytes(&[21; 32])).unwrap();
        let store = ledger_core::store::SledStore::open(dir.path()).unwrap();
        witness.add_log(
            Replica::open(
                Box::new(store),
                ORIGIN.parse().unwrap(),
                operator_key().verifying_key(),
            )
            .unwrap(),
        );
        witness
    };
    let note = ledger.checkpoint().unwrap();
    let size = checkpoint_of(&note).size;
    {
        let w = open();
        cosign(&w, &ledger, &note, 0).unwrap();
    }
    let w = open();
    assert_eq!(
        cosign(&w, &ledger, &note, 0).unwrap_err(),
        WitnessError::Conflict { size }
    );
    cosign(&w, &ledger, &note, size).unwrap();
}

/// The examples of the C2SP specifications: the `add-checkpoint` request body of tlog-witness,
/// and the signed message and cosignature line of tlog-cosignature.
#[test]
fn the_c2sp_examples_read_as_the_specs_say() {
    let body = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
    let request = AddCheckpoint::parse(body).unwrap();
    assert_eq!(request.old_size, 20_852_014);
    assert_eq!(request.proof.len(), 4);
    assert_eq!(request.body(), body);
    let checkpoint = Checkpoint::parse_body(
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    )
    .unwrap();
    assert_eq!(
        checkpoint::cosigned_message(&checkpoint.body(), 1_679_315_147),
        "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    );
    let (name, timestamp) = checkpoint::cosignature_timestamp(
        "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==",
    )
    .unwrap();
    assert_eq!(
        (name.as_str(), timestamp),
        ("witness.example.com/w1", 1_679_315_147)
    );
    // Malformed requests are 400s.
    for bad in [
        "old 01\n\nx",
        "old x\n\nx",
        "no blank line",
        "old 1\nnot-base64!\n\nx",
    ] {
        assert_eq!(
            AddCheckpoint::parse(bad).unwrap_err().status(),
            400,
            "{bad}"
        );
    }
}
