//! `PgStore` against a real PostgreSQL (a throwaway cluster), with `MemoryStore` as the oracle
//! for key-range scans: migrations, the head check, the head lock, the checkpoint's
//! compare-and-set.

use ledger_core::state::StateChange;
use ledger_core::store::{Append, MemoryStore, Meta, RowRange, Store, StoreError};
use ledger_postgres::testing::TestCluster;
use ledger_postgres::PgStore;

fn meta(size: u64) -> Meta {
    Meta {
        layout: 2,
        origin: "test.example/ledger".to_owned(),
        operator_key: "key".to_owned(),
        size,
        peaks: Vec::new(),
        last_leaf_hash: "00".repeat(32),
    }
}

fn leaf(seq: u64) -> Vec<u8> {
    format!("leaf {seq}").into_bytes()
}

fn append(store: &dyn Store, first: u64, count: u64) -> Result<(), StoreError> {
    let leaves: Vec<Vec<u8>> = (first..first + count).map(leaf).collect();
    store.append(Append {
        first_seq: first,
        leaves: &leaves,
        nodes: &[],
        state: &[],
        meta: Some(&meta(first + count)),
    })
}

#[test]
fn a_group_commits_only_on_the_head_it_built_on() {
    let Some(cluster) = TestCluster::shared("a_group_commits_only_on_the_head_it_built_on") else {
        return;
    };
    let url = cluster.database();
    let (one, two) = (
        PgStore::connect(&url).unwrap(),
        PgStore::connect(&url).unwrap(),
    );
    assert_eq!(one.meta().unwrap(), None);
    append(&one, 0, 3).unwrap();
    // The second instance built on an empty ledger: nothing is written.
    assert_eq!(append(&two, 0, 2), Err(StoreError::Behind { durable: 3 }));
    assert_eq!(two.meta().unwrap().unwrap().size, 3);
    assert_eq!(two.leaf(2).unwrap(), Some(leaf(2)));
    assert_eq!(two.leaf(3).unwrap(), None);
    append(&two, 3, 2).unwrap();
    let mut seen = Vec::new();
    one.scan_leaves(1, &mut |seq, bytes| {
        seen.push((seq, bytes.to_vec()));
        Ok(true)
    })
    .unwrap();
    assert_eq!(seen, (1..5).map(|s| (s, leaf(s))).collect::<Vec<_>>());
}

#[test]
fn the_head_lock_holds_other_instances_until_the_next_append() {
    let Some(cluster) = TestCluster::shared("the_head_lock_holds_other_instances") else {
        return;
    };
    let url = cluster.database();
    let one = PgStore::connect(&url).unwrap();
    let two = std::sync::Arc::new(PgStore::connect(&url).unwrap());
    append(&one, 0, 1).unwrap();
    assert_eq!(one.lock_head().unwrap(), Some(1));
    let (tx, rx) = std::sync::mpsc::channel();
    let other = std::sync::Arc::clone(&two);
    let waiting = std::thread::spawn(move || {
        let result = append(other.as_ref(), 1, 1);
        tx.send(()).unwrap();
        result
    });
    // While the head is locked the other instance's append waits (it has not answered).
    assert!(rx
        .recv_timeout(std::time::Duration::from_millis(300))
        .is_err());
    append(&one, 1, 2).unwrap();
    assert_eq!(
        waiting.join().unwrap(),
        Err(StoreError::Behind { durable: 3 })
    );
    // Locked and released with nothing appended: the others go on.
    assert_eq!(one.lock_head().unwrap(), Some(3));
    one.unlock_head();
    append(two.as_ref(), 3, 1).unwrap();
}

#[test]
fn a_checkpoint_is_replaced_only_by_a_larger_one() {
    let Some(cluster) = TestCluster::shared("a_checkpoint_is_replaced_only_by_a_larger_one") else {
        return;
    };
    let url = cluster.database();
    let dir = tempfile::tempdir().unwrap();
    let store = PgStore::connect(&url).unwrap().with_witness(dir.path());
    let note = |size: u64| format!("test.example/ledger\n{size}\nroot=\n\n— sig\n");
    store.put_checkpoint(&note(5)).unwrap();
    assert_eq!(
        store.put_checkpoint(&note(3)),
        Err(StoreError::CheckpointSuperseded { stored_size: 5 })
    );
    assert_eq!(
        store.put_checkpoint(&note(5)),
        Err(StoreError::CheckpointSuperseded { stored_size: 5 })
    );
    store.put_checkpoint(&note(8)).unwrap();
    assert_eq!(store.checkpoint().unwrap(), Some(note(8)));
    assert_eq!(store.checkpoint_witness().unwrap(), Some(note(8)));
}

