//! A failed durable write is never trusted. With real sled underneath, a wrapper fails, in turn,
//! the atomic write, sled's flush, the `fdatasync` after it, and a write that stops half-way
//! (its bytes torn in the data file). For each: nothing of the failed group is acknowledged,
//! the ledger reopens its store from disk, checks it against what it knew to be durable, and
//! writes again; what was acknowledged survives a reopen, and `verify_full` passes.
//!
//! Then a store that stays full (writes refused at once, health failing, recovery once there is
//! room again), a store that comes back from a reopen with fewer entries than were durable (the
//! ledger halts rather than build on it), and sled's disk reserve.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fault, Faults, HookedStore};
use ledger_core::ledger::{Ledger, LedgerError, Receipt, WriteHealth};
use ledger_core::load::Market;
use ledger_core::store::{SledStore, StoreError};
use ledger_core::wire::Prepared;

const HOLDERS: usize = 8;

/// A ledger on sled in `dir`, through a wrapper that fails appends as `faults` says.
fn faulty_ledger(dir: &Path, market: &Market, faults: &Arc<Faults>) -> Ledger {
    let store = HookedStore::with_faults(SledStore::open(dir).unwrap(), Arc::clone(faults));
    Ledger::open(Box::new(store), market.config().unwrap()).unwrap()
}

