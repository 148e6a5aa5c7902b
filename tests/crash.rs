//! The crash test: `carbon-ledger serve` as a child process on a real folder, concurrent
//! submissions, SIGKILL at random moments over many rounds, a restart each time, and after each
//! restart an audit:
//!
//! - every acknowledged entry is present, at its acknowledged sequence number, with its leaf hash;
//! - the log is gap-free (entries `0..size` all readable, each envelope's `seq` its position and
//!   its `prev` the previous leaf's hash), holds only what was submitted, and each id once;
//! - the tree recomputed from the leaves has the ledger's root, every checkpoint signed so far
//!   (also those fetched moments before a kill) has the root of the recomputed tree at its size,
//!   and the service proves the current tree consistent with them;
//! - entries in flight at the kill are present once or absent; resubmitted, they are accepted or
//!   answered as duplicates with their first receipt.
//!
//! At the end the export verifies against the checkpoint, balances equal a replay of the export
//! (and a count of the transfers in the log), and `carbon-ledger check` passes if it exists.
//!
//! `CRASH_SEED` (default 20221126) repeats a run. `CARBON_LEDGER_CRASH_ROUNDS` (or
//! `CRASH_ROUNDS`; default 12, at most 5,000) lengthens it: the soak of docs/operations.md is
//! 1,000 rounds. Submitters sign their transfers (of 1 kg) as they go, so that a long soak never
//! runs out of entries to submit.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use ledger_api::client::Client;
use ledger_api::demo;
use ledger_core::checkpoint;
use ledger_core::ids::ParticipantId;
use ledger_core::ledger::Receipt;
use ledger_core::merkle::{self, Hash};
use ledger_core::verify;
use serde_json::{json, Value};
use support::{bin, unhex, Log, Market, Rng, Service};

/// The most rounds a run may ask for: a bound on how long it takes (about 2 s a round).
const MAX_ROUNDS: usize = 5000;
/// Concurrent submitters per round.
const CLIENTS: usize = 8;
/// Enterprises receiving transfers.
const ENTERPRISES: usize = 20;

/// How much sink each transfer of the pool moves: 1 kg, so that the platform's 10,000 t and the
/// wetland's 5,300 t last for millions of transfers.
const QUANTITY: &str = "0.001";

/// One submission of the pool, signed when it is needed: the same index always gives the same
/// signed bytes (the body and its time are fixed, and Ed25519 signatures are deterministic), so a
/// submission in doubt is sent again byte for byte.
struct Pooled {
    id: String,
    bytes: Vec<u8>,
}

/// The pool: transfers of [`QUANTITY`] from the platform and the wetland, in turn, to the
/// enterprises, numbered from 0.
struct Pool {
    market: Market,
    enterprises: Vec<String>,
}

impl Pool {
    fn parties(&self, i: usize) -> (&'static str, &str) {
        let seller = if i % 2 == 0 {
            demo::PLATFORM
        } else {
            demo::WETLAND
        };
        (seller, &self.enterprises[i % ENTERPRISES])
    }

    fn id(i: usize) -> String {
        format!("CR-{i:07}")
    }

    /// The pool index of an entry id, if it is one of the pool's.
    fn index(id: &str) -> Option<usize> {
        id.strip_prefix("CR-")?.parse().ok()
    }

    fn get(&self, i: usize) -> Pooled {
        let (seller, buyer) = self.parties(i);
        let id = Self::id(i);
        let bytes =
            serde_json::to_vec(&self.market.transfer(&id, seller, buyer, QUANTITY)).unwrap();
        Pooled { id, bytes }
    }
}

