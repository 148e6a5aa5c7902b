//! The wire contract's test vectors (testdata/entry-vectors.json, made by an independent
//! generator): the ledger must reproduce every byte, refuse every negative case with its kind, and
//! docs/ledger-format.md must show the same values.

use ed25519_dalek::SigningKey;
use ledger_core::canonical::to_canonical;
use ledger_core::entry::{Body, EntryKind, RegisterParticipant};
use ledger_core::ids::Role;
use ledger_core::ledger::{Ledger, LedgerConfig};
use ledger_core::merkle::leaf_hash;
use ledger_core::sign::sign_body;
use ledger_core::wire::{signing_message, Envelope};
use serde_json::Value;
use sha2::{Digest, Sha256};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/entry-vectors.json"
));
const FORMAT_DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/ledger-format.md"
));

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn seed_key(seed_hex: &str) -> SigningKey {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(seed_hex, &mut seed).unwrap();
    SigningKey::from_bytes(&seed)
}

fn key_of(v: &Value, participant: &str) -> SigningKey {
    let entry = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["participant"] == participant)
        .unwrap();
    seed_key(entry["seed"].as_str().unwrap())
}

#[test]
fn every_entry_vector_is_reproduced_byte_for_byte() {
    let v = vectors();
    for case in v["entries"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let body: Body = serde_json::from_value(case["body"].clone()).unwrap();
        let jcs = to_canonical(&body).unwrap();
        assert_eq!(
            String::from_utf8(jcs.clone()).unwrap(),
            case["jcs"].as_str().unwrap(),
            "{name}: JCS"
        );
        let digest = hex::encode(Sha256::digest(signing_message(&jcs)));
        assert_eq!(
            digest,
            case["signing_message_sha256"].as_str().unwrap(),
            "{name}: message"
        );

        let signers: Vec<(ledger_core::ids::ParticipantId, SigningKey)> = case["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let who = s["signer"].as_str().unwrap();
                (who.parse().unwrap(), key_of(&v, who))
            })
            .collect();
        let pairs: Vec<_> = signers.iter().map(|(id, key)| (id, key)).collect();
        let submission = sign_body(body, &pairs).unwrap();
        assert_eq!(
            serde_json::to_value(&submission.signatures).unwrap(),
            case["signatures"],
            "{name}: signatures"
        );

        let leaf = case["leaf"].as_str().unwrap().as_bytes();
        let envelope = Envelope::from_leaf(leaf).unwrap();
        assert_eq!(envelope.entry, submission, "{name}: envelope entry");
        assert_eq!(envelope.leaf_bytes().unwrap(), leaf, "{name}: leaf bytes");
        assert_eq!(
            serde_json::to_value(&envelope).unwrap(),
            case["envelope"],
            "{name}: envelope"
        );
        assert_eq!(
            hex::encode(leaf_hash(leaf)),
            case["leaf_hash"].as_str().unwrap(),
            "{name}: leaf hash"
        );
    }
}

/// A ledger with the vectors' origin and participants registered.
fn vector_ledger(v: &Value) -> Ledger {
    let operator_key = seed_key(&"01".repeat(32));
    let mut config = LedgerConfig::new(
        v["origin"].as_str().unwrap().parse().unwrap(),
        "operator".parse().unwrap(),
        "Vector operator".parse().unwrap(),
        operator_key.clone(),
    );
    // The vectors are signed once and for all, so this ledger accepts entries of any age.
    config.entry_max_age = time::Duration::days(100 * 365);
    let ledger = Ledger::in_memory(config).unwrap();
    let roles = [
        ("xiazhuhu-wetland", Role::Proponent),
        ("two-mountains-bank", Role::Platform),
        ("enterprise-a", Role::Enterprise),
    ];
    for (who, role) in roles {
        let key = key_of(v, who);
        let body = Body {
            id: format!("reg-{who}").parse().unwrap(),
            ledger: v["origin"].as_str().unwrap().parse().unwrap(),
            created_at: "2022-01-01T00:00:00Z".parse().unwrap(),
            kind: EntryKind::RegisterParticipant(RegisterParticipant {
                participant: who.parse().unwrap(),
                name: who.parse().unwrap(),
                roles: vec![role],
                public_key: key.verifying_key().into(),
            }),
        };
        let operator = "operator".parse().unwrap();
        let id = who.parse().unwrap();
        ledger
            .submit(sign_body(body, &[(&operator, &operator_key), (&id, &key)]).unwrap())
            .unwrap();
    }
    ledger
}

#[test]
fn every_negative_vector_is_refused_with_its_kind_and_changes_nothing() {
    let v = vectors();
    let ledger = vector_ledger(&v);
    let (size, root) = (ledger.size(), ledger.root());
    for case in v["negative"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let bytes = match case.get("text") {
            Some(text) => text.as_str().unwrap().as_bytes().to_vec(),
            None => serde_json::to_vec(&case["submission"]).unwrap(),
        };
        let err = ledger.submit_bytes(&bytes).expect_err(name);
        assert_eq!(
            err.kind(),
            case["expect"].as_str().unwrap(),
            "{name}: {err}"
        );
        assert_eq!(
            (ledger.size(), ledger.root()),
            (size, root),
            "{name} changed the ledger"
        );
    }
}

#[test]
fn the_format_document_shows_the_vectors_the_tests_check() {
    let v = vectors();
    let first = &v["entries"][0];
    for needle in [
        first["jcs"].as_str().unwrap(),
        first["leaf"].as_str().unwrap(),
        first["leaf_hash"].as_str().unwrap(),
        first["signatures"][0]["sig"].as_str().unwrap(),
        first["signatures"][1]["sig"].as_str().unwrap(),
        v["keys"][0]["public_key"].as_str().unwrap(),
    ] {
        assert!(
            FORMAT_DOC.contains(needle),
            "docs/ledger-format.md lacks {needle}"
        );
    }
    let checkpoint: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/checkpoint.json"
    )))
    .unwrap();
    assert!(
        FORMAT_DOC.contains(checkpoint["note"].as_str().unwrap().lines().last().unwrap()),
        "checkpoint note"
    );
    let merkle: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/merkle.json"
    )))
    .unwrap();
    for root in merkle["roots"].as_array().unwrap() {
        assert!(
            FORMAT_DOC.contains(root["root"].as_str().unwrap()),
            "merkle root of size {}",
            root["size"]
        );
    }
}