#[test]
fn a_database_newer_than_the_program_is_refused() {
    let Some(cluster) = TestCluster::shared("a_database_newer_than_the_program_is_refused") else {
        return;
    };
    let url = cluster.database();
    drop(PgStore::connect(&url).unwrap());
    // A later program migrated it further.
    let admin = url.clone();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        client
            .batch_execute("UPDATE ledger_schema SET version = 999")
            .unwrap();
    })
    .join()
    .unwrap();
    let error = PgStore::connect(&url).unwrap_err();
    assert!(error.to_string().contains("newer"), "{error}");
    // Connecting again to a current one migrates nothing and succeeds.
    let fresh = cluster.database();
    drop(PgStore::connect(&fresh).unwrap());
    drop(PgStore::connect(&fresh).unwrap());
}

/// A small deterministic generator for keys and ranges.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        self.0 >> 33
    }
    fn bytes(&mut self) -> Vec<u8> {
        let len = self.next() % 4;
        // A few byte values, 0x00 and 0xff among them, so that prefixes collide and bounds
        // land on the edges.
        (0..len)
            .map(|_| [0u8, 1, 0x7f, 0xfe, 0xff][(self.next() % 5) as usize])
            .collect()
    }
}

#[test]
fn key_range_scans_agree_with_the_memory_store_bytewise() {
    let Some(cluster) = TestCluster::shared("key_range_scans_agree_with_the_memory_store") else {
        return;
    };
    let pg = PgStore::connect(&cluster.database()).unwrap();
    let memory = MemoryStore::new();
    let mut rng = Rng(7);
    let tables = ["trades", "trades_by_party", "entries"];
    let mut changes = Vec::new();
    for i in 0..700u32 {
        let table = tables[(rng.next() % 3) as usize];
        let mut key = rng.bytes();
        key.extend_from_slice(&i.to_be_bytes());
        changes.push(StateChange {
            table,
            key,
            value: Some(i.to_string().into_bytes()),
        });
    }
    // And a removal, and a row written twice in one group (the last write wins).
    changes.push(StateChange {
        table: "trades",
        key: changes[0].key.clone(),
        value: None,
    });
    changes.push(StateChange {
        table: "entries",
        key: b"twice".to_vec(),
        value: Some(b"first".to_vec()),
    });
    changes.push(StateChange {
        table: "entries",
        key: b"twice".to_vec(),
        value: Some(b"second".to_vec()),
    });
    for store in [&pg as &dyn Store, &memory] {
        store
            .append(Append {
                first_seq: 0,
                leaves: &[],
                nodes: &[],
                state: &changes,
                meta: Some(&meta(0)),
            })
            .unwrap();
    }
    assert_eq!(
        pg.state_row("entries", b"twice").unwrap(),
        Some(b"second".to_vec())
    );
    let scan = |store: &dyn Store, table: Option<&str>, range: RowRange<'_>, limit: usize| {
        let mut rows = Vec::new();
        store
            .scan_state(table, range, &mut |t, k, v| {
                rows.push((t.to_owned(), k.to_vec(), v.to_vec()));
                Ok(rows.len() < limit)
            })
            .unwrap();
        rows
    };
    for _ in 0..150 {
        let table = tables[(rng.next() % 3) as usize];
        let prefix = rng.bytes();
        let after = (rng.next() % 2 == 0).then(|| {
            let mut a = prefix.clone();
            a.extend(rng.bytes());
            a
        });
        let range = RowRange {
            prefix: &prefix,
            after: after.as_deref(),
            reverse: rng.next() % 2 == 0,
        };
        let limit = [1, 7, 600, 2000][(rng.next() % 4) as usize];
        assert_eq!(
            scan(&pg, Some(table), range, limit),
            scan(&memory, Some(table), range, limit),
            "{table} {range:?} limit {limit}"
        );
    }
    // A scan of every table sees the same rows (in its own table order).
    let mut all_pg = scan(&pg, None, RowRange::default(), usize::MAX);
    let mut all_memory = scan(&memory, None, RowRange::default(), usize::MAX);
    all_pg.sort();
    all_memory.sort();
    assert_eq!(all_pg, all_memory);
}

