//! The ledger through its library API: signatures, sequencing, storage, proofs, checkpoints,
//! the export and the bank's pledge bundle.

mod common;

use std::sync::Arc;

use ed25519_dalek::SigningKey;

use common::{body, pid, signing_key, stores, HookedStore, LEDGER, REFERENCE_PARTICIPANTS};
use ledger_core::entry::{Body, Submission};
use ledger_core::ledger::{Ledger, LedgerConfig, LedgerError, Receipt, Restore};
use ledger_core::merkle;
use ledger_core::sign::sign_body;
use ledger_core::store::MemoryStore;
use ledger_core::verify::{verify_export, verify_pledge_bundle, ReplayError, Replayer};
use ledger_core::wire::Prepared;
use rust_decimal::Decimal;
use serde_json::json;

const OPERATOR: &str = "deqing-registry";

fn config() -> LedgerConfig {
    LedgerConfig::new(
        LEDGER.parse().unwrap(),
        pid(OPERATOR),
        "德清县生态资源登记中心 (illustrative operator)"
            .parse()
            .unwrap(),
        signing_key(OPERATOR),
    )
}

/// Signs a body by the named participants with their test keys.
fn signed(body: Body, signers: &[&str]) -> Submission {
    let ids: Vec<_> = signers.iter().map(|s| pid(s)).collect();
    let keys: Vec<_> = signers.iter().map(|s| signing_key(s)).collect();
    let pairs: Vec<_> = ids.iter().zip(keys.iter()).collect();
    sign_body(body, &pairs).unwrap()
}

fn submit(ledger: &Ledger, id: &str, fields: serde_json::Value, signers: &[&str]) -> Receipt {
    ledger
        .submit(signed(body(id, fields), signers))
        .unwrap_or_else(|e| panic!("{id} refused: {e}"))
}

/// The reference case up to the pledge, with real signatures.
fn populate(ledger: &Ledger) {
    for (id, name, roles) in &REFERENCE_PARTICIPANTS[1..] {
        let registration = common::registration(id, name, roles);
        ledger
            .submit(signed(registration, &[OPERATOR, id]))
            .unwrap();
    }
    for (id, fields, signers) in common::reference_setup() {
        submit(ledger, id, fields, &signers);
    }
    submit(
        ledger,
        "T-2022-0001",
        json!({"type": "trade", "kind": "acquisition", "seller": "xiazhuhu-wetland",
            "buyer": "two-mountains-bank", "batch": "XZH-2021", "quantity": "10000",
            "unit_price": "58.83", "currency": "CNY", "amount": "588300.00", "price_ref": "BM-2022-06"}),
        &["xiazhuhu-wetland", "two-mountains-bank"],
    );
    submit(
        ledger,
        "PL-1",
        json!({"type": "pledge", "pledge": "PL-2022-001", "pledgor": "two-mountains-bank",
            "bank": "deqing-rural-bank", "batch": "XZH-2021", "quantity": "4000",
            "price_ref": "BM-2022-06", "haircut": "0.30", "limit": "164724.00", "currency": "CNY"}),
        &["two-mountains-bank", "deqing-rural-bank"],
    );
}

fn transfer(quantity: &str) -> serde_json::Value {
    json!({"type": "trade", "kind": "transfer", "seller": "two-mountains-bank",
        "buyer": "enterprise-a", "batch": "XZH-2021", "quantity": quantity})
}

/// two-mountains-bank's rotation of its key to `new_key`, signed with the current key and the
/// new one.
fn platform_rotation(id: &str, new_key: &SigningKey) -> Submission {
    let platform = pid("two-mountains-bank");
    let rotation = body(
        id,
        json!({"type": "rotate_key", "participant": "two-mountains-bank",
        "new_public_key": common::encode_key(&new_key.verifying_key())}),
    );
    sign_body(
        rotation,
        &[
            (&platform, &signing_key("two-mountains-bank")),
            (&platform, new_key),
        ],
    )
    .unwrap()
}

/// A transfer of `quantity` from two-mountains-bank, signed with `platform_key`, to enterprise-a.
fn transfer_signed_with(id: &str, quantity: &str, platform_key: &SigningKey) -> Submission {
    sign_body(
        body(id, transfer(quantity)),
        &[
            (&pid("two-mountains-bank"), platform_key),
            (&pid("enterprise-a"), &signing_key("enterprise-a")),
        ],
    )
    .unwrap()
}

/// [`populate`], then the bank retires a tonne of batch XZH-2021 (certificate `id`).
fn populate_with_a_retirement(ledger: &Ledger, id: &str) {
    populate(ledger);
    submit(
        ledger,
        id,
        json!({"type": "retire", "holder": "two-mountains-bank", "batch": "XZH-2021",
               "quantity": "1", "beneficiary": "B", "purpose": "p"}),
        &["two-mountains-bank"],
    );
}

fn submit_err(ledger: &Ledger, id: &str, fields: serde_json::Value) -> LedgerError {
    let submission = signed(body(id, fields), &["two-mountains-bank", "enterprise-a"]);
    ledger.submit(submission).unwrap_err()
}

fn available(ledger: &Ledger, holder: &str) -> Decimal {
    ledger.read(|s| {
        s.balance(&pid(holder), &"XZH-2021".parse().unwrap())
            .available
            .value()
    })
}

#[test]
fn genesis_registers_the_operator_and_checkpoints_verify() {
    for store in stores::each_store("genesis_registers_the_operator_and_checkpoints_verify") {
        eprintln!("genesis_registers_the_operator_and_checkpoints_verify: {store}");
        let ledger = store.open(config()).unwrap();
        assert_eq!(ledger.size(), 1);
        assert_eq!(ledger.read(|s| s.operator().cloned()), Some(pid(OPERATOR)));
        let note = ledger.checkpoint().unwrap();
        let cp = ledger_core::checkpoint::open_checkpoint(&note, LEDGER, &ledger.operator_key())
            .unwrap();
        assert_eq!((cp.size, cp.root), (1, ledger.root()));
    }
}

