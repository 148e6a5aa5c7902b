//! The registry's pages in a real browser: a service on a temporary folder holding the reference
//! case (and a participant with a hostile name), and `tests/browser/registry.test.js` driving
//! Debian's `chromium` through `playwright-core`. The script checks the figures of every page
//! kind, the certificate's in-browser check (green with the witness's cosignature verified, and
//! red when the proof, the checkpoint or the cosignature it receives is altered), the hostile
//! name shown as text, the A4 print, and writes a screenshot of each page kind to
//! `target/screenshots/`.
//!
//! The service submits its checkpoints to a witness on the same runtime, as `serve --witness`
//! does.
//!
//! Needs `chromium`, `node` and `npm ci` in `tests/browser/`. Without them the test says that it
//! skipped; with `CARBON_LEDGER_REQUIRE_BROWSER=1` (set by `.ci/run`) it fails instead.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ed25519_dalek::SigningKey;
use ledger_api::client::Client;
use ledger_api::demo::{self, ReferenceCase};
use ledger_core::ids::ParticipantId;
use serde_json::{json, Value};

/// A display name that would run script if a page inserted it as HTML.
const HOSTILE_NAME: &str =
    "<script>window.__pwned=true</script><img src=x onerror=\"window.__pwned=true\"> & Co.";
const HOSTILE_ID: &str = "hostile-1";
/// The longest the browser script may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    target.join("screenshots")
}

/// What the browser test needs, or why it cannot run.
fn browser_setup() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("CARBON_LEDGER_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "no browser at {} (apt-get install chromium, or set CARBON_LEDGER_CHROMIUM)",
            chromium.display()
        ));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("no node on PATH".to_owned());
    }
    let project = repo().join("tests/browser");
    if !project.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "playwright-core is not installed: run npm ci in {}",
            project.display()
        ));
    }
    Ok((chromium, project))
}

/// Runs the script and returns its JSON report.
fn run_script(project: &Path, chromium: &Path, url: &str) -> Value {
    let shots = screenshots_dir();
    let mut child = Command::new("node")
        .arg("registry.test.js")
        .args(["--url", url])
        .arg("--screenshots")
        .arg(&shots)
        .arg("--chromium")
        .arg(chromium)
        .args(["--hostile-participant", HOSTILE_ID])
        .current_dir(project)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("waiting for node").is_some() {
            break;
        }
        if start.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser test took longer than {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("the script's report");
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("the script's report ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_reads_right_and_proves_itself_in_a_real_browser() {
    let required = std::env::var("CARBON_LEDGER_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let (chromium, project) = match browser_setup() {
        Ok(found) => found,
        Err(why) if required => {
            panic!("the browser test is required (CARBON_LEDGER_REQUIRE_BROWSER=1) but cannot run: {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED the browser test: {why}. .ci/run installs what it needs and requires it."
            );
            return;
        }
    };

    let dir = tempfile::tempdir().unwrap();
    let (running, witness) = service_with_witness(dir.path(), ORIGIN).await;
    let operator_key = key_of(&running);
    let client = Client::new(&running.url()).unwrap();
    let case = ReferenceCase::new(ORIGIN, OPERATOR, operator_key.clone());
    demo::replay(&client, &case).await.unwrap();

    // A participant whose display name is markup.
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let body = case.body(
        "reg-hostile-1",
        &case.at(30),
        json!({"type": "register_participant", "participant": HOSTILE_ID, "name": HOSTILE_NAME,
               "roles": ["enterprise"],
               "public_key": ledger_core::ids::PublicKey::from(key.verifying_key()).to_string()}),
    );
    let operator: ParticipantId = OPERATOR.parse().unwrap();
    let hostile: ParticipantId = HOSTILE_ID.parse().unwrap();
    let submission =
        ledger_core::sign::sign_body(body, &[(&operator, &operator_key), (&hostile, &key)])
            .unwrap();
    let answer = client
        .post("/v1/entries", serde_json::to_vec(&submission).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status.as_u16(), 201, "{}", answer.text());

    // The page checks the witness's cosignature on the checkpoint it is given.
    wait_until_cosigned(&running, &witness).await;

    let url = running.url();
    let report = tokio::task::spawn_blocking(move || run_script(&project, &chromium, &url))
        .await
        .unwrap();
    running.stop().await.unwrap();
    witness.stop().await.unwrap();

    let failed: Vec<String> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ok"] != true)
        .map(|c| format!("{}: {}", c["name"], c["detail"]))
        .collect();
    eprintln!(
        "browser checks: {} passed, {} failed in {} s; screenshots in {}",
        report["passed"],
        report["failed"],
        report["seconds"],
        screenshots_dir().display()
    );
    assert!(
        report.get("error").is_none(),
        "the browser script failed: {}",
        report["error"]
    );
    assert!(
        failed.is_empty(),
        "browser checks failed:\n{}",
        failed.join("\n")
    );
    assert!(report["passed"].as_u64().unwrap_or(0) >= 40, "{report}");
    for page in [
        "overview",
        "certificate",
        "pledge",
        "batch",
        "trades",
        "hostile-participant",
    ] {
        assert!(
            screenshots_dir().join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
}
