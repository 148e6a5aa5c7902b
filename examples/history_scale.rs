//! How the ledger behaves as its history grows: builds a ledger of N two-signature trades in a
//! folder, then measures in a fresh process what opening it costs (time, resident memory), how
//! fast proofs are read from the store, and how a full verification compares with the signature
//! checks it must do. The figures in docs/performance.md come from here.
//!
//! ```text
//! cargo run --release --example history_scale -- build DIR N     # add N trades (creates DIR)
//! cargo run --release --example history_scale -- open DIR        # open time, RSS, proof times
//! cargo run --release --example history_scale -- verify DIR      # full verification vs signatures
//! cargo run --release --example history_scale -- pages DIR       # a page of history, and submissions while a client pages
//! cargo run --release --example history_scale -- tree DIR N       # a store of N small leaves and their tree only: proof times
//! ```
//!
//! `tree` measures proofs where a full ledger would take too much disk (10⁷ entries are about
//! 37 GB): it fills a sled store with N leaves of 64 bytes and their Merkle nodes, and nothing
//! else, then reads proofs as a ledger does. Run it once to build, and again for a fresh process.
//!
//! DIR may also be a `postgres://` URL: the ledger is then kept in that database.
//!
//! `build` and `verify` run for minutes at 10⁶ entries: they show their progress on standard
//! error (a bar on a terminal, a line at each tenth otherwise); the figures go to standard
//! output.

use std::time::{Duration, Instant};

// The progress display of carbon-ledger's long commands: a bar on a terminal, lines otherwise.
use ledger_api::progress::Reporter;
use ledger_core::ledger::Ledger;
use ledger_core::load::{measure_ceiling, peak_resident_kib, resident_kib, Market};
use ledger_core::progress::Progress as _;

const HOLDERS: usize = 1000;

// The allocator carbon-ledger runs with, so that the figures are the service's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Bytes in the files of `dir` and below (apparent size, and space allocated on disk), and the
/// part of them that is the store's disk reserve.
fn disk_bytes(dir: &std::path::Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let (mut apparent, mut allocated, mut reserve) = (0, 0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (a, b, r) = disk_bytes(&entry.path());
            (apparent, allocated, reserve) = (apparent + a, allocated + b, reserve + r);
        } else {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
            if entry.file_name() == "reserve" {
                reserve += meta.blocks() * 512;
            }
        }
    }
    (apparent, allocated, reserve)
}

/// The ledger in the folder `dir`, or in the PostgreSQL database `dir` names when it is a
/// `postgres://` URL.
fn open_ledger(dir: &str, market: &Market) -> Result<Ledger, Box<dyn std::error::Error>> {
    Ok(if dir.starts_with("postgres://") {
        let store = ledger_postgres::PgStore::connect(dir)?;
        Ledger::open(Box::new(store), market.config()?)?
    } else {
        Ledger::open_dir(dir.as_ref(), market.config()?)?
    })
}

fn build(dir: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let market = Market::new(HOLDERS);
    let ledger = open_ledger(dir, &market)?;
    if ledger.size() == 1 {
        market.setup(&ledger)?;
    }
    let first = usize::try_from(ledger.size())? - 1 - market.setup_entries();
    let start = Instant::now();
    let chunk = 1024;
    let progress = Reporter::new("build");
    let mut k = first;
    while k < first + n {
        let end = (k + chunk).min(first + n);
        // Sign on every core, then submit as one atomic group.
        let group: Vec<_> = std::thread::scope(|scope| {
            let half = k + (end - k) / 2;
            let market = &market;
            let a = scope.spawn(move || {
                (k..half)
                    .map(|i| market.trade(i))
                    .collect::<Result<Vec<_>, _>>()
            });
            let b = scope.spawn(move || {
                (half..end)
                    .map(|i| market.trade(i))
                    .collect::<Result<Vec<_>, _>>()
            });
            let mut group = a.join().expect("signer")?;
            group.extend(b.join().expect("signer")?);
            Ok::<_, ledger_core::load::LoadError>(group)
        })?;
        ledger.submit_group(group)?;
        k = end;
        progress.entries((k - first) as u64, n as u64);
    }
    progress.finish();
    ledger.checkpoint()?;
    println!(
        "built: {} entries in {dir} ({} trades added in {:.1} s); peak RSS {} MiB",
        ledger.size(),
        n,
        start.elapsed().as_secs_f64(),
        peak_resident_kib() / 1024
    );
    Ok(())
}

