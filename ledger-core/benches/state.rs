//! What the state commitment costs a checkpoint, at about 10⁴ and 10⁶ committed rows:
//! `cargo bench -p ledger-core --bench state`. Figures and the machine they were measured on are
//! in docs/performance.md ("State commitment per checkpoint").
//!
//! The market is built through the state machine (`State::apply`), as the sequencer drives it,
//! with the signers given in the context as the `core` bench does (signatures are checked before
//! the state machine runs, and are not what is measured here): `holders` enterprises each holding
//! every one of `batches` batches, so that nearly every committed row is a balance. The history
//! tables (entries, trades and their indexes) are not committed; the bench hands them to a
//! history that keeps nothing, as a ledger hands them to its store, so that memory holds the
//! market only.
//!
//! Measured, each on the same state:
//!
//! - `after_1_entry`, `after_64_entries`, `after_1024_entries`: a checkpoint's commitment when
//!   that many transfers between existing holdings were applied since the last one (the steady
//!   state);
//! - `after_a_new_holding`: the same after one transfer that creates a balance row in the middle
//!   of the rows' order (every row after it moves by one position);
//! - `cold`: the first commitment of a state whose leaf cache is empty (what a restart, a replica
//!   or a witness's replay pays);
//! - `prove_present`, `prove_absent`: a checkpoint's commitment with the proof of one row, or of
//!   the absence of one.
//!
//! Before measuring, it prints the proofs' sizes, the resident memory the first commitment added
//! and the heap bytes of the cache it filled.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ed25519_dalek::SigningKey;
use ledger_core::entry::Body;
use ledger_core::ids::Timestamp;
use ledger_core::load::resident_kib;
use ledger_core::state::{Context, History, HistoryVisitor, RowProof, Signers, State, StateRow};
use ledger_core::store::{RowRange, StoreError};
use serde_json::{json, Value};

const AT: &str = "2022-06-01T09:30:00Z";

/// A history that keeps nothing: the bench never reads an entry or a trade back.
#[derive(Debug)]
struct Discard;

