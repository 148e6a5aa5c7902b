//! The sequencer under a store that panics, and lists of history that neither scan the history
//! nor wait for the sequencer.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{stores, HookedStore};
use ed25519_dalek::SigningKey;
use ledger_core::ledger::{Ledger, LedgerConfig, LedgerError, Receipt};
use ledger_core::reference::{Expect, ReferenceCase, BATCH, ENTERPRISE_A, ENTERPRISE_B};
use ledger_core::state::{CertificateFilter, PageRequest, TradeFilter};
use ledger_core::store::Store;
use serde_json::json;

const ORIGIN: &str = "sequencer.example/xiazhuhu";
const OPERATOR: &str = "deqing-registry";

fn config() -> LedgerConfig {
    LedgerConfig::new(
        ORIGIN.parse().unwrap(),
        OPERATOR.parse().unwrap(),
        "Registry".parse().unwrap(),
        SigningKey::from_bytes(&[5; 32]),
    )
}

fn reference_case() -> ReferenceCase {
    ReferenceCase::new(ORIGIN, OPERATOR, SigningKey::from_bytes(&[5; 32]))
}

fn populate(ledger: &Ledger, case: &ReferenceCase) {
    for step in case.steps() {
        if step.expect == Expect::Accepted {
            ledger.submit(step.submission).unwrap();
        }
    }
}

/// A transfer of `kg` kilograms from enterprise-b to enterprise-a, signed by both.
fn transfer(case: &ReferenceCase, id: &str, kg: usize) -> ledger_core::entry::Submission {
    let body = case.body(
        id,
        &case.at(20),
        json!({"type": "trade", "kind": "transfer", "seller": ENTERPRISE_B,
               "buyer": ENTERPRISE_A, "batch": BATCH, "quantity": format!("0.{kg:03}")}),
    );
    case.sign(body, &[ENTERPRISE_B, ENTERPRISE_A])
}

/// Regression: a store whose append panicked once left a submitter of that pass waiting
/// forever, and the next pass acknowledged a seq whose leaf was never stored (reopening then
/// succeeded, and `verify_full` found the entry missing). Now every submitter of the pass gets
/// an error, the head goes back to what the store holds, and what is acknowledged is stored.
#[test]
fn a_store_that_panics_mid_write_answers_everyone_and_acknowledges_only_what_it_stored() {
    for store in stores::each_store(
        "a_store_that_panics_mid_write_answers_everyone_and_acknowledges_only_what_it_stored",
    ) {
        eprintln!("a_store_that_panics_mid_write_answers_everyone_and_acknowledges_only_what_it_stored: {store}");
        let memory: Arc<dyn Store> = Arc::from(store.store());
        let armed = Arc::new(AtomicBool::new(false));
        let trigger = Arc::clone(&armed);
        let store = HookedStore::new(Arc::clone(&memory), move |_| {
            if trigger.swap(false, Ordering::SeqCst) {
                // Long enough that the other submitters queue behind this pass.
                std::thread::sleep(Duration::from_millis(300));
                panic!("the disk controller fell over (a panic on purpose)");
            }
        });
        let case = Arc::new(reference_case());
        let ledger = Arc::new(Ledger::open(Box::new(store), config()).unwrap());
        populate(&ledger, &case);
        let size_before = ledger.size();

        armed.store(true, Ordering::SeqCst);
        let (answers, answered) = mpsc::channel::<(usize, Result<Receipt, LedgerError>)>();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (ledger, case, answers) = (ledger.clone(), case.clone(), answers.clone());
                std::thread::spawn(move || {
                    if i > 0 {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let outcome = ledger.submit(transfer(&case, &format!("T-P-{i}"), i + 1));
                    answers.send((i, outcome)).unwrap();
                })
            })
            .collect();
        drop(answers);
        let mut outcomes = Vec::new();
        for _ in 0..8 {
            let answer = answered
                .recv_timeout(Duration::from_secs(30))
                .expect("a submitter waited 30 s without an answer");
            outcomes.push(answer);
        }
        for thread in threads {
            thread
                .join()
                .expect("no submitter panics: the panic is answered as an error");
        }
        let refused: Vec<_> = outcomes.iter().filter(|(_, o)| o.is_err()).collect();
        assert!(
            !refused.is_empty(),
            "the pass that panicked refused its entries"
        );
        for (_, outcome) in &refused {
            let error = outcome.as_ref().unwrap_err();
            assert!(error.to_string().contains("submit it again"), "{error}");
        }

        // Every receipt names a leaf that is in the store, byte for byte.
        for (i, outcome) in &outcomes {
            if let Ok(receipt) = outcome {
                let leaf = memory.leaf(receipt.seq).unwrap().unwrap_or_else(|| {
                    panic!(
                        "submitter {i}: seq {} was acknowledged but never stored",
                        receipt.seq
                    )
                });
                assert_eq!(
                    hex::encode(ledger_core::merkle::leaf_hash(&leaf)),
                    receipt.leaf_hash
                );
            }
        }
        let accepted = outcomes.iter().filter(|(_, o)| o.is_ok()).count() as u64;
        assert_eq!(ledger.size(), size_before + accepted);
        ledger.verify_full().unwrap();

        // The refused ones can be submitted again, and the ledger reopens whole.
        for (i, _) in &refused {
            ledger
                .submit(transfer(&case, &format!("T-P-{i}"), *i + 1))
                .unwrap();
        }
        let size = ledger.size();
        drop(threads_done(ledger));
        let reopened = Ledger::open(Box::new(Arc::clone(&memory)), config()).unwrap();
        assert_eq!(reopened.size(), size);
        reopened.verify_full().unwrap();
    }
}

