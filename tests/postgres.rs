//! `carbon-ledger serve --store postgres://…` as child processes on a real, throwaway PostgreSQL
//! cluster (initdb + pg_ctl; see `ledger_postgres::testing`):
//!
//! - two instances on one database, clients on both, SIGKILL of either at random moments: no
//!   acknowledged entry lost, seq gap-free, exports from both byte-identical and verifying, and
//!   the checkpoints a client sees never go back, whichever instance answers;
//! - the database restarted under load: clients get 503s, retry, and nothing is lost;
//! - a ledger moved sled → PostgreSQL → sled with identical exports;
//! - reads on one instance right after a write on the other never contradict the receipt;
//! - an instance nobody writes to follows the database by itself.
//!
//! Without PostgreSQL server binaries each test says it was skipped (and fails instead with
//! `CARBON_LEDGER_REQUIRE_POSTGRES=1`, as `.ci/run` sets). `CRASH_SEED` and `PG_CRASH_ROUNDS`
//! repeat or lengthen the crash run: its transfers cycle the sink among the enterprises, so every
//! round is loaded however many there are, and each round reads only the entries that are new.

mod support;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_api::client::{Client, HttpResponse};
use ledger_api::demo;
use ledger_core::checkpoint;
use ledger_core::ledger::Receipt;
use ledger_core::merkle;
use ledger_core::verify;
use ledger_postgres::testing::TestCluster;
use serde_json::{json, Value};
use support::{bin, copy_data_dir, Log, Market, Rng, Service};

/// Enterprises receiving transfers.
const ENTERPRISES: usize = 12;

async fn json_of(client: &Client, path: &str) -> Value {
    let answer = client
        .get(path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    answer
        .ok_json()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn ledger_size(answer: &HttpResponse) -> u64 {
    answer
        .headers
        .get("x-ledger-size")
        .unwrap_or_else(|| panic!("no X-Ledger-Size on {}", answer.status))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Two data folders sharing one database: A created by a first start, B a copy of its key and
/// origin. Returns the market of the ledger, populated through A, and the setup's size.
async fn two_instances(
    root: &Path,
    url: &str,
    enterprises: &[String],
) -> (Service, Service, Market, u64) {
    let (data_a, data_b) = (root.join("a"), root.join("b"));
    let a = tokio::task::block_in_place(|| Service::start_on(&data_a, url));
    copy_data_dir(&data_a, &data_b);
    let b = tokio::task::block_in_place(|| Service::start_on(&data_b, url));
    let client = Client::new(&a.url).unwrap();
    let info = json_of(&client, "/v1/ledger").await;
    let origin = info["origin"].as_str().unwrap().to_owned();
    let operator = info["operator"].as_str().unwrap().to_owned();
    let operator_key = ledger_api::keys::read_key_file(&data_a.join("operator.key")).unwrap();
    let mut market = Market::new(&origin, &operator, operator_key);
    support::populate_over_http(&client, &mut market, enterprises).await;
    let size = json_of(&client, "/v1/ledger").await["size"]
        .as_u64()
        .unwrap();
    (a, b, market, size)
}

/// Pre-signed 1 t transfers from the platform and the wetland to the enterprises.
fn transfers(
    market: &Market,
    enterprises: &[String],
    prefix: &str,
    n: usize,
) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let seller = [demo::PLATFORM, demo::WETLAND][i % 2];
            let id = format!("{prefix}-{i:05}");
            let buyer = &enterprises[i % enterprises.len()];
            let bytes = serde_json::to_vec(&market.transfer(&id, seller, buyer, "1")).unwrap();
            (id, bytes)
        })
        .collect()
}

/// The sink each enterprise is given before the crash rounds: 800 t from the platform and 400 t
/// from the wetland (they hold 10,000 t and 5,300 t after the case's acquisition).
const FUNDING: [(&str, &str); 2] = [(demo::PLATFORM, "800"), (demo::WETLAND, "400")];

