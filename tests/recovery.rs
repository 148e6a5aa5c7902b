//! Recovery with the real binary: the operator key never signs two histories.
//!
//! Regressions of issue 16: a restore that failed on a damaged entry left a folder holding only the
//! genesis entry, which `check` passed and `serve` opened and signed a size-1 checkpoint of under
//! the real key; and an older backup, restored and its later entries resubmitted, signed a
//! checkpoint of the same size as one signed before, with another root. Here:
//!
//! - a restore that fails, or is killed part-way, leaves nothing that opens;
//! - an older backup restored with a newer checkpoint as its floor serves reads but accepts no
//!   entry and signs no checkpoint (503 `behind-floor`, `/healthz` says why, `check` fails) until
//!   the missing leaves are restored from a mirror;
//! - a lost data folder comes back from the last export and a mirror with the very same root;
//! - every checkpoint signed before and after the recovery is consistent with the final log.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use ledger_api::client::{Client, HttpResponse};
use ledger_api::demo;
use ledger_core::checkpoint::{self, Checkpoint};
use ledger_core::entry::Submission;
use ledger_core::merkle::{self, CompactTree};
use serde_json::Value;
use support::{bin, Market, Service};

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "carbon-ledger {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs a command that must fail; returns what it said (stdout and stderr).
fn fails(args: &[&str]) -> String {
    let output = run(args);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.status.success(),
        "carbon-ledger {args:?} should fail:\n{said}"
    );
    said
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// HTTP from a test without an async runtime of its own.
struct Http(tokio::runtime::Runtime);

impl Http {
    fn new() -> Self {
        Self(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        )
    }

    fn get(&self, url: &str, at: &str) -> HttpResponse {
        self.0
            .block_on(async { Client::new(url).unwrap().get(at).await.unwrap() })
    }

    fn post(&self, url: &str, at: &str, body: &Submission) -> HttpResponse {
        let bytes = serde_json::to_vec(body).unwrap();
        self.0
            .block_on(async { Client::new(url).unwrap().post(at, bytes).await.unwrap() })
    }

    fn json(&self, url: &str, at: &str) -> Value {
        self.get(url, at).json().unwrap()
    }
}

/// A ledger with the reference case's parties, one enterprise and the market up to the
/// acquisition; the market signs further entries.
fn market_on(http: &Http, service: &Service, data: &Path) -> Market {
    let info = http.json(&service.url, "/v1/ledger");
    let key = ledger_api::keys::read_key_file(&data.join("operator.key")).unwrap();
    let mut market = Market::new(
        info["origin"].as_str().unwrap(),
        info["operator"].as_str().unwrap(),
        key,
    );
    let client = Client::new(&service.url).unwrap();
    http.0.block_on(support::populate_over_http(
        &client,
        &mut market,
        &["ent-00".to_owned()],
    ));
    market
}

/// `count` transfers of 1 t from the platform to ent-00, accepted; their submissions.
fn transfers(
    http: &Http,
    url: &str,
    market: &Market,
    prefix: &str,
    count: usize,
) -> Vec<Submission> {
    (0..count)
        .map(|i| {
            let s = market.transfer(&format!("{prefix}-{i}"), demo::PLATFORM, "ent-00", "1");
            let r = http.post(url, "/v1/entries", &s);
            assert_eq!(r.status.as_u16(), 201, "{}", r.text());
            s
        })
        .collect()
}

/// The checkpoint now, and its export, written to `dir` as `checkpoint.txt` and `export.ndjson`.
fn backup(http: &Http, url: &str, dir: &Path) -> (PathBuf, PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let note = http.get(url, "/v1/checkpoint").text();
    let size = note.lines().nth(1).unwrap();
    let export = http.get(url, &format!("/v1/export?size={size}")).body;
    let (note_path, export_path) = (dir.join("checkpoint.txt"), dir.join("export.ndjson"));
    std::fs::write(&note_path, &note).unwrap();
    std::fs::write(&export_path, &export).unwrap();
    (note_path, export_path, note)
}

fn opened(note: &str, key: &ed25519_dalek::VerifyingKey) -> Checkpoint {
    let origin = note.lines().next().unwrap();
    checkpoint::open_checkpoint(note, origin, key).unwrap()
}

