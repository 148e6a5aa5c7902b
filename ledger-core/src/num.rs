//! Exact numbers: tonnes of CO2e, money, unit prices, rates and areas.
//!
//! Every number on the wire is a JSON string such as `"58.83"`. The parsers here are the only way to
//! build these types, and they refuse anything a clerk could misread: exponents, signs, blanks,
//! leading zeros, a bare `.5` or `5.`, more decimal places than the quantity allows, and values out
//! of range. After parsing nothing re-checks: a [`Quantity`] is always positive with at most three
//! places.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NumberError {
    /// The string was empty.
    #[error("the {what} is empty; write it as a decimal string such as \"{example}\"")]
    Empty {
        /// What the number is (for example "quantity").
        what: &'static str,
        /// A well-formed example.
        example: &'static str,
    },
    /// A character other than digits and one decimal point (a sign, an exponent, a blank...).
    #[error("the {what} \"{text}\" is not a plain decimal: only digits and one decimal point are allowed (no signs, exponents, blanks or separators)")]
    NotPlainDecimal {
        /// What the number is.
        what: &'static str,
        /// The refused text (cut to 40 characters).
        text: String,
    },
    /// A leading zero such as `007`, or a missing digit before or after the point.
    #[error("the {what} \"{text}\" is not written the usual way: no leading zeros, and digits on both sides of a decimal point")]
    Malformed {
        /// What the number is.
        what: &'static str,
        /// The refused text.
        text: String,
    },
    /// More decimal places than the quantity allows.
    #[error("the {what} \"{text}\" has {found} decimal places; at most {max} are allowed")]
    TooManyPlaces {
        /// What the number is.
        what: &'static str,
        /// The refused text.
        text: String,
        /// Places allowed.
        max: u32,
        /// Places found.
        found: usize,
    },
    /// Too large for the ledger.
    #[error("the {what} \"{text}\" is too large; at most {max_digits} digits before the decimal point are allowed")]
    TooLarge {
        /// What the number is.
        what: &'static str,
        /// The refused text.
        text: String,
        /// Digits allowed before the point.
        max_digits: usize,
    },
    /// Outside the allowed range (zero where a positive number is needed, a rate of 1 or more...).
    #[error("the {what} {text} is out of range: it must be {range}")]
    OutOfRange {
        /// What the number is.
        what: &'static str,
        /// The refused text.
        text: String,
        /// The allowed range, in words.
        range: &'static str,
    },
}

struct Spec {
    what: &'static str,
    example: &'static str,
    max_places: u32,
    max_int_digits: usize,
}

/// Parses a plain decimal string by the given rules (range checks are left to the caller).
fn parse_plain(text: &str, spec: &Spec) -> Result<Decimal, NumberError> {
    let shown = || text.chars().take(40).collect::<String>();
    if text.is_empty() {
        return Err(NumberError::Empty {
            what: spec.what,
            example: spec.example,
        });
    }
    if !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') || text.matches('.').count() > 1 {
        return Err(NumberError::NotPlainDecimal {
            what: spec.what,
            text: shown(),
        });
    }
    let (int_part, frac_part) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    let leading_zero = int_part.len() > 1 && int_part.starts_with('0');
    if int_part.is_empty() || leading_zero || frac_part.is_some_and(str::is_empty) {
        return Err(NumberError::Malformed {
            what: spec.what,
            text: shown(),
        });
    }
    let places = frac_part.map_or(0, str::len);
    if places > spec.max_places as usize {
        return Err(NumberError::TooManyPlaces {
            what: spec.what,
            text: shown(),
            max: spec.max_places,
            found: places,
        });
    }
    if int_part.len() > spec.max_int_digits {
        return Err(NumberError::TooLarge {
            what: spec.what,
            text: shown(),
            max_digits: spec.max_int_digits,
        });
    }
    // Digits and places are bounded above, so the conversion cannot overflow.
    Decimal::from_str(text).map_err(|_| NumberError::NotPlainDecimal {
        what: spec.what,
        text: shown(),
    })
}

fn string_serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

/// Deserializes from a JSON string only: a JSON number is refused so that no float ever carries money.
fn string_deserialize<'de, D: Deserializer<'de>, T: FromStr<Err = NumberError>>(
    d: D,
    what: &'static str,
) -> Result<T, D::Error> {
    struct V<T> {
        what: &'static str,
        _t: std::marker::PhantomData<T>,
    }
    impl<T: FromStr<Err = NumberError>> serde::de::Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "the {} as a decimal string such as \"10.5\"", self.what)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }
    d.deserialize_str(V {
        what,
        _t: std::marker::PhantomData,
    })
}