#[test]
fn reference_case_with_proofs_export_and_bundle() {
    for store in stores::each_store("reference_case_with_proofs_export_and_bundle") {
        eprintln!("reference_case_with_proofs_export_and_bundle: {store}");
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        assert_eq!(
            available(&ledger, "two-mountains-bank"),
            "6000".parse().unwrap()
        );

        // Inclusion and consistency proofs verify against the checkpoint's root.
        let note = ledger.checkpoint().unwrap();
        let cp = ledger_core::checkpoint::open_checkpoint(&note, LEDGER, &ledger.operator_key())
            .unwrap();
        let size = ledger.size();
        assert_eq!(cp.size, size);
        for seq in 0..size {
            let proof = ledger.inclusion_proof(seq, None).unwrap();
            let path: Vec<merkle::Hash> = proof.proof.iter().map(|h| hex_hash(h)).collect();
            let leaf = ledger.leaf(seq).unwrap();
            merkle::verify_inclusion(&merkle::leaf_hash(&leaf), seq, size, &path, &cp.root)
                .unwrap();
        }
        let consistency = ledger.consistency_proof(3, None).unwrap();
        let path: Vec<merkle::Hash> = consistency.proof.iter().map(|h| hex_hash(h)).collect();
        merkle::verify_consistency(3, size, &hex_hash(&consistency.old_root), &cp.root, &path)
            .unwrap();

        // The export replays to the checkpoint, offline.
        let mut export = Vec::new();
        assert_eq!(ledger.export(&mut export, None).unwrap(), size);
        let report = verify_export(export.as_slice(), &note, &ledger.operator_key()).unwrap();
        assert_eq!((report.entries, report.checkpoint_size), (size, size));

        // The bank's bundle proves the pledge from proofs alone.
        let bundle = ledger
            .pledge_bundle(&"PL-2022-001".parse().unwrap(), None)
            .unwrap();
        let finding = verify_pledge_bundle(&bundle, &ledger.operator_key()).unwrap();
        assert_eq!(finding.bank, "deqing-rural-bank");
        assert_eq!(finding.pledgor, "two-mountains-bank");
        assert_eq!(finding.quantity, "4000".parse().unwrap());
        assert_eq!(finding.limit, "164724.00".parse().unwrap());
        assert_eq!(finding.report_verified, "17000".parse().unwrap());

        let full = ledger.verify_full().unwrap();
        assert_eq!(full.entries, size);
    }
}

fn hex_hash(text: &str) -> merkle::Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).unwrap();
    out
}

#[test]
fn a_tampered_bundle_is_refused() {
    for store in stores::each_store("a_tampered_bundle_is_refused") {
        eprintln!("a_tampered_bundle_is_refused: {store}");
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        let bundle = ledger
            .pledge_bundle(&"PL-2022-001".parse().unwrap(), None)
            .unwrap();
        let key = ledger.operator_key();

        // modified-pledge-quantity: the pledge leaf says 40000 t instead of 4000 t.
        let mut forged = bundle.clone();
        let pledge = forged
            .entries
            .iter_mut()
            .find(|e| e.leaf.contains("\"pledge\":\"PL-2022-001\""))
            .unwrap();
        pledge.leaf = pledge
            .leaf
            .replace("\"quantity\":\"4000\"", "\"quantity\":\"40000\"");
        assert!(verify_pledge_bundle(&forged, &key).is_err());

        // missing-report: without the monitoring report the issuance is unbacked.
        let mut forged = bundle.clone();
        forged
            .entries
            .retain(|e| !e.leaf.contains("record_monitoring"));
        let err = verify_pledge_bundle(&forged, &key).unwrap_err();
        assert!(err.to_string().contains("monitoring report"), "{err}");

        // wrong-operator-key: a bundle is only as good as the key it is checked with.
        let err =
            verify_pledge_bundle(&bundle, &signing_key("impostor").verifying_key()).unwrap_err();
        assert!(err.to_string().contains("checkpoint"), "{err}");

        // modified-proof[0].
        let mut forged = bundle;
        let first = &mut forged.entries[1].proof[0];
        *first = first.replacen(
            &first[..2],
            if &first[..2] == "00" { "01" } else { "00" },
            1,
        );
        assert!(verify_pledge_bundle(&forged, &key).is_err());
    }
}

#[test]
fn forgeries_are_refused_and_change_nothing() {
    for store in stores::each_store("forgeries_are_refused_and_change_nothing") {
        eprintln!("forgeries_are_refused_and_change_nothing: {store}");
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        let size = ledger.size();
        let root = ledger.root();
        let trade = || body("T-forged", transfer("100"));

        // Signed by the buyer alone.
        let err = ledger
            .submit(signed(trade(), &["enterprise-a"]))
            .unwrap_err();
        assert_eq!(err.kind(), "wrong-signers");
        // Signed by the operator instead of the seller.
        let err = ledger
            .submit(signed(trade(), &[OPERATOR, "enterprise-a"]))
            .unwrap_err();
        assert_eq!(err.kind(), "wrong-signers");
        // The seller's name on a signature made with someone else's key.
        let mut forged = signed(trade(), &["two-mountains-bank", "enterprise-a"]);
        forged.signatures[0].sig = signed(trade(), &[OPERATOR]).signatures[0].sig;
        assert_eq!(ledger.submit(forged).unwrap_err().kind(), "bad-signature");
        // A signature over another body (the quantity changed after signing).
        let mut altered = signed(trade(), &["two-mountains-bank", "enterprise-a"]);
        altered.body = body("T-forged", transfer("1000"));
        assert_eq!(ledger.submit(altered).unwrap_err().kind(), "bad-signature");
        // Made for another ledger.
        let mut elsewhere = trade();
        elsewhere.ledger = "another.example/ledger".parse().unwrap();
        let err = ledger
            .submit(signed(elsewhere, &["two-mountains-bank", "enterprise-a"]))
            .unwrap_err();
        assert!(matches!(err, LedgerError::WrongLedger { .. }), "{err}");
        // Unsigned.
        let err = ledger
            .submit(Submission {
                body: trade(),
                signatures: vec![],
            })
            .unwrap_err();
        assert_eq!(err.kind(), "unsigned");

        assert_eq!((ledger.size(), ledger.root()), (size, root));
        assert_eq!(available(&ledger, "enterprise-a"), Decimal::ZERO);
    }
}

