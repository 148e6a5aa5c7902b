//! The `carbon-ledger` binary run as a user runs it: serve, keygen, sign (two parties, one after
//! the other), submit, verify, verify-pledge, demo, and a clean stop on SIGTERM.

use std::path::Path;
use std::process::{Command, Output};

mod support;

use ledger_api::client::Client;
use serde_json::{json, Value};
use support::{bin, Service};

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "carbon-ledger {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        !output.status.success(),
        "carbon-ledger {args:?} should fail"
    );
    String::from_utf8(output.stderr).unwrap()
}

fn http_get(url: &str, path: &str) -> ledger_api::client::HttpResponse {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { Client::new(url).unwrap().get(path).await.unwrap() })
}

#[test]
fn keygen_writes_a_private_key_file_and_prints_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("me.key");
    let public = ok(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(
        public.trim().parse::<ledger_core::ids::PublicKey>().is_ok(),
        "{public}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let refusal = fails(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(refusal.contains("me.key"), "{refusal}");
}

#[test]
fn serve_keygen_then_two_parties_sign_one_after_the_other_and_submit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data);
    let url = service.url.clone();
    let info: Value = http_get(&url, "/v1/ledger").json().unwrap();
    let origin = info["origin"].as_str().unwrap().to_owned();
    let operator = info["operator"].as_str().unwrap().to_owned();
    let operator_key = data.join("operator.key");

    // A new participant makes a key; the operator and the participant sign its registration,
    // one after the other.
    let key = dir.path().join("academy.key");
    let public = ok(&["keygen", "--out", key.to_str().unwrap()]);
    let body = dir.path().join("register.json");
    std::fs::write(
        &body,
        serde_json::to_vec_pretty(&json!({"type": "register_participant", "id": "reg-academy",
            "participant": "zj-forestry-academy", "name": "浙江省林业科学研究院",
            "roles": ["verifier"], "public_key": public.trim()}))
        .unwrap(),
    )
    .unwrap();
    let half = dir.path().join("half.json");
    let signed_once = ok(&[
        "sign",
        "--ledger",
        &origin,
        "--key",
        operator_key.to_str().unwrap(),
        "--signer",
        &operator,
        body.to_str().unwrap(),
    ]);
    std::fs::write(&half, &signed_once).unwrap();
    let full = dir.path().join("full.json");
    let signed = ok(&[
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--signer",
        "zj-forestry-academy",
        half.to_str().unwrap(),
    ]);
    std::fs::write(&full, &signed).unwrap();
    let submission: Value = serde_json::from_str(&signed).unwrap();
    assert_eq!(submission["signatures"].as_array().unwrap().len(), 2);

    // Half-signed, it is refused with the problem's detail; fully signed, it is appended once.
    let refusal = fails(&["submit", "--url", &url, half.to_str().unwrap()]);
    assert!(refusal.contains("wrong-signers"), "{refusal}");
    assert!(
        refusal.contains(&format!("answered by {url}/v1/entries")),
        "{refusal}"
    );
    // submit says on standard error where it posted; its standard output is the receipt alone.
    let output = run(&["submit", "--url", &url, full.to_str().unwrap()]);
    assert!(output.status.success());
    let said = String::from_utf8(output.stderr).unwrap();
    assert_eq!(said.trim(), format!("submitted to {url}/v1/entries"));
    let receipt: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(receipt["seq"], 1);
    assert_eq!(receipt["duplicate"], false);
    let again: Value =
        serde_json::from_str(&ok(&["submit", "--url", &url, full.to_str().unwrap()])).unwrap();
    assert_eq!(again["duplicate"], true);

    // Without --url, submit posts to 127.0.0.1:8080, and its help says so.
    let help = ok(&["submit", "--help"]);
    assert!(help.contains("http://127.0.0.1:8080"), "{help}");

    // The demo needs the operator key against a running service; with it, it replays the case.
    let refusal = fails(&["demo", "--url", &url]);
    assert!(refusal.contains("--operator-key"), "{refusal}");
    // This ledger holds the academy already: the demo's registrations are refused as a whole.
    let refusal = fails(&[
        "demo",
        "--url",
        &url,
        "--operator-key",
        operator_key.to_str().unwrap(),
    ]);
    assert!(refusal.contains("already-exists"), "{refusal}");
    let size = http_get(&url, "/v1/ledger").json::<Value>().unwrap()["size"].clone();
    assert_eq!(size, 2, "the refused group appended nothing");
}