/// Every checkpoint in `notes` is of the log `export` holds: the root of its first `size` leaves
/// is the checkpoint's (so every two of them are consistent, and none forks from the log).
fn all_of_this_log(export: &[u8], notes: &[String], key: &ed25519_dalek::VerifyingKey) {
    let mut roots = vec![merkle::empty_root()];
    let mut tree = CompactTree::new();
    for line in export.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        tree.append(merkle::leaf_hash(line)).unwrap();
        roots.push(tree.root());
    }
    for note in notes {
        let c = opened(note, key);
        let size = usize::try_from(c.size).unwrap();
        assert!(
            size < roots.len(),
            "a checkpoint of {size} past the log's end"
        );
        assert_eq!(
            roots[size], c.root,
            "the checkpoint of size {size} forks from the log"
        );
    }
}

/// A `carbon-ledger` child process that serves (a mirror, a witness, a service on a chosen
/// port); killed when dropped.
struct MirrorProcess {
    child: Child,
    url: String,
}

impl MirrorProcess {
    fn start(ledger: &str, data: &Path, key: &str) -> Self {
        Self::spawn(
            &[
                "mirror",
                "--url",
                ledger,
                "--data",
                path(data),
                "--operator-key",
                key,
                "--listen",
                "127.0.0.1:0",
                "--interval-ms",
                "50",
            ],
            "listening on http://",
        )
    }