fn open(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let market = Market::new(HOLDERS);
    let before = resident_kib();
    let start = Instant::now();
    let ledger = open_ledger(dir, &market)?;
    let opened = start.elapsed();
    let after_open = resident_kib();
    let size = ledger.size();
    let (inclusion_p50, inclusion_p99) = percentiles(2000, &mut |i| {
        let seq = (i * 7919 + 13) % size;
        ledger.inclusion_proof(seq, None).expect("inclusion proof");
    });
    let (consistency_p50, consistency_p99) = percentiles(2000, &mut |i| {
        let old = (i * 104_729) % (size - 1) + 1;
        ledger
            .consistency_proof(old, None)
            .expect("consistency proof");
    });
    println!(
        "open: {size} entries in {:.3} s; RSS {} MiB before, {} MiB after open, {} MiB after 4,000 proofs",
        opened.as_secs_f64(),
        before / 1024,
        after_open / 1024,
        resident_kib() / 1024
    );
    if !dir.starts_with("postgres://") {
        let (apparent, allocated, reserve) = disk_bytes(dir.as_ref());
        let without_reserve = allocated.saturating_sub(reserve);
        println!(
            "disk: {:.1} MB allocated ({:.1} MB apparent), of which the store's reserve {:.1} MB: {:.0} bytes per entry without the reserve",
            allocated as f64 / 1e6,
            apparent as f64 / 1e6,
            reserve as f64 / 1e6,
            without_reserve as f64 / size as f64
        );
    }
    println!(
        "resident: {:.0} bytes per entry after open ({:.0} after the proofs); peak RSS {} MiB",
        (after_open * 1024) as f64 / size as f64,
        (resident_kib() * 1024) as f64 / size as f64,
        peak_resident_kib() / 1024
    );
    println!(
        "proofs from the store at {size} entries: inclusion p50 {:.1} µs p99 {:.1} µs; consistency p50 {:.1} µs p99 {:.1} µs",
        inclusion_p50.as_secs_f64() * 1e6,
        inclusion_p99.as_secs_f64() * 1e6,
        consistency_p50.as_secs_f64() * 1e6,
        consistency_p99.as_secs_f64() * 1e6
    );
    Ok(())
}

fn verify(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let ceiling = measure_ceiling(2.0);
    let single_core_strict = ceiling.strict_per_second / ceiling.threads as f64;
    let market = Market::new(HOLDERS);
    let ledger = open_ledger(dir, &market)?;
    let start = Instant::now();
    let progress = Reporter::new("verify");
    let report = ledger.verify_full_with(&progress)?;
    progress.finish();
    let took = start.elapsed().as_secs_f64();
    let signatures_alone = report.signatures as f64 / single_core_strict;
    let on_all_cores = report.signatures as f64 / ceiling.strict_per_second;
    println!(
        "verify: {} entries, {} signatures in {:.1} s; the signatures alone take {:.1} s at {:.0}/s on one core ({:.0} % of the time), {:.1} s on {} cores: the check takes {:.2}× that",
        report.entries,
        report.signatures,
        took,
        signatures_alone,
        single_core_strict,
        100.0 * signatures_alone / took,
        on_all_cores,
        ceiling.threads,
        took / on_all_cores
    );
    Ok(())
}

/// p50 and p99 of `n` runs of `f`.
fn percentiles(n: u64, f: &mut dyn FnMut(u64)) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let t0 = Instant::now();
            f(i);
            t0.elapsed()
        })
        .collect();
    times.sort_unstable();
    let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
    (at(50), at(99))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Pages of trades at this size, and what paging does to submissions.
