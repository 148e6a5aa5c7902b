//! The service over a real socket: the reference case end to end, clients racing to sell the
//! same sink, a restart that keeps everything, and a shutdown that finishes what is in flight.

mod common;

use std::collections::BTreeMap;

use common::*;
use ledger_api::client::Client;
use ledger_api::demo::{self, ReferenceCase};
use ledger_api::Limits;
use ledger_core::ledger::{InclusionProof, Receipt};
use ledger_core::{checkpoint, merkle, verify};
use serde_json::{json, Value};

async fn fetch(client: &Client, path: &str) -> Value {
    client.get(path).await.unwrap().ok_json().unwrap()
}

fn unhex(text: &str) -> merkle::Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_case_end_to_end_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), Some(ORIGIN), Limits::default()).await;
    let client = Client::new(&running.url()).unwrap();
    let key = key_of(&running);
    let case = ReferenceCase::new(ORIGIN, OPERATOR, key.clone());
    let outcomes = demo::replay(&client, &case).await.unwrap();
    assert_eq!(outcomes.iter().filter(|o| o.receipt.is_some()).count(), 19);
    assert_eq!(outcomes.iter().filter(|o| o.refusal.is_some()).count(), 2);

    // Issuance: 17,000 t with a 10 % buffer; every tonne accounted for.
    let batch = fetch(&client, "/v1/batches/XZH-2021").await;
    let dec = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    assert_eq!(dec(&batch["issued"]), dec(&json!("17000")));
    assert_eq!(dec(&batch["buffer_initial"]), dec(&json!("1700")));
    let sum: rust_decimal::Decimal = ["available", "pledged", "buffer", "retired", "reversed"]
        .iter()
        .map(|k| dec(&batch[*k]))
        .sum();
    assert_eq!(sum, dec(&json!("17000")));

    // The acquisition, 10,000 t × 58.83 = 588,300.00 CNY, and where the sink went.
    let acquisition = fetch(&client, "/v1/trades/T-2022-0001").await;
    assert_eq!(acquisition["amount"], "588300.00");
    let holdings: BTreeMap<&str, (&str, &str)> = [
        (demo::WETLAND, ("5300", "0")),
        (demo::PLATFORM, ("1000", "4000")),
        ("enterprise-a", ("2000", "0")),
        ("enterprise-b", ("2000", "0")),
    ]
    .into();
    for (holder, (available, pledged)) in holdings {
        let balances = fetch(&client, &format!("/v1/participants/{holder}/balances")).await;
        let row = &balances["balances"][0];
        assert_eq!(dec(&row["available"]), dec(&json!(available)), "{holder}");
        assert_eq!(dec(&row["pledged"]), dec(&json!(pledged)), "{holder}");
    }
    let proceeds = fetch(&client, "/v1/projects/XZH/proceeds").await;
    assert_eq!(proceeds["items"][0]["total"], "888300.00");
    let certificate = fetch(&client, "/v1/certificates/CERT-2022-0001").await;
    assert_eq!(certificate["beneficiary"], "Enterprise A");
    let pledge = fetch(&client, "/v1/pledges/PL-2022-001").await;
    assert_eq!(pledge["coverage"]["coverage_ratio"], "1.4286");

    // The checkpoint verifies with the operator key; an inclusion proof leads to its root.
    let note = client.get("/v1/checkpoint").await.unwrap().text();
    let cp = checkpoint::open_checkpoint(&note, ORIGIN, &key.verifying_key()).unwrap();
    assert_eq!(cp.size, 20);
    let proof: InclusionProof = client
        .get("/v1/proofs/inclusion?id=T-2022-0001")
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    let leaf = client
        .get(&format!("/v1/entries/{}", proof.seq))
        .await
        .unwrap();
    let envelope = leaf.text();
    let start = envelope.find("\"envelope\":").unwrap() + "\"envelope\":".len();
    let raw = &envelope[start..envelope.len() - 1];
    assert_eq!(
        hex::encode(merkle::leaf_hash(raw.as_bytes())),
        proof.leaf_hash
    );
    let path: Vec<_> = proof.proof.iter().map(|h| unhex(h)).collect();
    merkle::verify_inclusion(
        &unhex(&proof.leaf_hash),
        proof.seq,
        cp.size,
        &path,
        &cp.root,
    )
    .unwrap();

    // The export replays against the checkpoint; the pledge bundle verifies offline.
    let export = client.get("/v1/export").await.unwrap();
    assert_eq!(export.headers["ledger-tree-size"], "20");
    let report = verify::verify_export(export.body.as_ref(), &note, &key.verifying_key()).unwrap();
    assert_eq!(report.entries, 20);
    let bundle = client
        .get("/v1/pledges/PL-2022-001/bundle")
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    let finding = verify::verify_pledge_bundle(&bundle, &key.verifying_key()).unwrap();
    assert_eq!(finding.bank, demo::BANK);
    running.stop().await.unwrap();
}

