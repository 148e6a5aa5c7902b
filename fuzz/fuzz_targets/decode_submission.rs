//! Strict decoding of a client's submission bytes.
//!
//! Never panics; on success the canonical body is exactly JCS of the typed body, and the typed
//! submission written back out as JSON decodes again to the same canonical body.
#![no_main]

use ledger_core::{canonical, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(prepared) = wire::decode_submission(data) else {
        return;
    };
    let body =
        canonical::to_canonical(&prepared.submission().body).expect("a decoded body re-encodes");
    assert_eq!(
        body,
        prepared.canonical_body(),
        "canonical body differs from JCS of the typed body"
    );

    let again = serde_json::to_vec(prepared.submission()).expect("a decoded submission serializes");
    let reparsed = wire::decode_submission(&again)
        .unwrap_or_else(|e| panic!("re-encoded submission does not decode: {e}"));
    assert_eq!(reparsed.canonical_body(), prepared.canonical_body());
    assert_eq!(reparsed.body_digest(), prepared.body_digest());
    assert_eq!(reparsed.submission(), prepared.submission());
});