    /// Runs `args` and waits for the log line with `marker` (followed by the address).
    fn spawn(args: &[&str], marker: &str) -> Self {
        let mut child = Command::new(bin())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "carbon-ledger {args:?} did not say where it listens:\n{}",
                    log.lock().unwrap().join("\n")
                );
            };
            if let Some(at) = line.find(marker) {
                let address = line[at + marker.len()..].split_whitespace().next().unwrap();
                let url = format!("http://{}", address.trim_start_matches("http://"));
                return Self { child, url };
            }
        }
    }

    /// Waits until the mirror has verified a checkpoint of `size` entries.
    fn wait_for(&self, http: &Http, size: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = http.get(&self.url, "/v1/checkpoint");
            let held = answer
                .text()
                .lines()
                .nth(1)
                .and_then(|l| l.parse::<u64>().ok());
            if answer.status.is_success() && held == Some(size) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the mirror did not reach {size} entries ({held:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MirrorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` on `data` must refuse to start: its exit status and log.
fn serve_refuses(data: &Path) -> String {
    let mut child = Command::new(bin())
        .args(["serve", "--data", path(data), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut log = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
            assert!(!status.success(), "serve exited successfully:\n{log}");
            return log;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve opened {} and kept running", data.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The folders a restore into `dir` is building or left behind.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!(".{name}.restore-"))
        })
        .collect()
}

/// Regression (issue 16): one byte of trade 31 changed in an export; `restore` refused it, but
/// the folder it left held the genesis entry alone, which `check` passed and `serve` opened and
/// signed a checkpoint of under the real key. Now neither a failed restore nor one killed
/// part-way leaves anything that opens.
#[test]
fn a_restore_that_fails_or_is_killed_part_way_leaves_nothing_that_opens() {
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data);
    let market = market_on(&http, &service, &data);
    transfers(&http, &service.url, &market, "T", 20);
    let (note, export, _) = backup(&http, &service.url, &dir.path().join("backup"));
    assert!(service.terminate().success());
    let key_file = data.join("operator.key");

    // One byte of entry 31, a trade, changed.
    let text = std::fs::read_to_string(&export).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(lines[31].contains("\"type\":\"trade\""), "{}", lines[31]);
    lines[31] = lines[31].replacen("\"quantity\":\"1\"", "\"quantity\":\"2\"", 1);
    let tampered = dir.path().join("tampered.ndjson");
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();

    let restored = dir.path().join("restored");
    let said = fails(&[
        "restore",
        "--data",
        path(&restored),
        "--export",
        path(&tampered),
        "--checkpoint",
        path(&note),
        "--operator-key-file",
        path(&key_file),
    ]);
    assert!(said.contains("does NOT restore"), "{said}");
    assert!(said.contains("entry 31"), "{said}");
    assert!(
        !restored.exists(),
        "a failed restore left {}",
        restored.display()
    );
    assert!(
        leftovers(&restored).is_empty(),
        "{:?}",
        leftovers(&restored)
    );
    let checked = fails(&["check", "--data", path(&restored)]);
    assert!(checked.contains("not a ledger's data folder"), "{checked}");

    // Killed part-way: the export comes through a pipe that stops after 25 lines.
    let fifo = dir.path().join("export.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut restore = Command::new(bin())
        .args([
            "restore",
            "--data",
            path(&restored),
            "--export",
            path(&fifo),
            "--checkpoint",
            path(&note),
            "--operator-key-file",
            path(&key_file),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    for line in text.lines().take(25) {
        writeln!(pipe, "{line}").unwrap();
    }
    pipe.flush().unwrap();
    // The restore has its floor in place before it reads a leaf.
    let deadline = Instant::now() + Duration::from_secs(30);
    let building = loop {
        if let Some(building) = leftovers(&restored)
            .into_iter()
            .find(|b| b.join("store").join("last-checkpoint").exists())
        {
            break building;
        }
        assert!(
            Instant::now() < deadline,
            "the restore did not start building"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    restore.kill().unwrap();
    restore.wait().unwrap();
    drop(pipe);

    assert!(
        !restored.exists(),
        "a killed restore left {}",
        restored.display()
    );
    let checked = fails(&["check", "--data", path(&building)]);
    assert!(checked.contains("restore that did not finish"), "{checked}");
    let log = serve_refuses(&building);
    assert!(log.contains("restore that did not finish"), "{log}");
    // Even without its marker the half-built folder does not open: it keeps a checkpoint and
    // holds no ledger.
    std::fs::remove_file(building.join(ledger_api::keys::RESTORE_MARKER)).unwrap();
    let log = serve_refuses(&building);
    assert!(log.contains("a restore was interrupted"), "{log}");

    // The backup itself still restores, into the same place.
    let said = ok(&[
        "restore",
        "--data",
        path(&restored),
        "--export",
        path(&export),
        "--checkpoint",
        path(&note),
        "--operator-key-file",
        path(&key_file),
    ]);
    assert!(said.contains("restored ledger"), "{said}");
    ok(&["check", "--data", path(&restored)]);
}

/// An older backup restored with a newer checkpoint as its floor: reads are served, but no entry
/// is accepted (not even the lost ones resubmitted) and no checkpoint signed, until the missing
/// leaves come back from a mirror; then the log is the one signed before, and goes on from there.
#[test]
fn an_older_backup_below_its_floor_refuses_to_write_or_sign_until_a_mirror_completes_it() {
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data);
    let key_file = dir.path().join("operator.key");
    std::fs::copy(data.join("operator.key"), &key_file).unwrap();
    let info = http.json(&service.url, "/v1/ledger");
    let vkey = info["checkpoint_verifier_key"].as_str().unwrap().to_owned();
    let public = ledger_api::cli::operator_key(&vkey).unwrap();
    let mirror_dir = dir.path().join("mirror");
    let mirror = MirrorProcess::start(&service.url, &mirror_dir, &vkey);
    let market = market_on(&http, &service, &data);
    let (old_note, old_export, cp_old) = backup(&http, &service.url, &dir.path().join("old"));
    let lost = transfers(&http, &service.url, &market, "L", 15);
    // The newest checkpoint signed: a bank or a witness holds it.
    let cp_newest = http.get(&service.url, "/v1/checkpoint").text();
    let newest = opened(&cp_newest, &public);
    let floor_file = dir.path().join("bank-state.txt");
    std::fs::write(&floor_file, &cp_newest).unwrap();
    mirror.wait_for(&http, newest.size);
    // The machine is lost.
    service.kill();
    std::fs::remove_dir_all(&data).unwrap();

    let restored = dir.path().join("restored");
    let said = fails(&[
        "restore",
        "--data",
        path(&restored),
        "--export",
        path(&old_export),
        "--checkpoint",
        path(&old_note),
        "--floor",
        path(&floor_file),
        "--operator-key-file",
        path(&key_file),
    ]);
    assert!(said.contains("BEHIND ITS FLOOR by 15 entries"), "{said}");
    let checked = fails(&["check", "--data", path(&restored)]);
    assert!(checked.contains("signed a checkpoint of"), "{checked}");

    let service = Service::start(&restored);
    let health = http.get(&service.url, "/healthz");
    assert_eq!(health.status.as_u16(), 503, "{}", health.text());
    let health: Value = health.json().unwrap();
    assert_eq!(health["kind"], "behind-floor", "{health}");
    let detail = health["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "holds {} entries, but its operator key signed a checkpoint of {}",
            newest.size - 15,
            newest.size
        )),
        "{detail}"
    );
    // Reads of what it holds are served.
    assert_eq!(http.get(&service.url, "/v1/entries/0").status.as_u16(), 200);
    // No checkpoint is signed, and nothing is accepted: a lost entry resubmitted would get a new
    // accepted_at, so a new leaf, so a second history.
    for answer in [
        http.get(&service.url, "/v1/checkpoint"),
        http.post(&service.url, "/v1/entries", &lost[0]),
        http.post(
            &service.url,
            "/v1/entries",
            &market.transfer("new-1", demo::PLATFORM, "ent-00", "1"),
        ),
    ] {
        assert_eq!(answer.status.as_u16(), 503, "{}", answer.text());
        let problem: Value = answer.json().unwrap();
        assert_eq!(problem["kind"], "behind-floor", "{problem}");
    }
    assert!(service.terminate().success());

    // The missing leaves, from the mirror's copy, verified against the floor.
    let said = ok(&[
        "restore",
        "--data",
        path(&restored),
        "--mirror",
        &mirror.url,
        "--operator-key-file",
        path(&key_file),
    ]);
    assert!(
        said.contains("15 entries were missing and are back"),
        "{said}"
    );
    ok(&["check", "--data", path(&restored)]);

    let service = Service::start(&restored);
    assert_eq!(http.get(&service.url, "/healthz").status.as_u16(), 200);
    let info = http.json(&service.url, "/v1/ledger");
    assert_eq!(info["size"], newest.size);
    assert_eq!(info["root"], hex::encode(newest.root));
    // The lost entries are there, with their first receipts.
    let again = http.post(&service.url, "/v1/entries", &lost[0]);
    assert_eq!(again.status.as_u16(), 200, "{}", again.text());
    transfers(&http, &service.url, &market, "after", 3);
    let cp_after = http.get(&service.url, "/v1/checkpoint").text();
    let size_after = opened(&cp_after, &public).size;
    let export = http
        .get(&service.url, &format!("/v1/export?size={size_after}"))
        .body;
    all_of_this_log(&export, &[cp_old, cp_newest, cp_after], &public);
    assert!(service.terminate().success());
}

/// The data folder lost: the last export (older) plus a mirror's folder give back the very log
/// the operator key signed — the same root at the same size — and the ledger goes on from it
/// without a fork.
#[test]
fn a_lost_data_folder_comes_back_from_the_last_export_and_a_mirror_with_the_same_root() {
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data);
    let key_file = dir.path().join("operator.key");
    std::fs::copy(data.join("operator.key"), &key_file).unwrap();
    let info = http.json(&service.url, "/v1/ledger");
    let vkey = info["checkpoint_verifier_key"].as_str().unwrap().to_owned();
    let public = ledger_api::cli::operator_key(&vkey).unwrap();
    let mirror_dir = dir.path().join("mirror");
    let mirror = MirrorProcess::start(&service.url, &mirror_dir, &vkey);
    let market = market_on(&http, &service, &data);
    let (note, export, cp_backup) = backup(&http, &service.url, &dir.path().join("backup"));
    let mut signed = vec![cp_backup];
    for round in 0..3 {
        transfers(&http, &service.url, &market, &format!("R{round}"), 4);
        signed.push(http.get(&service.url, "/v1/checkpoint").text());
    }
    let last = opened(signed.last().unwrap(), &public);
    mirror.wait_for(&http, last.size);
    service.kill();
    std::fs::remove_dir_all(&data).unwrap();
    // The mirror stops; its folder is the copy.
    drop(mirror);

    let restored = dir.path().join("restored");
    let said = ok(&[
        "restore",
        "--data",
        path(&restored),
        "--export",
        path(&export),
        "--checkpoint",
        path(&note),
        "--mirror",
        path(&mirror_dir),
        "--operator-key-file",
        path(&key_file),
    ]);
    assert!(
        said.contains(&format!(
            "{} entries, root {}",
            last.size,
            hex::encode(last.root)
        )),
        "{said}"
    );

    let service = Service::start(&restored);
    let info = http.json(&service.url, "/v1/ledger");
    assert_eq!(
        (
            info["size"].as_u64().unwrap(),
            info["root"].as_str().unwrap()
        ),
        (last.size, hex::encode(last.root).as_str())
    );
    // The checkpoint it serves is the last one signed before the loss; the next extends it.
    assert_eq!(
        opened(&http.get(&service.url, "/v1/checkpoint").text(), &public).root,
        last.root
    );
    transfers(&http, &service.url, &market, "after", 2);
    signed.push(http.get(&service.url, "/v1/checkpoint").text());
    let final_size = opened(signed.last().unwrap(), &public).size;
    let export = http
        .get(&service.url, &format!("/v1/export?size={final_size}"))
        .body;
    all_of_this_log(&export, &signed, &public);
    // And a mirror restarted on its folder follows the recovered ledger on.
    let mirror = MirrorProcess::start(&service.url, &mirror_dir, &vkey);
    mirror.wait_for(&http, final_size);
    assert!(service.terminate().success());
}

/// A free port on the loopback interface, for a service whose URL its witness must know first.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A witness's latest cosigned checkpoint is a floor, and its folder a copy of the log: the older
/// backup restored with the witness's URL is behind its floor; the witness's folder completes it
/// with the root the witness cosigned.
#[test]
fn a_witness_gives_the_floor_and_its_copy_completes_the_ledger() {
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The ledger's folder and key first, so that the witness can be told of it.
    let first = Service::start(&data);
    let info = http.json(&first.url, "/v1/ledger");
    let vkey = info["checkpoint_verifier_key"].as_str().unwrap().to_owned();
    let origin = info["origin"].as_str().unwrap().to_owned();
    let public = ledger_api::cli::operator_key(&vkey).unwrap();
    assert!(first.terminate().success());
    let key_file = dir.path().join("operator.key");
    std::fs::copy(data.join("operator.key"), &key_file).unwrap();

    let port = free_port();
    let ledger_url = format!("http://127.0.0.1:{port}");
    let witness_dir = dir.path().join("witness");
    let witness = MirrorProcess::spawn(
        &[
            "witness",
            "--data",
            path(&witness_dir),
            "--name",
            "witness.test/w1",
            "--listen",
            "127.0.0.1:0",
            "--log",
            &format!("{ledger_url}={vkey}"),
        ],
        "addr=",
    );
    let witness_info = http.json(&witness.url, "/");
    let witness_vkey = witness_info["verifier_key"].as_str().unwrap().to_owned();
    let service = MirrorProcess::spawn(
        &[
            "serve",
            "--data",
            path(&data),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--witness",
            &format!("{}={witness_vkey}", witness.url),
            "--cosign-interval-ms",
            "50",
        ],
        "listening on http://",
    );
    let key = ledger_api::keys::read_key_file(&data.join("operator.key")).unwrap();
    let mut market = Market::new(&origin, info["operator"].as_str().unwrap(), key);
    let client = Client::new(&service.url).unwrap();
    http.0.block_on(support::populate_over_http(
        &client,
        &mut market,
        &["ent-00".to_owned()],
    ));
    let (old_note, old_export, cp_old) = backup(&http, &service.url, &dir.path().join("old"));
    transfers(&http, &service.url, &market, "L", 6);
    let size = http.json(&service.url, "/v1/ledger")["size"]
        .as_u64()
        .unwrap();
    // Wait until the witness has cosigned the whole ledger.
    let latest = format!("/{}/checkpoint", ledger_core::witness::origin_hash(&origin));
    let deadline = Instant::now() + Duration::from_secs(30);
    let cosigned = loop {
        // A checkpoint of the current size is signed on request; the cosigner submits it.
        http.get(&service.url, "/v1/checkpoint");
        let answer = http.get(&witness.url, &latest);
        let note = answer.text();
        if answer.status.is_success() && opened(&note, &public).size == size {
            break note;
        }
        assert!(
            Instant::now() < deadline,
            "the witness did not cosign {size} entries"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(service);
    std::fs::remove_dir_all(&data).unwrap();

    let restored = dir.path().join("restored");
    let said = fails(&[
        "restore",
        "--data",
        path(&restored),
        "--export",
        path(&old_export),
        "--checkpoint",
        path(&old_note),
        "--witness",
        &witness.url,
        "--operator-key-file",
        path(&key_file),
    ]);
    assert!(said.contains("BEHIND ITS FLOOR by 6 entries"), "{said}");
    assert!(
        said.contains(&format!("from the witness {}", witness.url)),
        "{said}"
    );
    // The witness stops; its folder holds its verified copy of the ledger.
    drop(witness);
    let said = ok(&[
        "restore",
        "--data",
        path(&restored),
        "--mirror",
        path(&witness_dir),
        "--operator-key-file",
        path(&key_file),
    ]);
    assert!(
        said.contains("6 entries were missing and are back"),
        "{said}"
    );
    let cosigned_root = opened(&cosigned, &public).root;
    assert!(said.contains(&hex::encode(cosigned_root)), "{said}");

    let service = Service::start(&restored);
    transfers(&http, &service.url, &market, "after", 2);
    let cp_after = http.get(&service.url, "/v1/checkpoint").text();
    let size_after = opened(&cp_after, &public).size;
    let export = http
        .get(&service.url, &format!("/v1/export?size={size_after}"))
        .body;
    all_of_this_log(&export, &[cp_old, cosigned, cp_after], &public);
    assert!(service.terminate().success());
}

/// The split view the floor prevents, seen from a mirror: an older backup restored with nothing
/// but its own checkpoint (as the docs once said) and new entries on it make the key sign another
/// history. A mirror that verified the first refuses it for good, keeps it as evidence, says so on
/// `/healthz`, and keeps the copy it had.
#[test]
fn a_mirror_refuses_a_second_history_under_the_same_key_and_keeps_the_first() {
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data);
    let key_file = dir.path().join("operator.key");
    std::fs::copy(data.join("operator.key"), &key_file).unwrap();
    let info = http.json(&service.url, "/v1/ledger");
    let vkey = info["checkpoint_verifier_key"].as_str().unwrap().to_owned();
    let public = ledger_api::cli::operator_key(&vkey).unwrap();
    let market = market_on(&http, &service, &data);
    let (old_note, old_export, _) = backup(&http, &service.url, &dir.path().join("old"));
    transfers(&http, &service.url, &market, "L", 4);
    let first = http.get(&service.url, "/v1/checkpoint").text();
    let first = opened(&first, &public);
    let mirror_dir = dir.path().join("mirror");
    let mirror = MirrorProcess::start(&service.url, &mirror_dir, &vkey);
    mirror.wait_for(&http, first.size);
    drop(mirror);
    service.kill();

    // The old way: the old backup alone, and new entries on it.
    let forked = dir.path().join("forked");
    ok(&[
        "restore",
        "--data",
        path(&forked),
        "--export",
        path(&old_export),
        "--checkpoint",
        path(&old_note),
        "--operator-key-file",
        path(&key_file),
    ]);
    let service = Service::start(&forked);
    transfers(&http, &service.url, &market, "F", 2);
    let other = opened(&http.get(&service.url, "/v1/checkpoint").text(), &public);
    assert!(other.size < first.size);

    let mirror = MirrorProcess::start(&service.url, &mirror_dir, &vkey);
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let answer = http.get(&mirror.url, "/healthz");
        if answer.status.as_u16() == 503 {
            let health: Value = answer.json().unwrap();
            if health["status"] == "refused" {
                break health;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the mirror did not refuse the fork"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        health["detail"].as_str().unwrap().contains("two histories"),
        "{health}"
    );
    let evidence = std::fs::read_to_string(mirror_dir.join("refused-checkpoint")).unwrap();
    assert_eq!(opened(&evidence, &public), other);
    // The copy is the first history, as verified.
    let kept = opened(&http.get(&mirror.url, "/v1/checkpoint").text(), &public);
    assert_eq!((kept.size, kept.root), (first.size, first.root));
    assert!(service.terminate().success());
}