#[test]
fn demo_against_a_running_service_then_offline_verification() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data);
    let url = service.url.clone();
    let operator_key = data.join("operator.key");
    let keys = dir.path().join("demo-keys");
    let report = ok(&[
        "demo",
        "--url",
        &url,
        "--operator-key",
        operator_key.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
    ]);
    for expected in [
        "19 entries appended over HTTP; 2 refusals shown on purpose",
        "Done: 19 entries appended and 2 refused on purpose.",
        "588,300.00",
        "10,000 t × 58.83 CNY",
        "CERT-2022-0001",
        "coverage ratio 1.4286",
        "inclusion of the acquisition",
        "✓",
    ] {
        assert!(
            report.contains(expected),
            "{expected} missing from:\n{report}"
        );
    }
    let info: Value = http_get(&url, "/v1/ledger").json().unwrap();
    let public = info["operator_public_key"].as_str().unwrap();
    let vkey = info["checkpoint_verifier_key"].as_str().unwrap();

    // The participants' keys are where --keys said, and sign for them: enterprise-b retires a
    // tonne, as docs/api.md shows.
    let retire = dir.path().join("retire.json");
    std::fs::write(
        &retire,
        r#"{"type": "retire", "id": "CERT-2022-0007", "holder": "enterprise-b", "batch": "XZH-2021",
            "quantity": "1", "beneficiary": "Enterprise B", "purpose": "test"}"#,
    )
    .unwrap();
    let signed = dir.path().join("retire.signed.json");
    let enterprise_key = keys.join("enterprise-b.key");
    std::fs::write(
        &signed,
        ok(&[
            "sign",
            "--ledger",
            info["origin"].as_str().unwrap(),
            "--key",
            enterprise_key.to_str().unwrap(),
            "--signer",
            "enterprise-b",
            retire.to_str().unwrap(),
        ]),
    )
    .unwrap();
    let receipt: Value =
        serde_json::from_str(&ok(&["submit", "--url", &url, signed.to_str().unwrap()])).unwrap();
    assert_eq!(receipt["id"], "CERT-2022-0007");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&enterprise_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A second run is refused as a whole: the case's entry ids are taken (409
    // entry-id-conflict, as docs/api.md says), and nothing is appended; its key files are kept.
    let size_before = http_get(&url, "/v1/ledger").json::<Value>().unwrap()["size"].clone();
    let refusal = fails(&[
        "demo",
        "--url",
        &url,
        "--operator-key",
        operator_key.to_str().unwrap(),
    ]);
    assert!(refusal.contains("409 entry-id-conflict"), "{refusal}");
    let size_after = http_get(&url, "/v1/ledger").json::<Value>().unwrap()["size"].clone();
    assert_eq!(size_before, size_after);
    let refusal = fails(&[
        "demo",
        "--url",
        &url,
        "--operator-key",
        operator_key.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
    ]);
    assert!(refusal.contains("never overwritten"), "{refusal}");

    // check on the folder of the running service says to stop the service first.
    let refusal = fails(&["check", "--data", data.to_str().unwrap()]);
    assert!(refusal.contains("stop the service first"), "{refusal}");

    // Offline: the export against the checkpoint, and the bank's bundle.
    let checkpoint = dir.path().join("checkpoint.txt");
    std::fs::write(&checkpoint, http_get(&url, "/v1/checkpoint").body).unwrap();
    let export = dir.path().join("export.ndjson");
    let size = http_get(&url, "/v1/ledger").json::<Value>().unwrap()["size"]
        .as_u64()
        .unwrap();
    std::fs::write(
        &export,
        http_get(&url, &format!("/v1/export?size={size}")).body,
    )
    .unwrap();
    let bundle = dir.path().join("bundle.json");
    std::fs::write(
        &bundle,
        http_get(&url, "/v1/pledges/PL-2022-001/bundle").body,
    )
    .unwrap();
    assert_eq!(
        service.terminate().code(),
        Some(0),
        "serve exits cleanly on SIGTERM"
    );

    let (e, c, b) = (
        export.to_str().unwrap(),
        checkpoint.to_str().unwrap(),
        bundle.to_str().unwrap(),
    );
    let verified = ok(&[
        "verify",
        "--export",
        e,
        "--checkpoint",
        c,
        "--operator-key",
        public,
    ]);
    assert!(verified.starts_with("OK"), "{verified}");
    assert!(
        verified.contains(&format!("entries replayed: {size}")),
        "{verified}"
    );
    ok(&[
        "verify",
        "--export",
        e,
        "--checkpoint",
        c,
        "--operator-key",
        vkey,
    ]);
    ok(&[
        "verify",
        "--export",
        e,
        "--checkpoint",
        c,
        "--operator-key",
        operator_key.to_str().unwrap(),
    ]);
    let pledge = ok(&["verify-pledge", "--bundle", b, "--operator-key", public]);
    assert!(pledge.contains("pledge PL-2022-001 verifies"), "{pledge}");
    assert!(pledge.contains("bank: deqing-rural-bank"), "{pledge}");

    // Tampering is caught: a figure changed in the export, another operator key.
    let text = std::fs::read_to_string(&export).unwrap();
    let tampered = dir.path().join("tampered.ndjson");
    std::fs::write(&tampered, text.replacen("588300.00", "588300.01", 1)).unwrap();
    let refusal = fails(&[
        "verify",
        "--export",
        tampered.to_str().unwrap(),
        "--checkpoint",
        c,
        "--operator-key",
        public,
    ]);
    assert!(refusal.contains("does NOT verify"), "{refusal}");
    let other = dir.path().join("other.key");
    let other_public = ok(&["keygen", "--out", other.to_str().unwrap()]);
    fails(&[
        "verify",
        "--export",
        e,
        "--checkpoint",
        c,
        "--operator-key",
        other_public.trim(),
    ]);
    let refusal = fails(&[
        "verify-pledge",
        "--bundle",
        b,
        "--operator-key",
        other_public.trim(),
    ]);
    assert!(refusal.contains("does not verify"), "{refusal}");

    // Restarted on the same folder, the ledger is as it was.
    let service = Service::start(&data);
    let again: Value = http_get(&service.url, "/v1/ledger").json().unwrap();
    assert_eq!(again["size"], size);
    assert_eq!(again["operator_public_key"], public);
}