#[test]
fn a_rotated_out_key_signs_nothing_new_and_history_still_verifies() {
    for store in
        stores::each_store("a_rotated_out_key_signs_nothing_new_and_history_still_verifies")
    {
        eprintln!("a_rotated_out_key_signs_nothing_new_and_history_still_verifies: {store}");
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        let new_key = signing_key("two-mountains-bank/2023");
        let platform = pid("two-mountains-bank");
        let rotated_at = ledger
            .submit(platform_rotation("rot-1", &new_key))
            .unwrap()
            .seq;

        // The old key no longer signs, and the refusal says that is what happened, so that a
        // clerk holding an old key file knows to sign again with the current one.
        let err = ledger
            .submit(signed(
                body("T-old", transfer("1")),
                &["two-mountains-bank", "enterprise-a"],
            ))
            .unwrap_err();
        assert_eq!(err.kind(), "bad-signature");
        let said = err.to_string();
        assert!(
            said.contains("two-mountains-bank was signed with a key that is not the current one")
                && said.contains(&format!("rotated its key at entry {rotated_at}")),
            "{said}"
        );
        // A key the signer never held is a plain bad signature.
        let stranger = sign_body(
            body("T-stranger", transfer("1")),
            &[
                (&platform, &signing_key("nobody")),
                (&pid("enterprise-a"), &signing_key("enterprise-a")),
            ],
        )
        .unwrap();
        let err = ledger.submit(stranger).unwrap_err();
        assert_eq!(err.kind(), "bad-signature");
        assert!(!err.to_string().contains("not the current one"), "{err}");
        // The new key does.
        ledger
            .submit(transfer_signed_with("T-new", "1", &new_key))
            .unwrap();
        // Everything signed before the rotation still verifies on replay.
        ledger.verify_full().unwrap();
    }
}

/// A full verification checks signatures on helper threads, ahead of the replay, against the
/// keys the signers are expected to hold. It must find exactly what a replay entry by entry
/// finds: with a rotation and a late registration on the way, with one helper or several, and on
/// every damaged copy the same first bad entry and the same fault.
#[test]
fn signatures_checked_ahead_find_what_a_replay_entry_by_entry_finds() {
    let ledger = Ledger::in_memory(config()).unwrap();
    populate(&ledger);
    let new_key = signing_key("two-mountains-bank/2023");
    ledger.submit(platform_rotation("rot-1", &new_key)).unwrap();
    for n in 0..3 {
        ledger
            .submit(transfer_signed_with(&format!("T-new-{n}"), "1", &new_key))
            .unwrap();
    }
    ledger
        .submit(signed(
            common::registration("late-verifier", "Late Verifier", &["verifier"]),
            &[OPERATOR, "late-verifier"],
        ))
        .unwrap();
    let leaves: Vec<Vec<u8>> = ledger
        .leaves(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, leaf)| leaf)
        .collect();

    let origin = config().origin;
    let one_by_one = |leaves: &[Vec<u8>]| {
        let mut replayer = Replayer::new(origin.clone());
        for leaf in leaves {
            replayer.push(leaf)?;
        }
        Ok::<_, ReplayError>((replayer.root(), replayer.signatures()))
    };
    let ahead = |leaves: &[Vec<u8>], helpers: usize| {
        let mut replayer = Replayer::new(origin.clone());
        let mut seen = Vec::new();
        replayer.replay_ahead::<ReplayError>(
            helpers,
            |push| leaves.iter().try_for_each(|leaf| push(leaf)),
            |_, seq, _, _| {
                seen.push(seq);
                Ok(())
            },
        )?;
        assert_eq!(seen, (0..replayer.size()).collect::<Vec<_>>());
        Ok::<_, ReplayError>((
            (replayer.root(), replayer.signatures()),
            replayer.signatures_checked_ahead(),
        ))
    };

    let expected = one_by_one(&leaves).unwrap();
    assert_eq!(expected.0, ledger.root());
    for helpers in 1..=3 {
        let (found, checked_ahead) = ahead(&leaves, helpers).unwrap();
        assert_eq!(found, expected, "{helpers} helpers");
        // Every signature was checked on a helper thread: the expected keys were right.
        assert_eq!(checked_ahead, expected.1, "{helpers} helpers");
    }
    assert_eq!(
        ledger.verify_full().unwrap().signatures,
        expected.1,
        "verify_full replays with helpers"
    );

    // A byte changed in each leaf in turn, in its body and in its signatures: the same first bad
    // entry and the same fault, whatever the helpers expected.
    for seq in 0..leaves.len() {
        for at in [leaves[seq].len() / 3, leaves[seq].len() - 40] {
            let mut damaged = leaves.clone();
            let byte = &mut damaged[seq][at];
            *byte = if byte.is_ascii_digit() {
                b'0' + (*byte - b'0' + 1) % 10
            } else if *byte == b'A' {
                b'B'
            } else {
                b'A'
            };
            let expected = one_by_one(&damaged).unwrap_err();
            assert_eq!(expected.seq, seq as u64, "{expected}");
            assert_eq!(ahead(&damaged, 2).unwrap_err(), expected);
        }
    }
}