/// The log as C2SP tlog tiles over a real socket: the checkpoint at `/checkpoint`, the level-0
/// tile and the entry bundle of the reference case's 20 entries (a partial tile of width 20),
/// the bundle's leaves the export's lines and hashing to the tile, which leads to the signed
/// root; the caching headers as the spec asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_reads_as_tlog_tiles_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), Some(ORIGIN), Limits::default()).await;
    let client = Client::new(&running.url()).unwrap();
    let key = key_of(&running);
    let case = ReferenceCase::new(ORIGIN, OPERATOR, key.clone());
    demo::replay(&client, &case).await.unwrap();

    let answer = client.get("/checkpoint").await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(answer.headers["cache-control"], "no-store");
    let cp = checkpoint::open_checkpoint(&answer.text(), ORIGIN, &key.verifying_key()).unwrap();
    assert_eq!(cp.size, 20);

    let immutable = "public, max-age=31536000, immutable";
    let tile = client.get("/tile/0/000.p/20").await.unwrap();
    assert_eq!(tile.status, 200);
    assert_eq!(tile.headers["content-type"], "application/octet-stream");
    assert_eq!(tile.headers["cache-control"], immutable);
    let bundle = client.get("/tile/entries/000.p/20").await.unwrap();
    assert_eq!(bundle.status, 200);
    assert_eq!(bundle.headers["cache-control"], immutable);
    let export = client.get("/v1/export").await.unwrap();

    let mut rest = bundle.body.as_ref();
    let mut hashes = Vec::new();
    for (line, expected) in export.body.split(|b| *b == b'\n').zip(tile.body.chunks(32)) {
        let length = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let leaf = &rest[2..2 + length];
        rest = &rest[2 + length..];
        assert_eq!(leaf, line);
        assert_eq!(merkle::leaf_hash(leaf).as_slice(), expected);
        hashes.push(merkle::leaf_hash(leaf));
    }
    assert!(rest.is_empty());
    assert_eq!(hashes.len(), 20);
    let mut tree = merkle::CompactTree::new();
    for hash in &hashes {
        tree.append(*hash).unwrap();
    }
    assert_eq!(tree.root(), cp.root);

    for (path, status) in [
        ("/tile/0/000", 404),
        ("/tile/0/000.p/21", 404),
        ("/tile/0/0", 400),
    ] {
        let answer = client.get(path).await.unwrap();
        assert_eq!(answer.status, status, "{path}");
        assert_eq!(answer.headers["content-type"], "application/problem+json");
    }
    running.stop().await.unwrap();
}

/// Sets up a ledger where the platform holds 10,000 t of the batch, and nothing else happened.
async fn platform_holds_10000(client: &Client, case: &ReferenceCase) {
    let registrations: Vec<_> = case
        .registrations()
        .into_iter()
        .map(|s| s.submission)
        .collect();
    client
        .post(
            "/v1/entries/group",
            serde_json::to_vec(&json!({"entries": registrations})).unwrap(),
        )
        .await
        .unwrap()
        .ok_json::<Value>()
        .unwrap();
    for step in case.market().into_iter().take(6) {
        let answer = client
            .post("/v1/entries", serde_json::to_vec(&step.submission).unwrap())
            .await
            .unwrap();
        assert!(
            answer.status.is_success(),
            "{}: {}",
            step.label,
            answer.text()
        );
    }
}

