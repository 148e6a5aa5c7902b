//! The decimal parsers of `ledger_core::num`.
//!
//! Never panics; an accepted string prints back exactly as written (the parsers keep the written
//! scale) and has no more places than the type allows.
#![no_main]

use std::str::FromStr;

use ledger_core::num::{Amount, Hectares, Quantity, Rate, UnitPrice};
use libfuzzer_sys::fuzz_target;

fn check<T: FromStr + ToString + serde::Serialize>(
    text: &str,
    max_places: u32,
    value: impl Fn(&T) -> u32,
) {
    if let Ok(parsed) = text.parse::<T>() {
        assert_eq!(parsed.to_string(), text, "does not print back as written");
        let scale = value(&parsed);
        assert!(
            scale <= max_places,
            "{text:?} kept {scale} places, more than {max_places}"
        );
        // Through JSON, as on the wire.
        let json = serde_json::to_string(&parsed).expect("a decimal serializes");
        assert_eq!(json, format!("\"{text}\""));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check::<Quantity>(text, Quantity::MAX_PLACES, |v| v.value().scale());
    check::<Amount>(text, Amount::MAX_PLACES, |v| v.value().scale());
    check::<UnitPrice>(text, UnitPrice::MAX_PLACES, |v| v.value().scale());
    check::<Rate>(text, Rate::MAX_PLACES, |v| v.value().scale());
    check::<Hectares>(text, Hectares::MAX_PLACES, |v| v.value().scale());

    // The serde path (a JSON string) must agree with FromStr.
    let json = serde_json::to_string(text).expect("a string serializes");
    let via_serde = serde_json::from_str::<Quantity>(&json).ok();
    assert_eq!(via_serde, text.parse::<Quantity>().ok());
    let via_serde = serde_json::from_str::<Amount>(&json).ok();
    assert_eq!(via_serde, text.parse::<Amount>().ok());
});
