//! Reading an envelope back from leaf bytes.
//!
//! Never panics; an accepted leaf is exactly the JCS of the envelope read from it.
#![no_main]

use ledger_core::wire::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::from_leaf(data) else {
        return;
    };
    let leaf = envelope
        .leaf_bytes()
        .expect("an accepted envelope re-encodes");
    assert_eq!(leaf, data, "leaf bytes do not round-trip");
    // Reading the re-encoded leaf gives the same envelope.
    let again = Envelope::from_leaf(&leaf).expect("re-encoded leaf is accepted");
    assert_eq!(again, envelope);
});