#[test]
fn resubmission_returns_the_first_receipt_and_a_used_id_conflicts() {
    for store in
        stores::each_store("resubmission_returns_the_first_receipt_and_a_used_id_conflicts")
    {
        eprintln!("resubmission_returns_the_first_receipt_and_a_used_id_conflicts: {store}");
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        let submission = signed(
            body("T-once", transfer("10")),
            &["two-mountains-bank", "enterprise-a"],
        );
        let first = ledger.submit(submission.clone()).unwrap();
        let again = ledger.submit(submission).unwrap();
        assert!(!first.duplicate && again.duplicate);
        assert_eq!((first.seq, &first.leaf_hash), (again.seq, &again.leaf_hash));
        assert_eq!(available(&ledger, "enterprise-a"), "10".parse().unwrap());

        let other = signed(
            body("T-once", transfer("11")),
            &["two-mountains-bank", "enterprise-a"],
        );
        assert_eq!(
            ledger.submit(other).unwrap_err().kind(),
            "entry-id-conflict"
        );
    }
}

#[test]
fn an_atomic_group_is_all_or_nothing() {
    for store in stores::each_store("an_atomic_group_is_all_or_nothing") {
        eprintln!("an_atomic_group_is_all_or_nothing: {store}");
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        let size = ledger.size();
        let group = |second_quantity: &str| {
            vec![
                Prepared::new(signed(
                    body("G-1", transfer("100")),
                    &["two-mountains-bank", "enterprise-a"],
                ))
                .unwrap(),
                Prepared::new(signed(
                    body("G-2", transfer(second_quantity)),
                    &["two-mountains-bank", "enterprise-a"],
                ))
                .unwrap(),
            ]
        };
        // 100 t then 5,901 t: the second exceeds the 6,000 t available after the first.
        let err = ledger.submit_group(group("5901")).unwrap_err();
        assert!(matches!(err, LedgerError::Group { index: 1, .. }), "{err}");
        assert_eq!(err.kind(), "insufficient-sink");
        assert_eq!(ledger.size(), size);
        assert_eq!(available(&ledger, "enterprise-a"), Decimal::ZERO);

        let receipts = ledger.submit_group(group("5900")).unwrap();
        assert_eq!(
            receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![size, size + 1]
        );
        assert_eq!(available(&ledger, "enterprise-a"), "6000".parse().unwrap());
    }
}

#[test]
fn a_group_may_register_a_participant_and_use_it() {
    for store in stores::each_store("a_group_may_register_a_participant_and_use_it") {
        eprintln!("a_group_may_register_a_participant_and_use_it: {store}");
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        let newcomer = common::registration("enterprise-c", "Enterprise C", &["enterprise"]);
        let group = vec![
            Prepared::new(signed(newcomer, &[OPERATOR, "enterprise-c"])).unwrap(),
            Prepared::new(signed(
                body(
                    "G-c",
                    json!({"type": "trade", "kind": "transfer", "seller": "two-mountains-bank",
                "buyer": "enterprise-c", "batch": "XZH-2021", "quantity": "1"}),
                ),
                &["two-mountains-bank", "enterprise-c"],
            ))
            .unwrap(),
        ];
        ledger.submit_group(group).unwrap();
        assert_eq!(available(&ledger, "enterprise-c"), Decimal::ONE);
    }
}

#[test]
fn concurrent_submitters_share_the_sequencer_and_never_oversell() {
    for store in stores::each_store("concurrent_submitters_share_the_sequencer_and_never_oversell")
    {
        eprintln!("concurrent_submitters_share_the_sequencer_and_never_oversell: {store}");
        let ledger = Arc::new(store.open(config()).unwrap());
        populate(&ledger);
        let size = ledger.size();
        // Eight threads each try to move 1,000 t of the platform's 6,000 t: exactly six succeed.
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let ledger = Arc::clone(&ledger);
                std::thread::spawn(move || {
                    let id = format!("T-race-{i}");
                    ledger
                        .submit(signed(
                            body(&id, transfer("1000")),
                            &["two-mountains-bank", "enterprise-a"],
                        ))
                        .map(|r| r.seq)
                })
            })
            .collect();
        let mut seqs: Vec<u64> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().ok())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (size..size + 6).collect::<Vec<_>>());
        assert_eq!(available(&ledger, "two-mountains-bank"), Decimal::ZERO);
        ledger.verify_full().unwrap();
    }
}

#[test]
fn close_and_reopen_keep_everything() {
    for store in stores::each_durable_store("close_and_reopen_keep_everything") {
        eprintln!("close_and_reopen_keep_everything: {store}");
        close_and_reopen_on(&store);
    }
}

fn close_and_reopen_on(store: &stores::TestStore) {
    let (size, root, note, balance) = {
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        let note = ledger.checkpoint().unwrap();
        (
            ledger.size(),
            ledger.root(),
            note,
            available(&ledger, "two-mountains-bank"),
        )
    };
    let ledger = store.open(config()).unwrap();
    assert_eq!((ledger.size(), ledger.root()), (size, root));
    assert_eq!(ledger.checkpoint().unwrap(), note);
    assert_eq!(available(&ledger, "two-mountains-bank"), balance);
    let pledge = ledger
        .read(|s| s.pledge(&"PL-2022-001".parse().unwrap()).cloned())
        .unwrap();
    assert_eq!(pledge.limit, "164724.00".parse().unwrap());
    ledger.verify_full().unwrap();
    // History (entry ids, trades, certificates) is read from the store, not held in memory.
    assert!(ledger.read(|s| s.in_history("trades") && s.in_history("entries")));
    let acquisition = ledger
        .read(|s| s.trade(&"T-2022-0001".parse().unwrap()))
        .unwrap();
    assert_eq!(
        acquisition.unwrap().amount,
        Some("588300.00".parse().unwrap())
    );
    let all = ledger.read(|s| s.trades(&Default::default())).unwrap();
    assert_eq!(all.len(), 1);
    // Entry ids used before the restart still conflict, and a resubmission still gets its receipt.
    let again = ledger.submit(signed(
        common::registration(
            "enterprise-a",
            "Enterprise A (illustrative)",
            &["enterprise"],
        ),
        &[OPERATOR, "enterprise-a"],
    ));
    assert!(again.unwrap().duplicate);
    let conflict = submit_err(&ledger, "T-2022-0001", transfer("1"));
    assert_eq!(conflict.kind(), "entry-id-conflict");
    // It goes on from where it was.
    submit(
        &ledger,
        "T-after",
        transfer("1"),
        &["two-mountains-bank", "enterprise-a"],
    );
    assert_eq!(ledger.size(), size + 1);
}

