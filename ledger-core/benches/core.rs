//! Benchmarks of the ledger's pieces: signatures, canonical JSON, the state machine, the Merkle
//! tree and proofs, and durable storage. `cargo bench -p ledger-core --bench core`; figures and
//! the machine they were measured on are in docs/performance.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ed25519_dalek::{Signature, Signer, SigningKey};
use ledger_core::canonical::to_canonical;
use ledger_core::entry::Body;
use ledger_core::merkle::{self, CompactTree, Hash, MemoryNodes, NodeId};
use ledger_core::state::{Context, Signers, State};
use ledger_core::store::{Append, Meta, SledStore, Store, StoreNodes, LAYOUT};
use ledger_core::wire::decode_submission;
use serde_json::json;

fn key(n: u64) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    SigningKey::from_bytes(&seed)
}

fn trade_body(id: &str) -> Body {
    serde_json::from_value(json!({
        "type": "trade", "id": id, "ledger": "bench.example/ledger",
        "created_at": "2022-06-01T09:30:00Z", "kind": "eco_compensation",
        "seller": "two-mountains-bank", "buyer": "enterprise-a", "batch": "XZH-2021",
        "quantity": "10.5", "unit_price": "58.83", "currency": "CNY", "amount": "617.72",
        "price_ref": "BM-2022-06"
    }))
    .unwrap()
}

fn signatures(c: &mut Criterion) {
    let mut group = c.benchmark_group("signature");
    let message = ledger_core::wire::signing_message(&to_canonical(&trade_body("T-1")).unwrap());
    let signer = key(1);
    let signature = signer.sign(&message);
    let verifying = signer.verifying_key();
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_strict", |b| {
        b.iter(|| {
            verifying
                .verify_strict(black_box(&message), &signature)
                .unwrap()
        })
    });
    for n in [64usize, 1024] {
        let keys: Vec<SigningKey> = (0..n as u64).map(key).collect();
        let messages: Vec<Vec<u8>> = (0..n).map(|i| format!("{i}").into_bytes()).collect();
        let sigs: Vec<Signature> = keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
        let vks: Vec<_> = keys.iter().map(SigningKey::verifying_key).collect();
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("verify_batch", n), &n, |b, _| {
            b.iter(|| ed25519_dalek::verify_batch(&refs, &sigs, &vks).unwrap())
        });
    }
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encoding");
    group.throughput(Throughput::Elements(1));
    let body = trade_body("T-1");
    group.bench_function("jcs_trade_body", |b| {
        b.iter(|| to_canonical(black_box(&body)).unwrap())
    });
    let submission = json!({"body": serde_json::to_value(&body).unwrap(), "signatures": [
        {"signer": "two-mountains-bank", "sig": "A".repeat(86) + "=="},
        {"signer": "enterprise-a", "sig": "A".repeat(86) + "=="}]});
    let bytes = serde_json::to_vec(&submission).unwrap();
    group.bench_function("decode_submission", |b| {
        b.iter(|| decode_submission(black_box(&bytes)).unwrap())
    });
    group.finish();
}

