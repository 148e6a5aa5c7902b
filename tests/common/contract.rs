//! The API's contract, checked on every answer the HTTP tests get: `ledger-api/openapi.json`'s
//! schema for the route, method and status is validated (JSON Schema 2020-12, as OpenAPI 3.1
//! uses) against the body actually received. An answer the document does not describe fails the
//! test that received it.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Value};

struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| Contract {
        doc: serde_json::from_str(ledger_api::routes::OPENAPI).expect("openapi.json is JSON"),
        validators: Mutex::new(HashMap::new()),
    })
}

/// The documented path template that `path` matches, the one with the most literal segments.
fn template_of<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()?
        .keys()
        .filter_map(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (t, s) in parts.iter().zip(&segments) {
                if t.starts_with('{') {
                    if s.is_empty() {
                        return None;
                    }
                } else if t == s {
                    literal += 1;
                } else {
                    return None;
                }
            }
            Some((literal, template.as_str()))
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, t)| t)
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            doc.pointer(pointer).unwrap_or(&Value::Null)
        }
        None => value,
    }
}

fn validate(key: &str, schema: &Value, body: &Value, what: &str) {
    let c = contract();
    let validator = {
        let mut cache = c.validators.lock().unwrap();
        cache
            .entry(key.to_owned())
            .or_insert_with(|| {
                let wrapper = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "components": c.doc["components"],
                    "allOf": [schema],
                });
                std::sync::Arc::new(
                    jsonschema::validator_for(&wrapper)
                        .unwrap_or_else(|e| panic!("the schema of {key} does not compile: {e}")),
                )
            })
            .clone()
    };
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the answer does not fit ledger-api/openapi.json:\n  {}\nbody: {}",
        errors.join("\n  "),
        body.to_string().chars().take(800).collect::<String>()
    );
}

/// Checks one answer against the document.
pub fn check(method: &str, uri: &str, status: u16, content_type: &str, body: &[u8]) {
    let c = contract();
    let doc = &c.doc;
    let path = uri.split('?').next().unwrap_or(uri);
    let media = content_type.split(';').next().unwrap_or("").trim();
    let what = format!("{method} {uri} → {status} {media}");
    let is_problem = media == "application/problem+json";
    let problem = || {
        let value: Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{what}: a problem that is not JSON: {e}"));
        validate(
            "Problem",
            &json!({"$ref": "#/components/schemas/Problem"}),
            &value,
            &what,
        );
    };
    let Some(template) = template_of(doc, path) else {
        // The registry's pages and unknown paths: only problems are the API's.
        if is_problem {
            problem();
        }
        return;
    };
    let Some(operation) = doc["paths"][template].get(method.to_lowercase()) else {
        if is_problem {
            problem();
        }
        return;
    };
    let Some(response) = operation["responses"].get(status.to_string()) else {
        assert!(
            !(200..300).contains(&status),
            "{what}: ledger-api/openapi.json does not document status {status} for {method} {template}"
        );
        if is_problem {
            problem();
        }
        return;
    };
    let response = resolve(doc, response);
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        return;
    };
    let Some(declared) = content.get(media) else {
        panic!(
            "{what}: ledger-api/openapi.json documents {:?} for {method} {template} {status}, not {media}",
            content.keys().collect::<Vec<_>>()
        );
    };
    if media != "application/json" && !is_problem {
        return;
    }
    let value: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON: {e}"));
    validate(
        &format!("{method} {template} {status} {media}"),
        &declared["schema"],
        &value,
        &what,
    );
}