#[test]
fn reopening_with_another_origin_or_key_is_refused() {
    for store in stores::each_durable_store("reopening_with_another_origin_or_key_is_refused") {
        eprintln!("reopening_with_another_origin_or_key_is_refused: {store}");
        drop(store.open(config()).unwrap());
        let mut other = config();
        other.origin = "another.example/ledger".parse().unwrap();
        assert_eq!(store.open(other).unwrap_err().kind(), "integrity");
        let mut other = config();
        other.operator_key = signing_key("impostor");
        assert_eq!(store.open(other).unwrap_err().kind(), "integrity");
    }
}

#[test]
fn a_changed_byte_in_the_stored_data_is_found_by_verify() {
    let store = Arc::new(MemoryStore::new());
    let ledger = Ledger::open(Box::new(Arc::clone(&store)), config()).unwrap();
    populate(&ledger);
    ledger.verify_full().unwrap();
    let (seq, mut leaf) = ledger
        .leaves(0, 100)
        .unwrap()
        .into_iter()
        .find(|(_, leaf)| leaf.windows(17).any(|w| w == b"record_monitoring"))
        .unwrap();
    let at = leaf.windows(7).position(|w| w == b"\"17000\"").unwrap();
    leaf[at + 1] = b'7'; // 17000 → 77000 t verified
    store.tamper_leaf(seq, leaf).unwrap();
    let err = ledger.verify_full().unwrap_err();
    assert!(err.to_string().contains(&format!("entry {seq}")), "{err}");
}

#[test]
fn a_backup_restores_to_the_same_ledger_and_a_damaged_one_is_refused() {
    let original = Ledger::in_memory(config()).unwrap();
    populate(&original);
    let note = original.checkpoint().unwrap();
    let mut export = Vec::new();
    original.export(&mut export, None).unwrap();

    for target in stores::each_durable_store("a_backup_restores_to_the_same_ledger") {
        eprintln!("a backup restored into {target}");
        restore_into(&original, &note, &export, &target);
    }

    // A backup whose export was altered is refused, naming the entry.
    let text = String::from_utf8(export.clone())
        .unwrap()
        .replace("\"quantity\":\"10000\"", "\"quantity\":\"10001\"");
    let err = Ledger::restore(
        Box::new(MemoryStore::new()),
        config(),
        text.as_bytes(),
        &note,
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("entry "), "{err}");
}

/// Restores `export` into the empty store `target` and checks it is the original ledger.
fn restore_into(original: &Ledger, note: &str, export: &[u8], target: &stores::TestStore) {
    let restored = Ledger::restore(target.store(), config(), export, note).unwrap();
    assert_eq!(
        (restored.size(), restored.root()),
        (original.size(), original.root())
    );
    assert_eq!(restored.checkpoint().unwrap(), note);
    assert_eq!(
        available(&restored, "two-mountains-bank"),
        available(original, "two-mountains-bank")
    );
    assert_eq!(restored.read(|s| s.clone()), original.read(|s| s.clone()));
    restored.verify_full().unwrap();
    submit(
        &restored,
        "T-after-restore",
        transfer("1"),
        &["two-mountains-bank", "enterprise-a"],
    );
    drop(restored);
    // It opens again like any ledger.
    let reopened = target.open(config()).unwrap();
    assert_eq!(reopened.size(), original.size() + 1);
    drop(reopened);

    // Only into an empty store.
    let err = Ledger::restore(target.store(), config(), export, note).unwrap_err();
    assert_eq!(err.kind(), "integrity");
}