async fn json_of(client: &Client, path: &str) -> Value {
    let answer = client
        .get(path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    answer
        .ok_json()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Reads the log past what is known, checks it, and checks every receipt and checkpoint against
/// it. After the setup (`setup_size` entries) the log may hold only the pool's first `issued`
/// entries.
async fn audit(
    client: &Client,
    log: &mut Log,
    origin: &str,
    key: &VerifyingKey,
    acked: &BTreeMap<String, Receipt>,
    setup_size: Option<u64>,
    issued: usize,
) {
    let info = json_of(client, "/v1/ledger").await;
    let size = info["size"].as_u64().unwrap();
    assert!(
        size >= log.size(),
        "the ledger shrank from {} to {size} entries",
        log.size()
    );
    let audited_before = log.size();
    log.read_to(client, size, &mut |seq, id| {
        if setup_size.is_some_and(|s| seq >= s) {
            assert!(
                Pool::index(id).is_some_and(|i| i < issued),
                "entry {seq} ({id}) was never submitted"
            );
        }
    })
    .await;
    assert_eq!(
        hex::encode(log.tree.root()),
        info["root"].as_str().unwrap(),
        "the root recomputed from the leaves"
    );

    // The checkpoint now; every checkpoint seen is on this tree, and the service proves it.
    let note = client.get("/v1/checkpoint").await.unwrap();
    assert!(note.status.is_success(), "{}", note.text());
    log.checkpoint(&note.text(), origin, key);
    let current = checkpoint::open_checkpoint(&note.text(), origin, key).unwrap();
    assert_eq!(current.size, size, "the checkpoint of an idle ledger");
    // The service proves the current tree consistent with the size audited last time and with
    // every checkpoint signed since (their sizes are at least that one). Older checkpoints were
    // proved consistent with an earlier tree, which this proof extends; and every checkpoint's
    // root is checked below against the tree of the leaves. (Proving them all again each round
    // would make a soak of a thousand rounds quadratic.)
    let mut old_sizes: Vec<u64> = log
        .checkpoints
        .range(audited_before..)
        .map(|(size, _)| *size)
        .collect();
    old_sizes.push(audited_before);
    for (&cp_size, cp_root) in &log.checkpoints {
        assert!(
            cp_size <= size,
            "a signed checkpoint of {cp_size} entries, but the ledger holds {size} after a restart"
        );
        assert_eq!(
            usize::try_from(cp_size).ok().map(|s| log.roots[s]),
            Some(*cp_root),
            "the checkpoint of size {cp_size} is not on the tree of the leaves"
        );
    }
    old_sizes.sort_unstable();
    old_sizes.dedup();
    for old in old_sizes.into_iter().filter(|&s| s > 0 && s < size) {
        let proof = json_of(
            client,
            &format!("/v1/proofs/consistency?old_size={old}&new_size={size}"),
        )
        .await;
        let path: Vec<Hash> = proof["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| unhex(h.as_str().unwrap()))
            .collect();
        let old_root = log.roots[usize::try_from(old).unwrap()];
        merkle::verify_consistency(old, size, &old_root, &current.root, &path)
            .unwrap_or_else(|e| panic!("consistency {old} → {size}: {e}"));
    }

    // Every acknowledged entry, where its receipt says.
    for receipt in acked.values() {
        log.holds(receipt);
    }
}

/// What a submitter saw.
#[derive(Default)]
struct Outcomes {
    /// 2xx receipts, with whether the entry had been sent before (in doubt).
    receipts: Vec<(usize, Receipt)>,
    /// Sent, no answer: the service died.
    in_doubt: Vec<usize>,
    /// Answers that should not happen (a refusal of a valid, unique entry...).
    unexpected: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_moments_loses_no_acknowledged_entry() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_221_126);
    let rounds: usize = std::env::var("CARBON_LEDGER_CRASH_ROUNDS")
        .or_else(|_| std::env::var("CRASH_ROUNDS"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
        .min(MAX_ROUNDS);
    eprintln!(
        "crash test: seed {seed}, {rounds} rounds (CRASH_SEED, CARBON_LEDGER_CRASH_ROUNDS repeat a run)"
    );
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Set up once: the participants, 20 enterprises, the batch issued and acquired.
    let service = tokio::task::block_in_place(|| Service::start(&data));
    let client = Client::new(&service.url).unwrap();
    let info = json_of(&client, "/v1/ledger").await;
    let origin = info["origin"].as_str().unwrap().to_owned();
    let operator = info["operator"].as_str().unwrap().to_owned();
    let operator_key = ledger_api::keys::read_key_file(&data.join("operator.key")).unwrap();
    let vk = operator_key.verifying_key();
    let mut market = Market::new(&origin, &operator, operator_key);
    let enterprises: Vec<String> = (0..ENTERPRISES).map(|i| format!("ent-{i:02}")).collect();
    support::populate_over_http(&client, &mut market, &enterprises).await;
    let setup_size = json_of(&client, "/v1/ledger").await["size"]
        .as_u64()
        .unwrap();
    tokio::task::block_in_place(|| service.kill());

    // The pool: transfers of 1 kg from the platform (10,000 t) and the wetland (5,300 t) to
    // the enterprises, each with its own id, signed by the submitters as they go.
    let pool = Arc::new(Pool {
        market,
        enterprises,
    });
    // The pool's next fresh index: every index below it was handed to a submitter.
    let fresh = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    eprintln!(
        "crash test: set up {setup_size} entries in {:?}",
        started.elapsed()
    );

    let mut log = Log::new();
    let mut acked: BTreeMap<String, Receipt> = BTreeMap::new();
    // Entries in doubt (sent when the service was killed), sent again first next round.
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut in_doubt_ever: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
    let mut in_doubt_present = 0usize;

    for round in 0..=rounds {
        let service = tokio::task::block_in_place(|| Service::start(&data));
        let client = Client::new(&service.url).unwrap();
        audit(
            &client,
            &mut log,
            &origin,
            &vk,
            &acked,
            Some(setup_size),
            fresh.load(std::sync::atomic::Ordering::SeqCst),
        )
        .await;
        if round == rounds {
            // The last start: no kill. Resubmit what is still in doubt, then the final checks.
            let doubtful: Vec<usize> = in_doubt_ever
                .iter()
                .copied()
                .filter(|&i| !acked.contains_key(&Pool::id(i)))
                .collect();
            let acked_in_rounds = acked.len();
            let doubt_present = finish(
                service,
                &client,
                &data,
                &mut log,
                (&origin, &vk),
                &pool,
                &doubtful,
                fresh.load(std::sync::atomic::Ordering::SeqCst),
                &mut acked,
                setup_size,
            )
            .await;
            eprintln!(
                "crash test: {rounds} rounds, {acked_in_rounds} entries acknowledged, 0 lost; {} in flight at a kill ({} of them found appended on resubmission); {} entries in the log; seed {seed}; {:.1} s",
                in_doubt_ever.len(),
                in_doubt_present + doubt_present,
                log.size(),
                started.elapsed().as_secs_f64()
            );
            break;
        }

        // Submitters and a checkpoint fetcher, until the kill.
        let shared = Arc::new(Mutex::new(std::mem::take(&mut queue)));
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (client, shared, outcomes, pool, fresh, stop) = (
                client.clone(),
                shared.clone(),
                outcomes.clone(),
                pool.clone(),
                fresh.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    // Entries in doubt first, then fresh ones until the kill.
                    let next = shared.lock().unwrap().pop_front();
                    let i = match next {
                        Some(i) => i,
                        None if stop.load(std::sync::atomic::Ordering::Relaxed) => return,
                        None => fresh.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                    };
                    let pooled = pool.get(i);
                    match client.post("/v1/entries", pooled.bytes).await {
                        Ok(answer) if answer.status.is_success() => {
                            match answer.json::<Receipt>() {
                                Ok(receipt) => outcomes.lock().unwrap().receipts.push((i, receipt)),
                                Err(e) => outcomes
                                    .lock()
                                    .unwrap()
                                    .unexpected
                                    .push(format!("{}: {e}", pooled.id)),
                            }
                        }
                        Ok(answer) => {
                            outcomes.lock().unwrap().unexpected.push(format!(
                                "{}: {} {}",
                                pooled.id,
                                answer.status,
                                answer.text()
                            ));
                        }
                        Err(_) => {
                            outcomes.lock().unwrap().in_doubt.push(i);
                            return;
                        }
                    }
                }
            }));
        }
        let notes = Arc::new(Mutex::new(Vec::<String>::new()));
        let fetcher = {
            let (client, notes, stop) = (client.clone(), notes.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match client.get("/v1/checkpoint").await {
                        Ok(a) if a.status.is_success() => notes.lock().unwrap().push(a.text()),
                        Ok(_) => {}
                        Err(_) => return,
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            })
        };
        let delay = rng.range(100, 1200);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        tokio::task::block_in_place(|| service.kill());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        fetcher.abort();
        let _ = fetcher.await;
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a submitter hung after the kill")
                .unwrap();
        }

        // What the submitters saw.
        let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
        assert!(
            outcomes.unexpected.is_empty(),
            "round {round}: unexpected answers: {:?}",
            outcomes.unexpected
        );
        let mut fresh_acked = 0;
        for (i, receipt) in outcomes.receipts {
            let id = &Pool::id(i);
            assert_eq!(&receipt.id, id);
            if receipt.duplicate {
                // Only an entry in doubt from an earlier round may come back as a duplicate,
                // with the receipt of the entry the log holds.
                assert_eq!(
                    log.ids.get(id),
                    Some(&receipt.seq),
                    "{id}: a duplicate receipt for an entry the log does not hold there"
                );
                in_doubt_present += 1;
            } else {
                assert!(
                    !log.ids.contains_key(id),
                    "{id} was in the log already, yet accepted again as new"
                );
                fresh_acked += 1;
            }
            if let Some(first) = acked.insert(id.clone(), receipt.clone()) {
                panic!("{id} acknowledged twice: {first:?} and {receipt:?}");
            }
        }
        for note in notes.lock().unwrap().iter() {
            log.checkpoint(note, &origin, &vk);
        }
        let doubt_now = outcomes.in_doubt.len();
        in_doubt_ever.extend(outcomes.in_doubt.iter().copied());
        // In doubt first next round, then what was never sent.
        let mut next: VecDeque<usize> = outcomes.in_doubt.into_iter().collect();
        next.extend(shared.lock().unwrap().drain(..));
        queue = next;
        eprintln!(
            "crash test: round {round}: killed after {delay} ms, {fresh_acked} acknowledged, {doubt_now} in flight, {} checkpoints fetched",
            notes.lock().unwrap().len()
        );
    }
}

