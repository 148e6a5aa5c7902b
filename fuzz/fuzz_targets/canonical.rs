//! RFC 8785 canonicalization of arbitrary JSON.
//!
//! Never panics; canonical output is valid JSON, and canonicalizing it again gives the same bytes
//! (idempotence). The one documented exception (ledger_core::canonical::MAX_SAFE_INTEGER): a
//! double of magnitude above 2^53 - 1 and below 10^21 is written in integer notation, which reads
//! back as an integer that is refused as unsafe; only that refusal is tolerated.
#![no_main]

use ledger_core::canonical::{self, CanonicalError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(first) = canonical::canonicalize(&value) else {
        return;
    };
    let reparsed: serde_json::Value = serde_json::from_slice(&first)
        .unwrap_or_else(|e| panic!("canonical output is not JSON: {e}"));
    match canonical::canonicalize(&reparsed) {
        Ok(second) => assert_eq!(
            String::from_utf8_lossy(&second),
            String::from_utf8_lossy(&first),
            "canonicalization is not idempotent"
        ),
        Err(CanonicalError::UnsafeInteger { .. }) => {}
        Err(e) => panic!("canonical output cannot be canonicalized again: {e}"),
    }
    // The strict parser the wire uses agrees on canonical output.
    if let Ok(strict) = ledger_core::wire::parse_strict(&first) {
        assert_eq!(strict, reparsed);
    }
});