#[test]
fn demo_on_its_own_temporary_folder() {
    let report = ok(&["demo"]);
    for expected in [
        "Xiazhu Lake wetland",
        "17,000 t issued",
        "1,700 t of it held back",
        "10,000 t × 58.83 CNY = 588,300.00 CNY",
        "(illustrative)",
        "restoration proceeds",
        "CERT-2022-0001",
        "facility limit 164,724.00 CNY",
        "coverage ratio 1.4286",
        "refused drawdown DD-3",
        "signature ✓",
        "the export replays",
    ] {
        assert!(
            report.contains(expected),
            "{expected} missing from:\n{report}"
        );
    }
}

fn ok_owned(args: &[String]) -> String {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn fails_owned(args: &[String]) -> String {
    fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The backup of docs/operations.md, as an operator would take and use it: checkpoint, export,
/// `check` on the stopped ledger, `restore` into a new folder, and a service on the restored
/// folder answering with the same root. A tampered export does not restore.
#[test]
fn backup_check_and_restore_as_an_operator_would() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data);
    let url = service.url.clone();
    let operator_key = data.join("operator.key");
    ok(&[
        "demo",
        "--url",
        &url,
        "--operator-key",
        operator_key.to_str().unwrap(),
    ]);
    let checkpoint = dir.path().join("checkpoint.txt");
    let note = http_get(&url, "/v1/checkpoint").body;
    std::fs::write(&checkpoint, &note).unwrap();
    let size = String::from_utf8(note.to_vec())
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    let export = dir.path().join("export.ndjson");
    std::fs::write(
        &export,
        http_get(&url, &format!("/v1/export?size={size}")).body,
    )
    .unwrap();
    let before: Value = http_get(&url, "/v1/ledger").json().unwrap();
    assert!(service.terminate().success());

    let checked = ok(&["check", "--data", data.to_str().unwrap()]);
    assert!(checked.contains(&format!("{size} entries")), "{checked}");

    let restored = dir.path().join("restored");
    let args = |to: &Path, export: &Path| {
        vec![
            "restore".to_owned(),
            "--data".to_owned(),
            to.to_str().unwrap().to_owned(),
            "--export".to_owned(),
            export.to_str().unwrap().to_owned(),
            "--checkpoint".to_owned(),
            checkpoint.to_str().unwrap().to_owned(),
            "--operator-key-file".to_owned(),
            operator_key.to_str().unwrap().to_owned(),
        ]
    };
    let said = ok_owned(&args(&restored, &export));
    assert!(said.contains(&format!("{size} entries")), "{said}");
    ok(&["check", "--data", restored.to_str().unwrap()]);
    // Never over an existing ledger.
    let refusal = fails_owned(&args(&restored, &export));
    assert!(refusal.contains("not empty"), "{refusal}");

    let service = Service::start(&restored);
    let after: Value = http_get(&service.url, "/v1/ledger").json().unwrap();
    assert_eq!(after["root"], before["root"]);
    assert_eq!(after["size"], before["size"]);
    assert!(service.terminate().success());

    // modified-quantity: one tonne more in the acquisition.
    let tampered = dir.path().join("tampered.ndjson");
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(text.contains("\"quantity\":\"10000\""));
    std::fs::write(
        &tampered,
        text.replacen("\"quantity\":\"10000\"", "\"quantity\":\"10001\"", 1),
    )
    .unwrap();
    let refusal = fails_owned(&args(&dir.path().join("other"), &tampered));
    assert!(refusal.contains("does NOT restore: entry "), "{refusal}");
}