/// The last start: resubmit what was in doubt, audit again, verify the export and the balances,
/// stop cleanly and run `carbon-ledger check` if it exists.
#[allow(clippy::too_many_arguments)]
async fn finish(
    service: Service,
    client: &Client,
    data: &Path,
    log: &mut Log,
    (origin, vk): (&str, &VerifyingKey),
    pool: &Pool,
    doubtful: &[usize],
    issued: usize,
    acked: &mut BTreeMap<String, Receipt>,
    setup_size: u64,
) -> usize {
    let (market, enterprises) = (&pool.market, &pool.enterprises);
    let mut present = 0;
    // Every pool entry sent but never acknowledged is resubmitted: present once (a duplicate
    // with the log's receipt) or absent (accepted now).
    for &i in doubtful {
        let p = pool.get(i);
        let in_log = log.ids.get(&p.id).copied();
        let answer = client.post("/v1/entries", p.bytes.clone()).await.unwrap();
        let receipt: Receipt = answer
            .ok_json()
            .unwrap_or_else(|e| panic!("{} resubmitted: {e}", p.id));
        match in_log {
            Some(seq) => {
                assert!(
                    receipt.duplicate,
                    "{}: in the log at {seq}, yet appended again",
                    p.id
                );
                assert_eq!(receipt.seq, seq, "{}: the first receipt", p.id);
                present += 1;
            }
            None => assert!(
                !receipt.duplicate,
                "{}: not in the log, yet a duplicate",
                p.id
            ),
        }
        acked.insert(p.id.clone(), receipt);
    }
    audit(client, log, origin, vk, acked, Some(setup_size), issued).await;

    // The export verifies against the checkpoint, and replays to the balances the service shows.
    let note = client.get("/v1/checkpoint").await.unwrap().text();
    let export = client.get("/v1/export").await.unwrap();
    assert!(export.status.is_success());
    let (report, replay) =
        verify::replay_export(export.body.as_ref(), &note, vk, &mut |_, _, _| Ok(())).unwrap();
    assert_eq!(report.entries, log.size());
    assert_eq!(hex::encode(replay.root()), hex::encode(log.tree.root()));
    let mut holders: Vec<String> = enterprises.to_vec();
    holders.extend(market.case.parties.iter().map(|p| p.id.to_owned()));
    holders.push(market.case.operator.clone());
    for holder in &holders {
        let shown = json_of(client, &format!("/v1/participants/{holder}/balances")).await;
        let id: ParticipantId = holder.parse().unwrap();
        let replayed: Vec<Value> = replay
            .state()
            .balances_of(&id)
            .filter(|(_, b)| !(b.available.is_zero() && b.pledged.is_zero()))
            .map(|(batch, b)| json!([batch.to_string(), b.available, b.pledged]))
            .collect();
        let served: Vec<Value> = shown["balances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let d = |k: &str| {
                    r[k].as_str()
                        .unwrap()
                        .parse::<rust_decimal::Decimal>()
                        .unwrap()
                };
                json!([r["batch"], d("available"), d("pledged")])
            })
            .collect();
        assert_eq!(
            served, replayed,
            "{holder}: the service's balances vs the replay"
        );
    }
    // And both equal a count of the transfers in the log.
    let mut received: HashMap<String, i64> = HashMap::new();
    let mut sold: HashMap<&str, i64> = HashMap::new();
    for i in log.ids.keys().filter_map(|id| Pool::index(id)) {
        let (seller, buyer) = pool.parties(i);
        *received.entry(buyer.to_owned()).or_default() += 1;
        *sold.entry(seller).or_default() += 1;
    }
    let unit: rust_decimal::Decimal = QUANTITY.parse().unwrap();
    let tonnes = |count: i64| rust_decimal::Decimal::from(count) * unit;
    let available = |holder: &str| {
        let id: ParticipantId = holder.parse().unwrap();
        replay
            .state()
            .balances_of(&id)
            .map(|(_, b)| b.available.value())
            .sum::<rust_decimal::Decimal>()
    };
    for e in enterprises {
        assert_eq!(
            available(e),
            tonnes(received.get(e.as_str()).copied().unwrap_or(0)),
            "{e}"
        );
    }
    assert_eq!(
        available(demo::PLATFORM),
        rust_decimal::Decimal::from(10_000)
            - tonnes(sold.get(demo::PLATFORM).copied().unwrap_or(0))
    );
    assert_eq!(
        available(demo::WETLAND),
        rust_decimal::Decimal::from(5_300) - tonnes(sold.get(demo::WETLAND).copied().unwrap_or(0))
    );

    // A clean stop, then the offline check if this build has it.
    let status = tokio::task::block_in_place(|| service.terminate());
    assert!(status.success(), "serve exited with {status}");
    let help = Command::new(bin()).arg("--help").output().unwrap();
    let has_check = String::from_utf8_lossy(&help.stdout)
        .lines()
        .any(|l| l.trim_start().starts_with("check "));
    if has_check {
        let out = Command::new(bin())
            .args(["check", "--data", data.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "carbon-ledger check failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("crash test: carbon-ledger check passed");
    } else {
        eprintln!("crash test: carbon-ledger has no check subcommand; skipped");
    }
    present
}