/// Leaves of an export, one per line.
fn lines(export: &[u8]) -> Vec<Vec<u8>> {
    export
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// A restore from an older copy, with a newer checkpoint as its floor, opens behind it: it
/// reads, but accepts nothing (not even an entry it lost, submitted again: that would be a new
/// leaf) and signs nothing; completed from a copy that reaches the floor, it is the ledger signed
/// before, and goes on.
#[test]
fn a_ledger_behind_its_floor_refuses_to_write_or_sign_until_its_leaves_are_back() {
    let original = Ledger::in_memory(config()).unwrap();
    populate(&original);
    let old_note = original.checkpoint().unwrap();
    let mut old_export = Vec::new();
    original.export(&mut old_export, None).unwrap();
    let lost = signed(
        body("T-lost", transfer("1")),
        &["two-mountains-bank", "enterprise-a"],
    );
    original.submit(lost.clone()).unwrap();
    submit(
        &original,
        "T-lost-2",
        transfer("2"),
        &["two-mountains-bank", "enterprise-a"],
    );
    let floor = original.checkpoint().unwrap();
    let mut export = Vec::new();
    original.export(&mut export, None).unwrap();

    let store = Arc::new(MemoryStore::new());
    let origin = config().origin;
    let key = config().operator_key.verifying_key();
    let mut restore = Restore::begin(
        Box::new(Arc::clone(&store)),
        origin.clone(),
        key,
        vec![(old_note, "old".into()), (floor.clone(), "bank".into())],
    )
    .unwrap();
    restore.append(&lines(&old_export)).unwrap();
    let restored = restore.finish();
    assert_eq!(restored.missing(), 2);

    let behind = Ledger::open(Box::new(Arc::clone(&store)), config()).unwrap();
    assert_eq!(behind.size(), original.size() - 2);
    let refusal = behind.behind_floor().unwrap();
    assert_eq!(refusal.kind(), "behind-floor");
    assert_eq!(behind.checkpoint().unwrap_err().kind(), "behind-floor");
    assert_eq!(
        behind.submit(lost.clone()).unwrap_err().kind(),
        "behind-floor"
    );
    assert_eq!(
        behind.size(),
        original.size() - 2,
        "a refusal changes nothing"
    );
    drop(behind);

    let mut resumed =
        Restore::resume(Box::new(Arc::clone(&store)), origin, key, Vec::new()).unwrap();
    assert_eq!(resumed.floor().checkpoint.size, original.size());
    let all = lines(&export);
    resumed
        .append(&all[usize::try_from(resumed.size()).unwrap()..])
        .unwrap();
    assert_eq!(resumed.finish().missing(), 0);

    let whole = Ledger::open(Box::new(Arc::clone(&store)), config()).unwrap();
    assert!(whole.behind_floor().is_none());
    assert_eq!(
        (whole.size(), whole.root()),
        (original.size(), original.root())
    );
    assert_eq!(whole.checkpoint().unwrap(), floor);
    assert!(whole.submit(lost).unwrap().duplicate);
    submit(
        &whole,
        "T-after",
        transfer("1"),
        &["two-mountains-bank", "enterprise-a"],
    );
}

/// A copy of the log that is not the history the floor commits to (the same key, another root)
/// is refused where it departs; two checkpoints of one size with different roots are refused
/// before anything is written.
#[test]
fn a_copy_that_contradicts_a_floor_or_two_floors_that_contradict_are_refused() {
    let original = Ledger::in_memory(config()).unwrap();
    populate(&original);
    let prefix_note = original.checkpoint().unwrap();
    let mut prefix = Vec::new();
    original.export(&mut prefix, None).unwrap();
    submit(
        &original,
        "T-a",
        transfer("1"),
        &["two-mountains-bank", "enterprise-a"],
    );
    let floor = original.checkpoint().unwrap();
    // Another history under the same key: the old backup restored, another entry after it.
    let other = Ledger::restore(
        Box::new(MemoryStore::new()),
        config(),
        &prefix[..],
        &prefix_note,
    )
    .unwrap();
    submit(
        &other,
        "T-b",
        transfer("2"),
        &["two-mountains-bank", "enterprise-a"],
    );
    let forked_note = other.checkpoint().unwrap();
    let mut forked_export = Vec::new();
    other.export(&mut forked_export, None).unwrap();

    let mut restore = Restore::begin(
        Box::new(MemoryStore::new()),
        config().origin,
        config().operator_key.verifying_key(),
        vec![(floor.clone(), "the bank".into())],
    )
    .unwrap();
    let error = restore.append(&lines(&forked_export)).unwrap_err();
    assert_eq!(error.kind(), "integrity");
    assert!(
        error
            .to_string()
            .contains("contradict the checkpoint of size"),
        "{error}"
    );
    assert!(error.to_string().contains("the bank"), "{error}");

    let error = Restore::begin(
        Box::new(MemoryStore::new()),
        config().origin,
        config().operator_key.verifying_key(),
        vec![
            (floor, "the bank".into()),
            (forked_note, "a witness".into()),
        ],
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("signed two histories"),
        "{error}"
    );
}

/// Regression: an entry signed with a key rotated in earlier in the same group was refused
/// before sequencing, because signatures were checked against the keys of before the group.
#[test]
fn a_group_may_rotate_a_key_and_sign_with_the_new_one() {
    for store in stores::each_store("a_group_may_rotate_a_key_and_sign_with_the_new_one") {
        eprintln!("a_group_may_rotate_a_key_and_sign_with_the_new_one: {store}");
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        let new_key = signing_key("two-mountains-bank/rotated");
        let rotation = platform_rotation("rot-g", &new_key);
        let trade = transfer_signed_with("T-g", "2", &new_key);
        let group = vec![
            Prepared::new(rotation).unwrap(),
            Prepared::new(trade).unwrap(),
        ];
        ledger.submit_group(group).unwrap();
        assert_eq!(available(&ledger, "enterprise-a"), "2".parse().unwrap());
    }
}

/// Group commit: while one durable write is under way, the submissions that arrive queue up and
/// go to the store together in the next one; sixteen submitters never mean sixteen writes.
#[test]
fn concurrent_submitters_share_durable_writes() {
    // A store that, once made slow, takes 250 ms per durable write, like a very slow disk: long
    // enough that every submitter has queued during the first write, even on a loaded machine
    // with a debug build.
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let switch = Arc::clone(&slow);
    let store = HookedStore::new(MemoryStore::new(), move |_| {
        if switch.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    });
    let ledger = Arc::new(Ledger::open(Box::new(store), config()).unwrap());
    populate(&ledger);
    slow.store(true, std::sync::atomic::Ordering::Relaxed);
    let before = ledger.write_stats();
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let id = format!("T-group-{i}");
                let submission = signed(
                    body(&id, transfer("1")),
                    &["two-mountains-bank", "enterprise-a"],
                );
                barrier.wait();
                ledger.submit(submission).unwrap()
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let after = ledger.write_stats();
    let (writes, entries) = (
        after.durable_writes - before.durable_writes,
        after.entries - before.entries,
    );
    assert_eq!(entries, 16);
    assert!(
        writes <= 4,
        "16 concurrent entries took {writes} durable writes"
    );
}

/// Regression: the same signed entry resubmitted after its signer rotated keys was refused as a
/// bad signature (it was checked against the new key before being recognised), and a forged copy
/// of an accepted entry submitted in a group was answered with the first receipt.
#[test]
fn a_resubmission_is_recognised_by_its_signatures_not_just_its_body() {
    for store in
        stores::each_store("a_resubmission_is_recognised_by_its_signatures_not_just_its_body")
    {
        eprintln!("a_resubmission_is_recognised_by_its_signatures_not_just_its_body: {store}");
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        let original = signed(
            body("T-keep", transfer("3")),
            &["two-mountains-bank", "enterprise-a"],
        );
        let first = ledger.submit(original.clone()).unwrap();

        let new_key = signing_key("two-mountains-bank/next");
        ledger
            .submit(platform_rotation("rot-keep", &new_key))
            .unwrap();
        let again = ledger.submit(original.clone()).unwrap();
        assert!(again.duplicate);
        assert_eq!((again.seq, again.leaf_hash), (first.seq, first.leaf_hash));

        // The same body under a forged signature is not the same signed entry, alone or in a group.
        let mut forged = original;
        forged.signatures[1].sig.0[0] ^= 1;
        assert_eq!(
            ledger.submit(forged.clone()).unwrap_err().kind(),
            "bad-signature"
        );
        let err = ledger
            .submit_group(vec![Prepared::new(forged).unwrap()])
            .unwrap_err();
        assert_eq!(err.kind(), "bad-signature", "{err}");
    }
}

/// A store written in layout 1 (trades and certificates keyed by entry id, a table of latest
/// prices) is rewritten once into layout 2 when opened: lookups by id, pages and a full
/// verification (which compares every stored row with a replay) all agree.
#[test]
fn a_layout_1_store_is_migrated_on_open() {
    use ledger_core::state::{PageRequest, StateChange};
    use ledger_core::store::{Append, RowRange, Store};
    let memory = Arc::new(MemoryStore::new());
    let ledger = Ledger::open(Box::new(Arc::clone(&memory)), config()).unwrap();
    populate_with_a_retirement(&ledger, "CERT-M");
    drop(ledger);

    // Rewrite the history rows as layout 1 kept them.
    let mut changes = Vec::new();
    for (table, index_tables) in [
        (
            "trades",
            &["trades_by_party", "trades_by_batch", "trades_by_kind"][..],
        ),
        ("certificates", &["certificates_by_holder"][..]),
    ] {
        memory
            .scan_state(Some(table), RowRange::default(), &mut |_, key, value| {
                let row: serde_json::Value = serde_json::from_slice(value).unwrap();
                let id = serde_json::to_vec(&row["id"]).unwrap();
                changes.push(StateChange {
                    table,
                    key: key.to_vec(),
                    value: None,
                });
                changes.push(StateChange {
                    table,
                    key: id,
                    value: Some(value.to_vec()),
                });
                Ok(true)
            })
            .unwrap();
        for index in index_tables {
            memory
                .scan_state(Some(index), RowRange::default(), &mut |_, key, _| {
                    changes.push(StateChange {
                        table: index,
                        key: key.to_vec(),
                        value: None,
                    });
                    Ok(true)
                })
                .unwrap();
        }
    }
    changes.push(StateChange {
        table: "latest_prices",
        key: b"\"benchmark\"".to_vec(),
        value: Some(b"\"BM-2022-06\"".to_vec()),
    });
    let mut meta = memory.meta().unwrap().unwrap();
    meta.layout = 1;
    memory
        .append(Append {
            first_seq: meta.size,
            leaves: &[],
            nodes: &[],
            state: &changes,
            meta: Some(&meta),
        })
        .unwrap();
    let reopened = Ledger::open(Box::new(Arc::clone(&memory)), config()).unwrap();
    assert_eq!(
        memory.meta().unwrap().unwrap().layout,
        ledger_core::store::LAYOUT
    );
    let trade = reopened
        .read(|s| s.trade(&"T-2022-0001".parse().unwrap()))
        .unwrap()
        .unwrap();
    assert_eq!(trade.amount, Some("588300.00".parse().unwrap()));
    let page = reopened
        .certificate_page(
            &Default::default(),
            PageRequest {
                after: None,
                limit: 10,
                newest_first: false,
            },
        )
        .unwrap();
    assert_eq!(page.items.len(), 1);
    reopened.verify_full().unwrap();
}

/// A sled store written with a row per Merkle node (before node blocks) is converted when it
/// opens: its nodes go into blocks, its layout number stays, and proofs and a full verification
/// read the same tree as before.
#[test]
fn a_sled_store_with_a_row_per_node_is_converted_to_node_blocks_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_dir(dir.path(), config()).unwrap();
    populate(&ledger);
    let size = ledger.size();
    let before: Vec<_> = (0..size)
        .map(|seq| ledger.inclusion_proof(seq, None).unwrap().proof)
        .collect();
    let consistency = ledger.consistency_proof(3, None).unwrap().proof;
    drop(ledger);

    // Rewrite the store as the version before kept it. A block: a bitmap of its 30 slots (4
    // bytes), then 32 bytes a slot; its key: b'B', the band of four levels, the block's index.
    {
        let db = sled::open(dir.path()).unwrap();
        let mut rows = 0;
        for row in db.scan_prefix(b"B") {
            let (key, block) = row.unwrap();
            let (band, index) = (key[1], u64::from_be_bytes(key[2..10].try_into().unwrap()));
            let mut first = 0;
            for step in 0..4u8 {
                let width = 16usize >> step;
                for column in 0..width {
                    let slot = first + column;
                    if block[slot / 8] & (1 << (slot % 8)) != 0 {
                        let mut node = vec![b'N', band * 4 + step];
                        let at = index * width as u64 + column as u64;
                        node.extend_from_slice(&at.to_be_bytes());
                        db.insert(node, &block[4 + 32 * slot..4 + 32 * (slot + 1)])
                            .unwrap();
                        rows += 1;
                    }
                }
                first += width;
            }
            db.remove(key).unwrap();
        }
        assert!(rows as u64 >= size, "{rows} node rows for {size} leaves");
        db.flush().unwrap();
    }

    let reopened = Ledger::open_dir(dir.path(), config()).unwrap();
    for (seq, proof) in before.iter().enumerate() {
        assert_eq!(
            &reopened.inclusion_proof(seq as u64, None).unwrap().proof,
            proof
        );
    }
    assert_eq!(
        reopened.consistency_proof(3, None).unwrap().proof,
        consistency
    );
    reopened.verify_full().unwrap();
    drop(reopened);
    let db = sled::open(dir.path()).unwrap();
    assert_eq!(db.scan_prefix(b"N").count(), 0);
    let meta: serde_json::Value = serde_json::from_slice(&db.get(b"M").unwrap().unwrap()).unwrap();
    assert_eq!(meta["layout"], json!(ledger_core::store::LAYOUT));
}