/// `bench` runs to the end on a tiny load and reports both modes (its figures are not judged
/// here: timings are for docs/performance.md, measured in release on a quiet machine).
#[test]
fn bench_runs_both_modes_to_the_end() {
    let out = ok(&[
        "bench",
        "--entries",
        "24",
        "--clients",
        "4",
        "--holders",
        "6",
        "--ceiling-seconds",
        "0.05",
        "--json",
    ]);
    let json_line = out.lines().last().unwrap();
    let report: Value = serde_json::from_str(json_line).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{out}");
    for run in runs {
        assert_eq!(run["entries"], 24, "{out}");
        assert!(run["mean_group"].as_f64().unwrap() >= 1.0, "{out}");
    }
    assert!(report["ceiling"]["batch64_per_second"].as_f64().unwrap() > 0.0);
}

/// A data folder for `serve`, `check` and `export` holding a synthetic market
/// ([`ledger_core::load::Market`]) and `trades` two-signature trades, with a checkpoint. Returns
/// the market, to sign more trades (from number `trades` on).
fn market_data_dir(data: &Path, trades: usize) -> ledger_core::load::Market {
    use ledger_core::ledger::Ledger;
    let market = ledger_core::load::Market::new(20);
    let config = market.config().unwrap();
    std::fs::create_dir_all(data).unwrap();
    ledger_api::keys::write_key_file(&data.join("operator.key"), &config.operator_key).unwrap();
    let file = ledger_api::keys::LedgerFile {
        origin: ledger_core::load::ORIGIN.to_owned(),
        operator: "operator".to_owned(),
        operator_name: "Bench operator".to_owned(),
    };
    std::fs::write(
        data.join("ledger.json"),
        serde_json::to_string_pretty(&file).unwrap(),
    )
    .unwrap();
    let ledger = Ledger::open_dir(&data.join("store"), config).unwrap();
    market.setup(&ledger).unwrap();
    let signed: Vec<_> = (0..trades).map(|k| market.trade(k).unwrap()).collect();
    for group in signed.chunks(256) {
        ledger.submit_group(group.to_vec()).unwrap();
    }
    ledger.checkpoint().unwrap();
    market
}