fn resale(case: &ReferenceCase, id: &str, buyer: &str, quantity: &str, amount: &str) -> Vec<u8> {
    let body = case.body(
        id,
        &case.at(20),
        json!({"type": "trade", "kind": "eco_compensation", "seller": demo::PLATFORM, "buyer": buyer,
               "batch": demo::BATCH, "quantity": quantity, "unit_price": "60.00", "currency": "CNY",
               "amount": amount}),
    );
    serde_json::to_vec(&case.sign(body, &[demo::PLATFORM, buyer])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_racing_to_sell_the_same_sink_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), Some(ORIGIN), Limits::default()).await;
    let client = Client::new(&running.url()).unwrap();
    let case = ReferenceCase::new(ORIGIN, OPERATOR, key_of(&running));
    platform_holds_10000(&client, &case).await;

    // Two buyers, 8,000 t each, of the platform's 10,000: only one sale can happen.
    let a = resale(&case, "RACE-A", "enterprise-a", "8000", "480000.00");
    let b = resale(&case, "RACE-B", "enterprise-b", "8000", "480000.00");
    let (ca, cb) = (client.clone(), client.clone());
    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { ca.post("/v1/entries", a).await.unwrap() }),
        tokio::spawn(async move { cb.post("/v1/entries", b).await.unwrap() }),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let statuses = [ra.status.as_u16(), rb.status.as_u16()];
    assert!(
        statuses.contains(&201) && statuses.contains(&422),
        "{statuses:?}"
    );
    let loser = if ra.status.as_u16() == 422 { &ra } else { &rb };
    assert_eq!(loser.problem().unwrap().kind, "insufficient-sink");
    let winner = if ra.status.as_u16() == 201 {
        "enterprise-a"
    } else {
        "enterprise-b"
    };
    let other = if winner == "enterprise-a" {
        "enterprise-b"
    } else {
        "enterprise-a"
    };
    let balance = |holder: String| {
        let client = client.clone();
        async move {
            let b = fetch(&client, &format!("/v1/participants/{holder}/balances")).await;
            b["total_available"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        }
    };
    assert_eq!(balance(demo::PLATFORM.into()).await, 2000.into());
    assert_eq!(balance(winner.into()).await, 8000.into());
    assert_eq!(balance(other.into()).await, 0.into());

    // Eight clients selling 1,000 t each of the 2,000 left: exactly two win.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let buyer = if i % 2 == 0 {
            "enterprise-a"
        } else {
            "enterprise-b"
        };
        let body = resale(&case, &format!("RACE-{i}"), buyer, "1000", "60000.00");
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.post("/v1/entries", body).await.unwrap().status.as_u16()
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            201 => won += 1,
            422 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(won, 2);
    assert_eq!(balance(demo::PLATFORM.into()).await, 0.into());
    let batch = fetch(&client, "/v1/batches/XZH-2021").await;
    assert_eq!(
        batch["available"]
            .as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap(),
        15300.into()
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_entries_balances_root_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), Some(ORIGIN), Limits::default()).await;
    let client = Client::new(&running.url()).unwrap();
    let key = key_of(&running);
    let case = ReferenceCase::new(ORIGIN, OPERATOR, key.clone());
    demo::replay(&client, &case).await.unwrap();
    let info = fetch(&client, "/v1/ledger").await;
    let note = client.get("/v1/checkpoint").await.unwrap().text();
    let balances = fetch(&client, "/v1/participants/two-mountains-bank/balances").await;
    let export = client.get("/v1/export").await.unwrap().body;
    running.stop().await.unwrap();

    // Started again on the same folder, without --origin: the folder's origin and key are reused.
    let running = start(dir.path(), None, Limits::default()).await;
    assert_eq!(key_of(&running).to_bytes(), key.to_bytes());
    let client = Client::new(&running.url()).unwrap();
    assert_eq!(fetch(&client, "/v1/ledger").await, info);
    assert_eq!(client.get("/v1/checkpoint").await.unwrap().text(), note);
    assert_eq!(
        fetch(&client, "/v1/participants/two-mountains-bank/balances").await,
        balances
    );
    assert_eq!(client.get("/v1/export").await.unwrap().body, export);

    // It goes on: the bank is repaid and releases the pledge.
    for (id, fields) in [
        (
            "REP-1",
            json!({"type": "repay", "pledge": demo::PLEDGE, "amount": "164724.00"}),
        ),
        (
            "REL-1",
            json!({"type": "release_pledge", "pledge": demo::PLEDGE}),
        ),
    ] {
        let submission = case.sign(case.body(id, &case.at(30), fields), &[demo::BANK]);
        let answer = client
            .post("/v1/entries", serde_json::to_vec(&submission).unwrap())
            .await
            .unwrap();
        assert_eq!(answer.status.as_u16(), 201, "{}", answer.text());
    }
    let pledge = fetch(&client, "/v1/pledges/PL-2022-001").await;
    assert_eq!(pledge["status"], "released");
    let new_note = client.get("/v1/checkpoint").await.unwrap().text();
    let old = checkpoint::open_checkpoint(&note, ORIGIN, &key.verifying_key()).unwrap();
    let new = checkpoint::open_checkpoint(&new_note, ORIGIN, &key.verifying_key()).unwrap();
    let proof = fetch(
        &client,
        &format!("/v1/proofs/consistency?old_size={}", old.size),
    )
    .await;
    let path: Vec<_> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| unhex(h.as_str().unwrap()))
        .collect();
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &path).unwrap();
    running.stop().await.unwrap();

    // A different origin for the same folder is refused, not silently ignored.
    let refused = ledger_api::server::start(ledger_api::server::ServeOptions {
        data: ledger_api::keys::DataDirOptions {
            dir: dir.path().to_owned(),
            origin: Some("another.example/ledger".into()),
            operator: OPERATOR.into(),
            operator_name: "x".into(),
        },
        listen: ([127, 0, 0, 1], 0).into(),
        limits: Limits::default(),
        entry_max_age: ledger_api::server::DEFAULT_ENTRY_MAX_AGE,
        witnesses: Vec::new(),
        cosign_interval: ledger_api::server::DEFAULT_COSIGN_INTERVAL,
        store: None,
    })
    .await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_what_is_in_flight_and_every_receipt_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), Some(ORIGIN), Limits::default()).await;
    let client = Client::new(&running.url()).unwrap();
    let case = ReferenceCase::new(ORIGIN, OPERATOR, key_of(&running));
    platform_holds_10000(&client, &case).await;

    // Many concurrent submissions, and a shutdown while they are in flight.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let body = resale(&case, &format!("SD-{i}"), "enterprise-a", "1", "60.00");
        let c = client.clone();
        tasks.push(tokio::spawn(
            async move { c.post("/v1/entries", body).await },
        ));
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    running.stop().await.unwrap();
    let mut receipts: Vec<Receipt> = Vec::new();
    for task in tasks {
        if let Ok(answer) = task.await.unwrap() {
            if answer.status.as_u16() == 201 {
                receipts.push(answer.json().unwrap());
            }
        }
    }

    // Every entry that was acknowledged is there after a restart, with the same leaf hash.
    let running = start(dir.path(), None, Limits::default()).await;
    let client = Client::new(&running.url()).unwrap();
    for receipt in &receipts {
        let entry = fetch(&client, &format!("/v1/entries/{}", receipt.seq)).await;
        assert_eq!(entry["leaf_hash"], receipt.leaf_hash.as_str());
    }
    let sold = fetch(&client, "/v1/participants/enterprise-a/balances").await;
    let total = sold["total_available"]
        .as_str()
        .map_or(0.into(), |s| s.parse::<rust_decimal::Decimal>().unwrap());
    assert!(
        total >= rust_decimal::Decimal::from(receipts.len()),
        "{total} < {}",
        receipts.len()
    );
    running.stop().await.unwrap();
}

