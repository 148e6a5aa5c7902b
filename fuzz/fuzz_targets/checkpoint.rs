//! Checkpoint bodies and signed notes.
//!
//! Never panics. A body that parses prints back as the very text it was parsed from; any text the
//! signer accepts opens again to the same text under the same key; a parsed checkpoint signed by
//! its origin opens to the same checkpoint. Arbitrary notes are also opened with a fixed key, which
//! exercises every refusal of `open_note` / `open_checkpoint` (a fuzzer cannot forge a signature).
#![no_main]

use std::sync::OnceLock;

use ledger_core::checkpoint::{self, Checkpoint};
use ledger_core::ed25519_dalek::{SigningKey, VerifyingKey};
use libfuzzer_sys::fuzz_target;

/// The key name (and origin) of testdata/checkpoint.json.
const KEY_NAME: &str = "ledger.example/carbon-sink";

/// The key of testdata/checkpoint.json: the seed 0x01 repeated, so its signed note opens.
fn keys() -> &'static (SigningKey, VerifyingKey) {
    static KEYS: OnceLock<(SigningKey, VerifyingKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signing = SigningKey::from_bytes(&[0x01; 32]);
        let verifying = signing.verifying_key();
        (signing, verifying)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (signing, verifying) = keys();

    // The input as a body.
    if let Ok(cp) = Checkpoint::parse_body(text) {
        assert_eq!(
            cp.body(),
            text,
            "a parsed body does not print back as written"
        );
        cp.validate().expect("a parsed checkpoint validates");
        if checkpoint::validate_key_name(&cp.origin).is_ok() {
            let note = checkpoint::sign_checkpoint(&cp, &cp.origin, signing)
                .expect("a parsed checkpoint can be signed by its origin");
            let opened = checkpoint::open_checkpoint(&note, &cp.origin, verifying)
                .unwrap_or_else(|e| panic!("own signed checkpoint does not open: {e}"));
            assert_eq!(opened, cp);
        }
    }

    // The input as a note to sign: what is signed opens to the same text.
    if let Ok(note) = checkpoint::sign_note(text, KEY_NAME, signing) {
        let opened = checkpoint::open_note(&note, KEY_NAME, verifying)
            .unwrap_or_else(|e| panic!("own signed note does not open: {e}"));
        assert_eq!(opened, text, "signed note opens to another text");
    }

    // The input as a signed note, against the fixed key.
    if let Ok(opened) = checkpoint::open_note(text, KEY_NAME, verifying) {
        assert!(text.starts_with(opened));
    }
    if let Ok(cp) = checkpoint::open_checkpoint(text, KEY_NAME, verifying) {
        assert_eq!(cp.origin, KEY_NAME);
        assert!(
            text.starts_with(&cp.body()),
            "opened checkpoint is not the signed text"
        );
    }
});
