//! A bank that trusts neither the operator nor anyone it did not choose: the service submits its
//! checkpoints to a validating witness (`serve --witness`), the bank checks a pledge from the
//! bundle, the operator's key and the witness's key alone (`verify-pledge --witness --quorum
//! --state`), and follows the coverage of its pledges as server-sent events.

mod common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::OPERATOR;
use ledger_api::client::Client;
use ledger_api::demo::{self, ReferenceCase};
use ledger_api::keys::{self, DataDirOptions};
use ledger_api::server::{self, Running, ServeOptions};
use ledger_api::witness::{self, RunningWitness, WitnessOptions};
use ledger_api::Limits;
use ledger_core::checkpoint;
use ledger_core::verify::{verify_pledge_bundle_with, BankPolicy, PledgeBundle};
use serde_json::{json, Value};
use support::bin;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const ORIGIN: &str = "bank.example/xiazhuhu";

fn data_options(dir: &Path) -> DataDirOptions {
    DataDirOptions {
        dir: dir.to_owned(),
        origin: Some(ORIGIN.to_owned()),
        operator: OPERATOR.to_owned(),
        operator_name: "德清县生态资源登记中心 (test)".to_owned(),
    }
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A service on `dir` whose checkpoints go to a witness following it, both on this runtime.
async fn service_with_witness(dir: &Path) -> (Running, RunningWitness) {
    let data = keys::open_data_dir(&data_options(&dir.join("ledger"))).unwrap();
    let log_vkey = checkpoint::verifier_key(ORIGIN, &data.config.operator_key.verifying_key());
    let port = free_port();
    let witness = witness::start(WitnessOptions {
        data: dir.join("witness"),
        name: Some("witness.bank.example/w1".to_owned()),
        listen: ([127, 0, 0, 1], 0).into(),
        logs: vec![format!("http://127.0.0.1:{port}={log_vkey}")],
    })
    .await
    .unwrap();
    let running = server::start(ServeOptions {
        data: data_options(&dir.join("ledger")),
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

async fn filled(running: &Running) -> (Client, ReferenceCase) {
    let client = Client::new(&running.url()).unwrap();
    let key = keys::read_key_file(&running.operator_key_path).unwrap();
    let case = ReferenceCase::new(ORIGIN, OPERATOR, key);
    demo::replay(&client, &case).await.unwrap();
    (client, case)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bank_verifies_a_pledge_from_the_bundle_and_a_witness_key_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (running, witness) = service_with_witness(dir.path()).await;
    let (client, case) = filled(&running).await;
    let operator = running.ledger().operator_key();
    let witnesses = vec![checkpoint::parse_cosigner_key(&witness.verifier_key).unwrap()];

    // The service submits its checkpoints by itself; GET /v1/checkpoint carries the cosignature.
    let deadline = Instant::now() + Duration::from_secs(60);
    let size = running.ledger().size();
    loop {
        let note = client.get("/v1/checkpoint").await.unwrap().text();
        let cp = checkpoint::open_checkpoint(&note, ORIGIN, &operator).unwrap();
        if cp.size == size
            && checkpoint::verify_cosignatures(&note, &witnesses)
                .unwrap()
                .len()
                == 1
        {
            break;
        }
        assert!(Instant::now() < deadline, "no cosigned checkpoint: {note}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = client.get("/metrics").await.unwrap().text();
    assert!(
        metrics.contains("ledger_witness_cosigned_size{witness=\"witness.bank.example/w1\"}"),
        "{metrics}"
    );

    // The bundle is cosigned before it is handed out; the bank needs nothing else.
    let bundle: PledgeBundle = client
        .get(&format!("/v1/pledges/{}/bundle", demo::PLEDGE))
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    let policy = BankPolicy {
        witnesses: witnesses.clone(),
        quorum: 1,
        accepted: None,
    };
    let finding = verify_pledge_bundle_with(&bundle, &operator, &policy).unwrap();
    assert_eq!(finding.cosigned_by, ["witness.bank.example/w1"]);

    // The CLI, as the bank runs it, keeping the checkpoint it accepts.
    let files = tempfile::tempdir().unwrap();
    let bundle_file = files.path().join("bundle.json");
    std::fs::write(&bundle_file, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let state_file = files.path().join("accepted-checkpoint");
    let vkey = checkpoint::verifier_key(ORIGIN, &operator);
    let verify = |bundle_file: &Path| {
        Command::new(bin())
            .args(["verify-pledge", "--bundle"])
            .arg(bundle_file)
            .args([
                "--operator-key",
                &vkey,
                "--witness",
                &witness.verifier_key,
                "--quorum",
                "1",
            ])
            .arg("--state")
            .arg(&state_file)
            .output()
            .unwrap()
    };
    let out = verify(&bundle_file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "cosigned by 1 of the 1 witnesses given (quorum 1)",
        "locked for this bank: 4000.000 t of batch XZH-2021",
        "holds 4000.000 t of XZH-2021 pledged",
        "outstanding 164724.00 CNY",
        "price in force: BM-2022-06 at 58.83 CNY",
        "coverage: 4000.000 t × 58.83 = 235320.00 CNY; ÷ outstanding = 1.4286",
    ] {
        assert!(text.contains(expected), "{expected} not in:\n{text}");
    }
    assert!(std::fs::read_to_string(&state_file)
        .unwrap()
        .starts_with(ORIGIN));

    // Later: a bundle without a consistency proof from the accepted size is refused; with one,
    // accepted.
    let repay = case.sign(
        case.body(
            "RP-bank",
            &case.at(30),
            json!({"type": "repay", "pledge": demo::PLEDGE, "amount": "1000.00"}),
        ),
        &[demo::BANK],
    );
    let answer = client
        .post("/v1/entries", serde_json::to_vec(&repay).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status.as_u16(), 201, "{}", answer.text());
    let later: PledgeBundle = client
        .get(&format!("/v1/pledges/{}/bundle", demo::PLEDGE))
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    std::fs::write(&bundle_file, serde_json::to_vec(&later).unwrap()).unwrap();
    let out = verify(&bundle_file);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("old_size"),
        "{out:?}"
    );
    let accepted = checkpoint::open_checkpoint(
        &std::fs::read_to_string(&state_file).unwrap(),
        ORIGIN,
        &operator,
    )
    .unwrap();
    let proved: PledgeBundle = client
        .get(&format!(
            "/v1/pledges/{}/bundle?old_size={}",
            demo::PLEDGE,
            accepted.size
        ))
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    std::fs::write(&bundle_file, serde_json::to_vec(&proved).unwrap()).unwrap();
    let out = verify(&bundle_file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("outstanding 163724.00 CNY"), "{text}");

    // The witness goes down: the ledger goes on accepting entries, and counts the failures.
    witness.stop().await.unwrap();
    let transfer = case.sign(
        case.body(
            "T-bank",
            &case.at(31),
            json!({"type": "trade", "kind": "transfer", "seller": "enterprise-b",
                   "buyer": "enterprise-a", "batch": demo::BATCH, "quantity": "1"}),
        ),
        &["enterprise-b", "enterprise-a"],
    );
    let answer = client
        .post("/v1/entries", serde_json::to_vec(&transfer).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status.as_u16(), 201, "{}", answer.text());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = client.get("/metrics").await.unwrap().text();
        if metrics.contains("ledger_witness_failures_total{witness=\"witness.bank.example/w1\"}") {
            break;
        }
        assert!(Instant::now() < deadline, "no failure counted:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await.unwrap();
}

/// Reads server-sent events from `path` over a plain socket until `stop` says so.
async fn read_events(url: &str, path: &str, mut stop: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let address = url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut lines = tokio::io::BufReader::new(socket).lines();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline.into(), lines.next_line())
        .await
        .unwrap_or(Ok(None))
    {
        if let Some(data) = line.strip_prefix("data: ") {
            let event: Value = serde_json::from_str(data).unwrap();
            let done = stop(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }
    panic!("the stream ended before the expected event: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_price_drop_puts_the_pledge_under_its_margin_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(dir.path(), Some(ORIGIN), Limits::default()).await;
    let (client, case) = filled(&running).await;
    let size = running.ledger().size();

    // The pledge carries a margin threshold of 1.25; at 58.83 its coverage is 1.4286.
    let pledge: Value = client
        .get(&format!("/v1/pledges/{}", demo::PLEDGE))
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    assert_eq!(pledge["margin_threshold"], "1.25", "{pledge}");
    assert_eq!(pledge["coverage"]["below_threshold"], false);
    let listed: Value = client
        .get("/v1/pledges?coverage_below=1.25")
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    assert_eq!(listed["items"], json!([]));

    // A follower from the current size on sees the price drop to 50.00 as it is accepted.
    let url = running.url();
    let follower = tokio::spawn(async move {
        read_events(&url, &format!("/v1/events?from={size}"), |e| {
            e["type"] == "publish_price"
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let drop = case.sign(
        case.body(
            "price-drop",
            &case.at(30),
            json!({"type": "publish_price", "price": "BM-DROP", "basis": "benchmark",
                   "unit_price": "50.00", "currency": "CNY", "effective_at": case.at(29)}),
        ),
        &["deqing-pricing"],
    );
    let answer = client
        .post("/v1/entries", serde_json::to_vec(&drop).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status.as_u16(), 201, "{}", answer.text());
    let events = follower.await.unwrap();
    let event = events.last().unwrap();
    assert_eq!(event["seq"], size);
    // 4,000 t × 50.00 = 200,000.00 ÷ 164,724.00 = 1.2142 < 1.25.
    assert_eq!(event["coverage"][0]["pledge"], demo::PLEDGE);
    assert_eq!(event["coverage"][0]["coverage_ratio"], "1.2142");
    assert_eq!(event["below_threshold"], json!([demo::PLEDGE]));
    let listed: Value = client
        .get("/v1/pledges?coverage_below=1.25")
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    assert_eq!(listed["items"][0]["id"], demo::PLEDGE);
    assert_eq!(listed["items"][0]["coverage"]["below_threshold"], true);
    let listed: Value = client
        .get("/v1/pledges?coverage_below=1.2")
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    assert_eq!(listed["items"], json!([]));

    // From 0, the stream replays the whole ledger first: the pledge's own entry is there.
    let url = running.url();
    let all = read_events(&url, "/v1/events?from=0", |e| e["seq"] == size).await;
    assert_eq!(all.len() as u64, size + 1);
    assert!(all
        .iter()
        .any(|e| e["type"] == "pledge" && e["coverage"][0]["pledge"] == demo::PLEDGE));
    running.stop().await.unwrap();
}
