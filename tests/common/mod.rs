//! Helpers shared by the HTTP tests: an app over an in-memory ledger, oneshot requests, and
//! services on temporary folders.
#![allow(dead_code)]

pub mod contract;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use ed25519_dalek::SigningKey;
use ledger_api::demo::ReferenceCase;
use ledger_api::keys::{self, DataDirOptions};
use ledger_api::problem::Problem;
use ledger_api::server::{self, Running, ServeOptions};
use ledger_api::witness::{self, RunningWitness, WitnessOptions};
use ledger_api::{app, AppState, Limits};
use ledger_core::checkpoint;
use ledger_core::ledger::{Clock, Ledger, LedgerConfig};
use serde_json::Value;
use tower::ServiceExt as _;

pub const ORIGIN: &str = "test.carbon-sink-ledger.local/http";
pub const OPERATOR: &str = "deqing-registry";

pub fn operator_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

/// An app over a fresh in-memory ledger, and the reference case for it.
pub fn memory_app(limits: Limits) -> (axum::Router, AppState, ReferenceCase) {
    memory_app_on(limits, Clock::system())
}

/// A clock the test moves forward: the system's, plus the seconds in the handle.
pub fn movable_clock() -> (Clock, Arc<AtomicI64>) {
    let ahead = Arc::new(AtomicI64::new(0));
    let offset = Arc::clone(&ahead);
    let clock = Clock::from_fn(move || {
        time::OffsetDateTime::now_utc() + time::Duration::seconds(offset.load(Ordering::Relaxed))
    });
    (clock, ahead)
}

/// [`memory_app`] on a given clock.
pub fn memory_app_on(limits: Limits, clock: Clock) -> (axum::Router, AppState, ReferenceCase) {
    let mut config = LedgerConfig::new(
        ORIGIN.parse().unwrap(),
        OPERATOR.parse().unwrap(),
        "德清县生态资源登记中心 (test)".parse().unwrap(),
        operator_key(),
    );
    config.clock = clock;
    let ledger = Ledger::in_memory(config).unwrap();
    let state = AppState::new(Arc::new(ledger), limits);
    let case = ReferenceCase::new(ORIGIN, OPERATOR, operator_key());
    (app(state.clone()), state, case)
}

/// An answer from a oneshot request.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: axum::http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts that this is a problem of `kind` with the table's status, and returns it.
    pub fn problem(&self, kind: &str) -> Problem {
        assert_eq!(
            self.content_type,
            "application/problem+json",
            "{kind}: {} {}",
            self.status,
            self.text()
        );
        let problem: Problem = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(problem.kind, kind, "{}", self.text());
        assert_eq!(problem.type_uri, format!("/problems/{kind}"));
        assert_eq!(problem.status, self.status.as_u16());
        assert_eq!(
            problem.status,
            ledger_api::problem::problem_type(kind).status,
            "{kind}"
        );
        assert!(!problem.detail.is_empty());
        problem
    }
}

/// A oneshot request; its answer is checked against the OpenAPI document ([`contract`]).
pub async fn send(app: &axum::Router, method: &str, path: &str, body: impl Into<Body>) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    contract::check(method, path, status.as_u16(), &content_type, &body);
    Answer {
        status,
        content_type,
        headers,
        body,
    }
}

pub async fn get(app: &axum::Router, path: &str) -> Answer {
    send(app, "GET", path, Body::empty()).await
}

pub async fn post_json(app: &axum::Router, path: &str, value: &impl serde::Serialize) -> Answer {
    send(app, "POST", path, serde_json::to_vec(value).unwrap()).await
}

/// Submits every step of the reference case through the router; returns the number appended.
pub async fn replay_oneshot(app: &axum::Router, case: &ReferenceCase) -> usize {
    let registrations = case.registrations();
    let group = serde_json::json!({"entries": registrations.iter().map(|s| &s.submission).collect::<Vec<_>>()});
    let answer = post_json(app, "/v1/entries/group", &group).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    let mut appended = registrations.len();
    for step in case.market() {
        let answer = post_json(app, "/v1/entries", &step.submission).await;
        match step.expect {
            ledger_api::demo::Expect::Accepted => {
                assert_eq!(
                    answer.status,
                    StatusCode::CREATED,
                    "{}: {}",
                    step.label,
                    answer.text()
                );
                appended += 1;
            }
            ledger_api::demo::Expect::Refused(kind) => {
                answer.problem(kind);
            }
        }
    }
    appended
}