/// A full verification finds a stored state row that a replay of the entries does not give:
/// changed, removed or added, in the market's current state and in each kind of history table;
/// and it passes on the untouched store.
#[test]
fn verify_full_finds_every_kind_of_stored_row_the_entries_do_not_give() {
    use ledger_core::state::StateChange;
    use ledger_core::store::{Append, RowRange, Store};
    for table in [
        "balances",
        "entries",
        "trades",
        "trades_by_party",
        "trades_by_kind",
        "certificates",
        "certificates_by_holder",
    ] {
        for how in ["changed", "removed", "added"] {
            let memory = Arc::new(MemoryStore::new());
            let ledger = Ledger::open(Box::new(Arc::clone(&memory)), config()).unwrap();
            populate_with_a_retirement(&ledger, "CERT-V");
            ledger.verify_full().unwrap();
            drop(ledger);
            let mut row = None;
            memory
                .scan_state(Some(table), RowRange::default(), &mut |_, key, value| {
                    row = Some((key.to_vec(), value.to_vec()));
                    Ok(false)
                })
                .unwrap();
            let (key, value) = row.unwrap_or_else(|| panic!("no row in {table}"));
            let change = match how {
                // The same JSON with a space before its last character.
                "changed" => {
                    let mut changed = value.clone();
                    changed.insert(value.len() - 1, b' ');
                    (key, Some(changed))
                }
                "removed" => (key, None),
                // The same value under another key.
                _ => {
                    let mut other = key.clone();
                    other.insert(1, b'0');
                    (other, Some(value))
                }
            };
            let size = memory.meta().unwrap().unwrap().size;
            memory
                .append(Append {
                    first_seq: size,
                    leaves: &[],
                    nodes: &[],
                    state: &[StateChange {
                        table,
                        key: change.0,
                        value: change.1,
                    }],
                    meta: None,
                })
                .unwrap();
            let error = Ledger::open(Box::new(Arc::clone(&memory)), config())
                .and_then(|ledger| ledger.verify_full())
                .expect_err(&format!("a row of {table} {how}"));
            assert!(
                error.to_string().contains(table),
                "a row of {table} {how}: {error}"
            );
        }
    }
}