/// A copy whose leaves are not its stated tree: the import fails after it has written rows in its
/// transaction, and the database is left as it was — empty — so that the same database takes a
/// good copy next.
#[test]
fn an_import_is_all_or_nothing() {
    let Some(cluster) = TestCluster::shared("an_import_is_all_or_nothing") else {
        return;
    };
    let url = cluster.database();
    let target = PgStore::connect(&url).unwrap();
    let count = 2500;
    let leaves: Vec<Vec<u8>> = (0..count).map(leaf).collect();
    let mut tree = ledger_core::merkle::CompactTree::new();
    for l in &leaves {
        tree.append(ledger_core::merkle::leaf_hash(l)).unwrap();
    }
    let good = Meta {
        peaks: tree.peaks().iter().map(hex::encode).collect(),
        ..meta(count)
    };
    let copy = |meta: &Meta| {
        let source = MemoryStore::new();
        source
            .append(Append {
                first_seq: 0,
                leaves: &leaves,
                nodes: &[],
                state: &[StateChange {
                    table: "participants",
                    key: b"\"p\"".to_vec(),
                    value: Some(b"{}".to_vec()),
                }],
                meta: Some(meta),
            })
            .unwrap();
        source
    };
    // Peaks that are not the leaves' tree: found after more than one chunk of leaves is written.
    let bad = Meta {
        peaks: vec!["11".repeat(32)],
        ..good.clone()
    };
    let error = target.import(&copy(&bad)).unwrap_err();
    assert!(error.to_string().contains("not its stated head"), "{error}");
    assert_eq!(target.meta().unwrap(), None);
    assert_eq!(target.leaf(0).unwrap(), None);
    assert_eq!(target.state_row("participants", b"\"p\"").unwrap(), None);

    assert_eq!(target.import(&copy(&good)).unwrap(), count);
    assert_eq!(target.meta().unwrap(), Some(good));
    assert_eq!(target.leaf(count - 1).unwrap(), Some(leaf(count - 1)));
    assert_eq!(
        target.state_row("participants", b"\"p\"").unwrap(),
        Some(b"{}".to_vec())
    );
    // Into a database that holds a ledger: refused, nothing changed.
    let error = target.import(&copy(&meta(count))).unwrap_err();
    assert!(
        error.to_string().contains("already holds a ledger"),
        "{error}"
    );
}

/// A run of one level's Merkle nodes (a tile) is one range read on PostgreSQL and on sled; both
/// agree with the memory store, which reads node by node: in order, from `first`, stopping at
/// the first node not stored and at `count`, never crossing into another level.
#[test]
fn runs_of_nodes_agree_across_stores() {
    use ledger_core::merkle::NodeId;
    use ledger_core::store::SledStore;
    let Some(cluster) = TestCluster::shared("runs_of_nodes_agree_across_stores") else {
        return;
    };
    let pg = PgStore::connect(&cluster.database()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::with_reserve(dir.path(), 0).unwrap();
    let memory = MemoryStore::new();
    let hash = |level: u8, index: u64| {
        let mut h = [level; 32];
        h[24..].copy_from_slice(&index.to_be_bytes());
        h
    };
    let mut nodes: Vec<(NodeId, [u8; 32])> = (0..300u64)
        .filter(|index| *index != 200)
        .map(|index| (NodeId { level: 0, index }, hash(0, index)))
        .collect();
    nodes.extend((0..3u64).map(|index| (NodeId { level: 1, index }, hash(1, index))));
    nodes.extend((0..2u64).map(|index| (NodeId { level: 8, index }, hash(8, index))));
    for store in [&pg as &dyn Store, &sled, &memory] {
        store
            .append(Append {
                first_seq: 0,
                leaves: &[],
                nodes: &nodes,
                state: &[],
                meta: Some(&meta(0)),
            })
            .unwrap();
    }
    for (level, first, count, expected) in [
        (0, 0, 256, 200),
        (0, 0, 100, 100),
        (0, 201, 256, 99),
        (0, 200, 10, 0),
        (0, 299, 256, 1),
        (0, 300, 256, 0),
        (1, 0, 256, 3),
        (1, 2, 1, 1),
        (8, 0, 256, 2),
        (7, 0, 256, 0),
        (0, u64::MAX - 1, 256, 0),
    ] {
        let runs: Vec<Vec<[u8; 32]>> = [&pg as &dyn Store, &sled, &memory]
            .iter()
            .map(|store| store.node_run(level, first, count).unwrap())
            .collect();
        let want: Vec<[u8; 32]> = (first..).take(expected).map(|i| hash(level, i)).collect();
        for run in &runs {
            assert_eq!(*run, want, "level {level} from {first}, {count}");
        }
    }
}