/// Starts a service on `dir` (an existing folder is reused).
pub async fn start(dir: &Path, origin: Option<&str>, limits: Limits) -> Running {
    server::start(ServeOptions {
        data: DataDirOptions {
            dir: dir.to_owned(),
            origin: origin.map(ToOwned::to_owned),
            operator: OPERATOR.to_owned(),
            operator_name: "德清县生态资源登记中心 (test)".to_owned(),
        },
        listen: ([127, 0, 0, 1], 0).into(),
        limits,
        entry_max_age: server::DEFAULT_ENTRY_MAX_AGE,
        witnesses: Vec::new(),
        cosign_interval: server::DEFAULT_COSIGN_INTERVAL,
        store: None,
    })
    .await
    .unwrap()
}

/// The operator key of a running service.
pub fn key_of(running: &Running) -> SigningKey {
    keys::read_key_file(&running.operator_key_path).unwrap()
}

/// The key name of the witness [`service_with_witness`] starts.
pub const WITNESS_NAME: &str = "witness.bank.example/w1";

/// The data folder options of a test service on `dir`.
pub fn data_options(dir: &Path, origin: &str) -> DataDirOptions {
    DataDirOptions {
        dir: dir.to_owned(),
        origin: Some(origin.to_owned()),
        operator: OPERATOR.to_owned(),
        operator_name: "德清县生态资源登记中心 (test)".to_owned(),
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A service on `dir/ledger` whose checkpoints go to a witness on `dir/witness` that follows it,
/// both on this runtime; the service submits every 100 ms.
pub async fn service_with_witness(dir: &Path, origin: &str) -> (Running, RunningWitness) {
    let data = keys::open_data_dir(&data_options(&dir.join("ledger"), origin)).unwrap();
    let log_vkey = checkpoint::verifier_key(origin, &data.config.operator_key.verifying_key());
    let port = free_port();
    let witness = witness::start(WitnessOptions {
        data: dir.join("witness"),
        name: Some(WITNESS_NAME.to_owned()),
        listen: ([127, 0, 0, 1], 0).into(),
        logs: vec![format!("http://127.0.0.1:{port}={log_vkey}")],
        ca_cert: None,
    })
    .await
    .unwrap();
    let running = server::start(ServeOptions {
        data: data_options(&dir.join("ledger"), origin),
        listen: ([127, 0, 0, 1], port).into(),
        limits: Limits::default(),
        entry_max_age: server::DEFAULT_ENTRY_MAX_AGE,
        witnesses: vec![format!("{}={}", witness.url(), witness.verifier_key)],
        cosign_interval: Duration::from_millis(100),
        store: None,
    })
    .await
    .unwrap();
    (running, witness)
}

/// Waits (up to a minute) until `GET /v1/checkpoint` of `running` is of its current size and
/// carries a cosignature of `witness` that verifies; returns that note.
pub async fn wait_until_cosigned(running: &Running, witness: &RunningWitness) -> String {
    let client = ledger_api::client::Client::new(&running.url()).unwrap();
    let operator = running.ledger().operator_key();
    let witnesses = vec![checkpoint::parse_cosigner_key(&witness.verifier_key).unwrap()];
    let deadline = Instant::now() + Duration::from_secs(60);
    let size = running.ledger().size();
    loop {
        let note = client.get("/v1/checkpoint").await.unwrap().text();
        let cp = checkpoint::open_checkpoint(&note, &running.origin, &operator).unwrap();
        if cp.size == size
            && checkpoint::verify_cosignatures(&note, &witnesses)
                .unwrap()
                .len()
                == 1
        {
            return note;
        }
        assert!(Instant::now() < deadline, "no cosigned checkpoint: {note}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