/// A state with two holders of one batch, and transfers between them.
fn state_apply(c: &mut Criterion) {
    let mut state = State::new();
    let mut seq = 0u64;
    let mut apply =
        |state: &mut State, fields: serde_json::Value, signers: &[&str], new_key: bool| {
            let mut value = fields;
            value["id"] = json!(format!("e-{seq}"));
            value["ledger"] = json!("bench.example/ledger");
            value["created_at"] = json!("2022-06-01T09:30:00Z");
            let body: Body = serde_json::from_value(value).unwrap();
            let ids: Vec<_> = signers.iter().map(|s| s.parse().unwrap()).collect();
            let mut who = Signers::of(ids.iter());
            who.new_key = new_key;
            let ctx = Context {
                seq,
                accepted_at: "2022-06-01T09:30:00Z".parse().unwrap(),
                signers: who,
                body_digest: [0; 32],
            };
            state.apply(&ctx, &body).unwrap();
            state.settle();
            seq += 1;
        };
    let participants = [
        ("op", "operator"),
        ("ver", "verifier"),
        ("wet", "proponent"),
        ("a", "platform"),
        ("b", "platform"),
    ];
    for (i, (id, role)) in participants.iter().enumerate() {
        let public = ledger_core::ids::PublicKey::from(key(100 + i as u64).verifying_key());
        let signers: &[&str] = if i == 0 { &[] } else { &["op"] };
        apply(
            &mut state,
            json!({"type": "register_participant", "participant": id, "name": id,
                   "roles": [role], "public_key": public.to_string()}),
            signers,
            true,
        );
    }
    apply(
        &mut state,
        json!({"type": "register_methodology", "methodology": "m", "name": "m",
        "version": "1", "buffer_rate": "0.1"}),
        &["op"],
        false,
    );
    apply(
        &mut state,
        json!({"type": "register_project", "project": "p", "name": "p",
        "proponent": "wet", "methodology": "m", "region": "r", "area_ha": "1"}),
        &["op", "wet"],
        false,
    );
    apply(
        &mut state,
        json!({"type": "record_monitoring", "report": "r", "project": "p",
        "period_start": "2021-01-01", "period_end": "2021-12-31", "quantity": "1000000",
        "evidence_sha256": "00".repeat(32)}),
        &["ver"],
        false,
    );
    apply(
        &mut state,
        json!({"type": "issue_batch", "batch": "B", "report": "r",
        "quantity": "1000000", "vintage": 2021}),
        &["op"],
        false,
    );
    apply(
        &mut state,
        json!({"type": "trade", "kind": "transfer", "seller": "wet", "buyer": "a",
        "batch": "B", "quantity": "500000"}),
        &["wet", "a"],
        false,
    );

    let mut group = c.benchmark_group("state");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    let a_to_b = signers_of(&["a", "b"]);
    group.bench_function("apply_transfer", |bench| {
        bench.iter_batched(
            || {
                n += 1;
                let body: Body =
                    serde_json::from_value(json!({"type": "trade", "kind": "transfer",
                    "id": format!("t-{n}"), "ledger": "bench.example/ledger",
                    "created_at": "2022-06-01T09:30:00Z", "seller": "a", "buyer": "b",
                    "batch": "B", "quantity": "0.001"}))
                    .unwrap();
                (1_000 + n, body)
            },
            |(seq, body)| {
                let ctx = Context {
                    seq,
                    accepted_at: "2022-06-01T09:30:00Z".parse().unwrap(),
                    signers: a_to_b.clone(),
                    body_digest: [0; 32],
                };
                state.apply(&ctx, &body).unwrap();
                state.settle();
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn signers_of(ids: &[&str]) -> Signers {
    let ids: Vec<_> = ids.iter().map(|s| s.parse().unwrap()).collect();
    Signers::of(ids.iter())
}

fn leaf(i: u64) -> Hash {
    merkle::leaf_hash(&i.to_be_bytes())
}

fn merkle_tree(c: &mut Criterion) {
    let mut group = c.benchmark_group("merkle");
    group.throughput(Throughput::Elements(1));
    group.bench_function("append", |b| {
        let mut tree = CompactTree::new();
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(tree.append(leaf(i)).unwrap());
        })
    });
    for exponent in [3u32, 4, 5, 6] {
        let size = 10u64.pow(exponent);
        let mut tree = CompactTree::new();
        let mut nodes = MemoryNodes::new();
        for i in 0..size {
            for (id, hash) in tree.append(leaf(i)).unwrap() {
                nodes.insert(id, hash);
            }
        }
        group.bench_with_input(
            BenchmarkId::new("inclusion_proof_memory", size),
            &size,
            |b, &size| {
                let mut i = 0u64;
                b.iter(|| {
                    i = (i + 7919) % size;
                    merkle::inclusion_proof(i, size, &nodes).unwrap()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("consistency_proof_memory", size),
            &size,
            |b, &size| {
                let mut i = 0u64;
                b.iter(|| {
                    i = (i + 7919) % (size - 1) + 1;
                    merkle::consistency_proof(i, size, &nodes).unwrap()
                })
            },
        );
    }
    group.finish();
}

fn meta(size: u64, tree: &CompactTree) -> Meta {
    Meta {
        layout: LAYOUT,
        origin: "bench.example/ledger".to_owned(),
        operator_key: String::new(),
        size,
        peaks: tree.peaks().iter().map(hex::encode).collect(),
        last_leaf_hash: String::new(),
    }
}

/// Appends `count` leaves of ~470 bytes in groups of `group_size`; returns the tree.
fn fill(store: &SledStore, tree: &mut CompactTree, count: u64, group_size: u64) {
    let mut next = tree.size();
    let end = next + count;
    while next < end {
        let first = next;
        let n = group_size.min(end - next);
        let leaves: Vec<Vec<u8>> = (first..first + n)
            .map(|i| vec![(i % 251) as u8; 470])
            .collect();
        let mut nodes: Vec<(NodeId, Hash)> = Vec::new();
        for leaf_bytes in &leaves {
            nodes.extend(tree.append(merkle::leaf_hash(leaf_bytes)).unwrap());
        }
        next += n;
        store
            .append(Append {
                first_seq: first,
                leaves: &leaves,
                nodes: &nodes,
                state: &[],
                meta: Some(&meta(next, tree)),
            })
            .unwrap();
    }
}

fn storage(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    for group_size in [1u64, 64, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut tree = CompactTree::new();
        group.throughput(Throughput::Elements(group_size));
        group.bench_with_input(
            BenchmarkId::new("durable_group_append", group_size),
            &group_size,
            |b, &n| b.iter(|| fill(&store, &mut tree, n, n)),
        );
    }
    // Proofs read from a store of 10^6 leaves.
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let mut tree = CompactTree::new();
    let size = 1_000_000u64;
    fill(&store, &mut tree, size, 4096);
    let source = StoreNodes(&store);
    group.sample_size(50);
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("inclusion_proof_sled", size), |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % size;
            merkle::inclusion_proof(i, size, &source).unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("consistency_proof_sled", size), |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % (size - 1) + 1;
            merkle::consistency_proof(i, size, &source).unwrap()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    signatures,
    encoding,
    state_apply,
    merkle_tree,
    storage
);
criterion_main!(benches);
