//! The state commitment's test vectors (`testdata/state.json`, made by
//! `testdata/generate_state_vectors.py` with Python's `json` and `hashlib`, independently of this
//! crate): the committed rows of the reference case at a fixed time, their order, the state tree's
//! root and the checkpoint's state line, proofs of a row's presence and of a key's absence, and
//! altered proofs that must be refused. The ledger must reproduce every byte, and
//! docs/ledger-format.md must show the same values.

use ed25519_dalek::SigningKey;
use ledger_core::ledger::{Clock, Ledger, LedgerConfig};
use ledger_core::reference::{Expect, ReferenceCase};
use ledger_core::state::{verify_row_proof, RowProof, RowProofError, StateCommitment, StateRow};
use serde_json::Value;
use sha2::{Digest, Sha256};

const VECTORS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/state.json"));
const FORMAT_DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/ledger-format.md"
));

const ORIGIN: &str = "ledger.example/carbon-sink";
const OPERATOR: &str = "deqing-registry";

/// The reference case from 2022-06-01T09:00:00Z, every party's key seeded by SHA-256 of its id,
/// the operator's by 32 bytes of 0x01, on a ledger whose clock reads 2022-06-02T09:00:00Z.
fn reference_ledger() -> Ledger {
    let operator_key = SigningKey::from_bytes(&[1u8; 32]);
    let start = time::macros::datetime!(2022-06-01 09:00 UTC);
    let mut config = LedgerConfig::new(
        ORIGIN.parse().unwrap(),
        OPERATOR.parse().unwrap(),
        "德清县生态资源登记中心".parse().unwrap(),
        operator_key.clone(),
    );
    config.clock = Clock::from_fn(move || start + time::Duration::days(1));
    config.entry_max_age = time::Duration::days(30);
    let ledger = Ledger::in_memory(config).unwrap();
    let case = ReferenceCase::with_keys(ORIGIN, OPERATOR, operator_key, start, |id| {
        SigningKey::from_bytes(&Sha256::digest(id.as_bytes()).into())
    });
    for step in case.steps() {
        if step.expect == Expect::Accepted {
            ledger.submit(step.submission).unwrap();
        }
    }
    ledger
}

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn kind(error: &RowProofError) -> &'static str {
    match error {
        RowProofError::Malformed(_) => "malformed",
        RowProofError::NotIncluded { .. } => "not-included",
        RowProofError::WrongRow(_) => "wrong-row",
        _ => "other",
    }
}

fn commitment_of(v: &Value) -> StateCommitment {
    let mut root = [0u8; 32];
    hex::decode_to_slice(v["root"].as_str().unwrap(), &mut root).unwrap();
    StateCommitment {
        rows: v["rows"].as_array().unwrap().len() as u64,
        root,
    }
}

#[test]
fn the_ledger_commits_to_the_rows_of_the_vectors() {
    let v = vectors();
    let ledger = reference_ledger();
    let at = v["at"].as_str().unwrap().parse().unwrap();
    let rows: Vec<StateRow> = ledger.read(|s| s.state_rows(&at)).unwrap();
    let expected = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    for (row, want) in rows.iter().zip(expected) {
        assert_eq!(
            String::from_utf8(row.bytes.clone()).unwrap(),
            want["row"].as_str().unwrap()
        );
        assert_eq!(
            String::from_utf8(row.sort_key.clone()).unwrap(),
            want["sort_key"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(row.leaf_hash()),
            want["leaf_hash"].as_str().unwrap()
        );
    }
    // The signed checkpoint carries the state line, after the tree's three lines.
    let note = ledger.checkpoint().unwrap();
    assert_eq!(
        note.lines().nth(3).unwrap(),
        v["state_line"].as_str().unwrap(),
        "{note}"
    );
    assert_eq!(commitment_of(&v).line(), v["state_line"].as_str().unwrap());
}

#[test]
fn the_ledger_proves_rows_as_the_vectors_do_and_they_verify() {
    let v = vectors();
    let commitment = commitment_of(&v);
    let ledger = reference_ledger();
    for case in v["proofs"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let table = case["table"].as_str().unwrap();
        let key = &case["key"];
        let proof: RowProof = serde_json::from_value(case["proof"].clone()).unwrap();
        let sort_key = StateRow::sort_key_of(table, key).unwrap();
        let (_, ours) = ledger.checkpoint_proving(&[sort_key]).unwrap();
        assert_eq!(
            ours,
            std::slice::from_ref(&proof),
            "{name}: the ledger's proof differs"
        );
        let found = verify_row_proof(&proof, table, key, &commitment)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        match &proof {
            RowProof::Present(row) => {
                let row: Value = serde_json::from_str(&row.row).unwrap();
                assert_eq!(found.as_ref(), Some(&row[2]), "{name}");
            }
            RowProof::Absent { .. } => assert_eq!(found, None, "{name}"),
        }
    }
    for case in v["negative"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let proof: RowProof = serde_json::from_value(case["proof"].clone()).unwrap();
        let error = verify_row_proof(
            &proof,
            case["table"].as_str().unwrap(),
            &case["key"],
            &commitment,
        )
        .expect_err(name);
        assert_eq!(
            kind(&error),
            case["error"].as_str().unwrap(),
            "{name}: {error}"
        );
    }
}

#[test]
fn the_format_page_shows_the_state_vectors() {
    let v = vectors();
    let mut needles = vec![
        v["root"].as_str().unwrap().to_owned(),
        v["state_line"].as_str().unwrap().to_owned(),
    ];
    for row in v["rows"].as_array().unwrap() {
        needles.push(row["row"].as_str().unwrap().to_owned());
        needles.push(row["leaf_hash"].as_str().unwrap().to_owned());
    }
    let pledge = &v["proofs"][0]["proof"]["present"]["proof"];
    for hash in pledge.as_array().unwrap() {
        needles.push(hash.as_str().unwrap().to_owned());
    }
    for case in v["negative"].as_array().unwrap() {
        needles.push(format!("`{}`", case["name"].as_str().unwrap()));
    }
    for needle in needles {
        assert!(
            FORMAT_DOC.contains(&needle),
            "docs/ledger-format.md lacks {needle}"
        );
    }
}