fn pages(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    use ledger_core::state::{PageRequest, TradeFilter};
    let market = Market::new(HOLDERS);
    let ledger = std::sync::Arc::new(open_ledger(dir, &market)?);
    let size = ledger.size();
    let page = |after: Option<u64>, newest_first: bool, filter: &TradeFilter| {
        let request = PageRequest {
            after,
            limit: 100,
            newest_first,
        };
        let page = ledger.trade_page(filter, request).expect("a page");
        assert!(!page.items.is_empty(), "the page is not empty");
    };
    let all = TradeFilter::default();
    let (first_p50, first_p99) = percentiles(500, &mut |_| page(None, false, &all));
    let (deep_p50, deep_p99) = percentiles(500, &mut |i| {
        page(Some(size - 200 - (i * 7919) % (size / 2)), false, &all)
    });
    let (newest_p50, newest_p99) = percentiles(500, &mut |_| page(None, true, &all));
    let (party_p50, party_p99) = percentiles(500, &mut |i| {
        let filter = TradeFilter {
            party: Some(
                format!("holder-{}", i % HOLDERS as u64)
                    .parse()
                    .expect("an id"),
            ),
            ..TradeFilter::default()
        };
        page(None, false, &filter)
    });
    println!("pages of 100 trades at {size} entries (p50 / p99):");
    println!("  first page {:.2} / {:.2} ms; a deep page {:.2} / {:.2} ms; newest first {:.2} / {:.2} ms; by party {:.2} / {:.2} ms",
        ms(first_p50), ms(first_p99), ms(deep_p50), ms(deep_p99), ms(newest_p50), ms(newest_p99), ms(party_p50), ms(party_p99));

    // Submissions one at a time, each durable, without and with a client paging all along.
    let first = usize::try_from(size)? - 1 - market.setup_entries();
    let submit_all = |from: usize, n: usize| -> Vec<Duration> {
        let mut times: Vec<Duration> = (from..from + n)
            .map(|k| {
                let trade = market.trade(k).expect("a trade");
                let t0 = Instant::now();
                ledger.submit_prepared(trade).expect("accepted");
                t0.elapsed()
            })
            .collect();
        times.sort_unstable();
        times
    };
    let n = 300;
    let quiet = submit_all(first, n);
    let paging = std::sync::atomic::AtomicBool::new(true);
    let (busy, pages_read) = std::thread::scope(|scope| {
        let pager = scope.spawn(|| {
            let mut read = 0u64;
            while paging.load(std::sync::atomic::Ordering::Relaxed) {
                page(Some((read * 104_729) % (size - 200)), false, &all);
                read += 1;
            }
            read
        });
        let times = submit_all(first + n, n);
        paging.store(false, std::sync::atomic::Ordering::Relaxed);
        (times, pager.join().expect("the pager"))
    });
    let p50 = |t: &[Duration]| ms(t[t.len() / 2]);
    let max = |t: &[Duration]| ms(t[t.len() - 1]);
    println!(
        "submissions, one at a time: alone p50 {:.2} ms, max {:.2} ms; while a client read {pages_read} pages of 100: p50 {:.2} ms, max {:.2} ms ({:.0} % of the quiet p50)",
        p50(&quiet), max(&quiet), p50(&busy), max(&busy), 100.0 * p50(&busy) / p50(&quiet)
    );
    Ok(())
}