/// Gives the ledger back once no other thread holds it.
fn threads_done(ledger: Arc<Ledger>) -> Ledger {
    Arc::try_unwrap(ledger).expect("the submitter threads are done")
}

/// A ledger of `trades` synthetic trades and a few retirements, on a store that counts the
/// rows it reads.
fn history(
    store: &stores::TestStore,
    trades: usize,
) -> (Ledger, Arc<std::sync::atomic::AtomicU64>) {
    let market = ledger_core::load::Market::new(20);
    let store = HookedStore::new(Arc::<dyn Store>::from(store.store()), |_| {});
    let rows_read = Arc::clone(&store.rows_read);
    let ledger = Ledger::open(Box::new(store), market.config().unwrap()).unwrap();
    market.setup(&ledger).unwrap();
    let group: Vec<_> = (0..trades).map(|k| market.trade(k).unwrap()).collect();
    for chunk in group.chunks(256) {
        ledger.submit_group(chunk.to_vec()).unwrap();
    }
    (ledger, rows_read)
}

/// Regression: listing trades or certificates read and sorted the whole history under the head
/// lock. A page now reads an index by key range: the rows it reads grow with the page, not with
/// the history.
#[test]
fn a_page_of_history_reads_rows_in_proportion_to_the_page() {
    for store in stores::each_store("a_page_of_history_reads_rows_in_proportion_to_the_page") {
        eprintln!("a_page_of_history_reads_rows_in_proportion_to_the_page: {store}");
        let (ledger, rows_read) = history(&store, 600);
        let read = |f: &dyn Fn()| {
            let before = rows_read.load(Ordering::Relaxed);
            f();
            rows_read.load(Ordering::Relaxed) - before
        };
        let page = PageRequest {
            after: None,
            limit: 10,
            newest_first: false,
        };
        let all_trades = read(&|| {
            let page = ledger.trade_page(&TradeFilter::default(), page).unwrap();
            assert_eq!(page.items.len(), 10);
            assert!(page.next.is_some());
        });
        assert!(all_trades <= 11, "a page of 10 read {all_trades} rows");
        let party: ledger_core::ids::ParticipantId = "holder-3".parse().unwrap();
        let by_party = read(&|| {
            let filter = TradeFilter {
                party: Some(party.clone()),
                ..TradeFilter::default()
            };
            let page = ledger.trade_page(&filter, page).unwrap();
            assert_eq!(page.items.len(), 10);
            assert!(page
                .items
                .iter()
                .all(|t| t.seller == party || t.buyer == party));
        });
        // One index row and one trade row per item, and one more of each to know there is a next.
        assert!(by_party <= 22, "a page of 10 by party read {by_party} rows");
        let certificates = read(&|| {
            ledger
                .certificate_page(&CertificateFilter::default(), page)
                .unwrap();
        });
        assert!(certificates <= 11, "{certificates}");
    }
}

