//! Bytes flipped or cut off in the sled store: opening or `verify_full` must find it, or — when
//! the damage hit bytes the store no longer uses — everything must read back exactly as before.
//! Never wrong balances, never a checkpoint that contradicts the one signed before.

mod common;

use std::path::Path;

use common::{body, pid, signing_key, LEDGER, REFERENCE_PARTICIPANTS};
use ledger_core::ledger::{Ledger, LedgerConfig};
use ledger_core::sign::sign_body;
use serde_json::json;

const OPERATOR: &str = "deqing-registry";

fn config() -> LedgerConfig {
    LedgerConfig::new(
        LEDGER.parse().unwrap(),
        pid(OPERATOR),
        "operator".parse().unwrap(),
        signing_key(OPERATOR),
    )
}

fn signed(b: ledger_core::entry::Body, signers: &[&str]) -> ledger_core::entry::Submission {
    let ids: Vec<_> = signers.iter().map(|s| pid(s)).collect();
    let keys: Vec<_> = signers.iter().map(|s| signing_key(s)).collect();
    let pairs: Vec<_> = ids.iter().zip(keys.iter()).collect();
    sign_body(b, &pairs).unwrap()
}

/// What must read back unchanged: size, root, checkpoint, and every balance of the batch.
#[derive(Debug, PartialEq)]
struct Snapshot {
    size: u64,
    root: [u8; 32],
    checkpoint: String,
    balances: Vec<(String, String, String)>,
}

fn snapshot(ledger: &Ledger) -> Snapshot {
    let batch = "XZH-2021".parse().unwrap();
    Snapshot {
        size: ledger.size(),
        root: ledger.root(),
        checkpoint: ledger.checkpoint().unwrap(),
        balances: REFERENCE_PARTICIPANTS
            .iter()
            .map(|(id, _, _)| {
                let b = ledger.read(|s| s.balance(&pid(id), &batch));
                (
                    id.to_string(),
                    b.available.to_string(),
                    b.pledged.to_string(),
                )
            })
            .collect(),
    }
}

fn populate(dir: &Path) -> Snapshot {
    let ledger = Ledger::open_dir(dir, config()).unwrap();
    for (id, name, roles) in &REFERENCE_PARTICIPANTS[1..] {
        ledger
            .submit(signed(
                common::registration(id, name, roles),
                &[OPERATOR, id],
            ))
            .unwrap();
    }
    for (id, fields, signers) in common::reference_setup() {
        ledger.submit(signed(body(id, fields), &signers)).unwrap();
    }
    for i in 0..40 {
        let id = format!("T-{i}");
        let fields = json!({"type": "trade", "kind": "transfer", "seller": "xiazhuhu-wetland",
            "buyer": "two-mountains-bank", "batch": "XZH-2021", "quantity": format!("{}.5", i + 1)});
        ledger
            .submit(signed(
                body(&id, fields),
                &["xiazhuhu-wetland", "two-mountains-bank"],
            ))
            .unwrap();
    }
    snapshot(&ledger)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    RefusedToOpen,
    /// It opened with fewer entries than the checkpoint kept apart: it answers reads and refuses
    /// to write or sign until the missing entries are restored.
    BehindFloor,
    FoundByVerify,
    Unharmed,
}

/// Opens a damaged copy and classifies what happened; panics if damage went unnoticed.
fn examine(dir: &Path, pristine: &Snapshot, what: &str) -> Outcome {
    let Ok(ledger) = Ledger::open_dir(dir, config()) else {
        return Outcome::RefusedToOpen;
    };
    if let Some(refusal) = ledger.behind_floor() {
        assert_eq!(refusal.kind(), "behind-floor", "{what}");
        assert!(
            ledger.checkpoint().is_err(),
            "{what}: a ledger behind its floor signed"
        );
        return Outcome::BehindFloor;
    }
    if ledger.verify_full().is_err() {
        return Outcome::FoundByVerify;
    }
    assert_eq!(
        &snapshot(&ledger),
        pristine,
        "{what}: damage went unnoticed"
    );
    Outcome::Unharmed
}

#[test]
fn flipped_and_truncated_bytes_are_found_or_harmless() {
    let pristine_dir = tempfile::tempdir().unwrap();
    let pristine = populate(pristine_dir.path());
    let data_file = pristine_dir.path().join("db");
    let length = std::fs::metadata(&data_file).unwrap().len();
    assert!(length > 4096, "the data file is {length} bytes");

    let mut outcomes = Vec::new();
    // Flips spread over the whole data file, at a fixed stride so that the test is repeatable.
    let flips = 48u64;
    for k in 0..flips {
        let offset = (length * k) / flips + (k * 37) % 97;
        let copy = tempfile::tempdir().unwrap();
        copy_dir(pristine_dir.path(), copy.path());
        let file = copy.path().join("db");
        let mut bytes = std::fs::read(&file).unwrap();
        let at = usize::try_from(offset).unwrap().min(bytes.len() - 1);
        bytes[at] ^= 0x5a;
        std::fs::write(&file, bytes).unwrap();
        outcomes.push(examine(copy.path(), &pristine, &format!("flip at {at}")));
    }
    // Truncations: the tail of the data file lost.
    for keep in [length / 4, length / 2, length - 512, length - 1] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(pristine_dir.path(), copy.path());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(copy.path().join("db"))
            .unwrap();
        file.set_len(keep).unwrap();
        outcomes.push(examine(
            copy.path(),
            &pristine,
            &format!("truncated to {keep}"),
        ));
    }
    let detected = outcomes.iter().filter(|o| **o != Outcome::Unharmed).count();
    eprintln!(
        "{} damaged copies: {} refused to open, {} opened behind their floor, {} found by verify, {} unharmed",
        outcomes.len(),
        outcomes
            .iter()
            .filter(|o| **o == Outcome::RefusedToOpen)
            .count(),
        outcomes
            .iter()
            .filter(|o| **o == Outcome::BehindFloor)
            .count(),
        outcomes
            .iter()
            .filter(|o| **o == Outcome::FoundByVerify)
            .count(),
        outcomes.len() - detected,
    );
    // Most of the file is live data: most damage must be detected rather than be harmless.
    assert!(detected * 2 >= outcomes.len(), "{outcomes:?}");
}