/// Regression: a client that asks for the export and stops reading it kept a graceful shutdown
/// waiting for the response to end, for as long as the request timeout and 5 s more (with a
/// long request timeout, about for ever). Now the shutdown has its own deadline
/// (`--shutdown-timeout-secs`): the process exits, and a restart finds every entry that was
/// acknowledged. Without a shutdown, such a response is dropped after the idle timeout.
#[test]
fn sigterm_ends_the_service_while_a_client_stalls_an_export_and_nothing_acknowledged_is_lost() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An export of some 15 MB: more than the socket buffers of both ends hold, so the service
    // cannot finish writing it to a client that reads nothing.
    let trades = 16_000;
    let market = market_data_dir(&data, trades);
    let address = |url: &str| url.trim_start_matches("http://").to_owned();
    let stall_export = |url: &str| {
        let mut stalled = std::net::TcpStream::connect(address(url)).unwrap();
        stalled
            .write_all(b"GET /v1/export HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        // The head arrives; then the client reads no more.
        let mut head = [0u8; 12];
        stalled.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        stalled
    };

    // A response that makes no progress for the idle timeout is dropped, and its connection
    // closed, without a shutdown.
    let service = Service::start_with(&data, &["--idle-timeout-secs", "2"]);
    let stalled = stall_export(&service.url);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let metrics = http_get(&service.url, "/metrics").text();
        if metrics.contains("http_connections_closed_total{reason=\"stalled\"} 1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled export was not dropped:\n{metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(stalled);
    assert!(service.terminate().success());

    // A shutdown while a client stalls an export.
    let service = Service::start_with(
        &data,
        &[
            "--request-timeout-secs",
            "600",
            "--shutdown-timeout-secs",
            "2",
        ],
    );
    let url = service.url.clone();
    let trade = market.trade(trades).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let receipt: Value = runtime.block_on(async {
        Client::new(&url)
            .unwrap()
            .post(
                "/v1/entries",
                serde_json::to_vec(trade.submission()).unwrap(),
            )
            .await
            .unwrap()
            .ok_json()
            .unwrap()
    });
    let size = receipt["seq"].as_u64().unwrap() + 1;

    let stalled = stall_export(&url);
    // Let the service fill both ends' buffers (if it has not yet, the shutdown below is only
    // easier).
    std::thread::sleep(std::time::Duration::from_secs(2));

    let status = service.terminate();
    assert!(status.success(), "{status}");
    drop(stalled);

    let service = Service::start(&data);
    let entry: Value = http_get(&service.url, &format!("/v1/entries/{}", size - 1))
        .json()
        .unwrap();
    assert_eq!(entry["leaf_hash"], receipt["leaf_hash"]);
    let ledger: Value = http_get(&service.url, "/v1/ledger").json().unwrap();
    assert_eq!(ledger["size"], size);
    assert!(service.terminate().success());
    let checked = ok(&["check", "--data", data.to_str().unwrap()]);
    assert!(checked.contains(&format!("{size} entries")), "{checked}");
}

/// The counts in the plain progress lines `carbon-ledger` writes to a stderr that is not a
/// terminal (`WHAT: DONE of TOTAL entries (P %)`), in order.
fn progress_counts(stderr: &str, what: &str) -> Vec<(u64, u64)> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(what)?.strip_prefix(": ")?;
            let (done, rest) = rest.split_once(" of ")?;
            let (total, _) = rest.split_once(" entries (")?;
            Some((done.parse().ok()?, total.parse().ok()?))
        })
        .collect()
}