/// Gives every enterprise its [`FUNDING`], one transfer at a time through `client`.
async fn fund(client: &Client, market: &Market, enterprises: &[String]) {
    for (n, buyer) in enterprises.iter().enumerate() {
        for (seller, quantity) in FUNDING {
            let id = format!("FUND-{n:02}-{seller}");
            let body = serde_json::to_vec(&market.transfer(&id, seller, buyer, quantity)).unwrap();
            let answer = client.post("/v1/entries", body).await.unwrap();
            assert_eq!(answer.status.as_u16(), 201, "{id}: {}", answer.text());
        }
    }
}

/// The crash rounds' transfers, without end: transfer `i` moves 1 t from enterprise `i mod n` to
/// the next one, so every run of `n` consecutive transfers leaves each enterprise's holding as it
/// was. Submitted roughly in order (a few retried a round later), they never run a seller dry,
/// however many rounds the run has; each is signed when a submitter takes it.
struct Cycle {
    market: Market,
    enterprises: Vec<String>,
}

impl Cycle {
    fn id(i: usize) -> String {
        format!("PG-{i:07}")
    }

    fn submission(&self, i: usize) -> Vec<u8> {
        let n = self.enterprises.len();
        let (seller, buyer) = (&self.enterprises[i % n], &self.enterprises[(i + 1) % n]);
        serde_json::to_vec(&self.market.transfer(&Self::id(i), seller, buyer, "1")).unwrap()
    }
}

/// The transfers still to submit: those in doubt from the last round first, then fresh ones.
#[derive(Default)]
struct Queue {
    retry: VecDeque<usize>,
    next: usize,
}