/// A store of `n` leaves of 64 bytes and their Merkle nodes (built up to `n` if it holds fewer),
/// and the time of proofs read from it as a ledger reads them: an inclusion proof with the leaf's
/// hash, a consistency proof with the old tree's root.
fn tree(dir: &str, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    use ledger_core::merkle::{self, CompactTree, Hash, NodeId, NodeSource};
    use ledger_core::store::{Append, Meta, SledStore, Store, LAYOUT};

    let start = Instant::now();
    let store = SledStore::open(dir.as_ref())?;
    let opened = start.elapsed();
    let meta = store.meta()?;
    let mut tree = match &meta {
        Some(meta) => CompactTree::from_parts(
            meta.size,
            meta.peaks
                .iter()
                .map(|p| hex::decode(p).ok().and_then(|b| b.try_into().ok()))
                .collect::<Option<Vec<Hash>>>()
                .ok_or("a peak of the stored tree is not a hash")?,
        )?,
        None => CompactTree::new(),
    };
    if tree.size() < n {
        let progress = Reporter::new("tree");
        let built = Instant::now();
        while tree.size() < n {
            let first = tree.size();
            let count = (n - first).min(1024);
            let leaves: Vec<Vec<u8>> = (first..first + count)
                .map(|i| {
                    let mut leaf = vec![0u8; 64];
                    leaf[..8].copy_from_slice(&i.to_be_bytes());
                    leaf
                })
                .collect();
            let mut nodes = Vec::new();
            for leaf in &leaves {
                nodes.extend(tree.append(merkle::leaf_hash(leaf))?);
            }
            let meta = Meta {
                layout: LAYOUT,
                origin: "tree.example/scale".to_owned(),
                operator_key: String::new(),
                size: tree.size(),
                peaks: tree.peaks().iter().map(hex::encode).collect(),
                last_leaf_hash: String::new(),
            };
            store.append(Append {
                first_seq: first,
                leaves: &leaves,
                nodes: &nodes,
                state: &[],
                meta: Some(&meta),
            })?;
            progress.entries(tree.size(), n);
        }
        progress.finish();
        println!(
            "tree: built {n} leaves in {:.1} s; run again to measure in a fresh process",
            built.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let size = tree.size();
    // As the ledger reads a proof: every node it needs in one call to the store.
    let fetch = |ids: Vec<NodeId>| {
        let mut nodes = merkle::MemoryNodes::new();
        for (&id, hash) in ids.iter().zip(store.nodes(&ids).expect("nodes")) {
            nodes.insert(id, hash.expect("a node of the tree"));
        }
        nodes
    };
    let (inclusion_p50, inclusion_p99) = percentiles(2000, &mut |i| {
        let seq = (i * 7919 + 13) % size;
        let plan = merkle::inclusion_plan(seq, size).expect("inclusion plan");
        let nodes = fetch(plan.node_ids().chain([NodeId::leaf(seq)]).collect());
        plan.fetch(&nodes).expect("inclusion proof");
        nodes.node(NodeId::leaf(seq)).expect("leaf hash");
    });
    let (consistency_p50, consistency_p99) = percentiles(2000, &mut |i| {
        let old = (i * 104_729) % (size - 1) + 1;
        let plan = merkle::consistency_plan(old, size).expect("consistency plan");
        let nodes = fetch(plan.node_ids().chain(merkle::root_plan(old)).collect());
        plan.fetch(&nodes).expect("consistency proof");
        merkle::root_at(old, &nodes).expect("old root");
    });
    let (_, allocated, reserve) = disk_bytes(dir.as_ref());
    println!(
        "tree: {size} leaves, opened in {:.3} s, {:.1} MB on disk; RSS {} MiB; inclusion p50 {:.1} µs p99 {:.1} µs; consistency p50 {:.1} µs p99 {:.1} µs",
        opened.as_secs_f64(),
        allocated.saturating_sub(reserve) as f64 / 1e6,
        resident_kib() / 1024,
        inclusion_p50.as_secs_f64() * 1e6,
        inclusion_p99.as_secs_f64() * 1e6,
        consistency_p50.as_secs_f64() * 1e6,
        consistency_p99.as_secs_f64() * 1e6
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["build", dir, n] => build(dir, n.parse()?),
        ["open", dir] => open(dir),
        ["verify", dir] => verify(dir),
        ["pages", dir] => pages(dir),
        ["tree", dir, n] => tree(dir, n.parse()?),
        _ => Err(
            "usage: history_scale build DIR N | open DIR | verify DIR | pages DIR | tree DIR N"
                .into(),
        ),
    }
}