/// Every store reads several Merkle nodes at once as it reads each alone: in the order asked,
/// with `None` for a node not stored.
#[test]
fn every_store_reads_many_nodes_at_once_as_it_reads_each() {
    use ledger_core::merkle::NodeId;
    for store in stores::each_store("every_store_reads_many_nodes_at_once_as_it_reads_each") {
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        let size = ledger.size();
        drop(ledger);
        let opened = store.store();
        let ids: Vec<NodeId> = (0..6u8)
            .flat_map(|level| (0..(size >> level) + 2).map(move |index| NodeId { level, index }))
            .rev()
            .collect();
        let one_by_one: Vec<_> = ids.iter().map(|&id| opened.node(id).unwrap()).collect();
        assert_eq!(opened.nodes(&ids).unwrap(), one_by_one, "{store}");
        assert!(one_by_one.iter().filter(|n| n.is_some()).count() as u64 >= size);
        assert!(one_by_one.first().unwrap().is_none());
    }
}

/// A full check compares every Merkle node the replay completes with the one stored, and names
/// the first entry whose stored node is wrong: on the embedded stores, whose nodes an append can
/// overwrite (PostgreSQL's are insert-only: an append that names a stored node fails).
#[test]
fn a_full_check_names_the_entry_whose_stored_merkle_node_is_wrong() {
    use ledger_core::merkle::NodeId;
    use ledger_core::store::Append;
    for store in
        stores::each_store("a_full_check_names_the_entry_whose_stored_merkle_node_is_wrong")
    {
        if matches!(store, stores::TestStore::Postgres(_)) {
            continue;
        }
        let ledger = store.open(config()).unwrap();
        populate(&ledger);
        ledger.verify_full().unwrap();
        let size = ledger.size();
        assert!(size >= 8, "{store}");
        drop(ledger);
        // The node over leaves 2 and 3, which entry 3 completes; inside a larger perfect subtree,
        // so that opening (which reads the peaks) does not see it.
        store
            .store()
            .append(Append {
                first_seq: size,
                leaves: &[],
                nodes: &[(NodeId { level: 1, index: 1 }, [7; 32])],
                state: &[],
                meta: None,
            })
            .unwrap();
        let error = store.open(config()).unwrap().verify_full().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("entry 3: the stored Merkle node at level 1 index 1 is wrong"),
            "{store}: {error}"
        );
    }
}