/// Paging forward and backward through every trade gives each once, in ledger order, as the
/// full (unpaged) query does.
#[test]
fn pages_cover_the_history_once_in_either_direction() {
    for store in stores::each_store("pages_cover_the_history_once_in_either_direction") {
        eprintln!("pages_cover_the_history_once_in_either_direction: {store}");
        let (ledger, _) = history(&store, 300);
        let all: Vec<u64> = ledger
            .read(|s| s.trades(&TradeFilter::default()))
            .unwrap()
            .iter()
            .map(|t| t.seq)
            .collect();
        for newest_first in [false, true] {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = ledger
                    .trade_page(
                        &TradeFilter::default(),
                        PageRequest {
                            after,
                            limit: 37,
                            newest_first,
                        },
                    )
                    .unwrap();
                seen.extend(page.items.iter().map(|t| t.seq));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if newest_first {
                seen.reverse();
            }
            assert_eq!(seen, all, "newest first: {newest_first}");
        }
    }
}

/// Regression: while a client paged through trades, submissions stalled behind the page (and
/// the page behind the sequencer). A page is now read while a durable write is under way.
#[test]
fn a_page_is_read_while_the_sequencer_writes() {
    for store in stores::each_store("a_page_is_read_while_the_sequencer_writes") {
        eprintln!("a_page_is_read_while_the_sequencer_writes: {store}");
        let market = ledger_core::load::Market::new(5);
        let hold = Arc::new(Mutex::new(None::<mpsc::Receiver<()>>));
        let entered = Arc::new(Mutex::new(None::<mpsc::Sender<()>>));
        let (hook_hold, hook_entered) = (Arc::clone(&hold), Arc::clone(&entered));
        let store = HookedStore::new(Arc::<dyn Store>::from(store.store()), move |_| {
            let release = hook_hold.lock().unwrap().take();
            if let Some(release) = release {
                if let Some(entered) = hook_entered.lock().unwrap().take() {
                    entered.send(()).unwrap();
                }
                // The write waits until the test has read its page (or gives up after 30 s).
                let _ = release.recv_timeout(Duration::from_secs(30));
            }
        });
        let ledger = Arc::new(Ledger::open(Box::new(store), market.config().unwrap()).unwrap());
        market.setup(&ledger).unwrap();
        ledger.submit_prepared(market.trade(0).unwrap()).unwrap();
        let request = PageRequest {
            after: None,
            limit: 100,
            newest_first: false,
        };
        let durable = ledger
            .trade_page(&TradeFilter::default(), request)
            .unwrap()
            .items
            .len();

        let (release, wait) = mpsc::channel();
        let (signal, inside) = mpsc::channel();
        *hold.lock().unwrap() = Some(wait);
        *entered.lock().unwrap() = Some(signal);
        let writer = {
            let (ledger, trade) = (ledger.clone(), market.trade(1).unwrap());
            std::thread::spawn(move || ledger.submit_prepared(trade))
        };
        inside
            .recv_timeout(Duration::from_secs(30))
            .expect("the write reached the store");
        let (paged, page) = mpsc::channel();
        let reader = {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                paged
                    .send(
                        ledger
                            .trade_page(&TradeFilter::default(), request)
                            .map(|p| p.items.len()),
                    )
                    .unwrap();
            })
        };
        let items = page.recv_timeout(Duration::from_secs(10));
        release.send(()).unwrap();
        assert_eq!(
            items
                .expect("the page waited for the sequencer's write")
                .unwrap(),
            durable,
            "the page shows what is durable, not the write under way"
        );
        writer.join().unwrap().unwrap();
        reader.join().unwrap();
    }
}