/// Asserts plain progress: a line at each tenth of the way or so, counts that only grow, the
/// last one the whole total.
fn assert_progress(stderr: &str, what: &str, total: u64) {
    let counts = progress_counts(stderr, what);
    assert!(
        counts.len() >= 10,
        "few progress lines of {what}:\n{stderr}"
    );
    assert!(
        counts.windows(2).all(|w| w[0].0 < w[1].0),
        "progress of {what} does not grow:\n{stderr}"
    );
    assert!(counts.iter().all(|&(_, t)| t == total), "{stderr}");
    assert_eq!(counts.last().unwrap().0, total, "{stderr}");
}

/// `check`, `verify` and `restore` run for minutes on a large ledger. With stderr not a
/// terminal (here a pipe) they write plain progress lines to it; stdout says what it said
/// before, and nothing else.
#[test]
fn long_commands_show_progress_on_stderr_and_leave_stdout_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    market_data_dir(&data, 300);
    let service = Service::start(&data);
    let url = service.url.clone();
    let note = http_get(&url, "/v1/checkpoint").body;
    let export_body = http_get(&url, "/v1/export").body;
    let info: Value = http_get(&url, "/v1/ledger").json().unwrap();
    assert!(service.terminate().success());
    let size = info["size"].as_u64().unwrap();
    let root = info["root"].as_str().unwrap();
    let checkpoint = dir.path().join("checkpoint.txt");
    std::fs::write(&checkpoint, &note).unwrap();
    let export = dir.path().join("export.ndjson");
    std::fs::write(&export, &export_body).unwrap();
    let operator_key = data.join("operator.key");

    let output = run(&["check", "--data", data.to_str().unwrap()]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "ledger {} verifies: {size} entries, {} signatures, root {root}\n",
            ledger_core::load::ORIGIN,
            info_signatures(&export_body),
        )
    );
    assert_progress(&String::from_utf8_lossy(&output.stderr), "check", size);

    let output = run(&[
        "verify",
        "--export",
        export.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--operator-key",
        operator_key.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "OK: the export of ledger \"{}\" verifies against the checkpoint.\nentries replayed: {size}\nsignatures checked: {}\ncheckpoint size: {size}\ncheckpoint root: {root}\n",
            ledger_core::load::ORIGIN,
            info_signatures(&export_body),
        )
    );
    assert_progress(&String::from_utf8_lossy(&output.stderr), "verify", size);

    let restored = dir.path().join("restored");
    let output = run(&[
        "restore",
        "--data",
        restored.to_str().unwrap(),
        "--export",
        export.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--operator-key-file",
        operator_key.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "restored ledger {} into {}: {size} entries, root {root}\nfloor: the checkpoint of {size} entries from {}\n",
            ledger_core::load::ORIGIN,
            restored.display(),
            checkpoint.display(),
        )
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    // A durable write per chunk of 1,024 leaves: one line, the last.
    assert_eq!(
        progress_counts(&stderr, "restore"),
        [(size, size)],
        "{stderr}"
    );
}

/// Signatures in an export: every line's `signatures`.
fn info_signatures(export: &[u8]) -> usize {
    export
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let envelope: Value = serde_json::from_slice(line).unwrap();
            envelope["entry"]["signatures"].as_array().unwrap().len()
        })
        .sum()
}
