//! Query strings read into a route's parameters, with refusals in plain words that name the
//! parameter: `the query parameter limit="abc" is not valid: it must be a whole number`, never
//! the framework's "Failed to deserialize query string".
//!
//! The JSON API (`/v1`, a `malformed-request` problem) and the registry's pages (a 400 page)
//! read queries the same way.

use serde::de::DeserializeOwned;

/// Reads `query` (the part of the URI after `?`, percent-encoded) into `T`, a struct of
/// optional parameters that refuses unknown ones; on failure, a sentence for the person who
/// wrote the query.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, String> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    let deserializer = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let name = error.path().to_string();
        let value = form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.into_owned());
        describe(&name, value.as_deref(), &error.into_inner().to_string())
    })
}

/// The words for what serde said about parameter `name`.
fn describe(name: &str, value: Option<&str>, said: &str) -> String {
    if let Some(rest) = said.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let takes = listed(expected);
        return match takes.is_empty() {
            true => format!("this route takes no query parameter, and \"{field}\" is one"),
            false => format!(
                "there is no query parameter \"{field}\" on this route; it takes {}",
                takes.join(", ")
            ),
        };
    }
    if let Some(rest) = said.strip_prefix("duplicate field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return format!("the query parameter {field} is given twice; give it once");
    }
    if let Some(rest) = said.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return format!("the query parameter {field} is required");
    }
    let reason = if let Some(rest) = said.strip_prefix("unknown variant `") {
        let expected = rest.split_once('`').map_or("", |(_, e)| e);
        format!("it is one of {}", listed(expected).join(", "))
    } else if is_integer_error(said) {
        "it must be a whole number (digits only)".to_owned()
    } else {
        said.to_owned()
    };
    match value {
        Some(value) => format!("the query parameter {name}=\"{value}\" is not valid: {reason}"),
        None => format!("the query parameter {name} is not valid: {reason}"),
    }
}

/// What `core::num::ParseIntError` says, in all its forms.
fn is_integer_error(said: &str) -> bool {
    [
        "invalid digit found in string",
        "cannot parse integer from empty string",
        "number too large to fit in target type",
        "number too small to fit in target type",
    ]
    .contains(&said)
}

/// The names in serde's "expected one of `a`, `b`" (or "there are no fields").
fn listed(expected: &str) -> Vec<String> {
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Trades {
        kind: Option<ledger_core::entry::TradeKind>,
        party: Option<ledger_core::ids::ParticipantId>,
        limit: Option<usize>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Required {
        old_size: u64,
    }

    #[test]
    fn refusals_name_the_parameter_in_plain_words() {
        let cases = [
            (
                "limit=abc",
                "the query parameter limit=\"abc\" is not valid: it must be a whole number (digits only)",
            ),
            (
                "limit=-1",
                "the query parameter limit=\"-1\" is not valid: it must be a whole number (digits only)",
            ),
            (
                "kind=gift",
                "the query parameter kind=\"gift\" is not valid: it is one of acquisition, eco_compensation, transfer",
            ),
            (
                "colour=blue",
                "there is no query parameter \"colour\" on this route; it takes kind, party, limit",
            ),
            (
                "limit=1&limit=2",
                "the query parameter limit is given twice; give it once",
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(parse::<Trades>(query).unwrap_err(), expected, "{query}");
        }
        let bad_id = parse::<Trades>("party=a%20b").unwrap_err();
        assert!(
            bad_id.starts_with("the query parameter party=\"a b\" is not valid: "),
            "{bad_id}"
        );
        assert!(!bad_id.contains("deserialize"), "{bad_id}");
        assert_eq!(
            parse::<Required>("").unwrap_err(),
            "the query parameter old_size is required"
        );
        assert!(parse::<Trades>("kind=transfer&limit=5").is_ok());
    }
}