macro_rules! decimal_newtype {
    ($(#[$m:meta])* $name:ident, $what:literal, $example:literal, places = $places:expr, int_digits = $digits:expr, check = $check:expr, range = $range:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Decimal);

        impl $name {
            /// Decimal places allowed.
            pub const MAX_PLACES: u32 = $places;

            /// The exact value.
            pub fn value(self) -> Decimal {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = NumberError;
            fn from_str(text: &str) -> Result<Self, NumberError> {
                let spec = Spec { what: $what, example: $example, max_places: $places, max_int_digits: $digits };
                let value = parse_plain(text, &spec)?;
                let check: fn(Decimal) -> bool = $check;
                if !check(value) {
                    return Err(NumberError::OutOfRange { what: $what, text: text.to_owned(), range: $range });
                }
                Ok(Self(value))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                string_serialize(&self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                string_deserialize(d, $what)
            }
        }
    };
}

decimal_newtype!(
    /// A quantity of carbon sink in tonnes of CO2e: positive, at most 3 places (1 kg).
    Quantity, "quantity", "10000.000", places = 3, int_digits = 12,
    check = |d| d > Decimal::ZERO, range = "greater than 0 t"
);
decimal_newtype!(
    /// A positive sum of money: at most 2 places (the fen), in the currency stated beside it.
    Amount, "amount", "588300.00", places = 2, int_digits = 15,
    check = |d| d > Decimal::ZERO, range = "greater than 0.00"
);
decimal_newtype!(
    /// The price of one tonne: positive, at most 4 places.
    UnitPrice, "unit price", "58.83", places = 4, int_digits = 9,
    check = |d| d > Decimal::ZERO, range = "greater than 0"
);
decimal_newtype!(
    /// A share such as a buffer rate or a haircut: at least 0 and below 1, at most 4 places.
    Rate, "rate", "0.10", places = 4, int_digits = 1,
    check = |d| d < Decimal::ONE, range = "at least 0 and less than 1"
);
decimal_newtype!(
    /// A ratio such as a pledge's margin threshold (collateral value ÷ loan): positive, at most
    /// 4 places, below 1,000.
    Ratio, "ratio", "1.25", places = 4, int_digits = 3,
    check = |d| d > Decimal::ZERO, range = "greater than 0"
);
decimal_newtype!(
    /// An area in hectares (1 ha = 15 mu): positive, at most 4 places.
    Hectares, "area", "593.3", places = 4, int_digits = 9,
    check = |d| d > Decimal::ZERO, range = "greater than 0 ha"
);

impl Hectares {
    /// The same area in mu (亩), the unit Chinese registries show.
    pub fn mu(self) -> Decimal {
        self.0 * Decimal::from(15)
    }
}

/// The same value written with `places` decimal places (it has no more than that).
fn with_places(mut value: Decimal, places: u32) -> Decimal {
    value.rescale(places);
    value
}

macro_rules! measure {
    ($(#[$m:meta])* $name:ident, $what:literal, places = $places:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Decimal);

        impl $name {
            /// Decimal places every value is written with.
            pub const PLACES: u32 = $places;

            /// Zero, written with its places.
            pub fn zero() -> Self {
                Self(Decimal::new(0, $places))
            }

            /// The value, written with exactly its places. The value must have no more places
            /// than that (sums and differences of such values never do).
            pub fn exact(value: Decimal) -> Self {
                Self(with_places(value, $places))
            }

            /// The value rounded half away from zero (四舍五入) to its places.
            pub fn round(value: Decimal) -> Self {
                Self(with_places(
                    value.round_dp_with_strategy($places, RoundingStrategy::MidpointAwayFromZero),
                    $places,
                ))
            }

            /// The exact value.
            pub fn value(self) -> Decimal {
                self.0
            }

            /// Whether it is zero.
            pub fn is_zero(self) -> bool {
                self.0.is_zero()
            }

            /// Whether it is below zero (never, for a figure the ledger keeps).
            pub fn is_negative(self) -> bool {
                self.0 < Decimal::ZERO
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::zero()
            }
        }

        /// Parses a plain decimal (zero allowed) with at most its places, as the wire writes
        /// figures.
        impl FromStr for $name {
            type Err = NumberError;
            fn from_str(text: &str) -> Result<Self, NumberError> {
                let spec = Spec { what: $what, example: "0", max_places: $places, max_int_digits: 15 };
                parse_plain(text, &spec).map(Self::exact)
            }
        }

        impl std::ops::Add for $name {
            type Output = Self;
            fn add(self, other: Self) -> Self {
                Self::exact(self.0 + other.0)
            }
        }

        impl std::ops::Sub for $name {
            type Output = Self;
            fn sub(self, other: Self) -> Self {
                Self::exact(self.0 - other.0)
            }
        }

        impl std::ops::Neg for $name {
            type Output = Self;
            fn neg(self) -> Self {
                Self::exact(-self.0)
            }
        }

        impl std::ops::AddAssign for $name {
            fn add_assign(&mut self, other: Self) {
                *self = *self + other;
            }
        }

        impl std::ops::SubAssign for $name {
            fn sub_assign(&mut self, other: Self) {
                *self = *self - other;
            }
        }

        impl std::iter::Sum for $name {
            fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
                iter.fold(Self::zero(), |a, b| a + b)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        /// Written as a JSON string with exactly its places.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                string_serialize(&self.0, s)
            }
        }

        /// Read from a decimal (a stored row); written back with exactly its places.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = <Decimal as Deserialize>::deserialize(d)?;
                if value.scale() > $places {
                    return Err(serde::de::Error::custom(format!(
                        "{value} has more than {} decimal places",
                        $places
                    )));
                }
                Ok(Self::exact(value))
            }
        }
    };
}

measure!(
    /// A tonnage the ledger computes and keeps (a balance, a batch's parts, what a report has
    /// issued): tCO2e with exactly 3 places; zero allowed. Tonnes and [`Money`] do not add up.
    Tonnes,
    "tonnage",
    places = 3
);
measure!(
    /// A sum of money the ledger computes and keeps (a facility limit, an outstanding loan,
    /// restoration proceeds): exactly 2 places, in the currency kept beside it. Money and
    /// [`Tonnes`] do not add up.
    Money,
    "sum of money",
    places = 2
);

impl Tonnes {
    /// Their value at a unit price, rounded half away from zero to the fen.
    pub fn at(self, unit_price: UnitPrice) -> Money {
        Money::round(self.0 * unit_price.0)
    }
}

impl Money {
    /// This sum divided by another, rounded half away from zero to 4 places; `None` when the
    /// other is zero.
    pub fn ratio_to(self, other: Money) -> Option<Decimal> {
        (!other.is_zero()).then(|| {
            (self.0 / other.0).round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
        })
    }
}

impl Quantity {
    /// The quantity as the ledger keeps tonnages.
    pub fn tonnes(self) -> Tonnes {
        Tonnes::exact(self.0)
    }
}

impl Amount {
    /// The amount as the ledger keeps money.
    pub fn money(self) -> Money {
        Money::exact(self.0)
    }
}

/// The consideration of a priced trade: quantity × unit price, rounded half away from zero to 2
/// places (10000 × 58.83 = 588300.00). It may round to zero; callers refuse such trades.
pub fn trade_amount(quantity: Quantity, unit_price: UnitPrice) -> Money {
    quantity.tonnes().at(unit_price)
}

/// The facility limit of a pledge: quantity × price × (1 − haircut), rounded half away from zero to
/// 2 places.
pub fn facility_limit(quantity: Quantity, unit_price: UnitPrice, haircut: Rate) -> Money {
    Money::round(quantity.0 * unit_price.0 * (Decimal::ONE - haircut.0))
}

/// Shows tonnes with their 3 places, as a clerk expects ("3000.000 t").
pub fn show_tonnes(value: Tonnes) -> String {
    format!("{value} t")
}

/// Shows money with its 2 places and currency ("588300.00 CNY").
pub fn show_money(value: Money, currency: &Currency) -> String {
    format!("{value} {currency}")
}

/// An ISO 4217 currency code such as `CNY`: three capital letters, carried with every sum.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a currency code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the currency \"{0}\" is not a three-letter ISO 4217 code in capitals such as \"CNY\"")]
pub struct CurrencyError(pub String);

impl FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(text: &str) -> Result<Self, CurrencyError> {
        if text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(CurrencyError(text.chars().take(40).collect()))
        }
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Quantity, NumberError> {
        s.parse()
    }

    #[test]
    fn reference_acquisition_amount_is_exact() {
        let amount = trade_amount("10000".parse().unwrap(), "58.83".parse().unwrap());
        assert_eq!(amount.to_string(), "588300.00");
    }

    #[test]
    fn amounts_round_half_away_from_zero() {
        // 0.005 t × 1 = 0.005 → 0.01 (half away from zero), never banker's 0.00.
        let amount = trade_amount("0.005".parse().unwrap(), "1".parse().unwrap());
        assert_eq!(amount.to_string(), "0.01");
        let amount = trade_amount("0.004".parse().unwrap(), "1".parse().unwrap());
        assert_eq!(amount.to_string(), "0.00");
        let amount = trade_amount("1.5".parse().unwrap(), "0.0125".parse().unwrap());
        assert_eq!(amount.to_string(), "0.02"); // 0.01875 → 0.02
    }

    #[test]
    fn facility_limit_applies_the_haircut() {
        let limit = facility_limit(
            "2000".parse().unwrap(),
            "58.83".parse().unwrap(),
            "0.30".parse().unwrap(),
        );
        assert_eq!(limit.to_string(), "82362.00");
    }

    #[test]
    fn quantities_accept_plain_decimals_and_keep_their_scale() {
        assert_eq!(q("10000").unwrap().to_string(), "10000");
        assert_eq!(q("10000.000").unwrap().to_string(), "10000.000");
        assert_eq!(q("0.001").unwrap().to_string(), "0.001");
    }

    #[test]
    fn quantities_refuse_everything_a_clerk_could_misread() {
        assert!(matches!(q(""), Err(NumberError::Empty { .. })));
        for bad in ["1e3", "+5", "-5", " 5", "5 ", "1,000", "5.0.0", "0x10", "٣"] {
            assert!(
                matches!(q(bad), Err(NumberError::NotPlainDecimal { .. })),
                "{bad}"
            );
        }
        for bad in ["007", "00", ".5", "5.", "."] {
            assert!(
                matches!(q(bad), Err(NumberError::Malformed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            q("0.0001"),
            Err(NumberError::TooManyPlaces {
                max: 3,
                found: 4,
                ..
            })
        ));
        assert!(matches!(
            q("1234567890123"),
            Err(NumberError::TooLarge { .. })
        ));
        assert!(matches!(q("0"), Err(NumberError::OutOfRange { .. })));
        assert!(matches!(q("0.000"), Err(NumberError::OutOfRange { .. })));
    }

    #[test]
    fn rates_are_below_one() {
        assert!("0".parse::<Rate>().is_ok());
        assert!("0.9999".parse::<Rate>().is_ok());
        assert!(matches!(
            "1".parse::<Rate>(),
            Err(NumberError::OutOfRange { .. })
        ));
        assert!(matches!(
            "1.0".parse::<Rate>(),
            Err(NumberError::OutOfRange { .. })
        ));
        assert!(matches!(
            "0.12345".parse::<Rate>(),
            Err(NumberError::TooManyPlaces { .. })
        ));
    }

    #[test]
    fn money_and_prices_have_their_own_places() {
        assert!(matches!(
            "1.001".parse::<Amount>(),
            Err(NumberError::TooManyPlaces { max: 2, .. })
        ));
        assert!("58.8312".parse::<UnitPrice>().is_ok());
        assert!(matches!(
            "58.83125".parse::<UnitPrice>(),
            Err(NumberError::TooManyPlaces { max: 4, .. })
        ));
        assert!(matches!(
            "0.00".parse::<Amount>(),
            Err(NumberError::OutOfRange { .. })
        ));
    }

    #[test]
    fn decimals_travel_as_json_strings_only() {
        let quantity: Quantity = serde_json::from_str("\"17000.5\"").unwrap();
        assert_eq!(serde_json::to_string(&quantity).unwrap(), "\"17000.5\"");
        let err = serde_json::from_str::<Quantity>("17000.5").unwrap_err();
        assert!(err.to_string().contains("decimal string"), "{err}");
    }

    #[test]
    fn errors_read_like_a_clerk_would_say_them() {
        let err = q("12.3456").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the quantity \"12.3456\" has 4 decimal places; at most 3 are allowed"
        );
    }

    #[test]
    fn currencies_are_iso_codes() {
        assert!("CNY".parse::<Currency>().is_ok());
        for bad in ["cny", "CN", "CNYY", "", "元"] {
            assert!(bad.parse::<Currency>().is_err(), "{bad}");
        }
        assert_eq!(
            show_money(Money::exact(Decimal::new(5883, 1)), &"CNY".parse().unwrap()),
            "588.30 CNY"
        );
        assert_eq!(
            show_tonnes(Tonnes::exact(Decimal::from(3000))),
            "3000.000 t"
        );
    }
}