/// `http_requests_in_flight` as `GET /metrics` shows it (the scrape counts itself).
async fn requests_in_flight(client: &Client) -> i64 {
    let text = client.get("/metrics").await.unwrap().text();
    text.lines()
        .find_map(|line| line.strip_prefix("http_requests_in_flight "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no http_requests_in_flight in:\n{text}"))
}

/// Polls the gauge until `settled` holds, for at most a generous deadline (a correctness bound:
/// the gauge must get there at all).
async fn wait_for_in_flight(client: &Client, settled: impl Fn(i64) -> bool, what: &str) -> i64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = requests_in_flight(client).await;
        if settled(now) {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "http_requests_in_flight is {now}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Regression: the in-flight gauge was raised before a request and lowered after its answer, so
/// a client that disconnected mid-request (the server then drops the request's future, which
/// never reaches the decrement) left it one higher for ever. Clients that go away while their
/// request waits, or in the middle of sending its body, leave it back at its baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_disconnect_mid_request_leave_the_in_flight_gauge_at_its_baseline() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), Some(ORIGIN), Limits::default()).await;
    let client = Client::new(&running.url()).unwrap();
    let baseline = requests_in_flight(&client).await;
    assert_eq!(baseline, 1, "only the scrape itself is in flight");

    // Requests that wait: each asks for an entry the ledger will not hold within the request
    // timeout, so it is answered only after 30 s; its client hangs up long before.
    let waiting = 4;
    let mut sockets = Vec::new();
    for _ in 0..waiting {
        let mut socket = tokio::net::TcpStream::connect(running.addr).await.unwrap();
        socket
            .write_all(b"GET /v1/entries?min_seq=1000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        sockets.push(socket);
    }
    // Requests that stop half-way through their body.
    let partial = 4;
    for _ in 0..partial {
        let mut socket = tokio::net::TcpStream::connect(running.addr).await.unwrap();
        socket
            .write_all(
                b"POST /v1/entries HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"body\": {",
            )
            .await
            .unwrap();
        sockets.push(socket);
    }
    wait_for_in_flight(
        &client,
        |n| n >= baseline + waiting + partial,
        "the requests were never counted",
    )
    .await;
    drop(sockets);
    wait_for_in_flight(
        &client,
        |n| n == baseline,
        "the disconnected requests are still counted",
    )
    .await;
    running.stop().await.unwrap();
}
