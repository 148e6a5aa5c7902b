//! The stores the library's tests run against: the same tests, parameterised by a store
//! factory. Memory and sled always; PostgreSQL in a fresh database of a throwaway cluster
//! (started once per test process) when the machine has the server — else that case says it
//! was skipped, or fails when `CARBON_LEDGER_REQUIRE_POSTGRES=1`.

use std::sync::Arc;

use ledger_core::ledger::{Ledger, LedgerConfig, LedgerError};
use ledger_core::store::{MemoryStore, SledStore, Store};
use ledger_postgres::testing::TestCluster;
use ledger_postgres::PgStore;

/// One store to run a test on, which can be opened again (a restart).
pub enum TestStore {
    /// In memory, shared between opens.
    Memory(Arc<MemoryStore>),
    /// sled in a temporary folder.
    Sled(tempfile::TempDir),
    /// A database of its own on the shared test cluster.
    Postgres(String),
}

impl std::fmt::Display for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TestStore::Memory(_) => "memory",
            TestStore::Sled(_) => "sled",
            TestStore::Postgres(_) => "postgres",
        })
    }
}

impl TestStore {
    /// The store, opened (again).
    pub fn store(&self) -> Box<dyn Store> {
        match self {
            TestStore::Memory(store) => Box::new(Arc::clone(store)),
            TestStore::Sled(dir) => Box::new(SledStore::open(dir.path()).unwrap()),
            TestStore::Postgres(url) => Box::new(PgStore::connect(url).unwrap()),
        }
    }

    /// A ledger on the store.
    pub fn open(&self, config: LedgerConfig) -> Result<Ledger, LedgerError> {
        Ledger::open(self.store(), config)
    }

    /// Whether other instances may share the store.
    pub fn shared(&self) -> bool {
        matches!(self, TestStore::Postgres(_))
    }
}

/// A fresh store of every kind this machine has, for the test `test`.
pub fn each_store(test: &str) -> Vec<TestStore> {
    let mut stores = vec![
        TestStore::Memory(Arc::new(MemoryStore::new())),
        TestStore::Sled(tempfile::tempdir().unwrap()),
    ];
    if let Some(cluster) = TestCluster::shared(test) {
        stores.push(TestStore::Postgres(cluster.database()));
    }
    stores
}

/// A fresh store of every kind that keeps data across opens (sled, PostgreSQL).
pub fn each_durable_store(test: &str) -> Vec<TestStore> {
    each_store(test)
        .into_iter()
        .filter(|s| !matches!(s, TestStore::Memory(_)))
        .collect()
}

/// A fresh PostgreSQL database, if this machine has the server.
pub fn postgres(test: &str) -> Option<TestStore> {
    TestCluster::shared(test).map(|c| TestStore::Postgres(c.database()))
}