/// Submits `trades` from as many threads at once (so that the failing write carries a group);
/// returns each outcome by trade number.
fn submit_at_once(
    ledger: &Arc<Ledger>,
    trades: &[(usize, Prepared)],
) -> BTreeMap<usize, Result<Receipt, LedgerError>> {
    let outcomes = Arc::new(Mutex::new(BTreeMap::new()));
    let threads: Vec<_> = trades
        .iter()
        .cloned()
        .map(|(k, trade)| {
            let (ledger, outcomes) = (Arc::clone(ledger), Arc::clone(&outcomes));
            std::thread::spawn(move || {
                let outcome = ledger.submit_prepared(trade);
                outcomes.lock().unwrap().insert(k, outcome);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    Arc::try_unwrap(outcomes).unwrap().into_inner().unwrap()
}

/// Every acknowledged entry is in `ledger` where its receipt says, byte for byte.
fn assert_acknowledged_present(ledger: &Ledger, acked: &BTreeMap<usize, Receipt>, when: &str) {
    for (k, receipt) in acked {
        let leaf = ledger
            .leaf(receipt.seq)
            .unwrap_or_else(|e| panic!("{when}: trade {k}, acknowledged at {}: {e}", receipt.seq));
        assert_eq!(
            hex::encode(ledger_core::merkle::leaf_hash(&leaf)),
            receipt.leaf_hash,
            "{when}: trade {k} at seq {}",
            receipt.seq
        );
    }
}

fn wait_for_retry(ledger: &Ledger) {
    if let WriteHealth::Failing { retry_in, .. } = ledger.write_health() {
        std::thread::sleep(retry_in + Duration::from_millis(20));
    }
}

/// The four faults, each on a fresh ledger: nothing of the failing group (an atomic group of six
/// entries) acknowledged; the
/// ledger recovers from a reopened store at once and writes again; what was acknowledged
/// survives a reopen of the folder; `verify_full` passes; the refused entries, submitted again,
/// are appended once (or answered with their receipt, if the failed write reached the disk).
#[test]
fn each_failed_step_acknowledges_nothing_and_the_ledger_goes_on_from_disk() {
    for fault in [Fault::Append, Fault::Flush, Fault::Sync, Fault::HalfWay] {
        let dir = tempfile::tempdir().unwrap();
        let market = Market::new(HOLDERS);
        let faults = Faults::new();
        let ledger = Arc::new(faulty_ledger(dir.path(), &market, &faults));
        market.setup(&ledger).unwrap();
        let trades: Vec<(usize, Prepared)> =
            (0..24).map(|k| (k, market.trade(k).unwrap())).collect();
        let mut acked = BTreeMap::new();
        for (k, trade) in &trades[..4] {
            acked.insert(*k, ledger.submit_prepared(trade.clone()).unwrap());
        }

        // The failing write carries an atomic group of six entries.
        faults.once(fault);
        let group: Vec<Prepared> = trades[4..10].iter().map(|(_, t)| t.clone()).collect();
        let error = ledger.submit_group(group).unwrap_err();
        let expected_kind = if fault == Fault::Append {
            "storage-full"
        } else {
            "storage"
        };
        assert_eq!(error.kind(), expected_kind, "{fault:?}: {error}");
        assert_eq!(faults.fired.load(Ordering::SeqCst), 1, "{fault:?}");
        let refused: Vec<usize> = (4..10).collect();
        assert!(
            !refused.is_empty(),
            "{fault:?}: the failing write refused its group"
        );
        assert_eq!(
            ledger.write_health(),
            WriteHealth::Accepting,
            "{fault:?}: recovered at once"
        );
        let stats = ledger.failure_stats();
        assert_eq!((stats.failed_writes, stats.recoveries), (1, 1), "{fault:?}");
        // Where the failed write had reached the file (a failed fdatasync), the reopened store
        // holds it and the ledger keeps it; where it had not, nothing of it is there. A failed
        // flush outside sled leaves sled healthy, and closing it writes its cache: the group is
        // there too. A torn write is never half there: sled's recovery drops a torn batch.
        let whole = refused.len() as u64;
        let expected = match fault {
            Fault::Append => vec![0],
            Fault::Flush | Fault::Sync => vec![whole],
            Fault::HalfWay => vec![0, whole],
        };
        assert!(
            expected.contains(&stats.adopted_entries),
            "{fault:?}: {} of {whole} entries of the failed group are in the store",
            stats.adopted_entries
        );
        eprintln!(
            "{fault:?}: {} refused, {} of them found in the store after reopening it",
            refused.len(),
            stats.adopted_entries
        );

        // Writes go on, from many submitters at once.
        for (k, outcome) in submit_at_once(&ledger, &trades[10..]) {
            acked.insert(k, outcome.unwrap());
        }
        assert_acknowledged_present(&ledger, &acked, "live");
        ledger.verify_full().unwrap();

        // The folder reopened on its own holds every acknowledged entry and verifies.
        let ledger = Arc::try_unwrap(ledger).unwrap();
        drop(ledger);
        let reopened = Ledger::open_dir(dir.path(), market.config().unwrap()).unwrap();
        assert_acknowledged_present(&reopened, &acked, "reopened");
        reopened.verify_full().unwrap();
        let size = reopened.size();
        let mut appended_again = 0;
        for k in &refused {
            let receipt = reopened.submit_prepared(trades[*k].1.clone()).unwrap();
            if !receipt.duplicate {
                appended_again += 1;
            }
        }
        assert_eq!(
            appended_again as u64,
            refused.len() as u64 - stats.adopted_entries,
            "{fault:?}: a refused entry is in the ledger once"
        );
        assert_eq!(reopened.size(), size + appended_again as u64);
        reopened.verify_full().unwrap();
    }
}

/// A disk that stays full: the first failing write is refused with `storage-full`; until the
/// store takes writes again, submissions are refused at once (no write is even tried); the
/// health says so; reads go on; once there is room, a retry recovers with no submission.
#[test]
fn a_full_store_refuses_at_once_and_recovers_by_itself_when_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let market = Market::new(HOLDERS);
    let faults = Faults::new();
    let ledger = faulty_ledger(dir.path(), &market, &faults);
    market.setup(&ledger).unwrap();
    let first = ledger.submit_prepared(market.trade(0).unwrap()).unwrap();
    let size = ledger.size();

    faults.always(Fault::Append);
    let refused = ledger
        .submit_prepared(market.trade(1).unwrap())
        .unwrap_err();
    assert_eq!(refused.kind(), "storage-full", "{refused}");
    // The write, then the recovery's proof that the store takes writes: both failed.
    assert_eq!(faults.fired.load(Ordering::SeqCst), 2);
    let WriteHealth::Failing {
        error, attempts, ..
    } = ledger.write_health()
    else {
        panic!("{:?}", ledger.write_health())
    };
    assert!(matches!(error, StoreError::Full(_)), "{error}");
    assert_eq!(attempts, 1);
    assert!(ledger.halted().is_some());

    // Refused at once: nothing reaches the store.
    let again = ledger
        .submit_prepared(market.trade(2).unwrap())
        .unwrap_err();
    assert_eq!(again.kind(), "storage-full");
    assert_eq!(faults.fired.load(Ordering::SeqCst), 2, "no write was tried");
    // Reads go on.
    assert_eq!(ledger.size(), size);
    assert_eq!(ledger.envelope(first.seq).unwrap().seq, first.seq);
    ledger.checkpoint().unwrap();

    // Still full at the next retry.
    wait_for_retry(&ledger);
    assert!(matches!(
        ledger.retry_store(),
        WriteHealth::Failing { attempts: 2, .. }
    ));
    // Room again: the next retry recovers, without any submission.
    faults.disarm();
    wait_for_retry(&ledger);
    assert_eq!(ledger.retry_store(), WriteHealth::Accepting);
    assert_eq!(ledger.failure_stats().recoveries, 1);
    let receipt = ledger.submit_prepared(market.trade(3).unwrap()).unwrap();
    assert_eq!(receipt.seq, size);
    ledger.verify_full().unwrap();
    drop(ledger);
    let reopened = Ledger::open_dir(dir.path(), market.config().unwrap()).unwrap();
    assert_eq!(reopened.size(), size + 1);
    reopened.verify_full().unwrap();
}

/// Copies sled's files from `from` into `to`, replacing each by a rename (an open database
/// keeps the files it had).
fn put_back(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let staged = to.join(format!("{}.staged", entry.file_name().to_string_lossy()));
            std::fs::copy(entry.path(), &staged).unwrap();
            std::fs::rename(&staged, to.join(entry.file_name())).unwrap();
        }
    }
}

/// A disk that, after a failed write, comes back with less than was made durable (an old copy
/// of the files, as a broken disk or a careless restore would leave): the ledger must not
/// build on it. It halts, says why, refuses writes, and goes on answering reads.
#[test]
fn a_store_that_comes_back_with_fewer_entries_than_were_durable_halts_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let old_copy = dir.path().join("old");
    let market = Market::new(HOLDERS);
    let faults = Faults::new();
    let lose_writes = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = {
        let (lose_writes, old_copy, store_dir) = (
            Arc::clone(&lose_writes),
            old_copy.clone(),
            store_dir.clone(),
        );
        HookedStore::with_faults(SledStore::open(&store_dir).unwrap(), Arc::clone(&faults))
            .before_reopen(move || {
                if lose_writes.swap(false, Ordering::SeqCst) {
                    put_back(&old_copy, &store_dir);
                }
            })
    };
    let ledger = Ledger::open(Box::new(store), market.config().unwrap()).unwrap();
    market.setup(&ledger).unwrap();
    // The old copy: everything durable so far.
    std::fs::create_dir_all(&old_copy).unwrap();
    for entry in std::fs::read_dir(&store_dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), old_copy.join(entry.file_name())).unwrap();
        }
    }
    let acked = ledger.submit_prepared(market.trade(0).unwrap()).unwrap();
    let size = ledger.size();

    lose_writes.store(true, Ordering::SeqCst);
    faults.once(Fault::Sync);
    let refused = ledger
        .submit_prepared(market.trade(1).unwrap())
        .unwrap_err();
    assert_eq!(refused.kind(), "storage", "{refused}");
    let WriteHealth::Halted { reason, .. } = ledger.write_health() else {
        panic!("{:?}", ledger.write_health())
    };
    assert!(
        reason.contains("acknowledged entries are missing"),
        "{reason}"
    );
    assert!(reason.contains("carbon-ledger check"), "{reason}");
    let later = ledger
        .submit_prepared(market.trade(2).unwrap())
        .unwrap_err();
    assert!(matches!(later, LedgerError::Halted(_)), "{later}");
    assert_eq!(later.kind(), "storage");
    // It still answers from what it had acknowledged.
    assert_eq!(ledger.size(), size);
    assert_eq!(ledger.read(|s| s.participants().count()), HOLDERS + 3);
    assert_eq!(acked.seq, size - 1);
}

/// The store holds disk space back in `reserve` (given up when sled cannot open on a full disk,
/// see `docs/operations.md`), and makes it again before the next write if it is gone.
#[test]
fn the_store_keeps_a_disk_reserve_and_makes_it_again_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let reserve = dir.path().join("reserve");
    let market = Market::new(HOLDERS);
    let store = SledStore::with_reserve(dir.path(), 1 << 20).unwrap();
    assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 1 << 20);
    let ledger = Ledger::open(Box::new(store), market.config().unwrap()).unwrap();
    market.setup(&ledger).unwrap();
    std::fs::remove_file(&reserve).unwrap();
    ledger.submit_prepared(market.trade(0).unwrap()).unwrap();
    assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 1 << 20);
    assert_eq!(ledger.write_health(), WriteHealth::Accepting);
    // No reserve asked for, none made.
    drop(ledger);
    let other = tempfile::tempdir().unwrap();
    drop(SledStore::with_reserve(other.path(), 0).unwrap());
    assert!(!other.path().join("reserve").exists());
}