impl Queue {
    fn pop(&mut self) -> usize {
        self.retry.pop_front().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// Every entry of the ledger as `client`'s instance serves it once it holds `size` entries.
async fn read_log(client: &Client, size: u64) -> Log {
    let mut log = Log::new();
    log.read_to(client, size, &mut |_, _| {}).await;
    log
}

/// The export of `client`'s instance at `size` entries.
async fn export(client: &Client, size: u64) -> Vec<u8> {
    let answer = client
        .get(&format!("/v1/export?size={size}&min_size={size}"))
        .await
        .unwrap();
    assert!(answer.status.is_success(), "{}", answer.text());
    answer.body.to_vec()
}

/// The checkpoints a client sees, across instances: they never go back, and two of one size
/// have one root.
#[derive(Default)]
struct Checkpoints {
    largest: u64,
    roots: BTreeMap<u64, merkle::Hash>,
}

impl Checkpoints {
    fn saw(
        &mut self,
        note: &str,
        origin: &str,
        key: &ed25519_dalek::VerifyingKey,
    ) -> checkpoint::Checkpoint {
        let cp = support::record_checkpoint(&mut self.roots, note, origin, key);
        assert!(
            cp.size >= self.largest,
            "a checkpoint of {} entries after one of {}",
            cp.size,
            self.largest
        );
        self.largest = cp.size;
        cp
    }
}

/// What the submitters of a round saw.
#[derive(Default)]
struct Outcomes {
    receipts: Vec<(usize, Receipt)>,
    in_doubt: Vec<usize>,
    unexpected: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_sigkilled_at_random_moments_lose_no_acknowledged_entry() {
    let Some(cluster) = TestCluster::shared("two_instances_sigkilled_at_random_moments") else {
        return;
    };
    let url = cluster.database();
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_221_126);
    let rounds: usize = std::env::var("PG_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    eprintln!("two-instance crash test: seed {seed}, {rounds} rounds");
    let mut rng = Rng::new(seed);
    let root = tempfile::tempdir().unwrap();
    let enterprises: Vec<String> = (0..ENTERPRISES).map(|i| format!("ent-{i:02}")).collect();
    let (a, b, market, _) = two_instances(root.path(), &url, &enterprises).await;
    let client = Client::new(&a.url).unwrap();
    fund(&client, &market, &enterprises).await;
    let setup_size = json_of(&client, "/v1/ledger").await["size"]
        .as_u64()
        .unwrap();
    let data = [root.path().join("a"), root.path().join("b")];
    let origin = market.case.origin.clone();
    let key = market.key(&market.case.operator).verifying_key();
    let cycle = Arc::new(Cycle {
        market,
        enterprises,
    });
    let mut services = [Some(a), Some(b)];
    let mut acked: BTreeMap<String, Receipt> = BTreeMap::new();
    let mut queue = Queue::default();
    let mut in_doubt_ever: BTreeSet<usize> = BTreeSet::new();
    let mut checkpoints = Checkpoints::default();
    let mut log = Log::new();
    let mut loaded_rounds = 0;

    for round in 0..rounds {
        let urls: Vec<String> = services
            .iter()
            .map(|s| s.as_ref().unwrap().url.clone())
            .collect();
        let shared = Arc::new(Mutex::new(std::mem::take(&mut queue)));
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for c in 0..6 {
            let client = Client::new(&urls[c % 2]).unwrap();
            let (shared, outcomes, cycle, stop) = (
                shared.clone(),
                outcomes.clone(),
                cycle.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let i = shared.lock().unwrap().pop();
                    match client.post("/v1/entries", cycle.submission(i)).await {
                        Ok(answer) if answer.status.is_success() => {
                            let receipt: Receipt = answer.json().unwrap();
                            outcomes.lock().unwrap().receipts.push((i, receipt));
                        }
                        Ok(answer) => outcomes.lock().unwrap().unexpected.push(format!(
                            "{}: {} {}",
                            Cycle::id(i),
                            answer.status,
                            answer.text()
                        )),
                        Err(_) => {
                            outcomes.lock().unwrap().in_doubt.push(i);
                            return;
                        }
                    }
                }
            }));
        }
        // A client reading checkpoints from both instances in turn.
        let notes = Arc::new(Mutex::new(Vec::<String>::new()));
        let fetcher = {
            let clients: Vec<Client> = urls.iter().map(|u| Client::new(u).unwrap()).collect();
            let (notes, stop) = (notes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut turn = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(answer) = clients[turn % 2].get("/v1/checkpoint").await {
                        if answer.status.is_success() {
                            notes.lock().unwrap().push(answer.text());
                        }
                    }
                    turn += 1;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        };
        let delay = rng.range(150, 900);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let victim = usize::try_from(rng.range(0, 2)).unwrap();
        tokio::task::block_in_place(|| services[victim].take().unwrap().kill());
        // The other instance goes on without a pause, then the round ends.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        fetcher.await.unwrap();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a submitter hung")
                .unwrap();
        }
        let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
        assert!(
            outcomes.unexpected.is_empty(),
            "round {round}: unexpected answers: {:?}",
            outcomes.unexpected
        );
        let fresh = outcomes.receipts.len();
        if fresh > 0 {
            loaded_rounds += 1;
        }
        let mut answered = Vec::with_capacity(fresh);
        for (i, receipt) in outcomes.receipts {
            assert_eq!(receipt.id, Cycle::id(i));
            if let Some(first) = acked.insert(receipt.id.clone(), receipt.clone()) {
                assert!(
                    receipt.duplicate,
                    "{} acknowledged twice as new",
                    receipt.id
                );
                assert_eq!(first.seq, receipt.seq, "{}: two receipts", receipt.id);
            }
            answered.push(receipt);
        }
        for note in notes.lock().unwrap().iter() {
            checkpoints.saw(note, &origin, &key);
        }
        in_doubt_ever.extend(outcomes.in_doubt.iter().copied());
        queue = std::mem::take(&mut *shared.lock().unwrap());
        let taken: Vec<usize> = outcomes.in_doubt;
        for i in taken.into_iter().rev() {
            queue.retry.push_front(i);
        }

        // Restart the killed instance. It must serve every entry the other holds, after the
        // log read so far and linked to it; every receipt of the round must be in it; and both
        // instances must sign the root of the log as read.
        services[victim] = Some(tokio::task::block_in_place(|| {
            Service::start_on(&data[victim], &url)
        }));
        let clients: Vec<Client> = services
            .iter()
            .map(|s| Client::new(&s.as_ref().unwrap().url).unwrap())
            .collect();
        let size = json_of(&clients[1 - victim], "/v1/ledger").await["size"]
            .as_u64()
            .unwrap();
        log.read_to(&clients[victim], size, &mut |_, _| {}).await;
        for receipt in &answered {
            log.holds(receipt);
        }
        for client in &clients {
            let note = client
                .get(&format!("/v1/checkpoint?min_size={size}"))
                .await
                .unwrap()
                .text();
            let cp = checkpoints.saw(&note, &origin, &key);
            assert_eq!(cp.size, size, "round {round}: a checkpoint after the round");
            assert_eq!(
                cp.root,
                log.tree.root(),
                "round {round}: the root of the log"
            );
        }
        eprintln!(
            "two-instance crash test: round {round}: killed {} after {delay} ms; {fresh} answered, {} in doubt; {size} entries",
            ["A", "B"][victim],
            in_doubt_ever.len()
        );
    }