impl History for Discard {
    fn row(&self, _: &str, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    fn scan(&self, _: &str, _: RowRange<'_>, _: &mut HistoryVisitor<'_>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A market in a state, and the entries still to come.
struct Market {
    state: State,
    at: Timestamp,
    seq: u64,
    holders: usize,
    batches: usize,
    /// Transfers made so far between existing holdings.
    transfers: usize,
    /// Holdings created so far by `after_a_new_holding`.
    new_holdings: usize,
}

fn holder(i: usize) -> String {
    format!("holder-{i:05}")
}

fn batch(j: usize) -> String {
    format!("B-{j:05}")
}

/// A participant with no holdings whose name sorts in the middle of the holders.
fn newcomer(k: usize, holders: usize) -> String {
    format!("{}-new-{k:07}", holder(holders / 2))
}

impl Market {
    fn apply(&mut self, fields: Value, signers: &[&str], new_key: bool) {
        let mut value = fields;
        value["id"] = json!(format!("e-{}", self.seq));
        value["ledger"] = json!("bench.example/ledger");
        value["created_at"] = json!(AT);
        let body: Body = serde_json::from_value(value).expect("a well-formed body");
        let ids: Vec<_> = signers.iter().map(|s| s.parse().expect("an id")).collect();
        let mut who = Signers::of(ids.iter());
        who.new_key = new_key;
        let ctx = Context {
            seq: self.seq,
            accepted_at: self.at.clone(),
            signers: who,
            body_digest: [0; 32],
        };
        self.state.apply(&ctx, &body).expect("the entry is applied");
        self.seq += 1;
    }

    fn register(&mut self, id: &str, role: &str, n: usize) {
        let public = ledger_core::ids::PublicKey::from(key(n as u64).verifying_key());
        let signers: &[&str] = if n == 0 { &[] } else { &["op"] };
        self.apply(
            json!({"type": "register_participant", "participant": id, "name": id,
                   "roles": [role], "public_key": public.to_string()}),
            signers,
            true,
        );
    }

    fn transfer(&mut self, seller: &str, buyer: &str, batch: &str, quantity: &str) {
        self.apply(
            json!({"type": "trade", "kind": "transfer", "seller": seller, "buyer": buyer,
                   "batch": batch, "quantity": quantity}),
            &[seller, buyer],
            false,
        );
    }

    /// `holders` holders of each of `batches` batches and a price in force; settled, never
    /// committed.
    fn new(holders: usize, batches: usize) -> Self {
        let mut market = Market {
            state: State::new(),
            at: AT.parse().expect("a time"),
            seq: 0,
            holders,
            batches,
            transfers: 0,
            new_holdings: 0,
        };
        market.state.keep_history_in(Arc::new(Discard));
        let mut n = 0;
        for (id, role) in [
            ("op", "operator"),
            ("ver", "verifier"),
            ("wet", "proponent"),
            ("pricing", "pricing_authority"),
        ] {
            market.register(id, role, n);
            n += 1;
        }
        for i in 0..holders {
            market.register(&holder(i), "enterprise", n);
            n += 1;
        }
        market.apply(
            json!({"type": "register_methodology", "methodology": "m", "name": "m",
                   "version": "1", "buffer_rate": "0"}),
            &["op"],
            false,
        );
        market.apply(
            json!({"type": "register_project", "project": "p", "name": "p",
                   "proponent": "wet", "methodology": "m", "region": "r", "area_ha": "1"}),
            &["op", "wet"],
            false,
        );
        let per_batch = 1000 * holders + 1000;
        market.apply(
            json!({"type": "record_monitoring", "report": "r", "project": "p",
                   "period_start": "2021-01-01", "period_end": "2021-12-31",
                   "quantity": (per_batch * batches).to_string(),
                   "evidence_sha256": "00".repeat(32)}),
            &["ver"],
            false,
        );
        market.apply(
            json!({"type": "publish_price", "price": "BM-1", "basis": "benchmark",
                   "unit_price": "58.83", "currency": "CNY",
                   "effective_at": "2022-01-01T00:00:00Z"}),
            &["pricing"],
            false,
        );
        market.state.settle();
        for j in 0..batches {
            market.apply(
                json!({"type": "issue_batch", "batch": batch(j), "report": "r",
                       "quantity": per_batch.to_string(), "vintage": 2021}),
                &["op"],
                false,
            );
            for i in 0..holders {
                market.transfer("wet", &holder(i), &batch(j), "1000");
            }
            market.state.settle();
        }
        market
    }

    /// `n` transfers between existing holdings, settled as one group.
    fn trade(&mut self, n: usize) {
        for _ in 0..n {
            let t = self.transfers;
            self.transfers += 1;
            let seller = holder(t % self.holders);
            let buyer = holder((t * 7 + 1) % self.holders);
            let buyer = if buyer == seller {
                holder((t + 1) % self.holders)
            } else {
                buyer
            };
            let b = batch((t / self.holders) % self.batches);
            self.transfer(&seller, &buyer, &b, "0.001");
        }
        self.state.settle();
    }

    /// A new participant, then a transfer to it: a new balance row in the middle of the rows.
    fn new_holding(&mut self) {
        let k = self.new_holdings;
        self.new_holdings += 1;
        let buyer = newcomer(k, self.holders);
        self.register(&buyer, "enterprise", 1_000_000 + k);
        self.transfer(&holder(0), &buyer, &batch(k % self.batches), "0.001");
        self.state.settle();
    }

    fn rows(&self) -> u64 {
        self.state
            .state_commitment(&self.at)
            .expect("a commitment")
            .rows
    }

    fn balance_key(&self, holder: &str, batch: &str) -> Vec<u8> {
        StateRow::sort_key_of("balances", &(holder, batch)).expect("a sort key")
    }
}

fn key(n: u64) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    SigningKey::from_bytes(&seed)
}

/// The proof's hashes and its size as JSON (what a bundle carries).
fn proof_size(proof: &RowProof) -> (usize, usize) {
    let hashes = match proof {
        RowProof::Present(row) => row.proof.len(),
        RowProof::Absent { before, after } => {
            before.as_ref().map_or(0, |r| r.proof.len())
                + after.as_ref().map_or(0, |r| r.proof.len())
        }
    };
    let bytes = serde_json::to_vec(proof).expect("JSON").len();
    (hashes, bytes)
}

fn commitment(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_commitment");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    for (holders, batches) in [(100usize, 100usize), (1000, 1000)] {
        let start = Instant::now();
        let mut market = Market::new(holders, batches);
        let built = start.elapsed();
        // A copy whose leaf cache was never filled, for the cold commitment.
        let fresh = market.state.clone();
        let before_kib = resident_kib();
        let start = Instant::now();
        let rows = market.rows();
        let first = start.elapsed();
        let after_kib = resident_kib();
        let present = market.balance_key(&holder(holders / 3), &batch(batches / 2));
        let absent = market.balance_key(&holder(holders / 3), "B-absent");
        let (_, proofs) = market
            .state
            .prove_state_rows(&market.at, &[present.clone(), absent.clone()])
            .expect("proofs");
        let (present_hashes, present_bytes) = proof_size(&proofs[0]);
        let (absent_hashes, absent_bytes) = proof_size(&proofs[1]);
        let cache_bytes = market.state.commitment_cache_bytes();
        println!(
            "state_commitment: {rows} rows ({holders} holders × {batches} batches), built in \
             {:.1} s; first commitment {:.0} ms, resident memory {} → {} MiB (+{} MiB), the \
             cache's heap {:.1} MiB ({} bytes a row); presence proof {present_hashes} hashes, \
             {present_bytes} bytes of JSON; absence proof {absent_hashes} hashes, \
             {absent_bytes} bytes",
            built.as_secs_f64(),
            first.as_secs_f64() * 1e3,
            before_kib / 1024,
            after_kib / 1024,
            after_kib.saturating_sub(before_kib) / 1024,
            cache_bytes as f64 / f64::from(1 << 20),
            cache_bytes as u64 / rows.max(1),
        );

        for (entries, name) in [
            (1usize, "after_1_entry"),
            (64, "after_64_entries"),
            (1024, "after_1024_entries"),
        ] {
            group.bench_function(BenchmarkId::new(name, rows), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        market.trade(entries);
                        let start = Instant::now();
                        black_box(market.state.state_commitment(&market.at).expect("commit"));
                        total += start.elapsed();
                    }
                    total
                })
            });
        }
        group.bench_function(BenchmarkId::new("after_a_new_holding", rows), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    market.new_holding();
                    let start = Instant::now();
                    black_box(market.state.state_commitment(&market.at).expect("commit"));
                    total += start.elapsed();
                }
                total
            })
        });
        group.bench_function(BenchmarkId::new("cold", rows), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let state = fresh.clone();
                    let start = Instant::now();
                    black_box(state.state_commitment(&market.at).expect("commit"));
                    total += start.elapsed();
                    drop(state);
                }
                total
            })
        });
        drop(fresh);
        for (name, key) in [("prove_present", &present), ("prove_absent", &absent)] {
            group.bench_function(BenchmarkId::new(name, rows), |b| {
                b.iter(|| {
                    market
                        .state
                        .prove_state_rows(&market.at, std::slice::from_ref(key))
                        .expect("proof")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, commitment);
criterion_main!(benches);
