//! Hostile input over HTTP: what an attacker sends first, and what the service must answer.
//!
//! Every refused case is checked three ways: the documented status and problem `type`
//! (`docs/api.md`, Errors), the ledger unchanged (size and root equal before and after), and the
//! service still serving (`GET /healthz`). Most cases drive the router with `oneshot`; the
//! transport-level ones (garbage bytes, slow and broken bodies, invalid UTF-8) and the race for
//! the same sink use a real socket.
//!
//! Each test runs all its cases and then fails with the full list of those the service handled
//! wrongly, so that one run reports every finding.

mod common;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use common::{memory_app, operator_key, replay_oneshot, start, OPERATOR, ORIGIN};
use ledger_api::client::Client;
use ledger_api::demo::{self, ReferenceCase};
use ledger_api::problem::{problem_type, Problem, PROBLEM_TYPES};
use ledger_api::{AppState, Limits};
use ledger_core::entry::Submission;
use ledger_core::ledger::Receipt;
use ledger_core::merkle::Hash;
use serde_json::{json, Value};
use support::Market;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower::ServiceExt as _;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// An answer of the router.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        request = request.header(header::CONTENT_TYPE, ct);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

/// Checks that `reply` is a problem of one of `kinds`, with the table's status and its `type`.
fn problem_of(reply: &Reply, kinds: &[&str]) -> Result<Problem, String> {
    if reply.content_type() != "application/problem+json" {
        return Err(format!(
            "answered {} with content-type \"{}\", not a problem: {}",
            reply.status,
            reply.content_type(),
            reply.text()
        ));
    }
    let problem: Problem = serde_json::from_slice(&reply.body)
        .map_err(|e| format!("the problem does not parse ({e}): {}", reply.text()))?;
    if !kinds.contains(&problem.kind.as_str()) {
        return Err(format!(
            "expected {kinds:?}, got {} {}: {}",
            reply.status, problem.kind, problem.detail
        ));
    }
    if problem.type_uri != format!("/problems/{}", problem.kind) {
        return Err(format!(
            "type {} for kind {}",
            problem.type_uri, problem.kind
        ));
    }
    if problem.status != reply.status.as_u16() {
        return Err(format!(
            "body status {} but HTTP status {}",
            problem.status, reply.status
        ));
    }
    let listed = problem_type(&problem.kind).status;
    if problem.status != listed {
        return Err(format!(
            "{} sent with {}, the table says {listed}",
            problem.kind, problem.status
        ));
    }
    if problem.detail.is_empty() {
        return Err("empty detail".to_owned());
    }
    Ok(problem)
}

/// Runs cases against one app, records a row per case and every failure.
struct Probe {
    app: Router,
    state: AppState,
    rows: Vec<String>,
    failures: Vec<String>,
}