    // The end: what was in doubt is resubmitted (present once, or appended now), then both
    // exports are identical and verify against a checkpoint, and `check` passes.
    let clients: Vec<Client> = services
        .iter()
        .map(|s| Client::new(&s.as_ref().unwrap().url).unwrap())
        .collect();
    for (n, &i) in in_doubt_ever.iter().enumerate() {
        let receipt: Receipt = clients[n % 2]
            .post("/v1/entries", cycle.submission(i))
            .await
            .unwrap()
            .ok_json()
            .unwrap();
        if let Some(first) = acked.insert(receipt.id.clone(), receipt.clone()) {
            assert_eq!(first.seq, receipt.seq);
        }
    }
    let size = json_of(&clients[0], "/v1/ledger").await["size"]
        .as_u64()
        .unwrap();
    let size = size.max(
        json_of(&clients[1], "/v1/ledger").await["size"]
            .as_u64()
            .unwrap(),
    );
    let log = read_log(&clients[0], size).await;
    for receipt in acked.values() {
        log.holds(receipt);
    }
    assert_eq!(
        log.ids.len() as u64,
        setup_size + log.ids.keys().filter(|id| id.starts_with("PG-")).count() as u64
    );
    let note = clients[1]
        .get(&format!("/v1/checkpoint?min_size={size}"))
        .await
        .unwrap()
        .text();
    checkpoints.saw(&note, &origin, &key);
    let (export_a, export_b) = (
        export(&clients[0], size).await,
        export(&clients[1], size).await,
    );
    assert_eq!(export_a, export_b, "the final exports differ");
    let report = verify::verify_export(export_a.as_slice(), &note, &key).unwrap();
    assert_eq!(report.entries, size);
    for service in services.into_iter().flatten() {
        let status = tokio::task::block_in_place(|| service.terminate());
        assert!(status.success(), "serve exited with {status}");
    }
    let out = Command::new(bin())
        .args([
            "check",
            "--data",
            data[0].to_str().unwrap(),
            "--store",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "two-instance crash test: {rounds} rounds ({loaded_rounds} with answers), {} acknowledged, 0 lost, {} in doubt and resubmitted, {} checkpoints seen, {size} entries",
        acked.len(),
        in_doubt_ever.len(),
        checkpoints.roots.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_restarted_under_load_costs_503s_and_loses_nothing() {
    // A cluster of its own: this test stops and starts it.
    let Some(cluster) = TestCluster::start("the_database_restarted_under_load") else {
        return;
    };
    let url = cluster.database();
    let root = tempfile::tempdir().unwrap();
    let enterprises: Vec<String> = (0..ENTERPRISES).map(|i| format!("ent-{i:02}")).collect();
    let (a, b, market, _) = two_instances(root.path(), &url, &enterprises).await;
    let pool = Arc::new(tokio::task::block_in_place(|| {
        transfers(&market, &enterprises, "DB", 600)
    }));
    let next = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for c in 0..6 {
        let client = Client::new(if c % 2 == 0 { &a.url } else { &b.url }).unwrap();
        let (pool, next, unavailable) = (pool.clone(), next.clone(), unavailable.clone());
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, bytes)) = pool.get(i) else {
                    return receipts;
                };
                // Each entry until it is acknowledged: a 503 says retry, and a resubmission
                // of an entry appended after all gets its first receipt.
                loop {
                    assert!(Instant::now() < deadline, "{id}: never acknowledged");
                    let answer = client
                        .post("/v1/entries", bytes.clone())
                        .await
                        .unwrap_or_else(|e| panic!("{id}: the service went away: {e}"));
                    if answer.status.is_success() {
                        receipts.push(answer.json::<Receipt>().unwrap());
                        break;
                    }
                    assert_eq!(answer.status.as_u16(), 503, "{id}: {}", answer.text());
                    assert!(answer.headers.contains_key("retry-after"));
                    unavailable.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    // Under load: stop the database (open connections are closed), then start it again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    tokio::task::block_in_place(|| cluster.stop());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| cluster.restart());
    let mut receipts = Vec::new();
    for task in tasks {
        match task.await {
            Ok(mine) => receipts.extend(mine),
            Err(error) => panic!(
                "a client failed: {error}\n--- A's log:\n{}\n--- B's log:\n{}",
                a.log_text(),
                b.log_text()
            ),
        }
    }
    assert_eq!(receipts.len(), pool.len());
    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "no client saw the database go away"
    );
    let client = Client::new(&a.url).unwrap();
    let size = json_of(&client, "/v1/ledger?min_size=1").await["size"]
        .as_u64()
        .unwrap();
    let size = size.max(receipts.iter().map(|r| r.seq + 1).max().unwrap());
    let log = read_log(&client, size).await;
    for receipt in &receipts {
        log.holds(receipt);
    }
    assert_eq!(
        export(&client, size).await,
        export(&Client::new(&b.url).unwrap(), size).await
    );
    eprintln!(
        "database restart: {} entries acknowledged, {} answers were 503 and retried, 0 lost",
        receipts.len(),
        unavailable.load(Ordering::Relaxed)
    );
}

fn run_ok(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "carbon-ledger {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The export and the checkpoint of a running service, written to `dir`.
async fn backup(
    service: &Service,
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let client = Client::new(&service.url).unwrap();
    let note = client.get("/v1/checkpoint").await.unwrap().text();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    let bytes = export(&client, size).await;
    std::fs::create_dir_all(dir).unwrap();
    let (export_path, note_path) = (dir.join("export.ndjson"), dir.join("checkpoint.txt"));
    std::fs::write(&export_path, &bytes).unwrap();
    std::fs::write(&note_path, note).unwrap();
    (export_path, note_path, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_moves_from_sled_to_postgres_and_back_with_identical_exports() {
    let Some(cluster) = TestCluster::shared("a_ledger_moves_from_sled_to_postgres_and_back") else {
        return;
    };
    let url = cluster.database();
    let root = tempfile::tempdir().unwrap();
    let (sled_dir, pg_dir, back_dir) = (
        root.path().join("sled"),
        root.path().join("pg"),
        root.path().join("back"),
    );
    // A sled ledger with the market on it.
    let service = tokio::task::block_in_place(|| Service::start(&sled_dir));
    let client = Client::new(&service.url).unwrap();
    let info = json_of(&client, "/v1/ledger").await;
    let key = ledger_api::keys::read_key_file(&sled_dir.join("operator.key")).unwrap();
    let mut market = Market::new(
        info["origin"].as_str().unwrap(),
        info["operator"].as_str().unwrap(),
        key,
    );
    let enterprises = vec!["ent-00".to_owned()];
    support::populate_over_http(&client, &mut market, &enterprises).await;
    let (export_1, note_1, bytes_1) = backup(&service, &root.path().join("backup-1")).await;
    tokio::task::block_in_place(|| assert!(service.terminate().success()));

    // Into PostgreSQL: the same export back, and it takes new entries.
    let key_file = sled_dir.join("operator.key");
    run_ok(&[
        "restore",
        "--data",
        pg_dir.to_str().unwrap(),
        "--store",
        &url,
        "--export",
        export_1.to_str().unwrap(),
        "--checkpoint",
        note_1.to_str().unwrap(),
        "--operator-key-file",
        key_file.to_str().unwrap(),
    ]);
    let service = tokio::task::block_in_place(|| Service::start_on(&pg_dir, &url));
    let client = Client::new(&service.url).unwrap();
    let (_, _, bytes_2) = backup(&service, &root.path().join("backup-2")).await;
    assert_eq!(
        bytes_2, bytes_1,
        "the export from PostgreSQL differs from sled's"
    );
    let more = market.transfer("moved-1", demo::PLATFORM, "ent-00", "1");
    let r = client
        .post("/v1/entries", serde_json::to_vec(&more).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let (export_3, note_3, bytes_3) = backup(&service, &root.path().join("backup-3")).await;
    assert!(bytes_3.starts_with(&bytes_1));
    tokio::task::block_in_place(|| assert!(service.terminate().success()));
    run_ok(&["check", "--data", pg_dir.to_str().unwrap(), "--store", &url]);

    // And back to sled.
    run_ok(&[
        "restore",
        "--data",
        back_dir.to_str().unwrap(),
        "--export",
        export_3.to_str().unwrap(),
        "--checkpoint",
        note_3.to_str().unwrap(),
        "--operator-key-file",
        key_file.to_str().unwrap(),
    ]);
    let service = tokio::task::block_in_place(|| Service::start(&back_dir));
    let (_, _, bytes_4) = backup(&service, &root.path().join("backup-4")).await;
    assert_eq!(
        bytes_4, bytes_3,
        "the export back on sled differs from PostgreSQL's"
    );
    tokio::task::block_in_place(|| assert!(service.terminate().success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_on_one_instance_never_contradict_a_receipt_from_the_other() {
    let Some(cluster) = TestCluster::shared("reads_on_one_instance_never_contradict") else {
        return;
    };
    let url = cluster.database();
    let root = tempfile::tempdir().unwrap();
    let enterprises: Vec<String> = (0..8).map(|i| format!("ent-{i:02}")).collect();
    let (a, b, market, _) = two_instances(root.path(), &url, &enterprises).await;
    let market = Arc::new(market);
    let urls = [a.url.clone(), b.url.clone()];
    // Background load on both instances: the wetland's sink to enterprises 4–7, so that the
    // instance read from is mostly behind the one written to.
    let background = Arc::new(tokio::task::block_in_place(|| {
        (0..2000)
            .map(|i| {
                let id = format!("BG-{i:05}");
                let buyer = format!("ent-{:02}", 4 + i % 4);
                serde_json::to_vec(&market.transfer(&id, demo::WETLAND, &buyer, "1")).unwrap()
            })
            .collect::<Vec<_>>()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for c in 0..4 {
        let client = Client::new(&urls[c % 2]).unwrap();
        let (background, stop, next) = (background.clone(), stop.clone(), next.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(bytes) = background.get(i) else {
                    return;
                };
                let answer = client.post("/v1/entries", bytes.clone()).await.unwrap();
                assert_eq!(answer.status.as_u16(), 201, "{}", answer.text());
            }
        }));
    }
    let origin = market.case.origin.clone();
    let key = market.key(&market.case.operator).verifying_key();
    // Four writers, two on each instance, each moving sink to its own enterprise (so that it
    // knows that enterprise's balance exactly) and reading everything back on the other.
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (market, origin) = (market.clone(), origin.clone());
        let (write, read) = (
            Client::new(&urls[w % 2]).unwrap(),
            Client::new(&urls[1 - w % 2]).unwrap(),
        );
        writers.push(tokio::spawn(async move {
            let buyer = format!("ent-{w:02}");
            let mut checkpoints = Checkpoints::default();
            let mut reads = 0;
            // A pledge written on one instance is found at once on the other.
            let pledge_id = format!("PL-RW-{w}");
            let pledge = market.signed(
                &pledge_id,
                &market.at(21),
                json!({"type": "pledge", "pledge": pledge_id, "pledgor": demo::PLATFORM,
                       "bank": demo::BANK, "batch": demo::BATCH, "quantity": "10",
                       "price_ref": demo::PRICE, "haircut": "0.30", "limit": "411.81",
                       "currency": "CNY"}),
                &[demo::PLATFORM, demo::BANK],
            );
            let answer = write
                .post("/v1/entries", serde_json::to_vec(&pledge).unwrap())
                .await
                .unwrap();
            assert_eq!(answer.status.as_u16(), 201, "{}", answer.text());
            let shown = read.get(&format!("/v1/pledges/{pledge_id}")).await.unwrap();
            assert_eq!(
                shown.status.as_u16(),
                200,
                "pledge {pledge_id}: {}",
                shown.text()
            );
            assert_eq!(shown.json::<Value>().unwrap()["limit"], "411.81");
            for i in 0..30 {
                let id = format!("RW-{w}-{i:03}");
                let transfer = market.transfer(&id, demo::PLATFORM, &buyer, "1");
                let answer = write
                    .post("/v1/entries", serde_json::to_vec(&transfer).unwrap())
                    .await
                    .unwrap();
                assert_eq!(answer.status.as_u16(), 201, "{id}: {}", answer.text());
                assert_eq!(
                    ledger_size(&answer),
                    answer.json::<Receipt>().unwrap().seq + 1
                );
                let receipt: Receipt = answer.json().unwrap();
                let n = receipt.seq;
                // The entry by seq, its trade and its inclusion proof by id: never 404.
                let entry = read.get(&format!("/v1/entries/{n}")).await.unwrap();
                assert_eq!(entry.status.as_u16(), 200, "entry {n}: {}", entry.text());
                assert_eq!(
                    entry.json::<Value>().unwrap()["leaf_hash"],
                    receipt.leaf_hash.as_str()
                );
                let trade = read.get(&format!("/v1/trades/{id}")).await.unwrap();
                assert_eq!(trade.status.as_u16(), 200, "trade {id}: {}", trade.text());
                let proof = read
                    .get(&format!("/v1/proofs/inclusion?id={id}"))
                    .await
                    .unwrap();
                assert_eq!(
                    proof.status.as_u16(),
                    200,
                    "proof of {id}: {}",
                    proof.text()
                );
                // The balance with min_seq: exactly what this writer moved.
                let balances = read
                    .get(&format!("/v1/participants/{buyer}/balances?min_seq={n}"))
                    .await
                    .unwrap();
                assert_eq!(balances.status.as_u16(), 200, "{}", balances.text());
                assert!(ledger_size(&balances) > n);
                let held = balances.json::<Value>().unwrap()["total_available"].clone();
                assert_eq!(
                    held.as_str()
                        .unwrap()
                        .parse::<rust_decimal::Decimal>()
                        .unwrap(),
                    rust_decimal::Decimal::from(i + 1),
                    "{buyer}'s balance after {id} (seq {n})"
                );
                // The checkpoint, asked for at least this size: never older than one seen.
                let note = read
                    .get(&format!("/v1/checkpoint?min_size={}", n + 1))
                    .await
                    .unwrap();
                assert_eq!(note.status.as_u16(), 200, "{}", note.text());
                checkpoints.saw(&note.text(), &origin, &key);
                assert!(checkpoints.largest > n);
                // And the checkpoint of the instance written to, with no minimum.
                let note = write.get("/v1/checkpoint").await.unwrap().text();
                checkpoints.saw(&note, &origin, &key);
                reads += 6;
            }
            reads
        }));
    }
    let mut reads = 0;
    for writer in writers {
        reads += writer.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    eprintln!(
        "cross-instance reads: {reads} reads after writes on the other instance, beside {} background entries; none contradicted a receipt",
        next.load(Ordering::Relaxed).min(background.len())
    );
    drop((a, b));
}

/// An instance that nobody writes to, and that is asked only for lists and pages, follows the
/// database by itself: its size, its lists and the registry's pages reach what the other
/// instance appended without a `min_seq`; and a registry page that names something the other
/// instance just made (a pledge) is found at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_instance_follows_the_database_by_itself() {
    let Some(cluster) = TestCluster::shared("an_idle_instance_follows") else {
        return;
    };
    let url = cluster.database();
    let root = tempfile::tempdir().unwrap();
    let enterprises: Vec<String> = (0..2).map(|i| format!("ent-{i:02}")).collect();
    let (a, b, market, _) = two_instances(root.path(), &url, &enterprises).await;
    let (write, read) = (Client::new(&a.url).unwrap(), Client::new(&b.url).unwrap());
    let pledge = market.signed(
        "PL-IDLE-1",
        &market.at(21),
        json!({"type": "pledge", "pledge": "PL-IDLE-1", "pledgor": demo::PLATFORM,
               "bank": demo::BANK, "batch": demo::BATCH, "quantity": "10",
               "price_ref": demo::PRICE, "haircut": "0.30", "limit": "411.81",
               "currency": "CNY"}),
        &[demo::PLATFORM, demo::BANK],
    );
    let answer = write
        .post("/v1/entries", serde_json::to_vec(&pledge).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status.as_u16(), 201, "{}", answer.text());
    let page = read.get("/pledges/PL-IDLE-1").await.unwrap();
    assert_eq!(page.status.as_u16(), 200, "{}", page.text());
    assert!(page.text().contains("411.81"));
    let mut last = String::new();
    for (id, bytes) in transfers(&market, &enterprises, "IDLE", 20) {
        let answer = write.post("/v1/entries", bytes).await.unwrap();
        assert_eq!(answer.status.as_u16(), 201, "{id}: {}", answer.text());
        last = id;
    }
    let size = json_of(&write, "/v1/ledger").await["size"]
        .as_u64()
        .unwrap();
    // No min_seq, nothing named: only the instance's own following brings these in.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = json_of(&read, "/v1/ledger").await["size"].as_u64().unwrap();
        if held >= size {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle instance holds {held} of {size} entries after a minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let trades = json_of(&read, "/v1/trades?kind=transfer&limit=1000").await;
    assert!(
        trades["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == last.as_str()),
        "{trades}"
    );
    let page = read.get("/trades?kind=transfer&limit=1000").await.unwrap();
    assert!(
        page.text().contains(&last),
        "the registry's trades page lacks {last}"
    );
    drop((a, b));
}

#[test]
fn bench_measures_postgres_with_one_instance_and_two_on_scratch_databases() {
    let Some(cluster) = TestCluster::shared("bench_measures_postgres") else {
        return;
    };
    let url = cluster.url("postgres");
    let out = run_ok(&[
        "bench",
        "--entries",
        "60",
        "--clients",
        "4",
        "--holders",
        "10",
        "--ceiling-seconds",
        "0.05",
        "--mode",
        "http",
        "--store",
        &url,
    ]);
    for run in [
        "postgres http: 60 durable trades",
        "postgres http ×2: 60 durable trades",
    ] {
        assert!(out.contains(run), "no \"{run}\" in:\n{out}");
    }
    assert!(out.contains("of the sled rate in the same mode"), "{out}");
    // The scratch databases are gone.
    let left = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'carbon_ledger_scratch%'",
                &[],
            )
            .unwrap()
            .len()
    })
    .join()
    .unwrap();
    assert_eq!(left, 0, "scratch databases left behind");
}