impl Probe {
    fn new(app: Router, state: AppState) -> Self {
        Self {
            app,
            state,
            rows: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn snapshot(&self) -> (u64, Hash) {
        (self.state.ledger().size(), self.state.ledger().root())
    }

    async fn healthy(&self) -> Result<(), String> {
        let health = call(&self.app, "GET", "/healthz", None, Vec::new()).await;
        if health.status == StatusCode::OK {
            Ok(())
        } else {
            Err(format!(
                "/healthz answered {} after the case",
                health.status
            ))
        }
    }

    fn record(&mut self, name: &str, outcome: &str, errors: Vec<String>) {
        let verdict = if errors.is_empty() { "ok" } else { "FAIL" };
        self.rows.push(format!("{verdict:4} | {name} | {outcome}"));
        for error in errors {
            self.failures.push(format!("{name}: {error}"));
        }
    }

    /// A request that must be refused with one of `kinds` and change nothing.
    async fn refused(
        &mut self,
        name: &str,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        kinds: &[&str],
    ) -> Option<Problem> {
        let before = self.snapshot();
        let reply = call(&self.app, method, path, content_type, body).await;
        let after = self.snapshot();
        let mut errors = Vec::new();
        let problem = problem_of(&reply, kinds).map_err(|e| errors.push(e)).ok();
        if before != after {
            errors.push(format!(
                "the ledger changed: size {} → {}",
                before.0, after.0
            ));
        }
        if let Err(e) = self.healthy().await {
            errors.push(e);
        }
        let outcome = problem.as_ref().map_or_else(
            || format!("{}", reply.status),
            |p| format!("{} {}", p.status, p.kind),
        );
        self.record(name, &outcome, errors);
        problem
    }

    /// A submission (JSON bytes) posted to /v1/entries that must be refused.
    async fn post_refused(&mut self, name: &str, body: Vec<u8>, kinds: &[&str]) -> Option<Problem> {
        self.refused(
            name,
            "POST",
            "/v1/entries",
            Some("application/json"),
            body,
            kinds,
        )
        .await
    }

    /// A typed submission that must be refused.
    async fn submit_refused(
        &mut self,
        name: &str,
        s: &Submission,
        kinds: &[&str],
    ) -> Option<Problem> {
        self.post_refused(name, serde_json::to_vec(s).unwrap(), kinds)
            .await
    }

    /// A submission that must be appended (201) and grow the ledger by one.
    async fn accepted(&mut self, name: &str, body: Vec<u8>) -> Option<Receipt> {
        let before = self.snapshot();
        let reply = call(
            &self.app,
            "POST",
            "/v1/entries",
            Some("application/json"),
            body,
        )
        .await;
        let after = self.snapshot();
        let mut errors = Vec::new();
        if reply.status != StatusCode::CREATED {
            errors.push(format!(
                "expected 201, got {}: {}",
                reply.status,
                reply.text()
            ));
        }
        if after.0 != before.0 + 1 {
            errors.push(format!("size {} → {}", before.0, after.0));
        }
        let receipt: Option<Receipt> = serde_json::from_slice(&reply.body).ok();
        self.record(name, &format!("{}", reply.status), errors);
        receipt.filter(|_| reply.status == StatusCode::CREATED)
    }

    async fn submit_accepted(&mut self, name: &str, s: &Submission) -> Option<Receipt> {
        self.accepted(name, serde_json::to_vec(s).unwrap()).await
    }

    /// Prints the table and fails with every failure.
    fn finish(self, title: &str) {
        eprintln!("── {title}: {} cases", self.rows.len());
        for row in &self.rows {
            eprintln!("  {row}");
        }
        assert!(
            self.failures.is_empty(),
            "{title}: {} case(s) handled wrongly:\n  {}",
            self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

/// A ledger holding the whole reference case, and a market that can sign for its parties.
async fn populated() -> (Router, AppState, Market) {
    let (app, state, _) = memory_app(Limits::default());
    let market = Market::new(ORIGIN, OPERATOR, operator_key());
    replay_oneshot(&app, &market.case).await;
    (app, state, market)
}

/// A valid retirement of 10 t by enterprise-b, not yet submitted.
fn retirement(market: &Market, id: &str) -> Submission {
    market.signed(
        id,
        &market.at(22),
        json!({"type": "retire", "holder": "enterprise-b", "batch": demo::BATCH,
               "quantity": "10", "beneficiary": "Enterprise B", "purpose": "hostile test"}),
        &["enterprise-b"],
    )
}

/// `submission` as a JSON value, changed by `f`, as bytes.
fn mutated(submission: &Submission, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value = serde_json::to_value(submission).unwrap();
    f(&mut value);
    serde_json::to_vec(&value).unwrap()
}

/// `submission` as JSON text with `from` replaced (exactly once) by `to`.
fn replaced(submission: &Submission, from: &str, to: &str) -> Vec<u8> {
    let text = serde_json::to_string(submission).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from} in {text}");
    text.replacen(from, to, 1).into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Malformed bodies
// ---------------------------------------------------------------------------------------------

/// Pins strict decoding over HTTP: malformed JSON, deep nesting, bad UTF-8, wrong types, unknown
/// fields, numbers for decimals, bad decimal strings, bad ids, duplicate members, `null` for an
/// optional field, a BOM and a lone surrogate are each refused with `malformed-json` or
/// `malformed-entry` (400), and change nothing.
#[tokio::test]
async fn malformed_bodies_are_refused_and_change_nothing() {
    let (app, state, market) = populated().await;
    let mut probe = Probe::new(app, state);
    let base = retirement(&market, "CERT-H-1");
    let json = "malformed-json";
    let entry = "malformed-entry";

    // Not JSON.
    for (name, body) in [
        ("empty body", b"".to_vec()),
        ("truncated JSON", b"{\"body\": ".to_vec()),
        ("not JSON", b"hello".to_vec()),
        ("trailing garbage", {
            let mut b = serde_json::to_vec(&base).unwrap();
            b.extend_from_slice(b" x");
            b
        }),
        ("100,000 [ unclosed", "[".repeat(100_000).into_bytes()),
        (
            "100,000 [ balanced",
            ("[".repeat(100_000) + &"]".repeat(100_000)).into_bytes(),
        ),
        (
            "100,000 nested objects as body",
            (String::from("{\"body\":") + &"{\"a\":".repeat(100_000) + "1" + &"}".repeat(100_001))
                .into_bytes(),
        ),
        (
            "invalid UTF-8 in a string",
            replaced(&base, "Enterprise B", "Enterprise \u{1}B")
                .into_iter()
                .map(|b| if b == 1 { 0xff } else { b })
                .collect(),
        ),
        ("UTF-8 BOM before the JSON", {
            let mut b = vec![0xef, 0xbb, 0xbf];
            b.extend(serde_json::to_vec(&base).unwrap());
            b
        }),
        (
            "lone surrogate \\ud800",
            replaced(&base, "Enterprise B", "Enterprise \\ud800B"),
        ),
        (
            "duplicate member quantity",
            replaced(
                &base,
                "\"quantity\":\"10\"",
                "\"quantity\":\"10\",\"quantity\":\"1000\"",
            ),
        ),
        ("duplicate member body", {
            let v = serde_json::to_value(&base).unwrap();
            format!(
                "{{\"body\":{b},\"body\":{b},\"signatures\":{s}}}",
                b = v["body"],
                s = v["signatures"]
            )
            .into_bytes()
        }),
        (
            "duplicate member signer",
            replaced(
                &base,
                "\"signer\":\"enterprise-b\"",
                "\"signer\":\"enterprise-b\",\"signer\":\"enterprise-a\"",
            ),
        ),
        (
            "duplicate member type",
            replaced(
                &base,
                "\"type\":\"retire\"",
                "\"type\":\"retire\",\"type\":\"trade\"",
            ),
        ),
    ] {
        probe.post_refused(name, body, &[json]).await;
    }

    // Well-formed JSON of the wrong shape.
    let wrong_shape: Vec<(&str, Vec<u8>)> = vec![
        ("array for the submission", b"[]".to_vec()),
        ("string for the submission", b"\"x\"".to_vec()),
        ("null submission", b"null".to_vec()),
        ("array for body", mutated(&base, |v| v["body"] = json!([]))),
        (
            "number for id",
            mutated(&base, |v| v["body"]["id"] = json!(7)),
        ),
        (
            "missing id",
            mutated(&base, |v| {
                v["body"].as_object_mut().unwrap().remove("id");
            }),
        ),
        (
            "unknown type",
            mutated(&base, |v| v["body"]["type"] = json!("mint")),
        ),
        (
            "unknown field in body",
            mutated(&base, |v| v["body"]["admin"] = json!(true)),
        ),
        (
            "unknown field in submission",
            mutated(&base, |v| v["sudo"] = json!(true)),
        ),
        (
            "unknown field in a signature line",
            mutated(&base, |v| {
                v["signatures"][0]["alg"] = json!("none");
            }),
        ),
        (
            "signatures not an array",
            mutated(&base, |v| v["signatures"] = json!({})),
        ),
        (
            "null signatures",
            mutated(&base, |v| v["signatures"] = Value::Null),
        ),
        (
            "null for a required field",
            mutated(&base, |v| v["body"]["holder"] = Value::Null),
        ),
        (
            "free text of 501 characters",
            mutated(&base, |v| {
                v["body"]["purpose"] = json!("x".repeat(501));
            }),
        ),
        (
            "created_at not RFC 3339",
            mutated(&base, |v| v["body"]["created_at"] = json!("yesterday")),
        ),
        (
            "created_at with an offset",
            mutated(&base, |v| {
                v["body"]["created_at"] = json!("2022-07-02T17:00:00+08:00");
            }),
        ),
    ];
    for (name, body) in wrong_shape {
        probe.post_refused(name, body, &[entry]).await;
    }

    // Numbers where decimal strings belong, and bad decimal strings.
    for (name, raw) in [
        ("quantity as JSON number 10000", "10000"),
        ("quantity as JSON number 1e4", "1e4"),
        ("quantity as JSON number 10000.0", "10000.0"),
        ("quantity as JSON true", "true"),
    ] {
        probe
            .post_refused(
                name,
                replaced(&base, "\"quantity\":\"10\"", &format!("\"quantity\":{raw}")),
                &[entry],
            )
            .await;
    }
    let forty = "1".repeat(40);
    for text in [
        "0.0001", "-5", "1e3", " 5", "5 ", "+5", "5.", ".5", "NaN", "Infinity", "-0", "0", "0.000",
        "", "05", "5,000", "1_000", "0x10", "１０", &forty,
    ] {
        probe
            .post_refused(
                &format!("quantity {text:?}"),
                mutated(&base, |v| v["body"]["quantity"] = json!(text)),
                &[entry],
            )
            .await;
    }
    // Prices and amounts of a trade: out of range or too many places.
    let trade = market.signed(
        "T-H-1",
        &market.at(20),
        json!({"type": "trade", "kind": "eco_compensation", "seller": demo::PLATFORM,
               "buyer": "enterprise-a", "batch": demo::BATCH, "quantity": "10",
               "unit_price": "60.00", "currency": "CNY", "amount": "600.00"}),
        &[demo::PLATFORM, "enterprise-a"],
    );
    for (field, text) in [
        ("unit_price", "60.00001"),
        ("unit_price", "-60"),
        ("unit_price", "6e1"),
        ("unit_price", "0"),
        ("amount", "600.001"),
        ("amount", "-600.00"),
        ("amount", &forty),
        ("currency", "cny"),
        ("currency", "CNYX"),
    ] {
        probe
            .post_refused(
                &format!("trade {field} {text:?}"),
                mutated(&trade, |v| v["body"][field] = json!(text)),
                &[entry],
            )
            .await;
    }
    // A string for the vintage (a JSON integer) of an issuance.
    let issue = market.signed(
        "iss-h",
        &market.at(16),
        json!({"type": "issue_batch", "batch": "XZH-2021-B", "report": "XZH-MR-2021",
               "quantity": "1", "vintage": 2021}),
        &[OPERATOR],
    );
    for (name, vintage) in [
        ("vintage as string", json!("2021")),
        ("vintage as float", json!(2021.5)),
        ("vintage negative", json!(-2021)),
        ("vintage 2^64", json!(18_446_744_073_709_551_615_u64)),
    ] {
        probe
            .post_refused(
                name,
                mutated(&issue, |v| v["body"]["vintage"] = vintage),
                &[entry],
            )
            .await;
    }

    // Ids: too long or with odd characters, in the entry id and in a participant field.
    let long = "a".repeat(65);
    for text in [
        long.as_str(),
        "a/b",
        "../etc",
        "中文",
        "a b",
        "",
        "a\u{0}b",
        "-lead",
        ".",
        "a\nb",
        "a%2Fb",
    ] {
        probe
            .post_refused(
                &format!("entry id {text:?}"),
                mutated(&base, |v| v["body"]["id"] = json!(text)),
                &[entry],
            )
            .await;
        probe
            .post_refused(
                &format!("holder id {text:?}"),
                mutated(&base, |v| v["body"]["holder"] = json!(text)),
                &[entry],
            )
            .await;
    }

    // `null` for optional fields.
    let priced = mutated(&trade, |v| v["body"]["price_ref"] = Value::Null);
    probe
        .post_refused("null for optional price_ref", priced, &[entry])
        .await;
    let price = market.signed(
        "price-h",
        &market.at(18),
        json!({"type": "publish_price", "price": "BM-H", "basis": "benchmark",
               "unit_price": "60.00", "currency": "CNY", "effective_at": "2022-06-02T00:00:00Z"}),
        &["deqing-pricing"],
    );
    probe
        .post_refused(
            "null for optional inputs",
            mutated(&price, |v| v["body"]["inputs"] = Value::Null),
            &[entry],
        )
        .await;

    // Not JSON, whatever the content type says; and a content type that is not JSON.
    probe
        .refused(
            "text/plain garbage",
            "POST",
            "/v1/entries",
            Some("text/plain"),
            b"body=1&sig=2".to_vec(),
            &[json],
        )
        .await;
    probe
        .refused(
            "no content type, garbage",
            "POST",
            "/v1/entries",
            None,
            b"\x00\x01\x02".to_vec(),
            &[json],
        )
        .await;

    // Groups of the wrong shape.
    for (name, body, kind) in [
        ("group: empty entries", json!({"entries": []}), entry),
        ("group: entries not an array", json!({"entries": {}}), entry),
        (
            "group: extra member",
            json!({"entries": [base], "x": 1}),
            entry,
        ),
        ("group: an array", json!([base]), entry),
        (
            "group: a malformed entry",
            json!({"entries": [{"body": 1}]}),
            entry,
        ),
    ] {
        probe
            .refused(
                name,
                "POST",
                "/v1/entries/group",
                Some("application/json"),
                serde_json::to_vec(&body).unwrap(),
                &[kind],
            )
            .await;
    }

    probe.finish("malformed bodies");
}

// ---------------------------------------------------------------------------------------------
// Signatures and replays
// ---------------------------------------------------------------------------------------------

/// Pins replay and forgery defences: the same entry again is a 200 duplicate with the first
/// receipt, another body with a used id is 409, an entry for another ledger 403, malformed
/// signatures 400, a signature by the wrong party 403, by a rotated-out key 401, duplicated lines
/// 401, nine lines 400 — and none of them changes the ledger.
#[tokio::test]
async fn replays_and_forged_signatures_are_refused() {
    let (app, state, mut market) = populated().await;
    let mut probe = Probe::new(app.clone(), state.clone());
    let base = retirement(&market, "CERT-H-2");
    let first = probe
        .submit_accepted("a fresh retirement", &base)
        .await
        .unwrap();

    // The same entry again: 200, duplicate, the first receipt.
    let before = probe.snapshot();
    let again = call(
        &app,
        "POST",
        "/v1/entries",
        Some("application/json"),
        serde_json::to_vec(&base).unwrap(),
    )
    .await;
    let mut errors = Vec::new();
    match serde_json::from_slice::<Receipt>(&again.body) {
        Ok(receipt) if again.status == StatusCode::OK => {
            if !receipt.duplicate
                || receipt.seq != first.seq
                || receipt.leaf_hash != first.leaf_hash
                || receipt.accepted_at != first.accepted_at
            {
                errors.push(format!("not the first receipt: {receipt:?} vs {first:?}"));
            }
        }
        _ => errors.push(format!("{}: {}", again.status, again.text())),
    }
    if probe.snapshot() != before {
        errors.push("the ledger changed".to_owned());
    }
    probe.record("the same entry again", &again.status.to_string(), errors);

    // The same entry again inside a group: every receipt a duplicate, status 200.
    let before = probe.snapshot();
    let group = call(
        &app,
        "POST",
        "/v1/entries/group",
        Some("application/json"),
        serde_json::to_vec(&json!({"entries": [base]})).unwrap(),
    )
    .await;
    let mut errors = Vec::new();
    if group.status != StatusCode::OK || probe.snapshot() != before {
        errors.push(format!("{}: {}", group.status, group.text()));
    }
    probe.record(
        "the same entry again in a group",
        &group.status.to_string(),
        errors,
    );

    // Another body under the used id.
    let conflicting = market.signed(
        "CERT-H-2",
        &market.at(22),
        json!({"type": "retire", "holder": "enterprise-b", "batch": demo::BATCH,
               "quantity": "11", "beneficiary": "Enterprise B", "purpose": "hostile test"}),
        &["enterprise-b"],
    );
    probe
        .submit_refused(
            "another body with a used id",
            &conflicting,
            &["entry-id-conflict"],
        )
        .await;

    // An entry made for another ledger, properly signed by this ledger's parties.
    let mut foreign_body = market.body(
        "CERT-H-3",
        &market.at(22),
        json!({"type": "retire", "holder": "enterprise-b", "batch": demo::BATCH,
               "quantity": "1", "beneficiary": "B", "purpose": "p"}),
    );
    foreign_body.ledger = "another.example/ledger".parse().unwrap();
    let foreign = market.sign(foreign_body, &["enterprise-b"]);
    probe
        .submit_refused("an entry for another ledger", &foreign, &["wrong-ledger"])
        .await;
    let other_case = ReferenceCase::new("another.example/ledger", OPERATOR, operator_key());
    probe
        .submit_refused(
            "another ledger's registration",
            &other_case.registrations()[0].submission,
            &["wrong-ledger"],
        )
        .await;

    // Malformed signatures.
    let fresh = retirement(&market, "CERT-H-4");
    let b64 = |n: usize| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(vec![7u8; n])
    };
    for (name, sig) in [
        ("signature not base64", json!("!!!not base64!!!")),
        ("signature of 63 bytes", json!(b64(63))),
        ("signature of 65 bytes", json!(b64(65))),
        ("signature empty", json!("")),
        ("signature as a number", json!(12)),
        (
            "signature base64url",
            json!(b64(64).replace('+', "-").replace('/', "_") + "-_"),
        ),
    ] {
        probe
            .post_refused(
                name,
                mutated(&fresh, |v| v["signatures"][0]["sig"] = sig),
                &["malformed-entry"],
            )
            .await;
    }
    probe
        .post_refused(
            "no signature",
            mutated(&fresh, |v| v["signatures"] = json!([])),
            &["unsigned"],
        )
        .await;
    probe
        .post_refused(
            "64 zero bytes as signature",
            mutated(&fresh, |v| {
                use base64::Engine as _;
                v["signatures"][0]["sig"] =
                    json!(base64::engine::general_purpose::STANDARD.encode([0u8; 64]));
            }),
            &["bad-signature"],
        )
        .await;
    probe
        .post_refused(
            "signature line names a stranger",
            mutated(&fresh, |v| v["signatures"][0]["signer"] = json!("nobody")),
            &["unknown-signer"],
        )
        .await;
    probe
        .post_refused(
            "signature over another body",
            mutated(&fresh, |v| v["body"]["quantity"] = json!("9")),
            &["bad-signature"],
        )
        .await;

    // Signed by the wrong party.
    let by_operator = market.sign(
        market.body(
            "CERT-H-5",
            &market.at(22),
            json!({"type": "retire", "holder": "enterprise-b", "batch": demo::BATCH,
                   "quantity": "1", "beneficiary": "B", "purpose": "p"}),
        ),
        &[OPERATOR],
    );
    probe
        .submit_refused(
            "retirement signed by the operator",
            &by_operator,
            &["wrong-signers"],
        )
        .await;
    let theft = market.signed(
        "T-H-2",
        &market.at(20),
        json!({"type": "trade", "kind": "transfer", "seller": "enterprise-b",
               "buyer": "enterprise-a", "batch": demo::BATCH, "quantity": "100"}),
        &[OPERATOR, "enterprise-a"],
    );
    probe
        .submit_refused(
            "a transfer signed by the operator instead of the seller",
            &theft,
            &["wrong-signers"],
        )
        .await;
    let buyer_only = market.signed(
        "T-H-3",
        &market.at(20),
        json!({"type": "trade", "kind": "transfer", "seller": "enterprise-b",
               "buyer": "enterprise-a", "batch": demo::BATCH, "quantity": "100"}),
        &["enterprise-a"],
    );
    probe
        .submit_refused(
            "a transfer signed by the buyer alone",
            &buyer_only,
            &["wrong-signers"],
        )
        .await;
    let impersonation = market.sign_with(
        market.body(
            "CERT-H-6",
            &market.at(22),
            json!({"type": "retire", "holder": "enterprise-b", "batch": demo::BATCH,
                   "quantity": "1", "beneficiary": "B", "purpose": "p"}),
        ),
        &[("enterprise-b", "enterprise-a")],
    );
    probe
        .submit_refused(
            "a line naming enterprise-b made with enterprise-a's key",
            &impersonation,
            &["bad-signature"],
        )
        .await;

    // Duplicated lines, and nine lines.
    let mut twice = fresh.clone();
    twice.signatures.push(twice.signatures[0].clone());
    probe
        .submit_refused(
            "the same signature line twice",
            &twice,
            &["duplicate-signature"],
        )
        .await;
    let mut nine = fresh.clone();
    for _ in 0..8 {
        nine.signatures.push(nine.signatures[0].clone());
    }
    probe
        .submit_refused("nine signature lines", &nine, &["malformed-entry"])
        .await;
    let mut many = fresh.clone();
    for _ in 0..10_000 {
        many.signatures.push(many.signatures[0].clone());
    }
    probe
        .submit_refused(
            "10,001 signature lines",
            &many,
            &["malformed-entry", "body-too-large"],
        )
        .await;

    // A rotated-out key: enterprise-b rotates, then its old key signs.
    let new_key = ledger_api::keys::generate_key();
    market
        .extra
        .insert("enterprise-b-new".to_owned(), new_key.clone());
    let rotation = market.sign_with(
        market.body(
            "rot-b",
            &market.at(23),
            json!({"type": "rotate_key", "participant": "enterprise-b",
                   "new_public_key": ledger_api::keys::public_key_base64(&new_key)}),
        ),
        &[
            ("enterprise-b", "enterprise-b"),
            ("enterprise-b", "enterprise-b-new"),
        ],
    );
    probe
        .submit_accepted("enterprise-b rotates its key", &rotation)
        .await;
    let old = retirement(&market, "CERT-H-7");
    probe
        .submit_refused("signed with the rotated-out key", &old, &["bad-signature"])
        .await;
    let new = market.sign_with(
        market.body(
            "CERT-H-7",
            &market.at(24),
            json!({"type": "retire", "holder": "enterprise-b", "batch": demo::BATCH,
                   "quantity": "1", "beneficiary": "B", "purpose": "p"}),
        ),
        &[("enterprise-b", "enterprise-b-new")],
    );
    probe.submit_accepted("signed with the new key", &new).await;
    // The first retirement, signed by the old key before the rotation, still returns its receipt.
    let replay = call(
        &app,
        "POST",
        "/v1/entries",
        Some("application/json"),
        serde_json::to_vec(&base).unwrap(),
    )
    .await;
    let errors = if replay.status == StatusCode::OK {
        Vec::new()
    } else {
        vec![format!("{}: {}", replay.status, replay.text())]
    };
    probe.record(
        "an entry signed before a rotation, submitted again after it",
        &replay.status.to_string(),
        errors,
    );
    // The same, inside a group: the two routes must agree.
    let replay_group = call(
        &app,
        "POST",
        "/v1/entries/group",
        Some("application/json"),
        serde_json::to_vec(&json!({ "entries": [base] })).unwrap(),
    )
    .await;
    let errors = if replay_group.status == replay.status {
        Vec::new()
    } else {
        vec![format!(
            "POST /v1/entries answered {}, POST /v1/entries/group {}: {}",
            replay.status,
            replay_group.status,
            replay_group.text()
        )]
    };
    probe.record(
        "the same, in a group (both routes agree)",
        &replay_group.status.to_string(),
        errors,
    );

    // A copy of an accepted entry with a forged signature: refused on both routes, never
    // answered with the entry's receipt.
    let mut forged_copy = base.clone();
    forged_copy.signatures[0].sig.0[0] ^= 1;
    probe
        .submit_refused(
            "an accepted entry again with a forged signature",
            &forged_copy,
            &["bad-signature"],
        )
        .await;
    probe
        .refused(
            "an accepted entry again with a forged signature, in a group",
            "POST",
            "/v1/entries/group",
            Some("application/json"),
            serde_json::to_vec(&json!({ "entries": [forged_copy] })).unwrap(),
            &["bad-signature"],
        )
        .await;
    let mut stranger_copy = base.clone();
    stranger_copy.signatures[0].signer = "nobody".parse().unwrap();
    probe
        .refused(
            "an accepted entry again signed by a stranger, in a group",
            "POST",
            "/v1/entries/group",
            Some("application/json"),
            serde_json::to_vec(&json!({ "entries": [stranger_copy] })).unwrap(),
            &["unknown-signer"],
        )
        .await;

    probe.finish("signatures and replays");
}

/// Pins that a body is judged by its canonical form: a string written with escapes (`\u0045`,
/// `\/`) that decodes to the signed text is accepted and stored in canonical form (the same
/// entry written plainly is then a duplicate), while one that decodes to other text — another
/// letter, or the same letter in another Unicode normalization — is refused `bad-signature`.
#[tokio::test]
async fn escaped_strings_are_judged_by_their_canonical_form() {
    let (app, state, market) = populated().await;
    let mut probe = Probe::new(app.clone(), state.clone());
    let base = market.signed(
        "CERT-ESC-1",
        &market.at(22),
        json!({"type": "retire", "holder": "enterprise-b", "batch": demo::BATCH,
               "quantity": "10", "beneficiary": "Enterprise B", "purpose": "a/b café"}),
        &["enterprise-b"],
    );
    let escaped = replaced(&base, "\"Enterprise B\"", "\"\\u0045nterprise\\u0020B\"");
    let escaped = String::from_utf8(escaped)
        .unwrap()
        .replacen("a/b", "a\\/b", 1)
        .into_bytes();
    let receipt = probe
        .accepted("escaped, same text as signed", escaped)
        .await;
    if let Some(receipt) = receipt {
        let entry = call(
            &app,
            "GET",
            &format!("/v1/entries/{}", receipt.seq),
            None,
            Vec::new(),
        )
        .await;
        let text = String::from_utf8_lossy(&entry.body).into_owned();
        let mut errors = Vec::new();
        if text.contains("\\u0045") || text.contains("\\/") || !text.contains("Enterprise B") {
            errors.push(format!("the stored leaf is not canonical: {text}"));
        }
        let plain = call(
            &app,
            "POST",
            "/v1/entries",
            Some("application/json"),
            serde_json::to_vec(&base).unwrap(),
        )
        .await;
        match serde_json::from_slice::<Receipt>(&plain.body) {
            Ok(r) if plain.status == StatusCode::OK && r.duplicate && r.seq == receipt.seq => {}
            _ => errors.push(format!(
                "the plain form is not a duplicate: {} {}",
                plain.status,
                plain.text()
            )),
        }
        probe.record(
            "stored canonically; the plain form is its duplicate",
            "",
            errors,
        );
    }
    let other = market.signed(
        "CERT-ESC-2",
        &market.at(22),
        json!({"type": "retire", "holder": "enterprise-b", "batch": demo::BATCH,
               "quantity": "10", "beneficiary": "A", "purpose": "café"}),
        &["enterprise-b"],
    );
    probe
        .post_refused(
            "escaped to other text than signed",
            replaced(
                &other,
                "\"beneficiary\":\"A\"",
                "\"beneficiary\":\"\\u0042\"",
            ),
            &["bad-signature"],
        )
        .await;
    probe
        .post_refused(
            "the same letter decomposed (NFD) instead of composed (NFC)",
            replaced(&other, "café", "cafe\u{301}"),
            &["bad-signature"],
        )
        .await;
    probe
        .post_refused(
            "trailing space added",
            replaced(&other, "café", "café "),
            &["bad-signature"],
        )
        .await;
    probe.finish("escapes and canonical form");
}

// ---------------------------------------------------------------------------------------------
// The market's rules
// ---------------------------------------------------------------------------------------------

fn at(market: &Market, id: &str, created: &str, fields: Value, signers: &[&str]) -> Submission {
    market.signed(id, created, fields, signers)
}

/// Pins the market's rules against the obvious frauds: selling the same sink twice, pledging it
/// twice, retiring or selling pledged sink, drawing past the limit, repaying more than is
/// outstanding, enforcing or repaying as someone other than the bank, releasing with a loan
/// outstanding, acting on a closed pledge. Every refusal leaves the ledger unchanged, and at the
/// end the batch still balances.
#[tokio::test]
async fn the_market_refuses_double_spending_and_loan_fraud() {
    let (app, state, market) = populated().await;
    let mut probe = Probe::new(app.clone(), state.clone());
    let m = &market;
    let (p, bank, batch) = (demo::PLATFORM, demo::BANK, demo::BATCH);
    let pledge = demo::PLEDGE;
    let t = &m.at(28);

    // Double spending: enterprise-b holds 2,000 t; two sales of 1,500 t.
    probe
        .submit_accepted(
            "first sale of 1,500 t",
            &m.transfer("T-DS-1", "enterprise-b", "enterprise-a", "1500"),
        )
        .await;
    probe
        .submit_refused(
            "second sale of the same 1,500 t",
            &m.transfer("T-DS-2", "enterprise-b", "enterprise-a", "1500"),
            &["insufficient-sink"],
        )
        .await;
    probe
        .submit_refused(
            "selling 0.001 t more than held",
            &m.transfer("T-DS-3", "enterprise-b", "enterprise-a", "500.001"),
            &["insufficient-sink"],
        )
        .await;
    probe
        .submit_refused(
            "selling a batch never issued",
            &m.signed(
                "T-DS-4",
                t,
                json!({"type": "trade", "kind": "transfer", "seller": "enterprise-b",
                "buyer": "enterprise-a", "batch": "XZH-2099", "quantity": "1"}),
                &["enterprise-b", "enterprise-a"],
            ),
            &["unknown-batch"],
        )
        .await;

    // Double pledging: the platform has 1,000 t available (4,000 pledged).
    let pledge_of = |id: &str, pl: &str, q: &str, limit: &str| {
        at(
            m,
            id,
            &market.at(25),
            json!({"type": "pledge", "pledge": pl, "pledgor": p, "bank": bank, "batch": batch,
                  "quantity": q, "price_ref": demo::PRICE, "haircut": "0.30", "limit": limit,
                  "currency": "CNY"}),
            &[p, bank],
        )
    };
    probe
        .submit_accepted(
            "pledge 800 t",
            &pledge_of("PL-H-1", "PL-H-1", "800", "32944.80"),
        )
        .await;
    probe
        .submit_refused(
            "pledge the same 800 t again",
            &pledge_of("PL-H-2", "PL-H-2", "800", "32944.80"),
            &["insufficient-sink"],
        )
        .await;
    probe
        .submit_refused(
            "pledge with an inflated limit",
            &pledge_of("PL-H-3", "PL-H-3", "100", "5000.00"),
            &["limit-mismatch"],
        )
        .await;
    probe
        .submit_refused(
            "pledge id reused",
            &pledge_of("PL-H-4", "PL-H-1", "100", "4118.10"),
            &["already-exists"],
        )
        .await;
    probe
        .submit_refused(
            "retire pledged sink",
            &at(
                m,
                "CERT-PL",
                t,
                json!({"type": "retire", "holder": p, "batch": batch,
                "quantity": "500", "beneficiary": "x", "purpose": "y"}),
                &[p],
            ),
            &["insufficient-sink"],
        )
        .await;
    probe
        .submit_refused(
            "sell pledged sink",
            &m.transfer("T-PL", p, "enterprise-a", "500"),
            &["insufficient-sink"],
        )
        .await;

    // Loans.
    let loan = |id: &str, kind: &str, pl: &str, amount: &str, signers: &[&str]| {
        at(
            m,
            id,
            t,
            json!({"type": kind, "pledge": pl, "amount": amount}),
            signers,
        )
    };
    probe
        .submit_refused(
            "drawdown past the limit",
            &loan("DD-H-1", "drawdown", pledge, "0.01", &[bank, p]),
            &["limit-exceeded"],
        )
        .await;
    probe
        .submit_accepted(
            "drawdown to the limit of PL-H-1",
            &loan("DD-H-2", "drawdown", "PL-H-1", "32944.80", &[bank, p]),
        )
        .await;
    probe
        .submit_refused(
            "drawdown 0.01 past the limit of PL-H-1",
            &loan("DD-H-3", "drawdown", "PL-H-1", "0.01", &[bank, p]),
            &["limit-exceeded"],
        )
        .await;
    probe
        .submit_refused(
            "drawdown signed by the bank alone",
            &loan("DD-H-4", "drawdown", "PL-H-1", "0.01", &[bank]),
            &["wrong-signers"],
        )
        .await;
    probe
        .submit_refused(
            "repay more than outstanding",
            &loan("RP-H-1", "repay", pledge, "164724.01", &[bank]),
            &["repayment-exceeds-outstanding"],
        )
        .await;
    probe
        .submit_refused(
            "repay signed by the pledgor instead of the bank",
            &loan("RP-H-2", "repay", pledge, "1.00", &[p]),
            &["wrong-signers"],
        )
        .await;
    let action = |id: &str, kind: &str, pl: &str, signers: &[&str]| {
        at(m, id, t, json!({"type": kind, "pledge": pl}), signers)
    };
    probe
        .submit_refused(
            "enforce signed by the pledgor, not the bank",
            &action("EN-H-1", "enforce_pledge", pledge, &[p]),
            &["wrong-signers"],
        )
        .await;
    probe
        .submit_refused(
            "enforce signed by the operator",
            &action("EN-H-2", "enforce_pledge", pledge, &[OPERATOR]),
            &["wrong-signers"],
        )
        .await;
    probe
        .submit_refused(
            "enforce by the bank alone of a loan not in default (maturity ahead)",
            &action("EN-H-3", "enforce_pledge", pledge, &[bank]),
            &["not-in-default"],
        )
        .await;
    probe
        .submit_refused(
            "release with a loan outstanding",
            &action("RL-H-1", "release_pledge", pledge, &[bank]),
            &["pledge-outstanding"],
        )
        .await;
    probe
        .submit_refused(
            "release of an unknown pledge",
            &action("RL-H-2", "release_pledge", "PL-NOPE", &[bank]),
            &["unknown-pledge"],
        )
        .await;
    probe
        .submit_accepted(
            "repay everything",
            &loan("RP-H-3", "repay", pledge, "164724.00", &[bank]),
        )
        .await;
    probe
        .submit_refused(
            "repay again with nothing outstanding",
            &loan("RP-H-4", "repay", pledge, "0.01", &[bank]),
            &["repayment-exceeds-outstanding"],
        )
        .await;
    probe
        .submit_refused(
            "enforce with nothing outstanding",
            &action("EN-H-4", "enforce_pledge", pledge, &[bank]),
            &["nothing-outstanding", "refused", "pledge-closed"],
        )
        .await;
    probe
        .submit_accepted(
            "release once repaid",
            &action("RL-H-3", "release_pledge", pledge, &[bank]),
        )
        .await;
    for (name, s) in [
        (
            "drawdown on a released pledge",
            loan("DD-H-5", "drawdown", pledge, "1.00", &[bank, p]),
        ),
        (
            "release twice",
            action("RL-H-4", "release_pledge", pledge, &[bank]),
        ),
        (
            "enforce a released pledge",
            action("EN-H-5", "enforce_pledge", pledge, &[bank]),
        ),
    ] {
        probe.submit_refused(name, &s, &["pledge-closed"]).await;
    }
    probe
        .submit_refused(
            "enforce PL-H-1 (no maturity, so never in default) by the bank alone",
            &action("EN-H-6", "enforce_pledge", "PL-H-1", &[bank]),
            &["not-in-default"],
        )
        .await;
    probe
        .submit_accepted(
            "a voluntary surrender of PL-H-1, signed by the bank and the pledgor",
            &action("EN-H-7", "enforce_pledge", "PL-H-1", &[bank, p]),
        )
        .await;
    probe
        .submit_refused(
            "the pledgor sells the enforced sink",
            &m.transfer("T-EN", p, "enterprise-a", "4801"),
            &["insufficient-sink"],
        )
        .await;

    // Every tonne accounted for; nobody negative.
    let batch_row = call(&app, "GET", "/v1/batches/XZH-2021", None, Vec::new()).await;
    let v: Value = serde_json::from_slice(&batch_row.body).unwrap();
    let dec = |k: &str| {
        v[k].as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    let sum = dec("available") + dec("pledged") + dec("buffer") + dec("retired") + dec("reversed");
    let mut errors = Vec::new();
    if sum != dec("issued") {
        errors.push(format!("issued {} ≠ sum {sum}: {v}", dec("issued")));
    }
    for holder in [p, bank, "enterprise-a", "enterprise-b", demo::WETLAND] {
        let b = call(
            &app,
            "GET",
            &format!("/v1/participants/{holder}/balances"),
            None,
            Vec::new(),
        )
        .await;
        let b: Value = serde_json::from_slice(&b.body).unwrap();
        for row in b["balances"].as_array().unwrap() {
            for k in ["available", "pledged"] {
                let x: rust_decimal::Decimal = row[k].as_str().unwrap().parse().unwrap();
                if x.is_sign_negative() {
                    errors.push(format!("{holder} {k} {x}"));
                }
            }
        }
    }
    probe.record("the batch balances, nobody negative", "", errors);
    probe.finish("market rules");
}

// ---------------------------------------------------------------------------------------------
// What an attacker tries first
// ---------------------------------------------------------------------------------------------

/// Pins the first things an attacker tries: an entry dated far in the future, granting oneself
/// the operator role, registering another participant's key, taking over a participant id,
/// registering without the operator, issuing sink without authority, a group of 10,000 entries,
/// an atomic group whose last entry fails (nothing appended), and a signed entry sent with a
/// content type that is not JSON (never a 5xx, never half-applied).
#[tokio::test]
async fn what_an_attacker_tries_first() {
    let (app, state, mut market) = populated().await;
    let mut probe = Probe::new(app.clone(), state.clone());

    let future = market.signed(
        "CERT-FUT",
        "2999-01-01T00:00:00Z",
        json!({"type": "retire", "holder": "enterprise-b", "batch": demo::BATCH,
               "quantity": "1", "beneficiary": "B", "purpose": "p"}),
        &["enterprise-b"],
    );
    probe
        .submit_refused(
            "created_at in the year 2999",
            &future,
            &["created-in-future", "refused"],
        )
        .await;

    let mallory = ledger_api::keys::generate_key();
    market.extra.insert("mallory".to_owned(), mallory.clone());
    let register =
        |m: &Market, id: &str, participant: &str, roles: Value, key: &str, signers: &[&str]| {
            m.signed(
                id,
                &m.at(17),
                json!({"type": "register_participant", "participant": participant, "name": "M",
                   "roles": roles, "public_key": key}),
                signers,
            )
        };
    let mallory_pk = ledger_api::keys::public_key_base64(&mallory);
    probe
        .submit_refused(
            "register with the operator role",
            &register(
                &market,
                "reg-m1",
                "mallory",
                json!(["operator"]),
                &mallory_pk,
                &[OPERATOR, "mallory"],
            ),
            &["operator-role-reserved"],
        )
        .await;
    probe
        .submit_refused(
            "register with the operator role among others",
            &register(
                &market,
                "reg-m2",
                "mallory",
                json!(["enterprise", "operator"]),
                &mallory_pk,
                &[OPERATOR, "mallory"],
            ),
            &["operator-role-reserved"],
        )
        .await;
    probe
        .submit_refused(
            "register with a role twice",
            &register(
                &market,
                "reg-m3",
                "mallory",
                json!(["enterprise", "enterprise"]),
                &mallory_pk,
                &[OPERATOR, "mallory"],
            ),
            &["bad-roles"],
        )
        .await;
    probe
        .submit_refused(
            "register with no role",
            &register(
                &market,
                "reg-m4",
                "mallory",
                json!([]),
                &mallory_pk,
                &[OPERATOR, "mallory"],
            ),
            &["bad-roles"],
        )
        .await;
    probe
        .post_refused(
            "register with an unknown role",
            mutated(
                &register(
                    &market,
                    "reg-m5",
                    "mallory",
                    json!(["enterprise"]),
                    &mallory_pk,
                    &[OPERATOR, "mallory"],
                ),
                |v| v["body"]["roles"] = json!(["god"]),
            ),
            &["malformed-entry"],
        )
        .await;
    probe
        .submit_refused(
            "register without the operator",
            &register(
                &market,
                "reg-m6",
                "mallory",
                json!(["enterprise"]),
                &mallory_pk,
                &["mallory"],
            ),
            &["wrong-signers"],
        )
        .await;
    probe
        .submit_refused(
            "register without proof of possession",
            &register(
                &market,
                "reg-m7",
                "mallory",
                json!(["enterprise"]),
                &mallory_pk,
                &[OPERATOR],
            ),
            &["wrong-signers"],
        )
        .await;
    // Reusing enterprise-a's public key (with its key's signature as proof of possession).
    let a_pk = ledger_api::keys::public_key_base64(market.key("enterprise-a"));
    let reuse = market.sign_with(
        market.body(
            "reg-m8",
            &market.at(17),
            json!({"type": "register_participant", "participant": "mallory", "name": "M",
                   "roles": ["enterprise"], "public_key": a_pk}),
        ),
        &[(OPERATOR, OPERATOR), ("mallory", "enterprise-a")],
    );
    probe
        .submit_refused(
            "register another participant's key",
            &reuse,
            &["key-in-use"],
        )
        .await;
    probe
        .submit_refused(
            "register over an existing participant id",
            &market.sign_with(
                market.body(
                    "reg-m9",
                    &market.at(17),
                    json!({"type": "register_participant", "participant": "enterprise-a",
                           "name": "M", "roles": ["enterprise"], "public_key": mallory_pk}),
                ),
                &[(OPERATOR, OPERATOR), ("enterprise-a", "mallory")],
            ),
            &["already-exists"],
        )
        .await;
    probe
        .submit_refused(
            "issue a batch signed by the platform",
            &market.signed(
                "iss-m",
                &market.at(17),
                json!({"type": "issue_batch", "batch": "XZH-2021-M", "report": "XZH-MR-2021",
                       "quantity": "1", "vintage": 2021}),
                &[demo::PLATFORM],
            ),
            &["wrong-signers", "missing-role"],
        )
        .await;
    probe
        .submit_refused(
            "issue beyond the verified quantity",
            &market.signed(
                "iss-m2",
                &market.at(17),
                json!({"type": "issue_batch", "batch": "XZH-2021-M", "report": "XZH-MR-2021",
                       "quantity": "1", "vintage": 2021}),
                &[OPERATOR],
            ),
            &["exceeds-verified"],
        )
        .await;
    probe
        .submit_refused(
            "a price published by an enterprise",
            &market.signed(
                "price-m",
                &market.at(17),
                json!({"type": "publish_price", "price": "BM-M", "basis": "benchmark",
                       "unit_price": "999.00", "currency": "CNY", "effective_at": "2022-06-01T00:00:00Z"}),
                &["enterprise-a"],
            ),
            &["missing-role", "wrong-signers"],
        )
        .await;
    probe
        .submit_refused(
            "a reversal of more than the buffer",
            &market.signed(
                "rev-m",
                &market.at(26),
                json!({"type": "reversal", "batch": demo::BATCH, "quantity": "1700.001", "reason": "fire"}),
                &[OPERATOR, "zj-forestry-academy"],
            ),
            &["insufficient-buffer"],
        )
        .await;

    // A group of 10,000 entries: over the body limit, and (with room for the body) over the
    // group limit.
    let one = market.transfer("T-G", "enterprise-b", "enterprise-a", "1");
    let big = serde_json::to_vec(&json!({"entries": vec![&one; 10_000]})).unwrap();
    probe
        .refused(
            "a group of 10,000 entries",
            "POST",
            "/v1/entries/group",
            Some("application/json"),
            big.clone(),
            &["body-too-large", "group-size"],
        )
        .await;
    probe
        .refused(
            "a group of 10,000 empty objects",
            "POST",
            "/v1/entries/group",
            Some("application/json"),
            serde_json::to_vec(&json!({"entries": vec![json!({}); 10_000]})).unwrap(),
            &["group-size"],
        )
        .await;
    {
        let (roomy, roomy_state, _) = memory_app(Limits {
            body_bytes: 64 << 20,
            ..Limits::default()
        });
        let mut roomy_probe = Probe::new(roomy, roomy_state);
        roomy_probe
            .refused(
                "a group of 10,000 entries, body limit 64 MiB",
                "POST",
                "/v1/entries/group",
                Some("application/json"),
                big,
                &["group-size"],
            )
            .await;
        probe.rows.append(&mut roomy_probe.rows);
        probe.failures.append(&mut roomy_probe.failures);
    }

    // Atomic groups whose last entry fails: nothing appended, the index names the last entry.
    let ok1 = market.transfer("T-AG-1", "enterprise-b", "enterprise-a", "100");
    let ok2 = market.transfer("T-AG-2", "enterprise-b", "enterprise-a", "100");
    let too_much = market.transfer("T-AG-3", "enterprise-b", "enterprise-a", "1801");
    let mut forged = market.transfer("T-AG-4", "enterprise-b", "enterprise-a", "1");
    forged.signatures[0].sig.0[0] ^= 1;
    for (name, last, kind) in [
        (
            "a group whose last entry overspends",
            serde_json::to_value(&too_much).unwrap(),
            "insufficient-sink",
        ),
        (
            "a group whose last entry is forged",
            serde_json::to_value(&forged).unwrap(),
            "bad-signature",
        ),
        (
            "a group whose last entry is malformed",
            json!({"body": {}, "signatures": []}),
            "malformed-entry",
        ),
        (
            "a group whose last entry repeats the first's id",
            serde_json::to_value(market.transfer("T-AG-1", "enterprise-b", "enterprise-a", "2"))
                .unwrap(),
            "entry-id-conflict",
        ),
    ] {
        let body = json!({"entries": [ok1, ok2, last]});
        if let Some(problem) = probe
            .refused(
                name,
                "POST",
                "/v1/entries/group",
                Some("application/json"),
                serde_json::to_vec(&body).unwrap(),
                &[kind],
            )
            .await
        {
            if problem.index != Some(2) {
                probe
                    .failures
                    .push(format!("{name}: index {:?}, not 2", problem.index));
            }
        }
    }
    for id in ["T-AG-1", "T-AG-2"] {
        let r = call(&app, "GET", &format!("/v1/trades/{id}"), None, Vec::new()).await;
        if r.status != StatusCode::NOT_FOUND {
            probe
                .failures
                .push(format!("{id} of a refused group was applied: {}", r.status));
        }
    }

    // A signed entry with a content type that is not JSON: either accepted as the JSON it is or
    // refused as a problem; never a 5xx, never half-applied.
    let before = probe.snapshot();
    let plain = call(
        &app,
        "POST",
        "/v1/entries",
        Some("text/plain"),
        serde_json::to_vec(&market.transfer("T-CT", "enterprise-b", "enterprise-a", "1")).unwrap(),
    )
    .await;
    let after = probe.snapshot();
    let mut errors = Vec::new();
    match plain.status.as_u16() {
        201 if after.0 == before.0 + 1 => {}
        400..=499 if after == before && plain.content_type() == "application/problem+json" => {}
        _ => errors.push(format!(
            "{} ({}), size {} → {}: {}",
            plain.status,
            plain.content_type(),
            before.0,
            after.0,
            plain.text()
        )),
    }
    probe.record(
        "a signed entry sent as text/plain",
        &plain.status.to_string(),
        errors,
    );
    probe.finish("what an attacker tries first");
}

/// Pins query-string and path abuse: huge or negative numbers, numbers past u64, duplicate
/// parameters, unknown parameters, path traversal and odd bytes in path ids — each a 400
/// `malformed-request`, a 404 or a capped answer, never a 5xx or a panic.
#[tokio::test]
async fn query_strings_and_paths_cannot_hurt_the_service() {
    let (app, state, _market) = populated().await;
    let mut probe = Probe::new(app.clone(), state);
    let bad = "malformed-request";
    let max = u64::MAX;
    for (path, kinds) in [
        ("/v1/entries?from=-1", &[bad][..]),
        ("/v1/entries?limit=-1", &[bad]),
        ("/v1/entries?limit=0", &[bad]),
        ("/v1/entries?from=18446744073709551616", &[bad]),
        ("/v1/entries?limit=18446744073709551616", &[bad]),
        ("/v1/entries?from=1&from=2", &[bad]),
        ("/v1/entries?from=1e3", &[bad]),
        ("/v1/entries?from=%00", &[bad]),
        ("/v1/entries/18446744073709551616", &[bad]),
        ("/v1/entries/-1", &[bad]),
        ("/v1/entries/18446744073709551615", &["not-found"]),
        ("/v1/proofs/inclusion?seq=18446744073709551616", &[bad]),
        (
            "/v1/proofs/inclusion?seq=18446744073709551615",
            &["bad-proof-request"],
        ),
        (
            "/v1/proofs/inclusion?seq=0&tree_size=18446744073709551615",
            &["bad-proof-request", "not-found"],
        ),
        ("/v1/proofs/inclusion?seq=0&id=T-2022-0001", &[bad]),
        ("/v1/proofs/inclusion?id=..%2F..", &[bad]),
        (
            "/v1/proofs/consistency?old_size=18446744073709551615",
            &["bad-proof-request"],
        ),
        (
            "/v1/proofs/consistency?old_size=5&new_size=18446744073709551615",
            &["bad-proof-request", "not-found"],
        ),
        ("/v1/proofs/consistency", &[bad]),
        ("/v1/export?size=18446744073709551615", &["not-found"]),
        ("/v1/export?size=-1", &[bad]),
        ("/v1/participants/..%2F..", &[bad]),
        ("/v1/participants/..%2F..%2Fetc%2Fpasswd", &[bad]),
        ("/v1/participants/%2e%2e", &[bad]),
        ("/v1/participants/a%00b", &[bad]),
        ("/v1/participants/%E4%B8%AD%E6%96%87", &[bad]),
        ("/v1/participants/%FF%FE", &[bad]),
        ("/v1/participants/..%2F../balances", &[bad]),
        ("/v1/participants/../../etc/passwd", &["no-such-route"]),
        ("/v1/trades?after=-1", &[bad]),
        ("/v1/trades?party=a%20b", &[bad]),
        ("/v1/trades?kind=gift", &[bad]),
        ("/v1/prices/history?basis=..%2Fx", &[bad]),
        ("/v1/pledges?bank=%00", &[bad]),
        ("/v1/batches?limit=1&limit=2", &[bad]),
        ("/problems/..%2F..%2Fetc%2Fpasswd", &["not-found"]),
        ("/v1/entries%00", &["no-such-route"]),
    ] {
        probe
            .refused(&format!("GET {path}"), "GET", path, None, Vec::new(), kinds)
            .await;
    }
    let long_id = format!("/v1/participants/{}", "a".repeat(10_000));
    probe
        .refused(
            "GET a 10,000-character id",
            "GET",
            &long_id,
            None,
            Vec::new(),
            &[bad],
        )
        .await;

    // Any string is a cursor of an id-ordered list, and degenerate proofs may be answered or
    // refused: either way a 200 or a 4xx problem, never a 5xx.
    for path in [
        "/v1/proofs/consistency?old_size=0",
        "/v1/proofs/consistency?old_size=0&new_size=0",
        "/v1/proofs/consistency?old_size=3&new_size=3",
        "/v1/proofs/consistency?old_size=20&new_size=20",
        "/v1/proofs/inclusion?seq=0&tree_size=0",
        "/v1/proofs/inclusion?seq=0&tree_size=1",
        "/v1/export?size=0",
        "/v1/pledges/PL-2022-001/bundle",
        "/v1/prices/history?basis=benchmark&limit=1&after=0",
        "/v1/participants?after=..%2F..&limit=1",
        "/v1/trades?after=99999999999",
    ] {
        let reply = call(&app, "GET", path, None, Vec::new()).await;
        let errors = match reply.status.as_u16() {
            200 => Vec::new(),
            400..=499 => problem_of(&reply, &[bad, "bad-proof-request", "not-found"])
                .err()
                .into_iter()
                .collect(),
            _ => vec![format!("{}: {}", reply.status, reply.text())],
        };
        probe.record(&format!("GET {path}"), &reply.status.to_string(), errors);
    }

    // Capped, not refused.
    for (path, most) in [
        ("/v1/entries?limit=999999999", 1000),
        (&format!("/v1/entries?from={max}&limit=1000") as &str, 0),
        ("/v1/participants?limit=999999999", 1000),
    ] {
        let reply = call(&app, "GET", path, None, Vec::new()).await;
        let mut errors = Vec::new();
        if reply.status == StatusCode::OK {
            let v: Value = serde_json::from_slice(&reply.body).unwrap();
            let items = v
                .get("entries")
                .or_else(|| v.get("items"))
                .and_then(Value::as_array)
                .map_or(usize::MAX, Vec::len);
            if items > most.max(20) {
                errors.push(format!("{items} items"));
            }
        } else {
            errors.push(format!("{}: {}", reply.status, reply.text()));
        }
        probe.record(
            &format!("GET {path} (capped)"),
            &reply.status.to_string(),
            errors,
        );
    }
    probe.finish("query strings and paths");
}

/// Pins that methods a route does not take are 405 `method-not-allowed` problems that keep the
/// `Allow` header, and change nothing.
#[tokio::test]
async fn methods_not_allowed_are_405_problems() {
    let (app, state, market) = populated().await;
    let mut probe = Probe::new(app.clone(), state);
    let body = serde_json::to_vec(&retirement(&market, "CERT-M")).unwrap();
    for (method, path) in [
        ("DELETE", "/v1/entries"),
        ("PUT", "/v1/entries"),
        ("PATCH", "/v1/entries"),
        ("PUT", "/v1/entries/0"),
        ("DELETE", "/v1/entries/0"),
        ("GET", "/v1/entries/group"),
        ("POST", "/v1/ledger"),
        ("POST", "/v1/checkpoint"),
        ("DELETE", "/v1/participants/enterprise-a"),
        ("POST", "/healthz"),
        ("POST", "/v1/export"),
    ] {
        let name = format!("{method} {path}");
        if probe
            .refused(
                &name,
                method,
                path,
                Some("application/json"),
                body.clone(),
                &["method-not-allowed"],
            )
            .await
            .is_some()
        {
            let reply = call(&app, method, path, Some("application/json"), body.clone()).await;
            if reply.headers.get(header::ALLOW).is_none() {
                probe.failures.push(format!("{name}: no Allow header"));
            }
        }
    }
    probe.finish("methods");
}

/// Pins the promise of `docs/api.md` that a problem's `type` resolves: every kind the service
/// sends (here: those of refusals a client can provoke today) answers `GET /problems/<kind>`
/// with 200, and a kind the table does not list is sent as `/problems/refused`.
#[tokio::test]
async fn every_problem_type_sent_is_described() {
    let (app, state, market) = populated().await;
    let mut probe = Probe::new(app.clone(), state);
    let bank = demo::BANK;
    let t = &market.at(28);
    let provoked = [
        market.signed(
            "RP-T-1",
            t,
            json!({"type": "repay", "pledge": demo::PLEDGE, "amount": "164724.00"}),
            &[bank],
        ),
        market.signed(
            "EN-T-1",
            t,
            json!({"type": "enforce_pledge", "pledge": demo::PLEDGE}),
            &[bank],
        ),
        market.signed(
            "CERT-T-FUT",
            "2999-01-01T00:00:00Z",
            json!({"type": "retire", "holder": "enterprise-b", "batch": demo::BATCH,
                   "quantity": "1", "beneficiary": "B", "purpose": "p"}),
            &["enterprise-b"],
        ),
    ];
    let first = call(
        &app,
        "POST",
        "/v1/entries",
        Some("application/json"),
        serde_json::to_vec(&provoked[0]).unwrap(),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    for (name, s) in [
        ("enforce with nothing outstanding", &provoked[1]),
        ("created_at in the year 2999", &provoked[2]),
    ] {
        let reply = call(
            &app,
            "POST",
            "/v1/entries",
            Some("application/json"),
            serde_json::to_vec(s).unwrap(),
        )
        .await;
        let mut errors = Vec::new();
        let problem: Option<Problem> = serde_json::from_slice(&reply.body).ok();
        match problem {
            Some(p) if reply.status.is_client_error() => {
                let listed = PROBLEM_TYPES.iter().any(|t| t.kind == p.kind);
                let doc = call(&app, "GET", &p.type_uri, None, Vec::new()).await;
                if doc.status != StatusCode::OK {
                    errors.push(format!(
                        "sent type {} (kind {}, listed: {listed}), but GET {} answers {}",
                        p.type_uri, p.kind, p.type_uri, doc.status
                    ));
                }
                if !listed && p.type_uri != "/problems/refused" {
                    errors.push(format!(
                        "kind {} is not in the table, yet was sent as {} rather than /problems/refused",
                        p.kind, p.type_uri
                    ));
                }
            }
            _ => errors.push(format!("{}: {}", reply.status, reply.text())),
        }
        probe.record(name, &reply.status.to_string(), errors);
    }
    // A kind the core adds before the table lists it: the documented fallback.
    let unlisted = ledger_api::ApiError::new("some-rule-added-later", "refused");
    let problem = unlisted.problem();
    let errors = if problem.status == 422 && problem.type_uri == "/problems/refused" {
        Vec::new()
    } else {
        vec![format!(
            "an unlisted kind goes out as {} {} (docs/api.md: 422 /problems/refused); GET {} answers {}",
            problem.status,
            problem.type_uri,
            problem.type_uri,
            call(&app, "GET", &problem.type_uri, None, Vec::new()).await.status
        )]
    };
    probe.record(
        "a kind the table does not list yet",
        &problem.type_uri,
        errors,
    );
    probe.finish("problem types");
}

// ---------------------------------------------------------------------------------------------
// Transport level, over a real socket
// ---------------------------------------------------------------------------------------------

/// Writes `head`, then each chunk after `pause`, while reading the answer; returns what was read
/// (lossy text) once the server closes or `deadline` passes.
async fn raw(
    addr: std::net::SocketAddr,
    head: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    pause: Duration,
    close_after: bool,
) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        if writer.write_all(&head).await.is_err() {
            return;
        }
        for chunk in chunks {
            tokio::time::sleep(pause).await;
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
        if close_after {
            let _ = writer.shutdown().await;
        } else {
            // Keep the connection open a little so that the server answers before we go.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if answered(&out) {
                    break;
                }
            }
        }
    }
    writing.abort();
    String::from_utf8_lossy(&out).into_owned()
}

/// A transport case: name, first bytes, chunks, pause between chunks, whether to close after,
/// the statuses allowed ("" for a closed connection), whether an answer must be a problem.
type RawCase = (
    &'static str,
    Vec<u8>,
    Vec<Vec<u8>>,
    Duration,
    bool,
    &'static [&'static str],
    bool,
);

/// Whether `bytes` hold a whole HTTP answer (head and Content-Length body).
fn answered(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    bytes.len() >= end + 4 + length
}

/// Pins the transport level over a real socket (body limit 16 KiB): garbage bytes, a malformed
/// header, a body over the limit sent slowly (declared and chunked), a connection closed mid-body
/// and a body with invalid UTF-8 are each answered with a problem or a closed connection; none
/// appends anything and the service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_abuse_over_a_real_socket() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(
        dir.path(),
        Some(ORIGIN),
        Limits {
            body_bytes: 16 << 10,
            ..Limits::default()
        },
    )
    .await;
    let addr = running.addr;
    let client = Client::new(&running.url()).unwrap();
    let key = common::key_of(&running);
    let market = Market::new(ORIGIN, OPERATOR, key);
    let setup = client
        .post(
            "/v1/entries/group",
            serde_json::to_vec(&market.registrations_group()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(setup.status.as_u16(), 201, "{}", setup.text());
    let ledger = running.ledger().clone();
    let snapshot = || (ledger.size(), ledger.root());
    let valid = serde_json::to_vec(&market.up_to_acquisition()[0]).unwrap();

    let mut failures = Vec::new();
    let mut rows = Vec::new();
    let head = |length: usize| {
        format!("POST /v1/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n").into_bytes()
    };
    // (name, first bytes, chunks, pause between chunks, close after, statuses allowed, whether
    // an answer must be a problem: hyper answers unparseable requests itself, with a bare 400).
    let cases: Vec<RawCase> = vec![
        ("TLS hello / garbage bytes", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xff\xfe garbage\r\n\r\n".to_vec(), vec![], Duration::ZERO, false, &["400", ""], false),
        ("a header line without a colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n".to_vec(), vec![], Duration::ZERO, false, &["400", ""], false),
        ("a NUL in the request line", b"GET /v1/\x00 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), vec![], Duration::ZERO, false, &["400", ""], false),
        ("Content-Length 2^64", b"POST /v1/entries HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n".to_vec(), vec![], Duration::ZERO, false, &["400", "413", ""], false),
        ("two Content-Lengths", b"POST /v1/entries HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(), vec![], Duration::ZERO, false, &["400", ""], false),
        ("40 KiB declared, sent slowly", head(40 << 10), vec![vec![b' '; 1024]; 40], Duration::from_millis(10), false, &["413"], true),
        ("40 KiB chunked, sent slowly",
            b"POST /v1/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            (0..40).map(|_| { let mut c = b"400\r\n".to_vec(); c.extend(vec![b' '; 1024]); c.extend(b"\r\n"); c }).chain([b"0\r\n\r\n".to_vec()]).collect(),
            Duration::from_millis(10), false, &["413"], true),
        ("a valid entry cut mid-body", head(valid.len()), vec![valid[..valid.len() / 2].to_vec()], Duration::from_millis(20), true, &["", "400"], true),
        ("a declared body never sent", head(1000), vec![], Duration::ZERO, true, &["", "400"], true),
        ("invalid UTF-8 in a string", {
            let body = String::from_utf8(valid.clone()).unwrap().replacen("Wetland carbon", "\u{1}", 1).into_bytes();
            let body: Vec<u8> = body.into_iter().map(|b| if b == 1 { 0xff } else { b }).collect();
            let mut r = head(body.len());
            r.extend(body);
            r
        }, vec![], Duration::ZERO, false, &["400"], true),
    ];
    for (name, first, chunks, pause, close, statuses, must_be_problem) in cases {
        let before = snapshot();
        let started = Instant::now();
        let answer = raw(addr, first, chunks, pause, close).await;
        let status = answer.split(' ').nth(1).unwrap_or("").to_owned();
        let status = if answer.starts_with("HTTP/1.1 ") {
            status
        } else {
            String::new()
        };
        let mut errors = Vec::new();
        if !statuses.contains(&status.as_str()) {
            errors.push(format!(
                "expected {statuses:?}, got {:?}",
                answer.lines().next()
            ));
        }
        let is_problem = answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json");
        if !status.is_empty() && must_be_problem && !is_problem {
            errors.push(format!(
                "not a problem: {}",
                answer.chars().take(300).collect::<String>()
            ));
        }
        if started.elapsed() > Duration::from_secs(8) {
            errors.push(format!("took {:?}", started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if snapshot() != before {
            errors.push("the ledger changed".to_owned());
        }
        match client.get("/healthz").await {
            Ok(r) if r.status.as_u16() == 200 => {}
            other => errors.push(format!("/healthz after: {other:?}")),
        }
        rows.push(format!(
            "{:4} | {name} | {}",
            if errors.is_empty() { "ok" } else { "FAIL" },
            if status.is_empty() {
                "closed".to_owned()
            } else {
                status.clone()
            }
        ));
        failures.extend(errors.into_iter().map(|e| format!("{name}: {e}")));
    }
    // The valid entry, sent whole after all that, is appended.
    let accepted = client.post("/v1/entries", valid).await.unwrap();
    if accepted.status.as_u16() != 201 {
        failures.push(format!("the valid entry afterwards: {}", accepted.text()));
    }
    running.stop().await.unwrap();
    eprintln!("── transport: {} cases", rows.len());
    for row in &rows {
        eprintln!("  {row}");
    }
    assert!(
        failures.is_empty(),
        "transport: {} case(s) handled wrongly:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

fn dec(v: &Value) -> rust_decimal::Decimal {
    v.as_str()
        .map_or(rust_decimal::Decimal::ZERO, |s| s.parse().unwrap())
}

/// Pins the issue "many clients racing for the same sink": a holder with exactly 1,000 t, and 32
/// clients at once each selling it 100 t to a different buyer. Exactly 10 sales succeed and 22
/// are refused `insufficient-sink`; the holder ends at 0 and the buyers hold 1,000 t between
/// them; the receipts' sequence numbers are distinct and contiguous, right after the size before
/// the race, and are the ledger's entries there. Then 16 clients sending the same signed entry
/// get one 201 and fifteen duplicates of its receipt, and 16 bodies under one id one 201 and
/// fifteen 409s. The export verifies against the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_racing_for_the_same_sink() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), Some(ORIGIN), Limits::default()).await;
    let client = Client::new(&running.url()).unwrap();
    let key = common::key_of(&running);
    let mut market = Market::new(ORIGIN, OPERATOR, key.clone());
    let buyers: Vec<String> = (0..32).map(|i| format!("buyer-{i:02}")).collect();
    support::populate_over_http(&client, &mut market, &buyers).await;
    // The holder: enterprise-a, with exactly 1,000 t.
    let r = client
        .post(
            "/v1/entries",
            serde_json::to_vec(&market.transfer("T-SEED", demo::PLATFORM, "enterprise-a", "1000"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let size_before = client
        .get("/v1/ledger")
        .await
        .unwrap()
        .json::<Value>()
        .unwrap()["size"]
        .as_u64()
        .unwrap();

    let barrier = Arc::new(tokio::sync::Barrier::new(buyers.len()));
    let mut tasks = Vec::new();
    for (i, buyer) in buyers.iter().enumerate() {
        let body = serde_json::to_vec(&market.transfer(
            &format!("RACE-{i:02}"),
            "enterprise-a",
            buyer,
            "100",
        ))
        .unwrap();
        let (c, barrier) = (client.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.post("/v1/entries", body).await.unwrap()
        }));
    }
    let mut receipts: Vec<Receipt> = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status.as_u16() {
            201 => receipts.push(answer.json().unwrap()),
            422 => {
                assert_eq!(answer.problem().unwrap().kind, "insufficient-sink");
                refused += 1;
            }
            other => panic!("unexpected answer {other}: {}", answer.text()),
        }
    }
    assert_eq!(receipts.len(), 10, "exactly floor(1000/100) sales succeed");
    assert_eq!(refused, 22);

    let holder = client
        .get("/v1/participants/enterprise-a/balances")
        .await
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(dec(&holder["total_available"]), 0.into(), "{holder}");
    assert_eq!(dec(&holder["total_pledged"]), 0.into(), "{holder}");
    let mut bought = rust_decimal::Decimal::ZERO;
    for buyer in &buyers {
        let b = client
            .get(&format!("/v1/participants/{buyer}/balances"))
            .await
            .unwrap()
            .json::<Value>()
            .unwrap();
        let got = dec(&b["total_available"]);
        assert!(got == 0.into() || got == 100.into(), "{buyer}: {got}");
        bought += got;
    }
    assert_eq!(bought, 1000.into());

    let mut seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (size_before..size_before + 10).collect::<Vec<_>>(),
        "distinct, contiguous, no gap"
    );
    let info = client
        .get("/v1/ledger")
        .await
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(info["size"].as_u64().unwrap(), size_before + 10);
    let page = client
        .get(&format!("/v1/entries?from={size_before}&limit=100"))
        .await
        .unwrap()
        .json::<Value>()
        .unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 10);
    for entry in entries {
        let seq = entry["seq"].as_u64().unwrap();
        let receipt = receipts.iter().find(|r| r.seq == seq).unwrap();
        assert_eq!(entry["leaf_hash"].as_str().unwrap(), receipt.leaf_hash);
        assert_eq!(
            entry["envelope"]["entry"]["body"]["id"].as_str().unwrap(),
            receipt.id
        );
    }

    // The same signed entry from 16 clients at once: one 201, fifteen 200 duplicates carrying
    // the same receipt; and 16 different bodies under one id: one 201, fifteen 409.
    let same =
        serde_json::to_vec(&market.transfer("DUP-1", demo::PLATFORM, "enterprise-b", "1")).unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (c, b, body) = (client.clone(), barrier.clone(), same.clone());
            tokio::spawn(async move {
                b.wait().await;
                c.post("/v1/entries", body).await.unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let created: Vec<Receipt> = answers
        .iter()
        .filter(|a| a.status.as_u16() == 201)
        .map(|a| a.json().unwrap())
        .collect();
    assert_eq!(
        created.len(),
        1,
        "one of 16 identical submissions is appended"
    );
    for a in answers.iter().filter(|a| a.status.as_u16() != 201) {
        assert_eq!(a.status.as_u16(), 200, "{}", a.text());
        let r: Receipt = a.json().unwrap();
        assert!(r.duplicate);
        assert_eq!(
            (r.seq, &r.leaf_hash),
            (created[0].seq, &created[0].leaf_hash)
        );
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let body = serde_json::to_vec(&market.transfer(
                "DUP-2",
                demo::PLATFORM,
                "enterprise-b",
                &format!("{}", i + 1),
            ))
            .unwrap();
            let (c, b) = (client.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                c.post("/v1/entries", body).await.unwrap()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let a = task.await.unwrap();
        if a.status.as_u16() == 409 {
            assert_eq!(a.problem().unwrap().kind, "entry-id-conflict");
        }
        statuses.push(a.status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [[201].as_slice(), &[409; 15]].concat(),
        "one id, one entry"
    );
    let size_after = size_before + 12;

    let note = client.get("/v1/checkpoint").await.unwrap().text();
    let export = client.get("/v1/export").await.unwrap();
    let report =
        ledger_core::verify::verify_export(export.body.as_ref(), &note, &key.verifying_key())
            .unwrap();
    assert_eq!(report.entries, size_after);
    running.stop().await.unwrap();
}
